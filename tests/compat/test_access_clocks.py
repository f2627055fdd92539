"""Per-key access clocks: OBJECT IDLETIME, OBJECT FREQ, TOUCH, and
RESTORE's IDLETIME and FREQ, compared with redis-server.

No test sleeps: RESTORE ... IDLETIME 1000 makes a key that has been idle
for 1000 s, and OBJECT FREQ under ``lfu-log-factor 0`` (every access counts)
and ``lfu-decay-time 0`` (no decay) is an exact count.  Values are never
small integers, which Redis shares between keys (with their clock).
"""

from __future__ import annotations

import time

import pytest

from tests.support.placement import on_shards

NO_TOUCH = [
    ("TTL",),
    ("PTTL",),
    ("EXPIRETIME",),
    ("PEXPIRETIME",),
    ("TYPE",),
    ("EXISTS",),
    ("OBJECT", "ENCODING"),
    ("OBJECT", "REFCOUNT"),
]
TOUCH = [("GET",), ("TOUCH",), ("STRLEN",), ("DUMP",), ("EXPIRE", "10000"), ("PERSIST",)]


def _both(compare, *args: object) -> list:
    return [c.execute_command(*args) for c in (compare.real, compare.ours)]


@pytest.fixture
def lfu(compare):
    """An LFU policy whose counter is exact: each access counts, none decays."""
    _configure(compare, {"maxmemory-policy": "allkeys-lfu", "lfu-log-factor": "0", "lfu-decay-time": "0"})
    try:
        yield compare
    finally:
        _configure(compare, {"maxmemory-policy": "noeviction", "lfu-log-factor": "10", "lfu-decay-time": "1"})


def _configure(compare, settings: dict[str, str]) -> None:
    for c in (compare.real, compare.ours):
        for name, value in settings.items():
            c.config_set(name, value)


def _idle_key(compare, key: str) -> None:
    compare("SET", "src", "some value")
    payload = compare("DUMP", "src")
    compare("RESTORE", key, "0", payload, "IDLETIME", "1000", "REPLACE")


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
def test_restore_idletime_sets_the_idle_time(compare, policy):
    _configure(compare, {"maxmemory-policy": policy})
    try:
        _idle_key(compare, "k")
        for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
            assert 1000 <= idle <= 1010
        compare("GET", "k")
        for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
            assert idle <= 1
    finally:
        _configure(compare, {"maxmemory-policy": "noeviction"})


@pytest.mark.parametrize("command", NO_TOUCH, ids=" ".join)
def test_lookups_that_are_not_accesses(compare, command):
    """TTL, TYPE, EXISTS, OBJECT... leave the clock (Redis's LOOKUP_NOTOUCH)."""
    _idle_key(compare, "k")
    compare(*command, "k")
    for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
        assert idle >= 1000


def test_scan_type_filter_is_not_an_access(compare):
    _idle_key(compare, "k")
    # (SCAN's reply is [cursor, keys]: the keys' order is the servers' own.)
    real, ours = _both(compare, "SCAN", "0", "TYPE", "string", "COUNT", "1000")
    assert real[0] == ours[0] == 0 and sorted(real[1]) == sorted(ours[1])
    for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
        assert idle >= 1000


@pytest.mark.parametrize("command", TOUCH, ids=lambda c: c[0])
def test_lookups_that_are_accesses(compare, command):
    _idle_key(compare, "k")
    compare(command[0], "k", *command[1:])
    for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
        assert idle <= 1


def test_missing_keys_and_the_errors_of_each_policy(compare, lfu):
    compare("SET", "k", "some value")
    compare("OBJECT", "IDLETIME", "k")  # LFU: the error
    compare("OBJECT", "IDLETIME", "nope")  # a missing key first
    compare("OBJECT", "FREQ", "nope")
    _configure(compare, {"maxmemory-policy": "volatile-lru"})
    compare("OBJECT", "FREQ", "k")
    compare("OBJECT", "FREQ", "nope")


