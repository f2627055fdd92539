"""Writes into a big string, timed against redis-server in the same run
(issue 15, finding 6): they should cost what they change, not the
string's size.

    python benchmarks/bigstrings.py [--shards 4] [--appends 2000] [--root DIR]

* ``SETBIT`` 50 times at random offsets of a 64 MB bitmap (made first by
  one ``SETBIT`` at its last bit): the total time;
* ``APPEND`` of 10 KB chunks to one key, ``--appends`` times: appends per
  second;
* ``SETRANGE`` of 100 bytes at random offsets of that string, 200 times:
  per second.

Each is run ``--repeat`` times, on a fresh key, and the median is shown
with its ratio to redis-server.  ``--root`` runs the shardkv of another
checkout, to measure an older version.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import start_redis, start_shardkv  # noqa: E402

BITMAP_BITS = 64 * 1024 * 1024 * 8
CHUNK = b"x" * 10240


def setbits(c: redis.Redis, rnd: random.Random) -> float:
    c.delete("bitmap")
    c.setbit("bitmap", BITMAP_BITS - 1, 1)
    t = time.perf_counter()
    for _ in range(50):
        c.setbit("bitmap", rnd.randrange(BITMAP_BITS), 1)
    dt = time.perf_counter() - t
    c.delete("bitmap")
    return dt


def appends(c: redis.Redis, n: int) -> float:
    c.delete("appended")
    t = time.perf_counter()
    for _ in range(n):
        c.append("appended", CHUNK)
    return n / (time.perf_counter() - t)


def setranges(c: redis.Redis, rnd: random.Random) -> float:
    size = c.strlen("appended")
    t = time.perf_counter()
    for _ in range(200):
        c.setrange("appended", rnd.randrange(size - 100), b"y" * 100)
    rate = 200 / (time.perf_counter() - t)
    c.delete("appended")
    return rate


def measure(port: int, repeat: int, n: int) -> dict[str, float]:
    c = redis.Redis(port=port, socket_timeout=600)
    rnd = random.Random(7)
    runs: dict[str, list[float]] = {
        "50 SETBIT on 64 MB (s)": [],
        "APPEND 10 KB (/s)": [],
        "SETRANGE 100 B (/s)": [],
    }
    for _ in range(repeat):
        runs["50 SETBIT on 64 MB (s)"].append(setbits(c, rnd))
        runs["APPEND 10 KB (/s)"].append(appends(c, n))
        runs["SETRANGE 100 B (/s)"].append(setranges(c, rnd))
    c.close()
    return {name: statistics.median(v) for name, v in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--appends", type=int, default=2000, help="10 KB APPENDs per run")
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    opts = ap.parse_args()
    results = {}
    for name, start in (
        ("redis-server", start_redis),
        (f"shardkv-{opts.shards}", lambda: start_shardkv(shards=opts.shards, root=opts.root.resolve())),
    ):
        server = start()
        try:
            results[name] = measure(server.port, opts.repeat, opts.appends)
        finally:
            server.stop()
    real, ours = results.values()
    print(f"| case | redis-server | shardkv-{opts.shards} | ratio (shardkv / redis) |")
    print("|---|---|---|---|")
    for case in real:
        print(f"| {case} | {real[case]:.4g} | {ours[case]:.4g} | {ours[case] / real[case]:.2f} |")


if __name__ == "__main__":
    main()
