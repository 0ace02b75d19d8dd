"""Input corruptions for denoising autoencoders, chosen by name in `config.model.corruption`.

Each corruption maps (rng, clean images (N, H, W, C) in [0, 1], its own parameters) to corrupted
images in [0, 1]. Pixel noises (Gaussian, salt-and-pepper, masking) are drawn independently per pixel;
the structured ones (block occlusion, watermark) hide a region or overlay a known pattern, the
case the course material names for noise whose form is known in advance.
"""

from __future__ import annotations

from typing import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.runtime import config_checks

Corruption = Callable[..., jax.Array]


def _pixel_uniform(rng: jax.Array, x: jax.Array) -> jax.Array:
  """One uniform draw per pixel, shared by a pixel's channels."""
  return jax.random.uniform(rng, x.shape[:-1] + (1,), x.dtype)


def gaussian(rng: jax.Array, x: jax.Array, std: float) -> jax.Array:
  """x + N(0, std²) per pixel and channel, clipped back to [0, 1] so the input stays an image."""
  return jnp.clip(x + std * jax.random.normal(rng, x.shape, x.dtype), 0.0, 1.0)


def salt_and_pepper(rng: jax.Array, x: jax.Array, probability: float) -> jax.Array:
  """Each pixel becomes 0 with probability p/2 and 1 with probability p/2."""
  u = _pixel_uniform(rng, x)
  p = probability
  return jnp.where(u < p / 2, 0.0, jnp.where(u < p, 1.0, x)).astype(x.dtype)


def masking(rng: jax.Array, x: jax.Array, probability: float) -> jax.Array:
  """Each pixel is set to 0 (dropped) with probability p."""
  return jnp.where(_pixel_uniform(rng, x) < probability, 0.0, x).astype(x.dtype)


def block_occlusion(rng: jax.Array, x: jax.Array, block_size: int) -> jax.Array:
  """A block_size × block_size square at a uniformly random place in each image is set to 0."""
  _, height, width, _ = x.shape
  size = block_size
  top_rng, left_rng = jax.random.split(rng)
  top = jax.random.randint(top_rng, (x.shape[0], 1, 1, 1), 0, height - size + 1)
  left = jax.random.randint(left_rng, (x.shape[0], 1, 1, 1), 0, width - size + 1)
  rows = jnp.arange(height)[None, :, None, None]
  cols = jnp.arange(width)[None, None, :, None]
  inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
  return jnp.where(inside, 0.0, x).astype(x.dtype)


def watermark_pattern(height: int, width: int) -> np.ndarray:
  """A fixed (H, W, 1) pattern in {0, 1}: a ring with a diagonal stroke through it."""
  rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
  cy, cx = (height - 1) / 2, (width - 1) / 2
  radius = np.hypot(rows - cy, cols - cx)
  outer = 0.42 * min(height, width)
  ring = np.abs(radius - outer) <= max(0.6, 0.04 * min(height, width))
  stroke = (np.abs((rows - cy) - (cols - cx)) <= max(0.6, 0.03 * min(height, width))) & (radius <= outer)
  return (ring | stroke).astype(np.float32)[..., None]


def watermark(rng: jax.Array, x: jax.Array, opacity: float) -> jax.Array:
  """The fixed watermark blended over every image: x + opacity · mark · (1 - x)."""
  del rng
  mark = jnp.asarray(watermark_pattern(x.shape[1], x.shape[2]), x.dtype)
  return x + opacity * mark * (1.0 - x)


def identity(rng: jax.Array, x: jax.Array) -> jax.Array:
  """No corruption: a plain (not denoising) autoencoder."""
  del rng
  return x


# Each corruption with the parameters (fields of the config block) it reads.
CORRUPTIONS: dict[str, tuple[Corruption, tuple[str, ...]]] = {
    'none': (identity, ()),
    'gaussian': (gaussian, ('std',)),
    'salt_and_pepper': (salt_and_pepper, ('probability',)),
    'masking': (masking, ('probability',)),
    'block_occlusion': (block_occlusion, ('block_size',)),
    'watermark': (watermark, ('opacity',)),
}


def validate(config, field: str) -> None:
  """Checks the corruption block `config.<field>` (name, std, probability, block_size, opacity)."""
  config_checks.require_choice(config, f'{field}.name', CORRUPTIONS)
  config_checks.require_number(config, f'{field}.std', low=0)
  config_checks.require_number(config, f'{field}.probability', low=0, high=1)
  config_checks.require_number(config, f'{field}.opacity', low=0, high=1)
  size = config_checks.require_int(config, f'{field}.block_size', minimum=1)
  image_size = config_checks.get_field(config, 'data.image_size')
  if size > image_size:
    raise config_checks.ConfigError(
        f'config.{field}.block_size={size} is larger than the images (data.image_size={image_size})')


def corrupt(rng: jax.Array, x: jax.Array, name: str, **parameters) -> jax.Array:
  """Applies the corruption `name` to a (N, H, W, C) batch; `parameters` may hold the other
  corruptions' parameters too (a whole config block), each corruption reads its own."""
  chex.assert_rank(x, 4)
  corruption, reads = CORRUPTIONS[name]
  noisy = corruption(rng, x, **{field: parameters[field] for field in reads})
  chex.assert_equal_shape([noisy, x])
  return noisy
