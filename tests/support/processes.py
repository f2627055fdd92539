"""A shardkv under test's worker processes, found by their names, and
bounded waits: for a condition (tests that stop a worker to hold a command
in flight, or kill one), and for a script to be past busy-reply-threshold."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import redis

from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess

WAIT = 20.0  # the default bound of until() (a loaded machine is slow; no timing assertion)
BUSY = "BUSY Redis is busy running a script"  # how -BUSY starts, for SCRIPT KILL's text and FUNCTION KILL's


def worker_pids(server: ServerProcess) -> dict[int, int]:
    """Shard index -> pid of its worker, from the process names."""
    out = {}
    for child in psutil.Process(server.proc.pid).children():
        try:
            name = child.name()
        except psutil.NoSuchProcess:
            continue
        if name.startswith("shardkv-shard"):
            out[int(name[len("shardkv-shard") :])] = child.pid
    return out


def kill_held(server: ServerProcess, shard: int, fault_file: Path) -> int:
    """Kill ``shard``'s worker; return once its restart holds itself where
    it begins to load (the ``loading`` fault point, see
    shardkv.runtime.faultpoints: it stops itself, SIGSTOP; the server was
    started with ``SHARDKV_FAULT_FILE=fault_file``): its pid, for the SIGCONT
    that lets it load.  The acceptors answer -LOADING for it meanwhile."""
    old = worker_pids(server)[shard]
    fault_file.write_text(f"loading@{shard}")
    os.kill(old, signal.SIGKILL)

    def held() -> int:
        pid = worker_pids(server).get(shard)
        if pid in (None, old):
            return 0
        try:
            return pid if psutil.Process(pid).status() == psutil.STATUS_STOPPED else 0
        except psutil.NoSuchProcess:
            return 0

    pid = until(held, 60)
    assert pid, "the restarted worker never reached its load"
    fault_file.write_text("")  # (a later start loads freely)
    return pid


def worker_pid(server: ServerProcess, shard: int) -> int:
    """The pid of ``shard``'s worker."""
    pid = worker_pids(server).get(shard)
    if pid is None:
        raise AssertionError(f"no worker for shard {shard}")
    return pid


def until(check: Callable[[], object], wait: float = WAIT) -> object:
    """``check()``'s first true value, or its last one after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while not (got := check()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def wait_busy(probe: Callable[[], object], expected: str = BUSY, wait: float = WAIT) -> str:
    """Run ``probe`` (one command of another client than the script's, such
    as ``lambda: c.get(key)``) until the server refuses it, as it does once a
    script is past busy-reply-threshold: the refusal's text, which must start
    with ``expected``.  ``probe`` may raise the refusal (redis-py's
    ``ResponseError``, ``RespClient.command``'s ``ErrorReply``) or return it
    (``RespClient.read_reply``); an ``AssertionError`` if ``wait`` seconds
    pass first."""
    deadline = time.monotonic() + wait
    while True:
        try:
            got = probe()
        except (redis.ResponseError, ErrorReply) as e:
            got = e
        if isinstance(got, (redis.ResponseError, ErrorReply)):
            assert str(got).startswith(expected), got
            return str(got)
        assert time.monotonic() < deadline, "never got -BUSY"
        time.sleep(0.02)


def closed_unanswered(c: RespClient) -> bool:
    """Whether the server closed ``c`` without a reply (within its timeout);
    a reply fails the test."""
    try:
        reply = c.read_reply()
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    pytest.fail(f"the server answered {reply!r}")


def assert_all_gone(family: list[psutil.Process], wait: float = WAIT) -> None:
    """Every process of ``family`` has ended (or is a zombie) within ``wait``."""
    deadline = time.monotonic() + wait
    left = family
    while left and time.monotonic() < deadline:
        left = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    assert not left, f"processes left behind: {left}"


_LISTENERS: dict[int, int] = {}  # port -> pid of a process listening on it (script_pid)


def script_pid(port: int, shard: int = 0) -> int:
    """The pid of the process that runs a script of ``shard`` on the server
    listening on ``port``, for wait_spinning where a test has only the
    port: redis-server itself, or a shardkv's worker of ``shard``."""

    def listens(pid: int) -> bool:
        try:
            conns = psutil.Process(pid).net_connections("tcp")
        except psutil.NoSuchProcess:
            return False
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)

    pid = _LISTENERS.get(port)
    if pid is None or not listens(pid):  # (a server since stopped may have had the port)
        _LISTENERS[port] = next(
            c.pid
            for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        )
    listener = psutil.Process(_LISTENERS[port])
    if listener.name().startswith("shardkv-accept"):  # (several acceptors: the server is their parent)
        listener = listener.parent()
    for child in listener.children():
        if child.name() == f"shardkv-shard{shard}":
            return child.pid
    return listener.pid


def wait_spinning(
    pid: int, ended: Callable[[], object] = lambda: False, polls: int = 3, wait: float = WAIT
) -> None:
    """Return once process ``pid`` is seen running (state R, on the CPU or
    waiting for it) on ``polls`` polls in a row, 5 ms apart: a script that
    loops there (redis-server's one thread, a shardkv worker), where an
    idle server sleeps in its poll.  It may pass a moment before the loop
    (the server reading the script); a test sends what must come after
    the script's start once this returns, not after a fixed rest.  Or once
    ``ended()`` (the script's reply is there): a loaded machine may delay
    the polls past the end of a short script, which no poll would see."""
    proc = psutil.Process(pid)
    deadline = time.monotonic() + wait
    seen = 0
    while seen < polls and not ended():
        seen = seen + 1 if proc.status() == psutil.STATUS_RUNNING else 0
        assert time.monotonic() < deadline, f"process {pid} never seen running"
        time.sleep(0.005)
