"""Big replies leave the worker in pieces and reach the client in order.

A reply bigger than ``wire.STREAM_MIN`` crosses the pipe as ``P`` frames
(see :mod:`shardkv.protocol.wire`) and the acceptor writes each piece as it
comes, so no process copies it whole.  The differential tests send
pipelines that mix big replies with small ones from other shards, a
cross-shard operation ahead of a big reply, and a big reply inside
MULTI/EXEC, and compare the bytes with redis-server's; the unit test checks
the frames a worker sends.  (Peak memory: ``benchmarks/bigreplies.py``.)
"""

from __future__ import annotations

import socket

import pytest

from shardkv.protocol import wire
from shardkv.protocol.router import Router
from shardkv.worker.shard import Shard
from tests.support.rawsocket import read_until_quiet
from tests.support.servers import start_redis, start_shardkv

BIG = b"v" * (wire.STREAM_MIN * 2 + 12345)  # three pieces
ROUTER = Router(4)


def command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def key_on(shard: int, prefix: bytes) -> bytes:
    i = 0
    while ROUTER.shard_of(b"%s%d" % (prefix, i)) != shard:
        i += 1
    return b"%s%d" % (prefix, i)


BIGKEY, LIST, SMALL, SRC, DST = (
    key_on(s, p) for s, p in ((0, b"big"), (1, b"list"), (2, b"s"), (3, b"src"), (2, b"dst"))
)


def setup() -> bytes:
    elements = [b"%07d" % i for i in range(700_000)]  # LRANGE 0 -1: about 9 MB
    return b"".join(
        [
            # First: a run that failed did not get to its FLUSHALL, and the
            # RPUSHes would grow the list for every test after it.
            command(b"FLUSHALL"),
            command(b"SET", BIGKEY, BIG),
            command(b"SET", SMALL, b"small"),
            *(command(b"RPUSH", LIST, *elements[i : i + 10_000]) for i in range(0, len(elements), 10_000)),
            command(b"SADD", SRC, b"a", b"b"),
        ]
    )


PIPELINES = {
    "big among small ones from other shards": [
        command(b"GET", SMALL),
        command(b"GET", BIGKEY),
        command(b"GET", SMALL),
        command(b"LRANGE", LIST, b"0", b"-1"),
        command(b"PING"),
        command(b"GET", BIGKEY),
        command(b"STRLEN", BIGKEY),
    ],
    "a cross-shard operation ahead of a big reply": [
        command(b"SUNIONSTORE", DST, SRC, SMALL + b"-none"),
        command(b"GET", BIGKEY),
        command(b"DBSIZE"),
        command(b"LRANGE", LIST, b"0", b"-1"),
    ],
    "big replies inside MULTI/EXEC": [
        command(b"MULTI"),
        command(b"GET", BIGKEY),
        command(b"LRANGE", LIST, b"0", b"-1"),
        command(b"GET", SMALL),
        command(b"EXEC"),
        command(b"GET", BIGKEY),
    ],
}


def read_until(s: socket.socket, end: bytes, count: int = 1) -> bytes:
    """Read until ``end`` has come ``count`` times (replies of one line each)."""
    out = b""
    while out.count(end) < count:
        chunk = s.recv(1 << 20)
        assert chunk, "the server closed the connection"
        out += chunk
    return out


DONE = b"$13\r\npipeline-done\r\n"  # PING pipeline-done's reply, in RESP2 and RESP3


