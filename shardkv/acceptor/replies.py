"""A client's replies, in the order its commands came.

:attr:`shardkv.acceptor.client.Client.pending` holds, in command order,
either the reply bytes (when the reply was known at once) or one of these:
a :class:`Slot` that a shard's reply fills, a reply CLIENT REPLY dropped
(:data:`MUTED`, :class:`MutedSlot` until it came), or a Pub/Sub
confirmation it keeps (:class:`Pushed`).
:meth:`Client.flush` writes the longest ready prefix.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from collections.abc import Callable

    from shardkv.acceptor.client import Client

log = logging.getLogger("shardkv.acceptor")


class Sink:
    """What a shard's reply goes to (``deliver``): a :class:`Slot`, or an
    object of a command's own that takes the reply on its way (a script's
    retry, a blocking command's try, MIGRATE's delete).  Every sink a
    cross-shard operation answers is one."""

    __slots__ = ()

    @property
    def reply_place(self) -> object:
        """What :func:`origin_of` finds the command's client and place in
        its reply order from, when a bug keeps the reply from being built
        (``crossshard._Operation._unanswerable``): the sink itself, but for
        a blocking command's try, whose wait holds that place."""
        return self

    def deliver(self, body: bytes) -> None:
        raise NotImplementedError


class Slot(Sink):
    """A place in one client's reply order, filled when a reply comes."""

    __slots__ = ("client", "data")

    # Whether CLIENT REPLY OFF or SKIP keeps a slot of this subclass in its
    # client's reply order, in a :class:`MutedSlot`, until its reply comes,
    # as it keeps a plain one (:func:`is_plain_slot`): a script's, a MONITOR
    # line's, whose command a busy script's worker may refuse (ShardLink._offer
    # looks for it there).  Others leave :data:`MUTED`, ready at once.
    muted_in_place = False

    def __init__(self, client: Client) -> None:
        # (Client._run makes its slots without this call, setting the same two.)
        self.client = client
        self.data: bytes | None = None

    def deliver(self, body: bytes) -> None:
        # (ShardLink._frame has this inline, for the replies of an R frame.)
        self.data = body
        client = self.client
        if not client.dirty:
            client.dirty = True
            client.server.dirty_clients.append(client)

    def deliver_piece(self, piece: bytes, last: bool) -> None:
        """A piece of a big reply (see ``P`` in shardkv.wire): written at
        once if every reply before it is out, else kept until they are."""
        client = self.client
        if client.closed:
            if last:
                self.deliver(b"")
            return
        pieces = client.pieces
        if client.pending and client.pending[0] is self and self not in pieces:
            client.write_piece(piece)
            if last:
                self.deliver(b"")
            return
        pieces.setdefault(self, []).append(piece)
        if last:
            self.deliver(b"".join(pieces.pop(self)))

    def torn(self) -> None:
        """The shard died while this reply came in pieces: if some are out,
        the connection cannot carry a whole reply any more, so it closes
        (as when a server dies mid-reply); else the error replaces it."""
        client = self.client
        if client.pieces.pop(self, None) is None and client.transport is not None and not client.closed:
            client.closed = True  # nothing more is written to it (flush drops the rest)
            client.pending.clear()
            client.transport.abort()


class BareSlot(Slot):
    """A :class:`Slot` made by ``BareSlot()``, with object's ``__init__``:
    no Python code runs, and the call costs less than
    ``object.__new__(Slot)``'s generic one.  Its maker sets ``client`` and
    ``data`` (None) itself: Client._run, once per plain single-key
    command.  Everything that treats a Slot alike treats it so."""

    __slots__ = ()

    __init__ = object.__init__


