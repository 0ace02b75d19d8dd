"""Pictures a person looks at: image grids, curves, GIFs, written as PNG (or GIF) files."""

from __future__ import annotations

import pathlib
from typing import Sequence

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def image_grid(images: np.ndarray, columns: int, padding: int = 1) -> np.ndarray:
  """Tiles (N, H, W, C) images in [0, 1] into one uint8 (rows·H, columns·W, C) image."""
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  count, height, width, channels = images.shape
  rows = -(-count // columns)
  grid = np.ones((rows * (height + padding) + padding, columns * (width + padding) + padding,
                  channels), np.float32)
  for index, image in enumerate(images):
    r, c = divmod(index, columns)
    top, left = padding + r * (height + padding), padding + c * (width + padding)
    grid[top:top + height, left:left + width] = image
  return (grid * 255).round().astype(np.uint8)


def _to_pil(array: np.ndarray, scale: int) -> Image.Image:
  image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
  return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def save_image_grid(images: np.ndarray, path: pathlib.Path, columns: int, scale: int = 2) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  _to_pil(image_grid(images, columns), scale).save(path)
  return path


def save_gif(frames: Sequence[np.ndarray], path: pathlib.Path, duration_ms: int = 400) -> pathlib.Path:
  """Animates uint8 grid images (as from `image_grid`)."""
  images = [_to_pil(frame, 2) for frame in frames]
  images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
  return pathlib.Path(path)


def save_epochs_gif(directory: pathlib.Path, scale: int) -> pathlib.Path | None:
  """The `epoch_*.png` grids of `directory` (saved `scale` times enlarged) as `epochs.gif`."""
  frames = sorted(pathlib.Path(directory).glob('epoch_*.png'))
  if not frames:
    return None
  # save_gif enlarges again: undo the grids' own enlargement (nearest neighbour) first.
  return save_gif([np.asarray(Image.open(path))[::scale, ::scale] for path in frames],
                  pathlib.Path(directory) / 'epochs.gif')


def save_curves(records: list[dict], keys: Sequence[str], path: pathlib.Path, title: str,
                ylabel: str | Sequence[str]) -> pathlib.Path:
  """Plots metric records (dicts with 'step') against the step, one line a key.

  One `ylabel` (a quantity with its unit) puts every key on one axis; a sequence of labels, one
  per key, gives each key its own panel, for quantities that do not share a unit.
  """
  panels = [(list(keys), ylabel)] if isinstance(ylabel, str) else [([k], y) for k, y in zip(keys, ylabel)]
  fig, axes = plt.subplots(len(panels), 1, figsize=(7, 3 + 2.0 * (len(panels) - 1)), sharex=True,
                           squeeze=False)
  for ax, (panel_keys, label) in zip(axes[:, 0], panels):
    for key in panel_keys:
      points = [(r['step'], r[key]) for r in records if key in r]
      if points:
        ax.plot(*zip(*points), label=key)
    ax.set_ylabel(label)
    ax.legend()
    ax.grid(alpha=0.3)
  axes[-1, 0].set_xlabel('training step')
  axes[0, 0].set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return pathlib.Path(path)


def save_scatter(points: np.ndarray, labels: np.ndarray, path: pathlib.Path, title: str,
                 axis_labels: tuple[str, str]) -> pathlib.Path:
  """2-D points coloured by integer label (grey when unlabelled), axes named by `axis_labels`."""
  fig, ax = plt.subplots(figsize=(6, 5))
  if np.all(labels >= 0):
    handle = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap='tab10', s=4)
    fig.colorbar(handle, ax=ax, label='class label')
  else:
    ax.scatter(points[:, 0], points[:, 1], c='grey', s=4)
  ax.set_xlabel(axis_labels[0])
  ax.set_ylabel(axis_labels[1])
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return pathlib.Path(path)


def save_histograms(columns: dict[str, np.ndarray], path: pathlib.Path, title: str) -> pathlib.Path:
  """One histogram panel per named 1-D array."""
  fig, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 3), squeeze=False)
  for ax, (name, values) in zip(axes[0], columns.items()):
    ax.hist(np.asarray(values), bins=50)
    ax.set_title(name)
    ax.set_xlabel('value')
    ax.set_ylabel('count')
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return pathlib.Path(path)


def save_labeled_rows(rows: dict[str, np.ndarray], path: pathlib.Path, title: str) -> pathlib.Path:
  """One titled strip of (N, H, W, C) images in [0, 1] per row (e.g. noisy / denoised / clean)."""
  strips = {name: image_grid(images, columns=len(images)) for name, images in rows.items()}
  width = max(strip.shape[1] for strip in strips.values())
  fig, axes = plt.subplots(len(strips), 1, figsize=(max(4.0, width / 28), 1.1 * len(strips) + 0.4),
                           squeeze=False)
  for ax, (name, strip) in zip(axes[:, 0], strips.items()):
    ax.imshow(strip[..., 0] if strip.shape[-1] == 1 else strip, cmap='gray', vmin=0, vmax=255,
              interpolation='nearest')
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha='right', va='center')
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return pathlib.Path(path)


def save_scree(eigenvalues: np.ndarray, path: pathlib.Path, chosen: int | None = None,
               shown: int = 50) -> pathlib.Path:
  """Scree plot: the first `shown` eigenvalues per component, with the cumulative explained ratio."""
  eigenvalues = np.asarray(eigenvalues, np.float64)
  cumulative = np.cumsum(eigenvalues) / max(eigenvalues.sum(), np.finfo(np.float64).tiny)
  count = min(shown, len(eigenvalues))
  components = np.arange(1, count + 1)
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.plot(components, eigenvalues[:count], 'o-', color='tab:blue', markersize=3)
  ax.set_xlabel('principal component')
  ax.set_ylabel('eigenvalue (explained variance)', color='tab:blue')
  ratio_ax = ax.twinx()
  ratio_ax.plot(components, cumulative[:count], 's-', color='tab:orange', markersize=2)
  ratio_ax.set_ylabel('cumulative explained-variance ratio', color='tab:orange')
  ratio_ax.set_ylim(0, 1.02)
  title = 'Scree plot'
  if chosen is not None:
    title += f' ({chosen} components kept: {cumulative[chosen - 1]:.1%} of the variance)'
    if chosen <= count:
      ax.axvline(chosen, color='grey', linestyle='--', linewidth=1)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return pathlib.Path(path)


def unique_dir(path: pathlib.Path) -> pathlib.Path:
  """`path`, or `path-2`, `path-3`, … when it exists: earlier outputs are never overwritten."""
  path = pathlib.Path(path)
  candidate, index = path, 1
  while candidate.exists():
    index += 1
    candidate = path.with_name(f'{path.name}-{index}')
  candidate.mkdir(parents=True)
  return candidate
