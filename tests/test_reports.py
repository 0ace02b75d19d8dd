"""eval.md and the results table that experiments/collect_results.py builds from several workdirs."""

import json
import subprocess
import sys

import numpy as np

from gen_jax.evaluation import figures, reports


def _fake_run(workdir, model, fid, seconds, classifier='idx_28x28_aaaa1111', config_name=None,
              smoke=False, latent_dim=2):
  """A workdir as training leaves it: config.json, eval.json, metrics.jsonl with timed windows, a
  sample grid."""
  report = {'model': model, 'config_name': config_name or model, 'data': 'idx', 'step': 40,
            'num_holdout': 2000, 'classifier': classifier,
            'metrics': {'fid': fid, 'kid': 0.0123456, 'class_histogram': [0.5, 0.5],
                        'classifier_accuracy': 0.98}}
  workdir.mkdir(parents=True)
  (workdir / reports.EVAL_JSON).write_text(json.dumps(report))
  (workdir / 'config.json').write_text(json.dumps({
      'name': config_name or model, 'smoke': smoke, 'seed': 0,
      'model': {'name': model, 'latent_dim': latent_dim}, 'train': {'num_steps': 40}}))
  records = [{'step': 20 * (i + 1), 'split': 'train', 'loss': 1.0, 'window_seconds': s}
             for i, s in enumerate(seconds)]
  records.append({'step': 40, 'split': 'eval', 'fid': fid})
  (workdir / 'metrics.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  figures.save_image_grid(np.zeros((4, 8, 8, 1)), workdir / 'eval' / 'step_40' / 'samples.png', columns=2)
  return report


def test_evaluation_markdown_lists_every_metric(tmp_path):
  report = _fake_run(tmp_path / 'a', 'vae', 12.3456, [1.0])
  text = reports.evaluation_markdown(report)
  assert text.startswith('# vae on idx, step 40')
  assert '| fid | 12.35 |' in text and '| kid | 0.01235 |' in text
  assert '| class_histogram | [0.5, 0.5] |' in text


def test_collect_results_builds_one_table_with_time_and_sample_grids(tmp_path):
  _fake_run(tmp_path / 'runs' / 'vae', 'vae', 30.0, [50.0, 70.5])
  _fake_run(tmp_path / 'runs' / 'dcgan', 'dcgan', 10.0, [3600.0])
  (tmp_path / 'runs' / 'unevaluated').mkdir()
  output = tmp_path / 'results' / 'results.md'
  subprocess.run([sys.executable, 'experiments/collect_results.py', str(tmp_path / 'runs' / '*'),
                  f'--output={output}'], check=True, capture_output=True)
  text = output.read_text()
  assert '| config | data | steps | train time | fid | kid | workdir |' in text
  assert '| dcgan | idx | 40 | 1h00m00s | 10 | 0.01235 |' in text
  assert '| vae | idx | 40 | 2m00s | 30 | 0.01235 |' in text
  assert '![samples](../runs/vae/eval/step_40/samples.png)' in text
  assert (output.parent / '../runs/vae/eval/step_40/samples.png').is_file()


def test_runs_of_different_feature_spaces_never_share_a_table(tmp_path):
  """A smoke run's FID (smoke classifier) must not sit beside a full run's (MNIST classifier)."""
  _fake_run(tmp_path / 'full', 'vae', 99.0, [1.0], classifier='idx_28x28_full0001')
  _fake_run(tmp_path / 'smoke', 'vae', 51.0, [1.0], classifier='digits_28x28_smoke001', smoke=True)
  runs = [reports.load_run(tmp_path / name) for name in ('full', 'smoke')]
  text = reports.runs_markdown(runs, tmp_path)
  full, smoke = text.index('`idx_28x28_full0001`'), text.index('`digits_28x28_smoke001`')
  assert text.count('| config |') == 2                    # two tables
  assert full < text.index('| vae | idx') < smoke < text.index('| vae (smoke) |')


def test_the_fields_a_sweep_varies_are_columns_and_the_config_is_named(tmp_path):
  for d in (2, 8):
    _fake_run(tmp_path / f'beta_{d}', 'vae', 10.0 * d, [1.0], config_name='beta_vae', latent_dim=d)
  runs = [reports.load_run(tmp_path / f'beta_{d}') for d in (2, 8)]
  text = reports.runs_markdown(runs, tmp_path)
  assert '| config | data | steps | train time | model.latent_dim | fid |' in text
  assert '| beta_vae | idx | 40 | 0m01s | 2 | 20 |' in text and '| beta_vae | idx | 40 | 0m01s | 8 | 80 |' in text
