"""Neural style transfer: its losses, optimiser, colour preservation, pictures, weight files and
runs (random VGG19 filters throughout: no weights are downloaded)."""

import hashlib
import json
import os
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import style_transfer as style_config
from gen_jax import stylize
from gen_jax.data import images, vgg19_weights
from gen_jax.families import style_transfer as family
from gen_jax.models import style_transfer as vgg
from gen_jax.objectives import style_losses
from gen_jax.runtime.config_checks import ConfigError


def make_transfer(**changes) -> family.StyleTransfer:
  """The smoke config's transfer (random filters, 32 pixels), with `changes`: `styles` (pictures),
  `optimiser` (its name), `line_search`, `dispatch_form`, `init_picture` (the picture config.init
  names), and top-level fields."""
  config = style_config.get_config('smoke')
  styles = changes.pop('styles', ['skimage:coffee'])
  for field in ('line_search', 'dispatch_form'):
    config.optimiser[field] = changes.pop(field, config.optimiser[field])
  config.optimiser.name = changes.pop('optimiser', config.optimiser.name)
  init = changes.pop('init_picture', None)
  for field, value in changes.items():
    config[field] = value
  layers = tuple(config.model.content_layers) + tuple(config.model.style_layers)
  params, weights_format = family.vgg_parameters('random', '', config.seed, layers)
  return family.StyleTransfer(config, params, weights_format, images.read_image(config.content),
                              [images.read_image(s) for s in styles], init)


def losses(transfer, targets, image):
  """The weighted losses of an (H, W, C) image: a dispatch of no iterations (compiled once)."""
  _, state = transfer.start(1)
  return transfer.iterate(targets, family.from_image(image, transfer.image_range), state, 0)[2]


def test_gram_matrix_matches_numpy():
  features = np.random.default_rng(0).normal(size=(2, 5, 7, 6)).astype(np.float32)
  flat = features.reshape(2, 35, 6)
  expected = np.stack([f.T @ f for f in flat]) / (5 * 7 * 6)
  np.testing.assert_allclose(style_losses.gram_matrix(jnp.asarray(features)), expected, rtol=1e-5)


def test_each_loss_is_zero_at_its_target():
  features = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 4))
  assert float(style_losses.content_loss(features, features)) == 0.0
  assert float(style_losses.style_loss(features, style_losses.gram_matrix(features))) == 0.0
  assert float(style_losses.total_variation(jnp.full((1, 8, 8, 3), 0.3))) == 0.0
  transfer = make_transfer()
  content = transfer.scale_inputs(1)[0]
  only_content = family.compute_targets(transfer.objective, transfer.vgg_params, content, [content], (1.0,))
  parts = losses(transfer, only_content, content)
  # (exactly zero but for the sigmoid range's round trip through logits)
  assert float(parts['content']) < 1e-9 and float(parts['style']) < 1e-9


def test_the_clamp_keeps_pixels_in_range_and_restarts_the_optimiser_only_when_it_moves_one():
  optimiser = optax.lbfgs()
  inside = jnp.full((4, 4, 3), 0.5)
  used = jax.tree.map(lambda x: x + 1 if jnp.issubdtype(x.dtype, jnp.floating) else x,
                      optimiser.init(inside))
  clamped, state = family.clamp_and_restart(inside.at[0, 0, 0].set(1.7).at[1, 1, 1].set(-0.2),
                                            used, optimiser)
  assert float(clamped.max()) == 1.0 and float(clamped.min()) == 0.0
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state, optimiser.init(clamped)))
  untouched, kept = family.clamp_and_restart(inside, used, optimiser)
  assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), kept, used))
  np.testing.assert_array_equal(untouched, inside)


def test_the_sigmoid_range_maps_pixels_to_logits_and_back():
  picture = jnp.asarray(np.random.default_rng(0).uniform(size=(5, 7, 3)), jnp.float32)
  logits = family.from_image(picture, 'sigmoid')
  np.testing.assert_allclose(family.to_image(logits, 'sigmoid'),
                             jnp.clip(picture, family.SIGMOID_MARGIN, 1 - family.SIGMOID_MARGIN), atol=1e-6)


