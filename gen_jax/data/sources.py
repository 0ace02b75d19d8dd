"""The data sources behind `gen_jax.data.load`: each returns (train, holdout) Splits."""

from __future__ import annotations

import gzip
import os
import pathlib
import struct
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from gen_jax.data.dataset import DataError, Split, split_holdout, to_model_format

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.gif', '.webp')


def load_digits(path: str, image_size: int, channels: int, holdout_fraction: float) -> tuple[Split, Split]:
  """scikit-learn's 1,797 handwritten digits (8×8, ships with the package, so `path` is unused)."""
  del path
  from sklearn.datasets import load_digits as sklearn_digits
  digits = sklearn_digits()
  images = (digits.images / 16.0).astype(np.float32)
  split = to_model_format(images, digits.target, image_size, channels)
  return split_holdout(split, holdout_fraction)


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Reads an IDX file (the original MNIST format), gzipped or not."""
  opener = gzip.open if path.suffix == '.gz' else open
  try:
    with opener(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise DataError(f'cannot read IDX file {path}: {e}') from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
    raise DataError(f'{path} is not an unsigned-byte IDX file (bad magic number)')
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise DataError(f'{path} is truncated: its header names {ndim} dimensions but the file ends '
                    f'after {len(raw)} bytes')
  shape = struct.unpack(f'>{ndim}I', raw[4:4 + 4 * ndim])
  data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
  if data.size != int(np.prod(shape)):
    raise DataError(f'{path} holds {data.size} bytes of data, its header says {shape}')
  return data.reshape(shape)


def _find_one(directory: pathlib.Path, pattern: str) -> pathlib.Path | None:
  matches = sorted(directory.glob(pattern))
  if len(matches) > 1:
    raise DataError(f'{directory} holds several files matching {pattern!r}: {[m.name for m in matches]}')
  return matches[0] if matches else None


def load_idx(path: str, image_size: int, channels: int, holdout_fraction: float) -> tuple[Split, Split]:
  """`*images-idx3-ubyte[.gz]` (and optionally `*labels-idx1-ubyte[.gz]`) in `path`."""
  directory = _existing_dir(path, 'idx')
  images_path = _find_one(directory, '*images*idx3-ubyte*')
  if images_path is None:
    raise DataError(f'no IDX image file (*images*idx3-ubyte[.gz]) in {directory}')
  images = read_idx(images_path)
  labels_path = _find_one(directory, '*labels*idx1-ubyte*')
  labels = read_idx(labels_path) if labels_path else None
  if labels is not None and labels.shape[0] != images.shape[0]:
    raise DataError(f'{labels_path} has {labels.shape[0]} labels for {images.shape[0]} images')
  split = to_model_format(images, labels, image_size, channels)
  return split_holdout(split, holdout_fraction)


def list_folder(path: str) -> tuple[list[pathlib.Path], list[int] | None]:
  """Every image file under `path`, sorted by path, and their labels: the index of each file's
  sub-folder among the sorted sub-folder names when every file lies in one, else None."""
  directory = _existing_dir(path, 'folder')
  files = sorted(p for p in directory.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
  if not files:
    raise DataError(f'no image files ({", ".join(IMAGE_SUFFIXES)}) under {directory}')
  folders = [p.parent.relative_to(directory).as_posix() for p in files]
  classes = {name: index for index, name in enumerate(sorted(set(folders)))}
  return files, None if '.' in classes else [classes[folder] for folder in folders]


def read_image_file(file: pathlib.Path, image_size: int, channels: int) -> np.ndarray:
  """One image file as uint8 (image_size, image_size, channels), resized by Pillow (bilinear)."""
  try:
    with Image.open(file) as image:
      image = image.convert('L' if channels == 1 else 'RGB')
      image = image.resize((image_size, image_size), Image.BILINEAR)
      return np.asarray(image, np.uint8).reshape(image_size, image_size, channels)
  except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
    raise DataError(f'cannot read image file {file}: {e}') from e


def read_image_files(files: Sequence[pathlib.Path], image_size: int, channels: int) -> np.ndarray:
  """The image `files` as uint8 (N, image_size, image_size, channels)."""
  return np.stack([read_image_file(file, image_size, channels) for file in files])


def read_images(path: str, image_size: int, channels: int) -> tuple[np.ndarray, list[pathlib.Path]]:
  """Every image file under `path` (sorted by path) as uint8 (N, image_size, image_size, channels),
  and the files."""
  files, _ = list_folder(path)
  return read_image_files(files, image_size, channels), files


def folder_order(count: int) -> np.ndarray:
  """The order a folder's `count` files are split in: files are sorted by folder, so they are
  shuffled once (fixed seed) before the last part is held out."""
  return np.random.default_rng(0).permutation(count)


def load_folder(path: str, image_size: int, channels: int, holdout_fraction: float) -> tuple[Split, Split]:
  """Image files under `path`; sub-folder names become class labels when every file has one."""
  files, labels = list_folder(path)
  split = to_model_format(read_image_files(files, image_size, channels), labels, image_size, channels)
  return split_holdout(split.select(folder_order(len(split))), holdout_fraction)


def _existing_dir(path: str, source: str) -> pathlib.Path:
  if not path:
    raise DataError(f'config.data.path must name a directory for data source {source!r}')
  directory = pathlib.Path(os.path.expanduser(path))
  if not directory.is_dir():
    raise DataError(f'config.data.path={path!r} is not an existing directory')
  return directory
