"""Autoencoder modules: an encoder to a code, a code activation, and a decoder back to the image.

Encoders and decoders come in matching pairs, by name (`ARCHITECTURES`):
- `linear`: one dense layer each way and no nonlinearity; trained on squared error it learns the
  principal subspace of the data (the course material's link between autoencoders and PCA);
- `mlp`: dense layers with ReLU between them (none: a single-layer encoder and decoder);
- `conv`: 3×3 stride-2 convolutions down to a dense bottleneck, and stride-2 transposed
  convolutions back up (sub-pixel form, see gen_jax.cpu_speed.conv_transpose).
The decoder returns the raw output (pixel values or logits); the family's reconstruction loss
says how to read it. The code may be larger than the image (overcomplete).
"""

from __future__ import annotations

from typing import Callable, Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.cpu_speed import convolution
from gen_jax.cpu_speed.conv_transpose import SubPixelConvTranspose

CODE_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'linear': lambda z: z,
    'relu': nn.relu,
    'sigmoid': nn.sigmoid,
}


def _flatten(x: jax.Array) -> jax.Array:
  return x.reshape(x.shape[0], -1)


class DenseEncoder(nn.Module):
  """Dense layers (ReLU after each hidden one) from the flattened image to the code."""

  hidden_dims: Sequence[int]
  code_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = _flatten(x)
    for width in self.hidden_dims:
      h = nn.relu(nn.Dense(width)(h))
    return nn.Dense(self.code_dim, name='code')(h)


class DenseDecoder(nn.Module):
  """Dense layers (ReLU after each hidden one) from the code to the image's raw output."""

  hidden_dims: Sequence[int]
  image_shape: tuple[int, int, int]

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    h = z
    for width in self.hidden_dims:
      h = nn.relu(nn.Dense(width)(h))
    out = nn.Dense(int(np.prod(self.image_shape)), name='output')(h)
    return out.reshape((z.shape[0],) + tuple(self.image_shape))


class ConvEncoder(nn.Module):
  """3×3 stride-2 convolutions (ReLU), each halving the image, then a dense layer to the code."""

  conv_features: Sequence[int]
  code_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = x
    for features in self.conv_features:
      h = nn.relu(nn.Conv(features, (3, 3), strides=2, padding='SAME',
                          conv_general_dilated=convolution.conv_general_dilated)(h))
    return nn.Dense(self.code_dim, name='code')(_flatten(h))


class ConvDecoder(nn.Module):
  """Dense layer to the smallest feature map, then stride-2 transposed convolutions back up."""

  conv_features: Sequence[int]
  image_shape: tuple[int, int, int]

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    height, width, channels = self.image_shape
    scale = 2 ** len(self.conv_features)
    start = (height // scale, width // scale, self.conv_features[-1])
    h = nn.relu(nn.Dense(int(np.prod(start)))(z)).reshape((z.shape[0],) + start)
    for features in reversed(self.conv_features[:-1]):
      h = nn.relu(SubPixelConvTranspose(features, (3, 3), strides=2, padding='SAME')(h))
    return SubPixelConvTranspose(channels, (3, 3), strides=2, padding='SAME', name='output')(h)


def linear_pair(code_dim: int, hidden_dims: Sequence[int], conv_features: Sequence[int],
                image_shape: tuple[int, int, int]):
  del hidden_dims, conv_features
  return DenseEncoder((), code_dim), DenseDecoder((), image_shape)


def mlp_pair(code_dim: int, hidden_dims: Sequence[int], conv_features: Sequence[int],
             image_shape: tuple[int, int, int]):
  del conv_features
  hidden = tuple(hidden_dims)
  return DenseEncoder(hidden, code_dim), DenseDecoder(tuple(reversed(hidden)), image_shape)


def conv_pair(code_dim: int, hidden_dims: Sequence[int], conv_features: Sequence[int],
              image_shape: tuple[int, int, int]):
  del hidden_dims
  features = tuple(conv_features)
  return ConvEncoder(features, code_dim), ConvDecoder(features, image_shape)


# Architecture name → builder of its (encoder, decoder) from the layer sizes and image shape.
ARCHITECTURES = {'linear': linear_pair, 'mlp': mlp_pair, 'conv': conv_pair}


class Autoencoder(nn.Module):
  """x → code = activation(encoder(x)) → decoder(code), the raw reconstruction."""

  encoder: nn.Module
  decoder: nn.Module
  code_activation: str
  code_dim: int
  image_shape: tuple[int, int, int]

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    code = self.encode(x)
    return self.decode(code), code

  def encode(self, x: jax.Array) -> jax.Array:
    chex.assert_shape(x, (None,) + tuple(self.image_shape))
    code = CODE_ACTIVATIONS[self.code_activation](self.encoder(x))
    chex.assert_shape(code, (x.shape[0], self.code_dim))
    return code

  def decode(self, code: jax.Array) -> jax.Array:
    chex.assert_shape(code, (None, self.code_dim))
    out = self.decoder(code)
    chex.assert_shape(out, (code.shape[0],) + tuple(self.image_shape))
    return out


def build(architecture: str, code_dim: int, code_activation: str, image_shape: tuple[int, int, int],
          hidden_dims: Sequence[int] = (), conv_features: Sequence[int] = ()) -> Autoencoder:
  """The autoencoder `architecture` names, for images of `image_shape`."""
  image_shape = tuple(image_shape)
  encoder, decoder = ARCHITECTURES[architecture](code_dim, hidden_dims, conv_features, image_shape)
  return Autoencoder(encoder, decoder, code_activation, code_dim, image_shape)


def decoder_kernel(params) -> jnp.ndarray:
  """The linear autoencoder's (code_dim, D) decoder matrix: its rows span the reconstructions."""
  return params['decoder']['output']['kernel']
