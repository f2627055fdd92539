"""Scripts whose redis.call passes more than 7997 arguments (more than lupa
passes to Python at once), seen from outside the script, as in Redis.

Each script runs once on redis-server and on shardkv with one and with two
shards, while a client is subscribed to the channel it publishes on and
another MONITORs; what they received, the data, INFO commandstats and the
reply must be equal.  (Such a script once ran twice, the first run undone:
what it had published and what MONITOR showed of it came twice, and with
one shard its writes and counts did too.)
"""

from __future__ import annotations

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import start_redis, start_shardkv

COUNTED = {"cmdstat_" + name for name in ("eval", "fcall", "incr", "rpush", "set")}
LONG = "local t = {} for i = 1, 7999 do t[i] = i end\n"


@pytest.fixture
def servers(redis_and_shardkv_s12) -> tuple[int, int]:
    return redis_and_shardkv_s12


@pytest.fixture(scope="module", params=[1, 2], ids=["1-shard", "2-shards"])
def processes(request):
    """redis-server and shardkv themselves (their output: redis.log's lines)."""
    real = start_redis()
    ours = start_shardkv(shards=request.param)
    yield real, ours
    real.stop()
    ours.stop()


def observe(port: int, script: str, *keys: str, command: str = "EVAL", counted: set = COUNTED) -> dict:
    """Run ``script`` (a function's name with FCALL) with a subscriber on ``ch`` and a MONITOR watching:
    everything each saw, the reply, the counts, and the keys' values."""
    c = redis.Redis(port=port, protocol=2)
    c.flushall()
    c.script_flush()  # (functions stay)
    c.config_resetstat()
    sub = redis.Redis(port=port).pubsub()
    sub.subscribe("ch")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    watcher = redis.Redis(port=port).monitor()
    mon = watcher.__enter__()
    try:
        reply: object = c.execute_command(command, script, len(keys), *keys)
    except redis.ResponseError as e:
        reply = ("error", str(e))
    c.publish("ch", "end")  # the subscriber's last message
    messages = []
    while (m := sub.get_message(timeout=10)) is not None and m["data"] != b"end":
        messages.append(m["data"])
    shown = []
    while (line := mon.next_command()["command"]) != "PUBLISH ch end":
        shown.append(line)
    watcher.__exit__(None, None, None)
    sub.close()
    # (not PUBLISH: the test's own counts too; nor the clients' handshakes)
    stats = {k: (v["calls"], v["failed_calls"]) for k, v in c.info("commandstats").items() if k in counted}
    data = {k: c.dump(k) is not None and c.type(k) for k in keys}
    values = [
        c.get(k) if c.type(k) == b"string" else c.llen(k) if c.type(k) == b"list" else None for k in keys
    ]
    c.close()
    return {
        "reply": reply,
        "messages": messages,
        "monitor": shown,
        "stats": stats,
        "data": data,
        "values": values,
    }


def same(servers, script: str, *keys: str, command: str = "EVAL", counted: set = COUNTED) -> dict:
    real, ours = servers
    expected = observe(real, script, *keys, command=command, counted=counted)
    got = observe(ours, script, *keys, command=command, counted=counted)
    assert got == expected
    return got


def test_publish_and_writes_before_a_long_call(servers):
    """What the script did before its long call happens once."""
    script = (
        "redis.call('publish', 'ch', 'm'); redis.call('incr', KEYS[1])\n"
        + LONG
        + "return redis.call('rpush', KEYS[2], unpack(t))"
    )
    got = same(servers, script, "n{t}", "l{t}")
    assert got["messages"] == [b"m"] and got["values"] == [b"1", 7999]


def test_zero_arguments(servers):
    """A script whose redis.call gets a 0 (lupa hands Python a -0 as 0
    too) runs again wide where it can (here, with MONITOR on: where it
    called nothing before, see README), and what it did before happens
    once."""
    for n in ("0", "0 * -1"):
        got = same(
            servers,
            f"redis.call('set', KEYS[2], {n})\n"
            "redis.call('publish', 'ch', 'm'); redis.call('incr', KEYS[1])\n"
            f"redis.call('rpush', KEYS[3], {n}, 'x', {n})\nreturn redis.call('get', KEYS[2])",
            "n{t}",
            "z{t}",
            "l{t}",
        )
        assert got["messages"] == [b"m"] and got["values"] == [b"1", b"0" if n == "0" else b"-0", 3]
    got = same(
        servers,
        "redis.call('get', KEYS[1]) redis.call('publish', 'ch', 'm'); redis.call('incr', KEYS[1])\n"
        "local ok = pcall(redis.call, 'rpush', KEYS[2], 0)\nredis.call('incr', KEYS[1])\n"
        "return redis.call('get', KEYS[1])",
        "n{t}",
        "l{t}",
    )
    assert got["messages"] == [b"m"] and got["values"] == [b"2", 1]


