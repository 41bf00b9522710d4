#!/usr/bin/env python3
"""Development check: does nanochat-pt's pickle writer reproduce CPython's bytes?

Writes many pickles made by this interpreter's C pickler (protocols 2-5) into a folder.
The Rust example `pickle_roundtrip` then parses each one and pickles the result again
with the same protocol; every file must come back byte-identical, which checks the
writer's opcode choices, memo numbering, batching and framing against CPython.

    python3 crates/pt/scripts/cpython_pickle_cases.py /tmp/pickle-cases
    cargo run -p nanochat-pt --example pickle_roundtrip -- /tmp/pickle-cases

With --small, only protocols 2 (or 3) and 4 and cases under 20 KB are written (that is how
crates/pt/tests/data/cpython_pickles/ was made, for the Rust tests that need no Python).
"""
import argparse
import argparse as argparse_module  # Namespace pickles through copyreg.__newobj__ (NEWOBJ)
import collections
import decimal
import fractions
import os
import pickle
import random
import sys


def cases():
    rng = random.Random(1234)

    def rand_bytes(n):
        return bytes(rng.randrange(256) for _ in range(n))

    for n in [0, 1, 2, 3, 999, 1000, 1001, 1999, 2000, 2001, 3000, 70000]:
        keys = set()
        while len(keys) < n:
            keys.add(rand_bytes(rng.randrange(1, 12)))
        yield f"dict_bytes_{n}", {k: rng.randrange(-70000, 70000) for k in keys}, 3
        yield f"dict_str_{n}", {f"k{i}": i for i in range(n)}, 2
        yield f"list_{n}", [rng.randrange(1 << 40) for _ in range(n)], 2
        od = collections.OrderedDict((f"key{i}", i) for i in range(n))
        yield f"ordereddict_{n}", od, 2
    od = collections.OrderedDict(a=1, b=2)
    od.extra = "attribute"  # BUILD with a state dict
    yield "ordereddict_with_state", od, 2
    ints = [0, 1, -1, 127, 128, 255, 256, -255, -256, 65535, 65536, -65536, 2**31 - 1, -2**31,
            2**31, -2**31 - 1, 2**32, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64, -2**64,
            2**100, -2**100, 2**2048, -2**2048 + 1]
    ints += [-(2 ** (8 * k - 1)) for k in range(1, 12)] + [2 ** (8 * k - 1) for k in range(1, 12)]
    yield "ints", ints, 2
    yield "floats", [0.0, -0.0, 1.5, -2.25, float("inf"), float("-inf"), 1e300, 5e-324, float("nan")], 2
    strings = ["", "a", "é", "日本語", "🙂", "x" * 255, "y" * 256, "z" * 65535, "w" * 65536, "v" * 70000]
    yield "strings", strings, 2
    yield "big_string", "s" * 200000, 2
    yield "bytes", [b"", b"a", b"\xff", b"b" * 255, b"c" * 256, b"d" * 65535, b"e" * 65536, rand_bytes(100000)], 3
    yield "atoms", [None, True, False, (), [], {}], 2
    yield "tuples", [(1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), ((),), (((1,),),), tuple(range(20))], 2
    shared_list = [1, 2]
    shared_dict = {"k": "v"}
    shared_str = "a shared string"
    shared_tuple = (shared_str, 3)
    yield "shared", [shared_list, shared_list, (shared_list,), shared_dict, shared_dict,
                     shared_str, shared_str, shared_tuple, shared_tuple, [shared_tuple]], 2
    many = [f"string number {i}" for i in range(300)]
    yield "long_memo", many + many + [tuple(many[:5])] * 3, 2
    nested = []
    for _ in range(100):
        nested = [nested, {"depth": nested}]
    yield "nested", nested, 2
    yield "objects", [fractions.Fraction(1, 3), decimal.Decimal("1.5"), complex(1, 2), range(1, 10, 2),
                      collections.Counter("abracadabra")], 2
    namespace = argparse_module.Namespace(a=1, b=[1, 2], c="three")
    yield "newobj", [namespace, namespace], 2
    yield "frames", [rand_bytes(rng.randrange(1, 40)) for _ in range(20000)], 4
    mixed = []
    for i in range(40):
        mixed.append(rand_bytes(rng.choice([5, 100, 70000, 65535, 65536])))
        mixed.append({"i": i, "s": "t" * rng.choice([3, 300, 66000])})
    yield "mixed_large_payloads", mixed, 3
    tokenizer_like = {
        "name": "rustbpe",
        "pat_str": r"\p{L}+|\s+",
        "mergeable_ranks": {bytes([i]): i for i in range(256)} | {rand_bytes(3): 256 + i for i in range(5000)},
        "special_tokens": {"<|bos|>": 9999},
    }
    yield "tokenizer_like", tokenizer_like, 3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir")
    parser.add_argument("--small", action="store_true", help="only protocols 2/3 and 4, only pickles under 20 KB")
    args = parser.parse_args()
    os.makedirs(args.output_dir, exist_ok=True)
    written = 0
    for name, obj, lowest_protocol in cases():
        protocols = sorted({lowest_protocol, 4}) if args.small else range(lowest_protocol, 6)
        for protocol in protocols:
            data = pickle.dumps(obj, protocol=protocol)
            if args.small and len(data) > 20_000:
                continue
            with open(os.path.join(args.output_dir, f"{name}.p{protocol}.pkl"), "wb") as f:
                f.write(data)
            written += 1
    print(f"wrote {written} pickles with Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
