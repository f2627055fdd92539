"""CONFIG SET's one order at K > 1 (shardkv.acceptor.configorder): what a
worker keeps of numbered ``__config``s, and what an acceptor applies of
another's CONFIG SET while its own is not numbered yet."""

from __future__ import annotations

from shardkv.acceptor import configorder
from shardkv.protocol.wire import CONFIG_NUMBER, Verb
from shardkv.worker.commands import server as worker_server
from shardkv.worker.keyspace import Keyspace
from tests.unit.test_acceptor_dispatch import build


def _config(ks: Keyspace, number: int | None, *pairs: str) -> None:
    stamp = [] if number is None else [CONFIG_NUMBER, b"%d" % number]
    worker_server.config(ks, [Verb.CONFIG, *stamp, *(p.encode() for p in pairs)])


def test_a_worker_keeps_the_value_numbered_last_whatever_pipe_comes_first() -> None:
    ks = Keyspace()
    _config(ks, 2, "hz", "12", "maxmemory-policy", "allkeys-lru")
    _config(ks, 1, "hz", "11", "maxmemory-policy", "volatile-ttl")  # the earlier one, late
    assert (ks.runtime.hz, ks.runtime.maxmemory_policy) == (12, "allkeys-lru")
    _config(ks, 2, "hz", "13")  # its asker's, sent first with the last number it knew
    assert ks.runtime.hz == 13
    _config(ks, 3, "hz", "14")
    _config(ks, None, "hz", "15")  # one acceptor: no number, always applied
    assert ks.runtime.hz == 15


def test_an_acceptor_leaves_what_its_own_unnumbered_config_set_sets() -> None:
    acceptor, _ = build(2)
    configorder.sent(acceptor, {"hz": 11})
    applied = configorder.from_elsewhere(acceptor, 1, {"hz": 12, "maxmemory-policy": "allkeys-lru"})
    assert applied == {"maxmemory-policy": "allkeys-lru"}  # numbered before its own
    configorder.ordered(acceptor, 2)
    assert configorder.from_elsewhere(acceptor, 3, {"hz": 13}) == {"hz": 13}
    assert acceptor.config_order.last == 3
    assert configorder.from_elsewhere(acceptor, 4, {"requirepass": "x"}) == {}  # the ACL order's
