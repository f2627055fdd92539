"""tests.support.servers: a start that must not be taken for another's.

``ServerProcess.wait_ready`` takes the first +PONG on the port; when the
PONG came from another process that listens there, the server is not
ours, and its start must fail (ServerStartError), never return a server
that could not listen.
"""

from __future__ import annotations

import sys

import pytest

from tests.support import servers
from tests.support.resp import RespClient
from tests.support.servers import ServerProcess, ServerStartError, free_port, start_redis, start_shardkv


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
