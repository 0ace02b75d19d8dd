#!/usr/bin/env bash
# The accelerator measurements in one go, for a GPU lent for a few minutes: what the machine is,
# the benchmark of every family against eager PyTorch with several steps per dispatch, then the
# test suite on the GPU. Every part has its own time limit, so a slow part cannot eat the others.
#
#   bash experiments/accelerator_check.sh OUT_DIR [BENCHMARK_SECONDS] [TEST_SECONDS]
#
# Writes OUT_DIR/benchmark/report.{md,json} and OUT_DIR/tests.log.
set -u
out=${1:?usage: accelerator_check.sh OUT_DIR [BENCHMARK_SECONDS] [TEST_SECONDS]}
benchmark_s=${2:-300}
test_s=${3:-180}
mkdir -p "$out"
# The gen_jax and PyTorch sides are separate processes on one GPU: neither may take it all.
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
python -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"

# Peak: fp32 without tensor cores (JAX lets XLA use TF32 for f32 convolutions and products by
# default, PyTorch for convolutions only; the report says which peak the percentage is of).
timeout "$benchmark_s" python experiments/benchmark.py \
  --families=vae,dcgan,gan,wgan_gp,pix2pix,ae_conv,ae_linear,style_transfer \
  --steps_per_dispatch=10 --budget_s=2 --slice_s=0.5 --batch_sizes=8,64,512 --image_sizes=28,128 \
  --peak_flops=67e12 --peak_flops_name='H200 fp32 without tensor cores (67 TFLOP/s)' \
  --deadline_s=$((benchmark_s - 45)) --output_dir="$out/benchmark" \
  --note='Lent GPU, one run; gen_jax with 10 steps per dispatch, PyTorch eager.'
echo "benchmark exit status $?"

# The suite as CI runs it, on the GPU (tests that ask for 4 devices need a CPU host: they fail
# here with 'only 1 devices are present').
timeout "$test_s" python -m pytest -n 8 -v -p no:cacheprovider --durations=10 -o addopts='' \
  -m 'not learning' tests 2>&1 | tee "$out/tests.log" | grep -E 'FAILED|ERROR|passed|failed' | tail -n 60
echo "tests exit status ${PIPESTATUS[0]}"
