"""PyTorch's side of a case: the twin's step in plain eager PyTorch (no torch.compile, no CUDA
graphs), one Python call a step, on the same number of batches as gen_jax's side, already on the
device. Within a timed slice nothing is read back (the losses stay tensors); on a GPU the clock
is read after `torch.cuda.synchronize()`."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from experiments.bench import families, style


def pick_device(name: str) -> torch.device:
  if name == 'auto':
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
  return torch.device(name)


def _sync(device: torch.device) -> None:
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


def device_memory(device: torch.device) -> dict[str, Any]:
  if device.type == 'cuda':
    return {'device_peak_bytes': int(torch.cuda.max_memory_allocated(device))}
  return {}


def describe(device: torch.device) -> dict[str, Any]:
  info = {'version': torch.__version__, 'device': str(device), 'threads': torch.get_num_threads()}
  if device.type == 'cuda':
    info.update(gpu=torch.cuda.get_device_name(device),
                matmul_tf32=torch.backends.cuda.matmul.allow_tf32,
                cudnn_tf32=torch.backends.cudnn.allow_tf32,
                cudnn_benchmark=torch.backends.cudnn.benchmark)
  return info


class TorchSide:
  """A family's `Trainer`; see the module docstring."""

  def __init__(self, family: families.Family, batch_size: int, image_size: int, settings: dict,
               batches: list[dict[str, np.ndarray]] | None = None):
    started = time.perf_counter()
    self.device = pick_device(settings['torch_device'])
    if self.device.type == 'cuda':
      torch.cuda.reset_peak_memory_stats(self.device)
    torch.manual_seed(settings['seed'])
    config = family.build_config(batch_size, image_size)
    self.trainer = families.torch_class(family)(config, (image_size, image_size, 1), self.device)
    count = settings['steps_per_dispatch'] * settings['batch_groups']
    host = batches or family.host_batches(batch_size, image_size, count, settings['seed'])
    self.batches = [{k: self._tensor(v) for k, v in batch.items()} for batch in host]
    self.steps, self.last = 0, None
    self.info = {'parameters': self.trainer.parameter_count(), 'build_s': time.perf_counter() - started}

  def _tensor(self, array: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    if tensor.ndim == 4:   # NHWC → NCHW
      tensor = tensor.permute(0, 3, 1, 2).contiguous()
    elif tensor.dtype == torch.int32:
      tensor = tensor.long()
    return tensor.to(self.device)

  def _step(self):
    self.last = self.trainer.step(self.batches[self.steps % len(self.batches)])
    self.steps += 1

  def warm_up(self) -> None:
    started = time.perf_counter()
    self._step()
    _sync(self.device)
    self.info['first_call_s'] = time.perf_counter() - started
    for _ in range(2):
      self._step()
    _sync(self.device)

  def train(self, seconds: float) -> tuple[int, float]:
    _sync(self.device)
    started, first = time.perf_counter(), self.steps
    while True:
      self._step()
      if time.perf_counter() - started >= seconds:
        break
    _sync(self.device)
    return self.steps - first, time.perf_counter() - started

  def losses(self) -> dict[str, float]:
    return {k: float(v) for k, v in self.last.items()}

  def evaluations_per_step(self) -> float | None:
    return None   # one forward and backward pass a step

  def memory(self) -> dict[str, Any]:
    return device_memory(self.device)

  def translate(self, inputs: np.ndarray) -> np.ndarray:
    """The twin's translations in [0, 1] of (N, H, W, C) `inputs` in [0, 1] (its `translate`)."""
    outputs = self.trainer.translate(self._tensor(inputs))
    return outputs.permute(0, 2, 3, 1).cpu().numpy()


class TorchStyleSide:
  """The tutorial's L-BFGS loop, `style_iterations` iterations a `step` call; a step is one."""

  def __init__(self, family: families.Family, batch_size: int, image_size: int, settings: dict):
    del family, batch_size
    started = time.perf_counter()
    self.device = pick_device(settings['torch_device'])
    if self.device.type == 'cuda':
      torch.cuda.reset_peak_memory_stats(self.device)
    self.k = settings['style_iterations']
    transfer = style.make_transfer(image_size, self.k)   # the same filters and pictures
    content, (picture,) = transfer.scale_inputs(0)

    def as_torch(a):
      return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)[None])).to(self.device)

    module = families.torch_class(families.FAMILIES['style_transfer'])
    self.runner = module(transfer.vgg_params, transfer.objective, as_torch(content), as_torch(picture))
    self.last, self.iterations, self.evaluations_before = None, 0, 0
    self.info = {'parameters': self.runner.parameter_count(), 'build_s': time.perf_counter() - started}

  def warm_up(self) -> None:
    started = time.perf_counter()
    self.runner.run(self.k)
    _sync(self.device)
    self.info['first_call_s'] = time.perf_counter() - started
    self.evaluations_before = self.runner.evaluations   # counted from the timed turns on

  def train(self, seconds: float) -> tuple[int, float]:
    _sync(self.device)
    started, steps = time.perf_counter(), 0
    while True:
      done, self.last = self.runner.run(self.k)
      steps += done
      self.iterations += done
      if time.perf_counter() - started >= seconds:
        break
    _sync(self.device)
    return steps, time.perf_counter() - started

  def losses(self) -> dict[str, float]:
    return {k: float(v) for k, v in self.last.items()}

  def evaluations_per_step(self) -> float | None:
    """Loss evaluations per L-BFGS iteration over the timed turns and the memory pass."""
    evaluations = self.runner.evaluations - self.evaluations_before
    return evaluations / self.iterations if self.iterations else None

  def memory(self) -> dict[str, Any]:
    return device_memory(self.device)


def make(family: families.Family, batch_size: int, image_size: int, settings: dict,
         batches: list[dict[str, np.ndarray]] | None = None):
  """As jax_side.make."""
  if family.kind == 'style':
    if batches:
      raise ValueError('style transfer trains on its pictures, not on batches')
    return TorchStyleSide(family, batch_size, image_size, settings)
  return TorchSide(family, batch_size, image_size, settings, batches)
