"""Sample-quality metrics of generated images against held-out real ones, in one feature space.

Every model is measured the same way: its samples and the held-out real images go through the
project's digit classifier (gen_jax.evaluation.digit_classifier); its penultimate features and class probabilities
feed the metrics below, the MNIST-scale counterpart of Inception features.

- FID: Fréchet distance between Gaussians fitted to the two feature sets.
- KID: unbiased MMD² with the cubic polynomial kernel, mean and standard deviation over subsets.
- Improved precision and recall: k-NN balls around each set's points approximate its manifold.
- Density and coverage: the k-NN balls of the real points only, counted per sample.
- Inception score, computed with the digit classifier's probabilities.
- Class histogram of the samples, its entropy and its distance to the real one (mode coverage).

The functions on features are pure NumPy and order-invariant: where a metric draws subsets, it
draws them from the rows put in a canonical order first, so a permutation of the samples gives
the same value, and a seed fixes the draw. Real-data features are computed once per dataset,
split and classifier and cached on disk beside the classifier.

The training loop measures every generative model's samples through one `SampleJudge`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from typing import Any, Callable

import chex
import numpy as np

from gen_jax.evaluation import digit_classifier as classifier_lib
from gen_jax.data import Split

# k of the k-NN balls: 3 for precision/recall (Kynkäänniemi et al. 2019), 5 for density/coverage
# (Naeem et al. 2020), the values their authors recommend.
PRECISION_RECALL_K = 3
DENSITY_COVERAGE_K = 5
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
INCEPTION_SCORE_SPLITS = 10
REFERENCE_DIR = 'reference'


# Statistics of feature sets ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GaussianStats:
  """Mean (D,) and covariance (D, D) of a feature set, in float64."""

  mean: np.ndarray
  cov: np.ndarray

  @classmethod
  def of(cls, features: np.ndarray) -> 'GaussianStats':
    """Statistics of (N, D) features; rows sorted first, so that even rounding ignores their order."""
    chex.assert_rank(features, 2)
    features = _canonical(features)
    if features.shape[0] < 2:
      raise ValueError(f'a covariance needs at least 2 feature vectors, got {features.shape[0]}')
    return cls(features.mean(axis=0), np.cov(features, rowvar=False))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Square root of a symmetric positive semi-definite matrix (negative rounding clipped to 0)."""
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
  """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½).

  tr (Σa Σb)^½ equals tr (Σa^½ Σb Σa^½)^½, and Σa^½ Σb Σa^½ is symmetric positive semi-definite,
  so both square roots come from symmetric eigendecompositions: real, stable for singular
  covariances (fewer samples than feature dimensions) with no offset or complex part to discard.
  """
  chex.assert_equal_shape([a.mean, b.mean])
  chex.assert_equal_shape([a.cov, b.cov])
  root_a = _psd_sqrt(a.cov)
  product = root_a @ b.cov @ root_a
  trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0.0, None)).sum()
  distance = np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov) - 2 * trace_sqrt
  return float(max(distance, 0.0))


def fid(real: np.ndarray, fake: np.ndarray) -> float:
  """Fréchet distance between Gaussians fitted to two (N, D) feature sets."""
  return frechet_distance(GaussianStats.of(real), GaussianStats.of(fake))


def _canonical(features: np.ndarray) -> np.ndarray:
  """The rows sorted lexicographically: subsets drawn from it do not depend on the input order."""
  features = np.asarray(features, np.float64)
  return features[np.lexsort(features.T[::-1])]


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  base = x @ y.T / x.shape[1] + 1.0
  return base * base * base   # several times faster than ** 3


