"""Side-by-side reference for `nanochat bench tokenizer`: trains rustbpe (PyPI, the algorithm
nanochat uses) on the same corpus at the same vocabulary sizes, wraps the result in a
tiktoken.Encoding exactly as nanochat's RustBPETokenizer does, and times encode/decode.
Run by bench/compare_tiktoken.sh, which installs the packages into a venv."""
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor  # noqa: F401 (tiktoken batches use threads)

import rustbpe
import tiktoken

SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
SPECIALS = ["<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
            "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>"]


def best_of(n, f):
    best, out = float("inf"), None
    for _ in range(n):
        t = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    corpus, vocab_sizes, threads = sys.argv[1], [int(v) for v in sys.argv[2].split(",")], int(sys.argv[3])
    with open(corpus, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    whole = "".join(docs)
    mb = len(whole.encode("utf-8")) / 1e6
    print(f"corpus {corpus}: {mb:.2f} MB in {len(docs)} documents (rustbpe + tiktoken {tiktoken.__version__})")
    for vocab in vocab_sizes:
        t = time.perf_counter()
        tok = rustbpe.Tokenizer()
        tok.train_from_iterator(iter(docs), vocab - len(SPECIALS), pattern=SPLIT_PATTERN)
        t_train = time.perf_counter() - t
        ranks = {bytes(k): v for k, v in tok.get_mergeable_ranks()}
        enc = tiktoken.Encoding(name="rustbpe", pat_str=tok.get_pattern(), mergeable_ranks=ranks,
                                special_tokens={s: len(ranks) + i for i, s in enumerate(SPECIALS)})
        print(f"\nvocab {vocab}")
        print(f"  train            {t_train:8.2f} s")
        t_whole, ids = best_of(2, lambda: enc.encode_ordinary(whole))
        print(f"  encode whole, 1t {mb / t_whole:8.2f} MB/s  {mb * 1e6 / len(ids):.2f} bytes/token")
        t_docs, _ = best_of(2, lambda: [enc.encode_ordinary(d) for d in docs])
        print(f"  encode docs, 1t  {mb / t_docs:8.2f} MB/s")
        t_batch, _ = best_of(2, lambda: enc.encode_ordinary_batch(docs, num_threads=threads))
        print(f"  encode batch, {threads}t {mb / t_batch:8.2f} MB/s")
        t_dec, _ = best_of(2, lambda: enc.decode_bytes(ids))
        print(f"  decode, 1t       {mb / t_dec:8.2f} MB/s")


if __name__ == "__main__":
    main()
