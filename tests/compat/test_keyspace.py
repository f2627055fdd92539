"""Keyspace commands (any type of key), compared with a real redis-server."""

from __future__ import annotations

import random

import pytest
import redis

from shardkv.protocol.router import Router

FAR = 4102444800  # 2100-01-01 in seconds
FAR_MS = FAR * 1000
ROUTER = Router(4)


def test_type_exists_touch_unlink(compare):
    compare("MSET", "a", "1", "b", "2", "c", "3", "d", "4")
    compare("HSET", "h", "f", "v")
    compare("SADD", "s", "m")
    compare("ZADD", "z", "1", "m")
    for key in ("a", "h", "s", "z", "nope"):
        compare("TYPE", key)
    compare("EXISTS", "a", "b", "a", "nope", "h")
    compare("TOUCH", "a", "b", "nope", "c")
    compare("UNLINK", "a", "b", "nope")
    compare("DEL", "c", "d", "c")
    compare("EXISTS", "a", "b", "c", "d")
    compare("TYPE", "a", "b")
    compare("UNLINK")


def test_expiretime(compare):
    compare("SET", "k", "v")
    compare("EXPIRETIME", "k")
    compare("PEXPIRETIME", "k")
    compare("EXPIRETIME", "nope")
    compare("PEXPIRETIME", "nope")
    compare("EXPIREAT", "k", FAR)
    compare("EXPIRETIME", "k")
    compare("PEXPIRETIME", "k")
    compare("PEXPIREAT", "k", FAR_MS + 999)
    compare("EXPIRETIME", "k")
    compare("PEXPIRETIME", "k")
    compare("PERSIST", "k")
    compare("PEXPIRETIME", "k")
    compare("HSET", "h", "f", "v")
    compare("PEXPIREAT", "h", FAR_MS)
    compare("PEXPIRETIME", "h")


def test_object_encoding_strings(compare):
    for value in (
        "hello",
        "9223372036854775807",
        "9223372036854775808",
        "-1",
        "01",
        "0",
        "-0",
        "1.5",
        "x" * 44,
        "x" * 45,
        "1" * 21,
        "",
    ):
        compare("SET", "s", value)
        compare("OBJECT", "ENCODING", "s")
        compare("OBJECT", "REFCOUNT", "s")
    compare("INCR", "n")
    compare("OBJECT", "ENCODING", "n")
    compare("OBJECT", "ENCODING", "nope")


def test_object_encoding_containers(compare):
    compare("HSET", "h", "f", "v")
    compare("HSET", "h64", "f", "x" * 64)
    compare("HSET", "h65", "f", "x" * 65)
    compare("HSET", "hf65", "f" * 65, "x")
    compare("HSET", "h128", *[x for i in range(512) for x in ("f%d" % i, "v")])
    compare("HSET", "h129", *[x for i in range(513) for x in ("f%d" % i, "v")])
    for key in ("h", "h64", "h65", "hf65", "h128", "h129"):
        compare("OBJECT", "ENCODING", key)
    compare("SADD", "s", "1", "2", "-9223372036854775808")
    compare("SADD", "sa", "1", "a")
    compare("SADD", "s01", "01")
    compare("SADD", "s512", *range(512))
    compare("SADD", "s513", *range(513))
    for key in ("s", "sa", "s01", "s512", "s513"):
        compare("OBJECT", "ENCODING", key)
    compare("ZADD", "z", "1", "a")
    compare("ZADD", "z65", "1", "a" * 65)
    compare("ZADD", "z128", *[x for i in range(128) for x in (i, "m%d" % i)])
    compare("ZADD", "z129", *[x for i in range(129) for x in (i, "m%d" % i)])
    for key in ("z", "z65", "z128", "z129"):
        compare("OBJECT", "ENCODING", key)
        compare("OBJECT", "REFCOUNT", key)
    compare("RPUSH", "l", "1", "a")
    compare("RPUSH", "l1000", *range(1000))
    for key in ("l", "l1000"):
        compare("OBJECT", "ENCODING", key)  # Redis 7.0 keeps every list in a quicklist


