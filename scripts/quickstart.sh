#!/usr/bin/env bash
# The main job on the built-in default (README), with no download: `erosion demo` grows the model
# organism on this CPU (or reuses erosion-demo/organism), evaluates its behaviour, runs the study's
# four analyses on it and writes erosion-demo/report.html. Extra arguments go to `erosion demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p erosion-cli
exec target/release/erosion demo "$@"
