"""Pix2Pix: paired image-to-image translation by a conditional GAN (Isola et al., 2017).

The generator (a U-Net) translates an input image; the discriminator (a PatchGAN) sees the input
beside a real or a translated target and scores every patch. The generator minimises the
adversarial loss (least squares by default, as the course material's `MSELoss`; non-saturating
cross-entropy selectable) plus `l1_weight` (100) times the L1 distance to the target: the L1 term
gets the image right as a whole, the discriminator makes it sharp where L1 alone blurs.

The training step is the GAN family's round (gen_jax.objectives.adversarial_game): the U-Net runs
once, under `jax.vjp`; the PatchGAN updates on (input, target) against (input, translation); then
the generator updates through the pull-back, with the L1 term as its image loss. Each network has
its own optax state. Images are trained on in [-1, 1] (tanh output) and reported in [0, 1]; the
`l1` metrics are in [0, 1] units, so the training and the held-out one compare directly.

The per-epoch pictures follow the first held-out inputs (input | translation | target). Sample
quality is judged by the digit classifier where the pairs carry digit labels: FID and the rest of
the translations against the targets, and `class_match`, the fraction of translations classified
as their target's digit (does the translation keep the digit?).
"""

from __future__ import annotations

import pathlib
from typing import Any

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import struct

from gen_jax.data import pairs
from gen_jax.data.pixel_ranges import PIXEL_RANGES
from gen_jax.evaluation import figures
from gen_jax.evaluation import translations
from gen_jax.families.base import ModelFamily
from gen_jax.models.pix2pix import NORMALISATIONS, PatchDiscriminator, UNet, receptive_field, score_map_size
from gen_jax.objectives import adversarial_game, adversarial_losses
from gen_jax.runtime import config_checks, metric_writers, optimizers, parallel
from gen_jax.runtime.players import Player, apply_in_training

# The adversarial losses Pix2Pix is trained with: the course's, and the paper's.
LOSSES = ('least_squares', 'non_saturating')


class Pix2PixState(struct.PyTreeNode):
  step: jax.Array
  generator: Player
  critic: Player


def validate_patch_critic(config) -> None:
  """The PatchGAN critic's fields and the two players' optimisers, which the translation models
  (Pix2Pix, CycleGAN) share."""
  config_checks.require_int(config, 'model.discriminator.features', minimum=1, maximum=4096)
  layers = config_checks.require_int(config, 'model.discriminator.num_layers', minimum=0, maximum=8)
  config_checks.require_choice(config, 'model.discriminator.normalisation', NORMALISATIONS)
  optimizers.validate(config, 'optim_g')
  optimizers.validate(config, 'optim_d')
  size = config.data.image_size
  if score_map_size(size, layers) < 1:
    raise config_checks.ConfigError(
        f'config.model.discriminator.num_layers={layers} halves a {size}×{size} image to nothing; '
        f'use fewer layers')


