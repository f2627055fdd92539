"""The 16 databases (SELECT), compared with a real redis-server.

Each test taking ``r`` or ``compare`` runs against both servers; shardkv
runs 4 shards, so the keys of one database spread over every shard and
the commands that span shards (MSET, RENAME, COPY ... DB, MULTI/EXEC with
WATCH, SWAPDB, FLUSHDB) are exercised in databases other than 0.
"""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest
import redis

from tests.support.placement import key_on
from tests.support.rawsocket import both, read_until_quiet
from tests.support.servers import start_shardkv


def _port(r: redis.Redis) -> int:
    return r.connection_pool.connection_kwargs["port"]


def _db(r: redis.Redis, db: int) -> redis.Redis:
    return redis.Redis(port=_port(r), db=db, socket_timeout=30)


def test_each_database_keeps_its_keys(r):
    d1, d2 = _db(r, 1), _db(r, 2)
    try:
        r.mset({"a": "0", "b": "0", "c": "0"})
        d1.mset({"a": "1", "x": "1"})
        assert r.mget("a", "b", "x") == [b"0", b"0", None]
        assert d1.mget("a", "b", "x") == [b"1", None, b"1"]
        assert (r.dbsize(), d1.dbsize(), d2.dbsize()) == (3, 2, 0)
        assert sorted(d1.keys("*")) == [b"a", b"x"]
        assert sorted(d1.scan_iter(count=3)) == [b"a", b"x"]
        assert d1.randomkey() in (b"a", b"x")
        assert d2.randomkey() is None
        assert d1.exists("a", "b", "x") == 2
        assert d1.delete("a", "b") == 1
        assert r.get("a") == b"0"
        d1.flushdb()
        assert (r.dbsize(), d1.dbsize()) == (3, 0)
        d2.set("k", "v")
        r.flushall()
        assert (r.dbsize(), d2.dbsize()) == (0, 0)
    finally:
        d1.close()
        d2.close()


def test_select_errors_and_state(compare):
    compare("SELECT", "3")
    compare("SET", "k", "3")
    for bad in ("16", "-1", "x", "1.0", "2147483648", ""):
        compare("SELECT", bad)  # the database stays 3
    compare("GET", "k")
    compare("SELECT", "0")
    compare("GET", "k")


def test_move(compare):
    compare("SET", "k", "v", "PX", "100000")
    compare("RPUSH", "l", "a", "b")
    compare("MOVE", "k", "1")
    compare("MOVE", "k", "1")  # gone from here
    compare("MOVE", "missing", "1")
    compare("MOVE", "l", "0")  # same database
    for bad in ("16", "-1", "x", "4294967296"):
        compare("MOVE", "l", bad)
    compare("EXISTS", "k")
    compare("SELECT", "1")
    compare("GET", "k")
    assert 0 < compare.ours.pttl("k") <= 100000  # the deadline moves with it
    compare("SET", "l", "here")
    compare("SELECT", "0")
    compare("MOVE", "l", "1")  # the target has one: nothing moves
    compare("LRANGE", "l", "0", "-1")


def test_swapdb(compare):
    compare("MSET", "a", "0", "b", "0")
    compare("SELECT", "5")
    compare("MSET", "a", "5", "z", "5")
    compare("SWAPDB", "0", "5")
    compare("MGET", "a", "b", "z")
    compare("DBSIZE")
    compare("SELECT", "0")
    compare("MGET", "a", "b", "z")
    compare("SWAPDB", "5", "9")  # with an empty one
    compare("SELECT", "9")
    compare("MGET", "a", "b", "z")
    compare("SELECT", "5")
    compare("DBSIZE")


