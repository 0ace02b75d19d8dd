"""Autoencoders: linear, MLP and convolutional; plain, denoising and sparse, all set by config.

One family serves them all. `model.architecture` picks the encoder/decoder pair
(gen_jax.models.autoencoder), `model.corruption` the noise put on the input of a denoising
autoencoder (gen_jax.objectives.corruptions), `model.code_penalty` and `model.sparsity_weight` the sparsity
term on the code (gen_jax.objectives.sparsity), `model.reconstruction_loss` how the output is compared with
the clean image. Overcomplete codes are allowed; only these regularisers keep such a code from
learning the identity.

Evaluation reports the held-out reconstruction (and, when denoising, the PSNR of the noisy input
and of the denoised output), the code's sparsity, how close a linear autoencoder's decoder is to
the PCA subspace of the same rank, and the deep-features table: linear-probe accuracy and k-means
NMI of raw pixels, PCA coordinates and the autoencoder's code of the same size.
An autoencoder is no generative model; `sample` decodes draws from a Gaussian fitted (as an
exponential moving average during training) to the codes of the training data.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from flax.training import train_state

from gen_jax.evaluation import feature_probe, figures, image_quality
from gen_jax.models import pca
from gen_jax.objectives import corruptions, distributions, sparsity
from gen_jax.runtime import config_checks, optimizers, parallel
from gen_jax.families.base import ModelFamily
from gen_jax.models import autoencoder

# Decay of the moving averages of the code's mean and covariance, used by `sample`.
CODE_EMA_DECAY = 0.99
SHOWN_EXAMPLES = 16


@dataclasses.dataclass(frozen=True)
class ReconstructionLoss:
  """How the decoder's raw output is scored against the clean image, and turned into an image."""

  per_example: Callable[[jax.Array, jax.Array], jax.Array]
  image: Callable[[jax.Array], jax.Array]


def _sum_squared_error(output: jax.Array, x: jax.Array) -> jax.Array:
  return jnp.sum(jnp.square(output - x).reshape(x.shape[0], -1), axis=-1)


RECONSTRUCTION_LOSSES = {
    # Squared error of the output itself (a linear output: the setting where a linear AE is PCA).
    'mse': ReconstructionLoss(_sum_squared_error, lambda output: jnp.clip(output, 0.0, 1.0)),
    # Binary cross-entropy of the output as Bernoulli logits.
    'bce': ReconstructionLoss(lambda logits, x: -distributions.bernoulli_log_likelihood(logits, x),
                              jax.nn.sigmoid),
}


class AutoencoderState(train_state.TrainState):
  """Parameters and optimiser state, and moving averages of the training codes' mean and covariance."""

  code_mean: jax.Array
  code_cov: jax.Array


