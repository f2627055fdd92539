"""Saves that span every shard, against Redis 7.0.15's order of things
(a shardkv of 2 shards, at 1 acceptor and at 2, ``save 3600 1``, with a
fault file, shared by the cases).

* FLUSHALL with ``save`` rules saves before it answers (Redis's
  flushAllDataAndResetRDB calls rdbSave, then replies): its ``+OK`` waits
  for each shard's save, a fan-out's as a script's.
* A SHUTDOWN that is aborted leaves a BGSAVE under way running (Redis's
  ABORT comes before finishShutdown, which alone stops the child), and a
  FLUSHALL then stops it with no error status.
"""

from __future__ import annotations

import os
import select
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.processes import until, worker_pid
from tests.support.resp import ErrorReply, RespClient, parse_info
from tests.support.servers import start_shardkv

WAIT = 20.0  # seconds: bounds, not timing checks
FAILED = "ERR Errors trying to SHUTDOWN. Check logs."
NO_SHUTDOWN = "ERR No shutdown in progress."


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """(the server, its fault file, its acceptors), at ``request.param`` acceptors."""
    k = request.param
    fault_file = tmp_path_factory.mktemp("faults") / "faultpoints"
    fault_file.write_text("")
    env = dict(os.environ, SHARDKV_FAULT_FILE=str(fault_file))
    proc = start_shardkv("--save", "3600 1", shards=2, acceptors=k, env=env)
    try:
        yield proc, fault_file, k
    finally:
        fault_file.write_text("")
        proc.stop()


def _info(c: RespClient) -> dict:
    return parse_info(c.command("INFO", "persistence"))  # type: ignore[arg-type]


def _answered(c: RespClient, wait: float) -> bool:
    """Has a reply (some byte of it) come to ``c`` within ``wait`` seconds?"""
    return bool(select.select([c.sock], [], [], wait)[0])


@pytest.mark.parametrize("server", [1, 2], indirect=True)
@pytest.mark.parametrize("how", ["fan-out", "script"])
def test_flushall_answers_once_every_shard_has_saved(server, how):
    """Shard 1 held where it has the commit and has applied nothing (the
    ``decided`` fault point): the FLUSHALL's ``+OK`` waits for it (before,
    it came with the decision, before that shard's save, so that a client
    of the other acceptor still found the keys counted unsaved, and a kill
    of every process then loaded them again).  Once it goes on, the count
    is 0 through either acceptor, as Redis's after its FLUSHALL.  (At 2
    acceptors a fan-out's reply happened to wait already, for its flush
    event to be out on the other acceptor, see shardkv.acceptor.causal.)"""
    proc, fault_file, k = server
    c, other = client_on(proc.port, 0, k=k, timeout=WAIT), client_on(proc.port, 1, k=k, timeout=WAIT)
    held = psutil.Process(worker_pid(proc, 1))
    try:
        keys = [key_on(s, f"flushsave{i}", shards=2) for s in (0, 1) for i in range(3)]
        assert c.command("MSET", *[x for k in keys for x in (k, "v")]) == b"OK"
        assert int(_info(other)["rdb_changes_since_last_save"]) >= len(keys)
        fault_file.write_text("decided@1")
        if how == "fan-out":
            c.send("FLUSHALL")
        else:
            c.send("EVAL", "redis.call('flushall') return 1", "1", keys[0])
        assert until(lambda: held.status() == psutil.STATUS_STOPPED, WAIT), "shard 1 never took the decision"
        fault_file.write_text("")
        try:
            assert not _answered(c, 0.3)  # (a bound on the wrong reply's coming)
        finally:
            held.resume()
        assert c.read_reply() == (b"OK" if how == "fan-out" else 1)
        info = _info(other)
        assert (info["rdb_changes_since_last_save"], info["rdb_bgsave_in_progress"]) == ("0", "0")
        assert other.command("DBSIZE") == 0
    finally:
        fault_file.write_text("")
        held.resume()
        c.close()
        other.close()


@pytest.mark.parametrize("server", [1], indirect=True)
@pytest.mark.parametrize("how", ["fan-out", "script"])
def test_flushall_without_save_rules_answers_without_waiting_for_the_shards(server, how):
    """Without ``save`` rules FLUSHALL saves nothing (Redis's
    flushAllDataAndResetRDB saves only with rules): its reply does not
    wait for the shards to apply it, as before FLUSHALL waited for saves
    (it comes while shard 1 is held at the ``decided`` fault point)."""
    proc, fault_file, k = server
    c = RespClient(proc.port, timeout=WAIT)
    held = psutil.Process(worker_pid(proc, 1))
    try:
        assert c.command("CONFIG", "SET", "save", "") == b"OK"
        key = key_on(0, "nosaveflush", shards=2)
        assert c.command("SET", key, "v") == b"OK"
        fault_file.write_text("decided@1")
        if how == "fan-out":
            c.send("FLUSHALL")
        else:
            c.send("EVAL", "redis.call('flushall') return 1", "1", key)
        assert until(lambda: held.status() == psutil.STATUS_STOPPED, WAIT), "shard 1 never took the decision"
        fault_file.write_text("")
        try:
            assert _answered(c, WAIT)  # (before, it waited for shard 1)
        finally:
            held.resume()
        assert c.read_reply() == (b"OK" if how == "fan-out" else 1)
        assert c.command("DBSIZE") == 0
    finally:
        fault_file.write_text("")
        held.resume()
        c.command("CONFIG", "SET", "save", "3600 1")
        c.close()


