"""FUNCTION libraries persist as in Redis 7: in snapshots (SAVE) and in the
AOF (FUNCTION LOAD/DELETE/FLUSH/RESTORE logged, the rewritten base holds
them), loaded back at restart, also when the shard count changes.  The
script cache (EVAL) does not persist.

Each differential test runs the same commands on shardkv and on a real
redis-server with the same persistence setting, restarts both on the same
files, and compares FUNCTION LIST WITHCODE and FCALL replies.
"""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.servers import start_redis, start_shardkv

pytestmark = pytest.mark.slow

TIMEOUT = 10

LIB_A = "#!lua name=liba\nredis.register_function('seta', function(keys, args) return redis.call('SET', keys[1], args[1]) end)"
LIB_A2 = (
    "#!lua name=liba\n"
    "redis.register_function{function_name='seta', callback=function(keys, args)"
    " return redis.call('SET', keys[1], args[1] .. '!') end, flags={'allow-oom'}, description='v2'}\n"
    "redis.register_function{function_name='geta', callback=function(keys) return redis.call('GET', keys[1]) end,"
    " flags={'no-writes'}}"
)
LIB_B = "#!lua name=libb\nredis.register_function('hello', function() return 'hi' end)"
LIB_C = (
    "#!lua name=libc\nredis.register_function('cnt', function(keys) return redis.call('INCR', keys[1]) end)"
)


def _start(kind: str, directory, mode: str, shards: int = 4):
    flags = ["--dir", str(directory), "--appendonly", "yes" if mode == "aof" else "no"]
    if kind == "redis":
        return start_redis(*flags)
    return start_shardkv(*flags, shards=shards)


def _client(proc) -> redis.Redis:
    return redis.Redis(port=proc.port, socket_timeout=TIMEOUT)


def _restart(kind: str, proc, directory, mode: str, shards: int = 4):
    if mode == "rdb":
        _client(proc).save()
    proc.stop()  # SIGTERM; with save "" neither server saves on its own
    return _start(kind, directory, mode, shards)


def _listing(c: redis.Redis) -> list:
    return c.execute_command("FUNCTION", "LIST", "WITHCODE")


def _normal(listing: list) -> list:
    """FUNCTION LIST's libraries and functions in name order (the order of a
    dict differs), flags sorted."""
    out = []
    for lib in sorted(listing, key=lambda lib: lib[b"library_name"]):
        functions = [
            dict(f, flags=sorted(f[b"flags"])) for f in sorted(lib[b"functions"], key=lambda f: f[b"name"])
        ]
        out.append({**lib, b"functions": functions})
    return out


def _history(c: redis.Redis) -> None:
    """Every kind of change: LOAD, LOAD REPLACE, DELETE, RESTORE, and FCALLs."""
    c.execute_command("FUNCTION", "LOAD", LIB_A)
    c.execute_command("FUNCTION", "LOAD", LIB_B)
    c.execute_command("FUNCTION", "LOAD", LIB_C)
    c.execute_command("FCALL", "seta", 1, "k1", "v1")
    payload = c.execute_command("FUNCTION", "DUMP")
    c.execute_command("FUNCTION", "LOAD", "REPLACE", LIB_A2)
    c.execute_command("FUNCTION", "DELETE", "libb")
    c.execute_command("FCALL", "seta", 1, "k2", "v2")
    c.execute_command("FUNCTION", "FLUSH")
    c.execute_command("FUNCTION", "RESTORE", payload)  # liba v1, libb, libc
    c.execute_command("FUNCTION", "LOAD", "REPLACE", LIB_A2)
    c.execute_command("FUNCTION", "DELETE", "libc")
    c.execute_command("SCRIPT", "LOAD", "return 1")


