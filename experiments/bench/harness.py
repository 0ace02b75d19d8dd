"""The benchmark's machinery: each side in a process of its own, the turns they take, memory.

Per family, one process runs gen_jax's side and one PyTorch's (spawned, so neither inherits the
other's threads or allocator); the parent sends them the family's cases one after another and
lets the two train in turns of `slice_s` seconds until each has trained `budget_s`, so that load
from other jobs falls on both alike. Only one side computes at a time; the other waits on its
pipe. Each process uses every core (XLA's default; torch.set_num_threads), or the first --cores
of them (its CPU affinity, which XLA's thread pool and gen_jax's compiler options follow), and, as
the training loop does, gen_jax.cpu_speed.host_memory's allocator and dispatch settings.

Memory, per case: on a GPU, PyTorch's `torch.cuda.max_memory_allocated` (its peak reset before the
case is built) and JAX's `memory_stats()['peak_bytes_in_use']`, which JAX cannot reset: it is the
process's peak so far, so a family's cases run from the smallest (batch × pixels) up and a
reading that did not rise above the previous case's is marked as an upper bound (≤). On the CPU:
the bytes the side's process holds from malloc (glibc's mallinfo2, in use plus mmapped; both XLA's
CPU buffers and PyTorch's come from malloc), its peak sampled every 20 ms while the side trains
alone for one more slice after the timed turns, minus the same before the case was built: the
parameters, optimiser state, the prepared batches, the compiled step and its activations at
steady state, without the compiler's transient memory (the resident set size's growth is in the
JSON too, but the allocator keeps what earlier cases freed, so it undercounts later cases). The
sampling stays out of the timed turns: reading malloc's totals locks its heap while it walks it,
which slowed the steps it overlapped (PERFORMANCE.md). Each process starts its runtime and
compiler on a tiny convolution before its first case, but that case may still carry some of what
a runtime allocates once (caches, compiler state): its host figure is marked †.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import platform
import statistics
import traceback
from typing import Any

from experiments.bench import memory


def serve(side: str, family_name: str, settings: dict, connection) -> None:
  """A worker process: builds the cases the parent names and runs its commands."""
  if settings.get('cores'):   # before either runtime sizes its thread pools
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:settings['cores']])
  if settings.get('keep_step_memory_mapped', True):   # off where the caller set the allocator
    from gen_jax.cpu_speed import host_memory   # noqa: PLC0415
    host_memory.keep_step_memory_mapped()   # both sides alike, before either allocates
  import jax   # noqa: PLC0415
  from experiments.bench import families   # noqa: PLC0415
  if side == 'torch':   # its JAX (style transfer's pictures and filters) stays off the accelerator
    jax.config.update('jax_platforms', 'cpu')
  elif settings.get('compilation_cache_dir') and families.FAMILIES[family_name].kind != 'style':
    # (style transfer's programs hold VGG's weights: gen_jax.main keeps none of them either)
    jax.config.update('jax_compilation_cache_dir', settings['compilation_cache_dir'])
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  if side == 'torch':   # each process imports its own side only
    from experiments.bench import torch_side as side_module   # noqa: PLC0415
  else:
    from experiments.bench import jax_side as side_module   # noqa: PLC0415
  precision = settings.get('matmul_precision', 'default')
  if side == 'jax' and precision != 'default':
    jax.config.update('jax_default_matmul_precision',
                      'tensorfloat32' if precision == 'tf32' else 'highest')
  if side == 'torch':
    import torch   # noqa: PLC0415
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    if precision != 'default':
      torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = precision == 'tf32'
    info = side_module.describe(side_module.pick_device(settings['torch_device']))
    _prime_torch(torch, side_module.pick_device(settings['torch_device']))
  else:
    device = jax.devices()[0]
    info = {'version': jax.__version__, 'backend': jax.default_backend(),
            'device': getattr(device, 'device_kind', device.platform),
            'device_count': jax.device_count(),
            'default_matmul_precision': str(jax.config.jax_default_matmul_precision)}
    _prime_jax(jax)
  family = families.FAMILIES[family_name]
  maker = side_module.make
  heap = memory.heap_bytes() is not None
  readers = {'rss': memory.rss_bytes, **({'heap': memory.heap_bytes} if heap else {})}
  worker, before, cases = None, {}, 0

  def build(batch_size, image_size, batches=None):
    nonlocal worker, before, cases
    worker, cases = None, cases + 1
    gc.collect()
    before = {name: read() for name, read in readers.items()}
    worker = maker(family, batch_size, image_size, settings, batches)
    return worker.info

  def finish():
    # The memory pass: the steady state, after the compiler's transient memory, out of the turns.
    samplers = {name: memory.PeakSampler(read) for name, read in readers.items()}
    worker.train(settings['slice_s'])
    peaks = {name: sampler.stop() - before[name] for name, sampler in samplers.items()}
    result = {'losses': worker.losses(), **worker.memory(), 'info': worker.info,
              'evaluations_per_step': worker.evaluations_per_step()}
    result['host_rss_growth_bytes'] = peaks['rss']
    result['host_peak_growth_bytes'] = peaks.get('heap', peaks['rss'])
    result['host_measure'] = 'malloc in use' if 'heap' in peaks else 'RSS'
    result['host_first_case'] = cases == 1
    return result

  commands = {'build': build, 'warm_up': lambda: worker.warm_up(),
              'train': lambda seconds: worker.train(seconds), 'finish': finish,
              'flops': lambda: worker.flops_per_step(),
              'translate': lambda inputs: worker.translate(inputs)}
  connection.send(('ok', info))
  while (message := connection.recv())[0] != 'stop':
    command, arguments = message
    try:
      connection.send(('ok', commands[command](*arguments)))
    except Exception as error:  # noqa: BLE001 (reported to the parent, which goes on)
      traceback.print_exc()
      connection.send(('error', f'{type(error).__name__}: {error}'))


def _prime_jax(jax) -> None:
  """Starts the runtime and the compiler (a convolution's gradient) before any case is measured."""
  def loss(kernel, x):
    return jax.numpy.sum(jax.lax.conv(x, kernel, (1, 1), 'SAME') ** 2)
  x, kernel = jax.numpy.ones((2, 1, 8, 8)), jax.numpy.ones((4, 1, 3, 3))
  jax.block_until_ready(jax.jit(jax.grad(loss))(kernel, x))


def _prime_torch(torch, device) -> None:
  """Starts the runtime and its convolution kernels before any case is measured."""
  conv = torch.nn.Conv2d(1, 4, 3, padding=1).to(device)
  conv(torch.ones(2, 1, 8, 8, device=device)).square().sum().backward()
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


class CaseError(RuntimeError):
  pass


class Worker:
  """The parent's handle on one side's process."""

  def __init__(self, side: str, family_name: str, settings: dict, target=serve, label: str = ''):
    """`target` runs in the new process with (side, family_name, settings, connection): `serve`,
    or a picklable function that prepares the process and then calls it; `label` names the worker
    in errors (default: its side)."""
    context = multiprocessing.get_context('spawn')
    self.side = label or side
    self.connection, child = context.Pipe()
    self.process = context.Process(target=target, args=(side, family_name, settings, child),
                                   daemon=True)
    self.process.start()
    self.info = self._reply()

  def _reply(self):
    if not self.connection.poll(3600):
      raise CaseError(f'{self.side}: no answer in an hour')
    try:
      status, result = self.connection.recv()
    except EOFError as error:
      raise CaseError(f'{self.side}: the process ended (exit code {self.process.exitcode})') from error
    if status != 'ok':
      raise CaseError(f'{self.side}: {result}')
    return result

  def ask(self, command: str, *arguments):
    if not self.process.is_alive():
      raise CaseError(f'{self.side}: the process ended (exit code {self.process.exitcode})')
    self.connection.send((command, arguments))
    return self._reply()

  def close(self) -> None:
    if self.process.is_alive():
      try:
        self.connection.send(('stop', ()))
      except (BrokenPipeError, OSError):
        pass
    self.process.join(timeout=30)
    if self.process.is_alive():
      self.process.terminate()


def take_turns(workers: dict[str, Worker], budget_s: float, slice_s: float) -> dict[str, list]:
  """Slices of (steps, seconds) of each side, trained in turns until each has had `budget_s`."""
  slices: dict[str, list] = {name: [] for name in workers}
  trained = dict.fromkeys(workers, 0.0)
  while any(trained[name] < budget_s for name in workers):
    for name, worker in workers.items():
      remaining = budget_s - trained[name]
      if remaining > 0:
        steps, seconds = worker.ask('train', min(slice_s, remaining))
        slices[name].append((steps, seconds))
        trained[name] += seconds
  return slices


def rates(slices: list[tuple[int, float]]) -> dict[str, float]:
  per_slice = [steps / seconds for steps, seconds in slices]
  return {'median_steps_per_s': statistics.median(per_slice),
          'steps': sum(s for s, _ in slices), 'seconds': sum(t for _, t in slices),
          'slice_steps_per_s': per_slice}


def machine() -> dict[str, Any]:
  """The host, for the report (the sides add their devices and versions)."""
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as cpuinfo:
      model = next(line.split(':', 1)[1].strip() for line in cpuinfo if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  total = None
  try:
    with open('/proc/meminfo') as meminfo:
      total = int(next(line.split()[1] for line in meminfo if line.startswith('MemTotal'))) * 1024
  except (OSError, StopIteration):
    pass
  return {'cpu': model, 'cores': len(os.sched_getaffinity(0)), 'memory_bytes': total,
          'platform': platform.platform(), 'python': platform.python_version(),
          'xla_flags': os.environ.get('XLA_FLAGS', ''), 'rss_source': memory.rss_source()}
