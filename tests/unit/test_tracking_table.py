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


def test_evictions_over_the_limit_do_not_walk_the_table(monkeypatch) -> None:
    table = _CountingTable()
    monkeypatch.setattr(tracking, "TABLE", table)
    monkeypatch.setattr(tracking, "_DRAW", [], raising=False)
    monkeypatch.setattr(tracking.STATE, "items", 0)
    limit = 2000
    server = SimpleNamespace(config={"tracking-table-max-keys": str(limit)}, clients={})
    client = SimpleNamespace(id=7, server=server)
    tracking.remember(client, [b"k%d" % i for i in range(limit)])
    _CountingTable.walked = 0
    for i in range(limit):  # each new key evicts one
        tracking.remember(client, [b"n%d" % i])
        assert len(table) == limit
    # One copy of the table per `limit` evictions (was: one per eviction,
    # limit * limit keys walked).
    assert _CountingTable.walked <= 2 * limit
    assert tracking.STATE.items == limit
