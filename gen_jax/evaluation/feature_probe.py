"""How useful a representation is without labels in training it: a linear probe and k-means.

Each feature set is judged on held-out data in two ways:
- linear-classifier accuracy: multinomial logistic regression fitted on the training examples'
  (standardised) features, scored on the held-out ones;
- clustering quality: k-means with one cluster per class on the held-out features, scored by the
  normalised mutual information between clusters and labels (1 = the clusters are the classes).
Raw pixels, PCA coordinates and autoencoder codes go through the same probe, side by side, and
the table is written as markdown and JSON beside the run's other evaluation outputs.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gen_jax.models import pca
from gen_jax.runtime import config_checks

TABLE_MD = 'feature_probe.md'
TABLE_JSON = 'feature_probe.json'


@dataclasses.dataclass(frozen=True)
class Features:
  """One representation of the same training and held-out examples."""

  key: str               # short name for metric keys: raw, pca, autoencoder
  label: str             # what the table calls it
  train: np.ndarray      # (N_train, dim)
  holdout: np.ndarray    # (N_holdout, dim)


@dataclasses.dataclass(frozen=True)
class ProbeResult:
  key: str
  label: str
  dim: int
  linear_accuracy: float
  kmeans_nmi: float


def validate(config) -> None:
  """Checks the probe's config field, `eval.probe_max_train` (training examples used; 0 = all)."""
  config_checks.require_int(config, 'eval.probe_max_train', minimum=0)


def linear_accuracy(train: np.ndarray, train_labels: np.ndarray, holdout: np.ndarray,
                    holdout_labels: np.ndarray, seed: int = 0) -> float:
  """Held-out accuracy of logistic regression fitted on standardised training features."""
  classifier = make_pipeline(StandardScaler(),
                             LogisticRegression(max_iter=2000, random_state=seed))
  classifier.fit(train, train_labels)
  return float(classifier.score(holdout, holdout_labels))


def kmeans_nmi(features: np.ndarray, labels: np.ndarray, num_clusters: int, seed: int = 0) -> float:
  """NMI between the labels and a k-means clustering of the features into num_clusters."""
  clusters = KMeans(n_clusters=num_clusters, n_init=10, random_state=seed).fit_predict(features)
  return float(normalized_mutual_info_score(labels, clusters))


def raw_and_pca(train_images: np.ndarray, holdout_images: np.ndarray,
                model: pca.PCA) -> list[Features]:
  """Raw pixels, and their coordinates on a fitted PCA's components (the PCA baseline)."""
  flat = lambda images: np.asarray(images, np.float32).reshape(len(images), -1)
  return [Features('raw', 'raw pixels', flat(train_images), flat(holdout_images)),
          Features('pca', f'PCA ({model.num_components} components)',
                   np.asarray(pca.transform(model, train_images)),
                   np.asarray(pca.transform(model, holdout_images)))]


def probe(features: list[Features], train_labels: np.ndarray, holdout_labels: np.ndarray,
          seed: int = 0) -> list[ProbeResult]:
  """Probes every feature set with the same labels, classifier and clustering."""
  num_classes = len(np.unique(np.concatenate([train_labels, holdout_labels])))
  results = []
  for f in features:
    train = np.asarray(f.train, np.float64).reshape(len(f.train), -1)
    holdout = np.asarray(f.holdout, np.float64).reshape(len(f.holdout), -1)
    results.append(ProbeResult(
        key=f.key, label=f.label, dim=train.shape[1],
        linear_accuracy=linear_accuracy(train, train_labels, holdout, holdout_labels, seed),
        kmeans_nmi=kmeans_nmi(holdout, holdout_labels, num_classes, seed)))
  return results


def markdown_table(results: list[ProbeResult], num_train: int, num_holdout: int) -> str:
  lines = [f'Features probed on {num_holdout} held-out examples (linear classifier fitted on '
           f'{num_train} training examples; k-means with one cluster per class).', '',
           '| features | dim | linear-classifier accuracy | k-means NMI |',
           '| --- | ---: | ---: | ---: |']
  lines += [f'| {r.label} | {r.dim} | {r.linear_accuracy:.4f} | {r.kmeans_nmi:.4f} |' for r in results]
  return '\n'.join(lines) + '\n'


def write_table(results: list[ProbeResult], num_train: int, num_holdout: int,
                out_dir: pathlib.Path) -> None:
  out_dir = pathlib.Path(out_dir)
  (out_dir / TABLE_MD).write_text(markdown_table(results, num_train, num_holdout))
  (out_dir / TABLE_JSON).write_text(json.dumps(
      {'num_train': num_train, 'num_holdout': num_holdout,
       'results': [dataclasses.asdict(r) for r in results]}, indent=2))


def _metric_pair(key: str) -> tuple[str, str]:
  return f'probe_{key}_accuracy', f'probe_{key}_nmi'


def metric_names(keys) -> set[str]:
  """The names `as_metrics` gives the results of feature sets with these keys."""
  return {name for key in keys for name in _metric_pair(key)}


def as_metrics(results: list[ProbeResult]) -> dict[str, float]:
  """Flat `probe_<key>_accuracy` / `probe_<key>_nmi` scalars for eval.json."""
  metrics = {}
  for r in results:
    accuracy, nmi = _metric_pair(r.key)
    metrics[accuracy] = r.linear_accuracy
    metrics[nmi] = r.kmeans_nmi
  return metrics


def can_probe(train_labels: np.ndarray, holdout_labels: np.ndarray) -> bool:
  """The probe needs known labels and at least two classes on both sides."""
  return (train_labels.size > 0 and holdout_labels.size > 0 and bool(np.all(train_labels >= 0))
          and bool(np.all(holdout_labels >= 0)) and len(np.unique(train_labels)) >= 2
          and len(np.unique(holdout_labels)) >= 2)
