"""The bus between acceptors: its frames on the control stream, mixed with lines."""

from __future__ import annotations

import socket

from shardkv.acceptor.bus import Bus
from shardkv.protocol import bus, errors
from shardkv.protocol.resp import Error


def stream() -> tuple[bytes, list]:
    message = [bus.ASK, 7, 1, bus.PUBLISH, b"ch\nan", b"\r\nbus 3\n"]
    data = (
        b"pipe 2\n" + bus.frame(message) + b'config {"hz": 20}\n' + bus.frame([bus.ANSWERS, 7, [3, [b"x"]]])
    )
    expected = [
        (b"pipe", b"2"),
        (b"bus", message),
        (b"config", b'{"hz": 20}'),
        (b"bus", [bus.ANSWERS, 7, [3, [b"x"]]]),
    ]
    return data, expected


def test_lines_and_bus_frames_whole_or_byte_by_byte() -> None:
    data, expected = stream()
    assert bus.ControlReader().feed(data) == expected
    reader = bus.ControlReader()
    got = []
    for i in range(len(data)):
        got += reader.feed(data[i : i + 1])
    assert got == expected and reader.buf == b""


def test_a_partial_message_waits_for_the_rest() -> None:
    data, expected = stream()
    reader = bus.ControlReader()
    assert reader.feed(data + b"bus 12\n*1") == expected
    assert reader.feed(b"\r\n:12345\r\n") == [(b"bus", [12345])]


def test_the_acceptor_binds_one_handler_to_every_kind() -> None:
    from shardkv.acceptor.wiring import wiring

    bound = wiring()
    assert set(bound.bus_handlers) == set(bus.KINDS) and len(bus.KINDS) == len(set(bus.KINDS))


# -- a question whose handler raises -------------------------------------------------


class FakeServer:
    """What :class:`shardkv.acceptor.bus.Bus` uses of the acceptor: the
    control socket (the supervisor's end is ``peer``) and the flush."""

    def __init__(self, index: int = 1) -> None:
        self.index = index
        self.control, self.peer = socket.socketpair()
        self.control.setblocking(False)
        self.flushes = 0

    def flush_dirty_clients(self) -> None:
        self.flushes += 1

    def sent(self) -> list:
        """The bus messages written to the supervisor so far."""
        self.peer.setblocking(False)
        data = b""
        try:
            while True:
                data += self.peer.recv(65536)
        except BlockingIOError:
            pass
        return [message for kind, message in bus.ControlReader().feed(data) if kind == b"bus"]

    def close(self) -> None:
        self.control.close()
        self.peer.close()


def failing(server, origin, args):
    raise RuntimeError("a bug in the handler")


def answering_later_then_failing(server, origin, args):
    server.bus_.later()
    raise RuntimeError("a bug after later()")


def test_a_handler_that_raises_answers_an_error_at_once_and_the_next_question_is_answered() -> None:
    server = FakeServer(index=1)
    handlers = {bus.KILL: failing, bus.PUBSUB: lambda s, o, a: [7], bus.SYNC: answering_later_then_failing}
    b = Bus(server, handlers)  # type: ignore[arg-type]
    server.bus_ = b  # type: ignore[attr-defined]
    try:
        b.received([bus.ASK, 0, 11, bus.KILL, b"ADDR", b"x"])
        b.received([bus.ASK, 0, 12, bus.SYNC])  # later(), then the bug: answered now
        b.received([bus.ASK, 0, 13, bus.PUBSUB, b"numsub", b"c"])
        error = Error(errors.BUS_ANSWER_FAILED % (1, "kill"))
        assert server.sent() == [
            [bus.ANSWER, 0, 11, error],
            [bus.ANSWER, 0, 12, Error(errors.BUS_ANSWER_FAILED % (1, "sync"))],
            [bus.ANSWER, 0, 13, [7]],
        ]
        # each question answered at once flushes what it caused before its
        # answer, and every message flushes again at the end, bug or not
        assert server.flushes == 6
    finally:
        server.close()


def test_a_message_whose_handler_raises_costs_nothing_else() -> None:
    server = FakeServer()
    seen = []
    b = Bus(server, {bus.BROKEN: failing, bus.HELLO: lambda s, o, a: seen.append(o)})  # type: ignore[arg-type]
    try:
        b.received([bus.TELL, 0, bus.BROKEN, 1, 2])
        b.received([bus.TELL, 2, bus.HELLO])
        assert seen == [2] and server.flushes == 2 and server.sent() == []
    finally:
        server.close()


def test_the_asker_gets_the_error_or_the_other_answers() -> None:
    server = FakeServer(index=0)
    b = Bus(server, {})
    done, failed = [], []
    try:
        b.ask(bus.KILL, [b"ADDR", b"x"], done.append, failed=failed.append)
        b.ask(bus.SEEN, [0, 1], done.append)  # no failed: it goes on with what came
        (first, qid1, *_), (_, qid2, *_) = server.sent()
        assert first == bus.ASK
        error = Error(errors.BUS_ANSWER_FAILED % (1, "kill"))
        b.received([bus.ANSWERS, qid1, [error]])
        b.received([bus.ANSWERS, qid2, [1, error]])
        assert failed == [error.message] and done == [[1]]
        assert not b.waiting
    finally:
        server.close()


def test_a_done_that_raises_still_answers_the_client() -> None:
    server = FakeServer(index=0)
    b = Bus(server, {})
    failed: list = []

    def done(answers: list) -> None:
        raise RuntimeError("a bug in merging the answers")

    try:
        b.ask(bus.CLIENTS, [b""], done, failed=failed.append)
        ((_, qid, *_),) = server.sent()
        b.received([bus.ANSWERS, qid, [[1, b"line"]]])
        assert failed == [errors.INTERNAL % "bus clients"]
    finally:
        server.close()


def test_an_answer_the_bus_cannot_carry_is_an_error() -> None:
    server = FakeServer(index=1)
    b = Bus(server, {bus.INFO: lambda s, o, a: object()})  # type: ignore[arg-type]
    try:
        b.received([bus.ASK, 0, 5, bus.INFO])
        assert server.sent() == [[bus.ANSWER, 0, 5, Error(errors.BUS_ANSWER_FAILED % (1, "info"))]]
    finally:
        server.close()
