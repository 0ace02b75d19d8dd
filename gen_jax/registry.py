"""Model name → model family. Families are imported when asked for, so a run loads only its own."""

from __future__ import annotations

import importlib

from gen_jax import config_checks
from gen_jax.families.base import ModelFamily

_FAMILIES: dict[str, str] = {
    'vae': 'gen_jax.families.vae:VAEFamily',
}


def names() -> list[str]:
  return sorted(_FAMILIES)


def get(name: str) -> type[ModelFamily]:
  if name not in _FAMILIES:
    raise config_checks.ConfigError(f'config.model.name={name!r} is not a model; choose one of {names()}')
  module_name, class_name = _FAMILIES[name].split(':')
  return getattr(importlib.import_module(module_name), class_name)
