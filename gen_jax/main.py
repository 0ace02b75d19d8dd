"""Command-line entry point: `python -m gen_jax.main --config=configs/vae.py --workdir=runs/vae`.

Modes: `train` (resumes from the workdir's latest checkpoint, then evaluates), `evaluate` and
`sample` (of the latest checkpoint, or of the best one with `--checkpoint=best`), and
`classifier` (trains, when missing, the digit classifier the config's sample metrics use, and
reports it). Config fields are overridden with `--config.train.num_steps=100`-style flags; a
config file takes `:smoke` for a run of a few seconds (`--config=configs/vae.py:smoke`).

Every mistake on the command line (a missing config file, a bad config argument, a misspelt
field, a value of the wrong type, an unknown flag) ends in one line on stderr naming the flag, the
value and what is allowed, and exit status 1, before anything is computed.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging as std_logging
import pathlib
import sys
from typing import NoReturn

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from gen_jax import data, stylize, train, validation
from gen_jax.cpu_speed import host_memory
from gen_jax.runtime import checkpointing, config_checks, distributed, workdir_guard

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file (configs/*.py).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory of the run: checkpoints, metrics, pictures.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'sample', 'classifier'], 'What to do.')
flags.DEFINE_string('output', 'samples.npz', 'Sample file (.npz) inside the workdir (mode=sample); '
                    'its PNG grid is written beside it.')
flags.DEFINE_enum('checkpoint', 'latest', train.CHECKPOINT_CHOICES,
                  'Checkpoint that evaluate and sample use: the latest, or the best kept by '
                  'config.train.best_metric (workdir/best).')
flags.DEFINE_bool('multihost', False,
                  'Join a multi-host run (jax.distributed): settings auto-detected on SLURM, Open MPI '
                  f'and TPU pods, else from {distributed.COORDINATOR_ENV}, '
                  f'{distributed.NUM_PROCESSES_ENV} and {distributed.PROCESS_ID_ENV} (setting them '
                  'implies this flag). Every process runs the same command.')
flags.mark_flags_as_required(['config'])

COMPILATION_CACHE = 'compilation_cache'
# The errors a run reports in one line (its own checks, its data, its workdir).
RUN_ERRORS = (config_checks.ConfigError, data.DataError, workdir_guard.WorkdirMismatch,
              workdir_guard.WorkdirBusy, checkpointing.CheckpointError, train.TrainingDiverged,
              FileNotFoundError, FileExistsError)


def refuse(message: str) -> NoReturn:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(1)


def _flag_values(argv: list[str], name: str) -> list[str]:
  """The values given to --name, in either of absl's forms (`--name=v`, `--name v`)."""
  values = []
  for index, arg in enumerate(argv):
    if arg.startswith(f'--{name}='):
      values.append(arg.split('=', 1)[1])
    elif arg == f'--{name}' and index + 1 < len(argv):
      values.append(argv[index + 1])
  return values


