"""A script's error where its entry has no xpcall (shardkv issue 18),
against redis-server.

The prelude's handler is lupa's message handler for every call from
Python into Lua (``luaprelude.lua``): the script's run, and the calls
into Lua that the run's Python callables make (a comparator of
``table.sort``, a metamethod a read runs).  Only the run's own error
becomes its error table; an error in one of the others goes on as it was
raised.  After a run's error, what the entry did after the run is done on
Python's error path: the one-key entries' shared KEYS and ARGV tables, the
ARGV owed to a run of no arguments, the usual forms of ``redis.call``
after a wide run.  Each reply's exact bytes are compared, EVAL's with no
key (``engine.run``) and EVALSHA's with one (``engine.one_key``).
"""

from __future__ import annotations

import hashlib
import re

import pytest

from tests.support.resp import RespClient

# A script that names ``unpack`` runs with the wide redis.call.
WIDE = "local _ = unpack "

# Errors in calls into Lua from Python that a script's run made, caught
# there or not.
NESTED = [
    "table.sort({3, 1, 2}, function(a, b) error('cmp') end)",
    "return {pcall(table.sort, {3, 1, 2}, function(a, b) error('cmp') end)}",
    "table.sort({3, 1, 2}, function(a, b) return redis.call('nosuchcmd') end)",
    "return {pcall(table.sort, {3, 1, 2}, function(a, b) return redis.call('nosuchcmd') end)}",
    "table.sort({3, 1, 2}, function(a, b) local x = nil return x.y end)",
    "return tostring(setmetatable({}, {__tostring = function() error('ts') end}))",
    "return {pcall(tostring, setmetatable({}, {__tostring = function() error('ts') end}))}",
    "return cjson.encode(setmetatable({}, {__index = function() error('idx') end}))",
    "local co = coroutine.create(function() table.sort({3, 1, 2}, function() error('in co') end) end)"
    " return {coroutine.resume(co)}",
    "local co = coroutine.create(function() redis.call('nosuchcmd') end) return {coroutine.resume(co)}",
    "return coroutine.wrap(function() table.sort({3, 1, 2}, function() error('wrapped') end) end)()",
    "local ok, e = pcall(error, 'e') error(e .. '!')",
    "error('plain')",
    "return redis.call('nosuchcmd')",
]

_ADDRESS = re.compile(rb"0x[0-9a-f]+")


def _both(ports, *args: str | int) -> bytes:
    """The reply of each server, which must be the same bytes."""
    replies = []
    for name in ("redis", "shardkv"):
        with RespClient(ports[name]) as c:
            replies.append(_ADDRESS.sub(b"0xADDRESS", c.call(*args)))
    assert replies[1] == replies[0], args
    return replies[0]


def _load(ports, script: str) -> str:
    for name in ("redis", "shardkv"):
        with RespClient(ports[name]) as c:
            c.command("SCRIPT", "LOAD", script)
    return hashlib.sha1(script.encode()).hexdigest()


@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
@pytest.mark.parametrize("script", NESTED)
def test_errors_of_calls_from_python_in_a_run(ports, script, wide):
    body = WIDE + script if wide else script
    _both(ports, "EVAL", body, 0)
    sha = _load(ports, body)
    _both(ports, "EVALSHA", sha, 1, "k")
    _both(ports, "EVALSHA", sha, 1, "k", "a")
    _both(ports, "EVALSHA", sha, 1, "k", "a", "b")


# Its KEYS and ARGV, read only to index them (the one-key entries share
# such tables between runs), or held (a table of each run's own).
AFTER = [
    "if ARGV[1] == 'x' then error('boom') end return {KEYS[1], #ARGV, ARGV[1] or '-'}",
    "local k, a = KEYS, ARGV if a[1] == 'x' then error('boom') end return {k[1], #a, a[1] or '-'}",
    "if ARGV[1] == 'x' then return redis.call('nosuchcmd') end return {KEYS[1], #ARGV, ARGV[1] or '-'}",
]


@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
@pytest.mark.parametrize("script", AFTER)
def test_runs_after_an_error_start_afresh(ports, script, wide):
    body = WIDE + script if wide else script
    sha = _load(ports, body)
    for args in (["x"], [], ["x"], ["y"], ["x", "z"], [], ["y", "z"], ["x"], ["y"]):
        _both(ports, "EVALSHA", sha, 1, "k" + "".join(args), *args)
    # a narrow script after a wide one's error: the usual redis.call, whose
    # error names the script's line
    _both(ports, "EVAL", "local x = 1\nreturn redis.call('nosuchcmd')", 1, "k")
    _both(ports, "EVAL", "return {KEYS[1], #ARGV}", 1, "k")
