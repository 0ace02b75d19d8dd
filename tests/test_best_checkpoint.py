"""Keeping the best checkpoint by an evaluation metric beside the latest ones."""

import shutil

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import train, validation
from gen_jax.runtime import checkpointing, config_checks, metric_writers
from tests.conftest import load_config


def _state(value):
  return {'step': jnp.array(0), 'w': jnp.full((3,), value, jnp.float32)}


def test_keeps_only_the_best_and_remembers_it_across_restarts(tmp_path):
  best = checkpointing.BestCheckpointer(tmp_path, 'fid', 'min')
  assert best.offer(1, _state(1.0), {'fid': 5.0})
  assert not best.offer(2, _state(2.0), {'fid': 7.0})
  assert best.offer(3, _state(3.0), {'fid': 3.0})
  assert not best.offer(4, _state(4.0), {'fid': float('nan')})
  assert sorted(int(p.name) for p in (tmp_path / checkpointing.BEST_DIR).iterdir()) == [3]
  best.close()

  resumed = checkpointing.BestCheckpointer(tmp_path, 'fid', 'min')   # a resumed run
  assert resumed.latest_step() == 3 and resumed.best_value() == 3.0
  assert not resumed.offer(5, _state(5.0), {'fid': 4.0})
  chex.assert_trees_all_close(resumed.restore(_state(0.0)), _state(3.0))
  resumed.close()


def test_max_mode_and_unknown_metric(tmp_path):
  best = checkpointing.BestCheckpointer(tmp_path, 'precision', 'max')
  assert best.offer(1, _state(1.0), {'precision': 0.2})
  assert best.offer(2, _state(2.0), {'precision': 0.5})
  assert not best.offer(3, _state(3.0), {'precision': 0.4})
  with pytest.raises(config_checks.ConfigError, match=r"train.best_metric='precision'.*'fid'"):
    best.offer(4, _state(4.0), {'fid': 1.0})
  best.close()


def test_bad_best_fields_are_named():
  config = load_config('vae')
  config.train.best_mode = 'lowest'
  with pytest.raises(config_checks.ConfigError, match='train.best_mode'):
    validation.validate(config)


@pytest.mark.slow
def test_training_keeps_the_best_evaluated_step(vae_smoke_run, tmp_path):
  config, shared, report = vae_smoke_run     # evaluated at steps 6 and 12
  workdir = tmp_path / 'run'
  shutil.copytree(shared, workdir)           # sample writes into it, and its best/ is removed
  evaluations = metric_writers.read_metrics(workdir, 'eval')
  assert [r['step'] for r in evaluations] == [6, 12]
  best_record = min(evaluations, key=lambda r: r['fid'])
  assert sorted(int(p.name) for p in (workdir / checkpointing.BEST_DIR).iterdir()) == [best_record['step']]
  assert (workdir / 'eval.md').read_text().startswith('# vae on digits, step 12')
  assert report['metrics']['fid'] == pytest.approx(evaluations[-1]['fid'])
  assert np.isfinite(report['metrics']['kid'])
  train_records = metric_writers.read_metrics(workdir, 'train')
  assert all(r['window_seconds'] > 0 for r in train_records)

  # evaluate and sample can take the best checkpoint instead of the latest.
  best_report = train.evaluate(config, workdir, checkpoint='best')
  assert best_report['step'] == best_record['step']
  assert best_report['metrics']['fid'] == pytest.approx(best_record['fid'], rel=1e-4)
  samples = np.load(train.sample(config, workdir, 'best.npz', checkpoint='best')[0])['samples']
  assert samples.shape == (config.sample.num_samples, 28, 28, 1)
  shutil.rmtree(workdir / checkpointing.BEST_DIR)
  with pytest.raises(FileNotFoundError, match=r'no intact best checkpoint in .*best'):
    train.evaluate(config, workdir, checkpoint='best')
