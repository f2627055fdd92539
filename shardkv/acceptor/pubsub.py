"""Pub/Sub: SUBSCRIBE, PSUBSCRIBE, PUBLISH and friends, in the acceptor only.

Channels have nothing to do with keys, so no shard takes part: every client
is connected to this one process, and a message goes straight from the
publisher's command to each subscriber's reply queue.  A message is a
*push* (RESP3 ``>``, a plain array in RESP2) appended to the subscriber's
:attr:`~shardkv.acceptor.client.Client.pending` queue, so it leaves after every
reply the subscriber was already waiting for, and messages leave in the
order they were published.

A subscriber that never reads would make the acceptor buffer its messages
without end.  As Redis does with ``client-output-buffer-limit pubsub``,
a subscribed client is disconnected when its output buffer passes the
hard limit, or stays above the soft limit for the soft number of seconds.

In RESP2 a subscribed connection may only (un)subscribe, PING, QUIT and
RESET (a check of :mod:`shardkv.acceptor.dispatch`, where Redis's
``processCommand`` has it); in RESP3 pushes are told apart from replies,
so every command is allowed.

A script is atomic in Redis: a (un)subscribe sent while one runs is served
after it.  Scripts run in the workers, so a (un)subscribe first waits until
every shard has answered a ``__ping`` (:func:`_after_scripts`): the
scripts each shard was running, or parked for, have ended, their held
PUBLISHes are out, and no PUBSUB NUMSUB of theirs counts it.  It does
so only while a script may run: with one acceptor, while a link of its
own has a command to answer or an operation; with several, that or a
shard's script flag (:mod:`shardkv.runtime.scriptflags`).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from functools import partial

from shardkv.acceptor import causal, monitor
from shardkv.acceptor.blocking import WAITING, serve_after_scripts
from shardkv.acceptor.bus import Failed, fail_slot
from shardkv.acceptor.client import Client
from shardkv.acceptor.replies import (
    AFTER_DECISION,
    AFTER_EVENTS,
    EXEC_PUBLISHES,
    PUBLISHING,
    Behind,
    ExecPlace,
    InReply,
    MutedSlot,
    Pushed,
    Slot,
    Trailing,
    Within,
    in_call_order,
)
from shardkv.acceptor.state import AFTER_SCRIPTS, REPLY_ON, REPLY_SKIP
from shardkv.acceptor.transactions import Exec, discard_transaction
from shardkv.protocol import errors, wire
from shardkv.protocol.bus import PUBLISH, PUBSUB, SPUBLISH
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import Push, encode
from shardkv.runtime import config

log = logging.getLogger("shardkv.acceptor")

# channel -> its subscribers, in the order they subscribed, each with when
# (time.monotonic_ns(): see :func:`publish_message`'s ``since``)
CHANNELS: dict[bytes, dict[Client, int]] = {}
# pattern -> (its matcher, its subscribers as in CHANNELS)
PATTERNS: dict[bytes, tuple] = {}
# shard channel (SSUBSCRIBE's) -> its subscribers, as in CHANNELS.  Sharded
# Pub/Sub in a standalone Redis is Pub/Sub on channels of their own, which
# no pattern matches and no keyspace event reaches; its channels name a
# slot only in a cluster.
SHARD_CHANNELS: dict[bytes, dict[Client, int]] = {}


def _count(client: Client) -> int:
    return len(client.state.channels) + len(client.state.patterns)


# -- subscribing -------------------------------------------------------------


# The clients whose UNSUBSCRIBE or PUNSUBSCRIBE waits for the shards'
# scripts (:func:`_after_scripts`), and what they leave: (patterns?, the
# names, or None for all).  In Redis the command is served before any
# PUBLISH read after it (after the script, if one runs), so a client's
# PUBLISH that arrives meanwhile neither reaches nor counts them; a
# script's PUBLISH still does (the script came first), and so do the
# keyspace events of the leaving client's own earlier command (the
# message's ``before`` is that command's reply slot: see _stays).
_LEAVING: dict[Client, tuple[bool | str | None, frozenset[bytes] | None]] = {}
_ALL = "all"  # (a RESET's mark: every channel, pattern and shard channel)


def _leaves(client: Client, name: bytes, pattern: bool | None) -> bool:
    """Whether ``client`` is leaving channel (pattern: True, shard
    channel: None) ``name``."""
    mark = _LEAVING.get(client)
    return (
        mark is not None and (mark[0] is pattern or mark[0] is _ALL) and (mark[1] is None or name in mark[1])
    )


def _stays(client: Client, before: Slot | None) -> bool:
    """Whether a message for the command whose reply slot is ``before``
    still reaches ``client`` though it is leaving: its own command's, sent
    before the unsubscribe, which Redis ran first."""
    return before is not None and before.client is client


def _after_scripts(
    client: Client,
    run,
    args: list[bytes],
    leaving: tuple[bool | str | None, frozenset[bytes] | None] | None = None,
) -> None:
    """Run ``run(client, args)`` once no shard runs a script that started
    before it (:func:`~shardkv.acceptor.blocking.serve_after_scripts`),
    or answer it ``-BUSY`` if one is past busy-reply-threshold meanwhile;
    messages of the client's earlier subscriptions still reach it, before
    the confirmations (Redis publishes them before it serves the command),
    and an (un)subscribe takes effect before what other clients send after
    it, as in Redis.  ``leaving``: an (un)subscribe's mark in
    :data:`_LEAVING` while it waits."""
    if leaving is None:
        serve_after_scripts(client, run, args, flagged=True)
        return
    serve_after_scripts(client, run, args, partial(_LEAVING.pop, client, None), flagged=True)
    if client.state.blocked_token == AFTER_SCRIPTS:  # it waits (not run at once)
        _LEAVING[client] = leaving


def subscribe(client: Client, args: list[bytes]) -> None:
    """SUBSCRIBE channel [channel ...]"""
    _after_scripts(client, _subscribe, args)


def unsubscribe(client: Client, args: list[bytes]) -> None:
    """UNSUBSCRIBE [channel [channel ...]]"""
    _after_scripts(client, _unsubscribe, args, (False, frozenset(args[1:]) or None))


def psubscribe(client: Client, args: list[bytes]) -> None:
    """PSUBSCRIBE pattern [pattern ...]"""
    _after_scripts(client, _psubscribe, args)


def punsubscribe(client: Client, args: list[bytes]) -> None:
    """PUNSUBSCRIBE [pattern [pattern ...]]"""
    _after_scripts(client, _punsubscribe, args, (True, frozenset(args[1:]) or None))


def ssubscribe(client: Client, args: list[bytes]) -> None:
    """SSUBSCRIBE shardchannel [shardchannel ...]"""
    if client.state.in_exec:  # Redis's CLIENT_DENY_BLOCKING: EXEC wants one reply per command
        client.reply_error(errors.SSUBSCRIBE_DENY_BLOCKING)
        return
    _after_scripts(client, _ssubscribe, args)


def sunsubscribe(client: Client, args: list[bytes]) -> None:
    """SUNSUBSCRIBE [shardchannel [shardchannel ...]]"""
    _after_scripts(client, _sunsubscribe, args, (None, frozenset(args[1:]) or None))


def _gone(client: Client) -> bool:
    """Whether ``client`` is closed and forgotten: one whose connection is
    gone while it still runs what it sent (``Acceptor.leaving``) subscribes
    as Redis, which ran those commands as it read them, did, until it is
    forgotten (``on_disconnect``)."""
    return client.closed and client not in client.server.leaving


def _subscribe(client: Client, args: list[bytes]) -> None:
    new = []
    replies = []
    if client.state.exec_parts is not None:
        _haunt(client, True, frozenset(c for c in args[1:] if c not in client.state.channels), {})
    for channel in args[1:]:
        if not _gone(client) and client.state.add_subscription(client.state.channels, channel):
            subscribers = CHANNELS.get(channel)
            if subscribers is None:
                subscribers = CHANNELS[channel] = {}
                new.append((channel, False))
            subscribers[client] = time.monotonic_ns()
        replies.append(Push([b"subscribe", channel, _count(client)]))
    _reply(client, replies, new, [])


def _unsubscribe(client: Client, args: list[bytes]) -> None:
    if _HELD_FOR:
        release_held_messages(client)
    names = args[1:] or list(client.state.channels)
    gone: list[tuple[bytes, bool]] = []
    replies = []
    if client.state.exec_parts is not None:
        _haunt(client, False, frozenset(c for c in names if c in client.state.channels), {})
    if not names:
        replies.append(Push([b"unsubscribe", None, _count(client)]))
    for channel in names:
        _drop_channel(client, channel, gone)
        replies.append(Push([b"unsubscribe", channel, _count(client)]))
    _reply(client, replies, [], gone)


def _psubscribe(client: Client, args: list[bytes]) -> None:
    new = []
    replies = []
    if client.state.exec_parts is not None:
        _haunt(client, True, frozenset(), {p: None for p in args[1:] if p not in client.state.patterns})
    for pattern in args[1:]:
        if not _gone(client) and client.state.add_subscription(client.state.patterns, pattern):
            entry = PATTERNS.get(pattern)
            if entry is None:
                entry = PATTERNS[pattern] = (compile_glob(pattern), {})
                new.append((pattern, True))
            entry[1][client] = time.monotonic_ns()
        replies.append(Push([b"psubscribe", pattern, _count(client)]))
    _reply(client, replies, new, [])


def _punsubscribe(client: Client, args: list[bytes]) -> None:
    if _HELD_FOR:
        release_held_messages(client)
    names = args[1:] or list(client.state.patterns)
    gone: list[tuple[bytes, bool]] = []
    replies = []
    if client.state.exec_parts is not None:
        patterns = client.state.patterns
        _haunt(client, False, frozenset(), {p: PATTERNS[p][0] for p in names if p in patterns})
    if not names:
        replies.append(Push([b"punsubscribe", None, _count(client)]))
    for pattern in names:
        _drop_pattern(client, pattern, gone)
        replies.append(Push([b"punsubscribe", pattern, _count(client)]))
    _reply(client, replies, [], gone)


# A client that left or joined channels or patterns inside EXEC, after
# commands of the EXEC whose replies were still to come (run as one
# operation: whose places, see replies.ExecPlace): the messages those
# commands make it hear (their keyspace events) reach it by what it was
# subscribed to as each ran, as Redis delivers them then.  By client, in
# order: (those parts, joined?, the channels, the patterns with their
# matchers (None if joined)).
_Change = tuple[list, bool, frozenset[bytes], dict[bytes, Callable | None]]
_HAUNTS: dict[Client, list[_Change]] = {}


def haunted() -> bool:
    """Whether a client left or joined channels or patterns inside EXEC
    whose commands' messages may still come (see _HAUNTS): their keyspace
    events are published though no one else may hear them."""
    if _HAUNTS:
        for client, changes in list(_HAUNTS.items()):
            kept = [change for change in changes if any(map(_unfinished, change[0]))]
            if kept:
                _HAUNTS[client] = kept
            else:
                del _HAUNTS[client]
    return bool(_HAUNTS)


def _unfinished(part: object) -> bool:
    """Whether messages of the command of EXEC's ``part`` may still come."""
    if type(part) is ExecPlace:
        return not part.closed
    return getattr(part, "data", b"") is None


