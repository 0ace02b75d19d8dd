"""gen_jax's VAE against the same VAE in PyTorch: train steps per second and held-out negative
ELBO after the same wall-clock training budget, side by side in one run.

  python experiments/bench_vae_vs_torch.py --budget_seconds=90

Both sides train the course assignment's convolutional VAE (configs/vae.py: conv 32, 32, 64/2,
dense 128, 2-D latent, mirrored decoder; Bernoulli likelihood; Adam at the config's rate) on the
same batches (gen_jax's BatchSchedule over the first 8,000 MNIST images) from the same initial
weights. The JAX side is the project's own code path: gen_jax.data, the VAEFamily train step
compiled by gen_jax.runtime.parallel on one device, and the family's ELBO terms over the 2,000 held-out
images through gen_jax.evaluation.evaluator. The PyTorch side is experiments/vae_torch.py, in plain eager
PyTorch, with PyTorch's own padding; before training, its Keras-padded twin is checked to compute
the JAX model's encoder and decoder outputs from the same weights.

Each side runs in its own process with every core (XLA's default; torch.set_num_threads for
PyTorch), both with gen_jax.cpu_speed.host_memory's allocator setting, and the two take turns in slices
until each has trained for --budget_seconds, so that load from other processes on the machine
falls on both alike. --jax_devices=2 splits the host into two XLA CPU devices for the JAX side,
which then runs data-parallel; `taskset -c 1` with XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
compares the two on one core. JAX compile time and a few warm-up steps on each side are outside
the budget; the compile time is reported. Held-out negative ELBO is the mean over the held-out
images of a one-sample estimate (nats), with a fixed seed on each side.

Writes report.json, report.md and training_curves.png to a new directory under --out.
"""

from __future__ import annotations

import abc
import json
import math
import multiprocessing
import os
import pathlib
import platform
import sys
import time
from typing import Any

import jax
import numpy as np
import torch
from absl import app, flags, logging

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from configs import vae  # noqa: E402
from experiments import vae_torch  # noqa: E402
from gen_jax import data, registry  # noqa: E402
from gen_jax.cpu_speed import host_memory  # noqa: E402
from gen_jax.evaluation import figures  # noqa: E402
from gen_jax.runtime import parallel  # noqa: E402
from gen_jax.evaluation.evaluator import Evaluator  # noqa: E402
from gen_jax.families.base import DataSpec  # noqa: E402
from gen_jax.models.vae import VAE  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_float('budget_seconds', 60.0, 'Training wall-clock seconds per side.')
flags.DEFINE_float('slice_seconds', 5.0, 'The sides take turns training this long at a time.')
flags.DEFINE_integer('batch_size', 64, 'Training batch size (both sides).')
flags.DEFINE_string('data_path', '../shared/data/mnist', 'Directory of the MNIST IDX files.')
flags.DEFINE_integer('jax_devices', 1,
                     'XLA CPU devices the JAX side splits the host into, the batch sharded over '
                     'them (gen_jax\'s data parallelism; launch.sh --host-devices does the same for runs).')
flags.DEFINE_integer('warmup_steps', 5, 'Untimed training steps on each side before the budget.')
flags.DEFINE_integer('seed', 0, 'Seed of the initial weights, the batches and the noise.')
flags.DEFINE_string('out', 'experiments/results/vae_vs_torch',
                    'Report directory (a new one, suffixed -2, -3, ... if it exists).')

SIDES = ('jax', 'torch')
PROBE_EXAMPLES = 16
CURVE_WINDOW = 50


def benchmark_config(data_path: str, batch_size: int, seed: int, devices: int):
  """configs/vae.py on the MNIST IDX files, on `devices` devices."""
  config = vae.get_config()
  config.data.name = 'idx'
  config.data.path = data_path
  config.train.batch_size = batch_size
  config.train.num_devices = devices
  config.seed = seed
  data.validate(config)
  registry.get(config.model.name).validate(config)
  optim = config.optim
  if optim.name != 'adam' or optim.decay_every_epochs or optim.grad_clip_norm or optim.weight_decay:
    raise ValueError('the PyTorch side implements plain Adam only; config.optim asks for more')
  return config


