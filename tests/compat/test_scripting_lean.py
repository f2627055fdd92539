"""EVALSHA of one key, with no arguments or with some (a lock's token), a
script without flags: the run shardkv takes its lean path for
(Engine.run_group) whenever nothing unusual is set, compared with
redis-server byte for byte.

Each script below runs, then the usual scripts (a GET, a constant) run
after it, so that what it changed (RESP 3, a SELECT, the random state, an
error, a write...) must not reach the next run.  After every step the
replies so far, and INFO's figures (keyspace hits and misses, expired
keys, error replies, errorstats, commandstats' calls and failures) must be
those redis-server shows.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis

from tests.support.placement import key_on
from tests.support.resp import encode_command, read_raw_reply

USUAL = ("return redis.call('get', KEYS[1])", "return 'const'")
# (script, EVALSHA_RO?): each runs with KEYS[1] = the key ``a``, ``%(o)s``
# naming a key the script did not declare (on the other shard of two).
SCRIPTS = [
    ("return redis.call('get', KEYS[1])", False),
    ("return redis.call('get', KEYS[1] .. 'missing')", False),
    ("redis.setresp(3) return redis.call('hgetall', KEYS[1] .. 'h')", False),
    ("redis.setresp(3) return {double=1.5}", False),
    ("redis.call('select', 1) redis.call('set', KEYS[1], 'db1') return redis.call('get', KEYS[1])", False),
    ("redis.call('select', 1) return redis.call('get', KEYS[1])", False),
    # (seeded first: the generator has drawn for earlier tests on these
    # servers, and with several acceptors each has its own: see the README)
    ("math.randomseed(7) return math.random(1000000)", False),
    ("return math.random(1000000)", False),
    ("return redis.call('set', KEYS[1], 'w')", False),
    ("return redis.call('set', KEYS[1], 'ro')", True),
    ("local r = redis.pcall('set', KEYS[1], 'ro') return r['err']", True),
    ("return redis.call('get', KEYS[1])", True),
    ("return {1, 'a', {2, false}, true}", False),
    ("return redis.error_reply('MY err')", False),
    ("return {err='OTHER failed'}", False),
    ("return redis.status_reply('FINE')", False),
    ("return 3.99", False),
    ("return nil", False),
    ("return true", False),
    ("return false", False),
    ("return redis.call('get', KEYS[1] .. 'l')", False),
    ("local r = redis.pcall('get', KEYS[1] .. 'l') return r['err']", False),
    ("local r = redis.pcall('incr', KEYS[1] .. 'n') return type(r)", False),
    ("return {redis.pcall('incr', KEYS[1] .. 'n')}", False),
    ("redis.call('set', KEYS[1], 'partial') return redis.call('incr', KEYS[1])", False),
    ("redis.call('set', KEYS[1], 'again') error('boom')", False),
    ("return redis.call('get', '%(o)s')", False),
    ("redis.call('set', '%(o)s', 'there') return redis.call('get', KEYS[1])", False),
    ("return redis.call('get', '%(o)s')", True),
    ("x = 1 return 'global'", False),
    ("return nosuchglobal", False),
    ("redis.set_repl(redis.REPL_NONE) redis.call('set', KEYS[1], 'norepl') return 'ok'", False),
    ("redis.log(redis.LOG_DEBUG, 'a line') return 'logged'", False),
    ("return redis.call('exists', KEYS[1] .. 'gone')", False),
    ("return redis.call('get', KEYS[1] .. 'gone')", False),
    ("return redis.call('ping')", False),
    ("return redis.call('nosuchcommand')", False),
    ("return redis.call('get')", False),
    ("return cjson.encode({1, 2})", False),
    ("local r = redis.pcall('select', 99) return r['err']", False),
    ("return redis.call('del', KEYS[1])", False),
    # redis-py's Lock.release and Lock.extend, and other reads of ARGV.
    (
        "local token = redis.call('get', KEYS[1]) if not token or token ~= ARGV[1] then return 0 end "
        "redis.call('del', KEYS[1]) return 1",
        False,
    ),
    (
        "local token = redis.call('get', KEYS[1]) if not token or token ~= ARGV[1] then return 0 end "
        "local expiration = redis.call('pttl', KEYS[1]) if not expiration then expiration = 0 end "
        "if expiration < 0 then return 0 end redis.call('pexpire', KEYS[1], expiration + ARGV[2]) return 1",
        False,
    ),
    ("return ARGV", False),
    ("return {#ARGV, ARGV[1]}", False),
    ("local n = 0 for i = 1, 3 do if ARGV[i] then n = n + 1 end end return {n, #ARGV, ARGV[#ARGV]}", False),
    ("return tonumber(ARGV[2])", False),
    ("return tonumber(ARGV[2]) * 1e18", False),
    ("return -tonumber(ARGV[2]) * 1e18", False),
]
# The arguments each EVALSHA sends after its key: none, a token (one
# argument: its own entry, see engine.one_key), or a token and a number.
ARGVS = [(), ("v",), ("v", "9")]


def _figures(c: redis.Redis) -> tuple:
    stats = c.info("stats")
    rows = {
        k: (v["calls"], v["rejected_calls"], v["failed_calls"])
        for k, v in c.info("commandstats").items()
        if k not in ("cmdstat_info", "cmdstat_config")
    }
    return (
        stats["keyspace_hits"],
        stats["keyspace_misses"],
        stats["total_error_replies"],
        c.info("errorstats"),
        rows,
    )


@pytest.mark.parametrize("argv", ARGVS)
@pytest.mark.parametrize("protocol", [2, 3])
def test_lean_evalsha_runs_as_redis_runs_them(redis_and_shardkv_s12, protocol, argv):
    """Every script above, each followed by the usual ones: replies byte for
    byte, and INFO's figures after each step."""
    a = key_on(0, "a", shards=2)
    o = key_on(1, "o", shards=2)
    seen: list[list] = []
    for port in redis_and_shardkv_s12:
        c = redis.Redis(port=port)
        c.flushall()
        c.script_flush()
        c.set(a, "v")
        c.hset(a + "h", "f", "1")
        c.rpush(a + "l", "x")
        c.set(a + "n", "notint")
        c.set(a + "gone", "x", px=1)
        c.set(o, "other")
        shas = [c.script_load(s) for s in USUAL]
        steps = [(c.script_load(s % {"o": o}), ro) for s, ro in SCRIPTS]
        time.sleep(0.02)  # (the PX 1 key has expired: a script finds it so)
        c.config_resetstat()
        out: list = []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rb")
            if protocol == 3:
                s.sendall(encode_command("HELLO", "3"))
                read_raw_reply(f)
            for sha, ro in steps:
                for step, verb in [(sha, "EVALSHA_RO" if ro else "EVALSHA")] + [(u, "EVALSHA") for u in shas]:
                    s.sendall(encode_command(verb, step, "1", a, *argv))
                    out.append(read_raw_reply(f))
                out.append(_figures(c))
        for db in (1, 0):
            c.execute_command("SELECT", db)
            out.append(sorted(c.keys()))
            out.append([c.get(k) for k in sorted(c.keys()) if c.type(k) == b"string"])
        c.close()
        seen.append(out)
    real, ours = seen
    for i, (x, y) in enumerate(zip(real, ours, strict=True)):
        assert y == x, f"step {i}: redis {x!r}, shardkv {y!r}"


