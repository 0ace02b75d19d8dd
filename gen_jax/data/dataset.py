"""Image datasets: in-memory splits, resizing, and deterministic, resumable batching."""

from __future__ import annotations

import abc
import dataclasses
from typing import TYPE_CHECKING

import jax
import numpy as np

if TYPE_CHECKING:
  from gen_jax.data.streaming import StreamedSplit


class DataError(ValueError):
  """A data source cannot be read: a missing path, an empty folder, an unreadable file."""


def num_classes(labels: np.ndarray) -> int:
  """One more than the largest of `labels`; 0 when none is known (all -1, or none at all)."""
  return int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0


@dataclasses.dataclass(frozen=True)
class Split:
  """Images in [0, 1] as float32 (N, H, W, C) and int32 labels (N,), -1 where unknown.

  A paired split (image-to-image translation) also holds `inputs`, (N, H, W, C') in [0, 1]: the
  image each target in `images` is translated from. Everything that reads `images` as the real
  data (sample metrics, figures) then sees the targets. An unpaired split (gen_jax.data.unpaired)
  holds domain A in `inputs`, with its own labels in `input_labels`, and domain B in `images`.
  """

  images: np.ndarray
  labels: np.ndarray
  inputs: np.ndarray | None = None
  input_labels: np.ndarray | None = None

  def __post_init__(self):
    if self.images.ndim != 4:
      raise DataError(f'images must be (N, H, W, C), got shape {self.images.shape}')
    if self.labels.shape != (self.images.shape[0],):
      raise DataError(f'labels shape {self.labels.shape} does not match {self.images.shape[0]} images')
    if self.inputs is not None and self.inputs.shape[:3] != self.images.shape[:3]:
      raise DataError(f'inputs of shape {self.inputs.shape} do not pair with images of shape '
                      f'{self.images.shape}')
    if self.input_labels is not None and (self.inputs is None or
                                          self.input_labels.shape != self.labels.shape):
      raise DataError(f'input labels of shape {self.input_labels.shape} need inputs and one '
                      f'label each, like the {self.labels.shape[0]} images')

  def __len__(self) -> int:
    return self.images.shape[0]

  @property
  def has_labels(self) -> bool:
    return bool(len(self)) and bool(np.all(self.labels >= 0))

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])

  @property
  def input_shape(self) -> tuple[int, int, int] | None:
    """The shape of a translation's input image; None for unpaired data."""
    return None if self.inputs is None else tuple(self.inputs.shape[1:])

  @property
  def num_classes(self) -> int:
    return num_classes(self.labels)

  def select(self, indices) -> 'Split':
    """The examples at `indices` (an index array or a slice), inputs with their targets."""
    pick = lambda array: None if array is None else array[indices]
    return Split(self.images[indices], self.labels[indices], pick(self.inputs),
                 pick(self.input_labels))

  def take(self, count: int) -> 'Split':
    """The first `count` examples (all when count is 0)."""
    return self if not count else self.select(slice(0, count))

  def batch(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    batch = {'image': self.images[indices], 'label': self.labels[indices]}
    if self.inputs is not None:
      batch['input'] = self.inputs[indices]
    if self.input_labels is not None:
      batch['input_label'] = self.input_labels[indices]
    return batch


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A source's training and held-out splits. The training split is a `Split` in memory, or a
  `gen_jax.data.streaming.StreamedSplit` read as it is trained on (config.data.streaming); the
  held-out split is always in memory."""

  name: str
  train: Split | StreamedSplit
  holdout: Split

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return self.train.image_shape

  @property
  def input_shape(self) -> tuple[int, int, int] | None:
    """The shape of a translation's input image; None for unpaired data."""
    return self.train.input_shape

  @property
  def num_classes(self) -> int:
    return max(self.train.num_classes, self.holdout.num_classes)


def to_model_format(images: np.ndarray, labels: np.ndarray | None, image_size: int,
                    channels: int) -> Split:
  """Scales uint8 or [0, 1] images to float32 [0, 1], sets channels, resizes to a square size."""
  images = np.asarray(images)
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype == np.uint8:
    images = images.astype(np.float32) / 255.0
  images = images.astype(np.float32)
  if images.shape[-1] == 3 and channels == 1:
    images = images @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
  elif images.shape[-1] == 1 and channels == 3:
    images = np.repeat(images, 3, axis=-1)
  elif images.shape[-1] != channels:
    raise DataError(f'cannot turn images with {images.shape[-1]} channels into {channels}')
  if images.shape[1:3] != (image_size, image_size):
    images = np.asarray(jax.image.resize(
        images, (images.shape[0], image_size, image_size, channels), 'linear', antialias=True))
  images = np.clip(images, 0.0, 1.0)
  if labels is None:
    labels = np.full((images.shape[0],), -1, np.int32)
  return Split(images, np.asarray(labels, np.int32))


def holdout_cut(count: int, fraction: float) -> int:
  """How many of `count` examples train when the last `fraction` of them is held out."""
  num_holdout = int(round(count * fraction))
  if num_holdout < 1 or num_holdout >= count:
    raise DataError(f'holdout_fraction={fraction} leaves no train or no held-out example '
                    f'among {count}')
  return count - num_holdout


def split_holdout(split: Split, fraction: float) -> tuple[Split, Split]:
  """The first part trains, the last `fraction` is held out (MNIST test split: 8,000 / 2,000)."""
  cut = holdout_cut(len(split), fraction)
  return split.select(slice(0, cut)), split.select(slice(cut, None))


class EpochBatches(abc.ABC):
  """The batches of a training split, shuffled anew each epoch: a pure function of (seed, step).

  Because a batch depends only on the step number, a run resumed from a checkpoint sees exactly
  the batches an uninterrupted run would have seen. Each epoch trains on the first
  `steps_per_epoch` full batches of its order.
  """

  def __init__(self, num_examples: int, batch_size: int, seed: int):
    if batch_size > num_examples:
      raise DataError(f'batch_size={batch_size} is larger than the {num_examples} training examples')
    self.batch_size = batch_size
    self.seed = seed
    self.steps_per_epoch = num_examples // batch_size

  def epoch_of(self, step: int) -> int:
    return step // self.steps_per_epoch

  def __call__(self, step: int) -> dict[str, np.ndarray]:
    return self.part(step, 0, 1)

  @abc.abstractmethod
  def part(self, step: int, index: int, count: int) -> dict[str, np.ndarray]:
    """Part `index` of `count` equal parts of the batch of `step`: what one process of a
    multi-host run reads (the parts of all of them make up the same global batch)."""


class BatchSchedule(EpochBatches):
  """The batches of an in-memory split, gathered from it in an order drawn by NumPy."""

  def __init__(self, split: Split, batch_size: int, seed: int):
    super().__init__(len(split), batch_size, seed)
    self.split = split
    self._epoch = -1
    self._order = np.arange(len(split))

  def _order_for(self, epoch: int) -> np.ndarray:
    if epoch != self._epoch:
      self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
      self._epoch = epoch
    return self._order

  def part(self, step: int, index: int, count: int) -> dict[str, np.ndarray]:
    epoch, position = divmod(step, self.steps_per_epoch)
    size = self.batch_size // count
    start = position * self.batch_size + index * size
    return self.split.batch(self._order_for(epoch)[start:start + size])


def fixed_batches(split: Split, batch_size: int):
  """Yields (batch, number of real examples) in order, padding the last batch to full size."""
  for start in range(0, len(split), batch_size):
    indices = np.arange(start, min(start + batch_size, len(split)))
    real = len(indices)
    yield split.batch(np.pad(indices, (0, batch_size - real), mode='edge')), real
