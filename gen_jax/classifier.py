"""The project's digit classifier: the feature space every sample-quality metric is computed in.

A small CNN trained on the configured data set's training split (all of it, whatever
`data.max_examples` says) with a fixed recipe, so that every model trained on that data is
measured by the same network. Its penultimate layer gives the features of FID, KID,
precision/recall and density/coverage; its softmax gives the Inception Score and the class
histogram.

It lives as an orbax checkpoint in `config.eval.classifier_dir`, or when that is empty in
`runs/classifier/<data.name>_<size>x<size>_<digest>`, where the digest covers every data field
and recipe setting that changes the network (so a smoke-sized classifier never stands in for the
full one). `classifier.json` beside the weights records what it was trained on, its held-out
accuracy and a fingerprint of its weights. It is trained on first use when missing, or by hand:

  python -m gen_jax.classifier --config=configs/vae.py [--retrain]
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import sys
import time
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from absl import app, flags, logging
from flax.training import train_state
from ml_collections import config_flags

from gen_jax import config_checks, data, host_memory, parallel
from gen_jax.evaluation import Evaluator

INFO_FILE = 'classifier.json'
PARAMS_DIR = 'params'
DEFAULT_ROOT = pathlib.Path('runs') / 'classifier'
# The fixed recipe; `eval.classifier_steps` alone is configurable (smoke runs shrink it).
CONV_FEATURES = (16, 32)
FEATURE_DIM = 128
BATCH_SIZE = 64
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4
MAX_SHIFT = 2          # random translations of up to this many pixels augment the training images
SEED = 0
# The data fields that change what the classifier sees (not `max_examples`: it trains on all).
DATA_FIELDS = ('name', 'path', 'image_size', 'channels', 'holdout_fraction', 'train_split',
               'holdout_split')


class DigitCNN(nn.Module):
  """conv 3×3 → max-pool 2 → conv 3×3 → max-pool 2 → dense (the features) → class logits."""

  num_classes: int
  conv_features: tuple[int, ...] = CONV_FEATURES
  feature_dim: int = FEATURE_DIM

  def features(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    for index, width in enumerate(self.conv_features):
      x = nn.relu(nn.Conv(width, (3, 3), padding='SAME', name=f'conv{index}')(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
    return nn.relu(nn.Dense(self.feature_dim, name='features')(x.reshape(x.shape[0], -1)))

  def logits(self, features: jax.Array) -> jax.Array:
    return nn.Dense(self.num_classes, name='logits')(features)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(features (N, feature_dim), logits (N, num_classes)) of images (N, H, W, C) in [0, 1]."""
    features = self.features(x)
    return features, self.logits(features)


def identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """What decides the trained classifier: its data and its recipe."""
  return {'data': {field: config.data[field] for field in DATA_FIELDS},
          'steps': config.eval.classifier_steps, 'batch_size': BATCH_SIZE,
          'learning_rate': LEARNING_RATE, 'weight_decay': WEIGHT_DECAY, 'max_shift': MAX_SHIFT,
          'conv_features': list(CONV_FEATURES), 'feature_dim': FEATURE_DIM, 'seed': SEED}


def classifier_dir(config: ml_collections.ConfigDict) -> pathlib.Path:
  """config.eval.classifier_dir, or runs/classifier/<data>_<size>x<size>_<digest of identity>."""
  if config.eval.classifier_dir:
    return pathlib.Path(os.path.expanduser(config.eval.classifier_dir))
  digest = hashlib.sha256(json.dumps(identity(config), sort_keys=True).encode()).hexdigest()[:8]
  size = config.data.image_size
  return DEFAULT_ROOT / f'{config.data.name}_{size}x{size}_{digest}'


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks the eval fields the classifier and the sample metrics read."""
  config_checks.require_int(config, 'eval.classifier_steps', minimum=1)
  config_checks.require_int(config, 'eval.num_samples', minimum=0)
  if not isinstance(config_checks.get_field(config, 'eval.classifier_dir'), str):
    raise config_checks.ConfigError(
        f'config.eval.classifier_dir={config.eval.classifier_dir!r} must be a path (a string; '
        f'empty for the default under {DEFAULT_ROOT})')


class Classifier:
  """A trained digit classifier: features and class probabilities of images in [0, 1], NHWC.

  Runs data-parallel over the local devices in fixed-size batches, compiled once per instance.
  """

  def __init__(self, model: DigitCNN, params: Any, info: dict[str, Any], directory: pathlib.Path):
    mesh = parallel.make_mesh()
    self.model = model
    self.params = parallel.replicate(params, mesh)
    self.info = info
    self.directory = pathlib.Path(directory)
    self._evaluator = Evaluator(mesh, 64 * mesh.size)

  @property
  def fingerprint(self) -> str:
    """A digest of the weights: caches keyed by it die with a retrained classifier."""
    return self.info['fingerprint']

  @property
  def data_name(self) -> str:
    return self.info['identity']['data']['name']

  @property
  def holdout_accuracy(self) -> float:
    return self.info['holdout_accuracy']

  def _outputs(self, params, batch, rng):
    del rng
    features, logits = self.model.apply({'params': params}, batch['image'])
    return {'features': features, 'probabilities': jax.nn.softmax(logits),
            'correct': jnp.argmax(logits, -1) == batch['label']}

  def _collect(self, split: data.Split) -> dict[str, np.ndarray]:
    return self._evaluator.collect(self._outputs, self.params, split, jax.random.PRNGKey(0))

  def features_and_probabilities(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features (N, D) and class probabilities (N, K)."""
    images = np.asarray(images, np.float32)
    outputs = self._collect(data.Split(images, np.full((len(images),), -1, np.int32)))
    chex.assert_shape(outputs['features'], (len(images), self.model.feature_dim))
    chex.assert_shape(outputs['probabilities'], (len(images), self.model.num_classes))
    return outputs['features'], outputs['probabilities']

  def features(self, images: np.ndarray) -> np.ndarray:
    return self.features_and_probabilities(images)[0]

  def probabilities(self, images: np.ndarray) -> np.ndarray:
    return self.features_and_probabilities(images)[1]

  def accuracy(self, split: data.Split) -> float:
    """Fraction of a labelled split classified correctly."""
    if not split.has_labels:
      raise data.DataError('accuracy needs a labelled split')
    return float(self._collect(split)['correct'].mean())


