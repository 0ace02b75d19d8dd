"""One round of an adversarial game, shared by every model that has a generator and a critic.

The critic update sees a real and a (constant) generated batch. The generator update reuses the
generator's one forward pass: the caller runs it under `jax.vjp`, and the pull-back turns the
gradient of the generator's loss with respect to its images (through the freshly updated critic)
into parameter gradients. This is the course notebooks' loop (`fake = G(z)`; D step on
`fake.detach()`; G step on `D(fake)`) with no second generator forward pass and no unused critic
parameter gradients. `condition` is whatever else the critic is shown beside the image (a one-hot
class, the input image of a translation), or None.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from gen_jax.objectives import lipschitz
from gen_jax.objectives.adversarial_losses import AdversarialLoss
from gen_jax.runtime import parallel
from gen_jax.runtime.players import Player, apply_in_training

Metrics = dict[str, jax.Array]


def reported_scores(loss: AdversarialLoss, scores: jax.Array) -> jax.Array:
  """What D(x) means to a person: P(real) for the cross-entropy losses, the raw score otherwise."""
  return jnp.mean(jax.nn.sigmoid(scores) if loss.probabilistic else scores)


def critic_update(critic_net: nn.Module, critic: Player, real: jax.Array, fake: jax.Array,
                  condition: jax.Array | None, loss: AdversarialLoss, rng: jax.Array,
                  axis_name: str | None = None, gradient_penalty: float = 0.0,
                  weight_clip: float = 0.0) -> tuple[Player, Metrics]:
  """One critic step; the WGAN-GP penalty (weighted `gradient_penalty`) in its loss and the WGAN
  weight clipping after it, when set.

  The critic sees the real and the fake batch in separate calls, so that BatchNorm normalises
  each by its own statistics, as the notebooks do.
  """
  fake = jax.lax.stop_gradient(fake)

  def loss_fn(params):
    real_scores, stats = apply_in_training(critic_net, params, critic.batch_stats, real, condition)
    fake_scores, stats = apply_in_training(critic_net, params, stats, fake, condition)
    total = loss.critic(real_scores, fake_scores)
    terms = {'d_loss': total, 'd_real': reported_scores(loss, real_scores),
             'd_fake': reported_scores(loss, fake_scores)}
    if loss.wasserstein:
      terms['wasserstein_estimate'] = jnp.mean(real_scores) - jnp.mean(fake_scores)
    if gradient_penalty:
      def scores(x, c):
        return critic_net.apply({'params': params}, x, c, train=True)
      penalty, norm = lipschitz.gradient_penalty(scores, rng, real, fake, condition)
      total = total + gradient_penalty * penalty
      terms.update(gradient_penalty=penalty, critic_input_grad_norm=norm)
    return total, (stats, terms)

  (_, (stats, terms)), grads = jax.value_and_grad(loss_fn, has_aux=True)(critic.params)
  grads = parallel.cross_replica_mean(grads, axis_name)
  critic = critic.apply_gradients(grads).replace(batch_stats=stats)
  if weight_clip:
    critic = critic.replace(params=lipschitz.clip_weights(critic.params, weight_clip))
  terms['d_grad_norm'] = optax.global_norm(grads)
  return critic, terms


def generator_update(generator: Player, generator_stats: Any, fake: jax.Array,
                     pull_back: Callable[[jax.Array], tuple[Any]], critic_net: nn.Module,
                     critic: Player, condition: jax.Array | None, loss: AdversarialLoss,
                     axis_name: str | None = None,
                     image_loss: Callable[[Any], tuple[jax.Array, Metrics]] | None = None,
                     judged: Callable[[Any], jax.Array] | None = None,
                     ) -> tuple[Player, Player, Metrics]:
  """One generator step on its images `fake` (made once, under `jax.vjp`, with `pull_back`).

  Its loss is the adversarial one through `critic`, plus `image_loss(fake)` where the model adds
  a loss of its own on the images (Pix2Pix's L1 to the target): that returns the weighted term
  and the metrics to report. `fake` may be any pytree of images when `judged(fake)` picks the
  ones the critic scores (CycleGAN's generators also output the reconstructions its image loss
  reads); by default the critic scores `fake` itself. Returns the updated generator, the critic
  with the BatchNorm statistics of this forward pass, and the metrics `g_loss` (the whole loss)
  and `g_grad_norm`.
  """
  def loss_fn(images):
    scores, critic_stats = apply_in_training(critic_net, critic.params, critic.batch_stats,
                                             images if judged is None else judged(images), condition)
    adversarial = loss.generator(scores)
    if image_loss is None:
      return adversarial, (critic_stats, {})
    extra, terms = image_loss(images)
    return adversarial + extra, (critic_stats, {'g_adversarial': adversarial, **terms})

  (g_loss, (critic_stats, terms)), image_grads = jax.value_and_grad(loss_fn, has_aux=True)(fake)
  (grads,) = pull_back(image_grads)
  grads = parallel.cross_replica_mean(grads, axis_name)
  generator = generator.apply_gradients(grads).replace(batch_stats=generator_stats)
  metrics = {'g_loss': g_loss, 'g_grad_norm': optax.global_norm(grads), **terms}
  return generator, critic.replace(batch_stats=critic_stats), metrics