def test_copy_to_another_database(compare):
    # 'src' and each destination: some on the same shard, some on others.
    compare("SET", "src", "v", "PX", "100000")
    compare("HSET", "h", "f", "1")
    for dst in ("d1", "d2", "d3", "d4", "d5", "d6", "src"):
        compare("COPY", "src", dst, "DB", "2")
        compare("COPY", "src", dst, "DB", "2")  # exists there now
    compare("COPY", "h", "d1", "DB", "2", "REPLACE")
    compare("COPY", "src", "src", "DB", "0")  # the same object
    compare("COPY", "src", "d1", "DB", "0")
    compare("SELECT", "2")
    compare("MGET", "d1", "d2", "d3", "d4", "d5", "d6", "src")
    compare("HGETALL", "d1")
    compare("TYPE", "d2")
    assert 0 < compare.ours.pttl("d3") <= 100000
    compare("DBSIZE")
    compare("SELECT", "0")
    compare("DBSIZE")


def test_commands_across_shards_in_another_database(compare):
    compare("SELECT", "7")
    keys = [f"key{i}" for i in range(12)]
    compare("MSET", *[x for k in keys for x in (k, k)])
    compare("MGET", *keys)
    compare("RENAME", "key0", "key1")
    compare("SUNIONSTORE", "u", "key2")
    compare("SADD", "s1", "a", "b")
    compare("SMOVE", "s1", "s2", "a")
    compare("SMEMBERS", "s2")
    compare("MSETNX", "key3", "x", "new", "y")
    compare("DEL", *keys)
    compare("DBSIZE")
    compare("SELECT", "0")
    compare("DBSIZE")


def test_multi_with_select_inside(compare):
    compare("MULTI")
    compare("SET", "k", "0")
    compare("SELECT", "1")
    compare("SET", "k", "1")
    compare("INCR", "k")
    compare("EXEC")
    compare("GET", "k")  # the client stays in database 1
    compare("SELECT", "0")
    compare("GET", "k")
    compare("MULTI")
    compare("SELECT", "99")
    compare("SET", "k", "x")
    real, ours = (c.execute_command("EXEC") for c in (compare.real, compare.ours))
    assert [str(x) for x in ours] == [str(x) for x in real] == ["DB index is out of range", "b'OK'"]
    compare("GET", "k")


def test_multi_with_select_inside_across_shards(compare):
    keys = [f"k{i}" for i in range(8)]  # over every shard
    compare("MULTI")
    compare("MSET", *[x for k in keys for x in (k, "db0")])
    compare("SELECT", "3")
    for k in keys:
        compare("SET", k, "db3")
    compare("EXEC")
    compare("MGET", *keys)
    compare("SELECT", "0")
    compare("MGET", *keys)


def test_flushall_in_a_transaction_empties_every_database(r):
    d1 = _db(r, 1)
    try:
        d1.mset({f"x{i}": 1 for i in range(20)})  # on every shard
        with r.pipeline(transaction=True) as p:
            p.mset({f"k{i}": 1 for i in range(10)})
            p.flushall()
            p.set("after", "1")
            p.execute()
        assert (r.dbsize(), d1.dbsize()) == (1, 0)
    finally:
        d1.close()


KEYS = [f"k{i}" for i in range(8)]  # over every shard


def _exec(compare) -> None:
    """EXEC on both servers: the same replies (errors compared by text)."""
    real, ours = (compare._run(c, ("EXEC",)) for c in (compare.real, compare.ours))
    assert [str(x) for x in ours] == [str(x) for x in real]


def test_select_in_a_watched_transaction(compare):
    """Redis runs a SELECT inside a WATCHed EXEC like any other: the
    commands after it run in the new database, which the client keeps."""
    compare("SET", "w", "0")
    compare("WATCH", "w", "k0")
    compare("MULTI")
    compare("MSET", *[x for k in KEYS for x in (k, "db0")])
    compare("SELECT", "3")
    for k in KEYS:
        compare("SET", k, "db3")
    compare("APPEND", "k1", "+")
    compare("SELECT", "99")  # an error, and the database stays 3
    compare("RENAME", "k2", "renamed")
    compare("GET", "w")  # database 3's: none
    _exec(compare)
    compare("MGET", "renamed", *KEYS)  # the client is in database 3 now
    compare("DBSIZE")
    compare("SELECT", "0")
    compare("MGET", "renamed", *KEYS)
    compare("WATCH", "w")
    compare("MULTI")
    compare("SELECT", "5")
    compare("SELECT", "0")  # and back: nothing changes
    compare("GET", "k3")
    compare("EXEC")
    compare("GET", "k3")