def test_the_image_starts_from_the_content_noise_or_a_given_picture():
  given = images.read_image('skimage:astronaut')
  for init, picture in (('content', None), ('noise', None), ('skimage:astronaut', given)):
    transfer = make_transfer(init=init, init_picture=picture)
    image = transfer.optimised_image(transfer.start(0)[0])
    assert transfer.sizes == [(10, 16), (21, 32)] and image.shape == (10, 16, 3)
    if init == 'noise':
      assert 0.2 < float(image.std()) < 0.4 and 0 <= float(image.min()) < float(image.max()) <= 1
    else:
      expected = images.resize(picture if picture is not None else transfer.content, 10, 16)
      margin = family.SIGMOID_MARGIN
      np.testing.assert_allclose(image, np.clip(expected, margin, 1 - margin), atol=1e-5)


def test_vgg_returns_its_named_layers_and_pools_by_max_or_average():
  params = vgg.random_params(0, ('pool1',))
  picture = jax.random.normal(jax.random.PRNGKey(0), (1, 9, 7, 3))
  for pooling, reduce in (('max', np.max), ('average', np.mean)):
    out = vgg.VGG19Features(outputs=('relu1_2', 'conv1_1', 'pool1'), pooling=pooling).apply(
        {'params': params}, picture)
    assert list(out) == ['relu1_2', 'conv1_1', 'pool1'] and out['pool1'].shape == (1, 4, 3, 64)
    blocks = np.asarray(out['relu1_2'])[:, :8, :6].reshape(1, 4, 2, 3, 2, 64)
    np.testing.assert_allclose(out['pool1'], reduce(blocks, axis=(2, 4)), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match='conv6_1'):
    vgg.VGG19Features(outputs=('conv6_1',)).apply({'params': params}, picture)


@pytest.mark.parametrize('optimiser, line_search', [('lbfgs', 'zoom'), ('lbfgs', 'none'),
                                                    ('adam', 'zoom')])
def test_a_dispatch_counts_the_loss_evaluations_it_made(monkeypatch, optimiser, line_search):
  # Every evaluation of the loss maps the variable to the image once; so does the dispatch's final
  # measurement of the losses, which is not an iteration's.
  calls = []
  to_image = family.to_image

  def counted(variable, image_range):
    jax.debug.callback(lambda: calls.append(1))
    return to_image(variable, image_range)
  monkeypatch.setattr(family, 'to_image', counted)
  jax.clear_caches()   # a trace without the counter would be reused
  transfer = make_transfer(init='noise', optimiser=optimiser, line_search=line_search)
  targets = transfer.targets(1)
  variable, state = transfer.start(1)
  *_, evaluations = jax.block_until_ready(transfer.iterate(targets, variable, state, 6))
  jax.effects_barrier()
  assert int(evaluations) == len(calls) - 1
  if optimiser == 'adam' or line_search == 'none':
    assert int(evaluations) == 6
  else:   # the first iteration evaluates at the start, then each line search at least once
    assert int(evaluations) >= 7


def test_lbfgs_lowers_the_loss_and_beats_as_many_adam_steps():
  lbfgs = make_transfer(init='noise')
  targets = lbfgs.targets(1)
  variable, state = lbfgs.start(1)
  before = float(losses(lbfgs, targets, lbfgs.optimised_image(variable))['total'])
  after_lbfgs = lbfgs.iterate(targets, variable, state, 12)[2]['total']
  adam = make_transfer(init='noise', optimiser='adam')
  after_adam = adam.iterate(targets, *adam.start(1), 12)[2]['total']
  assert float(after_lbfgs) < 0.5 * before
  assert float(after_lbfgs) < float(after_adam) < before


# The two forms are different programs that round differently. L-BFGS with a fixed step amplifies
# that about 300-fold an iteration here (6e-8 after one, 2e-5 after two, 3e-3 after three), so
# it is compared after two; with the zoom line search the images stay bit-identical after five.
@pytest.mark.parametrize('line_search, image_range, iterations',
                         [('zoom', 'sigmoid', 5), ('none', 'clamp', 2)])
def test_a_dispatch_as_one_loop_or_as_calls_of_one_iteration_gives_the_same_image(
    line_search, image_range, iterations):
  results = []
  for form in ('loop', 'calls'):
    transfer = make_transfer(init='noise', line_search=line_search, dispatch_form=form,
                             image_range=image_range)
    targets = transfer.targets(1)
    results.append(transfer.iterate(targets, *transfer.start(1), iterations))
  chex.assert_trees_all_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-4)
  chex.assert_trees_all_close(results[0][2], results[1][2], rtol=1e-4)
  assert int(results[0][3]) == int(results[1][3])


