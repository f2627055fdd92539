"""What changed in this shard, as Redis's keyspace events, for the acceptor.

Keyspace notifications and client-side caching (see
:mod:`shardkv.notifications` and :mod:`shardkv.tracking` in the acceptor)
both need to hear of every change: which database, which key, which event.
This module makes that stream, in one place, with Redis's event names and
in Redis's order within a command (``notifyKeyspaceEvent`` in Redis's
``t_*.c``, ``db.c``, ``expire.c``, ``evict.c``).

It costs nothing while nobody listens: each acceptor sends ``__events
<mask>`` on its pipe (what it wants: K and E, :data:`KEYSPACE` and
:data:`KEYEVENT`, while one of its clients is subscribed to a channel or
pattern that may hear a ``__keyspace@`` or ``__keyevent@`` channel,
:data:`ALL` while a client tracks keys), and only while some pipe's mask
asks for a class does a shard keep :attr:`Keyspace.events`, a list of
``(db, key, class, event)``.

Whether an event is published, and on which channels, is decided here as
its command runs, as Redis's ``notifyKeyspaceEvent`` decides by
``server.notify_keyspace_events`` then: the shard holds the setting
(``__config``, which reaches it in its acceptor's order with the commands,
so a CONFIG SET pipelined between two writes falls between them), notes
the classes it names for a pipe whose acceptor hears K or E that the
setting has, and gives each event's class the K and E bits of the setting
when the class is one it names (:attr:`Keyspace.classes`).  The acceptor
publishes by those bits alone: a CONFIG SET it ran before the events came
back changes nothing about them, and an event noted for client-side caching
alone is never published.

Then for each write command :func:`before` notes which of
the command's keys exist before, and after the command derives the events
from the command's name, arguments, reply and the keys' states (the rules
below), as Redis's commands emit them.  Lazy and active expiry
(``expired``), eviction (``evicted``) and key misses (``keymiss``) are
noted where they happen (:class:`~shardkv.worker.keyspace.Keyspace`).

The worker sends what a batch noted as one ``E`` frame before the batch's
``R`` frame, with, for each reply, how many events came before it (see
:mod:`shardkv.wire`), so the acceptor hands each command's events out
just before its reply, in the order the shard ran them; those Redis
writes after the reply (:data:`AFTER_REPLY`) carry ``AFTER`` in their
class, and reach the command's own subscribing client after the reply.
"""

from __future__ import annotations

from collections.abc import Callable

from shardkv.protocol import commands, wire
from shardkv.protocol.resp import NULL_ARRAY, Error, KeyedArrays
from shardkv.protocol.wire import Verb
from shardkv.runtime import config as settings
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace, slot_of

# The classes, as Redis's NOTIFY_* flags (and notify-keyspace-events' letters).
GENERIC = 1 << 2  # g
STRING = 1 << 3  # $
LIST = 1 << 4  # l
SET = 1 << 5  # s
HASH = 1 << 6  # h
ZSET = 1 << 7  # z
EXPIRED = 1 << 8  # x
EVICTED = 1 << 9  # e
STREAM = 1 << 10  # t
KEYMISS = 1 << 11  # m
NEW = 1 << 14  # n
# Those notify-keyspace-events can name (its letters but K, E and d).
NOTIFIED = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | KEYMISS | NEW
KEYSPACE = wire.EVENT_KEYSPACE  # K: published on __keyspace@<db>__:<key>
KEYEVENT = wire.EVENT_KEYEVENT  # E: published on __keyevent@<db>__:<event>
CHANNELS = KEYSPACE | KEYEVENT
FLUSH = wire.EVENT_FLUSH  # shardkv's own, for client-side caching
SCRIPT_READ = wire.EVENT_SCRIPT_READ  # shardkv's own, for client-side caching
AFTER = wire.EVENT_AFTER_REPLY  # written after the command's reply (see AFTER_REPLY)
IN_REPLY_AT = wire.EVENT_IN_REPLY  # written inside the command's reply (see IN_REPLY)
SERVED_OWN = wire.EVENT_SERVED_OWN  # (see SERVED_SIGNALS)
IN_REPLY_INNER = wire.EVENT_IN_REPLY_INNER
SERVED = wire.EVENT_SERVED  # a blocked command's, served by a write
ALL = (
    GENERIC
    | STRING
    | LIST
    | SET
    | HASH
    | ZSET
    | EXPIRED
    | EVICTED
    | STREAM
    | KEYMISS
    | NEW
    | FLUSH
    | SCRIPT_READ
)


