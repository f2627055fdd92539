"""Which writes count as a change of a watched key: compared with redis-server.

Redis aborts a WATCHed transaction when a command *signals* the key as
modified (``signalModifiedKey``), and its commands do that only when they
change something: DEL of a missing key, SREM of a missing member, LPOP of
an empty list, ZADD of the same score, SETRANGE with an empty string or
EXPIRE ... NX on a key that has a TTL leave a watcher's EXEC alone.  A few
commands signal even when the value stays as it was (SET of the same
value, LTRIM that keeps the whole list, LSET, HSET of the same value,
INCRBY 0).  COPY and the STORE forms change only their destination.

Each case: flush, run the setup, WATCH ``k``, let another client run the
command, then ``MULTI PING EXEC``.  The outcome ("abort" or "run") is
written down here, and must be the same on redis-server and shardkv.
"""

from __future__ import annotations

import shlex
import time

import pytest
import redis

from shardkv.protocol.commands import COMMANDS
from tests.support.servers import start_redis

STR = "SET k v"
LIST = "RPUSH k a b c"
HASH = "HSET k f v"
ZSET = "ZADD k 1 a 2 b"
SET = "SADD k a b"
XS = "XADD k 1-0 f v"
XG = XS + ";XGROUP CREATE k g 0"

ABORT, RUN = "abort", "run"

