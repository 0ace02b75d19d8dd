"""gen_jax against PyTorch for every model family: steps per second, the ratio, peak memory, as
the batch and the image grow, in one run on one machine. Writes report.md and report.json.

  python experiments/benchmark.py --quick --output_dir=experiments/results/benchmark_cpu_quick
  python experiments/benchmark.py --output_dir=OUT --steps_per_dispatch=10 \
      --peak_flops=67e12 --peak_flops_name='H200 fp32, non-tensor'

Each family (experiments/bench/families.py) trains gen_jax's own step (its `train_step`, K =
--steps_per_dispatch steps per compiled call through gen_jax.runtime.dispatch) and the same
networks, losses and optimisers in plain eager PyTorch (experiments/torch_models), each side in its
own process, taking turns (experiments/bench/harness.py says how, and how memory is measured).
Cases: the family at its config's batch (64) and image size; the batch from --batch_sizes at that
image size; for the convolutional families the image from --image_sizes (rounded up to what the
networks take) at batch 64. For the largest batch, XLA's FLOP count of gen_jax's step gives the
achieved FLOP/s of both sides, against --peak_flops. PyTorch runs on CUDA when it is available and
JAX on its default backend. The report is rewritten after every case, so a run stopped early (or
cut by --deadline_s, after which the remaining cases are skipped) keeps what it measured.
PyTorch is the optional `bench` extra (pip install -e '.[bench]').
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from experiments.bench import families, harness, report  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list('families', [f.name for f in families.FAMILIES.values()],
                  f'Families to time, of {list(families.FAMILIES)}.')
flags.DEFINE_float('budget_s', 6.0, 'Timed training seconds per side per case.')
flags.DEFINE_float('slice_s', 1.0, 'Seconds a side trains before the other takes its turn.')
flags.DEFINE_list('batch_sizes', ['8', '32', '64', '128', '512'], 'Batch sizes of the batch sweep.')
flags.DEFINE_list('image_sizes', ['28', '64', '128'], 'Image sizes of the convolutional families.')
flags.DEFINE_integer('steps_per_dispatch', 1, "gen_jax's training steps per compiled call (K).")
flags.DEFINE_enum('dispatch_form', 'auto', ['auto', 'scan', 'unrolled'],
                  'How the K steps are compiled (auto: unrolled on CPU, scan elsewhere).')
flags.DEFINE_integer('batch_groups', 2, 'Distinct groups of K batches cycled through on each side.')
flags.DEFINE_integer('style_iterations', 10, 'L-BFGS iterations per call on both style-transfer sides.')
flags.DEFINE_integer('cores', 0, 'Pin each side\'s process to the first N cores (its threads follow); '
                     '0: every core. On a loaded machine --cores=1 measures each side\'s work per '
                     'step, robust to the load.')
flags.DEFINE_enum('matmul_precision', 'default', ['default', 'highest', 'tf32'],
                  "float32 matrix products and convolutions on a GPU: each library's default (JAX "
                  "may use TF32 where PyTorch does not for matmuls; the report says which), full "
                  'float32 on both, or TF32 on both.')
flags.DEFINE_string('torch_device', 'auto', "PyTorch's device: auto (cuda when available), cpu, cuda.")
flags.DEFINE_float('peak_flops', 0.0, 'The device\'s peak FLOP/s (e.g. 67e12 for an H200 in fp32 '
                   'without tensor cores, 990e12 dense bf16); 0: no percentage.')
flags.DEFINE_string('peak_flops_name', '', 'What --peak_flops is, for the report.')
flags.DEFINE_string('output_dir', str(ROOT / 'experiments' / 'results' / 'benchmark'),
                    'Report directory; refused when it already holds a report.')
flags.DEFINE_bool('quick', False, 'A whole sweep in a few minutes: 1 s budgets in 0.25 s slices, '
                  'batches 8 and 64, images 28 and 64 (flags given explicitly still win).')
flags.DEFINE_float('deadline_s', 0.0, 'Skip the cases not started after this many seconds; 0: none.')
flags.DEFINE_bool('headline_first', True, "Time every family's headline case before the sweeps "
                  '(fresh processes for each pass; a run cut short keeps the first table).')
flags.DEFINE_string('compilation_cache_dir', '', "JAX's persistent compilation cache for gen_jax's "
                    'side (\'\': none). Filled beforehand by --compile_only runs, one per family at once, it '
                    'lets a lent accelerator spend its minutes timing rather than compiling. Style '
                    "transfer's programs, which hold VGG's weights, are not cached.")
flags.DEFINE_bool('compile_only', False, "Only build and compile gen_jax's side of each case into "
                  '--compilation_cache_dir: no PyTorch, no timing, no report.')
flags.DEFINE_string('note', '', 'A sentence for the report (e.g. the machine was loaded).')
flags.DEFINE_integer('seed', 0, 'Seed of the weights and the random batches.')

QUICK = {'budget_s': 1.0, 'slice_s': 0.25, 'batch_sizes': ['8', '64'], 'image_sizes': ['28', '64']}
HEADLINE_BATCH = 64   # every config's train.batch_size


def plan(family: families.Family, batch_sizes: list[int], image_sizes: list[int]) -> list[dict]:
  """The family's cases, smallest (batch × pixels) first."""
  base = family.size(family.base_size)
  cases = {(HEADLINE_BATCH if family.kind != 'style' else 1, base): 'headline'}
  if family.kind != 'style':
    for batch in batch_sizes:
      cases.setdefault((batch, base), 'batch')
  if family.conv:
    for image in image_sizes:
      cases.setdefault((HEADLINE_BATCH if family.kind != 'style' else 1, family.size(image)), 'image')
  largest = max(batch for batch, image in cases if image == base)
  return [{'family': family.name, 'batch_size': b, 'image_size': s, 'conv': family.conv,
           'headline': kind == 'headline', 'sweep': kind, 'largest_batch': b == largest and s == base
           and family.kind != 'style'}
          for (b, s), kind in sorted(cases.items(), key=lambda item: item[0][0] * item[0][1] ** 2)]


