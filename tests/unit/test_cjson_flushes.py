"""A worker's SCRIPT FLUSH numbers and the cjson options forwarded to it
(shardkv.worker.scripting.Engine, issue 18), driven in process."""

from __future__ import annotations

import pytest

from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard


@pytest.fixture
def engine():
    return Shard(0, 2, FakeClock()).keyspace.scripts


def _depth(engine) -> int:
    """EVAL's state's encode_max_depth (1000 by default)."""
    return engine._eval_vm.cjson.options()[0]


def _forward(engine, number: int, start: int, depth: int) -> None:
    """Another shard's setter, after its flush ``number``, set the depth."""
    options = [b"%d" % v for v in engine._cjson_defaults]
    options[0] = b"%d" % depth
    engine.set_cjson(b"eval", number, (start, 1), options)


def test_a_restarted_worker_keeps_the_number_it_was_handed(engine) -> None:
    """Handed flush 1 (lost with the old worker's pipe), it drops the other
    shard's state from before that flush, and takes the next setter's."""
    engine.flushed(1)
    state = engine.cjson_state()
    state[0] = b"0"  # the other shard answered before it ran flush 1
    state[1:4] = [b"5", b"1", b"9"]
    state[4] = b"7"  # its options: depth 7
    engine.restore_cjson(state)
    assert engine.flushes == 1 and _depth(engine) == 1000
    _forward(engine, 1, 6, 9)
    assert _depth(engine) == 9


def test_a_handed_number_resets_the_options_once(engine) -> None:
    _forward(engine, 0, 1, 7)
    assert _depth(engine) == 7
    engine.flushed(2)  # flushes sent before this pipe: the defaults
    assert engine.flushes == 2 and _depth(engine) == 1000
    _forward(engine, 2, 2, 8)
    engine.flushed(2)  # another acceptor's pipe, the same number: nothing
    engine.flush(2)  # the flush itself, come late: nothing reset
    assert engine.flushes == 2 and _depth(engine) == 8
    engine.flush(3)
    assert engine.flushes == 3 and _depth(engine) == 1000


def test_options_set_after_a_flush_not_run_yet_wait_for_it(engine) -> None:
    _forward(engine, 4, 1, 6)
    assert _depth(engine) == 1000
    engine.flushed(4)
    assert _depth(engine) == 6
