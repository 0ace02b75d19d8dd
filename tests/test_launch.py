"""launch.sh's sweeps (experiments/sweep.py): expansion and naming, one run a GPU, the SLURM array
job, a real sweep that skips its finished runs and resumes the others, and its option errors."""

import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from experiments import sweep
from gen_jax import train
from tests.conftest import FAST_COMPILE_FLAG, load_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_repository(monkeypatch):
  monkeypatch.chdir(ROOT)     # config paths and the commands are relative to the repository


def _options(*argv):
  return sweep.parse(['configs/beta_vae.py:smoke', *argv])


def test_the_grid_is_the_full_product_each_run_with_every_seed_in_a_safe_workdir():
  runs = sweep.expand(_options('--grid', 'model.beta=1,4', '--grid', 'data.name=idx,my data/x',
                               '--seeds', '0,1', '--root', 'out', '--', '--config.train.num_steps=5'))
  assert [r.workdir for r in runs] == [
      f'out/model.beta-{b}_data.name-{d}_seed{s}'
      for b in (1, 4) for d in ('idx', 'my-data-x') for s in (0, 1)]
  assert runs[3].command == (
      'python', '-m', 'gen_jax.main', '--config=configs/beta_vae.py:smoke',
      '--workdir=out/model.beta-1_data.name-my-data-x_seed1', '--mode=train', '--config.seed=1',
      '--config.model.beta=1', '--config.data.name=my data/x', '--config.train.num_steps=5')
  assert [r.workdir for r in sweep.expand(_options())] == ['runs/beta_vae/seed0']


def test_the_steps_a_run_trains_to_come_from_its_config_and_overrides():
  assert sweep.steps_to_train('configs/vae.py:smoke', []) == 12
  assert sweep.steps_to_train('configs/vae.py', ['--config.seed=3', '--config.train.num_steps=7']) == 7


@pytest.mark.parametrize('argv, message', [
    (['--jobs', '0'], "--jobs must be a positive integer, got '0'"),
    (['--seeds', '0,x'], "--seeds takes comma-separated integers, got '0,x'"),
    (['--grid', 'model.beta'], "--grid takes FIELD=V1,V2,..., got 'model.beta'"),
    (['--mode', 'fit'], "--mode must be one of train, evaluate, sample, got 'fit'"),
    (['--backend', 'k8s'], "--backend must be one of local, slurm, got 'k8s'"),
    (['--partition', 'gpu'], '--partition applies to --backend slurm only'),
    (['--backend', 'slurm', '--time', '2h'], "--time must be a SLURM time limit (MINUTES, HH:MM:SS or D-HH:MM:SS), got '2h'"),
    (['--backend', 'slurm', '--gpus', '0'], '--gpus applies to --backend local'),
    (['--gpus', '0,1', '--jobs', '2'], '--jobs does not apply with --gpus'),
    (['--nodes'], '--nodes needs a value'),
    (['--job', '2'], "unknown option '--job'"),
])
def test_a_bad_option_is_named_with_its_value_and_what_is_allowed(argv, message):
  with pytest.raises(sweep.UsageError) as error:
    _options(*argv)
  assert message in str(error.value)


def test_launch_sh_reports_a_bad_option_in_one_line_and_exits_2():
  result = subprocess.run(['bash', 'launch.sh', 'configs/vae.py', '--backend', 'pbs'],
                          capture_output=True, text=True)
  assert result.returncode == 2 and result.stdout == ''
  assert result.stderr == "error: --backend must be one of local, slurm, got 'pbs'\n"


def test_one_run_a_gpu_at_a_time_a_gpu_listed_twice_shares_its_memory(tmp_path, monkeypatch):
  seen = tmp_path / 'seen'
  record = ('import os, sys; open(sys.argv[1], "a").write(os.environ["CUDA_VISIBLE_DEVICES"] + " "'
            ' + os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", "-") + "\\n")')
  runs = [sweep.Run(f'w{i}', (), (sys.executable, '-c', record, str(seen))) for i in range(5)]
  assert sweep.run_local(runs, _options('--gpus', '3,5,5')) == []
  lines = seen.read_text().split('\n')[:-1]
  assert len(lines) == 5 and set(lines) <= {'3 -', '5 0.38'}
  assert sweep.slots_of(_options('--jobs', '2')) == [{}, {}]    # without --gpus: every GPU each
  monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '2,7')
  assert [s['CUDA_VISIBLE_DEVICES'] for s in sweep.slots_of(_options('--gpus', 'all'))] == ['2', '7']


EXPECTED_SBATCH = """\
#!/bin/bash
#SBATCH --job-name=gen_jax-beta_vae
#SBATCH --array=0-1%1
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --gpus-per-node=4
#SBATCH --partition=gpu
#SBATCH --time=1:30:00
#SBATCH --chdir={cwd}
#SBATCH --output={root}/slurm/sweep-1/%A_%a.out
#SBATCH --account=proj
#SBATCH --mem=0
# Written by launch.sh: one array task a run. The tasks run in the environment sbatch was
# called from (activate the virtualenv first); the workdirs must be on a shared file system.
set -euo pipefail
command=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {root}/slurm/sweep-1/commands.txt)
echo "task $SLURM_ARRAY_TASK_ID on $(hostname): $command"
srun --kill-on-bad-exit=1 bash -c "$command"
"""