class Side(abc.ABC):
  """One side of the benchmark, living in its own process; `serve` calls its commands."""

  step: int
  neg_elbo: list[float]  # training negative ELBO of every step so far

  @abc.abstractmethod
  def describe(self) -> dict[str, Any]:
    """Versions, threads and the like, for the report."""

  @abc.abstractmethod
  def probe(self) -> dict[str, np.ndarray]:
    """From the initial weights: posterior parameters of the first PROBE_EXAMPLES held-out
    images and the decoder's logits at the posterior means, NHWC."""

  @abc.abstractmethod
  def train(self, seconds: float) -> tuple[int, float]:
    """Trains until `seconds` have passed (at least one step); returns (steps, seconds taken)."""

  @abc.abstractmethod
  def evaluate(self) -> dict[str, float]:
    """Held-out negative ELBO, reconstruction and KL terms (nats, means over the images)."""

  def warm_up(self, steps: int) -> None:
    for _ in range(steps):
      self.train(0.0)

  def results(self) -> dict[str, Any]:
    return {'holdout': self.evaluate(), 'steps': self.step, 'train_neg_elbo': self.neg_elbo}

  def commands(self) -> dict[str, Any]:
    return {'probe': self.probe, 'train': self.train, 'warm_up': self.warm_up,
            'results': self.results}


class JaxSide(Side):
  """gen_jax's own path: data, VAEFamily.train_step via parallel.compile_train_step, Evaluator."""

  def __init__(self, config):
    self.dataset = data.load(**config.data)
    self.batches = data.BatchSchedule(self.dataset.train, config.train.batch_size, config.seed)
    self.family = registry.get(config.model.name)(
        config, DataSpec.of(self.dataset, self.batches))
    self.mesh = parallel.make_mesh(config.train.num_devices)
    self.evaluator = Evaluator(self.mesh, config.eval.batch_size)
    # The same keys as gen_jax.train.Run.
    init_rng, self.eval_rng, _ = jax.random.split(jax.random.PRNGKey(config.seed), 3)
    self.state = parallel.replicate(self.family.init_state(init_rng), self.mesh)
    self.initial_params = jax.device_get(self.state.params)
    started = time.perf_counter()
    self.step_fn = parallel.compile_train_step(self.family.train_step, self.mesh).lower(
        self.state, self._batch(0)).compile()
    self.compile_seconds = time.perf_counter() - started
    self.step = 0
    self.neg_elbo: list[float] = []

  def describe(self) -> dict[str, Any]:
    return {'compile_seconds': self.compile_seconds, 'devices': self.mesh.size,
            'threads': len(os.sched_getaffinity(0)), 'version': f'jax {jax.__version__}',
            'train_examples': len(self.dataset.train),
            'holdout_examples': len(self.dataset.holdout)}

  def commands(self) -> dict[str, Any]:
    return {**super().commands(), 'initial_params': lambda: self.initial_params}

  def _batch(self, step: int):
    return parallel.shard_batch(self.batches(step), self.mesh)

  def probe(self) -> dict[str, np.ndarray]:
    images = self.dataset.holdout.images[:PROBE_EXAMPLES]
    params = {'params': self.initial_params}
    mean, logvar = self.family.model.apply(params, images, method=VAE.encode)
    logits = self.family.model.apply(params, mean, method=VAE.decode)
    return {'mean': np.asarray(mean), 'logvar': np.asarray(logvar), 'logits': np.asarray(logits)}

  def train(self, seconds: float) -> tuple[int, float]:
    # Steps are dispatched asynchronously; each step's metrics are read only after the next step
    # is queued, so the device never waits on the host.
    started, steps, previous = time.perf_counter(), 0, None
    while True:
      self.state, metrics = self.step_fn(self.state, self._batch(self.step))
      self.step += 1
      steps += 1
      if previous is not None:
        self.neg_elbo.append(float(previous['neg_elbo']))
      previous = metrics
      if time.perf_counter() - started >= seconds:
        break
    self.neg_elbo.append(float(previous['neg_elbo']))
    return steps, time.perf_counter() - started

  def evaluate(self) -> dict[str, float]:
    family = self.family

    def terms(state, batch, rng):
      t = family.elbo_terms(state.params, batch['image'], rng)
      return {'neg_elbo': t['reconstruction'] + t['kl'], **t}

    return self.evaluator.mean(terms, self.state, self.dataset.holdout, self.eval_rng)


