#!/usr/bin/env bash
# The GPU check, run on a GPU machine from the bundle scripts/gpu-bundle.sh makes (where it is
# run.sh): every tiny transformers fixture on the GPU in f32 and bf16 against transformers'
# logits, and the log-probs and gradients there against the CPU, as one table; exits non-zero
# if a check fails. Needs no Rust and no network, only an NVIDIA driver (CUDA 13.0 or newer)
# and CUDA 13 libraries: nvrtc, curand, cublas (a CUDA 13 toolkit, or PyTorch's nvidia wheels).
#   ./run.sh                    # --device cuda (cuda:N for another GPU)
#   EROSION_CUDA_LIBS=DIR:DIR ./run.sh   # where the libraries are, if not found
# Also runs from the repository (scripts/gpu-check.sh [--device D]) when out/gpu-bundle exists.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [[ -f "$here/bin/erosion-bench.gz" ]]; then
    bundle="$here"
else
    bundle="$here/../out/gpu-bundle"
fi
device=cuda
while [[ $# -gt 0 ]]; do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        *) echo "usage: run.sh [--device cuda|cuda:N|cpu]" >&2; exit 2 ;;
    esac
done
packed="$bundle/bin/erosion-bench.gz"
[[ -f "$packed" ]] || { echo "gpu-check.sh: no $packed (build it with scripts/gpu-bundle.sh)" >&2; exit 1; }
# Unpacked into a temporary folder: the bundle itself may be read-only.
unpacked="$(mktemp -d)"
trap 'rm -rf "$unpacked"' EXIT
bin="$unpacked/erosion-bench"
gzip -dc "$packed" >"$bin"
chmod +x "$bin"

# The libraries the binary names, looked for where a CUDA toolkit or PyTorch keeps them; the
# driver's libcuda.so.1 is left to the system's loader.
dirs=()
[[ -n "${EROSION_CUDA_LIBS:-}" ]] && IFS=: read -r -a dirs <<<"$EROSION_CUDA_LIBS"
if command -v python3 >/dev/null; then
    site="$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))' 2>/dev/null || true)"
    [[ -n "$site" ]] && for d in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib; do [[ -d "$d" ]] && dirs+=("$d"); done
fi
for d in "${CUDA_HOME:-/usr/local/cuda}"/lib64 /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64; do
    [[ -d "$d" ]] && dirs+=("$d")
done
path=""
missing=()
for lib in libnvrtc.so.13 libcurand.so.10 libcublas.so.13 libcublasLt.so.13; do
    found=""
    for d in "${dirs[@]}"; do
        if [[ -e "$d/$lib" ]]; then found="$d"; break; fi
    done
    if [[ -z "$found" ]]; then missing+=("$lib"); continue; fi
    [[ ":$path:" == *":$found:"* ]] || path="${path:+$path:}$found"
done
if ((${#missing[@]})); then
    echo "gpu-check.sh: not found: ${missing[*]} (searched ${dirs[*]:-nothing}); set EROSION_CUDA_LIBS" >&2
    exit 1
fi
# The stub (in EROSION_CUDA_LIBS, for a run on the CPU where no driver is) must come first.
for d in "${dirs[@]}"; do
    if [[ -e "$d/libcuda.so.1" ]]; then path="$d:$path"; break; fi
done
export LD_LIBRARY_PATH="$path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

[[ -f "$bundle/BUILD.txt" ]] && cat "$bundle/BUILD.txt"
echo "host: $(uname -m), $(nproc) CPUs; libraries from $path"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' || true
fi
echo
"$bin" fixtures --dir "$bundle/fixtures" --device "$device"