def _slurm_sweep(root, *more):
  return ['configs/beta_vae.py:smoke', '--grid', 'model.beta=1,4', '--backend', 'slurm',
          '--partition', 'gpu', '--time', '1:30:00', '--nodes', '2', '--gpus-per-node', '4',
          '--sbatch=--account=proj', '--sbatch', '--mem=0', '--jobs', '1', '--root', str(root),
          *more, '--', '--config.train.num_steps=5']


def test_the_slurm_array_job_is_written_under_the_root_and_printed_on_a_dry_run(tmp_path, capsys):
  root = tmp_path / 'sweep'
  assert sweep.main(_slurm_sweep(root, '--dry-run')) == 0
  folder = root / 'slurm' / 'sweep-1'
  expected = EXPECTED_SBATCH.format(cwd=ROOT, root=root)
  assert (folder / 'sweep.sbatch').read_text() == expected
  assert expected in capsys.readouterr().out
  assert (folder / 'commands.txt').read_text().splitlines() == [
      f'python -m gen_jax.main --config=configs/beta_vae.py:smoke --workdir={root}/model.beta-{b}_seed0 '
      f'--mode=train --config.seed=0 --config.model.beta={b} --config.train.num_steps=5 --multihost'
      for b in (1, 4)]
  assert not (folder / 'job_id').exists()
  # One node: one process drives the node's GPUs, no distributed runtime.
  assert sweep.main(['configs/vae.py', '--backend', 'slurm', '--gpus-per-node', '2', '--root',
                     str(tmp_path / 'one'), '--dry-run']) == 0
  script = (tmp_path / 'one' / 'slurm' / 'sweep-1' / 'sweep.sbatch').read_text()
  assert '--ntasks-per-node=1\n#SBATCH --gpus-per-node=2\n' in script
  assert '--multihost' not in (tmp_path / 'one' / 'slurm' / 'sweep-1' / 'commands.txt').read_text()


def _fake_slurm(bin_dir, queue_listing):
  bin_dir.mkdir()
  for name, body in (('sbatch', 'echo "$@" > "$(dirname "$0")/sbatch_args"; echo 4242'),
                     ('squeue', f'echo "{queue_listing}"')):
    path = bin_dir / name
    path.write_text(f'#!/bin/sh\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_the_array_job_is_submitted_once_and_not_again_while_it_is_queued(tmp_path, monkeypatch, capsys):
  root = tmp_path / 'sweep'
  _fake_slurm(tmp_path / 'bin', queue_listing='4242')
  monkeypatch.setenv('PATH', f'{tmp_path / "bin"}:{os.environ["PATH"]}')
  assert sweep.main(_slurm_sweep(root)) == 0
  folder = root / 'slurm' / 'sweep-1'
  assert (tmp_path / 'bin' / 'sbatch_args').read_text().split() == ['--parsable', str(folder / 'sweep.sbatch')]
  assert (folder / 'job_id').read_text() == '4242\n'
  assert 'submitted array job 4242' in capsys.readouterr().out
  assert sweep.main(_slurm_sweep(root)) == 1
  assert 'array job 4242 of this sweep is still queued or running' in capsys.readouterr().err
  assert not (root / 'slurm' / 'sweep-2').exists()


@pytest.mark.slow
def test_a_real_sweep_skips_its_finished_runs_and_resumes_the_others(tmp_path):
  """Two tiny PCA runs, two at a time, with the results table; then the sweep again, after one
  run lost its final evaluation (as if killed between its last checkpoint and the evaluation)."""
  root = tmp_path / 'pca'
  # The session's digit classifier (trained once, outside the checkout's runs/) measures samples.
  classifier = train.digit_classifier(load_config('pca')).directory
  command = ['bash', 'launch.sh', 'configs/pca.py:smoke', '--seeds', '0,1', '--jobs', '2',
             '--root', str(root), '--', '--config.train.num_steps=8', '--config.eval.max_examples=64',
             f'--config.eval.classifier_dir={classifier}']
  env = dict(os.environ, XLA_FLAGS=FAST_COMPILE_FLAG)   # one CPU device a run
  first = subprocess.run(command, capture_output=True, text=True, env=env)
  assert first.returncode == 0, first.stderr[-3000:]
  table = (root / 'results.md').read_text()
  assert '| config | data | steps | train time | seed |' in table and table in first.stdout
  assert all('| pca (smoke) | digits | 8 | ' in line for line in table.splitlines()
             if line.endswith(('/seed0 |', '/seed1 |')))
  (root / 'seed1' / 'eval.json').unlink()
  second = subprocess.run(command, capture_output=True, text=True, env=env)
  assert second.returncode == 0, second.stderr[-3000:]
  assert f'skip (finished, evaluated at step 8): {root}/seed0' in second.stdout
  assert f'--workdir={root}/seed0' not in second.stdout
  assert f'Resumed from step 8 in {root}/seed1' in second.stderr
  assert json.loads((root / 'seed1' / 'eval.json').read_text())['step'] == 8
