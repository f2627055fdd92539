"""How shardkv's throughput scales with its acceptor and shard counts, measured with the loadtest.

Run: python benchmarks/scaling.py [--acceptors 1,2] [--shards 1,2,4,8] [--pipelines 16]
                                  [--duration 10 | --budget SECONDS] [--with-redis]

For each acceptor count K and shard count S it starts `python main.py --port P
--shards S --acceptors K`, drives it with `shardkv.loadtest` (client processes
x connections, pipelined SET/GET/INCR with read-back checks) at every
pipeline depth, stops it, and records throughput, latency, the correctness
counters, the CPU seconds per 100k requests of each server process and of
each process class (acceptors, workers, supervisor; the client processes
too, start-up included), and the projection on 2-32 cores from that CPU
(benchmarks/projection.py). With --with-redis, redis-server is measured the
same way first, as the reference. Prints the grid and writes
benchmarks/results/scaling.json and scaling.png (--out to change).

The 16-core grid, redis-server beside it, bounded to 9 minutes in all
(--budget sets each measurement's duration to fit, and skips what would
not fit):

  python benchmarks/scaling.py --acceptors 1,2,4,8 --shards 2,4,8 \\
      --pipelines 1,16 --with-redis --budget 540

It is meant for a machine with many cores (16 or more); on a small one, use
small numbers and read the result as a smoke test, since the clients and the
server processes share the cores. The exit status is 1 if a server failed to
start, a loadtest failed, or the budget left points out.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `shardkv` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.charts import scaling_chart
from benchmarks.progress import Progress
from benchmarks.projection import CORES, cpu_classes, project, redis_one_core
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
# Seconds a measurement costs beyond its timed phase (client processes start and
# connect, then read back every key), and a server start and stop; --budget
# plans with these and checks the clock before each measurement.
MEASURE_OVERHEAD = 3.0
SERVER_OVERHEAD = 4.0
MIN_DURATION = 1.0


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
        "--acceptors", default="1", help="acceptor counts, each with every shard count (default 1)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=max(1, cores // 2),
        help=f"loadtest client processes (default: half the cores, here {max(1, cores // 2)})",
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="connections per client process (default 8)"
    )
    parser.add_argument(
        "--pipelines",
        "--pipeline",
        dest="pipelines",
        default="16",
        help="commands per round trip, a list such as 1,16 (default 16)",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per measurement (default 10)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="bound the whole run to this many seconds: each measurement's duration is chosen to fit"
        " (at most --duration), and a measurement that would not fit is skipped",
    )
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
    args.acceptors = [int(n) for n in args.acceptors.split(",") if n.strip()] or [1]
    args.pipelines = [int(n) for n in args.pipelines.split(",") if n.strip()] or [16]
    args.repeat = max(1, args.repeat)
    args.servers = [(None, 1)] * args.with_redis + [(s, k) for k in args.acceptors for s in args.shards]
    measurements = len(args.servers) * len(args.pipelines) * args.repeat
    if args.budget is not None:
        spare = args.budget - SERVER_OVERHEAD * len(args.servers) - MEASURE_OVERHEAD * measurements
        fit = max(MIN_DURATION, spare / measurements)
        args.duration = min(args.duration, fit) if args.duration else fit
    if args.requests is not None:
        args.duration = None if args.budget is None else args.duration
    elif args.duration is None:
        args.duration = 10.0
    return args


class Clock:
    """The --budget deadline: is there time left for one more measurement?"""

    def __init__(self, budget: float | None) -> None:
        self.deadline = time.monotonic() + budget if budget is not None else None

    def fits(self, seconds: float) -> bool:
        return self.deadline is None or time.monotonic() + seconds <= self.deadline


def measure(
    shards: int | None, acceptors: int, args: argparse.Namespace, clock: Clock, progress: Progress
) -> list[dict[str, Any]]:
    """Start one server (shardkv with ``shards`` and ``acceptors``, redis-server
    with None), run the loadtest at every pipeline depth --repeat times, stop it.
    One point per pipeline depth."""
    label = (f"shardkv-{shards}" + (f"-a{acceptors}" if acceptors != 1 else "")) if shards else "redis"
    base = {"server": label, "kind": "shardkv" if shards else "redis", "shards": shards}
    base["acceptors"] = acceptors if shards else None
    need = SERVER_OVERHEAD + (args.duration or 0) + MEASURE_OVERHEAD
    if not clock.fits(need):
        progress(f"!! {label}: skipped, the time budget is spent")
        return [{**base, "pipeline": p, "error": "skipped: time budget", "ok": False} for p in args.pipelines]
    port = free_port()
    progress(f"starting {label} on port {port}")
    try:
        server = (
            start_shardkv(shards=shards, acceptors=acceptors, port=port) if shards else start_redis(port=port)
        )
    except ServerStartError as exc:
        progress(f"!! failed to start {exc.brief}")
        return [
            {**base, "pipeline": p, "error": f"failed to start: {exc}", "ok": False} for p in args.pipelines
        ]
    try:
        points = []
        for pipeline in args.pipelines:
            if not clock.fits((args.duration or 0) + MEASURE_OVERHEAD):
                progress(f"!! {label} -P {pipeline}: skipped, the time budget is spent")
                points.append({**base, "pipeline": pipeline, "error": "skipped: time budget", "ok": False})
                continue
            points.append({**base, **_measure_running(server, pipeline, args, progress)})
        return points
    finally:
        server.stop()


def _measure_running(
    server: ServerProcess, pipeline: int, args: argparse.Namespace, progress: Progress
) -> dict[str, Any]:
    results = []
    cpu: dict[str, list[float]] = {}
    client: list[float] = []
    for rep in range(args.repeat):
        progress(f"{server.label}: loadtest -P {pipeline}, run {rep + 1}/{args.repeat}")
        roles = server.roles()
        before = server.cpu_times()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = loadtest.run(
            port=server.port,
            host=HOST,
            processes=args.processes,
            connections=args.connections,
            requests=args.requests,
            duration=args.duration,
            pipeline=pipeline,
            keys=args.keys,
        )
        after = server.cpu_times()
        done = resource.getrusage(resource.RUSAGE_CHILDREN)
        ops = max(1, result.ops)
        # The client processes are reaped by now; the server's are not, so only theirs count.
        used = (done.ru_utime - children.ru_utime) + (done.ru_stime - children.ru_stime)
        client.append(used * 100_000 / ops)
        per_role: dict[str, float] = {}
        for pid, secs in after.items():
            role = roles.get(pid, f"pid {pid}")
            per_role[role] = per_role.get(role, 0.0) + (secs - before.get(pid, 0.0)) * 100_000 / ops
        for role, value in per_role.items():
            cpu.setdefault(role, []).append(value)
        progress(f"{server.label}: {result.summary()}")
        results.append(result)
    best = sorted(results, key=lambda r: r.throughput)[len(results) // 2]
    per_100k = {role: statistics.median(v) for role, v in cpu.items()}
    return {
        "pipeline": pipeline,
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
        "cpu_seconds_per_100k": per_100k,
        "client_cpu_seconds_per_100k": statistics.median(client),
        "cpu_classes": cpu_classes(per_100k, statistics.median(client)),
        "ok": all(r.ok for r in results),
    }


def add_comparisons(points: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Ratios to redis-server and to one acceptor at the same shard count, and
    each shardkv point's projection on 2-32 cores."""
    measured = [p for p in points if "throughput" in p]
    redis = {p["pipeline"]: p for p in measured if p["kind"] == "redis"}
    one = {(p["shards"], p["pipeline"]): p["throughput"] for p in measured if p["acceptors"] == 1}
    for point in measured:
        ref = redis.get(point["pipeline"])
        point["redis_throughput"] = ref["throughput"] if ref else None
        point["vs_redis"] = point["throughput"] / ref["throughput"] if ref and ref["throughput"] else None
        if point["kind"] != "shardkv":
            continue
        base = one.get((point["shards"], point["pipeline"]))
        point["vs_one_acceptor"] = point["throughput"] / base if base else None
        classes = point["cpu_classes"]
        if classes["acceptors"] > 0 and classes["workers"] > 0:
            rate = redis_one_core(ref["cpu_classes"]["redis"], ref["throughput"]) if ref else None
            clients = args.processes * args.connections
            load = (clients, point["pipeline"], point["acceptors"], point["shards"])
            point["projection"] = project(classes, rate, load=load)


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def print_grid(points: list[dict[str, Any]]) -> None:
    """The measured grid: ops/s, ratios, CPU per class, correctness counters."""
    print(
        f"\n{'server':<14} {'K':>2} {'S':>2} {'P':>3} {'ops/s':>11} {'vs redis':>8} {'vs K=1':>7}"
        f" {'acceptors s/100k (each)':>30} {'workers s/100k':>14} {'client':>7}"
        f" {'op p99 ms':>9}  errors/lost/wrong/counters"
    )
    for p in points:
        head = f"{p['server']:<14} {p['acceptors'] or '-':>2} {p['shards'] or '-':>2} {p['pipeline']:>3}"
        if "throughput" not in p:
            print(f"{head} {p['error'].splitlines()[0]}")
            continue
        c = p["cpu_classes"]
        each = " + ".join(f"{v:.2f}" for v in c["per_acceptor"].values())
        acceptors = f"{c['acceptors']:.3f} ({each})" if each else f"redis {c['redis']:.3f}"
        print(
            f"{head} {p['throughput']:>11,.0f} {_ratio(p.get('vs_redis')):>8}"
            f" {_ratio(p.get('vs_one_acceptor')):>7} {acceptors:>30} {c['workers']:>14.3f}"
            f" {c['client']:>7.3f} {p['op_p99_ms']:>9.3f}  "
            f"{p['errors']}/{p['lost']}/{p['wrong']}/{p['counter_mismatches']}"
        )


