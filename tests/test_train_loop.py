"""The shared training loop, end to end on smoke configs: resume, workdir guard, divergence, outputs."""

import json
import os
import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax import train
from gen_jax.runtime import config_checks, distributed, metric_writers, parallel, workdir_guard
from gen_jax.families import classifier as classifier_family
from gen_jax.families.vae import VAEFamily
from tests.conftest import load_config, restore_params


def _copy_of(run, tmp_path):
  """A copy of the shared run's workdir, for a test that writes into it."""
  _, workdir, _ = run
  shutil.copytree(workdir, tmp_path / 'run')
  return tmp_path / 'run'


def test_run_writes_metrics_checkpoints_and_pictures(vae_smoke_run):
  config, workdir, report = vae_smoke_run
  assert report['step'] == config.train.num_steps
  records = metric_writers.read_metrics(workdir, 'train')
  assert [r['step'] for r in records] == [4, 8, 12]
  assert records[-1]['loss'] < records[0]['loss']
  assert all(np.isfinite(r['loss']) for r in records)
  events = b''.join(path.read_bytes() for path in (workdir / 'tensorboard').iterdir())
  # The evaluation's pictures are in TensorBoard too, as PNG-encoded images.
  for tag in (b'eval/samples', b'eval/reconstructions', b'eval/manifold', b'train/loss'):
    assert tag in events, tag
  assert b'\x89PNG' in events
  assert sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()) == [6, 12]
  eval_dir = workdir / 'eval' / 'step_12'
  for name in ('eval.json', 'reconstructions.png', 'samples.png', 'latent_means.png',
               'latent_histograms.png', 'manifold.png'):
    assert (eval_dir / name).is_file(), name
  metrics = json.loads((workdir / 'eval.json').read_text())['metrics']
  assert metrics['iwae_nll'] <= metrics['neg_elbo'] + 1.0
  assert set(metrics) >= {'neg_elbo', 'reconstruction', 'kl', 'iwae_nll'}


def test_resumed_run_reaches_the_same_parameters(vae_smoke_run, tmp_path):
  config, workdir, _ = vae_smoke_run
  interrupted = config.copy_and_resolve_references()
  interrupted.train.num_steps = 6
  train.train_and_evaluate(interrupted, tmp_path)
  report = train.train_and_evaluate(config, tmp_path)   # resumes from step 6
  assert report['step'] == 12
  chex.assert_trees_all_close(restore_params(config, tmp_path),
                              restore_params(config, workdir), atol=1e-6, rtol=1e-6)
  assert [r['step'] for r in metric_writers.read_metrics(tmp_path, 'train')] == [4, 6, 8, 12]


def test_workdir_of_another_config_is_refused_and_left_untouched(vae_smoke_run, tmp_path):
  config, _, _ = vae_smoke_run
  workdir = _copy_of(vae_smoke_run, tmp_path)
  other = config.copy_and_resolve_references()
  other.model.latent_dim = 3
  saved_config = (workdir / 'config.json').read_text()
  with pytest.raises(workdir_guard.WorkdirMismatch, match=r"model.latent_dim: saved 2, now 3"):
    train.train_and_evaluate(other, workdir)
  assert (workdir / 'config.json').read_text() == saved_config
  assert sorted(int(p.name) for p in (workdir / 'checkpoints').iterdir()) == [6, 12]


def test_sample_mode_writes_npz_and_grid_and_never_overwrites(vae_smoke_run, tmp_path,
                                                               monkeypatch):
  config, _, _ = vae_smoke_run
  workdir = _copy_of(vae_smoke_run, tmp_path)
  path, grid = train.sample(config, workdir, 'samples_test.npz')
  assert grid == workdir / 'samples_test.png' and grid.is_file()
  samples = np.load(path)['samples']
  chex.assert_shape(samples, (config.sample.num_samples, 28, 28, 1))
  assert samples.dtype == np.float32 and samples.min() >= 0 and samples.max() <= 1
  before = path.read_bytes()
  with pytest.raises(FileExistsError, match='samples_test.npz'):
    train.sample(config, workdir, 'samples_test.npz')
  assert path.read_bytes() == before
  # A process of a multi-process run other than the writer draws the same samples, writes nothing.
  monkeypatch.setattr(distributed, 'is_writer', lambda: False)
  assert not any(output.exists() for output in train.sample(config, workdir, 'other.npz'))


