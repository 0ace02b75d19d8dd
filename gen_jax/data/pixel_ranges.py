"""The value range a network sees its images in, and the maps to and from the data's [0, 1]."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax


@dataclasses.dataclass(frozen=True)
class PixelRange:
  """A range: the generator's output activation that lands in it, and the maps from and to [0, 1]."""

  activation: str
  from_unit: Callable[[jax.Array], jax.Array]
  to_unit: Callable[[jax.Array], jax.Array]


PIXEL_RANGES = {
    'unit': PixelRange('sigmoid', lambda x: x, lambda x: x),
    # [-1, 1] with a tanh output: the DCGAN notebook's and Pix2Pix's normalisation.
    'symmetric': PixelRange('tanh', lambda x: 2.0 * x - 1.0, lambda x: (x + 1.0) / 2.0),
}