def test_lbfgs_without_a_line_search_lowers_the_loss_one_evaluation_an_iteration():
  # Its pairing in PyTorch's tutorial: pixels clamped rather than optimised as logits.
  transfer = make_transfer(init='noise', line_search='none', image_range='clamp')
  targets = transfer.targets(1)
  variable, state = transfer.start(1)
  before = float(losses(transfer, targets, transfer.optimised_image(variable))['total'])
  _, _, after, evaluations = transfer.iterate(targets, variable, state, 12)
  assert float(after['total']) < 0.5 * before and int(evaluations) == 12


def test_gradients_are_finite_and_not_zero():
  transfer = make_transfer()
  targets = transfer.targets(1)
  image = jax.random.uniform(jax.random.PRNGKey(1), transfer.sizes[1] + (3,))
  total = lambda x: sum(transfer.objective.parts(transfer.vgg_params, targets, x).values())
  gradient = jax.jit(jax.grad(total))(image)
  assert bool(jnp.all(jnp.isfinite(gradient))) and float(jnp.abs(gradient).max()) > 0


def test_a_blend_weighted_one_and_zero_is_the_first_style_alone():
  single = make_transfer().targets(1)
  blended = make_transfer(styles=['skimage:coffee', 'skimage:astronaut'], style_weights=(1.0, 0.0)).targets(1)
  mixed = make_transfer(styles=['skimage:coffee', 'skimage:astronaut'], style_weights=(1.0, 1.0)).targets(1)
  for layer in single['style']:
    np.testing.assert_allclose(blended['style'][layer], single['style'][layer], rtol=1e-6)
  assert not np.allclose(mixed['style']['conv1_1'], single['style']['conv1_1'], rtol=1e-3)


def test_colour_preservation_keeps_the_contents_chrominance():
  # Adam compiles faster; the clamped range checks that the pixels themselves stay in [0, 1].
  transfer = make_transfer(preserve_colour=True, optimiser='adam', image_range='clamp')
  targets = transfer.targets(1)
  variable, state = transfer.start(1)
  assert variable.shape[-1] == 1   # the optimisation runs on luminance
  variable = transfer.iterate(targets, variable, state, 4)[0]
  assert 0.0 <= float(variable.min()) < float(variable.max()) <= 1.0
  result = transfer.picture(variable)
  content = images.resize(transfer.content, *result.shape[:2])
  inside = np.all((result > 0.001) & (result < 0.999), axis=-1)
  assert inside.mean() > 0.5
  chrominance = lambda rgb: (rgb @ family.RGB_TO_YIQ.T)[..., 1:]
  np.testing.assert_allclose(chrominance(result)[inside], chrominance(content)[inside], atol=1e-4)
  assert not np.allclose(result, content, atol=1e-2)   # the luminance did change


def test_a_bad_picture_is_named(tmp_path):
  with pytest.raises(images.DataError, match='no such image file .*nowhere.png'):
    images.read_image(str(tmp_path / 'nowhere.png'), 'config.content')
  (tmp_path / 'notes.png').write_text('not a picture')
  with pytest.raises(images.DataError, match='config.style: .*notes.png.* is not a readable image'):
    images.read_image(str(tmp_path / 'notes.png'), 'config.style')
  with pytest.raises(images.DataError, match="ships no picture 'kitten'"):
    images.read_image('skimage:kitten', 'config.style')
  grey = images.read_image('skimage:gravel')
  assert grey.shape == (512, 512, 3) and grey.dtype == np.float32 and 0 <= grey.min() < grey.max() <= 1


def _random_layers(seed=0):
  """Random weights of VGG19's 16 convolutions, Flax layout {name: {kernel HWIO, bias}}."""
  generator = np.random.default_rng(seed)
  return {name: {'kernel': generator.standard_normal(layer['kernel'].shape, np.float32),
                 'bias': generator.standard_normal(layer['bias'].shape, np.float32)}
          for name, layer in vgg.random_params(0).items()}


def _conv1_1(params, preprocessed):
  network = vgg.VGG19Features(outputs=('conv1_1',))
  return np.asarray(network.apply({'params': params}, jnp.asarray(preprocessed))['conv1_1'])


