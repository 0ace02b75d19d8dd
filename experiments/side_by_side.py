"""What the side-by-side benchmarks share: an implementation that trains in timed slices, the
turns the implementations take on one machine, and the machine's description."""

from __future__ import annotations

import os
import platform
import time
from typing import Sequence

import jax
import torch


class Side:
  """One implementation: trains step by step (`step`, its losses read back to the host)."""

  name: str

  def __init__(self, batches):
    self.batches, self.steps = batches, 0
    self.train_seconds = self.warmup_seconds = 0.0
    self.slice_rates: list[float] = []   # steps per second in each slice
    self.last_losses: dict[str, float] = {}

  def step(self) -> None:
    raise NotImplementedError

  def warm_up(self) -> None:
    """The first step (JAX's compilation, PyTorch's first allocations), timed apart."""
    start = time.perf_counter()
    self.step()
    self.warmup_seconds = time.perf_counter() - start

  def train_for(self, seconds: float) -> None:
    """Steps until `seconds` have passed."""
    start, first = time.perf_counter(), self.steps
    while time.perf_counter() - start < seconds:
      self.step()
    elapsed = time.perf_counter() - start
    self.train_seconds += elapsed
    self.slice_rates.append((self.steps - first) / elapsed)


def take_turns(sides: Sequence[Side], budget_s: float, slice_s: float) -> tuple[tuple, tuple]:
  """Warms every side up, then lets them train in turns of slice_s until each has trained for
  budget_s, so that load from other jobs falls on all alike; returns the load averages at the
  start and the end."""
  load_start = os.getloadavg()
  for side in sides:
    side.warm_up()
  while any(side.train_seconds < budget_s for side in sides):
    for side in sides:
      remaining = budget_s - side.train_seconds
      if remaining > 0:
        side.train_for(min(slice_s, remaining))
        losses = ', '.join(f'{k} {v:.4f}' for k, v in side.last_losses.items())
        print(f'{side.name:>28s}: {side.steps:6d} steps in {side.train_seconds:6.1f} s '
              f'({side.slice_rates[-1]:.2f} steps/s this slice), {losses}', flush=True)
  return load_start, os.getloadavg()


def machine() -> str:
  return (f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; jax '
          f'{jax.__version__} on {jax.devices()[0].platform} ({len(jax.devices())} device), '
          f'torch {torch.__version__} ({torch.get_num_threads()} threads); '
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
