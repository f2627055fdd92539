"""Keyspace notifications against redis-server: the same commands on both
servers, every message of ``__key*@*__:*`` compared one by one (channel,
event names, order).

The servers are the session's shared ones, so each test sets
``notify-keyspace-events`` and always puts it back to "" (nothing).
"""

from __future__ import annotations

import itertools
import socket
import time

import pytest
import redis

from tests.support.acceptors import client_on
from tests.support.placement import key_on, on_shards
from tests.support.rawsocket import read_through
from tests.support.resp import RespClient, encode_command

END = "zz-end-of-script"


def _until_end(c: redis.Redis, sub) -> list:
    """Publish the end marker, then the (channel, data) of every message
    the subscriber got before it."""
    c.publish(END, "x")
    out = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = sub.get_message(timeout=5)
        if m is None:
            continue
        if m["channel"] == END.encode():
            return out
        out.append((m["channel"], m["data"]))
    raise AssertionError(f"no end marker; got {out}")


def _messages(port: int, script: list[tuple], flags: str = "KEA", db: int = 0) -> list[tuple]:
    """Run ``script`` on the server at ``port`` and return the keyspace
    messages it caused, as (pattern-matched channel, message)."""
    c = redis.Redis(port=port, protocol=2, db=db, socket_timeout=30)
    sub = redis.Redis(port=port, protocol=2, socket_timeout=30).pubsub()
    c.flushall()
    c.config_set("notify-keyspace-events", flags)
    try:
        sub.psubscribe("__key*@*__:*")
        sub.subscribe(END)
        for _ in range(2):
            assert sub.get_message(timeout=10)["type"] in ("psubscribe", "subscribe")
        for command in script:
            if command[0] == "SLEEP":
                time.sleep(command[1])
                continue
            if command[0] == "SWEPT":  # until active expiry removed every key
                deadline = time.monotonic() + 20  # (DBSIZE counts expired keys still there)
                while c.dbsize():
                    assert time.monotonic() < deadline, "active expiry removed nothing"
                    time.sleep(0.05)
                continue
            try:
                c.execute_command(*command)
            except redis.ResponseError:
                pass
        return _until_end(c, sub)
    finally:
        c.config_set("notify-keyspace-events", "")
        sub.close()
        c.close()


def _same(ports, script, flags="KEA", db=0) -> list[tuple]:
    expected = _messages(ports["redis"], script, flags, db)
    got = _messages(ports["shardkv"], script, flags, db)
    assert got == expected
    return expected


