"""Sparse autoencoder: an overcomplete 1,024-unit ReLU code of 784-pixel digits, with an L1 penalty.

Encoder and decoder are single dense layers; without a regulariser an overcomplete code could copy
its input. The loss is the binary cross-entropy plus lambda · sum_j |z_j| (`model.sparsity_weight`);
the fraction of code units at most `eval.sparsity_threshold` is reported and rises with lambda.
configs/sparse_ae_kl.py is the KL-to-target-activation variant.
"""

from configs import ae_conv


def get_config(argument: str | None = None):
  config = ae_conv.get_config(argument)
  config.name = 'sparse_ae'
  config.model.architecture = 'mlp'
  config.model.hidden_dims = ()
  config.model.code_dim = 256 if config.smoke else 1024
  config.model.code_activation = 'relu'
  config.model.code_penalty = 'l1'
  config.model.sparsity_weight = 0.1
  return config
