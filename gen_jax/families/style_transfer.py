"""Neural style transfer (Gatys, Ecker & Bethge, 2016): an image optimised so that its VGG19
features match a content image's and its features' Gram matrices match those of style images.

This is not a `ModelFamily`: nothing is learnt from a dataset and there are no network parameters
to train. The variable is the image itself, a few hundred quasi-Newton iterations on one picture;
the training loop's batches, evaluation splits and sample metrics have nothing to act on. The
runner (`gen_jax.stylize`) owns the workdir, checkpoints and pictures; this module unpacks the
config once (`StyleTransfer`) and holds the optimisation:

- Losses (`gen_jax.objectives.style_losses`): content at `content_layers`, style at
  `style_layers`, each layer with its weight, plus total variation, scaled by `content_weight`,
  `style_weight` and `tv_weight`. Several style images are blended by blending their Gram
  matrices with the normalised `style_weights`: the gradient is exactly that of the weighted sum
  of the per-style losses (the two differ by a constant).
- Optimiser: L-BFGS, with optax's zoom line search (`optax.lbfgs`, its first trial taken outside
  the search's loop) or with none (PyTorch's `torch.optim.LBFGS` as the course runs it: a fixed
  step, one loss evaluation an iteration); both from `gen_jax.runtime.lbfgs`; or Adam. A dispatch
  runs K iterations, on accelerators as a compiled `lax.fori_loop` (K is an argument, not a
  constant of the program: every dispatch length shares one compilation); on the CPU as K calls
  of one compiled iteration, because XLA's CPU backend runs convolutions inside a loop body
  through a slower path.
- The image's range: `sigmoid` optimises logits, image = sigmoid(logits): always in (0, 1), a
  smooth unconstrained problem whose L-BFGS memory stays valid throughout; its cost is that pixels
  near black or white move slowly (a flat sigmoid), so starting pixels are kept in [0.01, 0.99].
  `clamp` optimises the pixels themselves and clamps them to [0, 1] at the end of each dispatch,
  then restarts the optimiser's memory if the clamp moved anything (L-BFGS's curvature pairs and
  cached gradient belong to the unclamped point). With random filters the image wanders far out
  of range within a dispatch and each clamp undoes much of the progress (configs/style_transfer.py
  gives the measurement): `sigmoid` is the default.
- Coarse to fine: the result's longer side is at most `max_size`; with `num_scales` > 1 the
  optimisation starts at 1/2^(num_scales-1) of that size, and each finer scale starts from the
  coarser result enlarged, which settles the large structures cheaply.
- Colour preservation (Gatys et al., 2017, luminance-only transfer): the optimisation runs on the
  luminance Y of YIQ, with each style's luminance matched to the content's mean and spread, and
  the result takes the content's chrominance (I, Q).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax import lax

from gen_jax.data import images as picture_io
from gen_jax.data import vgg19_weights
from gen_jax.data.dataset import DataError
from gen_jax.models import style_transfer as vgg
from gen_jax.objectives import style_losses
from gen_jax.runtime import lbfgs

OPTIMISERS = ('lbfgs', 'adam')
LINE_SEARCHES = ('zoom', 'none')          # L-BFGS's: optax's zoom search | a fixed step (PyTorch's)
DISPATCH_FORMS = ('auto', 'loop', 'calls')   # auto: calls on the CPU, a loop elsewhere
IMAGE_RANGES = ('clamp', 'sigmoid')
FEATURES = ('auto', 'random') + vgg19_weights.FORMATS
INITS = ('content', 'noise')   # or a picture (a path or skimage:<name>)
SIGMOID_MARGIN = 0.01          # starting pixels are kept this far from 0 and 1 (finite logits)
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]], np.float32)
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ).astype(np.float32)
RANDOM_FEATURES_NOTE = 'RANDOM VGG19 filters, NOT the pretrained network'


@dataclasses.dataclass(frozen=True)
class Objective:
  """What the loss is made of, hashable: a static argument of the compiled iterations."""
  content_layers: tuple[str, ...]
  content_layer_weights: tuple[float, ...]
  style_layers: tuple[str, ...]
  style_layer_weights: tuple[float, ...]
  content_weight: float
  style_weight: float
  tv_weight: float
  weights_format: str     # keras | torchvision | random: preprocessing and feature scale
  pooling: str

  @property
  def network(self) -> vgg.VGG19Features:
    return vgg.VGG19Features(outputs=tuple(dict.fromkeys(self.content_layers + self.style_layers)),
                             pooling=self.pooling)

  def features(self, vgg_params, images: jax.Array) -> dict[str, jax.Array]:
    """(N, H, W, C) images in [0, 1] (C = 1: luminance, shown to VGG as grey) → the layers used."""
    chex.assert_rank(images, 4)
    images = jnp.broadcast_to(images, images.shape[:3] + (3,))
    inputs = vgg19_weights.preprocess(images, 'torchvision' if self.weights_format == 'random'
                                      else self.weights_format)
    scale = vgg19_weights.FEATURE_SCALE.get(self.weights_format, 1.0)
    return {k: v * scale for k, v in self.network.apply({'params': vgg_params}, inputs).items()}

  def targets(self, vgg_params, content: jax.Array, styles: Sequence[jax.Array],
              blend: Sequence[float]) -> dict:
    """Content features and blended style Gram matrices, for (H, W, C) content and style images."""
    content_features = self.features(vgg_params, content[None])
    grams = {layer: 0.0 for layer in self.style_layers}
    for style, weight in zip(styles, blend):
      style_features = self.features(vgg_params, style[None])
      for layer in self.style_layers:
        grams[layer] = grams[layer] + weight * style_losses.gram_matrix(style_features[layer])
    return {'content': {layer: content_features[layer] for layer in self.content_layers},
            'style': grams}

  def parts(self, vgg_params, targets: dict, image: jax.Array) -> dict[str, jax.Array]:
    """The weighted content, style and total-variation losses of one (H, W, C) image."""
    chex.assert_rank(image, 3)
    found = self.features(vgg_params, image[None])
    content = sum(w * style_losses.content_loss(found[layer], targets['content'][layer])
                  for layer, w in zip(self.content_layers, self.content_layer_weights))
    style = sum(w * style_losses.style_loss(found[layer], targets['style'][layer])
                for layer, w in zip(self.style_layers, self.style_layer_weights))
    return {'content': self.content_weight * content, 'style': self.style_weight * style,
            'tv': self.tv_weight * style_losses.total_variation(image[None])}


compute_targets = jax.jit(Objective.targets, static_argnums=0)


def to_image(variable: jax.Array, image_range: str) -> jax.Array:
  return jax.nn.sigmoid(variable) if image_range == 'sigmoid' else variable


def from_image(image: jax.Array, image_range: str) -> jax.Array:
  if image_range == 'sigmoid':
    image = jnp.clip(image, SIGMOID_MARGIN, 1.0 - SIGMOID_MARGIN)
    return jnp.log(image) - jnp.log1p(-image)
  return jnp.asarray(image, jnp.float32)


class OptimiserSpec(NamedTuple):
  """config.optimiser's fields that build the optimiser; hashable, a static argument."""
  name: str
  learning_rate: float
  memory_size: int
  line_search: str

  @property
  def searches_lines(self) -> bool:
    return self.name == 'lbfgs' and self.line_search == 'zoom'


