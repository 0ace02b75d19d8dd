"""Pretrained VGG19 weights for style transfer: found, verified, fetched and read into the Flax
parameter tree of `gen_jax.models.style_transfer.VGG19Features`, with each format's preprocessing.

Two published files are read, each checked against the checksum its publisher gives:
  keras        vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (Keras applications; MD5 given
               by keras.applications.VGG19). Kernels are stored (3, 3, in, out), as Flax's; the
               network expects BGR pixels in 0-255 minus the ImageNet channel means.
  torchvision  vgg19-dcbb9e9d.pth (torchvision's VGG19_Weights.IMAGENET1K_V1; the name carries the
               first 8 hex digits of its SHA-256, as torch.hub checks). Kernels are (out, in, 3, 3)
               and are transposed to (3, 3, in, out); the network expects RGB in [0, 1] normalised
               by the ImageNet mean and standard deviation. The .pth (a pickle, 548 MB with the
               classifier) is converted once, with PyTorch, to an .npz of the 16 convolutions:
                 python -m gen_jax.data.vgg19_weights --torch_state_dict=vgg19-dcbb9e9d.pth \\
                     --output=~/.cache/gen_jax/vgg19/vgg19-dcbb9e9d.npz
               The .npz records the SHA-256 of the file it came from, checked when it is read.
A missing file is downloaded once into the cache folder (with a progress bar) when the machine is
online; offline, the error says which file to put where.

Loss scale: the Keras network sees pixels about 58 times larger (255 · 0.226, the ImageNet
standard deviation) than torchvision's, and its features are about as much larger; `FEATURE_SCALE`
brings them back, so that one set of content and style weights suits both formats.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import pathlib
import urllib.error
import urllib.request
from typing import Callable, Mapping

import chex
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from gen_jax.data.dataset import DataError

# The convolutions of VGG19, in order, with their output channels (the Flax module's names).
BLOCK_SIZES = (2, 2, 4, 4, 4)
CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
CONV_LAYERS = tuple(f'conv{block + 1}_{index + 1}' for block, size in enumerate(BLOCK_SIZES)
                    for index in range(size))
# Each convolution's index in torchvision's `vgg19().features` (the ReLUs and poolings between).
TORCH_FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
KERAS_MEAN_BGR = (103.939, 116.779, 123.68)   # on 0-255 pixels
FEATURE_SCALE = {'keras': 1.0 / (255.0 * 0.226), 'torchvision': 1.0}


class WeightsError(DataError):
  """A weight file is missing, cannot be fetched, fails its checksum or holds the wrong layers."""


@dataclasses.dataclass(frozen=True)
class PublishedFile:
  """A weight file as its publisher gives it: name, address and checksum (a hex digest, or its
  first digits)."""
  name: str
  url: str
  algorithm: str
  digest: str


KERAS_FILE = PublishedFile(
    'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    'https://storage.googleapis.com/tensorflow/keras-applications/vgg19/'
    'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5',
    'md5', '253f8cb515780f3b799900260a226db6')
TORCHVISION_FILE = PublishedFile('vgg19-dcbb9e9d.pth', 'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth',
                                 'sha256', 'dcbb9e9d')
TORCHVISION_NPZ = 'vgg19-dcbb9e9d.npz'
FORMATS = ('keras', 'torchvision')


def default_cache_dir() -> pathlib.Path:
  return pathlib.Path(os.environ.get('XDG_CACHE_HOME', '~/.cache')).expanduser() / 'gen_jax' / 'vgg19'


def file_digest(path: pathlib.Path, algorithm: str) -> str:
  digest = hashlib.new(algorithm)
  with open(path, 'rb') as stream:
    for block in iter(lambda: stream.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def verify(path: pathlib.Path, published: PublishedFile) -> None:
  """Refuses a file whose checksum is not the one its publisher gives."""
  found = file_digest(path, published.algorithm)
  if not found.startswith(published.digest):
    raise WeightsError(f'{path} fails its checksum: {published.algorithm} {found}, but the '
                       f'published {published.name} has {published.digest}; delete it and fetch '
                       f'it again from {published.url}')


def _check_layers(params: Mapping[str, Mapping[str, np.ndarray]], source: pathlib.Path | str) -> dict:
  """The 16 convolutions, each {kernel (3, 3, in, out), bias (out,)} as float32, or an error."""
  tree = {}
  for index, (name, channels) in enumerate(zip(CONV_LAYERS, CONV_CHANNELS)):
    inputs = 3 if index == 0 else CONV_CHANNELS[index - 1]
    if name not in params:
      raise WeightsError(f'{source} holds no weights for VGG19 layer {name}')
    kernel, bias = (np.asarray(params[name][k], np.float32) for k in ('kernel', 'bias'))
    if kernel.shape != (3, 3, inputs, channels) or bias.shape != (channels,):
      raise WeightsError(f'{source}: layer {name} has kernel {kernel.shape} and bias {bias.shape}, '
                         f'VGG19 needs {(3, 3, inputs, channels)} and {(channels,)}')
    tree[name] = {'kernel': kernel, 'bias': bias}
  return tree


def read_keras_h5(path: pathlib.Path) -> dict:
  """The Keras notop file's convolutions (groups block<b>_conv<i>, each a kernel and a bias)."""
  import h5py
  params = {}
  with h5py.File(path, 'r') as store:
    for name in CONV_LAYERS:
      block, index = name[len('conv'):].split('_')
      group_name = f'block{block}_conv{index}'
      if group_name not in store:
        raise WeightsError(f'{path} holds no group {group_name} (VGG19 layer {name})')
      arrays = []
      store[group_name].visititems(lambda _, item: arrays.append(item[()]) if hasattr(item, 'shape') else None)
      kernels, biases = [a for a in arrays if a.ndim == 4], [a for a in arrays if a.ndim == 1]
      if len(kernels) != 1 or len(biases) != 1:
        raise WeightsError(f'{path}: group {group_name} holds {len(kernels)} kernels and '
                           f'{len(biases)} biases; expected one of each')
      params[name] = {'kernel': kernels[0], 'bias': biases[0]}
  return _check_layers(params, path)


