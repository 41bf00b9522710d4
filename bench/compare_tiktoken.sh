#!/usr/bin/env bash
# Runs nanochat's reference tokenizer stack (rustbpe + tiktoken from PyPI, in a venv) and our
# `nanochat bench tokenizer` on the same corpus, one right after the other, so the speed claims
# in the README can be reproduced on any machine.
#
#   bench/compare_tiktoken.sh [CORPUS.jsonl] [VOCAB_SIZES=4096,65536]
# Without a corpus it builds the 50 MB one with scripts/make_bench_corpus.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-bench-data/corpus50.jsonl}
vocab=${2:-4096,65536}
threads=$(nproc)
[ -f "$corpus" ] || scripts/make_bench_corpus.sh "$corpus"
venv=bench-data/venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet tiktoken rustbpe
fi
cargo build --release -p nanochat-cli
echo "== reference: rustbpe + tiktoken =="
"$venv/bin/python" bench/compare_tiktoken.py "$corpus" "$vocab" "$threads"
echo
echo "== nanochat-rs =="
./target/release/nanochat bench tokenizer --corpus "$corpus" --vocab-size "$vocab" --repeat 2