def _load_config(spec: str) -> ml_collections.ConfigDict:
  """The config a `--config=PATH[:ARGUMENT]` value names, or a one-line refusal."""
  path, _, argument = spec.partition(':')
  if not pathlib.Path(path).is_file():
    available = sorted(str(p) for p in pathlib.Path(path).parent.glob('*.py')
                       if p.stem not in ('__init__', 'default'))
    refuse(f'--config={spec}: no such config file' +
           (f'; the configs beside it are {available}' if available else ''))
  module_spec = importlib.util.spec_from_file_location('command_line_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    return module.get_config(argument or None)
  except (ValueError, TypeError, AttributeError, ImportError, SyntaxError) as error:
    refuse(f'--config={spec}: {error}')


def _check_field(config: ml_collections.ConfigDict, override: str) -> None:
  """Refuses `--config.a.b=v` when config has no field a.b, naming the closest ones."""
  field = override[len('--config.'):].split('=', 1)[0]
  node, path = config, 'config'
  for part in field.split('.'):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      names = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      close = difflib.get_close_matches(part, names, n=3)
      hint = (f"did you mean {', '.join(f'{path}.{c}' for c in close)}?" if close
              else f'its fields are {names}' if names else f'{path} is a value, not a group')
      refuse(f'{override}: {path} has no field {part!r}; {hint}')
    node, path = node[part], f'{path}.{part}'


def parse_command_line(argv: list[str]) -> list[str]:
  """absl's flag parsing, with every mistake turned into one line (see the module docstring)."""
  specs = _flag_values(argv, 'config')
  if specs:
    config = _load_config(specs[-1])
    for arg in argv[1:]:
      if arg.startswith('--config.'):
        _check_field(config, arg)
  try:
    return FLAGS(argv)
  except flags.Error as error:
    refuse(str(error).strip().splitlines()[0])


def default_workdir(config) -> str:
  if config.model.name == stylize.MODEL_NAME:
    return stylize.default_workdir(config)
  return f'runs/{config.model.name}_{config.data.name}'


def main(argv):
  if len(argv) > 1:
    refuse(f'unexpected arguments {argv[1:]}: every setting is a --flag '
           f'(python -m gen_jax.main --helpshort)')
  if FLAGS.mode == 'train' and FLAGS.checkpoint != 'latest':
    refuse(f'--checkpoint={FLAGS.checkpoint} applies to --mode=evaluate and --mode=sample; '
           f'training resumes from the latest checkpoint')
  style_transfer = FLAGS.config.get('model', {}).get('name') == stylize.MODEL_NAME
  if style_transfer and FLAGS.mode != 'train':
    refuse(f'--mode={FLAGS.mode}: style transfer has only --mode=train (it optimises one image; '
           f'its result and pictures are in the workdir)')
  host_memory.keep_step_memory_mapped()
  if FLAGS.multihost or distributed.requested():
    if style_transfer:
      refuse('--multihost: style transfer optimises one image on one process; run it without')
    try:
      distributed.initialize()   # before any JAX computation
    except config_checks.ConfigError as error:
      refuse(str(error))
  validate = stylize.validate if style_transfer else validation.validate
  try:
    validate(FLAGS.config)   # a bad value is one line, before the runtime logs anything
  except config_checks.ConfigError as error:
    refuse(str(error))
  logging.set_verbosity(logging.INFO)
  # Orbax reports every step of every save at INFO; keep its warnings only.
  logging.get_absl_logger().addFilter(
      lambda record: '/orbax/' not in record.pathname or record.levelno >= std_logging.WARNING)
  config = FLAGS.config
  workdir = FLAGS.workdir or default_workdir(config)
  # Compiled steps are kept beside the workdirs, so that the next run of the same model (a resumed
  # or repeated run, a sweep's next member) skips most of its compilation; a cache the user named
  # (JAX_COMPILATION_CACHE_DIR) is kept instead. Style transfer's programs hold VGG's weights as
  # constants: hundreds of MB a cache entry, slower to read back than to compile, so none is kept.
  if style_transfer:
    jax.config.update('jax_enable_compilation_cache', False)
    logging.info('Style transfer compiles VGG\'s weights into its programs: the compilation cache '
                 'is off for this run (an entry would hold the weights again)')
  elif not jax.config.jax_compilation_cache_dir:
    jax.config.update('jax_compilation_cache_dir',
                      str(pathlib.Path(workdir).absolute().parent / COMPILATION_CACHE))
  try:
    if style_transfer:
      report = stylize.stylize(config, workdir)
    elif FLAGS.mode == 'train':
      report = train.train_and_evaluate(config, workdir)
    elif FLAGS.mode == 'evaluate':
      report = train.evaluate(config, workdir, FLAGS.checkpoint)
    elif FLAGS.mode == 'sample':
      written = train.sample(config, workdir, FLAGS.output, FLAGS.checkpoint)
      print(f'samples written to {written[0]}, their grid to {written[1]}')
      return
    else:
      validation.validate(config)
      classifier = train.digit_classifier(config)
      print(f'digit classifier for {config.data.name} in {classifier.directory}: held-out '
            f'accuracy {classifier.holdout_accuracy:.4f}')
      return
  except RUN_ERRORS as error:
    refuse(str(error))
  if not distributed.is_writer():
    return
  print(f'{report["model"]} on {report["data"]}, step {report["step"]} (workdir {workdir}):')
  for name, value in report['metrics'].items():
    print(f'  {name:>24s}: {value:.4f}' if isinstance(value, float) else f'  {name:>24s}: {value}')


if __name__ == '__main__':
  app.run(main, flags_parser=parse_command_line)
