"""The autoencoder family: modules, losses, sparsity, the linear-AE/PCA link, data parallelism, real runs."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from sklearn.datasets import load_digits

from gen_jax import data, train
from gen_jax.evaluation import feature_probe, image_quality
from gen_jax.models import pca
from gen_jax.objectives import sparsity
from gen_jax.runtime import config_checks, metric_writers, parallel
from gen_jax.families.autoencoder import RECONSTRUCTION_LOSSES, AutoencoderFamily
from gen_jax.families.base import DataSpec
from gen_jax.models import autoencoder
from tests.conftest import load_config, pmap_train_step, split_across_devices, stack_replicas


@pytest.fixture(scope='module')
def digits_8x8():
  """scikit-learn's digits at their own 8×8 size: (1797, 8, 8, 1) in [0, 1]."""
  return (load_digits().images / 16.0).astype(np.float32)[..., None]


def _small(name, **model_fields):
  """A config for 8×8 images; the family is built without loading data."""
  config = load_config(name)
  config.data.image_size = 8
  config.model.corruption.block_size = 4
  for field, value in model_fields.items():
    config.model[field] = value
  AutoencoderFamily.validate(config)
  return config


def _build(m, image_shape):
  return autoencoder.build(m.architecture, m.code_dim, m.code_activation, image_shape,
                           hidden_dims=m.hidden_dims, conv_features=m.conv_features)


@pytest.mark.parametrize('architecture', ['linear', 'mlp', 'conv'])
def test_module_shapes_with_an_overcomplete_code(architecture):
  config = _small('ae_conv', architecture=architecture, code_dim=200, conv_features=(4, 8), hidden_dims=(16,))
  model = _build(config.model, (8, 8, 3))   # 200 code units for 192 pixel values
  x = jax.ShapeDtypeStruct((5, 8, 8, 3), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(1), x)
  output, code = jax.eval_shape(model.apply, params, x)
  chex.assert_shape(output, (5, 8, 8, 3))
  chex.assert_shape(code, (5, 200))
  with pytest.raises(AssertionError):
    jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((5, 6, 6, 3), jnp.float32))


def test_code_activations():
  x = jax.random.uniform(jax.random.PRNGKey(0), (5, 8, 8, 1))
  for activation, low, high in (('relu', 0.0, np.inf), ('sigmoid', 0.0, 1.0)):
    config = _small('sparse_ae', code_activation=activation, code_dim=300)
    model = _build(config.model, (8, 8, 1))
    code = jax.jit(model.apply, static_argnames='method')(
        model.init(jax.random.PRNGKey(1), x), x, method=autoencoder.Autoencoder.encode)
    assert low <= float(code.min()) and float(code.max()) <= high
    assert float(jnp.mean(code == 0.0)) < 1.0


def test_reconstruction_losses_match_their_definitions():
  x = jax.random.uniform(jax.random.PRNGKey(0), (3, 4, 4, 1))
  raw = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 4, 1))
  chex.assert_trees_all_close(RECONSTRUCTION_LOSSES['mse'].per_example(raw, x),
                              jnp.sum(((raw - x) ** 2).reshape(3, -1), axis=1), rtol=1e-6)
  p = jax.nn.sigmoid(raw)
  bce = -jnp.sum((x * jnp.log(p) + (1 - x) * jnp.log(1 - p)).reshape(3, -1), axis=1)
  chex.assert_trees_all_close(RECONSTRUCTION_LOSSES['bce'].per_example(raw, x), bce, rtol=1e-5)
  assert float(RECONSTRUCTION_LOSSES['mse'].image(raw).max()) <= 1.0


def test_sparsity_penalties_and_measure():
  config = load_config('sparse_ae_kl')
  code = jnp.array([[0.0, 0.5, -2.0], [0.005, 0.0, 1.0]])
  chex.assert_trees_all_close(sparsity.l1_penalty(code, config.model.sparsity_target), (2.5 + 1.005) / 2, rtol=1e-6)
  np.testing.assert_allclose(sparsity.fraction_near_zero(code, 0.01), [1 / 3, 2 / 3])
  rho = config.model.sparsity_target
  activations = jnp.array([[0.1, 0.2], [0.3, 0.4]])
  means = np.array([0.2, 0.3])
  expected = np.sum(rho * np.log(rho / means) + (1 - rho) * np.log((1 - rho) / (1 - means)))
  chex.assert_trees_all_close(sparsity.kl_penalty(activations, rho), expected, rtol=1e-5)
  on_target = jnp.full((4, 3), rho)
  chex.assert_trees_all_close(sparsity.kl_penalty(on_target, rho), 0.0, atol=1e-6)


