"""The style transfer both sides run: configs/style_transfer.py made comparable with PyTorch's
tutorial (one scale, max pooling, no total variation, pixels clamped to [0, 1] as the tutorial
clamps them, L-BFGS without a line search as `torch.optim.LBFGS` runs it) on VGG19 with RANDOM
filters (no download; the speed does not depend on the filters' values): skimage's chelsea
painted with coffee, the content fitted to `size` pixels."""

from __future__ import annotations

from configs import style_transfer as style_config
from gen_jax.data import images
from gen_jax.families import style_transfer as family


def make_transfer(size: int, iterations: int) -> family.StyleTransfer:
  config = style_config.get_config()
  config.max_size, config.num_scales, config.image_range = size, 1, 'clamp'
  config.model.features, config.model.pooling, config.model.tv_weight = 'random', 'max', 0.0
  config.optimiser.iterations_per_dispatch = config.train.num_steps = iterations
  config.optimiser.line_search = 'none'
  layers = tuple(config.model.content_layers) + tuple(config.model.style_layers)
  params, weights_format = family.vgg_parameters('random', '', config.seed, layers)
  return family.StyleTransfer(config, params, weights_format, images.read_image(config.content),
                              [images.read_image(config.style)], None)
