"""Keeps a CPU step's memory mapped from one step to the next, without one lock for all threads.

A jit-compiled step on the CPU allocates its temporaries and outputs afresh at every call. With
glibc's defaults, large blocks come from fresh `mmap`s (or are trimmed off the heap when freed), so
every step touches new pages and pays a page fault for each 4 KiB of them, a sizeable share of a
small model's step. Two settings together avoid that (PERFORMANCE.md has the measurements):

- the allocator serves every block from a heap it never trims, and never maps a block of its
  own. Each thread keeps its own heap ("arena"), so XLA's worker threads allocating their
  convolution workspaces do not queue on one lock;
- the step runs on the thread that calls it (JAX's CPU dispatch made synchronous), so its large
  buffers come from the main heap. A worker thread's heap is made of 64 MiB segments that glibc
  unmaps when they empty, and a block larger than one is mapped on its own whatever the
  settings, so a step running on a worker thread would fault its buffers in at every call.
  Calls still overlap with host work: batches are prepared on the prefetch thread, and the step
  releases Python's lock while it computes.

The allocator's settings take effect only for memory allocated after the call, so it must come
before the first computation (before JAX's backend starts).
"""

from __future__ import annotations

import ctypes
import platform

# glibc's mallopt parameters (malloc.h). M_ARENA_MAX stays glibc's (an arena per thread); it is
# named for experiments/host_memory_settings.py, which compares the alternatives.
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
KEPT_MAPPED = ((M_MMAP_MAX, 0),                 # no block of its own mapping, however large
               (M_TRIM_THRESHOLD, 2**31 - 1))   # never give a heap's top back


def set_allocator(settings) -> bool:
  """glibc's `mallopt(parameter, value)` for each pair; False where the allocator is not glibc's or
  refused one."""
  if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
    return False
  libc = ctypes.CDLL('libc.so.6')
  return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)


def keep_step_memory_mapped() -> bool:
  """Applies both settings; returns False where the allocator is not glibc's (dispatch still set)."""
  import jax   # noqa: PLC0415 (importing JAX does not start its backend)
  jax.config.update('jax_cpu_enable_async_dispatch', False)
  return set_allocator(KEPT_MAPPED)
