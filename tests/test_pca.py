"""PCA: agreement with scikit-learn, streamed statistics, whitening, choice of k, the PCA family."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA as SklearnPCA

from gen_jax import train
from gen_jax.models import pca
from gen_jax.runtime import config_checks, parallel
from gen_jax.families.base import DataSpec
from gen_jax.families.pca import PCAFamily, PCAState
from tests.conftest import load_config, pmap_train_step, split_across_devices, stack_replicas


@pytest.fixture(scope='module')
def digits():
  return (load_digits().data / 16.0).astype(np.float32)   # (1797, 64)


def _leading(sklearn_model, count):
  """scikit-learn's leading components and eigenvalues (those clearly above rounding level)."""
  return sklearn_model.components_[:count], sklearn_model.explained_variance_[:count]


FLOAT32_EPS = float(np.finfo(np.float32).eps)


def _float32_eigen_tolerances(eigenvalues: np.ndarray, num_examples: int) -> tuple[float, np.ndarray]:
  """Error bounds of a float32 PCA, from how it is computed rather than from one CPU's result.

  The covariance is a float32 sum of `num_examples` outer products and its eigendecomposition is
  backward stable, so the computed spectrum is that of C + E with ‖E‖₂ ≲ (D + √N) · eps · λ_max
  (a sum's rounding error grows like √N on average; eigh adds about D · eps · ‖C‖₂). Weyl's
  theorem bounds every eigenvalue's error by ‖E‖₂; Davis–Kahan bounds each eigenvector's by
  ‖E‖₂ / gap, the gap to its nearest other eigenvalue. A factor of 4 covers the constants.
  """
  dim = len(eigenvalues)
  perturbation = 4 * (dim + np.sqrt(num_examples)) * FLOAT32_EPS * float(eigenvalues.max())
  gaps = np.abs(eigenvalues[:, None] - eigenvalues[None, :]) + np.diag(np.full(dim, np.inf))
  with np.errstate(divide='ignore'):   # a repeated eigenvalue's vectors are not determined
    return perturbation, perturbation / gaps.min(axis=1)


def _float32_sum_tolerance(terms: np.ndarray) -> np.ndarray:
  """Error bound of a float32 sum over the leading axis of `terms`: 4 √N · eps · Σ|term|."""
  return 4 * np.sqrt(len(terms)) * FLOAT32_EPS * np.abs(terms).sum(axis=0)


def _assert_statistics_of(stats, examples: np.ndarray) -> None:
  """`stats` are the float32 statistics of `examples` (N, D), within the bounds of their sums
  (each side may round, hence twice the bound); the count exactly."""
  x = examples.astype(np.float64)
  centred = x - x.mean(axis=0)
  stats = jax.tree.map(np.asarray, jax.device_get(stats))
  assert int(stats.count) == len(examples)
  np.testing.assert_array_less(np.abs(stats.mean - x.mean(axis=0)),
                               2 * _float32_sum_tolerance(x) / len(x) + 1e-30)
  np.testing.assert_array_less(np.abs(stats.scatter - centred.T @ centred),
                               2 * _float32_sum_tolerance(centred[:, :, None] * centred[:, None, :]) + 1e-30)


def test_float32_fit_matches_sklearn(digits):
  reference = SklearnPCA().fit(digits.astype(np.float64))
  model = pca.fit(digits)
  components, variances = _leading(reference, 40)
  eigenvalue_error, vector_errors = _float32_eigen_tolerances(reference.explained_variance_, len(digits))
  np.testing.assert_allclose(model.explained_variance[:40], variances, rtol=0, atol=eigenvalue_error)
  np.testing.assert_allclose(model.explained_variance_ratio[:40], reference.explained_variance_ratio_[:40],
                             rtol=0, atol=2 * eigenvalue_error / reference.explained_variance_.sum())
  # Same sign convention as scikit-learn, so no flip is needed.
  np.testing.assert_array_less(np.abs(np.asarray(model.components[:30]) - components[:30]).max(axis=1),
                               vector_errors[:30])
  np.testing.assert_allclose(model.mean, reference.mean_, rtol=0,
                             atol=_float32_sum_tolerance(digits).max() / len(digits))


def test_float64_fit_matches_sklearn_to_rounding(digits):
  with jax.enable_x64(True):
    x = digits.astype(np.float64)
    reference = SklearnPCA().fit(x)
    model = pca.fit_from_stats(pca.accumulate(np.array_split(x, 13), dtype=jnp.float64))
    assert model.components.dtype == jnp.float64
    components, variances = _leading(reference, 60)
    np.testing.assert_allclose(model.explained_variance[:60], variances, rtol=1e-9)
    signs = np.sign(np.sum(np.asarray(model.components[:60]) * components, axis=1))
    np.testing.assert_allclose(np.asarray(model.components[:60]) * signs[:, None], components, atol=1e-9)
    assert np.all(signs == 1)


