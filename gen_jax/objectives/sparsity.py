"""Sparse codes: the penalties that ask an autoencoder for them, and the measure of how sparse a code is.

The penalty is added to the reconstruction loss with weight `model.sparsity_weight` (lambda):
- `l1`: the code's L1 norm, sum_j |z_j|, per example (averaged over the batch);
- `kl`: sum_j KL(rho || rho_hat_j) between a target activation rho and each unit's mean
  activation rho_hat_j over the (global) batch; for codes in (0, 1) (sigmoid code activation).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from gen_jax.runtime import parallel

# Mean activations are kept this far from 0 and 1 so the KL penalty stays finite.
_EPS = 1e-6

# (code, target mean activation, pmap axis name or None) -> scalar penalty
Penalty = Callable[[jax.Array, float, str | None], jax.Array]


def no_penalty(code: jax.Array, target: float, axis_name: str | None = None) -> jax.Array:
  del target, axis_name
  return jnp.zeros((), code.dtype)


def l1_penalty(code: jax.Array, target: float, axis_name: str | None = None) -> jax.Array:
  """Mean over the batch of sum_j |z_j| (the target activation plays no part)."""
  del target, axis_name
  return jnp.mean(jnp.sum(jnp.abs(code), axis=-1))


def bernoulli_kl(target: float, mean: jax.Array) -> jax.Array:
  """KL(Bernoulli(target) || Bernoulli(mean)), elementwise."""
  mean = jnp.clip(mean, _EPS, 1.0 - _EPS)
  return target * jnp.log(target / mean) + (1.0 - target) * jnp.log((1.0 - target) / (1.0 - mean))


def kl_penalty(code: jax.Array, target: float, axis_name: str | None = None) -> jax.Array:
  """sum_j KL(rho || rho_hat_j), rho_hat_j the unit's mean activation over the whole batch."""
  mean_activation = parallel.cross_replica_mean(jnp.mean(code, axis=0), axis_name)
  return jnp.sum(bernoulli_kl(target, mean_activation))


PENALTIES: dict[str, Penalty] = {'none': no_penalty, 'l1': l1_penalty, 'kl': kl_penalty}


def fraction_near_zero(code: jax.Array, threshold: float) -> jax.Array:
  """(N,) fraction of each example's code units whose magnitude is at most `threshold`."""
  return jnp.mean((jnp.abs(code) <= threshold).astype(jnp.float32), axis=-1)