SCRIPTS = {
    "strings": [
        ("SET", "a", "1"),
        ("SET", "a", "2", "EX", "100"),
        ("SET", "a", "3", "NX"),
        ("SET", "b", "3", "XX"),
        ("SET", "a", "4", "XX", "GET"),
        ("SETNX", "a", "x"),
        ("SETNX", "c", "x"),
        ("SETEX", "d", "10", "v"),
        ("PSETEX", "e", "10000", "v"),
        ("GETSET", "a", "5"),
        ("MSET", "a", "1", "f", "2"),
        ("MSETNX", "g", "1", "h", "2"),
        ("MSETNX", "g", "1", "i", "2"),
        ("INCR", "n"),
        ("DECR", "n"),
        ("INCRBY", "n", "5"),
        ("DECRBY", "n", "5"),
        ("INCRBYFLOAT", "n", "1.5"),
        ("APPEND", "s", "abc"),
        ("SETRANGE", "s", "1", "zz"),
        ("SETRANGE", "s", "1", ""),
        ("GETDEL", "s"),
        ("GETDEL", "s"),
        ("GETEX", "a", "EX", "100"),
        ("GETEX", "a", "PERSIST"),
        ("GETEX", "a", "PERSIST"),
        ("SETBIT", "bits", "3", "1"),
        ("BITFIELD", "bf", "SET", "u8", "0", "255"),
        ("BITFIELD", "bf", "GET", "u8", "0"),
        ("BITOP", "OR", "dest", "bits", "bf"),
        ("BITOP", "AND", "dest", "nokey"),
        ("PFADD", "hll", "a", "b"),
        ("PFADD", "hll", "a"),
        ("PFMERGE", "hll2", "hll"),
    ],
    "generic": [
        ("SET", "a", "1"),
        ("SET", "b", "1"),
        ("DEL", "a", "b", "c"),
        ("SET", "a", "1"),
        ("UNLINK", "a"),
        ("SET", "k", "v"),
        ("EXPIRE", "k", "100"),
        ("PEXPIRE", "k", "100000"),
        ("EXPIREAT", "k", "99999999999"),
        ("EXPIRE", "k", "100", "NX"),
        ("PERSIST", "k"),
        ("PERSIST", "k"),
        ("EXPIRE", "missing", "10"),
        ("RENAME", "k", "k2"),
        ("SET", "x", "1"),
        ("RENAMENX", "k2", "x"),
        ("RENAMENX", "k2", "k3"),
        ("RENAME", "k3", "k3"),
        ("COPY", "k3", "k4"),
        ("COPY", "k3", "k4"),
        ("COPY", "k3", "k4", "REPLACE"),
        ("COPY", "k3", "k4", "DB", "1"),
        ("MOVE", "k4", "2"),
        ("EXPIRE", "k3", "-1"),
        ("RPUSH", "l", "3", "1", "2"),
        ("SORT", "l", "STORE", "sorted"),
        ("SORT", "nokey", "STORE", "sorted"),
    ],
    "lists": [
        ("LPUSH", "l", "a", "b"),
        ("RPUSH", "l", "c"),
        ("LPUSHX", "l", "d"),
        ("RPUSHX", "nol", "d"),
        ("LINSERT", "l", "BEFORE", "a", "x"),
        ("LINSERT", "l", "BEFORE", "zz", "x"),
        ("LSET", "l", "0", "y"),
        ("LPOP", "l"),
        ("RPOP", "l", "2"),
        ("LREM", "l", "0", "nothing"),
        ("LREM", "l", "0", "x"),
        ("RPUSH", "l", "1", "2", "3"),
        ("LTRIM", "l", "0", "1"),
        ("LTRIM", "l", "5", "6"),
        ("LTRIM", "nol", "0", "1"),
        ("RPUSH", "src", "1", "2"),
        ("RPOPLPUSH", "src", "dst"),
        ("LMOVE", "src", "dst", "LEFT", "RIGHT"),
        ("LMOVE", "src", "dst", "LEFT", "RIGHT"),
        ("LMPOP", "2", "nol", "dst", "RIGHT", "COUNT", "5"),
        ("RPUSH", "q", "a"),
        ("BLPOP", "q", "0.1"),
        ("LPOP", "nol"),
        ("LPOP", "nol", "2"),
    ],
    "sets": [
        ("SADD", "s", "a", "b", "c"),
        ("SADD", "s", "a"),
        ("SREM", "s", "zz"),
        ("SREM", "s", "a"),
        ("SMOVE", "s", "t", "b"),
        ("SMOVE", "s", "t", "zz"),
        ("SADD", "t", "c"),
        ("SMOVE", "s", "t", "c"),
        ("SPOP", "t"),
        ("SPOP", "t", "5"),
        ("SPOP", "t"),
        ("SADD", "a", "1", "2"),
        ("SADD", "b", "2", "3"),
        ("SINTERSTORE", "i", "a", "b"),
        ("SUNIONSTORE", "u", "a", "b"),
        ("SDIFFSTORE", "d", "a", "b"),
        ("SINTERSTORE", "u", "a", "nokey"),
    ],
    "hashes": [
        ("HSET", "h", "a", "1", "b", "2"),
        ("HSET", "h", "a", "1"),
        ("HMSET", "h", "c", "3"),
        ("HSETNX", "h", "a", "1"),
        ("HSETNX", "h", "d", "1"),
        ("HINCRBY", "h", "n", "1"),
        ("HINCRBYFLOAT", "h", "f", "1.5"),
        ("HDEL", "h", "zz"),
        ("HDEL", "h", "a", "b", "c", "d", "n", "f"),
    ],
    "zsets": [
        ("ZADD", "z", "1", "a", "2", "b"),
        ("ZADD", "z", "1", "a"),
        ("ZADD", "z", "5", "a"),
        ("ZADD", "z", "INCR", "1", "a"),
        ("ZADD", "z", "NX", "INCR", "1", "a"),
        ("ZINCRBY", "z", "2", "c"),
        ("ZREM", "z", "zz"),
        ("ZREM", "z", "c"),
        ("ZADD", "z", "3", "c", "4", "d", "5", "e"),
        ("ZREMRANGEBYSCORE", "z", "3", "3"),
        ("ZREMRANGEBYRANK", "z", "0", "0"),
        ("ZREMRANGEBYLEX", "z", "-", "+"),
        ("ZADD", "z", "1", "a", "2", "b", "3", "c"),
        ("ZPOPMIN", "z"),
        ("ZPOPMAX", "z", "5"),
        ("ZPOPMIN", "z"),
        ("ZADD", "y", "1", "a", "2", "b"),
        ("ZADD", "w", "1", "b"),
        ("ZUNIONSTORE", "out", "2", "y", "w"),
        ("ZINTERSTORE", "out", "2", "y", "w"),
        ("ZDIFFSTORE", "out", "2", "y", "w"),
        ("ZRANGESTORE", "out2", "y", "0", "-1"),
        ("ZINTERSTORE", "out", "2", "y", "nokey"),
        ("ZMPOP", "1", "y", "MIN"),
        ("BZPOPMAX", "y", "0.1"),
        ("GEOADD", "g", "13.361389", "38.115556", "Palermo"),
        ("GEOADD", "g", "13.361389", "38.115556", "Palermo"),
        ("GEOSEARCHSTORE", "gs", "g", "FROMLONLAT", "15", "37", "BYRADIUS", "200", "km"),
        ("GEORADIUS", "g", "15", "37", "200", "km", "STORE", "gr"),
    ],
    "streams": [
        ("XADD", "x", "1-0", "f", "v"),
        ("XADD", "x", "2-0", "f", "v"),
        ("XADD", "x", "MAXLEN", "1", "3-0", "f", "v"),
        ("XADD", "x", "MAXLEN", "5", "4-0", "f", "v"),
        ("XDEL", "x", "3-0"),
        ("XDEL", "x", "9-0"),
        ("XTRIM", "x", "MAXLEN", "0"),
        ("XSETID", "x", "10-0"),
        ("XGROUP", "CREATE", "x", "g", "$"),
        ("XGROUP", "CREATE", "nx", "g", "$", "MKSTREAM"),
        ("XGROUP", "SETID", "x", "g", "0"),
        ("XGROUP", "CREATECONSUMER", "x", "g", "c"),
        ("XGROUP", "DELCONSUMER", "x", "g", "c"),
        ("XGROUP", "DESTROY", "x", "g"),
        ("XGROUP", "DESTROY", "x", "g"),
        ("XGROUP", "CREATE", "s", "grp", "$", "MKSTREAM"),
        ("XGROUP", "CREATECONSUMER", "s", "grp", "Bob"),
        ("XADD", "s", "1-0", "f", "v"),
        ("XREADGROUP", "GROUP", "grp", "Alice", "STREAMS", "s", ">"),
        ("XREADGROUP", "GROUP", "grp", "Alice", "STREAMS", "s", ">"),
        ("XCLAIM", "s", "grp", "Mike", "0", "1-0", "FORCE"),
        ("XGROUP", "DELCONSUMER", "s", "grp", "Lee"),
        ("XAUTOCLAIM", "s", "grp", "Bob", "0", "1-0"),
        ("XAUTOCLAIM", "s", "grp", "Zed", "0", "1-0"),
        ("XGROUP", "DELCONSUMER", "s", "grp", "Bob"),
    ],
    "transaction": [
        ("MULTI",),
        ("SET", "a", "1"),
        ("LPUSH", "b", "1"),
        ("SADD", "c", "1"),
        ("DEL", "a", "b", "c"),
        ("EXEC",),
    ],
    "script": [
        (
            "EVAL",
            "redis.call('set', KEYS[1], 'v'); redis.call('incr', KEYS[2]); return 1",
            "2",
            "{t}a",
            "{t}b",
        ),
        ("EVAL", "redis.call('del', KEYS[1], KEYS[2]); return 1", "2", "{t}a", "{t}b"),
    ],
}


