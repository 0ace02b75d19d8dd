"""The GAN family: networks, the shared adversarial step, every config, sampling and a whole run."""

import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gen_jax import data, train
from gen_jax.runtime import config_checks, metric_writers, parallel
from gen_jax.objectives import adversarial_game
from gen_jax.families.base import DataSpec
from gen_jax.families.gan import GRID_COLUMNS, SAMPLES_DIR, GANFamily
from gen_jax.models.gan import Discriminator, Generator
from tests.conftest import (load_config, pmap_train_step, run_steps, split_across_devices,
                             stack_replicas)

CONFIGS = ('gan', 'dcgan', 'lsgan', 'cgan', 'wgan', 'wgan_gp')


def _set(config, field, value):
  *parents, name = field.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[name] = value


def _setup(name, **overrides):
  """(config, family, batches) of a smoke config on scikit-learn digits; overrides use '__' for '.'."""
  config = load_config(name)
  for field, value in overrides.items():
    _set(config, field.replace('__', '.'), value)
  GANFamily.validate(config)
  dataset = data.load(**config.data)
  batches = data.BatchSchedule(dataset.train, config.train.batch_size, config.seed)
  family = GANFamily(config, DataSpec.of(dataset, batches))
  return config, family, batches


def _update_count(player) -> int:
  """How many updates the player's optimiser has made (every `count` in its state agrees)."""
  counts = {int(v) for _, v in optax.tree_utils.tree_get_all_with_path(player.opt_state, 'count')}
  assert len(counts) == 1, counts
  return counts.pop()


# Networks -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('dense,conv,activation,low,high', [
    ((16, 16), (), 'sigmoid', 0.0, 1.0),    # the fully connected GAN's generator
    ((), (8, 4), 'tanh', -1.0, 1.0),        # DCGAN's
])
def test_generator_shapes_and_output_range(dense, conv, activation, low, high):
  generator = Generator((12, 12, 1), dense, conv, activation)
  z, condition = jnp.ones((3, 5)), jax.nn.one_hot(jnp.array([0, 1, 2]), 3)
  for c in (None, condition):
    variables = jax.jit(functools.partial(generator.init, train=False))(jax.random.PRNGKey(0), z, c)
    images = jax.jit(functools.partial(generator.apply, train=False))(variables, 10 * z, c)
    chex.assert_shape(images, (3, 12, 12, 1))
    assert low <= float(images.min()) and float(images.max()) <= high


@pytest.mark.parametrize('conv,dense,batch_norm', [((4, 8), (), True), ((), (16, 8), False)])
def test_discriminator_scores_each_example_with_and_without_a_condition(conv, dense, batch_norm):
  critic = Discriminator(conv, dense, batch_norm)
  x, condition = jnp.ones((3, 12, 12, 1)), jax.nn.one_hot(jnp.array([0, 1, 2]), 3)
  for c in (None, condition):
    variables = jax.jit(functools.partial(critic.init, train=False))(jax.random.PRNGKey(0), x, c)
    chex.assert_shape(jax.jit(functools.partial(critic.apply, train=False))(variables, x, c), (3,))
    assert ('batch_stats' in variables) == batch_norm
  with pytest.raises(AssertionError):
    critic.apply(variables, jnp.ones((3, 12, 12)), condition, train=False)


# The adversarial step -----------------------------------------------------------------------------

