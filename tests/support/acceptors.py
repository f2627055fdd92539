"""What the tests of several acceptors (issue 22) share: a server with two
shards and :data:`K` acceptors, and connections that the kernel gave to a
chosen acceptor.

Acceptor ``i`` hands out the client ids ``i+1, i+1+K, ...``, so a
connection's CLIENT ID says which acceptor it landed on; the helpers below
open connections until one lands where asked.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.resp import RespClient
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


def client_on(port: int, index: int, protocol: int = 2, k: int = K) -> RespClient:
    """A connection that the kernel gave to acceptor ``index`` (of ``k``)."""
    for _ in range(300):
        c = RespClient(port, protocol=protocol)
        if acceptor_of(int(c.command("CLIENT", "ID")), k) == index:  # type: ignore[arg-type]
            return c
        c.close()
    pytest.fail("no connection landed on that acceptor")


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
