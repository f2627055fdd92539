"""What a shard pops for a client blocked across shards reaches it once, or
goes back: nothing pushed is lost or duplicated.

A client blocked on keys of two shards (``BLPOP A B 0``) is served by the
shard whose key a push made ready, in its turn, as Redis serves it when
the push ends (``__bpop``, see ``shardkv.worker.blocking``), and waits in
place for its acceptor's verdict: taken, the client gets it; not, it goes
back unseen.  Two shards may serve the client at once (one gives back),
and the client may time out, be unblocked, disconnect or be killed at any
moment of that.
Randomized rounds (a fixed number, a few seconds in all, the seed in the
failure) of pushes to both shards' lists and sorted sets from two
connections, through either acceptor, while such clients come and go;
then every element pushed is either in some client's reply (a client that
went away reads what reached it before the end of its connection) or
still in its key, exactly once.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator

import psutil
import pytest

from tests.support.acceptors import acceptor_pids, client_on
from tests.support.placement import key_on
from tests.support.processes import worker_pid
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess, start_shardkv
from tests.support.waits import wait_blocked

A, B = key_on(0, "hand", shards=2), key_on(1, "hand", shards=2)
ZA, ZB = key_on(0, "zhand", shards=2), key_on(1, "zhand", shards=2)
ROUNDS = 10
WAITERS = 8
PUSHES = 30
WAIT = 10.0


@pytest.fixture(scope="module", params=[1, 2], ids=["K=1", "K=2"])
def server(request) -> Iterator[ServerProcess]:
    proc = start_shardkv(shards=2, acceptors=request.param)
    yield proc
    proc.stop()


def _blocking(rng: random.Random) -> tuple:
    timeout = rng.choice(["0", "0", "0.05", "0.3"])
    return rng.choice(
        [
            ("BLPOP", B, A, timeout),
            ("BRPOP", A, B, timeout),
            ("BLMPOP", timeout, 2, A, B, "LEFT", "COUNT", 2),
            ("BLMPOP", timeout, 2, B, A, "RIGHT", "COUNT", 3),
            ("BZPOPMIN", ZA, ZB, timeout),
            ("BZPOPMAX", ZB, ZA, timeout),
            ("BZMPOP", timeout, 2, ZB, ZA, "MIN", "COUNT", 2),
        ]
    )


def _taken(reply: object) -> list[bytes]:
    """The elements (members) a blocking pop's reply carries."""
    if not isinstance(reply, list):
        return []  # a null (timed out, unblocked) or an error
    if len(reply) == 3:  # BZPOPMIN: key, member, score
        return [reply[1]]
    rest = reply[1]
    if isinstance(rest, list):  # BLMPOP / BZMPOP
        return [x[0] if isinstance(x, list) else x for x in rest]
    return [rest]  # BLPOP: key, element


def _reply_or_end(c: RespClient) -> object:
    """The next reply of a waiter, or None once its connection ended."""
    try:
        return c.read_reply()
    except (ConnectionError, OSError):
        return None


