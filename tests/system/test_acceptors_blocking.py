"""A client seen blocked is woken by any write after it, with one or several
acceptors.

Redis blocks XREAD and resolves its ``$`` in one step, so once INFO or
CLIENT LIST shows the client blocked, an XADD from anyone must wake it.
With two acceptors, a write through the other acceptor can reach a shard
before the blocking command does: the command may wait behind a busy
worker (the single-shard case) or for its holds (across shards).  A
client then counted as blocked from the moment its acceptor sent the
command, the XADD ran first, ``$`` stood for the XADD's entry, and the
XREAD waited for the next one (``test_streams_blocking.py::
test_xread_block_dollar_wakes[shardkv-cross-shard]`` failed so in a
whole-suite run at ``SHARDKV_TEST_ACCEPTORS=2``).  Here a script keeps
shard 0 busy meanwhile, which makes that order certain; with one acceptor
(one global order) the same steps must give the same reply.

The same busy shard shows that a client is not blocked before its command
ran (CLIENT UNBLOCK answers 0, and the command then blocks as usual); a
stopped worker, that it is not while a cross-shard MSET or an EXEC waits
for its holds or its database.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from shardkv.protocol.router import Router
from tests.support.processes import wait_spinning, worker_pid
from tests.support.resp import RespClient, encode_command
from tests.support.servers import ServerProcess, start_shardkv

WAIT = 10.0  # seconds a test waits for something that must happen
# A script that keeps its shard busy for a fraction of a second (Lua's
# busy limit, 5 s, is far).
BUSY = "local i = 0 while i < 10000000 do i = i + 1 end return 1"


@pytest.fixture(scope="module", params=[1, 2], ids=["K=1", "K=2"])
def server(request) -> Iterator[ServerProcess]:
    proc = start_shardkv(shards=2, acceptors=request.param)
    yield proc
    proc.stop()


def key_on(shard: int, prefix: str, shards: int = 2) -> str:
    router = Router(shards)
    i = 0
    while router.shard_of(f"{prefix}{i}".encode()) != shard:
        i += 1
    return f"{prefix}{i}"


def client_on(server: ServerProcess, index: int) -> RespClient:
    """A connection on acceptor ``index`` (of ``server.acceptors``; acceptor
    ``i`` hands out the client ids ``i+1, i+1+K, ...``)."""
    k = server.acceptors
    for _ in range(200):
        c = RespClient(server.port)
        if (int(c.command("CLIENT", "ID")) - 1) % k == index % k:  # type: ignore[arg-type]
            return c
        c.close()
    pytest.fail("no connection landed on that acceptor")


def wait_shown_blocked(observer: RespClient, client_id: int) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for line in observer.command("CLIENT", "LIST").splitlines():  # type: ignore[union-attr]
            if line.startswith(b"id=%d " % client_id) and b" flags=b " in line:
                return
        time.sleep(0.002)
    pytest.fail("the XREAD was never shown blocked")


def wait_sent(observer: RespClient, client_id: int, name: bytes) -> None:
    """Wait until the acceptor has run (sent on to its shard) the command
    ``name`` that the client sent last: CLIENT LIST shows it as its cmd.
    A command the same acceptor reads after it reaches that shard after it.
    Not while a script runs: CLIENT LIST then waits for it, as Redis reads
    nothing meanwhile (see :func:`script_running`, :func:`worker_stopped`)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for line in observer.command("CLIENT", "LIST").splitlines():  # type: ignore[union-attr]
            if line.startswith(b"id=%d " % client_id) and b" cmd=%s " % name in line:
                return
        time.sleep(0.002)
    pytest.fail(f"the acceptor never ran the {name.decode()}")


def script_running(server: ServerProcess, shard: int) -> None:
    """Return once ``shard``'s worker is seen running a script just sent:
    its acceptor sent it on, so a command that acceptor reads after it
    reaches that shard after it.  Seen from outside, as no client can see
    it: Redis (and shardkv) answer nothing meanwhile, CLIENT LIST included."""
    wait_spinning(worker_pid(server, shard))


@contextmanager
def worker_stopped(server: ServerProcess, shard: int) -> Iterator[None]:
    """Stop ``shard``'s worker (SIGSTOP) meanwhile: what the acceptors send
    it waits in its pipes, no script runs, so CLIENT LIST (:func:`wait_sent`)
    shows what each acceptor has sent on."""
    pid = worker_pid(server, shard)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("cross_shard", [False, True], ids=["one-shard", "cross-shard"])
