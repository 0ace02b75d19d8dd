"""The course assignment's convolutional VAE in PyTorch, for the benchmark (experiments/benchmark.py) only.

`load_flax_params` loads the parameters of `gen_jax.models.vae.VAE` (NHWC, HWIO) into it. With
`padding='keras'` it then computes exactly that model's function: Keras/Flax 'SAME' padding, which
puts the odd row of a stride-2 layer's border on the high side. With `padding='pytorch'` its two
stride-2 layers use PyTorch's own symmetric padding (`padding=1`, and `output_padding=1` for the
transposed convolution), as PyTorch code writes this model: the same layers and parameters, with
those two layers' taps one pixel apart, and no explicit padding or cropping, which cost PyTorch
about 15% of a training step.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from experiments import torch_models
from gen_jax.cpu_speed.conv_transpose import transpose_padding

PADDINGS = ('keras', 'pytorch')


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """Keras/Flax 'SAME' padding (low, high) of a strided convolution: the extra row goes high."""
  total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class SameConv2d(nn.Module):
  """A convolution whose output is ceil(input / stride) in size.

  'keras' pads as Flax does for the given input size; PyTorch's `padding` argument cannot put more
  on one side, so an asymmetric border is padded explicitly. 'pytorch' pads (kernel - 1) / 2 on
  every side.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
               input_size: tuple[int, int], padding: str):
    super().__init__()
    (top, bottom), (left, right) = (same_padding(size, kernel, stride) for size in input_size)
    symmetric = padding == 'pytorch' or (top == bottom and left == right)
    self.border = None if symmetric else (left, right, top, bottom)
    self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride,
                          padding=(kernel - 1) // 2 if padding == 'pytorch' else
                          (top, left) if symmetric else 0)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.conv(x if self.border is None else F.pad(x, self.border))


class SameConvTranspose2d(nn.Module):
  """A transposed convolution whose output is stride × input in size.

  'keras' keeps the output rows Flax's 'SAME' keeps (computing one more and cropping it where
  PyTorch cannot express them); 'pytorch' pads (kernel - 1) / 2 and adds stride - 1 rows high.
  """

  def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding: str):
    super().__init__()
    low, high = transpose_padding(kernel, stride, 'SAME')
    if padding == 'pytorch':
      self.crop, pad, extra = 0, (kernel - 1) // 2, stride - 1
    else:
      self.crop, pad, extra = max(low - high, 0), kernel - 1 - low, max(high - low, 0)
    self.deconv = nn.ConvTranspose2d(in_channels, out_channels, kernel, stride, padding=pad,
                                     output_padding=extra)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.deconv(x)
    return y[:, :, :y.shape[2] - self.crop, :y.shape[3] - self.crop] if self.crop else y


class TorchVAE(nn.Module):
  """Encoder: 3×3 convs (the last with stride 2), dense, mean and log-variance; decoder
  mirrored. Layers and parameters as in `gen_jax.models.vae.VAE`."""

  def __init__(self, conv_features: Sequence[int], hidden_dim: int, latent_dim: int,
               image_shape: tuple[int, int, int], padding: str):
    super().__init__()
    if padding not in PADDINGS:
      raise ValueError(f'padding must be one of {PADDINGS}, got {padding!r}')
    height, width, channels = image_shape
    self.start = (conv_features[-1], height // 2, width // 2)
    strides = [2 if i == len(conv_features) - 1 else 1 for i in range(len(conv_features))]
    self.convs = nn.ModuleList(
        SameConv2d(c_in, c_out, 3, s, (height, width), padding)
        for c_in, c_out, s in zip([channels, *conv_features[:-1]], conv_features, strides))
    flat = int(np.prod(self.start))
    self.hidden = nn.Linear(flat, hidden_dim)
    self.mean = nn.Linear(hidden_dim, latent_dim)
    self.logvar = nn.Linear(hidden_dim, latent_dim)
    self.decoder_hidden = nn.Linear(latent_dim, hidden_dim)
    self.decoder_expand = nn.Linear(hidden_dim, flat)
    up = list(reversed(conv_features[:-1]))
    self.deconvs = nn.ModuleList(
        SameConvTranspose2d(c_in, c_out, 3, 2 if i == 0 else 1, padding)
        for i, (c_in, c_out) in enumerate(zip([conv_features[-1], *up[:-1]], up)))
    self.to_logits = SameConvTranspose2d(up[-1] if up else conv_features[-1], channels, 3,
                                         2 if not up else 1, padding)

  def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    for conv in self.convs:
      x = F.relu(conv(x))
    x = F.relu(self.hidden(x.flatten(1)))
    return self.mean(x), self.logvar(x)

  def decode(self, z: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.decoder_expand(F.relu(self.decoder_hidden(z))))
    x = x.view(z.shape[0], *self.start)
    for deconv in self.deconvs:
      x = F.relu(deconv(x))
    return self.to_logits(x)

  def forward(self, x: torch.Tensor, noise: torch.Tensor):
    mean, logvar = self.encode(x)
    return self.decode(mean + torch.exp(0.5 * logvar) * noise), mean, logvar


def negative_elbo_terms(model: TorchVAE, x: torch.Tensor, noise: torch.Tensor):
  """Per-example -log p(x|z) (Bernoulli, summed over pixels; one z sample) and
  KL(q(z|x) || N(0, I)), as gen_jax's VAE family computes them."""
  logits, mean, logvar = model(x, noise)
  reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction='none').sum((1, 2, 3))
  kl = 0.5 * (torch.exp(logvar) + mean.square() - 1.0 - logvar).sum(1)
  return reconstruction, kl