def test_object_other_subcommands(compare):
    compare("SET", "k", "v")
    compare("OBJECT", "FREQ", "k")  # no LFU policy: an error
    compare("OBJECT", "FREQ", "nope")
    compare("OBJECT", "IDLETIME", "nope")  # (of "k": seconds idle, a clock)
    for c in (compare.real, compare.ours):
        assert c.execute_command("OBJECT", "IDLETIME", "k") >= 0
    compare("OBJECT", "REFCOUNT", "nope")
    compare("OBJECT", "HELP")
    compare("object", "help")
    compare("OBJECT", "HELP", "x")
    compare("OBJECT", "ENCODING")
    compare("OBJECT", "ENCODING", "k", "x")
    compare("OBJECT", "FOO", "k")
    compare("OBJECT", "FOO")
    compare("OBJECT")


def test_object_freq_under_lfu(compare):
    """With an LFU policy FREQ answers and IDLETIME is the error; the policy
    reaches every shard through CONFIG SET."""
    for c in (compare.real, compare.ours):
        c.config_set("maxmemory-policy", "allkeys-lfu")
    try:
        for key in ("a", "b", "c", "d"):
            compare("SET", key, "1")
            compare("OBJECT", "IDLETIME", key)
        compare("OBJECT", "FREQ", "nope")
    finally:
        for c in (compare.real, compare.ours):
            c.config_set("maxmemory-policy", "noeviction")


def test_rename(compare):
    compare("SET", "a", "1", "PXAT", FAR_MS + 5)
    compare("RENAME", "a", "b")  # another shard, TTL kept
    compare("PEXPIRETIME", "b")
    compare("GET", "b")
    compare("EXISTS", "a")
    compare("RENAME", "b", "{b}x")
    compare("RENAME", "{b}x", "{b}x")
    compare("RENAME", "nope", "x")
    compare("RENAME", "nope", "nope")
    compare("SET", "c", "3")
    compare("RENAME", "{b}x", "c")  # overwrites, with the source's TTL
    compare("PEXPIRETIME", "c")
    compare("HSET", "h", "f", "v")
    compare("RENAME", "h", "d")
    compare("HGETALL", "d")
    compare("TYPE", "h")


def test_renamenx(compare):
    compare("MSET", "a", "1", "b", "2")
    compare("RENAMENX", "a", "b")
    compare("RENAMENX", "a", "a")
    compare("RENAMENX", "nope", "x")
    compare("RENAMENX", "a", "c")
    compare("MGET", "a", "b", "c")
    compare("SET", "t", "v", "EXAT", FAR)
    compare("RENAMENX", "t", "d")
    compare("EXPIRETIME", "d")


def test_copy(compare):
    compare("SET", "a", "1", "EXAT", FAR)
    compare("COPY", "a", "b")
    compare("COPY", "a", "b")
    compare("COPY", "a", "b", "REPLACE")
    compare("EXPIRETIME", "b")
    compare("COPY", "a", "b", "DB", "0")
    compare("COPY", "a", "b", "DB", "0", "REPLACE")
    compare("COPY", "a", "a")
    compare("COPY", "nope", "nope")
    compare("COPY", "nope", "x")
    for bad in (
        ["DB", "abc"],
        ["DB", "4294967296"],
        ["DB", "99999999999999999999"],
        ["DB"],
        ["foo"],
        ["foo", "DB", "0"],
        ["REPLACE", "REPLACE"],
    ):
        compare("COPY", "a", "b", *bad)
    compare("HSET", "h", "f", "v", "g", "w")
    compare("COPY", "h", "c")
    compare("HSET", "c", "f", "changed")  # a deep copy
    compare("HGETALL", "h")
    compare("SADD", "s", "1", "2")
    compare("COPY", "s", "d")
    compare("SREM", "d", "1")
    compare("SMEMBERS", "s")
    compare("ZADD", "z", "1", "a")
    compare("COPY", "z", "{z}z")
    compare("ZADD", "{z}z", "2", "a")
    compare("ZRANGE", "z", "0", "-1", "WITHSCORES")


