"""Commands pipelined behind one that waits inside shardkv still run after
their client disconnects, as in Redis.

Redis runs every command it has read from a client, whether or not the
client is still there to read the replies: a client that sends a pipeline
and closes its socket at once finds all of its writes applied.  shardkv
makes a client's later commands wait behind some of its commands (an EXEC
or a CLIENT UNBLOCK that waits for the shards, a MIGRATE, with several
acceptors a cross-shard step that waits for its holds): those must run too
when the client goes meanwhile.  Each test sends a raw pipeline (the
waiting command, then writes on both shards, then a last ``SET done``) and
closes the socket without reading; on shardkv, shard 0's worker is stopped
(SIGSTOP) until the server no longer lists the client, so the disconnect
always lands during the wait.  Another client then reads every key, on
redis-server and on shardkv alike.  Run with ``SHARDKV_TEST_ACCEPTORS=2``
too (the connections land on either acceptor).
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable

import pytest

from tests.support.acceptors import acceptor_of, client_on
from tests.support.placement import key_on
from tests.support.processes import until, worker_pid
from tests.support.resp import RespClient, encode_command
from tests.support.servers import ServerProcess

SHARDS = 2  # as the redis_and_shardkv fixture's shardkv (tests/conftest.py)
WAIT = 20.0  # bound on each wait below (a loaded machine is slow; none is a timing assertion)

OWN, OTHER = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
THIRD, COUNTER = key_on(1, "third", SHARDS), key_on(0, "counter", SHARDS)
LIST, DONE = key_on(0, "list", SHARDS), key_on(1, "done", SHARDS)
FULL = key_on(0, "full", SHARDS)
EXPECTED = [b"a", b"b", b"cd", b"2", [b"x", b"y"], b"1"]

# Behind the waiting command: writes on both shards, then the mark that all ran.
AFTER = [
    ["SET", THIRD, "c"],
    ["INCR", COUNTER],
    ["RPUSH", LIST, "x", "y"],
    ["APPEND", THIRD, "d"],
    ["MULTI"],
    ["INCR", COUNTER],
    ["EXEC"],
    ["SET", DONE, "1"],
]

# Writes its key, then one of another shard that it did not declare: on
# shardkv it is undone and run again across shards.
ESCAPING = "redis.call('set', KEYS[1], 'a')\nredis.call('set', ARGV[1], 'b')\nreturn 1"


def _line(admin: RespClient, name: bytes) -> bytes | None:
    """CLIENT LIST's line of the client named ``name``, if listed."""
    for line in admin.command("CLIENT", "LIST").split(b"\n"):  # type: ignore[union-attr]
        if b" name=" + name + b" " in line:
            return line
    return None


def _listed(admin: RespClient, name: bytes) -> bool:
    return _line(admin, name) is not None


def _seen_gone(admin: RespClient, name: bytes) -> bool:
    """Whether the server has seen the client's connection close: it no
    longer lists the client, or lists it with the flag ``A`` (shardkv, while
    what it sent is still to run)."""
    line = _line(admin, name)
    return line is None or b"A" in line.split(b" flags=")[1].split(b" ")[0]


def _values(admin: RespClient) -> list:
    return [
        admin.command("GET", OWN),
        admin.command("GET", OTHER),
        admin.command("GET", THIRD),
        admin.command("GET", COUNTER),
        admin.command("LRANGE", LIST, "0", "-1"),
        admin.command("GET", DONE),
    ]


def _everything(admin: RespClient) -> list:
    """Every key's value once all the pipeline's writes are there (or as
    they are after :data:`WAIT` seconds): a script run again across shards
    may end after the commands behind it (a difference the README notes)."""
    return until(lambda: (v := _values(admin)) == EXPECTED and v) or _values(admin)  # type: ignore[return-value]


def _blocked(admin: RespClient) -> bool:
    info = admin.command("INFO", "clients")
    return b"blocked_clients:1\r\n" in info  # type: ignore[operator]


def _run(server: ServerProcess, first: Callable[[RespClient, int], list[list[str]]]) -> tuple[list, list]:
    """On ``server``: send ``first(blocker, port)`` and :data:`AFTER` from a client
    that closes its socket at once (on shardkv, while shard 0's worker is
    stopped, until the server has seen the client close); every key's value
    once the server no longer lists the client, and what a client blocked
    by the test (if any) was answered."""
    admin = RespClient(server.port)
    admin.command("FLUSHALL")
    blocker = RespClient(server.port)
    commands = first(blocker, server.port)
    stopped = worker_pid(server, 0) if server.kind == "shardkv" else 0
    if stopped:
        os.kill(stopped, signal.SIGSTOP)
    try:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        s.sendall(b"".join(encode_command(*c) for c in [["CLIENT", "SETNAME", "leaver"], *commands, *AFTER]))
        assert s.recv(5) == b"+OK\r\n"  # read, and what follows with it
        s.close()
        assert until(lambda: _seen_gone(admin, b"leaver")), "the server does not see the client close"
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
    assert until(lambda: not _listed(admin, b"leaver")), "the server still lists the client"
    got = _everything(admin)
    answered = [blocker.read_reply()] if first is _unblock else []
    blocker.close()
    admin.close()
    return got, answered


