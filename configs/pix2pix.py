"""Pix2Pix (the course material's paired translation model), on digits: edge map → digit.

The course trains it on the facades pairs (256×256, batch 1); here the default pairs are made from
real digits and need no download: the input is the edge map of a digit, the target the digit
(`data.pairs.task`: `edges`, `masked` for inpainting a hidden 12×12 block, `low_resolution` for
4× super-resolution). `--config.data.name=idx --config.data.path=DIR` takes MNIST's IDX files;
a user's own side-by-side A|B pictures (facades, maps, edges2shoes) train the same config with
`--config.data.name=folder --config.data.path=DIR --config.data.pairs.task=side_by_side`, plus
the paper's settings for them: `data.image_size=256`, `data.channels=3`,
`data.pairs.jitter_size=286`, `data.pairs.mirror=True`, `model.discriminator.num_layers=3`,
`model.generator.features` of depth 8, `train.batch_size=1`.

Networks: a U-Net of depth 5 (32×32 down to 1×1, dropout 0.5 on the three innermost decoder
levels, BatchNorm) and a PatchGAN of one stride-2 layer. The paper's 3-layer PatchGAN sees 70×70
patches, more than a whole 32×32 digit, and would judge the image as one; one layer gives 14×14
scores of 16×16 patches, half a digit each. Losses: least squares (the course's `MSELoss`) plus
100 × L1; Adam 2e-4 (0.5, 0.999) for both networks, constant for the first half of training,
then linearly to zero. Images in [-1, 1] (tanh).
"""

import ml_collections

from configs import default


def get_config(argument: str | None = None) -> ml_collections.ConfigDict:
  config = default.get_config(argument)
  config.name = 'pix2pix'
  config.data.image_size = 32        # a multiple of 2^depth of the U-Net
  config.data.pairs = ml_collections.ConfigDict()
  p = config.data.pairs
  p.task = 'edges'                   # edges | masked | low_resolution | side_by_side (a folder)
  p.direction = 'AtoB'               # AtoB: input → digit (left → right half); BtoA the reverse
  p.seed = 0                         # where the masked task's blocks fall
  p.mask_size = 12                   # masked: side of the hidden block
  p.low_resolution_factor = 4        # low_resolution: 32×32 → 8×8 and back
  p.jitter_size = 0                  # >0: enlarged to this size and randomly cropped back (paper: 286)
  p.mirror = False                   # random left-right flips (off for digits: a mirrored 2 is no 2)

  m = config.model
  m.name = 'pix2pix'
  m.loss = 'least_squares'           # least_squares | non_saturating
  m.l1_weight = 100.0
  m.generator = ml_collections.ConfigDict()
  m.generator.features = (32, 64, 128, 128, 128)  # channels per U-Net level; depth = length
  m.generator.normalisation = 'batch'             # batch | instance | none
  m.generator.dropout_levels = 3                  # innermost decoder levels with dropout 0.5
  m.discriminator = ml_collections.ConfigDict()
  m.discriminator.features = 64                   # first layer's channels (doubling, up to 8×)
  m.discriminator.num_layers = 1                  # stride-2 layers: patch side 16 (1), 34 (2), 70 (3)
  m.discriminator.normalisation = 'batch'

  config.optim.name = 'adam'
  config.optim.learning_rate = 2e-4
  config.optim.b1 = 0.5
  config.optim.linear_decay_fraction = 0.5
  config.optim_g = config.optim
  config.optim_d = config.optim.copy_and_resolve_references()
  del config.optim

  config.train.batch_size = 64
  config.train.num_steps = 2000
  config.train.eval_every = 1000
  config.train.best_metric = 'holdout_l1'
  config.train.best_mode = 'min'
  config.sample.dropout = True       # the paper keeps dropout's noise on when translating
  config.sample.input_dir = ''       # --mode=sample translates these images ('' = held-out inputs)

  if config.smoke:
    m.generator.features = (8, 8, 8)
    m.generator.dropout_levels = 2
    m.discriminator.features = 8
    config.data.image_size = 16
  return default.shrink_for_smoke(config)
