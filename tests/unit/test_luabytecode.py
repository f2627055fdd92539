"""shardkv.worker.luabytecode: tail calls made plain calls, nothing else changed."""

from __future__ import annotations

import pytest
from lupa import lua51

from shardkv.worker.luabytecode import (
    OP_CALL,
    OP_TAILCALL,
    BytecodeError,
    keys_only_indexed,
    only_indexed,
    without_debug_info,
    without_tail_calls,
)

# A constructor of 27100 items: its SETLISTs past block 511 keep their block
# number in the next word, and block 541's (541 = 29 + 8 * 64) looks like a
# TAILCALL to a reader that does not skip it.
BIG = b"local big = {" + b",".join(b"%d" % i for i in range(1, 27101)) + b"}"
SOURCE = (
    BIG
    + b"""
local t = {}
for i = 1, 600 do t[i] = i end
local s = {1, 2, 3, unpack(t)}
for i = 1, #big do if big[i] ~= i then return 'big', i end end
local function depth(n) if n == 0 then return 0 end return depth(n - 1) end
local function where() error('here') end
local function tail() return where() end
local ok, err = pcall(tail)
return #s, depth(100), 2.5, 'k', true, nil, err
"""
)


@pytest.fixture
def lua():
    return lua51.LuaRuntime(encoding=None, unpack_returned_tuples=True)


def dump(lua, source: bytes) -> bytes:
    return lua.eval("function(s) return string.dump(assert(loadstring(s, '=chunk'))) end")(source)


def load(lua, code: bytes):
    return lua.eval("function(s) return assert(loadstring(s)) end")(code)


def test_same_results_with_the_callers_frame_kept(lua):
    before = dump(lua, SOURCE)
    after = without_tail_calls(before)
    assert len(after) == len(before) and after != before
    assert load(lua, after)() == load(lua, before)()
    # the caller's frame is there: the traceback of an error names it
    traceback = lua.eval("function(f) return select(2, xpcall(f, debug.traceback)) end")
    source = b"local function f() error('x') end\nlocal function g() return f() end\nreturn g()"
    assert b"'g'" not in traceback(load(lua, dump(lua, source)))
    assert b"'g'" in traceback(load(lua, without_tail_calls(dump(lua, source))))


def test_only_tail_calls_change(lua):
    before = dump(lua, SOURCE)
    after = without_tail_calls(before)
    changed = [i for i in range(len(before)) if before[i] != after[i]]
    assert changed
    for i in changed:  # an instruction's first byte (little-endian): TAILCALL to CALL
        assert before[i] & 0x3F == OP_TAILCALL and after[i] == before[i] - OP_TAILCALL + OP_CALL


def test_refuses_another_format():
    with pytest.raises(BytecodeError):
        without_tail_calls(b"\x1bLuaR\x00" + bytes(20))


def test_only_the_tail_calls_of_call_fields(lua):
    """without_call_tail_calls: ``return redis.call(...)`` keeps its frame,
    ``return f(...)`` stays a tail call."""
    from shardkv.worker.luabytecode import without_call_tail_calls

    source = (
        b"local redis = {call = function() error('x') end}\n"
        b"local function f() error('x') end\n"
        b"local function viacall() return redis.call() end\n"
        b"local function viaf() return f() end\n"
        b"return viacall, viaf"
    )
    traceback = lua.eval("function(f) return select(2, xpcall(f, debug.traceback)) end")
    viacall, viaf = load(lua, without_call_tail_calls(dump(lua, source)))()
    assert b"chunk:3:" in traceback(viacall)  # its frame, named by its line
    assert b"chunk:4:" not in traceback(viaf)
    before = dump(lua, SOURCE)
    assert load(lua, without_call_tail_calls(before))() == load(lua, before)()


def test_call_fields_through_locals(lua):
    """``local f = redis.call ... return f(...)`` keeps its frame too (the
    callee's register last written by a MOVE of such a local)."""
    from shardkv.worker.luabytecode import without_call_tail_calls

    source = (
        b"local redis = {call = function() error('x') end}\n"
        b"local function viaf() local f = redis.call; local g = f\n"
        b" return g() end\n"
        b"return viaf"
    )
    traceback = lua.eval("function(f) return select(2, xpcall(f, debug.traceback)) end")
    assert b"chunk:3:" not in traceback(load(lua, dump(lua, source))())
    assert b"chunk:3:" in traceback(load(lua, without_call_tail_calls(dump(lua, source)))())


