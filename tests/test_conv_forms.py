"""conv_forms: exact rewrites of the convolutions XLA's CPU backend computes slowly."""

import re

import chex
import jax
import jax.numpy as jnp
import pytest
from jax import lax

from gen_jax.cpu_speed import convolution, conv_forms

DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


def _geometry(x_shape, w_shape, strides=(1, 1), padding='SAME', dimensions=DIMENSIONS,
              rhs_dilation=None, groups=1):
  return conv_forms.geometry(x_shape, w_shape, strides, padding, None, rhs_dilation,
                                     dimensions, groups, 1, None)


@pytest.mark.parametrize('features_in,features_out,kernel,strides,forward,transposed_for_input_gradient', [
    (1, 32, 3, (1, 1), 'broadcast', 'patches'),   # a 1-channel image into a first layer
    (1, 64, 3, (2, 2), 'broadcast', 'patches'),   # the DCGAN critic's first layer
    (32, 1, 3, (1, 1), 'taps', 'taps'),           # an output layer to one channel
    (32, 1, 7, (1, 1), 'taps', None),             # CycleGAN's 7×7 output layer: 49 taps, XLA's
    (64, 4, 3, (1, 1), 'taps', None),             # the DCGAN generator's output phases
    (4, 32, 3, (1, 1), None, 'patches'),          # the input gradient is a 32→4 map
    (32, 64, 3, (2, 2), None, 'phases'),          # a wide strided layer
    (6, 8, 3, (1, 1), None, None),
])
def test_each_map_takes_the_form_its_shape_wants(features_in, features_out, kernel, strides, forward,
                                                 transposed_for_input_gradient):
  w_shape = (kernel, kernel, features_in, features_out)
  x_shape = (2, 32, 32, features_in)   # 512 or more positions: more than the shifted form takes
  geometry = _geometry(x_shape, w_shape, strides)
  assert form_name(conv_forms.forward_form(geometry, x_shape, w_shape)) == forward
  assert form_name(conv_forms.input_gradient_form(geometry, x_shape, w_shape)) == (
      transposed_for_input_gradient)


def form_name(form):   # each form is a closure named after the function that builds it
  return form and re.split('_form|_kernel_gradient', form.__qualname__)[0]


@pytest.mark.parametrize('x_shape,w_shape,strides,form', [
    ((1, 2, 4, 512), (3, 3, 512, 512), (1, 1), 'shifted'),  # style transfer's conv5_1, 43×64 picture
    ((1, 16, 16, 512), (3, 3, 512, 512), (1, 1), 'shifted'),  # 256 positions: the most it takes
    ((1, 16, 17, 512), (3, 3, 512, 512), (1, 1), None),       # 272
    ((4, 16, 16, 512), (3, 3, 512, 512), (2, 2), 'shifted'),  # strided to 4 × 8 × 8 positions
    ((4, 18, 16, 512), (3, 3, 512, 512), (2, 2), None),       # 4 × 9 × 8
    ((1, 2, 4, 64), (3, 3, 64, 64), (1, 1), 'shifted'),       # 64 features: the fewest it takes
    ((1, 2, 4, 32), (3, 3, 32, 64), (1, 1), None),            # a smoke-sized model's layer
])
def test_a_wide_map_over_few_positions_is_shifted_with_both_its_gradients(x_shape, w_shape, strides,
                                                                         form):
  geometry = _geometry(x_shape, w_shape, strides)
  assert form_name(conv_forms.forward_form(geometry, x_shape, w_shape)) == form
  assert form_name(conv_forms.kernel_gradient_form(geometry, x_shape, w_shape)) == form
  if strides == (2, 2) and form is None:   # a wide strided layer's: the phases form's transpose
    form = 'phases'
  assert form_name(conv_forms.input_gradient_form(geometry, x_shape, w_shape)) == form


def test_a_kernel_that_is_a_multiple_of_its_stride_keeps_xlas_input_gradient():
  w_shape = (4, 4, 64, 128)   # the DCGAN critic's second layer
  x_shape = (64, 14, 14, 64)   # at its batch: 3,136 positions
  geometry = _geometry(x_shape, w_shape, (2, 2), ((1, 1), (1, 1)))
  assert conv_forms.input_gradient_form(geometry, x_shape, w_shape) is None


@pytest.mark.parametrize('change', [
    {'dimensions': ('NCHW', 'OIHW', 'NCHW')}, {'rhs_dilation': (2, 2)}, {'groups': 2}])
def test_layouts_other_than_plain_nhwc_are_left_to_lax(change):
  assert _geometry((2, 8, 8, 2), (3, 3, 1, 4), **change) is None


def test_no_form_off_the_cpu(monkeypatch):
  w_shape, x_shape = (3, 3, 1, 32), (2, 8, 8, 1)
  geometry = _geometry(x_shape, w_shape)
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  assert conv_forms.forward_form(geometry, x_shape, w_shape) is None
  assert conv_forms.input_gradient_form(geometry, x_shape, w_shape) is None
  wide_x, wide_w = (1, 2, 4, 64), (3, 3, 64, 64)   # shifted on a CPU
  assert conv_forms.kernel_gradient_form(_geometry(wide_x, wide_w), wide_x, wide_w) is None
  assert conv_forms.kernel_gradient_chunks(_geometry((64, 28, 28, 32), (3, 3, 32, 32)),
                                           (64, 28, 28, 32), (3, 3, 32, 32)) == 1


