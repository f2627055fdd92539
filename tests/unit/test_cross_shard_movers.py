"""The bookkeeping of cross-shard BLMOVE/BRPOPLPUSH waits across
acceptors: the sources other acceptors' moves wait on (bus ``movers``),
and the ``__bsettle`` a write of such a source waits in."""

from __future__ import annotations

from shardkv.protocol import wire
from shardkv.worker.blocking import bsettle
from shardkv.worker.shard import Shard


def test_a_lost_acceptors_claim_answers_the_settles_of_the_others() -> None:
    """Pipe 0's mover claims ``k`` (notified, its try on its way); pipe
    1's writer waits in ``__bsettle k``; pipe 0's acceptor dies, the only
    one with waiters: ``Waiters.clear`` used to drop every wake, the
    settle's too, and the writer waited for its acceptor's bound."""
    shard = Shard(0, 1)
    waiters = shard.waiters
    key = (0, b"k")
    waiters.claims[0, 5] = (key, 1, wire.BWAIT_CLAIMED, ())
    waiters.claimed[key] = 1
    shard.keyspace.pipe = 1
    assert waiters.run(lambda args, handler: bsettle(shard.keyspace, args), 9, 2, [wire.Verb.BSETTLE, b"k"]) == b""
    assert not waiters.wakes
    waiters.clear(0)
    assert waiters.wakes == [(1, wire.encode_wake(9, b":1\r\n"))]
    assert not waiters.settles and not waiters.claimed
