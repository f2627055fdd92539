"""A bug while serving one client costs that client alone.

With ``SHARDKV_FAULT_FILE`` set, shardkv simulates a bug wherever the
bytes :data:`shardkv.runtime.faultpoints.MARKER` pass (see
:mod:`shardkv.runtime.faultpoints`): the acceptor raises while writing a
reply or message that holds them to a client, and in ECHO of them, and
a worker raises in APPEND of them.  Each way such a bug is met (a
shard's reply, a blocking command's wake, a reply known at once, a
MONITOR line, a Pub/Sub message, a tracking invalidation, a command
handler) must close the one client involved, or for a handler answer
its command with an error, and nothing else: meanwhile other clients,
on the same acceptor and on the others, run pipelines of writes and
reads whose replies are checked one by one; at the end no process was
restarted and every acknowledged write is there.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shardkv.protocol import errors
from shardkv.protocol.resp import encode_command
from shardkv.protocol.router import Router
from shardkv.runtime.faultpoints import MARKER
from tests.support.placement import key_on
from tests.support.servers import ServerProcess, start_shardkv

M = MARKER.decode()
WAIT = 20.0  # seconds for what must happen (a generous bound, not a timing check)


def connect(port: int, acceptors: int, index: int, tries: int = 400) -> redis.Redis:
    """A connection that acceptor ``index`` took (its CLIENT ID says so)."""
    for _ in range(tries):
        conn = redis.Redis(port=port, decode_responses=True, socket_timeout=WAIT, retry=Retry(NoBackoff(), 0))
        if (int(conn.client_id()) - 1) % acceptors == index:
            return conn
        conn.close()
        time.sleep(0.02)
    raise AssertionError(f"no connection reached acceptor {index}")


def raw(port: int, acceptors: int, index: int) -> socket.socket:
    """A plain socket on acceptor ``index``."""
    for _ in range(400):
        sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        sock.sendall(b"CLIENT ID\r\n")
        reply = read_some(sock)
        if (int(reply[1:].split(b"\r\n")[0]) - 1) % acceptors == index:
            return sock
        sock.close()
    raise AssertionError(f"no connection reached acceptor {index}")


def read_some(sock: socket.socket) -> bytes:
    data = sock.recv(65536)
    assert data, "the connection closed"
    return data


def read_until(sock: socket.socket, wanted: bytes) -> bytes:
    data = b""
    deadline = time.monotonic() + WAIT
    while wanted not in data:
        assert time.monotonic() < deadline, f"{wanted!r} never came, got {data!r}"
        data += read_some(sock)
    return data


def assert_closed(sock: socket.socket) -> bytes:
    """The server closes the connection, without writing the marker; what
    it wrote before closing."""
    got = b""
    deadline = time.monotonic() + WAIT
    while True:
        assert time.monotonic() < deadline, f"still open, got {got!r}"
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        got += data
    assert MARKER not in got
    sock.close()
    return got


def assert_dropped(conn: redis.Redis, *command: str) -> None:
    with pytest.raises(redis.ConnectionError):
        conn.execute_command(*command)
    conn.close()


def pids(server: ServerProcess) -> set[int]:
    return {p.pid for p in server.processes()}


class Bystanders:
    """Clients on every acceptor that pipeline writes and reads and check
    each reply, until stopped; their acknowledged INCRs are counted."""

    def __init__(self, port: int, acceptors: int, per_acceptor: int = 2) -> None:
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.acked: dict[str, int] = {}
        self.threads = [
            threading.Thread(
                target=self._run, args=(port, acceptors, a, f"by{a}-{i}"), name=f"by{a}-{i}", daemon=True
            )
            for a in range(acceptors)
            for i in range(per_acceptor)
        ]
        for t in self.threads:
            t.start()

    def _run(self, port: int, acceptors: int, index: int, name: str) -> None:
        conn = connect(port, acceptors, index)
        counter, n = f"{{{name}}}:n", 0
        try:
            while not self.stop.is_set():
                with conn.pipeline(transaction=False) as p:
                    for j in range(8):
                        p.set(f"{name}:{j}", f"{n}-{j}").get(f"{name}:{j}").incr(counter)
                    replies = p.execute()
                for j in range(8):
                    if replies[3 * j : 3 * j + 3] != [True, f"{n}-{j}", n * 8 + j + 1]:
                        self.problems.append(f"{name}: {replies[3 * j : 3 * j + 3]} at {n}/{j}")
                        return
                n += 1
                self.acked[counter] = n * 8
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.problems.append(f"{name}: {e!r}")
        finally:
            conn.close()

    def wait_for_a_round(self) -> None:
        """Wait until every bystander has run a whole round begun after this
        call (two more acknowledged rounds), or one of them has a problem."""
        counters = [f"{{{t.name}}}:n" for t in self.threads]
        floor = {c: self.acked.get(c, 0) + 8 for c in counters}
        deadline = time.monotonic() + WAIT
        while not self.problems and any(self.acked.get(c, 0) <= floor[c] for c in counters):
            assert time.monotonic() < deadline, f"the bystanders stalled: {self.acked}"
            time.sleep(0.01)

    def finish(self) -> dict[str, int]:
        self.stop.set()
        for t in self.threads:
            t.join(WAIT)
        return self.acked

    def unharmed(self) -> dict[str, int]:
        """Once every bystander has run a whole round more (after the last
        fault), stop them: none had a problem, each had writes acknowledged,
        and these are its counts."""
        self.wait_for_a_round()
        acked = self.finish()
        assert not self.problems
        assert len(acked) == len(self.threads) and all(acked.values())
        return acked


@pytest.fixture(scope="module")
def started() -> Iterator[dict[int, ServerProcess]]:
    """The module's shardkv (with the fault points on) by acceptor count."""
    servers: dict[int, ServerProcess] = {}
    yield servers
    for proc in servers.values():
        proc.stop()


