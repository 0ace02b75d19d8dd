"""Paired images for image-to-image translation: a `Split` whose `inputs` are translated into its
`images`.

Two kinds of pairs:
- derived from any labelled image source (scikit-learn's digits, MNIST's IDX files, tfds
  `mnist`), no download: `edges` (an edge map of the real digit → the digit), `masked` (the digit
  with a hidden block → the whole digit) and `low_resolution` (the digit reduced by a factor and
  enlarged back, blocky → the sharp digit). A pair is a pure function of (seed, example), so a
  resumed run and every evaluation see the same pairs;
- a folder of side-by-side A|B images (`side_by_side`), the format facades, maps and edges2shoes
  ship in, optionally with `train/` and `val/` (or `test/`) sub-folders as they have.

`direction` 'AtoB' translates the left (or derived) image into the right (or real) one; 'BtoA'
the other way. The paper's training augmentation, `jitter_and_mirror`, runs inside the training
step on input and target together, so that both get the same crop and flip.
"""

from __future__ import annotations

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from gen_jax.data.dataset import DataError, Split, split_holdout, to_model_format
from gen_jax.runtime import config_checks

DERIVED_TASKS = ('edges', 'masked', 'low_resolution')
TASKS = DERIVED_TASKS + ('side_by_side',)
DIRECTIONS = ('AtoB', 'BtoA')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp')
HOLDOUT_FOLDERS = ('val', 'test')
MASK_FILL = 0.5   # grey: a value the digits' black background and white strokes rarely take
EDGE_THRESHOLD = 0.3  # of an image's largest gradient magnitude


def validate(config) -> None:
  """Checks config.data.pairs (the data source itself is checked by gen_jax.data.validate)."""
  task = config_checks.require_choice(config, 'data.pairs.task', TASKS)
  config_checks.require_choice(config, 'data.pairs.direction', DIRECTIONS)
  config_checks.require_int(config, 'data.pairs.seed', minimum=0, maximum=2**32 - 1)
  size = config_checks.get_field(config, 'data.image_size')
  config_checks.require_int(config, 'data.pairs.mask_size', minimum=1, maximum=size)
  factor = config_checks.require_int(config, 'data.pairs.low_resolution_factor', minimum=2, maximum=size)
  if task == 'low_resolution' and size % factor:
    raise config_checks.ConfigError(
        f'config.data.pairs.low_resolution_factor={factor} does not divide '
        f'config.data.image_size={size}: choose a divisor of it')
  jitter = config_checks.require_int(config, 'data.pairs.jitter_size', minimum=0, maximum=4096)
  if jitter and jitter < size:
    raise config_checks.ConfigError(
        f'config.data.pairs.jitter_size={jitter} is smaller than config.data.image_size={size}: '
        f'images are enlarged to it and cropped back, so use 0 (no jitter) or at least {size}')
  config_checks.require_bool(config, 'data.pairs.mirror')
  name = config_checks.get_field(config, 'data.name')
  if (task == 'side_by_side') != (name == 'folder'):
    raise config_checks.ConfigError(
        f"config.data.pairs.task={task!r} with config.data.name={name!r}: side-by-side pairs are "
        f"read from a folder (data.name='folder'), and a folder's images are only read as pairs")


def edge_map(images: np.ndarray) -> np.ndarray:
  """Where each image's brightness changes most: 1 where the Sobel gradient magnitude exceeds
  EDGE_THRESHOLD of the image's largest, 0 elsewhere (the outline of a digit's strokes)."""
  grey = images.mean(axis=-1)
  # 2-D kernels (1 × 3 × 3), so that no smoothing runs across the examples of the batch.
  derivative = np.array([-1.0, 0.0, 1.0])
  smoothing = np.array([1.0, 2.0, 1.0])
  gradient_rows = ndimage.correlate(grey, np.outer(derivative, smoothing)[None], mode='nearest')
  gradient_cols = ndimage.correlate(grey, np.outer(smoothing, derivative)[None], mode='nearest')
  magnitude = np.hypot(gradient_rows, gradient_cols)
  peak = magnitude.max(axis=(1, 2), keepdims=True)
  edges = (magnitude > EDGE_THRESHOLD * np.maximum(peak, 1e-6)).astype(np.float32)
  return np.repeat(edges[..., None], images.shape[-1], axis=-1)


def mask_block(images: np.ndarray, mask_size: int, seed: int, first_index: int = 0) -> np.ndarray:
  """Each image with a mask_size² block set to MASK_FILL; example i's block lies where the
  generator seeded with (seed, first_index + i) puts it."""
  height, width = images.shape[1:3]
  masked = images.copy()
  for offset, image in enumerate(masked):
    rows, cols = np.random.default_rng([seed, first_index + offset]).integers(
        0, [height - mask_size + 1, width - mask_size + 1])
    image[rows:rows + mask_size, cols:cols + mask_size] = MASK_FILL
  return masked


