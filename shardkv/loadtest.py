"""Multi-core load test with correctness checks for any Redis-compatible server.

Run: shardkv-loadtest --port P [--processes K] [--connections M]
                        [--requests N | --duration S] [--pipeline D]

(the console script that ``pip install -e .`` installs; ``python -m
shardkv.loadtest`` is the same without installing).

K client processes each drive M connections with pipelined raw RESP, D
commands per round trip. The mix is SET and GET of keys the connection owns
plus INCR of a few counters every process shares:

* Keys are `lt:RUN:PROC:N`: no `{hash tag}`, so they spread over every hash
  slot, and a fresh run id keeps runs from colliding. Each key belongs to one
  connection, so its commands arrive in a known order and every GET has one
  right answer: the value of the last SET sent before it, or nil.
* After the timed phase each connection reads back every key it owns.
* Every acknowledged INCR is counted; at the end each counter must equal the
  sum of acknowledged increments from all processes.

A GET answered nil where a value was written counts as *lost*, any other
mismatch as *wrong*, and error replies, dropped connections and stalls as
*errors*. The exit status is 1 if any of them is non-zero.

The module uses only the standard library (hiredis speeds up reply parsing if
installed) and imports nothing from the server, so it can test any server.
Tests call `run(...)` directly with small numbers.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import random
import selectors
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

try:
    import hiredis
except ImportError:  # pragma: no cover - exercised only without hiredis
    hiredis = None  # type: ignore[assignment]

DEFAULT_REQUESTS = 100_000
START_TIMEOUT = 120.0  # seconds for client processes to start and connect
SAMPLE_CAP = 50_000  # latency samples kept per process (reservoir sampling)
ERROR_SAMPLES = 5  # error messages kept per process
VERIFY_BATCH = 1_000

SET, GET, INCR, DEL = range(4)
# (op, key or counter index, expected value): the key is bytes, or for INCR
# an int, an index into the counters (Any: the checker cannot tell by op).
Expectation = tuple[int, Any, bytes | None]


class ReplyError(Exception):
    """An error reply (`-ERR ...`) from the server; returned by readers, never raised."""


class _Incomplete(Exception):
    """The buffer does not yet hold a whole reply."""


class PyReplyReader:
    """Incremental RESP reply parser with hiredis.Reader's feed()/gets() interface."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.pos = 0

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self.pos > 65536:
            del self.buffer[: self.pos]
            self.pos = 0
        self.buffer += data

    def gets(self) -> Any:
        """Return the next whole reply, or False if more bytes are needed."""
        try:
            value, self.pos = self._parse(self.pos)
        except _Incomplete:
            return False
        return value

    def _line(self, pos: int) -> tuple[bytes, int]:
        end = self.buffer.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete
        return bytes(self.buffer[pos:end]), end + 2

    def _parse(self, pos: int) -> tuple[Any, int]:
        line, pos = self._line(pos)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest, pos
        if kind == b"-":
            return ReplyError(rest.decode(errors="replace")), pos
        if kind == b":":
            return int(rest), pos
        if kind == b"_":
            return None, pos
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None, pos
            if len(self.buffer) < pos + size + 2:
                raise _Incomplete
            return bytes(self.buffer[pos : pos + size]), pos + size + 2
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return None, pos
            items = []
            for _ in range(count):
                item, pos = self._parse(pos)
                items.append(item)
            return items, pos
        raise ConnectionError(f"unexpected reply line {line[:40]!r}")


def make_reader() -> Any:
    """A hiredis reader if hiredis is installed, else the pure-Python one."""
    if hiredis is not None:
        return hiredis.Reader(replyError=ReplyError)
    return PyReplyReader()