def run_family(family: families.Family, cases: list[dict], settings: dict, record: dict,
               save, deadline: float) -> None:
  workers: dict[str, harness.Worker] = {}
  previous_jax_peak = 0
  try:
    for case in cases:
      record['cases'].append(case)
      if deadline and time.monotonic() > deadline:
        case['skipped'] = 'not started: --deadline_s passed'
        continue
      try:
        if not workers:
          workers = {'gen_jax': harness.Worker('jax', family.name, settings),
                     'torch': harness.Worker('torch', family.name, settings)}
          record.setdefault('gen_jax', workers['gen_jax'].info)
          record.setdefault('torch', workers['torch'].info)
        for worker in workers.values():
          worker.ask('build', case['batch_size'], case['image_size'])
        for worker in workers.values():
          worker.ask('warm_up')
        slices = harness.take_turns(workers, settings['budget_s'], settings['slice_s'])
        for name, worker in workers.items():
          case[name] = {**harness.rates(slices[name]), **worker.ask('finish'), 'slices': slices[name]}
        if case['largest_batch']:
          case['gen_jax']['flops_per_step'] = workers['gen_jax'].ask('flops')
        peak = case['gen_jax'].get('device_peak_bytes')
        if peak is not None:   # JAX's peak is the process's: a reading that did not rise bounds it
          case['gen_jax']['device_peak_is_bound'] = peak <= previous_jax_peak
          previous_jax_peak = max(previous_jax_peak, peak)
        case['ratio'] = case['gen_jax']['median_steps_per_s'] / case['torch']['median_steps_per_s']
        print(f"{family.name:>14s} batch {case['batch_size']:4d} image {case['image_size']:3d}: "
              f"gen_jax {case['gen_jax']['median_steps_per_s']:9.2f} steps/s, PyTorch "
              f"{case['torch']['median_steps_per_s']:9.2f} steps/s, {case['ratio']:.2f}×", flush=True)
      except harness.CaseError as error:
        case['skipped'] = f'failed: {error}'
        print(f"{family.name} batch {case['batch_size']} image {case['image_size']}: {error}", flush=True)
        if any(not w.process.is_alive() for w in workers.values()):
          for worker in workers.values():
            worker.close()
          workers = {}
      save()
  finally:
    for worker in workers.values():
      worker.close()


