"""The acceptor's compile check agrees with the worker's compile.

The acceptor caches a script only if :func:`compiles` says so, and the
worker compiles it again to run it: where they disagreed, a script would
be cached that no shard can run, or a script that runs would not be
cached.  Each script here goes to both; the differential tests against
redis-server are in tests/compat/test_scripting_flush.py.
"""

from __future__ import annotations

import random

import pytest

from shardkv.protocol.resp import Error
from shardkv.runtime.scriptsource import compiles, parse_shebang, source_chunk
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard

LOAD_ERRORS = (
    "ERR Error compiling script",
    "ERR Invalid script shebang",
    "ERR Invalid engine in script shebang",
    "ERR Unexpected engine in script shebang",
    "ERR Unknown lua shebang option",
    "ERR Unexpected flag in script shebang",
)

SCRIPTS = [
    b"return 1",
    b"",
    b"return +",
    b"return 1 1",
    b"error('compiles, fails when it runs')",
    b"local t = {} for i = 1, 3 do t[i] = i end return t",
    b"#!lua\nreturn 1",
    b"#!lua flags=\nreturn 1",
    b"#!lua flags=no-writes,allow-oom\nreturn 1",
    b"#!lua flags=no-writes,\nreturn 1",
    b"#!lua flags=,\nreturn 1",
    b"#!lua flags=bogus\nreturn 1",
    b"#!lua name=x\nreturn 1",
    b"#!python\nreturn 1",
    b"#!lua",
    b'#!"lua\nreturn 1',
    b"#!lua\n\x1breturn 1",
    b"\x1breturn 1",
    b"\x1bLuaQ\x00\x01\x04\x08\x04\x08\x00",
    b"return [[unfinished",
    b"--[[ a comment ]] return 2",
    b"return redis.call('get', KEYS[1])",
]


def _shard_compiles(shard: Shard, body: bytes) -> bool:
    reply = shard.execute([b"EVAL", body, b"0"])
    return not (isinstance(reply, Error) and reply.message.startswith(LOAD_ERRORS))


def _mutations(count: int) -> list[bytes]:
    """Scripts a character or two away from valid ones (seeded: the same
    every run)."""
    rng = random.Random(18)
    alphabet = b"()[]{}=+-*/#!,;:.'\"\n \x1b0123456789abcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(count):
        body = bytearray(rng.choice(SCRIPTS))
        for _ in range(rng.randint(1, 2)):
            at = rng.randint(0, len(body))
            if body and rng.random() < 0.5:
                del body[min(at, len(body) - 1)]
            else:
                body[at:at] = bytes([rng.choice(alphabet)])
        out.append(bytes(body))
    return out


@pytest.fixture(scope="module")
def shard() -> Shard:
    shard = Shard(0, 1, FakeClock())
    shard.keyspace.tick()
    return shard


@pytest.mark.parametrize("body", SCRIPTS)
def test_the_acceptor_caches_what_a_worker_compiles(shard, body):
    assert compiles(body) == _shard_compiles(shard, body)


def test_the_two_agree_on_scripts_near_valid_ones(shard):
    disagree = [body for body in _mutations(300) if compiles(body) != _shard_compiles(shard, body)]
    assert disagree == []


def test_bytecode_is_parsed_as_source(shard):
    """Redis's Lua never loads a precompiled chunk (a sandbox escape)."""
    assert source_chunk(b"\x1bLuaQ") == b" \x1bLuaQ"
    assert source_chunk(b"\nreturn 1") == b"\nreturn 1"
    reply = shard.execute([b"EVAL", b"\x1bLuaQ", b"0"])
    assert isinstance(reply, Error)
    assert reply.message == (
        "ERR Error compiling script (new function): user_script:1: unexpected symbol near 'char(27)'"
    )


def test_a_flags_list_is_split_at_every_comma():
    assert parse_shebang(b"#!lua flags=\nreturn 1") == (0, 12)
    assert parse_shebang(b"#!lua flags=no-writes,allow-oom\n") == (3, 31)
    for bad in (b"#!lua flags=,\n", b"#!lua flags=no-writes,\n", b"#!lua flags=,no-writes\n"):
        assert not compiles(bad + b"return 1")


SMALL = 1 << 20  # a Lua state's limit in the tests below, for scripts of a few hundred KB


