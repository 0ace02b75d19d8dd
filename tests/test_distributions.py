"""Likelihoods and KL terms against closed forms and direct computations."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from gen_jax.objectives import distributions


def test_bernoulli_log_likelihood_is_minus_binary_cross_entropy():
  logits = jnp.array([[[[0.3], [-2.0]], [[1.5], [0.0]]]])
  x = jnp.array([[[[1.0], [0.0]], [[0.25], [1.0]]]])
  p = jax.nn.sigmoid(logits)
  bce = -(x * jnp.log(p) + (1 - x) * jnp.log(1 - p))
  chex.assert_trees_all_close(distributions.bernoulli_log_likelihood(logits, x),
                              -jnp.sum(bce).reshape(1), rtol=1e-6)


def test_bernoulli_log_likelihood_is_stable_for_large_logits():
  logits = jnp.full((1, 2, 2, 1), 80.0)
  value = distributions.bernoulli_log_likelihood(logits, jnp.zeros_like(logits))
  chex.assert_tree_all_finite(value)
  chex.assert_trees_all_close(value, jnp.array([-320.0]), rtol=1e-6)


def test_gaussian_log_likelihood_matches_scipy():
  rng = np.random.default_rng(0)
  mean, x = rng.random((3, 4, 4, 1)), rng.random((3, 4, 4, 1))
  expected = stats.norm.logpdf(x, mean, 0.2).reshape(3, -1).sum(-1)
  chex.assert_trees_all_close(distributions.gaussian_log_likelihood(mean, x, 0.2), expected, rtol=1e-5)


def test_kl_closed_form_small_cases():
  # KL(N(0, 1) || N(0, 1)) = 0; KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, e) || N(0, 1)) = (e - 2) / 2.
  mean = jnp.array([[0.0], [1.0], [0.0]])
  logvar = jnp.array([[0.0], [0.0], [1.0]])
  chex.assert_trees_all_close(distributions.kl_to_standard_normal(mean, logvar),
                              jnp.array([0.0, 0.5, (math.e - 2) / 2]), atol=1e-6)


def test_kl_equals_expectation_of_log_ratio():
  key = jax.random.PRNGKey(0)
  mean, logvar = jnp.array([[0.7, -0.3]]), jnp.array([[-0.5, 0.4]])
  z = distributions.reparameterize(key, jnp.repeat(mean, 200_000, 0), jnp.repeat(logvar, 200_000, 0))
  monte_carlo = jnp.mean(distributions.diagonal_normal_log_density(z, mean, logvar)
                         - distributions.standard_normal_log_density(z))
  chex.assert_trees_all_close(monte_carlo, distributions.kl_to_standard_normal(mean, logvar)[0],
                              atol=5e-3)


def test_normal_log_densities_match_scipy():
  z = np.array([[0.3, -1.2], [2.0, 0.1]])
  mean, logvar = np.array([[0.1, 0.2]]), np.array([[0.5, -1.0]])
  expected = stats.norm.logpdf(z, mean, np.exp(0.5 * logvar)).sum(-1)
  chex.assert_trees_all_close(distributions.diagonal_normal_log_density(z, mean, logvar), expected, rtol=1e-5)
  chex.assert_trees_all_close(distributions.standard_normal_log_density(z),
                              stats.norm.logpdf(z).sum(-1), rtol=1e-5)


def test_reparameterisation_uses_half_log_variance_and_is_differentiable():
  key = jax.random.PRNGKey(3)
  mean, logvar = jnp.array([[0.5, -1.0]]), jnp.array([[0.2, -0.6]])
  eps = jax.random.normal(key, mean.shape)
  chex.assert_trees_all_close(distributions.reparameterize(key, mean, logvar),
                              mean + jnp.exp(logvar / 2) * eps)
  grad_mean, grad_logvar = jax.grad(lambda m, lv: jnp.sum(distributions.reparameterize(key, m, lv)),
                                    argnums=(0, 1))(mean, logvar)
  chex.assert_trees_all_close(grad_mean, jnp.ones_like(mean))
  chex.assert_trees_all_close(grad_logvar, 0.5 * jnp.exp(logvar / 2) * eps)
