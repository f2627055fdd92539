"""How shardkv's throughput scales with its shard count, measured with the loadtest.

Run: python benchmarks/scaling.py [--shards 1,2,4,8] [--duration 10] [--with-redis]

For each shard count it starts `python main.py --port P --shards N`, drives it
with `shardkv.loadtest` (K client processes x M connections, pipelined), stops
it, and records throughput, latency, the correctness counters and the CPU
seconds each server process spent. Prints the curve and writes
benchmarks/results/scaling.json and scaling.png. It is meant for a machine
with many cores (16 or more); on a small one, use small numbers and read the
result as a smoke test, since the clients and the shards share the cores.
The exit status is 1 if a server failed to start or any loadtest failed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `shardkv` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.charts import scaling_chart
from benchmarks.progress import Progress
from shardkv import loadtest
from tests.support.servers import (
    HOST,
    ROOT,
    ServerProcess,
    ServerStartError,
    free_port,
    start_redis,
    start_shardkv,
)

RESULTS_DIR = ROOT / "benchmarks" / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    cores = os.cpu_count() or 2
    parser = argparse.ArgumentParser(
        prog="python benchmarks/scaling.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--shards", default="1,2,4,8", help="shard counts to try (default 1,2,4,8)")
    parser.add_argument(
        "--processes",
        type=int,
        default=max(1, cores // 2),
        help=f"loadtest client processes (default: half the cores, here {max(1, cores // 2)})",
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="connections per client process (default 8)"
    )
    parser.add_argument("--pipeline", type=int, default=16, help="commands per round trip (default 16)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement (default 10)")
    parser.add_argument(
        "--requests", type=int, default=None, help="bound each measurement by requests instead"
    )
    parser.add_argument("--keys", type=int, default=1_000, help="keys per client process (default 1000)")
    parser.add_argument("--repeat", type=int, default=1, help="measure each point K times, keep the median")
    parser.add_argument(
        "--with-redis", action="store_true", help="also measure redis-server as a reference line"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="results folder (default benchmarks/results)"
    )
    args = parser.parse_args(argv)
    args.shards = [int(n) for n in args.shards.split(",") if n.strip()]
    args.repeat = max(1, args.repeat)
    if args.requests is not None:
        args.duration = None
    return args


def measure(shards: int | None, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Start one server (shardkv with ``shards``, redis-server with None), run
    the loadtest --repeat times against it, stop it."""
    port = free_port()
    label = f"shardkv-{shards}" if shards else "redis"
    progress(f"starting {label} on port {port}")
    try:
        server = start_shardkv(shards=shards, port=port) if shards else start_redis(port=port)
    except ServerStartError as exc:
        progress(f"!! failed to start {exc.brief}")
        return {"server": label, "shards": shards, "error": f"failed to start: {exc}", "ok": False}
    try:
        return _measure_running(server, args, progress)
    finally:
        server.stop()


def _measure_running(server: ServerProcess, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    results = []
    cpu: dict[str, list[float]] = {}
    for rep in range(args.repeat):
        progress(f"{server.label}: loadtest run {rep + 1}/{args.repeat}")
        roles = server.roles()
        before = server.cpu_times()
        result = loadtest.run(
            port=server.port,
            host=HOST,
            processes=args.processes,
            connections=args.connections,
            requests=args.requests,
            duration=args.duration,
            pipeline=args.pipeline,
            keys=args.keys,
        )
        after = server.cpu_times()
        for pid, secs in after.items():
            role = roles.get(pid, f"pid {pid}")
            per_100k = (secs - before.get(pid, 0.0)) * 100_000 / max(1, result.ops)
            cpu.setdefault(role, []).append(per_100k)
        progress(f"{server.label}: {result.summary()}")
        results.append(result)
    best = sorted(results, key=lambda r: r.throughput)[len(results) // 2]
    return {
        "server": server.label,
        "shards": server.shards,
        "throughput": statistics.median(r.throughput for r in results),
        "throughput_runs": [r.throughput for r in results],
        "op_p50_ms": best.op_p50_ms,
        "op_p99_ms": best.op_p99_ms,
        "batch_p50_ms": best.batch_p50_ms,
        "batch_p99_ms": best.batch_p99_ms,
        "errors": sum(r.errors for r in results),
        "lost": sum(r.lost for r in results),
        "wrong": sum(r.wrong for r in results),
        "counter_mismatches": sum(r.counter_mismatches for r in results),
        "error_samples": [m for r in results for m in r.error_samples][:10],
        "cpu_seconds_per_100k": {role: statistics.median(v) for role, v in cpu.items()},
        "ok": all(r.ok for r in results),
    }


def print_curve(points: list[dict[str, Any]], reference: dict[str, Any] | None) -> None:
    """Shards, ops/s, speedup over the first point, and the correctness counters."""
    measured = [p for p in points if "throughput" in p]
    base = measured[0]["throughput"] if measured else 0.0
    print(
        f"\n{'shards':>6}  {'ops/s':>12}  {'speedup':>7}  {'per shard':>9}  "
        f"{'op p50 ms':>9}  {'op p99 ms':>9}  errors/lost/wrong/counters"
    )
    for point in points:
        if "throughput" not in point:
            print(f"{point['shards']:>6}  {point['error'].splitlines()[0]}")
            continue
        speedup = point["throughput"] / base if base else 0.0
        efficiency = speedup * measured[0]["shards"] / point["shards"]
        print(
            f"{point['shards']:>6}  {point['throughput']:>12,.0f}  {speedup:>6.2f}x  {efficiency:>8.0%}  "
            f"{point['op_p50_ms']:>9.3f}  {point['op_p99_ms']:>9.3f}  "
            f"{point['errors']}/{point['lost']}/{point['wrong']}/{point['counter_mismatches']}"
        )
    if reference and "throughput" in reference:
        print(f"{'redis':>6}  {reference['throughput']:>12,.0f}  (redis-server, same loadtest)")


def main(argv: list[str] | None = None) -> int:
    """Measure every shard count, print the curve, save JSON and PNG."""
    args = parse_args(argv)
    progress = Progress()
    cores = os.cpu_count() or 1
    if cores < 2 * max(args.shards):
        progress(
            f"note: {cores} cores for up to {max(args.shards)} shards plus {args.processes} client processes;"
        )
        progress("      the curve will flatten where the cores run out, not where the design does")
    reference = measure(None, args, progress) if args.with_redis else None
    points = [measure(shards, args, progress) for shards in args.shards]
    if reference and "throughput" in reference:
        for point in points:
            point["redis_throughput"] = reference["throughput"]
    print_curve(points, reference)
    args.out.mkdir(parents=True, exist_ok=True)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = {"options": options, "cpu_count": cores, "points": points, "redis": reference}
    (args.out / "scaling.json").write_text(json.dumps(report, indent=2))
    scaling_chart([p for p in points if "throughput" in p], args.out / "scaling.png")
    progress(f"wrote {args.out / 'scaling.json'} and scaling.png")
    return 0 if all(p["ok"] for p in points) and (reference is None or reference["ok"]) else 1


if __name__ == "__main__":
    sys.exit(main())
