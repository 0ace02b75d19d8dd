"""gen_jax's Pix2Pix (U-Net generator, PatchGAN critic, least squares + L1) in eager PyTorch.

The networks are `gen_jax.models.pix2pix`'s with BatchNorm, built from the same config fields (the
parameter counts agree; the benchmark checks it). One step is the family's round: the generator's
forward pass once, a critic step on the detached translation (real and fake pairs in separate
calls), a generator step through the just-updated critic (its parameter gradients off) on the
adversarial loss plus `l1_weight` × L1 to the target, on [-1, 1] images; Adam for each network.
No jitter or mirroring (the config's defaults for digits).
"""

from __future__ import annotations

import torch
from torch import nn

from experiments import torch_models
from gen_jax.evaluation.translations import TRANSLATION_BATCH
from gen_jax.models.pix2pix import DROPOUT_RATE

LEAKY_SLOPE = 0.2


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


class Trainer:
  """One Pix2PixFamily.train_step; see the module docstring."""

  def __init__(self, config, image_shape: tuple[int, int, int], device: torch.device):
    m = config.model
    if (m.generator.normalisation, m.discriminator.normalisation, m.loss) != ('batch', 'batch', 'least_squares'):
      raise ValueError('the PyTorch Pix2Pix has BatchNorm and the least-squares loss only')
    if config.data.pairs.jitter_size or config.data.pairs.mirror:
      raise ValueError('the PyTorch Pix2Pix has no jitter or mirroring')
    channels = image_shape[-1]
    self.l1_weight = m.l1_weight
    self.generator = TorchUNet(tuple(m.generator.features), channels, channels,
                               m.generator.dropout_levels).to(device)
    self.critic = TorchPatchGAN(m.discriminator.features, m.discriminator.num_layers,
                                2 * channels).to(device)
    self.optimizer_g = torch_models.adam(self.generator, config.optim_g)
    self.optimizer_d = torch_models.adam(self.critic, config.optim_d)

  def parameter_count(self) -> int:
    return torch_models.parameter_count(self.generator, self.critic)

  def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    inputs, targets = batch['input'] * 2 - 1, batch['image'] * 2 - 1
    fake = self.generator(inputs)
    torch_models.requires_grad(self.critic, True)
    self.optimizer_d.zero_grad(set_to_none=True)
    d_loss = (torch.mean((self.critic(targets, inputs) - 1) ** 2)
              + torch.mean(self.critic(fake.detach(), inputs) ** 2))
    d_loss.backward()
    self.optimizer_d.step()
    torch_models.requires_grad(self.critic, False)
    self.optimizer_g.zero_grad(set_to_none=True)
    adversarial = torch.mean((self.critic(fake, inputs) - 1) ** 2)
    l1 = torch.mean(torch.abs(fake - targets))
    g_loss = adversarial + self.l1_weight * l1
    g_loss.backward()
    self.optimizer_g.step()
    return {'d_loss': d_loss.detach(), 'g_loss': g_loss.detach(), 'l1': l1.detach() / 2}

  @torch.no_grad()
  def translate(self, inputs: torch.Tensor) -> torch.Tensor:
    """Translations in [0, 1] of (N, C, H, W) `inputs` in [0, 1], as gen_jax evaluates them:
    BatchNorm on its running averages, no dropout, TRANSLATION_BATCH at a time."""
    self.generator.eval()
    try:
      outputs = torch.cat([self.generator(part * 2 - 1) for part in inputs.split(TRANSLATION_BATCH)])
    finally:
      self.generator.train()
    return ((outputs + 1) / 2).clamp(0, 1)
