"""String commands, compared with a real redis-server.

Every ``compare`` runs the command on both servers (RESP3 and RESP2) and
asserts identical replies, errors included.  Keys ``a``..``d`` live on
different shards of four; ``{t}x`` keys share a shard.
"""

from __future__ import annotations

import random

import pytest
import redis

from shardkv.protocol.args import format_float, incr_by_float, parse_long_double
from shardkv.protocol.errors import CommandError
from tests.support.placement import on_shards

FAR = 4102444800  # 2100-01-01 in seconds: an absolute expiry far from now
FAR_MS = FAR * 1000


def test_set_options(compare):
    compare("SET", "k", "v", "NX")
    compare("SET", "k", "v", "NX")
    compare("SET", "k", "v2", "XX")
    compare("SET", "k", "v3", "XX", "GET")
    compare("SET", "nk", "v", "XX", "GET")
    compare("SET", "nk", "v", "NX", "GET")  # NX and GET together, since 7.0
    compare("SET", "k", "v4", "NX", "GET")
    compare("SET", "k", "v5", "GET")
    compare("SET", "k", "v", "EXAT", FAR)
    compare("EXPIRETIME", "k")
    compare("SET", "k", "v", "PXAT", FAR_MS + 123)
    compare("PEXPIRETIME", "k")
    compare("SET", "k", "w", "KEEPTTL")
    compare("PEXPIRETIME", "k")
    compare("SET", "k", "w")
    compare("PEXPIRETIME", "k")
    compare("SET", "k", "v", "ex", 100)
    compare("TTL", "k")
    compare("SET", "k", "v", "Px", 100000)
    compare("SET", "k", "v", "EX", 10, "NX", "GET")
    compare("GET", "k")


@pytest.mark.parametrize(
    "options",
    [
        ["EX", "0"],
        ["EX", "-1"],
        ["EX", "abc"],
        ["EX", "1.5"],
        ["PX", "0"],
        ["EX", "9223372036854775807"],
        ["PX", "9223372036854775807"],
        ["EXAT", "9223372036854775807"],
        ["EX", "922337203685477"],
        ["EX", "9223372036854775"],
        ["PXAT", "-1"],
        ["EXAT", "0"],
        ["NX", "XX"],
        ["XX", "NX"],
        ["EX", "10", "PX", "10"],
        ["EX", "10", "EX", "20"],
        ["EX", "10", "KEEPTTL"],
        ["KEEPTTL", "EX", "10"],
        ["KEEPTTL", "KEEPTTL"],
        ["NX", "NX"],
        ["GET", "GET"],
        ["EX"],
        ["foo"],
        ["PERSIST"],
        ["NX", "EX", "0"],
        ["EX", "abc", "NX"],
        ["GET", "NX", "EX", "abc"],
    ],
)
def test_set_bad_options(compare, options):
    compare("SET", "k", "old")
    compare("SET", "k", "v", *options)
    compare("GET", "k")


def test_set_expired_absolute(compare):
    compare("SET", "k", "v", "PXAT", "1")  # in the past: the key is gone at once
    compare("EXISTS", "k")
    compare("SET", "k", "v", "EXAT", "1", "GET")
    compare("EXISTS", "k")


def test_setnx_setex_psetex(compare):
    compare("SETNX", "k", "1")
    compare("SETNX", "k", "2")
    compare("GET", "k")
    compare("SETEX", "se", "100", "v")
    compare("TTL", "se")
    for bad in ("0", "-5", "abc", "9223372036854775807", "1.5", ""):
        compare("SETEX", "se", bad, "v")
        compare("PSETEX", "pse", bad, "v")
    compare("PSETEX", "pse", "100000", "v")
    compare("GET", "pse")
    compare("SETEX", "se", "100")
    compare("SETNX", "k")


