"""CONFIG SET port: every acceptor moves to the new port, or nothing changes.

As Redis 7's ``updatePort``: the new port is listened on and the old one
closed; a port another process listens on fails the whole CONFIG SET with
Redis's error (unit/introspection "CONFIG SET rollback on apply error"),
every parameter keeps its value, and the server stays on its port.  Both
at one acceptor and at two, where each acceptor must move.
"""

from __future__ import annotations

import socket

import pytest
import redis

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
