"""LSGAN: the DCGAN with least-squares losses.

The critic's raw score is regressed onto the labels: real → 1 and fake → 0 for D, fake → 1 for G
(mean squared errors, as the course notebook's MSELoss), which keeps the generator's gradients
alive for samples the critic already rejects confidently.
"""

from configs import dcgan


def get_config(argument: str | None = None):
  config = dcgan.get_config(argument)
  config.name = 'lsgan'
  config.model.name = 'lsgan'
  config.model.loss = 'least_squares'
  return config
