"""tests.support.servers: a start that must not be taken for another's.

``ServerProcess.wait_ready`` takes the first +PONG on the port; when the
PONG came from another process that listens there, the server is not
ours, and its start must fail (ServerStartError), never return a server
that could not listen.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from tests.support import janitor, servers
from tests.support.resp import RespClient
from tests.support.servers import (
    ROOT,
    ServerProcess,
    ServerStartError,
    free_port,
    popen_dying_with_us,
    start_redis,
    start_shardkv,
)


@pytest.mark.parametrize("lives", [0.3, 5.0])
def test_a_pong_from_another_process_fails_the_start(lives):
    """A stranger (redis-server) answers on the port; "our" server never
    listens and exits after ``lives`` seconds (0.3: while the start looks
    at who listens, as a shardkv that could not bind; 5: after that look
    gave up)."""
    stranger = start_redis()
    try:
        argv = [sys.executable, "-c", f"import time; time.sleep({lives}); raise SystemExit(1)"]
        ours = ServerProcess(argv, stranger.port, kind="fake")
        try:
            with pytest.raises(ServerStartError) as caught:
                ours.wait_ready(timeout=10)
            assert f"another process listens on port {stranger.port}" in caught.value.reason
            assert ours.proc.poll() is not None  # stopped
        finally:
            ours.stop()
    finally:
        stranger.stop()


@pytest.mark.slow  # a shardkv of its own
def test_a_shardkv_on_a_taken_port_fails_its_start():
    """shardkv cannot listen where redis-server does, and exits: its start
    reports that (at one acceptor it returned the dead server, the PONG
    being redis-server's)."""
    stranger = start_redis()
    try:
        with pytest.raises(ServerStartError) as caught:
            start_shardkv(port=stranger.port, shards=1)
        assert f"another process listens on port {stranger.port}" in caught.value.reason
    finally:
        stranger.stop()


@pytest.mark.slow  # a shardkv of its own
def test_a_picked_port_taken_meanwhile_is_picked_again(monkeypatch):
    """The port free_port picked is taken before the server listens: the
    server starts again on another one, and serves there."""
    stranger = start_redis()
    picks = [stranger.port]
    monkeypatch.setattr(servers, "free_port", lambda: picks.pop() if picks else free_port())
    try:
        ours = start_shardkv(shards=1)
        try:
            assert ours.port != stranger.port
            assert ours.proc.poll() is None
            with RespClient(ours.port) as c:
                assert c.command("SET", "k", "ours") == b"OK"
            with RespClient(stranger.port) as c:
                assert c.command("GET", "k") is None
        finally:
            ours.stop()
    finally:
        stranger.stop()


# Starts a redis-server from a pool's thread (that ends with the pool) and a
# shardkv from the main thread, checks the redis-server outlived the thread,
# prints what it started, then waits to be killed.
ORPHANING_CHILD = textwrap.dedent(
    """
    import concurrent.futures, json, subprocess, sys, time
    from tests.support.servers import start_redis, start_shardkv
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        real = pool.submit(start_redis).result()
    try:
        real.proc.wait(1)  # it must not end with the thread that started it
        sys.exit("redis-server ended with the thread that started it")
    except subprocess.TimeoutExpired:
        pass
    ours = start_shardkv(shards=2)
    started = [real, ours]
    print(json.dumps({
        "pids": [[p.pid, p.create_time()] for s in started for p in s.processes()],
        "paths": [path for s in started for path in (s.log.name, s.workdir)],
    }), flush=True)
    time.sleep(600)
    """
)


def _python_child(code: str, stdin: int) -> subprocess.Popen:
    """``python -c code`` in this checkout, dying with this process, its
    stdout a text pipe."""
    return popen_dying_with_us(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.PIPE,
        stdin=stdin,
        text=True,
    )


@pytest.mark.slow  # a shardkv of its own, in a Python of its own
def test_servers_die_with_the_process_that_started_them():
    """A test process killed before its teardown (SIGKILL, as an xdist
    worker at Ctrl-C ends without running fixtures' teardown) leaves no
    server behind: shardkv's supervisor, acceptor and workers and a
    redis-server all end, found by the pids the child recorded."""
    child = _python_child(ORPHANING_CHILD, subprocess.DEVNULL)
    procs: list[psutil.Process] = []
    started: dict = {"paths": []}
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line, f"the child exited with {child.wait(60)} before starting its servers"
        started = json.loads(line)
        for pid, created in started["pids"]:
            proc = psutil.Process(pid)
            assert proc.create_time() == created, pid  # (the same process)
            procs.append(proc)
        assert len(procs) >= 4  # redis-server; supervisor, acceptor, 2 workers
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        _, alive = psutil.wait_procs(procs, timeout=30)
        assert not alive, [(p.pid, p.name()) for p in alive]
    finally:
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if child.stdout:
            child.stdout.close()
        for path in started["paths"]:  # should its janitor not have removed them
            if path and os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif path:
                with contextlib.suppress(OSError):
                    os.unlink(path)


# Starts a redis-server, prints its pid, log and folder, then waits to be
# killed or, told "exit" on stdin, exits without stopping it.
ABANDONING_CHILD = textwrap.dedent(
    """
    import json, sys
    from tests.support.servers import start_redis
    real = start_redis()
    print(json.dumps({"pid": real.proc.pid, "paths": [real.log.name, real.workdir]}), flush=True)
    sys.stdin.readline()
    """
)


def _abandon_a_server() -> tuple[subprocess.Popen, dict]:
    """A child process that started a redis-server, and what it printed."""
    child = _python_child(ABANDONING_CHILD, subprocess.PIPE)
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line, f"the child exited with {child.wait(60)} before starting its server"
    started = json.loads(line)
    assert all(os.path.exists(path) for path in started["paths"]), started
    return child, started


def _remove_left(child: subprocess.Popen, started: dict) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(10)
    for stream in (child.stdin, child.stdout):
        if stream:
            stream.close()
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(started["pid"]).kill()
    for path in started["paths"]:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def test_a_killed_starters_servers_leave_no_log_or_folder():
    """A test process killed before its teardown (SIGKILL) leaves neither
    its server's log nor its folder: its janitor removes them once the
    server, which got SIGTERM with its starter's death, has ended."""
    child, started = _abandon_a_server()
    try:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + janitor.WAIT_FOR_SERVERS + 10
        while (left := [p for p in started["paths"] if os.path.exists(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not left
        assert (
            not psutil.pid_exists(started["pid"])
            or psutil.Process(started["pid"]).status() == psutil.STATUS_ZOMBIE
        )
    finally:
        _remove_left(child, started)


def test_a_starter_that_exits_normally_leaves_what_it_did_not_stop():
    """A process that exits without stopping its server leaves its log and
    folder where they are, for the test run's leak check to report: the
    janitor removes only what a killed process could not."""
    child, started = _abandon_a_server()
    try:
        assert child.stdin is not None
        child.stdin.write("exit\n")
        child.stdin.flush()
        assert child.wait(30) == 0  # (its atexit waited for its janitor to end)
        assert all(os.path.exists(path) for path in started["paths"]), started
    finally:
        _remove_left(child, started)
