"""Optax optimisers with an optional learning-rate schedule, built from plain arguments.

A family builds one with `optimizers.build(**config.optim, steps_per_epoch=...)`; `validate`
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
  if config_checks.get_field(config, f'{field}.decay_every_epochs') and \
      config_checks.get_field(config, f'{field}.cosine_decay_steps'):
    raise config_checks.ConfigError(
        f'config.{field}.decay_every_epochs and config.{field}.cosine_decay_steps are both set; '
        f'choose one schedule (set the other to 0)')


def learning_rate_schedule(learning_rate: float, decay_every_epochs: int, decay_factor: float,
                           cosine_decay_steps: int, steps_per_epoch: int) -> optax.Schedule:
  """Constant; StepLR (times decay_factor every decay_every_epochs epochs); or a cosine to 0
  over cosine_decay_steps updates."""
  if cosine_decay_steps:
    return optax.cosine_decay_schedule(learning_rate, cosine_decay_steps)
  if decay_every_epochs:
    return optax.exponential_decay(learning_rate, decay_every_epochs * steps_per_epoch,
                                   decay_factor, staircase=True)
  return optax.constant_schedule(learning_rate)


def build(name: str, learning_rate: float, b1: float, b2: float, weight_decay: float,
          decay_every_epochs: int, decay_factor: float, cosine_decay_steps: int,
          grad_clip_norm: float, *, steps_per_epoch: int) -> optax.GradientTransformation:
  """The optimiser `name` on its schedule, after gradient clipping when grad_clip_norm > 0."""
  schedule = learning_rate_schedule(learning_rate, decay_every_epochs, decay_factor,
                                    cosine_decay_steps, steps_per_epoch)
  optimizer = _OPTIMIZERS[name](schedule, b1, b2, weight_decay)
  if grad_clip_norm:
    optimizer = optax.chain(optax.clip_by_global_norm(grad_clip_norm), optimizer)
  return optimizer
