"""SIGTERM and SIGINT while a script runs, against redis-server 7.0.15
(shardkv at ``$SHARDKV_TEST_ACCEPTORS`` acceptors).

Redis's signal handler only schedules the shutdown (``shutdown_asap``);
serverCron runs it, and serverCron does not run while a script does.  So
the server waits for the script's end, answering the other clients
``-BUSY`` past busy-reply-threshold (SCRIPT KILL and SHUTDOWN NOSAVE work),
then stops as ``shutdown-on-sig*`` says and exits 0.  A second SIGTERM
changes nothing; a SIGINT while the shutdown is pending exits at once
with status 1 ("You insist... exiting now."), saving nothing and leaving
no temp file.

shardkv stopped at once on a signal that does not save: it dropped the
clients, waited 120 s for the busy worker, killed it and exited 1.  It
had no second-SIGINT exit: it waited for the busy script.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.support.acceptors import acceptor_pids, client_on
from tests.support.placement import key_on
from tests.support.processes import assert_all_gone, closed_unanswered, until
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess, start_redis, start_shardkv

pytestmark = pytest.mark.slow

LOOP = "while true do end"
WAIT = 20.0  # seconds for the server to exit or a script to be busy (bounds, not timing checks)
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
THRESHOLD_MS = "500"


def _start(kind: str, rules: str) -> ServerProcess:
    flags = ("--save", rules, "--busy-reply-threshold", THRESHOLD_MS)
    if kind == "redis":
        return start_redis(*flags)
    return start_shardkv(*flags, shards=2)


def _wait_busy(c: RespClient) -> None:
    """PING until the script is past busy-reply-threshold (``-BUSY``)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        c.send("PING")
        reply = c.read_reply()
        if isinstance(reply, ErrorReply):
            assert str(reply) == BUSY
            return
        time.sleep(0.05)
    pytest.fail("the script never became busy")


def _exits(proc: ServerProcess, family: list[psutil.Process]) -> int:
    """The server's exit status (within WAIT), once every process it had is gone."""
    status = proc.proc.wait(WAIT)
    assert_all_gone(family, WAIT)
    return status


def _scheduled(proc: ServerProcess) -> int:
    """How many signals the server has logged as scheduling its stop."""
    return proc.output().count("Received SIGTERM scheduling shutdown...")


def _files(proc: ServerProcess) -> set[str]:
    assert proc.workdir is not None
    return {name for _, _, names in os.walk(proc.workdir) for name in names}


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
@pytest.mark.parametrize(
    ("when", "end", "rules"),
    [
        ("past", "SCRIPT KILL", ""),
        ("past", "SHUTDOWN NOSAVE", ""),
        ("before", "SCRIPT KILL", ""),
        ("past", "SCRIPT KILL", "3600 1"),
    ],
    ids=["past-kill", "past-shutdown-nosave", "before-kill", "past-kill-saves"],
)
def test_a_signal_waits_for_a_busy_script_then_stops(kind, when, end, rules):
    """The signal (sent before or past busy-reply-threshold) waits for the
    script: the others get ``-BUSY``, a second SIGTERM changes nothing,
    SCRIPT KILL or SHUTDOWN NOSAVE ends it, and the server stops (saving
    if there are rules) and exits 0."""
    proc = _start(kind, rules)
    caller, other = RespClient(proc.port, timeout=WAIT), RespClient(proc.port, timeout=WAIT)
    try:
        key, elsewhere = key_on(0, "script", shards=2), key_on(1, "other", shards=2)
        assert other.command("SET", elsewhere, "1") == b"OK"
        family = proc.processes()
        before = _files(proc)
        caller.send("EVAL", LOOP, 1, key)
        if when == "past":
            _wait_busy(other)
        # (Pauses: Redis handles what comes in one burst in one go, which
        # may leave a reply unwritten; and two signals pending at once are
        # one: the second goes once the first is logged.)
        time.sleep(0.2)
        proc.signal(signal.SIGTERM)
        assert until(lambda: _scheduled(proc) == 1)
        proc.signal(signal.SIGTERM)  # a second SIGTERM only says so again
        assert until(lambda: _scheduled(proc) == 2)
        _wait_busy(other)
        other.send("GET", elsewhere)
        reply = other.read_reply()
        assert isinstance(reply, ErrorReply) and str(reply) == BUSY
        assert proc.proc.poll() is None  # still there: it waits for the script
        if end == "SCRIPT KILL":
            assert other.command("SCRIPT", "KILL") == b"OK"
            # Redis closes the script's connection without its reply (its
            # serverCron stops the server before the reply is written);
            # shardkv writes the reply first (see the README).
            try:
                reply = caller.read_reply()
            except ConnectionError:
                reply = None
            assert reply is None or str(reply).startswith("ERR Script killed by user with SCRIPT KILL")
        else:
            other.send("SHUTDOWN", "NOSAVE")
            assert closed_unanswered(other)
            assert closed_unanswered(caller)
        assert _exits(proc, family) == 0
        output = proc.output()
        assert _scheduled(proc) == 2
        assert "You insist" not in output
        saved = {name for name in _files(proc) - before if name.startswith("dump.rdb")}
        assert bool(saved) == (bool(rules) and end == "SCRIPT KILL")
    finally:
        caller.close()
        other.close()
        proc.stop()


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
@pytest.mark.parametrize(
    ("first", "rules"),
    [(signal.SIGTERM, ""), (signal.SIGINT, ""), (signal.SIGTERM, "3600 1")],
    ids=["SIGTERM", "SIGINT", "SIGTERM-saves"],
)
def test_a_sigint_while_the_stop_is_pending_exits_at_once(kind, first, rules):
    """A SIGINT while a signal's stop waits for a busy script: "You
    insist... exiting now.", status 1 at once, nothing saved, no temp file
    and no process left."""
    proc = _start(kind, rules)
    caller, other = RespClient(proc.port, timeout=WAIT), RespClient(proc.port, timeout=WAIT)
    try:
        key = key_on(0, "script", shards=2)
        assert other.command("SET", key, "1") == b"OK"
        family = proc.processes()
        before = _files(proc)
        caller.send("EVAL", LOOP, 1, key)
        _wait_busy(other)
        time.sleep(0.2)
        proc.signal(first)
        assert until(lambda: f"Received {signal.Signals(first).name} scheduling shutdown..." in proc.output())
        _wait_busy(other)  # the stop is pending
        proc.signal(signal.SIGINT)
        assert _exits(proc, family) == 1
        assert closed_unanswered(caller)
        output = proc.output()
        assert f"Received {signal.Signals(first).name} scheduling shutdown..." in output
        assert "You insist... exiting now." in output
        assert _files(proc) - before == set()  # no snapshot, no temp file
    finally:
        caller.close()
        other.close()
        proc.stop()


