"""gen_jax's Pix2Pix training step against the same networks in PyTorch, side by side in one run.

  python experiments/bench_pix2pix_vs_torch.py [--budget_s=120] [--slice_s=10] [--num_holdout=0]
  XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 1 python experiments/bench_pix2pix_vs_torch.py --torch_threads=1

Both sides train configs/pix2pix.py's networks on its `edges` task (edge map of an MNIST digit →
the digit, 32×32 grey): the U-Net (features 32, 64, 128, 128, 128; BatchNorm on the inner levels,
dropout 0.5 on the three innermost decoder levels, tanh) and the 1-layer PatchGAN (14×14 scores);
least squares plus 100 × L1 to the target on [-1, 1] images; Adam 2e-4 (0.5, 0.999) for each
network at a constant rate (the config's linear decay is switched off, as PyTorch has none); the
same batches of 64 of the first 8,000 images of MNIST's test split, in the same order. One PyTorch
step is the JAX step's round: the generator's forward pass once, a critic step on the detached
translation, a generator step through the just-updated critic. The JAX side is the project's own
code: Pix2PixFamily.train_step compiled by gen_jax.runtime.parallel.compile_train_step.

The two take turns in slices of `slice_s` seconds until each has trained for `budget_s`, so that
load from other jobs falls on both alike; the first step of each (JAX's compilation, PyTorch's
first allocations) is timed apart, outside the budget. Speed is the median over a side's slices
of its steps per second. Then both generators in inference mode (BatchNorm running averages,
dropout off) translate the held-out pairs (the last 2,000 images, or the first --num_holdout), and
their held-out L1 (mean |translation - target| in [0, 1]) is reported beside the untrained one.
The parameter counts of both sides must agree (the check that the architectures match). Writes
report.md, report.json and translations.png (rows input | gen_jax | PyTorch | target, the first 8
held-out pairs) to --output_dir, and prints the table.

Both sides use every core by default and gen_jax.cpu_speed.host_memory's allocator setting (they
share the process). On a shared machine PyTorch's OpenMP threads suffer more from contention than
XLA's, so the load averages are reported; the second command compares the two single-threaded.
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import pathlib
import statistics
import sys

import numpy as np
from absl import app, flags, logging

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from configs import pix2pix  # noqa: E402
from gen_jax import data  # noqa: E402
from gen_jax.cpu_speed import host_memory  # noqa: E402
from gen_jax.evaluation import figures  # noqa: E402
from gen_jax.families.base import DataSpec  # noqa: E402
from gen_jax.families.pix2pix import Pix2PixFamily  # noqa: E402
from gen_jax.models.pix2pix import DROPOUT_RATE, receptive_field, score_map_size  # noqa: E402
from gen_jax.runtime import parallel  # noqa: E402
from experiments import side_by_side  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float('budget_s', 120.0, 'Training wall-clock seconds for each side.')
flags.DEFINE_float('slice_s', 10.0, 'Seconds a side trains before the other takes its turn.')
flags.DEFINE_integer('num_holdout', 0, 'Held-out pairs the L1 is measured on; 0 = all (2,000).')
flags.DEFINE_string('data_path', str(ROOT.parent / 'shared' / 'data' / 'mnist'),
                    'Directory of the MNIST IDX files (the 10,000-image test split).')
flags.DEFINE_string('output_dir', str(ROOT / 'experiments' / 'results' / 'bench_pix2pix'),
                    'Report directory (a new one, suffixed -2, -3, ... if it exists).')
flags.DEFINE_integer('seed', 0, 'Seed of both sides and of the batch order.')
flags.DEFINE_integer('torch_threads', 0, "PyTorch's intra-op threads; 0 = its default (every core).")

LEAKY_SLOPE = 0.2
SHOWN = 8                  # held-out pairs in the picture
TRANSLATION_BATCH = 256
LOSS_KEYS = ('d_loss', 'g_loss', 'l1')


def _conv(in_channels: int, out_channels: int, stride: int, bias: bool) -> nn.Conv2d:
  return nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=stride, padding=1, bias=bias)


class TorchUNet(nn.Module):
  """The JAX UNet (gen_jax.models.pix2pix) with BatchNorm: stride-2 4×4 convolutions down, BatchNorm
  on the inner encoder levels (not the first, not the bottleneck), LeakyReLU 0.2 (ReLU at the
  bottleneck); stride-2 4×4 transposed convolutions up, each with BatchNorm, dropout on the
  innermost `dropout_levels`, ReLU, then concatenated with the encoder level of its size."""

  def __init__(self, features, in_channels: int, out_channels: int, dropout_levels: int):
    super().__init__()
    depth = len(features)
    self.encoder = nn.ModuleList()
    channels = in_channels
    for level, width in enumerate(features):
      inner = 0 < level < depth - 1
      layers = [_conv(channels, width, 2, bias=not inner)] + ([nn.BatchNorm2d(width)] if inner else [])
      layers.append(nn.LeakyReLU(LEAKY_SLOPE) if level < depth - 1 else nn.ReLU())
      self.encoder.append(nn.Sequential(*layers))
      channels = width
    self.decoder = nn.ModuleList()
    for level in reversed(range(depth - 1)):
      layers = [nn.ConvTranspose2d(channels, features[level], 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(features[level])]
      if depth - 2 - level < dropout_levels:
        layers.append(nn.Dropout(DROPOUT_RATE))
      layers.append(nn.ReLU())
      self.decoder.append(nn.Sequential(*layers))
      channels = 2 * features[level]   # concatenated with the skip
    self.output = nn.Sequential(nn.ConvTranspose2d(channels, out_channels, 4, 2, padding=1), nn.Tanh())

  def forward(self, x):
    skips = [x := block(x) for block in self.encoder]
    for block, skip in zip(self.decoder, reversed(skips[:-1])):
      x = torch.cat([block(x), skip], dim=1)
    return self.output(x)


class TorchPatchGAN(nn.Module):
  """The JAX PatchDiscriminator with BatchNorm: (condition, image) on channels, `num_layers`
  stride-2 4×4 convolutions and one of stride 1 (widths features·min(2^layer, 8), BatchNorm from
  the second, LeakyReLU 0.2), then a stride-1 4×4 convolution to one score per patch."""

  def __init__(self, features: int, num_layers: int, channels: int):
    super().__init__()
    layers = []
    for layer in range(num_layers + 1):
      width = features * min(2 ** layer, 8)
      layers.append(_conv(channels, width, 2 if layer < num_layers else 1, bias=layer == 0))
      if layer:
        layers.append(nn.BatchNorm2d(width))
      layers.append(nn.LeakyReLU(LEAKY_SLOPE))
      channels = width
    layers.append(_conv(channels, 1, 1, bias=True))
    self.model = nn.Sequential(*layers)

  def forward(self, image, condition):
    return self.model(torch.cat([condition, image], dim=1))[:, 0]


class Side(side_by_side.Side):
  """One implementation: trains step by step on the shared batches, then translates."""

  def translate(self, inputs: np.ndarray) -> np.ndarray:
    """Inference-mode translations in [0, 1] of (N, H, W, C) inputs in [0, 1]."""
    raise NotImplementedError

  def parameter_counts(self) -> tuple[int, int]:   # the generator's, the discriminator's
    raise NotImplementedError


class JaxSide(Side):
  name = 'gen_jax (JAX)'

  def __init__(self, config, dataset: data.Dataset, batches: data.BatchSchedule):
    super().__init__(batches)
    self.family = Pix2PixFamily(config, DataSpec.of(dataset, batches))
    self.mesh = parallel.make_mesh(config.train.num_devices)
    self.state = parallel.replicate(self.family.init_state(jax.random.PRNGKey(config.seed)), self.mesh)
    self.step_fn = parallel.compile_train_step(self.family.train_step, self.mesh)
    self.rng = jax.random.PRNGKey(config.seed + 1)

  def step(self) -> None:
    batch = parallel.shard_batch(self.batches(self.steps), self.mesh)
    self.state, metrics = self.step_fn(self.state, batch)
    # As the training loop does: every step's metrics come back to the host.
    self.last_losses = {k: float(v) for k, v in jax.device_get(metrics).items() if k in LOSS_KEYS}
    self.steps += 1

  def translate(self, inputs: np.ndarray) -> np.ndarray:
    return self.family.translate(self.state, inputs, self.rng, dropout=False)

  def parameter_counts(self) -> tuple[int, int]:
    return tuple(sum(leaf.size for leaf in jax.tree_util.tree_leaves(player.params))
                 for player in (self.state.generator, self.state.critic))


class TorchSide(Side):
  name = 'PyTorch'

  def __init__(self, config, channels: int, batches: data.BatchSchedule):
    super().__init__(batches)
    torch.manual_seed(config.seed)
    m = config.model
    self.l1_weight = m.l1_weight
    self.generator = TorchUNet(tuple(m.generator.features), channels, channels, m.generator.dropout_levels)
    self.critic = TorchPatchGAN(m.discriminator.features, m.discriminator.num_layers, 2 * channels)
    self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=config.optim_g.learning_rate,
                                        betas=(config.optim_g.b1, config.optim_g.b2))
    self.optimizer_d = torch.optim.Adam(self.critic.parameters(), lr=config.optim_d.learning_rate,
                                        betas=(config.optim_d.b1, config.optim_d.b2))

  @staticmethod
  def _tensor(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) in [0, 1] → (N, C, H, W) in [-1, 1]."""
    return (torch.from_numpy(images).permute(0, 3, 1, 2) * 2 - 1).contiguous()

  def _critic_grads(self, enabled: bool) -> None:
    for parameter in self.critic.parameters():
      parameter.requires_grad_(enabled)

  def step(self) -> None:
    batch = self.batches(self.steps)
    inputs, targets = self._tensor(batch['input']), self._tensor(batch['image'])
    fake = self.generator(inputs)
    # Critic: real and fake in separate calls (each normalised by its own batch statistics).
    self._critic_grads(True)
    self.optimizer_d.zero_grad(set_to_none=True)
    d_loss = (torch.mean((self.critic(targets, inputs) - 1) ** 2)
              + torch.mean(self.critic(fake.detach(), inputs) ** 2))
    d_loss.backward()
    self.optimizer_d.step()
    # Generator, through the updated critic (whose parameters need no gradients here).
    self._critic_grads(False)
    self.optimizer_g.zero_grad(set_to_none=True)
    adversarial = torch.mean((self.critic(fake, inputs) - 1) ** 2)
    l1 = torch.mean(torch.abs(fake - targets))
    g_loss = adversarial + self.l1_weight * l1
    g_loss.backward()
    self.optimizer_g.step()
    self.last_losses = {'d_loss': d_loss.item(), 'g_loss': g_loss.item(), 'l1': l1.item() / 2}
    self.steps += 1

  @torch.no_grad()
  def translate(self, inputs: np.ndarray) -> np.ndarray:
    self.generator.eval()
    parts = [self.generator(self._tensor(inputs[start:start + TRANSLATION_BATCH]))
             for start in range(0, len(inputs), TRANSLATION_BATCH)]
    self.generator.train()
    return ((torch.cat(parts).permute(0, 2, 3, 1).numpy() + 1) / 2).clip(0, 1)

  def parameter_counts(self) -> tuple[int, int]:
    return tuple(sum(p.numel() for p in net.parameters()) for net in (self.generator, self.critic))