@pytest.mark.parametrize("family", sorted(SCRIPTS))
def test_events_of_commands(ports, family):
    assert _same(ports, SCRIPTS[family])


def test_cross_shard_commands(ports):
    script = [
        ("MSET", "a", "1", "b", "2", "c", "3", "d", "4"),
        ("DEL", "a", "b", "c", "d"),
        ("SET", "k1", "v"),
        ("RENAME", "k1", "other-shard-key"),
        ("SADD", "s1", "m"),
        ("SMOVE", "s1", "s9", "m"),
        ("RPUSH", "l1", "x"),
        ("LMOVE", "l1", "l7", "LEFT", "LEFT"),
        ("SADD", "x1", "a"),
        ("SADD", "x2", "a", "b"),
        ("SUNIONSTORE", "x3", "x1", "x2"),
    ]
    assert _same(ports, script)


def test_new_key_events(ports):
    script = [
        ("SET", "a", "1"),
        ("SET", "a", "2"),
        ("LPUSH", "l", "x"),
        ("RENAME", "a", "b"),
        ("COPY", "b", "c"),
    ]
    assert _same(ports, script, flags="KEAn")


@pytest.mark.parametrize("family", sorted(SCRIPTS))
def test_new_key_events_of_commands(ports, family):
    """``new`` (dbAdd) comes just before the command's first event on the
    key it added: SMOVE's srem and del of the source come first, MSETNX's
    new and set alternate key by key."""
    _same(ports, SCRIPTS[family], flags="KEAn")


def test_new_key_events_across_shards(ports):
    script = [
        ("MSETNX", "q1", "1", "q2", "2", "q3", "3", "{q1}4", "4"),
        ("SADD", "s1", "m"),
        ("SMOVE", "s1", "s9", "m"),
        ("RPUSH", "l1", "x"),
        ("LMOVE", "l1", "l7", "LEFT", "LEFT"),
        ("SET", "k1", "v"),
        ("RENAME", "k1", "other-shard-key"),
        ("SADD", "x1", "a"),
        ("SUNIONSTORE", "x3", "x1", "s9"),
        ("COPY", "x1", "y9", "REPLACE"),
    ]
    _same(ports, script, flags="KEAn")


def test_msetnx_voted_down_across_shards_notifies_only_expiries(ports):
    """An MSETNX that finds a key sets nothing and notifies nothing, on any
    shard, but a key it found expired is gone all the same: its ``expired``
    comes out as in Redis (a shard that set its part, undone when another
    shard found its key, once dropped every event of that part)."""
    gone, exists, new = on_shards(0, 1, 2, prefix="vote")
    script = [
        ("SET", exists, "x"),
        ("SET", gone, "v", "PX", "1"),
        ("SLEEP", 0.02),  # expired, still there (see below)
        ("MSETNX", gone, "1", exists, "2", new, "3"),
        ("MSETNX", new, "1", exists, "2"),
    ]
    # Active expiry (which would notify it the same) seldom runs first at
    # hz 1: the MSETNX finds the key expired.
    clients = [redis.Redis(port=ports[name]) for name in ("redis", "shardkv")]
    hz = [c.config_get("hz")["hz"] for c in clients]
    try:
        for c in clients:
            c.config_set("hz", 1)
        got = _same(ports, script)
    finally:
        for c, was in zip(clients, hz, strict=True):
            c.config_set("hz", was)
            c.close()
    assert got[-2:] == [
        (b"__keyspace@0__:" + gone.encode(), b"expired"),
        (b"__keyevent@0__:expired", gone.encode()),
    ]


