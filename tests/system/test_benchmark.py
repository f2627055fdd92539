"""The benchmark command runs, as the README gives it, and writes what it promises.

A tiny run of every mode (a few thousand requests and keys) against a real
redis-server, shardkv and the thread-per-client baseline.  It checks the
shape of the results (every server measured in every round, ratios to
redis-server, CPU seconds for the acceptor and each worker, the memory and
keyspace comparisons, the chart), never a speed: timings belong to full
runs of the benchmark, not to tests.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

import pytest

from tests.support.servers import run_dying_with_us

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_benchmark_command_measures_every_server_in_every_round(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [sys.executable, "benchmarks/run.py", "--throughput", "--memory", "--keyspace"]
    argv += ["--shards", "2", "--tests", "set,get", "--pipelines", "1,16", "--requests", "2000"]
    argv += ["--repeat", "2", "--keys", "12000", "--memory-shards", "2", "--settle", "0"]
    argv += ["--out", str(out)]
    done = run_dying_with_us(argv, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Throughput (redis-benchmark)" in done.stdout
    assert "round 2/2" in done.stderr  # progress lines name the round

    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == []
    throughput = results["throughput"]
    found = {(r["server"], r["name"], r["pipeline"]) for r in throughput}
    assert found == {
        (server, name, pipeline)
        for server in ("redis", "shardkv-2", "baseline")
        for name in ("SET", "GET")
        for pipeline in (1, 16)
    }
    for record in throughput:
        assert len(record["rps_runs"]) == 2  # one per round
        assert all(rps > 0 for rps in record["rps_runs"])
        assert record["rps"] == pytest.approx(statistics.median(record["rps_runs"]))
        assert record["vs_redis"] is not None
        if record["server"] == "redis":
            assert record["vs_redis"] == 1.0
        else:
            redis = next(
                r
                for r in throughput
                if r["server"] == "redis"
                and r["name"] == record["name"]
                and r["pipeline"] == record["pipeline"]
            )
            assert record["vs_redis"] == pytest.approx(record["rps"] / redis["rps"])
        if record["server"] == "shardkv-2":
            assert "acceptor" in record["cpu_seconds_per_100k"]
        if record["server"] == "baseline":
            assert record["vs_baseline"] == 1.0
        # redis-benchmark itself spends CPU on every request it sends.
        assert record["client_cpu_seconds_per_100k"] > 0
    shardkv_roles = set().union(
        *(r["cpu_seconds_per_100k"] for r in throughput if r["server"] == "shardkv-2")
    )
    assert {"acceptor", "worker 0", "worker 1"} <= shardkv_roles
    assert {p["shards"] for p in results["projection"]} == {2}
    assert "cores busy" in done.stdout
    for b in results["machine_budget"]:
        per_100k = b["server_cpu_seconds_per_100k"] + b["client_cpu_seconds_per_100k"]
        assert b["machine_ceiling_rps"] == pytest.approx(os.cpu_count() * 100_000 / per_100k)
    assert len(results["machine_budget"]) == len(throughput)

    memory = {(r["server"], r["ttl"]): r for r in results["memory"]}
    assert set(memory) == {(s, ttl) for s in ("redis", "shardkv-2", "baseline") for ttl in (None, 3600)}
    for record in memory.values():
        assert record["keys_ok"] == 12000
        assert record["rss"] > 0 and record["vs_redis"] > 0

    keyspace = results["keyspace"]
    assert {(r["server"], r["name"], r["pipeline"]) for r in keyspace} == {
        (server, name, pipeline)
        for server in ("redis", "shardkv-2")
        for name in ("SET", "GET")
        for pipeline in (1, 16)
    }
    for pair in keyspace:
        assert (pair["small_keyspace"], pair["large_keyspace"]) == (10000, 12000)
        assert pair["rps_small"] > 0 and pair["rps_large"] > 0

    assert (out / "throughput.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(200)
def test_benchmark_command_runs_every_acceptor_count_and_projects(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [sys.executable, "benchmarks/run.py", "--throughput", "--servers", "redis,shardkv"]
    argv += ["--shards", "2", "--acceptors", "1,2", "--tests", "set", "--pipelines", "1"]
    argv += ["--requests", "3000", "--out", str(out)]
    done = run_dying_with_us(argv, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Projection on N cores" in done.stdout
    assert "N=16: K=" in done.stdout  # the arithmetic is printed

    results = json.loads((out / "results.json").read_text())
    throughput = {r["server"]: r for r in results["throughput"]}
    assert set(throughput) == {"redis", "shardkv-2", "shardkv-2-a2"}
    two = throughput["shardkv-2-a2"]
    assert two["acceptors"] == 2 and throughput["shardkv-2"]["acceptors"] == 1
    assert {"acceptor 0", "acceptor 1", "worker 0", "worker 1"} <= set(two["cpu_seconds_per_100k"])
    classes = two["cpu_classes"]
    assert set(classes["per_acceptor"]) == {"acceptor 0", "acceptor 1"}
    assert classes["acceptors"] == pytest.approx(sum(classes["per_acceptor"].values()))
    assert classes["workers"] == pytest.approx(sum(classes["per_worker"].values()))
    assert classes["client"] == pytest.approx(two["client_cpu_seconds_per_100k"])
    assert throughput["redis"]["cpu_classes"]["redis"] > 0
    assert two["vs_one_acceptor"] == pytest.approx(two["rps"] / throughput["shardkv-2"]["rps"])
    assert throughput["shardkv-2"]["vs_one_acceptor"] == 1.0
    for p in results["projection"]:
        cores = p["cores"]
        assert [row["cores"] for row in cores["cores"]] == [2, 4, 8, 16, 32]
        for row in cores["cores"]:
            assert row["acceptors"] + row["shards"] == row["cores"]
            assert row["rps"] == pytest.approx(min(row["caps"].values()))


def test_projection_balances_acceptors_and_workers() -> None:
    from benchmarks.projection import cpu_classes, project

    classes = cpu_classes(
        {"supervisor": 0.0, "acceptor 0": 0.5, "acceptor 1": 0.5, "worker 0": 0.25, "worker 1": 0.25},
        client=1.5,
    )
    assert (classes["acceptors"], classes["workers"], classes["client"]) == (1.0, 0.5, 1.5)
    result = project(classes, redis_rate=150_000)
    by_n = {row["cores"]: row for row in result["cores"]}
    # a : w = 2 : 1, so 16 cores split 10 + 6 (11 + 5 would starve the workers):
    # min(10 x 100000, 6 x 200000) = 1,000,000 req/s, the acceptors saturate first.
    assert (by_n[16]["acceptors"], by_n[16]["shards"]) == (10, 6)
    assert by_n[16]["rps"] == pytest.approx(1_000_000)
    assert by_n[16]["saturates"] == "acceptors"
    assert by_n[16]["ideal_rps"] == pytest.approx(16 * 100_000 / 1.5)
    assert result["vs_redis_at_target_cores"] == pytest.approx(1_000_000 / 150_000)
    assert result["target_met"]
    assert by_n[2]["rps"] == pytest.approx(100_000)  # 1 + 1: one acceptor's core
    # Measured with 50 clients x -P 1 over 2 x 2 pipes: 12.5 requests in flight per pipe;
    # 10 x 6 pipes need 60 x 12.5 = 750 clients at -P 1 to keep that.
    loaded = project(classes, redis_rate=150_000, load=(50, 1, 2, 2))
    assert {row["cores"]: row["clients_needed"] for row in loaded["cores"]}[16] == 750
    # A busy supervisor is a serial ceiling whatever the core count.
    busy = project(cpu_classes({"supervisor": 0.4, "acceptor": 1.0, "worker 0": 0.5}), redis_rate=None)
    assert max(row["rps"] for row in busy["cores"]) == pytest.approx(250_000)
    assert busy["cores"][-1]["saturates"] == "serial"
    assert not busy["target_met"]


@pytest.mark.timeout(200)
def test_scaling_script_runs_the_acceptor_by_shard_grid_beside_redis(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [sys.executable, "benchmarks/scaling.py", "--acceptors", "1,2", "--shards", "1,2"]
    argv += ["--pipelines", "1,8", "--with-redis", "--requests", "1500", "--processes", "1"]
    argv += ["--connections", "2", "--keys", "50", "--budget", "150", "--out", str(out)]
    done = run_dying_with_us(argv, cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "N=16: K=" in done.stdout  # the projection's arithmetic

    report = json.loads((out / "scaling.json").read_text())
    points = {(p["server"], p["pipeline"]): p for p in report["points"]}
    servers = ("redis", "shardkv-1", "shardkv-2", "shardkv-1-a2", "shardkv-2-a2")
    assert set(points) == {(s, p) for s in servers for p in (1, 8)}
    for (server, pipeline), point in points.items():
        assert point["ok"] and point["throughput"] > 0
        assert (point["errors"], point["lost"], point["wrong"]) == (0, 0, 0)
        redis = points[("redis", pipeline)]
        assert point["vs_redis"] == pytest.approx(point["throughput"] / redis["throughput"])
        if server == "redis":
            continue
        one = points[(f"shardkv-{point['shards']}", pipeline)]
        assert point["vs_one_acceptor"] == pytest.approx(point["throughput"] / one["throughput"])
        classes = point["cpu_classes"]
        assert len(classes["per_acceptor"]) == point["acceptors"]
        assert len(classes["per_worker"]) == point["shards"]
        assert classes["client"] > 0
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scaling_script_skips_what_the_time_budget_leaves_no_room_for(tmp_path: Path) -> None:
    argv = [sys.executable, "benchmarks/scaling.py", "--acceptors", "1,2", "--shards", "2"]
    argv += ["--with-redis", "--budget", "2", "--out", str(tmp_path)]
    done = run_dying_with_us(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1  # points were left out
    report = json.loads((tmp_path / "scaling.json").read_text())
    assert [p["error"] for p in report["points"]] == ["skipped: time budget"] * 3
