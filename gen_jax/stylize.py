"""Neural style transfer as a run: `python -m gen_jax.main --config=configs/style_transfer.py`.

The optimisation itself is `gen_jax.families.style_transfer`'s; this runner gives it a workdir
like every other run's: `config.json` (a later run there must describe the same transfer),
one process at a time (the workdir's trainer lock), orbax checkpoints of the image and the
optimiser's state every `train.checkpoint_every` iterations (a stopped run resumes from the
newest intact one; a larger `train.num_steps` continues a finished one), `metrics.jsonl` and
TensorBoard files. Pictures: `result.png` (the final image at its full optimised size),
`intermediate/step_N.png` every `train.image_every` iterations, `losses.png` (content, style and
total-variation curves) and `sheet.png` (content | style | result).

A checkpoint at step t holds the image of the scale that ran iteration t; resuming at a scale's
last iteration moves on to the next scale, as an uninterrupted run would.
"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from gen_jax.data import images as picture_io
from gen_jax.evaluation import figures   # (sets matplotlib's Agg backend before pyplot draws)
from gen_jax.families import style_transfer as family
from gen_jax.models.style_transfer import LAYERS, POOLINGS
from gen_jax.runtime import checkpointing, config_checks, workdir_guard
from gen_jax.runtime.config_checks import ConfigError
from gen_jax.runtime.metric_writers import MetricWriter, read_metrics
from gen_jax.train import TrainingDiverged

MODEL_NAME = 'style_transfer'


def style_specs(config: ml_collections.ConfigDict) -> list[str]:
  """config.style as a list: a list or tuple of pictures, or one string of comma-separated ones."""
  styles = config.style
  return [s.strip() for s in styles.split(',')] if isinstance(styles, str) else list(styles)


def _require_layers(config, field: str) -> tuple[str, ...]:
  value = config_checks.get_field(config, field)
  if (not isinstance(value, (list, tuple)) or not value
      or any(not isinstance(v, str) or v not in LAYERS for v in value)):
    raise ConfigError(f'config.{field}={value!r} must be a non-empty sequence of VGG19 layer names '
                      f'from {LAYERS[0]} to {LAYERS[-1]} (conv<b>_<i>, relu<b>_<i>, pool<b>)')
  return tuple(value)


def _require_weights(config, field: str, count: int, owner: str) -> None:
  """Empty (all equal) or one non-negative number per item of `owner`, not all zero."""
  value = config_checks.get_field(config, field)
  numbers = isinstance(value, (list, tuple)) and all(
      isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
      for v in value)
  if not numbers or (value and (len(value) != count or sum(value) <= 0)):
    raise ConfigError(f'config.{field}={value!r} must be empty '
                      f'(equal weights) or {count} non-negative numbers, one per {owner}, not all 0')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks every field before any picture is read or anything is computed."""
  config_checks.require_choice(config, 'model.name', [MODEL_NAME])
  config_checks.require_int(config, 'seed', minimum=0, maximum=2**31 - 1)
  config_checks.require_str(config, 'name')
  config_checks.require_bool(config, 'smoke')
  if not config_checks.require_str(config, 'content').strip():
    raise ConfigError("config.content='' must name a picture: a file path or skimage:<name>")
  styles = config_checks.get_field(config, 'style')
  if (not isinstance(styles, (str, list, tuple)) or any(not isinstance(s, str) for s in styles)
      or not style_specs(config) or not all(style_specs(config))):
    raise ConfigError(f'config.style={styles!r} must name one or more pictures (file paths or '
                      f'skimage:<name>), as a list or separated by commas')
  _require_weights(config, 'style_weights', len(style_specs(config)), 'style picture')
  if not config_checks.require_str(config, 'init').strip():
    raise ConfigError(f"config.init='' must be one of {list(family.INITS)} or a picture to start from")
  config_checks.require_bool(config, 'preserve_colour')
  config_checks.require_choice(config, 'image_range', family.IMAGE_RANGES)
  config_checks.require_int(config, 'max_size', minimum=16, maximum=4096)
  config_checks.require_int(config, 'num_scales', minimum=1, maximum=6)
  config_checks.require_number(config, 'style_scale', low=0.0, high=8.0, low_inclusive=False)
  config_checks.require_choice(config, 'model.features', family.FEATURES)
  config_checks.require_str(config, 'model.weights_dir')
  config_checks.require_choice(config, 'model.pooling', POOLINGS)
  for kind in ('content', 'style'):
    layers = _require_layers(config, f'model.{kind}_layers')
    _require_weights(config, f'model.{kind}_layer_weights', len(layers), f'model.{kind}_layers entry')
    config_checks.require_number(config, f'model.{kind}_weight', low=0.0)
  config_checks.require_number(config, 'model.tv_weight', low=0.0)
  config_checks.require_choice(config, 'optimiser.name', family.OPTIMISERS)
  config_checks.require_choice(config, 'optimiser.line_search', family.LINE_SEARCHES)
  config_checks.require_choice(config, 'optimiser.dispatch_form', family.DISPATCH_FORMS)
  config_checks.require_number(config, 'optimiser.learning_rate', low=0.0, low_inclusive=False)
  config_checks.require_int(config, 'optimiser.memory_size', minimum=1, maximum=100)
  coarse = config_checks.require_int(config, 'optimiser.coarse_iterations', minimum=1)
  config_checks.require_int(config, 'optimiser.iterations_per_dispatch', minimum=1, maximum=10_000)
  coarse_total = coarse * (config.num_scales - 1)
  if config_checks.require_int(config, 'train.num_steps', minimum=1) <= coarse_total:
    raise ConfigError(f'config.train.num_steps={config.train.num_steps} must exceed the coarse '
                      f'scales\' iterations, optimiser.coarse_iterations × (num_scales - 1) = '
                      f'{coarse_total}, to leave iterations for the full size')
  for field in ('log_every', 'checkpoint_every', 'keep_checkpoints'):
    config_checks.require_int(config, f'train.{field}', minimum=1)
  config_checks.require_int(config, 'train.image_every', minimum=0)


