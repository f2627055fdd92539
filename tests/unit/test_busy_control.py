"""The acceptor's own messages to a worker (``__events``, ``__pause``) are
never refused with ``-BUSY``.

While a worker runs a script past busy-reply-threshold, the acceptor
answers ``-BUSY`` for the clients' commands it would send there (as Redis
does); but a message of its own, such as the keyspace-event mask
(:func:`shardkv.acceptor.notifications.update_mask`) or the end of a
CLIENT PAUSE, must reach the worker all the same, or the worker goes on
with what it was told before.  It is queued, and the worker runs it, in
order, once the script ends.  In one process, with a real
:class:`~shardkv.acceptor.shardlink.ShardLink` and a fake pipe.
"""

from __future__ import annotations

import socket
import time

import pytest

from shardkv.acceptor import notifications, scripting, shardlink
from shardkv.acceptor.shardlink import ShardLink
from shardkv.protocol import errors, wire
from shardkv.protocol.resp import encode_command, encode_error
from shardkv.protocol.wire import FRAME, Verb
from tests.unit.test_acceptor_dispatch import MemoryTransport, build, replies, send
from tests.unit.test_holds import build_k, connect


class Sink:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def deliver(self, body: bytes) -> None:
        self.bodies.append(body)


def frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload)) + payload


def busy_link(index: int = 0) -> tuple[ShardLink, MemoryTransport]:
    """A link whose worker has said a script is past busy-reply-threshold."""
    link = ShardLink(index, lambda link: None, lambda: None)
    transport = MemoryTransport()
    link.attached(transport)  # type: ignore[arg-type]
    link.data_received(
        frame(wire.encode_script_state(True, 1234, False, True, (0, {}, {}), b"sha", b"eval", 0.0, 0, 0))
    )
    assert link.busy is not None and link in shardlink.BUSY_LINKS
    return link, transport


def sent_commands(transport: MemoryTransport) -> list[bytes]:
    return [data for data in transport.written if data[4:5] == b"B"]


def test_a_clients_command_gets_busy_but_a_control_message_is_queued_and_answered_in_order() -> None:
    link, transport = busy_link()
    try:
        client, control = Sink(), Sink()
        link.send(wire.entry_header(0), encode_command([b"GET", b"k"]), client)
        assert client.bodies == [encode_error(errors.BUSY)]
        mask = encode_command([Verb.EVENTS, b"4"])
        link.send_control(mask, control)
        assert control.bodies == []  # not refused: it waits for the worker
        link.flush()
        (batch,) = sent_commands(transport)
        assert batch.endswith(mask)
        # The script ends, then the worker answers what it read meanwhile.
        link.data_received(
            frame(wire.encode_script_state(False, 1234, False, True))
            + frame(wire.encode_replies([b"+OK\r\n"]))
        )
        assert control.bodies == [b"+OK\r\n"] and link.busy is None and not link.fifo
    finally:
        shardlink.BUSY_LINKS.clear()


def test_a_pipe_that_is_down_still_refuses_a_control_message() -> None:
    link = ShardLink(0, lambda link: None, lambda: None)
    sink = Sink()
    link.send_control(encode_command([Verb.EVENTS, b"4"]), sink)
    assert sink.bodies == [encode_error(errors.SHARD_UNAVAILABLE)]  # on_attach says it again


def test_the_event_mask_reaches_a_busy_shard_and_its_change_waits_for_the_answer() -> None:
    acceptor, _ = build(2)
    busy, _ = busy_link(0)
    free = ShardLink(1, lambda link: None, lambda: None)
    free.attached(MemoryTransport())  # type: ignore[arg-type]
    links = [busy, free]
    acceptor.links = links  # type: ignore[assignment]
    state = notifications.STATE
    saved = (state.mask, list(state.hearing), state.applying)
    try:
        state.mask = 0
        state.hearing = [0, 1]
        waited = []
        assert notifications.update_mask(acceptor)  # the mask grew
        notifications.when_applied(lambda: waited.append(True))
        body = encode_command([Verb.EVENTS, b"%d" % state.mask])
        for link in links:
            link.flush()
            assert link.fifo, "every shard, the busy one too, was sent the mask"
            assert link.transport.written[-1].endswith(body)  # type: ignore[union-attr]
        links[1].data_received(frame(wire.encode_replies([b"+OK\r\n"])))
        assert not waited  # the busy shard has not run it yet
        links[0].data_received(
            frame(wire.encode_script_state(False, 1234, False, True))
            + frame(wire.encode_replies([b"+OK\r\n"]))
        )
        assert waited == [True]
    finally:
        state.mask, state.hearing, state.applying = saved
        shardlink.BUSY_LINKS.clear()