# (setup, command run by another client, outcome for a client watching k)
CASES = [
    # keys
    ("", "DEL k", RUN),
    (STR, "DEL k", ABORT),
    (STR, "DEL nokey k", ABORT),
    ("SET d 1", "DEL d k", RUN),
    ("", "UNLINK k", RUN),
    (STR, "UNLINK k", ABORT),
    ("", "EXPIRE k 100", RUN),
    (STR, "EXPIRE k 100", ABORT),
    (STR, "EXPIRE k 100 NX", ABORT),
    (STR + ";EXPIRE k 100", "EXPIRE k 100 NX", RUN),
    (STR + ";EXPIRE k 100", "PEXPIRE k 1000 GT", RUN),
    (STR, "PEXPIRE k 100000", ABORT),
    (STR, "EXPIRE k -1", ABORT),
    (STR, "EXPIREAT k 1", ABORT),
    ("", "PEXPIREAT k 99999999999999", RUN),
    (STR, "PEXPIREAT k 99999999999999", ABORT),
    (STR, "PERSIST k", RUN),
    (STR + ";EXPIRE k 100", "PERSIST k", ABORT),
    (STR, "RENAME k k", RUN),
    (STR, "RENAME k d", ABORT),
    ("SET d 1", "RENAME d k", ABORT),
    (STR, "RENAMENX k d", ABORT),
    (STR + ";SET d 1", "RENAMENX k d", RUN),
    ("SET d 1", "RENAMENX d k", ABORT),
    (STR + ";SET d 1", "RENAMENX d k", RUN),
    (STR, "COPY k d", RUN),
    ("SET d 1", "COPY d k", ABORT),
    (STR + ";SET d 1", "COPY d k", RUN),
    (STR + ";SET d 1", "COPY d k REPLACE", ABORT),
    ("", "COPY d k", RUN),
    ("SET d 1", "COPY d k DB 0", ABORT),
    ("SELECT 1;SET d 1;SELECT 0", "COPY d k DB 0", RUN),  # db 1's d: COPY's source is missing here
    (STR, "COPY k k DB 1", RUN),  # writes k in db 1, not the watched one
    (STR, "MOVE k 1", ABORT),
    ("", "MOVE k 1", RUN),
    ("SELECT 1;SET k 1;SELECT 0;" + STR, "MOVE k 1", RUN),  # the target has it: nothing moves
    (STR, "SWAPDB 0 1", ABORT),
    ("", "SWAPDB 0 1", RUN),
    ("SELECT 1;SET k 1;SELECT 0", "SWAPDB 0 1", ABORT),  # k comes in from db 1
    ("SELECT 1;SET k 1;SELECT 0", "SWAPDB 1 2", RUN),
    ("SELECT 1;SET k 1;SELECT 0", "FLUSHDB", RUN),  # other's db 0: k is db 1's
    (STR, "FLUSHDB", ABORT),
    (STR, "TOUCH k", RUN),
    (STR, "OBJECT ENCODING k", RUN),
    ("", "FLUSHALL", RUN),
    (STR, "FLUSHDB", ABORT),
    # strings
    (STR, "SET k v", ABORT),
    (STR, "SET k v NX", RUN),
    ("", "SET k v XX", RUN),
    (STR, "SET k w XX GET", ABORT),
    (STR, "SETNX k x", RUN),
    ("", "SETNX k x", ABORT),
    (STR, "SETEX k 100 v", ABORT),
    ("", "PSETEX k 100000 v", ABORT),
    (STR, "GETSET k v", ABORT),
    ("", "GETDEL k", RUN),
    (STR, "GETDEL k", ABORT),
    (STR, "GETEX k", RUN),
    (STR, "GETEX k EX 10", ABORT),
    (STR, "GETEX k PERSIST", RUN),
    (STR + ";EXPIRE k 100", "GETEX k PERSIST", ABORT),
    ("", "GETEX k PERSIST", RUN),
    (STR, "APPEND k ''", ABORT),
    ("", "APPEND k ''", ABORT),
    (STR, "SETRANGE k 0 ''", RUN),
    ("", "SETRANGE k 0 ''", RUN),
    (STR, "SETRANGE k 0 v", ABORT),
    ("SET k 1", "INCR k", ABORT),
    ("SET k 1", "INCRBY k 0", ABORT),
    ("SET k 1", "DECR k", ABORT),
    ("SET k 1", "DECRBY k 0", ABORT),
    ("SET k 1", "INCRBYFLOAT k 0", ABORT),
    ("SET k a", "INCR k", RUN),
    ("", "MSET d 1", RUN),
    ("", "MSET d 1 k 2", ABORT),
    ("", "MSETNX k 1 d 2", ABORT),
    ("SET d 1", "MSETNX k 1 d 2", RUN),
    # bitmaps ("v" is 0b01110110)
    (STR, "SETBIT k 0 0", RUN),
    (STR, "SETBIT k 1 0", ABORT),
    (STR, "SETBIT k 100 0", ABORT),
    ("", "SETBIT k 3 0", ABORT),
    (STR, "BITOP NOT d k", RUN),
    (STR, "BITOP NOT k k", ABORT),
    ("", "BITOP AND k nokey", RUN),
    (STR, "BITOP AND k nokey", ABORT),
    (STR, "BITFIELD k GET u8 0", RUN),
    (STR, "BITFIELD k SET u8 0 118", RUN),
    (STR, "BITFIELD k SET u8 0 119", ABORT),
    (STR, "BITFIELD k SET u8 100 0", ABORT),  # grows the string
    ("", "BITFIELD k OVERFLOW FAIL INCRBY u2 0 9", RUN),  # creates the key, but writes nothing
    ("", "BITFIELD k OVERFLOW FAIL INCRBY u2 0 1", ABORT),
    # lists
    (LIST, "LPUSH k a", ABORT),
    ("", "RPUSH k a", ABORT),
    ("", "LPUSHX k a", RUN),
    ("", "RPUSHX k a", RUN),
    (LIST, "RPUSHX k a", ABORT),
    (STR, "LPUSH k a", RUN),
    ("", "LPOP k", RUN),
    (LIST, "LPOP k", ABORT),
    (LIST, "RPOP k 2", ABORT),
    (LIST, "LPOP k 0", RUN),
    (LIST, "LREM k 0 zz", RUN),
    (LIST, "LREM k 0 a", ABORT),
    ("", "LTRIM k 0 -1", RUN),
    (LIST, "LTRIM k 0 -1", ABORT),
    (LIST, "LTRIM k 5 6", ABORT),
    (LIST, "LINSERT k BEFORE zz x", RUN),
    (LIST, "LINSERT k BEFORE a x", ABORT),
    (LIST, "LSET k 0 a", ABORT),
    ("", "LMOVE k d LEFT LEFT", RUN),
    (LIST, "LMOVE k d LEFT LEFT", ABORT),
    (LIST, "LMOVE d k LEFT LEFT", RUN),
    ("RPUSH d x", "LMOVE d k LEFT LEFT", ABORT),
    ("RPUSH d x;RPUSH k a", "LMOVE d k LEFT RIGHT", ABORT),
    (LIST, "RPOPLPUSH k k", ABORT),
    ("", "LMPOP 1 k LEFT", RUN),
    (LIST, "LMPOP 2 nokey k LEFT COUNT 2", ABORT),
    ("RPUSH d x", "LMPOP 2 d k LEFT", RUN),
    ("", "BLPOP k 0.01", RUN),
    (LIST, "BLPOP k 0", ABORT),
    (LIST, "BRPOP k 0", ABORT),
    ("RPUSH d x", "BRPOP d k 0", RUN),
    (LIST, "BLMOVE k d LEFT LEFT 0", ABORT),
    ("RPUSH d x", "BLMOVE d k RIGHT LEFT 0", ABORT),
    (LIST, "BRPOPLPUSH k d 0", ABORT),
    ("", "BLMPOP 0.01 1 k LEFT", RUN),
    (LIST, "BLMPOP 0 1 k RIGHT", ABORT),
    # sets
    (SET, "SADD k a", RUN),
    (SET, "SADD k a z", ABORT),
    ("", "SADD k a", ABORT),
    (SET, "SREM k z", RUN),
    (SET, "SREM k a z", ABORT),
    (SET, "SPOP k 0", RUN),
    ("", "SPOP k", RUN),
    (SET, "SPOP k", ABORT),
    (SET, "SPOP k 1", ABORT),
    (SET, "SPOP k 5", ABORT),
    (SET, "SMOVE k d z", RUN),
    (SET, "SMOVE k d a", ABORT),
    (SET, "SMOVE k k a", RUN),
    (SET, "SMOVE d k a", RUN),
    ("SADD d a", "SMOVE d k a", ABORT),
    ("SADD d a;SADD k a", "SMOVE d k a", RUN),
    (SET, "SINTERSTORE k nokey", ABORT),
    ("", "SINTERSTORE k nokey", RUN),
    (SET, "SINTERSTORE d k", RUN),
    (SET, "SUNIONSTORE k k", ABORT),
    ("", "SDIFFSTORE k nokey", RUN),
    (SET, "SDIFFSTORE d k", RUN),
    # hashes
    (HASH, "HSET k f v", ABORT),
    (HASH, "HMSET k f v", ABORT),
    (HASH, "HSETNX k f v", RUN),
    (HASH, "HSETNX k g v", ABORT),
    ("", "HSETNX k g v", ABORT),
    (HASH, "HDEL k zz", RUN),
    (HASH, "HDEL k f", ABORT),
    (HASH, "HINCRBY k n 0", ABORT),
    (HASH, "HINCRBYFLOAT k n 0", ABORT),
    (HASH, "HINCRBY k f 1", RUN),
    # sorted sets
    (ZSET, "ZADD k 1 a", RUN),
    (ZSET, "ZADD k 5 a", ABORT),
    (ZSET, "ZADD k 1 z", ABORT),
    (ZSET, "ZADD k CH 1 a 2 b", RUN),
    (ZSET, "ZADD k NX 5 a", RUN),
    (ZSET, "ZADD k XX 5 z", RUN),
    ("", "ZADD k XX 5 z", RUN),
    (ZSET, "ZADD k GT 0 a", RUN),
    (ZSET, "ZADD k INCR 0 a", RUN),
    (ZSET, "ZADD k INCR 1 a", ABORT),
    (ZSET, "ZINCRBY k 0 a", RUN),
    (ZSET, "ZINCRBY k 1 a", ABORT),
    (ZSET, "ZREM k z", RUN),
    (ZSET, "ZREM k a", ABORT),
    (ZSET, "ZREMRANGEBYSCORE k 10 20", RUN),
    (ZSET, "ZREMRANGEBYSCORE k 0 1", ABORT),
    (ZSET, "ZREMRANGEBYRANK k 5 6", RUN),
    (ZSET, "ZREMRANGEBYRANK k 0 0", ABORT),
    (ZSET, "ZREMRANGEBYLEX k [x [y", RUN),
    (ZSET, "ZREMRANGEBYLEX k - +", ABORT),
    (ZSET, "ZPOPMIN k 0", RUN),
    ("", "ZPOPMIN k", RUN),
    (ZSET, "ZPOPMIN k", ABORT),
    (ZSET, "ZPOPMAX k 5", ABORT),
    (ZSET, "ZMPOP 1 k MIN", ABORT),
    ("", "ZMPOP 1 k MIN", RUN),
    (ZSET, "BZPOPMIN k 0", ABORT),
    (ZSET, "BZPOPMAX k 0", ABORT),
    ("", "BZPOPMAX k 0.01", RUN),
    (ZSET, "BZMPOP 0 1 k MAX", ABORT),
    (ZSET, "ZUNIONSTORE k 1 k", ABORT),
    (ZSET, "ZUNIONSTORE d 1 k", RUN),
    ("", "ZUNIONSTORE k 1 nokey", RUN),
    (ZSET, "ZINTERSTORE k 1 nokey", ABORT),
    (ZSET, "ZRANGESTORE k k 0 -1", ABORT),
    (ZSET, "ZRANGESTORE d k 0 -1", RUN),
    ("", "ZRANGESTORE k nokey 0 -1", RUN),
    (ZSET, "ZDIFFSTORE k 1 nokey", ABORT),
    ("", "ZDIFFSTORE k 1 nokey", RUN),
    # streams: only XADD, XDEL and XTRIM that delete, and XGROUP CREATE ... MKSTREAM that creates
    ("", "XADD k 1-0 f v", ABORT),
    ("", "XADD k NOMKSTREAM 1-0 f v", RUN),
    (XS, "XADD k 1-0 f v", RUN),
    (XS, "XDEL k 9-0", RUN),
    (XS, "XDEL k 1-0", ABORT),
    (XS, "XTRIM k MAXLEN 5", RUN),
    (XS, "XTRIM k MAXLEN 0", ABORT),
    ("", "XGROUP CREATE k g $ MKSTREAM", ABORT),
    (XS, "XGROUP CREATE k g $", RUN),
    (XS, "XSETID k 5-0", RUN),
    (XG, "XREADGROUP GROUP g c STREAMS k >", RUN),
    (XG + ";XREADGROUP GROUP g c STREAMS k >", "XACK k g 1-0", RUN),
    (XG + ";XREADGROUP GROUP g c STREAMS k >", "XCLAIM k g d 0 1-0", RUN),
    (XG + ";XREADGROUP GROUP g c STREAMS k >", "XAUTOCLAIM k g d 0 0", RUN),
    # hyperloglog
    ("", "PFADD k", ABORT),
    ("PFADD k a", "PFADD k a", RUN),
    ("PFADD k a", "PFADD k b", ABORT),
    ("PFADD k a", "PFCOUNT k", ABORT),  # writes the cached cardinality
    ("PFADD k a;PFCOUNT k", "PFCOUNT k", RUN),
    ("PFADD k a", "PFMERGE d k", RUN),
    ("PFADD k a", "PFMERGE k", ABORT),
    ("PFADD k a", "PFDEBUG ENCODING k", RUN),
    ("PFADD k a", "PFDEBUG TODENSE k", RUN),  # a new encoding, not a change
    # geo
    ("", "GEOADD k 1 1 a", ABORT),
    ("GEOADD k 1 1 a", "GEOADD k 1 1 a", RUN),
    ("GEOADD k 1 1 a", "GEOADD k XX 1 1 b", RUN),
    ("GEOADD k 1 1 a", "GEOSEARCHSTORE d k FROMLONLAT 1 1 BYRADIUS 10 km", RUN),
    ("GEOADD d 1 1 a", "GEOSEARCHSTORE k d FROMLONLAT 1 1 BYRADIUS 10 km", ABORT),
    ("", "GEOSEARCHSTORE k d FROMLONLAT 1 1 BYRADIUS 10 km", RUN),
    ("GEOADD d 1 1 a", "GEORADIUS d 1 1 10 km STORE k", ABORT),
    ("GEOADD k 1 1 a", "GEORADIUS k 1 1 10 km", RUN),
    ("GEOADD d 1 1 a", "GEORADIUSBYMEMBER d a 10 km STOREDIST k", ABORT),
    # sort
    (LIST, "SORT k ALPHA", RUN),
    (LIST, "SORT k ALPHA STORE d", RUN),
    (LIST, "SORT k ALPHA STORE k", ABORT),
    ("", "SORT nokey STORE k", RUN),
]