def torch_state_dict_to_params(state: Mapping[str, np.ndarray], source: str = 'state dict') -> dict:
  """torchvision vgg19's `features.<i>.weight` (out, in, 3, 3) and `.bias` → the Flax tree, each
  kernel transposed to (3, 3, in, out)."""
  params = {}
  for name, index in zip(CONV_LAYERS, TORCH_FEATURE_INDICES):
    keys = (f'features.{index}.weight', f'features.{index}.bias')
    if any(key not in state for key in keys):
      raise WeightsError(f'{source} holds no {keys[0]} (VGG19 layer {name}); is it torchvision\'s vgg19?')
    params[name] = {'kernel': np.transpose(np.asarray(state[keys[0]]), (2, 3, 1, 0)),
                    'bias': np.asarray(state[keys[1]])}
  return _check_layers(params, source)


def convert_torchvision(state_dict_path: pathlib.Path, output: pathlib.Path,
                        check_checksum: bool = True) -> pathlib.Path:
  """Converts torchvision's vgg19 .pth (verified unless told not to) to the .npz `read_npz` reads."""
  try:
    import torch
  except ImportError:
    raise WeightsError(f'converting {state_dict_path} needs PyTorch (pip install torch, or the '
                       f'project\'s [bench] extra)') from None
  state_dict_path, output = pathlib.Path(state_dict_path), pathlib.Path(output).expanduser()
  if check_checksum:
    verify(state_dict_path, TORCHVISION_FILE)
  state = torch.load(state_dict_path, map_location='cpu', weights_only=True)
  params = torch_state_dict_to_params({k: v.numpy() for k, v in state.items()}, str(state_dict_path))
  arrays = {f'{name}/{kind}': value for name, layer in params.items() for kind, value in layer.items()}
  output.parent.mkdir(parents=True, exist_ok=True)
  partial = output.with_name(output.name + '.part.npz')
  np.savez(partial, source_sha256=np.array(file_digest(state_dict_path, 'sha256')), **arrays)
  partial.replace(output)
  return output


def read_npz(path: pathlib.Path, check_checksum: bool = True) -> dict:
  """The .npz of `convert_torchvision`; its source must be the published torchvision file."""
  with np.load(path) as stored:
    source = str(stored['source_sha256']) if 'source_sha256' in stored else ''
    if check_checksum and not source.startswith(TORCHVISION_FILE.digest):
      raise WeightsError(f'{path} was not converted from the published {TORCHVISION_FILE.name} '
                         f'(its source had SHA-256 {source or "unrecorded"}); convert that file')
    params = {name: {kind: stored[f'{name}/{kind}'] for kind in ('kernel', 'bias')
                     if f'{name}/{kind}' in stored} for name in CONV_LAYERS}
  return _check_layers({k: v for k, v in params.items() if len(v) == 2}, path)


