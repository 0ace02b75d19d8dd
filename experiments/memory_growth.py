"""Does the training loop's memory grow over a long run? The real loop, memory sampled every N steps.

  python experiments/memory_growth.py --config=configs/vae.py:smoke --num_steps=5000 \
      --sample_every=50 --output_dir=experiments/results/memory_growth_vae

Runs `gen_jax.train.train_and_evaluate` (logging, checkpoints, epoch ends, evaluation, all of it)
on the config with `train.num_steps` raised, and after every compiled call checks whether another
`--sample_every` steps have been dispatched; if so it records the process's resident set size
(psutil, else /proc/self/statm) and the bytes it holds from malloc (glibc's mallinfo2, which,
unlike the RSS, falls when freed memory is kept by the allocator). The counting wraps
gen_jax.runtime.dispatch.Dispatcher for the run's duration; nothing else changes. After the first
--warmup_fraction of the samples (compilation, first checkpoint, caches), a least-squares line
through the samples gives the growth in bytes per step (the final evaluation, after the last
step, is outside the fit); a loop that leaks grows linearly, one that
does not stays flat apart from noise. Writes report.md and report.json to --output_dir (refused
when it already holds a report) and prints the slope.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sys
import tempfile
import time

from absl import app, flags, logging
from ml_collections import config_flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.bench import memory  # noqa: E402
from gen_jax import train  # noqa: E402
from gen_jax.cpu_speed import host_memory  # noqa: E402
from gen_jax.runtime import dispatch  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', str(ROOT / 'configs' / 'vae.py') + ':smoke',
                                'The run whose memory is watched (a smoke config keeps it quick).')
flags.DEFINE_integer('num_steps', 5000, 'Training steps of the run (overrides train.num_steps).')
flags.DEFINE_integer('sample_every', 50, 'Steps between memory samples.')
flags.DEFINE_float('warmup_fraction', 0.2, 'Leading share of the samples left out of the fit.')
flags.DEFINE_string('workdir', '', "The run's workdir; '' = a temporary directory.")
flags.DEFINE_string('output_dir', str(ROOT / 'experiments' / 'results' / 'memory_growth'),
                    'Report directory; refused when it already holds a report.')


class Recorder:
  """Samples memory whenever another `every` steps have been dispatched."""

  def __init__(self, every: int):
    self.every, self.steps, self.started = every, 0, time.perf_counter()
    self.samples: list[dict] = []
    self.sample()

  def sample(self) -> None:
    self.samples.append({'step': self.steps, 'seconds': time.perf_counter() - self.started,
                         'rss_bytes': memory.rss_bytes(), 'heap_bytes': memory.heap_bytes()})

  def dispatched(self, count: int) -> None:
    before, self.steps = self.steps, self.steps + count
    if self.steps // self.every > before // self.every:
      self.sample()


@contextlib.contextmanager
def counting_dispatches(recorder: Recorder):
  """gen_jax.runtime.dispatch.Dispatcher, for the duration, reports each call to `recorder`."""
  original = dispatch.Dispatcher

  class Counting(original):
    def __call__(self, state, batches, num_steps):
      result = super().__call__(state, batches, num_steps)
      recorder.dispatched(num_steps)
      return result

  dispatch.Dispatcher = Counting
  try:
    yield
  finally:
    dispatch.Dispatcher = original


def fit(samples: list[dict], warmup_fraction: float) -> dict:
  kept = samples[int(len(samples) * warmup_fraction):]
  steps = [s['step'] for s in kept]
  result = {'samples_fitted': len(kept), 'from_step': steps[0] if steps else None}
  for key in ('rss_bytes', 'heap_bytes'):
    values = [s[key] for s in kept]
    if values and None not in values:
      result[f'{key}_per_step'] = memory.fit_slope(steps, values)
      result[f'{key}_growth'] = values[-1] - values[0]
  return result


def markdown(record: dict) -> str:
  f = record['fit']
  mib = 2 ** 20
  lines = [f"# Memory over a long run: {record['config']}", '',
           f"{record['num_steps']} steps of `gen_jax.train.train_and_evaluate`, memory sampled every "
           f"{record['sample_every']} steps ({len(record['samples'])} samples, RSS from "
           f"{record['rss_source']}); the first {record['warmup_fraction']:.0%} of the samples left "
           f"out of the fit, which starts at step {f['from_step']}. Run time "
           f"{record['seconds']:.0f} s.", '',
           '| measure | slope (bytes / step) | per 10,000 steps | change over the fitted samples |',
           '| --- | ---: | ---: | ---: |']
  for key, name in (('rss_bytes', 'resident set size'), ('heap_bytes', 'malloc in use (mallinfo2)')):
    if f'{key}_per_step' in f:
      slope = f[f'{key}_per_step']
      lines.append(f"| {name} | {slope:.1f} | {slope * 1e4 / mib:.2f} MiB | "
                   f"{f[f'{key}_growth'] / mib:+.2f} MiB |")
  lines += ['', f"Machine: {record['machine']['cpu']}, {record['machine']['cores']} cores; load "
            f"average at start / end {record['load_start']} / {record['load_end']}.", '',
            f"Command: `{record['command']}`", '']
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  out = pathlib.Path(FLAGS.output_dir)
  if (out / 'report.md').exists() or (out / 'report.json').exists():
    raise app.UsageError(f'{out} already holds a report; choose a new --output_dir')
  host_memory.keep_step_memory_mapped()   # as gen_jax.main does, before JAX allocates
  logging.set_verbosity(logging.WARNING)   # orbax reports every step of every save at INFO
  config = FLAGS.config
  config.train.num_steps = FLAGS.num_steps
  load_start = [round(v, 2) for v in os.getloadavg()]
  recorder = Recorder(FLAGS.sample_every)
  with contextlib.ExitStack() as stack:
    workdir = FLAGS.workdir or stack.enter_context(tempfile.TemporaryDirectory(prefix='memory_growth_'))
    stack.enter_context(counting_dispatches(recorder))
    train.train_and_evaluate(config, workdir)
  after_evaluation = {'rss_bytes': memory.rss_bytes(), 'heap_bytes': memory.heap_bytes()}
  from experiments.bench import harness   # noqa: PLC0415
  record = {'config': f'{config.name} ({config.model.name})', 'num_steps': FLAGS.num_steps,
            'sample_every': FLAGS.sample_every, 'warmup_fraction': FLAGS.warmup_fraction,
            'samples': recorder.samples, 'after_final_evaluation': after_evaluation, 'fit': fit(recorder.samples, FLAGS.warmup_fraction),
            'seconds': time.perf_counter() - recorder.started, 'rss_source': memory.rss_source(),
            'machine': harness.machine(), 'load_start': load_start,
            'load_end': [round(v, 2) for v in os.getloadavg()],
            'command': 'python experiments/memory_growth.py ' + ' '.join(sys.argv[1:])}
  out.mkdir(parents=True, exist_ok=True)
  (out / 'report.json').write_text(json.dumps(record, indent=2))
  (out / 'report.md').write_text(text := markdown(record))
  print(text)


if __name__ == '__main__':
  app.run(main)