def test_freq_counts_accesses(lfu):
    compare = lfu
    compare("SET", "k", "some value")
    compare("OBJECT", "FREQ", "k")  # a new key: LFU_INIT_VAL
    for _ in range(3):
        compare("GET", "k")
    compare("OBJECT", "FREQ", "k")
    for command in NO_TOUCH:
        compare(*command, "k")
    compare("OBJECT", "FREQ", "k")
    compare("TOUCH", "k", "nope")
    compare("SET", "k", "another value")  # an overwrite: one access
    compare("OBJECT", "FREQ", "k")
    compare("RPUSH", "l", "a")
    compare("OBJECT", "FREQ", "l")
    compare("RPUSH", "l", "b")
    compare("LRANGE", "l", "0", "-1")
    compare("HSET", "h", "f", "v")
    compare("HSET", "h", "g", "w")
    compare("HGET", "h", "f")
    for key in ("k", "l", "h"):
        compare("OBJECT", "FREQ", key)


def test_freq_counts_pipelined_accesses(lfu):
    """A pipeline's GET, SET, INCR and DECR (a worker may run them inline,
    outside their handlers) count as single commands do."""
    compare = lfu
    replies = []
    for c in (compare.real, compare.ours):
        pipe = c.pipeline(transaction=False)
        for i in range(4):
            pipe.set(f"k{i}", "some value")
            pipe.get(f"k{i}")
            pipe.set(f"n{i}", "12345678901")
            pipe.incr(f"n{i}")
            pipe.decr(f"n{i}")
            pipe.get(f"k{i}")
        for i in range(4):
            pipe.object("FREQ", f"k{i}")
            pipe.object("FREQ", f"n{i}")
        replies.append(pipe.execute())
    assert replies[1] == replies[0]


def test_policy_set_in_a_pipeline_counts_the_commands_after_it(compare):
    """CONFIG SET maxmemory-policy allkeys-lfu, then GET, SET, INCR in the
    same pipeline: they count under LFU, and OBJECT FREQ stays an LFU
    counter (0..255), of a key set before the switch too."""
    replies = []
    try:
        for c in (compare.real, compare.ours):
            c.set("old", "some value")
            pipe = c.pipeline(transaction=False)
            pipe.config_set("maxmemory-policy", "allkeys-lfu")
            pipe.config_set("lfu-log-factor", "0")
            pipe.config_set("lfu-decay-time", "0")
            pipe.set("k", "some value")
            pipe.get("k")
            pipe.set("n", "12345678901")
            pipe.incr("n")
            pipe.object("FREQ", "k")
            pipe.object("FREQ", "n")
            pipe.object("FREQ", "old")
            replies.append(pipe.execute())
    finally:
        _configure(compare, {"maxmemory-policy": "noeviction", "lfu-log-factor": "10", "lfu-decay-time": "1"})
    for reply in replies:
        assert 0 <= reply.pop() <= 255  # (Redis reads the key's LRU bits as a counter)
    assert replies[1] == replies[0]


# Commands that look their key up and then write it: Redis counts the lookup
# and keeps the counter when it changes the value in place or overwrites it
# (dbOverwrite), one access; SET looks the key up once more with GET, and
# GETSET reads it and then sets it (setKey's lookup), two.
READ_THEN_WRITE = [
    ("SET", "k", "another value", "XX"),
    ("SET", "k", "another value", "NX"),
    ("SET", "k", "some value", "EX", "1000"),
    ("SET", "k", "some value", "GET"),
    ("SETNX", "k", "x"),
    ("SET", "k", "12345678901"),  # (no small integer: Redis shares those)
    ("INCR", "k"),
    ("DECRBY", "k", "3"),
    ("INCRBYFLOAT", "k", "1.5"),
    ("APPEND", "k", "xyz"),
    ("SETRANGE", "k", "1", "ab"),
    ("SETRANGE", "k", "1", ""),
    ("GETSET", "k", "some value"),
    ("SETEX", "k", "1000", "some value"),
    ("SETBIT", "b", "1", "1"),
    ("SETBIT", "b", "9", "1"),
    ("BITFIELD", "b", "SET", "u8", "0", "5"),
    ("BITFIELD", "b", "INCRBY", "u8", "0", "1"),
    ("PFADD", "p", "a"),
    ("PFADD", "p", "b"),
    ("PFCOUNT", "p"),
    ("PFMERGE", "p", "p"),
    ("INCRBY", "n", "100000"),  # (a new key)
    ("APPEND", "m", "xyz"),  # (a new key)
]


def test_read_then_write_commands_count_their_accesses(lfu):
    compare = lfu
    compare("SET", "k", "some value")
    for command in READ_THEN_WRITE:
        compare(*command)
        compare("OBJECT", "FREQ", command[1])


