"""WAIT numreplicas timeout, against both servers (neither has a replica).

Redis answers at once only when asked for no replica, or inside MULTI/EXEC;
else the client blocks until the timeout (0: for ever) or CLIENT UNBLOCK,
and gets 0, its later commands waiting behind it.  The blocked client is
watched from a second connection (``blocked_clients``) before the test
acts, so both servers see the same order of events.  With several
acceptors (``SHARDKV_TEST_ACCEPTORS``) the second connection is on another
acceptor than the blocked one.
"""

from __future__ import annotations

import os
import socket
import time

import pytest
import redis

from tests.support.resp import ErrorReply, RespClient, parse_info

WAIT = 10.0  # seconds a test waits for something that must happen
ACCEPTORS = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))


def blocked_clients(port: int) -> int:
    with RespClient(port, timeout=WAIT) as c:
        return int(parse_info(c.command("INFO", "clients"))["blocked_clients"])  # type: ignore[arg-type]


def wait_blocked(port: int, n: int, until: float | None = None) -> bool:
    """Wait until ``n`` clients are blocked (True).  With ``until`` (a
    ``time.monotonic()`` time: when the blocked command's own timeout has
    passed), False once that time has passed without seeing them: the
    command may have timed out before a poll came, as on a loaded machine."""
    deadline = time.monotonic() + WAIT
    while blocked_clients(port) != n:
        now = time.monotonic()
        if until is not None and now >= until:
            return False
        assert now < deadline, f"never {n} blocked clients"
        time.sleep(0.01)
    return True


def other_client(port: int, blocked_id: int) -> RespClient:
    """A connection on another acceptor than client ``blocked_id``'s when
    shardkv has several (any connection on redis-server)."""
    for _ in range(300):
        c = RespClient(port, timeout=WAIT)
        if ACCEPTORS == 1 or (int(c.command("CLIENT", "ID")) - blocked_id) % ACCEPTORS:  # type: ignore[arg-type]
            return c
        c.close()
    raise AssertionError("no connection landed on another acceptor")


def nothing_to_read(c: RespClient) -> bool:
    """No reply has come (yet) on ``c``."""
    c.sock.setblocking(False)
    try:
        c.sock.recv(1, socket.MSG_PEEK)  # a reply, or b"" when closed
    except BlockingIOError:
        return True
    finally:
        c.sock.setblocking(True)
        c.sock.settimeout(WAIT)
    return False


# -- answered at once ---------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("WAIT", 0, 0),
        ("WAIT", 0, 100000),
        ("WAIT", -1, 0),
        ("WAIT", 0, 9223372036854775807),
        ("WAIT", "a", 0),
        ("WAIT", 1, "a"),
        ("WAIT", 1, "1.5"),
        ("WAIT", 1, "+5"),
        ("WAIT", 1, " 5"),
        ("WAIT", 1, -1),
        ("WAIT", 0, -1),
        ("WAIT", "a", -1),
        ("WAIT", "99999999999999999999", 1),
        ("WAIT", 1, "99999999999999999999"),
        ("WAIT", 1),
        ("WAIT", 1, 2, 3),
    ],
)
def test_answered_at_once(compare, args):
    """No replica asked for, or a bad argument: the reply comes at once (a
    WAIT that blocked would fail on the client's socket timeout)."""
    compare(*args)


def test_in_multi_never_blocks(r):
    """Redis answers WAIT inside MULTI/EXEC at once; a negative timeout is
    still an error there."""
    pipe = r.pipeline(transaction=True)
    pipe.execute_command("WAIT", 1, 0)
    pipe.execute_command("WAIT", 1, -1)
    pipe.execute_command("WAIT", 5, 100000)
    got = pipe.execute(raise_on_error=False)
    assert got[0] == 0 and got[2] == 0
    assert isinstance(got[1], redis.ResponseError) and str(got[1]) == "timeout is negative"


