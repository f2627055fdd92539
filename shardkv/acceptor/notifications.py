"""Keyspace notifications (``notify-keyspace-events``), in the acceptor.

The shards note what changes (:mod:`shardkv.worker.events`) and send it
here as ``E`` frames (:mod:`shardkv.wire`); each command's events arrive
just before its reply, in the order the shard ran them.  This module
publishes them as Redis's ``notifyKeyspaceEvent`` does, on
``__keyspace@<db>__:<key>`` (message: the event) and then
``__keyevent@<db>__:<event>`` (message: the key), through the acceptor's
Pub/Sub, so subscribers get them like any other message.

Which events are published, and on which channels, the shards decide, as
each command runs (Redis's ``notifyKeyspaceEvent`` reads the setting then):
each holds ``notify-keyspace-events`` (``__config`` reaches it in order
with the commands) and gives an event's class the K and E bits
(``wire.EVENT_KEYSPACE``, ``EVENT_KEYEVENT``) that the setting had for it
(see :mod:`shardkv.worker.events`).  This module publishes by those bits
alone, never by the setting it holds now: a write pipelined before
``CONFIG SET notify-keyspace-events ""`` is heard though its events come
back after the acceptor ran the CONFIG SET, and one before a CONFIG SET
that turns notifications on is not, though tracking had it noted.

It also keeps the shards' *event mask*, this acceptor's interest: K (E)
while a client of this acceptor is subscribed to a channel or pattern that
may hear a ``__keyspace@`` (``__keyevent@``) channel (the shards then note
the classes the setting names, while it has K or E too), and every class
while a client tracks keys (:mod:`shardkv.tracking`); 0, nothing noted at
all, otherwise.  So a write costs nothing for notifications nobody hears:
with several acceptors, no ``O`` frame and no ``seen`` round trip for an
acceptor with no such subscriber (see :mod:`shardkv.acceptor.causal`).
The mask goes to every shard as ``__events <mask>`` whenever it changes,
and to a shard again whenever its pipe is attached; a CONFIG SET of the
setting does not change it.

The mask is coarse on purpose: a subscriber of ``__keyspace@0__:foo``
makes every class of notify-keyspace-events wanted, for every key and
database; the shards compare a class, never a channel.

**Causal rule.**  When the mask grows for a client's command (SUBSCRIBE,
PSUBSCRIBE, CLIENT TRACKING on), that command's reply waits until every
shard has answered the ``__events`` (:func:`hold_replies`): a write that
any client sends after the reply, through any acceptor, or an expiry or
eviction that comes after it, is noted and reaches the new subscriber, as
in Redis.  A write sent before the reply is concurrent with the command,
and may or may not be heard.  Shrinking waits for nothing: the events
still on their way are published to whoever still listens.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from shardkv.acceptor import causal, pubsub
from shardkv.acceptor.client import Client
from shardkv.acceptor.pubsub import publish_message
from shardkv.acceptor.replies import RELAYED, Behind, ExecPlace, Slot, Within, in_pipe_order
from shardkv.protocol import bus, wire
from shardkv.protocol.glob import may_start_with
from shardkv.protocol.resp import encode_command
from shardkv.protocol.wire import Verb

SCRIPT_READ = wire.EVENT_SCRIPT_READ
KEYSPACE = wire.EVENT_KEYSPACE  # K
KEYEVENT = wire.EVENT_KEYEVENT  # E
AFTER_REPLY = wire.EVENT_AFTER_REPLY  # its command's client gets it after the reply
IN_REPLY = wire.EVENT_IN_REPLY  # ... inside the reply, where the class says
IN_REPLY_INNER = wire.EVENT_IN_REPLY_INNER
IN_REPLY_SHIFT = wire.EVENT_IN_REPLY_SHIFT
IN_REPLY_SKIP = wire.EVENT_IN_REPLY_SKIP
WAITER_SHIFT = wire.EVENT_WAITER_SHIFT
SERVED_EVENT = wire.EVENT_SERVED  # a blocked command's, that a write served
# Every class a shard can note (g $ l s h z x e t m n).
CLASSES = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10)
CLASSES |= (1 << 11) | (1 << 14)

# Who hears the shards' events, and who says what they must note, is
# bound by shardkv.acceptor.wiring (Wiring.event_listeners, event_masks):
# this module's publisher and mask, and client-side caching's.


# The channels keyspace notifications go to: K's and E's.
CHANNEL_PREFIXES = (b"__keyspace@", b"__keyevent@")


class _Applied:
    """The shards' answers to one ``__events``, and what waits for them all."""

    __slots__ = ("left", "waiters")

    def __init__(self, left: int) -> None:
        self.left = left
        self.waiters: list[Callable[[], None]] = []

    def deliver(self, body: bytes) -> None:  # an answer (an error too: the pipe is gone)
        self.left -= 1
        if not self.left:
            if STATE.applying is self:
                STATE.applying = None
            for waiter in self.waiters:
                waiter()


