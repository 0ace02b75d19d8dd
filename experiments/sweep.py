"""The sweeps that launch.sh runs: a grid of config overrides × seeds, one workdir a run, run here
(several at a time, one a GPU) or as a SLURM array job. launch.sh's header is the usage.

A run counts as finished when its workdir's eval.json is at the step the run trains to (the
config's train.num_steps with the sweep's overrides); a re-run sweep skips finished runs and
starts the others again, which resume from their latest checkpoint by themselves.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import os
import pathlib
import queue
import re
import shlex
import subprocess
import sys
import threading
from typing import Sequence

from absl import flags
from ml_collections import config_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
MODES = ('train', 'evaluate', 'sample')
BACKENDS = ('local', 'slurm')
EVAL_JSON = 'eval.json'     # gen_jax.evaluation.reports.EVAL_JSON (not imported: it pulls in jax)
RESULTS = 'results.md'
SLURM_DIR = 'slurm'         # <root>/slurm/sweep-<n>/: the script, its commands, the tasks' logs
SUBMITTED = 'job_id'        # written beside a submitted script; an unsubmitted folder is reused
# A SLURM time limit: MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS[:MINUTES[:SECONDS]].
SLURM_TIME = re.compile(r'^(\d+-\d+(:\d\d){0,2}|\d+(:\d\d){0,2})$')
# JAX's memory preallocation on a GPU (75%), split between the runs sharing one.
GPU_MEMORY_FRACTION = 0.75


class UsageError(ValueError):
  """A bad option: the message names it, its value and what is allowed."""


@dataclasses.dataclass
class Options:
  config: str
  seeds: list[str] = dataclasses.field(default_factory=lambda: ['0'])
  grids: list[tuple[str, list[str]]] = dataclasses.field(default_factory=list)
  jobs: int | None = None
  host_devices: int | None = None
  root: str = ''
  mode: str = 'train'
  gpus: list[str] | None = None
  backend: str = 'local'
  partition: str = ''
  time: str = ''
  nodes: int = 1
  gpus_per_node: int = 1
  sbatch: list[str] = dataclasses.field(default_factory=list)
  dry_run: bool = False
  extra: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Run:
  workdir: str
  overrides: tuple[str, ...]      # the sweep's --config.* flags: the seed, then the grid's fields
  command: tuple[str, ...]        # python -m gen_jax.main ...


def _positive(option: str, value: str, minimum: int = 1) -> int:
  if not re.fullmatch(r'\d+', value) or int(value) < minimum:
    kind = 'a positive integer' if minimum == 1 else f'an integer >= {minimum}'
    raise UsageError(f'{option} must be {kind}, got {value!r}')
  return int(value)


def _choice(option: str, value: str, allowed: Sequence[str]) -> str:
  if value not in allowed:
    raise UsageError(f'{option} must be one of {", ".join(allowed)}, got {value!r}')
  return value


def _list(option: str, value: str) -> list[str]:
  items = value.split(',')
  if not all(items):
    raise UsageError(f'{option} takes a comma-separated list without empty items, got {value!r}')
  return items


SLURM_ONLY = ('--partition', '--time', '--nodes', '--gpus-per-node', '--sbatch')
TAKES_VALUE = ('--seeds', '--grid', '--jobs', '--host-devices', '--root', '--mode', '--gpus',
               '--backend') + SLURM_ONLY


def parse(argv: Sequence[str]) -> Options:
  """launch.sh's arguments (after the program name) as Options, or a UsageError."""
  argv = list(argv)
  if not argv or argv[0].startswith('-'):
    raise UsageError('the first argument must be a config file (configs/NAME.py[:smoke])')
  options = Options(config=argv.pop(0))
  config_file = options.config.split(':', 1)[0]
  if not pathlib.Path(config_file).is_file():
    raise UsageError(f"config file '{config_file}' does not exist")
  given = set()
  while argv:
    arg = argv.pop(0)
    if arg == '--':
      options.extra = argv
      break
    if arg == '--dry-run':
      options.dry_run = True
      continue
    name, has_value, value = arg.partition('=')
    if name not in TAKES_VALUE:
      raise UsageError(f"unknown option '{arg}' (./launch.sh --help lists them)")
    if not has_value:
      if not argv:
        raise UsageError(f'{name} needs a value')
      value = argv.pop(0)
    given.add(name)
    if name == '--seeds':
      options.seeds = _list(name, value)
      bad = [s for s in options.seeds if not re.fullmatch(r'-?\d+', s)]
      if bad:
        raise UsageError(f'--seeds takes comma-separated integers, got {value!r}')
    elif name == '--grid':
      field, equals, values = value.partition('=')
      if not equals or not re.fullmatch(r'[A-Za-z_][\w.]*', field):
        raise UsageError(f"--grid takes FIELD=V1,V2,..., got '{value}'")
      options.grids.append((field, _list(f'--grid {field}', values)))
    elif name == '--jobs':
      options.jobs = _positive(name, value)
    elif name == '--host-devices':
      options.host_devices = _positive(name, value)
    elif name == '--root':
      options.root = value
    elif name == '--mode':
      options.mode = _choice(name, value, MODES)
    elif name == '--gpus':
      options.gpus = value if value == 'all' else _list(name, value)
    elif name == '--backend':
      options.backend = _choice(name, value, BACKENDS)
    elif name == '--partition':
      options.partition = value
    elif name == '--time':
      if not SLURM_TIME.match(value):
        raise UsageError(f'--time must be a SLURM time limit (MINUTES, HH:MM:SS or D-HH:MM:SS), '
                         f'got {value!r}')
      options.time = value
    elif name == '--nodes':
      options.nodes = _positive(name, value)
    elif name == '--gpus-per-node':
      options.gpus_per_node = _positive(name, value, minimum=0)
    elif name == '--sbatch':
      options.sbatch.append(value)
  if options.backend == 'local':
    misplaced = [o for o in SLURM_ONLY if o in given]
    if misplaced:
      raise UsageError(f'{misplaced[0]} applies to --backend slurm only (the backend is local)')
  elif options.gpus is not None:
    raise UsageError('--gpus applies to --backend local; on SLURM use --gpus-per-node')
  if options.gpus is not None and options.jobs is not None:
    raise UsageError('--jobs does not apply with --gpus: one run a listed GPU runs at a time '
                     '(list a GPU twice, --gpus 0,0,1,1, to run two on it)')
  options.root = options.root or f'runs/{pathlib.Path(config_file).stem}'
  return options