def test_psnr():
  clean = jnp.full((2, 4, 4, 1), 0.5)
  np.testing.assert_allclose(image_quality.psnr(clean + 0.1, clean), [20.0, 20.0], rtol=1e-5)
  np.testing.assert_allclose(image_quality.psnr(clean, clean), [100.0, 100.0])


def test_linear_autoencoder_learns_the_pca_subspace():
  """Low-rank data plus a little noise: the trained decoder spans the top-3 principal subspace."""
  rng = np.random.default_rng(0)
  n, d, rank = 512, 16, 3
  basis = np.linalg.qr(rng.normal(size=(d, rank)))[0].T
  x = 0.5 + 0.3 * (rng.normal(size=(n, rank)) * [3.0, 2.0, 1.0]) @ basis + 0.003 * rng.normal(size=(n, d))
  images = x.reshape(n, 4, 4, 1).astype(np.float32)
  config = load_config('ae_linear')
  config.model.code_dim = rank
  config.optim.learning_rate = 3e-2
  config.optim.decay_every_epochs = 0
  family = AutoencoderFamily(config, DataSpec((4, 4, 1), 0, 1, 1 * config.train.batch_size))
  batch = {'image': jnp.asarray(images)}
  state = family.init_state(jax.random.PRNGKey(0))
  principal = np.asarray(pca.fit(images, n_components=rank).components).T

  def angles(params):
    decoder = np.asarray(autoencoder.decoder_kernel(params)).T
    return np.degrees(scipy.linalg.subspace_angles(decoder, principal))

  assert angles(state.params).max() > 30.0   # a random subspace is far from it
  steps = jax.jit(lambda s: jax.lax.scan(lambda s, _: family.train_step(s, batch), s, None, length=1000))
  state, metrics = steps(state)
  assert float(metrics['loss'][-1]) < 1e-2 * float(metrics['loss'][0])
  assert angles(state.params).max() < 1.0


def _train(family, state, images, epochs):
  batches = jnp.asarray(images).reshape((-1, 64) + images.shape[1:])
  run = jax.jit(lambda s: jax.lax.scan(
      lambda s, _: jax.lax.scan(lambda s, b: family.train_step(s, {'image': b}), s, batches), s, None,
      length=epochs))
  return run(state)[0]


@pytest.mark.parametrize('name,weights', [('sparse_ae', (0.0, 0.1, 1.0)), ('sparse_ae_kl', (0.0, 1.0, 10.0))])
def test_code_sparsity_rises_with_the_penalty_weight(digits_8x8, name, weights):
  """An overcomplete code (128 units for 64 pixels), 160 steps per weight."""
  train_x, test_x = digits_8x8[:1024], jnp.asarray(digits_8x8[1500:])
  sparsities, errors = [], []
  for weight in weights:
    config = _small(name, code_dim=128, sparsity_weight=weight)
    config.optim.learning_rate = 3e-3
    family = AutoencoderFamily(config, DataSpec((8, 8, 1), 10, 16, 16 * config.train.batch_size))
    state = _train(family, family.init_state(jax.random.PRNGKey(0)), train_x, epochs=10)
    code = family.encode(state.params, test_x)
    sparsities.append(float(jnp.mean(sparsity.fraction_near_zero(code, config.eval.sparsity_threshold))))
    errors.append(float(jnp.mean(image_quality.mean_squared_error(
        family.reconstruct(state.params, test_x), test_x))))
  assert sparsities[0] < sparsities[1] < sparsities[2], sparsities
  assert sparsities[2] > sparsities[0] + 0.3, sparsities
  assert errors[0] < errors[2], errors   # sparsity is paid for in reconstruction


def test_kl_penalty_steps_agree_on_a_device_mesh_and_under_pmap(digits_8x8):
  """The KL penalty uses the mean activation of the whole batch, across replicas too."""
  config = _small('sparse_ae_kl', code_dim=32, sparsity_weight=5.0)
  family = AutoencoderFamily(config, DataSpec((8, 8, 1), 10, 4, 4 * config.train.batch_size))
  state = family.init_state(jax.random.PRNGKey(0))
  batch = {'image': jnp.asarray(digits_8x8[:32])}
  mesh = parallel.make_mesh(4)   # jit over a 4-device mesh: the batch is one global array
  step = parallel.compile_train_step(family.train_step, mesh)
  new_state, metrics = step(parallel.replicate(jax.tree.map(jnp.copy, state), mesh),
                            parallel.shard_batch(batch, mesh))
  expected = jax.device_get((new_state.params, metrics))

  new_state, metrics = pmap_train_step(family)(stack_replicas(state), split_across_devices(batch))
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], (new_state.params, metrics)), expected,
                              atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(new_state.code_cov[0], jax.device_get(state.code_cov) * 0.99 + 0.01 * np.cov(
      np.asarray(family.encode(state.params, batch['image'])), rowvar=False), atol=1e-5)