def _fingerprint(params) -> str:
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(params)):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


def _shift(images: jax.Array, rng: jax.Array) -> jax.Array:
  """Each image translated by its own random offset of up to MAX_SHIFT pixels (zero fill)."""
  height, width = images.shape[1:3]
  padded = jnp.pad(images, ((0, 0), (MAX_SHIFT, MAX_SHIFT), (MAX_SHIFT, MAX_SHIFT), (0, 0)))
  offsets = jax.random.randint(rng, (images.shape[0], 2), 0, 2 * MAX_SHIFT + 1)
  crop = lambda image, offset: jax.lax.dynamic_slice(
      image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))
  return jax.vmap(crop)(padded, offsets)


def _load_labelled_data(config) -> data.Dataset:
  data_config = config.data.copy_and_resolve_references()
  data_config.max_examples = 0
  dataset = data.load(data_config)
  if not (dataset.train.has_labels and dataset.holdout.has_labels):
    raise data.DataError(
        f'data set {config.data.name!r} has no class labels, so the digit classifier behind the '
        f'sample-quality metrics cannot be trained on it')
  return dataset


def train(config: ml_collections.ConfigDict, directory: pathlib.Path | None = None,
          replace: bool = True) -> Classifier:
  """Trains the classifier on the configured data's training split and saves it to `directory`.

  Deterministic: the same config gives the same weights. The checkpoint is written to a
  temporary directory and moved into place, so a concurrent reader never sees half of it; with
  `replace=False` a classifier another process saved there meanwhile is kept.
  """
  validate(config)
  directory = pathlib.Path(directory or classifier_dir(config))
  dataset = _load_labelled_data(config)
  mesh = parallel.make_mesh()
  batches = data.BatchSchedule(dataset.train, -(-BATCH_SIZE // mesh.size) * mesh.size, SEED)
  model = DigitCNN(dataset.num_classes)
  init_rng, augment_rng = jax.random.split(jax.random.PRNGKey(SEED))
  params = jax.jit(model.init)(init_rng, jnp.zeros((1,) + dataset.image_shape))['params']
  steps = config.eval.classifier_steps
  schedule = optax.cosine_decay_schedule(LEARNING_RATE, steps)
  state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                        tx=optax.adamw(schedule, weight_decay=WEIGHT_DECAY))

  def train_step(state, batch, axis_name=None):
    rng = parallel.per_replica_key(jax.random.fold_in(augment_rng, state.step), axis_name)
    images = _shift(batch['image'], rng)

    def loss_fn(params):
      _, logits = model.apply({'params': params}, images)
      return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    grads = parallel.cross_replica_mean(grads, axis_name)
    return state.apply_gradients(grads=grads), {'loss': parallel.cross_replica_mean(loss, axis_name)}

  step_fn = parallel.compile_train_step(train_step, mesh)
  state = parallel.replicate(state, mesh)
  start = time.perf_counter()
  for step in range(steps):
    state, metrics = step_fn(state, parallel.shard_batch(batches(step), mesh))
    # One step in flight at a time: on host CPU devices, many queued steps, each waiting in its
    # cross-device all-reduce, can take every thread of XLA's pool and deadlock.
    loss = float(metrics['loss'])
  params = jax.device_get(state.params)
  info = {'identity': identity(config), 'num_classes': dataset.num_classes,
          'image_shape': list(dataset.image_shape), 'num_train': len(dataset.train),
          'num_holdout': len(dataset.holdout), 'final_train_loss': loss,
          'train_seconds': round(time.perf_counter() - start, 2), 'fingerprint': _fingerprint(params)}
  classifier = Classifier(model, params, info, directory)
  info['holdout_accuracy'] = classifier.accuracy(dataset.holdout)
  info['train_accuracy'] = classifier.accuracy(dataset.train)
  _save(classifier, replace)
  logging.info('Trained the digit classifier in %.1f s: held-out accuracy %.4f, saved to %s',
               info['train_seconds'], info['holdout_accuracy'], directory)
  return classifier


def _save(classifier: Classifier, replace: bool) -> None:
  """Writes the classifier; an existing one in its directory is replaced only when `replace`."""
  directory = classifier.directory
  staging = directory.with_name(f'{directory.name}.tmp-{os.getpid()}')
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir(parents=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save((staging / PARAMS_DIR).absolute(), classifier.params)
  checkpointer.wait_until_finished()
  checkpointer.close()
  (staging / INFO_FILE).write_text(json.dumps(classifier.info, indent=2))
  if directory.exists() and replace:
    retired = directory.with_name(f'{directory.name}.old-{os.getpid()}')
    directory.rename(retired)
    shutil.rmtree(retired)
  try:
    staging.rename(directory)
  except OSError:
    # Another process saved the same classifier first (training is deterministic): keep theirs.
    shutil.rmtree(staging, ignore_errors=True)


def load(directory: pathlib.Path) -> Classifier:
  """The classifier saved in `directory`."""
  directory = pathlib.Path(directory)
  info_path = directory / INFO_FILE
  if not info_path.exists():
    raise FileNotFoundError(f'no digit classifier in {directory} (missing {INFO_FILE}); train it '
                            f'with `python -m gen_jax.classifier --config=...`')
  info = json.loads(info_path.read_text())
  model = DigitCNN(info['num_classes'], tuple(info['identity']['conv_features']),
                   info['identity']['feature_dim'])
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros([1] + info['image_shape']))['params'])
  # Restore onto this process's first device, whatever device count saved it.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), shapes)
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore((directory / PARAMS_DIR).absolute(), abstract)
  checkpointer.close()
  return Classifier(model, params, info, directory)


