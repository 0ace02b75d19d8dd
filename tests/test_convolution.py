"""convolution.conv_general_dilated: lax's convolution, with derivatives of every order."""

import re

import chex
import jax
import jax.numpy as jnp
import pytest
from jax import lax

from gen_jax.cpu_speed import convolution

DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')
CASES = [  # input shape, kernel shape, strides, padding, rhs dilation
    ((3, 9, 9, 2), (3, 3, 2, 4), (1, 1), 'SAME', None),               # narrow: in a fast form
    ((3, 9, 9, 1), (3, 3, 1, 6), (1, 1), 'SAME', None),
    ((3, 14, 14, 4), (4, 4, 4, 6), (2, 2), ((1, 1), (1, 1)), None),   # the critic's layers
    ((2, 15, 13, 3), (3, 3, 3, 5), (2, 2), ((1, 1), (0, 1)), None),   # uneven sizes and borders
    ((2, 11, 11, 2), (3, 3, 2, 3), (1, 2), 'VALID', (2, 2)),
    ((1, 2, 4, 64), (3, 3, 64, 64), (1, 1), 'SAME', None),             # few positions: shifted
    ((3, 10, 10, 6), (3, 3, 6, 8), (1, 1), 'SAME', None),             # 300 positions: XLA's own
]


def _convolutions(strides, padding, rhs_dilation):
  def ours(x, w):
    return convolution.conv_general_dilated(x, w, strides, padding, rhs_dilation=rhs_dilation,
                                                 dimension_numbers=DIMENSIONS)

  def reference(x, w):
    return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=rhs_dilation,
                                    dimension_numbers=DIMENSIONS)
  return ours, reference


def _derivatives(conv):
  """Values, gradients, the penalty-style second derivative and a third-order one."""
  loss = lambda x, w: jnp.sum(jnp.sin(conv(x, w)))
  input_gradient = jax.grad(loss)
  penalty = lambda x, w: jnp.sum(jnp.square(input_gradient(x, w)))
  third = lambda x, w: jnp.sum(jnp.square(jax.grad(penalty, argnums=1)(x, w)))
  return lambda x, w: (conv(x, w), jax.grad(loss, argnums=(0, 1))(x, w),
                       jax.grad(penalty, argnums=(0, 1))(x, w), jax.grad(third, argnums=(0, 1))(x, w))


@pytest.mark.parametrize('x_shape,w_shape,strides,padding,rhs_dilation', CASES)
def test_values_and_derivatives_of_every_order_match_lax(x_shape, w_shape, strides, padding,
                                                         rhs_dilation):
  x = jax.random.normal(jax.random.PRNGKey(0), x_shape)
  w = 0.3 * jax.random.normal(jax.random.PRNGKey(1), w_shape)
  ours, reference = _convolutions(strides, padding, rhs_dilation)
  expected = jax.jit(_derivatives(reference))(x, w)
  actual = jax.jit(_derivatives(ours))(x, w)
  for got, want in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    # float32 sums in another order: compared at the scale of each array
    chex.assert_trees_all_close(got, want, atol=1e-5 * float(jnp.max(jnp.abs(want))), rtol=1e-4)


@pytest.mark.parametrize('x_shape,w_shape,strides,padding,rhs_dilation', [
    ((3, 10, 10, 6), (3, 3, 6, 8), (1, 1), 'SAME', None),   # 300 positions: not the shifted form
    ((3, 10, 10, 8), (4, 4, 8, 6), (1, 1), ((1, 2), (2, 1)), None),
    ((2, 11, 11, 2), (3, 3, 2, 3), (1, 2), 'VALID', (2, 2)),           # dilated: never rewritten
])
def test_first_derivatives_of_wide_stride_1_layers_are_lax_ops(x_shape, w_shape, strides, padding,
                                                       rhs_dilation):
  x = jax.random.normal(jax.random.PRNGKey(0), x_shape)
  w = 0.3 * jax.random.normal(jax.random.PRNGKey(1), w_shape)
  ours, reference = _convolutions(strides, padding, rhs_dilation)
  first_order = lambda conv: jax.jit(jax.grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w))),
                                              argnums=(0, 1)))(x, w)
  chex.assert_trees_all_equal(first_order(ours), first_order(reference))   # the same ops


def test_second_derivatives_need_no_reversed_window():
  """A reversed window is what sends XLA's CPU backend to its slow generic convolution."""
  x = jnp.ones((4, 14, 14, 8))
  w = jnp.ones((4, 4, 8, 16))
  ours, reference = _convolutions((2, 2), ((1, 1), (1, 1)), None)

  def penalty_gradient(conv):
    input_gradient = jax.grad(lambda x, w: jnp.sum(jnp.tanh(conv(x, w))))
    return jax.grad(lambda w: jnp.sum(jnp.square(input_gradient(x, w))))

  def reversed_windows(conv):
    text = jax.jit(penalty_gradient(conv)).lower(w).compile().as_text()
    return len(re.findall(r'convolution\(.*rhs_reversal', text))
  assert reversed_windows(reference) > 0   # what this module avoids
  assert reversed_windows(ours) == 0


def test_preferred_element_type_is_refused_by_name():
  with pytest.raises(ValueError, match='preferred_element_type'):
    convolution.conv_general_dilated(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), (1, 1),
                                          'SAME', dimension_numbers=DIMENSIONS,
                                          preferred_element_type=jnp.float32)
