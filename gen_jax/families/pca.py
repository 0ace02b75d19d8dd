"""PCA as a model family: one streamed pass over the training data, then an eigendecomposition.

Training accumulates the covariance's sufficient statistics (gen_jax.models.pca.CovarianceStats), batch
by batch, in the shared training loop, so the state is checkpointed and resumed like any model's
and the data never need to fit in memory at once. Only the first epoch is accumulated (later steps
leave the statistics as they are), so each training example counts exactly once; the loop's
batches cover every example in that epoch when `train.batch_size` divides the number of training
examples, which is checked before training (and the fitted count again at evaluation).
Evaluation takes the eigendecomposition and writes the scree plot, reconstructions from 1, 2, 5,
10, 50 components, the 2-D projection, the components, and the linear-probe / k-means table of raw
pixels against PCA coordinates.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.evaluation import feature_probe, figures, image_quality
from gen_jax.models import pca
from gen_jax.runtime import config_checks
from gen_jax.families.base import ModelFamily

SHOWN_EXAMPLES = 12
SHOWN_COMPONENTS = 15


@flax.struct.dataclass
class PCAState:
  step: jax.Array
  stats: pca.CovarianceStats


class PCAFamily(ModelFamily):
  """Principal component analysis by eigendecomposition of the streamed covariance."""

  READS_WHOLE_TRAINING_SPLIT = 'its evaluation probes features on the training images'

  @classmethod
  def validate(cls, config) -> None:
    dim = config.data.image_size ** 2 * config.data.channels
    count = config_checks.require_int(config, 'model.n_components', minimum=0)
    if count > dim:
      raise config_checks.ConfigError(
          f'config.model.n_components={count} exceeds the {dim} pixel values of an image '
          f'(data.image_size² × data.channels)')
    if count == 0:
      config_checks.require_number(config, 'model.variance_fraction', low=0, high=1,
                                   low_inclusive=False, high_inclusive=False)
    if not isinstance(config_checks.get_field(config, 'model.whiten'), bool):
      raise config_checks.ConfigError(f'config.model.whiten={config.model.whiten!r} must be True or False')
    if config_checks.get_field(config, 'train.eval_every'):
      raise config_checks.ConfigError(
          f'config.train.eval_every={config.train.eval_every} cannot be used with PCA, which is fitted '
          f'in one pass and evaluated once at the end: use 0')
    config_checks.require_positive_ints(config, 'eval.reconstruction_components')
    config_checks.require_int(config, 'eval.scree_components', minimum=1)
    feature_probe.validate(config)

  def __init__(self, config, spec):
    super().__init__(config, spec)
    self.dim = int(np.prod(spec.image_shape))
    self._require_one_whole_epoch(spec.num_train_examples)

  # Training: accumulate the first epoch's statistics -------------------------------------------

  def init_state(self, rng: jax.Array) -> PCAState:
    del rng
    return PCAState(step=jnp.zeros((), jnp.int32), stats=pca.empty_stats(self.dim))

  def train_step(self, state, batch, axis_name=None):
    x = batch['image'].reshape(batch['image'].shape[0], -1)
    part = pca.batch_stats(x)
    if axis_name is not None:
      part = pca.all_reduce(part, axis_name)
    merged = pca.merge(state.stats, part)
    first_epoch = state.step < self.spec.steps_per_epoch
    stats = jax.tree.map(lambda new, old: jnp.where(first_epoch, new, old), merged, state.stats)
    metrics = {'examples': stats.count.astype(jnp.float32),
               'total_variance': jnp.trace(pca.covariance(stats))}
    return PCAState(step=state.step + 1, stats=stats), metrics

  # The fit ------------------------------------------------------------------------------------

  def requested_components(self) -> int | float:
    m = self.config.model
    return m.n_components if m.n_components else float(m.variance_fraction)

  def fit(self, state) -> tuple[pca.PCA, pca.PCA]:
    """(every component, the kept ones) of the accumulated statistics."""
    full = pca.fit_from_stats(jax.device_get(state.stats), None, self.config.model.whiten)
    kept = pca.choose_num_components(np.asarray(full.explained_variance_ratio),
                                     self.requested_components())
    return full, pca.truncate(full, kept)

  def _require_one_whole_epoch(self, num_train: int) -> None:
    """Before training: the steps must cover every training example exactly once."""
    train = self.config.train
    if num_train % train.batch_size or train.num_steps < num_train // train.batch_size:
      raise config_checks.ConfigError(self._one_epoch_rule(num_train))

  def check_coverage(self, state, num_train: int) -> None:
    """At evaluation: the statistics must hold every example (an interrupted run's may not)."""
    fitted = int(jax.device_get(state.stats.count))
    if fitted != num_train:
      raise config_checks.ConfigError(f'PCA was fitted on {fitted} of the {num_train} training '
                                      f'examples. {self._one_epoch_rule(num_train)}')

  def _one_epoch_rule(self, num_train: int) -> str:
    train = self.config.train
    return (f'PCA accumulates one epoch: config.train.batch_size={train.batch_size} must divide '
            f'the {num_train} training examples (set data.max_examples to a multiple of it, or '
            f'choose another batch size that is a multiple of the devices) and '
            f'config.train.num_steps={train.num_steps} must be at least '
            f'{max(num_train // train.batch_size, 1)}, one epoch')

  # Evaluation ----------------------------------------------------------------------------------

  @staticmethod
  def _coordinates(model: pca.PCA, batch, rng):
    """Unwhitened coordinates on every component, and the squared distance to the mean."""
    del rng
    x = batch['image']
    centred = x.reshape(x.shape[0], -1) - model.mean
    return {'coordinates': centred @ model.components.T,
            'squared_norm': jnp.sum(jnp.square(centred), axis=-1)}

  def reconstruction_counts(self, kept: int) -> list[int]:
    counts = {k for k in self.config.eval.reconstruction_components if k <= self.dim} | {kept}
    return sorted(counts)

  def evaluate(self, state, dataset, evaluator, out_dir: pathlib.Path, rng) -> dict[str, Any]:
    self.check_coverage(state, len(dataset.train))
    full, kept = self.fit(state)
    k = kept.num_components
    projected = evaluator.collect(self._coordinates, full, dataset.holdout, rng)
    # Orthonormal components: the residual of a k-component reconstruction is the squared
    # distance to the mean less the squares of the first k coordinates.
    explained = np.cumsum(np.square(projected['coordinates'].astype(np.float64)), axis=1)
    residual = np.maximum(projected['squared_norm'][:, None] - explained, 0.0) / self.dim
    metrics: dict[str, Any] = {
        'fitted_examples': int(jax.device_get(state.stats.count)),
        'num_components': k,
        'explained_variance_ratio': float(np.sum(kept.explained_variance_ratio)),
        'total_variance': float(np.sum(full.spectrum)),
    }
    for count in self.reconstruction_counts(k):
      metrics[f'holdout_mse_{count}_components'] = float(residual[:, count - 1].mean())
    metrics['holdout_psnr'] = float(jnp.mean(image_quality.psnr_from_mse(residual[:, k - 1])))
    self.write_figures(full, kept, dataset.holdout, projected['coordinates'], out_dir)
    metrics.update(self.probe_features(kept, dataset, out_dir))
    return metrics

  def metric_names(self) -> set[str]:
    names = {'fitted_examples', 'num_components', 'explained_variance_ratio', 'total_variance',
             'holdout_psnr'}
    # The kept count is known only after the fit: any count may appear.
    names |= {f'holdout_mse_{count}_components' for count in range(1, self.dim + 1)}
    if self.spec.num_classes >= 2:
      names |= feature_probe.metric_names(('raw', 'pca'))
    return names

  def probe_features(self, kept: pca.PCA, dataset, out_dir: pathlib.Path) -> dict[str, float]:
    train = dataset.train.take(self.config.eval.probe_max_train)
    if not feature_probe.can_probe(train.labels, dataset.holdout.labels):
      return {}
    results = feature_probe.probe(
        feature_probe.raw_and_pca(train.images, dataset.holdout.images, kept),
        train.labels, dataset.holdout.labels, self.config.seed)
    feature_probe.write_table(results, len(train), len(dataset.holdout), out_dir)
    return feature_probe.as_metrics(results)

  def write_figures(self, full: pca.PCA, kept: pca.PCA, holdout, coordinates: np.ndarray,
                    out_dir: pathlib.Path) -> None:
    k = kept.num_components
    figures.save_scree(np.asarray(full.spectrum), out_dir / 'scree.png', chosen=k,
                       shown=self.config.eval.scree_components)
    (out_dir / 'spectrum.json').write_text(json.dumps({
        'eigenvalues': np.asarray(full.spectrum).tolist(),
        'explained_variance_ratio': np.asarray(full.explained_variance_ratio).tolist(),
        'num_components': k}, indent=1))
    shown = holdout.images[:SHOWN_EXAMPLES]
    rows = {'original': shown}
    for count in self.reconstruction_counts(k):   # mean + the first `count` coordinates' components
      projection = full.mean + coordinates[:len(shown), :count] @ np.asarray(full.components[:count])
      rows[f'{count} comp.'] = projection.reshape(shown.shape)
    figures.save_labeled_rows(rows, out_dir / 'reconstructions.png',
                              'held-out images and their PCA reconstructions')
    scale = np.sqrt(np.maximum(np.asarray(full.explained_variance[:2]), 1e-12))
    points = coordinates[:, :2] / scale if self.config.model.whiten else coordinates[:, :2]
    unit = 'whitened coordinate' if self.config.model.whiten else 'coordinate'
    figures.save_scatter(points, holdout.labels, out_dir / 'projection.png',
                         'held-out images on the first two principal components',
                         (f'component 1 {unit}', f'component 2 {unit}'))
    components = np.asarray(full.components[:SHOWN_COMPONENTS])
    components = 0.5 + components / (2 * np.abs(components).max(axis=1, keepdims=True))
    mean = np.clip(np.asarray(full.mean), 0, 1)
    figures.save_image_grid(np.concatenate([mean[None], components]).reshape(
        (-1,) + self.spec.image_shape), out_dir / 'components.png', columns=SHOWN_COMPONENTS + 1)

  def sample(self, state, rng, num: int) -> np.ndarray:
    """Draws from the Gaussian the kept components describe: mean + sum_i z_i c_i, z_i ~ N(0, λ_i)."""
    _, kept = self.fit(state)
    z = jax.random.normal(rng, (num, kept.num_components))
    if not kept.whiten:
      z = z * jnp.sqrt(kept.explained_variance)
    images = np.asarray(pca.inverse_transform(kept, z)).reshape((num,) + self.spec.image_shape)
    return np.clip(images, 0.0, 1.0)
