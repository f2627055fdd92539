"""The acceptor's end of the bus between acceptors (K > 1 only).

See :mod:`shardkv.protocol.bus` for the messages.  :meth:`Bus.ask` sends a
question to the other acceptors through the supervisor and calls back with
their answers; :meth:`Bus.tell` sends a message that needs none.  Each kind
of question or message has one handler, bound in
:mod:`shardkv.acceptor.wiring` (``bus_handlers``): ``handler(server, origin,
args)`` returns the answer of a question (ignored for a message).

A handler that raises (a bug) costs the question alone: the answering
acceptor logs it and answers at once with an error (``-ERR acceptor N
could not answer ...``), instead of leaving the asker to wait for
:data:`shardkv.protocol.bus.ANSWER_WITHIN` and then go on without its
answer.  An asker given ``failed`` (a client's command: CLIENT LIST, CLIENT
KILL, PUBSUB, INFO...) replies with that error; the others (a question of
the acceptors' own machinery) go on with the answers that came, as when
an acceptor is too slow.  A ``done`` that raises is logged, and ``failed``
answers the client: it never waits for a reply that will not come.

With one acceptor ``server.bus`` is None and nothing here runs.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from shardkv.protocol import bus, errors
from shardkv.protocol.resp import Error, encode_error

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

log = logging.getLogger("shardkv.acceptor")

BusHandler = Callable[["Acceptor", int, list], Any]
# What an asker does when an answer is an error: reply to its client with it.
Failed = Callable[[str], None]


def fail_slot(slot: Any) -> Failed:
    """``failed`` for a question whose answer fills a client's reply slot:
    the error goes there instead (counted in the error stats, as Redis
    counts an error reply)."""

    def failed(message: str) -> None:
        slot.client.server.stats.error(message)
        slot.deliver(encode_error(message))

    return failed


class Bus:
    """Questions and messages to the other acceptors, over the control socket."""

    def __init__(self, server: Acceptor, handlers: Mapping[bytes, BusHandler]) -> None:
        self.server = server
        self.handlers = handlers
        self._ids = itertools.count(1)
        # Each question of this acceptor still unanswered: (kind, done, failed).
        self.waiting: dict[int, tuple[bytes, Callable[[list], None], Failed | None]] = {}
        self._out = bytearray()  # what the socket did not take yet
        self._asking: tuple[int, int] | None = None  # the question being answered
        self._later = False

    # -- sending ------------------------------------------------------------------

    def ask(
        self,
        kind: bytes,
        args: list,
        done: Callable[[list], None],
        everyone: bool = False,
        failed: Failed | None = None,
    ) -> None:
        """Ask the other acceptors (and this one too when ``everyone``);
        ``done(answers)`` once they all answered, or the supervisor stopped
        waiting for some (they count as nothing).  If an acceptor's handler
        failed, ``failed(message)`` instead, when given (see the module's
        docstring)."""
        qid = next(self._ids)
        self.waiting[qid] = (kind, done, failed)
        if not self._send([bus.ASK, qid, int(everyone), kind, *args]):
            del self.waiting[qid]  # no supervisor to pass it on: this acceptor alone answers
            server = self.server
            answers = [self._answer(kind, server.index, args)] if everyone else []
            self._answered(kind, done, failed, answers)

    def tell(self, kind: bytes, args: list) -> None:
        """Send a message to every other acceptor."""
        self._send([bus.TELL, kind, *args])

    def answering(self) -> bool:
        """Whether a question's handler runs now (so :meth:`later` may be called)."""
        return self._asking is not None

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

    def give_up(self) -> None:
        """This acceptor stops (the supervisor's SIGTERM): each question
        still waiting goes on with the answers that came, none, as when
        the others are too slow (they stop as well).  A SCRIPT KILL whose
        ``+OK`` waited for the others to know of it (its script ended:
        the server stops once no script is busy) answers before the
        clients' connections close, where Redis answered it at once; it
        was dropped."""
        waiting, self.waiting = self.waiting, {}
        for kind, done, failed in waiting.values():
            self._answered(kind, done, failed, [])
        self.server.flush_dirty_clients()

    # -- receiving ----------------------------------------------------------------

    def received(self, message: list) -> None:
        """A bus frame from the supervisor."""
        verb = message[0]
        server = self.server
        try:
            if verb == bus.ASK:
                origin, qid, kind, args = message[1], message[2], message[3], message[4:]
                self._asking = (origin, qid)
                self._later = False
                try:
                    value = self._answer(kind, origin, args)
                    later, self._later = self._later, False
                finally:
                    self._asking = None
                if not later:
                    server.flush_dirty_clients()  # what the question caused goes out before the answer
                    self.send_raw(self._answer_frame(kind, origin, qid, value))
            elif verb == bus.ANSWERS:
                waiting = self.waiting.pop(message[1], None)
                if waiting is not None:
                    self._answered(*waiting, message[2])
            elif verb == bus.TELL:
                kind = message[2]
                try:
                    self.handlers[kind](server, message[1], message[3:])
                except Exception:  # a message needs no answer: the next ones still count
                    log.exception("acceptor: handling acceptor %s's %r failed", message[1], kind)
        finally:
            server.flush_dirty_clients()

    def _answer(self, kind: bytes, origin: int, args: list) -> Any:
        """This acceptor's answer to a question: its handler's value, or an
        error if the handler raised (then never answered later)."""
        try:
            return self.handlers[kind](self.server, origin, args)
        except Exception:
            self._later = False  # answered now, with the error
            log.exception("acceptor: answering acceptor %s's %r failed", origin, kind)
            return Error(errors.BUS_ANSWER_FAILED % (self.server.index, kind.decode("latin-1")))

    def _answer_frame(self, kind: bytes, origin: int, qid: int, value: Any) -> bytes:
        try:
            return bus.frame([bus.ANSWER, origin, qid, value])
        except Exception:  # a value the bus cannot carry (a bug in the handler)
            log.exception("acceptor: encoding the answer to acceptor %s's %r failed", origin, kind)
            error = Error(errors.BUS_ANSWER_FAILED % (self.server.index, kind.decode("latin-1")))
            return bus.frame([bus.ANSWER, origin, qid, error])

    def _answered(
        self, kind: bytes, done: Callable[[list], None], failed: Failed | None, answers: list
    ) -> None:
        """Hand the answers to a question of this acceptor to its asker."""
        errs = [a for a in answers if type(a) is Error]
        if errs:
            if failed is not None:
                failed(errs[0].message)
                return
            answers = [a for a in answers if type(a) is not Error]  # as if they had not answered in time
        try:
            done(answers)
        except Exception:
            log.exception("acceptor: using the other acceptors' answers to %r failed", kind)
            if failed is not None:
                failed(errors.INTERNAL % ("bus " + kind.decode("latin-1")))