def test_long_call_under_the_scripts_pcall(servers):
    """pcall(redis.call, ...) and a long call in a function under pcall."""
    same(
        servers,
        LONG + "local ok, r = pcall(redis.call, 'rpush', KEYS[1], unpack(t))\nreturn {tostring(ok), r}",
        "l",
    )
    same(
        servers,
        LONG
        + "redis.call('publish', 'ch', 'a')\n"
        + "local ok, r = pcall(function() return redis.call('rpush', KEYS[1], unpack(t)) end)\n"
        + "redis.call('publish', 'ch', 'b')\nreturn {tostring(ok), r}",
        "l",
    )
    same(
        servers,
        LONG + "local ok, r = pcall(redis.call, 'set', KEYS[1], unpack(t))\nreturn {tostring(ok), r}",
        "k",
    )


def test_errors_of_a_script_that_can_call_wide_name_its_line(servers):
    """``return redis.call(...)`` in a script that may make long calls."""
    same(servers, "local a = {unpack({1})}\nreturn redis.call('incr', KEYS[1])", "l{x}")
    same(
        servers,
        "redis.call('rpush', KEYS[1], 'a')\nlocal a = {unpack({1})}\nreturn redis.call('incr', KEYS[1])",
        "l",
    )
    same(servers, LONG + "return redis.call('set', KEYS[1], unpack(t))", "k")
    same(servers, "local function f(...) return redis.call('nosuch', ...) end\nreturn f(1)")


def test_functions_with_long_calls(servers):
    library = (
        "#!lua name=wide\n"
        "redis.register_function('push', function(keys)\n" + LONG + "  redis.call('publish', 'ch', 'm')\n"
        "  return redis.call('rpush', keys[1], unpack(t))\n"
        "end)\n"
        "redis.register_function('bad', function(keys)\n"
        "  redis.call('set', keys[1], 'x')\n"
        "  return redis.call('rpush', keys[1], unpack({1}))\n"
        "end)\n"
    )
    for port in servers:
        redis.Redis(port=port).function_load(library, replace=True)
    got = same(servers, "push", "l", command="FCALL")
    assert got["messages"] == [b"m"] and got["values"] == [7999]
    same(servers, "bad", "k", command="FCALL")


# A script that reaches unpack or string.byte only under another name runs
# narrow; its long call is caught as it is made, not by running it again.
ALIAS = "local u = _G['unp'..'ack']\n"


def test_long_call_through_another_name_runs_once(servers):
    got = same(
        servers,
        ALIAS
        + "redis.call('publish', 'ch', 'm'); redis.call('incr', KEYS[1])\n"
        + LONG
        + "local r = redis.call('rpush', KEYS[2], u(t))\nreturn r",
        "n{t}",
        "l{t}",
    )
    assert got["messages"] == [b"m"] and got["values"] == [b"1", 7999]
    same(
        servers,
        ALIAS
        + LONG
        + "local c = redis.call\nredis.call('publish', 'ch', 'a')\nreturn c('rpush', KEYS[1], u(t))",
        "l",
    )
    same(
        servers,
        ALIAS
        + LONG
        + "redis.call('publish', 'ch', 'a')\nlocal r = redis.pcall('set', KEYS[1], u(t))\nreturn r",
        "k",
    )
    same(servers, ALIAS + LONG + "local r = redis.call('set', KEYS[1], u(t))\nreturn r", "k")
    got = same(
        servers,
        "local b = string['by'..'te']\nredis.call('publish', 'ch', 'm')\n"
        "return redis.call('rpush', KEYS[1], b(string.rep('x', 7997), 1, -1))",
        "l",
    )
    assert got["messages"] == [b"m"] and got["values"] == [7997]


def test_long_call_through_another_name_under_the_scripts_pcall(servers):
    same(
        servers,
        ALIAS + LONG + "local ok, r = pcall(redis.call, 'rpush', KEYS[1], u(t))\nreturn {tostring(ok), r}",
        "l",
    )
    same(
        servers,
        ALIAS + LONG + "local ok, r = pcall(redis.call, 'set', KEYS[1], u(t))\nreturn {tostring(ok), r}",
        "k",
    )


def test_unpack_and_byte_errors_through_another_name(servers):
    same(servers, "local u = _G['unp'..'ack']\nlocal r = u(nil)\nreturn r")
    same(servers, "local b = string['by'..'te']\nlocal r = ('abc'):byte('x')\nreturn r")
    same(servers, "local b = string['by'..'te']\nreturn {b('abc', 1, -1)}")


