"""Bitmap commands (SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP), compared
with a real redis-server: every ``compare`` asserts identical replies,
errors included, in RESP3 and RESP2.  Keys ``a``..``d`` live on different
shards of four, so BITOP over them runs across shards.
"""

from __future__ import annotations

import random

import pytest

RANGES = [
    (0, -1), (0, 0), (1, 1), (-1, -1), (-2, -1), (2, 1), (-1, -2), (5, 100),
    (-100, 100), (-100, -50), (100, 200), (3, 3), (0, 7), (7, 8), (9, 14), (-9, -3),
]  # fmt: skip


def _load(compare, key: str, value: bytes) -> None:
    compare("SET", key, value)


def test_setbit_getbit(compare):
    for offset, value in [(7, 1), (7, 1), (7, 0), (0, 1), (100, 1), (100, 0), (3, 1)]:
        compare("SETBIT", "k", offset, value)
        compare("GET", "k")
    for offset in (0, 1, 3, 7, 8, 100, 101, 1000, 4294967295):
        compare("GETBIT", "k", offset)
    compare("GETBIT", "missing", 5)
    compare("SET", "s", "foo")
    compare("SETBIT", "s", 6, 1)
    compare("GET", "s")
    compare("SET", "t", "v", "EX", 100)
    compare("SETBIT", "t", 1, 0)
    compare("TTL", "t")  # SETBIT keeps a TTL
    compare("SETBIT", "e", 0, 0)  # creates a one-byte string
    compare("GET", "e")


def test_bit_errors(compare):
    compare("LPUSH", "l", "x")
    for args in [
        ("SETBIT", "k", -1, 1),
        ("SETBIT", "k", "x", 1),
        ("SETBIT", "k", 4294967296, 1),  # offset >> 3 reaches proto-max-bulk-len
        ("SETBIT", "k", 1.5, 1),
        ("SETBIT", "k", 1, 2),
        ("SETBIT", "k", 1, -1),
        ("SETBIT", "k", 1, "x"),
        ("SETBIT", "l", 1, 1),
        ("SETBIT", "l", "x", 1),
        ("SETBIT", "l", 1, 5),
        ("SETBIT", "k", 1),
        ("GETBIT", "k", -1),
        ("GETBIT", "k", "x"),
        ("GETBIT", "l", 1),
        ("GETBIT", "l", "x"),
        ("BITCOUNT", "l"),
        ("BITCOUNT", "l", "x", "y"),
        ("BITCOUNT", "missing", "x", "y"),
        ("BITCOUNT", "missing", 1),
        ("BITPOS", "l", 1),
        ("BITPOS", "l", 2),
        ("BITPOS", "missing", 2),
        ("BITPOS", "missing", "x"),
        ("BITPOS", "missing", 1, "x"),
        ("BITPOS", "missing", 0, 1, 2, "BIT", "extra"),
        ("BITOP", "AND", "d", "l"),
        ("BITOP", "NAND", "d", "k"),
        ("BITOP", "NOT", "d", "k", "k"),
        ("BITOP", "NOT", "d", "l", "k"),
        ("BITOP", "AND", "d"),
    ]:
        compare(*args)
    compare("SET", "k", "abc")
    for args in [
        ("BITCOUNT", "k", 1),
        ("BITCOUNT", "k", "x", 1),
        ("BITCOUNT", "k", 1, "x"),
        ("BITCOUNT", "k", 0, 1, "WORD"),
        ("BITCOUNT", "k", 0, 1, "BIT", "x"),
        ("BITPOS", "k", 1, "x"),
        ("BITPOS", "k", 1, 0, "x"),
        ("BITPOS", "k", 1, 0, 1, "WORD"),
        ("BITPOS", "k", 1, 0, "x", "WORD"),  # the unit is read before the end
        ("BITPOS", "k", 1, 0, 1, "BIT", "x"),
    ]:
        compare(*args)