def fetch(published: PublishedFile, directory: pathlib.Path,
          opener: Callable | None = None) -> pathlib.Path:
  """Downloads `published` into `directory` with a progress bar, verifies it, and returns its path.

  A failed download or checksum leaves no file behind; offline, the error says where to put it.
  """
  target = pathlib.Path(directory) / published.name
  target.parent.mkdir(parents=True, exist_ok=True)
  partial = target.with_name(target.name + '.part')
  try:
    with (opener or urllib.request.urlopen)(published.url, timeout=30) as response, \
        open(partial, 'wb') as out:
      size = int(response.headers.get('Content-Length') or 0) or None
      with tqdm(total=size, unit='B', unit_scale=True, desc=f'fetching {published.name}') as progress:
        for block in iter(lambda: response.read(1 << 20), b''):
          out.write(block)
          progress.update(len(block))
    verify(partial, published)
  except (urllib.error.URLError, OSError) as error:
    partial.unlink(missing_ok=True)
    raise WeightsError(f'VGG19 weights {published.name} are not in {directory} and could not be '
                       f'downloaded ({error}); put that file, from {published.url} '
                       f'({published.algorithm} {published.digest}), in {directory}') from None
  except WeightsError:
    partial.unlink(missing_ok=True)
    raise
  partial.replace(target)
  return target


def present_format(directory: pathlib.Path) -> str | None:
  """The format whose ready-to-read file is in `directory` (Keras first), or None."""
  directory = pathlib.Path(directory)
  if (directory / KERAS_FILE.name).is_file():
    return 'keras'
  if (directory / TORCHVISION_NPZ).is_file() or (directory / TORCHVISION_FILE.name).is_file():
    return 'torchvision'
  return None


def load(weights_format: str, directory: pathlib.Path, download: bool = True) -> dict:
  """The Flax parameters of VGG19 in `weights_format`, from `directory` (fetched there when absent
  and `download`), verified against the published checksum."""
  directory = pathlib.Path(directory).expanduser()
  if weights_format == 'keras':
    path = directory / KERAS_FILE.name
    if not path.is_file():
      path = _fetch_or_explain(KERAS_FILE, directory, download)
    verify(path, KERAS_FILE)
    return read_keras_h5(path)
  if weights_format != 'torchvision':
    raise ValueError(f'weights format {weights_format!r}; choose one of {FORMATS}')
  npz = directory / TORCHVISION_NPZ
  if not npz.is_file():
    source = directory / TORCHVISION_FILE.name
    fetched = not source.is_file()
    if fetched:
      source = _fetch_or_explain(TORCHVISION_FILE, directory, download)
    convert_torchvision(source, npz)
    if fetched:   # only the 80 MB of convolutions are kept of what this module downloaded
      source.unlink()
  return read_npz(npz)


def _fetch_or_explain(published: PublishedFile, directory: pathlib.Path, download: bool) -> pathlib.Path:
  if download:
    return fetch(published, directory)
  raise WeightsError(f'VGG19 weights {published.name} are not in {directory}; put that file, from '
                     f'{published.url} ({published.algorithm} {published.digest}), there')


def preprocess(images: jax.Array, weights_format: str) -> jax.Array:
  """RGB (N, H, W, 3) in [0, 1] → the input the weights were trained on: Keras's BGR 0-255 minus
  the channel means, or torchvision's normalised RGB (also what random filters get: centred,
  of unit scale)."""
  chex.assert_rank(images, 4)
  if weights_format == 'keras':
    return images[..., ::-1] * 255.0 - jnp.asarray(KERAS_MEAN_BGR, images.dtype)
  return (images - jnp.asarray(IMAGENET_MEAN_RGB, images.dtype)) / jnp.asarray(IMAGENET_STD_RGB, images.dtype)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog='python -m gen_jax.data.vgg19_weights',
      description='Converts torchvision\'s vgg19 state dict (.pth) to the .npz gen_jax reads.')
  parser.add_argument('--torch_state_dict', required=True, help=f'path of {TORCHVISION_FILE.name}')
  parser.add_argument('--output', default=str(default_cache_dir() / TORCHVISION_NPZ),
                      help='the .npz to write (default: %(default)s)')
  parser.add_argument('--skip_checksum', action='store_true',
                      help='convert a file other than the published one (its .npz is refused when '
                           'read with checksums on)')
  args = parser.parse_args(argv)
  if not pathlib.Path(args.torch_state_dict).expanduser().is_file():
    raise SystemExit(f'error: --torch_state_dict={args.torch_state_dict}: no such file')
  try:
    written = convert_torchvision(pathlib.Path(args.torch_state_dict).expanduser(), args.output,
                                  check_checksum=not args.skip_checksum)
  except (WeightsError, FileNotFoundError) as error:
    raise SystemExit(f'error: {error}') from None
  print(f'wrote {written}')


if __name__ == '__main__':
  main()