def test_xread_dollar_seen_blocked_is_woken_by_an_xadd_through_the_other_acceptor(
    server, cross_shard
) -> None:
    prefix = "x" if cross_shard else "o"
    k0, k1 = key_on(0, prefix), key_on(1, prefix)
    reader = client_on(server, 0)
    # Acceptor 1 writes and watches; shard 0 is kept busy from the acceptor
    # that makes the XREAD come last to the stream's shard.
    observer = client_on(server, 1)
    busy = client_on(server, 1 if cross_shard else 0)
    stream = k1 if cross_shard else k0
    try:
        observer.command("DEL", k0, k1)
        observer.command("XADD", stream, "1-0", "old", "1")
        busy.send("EVAL", BUSY, 1, k0)
        time.sleep(0.05)  # the script runs (if not yet, the test only proves less)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        if cross_shard:
            reader.send("XREAD", "BLOCK", 0, "STREAMS", k0, k1, "$", "$")
        else:
            reader.send("XREAD", "BLOCK", 0, "STREAMS", k0, "$")
        wait_shown_blocked(observer, reader_id)
        observer.command("XADD", stream, "2-0", "new", "2")
        assert reader.read_reply() == [[stream.encode(), [[b"2-0", [b"new", b"2"]]]]]
        assert busy.read_reply() == 1
    finally:
        for c in (reader, observer, busy):
            c.close()


# Keeps shard 0 busy for 1.5 s (by the clock: the checks made meanwhile
# take milliseconds; Lua's busy limit, 5 s, is far).
BUSY_LONG = (
    "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] "
    "repeat local n = redis.call('TIME') until n[1] * 1000000 + n[2] - s > 1500000 return 1"
)


def flags_of(observer: RespClient, client_id: int) -> bytes:
    for line in observer.command("CLIENT", "LIST").splitlines():  # type: ignore[union-attr]
        if line.startswith(b"id=%d " % client_id):
            return line.split(b" flags=")[1].split(b" ")[0]
    pytest.fail("no such client")


def blocked_clients(observer: RespClient) -> int:
    info = observer.command("INFO", "clients")
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])  # type: ignore[union-attr]


@pytest.mark.parametrize("cross_shard", [False, True], ids=["one-shard", "cross-shard"])
def test_blocking_command_not_yet_run_is_not_unblocked(server, cross_shard) -> None:
    """CLIENT UNBLOCK of a client whose one-shard BLPOP waits behind a busy
    shard answers 0 (in Redis's order the BLPOP has not run, so the client
    is not blocked); the BLPOP then runs, blocks, and is served as usual.
    A cross-shard BLPOP's CLIENT UNBLOCK waits for its first try instead
    (the acceptor read the BLPOP first: a client that saw a command sent
    with it saw it blocked in Redis, see
    ``test_blocking_fifo_acceptors.test_unblock_after_the_block_was_read``),
    and answers 1, the BLPOP a null, as Redis, which reads both once its
    script ends, the BLPOP, read first, blocked by then.  (Whether the
    BLPOP shows blocked meanwhile is not asked: Redis answers no CLIENT
    LIST while a script runs, nor does shardkv.)"""
    k0, k1 = key_on(0, "u"), key_on(1, "u")
    reader = client_on(server, 0)
    busy = client_on(server, 0)
    observer = client_on(server, 1)
    try:
        observer.command("DEL", k0, k1)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        busy.send("EVAL", BUSY_LONG, 1, k0)
        script_running(server, 0)  # the EVAL reaches shard 0 before the BLPOP
        reader.send("BLPOP", *((k0, k1) if cross_shard else (k0,)), 0)
        time.sleep(0.05)
        if cross_shard:
            assert observer.command("CLIENT", "UNBLOCK", reader_id) == 1
            assert busy.read_reply() == 1
            assert reader.read_reply() is None
            return
        assert observer.command("CLIENT", "UNBLOCK", reader_id) == 0
        assert busy.read_reply() == 1
        wait_shown_blocked(observer, reader_id)
        observer.command("RPUSH", k0, "v")
        assert reader.read_reply() == [k0.encode(), b"v"]
        assert observer.command("CLIENT", "UNBLOCK", reader_id) == 0
    finally:
        for c in (reader, observer, busy):
            c.close()


