"""CONFIG SET across acceptors: the port, and the wait for every acceptor.

CONFIG SET port: every acceptor moves to the new port, or nothing changes.

As Redis 7's ``updatePort``: the new port is listened on and the old one
closed; a port another process listens on fails the whole CONFIG SET with
Redis's error (unit/introspection "CONFIG SET rollback on apply error"),
every parameter keeps its value, and the server stays on its port.  Both
at one acceptor and at two, where each acceptor must move.

And a CONFIG SET at two acceptors answers once both applied it, not after
the bus's deadline; one stuck past its own, long deadline is killed and
restarted with the setting, then the CONFIG SET answers.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import psutil
import pytest
import redis

from shardkv.protocol import bus
from tests.support.acceptors import acceptor_pids, connect_to
from tests.support.servers import free_port, start_shardkv

PORT_ERROR = "CONFIG SET failed (possibly related to argument 'port') - Unable to listen on this port. Check server logs."


@pytest.fixture(params=[1, 2], ids=["K=1", "K=2"])
def server(request):
    proc = start_shardkv(shards=2, acceptors=request.param)
    yield proc
    proc.stop()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_every_acceptor_moves_to_the_new_port(server):
    old = redis.Redis(port=server.port, socket_timeout=30, decode_responses=True)
    old.set("k", "v")
    new_port = free_port()
    assert old.config_set("port", new_port)
    assert old.config_get("port") == {"port": str(new_port)}
    # Each new connection lands on any acceptor: all of them serve the new
    # port, and none the old one any more (once each has applied it).
    for _ in range(8):
        c = redis.Redis(port=new_port, socket_timeout=30, decode_responses=True)
        assert c.get("k") == "v"
        assert c.config_get("port") == {"port": str(new_port)}
        c.close()
    assert old.ping()  # connections made before stay
    for _ in range(50):
        if _refused(server.port):
            break
    assert _refused(server.port)
    old.close()
    server.port = new_port  # so that stop() finds it


def test_a_port_in_use_rolls_the_whole_config_set_back(server):
    c = redis.Redis(port=server.port, socket_timeout=30, decode_responses=True)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(redis.ResponseError) as e:
            c.execute_command(
                "CONFIG", "SET", "maxmemory", "10000001", "port", taken.getsockname()[1],
                "client-query-buffer-limit", "10mb",
            )  # fmt: skip
        assert str(e.value) == PORT_ERROR
    finally:
        taken.close()
    assert c.config_get("maxmemory") == {"maxmemory": "0"}
    assert c.config_get("port") == {"port": str(server.port)}
    assert c.config_get("client-query-buffer-limit") == {"client-query-buffer-limit": "1073741824"}
    fresh = redis.Redis(port=server.port, socket_timeout=30, decode_responses=True)
    assert fresh.ping()
    fresh.close()
    c.close()


@pytest.fixture
def two():
    proc = start_shardkv(shards=2, acceptors=2)
    yield proc
    proc.stop()


def _config_set_in_thread(conn: redis.Redis, *args: object) -> tuple[threading.Thread, list]:
    replies: list = []
    thread = threading.Thread(target=lambda: replies.append(conn.execute_command("CONFIG", "SET", *args)))
    thread.start()
    return thread, replies


def test_config_set_waits_for_a_slow_acceptor_and_not_for_a_dead_one(two):
    """CONFIG SET through acceptor 0 answers OK only once acceptor 1 has
    applied it too, however long that takes (acceptor 1 stopped well past
    the bus's 2 s); if acceptor 1 dies instead, the CONFIG SET answers, and
    the restarted acceptor has the new value."""
    pids = acceptor_pids(two)
    conn = connect_to(two.port, 0)
    os.kill(pids[1], signal.SIGSTOP)
    try:
        thread, replies = _config_set_in_thread(conn, "slowlog-max-len", "77")
        thread.join(2 * bus.ANSWER_WITHIN)
        assert not replies  # acceptor 1 has not applied it: no OK yet
    finally:
        os.kill(pids[1], signal.SIGCONT)
    thread.join(30)
    assert replies == ["OK"]
    assert connect_to(two.port, 1).config_get("slowlog-max-len") == {"slowlog-max-len": "77"}
    os.kill(pids[1], signal.SIGSTOP)
    thread, replies = _config_set_in_thread(conn, "slowlog-max-len", "78")
    thread.join(bus.ANSWER_WITHIN + 1)
    assert not replies
    os.kill(pids[1], signal.SIGKILL)  # (a stopped process dies of SIGKILL)
    thread.join(30)
    assert replies == ["OK"]
    deadline = time.monotonic() + 60
    while acceptor_pids(two).get(1, pids[1]) == pids[1]:
        assert time.monotonic() < deadline, "acceptor 1 was not restarted"
        time.sleep(0.05)
    assert connect_to(two.port, 1).config_get("slowlog-max-len") == {"slowlog-max-len": "78"}
    conn.close()


def _gone(pid: int) -> bool:
    """Whether process ``pid`` is dead (a zombie not reaped yet counts)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _restarted(server, index: int, old: int) -> int:
    """The pid of acceptor ``index`` once it is not ``old`` any more."""
    deadline = time.monotonic() + 60
    while (pid := acceptor_pids(server).get(index, old)) == old:
        assert time.monotonic() < deadline, f"acceptor {index} was not restarted"
        time.sleep(0.02)
    return pid


SYNC_WITHIN = 3  # seconds, for this test only (the server's own is bus.SYNC_WITHIN)


@pytest.fixture
def two_quick():
    """Two acceptors, with a short deadline for a CONFIG SET's wait."""
    proc = start_shardkv(shards=2, acceptors=2, env=dict(os.environ, SHARDKV_SYNC_WITHIN=str(SYNC_WITHIN)))
    yield proc
    proc.stop()


def test_a_stuck_acceptor_is_killed_and_restarted_with_the_setting(two_quick):
    """An acceptor that is alive but stuck (stopped here) does not hold a
    CONFIG SET forever: past the deadline the supervisor kills it and starts
    it again with the new setting, and only then does the CONFIG SET answer
    OK (every live acceptor has it)."""
    pids = acceptor_pids(two_quick)
    conn = connect_to(two_quick.port, 0)
    os.kill(pids[1], signal.SIGSTOP)
    try:
        thread, replies = _config_set_in_thread(conn, "slowlog-max-len", "79")
        thread.join(60)
        assert replies == ["OK"]
        assert _gone(pids[1])  # killed before the OK
    finally:
        if not _gone(pids[1]):
            os.kill(pids[1], signal.SIGCONT)
    _restarted(two_quick, 1, pids[1])
    assert connect_to(two_quick.port, 1).config_get("slowlog-max-len") == {"slowlog-max-len": "79"}
    assert acceptor_pids(two_quick)[0] == pids[0]  # the other was left alone
    conn.close()
