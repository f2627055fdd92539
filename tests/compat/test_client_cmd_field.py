"""CLIENT LIST's ``cmd=`` field, against both servers.

Redis sets ``c->lastcmd`` when it starts to process a command, so ``cmd=``
names the last command that started: a blocking command while it waits,
even with commands pipelined behind it (Redis processes those only once it
unblocks), EXEC after a transaction, and NULL after a command Redis does
not know (``c->lastcmd`` is then NULL).  The client is watched from a
second connection (on another acceptor when shardkv has several:
``SHARDKV_TEST_ACCEPTORS``).
"""

from __future__ import annotations

import re
import time

import pytest

from tests.compat.test_wait import WAIT, other_client, wait_blocked
from tests.support.resp import RespClient
from tests.support.servers import start_redis, start_shardkv


def fields(port: int, client_id: int) -> dict[str, str]:
    """Client ``client_id``'s CLIENT LIST line, seen from another connection."""
    with other_client(port, client_id) as other:
        line = other.command("CLIENT", "LIST", "ID", client_id)
    assert isinstance(line, bytes)
    return dict(kv.split("=", 1) for kv in line.decode().split())


@pytest.mark.parametrize(
    "blocking, reply",
    [(b"WAIT 1 0", b":0\r\n"), (b"BLPOP k 0", b"*-1\r\n")],
    ids=["wait", "blpop"],
)
def test_blocked_with_commands_behind(server, blocking, reply):
    """A blocking command and PING in one read: ``cmd`` names the blocking
    command while it waits, and PING once it is unblocked and PING ran."""
    with RespClient(server, timeout=WAIT) as c:
        client_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.sock.sendall(blocking + b"\r\nPING\r\n")
        wait_blocked(server, 1)
        seen = fields(server, client_id)
        assert (seen["flags"], seen["cmd"]) == ("b", blocking.split()[0].decode().lower())
        with other_client(server, client_id) as other:
            assert other.command("CLIENT", "UNBLOCK", client_id) == 1
        assert c.read() == reply
        assert c.read() == b"+PONG\r\n"
        seen = fields(server, client_id)
        assert (seen["flags"], seen["cmd"]) == ("N", "ping")
    wait_blocked(server, 0)


def test_multi_queued_then_exec(server):
    """Each queued command starts (to be queued), so ``cmd`` names the last
    one queued; after EXEC it is ``exec``, also seen from inside the EXEC."""
    with RespClient(server, timeout=WAIT) as c:
        client_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.sock.sendall(b"MULTI\r\nSET a 1\r\nGET a\r\n")
        assert [c.read() for _ in range(3)] == [b"+OK\r\n", b"+QUEUED\r\n", b"+QUEUED\r\n"]
        assert fields(server, client_id)["cmd"] == "get"
        c.send("CLIENT", "INFO")
        assert c.read() == b"+QUEUED\r\n"
        replies = c.command("EXEC")
        assert isinstance(replies, list)
        assert replies[:2] == [b"OK", b"1"]
        assert re.search(rb" cmd=(\S+)", replies[2]).group(1) == b"exec"  # type: ignore[arg-type, union-attr]
        assert fields(server, client_id)["cmd"] == "exec"


def test_subcommand(server):
    """A container's subcommand shows as ``container|sub``, in lower case."""
    with RespClient(server, timeout=WAIT) as c:
        client_id = int(c.command("client", "ID"))  # type: ignore[arg-type]
        assert fields(server, client_id)["cmd"] == "client|id"
        c.command("CONFIG", "GET", "maxmemory")
        assert fields(server, client_id)["cmd"] == "config|get"


@pytest.mark.parametrize(
    "command, cmd",
    [
        (b"FOOBAR x", "NULL"),
        (b"CLIENT FOOBAR", "NULL"),
        (b"CONFIG NOPE", "NULL"),
        (b"GET", "get"),
        (b"CLIENT", "client"),
    ],
    ids=["unknown", "unknown-subcommand", "unknown-config-subcommand", "wrong-arity", "container-alone"],
)
def test_rejected(server, command, cmd):
    """A command Redis does not know leaves ``cmd=NULL`` (not the command
    before it); one it knows but rejects (wrong arity) shows."""
    with RespClient(server, timeout=WAIT) as c:
        client_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.sock.sendall(b"PING\r\n" + command + b"\r\n")
        assert c.read() == b"+PONG\r\n"
        assert c.read().startswith(b"-ERR ")
        assert fields(server, client_id)["cmd"] == cmd