@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_trains_with_finite_losses(name):
  config, family, batches = _setup(name)
  state = family.init_state(jax.random.PRNGKey(0))
  new_state, metrics = run_steps(family, state, batches, parallel.make_mesh(4), 2)
  chex.assert_tree_all_finite((new_state, metrics))
  # Each optimiser counts only its own updates: n_critic critic updates per generator update.
  assert int(new_state.step) == _update_count(new_state.generator) == 2
  assert _update_count(new_state.critic) == 2 * config.model.n_critic
  expected = {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm'}
  if config.model.loss == 'wasserstein':
    expected.add('wasserstein_estimate')
  if config.model.gradient_penalty:
    expected |= {'gradient_penalty', 'critic_input_grad_norm'}
  assert set(metrics) == expected
  for player in ('generator', 'critic'):
    before, after = getattr(state, player).params, getattr(new_state, player).params
    assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_step_gradients_are_those_of_each_players_loss():
  """The step's critic gradient is that of its loss on the real batch and G(z); the generator's
  (pulled back through the one G forward) is that of its loss through the updated critic."""
  learning_rate = 0.01
  config, family, batches = _setup('dcgan', optim_g__name='sgd', optim_d__name='sgd',
                                   optim_g__b1=0.0, optim_d__b1=0.0, optim_g__learning_rate=learning_rate,
                                   optim_d__learning_rate=learning_rate)
  batch = batches(0)
  z = jax.random.normal(jax.random.PRNGKey(7), (len(batch['image']), config.model.latent_dim))
  family.prior = lambda rng, shape: z   # every draw of the step gets the same, known latents
  state = family.init_state(jax.random.PRNGKey(0))
  new_state, _ = jax.jit(family.train_step)(state, batch)

  def forward(module, params, x):   # training mode: batch statistics, running averages unused
    return module.apply({'params': params, 'batch_stats': state_stats[module.name or 'g']}, x,
                        train=True, mutable=['batch_stats'])[0]

  generator, critic = family.generator.clone(name='g'), family.critic.clone(name='d')
  state_stats = {'g': state.generator.batch_stats, 'd': state.critic.batch_stats}
  real = jnp.asarray(batch['image']) * 2 - 1
  fake = jax.jit(functools.partial(forward, generator))(state.generator.params, z)
  critic_grads = jax.jit(jax.grad(
      lambda p: family.loss.critic(forward(critic, p, real), forward(critic, p, fake))))(state.critic.params)
  generator_grads = jax.jit(jax.grad(lambda p: family.loss.generator(
      forward(critic, new_state.critic.params, forward(generator, p, z)))))(state.generator.params)
  applied = lambda old, new: jax.tree.map(lambda a, b: (a - b) / learning_rate, old, new)
  chex.assert_trees_all_close(applied(state.critic.params, new_state.critic.params), critic_grads,
                              atol=2e-4, rtol=2e-3)
  chex.assert_trees_all_close(applied(state.generator.params, new_state.generator.params),
                              generator_grads, atol=2e-4, rtol=2e-3)


def test_critic_weights_are_clipped_after_every_critic_update():
  config, family, batches = _setup('wgan')
  bound = config.model.weight_clip
  state = family.init_state(jax.random.PRNGKey(0))
  assert max(float(jnp.abs(p).max()) for p in jax.tree.leaves(state.critic.params)) > bound
  real = jnp.asarray(batches(0)['image']) * 2 - 1
  fake = family.generator.apply(state.generator.variables, jnp.ones((real.shape[0], 8)), train=False)
  update = jax.jit(functools.partial(adversarial_game.critic_update, family.critic, condition=None,
                                     loss=family.loss, weight_clip=bound))
  critic = state.critic
  for index in range(3):
    critic, _ = update(critic=critic, real=real, fake=fake, rng=jax.random.PRNGKey(index))
    assert max(float(jnp.abs(p).max()) for p in jax.tree.leaves(critic.params)) <= bound


def test_one_device_and_four_devices_give_the_same_steps():
  """BatchNorm's batch statistics are global under jit, so sharding does not change the step."""
  _, family, batches = _setup('dcgan')
  state = family.init_state(jax.random.PRNGKey(0))
  one, metrics_one = run_steps(family, state, batches, parallel.make_mesh(1), 2)
  four, metrics_four = run_steps(family, state, batches, parallel.make_mesh(4), 2)
  chex.assert_trees_all_close(four, one, atol=2e-5, rtol=2e-4)
  chex.assert_trees_all_close(metrics_four, metrics_one, atol=2e-5, rtol=2e-4)


def test_step_runs_under_pmap_and_keeps_replicas_in_sync():
  _, family, batches = _setup('cgan')
  state = family.init_state(jax.random.PRNGKey(0))
  new_state, metrics = pmap_train_step(family)(stack_replicas(state), split_across_devices(batches(0)))
  for leaf in jax.tree.leaves(new_state):
    chex.assert_trees_all_close(leaf[1:], jnp.broadcast_to(leaf[0], leaf[1:].shape))
  chex.assert_tree_all_finite(metrics)


# Sampling -----------------------------------------------------------------------------------------

def test_conditional_sampling_gives_the_requested_classes_shapes():
  config, family, _ = _setup('cgan')
  state = family.init_state(jax.random.PRNGKey(0))
  samples = family.sample(state, jax.random.PRNGKey(1), 5, labels=np.full((5,), 3))
  chex.assert_shape(samples, (5, 28, 28, 1))
  assert samples.min() >= 0.0 and samples.max() <= 1.0
  # The class changes the image made from one latent.
  z = np.ones((2, config.model.latent_dim), np.float32)
  pair = family.generate(state, z, np.array([0, 7]))
  assert not np.allclose(pair[0], pair[1])
  chex.assert_shape(family.fixed_grid(state), (10 * GRID_COLUMNS, 28, 28, 1))
  with pytest.raises(ValueError, match='labels must be classes 0 to 9'):
    family.sample(state, jax.random.PRNGKey(1), 2, labels=np.array([3, 10]))
  with pytest.raises(ValueError, match='needs a class label'):
    family.generate(state, z)
  config.sample.label = 4
  np.testing.assert_allclose(family.sample(state, jax.random.PRNGKey(1), 3),
                             family.sample(state, jax.random.PRNGKey(1), 3, labels=np.full((3,), 4)))


def test_unconditional_sampling_takes_no_labels():
  _, family, _ = _setup('gan')
  state = family.init_state(jax.random.PRNGKey(0))
  chex.assert_shape(family.sample(state, jax.random.PRNGKey(1), 3), (3, 28, 28, 1))
  chex.assert_shape(family.fixed_grid(state), (GRID_COLUMNS ** 2, 28, 28, 1))
  with pytest.raises(ValueError, match='takes none'):
    family.generate(state, np.ones((2, 8), np.float32), np.array([0, 1]))


# Config errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize('name,field,value,message', [
    ('wgan_gp', 'model.discriminator.batch_norm', True, 'cannot be used with config.model.gradient_penalty'),
    ('dcgan', 'data.image_size', 30, r'config.data.image_size=30 cannot be made .* multiple of 4'),
    ('gan', 'model.loss', 'kl', r"config.model.loss='kl' is not allowed; choose one of"),
    ('gan', 'model.prior', 'cauchy', r"config.model.prior='cauchy' is not allowed"),
    ('wgan', 'model.n_critic', 0, r'config.model.n_critic=0 must be >= 1'),
    ('gan', 'model.generator.dense_features', (8, 0), r'must be a sequence of positive integers'),
    ('gan', 'optim_d.learning_rate', 0.0, r'config.optim_d.learning_rate=0.0 is out of range'),
    ('wgan', 'model.weight_clip', -0.01, r'config.model.weight_clip=-0.01 is out of range'),
])
def test_bad_config_is_refused_before_any_data_is_read(name, field, value, message, tmp_path):
  config = load_config(name)
  _set(config, field, value)
  with pytest.raises(config_checks.ConfigError, match=message):
    train.train_and_evaluate(config, tmp_path)
  assert not (tmp_path / 'config.json').exists()


