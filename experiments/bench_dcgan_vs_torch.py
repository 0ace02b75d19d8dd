"""gen_jax's DCGAN against the course notebook's PyTorch DCGAN, side by side in one run.

  python experiments/bench_dcgan_vs_torch.py [--budget_s=120] [--slice_s=10] [--num_samples=2000]
  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 1 python experiments/bench_dcgan_vs_torch.py --torch_threads=1

Both sides train the same networks (configs/dcgan.py; the notebook's `Generator` and
`Discriminator`, verbatim) with the same losses and optimisers on the same data — the first
8,000 images of MNIST's test split, scaled to [-1, 1] — in the same batches of 64, in the same
order, for the same wall-clock budget. They take turns in slices of `slice_s` seconds until each
has used its budget, so background load on a shared machine falls on both alike. The first step
of each side (JAX's compilation, PyTorch's first allocations) is timed apart and not charged to
the budget.

Then each generator (in inference mode) draws `num_samples` samples, measured against the 2,000
held-out images in the feature space of the project's digit classifier (gen_jax.train.digit_classifier):
FID, KID, precision/recall, class entropy. The same figures for 2,000 real training images give
the floor. Writes report.md, report.json and each side's samples to --output_dir, and prints the
table.

Both sides use every core by default, and both run with gen_jax.cpu_speed.host_memory's allocator setting
(they share the process). On a machine shared with other jobs, PyTorch's OpenMP
threads lose far more to the contention than XLA's (its steps per second can drop tenfold), so the
load averages are reported beside the figures; the second command above compares the two
single-threaded, which measures each implementation's work per step and is robust to the load.
"""

from __future__ import annotations

import json
import logging as std_logging
import pathlib
import sys

import numpy as np
from absl import app, flags, logging

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from configs import dcgan  # noqa: E402
from gen_jax import data, train  # noqa: E402
from gen_jax.cpu_speed import host_memory  # noqa: E402
from gen_jax.evaluation import figures, sample_metrics  # noqa: E402
from gen_jax.runtime import parallel  # noqa: E402
from experiments import side_by_side  # noqa: E402
from gen_jax.families.base import DataSpec  # noqa: E402
from gen_jax.families.gan import GANFamily  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float('budget_s', 120.0, 'Training wall-clock seconds for each side.')
flags.DEFINE_float('slice_s', 10.0, 'Seconds a side trains before the other takes its turn.')
flags.DEFINE_integer('num_samples', 2000, 'Samples drawn from each generator for the metrics.')
flags.DEFINE_string('data_path', str(ROOT.parent / 'shared' / 'data' / 'mnist'),
                    'Directory of the MNIST IDX files (the 10,000-image test split).')
flags.DEFINE_string('output_dir', str(ROOT / 'experiments' / 'results' / 'dcgan_vs_torch'),
                    'Report directory (a new one, suffixed -2, -3, ... if it exists).')
flags.DEFINE_integer('seed', 0, 'Seed of both sides and of the batch order.')
flags.DEFINE_integer('torch_threads', 0, "PyTorch's intra-op threads; 0 = its default (every core).")

SHOWN_METRICS = ('fid', 'kid', 'precision', 'recall', 'coverage', 'class_entropy')


