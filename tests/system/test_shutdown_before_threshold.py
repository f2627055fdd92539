"""SHUTDOWN sent while a script runs but before it is past
busy-reply-threshold, against redis-server 7.0.15, at one and two
acceptors (at two, the SHUTDOWN through the other acceptor than the script).

Redis reads nothing while a script runs until busy-reply-threshold: a
SHUTDOWN NOSAVE (NOSAVE FORCE) sent meanwhile is read then and stops the
server (the SHUTDOWN's connection closes, nothing is saved); a plain
SHUTDOWN is read then and answered ``-BUSY``.  shardkv's acceptor sent the
shards their ``__shutdown`` at once: the busy shard's waited behind the
script forever at one acceptor (SHUTDOWN hung), and at two the busy shard
refused it (``ERR Errors trying to SHUTDOWN``, the server served on).
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.processes import assert_all_gone, closed_unanswered
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess, start_redis, start_shardkv

pytestmark = pytest.mark.slow

LOOP = "while true do end"
WAIT = 20.0  # seconds for the server to exit (a bound, not a timing check)
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."


def _start(kind: str) -> ServerProcess:
    flags = ("--save", "3600 1", "--lua-time-limit", "500")
    if kind == "redis":
        return start_redis(*flags)
    return start_shardkv(*flags, shards=2, acceptors=int(kind[-1]))


def _clients(proc: ServerProcess) -> tuple[RespClient, RespClient]:
    """(script's caller, SHUTDOWN's sender): on different acceptors at two."""
    if proc.acceptors == 1:
        return RespClient(proc.port, timeout=10), RespClient(proc.port, timeout=10)
    return client_on(proc.port, 0, k=proc.acceptors), client_on(proc.port, 1, k=proc.acceptors)


def _exits(proc: ServerProcess, family: list[psutil.Process]) -> None:
    """The server exits 0 within WAIT, and every process it had is gone."""
    assert proc.proc.wait(WAIT) == 0
    assert_all_gone(family, WAIT)


def _saved(proc: ServerProcess) -> list[Path]:
    assert proc.workdir is not None
    return sorted(Path(proc.workdir).rglob("*.rdb"))


@pytest.mark.parametrize("kind", ["redis", "shardkv-a1", "shardkv-a2"])
@pytest.mark.parametrize("options", [["NOSAVE"], ["NOSAVE", "FORCE"]], ids=["NOSAVE", "NOSAVE-FORCE"])
def test_shutdown_nosave_before_the_threshold_stops_the_server(kind, options):
    proc = _start(kind)
    caller, shutter = _clients(proc)
    try:
        key = key_on(0, "early", shards=2)
        assert caller.command("SET", key, "1") == b"OK"
        family = proc.processes()
        caller.sock.settimeout(WAIT)
        shutter.sock.settimeout(5)  # an old build hangs: fail, not wait
        caller.send("EVAL", LOOP, 1, key)
        time.sleep(0.1)  # the script runs, not yet past the threshold
        shutter.send("SHUTDOWN", *options)
        assert closed_unanswered(shutter), "SHUTDOWN got no answer and its connection stayed open"
        _exits(proc, family)
        assert closed_unanswered(caller)  # the script's client never gets a reply
        assert _saved(proc) == []
    finally:
        caller.close()
        shutter.close()
        proc.stop()


@pytest.mark.parametrize("kind", ["redis", "shardkv-a1", "shardkv-a2"])
def test_shutdown_before_the_threshold_is_refused_busy(kind):
    proc = _start(kind)
    caller, shutter = _clients(proc)
    try:
        key = key_on(0, "early", shards=2)
        family = proc.processes()
        caller.sock.settimeout(WAIT)
        shutter.sock.settimeout(5)
        caller.send("EVAL", LOOP, 1, key)
        time.sleep(0.1)
        shutter.send("SHUTDOWN")
        reply = shutter.read_reply()
        assert isinstance(reply, ErrorReply) and str(reply) == BUSY
        assert shutter.command("SCRIPT", "KILL") == b"OK"
        assert str(caller.read_reply()).startswith("ERR Script killed by user with SCRIPT KILL")
        assert caller.command("GET", key) is None
        shutter.send("SHUTDOWN", "NOSAVE")
        assert closed_unanswered(shutter)
        _exits(proc, family)
    finally:
        caller.close()
        shutter.close()
        proc.stop()


@pytest.mark.parametrize("options", [["NOSAVE"], ["NOSAVE", "FORCE"]], ids=["NOSAVE", "NOSAVE-FORCE"])
def test_shutdown_nosave_closes_the_scripts_client_before_its_acceptor_stops(options):
    """At two acceptors, the busy worker ends for the SHUTDOWN NOSAVE of
    the other acceptor before the supervisor stops the script's acceptor:
    that acceptor sees the worker's pipe close first.  It closed the
    script's client as Redis does (no reply), not answered it as for a
    dead worker (``-ERR shard unavailable``).  The supervisor is held
    (SIGSTOP) until then, so the pipe always closes first."""
    proc = _start("shardkv-a2")
    caller, shutter = _clients(proc)
    supervisor = psutil.Process(proc.proc.pid)
    try:
        key = key_on(0, "early", shards=2)
        assert caller.command("SET", key, "1") == b"OK"
        family = proc.processes()
        caller.sock.settimeout(WAIT)
        shutter.sock.settimeout(5)
        caller.send("EVAL", LOOP, 1, key)
        time.sleep(0.1)
        supervisor.suspend()
        try:
            shutter.send("SHUTDOWN", *options)
            assert closed_unanswered(shutter)
            assert closed_unanswered(caller)  # before the supervisor stops its acceptor
        finally:
            supervisor.resume()
        _exits(proc, family)
        assert _saved(proc) == []
    finally:
        caller.close()
        shutter.close()
        proc.stop()
