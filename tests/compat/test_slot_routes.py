"""A plain single-key command's shard and slot (``dispatch.slot_routes``).

``Client._run`` sends a plain command (GET, SET, INCR... of a client with
nothing to intercept) to its key's shard, in database 0 with the slot in
its header, found by the key's whole CRC16 (0 to 65535: the table four
times over) or by its hash tag's slot.  The worker files the key under
that slot; every other path (MULTI/EXEC, MGET, a script, another
database's plain header) computes shard and slot itself.  So a key routed
or filed wrongly shows as a miss on another path: each test writes on one
path and reads on the others, against redis-server and shardkv alike
(``server``), with hash tags of every shape (empty ``{}``, unmatched
braces, a tag at the end) and keys in each quarter of the CRC16 range.
"""

from __future__ import annotations

from binascii import crc_hqx

import pytest
import redis

from tests.support.resp import RespClient, encode_command, parse_reply
from tests.support.servers import start_shardkv

TAGGED = [
    b"{}",
    b"{",
    b"}",
    b"}{",
    b"a{",
    b"{a",
    b"{}x",
    b"x{}",
    b"{a}",
    b"x{a}",
    b"a{b}c",
    b"{a}{b}",
    b"a}b{c",
    b"{{a}}",
    b"a{}{b}",
    b"tail{user1000}",
    b"{user1000}.following",
    b"",
    b"\xff{\x00}\xfe",
]


def _quarters() -> list[bytes]:
    """Keys whose whole CRC16 falls in each quarter of 0..65535 (past the
    16,384 slots before masking), four of each."""
    found: dict[int, list[bytes]] = {0: [], 1: [], 2: [], 3: []}
    i = 0
    while any(len(v) < 4 for v in found.values()):
        key = b"k:%d" % i
        quarter = crc_hqx(key, 0) >> 14
        if len(found[quarter]) < 4:
            found[quarter].append(key)
        i += 1
    return [key for keys in found.values() for key in keys]


KEYS = TAGGED + _quarters()
assert {crc_hqx(k, 0) >> 14 for k in KEYS} == {0, 1, 2, 3}


def _value(db: int, i: int, round_: int = 0) -> bytes:
    return b"v%d:%d:%d" % (round_, db, i)


def _check_every_path(c: redis.Redis, db: int, round_: int) -> None:
    """Every key holds its value of ``round_``, as read by a plain GET, a
    GET inside MULTI/EXEC, MGET, a script, EXISTS and DBSIZE."""
    want = [_value(db, i, round_) for i in range(len(KEYS))]
    pipe = c.pipeline(transaction=False)
    for key in KEYS:
        pipe.get(key)
    assert pipe.execute() == want
    pipe = c.pipeline(transaction=True)
    for key in KEYS:
        pipe.get(key)
    assert pipe.execute() == want
    assert c.mget(KEYS) == want
    script = "return redis.call('GET', KEYS[1])"
    assert [c.eval(script, 1, key) for key in KEYS] == want
    assert c.exists(*KEYS) == len(KEYS)
    assert c.dbsize() == len(KEYS)
    assert sorted(c.keys("*")) == sorted(KEYS)


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("db", [0, 5])
def test_plain_writes_are_found_by_every_path_and_back(server, protocol, db):
    c = redis.Redis(port=server, db=db, protocol=protocol)
    try:
        pipe = c.pipeline(transaction=False)  # plain SETs, one batch
        for i, key in enumerate(KEYS):
            pipe.set(key, _value(db, i))
        assert pipe.execute() == [True] * len(KEYS)
        _check_every_path(c, db, 0)
        # Written by MSET (each shard's part by the router), read plain.
        c.mset({key: _value(db, i, 1) for i, key in enumerate(KEYS)})
        _check_every_path(c, db, 1)
        # Plain INCR and APPEND, one by one (each its own batch).
        for key in KEYS:
            c.delete(key)
            assert c.incr(key) == 1
            assert c.append(key, b"x") == 2
        assert c.mget(KEYS) == [b"1x"] * len(KEYS)
        if db:
            assert redis.Redis(port=server, db=0, protocol=protocol).dbsize() == 0
    finally:
        c.flushall()
        c.close()


