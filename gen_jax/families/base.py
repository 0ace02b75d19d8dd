"""The interface every model family implements; the training loop knows only this."""

from __future__ import annotations

import abc
import dataclasses
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from gen_jax.evaluation.evaluator import Evaluator
from gen_jax.evaluation.sample_metrics import SampleJudge

Metrics = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a model needs to know of its data before it is built."""

  image_shape: tuple[int, int, int]
  num_classes: int
  steps_per_epoch: int
  num_train_examples: int

  @classmethod
  def of(cls, dataset, batches) -> DataSpec:
    """The spec of a `data.Dataset` trained on in the batches of a `data.BatchSchedule`."""
    return cls(dataset.image_shape, dataset.num_classes, batches.steps_per_epoch,
               len(dataset.train))


class ModelFamily(abc.ABC):
  """One kind of generative model, built once per run from its config.

  The state is any pytree with an integer `step` field. `train_step` is a pure function of
  (state, batch); it is jit-compiled over a device mesh by the training loop, or run under
  `jax.pmap` when given the pmap axis name.
  """

  # Whether the model draws samples: the training loop then measures their quality (FID, …)
  # at every evaluation, with the names of sample_metrics.SAMPLE_QUALITY_METRICS.
  GENERATIVE = True

  def __init__(self, config: ml_collections.ConfigDict, spec: DataSpec):
    self.config = config
    self.spec = spec

  @classmethod
  def validate(cls, config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for model fields the family cannot use; runs before any data is read."""

  @abc.abstractmethod
  def metric_names(self) -> set[str]:
    """The names `evaluate` reports (without the sample-quality ones the loop adds): what
    `train.best_metric` may name, checked before training."""

  @abc.abstractmethod
  def init_state(self, rng: jax.Array) -> Any:
    """The initial training state."""

  @abc.abstractmethod
  def train_step(self, state: Any, batch: dict[str, jax.Array],
                 axis_name: str | None = None) -> tuple[Any, Metrics]:
    """One optimisation step; metrics are scalars averaged over the global batch."""

  @abc.abstractmethod
  def evaluate(self, state: Any, dataset, evaluator: Evaluator, out_dir: pathlib.Path,
               rng: jax.Array) -> dict[str, float]:
    """Held-out metrics; also writes the family's figures (PNG) into out_dir."""

  @abc.abstractmethod
  def sample(self, state: Any, rng: jax.Array, num: int) -> np.ndarray:
    """`num` samples, (num, H, W, C) floats in [0, 1]."""

  def evaluation_samples(self, state: Any, rng: jax.Array,
                         num: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples whose quality an evaluation measures, and the class each was asked to be
    (a conditional model, every class in turn; None for an unconditional one)."""
    return self.sample(state, rng, num), None

  def on_epoch_end(self, state: Any, epoch: int, workdir: pathlib.Path,
                   judge: SampleJudge) -> dict[str, float] | None:
    """Hook for per-epoch pictures (GAN sample grids, for example); the scalars it returns are
    written to the run's metrics under the split 'epoch'."""

  def on_train_end(self, workdir: pathlib.Path) -> None:
    """Hook for end-of-training outputs built from the per-epoch ones."""
