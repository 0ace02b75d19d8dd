"""GANs: one family for the fully connected GAN, DCGAN, LSGAN, conditional GAN, WGAN and WGAN-GP.

The six differ only in their config: the two networks (gen_jax.models.gan), the adversarial loss
(gen_jax.objectives.adversarial_losses), the latent prior (gen_jax.objectives.latent_priors), the number of critic
steps per generator step and the critic's Lipschitz constraint (gen_jax.objectives.lipschitz). They share
this one training step:

1. `n_critic` critic updates. Each draws fresh noise and a fresh fake batch; all of them see the
   step's one real batch (the training loop hands a step one batch, and splitting it would shrink
   every critic batch). The updates are unrolled rather than a `lax.scan`: inside a loop XLA's
   CPU backend runs convolutions through its slow generic emitter (PERFORMANCE.md).
2. One generator update, on the fake batch of the last critic update, through the pull-back of
   its one forward pass (gen_jax.objectives.adversarial_game, which Pix2Pix shares).

BatchNorm: every forward pass during training runs in training mode, on batch statistics, and
updates the running averages (as PyTorch does). The critic sees the real and the fake batch in
separate calls, so each is normalised by its own statistics, as in the notebook; a critic under
the gradient penalty must have no BatchNorm (the penalty is per example, which BatchNorm breaks).
Sampling runs the generator in inference mode, on the running averages.

Data come in [0, 1]; `model.pixel_range = 'symmetric'` trains on [-1, 1] with a tanh output (the
DCGAN notebook's normalisation), and samples are mapped back to [0, 1].
"""

from __future__ import annotations

import pathlib
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from gen_jax.data.pixel_ranges import PIXEL_RANGES
from gen_jax.evaluation import figures
from gen_jax.objectives import adversarial_game, adversarial_losses, latent_priors
from gen_jax.runtime import config_checks, metric_writers, optimizers, parallel
from gen_jax.runtime.players import Player, apply_in_training
from gen_jax.families.base import ModelFamily
from gen_jax.models.gan import Discriminator, Generator

SAMPLES_DIR = 'samples'       # the fixed-noise grid of every epoch, and their GIF
GRID_COLUMNS = 8
GRID_SCALE = 2                # pixels per image pixel in the saved grids
GENERATION_BATCH = 500        # samples generated per compiled call


class GANState(struct.PyTreeNode):
  """Generator and critic, each with its own parameters and optimiser state; `step` counts G updates."""

  step: jax.Array
  generator: Player
  critic: Player