def test_getset_getdel_getex(compare):
    compare("GETSET", "gs", "1")
    compare("GETSET", "gs", "2")
    compare("GETDEL", "gs")
    compare("GETDEL", "gs")
    compare("SET", "ge", "v", "EX", "100")
    compare("GETSET", "ge", "w")
    compare("TTL", "ge")  # GETSET drops the TTL
    compare("GETEX", "ge")
    compare("GETEX", "ge", "EXAT", FAR)
    compare("EXPIRETIME", "ge")
    compare("GETEX", "ge", "PERSIST")
    compare("TTL", "ge")
    compare("GETEX", "ge", "PXAT", FAR_MS)
    compare("PEXPIRETIME", "ge")
    compare("GETEX", "ge", "EX", "100")
    compare("GETEX", "ge", "PX", "100000")
    compare("GETEX", "nope", "EX", "100")
    for bad in (
        ["EX", "0"],
        ["EX", "-1"],
        ["EX", "abc"],
        ["EX", "100", "PX", "100"],
        ["PERSIST", "EX", "100"],
        ["EX", "100", "PERSIST"],
        ["EX"],
        ["foo"],
        ["NX"],
        ["KEEPTTL"],
        ["GET"],
        ["EX", "9223372036854775807"],
        ["PX", "9223372036854775807"],
        ["EXAT", "9223372036854775807"],
    ):
        compare("GETEX", "ge", *bad)
        compare("GETEX", "nope", *bad)  # a missing key is nil before the time is read
    compare("HSET", "gh", "f", "v")
    compare("GETEX", "gh", "EX", "abc")  # the type is checked before the time
    compare("GETEX", "ge", "PXAT", "1")  # in the past: deletes
    compare("EXISTS", "ge")


def test_append_strlen(compare):
    compare("APPEND", "s", "hello")
    compare("APPEND", "s", " world")
    compare("APPEND", "s", "")
    compare("APPEND", "e", "")
    compare("EXISTS", "e")
    compare("STRLEN", "s")
    compare("STRLEN", "e")
    compare("STRLEN", "nope")
    compare("SET", "n", "12")
    compare("APPEND", "n", "34")
    compare("GET", "n")
    compare("SET", "t", "x", "EXAT", FAR)
    compare("APPEND", "t", "y")
    compare("EXPIRETIME", "t")  # APPEND keeps the TTL
    compare("APPEND", "s\x00\xff", "\r\n\x00")
    compare("GET", "s\x00\xff")


def test_incr_decr(compare):
    compare("INCR", "n")
    compare("DECR", "n")
    compare("INCRBY", "n", "5")
    compare("DECRBY", "n", "3")
    compare("INCRBY", "n", "-9223372036854775808")
    compare("DECRBY", "n", "-9223372036854775808")
    compare("DECRBY", "n", "9223372036854775807")
    compare("SET", "big", "9223372036854775807")
    compare("INCR", "big")
    compare("INCRBY", "big", "0")
    compare("SET", "small", "-9223372036854775808")
    compare("DECR", "small")
    compare("DECRBY", "small", "1")
    compare("SET", "t", "10", "PXAT", FAR_MS)
    compare("INCRBY", "t", "5")
    compare("PEXPIRETIME", "t")  # INCR keeps the TTL
    for value in ("1a", " 1", "1 ", "01", "+1", "1.5", "", "-0", "123456789012345678901", "0x10", "1e3"):
        compare("SET", "v", value)
        compare("INCR", "v")
        compare("DECRBY", "v", "1")
        compare("GET", "v")
    for by in ("1.5", "abc", "", "9223372036854775808", "-9223372036854775809", "01", " 1"):
        compare("INCRBY", "n", by)
        compare("DECRBY", "n", by)
    compare("INCR", "n", "x")
    compare("INCRBY", "n")