def safe_name(value: str) -> str:
  """A value as part of a workdir name, safe in shells and on every file system."""
  return re.sub(r'[^A-Za-z0-9.+-]', '-', value)


def expand(options: Options) -> list[Run]:
  """Every combination of the grids' values (their full product, the first grid outermost), each
  with every seed: runs/<config>/FIELD-VALUE_..._seedS."""
  combos = [('', ())]
  for field, values in options.grids:
    combos = [(f'{name}{field}-{safe_name(value)}_', overrides + (f'--config.{field}={value}',))
              for name, overrides in combos for value in values]
  runs = []
  for name, grid_overrides in combos:
    for seed in options.seeds:
      workdir = f'{options.root}/{name}seed{seed}'
      overrides = (f'--config.seed={seed}',) + grid_overrides
      command = ('python', '-m', 'gen_jax.main', f'--config={options.config}',
                 f'--workdir={workdir}', f'--mode={options.mode}', *overrides, *options.extra)
      runs.append(Run(workdir, overrides, command))
  return runs


def steps_to_train(config: str, overrides: Sequence[str]) -> int:
  """train.num_steps of the config file with the --config.* overrides, read as gen_jax.main
  reads them (ml_collections' config flags)."""
  if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))     # the config files import the `configs` package
  argv = ['sweep', f'--config={config}', *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, flag_values=values, lock_config=True, sys_argv=argv)
  values(argv)
  return int(values.config.train.num_steps)


def finished_step(run: Run, options: Options) -> int | None:
  """The step of the run's final evaluation when it has one (the run is done), else None."""
  path = pathlib.Path(run.workdir) / EVAL_JSON
  if options.mode != 'train' or not path.exists():
    return None
  try:
    step = int(json.loads(path.read_text())['step'])
  except (OSError, ValueError, KeyError, TypeError):   # unreadable: the run writes it again
    return None
  overrides = [*run.overrides, *(a for a in options.extra if a.startswith('--config.'))]
  try:
    target = steps_to_train(options.config, overrides)
  except (flags.Error, ValueError, TypeError, AttributeError, ImportError, SyntaxError):
    return None     # a bad config or override: the run itself refuses it, naming what is wrong
  return step if step >= target else None


def run_environment(options: Options) -> dict[str, str]:
  """Environment variables every run gets."""
  env = {}
  if options.host_devices:
    inherited = os.environ.get('XLA_FLAGS', '')
    env['XLA_FLAGS'] = f'{inherited} --xla_force_host_platform_device_count={options.host_devices}'.strip()
  return env


