"""CycleGAN: the ResNet generator, the image pool, the cycle and identity losses, a run whose cycle
error falls, exact resume with the pools in the state, sampling either way, config errors."""

import functools
import json
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import data, train, validation
from gen_jax.families.cyclegan import CycleGANFamily
from gen_jax.models.cyclegan import ResnetGenerator
from gen_jax.objectives import cycle_consistency, image_pool
from gen_jax.runtime import checkpointing, config_checks
from tests.conftest import load_config, trained_once


# The generator --------------------------------------------------------------------------------------

def test_the_generator_keeps_the_image_shape_for_several_sizes():
  """Shapes by tracing alone (jax.eval_shape, nothing compiled), and one real forward pass."""
  for size, downsamplings, channels, normalisation, blocks in (
      (8, 1, 1, 'instance', 1), (12, 2, 3, 'batch', 2), (16, 2, 1, 'none', 3), (64, 3, 3, 'instance', 9)):
    net = ResnetGenerator(channels, features=2, num_downsamplings=downsamplings, num_blocks=blocks,
                          normalisation=normalisation)
    x = jax.ShapeDtypeStruct((2, size, size, channels), jnp.float32)
    variables = jax.eval_shape(functools.partial(net.init, train=False), jax.random.PRNGKey(1), x)
    y = jax.eval_shape(functools.partial(net.apply, train=False), variables, x)
    chex.assert_shape(y, (2, size, size, channels))
  net = ResnetGenerator(1, features=2, num_downsamplings=1, num_blocks=1)
  x = jax.random.uniform(jax.random.PRNGKey(0), (2, 8, 8, 1)) * 2 - 1
  variables = jax.jit(functools.partial(net.init, train=False))(jax.random.PRNGKey(1), x)
  y = jax.jit(functools.partial(net.apply, train=False))(variables, x)
  chex.assert_shape(y, (2, 8, 8, 1))
  assert 0.0 < float(jnp.abs(y).max()) <= 1.0   # tanh
  with pytest.raises(ValueError, match='2 downsamplings need a height and width divisible by 4'):
    ResnetGenerator(1, 2, 2, 1).init(jax.random.PRNGKey(0), jnp.zeros((1, 10, 10, 1)), train=False)


# The image pool -------------------------------------------------------------------------------------

def _numbered(first, count):
  """Images of one pixel whose value is their number: what came back is readable."""
  return jnp.arange(first, first + count, dtype=jnp.float32).reshape(count, 1, 1, 1)


def test_the_pool_fills_first_then_shows_old_and_new_half_and_half():
  query = jax.jit(image_pool.query)
  pool = image_pool.ImagePool.create(4, (1, 1, 1), jax.random.PRNGKey(0))
  pool, shown = query(pool, _numbered(1, 3))
  chex.assert_trees_all_close(shown, _numbered(1, 3))   # filling: shown as they are, and kept
  assert int(pool.count) == 3
  chex.assert_trees_all_close(pool.images[:3], _numbered(1, 3))
  pool, shown = query(pool, _numbered(4, 3))
  assert int(pool.count) == 4 and float(shown[0, 0, 0, 0]) == 4.0   # the fourth slot filled by 4
  old = total = 0
  for batch in range(200):
    before = set(np.asarray(pool.images).ravel().tolist())
    new = _numbered(100 + 8 * batch, 8)
    pool, shown = query(pool, new)
    assert shown.shape == new.shape
    values = np.asarray(shown).ravel()
    fresh = values == np.asarray(new).ravel()
    # An image not shown as itself is one the pool held (before this batch, or from it).
    assert set(values[~fresh].tolist()) <= before | set(np.asarray(new).ravel().tolist())
    old += int((~fresh).sum())
    total += len(values)
  assert 0.45 < old / total < 0.55, old / total
  assert int(pool.count) == 4


def test_the_pool_under_pmap_draws_what_one_device_draws():
  pool = image_pool.ImagePool.create(5, (1, 1, 1), jax.random.PRNGKey(3))
  devices = jax.local_device_count()
  batches = [_numbered(10 * k, 2 * devices) for k in range(4)]
  one, pooled = pool, jax.tree.map(lambda x: jnp.stack([x] * devices), pool)
  step = jax.pmap(functools.partial(image_pool.query, axis_name='d'), axis_name='d')
  for batch in batches:
    one, shown_one = image_pool.query(one, batch)
    pooled, shown = step(pooled, batch.reshape((devices, 2) + batch.shape[1:]))
    chex.assert_trees_all_close(shown.reshape(batch.shape), shown_one)
  chex.assert_trees_all_close(jax.tree.map(lambda x: x[-1], pooled), one)


# The losses -----------------------------------------------------------------------------------------

def test_cycle_and_identity_losses_against_hand_computed_values():
  real_a = jnp.zeros((1, 2, 2, 1))
  real_b = jnp.ones((1, 2, 2, 1))
  images = {'cycle_a': jnp.array([0.5, -0.5, 1.0, 0.0]).reshape(1, 2, 2, 1),   # L1 0.5
            'cycle_b': jnp.array([1.0, 1.0, 0.0, 1.0]).reshape(1, 2, 2, 1),    # L1 0.25
            'same_a': jnp.full((1, 2, 2, 1), 0.2),                                 # L1 0.2
            'same_b': jnp.full((1, 2, 2, 1), 0.6)}                                 # L1 0.4
  total, terms = cycle_consistency.cycle_terms(real_a, real_b, images, 10.0, 5.0)
  chex.assert_trees_all_close(terms, {'cycle_a': 0.5, 'cycle_b': 0.25, 'identity_a': 0.2,
                                      'identity_b': 0.4}, atol=1e-6)
  # 10 · (0.5 + 0.25) / 2 + 5 · (0.2 + 0.4) / 2
  np.testing.assert_allclose(float(total), 3.75 + 1.5, rtol=1e-6)
  without, terms = cycle_consistency.cycle_terms(real_a, real_b, images, 10.0, 0.0)
  np.testing.assert_allclose(float(without), 3.75, rtol=1e-6)
  assert set(terms) == {'cycle_a', 'cycle_b'}