class _State:
    def __init__(self) -> None:
        self.mask = 0  # what the shards were last told to note
        # How many of this acceptor's subscribed channels and patterns (each
        # name once, whoever subscribed) may hear a __keyspace@ channel, and
        # a __keyevent@ channel (see on_subscriptions).
        self.hearing = [0, 0]
        # The last __events sent, until every shard has answered it.
        self.applying: _Applied | None = None
        # Atomic EXECs in flight that subscribe inside to a channel or
        # pattern that may hear keyspace events (see expect_subscriptions).
        self.expected = 0


STATE = _State()


def publish(server, events: list, origin: object) -> None:
    """Publish a command's events.  ``origin``: the sink of the command
    (its reply slot, or what gathers its parts and holds its slot), whose
    reply is delivered right after: a subscriber that sent the command
    gets its own notifications before that reply, even behind replies of
    its later commands that are in already, as Redis writes them while
    the command runs; after it, those Redis writes after its reply
    (``AFTER_REPLY`` in their class, see shardkv.worker.events).  Each
    event is published on the channels its class names (K, E: the shard's
    setting as the command ran)."""
    hearing = STATE.hearing
    if not (hearing[0] or hearing[1] or pubsub.haunted()):
        if pubsub.awaiting():
            _heard(server, _slot_of(origin), getattr(origin, "event_places", None))
        return
    before = _slot_of(origin)
    held = pubsub.HELD_PUBLISHES and before is not None and before.client in pubsub.HELD_PUBLISHES
    if held:  # (a PUBLISH its client sent after an earlier command: after that one's events)
        pubsub.release_held(before.client)  # type: ignore[union-attr]
    # An EXEC run as one operation: each command's events go to its own
    # place in the array (the rest, after it; see AtomicOp.event_places).
    places = getattr(origin, "event_places", None)
    at = 0
    behind = None  # where the sink's client gets what comes after its reply
    # (whether the reply is the one its events' places inside it name)
    inside = in_pipe_order(origin) or getattr(origin, "whole_reply", False)
    served = 0  # the last waiter served that the events named
    awaiting = pubsub.awaiting()
    last = None  # the sink of the event before (see pubsub.events_heard)
    served_here = pubsub.SERVED  # (served clients whose replies are not written yet)
    hold = None
    for i, (db, key, cls, event) in enumerate(events):
        sink = before
        if places:
            while at < len(places) and places[at][0] <= i:
                at += 1
            if at < len(places):
                sink = places[at][1]
        after: Behind | Within | None = None
        if cls & (AFTER_REPLY | SERVED_EVENT):
            # (a blocked command's that the write served: Redis serves it
            # once the write ended, after the write's reply)
            if sink is not None:
                if behind is None or behind.slot is not sink:
                    behind = Behind(sink)
                after = behind
            else:
                after = Behind(None)  # type: ignore[arg-type]
            # (one Redis writes after the served command's reply: see pubsub._deliver)
            after.served = cls & (AFTER_REPLY | SERVED_EVENT) == AFTER_REPLY | SERVED_EVENT
            # (a single-shard wait's: which, and whether Redis writes it inside its reply)
            after.waiter = waiter = cls >> WAITER_SHIFT
            if waiter and waiter != served:  # (its client's, served before those after it)
                pubsub.note_served(server, waiter)
                served = waiter
            after.within = Within(sink, *_place(cls)) if cls & IN_REPLY else None  # type: ignore[arg-type]
        elif cls & IN_REPLY and sink is not None and (inside or type(sink) is ExecPlace):
            # (not a part of a reply; in an atomic EXEC's array, the command's own)
            after = Within(sink, *_place(cls))
        if awaiting:  # (the messages a script PUBLISHed before this event, to other clients)
            if sink is not last and last is not None:
                pubsub.events_heard(server, last)  # (the command before it: all of its events came)
            last = sink
            pubsub.events_heard(server, sink, i)
        if served_here:  # (a change after one was served: others hear of it after its reply)
            hold = pubsub.served_before(cls >> WAITER_SHIFT if cls & SERVED_EVENT else 0)
        if cls & KEYSPACE:
            channel = b"__keyspace@%d__:%s" % (db, key)
            publish_message(server, channel, event, sink, behind=after, nth=i, hold=hold)
        if cls & KEYEVENT:
            channel = b"__keyevent@%d__:%s" % (db, event)
            publish_message(server, channel, key, sink, behind=after, nth=i, hold=hold)
    if awaiting:  # (and after its last)
        _heard(server, before, places)
    if held and server.bus is None:  # (and one sent after this command, before the next one's events)
        # One acceptor: its events are out everywhere now.  With several,
        # the command's reply waits until they are out on the others too
        # (a G frame's causal.Gate, the relay's answers, a served client's
        # events after the batch); its held PUBLISH, which reaches them
        # round the bus, goes once that reply came (_HeldPublish.data).
        pubsub.release_held(before.client, before)  # type: ignore[union-attr]


