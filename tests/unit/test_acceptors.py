"""Several acceptors: each acceptor's client ids, and maxclients as the
total of every acceptor's clients (shardkv.runtime.clientcount)."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import socket
from types import SimpleNamespace

import psutil

from shardkv.acceptor import listeners, main, server, users
from shardkv.protocol import errors
from shardkv.runtime.clientcount import ClientCounts
from shardkv.runtime.parentdeath import living_parent
from tests.unit.test_acceptor_dispatch import MemoryTransport, build, connect, replies


def test_client_ids_interleave_across_acceptors() -> None:
    acceptor, _ = build(2)
    acceptor.set_index(1, 3)
    assert [acceptor.next_client_id() for _ in range(3)] == [2, 5, 8]


def test_one_acceptor_keeps_its_ids_and_counts_its_own_clients() -> None:
    alone, _ = build(2, maxclients=2)
    assert [alone.next_client_id() for _ in range(3)] == [1, 2, 3]
    assert alone.client_counts is None
    first, _ = connect(alone)
    second, _ = connect(alone)
    third, transport = connect(alone)
    assert list(alone.clients.values()) == [first, second]
    assert replies(alone, transport) == b"-%s\r\n" % errors.MAX_CLIENTS.encode()


def test_maxclients_is_the_total_of_every_acceptors_clients() -> None:
    acceptor, _ = build(2, maxclients=4)
    acceptor.set_index(1, 3)
    counts = acceptor.client_counts = ClientCounts(3)
    try:
        counts.set(0, 2)  # acceptor 0's clients
        counts.set(2, 1)  # acceptor 2's
        first, _ = connect(acceptor)  # the fourth of all
        assert acceptor.clients == {first.id: first} and counts.slots[1] == 1
        refused, transport = connect(acceptor)
        assert refused.id not in acceptor.clients and counts.slots[1] == 1
        assert replies(acceptor, transport) == b"-%s\r\n" % errors.MAX_CLIENTS.encode()
        assert acceptor.rejected_connections == 1
        refused.connection_lost(None)  # a refused client never counted
        assert counts.slots[1] == 1
        first.connection_lost(None)
        assert counts.slots[1] == 0 and counts.total() == 3
        counts.set(2, 0)  # acceptor 2 died: its clients are gone
        again = [connect(acceptor)[0] for _ in range(2)]
        assert list(acceptor.clients.values()) == again and counts.slots[1] == 2
        # CONFIG SET maxclients lower than the clients there: they stay, no one is admitted.
        acceptor.config["maxclients"] = 1
        _, transport = connect(acceptor)
        assert replies(acceptor, transport) == b"-%s\r\n" % errors.MAX_CLIENTS.encode()
        assert len(acceptor.clients) == 2
    finally:
        counts.close()


def _listener(port: int, pid: int | None) -> SimpleNamespace:
    """A listening socket as psutil.net_connections describes it."""
    return SimpleNamespace(
        status=psutil.CONN_LISTEN, laddr=SimpleNamespace(ip="127.0.0.1", port=port), pid=pid
    )


def test_a_sibling_whose_socket_psutil_sees_before_its_owner_is_no_stranger(monkeypatch) -> None:
    """psutil reads the processes' descriptors before the socket table, so
    the socket of an acceptor that binds meanwhile shows with no pid: it is
    looked at again until its owner shows, not taken for another server's."""
    sibling = psutil.Process()  # a child of our parent, as a sibling acceptor is
    looks = iter([[_listener(7000, None)], [_listener(7000, None)], [_listener(7000, sibling.pid)]])
    monkeypatch.setattr(listeners.psutil, "net_connections", lambda kind: next(looks))
    monkeypatch.setattr(listeners, "UNKNOWN_OWNER_WAIT", 0)
    assert not listeners._strangers_among_all("127.0.0.1", 7000, sibling.ppid())


