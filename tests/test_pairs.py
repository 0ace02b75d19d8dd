"""Paired data for translation: tasks derived from digits, side-by-side folders, the joint augmentation."""

import pathlib

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from gen_jax import data
from gen_jax.data import pairs
from gen_jax.runtime import config_checks
from tests.conftest import load_config


def _pairs(**overrides):
  block = ml_collections.ConfigDict(dict(task='edges', direction='AtoB', seed=0, mask_size=6,
                                         low_resolution_factor=4, jitter_size=0, mirror=False))
  block.update(overrides)
  return block


def _digits(**overrides):
  return data.load('digits', '', 16, 1, 0.2, 'train', 'test', 0, _pairs(**overrides))


def test_derived_tasks_pair_each_real_digit_with_its_own_input():
  plain = data.load('digits', '', 16, 1, 0.2, 'train', 'test', 0)
  for task in pairs.DERIVED_TASKS:
    dataset = _digits(task=task)
    chex.assert_trees_all_close(dataset.train.images, plain.train.images)
    chex.assert_trees_all_close(dataset.holdout.labels, plain.holdout.labels)
    chex.assert_equal_shape([dataset.train.inputs, dataset.train.images])
    assert dataset.input_shape == (16, 16, 1)
  edges = _digits(task='edges').train.inputs
  assert set(np.unique(edges)) == {0.0, 1.0}
  # Edges lie where the digit's brightness changes: none inside a flat image.
  assert not pairs.edge_map(np.full((1, 8, 8, 1), 0.7, np.float32)).any()
  low = _digits(task='low_resolution').train.inputs
  chex.assert_trees_all_close(low[:, ::4, ::4], low[:, 3::4, 3::4])   # 4×4 blocks of one value


def test_masked_pairs_are_a_pure_function_of_seed_and_example():
  first, again, other = _digits(task='masked'), _digits(task='masked'), _digits(task='masked', seed=1)
  chex.assert_trees_all_close(first.holdout.inputs, again.holdout.inputs)
  assert np.abs(first.train.inputs - other.train.inputs).max() > 0
  hidden = np.isclose(first.train.inputs, pairs.MASK_FILL).all(axis=-1)
  assert (hidden.sum(axis=(1, 2)) >= 36).all()   # one 6×6 block an example
  # Example 5 of the source gets the same block whether or not the ones before it are loaded.
  alone = pairs.mask_block(first.train.images[5:6], 6, 0, first_index=5)
  chex.assert_trees_all_close(alone[0], first.train.inputs[5])
  # Held-out examples are numbered after the training ones, so their blocks differ from them.
  assert not np.array_equal(pairs.mask_block(first.holdout.images[:1], 6, 0),
                            first.holdout.inputs[:1])


def test_direction_b_to_a_swaps_input_and_target():
  forward, backward = _digits(), _digits(direction='BtoA')
  chex.assert_trees_all_close(backward.train.inputs, forward.train.images)
  chex.assert_trees_all_close(backward.holdout.images, forward.holdout.inputs)


def test_batches_carry_inputs_and_max_examples_cuts_pairs_together():
  dataset = data.load('digits', '', 16, 1, 0.2, 'train', 'test', 100, _pairs())
  assert len(dataset.train) == 100 and dataset.train.inputs.shape[0] == 100
  batch = data.BatchSchedule(dataset.train, 10, 0)(3)
  assert set(batch) == {'image', 'label', 'input'}
  chex.assert_equal_shape([batch['image'], batch['input']])


