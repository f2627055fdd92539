"""List commands, compared with a real redis-server.

With 4 shards, "a" and "e" live on one shard, "b", "c" and "d" each on
another: commands over several of them (LMOVE, LMPOP, BLPOP...) run as
cross-shard operations in shardkv.  ``{a}x`` shares a's shard.
"""

from __future__ import annotations

import socket

import pytest

from shardkv.protocol.router import Router

ROUTER = Router(4)
LONG_MAX = 2**63 - 1
LONG_MIN = -(2**63)


def test_key_placement():
    shards = {k: ROUTER.shard_of(k.encode()) for k in ("a", "b", "c", "d", "e", "{a}x")}
    assert len({shards["a"], shards["b"], shards["c"], shards["d"]}) == 4
    assert shards["a"] == shards["e"] == shards["{a}x"]


# -- pushing ---------------------------------------------------------------------


def test_push(compare):
    compare("LPUSH", "l", "a")
    compare("LPUSH", "l", "b", "c", "d")
    compare("RPUSH", "l", "x", "y")
    compare("LRANGE", "l", 0, -1)
    compare("RPUSH", "l", "")
    compare("RPUSH", "l", "bin\x00\xff\r\n")
    compare("LRANGE", "l", 0, -1)
    compare("LLEN", "l")
    compare("TYPE", "l")
    compare("LPUSH", "l")  # arity
    compare("RPUSH", "l")


def test_pushx(compare):
    compare("LPUSHX", "l", "a")
    compare("RPUSHX", "l", "a", "b")
    compare("EXISTS", "l")
    compare("RPUSH", "l", "m")
    compare("LPUSHX", "l", "a", "b")
    compare("RPUSHX", "l", "y", "z")
    compare("LRANGE", "l", 0, -1)
    compare("SET", "s", "v")
    compare("LPUSHX", "s", "a")
    compare("RPUSHX", "s", "a")


def test_wrongtype(compare):
    compare("SET", "s", "v")
    for args in (
        ("LPUSH", "s", "a"),
        ("RPUSH", "s", "a"),
        ("LPOP", "s"),
        ("RPOP", "s", 2),
        ("LLEN", "s"),
        ("LRANGE", "s", 0, -1),
        ("LINDEX", "s", 0),
        ("LSET", "s", 0, "x"),
        ("LINSERT", "s", "BEFORE", "a", "b"),
        ("LREM", "s", 0, "a"),
        ("LTRIM", "s", 0, 1),
        ("LPOS", "s", "a"),
        ("LMOVE", "s", "l", "LEFT", "LEFT"),
        ("RPOPLPUSH", "s", "l"),
        ("LMPOP", 1, "s", "LEFT"),
        ("BLPOP", "s", 0),
        ("BRPOP", "s", 0),
        ("BLMOVE", "s", "l", "LEFT", "RIGHT", 0),
        ("BRPOPLPUSH", "s", "l", 0),
        ("BLMPOP", 0, 1, "s", "LEFT"),
    ):
        compare(*args)
    compare("GET", "s")


# -- popping ---------------------------------------------------------------------


def test_pop(compare):
    compare("RPUSH", "l", "a", "b", "c", "d", "e")
    compare("LPOP", "l")
    compare("RPOP", "l")
    compare("LPOP", "l", 0)
    compare("LPOP", "l", 2)
    compare("RPOP", "l", 5)  # more than there are
    compare("EXISTS", "l")  # an emptied list is gone
    compare("LPOP", "l")
    compare("RPOP", "l", 1)  # a count on a missing key: a null array
    compare("LPOP", "l", 0)


def test_pop_errors(compare):
    compare("RPUSH", "l", "a", "b")
    compare("LPOP", "l", -1)
    compare("LPOP", "l", "abc")
    compare("RPOP", "l", "1.5")
    compare("LPOP", "nokey", "abc")
    compare("LPOP", "l", 1, 2)
    compare("RPOP", "l", 1, 2)
    compare("LPOP", "l", LONG_MAX)
    compare("LPOP")
    compare("LRANGE", "l", 0, -1)


