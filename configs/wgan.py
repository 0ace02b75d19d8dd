"""WGAN: the DCGAN's networks as generator and Wasserstein critic, with weight clipping.

The critic maximises E[D(x)] - E[D(G(z))] and every critic weight is clipped to [-0.01, 0.01]
after each of its updates (a crude bound on its Lipschitz constant); 5 critic updates per
generator update; RMSprop with learning rate 5e-5 for both, as in the WGAN paper.
"""

from configs import dcgan


def get_config(argument: str | None = None):
  config = dcgan.get_config(argument)
  config.name = 'wgan'
  m = config.model
  m.name = 'wgan'
  m.loss = 'wasserstein'
  m.weight_clip = 0.01
  m.n_critic = 5
  for optim in (config.optim_g, config.optim_d):
    optim.name = 'rmsprop'
    optim.learning_rate = 5e-5
  return config