def test_samples_decode_the_training_codes_gaussian(digits_8x8):
  config = _small('ae_conv', architecture='mlp', hidden_dims=(16,), code_dim=6)
  family = AutoencoderFamily(config, DataSpec((8, 8, 1), 10, 16, 16 * config.train.batch_size))
  state = _train(family, family.init_state(jax.random.PRNGKey(0)), digits_8x8[:1024], epochs=1)
  assert float(jnp.abs(state.code_mean).sum()) > 0
  samples = family.sample(state, jax.random.PRNGKey(1), 7)
  chex.assert_shape(samples, (7, 8, 8, 1))
  assert samples.min() >= 0 and samples.max() <= 1 and np.isfinite(samples).all()


@pytest.mark.parametrize('name,field,value,message', [
    ('sparse_ae', 'code_penalty', 'kl', r"code_penalty='kl' .* needs model.code_activation='sigmoid', got 'relu'"),
    ('ae_conv', 'conv_features', (4, 8, 8), r'config.data.image_size=28 cannot be taken .* multiple of 8'),
    ('sparse_ae', 'architecture', 'resnet', r"config.model.architecture='resnet' is not allowed"),
    ('sparse_ae', 'hidden_dims', (0,), r'config.model.hidden_dims=\(0,\) must be a sequence'),
    ('ae_conv', 'code_dim', 0, r'config.model.code_dim=0 must be >= 1'),
    ('sparse_ae', 'sparsity_weight', -1.0, r'config.model.sparsity_weight=-1.0 is out of range'),
])
def test_bad_model_fields_are_named(name, field, value, message):
  config = load_config(name)
  config.model[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    AutoencoderFamily.validate(config)


@pytest.mark.parametrize('name', ['ae_conv', 'sparse_ae', 'sparse_ae_kl'])
def test_tiny_real_training_lowers_the_loss(name):
  """The smoke config on its real data, through the compiled data-parallel step (evaluation is
  exercised by the end-to-end runs below, whose configs share these code paths)."""
  config = load_config(name)
  dataset = data.load(**config.data)
  batches = data.BatchSchedule(dataset.train, config.train.batch_size, config.seed)
  family = AutoencoderFamily(config, DataSpec.of(dataset, batches))
  mesh = parallel.make_mesh()
  step = parallel.compile_train_step(family.train_step, mesh)
  state = parallel.replicate(family.init_state(jax.random.PRNGKey(0)), mesh)
  losses = []
  for index in range(2 * batches.steps_per_epoch):
    state, metrics = step(state, parallel.shard_batch(batches(index), mesh))
    losses.append(float(metrics['loss']))
  assert np.isfinite(losses).all()
  assert np.mean(losses[-4:]) < np.mean(losses[:4])


@pytest.mark.parametrize('name', ['ae_linear', 'dae'])
def test_end_to_end_smoke_run(name, tmp_path):
  config = load_config(name)
  report = train.train_and_evaluate(config, tmp_path)
  records = metric_writers.read_metrics(tmp_path, 'train')
  assert records[-1]['reconstruction'] < records[0]['reconstruction']
  metrics = report['metrics']
  out = tmp_path / 'eval' / f'step_{config.train.num_steps}'
  assert (out / 'code_histograms.png').is_file() and (out / 'samples.png').is_file()
  probe = json.loads((out / feature_probe.TABLE_JSON).read_text())
  assert [r['key'] for r in probe['results']] == ['raw', 'pca', 'autoencoder']
  assert [r['dim'] for r in probe['results']] == [784, config.model.code_dim, config.model.code_dim]
  assert 0.0 <= metrics['code_sparsity'] <= 1.0 and metrics['output_psnr'] > 0
  if name == 'dae':
    assert (out / 'denoising.png').is_file()
    assert metrics['noisy_input_psnr'] < 20.0
  else:
    assert (out / 'reconstructions.png').is_file()
  if name == 'ae_linear':
    assert 0.0 <= metrics['pca_subspace_max_angle_deg'] <= 90.0
