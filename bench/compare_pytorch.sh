#!/usr/bin/env bash
# Runs `nanochat bench engine` and the same measurement on nanochat's own PyTorch model and Engine
# code path (bench/compare_pytorch.py, PyTorch CPU in a venv) on the same machine, one right after
# the other for each dtype, and prints prefill and decode tok/s side by side with the ratio
# ours / PyTorch (above 1 = we are faster).
#
#   bench/compare_pytorch.sh [--depth 20] [--prompt 32] [--gen 128] [--runs 3]
#                            [--dtypes f32,bf16] [--threads N (default: all cores)]
#
# Both sides: random weights (no download), batch 1, greedy, prefill = time to the first token,
# decode = median time per later token within a run, median over --runs runs after one warm-up.
# The venv (target/bench-venv-torch) gets PyTorch's CPU wheel from download.pytorch.org, or
# plain PyPI `torch` (a CUDA build, several GB, runs on the CPU all the same) when that index
# cannot be reached. Nothing is compared unless both sides ran.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,14s/^# \{0,1\}//p' "$0"; }
die() { echo "compare_pytorch.sh: $*" >&2; exit 1; }

depth=20 prompt=32 gen=128 runs=3 dtypes=f32,bf16 threads=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --depth|--prompt|--gen|--runs|--dtypes|--threads)
      [ $# -ge 2 ] || die "$1 needs a value"
      opt=${1#--}; val=$2; shift 2 ;;
    --depth=*|--prompt=*|--gen=*|--runs=*|--dtypes=*|--threads=*)
      opt=${1%%=*}; opt=${opt#--}; val=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  case "$opt" in
    depth) depth=$val ;; prompt) prompt=$val ;; gen) gen=$val ;; runs) runs=$val ;;
    dtypes) dtypes=$val ;; threads) threads=$val ;;
  esac
