"""L-BFGS in two forms that keep the loss's evaluations out of loop bodies, where XLA's CPU
backend runs convolutions through a slower path (PERFORMANCE.md):

- `fixed_step_lbfgs`: no line search, the algorithm of PyTorch's `torch.optim.LBFGS` with its
  defaults, which the course's style transfer runs: one evaluation of the loss and its gradient
  an iteration, made by the caller before `update`.
- `unit_step_first_lbfgs`: optax's L-BFGS with its zoom line search, whose first trial, the unit
  step, is evaluated in straight-line code and accepted when it meets the strong Wolfe
  conditions; only when it does not does the zoom search (in its loop) take over.

The fixed step's direction is the two-loop recursion over the newest `memory_size` curvature pairs
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
from jax import lax
from jax.flatten_util import ravel_pytree

CURVATURE_FLOOR = 1e-10   # PyTorch's threshold on y·s
# optax.lbfgs's zoom line search: its constants of sufficient decrease and curvature, its budget.
SLOPE_RTOL, CURVATURE_RTOL, MAX_LINESEARCH_STEPS = 1e-4, 0.9, 20


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


def unit_step_first(line_search: optax.GradientTransformationExtraArgs,
                    slope_rtol: float = SLOPE_RTOL,
                    curvature_rtol: float = CURVATURE_RTOL) -> optax.GradientTransformationExtraArgs:
  """`line_search` (optax's zoom, which starts from the unit step) with its first trial taken
  outside its loop: the unit step is evaluated here and kept when it meets the strong Wolfe
  conditions, which the zoom search would accept too; otherwise the zoom search runs as before
  (evaluating the unit step again). The state is the zoom search's; `num_linesearch_steps`
  counts every evaluation made here."""

  def update(updates, state, params, *, value, grad, value_fn, **extra_args):
    trial_value, trial_grad = jax.value_and_grad(value_fn)(optax.apply_updates(params, updates),
                                                           **extra_args)
    slope = optax.tree.real(optax.tree.vdot(updates, grad))
    trial_slope = optax.tree.real(optax.tree.vdot(updates, trial_grad))
    accepted = ((trial_value <= value + slope_rtol * slope)
                & (jnp.abs(trial_slope) <= curvature_rtol * jnp.abs(slope)))

    def keep_unit_step():
      info = state.info._replace(num_linesearch_steps=jnp.ones_like(state.info.num_linesearch_steps),
                                 decrease_error=jnp.zeros_like(state.info.decrease_error),
                                 curvature_error=jnp.zeros_like(state.info.curvature_error))
      kept = state._replace(learning_rate=jnp.ones_like(state.learning_rate),
                            value=trial_value.astype(state.value.dtype), grad=trial_grad, info=info)
      return updates, kept

    def search():
      searched_updates, searched = line_search.update(updates, state, params, value=value,
                                                      grad=grad, value_fn=value_fn, **extra_args)
      steps = searched.info.num_linesearch_steps + 1   # and the trial above
      return searched_updates, searched._replace(info=searched.info._replace(num_linesearch_steps=steps))

    return lax.cond(accepted, keep_unit_step, search)

  return optax.GradientTransformationExtraArgs(line_search.init, update)


def unit_step_first_lbfgs(memory_size: int = 10) -> optax.GradientTransformationExtraArgs:
  """`optax.lbfgs(memory_size=...)` with the unit step tried first (`unit_step_first`)."""
  zoom = optax.scale_by_zoom_linesearch(max_linesearch_steps=MAX_LINESEARCH_STEPS,
                                        initial_guess_strategy='one')
  return optax.lbfgs(memory_size=memory_size, linesearch=unit_step_first(zoom))
