"""Builds an optax optimiser (with an optional StepLR-like schedule) from a config block."""

from __future__ import annotations

import optax

from gen_jax import config_checks

_OPTIMIZERS = {
    'adam': lambda cfg, lr: optax.adam(lr, b1=cfg.b1, b2=cfg.b2),
    'adamw': lambda cfg, lr: optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay),
    'rmsprop': lambda cfg, lr: optax.rmsprop(lr),
    'sgd': lambda cfg, lr: optax.sgd(lr, momentum=cfg.b1 or None),
}


def validate(config, field: str) -> None:
  """Checks the optimiser block `config.<field>`."""
  config_checks.require_choice(config, f'{field}.name', _OPTIMIZERS)
  config_checks.require_number(config, f'{field}.learning_rate', low=0, low_inclusive=False)
  config_checks.require_number(config, f'{field}.b1', low=0, high=1, high_inclusive=False)
  config_checks.require_number(config, f'{field}.b2', low=0, high=1, high_inclusive=False)
  config_checks.require_number(config, f'{field}.weight_decay', low=0)
  config_checks.require_int(config, f'{field}.decay_every_epochs', minimum=0)
  config_checks.require_number(config, f'{field}.decay_factor', low=0, high=1, low_inclusive=False)
  config_checks.require_number(config, f'{field}.grad_clip_norm', low=0)


def learning_rate_schedule(cfg, steps_per_epoch: int) -> optax.Schedule:
  """Constant rate, or StepLR: the rate times decay_factor every decay_every_epochs epochs."""
  if not cfg.decay_every_epochs:
    return optax.constant_schedule(cfg.learning_rate)
  return optax.exponential_decay(cfg.learning_rate, cfg.decay_every_epochs * steps_per_epoch,
                                 cfg.decay_factor, staircase=True)


def build(cfg, steps_per_epoch: int) -> optax.GradientTransformation:
  optimizer = _OPTIMIZERS[cfg.name](cfg, learning_rate_schedule(cfg, steps_per_epoch))
  if cfg.grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(cfg.grad_clip_norm), optimizer)
  return optimizer