FLOAT_CASES = [
    "0.1",
    "10.5",
    "1e20",
    "0.000003814697265625",  # a tie at the 17th decimal: rounds to even
    "0.000003814697265626",
    "-0.000003814697265625",
    "1.5e-20",
    "123456789.123456789",
    "-0",
    "-0.000000000000000001",
    "1.7976931348623157e308",
    "1e-4940",
    "3.6e-4951",  # rounds to the smallest subnormal long double
    "1e-4951",  # underflows to zero: not a valid float
    "0e-99999",
    "5.",
    "+.5",
    "1e4932",
    "1.18973149535723176502e+4932",  # the largest long double
    "1.18973149535723176508e+4932",  # past it: not a valid float
    "3.14159265358979323846264338327950288",
    "0X1.8P1",
    "0x.8",
    "0x1P+2",
    "0x",
    "0x1p",
    "inf",
    "-Inf",
    "infinity",
    "nan",
    "nan(123)",
    "1E5",
    "1e+5",
    "1e-0005",
    "0001.5000",
    "1_000",
    "++1",
    "-.",
    ".",
    "1e",
    " 1",
    "1 ",
    "",
    "1" + "0" * 4500,
    "0." + "0" * 4000 + "1",
    "1" * 5200,  # past Redis's 5 KB limit for a float
]


@pytest.mark.parametrize("increment", FLOAT_CASES)
def test_incrbyfloat_cases(compare, increment):
    compare("INCRBYFLOAT", "f", increment)
    compare("INCRBYFLOAT", "f", increment)
    compare("GET", "f")


def test_incrbyfloat_sums(compare):
    compare("INCRBYFLOAT", "a", "0.1")
    compare("INCRBYFLOAT", "a", "0.2")  # 0.3 in long double, not 0.30000000000000004
    for step in ("1.1", "2.2", "3.3", "-6.6", "1e17", "0.5", "-1e17", "1e-17", "5e-18"):
        compare("INCRBYFLOAT", "b", step)
    compare("SET", "i", "10")
    compare("INCRBYFLOAT", "i", "1")
    compare("INCR", "i")
    compare("SET", "huge", "1e4932")
    compare("INCRBYFLOAT", "huge", "1e4932")  # overflow
    compare("GET", "huge")
    compare("SET", "bad", "abc")
    compare("INCRBYFLOAT", "bad", "1")
    compare("SET", "t", "1", "EXAT", FAR)
    compare("INCRBYFLOAT", "t", "1.5")
    compare("EXPIRETIME", "t")
    compare("INCRBYFLOAT", "t")


def test_incrbyfloat_random(compare):
    """Many random sums: the long double emulation against the real thing."""
    rnd = random.Random(20240501)
    for i in range(60):
        kind = i % 4
        if kind == 0:
            text = "%.*f" % (rnd.randint(0, 22), rnd.uniform(-1e6, 1e6))
        elif kind == 1:
            text = "%de%d" % (rnd.randint(-(10**18), 10**18), rnd.randint(-60, 60))
        elif kind == 2:
            text = repr(rnd.uniform(-1e-10, 1e-10))
        else:
            text = "0x%x.%xp%d" % (rnd.getrandbits(66), rnd.getrandbits(12), rnd.randint(-80, 80))
        compare("INCRBYFLOAT", "r%d" % (i % 3), text)


def test_long_double_helpers():
    """The helpers HINCRBYFLOAT uses too (checked against Redis above)."""
    assert incr_by_float(None, b"0.1") == b"0.1"
    assert incr_by_float(b"10.5", b"0.1") == b"10.6"
    assert incr_by_float(None, b"1e20") == b"100000000000000000000"
    assert incr_by_float(b"0.1", b"0.2") == b"0.3"
    assert parse_long_double(b"nan") is None
    assert parse_long_double(b" 1") is None
    assert parse_long_double(b"inf") == float("inf")
    with pytest.raises(CommandError, match="NaN or Infinity"):
        incr_by_float(b"inf", b"1")
    with pytest.raises(CommandError, match="not a valid float"):
        incr_by_float(b"x", b"1")
    assert format_float(0.5) == b"0.5"
    assert format_float(-2.0) == b"-2"
    assert format_float(float("inf")) == b"inf"