def enable(ks: Keyspace, mask: int) -> None:
    """Note the classes in ``mask`` from now on (0: nothing at all).  With
    STARVED alone (maxmemory's, see :mod:`shardkv.worker.eviction`), write
    commands are not looked at."""
    ks.event_mask = mask
    ks.noting = bool(mask & ~wire.EVENT_STARVED)
    if mask:
        if ks.events is None:
            ks.events = []
    if ks.noting:
        ks.__dict__["touch"] = _recording_touch(ks)
    else:  # what was noted still leaves (Shard.take_events drops the list then)
        ks.__dict__.pop("touch", None)


def _recording_touch(ks: Keyspace) -> Callable[[bytes], None]:
    """Keyspace.touch that also notes the key as changed (see :func:`run`)."""
    base = Keyspace.touch.__get__(ks)
    touched = ks.touched

    def touch(key: bytes) -> None:
        touched.add(key)
        base(key)

    return touch


def events_command(ks: Keyspace, args: list[bytes]) -> object:
    """__events mask -> OK: what the acceptor of this pipe wants now: event
    classes, and K and E (its subscribers may hear notifications); the
    shard notes what any acceptor wants."""
    mask = int(args[1])
    if mask:
        ks.event_masks[ks.pipe] = mask
    else:
        ks.event_masks.pop(ks.pipe, None)
    _apply(ks)
    return b"OK"


def forget(ks: Keyspace, pipe: int) -> None:
    """The acceptor of ``pipe`` has gone: note only what the others want."""
    ks.event_masks.pop(pipe, None)
    _apply(ks)


def on_settings(ks: Keyspace) -> None:
    """After each ``__config``: notify-keyspace-events, if it changed, holds
    from the next command on (see the module docstring)."""
    set_notify(ks, ks.runtime.extra.get("notify-keyspace-events") or "")


def set_notify(ks: Keyspace, text: str) -> None:
    """notify-keyspace-events set to ``text`` (its letters) holds from the
    next command on."""
    try:
        flags = settings.notify_flags(text)
    except ValueError:  # the acceptor validated it: keep the old one
        return
    set_flags(ks, flags)


def set_flags(ks: Keyspace, flags: int) -> None:
    """notify-keyspace-events' ``flags`` hold from the next command on."""
    if flags == ks.notify_flags:
        return
    ks.notify_flags = flags
    channels = flags & CHANNELS
    for cls in ks.classes:
        ks.classes[cls] = cls | channels if cls & flags else cls
    _apply(ks)


def _apply(ks: Keyspace) -> None:
    """Note what the pipes' ``__events`` masks and the setting ask for: the
    classes a mask names, and those the setting names while a mask hears
    K or E and the setting has it.

    An event goes to a pipe whose mask shares a bit with its class (see
    Shard.take_events): a class it asked for, or a channel (K, E) it hears
    that the event is published on, by the setting as its command ran,
    whatever it says when the batch's events leave."""
    flags = ks.notify_flags
    wanted = 0
    for mask in ks.event_masks.values():
        wanted |= mask & ~CHANNELS
        if mask & flags & CHANNELS:
            wanted |= flags & NOTIFIED
    enable(ks, wanted)


def note(ks: Keyspace, cls: int, event: bytes, key: bytes, db: int | None = None) -> None:
    """One event, if its class is wanted."""
    if ks.event_mask & cls:
        ks.events.append((ks.db if db is None else db, key, ks.classes[cls], event))  # type: ignore[union-attr]


# -- write commands --------------------------------------------------------------


def before(ks: Keyspace, args: list[bytes]) -> dict:
    """What :func:`derive` needs to know of a write command's keys before it
    runs: 0 (missing), 1 (exists) or 2 (with a TTL), by key."""
    cmd = commands.lookup(args[0])
    keys = cmd.keys(args) if cmd is not None else []
    before: dict = {}
    for key in keys:
        if key not in before:
            value = ks.peek(key)  # a lazy expiry comes first, as in Redis (not an access)
            before[key] = 0 if value is None else (2 if key in ks.expires[slot_of(key)] else 1)
    pre = _PRE.get(args[0].lower())
    if pre is not None:
        before[None] = pre(ks, args, keys)
    ks.touched.clear()
    return before