def test_pop_until_empty(compare):
    compare("RPUSH", "l", "a")
    compare("RPOP", "l")
    compare("EXISTS", "l")
    compare("RPUSH", "l", "a", "b")
    compare("LPOP", "l", 2)
    compare("EXISTS", "l")


def test_lmpop(compare):
    compare("RPUSH", "a", "1", "2", "3")
    compare("RPUSH", "{a}x", "x1")
    compare("LMPOP", 2, "nokey", "a", "LEFT")
    compare("LMPOP", 2, "nokey", "a", "RIGHT", "COUNT", 10)
    compare("LMPOP", 2, "a", "{a}x", "left", "count", 1)
    compare("LMPOP", 1, "nokey", "LEFT")
    compare("EXISTS", "a", "{a}x")
    # Keys on different shards: an atomic cross-shard operation.
    compare("RPUSH", "c", "c1", "c2")
    compare("RPUSH", "d", "d1")
    compare("LMPOP", 3, "b", "c", "d", "RIGHT", "COUNT", 5)
    compare("LMPOP", 3, "b", "c", "d", "LEFT")
    compare("LMPOP", 3, "b", "c", "d", "LEFT")
    compare("SET", "b", "s")
    compare("LMPOP", 2, "b", "c", "LEFT")  # WRONGTYPE comes first
    compare("RPUSH", "c", "c3")
    compare("LMPOP", 2, "c", "b", "LEFT")  # a non-empty list before it wins


def test_lmpop_errors(compare):
    compare("RPUSH", "l", "a")
    compare("LMPOP", 0, "l", "LEFT")
    compare("LMPOP", -1, "l", "LEFT")
    compare("LMPOP", "abc", "l", "LEFT")
    compare("LMPOP", 5, "l", "LEFT")
    compare("LMPOP", 1, "l", "MIDDLE")
    compare("LMPOP", 1, "l", "LEFT", "COUNT")
    compare("LMPOP", 1, "l", "LEFT", "COUNT", 0)
    compare("LMPOP", 1, "l", "LEFT", "COUNT", -3)
    compare("LMPOP", 1, "l", "LEFT", "COUNT", "abc")
    compare("LMPOP", 1, "l", "LEFT", "COUNT", 1, "COUNT", 2)
    compare("LMPOP", 1, "l", "LEFT", "extra")
    compare("LMPOP", 1, "l")
    compare("LRANGE", "l", 0, -1)


# -- reading ---------------------------------------------------------------------


def test_llen_lindex(compare):
    compare("LLEN", "l")
    compare("RPUSH", "l", "a", "b", "c")
    compare("LLEN", "l")
    for index in (0, 1, 2, 3, -1, -3, -4, 100, -100, LONG_MAX, LONG_MIN):
        compare("LINDEX", "l", index)
    compare("LINDEX", "l", "abc")
    compare("LINDEX", "l", "1.0")
    compare("LINDEX", "nokey", "abc")  # no key: null before the index is read
    compare("LINDEX", "nokey", 0)


RANGES = [
    (0, -1), (0, 0), (0, 9), (0, 100), (1, 3), (-3, -1), (-100, 2), (-100, -100),
    (5, 2), (9, 9), (10, 20), (-1, -2), (3, -3), (-10, -10), (LONG_MIN, LONG_MAX),
    (LONG_MAX, LONG_MAX), (8, 100), (-2, 100),
]  # fmt: skip


def test_lrange(compare):
    compare("RPUSH", "l", *[f"e{i}" for i in range(10)])
    for start, stop in RANGES:
        compare("LRANGE", "l", start, stop)
    compare("LRANGE", "l", "a", 1)
    compare("LRANGE", "l", 0, "b")
    compare("LRANGE", "nokey", 0, -1)
    compare("LRANGE", "nokey", "a", 1)  # the numbers are read first


