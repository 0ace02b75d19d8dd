"""The training loop every model shares (the digit classifier of the sample metrics included),
and the evaluate and sample modes.

A run lives in its workdir: `config.json`, orbax checkpoints (the latest ones in `checkpoints/`,
the best by `train.best_metric` in `best/`), `metrics.jsonl`, TensorBoard event files, and one
`eval/step_N` folder an evaluation with `eval.json`, `eval.md` and the family's pictures.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from gen_jax import data, validation
from gen_jax.evaluation import figures, reports, sample_metrics
from gen_jax.evaluation.digit_classifier import Classifier
from gen_jax.evaluation.evaluator import Evaluator
from gen_jax.families import classifier as classifier_family
from gen_jax.families.base import DataSpec
from gen_jax.runtime import (checkpointing, config_checks, dispatch, distributed, metric_writers,
                             parallel, workdir_guard)
from gen_jax.runtime.metric_window import MetricWindow, TrainingDiverged
from gen_jax.runtime.metric_writers import MetricWriter
from gen_jax.runtime.prefetch import Prefetcher

EVAL_JSON = reports.EVAL_JSON
# Which checkpoint evaluate and sample use: the latest one, or the best by train.best_metric.
CHECKPOINT_CHOICES = ('latest', 'best')


class Run:
  """Everything a mode needs: the family, the data, the mesh, the checkpoints and the state."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | pathlib.Path,
               training: bool):
    family_cls = validation.validate(config)
    self.config = config
    self.workdir = pathlib.Path(workdir)
    self.mesh = parallel.make_mesh(config.train.num_devices)
    parallel.check_batch_size(config.train.batch_size, self.mesh, 'train.batch_size')
    # Every process evaluates and samples on its own devices, from its copy of the state (the
    # same figures everywhere; the writer's are kept). With one process, the training mesh.
    self.local_mesh = self.mesh if jax.process_count() == 1 else parallel.local_mesh()
    self.evaluator = Evaluator(self.local_mesh, config.eval.batch_size)
    self.judge = sample_metrics.SampleJudge(lambda: digit_classifier(config), config.seed)
    if not training:
      workdir_guard.claim_workdir(self.workdir, config, create=False)
    self.dataset = data.load(**config.data)
    self.batches = data.training_batches(self.dataset, config.train.batch_size, config.seed)
    self.family = family_cls(config, DataSpec.of(self.dataset, self.batches))
    validation.check_best_metric(config, self.family)
    # Only now, with the data read and the model built, does a new workdir get its config.json
    # (from the writer; the other processes then check it holds this run).
    distributed.writer_then_all(
        'claim workdir', lambda: workdir_guard.claim_workdir(self.workdir, config, create=training))
    if not distributed.is_writer():
      workdir_guard.claim_workdir(self.workdir, config, create=False)
    self.output_dir = distributed.output_dir(self.workdir)
    # One trainer a workdir, from before its first checkpoint is read to its end.
    self.lock = workdir_guard.TrainerLock(self.workdir) if training and distributed.is_writer() else None
    try:
      self._open_checkpoints(training)
    except BaseException:
      if self.lock is not None:
        self.lock.release()
      raise

  def _open_checkpoints(self, training: bool) -> None:
    """The latest and best checkpoints, and the state restored from the newest intact one."""
    config = self.config
    # Read-only modes (evaluate, sample) create no folder.
    self.checkpoints = checkpointing.Checkpointer(self.workdir, config.train.keep_checkpoints,
                                                  create=training)
    self.best = (checkpointing.BestCheckpointer(self.workdir, config.train.best_metric,
                                                config.train.best_mode, create=training)
                 if config.train.best_metric else None)
    root = jax.random.PRNGKey(config.seed)
    self.init_rng, self.eval_rng, self.sample_rng = jax.random.split(root, 3)
    self.state = parallel.initialize(self.family.init_state, self.init_rng, self.mesh)
    restored = self.checkpoints.restore_newest_intact(self.state, set_aside=training)
    self.restored_step = None
    if restored is not None:
      self.state = restored
      self.restored_step = self.step
      logging.info('%s step %d in %s', 'Resumed from' if training else 'Loaded the checkpoint of',
                   self.step, self.workdir)

  @property
  def step(self) -> int:
    return int(jax.device_get(self.state.step))

  def local_state(self) -> Any:
    """The state on this process's devices (itself, with one process)."""
    if jax.process_count() == 1:
      return self.state
    return parallel.replicate(jax.device_get(self.state), self.local_mesh)

  def require_checkpoint(self, which: str = 'latest') -> None:
    """Makes the state that of the latest checkpoint (already restored) or of the best one."""
    if which not in CHECKPOINT_CHOICES:
      raise ValueError(f'checkpoint must be one of {CHECKPOINT_CHOICES}, got {which!r}')
    if which == 'best':
      best = None if self.best is None else self.best.restore_newest_intact(self.state, set_aside=False)
      if best is None:
        raise FileNotFoundError(
            f'no intact best checkpoint in {self.workdir / checkpointing.BEST_DIR} (one is kept when '
            f'config.train.best_metric is set and an evaluation ran); use the latest instead')
      self.state = best
    elif self.restored_step is None:
      raise FileNotFoundError(f'no intact checkpoint in {self.workdir / checkpointing.CHECKPOINT_DIR}; '
                              f'train first (--mode=train)')

  def evaluate(self) -> dict[str, Any]:
    """Held-out metrics and pictures into eval/step_N; also written to the workdir's eval.json."""
    out_dir = figures.unique_dir(self.output_dir / 'eval' / f'step_{self.step}')
    holdout = self.dataset.holdout.take(self.config.eval.max_examples)
    dataset = dataclasses.replace(self.dataset, holdout=holdout)
    model_rng, sample_rng = jax.random.split(self.eval_rng)
    state = self.local_state()
    metrics = self.family.evaluate(state, dataset, self.evaluator, out_dir, model_rng)
    if self.family.GENERATIVE:
      num = self.config.eval.num_samples or len(holdout)
      metrics.update(self.family.judge_samples(state, sample_rng, num, holdout, self.judge))
    undeclared = set(metrics) - validation.reported_metrics(self.family)
    if undeclared:
      raise RuntimeError(f'model {self.config.model.name!r} reported metrics it does not declare in '
                         f'metric_names(): {sorted(undeclared)}')
    report = {'model': self.config.model.name, 'config_name': self.config.get('name', ''),
              'data': self.config.data.name, 'step': self.step, 'num_holdout': len(holdout),
              'eval_dir': str(out_dir), 'metrics': metrics}
    if self.family.GENERATIVE:   # the feature space its sample metrics were measured in
      report['classifier'] = classifier_family.workdir(self.config).name
    for directory in (out_dir, self.output_dir):
      (directory / EVAL_JSON).write_text(json.dumps(report, indent=2))
      (directory / reports.EVAL_MARKDOWN).write_text(reports.evaluation_markdown(report))
    logging.info('Evaluation at step %d: %s', self.step, metrics)
    return report

  def close(self) -> None:
    self.checkpoints.close()
    if self.best is not None:
      self.best.close()
    if self.lock is not None:
      self.lock.release()