# Runs -----------------------------------------------------------------------------------------------

STEPS, EPOCH = 24, 8      # smoke data: 256 rows in batches of 32


def _run_config():
  config = load_config('cyclegan')
  config.train.num_steps = STEPS
  config.train.log_every = 4
  config.train.checkpoint_every = EPOCH
  config.optim_g.learning_rate = config.optim_d.learning_rate = 2e-3
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory, worker_id):
  """A tiny real training on MNIST ↔ scikit-learn's digits at 16×16 (3 epochs of 8 steps)."""
  config = _run_config()
  return (config, *trained_once(tmp_path_factory, worker_id, 'cyclegan_trained', config))


def test_a_short_training_lowers_the_cycle_error_and_reports_both_ways(trained):
  config, workdir, report = trained
  records = [r for r in map(json.loads, (workdir / 'metrics.jsonl').read_text().splitlines())
             if r['split'] == 'train']
  for name in ('cycle_a', 'cycle_b'):
    assert records[-1][name] < 0.6 * records[0][name], (name, records[0][name], records[-1][name])
  metrics = report['metrics']
  assert set(metrics) == CycleGANFamily(config, _spec(config)).metric_names()
  assert 0.0 <= metrics['class_keep_a_to_b'] <= 1.0 and metrics['fid_b_to_a'] > 0
  assert metrics['holdout_cycle_l1_a'] < 0.6 * records[0]['cycle_a']
  for name in ('losses.png', 'cycle.png', 'samples/epochs.gif', f'eval/step_{STEPS}/cycle_aba.png',
               f'eval/step_{STEPS}/cycle_bab.png'):
    assert (workdir / name).is_file(), name


def _spec(config):
  from gen_jax.families.base import DataSpec
  dataset = data.load(**config.data)
  return DataSpec.of(dataset, data.BatchSchedule(dataset.train, config.train.batch_size, config.seed))


def _state(config, directory):
  run = train.Run(config, directory, training=False)
  try:
    return jax.device_get(run.state)
  finally:
    run.close()


def test_a_resumed_run_reaches_the_same_parameters_and_pools(trained, tmp_path):
  """The shared run's workdir, cut back to its step-16 checkpoint (as if stopped right after it),
  resumed to the end: the pools travel in the checkpoint, so it ends where the shared run ended."""
  config, workdir, _ = trained
  resumed_dir = tmp_path / 'run'
  shutil.copytree(workdir, resumed_dir)
  shutil.rmtree(resumed_dir / checkpointing.CHECKPOINT_DIR / str(STEPS))
  assert int(_state(config, resumed_dir).pool_a.count) == config.model.pool_size   # full by then
  train.train_and_evaluate(config, resumed_dir)
  resumed, uninterrupted = _state(config, resumed_dir), _state(config, workdir)
  chex.assert_trees_all_close(resumed.pool_a, uninterrupted.pool_a)
  chex.assert_trees_all_close(resumed.pool_b, uninterrupted.pool_b)
  chex.assert_trees_all_close((resumed.generators.params, resumed.critics.params),
                              (uninterrupted.generators.params, uninterrupted.critics.params),
                              atol=1e-6, rtol=1e-6)


def test_sample_mode_translates_the_held_out_images_of_either_domain(trained):
  config, workdir, _ = trained
  holdout = data.load(**config.data).holdout
  for direction, source in (('AtoB', holdout.inputs), ('BtoA', holdout.images)):
    config = config.copy_and_resolve_references()
    config.sample.direction = direction
    npz, png = train.sample(config, workdir, f'{direction}.npz')
    with np.load(npz) as saved:
      chex.assert_trees_all_close(saved['inputs'], source[:config.sample.num_samples])
      assert saved['samples'].shape == (config.sample.num_samples, 16, 16, 1)
    assert png.is_file()


# Config errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize('field,value,message', [
    ('model.generator.num_downsamplings', 4,
     r'num_downsamplings=4 halves config.data.image_size=16 4 times: .* at least 32'),
    ('model.loss', 'wasserstein', r"model.loss='wasserstein' is not allowed"),
    ('model.identity_weight', -1.0, r'identity_weight=-1.0 is out of range'),
    ('model.pool_size', -5, r'pool_size=-5 must be >= 0'),
    ('model.discriminator.num_layers', 5, r'num_layers=5 halves a 16×16 image to nothing'),
    ('sample.direction', 'AtoA', r"sample.direction='AtoA' is not allowed"),
])
def test_bad_fields_are_named_before_any_data_is_read(field, value, message):
  config = load_config('cyclegan')
  section, _, name = field.rpartition('.')
  node = config
  for part in section.split('.'):
    node = node[part]
  node[name] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    validation.validate(config)


def test_cyclegan_without_two_domains_is_refused():
  config = load_config('cyclegan')
  del config.data.unpaired
  with pytest.raises(config_checks.ConfigError, match='has no unpaired block'):
    validation.validate(config)
