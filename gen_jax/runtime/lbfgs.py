"""L-BFGS with a fixed step length and no line search: the algorithm of PyTorch's
`torch.optim.LBFGS` with its defaults, which the course's style transfer runs.

One evaluation of the loss and its gradient an iteration, made by the caller before `update`, and
no loop inside the update: on XLA's CPU backend a line search's evaluations run inside a loop
body, where convolutions take a slower path (PERFORMANCE.md), so this form keeps every
evaluation in straight-line code.

The direction is the two-loop recursion over the newest `memory_size` curvature pairs
(s = x_k − x_{k−1}, y = g_k − g_{k−1}), from an identity scaled by y·s / y·y of the newest pair.
Without a line search nothing enforces y·s > 0, which keeps the estimate positive definite: a
pair with y·s ≤ `curvature_floor` is not stored, as PyTorch does. The step is `learning_rate`
times the direction, the first one times min(1, 1 / ‖g‖₁) besides, PyTorch's guard against a
large first gradient. Parameters may be any pytree; the state holds them flattened.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

CURVATURE_FLOOR = 1e-10   # PyTorch's threshold on y·s


class FixedStepLBFGSState(NamedTuple):
  count: jax.Array          # iterations taken
  stored: jax.Array         # curvature pairs stored so far (the newest sits at (stored - 1) % m)
  params: jax.Array         # x_{k-1}, flattened
  grad: jax.Array           # g_{k-1}, flattened
  steps: jax.Array          # (memory_size, n): s of the stored pairs
  grad_changes: jax.Array   # (memory_size, n): y of the stored pairs
  inverse_curvatures: jax.Array   # (memory_size,): 1 / (y·s)
  identity_scale: jax.Array       # y·s / y·y of the newest stored pair


def fixed_step_lbfgs(memory_size: int = 10, learning_rate: float = 1.0,
                     curvature_floor: float = CURVATURE_FLOOR) -> optax.GradientTransformation:
  """`update(grads, state, params)` → the step to add to `params` (see the module docstring)."""
  if memory_size < 1:
    raise ValueError(f'memory_size={memory_size}: must be at least 1')
  if learning_rate <= 0:
    raise ValueError(f'learning_rate={learning_rate}: must be positive')

  def init(params) -> FixedStepLBFGSState:
    flat, _ = ravel_pytree(params)
    history = jnp.zeros((memory_size,) + flat.shape, flat.dtype)
    return FixedStepLBFGSState(
        count=jnp.zeros((), jnp.int32), stored=jnp.zeros((), jnp.int32), params=jnp.zeros_like(flat),
        grad=jnp.zeros_like(flat), steps=history, grad_changes=history,
        inverse_curvatures=jnp.zeros((memory_size,), flat.dtype),
        identity_scale=jnp.ones((), flat.dtype))

  def update(grads, state: FixedStepLBFGSState, params=None):
    if params is None:
      raise ValueError('fixed_step_lbfgs needs the parameters: update(grads, state, params)')
    g, unravel = ravel_pytree(grads)
    x, _ = ravel_pytree(params)
    s, y = x - state.params, g - state.grad
    curvature = jnp.vdot(y, s)
    keep = (state.count > 0) & (curvature > curvature_floor)
    slot = state.stored % memory_size
    steps = jnp.where(keep, state.steps.at[slot].set(s), state.steps)
    grad_changes = jnp.where(keep, state.grad_changes.at[slot].set(y), state.grad_changes)
    inverse_curvatures = jnp.where(
        keep, state.inverse_curvatures.at[slot].set(1.0 / jnp.where(keep, curvature, 1.0)),
        state.inverse_curvatures)
    identity_scale = jnp.where(keep, curvature / jnp.maximum(jnp.vdot(y, y), curvature_floor),
                               state.identity_scale)
    stored = state.stored + keep.astype(jnp.int32)

    # Two-loop recursion, newest pair first; slots not yet filled contribute nothing.
    order = [((stored - 1 - i) % memory_size, i < stored) for i in range(memory_size)]
    q, alphas = g, []
    for index, filled in order:
      alpha = jnp.where(filled, inverse_curvatures[index] * jnp.vdot(steps[index], q), 0.0)
      q = q - alpha * grad_changes[index]
      alphas.append(alpha)
    r = identity_scale * q
    for (index, filled), alpha in zip(reversed(order), reversed(alphas)):
      beta = jnp.where(filled, inverse_curvatures[index] * jnp.vdot(grad_changes[index], r), 0.0)
      r = r + (alpha - beta) * steps[index]

    first_scale = jnp.minimum(1.0, 1.0 / jnp.maximum(jnp.sum(jnp.abs(g)), jnp.finfo(g.dtype).tiny))
    step_length = learning_rate * jnp.where(state.count == 0, first_scale, 1.0)
    new_state = FixedStepLBFGSState(
        count=state.count + 1, stored=stored, params=x, grad=g, steps=steps,
        grad_changes=grad_changes, inverse_curvatures=inverse_curvatures,
        identity_scale=identity_scale)
    return unravel(-step_length * r), new_state

  return optax.GradientTransformation(init, update)
