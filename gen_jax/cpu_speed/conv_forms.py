"""Exact rewrites of convolutions that XLA's CPU backend computes slowly.

XLA's CPU convolutions are slow when one side of the map is narrow (a 1-channel first layer, a
1-feature output layer), and on a strided convolution's input gradient, which XLA computes by
convolving the zero-dilated output gradient (PERFORMANCE.md has the per-pass figures). These forms compute the
same maps as elementwise loops, matrix products and stride-1 convolutions:

- broadcast: for maps from one feature, the sum over the k×k taps of the input's shifted window
  times the tap's row of output features; XLA fuses it into one elementwise loop.
- taps: for maps to few features, every input pixel times the kernel as an (in, k·k·out) matrix,
  then each tap's product shifted to the output pixel it feeds and summed.
- patches: the input's k×k windows side by side in the channel axis, times the kernel as a
  (k·k·in, out) matrix. Used for its transpose, which has the taps structure.
- phases: a stride-s convolution as the sum of s×s stride-1 convolutions, one per input phase
  with that phase's taps. Used for its transpose: stride-1 input gradients whose results
  interleave (the sub-pixel form of `gen_jax.cpu_speed.conv_transpose`).
- shifted: a convolution over few output positions (a picture's deepest layers, a U-Net's
  innermost levels) as the sum over the k×k taps of the input's (strided) window times the tap's
  (in, out) matrix. XLA's own convolution takes a slow path there (a 2×4 map of 512 → 512
  features: 66 ms forward against 5 ms as nine products, PERFORMANCE.md); its input gradient is
  its transpose, and its kernel gradient one batched product of the taps' windows with the output
  gradient, laid out as the kernel (the transpose would assemble it from padded taps, which XLA
  fuses into each of the optimiser's updates: Pix2Pix's step 346 → 292 ms).

A wide layer's kernel gradient stays XLA's convolution, but where its output maps are 14×14 or
larger it is summed over chunks of 8 images, which XLA's CPU backend computes faster than the whole
batch at once.

Each map is rewritten by its own shape. A layer's forward pass maps its input features to its
output features, and its input gradient maps them back, computed as the transpose (vjp) of the
form whose transpose suits that map: a 32→1 output layer runs its forward pass in taps form and its
input gradient (a map from one feature) as the taps form's transpose, while a 1→32 first layer
runs its forward pass in broadcast form and its input gradient as the patches form's transpose.
Other maps stay XLA's own convolutions, which measured as fast or faster. Only the CPU gets these
forms; `xla_convolutions()` turns them off (and the chunks) while a step is traced, for comparisons
(`experiments/step_times.py --variant='name;convolution=xla'`), and
`experiments/conv_pass_times.py` times each pass of the models' layers both ways.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from typing import Callable, Iterator

import jax
import jax.numpy as jnp
from jax import lax

# Maps to at most this many features are computed in taps form (or as the patches form's transpose).
MAX_TAPS_OUTPUT_FEATURES = 4
# A map to one feature takes its input gradient as the taps form's transpose only up to this many
# taps: the transpose pads and adds one full-size map a tap, which for a 7×7 kernel (CycleGAN's
# output layer) costs several times XLA's own convolution.
MAX_TRANSPOSED_TAPS = 16
# Maps with at most this many output positions (batch × height × width) and at least this many
# features on either side are computed in shifted form, and so are both their gradients. With more
# positions XLA's own convolution measured as fast or faster; on narrower maps the gain is small
# and the nine or sixteen products take longer to compile (a smoke-sized model's tests).
MAX_SHIFTED_POSITIONS = 256
MIN_SHIFTED_FEATURES = 64
# The kernel gradient of a layer with output maps this large is summed over chunks of this many
# images.
KERNEL_GRADIENT_CHUNK = 8
MIN_CHUNKED_OUTPUT_PIXELS = 14 * 14

_NHWC = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ('NHWC', 'HWIO', 'NHWC'))

Form = Callable[[jax.Array, jax.Array], jax.Array]
KernelGradient = Callable[[jax.Array, jax.Array, tuple[int, int]], jax.Array]


@dataclasses.dataclass(frozen=True)
class Geometry:
  """A 2-D NHWC/HWIO convolution without dilation or groups: the only kind rewritten here."""
  strides: tuple[int, int]
  pads: tuple[tuple[int, int], tuple[int, int]]
  out_size: tuple[int, int]

  def window_slice(self, x: jax.Array, row: int, column: int) -> jax.Array:
    """The pixels of the (border-padded) `x` that kernel tap (row, column) reads, one an output."""
    (sh, sw), (oh, ow) = self.strides, self.out_size
    return x[:, row:row + sh * (oh - 1) + 1:sh, column:column + sw * (ow - 1) + 1:sw]

  def pad(self, x: jax.Array, kernel_size: tuple[int, int]) -> jax.Array:
    """`x` with the convolution's border, cut to the rows and columns some output reads."""
    config = [(0, 0, 0)]
    for size, (low, _), stride, out, k in zip(x.shape[1:3], self.pads, self.strides,
                                              self.out_size, kernel_size):
      config.append((low, stride * (out - 1) + k - size - low, 0))
    config += [(0, 0, 0)] * (x.ndim - 3)
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def geometry(lhs_shape, rhs_shape, window_strides, padding, lhs_dilation, rhs_dilation,
             dimension_numbers, feature_group_count, batch_group_count,
             precision) -> Geometry | None:
  """The convolution's geometry if these forms can compute it, else None."""
  if (len(lhs_shape) != 4 or feature_group_count != 1 or batch_group_count != 1
      or precision is not None or any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
      or dimension_numbers is None
      or lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers) != _NHWC):
    return None
  kernel_size = tuple(rhs_shape[:2])
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(lhs_shape[1:3], kernel_size, window_strides, padding)
  else:
    pads = padding
  pads = tuple((int(low), int(high)) for low, high in pads)
  out_size = tuple((size + low + high - k) // s + 1 for size, (low, high), k, s
                   in zip(lhs_shape[1:3], pads, kernel_size, window_strides))
  if min(out_size) < 1:
    return None
  return Geometry(tuple(int(s) for s in window_strides), pads, out_size)


