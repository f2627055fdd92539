"""The saves a shard has scheduled, kept across its worker's restarts
(shardkv.runtime.schedules): one shared file, a slot per shard, written by
that shard's worker alone.  Each worker here is a Shard in this process,
started on the same files, as the supervisor starts one after another
died (shardkv.worker.loop.serve attaches the file once it has loaded)."""

from __future__ import annotations

import time

from shardkv.runtime import config
from shardkv.runtime.schedules import BGSAVE, REWRITE, Schedules
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard


def _worker(tmp_path, schedules: Schedules, index: int = 1) -> Shard:
    """A worker of shard ``index`` (of 2) started anew, loaded, and given the file."""
    cfg = config.defaults()
    cfg.update({"dir": str(tmp_path), "shards": 2, "appendonly": True, "appendfsync": "no", "save": ""})
    shard = Shard(index, 2, FakeClock(), config=cfg)
    shard.persistence.start()  # type: ignore[union-attr]
    shard.persistence.keep_schedules(schedules)  # type: ignore[union-attr]
    return shard


def _run_jobs(shard: Shard) -> None:
    """Cron ticks until no child runs (each started job reaped, the next started)."""
    p = shard.persistence
    assert p is not None
    for _ in range(500):
        p.cron()
        if p.child is None:
            return
        time.sleep(0.01)
    raise AssertionError("the background child did not finish")


def _stop(shard: Shard) -> None:
    p = shard.persistence
    if p is not None and p.aof is not None:
        p.aof.close()
        p.aof = None


def test_what_a_dead_worker_scheduled_runs_once_in_the_next_one(tmp_path):
    """A worker schedules a save and a rewrite (``__schedule``, as an EXEC's
    BGSAVE and BGREWRITEAOF run on another shard do) and dies before they
    start: the next worker takes both on, runs each, and clears them, so
    that a third worker runs neither again.  Only shard 1's slot is
    written."""
    schedules = Schedules(2)
    try:
        first = _worker(tmp_path, schedules)
        first.persistence.schedule(b"save")  # type: ignore[union-attr]
        first.persistence.schedule(b"rewrite")  # type: ignore[union-attr]
        assert (schedules.get(0), schedules.get(1)) == (0, BGSAVE | REWRITE)
        _stop(first)  # it dies: nothing of it runs

        second = _worker(tmp_path, schedules)
        p = second.persistence
        assert p is not None and p.bgsave_scheduled and p.rewrite_scheduled
        _run_jobs(second)  # the rewrite, then the save
        assert (p.aof_rewrites, p.rdb_saves) == (1, 1)
        assert not p.bgsave_scheduled and not p.rewrite_scheduled
        assert (tmp_path / "dump.rdb.shard-1").exists()
        assert schedules.get(1) == 0
        _stop(second)

        third = _worker(tmp_path, schedules)
        p = third.persistence
        assert p is not None and not p.bgsave_scheduled and not p.rewrite_scheduled
        _run_jobs(third)
        assert (p.aof_rewrites, p.rdb_saves) == (0, 0)
        _stop(third)
        assert schedules.get(0) == 0
    finally:
        schedules.close()
