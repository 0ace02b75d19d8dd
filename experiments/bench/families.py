"""The model families the benchmark times, and how each one's cases are built.

A family is a gen_jax config (configs/<name>.py) and the PyTorch twin of its networks and step
(experiments/torch_models/<module>.py, class `Trainer`). A case is the family at one batch size
and image size: the config with `train.batch_size` and `data.image_size` changed, trained on
random images of that size (the speed of these models does not depend on the pixels' values).

To add a family: write experiments/torch_models/<module>.py with a `Trainer` whose `step` does
what the family's train_step does, add its entry below, and list the batch keys its step reads
(`input` for a translation's source domain, `image` for its target).
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np

NUM_CLASSES = 10   # the random labels' classes (the GAN family wants class labels to exist)


@dataclasses.dataclass(frozen=True)
class Family:
  name: str
  config: str                 # module under configs/
  conv: bool                  # convolutional: timed as the image grows too
  size_multiple: int          # image sizes are rounded up to a multiple of this
  keys: tuple[str, ...]       # what a batch holds
  torch_trainer: str | None   # 'module:Class' under experiments.torch_models; None: not yet written
  base_size: int = 28         # the image size of the family's headline case
  kind: str = 'step'          # step: a training step | style: L-BFGS iterations on one picture
  note: str = ''

  @property
  def ready(self) -> bool:
    return self.torch_trainer is not None

  def size(self, requested: int) -> int:
    """The nearest image size at or above `requested` the family's networks accept."""
    return -(-requested // self.size_multiple) * self.size_multiple

  def build_config(self, batch_size: int, image_size: int):
    config = importlib.import_module(f'configs.{self.config}').get_config()
    if self.kind == 'style':
      return config
    config.train.batch_size = batch_size
    config.data.image_size = image_size
    config.data.channels = 1
    config.train.num_devices = 1
    if self.name in ('pix2pix', 'cyclegan'):   # a constant rate, as on the PyTorch side
      for optim in (config.optim_g, config.optim_d):
        optim.linear_decay_fraction = 0.0
    from gen_jax import registry   # noqa: PLC0415 (the torch worker imports this module too)
    registry.get(config.model.name).validate(config)
    return config

  def host_batches(self, batch_size: int, image_size: int, count: int,
                   seed: int = 0) -> list[dict[str, np.ndarray]]:
    """`count` random batches, NHWC images in [0, 1] and int32 labels, the same on both sides."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
      batch = {}
      for key in self.keys:
        if key == 'label':
          batch[key] = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)
        else:
          batch[key] = rng.random((batch_size, image_size, image_size, 1), np.float32)
      batches.append(batch)
    return batches


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family('vae', 'vae', conv=True, size_multiple=2, keys=('image', 'label'),
           torch_trainer='vae:Trainer'),
    Family('gan', 'gan', conv=False, size_multiple=1, keys=('image', 'label'),
           torch_trainer='gan:Trainer', note='the fully connected GAN'),
    Family('dcgan', 'dcgan', conv=True, size_multiple=4, keys=('image', 'label'),
           torch_trainer='gan:Trainer'),
    Family('wgan_gp', 'wgan_gp', conv=True, size_multiple=4, keys=('image', 'label'),
           torch_trainer='gan:Trainer', note='5 critic updates and the gradient penalty a step'),
    Family('ae_conv', 'ae_conv', conv=True, size_multiple=4, keys=('image', 'label'),
           torch_trainer='autoencoder:Trainer'),
    Family('ae_linear', 'ae_linear', conv=False, size_multiple=1, keys=('image', 'label'),
           torch_trainer='autoencoder:Trainer'),
    Family('pix2pix', 'pix2pix', conv=True, size_multiple=32, keys=('input', 'image'),
           torch_trainer='pix2pix:Trainer', base_size=32),
    Family('cyclegan', 'cyclegan', conv=True, size_multiple=4, keys=('input', 'image'),
           torch_trainer='cyclegan:Trainer', base_size=32,
           note='two generators and two critics; identity loss on; pools of 50'),
    Family('style_transfer', 'style_transfer', conv=True, size_multiple=16, keys=(),
           torch_trainer='style_transfer:Runner', base_size=64, kind='style',
           note='one step = one L-BFGS iteration on a 3-channel picture (batch 1)'),
)}


def torch_class(family: Family):
  module, name = family.torch_trainer.split(':')
  return getattr(importlib.import_module(f'experiments.torch_models.{module}'), name)
