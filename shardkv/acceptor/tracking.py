"""Client-side caching: CLIENT TRACKING and its invalidation messages.

As Redis's ``tracking.c``, in the acceptor, which sees every client:

* A client with tracking on (and not BCAST) that runs a read-only command
  has the command's keys remembered in :data:`TABLE` (key -> client ids),
  unless OPTIN without ``CLIENT CACHING yes``, or OPTOUT with ``CLIENT
  CACHING no``, just before, says otherwise.  Keys are remembered when the
  command is dispatched, which may only add an invalidation, never lose one.
  As Redis remembers them after the command ran, a change of a key that
  happened before a read of it still in flight ran (the read's own lazy
  expiry, or a write or expiry the key's shard ran before the read) leaves
  the client remembering the key, and tells it only if it tracked the key
  before (see :class:`Read`).
* Every change of a key, on any shard, reaches the acceptor as a keyspace
  event (:mod:`shardkv.worker.events`, with every class while a client
  tracks: see :mod:`shardkv.acceptor.notifications`): writes, expirations,
  evictions.  Each key that changed is dropped from the table and its
  clients get an invalidation: a RESP3 ``>invalidate`` push, or, with
  ``REDIRECT id`` to a RESP2 client subscribed to ``__redis__:invalidate``,
  a Pub/Sub message there.  NOLOOP skips the client that made the change.
  The invalidation for the client's own change comes after its reply.
* BCAST clients get the keys changed under each of their prefixes (one
  message per prefix, prefixes and keys sorted as Redis's radix trees) once
  per flush of the acceptor's clients, before the replies of that flush, as
  Redis broadcasts in beforeSleep.
* FLUSHDB and FLUSHALL (a ``flush`` event from each shard) send every
  tracking client a null invalidation, once per command, and empty the table.
* The table outlives tracking, as in Redis: a client that turns tracking
  off leaves its keys there until they change, so the shards keep telling
  what changes while the table holds keys, and a client that turns
  tracking on again hears of the keys it read before.
* A client's own change is told as its tracking was when it sent the
  command that made it (the shard's events come after the acceptor ran
  what the client pipelined behind it): through a CLIENT TRACKING off or
  RESET behind it (:data:`_RETIRED`), and not at all if tracking went on
  behind it (:attr:`Tracking.since`), a flush included.
* ``tracking-table-max-keys``: past it, random keys are dropped from the
  table and their clients invalidated, as Redis's ``trackingLimitUsedSlots``.

Tracking tables are about key names, not databases, as in Redis.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from functools import partial

from shardkv.acceptor import causal, notifications, pubsub
from shardkv.acceptor.bus import fail_slot
from shardkv.acceptor.client import Client
from shardkv.acceptor.holds import Gate
from shardkv.acceptor.replies import (
    MUTED,
    RELAYED,
    MutedSlot,
    Slot,
    Trailing,
    in_pipe_order,
    is_plain_slot,
    origin_of,
)
from shardkv.protocol import bus, errors, wire
from shardkv.protocol.args import strict_int
from shardkv.protocol.commands import Command
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK, Push, Raw, encode, encode_error

EVICTED = 1 << 9
KEYMISS = 1 << 11
FLUSH = wire.EVENT_FLUSH
SCRIPT_READ = wire.EVENT_SCRIPT_READ
SERVED = wire.EVENT_SERVED
SERVED_OWN = wire.EVENT_SERVED_OWN
WAITER_SHIFT = wire.EVENT_WAITER_SHIFT
ALL_CLASSES = notifications.CLASSES | FLUSH | SCRIPT_READ
CHANNEL = b"__redis__:invalidate"

# key -> ids of the clients that may cache it
TABLE: dict[bytes, set[int]] = {}
# prefix -> (its BCAST clients, the keys changed this turn -> the client that changed them)
PREFIXES: dict[bytes, tuple[dict[Client, None], dict[bytes, Client | None]]] = {}
# How many of PREFIXES have each length, and those lengths ascending: a
# changed key looks up its own first bytes of each length (Redis walks its
# prefix tree along the key), not every prefix.
_LENGTH_COUNTS: dict[int, int] = {}
_LENGTHS: list[int] = []
# The prefixes with keys changed since the last broadcast.
_CHANGED: dict[bytes, None] = {}


class Tracking:
    """One client's tracking state (``Client.tracking`` while it is on)."""

    __slots__ = (
        "redirect",
        "bcast",
        "optin",
        "optout",
        "noloop",
        "prefixes",
        "caching",
        "broken",
        "scripts",
        "reads",
        "by_key",
        "since",
        "new_prefixes",
        "early",
    )

    def __init__(self) -> None:
        self.redirect = 0
        self.bcast = False
        self.optin = False
        self.optout = False
        self.noloop = False
        self.prefixes: list[bytes] = []
        self.caching = False  # CLIENT CACHING yes/no given for the next command
        self.broken = False  # the redirect client went away
        # OPTIN/OPTOUT: whether each script in flight (by its reply slot)
        # was sent with its reads to be tracked (see after_command).
        self.scripts: dict[object, bool] = {}
        # The tracked reads sent (outside MULTI/EXEC) whose reply may not
        # have come yet, oldest first (see Read).
        self.reads: deque[Read] = deque()
        # The same reads by key, oldest first: an eviction looks up the
        # reads of its key alone (see _reads_after).
        self.by_key: dict[bytes, deque[Read]] = {}
        # The client's commands in flight when tracking went on (their reply
        # slots), if any: their own changes ran before it in Redis, so they
        # tell it nothing, a flush included (see _before_on): a _Mark of the
        # last of them (O(1), however long the queue) unless in an EXEC.
        self.since: list | _Mark | None = None
        # BCAST: the prefixes an ON registered while commands of the client
        # were in flight, each with those commands' reply slots (one list
        # per ON): their changes by those commands ran before the prefix
        # was registered, and Redis broadcasts none of them (see _unheard).
        self.new_prefixes: dict[bytes, list | _Mark] | None = None
        # An atomic EXEC that turned tracking on inside: its reply slot, by
        # BCAST prefix the keys only its commands before the ON that named
        # the prefix first wrote, and the keys of its
        # scripts queued while tracking was on (see written_before_on).
        self.early: tuple[object, dict[bytes, frozenset[bytes]], frozenset[bytes]] | None = None

    def add_read(self, read: Read) -> None:
        """A tracked read was sent (after those answered are forgotten)."""
        self.prune()
        self.reads.append(read)
        by_key = self.by_key
        for key in dict.fromkeys(read.keys):
            pending = by_key.get(key)
            if pending is None:
                by_key[key] = deque((read,))
            else:
                pending.append(read)

    def prune(self) -> None:
        """Forget the oldest reads, as long as they were answered."""
        reads = self.reads
        by_key = self.by_key
        while reads and reads[0].slot.data is not None:
            read = reads.popleft()
            for key in dict.fromkeys(read.keys):
                pending = by_key[key]
                pending.popleft()  # (the oldest of each of its keys)
                if not pending:
                    del by_key[key]


class Read:
    """A read-only command whose keys were remembered when it was sent:
    its reply slot, its keys, those of them its client did not track
    before it (``fresh``), and for each shard where its command was queued
    (its part there), how many commands that shard's pipe had been given
    then (``sent``: the read has not run there while fewer are answered).

    In Redis the read remembers its keys after it ran.  So a change of one
    of its keys that happened before the read ran (an invalidation that
    comes while the read is in flight: its own lazy expiry; or, in the
    order of the key's shard pipe, a write or expiry that shard ran before
    the read's part) keeps its client in :data:`TABLE`, and tells it (its
    own, after the reply, as Redis's ``tracking_pending_keys``) only if the
    key was not ``fresh``.  Where the order is not known (a multi-shard
    write's events, held until its last part is in, or relayed by another
    acceptor), the client stays in the table and is told: maybe once more
    than Redis, never once less."""

    __slots__ = ("slot", "keys", "fresh", "sent", "unsure")

    def __init__(
        self,
        slot: Slot,
        keys: list[bytes],
        fresh: list[bytes],
        sent: dict[int, int],
        unsure: list[bytes] | None = None,
    ) -> None:
        self.slot = slot
        self.keys = keys
        self.fresh = fresh
        self.sent = sent
        # Keys that the read's own command may have changed after reading
        # them (an atomic EXEC's, see atomic_exec_reads): whether its own
        # change came before the read is not known.
        self.unsure = unsure


class _State:
    clients = 0  # clients with tracking on
    items = 0  # client ids in TABLE, summed over keys
    flush_due = False  # a BCAST flush is scheduled for the end of this turn
    remote_bcast = 0  # BCAST clients that redirect to another acceptor's client (K > 1)
    # Atomic EXECs in flight whose queued CLIENT TRACKING ON turns tracking
    # on (see expect_tracking): the shards note what changes meanwhile.
    expected = 0


STATE = _State()


def events_mask(server) -> int:
    """Every class while a client tracks keys, or while the table still
    holds keys (Redis keeps it after the last client turns tracking off,
    and drops each key when it changes)."""
    return ALL_CLASSES if STATE.clients or TABLE or STATE.expected else 0


def expect_tracking(client: Client) -> Callable[[], None]:
    """An atomic EXEC of ``client``, not tracking, with a CLIENT TRACKING
    ON queued in it, is about to be dispatched: the shards note what
    changes from now on (the mask goes ahead of the operation on every
    pipe), so that the EXEC's own writes after the ON reach the client as
    Redis's do once it tracks (an ``invalidate`` of a key it read, a BCAST
    prefix's keys).  The function to call once the EXEC is decided, run
    or not."""
    STATE.expected += 1
    notifications.update_mask(client.server)

    def decided() -> None:
        STATE.expected -= 1
        notifications.update_mask(client.server)

    return decided


