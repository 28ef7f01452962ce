#!/usr/bin/env bash
# The CUDA build, checked without a GPU: `cargo check --features cuda` of the `erosion` binary
# and of erosion-bench, with every crate they use, candle's CUDA kernels compiled by nvcc for
# compute capability 9.0 (H100/H200); nothing is linked (no driver here).
# The CUDA 13.0 wheels come from PyPI (scripts/cuda-wheels.sh, cached outside the clone), and
# so does its target folder ($EROSION_CUDA_CACHE/target): on a warm cache only the workspace's
# own crates are checked again (a fresh clone's sources are newer than the cached results).
# Without pip or the registry it prints why and skips, except in CI (CI=true), where that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${EROSION_CUDA_CACHE:-$HOME/.cache/erosion/cuda-13.0.88}"
export EROSION_CUDA_CACHE="$cache"
status=0
home="$(scripts/cuda-wheels.sh check)" || status=$?
if [[ $status -ne 0 ]]; then
    if [[ $status -eq 3 && "${CI:-}" != "true" ]]; then
        echo "cuda-check.sh: skipped (the CUDA wheels could not be installed; see above)" >&2
        exit 0
    fi
    echo "cuda-check.sh: failed: the CUDA wheels could not be installed${CI:+ (CI=$CI: the check is required)}" >&2
    exit 1
fi
export CUDA_HOME="$home" PATH="$home/bin:$PATH" CUDA_COMPUTE_CAP=90
export CARGO_TARGET_DIR="$cache/target" CARGO_INCREMENTAL=0
start=$SECONDS
cargo check --locked -p erosion-cli -p erosion-bench --features erosion-cli/cuda,erosion-bench/cuda
echo "cuda-check.sh: the cuda build checks ($((SECONDS - start)) s, nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_${CUDA_COMPUTE_CAP})"