@pytest.mark.parametrize('output,error,message', [
    ('mine.npz', FileExistsError, r'mine.png exists; refusing to overwrite it'),   # the user's picture
    ('eval/step_12/samples.npz', FileExistsError, r'samples.png exists'),          # the evaluation's
    ('grid.png', config_checks.ConfigError, r'--output=grid.png must name an .npz file'),
    ('no_such_folder/s.npz', FileNotFoundError, r'no_such_folder, does not exist'),
])
def test_sample_outputs_are_checked_before_any_compute(vae_smoke_run, output, error, message,
                                                       monkeypatch, tmp_path):
  config, _, _ = vae_smoke_run
  workdir = _copy_of(vae_smoke_run, tmp_path)
  (workdir / 'mine.png').write_bytes(b'a picture of the user')
  monkeypatch.setattr(train, 'Run', None)   # nothing may be built, let alone computed
  with pytest.raises(error, match=message):
    train.sample(config, workdir, output)
  assert (workdir / 'mine.png').read_bytes() == b'a picture of the user'
  assert not (workdir / 'grid.png.npz').exists()


def test_evaluate_mode_needs_a_checkpoint(tmp_path):
  with pytest.raises(FileNotFoundError, match='holds no run'):
    train.evaluate(load_config('vae'), tmp_path)
  assert not list(tmp_path.iterdir())   # evaluating never creates a run


@pytest.mark.parametrize('steps_per_dispatch,message', [(1, 'diverged at step 8:'),
                                                        (2, 'diverged at steps 8 to 9:')])
def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                             steps_per_dispatch, message):
  """The loss turns NaN at step 8, between the logs at 8 and 12: the metrics are fetched only
  there, yet the checkpoint of step 12 is never written and the one of step 6 is kept."""
  original = VAEFamily.train_step

  def poisoned(self, state, batch, axis_name=None):
    new_state, metrics = original(self, state, batch, axis_name)
    poison = jnp.where(state.step >= 8, jnp.nan, 0.0)
    return new_state, dict(metrics, loss=metrics['loss'] + poison)

  monkeypatch.setattr(VAEFamily, 'train_step', poisoned)
  config = load_config('vae')
  config.train.steps_per_dispatch = steps_per_dispatch
  with pytest.raises(train.TrainingDiverged, match=message):
    train.train_and_evaluate(config, tmp_path)
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [6]
  chex.assert_tree_all_finite(restore_params(config, tmp_path))


def test_non_finite_parameters_are_never_saved(tmp_path, monkeypatch):
  """Parameters turn NaN while every logged metric stays finite: the save path must refuse them."""
  original = VAEFamily.train_step

  def poisoned(self, state, batch, axis_name=None):
    new_state, metrics = original(self, state, batch, axis_name)
    # Only the update into step 12, a checkpoint step: its metrics (of the old parameters) are finite.
    poison = jnp.where(state.step == 11, jnp.nan, 0.0)
    return new_state.replace(params=jax.tree.map(lambda p: p + poison, new_state.params)), metrics

  monkeypatch.setattr(VAEFamily, 'train_step', poisoned)
  config = load_config('vae')   # checkpoints at steps 6 and 12
  with pytest.raises(train.TrainingDiverged, match='parameters became NaN or infinite by step 12; not saving'):
    train.train_and_evaluate(config, tmp_path)
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir()) == [6]
  chex.assert_tree_all_finite(restore_params(config, tmp_path))
  assert not bool(parallel.all_finite({'a': jnp.ones(3), 'b': jnp.array([1.0, jnp.inf])}))


