"""Pix2Pix: the U-Net and PatchGAN, the step (L1 weight, dropout, devices, pmap), a run that learns,
resume and the sample mode."""

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from gen_jax import data, train, validation
from gen_jax.families.base import DataSpec
from gen_jax.families.pix2pix import Pix2PixFamily
from gen_jax.models.pix2pix import PatchDiscriminator, UNet, receptive_field, score_map_size
from gen_jax.runtime import config_checks, parallel
from tests.conftest import (load_config, pmap_train_step, run_steps, split_across_devices,
                            stack_replicas, trained_once)


def _setup(config=None):
  config = config or load_config('pix2pix')
  Pix2PixFamily.validate(config)
  dataset = data.load(**config.data)
  batches = data.BatchSchedule(dataset.train, config.train.batch_size, config.seed)
  return config, Pix2PixFamily(config, DataSpec.of(dataset, batches)), batches, dataset


# Networks -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('features,size,in_channels,out_channels,normalisation', [
    ((4, 8), 12, 1, 1, 'batch'),
    ((4, 8, 8), 16, 1, 3, 'instance'),
    ((4, 4, 8, 8), 32, 3, 3, 'none'),
])
def test_unet_output_has_the_input_size(features, size, in_channels, out_channels, normalisation):
  net = UNet(features, out_channels, normalisation, dropout_levels=1)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, size, size, in_channels))
  variables = net.init(jax.random.PRNGKey(1), x, train=False)
  y = jax.jit(functools.partial(net.apply, train=False))(variables, x)
  chex.assert_shape(y, (2, size, size, out_channels))
  assert float(jnp.abs(y).max()) <= 1.0   # tanh
  with pytest.raises(ValueError, match='divisible by 4'):
    UNet((4, 8), 1).init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 10, 1)), train=False)


@pytest.mark.parametrize('num_layers', [1, 2, 3])
def test_patch_scores_see_exactly_their_receptive_field(num_layers):
  """The input pixels that move one score (its gradient's support) form a square of the computed
  receptive field's side: 70 for the paper's 3 layers."""
  size = 96
  net = PatchDiscriminator(features=4, num_layers=num_layers, normalisation='none')
  image, condition = jnp.ones((1, size, size, 1)), jnp.ones((1, size, size, 1))
  variables = net.init(jax.random.PRNGKey(0), image, condition, train=False)
  scores = net.apply(variables, image, condition, train=False)
  side = score_map_size(size, num_layers)
  chex.assert_shape(scores, (1, side, side))
  centre = side // 2
  grad = jax.grad(lambda x: net.apply(variables, x, condition, train=False)[0, centre, centre])(image)
  rows, cols = np.nonzero(np.abs(np.asarray(grad[0, ..., 0])) > 0)
  assert rows.max() - rows.min() + 1 == receptive_field(num_layers)
  assert cols.max() - cols.min() + 1 == receptive_field(num_layers)
  assert receptive_field(3) == 70 and score_map_size(256, 3) == 30   # the paper's numbers


# The step -----------------------------------------------------------------------------------------

def test_dropout_is_noise_in_training_and_a_choice_at_sampling():
  _, family, batches, dataset = _setup()
  state = family.init_state(jax.random.PRNGKey(0))
  inputs = dataset.holdout.inputs[:8]
  noisy = [family.translate(state, inputs, jax.random.PRNGKey(k), dropout=True) for k in (0, 1)]
  plain = [family.translate(state, inputs, jax.random.PRNGKey(k), dropout=False) for k in (0, 1)]
  assert np.abs(noisy[0] - noisy[1]).max() > 1e-4
  chex.assert_trees_all_close(plain[0], plain[1])
  x = jnp.asarray(inputs) * 2 - 1
  train_mode = [family.generator.apply(state.generator.variables, x, train=True, rngs={'dropout': jax.random.PRNGKey(k)},
                                       mutable=['batch_stats'])[0] for k in (0, 1)]
  assert float(jnp.abs(train_mode[0] - train_mode[1]).max()) > 1e-4


def test_one_and_four_devices_give_the_same_steps_whose_loss_is_adversarial_plus_weighted_l1():
  config = load_config('pix2pix')
  config.model.l1_weight = 37.0
  _, family, batches, _ = _setup(config)
  state = family.init_state(jax.random.PRNGKey(0))
  one, metrics_one = run_steps(family, state, batches, parallel.make_mesh(1), 2)
  four, metrics_four = run_steps(family, state, batches, parallel.make_mesh(4), 2)
  chex.assert_trees_all_close(four, one, atol=2e-5, rtol=2e-4)
  chex.assert_trees_all_close(metrics_four, metrics_one, atol=2e-5, rtol=2e-4)
  # `l1` is reported in [0, 1] units: the loss's L1, on [-1, 1] images, is twice it.
  chex.assert_trees_all_close(metrics_one['g_loss'],
                              metrics_one['g_adversarial'] + 37.0 * 2 * metrics_one['l1'], rtol=1e-5)


