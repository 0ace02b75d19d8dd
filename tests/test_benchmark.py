"""experiments/benchmark.py: one tiny case end to end, the sweep's plan, and the PyTorch VAE twin;
experiments/pix2pix_quality.py end to end.

PyTorch is the optional `bench` extra, not a CI dependency: without it these tests are skipped.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from experiments import benchmark  # noqa: E402
from experiments.bench import families, report  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_one_tiny_case_writes_the_table_with_its_columns(tmp_path):
  out = tmp_path / 'report'
  # One case: the linear autoencoder at its config's batch (64), which is also the sweep's only one.
  command = [sys.executable, 'experiments/benchmark.py', '--families=ae_linear', '--batch_sizes=64',
             '--budget_s=0.2', '--slice_s=0.1', f'--output_dir={out}']
  subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
  record = json.loads((out / 'report.json').read_text())
  (headline,) = [case for case in record['cases'] if case['headline']]
  assert headline['ratio'] > 0 and headline['gen_jax']['steps'] > 0 and headline['torch']['steps'] > 0
  assert headline['gen_jax']['info']['parameters'] == headline['torch']['info']['parameters']
  text = (out / 'report.md').read_text()
  assert '| ' + ' | '.join(report.HEADLINE_COLUMNS) + ' |' in text
  assert 'Machine:' in text and 'Achieved FLOP/s' in text
  # Never over an earlier report.
  again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert again.returncode != 0 and 'already holds a report' in again.stderr


@pytest.mark.slow
@pytest.mark.skipif(not (ROOT.parent / 'shared' / 'data' / 'mnist').is_dir(),
                    reason='needs MNIST in ../shared/data/mnist')
def test_pix2pix_quality_trains_both_sides_on_the_edges_task_and_scores_their_translations(tmp_path):
  out = tmp_path / 'quality'
  subprocess.run([sys.executable, 'experiments/pix2pix_quality.py', '--budget_s=2', '--slice_s=1',
                  '--num_holdout=64', f'--output_dir={out}'],
                 cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
  record = json.loads((out / 'report.json').read_text())
  assert record['num_holdout'] == 64 and record['batches'] == 125   # 8,000 training pairs
  for side in record['sides'].values():
    assert side['steps'] > 0
    assert side['after']['l1'] < side['before']['l1']   # L1 × 100 dominates the first steps
    assert side['after']['psnr'] > side['before']['psnr']
  assert record['ratio'] > 0 and (out / 'translations.png').stat().st_size > 0
  assert 'held-out L1' in (out / 'report.md').read_text()


def test_the_plan_sweeps_batches_and_images_smallest_first():
  cases = benchmark.plan(families.FAMILIES['pix2pix'], [8, 512], [28, 64])
  assert [(c['batch_size'], c['image_size']) for c in cases] == [(8, 32), (64, 32), (64, 64), (512, 32)]
  assert [c['sweep'] for c in cases] == ['batch', 'headline', 'image', 'batch']
  assert [c['largest_batch'] for c in cases] == [False, False, False, True]
  mlp = benchmark.plan(families.FAMILIES['gan'], [8], [28, 64, 128])
  assert [(c['batch_size'], c['image_size']) for c in mlp] == [(8, 28), (64, 28)]   # not conv


def test_the_torch_vae_with_keras_padding_computes_the_jax_vae():
  import jax   # noqa: PLC0415
  from experiments.torch_models import vae as vae_torch   # noqa: PLC0415
  from gen_jax.models.vae import VAE   # noqa: PLC0415

  config = families.FAMILIES['vae'].build_config(4, 28)
  m = config.model
  model = VAE(tuple(m.conv_features), m.hidden_dim, m.latent_dim, (28, 28, 1))
  images = np.random.default_rng(0).random((4, 28, 28, 1), np.float32)
  params = model.init(jax.random.PRNGKey(0), images, jax.random.PRNGKey(1))['params']
  mean, logvar = model.apply({'params': params}, images, method=VAE.encode)
  logits = model.apply({'params': params}, mean, method=VAE.decode)
  twin = vae_torch.TorchVAE(tuple(m.conv_features), m.hidden_dim, m.latent_dim, (28, 28, 1), 'keras')
  vae_torch.load_flax_params(twin, jax.device_get(params))
  with torch.no_grad():
    t_mean, t_logvar = twin.encode(torch.from_numpy(images).permute(0, 3, 1, 2))
    t_logits = twin.decode(t_mean).permute(0, 2, 3, 1)
  for expected, found in ((mean, t_mean), (logvar, t_logvar), (logits, t_logits)):
    np.testing.assert_allclose(found.numpy(), np.asarray(expected), rtol=1e-4, atol=1e-4)
