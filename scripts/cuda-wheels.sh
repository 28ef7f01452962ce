#!/usr/bin/env bash
# Installs NVIDIA's CUDA 13.0 wheels from PyPI into a folder outside the clone and prints the
# CUDA home they make (DIR/nvidia/cu13: bin/nvcc, nvvm/bin/cicc, include/, lib/).
#   scripts/cuda-wheels.sh check   # the compiler and headers: enough for `cargo check`
#   scripts/cuda-wheels.sh link    # also nvrtc, curand, cublas(Lt): to link the binary
# Each set goes to its own folder under $EROSION_CUDA_CACHE (default
# ~/.cache/erosion/cuda-13.0.88), reused when its marker (written last) names the same pins.
# Exits 3 when pip cannot install them (no python3/pip, no registry), so callers can skip.
#
# Why 13.0: the GPU machines this project may use run a CUDA 13.0 driver, and a driver JITs
# only the PTX of its own CUDA version or older (candle's kernels are PTX, compiled by this
# nvcc). cudarc 0.19.10 accepts 13.0 to 13.4. The pins are CUDA 13.0 Update 2's components.
set -euo pipefail
set_name="${1:?usage: cuda-wheels.sh check|link}"
cache="${EROSION_CUDA_CACHE:-$HOME/.cache/erosion/cuda-13.0.88}"
pins=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
)
case "$set_name" in
    check) ;;
    link) pins+=(nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35 nvidia-cublas==13.1.0.3) ;;
    *) echo "cuda-wheels.sh: unknown set \`$set_name\` (check, link)" >&2; exit 2 ;;
esac
dir="$cache/$set_name"
home="$dir/nvidia/cu13"
marker="$dir/.complete"
if [[ -f "$marker" && "$(cat "$marker")" == "${pins[*]}" ]]; then
    echo "$home"
    exit 0
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "cuda-wheels.sh: python3 with pip is needed to install the CUDA wheels" >&2
    exit 3
fi
# A half-made folder (an interrupted install) is removed, not patched: pip --target does not
# replace the shared nvidia/ folder of an earlier install.
rm -rf "$dir"
mkdir -p "$cache"
tmp="$(mktemp -d "$cache/.install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "cuda-wheels.sh: installing ${pins[*]} into $dir" >&2
if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --target "$tmp/w" "${pins[@]}" >&2; then
    echo "cuda-wheels.sh: pip could not install the CUDA wheels" >&2
    exit 3
fi
mv "$tmp/w" "$dir"
# Linkers look for the unversioned names (-lcublas); the wheels ship only libX.so.N.
if [[ -d "$home/lib" ]]; then
    for so in "$home"/lib/lib*.so.*; do
        base="${so##*/}"
        base="${base%%.so.*}.so"
        [[ -e "$home/lib/$base" ]] || ln -s "${so##*/}" "$home/lib/$base"
    done
fi
"$home/bin/nvcc" --version >/dev/null
echo "${pins[*]}" >"$marker"
echo "$home"
