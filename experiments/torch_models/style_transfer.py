"""Gatys style transfer as PyTorch's neural-style tutorial writes it, for the benchmark only.

The VGG19 layers (from gen_jax's parameters, so both sides have the same filters) in an
nn.Sequential with loss taps after the content and style layers, torchvision's input
normalisation, `torch.optim.LBFGS([image])` (learning rate 1, no line search: one loss evaluation
an iteration) stepped with a closure that clamps the image before each evaluation. gen_jax's side
(experiments/bench/style.py) runs the same optimiser (`optimiser.line_search=none`); it clamps at
the end of each dispatch instead, restarting L-BFGS's memory when that moved a pixel.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from gen_jax.data import vgg19_weights
from gen_jax.families import style_transfer as family
from gen_jax.models import style_transfer as vgg


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
  mean = torch.tensor(vgg19_weights.IMAGENET_MEAN_RGB, device=content.device).view(1, 3, 1, 1)
  std = torch.tensor(vgg19_weights.IMAGENET_STD_RGB, device=content.device).view(1, 3, 1, 1)

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
      layer = layer.to(content.device)
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


class Runner:
  """The tutorial's loop on one image: `run(n)` is one `LBFGS.step` of (at most) n iterations,
  continuing from the image and L-BFGS memory of the previous call; returns the iterations done
  and the losses (tensors) of the last evaluation."""

  def __init__(self, params: dict, objective: family.Objective, content: torch.Tensor,
               style: torch.Tensor):
    self.model, self.content_taps, self.style_taps = torch_network(params, objective, content, style)
    self.objective = objective
    self.image = content.clone().requires_grad_(True)
    self.optimisers: dict[int, torch.optim.LBFGS] = {}
    self.evaluations = 0   # of the loss and its gradient, over every run

  def parameter_count(self) -> int:
    return sum(p.numel() for p in self.model.parameters())

  def run(self, iterations: int) -> tuple[int, dict[str, torch.Tensor]]:
    if iterations not in self.optimisers:
      self.optimisers[iterations] = torch.optim.LBFGS([self.image], max_iter=iterations)
    optimiser, image, o = self.optimisers[iterations], self.image, self.objective
    losses: dict[str, torch.Tensor] = {}

    def closure():
      self.evaluations += 1
      with torch.no_grad():
        image.clamp_(0, 1)
      optimiser.zero_grad()
      self.model(image)
      losses['content'] = o.content_weight * sum(
          w * t.loss for w, t in zip(o.content_layer_weights, self.content_taps))
      losses['style'] = o.style_weight * sum(
          w * t.loss for w, t in zip(o.style_layer_weights, self.style_taps))
      total = losses['content'] + losses['style']
      total.backward()
      return total

    before = optimiser.state[image].get('n_iter', 0) if image in optimiser.state else 0
    optimiser.step(closure)
    done = optimiser.state[image]['n_iter'] - before
    return done, {k: v.detach() for k, v in losses.items()}