# -- CLIENT TRACKING / CACHING / GETREDIR / TRACKINGINFO ----------------------------


def client_tracking(client: Client, args: list[bytes]) -> None:
    """CLIENT TRACKING ON|OFF [REDIRECT client-id] [PREFIX prefix [PREFIX prefix ...]] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]"""
    redirect = 0
    bcast = optin = optout = noloop = False
    prefixes: list[bytes] = []
    n = len(args)
    j = 3
    while j < n:
        opt = args[j].lower()
        more = j < n - 1
        if opt == b"redirect" and more:
            j += 1
            if redirect:
                raise CommandError("ERR A client can only redirect to a single other client")
            value = strict_int(args[j])
            if value is None:
                raise CommandError(errors.NOT_INTEGER)
            redirect = value
            if redirect not in client.server.clients and not _elsewhere(client.server, redirect):
                raise CommandError("ERR The client ID you want redirect to does not exist")
        elif opt == b"bcast":
            bcast = True
        elif opt == b"optin":
            optin = True
        elif opt == b"optout":
            optout = True
        elif opt == b"noloop":
            noloop = True
        elif opt == b"prefix" and more:
            j += 1
            prefixes.append(args[j])
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    mode = args[2].lower()
    state = client.tracking
    if mode == b"on":
        if not bcast and prefixes:
            raise CommandError("ERR PREFIX option requires BCAST mode to be enabled")
        if state is not None and state.bcast != bcast:
            raise CommandError(
                "ERR You can't switch BCAST mode on/off before disabling tracking for this client, "
                "and then re-enabling it with a different mode."
            )
        if bcast and (optin or optout):
            raise CommandError("ERR OPTIN and OPTOUT are not compatible with BCAST")
        if optin and optout:
            raise CommandError("ERR You can't specify both OPTIN mode and OPTOUT mode")
        if state is not None and ((optin and state.optout) or (optout and state.optin)):
            raise CommandError(
                "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, "
                "and then re-enabling it with a different mode."
            )
        if bcast:
            _check_prefixes(state.prefixes if state is not None else [], prefixes)
        before = state.redirect if state is not None else None
        enable(client, redirect, bcast, optin, optout, noloop, prefixes)
        if redirect and redirect not in client.server.clients:
            _check_elsewhere(client, redirect, before)
            return
    elif mode == b"off":
        disable(client)
    else:
        raise CommandError(errors.SYNTAX)
    client.reply(OK)


# -- REDIRECT to another acceptor's client (K > 1) ---------------------------------


def _elsewhere(server, cid: int) -> bool:
    """Whether ``cid`` is an id another acceptor hands out (K > 1)."""
    return server.bus is not None and cid > 0 and (cid - 1) % server.nacceptors != server.index


def _check_elsewhere(client: Client, redirect: int, before: int | None) -> None:
    """Reply once the acceptor of ``redirect`` says whether it has that
    client; if not, tracking goes back to what it was, and the reply is
    Redis's error."""
    slot = Slot(client)
    client.pending.append(slot)

    def done(found: list) -> None:
        if any(found):
            slot.deliver(b"+OK\r\n")
            return
        state = client.tracking
        if before is None:
            disable(client)
        elif state is not None:
            _redirect(client, state, before)
        message = "ERR The client ID you want redirect to does not exist"
        client.server.stats.error(message)
        slot.deliver(encode_error(message))

    client.server.bus.ask(bus.HAS_CLIENT, [redirect], done, failed=fail_slot(slot))  # type: ignore[union-attr]


def bus_has_client(server, origin: int, args: list) -> int:
    return 1 if args[0] in server.clients else 0


# While another acceptor's command's events are handed out (see
# on_events): [its acceptor, its shard, the O frame's seq, its reply's
# index in its batch], which an invalidation for a REDIRECT target
# elsewhere carries (see bus_invalidate).
_REMOTE_AT: list[int] | None = None
# While a shard's O frame is handed out: the blocked commands its batch
# served (each event's ``cls >> WAITER_SHIFT``, -1 unnamed), so that a
# blocked client here that it did not serve is told at once of a change by
# a command behind another of the batch (see _ask_behind).
_FRAME_SERVED: list[int] | None = None
# While an event is handed out, the last blocked command here that a write
# served before its change, its reply not written yet (a J frame may hold
# it; see pubsub.served_before, _after_served_reply).
_AFTER_SERVE: object | None = None


def bus_invalidate(server, origin: int, args: list) -> None:
    """Another acceptor's invalidation for a client here that its tracking
    client redirects to: ``[target id, tracking client id, its RESP3, keys,
    1 for null]``, then, for a change a command of this acceptor's made
    (see :data:`_REMOTE_AT`), ``[this acceptor, shard, seq, reply]``: if
    the target is that command's client, the message goes before its reply,
    as Redis sends it while the command runs."""
    target_id, tracker_id, resp3, keys, null, *made = args
    if (target_id - 1) % server.nacceptors != server.index:
        return  # (told to every acceptor: the target's own answers, K > 2)
    target = server.clients.get(target_id)
    if target is None or target.closed:
        server.bus.tell(bus.BROKEN, [tracker_id, target_id])
        return
    if target.closing:
        return
    if null:
        keys = Raw(b"_\r\n" if resp3 else b"$-1\r\n")
    if target.resp3:
        message = Push([b"invalidate", keys])
    elif target.state.subscribed:
        message = Push([b"message", CHANNEL, keys])
    else:
        return
    links = server.links
    if made and made[0] == server.index and made[1] == -1:
        # A multi-shard command of this acceptor's, whose events it relayed
        # (it holds the reply until the answer): before its reply.
        relayed = notifications.RELAYS.get(made[2])
        if relayed is not None:
            holder, indices = relayed
            writer, place = origin_of(holder)
            if writer is not None and writer is target:
                at = place
                places = getattr(holder, "event_places", None) if not is_plain_slot(holder) else None
                if places and 0 <= made[3] < len(indices):
                    at = _place_of(places, indices[made[3]]) or place
                if _before_command(writer, at, encode(message, writer.resp3)):
                    return
    elif (
        made
        and made[0] == server.index
        and 0 <= made[1] < len(links)
        and any(getattr(reply, "data", b"") is None for reply in target.pending)  # (else not the writer)
    ):
        client: Client = target
        # A command of this acceptor's made it: once its batch's replies are
        # in, before its reply if the target sent it.  (The other acceptor
        # answers ``seen`` for the command's events after this is answered.)
        answer = server.bus.later() if server.bus.answering() else None
        data = encode(message, target.resp3)

        def then(sinks: dict | None) -> None:
            sink = sinks.get(made[3]) if sinks else None
            writer, place = origin_of(sink) if sink is not None else (None, None)
            if writer is not client or not _before_command(client, place, data):
                _push_remote(client, message)
            if answer is not None:
                answer(None)

        links[made[1]].when_batched(origin, made[2], then)
        return
    _push_remote(target, message)


def bus_behind(server, origin: int, args: list) -> int | None:
    """``[acceptor, shard or -1, seq or relay number, reply or event,
    whether the batch served a client blocked on the asker]`` (see
    :func:`bus_invalidate`): 1 if that command of this acceptor's came
    behind a command of its client not yet answered, which may serve a
    client blocked on the asker (see :func:`_after_unanswered`), else 0.
    The earlier commands of the command's batch, whose replies wait for
    the asker to hand out their events, ran before it on its shard: they
    count only if the batch served such a client."""
    acceptor, shard, seq, reply, *rest = args
    batch_counts = rest[0] if rest else 1
    if acceptor != server.index:
        return 0
    if shard == -1:
        relayed = notifications.RELAYS.get(seq)
        writer, place = origin_of(relayed[0]) if relayed is not None else (None, None)
        return 1 if writer is not None and _after_unanswered(writer, place) else 0
    if not 0 <= shard < len(server.links):
        return 0
    answer = server.bus.later()

    def then(sinks: dict | None) -> None:
        sink = sinks.get(reply) if sinks else None
        writer, place = origin_of(sink) if sink is not None else (None, None)
        skip = () if batch_counts or not sinks else tuple(sinks.values())
        answer(1 if writer is not None and _after_unanswered(writer, place, skip) else 0)

    server.links[shard].when_batched(origin, seq, then)
    return None


def _place_of(places: list, i: int) -> object:
    """Where in the array of an EXEC run as one operation the command that
    made its event number ``i`` stands (``AtomicOp.event_places``)."""
    for end, place in places:
        if end > i:
            return place
    return None


def _push_remote(target: Client, message: Push) -> None:
    """Another acceptor's invalidation for ``target``: now, or just before a
    blocked command's reply (``pubsub.invalidation_while_blocked``)."""
    if target.closing or target.closed:
        return
    if not (
        target.state.blocked_token > 0
        and pubsub.invalidation_while_blocked(target, encode(message, target.resp3), 0, False)
    ):
        target.push(message)


def _before_command(target: Client, at: object, data: bytes) -> bool:
    """``data`` for ``target`` before the reply of its command whose reply
    slot is ``at`` (inside EXEC's array: before the command's part), if
    still pending; whether it was."""
    if target.closing or target.closed:
        return True  # (nothing more goes to it)
    if pubsub.push_in_exec(target, at, data):
        return True
    pending = target.pending
    at = _in_pending(pending, at)
    if at is None:
        return False
    if getattr(at, "cut", None) is not None:
        return True  # an EXEC reply cut by ACL DELUSER: Redis writes nothing after it
    try:
        pending.insert(pending.index(at), _Sent(data))
        target.flush()
    except Exception:  # a bug costs this client alone
        target.failed("pushing an invalidation to it")
    return True


