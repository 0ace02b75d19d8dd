"""Orbax checkpoints in a run's workdir (the latest ones, and the best by a metric), and the guard
that keeps one workdir to one run.

The first run in a workdir writes `config.json`. A later run in the same workdir resumes only if
its config describes the same run: it may change how long the run is or how often it logs, never
the model, the data or the optimisation. Otherwise it is refused, and nothing in the workdir is
touched.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

from gen_jax import config_checks

RUN_CONFIG = 'config.json'
CHECKPOINT_DIR = 'checkpoints'
# Fields a resumed run may change: they set the run's length and its reporting, not its result.
RESUMABLE_CHANGES = frozenset({
    'train.num_steps', 'train.log_every', 'train.checkpoint_every', 'train.keep_checkpoints',
    'train.eval_every', 'train.num_devices', 'train.microbatches', 'eval.batch_size',
    'eval.max_examples', 'sample.num_samples', 'sample.label',
})


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
    saved = _flatten(json.loads(path.read_text()))
    saved = {k: v for k, v in saved.items() if k not in RESUMABLE_CHANGES}
    current = run_identity(config)
    differences = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
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


class _CheckpointDir:
  """A folder of orbax checkpoints: what the latest and the best checkpoints share."""

  def __init__(self, directory: pathlib.Path, options: ocp.CheckpointManagerOptions):
    self._manager = ocp.CheckpointManager(pathlib.Path(directory).absolute(), options=options)

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, like: Any, step: int | None = None) -> Any:
    """Restores onto the shapes, dtypes and shardings of `like`."""
    step = self.latest_step() if step is None else step
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

  def close(self) -> None:
    self._manager.close()


class Checkpointer(_CheckpointDir):
  """Saves every N steps and at the end, keeping the last K; restores the latest."""

  def __init__(self, workdir: pathlib.Path, keep: int):
    super().__init__(pathlib.Path(workdir) / CHECKPOINT_DIR,
                     ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def save(self, step: int, state: Any) -> None:
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(state))
    self._manager.wait_until_finished()


BEST_DIR = 'best'
BEST_MODES = ('min', 'max')


class BestCheckpointer(_CheckpointDir):
  """Keeps, in workdir/best, the one checkpoint whose evaluation scored best by a chosen metric.

  Beside the latest checkpoints: a GAN's last step is often far from its best. The metric value
  is saved with the checkpoint, so a resumed run keeps comparing against the same best.
  """

  def __init__(self, workdir: pathlib.Path, metric: str, mode: str):
    self.metric = metric
    self.mode = mode
    super().__init__(pathlib.Path(workdir) / BEST_DIR, ocp.CheckpointManagerOptions(
        max_to_keep=1, best_fn=lambda metrics: metrics[metric], best_mode=mode,
        keep_checkpoints_without_metrics=False, create=True))

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
    self._manager.save(step, args=ocp.args.StandardSave(state), metrics={self.metric: value})
    self._manager.wait_until_finished()
    return True