def test_copy_other_databases(r):
    r.set("a", "1")
    assert r.execute_command("COPY", "a", "b", "DB", "1") == 1
    assert r.execute_command("COPY", "a", "b", "DB", "1") == 0
    assert r.exists("b") == 0
    r.execute_command("SELECT", "1")
    assert r.get("b") == b"1"
    r.flushdb()


def test_randomkey(compare):
    compare("RANDOMKEY")
    compare("SET", "only", "1")
    compare("RANDOMKEY")
    compare("RANDOMKEY", "x")


def test_randomkey_finds_every_key(r):
    keys = {f"k{i}" for i in range(8)}
    for key in keys:
        r.set(key, "1")
    seen = set()
    for _ in range(400):
        seen.add(r.randomkey().decode())
        if seen == keys:
            break
    assert seen == keys


def test_dbsize_keys(compare):
    compare("DBSIZE")
    compare("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "{x}", "5", "", "6")
    compare("DBSIZE")
    compare("KEYS", "*", unordered=True)
    compare("KEYS", "?", unordered=True)
    compare("KEYS", "[ab]", unordered=True)
    compare("KEYS", "", unordered=True)
    compare("KEYS", "**", unordered=True)  # not "*": the empty key does not match
    compare("KEYS", "*", "x")


# -- SCAN ---------------------------------------------------------------------


def full_scan(client: redis.Redis, *options) -> list[bytes]:
    cursor, out = b"0", []
    for _ in range(10000):
        cursor, keys = client.execute_command("SCAN", cursor, *options)
        out.extend(keys)
        if cursor in (b"0", 0):
            return out
    raise AssertionError("SCAN did not finish")


def test_scan_visits_every_key_once(r):
    keys = {f"key:{i}".encode() for i in range(300)}
    r.mset({k: "1" for k in keys})
    for count in (1, 7, 10, 1000):
        found = full_scan(r, "COUNT", count)
        assert sorted(found) == sorted(keys)


def test_scan_match_count_type(r):
    r.mset({f"user:{i}": "1" for i in range(50)})
    r.mset({f"item:{i}": "1" for i in range(50)})
    for i in range(10):
        r.hset(f"user:h{i}", "f", "v")
        r.sadd(f"set:{i}", "m")
    assert len(full_scan(r, "MATCH", "user:*")) == 60
    assert len(full_scan(r, "MATCH", "user:?", "COUNT", 3)) == 10
    assert sorted(full_scan(r, "TYPE", "hash")) == sorted(f"user:h{i}".encode() for i in range(10))
    assert len(full_scan(r, "TYPE", "SET")) == 10
    assert full_scan(r, "TYPE", "nosuchtype") == []
    assert len(full_scan(r, "MATCH", "*", "TYPE", "string")) == 100
    assert len(full_scan(r, "MATCH", "user:h*", "TYPE", "string")) == 0


def test_scan_with_changes_during_the_scan(r):
    """A key that exists for the whole scan is returned exactly once, while
    other keys come and go between the calls."""
    stable = {f"stable:{i}".encode() for i in range(200)}
    r.mset({k: "1" for k in stable})
    rnd = random.Random(3)
    cursor, seen = b"0", []
    for step in range(10000):
        cursor, keys = r.execute_command("SCAN", cursor, "COUNT", rnd.choice([1, 5, 20]))
        seen.extend(keys)
        # add and remove other keys between calls
        r.set(f"temp:{step}", "1")
        if step % 2:
            r.delete(f"temp:{step - 1}")
        if cursor in (b"0", 0):
            break
    from_stable = [k for k in seen if k.startswith(b"stable:")]
    assert sorted(from_stable) == sorted(stable)


def test_scan_errors(compare):
    compare("SET", "k", "v")
    for cursor in ("", "-1", "+0", "-0", "00", "18446744073709551615"):
        # Accepted by both (strtoul's rules); the next cursor is each
        # server's own business, the keys are not.
        for client in (compare.real, compare.ours):
            assert client.execute_command("SCAN", cursor, "MATCH", "nomatch*")[1] == []
    for cursor in ("18446744073709551616", " 1", "1 ", "a", "0x1", "-", "+", "1.5"):
        compare("SCAN", cursor)
    for options in (
        ["COUNT", "0"],
        ["COUNT", "-1"],
        ["COUNT", "a"],
        ["COUNT", "9223372036854775808"],
        ["MATCH"],
        ["COUNT"],
        ["TYPE"],
        ["foo", "bar"],
        ["MATCH", "x", "foo"],
    ):
        compare("SCAN", "0", *options)
    compare("SCAN", "a", "foo", "bar")  # the cursor is checked first
    compare("SCAN")


def test_scan_cursor_is_stateless(r):
    """A cursor can be reused: it names a place, not a session."""
    r.mset({f"k{i}": "1" for i in range(40)})
    first = r.execute_command("SCAN", 0, "COUNT", 5)
    again = r.execute_command("SCAN", 0, "COUNT", 5)
    assert first == again


def test_scan_fills_count_across_shards(ports):
    """shardkv's cursor is a slot number: one call goes on to the next
    shards until COUNT keys were visited, so 100 keys come back in one call."""
    c = redis.Redis(port=ports["shardkv"])
    c.flushall()
    c.mset({f"k{i}": "1" for i in range(100)})
    cursor, keys = c.execute_command("SCAN", 0, "COUNT", 1000)
    assert cursor in (b"0", 0) and len(keys) == 100
    assert len({ROUTER.shard_of(k) for k in keys}) == 4
    c.close()


def test_scan_cursors_past_the_table_go_on_scanning(r):
    """Redis reads a cursor with strtoul (a minus wraps around, 2**64 - 1
    is the largest) and masks it with its table's size, so any cursor goes
    on scanning: 2**63 as 0, 2**32 + 1 and 2**63 + 1 as 1, 2**64 - 1 as
    the last bucket, after which the scan ends.  Which members a bucket
    holds differs between the servers; these properties do not."""
    keys = {b"k%d" % i for i in range(300)}
    members = {b"m%d" % i for i in range(1000)}  # past every listpack and intset
    r.mset({k: "v" for k in keys})
    r.sadd("{s}set", *members)
    r.hset("{s}hash", mapping={m: "v" for m in members})
    r.zadd("{s}zset", {m: 1 for m in members})
    keys |= {b"{s}set", b"{s}hash", b"{s}zset"}
    for start in (2**63, 16384, 2**64 - 2**14 * 3, 2**63 + 1):
        cursor, got = r.scan(start)
        assert cursor != 0 and got
        seen = set(got)
        while cursor:
            cursor, got = r.scan(cursor)
            seen |= set(got)
        if start % 16384 == 0:  # the start of a scan, in either server
            assert keys <= seen
        assert seen <= keys
    for last in (2**64 - 1, -1):
        cursor, got = r.scan(last)
        assert cursor == 0 and set(got) <= keys
    for cmd, key in (("SSCAN", "{s}set"), ("HSCAN", "{s}hash"), ("ZSCAN", "{s}zset")):
        for start in (2**32 + 1, 2**63 + 1):
            cursor, got = r.execute_command(cmd, key, start)
            assert cursor not in (0, b"0") and got, (cmd, start)
        for last in (2**64 - 1, -1):
            cursor, got = r.execute_command(cmd, key, last)
            assert cursor in (0, b"0"), (cmd, last)
    cursor, got = r.eval("return redis.call('scan', ARGV[1])", 0, str(2**63))  # in a script too
    assert cursor != b"0" and got
    with pytest.raises(redis.ResponseError, match="invalid cursor"):
        r.scan(2**64)


@pytest.mark.parametrize(
    "command",
    [
        ("DEL", "nc:none"),
        ("UNLINK", "nc:none", "nc:none2"),
        ("DEL", "nc:none", "nc:str"),  # one deleted: counts one
        ("SREM", "nc:none", "a"),
        ("SREM", "nc:set", "b"),
        ("HDEL", "nc:none", "f"),
        ("HDEL", "nc:hash", "g"),
        ("LREM", "nc:none", "0", "a"),
        ("LREM", "nc:list", "0", "b"),
        ("ZREM", "nc:none", "a"),
        ("ZREM", "nc:zset", "b"),
        ("EXPIRE", "nc:none", "10"),
        ("PEXPIRE", "nc:none", "10"),
        ("EXPIREAT", "nc:none", "10"),
        ("PEXPIREAT", "nc:none", "10"),
        ("EXPIRE", "nc:str", "10", "XX"),
        ("EXPIRE", "nc:ttl", "10", "NX"),
        ("EXPIRE", "nc:str", "10", "GT"),
        ("EXPIRE", "nc:ttl", "1", "GT"),
        ("EXPIRE", "nc:ttl", "1000", "LT"),
        ("EXPIRE", "nc:ttl", "10", "LT"),  # met: counts one
        ("PERSIST", "nc:none"),
        ("PERSIST", "nc:str"),
        ("PERSIST", "nc:ttl"),  # a TTL dropped: counts one
        ("SMOVE", "nc:set", "nc:set2", "b"),
        ("SMOVE", "nc:none", "nc:set2", "a"),
        ("SMOVE", "{nc}s", "{nc}s", "a"),  # onto itself
        ("SMOVE", "{nc}s", "{nc}d", "b"),
        ("LTRIM", "nc:none", "0", "-1"),
        ("LTRIM", "nc:list", "0", "-1"),
        ("LTRIM", "nc:list", "1", "-1"),
        ("ZREMRANGEBYSCORE", "nc:none", "0", "5"),
        ("ZREMRANGEBYSCORE", "nc:zset", "5", "9"),
        ("ZREMRANGEBYRANK", "nc:zset", "5", "9"),
        ("ZREMRANGEBYLEX", "nc:zset", "[x", "[z"),
        ("ZREMRANGEBYSCORE", "nc:zset", "0", "5"),  # removed: counts one
        ("HSETNX", "nc:hash", "f", "w"),
        ("HSETNX", "nc:hash", "g", "w"),  # set: counts one
        ("SETNX", "nc:str", "w"),
        ("SETNX", "nc:none", "w"),  # set: counts one
        ("LPUSHX", "nc:none", "a"),
        ("RPUSHX", "nc:none", "a"),
        ("LINSERT", "nc:none", "BEFORE", "a", "b"),
        ("LINSERT", "nc:list", "BEFORE", "x", "b"),
        ("MOVE", "nc:none", "1"),
        ("COPY", "{nc}none", "{nc}c"),  # no source
        ("COPY", "{nc}s", "{nc}z"),  # a destination held, no REPLACE
        ("COPY", "nc:none", "nc:c"),  # across shards
        ("SET", "nc:str", "w", "NX"),
        ("SET", "nc:none", "w", "XX"),
        ("SET", "nc:str", "w", "NX", "GET"),
        ("SADD", "nc:set", "a"),
        ("ZADD", "nc:zset", "1", "a"),
        ("ZADD", "nc:zset", "NX", "2", "a"),
        ("ZADD", "nc:none", "XX", "2", "a"),
        ("PFADD", "nc:none"),
        ("SETRANGE", "nc:str", "0", ""),
        ("SETRANGE", "nc:none", "0", ""),
        ("ZADD", "nc:zset", "GT", "0", "a"),
        ("ZADD", "nc:zset", "2", "a"),  # updated: counts one
        ("SADD", "nc:set", "a", "b"),  # one added: counts one
        ("APPEND", "nc:str", ""),
        ("HSET", "nc:hash", "f", "v"),
        ("INCRBY", "nc:str2", "0"),
        ("RPOPLPUSH", "nc:none", "nc:list"),
        ("SINTERCARD", "1", "nc:none"),
        # The STORE forms with an empty result and no destination to
        # delete, on one shard ({nc}) and across shards.
        ("SINTERSTORE", "{nc}d", "{nc}s", "{nc}x"),
        ("SUNIONSTORE", "{nc}d", "{nc}x"),
        ("SDIFFSTORE", "{nc}d", "{nc}s", "{nc}s"),
        ("SINTERSTORE", "nc:none2", "nc:set", "nc:none"),
        ("SDIFFSTORE", "nc:none2", "nc:set", "nc:set"),
        ("ZINTERSTORE", "{nc}d", "2", "{nc}z", "{nc}x"),
        ("ZUNIONSTORE", "{nc}d", "1", "{nc}x"),
        ("ZDIFFSTORE", "{nc}d", "2", "{nc}z", "{nc}z"),
        ("ZRANGESTORE", "{nc}d", "{nc}z", "5", "9"),
        ("ZINTERSTORE", "nc:none2", "2", "nc:zset", "nc:none"),
        ("SINTERSTORE", "{nc}s", "{nc}s", "{nc}x"),  # the destination deleted: counts one
        ("ZDIFFSTORE", "{nc}z", "2", "{nc}z", "{nc}z"),  # the destination deleted: counts one
        ("SPOP", "nc:none"),
        ("LPOP", "nc:none"),
        ("RPOP", "nc:none"),
        ("ZPOPMIN", "nc:none"),
        ("ZPOPMAX", "nc:none"),
        ("GETDEL", "nc:none"),
        ("GETEX", "nc:none", "EX", "10"),
        ("GETEX", "nc:str"),
        ("GETEX", "nc:str", "PERSIST"),
        ("GETEX", "nc:ttl", "PERSIST"),  # a TTL dropped: counts one
        ("LPOP", "nc:list", "0"),
        ("SPOP", "nc:set", "0"),
        ("ZPOPMIN", "nc:zset", "0"),
        ("LMOVE", "nc:none", "nc:none2", "LEFT", "LEFT"),
        ("RPOPLPUSH", "nc:none", "nc:none2"),
        ("LMPOP", "1", "nc:none", "LEFT"),
        ("ZMPOP", "1", "nc:none", "MIN"),
        ("SREM", "nc:set", "a"),  # the set deleted: counts one
    ],
    ids=" ".join,
)
def test_writes_that_change_nothing_are_not_changes(ports, command):
    """rdb_changes_since_last_save around a write that found nothing to
    change (a missing key or member, an EXPIRE condition not met, PERSIST
    of a key without TTL, a pop of nothing, an NX or X form whose key or
    field is there or not, an LTRIM that keeps all, a STORE form with an
    empty result and no destination): Redis counts it as no change (and
    does not propagate it); one that changed something counts."""
    setup = [
        ("SET", "nc:str", "v"),
        ("SET", "nc:ttl", "v", "EX", "100"),
        ("SADD", "nc:set", "a"),
        ("HSET", "nc:hash", "f", "v"),
        ("RPUSH", "nc:list", "a"),
        ("ZADD", "nc:zset", "1", "a"),
        ("SADD", "{nc}s", "a"),
        ("ZADD", "{nc}z", "1", "a"),
    ]
    scratch = ("nc:none", "nc:none2", "nc:set2", "{nc}d", "{nc}x")
    got = {}
    for name in ("redis", "shardkv"):
        client = redis.Redis(port=ports[name])
        try:
            client.delete(*scratch, *(c[1] for c in setup))
            for c in setup:
                client.execute_command(*c)
            before = client.info("persistence")["rdb_changes_since_last_save"]
            reply = client.execute_command(*command)
            after = client.info("persistence")["rdb_changes_since_last_save"]
            got[name] = (reply, after - before)
            client.delete(*scratch, *(c[1] for c in setup))
        finally:
            client.close()
    assert got["shardkv"] == got["redis"]
