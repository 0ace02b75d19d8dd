"""Convolutional autoencoder with a dense bottleneck, on handwritten digits.

Encoder: 3×3 stride-2 convolutions with 32 and 64 features (28 → 14 → 7, ReLU), a dense layer to
a 32-unit code. Decoder: a dense layer back to 7×7×64, stride-2 transposed convolutions with 32
features and then the image channels (7 → 14 → 28). Binary cross-entropy of the output logits.

This config holds every field of the autoencoder family (gen_jax.families.autoencoder); the
linear, denoising and sparse configs start from it and change what makes them what they are.
"""

import ml_collections

from configs import default


def get_config(argument: str | None = None):
  config = default.get_config(argument)
  config.name = 'ae_conv'
  smoke = config.smoke

  config.model.name = 'autoencoder'
  config.model.architecture = 'conv'          # linear | mlp | conv
  config.model.code_dim = 32                  # bottleneck size; may exceed the pixel count (overcomplete)
  config.model.conv_features = (32, 64)       # conv: one stride-2 layer each
  config.model.hidden_dims = (256,)           # mlp: hidden widths of the encoder (decoder mirrors them)
  config.model.code_activation = 'linear'     # linear | relu | sigmoid
  config.model.reconstruction_loss = 'bce'    # bce (output as logits) | mse (output as pixels)
  config.model.code_penalty = 'none'          # none | l1 | kl (KL to a target mean activation)
  config.model.sparsity_weight = 0.0          # lambda of the code penalty
  config.model.sparsity_target = 0.05         # rho of the kl penalty

  # Input corruption of a denoising autoencoder: none | gaussian (std) | salt_and_pepper
  # (probability, half to 0 and half to 1) | masking (probability of a pixel set to 0) |
  # block_occlusion (a block_size square set to 0) | watermark (a fixed pattern at opacity).
  config.model.corruption = ml_collections.ConfigDict()
  config.model.corruption.name = 'none'
  config.model.corruption.std = 0.3
  config.model.corruption.probability = 0.2
  config.model.corruption.block_size = 10
  config.model.corruption.opacity = 0.7

  config.optim.name = 'adam'
  config.optim.learning_rate = 1e-3
  config.train.batch_size = 64
  config.train.num_steps = 3000

  config.eval.sparsity_threshold = 0.01       # |code unit| at most this counts as zero
  config.eval.probe_max_train = 0             # training examples for the linear probe; 0 = all
  if smoke:
    config.model.conv_features = (4, 8)
    config.model.code_dim = 8
    config.model.hidden_dims = (32,)
  return default.shrink_for_smoke(config)