def _slot_of(origin: object) -> Slot | None:
    """The reply slot of the command whose sink ``origin`` is (see publish)."""
    before = getattr(origin, "slot", origin)
    if not isinstance(before, Slot):
        # (a cross-shard blocking command's try: its wait's slot, see
        # blocking._Attempt; a script run across shards: its retry's slot)
        before = getattr(before, "reply_place", None)
        if not isinstance(before, Slot):
            before = getattr(before, "slot", None)
            if not isinstance(before, Slot):
                before = None
    return before


def _heard(server, before: Slot | None, places: list | None) -> None:
    """All the events of the command whose reply slot ``before`` is (or of
    the commands of an atomic EXEC, in their ``places``) came: the messages
    its scripts PUBLISHed to other clients, still waiting, go (see
    pubsub._awaits)."""
    if before is not None:
        pubsub.events_heard(server, before)
    for _, place in places or ():
        pubsub.events_heard(server, place)


def _place(cls: int) -> tuple[int, bool]:
    """Where inside its command's reply an event of class ``cls`` goes
    (``wire.EVENT_IN_REPLY``): the whole elements after the first header,
    and whether the header of the next follows."""
    return cls >> IN_REPLY_SHIFT & IN_REPLY_SKIP, bool(cls & IN_REPLY_INNER)


def own_mask(server) -> int:
    """K (E) while someone here may hear a ``__keyspace@`` (``__keyevent@``)
    channel: the shards note what notify-keyspace-events names then.  Both
    while a client that left channels inside EXEC may still hear its own
    commands' events by them (pubsub._HAUNTS): with several acceptors its
    UNSUBSCRIBE's ``__events`` may reach a shard before those commands."""
    hearing = STATE.hearing
    if STATE.expected or pubsub.haunted():  # (until the next change of subscriptions once it is over)
        return KEYSPACE | KEYEVENT
    return (KEYSPACE if hearing[0] else 0) | (KEYEVENT if hearing[1] else 0)


def on_subscriptions(client: Client, new: list, gone: list) -> None:
    """The channels and patterns, ``(name, is_pattern)``, that this
    acceptor's subscribers started (``new``) and stopped (``gone``)
    covering, on ``client``'s command or departure (see
    :mod:`shardkv.acceptor.pubsub`), before its replies are queued."""
    hearing = STATE.hearing
    changed = False
    for names, step in ((new, 1), (gone, -1)):
        for name, is_pattern in names:
            for i, prefix in enumerate(CHANNEL_PREFIXES):
                if may_start_with(name, prefix) if is_pattern else name.startswith(prefix):
                    hearing[i] += step
                    changed = True
    if changed and update_mask(client.server):
        hold_replies(client)


def expect_subscriptions(client: Client, queued: list) -> Callable[[], None] | None:
    """An atomic EXEC of ``client`` is about to be dispatched: if it
    subscribes inside to a channel or pattern that may hear keyspace
    events, the shards note them from now on (the mask goes ahead of the
    operation on every pipe), as its (P)SUBSCRIBE runs only once the
    operation ran, and Redis delivers the events of the writes after it
    in the array.  The function to call once the EXEC is decided, run or
    not (None: nothing expected)."""
    if not any(
        cmd.name in ("subscribe", "psubscribe")
        and any(
            may_start_with(name, prefix) if cmd.name == "psubscribe" else name.startswith(prefix)
            for name in args[1:]
            for prefix in CHANNEL_PREFIXES
        )
        for cmd, args in queued
    ):
        return None
    STATE.expected += 1
    update_mask(client.server)

    def decided() -> None:
        STATE.expected -= 1
        update_mask(client.server)

    return decided