def test_with_several_acceptors_a_control_message_is_not_held_back_by_a_step() -> None:
    """At K > 1 a client's command is a step whose entries are captured
    for holds; a hold of a busy shard is refused, so a control message
    sent during a step goes at once instead of with the step."""
    acceptor, links = build_k(2)
    client, _ = connect(acceptor)
    holds = acceptor.holds
    holds.begin()
    try:
        for link in links:
            link.send_control(encode_command([Verb.PAUSE, b"0"]), Sink())
            link.send(wire.entry_header(0), encode_command([b"GET", b"k"]), Sink())
    finally:
        holds.end(client)
    # The control messages went out; the step's two parts wait for holds
    # (each shard is tried).
    for link in links:
        assert link.bodies() == [encode_command([Verb.PAUSE, b"0"])]
        assert link.tried == 1


def test_a_busy_report_says_where_the_scripts_reply_waits_in_its_acceptors_queue() -> None:
    """The acceptor tells the script's own client by its place: the
    replies its pipe still awaits before the script's, those held back from
    an earlier batch and the batch's own before it (shardkv.acceptor.scriptcaller)."""
    from shardkv.worker.clock import FakeClock
    from shardkv.worker.shard import Shard

    shard = Shard(0, 1, FakeClock())
    shard.keyspace.runtime.extra["busy-reply-threshold"] = "1"
    reports: list[bytes] = []
    shard.send_state = reports.append
    shard.held = [wire.encode_replies([b"+OK\r\n", b"+OK\r\n"]), b"E(events: no replies)"]
    script = b"local i = 0 while i < 3000000 do i = i + 1 end return i"
    entries = [[b"SET", b"a", b"1"], [b"GET", b"a"], [b"EVAL", script, b"0"], [b"GET", b"a"]]
    payload = wire.encode_batch([item for args in entries for item in (0, args)])
    replies = wire.decode_replies(shard.run_batch(payload))
    assert replies == [b"+OK\r\n", b"$1\r\n1\r\n", b":3000000\r\n", b"$1\r\n1\r\n"]
    states = [wire.decode_script_state(r) for r in reports if r[:1] == b"S"]
    assert states[0][0] is True  # busy
    assert states[0][5] == (0, 4)  # pipe 0; 2 held + the SET's and the GET's
    assert states[-1][0] is False
    assert shard.replies_ahead() == -1  # between batches


def _kill_through(monkeypatch, reports: list[bytes], kill: bytes = b"SCRIPT") -> bytes:
    """SCRIPT KILL (``kill`` KILL) read while shard 0's script, an EVAL, is
    busy (not written, as its last report says), then the worker's
    ``reports``: the kill's reply."""
    monkeypatch.setattr(scripting.os, "kill", lambda pid, sig: None)
    acceptor, _ = build(2)
    busy, _ = busy_link(0)
    free = ShardLink(1, lambda link: None, lambda: None)
    free.attached(MemoryTransport())  # type: ignore[arg-type]
    acceptor.links = [busy, free]  # type: ignore[assignment]
    try:
        client, transport = connect(acceptor)
        send(client, [kill, b"KILL"])
        assert replies(acceptor, transport) == b""  # its worker decides
        for report in reports:
            busy.data_received(frame(report))
        return replies(acceptor, transport)
    finally:
        shardlink.BUSY_LINKS.clear()


def test_a_kill_is_answered_as_the_worker_decided(monkeypatch) -> None:
    """The acceptor signals the worker and waits for what it decided in
    the script's hook, atomically with the script's writes: a script that
    wrote after its last report was not stopped, and its kill answered
    ``+OK`` (redis-server: ``-UNKILLABLE``, tests/compat/test_busy_kill_races.py)."""
    stopped = wire.encode_script_state(False, 1234, False, True, killed_at=time.monotonic() + 1)
    assert _kill_through(monkeypatch, [stopped]) == b"+OK\r\n"
    wrote = wire.encode_script_state(True, 1234, True, True, (0, {}, {}), b"sha", b"eval", 0.0, 0, 0)
    assert _kill_through(monkeypatch, [wrote]) == encode_error(errors.UNKILLABLE)
    ended = wire.encode_script_state(False, 1234, False, True)
    assert _kill_through(monkeypatch, [ended]) == encode_error(errors.NOTBUSY)


