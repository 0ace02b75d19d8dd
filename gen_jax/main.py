"""Command-line entry point: `python -m gen_jax.main --config=configs/vae.py --workdir=runs/vae`.

Modes: `train` (resumes from the workdir's latest checkpoint, then evaluates), `evaluate` and
`sample` (of the latest checkpoint, or of the best one with `--checkpoint=best`). Config fields
are overridden with `--config.train.num_steps=100`-style flags; a config file takes `:smoke` for a
run of a few seconds (`--config=configs/vae.py:smoke`).
"""

from __future__ import annotations

import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from gen_jax import checkpointing, config_checks, data, host_memory, train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory of the run: checkpoints, metrics, pictures.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'sample'], 'What to do.')
flags.DEFINE_string('output', 'samples.npz', 'Sample file name inside the workdir (mode=sample).')
flags.DEFINE_enum('checkpoint', 'latest', train.CHECKPOINT_CHOICES,
                  'Checkpoint that evaluate and sample use: the latest, or the best kept by '
                  'config.train.best_metric (workdir/best).')
flags.mark_flags_as_required(['config'])


def default_workdir(config) -> str:
  return f'runs/{config.model.name}_{config.data.name}'


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.mode == 'train' and FLAGS.checkpoint != 'latest':
    raise app.UsageError('--checkpoint applies to --mode=evaluate and --mode=sample; training '
                         'resumes from the latest checkpoint')
  host_memory.retain_freed_memory()
  logging.set_verbosity(logging.INFO)
  # Orbax reports every step of every save at INFO; keep its warnings only.
  logging.get_absl_logger().addFilter(
      lambda record: '/orbax/' not in record.pathname or record.levelno >= std_logging.WARNING)
  config = FLAGS.config
  workdir = FLAGS.workdir or default_workdir(config)
  try:
    if FLAGS.mode == 'train':
      report = train.train_and_evaluate(config, workdir)
    elif FLAGS.mode == 'evaluate':
      report = train.evaluate(config, workdir, FLAGS.checkpoint)
    else:
      print(f'samples written to {train.sample(config, workdir, FLAGS.output, FLAGS.checkpoint)}')
      return
  except (config_checks.ConfigError, data.DataError, checkpointing.WorkdirMismatch,
          train.TrainingDiverged, FileNotFoundError, FileExistsError) as error:
    print(f'error: {error}', file=sys.stderr)
    sys.exit(1)
  print(f'{report["model"]} on {report["data"]}, step {report["step"]} (workdir {workdir}):')
  for name, value in report['metrics'].items():
    print(f'  {name:>24s}: {value:.4f}' if isinstance(value, float) else f'  {name:>24s}: {value}')


if __name__ == '__main__':
  app.run(main)
