"""The digit classifier behind the sample metrics: trained by the one loop, loaded, rebuilt, cached."""

import json

import chex
import numpy as np
import pytest

from gen_jax import data, train, validation
from gen_jax.evaluation import reports, sample_metrics
from gen_jax.families import classifier as classifier_family
from gen_jax.runtime import checkpointing, config_checks, metric_writers, workdir_guard
from tests.conftest import load_config

STEPS = 60


def _config(directory, steps=STEPS):
  config = load_config('vae')
  config.eval.classifier_dir = str(directory)
  config.eval.classifier_steps = steps
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  directory = tmp_path_factory.mktemp('classifier')
  config = _config(directory)
  holdout = data.load(**config.data).holdout
  return config, train.digit_classifier(config), holdout


def test_the_training_loop_trains_it_far_above_chance_into_its_workdir(trained):
  config, classifier, holdout = trained
  report = json.loads((classifier.directory / reports.EVAL_JSON).read_text())
  assert report['model'] == 'classifier' and report['step'] == STEPS
  assert report['metrics']['holdout_accuracy'] == pytest.approx(classifier.accuracy(holdout))
  assert classifier.holdout_accuracy > 0.6       # ten classes: chance is 0.1
  # The loop's own workdir: its config, checkpoints and metrics.
  saved = json.loads((classifier.directory / workdir_guard.RUN_CONFIG).read_text())
  assert saved['data']['max_examples'] == 0      # all of the training split, not max_examples
  assert (classifier.directory / checkpointing.CHECKPOINT_DIR / str(STEPS)).is_dir()
  assert metric_writers.read_metrics(classifier.directory, 'train')
  features, probabilities = classifier.features_and_probabilities(holdout.images[:37])
  chex.assert_shape(features, (37, classifier.model.feature_dim))
  chex.assert_shape(probabilities, (37, 10))
  np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)


def test_saved_classifier_loads_once_with_the_same_weights(trained, monkeypatch):
  config, classifier, holdout = trained
  assert train.digit_classifier(config) is classifier   # loaded once per process
  monkeypatch.setattr(train, '_classifiers', {})
  loaded = train.digit_classifier(config)
  assert loaded is not classifier and loaded.fingerprint == classifier.fingerprint
  chex.assert_trees_all_close(loaded.features(holdout.images[:50]),
                              classifier.features(holdout.images[:50]), atol=1e-6)


def test_missing_classifier_is_rebuilt_identically(trained, tmp_path):
  _, classifier, _ = trained
  rebuilt = train.digit_classifier(_config(tmp_path / 'rebuilt'))
  assert (tmp_path / 'rebuilt' / reports.EVAL_JSON).is_file()
  assert rebuilt.fingerprint == classifier.fingerprint   # training is deterministic


def test_classifier_of_another_recipe_is_refused(trained, monkeypatch):
  _, classifier, _ = trained
  monkeypatch.setattr(train, '_classifiers', {})
  with pytest.raises(workdir_guard.WorkdirMismatch, match='train.num_steps|holds a run'):
    train.digit_classifier(_config(classifier.directory, steps=STEPS + 1))


def test_default_directory_names_the_data_and_separates_recipes():
  full, smoke = load_config('vae', None), load_config('vae')
  assert classifier_family.workdir(full).name.startswith('digits_28x28_')
  assert classifier_family.workdir(full) != classifier_family.workdir(smoke)
  smoke.data.max_examples = 7   # the classifier always trains on the whole training split
  assert classifier_family.workdir(smoke) == classifier_family.workdir(load_config('vae'))


def test_bad_classifier_fields_are_named():
  config = load_config('vae')
  config.eval.classifier_steps = 0
  with pytest.raises(config_checks.ConfigError, match='eval.classifier_steps'):
    validation.validate(config)


def test_real_features_are_cached_per_split_and_classifier(trained, monkeypatch):
  _, classifier, holdout = trained
  first = sample_metrics.reference_for(classifier, holdout)
  cached = sorted((classifier.directory / sample_metrics.REFERENCE_DIR).iterdir())
  assert len(cached) == 1 and cached[0].name.startswith(f'digits_holdout_{len(holdout)}_')

  def must_not_run(images):
    raise AssertionError('cached features were recomputed')

  monkeypatch.setattr(classifier, 'features_and_probabilities', must_not_run)
  second = sample_metrics.reference_for(classifier, holdout)
  np.testing.assert_array_equal(first.features, second.features)
  monkeypatch.undo()
  sample_metrics.reference_for(classifier, holdout.take(100))
  assert len(list((classifier.directory / sample_metrics.REFERENCE_DIR).iterdir())) == 2


def test_real_halves_score_far_better_than_noise(trained):
  _, classifier, holdout = trained
  half = len(holdout) // 2
  reference = data.Split(holdout.images[:half], holdout.labels[:half])
  real = sample_metrics.sample_quality(classifier, holdout.images[half:], reference)
  noise_images = np.random.default_rng(0).uniform(0, 1, holdout.images[half:].shape)
  noise = sample_metrics.sample_quality(classifier, noise_images.astype(np.float32), reference)
  assert real['fid'] < 0.2 * noise['fid'], (real['fid'], noise['fid'])
  assert real['classifier_accuracy'] == classifier.holdout_accuracy
  assert real['precision'] > 0.5 > noise['precision']
  assert real['class_entropy'] > 2.0 > noise['class_entropy']
  with pytest.raises(ValueError, match=r'must lie in \[0, 1\]'):
    sample_metrics.sample_quality(classifier, 2 * holdout.images[half:] - 1, reference)