def test_another_servers_listener_or_one_whose_owner_never_shows_is_a_stranger(monkeypatch) -> None:
    monkeypatch.setattr(listeners, "UNKNOWN_OWNER_WAIT", 0)
    ours = psutil.Process().ppid()
    monkeypatch.setattr(listeners.psutil, "net_connections", lambda kind: [_listener(7000, os.getppid())])
    assert listeners._strangers_among_all("127.0.0.1", 7000, ours)  # our parent is not a child of itself
    monkeypatch.setattr(listeners.psutil, "net_connections", lambda kind: [_listener(7000, None)])
    assert listeners._strangers_among_all("127.0.0.1", 7000, ours)
    monkeypatch.setattr(listeners.psutil, "net_connections", lambda kind: [_listener(7001, None)])
    assert not listeners._strangers_among_all("127.0.0.1", 7000, ours)  # another port


def _listening_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_the_siblings_own_listeners_are_told_without_looking_at_every_process(monkeypatch) -> None:
    """The common case, no stranger, is the kernel's list of the sockets
    listening on the port, each held by a child of the supervisor: every
    process's sockets (some 100 ms) are not looked at."""

    def every_process(kind):
        raise AssertionError("looked at every process's sockets")

    monkeypatch.setattr(listeners.psutil, "net_connections", every_process)
    with _listening_socket() as sock:
        port = sock.getsockname()[1]
        assert listeners._listening_sockets("127.0.0.1", port) == {os.fstat(sock.fileno()).st_ino}
        assert not listeners._strangers_on_port("127.0.0.1", port, os.getppid())  # we are its child
        assert not listeners._strangers_on_port("0.0.0.0", port, os.getppid())


def test_a_listener_no_child_holds_is_looked_at_thoroughly() -> None:
    with _listening_socket() as sock:
        port = sock.getsockname()[1]
        assert listeners._strangers_on_port("127.0.0.1", port, os.getpid())  # we are not our own child
        assert not listeners._strangers_on_port("127.0.0.2", port, os.getpid())  # another address


def _report_parent(conn) -> None:
    conn.send(living_parent())


def test_shutdown_signals_only_a_living_supervisor() -> None:
    """SHUTDOWN's SIGTERM goes to living_parent(): the supervisor while it
    is this process's parent, never whoever adopted an orphan (nor, here,
    pytest, which multiprocessing did not start)."""
    assert living_parent() is None
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    child = ctx.Process(target=_report_parent, args=(theirs,))
    child.start()
    try:
        assert ours.poll(60) and ours.recv() == os.getpid()
    finally:
        child.join(30)


def test_a_config_set_heard_between_accept_and_connection_made_reaches_the_client() -> None:
    """The event loop makes a connection's Client at the accept and calls
    its ``connection_made`` a turn later; another acceptor's CONFIG SET
    applied in between (a loaded acceptor reads the accept and the
    supervisor's ``config`` line in one turn) reached only the clients
    already registered, so this one kept the old client-query-buffer-limit
    and was never closed past the new one (test_limits.py's
    test_client_query_buffer_limit at K=2, 1 run in 2 under load), and kept
    needing AUTH after requirepass was removed (which reaches it in the ACL
    changes' order, an ``acl`` question)."""
    acceptor, _ = build(2, requirepass="secret")
    accepted = server.Client(acceptor)
    acceptor._config_from_elsewhere(1, {"client-query-buffer-limit": 1 << 20})
    users.bus_acl(acceptor, 1, [b"requirepass", b""])
    transport = MemoryTransport()
    accepted.connection_made(transport)  # type: ignore[arg-type]
    assert accepted.state.authenticated
    accepted.data_received(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n" + b"x" * 1_500_000)
    assert accepted.closing and transport.closed


def test_sigterm_after_the_loop_closed_is_quiet() -> None:
    # A SIGTERM during the acceptor's shutdown, once its loop is closed, once
    # logged "RuntimeError: Event loop is closed" with a traceback.
    loop = asyncio.new_event_loop()
    fut = loop.create_future()
    loop.close()
    main._stop(SimpleNamespace(loop=loop, shutdown_requested=fut))  # type: ignore[arg-type]
    assert not fut.done()
