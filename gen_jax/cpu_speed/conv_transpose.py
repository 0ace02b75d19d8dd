"""A transposed convolution computed in sub-pixel (phase) form.

A stride-s transposed convolution is, for each of its s×s output phases, a plain stride-1
convolution of the undilated input with a subset of the kernel taps; the phase outputs interleave
into the full output. `SubPixelConvTranspose` has exactly the parameters and the function of
`flax.linen.ConvTranspose` (default `transpose_kernel=False`, no kernel dilation), so checkpoints
are interchangeable, but it never convolves the zero-dilated input, whose backward pass XLA runs
slowly on CPU.

It computes the phases in one of two ways, chosen by the layer's width:
- each phase with its own taps (one convolution per phase): no multiplication is wasted. Used when
  the layer has at least `MIN_FEATURES_PER_PHASE` output features (faster there than the form
  below; PERFORMANCE.md has the measurement).
- all phases in one convolution over the window that covers every phase's taps, with the phases in
  its output channels (zero taps where a phase reads fewer inputs): s×s times wider, which XLA's
  CPU convolutions need for narrow layers (one output feature would be a 1-channel convolution), at
  the cost of the zero taps.

Its gradients are not the phases' but those of the strided convolution whose transpose the layer
is: the input gradient is that convolution of the output gradient, and the kernel gradient its
kernel gradient, both computed by `gen_jax.cpu_speed.convolution`, which XLA's CPU backend runs
faster than the phases' own gradients.

The border is the convolution's own padding, not a padded copy of the input: XLA's CPU backend
computes the kernel gradient of a convolution over an explicitly padded input much more slowly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.cpu_speed import convolution

Padding = str | Sequence[tuple[int, int]]

# Narrower layers compute all phases in one convolution (see the module's docstring).
MIN_FEATURES_PER_PHASE = 8


def transpose_padding(kernel: int, stride: int, padding: str | tuple[int, int]) -> tuple[int, int]:
  """Padding of the zero-dilated input, as `lax.conv_transpose` defines it."""
  if isinstance(padding, str):
    mode = padding.upper()
    if mode == 'SAME':
      total = kernel + stride - 2
      low = kernel - 1 if stride > kernel - 1 else int(np.ceil(total / 2))
      return low, total - low
    if mode == 'VALID':
      total = kernel + stride - 2 + max(kernel - stride, 0)
      return kernel - 1, total - (kernel - 1)
    raise ValueError(f"padding must be 'SAME', 'VALID' or (low, high) pairs, got {padding!r}")
  low, high = padding
  return int(low), int(high)


class _PhasePlan:
  """Static index plan for one spatial dimension.

  Output position s*m + r (phase r) reads input positions m + offset + p, p in [0, taps), with
  kernel tap `tap_index[p, r]` where `tap_valid[p, r]`.
  """

  def __init__(self, size: int, kernel: int, stride: int, pads: tuple[int, int]):
    low, high = pads
    self.out_size = (size - 1) * stride + 1 + low + high - kernel + 1
    if self.out_size < 1:
      raise ValueError(
          f'transposed convolution of input size {size} with kernel {kernel}, stride {stride} '
          f'and padding {pads} has empty output')
    first_tap = [(low - r) % stride for r in range(stride)]
    shift = [(r + first_tap[r] - low) // stride for r in range(stride)]
    counts = [max(0, -(-(kernel - first_tap[r]) // stride)) for r in range(stride)]
    self.size, self.stride = size, stride
    self.first_tap, self.shift, self.counts = first_tap, shift, counts
    self.offset = min(shift)
    self.taps = max(shift[r] - self.offset + counts[r] for r in range(stride))
    self.per_phase = -(-self.out_size // stride)
    self.tap_index = np.zeros((self.taps, stride), np.int32)
    self.tap_valid = np.zeros((self.taps, stride), bool)
    for r in range(stride):
      for t in range(counts[r]):
        p = shift[r] - self.offset + t
        self.tap_index[p, r] = first_tap[r] + t * stride
        self.tap_valid[p, r] = True
    # Padding of the undilated input so that a VALID stride-1 convolution yields `per_phase`
    # outputs; a negative side means input rows that no output reads.
    self.input_pads = (-self.offset,
                       self.per_phase + self.offset + self.taps - 1 - size)

  def phase_pads(self, phase: int) -> tuple[int, int]:
    """Padding of the undilated input for phase `phase`'s own taps, as `input_pads` is for all."""
    return (-self.shift[phase],
            self.per_phase + self.shift[phase] + self.counts[phase] - 1 - self.size)

  def phase_taps(self, phase: int) -> slice:
    """The kernel taps phase `phase` reads, in order."""
    return slice(self.first_tap[phase], self.first_tap[phase] + self.counts[phase] * self.stride,
                 self.stride)