@pytest.mark.parametrize("kind", ["mset", "exec-select"])
def test_a_command_waiting_for_shards_is_not_blocked(server, kind) -> None:
    """A cross-shard MSET, or an EXEC with a SELECT inside, that waits for a
    shard (for its holds, with several acceptors, or for its database) is
    not a blocked client in CLIENT LIST (no "b", the same test as INFO's
    blocked_clients), and CLIENT UNBLOCK does not touch it: Redis has no
    such wait to show.  Shard 0's worker is stopped (SIGSTOP) meanwhile,
    not kept busy by a script: CLIENT LIST waits for a running script, as
    Redis reads nothing meanwhile, so it would answer only once the command
    had finished.  INFO is not asked meanwhile: it asks every shard, so it
    too waits for the stopped worker."""
    k0, k1 = key_on(0, "h"), key_on(1, "h")
    writer = client_on(server, 0)
    observer = client_on(server, 1)
    try:
        observer.command("DEL", k0, k1)
        writer_id = int(writer.command("CLIENT", "ID"))  # type: ignore[arg-type]
        if kind == "exec-select":
            writer.command("MULTI")
            writer.command("SELECT", 1)
            writer.command("SET", k0, "x")
            writer.command("SET", k1, "y")  # across shards: the EXEC is atomic
        with worker_stopped(server, 0):
            if kind == "mset":
                writer.send("MSET", k0, "1", k1, "2")
            else:
                writer.send("EXEC")
            wait_sent(observer, writer_id, kind.split("-")[0].encode())
            writer.send("PING")  # held behind the waiting command
            assert flags_of(observer, writer_id) == b"N"
            assert observer.command("CLIENT", "UNBLOCK", writer_id) == 0
            assert flags_of(observer, writer_id) == b"N"
            # It still waits for shard 0: no reply has come.
            assert select.select([writer.sock], [], [], 0)[0] == []
        assert writer.read_reply() == ([b"OK", b"OK", b"OK"] if kind == "exec-select" else b"OK")
        assert writer.read_reply() == b"PONG"
        assert blocked_clients(observer) == 0  # (nor left blocked)
        if kind == "exec-select":
            assert writer.command("GET", k0) == b"x"  # in database 1 now
            writer.command("DEL", k0, k1)
        else:
            assert observer.command("MGET", k0, k1) == [b"1", b"2"]
    finally:
        for c in (writer, observer):
            c.close()


@pytest.mark.parametrize("cross_shard", [False, True], ids=["one-shard", "cross-shard"])
def test_push_then_unblock_pipelined_serves_first(server, cross_shard) -> None:
    """A client blocked through acceptor 0; another, through acceptor 1,
    sends LPUSH and CLIENT UNBLOCK pipelined.  As in Redis, the push serves
    the blocked client and CLIENT UNBLOCK then replies 0, with two
    acceptors too: the UNBLOCK goes through the bus and the blocked client's
    acceptor only once every shard ran what acceptor 1 sent before it
    (shardkv used to pop the element for the blocked client and drop it)."""
    k0, k1 = key_on(0, "p"), key_on(1, "p")
    reader = client_on(server, 0)
    writer = client_on(server, 1)
    try:
        writer.command("DEL", k0, k1)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        for _ in range(10):
            reader.send("BLPOP", *((k1, k0) if cross_shard else (k0,)), 0)
            wait_shown_blocked(writer, reader_id)
            writer.sock.sendall(
                encode_command("LPUSH", k0, "x") + encode_command("CLIENT", "UNBLOCK", reader_id)
            )
            assert [writer.read_reply(), writer.read_reply()] == [1, 0]
            assert reader.read_reply() == [k0.encode(), b"x"]
            assert writer.command("LLEN", k0) == 0
    finally:
        for c in (reader, writer):
            c.close()


def test_push_replied_then_unblock_through_the_other_acceptor(server) -> None:
    """The LPUSH's reply came before the CLIENT UNBLOCK was sent: the
    blocked client was served, whichever acceptor each is on."""
    k0 = key_on(0, "q")
    reader = client_on(server, 0)
    writer = client_on(server, 1)
    try:
        writer.command("DEL", k0)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        reader.send("BLPOP", k0, 0)
        wait_shown_blocked(writer, reader_id)
        assert writer.command("LPUSH", k0, "x") == 1
        assert writer.command("CLIENT", "UNBLOCK", reader_id, "ERROR") == 0
        assert reader.read_reply() == [k0.encode(), b"x"]
        assert writer.command("LLEN", k0) == 0
    finally:
        for c in (reader, writer):
            c.close()


