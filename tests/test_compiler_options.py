"""Compiler options: multi-threaded convolutions on multi-core CPUs, XLA's defaults elsewhere."""

import dataclasses
import re

import chex
import jax
import jax.numpy as jnp
import pytest
from jax import lax

from gen_jax.cpu_speed import compiler_options
from gen_jax.runtime import parallel


@dataclasses.dataclass
class _Device:
  platform: str


def _convolution_step(x, kernel):
  """A convolution's forward and both gradients, as in a train step."""
  def loss(x, kernel):
    y = lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.sum(jnp.tanh(y))
  return jax.grad(loss, argnums=(0, 1))(x, kernel)


def _ynn_convolutions(compiled_text: str) -> int:
  """Convolutions inside the YNNPACK fusions of an optimised module."""
  bodies = re.findall(r'(%fused_computation[\w.]* .*?\n}\n)', compiled_text, re.S)
  called = set(re.findall(r'calls=(%[\w.]+).*"__ynn_fusion"', compiled_text))
  return sum(body.count('convolution(') for body in bodies if body.split(' ')[0] in called)


def test_multi_core_cpu_gets_multithreaded_convolutions(monkeypatch):
  monkeypatch.setattr(compiler_options, 'host_cores', lambda: 2)
  options = compiler_options.for_devices(jax.local_devices())
  assert options == {compiler_options.YNN_FUSION_TYPES: compiler_options.YNN_WITHOUT_CONVOLUTIONS}


@pytest.mark.parametrize('platform,cores', [('gpu', 2), ('tpu', 8), ('cpu', 1)])
def test_other_devices_and_one_core_keep_xla_defaults(monkeypatch, platform, cores):
  monkeypatch.setattr(compiler_options, 'host_cores', lambda: cores)
  assert compiler_options.for_devices([_Device(platform)]) is None


def test_the_options_move_convolutions_out_of_ynnpack_and_keep_the_results(monkeypatch):
  monkeypatch.setattr(compiler_options, 'host_cores', lambda: 2)
  # Large enough for XLA's cost model to hand it to YNNPACK by default.
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 28, 28, 32))
  kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 32, 32)) * 0.1
  default = jax.jit(_convolution_step).lower(x, kernel).compile()
  tuned = jax.jit(_convolution_step,
                  compiler_options=compiler_options.for_devices(jax.local_devices())
                  ).lower(x, kernel).compile()
  assert _ynn_convolutions(default.as_text()) > 0   # XLA's default: YNNPACK convolutions
  assert _ynn_convolutions(tuned.as_text()) == 0
  chex.assert_trees_all_close(tuned(x, kernel), default(x, kernel), atol=1e-3, rtol=1e-4)


def test_train_steps_are_compiled_with_the_options(monkeypatch):
  monkeypatch.setattr(compiler_options, 'host_cores', lambda: 2)
  mesh = parallel.make_mesh(1)
  step = lambda state, batch: (state, _convolution_step(batch, state))
  args = (jnp.ones((3, 3, 32, 32)), jnp.ones((16, 28, 28, 32)))
  default = jax.jit(step).lower(*args).compile()
  compiled = parallel.compile_train_step(step, mesh).lower(*args).compile()
  assert _ynn_convolutions(default.as_text()) > 0
  assert _ynn_convolutions(compiled.as_text()) == 0


def test_an_option_this_jaxlib_lacks_falls_back_to_the_defaults(monkeypatch):
  monkeypatch.setattr(compiler_options, 'host_cores', lambda: 2)
  monkeypatch.setattr(compiler_options, 'YNN_WITHOUT_CONVOLUTIONS', 'LIBRARY_FUSION_TYPE_NO_SUCH')
  compiler_options._multithreaded_cpu_convolutions.cache_clear()
  try:
    assert compiler_options.for_devices(jax.local_devices()) is None
  finally:
    compiler_options._multithreaded_cpu_convolutions.cache_clear()


def test_single_threaded_eigen_counts_as_one_core(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=4 '
                                  '--xla_cpu_multi_thread_eigen=false')
  assert compiler_options.host_cores() == 1
  assert compiler_options.for_devices(jax.local_devices()) is None
