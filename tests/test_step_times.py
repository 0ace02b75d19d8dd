"""experiments/step_times.py: variants of one config's train step, timed in turns, reported."""

import json
import subprocess
import sys


def test_variants_are_timed_and_reported(tmp_path):
  result = subprocess.run(
      [sys.executable, 'experiments/step_times.py', '--config=configs/vae.py:smoke', '--idx_path=',
       '--variant=defaults;compiler=default', '--variant=small latent;model.latent_dim=1',
       '--variant=xla convolutions;convolution=xla',
       '--rounds=1', '--slice_seconds=0.2', '--batches=2', f'--out={tmp_path / "report"}'],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((tmp_path / 'report' / 'report.json').read_text())
  assert [row['variant'] for row in report['variants']] == ['defaults', 'small latent',
                                                              'xla convolutions']
  assert all(row['steps'] > 0 and row['ms_per_step'] > 0 for row in report['variants'])


def test_an_unknown_field_is_named(tmp_path):
  result = subprocess.run(
      [sys.executable, 'experiments/step_times.py', '--config=configs/vae.py:smoke', '--idx_path=',
       '--variant=bad;model.no_such_field=3', f'--out={tmp_path / "report"}'],
      capture_output=True, text=True, timeout=300)
  assert result.returncode != 0
  assert "'model.no_such_field' in --variant='bad;model.no_such_field=3' is not a config field" \
      in result.stderr
  assert not (tmp_path / 'report').exists()
