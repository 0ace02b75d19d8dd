"""Forward, input-gradient and kernel-gradient times of the models' convolutions.

  python experiments/conv_pass_times.py [--models=vae,dcgan,pix2pix,cyclegan] [--batch=64] [--rounds=8]

Where the train steps lose to PyTorch on the CPU: each convolution of the VAE (its encoder's, and
its decoder's transposed ones), of the DCGAN critic, of Pix2Pix's U-Net and PatchGAN and of
CycleGAN's ResNet generator, as the modules build them from configs/vae.py, configs/dcgan.py,
configs/pix2pix.py and configs/cyclegan.py, is timed pass by
pass three ways: through gen_jax's layers
(gen_jax.cpu_speed.convolution, with the forms of gen_jax.cpu_speed.conv_forms, and
gen_jax.cpu_speed.conv_transpose), through XLA's own (`lax.conv_general_dilated`, flax's
`ConvTranspose`), both compiled as gen_jax's steps are (gen_jax.cpu_speed.compiler_options), and, when
PyTorch is installed (the `bench` extra), through PyTorch's autograd on NCHW tensors, as the course
code runs. Every pass of every side takes turns
for --rounds rounds, so drift in the machine's speed falls on all alike; the report gives medians.
Writes report.json and report.md to a new directory under --out.

PyTorch pads symmetrically where Flax's 'SAME' puts a stride-2 layer's extra row on one side only;
the outputs have the same size and cost the same.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import statistics
import sys
import time
from typing import Callable

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import linen as nn  # noqa: E402

from configs import cyclegan, dcgan, pix2pix, vae  # noqa: E402
from gen_jax.cpu_speed import compiler_options, host_memory  # noqa: E402
from gen_jax.evaluation import figures, reports  # noqa: E402
from gen_jax.models.cyclegan import ResnetGenerator  # noqa: E402
from gen_jax.models.gan import Discriminator  # noqa: E402
from gen_jax.models.pix2pix import PatchDiscriminator, UNet  # noqa: E402
from gen_jax.models.vae import VAE  # noqa: E402
from gen_jax.cpu_speed import convolution  # noqa: E402
from gen_jax.cpu_speed.conv_transpose import SubPixelConvTranspose  # noqa: E402

FLAGS = flags.FLAGS
MODELS = ('vae', 'dcgan', 'pix2pix', 'cyclegan')
flags.DEFINE_multi_enum('models', ['vae', 'dcgan'], MODELS, 'Models whose convolutions are timed.')
flags.DEFINE_integer('batch', 64, 'Examples per pass (both benchmarks train with 64).')
flags.DEFINE_integer('rounds', 8, 'Turns each pass gets.')
flags.DEFINE_integer('repeats', 8, 'Calls timed in one turn.')
flags.DEFINE_string('out', 'experiments/results/conv_pass_times',
                    'Report directory (a new one, suffixed -2, -3, ... if it exists).')

PASSES = ('forward', 'input gradient', 'kernel gradient')
LABELS = {'jax': 'gen_jax', 'xla': 'XLA conv', 'torch': 'PyTorch'}


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """One convolution of a model: its input size, channels, window, stride and padding, and whether
  it is a strided transposed convolution."""
  model: str
  size: int
  in_features: int
  out_features: int
  kernel: int
  stride: int
  padding: str | tuple[tuple[int, int], tuple[int, int]]
  torch_padding: int
  transposed: bool = False

  @property
  def name(self) -> str:
    return (f'{self.model} {self.in_features}→{self.out_features} {self.kernel}×{self.kernel} '
            f'stride {self.stride} on {self.size}×{self.size}')

  @property
  def output_size(self) -> int:
    if self.transposed:   # 'SAME': each input pixel becomes stride × stride output pixels
      return self.size * self.stride
    return (self.size + 2 * self.torch_padding - self.kernel) // self.stride + 1

  def flops(self, batch: int) -> float:
    """Multiply-adds × 2 of one pass (each pass costs the same)."""
    taps = self.kernel ** 2 * self.in_features * self.out_features
    pixels = self.size if self.transposed else self.output_size
    return 2.0 * batch * pixels ** 2 * taps

  def apply(self, side: str) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """(NHWC input, kernel) ↦ the layer's output, through gen_jax's modules ('jax') or XLA's own
    convolutions ('xla'): flax's ConvTranspose for a transposed layer, lax's for the others."""
    strides = (self.stride, self.stride)
    if self.transposed:
      module = (SubPixelConvTranspose(self.out_features, self.kernel, strides, self.padding,
                                      use_bias=False) if side == 'jax' else
                nn.ConvTranspose(self.out_features, (self.kernel,) * 2, strides, self.padding,
                                 use_bias=False))
      return lambda x, w: module.apply({'params': {'kernel': w}}, x)
    convolve = convolution.conv_general_dilated if side == 'jax' else jax.lax.conv_general_dilated
    return lambda x, w: convolve(x, w, strides, self.padding,
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _recorded_convolutions(model: str, module: nn.Module, *inputs, **options) -> list[ConvLayer]:
  """The convolutions that `module` applies to `inputs` (with keyword `options`), read while it is
  initialised: its
  `nn.Conv` layers, its stride-1 transposed ones (a convolution with the kernel flipped), and its
  'SAME' strided transposed ones."""
  layers = []

  def record(next_call, args, kwargs, context):
    layer, x = context.module, args[0] if args else None
    if context.method_name == '__call__' and isinstance(layer, (nn.Conv, SubPixelConvTranspose)):
      kernel = layer.kernel_size if isinstance(layer.kernel_size, int) else layer.kernel_size[0]
      stride = layer.strides if isinstance(layer.strides, int) else layer.strides[0]
      padding = layer.padding
      if not isinstance(padding, str):
        padding = tuple(map(tuple, padding))
      torch_padding = ((kernel - 1) // 2 if padding == 'SAME' else 0 if padding == 'VALID'
                       else padding[0][0])
      transposed = isinstance(layer, SubPixelConvTranspose)
      if not transposed or stride == 1 or padding == 'SAME':
        layers.append(ConvLayer(f'{model} transposed' if transposed else model, x.shape[1],
                                x.shape[-1], layer.features, kernel, stride, padding,
                                torch_padding, transposed and stride > 1))
    return next_call(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(functools.partial(module.init, **options), jax.random.PRNGKey(0), *inputs)
  return layers


def _vae_layers() -> list[ConvLayer]:
  config = vae.get_config()
  image_shape = (config.data.image_size, config.data.image_size, config.data.channels)
  model = VAE(config.model.conv_features, config.model.hidden_dim, config.model.latent_dim,
              image_shape)
  return _recorded_convolutions('vae', model, jnp.zeros((1,) + image_shape), jax.random.PRNGKey(0))


def _dcgan_layers() -> list[ConvLayer]:
  config = dcgan.get_config()
  images = jnp.zeros((1, config.data.image_size, config.data.image_size, config.data.channels))
  critic_config = config.model.discriminator
  critic = Discriminator(critic_config.conv_features, critic_config.dense_features,
                         critic_config.batch_norm)
  return _recorded_convolutions('dcgan critic', critic, images)


def _pix2pix_layers() -> list[ConvLayer]:
  config = pix2pix.get_config()
  m = config.model
  images = jnp.zeros((1, config.data.image_size, config.data.image_size, config.data.channels))
  generator = UNet(tuple(m.generator.features), config.data.channels, m.generator.normalisation,
                   m.generator.dropout_levels)
  critic = PatchDiscriminator(m.discriminator.features, m.discriminator.num_layers,
                              m.discriminator.normalisation)
  return (_recorded_convolutions('pix2pix u-net', generator, images, train=False)
          + _recorded_convolutions('pix2pix patchgan', critic, images, images, train=False))


def _cyclegan_layers() -> list[ConvLayer]:
  """One generator's (its critics are Pix2Pix's PatchGAN without the condition)."""
  config = cyclegan.get_config()
  g = config.model.generator
  images = jnp.zeros((1, config.data.image_size, config.data.image_size, config.data.channels))
  generator = ResnetGenerator(config.data.channels, g.features, g.num_downsamplings, g.num_blocks,
                              g.normalisation)
  return _recorded_convolutions('cyclegan generator', generator, images, train=False)


def model_layers(models) -> list[ConvLayer]:
  """The convolutions of the `models`, as their configs build them; the first of each shape."""
  builders = {'vae': _vae_layers, 'dcgan': _dcgan_layers, 'pix2pix': _pix2pix_layers,
              'cyclegan': _cyclegan_layers}
  layers, shapes = [], set()
  for layer in (layer for model in models for layer in builders[model]()):
    shape = dataclasses.replace(layer, model='')
    if shape not in shapes:
      shapes.add(shape)
      layers.append(layer)
  return layers


def jax_passes(layer: ConvLayer, batch: int, side: str) -> dict[str, Callable[[], object]]:
  """Compiled JAX passes (`ConvLayer.apply(side)`) on random NHWC data, each a no-argument call."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, layer.size, layer.size, layer.in_features)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(layer.kernel, layer.kernel, layer.in_features,
                                   layer.out_features)), jnp.float32)
  g = jnp.asarray(rng.normal(size=(batch, layer.output_size, layer.output_size,
                                   layer.out_features)), jnp.float32)

  conv = layer.apply(side)
  functions = {
      'forward': (conv, (x, w)),
      'input gradient': (lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0], (x, w, g)),
      'kernel gradient': (lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0], (x, w, g)),
  }
  options = compiler_options.for_devices(jax.devices())
  calls = {}
  for name, (function, arguments) in functions.items():
    compiled = jax.jit(function, compiler_options=options).lower(*arguments).compile()
    calls[name] = lambda compiled=compiled, arguments=arguments: jax.block_until_ready(
        compiled(*arguments))
  return calls