def test_unblock_waits_for_a_cross_shard_try_on_its_way(server) -> None:
    """A cross-shard BLPOP is woken by a push to shard 1, and its atomic try
    then waits for shard 0, kept busy: a CLIENT UNBLOCK meanwhile waits for
    the try, which pops the element for the client, so it replies 0 (it
    used to reply 1, give the client a null, and lose what the try popped)."""
    k0, k1 = key_on(0, "t"), key_on(1, "t")
    reader = client_on(server, 0)
    writer = client_on(server, 1)
    busy = client_on(server, 0)
    try:
        writer.command("DEL", k0, k1)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        reader.send("BLPOP", k0, k1, 0)
        wait_shown_blocked(writer, reader_id)
        busy.send("EVAL", BUSY_LONG, 1, k0)
        time.sleep(0.05)  # the script runs (if not yet, the test only proves less)
        assert writer.command("LPUSH", k1, "x") == 1
        assert writer.command("CLIENT", "UNBLOCK", reader_id) == 0
        assert reader.read_reply() == [k1.encode(), b"x"]
        assert busy.read_reply() == 1
        assert writer.command("LLEN", k1) == 0
    finally:
        for c in (reader, writer, busy):
            c.close()


def test_unblock_then_push_pipelined_unblocks_first(server) -> None:
    """CLIENT UNBLOCK then LPUSH, pipelined, through the other acceptor: the
    LPUSH waits for the CLIENT UNBLOCK's answer (which goes through the
    blocked client's acceptor), so it cannot serve the blocked client
    first: 1, 1, the client gets a null, and the element stays."""
    k0 = key_on(0, "r")
    reader = client_on(server, 0)
    writer = client_on(server, 1)
    try:
        writer.command("DEL", k0)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        for _ in range(5):
            reader.send("BLPOP", k0, 0)
            wait_shown_blocked(writer, reader_id)
            writer.sock.sendall(
                encode_command("CLIENT", "UNBLOCK", reader_id) + encode_command("LPUSH", k0, "x")
            )
            assert [writer.read_reply(), writer.read_reply()] == [1, 1]
            assert reader.read_reply() is None
            assert writer.command("LPOP", k0) == b"x"
    finally:
        for c in (reader, writer):
            c.close()


@pytest.mark.parametrize("unblock_first", [False, True], ids=["push-first", "unblock-first"])
@pytest.mark.parametrize("cross_shard", [False, True], ids=["one-shard", "cross-shard"])
@pytest.mark.parametrize("same_acceptor", [False, True], ids=["other-acceptor", "same-acceptor"])
def test_unblock_in_exec_with_a_push_that_serves(server, same_acceptor, cross_shard, unblock_first) -> None:
    """MULTI, LPUSH, CLIENT UNBLOCK (or the other way round), EXEC: Redis
    serves the clients a transaction woke only after EXEC, so the UNBLOCK
    finds its client still blocked: ``[1, 1]``, the client gets a null and
    the element stays (``tests/compat/test_blocking.py::
    test_client_unblock_in_exec_with_a_write_that_serves`` compares with
    Redis).  With two acceptors, through the bus too: the transaction's
    push waits until the blocked client's acceptor had its shard decide
    (shardkv replied ``[1, 0]`` and served the client)."""
    k0, k1 = key_on(0, "m"), key_on(1, "m")
    reader = client_on(server, 0)
    writer = client_on(server, 0 if same_acceptor else 1)
    try:
        writer.command("DEL", k0, k1)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        commands = [("LPUSH", k0, "x"), ("CLIENT", "UNBLOCK", reader_id)]
        if unblock_first:
            commands.reverse()
        for _ in range(3):
            reader.send("BLPOP", *((k1, k0) if cross_shard else (k0,)), 0)
            wait_shown_blocked(writer, reader_id)
            writer.sock.sendall(
                encode_command("MULTI")
                + b"".join(encode_command(*c) for c in commands)
                + encode_command("EXEC")
            )
            assert [writer.read_reply() for _ in range(4)] == [b"OK", b"QUEUED", b"QUEUED", [1, 1]]
            assert reader.read_reply() is None
            assert writer.command("LPOP", k0) == b"x"
    finally:
        for c in (reader, writer):
            c.close()