def _last_good_checkpoint(run: Run) -> str:
  step = run.checkpoints.latest_step()
  if step is None:
    return 'No checkpoint was saved before it.'
  return f'The last good checkpoint (step {step}) is kept in {run.workdir / checkpointing.CHECKPOINT_DIR}.'


def _save(run: Run, window: MetricWindow) -> None:
  """Saves the state, unless a metric since the last log or the state holds a NaN/inf (then the
  last good checkpoint stays the latest)."""
  window.check_finite(_last_good_checkpoint(run))
  if not bool(parallel.all_finite(run.state)):
    raise TrainingDiverged(f'parameters became NaN or infinite by step {run.step}; not saving. '
                           f'{_last_good_checkpoint(run)}')
  run.checkpoints.save(run.step, run.state)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Trains to config.train.num_steps (resuming from the workdir's latest checkpoint), then evaluates."""
  run = Run(config, workdir, training=True)
  try:
    return _train(run)
  finally:
    run.close()


def _train(run: Run) -> dict[str, Any]:
  config, workdir, train_cfg = run.config, run.workdir, run.config.train
  steps_per_epoch = run.batches.steps_per_epoch
  start = run.step
  writer = MetricWriter(run.output_dir, resumed_step=start)
  if start and start % steps_per_epoch == 0 and not any(
      r['step'] == start for r in metric_writers.read_metrics(run.workdir, 'epoch')):
    # Stopped after the checkpoint that ends an epoch but before that epoch's hook ran.
    _end_epoch(run, writer, start - 1)
  if start >= train_cfg.num_steps:
    logging.info('Workdir %s is already at step %d >= num_steps=%d', workdir, start, train_cfg.num_steps)

  def is_boundary(done: int) -> bool:   # a step count after which the loop does more than train
    return (done % train_cfg.log_every == 0 or done % train_cfg.checkpoint_every == 0
            or bool(train_cfg.eval_every) and done % train_cfg.eval_every == 0
            or done % steps_per_epoch == 0)

  run_steps = dispatch.Dispatcher(run.family.train_step, run.mesh, train_cfg.steps_per_dispatch,
                                  train_cfg.dispatch_form)
  calls = Prefetcher(
      lambda first, count: dispatch.put_batches(
          [run.batches.part(step, jax.process_index(), jax.process_count())
           for step in range(first, first + count)], run.mesh),
      dispatch.plan(start, train_cfg.num_steps, train_cfg.steps_per_dispatch, is_boundary))
  window = MetricWindow()
  window_start = time.perf_counter()
  progress = tqdm(initial=start, total=train_cfg.num_steps,
                  desc=f'{config.model.name} on {config.data.name}', unit='step', dynamic_ncols=True,
                  # In a log file (no terminal) every refresh is a new line: refresh rarely there.
                  mininterval=0.5 if sys.stderr.isatty() else 30.0,
                  disable=not distributed.is_writer())
  try:
    for first, count, batches in calls:
      run.state, sums = run_steps(run.state, batches, count)
      window.add(first, count, sums)
      progress.update(count)
      done = first + count
      if done % train_cfg.log_every == 0 or done == train_cfg.num_steps:
        window_steps = window.num_steps
        means = window.flush(_last_good_checkpoint(run))
        means['window_seconds'] = time.perf_counter() - window_start
        means['steps_per_second'] = window_steps / means['window_seconds']
        means['epoch'] = (done - 1) / steps_per_epoch
        writer.write(done, 'train', means)
        progress.set_postfix({k: f'{v:.4g}' for k, v in list(means.items())[:3]})
        window_start = time.perf_counter()
      if done % train_cfg.checkpoint_every == 0:
        _save(run, window)
      if train_cfg.eval_every and done % train_cfg.eval_every == 0 and done != train_cfg.num_steps:
        _evaluate_and_keep_best(run, writer)
      if done % steps_per_epoch == 0:
        _end_epoch(run, writer, done - 1)
    _save(run, window)
    run.family.on_train_end(run.output_dir)
    return _evaluate_and_keep_best(run, writer)
  finally:
    calls.close()
    progress.close()
    writer.close()


def _end_epoch(run: Run, writer: MetricWriter, step: int) -> None:
  """The family's end-of-epoch hook for the epoch whose last step is `step`."""
  epoch_metrics = run.family.on_epoch_end(run.local_state(), run.batches.epoch_of(step),
                                          run.output_dir, run.judge)
  if epoch_metrics:
    writer.write(step + 1, 'epoch', epoch_metrics)


def _evaluate_and_keep_best(run: Run, writer: MetricWriter) -> dict[str, Any]:
  """Evaluates the current state and keeps it in workdir/best when it scores best so far."""
  report = run.evaluate()
  writer.write(run.step, 'eval', _scalars(report['metrics']))
  writer.write_images(run.step, 'eval', {path.stem: path for path in
                                         sorted(pathlib.Path(report['eval_dir']).glob('*.png'))})
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
           checkpoint: str = 'latest') -> tuple[pathlib.Path, pathlib.Path]:
  """Writes config.sample.num_samples samples of the latest (or best) checkpoint to an .npz
  (array `samples`) and the first 64 as a PNG grid beside it; returns both paths. In a multi-process
  run every process draws the same samples and the writer alone writes them.

  Both files are checked before anything is computed: neither may exist, and their folder must.
  """
  path = pathlib.Path(workdir) / output
  if path.suffix != '.npz':
    raise config_checks.ConfigError(f'--output={output} must name an .npz file (the PNG grid is '
                                    f'written beside it, with the same name)')
  outputs = (path, path.with_suffix('.png'))
  for target in outputs:
    if target.exists():
      raise FileExistsError(f'{target} exists; refusing to overwrite it (pass another --output)')
  if pathlib.Path(workdir).is_dir() and not path.parent.is_dir():
    raise FileNotFoundError(f'the folder of --output={output}, {path.parent}, does not exist')
  run = Run(config, workdir, training=False)
  try:
    if run.family.TRANSLATES:
      inputs = _translation_inputs(run)
      run.require_checkpoint(checkpoint)
      samples = run.family.translate(run.local_state(), inputs, run.sample_rng)
      if distributed.is_writer():   # every process computed the same translations
        np.savez_compressed(path, samples=np.asarray(samples, np.float32), inputs=inputs)
        run.family.translation_grid(inputs[:16], samples[:16], None, outputs[1])
        logging.info('Wrote %d translations to %s and %s', len(samples), *outputs)
      return outputs
    if not run.family.GENERATIVE:
      raise config_checks.ConfigError(f'model {config.model.name!r} draws no samples')
    run.require_checkpoint(checkpoint)
    samples = run.family.sample(run.local_state(), run.sample_rng, config.sample.num_samples)
    if distributed.is_writer():   # every process drew the same samples
      np.savez_compressed(path, samples=np.asarray(samples, np.float32))
      figures.save_image_grid(samples[:64], outputs[1], columns=8)
      logging.info('Wrote %d samples to %s and %s', len(samples), *outputs)
    return outputs
  finally:
    run.close()