def test_restore_events(ports):
    """RESTORE ... REPLACE deletes the old key and adds the new one: ``new``
    then ``restore``; a TTL already past deletes it (``del``) and adds nothing."""
    source = redis.Redis(port=ports["redis"])
    try:
        source.set("src", "v")
        payload = source.dump("src")
    finally:
        source.close()
    script = [
        ("SET", "k", "old"),
        ("RESTORE", "k", "0", payload, "REPLACE"),
        ("RESTORE", "k", "0", payload),  # BUSYKEY: nothing
        ("RESTORE", "n", "0", payload),
        ("RESTORE", "t", "100000", payload),
        ("RESTORE", "t", "5000", payload, "REPLACE"),
        ("RESTORE", "k", "1", payload, "REPLACE", "ABSTTL"),
        ("RESTORE", "gone", "1", payload, "ABSTTL"),
    ]
    events = _same(ports, script, flags="KEAn")
    assert events[4:8] == [
        (b"__keyspace@0__:k", b"new"),
        (b"__keyevent@0__:new", b"k"),
        (b"__keyspace@0__:k", b"restore"),
        (b"__keyevent@0__:restore", b"k"),
    ]


def test_keymiss_events(ports):
    script = [("GET", "nope"), ("SET", "a", "1"), ("GET", "a"), ("HGET", "h", "f"), ("MGET", "x", "a", "y")]
    assert _same(ports, script, flags="Km")


def test_keymiss_events_of_read_commands(ports):
    """Which reads of a missing key are a ``keymiss`` (Redis's
    lookupKeyRead), and which are not: OBJECT looks up without notifying
    (LOOKUP_NONOTIFY), write commands' lookups never notify."""
    script = [
        ("EXISTS", "m1", "m2"),
        ("TYPE", "m1"),
        ("TTL", "m1"),
        ("STRLEN", "m1"),
        ("GETRANGE", "m1", "0", "1"),
        ("GETBIT", "m1", "0"),
        ("LRANGE", "m1", "0", "1"),
        ("SISMEMBER", "m1", "x"),
        ("SUNION", "m1", "m2"),
        ("HGETALL", "m1"),
        ("ZSCORE", "m1", "x"),
        ("XRANGE", "m1", "-", "+"),
        ("PFCOUNT", "m1"),
        ("SORT_RO", "m1"),
        ("DUMP", "m1"),
        ("OBJECT", "ENCODING", "m1"),
        ("OBJECT", "REFCOUNT", "m1"),
        ("TOUCH", "m1", "m2"),
        ("LCS", "m1", "m2"),
        ("MEMORY", "USAGE", "m1"),
        ("EVAL", "return redis.call('get', KEYS[1])", "1", "m1"),
        ("GETDEL", "m1"),
        ("SUNIONSTORE", "d", "m1"),
        ("RPOPLPUSH", "m3", "m4"),
        ("INCR", "m5"),
    ]
    _same(ports, script, flags="KEm")


@pytest.mark.parametrize(
    "flags", ["K$", "Eg", "Kl", "Es", "KEh", "Kz", "Kt", "E$lshzt", "KA", "EA", "A", "Kx"]
)
def test_classes_filter_events(ports, flags):
    script = SCRIPTS["strings"][:6] + SCRIPTS["lists"][:5] + SCRIPTS["sets"][:4] + SCRIPTS["hashes"][:3]
    script += SCRIPTS["zsets"][:3] + SCRIPTS["streams"][:2] + [("DEL", "a", "l", "s", "h", "z", "x")]
    _same(ports, script, flags=flags)


def test_events_in_other_databases(ports):
    script = [("SET", "a", "1"), ("LPUSH", "l", "x"), ("DEL", "a"), ("SWAPDB", "3", "0")]
    assert _same(ports, script, db=3)


def test_expired_events_lazy_and_active(ports):
    # Expired by a read or by the sweeper: the same one event either way.
    script = [("SET", "lazy", "v", "PX", "50"), ("SLEEP", 0.2), ("GET", "lazy"), ("GET", "lazy")]
    assert _same(ports, script, flags="Kx") == [(b"__keyspace@0__:lazy", b"expired")]
    # The sweeper alone: a key nobody touches again still expires, with its event.
    script = [("SET", "gone", "v", "PX", "30"), ("SWEPT",)]
    assert _same(ports, script, flags="Ex") == [(b"__keyevent@0__:expired", b"gone")]


def test_config_get_and_set_render_flags(compare):
    for flags in ["KEA", "AKE", "Kg$", "Elshzxet", "K$lshzxetg", "KEAm", "Kn", "", "KEd", "Em", "gK", "A"]:
        compare("CONFIG", "SET", "notify-keyspace-events", flags)
        compare("CONFIG", "GET", "notify-keyspace-events")
    compare("CONFIG", "SET", "notify-keyspace-events", "KEQ")
    compare("CONFIG", "SET", "notify-keyspace-events", "")


ECHO_END = b"$3\r\nend\r\n"  # ECHO end's reply


# A RESP3 client's own writes, pipelined with reads of keys on other shards:
# each write's notifications come just before its reply, as in Redis, where
# notifyKeyspaceEvent runs inside the command.  (Inside EXEC's array, where
# Redis writes them, they are not: see README's differences.)
OWN_PIPELINES = {
    "set_then_reads": (
        [("SUBSCRIBE", "__keyspace@0__:k1")],
        [("SET", "k1", "new"), ("GET", "k2"), ("GET", "k1")],
    ),
    "writes_on_every_shard": (
        [("PSUBSCRIBE", "__key*@0__:*")],
        [
            ("GET", "k2"),
            ("SET", "k1", "a"),
            ("SET", "k3", "b"),
            ("GET", "k4"),
            ("INCR", "n"),
            ("MSET", "k1", "x", "k2", "y", "k3", "z"),
            ("GET", "k3"),
            ("DEL", "k1", "k2", "nope"),
            ("GET", "k1"),
        ],
    ),
    "after_a_transaction": (
        [("SUBSCRIBE", "__keyevent@0__:set", "__keyspace@0__:k4")],
        [
            ("MULTI",),
            ("GET", "k1"),
            ("EXEC",),
            ("GET", "k2"),
            ("SET", "k4", "c"),
            ("GET", "k1"),
            ("SET", "k1", "d"),
        ],
    ),
}