# Not in CASES, with the reason: RESTORE (and RESTORE-ASKING, the same
# command) needs a payload, MIGRATE a target server (their own tests below).
NOT_IN_CASES = {"restore", "restore-asking", "migrate"}


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, protocol=2, socket_timeout=10)


def _outcome(watcher: redis.Redis) -> str:
    pipe = watcher.pipeline(transaction=True)
    pipe.ping()
    try:
        pipe.execute()
    except redis.WatchError:
        return ABORT
    return RUN


def _run_case(port: int, setup: str, args: list) -> str:
    watcher, other = _client(port), _client(port)
    try:
        for line in filter(None, setup.split(";")):
            watcher.execute_command(*shlex.split(line))
        watcher.execute_command("WATCH", "k")
        try:
            other.execute_command(*args)
        except redis.ResponseError:
            pass  # a command that fails changes nothing
        return _outcome(watcher)
    finally:
        watcher.close()
        other.close()


@pytest.mark.parametrize(("setup", "command", "expected"), CASES, ids=[f"{s}|{c}" for s, c, _ in CASES])
def test_what_a_write_changes(server, setup, command, expected):
    _client(server).flushall()
    assert _run_case(server, setup, shlex.split(command)) == expected


def test_every_write_command_has_a_case():
    covered = {shlex.split(command)[0].lower() for _, command, _ in CASES}
    writes = {name for name, cmd in COMMANDS.items() if "write" in cmd.flags}
    assert writes - covered == NOT_IN_CASES