def broadcast_form(geometry_: Geometry) -> Form:
  """y = Σ over taps of the 1-channel x's window times that tap's row of out features: one fused
  elementwise loop, for maps with one input feature."""
  def convolve(x, kernel):
    kh, kw = kernel.shape[:2]
    padded = geometry_.pad(x, (kh, kw))
    return sum(geometry_.window_slice(padded, i, j) * kernel[i, j, 0]
               for i in range(kh) for j in range(kw))
  return convolve


def patches_form(geometry_: Geometry) -> Form:
  """y = windows of x (side by side in the channel axis) @ kernel as a (k·k·in, out) matrix."""
  def convolve(x, kernel):
    kh, kw, features_in, features_out = kernel.shape
    padded = geometry_.pad(x, (kh, kw))
    windows = jnp.concatenate([geometry_.window_slice(padded, i, j)
                               for i in range(kh) for j in range(kw)], axis=-1)
    return windows @ kernel.reshape(kh * kw * features_in, features_out)
  return convolve


def taps_form(geometry_: Geometry) -> Form:
  """y = Σ over taps of (x @ kernel as an (in, k·k·out) matrix), each tap shifted to its output."""
  def convolve(x, kernel):
    kh, kw, features_in, features_out = kernel.shape
    products = x @ jnp.transpose(kernel, (2, 0, 1, 3)).reshape(features_in, kh * kw * features_out)
    products = geometry_.pad(products.reshape(x.shape[:3] + (kh, kw, features_out)), (kh, kw))
    return sum(geometry_.window_slice(products, i, j)[:, :, :, i, j]
               for i in range(kh) for j in range(kw))
  return convolve


