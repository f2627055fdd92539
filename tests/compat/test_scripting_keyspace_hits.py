"""INFO stats' ``keyspace_hits`` and ``keyspace_misses`` after scripts, as
Redis counts them: only the lookups of the read commands a script calls
(Redis's ``lookupKeyRead``), and of the keys a write command reads (SET ...
GET, GETSET), never a write's own lookups nor the script's.

Each case runs on redis-server and on shardkv with one and with two shards
from the same keys (two on each shard of two, two of them missing), with
the counters reset: the replies and the two counters must be equal.  (On a
shard of several, a script's write kept its key's state for an undo with
the script's EVAL counting lookups, and so counted a hit or a miss for
each key a script wrote first: ``redis.call('incr', KEYS[1])`` on four
keys showed 3 hits and 1 miss, where Redis shows none.)
"""

from __future__ import annotations

import pytest
import redis

from tests.support.placement import key_on

# Two keys on each shard of two: the first of each pair exists ("1").
KEYS = [key_on(0, "ha", 2), key_on(1, "ha", 2), key_on(0, "hb", 2), key_on(1, "hb", 2)]
ABSENT = [key_on(0, "hz", 2), key_on(1, "hz", 2)]  # (two more, on each shard, never set up)

LIBRARY = """#!lua name=hitslib
redis.register_function('fw', function(keys, args) return redis.call('incr', keys[1]) end)
redis.register_function('fmix', function(keys, args)
  redis.call('set', keys[1], 'x')
  return redis.call('get', keys[1])
end)
redis.register_function{function_name='fr', callback=function(keys, args)
  return redis.call('get', keys[1])
end, flags={'no-writes'}}
"""

# Scripts of one key, each run on every key of KEYS twice.
ONE_KEY = [
    # writes: no lookup counts
    "return redis.call('incr', KEYS[1])",
    "return redis.call('set', KEYS[1], 'x')",
    "return redis.call('append', KEYS[1], 'x')",
    "return redis.call('lpush', KEYS[1], 'x')",
    "return redis.call('hset', KEYS[1], 'f', 'v')",
    "return redis.call('del', KEYS[1])",
    "return redis.call('sadd', KEYS[1], 'm')",
    "return redis.call('expire', KEYS[1], 100)",
    "return redis.pcall('incr', KEYS[1])",
    "return redis.pcall('lpush', KEYS[1], 'x')",
    # writes that read: the key read counts
    "return redis.call('set', KEYS[1], 'x', 'get')",
    "return redis.call('getset', KEYS[1], 'x')",
    "return redis.call('getdel', KEYS[1])",
    # reads
    "return redis.call('get', KEYS[1])",
    "return redis.call('hget', KEYS[1], 'f')",
    "return redis.call('exists', KEYS[1])",
    "return redis.call('strlen', KEYS[1])",
    "return redis.call('type', KEYS[1])",
    "return redis.pcall('hget', KEYS[1], 'f')",
    # mixes
    "redis.call('set', KEYS[1], 'x'); return redis.call('get', KEYS[1])",
    "local v = redis.call('get', KEYS[1]); redis.call('incr', KEYS[1]); return v",
    "redis.call('incr', KEYS[1]); redis.call('incr', KEYS[1]); return redis.call('exists', KEYS[1])",
    "redis.call('lpush', KEYS[1], 'x'); return redis.call('llen', KEYS[1])",
    "redis.call('hset', KEYS[1], 'f', 'v'); return redis.call('hget', KEYS[1], 'f')",
    "redis.call('del', KEYS[1]); redis.call('append', KEYS[1], 'y'); return redis.call('get', KEYS[1])",
]