@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_a_sigint_while_the_stop_saves_exits_at_once_and_leaves_no_temp_file(kind):
    """A SIGINT while a signal's stop is saving (slowed by
    ``rdb-key-save-delay``): status 1 at once, the save's temp file
    removed (Redis's rdbRemoveTempFile), no snapshot, no process left."""
    flags = ("--save", "3600 1", "--rdb-key-save-delay", "100000")  # 0.1 s a key
    proc = start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)
    try:
        with RespClient(proc.port, timeout=WAIT) as c:
            for i in range(60):
                assert c.command("SET", f"key:{i}", i) == b"OK"
        family = proc.processes()
        before = _files(proc)
        proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + WAIT
        while not any("temp-" in name or ".tmp-" in name for name in _files(proc) - before):
            assert time.monotonic() < deadline, "no save began"
            time.sleep(0.02)
        proc.signal(signal.SIGINT)
        assert _exits(proc, family) == 1
        output = proc.output()
        assert "Received SIGTERM scheduling shutdown..." in output
        assert "You insist... exiting now." in output
        assert _files(proc) - before == set()
    finally:
        proc.stop()


def test_a_kill_while_the_stop_is_pending_answers_with_the_other_acceptor_stopped():
    """Two acceptors, a stop pending behind a busy script, and SCRIPT KILL
    read by the acceptor that stops the shards while the other one is
    stopped (SIGSTOP): the kill's ``+OK`` waits for the bus (the other
    acceptor must know of the kill, see scripting._tell_killed), the
    script's end lets the stop go on, and the acceptor, told to stop,
    closed the killer's connection with the ``+OK`` unwritten (redis-server
    answers it at once; ``test_a_signal_waits_for_a_busy_script_then_stops``
    lost it now and then at two acceptors).  It answers it as it stops
    (Bus.give_up)."""
    proc = start_shardkv("--save", "", "--busy-reply-threshold", THRESHOLD_MS, shards=2, acceptors=2)
    caller = client_on(proc.port, 0, k=2, timeout=WAIT)
    killer = client_on(proc.port, 0, k=2, timeout=WAIT)
    stopped = acceptor_pids(proc)[1]
    try:
        family = proc.processes()
        caller.send("EVAL", LOOP, 1, key_on(0, "script", shards=2))
        _wait_busy(killer)
        proc.signal(signal.SIGTERM)
        assert until(lambda: _scheduled(proc) == 1)
        os.kill(stopped, signal.SIGSTOP)
        killer.send("SCRIPT", "KILL")
        assert killer.read_reply() == b"OK"
        os.kill(stopped, signal.SIGCONT)
        assert _exits(proc, family) == 0
    finally:
        if psutil.pid_exists(stopped):
            os.kill(stopped, signal.SIGCONT)
        caller.close()
        killer.close()
        proc.stop()
