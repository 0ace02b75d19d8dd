"""Latent priors p(z) a generator can be trained on: `PRIORS[name](rng, shape) -> z`.

The course assignment asks what changes when the latent distribution changes; every prior here
has mean zero, so they differ in spread, tails and support only.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

Prior = Callable[[jax.Array, tuple[int, ...]], jax.Array]


def normal(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """N(0, I): the DCGAN notebook's prior."""
  return jax.random.normal(rng, shape)


def uniform(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """U[-1, 1]^d: the course assignment's prior."""
  return jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0)


def laplace(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Laplace(0, 1/√2) per component: unit variance like N(0, I), heavier tails."""
  return jax.random.laplace(rng, shape) / math.sqrt(2.0)


def spherical(rng: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Uniform on the sphere of radius √d, where N(0, I) puts almost all its mass in high d."""
  z = jax.random.normal(rng, shape)
  return z * math.sqrt(shape[-1]) / jnp.linalg.norm(z, axis=-1, keepdims=True)


PRIORS: dict[str, Prior] = {
    'normal': normal,
    'uniform': uniform,
    'laplace': laplace,
    'spherical': spherical,
}
