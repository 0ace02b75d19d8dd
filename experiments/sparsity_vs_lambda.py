"""How the sparse autoencoder's code sparsity and reconstruction change with the penalty weight lambda.

  python experiments/sparsity_vs_lambda.py --config=sparse_ae --weights=0,0.01,0.03,0.1,0.3,1

For each lambda (`model.sparsity_weight`) the config's model is trained from the same initial
weights on the same batches for --num_steps steps (the project's own code path: gen_jax.data,
the autoencoder family's train step compiled by gen_jax.runtime.parallel), then measured on the held-out
images: the fraction of code units at most `eval.sparsity_threshold` (the sparsity), the mean L1
norm of the code, and the PSNR of the reconstruction. `--config=sparse_ae_kl` sweeps the KL
variant. Writes report.md, report.json and sparsity_vs_lambda.png to a new directory under --out.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys
import time

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from gen_jax import data, validation  # noqa: E402
from gen_jax.evaluation import figures  # noqa: E402
from gen_jax.runtime import parallel  # noqa: E402
from gen_jax.evaluation.evaluator import Evaluator  # noqa: E402
from gen_jax.families.autoencoder import AutoencoderFamily  # noqa: E402
from gen_jax.families.base import DataSpec  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string('config', 'sparse_ae', 'A sparse autoencoder config in configs/ (sparse_ae, sparse_ae_kl).')
flags.DEFINE_list('weights', ['0', '0.01', '0.03', '0.1', '0.3', '1'], 'Penalty weights (lambda) to train.')
flags.DEFINE_integer('num_steps', 2000, 'Training steps per lambda.')
flags.DEFINE_string('out', 'experiments/results/sparsity_vs_lambda',
                    'Report directory (a new one, suffixed -2, -3, ... if it exists).')


def train_and_measure(config, dataset, weight: float) -> dict[str, float]:
  """Trains the config with sparsity_weight = weight; held-out sparsity, code L1 and PSNR."""
  config = config.copy_and_resolve_references()
  config.model.sparsity_weight = weight
  validation.validate(config)
  mesh = parallel.make_mesh(config.train.num_devices)
  batches = data.BatchSchedule(dataset.train, config.train.batch_size, config.seed)
  family = AutoencoderFamily(config, DataSpec.of(dataset, batches))
  state = parallel.initialize(family.init_state, jax.random.PRNGKey(config.seed), mesh)
  step = parallel.compile_train_step(family.train_step, mesh)
  start = time.perf_counter()
  for index in range(FLAGS.num_steps):
    state, _ = step(state, parallel.shard_batch(batches(index), mesh))
  jax.block_until_ready(state)
  seconds = time.perf_counter() - start
  metrics = Evaluator(mesh, config.eval.batch_size).mean(
      family.holdout_metrics, state, dataset.holdout, jax.random.PRNGKey(1))
  return {'lambda': weight, 'code_sparsity': metrics['code_sparsity'], 'code_l1': metrics['code_l1'],
          'output_psnr': metrics['output_psnr'], 'reconstruction_loss': metrics['reconstruction_loss'],
          'train_seconds': seconds}


def write_report(rows: list[dict], config, out_dir: pathlib.Path) -> None:
  m = config.model
  header = (f'# Code sparsity against lambda: configs/{FLAGS.config}.py\n\n'
            f'{m.code_dim}-unit {m.code_activation} code, {m.code_penalty} penalty, '
            f'{FLAGS.num_steps} steps of batch {config.train.batch_size} on {config.data.name}; '
            f'sparsity = fraction of held-out code units with |z| <= {config.eval.sparsity_threshold}.\n\n'
            '| lambda | code sparsity | code L1 | reconstruction PSNR (dB) | reconstruction loss |\n'
            '| ---: | ---: | ---: | ---: | ---: |\n')
  lines = [f"| {r['lambda']:g} | {r['code_sparsity']:.4f} | {r['code_l1']:.2f} | {r['output_psnr']:.2f} | "
           f"{r['reconstruction_loss']:.2f} |" for r in rows]
  (out_dir / 'report.md').write_text(header + '\n'.join(lines) + '\n')
  (out_dir / 'report.json').write_text(json.dumps({'config': FLAGS.config, 'num_steps': FLAGS.num_steps,
                                                    'rows': rows}, indent=2))
  fig, ax = plt.subplots(figsize=(6, 4))
  # lambda = 0 sits at the left edge of a symlog axis.
  lambdas = [r['lambda'] for r in rows]
  ax.plot(lambdas, [r['code_sparsity'] for r in rows], 'o-', color='tab:blue')
  ax.set_xscale('symlog', linthresh=min([w for w in lambdas if w > 0], default=1.0))
  ax.set_xlabel('lambda (model.sparsity_weight)')
  ax.set_ylabel('fraction of code units near zero', color='tab:blue')
  psnr_ax = ax.twinx()
  psnr_ax.plot(lambdas, [r['output_psnr'] for r in rows], 's--', color='tab:orange')
  psnr_ax.set_ylabel('reconstruction PSNR (dB)', color='tab:orange')
  ax.set_title(f'configs/{FLAGS.config}.py: sparsity and reconstruction against lambda')
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_dir / 'sparsity_vs_lambda.png', dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  config = importlib.import_module(f'configs.{FLAGS.config}').get_config()
  dataset = data.load(**config.data)
  rows = []
  for weight in sorted(float(w) for w in FLAGS.weights):
    rows.append(train_and_measure(config, dataset, weight))
    print(json.dumps(rows[-1]))
  out_dir = figures.unique_dir(ROOT / FLAGS.out if not pathlib.Path(FLAGS.out).is_absolute()
                               else pathlib.Path(FLAGS.out))
  write_report(rows, config, out_dir)
  print((out_dir / 'report.md').read_text())


if __name__ == '__main__':
  app.run(main)
