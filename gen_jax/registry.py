"""Model name → model family. Families are imported when asked for, so a run loads only its own."""

from __future__ import annotations

import importlib

from gen_jax.runtime import config_checks
from gen_jax.families.base import ModelFamily

_FAMILIES: dict[str, str] = {
    'autoencoder': 'gen_jax.families.autoencoder:AutoencoderFamily',
    # The digit classifier of the sample-quality metrics, trained by the same loop.
    'classifier': 'gen_jax.families.classifier:ClassifierFamily',
    'pca': 'gen_jax.families.pca:PCAFamily',
    'vae': 'gen_jax.families.vae:VAEFamily',
    # One family serves every GAN; the name says which config the run came from.
    'gan': 'gen_jax.families.gan:GANFamily',
    'dcgan': 'gen_jax.families.gan:GANFamily',
    'lsgan': 'gen_jax.families.gan:GANFamily',
    'cgan': 'gen_jax.families.gan:GANFamily',
    'wgan': 'gen_jax.families.gan:GANFamily',
    'wgan_gp': 'gen_jax.families.gan:GANFamily',
    # Paired image-to-image translation.
    'pix2pix': 'gen_jax.families.pix2pix:Pix2PixFamily',
    # Unpaired translation between two domains.
    'cyclegan': 'gen_jax.families.cyclegan:CycleGANFamily',
}


def names() -> list[str]:
  return sorted(_FAMILIES)


def get(name: str) -> type[ModelFamily]:
  if name not in _FAMILIES:
    raise config_checks.ConfigError(f'config.model.name={name!r} is not a model; choose one of {names()}')
  module_name, class_name = _FAMILIES[name].split(':')
  return getattr(importlib.import_module(module_name), class_name)
