"""The digit classifier's network: a small CNN whose penultimate layer is the feature space of the
sample-quality metrics (gen_jax.evaluation.digit_classifier)."""

from __future__ import annotations

from typing import Sequence

import chex
import flax.linen as nn
import jax


class DigitCNN(nn.Module):
  """conv 3×3 → max-pool 2, once per width → dense (the features) → class logits."""

  num_classes: int
  conv_features: Sequence[int] = (16, 32)
  feature_dim: int = 128

  def features(self, x: jax.Array) -> jax.Array:
    chex.assert_rank(x, 4)
    for index, width in enumerate(self.conv_features):
      x = nn.relu(nn.Conv(width, (3, 3), padding='SAME', name=f'conv{index}')(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='SAME')
    return nn.relu(nn.Dense(self.feature_dim, name='features')(x.reshape(x.shape[0], -1)))

  def logits(self, features: jax.Array) -> jax.Array:
    return nn.Dense(self.num_classes, name='logits')(features)

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(features (N, feature_dim), logits (N, num_classes)) of images (N, H, W, C) in [0, 1]."""
    features = self.features(x)
    logits = self.logits(features)
    chex.assert_shape(logits, (x.shape[0], self.num_classes))
    return features, logits