@pytest.fixture
def small_limit(monkeypatch) -> Shard:
    """The acceptor's check and a worker with Lua states of SMALL bytes."""
    from shardkv.runtime import scriptsource
    from shardkv.worker import scripting

    monkeypatch.setattr(scriptsource, "LUA_MAX_MEMORY", SMALL)
    monkeypatch.setattr(scripting, "LUA_MAX_MEMORY", SMALL)
    monkeypatch.setattr(scriptsource, "_CHECK", [])
    shard = Shard(0, 1, FakeClock())
    shard.keyspace.tick()
    return shard


OUT_OF_MEMORY = "ERR Error compiling script (new function): not enough memory"


def test_a_script_too_big_for_the_workers_lua_is_not_cached(small_limit):
    """A script whose compile runs a worker's Lua out of memory (its limit,
    LUA_MAX_MEMORY; Redis has none) runs the check's out too: not cached.
    Its code bigger than the limit is refused by both before it goes into
    Lua (where it would not fit: a panic, which aborts the process), and
    each state is collected after it: short scripts compile again."""
    from shardkv.runtime import scriptsource

    for body in (b"a=1 " * 40000, b"#!lua\n" + b"a=1 " * 40000, b"--" + b"x" * 2 * SMALL, b"x" * 2 * SMALL):
        assert not compiles(body)
        reply = small_limit.execute([b"EVAL", body, b"0"])
        assert isinstance(reply, Error) and reply.message == OUT_OF_MEMORY
        lua = scriptsource._CHECK[0][0]
        assert lua.get_memory_used() < SMALL // 2
        for short in (b"return 1", b"a=1 " * 1000):
            assert compiles(short)
            assert small_limit.execute([b"EVAL", short, b"0"]) != Error(OUT_OF_MEMORY)
    assert compiles(b"a=1 " * 5000)


def test_a_worker_that_refuses_a_script_the_check_took_says_why(small_limit):
    """A worker's state holds more than the check's (its prelude, its
    scripts) and dumps the bytecode it compiled: a script that fits the
    check by less is refused there with Lua's message, not an internal
    error (the acceptors then forget it, see ScriptCache.forget)."""
    for n in range(10000, 60001, 2500):
        body = b"a=1 " * n
        reply = small_limit.execute([b"EVAL", body, b"0"])
        if isinstance(reply, Error):  # (one that compiles writes a global: refused)
            assert "internal error" not in reply.message
            if reply.message.startswith("ERR Error compiling"):
                assert reply.message == OUT_OF_MEMORY
        assert small_limit.execute([b"EVAL", b"return 7", b"0"]) == 7


def test_a_script_a_shard_refused_is_forgotten_as_cached_then():
    """ScriptCache.forget: a shard refused to compile a script that EVAL
    cached (and told the other acceptors of, with its number): forgotten
    here, and by another acceptor if cached at that number or before (a
    SCRIPT FLUSH and a load since keep it)."""
    from shardkv.acceptor.scriptcache import ScriptCache

    cache = ScriptCache()
    cache.add(b"s", b"body", 3)
    cache.knows(0).add(b"s")
    cache.settled.add(b"s")
    assert cache.forget(b"s", 3)
    assert b"s" not in cache.bodies and b"s" not in cache.numbers
    assert b"s" not in cache.knows(0) and b"s" not in cache.settled
    assert not cache.forget(b"s", 3)
    other = ScriptCache()
    other.add(b"s", b"body", 3)
    assert other.forget(b"s", 3) and b"s" not in other.bodies
    other.add(b"s", b"body", 4)
    assert not other.forget(b"s", 3) and other.bodies[b"s"] == b"body"


