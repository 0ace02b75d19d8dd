"""A wrong config fails at start, naming the field, the bad value and what is allowed."""

import subprocess
import sys

import pytest

from gen_jax import data, train
from gen_jax.runtime import config_checks, workdir_guard
from tests.conftest import load_config

CASES = [
    ('model.name', 'vea', r"config.model.name='vea' is not a model; choose one of \[.*'vae'"),
    ('data.name', 'mnits', r"config.data.name='mnits' is not a data source"),
    ('optim.learning_rate', -1e-3, r'config.optim.learning_rate=-0.001 is out of range'),
    ('optim.name', 'adagrad', r"config.optim.name='adagrad' is not allowed; choose one of \['adam'"),
    ('model.latent_dim', 0, r'config.model.latent_dim=0 must be >= 1'),
    ('model.likelihood', 'poisson', r"config.model.likelihood='poisson' is not allowed"),
    ('data.image_size', 27, r'config.data.image_size=27 cannot be taken by the VAE'),
    ('data.channels', 2, r'config.data.channels=2 is not allowed'),
    ('train.batch_size', 0, r'config.train.batch_size=0 must be >= 1'),
    ('model.beta', -1.0, r'config.model.beta=-1.0 is out of range'),
    ('model.conv_features', (32, 0), r'config.model.conv_features=\(32, 0\) must be a non-empty'),
    ('data.holdout_fraction', 1.0, r'config.data.holdout_fraction=1.0 is out of range'),
    ('data.holdout_fraction', float('nan'), r'config.data.holdout_fraction=nan must be a finite number'),
    ('optim.learning_rate', float('nan'), r'config.optim.learning_rate=nan must be a finite number'),
    ('optim.learning_rate', float('inf'), r'config.optim.learning_rate=inf must be a finite number'),
    ('optim.b2', float('nan'), r'config.optim.b2=nan must be a finite number'),
    ('optim.decay_factor', float('nan'), r'config.optim.decay_factor=nan must be a finite number'),
    ('model.beta', float('nan'), r'config.model.beta=nan must be a finite number'),
    ('train.best_metric', 'fdi', r"config.train.best_metric='fdi' is not a metric of model 'vae'; choose one of \[.*'fid'"),
]


@pytest.mark.parametrize('field,value,message', CASES)
def test_bad_value_is_named(field, value, message, tmp_path):
  config = load_config('vae')
  section, name = field.split('.')
  with config.unlocked():
    config[section][name] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, tmp_path)
  assert not (tmp_path / 'config.json').exists()   # nothing was started


def test_batch_not_divisible_by_devices_is_refused(tmp_path):
  config = load_config('vae')
  config.train.batch_size = 30
  with pytest.raises(config_checks.ConfigError, match=r'config.train.batch_size=30 must be a multiple of the 4 devices'):
    train.train_and_evaluate(config, tmp_path)


def test_command_line_reports_the_bad_value(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'gen_jax.main', '--config=configs/vae.py:smoke',
       '--config.optim.learning_rate=-0.5', f'--workdir={tmp_path}'],
      capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert 'config.optim.learning_rate=-0.5 is out of range' in result.stderr


def test_unreadable_data_leaves_no_run_behind(tmp_path):
  config = load_config('vae')
  config.data.name = 'idx'
  config.data.path = str(tmp_path / 'missing')
  with pytest.raises(data.DataError, match='missing'):
    train.train_and_evaluate(config, tmp_path / 'run')
  assert not (tmp_path / 'run').exists()


def test_config_argument_other_than_smoke_is_refused():
  with pytest.raises(ValueError, match="'smoke'"):
    load_config('vae', 'smok')


@pytest.mark.parametrize('field,value,message', [
    ('seed', 2**64, r'config.seed=18446744073709551616 must be <= 9,223,372,036,854,775,807'),
    ('data.image_size', 4096, r'config.data.image_size=4096 must be <= 512'),
    ('model.latent_dim', 10**9, r'config.model.latent_dim=1000000000 must be <= 4,096'),
    ('eval.iwae_samples', 10**9, r'config.eval.iwae_samples=1000000000 must be <= 10,000'),
    ('sample.num_samples', 10**12, r'config.sample.num_samples=1000000000000 must be <= 100,000'),
])
def test_sizes_have_upper_bounds(field, value, message, tmp_path):
  config = load_config('vae')
  *sections, name = field.split('.')
  block = config[sections[0]] if sections else config
  block[name] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, tmp_path)
  assert not (tmp_path / 'config.json').exists()


def test_an_unwritable_classifier_folder_is_refused_before_training(tmp_path):
  blocker = tmp_path / 'a_file'
  blocker.write_text('')
  config = load_config('vae')
  config.eval.classifier_dir = str(blocker / 'classifier')
  with pytest.raises(config_checks.ConfigError, match='classifier_dir=.* cannot be written'):
    train.train_and_evaluate(config, tmp_path / 'run')
  assert not (tmp_path / 'run').exists()


def test_a_damaged_config_json_is_named_and_left_alone(tmp_path):
  (tmp_path / 'config.json').write_text('{"model": ')
  with pytest.raises(workdir_guard.WorkdirMismatch, match=r'config.json is damaged .*nothing in .* was touched'):
    train.train_and_evaluate(load_config('vae'), tmp_path)
  assert (tmp_path / 'config.json').read_text() == '{"model": '


def test_a_data_path_spelled_another_way_is_the_same_run(tmp_path, monkeypatch):
  data = tmp_path / 'data'
  data.mkdir()
  (tmp_path / 'elsewhere').mkdir()
  monkeypatch.chdir(tmp_path)
  config = load_config('vae')
  config.data.path = 'data'
  workdir_guard.claim_workdir(tmp_path / 'run', config, create=True)
  config.data.path = str(data)
  workdir_guard.claim_workdir(tmp_path / 'run', config, create=False)  # the same directory: accepted
  config.data.path = 'elsewhere'
  with pytest.raises(workdir_guard.WorkdirMismatch, match=r"data.path: saved 'data', now 'elsewhere'"):
    workdir_guard.claim_workdir(tmp_path / 'run', config, create=False)


def test_a_field_added_since_a_run_was_saved_matches_only_when_off(tmp_path):
  config = load_config('vae')
  workdir_guard.claim_workdir(tmp_path, config, create=True)
  config.optim.linear_decay_steps = 0   # a field the saved run predates, off: the same run
  workdir_guard.claim_workdir(tmp_path, config, create=False)
  config.optim.linear_decay_steps = 100
  with pytest.raises(workdir_guard.WorkdirMismatch, match=r'optim.linear_decay_steps: saved None, now 100'):
    workdir_guard.claim_workdir(tmp_path, config, create=False)
