"""Human-readable reports: one evaluation as a markdown table, several runs side by side.

`--mode=evaluate` writes `eval.md` beside `eval.json` with `evaluation_markdown`;
experiments/collect_results.py builds one results table of many workdirs with `runs_markdown`.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any, Sequence

from gen_jax.runtime import metric_writers

EVAL_JSON = 'eval.json'
EVAL_MARKDOWN = 'eval.md'
# The columns of the results table, in order; a run without a metric shows a dash.
SUMMARY_METRICS = ('fid', 'kid', 'precision', 'recall', 'density', 'coverage', 'inception_score',
                   'class_entropy', 'neg_elbo', 'iwae_nll')


def format_value(value: Any) -> str:
  """Numbers to 4 significant digits (scientific when tiny or huge), lists compactly."""
  if isinstance(value, bool) or value is None:
    return str(value)
  if isinstance(value, int):
    return str(value)
  if isinstance(value, float):
    return f'{value:.4g}' if math.isfinite(value) else str(value)
  if isinstance(value, (list, tuple)):
    return '[' + ', '.join(format_value(v) for v in value) + ']'
  return str(value)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  """A markdown table; `|` inside cells is escaped."""
  escape = lambda cell: str(cell).replace('|', '\\|')
  lines = ['| ' + ' | '.join(map(escape, header)) + ' |',
           '|' + '|'.join(' --- ' for _ in header) + '|']
  lines += ['| ' + ' | '.join(map(escape, row)) + ' |' for row in rows]
  return '\n'.join(lines) + '\n'


def evaluation_markdown(report: dict[str, Any]) -> str:
  """One evaluation report (as in eval.json): a heading and a metric/value table."""
  heading = (f'# {report["model"]} on {report["data"]}, step {report["step"]}\n\n'
             f'{report["num_holdout"]} held-out images.\n\n')
  rows = [(name, format_value(value)) for name, value in report['metrics'].items()]
  return heading + table(('metric', 'value'), rows)


def train_seconds(workdir: pathlib.Path) -> float | None:
  """Wall time spent training in the workdir (all sessions), from the logged windows."""
  records = metric_writers.read_metrics(workdir, 'train')
  seconds = [r['window_seconds'] for r in records if 'window_seconds' in r]
  return float(sum(seconds)) if seconds else None


def format_duration(seconds: float | None) -> str:
  if seconds is None:
    return '-'
  minutes, secs = divmod(round(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f'{hours}h{minutes:02d}m{secs:02d}s' if hours else f'{minutes}m{secs:02d}s'


def _flat_config(tree: dict, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat_config(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


# The picture of an evaluation that shows what a model makes: samples, or a translation model's
# input | translation | target rows.
SAMPLE_PICTURES = ('samples.png', 'translations.png')


def load_run(workdir: pathlib.Path) -> dict[str, Any]:
  """A workdir's latest evaluation report, with its training wall time, sample grid and config."""
  workdir = pathlib.Path(workdir)
  path = workdir / EVAL_JSON
  if not path.exists():
    raise FileNotFoundError(f'{workdir} has no {EVAL_JSON}: evaluate it first (--mode=evaluate)')
  report = json.loads(path.read_text())
  eval_dirs = sorted(workdir.glob(f'eval/step_{report["step"]}*'), key=lambda p: p.stat().st_mtime)
  grids = [d / name for d in eval_dirs for name in SAMPLE_PICTURES if (d / name).exists()]
  config_path = workdir / 'config.json'
  config = _flat_config(json.loads(config_path.read_text())) if config_path.exists() else {}
  return dict(report, workdir=workdir, train_seconds=train_seconds(workdir),
              samples=grids[-1] if grids else None, config=config)


# Fields that differ between runs without saying anything about them: their names (the config
# column), where they ran, their length (the steps column) and reporting.
_NOT_COMPARED = ('name', 'model.name', 'train.num_steps', 'train.log_every', 'train.checkpoint_every',
                 'train.keep_checkpoints', 'train.eval_every', 'train.num_devices', 'eval.batch_size',
                 'sample.num_samples', 'eval.classifier_dir')


def differing_fields(runs: Sequence[dict[str, Any]]) -> list[str]:
  """The config fields whose values differ between the runs (a sweep's swept fields, say)."""
  fields = sorted(set().union(*(run['config'] for run in runs)))
  values = lambda field: {json.dumps(run['config'].get(field), sort_keys=True) for run in runs}
  return [f for f in fields if f not in _NOT_COMPARED and len(values(f)) > 1]


def _feature_space(run: dict[str, Any]) -> str:
  """Which classifier measured a run's sample metrics: their feature space."""
  return run.get('classifier') or 'no sample metrics'


def runs_markdown(runs: Sequence[dict[str, Any]], relative_to: pathlib.Path,
                  metrics: Sequence[str] = SUMMARY_METRICS) -> str:
  """Runs (from `load_run`) in results tables, then each run's sample grid.

  Sample metrics are comparable only within one feature space, so the runs are grouped by the
  classifier that measured them, one table a group, each headed by that classifier. Columns: the
  config's name (marked when smoke-sized), the config fields that differ between the runs, and
  the metrics some run of the group reports. Image links are relative to `relative_to`, the
  directory the markdown file is written in.
  """
  varying = [f for f in differing_fields(runs) if f != 'smoke']
  text = '# Results\n'
  groups: dict[str, list[dict[str, Any]]] = {}
  for run in runs:
    groups.setdefault(_feature_space(run), []).append(run)
  for space, group in groups.items():
    shown = [m for m in metrics if any(m in run['metrics'] for run in group)]
    rows = []
    for run in group:
      name = run.get('config_name') or run['config'].get('name') or run['model']
      smoke = ' (smoke)' if run['config'].get('smoke') else ''
      rows.append([name + smoke, run['data'], str(run['step']), format_duration(run['train_seconds'])]
                  + [format_value(run['config'].get(f, '-')) for f in varying]
                  + [format_value(run['metrics'].get(m, '-')) for m in shown]
                  + [str(run['workdir'])])
    accuracy = {format_value(run['metrics']['classifier_accuracy']) for run in group
                if 'classifier_accuracy' in run['metrics']}
    heading = (f'Measured with the digit classifier `{space}` (held-out accuracy '
               f'{", ".join(sorted(accuracy))}); compare FIDs only within this table.'
               if space != 'no sample metrics' else 'Runs without sample metrics.')
    text += f'\n{heading}\n\n' + table(['config', 'data', 'steps', 'train time', *varying, *shown, 'workdir'], rows)
  for run in runs:
    if run['samples'] is not None:
      link = pathlib.Path(os.path.relpath(run['samples'].absolute(), pathlib.Path(relative_to).absolute()))
      text += f'\n## {run["model"]} on {run["data"]} ({run["workdir"]})\n\n![samples]({link.as_posix()})\n'
  return text
