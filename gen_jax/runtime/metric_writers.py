"""Metrics to a JSON-lines file, and metrics and pictures to TensorBoard event files (tensorboardX,
no TensorFlow): `tensorboard --logdir <workdir>/tensorboard` shows them."""

from __future__ import annotations

import json
import pathlib

import numpy as np
from PIL import Image
from tensorboardX import SummaryWriter

METRICS_FILE = 'metrics.jsonl'


class MetricWriter:
  """Appends; a resumed run adds to the files of the run it continues.

  A run resumed from step N first drops the records of steps after N (written before it was
  stopped, past its last checkpoint), so that metrics.jsonl reads as one uninterrupted run.
  """

  def __init__(self, workdir: pathlib.Path, resumed_step: int = 0):
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / METRICS_FILE
    if path.exists():
      kept = [line for line in path.read_text(encoding='utf-8').splitlines()
              if line.strip() and json.loads(line)['step'] <= resumed_step]
      partial = path.with_name(METRICS_FILE + '.tmp')
      partial.write_text(''.join(line + '\n' for line in kept), encoding='utf-8')
      partial.replace(path)
    self._jsonl = open(path, 'a', encoding='utf-8')
    self._tensorboard = SummaryWriter(str(workdir / 'tensorboard'))

  def write(self, step: int, split: str, scalars: dict[str, float]) -> None:
    record = {'step': int(step), 'split': split}
    record.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    self._jsonl.write(json.dumps(record) + '\n')
    self._jsonl.flush()
    for name, value in scalars.items():
      self._tensorboard.add_scalar(f'{split}/{name}', float(np.asarray(value)), int(step))
    self._tensorboard.flush()

  def write_images(self, step: int, split: str, pictures: dict[str, pathlib.Path]) -> None:
    """PNG files (grids, curves) into TensorBoard's images tab, as `<split>/<name>`."""
    for name, path in pictures.items():
      with Image.open(path) as picture:
        array = np.asarray(picture.convert('RGB'))
      self._tensorboard.add_image(f'{split}/{name}', array, int(step), dataformats='HWC')
    self._tensorboard.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._tensorboard.close()


def read_metrics(workdir: pathlib.Path, split: str | None = None) -> list[dict]:
  path = pathlib.Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
  return [r for r in records if split is None or r['split'] == split]
