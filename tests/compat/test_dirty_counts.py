"""INFO persistence's ``rdb_changes_since_last_save`` (Redis's
``server.dirty``) counted as Redis 7.0 counts it, command by command.

Each case deletes the keys the cases name, runs its setup, then its
commands, and compares the change of ``rdb_changes_since_last_save``
across the commands (and their replies) between a redis-server and a
shardkv of 4 shards and 2 acceptors: one module-scoped pair, one client
each.  The
keys ``A``..``D`` lie on four different shards, so commands that name
several of them run across shards (fan-outs such as MSET and DEL, and
operations one shard runs with the others' keys, such as RENAME, LMOVE,
MULTI/EXEC and EVAL); ``{t}``-tagged keys share a shard.

Redis counts a change per key MSET sets, per field HSET sets, per member
SADD adds or ZADD adds or updates, per element pushed, popped, removed or
trimmed, per entry XTRIM or XDEL removes, per key FLUSHALL removes; two
for an SMOVE that adds the member to the destination; one for an LMOVE
or RENAME whichever shards hold the keys; one for FUNCTION LOAD; none
for a write that changed nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from tests.support.placement import on_shards
from tests.support.servers import start_redis, start_shardkv

A, B, C, D = on_shards(0, 1, 2, 3, prefix="dirty")
LIBRARY = "#!lua name=dirtylib\nredis.register_function('dirtyf', function() return 1 end)"
THREE_WRITES = (
    "redis.call('set', KEYS[1], 1) redis.call('set', KEYS[2], 2) redis.call('incr', KEYS[1]) return 1"
)
FLUSH_BETWEEN = "redis.call('set', KEYS[1], 1) redis.call('flushall') redis.call('set', KEYS[1], 2) return 1"
GEO = ("13.361389", "38.115556", "p1", "15.087269", "37.502669", "p2")
X3 = [("XADD", A, f"1-{i}", "f", "v") for i in (1, 2, 3)]
# Every key the cases name (deleted around each: cheaper than FLUSHALL).
KEYS = [A, B, C, D, *("{t}" + k for k in "abcdlmqs")]
GROUP = [("XADD", A, "1-1", "f", "v"), ("XADD", A, "1-2", "f", "v"), ("XGROUP", "CREATE", A, "g", "0")]

# (id, setup, commands): the change of the count across ``commands``.
CASES = [
    # strings
    ("mset-one-shard", [], [("MSET", "{t}a", "1", "{t}b", "2", "{t}c", "3")]),
    ("mset-key-twice", [], [("MSET", "{t}a", "1", "{t}a", "2")]),
    ("mset-cross", [], [("MSET", A, "1", B, "2", C, "3", A, "4")]),
    ("mset-cross-held-values", [("MSET", A, "1", B, "2")], [("MSET", A, "1", B, "2")]),
    ("msetnx-one-shard", [], [("MSETNX", "{t}a", "1", "{t}b", "2")]),
    ("msetnx-held", [("SET", "{t}b", "x")], [("MSETNX", "{t}a", "1", "{t}b", "2")]),
    ("msetnx-cross-held", [("SET", B, "x")], [("MSETNX", A, "1", B, "2")]),
    ("incrby-0", [("SET", A, "5")], [("INCRBY", A, "0")]),
    ("incrbyfloat-0", [("SET", A, "5")], [("INCRBYFLOAT", A, "0")]),
    ("setrange-empty", [("SET", A, "abc")], [("SETRANGE", A, "1", "")]),
    ("setrange-empty-missing", [], [("SETRANGE", A, "1", "")]),
    ("append-empty", [("SET", A, "abc")], [("APPEND", A, "")]),
    ("append-empty-missing", [], [("APPEND", A, "")]),
    ("getset-same", [("SET", A, "1")], [("GETSET", A, "1")]),
    # keys
    ("del-cross", [("MSET", A, "1", B, "2", C, "3")], [("DEL", A, B, C, D)]),
    ("del-missing", [], [("DEL", A, B, "{t}q")]),
    ("rename-same-key", [("SET", A, "1")], [("RENAME", A, A), ("RENAMENX", A, A)]),
    ("renamenx-held", [("SET", "{t}a", "1"), ("SET", "{t}b", "2")], [("RENAMENX", "{t}a", "{t}b")]),
    ("renamenx-cross-held", [("SET", A, "1"), ("SET", B, "2")], [("RENAMENX", A, B)]),
    ("unlink-cross", [("MSET", A, "1", B, "2", C, "3")], [("UNLINK", A, B, C, D)]),
    ("rename-cross", [("SET", A, "1")], [("RENAME", A, B)]),
    ("rename-cross-over", [("SET", A, "1"), ("SET", B, "2")], [("RENAME", A, B)]),
    ("renamenx-cross", [("SET", A, "1")], [("RENAMENX", A, B)]),
    ("copy-cross", [("SET", A, "1")], [("COPY", A, B)]),
    ("copy-cross-replace", [("SET", A, "1"), ("SET", B, "2")], [("COPY", A, B, "REPLACE")]),
    ("expire-missing", [], [("EXPIRE", A, "100")]),
    ("expire", [("SET", A, "1")], [("EXPIRE", A, "100")]),
    ("persist", [("SET", A, "1", "EX", "100")], [("PERSIST", A)]),
    ("persist-no-ttl", [("SET", A, "1")], [("PERSIST", A)]),
    ("flushall", [("MSET", A, "1", B, "2", C, "3")], [("FLUSHALL",)]),
    ("flushall-empty", [], [("FLUSHALL",)]),
    ("flushdb", [("MSET", A, "1", B, "2", "{t}a", "3")], [("FLUSHDB",)]),
    ("flushdb-empty", [], [("FLUSHDB",)]),
    ("swapdb", [], [("SWAPDB", "0", "1")]),
    # hashes
    ("hset-several", [], [("HSET", A, "f1", "a", "f2", "b", "f3", "c")]),
    ("hset-several-one-held", [("HSET", A, "f1", "a")], [("HSET", A, "f1", "a", "f2", "b")]),
    ("hmset-several", [], [("HMSET", A, "f1", "a", "f2", "b")]),
    ("hdel-several", [("HSET", A, "a", "1", "b", "2", "c", "3")], [("HDEL", A, "a", "b", "z")]),
    ("hincrby-0", [("HSET", A, "f", "5")], [("HINCRBY", A, "f", "0")]),
    # sets
    ("sadd-duplicates", [], [("SADD", A, "a", "a", "b")]),
    ("sadd-some-held", [("SADD", A, "a")], [("SADD", A, "a", "b", "c")]),
    ("srem-several", [("SADD", A, "a", "b", "c")], [("SREM", A, "a", "b", "z")]),
    ("spop-count-all", [("SADD", A, "a", "b", "c")], [("SPOP", A, "5")]),
    ("smove-missing-destination", [("SADD", "{t}s", "m")], [("SMOVE", "{t}s", "{t}d", "m")]),
    ("smove-destination", [("SADD", "{t}s", "m", "n"), ("SADD", "{t}d", "x")], [("SMOVE", "{t}s", "{t}d", "m")]),
    ("smove-destination-holds-it", [("SADD", "{t}s", "m", "n"), ("SADD", "{t}d", "m")], [("SMOVE", "{t}s", "{t}d", "m")]),
    ("smove-cross", [("SADD", A, "m")], [("SMOVE", A, B, "m")]),
    ("smove-cross-destination-holds-it", [("SADD", A, "m"), ("SADD", B, "m")], [("SMOVE", A, B, "m")]),
    ("sinterstore-cross", [("SADD", A, "a", "b"), ("SADD", B, "b", "c")], [("SINTERSTORE", C, A, B)]),
    ("sinterstore-cross-empty", [("SADD", A, "a"), ("SADD", B, "c")], [("SINTERSTORE", C, A, B)]),
    ("sunionstore-cross", [("SADD", A, "a", "b"), ("SADD", B, "b", "c")], [("SUNIONSTORE", C, A, B)]),
    # lists
    ("lpush-several", [], [("LPUSH", A, "a", "b", "c")]),
    ("rpushx-several", [("RPUSH", A, "x")], [("RPUSHX", A, "a", "b")]),
    ("lpop-count", [("RPUSH", A, "a", "b", "c")], [("LPOP", A, "2")]),
    ("lmpop-count", [("RPUSH", A, "a", "b", "c")], [("LMPOP", "1", A, "LEFT", "COUNT", "2")]),
    ("lrem-several", [("RPUSH", A, "a", "b", "a", "a")], [("LREM", A, "0", "a")]),
    ("ltrim", [("RPUSH", A, "a", "b", "c", "d")], [("LTRIM", A, "1", "1")]),
    ("lset-same", [("RPUSH", A, "a", "b")], [("LSET", A, "0", "a")]),
    ("lmove-one-shard", [("RPUSH", "{t}l", "a", "b")], [("LMOVE", "{t}l", "{t}m", "LEFT", "RIGHT")]),
    ("lmove-cross", [("RPUSH", A, "a", "b")], [("LMOVE", A, B, "LEFT", "RIGHT")]),
    ("rpoplpush-cross-missing", [], [("RPOPLPUSH", A, B)]),
    # sorted sets
    ("zadd-updates", [("ZADD", A, "1", "a", "2", "b")], [("ZADD", A, "5", "a", "2", "b", "3", "c")]),
    ("zrem-several", [("ZADD", A, "1", "a", "2", "b")], [("ZREM", A, "a", "b", "c")]),
    ("zpopmin-count", [("ZADD", A, "1", "a", "2", "b", "3", "c")], [("ZPOPMIN", A, "2")]),
    ("zremrangebyscore", [("ZADD", A, "1", "a", "2", "b", "3", "c")], [("ZREMRANGEBYSCORE", A, "1", "2")]),
    ("zunionstore-cross", [("ZADD", A, "1", "a"), ("ZADD", B, "2", "b")], [("ZUNIONSTORE", C, "2", A, B)]),
    ("zinterstore-cross-empty", [("ZADD", A, "1", "a"), ("ZADD", B, "2", "b")], [("ZINTERSTORE", C, "2", A, B)]),
    # streams
    ("xadd", [], [("XADD", A, "1-1", "f", "v")]),
    ("xadd-maxlen", X3[:2], [("XADD", A, "MAXLEN", "1", "9-1", "f", "v")]),
    ("xtrim", X3, [("XTRIM", A, "MAXLEN", "1")]),
    ("xtrim-nothing", X3, [("XTRIM", A, "MAXLEN", "5")]),
    ("xdel", X3, [("XDEL", A, "1-1", "1-2", "9-9")]),
    ("xdel-nothing", X3, [("XDEL", A, "9-9")]),
    ("xreadgroup", GROUP, [("XREADGROUP", "GROUP", "g", "c", "STREAMS", A, ">")]),
    ("xreadgroup-nothing", GROUP[:2] + [("XGROUP", "CREATE", A, "g", "$")], [("XREADGROUP", "GROUP", "g", "c", "STREAMS", A, ">")]),
    ("xack", [*GROUP, ("XREADGROUP", "GROUP", "g", "c", "STREAMS", A, ">")], [("XACK", A, "g", "1-1", "1-2", "1-3")]),
    ("xclaim", [*GROUP, ("XREADGROUP", "GROUP", "g", "c", "STREAMS", A, ">")], [("XCLAIM", A, "g", "d", "0", "1-1", "1-2")]),
    ("xautoclaim", [*GROUP, ("XREADGROUP", "GROUP", "g", "c", "STREAMS", A, ">")], [("XAUTOCLAIM", A, "g", "d", "0", "0")]),
    # other types, STORE forms
    ("sort-store-cross", [("RPUSH", A, "3", "1", "2")], [("SORT", A, "STORE", B)]),
    ("sort-store-cross-empty", [], [("SORT", A, "STORE", B)]),
    ("bitop-cross", [("SET", A, "ab"), ("SET", B, "cd")], [("BITOP", "AND", C, A, B)]),
    ("bitop-cross-empty", [], [("BITOP", "AND", C, A, B)]),
    ("bitfield", [], [("BITFIELD", A, "SET", "u8", "0", "1", "SET", "u8", "8", "2")]),
    ("bitfield-get", [("SET", A, "a")], [("BITFIELD", A, "GET", "u8", "0")]),
    ("pfadd-held", [("PFADD", A, "a")], [("PFADD", A, "a")]),
    ("pfmerge-cross", [("PFADD", A, "a", "b"), ("PFADD", B, "c")], [("PFMERGE", C, A, B)]),
    ("geosearchstore-cross", [("GEOADD", A, *GEO)], [("GEOSEARCHSTORE", B, A, "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km")]),
    # scripts, functions, transactions
    ("eval-three-writes", [], [("EVAL", THREE_WRITES, "2", "{t}a", "{t}b")]),
    ("eval-three-writes-cross", [], [("EVAL", THREE_WRITES, "2", A, B)]),
    ("eval-mset", [], [("EVAL", "return redis.call('mset', KEYS[1], 1, KEYS[2], 2)", "2", "{t}a", "{t}b")]),
    ("eval-nothing", [], [("EVAL", "return redis.call('del', KEYS[1])", "1", A)]),
    ("function-load", [], [("FUNCTION", "LOAD", "REPLACE", LIBRARY)]),
    ("function-delete", [("FUNCTION", "LOAD", "REPLACE", LIBRARY)], [("FUNCTION", "DELETE", "dirtylib")]),
    ("multi-exec-one-shard", [], [("MULTI",), ("SET", "{t}a", "1"), ("MSET", "{t}b", "1", "{t}c", "2"), ("EXEC",)]),
    ("multi-exec-cross", [], [("MULTI",), ("SET", A, "1"), ("MSET", C, "1", D, "2"), ("DEL", A, C), ("EXEC",)]),
    ("multi-exec-blpop-nothing", [], [("MULTI",), ("BLPOP", A, "0"), ("BLPOP", A, B, "0"), ("EXEC",)]),
    ("multi-exec-nothing", [], [("MULTI",), ("DEL", A), ("SREM", B, "x"), ("EXEC",)]),
    ("multi-exec-flushall", [("MSET", A, "1", B, "2")], [("MULTI",), ("SET", C, "1"), ("FLUSHALL",), ("EXEC",)]),
    # A run's FLUSHALL with no save rules: the run's writes after it count
    # once (they once counted twice), and a script's write before the
    # FLUSHALL that sent it across shards once (twice: its undone try's too).
    ("eval-set-flushall-set", [("MSET", A, "1", B, "2", C, "3", D, "4")], [("EVAL", FLUSH_BETWEEN, "1", "{t}a")]),
    ("eval-set-flushall", [("SET", A, "1")], [("EVAL", "redis.call('set', KEYS[1], 1) redis.call('flushall')", "1", "{t}a")]),
    ("watched-exec-flushall", [("MSET", A, "1", B, "2")],
     [("WATCH", "{t}q"), ("MULTI",), ("SET", "{t}a", "1"), ("FLUSHALL",), ("SET", "{t}a", "2"), ("SET", A, "3"), ("EXEC",)]),
]  # fmt: skip

# (id, setup, a blocking command, the write that serves it), one shard or across:
# Redis 7.0 counts a served BLPOP, BRPOP, BLMOVE, BRPOPLPUSH none, a served
# BLMPOP or BZ*POP as its pops, a served XREADGROUP the consumer it creates.
SERVED = [
    ("blpop", [], ("BLPOP", A, "0"), ("RPUSH", A, "1", "2")),
    ("blpop-cross", [], ("BLPOP", B, A, "0"), ("RPUSH", A, "1", "2")),
    ("blmpop-cross", [], ("BLMPOP", "0", "2", B, A, "LEFT", "COUNT", "3"), ("RPUSH", A, "1", "2", "3")),
    ("brpoplpush", [], ("BRPOPLPUSH", "{t}a", "{t}b", "0"), ("RPUSH", "{t}a", "1", "2")),
    ("blmove", [], ("BLMOVE", "{t}a", "{t}b", "LEFT", "RIGHT", "0"), ("RPUSH", "{t}a", "1")),
    ("blmpop", [], ("BLMPOP", "0", "1", A, "LEFT", "COUNT", "3"), ("RPUSH", A, "1", "2", "3")),
    ("bzpopmin", [], ("BZPOPMIN", A, "0"), ("ZADD", A, "1", "a", "2", "b")),
    ("xreadgroup", [("XGROUP", "CREATE", A, "g", "$", "MKSTREAM"), ("XGROUP", "CREATECONSUMER", A, "g", "c")],
     ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", A, ">"), ("XADD", A, "1-1", "f", "v")),
    ("xreadgroup-new-consumer", [("XGROUP", "CREATE", A, "g", "$", "MKSTREAM")],
     ("XREADGROUP", "GROUP", "g", "new", "BLOCK", "0", "STREAMS", A, ">"), ("XADD", A, "1-1", "f", "v")),
    # Across shards (the source and the destination, or the keys, on different shards):
    ("blmove-across", [], ("BLMOVE", A, B, "LEFT", "RIGHT", "0"), ("RPUSH", A, "1")),
    ("brpoplpush-across", [], ("BRPOPLPUSH", A, B, "0"), ("RPUSH", A, "1", "2")),
    ("blpop-across", [], ("BLPOP", A, B, "0"), ("RPUSH", B, "1")),
    ("xreadgroup-across", [("XGROUP", "CREATE", A, "g", "$", "MKSTREAM"), ("XGROUP", "CREATE", B, "g", "$", "MKSTREAM")],
     ("XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", A, B, ">", ">"), ("XADD", B, "1-1", "f", "v")),
]  # fmt: skip


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, redis.Redis]]:
    """A client of a redis-server and one of a shardkv (4 shards, 2 acceptors)."""
    real = start_redis()
    try:
        ours = start_shardkv(shards=4, acceptors=2)
    except BaseException:
        real.stop()
        raise
    clients = {
        name: redis.Redis(port=server.port, single_connection_client=True)
        for name, server in (("redis", real), ("shardkv", ours))
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()
        real.stop()
        ours.stop()


def _changes(client: redis.Redis) -> int:
    return client.info("persistence")["rdb_changes_since_last_save"]


def _run(client: redis.Redis, setup: list, commands: list) -> tuple:
    """The count's change across ``commands`` after ``setup`` (on the
    keys deleted first), and their replies (SPOP's members sorted)."""
    client.delete(*KEYS)
    for args in setup:
        client.execute_command(*args)
    before = _changes(client)
    replies = [client.execute_command(*args) for args in commands]
    replies = [sorted(r) if a[0] == "SPOP" else r for a, r in zip(commands, replies, strict=True)]
    return _changes(client) - before, replies


@pytest.mark.parametrize(("setup", "commands"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_changes_counted_as_redis(clients, setup, commands):
    got = {name: _run(client, setup, commands) for name, client in clients.items()}
    assert got["shardkv"] == got["redis"]


def _served(client: redis.Redis, setup: list, blocking: tuple, write: tuple) -> tuple:
    """The count's change across ``write``, which serves ``blocking`` (sent
    on a connection of its own, blocked first), and the blocked reply."""
    client.delete(*KEYS)
    for args in setup:
        client.execute_command(*args)
    before = _changes(client)
    blocked = redis.Redis(port=client.connection_pool.connection_kwargs["port"], socket_timeout=10)
    replies: list = []
    thread = threading.Thread(target=lambda: replies.append(blocked.execute_command(*blocking)))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while client.info("clients")["blocked_clients"] < 1:
            assert time.monotonic() < deadline, "the command never blocked"
            time.sleep(0.005)
        client.execute_command(*write)
    finally:
        thread.join(10)
        blocked.close()
    return _changes(client) - before, replies


@pytest.mark.parametrize(("setup", "blocking", "write"), [c[1:] for c in SERVED], ids=[c[0] for c in SERVED])
def test_served_blocked_commands_counted_as_redis(clients, setup, blocking, write):
    got = {name: _served(client, setup, blocking, write) for name, client in clients.items()}
    assert got["shardkv"] == got["redis"]


def test_flushall_with_save_rules_saves_as_redis(clients):
    """With ``save`` rules Redis's FLUSHALL saves the emptied data at once
    (flushAllDataAndResetRDB's rdbSave): the count is 0 after it, the
    writes after it in a transaction count, and rdb_saves does not count
    it (before, shardkv counted the keys it removed and saved nothing, so
    that a start after it loaded them again)."""
    got = {}
    for name, client in clients.items():
        client.delete(*KEYS)
        client.config_set("save", "3600 1")
        try:
            client.mset({A: "1", B: "2", C: "3"})
            saves = client.info("persistence")["rdb_saves"]
            client.flushall()
            after = _changes(client)
            pipe = client.pipeline(transaction=True)
            pipe.set(A, "1").flushall().set(B, "1").set("{t}a", "2")
            pipe.execute()
            got[name] = (after, _changes(client), client.info("persistence")["rdb_saves"] - saves)
        finally:
            client.config_set("save", "")
    assert got["shardkv"] == got["redis"] == (0, 2, 0)


def _flushed_by_a_run(client: redis.Redis, how: str) -> tuple:
    if how == "eval":
        value = client.eval(
            "redis.call('set', KEYS[1], 1) redis.call('flushall') redis.call('set', KEYS[1], 2) return 1",
            1,
            "{t}a",
        )
    else:  # a WATCHed EXEC: one operation over every shard, not command by command
        with client.pipeline(transaction=True) as pipe:
            pipe.watch("{t}q")  # (on the pipeline's connection, which then runs the EXEC)
            pipe.multi()
            pipe.set("{t}a", "1").flushall().set("{t}a", "2").set(A, "3")
            value = pipe.execute()
    return value


@pytest.mark.parametrize("how", ["eval", "watched-exec"])
def test_a_runs_flushall_with_save_rules_saves_on_every_shard_as_redis(clients, how):
    """A script's FLUSHALL, or a WATCHed EXEC's, saves as Redis's does: on
    every shard (the keys set before lie on four), the count after it
    being the changes the run made after the FLUSHALL (before, a script's,
    run over every shard, saved nothing and counted every key removed, and
    a start after it loaded them again)."""
    got = {}
    for name, client in clients.items():
        client.delete(*KEYS)
        client.config_set("save", "3600 1")
        try:
            client.mset({A: "1", B: "2", C: "3", D: "4"})
            saves = client.info("persistence")["rdb_saves"]
            value = _flushed_by_a_run(client, how)
            got[name] = (value, _changes(client), client.info("persistence")["rdb_saves"] - saves)
        finally:
            client.config_set("save", "")
    assert got["shardkv"] == got["redis"]
