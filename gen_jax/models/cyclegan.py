"""CycleGAN's networks (Zhu et al., 2017): ResNet-block generators and a PatchGAN per domain.

Generator (Johnson et al.'s, as CycleGAN uses it): a 7×7 convolution over a reflection-padded
image, `num_downsamplings` stride-2 3×3 convolutions (channels doubling), `num_blocks` residual
blocks (two reflection-padded 3×3 convolutions and a skip), as many stride-2 3×3 transposed
convolutions back up (PyTorch's padding 1, output padding 1: exactly twice the size), and a last
reflection-padded 7×7 convolution to the image. Reflection padding keeps the border free of the
dark frame zero padding draws into translated images. A normalisation (instance by default, as
the paper) follows every convolution but the last.

`CycleGenerators` holds the two generators, G: A → B (`a_to_b`) and F: B → A (`b_to_a`), and in
training returns every image the losses need from one call; `DomainCritics` holds the two
PatchGANs of Pix2Pix (unconditional here), D_A and D_B, and scores images stacked by domain.
"""

from __future__ import annotations

import math

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from gen_jax.cpu_speed import convolution
from gen_jax.cpu_speed.conv_transpose import SubPixelConvTranspose
from gen_jax.models.gan import OUTPUT_ACTIVATIONS
from gen_jax.models.pix2pix import Normalisation, PatchDiscriminator

OUTER_KERNEL = 7   # the generator's first and last convolutions
INNER_KERNEL = 3
# The transposed convolutions' padding of their zero-dilated input: PyTorch's padding=1,
# output_padding=1 for a 3×3 kernel, (k - 1 - 1, k - 1 - 1 + 1).
UP_PADDING = ((1, 2), (1, 2))
INIT_STD = 0.02


def paper_init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """N(0, 0.02²), the CycleGAN code's initialisation of every convolution kernel. Drawn as a flat
  vector and reshaped: XLA's CPU backend compiles a draw of a kernel's 4-D shape about ten times
  more slowly, which made the initialisation cost a minute."""
  return INIT_STD * jax.random.normal(key, (math.prod(shape),), dtype).reshape(shape)


def smallest_side(image_size: int, num_downsamplings: int) -> int:
  """The side of the feature maps the residual blocks see: image_size halved that many times."""
  return image_size // 2 ** num_downsamplings


def _reflect(x: jax.Array, pad: int) -> jax.Array:
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='reflect')


def _conv(features: int, kernel: int, strides: int, padding, use_bias: bool) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), strides=strides, padding=padding, use_bias=use_bias,
                 kernel_init=paper_init, conv_general_dilated=convolution.conv_general_dilated)


class ResidualBlock(nn.Module):
  """x + (reflect-pad, conv 3×3, norm, ReLU, reflect-pad, conv 3×3, norm)(x)."""

  normalisation: str
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    features, biased = x.shape[-1], self.normalisation == 'none'
    y = _conv(features, INNER_KERNEL, 1, 'VALID', biased)(_reflect(x, 1))
    y = nn.relu(Normalisation(self.normalisation, self.axis_name)(y, train))
    y = _conv(features, INNER_KERNEL, 1, 'VALID', biased)(_reflect(y, 1))
    return x + Normalisation(self.normalisation, self.axis_name)(y, train)


