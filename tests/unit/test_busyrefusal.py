"""The worker's side of -BUSY for what came before a script went busy
(shardkv.worker.busyrefusal): which entries it refuses, and its rewrite
of a batch, which must leave every other entry as the acceptor wrote it."""

from __future__ import annotations

import pytest

from shardkv.protocol import errors, wire
from shardkv.protocol.resp import encode_command
from shardkv.runtime.cmdstats import Stats
from shardkv.worker.busyrefusal import Refusals, _encode_batch


class _Shard:
    index = 0

    def __init__(self) -> None:
        self.stats = Stats()


def _refusals() -> Refusals:
    return Refusals(_Shard(), None)  # type: ignore[arg-type]


def test_refusals_frames_round_trip():
    assert wire.decode_refusals(wire.encode_refusals([0, 3, 7])) == [0, 3, 7]
    assert wire.decode_refusals(wire.encode_refusals([])) == []
    with pytest.raises(wire.BadMessage):
        wire.decode_refusals(b"K" + b"\x00")  # not a marshal list


def test_a_rewritten_batch_keeps_its_other_entries_byte_for_byte():
    entries = [
        (wire.entry_header(0), [b"GET", b"k"]),
        (wire.entry_header(wire.FLAG_RESP3, db=3), [b"SET", b"k", b"v"]),
        (wire.entry_header(wire.FLAG_PART), [b"MGET", b"a", b"b"]),
        (wire.entry_header(wire.FLAG_STAMP, token=9), [b"BLPOP", b"l", b"0", b"123"]),
    ]
    payload = b"B" + b"".join(h + encode_command(args) for h, args in entries)
    assert _encode_batch(wire.decode_batch(payload)) == payload


@pytest.mark.parametrize(
    ("header", "args", "refused"),
    [
        (0, [b"GET", b"k"], True),
        (wire.FLAG_RESP3 | (2 << wire.DB_SHIFT), [b"set", b"k", b"v"], True),
        (0, [b"EVALSHA", b"abc", b"0"], True),
        (wire.FLAG_PART, [b"MGET", b"a"], False),  # a fan-out's part
        (wire.FLAG_PARK, [b"__park", b"1", b"0", b"k"], False),  # a cross-shard step
        (wire.FLAG_MONITOR, [b"EVAL", b"return 1", b"0"], False),  # its M frame is awaited
        (9 << wire.TOKEN_SHIFT, [b"BLPOP", b"l", b"0"], False),  # a blocking command
        (0, [b"__ping"], False),  # the acceptor's own verb
        (0, [b"SCRIPT", b"KILL"], False),  # allow-busy
        (0, [b"FUNCTION", b"stats"], False),  # allow-busy
        (0, [b"NOSUCH"], False),
    ],
)
def test_what_the_worker_refuses(header, args, refused):
    r = _refusals()
    assert r._refuse(header, args) is refused
    assert r.shard.stats.errors.get("BUSY", 0) == int(refused)


def test_a_refused_function_call_counts_the_function_text():
    r = _refusals()
    r.message = errors.BUSY_FUNCTION
    assert r._refuse(0, [b"GET", b"k"])
    assert r.shard.stats.commands["get"][2] == 1  # rejected_calls
