"""``__xgroupupto key id XREADGROUP ...`` bounds the XREADGROUP it
carries (a woken cross-shard XREADGROUP's try) and nothing else: the
bound lives in that one run, so that a bound whose XREADGROUP never ran
(refused before its handler) cannot reach a later, unrelated read on
that shard."""

from __future__ import annotations

from shardkv.protocol import wire
from shardkv.runtime import config
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard

V = wire.Verb


def _batch(*commands: list[bytes]) -> bytes:
    parts = []
    for args in commands:
        parts.append(wire.entry_header(0))
        parts.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return wire.batch_payload(parts)


def _shard(tmp_path) -> Shard:
    cfg = config.defaults()
    cfg.update({"dir": str(tmp_path), "shards": 1, "appendonly": False, "appendfsync": "no"})
    shard = Shard(0, 1, FakeClock(), config=cfg)
    shard.persistence.start()  # type: ignore[union-attr]
    return shard


def _stream(shard: Shard) -> None:
    shard.run_batch(
        _batch(
            [b"XADD", b"s", b"1-0", b"f", b"1"],
            [b"XADD", b"s", b"2-0", b"f", b"2"],
            [b"XADD", b"s", b"3-0", b"f", b"3"],
            [b"XGROUP", b"CREATE", b"s", b"g", b"0"],
        )
    )


READ = [b"XREADGROUP", b"GROUP", b"g", b"c", b"STREAMS", b"s", b">"]


def test_a_bound_whose_read_was_refused_does_not_bound_a_later_read(tmp_path):
    """-MISCONF refuses the carried XREADGROUP before its handler (a
    write), as it refuses an XREADGROUP: the later XREADGROUP gets every
    entry."""
    shard = _shard(tmp_path)
    _stream(shard)
    shard.persistence.misconf = "MISCONF the disk is full"  # type: ignore[union-attr]
    ran = shard.run_foreign(wire.Run(7, {}, [[V.XREADGROUP_UPTO, b"s", b"1-0", *READ]], 0, True, [b"s"]))
    assert ran.bodies == [b"-MISCONF the disk is full\r\n"]
    shard.decide(7, True)
    shard.persistence.misconf = None  # type: ignore[union-attr]
    (reply,) = wire.decode_replies(shard.run_batch(_batch(READ)))
    assert reply.count(b"$1\r\nf\r\n") == 3, reply


def test_a_bound_is_taken_by_its_own_read_alone(tmp_path):
    """The woken read delivers up to its bound; the next read the rest."""
    shard = _shard(tmp_path)
    _stream(shard)
    ran = shard.run_foreign(wire.Run(7, {}, [[V.XREADGROUP_UPTO, b"s", b"1-0", *READ]], 0, True, [b"s"]))
    assert len(ran.bodies) == 1 and ran.bodies[0].count(b"$1\r\nf\r\n") == 1, ran.bodies
    shard.decide(7, True)
    (reply,) = wire.decode_replies(shard.run_batch(_batch(READ)))
    assert reply.count(b"$1\r\nf\r\n") == 2, reply
