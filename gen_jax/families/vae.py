"""VAE and beta-VAE: training on the (beta-weighted) negative ELBO, held-out NLL bounds, latent pictures."""

from __future__ import annotations

import math
import pathlib
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax.training import train_state
from scipy import stats

from gen_jax.evaluation import figures
from gen_jax.objectives import distributions
from gen_jax.runtime import config_checks, optimizers, parallel
from gen_jax.families.base import ModelFamily
from gen_jax.models.vae import VAE

LIKELIHOODS = ('bernoulli', 'gaussian')


class VAEFamily(ModelFamily):
  """The convolutional VAE of the course assignment; `model.beta` > 1 gives the beta-VAE."""

  @classmethod
  def validate(cls, config) -> None:
    config_checks.require_int(config, 'model.latent_dim', minimum=1, maximum=4096)
    config_checks.require_positive_ints(config, 'model.conv_features')
    config_checks.require_int(config, 'model.hidden_dim', minimum=1)
    config_checks.require_choice(config, 'model.likelihood', LIKELIHOODS)
    config_checks.require_number(config, 'model.observation_std', low=0, low_inclusive=False)
    config_checks.require_number(config, 'model.beta', low=0)
    config_checks.require_int(config, 'eval.iwae_samples', minimum=1, maximum=10_000)
    optimizers.validate(config, 'optim')
    size = config.data.image_size
    if size % 2:
      raise config_checks.ConfigError(
          f'config.data.image_size={size} cannot be taken by the VAE, whose encoder halves the '
          f'image once and decoder doubles it back: use an even size')

  def __init__(self, config, spec):
    super().__init__(config, spec)
    m = config.model
    self.model = VAE(tuple(m.conv_features), m.hidden_dim, m.latent_dim, spec.image_shape)
    self.train_rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    self.decode_mean = jax.jit(self._decode_mean)

  # Likelihood ----------------------------------------------------------------------------------

  def log_likelihood(self, logits: jax.Array, x: jax.Array) -> jax.Array:
    if self.config.model.likelihood == 'bernoulli':
      return distributions.bernoulli_log_likelihood(logits, x)
    return distributions.gaussian_log_likelihood(jax.nn.sigmoid(logits), x,
                                                 self.config.model.observation_std)

  def elbo_terms(self, params, x: jax.Array, rng: jax.Array) -> dict[str, jax.Array]:
    """Per-example reconstruction term -log p(x|z) (one z sample) and KL(q(z|x) || p(z))."""
    logits, mean, logvar = self.model.apply({'params': params}, x, rng)
    return {'reconstruction': -self.log_likelihood(logits, x),
            'kl': distributions.kl_to_standard_normal(mean, logvar)}

  def importance_weighted_nll(self, params, x: jax.Array, rng: jax.Array, samples: int) -> jax.Array:
    """-log p(x) ≈ -log mean_k p(x, z_k) / q(z_k|x) (the IWAE bound, tighter as k grows)."""
    mean, logvar = self.model.apply({'params': params}, x, method=VAE.encode)

    def log_weight(key):
      z = distributions.reparameterize(key, mean, logvar)
      logits = self.model.apply({'params': params}, z, method=VAE.decode)
      return (self.log_likelihood(logits, x) + distributions.standard_normal_log_density(z)
              - distributions.diagonal_normal_log_density(z, mean, logvar))

    log_weights = jax.lax.map(log_weight, jax.random.split(rng, samples))
    return -(jax.nn.logsumexp(log_weights, axis=0) - math.log(samples))

  # Training ------------------------------------------------------------------------------------

  def init_state(self, rng: jax.Array) -> train_state.TrainState:
    x = jnp.zeros((1,) + self.spec.image_shape, jnp.float32)
    params = self.model.init(rng, x, rng)['params']
    tx = optimizers.build(**self.config.optim, steps_per_epoch=self.spec.steps_per_epoch,
                          total_steps=self.config.train.num_steps)
    return train_state.TrainState.create(apply_fn=self.model.apply, params=params, tx=tx)

  def train_step(self, state, batch, axis_name=None):
    rng = parallel.per_replica_key(jax.random.fold_in(self.train_rng, state.step), axis_name)
    x = batch['image']
    beta = self.config.model.beta

    def loss_fn(params, x, rng):
      terms = self.elbo_terms(params, x, rng)
      return jnp.mean(terms['reconstruction'] + beta * terms['kl']), terms

    (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, x, rng)
    grads = parallel.cross_replica_mean(grads, axis_name)
    metrics = {'loss': loss, 'reconstruction': jnp.mean(terms['reconstruction']),
               'kl': jnp.mean(terms['kl']),
               'neg_elbo': jnp.mean(terms['reconstruction'] + terms['kl'])}
    return state.apply_gradients(grads=grads), parallel.cross_replica_mean(metrics, axis_name)

  # Evaluation ----------------------------------------------------------------------------------

  def _holdout_metrics(self, state, batch, rng):
    x = batch['image']
    elbo_rng, iwae_rng = jax.random.split(rng)
    terms = self.elbo_terms(state.params, x, elbo_rng)
    nll = self.importance_weighted_nll(state.params, x, iwae_rng, self.config.eval.iwae_samples)
    return {'neg_elbo': terms['reconstruction'] + terms['kl'], 'reconstruction': terms['reconstruction'],
            'kl': terms['kl'], 'iwae_nll': nll}

  def _posterior(self, state, batch, rng):
    del rng
    mean, logvar = self.model.apply({'params': state.params}, batch['image'], method=VAE.encode)
    return {'mean': mean, 'logvar': logvar}

  def _decode_mean(self, params, z: jax.Array) -> jax.Array:
    """The likelihood's mean image for each latent: what a person looks at."""
    return jax.nn.sigmoid(self.model.apply({'params': params}, jnp.asarray(z), method=VAE.decode))

  def evaluate(self, state, dataset, evaluator, out_dir: pathlib.Path, rng) -> dict[str, Any]:
    metrics = evaluator.mean(self._holdout_metrics, state, dataset.holdout, rng)
    num_pixels = int(np.prod(self.spec.image_shape))
    metrics['iwae_samples'] = self.config.eval.iwae_samples
    metrics['neg_elbo_bits_per_dim'] = metrics['neg_elbo'] / (num_pixels * math.log(2))
    posterior = evaluator.collect(self._posterior, state, dataset.holdout, rng)
    self.write_figures(state, dataset.holdout, posterior, out_dir, rng)
    return metrics

  def metric_names(self) -> set[str]:
    return {'neg_elbo', 'reconstruction', 'kl', 'iwae_nll', 'iwae_samples', 'neg_elbo_bits_per_dim'}

  def write_figures(self, state, holdout, posterior, out_dir: pathlib.Path, rng) -> None:
    params = jax.device_get(state.params)
    shown = min(16, len(holdout))
    reconstructions = self.decode_mean(params, posterior['mean'][:shown])
    figures.save_labeled_rows({'input': holdout.images[:shown],
                               'reconstruction': np.asarray(reconstructions)},
                              out_dir / 'reconstructions.png',
                              'held-out images and their reconstructions (decoded posterior means)')
    figures.save_image_grid(self.sample(state, rng, 64), out_dir / 'samples.png', columns=8)
    latent_dim = self.config.model.latent_dim
    if latent_dim == 2:
      figures.save_scatter(posterior['mean'], holdout.labels, out_dir / 'latent_means.png',
                           'held-out posterior means', ('posterior mean of z0', 'posterior mean of z1'))
      variances = np.exp(posterior['logvar'])
      figures.save_histograms({f'{kind} z{i}': values[:, i]
                               for kind, values in (('mean', posterior['mean']), ('variance', variances))
                               for i in range(2)},
                              out_dir / 'latent_histograms.png', 'posterior means and variances')
      figures.save_image_grid(np.asarray(self.decode_mean(params, manifold_latents(15))),
                              out_dir / 'manifold.png', columns=15)
    else:
      shown_dims = min(latent_dim, 10)
      figures.save_image_grid(np.asarray(self.decode_mean(params, traversal_latents(latent_dim, shown_dims, 11))),
                              out_dir / 'latent_traversals.png', columns=11)

  def sample(self, state, rng, num: int) -> np.ndarray:
    z = jax.random.normal(rng, (num, self.config.model.latent_dim))
    images = np.asarray(self.decode_mean(jax.device_get(state.params), z))
    chex.assert_shape(images, (num,) + self.spec.image_shape)
    return images


def manifold_latents(size: int) -> np.ndarray:
  """A size×size grid of 2-D latents at evenly spaced quantiles of N(0, 1) (inverse-CDF grid)."""
  quantiles = stats.norm.ppf(np.linspace(0.05, 0.95, size))
  # Rows go from high to low z1, so the picture reads like the latent scatter plot.
  return np.array([[x, y] for y in quantiles[::-1] for x in quantiles], np.float32)


def traversal_latents(latent_dim: int, shown_dims: int, steps: int) -> np.ndarray:
  """Row i varies latent component i over the 5%–95% quantiles of N(0, 1), the others at 0."""
  quantiles = stats.norm.ppf(np.linspace(0.05, 0.95, steps)).astype(np.float32)
  latents = np.zeros((shown_dims, steps, latent_dim), np.float32)
  for dim in range(shown_dims):
    latents[dim, :, dim] = quantiles
  return latents.reshape(-1, latent_dim)
