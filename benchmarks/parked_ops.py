"""Parked cross-shard operations at ``--acceptors 1`` and ``--acceptors 2``.

    python benchmarks/parked_ops.py [--acceptors 1,2] [--rounds 3] [--ops 2000] [--bench-n 10000] [--root DIR]

Starts ``main.py --shards 2 --appendonly no`` with each number of
acceptors in turn and, in each of ``--rounds`` rounds, measures:

* one client at ``-P 1`` (a Python driver, each command waiting for its
  reply): ``EVAL`` setting a key on each shard, ``MSETNX`` of two new keys
  on the two shards, ``RENAME`` of a key to a key of the other shard and
  back.  Operations per second, and CPU per operation (acceptors and
  workers, µs, from ``/proc``);
* ``redis-benchmark -c 50 -P 1`` of the EVAL and of the MSETNX (new keys
  each time: ``{a}`` and ``{b}`` are on different shards of two).

Prints the median of the rounds for each.  EVAL and RENAME park both
shards (park, run, prepare, decide; at K > 1 a round of tries before
them); MSETNX did too until it became a write fan-out whose parts vote
(prepare, decide), and is kept here to compare builds: see README,
"Cross-shard operations survive any process's death".
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from shardkv.protocol.router import key_slot, slot_owners  # noqa: E402
from tests.support.servers import start_shardkv  # noqa: E402

SCRIPT = "redis.call('SET',KEYS[1],1) redis.call('SET',KEYS[2],1)"
BENCH = {
    "eval -c 50": ["EVAL", SCRIPT, "2", "a", "b"],
    "msetnx -c 50": ["MSETNX", "{a}__rand_int__", "v", "{b}__rand_int__", "v"],
}


def _check_shards() -> None:
    owners = slot_owners(2)
    assert owners[key_slot(b"a")] != owners[key_slot(b"b")], "a and b must be on different shards"


def driver(port: int, kind: str, n: int, start: int) -> None:
    """``n`` operations of ``kind``, one at a time."""
    r = redis.Redis(port=port)
    if kind == "eval":
        for _ in range(n):
            r.execute_command("EVAL", SCRIPT, 2, "a", "b")
    elif kind == "msetnx":
        for i in range(start, start + n):
            r.execute_command("MSETNX", b"{a}%d" % i, b"v", b"{b}%d" % i, b"v")
    else:  # rename: {a}x -> {b}y -> {a}x ...
        r.set("{a}x", "v")
        for _ in range(n // 2):
            r.execute_command("RENAME", "{a}x", "{b}y")
            r.execute_command("RENAME", "{b}y", "{a}x")
    r.close()


def bench(port: int, args: list[str], n: int) -> float:
    out = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-n",
            str(n),
            "-c",
            "50",
            "-P",
            "1",
            "-r",
            "1000000",
            "-q",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    found = re.findall(r"([\d.]+) requests per second", out)
    return float(found[-1]) if found else float("nan")


def measure(acceptors: int, rounds: int, ops: int, bench_n: int, root: Path | None) -> dict[str, list[float]]:
    extra = {"root": root} if root else {}
    server = start_shardkv("--appendonly", "no", shards=2, acceptors=acceptors, ready_timeout=120, **extra)
    results: dict[str, list[float]] = {}
    try:
        driver(server.port, "eval", 200, 0)  # warm up
        start = 10_000_000 * acceptors
        for _ in range(rounds):
            for kind in ("eval", "msetnx", "rename"):
                before = sum(server.cpu_times().values())
                t0 = time.perf_counter()
                driver(server.port, kind, ops, start)
                elapsed = time.perf_counter() - t0
                cpu = sum(server.cpu_times().values()) - before
                start += ops
                results.setdefault(f"{kind} ops/s", []).append(ops / elapsed)
                results.setdefault(f"{kind} cpu µs/op", []).append(cpu / ops * 1e6)
            for name, args in BENCH.items() if bench_n else ():
                results.setdefault(f"{name} ops/s", []).append(bench(server.port, args, bench_n))
    finally:
        server.stop()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--acceptors", default="1,2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ops", type=int, default=2000)
    p.add_argument("--bench-n", type=int, default=10000, help="0: no redis-benchmark runs")
    p.add_argument("--root", type=Path, help="the checkout whose server to run (another build, to compare)")
    args = p.parse_args()
    _check_shards()
    table: dict[int, dict[str, list[float]]] = {}
    for k in (int(x) for x in args.acceptors.split(",")):
        table[k] = measure(k, args.rounds, args.ops, args.bench_n, args.root)
        for name, values in table[k].items():
            print(
                f"K={k} {name}: median {statistics.median(values):.0f} of {[round(v) for v in values]}",
                flush=True,
            )
    ks = sorted(table)
    if len(ks) > 1:
        print("\n| measure | " + " | ".join(f"K={k}" for k in ks) + f" | K={ks[-1]}/K={ks[0]} |")
        print("|---|" + "---|" * (len(ks) + 1))
        for name in table[ks[0]]:
            meds = [statistics.median(table[k][name]) for k in ks]
            print(f"| {name} | " + " | ".join(f"{m:.0f}" for m in meds) + f" | {meds[-1] / meds[0]:.2f} |")


if __name__ == "__main__":
    main()