def make_optimiser(name: str, learning_rate: float, memory_size: int,
                   line_search: str) -> optax.GradientTransformation:
  if name == 'adam':
    return optax.adam(learning_rate)
  if line_search == 'zoom':   # no learning rate: the line search chooses each step's length
    return lbfgs.unit_step_first_lbfgs(memory_size)
  return lbfgs.fixed_step_lbfgs(memory_size)   # PyTorch's step length, 1


def clamp_and_restart(variable: jax.Array, optimiser_state, optimiser) -> tuple[jax.Array, object]:
  """`variable` clamped to [0, 1]; the optimiser's state restarted when that moved a pixel."""
  clamped = jnp.clip(variable, 0.0, 1.0)
  moved = jnp.any(clamped != variable)
  fresh = optimiser.init(clamped)
  return clamped, jax.tree.map(lambda new, old: jnp.where(moved, new, old), fresh, optimiser_state)


def _iteration(objective: Objective, optimiser_args: OptimiserSpec, image_range: str, vgg_params,
               targets: dict, carry: tuple) -> tuple:
  """One optimiser iteration: (variable, optimiser state, loss evaluations so far) → the next.
  L-BFGS's line search may evaluate the loss and its gradient several times an iteration."""
  optimiser = make_optimiser(*optimiser_args)
  v, state, evaluations = carry

  def total(v):
    return sum(objective.parts(vgg_params, targets, to_image(v, image_range)).values())

  if optimiser_args.searches_lines:
    cached = jnp.isfinite(optax.tree.get(state, 'value'))   # else evaluated here, at v
    value, grad = optax.value_and_grad_from_state(total)(v, state=state)
    updates, state = optimiser.update(grad, state, v, value=value, grad=grad, value_fn=total)
    evaluations += jnp.where(cached, 0, 1) + optax.tree.get(state, 'num_linesearch_steps')
  else:
    updates, state = optimiser.update(jax.grad(total)(v), state, v)
    evaluations += 1
  return optax.apply_updates(v, updates), state, evaluations


