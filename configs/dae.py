"""Denoising autoencoder: the convolutional autoencoder trained to map noisy digits to clean ones.

The corruption is chosen with `model.corruption.name` (gaussian, salt_and_pepper, masking,
block_occlusion, watermark; see configs/ae_conv.py); here additive Gaussian noise of std 0.3,
e.g. `--config.model.corruption.name=salt_and_pepper --config.model.corruption.probability=0.3`
for the course's other noise. Evaluation reports the PSNR of the noisy input and of the denoised
output on held-out images and writes noisy / denoised / clean grids.
"""

from configs import ae_conv


def get_config(argument: str | None = None):
  config = ae_conv.get_config(argument)
  config.name = 'dae'
  config.model.corruption.name = 'gaussian'
  config.model.corruption.std = 0.3
  config.model.code_dim = 8 if config.smoke else 64
  return config