def test_a_kill_of_the_other_kind_waits_for_a_report_made_after_it(monkeypatch) -> None:
    """FUNCTION KILL of a busy EVAL asks the worker to report the script
    (wire.REPORT_SIGNAL).  A report made before the signal, in flight (an
    earlier kill's: one through another acceptor, or another client's),
    says nothing of a write since; that kill took it and answered the
    other kind's ``-BUSY``, where Redis, reading it after the write,
    answers ``-UNKILLABLE``.  The report made after the signal decides."""
    before = time.monotonic() - 1
    details = ((0, {}, {}), b"sha", b"eval", 0.0, 0, 0)
    earlier = wire.encode_script_state(True, 1234, False, True, *details, reported_at=before)
    wrote = wire.encode_script_state(True, 1234, True, True, *details, reported_at=time.monotonic() + 1)
    assert _kill_through(monkeypatch, [earlier], b"FUNCTION") == b""  # not decided yet
    clean = wire.encode_script_state(True, 1234, False, True, *details, reported_at=time.monotonic() + 1)
    assert _kill_through(monkeypatch, [earlier, clean], b"FUNCTION") == encode_error(errors.BUSY)
    assert _kill_through(monkeypatch, [earlier, wrote], b"FUNCTION") == encode_error(errors.UNKILLABLE)


def test_a_kill_after_a_kill_this_acceptor_was_not_told_of_finds_nothing(monkeypatch) -> None:
    """A script stopped by another acceptor's kill before this one signalled
    it (an acceptor restarted since, or stopped while the bus asked, was
    never told of that kill): Redis's kill read after that ``+OK`` finds
    nothing, and so does this one (it answered ``+OK`` again)."""
    earlier = wire.encode_script_state(False, 1234, False, True, killed_at=time.monotonic())
    assert _kill_through(monkeypatch, [earlier]) == encode_error(errors.NOTBUSY)


def test_a_kill_signal_that_finds_no_busy_script_stops_nothing() -> None:
    """The acceptor signals a script's worker once it knows the script is
    busy; the signal may land after that script ended and the next began
    (a kill read through one acceptor before it read the first one's end,
    the next script sent through another).  The worker stopped the next
    script at its first hook, under its threshold, a script no kill was
    read for; now a kill is for a busy script only (Engine.request_kill).
    Here the signal lands during the script's first hook."""
    from shardkv.worker.clock import FakeClock
    from shardkv.worker.shard import Shard

    shard = Shard(0, 1, FakeClock())
    shard.keyspace.runtime.extra["busy-reply-threshold"] = "60000"
    engine = shard.keyspace.scripts
    threshold = engine.busy_threshold

    def signalled_now() -> float:  # (the hook asks the threshold of a script not busy yet)
        engine.request_kill()
        return threshold()

    engine.busy_threshold = signalled_now  # type: ignore[method-assign]
    script = b"local i = 0 while i < 300000 do i = i + 1 end return i"
    payload = wire.encode_batch([0, [b"EVAL", script, b"0"], 0, [b"SET", b"after", b"1"]])
    assert wire.decode_replies(shard.run_batch(payload)) == [b":300000\r\n", b"+OK\r\n"]


def test_a_script_past_its_first_hook_is_told_running_until_it_ends() -> None:
    """The worker tells every pipe that a script runs at its first count
    hook (``U1``) and that it ended (``U0``), however it ends (a reply,
    an error, a function's): meanwhile a command queued in MULTI waits for
    the shards' scripts (transactions.queue).  A script that ends before
    its first hook says nothing."""
    from shardkv.worker.clock import FakeClock
    from shardkv.worker.shard import Shard

    shard = Shard(0, 1, FakeClock())
    reports: list[bytes] = []
    shard.send_state = reports.append
    spin = b"local i = 0 while i < 300000 do i = i + 1 end "
    library = b"#!lua name=spinlib\nredis.register_function('spin', function() " + spin + b"return 2 end)"
    entries = [
        [b"EVAL", spin + b"return 1", b"0"],
        [b"EVAL", b"return 0", b"0"],
        [b"EVAL", spin + b"error('stop')", b"0"],
        [b"FUNCTION", b"LOAD", library],
        [b"FCALL", b"spin", b"0"],
    ]
    payload = wire.encode_batch([item for args in entries for item in (0, args)])
    replies = wire.decode_replies(shard.run_batch(payload))
    assert replies[0] == b":1\r\n" and replies[1] == b":0\r\n" and replies[2][:1] == b"-"
    assert replies[4] == b":2\r\n"
    told = [r for r in reports if r[:1] == b"U"]
    assert told == [wire.RUNNING_FRAME, wire.RAN_FRAME] * 3


