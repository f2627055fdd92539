"""Scripts that escape: their first run, on one shard, reaches a key of
another shard (or needs every shard), so they run again across shards.
Seen from outside, each must have run once, as in Redis: a subscriber
gets each message it published once, MONITOR shows each call once, and
INFO commandstats counts each call once (the acceptor's commands too).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from shardkv.protocol.router import Router
from tests.compat.test_scripting_wide import COUNTED, same, servers  # noqa: F401  (the fixture)
from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.processes import until
from tests.support.resp import RespClient, encode_command
from tests.support.servers import ServerProcess, start_redis, start_shardkv

ACCEPTORS = COUNTED | {"cmdstat_" + name for name in ("publish", "info", "pubsub|numsub", "keys", "swapdb")}


def test_publish_before_an_escape_is_delivered_once(servers):  # noqa: F811
    got = same(
        servers,
        "local n = redis.call('publish', 'ch', 'a')\n"
        "redis.call('set', KEYS[1], n)\n"
        "return {n, #redis.call('keys', '*')}",
        "k",
        counted=ACCEPTORS,
    )
    assert got["messages"] == [b"a"] and got["reply"] == [1, 1]


def test_a_script_that_escapes_twice_publishes_once(servers):  # noqa: F811
    got = same(
        servers,
        "redis.call('publish', 'ch', 'a')\n"
        "local n = #redis.call('keys', '*')\n"
        "redis.call('publish', 'ch', 'b')\n"
        "redis.call('info', 'server')\n"
        "redis.call('pubsub', 'numsub', 'ch')\n"
        "redis.call('swapdb', 0, 1)\n"
        "redis.call('swapdb', 0, 1)\n"
        "redis.call('publish', 'ch', 'c')\n"
        "return n",
        counted=ACCEPTORS,
    )
    assert got["messages"] == [b"a", b"b", b"c"]


def _errors_of(port: int, script: str) -> tuple:
    c = redis.Redis(port=port, protocol=2)
    c.flushall()
    c.config_resetstat()
    reply = c.eval(script, 0)
    rows = c.info("commandstats")
    row = rows.get("cmdstat_slowlog|get", {})
    figures = (
        reply,
        c.info("errorstats"),
        {k: row.get(k, 0) for k in ("calls", "rejected_calls", "failed_calls")},
        rows["cmdstat_keys"]["calls"],
    )
    c.close()
    return figures


def test_an_error_of_the_acceptors_command_before_an_escape_counts_once(servers):  # noqa: F811
    script = (
        "local ok, e = pcall(redis.call, 'slowlog', 'get', 'x')\n"
        "return {tostring(ok), #redis.call('keys', '*')}"
    )
    real, ours = servers
    assert _errors_of(ours, script) == _errors_of(real, script)


def _failures_of(port: int, script: str, how: str) -> tuple:
    """Run ``script`` (one key, ``k``) as ``how`` says: the reply, errorstats
    and the script command's and INCR's counts."""
    c = redis.Redis(port=port, protocol=2)
    c.flushall()
    c.script_flush()
    sha = c.script_load(script)
    if how == "EVAL again":  # the shard has the script: shardkv sends it as EVALSHA
        c.eval(script, 1, "k")
    c.config_resetstat()
    reply: object
    if how == "EVALSHA":
        reply = c.evalsha(sha, 1, "k")
    elif how == "MULTI":
        p = c.pipeline(transaction=True)
        p.eval(script, 1, "k")
        reply = p.execute(raise_on_error=False)[0]
    else:
        reply = c.eval(script, 1, "k")
    rows = c.info("commandstats")
    figures = (
        str(reply),
        c.info("errorstats"),
        {
            name: {
                k: rows.get("cmdstat_" + name, {}).get(k, 0)
                for k in ("calls", "rejected_calls", "failed_calls")
            }
            for name in ("eval", "evalsha", "incr")
        },
    )
    c.close()
    return figures


def test_each_commands_error_in_a_reply_fails_the_call_once_more(servers):  # noqa: F811
    """Redis counts a script's call failed once for each command's error its
    reply passes on (afterErrorReply's NO_STATS_UPDATE), and once more if
    the script made one of them, on one shard, across shards, after an
    escape, by EVALSHA, and in MULTI."""
    scripts = [
        "redis.call('set', KEYS[1], 'x')\nreturn {redis.pcall('incr', KEYS[1]), redis.pcall('incr', KEYS[1])}",
        "redis.call('set', KEYS[1], 'x')\n"
        "return {redis.pcall('incr', KEYS[1]), {redis.pcall('nosuch')}, redis.error_reply('E x'), {err='F y'}}",
        "redis.call('set', KEYS[1], 'x')\nlocal n = #redis.call('keys', '*')\n"
        "return {redis.pcall('incr', KEYS[1]), redis.pcall('incr', KEYS[1]), {err='F y'}}",
        "redis.call('set', 'other{q}', 'x')\nreturn {redis.pcall('incr', 'other{q}'), redis.pcall('incr', 'other{q}')}",
    ]
    real, ours = servers
    for script in scripts:
        for how in ("EVAL", "EVAL again", "EVALSHA", "MULTI"):
            assert _failures_of(ours, script, how) == _failures_of(real, script, how), (script, how)


def test_each_commands_error_in_a_functions_reply_fails_fcall_once_more(servers):  # noqa: F811
    library = (
        "#!lua name=errs\n"
        "redis.register_function('errs', function(keys)\n"
        "  redis.call('set', keys[1], 'x')\n"
        "  if #keys > 1 then redis.call('keys', '*') end\n"
        "  return {redis.pcall('incr', keys[1]), redis.pcall('incr', keys[1]), {err='F y'}}\n"
        "end)\n"
    )

    def figures(port: int, *keys: str) -> tuple:
        c = redis.Redis(port=port, protocol=2)
        c.flushall()
        c.function_load(library, replace=True)
        c.config_resetstat()
        reply = c.fcall("errs", len(keys), *keys)
        row = c.info("commandstats")["cmdstat_fcall"]
        got = (str(reply), c.info("errorstats"), row["calls"], row["failed_calls"])
        c.close()
        return got

    real, ours = servers
    for keys in (("k",), ("k", "other{q}")):
        assert figures(ours, *keys) == figures(real, *keys), keys


def test_errors_of_unpack_and_byte_under_another_name_under_pcall(servers):  # noqa: F811
    """A script that reaches unpack or string.byte under another name calls
    wrappers (see luaprelude.lua); under pcall their errors read as the real
    functions' would: '?' when pcall calls one, else the name and the line
    of the call."""
    alias = "local u, b = _G['unp'..'ack'], string['by'..'te']\n"
    for body in (
        "return {pcall(u, nil)}",
        "return {pcall(b, 'abc', 'x')}",
        "local ok, e = pcall(function() local r = u(nil) return r end)\nreturn e",
        "local ok, e = pcall(function() local r = b('abc', 'x') return r end)\nreturn e",
        "local ok, e = pcall(function() local r = ('abc'):byte('x') return r end)\nreturn e",
        "local t = {f = b}\nlocal ok, e = pcall(function() local r = t.f({}) return r end)\nreturn e",
        "local t = {} for i = 1, 9000 do t[i] = i end\n"
        "local ok, e = pcall(function() local r = u(t) return r end)\nreturn e",
        "return {u({1, 2, 3}), b('abc', 1, -1)}",
    ):
        same(servers, alias + body)


# 7999 values from cmsgpack.unpack (a positive fixint each).
PACKED = "string.rep(string.char(1), 7999)"


def test_long_calls_from_libraries_and_coroutines_under_other_names_run_once(servers):  # noqa: F811
    """A script that passes redis.call the many values of cmsgpack.unpack or
    struct.unpack reached under another name, or of a coroutine, ran twice
    (the first run undone, not quite: with one shard its writes and what it
    published happened twice, MONITOR showed its calls twice), and failed
    under its own pcall.  Those results are caught as they come, as
    unpack's are (see luaprelude.lua)."""
    before = "redis.call('publish', 'ch', 'm'); redis.call('incr', KEYS[1])\n"
    for body in (
        "local m = cmsgpack['unp'..'ack']\nlocal r = redis.call('rpush', KEYS[2], m("
        + PACKED
        + "))\nreturn r",
        "local s = struct['unp'..'ack']\n"
        "local r = redis.call('rpush', KEYS[2], s(string.rep('b', 7997), string.rep(string.char(1), 7997)))\n"
        "return r",
        "local t = {} for i = 1, 7999 do t[i] = i end\n"
        "local co = coroutine.create(function(x) coroutine.yield(_G['unp'..'ack'](x)) end)\n"
        "local r = redis.call('rpush', KEYS[2], select(2, coroutine.resume(co, t)))\nreturn r",
        "local t = {} for i = 1, 7999 do t[i] = i end\n"
        "local f = coroutine.wrap(function(x) coroutine.yield(_G['unp'..'ack'](x)) end)\n"
        "local r = redis.call('rpush', KEYS[2], f(t))\nreturn r",
        "local t = {} for i = 1, 7999 do t[i] = i end\n"
        "local f = coroutine.wrap(function() return redis.call('rpush', KEYS[2], coroutine.yield()) end)\n"
        "f()\nlocal r = f(_G['unp'..'ack'](t))\nreturn r",
        "local m = cmsgpack['unp'..'ack']\nlocal n = #redis.call('keys', '*')\n"
        "local r = redis.call('rpush', KEYS[2], m(" + PACKED + "))\nreturn {n, r}",
    ):
        got = same(servers, before + body, "n{t}", "l{t}", counted=ACCEPTORS)
        assert got["messages"] == [b"m"] and got["values"][0] == b"1"
    same(
        servers,
        "redis.call('publish', 'ch', 'm')\nlocal m = cmsgpack['unp'..'ack']\n"
        "local ok, r = pcall(redis.call, 'rpush', KEYS[1], m(" + PACKED + "))\nreturn {tostring(ok), r}",
        "l",
    )


def test_errors_of_wrapped_libraries_and_coroutines(servers):  # noqa: F811
    for script in (
        "local f = coroutine.wrap(function() error('boom') end)\nlocal r = f()\nreturn r",
        "local f = coroutine.wrap(function() error({err='MY boom'}) end)\nlocal r = f()\nreturn r",
        "local f = coroutine.wrap(function() redis.call('nosuch') end)\nlocal r = f()\nreturn r",
        "local f = coroutine.wrap(function() local x = nil; return x.y end)\nlocal ok, e = pcall(f)\nreturn e",
        "local r = coroutine.resume(1)\nreturn r",
        "local r = coroutine.wrap(1)\nreturn r",
        "local f = coroutine.wrap(function() end)\nf()\nlocal r = f()\nreturn r",
        "local co = coroutine.create(function(a) local b = coroutine.yield(a + 1); return b * 2 end)\n"
        "local a, b = coroutine.resume(co, 1)\nlocal c, d = coroutine.resume(co, 5)\n"
        "local e, f = coroutine.resume(co)\nreturn {tostring(a), b, tostring(c), d, tostring(e), f}",
        "return {cmsgpack.unpack(cmsgpack.pack(1, 2, 'x')), struct.unpack('bb', 'ab')}",
    ):
        same(servers, script)


# A script on a shard of several publishes, then waits (a few thousand
# calls at most) until someone subscribes: another client, on another
# acceptor, subscribes meanwhile where it can (shardkv: SUBSCRIBE is the
# acceptor's), after the script as in Redis.  The count PUBLISH answered
# and the subscribers the message reached must agree.
WAITS = (
    "local n = redis.call('publish', 'ch', 'm')\n"
    "local i = 0\n"
    "while i < 3000 and redis.call('pubsub', 'numsub', 'ch')[2] == 0 do i = i + 1 end\n"
)


@pytest.fixture(scope="module")
def started() -> Iterator[dict[tuple[int, int], tuple[ServerProcess, ServerProcess]]]:
    """The module's (redis-server, shardkv) pairs, by the shardkv's
    (shards, acceptors), stopped at the module's end."""
    pairs: dict[tuple[int, int], tuple[ServerProcess, ServerProcess]] = {}
    yield pairs
    for real, ours in pairs.values():
        real.stop()
        ours.stop()


@pytest.fixture
def pair_of(request, started) -> Iterator[Callable[[int, int], tuple[ServerProcess, ServerProcess]]]:
    """``pair_of(shards, acceptors)``: a redis-server and a shardkv of that
    shape, started by the module's first test that asks for it and shared
    by the others (each scenario empties them first, and ends its scripts,
    subscribers and settings).  The pairs a test that failed used are
    stopped: the next test starts new ones."""
    used: list[tuple[int, int]] = []

    def get(shards: int, acceptors: int) -> tuple[ServerProcess, ServerProcess]:
        if (shards, acceptors) not in started:
            started[shards, acceptors] = (start_redis(), start_shardkv(shards=shards, acceptors=acceptors))
        used.append((shards, acceptors))
        for proc in started[shards, acceptors]:
            assert until(lambda port=proc.port: _no_subscriber(port)), "a test before left a subscriber"
        return started[shards, acceptors]

    failed = request.session.testsfailed
    yield get
    if request.session.testsfailed != failed:
        for shape in set(used):
            for proc in started.pop(shape):
                proc.stop()


def _no_subscriber(port: int) -> bool:
    """Whether no client subscribes to a channel or pattern: a closed
    subscriber counts until its server has read the close, and many
    scenarios here count PUBLISH's receivers on the same channels (a
    subscriber a test before just closed, not yet gone on a loaded
    machine, is counted by the next test's PUBLISH)."""
    with RespClient(port, timeout=20) as c:
        return c.command("PUBSUB", "CHANNELS") == [] and c.command("PUBSUB", "NUMPAT") == 0


@pytest.fixture
def two_acceptors(pair_of) -> tuple[int, int]:
    real, ours = pair_of(2, 2)
    return real.port, ours.port


def _count_and_delivery(port: int, script: str, acceptors: int) -> tuple:
    pick = (lambda i: client_on(port, i)) if acceptors > 1 else (lambda i: RespClient(port))
    runner, subscriber = pick(0), pick(1)
    runner.command("FLUSHALL")
    runner.send("EVAL", script, "0")
    time.sleep(0.2)  # (so the script has published: Redis runs SUBSCRIBE after it anyway)
    subscriber.send("SUBSCRIBE", "ch")
    counted = runner.read_reply()
    runner.command("PUBLISH", "ch", "end")
    got = []
    while (reply := subscriber.read_reply())[0] != b"message" or reply[2] != b"end":  # type: ignore[index]
        if reply[0] == b"message":  # type: ignore[index]
            got.append(reply[2])  # type: ignore[index]
    runner.close()
    subscriber.close()
    return counted, got


def test_a_held_publish_reaches_whom_it_counted_with_several_acceptors(two_acceptors):
    real, ours = two_acceptors
    for script in (WAITS + "return n", WAITS + "local k = #redis.call('keys', '*')\nreturn n"):
        expected = _count_and_delivery(real, script, 1)
        counted, got = _count_and_delivery(ours, script, 2)
        assert counted == len(got), script
        assert expected == (0, [])


def test_struct_and_cmsgpack_unpack_give_as_many_values_as_redis(servers):  # noqa: F811
    """Redis's struct.unpack and cmsgpack.unpack check their C stack (8000
    values, their arguments included) as they go: one value more fails."""
    for n, pos in ((7997, ""), (7998, ""), (7996, ", 1"), (7997, ", 1")):
        same(servers, f"return select('#', struct.unpack(string.rep('b', {n}), string.rep('\\1', {n}){pos}))")
    same(servers, "return select('#', struct.unpack('bx' .. string.rep('b', 7997), string.rep('\\1', 7999)))")
    for n in (7999, 8000):
        same(servers, f"return select('#', cmsgpack.unpack(string.rep('\\1', {n})))")
    same(servers, "local ok, e = pcall(cmsgpack.unpack, string.rep('\\1', 8000))\nreturn e")
    for limit in ("7997", "7998", "7996, 1", "7997, 1"):
        same(servers, f"return select('#', cmsgpack.unpack_limit(string.rep('\\1', 9000), {limit}))")


def _runs_for(microseconds: int) -> str:
    """Lua that spins, reading TIME, for ``microseconds``."""
    return (
        "local t = redis.call('time')\n"
        "local start = t[1] * 1000000 + t[2]\n"
        "while true do\n"
        "  local now = redis.call('time')\n"
        f"  if now[1] * 1000000 + now[2] - start > {microseconds} then break end\n"
        "end\n"
    )


# A script publishes, runs on for a second, and publishes again; another
# client subscribes meanwhile.  In Redis a script is atomic: the SUBSCRIBE
# is served after it, so neither message reaches that client, and the
# second PUBLISH counts nobody.  In shardkv the SUBSCRIBE waits until every
# shard has run the scripts it had (see shardkv.acceptor.pubsub), and a
# script's PUBLISH leaves out those that subscribed after it started.
PUBLISHES_TWICE = (
    "redis.call('publish', 'ch', 'a')\n" + _runs_for(1000000) + "return redis.call('publish', 'ch', 'b')\n"
)


def _subscribed_meanwhile(port: int, acceptors: int, *keys: str) -> tuple:
    assert until(lambda: _no_subscriber(port))  # (the last call's, just closed)
    pick = (lambda i: client_on(port, i)) if acceptors > 1 else (lambda i: RespClient(port))
    runner, subscriber = pick(0), pick(1)
    runner.command("FLUSHALL")
    writes = "".join(f"redis.call('set', KEYS[{i + 1}], 1)\n" for i in range(len(keys)))
    runner.send("EVAL", writes + PUBLISHES_TWICE, str(len(keys)), *keys)
    time.sleep(0.3)  # the script runs
    subscriber.send("SUBSCRIBE", "ch")
    counted = runner.read_reply()
    got = []
    while (reply := subscriber.read_reply())[0] != b"subscribe":  # type: ignore[index]
        got.append(reply[2])  # type: ignore[index]
    runner.command("PUBLISH", "ch", "end")
    while (reply := subscriber.read_reply())[0] != b"message" or reply[2] != b"end":  # type: ignore[index]
        if reply[0] == b"message":  # type: ignore[index]
            got.append(reply[2])  # type: ignore[index]
    runner.close()
    subscriber.close()
    return counted, got


@pytest.mark.parametrize("shards,acceptors", [(1, 1), (2, 1), (2, 2)])
def test_a_script_does_not_publish_to_who_subscribed_while_it_ran(pair_of, shards, acceptors):
    real, ours = pair_of(shards, acceptors)
    expected = _subscribed_meanwhile(real.port, 1)
    assert expected == (0, [])
    assert _subscribed_meanwhile(ours.port, acceptors) == expected
    if shards > 1:  # a script across shards
        keys = [f"k{i}" for i in range(8)]
        a = keys[0]
        b = next(k for k in keys if Router(2).shard_of(k.encode()) != Router(2).shard_of(a.encode()))
        assert _subscribed_meanwhile(real.port, 1, a, b) == expected
        assert _subscribed_meanwhile(ours.port, acceptors, a, b) == expected


# A script runs for a second, then counts subscribers; meanwhile one client
# subscribes to ``a`` and ``a*`` and another, subscribed to ``b`` and
# ``b*``, unsubscribes.  In Redis both are served after the script: it
# counts the old subscriptions, and neither client has a reply before the
# script's.  (Across shards: the same script reads KEYS first.)
COUNTS_LATE = _runs_for(1000000) + (
    "return {redis.call('pubsub', 'numsub', 'a', 'b'), redis.call('pubsub', 'numpat'),\n"
    "        redis.call('pubsub', 'channels', '*')}\n"
)


def _changed_meanwhile(port: int, acceptors: int, script: str) -> tuple:
    pick = (lambda i: client_on(port, i)) if acceptors > 1 else (lambda i: RespClient(port))
    runner, joining, leaving = pick(0), pick(1), pick(0)
    runner.command("FLUSHALL")
    leaving.send("SUBSCRIBE", "b")
    leaving.send("PSUBSCRIBE", "b*")
    assert [leaving.read_reply()[0] for _ in range(2)] == [b"subscribe", b"psubscribe"]  # type: ignore[index]
    runner.send("EVAL", script, "0")
    time.sleep(0.3)  # the script runs
    joining.send("SUBSCRIBE", "a")
    joining.send("PSUBSCRIBE", "a*")
    leaving.send("UNSUBSCRIBE", "b")
    leaving.send("PUNSUBSCRIBE", "b*")
    time.sleep(0.3)  # the script still runs: nothing has answered them yet
    early = (_has_reply(joining), _has_reply(leaving))
    counted = runner.read_reply()
    replies = [c.read_reply() for c in (joining, joining, leaving, leaving)]
    for c in (runner, joining, leaving):
        c.close()
    return counted, early, replies


def _has_reply(c: RespClient) -> bool:
    c.sock.setblocking(False)
    try:
        return bool(c.sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    finally:
        c.sock.setblocking(True)
        c.sock.settimeout(10)


@pytest.mark.parametrize("shards,acceptors", [(1, 1), (2, 1), (2, 2)])
def test_subscribes_wait_for_the_script_that_runs(pair_of, shards, acceptors):
    real, ours = pair_of(shards, acceptors)
    scripts = [COUNTS_LATE] + (["redis.call('keys', '*')\n" + COUNTS_LATE] if shards > 1 else [])
    for script in scripts:
        expected = _changed_meanwhile(real.port, 1, script)
        assert expected[:2] == ([[b"a", 0, b"b", 1], 1, [b"b"]], (False, False))
        assert _changed_meanwhile(ours.port, acceptors, script) == expected


# A SUBSCRIBE sent while a script runs, which then passes
# busy-reply-threshold: Redis reads it then and answers -BUSY, as it
# answers every command but the allow-busy ones.  Nothing tells a client
# that a script has started and is not busy yet (a SUBSCRIBE sent once it
# is busy is refused at once, without waiting behind it), so the SUBSCRIBE
# follows the EVAL at once, and the script, as it ends, counts the
# channel's subscribers: 1 says the SUBSCRIBE overtook it (served before
# it, or while it ran), a try that does not count, made again on a fresh
# channel, each later one after a head start a little longer; 0 says it
# came behind it, and its reply is the one compared.
BUSY_SECONDS = _runs_for(1500000) + "return redis.call('pubsub', 'numsub', ARGV[1])[2]\n"
TRIES = 20  # tries whose SUBSCRIBE overtook the script, at most


def _subscribe_behind_a_busy_script(port: int, acceptors: int) -> tuple:
    for attempt in range(TRIES):
        counted, *got = _subscribe_with_a_busy_script(port, acceptors, attempt)
        if counted == "0":
            return tuple(got)
        assert counted == "1", counted
    raise AssertionError(f"in {TRIES} tries the SUBSCRIBE never came behind the script")


def _subscribe_with_a_busy_script(port: int, acceptors: int, attempt: int) -> tuple:
    pick = (lambda i: client_on(port, i)) if acceptors > 1 else (lambda i: RespClient(port))
    runner, subscriber = pick(0), pick(1)
    channel = f"ch{attempt}"
    runner.command("CONFIG", "SET", "busy-reply-threshold", "500")
    runner.send("EVAL", BUSY_SECONDS, "0", channel)
    time.sleep(min(0.02 * attempt, 0.2))  # (none at first: a try that overtook says so)
    subscriber.send("SUBSCRIBE", channel)
    subscriber.send("PING")
    got = tuple(str(c.read_reply()) for c in (runner, subscriber, subscriber))
    runner.command("CONFIG", "SET", "busy-reply-threshold", "5000")
    runner.close()
    subscriber.close()
    return got


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_subscribe_behind_a_script_that_goes_busy_gets_busy(pair_of, acceptors):
    real, ours = pair_of(2, acceptors)
    expected = _subscribe_behind_a_busy_script(real.port, 1)
    assert expected[0].startswith("BUSY ") and expected[1].startswith("BUSY ")
    assert _subscribe_behind_a_busy_script(ours.port, acceptors) == expected


# A subscriber's UNSUBSCRIBE (PUNSUBSCRIBE) sent while a script runs, then
# another client's PUBLISH: Redis serves both after the script, in the
# order they came, so the message neither reaches nor counts the leaver.
# shardkv's UNSUBSCRIBE waits for the shards' scripts and its PUBLISH does
# not; the PUBLISH must still see the leaver gone (unit/pubsub's
# "PUBLISH/SUBSCRIBE after UNSUBSCRIBE without arguments" at K=2 is the
# same race without a script: the UNSUBSCRIBE's round trip to the shards).
HALF_SECOND = _runs_for(600000) + "return 1\n"


def _published_while_leaving(port: int, acceptors: int, publisher_on: int, how: tuple) -> tuple:
    pick = (lambda i: client_on(port, i)) if acceptors > 1 else (lambda i: RespClient(port))
    runner, leaver, publisher = pick(0), pick(1), pick(publisher_on)
    join, leave = how
    leaver.send(join, "ch1", "ch2")
    assert [leaver.read_reply()[0] for _ in range(2)] == [join.lower().encode()] * 2  # type: ignore[index]
    runner.send("EVAL", HALF_SECOND, "0")
    time.sleep(0.2)  # the script runs
    leaver.send(leave)
    time.sleep(0.1)
    counted = publisher.command("PUBLISH", "ch1", "hello")
    ran = runner.read_reply()
    leaver.send("PING")
    got = []
    while (reply := leaver.read_reply()) != b"PONG":
        got.append(reply)
    for c in (runner, leaver, publisher):
        c.close()
    # (Which channel an UNSUBSCRIBE without arguments confirms first is
    # unordered in Redis: each confirmation names one and the count left.)
    return counted, ran, sorted(r[0] for r in got), sorted(r[1] for r in got), sorted(r[2] for r in got)


@pytest.mark.parametrize("how", [("SUBSCRIBE", "UNSUBSCRIBE"), ("PSUBSCRIBE", "PUNSUBSCRIBE")])
@pytest.mark.parametrize("publisher_on", [0, 1])
def test_a_publish_after_an_unsubscribe_that_waits_does_not_reach_it(two_acceptors, publisher_on, how):
    real, ours = two_acceptors
    expected = _published_while_leaving(real, 1, 0, how)
    assert expected[:2] == (0, 1) and expected[3] == [b"ch1", b"ch2"]
    assert _published_while_leaving(ours, 2, publisher_on, how) == expected


def _replies_of(port: int, scripts: list) -> list:
    c = redis.Redis(port=port, protocol=2)
    got = []
    for script in scripts:
        try:
            got.append(c.eval(script, 0))
        except redis.ResponseError as e:
            got.append(("error", str(e)))
    c.close()
    return got


@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
def test_string_dump_refuses_what_redis_makes_c_functions(servers, wide):  # noqa: F811
    """The prelude's Lua wrappers stand in for Redis's C functions, which
    string.dump cannot dump: no bytecode of the prelude reaches a script
    (a script that names unpack runs wide, with the prelude's redis.call)."""
    first = "unpack({})\n" if wide else ""
    names = ["redis.call", "redis.pcall", "redis.sha1hex", "redis.error_reply", "redis.status_reply"]
    names += ["redis.setresp", "redis.set_repl", "redis.log", "redis.breakpoint", "redis.debug"]
    names += ["cjson.encode", "cjson.decode", "cmsgpack.pack", "cmsgpack.unpack", "struct.pack"]
    names += ["struct.unpack", "tostring", "type", "unpack", "loadstring", "load", "pcall", "xpcall"]
    names += ["string.dump", "string.byte", "string.rep", "string.format", "table.concat", "math.floor"]
    names += ["coroutine.wrap", "coroutine.resume", "setmetatable", "getmetatable", "select", "error"]
    names += ["bit.band", "print", "assert", "rawget", "next", "ipairs", "pairs", "tonumber", "gcinfo"]
    scripts = [f"{first}return {{pcall(string.dump, {name})}}" for name in names]
    scripts += [f"{first}return string.dump({name})" for name in ("redis.call", "tostring", "cjson.encode")]
    scripts += [f"{first}local d = string.dump; return d(1)", f"{first}return {{pcall(string.dump)}}"]
    scripts += [f"{first}return type(string.dump(function() return 1 end))"]
    scripts += [f"{first}return loadstring(string.dump(function() return 1 end))"]
    real, ours = servers
    assert _replies_of(ours, scripts) == _replies_of(real, scripts)


def _counts_around_an_escape(port: int, commands: list[list[str]]) -> tuple:
    """``commands`` sent in one write after FLUSHALL and CONFIG RESETSTAT:
    their replies, then INFO commandstats' counts, errorstats and the
    keyspace hits and misses."""
    with RespClient(port, timeout=20) as c:
        c.command("FLUSHALL")
        c.command("CONFIG", "RESETSTAT")
        c.sock.sendall(b"".join(encode_command(*command) for command in commands))
        replies = [c.read() for _ in commands]
        info = c.command("INFO", "commandstats").decode()  # type: ignore[union-attr]
        errors = c.command("INFO", "errorstats").decode()  # type: ignore[union-attr]
        stats = c.command("INFO", "stats").decode()  # type: ignore[union-attr]
    # (each row's counts: not its times)
    calls = sorted(
        re.sub(r",usec=\d+,usec_per_call=[\d.]+", "", line)
        for line in info.splitlines()
        if line.startswith("cmdstat_")
    )
    return (
        replies,
        calls,
        sorted(line for line in errors.splitlines() if line.startswith("errorstat_")),
        sorted(line for line in stats.splitlines() if line.startswith("keyspace_")),
    )


@pytest.mark.parametrize("where", ["after", "before", "between", "errors"])
def test_commands_around_a_script_that_escapes_in_exec_count_once(ports, where):
    """An EXEC whose script, on its first run, reaches a key of a shard the
    transaction had not parked escapes: the run is undone and runs again
    across more shards.  The commands around the script, queued before and
    after it, count once (INFO commandstats, errorstats, keyspace hits and
    misses), as in Redis: the undone run counted them too (calls=2)."""
    own, other, third, hidden = key_on(0, "own"), key_on(1, "other"), key_on(3, "third"), key_on(2, "hidden")

    def escaping() -> str:
        # (the key it reaches is computed: none of its arguments names it)
        return f"-- {uuid.uuid4().hex}\nredis.call('set', KEYS[1], 'a')\nredis.call('set', string.reverse('{hidden[::-1]}'), 'b')\nreturn 1"

    queued = {
        "after": [
            ["EVAL", escaping(), "1", own],
            ["PING"],
            ["SET", own, "z"],
            ["GET", other],
            ["INCR", third],
        ],
        "before": [["SET", own, "z"], ["GET", other], ["INCR", third], ["EVAL", escaping(), "1", own]],
        "between": [
            ["SET", own, "z"],
            ["EVAL", escaping(), "1", own],
            ["GET", other],
            ["EVAL", escaping(), "1", third],
            ["INCR", third],
        ],
        "errors": [
            ["INCR", own],
            ["EVAL", escaping(), "1", own],
            ["INCR", own],
            ["GET", other],
            ["HGET", own, "f"],
        ],
    }[where]
    commands = [["MULTI"], *queued, ["EXEC"]]
    expected = _counts_around_an_escape(ports["redis"], commands)
    assert _counts_around_an_escape(ports["shardkv"], commands) == expected


# A script publishes on ``ch``, runs on, then writes ``k``; a client of the
# other acceptor subscribes to both meanwhile, and that acceptor (stopped
# while the script runs) reads the SUBSCRIBE before the script's keyspace
# event, once the shard's script flag is clear again.  In Redis the
# SUBSCRIBE is served after the script: neither the message nor the event
# reaches it.  Served at once, it got the event but not the message.
WRITES_LATE = "redis.call('publish', 'ch', 'a')\n" + _runs_for(300000) + "redis.call('set', KEYS[1], 'v')\n"


def _subscribed_before_the_events(port: int, acceptors: int) -> list:
    pick = (lambda i: client_on(port, i)) if acceptors > 1 else (lambda i: RespClient(port))
    runner, other, watcher, subscriber = pick(0), pick(0), pick(1), pick(1)
    runner.command("FLUSHALL")
    runner.command("CONFIG", "SET", "notify-keyspace-events", "KA")
    watcher.send("SUBSCRIBE", "ch", "__keyspace@0__:k")  # (its acceptor hears the shards' events)
    assert [watcher.read_reply()[0] for _ in range(2)] == [b"subscribe"] * 2  # type: ignore[index]
    pid = int(subscriber.command("INFO", "server").split(b"process_id:")[1].split(b"\r")[0])  # type: ignore[union-attr]
    runner.send("EVAL", WRITES_LATE, "1", "k")
    assert watcher.read_reply() == [b"message", b"ch", b"a"]  # the script published
    stopped = acceptors > 1
    if stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        subscriber.send("SUBSCRIBE", "ch", "__keyspace@0__:k")
        assert until(lambda: other.command("GET", "k") == b"v")  # the script ended
    finally:
        if stopped:
            os.kill(pid, signal.SIGCONT)
    assert runner.read_reply() is None
    subscriber.send("PING")
    got = [subscriber.read_reply()]
    while got[-1] != [b"pong", b""]:  # (its last reply)
        got.append(subscriber.read_reply())
    runner.command("CONFIG", "SET", "notify-keyspace-events", "")
    for c in (runner, other, watcher, subscriber):
        c.close()
    return got


def test_a_subscribe_read_before_a_scripts_events_comes_after_them(pair_of):
    real, ours = pair_of(2, 2)
    expected = _subscribed_before_the_events(real.port, 1)
    assert expected == [[b"subscribe", b"ch", 1], [b"subscribe", b"__keyspace@0__:k", 2], [b"pong", b""]]
    assert _subscribed_before_the_events(ours.port, 2) == expected
