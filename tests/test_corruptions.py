"""Input corruptions of the denoising autoencoder: their statistics, ranges and config checks."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.objectives import corruptions
from gen_jax.runtime import config_checks
from tests.conftest import load_config


def _cfg(name, **fields):
  """A whole corruption block, as the config holds it: every corruption's parameters."""
  base = dict(name=name, std=0.1, probability=0.3, block_size=5, opacity=0.5)
  base.update(fields)
  return base


GREY = jnp.full((64, 28, 28, 1), 0.5, jnp.float32)


def test_gaussian_noise_has_the_configured_std():
  noisy = corruptions.corrupt(jax.random.PRNGKey(0), GREY, **_cfg('gaussian', std=0.1))
  noise = np.asarray(noisy - GREY)
  # 50,176 draws: the sample std is within 1% of 0.1 (its standard error is 0.3%); 0.5 ± 5σ never clips.
  np.testing.assert_allclose(noise.std(), 0.1, rtol=0.01)
  assert abs(noise.mean()) < 0.002


def test_gaussian_noise_is_clipped_to_the_image_range():
  noisy = corruptions.corrupt(jax.random.PRNGKey(0), GREY, **_cfg('gaussian', std=1.0))
  assert float(noisy.min()) == 0.0 and float(noisy.max()) == 1.0


def test_salt_and_pepper_sets_half_of_the_fraction_to_each_extreme():
  p = 0.3
  noisy = np.asarray(corruptions.corrupt(jax.random.PRNGKey(1), GREY, **_cfg('salt_and_pepper', probability=p)))
  pepper, salt, kept = np.mean(noisy == 0.0), np.mean(noisy == 1.0), np.mean(noisy == 0.5)
  tolerance = 4 * np.sqrt(p / 2 * (1 - p / 2) / noisy.size)   # four binomial standard errors
  assert abs(pepper - p / 2) < tolerance and abs(salt - p / 2) < tolerance
  assert pepper + salt + kept == 1.0


def test_salt_and_pepper_draws_once_per_pixel_for_every_channel():
  rgb = jnp.full((8, 16, 16, 3), 0.5)
  noisy = np.asarray(corruptions.corrupt(jax.random.PRNGKey(2), rgb, **_cfg('salt_and_pepper', probability=0.5)))
  assert np.all(noisy == noisy[..., :1])


def test_masking_drops_the_configured_fraction():
  p = 0.25
  noisy = np.asarray(corruptions.corrupt(jax.random.PRNGKey(3), GREY, **_cfg('masking', probability=p)))
  assert abs(np.mean(noisy == 0.0) - p) < 4 * np.sqrt(p * (1 - p) / noisy.size)
  assert np.all((noisy == 0.0) | (noisy == 0.5))


def test_block_occlusion_hides_one_square_per_image():
  ones = jnp.ones((32, 12, 12, 1))
  noisy = np.asarray(corruptions.corrupt(jax.random.PRNGKey(4), ones, **_cfg('block_occlusion', block_size=4)))
  corners = set()
  for image in noisy[..., 0]:
    rows, cols = np.nonzero(image == 0)
    assert len(rows) == 16
    assert rows.max() - rows.min() == 3 and cols.max() - cols.min() == 3
    corners.add((rows.min(), cols.min()))
  assert len(corners) > 10   # the block moves from image to image


def test_watermark_is_a_fixed_pattern_at_the_configured_opacity():
  x = jax.random.uniform(jax.random.PRNGKey(5), (4, 28, 28, 1))
  cfg = _cfg('watermark', opacity=0.6)
  first = corruptions.corrupt(jax.random.PRNGKey(6), x, **cfg)
  again = corruptions.corrupt(jax.random.PRNGKey(7), x, **cfg)
  chex.assert_trees_all_close(first, again)
  mark = corruptions.watermark_pattern(28, 28)
  assert 0.05 < mark.mean() < 0.4
  chex.assert_trees_all_close(first, x + 0.6 * mark * (1 - x), atol=1e-6)
  untouched = np.broadcast_to(mark == 0, x.shape)
  np.testing.assert_array_equal(np.asarray(first)[untouched], np.asarray(x)[untouched])


@pytest.mark.parametrize('name', sorted(corruptions.CORRUPTIONS))
def test_every_corruption_keeps_shape_dtype_and_range(name):
  x = jax.random.uniform(jax.random.PRNGKey(8), (6, 16, 16, 1))
  noisy = jax.jit(lambda rng, x: corruptions.corrupt(rng, x, **_cfg(name, std=0.5)))(jax.random.PRNGKey(9), x)
  chex.assert_shape(noisy, x.shape)
  chex.assert_type(noisy, jnp.float32)
  assert float(noisy.min()) >= 0.0 and float(noisy.max()) <= 1.0
  if name == 'none':
    chex.assert_trees_all_close(noisy, x)
  else:
    assert not np.allclose(noisy, x)


@pytest.mark.parametrize('field,value,message', [
    ('name', 'speckle', r"config.model.corruption.name='speckle' is not allowed; choose one of \['none'"),
    ('probability', 1.5, r'config.model.corruption.probability=1.5 is out of range'),
    ('std', -0.1, r'config.model.corruption.std=-0.1 is out of range'),
    ('block_size', 29, r'config.model.corruption.block_size=29 is larger than the images'),
])
def test_bad_corruption_fields_are_named(field, value, message):
  config = load_config('dae')
  config.model.corruption[field] = value
  with pytest.raises(config_checks.ConfigError, match=message):
    corruptions.validate(config, 'model.corruption')