def _round(port: int, k: int, rng: random.Random, n: int) -> None:
    pushers = [client_on(port, i, k=k) for i in range(2)]
    waiters: list[tuple[RespClient, int]] = []
    fates: dict[int, str] = {}
    pushed: list[bytes] = []
    try:
        for _ in range(WAITERS):
            c = client_on(port, rng.randrange(2), k=k)
            waiters.append((c, int(c.command("CLIENT", "ID"))))  # type: ignore[arg-type]
            c.send(*_blocking(rng))
        sent = [0, 0]
        for i in range(PUSHES):
            p = rng.randrange(2)
            what = rng.randrange(4)
            items = [b"r%d-%d-%d" % (n, i, j) for j in range(rng.randint(1, 3))]
            pushed += items
            if what < 2:
                pushers[p].send(rng.choice(["RPUSH", "LPUSH"]), A if what == 0 else B, *items)
            else:
                pairs = [x for j, item in enumerate(items) for x in (rng.randint(0, 5), item)]
                pushers[p].send("ZADD", ZA if what == 2 else ZB, *pairs)
            sent[p] += 1
            if rng.random() < 0.3:
                w = rng.randrange(WAITERS)
                c, cid = waiters[w]
                if w not in fates:
                    fate = rng.choice(["unblock", "kill", "half-close"])
                    fates[w] = fate
                    if fate == "unblock":
                        pushers[p].send("CLIENT", "UNBLOCK", cid)
                        sent[p] += 1
                    elif fate == "kill":
                        pushers[p].send("CLIENT", "KILL", "ID", cid)
                        sent[p] += 1
                    else:
                        c.sock.shutdown(socket.SHUT_WR)
            if rng.random() < 0.2:
                time.sleep(0.002)
        for p, count in enumerate(sent):
            for _ in range(count):
                pushers[p].read_reply()
        got: list[bytes] = []
        for w, (c, cid) in enumerate(waiters):
            if w not in fates:  # still blocked, or served: its reply either way
                pushers[0].command("CLIENT", "UNBLOCK", cid)
            got += _taken(_reply_or_end(c))
            if fates.get(w) in ("kill", "half-close"):
                while (reply := _reply_or_end(c)) is not None:
                    got += _taken(reply)  # (nothing more is expected)
        assert not [x for x, times in Counter(got).items() if times > 1], f"round {n}: delivered twice"
        # What a taken pop served a client that went away goes back soon.
        deadline = time.monotonic() + WAIT
        while True:
            left = pushers[0].command("LRANGE", A, 0, -1) + pushers[0].command("LRANGE", B, 0, -1)  # type: ignore[operator]
            left += pushers[0].command("ZRANGE", ZA, 0, -1) + pushers[0].command("ZRANGE", ZB, 0, -1)  # type: ignore[operator]
            if Counter(got + left) == Counter(pushed) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        lost = Counter(pushed) - Counter(got + left)
        twice = Counter(got + left) - Counter(pushed)
        assert not lost and not twice, f"round {n}: lost {sorted(lost)}, twice {sorted(twice)}"
        pushers[0].command("FLUSHALL")
    finally:
        for c in pushers:
            c.close()
        for c, _ in waiters:
            c.close()