def test_wrapped_tail_calls(lua):
    """without_wrapped_tail_calls: the tail calls of a function under a
    computed key, of a call's result, of a ``resume`` field (or another
    name of a wrapped function) or of a parameter keep their frame; those
    of a local function or another field (tail recursion) stay tail calls."""
    from shardkv.worker.luabytecode import without_wrapped_tail_calls

    source = (
        b"local t = {f = function() error('x') end, resume = function() error('x') end}\n"
        b"local function computed() local k = 'f'; return t[k]() end\n"
        b"local function result() return (function() return t.f end)()() end\n"
        b"local function resume() return t.resume() end\n"
        b"local function field() return t.f() end\n"
        b"local function depth(n) if n == 0 then return 0 end return depth(n - 1) end\n"
        b"local function param(f) return f() end\n"
        b"local function method() return t:resume() end\n"
        b"return computed, result, resume, field, depth, param, method"
    )
    traceback = lua.eval("function(f) return select(2, xpcall(f, debug.traceback)) end")
    bind = lua.eval("function(g, f) return function() local r = g(f); return r end end")
    before = dump(lua, source)
    unpatched = load(lua, before)()
    assert b"chunk:5:" not in traceback(unpatched[3])
    assert b"chunk:7:" not in traceback(bind(unpatched[5], unpatched[3]))
    computed, result, resume, field, depth, param, method = load(lua, without_wrapped_tail_calls(before))()
    assert b"chunk:2:" in traceback(computed)
    assert b"chunk:3:" in traceback(result)
    assert b"chunk:4:" in traceback(resume)
    assert b"chunk:5:" not in traceback(field)
    assert b"chunk:7:" in traceback(bind(param, field))
    assert b"chunk:8:" in traceback(method)
    assert depth(100000) == 0
    assert load(lua, without_wrapped_tail_calls(dump(lua, SOURCE)))() == load(lua, dump(lua, SOURCE))()


def test_tail_calls_of_the_prelude_s_globals(lua):
    """A tail call of a global the prelude makes a Lua function (type,
    tostring, rawset...), directly or through a local, keeps its frame; one
    of another global stays a tail call."""
    from shardkv.worker.luabytecode import without_wrapped_tail_calls

    source = (
        b"tostring = function() error('x') end; other = tostring\n"
        b"local function direct() return tostring() end\n"
        b"local function held() local f = tostring; return f() end\n"
        b"local function another() return other() end\n"
        b"return direct, held, another"
    )
    traceback = lua.eval("function(f) return select(2, xpcall(f, debug.traceback)) end")
    before = dump(lua, source)
    assert all(b"chunk:2:" not in traceback(f) for f in load(lua, before)()[:1])
    direct, held, another = load(lua, without_wrapped_tail_calls(before))()
    assert b"chunk:2:" in traceback(direct)
    assert b"chunk:3:" in traceback(held)
    assert b"chunk:4:" not in traceback(another)


def test_call_fields_held_by_upvalues(lua):
    """A nested function's tail call of an upvalue that holds a ``call``
    field (``local f = redis.call; local function g() return f() end``)
    keeps its frame; a tail-recursive local function stays a tail call."""
    from shardkv.worker.luabytecode import without_call_tail_calls

    source = (
        b"local redis = {call = function() error('x') end}\n"
        b"local a, f = 1, redis.call\n"
        b"local function g()\n"
        b" return f() end\n"
        b"local function depth(n) if n == 0 then return 0 end return depth(n - 1) end\n"
        b"return g, depth"
    )
    traceback = lua.eval("function(f) return select(2, xpcall(f, debug.traceback)) end")
    g, _ = load(lua, dump(lua, source))()
    assert b"chunk:4:" not in traceback(g)
    g, depth = load(lua, without_call_tail_calls(dump(lua, source)))()
    assert b"chunk:4:" in traceback(g)
    assert depth(100000) == 0


def test_library_functions_written_later_to_a_local_with_no_value(lua):
    """A local declared with no value (or nil) holds what is written to it
    while it lives: a nested function's tail call of it keeps its frame
    when that is a library's function (``local f; f = cjson.decode``),
    written before or after the nested function, and stays a tail call
    when it is a function of the script's (tail recursion)."""
    from shardkv.worker.luabytecode import without_wrapped_tail_calls

    source = (
        b"local cjson = {decode = function() error('x') end}\n"
        b"local f; f = cjson.decode\n"
        b"local function g()\n"
        b" return f() end\n"
        b"local a, h = nil\n"
        b"local function k()\n"
        b" return h() end\n"
        b"h = cjson.decode\n"
        b"local r; r = function(n) if n == 0 then return 0 end return r(n - 1) end\n"
        b"return g, k, r"
    )
    traceback = lua.eval("function(f) return select(2, xpcall(f, debug.traceback)) end")
    g, k, _ = load(lua, dump(lua, source))()
    assert b"chunk:4:" not in traceback(g) and b"chunk:7:" not in traceback(k)
    g, k, r = load(lua, without_wrapped_tail_calls(dump(lua, source)))()
    assert b"chunk:4:" in traceback(g) and b"chunk:7:" in traceback(k)
    assert r(1000000) == 0