def _subset_kernel_sums(a: np.ndarray, b: np.ndarray, subsets_a: np.ndarray, subsets_b: np.ndarray,
                        block: int = 1024) -> np.ndarray:
  """Σ_{i∈A_s, j∈B_s} k(a_i, b_j) for every subset pair s (columns of 0/1 membership matrices).

  All subsets at once, as 1_Aᵀ K 1_B, with K built a block of rows at a time: memory stays
  O(block × len(b)) and no subset is gathered.
  """
  sums = np.zeros(subsets_a.shape[1])
  for start in range(0, len(a), block):
    rows = slice(start, start + block)
    sums += ((_polynomial_kernel(a[rows], b) @ subsets_b) * subsets_a[rows]).sum(axis=0)
  return sums


def _random_subsets(rng: np.random.Generator, n: int, size: int, count: int) -> np.ndarray:
  """(n, count) 0/1 matrix: column s marks `size` rows drawn without replacement."""
  membership = np.zeros((n, count))
  for column in range(count):
    membership[rng.choice(n, size, replace=False), column] = 1.0
  return membership


def kid(real: np.ndarray, fake: np.ndarray, seed: int = 0, num_subsets: int = KID_SUBSETS,
        subset_size: int = KID_SUBSET_SIZE) -> tuple[float, float]:
  """Kernel Inception Distance: the unbiased MMD² estimate, mean and std over random subsets.

  k(x, y) = (x·y / D + 1)³. Each subset takes `subset_size` rows (at most the smaller set's size)
  of each set without replacement; the within-set kernel sums leave out the diagonal, so the
  estimate's expectation is the population MMD² (0 for two samples of one distribution).
  """
  real, fake = _canonical(real), _canonical(fake)
  chex.assert_equal_shape_suffix([real, fake], 1)
  m = min(subset_size, len(real), len(fake))
  if m < 2:
    raise ValueError(f'KID needs at least 2 examples in each set, got {len(real)} and {len(fake)}')
  rng = np.random.default_rng(seed)
  subsets_real = _random_subsets(rng, len(real), m, num_subsets)
  subsets_fake = _random_subsets(rng, len(fake), m, num_subsets)

  def within(x, subsets):
    self_similarity = ((x * x).sum(axis=1) / x.shape[1] + 1.0) ** 3   # the diagonal k(x_i, x_i)
    return (_subset_kernel_sums(x, x, subsets, subsets) - self_similarity @ subsets) / (m * (m - 1))

  estimates = (within(real, subsets_real) + within(fake, subsets_fake)
               - 2 * _subset_kernel_sums(real, fake, subsets_real, subsets_fake) / (m * m))
  return float(np.mean(estimates)), float(np.std(estimates))


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  distances = (x ** 2).sum(1)[:, None] + (y ** 2).sum(1)[None, :] - 2 * x @ y.T
  return np.clip(distances, 0.0, None)


def _knn_radii(features: np.ndarray, k: int) -> np.ndarray:
  """Squared distance of each row to its k-th nearest other row."""
  if len(features) <= k:
    raise ValueError(f'k-NN radii with k={k} need more than {k} points, got {len(features)}')
  distances = _squared_distances(features, features)
  # Each row's smallest distance is to itself (0), so the k-th neighbour sits at index k.
  return np.partition(distances, k, axis=1)[:, k]


