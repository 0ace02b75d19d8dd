"""keep_step_memory_mapped: a compiled step's large buffers stay mapped from one call to the next."""

import json
import platform
import subprocess
import sys
import textwrap

import pytest

# Each case runs in a fresh interpreter: the allocator's settings apply to what is allocated after
# them, and JAX's dispatch mode must be chosen before its backend starts.
_FREED_BLOCK = textwrap.dedent('''
    # Frees a 64 MiB block, above glibc's largest mmap threshold; prints how much heap stays mapped.
    import ctypes, sys
    from gen_jax.cpu_speed import host_memory
    if sys.argv[1] == 'keep':
      assert host_memory.keep_step_memory_mapped()

    class MallocInfo(ctypes.Structure):
      _fields_ = [(name, ctypes.c_size_t) for name in (
          'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
          'fordblks', 'keepcost')]

    libc = ctypes.CDLL('libc.so.6')
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    libc.mallinfo2.restype = MallocInfo
    block = libc.malloc(64 << 20)
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
    print(libc.mallinfo2().arena)
''')

_STEP_PAGES = (96 << 20) // 4096
_STEP_FAULTS = textwrap.dedent('''
    # A compiled step whose 96 MiB output is allocated at every call (and freed before the next);
    # prints the median of the page faults a call costs. The median, because the heap still grows
    # now and then (when a freed output is released after the next call has allocated its own).
    import resource, statistics, sys
    from gen_jax.cpu_speed import host_memory
    if sys.argv[1] == 'keep':
      assert host_memory.keep_step_memory_mapped()
    import jax, jax.numpy as jnp

    step = jax.jit(lambda x: jnp.sin(x) + 1.0)
    x = jnp.ones((24 << 20,), jnp.float32)
    for _ in range(2):
      jax.block_until_ready(step(x))
    faults = []
    for _ in range(7):
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      jax.block_until_ready(step(x))
      faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(statistics.median(faults))
''')


def _last_number(script: str, mode: str) -> float:
  result = subprocess.run([sys.executable, '-c', script, mode], capture_output=True, text=True,
                          check=True, env={'PYTHONPATH': ':'.join(sys.path),
                                           'JAX_PLATFORMS': 'cpu'})
  return float(result.stdout.strip().splitlines()[-1])


_glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason="the settings are glibc's")


@_glibc_only
def test_freed_large_block_stays_mapped_for_the_next_step():
  block = 64 << 20
  assert _last_number(_FREED_BLOCK, 'default') < block   # its own mapping, unmapped when freed
  assert _last_number(_FREED_BLOCK, 'keep') >= block     # served from the heap, kept there


@_glibc_only
def test_compiled_step_does_not_fault_its_buffers_in_at_every_call():
  # By default the output gets a fresh mapping every call, a fault for each of its pages; kept,
  # the call reuses pages already mapped.
  assert _last_number(_STEP_FAULTS, 'default') > 0.5 * _STEP_PAGES
  assert _last_number(_STEP_FAULTS, 'keep') < 0.05 * _STEP_PAGES


@_glibc_only
def test_settings_experiment_reports_every_setting_it_timed(tmp_path):
  from experiments import host_memory_settings   # noqa: PLC0415 (sys.path: the repository root)
  out = tmp_path / 'report'
  settings = ['one arena', 'arena per thread + synchronous (gen_jax)']
  subprocess.run([sys.executable, host_memory_settings.__file__, '--families=ae_linear',
                  f'--settings={",".join(settings)}', '--budget_s=0.3', '--slice_s=0.1',
                  f'--output_dir={out}'], check=True, capture_output=True, text=True, timeout=300)
  rows = json.loads((out / 'report.json').read_text())['rows']
  assert [row['setting'] for row in rows] == settings
  assert all(row['ms_per_step'] > 0 and row['minor_faults_per_step'] >= 0 for row in rows)
  assert all(name in (out / 'report.md').read_text() for name in settings)
