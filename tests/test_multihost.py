"""Two processes on loopback, each with two CPU devices, train one model together (JAX's
distributed runtime, gloo collectives) and match one process with four devices; then resume."""

import os
import pathlib
import socket
import subprocess
import sys

import chex
import pytest

from gen_jax import train
from gen_jax.runtime import distributed
from tests.conftest import FAST_COMPILE_FLAG, restore_params

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _free_port() -> int:
  with socket.socket() as probe:
    probe.bind(('localhost', 0))
    return probe.getsockname()[1]


def _start_processes(workdir, classifier_dir, num_steps, count=2, timeout_s=60):
  port = _free_port()
  processes = []
  for index in range(count):
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(ROOT),
               XLA_FLAGS=f'--xla_force_host_platform_device_count=2 {FAST_COMPILE_FLAG}',
               **{distributed.COORDINATOR_ENV: f'localhost:{port}',
                  distributed.NUM_PROCESSES_ENV: '2', distributed.PROCESS_ID_ENV: str(index),
                  distributed.TIMEOUT_ENV: str(timeout_s)})
    processes.append(subprocess.Popen(
        [sys.executable, '-m', 'gen_jax.main', '--config=configs/vae.py:smoke',
         f'--workdir={workdir}', f'--config.train.num_steps={num_steps}',
         f'--config.eval.classifier_dir={classifier_dir}'],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
  return processes


def _finish(processes, timeout_s=600):
  outputs = [process.communicate(timeout=timeout_s)[0] for process in processes]
  for process, output in zip(processes, outputs):
    assert process.returncode == 0, output[-3000:]
  return outputs


@pytest.mark.slow
def test_two_processes_match_one_with_four_devices_and_resume(vae_smoke_run, tmp_path):
  config, one, _ = vae_smoke_run     # one process, four devices: checkpoints midway and at the end
  midway, end = config.train.checkpoint_every, config.train.num_steps
  classifier_dir = train.digit_classifier(config).directory   # the one the shared run trained
  _finish(_start_processes(tmp_path / 'two', classifier_dir, midway))
  chex.assert_trees_all_close(restore_params(config, tmp_path / 'two'),
                              restore_params(config, one, midway), atol=1e-5, rtol=1e-5)
  # The writer alone wrote the evaluation: one folder, no second copy beside it.
  assert [p.name for p in (tmp_path / 'two' / 'eval').iterdir()] == [f'step_{midway}']

  # Resumed together from the checkpoint they wrote.
  output = _finish(_start_processes(tmp_path / 'two', classifier_dir, end))[0]
  assert f'step {end}' in output
  chex.assert_trees_all_close(restore_params(config, tmp_path / 'two'), restore_params(config, one),
                              atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_a_process_that_never_joins_makes_the_other_fail_with_a_clear_message(tmp_path):
  processes = _start_processes(tmp_path / 'run', tmp_path / 'classifier', 6, count=1,
                               timeout_s=5)
  output = processes[0].communicate(timeout=120)[0]
  assert processes[0].returncode != 0
  assert 'DEADLINE_EXCEEDED' in output or 'timed out' in output.lower(), output[-2000:]