def benchmark_config(data_path: str, seed: int):
  config = pix2pix.get_config()
  config.seed = seed
  config.data.name = 'idx'
  config.data.path = data_path
  config.data.holdout_fraction = 0.2   # the first 8,000 images train, the last 2,000 are held out
  for optim in (config.optim_g, config.optim_d):
    optim.linear_decay_fraction = 0.0  # a constant rate, as on the PyTorch side
  Pix2PixFamily.validate(config)
  return config


def holdout_l1(translations: np.ndarray, targets: np.ndarray) -> float:
  return float(np.mean(np.abs(translations - targets)))


def markdown(results: dict) -> str:
  rows = results['sides']
  lines = [
      '# Pix2Pix: gen_jax vs the same networks in PyTorch',
      '',
      f"Task `edges` (edge map → digit, {results['image_size']}×{results['image_size']}); same data "
      f"({results['num_train']} training pairs from MNIST, batch {results['batch_size']}, same order), "
      f"same wall-clock budget ({results['budget_s']:.0f} s of training each, in alternating "
      f"{results['slice_s']:.0f} s slices). Held-out L1: mean |translation - target| in [0, 1] on "
      f"{results['num_holdout']} held-out pairs, generators in inference mode (BatchNorm running "
      'averages, dropout off).',
      '',
      '| implementation | G params | D params | steps | steps/s (median of slices) | steps/s (overall) '
      '| first step (s) | final d_loss | final g_loss | final train L1 | held-out L1 untrained '
      '| held-out L1 |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for row in rows:
    losses = row['final_losses']
    lines.append(
        f"| {row['name']} | {row['generator_params']:,} | {row['critic_params']:,} | {row['steps']} | "
        f"{row['median_steps_per_second']:.2f} | {row['steps_per_second']:.2f} | "
        f"{row['warmup_seconds']:.2f} | {losses['d_loss']:.4f} | {losses['g_loss']:.4f} | "
        f"{losses['l1']:.4f} | {row['untrained_holdout_l1']:.4f} | {row['holdout_l1']:.4f} |")
  lines += [
      '',
      f"Speed ratio (gen_jax / PyTorch, median steps per second): **{results['speed_ratio']:.2f}×**; "
      f"held-out L1 gen_jax {rows[0]['holdout_l1']:.4f} vs PyTorch {rows[1]['holdout_l1']:.4f} "
      f"(the input itself as the translation: {results['identity_holdout_l1']:.4f}).",
      '',
      f"PatchGAN: {results['score_map']}×{results['score_map']} scores of "
      f"{results['patch']}×{results['patch']} patches.",
      '',
      f"Machine: {results['machine']}. Load average at start / end: {results['load_start']} / "
      f"{results['load_end']}.",
      '',
      f"Command: `{results['command']}`",
      '',
      'Rows: input | gen_jax | PyTorch | target (the first held-out pairs).',
      '',
      '![](translations.png)',
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
  holdout = dataset.holdout.take(FLAGS.num_holdout)   # all when 0
  sides = [JaxSide(config, dataset, batches), TorchSide(config, dataset.train.images.shape[-1], batches)]
  counts = [side.parameter_counts() for side in sides]
  for side, (g_params, d_params) in zip(sides, counts):
    print(f'{side.name:>14s}: generator {g_params:,} parameters, discriminator {d_params:,}', flush=True)
  if counts[0] != counts[1]:
    raise SystemExit(f'the two sides differ in parameter counts: {counts}; the architectures do not match')
  untrained = [holdout_l1(side.translate(holdout.inputs), holdout.images) for side in sides]
  print('held-out L1 untrained: ' + ', '.join(f'{s.name} {v:.4f}' for s, v in zip(sides, untrained)))

  load_start, load_end = side_by_side.take_turns(sides, FLAGS.budget_s, FLAGS.slice_s)

  rows, translations = [], []
  for side, untrained_l1, (g_params, d_params) in zip(sides, untrained, counts):
    translated = side.translate(holdout.inputs)
    translations.append(translated[:SHOWN])
    losses = side.last_losses
    if not all(np.isfinite(v) for v in losses.values()):
      logging.warning('%s ended with non-finite losses: %s', side.name, losses)
    rows.append({'name': side.name, 'generator_params': g_params, 'critic_params': d_params,
                 'steps': side.steps, 'median_steps_per_second': statistics.median(side.slice_rates),
                 'slice_steps_per_second': side.slice_rates,
                 'steps_per_second': (side.steps - 1) / side.train_seconds,   # after the first
                 'train_seconds': side.train_seconds, 'warmup_seconds': side.warmup_seconds,
                 'final_losses': {k: losses[k] for k in LOSS_KEYS},
                 'untrained_holdout_l1': untrained_l1,
                 'holdout_l1': holdout_l1(translated, holdout.images)})
  shown = holdout.take(SHOWN)
  figures.save_image_grid(np.concatenate([shown.inputs, *translations, shown.images]),
                          output_dir / 'translations.png', columns=SHOWN, scale=3)
  size = config.data.image_size
  results = {
      'budget_s': FLAGS.budget_s, 'slice_s': FLAGS.slice_s, 'image_size': size,
      'num_train': len(dataset.train), 'num_holdout': len(holdout),
      'batch_size': config.train.batch_size, 'task': config.data.pairs.task, 'sides': rows,
      'speed_ratio': rows[0]['median_steps_per_second'] / rows[1]['median_steps_per_second'],
      'identity_holdout_l1': holdout_l1(holdout.inputs, holdout.images),
      'score_map': score_map_size(size, config.model.discriminator.num_layers),
      'patch': min(receptive_field(config.model.discriminator.num_layers), size),
      'machine': side_by_side.machine(),
      'load_start': [round(v, 2) for v in load_start], 'load_end': [round(v, 2) for v in load_end],
      'command': 'python ' + ' '.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
  }
  (output_dir / 'report.json').write_text(json.dumps(results, indent=2))
  (output_dir / 'report.md').write_text(report := markdown(results))
  print(report)
  print(f'written to {output_dir}')


if __name__ == '__main__':
  app.run(main)
