"""Several training steps in one compiled call, and the plan of calls that lands on every boundary.

On an accelerator a small model's step takes less time than the host needs to launch it, so the
loop hands the device `train.steps_per_dispatch` steps at once. The steps run either as a
`lax.scan` over the stacked batches (one compiled loop body, fast to compile) or unrolled into one
straight-line program: XLA's CPU backend runs convolutions inside a loop body through a slower
path, so 'auto' unrolls on CPU and scans elsewhere (PERFORMANCE.md has the measurements).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gen_jax.cpu_speed import compiler_options
from gen_jax.runtime import parallel

FORMS = ('auto', 'scan', 'unrolled')


def resolve_form(form: str, mesh: Mesh) -> str:
  """'auto' becomes 'unrolled' on CPU devices and 'scan' on accelerators."""
  if form not in FORMS:
    raise ValueError(f'form must be one of {FORMS}, got {form!r}')
  if form != 'auto':
    return form
  return 'unrolled' if mesh.devices.flat[0].platform == 'cpu' else 'scan'


def several_steps(train_step: Callable, num_steps: int, form: str) -> Callable:
  """`steps(state, batches) -> (state, metric sums)`: `num_steps` applications of `train_step`,
  batch i taken from index i of the leading axis of `batches`; the metrics summed over the steps
  (the loop divides by the count when it logs them)."""
  if form not in ('scan', 'unrolled'):
    raise ValueError(f"form must be 'scan' or 'unrolled' here, got {form!r}")

  def steps(state, batches, axis_name: str | None = None):
    if form == 'scan':
      def body(state, batch):
        return train_step(state, batch, axis_name=axis_name)
      state, metrics = jax.lax.scan(body, state, batches, length=num_steps)
      return state, jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)
    sums = None
    for i in range(num_steps):
      state, metrics = train_step(state, jax.tree.map(lambda x: x[i], batches), axis_name=axis_name)
      sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
    return state, sums

  return steps


def stacked_sharding(mesh: Mesh) -> NamedSharding:
  """Batches stacked on a leading step axis, each one split over the mesh along its batch axis."""
  return NamedSharding(mesh, PartitionSpec(None, parallel.DATA_AXIS))


def put_batches(batches: Sequence[dict[str, np.ndarray]], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's parts of global batches, stacked on a leading step axis, as global arrays on
  the mesh (with one process, the whole batches put on its devices)."""
  sharding = stacked_sharding(mesh)
  stacked = {name: np.stack([batch[name] for batch in batches]) for name in batches[0]}
  if jax.process_count() == 1:
    return jax.device_put(stacked, sharding)
  return {name: jax.make_array_from_process_local_data(
              sharding, part, (part.shape[0], part.shape[1] * jax.process_count()) + part.shape[2:])
          for name, part in stacked.items()}


def compile_several_steps(train_step: Callable, mesh: Mesh, num_steps: int,
                          form: str = 'auto') -> Callable:
  """jit of `several_steps` over the mesh: state replicated and donated, batches stacked."""
  steps = several_steps(train_step, num_steps, resolve_form(form, mesh))
  return jax.jit(steps, in_shardings=(parallel.replicated(mesh), stacked_sharding(mesh)),
                 out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
                 donate_argnums=0,
                 compiler_options=compiler_options.for_devices(mesh.devices.flat))


class Dispatcher:
  """The compiled calls of one run, one per number of steps the plan asks for (usually one or
  two: `steps_per_dispatch`, and what is left before a boundary that it does not divide)."""

  def __init__(self, train_step: Callable, mesh: Mesh, steps_per_dispatch: int, form: str):
    self._train_step, self._mesh = train_step, mesh
    self._form = form
    self.steps_per_dispatch = steps_per_dispatch
    self._compiled: dict[int, Callable] = {}
    # XLA's CPU backend runs the devices of a mesh on one small thread pool: with several calls
    # in flight, the participants of one call's all-reduce can wait behind those of the next and
    # never meet (a deadlock that aborts after 40 s). There each call is waited for; on CPU the
    # host is the device, so nothing is lost.
    self._wait_each_call = mesh.size > 1 and mesh.devices.flat[0].platform == 'cpu'

  def __call__(self, state: Any, batches: Any, num_steps: int) -> tuple[Any, Any]:
    if num_steps not in self._compiled:
      self._compiled[num_steps] = compile_several_steps(self._train_step, self._mesh, num_steps,
                                                        self._form)
    state, sums = self._compiled[num_steps](state, batches)
    if self._wait_each_call:
      jax.block_until_ready(sums)
    return state, sums


def plan(start: int, end: int, steps_per_dispatch: int,
         is_boundary: Callable[[int], bool]) -> Iterator[tuple[int, int]]:
  """(first step, number of steps) of each call from `start` to `end`: at most
  `steps_per_dispatch` steps, and a call never runs past a step count `is_boundary` names (where
  the loop logs, saves, evaluates or ends an epoch)."""
  step = start
  while step < end:
    count = 1
    while count < steps_per_dispatch and step + count < end and not is_boundary(step + count):
      count += 1
    yield step, count
    step += count
