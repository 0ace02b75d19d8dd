"""gen_jax's GAN family (fully connected GAN, DCGAN, WGAN-GP, LSGAN, …) in eager PyTorch.

The networks are `gen_jax.models.gan`'s, built from the same config fields: dense blocks (Linear,
BatchNorm, ReLU; no bias before BatchNorm), then a dense layer to the image or to a feature map
doubled by stride-2 4×4 transposed convolutions; the critic's stride-2 4×4 convolutions with
LeakyReLU 0.2 (BatchNorm from the second), dense blocks, one score. (For the DCGAN config these are
the course notebook's networks, but for the biases BatchNorm cancels.) The step is the family's:
`n_critic` critic updates, each on a fresh fake batch (the generator in training mode, as JAX's
updates its BatchNorm statistics), real and fake batches in separate critic calls, the WGAN-GP
penalty on random interpolates (double back-propagation through `torch.autograd.grad`), then one
generator update through the just-updated critic on the last fake batch, the critic's parameter
gradients switched off meanwhile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from experiments import torch_models

LEAKY_SLOPE = 0.2


def _block(layer: nn.Module, norm: nn.Module | None) -> list[nn.Module]:
  return [layer] + ([norm] if norm is not None else []) + [nn.ReLU()]


class Generator(nn.Module):

  def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], dense_features,
               conv_features, output_activation: str, batch_norm: bool):
    super().__init__()
    height, width, channels = image_shape
    biased = not batch_norm
    layers: list[nn.Module] = []
    previous = latent_dim
    for features in dense_features:
      layers += _block(nn.Linear(previous, features, bias=biased),
                       nn.BatchNorm1d(features) if batch_norm else None)
      previous = features
    if conv_features:
      scale = 2 ** len(conv_features)
      start = (conv_features[0], height // scale, width // scale)
      flat = start[0] * start[1] * start[2]
      layers += _block(nn.Linear(previous, flat, bias=biased),
                       nn.BatchNorm1d(flat) if batch_norm else None)
      layers.append(nn.Unflatten(1, start))
      previous = conv_features[0]
      for features in conv_features[1:]:
        layers += _block(nn.ConvTranspose2d(previous, features, 4, 2, 1, bias=biased),
                         nn.BatchNorm2d(features) if batch_norm else None)
        previous = features
      layers.append(nn.ConvTranspose2d(previous, channels, 4, 2, 1))
    else:
      layers += [nn.Linear(previous, height * width * channels), nn.Unflatten(1, (channels, height, width))]
    layers.append(nn.Sigmoid() if output_activation == 'sigmoid' else nn.Tanh())
    self.model = nn.Sequential(*layers)

  def forward(self, z):
    return self.model(z)


class Discriminator(nn.Module):

  def __init__(self, image_shape: tuple[int, int, int], conv_features, dense_features,
               batch_norm: bool):
    super().__init__()
    height, width, channels = image_shape
    layers: list[nn.Module] = []
    previous = channels
    for index, features in enumerate(conv_features):
      normalised = batch_norm and index > 0
      layers.append(nn.Conv2d(previous, features, 4, 2, 1, bias=not normalised))
      if normalised:
        layers.append(nn.BatchNorm2d(features))
      layers.append(nn.LeakyReLU(LEAKY_SLOPE))
      previous, height, width = features, height // 2, width // 2
    layers.append(nn.Flatten())
    previous = previous * height * width
    for features in dense_features:
      layers += [nn.Linear(previous, features), nn.LeakyReLU(LEAKY_SLOPE)]
      previous = features
    layers.append(nn.Linear(previous, 1))
    self.model = nn.Sequential(*layers)

  def forward(self, x):
    return self.model(x)[:, 0]


def _bce(logits, target: float):
  return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


# (critic loss of real and fake scores, generator loss of fake scores): adversarial_losses' pairs.
LOSSES = {
    'non_saturating': (lambda r, f: _bce(r, 1.0) + _bce(f, 0.0), lambda f: _bce(f, 1.0)),
    'minimax': (lambda r, f: _bce(r, 1.0) + _bce(f, 0.0), lambda f: -_bce(f, 0.0)),
    'least_squares': (lambda r, f: torch.mean((r - 1) ** 2) + torch.mean(f ** 2),
                      lambda f: torch.mean((f - 1) ** 2)),
    'wasserstein': (lambda r, f: f.mean() - r.mean(), lambda f: -f.mean()),
    'hinge': (lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(), lambda f: -f.mean()),
}


class Trainer:
  """One GANFamily.train_step; see the module docstring."""

  def __init__(self, config, image_shape: tuple[int, int, int], device: torch.device):
    m = config.model
    if m.conditional or m.prior not in ('normal', 'uniform'):
      raise ValueError('the PyTorch GAN is unconditional, with a normal or uniform prior')
    self.m, self.device = m, device
    self.symmetric = m.pixel_range == 'symmetric'
    self.generator = Generator(m.latent_dim, image_shape, tuple(m.generator.dense_features),
                               tuple(m.generator.conv_features),
                               'tanh' if self.symmetric else 'sigmoid', m.generator.batch_norm).to(device)
    self.critic = Discriminator(image_shape, tuple(m.discriminator.conv_features),
                                tuple(m.discriminator.dense_features),
                                m.discriminator.batch_norm).to(device)
    self.critic_loss, self.generator_loss = LOSSES[m.loss]
    self.optimizer_g = torch_models.adam(self.generator, config.optim_g)
    self.optimizer_d = torch_models.adam(self.critic, config.optim_d)

  def parameter_count(self) -> int:
    return torch_models.parameter_count(self.generator, self.critic)

  def _noise(self, count: int):
    if self.m.prior == 'uniform':
      return torch.rand(count, self.m.latent_dim, device=self.device) * 2 - 1
    return torch.randn(count, self.m.latent_dim, device=self.device)

  def _penalty(self, real, fake):
    epsilon = torch.rand(real.shape[0], 1, 1, 1, device=self.device)
    mixed = (epsilon * real + (1 - epsilon) * fake).requires_grad_(True)
    (grads,) = torch.autograd.grad(self.critic(mixed).sum(), mixed, create_graph=True)
    norms = torch.sqrt(grads.flatten(1).square().sum(1) + 1e-12)
    return torch.mean((norms - 1) ** 2)

  def _critic_step(self, real, fake):
    self.optimizer_d.zero_grad(set_to_none=True)
    loss = self.critic_loss(self.critic(real), self.critic(fake))
    total = loss + self.m.gradient_penalty * self._penalty(real, fake) if self.m.gradient_penalty else loss
    total.backward()
    self.optimizer_d.step()
    if self.m.weight_clip:
      with torch.no_grad():
        for p in self.critic.parameters():
          p.clamp_(-self.m.weight_clip, self.m.weight_clip)
    return loss.detach()

  def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    real = batch['image'] * 2 - 1 if self.symmetric else batch['image']
    count = real.shape[0]
    for _ in range(self.m.n_critic - 1):
      with torch.no_grad():
        fake = self.generator(self._noise(count))
      self._critic_step(real, fake)
    fake = self.generator(self._noise(count))
    d_loss = self._critic_step(real, fake.detach())
    torch_models.requires_grad(self.critic, False)
    self.optimizer_g.zero_grad(set_to_none=True)
    g_loss = self.generator_loss(self.critic(fake))
    g_loss.backward()
    self.optimizer_g.step()
    torch_models.requires_grad(self.critic, True)
    return {'d_loss': d_loss, 'g_loss': g_loss.detach()}
