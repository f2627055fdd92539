"""Binary safety: keys and values are bytes, whatever bytes, of any size.

NUL bytes, ``\\r\\n``, bytes that are not UTF-8 and RESP look-alikes go
through every process (client -> acceptor -> pipe -> worker -> pipe ->
client) and back unchanged, from 0 bytes to 32 MB, including across the
marshal frames of commands that span shards (MSET/MGET fan-out, and the
atomic cross-shard RENAME and COPY).
"""

from __future__ import annotations

import pytest

from tests.support.rawsocket import exchange

KEYS = [
    b"",
    b"\x00",
    b"a\x00b",
    b"\r\n",
    b"key\r\nwith\r\nlines",
    b"\xff\xfe\xfd",
    b"\xc3\x28",  # not UTF-8
    b"*1\r\n$4\r\nPING\r\n",
    b"$-1\r\n",
    b"{tag}\x00one",
    b"{tag}\x00two",
    b" spaces and 'quotes\" ",
    bytes(range(256)),
]


def pattern(size: int) -> bytes:
    """``size`` bytes with every byte value, NULs and CRLFs among them."""
    unit = bytes(range(256)) + b"\r\n\x00\r\n"
    return (unit * (size // len(unit) + 1))[:size]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_binary_keys_and_values(compare, key):
    value = key[::-1] + b"\x00\r\n\xff"
    compare("SET", key, value)
    compare("GET", key)
    compare("STRLEN", key)
    compare("APPEND", key, b"\r\n\x00")
    compare("GET", key)
    compare("EXISTS", key)
    compare("TYPE", key)
    compare("HSET", b"h" + key, key, value)
    compare("HGETALL", b"h" + key)
    compare("SADD", b"s" + key, key, value, b"")
    compare("SMEMBERS", b"s" + key, unordered=True)
    compare("DEL", key, b"h" + key, b"s" + key)
    compare("GET", key)


@pytest.mark.parametrize("size", [0, 1, 2, 1023, 65535, 65536, 65537, 200_000, 1 << 20])
def test_value_sizes(compare, size):
    value = pattern(size)
    compare("SET", b"v\x00", value)
    compare("GET", b"v\x00")
    compare("STRLEN", b"v\x00")
    compare("GETRANGE", b"v\x00", size // 2, size // 2 + 100)


def test_across_shards(compare):
    """MSET/MGET split across shards, and RENAME/COPY moved between them."""
    pairs = []
    for i, key in enumerate(KEYS):
        pairs += [key, pattern(i * 1000)]
    compare("MSET", *pairs)
    compare("MGET", *KEYS, b"missing\x00")
    compare("DEL", *KEYS[:3], b"\r\n", b"missing")
    compare("KEYS", b"*", unordered=True)
    compare("SET", b"src\x00\xff", pattern(70_000))
    for i, dest in enumerate([b"dst\r\n", b"\xfe", b"a", b"b", b"c", b"d"]):
        compare("RENAME", b"src\x00\xff", dest)
        compare("GET", dest)
        compare("COPY", dest, b"copy\x00%d" % i)
        compare("GET", b"copy\x00%d" % i)
        compare("RENAME", dest, b"src\x00\xff")


@pytest.mark.slow
def test_32_mb_through_every_process(r):
    """A 32 MB value, twice in one pipeline, through a fan-out and a
    cross-shard RENAME: big pipe frames in both directions."""
    big = pattern(32 << 20)
    other = big[::-1]
    p = r.pipeline(transaction=False)
    p.set(b"big\x00a", big)
    p.set(b"big\r\nb", other)
    p.get(b"big\x00a")
    p.get(b"big\r\nb")
    p.strlen(b"big\x00a")
    assert p.execute() == [True, True, big, other, 32 << 20]
    assert r.mset({b"m\x001": big, b"m\x002": b"", b"m\x003": other}) is True
    assert r.mget(b"m\x001", b"m\x002", b"m\x003", b"nope") == [big, b"", other, None]
    for dest in [b"x\xff", b"y\xff", b"z\xff"]:  # some on other shards than the source
        assert r.rename(b"big\x00a", dest) is True
        assert r.get(dest) == big
        assert r.rename(dest, b"big\x00a") is True
    assert r.getrange(b"big\r\nb", (32 << 20) - 10, -1) == other[-10:]
    assert r.delete(b"big\x00a", b"big\r\nb", b"m\x001", b"m\x003") == 4


def test_raw_bytes_round_trip(ports):
    """Byte for byte, on the wire: the reply carries the value unchanged."""
    value = pattern(100_000)
    data = b"*3\r\n$3\r\nSET\r\n$4\r\n\x00\r\n\xff\r\n$%d\r\n%s\r\n" % (len(value), value)
    data += b"*2\r\n$3\r\nGET\r\n$4\r\n\x00\r\n\xff\r\n"
    expected = b"+OK\r\n$%d\r\n%s\r\n" % (len(value), value)
    for name in ("redis", "shardkv"):
        reply, closed = exchange(ports[name], data, 0.5, want=len(expected))
        assert reply == expected, name
        assert not closed
