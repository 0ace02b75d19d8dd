"""Unpaired images of two domains, A and B, for unpaired translation (CycleGAN).

A `Split` holds domain A in `inputs` (labels in `input_labels`) and domain B in `images`
(`labels`). Row i's A and B images have nothing to do with each other: they only share a row so
that the batching of every other model (`BatchSchedule`: a pure function of seed and step) serves
both domains at once. Three kinds of domain pairs (`data.unpaired.task`):

- `sources`: two image sources of the project, A from data.name / data.path and B from
  data.unpaired.b_name / b_path: by default MNIST (the IDX files) ↔ scikit-learn's 8×8 digits,
  two real handwriting domains at different resolutions, both with digit labels;
- `strokes`: one labelled source's digits split in two disjoint halves, thinned (grey erosion,
  THIN_FOOTPRINT²) in A and thickened (grey dilation, THICK_FOOTPRINT²) in B: a translation whose
  right answer is known, with the digit's label on both sides;
- `domains`: the four parts CycleGAN's datasets ship as, `trainA`, `trainB`, `testA`, `testB`:
  sub-folders of data.path (data.name 'folder'), or splits of a tensorflow-datasets dataset
  (`cycle_gan/horse2zebra`, …). Their pictures carry no class labels.

The domains may hold different numbers of images. An epoch is one pass over the larger domain's
training images: the smaller domain is repeated to its length, each repetition in a new fixed
shuffled order (a function of data.unpaired.seed), so that every one of its images is seen
equally often, ⌊N/n⌋ or ⌈N/n⌉ times an epoch. The held-out split keeps each domain's first
min(n_A, n_B) held-out images, no image counted twice.
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable

import numpy as np
from scipy import ndimage

from gen_jax.data.dataset import DataError, Split, to_model_format
from gen_jax.runtime import config_checks

TASKS = ('sources', 'strokes', 'domains')
DOMAIN_PARTS = ('trainA', 'trainB', 'testA', 'testB')
THIN_FOOTPRINT = 2
THICK_FOOTPRINT = 3

# (name, path) → (train, holdout) of a plain source, with the data block's other fields.
SourceLoader = Callable[[str, str], tuple[Split, Split]]


def validate(config, check_source: Callable[[str, str], None]) -> None:
  """Checks config.data.unpaired; `check_source(name, field)` refuses a name that is no source."""
  if 'pairs' in config.data:
    raise config_checks.ConfigError('config.data has both a pairs and an unpaired block; keep the '
                                    'one the model reads (unpaired for cyclegan, pairs for pix2pix)')
  task = config_checks.require_choice(config, 'data.unpaired.task', TASKS)
  config_checks.require_int(config, 'data.unpaired.seed', minimum=0, maximum=2**32 - 1)
  b_name = config_checks.require_str(config, 'data.unpaired.b_name')
  config_checks.require_str(config, 'data.unpaired.b_path')
  if task == 'sources':
    check_source(b_name, 'data.unpaired.b_name')
  name = config_checks.get_field(config, 'data.name')
  if task == 'strokes' and name == 'folder':
    raise config_checks.ConfigError(
        "config.data.unpaired.task='strokes' thins and thickens digits of a labelled source; "
        "config.data.name='folder' is read as two domains with task='domains'")


def _domain_folders(path: str, image_size: int, channels: int) -> list[Split]:
  """trainA, trainB, testA, testB under `path`, unlabelled."""
  from gen_jax.data.sources import read_images
  root = pathlib.Path(os.path.expanduser(path)) if path else None
  if root is None or not root.is_dir():
    raise DataError(f"config.data.path={path!r} must be a directory holding {', '.join(DOMAIN_PARTS)} "
                    f"(task 'domains' with data.name 'folder')")
  missing = [part for part in DOMAIN_PARTS if not (root / part).is_dir()]
  if missing:
    raise DataError(f'{root} has no sub-folder {", ".join(missing)}; unpaired domains are read from '
                    f'{", ".join(DOMAIN_PARTS)}')
  return [to_model_format(read_images(str(root / part), image_size, channels)[0], None, image_size,
                          channels) for part in DOMAIN_PARTS]


def _unlabelled(split: Split) -> Split:
  """tfds' cycle_gan splits label each picture with its domain, which is no class."""
  return Split(split.images, np.full_like(split.labels, -1))


def strokes(images: np.ndarray, thick: bool) -> np.ndarray:
  """Each image's bright strokes thickened (grey dilation) or thinned (grey erosion) by a square."""
  if thick:
    return ndimage.grey_dilation(images, size=(1, THICK_FOOTPRINT, THICK_FOOTPRINT, 1))
  return ndimage.grey_erosion(images, size=(1, THIN_FOOTPRINT, THIN_FOOTPRINT, 1))


def _halves(split: Split) -> tuple[Split, Split]:
  """Thinned first half, thickened second half: no digit is in both domains."""
  middle = len(split) // 2
  first, second = split.select(slice(0, middle)), split.select(slice(middle, None))
  return (Split(strokes(first.images, thick=False), first.labels),
          Split(strokes(second.images, thick=True), second.labels))


def _repeated(count: int, length: int, seed: int) -> np.ndarray:
  """`length` indices of `count` images: shuffled passes over them, each its own fixed order."""
  passes = -(-length // count)
  return np.concatenate([np.random.default_rng([seed, k]).permutation(count)
                         for k in range(passes)])[:length]


def combine(a: Split, b: Split, seed: int) -> Split:
  """The two domains' training images in one split of the larger one's length (see the module's
  docstring for the smaller one's repetition)."""
  length = max(len(a), len(b))
  a, b = (side if len(side) == length else side.select(_repeated(len(side), length, seed))
          for side in (a, b))
  return Split(b.images, b.labels, a.images, a.labels)


def held_out(a: Split, b: Split) -> Split:
  """Each domain's first min(n_A, n_B) held-out images."""
  count = min(len(a), len(b))
  return Split(b.images[:count], b.labels[:count], a.images[:count], a.labels[:count])


def load(unpaired, name: str, path: str, image_size: int, channels: int,
         load_source: SourceLoader, read_tfds_splits) -> tuple[Split, Split]:
  """The training and held-out splits of the two domains that `unpaired` (config.data.unpaired)
  describes; `load_source` reads a plain source, `read_tfds_splits(name, path, splits)` a
  tensorflow-datasets dataset's named splits."""
  if unpaired.task == 'sources':
    (train_a, holdout_a), (train_b, holdout_b) = (load_source(name, path),
                                                  load_source(unpaired.b_name, unpaired.b_path))
  elif unpaired.task == 'strokes':
    train, holdout = load_source(name, path)
    if not (train.has_labels and holdout.has_labels):
      raise DataError(f"task 'strokes' keeps each digit's label on both sides; data {name!r} has none")
    (train_a, train_b), (holdout_a, holdout_b) = _halves(train), _halves(holdout)
  elif name == 'folder':
    train_a, train_b, holdout_a, holdout_b = _domain_folders(path, image_size, channels)
  else:
    train_a, train_b, holdout_a, holdout_b = (
        _unlabelled(split) for split in read_tfds_splits(name, path, [(p, 0) for p in DOMAIN_PARTS]))
  return combine(train_a, train_b, unpaired.seed), held_out(holdout_a, holdout_b)