def _inside_balls(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
  """(len(points), len(centres)) booleans: point i lies in the ball of centre j."""
  return _squared_distances(points, centres) <= radii[None, :]


def precision_recall(real: np.ndarray, fake: np.ndarray,
                     k: int = PRECISION_RECALL_K) -> tuple[float, float]:
  """Improved precision (samples on the real manifold) and recall (real points on the samples')."""
  precision = _inside_balls(fake, real, _knn_radii(real, k)).any(axis=1).mean()
  recall = _inside_balls(real, fake, _knn_radii(fake, k)).any(axis=1).mean()
  return float(precision), float(recall)


def density_coverage(real: np.ndarray, fake: np.ndarray,
                     k: int = DENSITY_COVERAGE_K) -> tuple[float, float]:
  """Density: real k-NN balls holding each sample, over k (≈1 for matching sets, unbounded).

  Coverage: the fraction of real points whose k-NN ball holds at least one sample.
  """
  inside = _inside_balls(fake, real, _knn_radii(real, k))
  return float(inside.sum() / (k * len(fake))), float(inside.any(axis=0).mean())


def inception_score(probabilities: np.ndarray, seed: int = 0,
                    num_splits: int = INCEPTION_SCORE_SPLITS) -> tuple[float, float]:
  """exp E_x KL(p(y|x) ‖ p(y)) over `num_splits` random splits of the samples: mean and std.

  High when each sample is classified confidently and the classes are used evenly; its maximum is
  the number of classes.
  """
  probabilities = _canonical(probabilities)
  chex.assert_rank(probabilities, 2)
  order = np.random.default_rng(seed).permutation(len(probabilities))
  scores = []
  for part in np.array_split(probabilities[order], min(num_splits, len(probabilities))):
    marginal = part.mean(axis=0, keepdims=True)
    kl = np.sum(part * (np.log(part + 1e-12) - np.log(marginal + 1e-12)), axis=1)
    scores.append(math.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def class_histogram(probabilities: np.ndarray) -> np.ndarray:
  """Fraction of the samples the classifier assigns to each class (its arg-max)."""
  num_classes = probabilities.shape[1]
  return np.bincount(np.argmax(probabilities, axis=1), minlength=num_classes) / len(probabilities)


def entropy(histogram: np.ndarray) -> float:
  """Entropy in nats; log K for K classes used evenly, 0 for one class (mode collapse)."""
  nonzero = histogram[histogram > 0]
  return float(np.sum(nonzero * np.log(1.0 / nonzero)))


# The whole report --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Reference:
  """Classifier features and probabilities of a set of real images: what samples are measured against."""

  features: np.ndarray
  probabilities: np.ndarray
  stats: GaussianStats


def compare(reference: Reference, features: np.ndarray, probabilities: np.ndarray,
            seed: int = 0) -> dict[str, Any]:
  """Every metric of a sample set (its features and class probabilities) against the reference."""
  chex.assert_equal_shape_suffix([reference.features, features], 1)
  chex.assert_equal_shape_suffix([reference.probabilities, probabilities], 1)
  # Subsets of at most half the smaller set, so that they differ and their spread means something
  # (subsets of every row would all be the same set: std 0).
  smaller = min(len(reference.features), len(features))
  kid_mean, kid_std = kid(reference.features, features, seed,
                          subset_size=min(KID_SUBSET_SIZE, max(2, smaller // 2)))
  precision, recall = precision_recall(reference.features, features)
  density, coverage = density_coverage(reference.features, features)
  score, score_std = inception_score(probabilities, seed)
  histogram, real_histogram = class_histogram(probabilities), class_histogram(reference.probabilities)
  return {
      'fid': frechet_distance(reference.stats, GaussianStats.of(features)),
      'kid': kid_mean, 'kid_std': kid_std,
      'precision': precision, 'recall': recall,
      'density': density, 'coverage': coverage,
      'inception_score': score, 'inception_score_std': score_std,
      'class_entropy': entropy(histogram),
      'real_class_entropy': entropy(real_histogram),
      'class_tv_distance': float(0.5 * np.abs(histogram - real_histogram).sum()),
      'class_histogram': [round(float(v), 4) for v in histogram],
      'num_samples': int(len(features)), 'num_real': int(len(reference.features)),
  }


def _images_digest(images: np.ndarray) -> str:
  return hashlib.sha256(np.ascontiguousarray(images, np.float32).tobytes()).hexdigest()[:16]


def reference_for(classifier: classifier_lib.Classifier, split: Split,
                  split_name: str = 'holdout') -> Reference:
  """The classifier's view of real images, loaded from (or written to) the on-disk cache.

  The cache file sits in the classifier's directory, named by the data set, split, size and a
  digest of the images and of the classifier's weights: new images or a retrained classifier
  give a new file, never a stale one.
  """
  key = hashlib.sha256(f'{classifier.fingerprint}:{_images_digest(split.images)}'.encode()).hexdigest()[:16]
  path = (classifier.directory / REFERENCE_DIR /
          f'{classifier.data_name}_{split_name}_{len(split)}_{key}.npz')
  if path.exists():
    with np.load(path) as cached:
      features, probabilities = cached['features'], cached['probabilities']
  else:
    features, probabilities = classifier.features_and_probabilities(split.images)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f'{path.stem}.{os.getpid()}.tmp.npz')
    np.savez(partial, features=features, probabilities=probabilities)
    os.replace(partial, path)   # atomic: a concurrent reader sees the whole file or none
  return Reference(features, probabilities, GaussianStats.of(features))


def sample_quality(classifier: classifier_lib.Classifier, samples: np.ndarray, real: Split,
                   seed: int = 0, split_name: str = 'holdout',
                   asked_classes: np.ndarray | None = None) -> dict[str, Any]:
  """All sample-quality metrics of `samples` ((N, H, W, C) in [0, 1]) against the real images;
  with `asked_classes` (a conditional model's), also `class_match`, the fraction of samples the
  classifier assigns to the class each was asked to be."""
  chex.assert_equal_shape_suffix([samples, real.images], 3)
  low, high = float(np.min(samples)), float(np.max(samples))
  if low < -1e-3 or high > 1 + 1e-3:
    raise ValueError(f'samples must lie in [0, 1] like the real images; got values in '
                     f'[{low:.3g}, {high:.3g}] (rescale tanh outputs with (x + 1) / 2)')
  features, probabilities = classifier.features_and_probabilities(samples)
  report = compare(reference_for(classifier, real, split_name), features, probabilities, seed)
  report['classifier_accuracy'] = classifier.holdout_accuracy   # which instrument measured it
  if asked_classes is not None:
    chex.assert_shape(asked_classes, (len(samples),))
    report['class_match'] = float(np.mean(np.argmax(probabilities, axis=-1) == asked_classes))
  return report


def class_balance(probabilities: np.ndarray) -> dict[str, float]:
  """Mode collapse in numbers: the class histogram's entropy (log K when every class is drawn
  evenly, 0 when one class is), its largest share and every class's share."""
  histogram = class_histogram(probabilities)
  metrics = {'class_entropy': entropy(histogram), 'class_max_fraction': float(histogram.max())}
  metrics.update({f'class_{k}_fraction': float(v) for k, v in enumerate(histogram)})
  return metrics


class SampleJudge:
  """The one place samples are judged: sample quality at evaluation, class balance during training.

  Takes the digit classifier from `classifier`, a function called on first use (which may train
  it), so that a run that never judges samples never needs one.
  """

  def __init__(self, classifier: Callable[[], classifier_lib.Classifier], seed: int):
    self._classifier = classifier
    self.seed = seed

  def quality(self, samples: np.ndarray, real: Split,
              asked_classes: np.ndarray | None = None) -> dict[str, Any]:
    """Every metric of `SAMPLE_QUALITY_METRICS` for samples against the real images (and
    `class_match` for samples asked to be given classes)."""
    return sample_quality(self._classifier(), np.asarray(samples), real, seed=self.seed,
                          asked_classes=asked_classes)

  def accuracy(self, real: Split) -> float:
    """The classifier's accuracy on labelled real images: how far its reading of them is trusted."""
    return self._classifier().accuracy(real)

  def class_balance(self, samples: np.ndarray) -> dict[str, float]:
    return class_balance(self._classifier().probabilities(np.asarray(samples)))


# The names `sample_quality` reports (a model's evaluation adds them to its own): scalars, and
# the class histogram.
SAMPLE_QUALITY_SCALARS = frozenset({
    'fid', 'kid', 'kid_std', 'precision', 'recall', 'density', 'coverage', 'inception_score',
    'inception_score_std', 'class_entropy', 'real_class_entropy', 'class_tv_distance',
    'num_samples', 'num_real', 'classifier_accuracy'})
SAMPLE_QUALITY_METRICS = SAMPLE_QUALITY_SCALARS | {'class_histogram'}