def _convolve(x: jnp.ndarray, kernel: jnp.ndarray, pads_h: tuple[int, int],
              pads_w: tuple[int, int]) -> jnp.ndarray:
  """Stride-1 NHWC convolution; a negative pad drops input rows that no output reads.

  The non-negative part of the border is the convolution's own padding (see the module's
  docstring).
  """
  rows = slice(max(-pads_h[0], 0), x.shape[1] - max(-pads_h[1], 0))
  columns = slice(max(-pads_w[0], 0), x.shape[2] - max(-pads_w[1], 0))
  padding = tuple((max(low, 0), max(high, 0)) for low, high in (pads_h, pads_w))
  return convolution.conv_general_dilated(x[:, rows, columns], kernel, (1, 1), padding,
                                          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _phase_output(inputs: jnp.ndarray, kernel: jnp.ndarray, plan_h: _PhasePlan,
                  plan_w: _PhasePlan, rh: int, rw: int) -> jnp.ndarray:
  """Output phase (rh, rw), (batch, per_phase_h, per_phase_w, features), from its own taps."""
  if not (plan_h.counts[rh] and plan_w.counts[rw]):   # a kernel smaller than the stride
    return jnp.zeros((inputs.shape[0], plan_h.per_phase, plan_w.per_phase, kernel.shape[3]),
                     inputs.dtype)
  return _convolve(inputs, kernel[plan_h.phase_taps(rh), plan_w.phase_taps(rw)],
                   plan_h.phase_pads(rh), plan_w.phase_pads(rw))


def phase_kernel(kernel: jnp.ndarray, plan_h: _PhasePlan, plan_w: _PhasePlan,
                 strides: tuple[int, int]) -> jnp.ndarray:
  """Rearranges a (kh, kw, in, out) kernel into the (th, tw, in, sh*sw*out) phase kernel."""
  sh, sw = strides
  k = kernel[plan_h.tap_index]                      # (th, sh, kw, in, out)
  k = jnp.take(k, plan_w.tap_index, axis=2)         # (th, sh, tw, sw, in, out)
  mask = plan_h.tap_valid[:, :, None, None] & plan_w.tap_valid[None, None, :, :]
  k = jnp.where(mask[..., None, None], k, 0)
  k = jnp.transpose(k, (0, 2, 4, 1, 3, 5))          # (th, tw, in, sh, sw, out)
  return k.reshape(plan_h.taps, plan_w.taps, kernel.shape[2], sh * sw * kernel.shape[3])


@dataclasses.dataclass(frozen=True)
class _Layout:
  """The static arguments of one transposed convolution."""
  size: tuple[int, int]
  kernel_size: tuple[int, int]
  strides: tuple[int, int]
  pads: tuple[tuple[int, int], tuple[int, int]]
  separate_phases: bool

  def plans(self) -> tuple[_PhasePlan, _PhasePlan]:
    return tuple(_PhasePlan(*args) for args in zip(self.size, self.kernel_size, self.strides,
                                                    self.pads))


def _in_phases(layout: _Layout, inputs: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
  """The transposed convolution, computed phase by phase."""
  plan_h, plan_w = layout.plans()
  (sh, sw), batch, features = layout.strides, inputs.shape[0], kernel.shape[3]
  if layout.separate_phases:
    # (batch, per_phase_h, sh, per_phase_w, sw, features)
    y = jnp.stack([jnp.stack([_phase_output(inputs, kernel, plan_h, plan_w, rh, rw)
                              for rw in range(sw)], axis=3)
                   for rh in range(sh)], axis=2)
  else:
    y = _convolve(inputs, phase_kernel(kernel, plan_h, plan_w, layout.strides),
                  plan_h.input_pads, plan_w.input_pads)
    y = y.reshape(batch, plan_h.per_phase, plan_w.per_phase, sh, sw, features)
    y = jnp.transpose(y, (0, 1, 3, 2, 4, 5))
  y = y.reshape(batch, plan_h.per_phase * sh, plan_w.per_phase * sw, features)
  return y[:, :plan_h.out_size, :plan_w.out_size]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _transposed_convolution(layout: _Layout, inputs: jnp.ndarray,
                            kernel: jnp.ndarray) -> jnp.ndarray:
  return _in_phases(layout, inputs, kernel)


def _transposed_convolution_forward(layout, inputs, kernel):
  return _in_phases(layout, inputs, kernel), (inputs, kernel)


def _transposed_convolution_backward(layout, operands, cotangent):
  """Both gradients from the strided convolution whose transpose the layer is: the input gradient
  is that convolution of the cotangent, and the kernel gradient its kernel gradient."""
  inputs, kernel = operands
  padding = []
  for size, out_size, k, s, (low, _) in zip(layout.size, cotangent.shape[1:3], layout.kernel_size,
                                            layout.strides, layout.pads):
    first = k - 1 - low
    padding.append((first, s * (size - 1) + k - out_size - first))

  def strided(flipped_kernel):
    return convolution.conv_general_dilated(cotangent, flipped_kernel, layout.strides, padding,
                                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  input_gradient, pull_back = jax.vjp(strided, jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2)))
  flipped_gradient = pull_back(inputs)[0]
  return input_gradient, jnp.transpose(flipped_gradient, (0, 1, 3, 2))[::-1, ::-1]


_transposed_convolution.defvjp(_transposed_convolution_forward, _transposed_convolution_backward)


class SubPixelConvTranspose(nn.Module):
  """Drop-in `nn.ConvTranspose` for 2-D NHWC inputs, computed in sub-pixel form."""

  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: Padding = 'SAME'
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()
  # One convolution per phase (True) or one for all (False); None chooses by `features`.
  separate_phases: bool | None = None

  @nn.compact
  def __call__(self, inputs: jnp.ndarray) -> jnp.ndarray:
    if inputs.ndim != 4:
      raise ValueError(f'SubPixelConvTranspose takes NHWC inputs, got shape {inputs.shape}')
    ksize = _pair(self.kernel_size, 'kernel_size')
    strides = _pair(self.strides, 'strides')
    if isinstance(self.padding, str):
      pads = [transpose_padding(k, s, self.padding) for k, s in zip(ksize, strides)]
    else:
      pads = [transpose_padding(k, s, tuple(p)) for k, s, p in zip(ksize, strides, self.padding)]
    in_features = inputs.shape[-1]
    kernel = self.param('kernel', self.kernel_init, ksize + (in_features, self.features))
    separate = self.separate_phases
    if separate is None:
      separate = self.features >= MIN_FEATURES_PER_PHASE
    layout = _Layout(tuple(inputs.shape[1:3]), ksize, strides, tuple(pads), separate)
    y = _transposed_convolution(layout, inputs, kernel.astype(inputs.dtype))
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,))
    return y


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, int) else tuple(value)
  if len(pair) != 2 or any(int(v) < 1 for v in pair):
    raise ValueError(f'{name} must be a positive int or a pair of them, got {value!r}')
  return tuple(int(v) for v in pair)
