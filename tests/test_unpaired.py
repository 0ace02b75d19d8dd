"""Unpaired data for CycleGAN: two sources, thin ↔ thick strokes, trainA/… folders, tfds' cycle_gan."""

import chex
import ml_collections
import numpy as np
import pytest
from PIL import Image

from gen_jax import data, validation
from gen_jax.data import unpaired
from gen_jax.runtime import config_checks
from tests.conftest import load_config

MNIST = '../shared/data/mnist'


def _block(**overrides):
  block = ml_collections.ConfigDict(dict(task='sources', b_name='digits', b_path='', seed=0))
  block.update(overrides)
  return block


def test_two_sources_fill_an_epoch_of_the_larger_and_repeat_the_smaller_evenly():
  dataset = data.load('idx', MNIST, 16, 1, 0.2, 'train', 'test', 0, unpaired=_block())
  mnist = data.load('idx', MNIST, 16, 1, 0.2, 'train', 'test', 0)
  digits = data.load('digits', '', 16, 1, 0.2, 'train', 'test', 0)
  train_split = dataset.train
  assert len(train_split) == len(mnist.train) == 8000          # an epoch: the larger domain once
  chex.assert_trees_all_close(train_split.inputs, mnist.train.images)
  np.testing.assert_array_equal(train_split.input_labels, mnist.train.labels)
  # Each of the 1,438 digits appears 5 or 6 times (8000 / 1438 = 5.56), with its own label.
  images = digits.train.images.reshape(len(digits.train), -1)
  index = {row.tobytes(): k for k, row in enumerate(images)}
  seen = np.array([index[row.tobytes()] for row in train_split.images.reshape(len(train_split), -1)])
  counts = np.bincount(seen, minlength=len(digits.train))
  assert counts.min() == 5 and counts.max() == 6
  np.testing.assert_array_equal(train_split.labels, digits.train.labels[seen])
  # Held out: each domain's first min(2000, 359) images, none twice.
  assert len(dataset.holdout) == len(digits.holdout) == 359
  chex.assert_trees_all_close(dataset.holdout.inputs, mnist.holdout.images[:359])
  assert dataset.input_shape == dataset.image_shape == (16, 16, 1)


def test_strokes_split_one_source_into_thin_and_thick_digits_labelled_on_both_sides():
  plain = data.load('digits', '', 16, 1, 0.2, 'train', 'test', 0)
  dataset = data.load('digits', '', 16, 1, 0.2, 'train', 'test', 0, unpaired=_block(task='strokes'))
  half = len(plain.train) // 2   # A: the first 718 digits thinned; B: the other 719 thickened
  assert len(dataset.train) == len(plain.train) - half
  chex.assert_trees_all_close(dataset.train.images, unpaired.strokes(plain.train.images[half:], thick=True))
  np.testing.assert_array_equal(dataset.train.labels, plain.train.labels[half:])
  thin = unpaired.strokes(plain.train.images[:half], thick=False).reshape(half, -1)
  assert {row.tobytes() for row in dataset.train.inputs.reshape(len(dataset.train), -1)} == {
      row.tobytes() for row in thin}
  assert dataset.train.has_labels and (dataset.train.input_labels >= 0).all()
  assert dataset.train.inputs.mean() < plain.train.images.mean() < dataset.train.images.mean()


def test_domain_folders_are_read_from_train_and_test_parts(tmp_path):
  for part, count, value in (('trainA', 3, 10), ('trainB', 5, 200), ('testA', 2, 10), ('testB', 4, 200)):
    (tmp_path / part).mkdir()
    for k in range(count):
      Image.fromarray(np.full((20, 20, 3), value + k, np.uint8)).save(tmp_path / part / f'{k}.png')
  dataset = data.load('folder', str(tmp_path), 8, 3, 0.2, 'train', 'test', 0,
                      unpaired=_block(task='domains'))
  assert len(dataset.train) == 5 and len(dataset.holdout) == 2
  assert dataset.train.inputs.max() < 0.1 < 0.7 < dataset.train.images.min()
  assert not dataset.train.has_labels and dataset.num_classes == 0
  (tmp_path / 'testB').rename(tmp_path / 'valB')
  with pytest.raises(data.DataError, match='no sub-folder testB'):
    data.load('folder', str(tmp_path), 8, 3, 0.2, 'train', 'test', 0, unpaired=_block(task='domains'))


def test_tfds_cycle_gan_splits_are_the_two_domains():
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=6):
    dataset = data.load('cycle_gan/horse2zebra', '', 16, 3, 0.2, 'train', 'test', 0,
                        unpaired=_block(task='domains'))
  assert dataset.train.inputs.shape == dataset.train.images.shape == (6, 16, 16, 3)
  assert dataset.num_classes == 0   # tfds labels a picture with its domain, which is no class


@pytest.mark.parametrize('field,value,message', [
    ('data.unpaired.task', 'paired', r"data.unpaired.task='paired' is not allowed"),
    ('data.unpaired.b_name', 'nonsense', r"data.unpaired.b_name='nonsense' is not a data source"),
    ('data.unpaired.seed', -1, r'data.unpaired.seed=-1 must be >= 0'),
])
def test_bad_unpaired_fields_are_named_before_any_data_is_read(field, value, message):
  config = load_config('cyclegan')
  config.data.unpaired[field.rpartition('.')[2]] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    validation.validate(config)


def test_pairs_and_unpaired_blocks_together_are_refused():
  config = load_config('cyclegan')
  config.data.pairs = load_config('pix2pix').data.pairs
  with pytest.raises(config_checks.ConfigError, match='both a pairs and an unpaired block'):
    validation.validate(config)