@pytest.fixture(params=[1, 2], ids=["K1", "K2"])
def server(request, started):
    """A shardkv of two shards with the fault points on, shared by the
    tests of one acceptor count: started by the first, flushed before
    each (the tests use keys of their own and count log lines with ``>=``
    or ``in``; no test restarts a process), stopped after a test that
    failed."""
    k = request.param
    if k not in started:
        started[k] = start_shardkv(shards=2, acceptors=k, env=dict(os.environ, SHARDKV_FAULT_FILE=os.devnull))
    proc = started[k]
    with redis.Redis(port=proc.port, socket_timeout=WAIT) as c:
        c.flushall()
    failed = request.session.testsfailed
    yield proc
    if request.session.testsfailed != failed:
        started.pop(k).stop()


@pytest.mark.slow
def test_a_bug_in_one_clients_reply_path_costs_that_client_alone(server):
    port, k = server.port, server.acceptors
    before = pids(server)
    bystanders = Bystanders(port, k)
    there = k - 1  # the acceptor the victims' partners use (the other one at K=2)
    admin = connect(port, k, there)
    try:
        bystanders.wait_for_a_round()  # they are all running before the first fault
        # A shard's reply holds the marker: GET of a key that does.
        admin.set("fault:key", M)
        assert_dropped(connect(port, k, 0), "GET", "fault:key")
        # In the middle of a pipeline: the replies before it are written or
        # not, the client is closed either way, and its commands were run.
        sock = raw(port, k, 0)
        sock.sendall(b"SET fault:a 1\r\nGET fault:key\r\nSET fault:b 2\r\n")
        assert_closed(sock)
        # A reply known at once (the client's own read path).
        assert_dropped(connect(port, k, 0), "PING", M)
        # A blocking command's wake, pushed through the other acceptor.
        sock = raw(port, k, 0)
        sock.sendall(b"BLPOP fault:list 0\r\n")
        deadline = time.monotonic() + WAIT
        while not any("cmd=blpop" in line for line in admin.execute_command("CLIENT", "LIST").splitlines()):
            assert time.monotonic() < deadline, "BLPOP never blocked"
            time.sleep(0.02)
        assert admin.rpush("fault:list", M) == 1
        assert_closed(sock)
        # A MONITOR line.
        monitor = raw(port, k, 0)
        monitor.sendall(b"MONITOR\r\n")
        read_until(monitor, b"+OK\r\n")
        admin.set("fault:seen", M)
        assert_closed(monitor)
        # A Pub/Sub message: its subscriber goes, the others stay.
        victim, other = raw(port, k, 0), raw(port, k, 0)
        victim.sendall(b"SUBSCRIBE fault:ch\r\n")
        other.sendall(b"SUBSCRIBE fault:ok\r\n")
        read_until(victim, b"fault:ch\r\n:1\r\n")
        read_until(other, b"fault:ok\r\n:1\r\n")
        assert admin.publish("fault:ch", M) == 1
        assert_closed(victim)
        assert admin.publish("fault:ok", "hello") == 1
        read_until(other, b"hello\r\n")
        other.close()
        # An invalidation of client-side caching (RESP3 push): its key holds the marker.
        tracker = raw(port, k, 0)
        tracker.sendall(b"HELLO 3\r\n")
        read_until(tracker, b"modules")
        tracker.sendall(b"CLIENT TRACKING on\r\nGET %s:cached\r\n" % MARKER)
        read_until(tracker, b"+OK\r\n_\r\n")
        admin.set(f"{M}:cached", "1")
        assert_closed(tracker)
        # The same acceptor serves new clients, and the writes of the
        # closed ones were run.
        fresh = connect(port, k, 0)
        assert fresh.mget("fault:a", "fault:b") == ["1", "2"]
        assert fresh.strlen("fault:seen") == len(M)  # (its value would close this client too)
        assert fresh.llen("fault:list") == 0
        fresh.close()
        acked = bystanders.unharmed()  # all still running after the last fault
        for counter, n in acked.items():
            assert int(admin.get(counter)) == n
    finally:
        bystanders.finish()
        admin.close()
    assert pids(server) == before  # no process was restarted
    log = server.output()
    assert "restarting it" not in log
    assert log.count("after an internal error while") >= 7
    assert "InjectedFault" in log  # with the traceback


