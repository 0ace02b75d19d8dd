"""Adversarial losses against hand-computed values; the gradient penalty, weight clipping, latent priors."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.objectives import adversarial_losses, latent_priors, lipschitz
from gen_jax.models.gan import Discriminator

REAL = jnp.array([0.0, 2.0])
FAKE = jnp.array([-1.0, 2.0])


def _sigmoid(x: float) -> float:
  return 1.0 / (1.0 + math.exp(-x))


def _mean(values) -> float:
  return sum(values) / len(values)


def _hand_computed(name: str) -> tuple[float, float]:
  """(critic loss, generator loss) of REAL and FAKE, written out from each loss's definition."""
  real, fake = [float(v) for v in REAL], [float(v) for v in FAKE]
  bce_critic = (_mean([-math.log(_sigmoid(r)) for r in real])
                + _mean([-math.log(1 - _sigmoid(f)) for f in fake]))
  return {
      'non_saturating': (bce_critic, _mean([-math.log(_sigmoid(f)) for f in fake])),
      'minimax': (bce_critic, _mean([math.log(1 - _sigmoid(f)) for f in fake])),
      'least_squares': (_mean([(r - 1) ** 2 for r in real]) + _mean([f ** 2 for f in fake]),
                        _mean([(f - 1) ** 2 for f in fake])),
      'wasserstein': (_mean(fake) - _mean(real), -_mean(fake)),
      'hinge': (_mean([max(0.0, 1 - r) for r in real]) + _mean([max(0.0, 1 + f) for f in fake]),
                -_mean(fake)),
  }[name]


@pytest.mark.parametrize('name', sorted(adversarial_losses.LOSSES))
def test_loss_matches_its_hand_computed_value(name):
  loss = adversarial_losses.LOSSES[name]
  critic, generator = _hand_computed(name)
  np.testing.assert_allclose(float(loss.critic(REAL, FAKE)), critic, rtol=1e-6)
  np.testing.assert_allclose(float(loss.generator(FAKE)), generator, rtol=1e-6, atol=1e-7)


def test_hand_computed_values_are_the_expected_numbers():
  # A few of the values above, worked out on paper, so the reference itself is checked.
  assert _hand_computed('least_squares') == (1.0 + 2.5, 2.5)
  assert _hand_computed('wasserstein') == (-0.5, -0.5)
  assert _hand_computed('hinge') == (0.5 + 1.5, -0.5)
  np.testing.assert_allclose(_hand_computed('non_saturating')[0],
                             (math.log(2) + math.log1p(math.exp(-2))) / 2
                             + (math.log1p(math.exp(-1)) + math.log1p(math.exp(2))) / 2)


@pytest.mark.parametrize('name', ['non_saturating', 'minimax'])
def test_cross_entropy_losses_stay_finite_for_confident_critics(name):
  loss = adversarial_losses.LOSSES[name]
  extreme = jnp.array([-200.0, 200.0])
  chex.assert_tree_all_finite((loss.critic(extreme, extreme), loss.generator(extreme),
                               jax.grad(loss.generator)(extreme)))


def test_non_saturating_generator_keeps_gradients_where_minimax_saturates():
  rejected = jnp.array([-8.0])   # the critic is sure the sample is fake
  non_saturating = jax.grad(adversarial_losses.LOSSES['non_saturating'].generator)(rejected)
  minimax = jax.grad(adversarial_losses.LOSSES['minimax'].generator)(rejected)
  assert abs(float(non_saturating[0])) > 100 * abs(float(minimax[0]))


# Gradient penalty ---------------------------------------------------------------------------------

def _real_and_fake(shape=(6, 4, 4, 1)):
  return (jax.random.normal(jax.random.PRNGKey(0), shape),
          jax.random.normal(jax.random.PRNGKey(1), shape))


def _linear_critic(weight_norm: float):
  direction = jax.random.normal(jax.random.PRNGKey(2), (4, 4, 1))
  weight = weight_norm * direction / jnp.linalg.norm(direction)
  return lambda x: jnp.sum(weight * x, axis=(1, 2, 3)) + 0.3


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic():
  real, fake = _real_and_fake()
  penalty, norm = lipschitz.gradient_penalty(_linear_critic(1.0), jax.random.PRNGKey(3), real, fake)
  np.testing.assert_allclose(float(penalty), 0.0, atol=1e-10)
  np.testing.assert_allclose(float(norm), 1.0, rtol=1e-6)


