"""eval.md and the results table that experiments/collect_results.py builds from several workdirs."""

import json
import subprocess
import sys

import numpy as np

from gen_jax.evaluation import figures, reports


def _fake_run(workdir, model, fid, seconds):
  """A workdir as training leaves it: eval.json, metrics.jsonl with timed windows, a sample grid."""
  report = {'model': model, 'data': 'idx', 'step': 40, 'num_holdout': 2000,
            'metrics': {'fid': fid, 'kid': 0.0123456, 'class_histogram': [0.5, 0.5]}}
  workdir.mkdir(parents=True)
  (workdir / reports.EVAL_JSON).write_text(json.dumps(report))
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
  assert '| model | data | steps | train time | fid | kid | workdir |' in text
  assert '| dcgan | idx | 40 | 1h00m00s | 10 | 0.01235 |' in text
  assert '| vae | idx | 40 | 2m00s | 30 | 0.01235 |' in text
  assert '![samples](../runs/vae/eval/step_40/samples.png)' in text
  assert (output.parent / '../runs/vae/eval/step_40/samples.png').is_file()
