"""The players of an adversarial game: each network with its own parameters, BatchNorm statistics
and optimiser state, so that the generator's and the critic's updates never share an optax state."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import optax
from flax import struct


class Player(struct.PyTreeNode):
  """One network of a game: its parameters, BatchNorm running statistics and its own optimiser."""

  params: Any
  batch_stats: Any
  opt_state: Any
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @classmethod
  def create(cls, variables: dict[str, Any], tx: optax.GradientTransformation) -> 'Player':
    params = variables['params']
    return cls(params=params, batch_stats=variables.get('batch_stats', {}),
               opt_state=tx.init(params), tx=tx)

  @property
  def variables(self) -> dict[str, Any]:
    return {'params': self.params, 'batch_stats': self.batch_stats}

  def apply_gradients(self, grads: Any) -> 'Player':
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state)


def apply_in_training(module: nn.Module, params: Any, batch_stats: Any, *inputs,
                      rngs: dict[str, jax.Array] | None = None) -> tuple[jax.Array, Any]:
  """A training-mode forward pass: outputs and the updated BatchNorm running statistics (as
  PyTorch's train mode: batch statistics used, running averages updated)."""
  outputs, mutated = module.apply({'params': params, 'batch_stats': batch_stats}, *inputs,
                                  train=True, mutable=['batch_stats'], rngs=rngs)
  return outputs, mutated.get('batch_stats', batch_stats)
