"""Sorted set commands, compared with a real redis-server.

``compare`` goes through redis-py, whose callbacks turn scores into Python
floats; that hides how a score is printed.  The ``raw`` fixture below
compares the exact reply bytes instead, in RESP2 and RESP3, for the tests
where the formatting is the point (``%.17g``, ``-0``, ``inf``, reply
shapes).
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis

from tests.support.placement import ROUTER, on_shards
from tests.support.resp import RespClient

A, B, C, D = on_shards(0, 1, 2, 3, prefix="z")


def test_keys_are_on_different_shards():
    assert [ROUTER.shard_of(k.encode()) for k in (A, B, C, D)] == [0, 1, 2, 3]


# -- exact bytes ------------------------------------------------------------------


@pytest.fixture(params=[3, 2], ids=["resp3", "resp2"])
def raw(request, ports):
    """Like ``compare``, but the exact reply bytes must match."""
    real = RespClient(ports["redis"], protocol=request.param)
    ours = RespClient(ports["shardkv"], protocol=request.param)
    real.call("FLUSHALL")
    ours.call("FLUSHALL")

    def run(*args: object) -> bytes:
        expected = real.call(*args)
        got = ours.call(*args)
        assert got == expected, f"{args!r}: redis replied {expected!r}, shardkv replied {got!r}"
        return got

    yield run
    real.close()
    ours.close()


@pytest.fixture
def ours(ports):
    """A RESP3 client to shardkv alone, flushed, for what Redis 7.0 lacks."""
    c = redis.Redis(port=ports["shardkv"], protocol=3)
    c.flushall()
    yield c
    c.close()


# -- ZADD, ZINCRBY -------------------------------------------------------------------


def test_zadd_basic(compare):
    compare("ZADD", "z", 1, "a", 2, "b", 3, "c")
    compare("ZADD", "z", 1, "a", 5, "b", 0, "d")
    compare("ZADD", "z", "CH", 1, "a", 6, "b", 1, "e")
    compare("ZADD", "z", 4, "x", 3, "x", 7, "x")  # the last score wins, counted once
    compare("ZRANGE", "z", 0, -1, "WITHSCORES")
    compare("ZCARD", "z")
    compare("TYPE", "z")
    compare("ZADD", "z", 1, "")
    compare("ZADD", "z", 1, "\x00\xff", 1, "\r\n")
    compare("ZRANGE", "z", 0, -1)


def test_zadd_options(compare):
    compare("ZADD", "z", 10, "a", 20, "b")
    compare("ZADD", "z", "NX", 1, "a", 30, "c")
    compare("ZADD", "z", "XX", 1, "a", 40, "d")
    compare("ZADD", "z", "XX", "CH", 2, "a", 40, "d")
    compare("ZADD", "z", "GT", "CH", 1, "a", 25, "b", 5, "e")
    compare("ZADD", "z", "LT", "CH", 1, "a", 25, "b", 6, "f")
    compare("ZADD", "z", "XX", "GT", "CH", 100, "a", 0, "b", 7, "g")
    compare("ZADD", "z", "xx", "lt", "ch", 0, "a", 0, "b")
    compare("ZADD", "z", "GT", 5, "new")  # GT and LT never stop an addition
    compare("ZADD", "z", "CH", "CH", 5, "new")
    compare("ZRANGE", "z", 0, -1, "WITHSCORES")
    compare("ZADD", "missing", "XX", 1, "a")
    compare("EXISTS", "missing")
    compare("ZADD", "fresh", "GT", "LT", 1, "a")


def test_zadd_incr(raw):
    # Through raw bytes: redis-py's RESP2 callback for ZADD expects an integer.
    raw("ZADD", "z", 10, "a", 20, "b")
    raw("ZADD", "z", "nx", "ch", "incr", 1, "h")
    raw("ZADD", "z", "NX", "INCR", 1, "h")
    raw("ZADD", "z", "XX", "INCR", 1.5, "h")
    raw("ZADD", "z", "XX", "INCR", 1, "nope")
    raw("ZADD", "z", "GT", "INCR", -1, "h")
    raw("ZADD", "z", "GT", "INCR", 1, "h")
    raw("ZADD", "z", "LT", "INCR", 1, "h")
    raw("ZADD", "z", "LT", "INCR", -5, "h")
    raw("ZADD", "z", "INCR", 0, "h")
    raw("ZADD", "z", "CH", "INCR", "0.1", "a")
    raw("ZADD", "z", "INCR", "inf", "a")
    raw("ZADD", "z", "INCR", "-inf", "a")
    raw("ZADD", "z", "INCR", "+inf", "a")
    raw("ZADD", "z", "INCR", "-inf", "new")
    raw("ZADD", "z", "INCR", 1, "a", 2, "b")
    raw("ZRANGE", "z", 0, -1, "WITHSCORES")
    raw("ZADD", "missing", "XX", "INCR", 1, "a")
    raw("EXISTS", "missing")
    raw("ZADD", "fresh", "NX", "INCR", 1, "a")


def test_zadd_errors(compare):
    compare("ZADD", "z", 1, "a")
    compare("ZADD", "z", "NX", "XX", 1, "a")
    compare("ZADD", "z", "NX", "GT", 1, "a")
    compare("ZADD", "z", "NX", "LT", 1, "a")
    compare("ZADD", "z", "GT", "LT", 1, "a")
    compare("ZADD", "z", "NX", "XX", "GT", "LT", 1, "a")
    compare("ZADD", "z", "INCR", 1, "a", 2, "b")
    compare("ZADD", "z", "NX", "XX", "INCR", 1, "a", 2, "b")
    compare("ZADD", "z", 1, "a", 2)
    compare("ZADD", "z", "NX", 1)
    compare("ZADD", "z", "NX", "XX", 1)
    compare("ZADD", "z", "NX")
    compare("ZADD", "z")
    compare("ZADD", "z", 1, "a", "x", "b")  # nothing is added when one score is bad
    compare("ZADD", "z", "1", "b", "nan", "c")
    compare("ZRANGE", "z", 0, -1, "WITHSCORES")
    compare("ZADD", "z", "FOO", 1, "a")
    compare("ZADD", "z", "INCR", "x", "a")
    compare("ZINCRBY", "z", "inf", "a")
    compare("ZINCRBY", "z", "-inf", "a")
    compare("ZSCORE", "z", "a")


@pytest.mark.parametrize(
    "score",
    [
        "1", "-1", "+1", "0", "-0", "1.5", ".5", "5.", "1e3", "1E-3", "-1.5e+10", "0x10", "0X1p3",
        "0x.8", "inf", "-inf", "+inf", "Infinity", "-INFINITY", "1e308", "1e-310", "0e-400",
        "007", "00.100",
        # refused
        "", " 1", "1 ", "1e400", "-1e400", "1e-400", "0x1p-1080", "0x1p99999", "nan", "NaN",
        "-nan", "1_0", "1e", "0x", ".", "e5", "inf1", "infinit", "1,5", "--1", "\x001", "1\x00",
        "0b1", "1.2.3",
    ],
)  # fmt: skip
def test_score_parsing(raw, score):
    raw("ZADD", "z", score, "m")
    raw("ZSCORE", "z", "m")
    raw("ZINCRBY", "z", score, "n")
    raw("ZUNION", 1, "z", "WEIGHTS", score, "WITHSCORES")


def test_zincrby(compare):
    compare("ZINCRBY", "z", 1, "a")
    compare("ZINCRBY", "z", 2.5, "a")
    compare("ZINCRBY", "z", -10, "a")
    compare("ZINCRBY", "z", "x", "a")
    compare("ZINCRBY", "z", "nx", "a")  # ZINCRBY reads ZADD's options too
    compare("ZINCRBY", "z", "incr", "a")
    compare("ZINCRBY", "z", "1")
    compare("ZINCRBY", "z", 1, "a", "b")
    compare("ZINCRBY", "z", "inf", "b")
    compare("ZINCRBY", "z", "inf", "b")
    compare("ZINCRBY", "z", "-inf", "b")
    compare("ZRANGE", "z", 0, -1, "WITHSCORES")


# -- formatting -----------------------------------------------------------------------


def test_score_formatting(raw):
    raw("ZADD", "f", "1.1", "a", "1e300", "b", "inf", "c", "-inf", "d", "-0.0", "e", "5e-324", "f")
    raw("ZADD", "f", "1e16", "g", "123456789012345678", "h", "0.1", "i", "-2.5", "j", "3", "k")
    raw("ZADD", "f", "1e17", "l", "4503599627370496", "m", "-4503599627370495", "n")
    raw("ZINCRBY", "f", "0.1", "s")
    raw("ZINCRBY", "f", "0.2", "s")
    for m in "abcdefghijklmns":
        raw("ZSCORE", "f", m)
    raw("ZMSCORE", "f", "a", "nope", "e", "c")
    raw("ZRANGE", "f", 0, -1, "WITHSCORES")
    raw("ZRANGE", "f", 0, -1)
    raw("ZREVRANGE", "f", 0, 3, "WITHSCORES")
    raw("ZRANGEBYSCORE", "f", "-inf", "+inf", "WITHSCORES")
    raw("ZSCAN", "f", 0)
    raw("ZRANDMEMBER", "f", 100, "WITHSCORES")
    raw("ZRANDMEMBER", "f", 100)
    raw("ZUNION", 1, "f", "WITHSCORES")
    raw("ZPOPMIN", "f")
    raw("ZPOPMAX", "f", 2)
    raw("ZPOPMIN", "f", 1)
    raw("ZMPOP", 1, "f", "MIN", "COUNT", 2)
    raw("ZMPOP", 1, "f", "MAX")


def test_zscan_score_text(raw):
    # ZSCAN prints scores as the encoding stores them: a listpack holds
    # whole numbers up to 2**62 as integers, a skiplist prints %.17g.
    values = ["1e17", "123456789012345678", "4611686018427387904", "-4611686018427387904",
              "4611686018427389952", "1e18", "2305843009213693952", "4503599627370497", "-0.0",
              "1.5", "inf", "-inf", "1e300", "3"]  # fmt: skip
    raw("ZADD", "small", *[x for i, v in enumerate(values) for x in (v, f"m{i}")])
    raw("ZSCAN", "small", 0)
    raw("ZADD", "big", *[x for i, v in enumerate(values) for x in (v, f"m{i}")], 1, "x" * 65)
    for i in range(len(values)):
        raw("ZSCAN", "big", 0, "MATCH", f"m{i}", "COUNT", 1000)
    raw("ZRANGE", "big", 0, -1, "WITHSCORES")


def test_negative_zero(raw):
    # A small sorted set (a listpack in Redis) keeps -0 as 0; a big one
    # (a skiplist) keeps the sign.  Replies computed on the fly keep it too.
    raw("ZADD", "small", "-0.0", "a", "0", "b", "-0", "c")
    raw("ZSCORE", "small", "a")
    raw("ZINCRBY", "small", "-0.0", "new")
    raw("ZSCORE", "small", "new")
    raw("ZADD", "small", "INCR", "-0.0", "new2")
    raw("ZRANGE", "small", 0, -1, "WITHSCORES")
    raw("ZADD", "big", "1", "m" * 70)
    raw("ZADD", "big", "-0.0", "x")
    raw("ZINCRBY", "big", "-0.0", "y")
    raw("ZADD", "big", "0", "x")  # an equal score: the sign stays
    raw("ZSCORE", "big", "x")
    raw("ZSCORE", "big", "y")
    raw("ZRANGE", "big", 0, -1, "WITHSCORES")
    raw("ZSCAN", "big", 0, "MATCH", "x", "COUNT", 1000)  # a skiplist is in hash order
    raw("ZUNION", 1, "big", "WITHSCORES")
    raw("ZUNIONSTORE", "u", 1, "big")
    raw("ZSCORE", "u", "x")
    raw("ZREM", "big", "m" * 70)
    raw("ZUNIONSTORE", "u2", 1, "big")  # small enough again: a listpack
    raw("ZSCORE", "u2", "x")
    raw("ZRANGESTORE", "r", "big", 0, -1)
    raw("ZSCORE", "r", "x")
    raw("ZSCORE", "big", "x")
    raw("ZADD", "many", *[x for i in range(200) for x in ("-0.0", f"m{i}")])
    raw("ZSCORE", "many", "m0")  # added while still a listpack
    raw("ZADD", "many", "-0.0", "late")
    raw("ZSCORE", "many", "late")


# -- reading ------------------------------------------------------------------------------


def test_zscore_zmscore_zcard(compare):
    compare("ZADD", "z", 1, "a", 2, "b")
    compare("ZSCORE", "z", "a")
    compare("ZSCORE", "z", "nope")
    compare("ZSCORE", "nokey", "a")
    compare("ZMSCORE", "z", "a", "nope", "b", "a")
    compare("ZMSCORE", "nokey", "a", "b")
    compare("ZMSCORE", "z")
    compare("ZCARD", "z")
    compare("ZCARD", "nokey")
    compare("ZCARD", "z", "x")
    compare("ZSCORE", "z")


def test_zrank(compare):
    compare("ZADD", "z", 1, "a", 2, "b", 2, "c", 3, "d", "-inf", "e", "inf", "f")
    for m in ("a", "b", "c", "d", "e", "f", "nope"):
        compare("ZRANK", "z", m)
        compare("ZREVRANK", "z", m)
    compare("ZRANK", "nokey", "a")
    compare("ZREVRANK", "nokey", "a")


def test_zrank_takes_exactly_three_arguments(compare):
    """Redis 7.0 has no WITHSCORE (7.2's): ZRANK and ZREVRANK have arity 3,
    so a fourth argument is a wrong-arity error (COMMAND INFO: see
    test_server_commands).
    Before, shardkv took 7.2's form (arity -3) and answered [rank, score]."""
    compare("ZADD", "z", 1.5, "a", 2, "b")
    for name in ("ZRANK", "ZREVRANK"):
        compare(name, "z", "b", "WITHSCORE")
        compare(name, "z", "b", "WITHSCORE", "x")
        compare(name, "nokey", "a", "WITHSCORE")
        compare(name, "z")
    compare("EVAL", "return redis.pcall('zrank', KEYS[1], 'b', 'withscore')", 1, "z")


def test_zrank_getkeys_and_info_as_redis_7_0(ports):
    """COMMAND INFO and GETKEYS of ZRANK and ZREVRANK: arity 3, byte for byte."""
    got = []
    for name in ("redis", "shardkv"):
        c = RespClient(ports[name], protocol=2)
        got.append(
            [
                c.call("COMMAND", "INFO", "zrank", "zrevrank"),
                c.call("COMMAND", "GETKEYS", "ZRANK", "z", "b"),
                c.call("COMMAND", "GETKEYS", "ZREVRANK", "z", "b", "WITHSCORE"),
            ]
        )
        c.close()
    assert got[1] == got[0]


def test_zcount(compare):
    compare("ZADD", "z", 1, "a", 2, "b", 3, "c", 4, "d", "-inf", "e", "inf", "f", 2.5, "g")
    for lo, hi in [
        ("-inf", "+inf"), ("1", "3"), ("(1", "3"), ("1", "(3"), ("(1", "(3"), ("(2", "(2"),
        ("2", "2"), ("3", "1"), ("-inf", "-inf"), ("inf", "inf"), ("(-inf", "(inf"),
        ("(inf", "+inf"), ("-inf", "(-inf"), ("2.5", "2.5"), ("(2.5", "3"), ("", "3"),
        ("(", "3"), (" 2", "3"), ("0x2", "3"), ("(1e400", "inf"), ("-1e400", "1e-400"),
    ]:  # fmt: skip
        compare("ZCOUNT", "z", lo, hi)
    for lo, hi in [("a", "1"), ("1", "b"), ("nan", "1"), ("(", "( "), ("  ", "1"), ("[1", "2")]:
        compare("ZCOUNT", "z", lo, hi)
        compare("ZCOUNT", "nokey", lo, hi)
    compare("ZCOUNT", "nokey", 0, 1)


def test_zlexcount(compare):
    compare("ZADD", "z", *[x for m in "abcdefg" for x in (0, m)])
    for lo, hi in [
        ("-", "+"), ("[a", "[c"), ("(a", "[c"), ("[a", "(c"), ("(a", "(c"), ("[c", "[a"),
        ("-", "-"), ("+", "+"), ("+", "-"), ("[b", "[b"), ("(b", "[b"), ("[", "+"), ("(", "+"),
        ("-", "[cc"), ("[bb", "+"), ("[a\x00", "+"),
    ]:  # fmt: skip
        compare("ZLEXCOUNT", "z", lo, hi)
    for lo, hi in [("a", "[b"), ("[a", "b"), ("+a", "+"), ("-", "--"), ("", "+")]:
        compare("ZLEXCOUNT", "z", lo, hi)
        compare("ZLEXCOUNT", "nokey", lo, hi)


# -- ZRANGE and friends ----------------------------------------------------------------------


def fill(compare, key: str = "z") -> None:
    compare("ZADD", key, 1, "a", 2, "b", 3, "c", 4, "d", 5, "e", 5, "ee", "-inf", "ninf", "inf", "pinf")


def test_zrange_by_rank(compare):
    fill(compare)
    for start, stop in [
        (0, -1), (0, 0), (1, 3), (-3, -1), (-100, 100), (5, 2), (7, 100), (8, 10), (-1, -1),
        (-2, 0), (0, -100), (-100, -50), (3, 3), (100, 200),
    ]:  # fmt: skip
        compare("ZRANGE", "z", start, stop)
        compare("ZRANGE", "z", start, stop, "WITHSCORES")
        compare("ZRANGE", "z", start, stop, "REV", "WITHSCORES")
        compare("ZREVRANGE", "z", start, stop)
        compare("ZREVRANGE", "z", start, stop, "withscores")
    compare("ZRANGE", "nokey", 0, -1)
    compare("ZRANGE", "z", "a", 1)
    compare("ZRANGE", "z", 0, "1.5")
    compare("ZRANGE", "z", 0, 1, "LIMIT", 0, 1)
    compare("ZRANGE", "z", 0, 1, "LIMIT", 0, -1)  # LIMIT with count -1 counts as no LIMIT
    compare("ZREVRANGE", "z", 0, 1, "LIMIT", 0, 1)
    compare("ZREVRANGE", "z", 0, 1, "REV")
    compare("ZRANGE", "z", 0, 1, "REV", "REV")
    compare("ZRANGE", "z", 0, 1, "WITHSCORE")
    compare("ZRANGE", "z", 0, 1, "WITHSCORES", "WITHSCORES")
    compare("ZRANGE", "z", 0, 1, "FOO")


def test_zrange_by_score(compare):
    fill(compare)
    ranges = [
        ("-inf", "+inf"), ("1", "3"), ("(1", "3"), ("1", "(3"), ("(1", "(5"), ("5", "5"),
        ("(5", "5"), ("3", "1"), ("-inf", "-inf"), ("+inf", "inf"), ("(-inf", "(+inf"),
        ("2.5", "4.5"), ("", "2"), ("(", "2"), ("-1e400", "1e400"),
    ]  # fmt: skip
    for lo, hi in ranges:
        compare("ZRANGEBYSCORE", "z", lo, hi)
        compare("ZRANGEBYSCORE", "z", lo, hi, "WITHSCORES")
        compare("ZREVRANGEBYSCORE", "z", hi, lo, "WITHSCORES")
        compare("ZRANGE", "z", lo, hi, "BYSCORE", "WITHSCORES")
        compare("ZRANGE", "z", hi, lo, "BYSCORE", "REV")
        for offset, count in [(0, 1), (1, 2), (2, -1), (-1, 2), (0, 0), (7, 5), (8, 1), (100, 1)]:
            compare("ZRANGEBYSCORE", "z", lo, hi, "LIMIT", offset, count)
            compare("ZREVRANGEBYSCORE", "z", hi, lo, "LIMIT", offset, count, "WITHSCORES")
            compare("ZRANGE", "z", lo, hi, "BYSCORE", "LIMIT", offset, count)
            compare("ZRANGE", "z", hi, lo, "REV", "BYSCORE", "LIMIT", offset, count)


def test_zrange_by_lex(compare):
    compare("ZADD", "z", *[x for m in ["a", "b", "bb", "c", "d", "e", "", "\x00", "\xff"] for x in (0, m)])
    ranges = [
        ("-", "+"), ("[a", "[c"), ("(a", "[c"), ("[a", "(c"), ("(a", "(c"), ("[b", "[b"),
        ("(b", "(b"), ("[c", "[a"), ("-", "-"), ("+", "+"), ("+", "-"), ("[", "(b"), ("-", "[b"),
        ("(bb", "+"), ("[\x00", "(\xff"),
    ]  # fmt: skip
    for lo, hi in ranges:
        compare("ZRANGEBYLEX", "z", lo, hi)
        compare("ZREVRANGEBYLEX", "z", hi, lo)
        compare("ZRANGE", "z", lo, hi, "BYLEX")
        compare("ZRANGE", "z", hi, lo, "BYLEX", "REV")
        for offset, count in [(0, 1), (1, 2), (2, -1), (-1, 2), (0, 0), (9, 1), (20, 1)]:
            compare("ZRANGEBYLEX", "z", lo, hi, "LIMIT", offset, count)
            compare("ZREVRANGEBYLEX", "z", hi, lo, "LIMIT", offset, count)
            compare("ZRANGE", "z", hi, lo, "BYLEX", "REV", "LIMIT", offset, count)


def test_zrange_lex_with_mixed_scores(compare):
    # Redis says lex ranges on different scores are undefined; a small set
    # is scanned in order, and that is what we copy.
    compare("ZADD", "z", 5, "a", 1, "b", 3, "c", 2, "d", 4, "e", 0, "f")
    for lo, hi in [("-", "+"), ("[b", "[d"), ("[a", "[c"), ("(c", "+"), ("-", "(c"), ("[e", "[z")]:
        compare("ZRANGEBYLEX", "z", lo, hi)
        compare("ZREVRANGEBYLEX", "z", hi, lo)
        compare("ZLEXCOUNT", "z", lo, hi)
        compare("ZRANGE", "z", hi, lo, "BYLEX", "REV", "LIMIT", 1, 2)


def test_zrange_errors(compare):
    fill(compare)
    compare("SET", "str", "v")
    for key in ("z", "nokey", "str"):
        compare("ZRANGE", key, 0, -1, "BYLEX", "WITHSCORES")
        compare("ZRANGE", key, "-", "+", "BYLEX", "WITHSCORES")
        compare("ZRANGEBYLEX", key, "-", "+", "WITHSCORES")
        compare("ZRANGE", key, "a", "b", "BYSCORE")
        compare("ZRANGE", key, "a", "b", "BYLEX")
        compare("ZRANGE", key, "a", "b")
        compare("ZRANGEBYSCORE", key, "a", "b")
        compare("ZRANGEBYSCORE", key, "1", "nan")
        compare("ZRANGEBYLEX", key, "a", "b")
        compare("ZRANGEBYLEX", key, "[a", "+b")
        compare("ZRANGE", key, 0, -1, "BYSCORE", "BYLEX")
        compare("ZRANGE", key, 0, -1, "BYSCORE", "BYSCORE")
        compare("ZRANGE", key, 0, -1, "LIMIT", 0, 1)
        compare("ZRANGE", key, 0, -1, "BYSCORE", "LIMIT", 0)
        compare("ZRANGE", key, 0, -1, "BYSCORE", "LIMIT", "x", 1)
        compare("ZRANGE", key, 0, -1, "BYSCORE", "LIMIT", 0, "x")
        compare("ZRANGE", key, 0, -1, "BYSCORE", "LIMIT", 0, 1, "LIMIT", 1, 1)
        compare("ZRANGEBYSCORE", key, 0, 10, "REV")
        compare("ZRANGEBYSCORE", key, 0, 10, "BYSCORE")
        compare("ZRANGEBYSCORE", key, 0, 10, "BYLEX")
        compare("ZRANGEBYLEX", key, "-", "+", "BYLEX")
        compare("ZREVRANGEBYSCORE", key, 10, 0, "REV")
        compare("ZRANGEBYSCORE", key, 0, 10, "limit", 1, 1, "withscores")
        compare("ZRANGE", key, 0, -1)
        compare("ZRANGEBYSCORE", key, 0, 10)
        compare("ZRANGEBYLEX", key, "-", "+")
    compare("ZRANGE", "z")
    compare("ZRANGE", "z", 0)
    compare("ZRANGEBYSCORE", "z", 0)
    compare("ZREVRANGE", "z", 0)


def test_zrangestore(compare):
    fill(compare, A)
    compare("ZRANGESTORE", "{a}dst", A, 0, -1)  # on another shard
    compare("ZRANGE", "{a}dst", 0, -1, "WITHSCORES")
    compare("ZRANGESTORE", "dst", A, 1, 3, "REV")
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("ZRANGESTORE", "dst", A, "(1", "5", "BYSCORE", "LIMIT", 1, 2)
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("ZRANGESTORE", "dst", A, "5", "(1", "BYSCORE", "REV", "LIMIT", 1, 2)
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("ZADD", B, 0, "a", 0, "b", 0, "c")
    compare("ZRANGESTORE", "dst", B, "[b", "+", "BYLEX")
    compare("ZRANGE", "dst", 0, -1, "WITHSCORES")
    compare("SET", "str", "v")
    compare("EXPIRE", "dst", 100)
    compare("ZRANGESTORE", "dst", A, 0, 0)
    compare("TTL", "dst")  # a stored result has no TTL
    compare("ZRANGESTORE", "dst", A, 10, 20)  # an empty result deletes the destination
    compare("EXISTS", "dst")
    compare("ZRANGESTORE", "str", A, 0, 1)
    compare("TYPE", "str")
    compare("ZRANGESTORE", "str", "nokey", 0, 1)
    compare("EXISTS", "str")
    compare("SET", "str", "v")
    compare("ZRANGESTORE", "dst", "str", 0, 1)
    compare("ZRANGESTORE", "dst", A, 0, 1, "WITHSCORES")
    compare("ZRANGESTORE", "dst", A, 0, 1, "LIMIT", 0, 1)
    compare("ZRANGESTORE", "dst", A, "a", 1, "BYSCORE")
    compare("ZRANGESTORE", "dst", A, 0)
    compare("ZRANGESTORE", A, A, 2, 3)  # in place
    compare("ZRANGE", A, 0, -1, "WITHSCORES")


# -- removing ranges ------------------------------------------------------------------------


def test_zremrangebyrank(compare):
    for start, stop in [(0, 0), (-1, -1), (1, 2), (5, 3), (10, 20), (-100, 1), (0, -1)]:
        fill(compare)
        compare("ZREMRANGEBYRANK", "z", start, stop)
        compare("ZRANGE", "z", 0, -1)
    compare("EXISTS", "z")
    compare("ZREMRANGEBYRANK", "nokey", 0, -1)
    compare("ZREMRANGEBYRANK", "z", "a", 1)
    compare("ZREMRANGEBYRANK", "nokey", 0, "x")


def test_zremrangebyscore(compare):
    for lo, hi in [("1", "3"), ("(1", "(3"), ("-inf", "(2"), ("5", "5"), ("3", "1"), ("-inf", "inf")]:
        fill(compare)
        compare("ZREMRANGEBYSCORE", "z", lo, hi)
        compare("ZRANGE", "z", 0, -1)
    compare("EXISTS", "z")
    compare("ZREMRANGEBYSCORE", "nokey", 0, 1)
    compare("ZREMRANGEBYSCORE", "z", "a", 1)
    compare("ZREMRANGEBYSCORE", "nokey", "(", "x")


def test_zremrangebylex(compare):
    for lo, hi in [("[b", "[d"), ("(b", "(d"), ("-", "(c"), ("[e", "+"), ("[d", "[b"), ("-", "+")]:
        compare("ZADD", "z", *[x for m in "abcdef" for x in (0, m)])
        compare("ZREMRANGEBYLEX", "z", lo, hi)
        compare("ZRANGE", "z", 0, -1)
    compare("EXISTS", "z")
    compare("ZREMRANGEBYLEX", "nokey", "-", "+")
    compare("ZREMRANGEBYLEX", "z", "a", "+")
    compare("ZREMRANGEBYLEX", "nokey", "-", "x")


# -- popping ---------------------------------------------------------------------------------


def test_zpop(compare):
    fill(compare)
    compare("ZPOPMIN", "z")
    compare("ZPOPMAX", "z")
    compare("ZPOPMIN", "z", 2)
    compare("ZPOPMAX", "z", 1)
    compare("ZPOPMIN", "z", 0)
    compare("ZPOPMAX", "z", 100)
    compare("EXISTS", "z")
    compare("ZPOPMIN", "z")
    compare("ZPOPMIN", "z", 3)
    fill(compare)
    compare("ZPOPMIN", "z", -1)
    compare("ZPOPMIN", "z", "x")
    compare("ZPOPMIN", "z", "1.0")
    compare("ZPOPMIN", "z", 1, 2)
    compare("ZPOPMIN", "nokey", -1)
    compare("ZPOPMAX", "nokey", 0)
    compare("SET", "str", "v")
    compare("ZPOPMIN", "str")
    compare("ZPOPMIN", "str", 0)
    compare("ZPOPMAX", "str", "x")
    compare("ZPOPMIN", "z", 10)
    compare("EXISTS", "z")


def test_zpop_shapes(raw):
    raw("ZADD", "z", 1, "a", 2, "b", 3, "c", 4, "d")
    raw("ZPOPMIN", "z")
    raw("ZPOPMIN", "z", 1)
    raw("ZPOPMAX", "z", 5)
    raw("ZPOPMIN", "z")
    raw("ZPOPMIN", "z", 2)


def test_zmpop(compare):
    fill(compare, A)
    compare("ZADD", B, 10, "x", 20, "y")
    compare("ZMPOP", 1, A, "MIN")
    compare("ZMPOP", 1, A, "max", "count", 2)
    compare("ZMPOP", 3, "nokey", B, A, "MIN", "COUNT", 10)  # keys on three shards
    compare("EXISTS", B)
    compare("ZMPOP", 2, B, A, "MAX", "COUNT", 100)
    compare("ZMPOP", 2, B, A, "MAX", "COUNT", 100)
    compare("EXISTS", A)
    compare("ZMPOP", 1, "nokey", "MIN")
    compare("SET", "str", "v")
    fill(compare, A)
    compare("ZMPOP", 2, "str", A, "MIN")
    compare("ZMPOP", 2, "nokey", "str", "MIN")
    compare("ZMPOP", 2, A, "str", "MIN")  # the first non-empty key decides
    for bad in [
        (0, A, "MIN"), (-1, A, "MIN"), ("x", A, "MIN"), (2, A, "MIN"), (1, A, "MID"),
        (1, A, "MIN", "COUNT"), (1, A, "MIN", "COUNT", 0), (1, A, "MIN", "COUNT", -1),
        (1, A, "MIN", "COUNT", "x"), (1, A, "MIN", "COUNT", 1, "COUNT", 2), (1, A, "MIN", "FOO"),
        (5, A, "MIN", "COUNT", 1), (1, A),
    ]:  # fmt: skip
        compare("ZMPOP", *bad)


def test_zmpop_shape(raw):
    raw("ZADD", "z", 1, "a", 2.5, "b", 3, "c")
    raw("ZMPOP", 1, "z", "MIN")
    raw("ZMPOP", 1, "z", "MAX", "COUNT", 5)
    raw("ZMPOP", 1, "z", "MAX", "COUNT", 5)


# -- ZRANDMEMBER -----------------------------------------------------------------------------


def test_zrandmember_errors(compare):
    compare("ZADD", "z", 1, "a", 2, "b", 3, "c")
    compare("SET", "str", "v")
    for key in ("z", "nokey", "str"):
        compare("ZRANDMEMBER", key, "x")
        compare("ZRANDMEMBER", key, "1.5")
        compare("ZRANDMEMBER", key, "-9223372036854775808")
        compare("ZRANDMEMBER", key, "9223372036854775808")
        compare("ZRANDMEMBER", key, "5000000000000000000", "WITHSCORES")
        compare("ZRANDMEMBER", key, "-5000000000000000000", "WITHSCORES")
        compare("ZRANDMEMBER", key, 1, "WITHSCORE")
        compare("ZRANDMEMBER", key, 1, "WITHSCORES", "x")
        compare("ZRANDMEMBER", key, 0)
        compare("ZRANDMEMBER", key, 0, "WITHSCORES")
    compare("ZRANDMEMBER", "nokey")
    compare("ZRANDMEMBER", "nokey", 5)
    compare("ZRANDMEMBER", "nokey", -5, "WITHSCORES")
    compare("ZRANDMEMBER", "str")
    # The whole set comes back in a fixed order (Redis 7.0: highest first).
    compare("ZRANDMEMBER", "z", 3)
    compare("ZRANDMEMBER", "z", 100, "WITHSCORES")


@pytest.mark.parametrize("protocol", [3, 2])
def test_zrandmember_properties(server, protocol):
    c = redis.Redis(port=server, protocol=protocol)
    try:
        for n in (5, 300):
            c.delete("z")
            scores = {f"m{i}".encode(): float(i) for i in range(n)}
            c.zadd("z", scores)
            assert c.zrandmember("z") in scores
            for count in (1, 2, n - 1):
                got = c.zrandmember("z", count)
                assert len(got) == count and len(set(got)) == count and set(got) <= set(scores)
            for count in (1, 3, n * 3):
                got = c.zrandmember("z", -count)
                assert len(got) == count and set(got) <= set(scores)
            got = c.execute_command("ZRANDMEMBER", "z", -7, "WITHSCORES")
            if protocol == 3:
                assert len(got) == 7 and all(len(pair) == 2 for pair in got)
                pairs = [(m, float(s)) for m, s in got]
            else:
                assert len(got) == 14
                pairs = [(got[i], float(got[i + 1])) for i in range(0, 14, 2)]
            assert all(scores[m] == s for m, s in pairs)
            got = c.execute_command("ZRANDMEMBER", "z", 4, "WITHSCORES")
            assert len(got) == (4 if protocol == 3 else 8)
    finally:
        c.close()


# -- several sets -------------------------------------------------------------------------


def test_zunion_zinter_zdiff(compare):
    compare("ZADD", A, 1, "a", 2, "b", 3, "c")
    compare("ZADD", B, 10, "b", 20, "c", "inf", "d")
    compare("SADD", C, "a", "d", "x")
    for cmd in ("ZUNION", "ZINTER", "ZDIFF"):
        compare(cmd, 2, A, B)
        compare(cmd, 2, A, B, "WITHSCORES")
        compare(cmd, 3, A, B, C, "WITHSCORES")
        compare(cmd, 3, C, A, "nokey", "WITHSCORES")
        compare(cmd, 2, A, A, "WITHSCORES")
        compare(cmd, 1, "nokey")
        compare(cmd, 1, C, "withscores")
    for cmd in ("ZUNION", "ZINTER"):
        compare(cmd, 3, A, B, C, "WEIGHTS", 1, 0, 2, "WITHSCORES")
        compare(cmd, 3, A, B, C, "WEIGHTS", -1, 0.5, "inf", "WITHSCORES")
        for how in ("SUM", "min", "Max"):
            compare(cmd, 3, A, B, C, "AGGREGATE", how, "WITHSCORES")
            compare(cmd, 3, A, B, C, "WEIGHTS", 2, -1, 3, "AGGREGATE", how, "WITHSCORES")
        compare(cmd, 2, A, B, "WEIGHTS", 1, 2, "WEIGHTS", 3, 4, "WITHSCORES")
        compare(cmd, 2, A, B, "AGGREGATE", "MIN", "AGGREGATE", "MAX", "WITHSCORES", "WITHSCORES")


def test_set_operation_errors(compare):
    compare("ZADD", A, 1, "a")
    compare("SET", "str", "v")
    for cmd in ("ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD"):
        compare(cmd, 0, A)
        compare(cmd, -1, A)
        compare(cmd, "x", A)
        compare(cmd, 3, A, B)
        compare(cmd, 2, A, "str")
        compare(cmd, 2, A, "str", "WEIGHTS", "x")
        compare(cmd, 1, A, "FOO")
        compare(cmd, 1, A, "WEIGHTS", 1)
        compare(cmd, 1, A, "AGGREGATE", "SUM")
        compare(cmd, 1, A, "WITHSCORES")
        compare(cmd, 1, A, "LIMIT", 1)
    for cmd in ("ZUNION", "ZINTER"):
        compare(cmd, 2, A, B, "WEIGHTS", 1)
        compare(cmd, 2, A, B, "WEIGHTS", 1, "x")
        compare(cmd, 2, A, B, "WEIGHTS", 1, "nan")
        compare(cmd, 2, A, B, "WEIGHTS", 1, "1e400")
        compare(cmd, 1, A, "AGGREGATE")
        compare(cmd, 1, A, "AGGREGATE", "AVG")
        compare(cmd, 1, A, "WEIGHTS")
    for cmd in ("ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"):
        compare(cmd, "dst", 0, A)
        compare(cmd, "dst", "x", A)
        compare(cmd, "dst", 2, A)
        compare(cmd, "dst", 1, A, "WITHSCORES")
        compare(cmd, "dst", 2, A, "str")
        compare(cmd, "dst")
        compare(cmd, "dst", 1)
    compare("ZDIFF", 2, A, B, "WEIGHTS", 1, 2)
    compare("ZDIFF", 2, A, B, "AGGREGATE", "MIN")
    compare("ZDIFFSTORE", "dst", 2, A, B, "WEIGHTS", 1, 2)
    compare("ZUNION")
    compare("ZUNION", 1)


def test_set_operation_inf_arithmetic(compare):
    compare("ZADD", A, "inf", "a", 1, "b", "-inf", "c")
    compare("ZADD", B, "-inf", "a", "inf", "b", "-inf", "c")
    for how in ("SUM", "MIN", "MAX"):
        compare("ZUNION", 2, A, B, "AGGREGATE", how, "WITHSCORES")
        compare("ZINTER", 2, A, B, "AGGREGATE", how, "WITHSCORES")
        compare("ZUNION", 2, A, B, "WEIGHTS", 0, 1, "AGGREGATE", how, "WITHSCORES")
        compare("ZINTER", 2, A, B, "WEIGHTS", 0, 1, "AGGREGATE", how, "WITHSCORES")
        compare("ZINTER", 2, A, B, "WEIGHTS", 1, 0, "AGGREGATE", how, "WITHSCORES")
        compare("ZUNION", 2, A, B, "WEIGHTS", "-inf", "inf", "AGGREGATE", how, "WITHSCORES")
        compare("ZINTER", 2, A, B, "WEIGHTS", "-inf", "inf", "AGGREGATE", how, "WITHSCORES")


def test_set_operation_float_order(raw):
    # Scores are added smallest set first; floating point addition is not
    # associative, so the order shows.
    raw("ZADD", A, "0.1", "x")
    raw("ZADD", B, "0.2", "x", 0, "y")
    raw("ZADD", C, "0.3", "x", 0, "y", 0, "z")
    raw("ZUNION", 3, C, B, A, "WITHSCORES")
    raw("ZUNION", 3, A, C, B, "WITHSCORES")
    raw("ZINTER", 3, C, A, B, "WITHSCORES")
    raw("ZINTER", 3, B, C, A, "WEIGHTS", 3, "0.7", 1.1, "WITHSCORES")
    raw("ZUNIONSTORE", "{x}d", 3, C, A, B)
    raw("ZSCORE", "{x}d", "x")


def test_set_operation_store(compare):
    compare("ZADD", A, 1, "a", 2, "b", 3, "c")
    compare("ZADD", B, 10, "b", 20, "c", 30, "d")
    compare("SADD", C, "a", "z")
    compare("SET", D, "v")
    compare("EXPIRE", D, 100)
    compare("ZUNIONSTORE", D, 3, A, B, C)  # four shards in one command
    compare("TTL", D)
    compare("TYPE", D)
    compare("ZRANGE", D, 0, -1, "WITHSCORES")
    compare("ZINTERSTORE", D, 2, A, B, "WEIGHTS", 2, 3, "AGGREGATE", "MAX")
    compare("ZRANGE", D, 0, -1, "WITHSCORES")
    compare("ZDIFFSTORE", D, 3, A, B, "nokey")
    compare("ZRANGE", D, 0, -1, "WITHSCORES")
    compare("ZDIFFSTORE", D, 2, A, C)
    compare("ZRANGE", D, 0, -1, "WITHSCORES")
    compare("ZINTERSTORE", D, 2, A, "nokey")  # empty: the destination goes
    compare("EXISTS", D)
    compare("ZUNIONSTORE", A, 2, A, B)  # a source is also the destination
    compare("ZRANGE", A, 0, -1, "WITHSCORES")
    compare("ZDIFFSTORE", B, 2, B, B)
    compare("EXISTS", B)
    compare("ZINTERSTORE", "{q}d", 1, "{q}nokey")
    compare("SET", "str", "v")
    compare("ZUNIONSTORE", "str", 1, C)
    compare("TYPE", "str")
    compare("ZRANGE", "str", 0, -1, "WITHSCORES")


def test_zintercard(compare):
    compare("ZADD", A, 1, "a", 2, "b", 3, "c", 4, "d")
    compare("ZADD", B, 1, "b", 1, "c", 1, "d", 1, "e")
    compare("SADD", C, "c", "d", "x")
    compare("ZINTERCARD", 2, A, B)
    compare("ZINTERCARD", 3, A, B, C)
    compare("ZINTERCARD", 3, A, B, C, "LIMIT", 1)
    compare("ZINTERCARD", 3, A, B, C, "LIMIT", 0)
    compare("ZINTERCARD", 2, A, B, "LIMIT", 2)
    compare("ZINTERCARD", 2, A, B, "LIMIT", 100)
    compare("ZINTERCARD", 2, A, "nokey")
    compare("ZINTERCARD", 1, A)
    compare("ZINTERCARD", 2, A, B, "LIMIT", -1)
    compare("ZINTERCARD", 2, A, B, "LIMIT", "x")
    compare("ZINTERCARD", 2, A, B, "LIMIT")
    compare("ZINTERCARD", 2, A, B, "LIMIT", 1, "LIMIT", 2)
    compare("ZINTERCARD", 2, A, B, "WITHSCORES")


# -- ZSCAN -------------------------------------------------------------------------------------


def test_zscan_small(compare):
    compare("ZADD", "z", 3, "c", 1, "a", 2, "b", 2, "bb", "inf", "i", 1.5, "x")
    compare("ZSCAN", "z", 0)
    compare("ZSCAN", "z", 0, "COUNT", 1)  # a small set comes back whole, in order
    compare("ZSCAN", "z", 0, "MATCH", "b*")
    compare("ZSCAN", "z", 0, "MATCH", "*", "COUNT", 2)
    compare("ZSCAN", "z", 123)
    compare("ZSCAN", "z", "-1")
    compare("ZSCAN", "z", "")
    compare("ZSCAN", "nokey", 0)
    compare("ZSCAN", "nokey", 0, "COUNT", 0)  # a missing key: options are not read
    compare("SET", "str", "v")
    for key in ("z", "str"):
        compare("ZSCAN", key, "x")
        compare("ZSCAN", key, "1.5")
        compare("ZSCAN", key, 0, "COUNT", 0)
        compare("ZSCAN", key, 0, "COUNT", "x")
        compare("ZSCAN", key, 0, "MATCH")
        compare("ZSCAN", key, 0, "TYPE", "zset")
        compare("ZSCAN", key, 0, "NOVALUES")
    compare("ZSCAN", "z")


@pytest.mark.parametrize("protocol", [3, 2])
def test_zscan_big(server, protocol):
    c = redis.Redis(port=server, protocol=protocol)
    try:
        scores = {f"m{i}".encode(): i / 4 for i in range(1000)}
        c.zadd("z", scores)
        seen: dict = {}
        cursor = 0
        for _ in range(1000):
            cursor, items = c.execute_command("ZSCAN", "z", cursor, "COUNT", 50)
            seen.update(items)  # redis-py makes (member, score) pairs
            cursor = int(cursor)
            if cursor == 0:
                break
        assert cursor == 0
        assert seen == scores
        cursor, items = c.execute_command("ZSCAN", "z", 0, "MATCH", "m99*", "COUNT", 10000)
        assert sorted(m for m, _ in items) == sorted(m for m in scores if m.startswith(b"m99"))
    finally:
        c.close()


def test_zscan_during_changes(r):
    r.zadd("z", {f"m{i}": i for i in range(500)})
    seen = set()
    cursor = 0
    for step in range(1000):
        cursor, items = r.zscan("z", cursor, count=20)
        seen.update(m for m, _ in items)
        # Members that stay for the whole scan must all be seen.
        r.zadd("z", {f"new{step}": step, "m0": step})
        r.zrem("z", f"m{499 - step}") if step < 100 else None
        if cursor == 0:
            break
    assert cursor == 0
    assert {f"m{i}".encode() for i in range(400)} <= seen


# -- big sets, against Redis -------------------------------------------------------------------


def test_big_set_ranks_and_ranges(compare):
    rng = random.Random(7)
    members = [f"m{i:04d}" for i in range(600)]
    args = []
    for m in members:
        args += [rng.choice([rng.randint(-50, 50), rng.random() * 100, rng.randint(0, 3)]), m]
    compare("ZADD", "z", *args)
    compare("ZCARD", "z")
    for m in rng.sample(members, 40):
        compare("ZRANK", "z", m)
        compare("ZREVRANK", "z", m)
    for _ in range(30):
        a, b = rng.randint(-700, 700), rng.randint(-700, 700)
        compare("ZRANGE", "z", a, b, "WITHSCORES")
        compare("ZREVRANGE", "z", a, b)
    for _ in range(30):
        lo, hi = sorted(rng.uniform(-60, 110) for _ in range(2))
        lo_s = rng.choice(["", "("]) + repr(lo)
        hi_s = rng.choice(["", "("]) + repr(hi)
        compare("ZCOUNT", "z", lo_s, hi_s)
        compare("ZRANGEBYSCORE", "z", lo_s, hi_s, "WITHSCORES")
        compare("ZREVRANGEBYSCORE", "z", hi_s, lo_s, "LIMIT", rng.randint(0, 20), rng.randint(-1, 50))
    for v in (0, 1, 2, 3, -50, 50):
        compare("ZCOUNT", "z", v, v)
        compare("ZRANGEBYSCORE", "z", v, v)
    compare("ZREMRANGEBYRANK", "z", 100, 150)
    compare("ZREMRANGEBYSCORE", "z", "(1", "3")
    compare("ZPOPMIN", "z", 7)
    compare("ZPOPMAX", "z", 7)
    compare("ZRANGE", "z", 0, -1, "WITHSCORES")
    compare("ZUNIONSTORE", "u", 1, "z", "WEIGHTS", 2)
    compare("ZRANGE", "u", 0, -1, "WITHSCORES")


def test_big_set_lex(compare):
    rng = random.Random(8)
    members = sorted({"".join(rng.choice("abcde") for _ in range(rng.randint(0, 4))) for _ in range(800)})
    compare("ZADD", "z", *[x for m in members for x in (0, m)])
    compare("ZCARD", "z")
    bounds = ["-", "+"] + [
        p + "".join(rng.choice("abcdef") for _ in range(rng.randint(0, 3))) for p in "[(" * 20
    ]
    for _ in range(40):
        lo, hi = rng.choice(bounds), rng.choice(bounds)
        compare("ZLEXCOUNT", "z", lo, hi)
        compare("ZRANGEBYLEX", "z", lo, hi, "LIMIT", rng.randint(0, 10), rng.randint(-1, 30))
        compare("ZREVRANGEBYLEX", "z", hi, lo, "LIMIT", rng.randint(0, 10), rng.randint(-1, 30))
    compare("ZREMRANGEBYLEX", "z", "[b", "(d")
    compare("ZRANGE", "z", 0, -1)


def test_big_set_lex_with_ordered_scores(compare):
    # Scores differ but rise with the members, so lex order is well defined.
    compare("ZADD", "z", *[x for i in range(300) for x in (i // 3, f"m{i:03d}")])
    for lo, hi in [("-", "+"), ("[m100", "(m200"), ("(m050", "[m051"), ("[n", "+"), ("-", "[a")]:
        compare("ZLEXCOUNT", "z", lo, hi)
        compare("ZRANGEBYLEX", "z", lo, hi, "LIMIT", 5, 10)
        compare("ZREVRANGEBYLEX", "z", hi, lo, "LIMIT", 5, 10)
    compare("ZREMRANGEBYLEX", "z", "[m010", "[m250")
    compare("ZRANGE", "z", 0, -1, "WITHSCORES")


def test_random_operations(compare):
    """Random sequences of sorted set commands on keys across shards."""
    rng = random.Random(11)
    keys = [A, B, C, "{t}1", "{t}2"]
    names = ["a", "b", "c", "d", "e", "f", "g", "h"]

    def score() -> str:
        return rng.choice(["0", "1", "-1", "2.5", "inf", "-inf", "(1", "1e3", str(rng.randint(-9, 9))])

    for _ in range(400):
        key = rng.choice(keys)
        op = rng.randrange(14)
        if op < 4:
            opts = rng.sample(["NX", "XX", "GT", "LT", "CH"], rng.randint(0, 2))
            pairs = [x for _ in range(rng.randint(1, 3)) for x in (score().lstrip("("), rng.choice(names))]
            compare("ZADD", key, *opts, *pairs)
        elif op == 4:
            compare("ZINCRBY", key, score().lstrip("("), rng.choice(names))
        elif op == 5:
            compare("ZREM", key, *rng.sample(names, 2))
        elif op == 6:
            compare("ZRANGE", key, rng.randint(-5, 5), rng.randint(-5, 5), "WITHSCORES")
        elif op == 7:
            compare("ZRANGEBYSCORE", key, score(), score(), "WITHSCORES")
        elif op == 8:
            compare(rng.choice(["ZPOPMIN", "ZPOPMAX"]), key, rng.randint(0, 3))
        elif op == 9:
            ks = rng.sample(keys, rng.randint(1, 3))
            how = rng.choice(["SUM", "MIN", "MAX"])
            compare(rng.choice(["ZUNION", "ZINTER", "ZDIFF"]), len(ks), *ks, "WITHSCORES")
            compare(rng.choice(["ZUNIONSTORE", "ZINTERSTORE"]), key, len(ks), *ks, "AGGREGATE", how)
        elif op == 10:
            compare("ZDIFFSTORE", key, 2, *rng.sample(keys, 2))
        elif op == 11:
            compare("ZMPOP", 2, *rng.sample(keys, 2), rng.choice(["MIN", "MAX"]), "COUNT", rng.randint(1, 3))
        elif op == 12:
            compare("ZRANGESTORE", key, rng.choice(keys), 0, rng.randint(-3, 3))
        else:
            compare("ZREMRANGEBYSCORE", key, score(), score())
        compare("ZCARD", key)
    for key in keys:
        compare("ZRANGE", key, 0, -1, "WITHSCORES")


# -- blocking pops ----------------------------------------------------------------------------


def test_blocking_pops_that_do_not_wait(compare):
    compare("ZADD", A, 1, "a", 2, "b", 3, "c")
    compare("ZADD", "{a}2", 5, "x")
    compare("BZPOPMIN", "nokey", A, 0)
    compare("BZPOPMAX", A, 0)
    compare("BZPOPMAX", "nokey", "{a}2", "0.5")  # emptied: deleted
    compare("EXISTS", "{a}2")
    compare("ZADD", B, 1, "a", 2, "b", 3, "c")
    compare("BZMPOP", 0, 2, "nokey", B, "MAX", "COUNT", 2)
    compare("BZMPOP", "1.5", 1, B, "MIN", "COUNT", 10)
    compare("EXISTS", B)
    compare("BZMPOP", 0, 3, C, A, D, "MIN")  # keys on three shards, one holds data
    compare("SET", "str", "v")
    compare("BZPOPMIN", "nokey", "str", 0)
    compare("BZPOPMIN", "str", "nokey", 0)
    compare("BZMPOP", 0, 2, "nokey", "str", "MIN")
    compare("BZPOPMIN", "nokey", "0.01")  # times out: a null array
    compare("BZPOPMAX", "nokey", "nokey2", "0.01")
    compare("BZMPOP", "0.01", 1, "nokey", "MAX")
    for bad in ("x", "-1", "nan", "inf", "-0.5", "1e400", "1e16", ""):
        compare("BZPOPMIN", "nokey", bad)
        compare("BZMPOP", bad, 1, "nokey", "MIN")
    for bad in [
        ("0", 0, "k", "MIN"), ("0", "x", "k", "MIN"), ("x", 2, "k", "MIN"), ("x", 1, "k", "MID"),
        ("-1", 1, "k", "MIN", "COUNT", 0), ("0", 1, "k", "MIN", "COUNT"), ("0", 1, "k", "MIN", "X"),
    ]:  # fmt: skip
        compare("BZMPOP", *bad)


def test_blocking_pop_shapes(raw):
    raw("ZADD", "z", 1, "a", 2.5, "b", 3, "c", 4, "d")
    raw("BZPOPMIN", "z", 0)
    raw("BZPOPMAX", "nokey", "z", 0)
    raw("BZMPOP", 0, 1, "z", "MIN")
    raw("BZMPOP", 0, 1, "z", "MAX", "COUNT", 5)
    raw("BZPOPMIN", "z", "0.01")
    raw("BZMPOP", "0.01", 1, "z", "MAX")


def _client(port: int, protocol: int = 3) -> redis.Redis:
    return redis.Redis(port=port, protocol=protocol, socket_timeout=20)


def _wait_blocked(c: redis.Redis, n: int = 1) -> None:
    """Until ``n`` clients are blocked (bounded)."""
    for _ in range(1000):
        if c.info("clients")["blocked_clients"] >= n:
            return
        time.sleep(0.01)
    raise AssertionError(f"{n} blocked clients expected")


class _Blocked:
    """Runs one command on its own connection, in a thread."""

    def __init__(self, port: int, *args: object, protocol: int = 3) -> None:
        self.conn = _client(port, protocol)
        self.reply: object = None
        self.thread = threading.Thread(target=self._run, args=args, daemon=True)
        self.thread.start()

    def _run(self, *args: object) -> None:
        try:
            self.reply = self.conn.execute_command(*args)
        except Exception as e:  # the test reads it
            self.reply = e

    def result(self) -> object:
        self.thread.join(20)
        assert not self.thread.is_alive(), "still blocked"
        self.conn.close()
        return self.reply


@pytest.mark.parametrize("protocol", [3, 2])
def test_bzpopmin_wakes_on_zadd(server, protocol):
    c = _client(server)
    try:
        waiter = _Blocked(server, "BZPOPMIN", "nokey", "z", 0, protocol=protocol)
        _wait_blocked(c)
        assert c.zadd("z", {"b": 2, "a": 1}) == 2
        # (redis-py turns the RESP2 reply into a tuple with a float score)
        assert list(waiter.result()) == [b"z", b"a", 1.0]
        assert c.zrange("z", 0, -1) == [b"b"]
        waiter = _Blocked(server, "BZPOPMAX", "other", "z", 0, protocol=protocol)
        assert list(waiter.result()) == [b"z", b"b", 2.0]  # at once
        assert c.exists("z") == 0
    finally:
        c.close()


@pytest.mark.parametrize("protocol", [3, 2])
def test_bzmpop_wakes_on_zadd(server, protocol):
    c = _client(server)
    try:
        waiter = _Blocked(server, "BZMPOP", 0, 2, "z1", "z2", "MAX", "COUNT", 2, protocol=protocol)
        _wait_blocked(c)
        c.zadd("z2", {"a": 1, "b": 2, "c": 3})
        two, three = (2.0, 3.0) if protocol == 3 else (b"2", b"3")
        assert waiter.result() == [b"z2", [[b"c", three], [b"b", two]]]
        assert c.zrange("z2", 0, -1) == [b"a"]
    finally:
        c.close()


def test_blocked_clients_served_in_order(r, server):
    first = _Blocked(server, "BZPOPMIN", "z", 0)
    _wait_blocked(r, 1)
    second = _Blocked(server, "BZPOPMIN", "z", 0)
    _wait_blocked(r, 2)
    r.zadd("z", {"a": 1})
    assert first.result() == [b"z", b"a", 1.0]
    assert r.exists("z") == 0
    r.zadd("z", {"b": 2, "c": 3})
    assert second.result() == [b"z", b"b", 2.0]
    assert r.zrange("z", 0, -1, withscores=True) == [[b"c", 3.0]]


def test_blocked_client_ignores_other_types(r, server):
    waiter = _Blocked(server, "BZPOPMAX", "k", 0)
    _wait_blocked(r)
    r.set("k", "string")  # not a sorted set: keep waiting
    r.delete("k")
    r.zadd("k", {"m": 7})
    assert waiter.result() == [b"k", b"m", 7.0]


def test_blocking_pop_times_out(r, server):
    waiter = _Blocked(server, "BZPOPMIN", "z", "0.05")
    assert waiter.result() is None
    waiter = _Blocked(server, "BZMPOP", "0.05", 1, "z", "MIN")
    assert waiter.result() is None
    r.zadd("z", {"a": 1})  # nobody waits any more
    assert r.zcard("z") == 1


def test_blocking_pop_across_shards(r, server):
    waiter = _Blocked(server, "BZPOPMIN", A, B, C, 0)
    _wait_blocked(r)
    r.zadd(C, {"x": 5})
    assert waiter.result() == [C.encode(), b"x", 5.0]
    assert r.exists(C) == 0
    waiter = _Blocked(server, "BZMPOP", 0, 2, A, D, "MIN", "COUNT", 3)
    _wait_blocked(r)
    r.zadd(D, {"p": 1, "q": 2})
    assert waiter.result() == [D.encode(), [[b"p", 1.0], [b"q", 2.0]]]


def test_blocking_pop_in_transaction(r):
    p = r.pipeline(transaction=True)
    p.execute_command("BZPOPMIN", "z", 0)  # may not block: a null reply at once
    p.zadd("z", {"a": 1})
    p.execute_command("BZPOPMAX", "z", 0)
    assert p.execute() == [None, 1, [b"z", b"a", 1.0]]


# -- the key as a whole --------------------------------------------------------------------------


def test_wrongtype(compare):
    compare("SET", "str", "v")
    compare("HSET", "hash", "f", "v")
    compare("SADD", "set", "m")
    for key in ("str", "hash", "set"):
        compare("ZADD", key, 1, "a")
        compare("ZADD", key, "XX", 1, "a")
        compare("ZINCRBY", key, 1, "a")
        compare("ZREM", key, "a")
        compare("ZCARD", key)
        compare("ZSCORE", key, "a")
        compare("ZMSCORE", key, "a")
        compare("ZRANK", key, "a")
        compare("ZREVRANK", key, "a")
        compare("ZCOUNT", key, 0, 1)
        compare("ZLEXCOUNT", key, "-", "+")
        compare("ZRANGE", key, 0, -1)
        compare("ZRANGEBYSCORE", key, 0, 1)
        compare("ZRANGEBYLEX", key, "-", "+")
        compare("ZREMRANGEBYRANK", key, 0, 1)
        compare("ZREMRANGEBYSCORE", key, 0, 1)
        compare("ZREMRANGEBYLEX", key, "-", "+")
        compare("ZPOPMIN", key)
        compare("ZPOPMAX", key, 2)
        compare("ZMPOP", 1, key, "MIN")
        compare("ZRANDMEMBER", key)
        compare("ZRANDMEMBER", key, 2)
        compare("ZRANGESTORE", "dst", key, 0, -1)
        compare("ZSCAN", key, 0)
    compare("ZUNION", 2, "set", "str")
    compare("ZUNION", 1, "hash")
    compare("ZINTERSTORE", "dst", 1, "str")
    compare("ZADD", "z", 1, "a")
    compare("GET", "z")
    compare("SADD", "z", "m")
    compare("HGET", "z", "f")


def test_empty_sets_are_deleted(compare):
    fill(compare)
    compare("ZREM", "z", "a", "b", "c", "d", "e", "ee", "ninf", "pinf")
    compare("EXISTS", "z")
    fill(compare)
    compare("ZREMRANGEBYRANK", "z", 0, -1)
    compare("EXISTS", "z")
    fill(compare)
    compare("ZREMRANGEBYSCORE", "z", "-inf", "inf")
    compare("EXISTS", "z")
    compare("ZADD", "z", 0, "a", 0, "b")
    compare("ZREMRANGEBYLEX", "z", "-", "+")
    compare("EXISTS", "z")
    fill(compare)
    compare("ZPOPMAX", "z", 8)
    compare("EXISTS", "z")
    compare("ZADD", "z", 0, "a")
    compare("ZPOPMIN", "z")
    compare("EXISTS", "z")
    compare("ZADD", "z", 0, "a")
    compare("ZMPOP", 1, "z", "MIN")
    compare("EXISTS", "z")
    compare("ZADD", "z", "XX", 1, "a")
    compare("EXISTS", "z")


def test_keyspace_commands(compare):
    fill(compare, A)
    compare("TYPE", A)
    compare("COPY", A, "{x}copy")
    compare("ZADD", "{x}copy", 100, "a")
    compare("ZRANGE", "{x}copy", 0, -1, "WITHSCORES")
    compare("ZRANGE", A, 0, -1, "WITHSCORES")
    compare("EXPIRE", A, 100)
    compare("RENAME", A, B)  # to another shard
    compare("TTL", B)
    compare("ZRANGE", B, 0, -1, "WITHSCORES")
    compare("ZADD", B, 7, "zz")
    compare("TTL", B)  # changing members keeps the TTL
    compare("ZINCRBY", B, 1, "zz")
    compare("ZPOPMIN", B)
    compare("TTL", B)
    compare("DEL", B)
    compare("ZCARD", B)
    compare("ZADD", "big", *[x for i in range(300) for x in (i, f"m{i}")])
    compare("RENAME", "big", C)
    compare("ZRANGE", C, 0, -1, "WITHSCORES")


def test_in_transaction(r):
    p = r.pipeline(transaction=True)
    p.zadd("{t}a", {"x": 1, "y": 2})
    p.zadd("{t}b", {"y": 3})
    p.zunionstore("{t}c", ["{t}a", "{t}b"])
    p.zrange("{t}c", 0, -1, withscores=True)
    p.zpopmin("{t}a")
    assert p.execute() == [2, 1, 2, [[b"x", 1.0], [b"y", 5.0]], [b"x", 1.0]]


def test_cross_shard_transaction(r):
    p = r.pipeline(transaction=True)
    p.zadd(A, {"x": 1})
    p.zadd(B, {"x": 2, "y": 3})
    p.zinterstore(C, [A, B])
    p.zmpop(2, [B, A], min=True, count=5)
    p.zrange(C, 0, -1, withscores=True)
    assert p.execute() == [1, 2, 1, [B.encode(), [[b"x", 2.0], [b"y", 3.0]]], [[b"x", 3.0]]]
    assert r.exists(B) == 0


# -- the data structure alone ----------------------------------------------------------------


def test_zset_spans_match_brute_force():
    from shardkv.worker.zset import ZSet, zset_of

    rng = random.Random(5)
    values = [float("-inf"), -2.0, -0.0, 0.0, 0.5, 1.0, 1.0, 3.0, float("inf")]
    for size in (0, 1, 5, 40, 200):
        z = zset_of((f"m{rng.randrange(300)}".encode(), rng.choice(values)) for _ in range(size))
        assert isinstance(z, ZSet) and len(z.order) == len(z.scores)
        items = sorted((s, m) for m, s in z.scores.items())
        assert list(z) == items
        for lo in values:
            for hi in values:
                for lo_ex in (False, True):
                    for hi_ex in (False, True):
                        want = [
                            i
                            for i, (s, _) in enumerate(items)
                            if (s > lo if lo_ex else s >= lo) and (s < hi if hi_ex else s <= hi)
                        ]
                        a, b = z.score_span(lo, lo_ex, hi, hi_ex)
                        assert list(range(a, b)) == want, (lo, lo_ex, hi, hi_ex)
        for member, score in list(z.scores.items())[:20]:
            assert z.rank(member) == items.index((score, member))


def test_object_encoding(compare):
    compare("ZADD", "z", *[x for i in range(128) for x in (i, f"m{i}")])
    compare("OBJECT", "ENCODING", "z")
    compare("ZADD", "z", 1000, "one-more")
    compare("OBJECT", "ENCODING", "z")
    compare("ZREMRANGEBYRANK", "z", 0, 120)  # a skiplist stays one
    compare("OBJECT", "ENCODING", "z")
    compare("ZUNIONSTORE", "u", 1, "z")  # a result is encoded afresh
    compare("OBJECT", "ENCODING", "u")
    compare("ZRANGESTORE", "r", "z", 0, -1)
    compare("OBJECT", "ENCODING", "r")
    compare("ZADD", "long", 1, "x" * 64)
    compare("OBJECT", "ENCODING", "long")
    compare("ZADD", "long", 1, "y" * 65)
    compare("OBJECT", "ENCODING", "long")
    compare("ZADD", "first", 1, "y" * 65)
    compare("OBJECT", "ENCODING", "first")