def _pipeline(c: RespClient, commands: list[list]) -> list:
    """``commands`` sent in one write (one batch for the acceptor), then
    each one's reply."""
    c.sock.sendall(b"".join(encode_command(*args) for args in commands))
    return [c.read_reply() for _ in commands]


def test_a_select_in_the_middle_of_a_batch_changes_the_header_at_once(server):
    """SELECT, then plain commands in the same batch: they go in the new
    database (a plain header), and back in database 0 (a slotted one)."""
    with RespClient(server) as c:
        commands: list[list] = []
        for i, key in enumerate(KEYS):
            commands.append(["SELECT", str(i % 3)])
            commands.append(["SET", key, _value(i % 3, i)])
        commands.append(["SELECT", "0"])
        commands += [["GET", key] for key in KEYS]
        replies = _pipeline(c, commands)
        assert replies[-len(KEYS) :] == [_value(0, i) if i % 3 == 0 else None for i in range(len(KEYS))]
        for db in (0, 1, 2):
            c.command("SELECT", str(db))
            got = _pipeline(c, [["GET", key] for key in KEYS])
            assert got == [_value(db, i) if i % 3 == db else None for i in range(len(KEYS))]
            multi = _pipeline(c, [["MULTI"], *(["GET", key] for key in KEYS), ["EXEC"]])
            assert multi[-1] == got
        c.command("FLUSHALL")


def test_tracking_and_monitor_clients_see_every_key(server):
    """A tracking client's commands, and everyone's while a MONITOR runs,
    take the slow path: what they write, a plain client reads, and the
    reverse; a plain write of each tracked key invalidates it."""
    with (
        RespClient(server) as plain,
        RespClient(server, protocol=3) as tracking,
        RespClient(server) as monitor,
    ):
        assert tracking.command("CLIENT", "TRACKING", "ON") == b"OK"
        _pipeline(tracking, [["SET", key, _value(0, i)] for i, key in enumerate(KEYS)])
        assert plain.command("MGET", *KEYS) == [_value(0, i) for i in range(len(KEYS))]
        got = _pipeline(tracking, [["GET", key] for key in KEYS])  # tracked now
        assert got == [_value(0, i) for i in range(len(KEYS))]
        _pipeline(plain, [["SET", key, _value(0, i, 1)] for i, key in enumerate(KEYS)])
        tracking.send("PING")
        invalidated = []
        while (raw := tracking.read()) != b"+PONG\r\n":
            assert raw.startswith(b">2\r\n$10\r\ninvalidate\r\n"), raw
            invalidated += parse_reply(raw)[0][1]  # type: ignore[index]
        assert sorted(invalidated) == sorted(KEYS)
        assert monitor.command("MONITOR") == b"OK"
        _pipeline(plain, [["SET", key, _value(0, i, 2)] for i, key in enumerate(KEYS)])
        seen = [monitor.read_reply() for _ in KEYS]
        assert all(b'"SET"' in line for line in seen), seen  # type: ignore[operator]
        assert plain.command("MGET", *KEYS) == [_value(0, i, 2) for i in range(len(KEYS))]
        assert _pipeline(tracking, [["GET", key] for key in KEYS]) == [
            _value(0, i, 2) for i in range(len(KEYS))
        ]
        plain.command("FLUSHALL")


@pytest.mark.slow  # servers of its own, restarted
@pytest.mark.parametrize("before, after", [(2, 3), (3, 1), (1, 4)])
def test_plain_keys_survive_a_reshard(tmp_path, before, after):
    """Keys written plain (database 0 slotted, database 2 not) are read on
    every path after a restart with another --shards."""
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--save", "")
    server = start_shardkv(*flags, shards=before)
    try:
        for db in (0, 2):
            c = redis.Redis(port=server.port, db=db)
            pipe = c.pipeline(transaction=False)
            for i, key in enumerate(KEYS):
                pipe.set(key, _value(db, i))
            pipe.execute()
            c.close()
        server.stop()
        server = start_shardkv(*flags, shards=after)
        for db in (0, 2):
            c = redis.Redis(port=server.port, db=db)
            _check_every_path(c, db, 0)
            c.close()
    finally:
        server.stop()
