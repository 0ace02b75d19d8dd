"""gen_jax's train step in processes that differ only in the host allocator and dispatch settings.

  python experiments/host_memory_settings.py [--families=vae,dcgan,pix2pix] [--budget_s=8]

What `gen_jax.cpu_speed.host_memory.keep_step_memory_mapped` chooses, measured: one process per
setting (glibc's `mallopt` must come before anything allocates, JAX's dispatch mode before its
backend starts), each training the family's benchmark case (experiments/bench, batch 64, its base
image size), in turns of --slice_s seconds until each has trained --budget_s (the benchmark's
harness). Reports the median milliseconds a step and the minor page faults a step (the pages the
process had to map afresh). Writes report.json and report.md to --output_dir.
"""

from __future__ import annotations

import functools
import json
import pathlib
import statistics
import sys

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.bench import families, harness  # noqa: E402
from gen_jax.cpu_speed import host_memory  # noqa: E402
from gen_jax.evaluation import reports  # noqa: E402

_ONE_ARENA = ((host_memory.M_ARENA_MAX, 1),) + host_memory.KEPT_MAPPED
SETTINGS = {   # name: (mallopt settings, synchronous dispatch)
    'glibc defaults': ((), False),
    'one arena': (_ONE_ARENA, False),
    'arena per thread': (host_memory.KEPT_MAPPED, False),
    'one arena + synchronous': (_ONE_ARENA, True),
    'arena per thread + synchronous (gen_jax)': (host_memory.KEPT_MAPPED, True),
}

FLAGS = flags.FLAGS
flags.DEFINE_list('families', ['vae', 'dcgan', 'pix2pix'], f'Of {list(families.FAMILIES)}.')
flags.DEFINE_list('settings', list(SETTINGS), 'The settings compared.')
flags.DEFINE_float('budget_s', 8.0, 'Timed training seconds per setting.')
flags.DEFINE_float('slice_s', 1.0, 'Seconds a setting trains before the next takes its turn.')
flags.DEFINE_string('output_dir', 'experiments/results/host_memory_settings',
                    'Report directory; refused when it already holds a report.')


def serve_with(setting: str, side: str, family_name: str, settings: dict, connection) -> None:
  """A worker process with `setting` applied before JAX allocates; then the harness's worker."""
  options, synchronous = SETTINGS[setting]
  if options and not host_memory.set_allocator(options):
    raise RuntimeError(f'{setting}: glibc refused mallopt{options} (or the allocator is not glibc\'s)')
  import jax   # noqa: PLC0415
  jax.config.update('jax_cpu_enable_async_dispatch', not synchronous)
  harness.serve(side, family_name, settings, connection)


def minor_faults(pid: int) -> int:
  fields = pathlib.Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
  return int(fields[7])   # minflt, the 10th field of stat(5)


def time_family(family: families.Family) -> list[dict]:
  settings = dict(slice_s=FLAGS.slice_s, steps_per_dispatch=1, batch_groups=2, seed=0,
                  dispatch_form='auto', torch_device='cpu', style_iterations=10,
                  keep_step_memory_mapped=False)
  workers = {name: harness.Worker('jax', family.name, settings,
                                  target=functools.partial(serve_with, name), label=name)
             for name in FLAGS.settings}
  try:
    for worker in workers.values():
      worker.ask('build', 64, family.base_size)
      worker.ask('warm_up')
    faults = {name: minor_faults(worker.process.pid) for name, worker in workers.items()}
    slices = harness.take_turns(workers, FLAGS.budget_s, FLAGS.slice_s)
    rows = []
    for name, worker in workers.items():
      rate = harness.rates(slices[name])
      rows.append({'family': family.name, 'setting': name,
                   'ms_per_step': 1000 / rate['median_steps_per_s'],
                   'slice_ms_per_step': [1000 / r for r in rate['slice_steps_per_s']],
                   'minor_faults_per_step': (minor_faults(worker.process.pid) - faults[name])
                                            / rate['steps']})
      print(f"{family.name:8s} {name:40s} {rows[-1]['ms_per_step']:7.1f} ms/step "
            f"{rows[-1]['minor_faults_per_step']:8.0f} faults/step", flush=True)
    return rows
  finally:
    for worker in workers.values():
      worker.close()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  unknown = (set(FLAGS.families) - set(families.FAMILIES)) | (set(FLAGS.settings) - set(SETTINGS))
  if unknown:
    raise app.UsageError(f'unknown {sorted(unknown)}: families are {list(families.FAMILIES)}, '
                         f'settings {list(SETTINGS)}')
  out = pathlib.Path(FLAGS.output_dir)
  if (out / 'report.md').exists():
    raise app.UsageError(f'{out} already holds a report; choose a new --output_dir')
  rows = [row for name in FLAGS.families for row in time_family(families.FAMILIES[name])]
  out.mkdir(parents=True, exist_ok=True)
  command = 'python experiments/host_memory_settings.py ' + ' '.join(sys.argv[1:])
  (out / 'report.json').write_text(json.dumps({'rows': rows, 'machine': harness.machine(),
                                               'command': command}, indent=2))
  table = reports.table(['family', 'setting', 'ms / step (median)', 'minor page faults / step'],
                        [[r['family'], r['setting'], f"{r['ms_per_step']:.1f}",
                          f"{r['minor_faults_per_step']:.0f}"] for r in rows])
  spread = statistics.median(max(r['slice_ms_per_step']) / min(r['slice_ms_per_step']) for r in rows)
  (out / 'report.md').write_text(
      f'# gen_jax\'s step under host allocator and dispatch settings\n\n{table}\n'
      f'Batch 64; turns of {FLAGS.slice_s} s, {FLAGS.budget_s} s a setting; the slowest turn of a '
      f'setting over its fastest, median over the rows: {spread:.2f}.\n\nCommand: `{command}`\n')
  print(f'Report: {out / "report.md"}')


if __name__ == '__main__':
  app.run(main)
