"""gen_jax's side of a case: the family's own train step, as the training loop runs it.

`train.steps_per_dispatch` = K steps go to the device in one compiled call
(gen_jax.runtime.dispatch.Dispatcher: a `lax.scan` over K stacked batches, or unrolled), the
batches prepared ahead and already on the device, the state donated from call to call. Within a
timed slice no value comes back to the host: the loop keeps at most two calls queued (it waits
for the metrics of the call before last, not for their values), and the slice's last metrics are
fetched once, after its clock stops.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any

import jax
import numpy as np

from experiments.bench import families, style
from gen_jax import registry
from gen_jax.families.base import DataSpec
from gen_jax.runtime import dispatch, parallel
from gen_jax.runtime.players import Player

QUEUED_CALLS = 2


def _count(tree) -> int:
  return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


def xla_flops(compiled) -> float | None:
  """The FLOPs XLA's cost analysis counts for a compiled computation (None where it has none)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # noqa: BLE001 (some backends do not implement it)
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get('flops')
  return float(flops) if flops is not None and flops > 0 else None


def device_memory() -> dict[str, Any]:
  """The device allocator's peak so far (accelerators; XLA's CPU client reports none)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return {'device_peak_bytes': int(peak)} if peak is not None else {}


def _timed_calls(call, result, steps_per_call: int, seconds: float) -> tuple[int, float]:
  """(steps, seconds) of calls made until `seconds` have passed (at least one), with at most
  QUEUED_CALLS of them waiting on the device (where dispatch is asynchronous, as on a GPU: unbounded,
  the host would queue far more than a slice's worth), timed until `result()` is ready."""
  queued: collections.deque = collections.deque()
  started, calls = time.perf_counter(), 0
  while True:
    queued.append(call())
    calls += 1
    if len(queued) > QUEUED_CALLS:
      jax.block_until_ready(queued.popleft())
    if time.perf_counter() - started >= seconds:
      break
  jax.block_until_ready(result())
  return calls * steps_per_call, time.perf_counter() - started


class JaxSide:
  """A family's train step; see the module docstring."""

  def __init__(self, family: families.Family, batch_size: int, image_size: int, settings: dict,
               batches: list[dict[str, np.ndarray]] | None = None):
    started = time.perf_counter()
    self.config = family.build_config(batch_size, image_size)
    shape = (image_size, image_size, 1)
    spec = DataSpec(shape, families.NUM_CLASSES, steps_per_epoch=1000, num_train_examples=64_000,
                    input_shape=shape if 'input' in family.keys else None)
    self.family = registry.get(self.config.model.name)(self.config, spec)
    self.mesh = parallel.make_mesh(1)
    self.k = settings['steps_per_dispatch']
    host = batches or family.host_batches(batch_size, image_size,
                                          self.k * settings['batch_groups'], settings['seed'])
    if len(host) % self.k:
      raise ValueError(f'{len(host)} batches do not make calls of K={self.k} steps each')
    self.groups = [dispatch.put_batches(host[i:i + self.k], self.mesh)
                   for i in range(0, len(host), self.k)]
    self.first_batch = jax.device_put(host[0])
    self.state = parallel.initialize(self.family.init_state, jax.random.PRNGKey(settings['seed']),
                                     self.mesh)
    self.dispatcher = dispatch.Dispatcher(self.family.train_step, self.mesh, self.k,
                                          settings['dispatch_form'])
    self.calls, self.metrics = 0, None
    self.info = {'parameters': self._parameters(), 'build_s': time.perf_counter() - started,
                 'steps_per_dispatch': self.k,
                 'dispatch_form': dispatch.resolve_form(settings['dispatch_form'], self.mesh)}

  def _parameters(self) -> int:
    """Trainable parameters: the state's own, or those of each of its players."""
    players = [getattr(self.state, field.name) for field in dataclasses.fields(self.state)
               if isinstance(getattr(self.state, field.name), Player)]
    return sum(_count(p.params) for p in players) if players else _count(self.state.params)

  def _call(self):
    self.state, self.metrics = self.dispatcher(self.state, self.groups[self.calls % len(self.groups)],
                                               self.k)
    self.calls += 1
    return self.metrics

  def warm_up(self) -> None:
    started = time.perf_counter()
    jax.block_until_ready(self._call())   # compiles
    self.info['first_call_s'] = time.perf_counter() - started
    for _ in range(2):
      self._call()
    jax.block_until_ready(self.state)

  def train(self, seconds: float) -> tuple[int, float]:
    return _timed_calls(self._call, lambda: self.state, self.k, seconds)

  def evaluations_per_step(self) -> float | None:
    return None   # one forward and backward pass a step (per network)

  def losses(self) -> dict[str, float]:
    sums = jax.device_get(self.metrics)   # summed over the call's K steps
    return {k: float(v) / self.k for k, v in sums.items() if np.ndim(v) == 0}

  def flops_per_step(self) -> float | None:
    """XLA's count for one step (a single-step compile: a loop's body may be counted once)."""
    return xla_flops(jax.jit(self.family.train_step).lower(self.state, self.first_batch).compile())

  def memory(self) -> dict[str, Any]:
    return device_memory()

  def translate(self, inputs: np.ndarray) -> np.ndarray:
    """A translation family's outputs in [0, 1] for (N, H, W, C) `inputs` in [0, 1], as its
    evaluation makes them (BatchNorm's running averages, no dropout)."""
    return self.family.translate(self.state, inputs, jax.random.PRNGKey(0), dropout=False)


class JaxStyleSide:
  """gen_jax's style transfer: `iterations` L-BFGS iterations in one dispatch; a step is one."""

  def __init__(self, family: families.Family, batch_size: int, image_size: int, settings: dict):
    del family, batch_size
    started = time.perf_counter()
    self.k = settings['style_iterations']
    self.transfer = style.make_transfer(image_size, self.k)
    self.targets = self.transfer.targets(0)
    self.variable, self.opt_state = self.transfer.start(0)
    self.last, self.iterations, self.evaluations = None, 0, []
    self.info = {'parameters': _count(self.transfer.vgg_params), 'build_s': time.perf_counter() - started,
                 'steps_per_dispatch': self.k, 'dispatch_form': self.transfer.dispatch_form,
                 'image': list(self.transfer.sizes[0])}

  def _call(self):
    self.variable, self.opt_state, self.last, evaluations = self.transfer.iterate(
        self.targets, self.variable, self.opt_state, self.k)
    self.iterations += self.k
    self.evaluations.append(evaluations)   # read after the turns, not within them
    return self.last

  def warm_up(self) -> None:
    started = time.perf_counter()
    jax.block_until_ready(self._call())
    self.info['first_call_s'] = time.perf_counter() - started
    jax.block_until_ready(self._call())
    self.iterations, self.evaluations = 0, []   # counted from the timed turns on

  def train(self, seconds: float) -> tuple[int, float]:
    return _timed_calls(self._call, lambda: self.variable, self.k, seconds)

  def losses(self) -> dict[str, float]:
    return {k: float(v) for k, v in jax.device_get(self.last).items()}

  def evaluations_per_step(self) -> float | None:
    """Loss evaluations per L-BFGS iteration over the timed turns and the memory pass."""
    if not self.iterations:
      return None
    return float(sum(int(e) for e in jax.device_get(self.evaluations))) / self.iterations

  def flops_per_step(self) -> float | None:
    return None   # with a line search, an iteration evaluates a data-dependent number of times

  def memory(self) -> dict[str, Any]:
    return device_memory()


def make(family: families.Family, batch_size: int, image_size: int, settings: dict,
         batches: list[dict[str, np.ndarray]] | None = None):
  """The family's side at (batch_size, image_size), trained on `batches` when given (a multiple of
  K of them, cycled), else on the family's random ones."""
  if family.kind == 'style':
    if batches:
      raise ValueError('style transfer trains on its pictures, not on batches')
    return JaxStyleSide(family, batch_size, image_size, settings)
  return JaxSide(family, batch_size, image_size, settings, batches)
