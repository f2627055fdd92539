"""SHUTDOWN ABORT (shardkv.acceptor.durability.abort_stops) against stops
Redis could no longer abort: a SHUTDOWN FORCE whose save failed (its shards
now close unsaved, a first AOF base's write killed: Redis's finishShutdown
exits anyway), a SHUTDOWN NOSAVE over a busy script (Redis exits at once)
and a stop with NOW (Redis waits for no replica: it saves and exits).
Opening their shards again would leave a shard whose first AOF base was
killed logging with no manifest (its keys lost at the next start), and a
script whose operation was decided undone running on.  The acceptor and
its client are stand-ins: nothing is sent, nothing stopped."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from shardkv.acceptor import durability

NO_SHUTDOWN = b"-ERR No shutdown in progress.\r\n"


class _Client:
    def __init__(self, server: object) -> None:
        self.server = server
        self.pending: list = []
        self.dirty = False
        self.errors: list[str] = []
        self.replies: list = []

    def reply_error(self, text: str) -> None:
        self.errors.append(text)

    def reply(self, value: object) -> None:
        self.replies.append(value)


class _Loop:
    """Keeps the timers asked for, to run by hand."""

    def __init__(self) -> None:
        self.timers: list = []

    def call_later(self, delay: float, callback: object) -> SimpleNamespace:
        self.timers.append((delay, callback))
        return SimpleNamespace(cancel=lambda: None)


class _Stats:
    """The error counts: ``error`` while the call runs (its failed call is
    counted by it), ``failed`` for one that answers later."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.failed_calls: list[tuple[str, str]] = []
        self.error_mark = 0

    def error(self, message: str) -> None:
        self.errors.append(message)

    def failed(self, name: str, message: str) -> None:
        self.failed_calls.append((name, message))


def _server(*gathers: object) -> SimpleNamespace:
    server = SimpleNamespace(
        signal_stop=None,
        stops_pending=list(gathers),
        stop_decided=False,
        stops_failed=[],
        aborts_waiting=[],
        dirty_clients=[],
        settle_timer=None,
        loop=_Loop(),
        config={"shutdown-timeout": 10},
        stats=_Stats(),
        bus=None,  # one acceptor, unless told
    )
    server.flush_clients_soon = lambda: None
    return server


def _gather(**kw: object) -> SimpleNamespace:
    fields = {
        "left": 1,
        "forced": False,
        "now": False,
        "busy_pids": [],
        "aborted": False,
        "answered": False,
        "slot": None,
        "asked": [],
    }
    return SimpleNamespace(**{**fields, **kw})


@pytest.mark.parametrize("past", [{"forced": True}, {"busy_pids": [12345]}, {"now": True}])
def test_abort_leaves_a_stop_redis_could_not_abort(past):
    gather = _gather(**past)
    server = _server(gather)
    client = _Client(server)
    durability.abort_stops(client)
    assert [slot.data for slot in client.pending] == [NO_SHUTDOWN]
    assert not gather.aborted and server.aborts_waiting == []


def test_abort_cancels_only_the_stops_it_can():
    """A stop still saving is aborted (``+OK`` once every stop is over):
    it has failed, waiting for none of its shards; a forced one beside it
    is left to finish."""
    saving, forced = _gather(left=2), _gather(forced=True)
    server = _server(saving, forced)
    client = _Client(server)
    durability.abort_stops(client)
    assert client.errors == []
    assert (saving.aborted, forced.aborted) == (True, False)
    assert server.stops_pending == [forced] and server.stops_failed == [saving]
    assert [reply.slot for reply, _ in server.aborts_waiting] == client.pending
    assert [body for _, body in server.aborts_waiting] == [b"+OK\r\n"]
    assert client.pending[0].data is None  # (until the stops are over)


def test_the_wait_for_another_stop_is_bounded():
    """A stop whose worker is frozen never ends: past ``shutdown-timeout``
    the aborted stop and its ABORT are answered all the same, no shard is
    opened again (``asked`` is not sent to) while the other stop may still
    succeed, and that is done once it is over."""
    sent: list = []
    link = SimpleNamespace(send=lambda *args, **kw: sent.append(args[1]))
    client = _Client(None)
    saving = _gather(left=2, asked=[link], slot=durability.Slot(client))
    client.pending.append(saving.slot)
    forced = _gather(forced=True)
    server = _server(saving, forced)
    client.server = server
    durability.abort_stops(client)
    [(delay, fire)] = server.loop.timers
    assert delay == 10 and client.pending[1].data is None
    fire()
    assert saving.slot.data == b"-" + durability.SHUTDOWN_FAILED.encode() + b"\r\n"
    assert client.pending[1].data == b"+OK\r\n" and sent == []
    forced.left = 0  # the other stop ends (failed, say)
    server.stops_pending.remove(forced)
    durability._settle_failed(server)
    assert len(sent) == 1 and b"abort" in sent[0]
    assert server.stops_failed == []


def test_an_abort_after_an_abort_finds_nothing_under_way():
    """Redis's cancelShutdown is done at once: a second SHUTDOWN ABORT
    answers ``-ERR No shutdown in progress.`` (once the shards are open
    again, as the first answers ``+OK``)."""
    saving = _gather(left=2)
    server = _server(saving, _gather(forced=True))
    first, second = _Client(server), _Client(server)
    durability.abort_stops(first)
    durability.abort_stops(second)
    assert first.errors == second.errors == []
    assert [body for _, body in server.aborts_waiting] == [b"+OK\r\n", b"-ERR No shutdown in progress.\r\n"]


