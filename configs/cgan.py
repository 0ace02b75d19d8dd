"""Conditional GAN: the DCGAN told the class.

One-hot class labels are concatenated to z for the generator and, as constant feature maps, to
the discriminator's input image; the fake batch uses the real batch's labels, so both players
see the same class frequencies. Sampling asks for a class (`--config.sample.label=7`, or -1 for
every class in turn), and sample grids have one row per class.
"""

from configs import dcgan


def get_config(argument: str | None = None):
  config = dcgan.get_config(argument)
  config.name = 'cgan'
  config.model.name = 'cgan'
  config.model.conditional = True
  return config
