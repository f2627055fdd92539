"""SCRIPT KILL and FUNCTION KILL through two acceptors, one after another,
against redis-server 7.0.15: what one acceptor's kill told the other
(the bus's ``scriptkilled``, ``ShardLink.killed_elsewhere``) must not
outlive the script it was about.  A kill through the other acceptor after
a ``+OK`` finds the script gone (``-NOTBUSY``), but the next script on the
same shard is killed as any; a kill of the other kind still gets Redis's
``-BUSY`` error; with the other acceptor stopped, the kill answers
(the bus answer counted as given) and, once it runs again, its kills
still work.  And a kill read behind a cross-shard step that waits for a
hold (``Holds.after_queued``) is answered when that shard's worker dies,
not left waiting."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from tests.support.acceptors import (
    acceptor_pids,
    client_on,
    every_acceptor_answers,
    flush_through_every_acceptor,
)
from tests.support.placement import key_on
from tests.support.processes import until, wait_busy, worker_pid
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess, start_redis, start_shardkv

pytestmark = pytest.mark.slow

WAIT = 20.0  # seconds for what must happen (a generous bound, not a timing check)
LOOP = "#!lua flags=no-writes\nwhile true do end"
LIBRARY = "#!lua name=killacross\nredis.register_function{function_name='spin', callback=function() while true do end end, flags={'no-writes'}}"


@pytest.fixture(scope="module")
def shared() -> Iterator[list[ServerProcess]]:
    """The module's shardkv of two shards and two acceptors, started by the
    first test that needs it (and again after a test that left it unwell)."""
    held: list[ServerProcess] = []
    yield held
    for server in held:
        server.stop()


@pytest.fixture
def server(request: pytest.FixtureRequest, shared: list[ServerProcess]) -> Iterator[ServerProcess]:
    """The module's shardkv as a new one starts: flushed, the threshold at
    its default, every worker up and served by both acceptors (a test
    before may have killed one: each acceptor gets its new pipe on its own).
    After a test that failed, or left an acceptor not answering PING at
    once (a script left running), it is stopped (the next starts one)."""
    if not shared:
        shared.append(start_shardkv(shards=2, acceptors=2))
    server = shared[0]
    flush_through_every_acceptor(server.port, 2)
    with client_on(server.port, 0, k=2, timeout=WAIT) as c:
        c.command("CONFIG", "SET", "busy-reply-threshold", "5000")
    failed = request.session.testsfailed
    yield server

    if request.session.testsfailed != failed or not every_acceptor_answers(server.port, 2):
        shared.pop().stop()


def ask(c: RespClient, *args: str | int) -> object:
    """One command's reply, an error as its first word."""
    c.send(*args)
    return first_word(c.read_reply())


def first_word(reply: object) -> object:
    return str(reply).split(" ")[0] if isinstance(reply, ErrorReply) else reply