class TorchSide(Side):
  """The same model in eager PyTorch (experiments/vae_torch.py), on the same batches.

  It trains with PyTorch's own padding; its Keras-padded twin, from the same weights, is what
  `probe` compares with the JAX model.
  """

  def __init__(self, config, initial_params):
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    self.config = config
    self.initial_params = initial_params
    self.dataset = data.load(**config.data)
    self.batches = data.BatchSchedule(self.dataset.train, config.train.batch_size, config.seed)
    self.model = self._model('pytorch')
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.learning_rate,
                                      betas=(config.optim.b1, config.optim.b2))
    self.noise = torch.Generator().manual_seed(config.seed)
    self.step = 0
    self.neg_elbo: list[float] = []

  def _model(self, padding: str) -> vae_torch.TorchVAE:
    m = self.config.model
    model = vae_torch.TorchVAE(tuple(m.conv_features), m.hidden_dim, m.latent_dim,
                               self.dataset.image_shape, padding)
    vae_torch.load_flax_params(model, self.initial_params)
    return model

  def describe(self) -> dict[str, Any]:
    return {'threads': torch.get_num_threads(), 'version': f'torch {torch.__version__}'}

  def _images(self, images: np.ndarray):
    return torch.from_numpy(images).permute(0, 3, 1, 2)

  def probe(self) -> dict[str, np.ndarray]:
    model = self._model('keras')
    with torch.no_grad():
      mean, logvar = model.encode(self._images(self.dataset.holdout.images[:PROBE_EXAMPLES]))
      logits = model.decode(mean)
    return {'mean': mean.numpy(), 'logvar': logvar.numpy(),
            'logits': logits.permute(0, 2, 3, 1).numpy()}

  def _noise(self, count: int):
    return torch.randn(count, self.config.model.latent_dim, generator=self.noise)

  def train(self, seconds: float) -> tuple[int, float]:
    beta = self.config.model.beta
    started, steps = time.perf_counter(), 0
    while True:
      x = self._images(self.batches(self.step)['image'])
      reconstruction, kl = vae_torch.negative_elbo_terms(self.model, x, self._noise(len(x)))
      loss = (reconstruction + beta * kl).mean()
      self.optimizer.zero_grad(set_to_none=True)
      loss.backward()
      self.optimizer.step()
      self.neg_elbo.append((reconstruction + kl).mean().item())
      self.step += 1
      steps += 1
      if time.perf_counter() - started >= seconds:
        return steps, time.perf_counter() - started

  def evaluate(self) -> dict[str, float]:
    holdout, size = self.dataset.holdout.images, self.config.eval.batch_size
    noise = torch.Generator().manual_seed(self.config.seed + 1)
    totals = {'neg_elbo': 0.0, 'reconstruction': 0.0, 'kl': 0.0}
    with torch.no_grad():
      for start in range(0, len(holdout), size):
        x = self._images(holdout[start:start + size])
        eps = torch.randn(len(x), self.config.model.latent_dim, generator=noise)
        reconstruction, kl = vae_torch.negative_elbo_terms(self.model, x, eps)
        for name, values in (('neg_elbo', reconstruction + kl), ('reconstruction', reconstruction),
                             ('kl', kl)):
          totals[name] += float(values.double().sum())
    return {name: total / len(holdout) for name, total in totals.items()}


def serve(side: str, config, connection, initial_params=None) -> None:
  """A worker process: builds one side, then runs the (command, arguments) messages it is sent."""
  host_memory.retain_freed_memory()   # both sides alike, before either allocates
  if side == 'jax' and config.train.num_devices > 1:
    jax.config.update('jax_num_cpu_devices', config.train.num_devices)
  try:
    worker = JaxSide(config) if side == 'jax' else TorchSide(config, initial_params)
    commands = worker.commands()
    connection.send(('ok', worker.describe()))
    while (message := connection.recv())[0] != 'stop':
      command, arguments = message
      connection.send(('ok', commands[command](*arguments)))
  except Exception as error:  # Reported to the parent, which stops the benchmark.
    connection.send(('error', f'{side}: {type(error).__name__}: {error}'))
    raise


class Worker:
  """The parent's handle on one side's process."""

  def __init__(self, side: str, config, initial_params=None):
    context = multiprocessing.get_context('spawn')
    self.connection, child = context.Pipe()
    self.process = context.Process(target=serve, args=(side, config, child, initial_params),
                                   daemon=True)
    self.process.start()
    self.info = self._reply()

  def _reply(self):
    status, result = self.connection.recv()
    if status != 'ok':
      raise RuntimeError(result)
    return result

  def ask(self, command: str, *arguments):
    self.connection.send((command, arguments))
    return self._reply()

  def close(self) -> None:
    if self.process.is_alive():
      self.connection.send(('stop', ()))
    self.process.join(timeout=30)


