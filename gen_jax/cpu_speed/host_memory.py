"""Keeps the host allocator from handing freed memory back to the operating system.

A jit-compiled step on the CPU allocates its temporaries afresh at every call. With glibc's
defaults, large blocks come from fresh `mmap`s (or are trimmed off the heap when freed), so every
step touches new pages and pays a page fault for each 4 KiB of them, a sizeable share of a small
model's step (PERFORMANCE.md).
Serving every block from one heap that is never trimmed makes the pages stay mapped from one step
to the next; the process keeps its peak footprint instead.

The settings take effect only for memory the runtime allocates after the call, so it must come
before the first computation (before JAX's backend starts).
"""

from __future__ import annotations

import ctypes
import platform

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def retain_freed_memory() -> bool:
  """Serves all allocations from one never-trimmed heap; returns False where not glibc."""
  if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
    return False
  libc = ctypes.CDLL('libc.so.6')
  settings = ((_M_ARENA_MAX, 1),                # one arena: other threads' arenas are mmap'd
              (_M_MMAP_MAX, 0),                 # no block of its own mapping, however large
              (_M_TRIM_THRESHOLD, 2**31 - 1))   # never give the heap's top back
  return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