def test_select_in_a_transaction_with_a_blocking_command(compare):
    compare("MULTI")
    compare("SELECT", "4")
    compare("RPUSH", "q", "a", "b")
    compare("BLPOP", "q", "0")  # in EXEC: never blocks
    compare("LPUSH", "q2", "c")
    compare("BLMOVE", "q2", "q3", "LEFT", "RIGHT", "0")
    compare("BLPOP", "empty", "0")
    compare("EXEC")
    compare("LRANGE", "q", "0", "-1")
    compare("LRANGE", "q3", "0", "-1")
    compare("SELECT", "0")
    compare("DBSIZE")


def _resp(*args: str) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
    return out


def test_commands_pipelined_after_such_an_exec_run_in_its_database(ports):
    """The commands a client sent right behind the EXEC run in the database
    the transaction selected: shardkv holds them until it has run."""
    script = [
        ("FLUSHALL",),
        ("SET", "w", "0"),
        ("WATCH", "w"),
        ("MULTI",),
        *[("SET", k, "0") for k in KEYS],
        ("SELECT", "2"),
        *[("SET", k, "2") for k in KEYS],
        ("EXEC",),
        *[("GET", k) for k in KEYS],
        ("SELECT", "0"),
        ("MGET", *KEYS),
        ("DBSIZE",),
    ]
    data = b"".join(_resp(*c) for c in script)
    real, ours = both(ports, data, idle=1.0)
    assert ours == real
    assert real[0].count(b"$1\r\n2\r\n") == len(KEYS)


def test_single_key_commands_pipelined_in_another_database(ports):
    """GET, SET and INCR pipelined in database 5, then 0, then 5 again, in
    one read: each runs in its client's database (only database 0's carry
    their key's slot to the worker, see wire.SLOTTED)."""
    script = [
        ("FLUSHALL",),
        ("SELECT", "5"),
        *[("SET", k, "5") for k in KEYS],
        *[("INCR", k) for k in KEYS],
        *[("GET", k) for k in KEYS],
        ("GET", "missing"),
        ("SELECT", "0"),
        *[("GET", k) for k in KEYS],
        *[("INCR", k) for k in KEYS],
        ("SELECT", "5"),
        *[("INCR", k) for k in KEYS],
        ("MGET", *KEYS),
        ("DBSIZE",),
    ]
    data = b"".join(_resp(*c) for c in script)
    real, ours = both(ports, data, idle=1.0)
    assert ours == real
    assert real[0].count(b":7\r\n") == len(KEYS)


def _other(c: redis.Redis) -> redis.Redis:
    return redis.Redis(port=c.connection_pool.connection_kwargs["port"], socket_timeout=30)


def test_an_aborted_transaction_keeps_the_database(compare):
    others = [_other(compare.real), _other(compare.ours)]
    try:
        compare("SET", "w", "0")
        compare("WATCH", "w")
        for o in others:
            o.set("w", "changed")
        compare("MULTI")
        compare("SELECT", "1")
        compare("SET", "a", "x")
        compare("EXEC")  # null: nothing ran, the SELECT neither
        compare("SET", "b", "here")
        compare("SELECT", "1")
        compare("EXISTS", "a", "b")
        compare("SELECT", "0")
        compare("EXISTS", "a", "b")
    finally:
        for o in others:
            o.close()


