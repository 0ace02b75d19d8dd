"""Pix2Pix's networks: a U-Net generator and a PatchGAN discriminator (Isola et al., 2017).

U-Net: `depth` stride-2 4×4 convolutions halve the image down to a bottleneck, as many stride-2
4×4 transposed convolutions double it back, and each decoder level is concatenated with the
encoder level of its size (the skip connections that carry the input's detail past the
bottleneck). Dropout (0.5) on the innermost decoder levels is the generator's only noise: the
paper found a noise vector ignored. Normalisation batch | instance | none, on every level but the
outermost encoder level and the bottleneck, as in the paper.

PatchGAN: the input and the image stacked on channels pass `num_layers` stride-2 4×4
convolutions, one stride-1 4×4 convolution, and a last stride-1 4×4 convolution to one logit per
position: a map of scores, each judging one patch of the image (its receptive field,
`receptive_field`: 70×70 pixels for the paper's 3 layers), so that the adversarial loss is about
local texture and the L1 loss about the whole.
"""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.cpu_speed import convolution
from gen_jax.cpu_speed.conv_transpose import SubPixelConvTranspose
from gen_jax.models.gan import CONV_PADDING, KERNEL, LEAKY_SLOPE, OUTPUT_ACTIVATIONS

NORMALISATIONS = ('batch', 'instance', 'none')
DROPOUT_RATE = 0.5


class Normalisation(nn.Module):
  """BatchNorm (PyTorch's momentum and epsilon, batch statistics averaged over `axis_name` under
  pmap), InstanceNorm (each example and channel on its own statistics) or nothing."""

  kind: str
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.kind == 'batch':
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                          axis_name=self.axis_name)(x)
    if self.kind == 'instance':
      return nn.InstanceNorm(epsilon=1e-5)(x)
    return x


def _conv(features: int, strides: int, use_bias: bool,
          kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()) -> nn.Conv:
  return nn.Conv(features, KERNEL, strides=strides, padding=CONV_PADDING, use_bias=use_bias,
                 kernel_init=kernel_init, conv_general_dilated=convolution.conv_general_dilated)


class UNet(nn.Module):
  """Input image → output image of the same height and width, `out_channels` channels in the
  range of `output_activation`; `features[i]` channels at encoder level i (depth = len(features))."""

  features: Sequence[int]
  out_channels: int
  normalisation: str = 'batch'
  dropout_levels: int = 3
  output_activation: str = 'tanh'
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True, dropout: bool | None = None) -> jax.Array:
    """`dropout` (default: as `train`) keeps the noise of the dropout layers on at sampling; it
    then needs a 'dropout' PRNG key."""
    chex.assert_rank(x, 4)
    depth = len(self.features)
    batch, height, width, _ = x.shape
    if height % 2 ** depth or width % 2 ** depth:
      raise ValueError(f'a U-Net of depth {depth} needs a height and width divisible by '
                       f'{2 ** depth}, got {height}×{width}')
    dropout = train if dropout is None else dropout
    # A layer followed by a normalisation has no bias (the normalisation subtracts it again).
    normalised = self.normalisation != 'none'
    skips = []
    for level, features in enumerate(self.features):
      inner = 0 < level < depth - 1
      x = _conv(features, 2, use_bias=not (inner and normalised))(x)
      if inner:
        x = Normalisation(self.normalisation, self.axis_name)(x, train)
      x = nn.leaky_relu(x, LEAKY_SLOPE) if level < depth - 1 else nn.relu(x)
      skips.append(x)
    for level in reversed(range(depth - 1)):
      x = SubPixelConvTranspose(self.features[level], kernel_size=KERNEL, strides=2, padding='SAME',
                                use_bias=not normalised)(x)
      x = Normalisation(self.normalisation, self.axis_name)(x, train)
      if depth - 2 - level < self.dropout_levels:
        x = nn.Dropout(DROPOUT_RATE, deterministic=not dropout)(x)
      x = jnp.concatenate([nn.relu(x), skips[level]], axis=-1)
    x = SubPixelConvTranspose(self.out_channels, kernel_size=KERNEL, strides=2, padding='SAME')(x)
    images = OUTPUT_ACTIVATIONS[self.output_activation](x)
    chex.assert_shape(images, (batch, height, width, self.out_channels))
    return images


def receptive_field(num_layers: int) -> int:
  """The side in pixels of the patch one PatchGAN score sees: each 4×4 layer widens it by 3
  times the product of the strides before it."""
  field, jump = 1, 1
  for stride in _strides(num_layers):
    field += (KERNEL[0] - 1) * jump
    jump *= stride
  return field


def _strides(num_layers: int) -> list[int]:
  """num_layers stride-2 convolutions, one of stride 1, and the stride-1 one to the logits."""
  return [2] * num_layers + [1, 1]


def score_map_size(image_size: int, num_layers: int) -> int:
  """The side of the PatchGAN's map of scores for an image_size² input (padding 1 everywhere)."""
  size = image_size
  for stride in _strides(num_layers):
    size = (size + 2 - KERNEL[0]) // stride + 1
  return size


class PatchDiscriminator(nn.Module):
  """(image, input it was translated from) → a (N, h, w) map of logits, one per patch; with no
  condition (CycleGAN's critics), the image alone."""

  features: int = 64
  num_layers: int = 3
  normalisation: str = 'batch'
  axis_name: str | None = None
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, image: jax.Array, condition: jax.Array | None = None,
               train: bool = True) -> jax.Array:
    chex.assert_rank(image, 4)
    x = image
    if condition is not None:
      chex.assert_rank(condition, 4)
      chex.assert_equal_shape_prefix([image, condition], 3)
      x = jnp.concatenate([condition, image], axis=-1)
    normalised = self.normalisation != 'none'
    # Channels double with each layer, up to 8 times the first layer's (the paper's 64 → 512).
    widths = [self.features * min(2 ** layer, 8) for layer in range(self.num_layers + 1)]
    for layer, features in enumerate(widths):
      stride = 2 if layer < self.num_layers else 1
      x = _conv(features, stride, use_bias=layer == 0 or not normalised, kernel_init=self.kernel_init)(x)
      if layer:
        x = Normalisation(self.normalisation, self.axis_name)(x, train)
      x = nn.leaky_relu(x, LEAKY_SLOPE)
    scores = _conv(1, 1, use_bias=True, kernel_init=self.kernel_init)(x)[..., 0]
    side = score_map_size(image.shape[1], self.num_layers)
    chex.assert_shape(scores, (image.shape[0], side, score_map_size(image.shape[2], self.num_layers)))
    return scores