def print_projection(points: list[dict[str, Any]]) -> None:
    """Each point's projection on 2-32 cores, and its arithmetic."""
    projected = [p for p in points if "projection" in p]
    if not projected:
        return
    print("\nProjection from each point's CPU per request (K + S = N cores; client cores not counted)")
    print(f"{'server':<14} {'P':>3} " + " ".join(f"{'N=' + str(n):>18}" for n in CORES) + "  saturates @16")
    for p in projected:
        rows = {r["cores"]: r for r in p["projection"]["cores"]}
        cells = []
        for n in CORES:
            r = rows[n]
            ratio = f" {r['vs_redis']:.1f}x" if r["vs_redis"] is not None else ""
            cells.append(f"{r['acceptors']}+{r['shards']} {r['rps'] / 1000:,.0f}k{ratio}".rjust(18))
        print(f"{p['server']:<14} {p['pipeline']:>3} " + " ".join(cells) + f"  {rows[16]['saturates']}")
    for p in projected:
        print(f"\n{p['server']} -P {p['pipeline']}:")
        for line in p["projection"]["arithmetic"]:
            print(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    """Measure every point of the grid, print it, save JSON and PNG."""
    args = parse_args(argv)
    progress = Progress()
    clock = Clock(args.budget)
    cores = os.cpu_count() or 1
    most = max(args.acceptors) + max(args.shards)
    progress(
        f"grid: acceptors {args.acceptors} x shards {args.shards} x pipelines {args.pipelines}"
        + (", redis-server first" if args.with_redis else "")
        + (f"; {args.duration:.1f}s per measurement" if args.duration else f"; {args.requests} requests each")
        + (f", within {args.budget:.0f}s" if args.budget is not None else "")
    )
    if cores < most + args.processes:
        progress(
            f"note: {cores} cores for up to {most} server processes plus {args.processes} client processes;"
        )
        progress("      the curve will flatten where the cores run out, not where the design does")
    points: list[dict[str, Any]] = []
    for shards, acceptors in args.servers:
        points += measure(shards, acceptors, args, clock, progress)
    add_comparisons(points, args)
    print_grid(points)
    print_projection(points)
    args.out.mkdir(parents=True, exist_ok=True)
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report = {
        "options": options,
        "cpu_count": cores,
        "elapsed_seconds": progress.elapsed,
        "points": points,
        "redis": [p for p in points if p["kind"] == "redis"],
    }
    (args.out / "scaling.json").write_text(json.dumps(report, indent=2))
    scaling_chart([p for p in points if "throughput" in p], args.out / "scaling.png")
    progress(f"wrote {args.out / 'scaling.json'} and scaling.png")
    return 0 if all(p["ok"] for p in points) else 1


if __name__ == "__main__":
    sys.exit(main())
