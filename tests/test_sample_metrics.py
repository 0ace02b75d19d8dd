"""Sanity properties of the sample-quality metrics, on feature vectors directly (no network)."""

import math

import numpy as np
import pytest
import scipy.linalg
from sklearn.datasets import load_digits

from gen_jax.evaluation import sample_metrics as sm


def _gaussian(rng, n, dim, shift=0.0, scale=1.0):
  return rng.normal(shift, scale, (n, dim))


@pytest.fixture(scope='module')
def real_halves():
  """scikit-learn's digits as 64-D pixel features, split into two disjoint halves, and noise."""
  pixels = load_digits().data / 16.0
  order = np.random.default_rng(0).permutation(len(pixels))
  first, second = pixels[order[:800]], pixels[order[800:1600]]
  noise = np.random.default_rng(1).uniform(0, 1, first.shape)
  return first, second, noise


def _random_spd(rng, dim):
  a = rng.normal(size=(dim, dim))
  return a @ a.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
  rng = np.random.default_rng(0)
  mean_a, mean_b = rng.normal(size=6), rng.normal(size=6)
  var_a, var_b = rng.uniform(0.2, 3, 6), rng.uniform(0.2, 3, 6)
  expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  got = sm.frechet_distance(sm.GaussianStats(mean_a, np.diag(var_a)),
                            sm.GaussianStats(mean_b, np.diag(var_b)))
  assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_agrees_with_direct_scipy_sqrtm():
  rng = np.random.default_rng(1)
  for dim in (2, 10, 40):
    a = sm.GaussianStats(rng.normal(size=dim), _random_spd(rng, dim))
    b = sm.GaussianStats(rng.normal(size=dim), _random_spd(rng, dim))
    direct = (np.sum((a.mean - b.mean) ** 2) + np.trace(a.cov) + np.trace(b.cov)
              - 2 * np.trace(scipy.linalg.sqrtm(a.cov @ b.cov).real))
    assert sm.frechet_distance(a, b) == pytest.approx(direct, rel=1e-7)


def test_fid_of_gaussian_samples_approaches_the_closed_form_distance():
  rng = np.random.default_rng(2)
  dim = 4
  # N(0, I) against N(1, 4 I): |mu|^2 = dim, trace term = dim * (1 - 2)^2 = dim.
  fid = sm.fid(_gaussian(rng, 20000, dim), _gaussian(rng, 20000, dim, shift=1.0, scale=2.0))
  assert fid == pytest.approx(2 * dim, rel=0.03)


def test_fid_is_stable_for_singular_covariances():
  rng = np.random.default_rng(3)
  few = _gaussian(rng, 20, 64)          # 20 points in 64-D: rank-19 covariance
  value = sm.fid(few, few)
  assert math.isfinite(value) and abs(value) < 1e-6
  assert math.isfinite(sm.fid(few, _gaussian(rng, 20, 64)))


def test_fid_of_a_set_against_itself_is_zero(real_halves):
  first, _, _ = real_halves
  assert sm.fid(first, first) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_real_halves_is_small_and_far_below_noise(real_halves):
  first, second, noise = real_halves
  between_halves, against_noise = sm.fid(first, second), sm.fid(first, noise)
  assert between_halves < 0.05 * against_noise, (between_halves, against_noise)


def test_kid_is_unbiased_for_two_samples_of_one_distribution():
  rng = np.random.default_rng(4)
  estimates = [sm.kid(_gaussian(rng, 200, 8), _gaussian(rng, 200, 8), seed=s, num_subsets=5,
                      subset_size=50)[0] for s in range(40)]
  # A biased estimate (diagonal included) would sit at about (E k(x,x) - E k(x,y)) * 2/m > 0.
  x = _gaussian(rng, 2000, 8)
  kernel = sm._polynomial_kernel(x, x)
  bias = 2 / 50 * (np.mean(np.diag(kernel)) - np.mean(kernel[~np.eye(len(x), dtype=bool)]))
  standard_error = np.std(estimates) / math.sqrt(len(estimates))
  assert abs(np.mean(estimates)) < max(4 * standard_error, 0.1 * bias)
  assert abs(np.mean(estimates)) < 0.1 * bias


