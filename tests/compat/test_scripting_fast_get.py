"""redis.call('get', ...) of a key the script's shard owns runs in one step
(Engine._call_raise, a string that has not expired read inline): what a
client sees of such calls is what Redis shows of them.

Each case runs on redis-server and on shardkv with one and with two
shards: the replies, INFO commandstats' ``cmdstat_get``, the keyspace hits
and misses, and LFU's access counter (``OBJECT FREQ``) must be equal.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.placement import key_on

SCRIPT = "return redis.call('get', KEYS[1])"
PSCRIPT = "local r = redis.pcall('get', KEYS[1]) if type(r) == 'table' then return r.err end return r"


@pytest.fixture
def servers(redis_and_shardkv_s12) -> tuple[int, int]:
    return redis_and_shardkv_s12


def _get_stats(c: redis.Redis) -> tuple:
    stats = c.info("stats")
    row = c.info("commandstats").get("cmdstat_get", {})
    return (
        stats["keyspace_hits"],
        stats["keyspace_misses"],
        row.get("calls"),
        row.get("failed_calls"),
        row.get("rejected_calls"),
    )


def test_scripted_gets_count_as_redis_counts_them(servers):
    """Hits, a missing key, an expired key and another type: replies,
    cmdstat_get's calls and failures, keyspace hits and misses."""
    seen = []
    for port in servers:
        c = redis.Redis(port=port)
        c.flushall()
        c.set("{h}a", "v")
        c.set("{h}gone", "x", px=1)
        c.rpush("{h}list", "x")
        time.sleep(0.02)  # (the PX 1 key has expired; it is read once below)
        c.config_resetstat()
        replies: list = []
        for key in ("{h}a", "{h}a", "{h}missing", "{h}gone", "{h}a"):
            replies.append(c.evalsha(c.script_load(SCRIPT), 1, key))
        for script in (SCRIPT, PSCRIPT):
            try:
                replies.append(c.eval(script, 1, "{h}list"))
            except redis.ResponseError as e:
                replies.append(str(e).split(" script:")[0])
        replies.append(c.exists("{h}gone"))
        seen.append((replies, _get_stats(c)))
        c.close()
    assert seen[1] == seen[0]


def test_scripted_gets_count_in_lfu(servers):
    """Under an LFU policy (lfu-log-factor 0: every access counts) each
    scripted GET adds one to the key's access counter."""
    seen = []
    for port in servers:
        c = redis.Redis(port=port)
        c.flushall()
        c.config_set("maxmemory-policy", "allkeys-lfu")
        c.config_set("lfu-log-factor", 0)
        try:
            c.set("{h}a", "v")
            sha = c.script_load(SCRIPT)
            for _ in range(3):
                c.evalsha(sha, 1, "{h}a")
            freq = c.object("freq", "{h}a")
            seen.append((freq, _get_stats(c)[:2]))
        finally:
            c.config_set("maxmemory-policy", "noeviction")
            c.config_set("lfu-log-factor", 10)
            c.close()
    assert seen[1] == seen[0]


def test_scripted_get_touches_the_key_for_lru(servers):
    """A scripted GET sets the key's access time: OBJECT IDLETIME after it
    is 0, as after a client's GET (the key left idle first)."""
    seen = []
    for port in servers:
        c = redis.Redis(port=port)
        c.flushall()
        c.set("{h}a", "v")
        seen.append(c)
    # (IDLETIME counts whole seconds of a clock kept at hz: at least 1,
    # on each server, waited for with a bound)
    deadline = time.monotonic() + 30
    while not all((c.object("idletime", "{h}a") or 0) >= 1 for c in seen) and time.monotonic() < deadline:
        time.sleep(0.02)
    out = []
    for c in seen:
        before = c.object("idletime", "{h}a")
        c.eval(SCRIPT, 1, "{h}a")
        out.append((before >= 1, c.object("idletime", "{h}a")))
        c.close()
    assert out[1] == out[0] == (True, 0)