def test_keras_h5_weights_land_in_their_layers_and_read_bgr(tmp_path):
  h5py = pytest.importorskip('h5py')
  layers = _random_layers()
  path = tmp_path / vgg19_weights.KERAS_FILE.name
  with h5py.File(path, 'w') as store:   # the Keras applications layout: a group per layer
    for name, layer in layers.items():
      block, index = name[len('conv'):].split('_')
      group = store.create_group(f'block{block}_conv{index}')
      group[f'block{block}_conv{index}_W_1:0'] = layer['kernel']
      group[f'block{block}_conv{index}_b_1:0'] = layer['bias']
  params = vgg19_weights.read_keras_h5(path)
  for name in vgg19_weights.CONV_LAYERS:
    np.testing.assert_array_equal(params[name]['kernel'], layers[name]['kernel'])
    np.testing.assert_array_equal(params[name]['bias'], layers[name]['bias'])
  picture = np.random.default_rng(1).uniform(size=(1, 6, 6, 3)).astype(np.float32)
  output = _conv1_1(params, vgg19_weights.preprocess(jnp.asarray(picture), 'keras'))
  bgr = picture[0, ..., ::-1] * 255.0 - np.array(vgg19_weights.KERAS_MEAN_BGR, np.float32)
  expected = np.einsum('hwc,hwco->o', bgr[1:4, 2:5], layers['conv1_1']['kernel']) + layers['conv1_1']['bias']
  np.testing.assert_allclose(output[0, 2, 3], expected, rtol=1e-4, atol=1e-2)
  with pytest.raises(vgg19_weights.WeightsError, match=f'{path}.* fails its checksum'):
    vgg19_weights.load('keras', tmp_path, download=False)


def test_torchvision_weights_are_transposed_into_their_layers_and_read_rgb(tmp_path):
  torch = pytest.importorskip('torch')
  layers = _random_layers(seed=2)
  state = {}
  for name, index in zip(vgg19_weights.CONV_LAYERS, vgg19_weights.TORCH_FEATURE_INDICES):
    state[f'features.{index}.weight'] = torch.from_numpy(layers[name]['kernel'].transpose(3, 2, 0, 1).copy())
    state[f'features.{index}.bias'] = torch.from_numpy(layers[name]['bias'])
  state['classifier.0.weight'] = torch.zeros(4, 4)   # the head, which is not kept
  source = tmp_path / vgg19_weights.TORCHVISION_FILE.name
  torch.save(state, source)
  npz = tmp_path / 'converted' / vgg19_weights.TORCHVISION_NPZ
  vgg19_weights.main([f'--torch_state_dict={source}', f'--output={npz}', '--skip_checksum'])
  params = vgg19_weights.read_npz(npz, check_checksum=False)
  for name in vgg19_weights.CONV_LAYERS:
    np.testing.assert_array_equal(params[name]['kernel'], layers[name]['kernel'])
    np.testing.assert_array_equal(params[name]['bias'], layers[name]['bias'])
  picture = np.random.default_rng(3).uniform(size=(1, 6, 6, 3)).astype(np.float32)
  output = _conv1_1(params, vgg19_weights.preprocess(jnp.asarray(picture), 'torchvision'))
  normalised = (torch.from_numpy(picture).permute(0, 3, 1, 2) - torch.tensor(vgg19_weights.IMAGENET_MEAN_RGB)[:, None, None]) \
      / torch.tensor(vgg19_weights.IMAGENET_STD_RGB)[:, None, None]
  expected = torch.nn.functional.conv2d(normalised, state['features.0.weight'], state['features.0.bias'], padding=1)
  np.testing.assert_allclose(output, expected.permute(0, 2, 3, 1).numpy(), rtol=1e-4, atol=1e-4)
  with pytest.raises(vgg19_weights.WeightsError, match='was not converted from the published vgg19-dcbb9e9d.pth'):
    vgg19_weights.read_npz(npz)
  with pytest.raises(vgg19_weights.WeightsError, match='fails its checksum'):
    vgg19_weights.convert_torchvision(source, tmp_path / 'checked.npz')