def test_lrange_long_list(compare):
    # Ranges near the tail are read from that end.
    compare("RPUSH", "l", *[str(i) for i in range(1000)])
    for start, stop in ((0, 99), (900, 999), (-100, -1), (450, 549), (998, 2000), (-1000, -990)):
        compare("LRANGE", "l", start, stop)


def test_lpos(compare):
    compare("RPUSH", "l", "a", "b", "c", "a", "b", "a")
    compare("LPOS", "l", "a")
    compare("LPOS", "l", "b")
    compare("LPOS", "l", "z")
    for options in (
        ("RANK", 1),
        ("RANK", 2),
        ("RANK", 3),
        ("RANK", 4),
        ("RANK", -1),
        ("RANK", -2),
        ("RANK", -4),
        ("RANK", LONG_MAX),
        ("RANK", LONG_MIN),
        ("COUNT", 0),
        ("COUNT", 1),
        ("COUNT", 2),
        ("COUNT", 10),
        ("RANK", 2, "COUNT", 0),
        ("RANK", -1, "COUNT", 2),
        ("MAXLEN", 1),
        ("MAXLEN", 3),
        ("MAXLEN", 4, "COUNT", 0),
        ("RANK", -1, "MAXLEN", 2, "COUNT", 0),
        ("RANK", 2, "MAXLEN", 3),
        ("MAXLEN", 0, "COUNT", 0),
        ("rank", 1, "count", 1, "maxlen", 0),
        ("COUNT", 1, "COUNT", 0),
    ):
        compare("LPOS", "l", "a", *options)
        compare("LPOS", "l", "z", *options)
        compare("LPOS", "nokey", "a", *options)


def test_lpos_errors(compare):
    compare("RPUSH", "l", "a", "b", "a")
    for options in (
        ("RANK", 0),
        ("RANK", "abc"),
        ("COUNT", -1),
        ("COUNT", "abc"),
        ("MAXLEN", -1),
        ("MAXLEN", "x"),
        ("FOO",),
        ("FOO", 1),
        ("RANK",),
        ("RANK", 1, "COUNT"),
        ("RANK", 0, "FOO"),
    ):
        compare("LPOS", "l", "a", *options)
        compare("LPOS", "nokey", "a", *options)  # options are read first


# -- changing in place -------------------------------------------------------------


def test_lset(compare):
    compare("LSET", "nokey", 0, "x")
    compare("LSET", "nokey", "abc", "x")
    compare("RPUSH", "l", "a", "b", "c")
    compare("LSET", "l", 0, "A")
    compare("LSET", "l", -1, "C")
    compare("LSET", "l", 3, "x")
    compare("LSET", "l", -4, "x")
    compare("LSET", "l", "abc", "x")
    compare("LSET", "l", LONG_MAX, "x")
    compare("LRANGE", "l", 0, -1)


def test_linsert(compare):
    compare("LINSERT", "nokey", "BEFORE", "a", "x")
    compare("LINSERT", "nokey", "MIDDLE", "a", "x")
    compare("RPUSH", "l", "a", "b", "a")
    compare("LINSERT", "l", "BEFORE", "a", "x")
    compare("LINSERT", "l", "after", "a", "y")
    compare("LINSERT", "l", "AFTER", "b", "z")
    compare("LINSERT", "l", "BEFORE", "nope", "z")
    compare("LINSERT", "l", "MIDDLE", "a", "z")
    compare("LRANGE", "l", 0, -1)


def test_lrem(compare):
    items = ["a", "b", "a", "c", "a", "b", "a"]
    for count in (0, 1, 2, -1, -2, 10, -10, LONG_MIN):
        compare("DEL", "l")
        compare("RPUSH", "l", *items)
        compare("LREM", "l", count, "a")
        compare("LRANGE", "l", 0, -1)
    compare("LREM", "l", 0, "nope")
    compare("LREM", "l", "abc", "a")
    compare("LREM", "nokey", "abc", "a")  # the count is read first
    compare("LREM", "nokey", 0, "a")
    compare("RPUSH", "m", "x", "x")
    compare("LREM", "m", 0, "x")
    compare("EXISTS", "m")


