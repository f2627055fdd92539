"""The glob matcher alone on hostile patterns of a megabyte against strings of
a megabyte (issue: ``a?`` 500k times then ``*`` once took seconds to
compile into a regular expression): parsing, the first match (which
builds the matcher) and a second one, per shape.

    PYTHONPATH=. python benchmarks/globhuge.py [NAME ...]

NAME picks the shapes whose names contain it.  ``--root DIR`` imports
``shardkv`` from another checkout, to time an older version.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

M = 1_000_000
SHAPES: list[tuple[str, bytes, bytes, bool]] = [
    ("a? x500k *", b"a?" * 500_000 + b"*", b"a" * M, False),
    ("a? x500k * nocase", b"a?" * 500_000 + b"*", b"A" * M, True),
    ("* a? x500k", b"*" + b"a?" * 500_000, b"ab" * 500_000, False),
    ("a? x250k * a? x250k", b"a?" * 250_000 + b"*" + b"a?" * 250_000, b"a" * M, False),
    ("? x1M", b"?" * M, b"a" * M, False),
    ("* x1M", b"*" * M, b"a" * M, False),
    ("*? x500k (nesting)", b"*?" * 500_000, b"a" * M, False),
    ("[ab]c x200k *", b"[ab]c" * 200_000 + b"*", b"ac" * 500_000, False),
    ("[a-z] x200k *", b"[a-z]" * 200_000 + b"*", b"q" * M, False),
    ("[ab][cd] x100k *", b"[ab][cd]" * 100_000 + b"*", b"ac" * 500_000, False),
    ("\\x x500k", b"\\x" * 500_000, b"x" * 500_000, False),
    ("\\?\\* x250k", b"\\?\\*" * 250_000, b"?*" * 250_000, False),
    ("[ x1M (unclosed)", b"[" * M, b"[", False),
    ("[^ x500k ]", b"[^" * 500_000 + b"]", b"a", False),
    ("*b a? x250k * (middle)", b"*b" + b"a?" * 250_000 + b"*", b"ab" * 500_000, False),
    ("* a? x250k b * (middle)", b"*" + b"a?" * 250_000 + b"b*", b"a" * M, False),
    ("* [ab] x999 c *", b"*" + b"[ab]" * 999 + b"c*", b"a" * M, False),
    ("*[ab][b] x300 *", b"*[ab][b]" * 300 + b"*", b"ab" * 500_000, False),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--root", help="a checkout whose shardkv to time")
    args = parser.parse_args()
    if args.root:
        sys.path.insert(0, args.root)
    from shardkv.protocol import glob

    compile_: Callable[[bytes, bool], Callable[[bytes], bool]] = getattr(glob, "_compile", None) or (
        lambda p, nocase: glob.compile_glob.__wrapped__(p, nocase)  # type: ignore[attr-defined]
    )
    for name, pattern, string, nocase in SHAPES:
        if args.names and not any(n in name for n in args.names):
            continue
        t0 = time.perf_counter()
        match = compile_(pattern, nocase)
        t1 = time.perf_counter()
        first = match(string)
        t2 = time.perf_counter()
        match(string)
        t3 = time.perf_counter()
        print(
            f"{name:26s} parse {t1 - t0:7.3f}s  first {t2 - t1:7.3f}s  again {t3 - t2:7.3f}s  -> {first}",
            flush=True,
        )


if __name__ == "__main__":
    main()