def visible_gpus() -> list[str]:
  """`--gpus all`: the GPUs this process may use (CUDA_VISIBLE_DEVICES, else nvidia-smi's list)."""
  if os.environ.get('CUDA_VISIBLE_DEVICES'):
    return os.environ['CUDA_VISIBLE_DEVICES'].split(',')
  try:
    listing = subprocess.run(['nvidia-smi', '--query-gpu=index', '--format=csv,noheader'],
                             capture_output=True, text=True, check=True).stdout
  except (OSError, subprocess.CalledProcessError):
    listing = ''
  gpus = listing.split()
  if not gpus:
    raise UsageError('--gpus all: no GPU found (CUDA_VISIBLE_DEVICES is unset and nvidia-smi '
                     'lists none); name them, --gpus 0,1')
  return gpus


def slots_of(options: Options) -> list[dict[str, str]]:
  """One environment a concurrent run: a GPU each with --gpus, else --jobs alike ones."""
  if options.gpus is None:
    return [{}] * (options.jobs or 1)
  gpus = visible_gpus() if options.gpus == 'all' else options.gpus
  sharing = collections.Counter(gpus)
  slots = []
  for gpu in gpus:
    slot = {'CUDA_VISIBLE_DEVICES': gpu}
    if sharing[gpu] > 1:    # runs sharing a GPU share its memory too
      slot['XLA_PYTHON_CLIENT_MEM_FRACTION'] = f'{GPU_MEMORY_FRACTION / sharing[gpu]:.2f}'
    slots.append(slot)
  return slots


def shell_line(run: Run, env: dict[str, str], extra_args: Sequence[str] = ()) -> str:
  assignments = [f'{k}={shlex.quote(v)}' for k, v in env.items()]
  return ' '.join(assignments + [shlex.join([*run.command, *extra_args])])


def run_local(runs: Sequence[Run], options: Options) -> list[Run]:
  """Runs them, as many at a time as there are slots; returns the ones that failed."""
  slots: queue.Queue[dict[str, str]] = queue.Queue()
  for slot in slots_of(options):
    slots.put(slot)
  common = run_environment(options)
  print_lock = threading.Lock()

  def start(run: Run) -> bool:
    slot = slots.get()
    try:
      env = {**common, **slot}
      with print_lock:
        print(f'run: {shell_line(run, env)}', flush=True)
      return subprocess.run(run.command, env={**os.environ, **env}).returncode == 0
    finally:
      slots.put(slot)

  pool = concurrent.futures.ThreadPoolExecutor(max_workers=slots.qsize())
  try:
    results = list(pool.map(start, runs))
  except KeyboardInterrupt:
    pool.shutdown(wait=False, cancel_futures=True)
    print('\ninterrupted: run the same command again to resume', file=sys.stderr)
    raise SystemExit(130)
  pool.shutdown()
  return [run for run, ok in zip(runs, results) if not ok]


def write_results(runs: Sequence[Run], root: pathlib.Path) -> pathlib.Path | None:
  """The sweep's results table (experiments/collect_results.py) in <root>/results.md, printed."""
  evaluated = [run.workdir for run in runs if (pathlib.Path(run.workdir) / EVAL_JSON).exists()]
  if not evaluated:
    return None
  output = root / RESULTS
  # Written beside, then renamed: the hosts of a TPU pod that all ran the sweep may write it at once.
  partial = root / f'.{RESULTS}.{os.uname().nodename}.{os.getpid()}'
  collected = subprocess.run([sys.executable, str(REPO / 'experiments' / 'collect_results.py'),
                              *evaluated, f'--output={partial}'], capture_output=True, text=True)
  if collected.returncode:
    print(f'error: the results table was not written: {collected.stderr.strip()}', file=sys.stderr)
    return None
  text = partial.read_text()
  os.replace(partial, output)
  print(f'\n{text}\n(written to {output})')
  return output


# --------------------------------------------------------------------------------------------
# SLURM

def slurm_folder(root: pathlib.Path) -> pathlib.Path:
  """<root>/slurm/sweep-<n>: a new one a submission, the last one again if it was never submitted
  (so that pending array tasks never read another sweep's commands)."""
  numbers = sorted(int(p.name.split('-')[1]) for p in (root / SLURM_DIR).glob('sweep-*')
                   if re.fullmatch(r'sweep-\d+', p.name))
  if numbers and not (root / SLURM_DIR / f'sweep-{numbers[-1]}' / SUBMITTED).exists():
    return root / SLURM_DIR / f'sweep-{numbers[-1]}'
  return root / SLURM_DIR / f'sweep-{numbers[-1] + 1 if numbers else 1}'