@pytest.mark.parametrize("unblock_first", [False, True], ids=["push-first", "unblock-first"])
@pytest.mark.parametrize("same_acceptor", [False, True], ids=["other-acceptor", "same-acceptor"])
def test_unblock_in_watched_exec_with_a_push_that_serves(server, same_acceptor, unblock_first) -> None:
    """The same under WATCH, where the transaction runs as one atomic
    operation: ``[1, 1]``, a null, the element stays
    (``tests/compat/test_blocking.py::
    test_client_unblock_in_watched_exec_with_a_write_that_serves`` compares
    with Redis).  (shardkv replied ``[1, 0]`` and served the client: the
    UNBLOCK ran after the operation, which had served it.)"""
    k0, k1 = key_on(0, "w"), key_on(1, "w")
    reader = client_on(server, 0)
    writer = client_on(server, 0 if same_acceptor else 1)
    try:
        writer.command("DEL", k0, k1)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        commands = [("LPUSH", k0, "x"), ("CLIENT", "UNBLOCK", reader_id)]
        if unblock_first:
            commands.reverse()
        for _ in range(3):
            reader.send("BLPOP", k0, 0)
            wait_shown_blocked(writer, reader_id)
            writer.sock.sendall(
                encode_command("WATCH", k1)
                + encode_command("MULTI")
                + b"".join(encode_command(*c) for c in commands)
                + encode_command("EXEC")
            )
            assert [writer.read_reply() for _ in range(5)] == [b"OK", b"OK", b"QUEUED", b"QUEUED", [1, 1]]
            assert reader.read_reply() is None
            assert writer.command("LPOP", k0) == b"x"
    finally:
        for c in (reader, writer):
            c.close()


@pytest.mark.parametrize("same_acceptor", [False, True], ids=["other-acceptor", "same-acceptor"])
def test_client_unblocked_in_exec_then_sees_its_writes(server, same_acceptor) -> None:
    """MULTI, SET on another shard, CLIENT UNBLOCK, EXEC: the client gets its
    null after the whole transaction, as in Redis (the EXEC is one step), so
    its next command, pipelined behind the BLPOP, reads the SET.  (With two
    acceptors the UNBLOCK went through the bus first and the null could
    come, and the GET run, before the SET.)"""
    k0, k1 = key_on(0, "u"), key_on(1, "u")
    reader = client_on(server, 0)
    writer = client_on(server, 0 if same_acceptor else 1)
    try:
        writer.command("DEL", k0, k1)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        for i in range(10):
            reader.sock.sendall(encode_command("BLPOP", k0, 0) + encode_command("GET", k1))
            wait_shown_blocked(writer, reader_id)
            writer.sock.sendall(
                encode_command("MULTI")
                + encode_command("SET", k1, f"v{i}")
                + encode_command("CLIENT", "UNBLOCK", reader_id)
                + encode_command("EXEC")
            )
            assert [writer.read_reply() for _ in range(4)] == [b"OK", b"QUEUED", b"QUEUED", [b"OK", 1]]
            assert reader.read_reply() is None
            assert reader.read_reply() == f"v{i}".encode()
    finally:
        for c in (reader, writer):
            c.close()


@pytest.fixture(scope="module", params=[1, 2], ids=["K=1", "K=2"])
def server3(request) -> Iterator[ServerProcess]:
    """Three shards: a client blocked across two, a write on the third."""
    proc = start_shardkv(shards=3, acceptors=request.param)
    yield proc
    proc.stop()


