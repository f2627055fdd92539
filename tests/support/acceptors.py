"""What the tests of several acceptors (issue 22) share: a server with two
shards and :data:`K` acceptors, and connections that the kernel gave to a
chosen acceptor.

Acceptor ``i`` hands out the client ids ``i+1, i+1+K, ...``, so a
connection's CLIENT ID says which acceptor it landed on; the helpers below
open connections until one lands where asked.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest
import redis

from tests.support.processes import until
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess, start_shardkv

K = 2


def serve(acceptors: int = K) -> Iterator[ServerProcess]:
    """The body of a module's ``server`` fixture: shardkv with two shards
    and ``acceptors`` (K unless told) acceptors, stopped at the end."""
    proc = start_shardkv(shards=2, acceptors=acceptors)
    yield proc
    proc.stop()


def acceptor_of(client_id: int, k: int = K) -> int:
    return (client_id - 1) % k


def client_on(port: int, index: int, protocol: int = 2, k: int = K, timeout: float = 10.0) -> RespClient:
    """A connection that the kernel gave to acceptor ``index`` (of ``k``;
    ``index % k``, so that one acceptor, or redis-server, gives any)."""
    for _ in range(300):
        c = RespClient(port, protocol=protocol, timeout=timeout)
        if acceptor_of(int(c.command("CLIENT", "ID")), k) == index % k:  # type: ignore[arg-type]
            return c
        c.close()
    pytest.fail("no connection landed on that acceptor")


def every_acceptor_answers(port: int, k: int = K) -> bool:
    """Does each of the ``k`` acceptors answer PING at once (within 2 s:
    no script left running), each listening (a test may have killed one)?
    Waited for, as :func:`tests.support.processes.until` waits."""

    def answers() -> bool:
        try:
            for a in range(k):
                with client_on(port, a, k=k, timeout=2) as c:
                    if c.command("PING") != b"PONG":
                        return False
        except (OSError, ErrorReply, pytest.fail.Exception):
            return False
        return True

    return bool(until(answers))


def flush_through_every_acceptor(port: int, k: int = K) -> None:
    """FLUSHALL through each of the ``k`` acceptors until it answers OK.

    A shared server's check before a test: a test before may have killed
    a worker, and its restart hands each acceptor its new pipe on its own
    (``shardkv.supervisor``); one acceptor's OK says nothing of the
    other's, which may still answer ``-ERR shard unavailable`` (a loaded
    machine).  Each acceptor's OK says it serves every shard."""

    def flushed(c: RespClient) -> bool:
        try:
            return c.command("FLUSHALL") == b"OK"
        except ErrorReply:  # a worker restarting, or its pipe not here yet
            return False

    for a in range(k):
        with client_on(port, a, k=k, timeout=20) as c:
            assert until(lambda c=c: flushed(c)), f"acceptor {a} did not serve every shard"


@contextmanager
def pair_on(port: int) -> Iterator[tuple[RespClient, RespClient]]:
    """A connection on acceptor 0 and one on acceptor 1, closed at the end."""
    a, b = client_on(port, 0), client_on(port, 1)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def raw_on(port: int, index: int) -> tuple[socket.socket, int]:
    """A raw connection on acceptor ``index``, and its client id."""
    for _ in range(200):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"CLIENT ID\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(100)
        cid = int(reply[1:-2])
        if acceptor_of(cid) == index:
            return sock, cid
        sock.close()
    pytest.fail("no connection landed on that acceptor")


def connect_to(port: int, index: int, tries: int = 400) -> redis.Redis:
    """A redis-py connection that the kernel gave to acceptor ``index``
    (which may not listen yet just after start-up, or after its restart)."""
    for _ in range(tries):
        conn = redis.Redis(port=port, decode_responses=True, socket_timeout=20)
        if acceptor_of(int(conn.client_id())) == index:
            return conn
        conn.close()
        time.sleep(0.02)
    raise AssertionError(f"no connection reached acceptor {index} in {tries} tries")


def acceptor_pids(server: ServerProcess) -> dict[int, int]:
    """index -> pid, from the supervisor's log, of the acceptors alive now."""
    found: dict[int, int] = {}
    for pid, index in re.findall(r"acceptor pid=(\d+) port=\d+ index=(\d+)", server.output()):
        found[int(index)] = int(pid)
    return {i: pid for i, pid in found.items() if psutil.pid_exists(pid)}