def test_watch_in_several_databases(compare):
    """WATCH remembers each key's database: a change to the key in either
    database aborts the EXEC, a change to the same name in a third does not."""
    others = [_other(compare.real), _other(compare.ours)]
    try:
        for touched, db in (("a", 2), ("b", 1), ("a", 0)):
            compare("SELECT", "0")
            compare("WATCH", "a")
            compare("SELECT", "1")
            compare("WATCH", "b")
            for o in others:
                o.execute_command("SELECT", str(db))
                o.set(touched, "x")
            compare("MULTI")
            compare("SET", "c", "1")
            compare("EXEC")  # a in 0 or b in 1: null; a in 2: runs
            compare("GET", "c")
            compare("DEL", "c")
    finally:
        for o in others:
            o.close()


def test_flushall_in_a_watched_transaction_empties_every_database(r):
    dbs = [_db(r, 1), _db(r, 7)]
    try:
        for d in dbs:
            d.mset({f"x{i}": 1 for i in range(20)})  # on every shard
        r.set("w", "0")
        with r.pipeline(transaction=True) as p:
            p.watch("w")
            p.multi()
            p.mset({k: 1 for k in KEYS})
            p.flushall()
            p.set("after", "1")
            p.execute_command("SELECT", "7")
            p.set("in7", "1")
            assert p.execute() == [True, True, True, True, True]
        assert [r.dbsize()] + [d.dbsize() for d in dbs] == [1, 0, 1]
        assert dbs[1].get("in7") == b"1"
    finally:
        for d in dbs:
            d.close()


def test_move_and_copy_in_a_watched_transaction(compare):
    compare("SET", "w", "0")
    compare("MSET", *[x for k in KEYS for x in (k, k)])
    compare("SELECT", "1")
    compare("SET", "k3", "already in 1")
    compare("SELECT", "0")
    compare("WATCH", "w")
    compare("MULTI")
    for k in KEYS[:4]:
        compare("MOVE", k, "1")
    compare("COPY", "k5", "copied", "DB", "2")
    compare("COPY", "k6", "k7", "DB", "2")
    compare("SELECT", "2")
    compare("MOVE", "copied", "0")
    compare("EXEC")
    compare("KEYS", "*", unordered=True)
    for db in ("0", "1"):
        compare("SELECT", db)
        compare("KEYS", "*", unordered=True)
        compare("MGET", "copied", *KEYS)


def test_watch_is_per_database(r):
    d1 = _db(r, 1)
    try:
        r.set("k", "0")
        with r.pipeline() as p:
            p.watch("k")
            d1.set("k", "other database")
            p.multi()
            p.set("k", "1")
            assert p.execute() == [True]
        with d1.pipeline() as p:
            p.watch("k")
            d1.set("k", "changed")
            p.multi()
            p.set("k", "2")
            with pytest.raises(redis.WatchError):
                p.execute()
        assert (r.get("k"), d1.get("k")) == (b"1", b"changed")
    finally:
        d1.close()


def test_reset_hello_and_auth_keep_or_drop_the_database(r):
    r.execute_command("SELECT", "4")
    r.set("k", "4")
    r.execute_command("HELLO", "3")
    assert r.get("k") == b"4"
    r.execute_command("HELLO", "2")
    assert r.get("k") == b"4"
    info = r.execute_command("CLIENT", "INFO")
    info = info.decode() if isinstance(info, bytes) else info
    assert " db=4 " in info
    assert [c["db"] for c in r.client_list() if c["id"] == str(r.client_id())] == ["4"]
    assert r.execute_command("RESET") in (b"RESET", "RESET")
    assert r.get("k") is None
    r.execute_command("SELECT", "4")
    r.flushdb()


@pytest.mark.slow
def test_auth_keeps_the_database():
    server = start_shardkv(shards=2)
    try:
        redis.Redis(port=server.port).config_set("requirepass", "pw")
        c = redis.Redis(port=server.port, password="pw", db=3)
        c.set("k", "3")
        c.execute_command("AUTH", "pw")
        assert c.get("k") == b"3"
        c.execute_command("HELLO", "3", "AUTH", "default", "pw")
        assert c.get("k") == b"3"
        assert redis.Redis(port=server.port, password="pw").get("k") is None
    finally:
        server.stop()