def sbatch_script(options: Options, num_tasks: int, folder: pathlib.Path, workdir: str) -> str:
  """The array job: task i runs line i+1 of the commands file through srun. A run on one node is
  one process that drives all the node's GPUs; a run on several nodes is one process a GPU, each
  seeing all its node's GPUs (`--gpus-per-node`, not `--gpus-per-task`): JAX's SLURM detection
  gives process SLURM_LOCALID the GPU of that index."""
  multihost = options.nodes > 1
  processes_per_node = max(options.gpus_per_node, 1) if multihost else 1
  throttle = f'%{options.jobs}' if options.jobs else ''
  lines = ['#!/bin/bash',
           f'#SBATCH --job-name=gen_jax-{pathlib.Path(options.config.split(":")[0]).stem}',
           f'#SBATCH --array=0-{num_tasks - 1}{throttle}',
           f'#SBATCH --nodes={options.nodes}',
           f'#SBATCH --ntasks-per-node={processes_per_node}']
  if options.gpus_per_node:
    lines.append(f'#SBATCH --gpus-per-node={options.gpus_per_node}')
  if options.partition:
    lines.append(f'#SBATCH --partition={options.partition}')
  if options.time:
    lines.append(f'#SBATCH --time={options.time}')
  lines += [f'#SBATCH --chdir={workdir}', f'#SBATCH --output={folder}/%A_%a.out']
  lines += [f'#SBATCH {line}' for line in options.sbatch]
  lines += [
      '# Written by launch.sh: one array task a run. The tasks run in the environment sbatch was',
      '# called from (activate the virtualenv first); the workdirs must be on a shared file system.',
      'set -euo pipefail',
      f'command=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {folder}/commands.txt)',
      'echo "task $SLURM_ARRAY_TASK_ID on $(hostname): $command"',
      'srun --kill-on-bad-exit=1 bash -c "$command"']
  return '\n'.join(lines) + '\n'


def queued_jobs(root: pathlib.Path) -> list[str]:
  """This sweep's earlier array jobs that SLURM still holds (pending or running)."""
  queued = []
  for record in sorted((root / SLURM_DIR).glob(f'sweep-*/{SUBMITTED}')):
    job = record.read_text().strip()
    try:
      listed = subprocess.run(['squeue', '--noheader', '--jobs', job, '--format=%i'],
                              capture_output=True, text=True).stdout
    except FileNotFoundError:
      return []
    if listed.strip():
      queued.append(job)
  return queued


def run_slurm(runs: Sequence[Run], options: Options, root: pathlib.Path) -> int:
  if not options.dry_run and (queued := queued_jobs(root)):
    print(f'error: array job {", ".join(queued)} of this sweep is still queued or running; submitting '
          f'its unfinished runs again would start them twice: wait for it (squeue --jobs '
          f'{queued[0]}) or cancel it (scancel {queued[0]})', file=sys.stderr)
    return 1
  folder = slurm_folder(root)
  folder.mkdir(parents=True, exist_ok=True)
  extra = ['--multihost'] if options.nodes > 1 else []
  env = run_environment(options)
  (folder / 'commands.txt').write_text(''.join(shell_line(r, env, extra) + '\n' for r in runs))
  script = folder / 'sweep.sbatch'
  script.write_text(sbatch_script(options, len(runs), folder, os.getcwd()))
  print(script.read_text())
  print(f'({len(runs)} tasks; the script and commands are in {folder})')
  if options.dry_run:
    print(f'dry run: not submitted (sbatch {script} submits it)')
    return 0
  try:
    submitted = subprocess.run(['sbatch', '--parsable', str(script)], capture_output=True,
                               text=True)
  except FileNotFoundError:
    print(f'error: sbatch not found: is this a SLURM login node? (script: {script})', file=sys.stderr)
    return 1
  if submitted.returncode:
    print(f'error: sbatch failed: {submitted.stderr.strip()}', file=sys.stderr)
    return 1
  job = submitted.stdout.strip()
  (folder / SUBMITTED).write_text(job + '\n')
  print(f'submitted array job {job}; logs in {folder}; run this command again when it is done '
        f'for the results table ({root / RESULTS})')
  return 0


# --------------------------------------------------------------------------------------------

def main(argv: Sequence[str]) -> int:
  try:
    options = parse(argv)
    runs = expand(options)
    if options.backend == 'local':
      slots_of(options)       # --gpus all: refuse now when there is no GPU
  except UsageError as error:
    print(f'error: {error}', file=sys.stderr)
    return 2
  root = pathlib.Path(options.root)
  todo = []
  for run in runs:
    step = finished_step(run, options)
    if step is None:
      todo.append(run)
    else:
      print(f'skip (finished, evaluated at step {step}): {run.workdir}')
  if options.backend == 'slurm' and todo:
    return run_slurm(todo, options, root)
  if options.dry_run:
    for run in todo:
      print(shell_line(run, run_environment(options)))
    return 0
  failed = run_local(todo, options)
  if options.mode in ('train', 'evaluate'):
    write_results(runs, root)
  if failed:
    print(f'error: {len(failed)} of {len(todo)} runs failed: '
          f'{", ".join(r.workdir for r in failed)}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
