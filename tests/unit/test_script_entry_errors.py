"""A script's error with no xpcall in its entry (shardkv issue 18), driven
in process: the prelude's handler is lupa's message handler for every call
from Python into Lua, and makes the error table of the run's own error
alone; the one-key entries' shared tables are cleared on Python's error
path (engine.failed)."""

from __future__ import annotations

import pytest
from lupa import lua51

from shardkv.runtime import config
from shardkv.worker import scripting
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard

MIB = 1 << 20


@pytest.fixture
def shard_and_api(monkeypatch):
    """A shard that has run one script, and its EVAL state's prelude API."""
    apis = []
    init = scripting._VM.__init__

    def keep_api(self, lua, api, *args, **kwargs):
        apis.append((self, api))
        init(self, lua, api, *args, **kwargs)

    monkeypatch.setattr(scripting._VM, "__init__", keep_api)
    shard = Shard(0, 1, FakeClock(), config=config.defaults())
    assert shard.execute([b"EVAL", b"return 1", b"0"]) == 1
    return shard, next(api for vm, api in apis if vm is shard.scripts._eval_vm)


def _error(value: object) -> str:
    """The error reply's text (an Error, or one in a ScriptReply)."""
    raw = value.to_resp(False) if hasattr(value, "to_resp") else b"-" + value.message.encode()  # type: ignore[attr-defined]
    assert raw.startswith(b"-"), raw
    return raw[1:].rstrip(b"\r\n").decode()


@pytest.mark.parametrize("keys", [[b"0"], [b"1", b"k"], [b"1", b"k", b"a"], [b"1", b"k", b"a", b"b"]])
def test_an_error_in_a_call_from_python_in_a_run_is_its_own(shard_and_api, keys) -> None:
    """A Python callable that the run called, which calls into Lua, gets
    that call's error as it was raised (no error table of the handler's:
    lupa would give a table as LuaError('')), and the run goes on; the
    run's own error after it is the run's."""
    shard, api = shard_and_api
    seen: list[str] = []

    def nested(f):
        try:
            f()
        except lua51.LuaError as e:
            seen.append(str(e))
            return b"caught"
        return b"none"

    api[b"set_global"](b"nested", nested)
    body = b"return nested(function() error('deep') end)"
    assert shard.execute([b"EVAL", body, *keys]) == b"caught"
    assert seen == ["user_script:1: deep"]
    body = b"local r = nested(function() error('deep') end)\nerror(r)"
    reply = shard.execute([b"EVAL", body, *keys])
    assert _error(reply).startswith("ERR user_script:2: caught script: "), reply
    assert _error(reply).endswith(", on @user_script:2."), reply
    assert seen == ["user_script:1: deep"] * 2


def test_one_key_scripts_that_fail_keep_no_key_or_argument(shard_and_api) -> None:
    """The shared KEYS and ARGV tables of a script that only indexes them
    (engine.one_key) let the key and the argument of a run that failed go,
    as those of a run that did not (test_one_key_script_memory)."""
    shard, _ = shard_and_api
    lua = shard.scripts._eval_vm.lua
    lua.gccollect()
    base = lua.get_memory_used()
    big = b"x" * MIB
    for i in range(20):
        key = big + b"%d" % i
        script = b"if #KEYS[1] > %d then error('long') end return 1" % i
        assert "long" in _error(shard.execute([b"EVAL", script, b"1", key]))
        script = b"if #ARGV[1] > %d then error('long') end return 1" % i
        assert "long" in _error(shard.execute([b"EVAL", script, b"1", b"k", key]))
        script = b"if #ARGV[1] > %d then return redis.call('nosuchcmd') end return 1" % i
        assert "Unknown" in _error(shard.execute([b"EVAL", script, b"1", b"k", key]))
    lua.gccollect()
    assert lua.get_memory_used() - base < 4 * MIB
    # and the next runs of each get their own key and arguments
    assert shard.execute([b"EVAL", b"if #KEYS[1] > 0 then error('long') end return 1", b"1", b""]) == 1
    assert shard.execute([b"EVAL", b"return #ARGV", b"1", b"k"]) == 0
