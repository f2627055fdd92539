"""Benchmark shardkv against a real redis-server and a naive thread-per-client server.

Run from anywhere: python benchmarks/run.py [--quick] [options]

Modes (a plain run does all three; naming some runs only those):

  throughput  redis-benchmark -c 50 -r 100000 -n REQUESTS -t TEST -P {1,16}
              against redis-server, shardkv --shards 1, 2, 4 (each at every
              --acceptors count) and the baseline, one test per invocation so
              the CPU seconds each server process spends (psutil, user+sys)
              can be charged to that test. Prints requests/s with the ratio to
              redis-server from the same run, CPU seconds per 100k requests
              per process and per process class (acceptors, workers,
              supervisor, redis-server, the redis-benchmark client), and a
              projection of what the design serves on 2-32 cores
              (benchmarks/projection.py) with its arithmetic.
  memory      loads --keys keys (16-byte keys, 32-byte values) with pipelined
              raw RESP, once without and once with a TTL (SET ... EX 3600), and
              compares the summed RSS of all shardkv processes with
              redis-server's used_memory_rss.
  keyspace    GET/SET throughput with -r 10000 and then -r --keys after
              preloading that many keys; throughput should not fall by more
              than 10% as the keyspace grows.

Results go to benchmarks/results/results.json and throughput.png
(benchmarks/results/quick/ for --quick). Progress goes to stderr. The exit
status is 1 if any server failed to start or any benchmark reported errors.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bulk_load import load_keys
from benchmarks.charts import throughput_chart
from benchmarks.progress import Progress
from benchmarks.projection import CORES, cpu_classes, project, redis_one_core
from benchmarks.redis_benchmark import BenchmarkRun, run_redis_benchmark
from tests.support.servers import (
    HOST,
    ROOT,
    ServerProcess,
    ServerStartError,
    free_port,
    start_command,
    start_redis,
    start_shardkv,
)

RESULTS_DIR = ROOT / "benchmarks" / "results"
DEFAULT_TESTS = "set,get,incr,mset"
# redis-benchmark's own order: list pops run after the pushes that fill the lists.
CANONICAL_ORDER = (
    "ping_inline ping_mbulk ping set get incr lpush rpush lpop rpop sadd hset spop zadd zpopmin"
    " lrange lrange_100 lrange_300 lrange_500 lrange_600 mset xadd"
).split()
KEYSPACE_SMALL = 10_000
KEYSPACE_TOLERANCE = 0.10
MEMORY_TTL = 3600


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; --quick fills in whatever was not given explicitly."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/run.py",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    modes = parser.add_argument_group("modes (default: all three; --quick: throughput only)")
    modes.add_argument("--throughput", action="store_true", help="run the redis-benchmark throughput mode")
    modes.add_argument("--memory", action="store_true", help="run the memory mode")
    modes.add_argument("--keyspace", action="store_true", help="run the keyspace-size mode")
    modes.add_argument("--no-throughput", action="store_true", help="leave the throughput mode out")
    modes.add_argument("--no-memory", action="store_true", help="leave the memory mode out of the full run")
    modes.add_argument(
        "--no-keyspace", action="store_true", help="leave the keyspace mode out of the full run"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 20000 requests, shards 2, throughput only, results in results/quick/",
    )
    parser.add_argument(
        "--servers",
        default="redis,shardkv,baseline",
        help="comma list of redis, shardkv, baseline (default: all)",
    )
    parser.add_argument("--shards", default=None, help="shardkv shard counts for throughput (default 1,2,4)")
    parser.add_argument(
        "--acceptors",
        default="1",
        help="shardkv acceptor counts, each tried with every shard count (default 1), e.g. 1,2",
    )
    parser.add_argument(
        "--tests", default=DEFAULT_TESTS, help=f"redis-benchmark -t tests (default {DEFAULT_TESTS})"
    )
    parser.add_argument("--pipelines", default="1,16", help="redis-benchmark -P depths (default 1,16)")
    parser.add_argument(
        "--requests", type=int, default=None, help="redis-benchmark -n per test (default 200000)"
    )
    parser.add_argument("--clients", type=int, default=50, help="redis-benchmark -c (default 50)")
    parser.add_argument(
        "--random-keys", type=int, default=100_000, help="redis-benchmark -r (default 100000)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each measurement K times and report the median (throughput: K rounds over all servers)",
    )
    parser.add_argument(
        "--keys",
        type=int,
        default=None,
        help="keys loaded by the memory and keyspace modes (default 1000000)",
    )
    parser.add_argument(
        "--memory-shards", default="2,4", help="shardkv shard counts for memory (default 2,4)"
    )
    parser.add_argument(
        "--keyspace-shards", type=int, default=2, help="shardkv shard count for keyspace (default 2)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="memory mode: seconds a server rests after its load before its RSS is read, half"
        " that after its start (default 1.0; 0 for a smoke run that checks no sizes)",
    )
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)

    explicit = {m for m in ("throughput", "memory", "keyspace") if getattr(args, m)}
    default_modes = {"throughput"} if args.quick else {"throughput", "memory", "keyspace"}
    args.modes = (explicit or default_modes) - {
        m for m in ("throughput", "memory", "keyspace") if getattr(args, f"no_{m}")
    }
    args.servers = _names(args.servers, {"redis", "shardkv", "baseline"})
    args.shards = _ints(args.shards or ("2" if args.quick else "1,2,4"))
    args.acceptors = _ints(args.acceptors) or [1]
    args.memory_shards = _ints(args.memory_shards)
    args.pipelines = _ints(args.pipelines)
    args.tests = sorted(_names(args.tests, None), key=_test_rank)
    args.requests = args.requests or (20_000 if args.quick else 200_000)
    args.keys = args.keys or (20_000 if args.quick else 1_000_000)
    args.out = args.out or (RESULTS_DIR / "quick" if args.quick else RESULTS_DIR)
    args.repeat = max(1, args.repeat)
    return args


def _names(text: str, allowed: set[str] | None) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if allowed is not None and n not in allowed]
    if unknown:
        raise SystemExit(f"unknown name(s) {unknown}; choose from {sorted(allowed or [])}")
    return names


def _ints(text: str) -> list[int]:
    return [int(n) for n in text.split(",") if n.strip()]


def _test_rank(test: str) -> int:
    return CANONICAL_ORDER.index(test) if test in CANONICAL_ORDER else len(CANONICAL_ORDER)


Target = tuple[str, int | None, int]  # kind, shards, acceptors


def start_server(target: Target, progress: Progress) -> ServerProcess:
    """Start redis-server, shardkv (``shards``, ``acceptors``) or the baseline on a fresh free port."""
    kind, shards, acceptors = target
    port = free_port()
    if kind == "redis":
        progress(f"starting redis on port {port}")
        return start_redis(port=port)
    if kind == "shardkv":
        progress(f"starting shardkv with {shards or 1} shards, {acceptors} acceptor(s) on port {port}")
        return start_shardkv(shards=shards or 1, port=port, acceptors=acceptors)
    progress(f"starting baseline on port {port}")
    argv = [sys.executable, str(ROOT / "benchmarks" / "baseline_server.py"), "--port", str(port)]
    return start_command(argv, port, "baseline")


class Harness:
    """Runs the selected modes and accumulates everything that goes into results.json."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.progress = Progress()
        self.errors: list[str] = []
        self.warnings: list[str] = []

    # -- servers -----------------------------------------------------------------

    def start(self, target: Target) -> ServerProcess | None:
        """Start a server, or record why it could not start and return None."""
        try:
            return start_server(target, self.progress)
        except ServerStartError as exc:
            self.errors.append(str(exc))
            self.progress(f"!! failed to start {exc.brief}")
            return None

    def stop(self, server: ServerProcess) -> None:
        """Stop a server and keep any warnings its shutdown produced."""
        server.stop()
        self.warnings += server.warnings

    # -- redis-benchmark -----------------------------------------------------------

    def benchmark(
        self, server: ServerProcess, test: str, pipeline: int, keyspace: int, note: str = ""
    ) -> BenchmarkRun:
        """Run one test once, with progress lines; its errors go to the run's error list."""
        self.progress(f"{server.label}: {test} -P {pipeline} -r {keyspace}{note}")
        run = run_redis_benchmark(server, test, pipeline, self.args.requests, self.args.clients, keyspace)
        rates = ", ".join(f"{row.name} {row.rps:,.0f} rps" for row in run.rows) or "no result"
        self.progress(f"{server.label}: {test} -P {pipeline}: {rates} ({run.wall_seconds:.1f}s)")
        for error in dict.fromkeys(run.errors):
            self.progress(f"!! {error}")
            message = f"{server.label} {test} -P {pipeline}: {error}"
            if message not in self.errors:
                self.errors.append(message)
        return run

    def benchmark_repeated(
        self, server: ServerProcess, test: str, pipeline: int, keyspace: int
    ) -> list[dict[str, Any]]:
        """Run one test --repeat times back to back; one record per CSV row (medians)."""
        runs: list[BenchmarkRun] = []
        for rep in range(self.args.repeat):
            note = f" (run {rep + 1}/{self.args.repeat})" if self.args.repeat > 1 else ""
            runs.append(self.benchmark(server, test, pipeline, keyspace, note))
            if not runs[-1].rows:
                break  # a test the server cannot run fails the same way every time
        return summarize(server, runs)

    # -- modes ------------------------------------------------------------------------

    def throughput(self) -> list[dict[str, Any]]:
        """redis-benchmark every test at every pipeline depth against every server.

        With --repeat K the servers take turns K times (a round starts each
        server afresh and runs all its tests), so that drift on a shared
        machine reaches redis-server and shardkv alike, and each ratio
        compares medians measured over the same stretch of time.
        """
        runs: dict[tuple[str, str, int], list[BenchmarkRun]] = {}
        specs: dict[str, ServerProcess] = {}
        for rnd in range(self.args.repeat):
            note = f" (round {rnd + 1}/{self.args.repeat})" if self.args.repeat > 1 else ""
            for target in self.targets(self.args.shards):
                server = self.start(target)
                if server is None:
                    continue
                label = server.label
                specs.setdefault(label, server)
                try:
                    self.progress(f"{label}: processes {sorted(set(server.roles().values()))}{note}")
                    for pipeline in self.args.pipelines:
                        for test in self.args.tests:
                            done = runs.setdefault((label, test, pipeline), [])
                            if done and not done[-1].rows:
                                continue  # a test the server cannot run fails the same way every time
                            done.append(self.benchmark(server, test, pipeline, self.args.random_keys, note))
                finally:
                    self.stop(server)
        records: list[dict[str, Any]] = []
        for (label, _test, _pipeline), measured in runs.items():
            records += summarize(specs[label], measured)
        add_ratios(records)
        return records

    def targets(self, shard_counts: list[int], baseline: bool = True) -> list[Target]:
        """(kind, shards, acceptors) of the chosen --servers in run order: redis,
        shardkv per shard count and acceptor count, baseline."""
        chosen = self.args.servers
        found: list[Target] = [("redis", None, 1)] if "redis" in chosen else []
        if "shardkv" in chosen:
            found += [("shardkv", n, k) for n in shard_counts for k in self.args.acceptors]
        if baseline and "baseline" in chosen:
            found.append(("baseline", None, 1))
        return found

    def memory(self) -> list[dict[str, Any]]:
        """Load --keys keys without and with a TTL; compare resident memory."""
        records = []
        for ttl in (None, MEMORY_TTL):
            for target in self.targets(self.args.memory_shards):
                server = self.start(target)
                if server is None:
                    continue
                try:
                    records.append(self.memory_one(server, ttl))
                finally:
                    self.stop(server)
        add_memory_ratios(records)
        return records

    def memory_one(self, server: ServerProcess, ttl: int | None) -> dict[str, Any]:
        """Measure one fresh server empty, load the keys, and measure it again."""
        time.sleep(self.args.settle / 2)
        empty = server.memory()
        self.progress(f"{server.label}: loading {self.args.keys:,} keys (ttl={ttl})")
        loaded = load_keys(HOST, server.port, 0, self.args.keys, ttl=ttl)
        self.progress(f"{server.label}: loaded {loaded.ok:,} keys at {loaded.rate:,.0f} keys/s")
        if loaded.errors:
            self.errors.append(
                f"{server.label}: {loaded.errors} SET errors while loading: {loaded.first_error}"
            )
        time.sleep(self.args.settle)  # let allocators and worker queues settle before reading RSS
        full = server.memory()
        primary = "used_memory_rss" if server.kind == "redis" else "rss_sum"
        record = {
            "server": server.label,
            "kind": server.kind,
            "shards": server.shards,
            "acceptors": server.acceptors,
            "ttl": ttl,
            "keys": self.args.keys,
            "keys_ok": loaded.ok,
            "load_seconds": loaded.seconds,
            "empty": empty,
            "loaded": full,
            "rss": full[primary],
            "rss_net": full[primary] - empty[primary],
            "pss": full["pss_sum"],
        }
        record["bytes_per_key"] = record["rss_net"] / max(1, loaded.ok)
        self.progress(
            f"{server.label}: RSS {record['rss'] / 2**20:,.1f} MiB "
            f"({record['bytes_per_key']:.0f} bytes/key above empty)"
        )
        return record

    def keyspace(self) -> list[dict[str, Any]]:
        """GET/SET throughput with a small and then a large preloaded keyspace."""
        small = min(KEYSPACE_SMALL, self.args.keys)
        records = []
        for target in self.targets([self.args.keyspace_shards], baseline=False):
            server = self.start(target)
            if server is None:
                continue
            try:
                loaded = 0
                for size in (small, self.args.keys):
                    self.progress(f"{server.label}: preloading keys {loaded:,}..{size:,}")
                    result = load_keys(HOST, server.port, loaded, size)
                    if result.errors:
                        self.errors.append(
                            f"{server.label}: {result.errors} SET errors: {result.first_error}"
                        )
                    loaded = size
                    for pipeline in self.args.pipelines:
                        for test in ("set", "get"):
                            for record in self.benchmark_repeated(server, test, pipeline, size):
                                records.append({**record, "keyspace": size})
            finally:
                self.stop(server)
        return keyspace_comparison(records, small, self.args.keys)