class AutoencoderFamily(ModelFamily):
  """Every autoencoder of the course material, chosen by config fields."""

  READS_WHOLE_TRAINING_SPLIT = 'its evaluation fits a PCA to every training image'

  @classmethod
  def validate(cls, config) -> None:
    architecture = config_checks.require_choice(config, 'model.architecture', autoencoder.ARCHITECTURES)
    config_checks.require_int(config, 'model.code_dim', minimum=1, maximum=65_536)
    if architecture == 'conv':
      features = config_checks.require_positive_ints(config, 'model.conv_features')
      size, scale = config.data.image_size, 2 ** len(features)
      if size % scale:
        raise config_checks.ConfigError(
            f'config.data.image_size={size} cannot be taken by the convolutional autoencoder, whose '
            f'{len(features)} stride-2 layers (model.conv_features={features}) need a multiple of {scale}')
    if architecture == 'mlp':
      config_checks.require_positive_ints(config, 'model.hidden_dims', allow_empty=True)
    activation = config_checks.require_choice(config, 'model.code_activation', autoencoder.CODE_ACTIVATIONS)
    config_checks.require_choice(config, 'model.reconstruction_loss', RECONSTRUCTION_LOSSES)
    penalty = config_checks.require_choice(config, 'model.code_penalty', sparsity.PENALTIES)
    config_checks.require_number(config, 'model.sparsity_weight', low=0)
    config_checks.require_number(config, 'model.sparsity_target', low=0, high=1,
                                 low_inclusive=False, high_inclusive=False)
    if penalty == 'kl' and activation != 'sigmoid':
      raise config_checks.ConfigError(
          f"config.model.code_penalty='kl' compares mean activations with a target in (0, 1) and needs "
          f"model.code_activation='sigmoid', got {activation!r}")
    corruptions.validate(config, 'model.corruption')
    config_checks.require_number(config, 'eval.sparsity_threshold', low=0)
    feature_probe.validate(config)
    optimizers.validate(config, 'optim')

  def __init__(self, config, spec):
    super().__init__(config, spec)
    m = config.model
    self.model = autoencoder.build(m.architecture, m.code_dim, m.code_activation, spec.image_shape,
                                   hidden_dims=tuple(m.hidden_dims), conv_features=tuple(m.conv_features))
    self.reconstruction = RECONSTRUCTION_LOSSES[config.model.reconstruction_loss]
    self.penalty = sparsity.PENALTIES[config.model.code_penalty]
    self.denoising = config.model.corruption.name != 'none'
    self.train_rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    # Compiled once: the figures and samples run them outside the evaluator.
    self._corrupt = jax.jit(self.corrupt)
    self._reconstruct = jax.jit(self.reconstruct)
    self._sample_images = jax.jit(self.sample_images, static_argnums=4)

  # Training ------------------------------------------------------------------------------------

  def init_state(self, rng: jax.Array) -> AutoencoderState:
    x = jnp.zeros((1,) + self.spec.image_shape, jnp.float32)
    params = jax.jit(self.model.init)(rng, x)['params']
    tx = optimizers.build(**self.config.optim, steps_per_epoch=self.spec.steps_per_epoch,
                          total_steps=self.config.train.num_steps)
    code_dim = self.config.model.code_dim
    return AutoencoderState.create(apply_fn=self.model.apply, params=params, tx=tx,
                                   code_mean=jnp.zeros((code_dim,)), code_cov=jnp.zeros((code_dim, code_dim)))

  def losses(self, params, noisy: jax.Array, clean: jax.Array, axis_name: str | None = None):
    """(objective, per-example reconstruction loss, code penalty, code) of one batch."""
    m = self.config.model
    output, code = self.model.apply({'params': params}, noisy)
    reconstruction = self.reconstruction.per_example(output, clean)
    penalty = self.penalty(code, m.sparsity_target, axis_name)
    return jnp.mean(reconstruction) + m.sparsity_weight * penalty, (reconstruction, penalty, code)

  def train_step(self, state, batch, axis_name=None):
    rng = parallel.per_replica_key(jax.random.fold_in(self.train_rng, state.step), axis_name)
    clean = batch['image']
    noisy = self.corrupt(rng, clean)
    (loss, (reconstruction, penalty, code)), grads = jax.value_and_grad(self.losses, has_aux=True)(
        state.params, noisy, clean, axis_name)
    grads = parallel.cross_replica_mean(grads, axis_name)
    code = jax.lax.stop_gradient(code)
    stats = pca.batch_stats(code)
    if axis_name is not None:
      stats = pca.all_reduce(stats, axis_name)
    state = state.apply_gradients(grads=grads).replace(
        code_mean=CODE_EMA_DECAY * state.code_mean + (1 - CODE_EMA_DECAY) * stats.mean,
        code_cov=CODE_EMA_DECAY * state.code_cov + (1 - CODE_EMA_DECAY) * pca.covariance(stats))
    metrics = {'loss': loss, 'reconstruction': jnp.mean(reconstruction), 'penalty': penalty,
               'code_sparsity': jnp.mean(sparsity.fraction_near_zero(
                   code, self.config.eval.sparsity_threshold))}
    return state, parallel.cross_replica_mean(metrics, axis_name)

  # Evaluation ----------------------------------------------------------------------------------

  def encode(self, params, x: jax.Array) -> jax.Array:
    return self.model.apply({'params': params}, x, method=autoencoder.Autoencoder.encode)

  def corrupt(self, rng: jax.Array, clean: jax.Array) -> jax.Array:
    return corruptions.corrupt(rng, clean, **self.config.model.corruption)

  def reconstruct(self, params, noisy: jax.Array) -> jax.Array:
    """The output image (in [0, 1]) for an input."""
    output, _ = self.model.apply({'params': params}, noisy)
    return self.reconstruction.image(output)

  def holdout_metrics(self, state, batch, rng):
    """Per held-out example: reconstruction of the clean image from the (corrupted) input, code sparsity."""
    clean = batch['image']
    noisy = self.corrupt(rng, clean)
    output, code = self.model.apply({'params': state.params}, noisy)
    image = self.reconstruction.image(output)
    metrics = {'reconstruction_loss': self.reconstruction.per_example(output, clean),
               'output_mse': image_quality.mean_squared_error(image, clean),
               'output_psnr': image_quality.psnr(image, clean),
               'code_sparsity': sparsity.fraction_near_zero(code, self.config.eval.sparsity_threshold),
               'code_l1': jnp.sum(jnp.abs(code), axis=-1)}
    if self.denoising:
      metrics['noisy_input_psnr'] = image_quality.psnr(noisy, clean)
    return metrics

  def _codes(self, state, batch, rng):
    del rng
    return {'code': self.encode(state.params, batch['image'])}

  def evaluate(self, state, dataset, evaluator, out_dir: pathlib.Path, rng) -> dict[str, Any]:
    metric_rng, figure_rng, sample_rng = jax.random.split(rng, 3)
    metrics: dict[str, Any] = evaluator.mean(self.holdout_metrics, state, dataset.holdout, metric_rng)
    if self.denoising:
      metrics['psnr_gain'] = metrics['output_psnr'] - metrics['noisy_input_psnr']
    holdout_codes = evaluator.collect(self._codes, state, dataset.holdout, rng)['code']
    probe_train = dataset.train.take(self.config.eval.probe_max_train)
    params = jax.device_get(state.params)
    # The PCA of the training images with as many components as the code (at most one per pixel).
    rank = min(self.config.model.code_dim, int(np.prod(self.spec.image_shape)))
    pca_model = pca.fit(dataset.train.images, n_components=rank)
    if self.config.model.architecture == 'linear' and rank == self.config.model.code_dim:
      angles = np.degrees(scipy.linalg.subspace_angles(
          np.asarray(autoencoder.decoder_kernel(params)).T, np.asarray(pca_model.components).T))
      metrics['pca_subspace_max_angle_deg'] = float(angles.max())
      metrics['pca_subspace_mean_angle_deg'] = float(angles.mean())
    if feature_probe.can_probe(probe_train.labels, dataset.holdout.labels):
      train_codes = evaluator.collect(self._codes, state, probe_train, rng)['code']
      features = feature_probe.raw_and_pca(probe_train.images, dataset.holdout.images, pca_model)
      features.append(feature_probe.Features(
          'autoencoder', f'autoencoder code ({self.config.model.code_dim} units)', train_codes, holdout_codes))
      results = feature_probe.probe(features, probe_train.labels, dataset.holdout.labels, self.config.seed)
      feature_probe.write_table(results, len(probe_train), len(dataset.holdout), out_dir)
      metrics.update(feature_probe.as_metrics(results))
    self.write_figures(state, dataset.holdout, holdout_codes, out_dir, figure_rng, sample_rng)
    return metrics

  def metric_names(self) -> set[str]:
    names = {'reconstruction_loss', 'output_mse', 'output_psnr', 'code_sparsity', 'code_l1'}
    if self.denoising:
      names |= {'noisy_input_psnr', 'psnr_gain'}
    if (self.config.model.architecture == 'linear'
        and self.config.model.code_dim <= np.prod(self.spec.image_shape)):
      names |= {'pca_subspace_max_angle_deg', 'pca_subspace_mean_angle_deg'}
    if self.spec.num_classes >= 2:
      names |= feature_probe.metric_names(('raw', 'pca', 'autoencoder'))
    return names

  def write_figures(self, state, holdout, codes: np.ndarray, out_dir: pathlib.Path,
                    figure_rng, sample_rng) -> None:
    params = jax.device_get(state.params)
    clean = holdout.images[:SHOWN_EXAMPLES]
    noisy = self._corrupt(figure_rng, jnp.asarray(clean))
    output = np.asarray(self._reconstruct(params, noisy))
    if self.denoising:
      figures.save_labeled_rows({'noisy': np.asarray(noisy), 'denoised': output, 'clean': clean},
                                out_dir / 'denoising.png',
                                f'held-out images: {self.config.model.corruption.name} noise, denoised, clean')
    else:
      figures.save_labeled_rows({'input': clean, 'reconstruction': output},
                                out_dir / 'reconstructions.png', 'held-out images and their reconstructions')
    near_zero = np.asarray(sparsity.fraction_near_zero(codes, self.config.eval.sparsity_threshold))
    figures.save_histograms({'code unit values': codes.ravel(),
                             'near-zero fraction per image': near_zero},
                            out_dir / 'code_histograms.png', 'held-out codes')
    if self.config.model.code_dim == 2:
      figures.save_scatter(codes, holdout.labels, out_dir / 'codes.png', 'held-out codes',
                           ('code unit 0', 'code unit 1'))
    figures.save_image_grid(self.sample(state, sample_rng, 64), out_dir / 'samples.png', columns=8)

  def sample_images(self, params, code_mean: jax.Array, code_cov: jax.Array, rng: jax.Array,
                    num: int) -> jax.Array:
    """Decodes `num` draws from N(code_mean, code_cov)."""
    eigenvalues, eigenvectors = jnp.linalg.eigh(code_cov)
    # The covariance is positive semi-definite; rounding can leave tiny negative eigenvalues.
    scales = jnp.sqrt(jnp.maximum(eigenvalues, 0.0))
    codes = code_mean + (jax.random.normal(rng, (num, code_mean.shape[0])) * scales) @ eigenvectors.T
    output = self.model.apply({'params': params}, codes, method=autoencoder.Autoencoder.decode)
    return self.reconstruction.image(output)

  def sample(self, state, rng, num: int) -> np.ndarray:
    """Decodes codes drawn from a Gaussian with the training codes' (moving-average) mean and covariance."""
    state = jax.device_get(state)
    debias = 1.0 - CODE_EMA_DECAY ** max(int(state.step), 1)
    images = np.asarray(self._sample_images(state.params, state.code_mean / debias,
                                            state.code_cov / debias, rng, num))
    chex.assert_shape(images, (num,) + self.spec.image_shape)
    return images