class ResnetGenerator(nn.Module):
  """Image → image of the same height and width with `out_channels` channels, in the range of
  `output_activation`; `features` channels at full resolution, doubling at each downsampling."""

  out_channels: int
  features: int = 64
  num_downsamplings: int = 2
  num_blocks: int = 9
  normalisation: str = 'instance'
  output_activation: str = 'tanh'
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = True) -> jax.Array:
    chex.assert_rank(x, 4)
    batch, height, width, _ = x.shape
    if min(smallest_side(height, self.num_downsamplings),
           smallest_side(width, self.num_downsamplings)) < 2 or (height | width) % 2 ** self.num_downsamplings:
      raise ValueError(f'{self.num_downsamplings} downsamplings need a height and width divisible '
                       f'by {2 ** self.num_downsamplings} and at least {2 ** (self.num_downsamplings + 1)} '
                       f'(the reflection padding needs 2×2 maps), got {height}×{width}')
    biased = self.normalisation == 'none'   # a normalisation would subtract the bias again
    norm = lambda: Normalisation(self.normalisation, self.axis_name)
    x = _conv(self.features, OUTER_KERNEL, 1, 'VALID', biased)(_reflect(x, OUTER_KERNEL // 2))
    x = nn.relu(norm()(x, train))
    for level in range(1, self.num_downsamplings + 1):
      x = _conv(self.features * 2 ** level, INNER_KERNEL, 2, ((1, 1), (1, 1)), biased)(x)
      x = nn.relu(norm()(x, train))
    for _ in range(self.num_blocks):
      x = ResidualBlock(self.normalisation, self.axis_name)(x, train)
    for level in reversed(range(self.num_downsamplings)):
      x = SubPixelConvTranspose(self.features * 2 ** level, INNER_KERNEL, strides=2,
                                padding=UP_PADDING, use_bias=biased, kernel_init=paper_init)(x)
      x = nn.relu(norm()(x, train))
    x = _conv(self.out_channels, OUTER_KERNEL, 1, 'VALID', True)(_reflect(x, OUTER_KERNEL // 2))
    images = OUTPUT_ACTIVATIONS[self.output_activation](x)
    chex.assert_shape(images, (batch, height, width, self.out_channels))
    return images


class CycleGenerators(nn.Module):
  """G: A → B (`a_to_b`) and F: B → A (`b_to_a`), two ResNet generators of one design."""

  channels: int
  features: int = 64
  num_downsamplings: int = 2
  num_blocks: int = 9
  normalisation: str = 'instance'
  output_activation: str = 'tanh'
  axis_name: str | None = None
  with_identity: bool = True   # whether training also returns the identity images

  def setup(self):
    make = lambda: ResnetGenerator(self.channels, self.features, self.num_downsamplings,
                                   self.num_blocks, self.normalisation, self.output_activation,
                                   self.axis_name)
    self.a_to_b = make()
    self.b_to_a = make()

  def __call__(self, real_a: jax.Array, real_b: jax.Array, train: bool = True) -> dict[str, jax.Array]:
    """Every image CycleGAN's generator losses read: the translations `fake_b` = G(a) and
    `fake_a` = F(b), the reconstructions `cycle_a` = F(G(a)) and `cycle_b` = G(F(b)), and (when
    `with_identity`) `same_a` = F(a) and `same_b` = G(b). Each network call sees one domain's batch,
    as in the paper, so that a BatchNorm's statistics never mix domains."""
    chex.assert_equal_shape([real_a, real_b])
    fake_b, fake_a = self.a_to_b(real_a, train), self.b_to_a(real_b, train)
    images = {'fake_b': fake_b, 'fake_a': fake_a,
              'cycle_a': self.b_to_a(fake_b, train), 'cycle_b': self.a_to_b(fake_a, train)}
    if self.with_identity:
      images.update(same_a=self.b_to_a(real_a, train), same_b=self.a_to_b(real_b, train))
    return images

  def translate(self, images: jax.Array, a_to_b: bool, train: bool = False) -> jax.Array:
    """G(images) when `a_to_b`, else F(images)."""
    return (self.a_to_b if a_to_b else self.b_to_a)(images, train)


class DomainCritics(nn.Module):
  """D_A and D_B, the PatchGAN of Pix2Pix without a condition, one per domain.

  Takes images stacked by domain, (2, N, H, W, C): [0] in domain A's place, judged by D_A, [1] in
  B's, judged by D_B; returns the two score maps stacked the same way, (2, N, h, w). One stacked
  array lets the shared adversarial round (gen_jax.objectives.adversarial_game) treat both
  critics as one player, and the losses' means over it are the means of the two critics' losses.
  """

  features: int = 64
  num_layers: int = 3
  normalisation: str = 'instance'
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images: jax.Array, condition: None = None, train: bool = True) -> jax.Array:
    chex.assert_rank(images, 5)
    chex.assert_axis_dimension(images, 0, 2)
    if condition is not None:
      raise ValueError("CycleGAN's critics are unconditional: condition must be None")
    critics = [PatchDiscriminator(self.features, self.num_layers, self.normalisation, self.axis_name,
                                  paper_init, name=f'domain_{domain}') for domain in 'ab']
    return jnp.stack([critic(images[k], train=train) for k, critic in enumerate(critics)])