def test_info_keyspace(r):
    d3 = _db(r, 3)
    try:
        r.mset({f"k{i}": "v" for i in range(10)})
        d3.mset({f"k{i}": "v" for i in range(5)})
        d3.expire("k0", 1000)
        d3.expire("k1", 1000)
        space = r.info("keyspace")
        assert sorted(space) == ["db0", "db3"]
        assert space["db0"]["keys"] == 10 and space["db0"]["expires"] == 0
        assert space["db3"]["keys"] == 5 and space["db3"]["expires"] == 2
        assert 0 <= space["db3"]["avg_ttl"] <= 1_000_000  # Redis estimates it as it samples
        r.flushdb()
        assert sorted(r.info("keyspace")) == ["db3"]
    finally:
        d3.close()


def test_expiry_in_another_database(r):
    d2 = _db(r, 2)
    try:
        d2.set("lazy", "v", px=50)
        for i in range(20):
            d2.set(f"active{i}", "v", px=50)
        r.set("lazy", "db0")
        time.sleep(0.2)
        assert d2.get("lazy") is None
        assert r.get("lazy") == b"db0"
        deadline = time.monotonic() + 10
        while d2.dbsize() and time.monotonic() < deadline:  # the active cycle
            time.sleep(0.1)
        assert d2.dbsize() == 0
    finally:
        d2.close()


def _blpop_in_thread(c: redis.Redis, key: str, out: list) -> threading.Thread:
    t = threading.Thread(target=lambda: out.append(c.blpop([key], timeout=10)))
    t.start()
    time.sleep(0.3)
    return t


def test_blocking_pop_is_woken_by_its_own_database(r):
    waiter, d1 = _db(r, 1), _db(r, 1)
    try:
        out: list = []
        t = _blpop_in_thread(waiter, "q", out)
        r.rpush("q", "db0")  # another database: does not serve it
        time.sleep(0.3)
        assert out == []
        d1.rpush("q", "db1")
        t.join(10)
        assert out == [(b"q", b"db1")] or out == [[b"q", b"db1"]]
        assert r.lrange("q", 0, -1) == [b"db0"]
    finally:
        waiter.close()
        d1.close()


def test_swapdb_wakes_a_blocked_client(r):
    waiter, d6 = _db(r, 5), _db(r, 6)
    try:
        d6.rpush("q", "from6")
        out: list = []
        t = _blpop_in_thread(waiter, "q", out)
        r.swapdb(5, 6)
        t.join(10)
        assert out in ([(b"q", b"from6")], [[b"q", b"from6"]])
        assert d6.exists("q") == 0
    finally:
        waiter.close()
        d6.close()