@pytest.mark.slow
def test_a_bug_in_a_command_handler_answers_an_error_and_the_process_goes_on(server):
    port, k = server.port, server.acceptors
    before = pids(server)
    conn = connect(port, k, 0)
    try:
        conn.set("fault:append", "kept")
        with pytest.raises(redis.ResponseError, match="^internal error while running 'append'$"):
            conn.append("fault:append", M)
        assert conn.get("fault:append") == "kept"  # nothing was changed
        assert conn.append("fault:append", "!") == 5
        with conn.pipeline(transaction=True) as p:
            p.set("fault:tx", "1").append("fault:tx", M).incr("fault:tx")
            replies = p.execute(raise_on_error=False)
        assert replies[0] is True and isinstance(replies[1], redis.ResponseError) and replies[2] == 2
        # The same in the acceptor's own handlers.
        with pytest.raises(redis.ResponseError, match="^internal error while running 'echo'$"):
            conn.echo(M)
        assert conn.echo("still here") == "still here"
        assert conn.ping()
    finally:
        conn.close()
    assert pids(server) == before
    log = server.output()
    assert "command b'APPEND' failed" in log
    assert "command b'ECHO' failed" in log


@pytest.mark.slow
def test_a_bug_building_a_cross_shard_reply_still_decides_it_and_its_shards_go_on(server):
    """The acceptor raises while it builds the reply of a cross-shard
    operation with the marker among its arguments: the operation is
    decided all the same, so its shards resume.  Committed (its writes
    are in), its client's connection closes rather than say with an error
    that they are not; undone, or having written nothing, its client gets
    an error naming the command as Redis's errors name it (lower
    case), and goes on.  The
    bystanders, whose keys are on the same shards, notice nothing."""
    port, k = server.port, server.acceptors
    before = pids(server)
    other = key_on(1 - Router(2).shard_of(MARKER), "fault:other", shards=2)
    bystanders = Bystanders(port, k)
    conn = connect(port, k, 0)
    try:
        bystanders.wait_for_a_round()
        conn.set(M, "a")

        def fails(name: str, *command: str) -> None:
            with pytest.raises(redis.ResponseError, match=f"^internal error while running '{name}'$"):
                conn.execute_command(*command)

        def committed(*command: str) -> redis.Redis:
            assert_dropped(conn, *command)
            return connect(port, k, 0)

        conn = committed("RENAME", M, other)  # parked: run, then prepared on the other shard
        assert conn.get(other) == "a" and conn.exists(M) == 0
        conn = committed("MSET", M, "b", other, "c")  # a write fan-out
        assert conn.mget(M, other) == ["b", "c"]
        # Pipelined: the replies of the commands before it come, then the
        # close in its place, and no reply after it (the SET after it was
        # sent to its shard before the MSET's answers came: it may have run,
        # as for any connection lost before its reply).
        sock = raw(port, k, 0)
        mset = encode_command([b"MSET", MARKER, b"p", other.encode(), b"q"])
        sock.sendall(b"SET fault:before 1\r\nPING\r\n" + mset + b"SET fault:after 1\r\n")
        assert assert_closed(sock) == b"+OK\r\n+PONG\r\n"
        assert conn.mget(M, other, "fault:before") == ["p", "q", "1"]
        fails("msetnx", "MSETNX", M, "x", other, "y")  # voted no: undone
        assert conn.mget(M, other) == ["p", "q"]
        with conn.pipeline(transaction=True) as p:
            p.set(M, "d").set(other, "e")
            with pytest.raises(redis.ConnectionError):
                p.execute()
        conn.close()
        conn = connect(port, k, 0)
        assert conn.mget(M, other) == ["d", "e"]
        with conn.pipeline(transaction=True) as p:  # WATCHed, reads only: it wrote nothing
            p.watch(M, other)
            p.multi()
            p.get(M).get(other)
            with pytest.raises(redis.ResponseError, match="^internal error while running 'exec'$"):
                p.execute()
        conn = committed("DEL", M, other)
        assert conn.exists(M, other) == 0
        assert conn.ping()
        bystanders.unharmed()
    finally:
        bystanders.finish()
        conn.close()
    assert pids(server) == before  # no process was restarted
    log = server.output()
    assert "restarting it" not in log
    assert log.count("InjectedFault: building a cross-shard operation's reply") == 7  # tracebacks


