"""The digit classifier as an instrument: features and class probabilities of images, in the
feature space every sample-quality metric is computed in.

The classifier is a model like the others (network: gen_jax.models.classifier; training:
gen_jax.families.classifier, by the one training loop, into its own workdir). This module only
wraps trained weights for measuring: it runs the network data-parallel over the local devices in
fixed-size batches, compiled once per instance, and fingerprints the weights so that caches keyed
by them (the real images' features, gen_jax.evaluation.sample_metrics) die with a retrained
classifier.
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.data import DataError, Split
from gen_jax.evaluation.evaluator import Evaluator
from gen_jax.runtime import parallel

# Images a device classifies per compiled call.
BATCH_PER_DEVICE = 64


def fingerprint(params: Any) -> str:
  """A digest of the weights."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(jax.device_get(params)):
    digest.update(np.ascontiguousarray(leaf).tobytes())
  return digest.hexdigest()[:16]


class Classifier:
  """Trained weights of a network mapping images (N, H, W, C) in [0, 1] to (features, logits)."""

  def __init__(self, model: nn.Module, params: Any, holdout_accuracy: float, data_name: str,
               directory: pathlib.Path):
    mesh = parallel.local_mesh()   # each process of a multi-host run judges on its own devices
    self.model = model
    self.params = parallel.replicate(params, mesh)
    self.holdout_accuracy = float(holdout_accuracy)
    self.data_name = data_name
    self.directory = pathlib.Path(directory)
    self.fingerprint = fingerprint(params)
    self._evaluator = Evaluator(mesh, BATCH_PER_DEVICE * mesh.size)

  def _outputs(self, params, batch, rng):
    del rng
    features, logits = self.model.apply({'params': params}, batch['image'])
    return {'features': features, 'probabilities': jax.nn.softmax(logits),
            'correct': jnp.argmax(logits, -1) == batch['label']}

  def _collect(self, split: Split) -> dict[str, np.ndarray]:
    return self._evaluator.collect(self._outputs, self.params, split, jax.random.PRNGKey(0))

  def features_and_probabilities(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features (N, D) and class probabilities (N, K)."""
    images = np.asarray(images, np.float32)
    outputs = self._collect(Split(images, np.full((len(images),), -1, np.int32)))
    chex.assert_shape(outputs['features'], (len(images), self.model.feature_dim))
    chex.assert_shape(outputs['probabilities'], (len(images), self.model.num_classes))
    return outputs['features'], outputs['probabilities']

  def features(self, images: np.ndarray) -> np.ndarray:
    return self.features_and_probabilities(images)[0]

  def probabilities(self, images: np.ndarray) -> np.ndarray:
    return self.features_and_probabilities(images)[1]

  def accuracy(self, split: Split) -> float:
    """Fraction of a labelled split classified correctly."""
    if not split.has_labels:
      raise DataError('accuracy needs a labelled split')
    return float(self._collect(split)['correct'].mean())
