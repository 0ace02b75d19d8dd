#!/usr/bin/env bash
# Runs gen_jax experiments: one run, several seeds, or a grid of config overrides, each in its own
# workdir; here (several at a time, one a GPU) or as a SLURM array job. Re-running a sweep skips
# its finished runs (eval.json at the run's num_steps) and resumes the others from their checkpoints.
#
#   ./launch.sh configs/vae.py                                  # one run, runs/vae/seed0
#   ./launch.sh configs/vae.py --seeds 0,1,2 --jobs 2           # three seeds, two at a time
#   ./launch.sh configs/beta_vae.py --grid model.beta=1,4,8     # runs/beta_vae/model.beta-1_seed0, ...
#   ./launch.sh configs/vae.py:smoke --host-devices 4 -- --config.train.num_steps=50
#   ./launch.sh configs/beta_vae.py --grid model.beta=1,4,8 --gpus all      # one run a GPU
#   ./launch.sh configs/dcgan.py --seeds 0,1 --backend slurm --partition gpu --time 2:00:00 \
#       --nodes 2 --gpus-per-node 4 --root /shared/runs/dcgan    # each run on 2 nodes x 4 GPUs
#
# Options:
#   --seeds LIST        comma-separated integer seeds (default 0)
#   --grid FIELD=LIST   comma-separated values of one config field (repeatable: full product)
#   --jobs N            runs at a time (default 1; on SLURM: array tasks at a time, default all)
#   --host-devices N    emulate N CPU devices (XLA_FLAGS); the batch is sharded over them
#   --root DIR          parent of the workdirs (default runs/<config name>)
#   --mode MODE         train (default), evaluate or sample
#   --gpus LIST|all     one run a listed GPU at a time (CUDA_VISIBLE_DEVICES); a GPU listed twice
#                       takes two runs. Without it every run uses every GPU
#   --backend B         local (default) or slurm: an sbatch array job, one task a run, written to
#                       <root>/slurm/sweep-<n>/ (sweep.sbatch, commands.txt, the tasks' logs)
#   --partition P       slurm: the partition
#   --time T            slurm: time limit of each run (MINUTES, HH:MM:SS or D-HH:MM:SS)
#   --nodes N           slurm: nodes each run spans (default 1; more: srun starts one process
#                       a GPU with --multihost, and jax.distributed reads SLURM's settings)
#   --gpus-per-node G   slurm: GPUs each run uses on each of its nodes (default 1; 0 for none)
#   --sbatch LINE       slurm: an extra #SBATCH line, e.g. --sbatch=--account=proj (repeatable)
#   --dry-run           print the commands (slurm: the script) only; submit and run nothing
#   -- ARGS             passed to every run unchanged
#
# A local sweep ends with its results table (experiments/collect_results.py), in <root>/results.md.
set -euo pipefail

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit "${1:-0}"; }

[[ $# -ge 1 ]] || usage 2
for arg in "$@"; do
  [[ $arg == -- ]] && break
  [[ $arg == -h || $arg == --help ]] && usage 0
done
exec "${PYTHON:-python}" "$(dirname "$0")/experiments/sweep.py" "$@"
