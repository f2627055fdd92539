"""Streams against redis-server, in the same run: XADD, a consumer loop, memory.

    python benchmarks/streams.py [--shards 2] [--repeat 3] [--entries 1000000]

* XADD at ``-P 1`` and ``-P 16``: ``redis-benchmark -c 50 -n N -P k XADD
  bench * f v`` (one stream, so one shard).
* A consumer loop: one client reads 100 entries with ``XREADGROUP ... COUNT
  100 STREAMS s >`` and acknowledges them with one ``XACK`` (a pipeline of
  the two per round trip is not possible: the IDs come from the read), until
  it has consumed a stream of ``--consume`` entries.
* Memory: ``--entries`` entries ``XADD mem * f <i>`` loaded with pipelines;
  the growth of redis-server's ``used_memory_rss`` against the growth of the
  summed RSS of all shardkv processes, from each empty server.

Every server takes its turn in each of ``--repeat`` rounds; medians are
printed as a table with the ratio to redis-server.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.redis_benchmark import redis_benchmark_path  # noqa: E402
from tests.support.servers import HOST, start_redis, start_shardkv  # noqa: E402


def xadd_rate(port: int, pipeline: int, requests: int) -> float:
    argv = [redis_benchmark_path(), "-h", HOST, "-p", str(port), "-c", "50", "-n", str(requests)]
    argv += ["-P", str(pipeline), "--csv", "-q", "XADD", "bench", "*", "f", "v"]
    out = subprocess.run(argv, capture_output=True, timeout=600, check=True).stdout.decode()
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) > 1 and cells[0].upper().startswith("XADD"):
            return float(cells[1])
    raise RuntimeError(f"no XADD result in {out!r}")


def consume_rate(port: int, entries: int) -> float:
    c = redis.Redis(host=HOST, port=port)
    c.delete("q")
    pipe = c.pipeline(transaction=False)
    for i in range(entries):
        pipe.execute_command("XADD", "q", "*", "job", i)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    c.execute_command("XGROUP", "CREATE", "q", "g", "0")
    done = 0
    started = time.perf_counter()
    while done < entries:
        reply = c.execute_command("XREADGROUP", "GROUP", "g", "worker", "COUNT", 100, "STREAMS", "q", ">")
        batch = reply[0][1] if isinstance(reply, list) else next(iter(reply.values()))[0]
        ids = [entry[0] for entry in batch]
        c.execute_command("XACK", "q", "g", *ids)
        done += len(ids)
    elapsed = time.perf_counter() - started
    c.delete("q")
    c.close()
    return entries / elapsed


def memory_growth(server, entries: int) -> int:
    c = redis.Redis(host=HOST, port=server.port)
    c.flushall()
    time.sleep(0.5)
    before = _memory(server)
    pipe = c.pipeline(transaction=False)
    for i in range(entries):
        pipe.execute_command("XADD", "mem", "*", "f", i)
        if i % 10000 == 9999:
            pipe.execute()
    pipe.execute()
    assert c.execute_command("XLEN", "mem") == entries
    time.sleep(0.5)
    after = _memory(server)
    c.flushall()
    c.close()
    return after - before


def _memory(server) -> int:
    m = server.memory()
    return m["used_memory_rss"] if "used_memory_rss" in m else m["rss_sum"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--consume", type=int, default=50_000)
    p.add_argument("--entries", type=int, default=1_000_000)
    args = p.parse_args()
    results: dict[str, dict[str, list[float]]] = {"redis": {}, "shardkv": {}}
    for _ in range(args.repeat):
        for kind in ("redis", "shardkv"):
            if kind == "redis":
                server = start_redis(ready_timeout=120)
            else:
                server = start_shardkv(shards=args.shards, ready_timeout=120)
            with server:
                r = results[kind]
                r.setdefault("XADD -P 1 (req/s)", []).append(xadd_rate(server.port, 1, args.requests))
                r.setdefault("XADD -P 16 (req/s)", []).append(xadd_rate(server.port, 16, args.requests * 4))
                r.setdefault("XREADGROUP+XACK loop (entries/s)", []).append(
                    consume_rate(server.port, args.consume)
                )
                if args.entries:
                    growth = memory_growth(server, args.entries)
                    r.setdefault(f"memory of {args.entries:,} entries (MB)", []).append(growth / 1e6)
                print(kind, {k: round(v[-1], 1) for k, v in r.items()}, flush=True)
    print(f"| load | redis-server | shardkv {args.shards} shards | ratio |")
    print("|---|---|---|---|")
    for name in results["redis"]:
        theirs = statistics.median(results["redis"][name])
        ours = statistics.median(results["shardkv"][name])
        print(f"| {name} | {theirs:,.1f} | {ours:,.1f} | {ours / theirs:.2f}x |")
    print(f"(medians of {args.repeat} rounds; raw: {results})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
