"""Raw-socket helpers: send exact bytes, read exactly what comes back.

The hardening tests compare shardkv and redis-server byte for byte, and
whether each closed the connection, so they cannot go through redis-py.
"""

from __future__ import annotations

import asyncio
import socket
import time


def exchange(port: int, data: bytes, idle: float = 0.5, host: str = "127.0.0.1") -> tuple[bytes, bool]:
    """Send ``data``; return what came back until the server closed the
    connection or stayed quiet for ``idle`` seconds, and whether it closed."""
    with socket.create_connection((host, port), timeout=10) as s:
        if data:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass
        return read_until_quiet(s, idle)


def read_until_quiet(s: socket.socket, idle: float = 0.5, first: float | None = None) -> tuple[bytes, bool]:
    """What comes until the peer closes or stays quiet for ``idle`` seconds,
    and whether it closed.  With ``first``, wait up to that long for the
    first bytes: for a reply that must come, which a loaded machine can
    delay past ``idle``."""
    out = b""
    s.settimeout(idle if first is None else first)
    try:
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                return out, True
            out += chunk
            s.settimeout(idle)
    except TimeoutError:
        return out, False
    except ConnectionResetError:
        return out, True


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


def both(ports, data: bytes, idle: float = 0.5) -> tuple[tuple[bytes, bool], tuple[bytes, bool]]:
    """The same exchange with redis-server and with shardkv, at once."""
    import concurrent.futures

    real_port, our_port = ports["redis"], ports["shardkv"]  # start them here, not in a thread
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        real = pool.submit(exchange, real_port, data, idle)
        ours = pool.submit(exchange, our_port, data, idle)
        return real.result(), ours.result()


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
