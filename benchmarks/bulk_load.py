"""Load many keys fast by streaming pipelined raw RESP SETs over one socket.

Keys are `key:%012d` (16 bytes), the names redis-benchmark's `-r` option
generates, so a preloaded keyspace is the one the benchmark then reads.
"""

from __future__ import annotations

import selectors
import socket
import time
from dataclasses import dataclass

KEY_FORMAT = b"key:%012d"  # 16 bytes, the same names as redis-benchmark's __rand_int__ keys
BATCH = 5_000


@dataclass
class LoadResult:
    """How many SETs were acknowledged with +OK, how many failed, and how fast."""

    keys: int
    ok: int
    errors: int
    first_error: str
    seconds: float

    @property
    def rate(self) -> float:
        """Keys loaded per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def set_commands(start: int, stop: int, value_size: int = 32, ttl: int | None = None) -> bytes:
    """RESP bytes for `SET key:N value [EX ttl]` for every N in [start, stop)."""
    if ttl is None:
        head = b"*3\r\n$3\r\nSET\r\n$16\r\n"
        tail = b"\r\n"
    else:
        ttl_arg = b"%d" % ttl
        head = b"*5\r\n$3\r\nSET\r\n$16\r\n"
        tail = b"\r\n$2\r\nEX\r\n$%d\r\n%s\r\n" % (len(ttl_arg), ttl_arg)
    value_head = b"\r\n$%d\r\n" % value_size
    value_format = b"%0" + str(value_size).encode() + b"d"
    return b"".join(
        head + KEY_FORMAT % n + value_head + (value_format % n)[-value_size:] + tail
        for n in range(start, stop)
    )


def load_keys(
    host: str,
    port: int,
    start: int,
    stop: int,
    value_size: int = 32,
    ttl: int | None = None,
    timeout: float = 60.0,
) -> LoadResult:
    """SET keys [start, stop) with `value_size`-byte values, pipelined in batches."""
    ok = errors = 0
    first_error = ""
    began = time.monotonic()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setblocking(False)
        with selectors.DefaultSelector() as selector:
            for batch_start in range(start, stop, BATCH):
                batch_stop = min(stop, batch_start + BATCH)
                replies = _exchange(
                    selector,
                    sock,
                    set_commands(batch_start, batch_stop, value_size, ttl),
                    batch_stop - batch_start,
                    timeout,
                )
                for line in replies:
                    if line == b"+OK":
                        ok += 1
                    else:
                        errors += 1
                        first_error = first_error or line.decode(errors="replace")
    return LoadResult(stop - start, ok, errors, first_error, time.monotonic() - began)


def _exchange(
    selector: selectors.BaseSelector, sock: socket.socket, payload: bytes, expected: int, timeout: float
) -> list[bytes]:
    """Write `payload` while reading replies, until `expected` one-line replies arrived.

    Writing and reading at once keeps a large batch from deadlocking when the
    server's reply buffer fills before it has read all of our commands.
    """
    view = memoryview(payload)
    sent = 0
    pending = b""
    lines: list[bytes] = []
    selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
    try:
        while len(lines) < expected:
            events = selector.select(timeout)
            if not events:
                raise TimeoutError(f"no progress for {timeout}s ({len(lines)}/{expected} replies)")
            _, mask = events[0]
            if mask & selectors.EVENT_WRITE and sent < len(payload):
                sent += sock.send(view[sent : sent + 262_144])
                if sent == len(payload):
                    selector.modify(sock, selectors.EVENT_READ)
            if mask & selectors.EVENT_READ:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("server closed the connection during the load")
                parts = (pending + chunk).split(b"\r\n")
                pending = parts.pop()
                lines.extend(parts)
    finally:
        selector.unregister(sock)
    if pending or len(lines) > expected:
        raise ConnectionError("more replies than commands; the server sent unexpected data")
    return lines
