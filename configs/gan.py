"""The course material's fully connected GAN, and the settings every GAN config starts from.

Generator, as the course gives it: z (100) → dense 512 → dense 512 → dense 784, BatchNorm and
ReLU after the hidden layers, sigmoid output (images in [0, 1]). Binary cross-entropy with the
non-saturating generator loss; two Adam optimisers (2e-4, 0.5, 0.999).

The course pairs it with a CNN discriminator (conv 64 and conv 128, BatchNorm, dense 1024) and a
learning rate halved every 5 epochs. Trained so on the MNIST IDX files (8,000 training images) it
collapses: D(real) ≈ 1 and D(fake) ≈ 0 from step ~100, one blob for every latent, recall 0, class
entropy 0.13 (issue 19; a PyTorch copy collapses the same way). The other choices below were made
by experiment on the same data (`--config.data.name=idx --config.data.path=../shared/data/mnist`,
evaluated on the 2,000 held-out images with the project's digit classifier; real data's class
entropy is 2.30):

- discriminator: one hidden dense layer of 256 units (LeakyReLU 0.2), no convolutions. A smaller D
  lets the generator keep up: at 5,000 steps FID 99 and class entropy 2.11 with every digit
  present, against FID 209, entropy 1.59 and no 0/1/5/6 with dense (512, 256); the course's conv D
  without BatchNorm still collapsed at 1,500 steps (recall 0, entropy 1.20).
- noise prior: uniform on [-1, 1] (the course samples z with `torch.rand`): FID 99 / entropy 2.11
  against 108 / 2.08 for N(0, I), about a tie.
- constant learning rates: with 125 steps an epoch, halving every 5 epochs leaves 1/256 of the rate
  by step 5,000 (FID 204, recall 0.003 with the decay; 99 and 0.23 without).
- D's learning rate stays 2e-4: 1e-4 gave FID 151. One-sided label smoothing (0.1) and dropout in D
  (0.3, as in the course's Keras assignment) were tried and gave no gain (FID 125 with dropout).
- 10,000 steps (about 4.5 minutes on one CPU core): FID 95.5, precision 0.43, recall 0.32,
  coverage 0.25, class entropy 2.12, no class above 20 %; at 1,500 steps every setting was still
  speckled. `experiments/mnist_results.py` reran it: FID 109 at step 10,000, 82 at the best
  evaluation (step 8,000, kept in best/), class entropy 2.13 and 2.21.

The other GAN configs (dcgan, lsgan, cgan, wgan, wgan_gp) start from `adversarial_config` and
end with `shrink_for_smoke` here. Any combination of loss, prior, latent size, critic steps and
Lipschitz constraint runs, e.g. `--config.model.loss=hinge --config.model.prior=normal`.
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
  """The fully connected GAN with the discriminator, prior and schedule chosen above."""
  config = adversarial_config(argument)
  config.name = 'gan'
  m = config.model
  m.prior = 'uniform'
  m.discriminator.conv_features = ()
  m.discriminator.dense_features = (256,)
  for optim in (config.optim_g, config.optim_d):
    optim.decay_every_epochs = 0
  config.train.num_steps = 10000
  config.train.eval_every = 2000     # keep the best checkpoint by FID along the way
  return shrink_for_smoke(config)