def test_streamed_statistics_equal_the_whole_data_set(digits):
  streamed = pca.accumulate(np.array_split(digits, [5, 6, 300, 1000]))   # uneven batches
  _assert_statistics_of(streamed, digits)


def test_merged_update_survives_a_large_offset_in_float32():
  """Data far from the origin: the naive E[x²] - E[x]² loses every digit; the merge does not."""
  rng = np.random.default_rng(0)
  x = (1000.0 + rng.normal(size=(4096, 3)) * np.array([1.0, 0.5, 0.1])).astype(np.float32)
  stats = pca.accumulate(np.array_split(x, 64))
  exact = np.cov(x.astype(np.float64), rowvar=False)
  np.testing.assert_allclose(pca.covariance(stats), exact, rtol=1e-3, atol=1e-4)
  naive = (x.T @ x - len(x) * np.outer(x.mean(0), x.mean(0))) / (len(x) - 1)
  assert np.abs(naive - exact).max() > 100 * np.abs(np.asarray(pca.covariance(stats)) - exact).max()


def test_replica_statistics_combine_under_pmap(digits):
  devices = jax.local_devices()
  parts = jnp.asarray(digits[:1600].reshape(len(devices), -1, 64))
  combined = jax.pmap(lambda x: pca.all_reduce(pca.batch_stats(x), 'i'), axis_name='i')(parts)
  for replica in range(len(devices)):
    _assert_statistics_of(jax.tree.map(lambda a: a[replica], combined), digits[:1600])


def test_transform_inverse_and_whitening_match_sklearn(digits):
  train_x, test_x = digits[:1500], digits[1500:]
  for whiten in (False, True):
    reference = SklearnPCA(n_components=10, whiten=whiten).fit(train_x.astype(np.float64))
    model = pca.fit(train_x, n_components=10, whiten=whiten)
    z = np.asarray(pca.transform(model, test_x))
    np.testing.assert_allclose(z, reference.transform(test_x), atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(pca.inverse_transform(model, jnp.asarray(z)),
                               reference.inverse_transform(z.astype(np.float64)), atol=1e-4)
  whitened = np.asarray(pca.transform(pca.fit(train_x, 10, whiten=True), train_x))
  np.testing.assert_allclose(whitened.var(axis=0, ddof=1), np.ones(10), rtol=1e-3)
  full = pca.fit(train_x)   # every component: the round trip is exact
  np.testing.assert_allclose(pca.inverse_transform(full, pca.transform(full, test_x)), test_x, atol=1e-4)


@pytest.mark.parametrize('fraction', [0.5, 0.8, 0.9, 0.95, 0.99])
def test_number_of_components_by_variance_fraction_matches_sklearn(digits, fraction):
  reference = SklearnPCA(n_components=fraction, svd_solver='full').fit(digits.astype(np.float64))
  assert pca.fit(digits, n_components=fraction).num_components == reference.n_components_


def test_component_choice_rejects_nonsense():
  ratios = np.array([0.5, 0.3, 0.2])
  assert pca.choose_num_components(ratios, None) == 3
  assert pca.choose_num_components(ratios, 2) == 2
  for bad in (0, 4, 1.0, 0.0, -0.5, True):
    with pytest.raises(ValueError):
      pca.choose_num_components(ratios, bad)


def test_samples_come_from_the_kept_components(digits):
  config = load_config('pca')
  config.model.n_components = 5
  family = _family(config, (8, 8, 1))
  state = PCAState(step=jnp.array(4), stats=pca.batch_stats(jnp.asarray(digits)))
  samples = family.sample(state, jax.random.PRNGKey(0), 4000)
  chex.assert_shape(samples, (4000, 8, 8, 1))
  assert samples.min() >= 0 and samples.max() <= 1
  model = pca.fit(digits, n_components=5)
  # Before clipping, samples lie in the 5-component affine subspace; after it, close to it.
  residual = samples.reshape(4000, -1) - np.asarray(pca.inverse_transform(model, pca.transform(model, samples)))
  assert np.mean(residual ** 2) < 0.1 * np.mean((digits - digits.mean(0)) ** 2)


def test_signs_are_deterministic(digits):
  model = pca.fit(digits, n_components=20)
  rows = np.asarray(model.components)
  largest = rows[np.arange(20), np.abs(rows).argmax(axis=1)]
  assert np.all(largest > 0)
  shuffled = pca.fit(digits[np.random.default_rng(1).permutation(len(digits))], n_components=20)
  spectrum = np.asarray(pca.fit(digits).explained_variance, np.float64)
  _, vector_errors = _float32_eigen_tolerances(spectrum, len(digits))
  # Both fits round: each component may move by its bound, the pair by twice it.
  np.testing.assert_array_less(np.abs(np.asarray(shuffled.components[:10] - model.components[:10])).max(axis=1),
                               2 * vector_errors[:10])


# The family ----------------------------------------------------------------------------------


def _family(config, image_shape=(28, 28, 1), steps_per_epoch=4):
  return PCAFamily(config, DataSpec(image_shape, 10, steps_per_epoch,
                                    steps_per_epoch * config.train.batch_size))


def test_train_step_accumulates_one_epoch_on_a_mesh_and_under_pmap(digits):
  config = load_config('pca')
  family = _family(config, (8, 8, 1), steps_per_epoch=4)
  images = digits[:128].reshape(4, 32, 8, 8, 1)
  mesh = parallel.make_mesh(4)
  step = parallel.compile_train_step(family.train_step, mesh)
  state = parallel.replicate(family.init_state(jax.random.PRNGKey(0)), mesh)
  for epoch in range(2):   # the second epoch leaves the statistics alone
    for part in images:
      state, metrics = step(state, parallel.shard_batch({'image': part}, mesh))
  assert int(state.step) == 8 and float(metrics['examples']) == 128
  _assert_statistics_of(state.stats, digits[:128])

  replicated = stack_replicas(family.init_state(jax.random.PRNGKey(0)))
  pmapped = pmap_train_step(family)
  for part in images:
    replicated, _ = pmapped(replicated, split_across_devices({'image': jnp.asarray(part)}))
  _assert_statistics_of(jax.tree.map(lambda a: a[0], replicated.stats), digits[:128])


def test_incomplete_pass_is_reported_with_the_fields_to_change():
  config = load_config('pca')
  family = _family(config)
  state = PCAState(step=jnp.array(7), stats=pca.batch_stats(jnp.zeros((224, 784))))
  family.check_coverage(state, 224)
  with pytest.raises(config_checks.ConfigError, match=r'fitted on 224 of the 250 training examples.*'
                                                      r'config.train.batch_size=32 must divide the '
                                                      r'250 training examples'):
    family.check_coverage(state, 250)


@pytest.mark.parametrize('field,value,message', [
    ('train.batch_size', 24, r'batch_size=24 must divide the 256 training examples'),
    ('train.num_steps', 7, r'num_steps=7 must be at least 8, one epoch'),
])
def test_a_run_that_would_miss_examples_is_refused_before_training(field, value, message, tmp_path):
  config = load_config('pca')   # 256 training examples, batch 32
  section, name = field.split('.')
  config[section][name] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, tmp_path / 'run')
  assert not (tmp_path / 'run' / 'checkpoints').exists()


