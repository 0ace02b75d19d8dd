"""The process's memory, sampled: for the benchmark's CPU memory figure and for
experiments/memory_growth.py.

`rss_bytes`: the resident set size, from psutil when it is installed, else /proc/self/statm
(Linux), else the peak so far from `resource` (which then only grows). `heap_bytes`: the bytes the
process holds from malloc (glibc's mallinfo2: in use on the heap plus mmapped blocks), which,
unlike the RSS, falls again when memory is freed but kept by the allocator
(gen_jax.cpu_speed.host_memory keeps it); None where glibc is older than 2.33 or absent.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import threading
from typing import Callable

try:
  import psutil
except ImportError:   # not a dependency
  psutil = None

_PAGE = os.sysconf('SC_PAGE_SIZE') if hasattr(os, 'sysconf') else 4096


def rss_source() -> str:
  if psutil is not None:
    return 'psutil'
  return '/proc/self/statm' if os.path.exists('/proc/self/statm') else 'ru_maxrss'


def rss_bytes() -> int:
  """The process's resident set size now."""
  if psutil is not None:
    return psutil.Process().memory_info().rss
  try:
    with open('/proc/self/statm') as statm:
      return int(statm.read().split()[1]) * _PAGE
  except OSError:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _MallInfo2(ctypes.Structure):
  _fields_ = [(name, ctypes.c_size_t) for name in (
      'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
      'fordblks', 'keepcost')]


def _mallinfo2():
  if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
    return None
  try:
    function = ctypes.CDLL('libc.so.6').mallinfo2
  except (OSError, AttributeError):
    return None
  function.restype = _MallInfo2
  return function


_MALLINFO2 = _mallinfo2()


def heap_bytes() -> int | None:
  """Bytes held from malloc now (in use on the heap, plus mmapped blocks), or None."""
  if _MALLINFO2 is None:
    return None
  info = _MALLINFO2()
  return int(info.uordblks + info.hblkhd)


class PeakSampler:
  """The largest value of `read()` (default: the RSS), sampled every `interval_s` on a background
  thread while running; `reset()` starts a new peak."""

  def __init__(self, read: Callable[[], int] = rss_bytes, interval_s: float = 0.02):
    self.read, self.interval_s, self.peak = read, interval_s, read()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True, name='rss-sampler')
    self._thread.start()

  def _run(self) -> None:
    while not self._stop.wait(self.interval_s):
      self.peak = max(self.peak, self.read())

  def reset(self) -> None:
    self.peak = self.read()

  def stop(self) -> int:
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, self.read())
    return self.peak


def fit_slope(steps, values) -> float:
  """Least-squares slope of values against steps (units of values per step)."""
  n = len(steps)
  if n < 2:
    return float('nan')
  mean_s, mean_v = sum(steps) / n, sum(values) / n
  var = sum((s - mean_s) ** 2 for s in steps)
  return sum((s - mean_s) * (v - mean_v) for s, v in zip(steps, values)) / var if var else float('nan')