def bus_broken(server, origin: int, args: list) -> None:
    """The client a tracking client here redirects to is gone."""
    client = server.clients.get(args[0])
    state = client.tracking if client is not None else None
    if state is not None and state.redirect == args[1]:
        state.broken = True
        if client.resp3:
            client.push(Push([b"tracking-redir-broken", args[1]]))


def _overlap(a: bytes, b: bytes) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _check_prefixes(existing: list[bytes], new: list[bytes]) -> None:
    """Redis's ``checkPrefixCollisionsOrReply``: it takes the prefixes given
    in order and reports the first that overlaps one of the client's
    prefixes (the least of those, in its radix tree's order) or one given
    after it (the first of those).  Redis compares every pair; here the
    prefixes given are sorted once, so that many of them cost O(N log N),
    not O(N^2) (20,000 prefixes held the acceptor for minutes)."""
    first = _first_overlapping(new)
    old = sorted(set(existing))  # (Redis's radix tree order is byte-wise)
    olds = set(old)
    lengths = sorted({len(p) for p in olds})
    for prefix in new[: first + 1]:
        found = _existing_overlap(prefix, old, olds, lengths)
        if found is not None:
            raise CommandError(
                "ERR Prefix '%s' overlaps with an existing prefix '%s'. "
                "Prefixes for a single client must not overlap." % (_text(prefix), _text(found))
            )
    if first < len(new):
        prefix = new[first]
        other = next(p for p in new[first + 1 :] if _overlap(prefix, p))
        raise CommandError(
            "ERR Prefix '%s' overlaps with another provided prefix '%s'. "
            "Prefixes for a single client must not overlap." % (_text(prefix), _text(other))
        )


def _existing_overlap(prefix: bytes, old: list[bytes], olds: set[bytes], lengths: list[int]) -> bytes | None:
    """The least of the client's prefixes (``old``, sorted; ``olds``, the
    same as a set; ``lengths``, their lengths ascending) that overlaps
    ``prefix``, if any.  One that starts ``prefix`` sorts before any that
    ``prefix`` starts, and the shortest of them first; those that ``prefix``
    starts follow each other in ``old``, from where ``prefix`` would go."""
    for length in lengths:
        if length > len(prefix):
            break
        if prefix[:length] in olds:
            return prefix[:length]
    at = bisect_left(old, prefix)
    if at < len(old) and old[at].startswith(prefix):
        return old[at]
    return None


def _first_overlapping(prefixes: list[bytes]) -> int:
    """The index of the first of ``prefixes`` that overlaps one after it,
    ``len(prefixes)`` if none does.

    In byte order, the prefixes that a prefix starts (itself included, and
    its duplicates after it) come right after it: a walk of the sorted
    prefixes with a stack of those that start the current one sees each
    such group as a subtree.  Two prefixes overlap when one is in the
    other's group, so the first index that overlaps a later one is the
    least index of any group of two or more."""
    best = len(prefixes)
    stack: list[list] = []  # [prefix, least index in its group, size of its group]
    order = sorted(range(len(prefixes)), key=prefixes.__getitem__)
    for i in [*order, -1]:
        prefix = prefixes[i] if i >= 0 else None
        while stack and (prefix is None or not prefix.startswith(stack[-1][0])):
            _, least, size = stack.pop()
            if size > 1 and least < best:
                best = least
            if stack:
                parent = stack[-1]
                if least < parent[1]:
                    parent[1] = least
                parent[2] += size
        if prefix is not None:
            stack.append([prefix, i, 1])
    return best