@pytest.mark.slow
def test_a_bug_answering_another_acceptors_question_answers_the_asker_with_an_error():
    """K=2: an acceptor whose handler of a bus question raises (PUBSUB,
    CLIENT KILL with the marker among their arguments) answers the asker
    at once with an error, which the asker's client gets as its reply;
    the same questions without the marker are answered whole, the
    bystanders on both acceptors notice nothing, and no process restarts."""
    server = start_shardkv(shards=2, acceptors=2, env=dict(os.environ, SHARDKV_FAULT_FILE=os.devnull))
    port = server.port
    try:
        before = pids(server)
        bystanders = Bystanders(port, 2)
        bystanders.wait_for_a_round()
        subscribers = [raw(port, 2, a) for a in (0, 1)]
        for sock in subscribers:
            sock.sendall(b"SUBSCRIBE fault:news\r\n")
            read_until(sock, b"fault:news\r\n:1\r\n")
        try:
            for asker in (0, 1):
                other = 1 - asker
                conn = connect(port, 2, asker)
                for command, kind in (
                    (("PUBSUB", "NUMSUB", M, "fault:news"), "pubsub"),
                    (("PUBSUB", "CHANNELS", M), "pubsub"),
                    (("CLIENT", "KILL", "ADDR", M), "kill"),
                    (("CLIENT", "KILL", M), "kill"),
                ):
                    expected = errors.BUS_ANSWER_FAILED.removeprefix("ERR ") % (other, kind)
                    with pytest.raises(redis.ResponseError, match=f"^{re.escape(expected)}$"):
                        conn.execute_command(*command)
                # Both acceptors' subscribers are counted again, on the same connection.
                assert conn.execute_command("PUBSUB", "NUMSUB", "fault:news") == ["fault:news", 2]
                assert conn.execute_command("CLIENT", "KILL", "ADDR", "1.2.3.4:5") == 0
                assert conn.publish("fault:news", "hello") == 2
                for sock in subscribers:
                    read_until(sock, b"hello\r\n")
                conn.close()
            bystanders.unharmed()
        finally:
            bystanders.finish()
            for sock in subscribers:
                sock.close()
        assert pids(server) == before
        log = server.output()
        assert "restarting it" not in log
        assert log.count("InjectedFault: a question whose argument is the fault marker") == 8  # tracebacks
    finally:
        server.stop()
