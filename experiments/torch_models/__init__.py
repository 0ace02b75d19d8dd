"""PyTorch twins of gen_jax's models, for the benchmark (experiments/benchmark.py) only.

Each module builds the same architecture, losses and optimisers as one gen_jax family from the
same config, in plain eager PyTorch, and exposes a `Trainer`:

  trainer = Trainer(config, image_shape, device)
  losses = trainer.step(batch)   # batch: {'image': (N, C, H, W) in [0, 1], 'label', 'input'}
  trainer.parameter_count()      # compared with gen_jax's, the check that the networks match

`step` returns the losses as tensors (never `.item()`: the harness reads them once a slice, so
PyTorch's GPU queue is not drained every step). PyTorch is the optional `bench` extra.
"""

from __future__ import annotations

import torch
from torch import nn


def parameter_count(*modules: nn.Module) -> int:
  return sum(p.numel() for module in modules for p in module.parameters())


def adam(module: nn.Module, optim) -> torch.optim.Adam:
  """torch's Adam from a gen_jax optimiser config (plain Adam only: no decay, clipping or schedule)."""
  if optim.name != 'adam' or optim.weight_decay or optim.grad_clip_norm:
    raise ValueError(f'the PyTorch side implements plain Adam only, the config asks for {optim.to_dict()}')
  return torch.optim.Adam(module.parameters(), lr=optim.learning_rate, betas=(optim.b1, optim.b2))


def requires_grad(module: nn.Module, enabled: bool) -> None:
  """Switches a network's parameter gradients (off for the critic during a generator update)."""
  for parameter in module.parameters():
    parameter.requires_grad_(enabled)