def _exec(blocker: RespClient, port: int) -> list[list[str]]:
    """An EXEC with a CLIENT UNBLOCK inside waits for a ``__ping`` on every shard."""
    return [["MULTI"], ["SET", OWN, "a"], ["CLIENT", "UNBLOCK", "999999"], ["SET", OTHER, "b"], ["EXEC"]]


def _unblock(blocker: RespClient, port: int) -> list[list[str]]:
    """CLIENT UNBLOCK of a client blocked on shard 1 waits for the other shards' ``__ping``."""
    blocker.command("CLIENT", "SETNAME", "blocker")
    cid = blocker.command("CLIENT", "ID")
    blocker.send("BLPOP", OTHER, "0")
    admin = RespClient(port)
    assert until(lambda: _blocked(admin)), "the blocker does not block"
    admin.close()
    return [["CLIENT", "UNBLOCK", str(cid)], ["SET", OWN, "a"], ["SET", OTHER, "b"]]


def _migrate(blocker: RespClient, port: int) -> list[list[str]]:
    """MIGRATE reads its keys (DUMP, PTTL) from their shards first; a missing one: ``+NOKEY``."""
    return [["MIGRATE", "127.0.0.1", str(port), OWN, "0", "5000"], ["SET", OWN, "a"], ["SET", OTHER, "b"]]


def _mset(blocker: RespClient, port: int) -> list[list[str]]:
    """A write on both shards: with several acceptors it waits for its holds."""
    return [["MSET", OWN, "a", OTHER, "b"]]


def _served(blocker: RespClient, port: int) -> list[list[str]]:
    """A blocking command that finds its element: Redis serves it at once."""
    blocker.command("RPUSH", FULL, "v")
    return [["BLPOP", FULL, "0"], ["SET", OWN, "a"], ["SET", OTHER, "b"]]


def _script(blocker: RespClient, port: int) -> list[list[str]]:
    """A script undone and run again across shards."""
    return [["EVAL", ESCAPING, "1", OWN, OTHER]]


@pytest.mark.parametrize(
    "first",
    [_exec, _unblock, _migrate, _mset, _served, _script],
    ids=["exec", "unblock", "migrate", "mset", "served", "script"],
)
def test_commands_behind_a_wait_run_after_their_client_left(redis_and_shardkv, first):
    """Behind an EXEC or a CLIENT UNBLOCK that waits for the shards, a
    MIGRATE, a write on both shards (which waits for its holds with several
    acceptors), a blocking command that finds its element (its shard has
    not answered it when the client goes), a script run again across
    shards.  All but the script
    failed before (the MSET only with several acceptors: with one nothing
    waits); the script's later commands do not wait for its run again."""
    got = [_run(server, first) for server in redis_and_shardkv]
    assert got[1] == got[0]
    assert got[0][0] == EXPECTED


def test_commands_behind_a_blocking_command_are_dropped_as_in_redis(redis_and_shardkv):
    """Behind a command that blocks as Redis shows it, Redis frees the
    client with the rest of what it read: shardkv drops them too."""
    got = []
    for server in redis_and_shardkv:
        admin = RespClient(server.port)
        admin.command("FLUSHALL")
        s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        s.sendall(
            b"".join(
                encode_command(*c) for c in [["CLIENT", "SETNAME", "leaver"], ["BLPOP", OTHER, "0"], *AFTER]
            )
        )
        assert s.recv(5) == b"+OK\r\n"
        assert until(lambda: _blocked(admin)), "the client does not block"  # noqa: B023
        s.close()
        assert until(lambda: not _listed(admin, b"leaver")), "the server still lists the client"  # noqa: B023
        got.append(_values(admin))
        admin.close()
    assert got[1] == got[0] == [None, None, None, None, [], None]