def summarize(spec: ServerProcess, runs: list[BenchmarkRun]) -> list[dict[str, Any]]:
    """Merge repeated runs of one test into one record per CSV row, taking medians."""
    first = runs[0]
    names = list(dict.fromkeys(row.name for run in runs for row in run.rows))
    measured = [run.cpu_per_100k() for run in runs if run.rows]
    cpu_roles = list(dict.fromkeys(role for per_role in measured for role in per_role))
    cpu = {role: statistics.median(per_role.get(role, 0.0) for per_role in measured) for role in cpu_roles}
    client_cpu = [run.client_cpu_per_100k() for run in runs if run.rows]
    records = []
    for name in names or [first.test.upper()]:
        rows = [row for run in runs for row in run.rows if row.name == name]
        records.append(
            {
                "server": spec.label,
                "kind": spec.kind,
                "shards": spec.shards,
                "acceptors": spec.acceptors,
                "test": first.test,
                "name": name,
                "pipeline": first.pipeline,
                "requests": first.requests,
                "clients": first.clients,
                "keyspace": first.keyspace,
                "rps": statistics.median(row.rps for row in rows) if rows else 0.0,
                "rps_runs": [row.rps for row in rows],
                "p50_ms": statistics.median(row.p50_ms for row in rows) if rows else 0.0,
                "p99_ms": statistics.median(row.p99_ms for row in rows) if rows else 0.0,
                "cpu_seconds_per_100k": cpu,
                "client_cpu_seconds_per_100k": statistics.median(client_cpu) if client_cpu else 0.0,
                "cpu_classes": cpu_classes(cpu, statistics.median(client_cpu) if client_cpu else 0.0),
                "errors": sorted({e for run in runs for e in run.errors}),
                "warnings": sorted({w for run in runs for w in run.warnings}),
            }
        )
    return records


