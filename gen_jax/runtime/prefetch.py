"""Batches prepared ahead on a background thread and put on the devices while the previous call
runs, so that the host's work (gathering, stacking, copying) overlaps the device's."""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable, Iterator

_DONE = object()


class Prefetcher:
  """Iterates `(first step, number of steps, device batches)` over the planned `calls`, with up to
  `depth` of them prepared ahead by `prepare(first step, number of steps)`.

  An error in `prepare` is raised in the consumer, at the call it was preparing. `close()` stops
  the thread (the loop calls it when it ends early, on divergence or Ctrl-C).
  """

  def __init__(self, prepare: Callable[[int, int], Any], calls: Iterable[tuple[int, int]],
               depth: int = 2):
    if depth < 1:
      raise ValueError(f'depth must be at least 1, got {depth}')
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._fill, args=(prepare, calls), daemon=True,
                                    name='gen_jax-prefetch')
    self._thread.start()

  def _put(self, item: Any) -> bool:
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _fill(self, prepare: Callable[[int, int], Any], calls: Iterable[tuple[int, int]]) -> None:
    try:
      for first, count in calls:
        if not self._put((first, count, prepare(first, count))):
          return
    except BaseException as error:  # handed to the consumer, which re-raises it
      self._put(error)
      return
    self._put(_DONE)

  def __iter__(self) -> Iterator[tuple[int, int, Any]]:
    while True:
      item = self._queue.get()
      if item is _DONE:
        return
      if isinstance(item, BaseException):
        raise item
      yield item

  def close(self) -> None:
    self._stop.set()
    self._thread.join()