def torch_passes(layer: ConvLayer, batch: int) -> dict[str, Callable[[], object]]:
  """PyTorch's passes on random NCHW data: autograd computes only the gradient asked for."""
  import torch  # the `bench` extra
  import torch.nn.functional as F

  generator = torch.Generator().manual_seed(0)
  x = torch.randn(batch, layer.in_features, layer.size, layer.size, generator=generator,
                  requires_grad=True)
  if layer.transposed:
    w = torch.randn(layer.in_features, layer.out_features, layer.kernel, layer.kernel,
                    generator=generator, requires_grad=True)
    output_padding = layer.output_size - ((layer.size - 1) * layer.stride
                                          - 2 * layer.torch_padding + layer.kernel)

    def conv():
      return F.conv_transpose2d(x, w, stride=layer.stride, padding=layer.torch_padding,
                                output_padding=output_padding)
  else:
    w = torch.randn(layer.out_features, layer.in_features, layer.kernel, layer.kernel,
                    generator=generator, requires_grad=True)

    def conv():
      return F.conv2d(x, w, stride=layer.stride, padding=layer.torch_padding)

  y = conv()
  g = torch.randn(y.shape, generator=generator)

  def forward():
    with torch.no_grad():
      return conv()

  return {'forward': forward,
          'input gradient': lambda: torch.autograd.grad(y, x, g, retain_graph=True),
          'kernel gradient': lambda: torch.autograd.grad(y, w, g, retain_graph=True)}


