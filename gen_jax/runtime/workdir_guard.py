"""A run's workdir: the guard that keeps one workdir to one run, and the locks that keep one
writer to one workdir.

The first run in a workdir writes `config.json`. A later run in the same workdir resumes only if
its config describes the same run: it may change how long the run is or how often it logs, never
the model, the data or the optimisation. Otherwise it is refused, and nothing in the workdir is
touched. While a run trains, it holds the workdir's lock: a second trainer is refused, naming the
process that holds it. The operating system releases the lock of a process that dies, so a killed
run's lock never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
from typing import Any, Iterator

import ml_collections

from gen_jax.runtime.checkpointing import CHECKPOINT_DIR

RUN_CONFIG = 'config.json'
# Fields a resumed run may change: they set the run's length, its reporting, how it is sampled
# and the instrument it is judged by, not what it trains. (A learning-rate schedule spread over
# the run's length, optim.linear_decay_fraction, is re-spread over a changed train.num_steps.)
RESUMABLE_CHANGES = frozenset({
    'train.num_steps', 'train.log_every', 'train.checkpoint_every', 'train.keep_checkpoints',
    'train.eval_every', 'train.num_devices', 'train.steps_per_dispatch', 'train.dispatch_form',
    'eval.batch_size', 'eval.classifier_dir',
    'eval.max_examples', 'sample.num_samples', 'sample.label', 'sample.dropout', 'sample.input_dir',
    'sample.direction',
})


_OFF_VALUES = (0, '', False, None, [])


class WorkdirMismatch(RuntimeError):
  """The workdir holds a run with a different config."""


def _flatten(tree: dict, prefix: str = '') -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      flat.update(_flatten(value, name + '.'))
    else:
      flat[name] = list(value) if isinstance(value, tuple) else value
  return flat


def _same_setting(key: str, saved: Any, current: Any) -> bool:
  """Equal values; for a path field, two spellings of one existing location count as equal too."""
  if saved == current:
    return True
  if key.endswith(('.path', '_dir')) and isinstance(saved, str) and isinstance(current, str) and saved and current:
    resolve = lambda text: os.path.realpath(os.path.expanduser(text))
    return os.path.exists(resolve(current)) and resolve(saved) == resolve(current)
  return False


def run_identity(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config fields that decide what a run computes."""
  flat = _flatten(json.loads(config.to_json()))
  return {k: v for k, v in flat.items() if k not in RESUMABLE_CHANGES}


def claim_workdir(workdir: pathlib.Path, config: ml_collections.ConfigDict, create: bool) -> None:
  """Refuses a workdir that holds another run; records the config in a new one when `create`.

  Without `create` (evaluating or sampling) a workdir must already hold this run.
  """
  path = workdir / RUN_CONFIG
  if not path.exists() and not create:
    raise FileNotFoundError(f'{workdir} holds no run ({RUN_CONFIG} is missing); train first (--mode=train)')
  if path.exists():
    try:
      saved = _flatten(json.loads(path.read_text()))
    except (ValueError, AttributeError) as error:
      raise WorkdirMismatch(f'{path} is damaged ({type(error).__name__}: {error}); nothing in '
                            f'{workdir} was touched: restore the file or use another --workdir') from None
    saved = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
    current = run_identity(config)
    # A field the project added after the run was saved is absent from its config.json: the run
    # was made without it, which matches only the field's off value.
    differences = sorted(k for k in saved.keys() | current.keys()
                         if not (k not in saved and current[k] in _OFF_VALUES)
                         and not _same_setting(k, saved.get(k), current.get(k)))
    if differences:
      shown = '; '.join(f'{k}: saved {saved.get(k)!r}, now {current.get(k)!r}'
                        for k in differences[:8])
      raise WorkdirMismatch(
          f'workdir {workdir} holds a run of model {saved.get("model.name")!r} with a different '
          f'config ({shown}). Refusing to resume or overwrite it: use another --workdir.')
    return
  if (workdir / CHECKPOINT_DIR).exists():
    raise WorkdirMismatch(f'workdir {workdir} holds checkpoints but no {RUN_CONFIG}; refusing to '
                          f'overwrite them: use another --workdir.')
  workdir.mkdir(parents=True, exist_ok=True)
  path.write_text(config.to_json(indent=2))


@contextlib.contextmanager
def exclusive(directory: pathlib.Path) -> Iterator[None]:
  """Holds an exclusive lock named after `directory` (a `.lock` file beside it) while the block
  runs, waiting for another process that holds it: one process builds what several need."""
  directory = pathlib.Path(directory)
  directory.parent.mkdir(parents=True, exist_ok=True)
  with open(directory.with_name(directory.name + '.lock'), 'a') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


TRAINER_LOCK = 'train.lock'


class WorkdirBusy(RuntimeError):
  """Another process is training in the workdir."""


class TrainerLock:
  """The lock a training run holds on its workdir, from before its first checkpoint to its end."""

  def __init__(self, workdir: pathlib.Path):
    path = pathlib.Path(workdir) / TRAINER_LOCK
    self._file = open(path, 'a+')
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      self._file.seek(0)
      holder = self._file.read().strip() or 'unknown'
      self._file.close()
      raise WorkdirBusy(f'workdir {workdir} is being trained by process {holder} (it holds '
                        f'{path}); refusing to start a second trainer there') from None
    self._file.seek(0)
    self._file.truncate()
    self._file.write(str(os.getpid()))
    self._file.flush()

  def release(self) -> None:
    if not self._file.closed:
      fcntl.flock(self._file, fcntl.LOCK_UN)
      self._file.close()