def test_restore_freq_and_the_clock_rename_and_move_carry(lfu):
    compare = lfu
    compare("SET", "src", "some value")
    payload = compare("DUMP", "src")
    compare("RESTORE", "a{t}", "0", payload, "FREQ", "100")
    compare("OBJECT", "FREQ", "a{t}")
    compare("GET", "a{t}")
    compare("RENAME", "a{t}", "b{t}")  # the object moves: its counter too
    compare("OBJECT", "FREQ", "b{t}")
    compare("MOVE", "b{t}", "3")
    for c in (compare.real, compare.ours):
        assert c.execute_command("SELECT", "3")
    compare("OBJECT", "FREQ", "b{t}")
    compare("COPY", "b{t}", "c{t}")  # a copy is a new object
    compare("OBJECT", "FREQ", "c{t}")
    compare("OBJECT", "FREQ", "b{t}")
    compare("FLUSHDB")
    for c in (compare.real, compare.ours):
        assert c.execute_command("SELECT", "0")
    # IDLETIME is ignored under an LFU policy, FREQ under any other.
    compare("RESTORE", "i", "0", payload, "IDLETIME", "1000")
    compare("OBJECT", "FREQ", "i")
    _configure(compare, {"maxmemory-policy": "allkeys-lru"})
    compare("RESTORE", "f", "0", payload, "FREQ", "100")
    for idle in _both(compare, "OBJECT", "IDLETIME", "f"):
        assert idle <= 1


@pytest.mark.parametrize("src_shard,dst_shard", [(0, 1), (1, 0), (2, 3)])
def test_rename_across_shards_carries_the_counter(lfu, src_shard, dst_shard):
    """A RENAME, a MULTI's RENAME and a script's, between keys of two
    shards: the destination keeps the source's counter (the object moves)."""
    compare = lfu
    (src,) = on_shards(src_shard, prefix="src")
    (dst,) = on_shards(dst_shard, prefix="dst")
    compare("SET", "v", "some value")
    payload = compare("DUMP", "v")
    compare("RESTORE", src, "0", payload, "FREQ", "100")
    compare("GET", src)
    compare("RENAME", src, dst)
    compare("OBJECT", "FREQ", dst)
    compare("RENAME", dst, src)
    compare("OBJECT", "FREQ", src)
    for c in (compare.real, compare.ours):
        with c.pipeline(transaction=True) as p:
            p.rename(src, dst).set("other", "x").get(dst)
            p.execute()
    compare("OBJECT", "FREQ", dst)
    compare("EVAL", "return redis.call('rename', KEYS[1], KEYS[2])", 2, dst, src)
    compare("OBJECT", "FREQ", src)
    compare("EVAL", "return redis.call('rename', ARGV[1], ARGV[2])", 0, src, dst)  # undeclared keys
    compare("OBJECT", "FREQ", dst)


def test_restore_option_errors(compare):
    compare("SET", "src", "some value")
    payload = compare("DUMP", "src")
    for options in (
        ["IDLETIME", "-1"],
        ["IDLETIME", "x"],
        ["IDLETIME"],
        ["FREQ", "-1"],
        ["FREQ", "256"],
        ["FREQ", "1.5"],
        ["IDLETIME", "5", "FREQ", "5"],
        ["FREQ", "5", "IDLETIME", "5"],
        ["IDLETIME", "5", "IDLETIME", "6"],
        ["FREQ", "255"],
    ):
        compare("RESTORE", "n", "0", payload, "REPLACE", *options)


# -- CLIENT NO-TOUCH (Redis 7.2's: redis-server 7.0 lacks it, so shardkv alone,
# against what Redis 7.2's lookupKey and dbSetValue do) --------------------------


