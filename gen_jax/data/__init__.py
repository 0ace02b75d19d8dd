"""Image data for every gen_jax model: one interface over several sources.

`load(**config.data)` returns a `Dataset` whose splits hold images in [0, 1], (N, H, W, C), with
labels where the source has them. Sources: `digits` (scikit-learn, no download), `idx` (MNIST's
original files in a directory), `folder` (PNG/JPEG files, class sub-folders optional) and any
tensorflow-datasets image dataset by name (e.g. `mnist`). A `data.pairs` block makes the splits
paired, for image-to-image translation (gen_jax.data.pairs); a `data.unpaired` block reads two
domains, for unpaired translation (gen_jax.data.unpaired). With `data.streaming` the training split
of a folder or a tensorflow-datasets dataset is not read into memory but streamed through Grain
(gen_jax.data.streaming); `training_batches` gives the batches of either kind of split.
"""

from __future__ import annotations

from gen_jax.runtime import config_checks
from gen_jax.data import (pairs as paired, sources, streaming as streamed, tfds_source,
                          unpaired as two_domains)
from gen_jax.data.dataset import (BatchSchedule, DataError, Dataset, EpochBatches, Split,
                                  fixed_batches, to_model_format)
from gen_jax.data.sources import read_images
from gen_jax.data.streaming import StreamedBatches, StreamedSplit

__all__ = ['BatchSchedule', 'DataError', 'Dataset', 'EpochBatches', 'Split', 'StreamedBatches',
           'StreamedSplit', 'fixed_batches', 'load', 'read_images', 'to_model_format',
           'training_batches', 'validate']

_LOCAL_SOURCES = {
    'digits': sources.load_digits,
    'idx': sources.load_idx,
    'folder': sources.load_folder,
}


def _check_source(name: str, field: str) -> None:
  """A local source's name, or a tensorflow-datasets one (with a `/config` when it has configs)."""
  if name not in _LOCAL_SOURCES and name.split('/')[0] not in tfds_source.dataset_names():
    raise config_checks.ConfigError(
        f'config.{field}={name!r} is not a data source; choose one of '
        f'{sorted(_LOCAL_SOURCES)} or a tensorflow-datasets image dataset name (e.g. "mnist")')


def validate(config) -> None:
  """Checks config.data before anything is read."""
  _check_source(config_checks.get_field(config, 'data.name'), 'data.name')
  config_checks.require_int(config, 'data.image_size', minimum=4, maximum=512)
  config_checks.require_choice(config, 'data.channels', (1, 3))
  config_checks.require_number(config, 'data.holdout_fraction', low=0, high=1,
                               low_inclusive=False, high_inclusive=False)
  config_checks.require_int(config, 'data.max_examples', minimum=0)
  for field in ('data.path', 'data.train_split', 'data.holdout_split'):
    config_checks.require_str(config, field)
  if 'pairs' in config.data:
    paired.validate(config)
  if 'unpaired' in config.data:
    two_domains.validate(config, _check_source)
  # A config made before the field existed (or the digit classifier's recipe) reads into memory.
  if 'streaming' in config.data and config_checks.require_bool(config, 'data.streaming'):
    _check_streamable(config.data)


def _check_streamable(data_config) -> None:
  """Streaming reads the training split record by record from where it is stored: from a folder's
  files or a tensorflow-datasets dataset's, as a single set of pictures."""
  if data_config.name in _LOCAL_SOURCES and data_config.name != 'folder':
    raise config_checks.ConfigError(
        f'config.data.streaming=True cannot stream config.data.name={data_config.name!r}, which is '
        f"read whole; stream 'folder' or a tensorflow-datasets dataset, or set "
        f'data.streaming=False')
  for block in ('pairs', 'unpaired'):
    if block in data_config:
      raise config_checks.ConfigError(
          f'config.data.streaming=True cannot stream the config.data.{block} block (its examples '
          f'are built in memory); remove the block or set data.streaming=False')


def load(name: str, path: str, image_size: int, channels: int, holdout_fraction: float,
         train_split: str, holdout_split: str, max_examples: int, pairs=None,
         unpaired=None, streaming: bool = False) -> Dataset:
  """Loads the source `name` (a config's data block: `data.load(**config.data)`), paired as
  `pairs` says, or as two domains as `unpaired` says, when given; the training split is cut to
  max_examples when set. With `streaming` (a folder or a tensorflow-datasets dataset, as
  `validate` checks) the training split is opened to be streamed, not read."""
  if streaming:
    return Dataset(name, *streamed.open_source(name, path, image_size, channels, holdout_fraction,
                                               train_split, holdout_split, max_examples))

  def load_source(source: str, source_path: str) -> tuple[Split, Split]:
    if source in _LOCAL_SOURCES:
      return _LOCAL_SOURCES[source](source_path, image_size, channels, holdout_fraction)
    return tfds_source.load_tfds(source, source_path, image_size, channels, train_split,
                                 holdout_split, max_examples)

  if unpaired is not None:
    train, holdout = two_domains.load(
        unpaired, name, path, image_size, channels, load_source,
        lambda source, source_path, splits: tfds_source.read_splits(source, source_path, image_size,
                                                                    channels, splits))
  elif pairs is not None and pairs.task == 'side_by_side':
    train, holdout = paired.load_side_by_side(path, image_size, channels, holdout_fraction)
  else:
    train, holdout = load_source(name, path)
  if pairs is not None:
    train, holdout = paired.make_pairs(train, holdout, pairs.task, pairs.direction, pairs.seed,
                                       pairs.mask_size, pairs.low_resolution_factor)
  return Dataset(name=name, train=train.take(max_examples), holdout=holdout)


def training_batches(dataset: Dataset, batch_size: int, seed: int) -> EpochBatches:
  """The batches of `dataset`'s training split, a pure function of (seed, step): streamed when the
  split is, else gathered from memory."""
  if isinstance(dataset.train, StreamedSplit):
    return StreamedBatches(dataset.train, batch_size, seed)
  return BatchSchedule(dataset.train, batch_size, seed)
