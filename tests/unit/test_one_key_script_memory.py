"""A cached one-key script that only indexes KEYS (engine.one_key's shared
KEYS table, see shardkv.worker.luabytecode.keys_only_indexed) keeps no key
alive after its run, driven in process: with 50 such scripts each run once
with a 1 MiB key, Lua's heap after a full collection is back near where it
was, as redis-server's used_memory_lua is (about 50 KB)."""

from __future__ import annotations

from shardkv.runtime import config
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard

MIB = 1 << 20
SCRIPTS = 50


def _shard_at_rest():
    """A shard that has run one script, its Lua state, and that state's
    heap after a full collection."""
    shard = Shard(0, 1, FakeClock(), config=config.defaults())
    assert shard.execute([b"EVAL", b"return 1", b"0"]) == 1
    lua = shard.scripts._eval_vm.lua
    lua.gccollect()
    return shard, lua, lua.get_memory_used()


def test_one_key_scripts_keep_no_key_after_their_run() -> None:
    """Before: each script's KEYS table held its last key until its next run
    (50 MiB here)."""
    shard, lua, base = _shard_at_rest()
    big = b"x" * MIB
    for key in (b"k", None, b"k"):  # (the big key in between; each run's #KEYS and KEYS[1] its own)
        for i in range(SCRIPTS):
            key_i = big + b"%d" % i if key is None else key
            assert shard.execute([b"EVAL", b"return #KEYS[1] + %d" % i, b"1", key_i]) == len(key_i) + i
            assert shard.execute([b"EVAL", b"return #KEYS + %d" % i, b"1", key_i, b"arg"]) == 1 + i  # (ARGV)
    for i in range(SCRIPTS):  # the big keys last
        key_i = big + b"%d" % i
        assert shard.execute([b"EVAL", b"return #KEYS[1] + %d" % i, b"1", key_i]) == len(key_i) + i
        assert shard.execute([b"EVAL", b"return KEYS[1] == ARGV[1] and %d" % i, b"1", key_i, key_i]) == i
    lua.gccollect()
    assert lua.get_memory_used() - base < 4 * MIB


def test_one_argument_scripts_keep_no_argument_after_their_run() -> None:
    """The same of a script's shared ARGV table (a run of one argument, a
    script that only indexes ARGV): its last argument is let go; and a
    script that holds its ARGV (returns it) still gets its own."""
    shard, lua, base = _shard_at_rest()
    big = b"x" * MIB
    for i in range(SCRIPTS):
        arg = big + b"%d" % i
        script = b"return #ARGV * 10000000 + #ARGV[1] + %d" % i  # (#ARGV, #ARGV[1] and i)
        assert shard.execute([b"EVAL", script, b"1", b"k", arg]) == 10000000 + len(arg) + i
        assert shard.execute([b"EVAL", script, b"1", b"k", b"a", b"b"]) == 20000000 + 1 + i
        assert shard.execute([b"EVAL", script, b"1", b"k", b"abc"]) == 10000000 + 3 + i
    lua.gccollect()
    assert lua.get_memory_used() - base < 4 * MIB
    held = b"return ARGV"
    assert shard.execute([b"EVAL", held, b"1", b"k", b"one"]).to_resp(False) == b"*1\r\n$3\r\none\r\n"