def check_same_function(jax_probe, torch_probe) -> float:
  """The largest difference of the sides' probe outputs; raises if they differ."""
  worst = 0.0
  for name, expected in jax_probe.items():
    np.testing.assert_allclose(torch_probe[name], expected, rtol=1e-4, atol=1e-4,
                               err_msg=f'PyTorch and JAX {name} differ from the same weights')
    worst = max(worst, float(np.max(np.abs(torch_probe[name] - expected))))
  return worst


def run_benchmark(config, budget: float, slice_seconds: float, warmup_steps: int) -> dict[str, Any]:
  workers: dict[str, Worker] = {}
  try:
    logging.info('Starting the JAX side (data, model, compilation)')
    workers['jax'] = Worker('jax', config)
    initial_params = workers['jax'].ask('initial_params')
    logging.info('JAX compiled in %.1f s; starting the PyTorch side',
                 workers['jax'].info['compile_seconds'])
    workers['torch'] = Worker('torch', config, initial_params)
    probe_difference = check_same_function(workers['jax'].ask('probe'),
                                           workers['torch'].ask('probe'))
    for worker in workers.values():
      worker.ask('warm_up', warmup_steps)
    slices: dict[str, list[tuple[int, float]]] = {side: [] for side in SIDES}
    load: list[float] = []
    rounds = max(1, math.ceil(budget / slice_seconds))
    for round_index in range(rounds):
      # Each side trains up to its share of the budget so far (a slice that ran over, by up to a
      # step, shortens the next), and the sides alternate who goes first.
      target = budget * (round_index + 1) / rounds
      for side in SIDES if round_index % 2 == 0 else SIDES[::-1]:
        trained = sum(seconds for _, seconds in slices[side])
        if trained < target:
          slices[side].append(tuple(workers[side].ask('train', target - trained)))
      load.append(os.getloadavg()[0])
      logging.info('Round %d/%d (load average %.1f): %s', round_index + 1, rounds, load[-1],
                   ', '.join(f'{side} {_rate(slices[side]):.2f} steps/s' for side in SIDES))
    logging.info('Evaluating both sides on the held-out images')
    results = {side: workers[side].ask('results') for side in SIDES}
  finally:
    for worker in workers.values():
      worker.close()
  sides = {}
  for side in SIDES:
    steps, seconds = (sum(column) for column in zip(*slices[side]))
    sides[side] = {**workers[side].info, 'timed_steps': steps, 'timed_seconds': seconds,
                   'steps_per_second': steps / seconds,
                   'fastest_slice_steps_per_second': max(_rate([piece]) for piece in slices[side]),
                   'slices': slices[side], 'total_steps': results[side]['steps'],
                   'holdout': results[side]['holdout'],
                   'train_neg_elbo': results[side]['train_neg_elbo']}
  return {'sides': sides, 'rounds': rounds, 'probe_max_abs_difference': probe_difference,
          'load_average': {'mean': float(np.mean(load)), 'max': float(np.max(load))}}


def _rate(slices: list[tuple[int, float]]) -> float:
  """Steps per second over (steps, seconds) slices."""
  return sum(steps for steps, _ in slices) / sum(seconds for _, seconds in slices)


