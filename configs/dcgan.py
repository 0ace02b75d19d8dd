"""The course notebook's DCGAN.

Generator: z (100, N(0, I)) → dense 128×7×7, BatchNorm, ReLU → transposed conv 128→64 (4×4,
stride 2), BatchNorm, ReLU → transposed conv 64→1 (4×4, stride 2), tanh. Discriminator: conv 64
(4×4, stride 2), LeakyReLU 0.2 → conv 128, BatchNorm, LeakyReLU → dense → 1 logit. Binary
cross-entropy, Adam (lr 2e-4, betas 0.5 and 0.999) for both, batch 64, data scaled to [-1, 1].
"""

from configs import gan


def get_config(argument: str | None = None):
  config = gan.adversarial_config(argument)
  config.name = 'dcgan'
  m = config.model
  m.name = 'dcgan'
  m.pixel_range = 'symmetric'
  m.generator.dense_features = ()
  m.generator.conv_features = (128, 64)
  m.discriminator.conv_features = (64, 128)
  m.discriminator.dense_features = ()
  for optim in (config.optim_g, config.optim_d):
    optim.decay_every_epochs = 0
  return gan.shrink_for_smoke(config)