def test_without_debug_info_runs_the_same(lua):
    code = dump(lua, SOURCE)
    stripped = without_debug_info(code)
    assert len(stripped) < len(code)
    results = load(lua, stripped)()
    assert results[:-1] == load(lua, code)()[:-1]
    # the source stays (the prelude's frames are known by it); no line numbers
    info = lua.eval("function(f) local i = debug.getinfo(f, 'S') return i.source end")
    assert info(load(lua, stripped)) == b"=chunk"
    assert results[-1] == b"here"  # (luaL_where: no line, no position)
    with pytest.raises(BytecodeError):
        without_debug_info(b"not a dump")


def test_fresh_lua_state_memory():
    """A fresh EVAL state stays well under Redis's unit/scripting bound
    (used_memory_lua < 100 KB after SCRIPT FLUSH and 10000 EVALs)."""
    from shardkv.worker import lualibs
    from shardkv.worker.keyspace import Keyspace
    from shardkv.worker.scripting import Engine

    class Owner:
        keyspace = Keyspace()

    vm = Engine(Owner())._new_vm()
    try:
        assert vm.lua.get_memory_used() < 96 * 1024
    finally:
        # Dropped as Engine.flush drops a state: left in ROOM, its entry
        # would answer for a later LuaRuntime that took its address (its
        # engine, never used, has no ``lua``: test_lualibs failed so).
        lualibs.ROOM.pop(id(vm.lua), None)
        vm.release()


@pytest.mark.parametrize(
    ("source", "indexed"),
    [
        (b"return redis.call('get', KEYS[1])", True),
        (b"local v = redis.call('get', KEYS[1]) if v ~= ARGV[1] then return 0 end return 1", True),
        (b"local i = 1 return {KEYS[i], #KEYS, KEYS[1] .. KEYS[1]}", True),
        (b"local f = function() return KEYS[1] end return f()", True),
        (b"return tonumber(ARGV[1]) + #KEYS", True),
        # the table held, passed, written, or reached another way
        (b"return KEYS", False),
        (b"local k = KEYS return k[1]", False),
        (b"local t = {} table.insert(t, KEYS) return 1", False),
        (b"local f = function() return KEYS end return f()[1]", False),
        (b"return redis.call('get', unpack(KEYS))", False),
        (b"for _, k in ipairs(KEYS) do end return 1", False),
        (b"KEYS[1] = 'x' return 1", False),
        (b"return KEYS[KEYS[1]]", False),
        (b"return rawget(KEYS, 1)", False),
        (b"return _G.KEYS[1]", False),
        (b"return getfenv().KEYS[1]", False),
        (b"return loadstring('return KEYS')()[1]", False),
    ],
)
def test_keys_only_indexed(lua, source, indexed):
    assert keys_only_indexed(dump(lua, source)) is indexed


@pytest.mark.parametrize(
    ("source", "indexed"),
    [
        (b"local v = redis.call('get', KEYS[1]) if v ~= ARGV[1] then return 0 end return 1", (True, True)),
        (b"return {#ARGV, ARGV[1], tonumber(ARGV[2])}", (True, True)),
        (b"local f = function() return ARGV[1] end return f()", (True, True)),
        # ARGV held, passed, written or reached another way: KEYS still indexed
        (b"return {KEYS[1], ARGV}", (True, False)),
        (b"local a = ARGV return a[1] .. KEYS[1]", (True, False)),
        (b"return redis.call('set', KEYS[1], unpack(ARGV))", (True, False)),
        (b"ARGV[1] = 'x' return KEYS[1]", (True, False)),
        (b"return KEYS[1] .. table.concat(ARGV)", (True, False)),
        # KEYS held, ARGV indexed; neither (a global that reaches both)
        (b"return {KEYS, ARGV[1]}", (False, True)),
        (b"return _G.ARGV[1] .. KEYS[1]", (False, False)),
    ],
)
def test_only_indexed_says_it_of_keys_and_of_argv(lua, source, indexed):
    """engine.one_key's run of one argument shares an ARGV table only for a
    script that never holds it."""
    assert only_indexed(dump(lua, source)) == indexed
