"""retain_freed_memory keeps freed large blocks in the process's heap instead of unmapping them."""

import platform
import subprocess
import sys
import textwrap

import pytest

# A fresh interpreter (the settings apply to what is allocated after them) frees a 64 MiB block,
# above glibc's largest mmap threshold, and prints how much of the heap is still mapped.
_SCRIPT = textwrap.dedent('''
    import ctypes, sys
    from gen_jax.cpu_speed import host_memory
    if sys.argv[1] == 'retain':
      assert host_memory.retain_freed_memory()

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


def _heap_bytes_after_free(mode: str) -> int:
  result = subprocess.run([sys.executable, '-c', _SCRIPT, mode], capture_output=True, text=True,
                          check=True, env={'PYTHONPATH': ':'.join(sys.path)})
  return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason="the settings are glibc's")
def test_freed_large_block_stays_mapped_for_the_next_step():
  block = 64 << 20
  assert _heap_bytes_after_free('default') < block   # its own mapping, unmapped when freed
  assert _heap_bytes_after_free('retain') >= block   # served from the heap, kept there
