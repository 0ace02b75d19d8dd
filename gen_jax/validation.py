"""The checks of a whole run config, before any data is read: every field the loop reads, the
family's own, and that the metric a best checkpoint is kept by is one the model reports."""

from __future__ import annotations

import ml_collections

from gen_jax import data, registry
from gen_jax.evaluation import sample_metrics
from gen_jax.families import classifier as classifier_family
from gen_jax.families.base import ModelFamily
from gen_jax.runtime import checkpointing, config_checks, dispatch


def validate(config: ml_collections.ConfigDict) -> type[ModelFamily]:
  """Checks the whole config before any data is read; returns the model family it names."""
  family = registry.get(config_checks.get_field(config, 'model.name'))
  config_checks.require_int(config, 'seed', minimum=0, maximum=2**63 - 1)
  if 'smoke' in config:
    config_checks.require_bool(config, 'smoke')
  if 'name' in config:
    config_checks.require_str(config, 'name')
  data.validate(config)
  config_checks.require_int(config, 'train.batch_size', minimum=1, maximum=65_536)
  config_checks.require_int(config, 'train.num_steps', minimum=1)
  config_checks.require_int(config, 'train.log_every', minimum=1)
  config_checks.require_int(config, 'train.checkpoint_every', minimum=1)
  config_checks.require_int(config, 'train.keep_checkpoints', minimum=1)
  config_checks.require_int(config, 'train.eval_every', minimum=0)
  config_checks.require_int(config, 'train.num_devices', minimum=0)
  config_checks.require_int(config, 'train.steps_per_dispatch', minimum=1, maximum=10_000)
  config_checks.require_choice(config, 'train.dispatch_form', dispatch.FORMS)
  config_checks.require_int(config, 'eval.batch_size', minimum=1, maximum=65_536)
  config_checks.require_int(config, 'eval.max_examples', minimum=0)
  if not isinstance(config_checks.get_field(config, 'train.best_metric'), str):
    raise config_checks.ConfigError(f'config.train.best_metric={config.train.best_metric!r} must be '
                                    f"an evaluation metric's name, or '' to keep no best checkpoint")
  config_checks.require_choice(config, 'train.best_mode', checkpointing.BEST_MODES)
  if family.GENERATIVE:
    config_checks.require_int(config, 'eval.num_samples', minimum=0, maximum=100_000)
    config_checks.require_int(config, 'sample.num_samples', minimum=1, maximum=100_000)
    classifier_family.validate_fields(config)
  family.validate(config)
  if config.data.get('streaming') and family.READS_WHOLE_TRAINING_SPLIT:
    raise config_checks.ConfigError(
        f'config.data.streaming=True cannot train model {config.model.name!r}: '
        f'{family.READS_WHOLE_TRAINING_SPLIT}, which needs the whole training split in memory; '
        f'set data.streaming=False')
  return family


def reported_metrics(family: ModelFamily) -> set[str]:
  """Every name an evaluation of `family` reports: its own, and the sample-quality ones."""
  return family.metric_names() | (sample_metrics.SAMPLE_QUALITY_METRICS if family.GENERATIVE else set())


def check_best_metric(config: ml_collections.ConfigDict, family: ModelFamily) -> None:
  """train.best_metric must be a scalar the family's evaluation reports."""
  metric = config.train.best_metric
  allowed = reported_metrics(family) - {'class_histogram'}
  if metric and metric not in allowed:
    raise config_checks.ConfigError(
        f'config.train.best_metric={metric!r} is not a metric of model {config.model.name!r}; '
        f"choose one of {sorted(allowed)} (or '' to keep no best checkpoint)")
