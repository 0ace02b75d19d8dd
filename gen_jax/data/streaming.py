"""Training data streamed through Grain, for sets too large for memory (config.data.streaming).

The training split stays where it is, a folder of image files or a prepared tensorflow-datasets
split (ArrayRecord files), and is read batch by batch as it is trained on: a `StreamedSplit` holds
only the count of its examples and how to read some of them. `StreamedBatches` deals it out on the
schedule `BatchSchedule` deals an in-memory split (a new order every epoch, the last partial batch
of an epoch left out), shuffled by Grain from the seed, so that the batch of a step is a pure
function of (seed, step). The step is the iterator's state: nothing about the reading is stored in
a checkpoint, and a resumed run reads exactly the batches an uninterrupted one would have. In a
multi-host run each process reads only the records of its own part of every batch.

The held-out split is read into memory as without streaming, so evaluation does not change."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import grain
import numpy as np

from gen_jax.data import sources, tfds_source
from gen_jax.data.dataset import EpochBatches, Split, holdout_cut, num_classes, to_model_format

# Batches read ahead of the one asked for, each by its own thread: a file system's latency, and
# the decoding that leaves Python's lock (Pillow's, ArrayRecord's), overlap the training.
READ_AHEAD = 4


@dataclasses.dataclass(frozen=True)
class StreamedSplit:
  """A training split of `size` examples, read a batch at a time and never whole.

  `read(indices)` returns the pictures at `indices`, uint8 (H, W, C) of one shape (image_size²
  unless `to_model_format` is to resize them), and their labels, -1 where unknown.
  """

  size: int
  read: Callable[[Sequence[int]], tuple[Sequence[np.ndarray], Sequence[int]]]
  image_size: int
  channels: int
  num_classes: int

  def __len__(self) -> int:
    return self.size

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return (self.image_size, self.image_size, self.channels)

  @property
  def input_shape(self) -> None:
    """Streamed data is never paired: it has no input images."""
    return None

  def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
    """The examples at `indices`, read, in the model's format (float32 images in [0, 1])."""
    images, labels = self.read(indices)
    split = to_model_format(np.stack(images), np.asarray(labels), self.image_size, self.channels)
    return {'image': split.images, 'label': split.labels}


class StreamedBatches(EpochBatches):
  """The batches of a `StreamedSplit`, read as they are asked for, in an order drawn by Grain.

  Grain's index shuffle orders each epoch from the seed and the epoch's number, so the records of
  any step are found without reading any other: the step is the iterator's state, nothing needs
  checkpointing, and a run resumed from a checkpoint reads exactly the batches an uninterrupted
  run would have. Asked for the steps in turn (as the training loop asks), it reads `read_ahead`
  batches ahead, on as many threads; asked for another step, it starts reading there.
  """

  def __init__(self, split: StreamedSplit, batch_size: int, seed: int,
               read_ahead: int = READ_AHEAD):
    super().__init__(len(split), batch_size, seed)
    self.split = split
    # Element e * steps_per_epoch * batch_size + i is the index of the i-th example of epoch e's
    # order (Grain folds the epoch into the shuffle's seed).
    order = grain.MapDataset.range(len(split)).seed(seed).shuffle()
    self._epochs = order[:self.steps_per_epoch * batch_size]
    self._read_options = grain.ReadOptions(num_threads=read_ahead, prefetch_buffer_size=read_ahead)
    self._reader = None
    self._next = None   # the (step, index, count) the reader holds next

  def parts(self, index: int, count: int) -> grain.MapDataset:
    """Part `index` of `count` equal parts of every batch: element `step` of the dataset is that
    part of the batch of `step` (any step; the batches of epoch e follow those of epoch e - 1)."""
    pieces = self._epochs.batch(self.batch_size // count, batch_fn=self.split.batch)
    return pieces[index::count].repeat()

  def part(self, step: int, index: int, count: int) -> dict[str, np.ndarray]:
    if self._next != (step, index, count):
      self._reader = iter(self.parts(index, count)[step:].to_iter_dataset(self._read_options))
    self._next = (step + 1, index, count)
    return next(self._reader)


def open_folder(path: str, image_size: int, channels: int, holdout_fraction: float,
                max_examples: int) -> tuple[StreamedSplit, Split]:
  """The image files under `path`, split as `sources.load_folder` splits them: the training ones
  (the first `max_examples`, when set) to stream, the held-out ones read into memory."""
  files, labels = sources.list_folder(path)
  labels = np.full(len(files), -1) if labels is None else np.asarray(labels)
  order = sources.folder_order(len(files))
  cut = holdout_cut(len(files), holdout_fraction)
  train, held_out = order[:cut][:max_examples or None], order[cut:]
  train_files, train_labels = [files[i] for i in train], labels[train]

  def read(indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    return (sources.read_image_files([train_files[i] for i in indices], image_size, channels),
            train_labels[np.asarray(indices)])

  holdout = to_model_format(
      sources.read_image_files([files[i] for i in held_out], image_size, channels),
      labels[held_out], image_size, channels)
  return StreamedSplit(len(train), read, image_size, channels, num_classes(train_labels)), holdout


def open_tfds(name: str, path: str, image_size: int, channels: int, train_split: str,
              holdout_split: str, max_examples: int) -> tuple[StreamedSplit, Split]:
  """The tensorflow-datasets dataset `name`: its training split (the first `max_examples`, when
  set) to stream from its ArrayRecord files, its held-out split read into memory."""
  source = tfds_source.open_split(name, path, train_split)
  [holdout] = tfds_source.read_splits(name, path, image_size, channels, [(holdout_split, 0)])
  features = source.dataset_info.features
  # Pictures of many sizes (cycle_gan's, say) are resized one by one, as when read into memory.
  one_size = None not in features['image'].shape

  def read(indices: Sequence[int]) -> tuple[list[np.ndarray], list[int]]:
    images, labels = zip(*(tfds_source.decoded(source[index]) for index in indices))
    if not one_size:
      images = [tfds_source.resized(image, image_size) for image in images]
    return images, labels

  count = min(max_examples or len(source), len(source))
  # A ClassLabel feature names its classes; any other label's count comes from the held-out split.
  classes = getattr(features['label'], 'num_classes', 0) if 'label' in features else 0
  return StreamedSplit(count, read, image_size, channels, classes), holdout


def open_source(name: str, path: str, image_size: int, channels: int, holdout_fraction: float,
                train_split: str, holdout_split: str,
                max_examples: int) -> tuple[StreamedSplit, Split]:
  """The training split of source `name` (`folder` or a tensorflow-datasets name) to stream, and
  its held-out split in memory."""
  if name == 'folder':
    return open_folder(path, image_size, channels, holdout_fraction, max_examples)
  return open_tfds(name, path, image_size, channels, train_split, holdout_split, max_examples)