def test_getrange(compare):
    compare("SET", "s", "Hello World")
    for start, end in [
        (0, 4),
        (-5, -1),
        (5, 2),
        (-100, 100),
        (0, -100),
        (-1, -5),
        (100, 200),
        (0, "9223372036854775807"),
        ("-9223372036854775808", 5),
        (3, 3),
        (-1, -1),
        ("a", "b"),
        ("1.5", 2),
    ]:
        compare("GETRANGE", "s", start, end)
        compare("SUBSTR", "s", start, end)
    compare("GETRANGE", "nope", 0, 10)
    compare("SET", "empty", "")
    compare("GETRANGE", "empty", 0, -1)
    compare("GETRANGE", "empty", -1, 0)
    compare("SET", "n", "12345")
    compare("GETRANGE", "n", 1, 2)


def test_setrange(compare):
    compare("SETRANGE", "sr", 5, "abc")
    compare("GET", "sr")
    compare("SETRANGE", "sr", 0, "XY")
    compare("SETRANGE", "sr", 2, "")
    compare("SETRANGE", "sr", 100, "")
    compare("GET", "sr")
    compare("SETRANGE", "nokey", 5, "")
    compare("EXISTS", "nokey")
    compare("SETRANGE", "sr", -1, "x")
    compare("SETRANGE", "sr", 536870912, "x")  # past 512 MB
    compare("SETRANGE", "sr", 536870911, "xy")
    compare("SETRANGE", "sr", 536870911, "")
    compare("SETRANGE", "sr", "abc", "x")
    compare("SETRANGE", "sr", "1.5", "x")
    compare("SET", "n", "123", "EXAT", FAR)
    compare("SETRANGE", "n", 1, "9")
    compare("GET", "n")
    compare("EXPIRETIME", "n")


def test_string_limit_follows_config(compare):
    """APPEND and SETRANGE obey proto-max-bulk-len as CONFIG SET changes it;
    the new value must reach every shard."""
    for c in (compare.real, compare.ours):
        c.config_set("proto-max-bulk-len", 1024 * 1024)
    try:
        compare("SETRANGE", "big", 1024 * 1024, "x")
        compare("SETRANGE", "big", 1024 * 1024 - 1, "x")
        compare("APPEND", "big", "y")
        compare("STRLEN", "big")
        for key in ("a", "b", "c", "d"):  # every shard
            compare("SETRANGE", key, 1024 * 1024 - 2, "xyz")
    finally:
        for c in (compare.real, compare.ours):
            c.config_set("proto-max-bulk-len", 512 * 1024 * 1024)
    compare("APPEND", "big", "y")


def test_mset_mget_msetnx(compare):
    compare("MSET", "a", "1", "b", "2", "c", "3", "d", "4")
    compare("MGET", "a", "b", "c", "d", "nope")
    compare("MSET", "a", "1", "b")
    compare("MSETNX", "a", "x", "e", "5")  # atomic across shards: nothing set
    compare("MGET", "a", "e")
    compare("MSETNX", "e", "5", "f", "6", "g", "7")
    compare("MGET", "e", "f", "g")
    compare("MSETNX", "e")
    compare("MSETNX", "e", "1", "f")
    compare("MSETNX", "{t}x", "1", "{t}y", "2")
    compare("MSETNX", "{t}x", "1", "{t}y")
    compare("SET", "ttl", "v", "EX", "100")
    compare("MSET", "ttl", "w")
    compare("TTL", "ttl")
    compare("HSET", "h", "f", "v")
    compare("MGET", "a", "h", "b")  # another type reads as nil
    compare("MSETNX", "h", "x", "z", "y")


