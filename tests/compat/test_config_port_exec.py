"""CONFIG SET port inside MULTI/EXEC, as redis-server 7.0.15 answers it,
at one acceptor and at two.

Redis moves to the new port as EXEC runs the CONFIG SET: the reply array
holds its OK, the other commands run, new connections land on the new
port and the old one refuses them.  A port that cannot be bound (another
socket listens there) fails that CONFIG SET alone, with Redis's error in
the array, and the server stays where it was.  At two acceptors every
acceptor moves, or none: the connections to the new port land on both.
A monitor shows MULTI, the transaction's commands, EXEC, then what came
after, as Redis shows them (CONFIG itself is ``admin``: never shown).

Each test sends the same bytes to a fresh redis-server and to a shardkv
of two shards (a fresh one per acceptor count, moved by the tests from
port to port) and compares the replies byte for byte.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
import redis

from tests.support.acceptors import acceptor_of, raw_on
from tests.support.rawsocket import read_until_quiet
from tests.support.resp import encode_command
from tests.support.servers import ServerProcess, free_port, start_redis, start_shardkv

PORT_ERROR = b"-ERR CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port. Check server logs.\r\n"
TRIES = 50  # connections to the new port (at K=2 each lands on either acceptor)


@pytest.fixture(scope="module", params=[1, 2], ids=["K=1", "K=2"])
def shardkv(request) -> Iterator[ServerProcess]:
    proc = start_shardkv(shards=2, acceptors=request.param)
    yield proc
    proc.stop()  # (its port is kept up to date by the tests that move it)


@pytest.fixture
def real() -> Iterator[ServerProcess]:
    proc = start_redis()
    yield proc
    proc.stop()


def _connect(server: ServerProcess, index: int = 0) -> socket.socket:
    """A raw connection (at K > 1 on acceptor ``index``)."""
    if server.kind == "shardkv" and server.acceptors > 1:
        return raw_on(server.port, index)[0]
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _transaction(port: int, *, watch: bool = False) -> bytes:
    """MULTI, CONFIG SET port ``port``, SET k v, EXEC, GET k (WATCH k first)."""
    commands = [["WATCH", "k"]] if watch else []
    commands += [["MULTI"], ["CONFIG", "SET", "port", str(port)], ["SET", "k", "v"], ["EXEC"], ["GET", "k"]]
    return b"".join(encode_command(*c) for c in commands)


def _run(server: ServerProcess, data: bytes, want: int) -> bytes:
    sock = _connect(server)
    try:
        sock.sendall(data)
        return read_until_quiet(sock, 0.3, want=want)[0]
    finally:
        sock.close()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _acceptors_on(server: ServerProcess, port: int) -> set[int]:
    """The acceptors (0 for redis-server) that :data:`TRIES` connections to
    ``port`` landed on; each must land and answer."""
    seen = set()
    for _ in range(TRIES):
        c = redis.Redis(port=port, socket_timeout=30)
        assert c.get("k") == b"v"
        seen.add(acceptor_of(c.client_id(), server.acceptors) if server.kind == "shardkv" else 0)
        c.close()
    return seen


@pytest.mark.parametrize("watch", [False, True], ids=["in-order", "watched"])
def test_config_set_port_in_exec_moves_the_whole_server(real, shardkv, watch):
    """Every acceptor serves the new port once EXEC answered, and none the
    old one; a WATCH (the atomic path) changes nothing of that."""
    replies = []
    for server in (real, shardkv):
        new_port = free_port()
        reply = _run(server, _transaction(new_port, watch=watch), want=40 + 5 * watch)
        old, server.port = server.port, new_port  # (so that stop() finds it)
        replies.append(reply)
        assert _acceptors_on(server, new_port) == set(range(server.acceptors))
        for _ in range(TRIES):  # (shardkv's closed listeners go in its event loop)
            if _refused(old):
                break
            time.sleep(0.05)
        assert _refused(old)
    assert replies[0] == b"+OK\r\n" * (1 + watch) + b"+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n+OK\r\n$1\r\nv\r\n"
    assert replies[1] == replies[0]


def test_a_port_in_use_fails_inside_the_exec_array_and_the_rest_runs(real, shardkv):
    """The CONFIG SET of a port another socket holds answers Redis's error
    in its place, SET still runs, and the server stays on its port."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    replies = []
    try:
        for server in (real, shardkv):
            redis.Redis(port=server.port).delete("k")
            replies.append(_run(server, _transaction(taken.getsockname()[1]), want=len(PORT_ERROR) + 39))
            assert _acceptors_on(server, server.port) == set(range(server.acceptors))
    finally:
        taken.close()
    assert replies[0] == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n" + PORT_ERROR + b"+OK\r\n$1\r\nv\r\n"
    assert replies[1] == replies[0]
    for server in (real, shardkv):
        assert redis.Redis(port=server.port).config_get("port") == {"port": str(server.port)}


def _monitor(server: ServerProcess) -> socket.socket:
    """A monitor (at K > 1 on acceptor 1, the transaction's client being on 0)."""
    sock = _connect(server, 1)
    sock.sendall(encode_command("MONITOR"))
    assert read_until_quiet(sock, 0.05, want=5)[0] == b"+OK\r\n"
    return sock


def _shown(data: bytes) -> list[bytes]:
    """A monitor's lines, without their time and client (and the CLIENT IDs
    that found a connection on the wanted acceptor)."""
    shown = [line.partition(b"] ")[2] for line in data.split(b"\r\n") if line]
    return [line for line in shown if line != b'"CLIENT" "ID"']


def test_a_monitor_shows_the_transaction_in_redis_order(real, shardkv):
    """MULTI, the transaction's SET, EXEC, then the GET pipelined after it
    and a later client's command: as Redis shows them."""
    got = []
    for server in (real, shardkv):
        mon = _monitor(server)
        try:
            new_port = free_port()
            _run(server, _transaction(new_port), want=40)
            server.port = new_port
            _run(server, encode_command("SET", "after", "1"), want=5)
            got.append(_shown(read_until_quiet(mon, 0.3, until=b'"SET" "after" "1"\r\n')[0]))
        finally:
            mon.close()
    assert got[0] == [b'"MULTI"', b'"SET" "k" "v"', b'"EXEC"', b'"GET" "k"', b'"SET" "after" "1"']
    assert got[1] == got[0]