@pytest.mark.parametrize(
    "command, error, cmd",
    [
        (b"FOOBAR x", b"-ERR unknown command 'FOOBAR'", "NULL"),
        (b"CLIENT FOOBAR", b"-ERR unknown subcommand 'FOOBAR'", "NULL"),
        (b"CONFIG GET", b"-ERR wrong number of arguments for 'config|get'", "config|get"),
    ],
    ids=["unknown", "unknown-subcommand", "subcommand-arity"],
)
def test_rejected_in_multi(server, command, error, cmd):
    """A command refused while MULTI queues: ``cmd`` as outside MULTI (NULL
    for a command or subcommand Redis does not know), then ``exec`` once
    EXEC answered EXECABORT."""
    with RespClient(server, timeout=WAIT) as c:
        client_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.sock.sendall(b"MULTI\r\nPING\r\n" + command + b"\r\n")
        assert [c.read() for _ in range(2)] == [b"+OK\r\n", b"+QUEUED\r\n"]
        assert c.read().startswith(error)
        assert fields(server, client_id)["cmd"] == cmd
        c.send("EXEC")
        assert c.read() == b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        assert fields(server, client_id)["cmd"] == "exec"


# -- before AUTH (requirepass) ----------------------------------------------------


@pytest.fixture(scope="module", params=["redis", "shardkv"])
def auth_server(request):
    """Each server in turn, with requirepass ``pw``."""
    proc = start_redis() if request.param == "redis" else start_shardkv(shards=2)
    with RespClient(proc.port, timeout=WAIT) as c:
        c.command("CONFIG", "SET", "requirepass", "pw")
    yield proc.port
    proc.stop()


def fields_by_addr(port: int, c: RespClient) -> dict[str, str]:
    """The CLIENT LIST line of connection ``c`` (which may not be able to
    ask: it has not authenticated), seen from an authenticated one."""
    addr = "%s:%d" % c.sock.getsockname()[:2]
    with RespClient(port, timeout=WAIT) as other:
        other.command("AUTH", "pw")
        listing = other.command("CLIENT", "LIST")
    assert isinstance(listing, bytes)
    for line in listing.decode().splitlines():
        seen = dict(kv.split("=", 1) for kv in line.split())
        if seen["addr"] == addr:
            return seen
    raise AssertionError(f"no client {addr}")


@pytest.mark.slow  # a server of its own
@pytest.mark.parametrize(
    "command, reply, cmd",
    [
        (b"GET a", b"-NOAUTH Authentication required.\r\n", "get"),
        (b"FOOBAR x", b"-ERR unknown command 'FOOBAR', with args beginning with: 'x' \r\n", "NULL"),
        (b"CLIENT FOOBAR", b"-ERR unknown subcommand 'FOOBAR'. Try CLIENT HELP.\r\n", "NULL"),
        (b"CONFIG GET", b"-ERR wrong number of arguments for 'config|get' command\r\n", "config|get"),
    ],
    ids=["noauth", "unknown", "unknown-subcommand", "subcommand-arity"],
)
def test_refused_before_auth(auth_server, command, reply, cmd):
    """Before AUTH, a command Redis knows is refused with NOAUTH and shows in
    ``cmd``; a bad subcommand is refused first for what it is (Redis looks
    it up before it checks authentication)."""
    with RespClient(auth_server, timeout=WAIT) as c:
        c.sock.sendall(b"PING\r\n" + command + b"\r\n")
        assert c.read() == b"-NOAUTH Authentication required.\r\n"
        assert c.read() == reply
        assert fields_by_addr(auth_server, c)["cmd"] == cmd


@pytest.mark.slow  # a server of its own
def test_blocked_right_after_auth(auth_server):
    """AUTH, BLPOP and PING in one read: once AUTH ran, BLPOP blocks and
    holds the PING behind it, so ``cmd`` names BLPOP while it waits, and
    PING once it is unblocked."""
    with RespClient(auth_server, timeout=WAIT) as c:
        c.sock.sendall(b"AUTH pw\r\nBLPOP multirej 0\r\nPING\r\n")
        assert c.read() == b"+OK\r\n"
        deadline = time.monotonic() + WAIT
        while (seen := fields_by_addr(auth_server, c))["flags"] != "b":
            assert time.monotonic() < deadline, "never blocked"
            time.sleep(0.01)
        assert seen["cmd"] == "blpop"
        with RespClient(auth_server, timeout=WAIT) as other:
            other.command("AUTH", "pw")
            assert other.command("CLIENT", "UNBLOCK", seen["id"]) == 1
        assert c.read() == b"*-1\r\n"
        assert c.read() == b"+PONG\r\n"
        seen = fields_by_addr(auth_server, c)
        assert (seen["flags"], seen["cmd"]) == ("N", "ping")