class GANFamily(ModelFamily):
  """Every adversarial model of the course material; see the module docstring."""

  @classmethod
  def validate(cls, config) -> None:
    config_checks.require_int(config, 'model.latent_dim', minimum=1, maximum=4096)
    config_checks.require_choice(config, 'model.prior', latent_priors.PRIORS)
    config_checks.require_choice(config, 'model.loss', adversarial_losses.LOSSES)
    config_checks.require_choice(config, 'model.pixel_range', PIXEL_RANGES)
    config_checks.require_int(config, 'model.n_critic', minimum=1)
    for field in ('model.conditional', 'model.generator.batch_norm', 'model.discriminator.batch_norm'):
      config_checks.require_bool(config, field)
    config_checks.require_number(config, 'model.gradient_penalty', low=0)
    config_checks.require_number(config, 'model.weight_clip', low=0)
    for field in ('generator.dense_features', 'discriminator.conv_features',
                  'discriminator.dense_features'):
      config_checks.require_positive_ints(config, f'model.{field}', allow_empty=True)
    upsamplings = len(config_checks.require_positive_ints(config, 'model.generator.conv_features',
                                                          allow_empty=True))
    optimizers.validate(config, 'optim_g')
    optimizers.validate(config, 'optim_d')
    config_checks.require_int(config, 'sample.label', minimum=-1)
    config_checks.require_int(config, 'eval.epoch_samples', minimum=0, maximum=100_000)
    size = config.data.image_size
    if size % 2 ** upsamplings:
      raise config_checks.ConfigError(
          f'config.data.image_size={size} cannot be made by a generator that doubles a feature map '
          f'{upsamplings} times (config.model.generator.conv_features='
          f'{tuple(config.model.generator.conv_features)}): use a multiple of {2 ** upsamplings}')
    if (config.model.gradient_penalty and config.model.discriminator.batch_norm
        and len(config.model.discriminator.conv_features) > 1):
      raise config_checks.ConfigError(
          f'config.model.discriminator.batch_norm=True cannot be used with '
          f'config.model.gradient_penalty={config.model.gradient_penalty}: the penalty is on each '
          f"example's own gradient, and BatchNorm mixes the examples of a batch; set "
          f'config.model.discriminator.batch_norm=False')

  def __init__(self, config, spec):
    super().__init__(config, spec)
    m = config.model
    if m.conditional and spec.num_classes < 1:
      raise config_checks.ConfigError(
          f'config.model.conditional=True needs class labels, and data {config.data.name!r} has none')
    if config.eval.epoch_samples and spec.num_classes < 1:
      raise config_checks.ConfigError(
          f'config.eval.epoch_samples={config.eval.epoch_samples} judges samples with the digit '
          f'classifier, which needs class labels, and data {config.data.name!r} has none; set it to 0')
    if m.conditional and config.sample.label >= spec.num_classes:
      raise config_checks.ConfigError(
          f'config.sample.label={config.sample.label} is not a class of {config.data.name!r} '
          f'(0 to {spec.num_classes - 1}, or -1 for every class in turn)')
    self.loss = adversarial_losses.LOSSES[m.loss]
    self.prior = latent_priors.PRIORS[m.prior]
    self.pixels = PIXEL_RANGES[m.pixel_range]
    self.num_classes = spec.num_classes if m.conditional else 0
    self.generator = Generator(spec.image_shape, tuple(m.generator.dense_features),
                               tuple(m.generator.conv_features), self.pixels.activation,
                               m.generator.batch_norm)
    self.critic = Discriminator(tuple(m.discriminator.conv_features),
                                tuple(m.discriminator.dense_features), m.discriminator.batch_norm)
    root = jax.random.PRNGKey(config.seed)
    self.train_rng = jax.random.fold_in(root, 1)
    # The latents of the per-epoch grids, so that the same samples are followed from epoch to
    # epoch: 8×8 of them, or one row of 8 repeated for every class of a conditional model.
    grid_latents = GRID_COLUMNS if self.num_classes else GRID_COLUMNS ** 2
    self.fixed_noise = np.asarray(self.prior(jax.random.fold_in(root, 2), (grid_latents, m.latent_dim)))
    self.monitor_rng = jax.random.fold_in(root, 3)
    self._render = jax.jit(self._render_images)

  # Conditioning --------------------------------------------------------------------------------

  def condition(self, labels: jax.Array) -> jax.Array | None:
    """One-hot class labels for a conditional model, None for an unconditional one."""
    return jax.nn.one_hot(labels, self.num_classes) if self.num_classes else None

  def balanced_labels(self, num: int) -> np.ndarray | None:
    """Classes 0, 1, …, K-1, 0, 1, … for a conditional model; None otherwise."""
    return np.arange(num) % self.num_classes if self.num_classes else None

  # Training ------------------------------------------------------------------------------------

  def init_state(self, rng: jax.Array) -> GANState:
    g_rng, d_rng = jax.random.split(rng)
    condition = self.condition(jnp.zeros((2,), jnp.int32))
    z = jnp.zeros((2, self.config.model.latent_dim))
    x = jnp.zeros((2,) + self.spec.image_shape)
    steps = self.spec.steps_per_epoch
    total = self.config.train.num_steps
    generator = Player.create(self.generator.init(g_rng, z, condition, train=False),
                              optimizers.build(**self.config.optim_g, steps_per_epoch=steps,
                                               total_steps=total))
    # The critic's schedule counts its own updates: n_critic per step.
    n_critic = self.config.model.n_critic
    critic = Player.create(self.critic.init(d_rng, x, condition, train=False),
                           optimizers.build(**self.config.optim_d, steps_per_epoch=steps * n_critic,
                                            total_steps=total * n_critic))
    return GANState(step=jnp.zeros((), jnp.int32), generator=generator, critic=critic)

  def train_step(self, state: GANState, batch, axis_name=None):
    m = self.config.model
    rng = parallel.per_replica_key(jax.random.fold_in(self.train_rng, state.step), axis_name)
    generator_net = self.generator.clone(axis_name=axis_name)
    critic_net = self.critic.clone(axis_name=axis_name)
    real = self.pixels.from_unit(batch['image'])
    condition = self.condition(batch['label'])
    g_params = state.generator.params

    def generate(params, batch_stats, key):
      z = self.prior(key, (real.shape[0], m.latent_dim))
      return apply_in_training(generator_net, params, batch_stats, z, condition)

    def critic_step(critic, fake, key):
      return adversarial_game.critic_update(critic_net, critic, real, fake, condition, self.loss, key,
                                            axis_name, m.gradient_penalty, m.weight_clip)

    keys = jax.random.split(rng, m.n_critic)
    critic, g_stats = state.critic, state.generator.batch_stats
    for key in keys[:-1]:   # unrolled: see the module's docstring
      noise_key, penalty_key = jax.random.split(key)
      fake, g_stats = generate(g_params, g_stats, noise_key)
      critic, _ = critic_step(critic, fake, penalty_key)
    noise_key, penalty_key = jax.random.split(keys[-1])
    fake, pull_back, g_stats = jax.vjp(lambda p: generate(p, g_stats, noise_key), g_params, has_aux=True)
    critic, metrics = critic_step(critic, fake, penalty_key)
    generator, critic, g_metrics = adversarial_game.generator_update(
        state.generator, g_stats, fake, pull_back, critic_net, critic, condition, self.loss, axis_name)
    new_state = state.replace(step=state.step + 1, generator=generator, critic=critic)
    return new_state, parallel.cross_replica_mean({**metrics, **g_metrics}, axis_name)

  # Sampling ------------------------------------------------------------------------------------

  def _render_images(self, variables, z: jax.Array, labels: jax.Array | None) -> jax.Array:
    condition = None if labels is None else self.condition(labels)
    return self.pixels.to_unit(self.generator.apply(variables, z, condition, train=False))

  def generate(self, state: GANState, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """Images in [0, 1] for the latents `z` (and classes `labels`), on the running BatchNorm averages."""
    if (labels is None) != (not self.num_classes):
      raise ValueError('a conditional GAN needs a class label for each latent, an unconditional '
                       'one takes none')
    variables = jax.device_get(state.generator.variables)
    parts = []
    for start in range(0, len(z), GENERATION_BATCH):
      chunk_labels = None if labels is None else jnp.asarray(labels[start:start + GENERATION_BATCH])
      parts.append(np.asarray(self._render(variables, jnp.asarray(z[start:start + GENERATION_BATCH]),
                                           chunk_labels)))
    images = np.clip(np.concatenate(parts), 0.0, 1.0)
    chex.assert_shape(images, (len(z),) + self.spec.image_shape)
    return images

  def sample(self, state: GANState, rng: jax.Array, num: int,
             labels: np.ndarray | None = None) -> np.ndarray:
    """`num` samples in [0, 1]. A conditional model draws `labels` (one class per sample), by
    default config.sample.label, or every class in turn when that is -1."""
    if self.num_classes and labels is None:
      label = self.config.sample.label
      labels = np.full((num,), label) if label >= 0 else self.balanced_labels(num)
    if labels is not None:
      labels = np.asarray(labels)
      chex.assert_shape(labels, (num,))
      if labels.min() < 0 or labels.max() >= self.num_classes:
        raise ValueError(f'labels must be classes 0 to {self.num_classes - 1}, got {np.unique(labels)}')
    z = np.asarray(self.prior(rng, (num, self.config.model.latent_dim)))
    return self.generate(state, z, labels)

  def fixed_grid(self, state: GANState) -> np.ndarray:
    """The fixed-noise samples, GRID_COLUMNS a row; a conditional model's rows are its classes."""
    if not self.num_classes:
      return self.generate(state, self.fixed_noise)
    z = np.tile(self.fixed_noise, (self.num_classes, 1))
    return self.generate(state, z, np.repeat(np.arange(self.num_classes), GRID_COLUMNS))

  # Monitoring ----------------------------------------------------------------------------------

  def on_epoch_end(self, state: GANState, epoch: int, workdir: pathlib.Path, judge) -> dict[str, float]:
    """Writes the fixed-noise grid of this epoch; returns the class balance (mode collapse in
    numbers) of `eval.epoch_samples` samples, every class in turn for a conditional model."""
    figures.save_image_grid(self.fixed_grid(state),
                            pathlib.Path(workdir) / SAMPLES_DIR / f'epoch_{epoch:04d}.png',
                            columns=GRID_COLUMNS, scale=GRID_SCALE)
    if not self.config.eval.epoch_samples:
      return {}
    num = self.config.eval.epoch_samples
    return judge.class_balance(self.sample(state, self.monitor_rng, num, self.balanced_labels(num)))

  def on_train_end(self, workdir: pathlib.Path) -> None:
    """The epoch grids as one GIF, and the training curves as PNG."""
    workdir = pathlib.Path(workdir)
    figures.save_epochs_gif(workdir / SAMPLES_DIR, GRID_SCALE)
    records = metric_writers.read_metrics(workdir, 'train')
    if records:
      figures.save_curves(records, ['d_loss', 'g_loss', 'gradient_penalty'], workdir / 'losses.png',
                          f'{self.config.model.name}: critic and generator losses',
                          f'loss ({self.config.model.loss}; window means)')
      figures.save_curves(records, ['d_real', 'd_fake', 'wasserstein_estimate'],
                          workdir / 'critic_outputs.png', 'critic on real and generated batches',
                          'P(real)' if self.loss.probabilistic else 'critic score')
    epochs = metric_writers.read_metrics(workdir, 'epoch')
    if any('class_entropy' in r for r in epochs):
      figures.save_curves(epochs, ['class_entropy', 'class_max_fraction'], workdir / 'class_balance.png',
                          'class balance of the samples (digit classifier)',
                          ['entropy (nats)', 'largest share'])

  # Evaluation ----------------------------------------------------------------------------------

  def _holdout_scores(self, state: GANState, batch, rng):
    del rng
    condition = self.condition(batch['label'])
    scores = self.critic.apply(state.critic.variables, self.pixels.from_unit(batch['image']),
                               condition, train=False)
    return {'d_holdout': jax.nn.sigmoid(scores) if self.loss.probabilistic else scores}

  def metric_names(self) -> set[str]:
    # A conditional model's samples are also scored on being the class they were asked to be.
    return {'d_holdout', 'class_match'} if self.num_classes else {'d_holdout'}

  def evaluation_samples(self, state: GANState, rng: jax.Array, num: int,
                         holdout) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples of every class in turn for a conditional model (with those classes), unconditional
    ones otherwise."""
    del holdout
    labels = self.balanced_labels(num)
    return self.sample(state, rng, num, labels), labels

  def evaluate(self, state, dataset, evaluator, out_dir: pathlib.Path, rng) -> dict[str, Any]:
    """The critic's mean output on the held-out images, and the fixed-noise sample grid."""
    holdout = dataset.holdout
    if self.num_classes and not holdout.has_labels:
      raise ValueError('a conditional GAN is evaluated on labelled held-out images')
    figures.save_image_grid(self.fixed_grid(state), out_dir / 'samples.png', columns=GRID_COLUMNS)
    return evaluator.mean(self._holdout_scores, state, holdout, rng)
