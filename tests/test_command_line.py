"""Every flag-level mistake on the command line ends in one line naming the flag, the value and
what is allowed, exit status 1, and nothing written."""

import subprocess
import sys

import pytest

CASES = [
    (['--config=configs/vae.py:smoke', '--config.train.num_step=10'],
     "--config.train.num_step=10: config.train has no field 'num_step'; did you mean config.train.num_steps?"),
    (['--config=configs/vae.py:smoke', '--config.trian.num_steps=10'],
     "--config.trian.num_steps=10: config has no field 'trian'; did you mean config.train?"),
    (['--config=configs/vae.py:smoke', '--config.seed.x=1'],
     "--config.seed.x=1: config.seed has no field 'x'; config.seed is a value, not a group"),
    (['--config=configs/does_not_exist.py'],
     "--config=configs/does_not_exist.py: no such config file; the configs beside it are ["),
    (['--config=configs/vae.py:smok'],
     "--config=configs/vae.py:smok: config argument must be empty or 'smoke', got 'smok'"),
    (['--config=configs/vae.py:smoke', '--config.train.num_steps=abc'],
     "flag --config.train.num_steps=abc: invalid literal for int()"),
    (['--config=configs/vae.py:smoke', '--mode=bogus'],
     'flag --mode=bogus: value should be one of <train|evaluate|sample|classifier>'),
    (['--config=configs/vae.py:smoke', '--bogus_flag=1'], "Unknown command line flag 'bogus_flag'"),
    ([], 'flag --config=None: Flag --config must have a value other than None'),
    (['--config=configs/vae.py:smoke', 'extra_argument'], "unexpected arguments ['extra_argument']"),
    (['--config=configs/vae.py:smoke', '--checkpoint=best'],
     '--checkpoint=best applies to --mode=evaluate and --mode=sample'),
    (['--config=configs/vae.py:smoke', '--config.optim.learning_rate=-0.5'],
     'config.optim.learning_rate=-0.5 is out of range'),
]


@pytest.mark.parametrize('arguments,message', CASES, ids=[' '.join(c[0][1:]) or 'no flags' for c in CASES])
def test_mistake_is_one_line_naming_it(arguments, message, tmp_path):
  result = subprocess.run([sys.executable, '-m', 'gen_jax.main', *arguments, f'--workdir={tmp_path / "run"}'],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 1, result.stderr[-2000:]
  lines = [line for line in result.stderr.splitlines() if line.strip()]
  assert len(lines) == 1, result.stderr[-2000:]
  assert lines[0].startswith('error: ') and message in lines[0], lines[0]
  assert not (tmp_path / 'run').exists()