class ExecPlace(Slot):
    """Where one command of an EXEC run as one operation
    (``transactions._run_atomic``) stands in EXEC's array, just before its
    reply: the messages its client hears while that command runs (its
    keyspace events, its script's PUBLISH) wait here (``pushes``), and the
    array carries them before the reply, as Redis writes them while EXEC
    runs the command; those Redis writes after the command's reply
    (``trail``) follow it, those it writes inside (``inside``, see
    :class:`Within`) go there.  Never filled (``data`` stays None): once the
    array is built (``closed``), a message for it follows what is pending."""

    __slots__ = ("pushes", "trail", "inside", "closed")

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.pushes: list[bytes | Published] = []
        self.trail: list[bytes] = []
        self.inside: list[tuple[Within, bytes]] = []
        self.closed = False

    def take(self, body: bytes, after: bool = False, noted: int = -1, nth: int = -1) -> None:
        """A message for the client, heard as the command ran (``after``:
        written after the command's reply, see :class:`Behind`), in the
        order of a script's calls (``noted``, ``nth``: see
        :func:`in_call_order`)."""
        if self.closed:
            self.client.pending.append(body)
        elif after:
            self.trail.append(body)
        else:
            in_call_order(self.pushes, len(self.pushes), body, self, noted, nth)

    def messages(self) -> list[bytes]:
        """The messages heard as the command ran, in order."""
        return [push if type(push) is bytes else push.body for push in self.pushes]  # type: ignore[union-attr]

    def take_within(self, within: Within, body: bytes) -> None:
        """A message for the client that Redis writes inside the command's
        reply, where ``within`` says."""
        if self.closed:
            self.client.pending.append(body)
        else:
            self.inside.append((within, body))


class Behind:
    """The messages of one command's events that Redis writes after the
    command's reply (``wire.EVENT_AFTER_REPLY``), for the client that sent
    it: each goes after ``slot`` (its reply's), in the order they were
    published (among its pending replies, as :class:`Trailing`; among the
    parts of an EXEC run command by command, behind the ``count`` put
    there before it).  ``served``: the message now delivered is of a
    blocked command the command served (``wire.EVENT_SERVED``), which a
    client still blocked gets after the reply it waits for; ``within``:
    one the served command's own client gets inside its reply, there (the
    pop of a BZPOPMIN that a ZADD served), and ``waiter``, that client's
    (``wire.EVENT_WAITER_SHIFT``)."""

    __slots__ = ("slot", "count", "served", "within", "waiter")

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.count = 0
        self.served = False
        self.within: Within | None = None
        self.waiter = 0


class Within:
    """Where, inside one command's reply (``slot``'s), Redis writes a
    message of the command's events that it notifies while it builds the
    reply (``wire.EVENT_IN_REPLY``: ZPOPMIN's pop, XREADGROUP's
    ``xgroup-createconsumer``...), for the client that sent it: after the
    reply's first header, ``skip`` whole elements, then (``inner``) the
    header of the next (see :class:`InReply`)."""

    __slots__ = ("slot", "skip", "inner")

    served = False  # (see Behind)

    def __init__(self, slot: Slot, skip: int, inner: bool) -> None:
        self.slot = slot
        self.skip = skip
        self.inner = inner


class InReply:
    """The messages a command's client gets inside its reply (see
    :class:`Within`), just before that reply's slot among its pending
    replies: ready once the reply came, when it takes the reply's head up
    to the last message's place, with the messages in their places, and
    leaves the rest in the slot."""

    __slots__ = ("slot", "parts", "head")

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.parts: list[tuple[Within, bytes]] = []
        self.head: bytes | None = None

    @property
    def data(self) -> bytes | None:
        head = self.head
        if head is None:
            reply = self.slot.data
            if reply is None:
                return None
            head, self.slot.data = split_within(reply, self.parts)
            self.head = head
        return head

    def messages(self) -> bytes:
        """The messages alone (their command's reply dropped: CLIENT REPLY
        OFF inside EXEC, or EXEC's array muted)."""
        return b"".join(body for _, body in self.parts)


def split_within(reply: bytes, parts: list[tuple[Within, bytes]]) -> tuple[bytes, bytes]:
    """``reply`` with the messages of ``parts`` in their places inside it
    (see :class:`Within`): the head, up to the last message, and the rest."""
    out: list[bytes] = []
    at = 0
    for within, body in parts:
        place = max(_place_in(reply, within), at)
        out += (reply[at:place], body)
        at = place
    return b"".join(out), reply[at:]


def _place_in(reply: bytes, within: Within) -> int:
    """Where in ``reply`` ``within`` says (0 if it is no array or map, or
    is shorter than ``within`` expects: the message then goes before it)."""
    try:
        if reply[:1] not in (b"*", b"%", b"~"):
            return 0
        pos = reply.index(b"\r\n") + 2
        for _ in range(within.skip):
            pos = _skip(reply, pos)
        if within.inner:
            pos = reply.index(b"\r\n", pos) + 2
    except ValueError:
        return 0
    return pos if pos <= len(reply) else 0


