"""The repository's own promises: CI runs the README's commands; launch.sh builds the right runs."""

import ast
import pathlib
import re
import subprocess
import sys

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
  assert workdirs == {f'runs/beta_vae/model.beta-{b}_seed{s}' for b in (1, 4) for s in (0, 1)}
  assert all('--config.train.num_steps=5' in c for c in commands)


def test_launch_rejects_bad_options():
  result = subprocess.run(['bash', 'launch.sh', 'configs/nope.py'], cwd=ROOT, capture_output=True, text=True)
  assert result.returncode == 2 and "configs/nope.py' does not exist" in result.stderr
  result = subprocess.run(['bash', 'launch.sh', 'configs/vae.py', '--jobs', 'x'], cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 2 and "--jobs must be a positive integer, got 'x'" in result.stderr


# The package's layers, top to bottom: a module may import from its own layer and the ones below.
LAYERS = (('main', 'train', 'validation', 'registry', 'stylize'), ('families',), ('evaluation',), ('models',),
          ('objectives',), ('data',), ('runtime',), ('cpu_speed',))
MAX_ROOT_MODULES = 6
MAX_MODULE_LINES = 400


def _layer_of(module: str) -> int:
  """The layer index of a dotted module name under gen_jax (`gen_jax.runtime.parallel` → 6)."""
  top = module.split('.')[1]
  return next(index for index, names in enumerate(LAYERS) if top in names)


def _gen_jax_imports(path: pathlib.Path) -> set[str]:
  names = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith('gen_jax.'):
      names.add(node.module)
    elif isinstance(node, ast.ImportFrom) and node.module == 'gen_jax':
      names.update(f'gen_jax.{alias.name}' for alias in node.names)
    elif isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names if alias.name.startswith('gen_jax.'))
  return names


def test_imports_only_go_down_the_layers():
  upward = []
  for path in sorted((ROOT / 'gen_jax').rglob('*.py')):
    module = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
    if module.endswith('__init__') and module.count('.') == 1:
      continue
    for imported in _gen_jax_imports(path):
      if _layer_of(imported) < _layer_of(module):
        upward.append(f'{module} imports {imported}')
  assert not upward, upward


def test_the_tree_reads_as_the_architecture():
  package = ROOT / 'gen_jax'
  root_modules = sorted(p.name for p in package.glob('*.py') if p.name != '__init__.py')
  assert len(root_modules) <= MAX_ROOT_MODULES, root_modules
  folders = {p.name for p in package.iterdir() if p.is_dir() and p.name != '__pycache__'}
  assert folders == {name for layer in LAYERS for name in layer if '.' not in name} - set(LAYERS[0])
  # models/ mirrors families/ name for name (families/base.py is the interface).
  assert ({p.stem for p in (package / 'models').glob('*.py')} - {'__init__'}
          == {p.stem for p in (package / 'families').glob('*.py')} - {'__init__', 'base'})
  # Outside that mirror, no two modules share a name.
  stems = [p.stem for p in package.rglob('*.py')
           if p.stem != '__init__' and p.parent.name not in ('models', 'families')]
  assert len(stems) == len(set(stems)), sorted(s for s in stems if stems.count(s) > 1)
  long = [str(p.relative_to(ROOT)) for p in package.rglob('*.py')
          if len(p.read_text().splitlines()) > MAX_MODULE_LINES]
  assert not long, long


def test_help_texts_print_their_usage_whole():
  launch = subprocess.run(['bash', 'launch.sh', '--help'], cwd=ROOT, capture_output=True, text=True)
  assert launch.returncode == 0 and 'Options:' in launch.stdout and 'set -euo' not in launch.stdout
  collect = subprocess.run([sys.executable, 'experiments/collect_results.py', '--help'], cwd=ROOT,
                           capture_output=True, text=True)
  assert "python experiments/collect_results.py 'runs/*' --output=" in collect.stdout
