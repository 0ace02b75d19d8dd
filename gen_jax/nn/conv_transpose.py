"""A transposed convolution computed in sub-pixel (phase) form.

A stride-s transposed convolution is, for each of its s×s output phases, a plain stride-1
convolution of the undilated input with a subset of the kernel taps; the phase outputs interleave
into the full output. `SubPixelConvTranspose` computes all phases with one convolution whose output
channels hold the phases, followed by a depth-to-space shuffle. It has exactly the parameters and
the function of `flax.linen.ConvTranspose` (default `transpose_kernel=False`, no kernel dilation),
so checkpoints are interchangeable, but it avoids convolving the zero-dilated input, whose backward
pass XLA runs slowly on CPU.

The border is the convolution's own padding, not a padded copy of the input: XLA's CPU backend
computes the kernel gradient of a convolution over an explicitly padded input several times more
slowly (for the VAE decoder's 3×3 layers at 28×28 it took most of the train step).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

Padding = str | Sequence[tuple[int, int]]


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

  def read_rows(self, size: int) -> slice:
    """The input rows the outputs read: all, unless a side's padding is negative."""
    low, high = self.input_pads
    return slice(max(-low, 0), size - max(-high, 0))

  @property
  def conv_padding(self) -> tuple[int, int]:
    """The non-negative part of `input_pads`, as the stride-1 convolution's own padding."""
    return max(self.input_pads[0], 0), max(self.input_pads[1], 0)


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


class SubPixelConvTranspose(nn.Module):
  """Drop-in `nn.ConvTranspose` for 2-D NHWC inputs, computed in sub-pixel form."""

  features: int
  kernel_size: int | Sequence[int]
  strides: int | Sequence[int] = 1
  padding: Padding = 'SAME'
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

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
    batch, height, width, in_features = inputs.shape
    kernel = self.param('kernel', self.kernel_init, ksize + (in_features, self.features))
    plan_h = _PhasePlan(height, ksize[0], strides[0], pads[0])
    plan_w = _PhasePlan(width, ksize[1], strides[1], pads[1])

    x = inputs[:, plan_h.read_rows(height), plan_w.read_rows(width)]
    y = lax.conv_general_dilated(
        x, phase_kernel(kernel, plan_h, plan_w, strides).astype(inputs.dtype), (1, 1),
        (plan_h.conv_padding, plan_w.conv_padding), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    sh, sw = strides
    y = y.reshape(batch, plan_h.per_phase, plan_w.per_phase, sh, sw, self.features)
    y = jnp.transpose(y, (0, 1, 3, 2, 4, 5))
    y = y.reshape(batch, plan_h.per_phase * sh, plan_w.per_phase * sw, self.features)
    y = y[:, :plan_h.out_size, :plan_w.out_size]
    if self.use_bias:
      y = y + self.param('bias', self.bias_init, (self.features,))
    return y


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
  pair = (value, value) if isinstance(value, int) else tuple(value)
  if len(pair) != 2 or any(int(v) < 1 for v in pair):
    raise ValueError(f'{name} must be a positive int or a pair of them, got {value!r}')
  return tuple(int(v) for v in pair)