def _skip(data: bytes, pos: int) -> int:
    """Where the whole RESP element at ``pos`` of ``data`` ends."""
    eol = data.index(b"\r\n", pos)
    kind = data[pos : pos + 1]
    n = int(data[pos + 1 : eol]) if kind in b"$=!*~>%|" else 0
    pos = eol + 2
    if kind in (b"$", b"=", b"!"):
        return pos if n < 0 else pos + n + 2
    if kind in (b"*", b"~", b">", b"%", b"|"):
        for _ in range(2 * n if kind in (b"%", b"|") else max(n, 0)):
            pos = _skip(data, pos)
    return pos


class Published:
    """A script's PUBLISH message to its own client, among its pending
    replies before the script's (``slot``): ``noted`` of the script's
    events came before the call, and go before it (Redis writes each as
    the script's calls run); the others after it.  Ready once the reply
    came, as the events come just before it."""

    __slots__ = ("body", "slot", "noted")

    def __init__(self, body: bytes, slot: Slot, noted: int) -> None:
        self.body = body
        self.slot = slot
        self.noted = noted

    @property
    def data(self) -> bytes | None:
        return None if self.slot.data is None else self.body

    def follows(self, slot: Slot, nth: int) -> bool:
        """Whether the ``nth`` event of ``slot``'s command came before it."""
        return self.slot is slot and 0 <= nth < self.noted


def in_call_order(place: Any, at: int, body: bytes, slot: Slot, noted: int, nth: int) -> None:
    """``body`` into ``place`` (a client's pending replies, or what an
    :class:`ExecPlace` holds) at ``at``, just before ``slot``'s reply, in
    the order of the calls of the script that ``slot`` answers, as Redis
    writes each message as the call runs: a script's PUBLISH message after
    ``noted`` of its events (> 0: a :class:`Published`, which the events
    after that many go before); the ``nth`` of its events (from 0; -1: no
    event), before the messages the script PUBLISHed after it."""
    if noted > 0:
        place.insert(at, Published(body, slot, noted))
        return
    while at and type(place[at - 1]) is Published and place[at - 1].follows(slot, nth):
        at -= 1
    place.insert(at, body)


# An EXEC run as one operation runs a plain (S)PUBLISH after its shard
# commands, before their events are handed out: while it runs, the place
# of the last of the commands before it that has events, and how many
# events end there (transactions._events_before), whose hand-out its
# message to other clients waits for (pubsub._publish).
AFTER_EVENTS: list[tuple[Slot, int]] = []
# With several acceptors, while a cross-shard operation's reply is built
# before its decision hands out (and relays) its events: the bus publishes
# of such a PUBLISH, sent once the events went on the bus ahead of them
# (crossshard.CrossShardOp._commit), so that the other acceptors hand the
# message out after the EXEC's events; None otherwise.
AFTER_DECISION: list[list[Callable[[], None]] | None] = [None]
# A client's blocked_token while its (S)PUBLISH goes round the bus (K > 1)
# and it waits for it (see pubsub._publish and wait_after_exec).
PUBLISHING = -17
# K > 1: the (S)PUBLISHes of a client's EXEC routed command by command
# (transactions._run_in_order) held behind its replies (pubsub._HeldPublish)
# and not answered yet, by client id: the commands it sent after the EXEC
# wait for them (wait_after_exec), as Redis hands out the message before
# it reads them; else their events came before it.
EXEC_PUBLISHES: dict[int, int] = {}


def wait_after_exec(client: Client) -> None:
    """Its EXEC routed command by command ended: its commands after it
    wait while a PUBLISH of the EXEC's is held (see EXEC_PUBLISHES)."""
    if EXEC_PUBLISHES.get(client.id) and not client.state.blocked_token:
        client.state.block(PUBLISHING, shown=False)