def _own_events(port: int, subscribe: list[tuple], pipeline: list[tuple]) -> bytes:
    """What a RESP3 client subscribed by ``subscribe`` reads after sending
    ``pipeline``, through the reply of an ``ECHO end`` sent behind it (each
    step is read through one: a notification that came after the replies
    it belongs before would be missing, not waited for)."""
    end = encode_command("ECHO", "end")
    with RespClient(port, timeout=30) as c:
        c.command("FLUSHALL")
        c.command("SET", "k2", "v2")
        c.command("CONFIG", "SET", "notify-keyspace-events", "KEA")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            for step in ([("HELLO", "3")], subscribe, pipeline):
                s.sendall(b"".join(encode_command(*c) for c in step) + end)
                out, closed = read_through(s, ECHO_END)
                assert out.endswith(ECHO_END) and not closed, out
            return out
    finally:
        with RespClient(port, timeout=30) as c:
            c.command("CONFIG", "SET", "notify-keyspace-events", "")


@pytest.mark.parametrize("case", sorted(OWN_PIPELINES))
def test_own_notifications_come_before_the_reply(ports, case):
    subscribe, pipeline = OWN_PIPELINES[case]
    real = _own_events(ports["redis"], subscribe, pipeline)
    assert b">3\r\n$7\r\nmessage\r\n" in real or b">4\r\n$8\r\npmessage\r\n" in real
    assert _own_events(ports["shardkv"], subscribe, pipeline) == real


def _config_set_in_a_pipeline(port: int, pipeline: list[tuple]) -> tuple[bytes, list[tuple]]:
    """Send ``pipeline`` in one write and return its replies and the
    ``__keyspace@0__:*`` messages a subscriber got (the setting starts "")."""
    c = redis.Redis(port=port, protocol=2, socket_timeout=30)
    c.flushall()
    c.config_set("notify-keyspace-events", "")
    sub = c.pubsub()
    try:
        sub.psubscribe("__keyspace@0__:*")
        sub.subscribe(END)
        for _ in range(2):
            assert sub.get_message(timeout=10)["type"] in ("psubscribe", "subscribe")
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"".join(encode_command(*command) for command in pipeline))
            replies = b""
            while replies.count(b"\r\n") < len(pipeline):
                chunk = s.recv(65536)
                assert chunk, replies
                replies += chunk
        return replies, _until_end(c, sub)
    finally:
        c.config_set("notify-keyspace-events", "")
        sub.close()
        c.close()


def test_config_set_in_a_pipeline_holds_for_the_commands_after_it(ports):
    # The setting turned on between writes of one pipelined write: the
    # commands after CONFIG SET notify, none before it.
    pipeline = [("SET", "k0", "a"), ("CONFIG", "SET", "notify-keyspace-events", "KEA")]
    pipeline += [("SET", f"k{i}", "b") for i in range(1, 9)] + [("INCR", "n"), ("GET", "k1")]
    replies, expected = _config_set_in_a_pipeline(ports["redis"], pipeline)
    assert len(expected) == 9
    got = _config_set_in_a_pipeline(ports["shardkv"], pipeline)
    # (Another client hears the keys' shards in the order they answer.)
    assert (got[0], sorted(got[1])) == (replies, sorted(expected))


# -- the setting changed among writes: decided as each write runs ---------------------

# Keys on each of the 4 shards (placement.on_shards): the cross-shard
# commands below span them.
K0, K1, K2, K3 = on_shards(0, 1, 2, 3)
S0, S1 = on_shards(0, 1, prefix="s")

WRITES = [
    ("SET", K0, "a"),
    ("SET", K1, "b"),
    ("EXPIRE", K0, "100"),
    ("DEL", K1),
    ("MSET", K0, "1", K1, "2", K2, "3"),
    ("RENAME", K0, K3),
    ("SADD", S0, "m"),
    ("SMOVE", S0, S1, "m"),
    ("RPUSH", "list", "x", "y"),
    ("HSET", "hash", "f", "v"),
    ("MULTI",),
    ("INCR", "n"),
    ("LPUSH", "list", "z"),
    ("EXEC",),
    ("EVAL", "redis.call('SET', KEYS[1], 'v'); redis.call('EXPIRE', KEYS[1], 50); return 1", "1", "e"),
]
# The same commands on other keys (so a subscriber can tell them apart).
WRITES_AFTER = [tuple(a.replace("k", "j", 1) if a in (K0, K1, K2, K3) else a for a in w) for w in WRITES]


def _heard(c: redis.Redis, sub) -> tuple[list, dict]:
    """The messages up to the end marker, as ``(sorted, {keyspace channel:
    its messages in order})``: another client hears the shards in the
    order they answer, but each key's events in the order they happened."""
    got = _until_end(c, sub)
    by_key: dict = {}
    for channel, data in got:
        if channel.startswith(b"__keyspace@"):
            by_key.setdefault(channel, []).append(data)
    return sorted(got), by_key


