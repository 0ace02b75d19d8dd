"""The repository's own promises: CI runs the README's commands; launch.sh builds the right runs."""

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
  blocks = re.findall(r'```bash\n(.*?)```', (ROOT / 'README.md').read_text(), re.S)
  return blocks[0].strip(), blocks[1].strip()


def test_ci_runs_exactly_the_readme_setup_and_test_commands():
  setup, tests = _readme_commands()
  ci_lines = [line for line in (ROOT / '.ci' / 'run').read_text().splitlines()
              if line and not line.startswith('#')]
  assert ci_lines[-2:] == [setup, tests]


def test_launch_expands_seeds_and_grids_into_separate_workdirs():
  result = subprocess.run(
      ['bash', 'launch.sh', 'configs/beta_vae.py:smoke', '--grid', 'model.beta=1,4', '--seeds', '0,1',
       '--dry-run', '--', '--config.train.num_steps=5'],
      cwd=ROOT, capture_output=True, text=True, check=True)
  commands = result.stdout.strip().splitlines()
  assert len(commands) == 4
  workdirs = {re.search(r'--workdir=(\S+)', c).group(1) for c in commands}
  assert workdirs == {f'runs/beta_vae/model.beta={b}_seed{s}' for b in (1, 4) for s in (0, 1)}
  assert all('--config.train.num_steps=5' in c for c in commands)


def test_launch_rejects_bad_options():
  result = subprocess.run(['bash', 'launch.sh', 'configs/nope.py'], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 2 and "configs/nope.py' does not exist" in result.stderr
  result = subprocess.run(['bash', 'launch.sh', 'configs/vae.py', '--jobs', 'x'], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 2 and "--jobs must be a positive integer, got 'x'" in result.stderr
