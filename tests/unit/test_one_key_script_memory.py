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


def test_one_key_scripts_keep_no_key_after_their_run() -> None:
    """Before: each script's KEYS table held its last key until its next run
    (50 MiB here)."""
    shard = Shard(0, 1, FakeClock(), config=config.defaults())
    assert shard.execute([b"EVAL", b"return 1", b"0"]) == 1
    lua = shard.scripts._eval_vm.lua
    lua.gccollect()
    base = lua.get_memory_used()
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