def test_errors_of_a_tail_call_through_a_parameter_name_its_line(servers):
    """``return f()`` where the parameter f is redis.call: Redis's
    redis.call is a C function, no tail call, so its error names the
    script's line; the wide one is a Lua function."""
    wide = "local a = {unpack({1})}\n"
    same(servers, wide + "local function g(f) return f('nosuch') end\nreturn g(redis.call)")
    same(servers, wide + "local function g(f) return f('incr', KEYS[1]) end\nreturn g(redis.call)", "l")
    same(servers, wide + "local function g(f) return f('incr', KEYS[1]) end\nreturn g(redis.pcall)", "l")
    same(
        servers,
        wide
        + "local function g(f) return f('nosuch') end\nlocal ok, e = pcall(function() return g(redis.call) end)\nreturn e",
    )


def test_deep_tail_recursion_in_a_script_that_may_make_long_calls(servers):
    """Only tail calls that may reach a Lua function of the prelude (of a
    ``call`` field, a parameter...) lose their tail call in such a script:
    tail recursion through a local function goes as deep as Redis's."""
    same(
        servers,
        "local function d(n) if n == 0 then return 0 end return d(n - 1) end\n"
        "local a = {unpack({1})}\nreturn d(30000)",
    )
    same(servers, "local a = {unpack({1})}\nlocal r = redis\nreturn r.call('nosuch')")
    same(servers, "local a = {unpack({1})}\nreturn redis.pcall('incr', KEYS[1])", "n")


def test_undone_run_draws_no_random_number(servers):
    """A run undone to run again wide has drawn nothing from math.random:
    the rerun draws what it drew, and the next script what follows (on the
    only shard the undone run's draws once stayed drawn)."""
    replies = []
    for port in servers:
        c = redis.Redis(port=port)
        c.eval("math.randomseed(42) return 1", 0)
        replies.append(
            [
                c.eval("local r = math.random(1000000); redis.call('set', KEYS[1], 0); return r", 1, "k"),
                c.eval("return math.random(1000000)", 0),
                c.eval(
                    "math.randomseed(7); local r = math.random(9); redis.call('set', KEYS[1], 0); return r",
                    1,
                    "k",
                ),
                c.eval("return math.random(1000000)", 0),
            ]
        )
        c.close()
    assert replies[1] == replies[0]


def written(proc, marker: str, end: str) -> int:
    """How many times ``marker`` was logged, once ``end`` (logged after it) shows."""
    for _ in range(200):
        text = proc.output()
        if end in text:
            return text.count(marker)
        time.sleep(0.05)
    raise AssertionError(f"{end!r} never logged")


def test_undone_run_logs_nothing(processes):
    """redis.log's lines of a run undone to run again (wide, or across
    shards) are written once, by the run that ends."""
    scripts = [
        "redis.log(redis.LOG_WARNING, 'zr-wide'); return redis.call('set', KEYS[1], 0)",
        "redis.log(redis.LOG_WARNING, 'zr-across'); return redis.call('set', KEYS[1] .. 'x', 1)",
    ]
    counts = []
    for proc in processes:
        c = redis.Redis(port=proc.port)
        for script in scripts:
            c.eval(script, 1, "k")
        c.eval("redis.log(redis.LOG_WARNING, 'zr-end'); return 1", 1, "k")
        counts.append([written(proc, marker, "zr-end") for marker in ("zr-wide", "zr-across")])
        c.close()
    assert counts == [[1, 1], [1, 1]]


BUSY_FIRST = (
    "local function now() local t = redis.call('time') return t[1] * 1000000 + t[2] end\n"
    "local t0 = now() while now() - t0 < 300000 do for i = 1, 20000 do end end\n"
)


def test_undone_run_that_wrote_its_lines_logs_them_once(processes):
    """A run undone after some of its redis.log lines were written (past
    LOGS_HELD lines, or past busy-reply-threshold, they are written as
    they come): its run again drops as many, so each shows once, as in
    Redis (they showed twice).  A later script with the same keys and
    arguments keeps its own lines."""
    many = "for i = 1, 1500 do redis.log(redis.LOG_WARNING, '{}') end\n"
    scripts = [
        many.format("zh-wide") + "return redis.call('set', KEYS[1], 0)",
        many.format("zh-across") + "return redis.call('set', KEYS[1] .. 'x', 1)",
        BUSY_FIRST
        + "redis.log(redis.LOG_WARNING, 'zb-wide'); for i = 1, 300000 do end; return redis.call('set', KEYS[1], 0)",
        BUSY_FIRST
        + "redis.log(redis.LOG_WARNING, 'zb-across'); for i = 1, 300000 do end; return redis.call('set', KEYS[1] .. 'x', 1)",
        "redis.log(redis.LOG_WARNING, 'zb-other'); return redis.call('set', KEYS[1] .. 'x', 1)",
    ]
    markers = ("zh-wide", "zh-across", "zb-wide", "zb-across", "zb-other")
    counts = []
    for proc in processes:
        c = redis.Redis(port=proc.port)
        c.config_set("busy-reply-threshold", 100)
        try:
            for script in scripts:
                c.eval(script, 1, "k")
        finally:
            c.config_set("busy-reply-threshold", 5000)
        c.eval("redis.log(redis.LOG_WARNING, 'zb-end'); return 1", 1, "k")
        counts.append([written(proc, marker, "zb-end") for marker in markers])
        c.close()
    assert counts[0] == [1500, 1500, 1, 1, 1]
    assert counts[1] == counts[0]


