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


def test_a_cyclic_table_is_packed_once_per_depth(libs, monkeypatch):
    """``t = {t, t}`` is 2**16 - 1 tables down to cmsgpack's nesting
    limit: its bytes are the same, and the table is read once per depth
    (and once more, the first time it is met again), not 2**16 - 1 times
    (``{t, t, t}``, 3**16 times: minutes, against a second in Redis)."""
    lua, modules = libs
    reads = []
    array_length = lualibs.MsgPack._array_length
    monkeypatch.setattr(
        lualibs.MsgPack, "_array_length", staticmethod(lambda t: reads.append(1) or array_length(t))
    )
    t = lua.eval("(function() local t = {} t[1] = t t[2] = t return t end)()")
    packed = modules[b"cmsgpack"][b"pack"](t, t)
    assert packed == _nested(0, 2) * 2
    assert len(reads) <= 2 * 16


def test_tables_met_again_are_packed_as_where_first_met(libs):
    lua, modules = libs
    x = lua.eval("{1, {2}}")
    t = lua.table(x, x, lua.table(x))
    assert modules[b"cmsgpack"][b"pack"](t) == b"\x93" + b"\x92\x01\x91\x02" * 2 + b"\x91\x92\x01\x91\x02"
