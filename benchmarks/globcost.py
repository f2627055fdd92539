"""Glob patterns that backtrack without end in a regular expression, timed
against redis-server in the same run (issue 15, finding 5).

    python benchmarks/globcost.py [--shards 4] [--timeout 10] [--root DIR]

Three cases, each the median of ``--repeat`` runs:

* ``KEYS a*a*...(20 stars)...b`` and ``SCAN 0 MATCH`` with it, over 1,000
  keys made of 60 a's and a number;
* ``PSUBSCRIBE`` with that pattern, then ``PUBLISH`` to a channel of 60 a's
  (and a ``PING`` from another client right after);
* ``CONFIG GET '*?*?*?*?*?*?*?*?*?*?*?*?*?!'``.

A command that gets no reply within ``--timeout`` seconds is reported as
such (the server is then stopped).  ``--root`` runs the shardkv found in
another checkout, to measure an older version.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import start_redis, start_shardkv  # noqa: E402

STARS = b"a*" * 20 + b"b"
CONFIG_PATTERN = "*?" * 13 + "!"


def client(port: int, timeout: float) -> redis.Redis:
    """A client that gives up after ``timeout`` seconds, without retrying."""
    return redis.Redis(port=port, socket_timeout=timeout, retry=Retry(NoBackoff(), 0))


def timed(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def measure(port: int, case: str, repeat: int, timeout: float) -> str:
    """One case on a server holding the 1,000 keys; its median time."""
    c = client(port, timeout)
    other = client(port, timeout)
    c.flushall()
    c.mset({b"a" * 60 + b"%d" % i: 1 for i in range(1000)})
    sub = None
    if case == "KEYS 20 stars":
        fn: Callable[[], object] = lambda: c.keys(STARS)  # noqa: E731
    elif case == "SCAN MATCH 20 stars":
        fn = lambda: list(c.scan_iter(match=STARS, count=1000))  # noqa: E731
    elif case == "CONFIG GET *?..!":
        fn = lambda: c.config_get(CONFIG_PATTERN)  # noqa: E731
    else:
        sub = client(port, timeout).pubsub()
        sub.psubscribe(STARS)
        sub.get_message(timeout=timeout)
        fn = lambda: (c.publish(b"a" * 60, b"m"), other.ping())  # noqa: E731
    try:
        return f"{timed(fn, repeat) * 1000:.2f} ms"
    except redis.TimeoutError:
        return f"no reply in {timeout:g} s"
    finally:
        if sub is not None:
            sub.close()


CASES = ["KEYS 20 stars", "SCAN MATCH 20 stars", "CONFIG GET *?..!", "PSUBSCRIBE + PUBLISH + PING"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    opts = ap.parse_args()
    results = {}
    for name, start in (
        ("redis-server", start_redis),
        (f"shardkv-{opts.shards}", lambda: start_shardkv(shards=opts.shards, root=opts.root.resolve())),
    ):
        results[name] = {}
        for case in CASES:  # a fresh server for each: a stuck one stays stuck
            server = start()
            try:
                results[name][case] = measure(server.port, case, opts.repeat, opts.timeout)
                print(name, case, results[name][case], file=sys.stderr, flush=True)
            finally:
                server.stop()
    cases = CASES
    print(f"| case | {' | '.join(results)} |")
    print("|---" * (len(results) + 1) + "|")
    for case in cases:
        print(f"| {case} | {' | '.join(r[case] for r in results.values())} |")


if __name__ == "__main__":
    main()