def test_no_touch_reads_leave_the_idle_time(compare):
    """A NO-TOUCH client's reads (a GET, an MGET across shards, a script's
    GET, a blocking pop that finds its list, in another database too) leave
    the keys' LRU clocks; its TOUCH does not; OFF and RESET end it."""
    ours = compare.ours
    for db in (0, 3):
        pipe = ours.pipeline(transaction=False)
        pipe.select(db)
        pipe.set("src", "some value").dump("src")
        pipe.delete("src").rpush("src", "x", "y").dump("src")
        (_, _, payload, _, _, list_payload) = pipe.execute()
        pipe = ours.pipeline(transaction=False)  # (one connection: the mode is the connection's)
        pipe.select(db)
        for key in ("a", "b", "c", "t"):
            pipe.restore(key, 0, payload, idletime=1000, replace=True)
        pipe.restore("l", 0, list_payload, idletime=1000, replace=True)
        pipe.execute_command("CLIENT", "NO-TOUCH", "ON")
        at_info = len(pipe)
        pipe.client_info()
        pipe.get("a").mget("a", "b", "nope").eval("return redis.call('get', KEYS[1])", 1, "c")
        pipe.blpop(["l"], 1).strlen("b").set("c", "another value")
        pipe.touch("t", "nope")
        at_idle = len(pipe)
        for key in ("a", "b", "c", "l", "t"):
            pipe.object("IDLETIME", key)
        pipe.execute_command("CLIENT", "NO-TOUCH", "OFF").get("b")
        at_off = len(pipe)
        pipe.object("IDLETIME", "b")
        pipe.execute_command("CLIENT", "NO-TOUCH", "ON").execute_command("RESET").select(db)
        pipe.get("c").object("IDLETIME", "c").client_info()
        replies = pipe.execute()
        assert "T" in replies[at_info]["flags"] and "T" not in replies[-1]["flags"]
        idle = dict(zip("abclt", replies[at_idle : at_idle + 5], strict=True))
        assert min(idle["a"], idle["b"], idle["c"], idle["l"]) >= 1000, idle  # (SET keeps c's: dbSetValue)
        assert idle["t"] <= 1  # TOUCH touches
        assert replies[at_off] <= 1 and replies[-2] <= 1  # OFF, and after RESET


def test_no_touch_leaves_the_lfu_counters(lfu):
    """Under an exact LFU counter: a NO-TOUCH client's reads and overwrites
    count nothing, a new key starts at LFU_INIT_VAL, TOUCH counts one."""
    ours = lfu.ours
    ours.set("k", "some value")
    ours.rpush("l", "a", "b")
    pipe = ours.pipeline(transaction=False)
    pipe.execute_command("CLIENT", "NO-TOUCH", "ON")
    pipe.get("k").mget("k", "l", "k").lrange("l", 0, -1).hget("l", "f")
    pipe.set("k", "another value").append("k", "!").rpush("l", "c").set("n", "a new value")
    pipe.object("FREQ", "k").object("FREQ", "l").object("FREQ", "n")
    pipe.touch("k").object("FREQ", "k")
    replies = pipe.execute(raise_on_error=False)
    assert replies[-5:] == [5, 5, 5, 1, 6]


def _blocked(ours, n: int) -> None:
    deadline = time.monotonic() + 10
    while ours.info("clients")["blocked_clients"] != n:
        assert time.monotonic() < deadline, f"never {n} blocked clients"
        time.sleep(0.01)


def test_a_served_blocked_command_touches_as_its_own_client(compare):
    """A blocked BLMOVE served by another client's push runs as its own
    client, as Redis 7.2 runs it again with ``current_client`` that client:
    a touching one's stamps the destination though a NO-TOUCH client
    pushed; a NO-TOUCH one's leaves it though a touching client pushed.
    (Both took the pushing entry's mode.)"""
    ours = compare.ours
    ours.rpush("{t}d", "x")
    payload = ours.dump("{t}d")
    idle = []
    for blocked_no_touch in (False, True):
        ours.restore("{t}d", 0, payload, idletime=1000, replace=True)
        waiter = ours.connection_pool.get_connection()
        pusher = ours.connection_pool.get_connection()
        try:
            for conn, on in ((waiter, blocked_no_touch), (pusher, not blocked_no_touch)):
                conn.send_command("CLIENT", "NO-TOUCH", "ON" if on else "OFF")
                assert conn.read_response() == b"OK"
            waiter.send_command("BLMOVE", "{t}s", "{t}d", "LEFT", "LEFT", "10")
            _blocked(ours, 1)
            pusher.send_command("RPUSH", "{t}s", "y")
            assert pusher.read_response() == 1
            assert waiter.read_response() == b"y"
        finally:
            for conn in (waiter, pusher):
                conn.send_command("CLIENT", "NO-TOUCH", "OFF")
                conn.read_response()
                ours.connection_pool.release(conn)
        idle.append(ours.object("IDLETIME", "{t}d"))
    assert idle[0] <= 1 and idle[1] >= 1000, idle