def kills_one_after_another(
    port: int, acceptors: int, pause: Callable[[], Callable[[], None]], stop: Callable[[], Callable[[], None]]
) -> list:
    """Scripts on the shard of ``{b}`` one after another, each killed
    through one acceptor and then through the other; between, the kinds
    mixed (a function killed by SCRIPT KILL, a script by FUNCTION KILL).
    ``pause()`` after each round's first kill's reply (shardkv: stops the
    script's worker until the second kill is sent; returns what resumes
    it; the first kill's ``+OK`` waits for the worker, which stops the
    script), ``stop()`` before the third round's first kill (shardkv: stops
    acceptor 1; returns what resumes it).  The replies, errors as their
    first word (BUSY's whole text)."""
    a = client_on(port, 0, k=acceptors, timeout=WAIT)
    b = client_on(port, 1, k=acceptors, timeout=WAIT)
    caller = client_on(port, 0, k=acceptors, timeout=WAIT)
    got: list = []
    try:
        a.command("CONFIG", "SET", "busy-reply-threshold", "100")
        a.command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
        for first, second in ((a, b), (b, a), (a, b), (b, a)):
            caller.send("EVAL", LOOP, 1, "{b}s")
            wait_busy(lambda first=first: first.command("GET", "{b}x"))
            got.append(ask(first, "SCRIPT", "KILL"))
            resume = pause()
            time.sleep(0.2)  # (the kill's OK is out: a later command, not a timing check)
            second.send("SCRIPT", "KILL")
            resume()
            got.append(first_word(second.read_reply()))
            got.append(first_word(caller.read_reply()))
            # At once the next script on the same shard: the kill through
            # the acceptor that was told of the last one kills it.
            caller.send("EVAL", LOOP, 1, "{b}s")
            wait_busy(lambda second=second: second.command("GET", "{b}x"))
            got.append(ask(second, "SCRIPT", "KILL"))
            got.append(first_word(caller.read_reply()))
        # The kinds mixed.
        caller.send("FCALL", "spin", 1, "{b}s")
        wait_busy(lambda: b.command("GET", "{b}x"))
        b.send("SCRIPT", "KILL")
        got.append(str(b.read_reply()))
        got.append(ask(a, "FUNCTION", "KILL"))
        time.sleep(0.2)
        got.append(ask(b, "SCRIPT", "KILL"))
        got.append(ask(b, "FUNCTION", "KILL"))
        got.append(first_word(caller.read_reply()))
        caller.send("EVAL", LOOP, 1, "{b}s")
        wait_busy(lambda: a.command("GET", "{b}x"))
        a.send("FUNCTION", "KILL")
        got.append(str(a.read_reply()))
        got.append(ask(b, "SCRIPT", "KILL"))
        time.sleep(0.2)
        got.append(ask(a, "FUNCTION", "KILL"))
        got.append(first_word(caller.read_reply()))
        # The other acceptor stopped: the kill answers all the same; once
        # it runs again, it kills the next script (not told NOTBUSY by
        # what it was told of the last one while stopped).
        caller.send("EVAL", LOOP, 1, "{b}s")
        wait_busy(lambda: a.command("GET", "{b}x"))
        resume = stop()
        try:
            got.append(ask(a, "SCRIPT", "KILL"))
            got.append(first_word(caller.read_reply()))
            caller.send("EVAL", LOOP, 1, "{b}s")
            wait_busy(lambda: a.command("GET", "{b}x"))
        finally:
            resume()
        wait_busy(lambda: b.command("GET", "{b}x"))
        got.append(ask(b, "SCRIPT", "KILL"))
        got.append(first_word(caller.read_reply()))
        got.append(ask(b, "SCRIPT", "KILL"))
        got.append(ask(a, "PING"))
        a.command("FUNCTION", "DELETE", "killacross")
        a.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        for c in (a, b, caller):
            c.close()


def test_kills_through_two_acceptors_one_script_after_another(server: ServerProcess) -> None:
    real = start_redis()
    try:
        expected = kills_one_after_another(real.port, 1, lambda: lambda: None, lambda: lambda: None)
    finally:
        real.stop()
    assert expected[:20] == [b"OK", "NOTBUSY", "ERR", b"OK", "ERR"] * 4, expected
    stopped = acceptor_pids(server)[1]
    worker = worker_pid(server, 0)  # {b}'s, of two

    def pause() -> Callable[[], None]:
        os.kill(worker, signal.SIGSTOP)
        return lambda: os.kill(worker, signal.SIGCONT)

    def stop() -> Callable[[], None]:
        os.kill(stopped, signal.SIGSTOP)
        return lambda: os.kill(stopped, signal.SIGCONT)

    got = kills_one_after_another(server.port, 2, pause, stop)
    assert got == expected


@pytest.mark.parametrize("how", ["worker dies", "client gone"])
def test_a_kill_behind_a_step_waiting_for_a_hold_is_answered(server: ServerProcess, how: str) -> None:
    """A script under busy-reply-threshold on shard 0 (through acceptor
    1); through acceptor 0 an MGET over both shards, whose hold on shard 0
    waits for the script, then SCRIPT KILL, which waits for the MGET's
    step to leave (``Holds.after_queued``).  The MGET's client gone, the
    kill still waits (the step leaves all the same); once shard 0's worker
    dies, the step fails and the kill is answered ``-NOTBUSY`` (its script
    went with it), not left waiting."""
    caller = client_on(server.port, 1, k=2, timeout=WAIT)
    stepper = client_on(server.port, 0, k=2, timeout=WAIT)
    killer = client_on(server.port, 0, k=2, timeout=WAIT)
    key, other = key_on(0, "behind", shards=2), key_on(1, "behind", shards=2)
    killer.command("CONFIG", "SET", "busy-reply-threshold", "60000")
    caller.send("EVAL", "while true do end", 1, key)
    time.sleep(0.2)  # (it runs)
    stepper.send("MGET", key, other)
    time.sleep(0.1)  # (the step waits for its hold)
    killer.send("SCRIPT", "KILL")
    if how == "client gone":
        stepper.close()
    killer.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        killer.read_reply()  # held: the script is not past the threshold
    killer.sock.settimeout(WAIT)
    os.kill(worker_pid(server, 0), signal.SIGKILL)
    assert str(killer.read_reply()).startswith("NOTBUSY ")
    if how == "worker dies":
        assert str(stepper.read_reply()).startswith("ERR shard unavailable")
    assert str(caller.read_reply()).startswith("ERR shard unavailable")
    assert until(lambda: ask(killer, "SET", key, "v") == b"OK")
    for c in (caller, stepper, killer):
        c.close()
