"""A convolution computed as batch slices is the same convolution: outputs and gradients."""

import chex
import jax
import jax.numpy as jnp
import pytest
from jax import lax

from gen_jax.nn.batch_slices import batch_sliced
from gen_jax.nn.conv_transpose import SubPixelConvTranspose


def _conv(conv_fn):
  return lambda x, w: conv_fn(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('batch,slices', [(6, 2), (6, 3), (5, 2)])   # 5: not divisible, unsliced
def test_sliced_convolution_equals_the_convolution(batch, slices):
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, 8, 8, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (4, 4, 3, 5))
  target = jax.random.normal(jax.random.PRNGKey(2), (batch, 4, 4, 5))

  def loss(conv_fn):
    return lambda x, w: jnp.sum(jnp.sin(_conv(conv_fn)(x, w)) * target)

  sliced = batch_sliced(slices)
  chex.assert_trees_all_close(jax.jit(_conv(sliced))(x, w), _conv(lax.conv_general_dilated)(x, w),
                              atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(jax.jit(jax.grad(loss(sliced), argnums=(0, 1)))(x, w),
                              jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, w),
                              atol=1e-4, rtol=1e-4)


def test_one_slice_is_the_plain_convolution_and_zero_is_refused():
  assert batch_sliced(1) is lax.conv_general_dilated
  with pytest.raises(ValueError, match='slices must be >= 1, got 0'):
    batch_sliced(0)


def test_sliced_transposed_convolution_equals_the_unsliced_one():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 7, 7, 16))
  plain = SubPixelConvTranspose(8, (4, 4), strides=2)
  sliced = SubPixelConvTranspose(8, (4, 4), strides=2, conv_general_dilated=batch_sliced(2))
  params = plain.init(jax.random.PRNGKey(1), x)
  chex.assert_trees_all_close(jax.jit(sliced.apply)(params, x), plain.apply(params, x),
                              atol=1e-5, rtol=1e-5)
