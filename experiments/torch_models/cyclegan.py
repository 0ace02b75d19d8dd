"""gen_jax's CycleGAN (ResNet generators, PatchGAN critics, least squares + cycle + identity L1,
image pools) in eager PyTorch, for experiments/benchmark.py.

The networks are `gen_jax.models.cyclegan`'s, built from the same config fields (the parameter
counts agree: `Trainer.parameter_count`), with InstanceNorm (affine, as Flax's) or none. One step
is the family's round: both generators' forward passes once (translations, reconstructions,
identity images); a step of both critics on real images against pooled translations (the pool
of the paper's code: a host-side list, the same rule as gen_jax.objectives.image_pool); a step of
both generators through the just-updated critics (their parameter gradients off). Losses are the
means over the two domains, as gen_jax's; one Adam for both generators, one for both critics;
images in [-1, 1]. Batches: {'input': domain A, 'image': domain B}, (N, C, H, W) in [0, 1].
"""

from __future__ import annotations

import random

import torch
from torch import nn

from experiments import torch_models

LEAKY_SLOPE = 0.2


def _norm(kind: str, channels: int) -> nn.Module:
  if kind == 'instance':
    return nn.InstanceNorm2d(channels, affine=True, eps=1e-5)
  if kind == 'none':
    return nn.Identity()
  raise ValueError(f'the PyTorch CycleGAN has instance normalisation or none, not {kind!r}')


class TorchResidualBlock(nn.Module):
  def __init__(self, channels: int, norm: str):
    super().__init__()
    bias = norm == 'none'
    self.body = nn.Sequential(
        nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias), _norm(norm, channels),
        nn.ReLU(), nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
        _norm(norm, channels))

  def forward(self, x):
    return x + self.body(x)


class TorchResnetGenerator(nn.Module):
  """The JAX ResnetGenerator: reflect-pad 3, conv 7×7; stride-2 3×3 convolutions down; residual
  blocks; stride-2 3×3 transposed convolutions (padding 1, output padding 1) up; reflect-pad 3,
  conv 7×7, tanh."""

  def __init__(self, channels: int, features: int, num_downsamplings: int, num_blocks: int, norm: str):
    super().__init__()
    bias = norm == 'none'
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, features, 7, bias=bias), _norm(norm, features),
              nn.ReLU()]
    width = features
    for _ in range(num_downsamplings):
      layers += [nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=bias), _norm(norm, 2 * width),
                 nn.ReLU()]
      width *= 2
    layers += [TorchResidualBlock(width, norm) for _ in range(num_blocks)]
    for _ in range(num_downsamplings):
      layers += [nn.ConvTranspose2d(width, width // 2, 3, stride=2, padding=1, output_padding=1,
                                    bias=bias), _norm(norm, width // 2), nn.ReLU()]
      width //= 2
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)


class TorchPatchCritic(nn.Module):
  """The JAX PatchDiscriminator without a condition: `num_layers` stride-2 4×4 convolutions and
  one of stride 1 (widths features·min(2^layer, 8), normalised from the second, LeakyReLU 0.2),
  then a stride-1 4×4 convolution to one score per patch."""

  def __init__(self, features: int, num_layers: int, channels: int, norm: str):
    super().__init__()
    layers = []
    for layer in range(num_layers + 1):
      width = features * min(2 ** layer, 8)
      layers.append(nn.Conv2d(channels, width, 4, stride=2 if layer < num_layers else 1, padding=1,
                              bias=layer == 0 or norm == 'none'))
      if layer:
        layers.append(_norm(norm, width))
      layers.append(nn.LeakyReLU(LEAKY_SLOPE))
      channels = width
    layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
    self.model = nn.Sequential(*layers)

  def forward(self, image):
    return self.model(image)[:, 0]


class ImagePool:
  """The paper's pool: fill first, then half the time swap the new image for a stored one."""

  def __init__(self, size: int):
    self.size, self.images = size, []

  def query(self, images: torch.Tensor) -> torch.Tensor:
    if not self.size:
      return images
    shown = []
    for image in images.detach():
      if len(self.images) < self.size:
        self.images.append(image)
        shown.append(image)
      elif random.random() < 0.5:
        shown.append(image)
      else:
        slot = random.randrange(self.size)
        shown.append(self.images[slot])
        self.images[slot] = image
    return torch.stack(shown)


def _ls(scores: torch.Tensor, target: float) -> torch.Tensor:
  return torch.mean((scores - target) ** 2)


class Trainer:
  """One CycleGANFamily.train_step; see the module docstring."""

  def __init__(self, config, image_shape: tuple[int, int, int], device: torch.device):
    m = config.model
    if m.loss != 'least_squares':
      raise ValueError('the PyTorch CycleGAN has the least-squares loss only')
    channels = image_shape[-1]
    g = m.generator
    make = lambda: TorchResnetGenerator(channels, g.features, g.num_downsamplings, g.num_blocks,
                                        g.normalisation).to(device)
    self.a_to_b, self.b_to_a = make(), make()
    d = m.discriminator
    self.critic_a, self.critic_b = (TorchPatchCritic(d.features, d.num_layers, channels,
                                                     d.normalisation).to(device) for _ in 'ab')
    self.generators = nn.ModuleList([self.a_to_b, self.b_to_a])
    self.critics = nn.ModuleList([self.critic_a, self.critic_b])
    self.optimizer_g = torch_models.adam(self.generators, config.optim_g)
    self.optimizer_d = torch_models.adam(self.critics, config.optim_d)
    self.pool_a, self.pool_b = ImagePool(m.pool_size), ImagePool(m.pool_size)
    self.cycle_weight, self.identity_weight = m.cycle_weight, m.identity_weight

  def parameter_count(self) -> int:
    return torch_models.parameter_count(self.generators, self.critics)

  def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    real_a, real_b = batch['input'] * 2 - 1, batch['image'] * 2 - 1
    fake_b, fake_a = self.a_to_b(real_a), self.b_to_a(real_b)
    cycle_a, cycle_b = self.b_to_a(fake_b), self.a_to_b(fake_a)
    torch_models.requires_grad(self.critics, True)
    self.optimizer_d.zero_grad(set_to_none=True)
    shown_a, shown_b = self.pool_a.query(fake_a), self.pool_b.query(fake_b)
    d_loss = (_ls(self.critic_a(real_a), 1) + _ls(self.critic_b(real_b), 1)
              + _ls(self.critic_a(shown_a), 0) + _ls(self.critic_b(shown_b), 0)) / 2
    d_loss.backward()
    self.optimizer_d.step()
    torch_models.requires_grad(self.critics, False)
    self.optimizer_g.zero_grad(set_to_none=True)
    adversarial = (_ls(self.critic_a(fake_a), 1) + _ls(self.critic_b(fake_b), 1)) / 2
    cycle = (torch.mean(torch.abs(cycle_a - real_a)) + torch.mean(torch.abs(cycle_b - real_b))) / 2
    g_loss = adversarial + self.cycle_weight * cycle
    if self.identity_weight:
      identity = (torch.mean(torch.abs(self.b_to_a(real_a) - real_a))
                  + torch.mean(torch.abs(self.a_to_b(real_b) - real_b))) / 2
      g_loss = g_loss + self.identity_weight * identity
    g_loss.backward()
    self.optimizer_g.step()
    return {'d_loss': d_loss.detach(), 'g_loss': g_loss.detach(), 'cycle': cycle.detach() / 2}
