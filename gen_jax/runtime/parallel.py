"""Device meshes and shardings: every train step runs data-parallel over the local devices.

Steps are jit-compiled over a one-axis mesh; the batch is sharded along that axis and the state is
replicated, so XLA inserts the cross-device reductions. The same step functions also take an
optional `axis_name`, for use under `jax.pmap`, where they average explicitly.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gen_jax.cpu_speed import compiler_options
from gen_jax.runtime import config_checks

DATA_AXIS = 'data'


def make_mesh(num_devices: int = 0) -> Mesh:
  """A mesh over the first `num_devices` devices (all of them when 0), every process's included.

  The devices are ordered by process, so that each process's devices hold one contiguous part of
  every global batch: the part that process reads (`data.BatchSchedule.part`).
  """
  devices = sorted(jax.devices(), key=lambda device: (device.process_index, device.id))
  if num_devices > len(devices):
    raise config_checks.ConfigError(
        f'config.train.num_devices={num_devices} but only {len(devices)} devices are present')
  if jax.process_count() > 1 and num_devices not in (0, len(devices)):
    raise config_checks.ConfigError(
        f'config.train.num_devices={num_devices}: a run of {jax.process_count()} processes uses '
        f'all {len(devices)} of their devices (set 0)')
  return Mesh(np.array(devices[:num_devices or len(devices)]), (DATA_AXIS,))


def local_mesh() -> Mesh:
  """A mesh over this process's devices: where a process evaluates and samples on its own."""
  return Mesh(np.array(jax.local_devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, field: str) -> None:
  """The batch must split evenly over the devices."""
  if batch_size % mesh.size:
    raise config_checks.ConfigError(
        f'config.{field}={batch_size} must be a multiple of the {mesh.size} devices in use '
        f'(set config.train.num_devices to use fewer)')


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))


def initialize(init: Callable[[jax.Array], Any], rng: jax.Array, mesh: Mesh) -> Any:
  """`init(rng)`, a model's initial state, replicated over the mesh.

  Compiled as one program: run op by op, a model's initialisers dispatch hundreds of small
  programs, several seconds in every new process.
  """
  return replicate(jax.jit(init)(rng), mesh)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  return jax.device_put(batch, data_sharded(mesh))


def compile_train_step(step: Callable, mesh: Mesh, tuned: bool = True) -> Callable:
  """jit of `step(state, batch) -> (state, metrics)`, batch sharded, the old state donated.

  Compiled with `compiler_options.for_devices`, or with XLA's defaults when not `tuned`.
  """
  options = compiler_options.for_devices(mesh.devices.flat) if tuned else None
  return jax.jit(step, in_shardings=(replicated(mesh), data_sharded(mesh)),
                 out_shardings=(replicated(mesh), replicated(mesh)), donate_argnums=0,
                 compiler_options=options)


def compile_per_example(fn: Callable, mesh: Mesh) -> Callable:
  """jit of `fn(state, batch, rng) -> {name: (B,) array}`, with outputs sharded like the batch."""
  return jax.jit(fn, in_shardings=(replicated(mesh), data_sharded(mesh), replicated(mesh)),
                 out_shardings=data_sharded(mesh),
                 compiler_options=compiler_options.for_devices(mesh.devices.flat))


def cross_replica_mean(tree: Any, axis_name: str | None) -> Any:
  """Averages over the pmap axis when there is one; under jit the batch is already global."""
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def per_replica_key(key: jax.Array, axis_name: str | None) -> jax.Array:
  """Under pmap, each replica draws different noise for its part of the batch."""
  return key if axis_name is None else jax.random.fold_in(key, jax.lax.axis_index(axis_name))


@jax.jit
def all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
