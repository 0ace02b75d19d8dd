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

from gen_jax import compiler_options, config_checks

DATA_AXIS = 'data'


def make_mesh(num_devices: int = 0) -> Mesh:
  """A mesh over the first `num_devices` local devices (all of them when 0)."""
  devices = jax.local_devices()
  if num_devices > len(devices):
    raise config_checks.ConfigError(
        f'config.train.num_devices={num_devices} but only {len(devices)} devices are present')
  return Mesh(np.array(devices[:num_devices or len(devices)]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, field: str, slices: int = 1) -> None:
  """The batch must split evenly over the devices, and each device's part into `slices`."""
  if batch_size % (mesh.size * slices):
    in_slices = f' × {slices} slices (config.train.microbatches)' if slices > 1 else ''
    raise config_checks.ConfigError(
        f'config.{field}={batch_size} must be a multiple of the {mesh.size} devices in use'
        f'{in_slices} (set config.train.num_devices to use fewer)')


def replicate(tree: Any, mesh: Mesh) -> Any:
  return jax.device_put(tree, replicated(mesh))


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


def sliced_value_and_grad(value_and_grad_fn: Callable, params: Any, x: jax.Array,
                          rng: jax.Array, slices: int) -> tuple[tuple[jax.Array, Any], Any]:
  """`value_and_grad_fn(params, x, rng)` (with per-example aux) over `slices` parts of the batch.

  The loss and gradients are averaged over the parts and the aux arrays put back in batch order:
  for a loss that is a mean over independent examples (no batch statistics), the whole batch's
  loss and gradient. The parts have no data dependence on each other, so XLA's CPU runtime runs
  them at once, which keeps the cores busier: the VAE step on 2 cores 97.5 → 94.3 ms, on one
  172 → 168 ms. Part j holds examples j, j + slices, ..., so that it is spread evenly over a
  batch-sharded mesh; it draws its noise from its own key.
  """
  if slices == 1:
    return value_and_grad_fn(params, x, rng)
  if x.shape[0] % slices:
    raise ValueError(f'a batch of {x.shape[0]} cannot be split into {slices} equal parts')
  parts = x.reshape((x.shape[0] // slices, slices) + x.shape[1:])
  results = [value_and_grad_fn(params, parts[:, j], key)
             for j, key in enumerate(jax.random.split(rng, slices))]
  mean = lambda *values: sum(values) / slices
  interleave = lambda *values: jnp.stack(values, axis=1).reshape((-1,) + values[0].shape[1:])
  loss = mean(*[loss for (loss, _), _ in results])
  aux = jax.tree.map(interleave, *[aux for (_, aux), _ in results])
  return (loss, aux), jax.tree.map(mean, *[grad for _, grad in results])


def per_replica_key(key: jax.Array, axis_name: str | None) -> jax.Array:
  """Under pmap, each replica draws different noise for its part of the batch."""
  return key if axis_name is None else jax.random.fold_in(key, jax.lax.axis_index(axis_name))


@jax.jit
def all_finite(tree: Any) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
