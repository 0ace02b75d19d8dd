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
  """||∇ₓ D(x)||₂ for each example, by `jax.grad` of the batch's summed scores.

  `critic(x, *conditions)` scores a batch, one score per example; `conditions` are per-example
  inputs (class labels, say) batched along axis 0, or None. The critic must score each example on
  its own (no BatchNorm), so that the gradient of the sum with respect to example i is that
  example's own gradient ∇D(x_i): what `jax.vmap` of the single-example `jax.grad` computes
  (tests/test_gan_losses.py checks the two agree). The penalty's weight gradient then keeps the
  batch in every convolution, where vmap made each layer's second derivative a per-example kernel
  gradient, much slower on CPU.
  """
  def total_score(x):
    scores = critic(x, *conditions)
    chex.assert_shape(scores, (x.shape[0],))
    return jnp.sum(scores)

  gradients = jax.grad(total_score)(x)
  chex.assert_equal_shape([gradients, x])
  squared = jnp.sum(jnp.square(gradients.reshape(x.shape[0], -1)), axis=-1)
  return jnp.sqrt(squared + _NORM_EPSILON)


def gradient_penalty(critic: Callable[..., jax.Array], rng: jax.Array, real: jax.Array,
                     fake: jax.Array, *conditions) -> tuple[jax.Array, jax.Array]:
  """E[(||∇D(x̂)||₂ - 1)²] over random interpolates x̂ (WGAN-GP), and the mean gradient norm."""
  norms = input_gradient_norms(critic, interpolates(rng, real, fake), *conditions)
  return jnp.mean(jnp.square(norms - 1.0)), jnp.mean(norms)
