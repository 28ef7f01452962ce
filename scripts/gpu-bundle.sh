#!/usr/bin/env bash
# Builds, here (no GPU needed), what a GPU machine without Rust runs to check the CUDA path:
# out/gpu-bundle/ = a release erosion-bench built with --features cuda for compute capability
# 9.0 (H100/H200), the tiny transformers fixtures, and run.sh (scripts/gpu-check.sh). Copy the
# folder over and run `./run.sh` there (README, "GPU").
#
# candle links cudarc with `dynamic-linking`: the binary names libcuda.so.1 (the driver's),
# libnvrtc.so.13, libcurand.so.10, libcublas.so.13 and libcublasLt.so.13 as needed libraries,
# resolved when it starts. Here they come from the CUDA 13.0 wheels (scripts/cuda-wheels.sh)
# and a libcuda stub (no driver wheel exists) whose every function returns
# CUDA_ERROR_STUB_LIBRARY. None is carried: cublasLt alone is 540 MB; the GPU machine has them
# (its CUDA 13.0 toolkit or PyTorch's nvidia wheels). Finally the bundle runs here on the CPU
# (`run.sh --device cpu`, stub and wheels on the library path): the binary loads and the
# script works.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cache="${EROSION_CUDA_CACHE:-$HOME/.cache/erosion/cuda-13.0.88}"
export EROSION_CUDA_CACHE="$cache"
out="${1:-$root/out/gpu-bundle}"
home="$(scripts/cuda-wheels.sh link)"

# The stub: one function per driver entry point in cudarc's bindings (its driver/sys), under
# the driver's soname, in a folder cudarc's build script searches ($CUDA_HOME/lib/stubs).
cudarc_dir="$(cargo metadata --locked --format-version 1 --features erosion-bench/cuda |
    python3 -c 'import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "cudarc"))')"
stubs="$home/lib/stubs"
mkdir -p "$stubs"
grep -o 'pub unsafe fn cu[A-Z][A-Za-z0-9_]*' "$cudarc_dir/src/driver/sys/mod.rs" | sort -u |
    sed 's/pub unsafe fn \(.*\)/int \1(void) { return 34; }/' >"$stubs/libcuda-stub.c"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so" "$stubs/libcuda-stub.c"
ln -sf libcuda.so "$stubs/libcuda.so.1"

export CUDA_HOME="$home" PATH="$home/bin:$PATH" CUDA_COMPUTE_CAP=90
export CARGO_TARGET_DIR="$cache/target" CARGO_INCREMENTAL=0
cargo build --release --locked -p erosion-bench --features cuda
bin="$CARGO_TARGET_DIR/release/erosion-bench"

rm -rf "$out"
mkdir -p "$out/bin" "$out/fixtures"
cp "$bin" "$out/bin/"
strip "$out/bin/erosion-bench" 2>/dev/null || true
# Stripped, the binary is about 65 MiB (candle's kernels are embedded as PTX text): gzip takes
# it to about 16 MiB; run.sh unpacks it into a temporary folder.
gzip -9 "$out/bin/erosion-bench"
for f in crates/erosion-model/tests/fixtures/tiny-*/; do
    name="$(basename "$f")"
    mkdir -p "$out/fixtures/$name"
    cp "$f"/config.json "$f"/model.safetensors "$f"/reference.safetensors "$out/fixtures/$name/"
done
cp scripts/gpu-check.sh "$out/run.sh"
{
    echo "erosion $(git describe --always --dirty 2>/dev/null || echo unknown), built $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "erosion-bench --features cuda, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP, $(nvcc --version | grep -o 'release [0-9.]*')"
    echo "wheels: $(cat "$cache/link/.complete")"
    echo "needs: $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
} >"$out/BUILD.txt"
size_mib=$(($(du -sk "$out" | cut -f1) / 1024))
if ((size_mib > 64)); then
    echo "gpu-bundle.sh: $out is $size_mib MiB, over the 64 MiB a GPU machine takes" >&2
    exit 1
fi
cat "$out/BUILD.txt"
echo "gpu-bundle.sh: $out ($size_mib MiB); checking it on the CPU here:"
EROSION_CUDA_LIBS="$stubs:$home/lib" "$out/run.sh" --device cpu