# Scripts of two keys on different shards (of two): run across shards.
TWO_KEYS = [
    "return redis.call('incr', KEYS[1]) + redis.call('incr', KEYS[2])",
    "redis.call('set', KEYS[2], 'x'); return redis.call('get', KEYS[1])",
    "return {redis.call('get', KEYS[1]), redis.call('get', KEYS[2])}",
    "redis.call('get', KEYS[1]); redis.call('lpush', KEYS[2], 'x'); return redis.call('exists', KEYS[2])",
    "redis.call('del', KEYS[1], KEYS[2]); return redis.call('exists', KEYS[1], KEYS[2])",
    # an undeclared key of the other shard
    "redis.call('set', KEYS[1], 'x'); return redis.call('incr', '%s')" % ABSENT[1],
    "return redis.call('get', '%s')" % ABSENT[1],
]


@pytest.fixture
def servers(redis_and_shardkv_s12) -> tuple[int, int]:
    return redis_and_shardkv_s12


def _reply(call, *args) -> object:
    try:
        return call(*args)
    except redis.ResponseError as e:
        return str(e).split(" script:")[0]


def _replies(replies: list) -> list:
    """A transaction's replies, an error's as its text (without the script's SHA)."""
    return [str(r).split(" script:")[0] if isinstance(r, Exception) else r for r in replies]


def _counted(port: int, run) -> tuple:
    """``run(client)``'s replies and the keyspace hits and misses it counted,
    from KEYS' first of each pair set to "1", the rest missing."""
    c = redis.Redis(port=port)
    try:
        c.flushall()
        c.function_load(LIBRARY, replace=True)
        c.set(KEYS[0], "1")
        c.set(KEYS[1], "1")
        c.config_resetstat()
        replies = run(c)
        stats = c.info("stats")
        return replies, stats["keyspace_hits"], stats["keyspace_misses"]
    finally:
        c.close()


def _same(servers, run) -> None:
    seen = [_counted(port, run) for port in servers]
    assert seen[1] == seen[0]


@pytest.mark.parametrize("script", ONE_KEY)
def test_script_of_one_key(servers, script):
    def run(c):
        sha = c.script_load(script)
        out = [_reply(c.eval, script, 1, k) for k in KEYS]
        return out + [_reply(c.evalsha, sha, 1, k) for k in KEYS]

    _same(servers, run)


@pytest.mark.parametrize("script", TWO_KEYS)
def test_script_across_shards(servers, script):
    def run(c):
        pairs = [(KEYS[0], KEYS[1]), (KEYS[2], KEYS[3]), (KEYS[0], KEYS[3]), (KEYS[0], KEYS[1])]
        return [_reply(c.eval, script, 2, a, b) for a, b in pairs]

    _same(servers, run)


@pytest.mark.parametrize("ro", [False, True], ids=["eval", "eval_ro"])
def test_scripts_in_a_transaction(servers, ro):
    """EVAL (and EVAL_RO of reads) queued in MULTI, beside plain commands."""

    def run(c):
        pipe = c.pipeline(transaction=True)
        for k in KEYS:
            if ro:
                pipe.eval_ro("return redis.call('get', KEYS[1])", 1, k)
                pipe.eval_ro("return redis.call('exists', KEYS[1])", 1, k)
            else:
                pipe.eval("return redis.call('incr', KEYS[1])", 1, k)
                pipe.eval("redis.call('lpush', KEYS[1], 'x'); return redis.call('get', KEYS[1])", 1, k)
                pipe.eval("return redis.call('set', KEYS[1], 'y')", 1, k)
            pipe.get(k)
        pipe.eval("return redis.call('incr', KEYS[1]) + redis.call('incr', KEYS[2])", 2, KEYS[0], KEYS[3])
        return _replies(pipe.execute(False))

    _same(servers, run)


def test_functions(servers):
    """FCALL of a write, a write and a read, and FCALL_RO of a read."""

    def run(c):
        out = []
        for k in KEYS:
            out.append(_reply(c.fcall, "fw", 1, k))
            out.append(_reply(c.fcall_ro, "fr", 1, k))
            out.append(_reply(c.fcall, "fmix", 1, k))
        pipe = c.pipeline(transaction=True)
        for k in KEYS:
            pipe.fcall("fw", 1, k)
            pipe.fcall_ro("fr", 1, k)
        out.append(_replies(pipe.execute(False)))
        return out

    _same(servers, run)