def derive(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    """The events of a write command that ran (``value`` its reply)."""
    if type(value) is Error:
        return
    name = args[0].lower()
    rule = RULES.get(name)
    if rule is None:
        return
    events = ks.events
    mark = len(events)  # type: ignore[arg-type]
    rule(ks, args, value, before)
    if ks.event_mask & NEW and name not in _NO_NEW:
        # dbAdd's "new" comes just before the command's first event on the
        # key it added (SMOVE: srem, del of the source, then new, sadd of
        # the destination; MSETNX: new, set of each key in turn).
        db = ks.db
        for key, was in before.items():
            if was or key is None or key not in ks.data[slot_of(key)]:
                continue
            at = mark
            for i in range(mark, len(events)):  # type: ignore[arg-type]
                event = events[i]  # type: ignore[index]
                if event[1] == key and event[0] == db:
                    at = i
                    break
            events.insert(at, (db, key, ks.classes[NEW], b"new"))  # type: ignore[union-attr]
    if name in AFTER_REPLY and len(events) > mark:  # type: ignore[arg-type]
        _mark_after_reply(ks, args, mark)
    if name in IN_REPLY and len(events) > mark:  # type: ignore[arg-type]
        _mark_in_reply(ks, name, value, mark)


def _mark_after_reply(ks: Keyspace, args: list[bytes], mark: int) -> None:
    """Mark the events from ``mark`` on that Redis writes after the
    command's reply (:data:`AFTER_REPLY`).  Not in a script, whose events
    all come before its reply: Redis runs its calls for the Lua client."""
    scripts = ks.scripts
    if scripts is not None and scripts.run is not None:
        return
    name = args[0].lower()
    if name == b"set" and not any(a.upper() == b"GET" for a in args[3:]):
        return
    later = AFTER_REPLY[name]
    events = ks.events
    for i in range(mark, len(events)):  # type: ignore[arg-type]
        db, key, cls, event = events[i]  # type: ignore[index]
        if event in later:
            events[i] = (db, key, cls | AFTER, event)  # type: ignore[index]


def _mark_in_reply(ks: Keyspace, name: bytes, value: object, mark: int) -> None:
    """Mark the events from ``mark`` on that Redis writes inside the
    command's reply (:data:`IN_REPLY`), with their place there.  Not in a
    script, whose reply comes once it ended."""
    scripts = ks.scripts
    if scripts is not None and scripts.run is not None:
        return
    named, skip, inner = IN_REPLY[name]
    events = ks.events
    for i in range(mark, len(events)):  # type: ignore[arg-type]
        db, key, cls, event = events[i]  # type: ignore[index]
        if event not in named:
            continue
        at = skip
        if name == b"xreadgroup":  # (after its stream's name, in the map of those served)
            served = [k for k, _ in value] if type(value) is KeyedArrays else []
            if key not in served:
                continue
            at = 2 * served.index(key) + 1
        place = IN_REPLY_AT | (IN_REPLY_INNER if inner else 0) | (at << wire.EVENT_IN_REPLY_SHIFT)
        events[i] = (db, key, cls | place, event)  # type: ignore[index]


def derive_served(
    ks: Keyspace, args: list[bytes], value: object, before: dict, pipe: int, token: int
) -> None:
    """The events of a blocked command (``args``) that a write served for
    the waiter ``token`` of ``pipe`` (see :func:`derive`, :func:`served`):
    while that pipe's acceptor wants any events, all of them, whatever
    classes are wanted.  They tell it that the write served its client
    (``pubsub.note_served`` there), so that what it publishes of a later
    change waits for that client's reply, as Redis serves it before it
    runs the next command; those of a class no one asked for it publishes
    on no channel (their class has neither K nor E) and are sent to no
    other pipe (``Shard._share_events``)."""
    mark = len(ks.events)  # type: ignore[arg-type]
    mask = ks.event_mask
    if pipe in ks.event_masks:
        ks.event_mask = mask | NOTIFIED
    try:
        derive(ks, args, value, before)
    finally:
        ks.event_mask = mask
    served(ks, mark, pipe, token, args[0])


def served(ks: Keyspace, mark: int, pipe: int = -1, token: int = 0, name: bytes = b"") -> None:
    """The events from ``mark`` on are a blocked command's, served by a
    write (``wire.EVENT_SERVED``): its client's reply comes later, not in
    the write's.  Where that reply is the command's own, as this shard
    encodes it for the waiter ``token`` of ``pipe``, they name that waiter
    (``wire.EVENT_WAITER_SHIFT``), those Redis writes inside the reply
    of the served command ``name`` (:data:`SERVED_IN_REPLY`) keep their
    place there, and those Redis signals as its client's change are marked
    so (:data:`SERVED_SIGNALS`); else (a cross-shard wait's pop, whose reply its acceptor
    builds; a served XREADGROUP's new consumer) they have none."""
    events = ks.events
    own: frozenset[bytes] | None = frozenset()  # its changes Redis signals as its client's
    if pipe < 0:
        keep, waiter = _NOT_IN_REPLY, 0
    else:
        name = name.lower()
        keep = -1 if name in SERVED_IN_REPLY else _NOT_IN_REPLY
        waiter = (token << wire.EVENT_WAITER_PIPE_BITS | pipe) << wire.EVENT_WAITER_SHIFT
        own = SERVED_SIGNALS.get(name, frozenset())
    keep &= ~SERVED_OWN
    for i in range(mark, len(events)):  # type: ignore[arg-type]
        db, key, cls, event = events[i]  # type: ignore[index]
        flag = SERVED_OWN if own is None or event in own else 0
        events[i] = (db, key, (cls & keep) | SERVED | waiter | flag, event)  # type: ignore[index]


# The served blocking commands whose own change of a key Redis signals
# with the served client current (``signalModifiedKey(receiver, ...)``:
# wire.EVENT_SERVED_OWN), by name: all their changes (their pops:
# listElementsRemoved, genericZpopCommand), or only those of these events
# (BLMOVE's push, lmoveHandlePush).  BLPOP's and BRPOP's pop signals
# nothing (Redis: "already called when an element was pushed"), nor does
# a BLMOVE's pop, nor a served XREAD(GROUP).
SERVED_SIGNALS: dict[bytes, frozenset[bytes] | None] = {
    b"blmpop": None,
    b"bzpopmin": None,
    b"bzpopmax": None,
    b"bzmpop": None,
    b"blmove": frozenset((b"lpush", b"rpush")),
    b"brpoplpush": frozenset((b"lpush", b"rpush")),
}


_NOT_IN_REPLY = (1 << wire.EVENT_IN_REPLY_SHIFT) - 1 & ~(IN_REPLY_AT | IN_REPLY_INNER)


def _alive(ks: Keyspace, key: bytes) -> bool:
    return key in ks.data[slot_of(key)]


def _emptied(ks: Keyspace, key: bytes, before: dict) -> None:
    """The ``del`` of a container that the command emptied."""
    if before.get(key) and not _alive(ks, key):
        note(ks, GENERIC, b"del", key)


def _changed(ks: Keyspace, key: bytes) -> bool:
    return key in ks.touched


def _simple(cls: int, event: bytes, when: Callable | None = None, pos: int = 1) -> Callable:
    """One event on the key at ``pos`` (if ``when(value)``), then ``del`` if emptied."""

    def rule(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
        key = args[pos]
        if when is None or when(value):
            note(ks, cls, event, key)
        _emptied(ks, key, before)

    return rule


def _positive(value: object) -> bool:
    return type(value) is int and value > 0


def _one(value: object) -> bool:
    return value == 1


def _some(value: object) -> bool:
    return value is not None and value is not NULL_ARRAY and value != [] and value != b""


def _store(cls: int, event: bytes, pos: int = 1) -> Callable:
    """A ...STORE command: its event if the result is not empty, else ``del``
    if the destination existed."""

    def rule(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
        key = args[pos]
        if _alive(ks, key):
            note(ks, cls, event, key)
        elif before.get(key):
            note(ks, GENERIC, b"del", key)

    return rule


_EXPIRY_OPTIONS = (b"EX", b"PX", b"EXAT", b"PXAT")


def _set(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    key = args[1]
    options = [a.upper() for a in args[3:]]
    if b"GET" in options:
        existed = bool(before.get(key))
        done = not ((b"NX" in options and existed) or (b"XX" in options and not existed))
    else:
        done = value is not None
    if not done:
        return
    note(ks, STRING, b"set", key)
    if any(o in _EXPIRY_OPTIONS for o in options):
        note(ks, GENERIC, b"expire", key)


def _setex(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    note(ks, STRING, b"set", args[1])
    note(ks, GENERIC, b"expire", args[1])


def _mset(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if args[0].lower() == b"msetnx" and value != 1:
        return
    for i in range(1, len(args) - 1, 2):
        note(ks, STRING, b"set", args[i])


def _getex(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    key = args[1]
    if value is None:
        return
    options = [a.upper() for a in args[2:]]
    if any(o in _EXPIRY_OPTIONS for o in options):
        note(ks, GENERIC, b"expire" if _alive(ks, key) else b"del", key)
    elif b"PERSIST" in options and before.get(key) == 2:
        note(ks, GENERIC, b"persist", key)


def _getdel(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if value is not None:
        note(ks, GENERIC, b"del", args[1])


def _del(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    for key in dict.fromkeys(args[1:]):
        if before.get(key) and not _alive(ks, key):
            note(ks, GENERIC, b"del", key)


def _expire(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if value == 1:
        key = args[1]
        note(ks, GENERIC, b"expire" if _alive(ks, key) else b"del", key)


def _rename(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    src, dst = args[1], args[2]
    if src == dst or value == 0:
        return
    note(ks, NEW, b"new", dst)  # dbAdd of the destination comes first
    note(ks, GENERIC, b"rename_from", src)
    note(ks, GENERIC, b"rename_to", dst)


def _move(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if value == 1:
        key = args[1]
        db = int(args[2])
        note(ks, NEW, b"new", key, db)
        note(ks, GENERIC, b"move_from", key)
        note(ks, GENERIC, b"move_to", key, db)


def _copy(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if value != 1:
        return
    dst = args[2]
    db = ks.db
    upper = [a.upper() for a in args[3:]]
    if b"DB" in upper:
        db = int(args[3 + upper.index(b"DB") + 1])
    note(ks, NEW, b"new", dst, db)
    note(ks, GENERIC, b"copy_to", dst, db)


def _restore(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    key = args[1]
    if _alive(ks, key):
        note(ks, NEW, b"new", key)  # REPLACE deletes the old key first: always a dbAdd
        note(ks, GENERIC, b"restore", key)
    elif before.get(key):
        note(ks, GENERIC, b"del", key)


def _sort(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    upper = [a.upper() for a in args]
    if b"STORE" not in upper:
        return
    key = args[upper.index(b"STORE") + 1]
    if _alive(ks, key):
        note(ks, LIST, b"sortstore", key)
    elif before.get(key):
        note(ks, GENERIC, b"del", key)


def _push(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    name = args[0].lower()
    if name.endswith(b"x") and not _positive(value):
        return
    note(ks, LIST, b"lpush" if name[0] == 108 else b"rpush", args[1])


def _pop(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    """LPOP/RPOP key [count], and the blocking pops: BLPOP key... timeout."""
    name = args[0].lower()
    if not _some(value):
        return
    key = value[0] if name.startswith(b"b") else args[1]  # type: ignore[index]
    if not before.get(key):
        return
    note(ks, LIST, b"lpop" if name in (b"lpop", b"blpop") else b"rpop", key)
    _emptied(ks, key, before)


def _mpop(cls: int, events: tuple[bytes, bytes], blocking: bool) -> Callable:
    """LMPOP/BLMPOP/ZMPOP/BZMPOP: one pop event on the key it popped from."""

    def rule(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
        if not _some(value):
            return
        key = value[0]  # type: ignore[index]
        start = 3 if blocking else 2
        numkeys = int(args[start - 1])
        where = args[start + numkeys].upper()
        note(ks, cls, events[0] if where in (b"LEFT", b"MIN") else events[1], key)
        _emptied(ks, key, before)

    return rule


def _lmove(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if value is None:
        return
    name = args[0].lower()
    src, dst = args[1], args[2]
    if name in (b"rpoplpush", b"brpoplpush"):
        wherefrom, whereto = b"RIGHT", b"LEFT"
    else:
        wherefrom, whereto = args[3].upper(), args[4].upper()
    note(ks, LIST, b"lpush" if whereto == b"LEFT" else b"rpush", dst)
    note(ks, LIST, b"lpop" if wherefrom == b"LEFT" else b"rpop", src)
    _emptied(ks, src, before)


def _ltrim(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    key = args[1]
    if before.get(key):
        note(ks, LIST, b"ltrim", key)
        _emptied(ks, key, before)


def _smove(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    src, dst = args[1], args[2]
    if value != 1 or src == dst:
        return
    note(ks, SET, b"srem", src)
    _emptied(ks, src, before)
    if _changed(ks, dst) or not before.get(dst):
        note(ks, SET, b"sadd", dst)


def _spop(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    key = args[1]
    if before.get(key) and (len(args) == 2 or _some(value)):
        note(ks, SET, b"spop", key)
        _emptied(ks, key, before)


def _zadd(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    key = args[1]
    if _changed(ks, key):
        incr = any(a.upper() == b"INCR" for a in args[2:])
        note(ks, ZSET, b"zincr" if incr else b"zadd", key)


def _geoadd(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if _changed(ks, args[1]):
        note(ks, ZSET, b"zadd", args[1])


def _zpop(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    name = args[0].lower()
    if not _some(value):
        return
    key = value[0] if name.startswith(b"b") else args[1]  # type: ignore[index]
    if not before.get(key):
        return
    note(ks, ZSET, b"zpopmin" if name.endswith(b"min") else b"zpopmax", key)
    _emptied(ks, key, before)


def _georadius(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    upper = [a.upper() for a in args]
    for option in (b"STORE", b"STOREDIST"):
        if option in upper:
            _store(ZSET, b"georadiusstore", upper.index(option) + 1)(ks, args, value, before)
            return


def _xadd(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if value is None:
        return
    key = args[1]
    note(ks, STREAM, b"xadd", key)
    length = before.get(None)
    stream = ks.data[slot_of(key)].get(key)
    if length is not None and stream is not None and stream.length <= length:  # type: ignore[attr-defined]
        note(ks, STREAM, b"xtrim", key)  # it trimmed at least the entry it added


def _stream_length(ks: Keyspace, args: list[bytes], keys: list[bytes]) -> int:
    """XADD: did it trim?  The stream's length before tells."""
    stream = ks.data[slot_of(args[1])].get(args[1])
    return getattr(stream, "length", 0)


def _consumer(ks: Keyspace, key: bytes, group: bytes, name: bytes) -> bool:
    stream = ks.data[slot_of(key)].get(key)
    groups = getattr(stream, "groups", None)
    g = groups.get(group) if groups else None
    return g is not None and name in g.consumers


def _consumers_before(ks: Keyspace, args: list[bytes], keys: list[bytes]) -> dict:
    """Which of the command's streams already have its consumer."""
    name = args[0].lower()
    if name == b"xreadgroup":
        group, consumer = args[2], args[3]
    elif name == b"xgroup":
        if len(args) < 5:
            return {}
        group, consumer = args[3], args[4]
    else:
        group, consumer = args[2], args[3]
    return {key: _consumer(ks, key, group, consumer) for key in keys}


def _created_consumers(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    """XREADGROUP, XCLAIM, XAUTOCLAIM: ``xgroup-createconsumer`` for each
    stream on which the command created its consumer."""
    group, consumer = args[2], args[3]
    for key, existed in (before.get(None) or {}).items():
        if not existed and _consumer(ks, key, group, consumer):
            note(ks, STREAM, b"xgroup-createconsumer", key)


def _xgroup(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    sub = args[1].lower()
    if len(args) < 3:
        return
    key = args[2]
    if sub == b"create":
        note(ks, STREAM, b"xgroup-create", key)
    elif sub == b"setid":
        note(ks, STREAM, b"xgroup-setid", key)
    elif sub == b"destroy" and value == 1:
        note(ks, STREAM, b"xgroup-destroy", key)
    elif sub == b"createconsumer" and value == 1:
        note(ks, STREAM, b"xgroup-createconsumer", key)
    elif sub == b"delconsumer" and (before.get(None) or {}).get(key):
        note(ks, STREAM, b"xgroup-delconsumer", key)


def _bitfield(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    upper = [a.upper() for a in args[2:]]
    if (
        (b"SET" in upper or b"INCRBY" in upper)
        and _changed(ks, args[1])
        or (
            (b"SET" in upper or b"INCRBY" in upper)
            and isinstance(value, list)
            and any(v is not None for v in value)
        )
    ):
        note(ks, STRING, b"setbit", args[1])


def _bitop(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    key = args[2]
    if _alive(ks, key):
        note(ks, STRING, b"set", key)
    elif before.get(key):
        note(ks, GENERIC, b"del", key)


def _setrange(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if args[3]:
        note(ks, STRING, b"setrange", args[1])


def _pfadd(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    if value == 1:
        note(ks, STRING, b"pfadd", args[1])


# Commands whose "new" Redis does not emit through the generic rule.
_NO_NEW = frozenset({b"rename", b"renamenx", b"move", b"copy", b"restore", b"restore-asking"})


def _flush(ks: Keyspace, args: list[bytes], value: object, before: dict) -> None:
    note(ks, FLUSH, b"flush", b"")


RULES: dict[bytes, Callable] = {
    b"flushall": _flush,
    b"flushdb": _flush,
    # strings
    b"set": _set,
    b"setnx": _simple(STRING, b"set", _one),
    b"setex": _setex,
    b"psetex": _setex,
    b"getset": _simple(STRING, b"set"),
    b"mset": _mset,
    b"msetnx": _mset,
    b"getex": _getex,
    b"getdel": _getdel,
    b"incr": _simple(STRING, b"incrby"),
    b"decr": _simple(STRING, b"incrby"),
    b"incrby": _simple(STRING, b"incrby"),
    b"decrby": _simple(STRING, b"incrby"),
    b"incrbyfloat": _simple(STRING, b"incrbyfloat"),
    b"append": _simple(STRING, b"append"),
    b"setrange": _setrange,
    b"setbit": _simple(STRING, b"setbit"),
    b"bitfield": _bitfield,
    b"bitop": _bitop,
    b"pfadd": _pfadd,
    b"pfmerge": _simple(STRING, b"pfadd"),
    # keys
    b"del": _del,
    b"unlink": _del,
    b"expire": _expire,
    b"pexpire": _expire,
    b"expireat": _expire,
    b"pexpireat": _expire,
    b"persist": _simple(GENERIC, b"persist", _one),
    b"rename": _rename,
    b"renamenx": _rename,
    b"move": _move,
    b"copy": _copy,
    b"restore": _restore,
    b"restore-asking": _restore,
    b"sort": _sort,
    # lists
    b"lpush": _push,
    b"rpush": _push,
    b"lpushx": _push,
    b"rpushx": _push,
    b"linsert": _simple(LIST, b"linsert", _positive),
    b"lset": _simple(LIST, b"lset"),
    b"lpop": _pop,
    b"rpop": _pop,
    b"blpop": _pop,
    b"brpop": _pop,
    b"lmpop": _mpop(LIST, (b"lpop", b"rpop"), False),
    b"blmpop": _mpop(LIST, (b"lpop", b"rpop"), True),
    b"rpoplpush": _lmove,
    b"brpoplpush": _lmove,
    b"lmove": _lmove,
    b"blmove": _lmove,
    b"ltrim": _ltrim,
    b"lrem": _simple(LIST, b"lrem", _positive),
    # sets
    b"sadd": _simple(SET, b"sadd", _positive),
    b"srem": _simple(SET, b"srem", _positive),
    b"smove": _smove,
    b"spop": _spop,
    b"sinterstore": _store(SET, b"sinterstore"),
    b"sunionstore": _store(SET, b"sunionstore"),
    b"sdiffstore": _store(SET, b"sdiffstore"),
    # hashes
    b"hset": _simple(HASH, b"hset"),
    b"hmset": _simple(HASH, b"hset"),
    b"hsetnx": _simple(HASH, b"hset", _one),
    b"hincrby": _simple(HASH, b"hincrby"),
    b"hincrbyfloat": _simple(HASH, b"hincrbyfloat"),
    b"hdel": _simple(HASH, b"hdel", _positive),
    # sorted sets
    b"zadd": _zadd,
    b"zincrby": _simple(ZSET, b"zincr"),
    b"zrem": _simple(ZSET, b"zrem", _positive),
    b"zremrangebyscore": _simple(ZSET, b"zremrangebyscore", _positive),
    b"zremrangebyrank": _simple(ZSET, b"zremrangebyrank", _positive),
    b"zremrangebylex": _simple(ZSET, b"zremrangebylex", _positive),
    b"zpopmin": _zpop,
    b"zpopmax": _zpop,
    b"bzpopmin": _zpop,
    b"bzpopmax": _zpop,
    b"zmpop": _mpop(ZSET, (b"zpopmin", b"zpopmax"), False),
    b"bzmpop": _mpop(ZSET, (b"zpopmin", b"zpopmax"), True),
    b"zunionstore": _store(ZSET, b"zunionstore"),
    b"zinterstore": _store(ZSET, b"zinterstore"),
    b"zdiffstore": _store(ZSET, b"zdiffstore"),
    b"zrangestore": _store(ZSET, b"zrangestore"),
    b"geoadd": _geoadd,
    b"geosearchstore": _store(ZSET, b"geosearchstore"),
    b"georadius": _georadius,
    b"georadiusbymember": _georadius,
    # streams
    b"xadd": _xadd,
    b"xdel": _simple(STREAM, b"xdel", _positive),
    b"xtrim": _simple(STREAM, b"xtrim", _positive),
    b"xsetid": _simple(STREAM, b"xsetid"),
    b"xgroup": _xgroup,
    b"xreadgroup": _created_consumers,
    b"xclaim": _created_consumers,
    b"xautoclaim": _created_consumers,
}

# Redis's order of a command's reply and its events, for the client that
# sent it while subscribed (RESP3): most commands notify before
# ``addReply``, these after it, for the events named (their others come
# before: LMOVE's push, EXPIRE's ``del`` of a time in the past, RPUSH's
# ``new``).  Measured against redis-server 7.0.15 (see
# tests/compat/test_pubsub_own_messages.py::test_own_events_and_reply_in_redis_order).
# SET counts only with GET, which replies before it writes, as GETSET.
# ZPOPMIN/ZPOPMAX/BZPOP*/ZMPOP/BZMPOP write their pop event inside the
# reply, XREADGROUP, XCLAIM and XAUTOCLAIM their ``xgroup-createconsumer``
# too: see IN_REPLY.
_POPS = frozenset({b"lpop", b"rpop", b"del"})
_STORED = frozenset({b"del", b"sinterstore", b"sunionstore", b"sdiffstore"})
_ZSTORED = frozenset({b"del", b"zunionstore", b"zinterstore", b"zdiffstore", b"zrangestore"})
AFTER_REPLY: dict[bytes, frozenset[bytes]] = {
    b"set": frozenset({b"new", b"set", b"expire"}),  # with GET
    b"getset": frozenset({b"new", b"set"}),
    b"getex": frozenset({b"expire", b"persist", b"del"}),
    b"getdel": frozenset({b"del"}),
    b"bitfield": frozenset({b"setbit"}),
    b"expire": frozenset({b"expire"}),
    b"pexpire": frozenset({b"expire"}),
    b"expireat": frozenset({b"expire"}),
    b"pexpireat": frozenset({b"expire"}),
    b"lpush": frozenset({b"lpush"}),
    b"rpush": frozenset({b"rpush"}),
    b"lpushx": frozenset({b"lpush"}),
    b"rpushx": frozenset({b"rpush"}),
    b"lset": frozenset({b"lset"}),
    b"lpop": _POPS,
    b"rpop": _POPS,
    b"blpop": _POPS,
    b"brpop": _POPS,
    b"lmpop": _POPS,
    b"blmpop": _POPS,
    b"rpoplpush": _POPS,
    b"brpoplpush": _POPS,
    b"lmove": _POPS,
    b"blmove": _POPS,
    b"spop": frozenset({b"del"}),
    b"sinterstore": _STORED,
    b"sunionstore": _STORED,
    b"sdiffstore": _STORED,
    b"hset": frozenset({b"hset"}),
    b"hmset": frozenset({b"hset"}),
    b"hsetnx": frozenset({b"hset"}),
    b"hincrby": frozenset({b"hincrby"}),
    b"hincrbyfloat": frozenset({b"hincrbyfloat"}),
    b"zadd": frozenset({b"zadd", b"zincr"}),
    b"zincrby": frozenset({b"zincr"}),
    b"geoadd": frozenset({b"zadd"}),
    b"zpopmin": frozenset({b"del"}),
    b"zpopmax": frozenset({b"del"}),
    b"bzpopmin": frozenset({b"del"}),
    b"bzpopmax": frozenset({b"del"}),
    b"zmpop": frozenset({b"del"}),
    b"bzmpop": frozenset({b"del"}),
    b"zunionstore": _ZSTORED,
    b"zinterstore": _ZSTORED,
    b"zdiffstore": _ZSTORED,
    b"zrangestore": _ZSTORED,
    b"xadd": frozenset({b"xadd", b"xtrim"}),
    b"xsetid": frozenset({b"xsetid"}),
    b"xgroup": frozenset({b"xgroup-create", b"xgroup-setid", b"xgroup-destroy"}),
}

# Redis's place, inside the reply, of the events some commands notify while
# they build it (measured against redis-server 7.0.15, see
# tests/compat/test_pubsub_own_messages.py::test_own_events_inside_the_reply):
# by command, the events, how many whole elements of the reply come before
# them after its header, and whether the header of the next does too.
# XREADGROUP's ``xgroup-createconsumer`` of a stream comes after that
# stream's name in the map (the place counted from the reply).
_ZPOPS = frozenset({b"zpopmin", b"zpopmax"})
_CREATED = frozenset({b"xgroup-createconsumer"})
IN_REPLY: dict[bytes, tuple[frozenset[bytes], int, bool]] = {
    b"zpopmin": (_ZPOPS, 0, False),  # *N, >push, the pairs
    b"zpopmax": (_ZPOPS, 0, False),
    b"bzpopmin": (_ZPOPS, 1, False),  # *3, key, >push, member, score
    b"bzpopmax": (_ZPOPS, 1, False),
    b"zmpop": (_ZPOPS, 1, True),  # *2, key, *N, >push, the pairs
    b"bzmpop": (_ZPOPS, 1, True),
    b"xclaim": (_CREATED, 0, False),  # *N, >push, the entries
    b"xautoclaim": (_CREATED, 1, True),  # *3, next id, *N, >push...
    b"xreadgroup": (_CREATED, 1, False),  # %N, key, >push, its entries...
}
# Those of IN_REPLY whose events Redis writes inside the reply when a write
# serves the command too (it pops as it replies); a served XREADGROUP
# creates its consumer before it starts the reply.
SERVED_IN_REPLY = frozenset((b"bzpopmin", b"bzpopmax", b"bzmpop"))

# What some rules need to know from before the command ran (before[None]).
_PRE: dict[bytes, Callable] = {
    b"xadd": _stream_length,
    b"xgroup": _consumers_before,
    b"xreadgroup": _consumers_before,
    b"xclaim": _consumers_before,
    b"xautoclaim": _consumers_before,
}


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    Verb.EVENTS: events_command,
}
