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
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command
from tests.support.servers import ServerProcess, start_redis, start_shardkv

SHARDS = 2
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


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    real = start_redis()
    ours = start_shardkv(shards=SHARDS)
    yield real, ours
    real.stop()
    ours.stop()


def _worker_pid(server: ServerProcess, shard: int) -> int:
    for child in psutil.Process(server.proc.pid).children():
        if child.name() == f"shardkv-shard{shard}":
            return child.pid
    raise AssertionError(f"no worker for shard {shard}")


def _until(check: Callable[[], object]) -> object:
    """``check()``'s first true value, or its last one after :data:`WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while not (got := check()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return got


def _listed(admin: RespClient, name: bytes) -> bool:
    return b" name=" + name + b" " in admin.command("CLIENT", "LIST")  # type: ignore[operator]


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
    return _until(lambda: (v := _values(admin)) == EXPECTED and v) or _values(admin)  # type: ignore[return-value]


def _blocked(admin: RespClient) -> bool:
    info = admin.command("INFO", "clients")
    return b"blocked_clients:1\r\n" in info  # type: ignore[operator]


def _run(server: ServerProcess, first: Callable[[RespClient, int], list[list[str]]]) -> tuple[list, list]:
    """On ``server``: send ``first(blocker, port)`` and :data:`AFTER` from a client
    that closes its socket at once (on shardkv, while shard 0's worker is
    stopped, until the server no longer lists it); every key's value then,
    and what a client blocked by the test (if any) was answered."""
    admin = RespClient(server.port)
    admin.command("FLUSHALL")
    blocker = RespClient(server.port)
    commands = first(blocker, server.port)
    stopped = _worker_pid(server, 0) if server.kind == "shardkv" else 0
    if stopped:
        os.kill(stopped, signal.SIGSTOP)
    try:
        s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        s.sendall(b"".join(encode_command(*c) for c in [["CLIENT", "SETNAME", "leaver"], *commands, *AFTER]))
        assert s.recv(5) == b"+OK\r\n"  # read, and what follows with it
        s.close()
        assert _until(lambda: not _listed(admin, b"leaver")), "the server still lists the client"
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
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
    assert _until(lambda: _blocked(admin)), "the blocker does not block"
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
def test_commands_behind_a_wait_run_after_their_client_left(servers, first):
    """Behind an EXEC or a CLIENT UNBLOCK that waits for the shards, a
    MIGRATE, a write on both shards (which waits for its holds with several
    acceptors), a blocking command that finds its element (its shard has
    not answered it when the client goes), a script run again across
    shards.  All but the script
    failed before (the MSET only with several acceptors: with one nothing
    waits); the script's later commands do not wait for its run again."""
    got = [_run(server, first) for server in servers]
    assert got[1] == got[0]
    assert got[0][0] == EXPECTED


def test_commands_behind_a_blocking_command_are_dropped_as_in_redis(servers):
    """Behind a command that blocks as Redis shows it, Redis frees the
    client with the rest of what it read: shardkv drops them too."""
    got = []
    for server in servers:
        admin = RespClient(server.port)
        admin.command("FLUSHALL")
        s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        s.sendall(
            b"".join(
                encode_command(*c) for c in [["CLIENT", "SETNAME", "leaver"], ["BLPOP", OTHER, "0"], *AFTER]
            )
        )
        assert s.recv(5) == b"+OK\r\n"
        assert _until(lambda: _blocked(admin)), "the client does not block"  # noqa: B023
        s.close()
        assert _until(lambda: not _listed(admin, b"leaver")), "the server still lists the client"  # noqa: B023
        got.append(_values(admin))
        admin.close()
    assert got[1] == got[0] == [None, None, None, None, [], None]


def test_commands_behind_a_blocked_command_that_is_unblocked_run_after_their_client_left(servers):
    """A client blocked (BLPOP) with commands pipelined behind it, unblocked
    by another client's CLIENT UNBLOCK, then gone: Redis unblocked it and
    ran them as it read the CLIENT UNBLOCK.  On shardkv the CLIENT UNBLOCK
    waits for shard 0's ``__ping`` (its worker stopped) until the client
    has gone; it still unblocks it, and what followed runs."""
    got = []
    for server in servers:
        ours = server.kind == "shardkv"
        admin = RespClient(server.port)
        admin.command("FLUSHALL")
        unblocker = RespClient(server.port)
        s = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
        s.sendall(encode_command("CLIENT", "SETNAME", "leaver") + encode_command("CLIENT", "ID"))
        head = b""
        while head.count(b"\r\n") < 2:
            head += s.recv(100)
        cid = int(head.split(b"\r\n")[1][1:])
        commands = [["BLPOP", OTHER, "0"], ["SET", OWN, "a"], ["SET", OTHER, "b"], *AFTER]
        s.sendall(b"".join(encode_command(*c) for c in commands))
        assert _until(lambda: _blocked(admin)), "the client does not block"  # noqa: B023
        stopped = _worker_pid(server, 0) if ours else 0
        if stopped:
            os.kill(stopped, signal.SIGSTOP)
        try:
            unblocker.send("CLIENT", "UNBLOCK", cid)
            answered = None if ours else unblocker.read_reply()
            s.close()
            assert _until(lambda: not _listed(admin, b"leaver")), "the server still lists the client"  # noqa: B023
        finally:
            if stopped:
                os.kill(stopped, signal.SIGCONT)
        if answered is None:
            answered = unblocker.read_reply()
        got.append((answered, _everything(admin)))
        unblocker.close()
        admin.close()
    assert got[1] == got[0] == (1, EXPECTED)