@pytest.mark.parametrize(
    ("setup", "options", "expected"),
    [
        ("", [], ABORT),
        (STR, [], RUN),  # BUSYKEY
        (STR, ["REPLACE"], ABORT),
        ("", ["ABSTTL"], RUN),  # a deadline in the past: nothing is created
    ],
)
@pytest.mark.parametrize("name", ["RESTORE", "RESTORE-ASKING"])
def test_restore(server, name, setup, options, expected):
    c = _client(server)
    c.flushall()
    c.set("d", "payload")
    payload = c.dump("d")
    c.close()
    ttl = 1 if "ABSTTL" in options else 0
    assert _run_case(server, setup, [name, "k", ttl, payload, *options]) == expected


@pytest.fixture(scope="module")
def target():
    """A redis-server that MIGRATE moves keys to."""
    proc = start_redis()
    yield proc.port
    proc.stop()


@pytest.mark.parametrize(
    ("setup", "options", "expected"),
    [
        ("", [], RUN),  # NOKEY
        (STR, [], ABORT),  # moved away: deleted here
        (STR, ["COPY"], RUN),  # copied: k stays as it was
    ],
)
def test_migrate(server, target, setup, options, expected):
    redis.Redis(port=target).flushall()
    assert _run_case(server, setup, ["MIGRATE", "127.0.0.1", target, "k", 0, 5000, *options]) == expected