def _haunt(
    client: Client, joined: bool, channels: frozenset[bytes], patterns: dict[bytes, Callable | None]
) -> None:
    """``client`` joins or leaves ``channels`` and ``patterns`` inside EXEC (see _HAUNTS)."""
    kept = [change for change in _HAUNTS.get(client, ()) if any(map(_unfinished, change[0]))]
    waiting = [part for part in client.state.exec_parts or () if _unfinished(part)]
    if waiting and (channels or patterns):
        kept.append((waiting, joined, channels, patterns))
    if kept:
        _HAUNTS[client] = kept
    else:
        _HAUNTS.pop(client, None)


def _changes_after(before: Slot) -> list[_Change]:
    """The changes of its subscriptions that the client of ``before`` made
    inside EXEC after the command whose reply (or place) that is."""
    return [change for change in _HAUNTS.get(before.client, ()) if any(p is before for p in change[0])]


def _was_in(changes: list[_Change], name: bytes, pattern: bool) -> bool | None:
    """Whether the client was subscribed to ``name`` as the command ran
    (None: as it is now): the first change of it after the command says."""
    for _, joined, channels, patterns in changes:
        if name in (patterns if pattern else channels):
            return not joined
    return None


def _ssubscribe(client: Client, args: list[bytes]) -> None:
    replies = []
    for channel in args[1:]:
        if not _gone(client) and client.state.add_subscription(client.state.shard_channels, channel):
            SHARD_CHANNELS.setdefault(channel, {})[client] = time.monotonic_ns()
        # (the count: the client's shard channels alone, as Redis's)
        replies.append(Push([b"ssubscribe", channel, len(client.state.shard_channels)]))
    _reply(client, replies, [], [])


def _sunsubscribe(client: Client, args: list[bytes]) -> None:
    names = args[1:] or list(client.state.shard_channels)
    replies = []
    if not names:
        replies.append(Push([b"sunsubscribe", None, 0]))
    for channel in names:
        _drop_shard_channel(client, channel)
        replies.append(Push([b"sunsubscribe", channel, len(client.state.shard_channels)]))
    _reply(client, replies, [], [])


def _reply(client: Client, replies: list[Push], new: list, gone: list) -> None:
    """Queue a (un)subscribe's confirmations, once the ``on_subscriptions``
    hooks heard of the names this acceptor started or stopped covering (a
    hook may make the confirmations wait: see shardkv.acceptor.notifications)."""
    _limit_output(client)
    if new or gone:
        for hook in client.server.wiring.on_subscriptions:
            hook(client, new, gone)
    for reply in replies:
        client.reply_push(reply)


def _drop_channel(client: Client, channel: bytes, gone: list) -> None:
    if client.state.remove_subscription(client.state.channels, channel):
        subscribers = CHANNELS[channel]
        del subscribers[client]
        if not subscribers:
            del CHANNELS[channel]
            gone.append((channel, False))


def _drop_shard_channel(client: Client, channel: bytes) -> None:
    if client.state.remove_subscription(client.state.shard_channels, channel):
        subscribers = SHARD_CHANNELS[channel]
        del subscribers[client]
        if not subscribers:
            del SHARD_CHANNELS[channel]


def _drop_pattern(client: Client, pattern: bytes, gone: list) -> None:
    if client.state.remove_subscription(client.state.patterns, pattern):
        subscribers = PATTERNS[pattern][1]
        del subscribers[client]
        if not subscribers:
            del PATTERNS[pattern]
            gone.append((pattern, True))


def unsubscribe_all(client: Client) -> None:
    """Drop every subscription of ``client``, without replying."""
    gone: list[tuple[bytes, bool]] = []
    for channel in list(client.state.channels):
        _drop_channel(client, channel, gone)
    for pattern in list(client.state.patterns):
        _drop_pattern(client, pattern, gone)
    for channel in list(client.state.shard_channels):
        _drop_shard_channel(client, channel)
    _reply(client, [], [], gone)


def on_disconnect(client: Client) -> None:
    if _HELD_FOR:
        _HELD_FOR.pop(client, None)  # (what waits for a served reply delivers it to no one)
    if client.state.subscribed:
        unsubscribe_all(client)
    _soft_since.pop(client, None)
    if _LEAVING:
        _LEAVING.pop(client, None)
    if _PUBLISHING:
        _PUBLISHING.pop(client.id, None)
    if _HAUNTS:
        _HAUNTS.pop(client, None)
    if HELD_PUBLISHES:  # (Redis ran them as it read them)
        for slot in list(HELD_PUBLISHES.get(client, ())):
            # (once the replies ahead came: its place, kept, releases it then)
            if slot.ready() or all(item is not slot for item in client.pending):
                _release(slot)


# -- publishing --------------------------------------------------------------


class _Message:
    """One published message, encoded at most once per protocol."""

    __slots__ = ("value", "encoded")

    def __init__(self, value: Push) -> None:
        self.value = value
        self.encoded: list[bytes | None] = [None, None]

    def body(self, resp3: bool) -> bytes:
        data = self.encoded[resp3]
        if data is None:
            data = self.encoded[resp3] = encode(self.value, resp3)
        return data


def publish(client: Client, args: list[bytes]) -> None:
    """PUBLISH channel message"""
    _publish(client, args, PUBLISH)


def spublish(client: Client, args: list[bytes]) -> None:
    """SPUBLISH shardchannel message"""
    _publish(client, args, SPUBLISH)


