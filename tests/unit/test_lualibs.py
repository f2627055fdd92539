"""The libraries' Python side (shardkv/worker/lualibs.py) driven in process,
for what a differential test cannot bound: how much work a value takes."""

from __future__ import annotations

import pytest
from lupa import lua51

from shardkv.worker import lualibs


@pytest.fixture
def libs():
    lua = lua51.LuaRuntime(register_eval=False, encoding=None, unpack_returned_tuples=True)
    modules, _config, release = lualibs.install(lua)
    yield lua, modules
    release()


def _nested(depth: int, fan_out: int) -> bytes:
    """lua_cmsgpack's bytes for ``t`` with t[1..fan_out] = t: arrays down
    to 16 levels, nil below."""
    if depth == 16:
        return b"\xc0"
    return bytes([0x90 | fan_out]) + _nested(depth + 1, fan_out) * fan_out


def test_a_cyclic_table_is_packed_a_few_times_per_depth(libs, monkeypatch):
    """``t = {t, t}`` is 2**16 - 1 tables down to cmsgpack's nesting
    limit: its bytes are the same, and the table is read at most twice
    per depth (until its bytes there are kept: a table is numbered only
    once it is found to hold a table) and at the top, not 2**16 - 1 times
    (``{t, t, t}``, 3**16 times: minutes, against a second in Redis)."""
    lua, modules = libs
    reads = []
    entries = lualibs.MsgPack._entries
    monkeypatch.setattr(lualibs.MsgPack, "_entries", staticmethod(lambda t: reads.append(1) or entries(t)))
    t = lua.eval("(function() local t = {} t[1] = t t[2] = t return t end)()")
    packed = modules[b"cmsgpack"][b"pack"](t, t)
    assert packed == _nested(0, 2) * 2
    assert len(reads) <= 3 * 16


def test_tables_met_again_are_packed_as_where_first_met(libs):
    lua, modules = libs
    x = lua.eval("{1, {2}}")
    t = lua.table(x, x, lua.table(x))
    assert modules[b"cmsgpack"][b"pack"](t) == b"\x93" + b"\x92\x01\x91\x02" * 2 + b"\x91\x92\x01\x91\x02"


def test_tables_that_hold_no_table_are_not_numbered(libs):
    """Only a table that holds a table can be worth copying: 1000 small
    tables (and the map of them) are written without numbering each."""
    lua, modules = libs
    t = lua.eval("(function() local t = {} for i = 1, 1000 do t['k' .. i] = {i} end return t end)()")
    met = []
    again = lualibs._Met.again
    lualibs._Met.again = lambda self, table: met.append(1) or again(self, table)
    try:
        packed = modules[b"cmsgpack"][b"pack"](t)
    finally:
        lualibs._Met.again = again
    assert packed[:3] == b"\xde\x03\xe8"
    assert len(met) == 1


def test_an_output_past_the_room_fails_before_it_is_built(libs):
    """``t`` with t[1..16] = t copies its bytes into 16**16 bytes of output
    (a few copies each level): the output is checked against the state's
    room as it grows, so pack fails at the first check past it, where it
    was checked only once built (after filling the process's memory)."""
    lua, modules = libs
    checked = []

    def check(size: int) -> None:
        checked.append(size)
        if size > 256 * 1024 * 1024:
            raise lualibs.LibError("not enough memory")

    lualibs.ROOM[id(lua)] = check
    try:
        t = lua.eval("(function() local t = {} for i = 1, 16 do t[i] = t end return t end)()")
        with pytest.raises(lualibs.Raised, match="not enough memory"):
            modules[b"cmsgpack"][b"pack"](t)
        s = lua.eval("string.rep('x', 1024 * 1024)")
        many = lua.eval("(function(s) local t = {} for i = 1, 1000 do t[i] = s end return t end)")(s)
        with pytest.raises(lualibs.Raised, match="not enough memory"):
            modules[b"cmsgpack"][b"pack"](many)
    finally:
        del lualibs.ROOM[id(lua)]
    assert max(checked) < 2 * 256 * 1024 * 1024  # no more than one copy past it


def test_a_library_error_reaches_lua_as_one_pinned_object_with_its_text(libs):
    """Each error of a library's callable reached Lua as a new userdata
    (lupa's wrapper of the exception, with a __gc), garbage whose finalizer
    a later collector step ran: inside a Python callable 200 C calls deep,
    a "C stack overflow" longjmp over Python's frames that hung the worker
    (see lualibs.Raised).  Every error is now the one object the state pins,
    whose wrapper lupa finds again: an error allocates nothing in Lua, and
    its text is the error's."""
    lua, modules = libs
    pin = lua.table_from([lualibs.LIBRARY_ERROR])  # (as each script state pins it)
    run = lua.eval(
        "function(decode, text) local ok, e = pcall(decode, text) collectgarbage('stop') local before = collectgarbage('count') "
        "for i = 1, 1000 do pcall(decode, text) end local after = collectgarbage('count') "
        "collectgarbage('restart') return (after - before) * 1024, tostring(e) end"
    )
    grown, text = run(modules[b"cjson"][b"decode"], b"x")  # (an error that builds nothing first)
    assert text == b"Expected value but found invalid token at character 1"
    assert grown < 1000  # (a wrapper each: 64 bytes and more)
    assert pin[1] is lualibs.LIBRARY_ERROR
