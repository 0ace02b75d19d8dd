"""The losses of neural style transfer (Gatys et al., 2016), as pure functions of feature maps.

Content: the mean squared difference between the image's features and the content image's, at
one layer. Style: the mean squared difference between Gram matrices, the channels' correlations
summed over positions, which keep what textures share and drop where things are. Each Gram matrix
is divided by its feature map's number of elements (H·W·C), so that its scale depends neither on
the image's size nor on the layer's width, and style images of any size compare with the result.
Total variation: the mean squared difference between neighbouring pixels, a smoothness prior.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def gram_matrix(features: jax.Array) -> jax.Array:
  """(N, H, W, C) features → (N, C, C) Gram matrices, each divided by H·W·C."""
  chex.assert_rank(features, 4)
  batch, height, width, channels = features.shape
  flat = features.reshape(batch, height * width, channels)
  return jnp.einsum('npc,npd->ncd', flat, flat) / (height * width * channels)


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared difference between two feature maps of one shape."""
  chex.assert_equal_shape([features, target])
  return jnp.mean(jnp.square(features - target))


def style_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
  """Mean squared difference between the Gram matrices of `features` and a target (N, C, C)."""
  gram = gram_matrix(features)
  chex.assert_equal_shape([gram, target_gram])
  return jnp.mean(jnp.square(gram - target_gram))


def total_variation(images: jax.Array) -> jax.Array:
  """Mean squared difference between vertically and between horizontally adjacent pixels, summed
  over the two directions, of (N, H, W, C) images."""
  chex.assert_rank(images, 4)
  down = jnp.mean(jnp.square(images[:, 1:] - images[:, :-1]))
  right = jnp.mean(jnp.square(images[:, :, 1:] - images[:, :, :-1]))
  return down + right