def test_nothing_popped_for_a_client_across_shards_is_lost_or_duplicated(server) -> None:
    seed = int(os.environ.get("SHARDKV_TEST_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    for n in range(ROUNDS):
        try:
            _round(server.port, server.acceptors, rng, n)
        except (AssertionError, ErrorReply) as e:
            raise AssertionError(f"seed {seed}: {e}") from e


def test_a_stopped_acceptor_costs_its_shard_one_verdict_wait_not_one_per_waiter() -> None:
    """Clients blocked across shards through an acceptor that is stopped
    (SIGSTOP, alive): a push serving several of them makes the shard wait
    for a verdict once (``VERDICT_WAIT_S``), not once per client, while
    every other client of that shard waits; once resumed, each of them
    has an element and none is lost.  (Before, a push of five elements
    for five such clients held the shard five seconds.)"""
    proc = start_shardkv(shards=2, acceptors=2)
    stopped = acceptor_pids(proc)[1]
    waiters = [client_on(proc.port, 1, k=2) for _ in range(5)]
    writer = client_on(proc.port, 0, k=2)
    resumed = False
    try:
        for c in waiters:
            c.send("BLPOP", B, A, 0)
        deadline = time.monotonic() + WAIT
        while b"blocked_clients:5" not in writer.command("INFO", "clients"):  # type: ignore[operator]
            assert time.monotonic() < deadline, "the clients never blocked"
            time.sleep(0.01)
        os.kill(stopped, signal.SIGSTOP)
        try:
            began = time.monotonic()
            writer.command("RPUSH", A, "a", "b", "c", "d", "e")
            writer.command("GET", key_on(0, "other", shards=2))  # a command of that shard
            took = time.monotonic() - began
        finally:
            os.kill(stopped, signal.SIGCONT)
            resumed = True
        got = sorted(_taken(c.read_reply())[0] for c in waiters)
        assert got == [b"a", b"b", b"c", b"d", b"e"]
        assert writer.command("LLEN", A) == 0
        assert took < 3.0, f"the shard waited {took:.1f} s for a stopped acceptor's verdicts"
    finally:
        if not resumed:
            os.kill(stopped, signal.SIGCONT)
        for c in [*waiters, writer]:
            c.close()
        proc.stop()


def test_a_served_wait_whose_acceptor_dies_gives_the_element_back() -> None:
    """The acceptor of a client blocked across shards is stopped, then
    killed while the shard that served its client waits for the verdict:
    the shard resumes (the pipe lost: at once, within VERDICT_WAIT_S at
    worst) and the element is back in its key, seen by the next command."""
    proc = start_shardkv(shards=2, acceptors=2)
    victim = acceptor_pids(proc)[1]
    waiter = client_on(proc.port, 1, k=2)
    writer = client_on(proc.port, 0, k=2)
    try:
        waiter.send("BLPOP", B, A, 0)
        wait_blocked(writer, 1)
        os.kill(victim, signal.SIGSTOP)
        writer.send("RPUSH", A, "x")
        time.sleep(0.2)  # the shard serves the client, and waits for the verdict
        os.kill(victim, signal.SIGKILL)  # (it ends stopped as it is: no SIGCONT, which could find it reaped)
        began = time.monotonic()
        assert writer.read_reply() == 1
        assert writer.command("LRANGE", A, 0, -1) == [b"x"]
        assert time.monotonic() - began < 2.0
        assert _reply_or_end(waiter) is None  # its connection ended with its acceptor
    finally:
        for c in [waiter, writer]:
            c.close()
        proc.stop()


def test_a_worker_killed_between_verdict_and_log_neither_delivers_nor_keeps_twice(tmp_path) -> None:
    """The shard that popped for a client blocked across shards is killed
    (SIGKILL) once its acceptor said take, before it logged the pop (fault
    point ``verdict``): the restarted shard loads the element from its
    AOF, and the client, which got no reply of it, does not have it: it is
    in exactly one place."""
    fault_file = tmp_path / "faultpoints"
    fault_file.write_text("")
    env = dict(os.environ, SHARDKV_FAULT_FILE=str(fault_file))
    proc = start_shardkv("--appendonly", "yes", "--appendfsync", "always", shards=2, acceptors=1, env=env)
    waiter = client_on(proc.port, 0, k=1)
    writer = client_on(proc.port, 0, k=1)
    try:
        waiter.send("BLPOP", B, A, 0)
        wait_blocked(writer, 1)
        deadline = time.monotonic() + WAIT
        victim = worker_pid(proc, 0)  # A's shard
        fault_file.write_text("verdict")
        writer.send("RPUSH", A, "x")
        while psutil.Process(victim).status() != psutil.STATUS_STOPPED:
            assert time.monotonic() < deadline, "the shard never reached its verdict"
            time.sleep(0.01)
        fault_file.write_text("")
        os.kill(victim, signal.SIGKILL)
        try:
            writer.read_reply()  # 1, or the error of a shard gone
        except ErrorReply:
            pass
        got = _taken(_reply_or_end(waiter))
        while True:  # the restarted shard
            try:
                left = writer.command("LRANGE", A, 0, -1)
                break
            except ErrorReply:
                assert time.monotonic() < deadline + WAIT, "the shard never came back"
                time.sleep(0.05)
        assert Counter(got + left) == Counter([b"x"]), f"delivered {got}, left {left}"  # type: ignore[operator]
    finally:
        for c in [waiter, writer]:
            c.close()
        proc.stop()
