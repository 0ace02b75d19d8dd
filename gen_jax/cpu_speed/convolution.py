"""gen_jax's convolution: lax's, with derivatives of every order, each map in its fastest form.

Every convolution of the models goes through `conv_general_dilated`, which takes
`lax.conv_general_dilated`'s arguments (so it can be given to
`flax.linen.Conv(conv_general_dilated=...)`). It serves two ends.

Derivatives of every order. WGAN-GP's gradient penalty differentiates the critic's input gradient
with respect to its weights: a second derivative of each convolution. Through JAX's own rules that
is the kernel gradient of an input-gradient convolution, which carries a reversed window; XLA's CPU
backend cannot hand such a convolution to its fast libraries and runs it through its generic loop
emitter, many times slower than the same layer's forward and backward pass (PERFORMANCE.md).
Here the three linear maps of a
convolution — the convolution itself, its input gradient and its kernel gradient — are each a
`jax.custom_vjp` whose derivatives are expressed through the same three maps, so a derivative of
any order stays among convolutions XLA runs well.

Fast forms. The value of each map is JAX's own first-order rule, except that on the CPU a map with
one input feature or few output features (a model's first and last layers), a strided layer's
input gradient, every map of a wide layer over few positions (a picture's deepest layers, a
U-Net's innermost levels) and a wide layer's kernel gradient on large images (summed over batch chunks) are
computed in exact forms that XLA runs faster (`gen_jax.cpu_speed.conv_forms`). Elsewhere the maps are
lax's own, and first derivatives are bit-identical to `lax.conv_general_dilated`'s.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
from jax import lax

from gen_jax.cpu_speed import conv_forms


@dataclasses.dataclass(frozen=True)
class _Layout:
  """The static arguments of one convolution, with its operands' shapes."""
  window_strides: tuple[int, ...]
  padding: Any
  lhs_dilation: Any
  rhs_dilation: Any
  dimension_numbers: Any
  feature_group_count: int
  batch_group_count: int
  precision: Any
  lhs_shape: tuple[int, ...]
  rhs_shape: tuple[int, ...]
  dtype: Any

  @functools.cached_property
  def geometry(self) -> conv_forms.Geometry | None:
    return conv_forms.geometry(
        self.lhs_shape, self.rhs_shape, self.window_strides, self.padding, self.lhs_dilation,
        self.rhs_dilation, self.dimension_numbers, self.feature_group_count,
        self.batch_group_count, self.precision)

  def apply(self, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    """The convolution, in a faster exact form where one applies (gen_jax.cpu_speed.conv_forms)."""
    form = conv_forms.forward_form(self.geometry, self.lhs_shape, self.rhs_shape)
    return form(lhs, rhs) if form else self.apply_lax(lhs, rhs)

  def transposable(self, rhs: jax.Array):
    """lhs ↦ the convolution, in the form whose transpose computes the input gradient fastest."""
    form = conv_forms.input_gradient_form(self.geometry, self.lhs_shape, self.rhs_shape)
    return (lambda lhs: form(lhs, rhs)) if form else (lambda lhs: self.apply_lax(lhs, rhs))

  def apply_lax(self, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(
        lhs, rhs, self.window_strides, self.padding, self.lhs_dilation, self.rhs_dilation,
        self.dimension_numbers, self.feature_group_count, self.batch_group_count,
        self.precision)

  def zeros(self, shape: tuple[int, ...]) -> jax.Array:
    return jax.numpy.zeros(shape, self.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _convolve(layout: _Layout, lhs: jax.Array, rhs: jax.Array) -> jax.Array:
  return layout.apply(lhs, rhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _input_gradient(layout: _Layout, cotangent: jax.Array, rhs: jax.Array) -> jax.Array:
  """The convolution's gradient with respect to its input, for an output cotangent."""
  _, pull_back = jax.vjp(layout.transposable(rhs), layout.zeros(layout.lhs_shape))
  return pull_back(cotangent)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _kernel_gradient(layout: _Layout, lhs: jax.Array, cotangent: jax.Array) -> jax.Array:
  """The convolution's gradient with respect to its kernel, for an output cotangent."""
  form = conv_forms.kernel_gradient_form(layout.geometry, layout.lhs_shape, layout.rhs_shape)
  if form:
    return form(lhs, cotangent, layout.rhs_shape[:2])
  chunks = conv_forms.kernel_gradient_chunks(layout.geometry, layout.lhs_shape,
                                            layout.rhs_shape)
  gradient = 0
  for part, cotangent_part in zip(jax.numpy.split(lhs, chunks), jax.numpy.split(cotangent, chunks)):
    _, pull_back = jax.vjp(lambda rhs: layout.apply_lax(part, rhs), layout.zeros(layout.rhs_shape))
    gradient = gradient + pull_back(cotangent_part)[0]
  return gradient


# conv(x, w) is bilinear, and <dy, conv(x, w)> = <input_gradient(dy, w), x> =
# <kernel_gradient(x, dy), w>; every derivative below follows from these two identities.

def _keeping_operands(bilinear):
  """A custom_vjp forward rule: the value, with both operands saved for the backward rule."""
  return lambda layout, first, second: (bilinear(layout, first, second), (first, second))


def _convolve_backward(layout, operands, cotangent):
  lhs, rhs = operands
  return _input_gradient(layout, cotangent, rhs), _kernel_gradient(layout, lhs, cotangent)


def _input_gradient_backward(layout, operands, lhs_cotangent):
  cotangent, rhs = operands
  return (_convolve(layout, lhs_cotangent, rhs),
          _kernel_gradient(layout, lhs_cotangent, cotangent))


def _kernel_gradient_backward(layout, operands, rhs_cotangent):
  lhs, cotangent = operands
  return (_input_gradient(layout, cotangent, rhs_cotangent),
          _convolve(layout, lhs, rhs_cotangent))


_convolve.defvjp(_keeping_operands(_convolve), _convolve_backward)
_input_gradient.defvjp(_keeping_operands(_input_gradient), _input_gradient_backward)
_kernel_gradient.defvjp(_keeping_operands(_kernel_gradient), _kernel_gradient_backward)


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides, padding,
                         lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
                         feature_group_count: int = 1, batch_group_count: int = 1,
                         precision=None, preferred_element_type=None) -> jax.Array:
  """`lax.conv_general_dilated`, with derivatives of every order as first-order gradients."""
  if preferred_element_type is not None:
    raise ValueError('preferred_element_type is not supported; got '
                     f'{preferred_element_type!r}, allowed: None')

  def freeze(value):   # hashable: lists (of pairs, say) become tuples; named tuples stay
    return tuple(freeze(v) for v in value) if type(value) in (list, tuple) else value

  layout = _Layout(tuple(window_strides), freeze(padding), freeze(lhs_dilation),
                   freeze(rhs_dilation), freeze(dimension_numbers), feature_group_count,
                   batch_group_count, precision, tuple(lhs.shape), tuple(rhs.shape),
                   jax.numpy.result_type(lhs, rhs))
  return _convolve(layout, lhs, rhs)