def test_records_past_the_restored_step_are_dropped_on_resume(vae_smoke_run, tmp_path):
  """A run stopped after logging step 12 but with only checkpoint 6 intact logs steps 8 and 12
  again when it resumes: metrics.jsonl must hold each of them once."""
  config, _, _ = vae_smoke_run
  workdir = _copy_of(vae_smoke_run, tmp_path)
  shutil.rmtree(workdir / 'checkpoints' / '12')
  train.train_and_evaluate(config, workdir)
  records = [(r['step'], r['split']) for r in metric_writers.read_metrics(workdir)]
  assert len(records) == len(set(records)), records
  assert [s for s, split in records if split == 'train'] == [4, 8, 12]


def test_a_second_trainer_is_refused_naming_the_process(vae_smoke_run, tmp_path):
  config, _, _ = vae_smoke_run
  workdir = _copy_of(vae_smoke_run, tmp_path)
  lock = workdir / workdir_guard.TRAINER_LOCK
  files = lambda: {p: p.stat().st_mtime_ns for p in workdir.rglob('*') if p.is_file() and p != lock}
  before = files()
  holder = workdir_guard.TrainerLock(workdir)
  try:
    with pytest.raises(workdir_guard.WorkdirBusy, match=f'being trained by process {os.getpid()}'):
      train.train_and_evaluate(config, workdir)
  finally:
    holder.release()
  assert files() == before
  # A lock file left by a killed process holds no lock: the next trainer takes it.
  lock.write_text('99999999')
  assert train.train_and_evaluate(config, workdir)['step'] == 12


def test_read_only_modes_create_nothing(vae_smoke_run, tmp_path):
  config, _, _ = vae_smoke_run
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text(config.to_json(indent=2))
  for mode in (train.evaluate, lambda c, w: train.sample(c, w, 'samples.npz')):
    with pytest.raises(FileNotFoundError, match='no intact checkpoint'):
      mode(config, workdir)
  assert sorted(p.name for p in workdir.iterdir()) == ['config.json']


def test_every_resumable_change_leaves_the_result_within_float_rounding(vae_smoke_run, tmp_path):
  """A run resumed with every field of RESUMABLE_CHANGES changed at once (half the devices too)
  ends where the uninterrupted run ended: those fields set length and reporting, not the result;
  the device count changes only the order of the reductions."""
  config, intact, _ = vae_smoke_run
  first = config.copy_and_resolve_references()
  first.train.num_steps = 6
  train.train_and_evaluate(first, tmp_path)
  resumed = config.copy_and_resolve_references()
  changes = {'train.log_every': 3, 'train.checkpoint_every': 4, 'train.keep_checkpoints': 1,
             'train.eval_every': 10, 'train.num_devices': 2, 'eval.batch_size': 32,
             # Several steps per call (cut short before each boundary), looped by lax.scan.
             'train.steps_per_dispatch': 3, 'train.dispatch_form': 'scan',
             'eval.max_examples': 64, 'sample.num_samples': 8,
             # The same classifier, named by its absolute path.
             'eval.classifier_dir': str(classifier_family.workdir(config).absolute())}
  # Every resumable field but the length itself and those of GANs, Pix2Pix and CycleGAN.
  others = {'train.num_steps', 'sample.label', 'sample.dropout', 'sample.input_dir',
            'sample.direction'}
  assert set(changes) | others == set(workdir_guard.RESUMABLE_CHANGES)
  for field, value in changes.items():
    section, name = field.split('.')
    resumed[section][name] = value
  train.train_and_evaluate(resumed, tmp_path)
  chex.assert_trees_all_close(restore_params(resumed, tmp_path), restore_params(config, intact),
                              atol=1e-5, rtol=1e-5)