def test_a_blocked_client_served_changes_the_destination(server):
    # BLMOVE waits on an empty source; a push elsewhere serves it, and the
    # move into the watched destination counts as a change of it.
    watcher, blocked, pusher = _client(server), _client(server), _client(server)
    try:
        watcher.flushall()
        watcher.execute_command("WATCH", "k")
        conn = blocked.connection_pool.get_connection()
        conn.send_command("BLMOVE", "src", "k", "LEFT", "LEFT", 5)
        deadline = time.monotonic() + 10
        while not any(b"cmd=blmove" in line for line in _client_list(pusher)):
            assert time.monotonic() < deadline, "BLMOVE never blocked"
            time.sleep(0.01)
        pusher.rpush("src", "x")
        assert conn.read_response() == b"x"
        blocked.connection_pool.release(conn)
        assert _outcome(watcher) == ABORT
    finally:
        for c in (watcher, blocked, pusher):
            c.close()


def _client_list(c: redis.Redis) -> list[bytes]:
    return c.execute_command("CLIENT", "LIST").splitlines()


def test_a_transaction_across_shards_that_changes_nothing(server):
    # In a MULTI that spans shards, commands that change nothing leave the
    # watched key alone, and a command that changes it aborts the watcher.
    for commands, expected in [
        ([["LPOP", "k"], ["SREM", "d", "x"], ["INCR", "e"]], RUN),
        ([["GET", "k"], ["SET", "d", "1"]], RUN),
        ([["SET", "d", "1"], ["SET", "k", "1"]], ABORT),
    ]:
        watcher, other = _client(server), _client(server)
        try:
            watcher.flushall()
            watcher.execute_command("WATCH", "k")
            pipe = other.pipeline(transaction=True)
            for args in commands:
                pipe.execute_command(*args)
            pipe.execute()
            assert _outcome(watcher) == expected, commands
        finally:
            watcher.close()
            other.close()
