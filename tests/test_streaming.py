"""Training data streamed through Grain (config.data.streaming): each batch a pure function of
(seed, step), the same examples as in memory, only the records of the steps run read, and a
resumed run that ends where an uninterrupted one does."""

import chex
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from gen_jax import data, train
from gen_jax.data import sources, streaming
from gen_jax.families import classifier as classifier_family
from gen_jax.runtime import config_checks
from tests.conftest import load_config, restore_params
from tests.test_data import data_config


def _numbered_split(count):
  """A streamed split of blank pictures labelled with their own index, so that a batch's labels
  say which examples it took."""
  def read(indices):
    return [np.zeros((2, 2, 1), np.uint8)] * len(indices), list(indices)
  return streaming.StreamedSplit(count, read, image_size=2, channels=1, num_classes=count)


def _labels(batches, steps):
  return np.concatenate([batches(step)['label'] for step in steps])


def _write_folder(root, count, size, classes=3):
  """`count` random grey PNGs, size × (size + 2) pixels, in `classes` class sub-folders."""
  rng = np.random.default_rng(0)
  for index in range(count):
    folder = root / f'class{index % classes}'
    folder.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, (size, size + 2), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f'{index:03d}.png')
  return root


def _examples(images, labels):
  """A split's examples as a sorted list of (pixels, label), to compare as sets."""
  return sorted((image.tobytes(), int(label)) for image, label in zip(images, labels))


def _streamed_examples(dataset, batch_size):
  """Every example one epoch of `dataset`'s streamed batches reads."""
  batches = data.training_batches(dataset, batch_size, seed=0)
  assert isinstance(batches, data.StreamedBatches)
  read = [batches(step) for step in range(batches.steps_per_epoch)]
  return _examples(np.concatenate([b['image'] for b in read]),
                   np.concatenate([b['label'] for b in read]))


