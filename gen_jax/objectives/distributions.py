"""Log-densities and KL terms of the likelihood models, in nats, summed over event dimensions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2 * math.pi)


def _sum_event(x: jax.Array) -> jax.Array:
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x | logits) per example: minus the binary cross-entropy, summed over pixels."""
  return _sum_event(x * logits - jax.nn.softplus(logits))


def gaussian_log_likelihood(mean: jax.Array, x: jax.Array, std: float) -> jax.Array:
  """log N(x; mean, std² I) per example."""
  return _sum_event(-0.5 * jnp.square((x - mean) / std) - math.log(std) - 0.5 * _LOG_2PI)


def diagonal_normal_log_density(z: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """log N(z; mean, diag(exp(logvar))) over the last axis."""
  return jnp.sum(-0.5 * (_LOG_2PI + logvar + jnp.square(z - mean) * jnp.exp(-logvar)), axis=-1)


def standard_normal_log_density(z: jax.Array) -> jax.Array:
  return jnp.sum(-0.5 * (_LOG_2PI + jnp.square(z)), axis=-1)


def kl_to_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mean, diag(exp(logvar))) || N(0, I)) in closed form, over the last axis."""
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def reparameterize(rng: jax.Array, mean: jax.Array, logvar: jax.Array) -> jax.Array:
  """z = mean + exp(logvar / 2) · eps, eps ~ N(0, I): differentiable in mean and logvar."""
  return mean + jnp.exp(0.5 * logvar) * jax.random.normal(rng, mean.shape, mean.dtype)
