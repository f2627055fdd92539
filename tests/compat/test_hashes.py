"""Hash commands, compared with a real redis-server."""

from __future__ import annotations

import pytest
import redis

from shardkv.protocol.router import Router

ROUTER = Router(4)
LONG_MAX = 2**63 - 1


def keys_on_different_shards(n: int) -> list[str]:
    """``n`` key names that live on ``n`` different shards of 4."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < n:
        name = f"key{i}"
        found.setdefault(ROUTER.shard_of(name.encode()), name)
        i += 1
    return list(found.values())


def test_keys_on_different_shards():
    keys = keys_on_different_shards(4)
    assert len({ROUTER.shard_of(k.encode()) for k in keys}) == 4


# -- HSET / HGET and friends ----------------------------------------------------


def test_hset_hget(compare):
    compare("HSET", "h", "f1", "v1")
    compare("HSET", "h", "f1", "v2", "f2", "v2", "f3", "v3")
    compare("HSET", "h", "f4", "a", "f4", "b")  # the same new field twice counts once
    compare("HGET", "h", "f1")
    compare("HGET", "h", "f4")
    compare("HGET", "h", "nope")
    compare("HGET", "nokey", "f1")
    compare("HSET", "h", "", "")
    compare("HGET", "h", "")
    compare("HGETALL", "h")
    compare("HLEN", "h")
    compare("TYPE", "h")
    compare("HSET", "h", "bin\x00\xff", "\r\n")
    compare("HGET", "h", "bin\x00\xff")


def test_hset_arity(compare):
    compare("HSET", "h")
    compare("HSET", "h", "f")
    compare("HSET", "h", "f", "v", "g")
    compare("HMSET", "h", "f", "v", "g")
    compare("hmset", "h", "f")
    compare("HsEt", "h", "f", "v", "g")
    compare("EXISTS", "h")
    compare("HSETNX", "h", "f")
    compare("HSETNX", "h", "f", "v", "x")
    compare("HGET", "h")
    compare("HMGET", "h")
    compare("HDEL", "h")
    compare("HLEN")
    compare("HLEN", "h", "x")
    compare("HSTRLEN", "h")
    compare("HEXISTS", "h")
    compare("HKEYS")
    compare("HVALS", "h", "x")
    compare("HGETALL")
    compare("HINCRBY", "h", "f")
    compare("HINCRBYFLOAT", "h", "f")
    compare("HRANDFIELD")
    compare("HSCAN", "h")


def test_hmset(compare):
    compare("HMSET", "h", "a", "1", "b", "2")
    compare("HMSET", "h", "a", "3", "c", "4")
    compare("HGETALL", "h")
    compare("HMGET", "h", "a", "b", "c", "d", "a")
    compare("HMGET", "nokey", "a", "b")


def test_hsetnx(compare):
    compare("HSETNX", "h", "f", "1")
    compare("HSETNX", "h", "f", "2")
    compare("HSETNX", "h", "g", "3")
    compare("HGETALL", "h")


def test_hdel_deletes_empty_hash(compare):
    compare("HSET", "h", "a", "1", "b", "2", "c", "3")
    compare("HDEL", "h", "a", "nope", "a")
    compare("HDEL", "h", "nope")
    compare("HDEL", "nokey", "a")
    compare("HDEL", "h", "b", "c")
    compare("EXISTS", "h")
    compare("TYPE", "h")
    compare("HLEN", "h")


def test_hlen_hstrlen_hexists(compare):
    compare("HSET", "h", "a", "hello", "b", "", "n", "12345", "neg", "-7")
    compare("HLEN", "h")
    compare("HLEN", "nokey")
    compare("HSTRLEN", "h", "a")
    compare("HSTRLEN", "h", "b")
    compare("HSTRLEN", "h", "n")
    compare("HSTRLEN", "h", "neg")
    compare("HSTRLEN", "h", "nope")
    compare("HSTRLEN", "nokey", "a")
    compare("HEXISTS", "h", "a")
    compare("HEXISTS", "h", "b")
    compare("HEXISTS", "h", "nope")
    compare("HEXISTS", "nokey", "a")


def test_hkeys_hvals_hgetall_order(compare):
    # Small hashes keep insertion order in Redis (a listpack), and so do we.
    compare("HSET", "h", "z", "1", "y", "2", "x", "3")
    compare("HSET", "h", "y", "22", "w", "4")
    compare("HDEL", "h", "z")
    compare("HSET", "h", "z", "5")
    compare("HKEYS", "h")
    compare("HVALS", "h")
    compare("HGETALL", "h")
    compare("HKEYS", "nokey")
    compare("HVALS", "nokey")
    compare("HGETALL", "nokey")


def test_big_hash(compare):
    fields = []
    for i in range(300):
        fields += [f"field:{i}", f"value:{i}" * (i % 5 + 1)]
    compare("HSET", "big", *fields)
    compare("HLEN", "big")
    compare("HKEYS", "big", unordered=True)
    compare("HVALS", "big", unordered=True)
    compare("HGETALL", "big")  # a dict in redis-py: order does not count
    compare("HDEL", "big", *fields[0:200:2])
    compare("HLEN", "big")
    compare("HGET", "big", "field:150")
    compare("HMGET", "big", "field:1", "field:299", "field:0")


def test_wrongtype(compare):
    compare("SET", "s", "v")
    compare("SADD", "set", "m")
    for key in ("s", "set"):
        compare("HSET", key, "f", "v")
        compare("HMSET", key, "f", "v")
        compare("HSETNX", key, "f", "v")
        compare("HGET", key, "f")
        compare("HMGET", key, "f", "g")
        compare("HDEL", key, "f")
        compare("HLEN", key)
        compare("HSTRLEN", key, "f")
        compare("HEXISTS", key, "f")
        compare("HKEYS", key)
        compare("HVALS", key)
        compare("HGETALL", key)
        compare("HINCRBY", key, "f", "1")
        compare("HINCRBYFLOAT", key, "f", "1")
        compare("HRANDFIELD", key)
        compare("HRANDFIELD", key, "0")
        compare("HRANDFIELD", key, "3", "WITHVALUES")
        compare("HSCAN", key, "0")
        compare("HSCAN", key, "0", "BADOPTION")
    compare("HSET", "h", "f", "v")
    compare("GET", "h")
    compare("SADD", "h", "m")
    compare("INCR", "h")
    compare("GET", "s")


# -- HINCRBY / HINCRBYFLOAT -----------------------------------------------------


def test_hincrby(compare):
    compare("HINCRBY", "h", "n", "5")
    compare("HINCRBY", "h", "n", "-12")
    compare("HGET", "h", "n")
    compare("HINCRBY", "h", "m", "0")
    compare("HSET", "h", "big", str(LONG_MAX - 1), "small", str(-LONG_MAX))
    compare("HINCRBY", "h", "big", "1")
    compare("HINCRBY", "h", "big", "1")
    compare("HINCRBY", "h", "small", "-1")
    compare("HINCRBY", "h", "small", "-1")
    compare("HINCRBY", "h", "small", str(LONG_MAX))
    compare("HINCRBY", "h", "n", "9223372036854775808")
    compare("HINCRBY", "h", "n", "-9223372036854775809")
    compare("HINCRBY", "h", "n", "1.5")
    compare("HINCRBY", "h", "n", "x")
    compare("HINCRBY", "h", "n", " 1")
    compare("HINCRBY", "h", "n", "+1")
    compare("HINCRBY", "h", "n", "01")
    compare("HINCRBY", "h", "n", "")
    for value in ("abc", "1.5", " 1", "1 ", "+1", "01", "-0", "", "99999999999999999999"):
        compare("HSET", "h", "bad", value)
        compare("HINCRBY", "h", "bad", "1")
    compare("HSET", "h", "zero", "0", "neg", "-5")
    compare("HINCRBY", "h", "zero", "1")
    compare("HINCRBY", "h", "neg", "1")
    compare("HINCRBY", "nokey", "f", "x")
    compare("EXISTS", "nokey")
    compare("HGETALL", "h")


def test_hincrbyfloat_errors(compare):
    compare("HINCRBYFLOAT", "h", "f", "x")
    compare("HINCRBYFLOAT", "h", "f", "")
    compare("HINCRBYFLOAT", "h", "f", " 1")
    compare("HINCRBYFLOAT", "h", "f", "1 ")
    compare("HINCRBYFLOAT", "h", "f", "1_0")
    compare("HINCRBYFLOAT", "h", "f", "nan")
    compare("HINCRBYFLOAT", "h", "f", "inf")
    compare("HINCRBYFLOAT", "h", "f", "-inf")
    compare("HINCRBYFLOAT", "h", "f", "+INF")
    compare("EXISTS", "h")
    for value in ("abc", "1.5.5", " 1", "1 ", "nan", ""):
        compare("HSET", "h", "bad", value)
        compare("HINCRBYFLOAT", "h", "bad", "1")
    compare("HSET", "h", "inf", "inf", "big", "1.7e308")
    compare("HINCRBYFLOAT", "h", "inf", "1")
    compare("HGET", "h", "inf")
    compare("HINCRBY", "h", "inf", "1")


def test_hincrbyfloat(compare):
    compare("HINCRBYFLOAT", "h", "f", "10.5")
    compare("HINCRBYFLOAT", "h", "f", "0.1")
    compare("HINCRBYFLOAT", "h", "f", "-5")
    compare("HINCRBYFLOAT", "h", "f", "-5.6")
    compare("HGET", "h", "f")
    compare("HINCRBYFLOAT", "h", "int", "5")
    compare("HINCRBYFLOAT", "h", "int", "2.0")
    compare("HINCRBYFLOAT", "h", "int", ".5")
    compare("HINCRBYFLOAT", "h", "int", "5.")
    compare("HINCRBYFLOAT", "h", "int", "+1")
    compare("HINCRBYFLOAT", "h", "int", "-0.0")
    compare("HINCRBYFLOAT", "h", "e", "3.0e3")
    compare("HINCRBYFLOAT", "h", "e", "1E+3")
    compare("HINCRBYFLOAT", "h", "e", "-4000")
    compare("HINCRBYFLOAT", "h", "n", "-1.5")
    compare("HSET", "h", "i", "17")
    compare("HINCRBYFLOAT", "h", "i", "0.25")
    compare("HINCRBY", "h", "i", "1")
    compare("HGETALL", "h")


@pytest.mark.parametrize(
    "steps",
    [
        ["1.5e-7"],
        ["0.1", "0.2"],
        ["0.1", "0.2", "-0.3"],
        ["1e17"],
        ["123456789.123456789"],
        ["1e-20"],
        ["1.5e300"],
        ["0x10"],
        ["1e400"],
        ["1", "1e-17"],
        ["3.3333333333333333", "3.3333333333333333"],
    ],
)
def test_hincrbyfloat_formatting(compare, steps):
    # Redis adds in long double and prints with "%.17Lf", trailing zeros cut.
    for step in steps:
        compare("HINCRBYFLOAT", "h", "f", step)
    compare("HGET", "h", "f")


# -- HRANDFIELD -------------------------------------------------------------------


def test_hrandfield_errors(compare):
    compare("HSET", "h", "a", "1", "b", "2", "c", "3")
    compare("HRANDFIELD", "h", "x")
    compare("HRANDFIELD", "h", "1.5")
    compare("HRANDFIELD", "h", "1", "WITHVALUE")
    compare("HRANDFIELD", "h", "1", "WITHVALUES", "x")
    compare("HRANDFIELD", "h", "x", "foo")
    compare("HRANDFIELD", "nokey", "1", "foo")
    compare("HRANDFIELD", "h", "-9223372036854775808")
    compare("HRANDFIELD", "h", "9223372036854775808")
    compare("HRANDFIELD", "nokey", str(LONG_MAX), "WITHVALUES")
    compare("HRANDFIELD", "nokey", str(LONG_MAX // 2 + 1), "WITHVALUES")
    compare("HRANDFIELD", "nokey", str(LONG_MAX // 2), "WITHVALUES")
    compare("HRANDFIELD", "nokey", str(-(LONG_MAX // 2) - 1), "withvalues")
    compare("HRANDFIELD", "nokey", str(-(LONG_MAX // 2)), "withvalues")
    compare("HRANDFIELD", "nokey")
    compare("HRANDFIELD", "nokey", "5")
    compare("HRANDFIELD", "nokey", "-5", "WITHVALUES")
    compare("HRANDFIELD", "h", "0")
    compare("HRANDFIELD", "h", "0", "WITHVALUES")
    # The whole hash, in order, when the count covers it.
    compare("HRANDFIELD", "h", "3")
    compare("HRANDFIELD", "h", "100", "WITHVALUES")


def _pairs(reply: list, protocol: int) -> list[tuple]:
    """HRANDFIELD ... WITHVALUES as (field, value) pairs, in either protocol."""
    if protocol == 3:
        assert all(isinstance(p, list) and len(p) == 2 for p in reply)
        return [tuple(p) for p in reply]
    assert len(reply) % 2 == 0
    return list(zip(reply[::2], reply[1::2], strict=True))


@pytest.mark.parametrize("protocol", [3, 2])
def test_hrandfield_properties(server, protocol):
    c = redis.Redis(port=server, protocol=protocol)
    try:
        h = {f"f{i}".encode(): f"v{i}".encode() for i in range(20)}
        c.hset("h", mapping=h)
        for _ in range(10):
            assert c.execute_command("HRANDFIELD", "h") in h
            one = c.execute_command("HRANDFIELD", "h", 1)
            assert len(one) == 1 and one[0] in h
            five = c.execute_command("HRANDFIELD", "h", 5)
            assert len(five) == 5 and len(set(five)) == 5 and set(five) <= set(h)
            many = c.execute_command("HRANDFIELD", "h", -50)
            assert len(many) == 50 and set(many) <= set(h)
            pairs = _pairs(c.execute_command("HRANDFIELD", "h", 7, "WITHVALUES"), protocol)
            assert len(pairs) == 7 and len({f for f, _ in pairs}) == 7
            assert all(h[f] == v for f, v in pairs)
            pairs = _pairs(c.execute_command("HRANDFIELD", "h", -30, "WITHVALUES"), protocol)
            assert len(pairs) == 30 and all(h[f] == v for f, v in pairs)
            pairs = _pairs(c.execute_command("HRANDFIELD", "h", 1, "WITHVALUES"), protocol)
            assert len(pairs) == 1 and h[pairs[0][0]] == pairs[0][1]
        # A negative count repeats: 200 picks from 3 fields must repeat.
        c.hset("small", mapping={"a": "1", "b": "2", "c": "3"})
        picks = c.execute_command("HRANDFIELD", "small", -200)
        assert len(picks) == 200 and set(picks) == {b"a", b"b", b"c"}
        # All of the hash is reached over many calls.
        seen = set()
        for _ in range(200):
            seen.add(c.execute_command("HRANDFIELD", "h"))
        assert len(seen) > 10
    finally:
        c.close()


def test_hrandfield_reply_shape_resp3(ports):
    """RESP3 nests WITHVALUES pairs; checked on the raw bytes of both servers."""
    for name in ("redis", "shardkv"):
        c = redis.Redis(port=ports[name], protocol=3)
        c.delete("h")
        c.hset("h", mapping={"a": "1"})
        conn = c.connection_pool.get_connection()
        try:
            conn.send_command("HRANDFIELD", "h", "-2", "WITHVALUES")
            assert conn.read_response() == [[b"a", b"1"], [b"a", b"1"]], name
        finally:
            c.connection_pool.release(conn)
            c.close()


# -- HSCAN ----------------------------------------------------------------------


def test_hscan_small_whole(compare):
    compare("HSET", "h", "a", "1", "b", "2", "c", "3", "aa", "4")
    compare("HSCAN", "h", "0")
    compare("HSCAN", "h", "0", "COUNT", "1")
    compare("HSCAN", "h", "0", "MATCH", "a*")
    compare("HSCAN", "h", "0", "match", "?", "count", "2")
    compare("HSCAN", "h", "0", "MATCH", "nomatch*")
    compare("HSCAN", "h", "7")  # a listpack ignores the cursor
    compare("HSCAN", "h", "")
    compare("HSCAN", "h", "+0")
    compare("HSCAN", "h", "-0")
    compare("HSCAN", "nokey", "0")
    compare("HSCAN", "nokey", "0", "BADOPTION")  # options are read after the key
    compare("HSCAN", "nokey", "0", "COUNT", "0")


def test_hscan_errors(compare):
    compare("HSET", "h", "a", "1")
    for cursor in ("x", " 1", "1 ", "-", "+", "0x1", "1.0", "18446744073709551616"):
        compare("HSCAN", "h", cursor)
        compare("HSCAN", "nokey", cursor)
    compare("HSCAN", "h", "18446744073709551615")
    compare("HSCAN", "h", "-1")
    compare("HSCAN", "h", "0", "COUNT", "0")
    compare("HSCAN", "h", "0", "COUNT", "-1")
    compare("HSCAN", "h", "0", "COUNT", "x")
    compare("HSCAN", "h", "0", "COUNT")
    compare("HSCAN", "h", "0", "MATCH")
    compare("HSCAN", "h", "0", "TYPE", "string")
    compare("HSCAN", "h", "0", "NOVALUES")
    compare("HSCAN", "h", "0", "COUNT", "1", "x")


def hscan_all(c: redis.Redis, key: str, **opts) -> dict:
    out: dict = {}
    cursor = 0
    for _ in range(10000):
        cursor, part = c.hscan(key, cursor, **opts)
        for f, v in part.items():
            assert out.get(f, v) == v
            out[f] = v
        if cursor == 0:
            return out
    raise AssertionError("HSCAN did not finish")


def test_hscan_big(r):
    h = {f"f{i}": f"v{i}" for i in range(1000)}
    r.hset("h", mapping=h)
    expect = {k.encode(): v.encode() for k, v in h.items()}
    assert hscan_all(r, "h") == expect
    assert hscan_all(r, "h", count=100) == expect
    assert hscan_all(r, "h", count=5000) == expect
    assert hscan_all(r, "h", match="f1*") == {k: v for k, v in expect.items() if k.startswith(b"f1")}


def test_hscan_during_changes(r):
    """Fields present throughout a scan are returned; deleted ones never come back."""
    r.hset("h", mapping={f"f{i}": i for i in range(600)})
    cursor, seen, steps = 0, {}, 0
    while True:
        cursor, part = r.hscan("h", cursor, count=20)
        seen.update(part)
        steps += 1
        # Change the hash between calls: add fields, delete some that are new.
        r.hset("h", f"new{steps}", 1)
        r.hdel("h", f"new{steps - 1}")
        if cursor == 0 or steps > 2000:
            break
    assert cursor == 0
    for i in range(600):
        assert f"f{i}".encode() in seen


# -- keyspace commands on hashes -----------------------------------------------


def test_hash_with_keyspace_commands(compare):
    a, b = keys_on_different_shards(2)
    compare("HSET", a, "f", "1", "g", "2")
    compare("EXPIRE", a, "100")
    compare("HSET", a, "h", "3")  # changing a field keeps the TTL
    compare("HINCRBY", a, "f", "1")
    compare("TTL", a)
    compare("COPY", a, b)
    compare("HGETALL", b)
    compare("TTL", b)
    compare("HSET", b, "f", "changed")
    compare("HGET", a, "f")  # the copy is deep
    compare("RENAME", a, "{x}renamed")
    compare("HGETALL", "{x}renamed")
    compare("TTL", "{x}renamed")
    compare("TYPE", "{x}renamed")
    compare("HDEL", "{x}renamed", "f", "g", "h")
    compare("TTL", "{x}renamed")
    compare("EXISTS", "{x}renamed")
    compare("DEL", b)
    compare("HGETALL", b)


def test_hash_in_multi(r):
    pipe = r.pipeline(transaction=True)
    pipe.hset("h", mapping={"a": "1", "b": "2"})
    pipe.hincrby("h", "a", 5)
    pipe.hgetall("h")
    pipe.hdel("h", "a", "b")
    pipe.exists("h")
    assert pipe.execute() == [2, 6, {b"a": b"6", b"b": b"2"}, 2, 0]


def test_scan_members_with_colliding_positions(monkeypatch):
    """The cursor moves on even when many members share a position (CRC-32
    collisions are easy to make on purpose).  No server: the helper itself."""
    from shardkv.worker import values

    monkeypatch.setattr(values, "crc32", lambda m: len(m) % 3)
    members = {b"x" * i for i in range(1, 400)}
    for count in (1, 10, 1000):
        cursor, seen, calls = 0, [], 0
        while True:
            cursor, part = values.scan_members(members, cursor, count)
            seen += part
            calls += 1
            if cursor == 0:
                break
            assert calls < 10
        assert sorted(seen) == sorted(members)


def test_watch_sees_hash_changes(server):
    c = redis.Redis(port=server)
    other = redis.Redis(port=server)
    try:
        c.hset("h", "f", "1")
        for change in (
            lambda: other.hset("h", "g", "2"),
            lambda: other.hincrby("h", "f", 1),
            lambda: other.hincrbyfloat("h", "f", 1.5),
            lambda: other.hdel("h", "f"),
        ):
            pipe = c.pipeline(transaction=True)
            pipe.watch("h")
            change()
            pipe.multi()
            pipe.hgetall("h")
            with pytest.raises(redis.WatchError):
                pipe.execute()
            c.hset("h", "f", "1")
        pipe = c.pipeline(transaction=True)
        pipe.watch("h")
        other.hget("h", "f")
        other.hscan("h", 0)
        pipe.multi()
        pipe.hget("h", "f")
        assert pipe.execute() == [b"1"]
    finally:
        c.close()
        other.close()


def test_hscan_small_hash_with_long_values(r):
    # Long values make Redis use a hash table even for a few fields.
    h = {f"f{i}".encode(): b"v" * 100 for i in range(30)}
    r.hset("h", mapping=h)
    assert hscan_all(r, "h", count=3) == h
