"""INFO's aof_rewrites_consecutive_failures, against redis-server: a rewrite
whose child dies counts one more failure, a rewrite that succeeds starts
the count again (Redis 7.0.15's backgroundRewriteDoneHandler), and so does
CONFIG RESETSTAT, with aof_rewrites and rdb_saves (resetServerStats); after
three failures in a row, an automatic rewrite waits (aofRewriteLimited)."""

from __future__ import annotations

import signal

import psutil
import pytest
import redis

from tests.support.processes import until, worker_pids
from tests.support.servers import ServerProcess, start_redis, start_shardkv

FLAGS = ("--appendonly", "yes", "--save", "", "--auto-aof-rewrite-percentage", "0")


def _rewrite_children(server: ServerProcess) -> list[psutil.Process]:
    """The processes that write a new AOF base: redis-server's child, or each worker's."""
    parents = [server.proc.pid] if server.kind == "redis" else list(worker_pids(server).values())
    return [child for pid in parents for child in psutil.Process(pid).children()]


def _persistence(c: redis.Redis) -> dict:
    return c.info("persistence")


def _kill_a_rewrite(server: ServerProcess, c: redis.Redis, children: int) -> dict:
    assert c.bgrewriteaof()
    found = until(lambda: len(_rewrite_children(server)) == children and _rewrite_children(server))
    assert found, "no rewrite child"
    for child in found:  # type: ignore[union-attr]
        child.send_signal(signal.SIGKILL)
    assert until(lambda: not _persistence(c)["aof_rewrite_in_progress"])
    return _persistence(c)


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_failed_rewrites_are_counted_until_one_succeeds(kind):
    server = start_redis(*FLAGS) if kind == "redis" else start_shardkv(*FLAGS, shards=2)
    children = 1 if kind == "redis" else 2
    try:
        c = redis.Redis(port=server.port, socket_timeout=30)
        c.mset({f"k{i}": i for i in range(200)})
        assert c.save()
        c.config_set("rdb-key-save-delay", "100000")  # 20 s a child: it is still writing when killed
        assert _persistence(c)["aof_rewrites_consecutive_failures"] == 0
        for failures in (1, 2):
            info = _kill_a_rewrite(server, c, children)
            assert info["aof_last_bgrewrite_status"] == "err"
            assert info["aof_rewrites_consecutive_failures"] == failures
        assert c.info("stats")["latest_fork_usec"] > 0
        c.config_resetstat()  # as Redis's resetServerStats: the count, and the rewrites and saves
        info = _persistence(c)
        counts = ("aof_rewrites_consecutive_failures", "aof_rewrites", "rdb_saves")
        assert [info[name] for name in counts] == [0, 0, 0]
        assert c.info("stats")["latest_fork_usec"] == 0  # (stat_fork_time too)
        for failures in (1, 2, 3):
            assert _kill_a_rewrite(server, c, children)["aof_rewrites_consecutive_failures"] == failures
        # Three failures in a row: an automatic rewrite now due waits a
        # minute (aofRewriteLimited), with Redis's line (one a shard here).
        c.config_set("rdb-key-save-delay", "0")
        rewrites = _persistence(c)["aof_rewrites"]
        c.config_set("auto-aof-rewrite-min-size", "1")
        c.config_set("auto-aof-rewrite-percentage", "1")
        c.mset({f"big{i}": "x" * 1000 for i in range(100)})
        line = "Background AOF rewrite has repeatedly failed and triggered the limit, will retry in 1 minutes"
        assert until(lambda: server.output().count(line) == children), server.log_tail()
        info = _persistence(c)
        assert (info["aof_rewrite_in_progress"], info["aof_rewrites"]) == (0, rewrites)
        # BGREWRITEAOF is not limited, and its success ends the back-off.
        c.config_set("auto-aof-rewrite-percentage", "0")
        assert c.bgrewriteaof()
        assert until(lambda: not _persistence(c)["aof_rewrite_in_progress"])
        info = _persistence(c)
        assert info["aof_last_bgrewrite_status"] == "ok"
        assert info["aof_rewrites_consecutive_failures"] == 0
        c.close()
    finally:
        server.stop()


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_saves_and_rewrites_are_counted_as_they_start(kind):
    """rdb_saves and aof_rewrites count the BGSAVEs and rewrites started,
    as Redis 7.0.15's rdbSaveBackground and rewriteAppendOnlyFileBackground
    count them before their fork: one whose child dies counts too (before,
    shardkv counted only those that succeeded)."""
    server = start_redis(*FLAGS) if kind == "redis" else start_shardkv(*FLAGS, shards=2)
    children = 1 if kind == "redis" else 2
    try:
        c = redis.Redis(port=server.port, socket_timeout=30)
        c.mset({f"k{i}": i for i in range(200)})
        c.config_set("rdb-key-save-delay", "100000")  # 20 s a child: it is still writing when killed
        c.config_resetstat()
        assert c.bgsave()
        found = until(lambda: len(_rewrite_children(server)) == children and _rewrite_children(server))
        assert found, "no save child"
        for child in found:  # type: ignore[union-attr]
            child.send_signal(signal.SIGKILL)
        assert until(lambda: not _persistence(c)["rdb_bgsave_in_progress"])
        info = _persistence(c)
        assert (info["rdb_last_bgsave_status"], info["rdb_saves"]) == ("err", 1)
        info = _kill_a_rewrite(server, c, children)
        assert (info["aof_last_bgrewrite_status"], info["aof_rewrites"]) == ("err", 1)
        c.close()
    finally:
        server.stop()