def test_ltrim(compare):
    for start, stop in RANGES:
        compare("DEL", "l")
        compare("RPUSH", "l", *[f"e{i}" for i in range(10)])
        compare("LTRIM", "l", start, stop)
        compare("LRANGE", "l", 0, -1)
        compare("EXISTS", "l")
    compare("LTRIM", "l", "a", 1)
    compare("LTRIM", "nokey", 0, 1)
    compare("LTRIM", "nokey", "a", 1)


# -- moving between lists -------------------------------------------------------


@pytest.mark.parametrize(
    "src,dst", [("a", "{a}x"), ("a", "b"), ("a", "a")], ids=["same-shard", "cross-shard", "same-key"]
)
def test_lmove(compare, src, dst):
    compare("RPUSH", src, "1", "2", "3")
    for wherefrom in ("LEFT", "RIGHT"):
        for whereto in ("LEFT", "RIGHT"):
            compare("LMOVE", src, dst, wherefrom, whereto)
            compare("LRANGE", src, 0, -1)
            compare("LRANGE", dst, 0, -1)
    compare("RPOPLPUSH", src, dst)
    compare("RPOPLPUSH", src, dst)
    compare("LRANGE", src, 0, -1)
    compare("LRANGE", dst, 0, -1)
    compare("EXISTS", src, dst)


def test_lmove_single_item_to_itself(compare):
    compare("RPUSH", "l", "only")
    compare("LMOVE", "l", "l", "LEFT", "RIGHT")
    compare("RPOPLPUSH", "l", "l")
    compare("LRANGE", "l", 0, -1)


@pytest.mark.parametrize("dst", ["{a}x", "b"], ids=["same-shard", "cross-shard"])
def test_lmove_errors(compare, dst):
    compare("LMOVE", "a", dst, "LEFT", "RIGHT")  # missing source: null
    compare("RPOPLPUSH", "a", dst)
    compare("RPUSH", "a", "1")
    compare("SET", dst, "s")
    compare("LMOVE", "a", dst, "LEFT", "RIGHT")  # nothing popped
    compare("RPOPLPUSH", "a", dst)
    compare("LRANGE", "a", 0, -1)
    compare("LMOVE", "a", dst, "UP", "RIGHT")
    compare("LMOVE", "a", dst, "LEFT", "DOWN")
    compare("LMOVE", "nokey", "a", "UP", "RIGHT")  # syntax before the lookup


# -- the blocking commands when they need not block ----------------------------


def test_blocking_with_data(compare):
    compare("RPUSH", "a", "1", "2", "3", "4", "5", "6", "7")
    compare("BLPOP", "nokey", "a", 0)
    compare("BRPOP", "a", "nokey", 0)
    compare("BLPOP", "a", "a", 1)
    compare("BLMOVE", "a", "{a}x", "LEFT", "RIGHT", 0)
    compare("BRPOPLPUSH", "a", "{a}x", 0)
    compare("BLMPOP", 0, 2, "nokey", "a", "LEFT", "COUNT", 5)
    compare("LRANGE", "{a}x", 0, -1)
    compare("EXISTS", "a")


def test_blocking_with_data_cross_shard(compare):
    compare("RPUSH", "c", "c1", "c2")
    compare("BLPOP", "b", "c", "d", 0)
    compare("BRPOP", "d", "c", 0)
    compare("RPUSH", "c", "c3")
    compare("BLMOVE", "c", "b", "RIGHT", "LEFT", 0)
    compare("BRPOPLPUSH", "b", "d", 0)
    compare("BLMPOP", 0, 3, "b", "c", "d", "RIGHT", "COUNT", 2)
    compare("EXISTS", "b", "c", "d")


