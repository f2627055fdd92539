"""Several acceptors: each acceptor's client ids and share of maxclients."""

from __future__ import annotations

from tests.unit.test_acceptor_dispatch import build


def test_client_ids_interleave_across_acceptors_and_maxclients_is_shared() -> None:
    acceptor, _ = build(2)
    acceptor.set_index(1, 3)
    assert [acceptor.next_client_id() for _ in range(3)] == [2, 5, 8]
    acceptor.config["maxclients"] = 10
    shares = []
    for i in range(3):
        acceptor.set_index(i, 3)
        shares.append(acceptor.max_clients())
    assert shares == [4, 3, 3] and sum(shares) == 10


def test_one_acceptor_keeps_its_ids() -> None:
    alone, _ = build(2)
    assert [alone.next_client_id() for _ in range(3)] == [1, 2, 3]
    assert alone.max_clients() == alone.config["maxclients"]
