"""Scripts that must neither crash a worker nor hold a shard for good,
against redis-server 7.0.15, at one and two acceptors.

- ``unpack`` of a range of 2^31 values or more: Lua 5.1's ``luaB_unpack``
  counts them in an int that overflows, and lupa's unpatched Lua pushed
  past its stack (the worker's SIGSEGV, and the shard restarted empty:
  CVE-2025-46817).  Redis's patched unpack answers ``too many results to
  unpack``.
- An endless loop that ``pcall`` hides or a coroutine runs: SCRIPT KILL
  (FUNCTION KILL) must stop it, as in Redis, and until then other clients
  get ``-BUSY``.  The kill's error was caught by the loop's ``pcall``, and
  the count hook never ran in a coroutine (Lua 5.1 keeps a hook function
  per thread).  A resume that failed (what ``coroutine.wrap`` gives called
  in its own coroutine, running or "normal") took the hook of the
  coroutine still running: never ``-BUSY``, SCRIPT KILL answered NOTBUSY.
"""

from __future__ import annotations

import threading

import pytest
import redis

from tests.support.placement import key_on
from tests.support.processes import wait_busy

UNPACKS = [
    # (the range, named: the script runs wide; under another name: narrow)
    "return unpack({1,2,3}, -2^31, 2^31-1)",
    "return unpack({1,2,3}, -1, 2^31-2)",
    "return unpack({1,2,3}, 0, 2^31-1)",
    "return unpack({1,2,3}, -10, 2^31-1)",
    "return {unpack({1,2,3}, -2^31)}",
    "return {unpack({1,2,3}, 2^31, 3)}",
    "return {unpack({}, '-2147483648', '2147483647')}",
    "local u = unpack return u({}, -2^31, 2^31-1)",
    "return {pcall(unpack, {}, -2^31, 2^31-1)}",
    "return _G['unp'..'ack']({1,2,3}, -2^31, 2^31-1)",
    "return {pcall(_G['unp'..'ack'], {1,2,3}, 0, 2^31-1)}",
    "return {_G['unp'..'ack']({1,2,3}, 1, 1e10)}",
    # ranges the int conversion makes small or empty, and the usual errors
    "return {unpack({1,2,3}, 1, 2^32+2)}",
    "return {unpack({1,2,3}, 2^31-1, 2^31-1)}",
    "return {unpack({1,2,3}, 1, 1/0)}",
    "return {unpack({1,2,3}, 1.9, 2.9)}",
    "return #{unpack({1,2,3}, 1, 7990)}",
    "return {unpack({1,2,3}, 1, 7999)}",
    "return {unpack({1,2,3}, 'x')}",
    "return {unpack(1)}",
    "return _G['unp'..'ack'](nil)",
]


def _outcome(client: redis.Redis, *args: object) -> object:
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return ("error", str(e))


def test_unpack_of_a_range_past_int_fails_and_keeps_the_shard(redis_and_shardkv_k12):
    real_port, ours_port, _ = redis_and_shardkv_k12
    real = redis.Redis(port=real_port, socket_timeout=20)
    ours = redis.Redis(port=ours_port, socket_timeout=20)
    keys = [key_on(i % 2, f"unpack{i}-", shards=2) for i in range(20)]
    for c in (real, ours):
        c.flushall()
        for k in keys:
            c.set(k, k)
    for script in UNPACKS:
        assert _outcome(ours, "EVAL", script, 0) == _outcome(real, "EVAL", script, 0), script
    # No worker restarted: every key of both shards is still there.
    assert ours.dbsize() == 20
    assert ours.mget(keys) == [k.encode() for k in keys]
    real.close()
    ours.close()


