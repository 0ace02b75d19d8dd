"""Checkpoints that were damaged on disk are found, set aside and never restored; a failed save
(a full disk) leaves nothing half-written and the earlier checkpoints as they were."""

import errno
import pathlib
import shutil

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from gen_jax import train
from gen_jax.runtime import checkpointing
from tests.conftest import load_config


@pytest.fixture(scope='module')
def finished_run(tmp_path_factory):
  """A smoke VAE run with checkpoints at steps 6 and 12."""
  workdir = tmp_path_factory.mktemp('intact')
  config = load_config('vae')
  train.train_and_evaluate(config, workdir)
  return config, workdir


def _params(config, workdir):
  run = train.Run(config, workdir, training=False)
  try:
    return run.restored_step, jax.device_get(run.state.params)
  finally:
    run.close()


def _largest_file(step_dir):
  return max((p for p in step_dir.rglob('*') if p.is_file() and p.name != checkpointing.INTEGRITY_FILE),
             key=lambda p: p.stat().st_size)


def _delete_chunk(step_dir):
  _largest_file(step_dir).unlink()


def _truncate_chunk(step_dir):
  path = _largest_file(step_dir)
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_bytes(step_dir):
  path = _largest_file(step_dir)
  data = bytearray(path.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
  path.write_bytes(bytes(data))


def _empty_manifest(step_dir):
  next(p for p in step_dir.rglob('manifest.ocdbt')).write_bytes(b'')


def _delete_metadata(step_dir):
  for path in step_dir.rglob('_METADATA'):
    path.unlink()


def _empty_folder(step_dir):
  for path in list(step_dir.iterdir()):
    shutil.rmtree(path) if path.is_dir() else path.unlink()


DAMAGES = [_delete_chunk, _truncate_chunk, _flip_bytes, _empty_manifest, _delete_metadata, _empty_folder]


@pytest.mark.parametrize('damage', DAMAGES, ids=[d.__name__.strip('_') for d in DAMAGES])
def test_every_kind_of_damage_is_found_and_the_older_checkpoint_used(finished_run, damage, tmp_path):
  config, intact = finished_run
  workdir = tmp_path / 'run'
  shutil.copytree(intact, workdir)
  damage(workdir / checkpointing.CHECKPOINT_DIR / '12')
  checkpoints = checkpointing.Checkpointer(workdir, keep=3)
  try:
    assert checkpoints.damage(12) is not None
    assert checkpoints.damage(6) is None
  finally:
    checkpoints.close()
  step, params = _params(config, workdir)      # a read-only mode skips it, moving nothing
  assert step == 6
  chex.assert_tree_all_finite(params)
  assert (workdir / checkpointing.CHECKPOINT_DIR / '12').exists()


def test_training_sets_the_damaged_checkpoint_aside_and_resumes_to_the_same_parameters(finished_run, tmp_path):
  config, intact = finished_run
  workdir = tmp_path / 'run'
  shutil.copytree(intact, workdir)
  _flip_bytes(workdir / checkpointing.CHECKPOINT_DIR / '12')
  train.train_and_evaluate(config, workdir)    # resumes from 6, trains to 12 again
  aside = list((workdir / checkpointing.DAMAGED_DIR).iterdir())
  assert len(aside) == 1 and aside[0].name.startswith('checkpoints_12_')   # kept, not deleted
  chex.assert_trees_all_close(_params(config, workdir)[1], _params(config, intact)[1], atol=1e-6)


def test_a_full_disk_fails_the_save_in_one_line_and_leaves_the_earlier_checkpoints(tmp_path, monkeypatch):
  original = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == 12:   # a save that dies half-way, as one does when the disk fills
      (pathlib.Path(str(self.directory)) / f'{step}.orbax-checkpoint-tmp-1').mkdir()
      raise OSError(errno.ENOSPC, 'No space left on device')
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  config = load_config('vae')
  with pytest.raises(checkpointing.CheckpointError,
                     match=r'could not save the checkpoint of step 12 .*\(the disk is full\); '
                           r'the newest intact one is step 6'):
    train.train_and_evaluate(config, tmp_path)
  directory = tmp_path / checkpointing.CHECKPOINT_DIR
  assert sorted(p.name for p in directory.iterdir()) == ['6']
  assert np.all(np.isfinite(jax.tree.leaves(_params(config, tmp_path)[1])[0]))