def test_batches_are_a_pure_function_of_seed_and_step():
  split = _numbered_split(200)
  batches = streaming.StreamedBatches(split, batch_size=50, seed=3)
  assert (batches.steps_per_epoch, batches.epoch_of(7), batches.epoch_of(8)) == (4, 1, 2)
  epochs = [_labels(batches, range(epoch * 4, epoch * 4 + 4)) for epoch in range(3)]
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(200))   # every example, once
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])
  # A fresh instance (as after a restart), read without threads and out of order, agrees.
  fresh = streaming.StreamedBatches(split, batch_size=50, seed=3, read_ahead=0)
  for step in (9, 2, 5):
    np.testing.assert_array_equal(fresh(step)['label'], epochs[step // 4][step % 4 * 50:][:50])
  other_seed = streaming.StreamedBatches(split, batch_size=50, seed=4)
  assert not np.array_equal(other_seed(0)['label'], epochs[0][:50])


def test_a_partial_last_batch_is_left_out_of_each_epoch():
  batches = streaming.StreamedBatches(_numbered_split(250), batch_size=100, seed=0)
  assert batches.steps_per_epoch == 2
  for epoch in range(2):
    labels = _labels(batches, (2 * epoch, 2 * epoch + 1))
    assert len(set(labels.tolist())) == 200   # no example twice within an epoch


@pytest.mark.parametrize('count', [2, 4])
def test_the_parts_of_all_processes_make_up_the_global_batch(count):
  batches = streaming.StreamedBatches(_numbered_split(96), batch_size=16, seed=1)
  for step in (0, 5, 13):   # the first epoch, and two later ones
    parts = [batches.part(step, index, count)['label'] for index in range(count)]
    assert all(len(part) == 16 // count for part in parts)
    np.testing.assert_array_equal(np.concatenate(parts), batches(step)['label'])


def test_a_folder_streams_the_examples_it_holds_in_memory(tmp_path):
  folder = str(_write_folder(tmp_path, 40, size=10))
  config = data_config(name='folder', path=folder, image_size=8)
  in_memory, streamed = data.load(**config), data.load(**config, streaming=True)
  assert isinstance(streamed.train, data.StreamedSplit) and len(streamed.train) == 32
  assert (streamed.image_shape, streamed.num_classes) == (in_memory.image_shape, 3)
  assert _streamed_examples(streamed, 8) == _examples(in_memory.train.images,
                                                      in_memory.train.labels)
  np.testing.assert_array_equal(streamed.holdout.images, in_memory.holdout.images)
  np.testing.assert_array_equal(streamed.holdout.labels, in_memory.holdout.labels)
  # data.max_examples keeps the same first examples either way.
  config.max_examples = 16
  first, streamed_first = data.load(**config), data.load(**config, streaming=True)
  assert _streamed_examples(streamed_first, 8) == _examples(first.train.images, first.train.labels)


def test_a_tensorflow_dataset_streams_under_mock_data():
  config = data_config(name='mnist', image_size=14)
  with tfds.testing.mock_data(num_examples=24):
    in_memory, streamed = data.load(**config), data.load(**config, streaming=True)
    examples = _streamed_examples(streamed, 8)
  assert (len(streamed.train), streamed.num_classes, streamed.image_shape) == (24, 10, (14, 14, 1))
  assert examples == _examples(in_memory.train.images, in_memory.train.labels)
  np.testing.assert_array_equal(streamed.holdout.images, in_memory.holdout.images)


def test_only_the_records_of_the_steps_asked_for_are_read(tmp_path, monkeypatch):
  folder = str(_write_folder(tmp_path, 40, size=8))
  dataset = data.load(**data_config(name='folder', path=folder, image_size=8), streaming=True)
  read = []
  read_image_file = sources.read_image_file

  def counted(file, *args):
    read.append(file)
    return read_image_file(file, *args)

  monkeypatch.setattr(sources, 'read_image_file', counted)
  batches = streaming.StreamedBatches(dataset.train, batch_size=2, seed=0, read_ahead=0)
  for step in range(3):
    batches(step)
  assert len(read) == 6 and len(set(read)) == 6   # of the 32 training files
  read.clear()
  ahead = streaming.StreamedBatches(dataset.train, batch_size=2, seed=0)
  for step in range(3):
    ahead(step)
  assert len(read) <= 2 * (3 + streaming.READ_AHEAD) < 32   # the steps asked for, and read ahead


@pytest.mark.slow
def test_a_streamed_run_resumed_reaches_the_same_parameters(tmp_path):
  """The digit classifier of a streamed VAE run: it streams its data too, and is one model (two
  compiled programs), where the VAE's evaluation would train it as well."""
  config = load_config('vae')
  config.data.update(name='folder', image_size=16, streaming=True,
                     path=str(_write_folder(tmp_path / 'pictures', 100, size=16, classes=10)))
  recipe = classifier_family.recipe_config(config)
  assert recipe.data.streaming
  recipe.train.update(num_steps=12, batch_size=32, log_every=4, checkpoint_every=6)
  whole, interrupted_dir = tmp_path / 'uninterrupted', tmp_path / 'interrupted'
  train.train_and_evaluate(recipe, whole)
  interrupted = recipe.copy_and_resolve_references()
  interrupted.train.num_steps = 6
  train.train_and_evaluate(interrupted, interrupted_dir)
  assert train.train_and_evaluate(recipe, interrupted_dir)['step'] == 12   # resumed from step 6
  chex.assert_trees_all_close(restore_params(recipe, interrupted_dir),
                              restore_params(recipe, whole), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize('config_name,fields,message', [
    ('vae', {'data.name': 'digits'},
     r"config.data.streaming=True cannot stream config.data.name='digits'.*stream 'folder' or a "
     r'tensorflow-datasets dataset'),
    ('vae', {'data.name': 'idx'}, r"cannot stream config.data.name='idx'"),
    ('pix2pix', {'data.name': 'mnist'}, r'cannot stream the config.data.pairs block'),
    ('ae_conv', {'data.name': 'folder'},
     r"cannot train model 'autoencoder': its evaluation fits a PCA to every training image"),
    ('pca', {'data.name': 'folder'}, r"cannot train model 'pca'"),
])
def test_streaming_what_cannot_stream_is_refused_before_anything_runs(config_name, fields, message,
                                                                       tmp_path):
  config = load_config(config_name)
  config.data.streaming = True
  for field, value in fields.items():
    section, name = field.split('.')
    config[section][name] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, tmp_path)
  assert not any(tmp_path.iterdir())


def test_streaming_must_be_a_bool(tmp_path):
  config = load_config('vae')
  del config.data['streaming']   # a ConfigDict keeps a field's type: make it anew as a string
  config.data.streaming = 'yes'
  with pytest.raises(config_checks.ConfigError,
                     match=r"config.data.streaming='yes' must be True or False"):
    train.train_and_evaluate(config, tmp_path)