@pytest.mark.parametrize('field,value,message', [
    ('n_components', 785, r'config.model.n_components=785 exceeds the 784 pixel values'),
    ('variance_fraction', 1.0, r'config.model.variance_fraction=1.0 is out of range'),
    ('n_components', -1, r'config.model.n_components=-1 must be >= 0'),
])
def test_bad_model_fields_are_named(field, value, message):
  config = load_config('pca')
  with config.unlocked():
    config.model[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    PCAFamily.validate(config)


def test_intermediate_evaluation_is_refused():
  config = load_config('pca')
  config.train.eval_every = 4
  with pytest.raises(config_checks.ConfigError, match=r'config.train.eval_every=4 cannot be used with PCA'):
    PCAFamily.validate(config)


def test_smoke_run_fits_every_example_and_writes_its_pictures(tmp_path):
  config = load_config('pca')
  report = train.train_and_evaluate(config, tmp_path)
  metrics = report['metrics']
  assert metrics['fitted_examples'] == config.data.max_examples
  assert metrics['explained_variance_ratio'] > config.model.variance_fraction
  errors = [metrics[f'holdout_mse_{k}_components'] for k in (1, 2, 5, 10, 50)]
  assert errors == sorted(errors, reverse=True) and errors[-1] < 0.1 * errors[0]
  assert metrics['probe_pca_accuracy'] > 0.5 and metrics['probe_raw_accuracy'] > 0.5
  out = tmp_path / 'eval' / 'step_12'
  for name in ('scree.png', 'reconstructions.png', 'projection.png', 'components.png',
               'feature_probe.md', 'spectrum.json'):
    assert (out / name).is_file(), name
  spectrum = json.loads((out / 'spectrum.json').read_text())['eigenvalues']
  assert spectrum == sorted(spectrum, reverse=True) and len(spectrum) == 784