class Trailing:
    """A message put among a client's pending replies right after its
    command's reply (see :class:`Behind`), ready: what comes after that
    reply later goes after these (its own invalidations, which Redis
    writes once the command ended: see ``tracking.send``)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


PLAIN_SLOTS = (BareSlot, Slot)
"""The exact types of a command's own reply slot, made either way: a sink
whose ``type()`` is one of them takes its reply as :meth:`Slot.deliver`
does, and is its client's own (``sink.client``), for the command alone.
Not its subclasses, which deliver in a way of their own (a script's, a
monitor line's...).  What looks for such a slot looks for both: the hot
path that inlines ``Slot.deliver`` (ShardLink._frame), and through
:func:`is_plain_slot` the slow log's names and tracking's reads."""


class _Unregistered:
    """SCREENED's type until its module registers one: never a sink."""


SCREENED: list[type] = [_Unregistered]
"""The exact type of the one kind of reply slot that a reply starting with
none of :data:`SCREENED_FIRSTS` (not an error, nor an aggregate that may
hold one) fills as :meth:`Slot.deliver` fills a plain slot, inline in
ShardLink._frame; any other reply goes to its ``deliver``.  Registered by
its module (the replies know no scripts): ``scripting._RunSlot``, an
EVALSHA of a run to one shard behind which another of the run keeps the
client's wait (see ``scripting.scripts_alike``)."""
SCREENED_FIRSTS = frozenset(b"-*%~")  # (as byte values)


def is_plain_slot(sink: object) -> TypeGuard[Slot]:
    """Whether ``sink`` is a command's own reply slot (see :data:`PLAIN_SLOTS`)."""
    return type(sink) in PLAIN_SLOTS


class Muted:
    """A reply CLIENT REPLY OFF or SKIP dropped: ready, and empty."""

    __slots__ = ()
    data = b""


MUTED = Muted()


class MutedSlot:
    """The reply of a command run under CLIENT REPLY OFF or SKIP that its
    shard has not sent yet (``slot``): dropped as :data:`MUTED` is, but
    ready only once it came, so that its place stays among the client's
    pending replies for the messages the command makes the client hear
    (its keyspace events), before it or after it, as Redis writes them
    whatever the reply mode (see ``pubsub.place_of``)."""

    __slots__ = ("slot",)

    def __init__(self, slot: Slot) -> None:
        self.slot = slot

    @property
    def data(self) -> bytes | None:
        return None if self.slot.data is None else b""


class Pushed:
    """A Pub/Sub confirmation: CLIENT REPLY OFF or SKIP keeps it, as Redis
    sends what it writes with CLIENT_PUSHING set whatever the reply mode."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def origin_of(sink: object) -> tuple[Client | None, object]:
    """The client whose command a reply's sink answers (None: the
    sweeper's, or a cross-shard operation's part with no client), and
    that command's reply slot.  ``sink`` is the client's slot, or an
    object that holds it (a read fan-out's Gather, a script's retry)."""
    place = sink
    for _ in range(3):
        inner = getattr(place, "slot", None)
        if inner is None:
            break
        place = inner
    client = getattr(sink, "client", None)
    if client is None:
        client = getattr(place, "client", None)
    return client, place


class _Relayed:
    """The origin of the events another acceptor relays (a multi-shard
    command of its, see ``notifications.bus_events``): no client's here."""

    __slots__ = ()


RELAYED = _Relayed()


def in_pipe_order(origin: object) -> bool:
    """Whether events handed out with ``origin`` come in the order their
    shard ran things, among the replies on its pipe: a single-shard
    command's (``origin`` its sink), the sweeper's and another acceptor's
    single-shard command's (None).  Not a multi-shard command's, held until
    its last part is in (``origin`` the holder, which has ``emit_events``),
    nor those another acceptor relays (:data:`RELAYED`)."""
    return origin is not RELAYED and getattr(origin, "emit_events", None) is None


def delivery_failed(sink: object, doing: str) -> None:
    """An unexpected exception (a bug) while ``sink`` took its reply, being
    handled now: close the client it answers, alone (see
    :meth:`~shardkv.acceptor.client.Client.failed`); the pipe the reply
    came on, and every other client, go on."""
    client_failed(origin_of(sink)[0], doing)


def deliver(sink: Any, body: bytes, doing: str) -> None:
    """``sink.deliver(body)``; an exception there costs the client it
    answers alone (:func:`delivery_failed`, ``doing`` saying what failed).
    (The pipe's per-reply loop, ShardLink._frame's, has this inline.)"""
    try:
        sink.deliver(body)
    except Exception:
        delivery_failed(sink, doing)


def client_failed(client: object, doing: str) -> None:
    """:meth:`Client.failed <shardkv.acceptor.client.Client.failed>` for
    anything that stands for a client (another acceptor's monitors, a
    script's calls), or None: then the exception is only logged."""
    failed = getattr(client, "failed", None)
    if failed is not None:
        failed(doing)
    else:
        log.exception("Internal error while %s (no client to close)", doing)
