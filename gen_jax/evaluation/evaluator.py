"""Runs per-example functions over a whole held-out split, data-parallel, in fixed-size batches."""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh

from gen_jax.runtime import parallel
from gen_jax.data import Split, fixed_batches

PerExampleFn = Callable[[Any, dict, jax.Array], dict[str, jax.Array]]


class Evaluator:
  """Applies `fn(state, batch, rng) -> {name: (B,) array}` to every example of a split.

  The last batch is padded to full size (so one compiled shape serves) and the padding dropped.
  Each function is compiled once and reused.
  """

  def __init__(self, mesh: Mesh, batch_size: int):
    parallel.check_batch_size(batch_size, mesh, 'eval.batch_size')
    self.mesh = mesh
    self.batch_size = batch_size
    self._compiled: dict[PerExampleFn, Callable] = {}

  def collect(self, fn: PerExampleFn, state: Any, split: Split, rng: jax.Array) -> dict[str, np.ndarray]:
    compiled = self._compiled.setdefault(fn, parallel.compile_per_example(fn, self.mesh))
    parts: dict[str, list[np.ndarray]] = {}
    for index, (batch, real) in enumerate(fixed_batches(split, self.batch_size)):
      outputs = compiled(state, parallel.shard_batch(batch, self.mesh), jax.random.fold_in(rng, index))
      for name, values in jax.device_get(outputs).items():
        parts.setdefault(name, []).append(np.asarray(values)[:real])
    return {name: np.concatenate(values) for name, values in parts.items()}

  def mean(self, fn: PerExampleFn, state: Any, split: Split, rng: jax.Array) -> dict[str, float]:
    return {name: float(values.mean()) for name, values in self.collect(fn, state, split, rng).items()}