def _publish(client: Client, args: list[bytes], verb: bytes) -> None:
    server = client.server
    bus = server.bus
    shard = verb == SPUBLISH
    state = client.state
    if not state.in_exec:
        ahead = _unanswered(client, client.pending) if client.pending else None
    else:  # (an EXEC's commands routed one by one: those before it in its array)
        ahead = _unanswered(client, state.exec_parts) if state.exec_parts else None
        if state.exec_before and not (ahead and type(ahead[-1]) is _HeldPublish):
            # and its client's replies queued ahead of the EXEC
            ahead = (ahead or []) + (_unanswered(client, state.exec_before) or [])
            ahead = ahead or None
    if bus is None:
        if AFTER_EVENTS and client.state.in_exec:  # (see transactions._events_before)
            place, noted = AFTER_EVENTS[-1]
            copies = _to_itself(client, args[1], args[2], shard)
            others = publish_message(
                server, args[1], args[2], place, shard=shard, publisher=client, noted=noted
            )
            client.reply(copies + others)
            return
        if ahead:  # (a subscribed publisher's own copies go now, before its reply, as in Redis)
            copies = _to_itself(client, args[1], args[2], shard) if state.subscribed else 0
            _hold(client, ahead, partial(_publish_held, server, args[1], args[2], shard, copies))
            return
        client.reply(publish_message(server, args[1], args[2], shard=shard))
        return
    # Every acceptor, this one included, delivers when the supervisor passes
    # the message on, so all deliver in the supervisor's one order; the
    # reply is the sum of their counts.
    pending = getattr(client, "pending", None)
    if pending is None:
        # A script's call (shardkv.acceptor.scriptcalls): the script waits.
        answer = client.reply_later()  # type: ignore[attr-defined]
        bus.ask(
            verb,
            [args[1], args[2]],
            lambda counts: answer(sum(counts)),
            everyone=True,
            failed=client.reply_error,
        )
        return
    # Inside EXEC, whose later commands cannot wait, the publisher's own
    # copies go now, and this acceptor's delivery passes it over.
    own = _to_itself(client, args[1], args[2], shard) if state.in_exec else None
    # (an EXEC run as one operation, its reply built: its events go first,
    # and the bus publishes after them in order, held behind nothing)
    deferred = AFTER_DECISION[0] if AFTER_EVENTS and state.in_exec else None
    held = _HeldPublish(client, ahead) if ahead and deferred is None else None
    slot = held or Slot(client)
    pending.append(slot)
    _PUBLISHING.setdefault(client.id, deque()).append((slot, own))
    # A subscribed publisher (RESP3) may be one of its receivers: what it
    # sent next (an unsubscribe, RESET, QUIT) waits until this acceptor has
    # delivered, as Redis delivers before it reads the next command.  So
    # does a held one's (see _HeldPublish): the events of its next writes
    # come after the message, here and on the other acceptors.
    waits = (state.subscribed or held is not None) and not state.blocked_token and not state.in_exec
    if waits:
        state.block(PUBLISHING, shown=False)
    # (held inside an EXEC routed command by command: its later commands wait)
    counted = held is not None and state.in_exec and state.exec_before is not None
    if counted:
        EXEC_PUBLISHES[client.id] = EXEC_PUBLISHES.get(client.id, 0) + 1

    def go_on() -> None:
        if counted:
            left = EXEC_PUBLISHES.pop(client.id, 1) - 1
            if left:
                EXEC_PUBLISHES[client.id] = left
                return
        if (waits or counted) and state.unblock(PUBLISHING):
            if client.waiting():
                server.loop.call_soon(client.resume)  # type: ignore[union-attr]
            elif client.pending:
                client.flush()

    def answered(counts: list) -> None:
        slot.deliver(b":%d\r\n" % sum(counts))
        go_on()

    failed = fail_slot(slot)

    def refused(message: str) -> None:
        failed(message)
        go_on()

    ask = partial(bus.ask, verb, [args[1], args[2], client.id], answered, everyone=True, failed=refused)
    if held is not None:
        held.go = lambda _slot: ask()
        HELD_PUBLISHES.setdefault(client, []).append(held)
        return
    if deferred is not None:  # (see transactions._events_before)
        deferred.append(ask)
        return
    ask()


# A plain (S)PUBLISH pipelined behind its client's commands whose replies
# have not come yet, while keyspace notifications are on: the message
# waits for their events, as Redis writes those as each command runs,
# before it reads the next (see _HeldPublish).
HELD_PUBLISHES: dict[Client, list[_HeldPublish]] = {}
NOTIFY_SETTING = "notify-keyspace-events"


class _HeldPublish(Slot):
    """The reply slot of a plain (S)PUBLISH that waits to go (``go``,
    given the slot) until every reply ``ahead`` of it came, the events of
    their commands published just before each: by
    :func:`release_held` as the next events of its client's commands are
    handed out, or else as its client's replies are written (its
    ``data`` read, see Client.flush)."""

    __slots__ = ("ahead", "go", "soon", "_data")

    # Under CLIENT REPLY OFF or SKIP it keeps its place (a MutedSlot), read
    # as its client's replies are written, which may release it.
    muted_in_place = True
    # Its client's connection gone, it still waits there for the replies
    # ahead (Client.flush), as Redis ran it as it read it.
    stays_when_gone = True

    def __init__(self, client: Client, ahead: list) -> None:
        self.client = client
        self._data: bytes | None = None
        self.ahead = ahead
        self.go: Callable[[_HeldPublish], None] | None = None
        self.soon = False  # (its release is scheduled)

    @property
    def data(self) -> bytes | None:
        if self.go is not None and not self.soon and self.ready():
            # (read by Client.flush, or EXEC's array: it goes right after, as
            # its delivery, or its answer where no supervisor passes it on,
            # may write to this client, which must not happen inside a flush)
            self.soon = True
            loop = self.client.server.loop
            if loop is None:  # (no event loop: a unit test's server)
                _release(self)
            else:
                loop.call_soon(_release_and_write, self)
        return self._data

    @data.setter
    def data(self, body: bytes | None) -> None:
        self._data = body

    def ready(self, done: object = None) -> bool:
        """Whether every reply ahead came (``done``'s events are all out)."""
        return all(item is done or item.data is not None for item in self.ahead)


def _unanswered(client: Client, replies: deque | list) -> list | None:
    """Of the client's ``replies`` (pending, or those in EXEC's array
    before the command), those still to come, if keyspace notifications
    are on (a PUBLISH behind them waits: see _HeldPublish); not an atomic
    EXEC's places (their events: see transactions._events_before)."""
    if not client.server.config.get(NOTIFY_SETTING):
        return None
    ahead = []
    for item in reversed(replies):
        if type(item) is not bytes and type(item) is not ExecPlace and item.data is None:
            if type(item) is MutedSlot:  # (CLIENT REPLY OFF or SKIP: the slot its events name)
                item = item.slot
            ahead.append(item)
            if type(item) is _HeldPublish:  # (it waits for those before it: back to there)
                break
    return ahead or None


def _hold(client: Client, ahead: list, go: Callable[[_HeldPublish], None]) -> None:
    slot = _HeldPublish(client, ahead)
    slot.go = go
    client.pending.append(slot)
    HELD_PUBLISHES.setdefault(client, []).append(slot)


def _publish_held(server, channel: bytes, message: bytes, shard: bool, own: int, slot: _HeldPublish) -> None:
    """One acceptor: the held PUBLISH runs now, for others than its
    client, which got its ``own`` copies as it sent it (see _to_itself)."""
    count = publish_message(server, channel, message, shard=shard, publisher=slot.client)
    slot.deliver(b":%d\r\n" % (own + count))


def _release(slot: _HeldPublish) -> None:
    go, slot.go = slot.go, None
    held = HELD_PUBLISHES.get(slot.client)
    if held is not None:
        try:
            held.remove(slot)
        except ValueError:
            pass
        if not held:
            del HELD_PUBLISHES[slot.client]
    if go is not None:
        go(slot)


def _release_and_write(slot: _HeldPublish) -> None:
    """Release ``slot`` on a turn of the loop of its own, with those held
    behind it that this made ready (at K=1 each is answered at once: not
    one loop turn each), and write what that made ready (at K=1 their
    answers: no shard's reply may come to)."""
    _release(slot)
    release_held(slot.client)
    slot.client.server.flush_dirty_clients()


