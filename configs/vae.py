"""Convolutional VAE of the course assignment on handwritten digits, with a 2-D latent.

Encoder: conv 32, conv 32, conv 64 stride 2 (3×3, ReLU), dense 128, then mean and log-variance.
Decoder: dense 128, dense to 14×14×64, transposed conv 32 stride 2, transposed conv 32, transposed
conv to the image channels. Bernoulli likelihood (binary cross-entropy), KL to N(0, I), beta = 1.
Held-out evaluation reports the negative ELBO and an importance-weighted bound on -log p(x).
"""

from configs import default


def get_config(argument: str | None = None):
  config = default.get_config(argument)
  config.name = 'vae'
  smoke = config.smoke

  config.model.name = 'vae'
  config.model.latent_dim = 2
  config.model.conv_features = (32, 32, 64)   # the last conv has stride 2
  config.model.hidden_dim = 128
  config.model.likelihood = 'bernoulli'       # bernoulli (BCE) | gaussian (MSE)
  config.model.observation_std = 0.1          # gaussian likelihood only
  config.model.beta = 1.0                     # weight of the KL term (beta-VAE when > 1)

  config.optim.name = 'adam'
  config.optim.learning_rate = 1e-3
  config.train.batch_size = 64
  config.train.num_steps = 3000

  config.eval.iwae_samples = 64               # k of the importance-weighted bound
  if smoke:
    config.model.conv_features = (4, 4, 8)
    config.model.hidden_dim = 16
    config.eval.iwae_samples = 4
  return default.shrink_for_smoke(config)