def _text(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("latin-1")  # as %s of a C string


def enable(
    client: Client,
    redirect: int,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    prefixes: list[bytes],
) -> None:
    state = client.tracking
    first = state is None
    if state is None:
        state = client.tracking = Tracking()
        STATE.clients += 1
        if client.pending or client.state.exec_parts:
            state.since = _in_flight_mark(client)
        if notifications.update_mask(client.server):
            # BCAST hears of keys it never read: the reply waits until every
            # shard notes what changes (a non-BCAST client's reads come after
            # the mask on each pipe anyway).
            notifications.hold_replies(client)
            if not client.state.in_exec:
                # A batch notes events only if the shard listened as it
                # began: the commands after this one (a script's reads, in
                # the same read of the client) go in the next batch, so
                # each one's events are its own.  (Not in EXEC, whose
                # commands reach the worker in one batch.)
                for link in client.server.links:
                    link.flush()
    state.bcast = bcast  # as before if tracking was on: BCAST cannot switch
    _redirect(client, state, redirect)
    state.broken = False
    state.optin = optin
    state.optout = optout
    state.noloop = noloop
    if bcast:
        registered: list[bytes] = []
        for prefix in prefixes or [b""]:
            entry = PREFIXES.get(prefix)
            if entry is None:
                entry = _register(prefix)
                registered.append(prefix)
            if client not in entry[0]:
                entry[0][client] = None
                state.prefixes.append(prefix)
        if registered:
            _registered_in_flight(client, state, registered, first)


def _registered_in_flight(client: Client, state: Tracking, registered: list[bytes], first: bool) -> None:
    """BCAST prefixes an ON registered: the client's commands in flight as
    it ran (``since`` if it turned tracking on, else those in flight now:
    an ON that adds prefixes) changed keys before they were registered."""
    if first:
        in_flight = state.since
    elif client.pending or client.state.exec_parts:
        in_flight = _in_flight_mark(client)
    else:
        in_flight = None
    if in_flight is None:
        return
    if state.new_prefixes is None:
        state.new_prefixes = {}
    for prefix in registered:
        state.new_prefixes[prefix] = in_flight


def _register(prefix: bytes) -> tuple[dict[Client, None], dict[bytes, Client | None]]:
    """A prefix that no BCAST client had: its entry of :data:`PREFIXES`."""
    entry: tuple[dict[Client, None], dict[bytes, Client | None]] = ({}, {})
    PREFIXES[prefix] = entry
    count = _LENGTH_COUNTS.get(len(prefix), 0)
    _LENGTH_COUNTS[len(prefix)] = count + 1
    if not count:
        _LENGTHS[:] = sorted(_LENGTH_COUNTS)
    return entry


def _unregister(prefix: bytes) -> None:
    """The last BCAST client of ``prefix`` left it."""
    del PREFIXES[prefix]
    count = _LENGTH_COUNTS.pop(len(prefix)) - 1
    if count:
        _LENGTH_COUNTS[len(prefix)] = count
    else:
        _LENGTHS[:] = sorted(_LENGTH_COUNTS)


def _redirect(client: Client, state: Tracking, redirect: int) -> None:
    """Set ``state.redirect``, counting the BCAST clients that redirect to
    another acceptor (whose flush the replies wait for, see _broadcast)."""
    server = client.server
    if state.bcast and _elsewhere(server, state.redirect):
        STATE.remote_bcast -= 1
    state.redirect = redirect
    if state.bcast and _elsewhere(server, redirect):
        STATE.remote_bcast += 1


def disable(client: Client) -> None:
    state = client.tracking
    if state is None:
        return
    redirect = state.redirect
    _redirect(client, state, 0)
    for prefix in state.prefixes:
        entry = PREFIXES.get(prefix)
        if entry is not None:
            entry[0].pop(client, None)
            if not entry[0]:
                _unregister(prefix)
    client.tracking = None
    STATE.clients -= 1
    if client.pending and not client.closed:
        # Its commands in flight ran before this in Redis: their own changes
        # of keys it tracked still tell it (see _retired).
        # Those sent before it went on ran while it was off (or under an
        # older state, kept before): each slot is kept once at most.
        since = state.since
        if isinstance(since, _Mark):
            in_flight = since.after()  # (the mark: O(what came after it))
            state.since = None
        else:
            in_flight = _in_flight(client)
        if isinstance(since, list):
            before = {id(p) for p in since}
            in_flight = [p for p in in_flight if id(p) not in before]
            state.since = None  # (none of the slots kept: no need, and on and off N times kept N lists)
        if in_flight:
            state.redirect = redirect  # (no longer counted in STATE.remote_bcast)
            # (RESET then turns RESP3 off)
            _RETIRED.setdefault(client, []).append((state, in_flight, client.resp3))
    # As Redis's disableTracking, the table keeps the keys the client read:
    # a key leaves it when it changes (or on a flush), and a client that
    # turns tracking on again still hears of the keys it read before.
    notifications.update_mask(client.server)


# Clients that turned tracking off (CLIENT TRACKING off, RESET) while
# commands they sent before were in flight: the tracking state they had,
# and those commands' reply slots.  Each such command's own change of a
# key the client tracked tells it, after the command's reply, as Redis ran
# it (and sent the invalidation) before tracking went off.  One entry per
# such CLIENT TRACKING off, oldest first (on and off again in one pipeline
# keeps each span's state for the commands sent in it).
_RETIRED: dict[Client, list[tuple[Tracking, list, bool]]] = {}


def _in_flight(client: Client) -> list:
    """The reply slots of ``client``'s commands in flight (not ready); in
    an EXEC that routes its commands one by one, those it routed so far
    too (each is pending on its own while EXEC runs)."""
    in_flight = [p for p in client.pending if type(p) is not bytes]
    parts = client.state.exec_parts
    if parts and client.state.in_exec:
        in_flight += [p for p in parts if type(p) is not bytes]
    return in_flight


class _Mark:
    """The client's commands in flight as tracking went on (or an ON
    registered BCAST prefixes), marked in O(1) by the last of them: those
    pending up to its entry (see _in_pending), as the client's replies are
    written in order.  (A copy of the list instead made CLIENT TRACKING ON
    and OFF pipelined behind a blocked command quadratic.)"""

    __slots__ = ("client", "last")

    def __init__(self, client: Client, last: object) -> None:
        self.client = client
        self.last = last

    def end(self) -> int | None:
        """The index in ``client.pending`` of the entry that is or holds
        ``last``, None if answered; searched from the end (the mark is
        usually near it)."""
        pending = self.client.pending
        last = self.last
        for i in range(len(pending) - 1, -1, -1):
            if _in_pending((pending[i],), last) is not None:
                return i
        return None

    def span(self) -> list:
        """The marked commands still pending."""
        end = self.end()
        if end is None:
            return []
        pending = self.client.pending
        return [pending[i] for i in range(end + 1) if type(pending[i]) is not bytes]

    def after(self) -> list:
        """The client's commands in flight sent after the marked ones."""
        pending = self.client.pending
        out = []
        for i in range(len(pending) - 1, -1, -1):
            entry = pending[i]
            if _in_pending((entry,), self.last) is not None:
                break
            if type(entry) is not bytes:
                out.append(entry)
        out.reverse()
        return out


def _in_flight_mark(client: Client) -> list | _Mark | None:
    """What :attr:`Tracking.since` keeps of :func:`_in_flight`: a _Mark
    outside an EXEC that routes its commands one by one, else the list."""
    parts = client.state.exec_parts
    if parts and client.state.in_exec:
        return _in_flight(client) or None
    for entry in reversed(client.pending):
        # (not MUTED, a reply CLIENT REPLY OFF dropped: one object for all,
        # the mark would match the later ones too; ready, it is no command's
        # place, so the mark is the entry in flight before it)
        if type(entry) is not bytes and entry is not MUTED:
            return _Mark(client, entry)
    return None


def _span(since: list | _Mark) -> list:
    return since.span() if isinstance(since, _Mark) else since


def _still_pending(client: Client, replies: list) -> list:
    """Those of ``replies`` (the client's pending replies once, or their
    parts: see _in_pending) still pending."""
    alive: set[int] = set()
    for reply in client.pending:
        alive.add(id(reply))
        for inner in (getattr(reply, "outcome", None), getattr(reply, "slot", None)):
            if inner is not None:  # (an atomic EXEC's operation, a muted reply's slot)
                alive.add(id(inner))
        parts = getattr(reply, "parts", None)
        if parts:
            alive.update(id(part) for part in parts)
    return [p for p in replies if id(p) in alive]


def _retired(client: Client, place: object) -> Tracking | None:
    """The tracking state ``client`` had when it turned tracking off, if
    the command of reply slot ``place`` was sent before that."""
    entries = _RETIRED.get(client)
    if entries is None or place is None:
        return None
    for state, in_flight, _resp3 in entries:
        if _in_pending(in_flight, place) is not None:
            return state
    return None


def _resp3_then(client: Client, state: Tracking) -> bool:
    """``client``'s protocol when it had tracking ``state``."""
    for kept, _in_flight, resp3 in _RETIRED.get(client, ()):
        if kept is state:
            return resp3
    return client.resp3


def _before_on(state: Tracking, place: object) -> bool:
    """Whether the command of reply slot ``place`` was sent before the
    client turned on tracking of ``state``."""
    since = state.since
    return since is not None and place is not None and _in_pending(_span(since), place) is not None


def _unheard(changer: Client, prefix: bytes, key: bytes, place: object) -> bool:
    """Whether ``changer``'s change of ``key`` (by its command of reply slot
    ``place``) ran, in Redis, before its CLIENT TRACKING ON BCAST registered
    ``prefix``: Redis notes a change under the prefixes registered as it
    runs, so that one is broadcast to no one (the shard's events come
    after the acceptor ran the ON pipelined or queued behind it)."""
    state = changer.tracking
    if state is None or state.new_prefixes is None:
        return False
    in_flight = state.new_prefixes.get(prefix)
    if in_flight is None:
        return False
    early = state.early
    if early is not None and early[0] is place:
        return key in early[1].get(prefix, ())
    return place is not None and _in_pending(_span(in_flight), place) is not None


def written_before_on(
    client: Client, place: object, keys: dict[bytes, frozenset[bytes]], scripts_read: frozenset[bytes]
) -> None:
    """An atomic EXEC (reply slot ``place``) that turned tracking on inside
    committed, its events not handed out yet, all at once: ``keys``, by
    BCAST prefix, written only by its commands before the ON that named
    the prefix first, were written before it was registered (see
    _unheard); its scripts' reads
    remember ``scripts_read`` alone, the keys of those queued while
    tracking was on (see _script_read)."""
    state = client.tracking
    if state is not None:
        state.early = (place, keys, scripts_read)


def client_caching(client: Client, args: list[bytes]) -> None:
    """CLIENT CACHING YES|NO"""
    state = client.tracking
    if state is None:
        raise CommandError(
            "ERR CLIENT CACHING can be called only when the client is in tracking mode "
            "with OPTIN or OPTOUT mode enabled"
        )
    opt = args[2].lower()
    if opt == b"yes":
        if not state.optin:
            raise CommandError("ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.")
    elif opt == b"no":
        if not state.optout:
            raise CommandError("ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.")
    else:
        raise CommandError(errors.SYNTAX)
    state.caching = True
    client.reply(OK)


def client_getredir(client: Client, args: list[bytes]) -> None:
    """CLIENT GETREDIR"""
    state = client.tracking
    client.reply(state.redirect if state is not None else -1)


def client_trackinginfo(client: Client, args: list[bytes]) -> None:
    """CLIENT TRACKINGINFO"""
    state = client.tracking
    flags = [b"on" if state is not None else b"off"]
    if state is not None:
        if state.bcast:
            flags.append(b"bcast")
        if state.optin:
            flags.append(b"optin")
            if state.caching:
                flags.append(b"caching-yes")
        if state.optout:
            flags.append(b"optout")
            if state.caching:
                flags.append(b"caching-no")
        if state.noloop:
            flags.append(b"noloop")
        if state.broken:
            flags.append(b"broken_redirect")
    resp3 = client.resp3
    flag_set = b"".join(
        [b"~%d\r\n" % len(flags) if resp3 else b"*%d\r\n" % len(flags)] + [_bulk(f) for f in flags]
    )
    prefixes: list[bytes] = sorted(state.prefixes) if state is not None else []
    client.reply(
        {
            b"flags": Raw(flag_set),
            b"redirect": state.redirect if state is not None else -1,
            b"prefixes": prefixes,
        }
    )


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def list_flags(client: Client) -> str:
    """CLIENT LIST's tracking flags: t, R (broken redirect), B (BCAST)."""
    state = client.tracking
    if state is None:
        return ""
    return "t" + ("R" if state.broken else "") + ("B" if state.bcast else "")


# -- remembering what clients read ----------------------------------------------------


def after_command(
    client: Client, cmd: Command, args: list[bytes], in_exec: bool = False, slot: object = None
) -> None:
    """Called after each command of a client with tracking on (see
    ``Client._execute``, and for each command EXEC ran): remember the keys
    of a read-only command, and forget CLIENT CACHING after the command it
    was for (after EXEC, for a transaction).  ``slot``: the reply slot of
    a command EXEC routed as if it came alone (``_run_in_order``), given
    right after it was routed: its read is then in the order of its
    shard pipe like a pipelined one, so a write before it in the same
    transaction leaves its key remembered, one after it invalidates it."""
    state = client.tracking
    if state is None:
        return
    if "readonly" in cmd.flags and not state.bcast and cmd.route != "local":
        if not ((state.optin and not state.caching) or (state.optout and state.caching)):
            keys = cmd.keys(args)
            # Outside MULTI, as Redis before the client's next command: its
            # reads before this one ran (see remember).  Inside EXEC, none:
            # Redis evicts before the command after EXEC (exec_ran).
            fresh = remember(client, keys, limit=None if in_exec else client)
            # (An EXEC run atomically gives no slot: a later command of it
            # may write the key, in an order not known here.)
            place = slot if in_exec else client.pending[-1] if client.pending else None
            if place is not None:
                if is_plain_slot(place):
                    state.add_read(Read(place, keys, fresh, _queued(client.server, keys, place)))
    elif cmd.name in _SCRIPTS and (state.optin or state.optout) and not in_exec and client.pending:
        # Redis remembers a script's keys when it reads, while CLIENT
        # CACHING still holds (until the script's end); the shard says so
        # later, so the decision is kept by the script's reply slot.
        place = client.pending[-1]
        if type(place) is not bytes:
            scripts = state.scripts
            if len(scripts) >= 64:  # those answered long ago, read or not
                alive = {id(p) for p in client.pending}
                for done in [p for p in scripts if id(p) not in alive]:
                    del scripts[done]
            scripts[place] = not ((state.optin and not state.caching) or (state.optout and state.caching))
    if cmd.name != "client" and client.state.multi is None and not in_exec:
        state.caching = False


_SCRIPTS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})


