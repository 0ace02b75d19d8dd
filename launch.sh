#!/usr/bin/env bash
# Runs gen_jax experiments: one run, several seeds, or a grid of config overrides, each in its own
# workdir, optionally on N emulated host devices (to exercise data parallelism on a CPU machine).
#
#   ./launch.sh configs/vae.py                                  # one run, runs/vae/seed0
#   ./launch.sh configs/vae.py --seeds 0,1,2 --jobs 2           # three seeds, two at a time
#   ./launch.sh configs/beta_vae.py --grid model.beta=1,4,8     # runs/beta_vae/model.beta-1_seed0, ...
#   ./launch.sh configs/vae.py:smoke --host-devices 4 -- --config.train.num_steps=50
#
# Options:
#   --seeds LIST        comma-separated seeds (default 0)
#   --grid FIELD=LIST   comma-separated values of one config field (repeatable: full product)
#   --jobs N            runs at a time (default 1)
#   --host-devices N    emulate N CPU devices (XLA_FLAGS); the batch is sharded over them
#   --root DIR          parent of the workdirs (default runs/<config name>)
#   --mode MODE         train (default), evaluate or sample
#   --dry-run           print the commands only
#   -- ARGS             passed to every run unchanged
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

[[ $# -ge 1 ]] || usage 2
config=$1; shift
[[ $config == -h || $config == --help ]] && usage 0
config_file=${config%%:*}
[[ -f $config_file ]] || { echo "error: config file '$config_file' does not exist" >&2; exit 2; }

seeds=0 jobs=1 host_devices="" root="" mode=train dry_run=0
grids=() extra=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --grid) [[ $2 == *=* ]] || { echo "error: --grid takes FIELD=V1,V2,..., got '$2'" >&2; exit 2; }
            grids+=("$2"); shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --host-devices) host_devices=$2; shift 2 ;;
    --root) root=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) usage 0 ;;
    *) echo "error: unknown option '$1'" >&2; usage 2 ;;
  esac
done
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "error: --jobs must be a positive integer, got '$jobs'" >&2; exit 2; }
[[ -z $host_devices || $host_devices =~ ^[1-9][0-9]*$ ]] || {
  echo "error: --host-devices must be a positive integer, got '$host_devices'" >&2; exit 2; }
name=$(basename "$config_file" .py)
root=${root:-runs/$name}

# Expand the grid into a list of "name|overrides" combinations (the product of every --grid).
combos=("|")
for grid in "${grids[@]+"${grids[@]}"}"; do
  field=${grid%%=*}; IFS=, read -ra values <<< "${grid#*=}"
  next=()
  for combo in "${combos[@]}"; do
    for value in "${values[@]}"; do
      # Workdir names safe in shells and on every file system: FIELD-VALUE, other characters as '-'.
      safe=$(printf '%s' "$value" | tr -c 'A-Za-z0-9.+-' '-')
      next+=("${combo%%|*}${field}-${safe}_|${combo#*|} --config.${field}=${value}")
    done
  done
  combos=("${next[@]}")
done

commands=()
IFS=, read -ra seed_list <<< "$seeds"
for combo in "${combos[@]}"; do
  for seed in "${seed_list[@]}"; do
    workdir="$root/${combo%%|*}seed${seed}"
    commands+=("python -m gen_jax.main --config=$config --workdir=$workdir --mode=$mode --config.seed=$seed${combo#*|} ${extra[*]+"${extra[*]}"}")
  done
done

if [[ -n $host_devices ]]; then
  export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=$host_devices"
fi
for command in "${commands[@]}"; do echo "$command"; done
[[ $dry_run == 1 ]] && exit 0
printf '%s\n' "${commands[@]}" | xargs -P "$jobs" -I{} bash -c '{}'
