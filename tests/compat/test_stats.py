"""INFO stats counters that monitoring reads, against a real redis-server.

``keyspace_hits`` and ``keyspace_misses`` (the cache hit rate) count the
lookups of read-only commands and of the keys a write command reads (SET
... GET, GETDEL, COPY's source, the sources of the STORE forms), and
nothing else.  Each case starts from the same keys on both servers, resets
the counters, runs one command and compares the counters' values.
``total_net_input_bytes`` and ``total_net_output_bytes`` count what
clients sent and were sent.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis

from tests.support.rawsocket import read_until_quiet

SETUP = [
    ["SET", "s", "hello"],
    ["SET", "n", "10"],
    ["HSET", "h", "f", "v", "g", "2"],
    ["RPUSH", "l", "a", "b", "c"],
    ["SADD", "st", "a", "b", "c"],
    ["SADD", "st2", "b", "d"],
    ["ZADD", "z", "1", "a", "2", "b"],
    ["ZADD", "z2", "3", "b"],
    ["SET", "ttl", "x", "EX", "100"],
    ["SET", "gone", "x", "PX", "1"],  # expired by the time the case runs
]

CASES = """
GET s | GET nx | GET h | GET gone | MGET s nx n h gone | STRLEN s | STRLEN nx | GETRANGE s 0 1 | SUBSTR s 0 1
GETRANGE s x 1 | GETRANGE h 0 1
SET s v | SET nx v | SET s v GET | SET nx v GET | SET h v GET | SET s v NX | SET s v XX | SET nx v XX
SET s v KEEPTTL | SETNX s v | SETNX nx v | SETEX s 10 v | PSETEX s 1000 v | GETSET s v | GETSET nx v
GETDEL s | GETDEL nx | GETEX s | GETEX nx | GETEX s EX 10 | GETEX s PERSIST | GETEX s EX x | GETEX nx EX x
GETEX s FOO | GETEX h EX x | APPEND s x
APPEND nx x | INCR n | INCR nx | DECR n | INCRBY n 2 | DECRBY n 2 | INCRBYFLOAT n 1.5 | INCR s
SETRANGE s 1 x | SETRANGE nx 1 x | MSET s 1 nx 2 | MSETNX nx 1 nx2 2 | MSETNX s 1 nx 2 | LCS s n
SETBIT s 1 1 | SETBIT nx 1 1 | GETBIT s 1 | GETBIT nx 1 | GETBIT h 1 | BITCOUNT s | BITCOUNT nx 0 x | BITPOS s 1 | BITPOS nx 0
BITPOS s 2 | BITOP AND d s nx n | BITOP NOT d h | BITOP XOR s s
BITFIELD s GET u8 0 | BITFIELD nx GET u8 0 | BITFIELD nx | BITFIELD s SET u8 0 1 | BITFIELD_RO s GET u8 0 | BITFIELD_RO h GET u8 0
EXISTS s | EXISTS nx | EXISTS s nx s gone | TOUCH s nx | TYPE s | TYPE nx | TTL ttl | TTL nx | TTL gone
PTTL s | EXPIRETIME ttl | PEXPIRETIME nx | OBJECT ENCODING s | OBJECT ENCODING nx | OBJECT FREQ s
OBJECT IDLETIME s | OBJECT REFCOUNT s | DUMP s | DUMP nx | RESTORE s 0 x | DEL s nx | UNLINK s nx | EXPIRE s 10 | EXPIRE nx 10
PEXPIRE s 1000 | EXPIREAT s 99999999999 | PEXPIREAT nx 1 | PERSIST ttl | PERSIST nx | RENAME s s9
RENAME nx s9 | RENAMENX s n | RENAMENX s s9 | COPY s s9 | COPY nx s9 | COPY s n | COPY s n REPLACE
DBSIZE | KEYS * | RANDOMKEY | SCAN 0 MATCH s*
HGET h f | HGET h x | HGET nx f | HGET s f | HMGET h f x | HLEN h | HLEN nx | HSTRLEN h f | HEXISTS h f
HKEYS h | HVALS nx | HGETALL h | HRANDFIELD h | HSCAN h 0 | HSET h f w | HSET nx f w | HSETNX h f w
HMSET h a b | HDEL h f | HDEL nx f | HINCRBY h g 1 | HINCRBY nx g 1 | HINCRBYFLOAT h g 1.5
LLEN l | LLEN nx | LRANGE l 0 -1 | LRANGE nx 0 -1 | LRANGE l x 1 | LINDEX l 0 | LPOS l b | LPUSH l x
LPUSH nx x | RPUSH l x | LPUSHX l x | LPUSHX nx x | RPUSHX nx x | LPOP l | LPOP nx | RPOP l 2
LSET l 0 x | LSET nx 0 x | LINSERT l BEFORE b x | LINSERT nx BEFORE b x | LREM l 0 a | LTRIM l 0 1
LMOVE l l2 LEFT RIGHT | LMOVE nx l2 LEFT RIGHT | RPOPLPUSH l l | LMPOP 2 nx l LEFT | LMPOP 1 nx LEFT
BLPOP l 1 | BRPOP nx l 1 | BLMOVE l l2 LEFT LEFT 1 | BRPOPLPUSH l l2 1 | BLMPOP 1 2 nx l LEFT
SMEMBERS st | SMEMBERS nx | SISMEMBER st a | SMISMEMBER st a x | SCARD st | SCARD nx | SRANDMEMBER st
SINTER st st2 | SINTER st nx | SINTER nx st | SUNION st st2 nx | SDIFF st st2 | SINTERCARD 2 st st2
SSCAN st 0 | SADD st x | SADD nx x | SREM st a | SREM nx a | SPOP st | SPOP nx | SMOVE st st2 a
SMOVE nx st2 a | SINTERSTORE d st st2 | SUNIONSTORE d st nx | SDIFFSTORE d st st2
ZCARD z | ZCARD nx | ZSCORE z a | ZSCORE nx a | ZMSCORE z a x | ZRANK z a | ZREVRANK z b | ZCOUNT z 0 10
ZLEXCOUNT z - + | ZRANGE z 0 -1 | ZRANGE nx 0 -1 | ZRANGE z x 1 | ZRANGEBYSCORE z 0 10
ZREVRANGEBYSCORE z 10 0 | ZRANGEBYLEX z - + | ZREVRANGEBYLEX z + - | ZREVRANGE z 0 -1 | ZRANDMEMBER z
ZUNION 2 z z2 | ZINTER 2 z nx | ZDIFF 2 z z2 | ZINTERCARD 2 z z2 | ZSCAN z 0 | ZADD z 5 c | ZADD nx 5 c
ZINCRBY z 1 a | ZREM z a | ZREMRANGEBYRANK z 0 0 | ZREMRANGEBYSCORE z 0 1 | ZREMRANGEBYLEX z - +
ZPOPMIN z | ZPOPMAX nx | BZPOPMIN z 1 | BZPOPMAX nx z 1 | ZMPOP 2 nx z MIN | BZMPOP 1 2 nx z MAX
ZUNIONSTORE d 2 z z2 | ZINTERSTORE d 2 z nx | ZDIFFSTORE d 2 z z2 | ZRANGESTORE d z 0 -1
ZRANGESTORE d nx 0 -1
LLEN s | SCARD s | ZCARD s | HLEN s | LPUSH s x | SADD s x | INCR h | APPEND h x
"""
CASE_LIST = [case.strip() for line in CASES.strip().splitlines() for case in line.split("|")]


def _hits_misses(c: redis.Redis) -> tuple[int, int]:
    stats = c.info("stats")
    return stats["keyspace_hits"], stats["keyspace_misses"]


def _counters_after(c: redis.Redis, commands: list[list[str]]) -> tuple[int, int]:
    c.flushall()
    for command in SETUP:
        c.execute_command(*command)
    time.sleep(0.01)  # "gone" expires
    c.config_resetstat()
    for command in commands:
        try:
            c.execute_command(*command)
        except redis.ResponseError:
            pass  # errors count as Redis counts them: the lookups made before
    return _hits_misses(c)


@pytest.fixture
def both(ports):
    real = redis.Redis(port=ports["redis"], protocol=2)
    ours = redis.Redis(port=ports["shardkv"], protocol=2)
    yield real, ours
    real.close()
    ours.close()


@pytest.mark.parametrize("case", CASE_LIST)
def test_keyspace_hits_and_misses_of_one_command(both, case):
    real, ours = both
    expected = _counters_after(real, [case.split()])
    assert _counters_after(ours, [case.split()]) == expected


def test_keyspace_hits_and_misses_inside_a_transaction(both):
    real, ours = both
    commands = [["MULTI"], ["GET", "s"], ["GET", "nx"], ["SINTERSTORE", "d", "st", "nx"], ["EXEC"]]
    expected = _counters_after(real, commands)
    assert expected == (2, 2)
    assert _counters_after(ours, commands) == expected


def test_keyspace_hits_of_a_whole_scan_with_a_type(both):
    """SCAN ... TYPE reads each key it meets (a hit each); the cursors of
    the two servers differ, so a whole iteration is compared.  No expired
    key here: whether Redis meets one before its active expiry removes it
    depends on timing."""
    real, ours = both
    for c in (real, ours):
        c.flushall()
        for command in SETUP:
            if command[1] != "gone":
                c.execute_command(*command)
        c.config_resetstat()
        assert sorted(c.scan_iter(_type="string")) == [b"n", b"s", b"ttl"]
    assert _hits_misses(ours) == _hits_misses(real)


def test_resetstat_zeroes_the_hit_and_miss_counters(both):
    for c in both:
        c.set("k", "v")
        c.get("k")
        c.get("missing")
        before = _hits_misses(c)
        assert before[0] >= 1 and before[1] >= 1
        c.config_resetstat()
        assert _hits_misses(c) == (0, 0)


def _net_bytes_after(port: int, payload: bytes, want: int = 1) -> tuple[dict[str, int], bytes]:
    """Reset the counters, send ``payload`` (pipelined), then read INFO stats;
    the counters' values and every reply (``want`` bytes of them at least:
    they can come in parts), from one raw connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"*2\r\n$6\r\nCONFIG\r\n$9\r\nRESETSTAT\r\n")
        assert read_until_quiet(s, 0.3, first=20)[0] == b"+OK\r\n"
        s.sendall(payload)
        replies = read_until_quiet(s, 0.3, want=want)[0]
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")
        info = read_until_quiet(s, 0.3, first=20)[0].decode()
    fields = dict(line.split(":", 1) for line in info.split("\r\n") if ":" in line)
    counters = {name: int(fields[name]) for name in ("total_net_input_bytes", "total_net_output_bytes")}
    return counters, replies