def _changed_in_a_pipeline(port: int, flags: str, pipeline: list[tuple], tracking: bool = False) -> tuple:
    """Start with ``flags``, send ``pipeline`` in one write, and return its
    replies and what a subscriber of every keyspace channel heard.  With
    ``tracking``, a client tracks keys meanwhile (BCAST), so the shards
    note every write's events whatever notify-keyspace-events says."""
    c = redis.Redis(port=port, protocol=2, socket_timeout=30)
    c.flushall()
    c.config_set("notify-keyspace-events", flags)
    sub = c.pubsub()
    tracker = RespClient(port, protocol=3, timeout=30)
    try:
        if tracking:
            tracker.command("CLIENT", "TRACKING", "on", "BCAST")
        sub.psubscribe("__keyspace@0__:*", "__keyevent@0__:*")
        sub.subscribe(END)
        for _ in range(3):
            assert sub.get_message(timeout=10)["type"] in ("psubscribe", "subscribe")
        with RespClient(port, timeout=30) as w:
            w.sock.sendall(b"".join(encode_command(*command) for command in pipeline))
            replies = [w.read() for _ in pipeline]
        return replies, _heard(c, sub)
    finally:
        c.config_set("notify-keyspace-events", "")
        tracker.close()
        sub.close()
        c.close()


def _same_when_changed(ports, flags: str, pipeline: list[tuple], tracking: bool = False) -> tuple:
    expected = _changed_in_a_pipeline(ports["redis"], flags, pipeline, tracking)
    got = _changed_in_a_pipeline(ports["shardkv"], flags, pipeline, tracking)
    assert got == expected
    return expected


def test_turned_off_in_a_pipeline_the_writes_before_it_notify(ports):
    # Redis decides as each command runs: the writes before CONFIG SET
    # notify, though their events reach the acceptor after it ran.
    pipeline = [*WRITES, ("CONFIG", "SET", "notify-keyspace-events", ""), *WRITES_AFTER, ("PING",)]
    _, (heard, _) = _same_when_changed(ports, "KEA", pipeline)
    assert (b"__keyevent@0__:rename_to", K3.encode()) in heard
    assert not any(data == b"j" + K0[1:].encode() for _, data in heard)


@pytest.mark.parametrize("tracking", [False, True], ids=["alone", "tracking"])
def test_turned_on_in_a_pipeline_the_writes_before_it_do_not_notify(ports, tracking):
    # With a tracking client the shards note every write whatever the
    # setting: those before CONFIG SET must still not notify.
    pipeline = [*WRITES, ("CONFIG", "SET", "notify-keyspace-events", "KEA"), *WRITES_AFTER, ("PING",)]
    _, (heard, _) = _same_when_changed(ports, "", pipeline, tracking)
    assert heard and not any(data == K3.encode() for _, data in heard)


@pytest.mark.parametrize(
    ("before", "after"),
    [("KEA", "Kg$"), ("Kg$", "KEA"), ("El", "Kh"), ("Kx", "Esg"), ("KEA", "Em")],
)
@pytest.mark.parametrize("tracking", [False, True], ids=["alone", "tracking"])
def test_classes_changed_in_a_pipeline_from_the_next_command(ports, before, after, tracking):
    pipeline = [*WRITES, ("GET", "missing"), ("CONFIG", "SET", "notify-keyspace-events", after)]
    pipeline += [*WRITES_AFTER, ("GET", "missing2"), ("PING",)]
    _same_when_changed(ports, before, pipeline, tracking)


def test_changed_inside_multi_from_the_next_command(ports):
    # Writes on one shard: EXEC runs them one by one, and the setting
    # changes between them.
    k, j = "{%s}k" % K0, "{%s}j" % K0
    writes = [("SET", k, "a"), ("EXPIRE", k, "100"), ("RPUSH", k + "l", "x"), ("HSET", k + "h", "f", "v")]
    writes += [("INCR", k + "n"), ("DEL", k)]
    pipeline = [("MULTI",), *writes, ("CONFIG", "SET", "notify-keyspace-events", "")]
    pipeline += [w[:1] + (w[1].replace(k, j),) + w[2:] for w in writes]
    pipeline += [("CONFIG", "SET", "notify-keyspace-events", "Kl"), ("RPUSH", j + "l2", "x"), ("SET", j, "v")]
    pipeline += [("EXEC",), ("PING",)]
    _, (heard, _) = _same_when_changed(ports, "KEA", pipeline)
    assert len(heard) == 13


@pytest.mark.parametrize("watch", [False, True], ids=["across-shards", "watched"])
def test_changed_inside_an_atomic_exec_from_the_next_command(ports, watch):
    # Writes on several shards (or a WATCH): EXEC runs them as one
    # operation, the CONFIG SETs in their places among them for the events.
    pipeline = [("WATCH", "w")] if watch else []
    pipeline += [("MULTI",), *WRITES[:10], ("CONFIG", "SET", "notify-keyspace-events", "")]
    pipeline += [*WRITES_AFTER[:10], ("CONFIG", "SET", "notify-keyspace-events", "Kl"), ("RPUSH", "l2", "x")]
    pipeline += [("CONFIG", "SET", "notify-keyspace-events", "bad"), ("SET", "s", "v"), ("EXEC",)]
    pipeline += [("RPUSH", "l3", "x"), ("SET", "s", "v"), ("PING",)]
    _, (heard, _) = _same_when_changed(ports, "KEA", pipeline)
    assert (b"__keyspace@0__:l3", b"rpush") in heard