def load_flax_params(model: TorchVAE, params: dict[str, Any]) -> None:
  """Copies gen_jax VAE parameters (NHWC, HWIO kernels) into the NCHW PyTorch model."""
  encoder, decoder = params['encoder'], params['decoder']
  channels, height, width = model.start

  def dense(layer: nn.Linear, p, flat_inputs: bool = False, flat_outputs: bool = False):
    # Flax flattens feature maps as (h, w, c), PyTorch as (c, h, w).
    kernel, bias = np.asarray(p['kernel']), np.asarray(p['bias'])
    shape = kernel.shape
    if flat_inputs:
      kernel = kernel.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(shape)
    if flat_outputs:
      kernel = kernel.reshape(-1, height, width, channels).transpose(0, 3, 1, 2).reshape(shape)
      bias = bias.reshape(height, width, channels).transpose(2, 0, 1).reshape(-1)
    _copy(layer.weight, kernel.T)
    _copy(layer.bias, bias)

  for index, conv in enumerate(model.convs):
    p = encoder[f'Conv_{index}']
    _copy(conv.conv.weight, np.asarray(p['kernel']).transpose(3, 2, 0, 1))
    _copy(conv.conv.bias, p['bias'])
  dense(model.hidden, encoder['Dense_0'], flat_inputs=True)
  dense(model.mean, encoder['mean'])
  dense(model.logvar, encoder['logvar'])
  dense(model.decoder_hidden, decoder['Dense_0'])
  dense(model.decoder_expand, decoder['Dense_1'], flat_outputs=True)
  for index, deconv in enumerate([*model.deconvs, model.to_logits]):
    p = decoder[f'SubPixelConvTranspose_{index}']
    # Flax's (transpose_kernel=False) kernel is PyTorch's flipped in space, in/out order kept.
    _copy(deconv.deconv.weight, np.asarray(p['kernel'])[::-1, ::-1].transpose(2, 3, 0, 1))
    _copy(deconv.deconv.bias, p['bias'])


class Trainer:
  """gen_jax's VAE family step: the negative ELBO (reconstruction + beta KL, one z sample), Adam.

  Trains with PyTorch's own padding (as PyTorch code writes this model); tests/test_benchmark.py
  checks that the Keras-padded twin computes the JAX model's function from the same weights.
  """

  def __init__(self, config, image_shape: tuple[int, int, int], device: torch.device):
    m = config.model
    if m.likelihood != 'bernoulli':
      raise ValueError(f'the PyTorch VAE has the Bernoulli likelihood only, not {m.likelihood!r}')
    self.beta, self.latent_dim, self.device = m.beta, m.latent_dim, device
    self.model = TorchVAE(tuple(m.conv_features), m.hidden_dim, m.latent_dim, image_shape,
                          'pytorch').to(device)
    self.optimizer = torch_models.adam(self.model, config.optim)

  def parameter_count(self) -> int:
    return torch_models.parameter_count(self.model)

  def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    x = batch['image']
    noise = torch.randn(x.shape[0], self.latent_dim, device=self.device)
    reconstruction, kl = negative_elbo_terms(self.model, x, noise)
    loss = (reconstruction + self.beta * kl).mean()
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    return {'loss': loss.detach()}


def _copy(target: torch.Tensor, value) -> None:
  value = torch.from_numpy(np.array(value, np.float32))  # a writable, contiguous copy
  if value.shape != target.shape:
    raise ValueError(f'parameter shape {tuple(value.shape)} does not fit {tuple(target.shape)}')
  with torch.no_grad():
    target.copy_(value)
