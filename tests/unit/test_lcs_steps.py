"""LCS's Python-level cost: the rows and the walk back take one Python step
per byte of the shorter key, not of the longer one, so a long key against
a very short one cannot block a shard.  Counted in traced lines, not timed."""

from __future__ import annotations

import sys

from shardkv.worker.commands import strings
from shardkv.worker.keyspace import Keyspace


def _traced_lines(ks: Keyspace, args: list[bytes]) -> tuple[object, int]:
    """The reply of LCS, and the lines run in the strings module for it."""
    lines = 0
    module = strings.__file__

    def tracer(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal lines
        if frame.f_code.co_filename != module:
            return None
        if event == "line":
            lines += 1
        return tracer

    sys.settrace(tracer)
    try:
        reply = strings.lcs(ks, args)
    finally:
        sys.settrace(None)
    return reply, lines


def test_a_100kb_key_against_a_2_byte_key_takes_few_python_steps() -> None:
    ks = Keyspace()
    long = b"xy" * 25_000 + b"ab" + b"yx" * 25_000
    strings.set_(ks, [b"SET", b"{k}long", long])
    strings.set_(ks, [b"SET", b"{k}short", b"ba"])
    # The replies redis-server 7.0.15 gives (its ties depend on the order).
    for args, want in (
        ([b"{k}long", b"{k}short"], b"b"),
        ([b"{k}short", b"{k}long"], b"a"),
        ([b"{k}long", b"{k}short", b"LEN"], 1),
        ([b"{k}short", b"{k}long", b"LEN"], 1),
        ([b"{k}long", b"{k}short", b"IDX"], {b"matches": [[[50001, 50001], [0, 0]]], b"len": 1}),
        (
            [b"{k}short", b"{k}long", b"IDX", b"WITHMATCHLEN"],
            {b"matches": [[[1, 1], [50000, 50000], 1]], b"len": 1},
        ),
    ):
        reply, lines = _traced_lines(ks, [b"LCS", *args])
        assert reply == want
        assert lines < 2_000, (args, lines)
