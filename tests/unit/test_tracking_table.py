"""The tracking table's limit (``tracking-table-max-keys``): what an
eviction costs.  No timing: the keys of the table walked are counted."""

from __future__ import annotations

from types import SimpleNamespace

from shardkv.acceptor import tracking


class _CountingTable(dict):
    """A TABLE that counts the keys walked by iterating it."""

    walked = 0

    def __iter__(self):
        type(self).walked += len(self)
        return super().__iter__()


def _fresh_table(monkeypatch, table: dict, limit: int) -> tuple[SimpleNamespace, SimpleNamespace]:
    """Make ``table`` the (empty) tracking table, with no draw and no keys
    counted, under a server whose limit is ``limit``; return the server
    and a client of it."""
    monkeypatch.setattr(tracking, "TABLE", table)
    monkeypatch.setattr(tracking, "_DRAW", [], raising=False)
    monkeypatch.setattr(tracking.STATE, "items", 0)
    server = SimpleNamespace(config={"tracking-table-max-keys": str(limit)}, clients={})
    return server, SimpleNamespace(id=7, server=server)


def test_evictions_over_the_limit_do_not_walk_the_table(monkeypatch) -> None:
    table = _CountingTable()
    limit = 2000
    server, client = _fresh_table(monkeypatch, table, limit)
    tracking.remember(client, [b"k%d" % i for i in range(limit)])
    _CountingTable.walked = 0
    for i in range(limit):  # each new key evicts one
        tracking.remember(client, [b"n%d" % i])
        assert len(table) == limit
    # One copy of the table per `limit` evictions (was: one per eviction,
    # limit * limit keys walked).
    assert _CountingTable.walked <= 2 * limit
    assert tracking.STATE.items == limit


def test_the_draw_does_not_keep_keys_that_left_the_table(monkeypatch) -> None:
    """The shuffled copy of the table's keys drawn from by evictions is
    dropped once most of its keys left the table (it kept every deleted
    key alive until the next flush)."""
    table: dict = {}
    limit = 1000
    server, client = _fresh_table(monkeypatch, table, limit)
    tracking.remember(client, [b"k%d" % i for i in range(limit + 1)])  # one eviction: a copy drawn from
    assert len(table) == limit and tracking._DRAW
    for key in list(table)[: limit - 100]:  # written: invalidated
        tracking._invalidate_key(server, key, None, bcast=False)
    assert len(table) == 100
    assert len(tracking._DRAW) <= 2 * len(table)
    assert tracking.STATE.items == 100
    tracking.remember(client, [b"k%d" % i for i in range(limit + 1, 2 * limit + 10)])  # evicts again
    assert len(table) == limit


def test_a_new_limit_drops_the_draw(monkeypatch) -> None:
    monkeypatch.setattr(tracking, "TABLE", {})
    monkeypatch.setattr(tracking, "_DRAW", [b"gone"], raising=False)
    server = SimpleNamespace(config={"tracking-table-max-keys": "10"}, clients={})
    tracking.on_config(server, {"tracking-table-max-keys": "10"})
    assert tracking._DRAW == []
