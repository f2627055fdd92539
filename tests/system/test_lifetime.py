"""Process lifetime: no process of shardkv outlives its supervisor."""

from __future__ import annotations

import signal
import socket

import psutil
import pytest
import redis

from tests.support.servers import start_shardkv

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("appendonly", ["no", "yes"])
def test_children_exit_and_free_the_port_when_the_supervisor_is_killed(tmp_path, appendonly):
    server = start_shardkv("--appendonly", appendonly, "--dir", str(tmp_path), shards=3)
    children = psutil.Process(server.proc.pid).children(recursive=True)
    try:
        assert len(children) >= 4  # the acceptor and 3 workers
        c = redis.Redis(port=server.port)
        c.set("k", "v")
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait(10)
        gone, alive = psutil.wait_procs(children, timeout=60)
        assert not alive, [p.pid for p in alive]
        with socket.socket() as s:  # the port is free again
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", server.port))
            s.listen()
        c.close()
    finally:
        for p in (
            psutil.Process(server.proc.pid).children(recursive=True) if server.proc.poll() is None else []
        ):
            p.kill()
        server.stop()
    if appendonly == "yes":  # the workers flushed on their way out
        again = start_shardkv("--appendonly", "yes", "--dir", str(tmp_path), shards=3)
        try:
            assert redis.Redis(port=again.port).get("k") == b"v"
        finally:
            again.stop()
