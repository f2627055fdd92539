"""Holds with several acceptors (``shardkv/acceptor/holds.py``): a command
over several shards tries every shard at once and falls back on holds in
ascending order when a shard is not free.  Two acceptors racing over the
same shards stay atomic, and an acceptor that dies holding every shard
after its tries leaves none held.  (That an uncontended command takes one
round of tries and no ``__hold`` is counted in ``tests/unit/test_holds.py``.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.acceptors import K, acceptor_pids, client_on, connect_to, raw_on
from tests.support.placement import on_shards
from tests.support.resp import ErrorReply, RespClient, encode_command
from tests.support.servers import ServerProcess, start_shardkv

KEYS = on_shards(0, 1, 2, 3, prefix="hold")
ROUNDS = 300


@pytest.fixture(scope="module")
def fault_file(tmp_path_factory) -> Path:
    """The fault file (``shardkv.runtime.faultpoints``) of the module's
    shardkv: empty but while a test stops an acceptor at a fault point."""
    path = tmp_path_factory.mktemp("holds") / "faultpoints"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def four_shards() -> Iterator[list[ServerProcess]]:
    """The module's shardkv of four shards and K acceptors, started by the
    first test that needs it (and again after one that failed)."""
    held: list[ServerProcess] = []
    yield held
    for server in held:
        server.stop()


@pytest.fixture
def server(request, four_shards, fault_file) -> Iterator[ServerProcess]:
    """The module's shardkv of four shards, emptied (the tests set their
    own keys first): stopped after a test that failed."""
    if not four_shards:
        env = dict(os.environ, SHARDKV_FAULT_FILE=str(fault_file))
        four_shards.append(start_shardkv(shards=4, acceptors=K, env=env))
    server = four_shards[0]
    with connect_to(server.port, 0) as c:
        c.flushall()
    failed = request.session.testsfailed
    yield server
    if request.session.testsfailed != failed:
        four_shards.pop().stop()


def race(conns: dict, writer: Callable[[int], None], problems: list[str]) -> None:
    """Run ``writer(i)`` for each acceptor ``i`` against a reader per
    acceptor whose MGETs of KEYS must never see two values (half of an
    MSET); what goes wrong is added to ``problems``, then asserted."""
    writing = threading.Event()
    writing.set()

    def reader(i: int) -> None:
        conn = conns["r", i]
        while writing.is_set() and not problems:
            seen = conn.mget(KEYS)
            if len(set(seen)) != 1:
                problems.append(f"MGET through acceptor {i} saw {seen}")

    writers = [threading.Thread(target=writer, args=(i,)) for i in range(K)]
    readers = [threading.Thread(target=reader, args=(i,)) for i in range(K)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join(120)
    writing.clear()
    for t in readers:
        t.join(30)
    assert not problems, problems[:3]
    assert not any(t.is_alive() for t in writers + readers), "a command never completed"


@pytest.mark.slow
def test_acceptors_racing_msets_over_the_same_shards_never_show_a_mix(server):
    """Each acceptor has a writer and a reader: a writer's MSET sets every
    key to one value, so an MGET that sees two values saw half of one."""
    conns = {(role, i): connect_to(server.port, i) for role in ("w", "r") for i in range(K)}
    conns["w", 0].mset(dict.fromkeys(KEYS, "start"))
    problems: list[str] = []

    def writer(i: int) -> None:
        conn = conns["w", i]
        for n in range(ROUNDS):
            conn.mset(dict.fromkeys(KEYS, f"{i}:{n}"))

    race(conns, writer, problems)
    final = conns["r", 1].mget(KEYS)
    assert len(set(final)) == 1 and final[0].endswith(f":{ROUNDS - 1}")
    for conn in conns.values():
        conn.close()


PIPELINED = 16


@pytest.mark.slow
def test_pipelined_cross_shard_writes_stay_in_order_and_whole(server):
    """A client per acceptor pipelines batches of MSETs over every shard
    with reads of its own keys between them: its later commands ride along
    on its first one's holds (``Holds._take_along_all``), and must still see
    its earlier writes, in its order; a reader per acceptor, whose MGETs
    race them, must never see half of an MSET."""
    conns = {(role, i): connect_to(server.port, i) for role in ("w", "r") for i in range(K)}
    conns["w", 0].mset(dict.fromkeys(KEYS, "start"))
    own = {i: on_shards(0, 2, prefix=f"own{i}-") for i in range(K)}
    problems: list[str] = []

    def writer(i: int) -> None:
        conn = conns["w", i]
        mine = own[i]
        for batch in range(ROUNDS // PIPELINED):
            pipe = conn.pipeline(transaction=False)
            expected: list = []
            for n in range(batch * PIPELINED, (batch + 1) * PIPELINED, 2):
                value = f"{i}:{n}"
                pipe.mset({**dict.fromkeys(KEYS, value), **dict.fromkeys(mine, value)})
                pipe.mget(mine)
                expected += [True, [value] * len(mine)]
            got = pipe.execute()
            if got != expected:
                problems.append(f"acceptor {i}'s pipeline got {got}, not {expected}")
                return

    race(conns, writer, problems)
    for conn in conns.values():
        conn.close()


def test_single_key_commands_pipelined_behind_a_cross_shard_write_see_it(server):
    """A pipelined ``MSET a v b v c v`` over three shards of four, then ``GET`` of
    each key: the GETs ride along on the MSET's holds
    (``Holds._take_along_all``), sent as runs (``ShardLink.send_run``) that
    the step's capture must see, and read what it wrote.  (A cut that
    queued them on their links past the capture left them unanswered.)"""
    keys = on_shards(0, 1, 2, prefix="ride")
    for i in range(K):
        conn = connect_to(server.port, i)
        for n in range(20):
            value = f"{i}:{n}"
            pipe = conn.pipeline(transaction=False)
            pipe.mset(dict.fromkeys(keys, value))
            for key in keys:
                pipe.get(key)
            assert pipe.execute() == [True, value, value, value]
        conn.close()


def _stopped(pid: int, limit: float) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if psutil.Process(pid).status() == psutil.STATUS_STOPPED:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_an_acceptor_killed_between_its_tries_and_its_releases_leaves_no_shard_held(tmp_path):
    fault_file = tmp_path / "faultpoints"
    fault_file.write_text("")
    env = dict(os.environ, SHARDKV_FAULT_FILE=str(fault_file))
    server = start_shardkv(shards=4, acceptors=K, env=env)
    try:
        pids = acceptor_pids(server)
        survivor = connect_to(server.port, 0)
        survivor.mset(dict.fromkeys(KEYS, "before"))
        sock, _ = raw_on(server.port, 0)  # made now: a new one may reach the stopped acceptor
        fault_file.write_text("tried")
        # The victim's MSET (on a raw connection: a client library would send
        # it again): its acceptor stops once every shard granted its try,
        # before the MSET leaves.
        victim_sock, _ = raw_on(server.port, 1)
        victim_sock.sendall(b"MSET " + b" ".join(k.encode() + b" doomed" for k in KEYS) + b"\r\n")
        assert _stopped(pids[1], 20), "acceptor 1 did not reach the fault point"
        fault_file.write_text("")
        # Every shard is held by the stopped acceptor: the survivor's MGET waits.
        command = b"MGET " + b" ".join(k.encode() for k in KEYS) + b"\r\n"
        sock.sendall(command)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(100)
        os.kill(pids[1], signal.SIGKILL)
        # Its pipes closed: the holds ended, and its MSET never ran.
        sock.settimeout(20)
        reply = b""
        while reply.count(b"\r\n") < 1 + 2 * len(KEYS):
            reply += sock.recv(1000)
        assert reply == b"*4\r\n" + b"$6\r\nbefore\r\n" * 4
        sock.close()
        victim_sock.settimeout(20)
        try:
            assert victim_sock.recv(100) == b""  # closed with its acceptor, unanswered
        except ConnectionResetError:
            pass
        victim_sock.close()
        survivor.mset(dict.fromkeys(KEYS, "after"))
        assert survivor.mget(KEYS) == ["after"] * 4
        deadline = time.monotonic() + 30
        while acceptor_pids(server).get(1, pids[1]) == pids[1]:
            assert time.monotonic() < deadline, "acceptor 1 was not restarted"
            time.sleep(0.05)
        fresh = connect_to(server.port, 1)
        fresh.mset(dict.fromkeys(KEYS, "fresh"))
        assert survivor.mget(KEYS) == ["fresh"] * 4
        for conn in (survivor, fresh):
            conn.close()
    finally:
        server.stop()


def _command(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)


def test_an_mset_is_answered_while_one_shard_transactions_keep_coming():
    """An MSET's step waits for the decisions of its acceptor's operations
    on its shards before it tries them; WATCHed EXECs on one shard's key
    are such operations, and a stream of them through the same acceptor
    keeps one undecided there nearly all the time.  The MSET must still be
    answered while the stream goes on, within a bounded number of them (it
    was not, until the stream paused, when the step waited for no
    operation to be undecided: tens of thousands of EXECs, or never)."""
    server = start_shardkv(shards=2, acceptors=K)
    hot = KEYS[0].encode()
    batch = (
        _command(b"WATCH", hot) + _command(b"MULTI") + _command(b"SET", hot, b"x") + _command(b"EXEC")
    ) * 20
    streaming = threading.Event()
    streaming.set()
    done = [0]  # transactions answered
    loaders = [raw_on(server.port, 0)[0] for _ in range(16)]

    def load(sock) -> None:
        while streaming.is_set():
            sock.sendall(batch)
            got = b""
            while got.count(b"*1\r\n") + got.count(b"*-1\r\n") < 20:
                data = sock.recv(65536)
                if not data:
                    return
                got += data
            done[0] += 20

    threads = [threading.Thread(target=load, args=(s,), daemon=True) for s in loaders]
    try:
        for t in threads:
            t.start()
        while done[0] < 2000:  # the stream is going
            time.sleep(0.05)
        sock, _ = raw_on(server.port, 0)
        sock.settimeout(120)
        before = done[0]
        sock.sendall(_command(b"MSET", *[x for k in KEYS for x in (k.encode(), b"1")]))
        assert sock.recv(100) == b"+OK\r\n"
        during = done[0] - before
        assert during < 10_000, f"{during} transactions went before the MSET's answer"
        sock.close()
    finally:
        streaming.clear()
        for t in threads:
            t.join(30)
        for s in loaders:
            s.close()
        server.stop()


def _text(reply: object) -> object:
    """A reply as comparable text (an error's as ``-message``)."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, ErrorReply):
        return "-" + str(reply)
    return reply


def _ask(client: RespClient, *args: str) -> object:
    client.send(*args)
    return client.read_reply()


def _exec_while_busy(
    client: RespClient, looper: RespClient, probe: RespClient, key: str, after: Callable[[], None] | None
) -> object:
    """``looper`` runs a script looping on ``key``; once it is past the
    threshold (``probe`` is refused), ``after`` runs, or ``client`` sends
    EXEC.  Returns EXEC's reply (as :func:`_text`), once the script was
    killed."""
    looper.send("EVAL", "while true do end", 1, key)
    deadline = time.monotonic() + 20
    while _ask(probe, "PING") == b"PONG":  # until the script is past the threshold
        assert time.monotonic() < deadline, "the script did not go busy"
    if after is not None:
        after()
    else:
        client.send("EXEC")
    outcome = _text(client.read_reply())
    while _ask(probe, "SCRIPT", "KILL") != b"OK":
        assert time.monotonic() < deadline, "the script was not killed"
    assert str(looper.read_reply()).startswith("ERR Script killed")
    return outcome


def _exec_at_a_busy_script(
    connect: Callable[[], RespClient],
    keys: list[str],
    between: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
) -> list:
    """A transaction (``SET keys[0] new``, ``GET keys[2]``) queued (after
    ``between``), a script looping on ``keys[2]`` that goes past a 100 ms
    busy-reply-threshold, then ``after``.  Its EXEC is sent with the
    queued commands (if ``between``: it waits for its holds), else after
    the threshold (Redis's reading of such an EXEC, which it refuses).
    What the client sees: EXEC's reply, the value it would have set (once
    the script is killed), and a second EXEC's reply (Redis discards the
    transaction)."""
    looper, probe, client = connect(), connect(), connect()
    try:
        probe.command("CONFIG", "SET", "busy-reply-threshold", "100")
        probe.command("SET", keys[0], "old")
        if between is not None:
            between()
        queued = (
            encode_command("MULTI") + encode_command("SET", keys[0], "new") + encode_command("GET", keys[2])
        )
        client.sock.sendall(queued + (encode_command("EXEC") if between is not None else b""))
        assert [client.read_reply() for _ in range(3)] == [b"OK", b"QUEUED", b"QUEUED"]
        outcome = [_exec_while_busy(client, looper, probe, keys[2], after)]
        return [*outcome, _text(_ask(probe, "GET", keys[0])), _text(_ask(client, "EXEC"))]
    finally:
        probe.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        probe.command("DEL", keys[0])
        for c in (looper, probe, client):
            c.close()


@contextlib.contextmanager
def _held_by_acceptor_1(
    server: ServerProcess, fault_file: Path, keys: list[str]
) -> Iterator[tuple[Callable[[], None], Callable[[], None]]]:
    """(hold_shards, go_on): ``hold_shards`` has a client of acceptor 1
    send ``MGET keys[0] keys[1]`` and returns once that acceptor stopped
    at its fault point ``tried``, holding shards 0 and 1; ``go_on`` lets
    it go on (SIGCONT).  Once the block ends, that MGET's reply must be
    ``[old, nil]``; the acceptor goes on even if the block failed."""
    pids = acceptor_pids(server)
    victim, _ = raw_on(server.port, 1)

    def hold_shards() -> None:
        fault_file.write_text("tried")
        victim.sendall(f"MGET {keys[0]} {keys[1]}\r\n".encode())
        try:
            assert _stopped(pids[1], 20), "acceptor 1 did not reach the fault point"
        finally:
            fault_file.write_text("")

    def go_on() -> None:
        os.kill(pids[1], signal.SIGCONT)

    try:
        yield hold_shards, go_on
        victim.settimeout(20)
        assert victim.recv(100) == b"*2\r\n$3\r\nold\r\n$-1\r\n"
    finally:
        os.kill(pids[1], signal.SIGCONT)  # (if the scene failed before)
        victim.close()


def test_an_exec_whose_hold_a_busy_script_refuses_runs_nothing_as_in_redis(server, fault_file, redis_proc):
    """An EXEC routed command by command (writes on one shard) waits for its
    hold on a shard that another acceptor holds (stopped at its fault
    point ``tried``); meanwhile a script on the EXEC's other shard goes
    past busy-reply-threshold, so that shard's hold is refused ``-BUSY``.
    The transaction must run nowhere, as in redis-server 7.0 when the EXEC
    is read past the threshold (sent then): EXECABORT with the -BUSY,
    nothing set, the transaction discarded.  Its SET on the held shard ran
    and its GET got -BUSY inside the array (``[OK, -BUSY]``; found by a
    randomized stress at three acceptors with two looping scripts)."""
    keys = on_shards(0, 1, 2, prefix="busytear")  # the SET's, the stopped MGET's other, the script's
    want = _exec_at_a_busy_script(lambda: RespClient(redis_proc.port, timeout=20), keys)
    assert str(want[0]).startswith("-EXECABORT Transaction discarded because of: BUSY ")
    with _held_by_acceptor_1(server, fault_file, keys) as (hold_shards, go_on):
        got = _exec_at_a_busy_script(lambda: client_on(server.port, 0, timeout=20), keys, hold_shards, go_on)
    assert got == want


def _local_exec_at_a_busy_script(
    connect: Callable[[], RespClient],
    keys: list[str],
    between: Callable[[], None] | None = None,
    after: Callable[[], None] | None = None,
    extra: tuple[tuple[str, ...], ...] = (),
) -> list:
    """:func:`_exec_at_a_busy_script` for a transaction with commands of the
    acceptor's and one over every shard: ``CLIENT SETNAME torn``, ``PUBLISH
    busytear torn`` (a client subscribed), ``SET keys[0] new``, ``KEYS
    busytear*``, ``SELECT 1``.  What the client sees: EXEC's reply, the
    value it would have set, the first message the subscriber hears (a
    marker published after the script was killed, if not the EXEC's), and
    the client's name and database after it.  ``extra``: commands queued
    before the KEYS."""
    looper, probe, client, listener = connect(), connect(), connect(), connect()
    try:
        probe.command("CONFIG", "SET", "busy-reply-threshold", "100")
        probe.command("SET", keys[0], "old")
        listener.send("SUBSCRIBE", "busytear")
        assert listener.read_reply() == [b"subscribe", b"busytear", 1]
        if between is not None:
            between()
        queued = [
            ("CLIENT", "SETNAME", "torn"),
            ("PUBLISH", "busytear", "torn"),
            ("SET", keys[0], "new"),
            *extra,
            ("KEYS", "busytear*"),
            ("SELECT", "1"),
        ]
        transaction = encode_command("MULTI") + b"".join(encode_command(*c) for c in queued)
        client.sock.sendall(transaction + (encode_command("EXEC") if between is not None else b""))
        assert [client.read_reply() for _ in range(len(queued) + 1)] == [b"OK"] + [b"QUEUED"] * len(queued)
        outcome = [_exec_while_busy(client, looper, probe, keys[2], after)]
        probe.command("PUBLISH", "busytear", "marker")
        heard = listener.read_reply()
        fields = dict(f.split("=", 1) for f in _ask(client, "CLIENT", "INFO").decode().split())  # type: ignore[union-attr]
        return [*outcome, _text(_ask(probe, "GET", keys[0])), heard, fields["name"], fields["db"]]
    finally:
        probe.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        probe.command("DEL", keys[0])
        for c in (looper, probe, client, listener):
            c.close()


# Scripts with a SCRIPT LOAD between them (each runs as a command of its
# own, not on one operation's executor), and a CLIENT UNBLOCK of a client
# nobody has (run first).
_SCRIPTS = (
    ("EVAL", "return redis.call('get', KEYS[1])", "1", "busytear-s"),
    ("SCRIPT", "LOAD", "return 2"),
    ("EVAL", "return 1", "0"),
)
_UNBLOCK = (("CLIENT", "UNBLOCK", "999999"),)


@pytest.mark.parametrize("extra", [(), _SCRIPTS, _UNBLOCK], ids=["plain", "scripts", "unblock"])
def test_an_exec_over_every_shard_whose_hold_a_busy_script_refuses_runs_none_of_its_local_commands(
    server, fault_file, redis_proc, extra
):
    """:func:`test_an_exec_whose_hold_a_busy_script_refuses_runs_nothing_as_in_redis`
    for an EXEC with a KEYS and commands of the acceptor's (CLIENT SETNAME,
    PUBLISH, SELECT): redis-server 7.0.15, reading it at the threshold,
    answers EXECABORT and runs none of it; the client keeps no name and
    its database, and the subscriber hears only the later marker.  Routed
    as it was read, those commands ran before its holds were refused: the
    client was named ``torn``, in database 1, and ``torn`` was published."""
    keys = on_shards(0, 1, 2, prefix="busytear")
    want = _local_exec_at_a_busy_script(lambda: RespClient(redis_proc.port, timeout=20), keys, extra=extra)
    assert str(want[0]).startswith("-EXECABORT Transaction discarded because of: BUSY ")
    assert want[1:] == ["old", [b"message", b"busytear", b"marker"], "", "0"]
    with _held_by_acceptor_1(server, fault_file, keys) as (hold_shards, go_on):
        got = _local_exec_at_a_busy_script(
            lambda: client_on(server.port, 0, timeout=20), keys, hold_shards, go_on, extra
        )
    assert got == want


def _monitor_lines(monitor: RespClient, until: bytes) -> list[bytes]:
    """The MONITOR lines up to and with the first that holds ``until``, each
    as its database and arguments (no time, no client address, but ``lua``)."""
    out = []
    while True:
        stamp, _, rest = monitor.read().partition(b" [")
        assert stamp.startswith(b"+"), stamp
        where, _, shown = rest.partition(b"] ")
        db, _, addr = where.partition(b" ")
        out.append(db + b" " + (b"lua " if addr == b"lua" else b"") + shown.rstrip(b"\r\n"))
        if until in shown:
            return out


def _exec_with_scripts_or_an_unblock(
    connect: Callable[[], RespClient],
    keys: list[str],
    unblock: bool,
    connect_blocked: Callable[[], RespClient],
    lists: list[str],
) -> list:
    """A transaction over every shard (KEYS) with commands of the
    acceptor's (CLIENT SETNAME, PUBLISH, SELECT) beside scripts (a SCRIPT
    LOAD between them) or a CLIENT UNBLOCK of a client blocked on one key,
    run with nothing busy.  What is seen: EXEC's reply (the KEYS sorted),
    the MONITOR lines from MULTI to EXEC, the messages a subscriber hears,
    the client's name and database after, and the blocked client's reply
    (``connect_blocked``'s, a BLPOP on ``lists``)."""
    monitor, client, listener, blocked = connect(), connect(), connect(), connect_blocked()
    try:
        for key in keys:
            client.command("SET", key, "v")
        listener.send("SUBSCRIBE", "holdsfirst")
        assert listener.read_reply() == [b"subscribe", b"holdsfirst", 1]
        blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
        blocked.send("BLPOP", *lists, "0")
        # Blocked as CLIENT LIST's ``b`` shows it: its shards found nothing
        # and it waits.  Not ``cmd=blpop``, which shardkv shows once its
        # acceptor sends the BLPOP on: a CLIENT UNBLOCK that comes before
        # the shards' answer finds it not blocked yet and answers 0, as
        # Redis does before the BLPOP runs, and the client waits for good.
        deadline = time.monotonic() + 20
        while b" flags=b " not in client.command("CLIENT", "LIST", "ID", str(blocked_id)):  # type: ignore[operator]
            assert time.monotonic() < deadline, "the client did not block"
        assert monitor.command("MONITOR") == b"OK"
        middle: list[tuple[str, ...]] = [
            ("EVAL", "return redis.call('get', KEYS[1])", "1", keys[0]),
            ("SCRIPT", "LOAD", "return 2"),
            ("EVAL", "return redis.call('get', KEYS[1])", "1", keys[1]),
        ]
        if unblock:
            middle = [("CLIENT", "UNBLOCK", str(blocked_id))]
        queued = [
            ("CLIENT", "SETNAME", "held"),
            ("PUBLISH", "holdsfirst", "first"),
            *middle,
            ("KEYS", "holdsfirst*"),
            ("SELECT", "1"),
            ("PUBLISH", "holdsfirst", "second"),
        ]
        client.sock.sendall(encode_command("MULTI") + b"".join(encode_command(*c) for c in queued))
        assert [client.read_reply() for _ in range(len(queued) + 1)] == [b"OK"] + [b"QUEUED"] * len(queued)
        got = client.command("EXEC")
        assert isinstance(got, list)
        got[-3] = sorted(got[-3])  # (the KEYS)
        lines = _monitor_lines(monitor, b'"EXEC"')
        lines = [line.replace(str(blocked_id).encode(), b"ID") for line in lines]
        heard = [listener.read_reply(), listener.read_reply()]
        fields = dict(f.split("=", 1) for f in _ask(client, "CLIENT", "INFO").decode().split())  # type: ignore[union-attr]
        if not unblock:
            blocked.send("CLIENT", "UNBLOCK", str(blocked_id))  # (itself: a reply of its own)
            client.command("CLIENT", "UNBLOCK", str(blocked_id))
        return [[_text(x) for x in got], lines, heard, fields["name"], fields["db"], blocked.read_reply()]
    finally:
        for c in (monitor, client, listener, blocked):
            c.close()


@pytest.mark.parametrize(
    ("unblock", "elsewhere", "across"),
    [(False, 0, False), (True, 0, False), (True, 1, False), (True, 1, True)],
    ids=["scripts", "unblock", "unblock-other", "unblock-across"],
)
def test_an_exec_over_every_shard_with_scripts_or_an_unblock_runs_as_in_redis(
    server, redis_proc, unblock, elsewhere, across
):
    """Such an EXEC, routed once it holds every shard (with a CLIENT
    UNBLOCK of a client waiting across shards, run first: as one
    operation), as
    redis-server 7.0.15 runs it: its replies, its MONITOR lines (the
    scripts' ``lua`` lines in their places, EXEC's last in database 1),
    the messages in order, the client named ``held`` in database 1 after,
    and the blocked client's null (its CLIENT UNBLOCK's) after the EXEC."""
    keys = on_shards(0, 1, 2, 3, prefix="holdsfirst")
    lists = on_shards(0, 1, prefix="holdsfirst-list")[: 2 if across else 1]

    def real() -> RespClient:
        return RespClient(redis_proc.port, timeout=20)

    want = _exec_with_scripts_or_an_unblock(real, keys, unblock, real, lists)
    got = _exec_with_scripts_or_an_unblock(
        lambda: client_on(server.port, 0, timeout=20),
        keys,
        unblock,
        lambda: client_on(server.port, elsewhere, timeout=20),
        lists,
    )
    assert got == want