def _seen(c: redis.Redis) -> dict:
    return {
        "list": _normal(_listing(c)),
        "fcall": [
            c.execute_command("FCALL", "seta", 1, "k3", "v3"),
            c.execute_command("FCALL_RO", "geta", 1, "k3"),
            c.execute_command("FCALL", "hello", 0),
            c.get("k1"),
            c.get("k2"),
        ],
        "script cache": c.execute_command("SCRIPT", "EXISTS", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"),
        "stats": c.execute_command("FUNCTION", "STATS"),
    }


@pytest.mark.parametrize("mode", ["aof", "rdb"])
def test_libraries_survive_a_restart_as_in_redis(tmp_path, mode):
    seen = {}
    for kind in ("redis", "shardkv"):
        directory = tmp_path / kind
        directory.mkdir()
        proc = _start(kind, directory, mode)
        try:
            _history(_client(proc))
            before = _seen(_client(proc))
            proc = _restart(kind, proc, directory, mode)
            after = _seen(_client(proc))
            assert after["list"] == before["list"]
            assert after["script cache"] == [0]  # the script cache does not persist
            seen[kind] = after
        finally:
            proc.stop()
    assert seen["shardkv"] == seen["redis"]
    names = [lib[b"library_name"] for lib in seen["shardkv"]["list"]]
    assert names == [b"liba", b"libb"]


@pytest.mark.parametrize("mode", ["aof", "rdb"])
def test_flush_and_delete_survive_a_restart(tmp_path, mode):
    for kind in ("redis", "shardkv"):
        directory = tmp_path / kind
        directory.mkdir()
        proc = _start(kind, directory, mode)
        try:
            c = _client(proc)
            c.execute_command("FUNCTION", "LOAD", LIB_A)
            c.execute_command("FUNCTION", "LOAD", LIB_B)
            proc = _restart(kind, proc, directory, mode)
            c = _client(proc)
            assert len(_listing(c)) == 2
            c.execute_command("FUNCTION", "DELETE", "liba")
            proc = _restart(kind, proc, directory, mode)
            c = _client(proc)
            assert [lib[b"library_name"] for lib in _listing(c)] == [b"libb"]
            with pytest.raises(redis.ResponseError, match="Function not found"):
                c.execute_command("FCALL", "seta", 1, "k", "v")
            c.execute_command("FUNCTION", "FLUSH")
            proc = _restart(kind, proc, directory, mode)
            assert _listing(_client(proc)) == []
        finally:
            proc.stop()


def test_aof_rewrite_base_holds_the_libraries(tmp_path):
    """BGREWRITEAOF folds the libraries into the base; later changes go to
    the new increment; a restart gets both."""
    seen = {}
    for kind in ("redis", "shardkv"):
        directory = tmp_path / kind
        directory.mkdir()
        proc = _start(kind, directory, "aof")
        try:
            c = _client(proc)
            c.execute_command("FUNCTION", "LOAD", LIB_A)
            c.execute_command("FUNCTION", "LOAD", LIB_B)
            c.bgrewriteaof()
            deadline = time.monotonic() + 30
            while c.info("persistence")["aof_rewrite_in_progress"] or c.info("persistence").get(
                "aof_rewrite_scheduled"
            ):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            c.execute_command("FUNCTION", "LOAD", LIB_C)
            c.execute_command("FUNCTION", "DELETE", "libb")
            proc = _restart(kind, proc, directory, "aof")
            c = _client(proc)
            seen[kind] = _normal(_listing(c))
            assert c.execute_command("FCALL", "cnt", 1, "n") == 1
        finally:
            proc.stop()
    assert seen["shardkv"] == seen["redis"]
    assert len(seen["shardkv"]) == 2


@pytest.mark.parametrize("mode", ["aof", "rdb"])
@pytest.mark.parametrize("shards", [(4, 2), (2, 3)])
def test_every_shard_holds_every_library_after_resharding(tmp_path, mode, shards):
    before, after = shards
    proc = start_shardkv(
        "--dir", str(tmp_path), "--appendonly", "yes" if mode == "aof" else "no", shards=before
    )
    try:
        c = _client(proc)
        c.execute_command("FUNCTION", "LOAD", LIB_A2)
        c.execute_command("FUNCTION", "LOAD", LIB_C)
        keys = [f"key:{i}" for i in range(40)]  # on every shard of either count
        for key in keys:
            assert c.execute_command("FCALL", "seta", 1, key, key) == b"OK"
        listing = _normal(_listing(c))
        if mode == "rdb":
            c.save()
        proc.stop()
        proc = start_shardkv(
            "--dir", str(tmp_path), "--appendonly", "yes" if mode == "aof" else "no", shards=after
        )
        c = _client(proc)
        assert _normal(_listing(c)) == listing
        for key in keys:  # each runs on its key's shard: every shard has the library
            assert c.execute_command("FCALL_RO", "geta", 1, key) == key.encode() + b"!"
            assert c.execute_command("FCALL", "cnt", 1, "{%s}n" % key) == 1
    finally:
        proc.stop()
