"""Training across hosts on JAX's own distributed runtime.

Every process of a multi-host run executes the same program on its own devices; together they
form one mesh. One process, the writer (process 0), writes what a person reads (config.json,
metrics, pictures, reports); every process takes part in the collective steps and in orbax's
saves and restores. `initialize` must run before any JAX computation.
"""

from __future__ import annotations

import atexit
import functools
import os
import pathlib
import shutil
import tempfile
from typing import Any, Callable

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from gen_jax.runtime import config_checks

# Explicit settings, for clusters JAX does not detect (SLURM, Open MPI and TPU pods it does).
COORDINATOR_ENV = 'GEN_JAX_COORDINATOR'        # host:port of process 0
NUM_PROCESSES_ENV = 'GEN_JAX_NUM_PROCESSES'
PROCESS_ID_ENV = 'GEN_JAX_PROCESS_ID'
# How long a process waits for the others to start, and for a silent one before it fails
# (rather than hang forever when a host dies); the variable overrides both.
TIMEOUT_ENV = 'GEN_JAX_DISTRIBUTED_TIMEOUT_S'
START_TIMEOUT_S = 300
HEARTBEAT_TIMEOUT_S = 60


def requested() -> bool:
  """Whether the environment names a coordinator (the explicit form of --multihost)."""
  return bool(os.environ.get(COORDINATOR_ENV))


def _int_env(name: str) -> int | None:
  value = os.environ.get(name)
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise config_checks.ConfigError(f'{name}={value!r} must be an integer') from None


def initialize() -> None:
  """Joins the multi-host run: with the GEN_JAX_* settings when given, else auto-detected."""
  coordinator = os.environ.get(COORDINATOR_ENV) or None
  num_processes, process_id = _int_env(NUM_PROCESSES_ENV), _int_env(PROCESS_ID_ENV)
  if coordinator and (num_processes is None or process_id is None):
    raise config_checks.ConfigError(
        f'{COORDINATOR_ENV}={coordinator!r} needs {NUM_PROCESSES_ENV} and {PROCESS_ID_ENV} too')
  if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
    raise config_checks.ConfigError(f'{PROCESS_ID_ENV}={process_id} must be in [0, '
                                    f'{NUM_PROCESSES_ENV}={num_processes})')
  if jax.config.jax_platforms in (None, '', 'cpu') and not jax.config.jax_cpu_collectives_implementation:
    # CPU devices of several processes talk through gloo (only needed where there is no GPU/TPU).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  timeout = _int_env(TIMEOUT_ENV)
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                             process_id=process_id,
                             initialization_timeout=timeout or START_TIMEOUT_S,
                             heartbeat_timeout_seconds=timeout or HEARTBEAT_TIMEOUT_S)
  logging.info('Process %d of %d, with %d of the %d devices', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def is_writer() -> bool:
  """Whether this process writes the run's files (process 0)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process has reached the barrier of this name."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def writer_then_all(name: str, action: Callable[[], Any]) -> None:
  """Runs `action` on the writer only (a file operation on the shared workdir), then lets every
  process go on once it is done."""
  if is_writer():
    action()
  barrier(name)


def agree(value: bool) -> bool:
  """The writer's value of `value`, on every process (a decision all of them must share)."""
  if jax.process_count() == 1:
    return value
  return bool(multihost_utils.broadcast_one_to_all(np.asarray(value)))


def output_dir(directory: pathlib.Path) -> pathlib.Path:
  """Where this process writes pictures meant for `directory`: there on the writer, a scratch
  folder elsewhere (the other processes compute the same pictures; only one copy is kept)."""
  if is_writer():
    return pathlib.Path(directory)
  return _scratch_dir()


@functools.cache
def _scratch_dir() -> pathlib.Path:
  """This non-writer process's scratch folder, removed when the process exits."""
  scratch = tempfile.mkdtemp(prefix=f'gen_jax_process{jax.process_index()}_')
  atexit.register(shutil.rmtree, scratch, ignore_errors=True)
  return pathlib.Path(scratch)