def test_gradient_penalty_is_positive_otherwise():
  real, fake = _real_and_fake()
  rng = jax.random.PRNGKey(3)
  penalty, norm = lipschitz.gradient_penalty(_linear_critic(3.0), rng, real, fake)
  np.testing.assert_allclose(float(penalty), 4.0, rtol=1e-5)   # (3 - 1)²
  np.testing.assert_allclose(float(norm), 3.0, rtol=1e-6)
  # A non-linear critic: D(x) = ½‖x‖², so ∇D(x̂) = x̂ and the penalty is E[(‖x̂‖ - 1)²].
  quadratic = lambda x: 0.5 * jnp.sum(jnp.square(x), axis=(1, 2, 3))
  penalty, _ = lipschitz.gradient_penalty(quadratic, rng, real, fake)
  x_hat = lipschitz.interpolates(rng, real, fake)
  expected = jnp.mean(jnp.square(jnp.linalg.norm(x_hat.reshape(6, -1), axis=-1) - 1.0))
  np.testing.assert_allclose(float(penalty), float(expected), rtol=1e-5)
  assert float(penalty) > 0


def test_gradient_norms_are_per_example_and_use_per_example_conditions():
  x = jnp.arange(12.0).reshape(3, 2, 2, 1)
  scales = jnp.array([1.0, 2.0, 5.0])
  # The critic of example i is D(x_i; c_i) = c_i · sum(x_i): its input gradient norm is |c_i| · 2.
  norms = lipschitz.input_gradient_norms(lambda x, c: c * jnp.sum(x, axis=(1, 2, 3)), x, scales)
  np.testing.assert_allclose(np.asarray(norms), 2.0 * np.asarray(scales), rtol=1e-6)


def test_gradient_norms_equal_vmapped_per_example_gradients_of_the_critic_network():
  """The summed-score gradient is each example's own: checked on a conditional conv critic.

  Both ways are compiled (jax.jit): their second derivatives take far longer op by op."""
  critic = Discriminator(conv_features=(4, 8), dense_features=(), batch_norm=False)
  x = jax.random.normal(jax.random.PRNGKey(0), (5, 8, 8, 1))
  labels = jax.nn.one_hot(jnp.arange(5) % 3, 3)
  params = critic.init(jax.random.PRNGKey(1), x, labels)

  def summed_norms(params):
    return lipschitz.input_gradient_norms(lambda x, c: critic.apply(params, x, c), x, labels)

  def vmapped_norms(params):
    per_example = jax.vmap(jax.grad(lambda x, c: critic.apply(params, x[None], c[None])[0]))(x, labels)
    return jnp.linalg.norm(per_example.reshape(5, -1), axis=-1)

  chex.assert_trees_all_close(jax.jit(summed_norms)(params), jax.jit(vmapped_norms)(params),
                              rtol=1e-5)
  # The penalty's weight gradient (a second derivative) agrees too.
  penalty_gradient = lambda norms_of: jax.jit(jax.grad(
      lambda params: jnp.mean(jnp.square(norms_of(params) - 1.0))))(params)
  chex.assert_trees_all_close(penalty_gradient(summed_norms), penalty_gradient(vmapped_norms),
                              rtol=1e-4, atol=1e-6)


def test_interpolates_lie_between_real_and_fake():
  real, fake = jnp.zeros((500, 2, 2, 1)), jnp.ones((500, 2, 2, 1))
  x_hat = lipschitz.interpolates(jax.random.PRNGKey(0), real, fake)
  per_example = x_hat.reshape(500, -1)
  assert float(per_example.min()) >= 0.0 and float(per_example.max()) <= 1.0
  np.testing.assert_allclose(per_example, per_example[:, :1] * np.ones((1, 4)))  # one ε per example
  assert 0.4 < float(per_example.mean()) < 0.6


def test_weight_clipping_bounds_every_parameter():
  params = {'dense': {'kernel': jnp.array([[-0.5, 0.005], [0.02, -0.001]]), 'bias': jnp.array([3.0])}}
  clipped = lipschitz.clip_weights(params, 0.01)
  chex.assert_trees_all_close(clipped, {'dense': {'kernel': jnp.array([[-0.01, 0.005], [0.01, -0.001]]),
                                                  'bias': jnp.array([0.01])}})


# Latent priors ------------------------------------------------------------------------------------

def test_priors_have_their_support_and_spread():
  shape = (20000, 16)
  rng = jax.random.PRNGKey(0)
  samples = {name: np.asarray(prior(rng, shape)) for name, prior in latent_priors.PRIORS.items()}
  for name, z in samples.items():
    chex.assert_shape(z, shape)
    assert abs(z.mean()) < 0.02, name
  assert samples['uniform'].min() >= -1.0 and samples['uniform'].max() <= 1.0
  np.testing.assert_allclose(samples['uniform'].var(), 1 / 3, rtol=0.03)
  np.testing.assert_allclose(samples['normal'].var(), 1.0, rtol=0.03)
  np.testing.assert_allclose(samples['laplace'].var(), 1.0, rtol=0.05)
  np.testing.assert_allclose(np.linalg.norm(samples['spherical'], axis=-1), 4.0, rtol=1e-5)
