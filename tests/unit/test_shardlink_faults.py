"""A bug in one client's reply path costs that client alone.

The acceptor's end of a worker's pipe (:class:`shardkv.acceptor.shardlink.ShardLink`)
gets frames of replies, each for the sink at the head of its FIFO.  A sink
that raises (a bug while delivering or writing one client's reply) closes
its client and nothing else: the other replies of the frame, and of the
frames after it, still go to their own sinks, in order.  An exception
outside any one sink (a bad frame) means the pipe is out of order: the
acceptor exits, to be restarted (:func:`shardkv.acceptor.shardlink._out_of_order`).
"""

from __future__ import annotations

import os

import pytest

from shardkv.acceptor import shardlink
from shardkv.acceptor.causal import Gate
from shardkv.acceptor.shardlink import ShardLink
from shardkv.protocol import errors, wire
from shardkv.protocol.resp import encode_error
from shardkv.protocol.wire import FRAME


class FakeClient:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def failed(self, doing: str) -> None:
        self.failures.append(doing)


class Good:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def deliver(self, body: bytes) -> None:
        self.bodies.append(body)


class Bad:
    """A client's reply slot whose delivery meets a bug."""

    def __init__(self) -> None:
        self.client = FakeClient()

    def deliver(self, body: bytes) -> None:
        raise RuntimeError("a bug in the reply path")


def frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload)) + payload


def make_link() -> ShardLink:
    return ShardLink(0, lambda link: None, lambda: None)


def test_a_sink_that_raises_costs_its_client_alone_and_the_stream_stays_in_order():
    link = make_link()
    first, bad, third, later = Good(), Bad(), Good(), Good()
    link.fifo.extend([first, bad, third, later])
    link.data_received(frame(wire.encode_replies([b"+1\r\n", b"+2\r\n", b"+3\r\n"])))
    assert first.bodies == [b"+1\r\n"]
    assert bad.client.failures == ["delivering a reply"]
    assert third.bodies == [b"+3\r\n"]
    # The next frame's reply goes to the next sink: nothing slipped.
    link.data_received(frame(wire.encode_replies([b"+4\r\n"])))
    assert later.bodies == [b"+4\r\n"]
    assert not link.fifo


def test_a_blocked_clients_sink_that_raises_costs_it_alone():
    link = make_link()
    bad, after = Bad(), Good()
    link.blocked[7] = bad
    link.fifo.append(after)
    link.data_received(
        frame(wire.encode_wake(7, b"*2\r\n$1\r\nl\r\n$1\r\nv\r\n")) + frame(wire.encode_replies([b":1\r\n"]))
    )
    assert bad.client.failures == ["delivering a blocking command's reply"]
    assert after.bodies == [b":1\r\n"]


def test_a_sink_that_raises_when_the_shard_is_lost_does_not_stop_the_others():
    link = make_link()
    good, bad, other = Good(), Bad(), Good()
    link.fifo.extend([good, bad, other])
    link.fail_all()
    gone = encode_error(errors.SHARD_UNAVAILABLE)
    assert good.bodies == [gone] and other.bodies == [gone]
    assert bad.client.failures == ["answering that its shard is gone"]


def test_a_held_reply_that_raises_does_not_stop_the_others():
    gate = Gate()
    answered = gate.expect()
    good, bad, other = Good(), Bad(), Good()
    for sink in (good, bad, other):
        gate.hold(sink, b"+OK\r\n")
    answered([])
    assert good.bodies == [b"+OK\r\n"] and other.bodies == [b"+OK\r\n"]
    assert bad.client.failures == ["delivering a reply"]


class Exited(Exception):
    pass


def test_a_bad_frame_makes_the_acceptor_exit_to_be_restarted(monkeypatch: pytest.MonkeyPatch):
    """More replies than sinks: the pipe no longer matches the acceptor's
    order; the acceptor exits (the supervisor restarts it) rather than
    keep a pipe it cannot trust, or close it and lose the shard for good."""
    codes: list[int] = []

    def exit_(code: int) -> None:
        codes.append(code)
        raise Exited

    monkeypatch.setattr(os, "_exit", exit_)
    link = make_link()
    pipe = link.protocol()

    class Transport:
        def close(self) -> None:
            pass

    pipe.connection_made(Transport())  # type: ignore[arg-type]
    with pytest.raises(Exited):
        pipe.data_received(frame(wire.encode_replies([b"+1\r\n"])))
    assert codes == [shardlink.EXIT_PIPE_FAILED]


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def test_queued_decisions_leave_at_the_end_of_the_turn_in_one_write_and_in_order():
    """Cross-shard decisions (``Decide``) wait for the end of the turn and
    leave with the turn's batch in one write; entries queued before a
    decision leave before it, those queued after it after."""
    turns: list[ShardLink] = []
    link = ShardLink(0, turns.append, lambda: None)
    transport = Transport()
    link.attached(transport)  # type: ignore[arg-type]
    first, second = (
        wire.entry_header(0) + b"*1\r\n$4\r\nPING\r\n",
        wire.entry_header(0) + b"*1\r\n$4\r\nTIME\r\n",
    )
    link.send(first[:4], first[4:], Good())
    decide = [wire.encode_control(wire.Decide(op, True)) for op in (1, 2)]
    link.queue_frame(decide[0])
    link.queue_frame(decide[1])
    link.send(second[:4], second[4:], Good())
    assert transport.written == [] and turns == [link]
    link.flush()
    assert transport.written == [
        b"".join(
            (
                frame(wire.batch_payload([first[:4], first[4:]])),
                frame(decide[0]),
                frame(decide[1]),
                frame(wire.batch_payload([second[:4], second[4:]])),
            )
        )
    ]
    link.queue_frame(decide[0])
    link.flush()  # a turn with nothing else to send
    assert transport.written[1:] == [frame(decide[0])]
