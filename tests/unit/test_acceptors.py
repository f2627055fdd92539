"""Several acceptors: each acceptor's client ids, and maxclients as the
total of every acceptor's clients (shardkv.runtime.clientcount)."""

from __future__ import annotations

from shardkv.protocol import errors
from shardkv.runtime.clientcount import ClientCounts
from tests.unit.test_acceptor_dispatch import build, connect, replies


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