def default_workdir(config: ml_collections.ConfigDict) -> str:
  """runs/style_transfer_<content>_<style…>, each picture by its file or skimage name."""
  def short(spec: str) -> str:
    return pathlib.Path(spec.split(':', 1)[-1]).stem
  return f'runs/{MODEL_NAME}_{short(config.content)}_' + '+'.join(short(s) for s in style_specs(config))


def stylize(config: ml_collections.ConfigDict, workdir: str | pathlib.Path) -> dict[str, Any]:
  """Runs (or resumes) the transfer `config` describes in `workdir`; returns its report."""
  validate(config)
  workdir = pathlib.Path(workdir)
  content = picture_io.read_image(config.content, 'config.content')
  styles = [picture_io.read_image(spec, 'config.style') for spec in style_specs(config)]
  init = None if config.init in family.INITS else picture_io.read_image(config.init, 'config.init')
  m = config.model
  vgg_params, weights_format = family.vgg_parameters(
      m.features, m.weights_dir, config.seed, tuple(m.content_layers) + tuple(m.style_layers))
  transfer = family.StyleTransfer(config, vgg_params, weights_format, content, styles, init)
  workdir_guard.claim_workdir(workdir, config, create=True)
  lock = workdir_guard.TrainerLock(workdir)
  try:
    checkpoints = checkpointing.Checkpointer(workdir, config.train.keep_checkpoints)
    try:
      return _optimise(config, workdir, transfer, checkpoints)
    finally:
      checkpoints.close()
  finally:
    lock.release()


def _checkpoint(variable, optimiser_state, step: int) -> dict:
  return {'variable': variable, 'optimiser': optimiser_state, 'step': jnp.asarray(step, jnp.int32)}


def _restore(transfer: family.StyleTransfer, checkpoints: checkpointing.Checkpointer):
  """(step, scale, variable, optimiser state) of the newest intact checkpoint, or of a new start.

  The checkpoints are read as images of the newest one's scale: should the newest be damaged and
  the one before it belong to a coarser scale, that one is set aside too (never deleted).
  """
  latest = checkpoints.latest_step()
  if latest is not None:
    like = _checkpoint(*transfer.start(transfer.scale_of(latest - 1)), 0)
    restored = checkpoints.restore_newest_intact(like, set_aside=True)
    if restored is not None:
      step = int(restored['step'])
      scale = transfer.scale_of(step - 1)
      logging.info('Resumed from iteration %d (scale %d, %dx%d)', step, scale, *transfer.sizes[scale])
      return step, scale, restored['variable'], restored['optimiser']
  return (0, 0) + transfer.start(0)


