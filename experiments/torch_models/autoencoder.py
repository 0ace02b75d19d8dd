"""gen_jax's autoencoder family (linear, MLP and convolutional autoencoders) in eager PyTorch.

The networks are `gen_jax.models.autoencoder`'s: dense encoder and decoder (ReLU between hidden
layers), or 3×3 stride-2 convolutions down to a dense code and stride-2 transposed convolutions
back (PyTorch's symmetric padding, `output_padding=1`, as PyTorch code writes them; Flax's 'SAME'
puts the odd border row high: the same layers and parameters, taps one pixel apart). The step is
the family's: reconstruction loss summed over pixels (BCE of logits, or squared error), an
optional L1 or KL code penalty, Adam, and the running code mean and covariance it keeps for
sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments import torch_models

CODE_EMA_DECAY = 0.99
CODE_ACTIVATIONS = {'linear': nn.Identity, 'relu': nn.ReLU, 'sigmoid': nn.Sigmoid}


def _dense_stack(sizes: list[int]) -> nn.Sequential:
  layers: list[nn.Module] = []
  for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
    layers.append(nn.Linear(n_in, n_out))
    if index < len(sizes) - 2:
      layers.append(nn.ReLU())
  return nn.Sequential(*layers)


def build(m, image_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
  """(encoder to the code before its activation, decoder to the raw output) of `m.architecture`."""
  height, width, channels = image_shape
  pixels = height * width * channels
  if m.architecture in ('linear', 'mlp'):
    hidden = list(m.hidden_dims) if m.architecture == 'mlp' else []
    encoder = nn.Sequential(nn.Flatten(), _dense_stack([pixels, *hidden, m.code_dim]))
    decoder = nn.Sequential(_dense_stack([m.code_dim, *reversed(hidden), pixels]),
                            nn.Unflatten(1, (channels, height, width)))
    return encoder, decoder
  features = list(m.conv_features)
  down: list[nn.Module] = []
  previous = channels
  for width_ in features:
    down += [nn.Conv2d(previous, width_, 3, 2, 1), nn.ReLU()]
    previous = width_
  scale = 2 ** len(features)
  start = (features[-1], height // scale, width // scale)
  flat = start[0] * start[1] * start[2]
  encoder = nn.Sequential(*down, nn.Flatten(), nn.Linear(flat, m.code_dim))
  up: list[nn.Module] = [nn.Linear(m.code_dim, flat), nn.ReLU(), nn.Unflatten(1, start)]
  previous = features[-1]
  for width_ in reversed(features[:-1]):
    up += [nn.ConvTranspose2d(previous, width_, 3, 2, 1, output_padding=1), nn.ReLU()]
    previous = width_
  up.append(nn.ConvTranspose2d(previous, channels, 3, 2, 1, output_padding=1))
  return encoder, nn.Sequential(*up)


class Trainer:
  """One AutoencoderFamily.train_step (no input corruption); see the module docstring."""

  def __init__(self, config, image_shape: tuple[int, int, int], device: torch.device):
    m = self.m = config.model
    if m.corruption.name != 'none':
      raise ValueError('the PyTorch autoencoder has no input corruption')
    encoder, decoder = build(m, image_shape)
    self.model = nn.Sequential(encoder, CODE_ACTIVATIONS[m.code_activation](), decoder).to(device)
    self.encode = nn.Sequential(*self.model[:2])
    self.decoder = self.model[2]
    self.optimizer = torch_models.adam(self.model, config.optim)
    self.code_mean = torch.zeros(m.code_dim, device=device)
    self.code_cov = torch.zeros(m.code_dim, m.code_dim, device=device)

  def parameter_count(self) -> int:
    return torch_models.parameter_count(self.model)

  def _penalty(self, code):
    if self.m.code_penalty == 'l1':
      return code.abs().sum(1).mean()
    if self.m.code_penalty == 'kl':
      rho, mean = self.m.sparsity_target, code.mean(0).clamp(1e-6, 1 - 1e-6)
      return (rho * torch.log(rho / mean) + (1 - rho) * torch.log((1 - rho) / (1 - mean))).sum()
    return torch.zeros((), device=code.device)

  def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    x = batch['image']
    code = self.encode(x)
    output = self.decoder(code)
    if self.m.reconstruction_loss == 'bce':
      per_example = F.binary_cross_entropy_with_logits(output, x, reduction='none').flatten(1).sum(1)
    else:
      per_example = (output - x).square().flatten(1).sum(1)
    loss = per_example.mean() + self.m.sparsity_weight * self._penalty(code)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    with torch.no_grad():
      mean = code.mean(0)
      centred = code - mean
      cov = centred.T @ centred / max(code.shape[0] - 1, 1)
      self.code_mean.mul_(CODE_EMA_DECAY).add_(mean, alpha=1 - CODE_EMA_DECAY)
      self.code_cov.mul_(CODE_EMA_DECAY).add_(cov, alpha=1 - CODE_EMA_DECAY)
    return {'loss': loss.detach()}