# Values Python pushes into a worker's Lua state, each bigger than the room
# left in it (SMALL): before, lupa's push outside any protected call was a
# Lua panic (the process aborted) or, inside redis.call, a jump over
# Python's frames that hung it.
_BIG_VALUES = r"""
import sys
from shardkv.runtime import scriptsource
from shardkv.worker import scripting
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard

SMALL = int(sys.argv[1])
scriptsource.LUA_MAX_MEMORY = scripting.LUA_MAX_MEMORY = SMALL
shard = Shard(0, 1, FakeClock())
shard.keyspace.tick()
big = b"x" * 2 * SMALL
shard.execute([b"SET", b"big", big])
for i in range(8):
    shard.execute([b"SET", b"k%d" % i, b"%d" % i * (SMALL // 6)])
shard.execute([b"HSET", b"h", *[b"%d" % i for i in range(100000)]])
cases = [
    [b"EVAL", b"return #ARGV[1]", b"0", big],
    [b"EVAL", b"return 1", b"1", big],
    [b"EVAL", b"return #ARGV", b"0", *[b"%d" % i for i in range(60000)]],
    [b"EVAL", b"return #redis.call('get', KEYS[1])", b"1", b"big"],
    [b"EVAL", b"return redis.pcall('get', KEYS[1])", b"1", b"big"],
    [b"EVAL", b"local ok = pcall(redis.call, 'get', KEYS[1]) return 1", b"1", b"big"],
    [b"EVAL", b"coroutine.resume(coroutine.create(function() redis.call('get', KEYS[1]) end)) return 1", b"1", b"big"],
    [b"EVAL", b"local t = {} for i = 0, 7 do t[i] = redis.call('get', 'k' .. i) end return #t", b"0"],
    [b"EVAL", b"return #redis.call('hgetall', KEYS[1])", b"1", b"h"],
    [b"EVAL", b"return #cjson.decode(ARGV[1])", b"0", b"[" + b",".join([b"[]"] * 100000) + b"]"],
    [b"EVAL", b"return #cmsgpack.unpack(ARGV[1])", b"0", b"\xdc\xff\xff" + b"\x90" * 65535],
    [b"EVAL", b"local s = string.rep('x', 100000) return #cjson.encode({s, s, s, s, s, s, s, s, s, s})", b"0"],
    [b"EVAL", b"local s = string.rep('x', 100000) return #cmsgpack.pack(s, s, s, s, s, s, s, s, s, s)", b"0"],
    [b"FUNCTION", b"LOAD", b"#!lua name=l\nredis.register_function('f', function(k, a) return #a[1] end)"],
    [b"FCALL", b"f", b"0", big],
]
for case in cases:
    print(repr(shard.execute(case)))
    print(repr(shard.execute([b"EVAL", b"return 7", b"0"])))
"""


def test_a_value_too_big_for_the_scripts_lua_fails_the_script(tmp_path):
    """KEYS and ARGV, redis.call's and redis.pcall's replies, cjson's and
    cmsgpack's results that do not fit in the Lua state (a limit of
    shardkv's, LUA_MAX_MEMORY; Redis has none) fail the script with Lua's
    "not enough memory", as a failed allocation of its own would (a pcall
    in it cannot go on); the worker goes on, short scripts run."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _BIG_VALUES, str(SMALL)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 30, done.stderr[-2000:]
    for i in range(0, 30, 2):
        if i == 26:
            assert lines[i] == "b'l'"
            continue
        assert lines[i].startswith("Error('ERR Error running script ") and lines[i].endswith(
            ", not enough memory')"
        ), (i, lines[i])
        assert lines[i + 1] == "7"


def test_the_acceptors_no_writes_verdict_is_parse_shebangs():
    """CLIENT PAUSE and a disk error ask the acceptor whether a script
    declares no-writes: the same reading as the worker's (quotes, escapes,
    a NUL before the line feed, which makes the shebang invalid)."""
    from shardkv.acceptor.scriptcache import declares_no_writes
    from shardkv.protocol.errors import CommandError
    from shardkv.runtime.scriptsource import FLAG_NO_WRITES

    lines = [
        b"#!lua flags=no-writes\n",
        b'#!lua flags="no-writes"\n',
        b'#!lua "flags=no-writes"\n',
        b'#!lua flags="no-writes\\x00x"\n',
        b"#!lua flags=no-writes\0\n",
        b"#!lua\0 flags=no-writes\n",
        b"#!lua flags=allow-oom,no-writes\n",
        b"#!lua flags=no-writes,\n",
        b"#!lua flags=no-writes bogus\n",
        b'#!lua flags="no-writes\n',
        b"#!python flags=no-writes\n",
        b"#!lua flags=no-writes",
        b"#!lua\n",
        b"flags=no-writes\n",
    ]
    for line in lines:
        body = line + b"return 1"
        try:
            expected = bool(parse_shebang(body)[0] & FLAG_NO_WRITES)
        except CommandError:
            expected = False
        assert declares_no_writes(body) == expected, body
