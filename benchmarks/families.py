"""HyperLogLog, geo and SORT throughput against redis-server, in the same run.

    python benchmarks/families.py [--shards 2] [--repeat 3] [--requests 20000]

For each round, redis-server and then shardkv are started afresh, loaded
with the same data, and measured with redis-benchmark running arbitrary
commands (``-c 50``, no pipelining); the table gives medians over the
rounds and the ratio shardkv / redis-server.  The loads:

* PFADD of a random element to a dense HyperLogLog of ~50,000 elements;
* PFCOUNT of that HyperLogLog (its cached cardinality) and of the union of
  it and a second dense one (counted afresh each time: the register
  histogram);
* GEOADD of a random point, and GEOSEARCH of the 10 nearest members within
  10 km among 10,000 points in a 1-degree square;
* SORT of a list of 1,000 random numbers (all 1,000 replied), and SORT ...
  BY a weight key per element with LIMIT 0 10.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from benchmarks.redis_benchmark import parse_csv, redis_benchmark_path  # noqa: E402
from tests.support.servers import HOST, free_port, start_redis, start_shardkv  # noqa: E402

# name, command line for redis-benchmark, requests as a fraction of --requests
LOADS = [
    ("PFADD", ["PFADD", "hll{a}", "e:__rand_int__"], 1.0),
    ("PFCOUNT 1 key", ["PFCOUNT", "hll{a}"], 1.0),
    ("PFCOUNT 2 keys", ["PFCOUNT", "hll{a}", "hll2{a}"], 0.25),
    ("GEOADD", ["GEOADD", "geo", "13.__rand_int__", "38.__rand_int__", "m:__rand_int__"], 1.0),
    ("GEOSEARCH", ["GEOSEARCH", "geo", "FROMLONLAT", "13.5", "38.5", "BYRADIUS", "10", "km", "ASC", "COUNT", "10"], 0.25),
    ("SORT 1000", ["SORT", "biglist"], 0.05),
    ("SORT BY LIMIT", ["SORT", "biglist{b}", "BY", "{b}w_*", "LIMIT", "0", "10"], 0.05),
]  # fmt: skip


def load(port: int, seed: int = 1) -> None:
    """The same data on each server, sent pipelined."""
    rng = random.Random(seed)
    conn = redis.Redis(host=HOST, port=port)
    try:
        commands: list[list[bytes]] = [[b"FLUSHALL"]]
        for key, n in ((b"hll{a}", 50_000), (b"hll2{a}", 30_000)):
            for _ in range(0, n, 500):
                commands.append([b"PFADD", key, *(b"x%d" % rng.getrandbits(40) for _ in range(500))])
        for _ in range(100):
            points = []
            for _ in range(100):
                lon, lat = 13 + rng.random(), 38 + rng.random()
                points += [b"%.6f" % lon, b"%.6f" % lat, b"p%d" % rng.getrandbits(32)]
            commands.append([b"GEOADD", b"geo", *points])
        values = [b"%d" % rng.randrange(-(10**6), 10**6) for _ in range(1000)]
        commands.append([b"RPUSH", b"biglist", *values])
        commands.append([b"RPUSH", b"biglist{b}", *values])
        for v in values:
            commands.append([b"SET", b"{b}w_" + v, b"%d" % rng.randrange(1000)])
        for start in range(0, len(commands), 200):
            pipe = conn.pipeline(transaction=False)
            for command in commands[start : start + 200]:
                pipe.execute_command(*command)
            pipe.execute()
    finally:
        conn.close()


def measure(port: int, args: list[str], requests: int, clients: int) -> float:
    argv = [redis_benchmark_path(), "-h", HOST, "-p", str(port), "-c", str(clients)]
    argv += ["-n", str(requests), "-r", "1000000", "--csv", "-q", *args]
    done = subprocess.run(argv, capture_output=True, timeout=max(300, requests / 200), check=False)
    rows, notes = parse_csv(done.stdout.decode(errors="replace"))
    if not rows:
        raise RuntimeError(f"redis-benchmark gave no result for {args}: {notes} {done.stderr[-300:]!r}")
    return rows[0].rps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=50)
    opts = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {name: {"redis": [], "shardkv": []} for name, _, _ in LOADS}
    for round_ in range(opts.repeat):
        for kind in ("redis", "shardkv"):
            port = free_port()
            # a loaded machine starts slowly
            if kind == "redis":
                server = start_redis(port=port, ready_timeout=120)
            else:
                server = start_shardkv(shards=opts.shards, port=port, ready_timeout=120)
            try:
                load(port)
                for name, args, share in LOADS:
                    n = max(200, int(opts.requests * share))
                    rps = measure(port, args, n, opts.clients)
                    results[name][kind].append(rps)
                    print(f"round {round_ + 1} {kind:8} {name:16} {rps:10.0f} req/s", file=sys.stderr)
            finally:
                server.stop()
    print(f"| load | redis-server | shardkv ({opts.shards} shards) | ratio |")
    print("|---|---|---|---|")
    for name, _, _ in LOADS:
        r = statistics.median(results[name]["redis"])
        s = statistics.median(results[name]["shardkv"])
        print(f"| {name} | {r:,.0f} | {s:,.0f} | {s / r:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
