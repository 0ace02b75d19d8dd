"""Tries bad values in every numeric and string field of every config and counts what happens.

  python experiments/fuzz_config.py [--configs=vae,gan]

For each config and each field it sets values no run can use (NaN, ±infinity, a negative number,
10^12, a string where a number belongs, a number where a string belongs, None, an empty tuple where
a sequence of layer sizes belongs) and runs the checks a run makes before reading any data
(`gen_jax.validation.validate`). Each try ends in one of: a named error (a ConfigError naming the
field), another exception (a traceback a user would see), or a silent acceptance. Silent
acceptances are listed: some are legitimate (a seed of 10^12, a negative `sample.label` means
"every class"), the others are gaps. Writes nothing; prints the counts and the list.
"""

from __future__ import annotations

import collections
import importlib
import math
import pathlib
import sys

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gen_jax import validation  # noqa: E402
from gen_jax.runtime import config_checks  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list('configs', ['vae', 'gan', 'dcgan', 'wgan_gp', 'ae_conv', 'dae', 'sparse_ae_kl', 'pca'],
                  'Configs to fuzz.')


def bad_values(value):
  """Values of the wrong kind or out of any sane range for a field holding `value`."""
  if isinstance(value, bool):
    return [2, 'yes', None]
  if isinstance(value, (int, float)):
    return [math.nan, math.inf, -math.inf, -1, 10**12, 'x', None]
  if isinstance(value, str):
    return [7, '', 'no_such_choice', None]
  if isinstance(value, tuple):
    return [(), (0,), (-3,), ('a',), 5]
  return []


def leaves(config, prefix=''):
  for key, value in config.items():
    if hasattr(value, 'items'):
      yield from leaves(value, f'{prefix}{key}.')
    else:
      yield f'{prefix}{key}', value


def main(argv):
  del argv
  counts = collections.Counter()
  accepted, tracebacks = [], []
  for name in FLAGS.configs:
    base = importlib.import_module(f'configs.{name}').get_config('smoke')
    for field, value in leaves(base):
      for bad in bad_values(value):
        config = base.copy_and_resolve_references()
        *path, last = field.split('.')
        block = config
        for part in path:
          block = block[part]
        try:
          with config.unlocked(), block.ignore_type():
            block[last] = bad
        except (TypeError, ValueError, AttributeError):
          continue   # ml-collections itself refuses the type: never reaches the code
        try:
          validation.validate(config)
        except config_checks.ConfigError as error:
          counts['named error' if field.split('.')[-1] in str(error) else 'error not naming the field'] += 1
          continue
        except Exception as error:  # the finding: anything but a named error
          counts['traceback'] += 1
          tracebacks.append(f'{name}: {field}={bad!r}: {type(error).__name__}: {error}')
          continue
        counts['silently accepted'] += 1
        accepted.append(f'{name}: {field}={bad!r}')
  print(f'{sum(counts.values())} bad values tried in {len(FLAGS.configs)} configs: '
        + ', '.join(f'{k} {v}' for k, v in counts.most_common()))
  for line in tracebacks:
    print('  traceback:', line)
  for line in accepted:
    print('  accepted:', line)


if __name__ == '__main__':
  app.run(main)
