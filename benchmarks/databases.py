"""SET and GET in database 1 (``redis-benchmark --dbnum 1``: a SELECT 1
on each connection, then the load) against redis-server in the same run,
with database 0 alongside for comparison (issue 20).

    python benchmarks/databases.py [--shards 2] [--repeat 3] [--requests 100000]

Each round runs every server in turn for each load; the table shows the
median of the rounds and its ratio to redis-server's median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.redis_benchmark import parse_csv, redis_benchmark_path  # noqa: E402
from tests.support.servers import start_redis, start_shardkv  # noqa: E402


def rate(port: int, test: str, db: int, pipeline: int, requests: int) -> float:
    argv = [redis_benchmark_path(), "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-r", "100000"]
    argv += ["-n", str(requests), "-t", test, "-P", str(pipeline), "--dbnum", str(db), "--csv", "-q"]
    done = subprocess.run(argv, capture_output=True, timeout=600, check=False)
    rows, _ = parse_csv(done.stdout.decode(errors="replace"))
    if not rows:
        raise RuntimeError(f"redis-benchmark gave no result: {done.stderr.decode(errors='replace')}")
    return rows[0].rps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--requests", type=int, default=100_000)
    p.add_argument("--pipelines", default="1,16")
    args = p.parse_args()
    loads = [(t, db, int(pl)) for pl in args.pipelines.split(",") for t in ("set", "get") for db in (1, 0)]
    results: dict[tuple, dict[str, list[float]]] = {load: {"redis": [], "shardkv": []} for load in loads}
    servers = {"redis": start_redis(), "shardkv": start_shardkv(shards=args.shards)}
    try:
        for _ in range(args.repeat):
            for load in loads:
                for name, server in servers.items():
                    results[load][name].append(rate(server.port, *load, args.requests))
    finally:
        for server in servers.values():
            server.stop()
    print(f"| load | redis-server | shardkv {args.shards} shards | ratio |")
    print("|---|---|---|---|")
    for (test, db, pipeline), by in results.items():
        real, ours = statistics.median(by["redis"]), statistics.median(by["shardkv"])
        print(
            f"| {test.upper()} db {db} -P {pipeline} | {real / 1000:.0f}k | {ours / 1000:.0f}k | {ours / real:.2f}x |"
        )


if __name__ == "__main__":
    main()