# The course notebook's DCGAN (002_*.txt), unchanged but for the latent size argument.
class TorchGenerator(nn.Module):

  def __init__(self, latent_dim: int):
    super().__init__()
    self.model = nn.Sequential(
        nn.Linear(latent_dim, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(True),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(True),
        nn.ConvTranspose2d(64, 1, kernel_size=4, stride=2, padding=1), nn.Tanh())

  def forward(self, z):
    return self.model(z)


class TorchDiscriminator(nn.Module):

  def __init__(self):
    super().__init__()
    self.model = nn.Sequential(
        nn.Conv2d(1, 64, kernel_size=4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(64, 128, kernel_size=4, stride=2, padding=1), nn.BatchNorm2d(128),
        nn.LeakyReLU(0.2, inplace=True), nn.Flatten(), nn.Linear(128 * 7 * 7, 1), nn.Sigmoid())

  def forward(self, img):
    return self.model(img)


class Side(side_by_side.Side):
  """One implementation: trains step by step on the shared batches, then samples."""

  def samples(self, num: int) -> np.ndarray:
    raise NotImplementedError


class JaxSide(Side):
  name = 'gen_jax (JAX)'

  def __init__(self, config, dataset: data.Dataset, batches: data.BatchSchedule):
    super().__init__(batches)
    self.family = GANFamily(config, DataSpec.of(dataset, batches))
    self.mesh = parallel.make_mesh(config.train.num_devices)
    self.state = parallel.replicate(self.family.init_state(jax.random.PRNGKey(config.seed)), self.mesh)
    self.step_fn = parallel.compile_train_step(self.family.train_step, self.mesh)
    self.seed = config.seed

  def step(self) -> None:
    batch = parallel.shard_batch(self.batches(self.steps), self.mesh)
    self.state, metrics = self.step_fn(self.state, batch)
    # As the training loop does: every step's metrics come back to the host.
    self.last_losses = {k: float(v) for k, v in jax.device_get(metrics).items() if k in ('d_loss', 'g_loss')}
    self.steps += 1

  def samples(self, num: int) -> np.ndarray:
    return self.family.sample(self.state, jax.random.PRNGKey(self.seed + 1), num)


class TorchSide(Side):
  name = 'PyTorch (course notebook)'

  def __init__(self, config, batches: data.BatchSchedule):
    super().__init__(batches)
    torch.manual_seed(config.seed)
    self.latent_dim = config.model.latent_dim
    self.generator = TorchGenerator(self.latent_dim)
    self.discriminator = TorchDiscriminator()
    self.criterion = nn.BCELoss()
    optim = config.optim_g
    self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=optim.learning_rate,
                                        betas=(optim.b1, optim.b2))
    optim = config.optim_d
    self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=optim.learning_rate,
                                        betas=(optim.b1, optim.b2))

  def step(self) -> None:
    """The notebook's `train_dcgan` inner loop, on the shared batch."""
    images = torch.from_numpy(self.batches(self.steps)['image']).permute(0, 3, 1, 2) * 2 - 1
    real_labels = torch.ones(images.size(0), 1)
    fake_labels = torch.zeros(images.size(0), 1)
    self.optimizer_d.zero_grad()
    real_loss = self.criterion(self.discriminator(images), real_labels)
    z = torch.randn(images.size(0), self.latent_dim)
    fake_images = self.generator(z)
    fake_loss = self.criterion(self.discriminator(fake_images.detach()), fake_labels)
    d_loss = real_loss + fake_loss
    d_loss.backward()
    self.optimizer_d.step()
    self.optimizer_g.zero_grad()
    g_loss = self.criterion(self.discriminator(fake_images), real_labels)
    g_loss.backward()
    self.optimizer_g.step()
    self.last_losses = {'d_loss': d_loss.item(), 'g_loss': g_loss.item()}
    self.steps += 1

  @torch.no_grad()
  def samples(self, num: int) -> np.ndarray:
    self.generator.eval()
    images = self.generator(torch.randn(num, self.latent_dim))
    self.generator.train()
    return ((images.permute(0, 2, 3, 1).numpy() + 1) / 2).clip(0, 1)


def benchmark_config(data_path: str, seed: int):
  config = dcgan.get_config()
  config.seed = seed
  config.data.name = 'idx'
  config.data.path = data_path
  config.data.holdout_fraction = 0.2   # the first 8,000 images train, the last 2,000 are held out
  config.eval.epoch_samples = 0
  GANFamily.validate(config)
  return config


def measure(digits, samples: np.ndarray, holdout: data.Split, seed: int) -> dict:
  report = sample_metrics.sample_quality(digits, samples, holdout, seed=seed)
  return {k: report[k] for k in SHOWN_METRICS}