def markdown_report(report: dict[str, Any]) -> str:
  jax_side, torch_side = report['sides']['jax'], report['sides']['torch']
  s = report['settings']
  rows = [
      ('train steps / s', 'steps_per_second', '{:.2f}'),
      ('train steps / s, fastest slice', 'fastest_slice_steps_per_second', '{:.2f}'),
      ('timed steps', 'timed_steps', '{:d}'),
      ('timed seconds', 'timed_seconds', '{:.1f}'),
      ('steps in all (with warm-up)', 'total_steps', '{:d}'),
  ]
  lines = [
      '# gen_jax VAE vs PyTorch: same architecture, data, initial weights and wall-clock budget',
      '',
      f'{s["budget_seconds"]:g} s of training per side on {s["data"]} (batch {s["batch_size"]}), '
      f'in {report["rounds"]} alternating slices; {s["warmup_steps"]} untimed warm-up steps each. '
      f'One-minute load average during the run: {report["load_average"]["mean"]:.1f} '
      f'(max {report["load_average"]["max"]:.1f}) on {report["cores"]} cores, of which the '
      f'benchmark\'s running side accounts for about {report["cores"]}; the rest is other '
      'processes competing for the cores. Each side\'s fastest slice is the nearest to a quiet '
      'machine.',
      '',
      '| | JAX (gen_jax) | PyTorch | JAX / PyTorch |',
      '| --- | ---: | ---: | ---: |',
  ]
  for label, key, form in rows:
    lines.append(f'| {label} | {form.format(jax_side[key])} | {form.format(torch_side[key])} | '
                 f'{jax_side[key] / torch_side[key]:.2f}× |')
  for name in ('neg_elbo', 'reconstruction', 'kl'):
    j, t = jax_side['holdout'][name], torch_side['holdout'][name]
    lines.append(f'| held-out {name.replace("_", " ")} (nats) | {j:.2f} | {t:.2f} | {j - t:+.2f} |')
  lines += [
      f'| compile seconds (outside the budget) | {jax_side["compile_seconds"]:.1f} | — | |',
      f'| threads | {jax_side["threads"]} (XLA) | {torch_side["threads"]} | |',
      '',
      f'Speed ratio (JAX / PyTorch steps per second): **{report["speed_ratio"]:.2f}×** over the '
      f'whole budget, {report["fastest_slice_speed_ratio"]:.2f}× between the fastest slices. '
      f'Held-out negative ELBO, JAX minus PyTorch: **{report["neg_elbo_difference"]:+.2f} nats** '
      '(one-sample ELBO, mean over the held-out images; negative favours JAX).',
      '',
      'Both sides start from the same weights. With Keras/Flax \'SAME\' padding the PyTorch '
      'model computes the JAX model\'s function: largest difference of their encoder and decoder '
      f'outputs {report["probe_max_abs_difference"]:.1e} over {PROBE_EXAMPLES} held-out images. '
      'It trains with PyTorch\'s own symmetric padding in its two stride-2 layers (taps one pixel '
      'apart; the exact alignment would cost PyTorch explicit padding and cropping). '
      f'{jax_side["version"]}, {torch_side["version"]}, JAX on {jax_side["devices"]} device(s); '
      f'{report["machine"]}.',
      '',
      f'Command: `{report["command"]}`',
      '',
      '![training curves](training_curves.png)',
      '',
  ]
  return '\n'.join(lines)


def smoothed_curves(report: dict[str, Any]) -> list[dict[str, float]]:
  """Training negative ELBO per step, averaged over windows of up to CURVE_WINDOW steps."""
  curves = {side: np.asarray(report['sides'][side]['train_neg_elbo']) for side in SIDES}
  window = max(1, min(CURVE_WINDOW, min(len(values) for values in curves.values()) // 5))
  records: dict[int, dict[str, float]] = {}
  for side, values in curves.items():
    for start in range(0, len(values) - window + 1, window):
      step = start + window
      records.setdefault(step, {'step': step})[f'{side} train neg ELBO'] = float(
          values[start:start + window].mean())
  return [records[step] for step in sorted(records)]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = benchmark_config(FLAGS.data_path, FLAGS.batch_size, FLAGS.seed, FLAGS.jax_devices)
  report = run_benchmark(config, FLAGS.budget_seconds, FLAGS.slice_seconds, FLAGS.warmup_steps)
  jax_side, torch_side = report['sides']['jax'], report['sides']['torch']
  report.update(
      speed_ratio=jax_side['steps_per_second'] / torch_side['steps_per_second'],
      fastest_slice_speed_ratio=(jax_side['fastest_slice_steps_per_second'] /
                                 torch_side['fastest_slice_steps_per_second']),
      neg_elbo_difference=jax_side['holdout']['neg_elbo'] - torch_side['holdout']['neg_elbo'],
      settings={'budget_seconds': FLAGS.budget_seconds, 'slice_seconds': FLAGS.slice_seconds,
                'batch_size': FLAGS.batch_size, 'warmup_steps': FLAGS.warmup_steps,
                'seed': FLAGS.seed,
                'data': f'the IDX images in {FLAGS.data_path} ({jax_side["train_examples"]:,} '
                        f'training, {jax_side["holdout_examples"]:,} held out)'},
      cores=len(os.sched_getaffinity(0)),
      machine=f'{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores',
      command=' '.join(['python experiments/bench_vae_vs_torch.py', *sys.argv[1:]]))
  out = figures.unique_dir(pathlib.Path(FLAGS.out))
  figures.save_curves(smoothed_curves(report), [f'{side} train neg ELBO' for side in SIDES],
                      out / 'training_curves.png',
                      'training negative ELBO per step (window means), same batches',
                      'negative ELBO (nats per image)')
  (out / 'report.md').write_text(markdown_report(report))
  (out / 'report.json').write_text(json.dumps(report, indent=2))
  print(markdown_report(report).split('\n![')[0])
  print(f'Report: {out}/report.md')


if __name__ == '__main__':
  app.run(main)
