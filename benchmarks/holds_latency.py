"""What a command over several shards waits for its holds (``--acceptors 2``).

    python benchmarks/holds_latency.py [--commands 2000] [--runs 5] [--root DIR]

Starts shardkv with ``--shards 4 --acceptors 2`` and, from one connection
(one command at a time, ``-P 1``), times ``--commands`` MGETs and MSETs of
one key on each of 2 and of 4 shards, and a GET and a SET of one key for
scale; ``--runs`` rounds, each command kind's median latency per round,
then the median of the rounds.  Then the contended case: a connection on
each acceptor racing MSETs of the same 4 shards, timed together.  The
holds (``shardkv/acceptor/holds.py``) are the difference between the
one-shard and the multi-shard figures.  ``--root`` runs another checkout's
``main.py`` (to compare with an older commit).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from tests.support.placement import on_shards  # noqa: E402
from tests.support.servers import start_shardkv  # noqa: E402

K = 2


def connect_to(port: int, index: int) -> redis.Redis:
    """A connection that reached acceptor ``index`` (acceptor i of K hands out ids i+1, i+1+K...)."""
    for _ in range(400):
        conn = redis.Redis(port=port, socket_timeout=30)
        if (int(conn.client_id()) - 1) % K == index:
            return conn
        conn.close()
        time.sleep(0.02)
    raise SystemExit(f"no connection reached acceptor {index}")


def timed(conn: redis.Redis, command: list, n: int) -> float:
    """The median latency, in microseconds, of ``n`` runs of ``command``."""
    execute = conn.execute_command
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        execute(*command)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def contended(port: int, keys: list[str], n: int) -> float:
    """Two connections, one on each acceptor, each running ``n`` MSETs of
    ``keys``: the median latency of all of them, in microseconds."""
    times: list[float] = []
    conns = [connect_to(port, i) for i in range(K)]
    start = threading.Barrier(K)

    def race(conn: redis.Redis, tag: int) -> None:
        args = [x for key in keys for x in (key, tag)]
        start.wait()
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute_command("MSET", *args)
            times.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=race, args=(c, i)) for i, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in conns:
        c.close()
    return statistics.median(times) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--root", type=Path, default=None, help="a checkout to run (default: this one)")
    args = parser.parse_args()
    keys = on_shards(0, 1, 2, 3, prefix="lat")
    kinds = {
        "GET 1 shard": ["GET", keys[0]],
        "SET 1 shard": ["SET", keys[0], "v"],
        "MGET 2 shards": ["MGET", *keys[:2]],
        "MGET 4 shards": ["MGET", *keys],
        "MSET 2 shards": ["MSET", *(x for k in keys[:2] for x in (k, "v"))],
        "MSET 4 shards": ["MSET", *(x for k in keys for x in (k, "v"))],
    }
    rounds: dict[str, list[float]] = {name: [] for name in kinds}
    rounds["MSET 4 shards, 2 acceptors racing"] = []
    server = start_shardkv(shards=4, acceptors=K, **({"root": args.root} if args.root else {}))
    try:
        conn = connect_to(server.port, 0)
        for _ in range(args.runs):
            for name, command in kinds.items():
                rounds[name].append(timed(conn, command, args.commands))
            rounds["MSET 4 shards, 2 acceptors racing"].append(
                contended(server.port, keys, args.commands // 2)
            )
        conn.close()
    finally:
        server.stop()
    print(f"{'command':40} median us  (rounds: {args.runs} x {args.commands})")
    for name, values in rounds.items():
        shown = " ".join(f"{v:.0f}" for v in values)
        print(f"{name:40} {statistics.median(values):8.0f}   [{shown}]")


if __name__ == "__main__":
    main()
