"""Raw-socket helpers: send exact bytes, read exactly what comes back.

The hardening tests compare shardkv and redis-server byte for byte, and
whether each closed the connection, so they cannot go through redis-py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import time

from tests.support.resp import reply_end

# How long a reply that must come may take to come whole: a loaded machine
# (CI's two shared cores) has delayed one past the 0.3 s or 0.5 s of quiet
# the tests waited for, which then read nothing, or only its first part.
REPLY_WAIT = 20.0


def exchange(
    port: int, data: bytes, idle: float = 0.5, host: str = "127.0.0.1", want: int = 1
) -> tuple[bytes, bool]:
    """Send ``data``; return what came back until the server closed the
    connection or, once ``want`` bytes came, stayed quiet for ``idle``
    seconds; and whether it closed.  A reply must come (``want=0`` where
    none may; more where a reply comes in parts)."""
    with socket.create_connection((host, port), timeout=10) as s:
        if data:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
        return read_until_quiet(s, idle, want=want)


def read_until_quiet(
    s: socket.socket, idle: float = 0.5, first: float | None = None, want: int = 0, until: bytes = b""
) -> tuple[bytes, bool]:
    """What comes until the peer closes or stays quiet for ``idle`` seconds,
    and whether it closed.  The quiet counts only once ``want`` bytes, and
    ``until``, came, or after :data:`REPLY_WAIT` seconds without them: for
    replies that must come, which a loaded machine can delay past ``idle``.
    ``first`` is ``want=1`` with a bound of its own."""
    if first is not None:
        want = max(want, 1)
    deadline = time.monotonic() + (REPLY_WAIT if first is None else first)
    out = b""
    while True:
        waiting = (len(out) < want or until not in out) and (left := deadline - time.monotonic()) > 0
        s.settimeout(left if waiting else idle)
        try:
            chunk = s.recv(1 << 16)
        except TimeoutError:
            if waiting:
                continue
            return out, False
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk


def read_through(s: socket.socket, last: bytes, timeout: float = REPLY_WAIT) -> tuple[bytes, bool]:
    """What comes through the first whole RESP frame (a reply or a push)
    whose bytes are ``last``, or until the peer closes, and whether it
    closed; what came by then if ``timeout`` seconds pass first.  It waits
    for no quiet: for sessions whose last reply is known (an ``ECHO end``),
    which a loaded machine cannot cut short, and which end as soon as it
    comes.  Bytes that came with that frame, after it, are kept."""
    deadline = time.monotonic() + timeout
    out = b""
    start = 0  # of the first frame not yet scanned
    while True:
        while (end := reply_end(out, start)) != -1:
            if out[start:end] == last:
                return out, False
            start = end
        left = deadline - time.monotonic()
        if left <= 0:
            return out, False
        s.settimeout(left)
        try:
            chunk = s.recv(1 << 16)
        except TimeoutError:
            return out, False
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk


def exchange_many(port: int, inputs: list[bytes], idle: float = 0.5) -> list[tuple[bytes, bool]]:
    """:func:`exchange` for many inputs at once, one connection each."""

    async def one(data: bytes) -> tuple[bytes, bool]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            pass
        out = b""
        closed = False
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(1 << 16), idle)
                if not chunk:
                    closed = True
                    break
                out += chunk
        except TimeoutError:
            pass
        except ConnectionError:
            closed = True
        writer.close()
        return out, closed

    async def run() -> list[tuple[bytes, bool]]:
        results = []
        for i in range(0, len(inputs), 100):  # at most 100 connections at a time
            results += await asyncio.gather(*(one(d) for d in inputs[i : i + 100]))
        return results

    return asyncio.run(run())


def both(
    ports, data: bytes, idle: float = 0.5, want: int = 1
) -> tuple[tuple[bytes, bool], tuple[bytes, bool]]:
    """The same exchange with redis-server and with shardkv, at once:
    shardkv must send (however slowly) at least as many bytes as
    redis-server did, then stay quiet for ``idle`` (or close), as in
    :func:`exchange`.  ``want=0`` where no reply may come: then neither
    read waits :data:`REPLY_WAIT` for one, only ``idle`` of quiet.  (The
    two quiet waits overlap: shardkv's ends once redis-server's has.)
    Not for exchanges where shardkv's reply is shorter by design, as
    ``HELLO 3``'s is (its version is 7.4.0, Redis's 7.0.15): each then waits
    the whole :data:`REPLY_WAIT`; read those through a known last reply
    (:func:`read_through`)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        real = pool.submit(exchange, ports["redis"], data, idle, want=want)
        with socket.create_connection(("127.0.0.1", ports["shardkv"]), timeout=10) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
            ours = _read_past(s, idle, want, real)
        return real.result(), ours


def _read_past(
    s: socket.socket, idle: float, want: int, real: concurrent.futures.Future[tuple[bytes, bool]]
) -> tuple[bytes, bool]:
    """:func:`read_until_quiet` on ``s``, with ``want`` raised to the length
    of ``real``'s reply once ``real`` (redis-server's exchange) is done: what
    came until the peer closed or, once that much came and ``real`` was done,
    stayed quiet for ``idle`` seconds; and whether it closed."""
    deadline = time.monotonic() + REPLY_WAIT
    out = b""
    last = time.monotonic()  # of the last bytes, or of the start
    while True:
        now = time.monotonic()
        if real.done():
            need = max(want, len(real.result()[0]))
            if (len(out) >= need or now > deadline) and now - last >= idle:
                return out, False
            s.settimeout(max(0.001, min(0.05, last + idle - now)) if len(out) >= need else 0.05)
        else:
            s.settimeout(0.05)
        try:
            chunk = s.recv(1 << 16)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return out, True
        if not chunk:
            return out, True
        out += chunk
        last = time.monotonic()


def both_after(ports, data: bytes, marker: bytes, idle: float = 0.5) -> tuple[bytes, bytes]:
    """What each server, redis-server then shardkv, sent after ``marker``
    (a reply in the exchange), for replies that differ before it (HELLO's
    version and client id): shardkv's whole reply need not be as long as
    Redis's, so its read waits, however slowly, until Redis's replies after
    the marker have come, then for ``idle`` of quiet."""
    real, _ = exchange(ports["redis"], data, idle)
    assert marker in real, real[:200]
    tail = marker + real.split(marker, 1)[1]
    with socket.create_connection(("127.0.0.1", ports["shardkv"]), timeout=10) as s:
        s.sendall(data)
        ours, _ = read_until_quiet(s, idle, want=1, until=tail)
    return tail, (marker + ours.split(marker, 1)[1] if marker in ours else ours)


def wait_closed(s: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``s`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if not s.recv(1 << 16):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False