def _turned_off_by_another_client(port: int) -> tuple:
    """A script runs writes on one shard while another client turns
    notifications off: Redis runs the CONFIG SET after the script, so the
    script's events and those of the writes before it are heard."""
    c = redis.Redis(port=port, protocol=2, socket_timeout=30)
    c.flushall()
    c.config_set("notify-keyspace-events", "KEA")
    sub = c.pubsub()
    busy = (
        "redis.call('SET', KEYS[1], 'a'); local t = redis.call('TIME'); local start = t[1] * 1000000 + t[2]"
        " repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > 300000"
        " redis.call('DEL', KEYS[1]); return 1"
    )
    try:
        sub.psubscribe("__keyspace@0__:*", "__keyevent@0__:*")
        sub.subscribe(END)
        for _ in range(3):
            assert sub.get_message(timeout=10)["type"] in ("psubscribe", "subscribe")
        with RespClient(port, timeout=30) as w, RespClient(port, timeout=30) as other:
            writes = [("SET", K0, "v"), ("LPUSH", "{%s}l" % K0, "x"), ("EVAL", busy, "1", K0)]
            w.sock.sendall(b"".join(encode_command(*command) for command in writes))
            time.sleep(0.1)  # (the script runs for 0.3 s: it is still running)
            other.sock.sendall(
                encode_command("CONFIG", "SET", "notify-keyspace-events", "") + encode_command("SET", K1, "v")
            )
            replies = [w.read() for _ in writes] + [other.read(), other.read()]
        return replies, _heard(c, sub)
    finally:
        c.config_set("notify-keyspace-events", "")
        sub.close()
        c.close()


def test_turned_off_by_another_client_while_writes_run(ports):
    expected = _turned_off_by_another_client(ports["redis"])
    assert len(expected[1][0]) == 8
    assert _turned_off_by_another_client(ports["shardkv"]) == expected


def _served_after_an_atomic_exec(port: int, flags: str, pipeline: list[tuple], lists: list[str]) -> tuple:
    """Clients blocked in BLPOP on each of ``lists``, then ``pipeline``
    (an atomic EXEC that pushes to them): its replies, the popped
    elements, and what a subscriber of every keyspace channel heard."""
    c = redis.Redis(port=port, protocol=2, socket_timeout=30)
    c.flushall()
    c.config_set("notify-keyspace-events", flags)
    sub = c.pubsub()
    blocked = [RespClient(port, timeout=30) for _ in lists]
    try:
        sub.psubscribe("__keyspace@0__:*", "__keyevent@0__:*")
        sub.subscribe(END)
        for _ in range(3):
            assert sub.get_message(timeout=10)["type"] in ("psubscribe", "subscribe")
        for b, name in zip(blocked, lists, strict=True):
            b.sock.sendall(encode_command("BLPOP", name, "0"))
        deadline = time.monotonic() + 20
        while c.info("clients")["blocked_clients"] < len(lists):
            assert time.monotonic() < deadline, "the BLPOPs never blocked"
            time.sleep(0.02)
        with RespClient(port, timeout=30) as w:
            w.sock.sendall(b"".join(encode_command(*command) for command in pipeline))
            replies = [w.read() for _ in pipeline]
        popped = [b.read() for b in blocked]
        return replies, popped, _heard(c, sub)
    finally:
        c.config_set("notify-keyspace-events", "")
        for b in blocked:
            b.close()
        sub.close()
        c.close()


@pytest.mark.parametrize(("before", "after"), [("KEA", ""), ("", "KEA"), ("Kl", "Kg$")])
def test_changed_inside_an_atomic_exec_the_clients_it_serves_notify_as_it_says(ports, before, after):
    # Redis serves the clients blocked on the lists EXEC pushed to after
    # EXEC, so their pops notify as its CONFIG SET left the setting, on
    # the operation's executor and on the shards it prepared alike.
    lists = [f"{{{k}}}l" for k in (K0, K1, K2, K3)]
    pipeline = [("WATCH", "w"), ("MULTI",), *[("RPUSH", name, "x") for name in lists]]
    pipeline += [("CONFIG", "SET", "notify-keyspace-events", after), ("SET", "s", "v"), ("EXEC",), ("PING",)]
    expected = _served_after_an_atomic_exec(ports["redis"], before, pipeline, lists)
    assert expected[2][0]
    assert _served_after_an_atomic_exec(ports["shardkv"], before, pipeline, lists) == expected


# -- a pop that a transaction's push served: heard after the push -----------------

# Two shards (redis_and_shardkv_k12's): the list on one, the other key on the other.
LIST, OTHER = key_on(0, "l", shards=2), key_on(1, "o", shards=2)
PUSHES = {
    "in-order": [("MULTI",), ("RPUSH", LIST, "x"), ("EXEC",)],
    "across-shards": [("MULTI",), ("RPUSH", LIST, "x"), ("SET", OTHER, "v"), ("EXEC",)],
    "watched": [("WATCH", "w"), ("MULTI",), ("RPUSH", LIST, "x"), ("EXEC",)],
}
# Each placement this many times: the served pop's events passed the
# transaction's in about half the tries of the placements where they did
# (the subscriber and the blocked client on one acceptor, the writer on the other).
PUSH_ROUNDS = 8


