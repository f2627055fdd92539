"""Keyspace notifications (``notify-keyspace-events``), in the acceptor.

The shards note what changes (:mod:`shardkv.worker.events`) and send it
here as ``E`` frames (:mod:`shardkv.wire`); each command's events arrive
just before its reply, in the order the shard ran them.  This module
publishes them as Redis's ``notifyKeyspaceEvent`` does, on
``__keyspace@<db>__:<key>`` (message: the event) and then
``__keyevent@<db>__:<event>`` (message: the key), through the acceptor's
Pub/Sub, so subscribers get them like any other message.

It also keeps the shards' *event mask*, the classes they must note: the
classes of ``notify-keyspace-events`` when K or E is set, and every class
while a client tracks keys (:mod:`shardkv.tracking`); 0, nothing noted at
all, otherwise.  The mask goes to every shard as ``__events <mask>`` in
the global order, and to a shard again whenever its pipe is attached.
"""

from __future__ import annotations

from shardkv.acceptor import causal
from shardkv.acceptor.pubsub import publish_message
from shardkv.protocol import bus, wire
from shardkv.protocol.resp import encode_command
from shardkv.protocol.wire import Verb, entry_header
from shardkv.runtime import config

SCRIPT_READ = wire.EVENT_SCRIPT_READ
KEYSPACE = 1 << 0  # K
KEYEVENT = 1 << 1  # E
# Every class a shard can note (g $ l s h z x e t m n).
CLASSES = (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10)
CLASSES |= (1 << 11) | (1 << 14)

# Who hears the shards' events, and who says what they must note, is
# bound by shardkv.acceptor.wiring (Wiring.event_listeners, event_masks):
# this module's publisher and mask, and client-side caching's.


class _State:
    flags = 0  # notify-keyspace-events, as Redis's flags
    mask = 0  # what the shards were last told to note


STATE = _State()


def publish(server, events: list, origin: object) -> None:
    flags = STATE.flags
    if not flags & (KEYSPACE | KEYEVENT):
        return
    for db, key, cls, event in events:
        if not flags & cls:
            continue
        if flags & KEYSPACE:
            publish_message(server, b"__keyspace@%d__:%s" % (db, key), event)
        if flags & KEYEVENT:
            publish_message(server, b"__keyevent@%d__:%s" % (db, event), key)


def own_mask(server) -> int:
    flags = STATE.flags
    return flags & CLASSES if flags & (KEYSPACE | KEYEVENT) else 0


def on_events(server, events: list, origin: object) -> None:
    """A shard's events (see :meth:`shardkv.shardlink.ShardLink._frame`)."""
    for listener in server.wiring.event_listeners:
        listener(server, events, origin)


def relay(server, events: list) -> None:
    """A multi-shard command of this acceptor's ran: its events, in its
    order, to the other acceptors (a read of a script is this client's)."""
    shared = [list(e) for e in events if e[2] != SCRIPT_READ]
    if shared and server.bus is not None:
        causal.remote(server, bus.EVENTS, shared)  # the command's reply waits for them


def bus_events(server, origin: int, args: list) -> None:
    """Another acceptor's multi-shard command's events (see :func:`relay`)."""
    on_events(server, [tuple(e) for e in args], None)


def update_mask(server) -> None:
    """Tell every shard what to note, if that changed."""
    mask = 0
    for fn in server.wiring.event_masks:
        mask |= fn(server)
    if mask != STATE.mask:
        STATE.mask = mask
        for link in server.links:
            _send_mask(link, mask)


def _send_mask(link, mask: int) -> None:
    link.send(entry_header(0), encode_command([Verb.EVENTS, b"%d" % mask]), _IGNORE)


class _Ignore:
    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


def on_attach(server, link) -> None:
    if not STATE.flags and server.config.get("notify-keyspace-events"):
        STATE.flags = config.notify_value(server.config["notify-keyspace-events"])
        mask = 0
        for fn in server.wiring.event_masks:
            mask |= fn(server)
        STATE.mask = mask
    link.on_events = lambda events, origin: on_events(server, events, origin)
    if server.nacceptors > 1:
        link.relay_events = lambda events: relay(server, events)
    # Always, 0 too: a worker that outlived the acceptor may still note
    # what the previous one wanted.
    _send_mask(link, STATE.mask)


def on_config(server, changes: dict) -> None:
    if "notify-keyspace-events" in changes:
        STATE.flags = config.notify_value(changes["notify-keyspace-events"])
        update_mask(server)
