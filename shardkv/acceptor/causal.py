"""Several acceptors: a reply waits for what its command caused elsewhere.

With one process, Redis writes a command's keyspace notifications and
client-tracking invalidations to their clients' sockets before it sends
the command's reply; so a client that has the reply and then reads its
subscriber's (or REDIRECT target's) connection finds them there.  With
several acceptors (K > 1) a subscriber on another acceptor than the writer
gets them through another path, and this module keeps that order:

* A single-shard command's events go from its worker straight to each
  other acceptor that wants them, as an ``O`` frame numbered per pipe; the
  worker tells the writer's acceptor, in a ``G`` frame instead of the
  ``E`` frame, which replies wait for which ``O`` frames.  The writer's
  acceptor holds those replies (:class:`Gate`) and asks the others
  (``seen`` on the bus, :func:`ask_seen`) to answer once they have handed
  out that ``O`` frame (:func:`bus_seen`, :func:`others_events_done`).
* What the writer's acceptor itself sends other acceptors while it hands
  out a command's events (an invalidation for a REDIRECT target there, a
  multi-shard command's events) is asked, not told, when a reply is
  gathering (:func:`gather`, :func:`remote`), and the reply waits for the
  answers.  An acceptor that hands out another's events (an ``O`` frame,
  a multi-shard command's relayed ``events``) gathers too, and answers
  ``seen`` or ``events`` only once what it asked in turn is answered
  (:func:`answer_after`).  So is what an acceptor hands out for those
  events later in the turn, the BCAST invalidations of its flush for a
  REDIRECT target elsewhere: the gathering reply (or answer) is promised
  an answer (:func:`gathering`), given once the flush's questions are
  answered (:func:`settle`).

The bus passes an acceptor's messages on in the order it sent them, so an
acceptor's answer comes after what it sent while it handed the events out
(a ``broken`` for a gone REDIRECT target, an invalidation for a client of
the writer's acceptor).  An acceptor that does not answer within the bus's
``ANSWER_WITHIN`` counts as nothing: the replies go then.

Cost: only where an event goes to another acceptor, which wants events
only while one of its clients may hear them (the ``__events`` interest of
:mod:`shardkv.acceptor.notifications`); with one acceptor
nothing here runs (no ``G`` or ``O`` frame is ever sent, ``server.bus`` is
None).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shardkv.acceptor.replies import deliver
from shardkv.protocol import bus


class Gate:
    """Replies held until the other acceptors say they wrote what their
    commands caused: each ``(sink, body)`` is delivered, in the order held,
    once every expected answer came."""

    __slots__ = ("waiting", "held")

    def __init__(self) -> None:
        self.waiting = 0
        self.held: list[tuple[Any, bytes]] = []

    def expect(self) -> Callable[[list], None]:
        """One more answer to wait for; call what this returns with it."""
        self.waiting += 1
        return self._answered

    def hold(self, sink: Any, body: bytes) -> None:
        if self.waiting:
            self.held.append((sink, body))
        else:
            sink.deliver(body)

    def _answered(self, answers: list) -> None:
        self.waiting -= 1
        if not self.waiting:
            held, self.held = self.held, []
            for sink, body in held:
                deliver(sink, body, "delivering a reply")  # a failure costs its client alone


class Answer:
    """A sink that gives one answer a gate expects (:meth:`Gate.expect`'s)
    once delivered: a gate that waits for another one's release."""

    __slots__ = ("answer",)

    def __init__(self, answer: Callable[[list], None]) -> None:
        self.answer = answer

    def deliver(self, body: bytes) -> None:
        self.answer([])


class Later:
    """A sink that holds its body in ``gate`` (itself held in another gate:
    a reply that waits for two things)."""

    __slots__ = ("gate", "sink")

    def __init__(self, gate: Gate, sink: Any) -> None:
        self.gate = gate
        self.sink = sink

    def deliver(self, body: bytes) -> None:
        self.gate.hold(self.sink, body)


# While a shard's ``O`` frame is handed out: (that shard, the frame's seq,
# its ``writer``: see wire.encode_others_events); while another acceptor's
# relayed events are (``events`` on the bus): (-1, its relay number, (that
# acceptor, the events' indices)).  So an invalidation for a REDIRECT
# target on the acceptor that ran the command can say which command made
# it (see tracking.send).
OTHERS: tuple[int, int, tuple[int, list[int]] | None] | None = None

# The gates of the replies whose commands' events are being handed out now,
# innermost last (see gather); empty: remote() tells instead of asking.
_gathering: list[Gate] = []


def gather() -> None:
    """Start collecting what handing out a command's events asks of the
    other acceptors (:func:`remote`); :func:`gathered` ends it."""
    _gathering.append(Gate())


def gathered() -> Gate | None:
    """The gate of what was asked since :func:`gather`, or None if nothing."""
    gate = _gathering.pop()
    return gate if gate.waiting else None


def gathering() -> Gate | None:
    """The gate of the reply whose command's events are being handed out
    now, if any: what hands out the rest of what they caused later (the
    BCAST flush) promises it an answer (:meth:`Gate.expect`) and gives it
    with :func:`settle`."""
    return _gathering[-1] if _gathering else None


class _Settle:
    """The sink that gives the promised answers once what was asked is answered."""

    __slots__ = ("answers",)

    def __init__(self, answers: list[Callable[[list], None]]) -> None:
        self.answers = answers

    def deliver(self, body: bytes) -> None:
        for answer in self.answers:
            answer([])


def settle(server: Any, answers: list[Callable[[list], None]], asked: Gate | None) -> None:
    """Give the ``answers`` promised to gathering replies (see
    :func:`gathering`) once ``asked`` (what was asked since :func:`gather`)
    is answered, or now if nothing was."""
    if asked is not None:
        asked.hold(_Settle(answers), b"")
        return
    _Settle(answers).deliver(b"")
    # replies released here, maybe during a flush of the dirty clients: flush them too
    server.loop.call_soon(server.flush_dirty_clients)


class _Answer:
    """The sink that answers a question of the bus (with nothing)."""

    __slots__ = ("answer",)

    def __init__(self, answer: Callable[[Any], None]) -> None:
        self.answer = answer

    def deliver(self, body: bytes) -> None:
        self.answer(None)


def answer_after(server: Any, gate: Gate) -> None:
    """In a question's handler (``events``): answer it once ``gate`` (what
    handing out the question's events asked in turn) is answered."""
    gate.hold(_Answer(server.bus.later()), b"")


def remote(server: Any, kind: bytes, args: list) -> None:
    """Send ``kind`` to the other acceptors: asked, with the gathering
    reply waiting for the answers, while a command's events are handed out;
    told otherwise."""
    if _gathering:
        server.bus.ask(kind, args, _gathering[-1].expect())
    else:
        server.bus.tell(kind, args)


class Seen:
    """The sink that marks a link's ``O`` frame handed out once what handing
    it out asked of the other acceptors is answered (see ShardLink)."""

    __slots__ = ("link", "seq")

    def __init__(self, link: Any, seq: int) -> None:
        self.link = link
        self.seq = seq

    def deliver(self, body: bytes) -> None:
        link = self.link
        if self.seq > link.others_seen:
            link.others_seen = self.seq
        if link.others_waiting:
            others_events_done(link)


def ask_seen(server: Any, shard: int, waits: list[tuple[int, int]], gate: Gate) -> None:
    """Make ``gate`` wait until each acceptor ``pipe`` of ``waits`` has handed
    out shard ``shard``'s ``O`` frame number ``seq``."""
    seqs = [0] * server.nacceptors
    for pipe, seq in waits:
        if pipe < len(seqs):
            seqs[pipe] = seq
    server.bus.ask(bus.SEEN, [shard, *seqs], gate.expect())


def bus_seen(server: Any, origin: int, args: list) -> int | None:
    """``seen [shard, seq for acceptor 0, 1, ...]``: answer once this
    acceptor has handed out that shard's ``O`` frame number ``seq`` (at
    once if it has, or if that pipe is gone: what it carried went with it)."""
    shard = args[0]
    seq = args[1 + server.index] if 1 + server.index < len(args) else 0
    link = server.links[shard] if 0 <= shard < len(server.links) else None
    if link is None or not link.up or link.others_seen >= seq:
        return 1
    link.others_waiting.append((seq, server.bus.later()))
    return None


def others_events_done(link: Any) -> None:
    """``link`` has handed out its ``O`` frames up to ``link.others_seen``:
    answer the ``seen`` questions that waited for them."""
    seen = link.others_seen
    waiting = link.others_waiting
    still = []
    for seq, answer in waiting:
        if seq <= seen:
            answer(1)
        else:
            still.append((seq, answer))
    link.others_waiting = still


def answer_all(link: Any) -> None:
    """``link``'s pipe changed: nothing more will come on the old one."""
    waiting, link.others_waiting = link.others_waiting, []
    for _seq, answer in waiting:
        answer(1)
