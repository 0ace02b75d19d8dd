"""Orbax checkpoints in a run's workdir: the latest ones, and the best by a metric.

Every save is sealed with a record of the files it wrote (size and SHA-256), checked before a
restore: a checkpoint damaged on disk is named, set aside and passed over for the newest intact
one, never restored silently. A save that fails (a full disk) leaves no half-written folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import pathlib
import shutil
import time
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from gen_jax.runtime import config_checks, distributed

CHECKPOINT_DIR = 'checkpoints'
# Written into every step folder after its save: the size and SHA-256 of each file the save wrote.
INTEGRITY_FILE = 'gen_jax_integrity.json'
# Where damaged checkpoints are set aside (never deleted), inside the workdir.
DAMAGED_DIR = 'damaged_checkpoints'


class CheckpointError(RuntimeError):
  """A checkpoint could not be written (a full disk, say); the earlier ones are untouched."""


def _file_digests(step_dir: pathlib.Path) -> dict[str, list]:
  """[size, sha256] of every file under a step folder (but the integrity record itself)."""
  digests = {}
  for path in sorted(p for p in step_dir.rglob('*') if p.is_file() and p.name != INTEGRITY_FILE):
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
      for block in iter(lambda: stream.read(1 << 20), b''):
        digest.update(block)
    digests[path.relative_to(step_dir).as_posix()] = [path.stat().st_size, digest.hexdigest()]
  return digests


class _CheckpointDir:
  """A folder of orbax checkpoints: what the latest and the best checkpoints share.

  Every save is sealed with a record of what it wrote; restoring checks the record first, so a
  checkpoint damaged on disk (a file deleted, truncated or altered) is never restored silently.
  """

  def __init__(self, directory: pathlib.Path, options: ocp.CheckpointManagerOptions):
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, like: Any, step: int | None = None) -> Any:
    """Restores onto the shapes, dtypes and shardings of `like`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def _save(self, step: int, state: Any, **kwargs) -> None:
    """Saves and seals step `step`; on a failed write (a full disk) leaves the earlier
    checkpoints as they were, removes what the save left half-written and says so in one line."""
    try:
      self._manager.save(step, args=ocp.args.StandardSave(state), **kwargs)
      self._manager.wait_until_finished()
    except OSError as error:
      self._discard_unfinished()
      kept = self._manager.latest_step()
      newest = f'the newest intact one is step {kept}' if kept is not None else 'no earlier one exists'
      full = 'the disk is full' if error.errno == errno.ENOSPC else str(error)
      raise CheckpointError(f'could not save the checkpoint of step {step} in {self.directory} '
                            f'({full}); {newest}') from None
    distributed.writer_then_all(f'seal {self.directory} {step}', lambda: self._seal(step))

  def _seal(self, step: int) -> None:
    step_dir = self.directory / str(step)
    record = step_dir / f'{INTEGRITY_FILE}.tmp'
    record.write_text(json.dumps(_file_digests(step_dir)))
    record.replace(step_dir / INTEGRITY_FILE)

  def _discard_unfinished(self) -> None:
    for partial in self.directory.glob('*.orbax-checkpoint-tmp*'):
      shutil.rmtree(partial, ignore_errors=True)
    self._manager.reload()

  def damage(self, step: int) -> str | None:
    """Why step `step` cannot be trusted, or None when it matches the record of its save.

    A checkpoint saved before records were kept (no record) is trusted to the restore alone.
    """
    step_dir = self.directory / str(step)
    record = step_dir / INTEGRITY_FILE
    if not record.exists():
      return None if any(step_dir.iterdir()) else 'its folder is empty'
    try:
      expected = json.loads(record.read_text())
    except ValueError:
      return f'its record {INTEGRITY_FILE} is unreadable'
    found = _file_digests(step_dir)
    missing = sorted(expected.keys() - found.keys())
    changed = sorted(name for name in expected.keys() & found.keys() if expected[name] != found[name])
    if missing:
      return f'{len(missing)} file(s) missing, e.g. {missing[0]}'
    if changed:
      return f'{len(changed)} file(s) differ from what was saved, e.g. {changed[0]}'
    return None

  def restore_newest_intact(self, like: Any, set_aside: bool) -> Any | None:
    """The newest checkpoint that is intact and restores, or None when there is none.

    Each damaged one on the way is named in one line and, when `set_aside` (a training run, which
    will save after it), moved to the workdir's damaged_checkpoints/ (never deleted).
    """
    for step in sorted(self._manager.all_steps(), reverse=True):
      reason = self.damage(step)
      if reason is None:
        try:
          return self.restore(like, step)
        except Exception as error:  # orbax raises many kinds on a damaged step; all mean the same
          reason = f'it cannot be restored ({type(error).__name__})'
      if not set_aside:
        logging.warning('Checkpoint of step %d in %s is damaged (%s); skipped', step, self.directory,
                        reason)
        continue
      aside = self.directory.parent / DAMAGED_DIR / f'{self.directory.name}_{step}_{int(time.time())}'
      distributed.writer_then_all(f'set aside {self.directory} {step}',
                                  lambda: self._set_aside(step, aside))
      self._manager.reload()
      logging.warning('Checkpoint of step %d in %s is damaged (%s); set aside as %s', step,
                      self.directory, reason, aside)
    return None

  def _set_aside(self, step: int, aside: pathlib.Path) -> None:
    aside.parent.mkdir(exist_ok=True)
    (self.directory / str(step)).rename(aside)

  def close(self) -> None:
    self._manager.close()


class Checkpointer(_CheckpointDir):
  """Saves every N steps and at the end, keeping the last K; restores the latest."""

  def __init__(self, workdir: pathlib.Path, keep: int, create: bool = True):
    super().__init__(pathlib.Path(workdir) / CHECKPOINT_DIR,
                     ocp.CheckpointManagerOptions(max_to_keep=keep, create=create))

  def save(self, step: int, state: Any) -> None:
    if step in self._manager.all_steps():
      return
    self._save(step, state)


BEST_DIR = 'best'
BEST_MODES = ('min', 'max')


class BestCheckpointer(_CheckpointDir):
  """Keeps, in workdir/best, the one checkpoint whose evaluation scored best by a chosen metric.

  Beside the latest checkpoints: a GAN's last step is often far from its best. The metric value
  is saved with the checkpoint, so a resumed run keeps comparing against the same best.
  """

  def __init__(self, workdir: pathlib.Path, metric: str, mode: str, create: bool = True):
    self.metric = metric
    self.mode = mode
    super().__init__(pathlib.Path(workdir) / BEST_DIR, ocp.CheckpointManagerOptions(
        max_to_keep=1, best_fn=lambda metrics: metrics[metric], best_mode=mode,
        keep_checkpoints_without_metrics=False, create=create))

  def best_value(self) -> float | None:
    step = self.latest_step()
    return None if step is None else float(self._manager.metrics(step)[self.metric])

  def offer(self, step: int, state: Any, metrics: dict[str, Any]) -> bool:
    """Saves `state` when metrics[self.metric] beats the kept checkpoint's; returns whether it did."""
    if self.metric not in metrics:
      scalars = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)))
      raise config_checks.ConfigError(
          f'config.train.best_metric={self.metric!r} is not among the evaluation metrics of this '
          f'model; choose one of {scalars} (or \'\' to keep no best checkpoint)')
    value = float(metrics[self.metric])
    best = self.best_value()
    better = best is None or (value < best if self.mode == 'min' else value > best)
    if not math.isfinite(value) or not better or step in self._manager.all_steps():
      return False
    self._save(step, state, metrics={self.metric: value})
    return True


