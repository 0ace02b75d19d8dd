"""Trains and evaluates every model config on MNIST (the IDX files) and writes one results table.

  python experiments/mnist_results.py [--configs=gan,vae] [--mnist=../shared/data/mnist]

Every config runs through the project's own command line, in its own workdir under --root, with
the step budget below (sized for a 2-core CPU) and its config's own settings otherwise; all share
one digit classifier a size (same data, same recipe), so their sample metrics are comparable. A run that
has finished is reused and an interrupted one resumes from its checkpoint: the script can be
stopped and started again. GANs are evaluated several times during training and keep their best
checkpoint; the table then shows the best evaluation beside the final one.

Writes `<output>/results.md` (and `results.json`): per run, the steps, the training wall time on
this machine, FID, KID, precision, recall, coverage, class entropy, and where they apply the
conditional GAN's fraction of samples classified as the asked class, the VAEs' negative ELBO and
IWAE bound, the autoencoders' and PCA's reconstruction PSNR and probe accuracy, Pix2Pix's held-out
L1, PSNR and SSIM (and, as 'asked class', the fraction of translations that keep their digit), and beside each
row its sample grid. The commands it ran are printed in the report.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import shlex
import shutil
import subprocess
import sys
import time

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gen_jax.evaluation import reports  # noqa: E402
from gen_jax.runtime import metric_writers  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list('configs', None, 'Config names to run (default: every one in BUDGETS).')
flags.DEFINE_string('mnist', '../shared/data/mnist', 'Directory of the IDX files (relative to the project root).')
flags.DEFINE_string('root', 'runs/mnist', 'Parent of the workdirs.')
flags.DEFINE_string('output', 'experiments/results/mnist', 'Directory of the report.')
flags.DEFINE_bool('train', True, 'Train (or resume) the runs that are not finished; with --notrain '
                  'the report lists only the finished ones and names the others.')
flags.DEFINE_string('classifier_root', None,
                    'Parent of the digit classifiers every run is judged by, one per image size '
                    '(default: <root>).')

# Training steps per config, and evaluations during training (0: only at the end), chosen so
# that all of them fit a 2-core CPU in about an hour; the fast and the telling ones first. wgan:
# 1,500 steps (FID still falling from 123 at 1,000 to 116), 17-33 minutes (configs/wgan.py).
BUDGETS = {
    'gan': (10000, 2000), 'vae': (2000, 0), 'dcgan': (2000, 1000), 'cgan': (2000, 1000),
    'lsgan': (2000, 1000), 'pca': (40, 0), 'ae_linear': (1500, 0), 'ae_conv': (1500, 0),
    'dae': (1500, 0), 'sparse_ae': (1500, 0), 'sparse_ae_kl': (1500, 0), 'beta_vae': (2000, 0),
    'wgan': (1500, 500), 'wgan_gp': (600, 300), 'pix2pix': (1000, 500),
}
# The columns of the table: (metric, heading).
COLUMNS = (('fid', 'FID'), ('kid', 'KID'), ('precision', 'precision'), ('recall', 'recall'),
           ('coverage', 'coverage'), ('class_entropy', 'class entropy'),
           ('class_match', 'asked class'), ('neg_elbo', '-ELBO'), ('iwae_nll', 'IWAE NLL'),
           ('output_psnr', 'PSNR'), ('holdout_psnr', 'PSNR'), ('holdout_l1', 'L1'),
           ('holdout_ssim', 'SSIM'), ('probe_autoencoder_accuracy', 'probe acc.'),
           ('probe_pca_accuracy', 'probe acc.'))


def classifier_dir(name: str) -> pathlib.Path:
  """The one digit classifier of the config's image size (Pix2Pix's digits are 32×32)."""
  size = importlib.import_module(f'configs.{name}').get_config().data.image_size
  return pathlib.Path(FLAGS.classifier_root or FLAGS.root) / f'classifier_{size}x{size}'


def command(name: str, workdir: pathlib.Path) -> list[str]:
  steps, eval_every = BUDGETS[name]
  overrides = ['--config.data.name=idx', f'--config.data.path={FLAGS.mnist}',
               f'--config.train.num_steps={steps}', f'--config.train.eval_every={eval_every}',
               f'--config.eval.classifier_dir={classifier_dir(name)}']
  if name == 'pca':   # one pass over all 8,000 training images
    overrides += ['--config.data.max_examples=0']
  return [sys.executable, '-m', 'gen_jax.main', f'--config=configs/{name}.py', *overrides,
          f'--workdir={workdir}']


def finished(workdir: pathlib.Path, steps: int) -> bool:
  path = workdir / reports.EVAL_JSON
  return path.exists() and json.loads(path.read_text())['step'] >= steps


def best_evaluation(workdir: pathlib.Path, final_step: int) -> dict | None:
  """The evaluation kept in best/ when it is not the final one: its metrics from metrics.jsonl."""
  best_dir = workdir / 'best'
  steps = sorted(int(p.name) for p in best_dir.iterdir() if p.name.isdigit()) if best_dir.exists() else []
  if not steps or steps[-1] == final_step:
    return None
  records = [r for r in metric_writers.read_metrics(workdir, 'eval') if r['step'] == steps[-1]]
  return {'step': steps[-1], 'metrics': records[-1]} if records else None


def row(name: str, label: str, step: int, seconds: float | None, metrics: dict, grid: pathlib.Path | None,
        output: pathlib.Path) -> dict:
  cells = {heading: reports.format_value(metrics[key]) for key, heading in COLUMNS if key in metrics}
  link = f'![{name}]({pathlib.Path(shutil.copy(grid, output / f"{name}_{label}.png")).name})' if grid else ''
  return {'config': name, 'checkpoint': label, 'steps': step,
          'train time': reports.format_duration(seconds), **cells, 'samples': link}


def main(argv) -> None:
  del argv
  names = FLAGS.configs or list(BUDGETS)
  unknown = [n for n in names if n not in BUDGETS]
  if unknown:
    raise app.UsageError(f'unknown configs {unknown}; choose from {list(BUDGETS)}')
  output = pathlib.Path(FLAGS.output)
  output.mkdir(parents=True, exist_ok=True)
  rows, commands, missing = [], [], []
  for name in names:
    workdir = pathlib.Path(FLAGS.root) / name
    steps = BUDGETS[name][0]
    cmd = command(name, workdir)
    commands.append(shlex.join(['python', *cmd[1:]]))
    if finished(workdir, steps):
      print(f'{name}: reusing the finished run in {workdir}', flush=True)
    elif not FLAGS.train:
      print(f'{name}: not finished; left out (--notrain)', flush=True)
      missing.append(name)
      continue
    else:
      print(f'{name}: {commands[-1]}', flush=True)
      start = time.perf_counter()
      result = subprocess.run(cmd, cwd=ROOT)
      if result.returncode:
        print(f'{name}: failed (exit {result.returncode}); see its output above', flush=True)
        continue
      print(f'{name}: done in {time.perf_counter() - start:.0f} s', flush=True)
    run = reports.load_run(workdir)
    rows.append(row(name, 'final', run['step'], run['train_seconds'], run['metrics'], run['samples'], output))
    best = best_evaluation(workdir, run['step'])
    if best:
      grids = [workdir / 'eval' / f'step_{best["step"]}' / picture for picture in reports.SAMPLE_PICTURES]
      grid = next((g for g in grids if g.exists()), None)
      rows.append(row(name, 'best', best['step'], None, best['metrics'], grid, output))
  headings = ['config', 'checkpoint', 'steps', 'train time']
  headings += list(dict.fromkeys(h for _, h in COLUMNS if any(h in r for r in rows))) + ['samples']
  table = reports.table(headings, [[r.get(h, '-') for h in headings] for r in rows])
  text = ('# Every config on MNIST\n\nMNIST test split (IDX): first 8,000 images trained on, last 2,000 '
          'held out; one digit classifier for every row (of 32×32 digits for Pix2Pix, whose U-Net '
          'halves the image 5 times; 28×28 for the others). Train time: wall time of the training steps '
          'on the machine that ran it (2-core CPU). "best": the checkpoint kept by `train.best_metric` '
          '(FID; Pix2Pix: held-out L1) when it is not the final one.\n\n' + table +
          (f'\nNot finished, so not in the table: {", ".join(missing)}.\n' if missing else '') +
          '\n## Commands\n\n```bash\n' + '\n'.join(commands) + '\n```\n')
  (output / 'results.md').write_text(text)
  (output / 'results.json').write_text(json.dumps(rows, indent=1))
  print(f'{len(rows)} rows written to {output / "results.md"}')


if __name__ == '__main__':
  app.run(main)
