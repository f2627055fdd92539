"""Dramatiq's RedisBroker end to end: delayed messages through a worker.

    python benchmarks/dramatiq_queue.py [--shards 4] [--messages 300] [--threads 8] [--repeat 3]

Sends ``--messages`` messages to one actor, each with a short delay (0 to
49 ms), and times until a ``dramatiq.Worker`` of ``--threads`` threads has
run them all, against redis-server and against shardkv in rounds in which
both take their turn; prints each round, the medians and the ratio.
Every message goes through Dramatiq's Lua dispatcher (``dispatch.lua``:
enqueue on the delay queue, fetch, ack, enqueue on the queue, fetch, ack),
which builds its key names inside Lua, so each call touches keys it did
not declare.  ``--backlog N`` first puts N messages due in an hour on the
delay queue, as scheduled jobs and retries with backoff pile up there, and
leaves them waiting while the measured messages run.  The database is
flushed before each run.  Each run is bounded by ``--timeout`` seconds.

    python benchmarks/dramatiq_queue.py --backlog 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import start_redis, start_shardkv  # noqa: E402


def run_once(port: int, messages: int, threads: int, timeout: float, backlog: int = 0) -> float:
    """Seconds from the first send until the worker has run every message;
    ``backlog`` messages due in an hour wait on the delay queue meanwhile."""
    import dramatiq
    from dramatiq.brokers.redis import RedisBroker

    broker = RedisBroker(url=f"redis://127.0.0.1:{port}/0")
    done = threading.Semaphore(0)

    @dramatiq.actor(broker=broker, max_retries=0)
    def job(i: int) -> None:
        if i >= 0:
            done.release()

    with redis.Redis(port=port) as c:
        c.flushall()
    for _ in range(backlog):
        job.send_with_options(args=(-1,), delay=3600_000)
    worker = dramatiq.Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    try:
        start = time.perf_counter()
        for i in range(messages):
            job.send_with_options(args=(i,), delay=i % 50)
        deadline = start + timeout
        for _ in range(messages):
            if not done.acquire(timeout=max(0.0, deadline - time.perf_counter())):
                raise RuntimeError(f"the worker did not run {messages} messages in {timeout} s")
        return time.perf_counter() - start
    finally:
        worker.stop()
        broker.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    redis_server = start_redis()
    shardkv = start_shardkv(shards=args.shards, ready_timeout=120)
    times: dict[str, list[float]] = {"redis-server": [], "shardkv": []}
    try:
        for n in range(args.repeat):
            for kind, server in (("redis-server", redis_server), ("shardkv", shardkv)):
                seconds = run_once(server.port, args.messages, args.threads, args.timeout, args.backlog)
                times[kind].append(seconds)
                print(f"round {n + 1}: {kind:12} {seconds:.3f} s", flush=True)
    finally:
        redis_server.stop()
        shardkv.stop()
    medians = {kind: statistics.median(t) for kind, t in times.items()}
    print(
        f"{args.messages} delayed messages ({args.backlog} more due later), {args.threads} threads, "
        f"{args.shards} shards, "
        f"medians of {args.repeat}: redis-server {medians['redis-server']:.3f} s, "
        f"shardkv {medians['shardkv']:.3f} s ({medians['shardkv'] / medians['redis-server']:.1f}x)"
    )


if __name__ == "__main__":
    main()
