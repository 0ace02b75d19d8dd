"""XLA compiler options for the compiled steps, chosen for the devices they run on.

On the CPU, XLA hands convolutions to YNNPACK by default, which runs each convolution on a single
thread. The convolutions XLA falls back to without it (Eigen's) use every core of the host, so on
a CPU with more than one core the steps keep YNNPACK for dots and reductions only, which measured
faster on 2 cores; on one core YNNPACK measured a little faster, and is kept (PERFORMANCE.md,
`experiments/step_times.py --variant='xla defaults;compiler=default'`).

The option is experimental in XLA: a jaxlib that no longer knows it gets no options, with a
warning, rather than a failed compile.
"""

from __future__ import annotations

import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
from absl import logging

YNN_FUSION_TYPES = 'xla_cpu_experimental_ynn_fusion_type'
# XLA's default YNNPACK fusion types (jaxlib 0.10) less LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION.
YNN_WITHOUT_CONVOLUTIONS = 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE'


def host_cores() -> int:
  """Threads XLA's CPU convolutions may use: the cores this process may run on, or 1 when
  XLA_FLAGS asks for no multi-threaded Eigen (in jaxlib 0.10 the flag alone no longer limits
  XLA's threads, so it is taken as the user's wish; `taskset` does limit them)."""
  if '--xla_cpu_multi_thread_eigen=false' in os.environ.get('XLA_FLAGS', ''):
    return 1
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1


def for_devices(devices: Sequence[jax.Device]) -> dict[str, str] | None:
  """The options for a computation over `devices`: None (XLA's defaults) except on multi-core CPUs."""
  if any(device.platform != 'cpu' for device in devices) or host_cores() < 2:
    return None
  return _multithreaded_cpu_convolutions()


@functools.cache
def _multithreaded_cpu_convolutions() -> dict[str, str] | None:
  """YNNPACK without convolutions, if this jaxlib accepts the option."""
  options = {YNN_FUSION_TYPES: YNN_WITHOUT_CONVOLUTIONS}
  try:
    jax.jit(jnp.negative, compiler_options=options).lower(jnp.zeros(())).compile()
  except jax.errors.JaxRuntimeError as error:
    logging.warning('XLA does not take %s=%s (%s); CPU convolutions stay single-threaded',
                    YNN_FUSION_TYPES, YNN_WITHOUT_CONVOLUTIONS, error)
    return None
  return options
