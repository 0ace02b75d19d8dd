"""The training loop every model shares, and the evaluate and sample modes.

A run lives in its workdir: `config.json`, orbax checkpoints (the latest ones in `checkpoints/`,
the best by `train.best_metric` in `best/`), `metrics.jsonl`, TensorBoard event files, and one
`eval/step_N` folder a evaluation with `eval.json`, `eval.md` and the family's pictures.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from gen_jax import checkpointing, classifier, config_checks, data, figures, parallel, registry, reports
from gen_jax.evaluation import Evaluator
from gen_jax.families.base import DataSpec, ModelFamily
from gen_jax.metric_writers import MetricWriter

EVAL_JSON = reports.EVAL_JSON
# Which checkpoint evaluate and sample use: the latest one, or the best by train.best_metric.
CHECKPOINT_CHOICES = ('latest', 'best')


class TrainingDiverged(RuntimeError):
  """A loss or a parameter became NaN or infinite."""


def validate(config: ml_collections.ConfigDict) -> type[ModelFamily]:
  """Checks the whole config before any data is read; returns the model family it names."""
  family = registry.get(config_checks.get_field(config, 'model.name'))
  config_checks.require_int(config, 'seed', minimum=0)
  data.validate(config)
  config_checks.require_int(config, 'train.batch_size', minimum=1)
  config_checks.require_int(config, 'train.num_steps', minimum=1)
  config_checks.require_int(config, 'train.log_every', minimum=1)
  config_checks.require_int(config, 'train.checkpoint_every', minimum=1)
  config_checks.require_int(config, 'train.keep_checkpoints', minimum=1)
  config_checks.require_int(config, 'train.eval_every', minimum=0)
  config_checks.require_int(config, 'train.num_devices', minimum=0)
  config_checks.require_int(config, 'train.microbatches', minimum=1)
  if config.train.microbatches > 1 and not family.SPLITS_BATCHES:
    raise config_checks.ConfigError(
        f'config.train.microbatches={config.train.microbatches}, but model {config.model.name!r} '
        f'trains on whole batches only: use 1')
  config_checks.require_int(config, 'eval.batch_size', minimum=1)
  config_checks.require_int(config, 'eval.max_examples', minimum=0)
  config_checks.require_int(config, 'sample.num_samples', minimum=1)
  if not isinstance(config_checks.get_field(config, 'train.best_metric'), str):
    raise config_checks.ConfigError(f'config.train.best_metric={config.train.best_metric!r} must be '
                                    f"an evaluation metric's name, or '' to keep no best checkpoint")
  config_checks.require_choice(config, 'train.best_mode', checkpointing.BEST_MODES)
  classifier.validate(config)
  family.validate(config)
  return family


class Run:
  """Everything a mode needs: the family, the data, the mesh, the checkpoints and the state."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
               training: bool):
    family_cls = validate(config)
    self.config = config
    self.workdir = pathlib.Path(workdir)
    self.mesh = parallel.make_mesh(config.train.num_devices)
    parallel.check_batch_size(config.train.batch_size, self.mesh, 'train.batch_size',
                              config.train.microbatches)
    self.evaluator = Evaluator(self.mesh, config.eval.batch_size)
    if not training:
      checkpointing.claim_workdir(self.workdir, config, create=False)
    self.dataset = data.load(config.data)
    self.batches = data.BatchSchedule(self.dataset.train, config.train.batch_size, config.seed)
    self.family = family_cls(config, DataSpec.of(self.dataset, self.batches))
    # Only now, with the data read and the model built, does a new workdir get its config.json.
    checkpointing.claim_workdir(self.workdir, config, create=training)
    self.checkpoints = checkpointing.Checkpointer(self.workdir, config.train.keep_checkpoints)
    self.best = (checkpointing.BestCheckpointer(self.workdir, config.train.best_metric,
                                                config.train.best_mode)
                 if config.train.best_metric else None)
    root = jax.random.PRNGKey(config.seed)
    self.init_rng, self.eval_rng, self.sample_rng = jax.random.split(root, 3)
    self.state = parallel.replicate(self.family.init_state(self.init_rng), self.mesh)
    if self.checkpoints.latest_step() is not None:
      self.state = self.checkpoints.restore(self.state)
      logging.info('Resumed from step %d in %s', self.step, self.workdir)

  @property
  def step(self) -> int:
    return int(jax.device_get(self.state.step))

  def require_checkpoint(self, which: str = 'latest') -> None:
    """Makes the state that of the latest checkpoint (already restored) or of the best one."""
    if which not in CHECKPOINT_CHOICES:
      raise ValueError(f'checkpoint must be one of {CHECKPOINT_CHOICES}, got {which!r}')
    if self.checkpoints.latest_step() is None:
      raise FileNotFoundError(f'no checkpoint in {self.workdir / checkpointing.CHECKPOINT_DIR}; '
                              f'train first (--mode=train)')
    if which == 'best':
      if self.best is None or self.best.latest_step() is None:
        raise FileNotFoundError(
            f'no best checkpoint in {self.workdir / checkpointing.BEST_DIR} (one is kept when '
            f'config.train.best_metric is set and an evaluation ran); use the latest instead')
      self.state = self.best.restore(self.state)

  def evaluate(self) -> dict[str, Any]:
    """Held-out metrics and pictures into eval/step_N; also written to the workdir's eval.json."""
    out_dir = figures.unique_dir(self.workdir / 'eval' / f'step_{self.step}')
    holdout = self.dataset.holdout.take(self.config.eval.max_examples)
    dataset = dataclasses.replace(self.dataset, holdout=holdout)
    metrics = self.family.evaluate(self.state, dataset, self.evaluator, out_dir, self.eval_rng)
    report = {'model': self.config.model.name, 'data': self.config.data.name, 'step': self.step,
              'num_holdout': len(holdout), 'metrics': metrics}
    for directory in (out_dir, self.workdir):
      (directory / EVAL_JSON).write_text(json.dumps(report, indent=2))
      (directory / reports.EVAL_MARKDOWN).write_text(reports.evaluation_markdown(report))
    logging.info('Evaluation at step %d: %s', self.step, metrics)
    return report

  def close(self) -> None:
    self.checkpoints.close()
    if self.best is not None:
      self.best.close()