@pytest.mark.parametrize("watch", [False, True], ids=["plain", "watched"])
def test_client_unblocked_across_shards_in_exec_then_sees_its_writes(server3, watch) -> None:
    """A client blocked across shards 0 and 1 (BLPOP, with a GET of a key on
    shard 2 pipelined behind it); through the other acceptor, MULTI, SET of
    that key, CLIENT UNBLOCK, EXEC (after WATCH of an untouched key, or
    not), while a script sent through the blocked client's acceptor keeps
    shard 2 busy.  As in Redis the client gets its null after the whole
    transaction, so its GET reads the SET.  (With two acceptors the
    UNBLOCK's try answered the client at once, while the SET still waited
    behind the script, and the GET, first on the script's pipe, read
    nothing.)"""
    k0, k1, k2 = (key_on(i, "c", shards=3) for i in range(3))
    reader = client_on(server3, 0)
    scripter = client_on(server3, 1)
    writer = client_on(server3, 1)
    try:
        writer.command("DEL", k0, k1, k2)
        reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
        reader.sock.sendall(encode_command("BLPOP", k0, k1, 0) + encode_command("GET", k2))
        wait_shown_blocked(writer, reader_id)
        scripter.send("EVAL", BUSY_LONG, 1, k2)
        script_running(server3, 2)
        commands = [("MULTI",), ("SET", k2, "v"), ("CLIENT", "UNBLOCK", reader_id), ("EXEC",)]
        if watch:
            commands.insert(0, ("WATCH", key_on(0, "untouched", shards=3)))
        writer.sock.sendall(b"".join(encode_command(*c) for c in commands))
        assert reader.read_reply() is None
        assert reader.read_reply() == b"v"
        assert [writer.read_reply() for _ in commands][-1] == [b"OK", 1]
        assert scripter.read_reply() == 1
    finally:
        for c in (reader, scripter, writer):
            c.close()


# Busy for about 2.5 s: past a busy-reply-threshold of 1000 ms.
BUSY_SCRIPT = (
    "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end "
    "local e = now() + 2500000 while now() < e do end return 1"
)


def _block_behind_threshold(reader, writer, k0: str) -> int:
    """Set busy-reply-threshold to 1000 ms (through ``writer``) and block
    ``reader`` in ``BLPOP k0 0``; return the reader's client id."""
    writer.command("DEL", k0)
    writer.command("CONFIG", "SET", "busy-reply-threshold", "1000")
    reader_id = int(reader.command("CLIENT", "ID"))  # type: ignore[arg-type]
    reader.send("BLPOP", k0, 0)
    wait_shown_blocked(writer, reader_id)
    return reader_id


@pytest.mark.parametrize("script_shard", [0, 1], ids=["same-shard", "other-shard"])
@pytest.mark.parametrize("same_acceptor", [False, True], ids=["other-acceptor", "same-acceptor"])
def test_unblock_behind_a_busy_script_gets_busy(server, same_acceptor, script_shard) -> None:
    """A script on the blocked client's shard, sent through its acceptor,
    runs; a CLIENT UNBLOCK sent before busy-reply-threshold waits behind it
    on that shard.  As Redis (``tests/compat/test_blocking.py::
    test_client_unblock_behind_a_busy_script_gets_busy``), it gets -BUSY
    once the script is past the threshold, and the client stays blocked,
    with two acceptors too (the UNBLOCK through the bus), and with the
    script on the other shard (the UNBLOCK was answered 1 at once)."""
    k0 = key_on(0, "s")
    script_key = key_on(script_shard, "t")
    reader = client_on(server, 0)
    scripter = client_on(server, 0)
    writer = client_on(server, 0 if same_acceptor else 1)
    try:
        reader_id = _block_behind_threshold(reader, writer, k0)
        scripter.send("EVAL", BUSY_SCRIPT, 1, script_key)
        script_running(server, script_shard)  # the UNBLOCK reaches the script's shard after it
        writer.send("CLIENT", "UNBLOCK", reader_id)
        got = writer.read_reply()
        assert str(got).startswith("BUSY ")
        assert scripter.read_reply() == 1
        assert writer.command("LPUSH", k0, "x") == 1
        assert reader.read_reply() == [k0.encode(), b"x"]
    finally:
        writer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        for c in (reader, scripter, writer):
            c.close()