class Pix2PixFamily(ModelFamily):
  """U-Net generator and PatchGAN discriminator on paired data; see the module docstring."""

  TRANSLATES = True

  @classmethod
  def validate(cls, config) -> None:
    if 'pairs' not in config.data:
      raise config_checks.ConfigError(
          'model pix2pix translates paired images and config.data has no pairs block; start from '
          'configs/pix2pix.py, which sets config.data.pairs')
    config_checks.require_choice(config, 'model.loss', LOSSES)
    config_checks.require_number(config, 'model.l1_weight', low=0)
    depth = len(config_checks.require_positive_ints(config, 'model.generator.features'))
    config_checks.require_choice(config, 'model.generator.normalisation', NORMALISATIONS)
    config_checks.require_int(config, 'model.generator.dropout_levels', minimum=0, maximum=depth - 1)
    validate_patch_critic(config)
    config_checks.require_bool(config, 'sample.dropout')
    config_checks.require_str(config, 'sample.input_dir')
    size = config.data.image_size
    if size % 2 ** depth:
      raise config_checks.ConfigError(
          f'config.data.image_size={size} cannot pass a U-Net of depth {depth} '
          f'(config.model.generator.features={tuple(config.model.generator.features)}), which '
          f'halves it {depth} times: use a multiple of {2 ** depth}, or fewer levels')

  def __init__(self, config, spec):
    super().__init__(config, spec)
    if spec.input_shape is None:
      raise config_checks.ConfigError(f'data {config.data.name!r} is not paired; set config.data.pairs')
    m = config.model
    # Sample quality needs the digit classifier, which needs digit labels (a folder of
    # side-by-side photographs has none): without them only the pixel metrics are reported.
    self.GENERATIVE = spec.num_classes > 0
    self.loss = adversarial_losses.LOSSES[m.loss]
    self.pixels = PIXEL_RANGES['symmetric']
    self.generator = UNet(tuple(m.generator.features), spec.image_shape[-1], m.generator.normalisation,
                          m.generator.dropout_levels, self.pixels.activation)
    self.critic = PatchDiscriminator(m.discriminator.features, m.discriminator.num_layers,
                                     m.discriminator.normalisation)
    self.augment = config.data.pairs.jitter_size or config.data.pairs.mirror
    self.train_rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    self._translate = jax.jit(self._translate_batch, static_argnames='dropout')
    size = spec.image_shape[0]
    field = receptive_field(m.discriminator.num_layers)
    side = score_map_size(size, m.discriminator.num_layers)
    logging.info('PatchGAN: %d×%d scores, each judging a %d×%d patch of the %d×%d image%s', side,
                 side, min(field, size), min(field, size), size, size,
                 ' (the whole image)' if field >= size else '')

  def metric_names(self) -> set[str]:
    names = {'holdout_l1', 'holdout_psnr', 'holdout_ssim'}
    return names | {'class_match'} if self.GENERATIVE else names

  # Training ------------------------------------------------------------------------------------

  def init_state(self, rng: jax.Array) -> Pix2PixState:
    g_rng, d_rng = jax.random.split(rng)
    inputs = jnp.zeros((2,) + self.spec.input_shape)
    images = jnp.zeros((2,) + self.spec.image_shape)
    total, steps = self.config.train.num_steps, self.spec.steps_per_epoch
    generator = Player.create(self.generator.init(g_rng, inputs, train=False),
                              optimizers.build(**self.config.optim_g, steps_per_epoch=steps,
                                               total_steps=total))
    critic = Player.create(self.critic.init(d_rng, images, inputs, train=False),
                           optimizers.build(**self.config.optim_d, steps_per_epoch=steps,
                                            total_steps=total))
    return Pix2PixState(step=jnp.zeros((), jnp.int32), generator=generator, critic=critic)

  def train_step(self, state: Pix2PixState, batch, axis_name=None):
    rng = parallel.per_replica_key(jax.random.fold_in(self.train_rng, state.step), axis_name)
    augment_rng, dropout_rng = jax.random.split(rng)
    inputs, targets = self.pixels.from_unit(batch['input']), self.pixels.from_unit(batch['image'])
    if self.augment:   # one crop and flip for input and target together
      jittered = pairs.jitter_and_mirror(augment_rng, jnp.concatenate([inputs, targets], axis=-1),
                                         self.config.data.pairs.jitter_size,
                                         self.config.data.pairs.mirror)
      inputs, targets = jittered[..., :inputs.shape[-1]], jittered[..., inputs.shape[-1]:]
    generator_net = self.generator.clone(axis_name=axis_name)
    critic_net = self.critic.clone(axis_name=axis_name)

    def translate(params):
      return apply_in_training(generator_net, params, state.generator.batch_stats, inputs,
                               rngs={'dropout': dropout_rng})

    fake, pull_back, g_stats = jax.vjp(translate, state.generator.params, has_aux=True)
    critic, metrics = adversarial_game.critic_update(critic_net, state.critic, targets, fake, inputs,
                                                     self.loss, rng, axis_name)

    def l1_term(images):
      l1 = jnp.mean(jnp.abs(images - targets))
      # Reported in [0, 1] units (the images span 2 in [-1, 1]), like the held-out L1.
      return self.config.model.l1_weight * l1, {'l1': l1 / 2.0}

    generator, critic, g_metrics = adversarial_game.generator_update(
        state.generator, g_stats, fake, pull_back, critic_net, critic, inputs, self.loss, axis_name,
        image_loss=l1_term)
    new_state = state.replace(step=state.step + 1, generator=generator, critic=critic)
    return new_state, parallel.cross_replica_mean({**metrics, **g_metrics}, axis_name)

  # Translation ---------------------------------------------------------------------------------

  def _translate_batch(self, variables, inputs: jax.Array, rng: jax.Array, dropout: bool) -> jax.Array:
    outputs = self.generator.apply(variables, self.pixels.from_unit(inputs), train=False,
                                   dropout=dropout, rngs={'dropout': rng})
    return jnp.clip(self.pixels.to_unit(outputs), 0.0, 1.0)

  def translate(self, state: Pix2PixState, inputs: np.ndarray, rng: jax.Array,
                dropout: bool | None = None) -> np.ndarray:
    """Translations in [0, 1] of `inputs` ((N, H, W, C) in [0, 1]), BatchNorm on its running
    averages; the dropout noise on when `dropout` (default config.sample.dropout)."""
    translations.check_inputs(inputs, self.spec.input_shape)
    dropout = self.config.sample.dropout if dropout is None else dropout
    variables = jax.device_get(state.generator.variables)
    return translations.in_batches(
        lambda batch, key: self._translate(variables, jnp.asarray(batch), key, dropout=dropout),
        inputs, rng)

  def sample(self, state, rng, num):
    raise config_checks.ConfigError(
        'pix2pix translates inputs and draws nothing from noise: --mode=sample translates the '
        'images of config.sample.input_dir, or the held-out inputs when that is empty')

  def evaluation_samples(self, state, rng, num, holdout):
    """Translations of the first `num` held-out inputs, and their targets' classes."""
    held = holdout.take(min(num, len(holdout)))
    return self.translate(state, held.inputs, rng), held.labels

  # Pictures ------------------------------------------------------------------------------------

  def translation_grid(self, inputs: np.ndarray, outputs: np.ndarray, targets: np.ndarray | None,
                       path: pathlib.Path) -> pathlib.Path:
    """Rows input | translation (| target), one column an example."""
    return translations.save_rows([inputs, outputs] + ([] if targets is None else [targets]), path)

  def on_epoch_end(self, state, epoch, workdir, judge) -> None:
    preview = self.spec.preview
    outputs = self.translate(state, preview.inputs, jax.random.PRNGKey(epoch))
    self.translation_grid(preview.inputs, outputs, preview.images,
                          translations.epoch_grid_path(workdir, epoch))

  def on_train_end(self, workdir: pathlib.Path) -> None:
    """The epoch grids as one GIF; the adversarial and the L1 curves as PNG."""
    workdir = pathlib.Path(workdir)
    translations.save_epochs_gif(workdir)
    records = metric_writers.read_metrics(workdir, 'train')
    if records:
      figures.save_curves(records, ['d_loss', 'g_adversarial'], workdir / 'losses.png',
                          'pix2pix: adversarial losses', f'loss ({self.config.model.loss}; window means)')
      figures.save_curves(records, ['l1'], workdir / 'l1.png', 'pix2pix: L1 to the target (training batches)',
                          'mean |translation - target| in [0, 1]')

  # Evaluation ----------------------------------------------------------------------------------

  def _holdout_errors(self, state: Pix2PixState, batch, rng) -> dict[str, jax.Array]:
    outputs = self._translate_batch(state.generator.variables, batch['input'], rng,
                                    dropout=self.config.sample.dropout)
    targets = batch['image']
    return {'holdout_l1': jnp.mean(jnp.abs(outputs - targets), axis=(1, 2, 3)),
            'holdout_psnr': dm_pix.psnr(targets, outputs),
            'holdout_ssim': dm_pix.ssim(targets, outputs)}

  def evaluate(self, state, dataset, evaluator, out_dir: pathlib.Path, rng) -> dict[str, Any]:
    """L1, PSNR and SSIM of the held-out translations to their targets, and a grid of them."""
    holdout = dataset.holdout
    shown = holdout.take(16)
    self.translation_grid(shown.inputs, self.translate(state, shown.inputs, rng), shown.images,
                          out_dir / 'translations.png')
    return evaluator.mean(self._holdout_errors, state, holdout, rng)