def test_a_run_across_shards_undone_for_the_wide_form_keeps_the_lines_it_owes(processes):
    """A script that wrote LOGS_HELD lines, then read a key of another shard
    (undone: it runs again across shards, dropping the lines written), whose
    run across shards is undone again, for the wide form, before it reached
    the last of those lines: its wide run still drops all of them (it dropped
    only the ones its undone run had reached, and wrote the others twice)."""
    script = (
        "redis.log(redis.LOG_WARNING, '{m}first') redis.call('echo', 0)\n"
        "for i = 1, 1000 do redis.log(redis.LOG_WARNING, '{m}L' .. i) end\n"
        "redis.call('get', ARGV[1]) return 1"
    )
    keys = ["a", "b", "k1", "k2", "x", "y"]  # (some on the other shard than a script without keys)
    counts = []
    for proc in processes:
        c = redis.Redis(port=proc.port)
        for k in keys:
            c.eval(script.format(m="zw" + k + "-"), 0, k)
        c.eval("redis.log(redis.LOG_WARNING, 'zw-end'); return 1", 0)
        counts.append(
            [
                written(proc, "zw%s-%s\n" % (k, line), "zw-end")
                for k in keys
                for line in ("first", "L1", "L999", "L1000")
            ]
        )
        c.close()
    assert counts[0] == [1] * len(counts[0])
    assert counts[1] == counts[0]


def test_undone_run_counts_no_keyspace_hits(servers):
    """A run undone to run again takes back its reads' keyspace hits and misses."""
    stats = []
    for port in servers:
        c = redis.Redis(port=port)
        c.flushall()
        c.set("{h}a", "v")
        c.eval("return redis.call('get', KEYS[1])", 1, "{h}a")  # (GET known: the reads are the usual ones)
        c.config_resetstat()
        c.eval(
            "redis.call('get', KEYS[1]); redis.call('get', KEYS[3]); redis.call('set', KEYS[2], 0)",
            3,
            "{h}a",
            "{h}b",
            "{h}c",
        )
        c.eval(
            "redis.call('get', KEYS[1]); redis.call('get', 'k'); return redis.call('set', 'k', 1)",
            1,
            "{h}a",
        )
        info = c.info("stats")
        stats.append((info["keyspace_hits"], info["keyspace_misses"]))
        c.close()
    assert stats[1] == stats[0]


def test_a_busy_scripts_log_lines_are_written_while_it_runs(processes):
    """Its lines are held only until the script is past busy-reply-threshold
    (shardkv holds them so that a run undone to run again logs nothing):
    a runaway script's lines are there while it runs, as in Redis, and not
    lost when SCRIPT KILL ends it."""
    for proc in processes:
        c = redis.Redis(port=proc.port)
        killer = redis.Redis(port=proc.port, retry=Retry(NoBackoff(), 0))
        c.config_set("busy-reply-threshold", 100)
        scripter = RespClient(proc.port)
        try:
            scripter.send("EVAL", "redis.log(redis.LOG_WARNING, 'busy-line-xyz') while true do end", 0)
            deadline = time.monotonic() + 10
            while "busy-line-xyz" not in proc.output() and time.monotonic() < deadline:
                time.sleep(0.05)
            seen = proc.output().count("busy-line-xyz")
            while True:
                try:
                    killer.script_kill()
                    break
                except redis.ResponseError as e:  # NOTBUSY: not started yet
                    assert "NOTBUSY" in str(e)
                    time.sleep(0.05)
            assert isinstance(scripter.read_reply(), ErrorReply)
            assert seen == 1, proc
            killer.echo("after-kill-xyz")
            assert proc.output().count("busy-line-xyz") == 1
        finally:
            scripter.close()
            c.config_set("busy-reply-threshold", 5000)
            c.close()
            killer.close()
