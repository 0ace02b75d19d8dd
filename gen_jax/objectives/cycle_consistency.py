"""CycleGAN's image losses: the cycle-consistency and identity terms, besides the adversarial ones.

Cycle consistency (Zhu et al., 2017): a translation there and back should return the image,
F(G(a)) ≈ a and G(F(b)) ≈ b, in L1; it is what ties each translation to its input when no pairs
exist. Identity (the paper's section 5.2, for paintings → photos): a generator given an image
already of its output domain should leave it alone, G(b) ≈ b and F(a) ≈ a, which keeps colour
and tone where the adversarial loss alone would shift them.

Every term is a mean over pixels, channels and examples, and the two domains' terms are averaged
(CycleGAN's generator loss is their sum: the average is half of it, with the same minimiser).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def l1(images: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean absolute difference."""
  chex.assert_equal_shape([images, targets])
  return jnp.mean(jnp.abs(images - targets))


def cycle_terms(real_a: jax.Array, real_b: jax.Array, images: dict[str, jax.Array],
                cycle_weight: float, identity_weight: float) -> tuple[jax.Array, dict[str, jax.Array]]:
  """cycle_weight · mean(‖F(G(a)) − a‖₁, ‖G(F(b)) − b‖₁) + identity_weight · mean(‖F(a) − a‖₁,
  ‖G(b) − b‖₁), from the generators' outputs `images` (CycleGenerators' names; the identity
  images only where identity_weight > 0); and the four L1 distances (`cycle_a`, `cycle_b`,
  `identity_a`, `identity_b`, in the images' own units) to report."""
  terms = {'cycle_a': l1(images['cycle_a'], real_a), 'cycle_b': l1(images['cycle_b'], real_b)}
  total = cycle_weight * (terms['cycle_a'] + terms['cycle_b']) / 2
  if identity_weight:
    terms.update(identity_a=l1(images['same_a'], real_a), identity_b=l1(images['same_b'], real_b))
    total = total + identity_weight * (terms['identity_a'] + terms['identity_b']) / 2
  return total, terms
