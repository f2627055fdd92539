"""SHUTDOWN ABORT, and two stops at once where a save fails, against
redis-server 7.0.15 where Redis shows it (shardkv at ``$SHARDKV_TEST_ACCEPTORS``
acceptors; with several, the ABORT goes to the acceptor the stop was
handed to, see the README).

Redis's abortShutdown cancels a shutdown under way and answers ``+OK``: a
signal's not yet run (``shutdown_asap``, pending while a script is busy),
or one waiting for its replicas (whose blocked SHUTDOWN gets ``-ERR Errors
trying to SHUTDOWN. Check logs.``); else ``-ERR No shutdown in progress.``.
shardkv answered that error always.  A SHUTDOWN whose save fails answers
that same error and the server serves on; two at once both do.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.support.acceptors import K, client_on
from tests.support.placement import key_on
from tests.support.processes import until, worker_pid
from tests.support.resp import ErrorReply, RespClient, parse_info
from tests.support.servers import ServerProcess, start_redis, start_shardkv

WAIT = 20.0  # seconds: bounds, not timing checks
LOOP = "while true do end"
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
NO_SHUTDOWN = "ERR No shutdown in progress."

pytestmark = pytest.mark.slow
FAILED = "ERR Errors trying to SHUTDOWN. Check logs."


def _client(proc: ServerProcess) -> RespClient:
    """A client of the acceptor a signal's stop is handed to (the first)."""
    if proc.kind == "redis" or K == 1:
        return RespClient(proc.port, timeout=WAIT)
    return client_on(proc.port, 0, k=K, timeout=WAIT)


def _ask(c: RespClient, *args: str) -> object:
    """One command's reply; an error reply is returned, not raised."""
    c.send(*args)
    return c.read_reply()


def _is_error(reply: object, text: str) -> bool:
    return isinstance(reply, ErrorReply) and str(reply) == text


def _abort_once_read(aborter: RespClient) -> None:
    """SHUTDOWN ABORT until the acceptor has read a SHUTDOWN sent just
    before (``No shutdown in progress`` until then): ``OK``."""
    deadline = time.monotonic() + WAIT
    while True:
        reply = _ask(aborter, "SHUTDOWN", "ABORT")
        if reply == b"OK" or time.monotonic() > deadline:
            break
        assert _is_error(reply, NO_SHUTDOWN)
    assert reply == b"OK"