@pytest.mark.parametrize('x_shape,w_shape,strides,padding', [
    ((3, 9, 9, 1), (3, 3, 1, 5), (1, 1), 'SAME'),
    ((3, 9, 9, 6), (3, 3, 6, 1), (1, 1), 'SAME'),
    ((2, 15, 13, 1), (4, 4, 1, 6), (2, 2), ((1, 1), (0, 1))),          # the critic's first layer
    ((2, 15, 13, 5), (3, 3, 5, 3), (2, 2), ((1, 2), (0, 1))),
    ((2, 11, 11, 1), (3, 3, 1, 2), (2, 1), 'VALID'),
    ((2, 8, 8, 7), (2, 3, 7, 4), (1, 1), ((0, 0), (1, -1))),           # a negative border
    ((2, 15, 13, 6), (3, 3, 6, 8), (2, 2), 'SAME'),                   # wide and strided
    ((2, 14, 14, 6), (4, 4, 6, 8), (2, 2), ((1, 1), (1, 1))),
    ((2, 11, 10, 6), (3, 2, 6, 8), (3, 1), ((2, 0), (1, 1))),
    ((2, 9, 9, 6), (1, 1, 6, 8), (2, 2), 'VALID'),                    # kernel smaller than stride
    ((1, 2, 4, 64), (3, 3, 64, 72), (1, 1), 'SAME'),                  # shifted: a 2×4 map
    ((2, 3, 5, 64), (3, 2, 64, 64), (1, 1), ((1, 0), (2, 1))),        # shifted, uneven borders
    ((2, 4, 5, 64), (4, 4, 64, 64), (2, 2), ((1, 1), (1, 2))),        # shifted and strided
])
def test_forms_give_lax_values_and_gradients(x_shape, w_shape, strides, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), x_shape)
  w = jax.random.normal(jax.random.PRNGKey(1), w_shape)

  def outputs(conv):
    y, pull_back = jax.vjp(lambda x, w: conv(x, w, strides, padding,
                                             dimension_numbers=DIMENSIONS), x, w)
    cotangent = jax.random.normal(jax.random.PRNGKey(2), y.shape)
    return (y,) + pull_back(cotangent)
  ours = jax.jit(lambda x, w: outputs(convolution.conv_general_dilated))(x, w)
  expected = outputs(lax.conv_general_dilated)
  chex.assert_trees_all_equal_shapes(ours, expected)
  chex.assert_trees_all_close(ours, expected, atol=1e-4, rtol=1e-5)


def test_a_narrow_layer_compiles_to_matrix_products_and_keeps_xla_kernel_gradient():
  x = jnp.ones((4, 12, 12, 1))
  w = jnp.ones((3, 3, 1, 16))

  def loss(x, w):
    y = convolution.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=DIMENSIONS)
    return jnp.sum(jnp.tanh(y))

  def convolutions(function):
    return len(re.findall(r'= f32\[[0-9,]*\][^ ]* convolution\(',
                          jax.jit(function).lower(x, w).compile().as_text()))
  assert convolutions(loss) == 0
  assert convolutions(jax.grad(loss, argnums=1)) == 1   # the kernel gradient only
  with conv_forms.xla_convolutions():   # for comparisons: XLA's own, while tracing
    assert convolutions(lambda x, w: loss(x, w)) == 1   # a new function: jit caches traces


@pytest.mark.parametrize('x_shape,features_out,strides,chunks', [
    ((64, 28, 28, 32), 16, 1, 8),     # the VAE's wide layers
    ((64, 28, 28, 32), 64, 2, 8),     # ... and its strided one, to 14×14 maps
    ((64, 16, 16, 64), 128, 1, 8),    # Pix2Pix's PatchGAN, to 15×15 (4×4 kernel)
    ((64, 14, 14, 64), 128, 2, 1),    # the DCGAN critic's layer, to 7×7 maps: slower in chunks
    ((64, 8, 8, 128), 128, 1, 1),     # CycleGAN's residual blocks on 8×8 maps: slower in chunks
    ((64, 28, 28, 1), 16, 1, 1),      # a narrow layer
    ((64, 28, 28, 32), 1, 1, 1),      # a map to one feature (the VAE decoder's last layer)
    ((8, 28, 28, 32), 16, 1, 1),      # a single chunk
    ((12, 28, 28, 32), 16, 1, 1),     # no whole chunks
])
def test_kernel_gradients_of_wide_layers_on_large_maps_are_summed_over_chunks(
    x_shape, features_out, strides, chunks):
  kernel = 4 if x_shape[1] in (14, 16) else 3
  w_shape = (kernel, kernel, x_shape[-1], features_out)
  geometry = _geometry(x_shape, w_shape, (strides, strides), ((1, 1), (1, 1)))
  assert conv_forms.kernel_gradient_chunks(geometry, x_shape, w_shape) == chunks


def test_a_kernel_gradient_in_chunks_is_laxs():
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 28, 28, 8))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 8, 8))
  assert conv_forms.kernel_gradient_chunks(_geometry(x.shape, w.shape), x.shape, w.shape) == 2

  def kernel_gradient(conv):
    loss = lambda w: jnp.sum(jnp.tanh(conv(x, w, (1, 1), 'SAME', dimension_numbers=DIMENSIONS)))
    return jax.jit(jax.grad(loss))(w)
  chex.assert_trees_all_close(kernel_gradient(convolution.conv_general_dilated),
                              kernel_gradient(lax.conv_general_dilated), atol=1e-4, rtol=1e-5)