def test_writes_across_shards_count_changes_as_redis(ports):
    """rdb_changes_since_last_save after MSET, MSETNX and DEL over several
    shards: Redis counts every pair MSET (or an MSETNX that set) wrote,
    a key named twice or given the value it held too, and every key DEL
    removed; an MSETNX that found a key counts nothing."""
    a, b, c = on_shards(0, 1, 2, prefix="dirty")
    commands = [
        ("MSET", a, "1", b, "2"),
        ("MSET", a, "1", b, "2"),  # the values they hold
        ("MSET", a, "3", b, "4", a, "5"),  # a named twice
        ("MSET", a, "5", b, "6", a, "5"),
        ("MSETNX", c, "1", b, "2"),  # b exists: nothing set
        ("MSETNX", a + "x", "1", c, "2", c, "3"),
        ("DEL", a, b, a, b + "x"),
    ]
    got = {}
    for name in ("redis", "shardkv"):
        client = redis.Redis(port=ports[name])
        try:
            client.delete(a, b, c, a + "x")
            out = []
            for command in commands:
                before = client.info("persistence")["rdb_changes_since_last_save"]
                out.append((client.execute_command(*command), command))
                out.append(client.info("persistence")["rdb_changes_since_last_save"] - before)
            out.append(client.mget(a, b, c, a + "x"))
            got[name] = out
            client.delete(a, b, c, a + "x")
        finally:
            client.close()
    assert got["shardkv"] == got["redis"]


def test_wrong_type(compare):
    compare("HSET", "h", "f", "v")
    compare("SADD", "s", "m")
    for key in ("h", "s"):
        for args in (
            ["GET"],
            ["APPEND", "x"],
            ["STRLEN"],
            ["INCR"],
            ["DECRBY", "2"],
            ["INCRBYFLOAT", "1"],
            ["GETRANGE", "0", "1"],
            ["SETRANGE", "0", "x"],
            ["GETDEL"],
            ["GETEX"],
            ["GETEX", "EX", "10"],
            ["GETSET", "x"],
            ["SET", "x", "GET"],
            ["SET", "x", "NX", "GET"],
        ):
            compare(args[0], key, *args[1:])
        compare("TYPE", key)
    compare("SET", "h", "x", "XX")  # SET overwrites any type
    compare("TYPE", "h")
    compare("SETRANGE", "s", 0, "")  # an empty value still checks the type
    compare("GETRANGE", "s", "x", "y")  # the range is read first


def test_lcs(compare):
    compare("MSET", "{a}1", "ohmytext", "{a}2", "mynewtext")
    compare("LCS", "{a}1", "{a}2")
    compare("LCS", "{a}1", "{a}2", "LEN")
    compare("LCS", "{a}1", "{a}2", "IDX")
    compare("LCS", "{a}1", "{a}2", "IDX", "MINMATCHLEN", "4")
    compare("LCS", "{a}1", "{a}2", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN")
    compare("LCS", "{a}1", "{a}2", "idx", "withmatchlen")
    compare("LCS", "{a}1", "{a}2", "LEN", "IDX")
    compare("LCS", "{a}1", "{a}2", "MINMATCHLEN")
    compare("LCS", "{a}1", "{a}2", "MINMATCHLEN", "-1")
    compare("LCS", "{a}1", "{a}2", "MINMATCHLEN", "x")
    compare("LCS", "{a}1", "{a}2", "foo")
    compare("LCS", "{a}1", "nope")
    compare("LCS", "nope", "nope2", "IDX")
    compare("LCS", "{a}1", "{a}2", "LEN", "WITHMATCHLEN")
    compare("SET", "x", "abcdef")
    compare("LCS", "x", "{a}1")  # keys on different shards
    compare("LCS", "x", "x")
    compare("HSET", "h", "f", "v")
    compare("LCS", "x", "h")
    compare("LCS", "h", "x", "foo")


def test_lcs_random(compare):
    rnd = random.Random(7)
    for _ in range(40):
        a = "".join(rnd.choice("abc") for _ in range(rnd.randint(0, 12)))
        b = "".join(rnd.choice("abc") for _ in range(rnd.randint(0, 12)))
        compare("MSET", "{l}a", a, "{l}b", b)
        compare("LCS", "{l}a", "{l}b")
        compare("LCS", "{l}a", "{l}b", "IDX", "MINMATCHLEN", rnd.randint(0, 2), "WITHMATCHLEN")


def test_lcs_random_long(compare):
    """Random strings past one machine word, over small and large
    alphabets, each option: Redis's table walk picks one LCS among many
    (up where LCS(i-1, j) is larger, else left), and the bit-parallel rows
    must pick the same string, ranges and lengths."""
    rnd = random.Random(23)
    for trial in range(150):
        alphabet = rnd.choice([b"ab", b"abc", b"acgt", bytes(range(256))])
        a = bytes(rnd.choice(alphabet) for _ in range(rnd.choice([0, 1, 5, 63, 64, 65, 200, 400])))
        b = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 300)))
        if trial % 3 == 0:  # long runs in common
            b = a[rnd.randint(0, 20) :] + b[:50]
        compare("MSET", "{l}a", a, "{l}b", b)
        compare("LCS", "{l}a", "{l}b")
        compare("LCS", "{l}b", "{l}a", "LEN")
        compare("LCS", "{l}a", "{l}b", "IDX", "MINMATCHLEN", rnd.randint(0, 3), "WITHMATCHLEN")
        compare("LCS", "{l}b", "{l}a", "IDX")


