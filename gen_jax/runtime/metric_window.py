"""The training metrics of the steps since the last log, kept on the device until the loop needs
them: fetching them every step would make the host wait for each step to finish."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


class TrainingDiverged(RuntimeError):
  """A loss or a parameter became NaN or infinite."""


class MetricWindow:
  """Metric sums of the calls since the last log, each with the steps it covers."""

  def __init__(self):
    self._calls: list[tuple[int, int, Any]] = []   # (first step, number of steps, sums)

  def add(self, first_step: int, num_steps: int, sums: Any) -> None:
    self._calls.append((first_step, num_steps, sums))

  @property
  def num_steps(self) -> int:
    return sum(count for _, count, _ in self._calls)

  def check_finite(self, where: str) -> None:
    """Fetches the pending metrics and raises TrainingDiverged naming the first call whose
    metrics are NaN or infinite; `where` says what was kept (the last good checkpoint)."""
    fetched = jax.device_get([sums for _, _, sums in self._calls])
    self._calls = [(first, count, values) for (first, count, _), values in zip(self._calls, fetched)]
    for first, count, values in self._calls:
      bad = {k: float(v) for k, v in values.items() if not math.isfinite(float(v))}
      if bad:
        steps = f'step {first}' if count == 1 else f'steps {first} to {first + count - 1}'
        raise TrainingDiverged(f'training diverged at {steps}: {bad}. {where}')

  def flush(self, where: str) -> dict[str, float]:
    """The means over the window's steps (after `check_finite`); empties the window."""
    self.check_finite(where)
    total = self.num_steps
    names = self._calls[0][2].keys() if self._calls else ()
    means = {name: float(np.sum([np.float64(values[name]) for _, _, values in self._calls])) / total
             for name in names}
    self._calls = []
    return means
