"""The VAE family: shapes, ELBO terms, IWAE bound, data-parallel and pmap steps, a real tiny training."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import data
from gen_jax.objectives import distributions
from gen_jax.runtime import parallel
from gen_jax.families.base import DataSpec
from gen_jax.families.vae import VAEFamily, manifold_latents, traversal_latents
from gen_jax.models.vae import VAE
from tests.conftest import (load_config, pmap_train_step, run_steps, split_across_devices,
                             stack_replicas)


@pytest.fixture(scope='module')
def setup():
  config = load_config('vae')
  dataset = data.load(**config.data)
  batches = data.BatchSchedule(dataset.train, config.train.batch_size, config.seed)
  family = VAEFamily(config, DataSpec.of(dataset, batches))
  return config, family, batches


def test_module_shapes():
  model = VAE(conv_features=(4, 8), hidden_dim=16, latent_dim=3, image_shape=(12, 12, 1))
  x = jnp.zeros((5, 12, 12, 1))
  params = model.init(jax.random.PRNGKey(0), x, jax.random.PRNGKey(1))
  logits, mean, logvar = model.apply(params, x, jax.random.PRNGKey(2))
  chex.assert_shape(logits, (5, 12, 12, 1))
  chex.assert_shape([mean, logvar], (5, 3))
  with pytest.raises(AssertionError):
    model.apply(params, jnp.zeros((5, 10, 10, 1)), jax.random.PRNGKey(2))


def test_elbo_terms_match_their_definition(setup):
  config, family, batches = setup
  state = family.init_state(jax.random.PRNGKey(0))
  x = jnp.asarray(batches(0)['image'][:4])
  rng = jax.random.PRNGKey(5)
  terms = family.elbo_terms(state.params, x, rng)
  mean, logvar = family.model.apply({'params': state.params}, x, method=VAE.encode)
  z = mean + jnp.exp(logvar / 2) * jax.random.normal(rng, mean.shape)
  logits = family.model.apply({'params': state.params}, z, method=VAE.decode)
  p = jax.nn.sigmoid(logits)
  bce = -jnp.sum((x * jnp.log(p) + (1 - x) * jnp.log1p(-p)).reshape(4, -1), axis=-1)
  kl = 0.5 * jnp.sum(jnp.exp(logvar) + mean ** 2 - 1 - logvar, axis=-1)
  chex.assert_trees_all_close(terms['reconstruction'], bce, rtol=1e-4)
  chex.assert_trees_all_close(terms['kl'], kl, rtol=1e-5, atol=1e-6)


def test_iwae_bound_with_one_sample_is_the_elbo_and_tightens_with_more(setup):
  config, family, batches = setup
  state = family.init_state(jax.random.PRNGKey(0))
  x = jnp.asarray(batches(0)['image'][:8])
  mean, logvar = family.model.apply({'params': state.params}, x, method=VAE.encode)
  rng = jax.random.PRNGKey(1)
  # With k = 1 the importance-weighted bound is the ELBO with the same z (KL by Monte Carlo).
  one = family.importance_weighted_nll(state.params, x, rng, 1)
  z = distributions.reparameterize(jax.random.split(rng, 1)[0], mean, logvar)
  logits = family.model.apply({'params': state.params}, z, method=VAE.decode)
  single_sample_elbo = (distributions.bernoulli_log_likelihood(logits, x)
                        + distributions.standard_normal_log_density(z)
                        - distributions.diagonal_normal_log_density(z, mean, logvar))
  chex.assert_trees_all_close(one, -single_sample_elbo, rtol=1e-5)
  # On average over many draws, more samples give a lower (tighter) bound on -log p(x).
  keys = jax.random.split(jax.random.PRNGKey(2), 20)
  k1 = jnp.mean(jax.vmap(lambda k: family.importance_weighted_nll(state.params, x, k, 1))(keys))
  k16 = jnp.mean(jax.vmap(lambda k: family.importance_weighted_nll(state.params, x, k, 16))(keys))
  assert float(k16) <= float(k1)


def test_one_device_and_four_devices_give_the_same_steps(setup):
  config, family, batches = setup
  assert jax.device_count() == 4
  state = family.init_state(jax.random.PRNGKey(0))
  one, metrics_one = run_steps(family, state, batches, parallel.make_mesh(1), 3)
  four, metrics_four = run_steps(family, state, batches, parallel.make_mesh(4), 3)
  chex.assert_trees_all_close(four.params, one.params, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(metrics_four, metrics_one, rtol=1e-5)


def test_step_runs_under_pmap_and_keeps_replicas_in_sync(setup):
  config, family, batches = setup
  state = family.init_state(jax.random.PRNGKey(0))
  new_state, metrics = pmap_train_step(family)(stack_replicas(state), split_across_devices(batches(0)))
  for leaf in jax.tree.leaves(new_state.params):
    chex.assert_trees_all_close(leaf[1:], jnp.broadcast_to(leaf[0], leaf[1:].shape))
  chex.assert_tree_all_finite(metrics)
  assert not np.allclose(jax.tree.leaves(new_state.params)[0][0], jax.tree.leaves(state.params)[0])


def test_samples_and_latent_grids(setup):
  config, family, batches = setup
  state = family.init_state(jax.random.PRNGKey(0))
  samples = family.sample(state, jax.random.PRNGKey(1), 6)
  chex.assert_shape(samples, (6, 28, 28, 1))
  assert samples.min() >= 0.0 and samples.max() <= 1.0
  grid = manifold_latents(5)
  chex.assert_shape(grid, (25, 2))
  np.testing.assert_allclose(grid[0], [-1.6448536, 1.6448536], rtol=1e-5)  # 5% and 95% quantiles
  traversal = traversal_latents(latent_dim=4, shown_dims=3, steps=5)
  chex.assert_shape(traversal, (15, 4))
  assert np.count_nonzero(traversal[:, 3]) == 0


def test_gaussian_likelihood_variant_trains(setup):
  config, _, batches = setup
  gaussian = config.copy_and_resolve_references()
  gaussian.model.likelihood = 'gaussian'
  family = VAEFamily(gaussian, DataSpec((28, 28, 1), 10, batches.steps_per_epoch,
                                        batches.steps_per_epoch * gaussian.train.batch_size))
  state = family.init_state(jax.random.PRNGKey(0))
  images = jnp.asarray(batches(0)['image'])
  before = family.elbo_terms(state.params, images, jax.random.PRNGKey(1))
  trained, metrics = run_steps(family, state, batches, parallel.make_mesh(1), 30)
  after = family.elbo_terms(trained.params, images, jax.random.PRNGKey(1))
  chex.assert_tree_all_finite((after, metrics))
  # -log N(x; mean, 0.1²) >= the normaliser's part, reached only when the mean is exact.
  floor = 28 * 28 * (math.log(0.1) + 0.5 * math.log(2 * math.pi))
  assert float(jnp.min(after['reconstruction'])) >= floor
  # Training on the Gaussian likelihood fits the images: the negative ELBO falls clearly.
  before_bound = float(jnp.mean(before['reconstruction'] + before['kl']))
  after_bound = float(jnp.mean(after['reconstruction'] + after['kl']))
  assert after_bound < before_bound - 0.25 * abs(before_bound - floor), (before_bound, after_bound)


@pytest.mark.slow
def test_real_training_lowers_the_held_out_negative_elbo(tmp_path):
  """A few hundred steps of the smoke-sized VAE on digits: the held-out bound improves clearly."""
  from gen_jax import train
  config = load_config('vae')
  config.train.num_steps = 300
  config.train.checkpoint_every = 300
  config.train.log_every = 100
  config.optim.learning_rate = 3e-3
  untrained = config.copy_and_resolve_references()
  untrained.train.num_steps = 1
  before = train.train_and_evaluate(untrained, tmp_path / 'untrained')['metrics']['neg_elbo']
  after = train.train_and_evaluate(config, tmp_path / 'trained')['metrics']
  assert after['neg_elbo'] < 0.8 * before
  assert after['iwae_nll'] <= after['neg_elbo'] + 1.0