def release_held(client: object, done: object = None) -> None:
    """Events of ``client``'s commands are about to be handed out (all of
    ``done``'s were): its held PUBLISHes whose replies ahead all came (or
    are ``done``'s) go first, in order (see _HeldPublish)."""
    held = HELD_PUBLISHES.get(client)  # type: ignore[call-overload]
    while held and held[0].ready(done):
        _release(held[0])
        held = HELD_PUBLISHES.get(client)  # type: ignore[call-overload]


def held_publishes() -> bool:
    """Whether a PUBLISH waits for its client's earlier events (see _HeldPublish)."""
    return bool(HELD_PUBLISHES)


def _to_itself(client: Client, channel: bytes, message: bytes, shard: bool) -> int:
    """A (S)PUBLISH inside EXEC (K > 1): deliver the publisher's own copies
    now, among EXEC's replies before the PUBLISH's, as Redis delivers them
    as the command runs, by the subscriptions the client has then (the
    commands after it in the EXEC, an UNSUBSCRIBE or a SUBSCRIBE, run
    before the message comes round the bus); how many."""
    state = client.state
    if not state.subscribed:
        return 0
    copies = []
    if shard:
        if channel in state.shard_channels:
            copies.append(Push([b"smessage", channel, message]))
    else:
        if channel in state.channels:
            copies.append(Push([b"message", channel, message]))
        if state.patterns:
            for pattern, (match, subs) in PATTERNS.items():  # (in publish_message's order)
                if client in subs and match(channel):
                    copies.append(Push([b"pmessage", pattern, channel, message]))
    if copies:
        limits = _limits(client.server)
        for copy in copies:
            _deliver_safely(client, _Message(copy), limits, None)
    return len(copies)


# K > 1: this acceptor's PUBLISH commands on their way round the bus, by
# client id: each one's reply slot, and how many copies its publisher got
# as it published (inside EXEC, see _to_itself), or None: a publisher that
# is subscribed itself gets the message before the reply, as in Redis.
_PUBLISHING: dict[int, deque[tuple[Slot, int | None]]] = {}
# A script's PUBLISH (K > 1), by its token: how many of the script's
# events its client gets before the message (see publish_message's ``noted``).
_NOTED: dict[int, int] = {}


# K > 1: a script's PUBLISH on its way round the bus, by the negative
# token its bus message carries in place of a client id: the script's
# reply slot, which its own client's message precedes (see
# scriptcalls.call).
_SCRIPT_TOKENS = itertools.count(1)


def script_publishing(before: Slot | None, noted: int = -1) -> int:
    """The token for a script's PUBLISH whose reply slot is ``before``
    (0: none known), after ``noted`` of the script's events."""
    if before is None:
        return 0
    token = -next(_SCRIPT_TOKENS)
    _PUBLISHING[token] = deque(((before, None),))
    if noted >= 0:
        _NOTED[token] = noted
    return token


def script_published(token: int) -> None:
    """The script's PUBLISH was answered (or refused)."""
    if token:
        _PUBLISHING.pop(token, None)
        _NOTED.pop(token, None)


def bus_publish(server, origin: int, args: list, shard: bool = False) -> int:
    """A PUBLISH passed on by the supervisor (another acceptor's, or this
    one's own, then with its reply slot waiting): deliver here.  A
    script's has a fourth argument: its ``since`` (see publish_message)."""
    before = None
    noted = -1
    if origin == server.index and len(args) > 2:
        slots = _PUBLISHING.get(args[2])
        if slots:
            before, own = slots.popleft()
            if not slots:
                del _PUBLISHING[args[2]]
            if own is not None:  # its copies went as it published
                return own + publish_message(server, args[0], args[1], shard=shard, publisher=before.client)
        if _NOTED:  # (its own script's token: another acceptor's counts its own, the same numbers)
            noted = _NOTED.pop(args[2], -1)
    elif len(args) > 5:  # (another acceptor's script: after the events it noted, that come here?)
        found = receivers(args[0], args[1], int(args[3]), shard)
        if not _after_events(server, args[4:], found):
            deliver(server, found)
        return len(found)
    return publish_message(
        server, args[0], args[1], before, int(args[3]) if len(args) > 3 else 0, shard, noted=noted
    )


# K > 1: another acceptor's script's PUBLISH messages for clients here, by
# the shard and the number of the ``O`` frame that will bring the events
# the script noted before its PUBLISH (see wire.encode_script_query):
# ``(count, receivers)`` each, in the order published, until that frame's
# first ``count`` events are handed out (see events_from_elsewhere).
_AFTER_EVENTS: dict[tuple[int, int], list[tuple[int, list[tuple[Client, _Message]]]]] = {}


def _after_events(server, elsewhere: list, found: list[tuple[Client, _Message]]) -> bool:
    """Another acceptor's script's PUBLISH, which reaches ``found`` here:
    ``elsewhere`` names the script's shard, then ``pipe, seq, count`` per
    acceptor (see wire.encode_script_query).  Where the shard's ``O`` frame
    ``seq`` to this acceptor brings events the script noted before the
    PUBLISH, the message waits for the first ``count`` of them, as Redis
    writes each event as the script's calls run (they reach this acceptor
    on their own pipe, at the end of the script's batch: the script waits
    for this acceptor's answer, so the frame comes later).  Whether it
    waits."""
    for i in range(1, len(elsewhere) - 2, 3):
        if int(elsewhere[i]) != server.index:
            continue
        key = (int(elsewhere[0]), int(elsewhere[i + 1]))
        if len(_AFTER_EVENTS) >= _AWAITING_MAX and key not in _AFTER_EVENTS:
            return False  # (its frame never comes, its worker gone: bounded)
        _AFTER_EVENTS.setdefault(key, []).append((int(elsewhere[i + 2]), found))
        return True
    return False


def events_from_elsewhere(server, shard: int, seq: int, events: list, emit: Callable[[list], None]) -> None:
    """``emit`` the events of ``shard``'s ``O`` frame ``seq``, the messages
    that wait for them (:func:`_after_events`) among them, each after the
    events noted before its PUBLISH."""
    if not _AFTER_EVENTS:
        emit(events)
        return
    waiting = _AFTER_EVENTS.pop((shard, seq), None)
    for stale in [key for key in _AFTER_EVENTS if key[0] == shard and key[1] < seq]:
        for _, found in _AFTER_EVENTS.pop(stale):  # (their frame never came)
            deliver(server, found)
    if not waiting:
        emit(events)
        return
    done = 0
    try:
        for count, found in waiting:
            if count > done:
                emit(events[done:count])
                done = count
            deliver(server, found)
    finally:
        if done < len(events):
            emit(events[done:])


def after_events_gone(server, shard: int) -> None:
    """``shard``'s worker is gone (its pipe here closed), and with it the
    ``O`` frames its scripts' PUBLISH messages wait for: deliver them now,
    in the order published, before anything its next worker's events
    (numbered from 1 again) or a later PUBLISH bring."""
    if _AFTER_EVENTS:
        for key in sorted(key for key in _AFTER_EVENTS if key[0] == shard):
            for _, found in _AFTER_EVENTS.pop(key):
                deliver(server, found)


def bus_spublish(server, origin: int, args: list) -> int:
    """An SPUBLISH passed on by the supervisor, as :func:`bus_publish`."""
    return bus_publish(server, origin, args, shard=True)


