"""Keeping a Wasserstein critic (close to) 1-Lipschitz: weight clipping and the gradient penalty."""

from __future__ import annotations

from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp

# Inside the square root of the gradient norm, so that its derivative stays finite at zero.
_NORM_EPSILON = 1e-12


def clip_weights(params: Any, bound: float) -> Any:
  """Every parameter clipped to [-bound, bound] (the original WGAN's crude Lipschitz bound)."""
  return jax.tree.map(lambda p: jnp.clip(p, -bound, bound), params)


def interpolates(rng: jax.Array, real: jax.Array, fake: jax.Array) -> jax.Array:
  """x̂ = ε x + (1 - ε) G(z), one ε ~ U[0, 1] per example: points between the two distributions."""
  chex.assert_equal_shape([real, fake])
  epsilon = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  return epsilon * real + (1.0 - epsilon) * fake


def input_gradient_norms(critic: Callable[..., jax.Array], x: jax.Array, *conditions) -> jax.Array:
  """||∇ₓ D(x)||₂ for each example, by `jax.grad` of the single-example critic, vmapped.

  `critic(x, *conditions)` scores one example (no batch axis) and returns a scalar; `conditions`
  are per-example inputs (class labels, say) batched along axis 0, or None.
  """
  gradients = jax.vmap(jax.grad(critic))(x, *conditions)
  chex.assert_equal_shape([gradients, x])
  squared = jnp.sum(jnp.square(gradients.reshape(x.shape[0], -1)), axis=-1)
  return jnp.sqrt(squared + _NORM_EPSILON)


def gradient_penalty(critic: Callable[..., jax.Array], rng: jax.Array, real: jax.Array,
                     fake: jax.Array, *conditions) -> tuple[jax.Array, jax.Array]:
  """E[(||∇D(x̂)||₂ - 1)²] over random interpolates x̂ (WGAN-GP), and the mean gradient norm."""
  norms = input_gradient_norms(critic, interpolates(rng, real, fake), *conditions)
  return jnp.mean(jnp.square(norms - 1.0)), jnp.mean(norms)