def _side_by_side(path, width, height, value=0):
  image = np.zeros((height, width, 3), np.uint8)
  image[:, :width // 2] = value           # A: left half
  image[:, width // 2:] = 255 - value     # B: right half
  Image.fromarray(image).save(path)


def test_side_by_side_folder_reads_a_on_the_left_and_uses_its_train_and_val_folders(tmp_path):
  for split, count in (('train', 5), ('val', 2)):
    (tmp_path / split).mkdir()
    for k in range(count):
      _side_by_side(tmp_path / split / f'{k}.jpg', 64, 32, value=40 * k)
  dataset = data.load('folder', str(tmp_path), 16, 3, 0.2, 'train', 'test', 0,
                      _pairs(task='side_by_side'))
  assert len(dataset.train) == 5 and len(dataset.holdout) == 2
  assert dataset.train.inputs.shape == (5, 16, 16, 3)
  chex.assert_trees_all_close(dataset.train.inputs[1].mean(), 40 / 255, atol=0.02)
  chex.assert_trees_all_close(dataset.train.images[1].mean(), 215 / 255, atol=0.02)
  backward = data.load('folder', str(tmp_path), 16, 1, 0.2, 'train', 'test', 0,
                       _pairs(task='side_by_side', direction='BtoA'))
  chex.assert_trees_all_close(backward.train.images[1].mean(), 40 / 255, atol=0.02)


@pytest.mark.parametrize('sizes,message', [
    ([(60, 32)], r'bad\.png is 60×32 pixels: a side-by-side pair is twice as wide'),
    ([(64, 32), (128, 64)], r'bad\.png is 128×64 pixels, .*0\.png is 64×32: every pair of a folder has one size'),
])
def test_side_by_side_errors_name_the_file(tmp_path, sizes, message):
  for k, (width, height) in enumerate(sizes):
    _side_by_side(tmp_path / ('bad.png' if k == len(sizes) - 1 else f'{k}.png'), width, height)
  with pytest.raises(data.DataError, match=message):
    data.load('folder', str(tmp_path), 16, 3, 0.2, 'train', 'test', 0, _pairs(task='side_by_side'))


def test_a_missing_folder_is_named(tmp_path):
  with pytest.raises(data.DataError, match=r"data.path='.*nope' is not an existing directory"):
    data.load('folder', str(tmp_path / 'nope'), 16, 3, 0.2, 'train', 'test', 0, _pairs(task='side_by_side'))


@pytest.mark.parametrize('field,value,message', [
    ('data.pairs.task', 'side_by_side', r"side-by-side pairs are read from a folder"),
    ('data.pairs.low_resolution_factor', 3, r'low_resolution_factor=3 does not divide config.data.image_size=16'),
    ('data.pairs.direction', 'AB', r"direction='AB' is not allowed"),
    ('data.pairs.mask_size', 17, r'mask_size=17 must be <= 16'),
])
def test_bad_pair_settings_are_named(field, value, message):
  config = load_config('pix2pix')
  config.data.pairs[field.rsplit('.', 1)[1]] = value
  if 'low_resolution' in field:
    config.data.pairs.task = 'low_resolution'
  with pytest.raises(config_checks.ConfigError, match=message):
    data.validate(config)


def test_jitter_and_mirror_crop_and_flip_input_and_target_alike():
  rng = jax.random.PRNGKey(3)
  target = jax.random.uniform(rng, (16, 8, 8, 1))
  stacked = jnp.concatenate([target, 1.0 - target], axis=-1)   # input = 1 - target
  out = jax.jit(pairs.jitter_and_mirror, static_argnums=(2, 3))(jax.random.PRNGKey(0), stacked, 10, True)
  chex.assert_shape(out, (16, 8, 8, 2))
  chex.assert_trees_all_close(out[..., 1], 1.0 - out[..., 0], atol=1e-5)
  assert np.abs(np.asarray(out[..., :1]) - np.asarray(target)).max() > 1e-3   # it did move them
  flipped = pairs.jitter_and_mirror(jax.random.PRNGKey(1), stacked, 0, True)
  same = [bool(jnp.allclose(flipped[k], stacked[k])) for k in range(16)]
  mirrored = [bool(jnp.allclose(flipped[k], stacked[k, :, ::-1])) for k in range(16)]
  assert all(a or b for a, b in zip(same, mirrored)) and 0 < sum(mirrored) < 16


def test_pairs_from_the_mnist_idx_files_and_tfds_mnist():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=12):
    dataset = data.load('mnist', '', 16, 1, 0.2, 'train', 'test', 0, _pairs(task='masked'))
  assert dataset.train.inputs.shape == (12, 16, 16, 1) and dataset.holdout.has_labels
  idx = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'mnist'
  if not idx.is_dir():
    pytest.skip(f'the MNIST IDX files are not in {idx}')
  dataset = data.load('idx', str(idx), 16, 1, 0.2, 'train', 'test', 100, _pairs(task='edges'))
  assert dataset.train.inputs.shape == (100, 16, 16, 1) and len(dataset.holdout) == 2000