def publish_message(
    server,
    channel: bytes,
    message: bytes,
    before: Slot | None = None,
    since: int = 0,
    shard: bool = False,
    publisher: Client | None = None,
    behind: Behind | Within | None = None,
    noted: int = -1,
    nth: int = -1,
    hold: object = None,
) -> int:
    """Deliver ``message`` to the subscribers of ``channel``; how many got it.
    ``before``: the publisher's reply slot (K > 1), which its own copy precedes
    (``behind``: follows, a keyspace event Redis writes after the reply).
    ``since``: a script's PUBLISH, the time.monotonic_ns() its run started:
    a client that subscribed after that did so while the script ran, and
    Redis, where a script is atomic, would have served its SUBSCRIBE after
    the script, so the message does not reach it.  ``shard``: an
    SPUBLISH, to the subscribers of shard channel ``channel``.
    ``publisher``: a client passed over, nor counted (it got its copies as
    it published: see :func:`_to_itself`).  ``noted``: a script's PUBLISH,
    after how many of the script's events its own client gets the message
    (:class:`~shardkv.acceptor.replies.Published`; -1: after all); ``nth``:
    a keyspace event of ``before``'s command, which one (from 0);
    ``hold``: a keyspace event of a change after a served blocked command
    here whose reply is not written yet (see :func:`served_before`)."""
    if since:
        found = receivers(channel, message, since, shard)
        deliver(server, found, before, noted)
        return len(found)
    receivers_ = 0
    limits = None
    # Its own client's subscriptions changed inside EXEC after the command
    # (see _HAUNTS): the message reaches it as it was subscribed then.
    changes = _changes_after(before) if _HAUNTS and before is not None and not shard else []
    own = before.client if changes and before is not None else None
    subscribers = (SHARD_CHANNELS if shard else CHANNELS).get(channel)
    if subscribers:
        limits = _limits(server)
        msg = _Message(Push([b"smessage" if shard else b"message", channel, message]))
        receivers_ = len(subscribers)
        kind = None if shard else False
        for sub in list(subscribers):
            if (
                (_LEAVING and _leaves(sub, channel, kind) and not _stays(sub, before))
                or sub is publisher
                or (sub is own and _was_in(changes, channel, False) is False)
            ):
                receivers_ -= 1
                continue
            _deliver_safely(sub, msg, limits, before, behind, noted, nth, hold)
    if shard:
        return receivers_
    if own is not None and own not in (subscribers or ()) and _was_in(changes, channel, False):
        limits = limits or _limits(server)
        _deliver_safely(
            own, _Message(Push([b"message", channel, message])), limits, before, behind, noted, nth, hold
        )
        receivers_ += 1
    for pattern, (match, subs) in list(PATTERNS.items()):
        if match(channel):
            limits = limits or _limits(server)
            msg = _Message(Push([b"pmessage", pattern, channel, message]))
            for sub in list(subs):
                if (
                    (_LEAVING and _leaves(sub, pattern, True) and not _stays(sub, before))
                    or sub is publisher
                    or (sub is own and _was_in(changes, pattern, True) is False)
                ):
                    continue
                _deliver_safely(sub, msg, limits, before, behind, noted, nth, hold)
                receivers_ += 1
    if own is not None:  # the patterns it left since, that matched
        left = {p: m for _, joined, _, patterns in changes for p, m in patterns.items() if not joined}
        for pattern, match in left.items():
            if (
                pattern not in own.state.patterns
                and match is not None
                and match(channel)
                and _was_in(changes, pattern, True)
            ):
                limits = limits or _limits(server)
                msg = _Message(Push([b"pmessage", pattern, channel, message]))
                _deliver_safely(own, msg, limits, before, behind, noted, nth, hold)
                receivers_ += 1
    return receivers_


def receivers(
    channel: bytes, message: bytes, since: int = 0, shard: bool = False
) -> list[tuple[Client, _Message]]:
    """Who PUBLISH (``shard``: SPUBLISH) ``channel`` ``message`` would
    deliver to here now, and what: for a script's PUBLISH held back until
    the script ends (see :mod:`shardkv.acceptor.scriptcalls`), delivered by
    :func:`deliver`.  ``since``: only those that subscribed before then (see
    publish_message)."""
    out: list[tuple[Client, _Message]] = []
    subscribers = (SHARD_CHANNELS if shard else CHANNELS).get(channel)
    if subscribers:
        msg = _Message(Push([b"smessage" if shard else b"message", channel, message]))
        out += [(sub, msg) for sub, at in subscribers.items() if not since or at <= since]
    if shard:
        return out
    for pattern, (match, subs) in PATTERNS.items():
        if match(channel):
            msg = _Message(Push([b"pmessage", pattern, channel, message]))
            out += [(sub, msg) for sub, at in subs.items() if not since or at <= since]
    return out


# K > 1: whom a script's held PUBLISH reaches here, by (asking acceptor,
# token), kept from its count to the script's end (bus.HELD_COUNT), then
# delivered or dropped (bus.HELD_PUBLISH): the very subscribers it counted.
# (with the events it follows here: see _after_events)
_HELD: dict[tuple[int, int], tuple[list[tuple[Client, _Message]], list]] = {}
_HELD_MAX = 65536  # (a script's end never told, its acceptor gone: bounded)


def bus_held_count(server, origin: int, args: list) -> int:
    token, channel, message, since, *rest = args
    found = receivers(channel, message, int(since), bool(rest and int(rest[0])))
    if len(_HELD) < _HELD_MAX:
        _HELD[(origin, int(token))] = (found, rest[1:])
    return len(found)


def bus_held_publish(server, origin: int, args: list) -> int:
    held = _HELD.pop((origin, int(args[0])), None)
    if held is not None and held[0] and int(args[1]) and not _after_events(server, held[1], held[0]):
        deliver(server, held[0])
    return 1


def deliver(server, held: list[tuple[Client, _Message]], before: Slot | None = None, noted: int = -1) -> None:
    """Deliver what :func:`receivers` found (to those still connected)."""
    if held:
        limits = _limits(server)
        for sub, msg in held:
            _deliver_safely(sub, msg, limits, before, None, noted)


# A subscribed client over its soft limit: since when (time.monotonic()).
_soft_since: dict[Client, float] = {}


def _deliver_safely(
    client: Client,
    msg: _Message,
    limits: tuple[int, int, int],
    before: Slot | None,
    behind: Behind | Within | None = None,
    noted: int = -1,
    nth: int = -1,
    hold: object = None,
) -> None:
    """:func:`_deliver_now`, once ``hold``'s reply is written if it waits
    for it (see :func:`_held`), and behind the messages held for
    ``client`` (:class:`_HeldMessage`)."""
    held = hold is not None and _held(client, before, hold)
    # (behind a message held for it, which Redis wrote first)
    queued = client in _HELD_FOR and (before is None or before.client is not client)
    if not held and not queued:
        _deliver_now(client, msg, limits, before, behind, noted, nth)
        return
    once = _HeldMessage(
        client, partial(_deliver_now, client, msg, limits, before, behind, noted, nth), not held
    )
    _HELD_FOR.setdefault(client, []).append(once)
    if held:
        after_written(client.server, hold, once)


def _deliver_now(
    client: Client,
    msg: _Message,
    limits: tuple[int, int, int],
    before: Slot | None,
    behind: Behind | Within | None = None,
    noted: int = -1,
    nth: int = -1,
) -> None:
    """:func:`_deliver`, where a bug costs this subscriber alone."""
    try:
        _deliver(client, msg, limits, before, behind, noted, nth)
    except Exception:
        client.failed("delivering a Pub/Sub message to it")


def _deliver(
    client: Client,
    msg: _Message,
    limits: tuple[int, int, int],
    before: Slot | None = None,
    behind: Behind | Within | None = None,
    noted: int = -1,
    nth: int = -1,
) -> None:
    if client.closing or client.closed:
        return
    if before is not None and before.client is client and before.data is None:
        if type(behind) is Behind:
            _behind(client, before, behind, msg.body(client.resp3))
        elif behind is not None and _within(client, before, behind, msg):  # type: ignore[arg-type]
            pass
        elif type(before) is ExecPlace:
            before.take(msg.body(client.resp3), noted=noted, nth=nth)
        else:
            pending = client.pending
            at = place_of(pending, before)
            if at < 0:
                _in_exec_or_after(client, before, msg.body(client.resp3))
            else:  # (a script's PUBLISH and events, in the order of its calls)
                in_call_order(pending, at, msg.body(client.resp3), before, noted, nth)
    elif noted > 0 and before is not None and before.data is None and _awaits(before, noted, client, msg):
        return
    elif client.state.reply_mode:  # (CLIENT REPLY OFF or SKIP keeps it: its own PUBLISH's, in EXEC too)
        client.pending.append(Pushed(msg.body(client.resp3)))
    else:
        pending = client.pending
        if pending and client.state.blocked and _waits(pending[-1]):
            _while_blocked(client, pending, msg.body(client.resp3), behind)
        else:
            pending.append(msg.body(client.resp3))
    client.flush()
    hard, soft, soft_seconds = limits
    if not (hard or soft) or client.closing:
        return
    used = client.transport.get_write_buffer_size()  # type: ignore[union-attr]
    if client.pending:
        # Held behind a reply that has not come yet (a RESP3 subscriber may
        # run commands); estimated, as summing every item would be O(n).
        used += len(client.pending) * len(msg.body(client.resp3))
    if _over(client, used, limits):
        _drop(client)