def test_monitor_shows_the_database(r):
    port = _port(r)
    m = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        m.sendall(b"*1\r\n$7\r\nMONITOR\r\n")
        assert read_until_quiet(m, 0.3, first=20)[0] == b"+OK\r\n"
        c = redis.Redis(port=port)
        c.execute_command("SELECT", "9")
        c.set("k", "v")
        c.execute_command("SELECT", "0")
        c.close()
        data = read_until_quiet(m, 0.5, until=b'"SELECT" "0"')[0].decode()
        shown = re.findall(r"\[(\d+) [^\]]+\] ([^\r]*)", data)
        assert [s for s in shown if "SELECT" in s[1] or '"set"' in s[1].lower()] == [
            ("9", '"SELECT" "9"'),
            ("9", '"SET" "k" "v"'),
            ("0", '"SELECT" "0"'),
        ]
    finally:
        m.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags",
    [("--appendonly", "yes", "--appendfsync", "always"), ("--appendonly", "no", "--save", "3600 1")],
    ids=["aof", "snapshot"],
)
def test_a_client_of_database_1_keeps_its_data_across_a_restart(tmp_path, flags):
    """The issue's end-to-end case: redis-py opened with ``/1``."""
    server = start_shardkv("--dir", str(tmp_path), *flags, shards=3)
    try:
        url = f"redis://127.0.0.1:{server.port}/1"
        app = redis.Redis.from_url(url)
        default = redis.Redis(port=server.port)
        for i in range(50):
            app.set(f"job:{i}", i)
            default.set(f"job:{i}", "db0")
        app.rpush("queue", "a", "b")
        app.expire("queue", 1000)
        app.move("job:0", 2)
        default.execute_command("SWAPDB", "2", "3")
        app.execute_command("COPY", "job:1", "copied", "DB", "4")
        with app.pipeline() as p:  # a MULTI in database 1, across shards
            p.watch("job:2")
            p.multi()
            p.incr("job:2")
            p.rename("job:3", "renamed")
            p.execute()
        app.close()
        default.close()
        server.stop()
        server = start_shardkv("--dir", str(tmp_path), *flags, shards=3)
        app = redis.Redis.from_url(f"redis://127.0.0.1:{server.port}/1")
        default = redis.Redis(port=server.port)
        assert app.dbsize() == 50  # 50 jobs and the queue, less the one moved
        assert app.get("job:7") == b"7" and default.get("job:7") == b"db0"
        assert app.get("job:2") == b"3" and app.get("renamed") == b"3" and app.get("job:3") is None
        assert app.lrange("queue", 0, -1) == [b"a", b"b"] and 0 < app.ttl("queue") <= 1000
        assert default.dbsize() == 50
        assert sorted(default.info("keyspace")) == ["db0", "db1", "db3", "db4"]
        assert redis.Redis(port=server.port, db=3).get("job:0") == b"0"
        assert redis.Redis(port=server.port, db=4).get("copied") == b"1"
        app.close()
        default.close()
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.parametrize("before, after", [(2, 3), (4, 2)])
def test_reshard_keeps_each_key_in_its_database(tmp_path, before, after):
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--save", "3600 1")
    server = start_shardkv(*flags, shards=before)
    try:
        for db in (0, 1, 15):
            c = redis.Redis(port=server.port, db=db)
            c.mset({f"k{i}": f"{db}" for i in range(40)})
            c.close()
        server.stop()
        server = start_shardkv(*flags, shards=after)
        for db in (0, 1, 15):
            c = redis.Redis(port=server.port, db=db)
            assert c.dbsize() == 40
            assert set(c.mget([f"k{i}" for i in range(40)])) == {f"{db}".encode()}
            c.close()
    finally:
        server.stop()


def _contents(port: int) -> dict:
    out = {}
    for db in range(16):
        c = redis.Redis(port=port, db=db)
        keys = sorted(c.keys("*"))
        if keys:
            out[db] = dict(zip(keys, c.mget(keys), strict=True))
        c.close()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 3])
def test_a_watched_transaction_across_databases_survives_a_restart(tmp_path, shards):
    """What the executor of such a transaction changes in other databases,
    and what it prepares on other shards there, is logged in its database."""
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--appendfsync", "always")
    server = start_shardkv(*flags, shards=shards)
    try:
        c = redis.Redis(port=server.port)
        c.mset({k: f"{k}@0" for k in KEYS})
        c.set("w", "0")
        for tx in range(2):
            with c.pipeline(transaction=True) as p:
                p.watch("w")
                p.multi()
                p.move(KEYS[tx], 1)
                p.execute_command("COPY", KEYS[4 + tx], "copy", "DB", "2", "REPLACE")
                p.execute_command("SELECT", "5")
                for k in KEYS:
                    p.set(k, f"{k}@5.{tx}")
                p.execute_command("SELECT", "0")
                p.execute()
        before = _contents(server.port)
        assert sorted(before) == [0, 1, 2, 5]
        c.close()
        server.stop()
        server = start_shardkv(*flags, shards=shards)
        assert _contents(server.port) == before
        server.stop()
        server = start_shardkv(*flags, shards=2)  # re-sharded
        assert _contents(server.port) == before
    finally:
        server.stop()