def add_ratios(records: list[dict[str, Any]]) -> None:
    """Set `vs_redis` and `vs_baseline`: requests/s over redis-server's and over the
    threaded baseline's, for the same test and pipeline depth; and `vs_one_acceptor`:
    shardkv's over shardkv's at the same shard count with one acceptor."""
    for kind in ("redis", "baseline"):
        base_rps = {(r["name"], r["pipeline"]): r["rps"] for r in records if r["kind"] == kind}
        for record in records:
            base = base_rps.get((record["name"], record["pipeline"]))
            record[f"vs_{kind}"] = record["rps"] / base if base and record["rps"] else None
    # shardkv at K acceptors over shardkv with the same shard count at one acceptor.
    one = {
        (r["shards"], r["name"], r["pipeline"]): r["rps"]
        for r in records
        if r["kind"] == "shardkv" and r["acceptors"] == 1
    }
    for record in records:
        base = one.get((record["shards"], record["name"], record["pipeline"]))
        shardkv = record["kind"] == "shardkv"
        record["vs_one_acceptor"] = record["rps"] / base if shardkv and base and record["rps"] else None


def add_memory_ratios(records: list[dict[str, Any]]) -> None:
    """Set `vs_redis` (RSS) and `net_vs_redis` (RSS above the empty server) per TTL setting."""
    redis = {r["ttl"]: r for r in records if r["kind"] == "redis"}
    for record in records:
        base = redis.get(record["ttl"])
        record["vs_redis"] = record["rss"] / base["rss"] if base and base["rss"] else None
        record["net_vs_redis"] = record["rss_net"] / base["rss_net"] if base and base["rss_net"] > 0 else None