def markdown(results: dict) -> str:
  rows = results['sides']
  lines = [
      '# DCGAN: gen_jax vs the course notebook in PyTorch',
      '',
      f"Same data ({results['num_train']} MNIST training images, batch {results['batch_size']}), same "
      f"wall-clock budget ({results['budget_s']:.0f} s of training each, in alternating "
      f"{results['slice_s']:.0f} s slices); FID and the other metrics on {results['num_samples']} "
      f"samples against the {results['num_holdout']} held-out images, in the digit classifier's "
      'feature space.',
      '',
      '| implementation | steps | steps/s | first step (s) | ' + ' | '.join(SHOWN_METRICS) + ' |',
      '| --- | ---: | ---: | ---: | ' + ' | '.join('---:' for _ in SHOWN_METRICS) + ' |',
  ]
  for row in rows:
    lines.append(f"| {row['name']} | {row['steps']} | {row['steps_per_second']:.2f} | "
                 f"{row['warmup_seconds']:.2f} | " + ' | '.join(f"{row['metrics'][k]:.4g}" for k in SHOWN_METRICS)
                 + ' |')
  real = results['real_train_images']
  lines.append("| real training images (floor) | | | | " + ' | '.join(f'{real[k]:.4g}' for k in SHOWN_METRICS)
               + ' |')
  lines += [
      '',
      f"Speed ratio (gen_jax / PyTorch steps per second): **{results['speed_ratio']:.2f}×**; "
      f"FID gen_jax {rows[0]['metrics']['fid']:.3f} vs PyTorch {rows[1]['metrics']['fid']:.3f}.",
      '',
      f"Machine: {results['machine']}. Load average at start / end: {results['load_start']} / "
      f"{results['load_end']}.",
      '',
      '| gen_jax samples | PyTorch samples |',
      '| --- | --- |',
      '| ![](samples_jax.png) | ![](samples_torch.png) |',
      '',
  ]
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  host_memory.retain_freed_memory()   # for both sides, before either allocates
  # Orbax reports every step of every save at INFO; keep its warnings only.
  logging.get_absl_logger().addFilter(
      lambda record: '/orbax/' not in record.pathname or record.levelno >= std_logging.WARNING)
  output_dir = figures.unique_dir(pathlib.Path(FLAGS.output_dir))   # never over an earlier report
  if FLAGS.torch_threads:
    torch.set_num_threads(FLAGS.torch_threads)
  config = benchmark_config(FLAGS.data_path, FLAGS.seed)
  dataset = data.load(**config.data)
  batches = data.BatchSchedule(dataset.train, config.train.batch_size, config.seed)
  digits = train.digit_classifier(config)   # trained once by the training loop when missing
  sides = [JaxSide(config, dataset, batches), TorchSide(config, batches)]
  load_start, load_end = side_by_side.take_turns(sides, FLAGS.budget_s, FLAGS.slice_s)

  rows = []
  for side, tag in zip(sides, ('jax', 'torch')):
    samples = side.samples(FLAGS.num_samples)
    figures.save_image_grid(samples[:64], output_dir / f'samples_{tag}.png', columns=8)
    # Steps after the first, over the time they took.
    rows.append({'name': side.name, 'steps': side.steps,
                 'steps_per_second': (side.steps - 1) / side.train_seconds,
                 'train_seconds': side.train_seconds, 'warmup_seconds': side.warmup_seconds,
                 'final_losses': side.last_losses,
                 'metrics': measure(digits, samples, dataset.holdout, config.seed)})
  real = dataset.train.images[:len(dataset.holdout)]
  results = {
      'budget_s': FLAGS.budget_s, 'slice_s': FLAGS.slice_s, 'num_samples': FLAGS.num_samples,
      'num_train': len(dataset.train), 'num_holdout': len(dataset.holdout),
      'batch_size': config.train.batch_size, 'sides': rows,
      'speed_ratio': rows[0]['steps_per_second'] / rows[1]['steps_per_second'],
      'real_train_images': measure(digits, real, dataset.holdout, config.seed),
      'classifier_holdout_accuracy': digits.holdout_accuracy,
      'machine': side_by_side.machine(),
      'load_start': [round(v, 2) for v in load_start], 'load_end': [round(v, 2) for v in load_end],
  }
  (output_dir / 'report.json').write_text(json.dumps(results, indent=2))
  report = markdown(results)
  (output_dir / 'report.md').write_text(report)
  print(report)
  print(f'written to {output_dir}')


if __name__ == '__main__':
  app.run(main)
