"""Train-step time of one config under several variants, compiled in one process, timed in turns.

  python experiments/step_times.py --config=configs/vae.py \
      --variant='xla defaults;compiler=default' --variant='project' \
      --variant='xla convolutions;convolution=xla' --variant='wider;model.hidden_dim=256'

A variant is a name, then `;`-separated settings: `compiler=default` compiles with XLA's default
options instead of gen_jax.cpu_speed.compiler_options', `convolution=xla` computes every convolution with
XLA's own instead of gen_jax.cpu_speed.conv_forms' forms, and `field=value` overrides a config field (the
value read as a Python literal). Every variant trains from the same initial state on the same
batches (the MNIST IDX files under --idx_path, or the config's own data). The variants take turns
in --slice_seconds slices for --rounds rounds, so drift in the machine's speed falls on all of
them alike: compare them with each other, not with other runs. PERFORMANCE.md quotes figures
measured this way. Prints a table and writes report.json
and report.md to a new directory under --out.
"""

from __future__ import annotations

import ast
import contextlib
import json
import pathlib
import sys
import time

from absl import app, flags
from ml_collections import config_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from gen_jax import data, registry, validation  # noqa: E402
from gen_jax.cpu_speed import host_memory  # noqa: E402
from gen_jax.evaluation import figures, reports  # noqa: E402
from gen_jax.runtime import parallel  # noqa: E402
from gen_jax.families.base import DataSpec  # noqa: E402
from gen_jax.cpu_speed import conv_forms  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'The config whose train step is timed.')
flags.DEFINE_multi_string('variant', ['project'], 'name;setting;... (see the docstring).')
flags.DEFINE_string('idx_path', str(ROOT.parent / 'shared' / 'data' / 'mnist'),
                    "Train on the MNIST IDX files here (the benchmarks' data); empty: the config's "
                    'own data.')
flags.DEFINE_integer('rounds', 6, 'Turns each variant gets.')
flags.DEFINE_float('slice_seconds', 3.0, 'Length of one turn.')
flags.DEFINE_integer('batches', 20, 'Distinct batches cycled through.')
flags.DEFINE_string('out', 'experiments/results/step_times',
                    'Report directory (a new one, suffixed -2, -3, ... if it exists).')


def parse_variant(spec: str, base) -> tuple[str, bool, bool, object]:
  """(name, tuned compiler options?, XLA's own convolutions?, config) of one --variant."""
  name, *settings = [part.strip() for part in spec.split(';')]
  config, tuned, xla_convolutions = base.copy_and_resolve_references(), True, False
  for setting in settings:
    field, _, value = setting.partition('=')
    if field == 'compiler':
      if value not in ('default', 'project'):
        raise app.UsageError(f'compiler={value!r} in --variant={spec!r}: use default or project')
      tuned = value == 'project'
      continue
    if field == 'convolution':
      if value not in ('xla', 'project'):
        raise app.UsageError(f'convolution={value!r} in --variant={spec!r}: use xla or project')
      xla_convolutions = value == 'xla'
      continue
    *path, last = field.split('.')
    node = config
    for key in path:
      node = node[key]
    if last not in node:
      raise app.UsageError(f'{field!r} in --variant={spec!r} is not a config field')
    try:
      node[last] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      node[last] = value
  validation.validate(config)
  return name, tuned, xla_convolutions, config


class Variant:
  """One variant's compiled step, state and batches."""

  def __init__(self, name: str, tuned: bool, xla_convolutions: bool, config):
    self.name, self.seconds, self.steps = name, 0.0, 0
    dataset = data.load(**config.data)
    schedule = data.BatchSchedule(dataset.train, config.train.batch_size, config.seed)
    family = registry.get(config.model.name)(config, DataSpec.of(dataset, schedule))
    mesh = parallel.make_mesh(config.train.num_devices)
    self.batches = [parallel.shard_batch(schedule(i), mesh) for i in range(FLAGS.batches)]
    self.state = parallel.initialize(family.init_state, jax.random.PRNGKey(config.seed), mesh)
    with conv_forms.xla_convolutions() if xla_convolutions else contextlib.nullcontext():
      self.step = parallel.compile_train_step(family.train_step, mesh, tuned).lower(
          self.state, self.batches[0]).compile()
    self.run(3)   # warm-up, untimed

  def run(self, steps: int) -> None:
    for i in range(steps):
      self.state, _ = self.step(self.state, self.batches[i % len(self.batches)])
    jax.block_until_ready(self.state)

  def timed_turn(self, seconds: float) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
      self.run(5)
      self.steps += 5
    self.seconds += time.perf_counter() - started


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  host_memory.keep_step_memory_mapped()
  base = FLAGS.config
  if FLAGS.idx_path:
    base.data.name, base.data.path = 'idx', FLAGS.idx_path
  variants = [Variant(*parse_variant(spec, base)) for spec in FLAGS.variant]
  for round_index in range(FLAGS.rounds):
    for variant in variants:
      variant.timed_turn(FLAGS.slice_seconds)
    print(f'round {round_index + 1}/{FLAGS.rounds}: ' + ', '.join(
        f'{v.name} {1000 * v.seconds / v.steps:.1f} ms' for v in variants), flush=True)
  rows = [{'variant': v.name, 'ms_per_step': 1000 * v.seconds / v.steps,
           'steps_per_second': v.steps / v.seconds, 'steps': v.steps} for v in variants]
  command = 'python experiments/step_times.py ' + ' '.join(repr(a) for a in sys.argv[1:])
  table = reports.table(['variant', 'ms / step', 'steps / s', 'timed steps'],
                        [[r['variant'], f"{r['ms_per_step']:.1f}", f"{r['steps_per_second']:.2f}",
                          str(r['steps'])] for r in rows])
  text = (f'# Train-step times: {base.model.name}\n\n{table}\n{jax.device_count()} device(s), '
          f'{FLAGS.rounds} turns of {FLAGS.slice_seconds} s each.\n\nCommand: `{command}`\n')
  out = figures.unique_dir(ROOT / FLAGS.out)
  (out / 'report.json').write_text(json.dumps({'command': command, 'variants': rows}, indent=2))
  (out / 'report.md').write_text(text)
  print(text + f'\nReport: {out / "report.md"}')


if __name__ == '__main__':
  flags.mark_flag_as_required('config')
  app.run(main)
