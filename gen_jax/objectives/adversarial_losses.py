"""The adversarial objectives, as pairs of (critic loss, generator loss) on the critic's raw outputs.

The critic's output is one unnormalised score per example: a logit of P(real) for the two
cross-entropy losses, a score for the others. Every loss is a mean over the batch; the critic
losses add their real and fake terms (as the course material's notebooks do: `real_loss + fake_loss`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

CriticLoss = Callable[[jax.Array, jax.Array], jax.Array]
GeneratorLoss = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class AdversarialLoss:
  """critic(real_scores, fake_scores) and generator(fake_scores), both scalars to minimise.

  `probabilistic`: the score is a logit, so sigmoid(score) is the critic's P(real), which is what
  a person watches as D(x) and D(G(z)). `wasserstein`: mean real score minus mean fake score
  estimates the Wasserstein-1 distance (up to the critic's Lipschitz constant).
  """

  critic: CriticLoss
  generator: GeneratorLoss
  probabilistic: bool
  wasserstein: bool


def _bce_with_logits(logits: jax.Array, target: float) -> jax.Array:
  """Mean binary cross-entropy of sigmoid(logits) against a constant label, computed stably."""
  return jnp.mean(target * jax.nn.softplus(-logits) + (1.0 - target) * jax.nn.softplus(logits))


def _bce_critic(real: jax.Array, fake: jax.Array) -> jax.Array:
  """-log D(x) - log(1 - D(G(z))): real labelled 1, fake labelled 0."""
  return _bce_with_logits(real, 1.0) + _bce_with_logits(fake, 0.0)


def _non_saturating_generator(fake: jax.Array) -> jax.Array:
  """-log D(G(z)): the generator's fakes labelled real (strong gradients while D wins)."""
  return _bce_with_logits(fake, 1.0)


def _minimax_generator(fake: jax.Array) -> jax.Array:
  """log(1 - D(G(z))): the original minimax objective, which saturates while D wins."""
  return -_bce_with_logits(fake, 0.0)


def _least_squares_critic(real: jax.Array, fake: jax.Array) -> jax.Array:
  """(D(x) - 1)² + D(G(z))²: real pushed to 1, fake to 0 (LSGAN, MSE against the labels)."""
  return jnp.mean(jnp.square(real - 1.0)) + jnp.mean(jnp.square(fake))


def _least_squares_generator(fake: jax.Array) -> jax.Array:
  """(D(G(z)) - 1)²."""
  return jnp.mean(jnp.square(fake - 1.0))


def _wasserstein_critic(real: jax.Array, fake: jax.Array) -> jax.Array:
  """E[D(G(z))] - E[D(x)]: minus the critic's Wasserstein estimate."""
  return jnp.mean(fake) - jnp.mean(real)


def _critic_score_generator(fake: jax.Array) -> jax.Array:
  """-E[D(G(z))]: the generator raises the critic's score of its samples."""
  return -jnp.mean(fake)


def _hinge_critic(real: jax.Array, fake: jax.Array) -> jax.Array:
  """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]: a margin of 1 on either side."""
  return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


LOSSES: dict[str, AdversarialLoss] = {
    'non_saturating': AdversarialLoss(_bce_critic, _non_saturating_generator,
                                      probabilistic=True, wasserstein=False),
    'minimax': AdversarialLoss(_bce_critic, _minimax_generator, probabilistic=True, wasserstein=False),
    'least_squares': AdversarialLoss(_least_squares_critic, _least_squares_generator,
                                     probabilistic=False, wasserstein=False),
    'wasserstein': AdversarialLoss(_wasserstein_critic, _critic_score_generator,
                                   probabilistic=False, wasserstein=True),
    'hinge': AdversarialLoss(_hinge_critic, _critic_score_generator, probabilistic=False,
                             wasserstein=False),
}
