"""The digit classifier as a model family: what the sample-quality metrics see through.

It is trained by the same loop as every model, into its own workdir, with the loop's checkpoints,
on the configured data's whole training split (whatever `data.max_examples` says) with a fixed
recipe (`recipe_config`), so that every model trained on that data is measured by the same
network. Random translations of up to `model.max_shift` pixels augment the training images. On
unpaired data (two domains, gen_jax.data.unpaired) it learns the digits of both domains, so that
it judges translations either way.

Its workdir is `config.eval.classifier_dir`, or when that is empty
`runs/classifier/<data.name>_<size>x<size>_<digest>`, the digest covering the recipe config (so a
smoke-sized classifier never stands in for the full one). The training loop trains it on first
use (`gen_jax.train.digit_classifier`), or by hand with `--mode=classifier`.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from gen_jax.evaluation import reports
from gen_jax.families.base import ModelFamily
from gen_jax.models.classifier import DigitCNN
from gen_jax.runtime import config_checks, optimizers, parallel

DEFAULT_ROOT = pathlib.Path('runs') / 'classifier'
# The data fields that change what the classifier sees (not `max_examples`: it trains on all).
DATA_FIELDS = ('name', 'path', 'image_size', 'channels', 'holdout_fraction', 'train_split',
               'holdout_split')


def validate_fields(config: ml_collections.ConfigDict) -> None:
  """Checks the fields a model config sets for its classifier (eval.classifier_*)."""
  config_checks.require_int(config, 'eval.classifier_steps', minimum=1, maximum=1_000_000)
  if not isinstance(config_checks.get_field(config, 'eval.classifier_dir'), str):
    raise config_checks.ConfigError(
        f'config.eval.classifier_dir={config.eval.classifier_dir!r} must be a path (a string; '
        f'empty for the default under {DEFAULT_ROOT})')
  # The classifier may have to be trained there: a folder that cannot be written is refused now,
  # not after the model has trained.
  directory = workdir(config).absolute()
  existing = next(p for p in (directory, *directory.parents) if p.exists())
  if not (directory / reports.EVAL_JSON).exists() and not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
    raise config_checks.ConfigError(
        f'config.eval.classifier_dir={str(directory)!r} cannot be written ({existing} is not a '
        f'writable folder), and the digit classifier must be trained there; choose a writable folder')


def recipe_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The complete config that trains the classifier of `config`'s data (its steps from
  `config.eval.classifier_steps`), with the fixed recipe; a config like any model's."""
  steps = config.eval.classifier_steps
  data = ml_collections.ConfigDict({field: config.data[field] for field in DATA_FIELDS})
  data.max_examples = 0
  if config.data.get('streaming'):   # data too large for memory is too large for its training too
    data.streaming = True
  if 'unpaired' in config.data:
    data.unpaired = config.data.unpaired.copy_and_resolve_references()
  return ml_collections.ConfigDict({
      'seed': 0,
      'smoke': False,
      'model': {'name': 'classifier', 'conv_features': (16, 32), 'feature_dim': 128,
                'max_shift': 2},
      'data': data,
      'train': {'batch_size': 64, 'num_steps': steps, 'log_every': min(100, steps),
                'checkpoint_every': steps, 'keep_checkpoints': 1, 'eval_every': 0,
                'best_metric': '', 'best_mode': 'max', 'num_devices': 0,
                # How it is run, as the model's run is (resumable fields: the same classifier).
                'steps_per_dispatch': config.train.steps_per_dispatch,
                'dispatch_form': config.train.dispatch_form},
      'optim': {'name': 'adamw', 'learning_rate': 2e-3, 'b1': 0.9, 'b2': 0.999,
                'weight_decay': 1e-4, 'decay_every_epochs': 0, 'decay_factor': 0.1,
                'cosine_decay_steps': steps, 'linear_decay_fraction': 0.0, 'grad_clip_norm': 0.0},
      'eval': {'batch_size': 256, 'max_examples': 0},
  })


