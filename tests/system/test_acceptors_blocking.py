"""A client seen blocked is woken by any write after it, with one or several
acceptors.

Redis blocks XREAD and resolves its ``$`` in one step, so once INFO or
CLIENT LIST shows the client blocked, an XADD from anyone must wake it.
With two acceptors, a write through the other acceptor can reach a shard
before the blocking command does: the command may wait behind a busy
worker (the single-shard case) or for its holds (across shards).  A
client then counted as blocked from the moment its acceptor sent the
command, the XADD ran first, ``$`` stood for the XADD's entry, and the
XREAD waited for the next one (``test_streams_blocking.py::
test_xread_block_dollar_wakes[shardkv-cross-shard]`` failed so in a
whole-suite run at ``SHARDKV_TEST_ACCEPTORS=2``).  Here a script keeps
shard 0 busy meanwhile, which makes that order certain; with one acceptor
(one global order) the same steps must give the same reply.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from shardkv.protocol.router import Router
from tests.support.resp import RespClient
from tests.support.servers import ServerProcess, start_shardkv

WAIT = 10.0  # seconds a test waits for something that must happen
# A script that keeps its shard busy for a fraction of a second (Lua's
# busy limit, 5 s, is far).
BUSY = "local i = 0 while i < 10000000 do i = i + 1 end return 1"


@pytest.fixture(scope="module", params=[1, 2], ids=["K=1", "K=2"])
def server(request) -> Iterator[ServerProcess]:
    proc = start_shardkv(shards=2, acceptors=request.param)
    yield proc
    proc.stop()


def key_on(shard: int, prefix: str) -> str:
    router = Router(2)
    i = 0
    while router.shard_of(f"{prefix}{i}".encode()) != shard:
        i += 1
    return f"{prefix}{i}"


def client_on(server: ServerProcess, index: int) -> RespClient:
    """A connection on acceptor ``index`` (of ``server.acceptors``; acceptor
    ``i`` hands out the client ids ``i+1, i+1+K, ...``)."""
    k = server.acceptors
    for _ in range(200):
        c = RespClient(server.port)
        if (int(c.command("CLIENT", "ID")) - 1) % k == index % k:  # type: ignore[arg-type]
            return c
        c.close()
    pytest.fail("no connection landed on that acceptor")


def wait_shown_blocked(observer: RespClient, client_id: int) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for line in observer.command("CLIENT", "LIST").splitlines():  # type: ignore[union-attr]
            if line.startswith(b"id=%d " % client_id) and b" flags=b " in line:
                return
        time.sleep(0.002)
    pytest.fail("the XREAD was never shown blocked")


@pytest.mark.parametrize("cross_shard", [False, True], ids=["one-shard", "cross-shard"])
def test_xread_dollar_seen_blocked_is_woken_by_an_xadd_through_the_other_acceptor(
    server, cross_shard
) -> None:
    prefix = "x" if cross_shard else "o"
    k0, k1 = key_on(0, prefix), key_on(1, prefix)
    reader = client_on(server, 0)
    # Acceptor 1 writes and watches; shard 0 is kept busy from the acceptor
    # that makes the XREAD come last to the stream's shard.
    observer = client_on(server, 1)
    busy = client_on(server, 1 if cross_shard else 0)
    stream = k1 if cross_shard else k0
    try:
        observer.command("DEL", k0, k1)
        observer.command("XADD", stream, "1-0", "old", "1")
        busy.send("EVAL", BUSY, 1, k0)
        time.sleep(0.05)  # the script runs (if not yet, the test only proves less)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        if cross_shard:
            reader.send("XREAD", "BLOCK", 0, "STREAMS", k0, k1, "$", "$")
        else:
            reader.send("XREAD", "BLOCK", 0, "STREAMS", k0, "$")
        wait_shown_blocked(observer, reader_id)
        observer.command("XADD", stream, "2-0", "new", "2")
        assert reader.read_reply() == [[stream.encode(), [[b"2-0", [b"new", b"2"]]]]]
        assert busy.read_reply() == 1
    finally:
        for c in (reader, observer, busy):
            c.close()