def _pushed_then_popped(
    port: int,
    k: int,
    placement: tuple[int, int, int],
    pipeline: list[tuple],
    flags: str = "KEA",
    events: int = 3,
) -> list:
    """A client blocked in BLPOP on ``LIST``, then ``pipeline`` (a
    transaction that pushes to it) from another client: the list's events
    a subscriber heard, in order, notify-keyspace-events ``flags`` before,
    ``events`` of them known to come.  ``placement``: the acceptors of the
    subscriber, the blocked client and the writer."""
    at_sub, at_blocked, at_writer = placement
    with client_on(port, 0, k=k, timeout=30) as c:
        c.command("FLUSHALL")
        c.command("CONFIG", "SET", "notify-keyspace-events", flags)
    try:
        with (
            client_on(port, at_sub, k=k, timeout=30) as sub,
            client_on(port, at_blocked, k=k, timeout=30) as blocked,
            client_on(port, at_writer, k=k, timeout=30) as w,
        ):
            sub.command("PSUBSCRIBE", f"__keyspace@0__:{LIST}")
            sub.command("SUBSCRIBE", END)
            blocked.send("BLPOP", LIST, "0")
            deadline = time.monotonic() + 20
            while b"blocked_clients:1\r" not in w.command("INFO", "clients"):  # type: ignore[operator]
                assert time.monotonic() < deadline, "the BLPOP never blocked"
                time.sleep(0.01)
            w.sock.sendall(b"".join(encode_command(*command) for command in pipeline))
            for _ in pipeline:
                w.read()
            assert blocked.read_reply() == [LIST.encode(), b"x"]
            # The ``events`` known to come (rpush, lpop, del), then whatever
            # came before an end marker.  (Not the marker alone: at K=2 the
            # popped client's reply may pass its pop's events on the other
            # acceptor.)
            heard = [sub.read_reply()[-1] for _ in range(events)]  # type: ignore[index]
            w.command("PUBLISH", END, "x")
            while (message := sub.read_reply())[1] != END.encode():  # type: ignore[index]
                heard.append(message[-1])  # type: ignore[index]
            return heard
    finally:
        with client_on(port, 0, k=k, timeout=30) as c:
            c.command("CONFIG", "SET", "notify-keyspace-events", "")


@pytest.mark.parametrize("case", sorted(PUSHES))
def test_a_pop_served_by_a_transactions_push_is_heard_after_it(redis_and_shardkv_k12, case):
    # Redis serves the client blocked on the list after EXEC: its push's
    # event, then the pop's.  At K=2 an atomic EXEC's events reach the
    # other acceptor through its own (relayed on the bus) and the pop's
    # straight from the shard: they came first there until the shards
    # resumed only once the relayed events were out.
    real, ours, k = redis_and_shardkv_k12
    expected = _pushed_then_popped(real, 1, (0, 0, 0), PUSHES[case])
    assert expected == [b"rpush", b"lpop", b"del"]
    for placement in itertools.product(range(k), repeat=3):
        for _ in range(PUSH_ROUNDS):
            assert (placement, _pushed_then_popped(ours, k, placement, PUSHES[case])) == (placement, expected)


# A CONFIG SET of notify-keyspace-events inside the transaction: (before,
# pipeline).  Redis notes the push as the setting is when it runs, and
# serves the pop after EXEC, as the EXEC left it.
SET_INSIDE = {
    "on-before-push": ("", [("MULTI",), ("CONFIG", "SET", "notify-keyspace-events", "KEA"),
                            ("RPUSH", LIST, "x"), ("SET", OTHER, "v"), ("EXEC",)]),
    "on-after-push": ("", [("MULTI",), ("RPUSH", LIST, "x"), ("SET", OTHER, "v"),
                           ("CONFIG", "SET", "notify-keyspace-events", "KEA"), ("EXEC",)]),
    "off-after-push": ("KEA", [("MULTI",), ("RPUSH", LIST, "x"),
                               ("CONFIG", "SET", "notify-keyspace-events", ""), ("SET", OTHER, "v"), ("EXEC",)]),
    "one-shard-on-after-push": ("", [("MULTI",), ("RPUSH", LIST, "x"),
                                     ("CONFIG", "SET", "notify-keyspace-events", "KEA"), ("EXEC",)]),
    "one-shard-off-after-push": ("KEA", [("MULTI",), ("RPUSH", LIST, "x"),
                                         ("CONFIG", "SET", "notify-keyspace-events", ""), ("EXEC",)]),
    "keyspace-only": ("KEA", [("WATCH", "w"), ("MULTI",), ("RPUSH", LIST, "x"), ("SET", OTHER, "v"),
                              ("CONFIG", "SET", "notify-keyspace-events", "Kg"), ("EXEC",)]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SET_INSIDE))
def test_a_config_set_inside_the_transaction_orders_and_filters_its_pops_events(redis_and_shardkv_k12, case):
    # The Decide that carries the EXEC's setting waits for its relayed
    # events at K=2 (8cb847b): the pop it serves notifies as the EXEC left
    # the setting, after the push's event if the push notified.
    real, ours, k = redis_and_shardkv_k12
    flags, pipeline = SET_INSIDE[case]
    expected = _pushed_then_popped(real, 1, (0, 0, 0), pipeline, flags, events=0)
    for placement in itertools.product(range(k), repeat=3):
        for _ in range(2):
            got = _pushed_then_popped(ours, k, placement, pipeline, flags, len(expected))
            assert (placement, got) == (placement, expected)