# A script's PUBLISH messages to other clients than its own, by the
# script's reply slot (``before``), until its events come: ``(noted,
# client, message)`` each, in the order published (see _awaits).
_AWAITING: dict[Slot, list[tuple[int, Client, _Message]]] = {}
_AWAITING_MAX = 65536  # (its events never come, its shard gone: bounded)


def _awaits(before: Slot, noted: int, client: Client, msg: _Message) -> bool:
    """A script's PUBLISH message for ``client``, not the script's own
    client, after ``noted`` of the script's events, which come later
    (with its reply): it waits for them (:func:`events_heard`), as Redis
    writes each of the events and messages as the script's calls run,
    and the own client's waits among its pending replies
    (:func:`~shardkv.acceptor.replies.in_call_order`).  Whether it waits."""
    waiting = _AWAITING.get(before)
    if waiting is None:
        if len(_AWAITING) >= _AWAITING_MAX:
            return False
        waiting = _AWAITING[before] = []
    waiting.append((noted, client, msg))
    return True


def events_heard(server, sink: object, nth: int = -1) -> None:
    """The events of the command whose reply slot ``sink`` is, up to the
    ``nth`` (from 0; -1: all of them), were published, or are about to
    be: the messages its script PUBLISHed after no more of them than
    that go to the other clients now (see :func:`_awaits`)."""
    waiting = _AWAITING.get(sink)  # type: ignore[call-overload]
    if waiting is None:
        return
    if nth < 0:
        del _AWAITING[sink]  # type: ignore[arg-type]
        ready = waiting
    else:
        ready = [w for w in waiting if w[0] <= nth]
        if not ready:
            return
        waiting[:] = [w for w in waiting if w[0] > nth]
        if not waiting:
            del _AWAITING[sink]  # type: ignore[arg-type]
    limits = _limits(server)
    for _, client, msg in ready:
        _deliver_safely(client, msg, limits, None)


def awaiting() -> bool:
    """Whether a script's PUBLISH messages wait for its events (see :func:`_awaits`)."""
    return bool(_AWAITING)


def _waits(item: object) -> bool:
    """Whether ``item``, a blocked client's last pending one, is the reply
    slot of its blocking command, still to come."""
    return type(item) is Slot and item.data is None


def _within(client: Client, before: Slot, within: Within, msg: _Message) -> bool:
    """``msg`` for the client whose command's reply slot ``before`` is,
    inside that reply, where ``within`` says (see
    :class:`~shardkv.acceptor.replies.InReply`), among its pending replies
    or in EXEC's array (run command by command, or as one operation):
    whether it went there.  Not for a RESP2 client, nor where CLIENT REPLY
    OFF or SKIP dropped the reply, nor in an EXEC's array where positions
    count (see _exec_part): there it goes before the reply."""
    if not client.resp3:
        return False
    if type(before) is ExecPlace:
        before.take_within(within, msg.body(True))
        return True
    pending = client.pending
    at = place_of(pending, before)
    place: deque | list = pending
    if at < 0:
        place, at = _exec_part(pending, before)  # type: ignore[assignment]
        if place is None:
            return False
    elif pending[at] is not before:
        return False
    if at and type(place[at - 1]) is InReply and place[at - 1].slot is before:
        inside = place[at - 1]
    else:
        inside = InReply(before)
        place.insert(at, inside)
    inside.parts.append((within, msg.body(True)))
    return True


def _while_blocked(client: Client, pending: deque, body: bytes, behind: Behind | Within | None) -> None:
    """``body`` for a blocked client, its waiting slot last among its
    ``pending`` replies.  Redis writes it at once, before the reply that
    serving the client will write; but the events of the client's own
    command, served by a write, that Redis writes after its reply go
    there, and those it writes inside it, inside (``behind``: a Behind
    naming the waiter served, ``wire.EVENT_WAITER_SHIFT``), and once it
    was served, another served command's events follow its reply, as
    Redis serves it first.  A served wait that names no waiter (a
    cross-shard wait's): its events Redis writes after the reply go after
    it, whoever's they are."""
    if type(behind) is Behind and behind.waiter:
        if serves(client, behind.waiter):
            if behind.within is not None:
                _served_within(pending, behind.within, body)
                return
            if behind.served:
                pending.append(body)
                return
        elif _served_already(pending):
            pending.append(body)
            return
    elif behind is not None and behind.served:
        pending.append(body)
        return
    pending.insert(len(pending) - 1, body)


def invalidation_while_blocked(client: Client, body: bytes, waiter: int, own: bool) -> bool:
    """An invalidation ``body`` for ``client`` (of its own tracking if
    ``own``, else as a REDIRECT target) of a change by a write, or (``waiter``
    not 0) by a blocked command that a write served (``wire.EVENT_WAITER_SHIFT``;
    -1: a cross-shard wait's, unnamed): if ``client`` is blocked, its
    waiting slot last among its pending replies, put where Redis writes it,
    and True (else False: it goes after the pending replies).  Redis writes
    it at once, the blocked command having no reply yet; but a change that
    the client's own served command made (taken as one a cross-shard wait's
    may be) it notes as the current client's, to tell after that command's
    reply (``tracking_pending_keys``); and once the client was served
    (:func:`note_served`), the changes of what runs after follow its reply."""
    state = client.state
    pending = client.pending
    if not (pending and state.blocked) or state.reply_mode or not _waits(pending[-1]):
        return False
    at = len(pending) - 1
    if waiter > 0 and serves(client, waiter):
        if own:
            at += 1
        elif _served_already(pending):
            at -= 1  # (its own command's: before what it gets inside the reply)
    elif (waiter < 0 and own) or _served_already(pending):
        at += 1
    pending.insert(at, body)
    client.flush()
    return True


def serves(client: Client, waiter: int) -> bool:
    """Whether ``waiter`` (``wire.EVENT_WAITER_SHIFT``) is ``client``'s
    blocked command."""
    token = client.state.blocked_token
    return token > 0 and waiter == token << wire.EVENT_WAITER_PIPE_BITS | client.server.index


def served_client(server, waiter: int) -> Client | None:
    """The client here whose blocked command ``waiter`` names
    (``wire.EVENT_WAITER_SHIFT``), still waiting; None if another
    acceptor's, or unnamed (-1)."""
    if waiter <= 0 or waiter & (1 << wire.EVENT_WAITER_PIPE_BITS) - 1 != server.index:
        return None
    wait = WAITING.get(waiter >> wire.EVENT_WAITER_PIPE_BITS)
    return None if wait is None else wait.client


def _served_already(pending: deque) -> bool:
    """Whether a blocked client's own command, waiting last among its
    ``pending`` replies, was served: the messages Redis writes inside its
    reply wait before it (:func:`_served_within`, :func:`note_served`)."""
    return len(pending) > 1 and type(pending[-2]) is InReply and pending[-2].slot is pending[-1]


def note_served(server, waiter: int) -> None:
    """A write served the blocked command that ``waiter`` names
    (``wire.EVENT_WAITER_SHIFT``): if it is a client's here, still waiting
    last among its pending replies, what it hears from now on of the
    commands served after it follows its reply, as Redis serves it first,
    whether or not it hears its own command's events: the (maybe empty)
    messages inside its reply wait before it (:func:`_served_already`)."""
    if waiter & (1 << wire.EVENT_WAITER_PIPE_BITS) - 1 != server.index:
        return
    wait = WAITING.get(waiter >> wire.EVENT_WAITER_PIPE_BITS)
    slot = getattr(wait, "slot", None)
    if slot is None:
        return
    pending = slot.client.pending
    if pending and pending[-1] is slot and not _served_already(pending):
        pending.insert(len(pending) - 1, InReply(slot))
        if getattr(wait, "after_reply", None) is not None:
            SERVED.append((waiter, wait))


# The blocked commands here (one shard's: each a ``_OneShard``) that a
# write served, each with its name (wire.EVENT_WAITER_SHIFT), in the order
# served, until their replies are written (see note_served, served_before).
SERVED: list[tuple[int, object]] = []


def served_before(served: int) -> object | None:
    """The last blocked command here of :data:`SERVED` whose reply is not
    written yet, other than ``served`` (the one whose own change this is,
    which Redis tells others of as it serves it): a change handed out now
    came after it was served, and what Redis writes of it to others than
    that command's client waits for its reply (:func:`after_written`), as
    Redis serves the client before it runs the next command."""
    SERVED[:] = [(w, wait) for w, wait in SERVED if wait.unwritten()]  # type: ignore[attr-defined]
    for waiter, wait in reversed(SERVED):
        if waiter != served:
            return wait
    return None


