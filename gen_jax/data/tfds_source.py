"""Any tensorflow-datasets image dataset, read through `tfds.data_source` (no TensorFlow needed).

Reading prepared data needs only tensorflow-datasets. Preparing a dataset (download and encode)
needs TensorFlow and a network connection: install the `tfds-prepare` extra for that.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
from PIL import Image

from gen_jax.data.dataset import DataError, Split, to_model_format

PREPARE_EXTRA = "pip install 'gen_jax[tfds-prepare]'"


@functools.cache
def dataset_names() -> frozenset[str]:
  import tensorflow_datasets as tfds
  return frozenset(tfds.list_builders(with_community_datasets=False))


def _open(name: str, split: str, data_dir: str | None):
  import tensorflow_datasets as tfds
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except (AssertionError, FileNotFoundError, NotImplementedError, KeyError) as not_prepared:
    # KeyError ('splits is empty'): a dataset folder with no prepared split.
    try:
      import tensorflow  # noqa: F401  (only to learn whether preparing is possible)
    except ImportError:
      raise DataError(
          f'tensorflow-datasets dataset {name!r} (split {split!r}) is not prepared in '
          f'{data_dir or "the default data_dir"} as array_record, and preparing it needs '
          f'TensorFlow: run `{PREPARE_EXTRA}` on a machine with network access, or point '
          f'config.data.path at a prepared data_dir. ({not_prepared})') from not_prepared
    return tfds.data_source(name, split=split, data_dir=data_dir, download=True)


def open_split(name: str, path: str, split: str):
  """The random-access source of split `split` of the prepared tensorflow-datasets dataset `name`
  (its data_dir `path`, or the default), checked to hold images."""
  source = _open(name, split, path or None)
  if len(source) == 0:
    raise DataError(f'tensorflow-datasets split {name}/{split} is empty')
  features = source.dataset_info.features
  if 'image' not in features:
    raise DataError(f'tensorflow-datasets dataset {name!r} has no "image" feature '
                    f'(features: {sorted(features)}); gen_jax reads image datasets')
  return source


def decoded(example) -> tuple[np.ndarray, int]:
  """One example's picture, uint8 (H, W[, C]), and its label (-1 when the dataset has none)."""
  return np.asarray(example['image']), int(example['label']) if 'label' in example else -1


def _read_split(source, limit: int, image_size: int, channels: int) -> Split:
  count = len(source) if not limit else min(limit, len(source))
  images, labels = zip(*(decoded(source[index]) for index in range(count)))
  if len({image.shape for image in images}) > 1:   # pictures of many sizes (cycle_gan's, say)
    images = [resized(image, image_size) for image in images]
  return to_model_format(np.stack(images), np.asarray(labels), image_size, channels)


def resized(image: np.ndarray, image_size: int) -> np.ndarray:
  """One uint8 (H, W[, C]) picture resized to image_size² (Pillow's bilinear filter)."""
  squeezed = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
  resized_image = Image.fromarray(squeezed).resize((image_size, image_size), Image.BILINEAR)
  return np.asarray(resized_image).reshape(image_size, image_size, -1)


def read_splits(name: str, path: str, image_size: int, channels: int,
                splits: Sequence[tuple[str, int]]) -> list[Split]:
  """The (split, limit) `splits` of the prepared tensorflow-datasets dataset `name` (its data_dir
  `path`, or the default), each read up to its limit of examples (0: all)."""
  sources = [open_split(name, path, split) for split, _ in splits]   # all found before any is read
  return [_read_split(source, limit, image_size, channels)
          for source, (_, limit) in zip(sources, splits)]


def load_tfds(name: str, path: str, image_size: int, channels: int, train_split: str,
              holdout_split: str, max_examples: int) -> tuple[Split, Split]:
  """The training and held-out splits of the tensorflow-datasets dataset `name`."""
  train, holdout = read_splits(name, path, image_size, channels,
                               [(train_split, max_examples), (holdout_split, 0)])
  return train, holdout