@pytest.mark.parametrize(
    "value", [b"", b"\x00", b"\xff", b"foobar", b"\x00\x00\x01\x80", b"\xff\xff\xfe\x7f"]
)
def test_bitcount_ranges(compare, value):
    _load(compare, "k", value)
    compare("BITCOUNT", "k")
    for start, end in RANGES:
        compare("BITCOUNT", "k", start, end)
        compare("BITCOUNT", "k", start, end, "byte")
        compare("BITCOUNT", "k", start, end, "BIT")
    compare("BITCOUNT", "missing", 0, -1, "BIT")


@pytest.mark.parametrize(
    "value", [b"", b"\x00", b"\xff", b"\x00\xff\xf0", b"\xff\xf0\x00", b"\x00\x00\x01\x80"]
)
def test_bitpos_ranges(compare, value):
    _load(compare, "k", value)
    for bit in (0, 1):
        compare("BITPOS", "k", bit)
        compare("BITPOS", "missing", bit)
        for start, end in RANGES:
            compare("BITPOS", "k", bit, start)
            compare("BITPOS", "k", bit, start, end)
            compare("BITPOS", "k", bit, start, end, "BYTE")
            compare("BITPOS", "k", bit, start, end, "bit")


def test_bitop(compare):
    compare("SET", "a", b"\xff\x0f\x01")
    compare("SET", "b", b"\xf0")
    compare("SET", "c", b"")
    compare("SET", "d", b"old")
    compare("EXPIRE", "d", 100)
    for op in ("AND", "OR", "XOR", "and"):
        for keys in (["a"], ["a", "b"], ["b", "a"], ["a", "missing"], ["a", "b", "c"], ["missing", "c"]):
            compare("BITOP", op, "d", *keys)
            compare("GET", "d")
            compare("TTL", "d")
    for source in ("a", "b", "c", "missing"):
        compare("BITOP", "NOT", "{a}dest", source)
        compare("GET", "{a}dest")
    # Source and destination the same key.
    compare("BITOP", "NOT", "a", "a")
    compare("GET", "a")
    # All sources empty or missing: the destination goes.
    compare("SET", "d", "x")
    compare("BITOP", "OR", "d", "missing", "c")
    compare("EXISTS", "d")


def test_bitmaps_random(compare):
    rng = random.Random(7)
    keys = ["a", "b", "c", "{a}x"]
    for _ in range(300):
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.4:
            compare("SETBIT", key, rng.randrange(0, 200), rng.randrange(2))
        elif roll < 0.55:
            compare("GETBIT", key, rng.randrange(0, 220))
        elif roll < 0.7:
            compare(
                "BITCOUNT", key, rng.randrange(-30, 30), rng.randrange(-30, 30), rng.choice(["BIT", "BYTE"])
            )
        elif roll < 0.85:
            args = [rng.randrange(-30, 30), rng.randrange(-30, 30), rng.choice(["BIT", "BYTE"])]
            compare("BITPOS", key, rng.randrange(2), *args[: rng.randrange(4)])
        else:
            op = rng.choice(["AND", "OR", "XOR", "NOT"])
            sources = [rng.choice(keys)] if op == "NOT" else rng.sample(keys, rng.randrange(1, 4))
            compare("BITOP", op, rng.choice(keys), *sources)
    for key in keys:
        compare("GET", key)


def test_bitop_in_a_transaction_across_shards(r):
    r.set("a", b"\x0f")
    r.set("b", b"\xf0")
    with r.pipeline() as p:
        p.bitop("OR", "c", "a", "b").get("c").setbit("a", 0, 1).bitop("AND", "d", "a", "c").get("d")
        assert p.execute() == [1, b"\xff", 0, 1, b"\x8f"]