@pytest.mark.parametrize("server", [1], indirect=True)
def test_an_aborted_shutdown_leaves_a_bgsave_running(server):
    """A BGSAVE under way (slow: ``rdb-key-save-delay``), a SHUTDOWN SAVE
    (its shards' saves slow too) and its SHUTDOWN ABORT: the BGSAVE still
    runs (``rdb_bgsave_in_progress:1``; before, the stop had stopped it),
    as Redis's, whose ABORT comes before finishShutdown stops the child.
    A FLUSHALL then stops it, as Redis's, with no error status."""
    proc = server[0]
    stopper, aborter = RespClient(proc.port, timeout=WAIT), RespClient(proc.port, timeout=WAIT)
    try:
        keys = [key_on(s, f"stopsave{i}", shards=2) for s in (0, 1) for i in range(40)]
        assert stopper.command("MSET", *[x for k in keys for x in (k, "v")]) == b"OK"
        assert stopper.command("CONFIG", "SET", "rdb-key-save-delay", "500000") == b"OK"  # 20 s a shard
        assert stopper.command("BGSAVE") == b"Background saving started"
        assert stopper.command("CONFIG", "SET", "rdb-key-save-delay", "5000") == b"OK"  # 0.2 s a shard
        stopper.send("SHUTDOWN", "SAVE")
        aborted = None
        for _ in range(10_000):  # until the acceptor has read the SHUTDOWN
            aborter.send("SHUTDOWN", "ABORT")
            aborted = aborter.read_reply()
            if aborted == b"OK":
                break
            assert isinstance(aborted, ErrorReply) and str(aborted) == NO_SHUTDOWN
        assert aborted == b"OK"
        reply = stopper.read_reply()
        assert isinstance(reply, ErrorReply) and str(reply) == FAILED
        info = _info(aborter)
        assert (info["rdb_bgsave_in_progress"], info["rdb_last_bgsave_status"]) == ("1", "ok")
        assert aborter.command("CONFIG", "SET", "rdb-key-save-delay", "0") == b"OK"
        assert aborter.command("FLUSHALL") == b"OK"
        info = _info(aborter)
        assert (info["rdb_bgsave_in_progress"], info["rdb_last_bgsave_status"]) == ("0", "ok")
        assert info["rdb_changes_since_last_save"] == "0"
    finally:
        stopper.close()
        aborter.close()


@pytest.mark.parametrize("server", [1], indirect=True)
def test_a_failed_shutdown_stops_every_shards_bgsave(server):
    """A BGSAVE under way (slow), then a SHUTDOWN whose save fails on
    shard 0 alone (its snapshot path a directory): as Redis's
    finishShutdown, which stops its child before the save that fails,
    the BGSAVE is over on every shard, its temp files gone, and a BGSAVE
    starts again (redis-server 7.0.15: ``rdb_bgsave_in_progress:0`` once
    its cron has reaped the child it signalled, then ``Background saving
    started``; before, shard 1, whose save had worked, kept its child
    until it ended, and BGSAVE said ``Background save already in
    progress``)."""
    proc = server[0]
    assert proc.workdir is not None
    blocked = Path(proc.workdir) / "dump.rdb.shard-0"
    c = RespClient(proc.port, timeout=WAIT)
    try:
        keys = [key_on(s, f"failsave{i}", shards=2) for s in (0, 1) for i in range(40)]
        assert c.command("MSET", *[x for k in keys for x in (k, "v")]) == b"OK"
        assert c.command("CONFIG", "SET", "rdb-key-save-delay", "500000") == b"OK"  # 20 s a shard
        assert c.command("BGSAVE") == b"Background saving started"
        assert c.command("CONFIG", "SET", "rdb-key-save-delay", "0") == b"OK"
        blocked.unlink(missing_ok=True)  # (FLUSHALL's save above)
        blocked.mkdir()
        c.send("SHUTDOWN")
        reply = c.read_reply()
        assert isinstance(reply, ErrorReply) and str(reply) == FAILED
        assert until(lambda: _info(c)["rdb_bgsave_in_progress"] == "0", 5.0), "a BGSAVE still runs"
        assert [name for name in os.listdir(proc.workdir) if ".tmp-" in name] == []
        blocked.rmdir()
        assert c.command("BGSAVE") == b"Background saving started"
        assert until(lambda: _info(c)["rdb_bgsave_in_progress"] == "0", WAIT)
        assert c.command("DEL", *keys) == len(keys)
    finally:
        if blocked.is_dir():
            blocked.rmdir()
        c.close()