def _translation_inputs(run: Run) -> np.ndarray:
  """What --mode=sample translates: the images of config.sample.input_dir (all of them), or the
  first config.sample.num_samples held-out inputs."""
  config = run.config
  if not config.sample.input_dir:
    return run.family.held_out_inputs(run.dataset.holdout)[:config.sample.num_samples]
  shape = run.family.spec.input_shape
  images, _ = data.read_images(config.sample.input_dir, shape[0], shape[-1])
  return data.to_model_format(images, None, shape[0], shape[-1]).images


_classifiers: dict[pathlib.Path, Classifier] = {}   # loaded once per process (and compiled once)


def digit_classifier(config: ml_collections.ConfigDict) -> Classifier:
  """The digit classifier of `config`'s data, whose features every sample metric uses.

  Trained by this loop into its own workdir (gen_jax.families.classifier) when that holds no
  finished run, by one process while any other that needs it waits; then loaded from the loop's
  checkpoint, once per process. A workdir holding a classifier of another recipe is refused.
  """
  recipe = classifier_family.recipe_config(config)
  # Its batch of 64 split over as many local devices as divide it evenly (a resumable field:
  # where it ran does not change what it is); a multi-host run trains it on all of them together.
  recipe.train.num_devices = 0 if jax.process_count() > 1 else max(
      d for d in range(1, jax.local_device_count() + 1) if recipe.train.batch_size % d == 0)
  directory = classifier_family.workdir(config)
  if directory.absolute() in _classifiers:
    return _classifiers[directory.absolute()]
  # The writer holds the lock against other runs; the processes of this run follow its decision.
  with workdir_guard.exclusive(directory) if distributed.is_writer() else contextlib.nullcontext():
    if distributed.agree(not (directory / EVAL_JSON).exists()):
      logging.info('No digit classifier in %s; training one (%d steps)', directory,
                   recipe.train.num_steps)
      train_and_evaluate(recipe, directory)
  run = Run(recipe, directory, training=False)
  try:
    run.require_checkpoint()
    report = json.loads((directory / EVAL_JSON).read_text())
    classifier = Classifier(run.family.network, jax.device_get(run.state.params),
                            report['metrics']['holdout_accuracy'], config.data.name, directory)
  finally:
    run.close()
  _classifiers[directory.absolute()] = classifier
  return classifier
