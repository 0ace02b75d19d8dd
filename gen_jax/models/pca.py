"""PCA by eigendecomposition of the covariance matrix, fitted from streamed sufficient statistics.

The data are summarised by `CovarianceStats` (count, mean, and the scatter matrix: the sum of
outer products of the centred examples). Statistics of two parts of the data merge exactly with
the pairwise update of Chan, Golub and LeVeque, so data larger than memory are fitted batch by
batch in float32 without the cancellation of the naive sum-of-squares formula, and the
statistics of the replicas of a data-parallel step combine the same way.

`fit_from_stats` takes the eigendecomposition of the covariance (`jnp.linalg.eigh`), sorts the
components by eigenvalue, fixes each component's sign (its largest-magnitude entry is positive)
and keeps a number of components given by count or by the fraction of variance to explain.
`transform` / `inverse_transform` project onto the components and back, optionally whitened.
"""

from __future__ import annotations

from typing import Iterable

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class CovarianceStats:
  """Sufficient statistics of a set of D-dimensional examples."""

  count: jax.Array     # () int32: number of examples
  mean: jax.Array      # (D,)
  scatter: jax.Array   # (D, D): sum over examples of (x - mean)(x - mean)^T


def empty_stats(dim: int, dtype=jnp.float32) -> CovarianceStats:
  return CovarianceStats(jnp.zeros((), jnp.int32), jnp.zeros((dim,), dtype),
                         jnp.zeros((dim, dim), dtype))


def batch_stats(x: jax.Array) -> CovarianceStats:
  """Statistics of a (N, D) batch, centred on the batch's own mean."""
  chex.assert_rank(x, 2)
  mean = jnp.mean(x, axis=0)
  centred = x - mean
  return CovarianceStats(jnp.asarray(x.shape[0], jnp.int32), mean, centred.T @ centred)


def merge(a: CovarianceStats, b: CovarianceStats) -> CovarianceStats:
  """Statistics of the union of two disjoint sets (Chan et al.'s pairwise update)."""
  count = a.count + b.count
  na, nb = a.count.astype(a.mean.dtype), b.count.astype(a.mean.dtype)
  n = jnp.maximum(na + nb, 1)
  delta = b.mean - a.mean
  mean = a.mean + delta * (nb / n)
  scatter = a.scatter + b.scatter + jnp.outer(delta, delta) * (na * nb / n)
  return CovarianceStats(count, mean, scatter)


def all_reduce(stats: CovarianceStats, axis_name: str) -> CovarianceStats:
  """Under `jax.pmap`: the statistics of every replica's part together, on every replica."""
  n = stats.count.astype(stats.mean.dtype)
  count = jax.lax.psum(stats.count, axis_name)
  mean = jax.lax.psum(n * stats.mean, axis_name) / jnp.maximum(count.astype(n.dtype), 1)
  offset = stats.mean - mean
  scatter = jax.lax.psum(stats.scatter + n * jnp.outer(offset, offset), axis_name)
  return CovarianceStats(count, mean, scatter)


_merge_batch = jax.jit(lambda stats, x: merge(stats, batch_stats(x)))


def accumulate(batches: Iterable[np.ndarray], dtype=jnp.float32) -> CovarianceStats:
  """Streams (N_i, ...) batches (flattened per example) into one set of statistics."""
  stats = None
  for batch in batches:
    x = jnp.asarray(batch, dtype).reshape(len(batch), -1)
    stats = empty_stats(x.shape[1], dtype) if stats is None else stats
    stats = _merge_batch(stats, x)
  if stats is None:
    raise ValueError('accumulate() got no batches')
  return stats


def covariance(stats: CovarianceStats) -> jax.Array:
  """The unbiased sample covariance, scatter / (n - 1)."""
  return stats.scatter / jnp.maximum(stats.count - 1, 1).astype(stats.scatter.dtype)


@flax.struct.dataclass
class PCA:
  """A fitted PCA: the leading `k` principal components and the whole eigenvalue spectrum."""

  mean: jax.Array                      # (D,)
  components: jax.Array                # (k, D), orthonormal rows, by decreasing eigenvalue
  explained_variance: jax.Array        # (k,) eigenvalues of the covariance
  explained_variance_ratio: jax.Array  # (k,) eigenvalue / total variance
  spectrum: jax.Array                  # (D,) every eigenvalue, decreasing (for the scree plot)
  num_samples: jax.Array               # () examples the covariance was estimated from
  whiten: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def num_components(self) -> int:
    return self.components.shape[0]


