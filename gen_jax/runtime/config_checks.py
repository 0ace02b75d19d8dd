"""Checks that turn a wrong config value into an error naming the field, the value and what is allowed.

Every check runs before any data is loaded or any array is computed.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import ml_collections


class ConfigError(ValueError):
  """A config field holds a value the run cannot use."""


def get_field(config: ml_collections.ConfigDict, field: str) -> Any:
  value = config
  for part in field.split('.'):
    if part not in value:
      raise ConfigError(f'config.{field} is missing')
    value = value[part]
  return value


def require_choice(config, field: str, allowed: Iterable[str]) -> str:
  allowed = list(allowed)
  value = get_field(config, field)
  if value not in allowed:
    raise ConfigError(f'config.{field}={value!r} is not allowed; choose one of {allowed}')
  return value


def require_int(config, field: str, minimum: int | None = None, maximum: int | None = None) -> int:
  """An integer within [minimum, maximum]; sizes get a maximum, so that a typo (1e9 samples, a
  4096-pixel image) is refused here rather than found by the allocator."""
  value = get_field(config, field)
  if isinstance(value, bool) or not isinstance(value, int):
    raise ConfigError(f'config.{field}={value!r} must be an integer')
  if minimum is not None and value < minimum:
    raise ConfigError(f'config.{field}={value!r} must be >= {minimum}')
  if maximum is not None and value > maximum:
    raise ConfigError(f'config.{field}={value!r} must be <= {maximum:,}')
  return value


def require_number(config, field: str, low: float | None = None, high: float | None = None,
                   low_inclusive: bool = True, high_inclusive: bool = True) -> float:
  value = get_field(config, field)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise ConfigError(f'config.{field}={value!r} must be a number')
  if not math.isfinite(value):
    raise ConfigError(f'config.{field}={value!r} must be a finite number')
  too_low = low is not None and (value < low if low_inclusive else value <= low)
  too_high = high is not None and (value > high if high_inclusive else value >= high)
  if too_low or too_high:
    lo = '' if low is None else f"{'[' if low_inclusive else '('}{low}"
    hi = '' if high is None else f"{high}{']' if high_inclusive else ')'}"
    raise ConfigError(f'config.{field}={value!r} is out of range; allowed: {lo or "(-inf"}, {hi or "inf)"}')
  return float(value)


def require_positive_ints(config, field: str, allow_empty: bool = False) -> tuple[int, ...]:
  value = get_field(config, field)
  if (not isinstance(value, (tuple, list)) or (not value and not allow_empty)
      or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
    kind = 'sequence' if allow_empty else 'non-empty sequence'
    raise ConfigError(f'config.{field}={value!r} must be a {kind} of positive integers')
  return tuple(value)


def require_str(config, field: str) -> str:
  value = get_field(config, field)
  if not isinstance(value, str):
    raise ConfigError(f'config.{field}={value!r} must be a string')
  return value


def require_bool(config, field: str) -> bool:
  value = get_field(config, field)
  if not isinstance(value, bool):
    raise ConfigError(f'config.{field}={value!r} must be True or False')
  return value