def test_a_link_knows_a_script_runs_until_it_ends_or_the_pipe_closes() -> None:
    link = ShardLink(0, lambda link: None, lambda: None)
    transport = MemoryTransport()
    link.attached(transport)  # type: ignore[arg-type]
    try:
        link.data_received(frame(wire.RUNNING_FRAME))
        assert link in shardlink.RUNNING_LINKS
        link.data_received(frame(wire.RAN_FRAME))
        assert link not in shardlink.RUNNING_LINKS
        link.data_received(frame(wire.RUNNING_FRAME))
        link.detached(transport)  # type: ignore[arg-type]  # the worker died mid-script
        assert link not in shardlink.RUNNING_LINKS
        link.attached(MemoryTransport())  # type: ignore[arg-type]
        link.data_received(frame(wire.RUNNING_FRAME))
        link.attached(MemoryTransport())  # type: ignore[arg-type]  # a new pipe before the old one's end
        assert link not in shardlink.RUNNING_LINKS
    finally:
        shardlink.RUNNING_LINKS.clear()


BUSY_REPORT = wire.encode_script_state(True, 1234, False, True, (0, {}, {}), b"sha", b"eval", 0.0, 0, 0)


def test_the_pipes_end_ends_a_busy_script_at_once() -> None:
    """The worker of a busy script died: the pipe's end (``eof_received``)
    tells the link, not the ``connection_lost`` that the loop calls later,
    in a callback of its own, after a client's command read in the same
    turn, which got ``-BUSY`` (tests/system/test_busy_control.py)."""
    link = ShardLink(0, lambda link: None, lambda: None)
    pipe = link.protocol()
    transport = MemoryTransport()
    pipe.connection_made(transport)  # type: ignore[arg-type]
    try:
        pipe.data_received(frame(BUSY_REPORT))
        assert link in shardlink.BUSY_LINKS
        changes = shardlink.busy_changes()
        assert not pipe.eof_received()  # (the transport closes)
        assert link not in shardlink.BUSY_LINKS and link.busy is None and not link.up
        assert shardlink.busy_changes() != changes  # what waits for the script's end goes
        pipe.connection_lost(None)  # later: nothing more
        assert not link.up
    finally:
        shardlink.BUSY_LINKS.clear()


class SocketTransport(MemoryTransport):
    """A transport over the acceptor's end of a real socket pair."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: object = None) -> object:
        return self.sock if name == "socket" else super().get_extra_info(name, default)


@pytest.mark.parametrize(
    "unread", [b"", frame(wire.encode_replies([b"+OK\r\n"]))], ids=["none-unread", "a-frame-unread"]
)
def test_a_busy_link_whose_worker_closed_its_end_refuses_nothing(unread: bytes) -> None:
    """The worker closed its end (it died), and this acceptor has not read
    that yet (nor, maybe, frames it wrote before): its script no longer
    makes a command get ``-BUSY``; one for its shard gets what it gets once
    the end is read, that the shard is unavailable."""
    ours, worker = socket.socketpair()
    link = ShardLink(0, lambda link: None, lambda: None)
    link.attached(SocketTransport(ours))  # type: ignore[arg-type]
    try:
        link.data_received(frame(BUSY_REPORT))
        assert shardlink.busy_refusal() == link.busy == encode_error(errors.BUSY)
        worker.sendall(unread)
        assert shardlink.busy_refusal() == link.busy  # (written, not closed: it runs still)
        worker.close()
        assert link in shardlink.BUSY_LINKS  # (nothing read yet)
        assert shardlink.busy_refusal() is None
        sink = Sink()
        link.send(wire.entry_header(0), encode_command([b"GET", b"k"]), sink)
        assert sink.bodies == [encode_error(errors.SHARD_UNAVAILABLE)]
    finally:
        shardlink.BUSY_LINKS.clear()
        ours.close()
        worker.close()
