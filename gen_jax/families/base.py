"""The interface every model family implements; the training loop knows only this."""

from __future__ import annotations

import abc
import dataclasses
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from gen_jax.data import Split
from gen_jax.evaluation.evaluator import Evaluator
from gen_jax.evaluation.sample_metrics import SampleJudge

Metrics = dict[str, jax.Array]
PREVIEW_EXAMPLES = 8


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a model needs to know of its data before it is built."""

  image_shape: tuple[int, int, int]
  num_classes: int
  steps_per_epoch: int
  num_train_examples: int
  # Paired data (image-to-image translation): the shape of an input, and the first held-out
  # examples, which the per-epoch pictures follow through training.
  input_shape: tuple[int, int, int] | None = None
  preview: Split | None = None

  @classmethod
  def of(cls, dataset, batches) -> DataSpec:
    """The spec of a `data.Dataset` trained on in the batches of a `data.EpochBatches`."""
    paired = dataset.input_shape is not None
    return cls(dataset.image_shape, dataset.num_classes, batches.steps_per_epoch,
               len(dataset.train), dataset.input_shape,
               dataset.holdout.take(PREVIEW_EXAMPLES) if paired else None)


class ModelFamily(abc.ABC):
  """One kind of generative model, built once per run from its config.

  The state is any pytree with an integer `step` field. `train_step` is a pure function of
  (state, batch); it is jit-compiled over a device mesh by the training loop, or run under
  `jax.pmap` when given the pmap axis name.
  """

  # Whether the model draws samples: the training loop then measures their quality (FID, …)
  # at every evaluation, with the names of sample_metrics.SAMPLE_QUALITY_METRICS.
  GENERATIVE = True
  # Whether the model translates input images (`translate(state, inputs, rng)`, and
  # `translation_grid` for their pictures) rather than drawing samples: --mode=sample then
  # translates held-out inputs or a folder of images.
  TRANSLATES = False
  # Why the family reads the whole training split into memory (an evaluation that fits on every
  # training image, say), which config.data.streaming forbids; empty when it does not.
  READS_WHOLE_TRAINING_SPLIT = ''

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

  def evaluation_samples(self, state: Any, rng: jax.Array, num: int,
                         holdout: Split) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples whose quality an evaluation measures against the `holdout` images, and the
    class each was asked to be (a conditional model, every class in turn; a translation model,
    its target's; None for an unconditional one)."""
    del holdout
    return self.sample(state, rng, num), None

  def judge_samples(self, state: Any, rng: jax.Array, num: int, holdout: Split,
                    judge: SampleJudge) -> dict[str, Any]:
    """The sample-quality metrics of an evaluation: by default those of `evaluation_samples`
    against the held-out images. A model that makes two kinds of samples (CycleGAN's two
    directions) judges each and names its metrics itself (declaring them in `metric_names`)."""
    samples, asked_classes = self.evaluation_samples(state, rng, num, holdout)
    return judge.quality(samples, holdout, asked_classes)

  def held_out_inputs(self, holdout: Split) -> np.ndarray:
    """What --mode=sample translates when no folder is given (a TRANSLATES model's)."""
    return holdout.inputs

  def on_epoch_end(self, state: Any, epoch: int, workdir: pathlib.Path,
                   judge: SampleJudge) -> dict[str, float] | None:
    """Hook for per-epoch pictures (GAN sample grids, for example); the scalars it returns are
    written to the run's metrics under the split 'epoch'."""

  def on_train_end(self, workdir: pathlib.Path) -> None:
    """Hook for end-of-training outputs built from the per-epoch ones."""
