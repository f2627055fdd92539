"""A client's query buffer as CLIENT LIST shows it (``qbuf``, ``qbuf-free``),
on both servers: a read's 16 KB, a big bulk's exact size, and the cron that
shrinks a buffer an idle or quieter client no longer needs (Redis's
``clientsCronResizeQueryBuffer``; the suite's unit/querybuf)."""

from __future__ import annotations

import re
import time

from tests.support.resp import RespClient


def _query_buffer(watcher: RespClient, name: str) -> tuple[int, int]:
    """``qbuf`` and ``qbuf-free`` of the client called ``name``."""
    listing = watcher.command("CLIENT", "LIST").decode()
    line = next(x for x in listing.splitlines() if f" name={name} " in x)
    return (
        int(re.search(r" qbuf=(\d+)", line).group(1)),  # type: ignore[union-attr]
        int(re.search(r" qbuf-free=(\d+)", line).group(1)),  # type: ignore[union-attr]
    )


def _total(watcher: RespClient, name: str) -> int:
    return sum(_query_buffer(watcher, name))


def test_a_read_gets_16k_and_an_idle_client_gives_it_back(server):
    with RespClient(server) as watcher, RespClient(server) as c:
        c.command("CLIENT", "SETNAME", "qb_idle")
        assert _query_buffer(watcher, "qb_idle")[0] == 0
        assert 16384 <= _total(watcher, "qb_idle") < 32768  # PROTO_IOBUF_LEN, with the allocator's slack
        deadline = time.monotonic() + 10
        while _total(watcher, "qb_idle") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _total(watcher, "qb_idle") == 0  # idle for more than 2 s: freed
        # A read gets one again, seen by the client itself while it runs...
        mine = c.command("CLIENT", "INFO").decode()
        qbuf = int(re.search(r" qbuf=(\d+)", mine).group(1))  # type: ignore[union-attr]
        qbuf_free = int(re.search(r" qbuf-free=(\d+)", mine).group(1))  # type: ignore[union-attr]
        assert qbuf == len(b"*2\r\n$6\r\nCLIENT\r\n$4\r\nINFO\r\n")
        assert 16384 <= qbuf + qbuf_free < 32768
        assert 16384 <= _total(watcher, "qb_idle") < 32768  # ... and by others after


def test_a_big_bulk_grows_the_buffer_and_small_commands_shrink_it(server):
    with RespClient(server) as watcher, RespClient(server) as c:
        c.command("CLIENT", "SETNAME", "qb_big")
        c.command("SET", "x", b"A" * 400_000)
        grown = _total(watcher, "qb_big")
        assert grown > 400_000  # sized for the bulk, read in one go
        deadline = time.monotonic() + 5
        while _total(watcher, "qb_big") >= grown and time.monotonic() < deadline:
            c.command("SET", "x", b"A" * 100)  # a lower peak: trimmed to it
            time.sleep(0.01)
        assert 0 < _total(watcher, "qb_big") < grown
