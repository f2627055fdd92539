"""A batch's plain commands (shardkv.worker.plain) run inline in
``Shard.run_batch``: the same replies, counters and AOF as through
``Shard.execute``, which runs them when the plain path is off."""

from __future__ import annotations

import pytest

from shardkv.protocol import wire
from shardkv.runtime import config
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard


def _batch(*commands: list[bytes], header: int = 0) -> bytes:
    parts = [b"B"]
    for args in commands:
        parts.append(wire.entry_header(header))
        parts.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return b"".join(parts)


def _shard(tmp_path, plain: bool, appendonly: bool) -> Shard:
    cfg = config.defaults()
    cfg.update({"dir": str(tmp_path), "shards": 1, "appendonly": appendonly, "appendfsync": "no"})
    shard = Shard(0, 1, FakeClock(), config=cfg)
    shard.persistence.start()  # type: ignore[union-attr]
    if not plain:
        shard.plain_table = lambda: None  # type: ignore[method-assign]
    return shard


# Plain and not: hits and misses, WRONGTYPE and other errors, a write that
# changes nothing (SETRANGE with no room), a recorded write (INCRBYFLOAT,
# logged as a SET), mixed-case names, and entries that take execute's path
# between them (MSET, DEL, RESP3, a RESETSTAT that drops the rows).
BATCHES = [
    [[b"GET", b"a"], [wire.Verb.RESETSTAT], [b"GET", b"a"], [b"INCR", b"a"], [b"DEL", b"m"]],
    [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"GET", b"nope"], [b"incr", b"a"], [b"InCr", b"a"]],
    [[b"LPUSH", b"l", b"x"], [b"GET", b"l"], [b"INCR", b"l"], [b"HSET", b"h", b"f", b"v"]],
    [[b"SETRANGE", b"s", b"0", b""], [b"INCRBYFLOAT", b"f", b"1.5"], [b"MSET", b"m", b"1", b"n", b"2"]],
    [[b"SET", b"b", b"2", b"XX"], [b"set", b"b", b"3"], [b"SET", b"a", b"x", b"EX", b"0"], [b"GETDEL", b"a"]],
]


def _run_all(shard: Shard) -> tuple:
    replies = [wire.decode_replies(shard.run_batch(_batch(*cmds))) for cmds in BATCHES]
    replies.append(wire.decode_replies(shard.run_batch(_batch([b"GET", b"b"], header=wire.FLAG_RESP3))))
    ks = shard.keyspace
    report = shard.stats.report()
    calls = {name: (row[0], row[2], row[3]) for name, row in report[0].items()}
    persistence = shard.persistence
    assert persistence is not None
    logged = b"".join(persistence.aof.buf) if persistence.aof is not None else b""
    return replies, calls, report[1], report[2], ks.hits, ks.misses, persistence.dirty, logged


@pytest.mark.parametrize("appendonly", [False, True])
def test_plain_path_counts_and_logs_as_execute_does(tmp_path, appendonly):
    inline = _run_all(_shard(tmp_path / "plain", True, appendonly))
    through_execute = _run_all(_shard(tmp_path / "execute", False, appendonly))
    assert inline == through_execute
    replies, calls, errors, error_replies, hits, misses, dirty, logged = inline
    assert replies[2][1:3] == [b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"] * 2
    # Counted from RESETSTAT on (the first batch's first GET is not).
    assert (calls["get"], calls["incr"], calls["set"]) == ((5, 0, 1), (4, 0, 1), (4, 0, 1))
    assert (errors, error_replies, hits, misses) == ({"WRONGTYPE": 2, "ERR": 1}, 3, 4, 2)
    assert dirty == 13
    if appendonly:  # INCRBYFLOAT as its effect, the others as sent
        assert b"INCRBYFLOAT" not in logged and b"*4\r\n$3\r\nSET\r\n$1\r\nf\r\n$3\r\n1.5\r\n" in logged
        assert b"$4\r\nInCr\r\n" in logged


def test_plain_commands_take_the_inline_path(tmp_path):
    shard = _shard(tmp_path, True, False)
    shard.run_batch(_batch([b"SET", b"k", b"v"], [b"GET", b"k"], [b"get", b"k"], [b"MSET", b"a", b"1"]))
    table = shard.plain
    assert table[b"SET"] and table[b"GET"] and table[b"get"]
    assert table[b"MSET"] is False  # not single-key: execute runs it
    assert table[b"SET"].logs and not table[b"GET"].logs  # type: ignore[union-attr]


def test_resetstat_gives_plain_entries_the_new_rows(tmp_path):
    shard = _shard(tmp_path, True, False)
    shard.run_batch(_batch([b"GET", b"k"], [wire.Verb.RESETSTAT], [b"GET", b"k"], [b"GET", b"k"]))
    shard.run_batch(_batch([b"GET", b"k"]))
    assert shard.stats.report()[0]["get"][0] == 3


@pytest.mark.parametrize("plain", [True, False])
def test_a_plain_write_under_misconf_is_refused_as_execute_refuses_it(tmp_path, plain):
    """-MISCONF may come with any reply sent (a failed AOF write), in the
    middle of a batch: each plain write asks, reads go on."""
    shard = _shard(tmp_path, plain, False)
    shard.run_batch(_batch([b"SET", b"k", b"v"]))
    shard.persistence.misconf = "MISCONF the disk is full"  # type: ignore[union-attr]
    replies = wire.decode_replies(
        shard.run_batch(_batch([b"GET", b"k"], [b"SET", b"k", b"w"], [b"GET", b"k"]))
    )
    assert replies == [b"$1\r\nv\r\n", b"-MISCONF the disk is full\r\n", b"$1\r\nv\r\n"]
    calls, _, rejected, failed = shard.stats.report()[0]["set"][:4]
    assert (calls, rejected, failed) == (1, 1, 0)