def phases_form(geometry_: Geometry) -> Form:
  """y = Σ over the s×s input phases of a stride-1 convolution of the phase with its own taps."""
  def convolve(x, kernel):
    (kh, kw), (sh, sw) = kernel.shape[:2], geometry_.strides
    padded = geometry_.pad(x, (kh, kw))
    return sum(lax.conv_general_dilated(padded[:, rh::sh, rw::sw], kernel[rh::sh, rw::sw], (1, 1),
                                        'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
               for rh in range(min(sh, kh)) for rw in range(min(sw, kw)))
  return convolve


def shifted_form(geometry_: Geometry) -> Form:
  """y = Σ over taps of (x's window read by the tap) @ (the tap's (in, out) matrix)."""
  def convolve(x, kernel):
    kh, kw = kernel.shape[:2]
    padded = geometry_.pad(x, (kh, kw))
    return sum(geometry_.window_slice(padded, i, j) @ kernel[i, j]
               for i in range(kh) for j in range(kw))
  return convolve


def _wide_over_few_positions(geometry_: Geometry, lhs_shape, rhs_shape) -> bool:
  return (lhs_shape[0] * geometry_.out_size[0] * geometry_.out_size[1] <= MAX_SHIFTED_POSITIONS
          and min(rhs_shape[2:]) >= MIN_SHIFTED_FEATURES)


_switch = threading.local()


@contextlib.contextmanager
def xla_convolutions() -> Iterator[None]:
  """Functions first traced within this context compute every convolution with XLA's own (jit
  keeps the trace of a function it has seen: pass a new one)."""
  saved = getattr(_switch, 'off', False)
  _switch.off = True
  try:
    yield
  finally:
    _switch.off = saved


def _rewriting() -> bool:
  """On the CPU, outside `xla_convolutions()`."""
  return jax.default_backend() == 'cpu' and not getattr(_switch, 'off', False)


def forward_form(geometry_: Geometry | None, lhs_shape, rhs_shape) -> Form | None:
  """The form of the convolution x ↦ y, or None for XLA's own."""
  if geometry_ is None or not _rewriting():
    return None
  features_in, features_out = rhs_shape[2:]
  if features_out <= MAX_TAPS_OUTPUT_FEATURES:
    return taps_form(geometry_)
  if features_in == 1:
    return broadcast_form(geometry_)
  if _wide_over_few_positions(geometry_, lhs_shape, rhs_shape):
    return shifted_form(geometry_)
  return None


def input_gradient_form(geometry_: Geometry | None, lhs_shape, rhs_shape) -> Form | None:
  """The form whose transpose (vjp) computes the input gradient ȳ ↦ x̄, or None for XLA's own.

  The transpose of the patches form has the taps structure, and the other way round: a layer with
  few input features gets its input gradient (a map to few features) as the patches form's
  transpose, and a layer with one output feature (a map from one feature) as the taps form's, up to
  a 4×4 kernel.
  Other strided layers whose kernel is not a multiple of the stride get theirs as stride-1
  convolutions, the phases form's transpose; where it is (the DCGAN critic's 4×4 stride 2), XLA's
  own measured as fast. A wide map over few positions gets its input gradient as the shifted form's
  transpose.
  """
  if geometry_ is None or not _rewriting():
    return None
  features_in, features_out = rhs_shape[2:]
  if features_in <= MAX_TAPS_OUTPUT_FEATURES:
    return patches_form(geometry_)
  if features_out == 1 and rhs_shape[0] * rhs_shape[1] <= MAX_TRANSPOSED_TAPS:
    return taps_form(geometry_)
  if _wide_over_few_positions(geometry_, lhs_shape, rhs_shape):
    return shifted_form(geometry_)
  if any(k % s for k, s in zip(rhs_shape[:2], geometry_.strides)):
    return phases_form(geometry_)
  return None


def shifted_kernel_gradient(geometry_: Geometry) -> KernelGradient:
  """w̄ = for each tap, (x's window read by the tap)ᵀ @ ȳ: one batched product over the taps, whose
  result is the (k, k, in, out) kernel gradient as it is laid out, nothing padded or summed (the
  shifted form's own transpose assembles it from k·k padded taps, which XLA fuses into every
  optimiser update that reads the gradient)."""
  def kernel_gradient(x, cotangent, kernel_size):
    kh, kw = kernel_size
    padded = geometry_.pad(x, (kh, kw))
    windows = jnp.stack([geometry_.window_slice(padded, i, j)
                         for i in range(kh) for j in range(kw)])
    gradient = jnp.einsum('tbhwi,bhwo->tio', windows, cotangent)
    return gradient.reshape(kh, kw, x.shape[-1], cotangent.shape[-1])
  return kernel_gradient


def kernel_gradient_form(geometry_: Geometry | None, lhs_shape, rhs_shape) -> KernelGradient | None:
  """(x, ȳ, kernel size) ↦ the kernel gradient, or None for XLA's own (in chunks,
  `kernel_gradient_chunks`): for a wide map over few positions, as products of the shifted form's
  windows."""
  if (geometry_ is None or not _rewriting()
      or not _wide_over_few_positions(geometry_, lhs_shape, rhs_shape)):
    return None
  return shifted_kernel_gradient(geometry_)


def kernel_gradient_chunks(geometry_: Geometry | None, lhs_shape, rhs_shape) -> int:
  """How many equal batch chunks a layer's kernel gradient is summed over (1: in one piece).

  XLA's CPU kernel gradient of a layer whose output maps are 14×14 or larger ran faster as a sum
  over chunks of 8 images than in one convolution (the VAE's layers, Pix2Pix's PatchGAN, CycleGAN's
  first strided layer), and no faster in chunks of 4 (experiments/step_times.py); on smaller maps
  (the DCGAN critic's 7×7, U-Net and CycleGAN layers on 8×8 and less) it ran slower in chunks, and
  so did a map to few features, whose gradient is a thin product that one convolution already
  fills (figures in PERFORMANCE.md).
  """
  if geometry_ is None or not _rewriting():
    return 1
  batch, features_in = lhs_shape[0], lhs_shape[3]
  large_enough = geometry_.out_size[0] * geometry_.out_size[1] >= MIN_CHUNKED_OUTPUT_PIXELS
  narrow = min(features_in, rhs_shape[3]) <= MAX_TAPS_OUTPUT_FEATURES
  if (narrow or not large_enough
      or batch % KERNEL_GRADIENT_CHUNK or batch == KERNEL_GRADIENT_CHUNK):
    return 1
  return batch // KERNEL_GRADIENT_CHUNK
