"""Test set-up: four host CPU devices, so every data-parallel path runs on a real mesh."""

import functools
import importlib
import json
import os
import pathlib

# Must precede the first `import jax` anywhere in the test session (and reach the processes tests
# start). The tests' programs are small and run a few steps, so compiling them dominates: without
# LLVM's optimisation passes XLA compiles them several times faster (PERFORMANCE.md, "The test
# suite"); what the programs compute does not change.
FAST_COMPILE_FLAG = '--xla_backend_optimization_level=0'
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           f' --xla_force_host_platform_device_count=4 {FAST_COMPILE_FLAG}').strip()

import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# Many tests compile the same smoke-sized programs: one compilation cache for the whole session,
# every program in it however quickly compiled, shared by pytest-xdist's workers (they inherit the
# folder from the process that starts them, which removes it at the end), compiles each once.
# The processes tests start inherit both settings too (JAX reads them from the environment), and
# `python -m gen_jax.main` then uses that cache instead of its own beside the workdir.
_CACHE_ENV = 'GEN_JAX_TEST_COMPILATION_CACHE'
if _CACHE_ENV not in os.environ:
  os.environ[_CACHE_ENV] = tempfile.mkdtemp(prefix='gen_jax_test_xla_cache_')
  atexit.register(shutil.rmtree, os.environ[_CACHE_ENV], ignore_errors=True)
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.environ[_CACHE_ENV]
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
jax.config.update('jax_compilation_cache_dir', os.environ[_CACHE_ENV])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)


def load_config(name: str, argument: str | None = 'smoke'):
  """configs/<name>.py's config; smoke-sized unless argument is None."""
  return importlib.import_module(f'configs.{name}').get_config(argument)


def session_folder(tmp_path_factory, worker_id, name) -> pathlib.Path:
  """A folder of the test session that every pytest-xdist worker sees under the same path."""
  root = tmp_path_factory.getbasetemp()
  return (root if worker_id == 'master' else root.parent) / name


def trained_once(tmp_path_factory, worker_id, name, config):
  """A training of `config` run once for the whole session, however many pytest-xdist workers
  need it: the first trains it into a folder they share, the others wait and read it.
  Returns (workdir, its final evaluation report)."""
  from gen_jax import train
  from gen_jax.runtime import workdir_guard
  workdir = session_folder(tmp_path_factory, worker_id, name)
  with workdir_guard.exclusive(workdir):
    if not (workdir / train.EVAL_JSON).exists():
      train.train_and_evaluate(config, workdir)
  return workdir, json.loads((workdir / train.EVAL_JSON).read_text())


def run_steps(family, state, batches, mesh, steps):
  """`steps` compiled train steps of `family` over `mesh`, from a copy of `state`."""
  from gen_jax.runtime import parallel
  step_fn = parallel.compile_train_step(family.train_step, mesh)
  state = parallel.replicate(jax.tree.map(jax.numpy.copy, state), mesh)
  for step in range(steps):
    state, metrics = step_fn(state, parallel.shard_batch(batches(step), mesh))
  return jax.device_get(state), jax.device_get(metrics)


def restore_params(config, workdir, step=None):
  """The parameters of the workdir's checkpoint of `step` (the latest when None), on the host."""
  from gen_jax import train
  run = train.Run(config, workdir, training=False)
  try:
    return jax.device_get(run.checkpoints.restore(run.state, step).params)
  finally:
    run.close()


def pmap_train_step(family):
  """`family.train_step` under `jax.pmap` over the local devices, with its axis name."""
  return jax.pmap(functools.partial(family.train_step, axis_name='batch'), axis_name='batch')


def stack_replicas(tree):
  """One copy of `tree` per local device, stacked on a leading axis (pmap's replicated state)."""
  count = jax.local_device_count()
  return jax.tree.map(lambda x: jax.numpy.stack([x] * count), tree)


def split_across_devices(batch):
  """A global batch reshaped to (devices, per-device batch, ...) for pmap."""
  count = jax.local_device_count()
  return jax.tree.map(lambda x: x.reshape((count, -1) + x.shape[1:]), batch)


@pytest.fixture
def smoke_config():
  return load_config


@pytest.fixture(scope='session', autouse=True)
def isolated_classifier_root(tmp_path_factory, worker_id):
  """Digit classifiers trained by tests go to a temporary folder, not the checkout's runs/; one
  folder for every worker, so each classifier is trained once (train.digit_classifier locks it)."""
  from gen_jax.families import classifier
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(classifier, 'DEFAULT_ROOT', session_folder(tmp_path_factory, worker_id, 'classifiers'))
    yield


@pytest.fixture(scope='session')
def vae_smoke_run(tmp_path_factory, worker_id):
  """The smoke-sized VAE, trained once a session (12 steps on four devices, checkpoints at 6 and
  12) and evaluated at both checkpoints: (config, workdir, final report). The training loop's,
  the best checkpoint's and the multi-host tests read it; a test that writes copies it first."""
  config = load_config('vae')
  config.train.eval_every = config.train.checkpoint_every
  return (config, *trained_once(tmp_path_factory, worker_id, 'vae_smoke', config))


def pytest_report_header(config):
  return f'jax {jax.__version__}, devices: {jax.devices()}'