def test_net_input_and_output_bytes(ports):
    payload = (
        b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"
        b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"
        b"*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\n"
        b"PING\r\n"  # inline
        b"*1\r\n$7\r\nNOTACMD\r\n"  # an error reply
        b"*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n"
    )
    expected, expected_replies = _net_bytes_after(ports["redis"], payload)
    got, replies = _net_bytes_after(ports["shardkv"], payload, want=len(expected_replies))
    assert replies == expected_replies
    # Input: the payload and INFO's own command; output: RESETSTAT's +OK and the replies.
    assert expected == {
        "total_net_input_bytes": len(payload) + len(b"*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n"),
        "total_net_output_bytes": len(b"+OK\r\n") + len(expected_replies),
    }
    assert got == expected


def _lazyfreed(c: redis.Redis) -> int:
    """INFO's lazyfreed_objects once Redis's background thread is done."""
    deadline = time.monotonic() + 10
    while c.info("memory")["lazyfree_pending_objects"] and time.monotonic() < deadline:
        time.sleep(0.01)
    return c.info("memory")["lazyfreed_objects"]


def test_lazyfreed_objects_counts_what_unlink_frees_in_the_background(both):
    """UNLINK (and DEL under lazyfree-lazy-user-del) frees a value in the
    background when freeing it takes over 64 allocations: a set, hash or
    sorted set in a hash table or skip list with more elements, a stream of
    many nodes or with a consumer group's many pending entries; never a
    listpack, an intset or a string.  INFO counts them; RESETSTAT zeroes it."""
    many = [str(i) for i in range(200)]
    setup = [
        ["SADD", "big-set", *[f"m{i}" for i in many]],
        ["SADD", "int-set", *many],  # an intset: one allocation
        ["SADD", "small-set", "a", "b"],
        ["HSET", "big-hash", *[x for i in range(600) for x in (f"f{i}", "v")]],  # a hash table
        ["HSET", "small-hash", *[x for i in many for x in (f"f{i}", "v")]],  # a listpack
        ["ZADD", "big-zset", *[x for i in many for x in (i, f"m{i}")]],
        ["RPUSH", "list", *many],  # one quicklist node
        ["SET", "string", "x" * 100000],
    ]
    steps = [
        ["DEL", "big-set"],  # freed at once: not counted
        ["UNLINK", "int-set", "small-set", "small-hash", "list", "string"],
        ["UNLINK", "big-hash", "big-zset"],
        ["CONFIG", "SET", "lazyfree-lazy-user-del", "yes"],
        ["DEL", "big-set2"],
        ["CONFIG", "SET", "lazyfree-lazy-user-del", "no"],
        ["UNLINK", "stream"],
        ["UNLINK", "stream-with-group"],
    ]
    seen = []
    for c in both:
        c.flushall()
        c.config_set("stream-node-max-entries", 5)
        try:
            for command in setup:
                c.execute_command(*command)
            c.execute_command("SADD", "big-set2", *[f"m{i}" for i in many])
            for i in range(400):
                c.xadd("stream", {"f": i})
            c.xadd("stream-with-group", {"f": 0})
            c.xgroup_create("stream-with-group", "g", "0")
            for i in range(100):
                c.xadd("stream-with-group", {"f": i})
            c.xreadgroup("g", "alice", {"stream-with-group": ">"})
            c.config_resetstat()
            counts = []
            for command in steps:
                c.execute_command(*command)
                counts.append(_lazyfreed(c))
            c.config_resetstat()
            counts.append(_lazyfreed(c))
            seen.append(counts)
        finally:
            c.config_set("stream-node-max-entries", 100)
            c.config_set("lazyfree-lazy-user-del", "no")
    assert seen[1] == seen[0], seen
    assert seen[0] == [0, 0, 2, 2, 3, 3, 4, 5, 0]


def _commandstats_calls(c: redis.Redis) -> dict[str, int]:
    return {name: row["calls"] for name, row in c.info("commandstats").items()}


def test_commands_after_resetstat_in_a_pipeline_are_counted(both):
    """CONFIG RESETSTAT in the middle of a pipeline: the commands after it
    show in commandstats and latencystats, those before it do not."""
    seen = []
    for c in both:
        pipe = c.pipeline(transaction=False)
        for _ in range(30):
            pipe.set("k", "1")
            pipe.get("k")
        pipe.incr("k")
        pipe.config_resetstat()
        for _ in range(5):
            pipe.set("k", "2")
        for _ in range(3):
            pipe.get("k")
        pipe.incr("n")
        pipe.incr("n")
        pipe.execute()
        calls = _commandstats_calls(c)
        latency = sorted(c.info("latencystats"))
        seen.append((calls, latency))
    assert seen[1] == seen[0]
    assert seen[0][0]["cmdstat_set"] == 5