def test_blocking_errors(compare):
    compare("RPUSH", "l", "a")
    for timeout in ("abc", "", " 1", "1_0", "nan", "1e", "0x", "-1", "-0.5", "inf", "-inf", "1e16", "1e3000"):
        compare("BLPOP", "l", timeout)
        compare("BRPOP", "nokey", timeout)
        compare("BLMOVE", "nokey", "l", "LEFT", "LEFT", timeout)
        compare("BRPOPLPUSH", "l", "x", timeout)
        compare("BLMPOP", timeout, 1, "nokey", "LEFT")
    compare("BLMOVE", "l", "x", "UP", "LEFT", "abc")  # the sides are read first
    compare("BLMPOP", "abc", 0, "l", "LEFT")  # numkeys is read before the timeout
    compare("BLMPOP", "abc", 1, "l", "MIDDLE")
    compare("BLMPOP", "abc", 1, "l", "LEFT", "COUNT", 0)
    compare("BLMPOP", 0, 1, "l")
    compare("SET", "s", "v")
    compare("BLPOP", "s", "l", "abc")  # the timeout is read first
    compare("BLPOP", "l", "s", 0)  # a non-empty list before the wrong type
    compare("BLPOP", "nokey", "s", 0)
    compare("LRANGE", "l", 0, -1)


def test_blocking_timeout_forms(compare):
    # Timeouts Redis accepts (strtold) and that pop at once here.
    compare("RPUSH", "l", *"abcdefghijklmn")
    for timeout in (
        "0",
        "0.0",
        "1.",
        ".5",
        "+1",
        "1e1",
        "0x10",
        "-0",
        "-0.0001",
        "1e-400",
        "9223372036854775",
    ):
        compare("BLPOP", "l", timeout)


def test_blocking_in_multi(r):
    # Inside MULTI a blocking command that would wait replies null at once.
    r.set("s", "v")
    pipe = r.pipeline()
    pipe.blpop(["nokey", "{nokey}2"], 0)
    pipe.brpop("nokey", 0)
    pipe.blmove("nokey", "dst", 0, "LEFT", "RIGHT")
    pipe.brpoplpush("nokey", "dst", 0)
    pipe.blmpop(0, 1, "nokey", direction="LEFT")
    pipe.rpush("nokey", "x")
    pipe.blpop("nokey", 0)
    pipe.exists("nokey", "dst")
    assert pipe.execute() == [None, None, None, None, None, 1, [b"nokey", b"x"], 0]


# -- exact bytes: RESP2's null array against null bulk --------------------------


def raw_reply(port: int, data: bytes, size: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        got = b""
        while len(got) < size:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


@pytest.mark.parametrize("name", ["redis", "shardkv"])
def test_raw_null_replies(ports, name):
    port = ports[name]
    raw_reply(port, b"FLUSHALL\r\n", 5)
    requests = (
        b"LPOP nokey\r\n",  # null bulk
        b"LPOP nokey 2\r\n",  # null array
        b"RPOP nokey 0\r\n",
        b"LMPOP 1 nokey LEFT\r\n",
        b"LPOS nokey a\r\n",
        b"LMOVE nokey dst LEFT LEFT\r\n",
        b"BLPOP nokey 0.01\r\n",  # times out: null array
        b"BLMOVE nokey dst LEFT LEFT 0.01\r\n",  # a null array too, in Redis 7.0
        b"BRPOPLPUSH nokey dst 0.01\r\n",
        b"BLMPOP 0.01 1 nokey LEFT\r\n",
        b"MULTI\r\nBLMOVE nokey dst LEFT LEFT 0\r\nBLPOP nokey 0\r\nEXEC\r\n",
    )
    expected = (
        b"$-1\r\n",
        b"*-1\r\n",
        b"*-1\r\n",
        b"*-1\r\n",
        b"$-1\r\n",
        b"$-1\r\n",
        b"*-1\r\n",
        b"*-1\r\n",
        b"*-1\r\n",
        b"*-1\r\n",
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n$-1\r\n*-1\r\n",
    )
    for request, reply in zip(requests, expected, strict=True):
        assert raw_reply(port, request, len(reply)) == reply, request
