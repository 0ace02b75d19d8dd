"""Linear autoencoder: one dense layer to a 16-unit code and one back, no nonlinearity, squared error.

With a linear encoder and decoder trained on squared error, the optimal decoder spans the same
subspace as the leading principal components (the course material's autoencoder/PCA link): the
evaluation reports the principal angles between the two subspaces, and the deep-features table
puts the code beside PCA coordinates of the same size.
"""

from configs import ae_conv, default


def get_config(argument: str | None = None):
  config = ae_conv.get_config(argument)
  config.name = 'ae_linear'
  config.model.architecture = 'linear'
  config.model.code_dim = 16
  config.model.code_activation = 'linear'
  config.model.reconstruction_loss = 'mse'
  # Gradient descent reaches the principal subspace slowly along directions of small variance:
  # a high rate, then StepLR's tenfold decay (after 300 epochs: step 6,600 on digits) to settle.
  config.optim.learning_rate = 1e-2
  config.optim.decay_every_epochs = 300
  config.optim.decay_factor = 0.1
  config.train.num_steps = 10000
  return default.shrink_for_smoke(config)