def test_step_runs_under_pmap_with_jitter_and_mirror():
  config = load_config('pix2pix')
  config.data.pairs.jitter_size = 20
  config.data.pairs.mirror = True
  _, family, batches, _ = _setup(config)
  state = family.init_state(jax.random.PRNGKey(0))
  new_state, metrics = pmap_train_step(family)(stack_replicas(state), split_across_devices(batches(0)))
  for leaf in jax.tree.leaves(new_state.generator.params):
    chex.assert_trees_all_close(leaf[0], leaf[-1])
  assert int(new_state.step[0]) == 1 and np.isfinite(metrics['l1']).all()


# Runs ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def trained(tmp_path_factory, worker_id):
  """A tiny real training on the edges task of MNIST-sized digits (scikit-learn's, 16×16)."""
  config = load_config('pix2pix')
  config.train.num_steps = 80
  config.train.batch_size = 32
  config.train.log_every = 20
  config.train.checkpoint_every = 40
  config.train.eval_every = 0
  config.data.max_examples = 0
  config.optim_g.learning_rate = config.optim_d.learning_rate = 1e-3
  return (config, *trained_once(tmp_path_factory, worker_id, 'pix2pix_trained', config))


def test_a_short_training_translates_edges_better(trained, tmp_path):
  config, workdir, report = trained
  untrained = config.copy_and_resolve_references()
  untrained.train.num_steps = 1
  first = train.train_and_evaluate(untrained, tmp_path)['metrics']
  final = report['metrics']
  assert final['holdout_l1'] < 0.6 * first['holdout_l1'], (first['holdout_l1'], final['holdout_l1'])
  assert final['holdout_psnr'] > first['holdout_psnr'] + 3
  assert {'fid', 'class_match', 'holdout_ssim'} <= set(final)
  for name in ('losses.png', 'l1.png', 'samples/epochs.gif', 'eval/step_80/translations.png'):
    assert (workdir / name).is_file(), name
  assert json.loads((workdir / 'eval.json').read_text())['metrics']['holdout_l1'] == final['holdout_l1']


def test_a_resumed_run_reaches_the_same_parameters(trained, tmp_path, monkeypatch):
  """Interrupted after its step-40 checkpoint (the schedule's length unchanged), then resumed
  with another way of sampling."""
  config, workdir, _ = trained
  original = train._save

  def interrupting(run, window):
    original(run, window)
    if run.step == 40:
      raise KeyboardInterrupt

  monkeypatch.setattr(train, '_save', interrupting)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path)
  monkeypatch.undo()
  resumed = config.copy_and_resolve_references()   # with its sampling changed, which is resumable
  resumed.sample.dropout = not config.sample.dropout
  resumed.sample.input_dir = str(tmp_path)
  train.train_and_evaluate(resumed, tmp_path)

  def params(directory):
    run = train.Run(config, directory, training=False)
    try:
      return jax.device_get((run.state.generator.params, run.state.critic.params))
    finally:
      run.close()

  chex.assert_trees_all_close(params(tmp_path), params(workdir), atol=1e-6, rtol=1e-6)


def test_sample_mode_translates_held_out_inputs_or_a_folder(trained, tmp_path):
  config, workdir, _ = trained
  npz, png = train.sample(config, workdir, 'held_out.npz')
  with np.load(npz) as saved:
    assert saved['samples'].shape == (config.sample.num_samples, 16, 16, 1)
    assert saved['inputs'].shape == saved['samples'].shape
  assert png.is_file()
  folder = tmp_path / 'edges'
  folder.mkdir()
  for k in range(3):
    Image.fromarray(np.full((40, 40), 60 * k, np.uint8)).save(folder / f'{k}.png')
  config = config.copy_and_resolve_references()
  config.sample.input_dir = str(folder)
  npz, _ = train.sample(config, workdir, 'folder.npz')
  with np.load(npz) as saved:
    assert saved['samples'].shape == (3, 16, 16, 1)
    chex.assert_trees_all_close(saved['inputs'][2], np.full((16, 16, 1), 120 / 255, np.float32), atol=1e-6)


# Config errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize('field,value,message', [
    ('data.image_size', 20, r'image_size=20 cannot pass a U-Net of depth 3 .* multiple of 8'),
    ('model.loss', 'wasserstein', r"model.loss='wasserstein' is not allowed"),
    ('model.generator.dropout_levels', 3, r'dropout_levels=3 must be <= 2'),
    ('model.discriminator.num_layers', 5, r'num_layers=5 halves a 16×16 image to nothing'),
    ('data.pairs.task', 'colour', r"data.pairs.task='colour' is not allowed"),
    ('data.pairs.jitter_size', 10, r'jitter_size=10 is smaller than config.data.image_size=16'),
])
def test_bad_fields_are_named_before_any_data_is_read(field, value, message):
  config = load_config('pix2pix')
  section, _, name = field.rpartition('.')
  node = config
  for part in section.split('.'):
    node = node[part]
  node[name] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    validation.validate(config)


def test_pix2pix_without_pairs_is_refused():
  config = load_config('pix2pix')
  del config.data.pairs
  with pytest.raises(config_checks.ConfigError, match='has no pairs block'):
    validation.validate(config)