def atomic_exec_reads(client: Client, queued: list) -> Callable[[Slot], None] | None:
    """An EXEC that runs as one atomic operation (WATCH, writes over several
    shards, a blocking command): what its reads will remember, judged now
    (CLIENT CACHING applies to the EXEC), as the function to call once it
    commits, with the operation's reply slot (that its own events name);
    None if it remembers nothing.  Nothing is remembered if it does not run
    (a WATCHed key changed), as in Redis, where an aborted EXEC runs
    nothing.

    Redis remembers each read's keys as it runs, and invalidates a key each
    time a command of the transaction changes it (told after EXEC's reply).
    The operation's events come all at once after it committed, so each key
    read is classed by the commands around its last read: none after it
    that may write it (a write only before it, or none: the key stays
    remembered, and a change before the read tells the client only if it
    tracked the key before; a write only after it: the write's event
    invalidates it as any; writes on both sides, which of them changed it
    not known: it stays remembered and the client is told)."""
    state = client.tracking
    if state is None or state.bcast:
        return None
    if (state.optin and not state.caching) or (state.optout and state.caching):
        return None
    read: dict[bytes, int] = {}  # key -> position of its last read
    written: dict[bytes, list[int]] = {}  # key -> positions of the commands that may write it
    everything: list[int] = []  # positions of commands that may write any key
    for i, (cmd, args) in enumerate(queued):
        if cmd.route == "local":
            continue
        if "readonly" in cmd.flags:
            for key in cmd.keys(args):
                read[key] = i
        elif cmd.route != "shard" or cmd.name in _SCRIPTS:
            everything.append(i)  # FLUSHALL, a script's undeclared keys...
        else:
            for key in cmd.keys(args):
                written.setdefault(key, []).append(i)
    if not read:
        return None
    keys = list(read)
    kept: list[bytes] = []  # read after a write: the own change does not drop it
    unsure: list[bytes] = []  # written before and after its read
    for key, at in read.items():
        positions = written.get(key, []) + everything
        before = any(i < at for i in positions)
        after = any(i > at for i in positions)
        if before and after:
            kept.append(key)
            unsure.append(key)
        elif before:
            kept.append(key)

    def ran(place: Slot) -> None:
        # Redis remembered them as EXEC ran, under the client's id: a
        # CLIENT TRACKING off pipelined after EXEC (and sent before it
        # committed) leaves them in the table, and tracking on again
        # (OPTIN, OPTOUT or not; BCAST clients the table does not tell)
        # hears of them (see disable).
        if client.closed:
            return
        fresh = remember(client, keys)
        now = client.tracking
        if now is None:
            notifications.update_mask(client.server)  # the table holds keys (again)
            # Turned off after the EXEC was sent: its own writes' events
            # still tell it as tracking was (see _retired).
            now = _retired(client, place) if _RETIRED else None
            if now is None:
                if kept:
                    # No reads to keep them through its own writes' events,
                    # handed out next: back in the table after those.
                    client.server.loop.call_soon(_keep, [(key, client.id) for key in kept])  # type: ignore[union-attr]
                return
        if kept and not now.bcast:
            now.add_read(Read(place, kept, [k for k in fresh if k in kept], {}, unsure))
        if kept and _RETIRED and now is client.tracking:
            # Off and on again since: its own writes' events look at the
            # state it had (see _invalidate_key), which must know the reads too.
            then = _retired(client, place)
            if then is not None and then is not now and not then.bcast:
                then.add_read(Read(place, kept, [k for k in fresh if k in kept], {}, unsure))

    return ran


def _script_read(client: Client, key: bytes, place: object) -> None:
    """A script of ``client`` called a read-only command: its declared keys
    are remembered, as Redis's call() remembers the caller's (EVAL's) keys,
    if CLIENT CACHING allowed it when the script was sent (``place``: its
    reply slot)."""
    state = client.tracking
    if state is None or state.bcast:
        return
    early = state.early
    if early is not None and early[0] is place and key not in early[2]:
        return  # (a script of the EXEC that turned tracking on, before the ON)
    if state.optin or state.optout:
        tracked = state.scripts.get(place)
        if tracked is None:  # not known when sent (a script in MULTI/EXEC)
            tracked = not ((state.optin and not state.caching) or (state.optout and state.caching))
        if not tracked:
            return
    remember(client, [key])


_ANY = object()  # remember's pass: no client's reads count as run


def remember(client: Client, keys: list[bytes], limit: object = _ANY) -> list[bytes]:
    """Remember that ``client`` may cache ``keys``; the keys it did not track
    before.  Then, over ``tracking-table-max-keys``, an eviction pass; with
    ``limit`` a client (a read of ``client`` outside MULTI, just routed),
    one in which that client's reads in flight count as run, and
    invalidations of its keys follow this read's reply: Redis evicts
    before the client's next command, once this read and those pipelined
    before it ran (so a pipeline of reads goes over the limit by one key
    at most, each key evicted is told after the reply of the read after
    which Redis evicted it, and the last read's excess goes with the
    next command's pass, here made at once: the same pushes, in the same
    place among the client's replies).  With None (a read EXEC routed),
    no pass: Redis evicts between commands, not between those EXEC runs
    (see :func:`exec_ran`)."""
    cid = client.id
    fresh = [key for key in keys if _track(key, cid)]
    if limit is not None:
        most = _max_keys(client.server)
        if most and len(TABLE) > most:
            _limit_table(client.server, most, ran=None if limit is _ANY else client)
    return fresh


def _queued(server, keys: list[bytes], place: Slot) -> dict[int, int]:
    """:attr:`Read.sent`: for each shard of ``keys`` given this read's
    command (reply slot ``place``), how many commands its pipe has been
    given with it, at least.  With several acceptors the command is still
    captured (:mod:`shardkv.acceptor.holds`): it goes after what the pipe
    has, maybe later (a step over several shards waits for its holds).
    A read not queued yet (held back) is not counted: not known to be in
    flight there; nor is a captured read over several shards, which waits
    for its holds while later commands go out before it (counted, it could
    seem to have run before it did, and a change after it be taken for one
    before: a client left with a stale value)."""
    links = server.links
    shard_of = server.shard_of
    holds = server.holds
    captured = holds.captured if holds is not None else None
    if captured and len({shard_of(key) for key in keys}) > 1:
        captured = None  # (only the queued part below: the fifo's last entry)
    sent: dict[int, int] = {}
    for key in keys:
        shard = shard_of(key)
        if shard in sent:
            continue
        link = links[shard]
        if captured:
            n = at = 0
            for entry in captured:
                if entry[0] is link:
                    n += 1
                    if _answers(entry[3], place):
                        at = n
            if at:
                sent[shard] = link.sent + at
                continue
        fifo = link.fifo
        if fifo and _answers(fifo[-1], place):
            sent[shard] = link.sent
    return sent


def _answers(sink: object, place: Slot) -> bool:
    """Whether a link's ``sink`` takes (a part of) the reply of ``place``."""
    return sink is place or getattr(getattr(sink, "event_holder", None), "slot", None) is place


def _reads_after(
    server, state: Tracking, key: bytes, ordered: bool, own: object, evicted: bool = False
) -> tuple[bool, bool, Slot | None]:
    """``key`` changed while reads of the client may be in flight: whether
    the client stays in :data:`TABLE` (a read of the key may run after the
    change), whether it hears nothing (the read that made it remember the
    key ran after the change), and the reply slot of its first read known
    to have run after the change, of any key (its invalidation goes before
    that reply, as Redis sent it before it ran that read).  ``ordered``:
    the change came in the order of the key's shard pipe; ``own``: the
    reply slot of the client's command that made the change, if any (a
    read that found the key expired).  ``evicted``: the key left the table
    over ``tracking-table-max-keys``, which in Redis it enters only once the
    read ran: the client hears of it only if it tracked the key before the
    read, and once (the read then counts it as ``fresh``), however many
    passes evict it while the read waits."""
    state.prune()
    if evicted:
        return _evicted(state, key)
    reads = state.reads
    keep = silent = False
    first = None
    shard = answered = -1
    if ordered:
        shard = server.shard_of(key)
        link = server.links[shard]
        answered = link.sent - len(link.fifo)  # the commands of its pipe that ran
    for read in reads:
        if read.slot.data is not None:
            continue
        after: bool | None
        if read.slot is own:
            after = True  # its own lazy expiry
        elif not ordered:
            after = None  # not known
        else:
            at = read.sent.get(shard)
            after = None if at is None else answered < at
        if after and first is None:
            first = read.slot
        if key not in read.keys:
            continue
        if after and read.unsure and key in read.unsure:
            after = None
        if after is not False:
            keep = True
        if key in read.fresh:  # (reads are in order: the last one added the key)
            silent = after is True
    return keep, silent, first


def _evicted(state: Tracking, key: bytes) -> tuple[bool, bool, None]:
    """:func:`_reads_after` for ``key`` evicted over the table's limit (no
    order known, not the client's own change), from the reads of ``key``
    alone (:attr:`Tracking.by_key`), not all the reads in flight: an
    eviction pass draws many keys while many reads wait.  In Redis the
    first read to run puts the key back in the table, so that read is the
    one that now counts it as ``fresh``."""
    pending = state.by_key.get(key)
    if not pending:
        return False, False, None
    first = None
    for read in pending:
        if read.slot.data is not None:
            continue
        if key in read.fresh:
            return True, True, None  # not tracked before, or told already
        if first is None:
            first = read
    if first is None:
        return False, False, None
    first.fresh.append(key)  # told now: not again
    return True, False, None


def _max_keys(server) -> int:
    try:
        return int(server.config.get("tracking-table-max-keys", 1000000))
    except (TypeError, ValueError):
        return 1000000