def test_weights_are_fetched_once_and_verified_and_offline_the_error_says_where_to_put_them(tmp_path, monkeypatch):
  source = tmp_path / 'published.bin'
  source.write_bytes(b'weights' * 1000)
  published = vgg19_weights.PublishedFile('vgg.bin', source.as_uri(), 'md5',
                                          hashlib.md5(source.read_bytes()).hexdigest())
  cache = tmp_path / 'cache'
  assert vgg19_weights.fetch(published, cache).read_bytes() == source.read_bytes()
  corrupt = vgg19_weights.PublishedFile('bad.bin', source.as_uri(), 'md5', '0' * 32)
  with pytest.raises(vgg19_weights.WeightsError, match='fails its checksum'):
    vgg19_weights.fetch(corrupt, cache)
  assert sorted(p.name for p in cache.iterdir()) == ['vgg.bin']

  def offline(*args, **kwargs):
    raise urllib.error.URLError('no network')
  monkeypatch.setattr(urllib.request, 'urlopen', offline)
  for weights_format, published in (('keras', vgg19_weights.KERAS_FILE),
                                    ('torchvision', vgg19_weights.TORCHVISION_FILE)):
    with pytest.raises(vgg19_weights.WeightsError) as error:
      vgg19_weights.load(weights_format, cache)
    message = str(error.value)
    assert published.name in message and str(cache) in message and published.url in message
  assert vgg19_weights.present_format(cache) is None


def test_bad_config_values_are_refused_in_one_line():
  config = style_config.get_config('smoke')
  stylize.validate(config)
  for field, value, expected in (
      ('model.content_layers', ('conv9_1',), 'VGG19 layer names'),
      ('style_weights', (1.0, 2.0), '1 non-negative numbers, one per style picture'),
      ('optimiser.name', 'sgd', "choose one of \\['lbfgs', 'adam'\\]"),
      ('optimiser.line_search', 'backtracking', "choose one of \\['zoom', 'none'\\]"),
      ('optimiser.dispatch_form', 'scan', "choose one of \\['auto', 'loop', 'calls'\\]"),
      ('model.features', 'imagenet', 'choose one of'),
      ('train.num_steps', 4, 'must exceed the coarse'),
      ('content', '', 'must name a picture')):
    broken = style_config.get_config('smoke')
    node = broken
    *parents, last = field.split('.')
    for part in parents:
      node = node[part]
    node[last] = value
    with pytest.raises(ConfigError, match=expected):
      stylize.validate(broken)


def test_a_run_writes_its_pictures_and_resumes_where_it_stopped(tmp_path):
  config = style_config.get_config('smoke')
  config.train.num_steps = 6
  first = stylize.stylize(config, tmp_path / 'resumed')
  assert first['step'] == 6 and 'NOT the pretrained network' in first['metrics']['features']
  config.train.num_steps = 10   # a longer run continues the finished one
  report = stylize.stylize(config, tmp_path / 'resumed')
  workdir = tmp_path / 'resumed'
  for name in ('result.png', 'losses.png', 'sheet.png', 'config.json', 'metrics.jsonl',
               'intermediate/step_000004.png', 'intermediate/step_000008.png'):
    assert (workdir / name).is_file(), name
  records = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in records] == [2, 4, 6, 8, 10]
  assert sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()) == [6, 8, 10]
  uninterrupted = stylize.stylize(config, tmp_path / 'straight')
  assert report['metrics']['total'] == pytest.approx(uninterrupted['metrics']['total'], rel=1e-5)
  np.testing.assert_allclose(images.read_image(report['result']),
                             images.read_image(uninterrupted['result']), atol=1.5 / 255)
  assert images.read_image(report['result']).shape == (21, 32, 3)   # chelsea's 300×451, fitted to 32


def test_the_command_line_runs_style_transfer_in_train_mode_only(capsys):
  from gen_jax import main as entry
  config = pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'style_transfer.py'
  entry.parse_command_line(['main', f'--config={config}:smoke', '--mode=sample'])
  try:
    with pytest.raises(SystemExit):
      entry.main(['main'])
  finally:
    entry.FLAGS.unparse_flags()
  assert 'style transfer has only --mode=train' in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_from_the_command_line_keeps_nothing_in_the_compilation_cache(tmp_path):
  # Its programs hold VGG's weights as constants: each cache entry would hold them again.
  root = pathlib.Path(__file__).resolve().parents[1]
  cache = tmp_path / 'named_cache'
  env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(cache))
  subprocess.run([sys.executable, '-m', 'gen_jax.main', f'--config={root}/configs/style_transfer.py:smoke',
                  f'--workdir={tmp_path}/run', '--config.train.num_steps=6'],
                 cwd=root, env=env, check=True, capture_output=True, text=True, timeout=300)
  assert (tmp_path / 'run' / 'result.png').is_file()
  assert not cache.exists() or not any(cache.iterdir())
  assert not (tmp_path / 'compilation_cache').exists()