def encode(*args: bytes) -> bytes:
    """Encode one command as a RESP array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args)


@dataclass
class LoadConfig:
    """Everything one load test run needs; shared by all client processes."""

    host: str = "127.0.0.1"
    port: int = 6379
    processes: int = 1
    connections: int = 8
    requests: int | None = None
    duration: float | None = None
    pipeline: int = 16
    keys: int = 1_000  # keys per process, split over its connections
    counters: int = 4
    value_size: int = 32
    incr_share: float = 0.1
    set_share: float = 0.4
    run_id: str = ""
    timeout: float = 30.0  # seconds without any reply before a connection counts as stalled
    cleanup: bool = False

    def key(self, process: int, number: int) -> bytes:
        """Name of key `number` owned by client process `process`."""
        return f"lt:{self.run_id}:{process}:{number}".encode()

    def counter(self, index: int) -> bytes:
        """Name of shared counter `index`."""
        return f"lt:{self.run_id}:ctr:{index}".encode()


@dataclass
class ProcessStats:
    """What one client process saw; sent back to the parent when it finishes."""

    process: int
    ops: int = 0
    batches: int = 0
    errors: int = 0
    lost: int = 0
    wrong: int = 0
    verified: int = 0
    started: float = 0.0
    finished: float = 0.0
    incr_acked: list[int] = field(default_factory=list)
    incr_unknown: list[int] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    samples: list[tuple[float, int]] = field(default_factory=list)  # (batch RTT seconds, batch size)

    def error(self, message: str, count: int = 1) -> None:
        """Count `count` errors and keep the first few messages."""
        self.errors += count
        if len(self.error_samples) < ERROR_SAMPLES:
            self.error_samples.append(f"process {self.process}: {message}")


@dataclass
class LoadResult:
    """The merged outcome of a load test run."""

    run_id: str
    processes: int
    connections: int
    pipeline: int
    ops: int
    seconds: float
    throughput: float
    batch_p50_ms: float
    batch_p99_ms: float
    op_p50_ms: float
    op_p99_ms: float
    errors: int
    lost: int
    wrong: int
    verified: int
    counter_mismatches: int
    counters: dict[str, dict[str, int]]
    error_samples: list[str]

    @property
    def ok(self) -> bool:
        """True when nothing failed, was lost or read back wrong."""
        return not (self.errors or self.lost or self.wrong or self.counter_mismatches)

    def summary(self) -> str:
        """One line for humans and logs."""
        return (
            f"loadtest {'PASS' if self.ok else 'FAIL'}: {self.ops} ops in {self.seconds:.2f}s"
            f" = {self.throughput:,.0f} ops/s"
            f" | {self.processes}x{self.connections} conns, pipeline {self.pipeline}"
            f" | batch p50 {self.batch_p50_ms:.2f} ms p99 {self.batch_p99_ms:.2f} ms"
            f" | per op p50 {self.op_p50_ms:.3f} ms p99 {self.op_p99_ms:.3f} ms"
            f" | errors {self.errors} lost {self.lost} wrong {self.wrong}"
            f" counter mismatches {self.counter_mismatches} | verified {self.verified} keys"
        )


class _Connection:
    """One client connection: its socket, reply parser, owned keys and pending replies."""

    def __init__(self, config: LoadConfig, process: int, index: int) -> None:
        self.sock = socket.create_connection((config.host, config.port), timeout=config.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = make_reader()
        self.keys = [config.key(process, n) for n in range(index, config.keys, config.connections)]
        self.expected: dict[bytes, bytes | None] = dict.fromkeys(self.keys)
        self.uncertain: set[bytes] = set()  # keys whose state an error left unknown
        self.pending: deque[Expectation] = deque()
        self.queued: deque[list[Expectation]] = deque()  # untimed batches sent one at a time
        self.batch_started = 0.0
        self.batch_size = 0
        self.open = True
        self.seq = 0

    def close(self) -> None:
        """Close the socket."""
        self.open = False
        self.sock.close()


class _ClientProcess:
    """The event loop of one client process: M connections over one selector."""

    def __init__(self, config: LoadConfig, process: int, budget: int | None) -> None:
        self.config = config
        self.process = process
        self.budget = budget  # commands left to send; None when bounded by duration only
        self.stats = ProcessStats(
            process, incr_acked=[0] * config.counters, incr_unknown=[0] * config.counters
        )
        self.rng = random.Random(f"{config.run_id}:{process}")
        self.counters = [config.counter(i) for i in range(config.counters)]
        self.seen_batches = 0
        self.deadline: float | None = None
        self.connections: list[_Connection] = []
        self.selector = selectors.DefaultSelector()

    def connect(self) -> None:
        """Open all connections (before the start barrier, so connecting is not timed)."""
        for index in range(self.config.connections):
            self.connections.append(_Connection(self.config, self.process, index))

    def run(self) -> ProcessStats:
        """The timed phase, then read-back of every owned key, then optional cleanup."""
        stats = self.stats
        stats.started = time.monotonic()
        if self.config.duration is not None:
            self.deadline = stats.started + self.config.duration
        with self.selector:
            for conn in self.connections:
                conn.sock.setblocking(False)
                self.selector.register(conn.sock, selectors.EVENT_READ, conn)
                self._send_batch(conn)
            self._loop(timed=True)
            stats.finished = time.monotonic()
            self._untimed(verify=True)
            if self.config.cleanup:
                self._untimed(verify=False)
        for conn in self.connections:
            if conn.open:
                conn.close()
        return stats

    def _loop(self, timed: bool) -> None:
        last_progress = time.monotonic()
        while any(conn.open and conn.pending for conn in self.connections):
            events = self.selector.select(timeout=1.0)
            now = time.monotonic()
            if not events and now - last_progress > self.config.timeout:
                for conn in self.connections:
                    if conn.open and conn.pending:
                        self._abandon(conn, f"no reply for {self.config.timeout:.0f}s")
                continue
            for key, _ in events:
                conn = key.data
                if self._receive(conn, timed):
                    last_progress = now
                if not conn.open or conn.pending:
                    continue
                if timed:
                    self.stats.batches += 1
                    self._sample(now - conn.batch_started, conn.batch_size)
                    self._send_batch(conn)
                elif conn.queued:
                    self._send(conn, conn.queued.popleft())

    def _sample(self, rtt: float, size: int) -> None:
        self.seen_batches += 1
        samples = self.stats.samples
        if len(samples) < SAMPLE_CAP:
            samples.append((rtt, size))
        else:
            slot = self.rng.randrange(self.seen_batches)
            if slot < SAMPLE_CAP:
                samples[slot] = (rtt, size)

    def _send_batch(self, conn: _Connection) -> None:
        size = self.config.pipeline
        if self.budget is not None:
            size = min(size, self.budget)
            self.budget -= size
        if self.deadline is not None and time.monotonic() >= self.deadline:
            size = 0
        if size <= 0:
            return
        rng, config = self.rng, self.config
        batch: list[Expectation] = []
        for _ in range(size):
            draw = rng.random()
            if draw < config.incr_share:
                batch.append((INCR, rng.randrange(config.counters), None))
                continue
            key = rng.choice(conn.keys)
            if draw < config.incr_share + config.set_share:
                conn.seq += 1
                value = self._value(key, conn.seq)
                conn.expected[key] = value
                batch.append((SET, key, value))
            else:
                batch.append((GET, key, conn.expected[key]))
        conn.batch_started = time.monotonic()
        conn.batch_size = size
        self._send(conn, batch)

    def _value(self, key: bytes, seq: int) -> bytes:
        value = b"%s=%d:" % (key, seq)
        return value + b"x" * (self.config.value_size - len(value))

    def _send(self, conn: _Connection, batch: list[Expectation]) -> None:
        parts = []
        for op, key, value in batch:
            if op == SET:
                parts.append(encode(b"SET", key, value))  # type: ignore[arg-type]  # a SET has a value
            elif op == GET:
                parts.append(encode(b"GET", key))
            elif op == INCR:
                parts.append(encode(b"INCR", self.counters[key]))
            else:
                parts.append(encode(b"DEL", key))
        conn.pending.extend(batch)
        payload = b"".join(parts)
        # A batch is small, so blocking briefly for the send is simpler than write events.
        conn.sock.settimeout(self.config.timeout)
        try:
            conn.sock.sendall(payload)
        except OSError as exc:
            self._abandon(conn, f"send failed: {exc}")
            return
        finally:
            if conn.open:
                conn.sock.setblocking(False)

    def _receive(self, conn: _Connection, timed: bool) -> bool:
        try:
            data = conn.sock.recv(262_144)
        except BlockingIOError:
            return False
        except OSError as exc:
            self._abandon(conn, f"recv failed: {exc}")
            return False
        if not data:
            self._abandon(conn, "server closed the connection")
            return False
        conn.reader.feed(data)
        while (reply := conn.reader.gets()) is not False:
            if not conn.pending:
                self._abandon(conn, f"reply without a command: {reply!r:.60}")
                return False
            self._check(conn, conn.pending.popleft(), reply, timed)
        return True

    def _check(self, conn: _Connection, expectation: Expectation, reply: Any, timed: bool) -> None:
        op, key, expected = expectation
        stats = self.stats
        if timed:
            stats.ops += 1
        if op == INCR:
            if isinstance(reply, int) and not isinstance(reply, bool):
                stats.incr_acked[key] += 1
            else:
                stats.error(f"INCR: {reply!r:.80}")
                if not isinstance(reply, ReplyError):
                    stats.incr_unknown[key] += 1
            return
        if isinstance(reply, ReplyError):
            stats.error(f"{('SET', 'GET', 'INCR', 'DEL')[op]} {key!r}: {reply}")
            if op == SET:
                conn.uncertain.add(key)
            return
        if op == SET:
            if reply != b"OK":
                stats.error(f"SET {key!r}: unexpected reply {reply!r:.80}")
                conn.uncertain.add(key)
        elif op == GET:
            if not timed:
                stats.verified += 1
            if key in conn.uncertain:
                return
            if reply is None and expected is not None:
                stats.lost += 1
                stats.error_samples.append(f"lost: GET {key!r} -> nil, expected {expected!r}")
            elif reply != expected:
                stats.wrong += 1
                stats.error_samples.append(f"wrong: GET {key!r} -> {reply!r:.80}, expected {expected!r}")
            del stats.error_samples[ERROR_SAMPLES:]

    def _untimed(self, verify: bool) -> None:
        """Read back (verify) or DEL every owned key, VERIFY_BATCH commands per round trip."""
        for conn in self.connections:
            if not conn.open:
                continue
            if verify:
                commands = [(GET, key, conn.expected[key]) for key in conn.keys]
            else:
                commands = [(DEL, key, None) for key in conn.keys]
            conn.queued.extend(commands[i : i + VERIFY_BATCH] for i in range(0, len(commands), VERIFY_BATCH))
            if conn.queued:
                self._send(conn, conn.queued.popleft())
        self._loop(timed=False)

    def _abandon(self, conn: _Connection, reason: str) -> None:
        """Give up on a connection; whatever it still awaited is now unknown."""
        if not conn.open:
            return
        self.stats.error(reason, max(1, len(conn.pending)))
        for op, key, _ in conn.pending:
            if op == INCR:
                self.stats.incr_unknown[key] += 1
            elif op == SET:
                conn.uncertain.add(key)
        conn.pending.clear()
        conn.queued.clear()
        try:
            self.selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.close()


def _client_main(
    config: LoadConfig, process: int, budget: int | None, ready: Any, start: Any, results: Any
) -> None:
    """Entry point of one client process: connect, report ready, wait for the start signal, run."""
    client = _ClientProcess(config, process, budget)
    try:
        client.connect()
    except OSError as exc:
        client.stats.error(f"connect failed: {exc}")
    ready.put(process)
    if not start.wait(timeout=START_TIMEOUT):
        client.stats.error("no start signal from the parent")
    try:
        if client.stats.errors == 0:
            client.run()
    except Exception as exc:  # noqa: BLE001 - report any crash rather than hang the parent
        client.stats.error(f"client crashed: {exc!r}")
    results.put(client.stats)


def _split(total: int | None, parts: int) -> list[int | None]:
    if total is None:
        return [None] * parts
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _read_counters(config: LoadConfig) -> list[int | None]:
    """GET every shared counter over a plain blocking connection (None if unreadable)."""
    values: list[int | None] = []
    with socket.create_connection((config.host, config.port), timeout=config.timeout) as sock:
        reader = make_reader()
        for index in range(config.counters):
            sock.sendall(encode(b"GET", config.counter(index)))
            while (reply := reader.gets()) is False:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("server closed the connection")
                reader.feed(data)
            values.append(0 if reply is None else int(reply) if isinstance(reply, bytes) else None)
        if config.cleanup:
            for index in range(config.counters):
                sock.sendall(encode(b"DEL", config.counter(index)))
                while reader.gets() is False:
                    reader.feed(sock.recv(65536))
    return values


def run(
    port: int,
    host: str = "127.0.0.1",
    processes: int | None = None,
    connections: int = 8,
    requests: int | None = None,
    duration: float | None = None,
    pipeline: int = 16,
    keys: int = 1_000,
    counters: int = 4,
    value_size: int = 32,
    run_id: str | None = None,
    timeout: float = 30.0,
    cleanup: bool = False,
    progress: bool = False,
) -> LoadResult:
    """Run the load test and return the merged result (see the module docstring).

    Bounded by `requests` (total over all processes), by `duration` seconds,
    or by whichever comes first if both are given; with neither it sends
    100,000 requests.
    """
    if requests is None and duration is None:
        requests = DEFAULT_REQUESTS
    config = LoadConfig(
        host=host,
        port=port,
        processes=processes or os.cpu_count() or 1,
        connections=max(1, connections),
        requests=requests,
        duration=duration,
        pipeline=max(1, pipeline),
        keys=max(keys, connections, 1),  # every connection owns at least one key
        counters=max(1, counters),
        value_size=value_size,
        run_id=run_id or uuid.uuid4().hex[:10],
        timeout=timeout,
        cleanup=cleanup,
    )
    context = multiprocessing.get_context("spawn")
    ready, start, results = context.Queue(), context.Event(), context.Queue()
    workers = [
        context.Process(target=_client_main, args=(config, i, budget, ready, start, results), daemon=True)
        for i, budget in enumerate(_split(config.requests, config.processes))
    ]
    for worker in workers:
        worker.start()
    parent_errors: list[str] = []
    _await_ready(workers, ready, parent_errors)
    start.set()
    began = time.monotonic()
    stats = _collect(workers, results, parent_errors, progress, began)
    for worker in workers:
        worker.join(timeout=5)
        if worker.is_alive():
            worker.terminate()
            worker.join()
    return _merge(config, stats, parent_errors)


def _await_ready(workers: list[Any], ready: Any, errors: list[str]) -> None:
    """Wait until every client process has connected, or died, or START_TIMEOUT passed."""
    waiting = set(range(len(workers)))
    deadline = time.monotonic() + START_TIMEOUT
    while waiting and time.monotonic() < deadline:
        try:
            waiting.discard(ready.get(timeout=0.2))
        except queue.Empty:
            dead = {i for i in waiting if not workers[i].is_alive()}
            if dead:
                errors.append(f"client process(es) {sorted(dead)} died before starting")
                waiting -= dead
    if waiting:
        errors.append(f"client process(es) {sorted(waiting)} not ready after {START_TIMEOUT:.0f}s")


def _collect(
    workers: list[Any], results: Any, errors: list[str], progress: bool, began: float
) -> list[ProcessStats]:
    stats: list[ProcessStats] = []
    next_report = began + 5
    while len(stats) < len(workers):
        try:
            stats.append(results.get(timeout=1.0))
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                try:
                    stats.append(results.get(timeout=2.0))
                    continue
                except queue.Empty:
                    errors.append(f"{len(workers) - len(stats)} client process(es) died without a result")
                    break
        if progress and time.monotonic() >= next_report:
            print(
                f"loadtest: {time.monotonic() - began:.0f}s elapsed, "
                f"{len(stats)}/{len(workers)} processes done",
                file=sys.stderr,
            )
            next_report += 5
    return stats


def _merge(config: LoadConfig, stats: list[ProcessStats], parent_errors: list[str]) -> LoadResult:
    ops = sum(s.ops for s in stats)
    timed = [s for s in stats if s.finished > s.started > 0]
    seconds = (max(s.finished for s in timed) - min(s.started for s in timed)) if timed else 0.0
    samples = [sample for s in stats for sample in s.samples]
    batch_ms = [rtt * 1000 for rtt, _ in samples]
    op_ms = [rtt * 1000 / size for rtt, size in samples]
    errors = sum(s.errors for s in stats) + len(parent_errors)
    error_samples = parent_errors + [m for s in stats for m in s.error_samples]
    counters: dict[str, dict[str, int]] = {}
    mismatches = 0
    try:
        values = _read_counters(config)
    except (OSError, ValueError) as exc:
        values = []  # already an error; no counter can be judged
        errors += 1
        error_samples.append(f"reading counters failed: {exc!r}")
    for index, value in enumerate(values):
        acked = sum(s.incr_acked[index] for s in stats)
        unknown = sum(s.incr_unknown[index] for s in stats)
        counters[config.counter(index).decode()] = {
            "value": -1 if value is None else value,
            "acknowledged": acked,
            "unknown": unknown,
        }
        if value is None or not acked <= value <= acked + unknown:
            mismatches += 1
            error_samples.append(
                f"counter {index}: value {value}, acknowledged increments {acked} (+{unknown} unknown)"
            )
    return LoadResult(
        run_id=config.run_id,
        processes=config.processes,
        connections=config.connections,
        pipeline=config.pipeline,
        ops=ops,
        seconds=seconds,
        throughput=ops / seconds if seconds else 0.0,
        batch_p50_ms=_percentile(batch_ms, 0.50),
        batch_p99_ms=_percentile(batch_ms, 0.99),
        op_p50_ms=_percentile(op_ms, 0.50),
        op_p99_ms=_percentile(op_ms, 0.99),
        errors=errors,
        lost=sum(s.lost for s in stats),
        wrong=sum(s.wrong for s in stats),
        verified=sum(s.verified for s in stats),
        counter_mismatches=mismatches,
        counters=counters,
        error_samples=error_samples[:20],
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="shardkv-loadtest",
        description="Multi-process pipelined load test with correctness checks for a Redis-compatible server.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="server address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, required=True, help="server port")
    parser.add_argument("--processes", type=int, default=None, help="client processes (default: CPU count)")
    parser.add_argument("--connections", type=int, default=8, help="connections per process (default 8)")
    parser.add_argument("--requests", type=int, default=None, help="total commands over all processes")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds to run (default: 100000 requests)"
    )
    parser.add_argument("--pipeline", type=int, default=16, help="commands per round trip (default 16)")
    parser.add_argument("--keys", type=int, default=1_000, help="keys written per process (default 1000)")
    parser.add_argument("--counters", type=int, default=4, help="shared INCR counters (default 4)")
    parser.add_argument("--value-size", type=int, default=32, help="bytes per value (default 32)")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds without a reply = stalled (default 30)"
    )
    parser.add_argument("--run-id", default=None, help="key prefix for this run (default: random)")
    parser.add_argument("--cleanup", action="store_true", help="DEL the keys written when done")
    parser.add_argument("--json", metavar="FILE", default=None, help="also write the result as JSON")
    options = parser.parse_args(argv)
    result = run(
        port=options.port,
        host=options.host,
        processes=options.processes,
        connections=options.connections,
        requests=options.requests,
        duration=options.duration,
        pipeline=options.pipeline,
        keys=options.keys,
        counters=options.counters,
        value_size=options.value_size,
        run_id=options.run_id,
        timeout=options.timeout,
        cleanup=options.cleanup,
        progress=True,
    )
    for message in result.error_samples:
        print(message, file=sys.stderr)
    print(result.summary())
    if options.json:
        with open(options.json, "w") as out:
            json.dump({**asdict(result), "ok": result.ok}, out, indent=2)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
