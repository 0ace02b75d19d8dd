"""The image pool of CycleGAN (Shrivastava et al., 2017): a critic is shown a mix of the newest
translations and older ones, so that it does not forget what the generator made before and the
two do not chase each other in circles.

The pool is part of the training state: `pool_size` earlier images, how many slots are filled,
and its own PRNG key. `query` is a pure function of that state and the new images, so the
training step stays one jit-compiled function and a resumed run draws exactly what an
uninterrupted one draws. Its rule, image by image in batch order, is the paper's
implementation's: while the pool is not full, the image is stored and shown; once full, with
probability 1/2 the image is shown as it is, otherwise it replaces a uniformly chosen stored
image, which is shown in its place.

Under `jax.pmap` the replicas gather the whole batch, apply the same rule with the same key, and
keep their own part of the result: their pools stay identical, and equal to a one-device run's.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct

SWAP_PROBABILITY = 0.5


class ImagePool(struct.PyTreeNode):
  """`images` (pool_size, H, W, C), the first `count` of them filled; `rng` the pool's own key."""

  images: jax.Array
  count: jax.Array
  rng: jax.Array

  @classmethod
  def create(cls, pool_size: int, image_shape: tuple[int, ...], rng: jax.Array) -> 'ImagePool':
    return cls(jnp.zeros((pool_size,) + tuple(image_shape), jnp.float32),
               jnp.zeros((), jnp.int32), rng)

  @property
  def size(self) -> int:
    return self.images.shape[0]


def _query_global(pool: ImagePool, images: jax.Array) -> tuple[ImagePool, jax.Array]:
  """The rule on a whole batch, one image after another (a scan: later images see the pool as
  the earlier ones left it)."""
  rng, step_rng = jax.random.split(pool.rng)
  swap_rng, slot_rng = jax.random.split(step_rng)
  swaps = jax.random.bernoulli(swap_rng, SWAP_PROBABILITY, (images.shape[0],))
  slots = jax.random.randint(slot_rng, (images.shape[0],), 0, pool.size)

  def one(carry, inputs):
    stored, count = carry
    image, swap, slot = inputs
    filling = count < pool.size
    # Filling: store at `count`, show the image. Full: on a swap, store at `slot` and show what
    # was there; otherwise store nothing and show the image.
    target = jnp.where(filling, count, slot)
    old = stored[target]
    replace = filling | swap
    stored = stored.at[target].set(jnp.where(replace, image, old))
    shown = jnp.where(filling | ~swap, image, old)
    return (stored, count + filling.astype(count.dtype)), shown

  (stored, count), shown = jax.lax.scan(one, (pool.images, pool.count), (images, swaps, slots))
  return pool.replace(images=stored, count=count, rng=rng), shown


def query(pool: ImagePool, images: jax.Array,
          axis_name: str | None = None) -> tuple[ImagePool, jax.Array]:
  """The updated pool and the images to show the critic, one for each of `images` ((N, H, W, C);
  this replica's part of the batch under pmap with `axis_name`). A pool of size 0 shows the
  images themselves."""
  chex.assert_equal_shape_suffix([pool.images, images], 3)
  if pool.size == 0:
    return pool, images
  images = jax.lax.stop_gradient(images)
  if axis_name is None:
    return _query_global(pool, images)
  everything = jax.lax.all_gather(images, axis_name, tiled=True)
  pool, shown = _query_global(pool, everything)
  start = jax.lax.axis_index(axis_name) * images.shape[0]
  return pool, jax.lax.dynamic_slice_in_dim(shown, start, images.shape[0])