done
for pair in "depth=$depth" "prompt=$prompt" "gen=$gen" "runs=$runs" "threads=$threads"; do
  [[ ${pair#*=} =~ ^[1-9][0-9]*$ ]] || die "--${pair%%=*} must be a positive integer (got '${pair#*=}')"
done
IFS=, read -r -a dtype_list <<< "$dtypes"
[ ${#dtype_list[@]} -gt 0 ] || die "--dtypes is empty"
for dt in "${dtype_list[@]}"; do
  case "$dt" in f32|bf16) ;; *) die "unknown dtype '$dt' in --dtypes (expected f32 and/or bf16)" ;; esac
done

# --- PyTorch in a venv ---------------------------------------------------------------------------
venv=target/bench-venv-torch
py=$venv/bin/python
if ! "$py" -c 'import torch, numpy' 2>/dev/null; then
  if [ ! -x "$py" ]; then
    python3 -m venv "$venv" || die "could not create the venv $venv (is python3-venv installed?)"
  fi
  echo "== installing PyTorch (CPU) into $venv =="
  if "$venv/bin/pip" install --quiet --retries 1 --timeout 30 \
      --index-url https://download.pytorch.org/whl/cpu torch; then
    echo "installed torch from download.pytorch.org/whl/cpu"
  else
    echo "download.pytorch.org/whl/cpu failed or is unreachable; falling back to PyPI's torch" \
         "(the CUDA build: several GB of downloads, runs on the CPU all the same)" >&2
    "$venv/bin/pip" install --quiet torch \
      || die "installing torch failed (neither download.pytorch.org nor PyPI worked); no comparison made"
  fi
  # numpy only keeps torch from warning at import; the benchmark does not use it.
  "$venv/bin/pip" install --quiet numpy || die "installing numpy failed; no comparison made"
  "$py" -c 'import torch' || die "torch does not import in $venv; no comparison made"
fi
torch_version=$("$py" -c 'import torch; print(torch.__version__)') \
  || die "torch does not import in $venv; no comparison made"

# --- our binary ----------------------------------------------------------------------------------
cargo build --release -p nanochat-cli || die "cargo build failed; no comparison made"
ours=./target/release/nanochat
# RAYON_NUM_THREADS sets our thread count; binaries that have `bench engine --threads` get it too.
ours_threads=()
if "$ours" bench engine --help | grep -q -- '--threads'; then ours_threads=(--threads "$threads"); fi

load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
  echo "note: load average $load before starting: other processes use the CPU, expect noisy numbers" >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
results=$tmp/results.tsv
# Pulls the first number after a prefix in a line of `nanochat bench engine` output.
field() { sed -n "s/^$2[^0-9]*\([0-9.][0-9.]*\).*/\1/p" "$1" | head -n 1; }
for dt in "${dtype_list[@]}"; do
  echo
  echo "== nanochat-rs: bench engine --depth $depth --dtype $dt ($threads threads) =="
  RAYON_NUM_THREADS=$threads "$ours" bench engine --depth "$depth" --dtype "$dt" \
    --prompt "$prompt" --gen "$gen" --runs "$runs" "${ours_threads[@]}" | tee "$tmp/ours-$dt.txt" \
    || die "nanochat bench engine --dtype $dt failed; no comparison made"
  o_prefill=$(sed -n 's/^prefill [0-9]* tokens: .*(\([0-9.]*\) tok\/s).*/\1/p' "$tmp/ours-$dt.txt")
  o_decode=$(sed -n 's/^decode: .*(\([0-9.]*\) tok\/s).*/\1/p' "$tmp/ours-$dt.txt")
  o_load=$(sed -n 's/.*built\/loaded in \([0-9.]*\)s.*/\1/p' "$tmp/ours-$dt.txt")
  o_rss=$(field "$tmp/ours-$dt.txt" "peak RSS:")
  if [ -z "$o_prefill" ] || [ -z "$o_decode" ]; then
    die "could not read prefill/decode from our output (format changed?); no comparison made"
  fi

  echo
  echo "== PyTorch $torch_version: bench/compare_pytorch.py --depth $depth --dtype $dt ($threads threads) =="
  OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads "$py" bench/compare_pytorch.py \
    --depth "$depth" --dtype "$dt" --prompt "$prompt" --gen "$gen" --runs "$runs" \
    --threads "$threads" > "$tmp/torch-$dt.json" \
    || die "bench/compare_pytorch.py --dtype $dt failed; no comparison made"
  read -r t_prefill t_decode t_load t_rss < <("$py" -c '
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(*(d[k] if d[k] is not None else "nan" for k in ("prefill_tok_s", "decode_tok_s", "load_s", "peak_rss_gb")))
' "$tmp/torch-$dt.json") || die "could not read the PyTorch result; no comparison made"
  {
    printf '%s\t%s\t%s\t%s\n' "$dt" "prefill $prompt tokens (tok/s)" "$o_prefill" "$t_prefill"
    printf '%s\t%s\t%s\t%s\n' "$dt" "decode (tok/s)" "$o_decode" "$t_decode"
    printf '%s\t%s\t%s\t%s\n' "$dt" "model build (s, lower=better)" "${o_load:-nan}" "$t_load"
    printf '%s\t%s\t%s\t%s\n' "$dt" "peak RSS (GB, lower=better)" "${o_rss:-nan}" "$t_rss"
  } >> "$results"
done

echo
echo "== d$depth, batch 1, prompt $prompt, gen $gen, median of $runs runs, $threads threads," \
     "$(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)) =="
echo "   nanochat-rs ($(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- 2>/dev/null || echo '+dirty')) vs PyTorch $torch_version"
awk -F'\t' '
  BEGIN { printf "%-5s %-30s %12s %12s %14s\n", "dtype", "metric", "nanochat-rs", "PyTorch", "ours/PyTorch" }
  function num(v) { return v == "nan" ? "-" : sprintf("%.2f", v) }
  {
    ratio = ($3 != "nan" && $4 != "nan" && $4 + 0 > 0) ? sprintf("%.2fx", $3 / $4) : "-"
    printf "%-5s %-30s %12s %12s %14s\n", $1, $2, num($3), num($4), ratio
  }' "$results"