@pytest.mark.parametrize(
    "watch, commands, exec_reply",
    [
        # Writes on several shards: shardkv runs the EXEC as one atomic operation.
        (
            False,
            [("SET", "a", 1), ("SET", "b", 1), ("SET", "c", 1), ("WAIT", 1, 0)],
            b"*4\r\n+OK\r\n+OK\r\n+OK\r\n:0\r\n",
        ),
        (False, [("BLPOP", "x", 0), ("WAIT", 2, 0)], b"*2\r\n*-1\r\n:0\r\n"),
        (True, [("WAIT", 1, 0), ("GET", "a")], b"*2\r\n:0\r\n$1\r\n1\r\n"),
    ],
    ids=["atomic", "with-blpop", "watched"],
)
def test_in_every_kind_of_exec_never_blocks(server, watch, commands, exec_reply):
    with RespClient(server, timeout=WAIT) as c:
        c.command("SET", "a", 1)
        if watch:
            c.command("WATCH", "a")
        c.command("MULTI")
        for command in commands:
            assert c.call(*command) == b"+QUEUED\r\n"
        assert c.call("EXEC") == exec_reply


@pytest.mark.parametrize("call", ["call", "pcall"])
def test_not_from_scripts(compare, call):
    compare("EVAL", f"return redis.{call}('wait', 1, 0)", 0)
    compare("EVAL", f"return redis.{call}('wait', 0, 0)", 0)


# -- blocked ------------------------------------------------------------------------


def test_times_out_with_zero_and_holds_what_follows(server):
    """``WAIT 1 200`` + ``PING`` pipelined: 0 once the timeout passed, then PONG."""
    with RespClient(server, timeout=WAIT) as c:
        c.sock.sendall(b"WAIT 1 200\r\nPING\r\n")
        assert c.read() == b":0\r\n"
        assert c.read() == b"+PONG\r\n"
    assert blocked_clients(server) == 0


@pytest.mark.parametrize("timeout, in_table", [(0, 0), (100000, 1)])
def test_shows_blocked(server, timeout, in_table):
    """Blocked as Redis shows it: ``blocked_clients``, CLIENT LIST's
    ``flags=b cmd=wait``, and in the timeout table unless its timeout is 0."""
    with RespClient(server, timeout=WAIT) as c:
        blocked_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.send("WAIT", 1, timeout)
        wait_blocked(server, 1)
        with other_client(server, blocked_id) as other:
            info = parse_info(other.command("INFO", "clients"))  # type: ignore[arg-type]
            assert int(info["clients_in_timeout_table"]) == in_table
            line = other.command("CLIENT", "LIST", "ID", blocked_id).split()  # type: ignore[union-attr]
            assert b"flags=b" in line and b"cmd=wait" in line
            assert nothing_to_read(c)
            assert other.command("CLIENT", "UNBLOCK", blocked_id) == 1
        assert c.read() == b":0\r\n"
    wait_blocked(server, 0)


@pytest.mark.parametrize(
    "how", [(), ("TIMEOUT",), ("ERROR",), ("timeout",)], ids=["default", "timeout", "error", "lower"]
)
def test_client_unblock(server, how):
    """CLIENT UNBLOCK answers the WAIT as if it timed out (0), or with
    -UNBLOCKED, and replies 1; the PING held behind it runs then; a second
    CLIENT UNBLOCK finds nothing blocked."""
    with RespClient(server, timeout=WAIT) as c:
        blocked_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.sock.sendall(b"WAIT 1 0\r\nPING\r\n")
        wait_blocked(server, 1)
        assert nothing_to_read(c)
        with other_client(server, blocked_id) as other:
            assert other.command("CLIENT", "UNBLOCK", blocked_id, *how) == 1
            got = c.read_reply()
            if how == ("ERROR",):
                assert isinstance(got, ErrorReply)
                assert str(got) == "UNBLOCKED client unblocked via CLIENT UNBLOCK"
            else:
                assert got == 0
            assert c.read() == b"+PONG\r\n"
            assert other.command("CLIENT", "UNBLOCK", blocked_id, *how) == 0
    wait_blocked(server, 0)


def test_client_kill(server):
    """CLIENT KILL closes a blocked WAIT's connection, with no reply."""
    with RespClient(server, timeout=WAIT) as c:
        blocked_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.send("WAIT", 1, 0)
        wait_blocked(server, 1)
        with other_client(server, blocked_id) as other:
            assert other.command("CLIENT", "KILL", "ID", blocked_id) == 1
        assert c.closed()
    wait_blocked(server, 0)


