"""SubPixelConvTranspose computes exactly flax.linen.ConvTranspose: outputs and gradients."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from gen_jax.cpu_speed.conv_transpose import SubPixelConvTranspose

CASES = [
    # (input height, width, kernel, stride, padding)
    (7, 7, 4, 2, 'SAME'),       # the DCGAN generator's layers
    (14, 14, 3, 2, 'SAME'),     # the VAE decoder's upsampling layer
    (14, 14, 3, 1, 'SAME'),     # stride 1
    (5, 6, 5, 2, 'VALID'),
    (4, 4, 2, 3, 'SAME'),       # kernel smaller than the stride: some phases have no taps
    (5, 3, 3, 3, 'VALID'),
    (7, 7, 4, 2, ((1, 3), (0, 2))),  # explicit, asymmetric padding
    (7, 7, 4, 2, ((-3, -3), (-3, -2))),  # negative padding: outputs that read no border rows
    (6, 5, (3, 4), (2, 1), 'SAME'),  # different kernel and stride per dimension
]


def _both(height, width, kernel, stride, padding, separate_phases):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, height, width, 3))
  reference = nn.ConvTranspose(5, kernel if isinstance(kernel, tuple) else (kernel, kernel),
                               stride if isinstance(stride, tuple) else (stride, stride), padding=padding)
  subpixel = SubPixelConvTranspose(5, kernel, stride, padding=padding,
                                   separate_phases=separate_phases)
  params = reference.init(jax.random.PRNGKey(1), x)
  # Non-zero bias, so that the bias path is compared too.
  params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params)
  return x, reference, subpixel, params


@pytest.mark.parametrize('separate_phases', [True, False])
@pytest.mark.parametrize('height,width,kernel,stride,padding', CASES)
def test_same_parameters_and_outputs(height, width, kernel, stride, padding, separate_phases):
  x, reference, subpixel, params = _both(height, width, kernel, stride, padding, separate_phases)
  chex.assert_trees_all_equal_shapes(params, subpixel.init(jax.random.PRNGKey(1), x))
  expected = reference.apply(params, x)
  actual = jax.jit(subpixel.apply)(params, x)
  chex.assert_equal_shape([expected, actual])
  chex.assert_trees_all_close(actual, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('separate_phases', [True, False])
@pytest.mark.parametrize('height,width,kernel,stride,padding', CASES)
def test_same_gradients(height, width, kernel, stride, padding, separate_phases):
  x, reference, subpixel, params = _both(height, width, kernel, stride, padding, separate_phases)
  target = jax.random.normal(jax.random.PRNGKey(3), reference.apply(params, x).shape)

  def loss(module):
    return lambda p, inputs: jnp.sum(jnp.sin(module.apply(p, inputs)) * target)

  expected = jax.grad(loss(reference), argnums=(0, 1))(params, x)
  actual = jax.jit(jax.grad(loss(subpixel), argnums=(0, 1)))(params, x)
  chex.assert_trees_all_close(actual, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('separate_phases', [True, False])
def test_same_second_derivatives(separate_phases):
  """The input gradient is its own strided convolution: its derivatives must match too."""
  x, reference, subpixel, params = _both(7, 7, 4, 2, 'SAME', separate_phases)

  def penalty(module):
    input_gradient = jax.grad(lambda p, inputs: jnp.sum(jnp.tanh(module.apply(p, inputs))), 1)
    return lambda p: jnp.sum(jnp.square(input_gradient(p, x)))

  chex.assert_trees_all_close(jax.jit(jax.grad(penalty(subpixel)))(params),
                              jax.grad(penalty(reference))(params), atol=1e-4, rtol=1e-4)


def test_rejects_bad_arguments():
  x = jnp.zeros((1, 4, 4, 2))
  with pytest.raises(ValueError, match='strides'):
    SubPixelConvTranspose(3, 3, strides=0).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match='padding'):
    SubPixelConvTranspose(3, 3, strides=2, padding='CIRCULAR').init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match='NHWC'):
    SubPixelConvTranspose(3, 3).init(jax.random.PRNGKey(0), jnp.zeros((4, 4, 2)))