def test_lean_evalsha_watch_tracking_and_keymiss_events(redis_and_shardkv_s12):
    """What a lean run's reads and writes tell others: a WATCH broken by its
    write (not by its read), the invalidation a tracking client gets for
    the key it read in a script, the ``keymiss`` event of a GET that
    missed (notify-keyspace-events Km), as redis-server tells them."""
    a = key_on(0, "a", shards=2)
    seen = []
    for port in redis_and_shardkv_s12:
        c = redis.Redis(port=port)
        c.flushall()
        read = c.script_load("return redis.call('get', KEYS[1])")
        write = c.script_load("return redis.call('set', KEYS[1], 'w')")
        c.set(a, "v")
        out: list = []
        for sha in (read, write):
            with c.pipeline() as p:
                p.watch(a)
                c.evalsha(sha, 1, a)
                p.multi()
                p.get(a)
                try:
                    out.append(p.execute())
                except redis.WatchError:
                    out.append("watch broken")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rb")
            for args in (("HELLO", "3"), ("CLIENT", "TRACKING", "ON")):
                s.sendall(encode_command(*args))
                read_raw_reply(f)
            s.sendall(encode_command("EVALSHA", read, "1", a))
            out.append(read_raw_reply(f))
            c.set(a, "changed")
            s.sendall(encode_command("PING"))
            out.append(read_raw_reply(f))
            out.append(read_raw_reply(f))
        c.config_set("notify-keyspace-events", "Km")
        try:
            sub = c.pubsub()
            sub.psubscribe("__key*__:*")
            sub.get_message(timeout=1)
            out.append(c.evalsha(read, 1, a + "missing"))
            out.append(c.evalsha(read, 1, a))
            message = sub.get_message(timeout=1)
            out.append(message and (message["channel"], message["data"]))
            out.append(sub.get_message(timeout=0.2))
            sub.close()
        finally:
            c.config_set("notify-keyspace-events", "")
        c.close()
        seen.append(out)
    assert seen[1] == seen[0]
