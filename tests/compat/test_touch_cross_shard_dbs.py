"""Access clocks of other shards' keys that a cross-shard operation only
reads, in databases other than 0 (the client's SELECTed database, a SELECT
inside MULTI, SWAPDB, MOVE, COPY ... DB), compared with redis-server's
OBJECT IDLETIME and OBJECT FREQ (every access touches)."""

from __future__ import annotations

import pytest

from tests.support.lfu import counting_accesses
from tests.support.placement import key_on
from tests.support.resp import ErrorReply, RespClient


def _exec(c: RespClient, *commands: tuple) -> object:
    assert c.command("MULTI") == b"OK"
    for command in commands:
        assert c.command(*command) == b"QUEUED"
    return c.command("EXEC")


A = key_on(0, "dbs-a-", shards=2)
B = key_on(1, "dbs-b-", shards=2)
T = key_on(1, "dbs-t-", shards=2)

CASES = {
    "selected-db": (3, lambda c: _exec(c, ("SET", A, "v2"), ("GET", B), ("TOUCH", T))),
    "select-inside": (
        0,
        lambda c: _exec(c, ("SET", A, "v2"), ("SELECT", 3), ("GET", B), ("TOUCH", T), ("SELECT", 0)),
    ),
    "swapdb-inside": (0, lambda c: _exec(c, ("SET", A, "v2"), ("GET", B), ("SWAPDB", 0, 3), ("GET", T))),
    "move": (3, lambda c: _exec(c, ("SET", A, "v2"), ("GET", B), ("MOVE", T, 0))),
    "copy-db": (3, lambda c: _exec(c, ("SET", A, "v2"), ("COPY", B, T, "DB", 0, "REPLACE"))),
    "script-db": (
        3,
        lambda c: c.command(
            "EVAL", "redis.call('set', KEYS[1], 'v2'); return redis.call('get', KEYS[2])", 2, A, B
        ),
    ),
}


def _clocks(c: RespClient, lfu: bool) -> dict:
    seen = {}
    for db in (0, 3):
        c.command("SELECT", db)
        for key in (A, B, T):
            value = c.command("OBJECT", "FREQ" if lfu else "IDLETIME", key)
            if value is not None and not lfu:
                value = "now" if value <= 1 else "idle" if value >= 1000 else value
            seen[db, key] = value
    c.command("SELECT", 0)
    return seen


@pytest.mark.parametrize("lfu", [False, True], ids=["lru", "lfu"])
@pytest.mark.parametrize("name", list(CASES))
def test_read_keys_clocks_in_other_databases(redis_and_shardkv_k12, name, lfu):
    real_port, ours_port, _ = redis_and_shardkv_k12
    db, run = CASES[name]
    seen = []
    for port in (real_port, ours_port):
        with RespClient(port) as c, counting_accesses(c, lfu):
            c.command("FLUSHALL")
            c.command("SET", "{p}s", "v")
            payload = c.command("DUMP", "{p}s")
            c.command("DEL", "{p}s")
            clock = ("FREQ", 100) if lfu else ("IDLETIME", 1000)
            for d in (0, 3):
                c.command("SELECT", d)
                for key in (A, B, T):
                    c.command("RESTORE", key, 0, payload, *clock, "REPLACE")
            c.command("SELECT", db)
            reply = run(c)
            assert not isinstance(reply, ErrorReply), reply
            seen.append(_clocks(c, lfu))
    assert seen[1] == seen[0]


STREAM_READS = {
    "xread": ("XREAD", "STREAMS", A, B, "0", "0"),
    "xread-last": ("XREAD", "STREAMS", A, B, "$", "$"),
    "xread-count": ("XREAD", "COUNT", 1, "STREAMS", A, B, "0", "0"),
    "xreadgroup": ("XREADGROUP", "GROUP", "g", "c", "STREAMS", A, B, ">", ">"),
}


@pytest.mark.parametrize("name", list(STREAM_READS))
def test_a_stream_read_across_shards_counts_as_redis(redis_and_shardkv_k12, name):
    """XREAD (its ``$`` resolved with ``__xlastids``) and XREADGROUP of
    streams on two shards: each stream's LFU counter gains what Redis's
    xreadCommand's lookups give it, no more."""
    real_port, ours_port, _ = redis_and_shardkv_k12
    seen = []
    for port in (real_port, ours_port):
        with RespClient(port) as c, counting_accesses(c):
            c.command("FLUSHALL")
            for key in (A, B):
                c.command("XADD", key, "1-1", "f", "v")
                c.command("XGROUP", "CREATE", key, "g", "0")
            reply = c.command(*STREAM_READS[name])
            seen.append((reply, [c.command("OBJECT", "FREQ", key) for key in (A, B)]))
    assert seen[1] == seen[0]