class _Bus:
    """The bus of an acceptor of several: the questions it asks, the answer
    it gives later."""

    def __init__(self) -> None:
        self.asked: list = []
        self.answers: list = []

    def ask(self, kind: bytes, args: list, done: object) -> None:
        self.asked.append((kind, args, done))

    def later(self) -> object:
        return self.answers.append


@pytest.mark.parametrize("elsewhere", [0, 1])
def test_an_abort_cancels_a_stop_of_another_acceptor(elsewhere):
    """Redis, one process, aborts whatever stop is under way: with several
    acceptors the others are asked (``abort``, with the shutdown-timeout
    they may take), and the ABORT answers ``+OK`` if one of them had a stop
    to cancel, else the error (before, only the acceptor's own stops
    counted)."""
    server = _server()
    server.bus = _Bus()
    client = _Client(server)
    durability.abort_stops(client)
    [(kind, args, done)] = server.bus.asked
    assert (kind, args) == (b"abort", [10])
    assert client.pending[0].data is None  # (until the others answered)
    done([elsewhere])
    assert client.pending[0].data == (b"+OK\r\n" if elsewhere else NO_SHUTDOWN)


def test_another_acceptors_abort_is_answered_once_the_shards_are_open():
    """``abort`` from another acceptor: 1 once this one's aborted stop is
    over (the shards open again), 0 at once when it has none."""
    saving = _gather(left=2)
    server = _server(saving, _gather(forced=True))
    stopper = _Client(server)
    saving.slot = durability.Slot(stopper)  # a SHUTDOWN's
    server.bus = _Bus()
    durability.bus_abort(server, 1, [10])
    assert saving.aborted and server.bus.answers == []
    [(delay, fire)] = server.loop.timers  # (the forced stop is undecided: bounded)
    fire()
    assert server.bus.answers == [1]
    assert saving.slot.data == b"-" + durability.SHUTDOWN_FAILED.encode() + b"\r\n"
    idle = _server()
    idle.bus = _Bus()
    durability.bus_abort(idle, 1, [10])
    assert idle.bus.answers == [0]


@pytest.mark.parametrize("acceptors", [1, 2])
def test_no_shutdown_answered_later_is_still_a_failed_call(acceptors):
    """Redis counts ``-ERR No shutdown in progress.`` as a failed call of
    ``shutdown`` (cmdstat_shutdown failed_calls=1) and once in errorstats.
    Answered while the call runs (one acceptor, nothing under way), the
    call counts it; answered later (the other acceptors' answer, or an
    ABORT after an ABORT, once the shards are open again) it is counted
    then, as a failed call (before, only errorstats counted it: at K=2 a
    plain SHUTDOWN ABORT gave failed_calls=0)."""
    server = _server()
    if acceptors > 1:
        server.bus = _Bus()
    client = _Client(server)
    durability.abort_stops(client)
    if acceptors > 1:
        assert server.stats.errors == [] and client.pending[0].data is None
        [(_, _, done)] = server.bus.asked
        done([0])
        assert server.stats.failed_calls == [("shutdown", durability.NO_SHUTDOWN)]
        assert server.stats.errors == [] and server.stats.error_mark == 1
    else:
        assert server.stats.errors == [durability.NO_SHUTDOWN] and server.stats.failed_calls == []
    assert client.pending[0].data == NO_SHUTDOWN
    # An ABORT after an ABORT: its error comes once the shards are open.
    saving = _gather(left=2)
    server = _server(saving, _gather(forced=True))
    server.control = None  # (a signal's stop: no supervisor to tell here)
    first, second = _Client(server), _Client(server)
    durability.abort_stops(first)
    durability.abort_stops(second)
    [(_, fire)] = server.loop.timers
    fire()
    assert server.stats.errors == []
    assert server.stats.failed_calls == [("shutdown", durability.NO_SHUTDOWN)]


@pytest.mark.parametrize("timeout", [0, 10])
def test_a_stop_begun_with_no_shutdown_timeout_runs_as_with_now(timeout):
    """Redis's prepareForShutdown waits for its replicas only when
    ``shutdown-timeout`` is not 0: with 0 a SHUTDOWN (or a signal's stop)
    runs at once, as with NOW, and SHUTDOWN ABORT finds nothing to cancel.
    Here too, whichever shard still saves (before, ABORT cancelled it, and
    its +OK, bounded by a wait of 0 s, came before the shards were open)."""
    sent: list = []
    link = SimpleNamespace(busy=None, script=None, index=0, up=True, send=lambda *a, **kw: sent.append(a[1]))
    server = _server()
    server.config = {"shutdown-timeout": timeout, "save": ""}
    server.links, server.reloading, server.nacceptors = [link], set(), 1
    stopper, aborter = _Client(server), _Client(server)
    durability._shutdown(stopper, None, b"save", False)
    [gather] = server.stops_pending
    assert gather.now is (timeout == 0) and len(sent) == 1  # (its shard saves)
    durability.abort_stops(aborter)
    if timeout:
        assert gather.aborted and aborter.pending[0].data is None  # (+OK once the shard is open)
    else:
        assert not gather.aborted and aborter.pending[0].data == NO_SHUTDOWN
        assert server.stops_pending == [gather]
