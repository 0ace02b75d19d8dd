"""Collects the evaluations of several runs into markdown results tables.

  python experiments/collect_results.py 'runs/*' --output=experiments/results/results.md

Each workdir must hold an `eval.json` (written by `--mode=train` or `--mode=evaluate`). Runs are
grouped by the digit classifier that measured their samples (FIDs of different classifiers are not
comparable), one table a group: config name (smoke runs marked), data, steps, training wall time,
the config fields that differ between the runs, and the sample-quality and likelihood metrics;
below, each run's sample grid is linked (paths relative to the output file). Workdirs may also be
given as glob patterns (`'runs/*'`); those without an eval.json are then skipped.
"""

from __future__ import annotations

import glob
import pathlib
import sys

from absl import app, flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from gen_jax.evaluation import reports  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('output', 'experiments/results/results.md', 'Markdown file to write.')


def workdirs_of(patterns: list[str]) -> list[pathlib.Path]:
  """Exact paths as given; glob patterns expanded to the matching workdirs that were evaluated."""
  found = []
  for pattern in patterns:
    if any(char in pattern for char in '*?['):
      found += [pathlib.Path(p) for p in sorted(glob.glob(pattern))
                if (pathlib.Path(p) / reports.EVAL_JSON).exists()]
    else:
      found.append(pathlib.Path(pattern))
  return found


def main(argv):
  patterns = argv[1:]
  if not patterns:
    raise app.UsageError('give the workdirs of the runs to collect')
  try:
    runs = [reports.load_run(workdir) for workdir in workdirs_of(patterns)]
  except FileNotFoundError as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)
  if not runs:
    print(f'error: no evaluated workdir matches {patterns}', file=sys.stderr)
    sys.exit(1)
  output = pathlib.Path(FLAGS.output)
  output.parent.mkdir(parents=True, exist_ok=True)
  output.write_text(reports.runs_markdown(runs, output.parent))
  print(f'{len(runs)} runs written to {output}')


if __name__ == '__main__':
  app.run(main)
