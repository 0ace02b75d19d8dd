"""CycleGAN (the course material's unpaired translation model), on MNIST ↔ scikit-learn's digits.

Domain A is MNIST (its IDX files in `data.path`, `../shared/data/mnist` from the project root;
`--config.data.name=mnist --config.data.path=` reads tensorflow-datasets' copy instead), domain B
scikit-learn's 8×8 digits enlarged to 32×32: two real handwriting domains, thin sharp strokes
against blurred blocky ones, no pairs between them, digit labels on both sides (for the class-kept
fractions). `--config.data.unpaired.task=strokes` translates thinned ↔ thickened MNIST digits
instead. A user's own two domains train the same config:

  --config.data.name=folder --config.data.path=DIR --config.data.unpaired.task=domains
  (DIR holding trainA/ trainB/ testA/ testB/, as CycleGAN's datasets ship), or
  --config.data.name=cycle_gan/horse2zebra --config.data.path= --config.data.unpaired.task=domains
  (tensorflow-datasets), with the paper's settings for photographs: data.image_size=256,
  data.channels=3, model.generator.features=64, model.generator.num_blocks=9,
  model.discriminator.features=64, model.discriminator.num_layers=3, train.batch_size=1.

Networks, scaled to 32×32 digits: ResNet generators of 32 channels, 2 downsamplings (to 8×8 maps
of 128 channels) and 6 residual blocks (the paper's choice below 256 pixels), instance
normalisation; PatchGANs of 1 stride-2 layer (16×16 patches of a 32×32 digit, as Pix2Pix's
config argues). Losses: least squares, cycle λ = 10, identity 0.5 λ; a pool of 50 earlier
translations per critic. Adam 2e-4 (0.5, 0.999), constant for the first half, then linearly to 0.
Images in [-1, 1] (tanh).
"""

import ml_collections

from configs import default


def get_config(argument: str | None = None) -> ml_collections.ConfigDict:
  config = default.get_config(argument)
  config.name = 'cyclegan'
  config.data.name = 'idx'           # domain A's source
  config.data.path = '../shared/data/mnist'
  config.data.image_size = 32        # a multiple of 2^num_downsamplings
  config.data.unpaired = ml_collections.ConfigDict()
  u = config.data.unpaired
  u.task = 'sources'                 # sources (A: data.name, B: b_name) | strokes | domains (trainA/…)
  u.b_name = 'digits'                # domain B's source (task 'sources')
  u.b_path = ''
  u.seed = 0                         # the smaller domain's repetition order

  m = config.model
  m.name = 'cyclegan'
  m.loss = 'least_squares'           # least_squares | non_saturating
  m.cycle_weight = 10.0              # λ
  m.identity_weight = 5.0            # 0.5 λ; 0 turns the identity loss off
  m.pool_size = 50                   # earlier translations per critic; 0 = none
  m.generator = ml_collections.ConfigDict()
  m.generator.features = 32          # channels at full resolution, doubling at each downsampling
  m.generator.num_downsamplings = 2
  m.generator.num_blocks = 6
  m.generator.normalisation = 'instance'   # batch | instance | none
  m.discriminator = ml_collections.ConfigDict()
  m.discriminator.features = 64
  m.discriminator.num_layers = 1     # stride-2 layers: patch side 16 (1), 34 (2), 70 (3)
  m.discriminator.normalisation = 'instance'

  config.optim.name = 'adam'
  config.optim.learning_rate = 2e-4
  config.optim.b1 = 0.5
  config.optim.linear_decay_fraction = 0.5
  config.optim_g = config.optim
  config.optim_d = config.optim.copy_and_resolve_references()
  del config.optim

  config.train.batch_size = 32
  config.train.num_steps = 2000
  config.train.eval_every = 1000
  config.train.best_metric = 'holdout_cycle_l1_a'
  config.train.best_mode = 'min'
  config.sample.direction = 'AtoB'   # --mode=sample: AtoB translates held-out A images with G, BtoA B's with F
  config.sample.input_dir = ''       # --mode=sample translates these images ('' = the held-out ones)

  if config.smoke:
    m.generator.features = 4
    m.generator.num_blocks = 1
    m.discriminator.features = 8
    m.pool_size = 8
    config.data.image_size = 16
  return default.shrink_for_smoke(config)