def torch_available() -> bool:
  try:
    import torch  # noqa: F401
  except ImportError:
    return False
  return True


def time_in_turns(calls: dict[tuple, Callable[[], object]], rounds: int,
                  repeats: int) -> dict[tuple, float]:
  """Median milliseconds per call of each, over `rounds` turns of `repeats` calls.

  The order of the turns is shuffled in every round: a call that follows PyTorch's runs while
  PyTorch's threads still spin waiting for work, which a fixed order would charge to one pass.
  """
  samples: dict[tuple, list[float]] = {key: [] for key in calls}
  for call in calls.values():
    call()   # warm-up
  order = np.random.default_rng(0)
  keys = list(calls)
  for round_index in range(rounds):
    for index in order.permutation(len(keys)):
      key, call = keys[index], calls[keys[index]]
      started = time.perf_counter()
      for _ in range(repeats):
        call()
      samples[key].append(1000 * (time.perf_counter() - started) / repeats)
    print(f'round {round_index + 1}/{rounds}', flush=True)
  return {key: statistics.median(values) for key, values in samples.items()}


def rows_of(layers: list[ConvLayer], times: dict[tuple, float], batch: int,
            sides: list[str]) -> list[dict]:
  rows = []
  for layer in layers:
    for pass_name in PASSES:
      row = {'layer': layer.name, 'pass': pass_name}
      for side in sides:
        ms = times[(side, layer.name, pass_name)]
        row[f'{side}_ms'] = ms
        row[f'{side}_gflops'] = layer.flops(batch) / ms / 1e6
        row[f'{side}_over_forward'] = ms / times[(side, layer.name, 'forward')]
      for side in sides[1:]:
        row[f'{side}_over_jax'] = row[f'{side}_ms'] / row['jax_ms']
      rows.append(row)
  return rows


