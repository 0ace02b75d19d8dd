"""beta-VAE: the convolutional VAE with the KL term weighted by beta = 4 and an 8-D latent.

A larger beta trades reconstruction for a latent closer to the factorised prior (the course
material's disentanglement argument); latent traversals show what each component encodes.
"""

from configs import vae


def get_config(argument: str | None = None):
  config = vae.get_config(argument)
  config.name = 'beta_vae'
  config.model.beta = 4.0
  config.model.latent_dim = 8
  return config
