"""Per-image fidelity of a reconstruction to its clean original: mean squared error and PSNR."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

# PSNR of a perfect reconstruction would be infinite; errors are floored so it reads 100 dB.
_MIN_MSE = 1e-10


def mean_squared_error(images: jax.Array, reference: jax.Array) -> jax.Array:
  """(N,) mean over pixels and channels of the squared difference."""
  chex.assert_equal_shape([images, reference])
  return jnp.mean(jnp.square(images - reference).reshape(images.shape[0], -1), axis=-1)


def psnr_from_mse(mse: jax.Array, peak: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB, 10 log10(peak² / MSE)."""
  return 10.0 * jnp.log10(peak ** 2 / jnp.maximum(mse, _MIN_MSE))


def psnr(images: jax.Array, reference: jax.Array, peak: float = 1.0) -> jax.Array:
  """(N,) PSNR of each image against its reference, for images in [0, peak]."""
  return psnr_from_mse(mean_squared_error(images, reference), peak)