def test_conditional_sampling_of_a_missing_class_is_refused():
  with pytest.raises(config_checks.ConfigError, match=r'config.sample.label=12 is not a class'):
    _setup('cgan', sample__label=12)


# A whole run --------------------------------------------------------------------------------------

@pytest.mark.slow
def test_conditional_run_writes_grids_gif_curves_and_class_balance(tmp_path):
  config = load_config('cgan')
  report = train.train_and_evaluate(config, tmp_path)
  steps_per_epoch = config.data.max_examples // config.train.batch_size
  assert sorted(p.name for p in (tmp_path / SAMPLES_DIR).iterdir()) == ['epoch_0000.png', 'epochs.gif']
  for name in ('losses.png', 'critic_outputs.png', 'class_balance.png'):
    assert (tmp_path / name).is_file(), name
  epochs = metric_writers.read_metrics(tmp_path, 'epoch')
  assert [r['step'] for r in epochs] == [steps_per_epoch]
  assert 0.0 <= epochs[0]['class_entropy'] <= np.log(10) + 1e-6
  np.testing.assert_allclose(sum(epochs[0][f'class_{k}_fraction'] for k in range(10)), 1.0)
  metrics = report['metrics']
  assert np.isfinite(metrics['fid']) and 0.0 <= metrics['d_holdout'] <= 1.0
  assert 0.0 <= metrics['class_match'] <= 1.0   # samples classified as the class they were asked for
  assert (tmp_path / 'eval' / f'step_{config.train.num_steps}' / 'samples.png').is_file()
  # The evaluate mode restores the last checkpoint: the same generator gives the same numbers.
  again = train.evaluate(config, tmp_path)['metrics']
  assert again['fid'] == pytest.approx(metrics['fid']) and again['d_holdout'] == pytest.approx(metrics['d_holdout'])
  # Sampling one class from the trained run (the class is no part of the run's identity).
  config.sample.label = 3
  samples = np.load(train.sample(config, tmp_path, 'threes.npz')[0])['samples']
  chex.assert_shape(samples, (config.sample.num_samples, 28, 28, 1))
  assert json.loads((tmp_path / 'config.json').read_text())['sample']['label'] == -1


@pytest.mark.slow
def test_an_epoch_hook_cut_off_after_its_checkpoint_runs_on_resume(tmp_path, monkeypatch):
  """Killed after the checkpoint that ends epoch 0 but before its hook: the resumed run writes the
  epoch's grid and class balance, once."""
  config = load_config('dcgan')
  steps_per_epoch = config.data.max_examples // config.train.batch_size
  config.train.num_steps = config.train.checkpoint_every = steps_per_epoch
  original = GANFamily.on_epoch_end

  def killed(self, *args):
    raise KeyboardInterrupt('killed before the epoch hook')

  monkeypatch.setattr(GANFamily, 'on_epoch_end', killed)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path)
  assert not metric_writers.read_metrics(tmp_path, 'epoch')
  monkeypatch.setattr(GANFamily, 'on_epoch_end', original)
  train.train_and_evaluate(config, tmp_path)
  assert [r['step'] for r in metric_writers.read_metrics(tmp_path, 'epoch')] == [steps_per_epoch]
  assert (tmp_path / SAMPLES_DIR / 'epoch_0000.png').is_file()