def _wait_busy(c: RespClient) -> None:
    """PING until the script is past busy-reply-threshold (``-BUSY``)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        reply = _ask(c, "PING")
        if isinstance(reply, ErrorReply):
            assert str(reply) == BUSY
            return
        time.sleep(0.05)
    pytest.fail("the script never became busy")


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_abort_cancels_a_signal_stop_waiting_for_a_script(kind):
    """SIGTERM while a script is busy: the stop waits for it; SHUTDOWN
    ABORT cancels it (``+OK``), the script's end then stops nothing, a
    second ABORT has nothing to cancel, and a later SIGTERM stops, status 0."""
    flags = ("--save", "", "--busy-reply-threshold", "200")
    proc = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    caller, other = _client(proc), _client(proc)
    try:
        assert _is_error(_ask(other, "SHUTDOWN", "ABORT"), NO_SHUTDOWN)
        caller.send("EVAL", LOOP, 1, key_on(0, "script", shards=2))
        _wait_busy(other)
        proc.signal(signal.SIGTERM)
        assert until(lambda: "Received SIGTERM scheduling shutdown..." in proc.output())
        _wait_busy(other)  # (the acceptor has read the supervisor's stop by then)
        assert other.command("SHUTDOWN", "ABORT") == b"OK"
        assert until(lambda: "Shutdown manually aborted." in proc.output())
        assert other.command("SCRIPT", "KILL") == b"OK"
        reply = caller.read_reply()
        assert str(reply).startswith("ERR Script killed by user with SCRIPT KILL")
        # The stop would have run at the script's end (Redis's next serverCron).
        assert other.command("SET", key_on(1, "after", shards=2), "1") == b"OK"
        time.sleep(0.3)
        assert proc.proc.poll() is None
        assert caller.command("PING") == b"PONG"
        assert _is_error(_ask(other, "SHUTDOWN", "ABORT"), NO_SHUTDOWN)
        proc.signal(signal.SIGTERM)  # a later signal stops the server
        assert proc.proc.wait(WAIT) == 0
    finally:
        caller.close()
        other.close()
        proc.stop()


def test_abort_cancels_a_shutdown_whose_shards_save():
    """A SHUTDOWN whose shards still save (slowly, ``rdb-key-save-delay``)
    is under way, as Redis's waiting for its replicas: SHUTDOWN ABORT
    answers ``+OK`` once every shard is open again, and the SHUTDOWN gets
    Redis's replyToClientsBlockedOnShutdown error.  The server serves on,
    every key kept, every change still counted as unsaved (Redis's save
    comes after the wait its ABORT cancels)."""
    proc = start_shardkv("--save", "", "--rdb-key-save-delay", "5000", shards=2)
    stopper, aborter = _client(proc), _client(proc)
    try:
        for i in range(100):  # about 0.25 s of saving a shard
            assert aborter.command("SET", f"k{i}", i) == b"OK"
        stopper.send("SHUTDOWN", "SAVE")
        _abort_once_read(aborter)
        assert _is_error(stopper.read_reply(), FAILED)
        assert aborter.command("SET", "later", "1") == b"OK"  # every shard open again
        assert aborter.command("DBSIZE") == 101
        # Redis's ABORT comes before its save: the shards' saves count as
        # not made (before, rdb_changes_since_last_save said 1).
        info = parse_info(aborter.command("INFO", "persistence"))  # type: ignore[arg-type]
        assert (info["rdb_changes_since_last_save"], info["rdb_saves"]) == ("101", "0")
        assert proc.proc.poll() is None
        assert _is_error(_ask(aborter, "SHUTDOWN", "ABORT"), NO_SHUTDOWN)
    finally:
        stopper.close()
        aborter.close()
        proc.stop()


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_two_stops_where_a_save_fails_both_fail_and_the_server_serves_on(kind):
    """A SHUTDOWN and, before it is over, another SHUTDOWN, then a SHUTDOWN
    and a SIGTERM, with one shard's snapshot path a directory (its save
    fails; the other shard saves slowly, so that the stops overlap): each
    SHUTDOWN gets ``-ERR Errors trying to SHUTDOWN. Check logs.``, the
    signal's stop logs Redis's lines, nobody waits for ever, and the server
    serves on with every key, every change counted as unsaved (no save was
    made, as in Redis); once the path is free, a SIGTERM saves and
    stops, status 0.  (shardkv answers the first failure once the second
    stop is over too, and opens the shards again once, then.)"""
    flags = ("--save", "3600 1", "--rdb-key-save-delay", "5000")
    proc = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    assert proc.workdir is not None
    blocked = Path(proc.workdir) / ("dump.rdb" if kind == "redis" else "dump.rdb.shard-0")
    first, other = _client(proc), _client(proc)
    lines = "Errors trying to shut down the server. Check the logs for more information."
    try:
        started = parse_info(other.command("INFO", "persistence"))["rdb_last_save_time"]  # type: ignore[arg-type]
        for i in range(100):
            assert other.command("SET", f"k{i}", i) == b"OK"
        blocked.mkdir()
        first.send("SHUTDOWN")
        other.send("SHUTDOWN")
        assert _is_error(first.read_reply(), FAILED)
        assert _is_error(other.read_reply(), FAILED)
        assert first.command("SET", "later", "1") == b"OK"  # every shard open again
        first.send("SHUTDOWN")
        time.sleep(0.05)
        proc.signal(signal.SIGTERM)
        assert _is_error(first.read_reply(), FAILED)
        assert until(lambda: lines in proc.output())
        assert first.command("SET", "later2", "1") == b"OK"
        assert other.command("DBSIZE") == 102
        # As Redis, no save was made (one failed): every change counts
        # still, and the last save is the start (shard 1 had saved each time).
        info = parse_info(other.command("INFO", "persistence"))  # type: ignore[arg-type]
        assert info["rdb_changes_since_last_save"] == "102"
        assert (info["rdb_saves"], info["rdb_last_save_time"]) == ("0", started)
        assert proc.proc.poll() is None
        blocked.rmdir()
        proc.signal(signal.SIGTERM)
        assert proc.proc.wait(WAIT) == 0
    finally:
        first.close()
        other.close()
        if blocked.is_dir():
            blocked.rmdir()
        proc.stop()


def test_abort_of_a_shutdown_held_by_a_frozen_worker_answers_at_once(tmp_path):
    """A SHUTDOWN one of whose workers is frozen (stopped at the fault
    point ``shutdown``, holding its ``__shutdown``) never has every shard's
    answer: SHUTDOWN ABORT cancels it all the same, answering ``+OK`` and
    the SHUTDOWN Redis's error without waiting for that worker (it once
    waited for ever).  The other shard serves at once; the frozen one,
    running again, runs its ``__shutdown`` and then the abort, and serves
    too, every key kept.  (The worker freezes once it has the stop: frozen
    before, at several acceptors it would not answer the ``__ping`` the
    SHUTDOWN waits for to be read, see shardlink.at_threshold, and the
    SHUTDOWN would never be read.)"""
    fault_file = tmp_path / "faultpoints"
    fault_file.write_text("shutdown@1")
    env = dict(os.environ, SHARDKV_FAULT_FILE=str(fault_file))
    # (Its answers wait shutdown-timeout seconds for the frozen shard.)
    proc = start_shardkv("--save", "", "--shutdown-timeout", "1", shards=2, env=env)
    stopper, aborter = _client(proc), _client(proc)
    frozen = psutil.Process(worker_pid(proc, 1))
    try:
        assert aborter.command("SET", key_on(1, "before", shards=2), "1") == b"OK"
        stopper.send("SHUTDOWN")
        assert until(lambda: frozen.status() == psutil.STATUS_STOPPED), "worker 1 never took the stop"
        assert aborter.command("SHUTDOWN", "ABORT") == b"OK"
        assert _is_error(stopper.read_reply(), FAILED)
        assert aborter.command("SET", key_on(0, "later", shards=2), "1") == b"OK"
        assert _is_error(_ask(aborter, "SHUTDOWN", "ABORT"), NO_SHUTDOWN)
        fault_file.write_text("")
        frozen.resume()
        assert aborter.command("SET", key_on(1, "later", shards=2), "1") == b"OK"
        assert aborter.command("DBSIZE") == 3
        assert proc.proc.poll() is None
    finally:
        fault_file.write_text("")
        frozen.resume()
        stopper.close()
        aborter.close()
        proc.stop()


def test_after_an_abort_a_client_of_another_acceptor_finds_the_shard_open():
    """SHUTDOWN ABORT while a shard still saves for the SHUTDOWN (1 ms a
    key): its ``+OK`` comes once that shard has run the abort, queued
    behind its ``__shutdown``, so that a write sent then by a client of
    another acceptor, on that acceptor's own pipe, is served, as Redis's
    after its ABORT (it once got ``-ERR shard is shutting down``)."""
    # The ABORT's +OK waits for the shard's abort at most shutdown-timeout
    # (a frozen worker's bound: test_abort_of_a_shutdown_held_by_a_frozen_worker_answers_at_once),
    # then comes with the shard still saving: the saves here (300 keys at 1
    # and 8 ms) take 0.3-2.4 s, far longer under load, so the bound is 60 s.
    proc = start_shardkv("--save", "3600 1", "--shutdown-timeout", "60", shards=2, acceptors=2)
    stopper, aborter, other = client_on(proc.port, 0), client_on(proc.port, 0), client_on(proc.port, 1)
    try:
        for i in range(300):
            assert stopper.command("SET", key_on(1, f"k{i}", shards=2), "v") == b"OK"
        assert stopper.command("CONFIG", "SET", "rdb-key-save-delay", "1000") == b"OK"
        stopper.send("SHUTDOWN")
        _abort_once_read(aborter)
        assert other.command("SET", key_on(1, "later", shards=2), "1") == b"OK"
        assert _is_error(stopper.read_reply(), FAILED)
        # Redis is one process: an ABORT through another acceptor cancels
        # the stop too (it once answered "No shutdown in progress").  Its
        # +OK waits for the shard to open again, past the bus's 2 s here.
        assert stopper.command("CONFIG", "SET", "rdb-key-save-delay", "8000") == b"OK"
        stopper.send("SHUTDOWN")
        _abort_once_read(other)
        assert other.command("SET", key_on(1, "later", shards=2), "2") == b"OK"
        assert _is_error(stopper.read_reply(), FAILED)
        assert _is_error(_ask(aborter, "SHUTDOWN", "ABORT"), NO_SHUTDOWN)
        assert proc.proc.poll() is None
        assert stopper.command("CONFIG", "SET", "rdb-key-save-delay", "0") == b"OK"  # (a quick stop)
    finally:
        for c in (stopper, aborter, other):
            c.close()
        proc.stop()