def _unblocked_then_gone(server: ServerProcess, behind: list[list[str]]) -> tuple:
    """On ``server``: a client blocked (BLPOP on shard 1) with ``behind``
    pipelined after it, unblocked by another client's CLIENT UNBLOCK, then
    gone.  On shardkv the CLIENT UNBLOCK waits for shard 0's ``__ping``
    (its worker stopped) until the server has seen the client close.  What
    the CLIENT UNBLOCK answered, every key's value once the client is no
    longer listed, and INFO's connected and blocked clients then."""
    ours = server.kind == "shardkv"
    admin = RespClient(server.port)
    admin.command("FLUSHALL")
    s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    s.sendall(encode_command("CLIENT", "SETNAME", "leaver") + encode_command("CLIENT", "ID"))
    head = b""
    while head.count(b"\r\n") < 2:
        head += s.recv(100)
    cid = int(head.split(b"\r\n")[1][1:])
    # With several acceptors, on the client's: through another, the CLIENT
    # UNBLOCK may reach it after the close (no order to compare with Redis's).
    k = server.acceptors if ours else 1
    unblocker = client_on(server.port, acceptor_of(cid, k), k=k) if k > 1 else RespClient(server.port)
    s.sendall(b"".join(encode_command(*c) for c in [["BLPOP", OTHER, "0"], *behind]))
    assert until(lambda: _blocked(admin)), "the client does not block"
    stopped = worker_pid(server, 0) if ours else 0
    if stopped:
        os.kill(stopped, signal.SIGSTOP)
    try:
        unblocker.send("CLIENT", "UNBLOCK", cid)
        answered = None if ours else unblocker.read_reply()
        s.close()
        assert until(lambda: _seen_gone(admin, b"leaver")), "the server does not see the client close"
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
    if answered is None:
        answered = unblocker.read_reply()
    assert until(lambda: not _listed(admin, b"leaver")), "the server still lists the client"
    values = _everything(admin) if behind else _values(admin)
    info = admin.command("INFO", "clients")
    counts = [
        line
        for line in info.split(b"\r\n")
        if line.split(b":")[0] in (b"connected_clients", b"blocked_clients")
    ]  # type: ignore[union-attr]
    unblocker.close()
    admin.close()
    return answered, values, counts


def test_commands_behind_a_blocked_command_that_is_unblocked_run_after_their_client_left(redis_and_shardkv):
    """A client blocked (BLPOP) with commands pipelined behind it, unblocked
    by another client's CLIENT UNBLOCK, then gone: Redis unblocked it and
    ran them as it read the CLIENT UNBLOCK.  On shardkv the CLIENT UNBLOCK
    waits for shard 0's ``__ping`` until the client has gone; it still
    unblocks it, and what followed runs."""
    got = [
        _unblocked_then_gone(server, [["SET", OWN, "a"], ["SET", OTHER, "b"], *AFTER])
        for server in redis_and_shardkv
    ]
    assert got[1] == got[0]
    assert got[0][:2] == (1, EXPECTED)


def test_a_blocked_client_with_nothing_behind_is_unblocked_after_it_left(redis_and_shardkv):
    """The same with nothing pipelined behind the BLPOP: Redis unblocked the
    client as it read the CLIENT UNBLOCK, which answers 1.  shardkv kept
    the client only while commands it sent were left to run, so the
    CLIENT UNBLOCK on its way found it forgotten and answered 0."""
    got = [_unblocked_then_gone(server, []) for server in redis_and_shardkv]
    assert got[1] == got[0]
    assert got[0] == (1, [None] * 4 + [[], None], [b"connected_clients:2", b"blocked_clients:0"])


def _after_leaving(server: ServerProcess, leaver: list[list[str]], other: list[list[str]]) -> list:
    """On ``server``: a client sends ``leaver`` and closes its socket (on
    shardkv, shard 0's worker stopped); once the server no longer lists
    it, another client sends ``other`` (on shardkv, while shard 0's worker
    is still stopped if the client was no longer listed by then).  The
    other client's replies."""
    admin = RespClient(server.port)
    admin.command("FLUSHALL")
    writer = RespClient(server.port)
    stopped = worker_pid(server, 0) if server.kind == "shardkv" else 0
    if stopped:
        os.kill(stopped, signal.SIGSTOP)
    try:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        s.sendall(b"".join(encode_command(*c) for c in [["CLIENT", "SETNAME", "leaver"], *leaver]))
        assert s.recv(5) == b"+OK\r\n"
        s.close()
        assert until(lambda: _seen_gone(admin, b"leaver")), "the server does not see the client close"
        if _listed(admin, b"leaver"):  # it runs what it sent first
            os.kill(stopped, signal.SIGCONT)
            stopped = 0
            assert until(lambda: not _listed(admin, b"leaver")), "the server still lists the client"
        for command in other:
            writer.send(*command)
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
    replies = [writer.read_reply() for _ in other]
    writer.close()
    admin.close()
    return replies


