#!/usr/bin/env bash
# Builds a reproducible text corpus for timing the tokenizer (reference §11.2 used a similar
# 50 MB mix): the `.py` files of the running python3's standard library, then plain-text files
# under /usr/share/doc, in sorted path order, each cut
# into documents of at most 10,000 characters, written as JSON strings one per line, until the
# corpus holds TARGET_BYTES of text (UTF-8, before JSON escaping).
#
#   scripts/make_bench_corpus.sh OUT.jsonl [TARGET_BYTES=50000000]
set -euo pipefail
out=${1:?usage: $0 OUT.jsonl [TARGET_BYTES]}
target=${2:-50000000}
python3 - "$out" "$target" <<'PY'
import glob, json, os, sys, sysconfig

out, target = sys.argv[1], int(sys.argv[2])
os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
stdlib = sysconfig.get_paths()["stdlib"]
files = sorted(glob.glob(os.path.join(stdlib, "**", "*.py"), recursive=True))
for path in sorted(glob.glob("/usr/share/doc/**", recursive=True)):
    if os.path.isfile(path) and not os.path.islink(path) and not path.endswith((".gz", ".bz2", ".xz", ".png", ".jpg", ".gif", ".pdf")):
        files.append(path)

total = docs = 0
with open(out, "w", encoding="utf-8") as f:
    for path in files:
        try:
            with open(path, encoding="utf-8") as src:
                text = src.read()
        except (UnicodeDecodeError, OSError):
            continue
        for i in range(0, len(text), 10_000):
            doc = text[i:i + 10_000]
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            total += len(doc.encode("utf-8"))
            docs += 1
            if total >= target:
                break
        if total >= target:
            break
print(f"{out}: {docs} documents, {total} bytes of text", file=sys.stderr)
PY
