#!/usr/bin/env bash
# The accelerator measurements in one go, for a GPU lent for a few minutes: what the machine is,
# the benchmark of every family against eager PyTorch (10 steps per dispatch, then 1 for the
# headline cases), and the test suite on the GPU.
#
#   bash experiments/accelerator_check.sh OUT_DIR [TOTAL_SECONDS] [PREPARE_SECONDS]
#
# Compiling is what ran a first lent GPU's minutes out (20–65 s a family), so the work is in two
# phases. Preparation: gen_jax's side of every case is compiled into a persistent compilation
# cache, one process per family at once, while the test suite runs beside it (neither is timed).
# Timing: the benchmark alone on the machine, reading its programs from that cache. Every part
# has its own time limit, so a slow part cannot eat the others. A command given in the variable
# ALONGSIDE runs during the preparation too (a training to take advantage of the GPU); TESTS
# names the tests to run (default: all of them).
#
# Writes OUT_DIR/benchmark/report.{md,json}, OUT_DIR/benchmark_k1/report.{md,json},
# OUT_DIR/tests.log and OUT_DIR/prepare.log.
set -u
out=${1:?usage: accelerator_check.sh OUT_DIR [TOTAL_SECONDS] [PREPARE_SECONDS]}
total_s=${2:-540}
prepare_s=${3:-220}
mkdir -p "$out"
started=$(date +%s)
left() { echo $(( total_s - ($(date +%s) - started) )); }
# Several JAX processes and PyTorch share one GPU: none may take it all.
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
cache=$(mktemp -d)

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
python -c "import jax, torch; print('jax', jax.__version__, jax.devices(), '| torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no cuda')"

families=vae,dcgan,gan,wgan_gp,ae_conv,ae_linear,pix2pix,cyclegan,style_transfer
sweep=(--batch_sizes=512 --image_sizes=28,128)
headline=(--batch_sizes=64 --image_sizes=28)
single_step_families=vae,dcgan,gan

# Preparation.
for family in ${families//,/ }; do
  timeout "$prepare_s" python experiments/benchmark.py --compile_only --compilation_cache_dir="$cache" \
    --families="$family" --steps_per_dispatch=10 "${sweep[@]}" >>"$out/prepare.log" 2>&1 &
done
timeout "$prepare_s" python experiments/benchmark.py --compile_only --compilation_cache_dir="$cache" \
  --families=$single_step_families --steps_per_dispatch=1 "${headline[@]}" >>"$out/prepare.log" 2>&1 &
# The suite as CI runs it, on the GPU (the tests that build a 4-device mesh need a CPU host).
# Interrupted rather than killed at its limit, so that it still reports what failed and why.
timeout -s INT -k 20 $(( prepare_s - 20 )) python -m pytest -n 8 -v -p no:cacheprovider \
  --durations=15 -o addopts='' -m 'not learning' -rfE --tb=line ${TESTS:-tests} >"$out/tests.log" 2>&1 &
if [ -n "${ALONGSIDE:-}" ]; then
  timeout "$prepare_s" bash -c "$ALONGSIDE" >>"$out/prepare.log" 2>&1 &
fi
wait
grep -E 'compiled in|not compiled|Error' "$out/prepare.log" | tail -n 60
grep -E '^(FAILED|ERROR)|passed|failed' "$out/tests.log" | tail -n 60
echo "preparation done after $(( $(date +%s) - started )) s"

# Timing, alone on the machine. Peak: fp32 without tensor cores (JAX lets XLA use TF32 for
# float32 products and convolutions by default, PyTorch for convolutions only).
peak=(--peak_flops=67e12 --peak_flops_name='H200 fp32 without tensor cores (67 TFLOP/s)')
timed_s=$(( $(left) - 80 ))
timeout "$timed_s" python experiments/benchmark.py --families=$families --compilation_cache_dir="$cache" \
  --steps_per_dispatch=10 --budget_s=1.5 --slice_s=0.5 "${sweep[@]}" "${peak[@]}" \
  --deadline_s=$(( timed_s - 30 )) --output_dir="$out/benchmark" \
  --note='Lent GPU, one run; gen_jax with 10 steps per dispatch, PyTorch eager; programs compiled beforehand.' \
  | grep -E 'steps/s|Error|error'
echo "benchmark exit status ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s"

timed_s=$(( $(left) - 5 ))
timeout "$timed_s" python experiments/benchmark.py --families=$single_step_families \
  --compilation_cache_dir="$cache" --steps_per_dispatch=1 --budget_s=1.5 --slice_s=0.5 "${headline[@]}" \
  --deadline_s=$(( timed_s - 20 )) --output_dir="$out/benchmark_k1" \
  --note='Lent GPU, same run; gen_jax with 1 step per dispatch (the 10-step report beside this one).' \
  | grep -E 'steps/s|Error|error'
echo "single-step benchmark exit status ${PIPESTATUS[0]} after $(( $(date +%s) - started )) s"
rm -rf "$cache"
