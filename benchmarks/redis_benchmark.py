"""Run `redis-benchmark` against one server and parse its CSV output.

Each call runs a single `-t` test so the CPU time the server's processes spend
can be attributed to that test alone.
"""

from __future__ import annotations

import csv
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass, field

from tests.support.servers import HOST, ServerProcess


@dataclass
class BenchmarkRow:
    """One CSV row: a test name as redis-benchmark prints it and its figures."""

    name: str
    rps: float
    avg_ms: float
    p50_ms: float
    p99_ms: float


@dataclass
class BenchmarkRun:
    """The outcome of one redis-benchmark invocation against one server."""

    test: str
    pipeline: int
    requests: int
    clients: int
    keyspace: int
    rows: list[BenchmarkRow]
    cpu_seconds: dict[str, float]  # role -> CPU seconds spent during the run
    wall_seconds: float
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    client_cpu_seconds: float = 0.0  # redis-benchmark's own user+sys during the run

    @property
    def total_requests(self) -> int:
        """Requests sent: `-n` for each test the run reported (MSET and LRANGE_* count as one each)."""
        return self.requests * max(1, len(self.rows))

    def cpu_per_100k(self) -> dict[str, float]:
        """CPU seconds per 100,000 requests for each server process (none if the run failed)."""
        if not self.rows:
            return {}
        return {role: secs * 100_000 / self.total_requests for role, secs in self.cpu_seconds.items()}

    def client_cpu_per_100k(self) -> float:
        """redis-benchmark's CPU seconds per 100,000 requests (0 if the run failed)."""
        return self.client_cpu_seconds * 100_000 / self.total_requests if self.rows else 0.0


def redis_benchmark_path() -> str:
    """Locate redis-benchmark or explain how to install it."""
    path = shutil.which("redis-benchmark")
    if path is None:
        raise FileNotFoundError("redis-benchmark not found; apt-get install -y redis-tools")
    return path


def run_redis_benchmark(
    server: ServerProcess,
    test: str,
    pipeline: int,
    requests: int,
    clients: int = 50,
    keyspace: int = 100_000,
    timeout: float | None = None,
) -> BenchmarkRun:
    """Run `redis-benchmark ... -t TEST -P PIPELINE --csv -q` and measure server and client CPU.

    The client's CPU is the growth of RUSAGE_CHILDREN across the run: the
    only child reaped meanwhile is redis-benchmark (the servers are children
    too, but they are still running, and only reaped children count).
    """
    argv = [redis_benchmark_path(), "-h", HOST, "-p", str(server.port), "-c", str(clients)]
    argv += ["-r", str(keyspace), "-n", str(requests), "-t", test, "-P", str(pipeline), "--csv", "-q"]
    # Generous: a 2 k requests/s server still finishes; a hung one does not stall the run forever.
    timeout = timeout or max(120.0, requests / 2000)
    roles = server.roles()
    before = server.cpu_times()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    errors: list[str] = []
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        stdout, stderr, status = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        stdout, stderr, status = exc.stdout or b"", exc.stderr or b"", None
        errors.append(f"redis-benchmark timed out after {timeout:.0f}s")
    wall = time.monotonic() - started
    after = server.cpu_times()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    rows, notes = parse_csv(stdout.decode(errors="replace"))
    errors += notes
    warnings: list[str] = []
    for line in stderr.decode(errors="replace").splitlines():
        # "WARNING: Could not fetch server CONFIG" is harmless: the server's CONFIG GET
        # reply had no save/appendonly pairs, so redis-benchmark skips its persistence notice.
        (warnings if line.startswith("WARNING") else errors).append(line.strip())
    errors = [line for line in errors if line]
    if status not in (0, None):
        errors.append(f"redis-benchmark exited with status {status}")
    if not rows:
        errors.append(f"no results for test {test!r}")
    roles.update({pid: role for pid, role in server.roles().items() if pid not in roles})
    cpu: dict[str, float] = {}
    for pid, secs in after.items():
        role = roles.get(pid, f"pid {pid}")
        cpu[role] = cpu.get(role, 0.0) + secs - before.get(pid, 0.0)
    return BenchmarkRun(
        test, pipeline, requests, clients, keyspace, rows, cpu, wall, errors, warnings, client_cpu
    )


def parse_csv(text: str) -> tuple[list[BenchmarkRow], list[str]]:
    """Split redis-benchmark --csv output into result rows and any other lines."""
    rows: list[BenchmarkRow] = []
    notes: list[str] = []
    csv_lines = []
    for line in text.splitlines():
        if line.startswith('"'):
            csv_lines.append(line)
        elif line.strip():
            notes.append(line.strip())
    for record in csv.DictReader(csv_lines):
        try:
            rows.append(
                BenchmarkRow(
                    name=record["test"],
                    rps=float(record["rps"]),
                    avg_ms=float(record.get("avg_latency_ms") or 0),
                    p50_ms=float(record.get("p50_latency_ms") or 0),
                    p99_ms=float(record.get("p99_latency_ms") or 0),
                )
            )
        except (KeyError, ValueError):
            notes.append(f"unparsed CSV row: {record}")
    return rows, notes
