"""Lua scripting throughput against redis-server, in the same run.

    python benchmarks/scripting.py [--shards 2] [--requests 100000] [--repeat 3]
    python benchmarks/scripting.py --cpu [--shards 2] [--requests 40000] [--repeat 2]
    python benchmarks/scripting.py --loads GET,cross-shard [--cpu] ...

Each load runs with ``redis-benchmark -c 50 -r 100000`` at ``-P 1`` and
``-P 16`` against redis-server and shardkv in turn, ``--repeat`` rounds in
which each server takes its turn; the table gives medians and the ratio of
shardkv to redis-server, and for shardkv the ratio of EVALSHA to its own
GET (the target: EVALSHA of a one-key script within 2x of GET).

``--cpu`` measures what throughput on a loaded machine cannot: the CPU
time (user + system, from ``/proc``) that shardkv's acceptor and workers
spend per request of each load at ``-P 16`` (cross-shard only when
``--loads`` names it), ``--repeat`` rounds on one server, and each load's
total as a ratio of GET's in the same round (medians over the rounds).
``--loads`` runs only the loads it names (comma-separated; GET is always
run, as the rows' baseline).

Loads:
  GET               the baseline: GET key:__rand_int__
  EVALSHA 1 key     a one-key script: return redis.call('get', KEYS[1])
  lock release      redis-py's Lock.release script (GET, compare, DEL) on
                    key:__rand_int__ (mostly no lock there: one GET)
  lock cycle        one script that acquires (SET NX PX) and releases (GET,
                    compare, DEL) a lock, as redis-py's Lock does in two
  cross-shard       a script whose two keys live on different shards:
                    INCR of each
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shardkv.protocol.router import Router  # noqa: E402
from tests.support.servers import start_redis, start_shardkv  # noqa: E402

ONE_KEY = "return redis.call('get', KEYS[1])"
LOCK_CYCLE = (
    "if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', 30000) then "
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end end return 0"
)
CROSS = "return {redis.call('incr', KEYS[1]), redis.call('incr', KEYS[2])}"
# redis-py's Lock.LUA_RELEASE_SCRIPT, as it sends it
LOCK_RELEASE = """
        local token = redis.call('get', KEYS[1])
        if not token or token ~= ARGV[1] then
            return 0
        end
        redis.call('del', KEYS[1])
        return 1
    """


def _sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()


def _two_shards(shards: int) -> tuple[str, str]:
    """Two key names on different shards of shardkv (any two keys for redis)."""
    router = Router(max(shards, 2))
    first = "cross:a"
    i = 0
    while router.shard_of(f"cross:b{i}".encode()) == router.shard_of(first.encode()):
        i += 1
    return first, f"cross:b{i}"


def loads(shards: int) -> list[tuple[str, list[str]]]:
    a, b = _two_shards(shards)
    return [
        ("GET", ["GET", "key:__rand_int__"]),
        ("EVALSHA 1 key", ["EVALSHA", _sha(ONE_KEY), "1", "key:__rand_int__"]),
        ("lock release", ["EVALSHA", _sha(LOCK_RELEASE), "1", "key:__rand_int__", "token"]),
        ("lock cycle", ["EVALSHA", _sha(LOCK_CYCLE), "1", "lock:__rand_int__", "token"]),
        ("cross-shard", ["EVALSHA", _sha(CROSS), "2", a, b]),
    ]


def bench(port: int, command: list[str], pipeline: int, requests: int) -> float:
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-c", "50", "-r", "100000", "-n", str(requests)]
        + ["-P", str(pipeline), "--csv", *command],
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    rows = list(csv.reader(io.StringIO(out)))
    return float(rows[1][1]) if len(rows) > 1 else 0.0


def prepare(port: int) -> None:
    for body in (ONE_KEY, LOCK_RELEASE, LOCK_CYCLE, CROSS):
        subprocess.run(
            ["redis-cli", "-p", str(port), "SCRIPT", "LOAD", body], capture_output=True, check=True
        )
    subprocess.run(["redis-cli", "-p", str(port), "SET", "key:1", "v"], capture_output=True, check=True)


def chosen(shards: int, names: set[str] | None) -> list[tuple[str, list[str]]]:
    """The loads to run: those ``names`` names (GET always), or all."""
    return [(n, c) for n, c in loads(shards) if names is None or n in names or n == "GET"]


def cpu_per_request(shards: int, requests: int, repeat: int, names: set[str] | None = None) -> None:
    """The ``--cpu`` table: shardkv's CPU microseconds per request at -P 16."""
    rows: dict[str, list[tuple[float, float, float]]] = {}
    with start_shardkv(shards=shards) as server:
        prepare(server.port)
        for _ in range(repeat):
            for name, command in chosen(shards, names):
                if name == "cross-shard" and names is None:  # parks shards: see crossshard_cost.py
                    continue
                roles = server.roles()
                before = server.cpu_times()
                bench(server.port, command, 16, requests)
                after = server.cpu_times()
                spent = {pid: secs - before.get(pid, 0.0) for pid, secs in after.items()}
                acceptor = sum(c for pid, c in spent.items() if roles.get(pid, "").startswith("acceptor"))
                workers = sum(
                    c for pid, c in spent.items() if roles.get(pid, "").startswith(("worker", "shard"))
                )
                per = 1e6 / requests
                rows.setdefault(name, []).append((acceptor * per, workers * per, (acceptor + workers) * per))
    print(f"| load | acceptor µs | workers µs | total µs | vs GET ({shards} shards, -P 16) |")
    print("|---|---|---|---|---|")
    gets = rows["GET"]
    for name, figures in rows.items():
        ratios = [f[2] / g[2] for f, g in zip(figures, gets, strict=True)]
        acceptor, workers, total = (statistics.median(f[i] for f in figures) for i in range(3))
        print(f"| {name} | {acceptor:.1f} | {workers:.1f} | {total:.1f} | {statistics.median(ratios):.2f}x |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--cpu", action="store_true", help="CPU per request instead of throughput")
    parser.add_argument("--loads", default=None, help="comma-separated load names (default: all)")
    args = parser.parse_args(argv)
    names = None if args.loads is None else set(args.loads.split(","))
    if names is not None and not names <= {n for n, _ in loads(args.shards)}:
        parser.error(f"--loads: known loads are {', '.join(n for n, _ in loads(args.shards))}")
    if args.cpu:
        cpu_per_request(args.shards, args.requests or 40_000, args.repeat or 2, names)
        return
    args.requests = args.requests or 100_000
    args.repeat = args.repeat or 3
    results: dict[tuple[str, str, int], list[float]] = {}
    starts = [start_redis, lambda: start_shardkv(shards=args.shards)]
    for _ in range(args.repeat):
        for start in starts:
            with start() as server:
                prepare(server.port)
                for name, command in chosen(args.shards, names):
                    for pipeline in (1, 16):
                        rps = bench(server.port, command, pipeline, args.requests)
                        results.setdefault((server.kind, name, pipeline), []).append(rps)
    print(f"| load | -P | redis-server | shardkv {args.shards} shards | ratio | vs shardkv GET |")
    print("|---|---|---|---|---|---|")
    for name, _ in chosen(args.shards, names):
        for pipeline in (1, 16):
            real = statistics.median(results[("redis", name, pipeline)])
            ours = statistics.median(results[("shardkv", name, pipeline)])
            get = statistics.median(results[("shardkv", "GET", pipeline)])
            print(
                f"| {name} | {pipeline} | {real / 1000:.1f}k | {ours / 1000:.1f}k | "
                f"{ours / real:.2f}x | {ours / get:.2f}x |"
            )


if __name__ == "__main__":
    main()