def reduce_resolution(images: np.ndarray, factor: int) -> np.ndarray:
  """Each factor × factor block averaged, then enlarged back (nearest): the same size, blocky."""
  n, height, width, channels = images.shape
  blocks = images.reshape(n, height // factor, factor, width // factor, factor, channels)
  return np.repeat(np.repeat(blocks.mean(axis=(2, 4)), factor, axis=1), factor, axis=2)


def derive(split: Split, task: str, seed: int, mask_size: int, low_resolution_factor: int,
           first_index: int = 0) -> Split:
  """`split`'s images as targets, with inputs made from them by `task`; `first_index` numbers the
  split's first example among the source's (the held-out part follows the training part)."""
  if task == 'edges':
    inputs = edge_map(split.images)
  elif task == 'masked':
    inputs = mask_block(split.images, mask_size, seed, first_index)
  elif task == 'low_resolution':
    inputs = reduce_resolution(split.images, low_resolution_factor)
  else:
    raise ValueError(f'task {task!r} is not derived from single images; choose one of {DERIVED_TASKS}')
  return Split(split.images, split.labels, inputs.astype(np.float32))


def reverse(split: Split) -> Split:
  """The same pairs translated the other way (direction 'BtoA')."""
  return Split(split.inputs, split.labels, split.images)


def _read_side_by_side(files: list[pathlib.Path], image_size: int, channels: int) -> Split:
  """Left halves as inputs (A), right halves as targets (B)."""
  lefts, rights, first_size = [], [], None
  for file in files:
    try:
      with Image.open(file) as image:
        image = image.convert('L' if channels == 1 else 'RGB')
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as error:
      raise DataError(f'cannot read image file {file}: {error}') from error
    width, height = image.size
    if width != 2 * height:
      raise DataError(f'{file} is {width}×{height} pixels: a side-by-side pair is twice as wide '
                      f'as it is high (A on the left, B on the right)')
    if first_size is None:
      first_size = (image.size, files[0])
    elif image.size != first_size[0]:
      raise DataError(f'{file} is {width}×{height} pixels, {first_size[1]} is '
                      f'{first_size[0][0]}×{first_size[0][1]}: every pair of a folder has one size')
    halves = [image.crop(box).resize((image_size, image_size), Image.BICUBIC)
              for box in ((0, 0, height, height), (height, 0, width, height))]
    lefts.append(np.asarray(halves[0], np.uint8))
    rights.append(np.asarray(halves[1], np.uint8))
  targets = to_model_format(np.stack(rights), None, image_size, channels)
  inputs = to_model_format(np.stack(lefts), None, image_size, channels)
  return Split(targets.images, targets.labels, inputs.images)


def _image_files(directory: pathlib.Path) -> list[pathlib.Path]:
  files = sorted(p for p in directory.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
  if not files:
    raise DataError(f'no image files ({", ".join(IMAGE_SUFFIXES)}) under {directory}')
  return files


def load_side_by_side(path: str, image_size: int, channels: int,
                      holdout_fraction: float) -> tuple[Split, Split]:
  """The A|B images under `path`: `train/` and `val/` (or `test/`) when it has them, else all of
  them with the last holdout_fraction (in a fixed shuffled order) held out."""
  if not path:
    raise DataError("config.data.path must name the folder of side-by-side pairs (data.name='folder')")
  directory = pathlib.Path(os.path.expanduser(path))
  if not directory.is_dir():
    raise DataError(f'config.data.path={path!r} is not an existing directory')
  holdout_dir = next((directory / name for name in HOLDOUT_FOLDERS if (directory / name).is_dir()), None)
  if (directory / 'train').is_dir() and holdout_dir is not None:
    return (_read_side_by_side(_image_files(directory / 'train'), image_size, channels),
            _read_side_by_side(_image_files(holdout_dir), image_size, channels))
  pairs = _read_side_by_side(_image_files(directory), image_size, channels)
  return split_holdout(pairs.select(np.random.default_rng(0).permutation(len(pairs))), holdout_fraction)


def make_pairs(train: Split, holdout: Split, task: str, direction: str, seed: int, mask_size: int,
               low_resolution_factor: int) -> tuple[Split, Split]:
  """Training and held-out pairs from a source's splits (already paired for side_by_side)."""
  if task in DERIVED_TASKS:
    train, holdout = (derive(split, task, seed, mask_size, low_resolution_factor, first)
                      for split, first in ((train, 0), (holdout, len(train))))
  if direction == 'BtoA':
    train, holdout = reverse(train), reverse(holdout)
  return train, holdout


def jitter_and_mirror(rng: jax.Array, images: jax.Array, jitter_size: int, mirror: bool) -> jax.Array:
  """The paper's augmentation, each example its own: enlarged to jitter_size² and cropped back at
  a random place (when jitter_size > 0), then flipped left-right with probability 0.5 (when
  mirror). Input and target stacked on channels get the same crop and flip."""
  n, height, width, channels = images.shape
  crop_rng, flip_rng = jax.random.split(rng)
  if jitter_size:
    enlarged = jax.image.resize(images, (n, jitter_size, jitter_size, channels), 'bilinear')
    corners = jax.random.randint(crop_rng, (n, 2), 0, jnp.array([jitter_size - height + 1,
                                                                 jitter_size - width + 1]))
    images = jax.vmap(lambda image, corner: jax.lax.dynamic_slice(
        image, (corner[0], corner[1], 0), (height, width, channels)))(enlarged, corners)
  if mirror:
    flip = jax.random.bernoulli(flip_rng, 0.5, (n, 1, 1, 1))
    images = jnp.where(flip, images[:, :, ::-1], images)
  return images