def deterministic_signs(components: jax.Array) -> jax.Array:
  """Flips each (k, D) row so its largest-magnitude entry is positive (as scikit-learn does)."""
  largest = jnp.take_along_axis(components, jnp.argmax(jnp.abs(components), axis=1)[:, None], axis=1)
  return components * jnp.where(largest < 0, -1.0, 1.0).astype(components.dtype)


@jax.jit
def _eigendecomposition(stats: CovarianceStats) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Eigenvalues of the covariance (decreasing, clipped at 0), the matching sign-fixed (D, D)
  component rows, and each eigenvalue's share of the total variance."""
  eigenvalues, eigenvectors = jnp.linalg.eigh(covariance(stats))
  order = jnp.argsort(-eigenvalues)
  eigenvalues = jnp.maximum(eigenvalues[order], 0.0)
  total = jnp.sum(eigenvalues)
  return (eigenvalues, deterministic_signs(eigenvectors[:, order].T),
          eigenvalues / jnp.where(total > 0, total, 1.0))


def choose_num_components(ratios: np.ndarray, n_components: int | float | None) -> int:
  """How many components to keep: all (None), a count (int), or the fewest whose cumulative
  explained-variance ratio exceeds a fraction in (0, 1) (float), as scikit-learn chooses."""
  dim = len(ratios)
  if n_components is None:
    return dim
  if isinstance(n_components, (int, np.integer)) and not isinstance(n_components, bool):
    if not 1 <= n_components <= dim:
      raise ValueError(f'n_components={n_components} must be between 1 and the dimension {dim}')
    return int(n_components)
  if isinstance(n_components, float) and 0.0 < n_components < 1.0:
    return min(int(np.searchsorted(np.cumsum(ratios), n_components, side='right')) + 1, dim)
  raise ValueError(f'n_components={n_components!r} must be None, an int count or a float in (0, 1)')


def fit_from_stats(stats: CovarianceStats, n_components: int | float | None = None,
                   whiten: bool = False) -> PCA:
  """PCA of the covariance the statistics describe."""
  if int(stats.count) < 2:
    raise ValueError(f'PCA needs at least 2 examples, got {int(stats.count)}')
  # Host arrays from here on: choosing and slicing k components needs no compilation.
  eigenvalues, components, ratios = jax.device_get(_eigendecomposition(stats))
  k = choose_num_components(ratios, n_components)
  return PCA(mean=np.asarray(stats.mean), components=components[:k], explained_variance=eigenvalues[:k],
             explained_variance_ratio=ratios[:k], spectrum=eigenvalues,
             num_samples=np.asarray(stats.count), whiten=whiten)


def fit(x: jax.Array, n_components: int | float | None = None, whiten: bool = False) -> PCA:
  """PCA of (N, ...) examples held in memory (flattened per example)."""
  x = jnp.asarray(x)
  return fit_from_stats(batch_stats(x.reshape(x.shape[0], -1)), n_components, whiten)


def truncate(model: PCA, k: int) -> PCA:
  """The same PCA keeping only its first k components."""
  if not 1 <= k <= model.num_components:
    raise ValueError(f'cannot keep {k} of {model.num_components} components')
  return model.replace(components=model.components[:k], explained_variance=model.explained_variance[:k],
                       explained_variance_ratio=model.explained_variance_ratio[:k])


def _whitening_scale(model: PCA) -> jax.Array:
  tiny = jnp.finfo(model.explained_variance.dtype).tiny
  return jnp.sqrt(jnp.maximum(model.explained_variance, tiny))


def transform(model: PCA, x: jax.Array) -> jax.Array:
  """(N, ...) examples to their (N, k) coordinates on the components (unit variance if whitened)."""
  x = jnp.asarray(x)
  flat = x.reshape(x.shape[0], -1)
  chex.assert_shape(flat, (None, model.mean.shape[0]))
  z = (flat - model.mean) @ model.components.T
  return z / _whitening_scale(model) if model.whiten else z


def inverse_transform(model: PCA, z: jax.Array) -> jax.Array:
  """(N, k) coordinates back to flat (N, D) examples: the projection onto the components' span."""
  chex.assert_shape(z, (None, model.num_components))
  if model.whiten:
    z = z * _whitening_scale(model)
  return z @ model.components + model.mean

