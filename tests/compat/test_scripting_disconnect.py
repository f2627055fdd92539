"""A script (or an EXEC) whose client disconnects still runs to its end, as in Redis.

Redis runs a command once it has read it, whether or not its client is
still there to read the reply.  A script that reaches a key of another
shard is stopped by its worker, undone, and run again across shards (see
``shardkv.acceptor.scripting``): the run again must happen even when the
client has gone between the undo and the rerun, or the script's writes are
lost.  Each test holds the first key's worker (SIGSTOP) while the client
sends the script and closes its socket, waits until the acceptor has seen
it go (CLIENT LIST no longer shows it, or shows it flagged ``A`` while
what it sent is still to run), and only then lets the worker run the script: so the disconnect
always lands before the worker's ``-SHARDKV-CROSS`` reply, where the old
code dropped the script.  Another client then finds the script's writes,
as on redis-server.  So with an EXEC that waits for the shards (a CLIENT
UNBLOCK inside) before it runs, which checks the keys its client WATCHed
(a changed one aborts it) though the client went or was killed.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

import psutil
import pytest
import redis

from tests.support.acceptors import K, acceptor_pids, client_on, raw_on
from tests.support.placement import key_on
from tests.support.processes import until, worker_pid
from tests.support.resp import RespClient, encode_command
from tests.support.servers import ServerProcess, start_shardkv

SHARDS = 2  # as the redis_and_shardkv fixture's shardkv (tests/conftest.py)
WAIT = 20.0  # bound on each wait below (a loaded machine is slow; none is a timing assertion)

# Writes its key, then, if ARGV[1] names a key, that one too: on shardkv
# one of another shard, which the script did not declare.
BODY = (
    "redis.call('set', KEYS[1], 'a')\n"
    "if ARGV[1] ~= '' then redis.call('set', ARGV[1], 'b') end\n"
    "return redis.call('get', KEYS[1])"
)


def _send_and_leave(server: ServerProcess, commands: list[list[str]], keys: list[str], hold: bool) -> list:
    """Send ``commands`` (the client named ``leaver`` first) and close the
    socket without reading their replies; with ``hold``, shard 0's worker
    is stopped until the server has seen the client go.  The values of
    ``keys``, once they are ``a`` and ``b`` (or as they are after
    :data:`WAIT` seconds)."""
    admin = redis.Redis(port=server.port)
    stopped = worker_pid(server, 0) if hold else 0
    if stopped:
        os.kill(stopped, signal.SIGSTOP)
    try:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        s.sendall(b"".join(encode_command(*c) for c in [["CLIENT", "SETNAME", "leaver"], *commands]))
        assert s.recv(5) == b"+OK\r\n"  # read, and what follows sent on (to a stopped worker)
        s.close()

        def gone() -> bool:  # unlisted, or (shardkv, what it sent still to run) flagged A
            return all(c["name"] != "leaver" or "A" in c["flags"] for c in admin.client_list())

        assert until(gone), "the server does not see the client go"
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
    values = until(lambda: (v := admin.mget(keys)) == [b"a", b"b"] and v) or admin.mget(keys)
    admin.close()
    return values  # type: ignore[return-value]


def _exec_with_unblock(own: str, other: str) -> list[list[str]]:
    """A transaction that writes both keys, with a CLIENT UNBLOCK of nobody."""
    return [["MULTI"], ["SET", own, "a"], ["CLIENT", "UNBLOCK", "999999"], ["SET", other, "b"], ["EXEC"]]


def _fresh(server: ServerProcess) -> redis.Redis:
    c = redis.Redis(port=server.port)
    c.flushall()
    return c


@pytest.mark.parametrize("how", ["EVAL", "EVALSHA", "FCALL", "MULTI"])
def test_a_script_that_escapes_runs_again_after_its_client_left(redis_and_shardkv, how):
    """EVAL, EVALSHA (the shortcut of a script its shard knows), FCALL, and
    EVAL inside MULTI/EXEC."""
    own, other = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
    got = []
    for server in redis_and_shardkv:
        c = _fresh(server)
        # A body of its own: a script seen escaping before goes straight across shards.
        body = f"-- {how}\n" + BODY
        if how in ("EVAL", "MULTI"):
            command = ["EVAL", body, "1", own, other]
        elif how == "EVALSHA":
            assert c.eval(body, 1, own, "") == b"a"  # its shard has it now, and it did not escape
            c.delete(own)
            command = ["EVALSHA", c.script_load(body), "1", own, other]
        else:
            c.function_load(
                f"#!lua name=leaving\nredis.register_function('leave', function(KEYS, ARGV)\n{BODY}\nend)",
                replace=True,
            )
            command = ["FCALL", "leave", "1", own, other]
        c.close()
        commands = [["MULTI"], command, ["EXEC"]] if how == "MULTI" else [command]
        got.append(_send_and_leave(server, commands, [own, other], server.kind == "shardkv"))
    assert got[1] == got[0] == [b"a", b"b"]


def test_a_script_that_needs_every_shard_runs_again_after_its_client_left(redis_and_shardkv):
    """KEYS needs every shard: the script runs again parking all of them."""
    own, other = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
    body = "redis.call('keys', '*')\n" + BODY
    got = []
    for server in redis_and_shardkv:
        _fresh(server).close()
        command = ["EVAL", body, "1", own, other]
        got.append(_send_and_leave(server, [command], [own, other], server.kind == "shardkv"))
    assert got[1] == got[0] == [b"a", b"b"]


def test_an_exec_that_waits_for_the_shards_scripts_runs_after_its_client_left(redis_and_shardkv):
    """An EXEC with CLIENT UNBLOCK waits until every shard has answered a
    ``__ping`` (see ``transactions._after_scripts``): it runs even if its
    client has gone meanwhile, as Redis runs an EXEC it has read."""
    own, other = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
    got = []
    for server in redis_and_shardkv:
        _fresh(server).close()
        commands = _exec_with_unblock(own, other)
        got.append(_send_and_leave(server, commands, [own, other], server.kind == "shardkv"))
    assert got[1] == got[0] == [b"a", b"b"]


@pytest.fixture(scope="module")
def two_acceptors() -> Iterator[ServerProcess]:
    ours = start_shardkv(shards=SHARDS, acceptors=2)
    yield ours
    ours.stop()


def _has_socket(pid: int, port: int) -> bool:
    """Whether process ``pid`` still has the socket of the client whose own port is ``port``
    (an acceptor closes it just after its ``connection_lost``)."""
    return any(c.raddr and c.raddr.port == port for c in psutil.Process(pid).net_connections("tcp"))


def test_an_exec_that_locates_other_acceptors_clients_runs_after_its_client_left(two_acceptors):
    """With several acceptors, an EXEC whose CLIENT UNBLOCK names a client
    that is not this acceptor's first asks the others where it waits
    (``transactions._locate``): it runs even if its client has gone
    meanwhile (as on redis-server, see the test above).  Acceptor 1 is
    stopped until acceptor 0 has closed the client's socket, so the answer
    always comes after."""
    server = two_acceptors
    own, other = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
    admin = client_on(server.port, 0)
    admin.command("FLUSHALL")
    pids = acceptor_pids(server)
    leaver, _ = raw_on(server.port, 0)
    port = leaver.getsockname()[1]
    os.kill(pids[1], signal.SIGSTOP)
    try:
        commands = _exec_with_unblock(own, other)
        leaver.sendall(b"".join(encode_command(*c) for c in commands))
        leaver.close()
        assert until(lambda: not _has_socket(pids[0], port)), "acceptor 0 still has the client"
    finally:
        os.kill(pids[1], signal.SIGCONT)
    assert until(lambda: admin.command("MGET", own, other) == [b"a", b"b"])
    admin.close()


# -- A WATCHed EXEC that waits, and whose client goes ------------------------
#
# Redis checks the watched keys when it reads EXEC, before the client can go.
# shardkv's EXEC with CLIENT UNBLOCK checks them once its wait is over: it
# must still see what the client watched, and the shards must still count
# the watched key's changes, though the client has gone (or was killed).


def _watching_leaver(port: int, own: str, index: int | None, k: int = K, user: bool = False) -> RespClient:
    """A connection named ``leaver`` (on acceptor ``index`` of ``k``, if
    given) that WATCHes ``own``; with ``user``, logged in as a user of its
    own, ``leaver`` (which an ACL DELUSER deletes, killing it)."""
    leaver = RespClient(port) if index is None else client_on(port, index, k=k)
    if user:
        assert leaver.command("ACL", "SETUSER", "leaver", "on", "nopass", "~*", "&*", "+@all") == b"OK"
        assert leaver.command("AUTH", "leaver", "any") == b"OK"
    assert leaver.command("CLIENT", "SETNAME", "leaver") == b"OK"
    assert leaver.command("WATCH", own) == b"OK"
    return leaver


def _gone(admin: RespClient) -> bool:
    """Whether the server has seen the leaver go: it no longer lists it, or
    (shardkv, while what it sent is still to run) lists it flagged ``A``."""
    for line in admin.command("CLIENT", "LIST").splitlines():  # type: ignore[union-attr]
        if b" name=leaver " in line:
            return b"A" in line.split(b" flags=")[1].split(b" ")[0]
    return True


def _leave(
    leaver: RespClient, commands: list[list[str]], admin: RespClient, killer: RespClient | None
) -> None:
    """Send ``commands`` and go: close the socket, or, with a ``killer``,
    have it kill the client once ``admin`` sees in CLIENT LIST that the
    server has read its EXEC (the killer's reply is read later): ACL
    DELUSER of the leaver's own user, which kills its clients as CLIENT
    KILL does.  (A CLIENT KILL, inside EXEC or not, first waits for every
    shard's scripts, a ``__ping`` each, see blocking.serve_after_scripts:
    the stopped one's too, as Redis runs nothing while a script runs.)"""
    leaver.sock.sendall(b"".join(encode_command(*c) for c in commands))
    if killer is None:
        leaver.close()
        return

    def read_exec() -> bytes | None:
        for line in admin.command("CLIENT", "LIST").splitlines():  # type: ignore[union-attr]
            if b" name=leaver " in line and b" cmd=exec " in line:
                return line.split()[0].partition(b"=")[2]  # its id
        return None

    leaver_id = until(read_exec)
    assert leaver_id, "the server has not read the EXEC"
    killer.send("ACL", "DELUSER", "leaver")


def _after_everything(admin: RespClient, own: str, other: str) -> list:
    """``own`` and ``other`` once the leaver's EXEC is over: MGET inside a
    transaction of its own with a CLIENT UNBLOCK, which waits for the
    shards' ``__ping`` (and the other acceptors) in the same order as the
    leaver's did, so it runs after it.  Only through the leaver's acceptor:
    there its ``__ping``s follow the leaver's on the same pipes, its bus
    questions (``locate``, ``unblock``) are asked, and answered, after the
    leaver's, and its MGET, a step over both shards, queues for its holds
    behind the leaver's parked step.  Through another acceptor nothing
    orders the two: its EXEC may run the MGET while the leaver's still
    waits for an answer of the bus, and read neither write."""
    admin.command("MULTI")
    admin.command("CLIENT", "UNBLOCK", "999999")
    admin.command("MGET", own, other)
    got = admin.command("EXEC")
    assert got[0] == 0  # type: ignore[index]
    return got[1]  # type: ignore[index]


@pytest.mark.parametrize("how", ["close", "kill"])
@pytest.mark.parametrize("changed", [True, False], ids=["changed", "unchanged"])
def test_a_watched_exec_that_waits_for_the_shards_checks_its_watch_after_its_client_left(
    redis_and_shardkv, changed, how
):
    """Shard 0's worker is stopped while the EXEC waits for its ``__ping``
    (``transactions._after_scripts``); the client closes its socket (or is
    killed: ACL DELUSER of its user) meanwhile.  A watched key that changed aborts the EXEC (the old
    code had forgotten the watch and wrote); one that did not lets it run
    (the shard must not have forgotten the key's version).  With several
    acceptors (``$SHARDKV_TEST_ACCEPTORS``) the EXEC also asks the others
    where client 999999 waits, and then to unblock it, before it runs: the
    admin is on the leaver's acceptor (see :func:`_after_everything`), the
    killer on another (the kill goes through the bus)."""
    own, other = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
    got = []
    for server in redis_and_shardkv:
        _fresh(server).close()
        k = server.acceptors if server.kind == "shardkv" else 1
        admin = client_on(server.port, 0, k=k) if k > 1 else RespClient(server.port)
        killer = None
        if how == "kill":
            killer = client_on(server.port, k - 1, k=k) if k > 1 else RespClient(server.port)
        leaver = _watching_leaver(server.port, own, 0 if k > 1 else None, k, user=how == "kill")
        if changed:
            admin.command("SET", own, "changed")
        stopped = worker_pid(server, 0) if server.kind == "shardkv" else 0
        if stopped:
            os.kill(stopped, signal.SIGSTOP)
        try:
            _leave(leaver, _exec_with_unblock(own, other), admin, killer)
            assert until(lambda: _gone(admin)), "the server does not see the client go"  # noqa: B023
        finally:
            if stopped:
                os.kill(stopped, signal.SIGCONT)
        if killer is not None:
            assert killer.read_reply() == 1
            killer.close()
        got.append(_after_everything(admin, own, other))
        admin.close()
        leaver.close()
    assert got[1] == got[0] == ([b"changed", None] if changed else [b"a", b"b"])


@pytest.mark.parametrize("changed", [True, False], ids=["changed", "unchanged"])
def test_a_watched_exec_that_locates_checks_its_watch_after_its_client_left(
    redis_and_shardkv, two_acceptors, changed
):
    """Two acceptors: acceptor 1 is stopped while the EXEC asks it where the
    client its CLIENT UNBLOCK names waits (``transactions._locate``; then
    whether it unblocked it, ``_after_decided``), until acceptor 0 has
    closed the client's socket.  As on redis-server (without the stop)."""
    own, other = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
    got = []
    for server in (redis_and_shardkv[0], two_acceptors):
        ours = server.kind == "shardkv"
        _fresh(server).close()
        admin = client_on(server.port, 0) if ours else RespClient(server.port)
        leaver = _watching_leaver(server.port, own, 0 if ours else None)
        port = leaver.sock.getsockname()[1]
        if changed:
            admin.command("SET", own, "changed")
        pids = acceptor_pids(server) if ours else []
        if ours:
            os.kill(pids[1], signal.SIGSTOP)
        try:
            _leave(leaver, _exec_with_unblock(own, other), admin, None)
            if ours:  # (CLIENT LIST would ask acceptor 1)
                assert until(lambda: not _has_socket(pids[0], port)), "acceptor 0 still has the client"  # noqa: B023
            else:
                assert until(lambda: _gone(admin)), "the server still lists the client"  # noqa: B023
        finally:
            if ours:
                os.kill(pids[1], signal.SIGCONT)
        got.append(_after_everything(admin, own, other))
        admin.close()
        leaver.close()
    assert got[1] == got[0] == ([b"changed", None] if changed else [b"a", b"b"])