def _iterations(objective: Objective, optimiser_args: OptimiserSpec, image_range: str, vgg_params,
                targets: dict, carry: tuple, count: jax.Array) -> tuple:
  """`count` iterations in one loop (`count` traced: every dispatch length shares a program)."""
  return lax.fori_loop(0, count, lambda _, carry: _iteration(
      objective, optimiser_args, image_range, vgg_params, targets, carry), carry)


def _end_dispatch(objective: Objective, optimiser_args: OptimiserSpec, image_range: str, vgg_params,
                  targets: dict, variable: jax.Array, optimiser_state):
  """What closes a dispatch: the clamp (and restart) of the `clamp` range, and the losses."""
  if image_range == 'clamp':
    variable, optimiser_state = clamp_and_restart(variable, optimiser_state,
                                                  make_optimiser(*optimiser_args))
  parts = objective.parts(vgg_params, targets, to_image(variable, image_range))
  return variable, optimiser_state, dict(parts, total=sum(parts.values()))


def luminance(image: np.ndarray) -> np.ndarray:
  """(H, W, 3) RGB → (H, W, 1) luminance Y (YIQ)."""
  return np.asarray(image, np.float32) @ RGB_TO_YIQ[:1].T


def match_luminance(style_y: np.ndarray, content_y: np.ndarray) -> np.ndarray:
  """A style's luminance shifted and scaled to the content's mean and standard deviation."""
  spread = content_y.std() / max(float(style_y.std()), 1e-6)
  return np.clip((style_y - style_y.mean()) * spread + content_y.mean(), 0.0, 1.0)


def with_content_colour(result_y: np.ndarray, content: np.ndarray) -> np.ndarray:
  """The result's luminance (H, W, 1) with the content's chrominance (I, Q), as RGB in [0, 1]."""
  yiq = np.asarray(content, np.float32) @ RGB_TO_YIQ.T
  yiq = np.concatenate([np.asarray(result_y, np.float32), yiq[..., 1:]], axis=-1)
  return np.clip(yiq @ YIQ_TO_RGB.T, 0.0, 1.0)


def _normalised(weights: Sequence[float], count: int) -> tuple[float, ...]:
  weights = tuple(float(w) for w in weights) or (1.0,) * count
  return tuple(w / sum(weights) for w in weights)