def _check_finite(step: int, metrics: dict[str, float], run: Run) -> None:
  bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
  if bad:
    raise TrainingDiverged(
        f'training diverged at step {step}: {bad}. The last good checkpoint (step '
        f'{run.checkpoints.latest_step()}) is kept in {run.workdir / checkpointing.CHECKPOINT_DIR}.')


def _save(run: Run) -> None:
  """Saves the state, unless it holds a NaN/inf (then the last good checkpoint stays the latest)."""
  if not bool(parallel.all_finite(run.state)):
    raise TrainingDiverged(
        f'parameters became NaN or infinite by step {run.step}; not saving. The last good '
        f'checkpoint (step {run.checkpoints.latest_step()}) is kept in {run.workdir}.')
  run.checkpoints.save(run.step, run.state)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Trains to config.train.num_steps (resuming from the workdir's latest checkpoint), then evaluates."""
  run = Run(config, workdir, training=True)
  train_cfg = config.train
  step_fn = parallel.compile_train_step(run.family.train_step, run.mesh)
  writer = MetricWriter(run.workdir)
  start = run.step
  if start >= train_cfg.num_steps:
    logging.info('Workdir %s is already at step %d >= num_steps=%d', workdir, start, train_cfg.num_steps)
  sums: dict[str, float] = {}
  window_start, window_steps = time.perf_counter(), 0
  progress = tqdm(range(start, train_cfg.num_steps), initial=start, total=train_cfg.num_steps,
                  desc=f'{config.model.name} on {config.data.name}', unit='step', dynamic_ncols=True,
                  # In a log file (no terminal) every refresh is a new line: refresh rarely there.
                  mininterval=0.5 if sys.stderr.isatty() else 30.0)
  try:
    for step in progress:
      batch = parallel.shard_batch(run.batches(step), run.mesh)
      run.state, metrics = step_fn(run.state, batch)
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      _check_finite(step, metrics, run)
      for name, value in metrics.items():
        sums[name] = sums.get(name, 0.0) + value
      window_steps += 1
      done = step + 1
      if done % train_cfg.log_every == 0 or done == train_cfg.num_steps:
        means = {k: v / window_steps for k, v in sums.items()}
        means['window_seconds'] = time.perf_counter() - window_start
        means['steps_per_second'] = window_steps / means['window_seconds']
        means['epoch'] = step / run.batches.steps_per_epoch
        writer.write(done, 'train', means)
        progress.set_postfix({k: f'{v:.4g}' for k, v in list(means.items())[:3]})
        sums, window_start, window_steps = {}, time.perf_counter(), 0
      if done % train_cfg.checkpoint_every == 0:
        _save(run)
      if train_cfg.eval_every and done % train_cfg.eval_every == 0 and done != train_cfg.num_steps:
        _evaluate_and_keep_best(run, writer)
      if done % run.batches.steps_per_epoch == 0:
        epoch_metrics = run.family.on_epoch_end(run.state, run.batches.epoch_of(step), run.workdir)
        if epoch_metrics:
          writer.write(done, 'epoch', epoch_metrics)
    _save(run)
    run.family.on_train_end(run.workdir)
    return _evaluate_and_keep_best(run, writer)
  finally:
    progress.close()
    writer.close()
    run.close()


def _evaluate_and_keep_best(run: Run, writer: MetricWriter) -> dict[str, Any]:
  """Evaluates the current state and keeps it in workdir/best when it scores best so far."""
  report = run.evaluate()
  writer.write(run.step, 'eval', _scalars(report['metrics']))
  if run.best is not None and run.best.offer(run.step, run.state, report['metrics']):
    logging.info('Step %d is the best so far by %s; kept in %s', run.step, run.best.metric,
                 run.workdir / checkpointing.BEST_DIR)
  return report


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
  return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
             checkpoint: str = 'latest') -> dict[str, Any]:
  """Evaluates the workdir's latest (or best) checkpoint."""
  run = Run(config, workdir, training=False)
  try:
    run.require_checkpoint(checkpoint)
    return run.evaluate()
  finally:
    run.close()


def sample(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, output: str,
           checkpoint: str = 'latest') -> pathlib.Path:
  """Writes config.sample.num_samples samples of the latest (or best) checkpoint to an .npz
  (array `samples`)."""
  path = pathlib.Path(workdir) / output
  if path.exists():
    raise FileExistsError(f'{path} exists; refusing to overwrite it (pass another --output)')
  run = Run(config, workdir, training=False)
  try:
    run.require_checkpoint(checkpoint)
    samples = run.family.sample(run.state, run.sample_rng, config.sample.num_samples)
    np.savez_compressed(path, samples=np.asarray(samples, np.float32))
    figures.save_image_grid(samples[:64], path.with_suffix('.png'), columns=8)
    logging.info('Wrote %d samples to %s', len(samples), path)
    return path
  finally:
    run.close()