_loaded: dict[pathlib.Path, Classifier] = {}   # loaded once per process (and compiled once)


def get_classifier(config: ml_collections.ConfigDict) -> Classifier:
  """The classifier of the config's data: loaded from its directory, or trained when missing.

  Raises ConfigError when the directory holds a classifier trained on other data or recipe.
  """
  directory = classifier_dir(config)
  info_path = directory / INFO_FILE
  if not info_path.exists():
    logging.info('No digit classifier in %s; training one (%d steps)', directory,
                 config.eval.classifier_steps)
    classifier = train(config, directory, replace=False)
  else:
    cached = _loaded.get(directory.absolute())
    fingerprint = json.loads(info_path.read_text())['fingerprint']
    classifier = cached if cached and cached.fingerprint == fingerprint else load(directory)
  expected = json.loads(json.dumps(identity(config)))
  if classifier.info['identity'] != expected:
    raise config_checks.ConfigError(
        f'config.eval.classifier_dir={str(directory)!r} holds a classifier trained with '
        f'{classifier.info["identity"]}, not {expected}; point eval.classifier_dir elsewhere '
        f'(or leave it empty for the default) or retrain it with --retrain')
  _loaded[directory.absolute()] = classifier
  return classifier


def main(argv) -> None:
  """`python -m gen_jax.classifier --config=configs/vae.py [--retrain]`: train (when missing) and report."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  host_memory.retain_freed_memory()
  config = flags.FLAGS.config
  directory = classifier_dir(config)
  if flags.FLAGS.retrain or not (directory / INFO_FILE).exists():
    print(f'training the digit classifier ({config.eval.classifier_steps} steps) into {directory}')
  try:
    classifier = train(config, directory) if flags.FLAGS.retrain else get_classifier(config)
  except (config_checks.ConfigError, data.DataError) as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)
  info = classifier.info
  print(f'digit classifier for {config.data.name} in {directory}:')
  print(f'  held-out accuracy {info["holdout_accuracy"]:.4f} on {info["num_holdout"]} images; '
        f'train accuracy {info["train_accuracy"]:.4f} on {info["num_train"]} '
        f'({info["identity"]["steps"]} steps, {info["train_seconds"]} s)')


if __name__ == '__main__':
  # Defined here, not at import, so that gen_jax.main (which defines --config too) can import this.
  config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).')
  flags.DEFINE_bool('retrain', False, 'Train anew even when a classifier is saved.')
  flags.mark_flags_as_required(['config'])
  app.run(main)
