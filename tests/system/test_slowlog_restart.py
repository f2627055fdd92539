"""The slow log outlives a worker's restart (issue 18): the entries the
killed worker logged stay, and the ids go on one by one, as in Redis,
where nothing restarts.  Compared with redis-server; the shardkv's worker
of shard 0 is killed (SIGKILL) after its entries, and the same commands
run on both once it is back."""

from __future__ import annotations

import os
import signal

import pytest

from tests.support.placement import key_on
from tests.support.processes import until, worker_pids
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow

K0, K1 = key_on(0, "slr", shards=2), key_on(1, "slr", shards=2)


def _answers(c: RespClient) -> bool:
    try:
        c.command("EXISTS", K0)
    except (ErrorReply, ConnectionError, OSError):
        return False
    return True


def _scenario(c: RespClient, kill: ServerProcess | None) -> list:
    c.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    try:
        c.command("SLOWLOG", "RESET")
        c.command("SET", K0, "v")
        c.command("GET", K1)
        c.command("GET", K0)
        c.command("SLOWLOG", "LEN")
        c.command("APPEND", K0, "w")  # logged after the last SLOWLOG read
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "-1")
        if kill is not None:
            old = worker_pids(kill)[0]
            os.kill(old, signal.SIGKILL)
            assert until(lambda: worker_pids(kill).get(0, old) != old), "no new worker"
            assert until(lambda: _answers(c)), "shard 0 does not answer again"
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        c.command("SET", K0, "x")  # the new worker's
        entries = c.command("SLOWLOG", "GET", "-1")
        newest = entries[0][0]  # type: ignore[index]
        return [[newest - e[0], e[3]] for e in entries] + [c.command("SLOWLOG", "LEN")]  # type: ignore[union-attr]
    finally:
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")


def test_the_slow_log_outlives_a_worker_restart(redis_and_shardkv) -> None:
    real, ours = redis_and_shardkv
    got = {}
    for name, proc, kill in (("redis", real, None), ("shardkv", ours, ours)):
        with RespClient(proc.port, timeout=30) as c:
            got[name] = _scenario(c, kill)
    assert got["shardkv"] == got["redis"]
