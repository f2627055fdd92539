"""What a cross-shard write costs in each persistence mode (issue 15, gap 5).

    python benchmarks/crossshard_cost.py [--shards 4] [--requests 5000] [--repeat 3]

Runs ``redis-benchmark -t mset -c 50 -r 100000`` (10 random keys per MSET,
so they span shards) against shardkv with ``appendonly yes`` and
``appendfsync always``, with ``appendfsync everysec``, and with
``appendonly no``, and against redis-server in the same three modes, in
rounds in which every server takes its turn; prints the median MSET/s of
each and the ratio.  A cross-shard MSET is one operation of the commit
protocol (``shardkv/crossshard.py``): its decision is fsynced to the
decisions file only with ``always``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.servers import start_redis, start_shardkv  # noqa: E402

MODES = {
    "always": ("--appendonly", "yes", "--appendfsync", "always"),
    "everysec": ("--appendonly", "yes", "--appendfsync", "everysec"),
    "no AOF": ("--appendonly", "no"),
}


def mset_rate(port: int, requests: int) -> float:
    out = subprocess.run(
        [
            "redis-benchmark",
            "-p",
            str(port),
            "-t",
            "mset",
            "-c",
            "50",
            "-r",
            "100000",
            "-n",
            str(requests),
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith('"MSET'):
            return float(line.split(",")[1].strip('"'))
    raise RuntimeError(f"no MSET line in {out!r}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rates: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeat):
        for mode, flags in MODES.items():
            for kind in ("redis-server", "shardkv"):
                server = (
                    start_redis(*flags)
                    if kind == "redis-server"
                    else start_shardkv(*flags, shards=args.shards, ready_timeout=120)
                )
                try:
                    rates.setdefault((kind, mode), []).append(mset_rate(server.port, args.requests))
                finally:
                    server.stop()
    print(f"| mode | redis-server MSET/s | shardkv {args.shards} shards MSET/s | ratio |")
    print("|---|---|---|---|")
    for mode in MODES:
        r = statistics.median(rates[("redis-server", mode)])
        s = statistics.median(rates[("shardkv", mode)])
        print(f"| {mode} | {r:,.0f} | {s:,.0f} | {s / r:.2f}x |")
    print("rounds:", {f"{k} {m}": v for (k, m), v in rates.items()})


if __name__ == "__main__":
    main()