# Keys of TABLE in random order, drawn from by _limit_table: one copy of
# the table's keys serves as many evictions as it has keys (those that left
# the table since are skipped), so an eviction costs O(1) amortized, not a
# walk of the whole table each time a new key goes over the limit.  Once
# more than half of it has left the table, it is dropped (_shrunk), so it
# does not keep deleted keys alive.
_DRAW: list[bytes] = []


def _limit_table(server, limit: int, ran: Client | None = None) -> None:
    """Over ``tracking-table-max-keys``: invalidate random keys until under
    it, trying each key at most once per call (Redis spreads this over
    several commands, a bounded effort each).  A key a read in flight may
    still remember stays in the table (:func:`_reads_after`), put back after
    the pass, so the table may stay over the limit until those reads are
    answered, as Redis's may until its next tries.  ``ran``: a client whose
    reads in flight all ran before this pass (see :func:`exec_ran`): its
    keys are evicted and told like any, none kept."""
    draw = _DRAW
    kept: list[tuple[bytes, int]] = []
    tries = len(TABLE)
    refilled = False
    while len(TABLE) > limit and tries > 0:
        if not draw:
            if refilled:
                break
            refilled = True
            draw.extend(TABLE)
            random.shuffle(draw)
        key = draw.pop()
        if key in TABLE:
            tries -= 1
            _invalidate_key(server, key, None, bcast=False, kept=kept, evicted=True, ran=ran)
    _keep(kept)


def exec_ran(client: Client) -> None:
    """An EXEC ran its commands in order, its reads remembered as each was
    routed (see :func:`after_command`).  Redis evicts over
    ``tracking-table-max-keys`` before each command, not between the
    commands EXEC runs: before the next one, once all of the EXEC's reads
    ran, it evicts, and the invalidations follow EXEC's reply.  The passes
    made as its reads were routed kept the keys of the client's reads in
    flight quietly (a read that may run after an eviction remembers its
    key again), so the table could stay over the limit with nothing told
    until the cron's pass, up to a second later.  Here those reads are
    known to come before: one pass in which they count as run, its
    invalidations of the client's own keys pushed now (the caller puts
    them after EXEC's reply)."""
    if not TABLE:
        return
    limit = _max_keys(client.server)
    if limit and len(TABLE) > limit:
        _limit_table(client.server, limit, ran=client)


def _shrunk() -> None:
    """A key left :data:`TABLE`: drop :data:`_DRAW` once most of its keys
    are gone (it is rebuilt at the next eviction)."""
    if len(_DRAW) > 2 * len(TABLE):
        _DRAW.clear()


# -- invalidating ------------------------------------------------------------------


def on_events(server, events: list, origin: object) -> None:
    global _REMOTE_AT, _FRAME_SERVED, _AFTER_SERVE
    if not STATE.clients and not TABLE:
        return
    changer, place = origin_of(origin)
    ordered = in_pipe_order(origin)
    kept: list[tuple[bytes, int]] = []
    flushed = False
    flush_inside = None  # (where the flush stands in such an EXEC's array)
    flush_at = None
    # An EXEC run as one operation: each command's place in EXEC's array,
    # where a REDIRECT to its client goes (see notifications.publish).
    places = (
        getattr(origin, "event_places", None) if changer is not None and not is_plain_slot(origin) else None
    )
    inside = None
    at = 0
    served = 0  # the blocked command served that made the change (see send)
    # Another acceptor's commands' events (a shard's O frame): each
    # event's command, for an invalidation to a REDIRECT target there.
    others = causal.OTHERS if origin is None or origin is RELAYED else None
    writer = others[2] if others is not None else None
    if writer is not None and others[0] >= 0:  # type: ignore[index]
        _FRAME_SERVED = [e[2] >> WAITER_SHIFT or -1 for e in events if e[2] & SERVED]
    for i, (_db, key, cls, _name) in enumerate(events):
        if writer is not None:
            reply = writer[1][i] if i < len(writer[1]) else -1
            _REMOTE_AT = [writer[0], others[0], others[1], reply] if reply >= 0 else None  # type: ignore[index]
        if places:
            while at < len(places) and places[at][0] <= i:
                at += 1
            inside = places[at][1] if at < len(places) else None
        if cls == FLUSH:
            if not flushed:
                flush_inside = inside
                flush_at = _REMOTE_AT
            flushed = True
        elif cls == SCRIPT_READ:
            if changer is not None:
                _script_read(changer, key, place)
        elif cls & notifications.CLASSES and not cls & KEYMISS:
            if cls & SERVED:
                waiter = cls >> WAITER_SHIFT or -1
                if waiter != served and waiter > 0:  # (served before what comes after it)
                    pubsub.note_served(server, waiter)
                served = waiter
            else:
                served = 0
            _AFTER_SERVE = pubsub.served_before(served) if pubsub.SERVED else None
            # As Redis: an eviction happens before the command runs, so even
            # its own client hears of it before the reply; anything else the
            # command changed, after (``tracking_pending_keys``).
            # (a served command's own change, Redis's current client's: see _served_own)
            mine, quiet = _served_own(server, served, cls) if served > 0 and PREFIXES else (_WRITERS, False)
            if changer is None:
                _invalidate_key(
                    server,
                    key,
                    None,
                    bcast=True,
                    ordered=ordered,
                    kept=kept,
                    served=served,
                    mine=mine,
                    quiet=quiet,
                )
            elif cls & EVICTED:  # (with the channels it is published on, if any)
                _invalidate_key(
                    server, key, changer, bcast=True, early=place, ordered=ordered, kept=kept, inside=inside
                )
            else:
                _invalidate_key(
                    server,
                    key,
                    changer,
                    bcast=True,
                    place=place,
                    ordered=ordered,
                    kept=kept,
                    inside=inside,
                    served=served,
                    mine=mine,
                    quiet=quiet,
                )
    _REMOTE_AT = _AFTER_SERVE = None
    if not flushed:
        _FRAME_SERVED = None
    # Back in the table after all of them: as in Redis, a command's second
    # event of a key (a new key's, then the write's) finds it gone.
    _keep(kept)
    if flushed:
        _REMOTE_AT = flush_at
        try:
            invalidate_all(server, changer, place, flush_inside)
        finally:
            _REMOTE_AT = _FRAME_SERVED = None
    if not STATE.clients and not TABLE:
        notifications.update_mask(server)  # nothing left to hear of


# (a change's BCAST changer, unless told: its writer's, as any change's)
_WRITERS = object()


def _invalidate_key(
    server,
    key: bytes,
    changer: Client | None,
    bcast: bool,
    early: object = None,
    place: object = None,
    ordered: bool = False,
    kept: list[tuple[bytes, int]] | None = None,
    evicted: bool = False,
    ran: Client | None = None,
    inside: object = None,
    served: int = 0,
    mine: object = _WRITERS,
    quiet: bool = False,
) -> None:
    """``key`` changed: drop it from the table and tell its clients.
    ``changer``: the client whose command changed it; its invalidation
    comes before that command's reply slot ``early`` (an eviction), else
    after its reply slot ``place``.  ``ordered``: the change came in the
    order of the key's shard pipe (see :class:`Read`); ``kept``: where the
    clients that stay in the table go (else they are put back at once);
    ``evicted``: over ``tracking-table-max-keys`` (see :func:`_reads_after`);
    ``ran``: a client whose reads in flight all ran before the change;
    ``inside``: where in the array of an EXEC run atomically the command
    that made it stands (an ExecPlace); ``served``: the blocked command
    that made it, served by the change's write (see :func:`send`);
    ``mine``: the client Redis counts the change as its under BCAST, which
    NOLOOP does not tell (None: none here; ``changer`` by default); ``quiet``: a change
    Redis counts as no one's there, the key's last changer staying (see
    :func:`_served_own`)."""
    if bcast and PREFIXES:
        # Each prefix the key starts with: its first bytes of each length
        # that a prefix has (Redis walks its prefix tree along the key).
        found = []
        for length in _LENGTHS:
            if length > len(key):
                break
            prefix = key[:length]
            if prefix in PREFIXES:
                if changer is not None and _unheard(changer, prefix, key, place or early):
                    continue
                found.append(prefix)
        if found:
            who = changer if mine is _WRITERS else mine
            wait = _AFTER_SERVE
            if wait is not None and wait.unwritten():  # type: ignore[attr-defined]
                # (after a client served here: once its reply is written)
                later = partial(_broadcast_due, server, key, found, who, quiet, changer)
                pubsub.after_written(server, wait, later)
            else:
                _broadcast_due(server, key, found, who, quiet, changer)
    ids = TABLE.pop(key, None)
    if not ids:
        return
    if _DRAW:
        _shrunk()
    STATE.items -= len(ids)
    clients = server.clients
    for cid in ids:
        target = clients.get(cid)
        if target is None:
            continue
        own = target is changer
        # Its own change: as tracking was when it sent the command (turned
        # off or on again since, in the same pipeline).
        if own and _RETIRED and (state := _retired(target, place or early)) is not None:
            now = target.tracking
            if now is not None and now is not state and not now.bcast and now.reads and target is not ran:
                # (on again since: its reads in flight may run after the change)
                if _reads_after(server, now, key, ordered, None, evicted)[0]:
                    if kept is None:
                        _keep([(key, cid)])
                    else:
                        kept.append((key, cid))
        elif (state := target.tracking) is None:
            continue
        if state.bcast:
            continue
        before = None
        if state.reads and target is not ran:
            keep, silent, before = _reads_after(
                server, state, key, ordered, (place or early) if own else None, evicted
            )
            if keep:  # as Redis, a read that runs after the change remembers the key
                if kept is None:
                    _keep([(key, cid)])
                else:
                    kept.append((key, cid))
            if silent:
                continue  # it did not track the key before the change
        if not own:
            if served > 0 and state.noloop and pubsub.serves(target, served):
                continue  # (its own served command's change: Redis's current client's)
            # Before the reply of a read that ran after it; to the client
            # that made the change (its REDIRECT target), before that reply.
            send(target, [key], before, writer=changer, at=inside or place or early, served=served)
        elif not state.noloop and not _before_on(state, place or early):
            send(target, [key], early, place, state, _resp3_then(target, state) if _RETIRED else None)