_SELECT_AND_SET = """
redis.call('SET', KEYS[1], 'caller')
redis.call('SELECT', ARGV[1])
for i, k in ipairs(KEYS) do redis.call('SET', k, 'db' .. ARGV[1]) end
return {redis.call('GET', KEYS[1]), redis.call('DBSIZE')}
"""


def test_select_inside_a_script(compare):
    """Redis 7: SELECT in a script changes the script's database only."""
    for keys in (["k"], ["{t}a", "{t}b"], KEYS):  # one shard, then several
        compare("EVAL", _SELECT_AND_SET, str(len(keys)), *keys, "5")
        compare("MGET", *keys)  # the caller is still in database 0
        compare("DBSIZE")
        compare("SELECT", "5")
        compare("MGET", *keys)
        compare("EVAL", _SELECT_AND_SET, str(len(keys)), *keys, "0")  # from database 5
        compare("MGET", *keys)
        compare("SELECT", "0")
        compare("MGET", *keys)
        compare("FLUSHALL")
    for bad in ("16", "-1", "x", "99999999999"):
        compare("EVAL", "return redis.pcall('SELECT', ARGV[1])", "0", bad)
        compare("EVAL", "redis.call('SELECT', ARGV[1])", "0", bad)
    # An undeclared key of another database, on another shard than the
    # declared one, and a command on every shard there.
    script = "redis.call('SELECT', 2); redis.call('SET', ARGV[1], 'x'); return redis.call('DBSIZE')"
    for k in KEYS:
        compare("EVAL", script, "1", "k0", k)
    compare("SELECT", "2")
    compare("KEYS", "*", unordered=True)
    compare("EVAL", "redis.call('SELECT', 0); return redis.call('MGET', unpack(ARGV))", "0", *KEYS)


def test_a_script_that_escapes_to_other_shards_runs_in_the_callers_database(compare):
    body = "return redis.call('INCR', ARGV[1]) -- %s" % time.monotonic()  # not cached yet
    sha = compare("SCRIPT", "LOAD", body)
    compare("SELECT", "3")
    for k in KEYS:  # undeclared keys, most of them on another shard than k0
        compare("EVALSHA", sha, "1", "k0", k)
        compare("EVALSHA", sha, "1", "k0", k)
    compare("MGET", *KEYS)
    compare("SELECT", "0")
    compare("MGET", *KEYS)


@pytest.mark.slow
def test_a_script_that_selects_survives_a_restart(tmp_path):
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--appendfsync", "always")
    server = start_shardkv(*flags, shards=3)
    try:
        c = redis.Redis(port=server.port)
        c.execute_command("EVAL", _SELECT_AND_SET, "1", "one", "4")
        c.execute_command("EVAL", _SELECT_AND_SET, str(len(KEYS)), *KEYS, "6")
        c.set("after", "0")  # the AOF goes back to database 0
        before = _contents(server.port)
        assert sorted(before) == [0, 4, 6]
        c.close()
        server.stop()
        server = start_shardkv(*flags, shards=3)
        assert _contents(server.port) == before
    finally:
        server.stop()


