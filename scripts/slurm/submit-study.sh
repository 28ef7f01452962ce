#!/usr/bin/env bash
# Submits an erosion study to Slurm as N shards (a job array) and a merge job that runs once
# every shard has succeeded. Prints both job ids.
#   scripts/slurm/submit-study.sh STUDY.toml OUT N [sbatch options...]
# e.g. scripts/slurm/submit-study.sh STUDY.toml results/32b 8 --partition=gpu --gres=gpu:1
# The erosion binary is `erosion` on the PATH, or $EROSION; the job logs go to the current folder.
set -euo pipefail
if [ $# -lt 3 ]; then
    sed -n '2,6p' "$0" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
study="$(realpath "$1")"
out="$(realpath -m "$2")"
n="$3"
shift 3
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
    echo "N must be a positive number of shards, not '$n'" >&2
    exit 2
fi
export EROSION="${EROSION:-$(command -v erosion || true)}"
if [ -z "$EROSION" ]; then
    echo "no erosion binary: put it on the PATH or set EROSION" >&2
    exit 2
fi
array=$(sbatch --parsable --export=ALL --array="0-$((n - 1))" "$@" \
    "$here/study-shard.sbatch" "$study" "$out")
array="${array%%;*}"
merge=$(sbatch --parsable --export=ALL --dependency="afterok:$array" --kill-on-invalid-dep=yes "$@" \
    "$here/study-merge.sbatch" "$study" "$out")
merge="${merge%%;*}"
echo "shards: job $array (tasks 0-$((n - 1)))"
echo "merge:  job $merge (after every shard succeeds)"