def test_script_kill_after_an_unblock_got_busy_through_the_other_acceptor(server) -> None:
    """The -BUSY of a CLIENT UNBLOCK of another acceptor's client comes
    from that acceptor (through the bus), and could come before the
    script's ``S`` frame on the asker's own pipe: a SCRIPT KILL sent
    through the asker right after it then answered ``-NOTBUSY`` while the
    script ran (about one try in three).  As redis-server 7.0.15, it
    stops the script (``+OK``).  Several tries, as the order was a race."""
    if server.acceptors < 2:
        pytest.skip("one acceptor: nothing goes through the bus")
    k0 = key_on(0, "s")
    reader = client_on(server, 0)
    scripter = client_on(server, 0)
    writer = client_on(server, 1)
    try:
        reader_id = _block_behind_threshold(reader, writer, k0)
        for _ in range(6):
            scripter.send("EVAL", BUSY_SCRIPT, 1, key_on(0, "t"))
            script_running(server, 0)
            writer.send("CLIENT", "UNBLOCK", reader_id)
            assert str(writer.read_reply()).startswith("BUSY ")
            writer.send("SCRIPT", "KILL")
            assert writer.read_reply() == b"OK"
            assert str(scripter.read_reply()).startswith("ERR Script killed by user with SCRIPT KILL")
        assert writer.command("LPUSH", k0, "x") == 1
        assert reader.read_reply() == [k0.encode(), b"x"]
    finally:
        writer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        for c in (reader, scripter, writer):
            c.close()


def test_clients_blocked_through_two_acceptors_are_served_in_the_order_they_blocked(server) -> None:
    """Redis's ``unit/type/list`` test "BRPOPLPUSH with multiple blocked
    clients": rd1 then rd2 send ``BRPOPLPUSH blist target<i> 0`` (target1
    holds a string), then LPUSH; Redis serves rd1 first (WRONGTYPE, the
    element stays), then rd2, which gets it.  Here rd1 is on acceptor 0 and
    rd2 on acceptor 1, and shard 0's worker is stopped (SIGSTOP) while a
    script sent through acceptor 0, then both acceptors' commands, are
    sent on to it (CLIENT LIST shows each sent: Redis, and shardkv, answer
    none while a script runs): once resumed and past the script, the
    worker takes the next frame from pipe 1 (the pipes take turns), so
    rd2's reaches the shard first.  Each waiter's place is when its
    acceptor ran it (``wire.FLAG_STAMP``), so rd1 still comes first; the
    shard used to queue them in the order their frames came, gave rd2 the
    element and left rd1 blocked (the suite stalled there at K=2).  A third
    client, on acceptor 0 again, checks the order of plain BLPOPs too."""
    tag = key_on(0, "fifo")
    blist, target1, target2, queue = (f"{{{tag}}}{name}" for name in ("blist", "target1", "target2", "q"))
    busy = client_on(server, 0)
    rd1 = client_on(server, 0)
    rd2 = client_on(server, 1)
    rd3 = client_on(server, 0)
    observer = client_on(server, 1)
    clients = (rd1, rd2, rd3)
    try:
        observer.command("DEL", blist, target1, target2, queue)
        observer.command("SET", target1, "nolist")
        ids = [int(c.command("CLIENT", "ID")) for c in (busy, *clients)]  # type: ignore[arg-type]
        for c in clients:
            c.sock.settimeout(WAIT)  # a client left blocked fails the test, not hangs it
        with worker_stopped(server, 0):
            busy.send("EVAL", BUSY_LONG, 1, tag)
            wait_sent(observer, ids[0], b"eval")
            rd1.send("BRPOPLPUSH", blist, target1, 0)
            wait_sent(observer, ids[1], b"brpoplpush")
            rd2.send("BRPOPLPUSH", blist, target2, 0)
            wait_sent(observer, ids[2], b"brpoplpush")
        assert busy.read_reply() == 1
        for client_id in ids[1:3]:
            wait_shown_blocked(observer, client_id)
        observer.command("LPUSH", blist, "foo")
        assert str(rd1.read_reply()).startswith("WRONGTYPE ")
        assert rd2.read_reply() == b"foo"
        assert observer.command("LRANGE", target2, 0, -1) == [b"foo"]
        assert observer.command("LLEN", blist) == 0
        with worker_stopped(server, 0):
            busy.send("EVAL", BUSY_LONG, 1, tag)
            wait_sent(observer, ids[0], b"eval")
            for client_id, c in zip(ids[1:], clients, strict=True):
                c.send("BLPOP", queue, 0)
                wait_sent(observer, client_id, b"blpop")
        assert busy.read_reply() == 1
        for client_id in ids[1:]:
            wait_shown_blocked(observer, client_id)
        observer.command("RPUSH", queue, "a", "b", "c")
        assert [c.read_reply() for c in clients] == [[queue.encode(), v] for v in (b"a", b"b", b"c")]
    finally:
        for c in (busy, *clients, observer):
            c.close()