def run(port: int, hello3: bool, pipeline: list[bytes], size: int | None = None) -> bytes:
    """The bytes that answer ``pipeline``: those before the reply of a
    ``PING`` sent after it (redis-server, which answers in order), or
    exactly ``size`` bytes and then nothing more (within half a second)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        data = setup()
        s.sendall(data + command(b"PING", b"setup-done"))
        read_until(s, b"setup-done")
        if hello3:
            s.sendall(command(b"HELLO", b"3") + command(b"PING", b"hello-done"))
            read_until(s, b"hello-done")
        if size is None:
            s.sendall(b"".join(pipeline) + command(b"PING", b"pipeline-done"))
            out = b""
            while not out.endswith(DONE):
                chunk = s.recv(1 << 20)
                assert chunk, "the server closed the connection"
                out += chunk
            out = out[: -len(DONE)]
        else:
            s.sendall(b"".join(pipeline))
            out = b""
            while len(out) < size:
                chunk = s.recv(1 << 20)
                assert chunk, "the server closed the connection"
                out += chunk
            extra, _ = read_until_quiet(s, 0.5)
            out += extra
            s.settimeout(120)  # (read_until_quiet left it at its 0.5 s)
        s.sendall(command(b"FLUSHALL"))
        read_until(s, b"\r\n")
        return out


@pytest.fixture(scope="module")
def servers():
    real, ours = start_redis(), start_shardkv(shards=4)
    try:
        yield real.port, ours.port
    finally:
        real.stop()
        ours.stop()


@pytest.mark.slow
@pytest.mark.parametrize("hello3", [False, True], ids=["resp2", "resp3"])
@pytest.mark.parametrize("name", list(PIPELINES))
def test_big_replies_come_whole_and_in_order(servers, name, hello3):
    real, ours = servers
    expected = run(real, hello3, PIPELINES[name])
    got = run(ours, hello3, PIPELINES[name], len(expected))
    assert len(got) == len(expected) and got == expected


def test_a_worker_sends_a_big_reply_in_pieces_between_the_others():
    shard = Shard(0, 1)
    shard.execute([b"SET", b"big", BIG])
    sent: list[bytes] = []
    shard.send = sent.append
    entries = [command(b"GET", b"small"), command(b"GET", b"big"), command(b"STRLEN", b"big")]
    batch = wire.batch_payload([part for e in entries for part in (b":0\r\n", e)])
    last = shard.run_batch(batch)
    assert [f[:1] for f in sent] == [b"R", b"P", b"P", b"P"]
    assert wire.decode_replies(sent[0]) == [b"$-1\r\n"]
    pieces = [wire.decode_piece(f) for f in sent[1:]]
    assert [is_last for _, is_last in pieces] == [False, False, True]
    assert all(len(p) <= wire.STREAM_PIECE for p, _ in pieces)
    assert b"".join(p for p, _ in pieces) == b"$%d\r\n%s\r\n" % (len(BIG), BIG)
    assert wire.decode_replies(last) == [b":%d\r\n" % len(BIG)]


@pytest.mark.slow
def test_keys_over_every_shard_streams_and_matches_redis(servers):
    """KEYS joins the shards' arrays without decoding them: small, empty,
    and big enough that every shard streams its part (over BIG_ARRAY keys
    each), alone, pipelined between other replies, and inside MULTI/EXEC."""
    import redis

    for port in servers:
        c = redis.Redis(port=port, socket_timeout=120)
        c.flushall()
        assert c.keys("*") == []
        pipe = c.pipeline(transaction=False)
        for i in range(0, 300_000, 10_000):
            pipe.mset({b"key:%d" % j: b"1" for j in range(i, i + 10_000)})
        pipe.set("small", "x")
        pipe.execute()
        c.close()
    got = []
    for port in servers:
        c = redis.Redis(port=port, socket_timeout=120)
        pipe = c.pipeline(transaction=False)
        pipe.get("small")
        pipe.keys("*")
        pipe.get("small")
        pipe.keys("key:1234*")
        pipe.keys("nothing*")
        small, every, small2, some, none = pipe.execute()
        multi = c.pipeline(transaction=True)
        multi.keys("key:2999*")
        multi.get("small")
        in_exec = multi.execute()
        got.append((small, sorted(every), small2, sorted(some), none, sorted(in_exec[0]), in_exec[1]))
        c.flushall()
        c.close()
    assert len(got[0][1]) == 300_001
    assert got[1] == got[0]


def test_a_worker_that_dies_mid_reply_closes_the_clients_connection():
    """Part of a big reply is out: the error cannot follow it, so the
    connection is dropped (as when a server dies while it writes); a reply
    whose pieces were all kept back gets the error instead."""
    from collections import deque
    from types import SimpleNamespace

    from shardkv.acceptor.client import Slot
    from shardkv.acceptor.shardlink import ShardLink

    class Transport:
        def __init__(self) -> None:
            self.written: list[bytes] = []
            self.aborted = False

        def write(self, data: bytes) -> None:
            self.written.append(data)

        def abort(self) -> None:
            self.aborted = True

    def client() -> SimpleNamespace:
        server = SimpleNamespace(net_output_bytes=0, dirty_clients=[])
        c = SimpleNamespace(pieces={}, pending=deque(), closed=False, dirty=False, server=server)
        c.transport = Transport()
        c.write_piece = c.transport.write
        return c

    link = ShardLink(0, lambda link: None, lambda: None)
    out = client()
    streaming = Slot(out)  # at the head of its client's replies: its pieces go out
    out.pending.append(streaming)
    held = client()
    kept = Slot(held)  # behind another reply: its pieces are kept
    held.pending.extend([Slot(held), kept])
    link.fifo.extend([streaming])
    link._frame(wire.encode_piece(b"*3\r\n$1\r\na\r\n", False))
    assert out.transport.written == [b"*3\r\n$1\r\na\r\n"]
    link.fail_all()
    assert out.transport.aborted and out.closed and not out.pending

    link.fifo.extend([kept])
    link._frame(wire.encode_piece(b"*3\r\n", False))
    link.fail_all()
    assert not held.transport.aborted and not held.transport.written
    assert kept.data is not None and kept.data.startswith(b"-ERR") and not held.pieces