def hold_replies(client: Client) -> None:
    """``client``'s replies from now on wait until every shard has answered
    the ``__events`` just sent (see the causal rule above)."""
    applied = STATE.applying
    if applied is None or client.closed:
        return
    slot = Slot(client)
    client.pending.append(slot)
    applied.waiters.append(lambda: slot.deliver(b""))


def when_applied(then: Callable[[], None]) -> None:
    """Call ``then`` once every shard has answered the last ``__events``
    (at once if they all have)."""
    applied = STATE.applying
    if applied is None:
        then()
    else:
        applied.waiters.append(then)


def on_events(server, events: list, origin: object) -> None:
    """A shard's events (see :meth:`shardkv.shardlink.ShardLink._frame`)."""
    for listener in server.wiring.event_listeners:
        listener(server, events, origin)


# The multi-shard commands whose events were relayed, until the other
# acceptors answered: relay number -> (the command's origin, the index of
# each event relayed among its events), for an invalidation that one of
# them sends back to its client, a REDIRECT target (see tracking.bus_invalidate).
RELAYS: dict[int, tuple[object, list[int]]] = {}
_RELAYS = itertools.count(1)


class _Relayed:
    """The sink, in the gate of a relayed command's reply, that forgets it."""

    __slots__ = ("number",)

    def __init__(self, number: int) -> None:
        self.number = number

    def deliver(self, body: bytes) -> None:
        RELAYS.pop(self.number, None)


def relay(server, events: list, origin: object = None) -> None:
    """A multi-shard command of this acceptor's ran: its events, in its
    order, to the other acceptors (a read of a script is this client's)."""
    kept = [i for i, e in enumerate(events) if e[2] != SCRIPT_READ]
    if kept and server.bus is not None:
        number = next(_RELAYS)
        gate = causal.gathering()
        if gate is not None:
            RELAYS[number] = (origin, kept)
        # the command's reply waits for them
        causal.remote(server, bus.EVENTS, [number, *[list(events[i]) for i in kept]])
        if gate is not None:
            gate.hold(_Relayed(number), b"")


def bus_events(server, origin: int, args: list) -> None:
    """Another acceptor's multi-shard command's events (see :func:`relay`):
    answered once what handing them out asked of the other acceptors in
    turn is answered (an invalidation for a REDIRECT target there, see
    :mod:`shardkv.acceptor.causal`)."""
    number, *relayed = args
    causal.gather()
    causal.OTHERS = (-1, number, (origin, list(range(len(relayed)))))
    try:
        on_events(server, [tuple(e) for e in relayed], RELAYED)
    finally:
        causal.OTHERS = None
        gate = causal.gathered()
    if gate is not None and server.bus.answering():
        causal.answer_after(server, gate)


def update_mask(server) -> bool:
    """Tell every shard what to note, if that changed; whether the mask
    grew (then :func:`hold_replies` can make a reply wait for it)."""
    mask = 0
    for fn in server.wiring.event_masks:
        mask |= fn(server)
    old = STATE.mask
    if mask == old:
        return False
    STATE.mask = mask
    links = server.links
    applied = STATE.applying = _Applied(len(links)) if links else None
    for link in links:
        _send_mask(link, mask, applied)
    return bool(mask & ~old)


def _send_mask(link, mask: int, sink: object = None) -> None:
    # Never refused while a script is busy there: the shard notes the new
    # mask's classes from the script's end on (a -BUSY would leave it noting
    # the old ones until the mask next changes).
    link.send_control(encode_command([Verb.EVENTS, b"%d" % mask]), sink or _IGNORE)


class _Ignore:
    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


def on_attach(server, link) -> None:
    link.on_events = lambda events, origin: on_events(server, events, origin)
    if server.nacceptors > 1:
        link.relay_events = lambda events, origin: relay(server, events, origin)
        # (the events of another acceptor's command, which its script's
        # PUBLISH messages may wait among: see pubsub.events_from_elsewhere)
        link.others_events = lambda seq, events: pubsub.events_from_elsewhere(
            server, link.index, seq, events, lambda some: on_events(server, some, None)
        )
        link.others_gone = lambda: pubsub.after_events_gone(server, link.index)
    # Always, 0 too: a worker that outlived the acceptor may still note
    # what the previous one wanted.
    _send_mask(link, STATE.mask)
