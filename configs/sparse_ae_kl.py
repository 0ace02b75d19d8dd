"""Sparse autoencoder, KL variant: sigmoid code units pushed to a mean activation of rho = 0.05.

The penalty is lambda · sum_j KL(rho || rho_hat_j), rho_hat_j the unit's mean activation over the
batch, in place of the L1 norm of configs/sparse_ae.py.
"""

from configs import sparse_ae


def get_config(argument: str | None = None):
  config = sparse_ae.get_config(argument)
  config.name = 'sparse_ae_kl'
  config.model.code_activation = 'sigmoid'
  config.model.code_penalty = 'kl'
  config.model.sparsity_target = 0.05
  config.model.sparsity_weight = 1.0
  config.eval.sparsity_threshold = 0.05
  return config