LOOPS = [
    "while true do pcall(function() end) end",
    "local i = 0 while true do i = i + 1 pcall(function() end) end",
    "coroutine.wrap(function() while true do end end)()",
    "local co = coroutine.create(function() while true do end end) while true do coroutine.resume(co) end",
    "local f = coroutine.wrap(function() while true do pcall(function() end) end end) while true do pcall(f) end",
    # a resume that fails (its coroutine running, "normal" or dead) made in
    # a coroutine that loops after it: the failed resume must leave the
    # running coroutine's hook where it is
    "local f f = coroutine.wrap(function() pcall(f) while true do end end) f()",
    "local f f = coroutine.wrap(function() xpcall(f, function(e) return e end) while true do end end) f()",
    "local f f = coroutine.wrap(function() coroutine.resume(coroutine.create(function() f() end)) while true do end end) f()",
    "local f f = coroutine.wrap(function() coroutine.wrap(function() pcall(f) end)() while true do end end) f()",
    "local f f = coroutine.wrap(function() coroutine.resume(coroutine.running()) while true do end end) f()",
    "local co co = coroutine.create(function() coroutine.resume(co) while true do end end) coroutine.resume(co)",
    "local co co = coroutine.create(function() coroutine.resume(coroutine.create(function() coroutine.resume(co) end))"
    " while true do end end) coroutine.resume(co)",
    "local co co = coroutine.create(function() pcall(coroutine.wrap(function() coroutine.resume(co) end))"
    " while true do end end) coroutine.resume(co)",
    "local g = coroutine.wrap(function() end) g() coroutine.wrap(function() pcall(g) while true do end end)()",
    "local d = coroutine.create(function() end) coroutine.resume(d)"
    " coroutine.wrap(function() coroutine.resume(d) while true do end end)()",
    "local f f = coroutine.wrap(function() for i = 1, 3 do pcall(f) coroutine.yield() end while true do end end)"
    " f() f() f() f()",
]
CALLS = [("EVAL", loop) for loop in LOOPS] + [
    ("FCALL", "while true do pcall(function() end) end"),
    ("FCALL", "coroutine.wrap(function() while true do end end)()"),
]


def _kill_busy(port: int, call: tuple[str, str], key: str) -> object:
    """Run the loop, wait for -BUSY, kill it: the loop's error (or its
    reply, where the loop's coroutine.resume caught the kill)."""
    kind, body = call
    c = redis.Redis(port=port, socket_timeout=10)
    c.config_set("busy-reply-threshold", 100)
    if kind == "FCALL":
        code = f"#!lua name=spin\nredis.register_function('spin', function() {body} end)"
        c.function_load(code, replace=True)
        command: tuple = ("FCALL", "spin", 0)
        kill = "FUNCTION"
    else:
        command = ("EVAL", body, 0)
        kill = "SCRIPT"
    result: list = []

    def run() -> None:
        runner = redis.Redis(port=port, socket_timeout=30)
        try:
            result.append(runner.execute_command(*command))
        except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError) as e:
            result.append(e)
        runner.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_busy(lambda: c.get(key), wait=10)
    assert c.execute_command(kill, "KILL")
    thread.join(15)
    assert not thread.is_alive(), "the killed script never ended"
    assert c.get(key) is None  # the shard answers again
    with pytest.raises(redis.ResponseError, match="No scripts in execution"):
        c.execute_command(kill, "KILL")
    c.config_set("busy-reply-threshold", 5000)
    c.close()
    if isinstance(result[0], redis.ResponseError):
        return str(result[0])
    return ("reply", result[0])  # (coroutine.resume caught the kill's error)


@pytest.mark.parametrize("call", CALLS, ids=[f"{k}:{b[:40]}" for k, b in CALLS])
def test_kill_stops_a_loop_that_pcall_or_a_coroutine_runs(redis_and_shardkv_k12, call):
    real_port, ours_port, _ = redis_and_shardkv_k12
    key = key_on(0, "busy", shards=2)
    expected = _kill_busy(real_port, call, key)
    if not call[1].startswith("local co co"):
        assert "Script killed by user with SCRIPT KILL..." in str(expected)
    assert _kill_busy(ours_port, call, key) == expected