def test_bitfield(compare):
    compare("BITFIELD", "k")
    compare("BITFIELD", "k", "GET", "u8", 0)  # a missing key reads as zeros, and stays missing
    compare("EXISTS", "k")
    compare("BITFIELD", "k", "SET", "u8", 0, 255, "GET", "u8", 0, "GET", "i8", 0, "GET", "u4", 4)
    compare("BITFIELD", "k", "INCRBY", "u2", 100, 1, "OVERFLOW", "SAT", "INCRBY", "u2", 102, 10)
    compare("BITFIELD", "k", "SET", "i5", "#2", -3, "GET", "i5", "#2", "GET", "u5", 10)
    compare("BITFIELD", "k", "SET", "i64", 3, -1, "GET", "i64", 3, "GET", "u63", 4)
    compare(
        "BITFIELD",
        "k",
        "OVERFLOW",
        "FAIL",
        "INCRBY",
        "i8",
        0,
        200,
        "OVERFLOW",
        "wrap",
        "INCRBY",
        "i8",
        0,
        200,
    )
    compare("GET", "k")
    compare("BITFIELD_RO", "k", "GET", "u8", 0, "GET", "i16", 4)
    compare("BITFIELD_RO", "k")
    compare("SET", "t", "v", "EX", 100)
    compare("BITFIELD", "t", "SET", "u8", 0, 65)
    compare("TTL", "t")
    # An overflow with FAIL writes nothing, but the key is created all the same.
    compare("BITFIELD", "new", "OVERFLOW", "FAIL", "SET", "u2", 0, 10)
    compare("GET", "new")


@pytest.mark.parametrize("overflow", ["WRAP", "SAT", "FAIL"])
@pytest.mark.parametrize("kind", ["i1", "i3", "i8", "i63", "i64", "u1", "u3", "u8", "u63"])
def test_bitfield_overflow(compare, overflow, kind):
    bits = int(kind[1:])
    edges = [0, 1, -1, 2, -2, 5, -5, 2 ** (bits - 1), -(2 ** (bits - 1)), 2**63 - 1, -(2**63)]
    for value in edges:
        compare("BITFIELD", "k", "OVERFLOW", overflow, "SET", kind, 3, value, "GET", kind, 3)
        for increment in edges:
            compare("BITFIELD", "k", "OVERFLOW", overflow, "INCRBY", kind, 3, increment)
    compare("GET", "k")


def test_bitfield_errors(compare):
    compare("LPUSH", "l", "x")
    compare("SET", "s", "x")
    for args in [
        ("BITFIELD", "l"),
        ("BITFIELD", "l", "GET", "u8", 0),
        ("BITFIELD", "l", "SET", "u8", 0, 1),
        ("BITFIELD", "s", "GET", "u8"),
        ("BITFIELD", "s", "FOO", "u8", 0),
        ("BITFIELD", "s", "OVERFLOW"),
        ("BITFIELD", "s", "OVERFLOW", "BIG", "GET", "u8", 0),
        ("BITFIELD", "s", "GET", "u64", 0),
        ("BITFIELD", "s", "GET", "i65", 0),
        ("BITFIELD", "s", "GET", "i0", 0),
        ("BITFIELD", "s", "GET", "x8", 0),
        ("BITFIELD", "s", "GET", "u+8", 0),
        ("BITFIELD", "s", "GET", "u", 0),
        ("BITFIELD", "s", "GET", "u8", -1),
        ("BITFIELD", "s", "GET", "u8", "#-1"),
        ("BITFIELD", "s", "GET", "u8", "#x"),
        ("BITFIELD", "s", "GET", "u8", 4294967296),
        ("BITFIELD", "s", "GET", "u8", "#536870912"),
        ("BITFIELD", "s", "SET", "u8", 0, "x"),
        ("BITFIELD", "s", "INCRBY", "u8", 0),
        ("BITFIELD", "s", "GET", "u8", 0, "SET", "x8", 0, 1),
        ("BITFIELD_RO", "s", "SET", "u8", 0, 1),
        ("BITFIELD_RO", "s", "INCRBY", "u8", 0, 1, "GET", "x8", 0),
        ("BITFIELD_RO", "s", "OVERFLOW", "SAT", "GET", "u8", 0),
        ("BITFIELD_RO", "l", "GET", "u8", 0),
    ]:
        compare(*args)
    compare("GET", "s")
