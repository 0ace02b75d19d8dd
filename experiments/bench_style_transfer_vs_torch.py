"""gen_jax's style transfer against the same transfer written as in PyTorch's neural-style tutorial.

  python experiments/bench_style_transfer_vs_torch.py [--size=64] [--iterations=20] [--rounds=3]
      [--torch_threads=0] [--output=report.json]

Both sides optimise the same picture by L-BFGS on the same function: VGG19 with the same RANDOM
filters (gen_jax.models.style_transfer.random_params: no download; the speed does not depend on
the weights' values), max pooling, torchvision's input normalisation, content at conv4_2, style at
conv1_1 … conv5_1 (Gram matrices divided by H·W·C, equal layer weights summing to 1), content
weight 1, style weight 1e6, no total variation; skimage's chelsea painted with coffee, the content
fitted to --size, the same content and style arrays on both sides, both starting from the content.

gen_jax: `gen_jax.families.style_transfer.StyleTransfer`, optax L-BFGS with its zoom line search,
all --iterations in one compiled dispatch, on the pixels themselves clamped to [0, 1] at its end
(image_range = clamp, the nearest to the tutorial's; the project's default optimises logits). PyTorch, the tutorial's
form: the VGG layers in an nn.Sequential with loss taps after the chosen layers,
`torch.optim.LBFGS([image])` (learning rate 1, no line search: one loss evaluation an
iteration) stepped with a closure that clamps the image before each evaluation, --iterations
iterations in one `step`. So the two do the same number of L-BFGS iterations, not of loss
evaluations: gen_jax's line search may evaluate more than once an iteration, which is counted in
its time. The first run of each side (JAX's compilation, PyTorch's first allocations) is left
out; then the sides take turns, --rounds runs each, and each side's time is its median run.
Prints the time per iteration of each, their ratio and the final losses.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from configs import style_transfer as style_config  # noqa: E402
from gen_jax.data import images, vgg19_weights  # noqa: E402
from gen_jax.families import style_transfer as family  # noqa: E402
from gen_jax.models import style_transfer as vgg  # noqa: E402


def gen_jax_transfer(size: int, iterations: int) -> family.StyleTransfer:
  config = style_config.get_config()
  config.max_size, config.num_scales, config.image_range = size, 1, 'clamp'
  config.model.features, config.model.pooling, config.model.tv_weight = 'random', 'max', 0.0
  config.optimiser.iterations_per_dispatch = config.train.num_steps = iterations
  layers = tuple(config.model.content_layers) + tuple(config.model.style_layers)
  params, weights_format = family.vgg_parameters('random', '', config.seed, layers)
  return family.StyleTransfer(config, params, weights_format, images.read_image(config.content),
                              [images.read_image(config.style)], None)


class Tap(nn.Module):
  """The tutorial's loss module: passes its input on and records its loss against a target."""

  def __init__(self, target: torch.Tensor, kind: str):
    super().__init__()
    self.target, self.kind, self.loss = target.detach(), kind, None

  def forward(self, x):
    found = gram(x) if self.kind == 'style' else x
    self.loss = torch.mean((found - self.target) ** 2)
    return x


def gram(x: torch.Tensor) -> torch.Tensor:
  batch, channels, height, width = x.shape
  flat = x.reshape(batch, channels, height * width)
  return flat @ flat.transpose(1, 2) / (channels * height * width)