def _broadcast_due(
    server, key: bytes, prefixes: list[bytes], who: object, quiet: bool, changer: Client | None
) -> None:
    """``key`` changed under these BCAST ``prefixes`` (see
    :func:`_invalidate_key`): the next flush tells their clients, the
    change counted ``who``'s (``quiet``: the key's last changer stays)."""
    for prefix in prefixes:
        entry = PREFIXES.get(prefix)
        if entry is None:  # (its last client turned tracking off since)
            continue
        if not quiet:
            entry[1][key] = who  # type: ignore[assignment]
        elif key not in entry[1]:
            entry[1][key] = changer
        _CHANGED[prefix] = None
    if not STATE.flush_due:
        STATE.flush_due = True
        _BROADCAST.due(server)
    if STATE.remote_bcast:
        _promise()


def _served_own(server, served: int, cls: int) -> tuple[object, bool]:
    """Whose change, as Redis counts it under BCAST (the key's last
    changer, which NOLOOP does not tell: Redis's
    trackingRememberKeyToBroadcast), a blocked command served by a write
    (``served``, naming it: see :func:`send`) made with an event of class
    ``cls``: its client's, where Redis signals it with that client current
    (``wire.EVENT_SERVED_OWN``: that client if here, else no one here);
    no one's (True: quiet) where Redis signals nothing, the key's last
    changer staying (the write's): (client, quiet)."""
    if not cls & SERVED_OWN:
        return _WRITERS, True
    return pubsub.served_client(server, served), False


def _keep(kept: list[tuple[bytes, int]]) -> None:
    """Put these (key, client id) back in :data:`TABLE`."""
    for key, cid in kept:
        _track(key, cid)


def _track(key: bytes, cid: int) -> bool:
    """Client ``cid`` tracks ``key`` in :data:`TABLE`; whether it did not before."""
    ids = TABLE.get(key)
    if ids is None:
        ids = TABLE[key] = set()
    if cid in ids:
        return False
    ids.add(cid)
    STATE.items += 1
    return True


def invalidate_all(
    server, changer: Client | None = None, place: object = None, inside: object = None
) -> None:
    """FLUSHDB/FLUSHALL: a null invalidation to every tracking client; to
    the client that flushed (``changer``), right after the flush's reply
    slot ``place``, as Redis, before the replies of what it pipelined
    after the flush; to one that redirects to it, before that reply
    (``inside``: the flush's place in the array of an EXEC run atomically,
    before which it goes)."""
    for target in list(server.clients.values()):
        own = target is changer
        if own and _RETIRED and (state := _retired(target, place)) is not None:
            pass  # tracking turned off (or off and on) after the flush: as it was
        elif (state := target.tracking) is None:
            continue
        if not own:
            send(target, None, writer=changer, at=inside or place)
        elif not _before_on(state, place):  # (tracking on after the flush: nothing, as Redis)
            send(
                target, None, after=place, state=state, resp3=_resp3_then(target, state) if _RETIRED else None
            )
    TABLE.clear()
    _DRAW.clear()
    STATE.items = 0
    # A read in flight may run after the flush (whose events are a
    # multi-shard command's: order not known): its keys stay remembered.
    for target in list(server.clients.values()):
        state = target.tracking
        if state is not None and state.reads:
            keys = [k for read in state.reads if read.slot.data is None for k in read.keys]
            if keys:
                remember(target, keys)


class _Broadcast:
    """The BCAST invalidations due, as one more dirty client of the acceptor
    and the first one flushed: as Redis's beforeSleep broadcasts them before
    it writes the replies, the acceptor writes them before the replies (and
    before a ``seen`` answer: :mod:`shardkv.acceptor.causal`) of the frames
    whose events they come from, once per flush; a flush at the end of the
    turn catches any that nothing flushed."""

    __slots__ = ("server", "dirty")

    def __init__(self) -> None:
        self.server = None
        self.dirty = False

    def due(self, server) -> None:
        self.server = server
        if not self.dirty:
            self.dirty = True
            server.dirty_clients.insert(0, self)
        server.loop.call_soon(server.flush_dirty_clients)

    def flush(self) -> None:
        self.dirty = False
        if STATE.flush_due:
            _broadcast(self.server)


_BROADCAST = _Broadcast()


# The replies (or ``seen`` answers) waiting for the next BCAST flush: their
# gate -> the answer promised it (see _promise).
_OWED: dict[causal.Gate, Callable[[list], None]] = {}


def _promise() -> None:
    """A key changed under a prefix while its command's events are handed
    out (K > 1), and some BCAST client redirects to another acceptor's
    client: the gathering reply waits until the flush's invalidations for
    such targets are written there (asked in _broadcast, as Redis writes
    them before the reply)."""
    gate = causal.gathering()
    if gate is not None and gate not in _OWED:
        _OWED[gate] = gate.expect()


def _broadcast(server) -> None:
    """Each BCAST client gets the keys changed under its prefixes since the last time."""
    STATE.flush_due = False
    owed = list(_OWED.values())
    if owed:
        _OWED.clear()
        causal.gather()  # what goes to another acceptor is asked, not told
    try:
        # In Redis's order: prefixes, and the keys of each, sorted byte-wise
        # (both are radix trees there), whatever order they changed in.
        for prefix in sorted(_CHANGED):
            del _CHANGED[prefix]
            entry = PREFIXES.get(prefix)
            if entry is None:  # (its last client turned tracking off)
                continue
            clients, changed = entry
            if not changed:
                continue
            keys = sorted(changed)
            for target in list(clients):
                state = target.tracking
                if state is None:
                    continue
                if state.noloop:
                    mine = [k for k in keys if changed[k] is not target]
                    if mine:
                        send(target, mine)
                else:
                    send(target, keys)
            changed.clear()
    finally:
        if owed:
            causal.settle(server, owed, causal.gathered())


def send(
    client: Client,
    keys: list[bytes] | None,
    before: object = None,
    after: object = None,
    state: Tracking | None = None,
    resp3: bool | None = None,
    writer: Client | None = None,
    at: object = None,
    served: int = 0,
) -> None:
    """One invalidation message for ``client`` (Redis's ``sendTrackingMessage``);
    ``before``/``after``: the reply slot it must precede/follow, if still
    pending (else it goes after every reply due); ``state``: the client's
    tracking state if not its current one (tracking turned off since), and
    ``resp3`` its protocol then (RESET since).  ``writer``: the client
    whose command (reply slot ``at``) made the change, another than
    ``client``: if ``client`` redirects to it, the message goes before
    that command's reply, as Redis sends it while the command runs.
    ``served``: the blocked command that made the change, served by a
    write (``wire.EVENT_WAITER_SHIFT``, -1 if unnamed): for a client
    blocked, see :func:`~shardkv.acceptor.pubsub.invalidation_while_blocked`."""
    if state is None:
        state = client.tracking
    if resp3 is None:
        resp3 = client.resp3
    target: Client | None = client
    server = client.server
    redirect = state.redirect if state is not None else 0
    if redirect:
        target = server.clients.get(redirect)
        waits = (client.state.blocked_token > 0 or _AFTER_SERVE is not None) and (
            target is not None or _elsewhere(server, redirect)
        )
    else:
        waits = _AFTER_SERVE is not None and not (client.closing or client.closed)
    if waits and _after_served_reply(
        client,
        target,
        writer,
        before,
        lambda: send(client, keys, before, after, state, resp3, writer, at, served),
    ):
        return  # (once the reply of a client served before the change is written)
    if redirect:
        if target is None and _elsewhere(server, redirect):
            null = keys is None
            args = [redirect, client.id, int(resp3), keys or [], int(null)]
            if _REMOTE_AT is not None and not served:
                args += _REMOTE_AT  # (the target may be the client whose command made the change)
            causal.remote(server, bus.INVALIDATE, args)  # the reply of what caused it waits for it
            return
        if target is None or target.closed:
            state.broken = True
            if resp3:
                client.push(Push([b"tracking-redir-broken", redirect]))
            return
    redirected = bool(redirect)
    assert target is not None
    if target.closing or target.closed:
        return
    if keys is None:  # as Redis: the null of the tracking client's protocol, whoever gets it
        keys = Raw(b"_\r\n" if resp3 else b"$-1\r\n")  # type: ignore[assignment]
    to_resp3 = resp3 if target is client else target.resp3
    if to_resp3:
        message = Push([b"invalidate", keys])
    elif redirected and target.state.subscribed:
        message = Push([b"message", CHANNEL, keys])
    else:
        return
    pending = target.pending
    made = at
    if target is writer and writer is not client and at is not None:
        # The REDIRECT target made the change: before its command's reply
        # (inside EXEC's array: before the command's part, or its ExecPlace).
        if pubsub.push_in_exec(target, at, encode(message, to_resp3)):
            return
        before, after = at, None
    at = before if before is not None else after
    if (
        at is not None
        and (target is client or target is writer)
        and (at := _in_pending(pending, at)) is not None
    ):
        if getattr(at, "cut", None) is not None:
            return  # an EXEC reply cut by ACL DELUSER: Redis writes nothing after it
        try:
            i = pending.index(at)
            if before is None:  # after the reply, the events Redis writes after it, those sent after it
                i += 1
                while i < len(pending) and type(pending[i]) in _AFTER_REPLY:
                    i += 1
            pending.insert(i, _Sent(encode(message, to_resp3)))
            target.flush()
        except Exception:  # a bug costs this client alone
            target.failed("pushing an invalidation to it")
    elif _REMOTE_AT is not None and writer is None and target.state.blocked_token > 0:
        # Another acceptor's command: it may have come behind one of its
        # client's not yet answered that serves this blocked client.
        _ask_behind(target, encode(message, to_resp3), served, target is client)
    elif not (
        target.state.blocked_token > 0
        and not (writer is not None and _after_unanswered(writer, made))
        and pubsub.invalidation_while_blocked(target, encode(message, to_resp3), served, target is client)
    ):
        target.push(message)