def after_written(server, wait: object, then: Callable[[], None]) -> None:
    """``then()`` once the reply of ``wait`` (of :data:`SERVED`) is written;
    the reply whose command's events are being handed out, if one waits
    for what they cause (:func:`causal.gathering`), waits for it too, as
    for what ``then`` asks of the other acceptors."""
    gate = causal.gathering()
    answered = [gate.expect()] if gate is not None else []

    def run() -> None:
        if answered:
            causal.gather()
        try:
            then()
        finally:
            if answered:
                causal.settle(server, answered, causal.gathered())

    wait.after_reply(run)  # type: ignore[attr-defined]


# The messages held for each client (see _deliver_safely), in order,
# until delivered.
_HELD_FOR: dict[Client, list[_HeldMessage]] = {}


class _HeldMessage:
    """A message held for ``client`` until a served reply is written, or
    until the client drops a subscription (:func:`release_held_messages`):
    Redis wrote it before it ran that (P)UNSUBSCRIBE or RESET, and never
    sends a channel's message after confirming the unsubscribe.  Those
    for the client after it wait behind it (``ready``: waiting for nothing
    else).  Delivered once, in order; never to a client gone meanwhile."""

    __slots__ = ("client", "then", "ready")

    def __init__(self, client: Client, then: Callable[[], None], ready: bool = False) -> None:
        self.client = client
        self.then: Callable[[], None] | None = then
        self.ready = ready

    def __call__(self) -> None:
        self.ready = True
        held = _HELD_FOR.get(self.client)
        due = []
        while held and held[0].ready:
            due.append(held.pop(0))
        if held is not None and not held:
            del _HELD_FOR[self.client]
        for once in due:
            once.deliver()

    def deliver(self) -> None:
        then, self.then = self.then, None
        if then is not None and not self.client.closed:
            then()


def release_held_messages(client: Client) -> None:
    """Deliver now, in order, the messages held for ``client`` (see
    :class:`_HeldMessage`), before it drops a subscription."""
    for once in _HELD_FOR.pop(client, ()):
        once.deliver()


def _held(client: Client, before: Slot | None, hold: object) -> bool:
    """Whether a message for ``client`` of a change after the serve of
    ``hold`` (see :func:`served_before`) waits for its reply: not for its
    client (after its reply anyway), the writer (before its own reply), nor
    a blocked client (at once, before its own reply)."""
    return (
        client is not hold.client  # type: ignore[attr-defined]
        and (before is None or before.client is not client)
        and client.state.blocked_token <= 0
    )


def served_unwritten(client: Client) -> object | None:
    """``client``'s blocked command (one shard's: a ``_OneShard``), if a
    write served it (:func:`note_served`) and its reply is not written
    yet, else None: what Redis writes after that reply, as it serves the
    client before it runs the next command, waits for it there
    (``after_reply``)."""
    wait = WAITING.get(client.state.blocked_token)
    if getattr(wait, "after_reply", None) is None or wait.done or wait.slot.data is not None:  # type: ignore[union-attr]
        return None
    slot = wait.slot  # type: ignore[union-attr]
    pending = client.pending
    for at in range(len(pending) - 1, 0, -1):
        if pending[at] is slot:
            if type(pending[at - 1]) is InReply and pending[at - 1].slot is slot:
                return wait
            return None  # (not served yet)
    return None


def served_here(server, waiter: int) -> object | None:
    """:func:`served_unwritten` of the client here whose blocked command
    ``waiter`` names (``wire.EVENT_WAITER_SHIFT``), if any."""
    client = served_client(server, waiter)
    return None if client is None else served_unwritten(client)


def _served_within(pending: deque, within: Within, body: bytes) -> None:
    """``body``, of a blocked client's own command that a write served, one
    Redis writes inside that command's reply (``within`` says where): inside
    the reply its waiting slot, last among its ``pending`` replies, will
    take (see :class:`~shardkv.acceptor.replies.InReply`)."""
    slot = pending[-1]
    at = len(pending) - 1
    if at and type(pending[at - 1]) is InReply and pending[at - 1].slot is slot:
        inside = pending[at - 1]
    else:
        inside = InReply(slot)
        pending.insert(at, inside)
    inside.parts.append((Within(slot, within.skip, within.inner), body))


def _behind(client: Client, before: Slot, behind: Behind, body: bytes) -> None:
    """``body`` for the client whose command's reply slot ``before`` is,
    after that reply (and after the messages put there before it), as
    Redis writes the command's events that it notifies after ``addReply``:
    in EXEC's array too, before the next command's reply."""
    if type(before) is ExecPlace:
        before.take(body, after=True)
        return
    pending = client.pending
    at = place_of(pending, before) + 1
    if at:
        while at < len(pending) and type(pending[at]) is Trailing:
            at += 1
        pending.insert(at, Trailing(body))
        return
    parts, i = _exec_part(pending, before)
    if parts is None:
        pending.append(body)
        return
    parts.insert(i + 1 + behind.count, Pushed(body))
    behind.count += 1


def place_of(pending: deque, slot: Slot) -> int:
    """Where ``slot`` is among a client's ``pending`` replies, or the
    :class:`~shardkv.acceptor.replies.MutedSlot` that holds its place
    (CLIENT REPLY OFF or SKIP dropped the reply); -1 if neither is."""
    try:
        return pending.index(slot)
    except ValueError:
        for i, item in enumerate(pending):
            if type(item) is MutedSlot and item.slot is slot:
                return i
    return -1


def _in_exec_or_after(client: Client, before: Slot, body: bytes) -> None:
    """``body`` for the client whose command's reply slot ``before`` is not
    among its pending replies: one of an EXEC's (see
    ``transactions.Exec.parts``), whose array it then joins before that
    command's reply, as Redis writes it while EXEC runs the command; else
    after what is pending."""
    parts, i = _exec_part(client.pending, before)
    if parts is None:
        client.pending.append(body)
    else:
        parts.insert(i, Pushed(body))  # (kept if the array is muted: see Exec.mute)


def push_in_exec(client: Client, slot: object, body: bytes) -> bool:
    """``body`` for ``client`` inside the array of its pending EXEC, before
    the reply of the command whose reply slot ``slot`` is (an EXEC run
    command by command), as Redis writes it while EXEC runs the command;
    False if no pending EXEC has that part."""
    parts, i = _exec_part(client.pending, slot)  # type: ignore[arg-type]
    if parts is None:
        return False
    parts.insert(i, Pushed(body))  # (kept if the array is muted: see Exec.mute)
    return True


def _exec_part(pending: deque, slot: Slot) -> tuple[list | None, int]:
    """The parts of the pending EXEC whose reply slot ``slot`` is, and
    where among them; ``(None, -1)`` if none is.  Pushes join an EXEC's
    parts (not counted in the array's length) only where positions do not
    count: not among replies of refused commands, nor a reply cut short."""
    for item in pending:
        if type(item) is not Exec:
            continue
        parts = item.parts
        if parts and item.data is None and not item.denied and item.cut is None:
            for i, part in enumerate(parts):
                if part is slot:
                    return parts, i
    return None, -1


def _limit_output(client: Client) -> None:
    """A client in Pub/Sub mode is of the pubsub class for all its output,
    as in Redis: while it is subscribed to anything, its :meth:`flush` is
    :func:`_flush_subscribed`, which checks every write against the limit
    (its own replies too: a RESP3 subscriber may run any command).  The
    flush of every other client stays the plain method, at no cost."""
    subscribed = client.state.subscribed
    if subscribed != ("flush" in vars(client)):
        if subscribed:
            setattr(client, "flush", partial(_flush_subscribed, client))  # noqa: B010 (mypy: method-assign)
        else:
            delattr(client, "flush")


def _flush_subscribed(client: Client) -> None:
    """:meth:`Client.flush` for a subscribed client: what it is about to
    write, with what its socket still holds, over the pubsub limit closes
    it instead, nothing more written (as Redis closes a client whose
    output buffer grew past the limit before it writes)."""
    limits = _limits(client.server)
    transport = client.transport
    if (limits[0] or limits[1]) and transport is not None and not client.closing and not client.closed:
        ready = 0
        for item in client.pending:
            data = item if type(item) is bytes else item.data
            if data is None:
                break
            ready += len(data)
        if ready and _over(client, transport.get_write_buffer_size() + ready, limits):
            _drop(client)
            return
    type(client).flush(client)  # (the class's: a subclass may add to it)