def torch_network(params: dict, objective: family.Objective, content: torch.Tensor,
                  style: torch.Tensor) -> tuple[nn.Sequential, list[Tap], list[Tap]]:
  """VGG19 up to the deepest layer used, with content and style taps, as the tutorial builds it."""
  mean = torch.tensor(vgg19_weights.IMAGENET_MEAN_RGB).view(1, 3, 1, 1)
  std = torch.tensor(vgg19_weights.IMAGENET_STD_RGB).view(1, 3, 1, 1)

  class Normalise(nn.Module):
    def forward(self, x):
      return (x - mean) / std

  model, content_taps, style_taps = nn.Sequential(Normalise()), [], []
  wanted = set(objective.content_layers + objective.style_layers)
  for name in vgg.LAYERS[:max(vgg.LAYERS.index(n) for n in wanted) + 1]:
    if name.startswith('conv'):
      layer = nn.Conv2d(params[name]['kernel'].shape[2], params[name]['kernel'].shape[3], 3, padding=1)
      layer.weight.data = torch.from_numpy(np.transpose(np.asarray(params[name]['kernel']), (3, 2, 0, 1)).copy())
      layer.bias.data = torch.from_numpy(np.asarray(params[name]['bias']).copy())
    else:
      layer = nn.ReLU() if name.startswith('relu') else nn.MaxPool2d(2, 2)
    model.add_module(name, layer)
    if name in objective.content_layers:
      tap = Tap(model(content), 'content')
      content_taps.append(tap)
      model.add_module(f'content_{name}', tap)
    if name in objective.style_layers:
      tap = Tap(gram(model(style)), 'style')
      style_taps.append(tap)
      model.add_module(f'style_{name}', tap)
  return model.requires_grad_(False), content_taps, style_taps


def run_torch(model, content_taps, style_taps, objective, content, iterations):
  """The tutorial's loop: L-BFGS on a copy of the content, the image clamped in the closure."""
  image = content.clone().requires_grad_(True)
  optimiser = torch.optim.LBFGS([image], max_iter=iterations)
  losses = {}

  def closure():
    with torch.no_grad():
      image.clamp_(0, 1)
    optimiser.zero_grad()
    model(image)
    losses['content'] = objective.content_weight * sum(
        w * t.loss for w, t in zip(objective.content_layer_weights, content_taps))
    losses['style'] = objective.style_weight * sum(
        w * t.loss for w, t in zip(objective.style_layer_weights, style_taps))
    total = losses['content'] + losses['style']
    total.backward()
    return total

  optimiser.step(closure)
  with torch.no_grad():
    image.clamp_(0, 1)
  closure()   # the losses of the final, clamped image
  return {k: float(v.detach()) for k, v in losses.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--size', type=int, default=64, help="the content's longer side")
  parser.add_argument('--iterations', type=int, default=20)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--torch_threads', type=int, default=0, help='0 = PyTorch\'s default')
  parser.add_argument('--output', default='', help='also write the results to this JSON file')
  args = parser.parse_args()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  transfer = gen_jax_transfer(args.size, args.iterations)
  objective = transfer.objective
  content_np, (style_np,) = transfer.scale_inputs(0)
  as_torch = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None]))
  content, style = as_torch(content_np), as_torch(style_np)
  model, content_taps, style_taps = torch_network(transfer.vgg_params, objective, content, style)
  targets = transfer.targets(0)

  def jax_run():
    variable, state, losses = transfer.iterate(targets, *transfer.start(0), args.iterations)
    return {k: float(v) for k, v in jax.device_get(losses).items()}

  sides = {'gen_jax': jax_run,
           'pytorch': lambda: run_torch(model, content_taps, style_taps, objective, content, args.iterations)}
  times = {name: [] for name in sides}
  losses = {name: run() for name, run in sides.items()}   # warm-up, untimed
  for _ in range(args.rounds):
    for name, run in sides.items():
      start = time.perf_counter()
      losses[name] = run()
      times[name].append(time.perf_counter() - start)
  per_iteration = {name: statistics.median(t) / args.iterations for name, t in times.items()}
  height, width = content_np.shape[:2]
  print(f'style transfer, {height}x{width}, {args.iterations} L-BFGS iterations, random VGG19 '
        f'filters, median of {args.rounds} alternating runs')
  for name in sides:
    parts = ', '.join(f'{k} {v:.4g}' for k, v in losses[name].items() if k != 'tv')
    print(f'  {name:8s} {1000 * per_iteration[name]:8.1f} ms/iteration   final {parts}')
  ratio = per_iteration['pytorch'] / per_iteration['gen_jax']
  print(f'  PyTorch time / gen_jax time: {ratio:.2f}')
  if args.output:
    pathlib.Path(args.output).write_text(json.dumps(
        {'size': [height, width], 'iterations': args.iterations, 'rounds': args.rounds,
         'seconds_per_iteration': per_iteration, 'times': times, 'final_losses': losses,
         'torch_over_gen_jax': ratio}, indent=2))


if __name__ == '__main__':
  main()