def test_lcs_random_both_orders(compare):
    """Random pairs in both orders, each option: the rows run over the
    shorter key and the walk is transposed when the first key is the
    longer, and must still take Redis's path (its ties depend on which
    key is first).  Also long keys against very short ones."""
    rnd = random.Random(2023)
    alphabets = [b"a", b"ab", b"acgt", bytes(range(256))]
    pairs = []
    for trial in range(300):
        alphabet = alphabets[trial % 4]
        a = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 300)))
        b = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 300)))
        if trial % 5 == 0:
            b = b[: rnd.randint(0, 3)]
        pairs.append((a, b))
    for alphabet in alphabets:
        for short in (0, 1, 2, 3):
            pairs.append(
                (
                    bytes(rnd.choice(alphabet) for _ in range(5000)),
                    bytes(rnd.choice(alphabet) for _ in range(short)),
                )
            )
    for a, b in pairs:
        compare("MSET", "{l}a", a, "{l}b", b)
        for x, y in (("{l}a", "{l}b"), ("{l}b", "{l}a")):
            compare("LCS", x, y)
            compare("LCS", x, y, "LEN")
            compare("LCS", x, y, "IDX")
            compare("LCS", x, y, "IDX", "WITHMATCHLEN")
            compare("LCS", x, y, "IDX", "MINMATCHLEN", rnd.randint(0, 4))
            compare("LCS", x, y, "IDX", "MINMATCHLEN", rnd.randint(0, 4), "WITHMATCHLEN")


def test_lcs_of_4kb_strings_and_its_memory_limit(compare):
    """Two 4 KB strings (seconds in a pure-Python table, a blocked shard);
    and Redis's limit: the uint32 table it would allocate, (len(a) + 1) *
    (len(b) + 1) * 4 bytes, may not pass proto-max-bulk-len."""
    n = 4000
    compare("MSET", "{t}a", (b"ab" * n)[:n], "{t}b", (b"ba" * n)[:n], "{t}c", b"x" * 600)
    compare("LCS", "{t}a", "{t}b", "LEN")
    compare("LCS", "{t}a", "{t}b")
    compare("LCS", "{t}a", "{t}b", "IDX", "MINMATCHLEN", "2", "WITHMATCHLEN")
    try:
        compare("CONFIG", "SET", "proto-max-bulk-len", "1048576")
        compare("LCS", "{t}c", "{t}c", "LEN")  # 601 * 601 * 4 bytes: past 1 MB
        compare("LCS", "{t}c", "{t}a", "IDX")
        compare("LCS", "{t}c", "{t}nope")
        compare("LCS", "{t}nope", "{t}c", "LEN", "IDX")
    finally:
        compare("CONFIG", "SET", "proto-max-bulk-len", "536870912")