def compile_family(family: families.Family, cases: list[dict], settings: dict,
                   deadline: float) -> None:
  """Compiles gen_jax's side of each case (and the FLOP count's single step) into the cache."""
  worker = harness.Worker('jax', family.name, settings)
  try:
    for case in cases:
      if deadline and time.monotonic() > deadline:
        print(f"{family.name} batch {case['batch_size']} image {case['image_size']}: not compiled "
              '(--deadline_s passed)', flush=True)
        continue
      started = time.monotonic()
      worker.ask('build', case['batch_size'], case['image_size'])
      worker.ask('warm_up')
      if case['largest_batch']:
        worker.ask('flops')
      print(f"{family.name:>14s} batch {case['batch_size']:4d} image {case['image_size']:3d}: "
            f'compiled in {time.monotonic() - started:.1f} s', flush=True)
  finally:
    worker.close()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for name, value in QUICK.items():
    if FLAGS.quick and not FLAGS[name].present:
      setattr(FLAGS, name, value)
  unknown = set(FLAGS.families) - set(families.FAMILIES)
  if unknown:
    raise app.UsageError(f'unknown families {sorted(unknown)}; choose from {list(families.FAMILIES)}')
  if FLAGS.compile_only and not FLAGS.compilation_cache_dir:
    raise app.UsageError('--compile_only fills --compilation_cache_dir: name one')
  out = pathlib.Path(FLAGS.output_dir)
  if not FLAGS.compile_only and ((out / 'report.md').exists() or (out / 'report.json').exists()):
    raise app.UsageError(f'{out} already holds a report; choose a new --output_dir')
  settings = {name: FLAGS[name].value for name in (
      'budget_s', 'slice_s', 'steps_per_dispatch', 'dispatch_form', 'batch_groups',
      'style_iterations', 'cores', 'matmul_precision', 'torch_device', 'peak_flops', 'peak_flops_name',
      'compilation_cache_dir', 'note', 'seed')}
  settings.update(batch_sizes=[int(b) for b in FLAGS.batch_sizes],
                  image_sizes=[int(s) for s in FLAGS.image_sizes], quick=FLAGS.quick)
  record = {
      'settings': settings, 'machine': harness.machine(), 'cases': [],
      'load_start': [round(v, 2) for v in os.getloadavg()],
      'memory_measure': harness.__doc__.split('Memory, per case: ')[1].replace('\n', ' ').strip(),
      'family_notes': {f.name: f.note for f in families.FAMILIES.values()
                       if f.name in FLAGS.families and f.note},
      'command': 'python experiments/benchmark.py ' + ' '.join(sys.argv[1:]),
  }

  def save():
    record['load_end'] = [round(v, 2) for v in os.getloadavg()]
    (out / 'report.json').write_text(json.dumps(record, indent=2))
    (out / 'report.md').write_text(report.markdown(record))

  deadline = time.monotonic() + FLAGS.deadline_s if FLAGS.deadline_s else 0.0
  if FLAGS.compile_only:
    for name in FLAGS.families:
      family = families.FAMILIES[name]
      compile_family(family, plan(family, settings['batch_sizes'], settings['image_sizes']),
                     settings, deadline)
    return
  out.mkdir(parents=True, exist_ok=True)
  plans = {}
  for name in FLAGS.families:
    family = families.FAMILIES[name]
    plans[name] = plan(family, settings['batch_sizes'], settings['image_sizes'])
    if not family.ready:   # one line in the report for the whole family
      headline = next(case for case in plans.pop(name) if case['headline'])
      headline['skipped'] = f'{family.note} (its place: experiments/bench/families.py)'
      record['cases'].append(headline)
  # Every family's headline case first (fresh processes), then the sweeps, so that a run cut
  # short by --deadline_s still has the whole first table.
  passes = ([[c for c in cases if c['headline']] for cases in plans.values()],
            [[c for c in cases if not c['headline']] for cases in plans.values()])
  if not FLAGS.headline_first:
    passes = (list(plans.values()),)
  for cases_by_family in passes:
    for name, cases in zip(plans, cases_by_family):
      if cases:
        run_family(families.FAMILIES[name], cases, settings, record, save, deadline)
  save()
  print(report.markdown(record))
  print(f'Report: {out / "report.md"}')


if __name__ == '__main__':
  app.run(main)
