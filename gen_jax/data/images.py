"""Single pictures for style transfer: read from a file or from scikit-image's embedded ones, and
resized.

A picture is named by a path (any format Pillow reads) or by `skimage:<name>`, one of the
photographs and textures that ship inside scikit-image's wheel (no download): so a run needs no
data of its own. Every picture comes back as float32 (H, W, 3) RGB in [0, 1]; a grey one is
repeated on three channels and an alpha channel is dropped. A path that does not exist or does not
hold a picture is named in a one-line `DataError`.
"""

from __future__ import annotations

import pathlib

import chex
import numpy as np
from PIL import Image, UnidentifiedImageError

from gen_jax.data.dataset import DataError

SKIMAGE_PREFIX = 'skimage:'
# scikit-image's pictures that are files inside its wheel (skimage/data/*.png, *.jpg), by the
# name of the skimage.data function that reads each; others would be downloaded.
EMBEDDED = ('astronaut', 'brick', 'camera', 'chelsea', 'coffee', 'coins', 'grass', 'gravel',
            'horse', 'hubble_deep_field', 'immunohistochemistry', 'logo', 'moon', 'page', 'retina',
            'rocket', 'text')


def read_image(spec: str, field: str = 'image') -> np.ndarray:
  """The picture `spec` names (a path or `skimage:<name>`) as float32 (H, W, 3) in [0, 1].

  `field` names where the spec came from (`config.content`), for the error message.
  """
  if spec.startswith(SKIMAGE_PREFIX):
    name = spec[len(SKIMAGE_PREFIX):]
    if name not in EMBEDDED:
      raise DataError(f'{field}={spec!r}: scikit-image ships no picture {name!r} in its wheel; '
                      f'choose one of {[SKIMAGE_PREFIX + n for n in EMBEDDED]} or give a file path')
    try:
      import skimage.data
    except ImportError:
      raise DataError(f'{field}={spec!r} needs scikit-image (pip install scikit-image), or give a '
                      f'file path') from None
    pixels = np.asarray(getattr(skimage.data, name)())
  else:
    path = pathlib.Path(spec).expanduser()
    if not path.is_file():
      raise DataError(f'{field}: no such image file {str(path)!r}')
    try:
      with Image.open(path) as picture:
        pixels = np.asarray(picture.convert('RGB'))
    except (UnidentifiedImageError, OSError) as error:
      raise DataError(f'{field}: {str(path)!r} is not a readable image ({error})') from None
  return _as_rgb(pixels, spec)


def _as_rgb(pixels: np.ndarray, spec: str) -> np.ndarray:
  """uint8 / bool / float pixels of any channel count → float32 (H, W, 3) in [0, 1]."""
  if pixels.dtype == np.uint8:
    pixels = pixels.astype(np.float32) / 255.0
  elif pixels.dtype == np.uint16:
    pixels = pixels.astype(np.float32) / 65535.0
  else:
    pixels = np.clip(pixels.astype(np.float32), 0.0, 1.0)
  if pixels.ndim == 2:
    pixels = pixels[..., None]
  if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4) or min(pixels.shape[:2]) < 1:
    raise DataError(f'{spec!r} has pixels of shape {pixels.shape}; expected a grey, RGB or RGBA picture')
  if pixels.shape[-1] == 4:
    pixels = pixels[..., :3]
  return np.ascontiguousarray(np.broadcast_to(pixels, pixels.shape[:2] + (3,)), np.float32)


def fitted_size(height: int, width: int, max_size: int) -> tuple[int, int]:
  """(height, width) scaled down, keeping the aspect ratio, so that neither side exceeds
  `max_size`; a picture already small enough keeps its size."""
  scale = min(1.0, max_size / max(height, width))
  return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """An (H, W, C) picture resized to (height, width, C): Pillow's bilinear filter on float pixels,
  which widens its support when shrinking (antialiased)."""
  chex.assert_rank(image, 3)
  image = np.asarray(image, np.float32)
  if image.shape[:2] == (height, width):
    return image
  channels = [np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c]))
                         .resize((width, height), Image.BILINEAR)) for c in range(image.shape[-1])]
  return np.clip(np.stack(channels, axis=-1), 0.0, 1.0)


def save_png(image: np.ndarray, path: pathlib.Path) -> pathlib.Path:
  """An (H, W, 3) picture in [0, 1] as an 8-bit PNG, pixel for pixel."""
  chex.assert_rank(image, 3)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray((np.clip(np.asarray(image), 0.0, 1.0) * 255).round().astype(np.uint8)).save(path)
  return path
