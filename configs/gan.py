"""The course material's fully connected GAN, and the settings every GAN config starts from.

Generator: z (100, N(0, I)) → dense 512 → dense 512 → dense 784, BatchNorm and ReLU after the
hidden layers, sigmoid output (images in [0, 1]). Discriminator: a CNN classifier of real/fake
(conv 64 and conv 128, 4×4 stride 2, LeakyReLU 0.2, BatchNorm on the second; dense 1024; one
logit). Binary cross-entropy with the non-saturating generator loss. Two Adam optimisers, each
with a StepLR-like schedule: the learning rate halves every 5 epochs.

The other GAN configs (dcgan, lsgan, cgan, wgan, wgan_gp) start from `adversarial_config` and
end with `shrink_for_smoke` here. Any combination of loss, prior, latent size, critic steps and
Lipschitz constraint runs, e.g. `--config.model.loss=hinge --config.model.prior=uniform`.
"""

import ml_collections

from configs import default


def _optimizer(base: ml_collections.ConfigDict, name: str, learning_rate: float, b1: float,
               b2: float) -> ml_collections.ConfigDict:
  optim = base.copy_and_resolve_references()
  optim.name = name
  optim.learning_rate = learning_rate
  optim.b1 = b1
  optim.b2 = b2
  return optim


def adversarial_config(argument: str | None = None) -> ml_collections.ConfigDict:
  """The fields of every GAN config, with the fully connected GAN's values (not yet shrunk)."""
  config = default.get_config(argument)
  m = config.model
  m.name = 'gan'
  m.latent_dim = 100
  m.prior = 'normal'                 # normal | uniform ([-1, 1]) | laplace | spherical
  m.loss = 'non_saturating'          # non_saturating | minimax | least_squares | wasserstein | hinge
  m.pixel_range = 'unit'             # unit: [0, 1], sigmoid output | symmetric: [-1, 1], tanh output
  m.conditional = False              # one-hot labels into G (with z) and into D (with the image)
  m.n_critic = 1                     # critic updates per generator update
  m.gradient_penalty = 0.0           # lambda of WGAN-GP's penalty; 0 = none
  m.weight_clip = 0.0                # WGAN's clipping bound c on every critic weight; 0 = none
  m.generator = ml_collections.ConfigDict()
  m.generator.dense_features = (512, 512)   # hidden dense blocks (Dense, BatchNorm, ReLU)
  m.generator.conv_features = ()            # () = dense to the image; else a feature map, upsampled
  m.generator.batch_norm = True
  m.discriminator = ml_collections.ConfigDict()
  m.discriminator.conv_features = (64, 128)  # 4×4 stride-2 convs; () = fully connected critic
  m.discriminator.dense_features = (1024,)
  m.discriminator.batch_norm = True          # on every conv but the first

  # Two optimisers: optim_g for the generator, optim_d for the discriminator (critic).
  config.optim_g = _optimizer(config.optim, 'adam', 2e-4, 0.5, 0.999)
  config.optim_g.decay_every_epochs = 5
  config.optim_g.decay_factor = 0.5
  config.optim_d = config.optim_g.copy_and_resolve_references()
  del config.optim

  config.train.batch_size = 64
  config.train.num_steps = 3000
  config.sample.label = -1           # conditional GANs: the class to sample; -1 = every class in turn
  config.eval.epoch_samples = 1000   # samples classified at each epoch's end (mode collapse); 0 = off
  return config


def _shrunk(features) -> tuple[int, ...]:
  return tuple(max(4, width // 32) for width in features)


def shrink_for_smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Tiny networks (same layers) and a short run when the config asks for smoke."""
  if config.smoke:
    m = config.model
    m.latent_dim = 8
    m.generator.dense_features = _shrunk(m.generator.dense_features)
    m.generator.conv_features = _shrunk(m.generator.conv_features)
    m.discriminator.conv_features = _shrunk(m.discriminator.conv_features)
    m.discriminator.dense_features = _shrunk(m.discriminator.dense_features)
    config.eval.epoch_samples = 64
  return default.shrink_for_smoke(config)


def get_config(argument: str | None = None) -> ml_collections.ConfigDict:
  return shrink_for_smoke(adversarial_config(argument))
