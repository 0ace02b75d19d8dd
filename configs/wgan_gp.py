"""WGAN-GP: the Wasserstein critic kept near 1-Lipschitz by a gradient penalty.

The critic's loss adds lambda · (||∇D(x̂)||₂ − 1)² (lambda = 10) on random interpolates x̂ between
real and generated images, each example's gradient computed by `jax.grad` (of the summed scores,
which equals the vmapped per-example gradient for this critic). The critic has no BatchNorm (the
penalty is per example); 5 critic updates per generator update; Adam with
learning rate 1e-4 and betas (0.0, 0.9) for both, as in the WGAN-GP paper.
"""

from configs import dcgan


def get_config(argument: str | None = None):
  config = dcgan.get_config(argument)
  config.name = 'wgan_gp'
  m = config.model
  m.name = 'wgan_gp'
  m.loss = 'wasserstein'
  m.gradient_penalty = 10.0
  m.n_critic = 5
  m.discriminator.batch_norm = False
  for optim in (config.optim_g, config.optim_d):
    optim.learning_rate = 1e-4
    optim.b1 = 0.0
    optim.b2 = 0.9
  return config