def _over(client: Client, used: int, limits: tuple[int, int, int]) -> bool:
    """Whether ``used`` bytes of output put ``client`` past its limits
    (the soft one for longer than its seconds)."""
    hard, soft, soft_seconds = limits
    if hard and used > hard:
        return True
    if soft and used > soft:
        since = _soft_since.setdefault(client, time.monotonic())
        return time.monotonic() - since > soft_seconds
    if _soft_since:
        _soft_since.pop(client, None)
    return False


def _drop(client: Client) -> None:
    """Disconnect a client over its output buffer limit, dropping what it has not read."""
    client.closing = True
    client.pending.clear()
    client.transport.abort()  # type: ignore[union-attr]


# -- client-output-buffer-limit ----------------------------------------------

LIMIT_SETTING = "client-output-buffer-limit"
_CLASSES = {"normal": "normal", "slave": "slave", "replica": "slave", "pubsub": "pubsub"}
_parsed: tuple[str, dict] = ("", {})


def parse_limits(text: str, base: dict | None = None) -> dict[str, tuple[int, int, int]]:
    """``class hard soft seconds ...`` -> {class: (hard, soft, seconds)}, over ``base``."""
    words = text.split()
    if len(words) % 4:
        raise ValueError("Wrong number of arguments in buffer limit configuration.")
    limits = dict(base or {})
    for i in range(0, len(words), 4):
        name = _CLASSES.get(words[i].lower())
        if name is None:
            raise ValueError("Invalid client class specified in buffer limit configuration.")
        try:
            hard, soft = config.parse_memory(words[i + 1]), config.parse_memory(words[i + 2])
            seconds = int(words[i + 3])
            if seconds < 0:
                raise ValueError
        except ValueError:
            raise ValueError(
                "Error in hard, soft or soft_seconds setting in buffer limit configuration."
            ) from None
        limits[name] = (hard, soft, seconds)
    return limits


def show_limits(limits: dict[str, tuple[int, int, int]]) -> str:
    return " ".join("%s %d %d %d" % (name, *limits[name]) for name in ("normal", "slave", "pubsub"))


DEFAULT_LIMITS = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"


def _limits(server) -> tuple[int, int, int]:
    """The pubsub class's (hard, soft, soft seconds), parsed once per value."""
    global _parsed
    text = server.config.get(LIMIT_SETTING, DEFAULT_LIMITS)
    if _parsed[0] != text:
        defaults = parse_limits(DEFAULT_LIMITS)
        try:
            _parsed = (text, parse_limits(text, defaults))
        except ValueError as e:  # from the config file or a flag
            log.warning("%s: %s Using the defaults.", LIMIT_SETTING, e)
            _parsed = (text, defaults)
    return _parsed[1]["pubsub"]


def on_config(server, changes: dict) -> None:
    """CONFIG SET of the limits changes only the classes it names, as in Redis."""
    global _parsed
    if LIMIT_SETTING not in changes:
        return
    old = _parsed[1]  # the value before this CONFIG SET (see on_connect)
    try:
        merged = parse_limits(changes[LIMIT_SETTING], old)
    except ValueError as e:
        server.config[LIMIT_SETTING] = show_limits(old)
        raise CommandError(errors.CONFIG_SET_FAILED % (LIMIT_SETTING, e)) from None
    text = server.config[LIMIT_SETTING] = show_limits(merged)
    _parsed = (text, merged)


def on_connect(client: Client) -> None:
    if not _parsed[0]:  # parse the limits before any CONFIG SET replaces them
        _limits(client.server)


# -- PUBSUB ------------------------------------------------------------------


def pubsub(client: Client, args: list[bytes]) -> None:
    """PUBSUB CHANNELS [pattern] | NUMSUB [channel ...] | NUMPAT | SHARDCHANNELS | SHARDNUMSUB"""
    sub = args[1].lower()
    n = len(args)
    bus = client.server.bus
    if sub in (b"numsub", b"shardnumsub") or (sub in (b"channels", b"shardchannels") and n <= 3):
        if bus is not None:
            _pubsub_everywhere(client, bus, sub, args[2:])
            return
        here = _pubsub_here(sub, args[2:])
        client.reply(
            here
            if sub.endswith(b"channels")
            else [x for pair in zip(args[2:], here, strict=True) for x in pair]
        )
    elif sub == b"numpat" and n == 2:
        if bus is not None:
            _pubsub_everywhere(client, bus, sub, args[2:])
        else:
            client.reply(len(PATTERNS))
    elif sub == b"help" and n == 2:
        client.reply(_HELP)
    elif sub in (b"numpat", b"help"):
        client.reply_error(errors.WRONG_ARITY % ("pubsub|" + sub.decode()))
    elif sub in (b"channels", b"shardchannels"):
        client.reply_error(errors.SUBCOMMAND_SYNTAX % (args[1].decode("latin-1"), "PUBSUB"))
    else:
        client.reply_error(errors.UNKNOWN_SUBCOMMAND % (args[1].decode("latin-1"), "PUBSUB"))


def _pubsub_here(sub: bytes, rest: list[bytes]) -> list:
    """This acceptor's part of PUBSUB NUMSUB or SHARDNUMSUB (counts),
    CHANNELS or SHARDCHANNELS (names) or NUMPAT (patterns)."""
    table = SHARD_CHANNELS if sub.startswith(b"shard") else CHANNELS
    if sub.endswith(b"numsub"):
        return [len(table.get(channel, ())) for channel in rest]
    if sub.endswith(b"channels"):
        match = compile_glob(rest[0]) if rest else None
        return [c for c in table if match is None or match(c)]
    return list(PATTERNS)


def bus_pubsub(server, origin: int, args: list[bytes]) -> list:
    return _pubsub_here(args[0], args[1:])


def _pubsub_everywhere(client: Client, bus, sub: bytes, rest: list[bytes]) -> None:
    """PUBSUB NUMSUB, CHANNELS, NUMPAT, SHARDNUMSUB or SHARDCHANNELS over
    every acceptor's subscribers."""
    here = _pubsub_here(sub, rest)
    pending = getattr(client, "pending", None)
    if pending is None:  # a script's call (shardkv.acceptor.scriptcalls): the script waits
        answer = client.reply_later()  # type: ignore[attr-defined]
        failed: Failed = client.reply_error
    else:
        slot = Slot(client)
        pending.append(slot)
        resp3 = client.resp3

        def answer(value: object) -> None:
            slot.deliver(encode(value, resp3))

        failed = fail_slot(slot)

    def done(answers: list) -> None:
        if sub.endswith(b"numsub"):
            counts = here
            for other in answers:
                counts = [a + b for a, b in zip(counts, other, strict=True)]
            value: object = [x for pair in zip(rest, counts, strict=True) for x in pair]
        else:
            names = dict.fromkeys(here)
            for other in answers:
                names.update(dict.fromkeys(other))
            value = list(names) if sub.endswith(b"channels") else len(names)
        answer(value)

    bus.ask(PUBSUB, [sub, *rest], done, failed=failed)


_HELP = [
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
]


# -- RESET -------------------------------------------------------------------


def reset(client: Client, args: list[bytes]) -> None:
    """RESET"""
    if client.state.subscribed:
        # As an unsubscribe: after the shards' scripts and the client's own
        # earlier commands, whose keyspace events still reach it.
        _after_scripts(client, _reset, args, (_ALL, None))
    else:
        _reset(client, args)


def _reset(client: Client, args: list[bytes]) -> None:
    if _HELD_FOR:
        release_held_messages(client)
    discard_transaction(client)
    unsubscribe_all(client)
    monitor.stop(client)
    for clear in client.server.wiring.on_reset:  # client tracking off
        clear(client)
    client.resp3 = False
    client.set_no_touch(False)  # (Redis 7.2's RESET clears CLIENT_NO_TOUCH)
    client.select(0)
    client.name = b""
    client.state.reset_authentication(client.server.users.default)
    if client.state.reply_mode != REPLY_SKIP:
        # Redis's clearClientConnectionState clears CLIENT_REPLY_OFF and
        # SKIP_NEXT, not the SKIP of the command it runs as: a RESET whose
        # reply is skipped still has it dropped.
        client.state.set_reply_mode(REPLY_ON)
    client.reply("RESET")