def test_disconnect(server):
    """A blocked WAIT whose client goes away is forgotten."""
    c = RespClient(server, timeout=WAIT)
    c.send("WAIT", 1, 100000)
    wait_blocked(server, 1)
    c.close()
    wait_blocked(server, 0)
    with RespClient(server, timeout=WAIT) as c:
        assert int(parse_info(c.command("INFO", "clients"))["clients_in_timeout_table"]) == 0  # type: ignore[arg-type]


def test_pause_write_does_not_postpone(server):
    """CLIENT PAUSE WRITE postpones no WAIT (not a write): it times out as usual."""
    with RespClient(server, timeout=WAIT) as c:
        c.command("CLIENT", "PAUSE", 100000, "WRITE")
        try:
            c.sock.sendall(b"WAIT 1 100\r\nWAIT 0 0\r\n")
            assert c.read() == b":0\r\n"
            assert c.read() == b":0\r\n"
        finally:
            c.command("CLIENT", "UNPAUSE")


def test_pause_all_postpones_the_unblock_of_a_wait(server):
    """CLIENT PAUSE ALL while a client waits in WAIT: a CLIENT UNBLOCK sent
    during the pause is postponed, as every command is; once the pause ends
    it unblocks the WAIT (1), which answers 0, then the PING behind it."""
    with RespClient(server, timeout=WAIT) as c:
        blocked_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.sock.sendall(b"WAIT 1 0\r\nPING\r\n")
        wait_blocked(server, 1)
        with other_client(server, blocked_id) as other, other_client(server, blocked_id) as pauser:
            assert pauser.command("CLIENT", "PAUSE", 500, "ALL") == b"OK"
            other.send("CLIENT", "UNBLOCK", blocked_id)
            assert nothing_to_read(other) and nothing_to_read(c)
            assert other.read() == b":1\r\n"
            assert c.read() == b":0\r\n"
            assert c.read() == b"+PONG\r\n"
    wait_blocked(server, 0)


def test_pause_all_lets_a_wait_time_out(server):
    """A WAIT whose timeout passes during CLIENT PAUSE ALL answers 0 then,
    and the PING behind it waits for the pause to end.  (Where the pause
    began only after the timeout, as a slow run may make it, or ended
    before the check, the PING has run: only the replies are checked.  So
    too where no poll saw the WAIT blocked before its timeout passed.)"""
    timeout, pause = 0.3, 2.0
    with RespClient(server, timeout=WAIT) as c:
        blocked_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        sent = time.monotonic()
        c.sock.sendall(b"WAIT 1 %d\r\nPING\r\n" % (timeout * 1000))
        wait_blocked(server, 1, until=sent + timeout)
        with other_client(server, blocked_id) as pauser:
            assert pauser.command("CLIENT", "PAUSE", int(pause * 1000), "ALL") == b"OK"
            paused = time.monotonic()
            assert c.read() == b":0\r\n"
            if paused - sent < timeout and time.monotonic() - paused < pause - 0.5:
                assert nothing_to_read(c)  # the PING is postponed
            assert c.read() == b"+PONG\r\n"
    wait_blocked(server, 0)


@pytest.mark.parametrize("watch", [False, True], ids=["plain", "watched"])
def test_client_unblock_inside_exec(server, watch):
    """CLIENT UNBLOCK inside a transaction unblocks the WAIT (1), and a
    second one there finds nothing blocked (0)."""
    with RespClient(server, timeout=WAIT) as c:
        blocked_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.send("WAIT", 1, 0)
        wait_blocked(server, 1)
        with other_client(server, blocked_id) as other:
            if watch:
                assert other.command("WATCH", "a") == b"OK"
            assert other.command("MULTI") == b"OK"
            assert other.command("CLIENT", "UNBLOCK", blocked_id, "ERROR") == b"QUEUED"
            assert other.command("CLIENT", "UNBLOCK", blocked_id) == b"QUEUED"
            assert other.command("EXEC") == [1, 0]
        got = c.read_reply()
        assert isinstance(got, ErrorReply) and str(got) == "UNBLOCKED client unblocked via CLIENT UNBLOCK"
    wait_blocked(server, 0)