def test_a_gone_client_no_longer_listed_has_run_what_it_sent(redis_and_shardkv):
    """Behind a MIGRATE (which reads its key from shard 0 first), a client
    sends a BLPOP of an empty list, or writes, and closes its socket; once
    CLIENT LIST no longer shows it, another client pushes to that list, or
    writes the same keys.  In Redis the gone client's commands all ran
    before: the push stays in the list (the BLPOP blocked and its client
    was freed), the other client's writes win.  shardkv unlisted the client
    at once, and its held commands ran after the other's: the BLPOP popped
    the element for a client that was gone, the old writes won."""
    admin = [RespClient(server.port) for server in redis_and_shardkv]
    got = []
    for server, a in zip(redis_and_shardkv, admin, strict=True):
        migrate = ["MIGRATE", "127.0.0.1", str(server.port), OWN, "0", "5000"]
        pushed = _after_leaving(server, [migrate, ["BLPOP", LIST, "0"]], [["RPUSH", LIST, "v"]])
        after_push = [
            a.command("LRANGE", LIST, "0", "-1"),
            a.command("INFO", "clients").count(b"blocked_clients:0"),
        ]  # type: ignore[union-attr]
        written = _after_leaving(
            server,
            [migrate, ["SET", OWN, "old"], ["LPOP", OTHER]],
            [["SET", OWN, "new"], ["RPUSH", OTHER, "x"]],
        )
        got.append(
            (pushed, after_push, written, a.command("GET", OWN), a.command("LRANGE", OTHER, "0", "-1"))
        )
        a.close()
    assert got[1] == got[0]
    assert got[0] == ([1], [[b"v"], 1], [b"OK", 1], b"new", [b"x"])


@pytest.mark.parametrize(
    "last",
    [
        [["MULTI"], ["SET", OWN, "a"], ["CLIENT", "UNBLOCK", "999999"], ["SET", OTHER, "b"], ["EXEC"]],
        [["MSET", OWN, "a", OTHER, "b"]],
    ],
    ids=["exec", "mset"],
)
def test_a_gone_client_whose_last_command_waits_has_run_it_once_unlisted(redis_and_shardkv, last):
    """The same when the command that waits inside shardkv is the last one
    the client sent: an EXEC with a CLIENT UNBLOCK inside, a MSET (which
    waits for its holds with several acceptors).  shardkv unlisted the
    client at once, and ran the command after another client's write of
    the same key (the EXEC at K=1 and K=2, the MSET at K=2)."""
    got = []
    for server in redis_and_shardkv:
        admin = RespClient(server.port)
        written = _after_leaving(server, last, [["SET", OWN, "later"]])
        got.append((written, admin.command("GET", OWN), admin.command("GET", OTHER)))
        admin.close()
    assert got[1] == got[0] == ([b"OK"], b"later", b"b")


def test_client_kill_of_a_client_still_running_what_it_sent(redis_and_shardkv):
    """CLIENT KILL of a client whose connection is gone while what it sent
    waits (shardkv lists it, flag ``A``): it is forgotten at once, the rest
    of what it sent dropped, as Redis frees a client it kills; in Redis
    the client, which ran everything as it read it, is gone already.
    Either way it is then no longer listed or counted.  (The kill is an
    ACL DELUSER of the client's own user, which kills its clients as
    CLIENT KILL does: a CLIENT KILL, inside EXEC or not, first waits for
    every shard's scripts, the stopped one's too, see
    blocking.serve_after_scripts.)"""
    got = []
    for server in redis_and_shardkv:
        ours = server.kind == "shardkv"
        admin = RespClient(server.port)
        admin.command("FLUSHALL")
        assert admin.command("ACL", "SETUSER", "leaver", "on", "nopass", "~*", "&*", "+@all") == b"OK"
        stopped = worker_pid(server, 0) if ours else 0
        if stopped:
            os.kill(stopped, signal.SIGSTOP)
        try:
            migrate = ["MIGRATE", "127.0.0.1", str(server.port), OWN, "0", "5000"]
            s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
            s.sendall(
                b"".join(
                    encode_command(*c)
                    for c in [
                        ["AUTH", "leaver", "any"],
                        ["CLIENT", "SETNAME", "leaver"],
                        migrate,
                        ["SET", OTHER, "b"],
                    ]
                )
            )
            answered = b""
            while len(answered) < 10 and (part := s.recv(10 - len(answered))):
                answered += part
            assert answered == b"+OK\r\n+OK\r\n"
            s.close()
            assert until(lambda: _seen_gone(admin, b"leaver")), "the server does not see the client close"  # noqa: B023
            line = _line(admin, b"leaver")
            if ours:
                assert line is not None, "shardkv does not list the client while what it sent waits"
            assert admin.command("ACL", "DELUSER", "leaver") == 1
            assert not _listed(admin, b"leaver")
        finally:
            if stopped:
                os.kill(stopped, signal.SIGCONT)
        info = admin.command("INFO", "clients")
        got.append([line for line in info.split(b"\r\n") if line.startswith(b"connected_clients:")])  # type: ignore[union-attr]
        admin.close()
    assert got[1] == got[0] == [b"connected_clients:1"]
