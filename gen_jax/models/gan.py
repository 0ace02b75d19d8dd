"""Generator and discriminator (critic) of every GAN in the course material, as two configurable modules.

Generator: dense blocks (Dense, BatchNorm, ReLU), then either one dense layer to the image (the
fully connected GAN: z → 512 → 512 → 784) or a dense layer to a small feature map followed by
stride-2 4×4 transposed convolutions (DCGAN: z → 128×7×7 → 64×14×14 → 1×28×28).
Discriminator: stride-2 4×4 convolutions with LeakyReLU(0.2) (BatchNorm from the second on), then
dense blocks with LeakyReLU, then one score; with no convolutions it is a fully connected critic.
Its convolutions are `gen_jax.cpu_speed.convolution`'s, whose second derivatives (WGAN-GP's penalty) XLA's
CPU backend runs fast.

A conditional model gets one-hot class labels: concatenated to z in the generator, and to the
discriminator's input (as constant feature maps for a convolutional one).
BatchNorm follows PyTorch's conventions (momentum 0.1, epsilon 1e-5) and averages its batch
statistics over `axis_name` when the step runs under `jax.pmap`. A layer followed by BatchNorm has
no bias: BatchNorm subtracts it again, so its gradient is zero up to rounding, which an adaptive
optimiser would amplify into noise-driven updates (BatchNorm's own offset takes its place).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.cpu_speed import convolution
from gen_jax.cpu_speed.conv_transpose import SubPixelConvTranspose

LEAKY_SLOPE = 0.2
# stride-2 4×4 (transposed) convolutions with PyTorch's padding=1: each doubles (halves) the size.
KERNEL = (4, 4)
CONV_PADDING = ((1, 1), (1, 1))

OUTPUT_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'sigmoid': jax.nn.sigmoid,   # images in [0, 1]
    'tanh': jnp.tanh,            # images in [-1, 1]
}


def _batch_norm(train: bool, axis_name: str | None) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=axis_name)


def _with_condition(x: jax.Array, condition: jax.Array | None) -> jax.Array:
  """Appends per-example condition vectors along the last axis (broadcast over space for maps)."""
  if condition is None:
    return x
  chex.assert_rank(condition, 2)
  maps = jnp.broadcast_to(condition[:, None, None, :], x.shape[:-1] + condition.shape[-1:]) \
      if x.ndim == 4 else condition
  return jnp.concatenate([x, maps.astype(x.dtype)], axis=-1)


class Generator(nn.Module):
  """z (and a one-hot class) → image."""

  image_shape: tuple[int, int, int]
  dense_features: Sequence[int]
  conv_features: Sequence[int]
  output_activation: str
  batch_norm: bool = True
  axis_name: str | None = None

  @nn.compact
  def __call__(self, z: jax.Array, condition: jax.Array | None = None, train: bool = True) -> jax.Array:
    chex.assert_rank(z, 2)
    norm = functools.partial(_batch_norm, train, self.axis_name)
    height, width, channels = self.image_shape

    def block(x):
      return nn.relu(norm()(x) if self.batch_norm else x)

    biased = not self.batch_norm
    upsample = functools.partial(SubPixelConvTranspose, kernel_size=KERNEL, strides=2,
                                 padding='SAME')
    x = _with_condition(z, condition)
    for features in self.dense_features:
      x = block(nn.Dense(features, use_bias=biased)(x))
    if self.conv_features:
      scale = 2 ** len(self.conv_features)
      start = (height // scale, width // scale, self.conv_features[0])
      x = block(nn.Dense(start[0] * start[1] * start[2], use_bias=biased)(x))
      x = x.reshape((z.shape[0],) + start)
      for features in self.conv_features[1:]:
        x = block(upsample(features, use_bias=biased)(x))
      x = upsample(channels)(x)
    else:
      x = nn.Dense(height * width * channels)(x).reshape((z.shape[0],) + self.image_shape)
    images = OUTPUT_ACTIVATIONS[self.output_activation](x)
    chex.assert_shape(images, (z.shape[0],) + tuple(self.image_shape))
    return images


class Discriminator(nn.Module):
  """Image (and a one-hot class) → one unnormalised score per example."""

  conv_features: Sequence[int]
  dense_features: Sequence[int]
  batch_norm: bool = True
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, condition: jax.Array | None = None, train: bool = True) -> jax.Array:
    chex.assert_rank(x, 4)
    batch = x.shape[0]
    if self.conv_features:
      x = _with_condition(x, condition)
      for index, features in enumerate(self.conv_features):
        normalised = self.batch_norm and index > 0
        x = nn.Conv(features, KERNEL, strides=2, padding=CONV_PADDING, use_bias=not normalised,
                    conv_general_dilated=convolution.conv_general_dilated)(x)
        if normalised:
          x = _batch_norm(train, self.axis_name)(x)
        x = nn.leaky_relu(x, LEAKY_SLOPE)
      x = x.reshape(batch, -1)
    else:
      x = _with_condition(x.reshape(batch, -1), condition)
    for features in self.dense_features:
      x = nn.leaky_relu(nn.Dense(features)(x), LEAKY_SLOPE)
    scores = nn.Dense(1)(x)[:, 0]
    chex.assert_shape(scores, (batch,))
    return scores
