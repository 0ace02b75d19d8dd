"""The course assignment's convolutional VAE: conv encoder to (mean, log-variance), transposed-conv decoder."""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax

from gen_jax.objectives.distributions import reparameterize
from gen_jax.cpu_speed import convolution
from gen_jax.cpu_speed.conv_transpose import SubPixelConvTranspose


class Encoder(nn.Module):
  """3×3 convs (the last with stride 2), a dense layer, then the Gaussian posterior's parameters."""

  conv_features: Sequence[int]
  hidden_dim: int
  latent_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    chex.assert_rank(x, 4)
    for index, features in enumerate(self.conv_features):
      stride = 2 if index == len(self.conv_features) - 1 else 1
      x = nn.relu(nn.Conv(features, (3, 3), strides=stride, padding='SAME',
                         conv_general_dilated=convolution.conv_general_dilated)(x))
    x = nn.relu(nn.Dense(self.hidden_dim)(x.reshape(x.shape[0], -1)))
    mean = nn.Dense(self.latent_dim, name='mean')(x)
    logvar = nn.Dense(self.latent_dim, name='logvar')(x)
    return mean, logvar


class Decoder(nn.Module):
  """Mirror of the encoder: dense layers, a stride-2 transposed conv, transposed convs to logits."""

  conv_features: Sequence[int]
  hidden_dim: int
  image_shape: tuple[int, int, int]

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    chex.assert_rank(z, 2)
    height, width, channels = self.image_shape
    start = (height // 2, width // 2, self.conv_features[-1])
    x = nn.relu(nn.Dense(self.hidden_dim)(z))
    x = nn.relu(nn.Dense(start[0] * start[1] * start[2])(x))
    x = x.reshape((z.shape[0],) + start)
    for index, features in enumerate(reversed(self.conv_features[:-1])):
      stride = 2 if index == 0 else 1
      x = nn.relu(SubPixelConvTranspose(features, (3, 3), strides=stride, padding='SAME')(x))
    logits = SubPixelConvTranspose(channels, (3, 3), strides=2 if len(self.conv_features) == 1 else 1,
                                   padding='SAME')(x)
    chex.assert_shape(logits, (z.shape[0], height, width, channels))
    return logits


class VAE(nn.Module):
  """x → q(z|x) → z → logits of p(x|z)."""

  conv_features: Sequence[int]
  hidden_dim: int
  latent_dim: int
  image_shape: tuple[int, int, int]

  def setup(self):
    self.encoder = Encoder(self.conv_features, self.hidden_dim, self.latent_dim)
    self.decoder = Decoder(self.conv_features, self.hidden_dim, self.image_shape)

  def __call__(self, x: jax.Array, rng: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    mean, logvar = self.encode(x)
    return self.decode(reparameterize(rng, mean, logvar)), mean, logvar

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    chex.assert_shape(x, (None,) + tuple(self.image_shape))
    mean, logvar = self.encoder(x)
    chex.assert_shape([mean, logvar], (x.shape[0], self.latent_dim))
    return mean, logvar

  def decode(self, z: jax.Array) -> jax.Array:
    chex.assert_shape(z, (None, self.latent_dim))
    return self.decoder(z)
