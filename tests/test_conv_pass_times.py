"""experiments/conv_pass_times.py: every pass of the models' convolutions, timed and reported."""

import importlib.util
import json
import subprocess
import sys


def _run(tmp_path, *flags):
  return subprocess.run(
      [sys.executable, 'experiments/conv_pass_times.py', f'--out={tmp_path / "report"}', *flags],
      capture_output=True, text=True, timeout=300)


def test_every_pass_of_every_layer_is_reported(tmp_path):
  result = _run(tmp_path, '--batch=2', '--rounds=1', '--repeats=1')
  assert result.returncode == 0, result.stderr[-2000:]
  report = json.loads((tmp_path / 'report' / 'report.json').read_text())
  layers = sorted({row['layer'] for row in report['rows']})
  assert layers == ['dcgan critic 1→64 4×4 stride 2 on 28×28',
                    'dcgan critic 64→128 4×4 stride 2 on 14×14',
                    'vae 1→32 3×3 stride 1 on 28×28', 'vae 32→32 3×3 stride 1 on 28×28',
                    'vae 32→64 3×3 stride 2 on 28×28',
                    'vae transposed 32→1 3×3 stride 1 on 28×28',   # the decoder's 32→32 is a repeat
                    'vae transposed 64→32 3×3 stride 2 on 14×14']
  assert len(report['rows']) == 7 * 3
  torch_installed = importlib.util.find_spec('torch') is not None
  sides = ['jax', 'xla'] + (['torch'] if torch_installed else [])
  for row in report['rows']:
    for side in sides:
      assert row[f'{side}_ms'] > 0 and row[f'{side}_gflops'] > 0
    if row['pass'] == 'forward':
      assert all(row[f'{side}_over_forward'] == 1.0 for side in sides)
    assert row['xla_over_jax'] > 0
    assert ('torch_over_jax' in row) == torch_installed


def test_a_bad_count_is_named_before_any_work(tmp_path):
  result = _run(tmp_path, '--rounds=0')
  assert result.returncode != 0
  assert '--rounds=0: must be at least 1' in result.stderr
  assert not (tmp_path / 'report').exists()