def _next_stop(step: int, config: ml_collections.ConfigDict, transfer: family.StyleTransfer) -> int:
  """The next iteration at which something happens: a log, picture, checkpoint, scale change, the
  end, or the end of a dispatch of optimiser.iterations_per_dispatch."""
  t = config.train
  periods = [config.optimiser.iterations_per_dispatch, t.log_every, t.checkpoint_every]
  periods += [t.image_every] if t.image_every else []
  stops = [(step // p + 1) * p for p in periods] + [b for b in transfer.boundaries if b > step]
  return min(stops + [t.num_steps])


def _optimise(config, workdir: pathlib.Path, transfer: family.StyleTransfer,
              checkpoints: checkpointing.Checkpointer) -> dict[str, Any]:
  total, t = config.train.num_steps, config.train
  step, scale, variable, optimiser_state = _restore(transfer, checkpoints)
  targets = transfer.targets(scale)
  writer = MetricWriter(workdir, resumed_step=step)
  progress = tqdm(total=total, initial=step, unit='iteration', dynamic_ncols=True,
                  desc=f'style transfer ({transfer.objective.weights_format} features)',
                  mininterval=0.5 if sys.stderr.isatty() else 30.0)
  losses = None
  try:
    window_start, window_steps, window_evaluations = time.perf_counter(), 0, 0
    while step < total:
      if transfer.scale_of(step) != scale:
        previous = transfer.optimised_image(variable)
        scale = transfer.scale_of(step)
        variable, optimiser_state = transfer.start(scale, previous)
        targets = transfer.targets(scale)
      stop = _next_stop(step, config, transfer)
      variable, optimiser_state, losses, evaluations = transfer.iterate(
          targets, variable, optimiser_state, stop - step)
      losses, evaluations = jax.device_get((losses, evaluations))   # one transfer for both
      losses = {k: float(v) for k, v in losses.items()}
      if not all(math.isfinite(v) for v in losses.values()):
        raise TrainingDiverged(f'style transfer diverged by iteration {stop}: {losses}; the last '
                               f'checkpoint is iteration {checkpoints.latest_step()}')
      progress.update(stop - step)
      progress.set_postfix({k: f'{v:.4g}' for k, v in losses.items()})
      window_steps += stop - step
      window_evaluations += int(evaluations)
      step = stop
      if step % t.log_every == 0 or step == total:
        seconds = time.perf_counter() - window_start
        writer.write(step, 'train', dict(
            losses, scale=scale, iterations_per_second=window_steps / seconds,
            loss_evaluations_per_iteration=window_evaluations / window_steps))
        window_start, window_steps, window_evaluations = time.perf_counter(), 0, 0
      if t.image_every and step % t.image_every == 0:
        picture_io.save_png(transfer.picture(variable), workdir / 'intermediate' / f'step_{step:06d}.png')
      if step % t.checkpoint_every == 0 or step == total:
        checkpoints.save(step, _checkpoint(variable, optimiser_state, step))
    if losses is None:   # already finished: measure the restored image
      losses = jax.device_get(transfer.iterate(targets, variable, optimiser_state, 0)[2])
      losses = {k: float(v) for k, v in losses.items()}
    pictures = _write_pictures(config, workdir, transfer, transfer.picture(variable))
    writer.write_images(step, 'result', pictures)
  finally:
    progress.close()
    writer.close()
  features = _features_note(transfer)
  if transfer.objective.weights_format == 'random':
    logging.warning('This result was made with %s.', family.RANDOM_FEATURES_NOTE)
  height, width = transfer.sizes[-1]
  return {'model': MODEL_NAME, 'config_name': config.name,
          'data': f'content {config.content}, style {", ".join(style_specs(config))}',
          'step': step, 'eval_dir': str(workdir), 'result': str(pictures['result']),
          'metrics': dict(losses, features=features, size=f'{height}x{width}')}


def _write_pictures(config, workdir: pathlib.Path, transfer: family.StyleTransfer,
                    result: np.ndarray) -> dict[str, pathlib.Path]:
  """result.png, losses.png and sheet.png in the workdir."""
  pictures = {'result': picture_io.save_png(result, workdir / 'result.png')}
  records = read_metrics(workdir, 'train')
  pictures['losses'] = figures.save_curves(
      records, ['content', 'style', 'tv'], workdir / 'losses.png',
      'Style transfer losses (weighted; step = optimiser iteration)',
      ['content loss', 'style loss', 'total variation'])
  pictures['sheet'] = _save_sheet(
      [('content', transfer.content)] + [(f'style {i + 1}' if len(transfer.styles) > 1 else 'style', s)
                                         for i, s in enumerate(transfer.styles)] + [('result', result)],
      workdir / 'sheet.png', f'features: {_features_note(transfer)}')
  return pictures


def _features_note(transfer: family.StyleTransfer) -> str:
  weights_format = transfer.objective.weights_format
  return (family.RANDOM_FEATURES_NOTE if weights_format == 'random'
          else f'pretrained VGG19 ({weights_format} weights)')


def _save_sheet(panels: list[tuple[str, np.ndarray]], path: pathlib.Path, title: str) -> pathlib.Path:
  """The pictures side by side at the result's height, each titled, under `title`."""
  height = max(panels[-1][1].shape[0], 128)   # small results are shown enlarged
  shown = [(name, picture_io.resize(image, height, max(1, round(image.shape[1] * height / image.shape[0]))))
           for name, image in panels]
  width = sum(image.shape[1] for _, image in shown)
  fig, axes = plt.subplots(1, len(shown), figsize=(max(4.0, 1.15 * width / 100), height / 100 + 0.9),
                           gridspec_kw={'width_ratios': [image.shape[1] for _, image in shown]})
  for ax, (name, image) in zip(axes, shown):
    ax.imshow(image, interpolation='nearest')
    ax.set_title(name)
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