def _after_served_reply(
    client: Client, target: Client | None, writer: Client | None, before: object, later: Callable[[], None]
) -> bool:
    """An invalidation for ``client`` that goes to ``target`` (None: on
    another acceptor), of a change made after a write served a client here
    whose reply is not written yet (a ``J`` frame may hold it while this
    acceptor hands out the events after the serve): if so, ``later`` (the
    invalidation sent) once that reply is written, and True; else False.
    As Redis serves that client before it runs the next command.  That
    client is ``client`` itself (its REDIRECT target waits, whatever
    batch the change came in), or the one served before the change in the
    events being handed out (:data:`_AFTER_SERVE`).  Not: one for that
    client itself (after its reply anyway), one that goes before a reply
    (the writer's, as its REDIRECT target; a read's of ``target``), or
    one for a blocked ``target`` (at once, before its own reply).  As when
    sent now, the reply whose command's events are being handed out (the
    writer's) waits for it, and it says what it says now of the command
    that made the change (:data:`_REMOTE_AT`, :data:`_FRAME_SERVED`)."""
    if target is writer and target is not None or before is not None:
        return False
    wait: object | None = None
    if target is not client and client.state.blocked_token > 0:
        wait = pubsub.served_unwritten(client)
    if wait is None:
        wait = _AFTER_SERVE
        if (
            wait is None
            or not wait.unwritten()  # type: ignore[attr-defined]
            or target is wait.client  # type: ignore[attr-defined]
            or (target is not None and target.state.blocked_token > 0)
        ):
            return False
    context = (_REMOTE_AT, _FRAME_SERVED)

    def run() -> None:
        global _REMOTE_AT, _FRAME_SERVED, _AFTER_SERVE
        outer = (_REMOTE_AT, _FRAME_SERVED, _AFTER_SERVE)
        _REMOTE_AT, _FRAME_SERVED = context
        _AFTER_SERVE = None
        try:
            later()
        finally:
            _REMOTE_AT, _FRAME_SERVED, _AFTER_SERVE = outer

    pubsub.after_written(client.server, wait, run)
    return True


def _ask_behind(target: Client, data: bytes, served: int, own: bool) -> None:
    """An invalidation ``data`` for ``target``, blocked, of a change by
    another acceptor's command (:data:`_REMOTE_AT`): where Redis writes it
    to a blocked client, held there until that acceptor says whether the
    command came behind one of its client's not yet answered (``behind`` on
    the bus); if so, after the pending replies instead, as :func:`send`
    does for a command of this acceptor's.  The reply waiting for the
    command's events here waits for this too."""
    held = _Held()
    if not pubsub.invalidation_while_blocked(target, held, served, own):  # type: ignore[arg-type]
        target.pending.append(data)
        target.flush()
        return
    gate = causal.gathering()
    answered = gate.expect() if gate is not None else None

    def done(answers: list) -> None:
        try:
            if target.closed:
                return
            if 1 in answers:
                try:
                    target.pending.remove(held)
                except ValueError:
                    return
                target.pending.append(data)
            else:
                held.data = data
            target.flush()
        except Exception:  # a bug costs this client alone
            target.failed("pushing an invalidation to it")
        finally:
            if answered is not None:
                answered([])

    frame = _FRAME_SERVED
    served_here = frame is None or any(w < 0 or pubsub.serves(target, w) for w in frame)
    args = [*(_REMOTE_AT or ()), int(served_here)]
    target.server.bus.ask(bus.BEHIND, args, done)  # type: ignore[union-attr]


class _Held:
    """An invalidation's place among a blocked client's pending replies,
    until it is known whether it goes there (see :func:`_ask_behind`)."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: bytes | None = None


def _after_unanswered(writer: Client, at: object, skip: tuple = ()) -> bool:
    """Whether the command whose reply slot ``at`` is came behind a command
    of its client ``writer`` not yet answered, maybe on another shard and
    not yet run there: one that may serve a blocked client (``RPUSH l a``,
    ``SET k v``), which Redis ran first, so the change's invalidation for a
    blocked client goes after the pending replies (after that client's
    reply if it serves it), not at once.  A cross-shard step's gate
    (``holds.Gate``, a FLUSHALL's with several acceptors) is no command:
    the step's own replies follow it.  ``skip``: replies that do not count."""
    pending = writer.pending
    place = _in_pending(pending, at) if at is not None else None
    for reply in pending:
        if reply is place:
            return False
        if skip and (reply in skip or getattr(reply, "slot", None) in skip):
            continue
        if getattr(reply, "data", b"") is None and type(reply) is not Gate:
            return True
    return False


def _in_pending(pending: deque | list | tuple, at: object) -> object:
    """The pending reply that ``at`` is, or holds as one of its parts (a
    command that EXEC ran, or the operation of an EXEC run atomically: its
    EXEC's reply), or keeps the place of (a reply CLIENT REPLY dropped);
    None if none is pending."""
    if at in pending:
        return at
    for reply in pending:
        if getattr(reply, "outcome", None) is at:  # an atomic EXEC's operation
            return reply
        if type(reply) is MutedSlot and reply.slot is at:  # (CLIENT REPLY OFF or SKIP)
            return reply
        parts = getattr(reply, "parts", None)
        if parts and any(part is at for part in parts):
            return reply
    return None


class _Sent:
    """An invalidation put among a client's pending replies (ready)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


_AFTER_REPLY = (_Sent, Trailing)


def drop_answered(server) -> None:
    """Once a second (``on_cron``): forget the tracked reads that were
    answered, and the scripts' CLIENT CACHING decisions of answered
    scripts.  Their reply slots keep the reply's bytes, so a client that
    pipelined big reads and went idle would otherwise keep them until its
    next tracked read.  Then, if the table is still over
    ``tracking-table-max-keys`` (keys kept while their reads waited), one
    more eviction pass, as Redis's next command would make one."""
    if STATE.clients:
        _drop_answered(server)
    for client, entries in list(_RETIRED.items()):
        if client.closed:
            del _RETIRED[client]
            continue
        alive = {id(p) for p in client.pending}
        entries[:] = [e for e in entries if any(id(p) in alive for p in e[1])]
        if not entries:
            del _RETIRED[client]
    if TABLE:
        limit = _max_keys(server)
        if limit and len(TABLE) > limit:
            _limit_table(server, limit)


def _prefixes_in_flight(
    client: Client, new_prefixes: dict[bytes, list | _Mark]
) -> dict[bytes, list | _Mark] | None:
    """``new_prefixes`` (see :class:`Tracking`) less the commands answered
    since, and the prefixes none of whose commands are in flight."""
    still: dict[int, list | _Mark | None] = {}  # (each ON's list pruned once)
    kept: dict[bytes, list | _Mark] = {}
    for prefix, in_flight in new_prefixes.items():
        if id(in_flight) in still:
            pruned = still[id(in_flight)]
        else:
            pruned = still[id(in_flight)] = _pruned(client, in_flight)
        if pruned:
            kept[prefix] = pruned
    return kept or None


def _pruned(client: Client, since: list | _Mark) -> list | _Mark | None:
    """``since`` less the commands answered, None if none is left."""
    if isinstance(since, _Mark):
        return since if since.end() is not None else None
    return _still_pending(client, since) or None


def _drop_answered(server) -> None:
    for client in server.clients.values():
        state = client.tracking
        if state is None:
            continue
        state.prune()
        since = state.since
        if since is not None:
            # Those answered are forgotten (their slots keep the reply's
            # bytes): a client blocked behind them keeps no more.
            state.since = _pruned(client, since)
        if state.new_prefixes is not None:
            state.new_prefixes = _prefixes_in_flight(client, state.new_prefixes)
        if state.early is not None and not _still_pending(client, [state.early[0]]):
            state.early = None  # (its events were handed out as it committed)
        scripts = state.scripts
        if scripts:
            alive = {id(p) for p in client.pending}
            for done in [p for p in scripts if id(p) not in alive]:
                del scripts[done]


def on_disconnect(client: Client) -> None:
    if client.tracking is not None:
        disable(client)
    if _RETIRED:
        _RETIRED.pop(client, None)


def on_config(server, changes: dict) -> None:
    """A lower ``tracking-table-max-keys`` applies at once."""
    if "tracking-table-max-keys" in changes:
        _DRAW.clear()
        limit = _max_keys(server)
        if limit and len(TABLE) > limit:
            _limit_table(server, limit)


def totals() -> tuple[int, int, int]:
    """INFO's tracking_total_keys, tracking_total_items, tracking_total_prefixes."""
    return len(TABLE), STATE.items, len(PREFIXES)