def markdown(rows: list[dict], sides: list[str], command: str) -> str:
  header = ['layer', 'pass']
  for side in sides:
    header += [f'{LABELS[side]} ms', f'{LABELS[side]} GFLOP/s', f'{LABELS[side]} / its forward']
  header += [f'{LABELS[side]} / {LABELS["jax"]} time' for side in sides[1:]]
  body = []
  for row in rows:
    cells = [row['layer'], row['pass']]
    for side in sides:
      cells += [f"{row[f'{side}_ms']:.2f}", f"{row[f'{side}_gflops']:.0f}",
                f"{row[f'{side}_over_forward']:.2f}×"]
    cells += [f"{row[f'{side}_over_jax']:.2f}×" for side in sides[1:]]
    body.append(cells)
  missing = '' if 'torch' in sides else (
      '\nPyTorch is not installed (`pip install -e .[bench]`), so only JAX was timed.\n')
  return (f'# Convolution passes: {", ".join(LABELS[side] for side in sides)}\n\n'
          f'{reports.table(header, body)}\nBatch {FLAGS.batch}; medians of {FLAGS.rounds} turns '
          f'of {FLAGS.repeats} calls; jax {jax.__version__}, {len(jax.devices())} device(s).\n'
          f'{missing}\nCommand: `{command}`\n')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for name in ('batch', 'rounds', 'repeats'):
    if FLAGS[name].value < 1:
      raise app.UsageError(f'--{name}={FLAGS[name].value}: must be at least 1')
  host_memory.keep_step_memory_mapped()
  layers = model_layers(FLAGS.models)
  sides = ['jax', 'xla'] + (['torch'] if torch_available() else [])
  builders = {'jax': functools.partial(jax_passes, side='jax'),
              'xla': functools.partial(jax_passes, side='xla'), 'torch': torch_passes}
  calls = {}
  for layer in layers:
    for side in sides:
      for pass_name, call in builders[side](layer, FLAGS.batch).items():
        calls[(side, layer.name, pass_name)] = call
  times = time_in_turns(calls, FLAGS.rounds, FLAGS.repeats)
  rows = rows_of(layers, times, FLAGS.batch, sides)
  command = 'python experiments/conv_pass_times.py ' + ' '.join(repr(a) for a in sys.argv[1:])
  text = markdown(rows, sides, command)
  out = figures.unique_dir(ROOT / FLAGS.out)
  (out / 'report.json').write_text(json.dumps({'command': command, 'batch': FLAGS.batch,
                                               'rows': rows}, indent=2))
  (out / 'report.md').write_text(text)
  print(text + f'\nReport: {out / "report.md"}')


if __name__ == '__main__':
  app.run(main)