@pytest.mark.slow
def test_a_scripts_move_and_copy_in_a_transaction_across_shards_survive_a_restart(tmp_path):
    """A script of an EXEC that runs across shards moves (and copies to
    database 2) a key it does not declare, of the executor's shard: the
    target's key is logged (the executor left it out of its log: lost at
    restart)."""
    flags = ("--dir", str(tmp_path), "--appendonly", "yes", "--appendfsync", "always")
    server = start_shardkv(*flags, shards=3)
    first, other, moved = key_on(0, "a", 3), key_on(1, "b", 3), key_on(0, "c", 3)
    script = "redis.call('COPY', ARGV[1], ARGV[1], 'DB', 2) return redis.call('MOVE', ARGV[1], 1)"
    try:
        c = redis.Redis(port=server.port)
        c.set(moved, "v")
        with c.pipeline(transaction=True) as p:
            p.set(first, "x")
            p.set(other, "y")
            p.execute_command("EVAL", script, "0", moved)
            assert p.execute() == [True, True, 1]
        before = _contents(server.port)
        assert before == {
            0: {first.encode(): b"x", other.encode(): b"y"},
            1: {moved.encode(): b"v"},
            2: {moved.encode(): b"v"},
        }
        c.close()
        server.stop()
        server = start_shardkv(*flags, shards=3)
        assert _contents(server.port) == before
    finally:
        server.stop()


def test_watch_sees_move_copy_and_swapdb_of_other_clients(compare):
    """A watched key of database 1 changed by another client's MOVE, COPY
    ... DB or SWAPDB aborts the EXEC; the same commands elsewhere do not."""
    others = [_other(compare.real), _other(compare.ours)]

    def attempt(*change: str) -> None:
        compare("SELECT", "1")
        compare("WATCH", "k")
        for o in others:
            o.execute_command(*change)
        compare("MULTI")
        compare("INCR", "runs")
        compare("EXEC")

    try:
        for o in others:
            o.mset({"k": "0", "src": "s", "other": "o"})
        attempt("MOVE", "k", "1")  # arrives in database 1: aborts
        attempt("MOVE", "other", "2")  # elsewhere: runs
        attempt("COPY", "src", "k", "DB", "1", "REPLACE")  # aborts
        attempt("COPY", "src", "k", "DB", "3")  # runs
        attempt("SWAPDB", "1", "5")  # k leaves database 1: aborts
        attempt("SWAPDB", "0", "2")  # runs
        attempt("SWAPDB", "5", "1")  # k comes back: aborts
        for k in ("src", "k"):  # keys on other shards than "runs"
            attempt("MOVE", k, "1")
        compare("GET", "runs")
        for db in ("0", "1", "2", "3", "5"):
            compare("SELECT", db)
            compare("KEYS", "*", unordered=True)
    finally:
        for o in others:
            o.close()


def test_blocked_clients_of_another_database_are_woken_by_atomic_writes(r):
    """BLPOP and BZPOPMIN in database 3, served by writes that reach their
    keys through a cross-shard LMOVE, a WATCHed EXEC, and a SELECT inside
    a transaction sent from database 0."""
    waiter, d3 = _db(r, 3), _db(r, 3)
    try:
        d3.rpush("src", "moved")
        out: list = []
        t = _blpop_in_thread(waiter, "q", out)
        d3.lmove("src", "q")  # src and q: different shards
        t.join(10)
        assert [list(x) for x in out] == [[b"q", b"moved"]]

        out.clear()
        t = _blpop_in_thread(waiter, "q", out)
        with d3.pipeline(transaction=True) as p:
            p.watch("w")
            p.multi()
            p.mset({k: 1 for k in KEYS})
            p.rpush("q", "from a watched exec")
            p.execute()
        t.join(10)
        assert [list(x) for x in out] == [[b"q", b"from a watched exec"]]

        out.clear()
        t = threading.Thread(target=lambda: out.append(waiter.bzpopmin(["z"], timeout=10)))
        t.start()
        time.sleep(0.3)
        with r.pipeline(transaction=True) as p:
            p.watch("w")
            p.multi()
            p.zadd("z", {"in db 0": 1})
            p.execute_command("SELECT", "3")
            p.zadd("z", {"in db 3": 2})
            p.execute()
        t.join(10)
        assert [list(x) for x in out] == [[b"z", b"in db 3", 2.0]]
        d0 = _db(r, 0)  # the pipeline's connection went back to the pool in database 3
        assert d0.zrange("z", 0, -1) == [b"in db 0"]
        d0.close()
    finally:
        waiter.close()
        d3.close()
