"""Pure Python against numpy for HyperLogLog's hot spots, to choose by measurement.

    python benchmarks/hll_paths.py [--repeat 5]

* hashing: MurmurHash64A and the register/run of each element of a PFADD,
  per element, for batches of 1 to 1,000 elements of 8 to 20 bytes:
  ``hllcore.pattern`` one by one against ``hllcore.patterns`` (numpy);
  the crossing point is ``hllcore.VECTOR_MIN``;
* counting a dense HLL: the register histogram of 16,384 6-bit registers,
  in pure Python (3 bytes -> 4 registers in a loop) against numpy
  (``dense_to_array`` + ``bincount``).

Medians of ``--repeat`` runs, in microseconds.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shardkv.worker import hllcore  # noqa: E402


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs) * 1e6


def python_histogram(registers: bytes) -> list[int]:
    histo = [0] * 64
    for i in range(0, hllcore.DENSE_BYTES, 3):
        b0, b1, b2 = registers[i], registers[i + 1], registers[i + 2]
        histo[b0 & 63] += 1
        histo[((b0 >> 6) | (b1 << 2)) & 63] += 1
        histo[((b1 >> 4) | (b2 << 4)) & 63] += 1
        histo[b2 >> 2] += 1
    return histo


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    opts = parser.parse_args()
    rng = random.Random(1)
    print("| elements | pure Python µs/element | numpy µs/element |")
    print("|---|---|---|")
    for n in (1, 4, 8, 16, 24, 32, 64, 256, 1000):
        elements = [b"%d" % rng.getrandbits(rng.choice((26, 40, 64))) for _ in range(n)]
        py = timed(lambda e=elements: [hllcore.pattern(x) for x in e], opts.repeat) / n
        vec = timed(lambda e=elements: hllcore.patterns(e), opts.repeat) / n
        print(f"| {n} | {py:.2f} | {vec:.2f} |")
    regs = bytes(rng.randrange(256) for _ in range(hllcore.DENSE_BYTES))
    assert python_histogram(regs) == hllcore.histogram(hllcore.dense_to_array(regs))
    py = timed(lambda: python_histogram(regs), opts.repeat)
    vec = timed(lambda: hllcore.histogram(hllcore.dense_to_array(regs)), opts.repeat)
    print()
    print("| dense histogram | pure Python µs | numpy µs |")
    print("|---|---|---|")
    print(f"| 16384 registers | {py:.0f} | {vec:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