class StyleTransfer:
  """The config unpacked once: the objective, the optimiser, the scales and the images' roles.

  `content` and `styles` are (H, W, 3) RGB pictures in [0, 1] of any size; `init` one too, or
  None (then config.init says `content` or `noise`).
  """

  def __init__(self, config: ml_collections.ConfigDict, vgg_params, weights_format: str,
               content: np.ndarray, styles: Sequence[np.ndarray], init: np.ndarray | None):
    m, o = config.model, config.optimiser
    self.objective = Objective(
        tuple(m.content_layers), _normalised(m.content_layer_weights, len(m.content_layers)),
        tuple(m.style_layers), _normalised(m.style_layer_weights, len(m.style_layers)),
        float(m.content_weight), float(m.style_weight), float(m.tv_weight), weights_format,
        m.pooling)
    self.optimiser_args = OptimiserSpec(o.name, float(o.learning_rate), int(o.memory_size),
                                        o.line_search)
    self.optimiser = make_optimiser(*self.optimiser_args)
    self.dispatch_form = o.dispatch_form
    if self.dispatch_form == 'auto':
      self.dispatch_form = 'calls' if jax.default_backend() == 'cpu' else 'loop'
    # VGG's weights are fixed for the whole transfer: compiled into the programs as constants,
    # they are laid out for the convolutions once, not at every evaluation (PERFORMANCE.md).
    fixed = (self.objective, self.optimiser_args, config.image_range, vgg_params)
    self._one_iteration = jax.jit(functools.partial(_iteration, *fixed))
    self._iterations = jax.jit(functools.partial(_iterations, *fixed))
    self._end_dispatch = jax.jit(functools.partial(_end_dispatch, *fixed))
    self.image_range = config.image_range
    self.preserve_colour = config.preserve_colour
    self.blend = _normalised(config.style_weights, len(styles))
    self.style_scale = config.style_scale
    self.vgg_params = vgg_params
    self.content, self.styles, self.init = content, list(styles), init
    self.init_kind, self.seed = config.init, config.seed
    self.sizes = scale_sizes(content.shape[0], content.shape[1], config.max_size, config.num_scales,
                             self.minimum_side)
    coarse = config.optimiser.coarse_iterations
    self.boundaries = tuple(coarse * (s + 1) for s in range(len(self.sizes) - 1))

  @property
  def minimum_side(self) -> int:
    """The smallest image side that leaves the deepest layer used at least one pixel."""
    deepest = max(vgg.LAYERS.index(n) for n in self.objective.content_layers + self.objective.style_layers)
    return 2 ** sum(name.startswith('pool') for name in vgg.LAYERS[:deepest])

  def scale_of(self, iteration: int) -> int:
    """The scale that iteration `iteration` (0-based) runs at."""
    return sum(iteration >= b for b in self.boundaries)

  def scale_inputs(self, scale: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The content and style pictures at `scale`, as optimised: RGB, or matched luminance."""
    height, width = self.sizes[scale]
    content = picture_io.resize(self.content, height, width)
    styles = []
    for style in self.styles:
      longer = max(1, round(self.style_scale * max(height, width)))
      style_h, style_w = picture_io.fitted_size(style.shape[0], style.shape[1], longer)
      styles.append(picture_io.resize(style, max(style_h, self.minimum_side),
                                      max(style_w, self.minimum_side)))
    if self.preserve_colour:
      content_y = luminance(content)
      return content_y, [match_luminance(luminance(s), content_y) for s in styles]
    return content, styles

  def targets(self, scale: int) -> dict:
    content, styles = self.scale_inputs(scale)
    return compute_targets(self.objective, self.vgg_params, content, styles, self.blend)

  def start(self, scale: int, previous: np.ndarray | None = None) -> tuple[jax.Array, object]:
    """The image variable and optimiser state that begin `scale`: from the coarser result
    `previous` enlarged, or (the first scale) from the content, noise or the given picture."""
    height, width = self.sizes[scale]
    channels = 1 if self.preserve_colour else 3
    if previous is not None:
      image = picture_io.resize(previous, height, width)
    elif self.init is not None:
      image = picture_io.resize(self.init, height, width)
      image = luminance(image) if self.preserve_colour else image
    elif self.init_kind == 'noise':
      image = np.asarray(jax.random.uniform(jax.random.PRNGKey(self.seed), (height, width, channels)))
    else:
      image = self.scale_inputs(scale)[0]
    chex.assert_shape(image, (height, width, channels))
    variable = from_image(image, self.image_range)
    # Strongly typed, as the compiled iterations return it: one compilation serves every dispatch.
    state = jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), self.optimiser.init(variable))
    return variable, state

  def iterate(self, targets: dict, variable: jax.Array, optimiser_state, count: int):
    """`count` iterations in one dispatch → (variable, optimiser state, weighted losses, loss
    evaluations), all on the device."""
    carry = (variable, optimiser_state, jnp.zeros((), jnp.int32))
    if self.dispatch_form == 'loop':
      carry = self._iterations(targets, carry, jnp.asarray(count, jnp.int32))
    else:
      for _ in range(count):
        carry = self._one_iteration(targets, carry)
    variable, optimiser_state, evaluations = carry
    variable, optimiser_state, losses = self._end_dispatch(targets, variable, optimiser_state)
    return variable, optimiser_state, losses, evaluations

  def optimised_image(self, variable: jax.Array) -> np.ndarray:
    """What the optimiser sees: (H, W, 3) RGB or (H, W, 1) luminance, in [0, 1]."""
    return np.clip(np.asarray(to_image(variable, self.image_range)), 0.0, 1.0)

  def picture(self, variable: jax.Array) -> np.ndarray:
    """The result as RGB: with colour preservation, its luminance with the content's colours."""
    image = self.optimised_image(variable)
    if not self.preserve_colour:
      return image
    content = picture_io.resize(self.content, *image.shape[:2])
    return with_content_colour(image, content)


def scale_sizes(height: int, width: int, max_size: int, num_scales: int,
                minimum_side: int) -> list[tuple[int, int]]:
  """The (height, width) of each scale, coarse to fine; the finest fits `max_size`. Scales whose
  smaller side would fall below `minimum_side` are left out (logged)."""
  final_h, final_w = picture_io.fitted_size(height, width, max_size)
  if min(final_h, final_w) < minimum_side:
    raise DataError(
        f'the content image at {final_h}x{final_w} is too small for the deepest layer used '
        f'(sides of at least {minimum_side} pixels); use a larger config.max_size or shallower layers')
  sizes = [(max(1, round(final_h / 2 ** k)), max(1, round(final_w / 2 ** k)))
           for k in reversed(range(num_scales))]
  kept = [size for size in sizes if min(size) >= minimum_side]
  if len(kept) < len(sizes):
    logging.info('Coarsest %d scale(s) %s left out: smaller than %d pixels', len(sizes) - len(kept),
                 sizes[:len(sizes) - len(kept)], minimum_side)
  return kept


def vgg_parameters(features: str, weights_dir: str, seed: int, layers: Sequence[str]) -> tuple[dict, str]:
  """VGG19's parameters and their format (keras | torchvision | random) as config.model.features
  asks: a pretrained format (fetched when absent), `random`, or `auto`: the pretrained weights in
  weights_dir if there are any, else random filters, said plainly in the log."""
  directory = vgg19_weights.default_cache_dir() if not weights_dir else weights_dir
  if features == 'auto':
    features = vgg19_weights.present_format(directory) or 'random'
    if features == 'random':
      logging.warning('No VGG19 weights in %s (%s or %s): using %s. Set config.model.features=keras '
                      'or torchvision to fetch them.', directory, vgg19_weights.KERAS_FILE.name,
                      vgg19_weights.TORCHVISION_NPZ, RANDOM_FEATURES_NOTE)
  if features == 'random':
    return vgg.random_params(seed, layers), 'random'
  return vgg19_weights.load(features, directory), features
