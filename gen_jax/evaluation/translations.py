"""What the image-to-image translation families (Pix2Pix, CycleGAN) share: translating many images
in compiled batches, and the pictures of translations (rows of images, a column an example)."""

from __future__ import annotations

import pathlib
from typing import Callable

import jax
import numpy as np

from gen_jax.evaluation import figures

SAMPLES_DIR = 'samples'      # the held-out translations of every epoch, and their GIF
GRID_SCALE = 3
TRANSLATION_BATCH = 256      # images translated per compiled call


def check_inputs(inputs: np.ndarray, expected: tuple[int, ...]) -> None:
  """Refuses images of another shape than the model translates, naming both."""
  if tuple(inputs.shape[1:]) != tuple(expected):
    raise ValueError(f'inputs must be (N, {", ".join(map(str, expected))}), got {inputs.shape}')


def in_batches(translate: Callable[[jax.Array, jax.Array], jax.Array], inputs: np.ndarray,
               rng: jax.Array) -> np.ndarray:
  """`translate(batch, rng)` over `inputs` TRANSLATION_BATCH at a time (the key folded with each
  batch's first index), as one NumPy array."""
  parts = [np.asarray(translate(inputs[start:start + TRANSLATION_BATCH], jax.random.fold_in(rng, start)))
           for start in range(0, len(inputs), TRANSLATION_BATCH)]
  return np.concatenate(parts)


def _as_channels(images: np.ndarray, channels: int) -> np.ndarray:
  """Grey images repeated to `channels` (for a grid that shows grey inputs beside colour outputs)."""
  return np.repeat(images, channels, axis=-1) if images.shape[-1] < channels else images


def save_rows(rows: list[np.ndarray], path: pathlib.Path) -> pathlib.Path:
  """Rows of equally many images in [0, 1] (input, translation, …), one column an example."""
  channels = max(row.shape[-1] for row in rows)
  return figures.save_image_grid(np.concatenate([_as_channels(row, channels) for row in rows]),
                                 path, columns=len(rows[0]), scale=GRID_SCALE)


def epoch_grid_path(workdir: pathlib.Path, epoch: int) -> pathlib.Path:
  return pathlib.Path(workdir) / SAMPLES_DIR / f'epoch_{epoch:04d}.png'


def save_epochs_gif(workdir: pathlib.Path) -> None:
  """The per-epoch grids as one GIF."""
  figures.save_epochs_gif(pathlib.Path(workdir) / SAMPLES_DIR, GRID_SCALE)
