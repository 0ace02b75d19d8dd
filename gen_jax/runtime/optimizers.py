"""Optax optimisers with an optional learning-rate schedule, built from plain arguments.

A family builds one with `optimizers.build(**config.optim, steps_per_epoch=..., total_steps=...)`
(the updates per epoch and in the whole run, which the schedules are expressed in); `validate`
checks the same block, naming its fields, before any data is read.
"""

from __future__ import annotations

import optax

from gen_jax.runtime import config_checks

_OPTIMIZERS = {
    'adam': lambda lr, b1, b2, weight_decay: optax.adam(lr, b1=b1, b2=b2),
    'adamw': lambda lr, b1, b2, weight_decay: optax.adamw(lr, b1=b1, b2=b2, weight_decay=weight_decay),
    'rmsprop': lambda lr, b1, b2, weight_decay: optax.rmsprop(lr),
    'sgd': lambda lr, b1, b2, weight_decay: optax.sgd(lr, momentum=b1 or None),
}
NAMES = tuple(_OPTIMIZERS)
# The fields that choose a learning-rate schedule; at most one is set (non-zero).
_SCHEDULE_FIELDS = ('decay_every_epochs', 'cosine_decay_steps', 'linear_decay_fraction')


def validate(config, field: str) -> None:
  """Checks the optimiser block `config.<field>`."""
  config_checks.require_choice(config, f'{field}.name', _OPTIMIZERS)
  config_checks.require_number(config, f'{field}.learning_rate', low=0, low_inclusive=False)
  config_checks.require_number(config, f'{field}.b1', low=0, high=1, high_inclusive=False)
  config_checks.require_number(config, f'{field}.b2', low=0, high=1, high_inclusive=False)
  config_checks.require_number(config, f'{field}.weight_decay', low=0)
  config_checks.require_int(config, f'{field}.decay_every_epochs', minimum=0)
  config_checks.require_number(config, f'{field}.decay_factor', low=0, high=1, low_inclusive=False)
  config_checks.require_int(config, f'{field}.cosine_decay_steps', minimum=0)
  config_checks.require_number(config, f'{field}.grad_clip_norm', low=0)
  config_checks.require_number(config, f'{field}.linear_decay_fraction', low=0, high=1,
                               high_inclusive=False)
  schedules = [name for name in _SCHEDULE_FIELDS if config_checks.get_field(config, f'{field}.{name}')]
  if len(schedules) > 1:
    raise config_checks.ConfigError(
        f'config.{field}.' + f' and config.{field}.'.join(schedules) + ' are all set; choose one '
        'schedule (set the others to 0)')


def learning_rate_schedule(learning_rate: float, decay_every_epochs: int, decay_factor: float,
                           cosine_decay_steps: int, linear_decay_fraction: float,
                           steps_per_epoch: int, total_steps: int) -> optax.Schedule:
  """Constant; StepLR (times decay_factor every decay_every_epochs epochs); a cosine to 0 over
  cosine_decay_steps updates; or constant, then linear to 0 over the last linear_decay_fraction
  of total_steps (Pix2Pix and CycleGAN's schedule)."""
  if linear_decay_fraction:
    decay_steps = max(1, round(total_steps * linear_decay_fraction))
    return optax.schedules.linear_schedule(learning_rate, 0.0, decay_steps,
                                           transition_begin=total_steps - decay_steps)
  if cosine_decay_steps:
    return optax.cosine_decay_schedule(learning_rate, cosine_decay_steps)
  if decay_every_epochs:
    return optax.exponential_decay(learning_rate, decay_every_epochs * steps_per_epoch,
                                   decay_factor, staircase=True)
  return optax.constant_schedule(learning_rate)


def build(name: str, learning_rate: float, b1: float, b2: float, weight_decay: float,
          decay_every_epochs: int, decay_factor: float, cosine_decay_steps: int,
          linear_decay_fraction: float, grad_clip_norm: float, *, steps_per_epoch: int,
          total_steps: int) -> optax.GradientTransformation:
  """The optimiser `name` on its schedule, after gradient clipping when grad_clip_norm > 0."""
  schedule = learning_rate_schedule(learning_rate, decay_every_epochs, decay_factor,
                                    cosine_decay_steps, linear_decay_fraction, steps_per_epoch,
                                    total_steps)
  optimizer = _OPTIMIZERS[name](schedule, b1, b2, weight_decay)
  if grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(grad_clip_norm), optimizer)
  return optimizer
