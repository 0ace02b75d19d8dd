"""Data sources behind one interface, deterministic batching, and clear errors for bad paths."""

import gzip
import pathlib
import struct

import chex
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from gen_jax import data
from gen_jax.data import sources

MNIST_DIR = pathlib.Path(__file__).resolve().parents[1] / '..' / 'shared' / 'data' / 'mnist'


def data_config(**overrides):
  cfg = ml_collections.ConfigDict(dict(name='digits', path='', image_size=28, channels=1,
                                       holdout_fraction=0.2, train_split='train',
                                       holdout_split='test', max_examples=0))
  cfg.update(overrides)
  return cfg


def _check_split(split, size, channels=1):
  chex.assert_shape(split.images, (None, size, size, channels))
  assert split.images.dtype == np.float32
  assert split.images.min() >= 0.0 and split.images.max() <= 1.0
  assert split.labels.dtype == np.int32


def test_digits_resized_and_held_out():
  dataset = data.load(**data_config(image_size=16))
  _check_split(dataset.train, 16)
  assert len(dataset.train) + len(dataset.holdout) == 1797
  assert len(dataset.holdout) == round(1797 * 0.2)
  assert dataset.num_classes == 10 and dataset.train.has_labels


def test_batches_are_deterministic_and_reshuffled_each_epoch():
  # Labels hold each example's index, so a batch's labels say which examples it took.
  n = 250
  split = data.Split(np.zeros((n, 2, 2, 1), np.float32), np.arange(n, dtype=np.int32))
  schedule = data.BatchSchedule(split, batch_size=100, seed=3)
  assert schedule.steps_per_epoch == 2
  epoch0 = np.concatenate([schedule(0)['label'], schedule(1)['label']])
  epoch1 = np.concatenate([schedule(2)['label'], schedule(3)['label']])
  assert len(set(epoch0)) == 200 and len(set(epoch1)) == 200   # no repeats within an epoch
  assert not np.array_equal(epoch0, epoch1)                    # reshuffled each epoch
  # A fresh schedule (as after a restart) gives the same batch for the same step, any order.
  np.testing.assert_array_equal(data.BatchSchedule(split, 100, 3)(3)['label'], schedule(3)['label'])
  assert not np.array_equal(data.BatchSchedule(split, 100, 4)(0)['label'], schedule(0)['label'])


def _write_idx(path, array):
  header = struct.pack('>BBBB', 0, 0, 8, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
  with gzip.open(path, 'wb') as f:
    f.write(header + array.astype(np.uint8).tobytes())


def test_idx_directory(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
  labels = rng.integers(0, 10, 50, dtype=np.uint8)
  _write_idx(tmp_path / 'train-images-idx3-ubyte.gz', images)
  _write_idx(tmp_path / 'train-labels-idx1-ubyte.gz', labels)
  dataset = data.load(**data_config(name='idx', path=str(tmp_path)))
  assert (len(dataset.train), len(dataset.holdout)) == (40, 10)
  np.testing.assert_allclose(dataset.train.images[..., 0], images[:40] / 255.0, atol=1e-6)
  np.testing.assert_array_equal(dataset.holdout.labels, labels[40:])


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason='the shared MNIST test split is not beside the repo')
def test_real_mnist_test_split_is_8000_train_2000_held_out():
  dataset = data.load(**data_config(name='idx', path=str(MNIST_DIR)))
  assert (len(dataset.train), len(dataset.holdout)) == (8000, 2000)
  counts = np.bincount(np.concatenate([dataset.train.labels, dataset.holdout.labels]))
  np.testing.assert_array_equal(counts, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_image_folder_with_class_subfolders(tmp_path):
  rng = np.random.default_rng(0)
  for label in ('cat', 'dog'):
    (tmp_path / label).mkdir()
    for index in range(5):
      Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / label / f'{index}.png')
  dataset = data.load(**data_config(name='folder', path=str(tmp_path), image_size=16, channels=3))
  _check_split(dataset.train, 16, channels=3)
  assert (len(dataset.train), len(dataset.holdout)) == (8, 2)
  assert sorted(np.concatenate([dataset.train.labels, dataset.holdout.labels])) == [0] * 5 + [1] * 5


def test_tfds_dataset_by_name_with_mock_data():
  with tfds.testing.mock_data(num_examples=24):
    dataset = data.load(**data_config(name='mnist', image_size=14))
  _check_split(dataset.train, 14)
  assert len(dataset.train) == 24 and len(dataset.holdout) == 24


def test_unprepared_tfds_dataset_names_the_optional_extra(tmp_path):
  with pytest.raises(data.DataError, match=r"gen_jax\[tfds-prepare\]"):
    data.load(**data_config(name='mnist', path=str(tmp_path)))


@pytest.mark.parametrize('name', ['idx', 'folder'])
def test_missing_or_empty_paths_are_named(name, tmp_path):
  missing = tmp_path / 'nowhere'
  with pytest.raises(data.DataError, match=f'{missing}.* is not an existing directory'):
    data.load(**data_config(name=name, path=str(missing)))
  with pytest.raises(data.DataError, match=f'no .* in {tmp_path}|under {tmp_path}'):
    data.load(**data_config(name=name, path=str(tmp_path)))


def test_unreadable_files_are_named(tmp_path):
  (tmp_path / 'broken.png').write_bytes(b'not a png')
  with pytest.raises(data.DataError, match='broken.png'):
    data.load(**data_config(name='folder', path=str(tmp_path)))
  idx_dir = tmp_path / 'idx'
  idx_dir.mkdir()
  (idx_dir / 't10k-images-idx3-ubyte').write_bytes(b'\x00\x00\x09\x03')
  with pytest.raises(data.DataError, match='bad magic number'):
    sources.read_idx(idx_dir / 't10k-images-idx3-ubyte')
  (idx_dir / 't10k-images-idx3-ubyte').write_bytes(b'\x00\x00\x08\x03\x00\x00')   # header cut off
  with pytest.raises(data.DataError, match='t10k-images-idx3-ubyte is truncated'):
    sources.read_idx(idx_dir / 't10k-images-idx3-ubyte')


def test_an_image_whose_header_claims_a_huge_size_is_named(tmp_path):
  """A PNG header claiming 30000×30000 pixels: PIL refuses it as a decompression bomb."""
  import struct
  import zlib
  def chunk(kind, payload):
    return (struct.pack('>I', len(payload)) + kind + payload
            + struct.pack('>I', zlib.crc32(kind + payload) & 0xffffffff))
  header = struct.pack('>IIBBBBB', 30000, 30000, 8, 0, 0, 0, 0)
  (tmp_path / 'bomb.png').write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
                                      + chunk(b'IDAT', zlib.compress(b'')) + chunk(b'IEND', b''))
  with pytest.raises(data.DataError, match='bomb.png'):
    data.load(**data_config(name='folder', path=str(tmp_path)))


def test_batch_larger_than_data_is_refused():
  split = data.load(**data_config(image_size=8, max_examples=10)).train
  with pytest.raises(data.DataError, match='batch_size=64 is larger than the 10 training examples'):
    data.BatchSchedule(split, 64, 0)