def keyspace_comparison(records: list[dict[str, Any]], small: int, large: int) -> list[dict[str, Any]]:
    """Pair the small- and large-keyspace runs and flag a fall of more than 10%."""
    by_key = {(r["server"], r["name"], r["pipeline"], r["keyspace"]): r for r in records}
    pairs = []
    for (server, name, pipeline, size), record in by_key.items():
        if size != small:
            continue
        other = by_key.get((server, name, pipeline, large))
        ratio = other["rps"] / record["rps"] if other and record["rps"] else None
        pairs.append(
            {
                "server": server,
                "name": name,
                "pipeline": pipeline,
                "small_keyspace": small,
                "large_keyspace": large,
                "rps_small": record["rps"],
                "rps_large": other["rps"] if other else None,
                "large_over_small": ratio,
                "within_10_percent": ratio is not None and ratio >= 1 - KEYSPACE_TOLERANCE,
            }
        )
    return pairs


def projection(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """From CPU seconds per 100k requests, project which shardkv process saturates first,
    and what the design serves on 2-32 cores (:mod:`benchmarks.projection`).

    A process that spends c CPU seconds per 100k requests runs out of one core
    at 100000 / c requests/s. With one acceptor, it sees every request, so
    once the workers are spread over enough cores it is the ceiling; with K
    acceptors each sees 1/K of the connections. The N-core projection puts
    the acceptors' and the workers' measured CPU per request against
    redis-server's one-core rate, measured in the same run.
    """
    redis = {
        (r["name"], r["pipeline"]): redis_one_core(r["cpu_classes"]["redis"], r["rps"])
        for r in records
        if r["kind"] == "redis" and r["rps"]
    }
    projections = []
    for record in records:
        if record["kind"] != "shardkv":
            continue
        cpu = {role: c for role, c in record["cpu_seconds_per_100k"].items() if c > 0}
        classes = record["cpu_classes"]
        if not cpu or not record["rps"] or classes["acceptors"] <= 0 or classes["workers"] <= 0:
            continue
        per_process = {
            role: {"cpu_seconds_per_100k": c, "max_rps_one_core": 100_000 / c} for role, c in cpu.items()
        }
        first = max(cpu, key=cpu.__getitem__)
        acceptor = classes["acceptors"]
        busiest_acceptor = max(classes["per_acceptor"].values())
        total = sum(cpu.values())
        projections.append(
            {
                "server": record["server"],
                "shards": record["shards"],
                "acceptors": record["acceptors"],
                "name": record["name"],
                "pipeline": record["pipeline"],
                "measured_rps": record["rps"],
                "processes": per_process,
                "classes": classes,
                "total_cpu_seconds_per_100k": total,
                "acceptor_cpu_seconds_per_100k": acceptor,
                "workers_cpu_seconds_per_100k": classes["workers"],
                "saturates_first": first,
                "saturates_at_rps": 100_000 / cpu[first],
                "acceptor_ceiling_rps": 100_000 / busiest_acceptor,
                "cores_before_acceptor_saturates": total / busiest_acceptor,
                "cores": project(
                    classes,
                    redis.get((record["name"], record["pipeline"])),
                    load=(record["clients"], record["pipeline"], record["acceptors"], record["shards"]),
                ),
            }
        )
    return projections


def machine_budget(records: list[dict[str, Any]], cores: int) -> list[dict[str, Any]]:
    """How much of this machine each measured rate used, and the most it could give.

    Here redis-benchmark runs on the same cores as the server, so a request
    costs the machine the server's CPU plus the client's. At `cores` cores
    fully busy the rate cannot exceed cores x 100000 / (server + client CPU
    seconds per 100k requests), whatever the server's design; `busy_cores`
    is how much of that the measured rate used.
    """
    budget = []
    for record in records:
        server = sum(record["cpu_seconds_per_100k"].values())
        client = record.get("client_cpu_seconds_per_100k", 0.0)
        if not record["rps"] or server + client <= 0:
            continue
        budget.append(
            {
                "server": record["server"],
                "kind": record["kind"],
                "shards": record["shards"],
                "name": record["name"],
                "pipeline": record["pipeline"],
                "measured_rps": record["rps"],
                "server_cpu_seconds_per_100k": server,
                "client_cpu_seconds_per_100k": client,
                "busy_cores": (server + client) * record["rps"] / 100_000,
                "machine_ceiling_rps": cores * 100_000 / (server + client),
            }
        )
    return budget


# -- printing -----------------------------------------------------------------------------


def print_table(headers: list[str], rows: list[list[str]], title: str) -> None:
    """Print a plain aligned text table: numbers to the right, words to the left."""
    if not rows:
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        cells = zip(row, widths, strict=True)
        print("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in cells))


def _numeric(cell: str) -> bool:
    return cell[:1].isdigit() or cell == "-"


def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


def print_throughput(records: list[dict[str, Any]]) -> None:
    """The main table: server, shards, test, pipeline, requests/s, ratio to redis-server."""
    rows = [
        [
            r["kind"],
            str(r["shards"] or "-"),
            str(r["acceptors"]) if r["kind"] == "shardkv" else "-",
            r["name"],
            str(r["pipeline"]),
            f"{r['rps']:,.0f}",
            _ratio(r["vs_redis"]),
            _ratio(r.get("vs_baseline")),
            _ratio(r.get("vs_one_acceptor")),
            f"{r['p50_ms']:.2f}",
            str(len(r["errors"])),
        ]
        for r in records
    ]
    print_table(
        [
            "server",
            "shards",
            "acceptors",
            "test",
            "P",
            "requests/s",
            "vs redis",
            "vs baseline",
            "vs K=1",
            "p50 ms",
            "errors",
        ],
        rows,
        "Throughput (redis-benchmark)",
    )
    cpu_rows = []
    for r in records:
        for role, secs in r["cpu_seconds_per_100k"].items():
            if secs <= 0:
                continue
            cpu_rows.append(
                [r["server"], role, r["name"], str(r["pipeline"]), f"{secs:.3f}", f"{100_000 / secs:,.0f}"]
            )
    print_table(
        ["server", "process", "test", "P", "cpu s/100k req", "max rps @1 core"],
        cpu_rows,
        "CPU seconds (user+sys) per 100k requests, per server process (idle processes left out)",
    )
    print_classes(records)


def print_classes(records: list[dict[str, Any]]) -> None:
    """CPU seconds per 100k requests per process class: sums and each process."""
    rows = []
    for r in records:
        c = r["cpu_classes"]
        rows.append(
            [
                r["server"],
                r["name"],
                str(r["pipeline"]),
                f"{c['acceptors']:.3f}" if c["per_acceptor"] else "-",
                " + ".join(f"{v:.3f}" for v in c["per_acceptor"].values()) or "-",
                f"{c['workers']:.3f}" if c["per_worker"] else "-",
                " + ".join(f"{v:.3f}" for v in c["per_worker"].values()) or "-",
                f"{c['supervisor']:.3f}" if r["kind"] == "shardkv" else "-",
                f"{c['redis']:.3f}" if r["kind"] == "redis" else "-",
                f"{sum(r['cpu_seconds_per_100k'].values()):.3f}",
                f"{c['client']:.3f}",
            ]
        )
    print_table(
        [
            "server",
            "test",
            "P",
            "acceptors",
            "each acceptor",
            "workers",
            "each worker",
            "supervisor",
            "redis-server",
            "server total",
            "client",
        ],
        rows,
        "CPU seconds per 100k requests per process class (client: redis-benchmark)",
    )


def print_projection(projections: list[dict[str, Any]]) -> None:
    """Which shardkv process saturates first, and how many cores the design can use."""
    rows = [
        [
            str(p["shards"]),
            str(p["acceptors"]),
            p["name"],
            str(p["pipeline"]),
            f"{p['measured_rps']:,.0f}",
            f"{p['acceptor_cpu_seconds_per_100k']:.3f}" if p["acceptor_cpu_seconds_per_100k"] else "-",
            f"{p['workers_cpu_seconds_per_100k']:.3f}",
            f"{p['total_cpu_seconds_per_100k']:.3f}",
            p["saturates_first"],
            f"{p['saturates_at_rps']:,.0f}",
            f"{p['acceptor_ceiling_rps']:,.0f}" if p["acceptor_ceiling_rps"] else "-",
            f"{p['cores_before_acceptor_saturates']:.1f}" if p["cores_before_acceptor_saturates"] else "-",
        ]
        for p in projections
    ]
    print_table(
        [
            "shards",
            "acceptors",
            "test",
            "P",
            "measured rps",
            "acceptors s/100k",
            "workers s/100k",
            "total s/100k",
            "saturates first",
            "at rps",
            "acceptor ceiling rps",
            "cores usable",
        ],
        rows,
        "Projection: max requests/s per process at 100% of one core (100000 / cpu-s per 100k)",
    )
    print_cores(projections)


def print_cores(projections: list[dict[str, Any]]) -> None:
    """What the design serves on 2-32 cores, from the CPU measured here, and the arithmetic."""
    headers = ["server", "test", "P", "redis 1 core"]
    headers += [f"N={n}: K+S, req/s, x redis" for n in CORES]
    headers += ["saturates at N=16", ">=2x @16"]
    rows = []
    for p in projections:
        cores = p["cores"]
        by_n = {row["cores"]: row for row in cores["cores"]}
        redis = cores["redis_one_core_rps"]
        cells = [p["server"], p["name"], str(p["pipeline"]), f"{redis:,.0f}" if redis else "-"]
        for n in CORES:
            row = by_n[n]
            ratio = f" {row['vs_redis']:.2f}x" if row["vs_redis"] is not None else ""
            cells.append(f"{row['acceptors']}+{row['shards']} {row['rps'] / 1000:,.0f}k{ratio}")
        cells.append(by_n[16]["saturates"] if 16 in by_n else "-")
        cells.append("yes" if cores["target_met"] else "NO")
        rows.append(cells)
    print_table(
        headers,
        rows,
        "Projection on N cores (K acceptors + S shards = N, one process per core, K balancing the"
        " acceptors' and the workers' CPU per request; the benchmark client's cores are not counted)",
    )
    for p in projections:
        print(
            f"\n{p['server']} {p['name']} -P {p['pipeline']} (measured at {p['acceptors']} acceptor(s),"
            f" {p['shards']} shards):"
        )
        for line in p["cores"]["arithmetic"]:
            print(f"  {line}")


def print_budget(budget: list[dict[str, Any]], cores: int) -> None:
    """Server and client CPU per request, cores used, and this machine's ceiling."""
    rows = [
        [
            b["server"],
            b["name"],
            str(b["pipeline"]),
            f"{b['measured_rps']:,.0f}",
            f"{b['server_cpu_seconds_per_100k']:.3f}",
            f"{b['client_cpu_seconds_per_100k']:.3f}",
            f"{b['busy_cores']:.2f}",
            f"{b['machine_ceiling_rps']:,.0f}",
        ]
        for b in budget
    ]
    print_table(
        [
            "server",
            "test",
            "P",
            "measured rps",
            "server s/100k",
            "client s/100k",
            "cores busy",
            "ceiling rps",
        ],
        rows,
        f"This machine's {cores} cores: server + redis-benchmark CPU per 100k requests, and the most"
        f" {cores} fully busy cores could serve ({cores} x 100000 / (server + client))",
    )


def print_memory(records: list[dict[str, Any]]) -> None:
    """RSS after loading, net of the empty server, and ratios to redis-server."""
    rows = [
        [
            r["kind"],
            str(r["shards"] or "-"),
            "EX 3600" if r["ttl"] else "none",
            f"{r['keys_ok']:,}",
            f"{r['rss'] / 2**20:,.1f}",
            f"{r['rss_net'] / 2**20:,.1f}",
            f"{r['bytes_per_key']:.0f}",
            f"{r['pss'] / 2**20:,.1f}",
            _ratio(r["vs_redis"]),
            _ratio(r["net_vs_redis"]),
        ]
        for r in records
    ]
    print_table(
        [
            "server",
            "shards",
            "ttl",
            "keys",
            "RSS MiB",
            "net MiB",
            "bytes/key",
            "PSS MiB",
            "vs redis",
            "net vs redis",
        ],
        rows,
        "Memory (redis: used_memory_rss; others: summed RSS of all processes; net = above empty server)",
    )


def print_keyspace(pairs: list[dict[str, Any]]) -> None:
    """Throughput with the small and the large keyspace."""
    rows = [
        [
            p["server"],
            p["name"],
            str(p["pipeline"]),
            f"{p['rps_small']:,.0f}",
            f"{p['rps_large']:,.0f}" if p["rps_large"] else "-",
            _ratio(p["large_over_small"]),
            "yes" if p["within_10_percent"] else "NO",
        ]
        for p in pairs
    ]
    if pairs:
        headers = [
            "server",
            "test",
            "P",
            f"rps -r {pairs[0]['small_keyspace']:,}",
            f"rps -r {pairs[0]['large_keyspace']:,}",
            "large/small",
            "within 10%",
        ]
        print_table(headers, rows, "Keyspace size")


def environment() -> dict[str, Any]:
    """Facts about the machine and tools, stored with the results."""
    try:
        redis_version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        redis_version = None
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "redis_server": redis_version,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the selected modes, print the tables, write results.json and the chart."""
    args = parse_args(argv)
    harness = Harness(args)
    harness.progress(
        f"modes {sorted(args.modes)}, servers {args.servers}, tests {args.tests}, "
        f"pipelines {args.pipelines}, {args.requests:,} requests, repeat {args.repeat}"
    )
    results: dict[str, Any] = {
        "environment": environment(),
        "options": {
            k: (str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, set) else v)
            for k, v in vars(args).items()
        },
    }
    try:
        if "throughput" in args.modes:
            results["throughput"] = harness.throughput()
            results["projection"] = projection(results["throughput"])
            results["machine_budget"] = machine_budget(results["throughput"], os.cpu_count() or 1)
            print_throughput(results["throughput"])
            print_projection(results["projection"])
            print_budget(results["machine_budget"], os.cpu_count() or 1)
        if "memory" in args.modes:
            results["memory"] = harness.memory()
            print_memory(results["memory"])
        if "keyspace" in args.modes:
            results["keyspace"] = harness.keyspace()
            print_keyspace(results["keyspace"])
    except KeyboardInterrupt:
        harness.errors.append("interrupted")
    results["errors"] = harness.errors
    results["warnings"] = harness.warnings
    results["elapsed_seconds"] = harness.progress.elapsed
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    if results.get("throughput"):
        throughput_chart(results["throughput"], args.out / "throughput.png")
    harness.progress(
        f"wrote {args.out / 'results.json'}" + (", throughput.png" if results.get("throughput") else "")
    )
    if harness.errors:
        print(f"\n{len(harness.errors)} error(s):", *harness.errors[:20], sep="\n  ")
    return 1 if harness.errors else 0


if __name__ == "__main__":
    sys.exit(main())
