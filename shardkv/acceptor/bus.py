"""The acceptor's end of the bus between acceptors (K > 1 only).

See :mod:`shardkv.protocol.bus` for the messages.  :meth:`Bus.ask` sends a
question to the other acceptors through the supervisor and calls back with
their answers; :meth:`Bus.tell` sends a message that needs none.  Each kind
of question or message has one handler, bound in
:mod:`shardkv.acceptor.wiring` (``bus_handlers``): ``handler(server, origin,
args)`` returns the answer of a question (ignored for a message).

With one acceptor ``server.bus`` is None and nothing here runs.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shardkv.protocol import bus

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

log = logging.getLogger("shardkv.acceptor")

BusHandler = Callable[["Acceptor", int, list], Any]


class Bus:
    """Questions and messages to the other acceptors, over the control socket."""

    def __init__(self, server: Acceptor, handlers: Mapping[bytes, BusHandler]) -> None:
        self.server = server
        self.handlers = handlers
        self._ids = itertools.count(1)
        self.waiting: dict[int, Callable[[list], None]] = {}
        self._out = bytearray()  # what the socket did not take yet
        self._asking: tuple[int, int] | None = None  # the question being answered
        self._later = False

    # -- sending ------------------------------------------------------------------

    def ask(self, kind: bytes, args: list, done: Callable[[list], None], everyone: bool = False) -> None:
        """Ask the other acceptors (and this one too when ``everyone``);
        ``done(answers)`` once they all answered, or the supervisor stopped
        waiting for some (they count as nothing)."""
        qid = next(self._ids)
        self.waiting[qid] = done
        if not self._send([bus.ASK, qid, int(everyone), kind, *args]):
            del self.waiting[qid]  # no supervisor to pass it on: this acceptor alone answers
            server = self.server
            done([self.handlers[kind](server, server.index, args)] if everyone else [])

    def tell(self, kind: bytes, args: list) -> None:
        """Send a message to every other acceptor."""
        self._send([bus.TELL, kind, *args])

    def later(self) -> Callable[[Any], None]:
        """Called by a question's handler: answer it later, with what the
        returned function is given (not with the handler's value)."""
        asking = self._asking
        assert asking is not None, "later() outside a question's handler"
        self._later = True
        origin, qid = asking

        def answer(value: Any) -> None:
            self._send([bus.ANSWER, origin, qid, value])

        return answer

    def _send(self, message: list) -> bool:
        return self.send_raw(bus.frame(message))

    def send_raw(self, data: bytes) -> bool:
        """Write ``data`` to the supervisor after what is queued (a ``config``
        line goes this way too, so it never lands inside a bus frame)."""
        sock = self.server.control
        if sock is None:
            return False
        if self._out:
            self._out += data
            return True
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            log.warning("acceptor: bus: %s", e)
            return False
        if sent < len(data):
            self._out += data[sent:]
            self.server.loop.add_writer(sock.fileno(), self._write_more)  # type: ignore[union-attr]
        return True

    def _write_more(self) -> None:
        sock = self.server.control
        try:
            sent = sock.send(self._out) if sock is not None else len(self._out)
        except BlockingIOError:
            return
        except OSError:
            sent = len(self._out)
        del self._out[:sent]
        if not self._out and sock is not None:
            self.server.loop.remove_writer(sock.fileno())  # type: ignore[union-attr]

    # -- receiving ----------------------------------------------------------------

    def received(self, message: list) -> None:
        """A bus frame from the supervisor."""
        verb = message[0]
        server = self.server
        if verb == bus.ASK:
            origin, qid, kind, args = message[1], message[2], message[3], message[4:]
            self._asking = (origin, qid)
            try:
                value = self.handlers[kind](server, origin, args)
            finally:
                self._asking = None
            if self._later:
                self._later = False
            else:
                self._send([bus.ANSWER, origin, qid, value])
        elif verb == bus.ANSWERS:
            done = self.waiting.pop(message[1], None)
            if done is not None:
                done(message[2])
        elif verb == bus.TELL:
            self.handlers[message[2]](server, message[1], message[3:])
        server.flush_dirty_clients()
