"""Acceptors started while the workers load (shardkv.supervisor): none
listens before every shard has loaded, one killed while it waits for its
pipes starts again and waits too, and once the shards have loaded every
acceptor serves every shard.  A worker is held (the ``loaded`` fault
point, :mod:`shardkv.runtime.faultpoints`) between its load and its word
to the supervisor."""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import redis

from tests.support.servers import HOST, ROOT, ServerProcess, free_port

WAIT = 30.0


def _until(check, what: str, server: ServerProcess):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"{what}; log:\n{server.log_tail(30)}")


def _acceptor_pids(server: ServerProcess) -> list[int]:
    return [int(pid) for pid in re.findall(r"acceptor pid=(\d+) port=", server.output())]


def _waits_for_its_pipes(pid: int) -> bool:
    """The acceptor has imported its code and blocks reading its pipe from
    the supervisor (where it would be in epoll were it serving)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().startswith("unix_stream")
    except OSError:
        return False


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) == 0


@pytest.mark.parametrize("acceptors", [1, 2])
def test_an_acceptor_killed_while_the_shards_load_waits_again(acceptors):
    folder = tempfile.mkdtemp(prefix="shardkv-early-")
    fault_file = Path(folder, "faultpoints")
    fault_file.write_text("loaded@0")
    port = free_port()
    argv = [
        sys.executable, str(ROOT / "main.py"), "--port", str(port), "--shards", "2",
        "--acceptors", str(acceptors), "--save", "", "--appendonly", "no", "--dir", folder,
    ]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1", SHARDKV_FAULT_FILE=str(fault_file))
    server = ServerProcess(argv, port, cwd=ROOT, env=env, workdir=folder, kind="shardkv", shards=2)
    held = None
    try:
        match = _until(lambda: re.search(r"worker 0 pid=(\d+)", server.output()), "no worker 0", server)
        held = psutil.Process(int(match.group(1)))
        _until(lambda: held.status() == psutil.STATUS_STOPPED, "worker 0 never reached the point", server)
        first = _until(
            lambda: (pids := _acceptor_pids(server)) and len(pids) == acceptors and pids,
            "no acceptors",
            server,
        )
        for pid in first:
            _until(lambda pid=pid: _waits_for_its_pipes(pid), f"acceptor {pid} does not wait", server)
        assert not _listening(port)  # a shard is still loading
        os.kill(first[0], signal.SIGKILL)
        _until(lambda: "before the shards loaded; restarting it" in server.output(), "no restart", server)
        again = _until(lambda: _acceptor_pids(server)[acceptors:], "no new acceptor", server)
        _until(lambda: _waits_for_its_pipes(again[0]), "the new acceptor does not wait", server)
        assert not _listening(port)  # the new one waits for its pipes too
        fault_file.write_text("")
        held.send_signal(signal.SIGCONT)
        held = None
        server.wait_ready(WAIT)
        _until(
            lambda: server.output().count(" listening on ") >= acceptors, "not every acceptor listens", server
        )
        keys = [f"key{i}" for i in range(20)]  # on both shards, through whichever acceptor takes each client
        for key in keys:
            client = redis.Redis(host=HOST, port=port)
            assert client.set(key, key)
            client.close()
        for key in keys:
            client = redis.Redis(host=HOST, port=port)
            assert client.get(key) == key.encode()
            client.close()
    finally:
        if held is not None:
            fault_file.write_text("")
            held.send_signal(signal.SIGCONT)
        assert server.stop() == 0, server.final_output[-3000:]
