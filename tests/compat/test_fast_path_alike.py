"""Pipelined batches that mix the worker's fast path (a slotted GET, SET
key value, INCR, DECR: see Shard._run_batch) with whatever may replace or
change what it holds in locals for a batch (the keyspace's tables, the
batch's time, its counts of writes, hits and misses) or carries over to
the next batch (its last name and entry, Shard.last_plain): SELECT,
SWAPDB, FLUSHDB, FLUSHALL ASYNC, MOVE, COPY ... DB, RENAME, DEL, EXPIRE,
PERSIST, MULTI/EXEC, WATCH (a write of the client's own aborts its EXEC),
EVAL, CONFIG RESETSTAT, CONFIG SET notify-keyspace-events,
OBJECT FREQ, TYPE.  Each sequence's replies, then the keys of
databases 0 and 1 (their values, whether they expire, their idle times),
INFO keyspace, keyspace_hits, keyspace_misses, expired_keys and the calls of
GET, SET, INCR and DECR in commandstats (since the last RESETSTAT) are
redis-server's, byte for byte, at one acceptor and at two.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator

import pytest

from tests.support.resp import RespClient, encode_command
from tests.support.servers import start_redis, start_shardkv

SEEDS = range(24)
KEYS = [b"k%d" % i for i in range(6)] + [b"{t}a", b"{t}b"]
SCRIPT = b"redis.call('GET', KEYS[1]); return redis.call('INCR', KEYS[1])"


@pytest.fixture(scope="module", params=[1, 2], ids=["a1", "a2"])
def ports(request) -> Iterator[tuple[int, int, bytes]]:
    """The two servers' ports, and redis-server's DUMP of the value ``v0``."""
    real = start_redis()
    ours = start_shardkv(shards=2, acceptors=request.param)
    with RespClient(real.port) as c:
        c.command("SET", "x", "v0")
        dumped = c.command("DUMP", "x")
        c.command("DEL", "x")
    assert isinstance(dumped, bytes)
    yield real.port, ours.port, dumped
    real.stop()
    ours.stop()


def _fast(rng: random.Random) -> list[bytes]:
    key = rng.choice(KEYS)
    kind = rng.randrange(4)
    if kind == 0:
        return [b"SET", key, rng.choice([b"%d" % rng.randrange(-5, 50), b"v%d" % rng.randrange(9)])]
    if kind == 1:
        return [b"GET", key]
    return [b"INCR" if kind == 2 else b"DECR", key]


def _other(rng: random.Random) -> list[list[bytes]]:
    key = rng.choice(KEYS)
    other = rng.choice(KEYS)
    kind = rng.randrange(18)
    if kind == 0:
        db = b"%d" % rng.randrange(2)
        return [[b"SELECT", db]]  # (undone by the sequence's end: see _sequence)
    if kind == 1:
        return [[b"SWAPDB", b"0", b"1"]]
    if kind == 2:
        return [[b"FLUSHDB"]] if rng.randrange(3) else [[b"FLUSHALL", b"ASYNC"]]
    if kind == 3:
        return [[b"MOVE", key, b"1"]]
    if kind == 4:
        return [[b"COPY", key, key, b"DB", b"1", b"REPLACE"]]
    if kind == 5:
        return [[b"RENAME", b"{t}a", b"{t}b"]]
    if kind == 6:
        return [[b"DEL", key]]
    if kind == 7:
        return [[b"EXPIRE", key, b"100"]]
    if kind == 8:
        return [[b"PERSIST", key]]
    if kind == 9:
        return [[b"MULTI"], _fast(rng), [b"SET", key, b"m"], _fast(rng), [b"EXEC"]]
    if kind == 10:
        return [[b"WATCH", key], [b"SET", key, b"w"], [b"MULTI"], [b"GET", key], [b"EXEC"]]
    if kind == 11:
        return [[b"EVAL", SCRIPT, b"1", key]]
    if kind == 12:
        return [[b"CONFIG", b"RESETSTAT"]]
    if kind == 13:
        return [[b"TYPE", key], [b"STRLEN", other]]
    if kind == 14:
        return [[b"PEXPIRE", key, b"0"]]  # (deleted at once)
    if kind == 15:
        return [[b"CONFIG", b"SET", b"notify-keyspace-events", rng.choice([b"KEA", b""])]]
    if kind == 16:
        return [[b"OBJECT", b"FREQ", key]]
    return [[b"EXISTS", key, other]]


def _sequence(seed: int) -> list[list[bytes]]:
    rng = random.Random(seed)
    commands: list[list[bytes]] = []
    for _ in range(rng.choice([16, 64, 300, 1000])):
        if rng.randrange(6):
            commands.append(_fast(rng))
        else:
            commands.extend(_other(rng))
    commands.append([b"SELECT", b"0"])
    commands.append([b"CONFIG", b"SET", b"notify-keyspace-events", b""])
    return commands


_CALLS = re.compile(rb"cmdstat_(get|set|incr|decr):calls=(\d+)")
_COUNT = re.compile(rb"(keyspace_hits|keyspace_misses|expired_keys):(\d+)")
_KEYSPACE = re.compile(rb"(db\d+):keys=(\d+),expires=(\d+)")


def _run(
    port: int, dumped: bytes, commands: list[list[bytes]], rng: random.Random
) -> tuple[list[bytes], dict, list]:
    with RespClient(port, timeout=30) as c:
        c.command("FLUSHALL")
        # Every key idle a long time to begin with: one written where the
        # fast path keeps its clock in another database's table stays so.
        for db in (b"1", b"0"):
            c.command("SELECT", db)
            for key in KEYS:
                c.command("RESTORE", key, "0", dumped, "IDLETIME", "1000")
        c.command("CONFIG", "RESETSTAT")
        replies = []
        # The pipeline in reads of random sizes (one read may hold many batches).
        i = 0
        while i < len(commands):
            n = rng.choice([16, 100, 1000])
            part = commands[i : i + n]
            c.sock.sendall(b"".join(encode_command(*args) for args in part))
            replies.extend(c.read() for _ in part)
            i += n
        stats = dict(_COUNT.findall(c.call("INFO", "stats")))
        stats.update(_CALLS.findall(c.call("INFO", "commandstats")))
        stats.update((db, counts) for db, *counts in _KEYSPACE.findall(c.call("INFO", "keyspace")))
        keys = []
        for db in (b"0", b"1"):
            c.command("SELECT", db)
            for key in KEYS:
                value = c.call("GET", key)
                idle = None
                if value.startswith(b"$2\r\nv"):  # (Redis's small integers are shared: no clock of their own)
                    c.send("OBJECT", "IDLETIME", key)
                    idle = c.read_reply()
                    idle = isinstance(idle, int) and idle < 500  # (0 or 1000, as the key was last written)
                keys.append((db, key, value, c.call("TTL", key) != b":-1\r\n", idle))
        c.command("SELECT", "0")
    return replies, stats, keys


@pytest.mark.parametrize("seed", SEEDS)
def test_fast_path_alike(ports: tuple[int, int, bytes], seed: int) -> None:
    real, ours, dumped = ports
    commands = _sequence(seed)
    expected = _run(real, dumped, commands, random.Random(seed))
    got = _run(ours, dumped, commands, random.Random(seed))
    for i, (a, b) in enumerate(zip(expected[0], got[0], strict=True)):
        assert b == a, f"seed {seed}, command {i} {commands[i]!r}: redis {a!r}, shardkv {b!r}"
    assert got[2] == expected[2]
    assert got[1] == expected[1]
