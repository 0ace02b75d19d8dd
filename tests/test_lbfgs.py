"""gen_jax.runtime.lbfgs: L-BFGS with a fixed step (PyTorch's `torch.optim.LBFGS` defaults), and
optax's L-BFGS with the unit step tried outside its line search's loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gen_jax.runtime import lbfgs

DIMENSION = 12


def quartic_problem(seed: int = 0):
  """A smooth strictly convex function (a quadratic plus a quartic) and a starting point."""
  rng = np.random.default_rng(seed)
  q = rng.normal(size=(DIMENSION, DIMENSION)).astype(np.float32)
  a = q @ q.T / DIMENSION + np.eye(DIMENSION, dtype=np.float32)
  b = rng.normal(size=DIMENSION).astype(np.float32)

  def f(x):
    return 0.5 * x @ (a @ x) - b @ x + 0.1 * jnp.sum(x ** 4)
  return f, rng.normal(size=DIMENSION).astype(np.float32)


def run(f, x, optimiser, iterations: int):
  @jax.jit
  def step(x, state):
    updates, state = optimiser.update(jax.grad(f)(x), state, x)
    return optax.apply_updates(x, updates), state

  state = optimiser.init(x)
  for _ in range(iterations):
    x, state = step(x, state)
  return x, state


def test_the_first_step_is_the_gradient_scaled_by_its_l1_norm_capped_at_one():
  optimiser = lbfgs.fixed_step_lbfgs(memory_size=3, learning_rate=0.5)
  x = jnp.zeros(4)
  large = jnp.array([3.0, -1.0, 0.5, 0.5])   # ‖g‖₁ = 5: the step shrinks to 1/5
  updates, _ = optimiser.update(large, optimiser.init(x), x)
  chex.assert_trees_all_close(updates, -0.5 * large / 5.0)
  small = jnp.array([0.1, -0.2, 0.0, 0.1])   # ‖g‖₁ < 1: the cap holds it at 1
  updates, _ = optimiser.update(small, optimiser.init(x), x)
  chex.assert_trees_all_close(updates, -0.5 * small)


def test_it_converges_on_a_convex_problem_with_one_gradient_an_iteration():
  f, start = quartic_problem()
  x, state = run(f, jnp.asarray(start), lbfgs.fixed_step_lbfgs(memory_size=5), 40)
  assert float(jnp.linalg.norm(jax.grad(f)(x))) < 1e-4
  assert int(state.count) == 40 and 0 < int(state.stored) <= 40


def test_the_direction_meets_the_secant_condition_of_the_newest_pair():
  # H_k y_{k-1} = s_{k-1}: asking for the direction of y (at an unchanged point, whose pair is
  # rejected) must give back s.
  f, start = quartic_problem(1)
  optimiser = lbfgs.fixed_step_lbfgs(memory_size=4)
  x, state = run(f, jnp.asarray(start), optimiser, 6)
  newest = (int(state.stored) - 1) % 4
  s, y = state.steps[newest], state.grad_changes[newest]
  probe = state._replace(params=x, grad=state.grad + 1.0)   # y·s of the probe's pair: 0, not stored
  updates, after = optimiser.update(y, probe, x)
  assert int(after.stored) == int(state.stored)
  chex.assert_trees_all_close(-updates, s, rtol=1e-3, atol=1e-6)


def test_a_pair_of_negative_curvature_is_not_stored():
  optimiser = lbfgs.fixed_step_lbfgs(memory_size=3)
  x0, x1 = jnp.zeros(2), jnp.array([1.0, 0.0])
  _, state = optimiser.update(jnp.array([1.0, 1.0]), optimiser.init(x0), x0)
  _, concave = optimiser.update(jnp.array([-1.0, 1.0]), state, x1)   # y·s = -2
  assert int(concave.stored) == 0 and float(concave.identity_scale) == 1.0
  _, convex = optimiser.update(jnp.array([3.0, 1.0]), state, x1)     # y·s = 2, y·y = 4
  assert int(convex.stored) == 1 and float(convex.identity_scale) == pytest.approx(0.5)


def test_parameters_may_be_a_pytree_and_the_update_is_the_same_under_jit():
  f, start = quartic_problem(2)
  tree = {'a': jnp.asarray(start[:5]), 'b': jnp.asarray(start[5:]).reshape(7, 1)}

  def f_tree(params):
    return f(jnp.concatenate([params['a'], params['b'].ravel()]))

  optimiser = lbfgs.fixed_step_lbfgs(memory_size=3)
  x_tree, _ = run(f_tree, tree, optimiser, 5)
  x_flat, _ = run(f, jnp.asarray(start), optimiser, 5)
  chex.assert_trees_all_close(jnp.concatenate([x_tree['a'], x_tree['b'].ravel()]), x_flat, rtol=1e-6)
  state = optimiser.init(tree)
  grads = jax.grad(f_tree)(tree)
  chex.assert_trees_all_close(optimiser.update(grads, state, tree),
                              jax.jit(optimiser.update)(grads, state, tree))


def test_bad_settings_and_a_missing_params_argument_are_refused():
  with pytest.raises(ValueError, match='memory_size=0'):
    lbfgs.fixed_step_lbfgs(memory_size=0)
  with pytest.raises(ValueError, match='learning_rate=-1'):
    lbfgs.fixed_step_lbfgs(learning_rate=-1.0)
  optimiser = lbfgs.fixed_step_lbfgs()
  with pytest.raises(ValueError, match='needs the parameters'):
    optimiser.update(jnp.ones(2), optimiser.init(jnp.ones(2)))


def test_the_iterates_are_pytorchs():
  torch = pytest.importorskip('torch')   # the optional `bench` extra
  f, start = quartic_problem(3)
  x, _ = run(f, jnp.asarray(start), lbfgs.fixed_step_lbfgs(memory_size=5), 25)
  theirs = torch.tensor(start, requires_grad=True)
  optimiser = torch.optim.LBFGS([theirs], lr=1, max_iter=25, history_size=5, tolerance_grad=0,
                                tolerance_change=0)

  def closure():
    optimiser.zero_grad()
    at = jnp.asarray(theirs.detach().numpy())
    theirs.grad = torch.tensor(np.array(jax.grad(f)(at)))
    return torch.tensor(np.array(f(at)))
  optimiser.step(closure)
  assert optimiser.state[theirs]['n_iter'] == 25
  np.testing.assert_allclose(np.asarray(x), theirs.detach().numpy(), rtol=1e-5, atol=1e-6)


def run_with_line_search(f, x, optimiser, iterations: int):
  """optax's L-BFGS loop (value and gradient reused from the line search's state)."""
  value_and_grad = optax.value_and_grad_from_state(f)

  @jax.jit
  def step(x, state):
    value, grad = value_and_grad(x, state=state)
    updates, state = optimiser.update(grad, state, x, value=value, grad=grad, value_fn=f)
    return optax.apply_updates(x, updates), state, optax.tree.get(state, 'num_linesearch_steps')

  state, evaluations = optimiser.init(x), []
  for _ in range(iterations):
    x, state, count = step(x, state)
    evaluations.append(int(count))
  return x, evaluations


# At these scales the unit step fails the strong Wolfe test in some iterations (at 0.1 once where
# optax's search accepts it anyway, by its approximate test): the search then runs as optax's.
@pytest.mark.parametrize('scale', [0.1, 3.0])
def test_trying_the_unit_step_first_follows_optax_lbfgs(scale):
  f, start = quartic_problem(4)
  scaled = lambda x: f(scale * x)   # noqa: E731
  ours, our_counts = run_with_line_search(scaled, jnp.asarray(start), lbfgs.unit_step_first_lbfgs(5), 12)
  theirs, their_counts = run_with_line_search(scaled, jnp.asarray(start), optax.lbfgs(memory_size=5), 12)
  chex.assert_trees_all_close(ours, theirs, rtol=1e-5, atol=1e-6)
  # The same search, plus the trial made outside it whenever the unit step was not kept.
  assert all(o in (t, t + 1) for o, t in zip(our_counts, their_counts))
  assert any(o == t + 1 for o, t in zip(our_counts, their_counts))
  assert sum(o == 1 for o in our_counts) >= 8   # mostly the unit step, kept outside the loop
