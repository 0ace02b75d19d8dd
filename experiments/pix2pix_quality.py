"""Pix2Pix, gen_jax against PyTorch on the real edges task: held-out quality after the same
wall-clock training time.

  python experiments/pix2pix_quality.py --budget_s=60 --output_dir=experiments/results/pix2pix_quality_cpu

The benchmark (experiments/benchmark.py) times steps on random batches; this asks what that speed
buys. Both sides, each in a process of the benchmark's harness (experiments/bench), train
configs/pix2pix.py's networks at a constant rate on its edges task made from MNIST's test split
(edge map → digit, 32×32 grey; the first 8,000 images train, the last 2,000 are held out): the same
batches of 64 in the same order (one epoch drawn with --seed, cycled), in turns of --slice_s
seconds until each has trained --budget_s (plus the three warm-up steps each side takes before its
clock starts). Then each side translates the held-out inputs as gen_jax evaluates (BatchNorm's
running averages, no dropout), and this process scores both alike: mean L1, PSNR and SSIM (dm-pix)
of the translation to its target, in [0, 1], before training and after. The parameter counts must
agree (the networks match). Writes report.md, report.json and translations.png (rows input |
gen_jax | PyTorch | target, the first held-out pairs). PyTorch is the optional `bench` extra.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

import numpy as np
from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dm_pix  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from experiments.bench import families, harness  # noqa: E402
from gen_jax import data  # noqa: E402
from gen_jax.evaluation import reports, translations  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float('budget_s', 60.0, 'Training wall-clock seconds for each side.')
flags.DEFINE_float('slice_s', 5.0, 'Seconds a side trains before the other takes its turn.')
flags.DEFINE_integer('num_holdout', 0, 'Held-out pairs scored; 0: all of them (2,000).')
flags.DEFINE_string('data_path', str(ROOT.parent / 'shared' / 'data' / 'mnist'),
                    'Directory of the MNIST IDX files (the 10,000-image test split).')
flags.DEFINE_integer('cores', 0, "Pin each side's process to the first N cores; 0: every core.")
flags.DEFINE_integer('seed', 0, 'Seed of both sides\' weights and of the batch order.')
flags.DEFINE_string('output_dir', str(ROOT / 'experiments' / 'results' / 'pix2pix_quality'),
                    'Report directory; refused when it already holds a report.')

FAMILY = families.FAMILIES['pix2pix']
SIDES = {'gen_jax': 'jax', 'PyTorch': 'torch'}
BATCH_SIZE = 64
SHOWN = 10   # held-out pairs in the picture


def edges_task(data_path: str, seed: int) -> tuple[list[dict[str, np.ndarray]], data.Split]:
  """An epoch of training batches (the keys the benchmark's Pix2Pix sides read) and the held-out
  pairs of configs/pix2pix.py's task on the MNIST IDX files in `data_path`."""
  config = FAMILY.build_config(BATCH_SIZE, FAMILY.base_size)
  config.data.name, config.data.path = 'idx', data_path
  dataset = data.load(**config.data)
  schedule = data.training_batches(dataset, BATCH_SIZE, seed)
  batches = [schedule(step) for step in range(schedule.steps_per_epoch)]
  return [{key: batch[key] for key in FAMILY.keys} for batch in batches], dataset.holdout


def scores(outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
  """Mean per-image L1, PSNR and SSIM of translations to their targets, all in [0, 1]."""
  outputs, targets = jnp.asarray(outputs), jnp.asarray(targets)
  return {'l1': float(jnp.mean(jnp.abs(outputs - targets))),
          'psnr': float(jnp.mean(dm_pix.psnr(targets, outputs))),
          'ssim': float(jnp.mean(dm_pix.ssim(targets, outputs)))}


def markdown(record: dict) -> str:
  rows = []
  for name, side in record['sides'].items():
    before, after = side['before'], side['after']
    rows.append([name, side['steps'], f"{side['median_steps_per_s']:.2f}",
                 f"{before['l1']:.4f} → **{after['l1']:.4f}**",
                 f"{before['psnr']:.2f} → **{after['psnr']:.2f}**",
                 f"{before['ssim']:.3f} → **{after['ssim']:.3f}**"])
  table = reports.table(['side', 'steps trained', 'median steps/s', 'held-out L1 (untrained → '
                         'trained)', 'PSNR (dB)', 'SSIM'], rows)
  machine = record['machine']
  return (f"# Pix2Pix on the edges task: held-out quality after {record['budget_s']:g} s of "
          f"training each\n\n{table}\n"
          f"gen_jax / PyTorch steps per second: **{record['ratio']:.2f}×**. "
          f"{record['num_holdout']} held-out pairs; batches of {BATCH_SIZE} from an epoch of "
          f"{record['batches']} (cycled), in turns of {record['slice_s']:g} s; parameters "
          f"{record['parameters']:,} on both sides.\n\n"
          f"Machine: {machine['cpu']}, {machine['cores']} cores; load average "
          f"{record['load_start']} at the start, {record['load_end']} at the end.\n\n"
          f"![input | gen_jax | PyTorch | target](translations.png)\n\n"
          f"Command: `{record['command']}`\n")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.budget_s <= 0 or FLAGS.slice_s <= 0:
    raise app.UsageError(f'--budget_s ({FLAGS.budget_s}) and --slice_s ({FLAGS.slice_s}) must be > 0')
  if FLAGS.num_holdout < 0:
    raise app.UsageError(f'--num_holdout={FLAGS.num_holdout}: a count of pairs, or 0 for all')
  out = pathlib.Path(FLAGS.output_dir)
  if (out / 'report.md').exists() or (out / 'report.json').exists():
    raise app.UsageError(f'{out} already holds a report; choose a new --output_dir')
  try:
    batches, holdout = edges_task(FLAGS.data_path, FLAGS.seed)
  except data.DataError as error:   # a missing or unreadable --data_path, in one line
    raise app.UsageError(f'--data_path={FLAGS.data_path}: {error}') from error
  if FLAGS.num_holdout:
    holdout = holdout.take(FLAGS.num_holdout)
  settings = dict(slice_s=FLAGS.slice_s, steps_per_dispatch=1, batch_groups=len(batches),
                  seed=FLAGS.seed, dispatch_form='auto', torch_device='cpu', style_iterations=0,
                  cores=FLAGS.cores)
  record = {'budget_s': FLAGS.budget_s, 'slice_s': FLAGS.slice_s, 'num_holdout': len(holdout),
            'batches': len(batches), 'machine': harness.machine(), 'sides': {},
            'load_start': [round(v, 2) for v in os.getloadavg()],
            'command': 'python experiments/pix2pix_quality.py ' + ' '.join(sys.argv[1:])}
  workers = {}
  try:
    for name, side in SIDES.items():
      workers[name] = harness.Worker(side, FAMILY.name, settings, label=name)
      info = workers[name].ask('build', BATCH_SIZE, FAMILY.base_size, batches)
      before = workers[name].ask('translate', holdout.inputs)
      record['sides'][name] = {'info': info, 'before': scores(before, holdout.images)}
    counts = {side['info']['parameters'] for side in record['sides'].values()}
    if len(counts) != 1:
      raise RuntimeError(f'the two sides\' networks differ: parameter counts {counts}')
    record['parameters'] = counts.pop()
    for worker in workers.values():
      worker.ask('warm_up')
    print(f'Training each side for {FLAGS.budget_s:g} s in turns of {FLAGS.slice_s:g} s', flush=True)
    slices = harness.take_turns(workers, FLAGS.budget_s, FLAGS.slice_s)
    outputs = {}
    for name, worker in workers.items():
      outputs[name] = worker.ask('translate', holdout.inputs)
      record['sides'][name].update(harness.rates(slices[name]), after=scores(outputs[name], holdout.images))
  finally:
    for worker in workers.values():
      worker.close()
  rates = [record['sides'][name]['median_steps_per_s'] for name in SIDES]
  record['ratio'] = rates[0] / rates[1]
  record['load_end'] = [round(v, 2) for v in os.getloadavg()]
  out.mkdir(parents=True, exist_ok=True)
  translations.save_rows([holdout.inputs[:SHOWN], *(outputs[name][:SHOWN] for name in SIDES),
                          holdout.images[:SHOWN]], out / 'translations.png')
  (out / 'report.json').write_text(json.dumps(record, indent=2))
  (out / 'report.md').write_text(markdown(record))
  print(markdown(record))
  print(f'Report: {out / "report.md"}')


if __name__ == '__main__':
  app.run(main)
