"""VGG19's convolutional part (Simonyan & Zisserman, 2015) as a feature extractor for style transfer.

Sixteen 3×3 convolutions (padding 1) in five blocks of 2, 2, 4, 4, 4, each followed by a ReLU,
with a 2×2 stride-2 pooling after each block: max pooling as trained, or average pooling, which
Gatys et al. (2016) found to give smoother syntheses. The classifier head is not needed and not
built. Layers are named as in the style-transfer literature, `conv<block>_<index>` for a
convolution's output and `relu<block>_<index>` for its ReLU (`pool<block>` for the pooling), and
the parameters are those names' (`conv1_1: {kernel (3, 3, 3, 64) HWIO, bias (64,)}`), the tree
that `gen_jax.data.vgg19_weights` fills from the published weight files (and whose layer table
this module takes).

The network is called with the names of the layers it must return and computes only up to the
deepest of them: a style loss on conv1_1 … conv5_1 never runs conv5_2 … conv5_4.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import numpy as np

from gen_jax.cpu_speed import convolution
from gen_jax.data.vgg19_weights import BLOCK_SIZES, CONV_CHANNELS, CONV_LAYERS

POOLINGS = ('max', 'average')
# Every layer whose output can be asked for, in the order the network computes them.
LAYERS = tuple(
    name for block, size in enumerate(BLOCK_SIZES)
    for name in [n for index in range(size) for n in (f'conv{block + 1}_{index + 1}', f'relu{block + 1}_{index + 1}')]
    + [f'pool{block + 1}'])


class VGG19Features(nn.Module):
  """Preprocessed (N, H, W, 3) images → {layer name: (N, h, w, channels)} for `outputs`.

  The random initialisation (He normal, zero biases; `random_params` draws the same) keeps the activations' scale from layer to
  layer, which random-filter texture synthesis needs; pretrained weights replace it.
  """

  outputs: Sequence[str]
  pooling: str = 'max'

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    chex.assert_rank(images, 4)
    chex.assert_axis_dimension(images, 3, 3)
    unknown = [name for name in self.outputs if name not in LAYERS]
    if unknown or not self.outputs:
      raise ValueError(f'VGG19 layers {unknown} do not exist; choose among {list(LAYERS)}')
    if self.pooling not in POOLINGS:
      raise ValueError(f'pooling={self.pooling!r}; choose one of {POOLINGS}')
    deepest = max(LAYERS.index(name) for name in self.outputs)
    found: dict[str, jax.Array] = {}
    x = images
    for name in LAYERS[:deepest + 1]:
      if name.startswith('conv'):
        x = nn.Conv(CONV_CHANNELS[CONV_LAYERS.index(name)], (3, 3), padding=((1, 1), (1, 1)), name=name,
                    kernel_init=nn.initializers.variance_scaling(2.0, 'fan_in', 'normal'), bias_init=nn.initializers.zeros,
                    conv_general_dilated=convolution.conv_general_dilated)(x)
      elif name.startswith('relu'):
        x = nn.relu(x)
      else:   # 2×2 stride 2; an odd side loses its last row or column, as in VGG
        pool = nn.max_pool if self.pooling == 'max' else nn.avg_pool
        x = pool(x, (2, 2), strides=(2, 2), padding='VALID')
      found[name] = x
    return {name: found[name] for name in self.outputs}


def random_params(seed: int, outputs: Sequence[str] = CONV_LAYERS[-1:]) -> dict:
  """Random filters for every convolution up to the deepest of `outputs` (all 16 by default):
  He-normal kernels (standard deviation √(2 / fan-in)) and zero biases, the module's own
  initialisation, drawn with NumPy (seeded) rather than through `init`, which would compile the
  whole network only to draw them."""
  deepest = max(LAYERS.index(name) for name in outputs)
  needed = [name for name in CONV_LAYERS if LAYERS.index(name) <= deepest]
  generator = np.random.default_rng(seed)
  params = {}
  for index, name in enumerate(needed):
    inputs = 3 if index == 0 else CONV_CHANNELS[index - 1]
    fan_in = 9 * inputs
    kernel = generator.standard_normal((3, 3, inputs, CONV_CHANNELS[index]), np.float32)
    params[name] = {'kernel': kernel * np.float32(np.sqrt(2.0 / fan_in)),
                    'bias': np.zeros(CONV_CHANNELS[index], np.float32)}
  return params