def test_runs_of_one_key_see_their_own_keys(servers):
    """A one-key script that only indexes its KEYS runs with one table of its
    own again and again (engine.one_key): each run, with and without
    arguments, beside scripts that hold their KEYS table and runs of two
    keys, sees its own key alone, as in Redis."""
    indexed = "return {KEYS[1], #KEYS, KEYS[2] == nil, #ARGV, ARGV[1]}"
    holding = "local k = KEYS return {k[1], #k}"
    closure = "local f = function() return KEYS end local t = f() return {t[1], #t}"
    seen = []
    for port in servers:
        c = redis.Redis(port=port)
        c.flushall()
        shas = [c.script_load(s) for s in (indexed, holding, closure)]
        replies: list = []
        for i in range(12):
            key = "{h}k%d" % i
            sha = shas[i % 3]
            replies.append(c.evalsha(sha, 1, key))
            replies.append(c.evalsha(sha, 1, key, "arg%d" % i))
            replies.append(c.evalsha(shas[0], 2, key, "{h}other"))
            replies.append(c.evalsha(shas[0], 1, "{h}again"))
        try:
            c.eval("return KEYS[1] .. nil", 1, "{h}x")
        except redis.ResponseError as e:
            replies.append(str(e).split(" script:")[0])
        replies.append(c.evalsha(shas[0], 1, "{h}after"))
        seen.append(replies)
    assert seen[0] == seen[1]


def test_pipelined_runs_of_one_script_count_as_redis_whatever_comes_between(servers):
    """Back-to-back EVALSHAs of one script run as a group (Engine.run_group:
    the set-up of the run before kept, its counters kept apart
    too): a run between them that errors, writes, or reads a key of
    another shard (undone, it runs again across shards), and a CONFIG SET
    or SCRIPT FLUSH in the same pipeline, leave INFO commandstats,
    errorstats and the keyspace hits and misses as Redis's (a state kept
    stale across them would count elsewhere)."""
    read = "return redis.call('get', KEYS[1])"
    odd = (
        "if ARGV[1] == 'e' then return redis.call('incr', KEYS[1]) end "
        "if ARGV[1] == 'x' then redis.call('get', KEYS[1]) return redis.call('get', ARGV[2]) end "
        "return redis.call('get', KEYS[1])"
    )
    a, b = key_on(0, "fa", 2), key_on(1, "fb", 2)  # (with two shards: one on each)
    seen = []
    for port in servers:
        c = redis.Redis(port=port)
        c.flushall()
        c.config_resetstat()
        c.set(a, "1")
        c.set(b, "s")
        r, e = c.script_load(read), c.script_load(odd)
        batches = [
            [(r, 1, a)] * 3 + [(r, 1, "missing")] * 2 + [(r, 1, b)],
            [(e, 1, a, "n"), (e, 1, b, "e"), (e, 1, a, "n"), (e, 1, a, "e"), (e, 1, a, "n")],
            [(e, 1, a, "n"), (e, 1, a, "x", b), (e, 1, a, "n"), (e, 1, a, "x", "no"), (e, 1, a)],
            [(r, 1, a), ("CONFIG", "SET", "slowlog-log-slower-than", "0"), (r, 1, a), (r, 1, a)],
            [(r, 1, a), ("CONFIG", "SET", "maxmemory", "1"), (r, 1, a), (e, 1, a, "e")],
            [
                ("CONFIG", "SET", "maxmemory", "0"),
                (r, 1, a),
                ("SCRIPT", "FLUSH"),
                (r, 1, a),
                (r, 1, a),
            ],
            [("SCRIPT", "LOAD", read), (r, 1, a), (r, 1, b), (r, 1, a)],
        ]
        replies = []
        try:
            for batch in batches:
                pipe = c.pipeline(transaction=False)
                for command in batch:
                    pipe.execute_command(
                        *(command if command[0] in ("CONFIG", "SCRIPT") else ("EVALSHA", *command))
                    )
                replies.append([str(x).split(" script:")[0] for x in pipe.execute(raise_on_error=False)])
        finally:
            c.config_set("slowlog-log-slower-than", "10000")
            c.config_set("maxmemory", "0")
        rows = {
            k: (v["calls"], v["failed_calls"], v["rejected_calls"]) for k, v in c.info("commandstats").items()
        }
        stats = c.info("stats")
        seen.append((replies, rows, c.info("errorstats"), stats["keyspace_hits"], stats["keyspace_misses"]))
        c.close()
    assert seen[1] == seen[0]
