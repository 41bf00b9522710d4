#!/usr/bin/env bash
# Runs every test of nanochat-rs. This is the README's test command and what CI runs
# (.ci/run). It installs what the tests need and reads the golden fixtures from
# $NANOCHAT_FIXTURES (default: ../shared/fixtures next to this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

export NANOCHAT_FIXTURES="${NANOCHAT_FIXTURES:-$(cd .. && pwd)/shared/fixtures}"
if [ ! -d "$NANOCHAT_FIXTURES" ]; then
  echo "error: fixtures not found at $NANOCHAT_FIXTURES (set NANOCHAT_FIXTURES)" >&2
  exit 1
fi

# Two cores: build with both, run test binaries with both.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo test --workspace --all-targets --locked --no-fail-fast