def test_arity(compare):
    for args in (
        ["GET"],
        ["GET", "a", "b"],
        ["SET", "k"],
        ["APPEND", "k"],
        ["GETRANGE", "k", "0"],
        ["SETRANGE", "k", "0"],
        ["INCRBYFLOAT", "k"],
        ["GETDEL", "k", "x"],
        ["GETEX"],
        ["LCS", "k"],
        ["MGET"],
        ["MSET", "k"],
        ["STRLEN", "a", "b"],
    ):
        compare(*args)


def test_strings_changed_in_place_read_back_everywhere(r):
    """APPEND, SETRANGE, SETBIT and BITFIELD change a string in place;
    copies taken before stay as they were, and every reader sees the
    current value."""
    r.set("{s}a", "abc")
    r.append("{s}a", "def")
    assert r.copy("{s}a", "{s}copy")
    frozen = r.dump("{s}a")
    r.setbit("{s}a", 7, 1)
    r.setrange("{s}a", 1, "XY")
    assert r.bitfield("{s}a").set("u8", 40, 255).incrby("u8", 40, 1).execute() == [ord("f"), 0]
    r.append("{s}a", "!")
    assert r.getrange("{s}a", 0, 2) == b"aXY"
    assert r.strlen("{s}a") == 7
    assert r.getbit("{s}a", 7) == 1
    assert r.bitcount("{s}a") == 19
    assert r.get("{s}a") == b"aXYde\x00!"
    assert r.get("{s}copy") == b"abcdef"
    r.restore("{s}old", 0, frozen)
    assert r.get("{s}old") == b"abcdef"
    r.restore("{s}new", 0, r.dump("{s}a"))
    assert r.get("{s}new") == b"aXYde\x00!"
    assert r.type("{s}a") == b"string"
    r.setbit("{s}a", 0, 1)
    r.rename("{s}a", "elsewhere")  # to another shard, most likely
    assert r.get("elsewhere") == b"\xe1XYde\x00!"
    r.lpush("list", "x")
    for cmd in (("APPEND", "list", "x"), ("SETBIT", "list", 0, 1), ("SETRANGE", "list", 0, "x")):
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            r.execute_command(*cmd)


@pytest.mark.parametrize(
    "commands",
    [
        [("SETRANGE", "k", "0", "9")],
        [("SETRANGE", "k", "3", "ab")],
        [("SET", "k", "5"), ("SETRANGE", "k", "0", "7")],
        [("SET", "k", "1"), ("APPEND", "k", "1")],
        [("SET", "k", "abc"), ("APPEND", "k", "d")],
        [("APPEND", "k", "12")],
        [("SETBIT", "k", "1", "1")],
        [("SET", "k", "12"), ("SETBIT", "k", "1", "1")],
        [("SETRANGE", "k", "0", "9"), ("INCR", "k")],
        [("SETRANGE", "k", "0", "9"), ("GET", "k"), ("SET", "k", "9")],
        [("SETRANGE", "k", "0", "9"), ("DEL", "k"), ("SET", "k", "9")],
        [("SELECT", "1"), ("SETRANGE", "k", "0", "9"), ("SELECT", "0"), ("SET", "k", "9")],
    ],
    ids=lambda commands: " ".join(" ".join(c) for c in commands),
)
def test_object_encoding_of_a_string_changed_in_place(compare, commands):
    """A string SETRANGE, APPEND or SETBIT made or changed is raw, whatever
    it holds (an INCR after it makes an int again)."""
    for command in commands:
        compare(*command)
    compare("OBJECT", "ENCODING", "k")