def test_kid_matches_a_direct_computation_over_its_subsets():
  rng = np.random.default_rng(6)
  real, fake = _gaussian(rng, 90, 5), _gaussian(rng, 70, 5, shift=0.3)
  size, count = 40, 7
  draw = np.random.default_rng(11)
  ordered_real, ordered_fake = sm._canonical(real), sm._canonical(fake)
  real_subsets = [ordered_real[draw.choice(90, size, replace=False)] for _ in range(count)]
  fake_subsets = [ordered_fake[draw.choice(70, size, replace=False)] for _ in range(count)]
  kernel = lambda a, b: (a @ b.T / 5 + 1) ** 3
  estimates = []
  for x, y in zip(real_subsets, fake_subsets):
    off_diagonal = lambda k: (k.sum() - np.trace(k)) / (size * (size - 1))
    estimates.append(off_diagonal(kernel(x, x)) + off_diagonal(kernel(y, y)) - 2 * kernel(x, y).mean())
  got = sm.kid(real, fake, seed=11, num_subsets=count, subset_size=size)
  np.testing.assert_allclose(got, (np.mean(estimates), np.std(estimates)), rtol=1e-10)


def test_kid_of_real_halves_is_near_zero_and_far_below_noise(real_halves):
  first, second, noise = real_halves
  halves_mean, halves_std = sm.kid(first, second, num_subsets=20, subset_size=400)
  noise_mean, _ = sm.kid(first, noise, num_subsets=20, subset_size=400)
  assert abs(halves_mean) < 0.01 * noise_mean
  assert halves_std >= 0


def test_precision_recall_density_coverage_of_real_data(real_halves):
  first, second, noise = real_halves
  assert sm.precision_recall(first, first) == (1.0, 1.0)
  precision, recall = sm.precision_recall(first, second)
  assert precision > 0.7 and recall > 0.7
  density, coverage = sm.density_coverage(first, second)
  assert 0.7 < density < 1.3 and coverage > 0.8
  assert sm.precision_recall(first, noise)[0] < 0.05
  assert sm.density_coverage(first, noise)[1] < 0.05


def test_inception_score_and_class_entropy_extremes():
  num_classes = 10
  confident_even = np.eye(num_classes)[np.arange(1000) % num_classes]
  assert sm.inception_score(confident_even, num_splits=1)[0] == pytest.approx(num_classes, rel=1e-6)
  assert 9 < sm.inception_score(confident_even)[0] <= num_classes   # splits of 100: near-even
  assert sm.entropy(sm.class_histogram(confident_even)) == pytest.approx(math.log(num_classes))
  collapsed = np.eye(num_classes)[np.zeros(1000, int)]
  assert sm.inception_score(collapsed)[0] == pytest.approx(1.0, abs=1e-6)
  assert sm.entropy(sm.class_histogram(collapsed)) == 0.0
  uncertain = np.full((1000, num_classes), 1 / num_classes)
  assert sm.inception_score(uncertain)[0] == pytest.approx(1.0, abs=1e-6)


def _reference(features, probabilities):
  return sm.Reference(features, probabilities, sm.GaussianStats.of(features))


def test_report_is_invariant_to_sample_order_and_deterministic_given_a_seed(real_halves):
  first, second = real_halves[0][:300], real_halves[1][:200]   # KID subsets of 100 of each
  rng = np.random.default_rng(5)
  real_probs = rng.dirichlet(np.ones(10), len(first))
  fake_probs = rng.dirichlet(np.ones(10), len(second))
  reference = _reference(first, real_probs)
  report = sm.compare(reference, second, fake_probs, seed=3)
  order = rng.permutation(len(second))
  assert sm.compare(reference, second[order], fake_probs[order], seed=3) == report
  assert sm.compare(reference, second, fake_probs, seed=3) == report
  other_seed = sm.compare(reference, second, fake_probs, seed=4)
  assert other_seed['kid'] != report['kid'] and other_seed['fid'] == report['fid']
  assert report['kid_std'] > 0   # the subsets differ, even of the smaller set
  assert set(report) >= {'fid', 'kid', 'kid_std', 'precision', 'recall', 'density', 'coverage',
                         'inception_score', 'inception_score_std', 'class_entropy',
                         'class_histogram', 'class_tv_distance'}
  assert sum(report['class_histogram']) == pytest.approx(1.0, abs=1e-3)