def workdir(config: ml_collections.ConfigDict) -> pathlib.Path:
  """config.eval.classifier_dir, or runs/classifier/<data>_<size>x<size>_<digest of the recipe>."""
  if config.eval.classifier_dir:
    return pathlib.Path(os.path.expanduser(config.eval.classifier_dir))
  recipe = recipe_config(config)
  digest = hashlib.sha256(recipe.to_json(sort_keys=True).encode()).hexdigest()[:8]
  size = config.data.image_size
  return DEFAULT_ROOT / f'{config.data.name}_{size}x{size}_{digest}'


def _both_domains(batch) -> tuple[jax.Array, jax.Array]:
  """The batch's images and labels, domain A's (`input`, `input_label`) appended on unpaired data."""
  if 'input_label' not in batch:
    return batch['image'], batch['label']
  return (jnp.concatenate([batch['image'], batch['input']]),
          jnp.concatenate([batch['label'], batch['input_label']]))


def _shift(images: jax.Array, rng: jax.Array, max_shift: int) -> jax.Array:
  """Each image translated by its own random offset of up to max_shift pixels (zero fill)."""
  height, width = images.shape[1:3]
  padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
  offsets = jax.random.randint(rng, (images.shape[0], 2), 0, 2 * max_shift + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(
      image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


class ClassifierFamily(ModelFamily):
  """A CNN classifier of the data's classes, trained with cross-entropy on shifted images."""

  GENERATIVE = False

  @classmethod
  def validate(cls, config) -> None:
    config_checks.require_positive_ints(config, 'model.conv_features')
    config_checks.require_int(config, 'model.feature_dim', minimum=1)
    config_checks.require_int(config, 'model.max_shift', minimum=0)
    optimizers.validate(config, 'optim')

  def __init__(self, config, spec):
    super().__init__(config, spec)
    if spec.num_classes < 2:
      raise config_checks.ConfigError(
          f'data {config.data.name!r} has no class labels, so the digit classifier behind the '
          f'sample-quality metrics cannot be trained on it')
    m = config.model
    self.network = DigitCNN(spec.num_classes, tuple(m.conv_features), m.feature_dim)
    self.max_shift = m.max_shift
    self.train_rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)

  def metric_names(self) -> set[str]:
    return {'holdout_accuracy', 'holdout_loss'}

  def init_state(self, rng: jax.Array) -> train_state.TrainState:
    params = self.network.init(rng, jnp.zeros((1,) + self.spec.image_shape))['params']
    tx = optimizers.build(**self.config.optim, steps_per_epoch=self.spec.steps_per_epoch,
                          total_steps=self.config.train.num_steps)
    return train_state.TrainState.create(apply_fn=self.network.apply, params=params, tx=tx)

  def train_step(self, state, batch, axis_name=None):
    rng = parallel.per_replica_key(jax.random.fold_in(self.train_rng, state.step), axis_name)
    images, labels = _both_domains(batch)
    images = _shift(images, rng, self.max_shift)

    def loss_fn(params):
      _, logits = self.network.apply({'params': params}, images)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    grads = parallel.cross_replica_mean(grads, axis_name)
    return state.apply_gradients(grads=grads), {'loss': parallel.cross_replica_mean(loss, axis_name)}

  def _holdout_metrics(self, state, batch, rng):
    del rng
    _, logits = self.network.apply({'params': state.params}, batch['image'])
    return {'holdout_accuracy': (jnp.argmax(logits, -1) == batch['label']).astype(jnp.float32),
            'holdout_loss': optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])}

  def evaluate(self, state, dataset, evaluator, out_dir: pathlib.Path, rng) -> dict[str, Any]:
    if not dataset.holdout.has_labels:
      raise config_checks.ConfigError('the digit classifier is evaluated on labelled held-out images')
    return evaluator.mean(self._holdout_metrics, state, dataset.holdout, rng)

  def sample(self, state, rng, num: int) -> np.ndarray:
    raise config_checks.ConfigError('the digit classifier is not a generative model: it draws no samples')
