"""CycleGAN: unpaired image-to-image translation between two domains (Zhu et al., 2017).

Two generators, G: A → B and F: B → A (ResNet-block networks), and two PatchGAN critics, D_A and
D_B. Each generator is trained to fool the critic of its output domain (least squares by
default, as the paper; non-saturating cross-entropy selectable) and, since no pairs say what a
translation should be, to be undone by the other: the cycle losses ‖F(G(a)) − a‖₁ and
‖G(F(b)) − b‖₁, weighted `cycle_weight` (λ = 10), and the identity losses ‖G(b) − b‖₁,
‖F(a) − a‖₁, weighted `identity_weight` (0.5 λ; 0 turns them off). Each critic is shown real
images of its domain against translations drawn from an image pool of earlier ones
(gen_jax.objectives.image_pool), which lives in the training state.

The step is the shared adversarial round (gen_jax.objectives.adversarial_game), with the two
generators as one player and the two critics as another: the generators run once under
`jax.vjp`, giving every image the losses need; the critics update on the pooled translations;
then the generators update through the pull-back. One optax state (Adam 2e-4, β₁ 0.5, constant
then linearly to 0 over the second half) covers both generators, another both critics, as the
paper's code has it; Adam is per parameter, so that is the same as one each. The critics' loss
and the generators' are the means over the two domains, half the paper's sums: the same
minimisers, and the same Adam steps. Images are trained on in [-1, 1]; the cycle and identity
metrics are in [0, 1] units.

Evaluation: held-out cycle L1 both ways; where both domains carry digit labels, through the
project's digit classifier (trained on both domains): FID of G(A) against real B and of F(B)
against real A, and the fraction of translations whose digit it reads as their input's (class
kept), both ways. Pictures: A → B → A and B → A → B grids, every epoch and at each evaluation;
loss curves.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gen_jax.data import Split
from gen_jax.data.pixel_ranges import PIXEL_RANGES
from gen_jax.evaluation import figures
from gen_jax.evaluation import translations
from gen_jax.families import pix2pix
from gen_jax.families.base import ModelFamily
from gen_jax.models.cyclegan import CycleGenerators, DomainCritics, smallest_side
from gen_jax.models.pix2pix import NORMALISATIONS
from gen_jax.objectives import adversarial_game, adversarial_losses, cycle_consistency, image_pool
from gen_jax.runtime import config_checks, metric_writers, optimizers, parallel
from gen_jax.runtime.players import Player, apply_in_training

LOSSES = ('least_squares', 'non_saturating')
DIRECTIONS = ('AtoB', 'BtoA')
GRID_EXAMPLES = 16


class CycleGANState(struct.PyTreeNode):
  step: jax.Array
  generators: Player          # G (a_to_b) and F (b_to_a)
  critics: Player             # D_A and D_B
  pool_a: image_pool.ImagePool  # earlier F(b), shown to D_A
  pool_b: image_pool.ImagePool  # earlier G(a), shown to D_B


def _domain(holdout: Split, domain: str) -> Split:
  """One domain of an unpaired split, as a plain split (A is kept in `inputs`)."""
  return Split(holdout.images, holdout.labels) if domain == 'b' else Split(holdout.inputs,
                                                                           holdout.input_labels)


class CycleGANFamily(ModelFamily):
  """ResNet generators and PatchGAN critics on two unpaired domains; see the module docstring."""

  TRANSLATES = True

  @classmethod
  def validate(cls, config) -> None:
    if 'unpaired' not in config.data:
      raise config_checks.ConfigError(
          'model cyclegan translates between two domains and config.data has no unpaired block; '
          'start from configs/cyclegan.py, which sets config.data.unpaired')
    config_checks.require_choice(config, 'model.loss', LOSSES)
    config_checks.require_number(config, 'model.cycle_weight', low=0)
    config_checks.require_number(config, 'model.identity_weight', low=0)
    config_checks.require_int(config, 'model.pool_size', minimum=0, maximum=10_000)
    g = 'model.generator'
    config_checks.require_int(config, f'{g}.features', minimum=1, maximum=4096)
    downsamplings = config_checks.require_int(config, f'{g}.num_downsamplings', minimum=0, maximum=8)
    config_checks.require_int(config, f'{g}.num_blocks', minimum=0, maximum=64)
    config_checks.require_choice(config, f'{g}.normalisation', NORMALISATIONS)
    pix2pix.validate_patch_critic(config)
    config_checks.require_choice(config, 'sample.direction', DIRECTIONS)
    config_checks.require_str(config, 'sample.input_dir')
    config_checks.require_int(config, 'sample.num_samples', minimum=1, maximum=100_000)
    size = config.data.image_size
    if size % 2 ** downsamplings or smallest_side(size, downsamplings) < 2:
      raise config_checks.ConfigError(
          f'config.model.generator.num_downsamplings={downsamplings} halves '
          f'config.data.image_size={size} {downsamplings} times: the size must be a multiple of '
          f'{2 ** downsamplings} and at least {2 ** (downsamplings + 1)} (2×2 maps for the '
          f'residual blocks\' reflection padding); use fewer downsamplings or another size')

  def __init__(self, config, spec):
    super().__init__(config, spec)
    if spec.input_shape != spec.image_shape:
      raise config_checks.ConfigError(f'data {config.data.name!r} holds no two domains of one '
                                      f'image shape; set config.data.unpaired')
    m = config.model
    # Sample quality needs the digit classifier, which needs digit labels on both sides (two
    # folders of photographs have none): without them only the cycle errors are reported.
    self.GENERATIVE = spec.num_classes > 0
    self.loss = adversarial_losses.LOSSES[m.loss]
    self.pixels = PIXEL_RANGES['symmetric']
    self.generators = CycleGenerators(spec.image_shape[-1], m.generator.features,
                                      m.generator.num_downsamplings, m.generator.num_blocks,
                                      m.generator.normalisation, self.pixels.activation,
                                      with_identity=m.identity_weight > 0)
    self.critics = DomainCritics(m.discriminator.features, m.discriminator.num_layers,
                                 m.discriminator.normalisation)
    self.train_rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    self._translate = jax.jit(self._translate_batch, static_argnames='a_to_b')

  def metric_names(self) -> set[str]:
    names = {'holdout_cycle_l1_a', 'holdout_cycle_l1_b'}
    if self.GENERATIVE:
      names |= {f'{metric}_{way}' for metric in ('fid', 'class_keep', 'classifier_accuracy')
                for way in ('a_to_b', 'b_to_a')}
    return names

  # Training ------------------------------------------------------------------------------------

  def init_state(self, rng: jax.Array) -> CycleGANState:
    g_rng, d_rng, pool_a_rng, pool_b_rng = jax.random.split(rng, 4)
    images = jnp.zeros((2,) + self.spec.image_shape)
    total, steps = self.config.train.num_steps, self.spec.steps_per_epoch
    build = lambda block: optimizers.build(**block, steps_per_epoch=steps, total_steps=total)
    init = lambda net, *inputs: net.init(*inputs, train=False)
    generators = Player.create(init(self.generators, g_rng, images, images), build(self.config.optim_g))
    critics = Player.create(init(self.critics, d_rng, jnp.stack([images, images])),
                            build(self.config.optim_d))
    pool = lambda key: image_pool.ImagePool.create(self.config.model.pool_size, self.spec.image_shape, key)
    return CycleGANState(step=jnp.zeros((), jnp.int32), generators=generators, critics=critics,
                         pool_a=pool(pool_a_rng), pool_b=pool(pool_b_rng))

  def train_step(self, state: CycleGANState, batch, axis_name=None):
    rng = parallel.per_replica_key(jax.random.fold_in(self.train_rng, state.step), axis_name)
    real_a, real_b = self.pixels.from_unit(batch['input']), self.pixels.from_unit(batch['image'])
    generator_net = self.generators.clone(axis_name=axis_name)
    critic_net = self.critics.clone(axis_name=axis_name)
    m = self.config.model

    def translate(params):
      return apply_in_training(generator_net, params, state.generators.batch_stats, real_a, real_b)

    images, pull_back, g_stats = jax.vjp(translate, state.generators.params, has_aux=True)
    pool_a, shown_a = image_pool.query(state.pool_a, images['fake_a'], axis_name)
    pool_b, shown_b = image_pool.query(state.pool_b, images['fake_b'], axis_name)
    critics, metrics = adversarial_game.critic_update(
        critic_net, state.critics, jnp.stack([real_a, real_b]), jnp.stack([shown_a, shown_b]),
        None, self.loss, rng, axis_name)

    def image_loss(outputs):
      total, terms = cycle_consistency.cycle_terms(real_a, real_b, outputs, m.cycle_weight,
                                                   m.identity_weight)
      # Reported in [0, 1] units (the images span 2 in [-1, 1]).
      return total, {name: value / 2.0 for name, value in terms.items()}

    generators, critics, g_metrics = adversarial_game.generator_update(
        state.generators, g_stats, images, pull_back, critic_net, critics, None, self.loss,
        axis_name, image_loss=image_loss,
        judged=lambda outputs: jnp.stack([outputs['fake_a'], outputs['fake_b']]))
    new_state = state.replace(step=state.step + 1, generators=generators, critics=critics,
                              pool_a=pool_a, pool_b=pool_b)
    return new_state, parallel.cross_replica_mean({**metrics, **g_metrics}, axis_name)

  # Translation ---------------------------------------------------------------------------------

  def _translate_batch(self, variables, images: jax.Array, a_to_b: bool) -> jax.Array:
    outputs = self.generators.apply(variables, self.pixels.from_unit(images), a_to_b,
                                    method=CycleGenerators.translate)
    return jnp.clip(self.pixels.to_unit(outputs), 0.0, 1.0)

  def translate(self, state: CycleGANState, inputs: np.ndarray, rng: jax.Array,
                direction: str | None = None) -> np.ndarray:
    """Translations in [0, 1] of `inputs` ((N, H, W, C) in [0, 1]) by G (direction 'AtoB') or F
    ('BtoA'; default config.sample.direction); BatchNorm on its running averages."""
    translations.check_inputs(inputs, self.spec.image_shape)
    a_to_b = (direction or self.config.sample.direction) == 'AtoB'
    variables = jax.device_get(state.generators.variables)
    return translations.in_batches(
        lambda batch, _: self._translate(variables, jnp.asarray(batch), a_to_b=a_to_b), inputs, rng)

  def held_out_inputs(self, holdout: Split) -> np.ndarray:
    """The held-out images of the domain config.sample.direction translates from."""
    return holdout.inputs if self.config.sample.direction == 'AtoB' else holdout.images

  def sample(self, state, rng, num):
    raise config_checks.ConfigError(
        'cyclegan translates images and draws nothing from noise: --mode=sample translates the '
        'images of config.sample.input_dir, or the held-out ones of the domain '
        'config.sample.direction starts from')

  # Pictures ------------------------------------------------------------------------------------

  def translation_grid(self, inputs: np.ndarray, outputs: np.ndarray, targets: np.ndarray | None,
                       path: pathlib.Path) -> pathlib.Path:
    """Rows input | translation (| a third row, e.g. the translation back), a column an example."""
    return translations.save_rows([inputs, outputs] + ([] if targets is None else [targets]), path)

  def _cycles(self, state, a: np.ndarray, b: np.ndarray, rng) -> dict[str, np.ndarray]:
    fake_b, fake_a = self.translate(state, a, rng, 'AtoB'), self.translate(state, b, rng, 'BtoA')
    return {'fake_b': fake_b, 'fake_a': fake_a, 'cycle_a': self.translate(state, fake_b, rng, 'BtoA'),
            'cycle_b': self.translate(state, fake_a, rng, 'AtoB')}

  def on_epoch_end(self, state, epoch, workdir, judge) -> None:
    """Rows a | G(a) | F(G(a)) | b | F(b) | G(F(b)) of the first held-out images."""
    preview = self.spec.preview
    images = self._cycles(state, preview.inputs, preview.images, jax.random.PRNGKey(epoch))
    translations.save_rows([preview.inputs, images['fake_b'], images['cycle_a'], preview.images,
                           images['fake_a'], images['cycle_b']],
                          translations.epoch_grid_path(workdir, epoch))

  def on_train_end(self, workdir: pathlib.Path) -> None:
    """The epoch grids as one GIF; the adversarial and the cycle / identity curves as PNG."""
    workdir = pathlib.Path(workdir)
    translations.save_epochs_gif(workdir)
    records = metric_writers.read_metrics(workdir, 'train')
    if records:
      figures.save_curves(records, ['d_loss', 'g_adversarial'], workdir / 'losses.png',
                          'cyclegan: adversarial losses (means over both domains)',
                          f'loss ({self.config.model.loss}; window means)')
      figures.save_curves(records, ['cycle_a', 'cycle_b', 'identity_a', 'identity_b'],
                          workdir / 'cycle.png', 'cyclegan: cycle and identity L1 (training batches)',
                          'mean |image - reconstruction| in [0, 1]')

  # Evaluation ----------------------------------------------------------------------------------

  def _holdout_errors(self, state: CycleGANState, batch, rng) -> dict[str, jax.Array]:
    del rng
    variables = state.generators.variables
    errors = {}
    for domain, images, there in (('a', batch['input'], True), ('b', batch['image'], False)):
      back = self._translate_batch(variables, self._translate_batch(variables, images, there),
                                   not there)
      errors[f'holdout_cycle_l1_{domain}'] = jnp.mean(jnp.abs(back - images), axis=(1, 2, 3))
    return errors

  def evaluate(self, state, dataset, evaluator, out_dir: pathlib.Path, rng) -> dict[str, Any]:
    """Held-out cycle L1 both ways, and the A → B → A and B → A → B grids."""
    shown = dataset.holdout.take(GRID_EXAMPLES)
    images = self._cycles(state, shown.inputs, shown.images, rng)
    translations.save_rows([shown.inputs, images['fake_b'], images['cycle_a']], out_dir / 'cycle_aba.png')
    translations.save_rows([shown.images, images['fake_a'], images['cycle_b']], out_dir / 'cycle_bab.png')
    return evaluator.mean(self._holdout_errors, state, dataset.holdout, rng)

  def judge_samples(self, state, rng, num, holdout, judge) -> dict[str, Any]:
    """Both directions, each translation against the real images of its output domain: FID,
    the fraction whose digit the classifier reads as its input's (`class_keep`), and the
    classifier's accuracy on those real images (the instrument's own reliability there)."""
    metrics = {}
    for way, source, target in (('a_to_b', 'a', 'b'), ('b_to_a', 'b', 'a')):
      inputs, real = _domain(holdout, source).take(num), _domain(holdout, target)
      fakes = self.translate(state, inputs.images, rng, 'AtoB' if source == 'a' else 'BtoA')
      report = judge.quality(fakes, real, inputs.labels)
      metrics.update({f'fid_{way}': report['fid'], f'class_keep_{way}': report['class_match'],
                      f'classifier_accuracy_{way}': judge.accuracy(real)})
    return metrics
