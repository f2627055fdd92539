"""SCRIPT FLUSH gives back EVAL's Lua state (shardkv.worker.scripting.Engine),
driven in process: the old state, and every script compiled in it, is freed
by reference counting, with no collection of cycles (the worker's collector
runs rarely: shardkv.runtime.gctuning)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator

import pytest
from lupa import lua51

from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard

SCRIPTS = 8


def _all_runtimes() -> list[lua51.LuaRuntime]:
    return [o for o in gc.get_objects() if type(o) is lua51.LuaRuntime]


def _load(engine, base: int) -> None:
    for i in range(SCRIPTS):
        # Each library of the state used once, as scripts do.
        body = b"local s = '%08d' return {cjson.encode({s}), cmsgpack.pack(s), bit.tobit(1), struct.pack('B', 1)}"
        engine.load(body % (base + i))


@pytest.fixture
def runtimes() -> Iterator[Callable[[], int]]:
    """How many LuaRuntimes are alive that were not when the test began.
    An earlier test's may be garbage that waits for a collection (as
    test_lualibs's last test leaves its state), which a count of them all
    took for one of the engine's whenever no collection had run since."""
    before = _all_runtimes()  # held until the test ends: none freed, its address taken by a new one
    ids = {id(o) for o in before}
    yield lambda: sum(1 for o in _all_runtimes() if id(o) not in ids)
    del before


@pytest.fixture
def engine(runtimes):
    return Shard(0, 1, FakeClock()).keyspace.scripts


def test_script_flush_frees_the_old_lua_state_with_no_collection(engine, runtimes) -> None:
    """Before: the libraries' Python objects living in the state held its
    LuaRuntime, a cycle through Lua that only a full collection could free
    (and the engine held it until the next script): 260 MB a cycle of 200
    scripts of 1 MB each."""
    assert runtimes() == 2  # EVAL's and the functions'
    gc.disable()
    try:
        for cycle in range(3):
            _load(engine, cycle * SCRIPTS)
            engine.flush()
            assert runtimes() == 2, cycle
    finally:
        gc.enable()
    gc.collect()
    assert runtimes() == 2


def test_scripts_run_in_the_fresh_state_after_the_flush(engine) -> None:
    _load(engine, 0)
    engine.flush()
    sha = engine.load(b"return cjson.decode('[7]')[1] + cmsgpack.unpack(cmsgpack.pack(1))")
    assert engine.eval(sha, [], [], False) == 8
    assert engine.load(b"return cjson.encode(cjson.new().decode('{}'))") in engine.scripts
