"""The acceptor's end of one pipe to one worker.

Commands for the shard are buffered during a turn of the event loop and
leave as one ``B`` frame when the acceptor flushes at the end of the turn,
or, between two steps of the global order, as soon as :data:`EARLY_BATCH`
have gathered (see :mod:`shardkv.protocol.wire` for the format).  Either way they
leave in the order they were queued, the order the workers run them in.
Each command leaves a *sink* in :attr:`ShardLink.fifo`; the worker
answers in the same order, so each reply in an ``R`` frame goes to the
sink at the head of the FIFO.  A sink is anything with a ``deliver(body)``
method: a client's reply slot, one part of a fan-out, or a step of a
cross-shard operation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from shardkv.acceptor import causal, scriptcaller
from shardkv.acceptor.replies import (
    PLAIN_SLOTS,
    SCREENED,
    SCREENED_FIRSTS,
    MutedSlot,
    Slot,
    deliver,
    delivery_failed,
    origin_of,
)
from shardkv.protocol import errors, wire
from shardkv.protocol.resp import Error, encode_command, encode_error
from shardkv.protocol.wire import FRAME, Verb, batch_frame

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.crossshard import Coordinator
    from shardkv.runtime.cmdstats import Stats

log = logging.getLogger("shardkv.acceptor")

_BIG_FRAME = 1 << 16
# A batch leaves as soon as it holds this many commands, without waiting
# for the end of the turn: the worker starts on it while the acceptor reads
# on.  (GET/SET -P 16: +15-20% at 32; smaller batches cost more wake-ups.)
EARLY_BATCH = 32


# The entry header of the acceptor's own messages (ShardLink.send_control).
_CONTROL_HEADER = wire.entry_header(0)

# The links whose worker runs a script past busy-reply-threshold.
BUSY_LINKS: set = set()
# The links whose worker runs a script that reached its first count hook
# (wire ``U``), busy or not yet: while any does, a command queued in MULTI
# waits for the shards' scripts (transactions.queue).  Left when the
# script ends or the pipe closes.
RUNNING_LINKS: set = set()
# How often a link's busy state changed (a script's first ``S`` frame, its
# end, a link gone), and what waits for the next change (see when_busy_seen).
_BUSY_CHANGES = [0]
_BUSY_WAITERS: list[Callable[[], None]] = []
# The longest a -BUSY from another acceptor waits for this one's frame: the
# script may have ended on this acceptor's pipe before it was asked, while
# the other acceptor had not read the end yet (then no change would come).
BUSY_SEEN_WITHIN = 0.5


def busy_refusal() -> bytes | None:
    """The ``-BUSY`` error, encoded, that a command not allowed
    while busy gets now, or None: that of a link of :data:`BUSY_LINKS`
    whose worker's end of the pipe is still open.  One whose worker closed
    it (died) counts as gone, though this acceptor has not read the end yet
    (:meth:`ShardLink.worker_closed`): a client that another acceptor told
    of the death may ask first.  Its command then gets what it gets once
    the end is read (for that shard: that it is unavailable, see
    :meth:`ShardLink.send`).  Only asked while ``BUSY_LINKS`` holds a link."""
    for link in BUSY_LINKS:
        if not link.worker_closed():
            return link.busy
    return None


def busy_changes() -> int:
    """A mark to give :func:`when_busy_seen` later."""
    return _BUSY_CHANGES[0]


def when_busy_seen(mark: int, then: Callable[[], None]) -> None:
    """Call ``then`` once this acceptor knows what another acceptor's
    ``-BUSY`` says (asked after :func:`busy_changes` gave ``mark``): at
    once if a link is busy or changed since, else at the next change.  The
    worker writes a script's ``S`` frame to every pipe, and the other
    acceptor's answer through the bus can come before this acceptor's own
    frame: a SCRIPT KILL read after that ``-BUSY`` would find no script.
    At the latest after :data:`BUSY_SEEN_WITHIN`."""
    if BUSY_LINKS or _BUSY_CHANGES[0] != mark:
        then()
        return
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            done = True
            then()

    def late() -> None:
        if once in _BUSY_WAITERS:
            _BUSY_WAITERS.remove(once)
        once()

    _BUSY_WAITERS.append(once)
    asyncio.get_running_loop().call_later(BUSY_SEEN_WITHIN, late)


def at_next_busy_change(then: Callable[[], None]) -> Callable[[], None]:
    """Call ``then`` at the next change of a link's busy state (a script's
    first ``S`` frame, its end, a link gone), once.  Returns what cancels
    that, if it has not been called yet."""
    _BUSY_WAITERS.append(then)

    def cancel() -> None:
        if then in _BUSY_WAITERS:
            _BUSY_WAITERS.remove(then)

    return cancel


def _busy_changed() -> None:
    _BUSY_CHANGES[0] += 1
    if _BUSY_WAITERS:
        waiters = _BUSY_WAITERS[:]
        _BUSY_WAITERS.clear()
        for then in waiters:
            then()


# The links whose worker cannot persist (``D`` frames): link -> its -MISCONF text.
MISCONF_LINKS: dict = {}


def at_threshold(server: object, decide: Callable[[], None]) -> None:
    """Run ``decide`` when Redis would read a command sent now, while no
    worker has reported a busy script: Redis reads nothing while a script
    runs until it is past busy-reply-threshold.  At the end of the turn
    that read it (after what that turn queued for the shards: the group of
    cross-shard scripts read before it starts then, see
    scripting.join_group), ``decide`` runs at once if a link is busy, or
    if nothing can be running (one acceptor, nothing on its way to any
    shard, no cross-shard operation); else it is held
    (:class:`_HeldUntilThreshold`).  SCRIPT KILL, FUNCTION KILL and
    SHUTDOWN wait so.  With several acceptors, the steps over several
    shards read before it that still wait for their holds leave first
    (``Holds.after_queued``): the ``__ping``s follow their entries."""
    server.at_turn_end(lambda: _decide_when_idle(server, decide))  # type: ignore[attr-defined]


def _decide_when_idle(server: object, decide: Callable[[], None], queued: bool = False) -> None:
    if any(link.script is not None for link in server.links):  # type: ignore[attr-defined]
        # A busy script, reported maybe in this very turn, after the command
        # was read: decided now (_AfterSteps would wait for the next change).
        decide()
        return
    holds = getattr(server, "holds", None)
    if holds is not None and not queued and holds.left < holds.queued:
        _AfterSteps(server, decide)
        return
    # (A worker that reloads after a restart runs no script: not waited for.)
    reloading = getattr(server, "reloading", ())
    links = [link for link in server.links if link.up and link.index not in reloading]  # type: ignore[attr-defined]
    if not links or (server.bus is None and not any(link.fifo or link.ops for link in links)):  # type: ignore[attr-defined]
        decide()
    else:
        _HeldUntilThreshold(server, decide, links)


class _AfterSteps:
    """A command of :func:`at_threshold` read while this acceptor's steps
    over several shards, read before it, wait for their holds: it waits
    for them to leave (``Holds.after_queued``), then for the shards as
    any; or, if a worker reports a busy script first (one that a hold
    waits behind, maybe), it is decided then."""

    __slots__ = ("server", "decide", "waiting", "cancel")

    def __init__(self, server: object, decide: Callable[[], None]) -> None:
        self.server = server
        self.decide = decide
        self.waiting = True
        self.cancel = at_next_busy_change(self._busy_changed)
        server.holds.after_queued(self._left)  # type: ignore[attr-defined]

    def _left(self) -> None:
        if self.waiting:
            self.waiting = False
            self.cancel()
            _decide_when_idle(self.server, self.decide, True)

    def _busy_changed(self) -> None:
        if not self.waiting:
            return
        if any(link.script is not None for link in self.server.links):  # type: ignore[attr-defined]
            self.waiting = False
            self.decide()
        else:
            self.cancel = at_next_busy_change(self._busy_changed)


_PING = encode_command([Verb.PING])


class _HeldUntilThreshold:
    """A command read while a script may run on a worker, not yet past
    busy-reply-threshold (this acceptor's, or another acceptor's): it is
    decided as Redis, which reads it only then, would (see at_threshold).

    A ``__ping`` goes to every shard, as the acceptor's own message (never
    held, never refused): the worker runs it once it has run what came
    before it, on any pipe it serves first.  So the command is decided at
    the first busy report of a shard whose ``__ping`` has not come back
    (the script reached the threshold: a SCRIPT KILL kills it, a SHUTDOWN
    NOSAVE stops the server), or once every ``__ping`` came back (every
    script it could meet ended first: ``-NOTBUSY`` for a kill).  A worker
    that dies answers its ``__ping`` (``-ERR shard unavailable``), and its
    script is gone: the command never waits for more than the shards'
    queues."""

    __slots__ = ("decide", "waiting", "links", "cancel")

    def __init__(self, server: object, decide: Callable[[], None], links: list) -> None:
        self.decide = decide
        self.links = server.links  # type: ignore[attr-defined]
        self.waiting = {link.index for link in links}
        self.cancel = at_next_busy_change(self._busy_changed)
        for link in links:
            link.send_control(_PING, _Pinged(self, link.index))

    def pinged(self, shard: int) -> None:
        if shard in self.waiting:
            self.waiting.discard(shard)
            if not self.waiting:
                self._answer()

    def _busy_changed(self) -> None:
        if not self.waiting:  # answered
            return
        if any(self.links[shard].script is not None for shard in self.waiting):
            self._answer()
        else:
            self.cancel = at_next_busy_change(self._busy_changed)

    def _answer(self) -> None:
        self.waiting = set()
        self.cancel()
        self.decide()


class _Pinged:
    """The sink of one shard's ``__ping`` for a :class:`_HeldUntilThreshold`."""

    __slots__ = ("held", "shard")

    def __init__(self, held: _HeldUntilThreshold, shard: int) -> None:
        self.held = held
        self.shard = shard

    def deliver(self, body: bytes) -> None:
        self.held.pinged(self.shard)


class Sink(Protocol):
    def deliver(self, body: bytes) -> None: ...


class Participant(Protocol):
    """A cross-shard operation, as a link sees it (see shardkv.acceptor.crossshard)."""

    def control(self, shard: int, message: object) -> None: ...

    def shard_lost(self, shard: int) -> None: ...


def release_events(holder: object) -> causal.Gate | None:
    """A command that spans shards is complete: hand out the events its
    parts held, together, in the order of its keys (``event_keys``), as
    Redis emits them key by key.  With several acceptors, the gate its
    reply must wait in (see :mod:`shardkv.acceptor.causal`), if any."""
    held = holder.held_events  # type: ignore[attr-defined]
    if not held:
        return None
    holder.held_events = None  # type: ignore[attr-defined]
    keys = holder.event_keys  # type: ignore[attr-defined]
    if keys:
        rank: dict = {}
        for i, key in enumerate(keys):
            rank.setdefault(key, i)
        last = len(keys)
        held.sort(key=lambda event: rank.get(event[1], last))
    return holder.emit_events(held, holder)  # type: ignore[attr-defined]


class ShardLink:
    """One worker's pipe, seen from the acceptor.

    The link outlives the pipe: when a worker is restarted, the same link
    is attached to the new pipe through a fresh :class:`_Pipe` protocol.
    """

    def __init__(
        self,
        index: int,
        on_turn_end: Callable[[ShardLink], None],
        after_frame: Callable[[], None],
        after_read: Callable[[], None] | None = None,
    ) -> None:
        self.index = index
        self.out: list[bytes] = []  # entries waiting for the end of the turn
        self.frames: list[bytes] = []  # whole frames waiting for it, before ``out`` (see queue_frame)
        self.fifo: deque = deque()  # sinks waiting for replies, in order
        # Sinks ever put in ``fifo``: ``sent - len(fifo)`` have been answered
        # (see shardkv.acceptor.tracking, which tells so whether a read ran).
        self.sent = 0
        self.queued = False  # is this link in the acceptor's flush list?
        self.transport: asyncio.Transport | None = None
        self.up = False
        self.generation = 0  # pipes attached so far: a hold lives as long as its pipe
        # The worker said it ends for a SHUTDOWN NOSAVE (wire ``Z``): when
        # its pipe closes, the clients waiting on it are closed unanswered.
        self.stopped = False
        self._on_turn_end = on_turn_end
        # What writes the replies a frame made ready: ``after_frame`` at
        # once, ``after_read`` (by default the same) after a read of the
        # pipe that held plain replies alone, which the acceptor defers to
        # the end of the loop turn, so that a client whose replies come from
        # several shards in one turn gets one write, not one per shard
        # (Acceptor.flush_clients_soon).  A reply written a turn later is
        # seen later by its own client only; an invalidation or an event,
        # which another client may be waiting to see before a reply of its
        # own, is written at once, as is everything dirty with it.
        self._after_frame = after_frame
        self._after_read = after_read or after_frame
        self._buf = b""
        self._chunks: list[bytes] = []
        self._have = 0
        self._need = 0
        self._pieces: list[bytes] = []  # a reply in pieces (``P``) for a sink that wants it whole
        self.streaming: Sink | None = None  # the sink whose reply is coming in pieces
        # Cross-shard operations this shard takes part in, by operation id:
        # control frames go to them by id, and each hears if the shard dies.
        self.ops: dict[int, Participant] = {}
        # Where a control message for no operation in progress goes (InDoubt,
        # a late Finished): the acceptor's coordinator, see shardkv.acceptor.crossshard.
        self.orphan: Callable[[ShardLink, object], None] | None = None
        # The same coordinator: the write fan-outs decided in one read of
        # this pipe record their commits together at its end (see
        # Coordinator.commit_soon).
        self.coordinator: Coordinator | None = None
        # Sinks of blocking commands (see shardkv.acceptor.blocking), by token: their
        # reply comes in a W frame, after an empty body in an R frame.
        self.blocked: dict[int, Sink] = {}
        # While the worker runs a script past busy-reply-threshold: the
        # -BUSY reply for what would be sent there, and the script's state
        # (pid, dirty, eval_mode) for SCRIPT KILL (see shardkv.acceptor.scripting).
        self.busy: bytes | None = None
        self.script: tuple | None = None
        # This acceptor, or another one that said so before it answered, has
        # signalled that script to stop (SCRIPT KILL): its end is on its way.
        self.kill_sent = False
        # The script's epoch, from its busy report; and the (pid, epoch) of
        # a script another acceptor signalled (see killed_elsewhere).
        self.script_epoch = -1
        self.kill_told: tuple[int, int] | None = None
        # The kills that signalled this worker's busy script and wait for
        # what it decided (see scripting._KillVerdict): each is called with
        # KILLED and when (time.monotonic()), UNKILLABLE (it had written)
        # or ENDED (it ended, or its worker did, with no kill).
        self.kill_verdicts: list[Callable[[str, float], None]] = []
        # The kills of the other kind (FUNCTION KILL of an EVAL, SCRIPT
        # KILL of a function) that asked the worker to report the busy
        # script at its next hook (wire.REPORT_SIGNAL), each with when it
        # signalled (time.monotonic()): each is called with UNKILLABLE (it
        # had written), OTHER_KIND (it had not, as a report made after the
        # signal says: one made before, in flight, may be another kill's,
        # and the script may have written since) or ENDED.
        self.kind_checks: list[tuple[float, Callable[[str, float], None]]] = []
        # The client that runs that script, if this acceptor's: it waits
        # for the script (see shardkv.acceptor.scriptcaller).
        self.caller: Client | None = None
        # CLIENT UNBLOCK (``__unblock``): the scripts that went busy on the
        # worker as its last report said, this acceptor's pipe at the
        # worker, and the ``__unblock``s sent (see _refuse_unblocks).
        self.busy_scripts = 0
        self.pipe_index = 0
        # The commands a busy script's worker may refuse, as offered
        # (``K``): each one's sink, and its client's reply slot (None for
        # a cross-shard script's park: its operation's sink gets -BUSY);
        # and the script's epoch (its busy report's), which the answer names.
        self.refusable: list[tuple[object, Slot | None]] = []
        self.refusable_epoch = 0
        # The operation parked here whose script went busy on another shard,
        # if this link's offer (refusable) is about what waits behind its
        # park (see _offer_refusals): kept until the worker answers it,
        # which it does while parked, or the operation's Finished here
        # (after that answer on this pipe, if any), not the script's end,
        # which comes on another pipe, maybe before that answer.
        self.parked_op: int | None = None
        # The candidates of this link's tail offer (see offer_tail) while
        # it waits for its answer, apart from ``refusable``: the worker
        # always answers it, but maybe only after its own busy report,
        # whose offer replaces ``refusable``.
        self.tail_refusable: list[tuple[object, Slot | None]] | None = None
        self._parked_epoch = wire.PARKED_BEHIND_EVAL  # (the busy script's kind, for those offers)
        self.unblocks_sent = 0
        # Where the commands a script called go, for MONITOR (``M`` frames).
        self.on_script_calls: Callable[[list], None] | None = None
        # Told a script's ``-BUSY`` error at its first busy report: what the
        # acceptor holds back itself, sent before it knew, gets it too
        # (see scripting.refuse_waiting).
        self.on_busy: Callable[[bytes], None] | None = None
        # Its busy script is another acceptor's cross-shard operation's (as
        # its first report said): its other shards may be parked for it.
        self.busy_elsewhere = False
        # Who names the clients of the slow log's entries this shard
        # logged, given their reply sinks (``N`` frames, see
        # shardkv.acceptor.slowlog).
        self.on_slow_names: Callable[[list[tuple[object, int]]], None] | None = None
        # The acceptor's counters, whose slow entries held while a client's
        # read runs are pushed before anything leaves for the worker.
        self.held_slow: Stats | None = None
        # Where a script's refused calls go, for ACL LOG (``L`` frames).
        self.on_acl_log: Callable[[bytes, list], None] | None = None
        # What answers a running script's call of an acceptor command (``Q``
        # frames, see shardkv.acceptor.scriptcalls), on this pipe.
        self.on_script_query: Callable[[bytes], None] | None = None
        # Called once MISCONF_LINKS changed for this link (see shardkv.acceptor.diskerrors).
        self.on_disk: Callable[[], None] | None = None
        # What waits for the answers to this pipe's ``I`` frames, in order.
        self.inquiries: deque[Callable[[object], None]] = deque()
        # What waits for the answers to this pipe's ``T`` frames, in order.
        self.tries: deque[Callable[[bool], None]] = deque()
        # Where the keyspace events this shard noted go (``E`` frames, see
        # shardkv.notifications), with the sink of the command that caused
        # them (None when unknown); and the events that wait for the next
        # ``R`` frame, to go out just before their command's reply.
        self.on_events: Callable[[list, object], None] | None = None
        # Several acceptors: hands a multi-shard command's events, once
        # ordered, to the other acceptors (see :meth:`emit_held`).
        self.relay_events: Callable[[list, object], None] | None = None
        # (K > 1: an O frame's events, by its number: see notifications.on_attach)
        self.others_events: Callable[[int, list], None] | None = None
        # (K > 1: its worker is gone, its O frames with it: see pubsub.after_events_gone)
        self.others_gone: Callable[[], None] | None = None
        self._events: tuple | None = None
        # Several acceptors (see shardkv.acceptor.causal): ``remote`` is
        # set; the replies of the next ``R`` frame that wait for other
        # acceptors (a ``G`` frame's), and how to ask them; the last ``O``
        # frame handed out and the ``seen`` questions waiting for later ones.
        self.remote = False
        self._gate: tuple[list[int], causal.Gate, list[tuple[int, int]]] | None = None
        self.ask_seen: Callable[[int, list, causal.Gate], None] | None = None
        self.others_seen = 0
        self.others_waiting: list = []
        # The served blocking commands (blocking._OneShard) whose clients
        # have commands behind them, in the wakes just read: an ``O`` frame
        # right behind them (Shard.gate_on_behind sends it after the
        # wakes; any other frame ends the list) answers ``seen`` only once
        # those commands ran.
        self.resumed: list[Any] = []
        self.resume_gate: causal.Gate | None = None  # the last O frame's gate that waits for them
        # The sinks of the gated replies of each batch whose ``O`` frame
        # ``(pipe, seq)`` another acceptor hands out, until they go; the
        # last such ``seq`` of each pipe; what waits for a batch's ``R``
        # frame not yet in (see when_batched).
        self.batches: dict[tuple[int, int], dict[int, Any]] = {}
        self.batched: dict[int, int] = {}
        self.unbatched: dict[tuple[int, int], list[Callable[[dict | None], None]]] = {}

    # -- sending ------------------------------------------------------------

    def send(
        self, header: bytes, command: bytes, sink: Sink, whole_step: bool = False, control: bool = False
    ) -> None:
        """Queue one command; it leaves at the end of this loop turn.

        ``whole_step`` says this command is a whole step of the global order
        (a plain single-key command): then, if it completes a batch of
        :data:`EARLY_BATCH`, the batch leaves now.  Never in the middle of
        a step that queues several commands (EXEC's, a fan-out's parts, a
        cross-shard operation's parks): those must reach the worker in one
        batch, since it reads the clock and serves blocked clients only
        between batches.

        ``control`` says this is the acceptor's own message to the worker
        (``__events``, ``__pause``), never a client's command: it is queued
        even while the worker runs a script past busy-reply-threshold, and
        the worker runs it, in order, once the script ends.  A ``-BUSY``
        would lose it, and the worker would go on with what it was told
        before (see :meth:`send_control`).
        """
        if not self.up or (self.busy and not control):
            sink.deliver(self._refusal())
            return
        out = self.out
        out.append(header)
        out.append(command)
        self.fifo.append(sink)
        self.sent += 1
        if not self.queued:
            self.queued = True
            self._on_turn_end(self)
        if whole_step and len(out) >= 2 * EARLY_BATCH:  # a header and a command each
            self._write()

    def _refusal(self) -> bytes:
        """What a client's command gets from a link that is down or busy:
        ``-BUSY``, or, once the worker is gone (its end of the pipe closed,
        though not read here yet: see :func:`busy_refusal`), that the shard
        is unavailable, as once the end is read."""
        if self.busy and not self.worker_closed():
            return self.busy
        return encode_error(errors.SHARD_UNAVAILABLE)

    def send_run(self, header: bytes, run: list) -> None:
        """Queue a run of plain single-key commands, each a whole step, as
        :meth:`send` queues each (``whole_step``): ``run`` is
        ``[command, sink, command, sink, ...]``.  One call for the commands
        of a client's read that go to this shard (see ``Client._run``);
        a step's capture (:mod:`shardkv.acceptor.holds`) shadows it as it
        shadows :meth:`send`."""
        if not self.up or self.busy:
            error = self._refusal()
            for sink in run[1::2]:
                sink.deliver(error)
            return
        n = len(run) // 2
        entries = [header] * len(run)
        entries[1::2] = run[::2]
        out = self.out
        out += entries
        self.fifo.extend(run[1::2])
        self.sent += n
        if not self.queued:
            self.queued = True
            self._on_turn_end(self)
        if len(out) >= 2 * EARLY_BATCH:
            self._write()

    def send_slotted(self, run: list) -> None:
        """:meth:`send_run` for a run of ``[header, command, sink, header,
        command, sink, ...]``, each command with a header of its own (the
        slotted header of its key's slot, see ``Client._run``).  ``run``
        is taken apart."""
        if not self.up or self.busy:
            error = self.busy or encode_error(errors.SHARD_UNAVAILABLE)
            for sink in run[2::3]:
                sink.deliver(error)
            return
        self.fifo.extend(run[2::3])
        del run[2::3]
        out = self.out
        out += run
        self.sent += len(run) // 2
        if not self.queued:
            self.queued = True
            self._on_turn_end(self)
        if len(out) >= 2 * EARLY_BATCH:
            self._write()

    def _refuse_unblocks(self, unblocks: tuple) -> None:
        """A script went busy: as Redis, the CLIENT UNBLOCKs waiting behind
        it get ``-BUSY`` now, and do nothing: the worker refuses each
        ``__unblock`` it had not run when the script went busy (it was
        sent before this acceptor knew of that script; see
        ``Waiters.unblock``).  ``unblocks``: the busy scripts so far, and
        the ``seq`` of the last ``__unblock`` run from each pipe."""
        busy_scripts, base, runs = unblocks
        self.busy_scripts = busy_scripts - base.get(self.pipe_index, 0)
        ran = runs.get(self.pipe_index, 0)
        # (collected first: a refusal may queue more, an EXEC's __unwatch)
        refusals = [refuse for sink in self.fifo if (refuse := getattr(sink, "refuse_when_busy", None))]
        for refuse in refusals:
            refuse(ran, self.busy)

    def _offer_refusals(self, caller: tuple[int, int], epoch: int) -> None:
        """A script on this shard went busy (its first report): answer with
        a ``K`` frame naming the commands sent before this acceptor knew
        that the worker may refuse (see ``K`` in :mod:`shardkv.protocol.wire`):
        those after the script's entry on its own pipe, every one not yet
        answered on another, that are a client's command standing alone (its
        slot in the client's own reply order, not inside an EXEC's reply or
        a fan-out's), the park of a cross-shard script's first run or of a
        client's single command across shards, or a client's write
        fan-out's part (``_Answer.refusable_while_busy``),
        of another client than the script's, whose commands
        wait for the script, as in Redis.  For an operation's script, those
        after the operation's park, here and on the operation's other
        shards (parked: :meth:`Refusals.parked_offer
        <shardkv.worker.busyrefusal.Refusals.parked_offer>`).  Kept until the worker answers
        which it refused (:meth:`_refused`), or the script's end.  One pass
        over the queue, and over each client's reply order once."""
        fifo = self.fifo
        pipe, ahead = caller
        if pipe != self.pipe_index:
            start, script_client = 0, None
        elif 0 <= ahead < len(fifo):
            start, script_client = ahead + 1, origin_of(fifo[ahead])[0]
        elif ahead == wire.SCRIPT_PARKED and len(self.ops) == 1:
            # An operation's script: what was sent after its park, here and
            # on its other shards, waits for it.
            op_id, op = next(iter(self.ops.items()))
            self._offer(*self._behind_park(op), epoch)
            for link in getattr(op, "links", ()):
                if link is not self and link.ops.get(op_id) is op:
                    link.parked_op = op_id
                    link._offer(*link._behind_park(op), self._parked_epoch)
            return
        else:  # no batch's: refuse nothing here
            start, script_client = len(fifo), None
        self._offer(start, script_client, epoch)

    def _behind_park(self, op: object) -> tuple[int, Client | None]:
        """Where what was sent after ``op``'s park starts in the queue (its
        park's answer, if held back, is still there), and ``op``'s client."""
        start = 0
        for i, sink in enumerate(self.fifo):
            if getattr(sink, "op", None) is op:
                start = i + 1
        return start, origin_of(op)[0]

    def offer_tail(self, eval_mode: bool) -> None:
        """Several acceptors: another acceptor's cross-shard operation's
        script went busy (its executor's first report, on another link):
        offer the worker of this shard, which the operation may have parked
        (it then reads only that acceptor's pipe), the commands this
        acceptor sent it and has not had answered that a busy script's
        worker may refuse, as Redis reads them at the threshold and answers
        them ``-BUSY``.  This acceptor cannot tell which entries the worker
        ran (their replies may be on their way), so the ``K`` frame's
        places count back from its last entry (a tail epoch, see
        :data:`wire.BEHIND_TAIL_EVAL`): those the worker has not run are the
        last ones.  A free worker ran them all and refuses none; one that
        waits (parked, held, busy) refuses them now.  Not while an offer of
        this link's waits for its answer, nor with none to offer."""
        if not self.up or self.busy is not None or self.refusable or self.parked_op is not None:
            return
        if self.tail_refusable is not None:
            return
        if self.fifo:
            self._offer(0, None, wire.BEHIND_TAIL_EVAL if eval_mode else wire.BEHIND_TAIL_FUNCTION, True)

    def _offer(self, start: int, script_client: Client | None, epoch: int, from_end: bool = False) -> None:
        """Offer the worker, in a ``K`` frame of ``epoch``, the entries of
        the queue from ``start`` on that a busy script's worker may refuse
        (see :meth:`_offer_refusals`); ``from_end``: their places counted
        back from the last (see :meth:`offer_tail`), and no frame without
        one."""
        fifo = self.fifo
        places: list[int] = []
        refusable: list[tuple[object, Slot | None]] = []
        # id(client) -> the ids of the slots in its reply order (not those
        # inside an EXEC's reply or a fan-out's), made once per client; a
        # command's under CLIENT REPLY OFF or SKIP stands there in a
        # MutedSlot (Dispatch._execute_quietly): Redis refuses it too,
        # silently, nothing done.
        standing: dict[int, set[int]] = {}
        for place, sink in enumerate(islice(fifo, start, None)):
            # A client's slot, or a script's reply on its way to one.
            slot = sink if isinstance(sink, Slot) else getattr(sink, "busy_slot", None)
            if slot is None:
                # The park of a cross-shard script's first run (of a group
                # of them, too), or a write fan-out's part, of another
                # client: Redis reads that EVAL (MSET...) at the threshold
                # and answers it -BUSY; so does its operation.
                op = getattr(sink, "op", None)
                if getattr(sink, "refusable_while_busy", False) and op.client is not script_client:  # type: ignore[union-attr]
                    places.append(place)
                    refusable.append((sink, None))
                continue
            client = slot.client
            if client is script_client:
                continue
            ids = standing.get(id(client))
            if ids is None:
                ids = standing[id(client)] = {
                    id(s.slot if type(s) is MutedSlot else s) for s in client.pending
                }
            if id(slot) in ids:
                places.append(place)
                refusable.append((sink, slot))
        if from_end:
            if not places:
                return
            last = len(fifo) - start - 1
            self.tail_refusable = refusable
            self.send_frame(wire.encode_refusals(epoch, [last - place for place in places]))
            return
        self.refusable = refusable
        self.refusable_epoch = epoch
        self.send_frame(wire.encode_refusals(epoch, places))  # after the entries it numbers

    def _refused(self, epoch: int, chosen: list[int]) -> None:
        """The worker's answer to :meth:`_offer_refusals` of script
        ``epoch``: the candidates it refused (by their place in the list
        offered).  Each gets ``-BUSY`` now; the placeholder reply the
        worker sends in its place is dropped.  One pass over the queue."""
        if epoch in wire.TAIL_EPOCHS:  # (kept apart: see tail_refusable)
            refusable, self.tail_refusable = self.tail_refusable or [], None
        else:
            if epoch != self.refusable_epoch and epoch < 0:
                return  # (an offer's answer whose link forgot it: Finished came first)
            refusable, self.refusable = self.refusable, []
            self.parked_op = None
            if epoch != self.refusable_epoch:  # not the offer kept (none is sent so)
                log.error(
                    "shard %d: refusals for busy script %d, not %d", self.index, epoch, self.refusable_epoch
                )
                return
        picked: dict[int, Slot | None] = {}  # id(sink) -> its client's slot
        for i in chosen:
            if 0 <= i < len(refusable):
                sink, slot = refusable[i]
                picked[id(sink)] = slot
        if not picked:
            return
        busy = self.busy or encode_error(
            errors.BUSY_FUNCTION if epoch in wire.FUNCTION_EPOCHS else errors.BUSY
        )
        fifo = self.fifo
        kept = []
        parks = []  # cross-shard scripts' parks: answered once the queue is rewritten
        for queued in fifo:
            if not picked or id(queued) not in picked:
                kept.append(queued)
                continue
            refused = picked.pop(id(queued))
            kept.append(_DROPPED)
            if refused is None:
                parks.append(queued)
                continue
            refuse_busy = getattr(queued, "refuse_busy", None)
            if refuse_busy is not None:  # a read's part across shards (fanout.Part)
                if not refuse_busy(busy):
                    continue  # (another of its parts was refused so)
            else:
                Slot.deliver(refused, busy)  # not a subclass's: no script reply to count
            # A script's reply on its way (busy_slot, or an EVALSHA's
            # shortcut slot): it will not run.
            busy_refused = getattr(queued, "busy_refused", None)
            if busy_refused is not None:
                busy_refused()
            unseen = getattr(refused, "unseen", None)
            if unseen is not None:  # a monitor.LineSlot: no MONITOR line, as in Redis
                unseen()
        fifo.clear()  # rewritten in place: a deque's middle is slow to index
        fifo.extend(kept)
        for park in parks:  # (its operation is decided abort: it may queue entries here)
            deliver(park, busy, "refusing a park")

    def _release_caller(self) -> None:
        caller, self.caller = self.caller, None
        if caller is not None:
            scriptcaller.release(caller)

    def send_control(self, command: bytes, sink: Sink, in_step: bool = False) -> None:
        """Queue one of the acceptor's own messages to the worker (an
        internal verb about the whole pipe, in database 0): it is never
        refused with ``-BUSY``.  Only a pipe that is down refuses it; the
        acceptor says it again when the pipe is attached.  ``in_step``: it
        belongs to the client's step (an EXEC's ``__serve`` and
        ``__unblock``), so with several acceptors it leaves with the step,
        in its place (see :mod:`shardkv.acceptor.holds`), and a busy script
        refuses it like the step's other commands."""
        self.send(_CONTROL_HEADER, command, sink, control=not in_step)

    def step_done(self) -> None:
        """A step of the global order has been queued whole: send the
        batch now if it holds :data:`EARLY_BATCH` commands or more."""
        if len(self.out) >= 2 * EARLY_BATCH:
            self._write()

    def flush(self) -> None:
        """Send everything queued this turn as one ``B`` frame."""
        self.queued = False
        self._write()

    def _write(self) -> None:
        held = self.held_slow
        if held is not None and held.holding and held.slowlog:
            held.flush_held()  # logged before what the worker will log for these
        out = self.out
        if not out or self.transport is None:
            if self.frames:
                self._write_frames()
            return
        self.out = []
        if self.frames:  # queued before these entries
            self.frames.append(batch_frame(out))
            self._write_frames()
            return
        self.transport.write(batch_frame(out))

    def _write_frames(self) -> None:
        frames, self.frames = self.frames, []
        if self.transport is not None:
            self.transport.write(b"".join(frames))

    def send_frame(self, payload: bytes) -> None:
        """Send a frame that is not a batch (cancel, control)."""
        if self.transport is not None and self.up:
            self.flush()
            self.transport.write(FRAME.pack(len(payload)) + payload)

    def queue_frame(self, payload: bytes) -> None:
        """Send a control frame at the end of this loop turn, after what was
        queued before it and in one write with the rest of the turn's: a
        cross-shard operation's ``Decide``, which the decisions file already
        holds (so several operations decided in one turn cost the pipe one
        system call, not one each)."""
        if self.transport is None or not self.up:
            return
        out = self.out
        if out:  # entries queued before it leave before it
            self.out = []
            self.frames.append(batch_frame(out))
        self.frames.append(FRAME.pack(len(payload)) + payload)
        if not self.queued:
            self.queued = True
            self._on_turn_end(self)

    def inquire(self, args: list[bytes], answer: Callable[[object], None]) -> None:
        """Ask the worker ``args`` (a verb of its figures) in an ``I`` frame,
        outside any batch: ``answer`` gets its value (a part, or an Error)."""
        if self.transport is None or not self.up:
            answer(Error(errors.SHARD_UNAVAILABLE))
            return
        self.inquiries.append(answer)
        payload = wire.encode_inquiry(args)
        held = self.held_slow
        if held is not None and held.holding and held.slowlog:
            held.flush_held()  # (as _write does)
        if self.frames:
            self._write_frames()
        self.transport.write(FRAME.pack(len(payload)) + payload)

    def try_hold(self, answer: Callable[[bool], None]) -> None:
        """Ask the worker to hold the shard for this acceptor if it is free
        now (a ``T`` frame, the ``__hold`` that never waits, see
        :mod:`shardkv.acceptor.holds`): ``answer`` gets True if it did.  A
        shard that is down or busy with a script is not asked (False).  The
        entries queued before it leave first, so the worker has run this
        acceptor's ``__release`` of an earlier step when it reads the try."""
        if self.transport is None or not self.up or self.busy:
            answer(False)
            return
        self.flush()
        self.tries.append(answer)
        self.transport.write(FRAME.pack(1) + wire.TRY_FRAME)

    # -- receiving ----------------------------------------------------------

    def protocol(self) -> _Pipe:
        """A protocol for a new pipe to this shard's worker."""
        return _Pipe(self)

    def attached(self, transport: asyncio.Transport) -> None:
        old = self.transport
        if old is not None:
            # The new pipe came before the old one's end was noticed: the
            # old worker is gone, and so are the replies it owed.
            self.transport = None
            self.fail_all()
            old.close()
            if self.others_gone is not None:
                self.others_gone()
        self._buf = b""
        self.busy_scripts = self.unblocks_sent = 0  # a new worker, or a new pipe: both count from 0
        RUNNING_LINKS.discard(self)  # (the new pipe says if a script runs)
        self.refusable = []  # an offer to the old pipe: never answered now
        self.tail_refusable = None
        self.parked_op = None
        self._chunks = []
        self._pieces = []
        self._have = self._need = 0
        self._events = None  # the old pipe's, if any, went with it
        self._gate = None
        self.others_seen = 0
        self.resumed = []  # (the old pipe's O frames are gone: nothing waits for them)
        self.resume_gate = None
        if self.others_waiting:
            causal.answer_all(self)
        self.batches = {}
        self.batched = {}
        if self.unbatched:
            self._batches_in(None)
        self.transport = transport
        self.up = True
        self.stopped = False
        self.generation += 1

    def worker_closed(self) -> bool:
        """Whether the worker has closed its end of the pipe (it died),
        read here or not yet: no pipe, a closing one, or one the kernel
        says is hung up or reset (a zero-timeout poll of its descriptor,
        which the open transport owns, so it is not another's).  Frames the
        worker wrote before may be unread still; none comes after them."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return True
        sock = transport.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        if fd < 0:  # (a transport with no descriptor: a test's)
            return False
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return any(events & (select.POLLHUP | select.POLLERR) for _, events in poller.poll(0))

    def killed_elsewhere(self, pid: int, epoch: int) -> None:
        """Another acceptor signalled this worker's busy script ``(pid,
        epoch)`` to stop (the bus's ``scriptkilled``): a kill read here
        from now on finds it stopping, as Redis's kill read after one that
        answered ``+OK`` finds the script gone.  The report may not have
        come on this pipe yet: it counts when it does."""
        script = self.script
        if script is not None and script[0] == pid and self.script_epoch == epoch:
            self.kill_sent = True
        else:
            self.kill_told = (pid, epoch)

    def _tell_verdicts(self, verdict: str, killed_at: float = 0.0) -> None:
        waiting, self.kill_verdicts = self.kill_verdicts, []
        for told in waiting:
            told(verdict, killed_at)

    def _tell_kind_checks(self, verdict: str, reported_at: float | None = None) -> None:
        """Tell the kind checks ``verdict``; OTHER_KIND, only those that
        signalled before the report was made (``reported_at``)."""
        waiting, self.kind_checks = self.kind_checks, []
        for signalled, told in waiting:
            if verdict == OTHER_KIND and reported_at is not None and reported_at < signalled:
                self.kind_checks.append((signalled, told))  # the report it asked comes later
            else:
                told(verdict, 0.0)

    def detached(self, transport: asyncio.Transport) -> None:
        if transport is self.transport:
            self.up = False
            self.transport = None
            self.busy = self.script = None
            self.kill_sent = False
            BUSY_LINKS.discard(self)
            RUNNING_LINKS.discard(self)
            self._release_caller()
            if self.kill_verdicts:  # the script went with its worker
                self._tell_verdicts(ENDED)
            if self.kind_checks:
                self._tell_kind_checks(ENDED)
            _busy_changed()
            if MISCONF_LINKS.pop(self, None) is not None and self.on_disk is not None:
                self.on_disk()  # a new worker says again if it cannot write
            # No frame comes now: what waited for a batch's R frame goes
            # (an invalidation for its writer, a REDIRECT target: that
            # write is not acknowledged, it gets -ERR shard unavailable, but
            # the shard may have applied it), and the seen questions for O
            # frames are answered (this pipe handed out all it got), not
            # once a restarted worker's pipe comes.
            if self.unbatched:
                self._batches_in(None)
            if self.others_waiting:
                causal.answer_all(self)
            self.fail_all()
            if self.others_gone is not None:
                self.others_gone()

    def fail_all(self) -> None:
        """Answer every command in flight: the shard is gone."""
        self.out = []
        self.frames = []
        streaming, self.streaming = self.streaming, None
        self._pieces = []
        if streaming is not None and hasattr(streaming, "torn"):
            streaming.torn()  # part of its reply may be out already
        fifo, self.fifo = self.fifo, deque()
        body = encode_error(errors.SHARD_UNAVAILABLE)
        for sink in _close_clients(fifo) if self.stopped else fifo:
            deliver(sink, body, "answering that its shard is gone")
        ops, self.ops = self.ops, {}
        for op in ops.values():
            op.shard_lost(self.index)
        blocked, self.blocked = self.blocked, {}
        for sink in _close_clients(blocked.values()) if self.stopped else blocked.values():
            deliver(sink, body, "answering that its shard is gone")
        inquiries, self.inquiries = self.inquiries, deque()
        for answer in inquiries:
            answer(Error(errors.SHARD_UNAVAILABLE))
        tries, self.tries = self.tries, deque()
        for tried in tries:
            tried(False)
        self._after_frame()

    def data_received(self, data: bytes) -> None:
        if self._need:
            self._chunks.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._chunks)
            self._chunks = []
            self._have = self._need = 0
        elif self._buf:
            data = self._buf + data
        pos = 0
        n = len(data)
        # Whether this read's replies are written at once: after any frame
        # but replies that carry no events (keyspace events, invalidations,
        # wake-ups, pieces, another acceptor's events...), whose order with
        # what other clients see is kept as before; a read of plain replies
        # alone is written at the end of the turn (see __init__).
        at_once = False
        coordinator = self.coordinator
        if coordinator is not None:
            coordinator.reading = True
        try:
            while n - pos >= 4:
                (size,) = FRAME.unpack_from(data, pos)
                end = pos + 4 + size
                if end > n:
                    if size > _BIG_FRAME:
                        self._chunks = [data[pos:]]
                        self._have = n - pos
                        self._need = size + 4
                        pos = n
                    break
                if data[pos + 4] != wire.REPLIES or self._events is not None:
                    at_once = True
                self._frame(data[pos + 4 : end])
                pos = end
        finally:
            if coordinator is not None:
                coordinator.read_done()  # before the read's replies are written
        self._buf = data[pos:] if pos < n else b""
        if at_once:
            self._after_frame()
        else:
            self._after_read()

    def _frame(self, payload: bytes) -> None:
        kind = payload[0]
        if self.resumed and kind != wire.WAKE and kind != wire.GATED_WAKE and kind != wire.OTHERS_EVENTS:
            self.resumed = []  # (no O frame came right behind their wakes: nothing waits for them)
        if kind == wire.REPLIES:
            if self._events is not None:
                self._replies_with_events(payload)
                return
            # A sink that raises costs its client alone (see delivery_failed):
            # the other replies go on, each to its own sink.  (wire.decode_replies,
            # replies.deliver and a client's Slot.deliver inline: this loop
            # runs once per reply.)
            popleft = self.fifo.popleft
            # The plain slots (PLAIN_SLOTS), Client._run's first: an
            # identity test each, where ``in`` a tuple compares any other
            # sink's type with each (a script's reply slot's, the next usual);
            # then the screened ones (SCREENED), plain unless the reply's
            # first byte says otherwise (most of a pipeline's EVALSHAs).
            bare, plain = PLAIN_SLOTS
            screened = SCREENED[0]
            not_plain = SCREENED_FIRSTS
            type_of = type  # a local: no builtins lookup per reply
            pos, sizes = wire.reply_sizes(payload)
            for size in sizes:
                body = payload[pos : (pos := pos + size)]  # (no ``end``: two opcodes fewer a reply)
                sink = popleft()
                # (``sink_type`` named after the first test: nothing more for a
                # bare slot's, one call of type() fewer for the others.)
                if (
                    type_of(sink) is bare
                    or ((sink_type := type_of(sink)) is screened and body[0] not in not_plain)
                    or sink_type is plain
                ):
                    sink.data = body
                    client = sink.client
                    if not client.dirty:
                        client.dirty = True
                        client.server.dirty_clients.append(client)
                    continue
                try:
                    sink.deliver(body)
                except Exception:
                    delivery_failed(sink, "delivering a reply")
        elif kind == wire.WAKE:
            token, body = wire.decode_wake(payload)
            sink = self.blocked.pop(token, None)
            if sink is not None:
                if getattr(sink, "told", False):
                    self.resumed.append(sink)
                deliver(sink, body, "delivering a blocking command's reply")
            elif body.startswith(wire.SERVED_WAKE):
                # Its wait is over (its client went away, another shard
                # served it, a timeout): the shard that popped for it waits
                # in place for a verdict, so it still gets one, a give-back.
                self.send_frame(wire.encode_verdict(token, False))
        elif kind == wire.GATED_WAKE:
            self._gated_wake(*wire.decode_gated_wake(payload))
        elif kind == wire.CONTROL:
            self._control(payload)
        elif kind == wire.EVENTS:
            bounds, events = wire.decode_events(payload)
            if self.on_events is None:
                return
            if bounds is None:
                # The sweeper's, or a cross-shard operation's (its executor
                # sends them before its Ran: held until the decision).
                self._emit(events, next(iter(self.ops.values())) if self.ops else None)
            else:
                self._events = (bounds, events)
        elif kind == wire.MONITOR:
            if self.on_script_calls is not None:
                self.on_script_calls(wire.decode_monitor(payload))
        elif kind == wire.SLOW_NAMES:
            if self.on_slow_names is not None:
                fifo = self.fifo
                n = len(fifo)
                named = [(fifo[a], entry_id) for a, entry_id in wire.decode_slow_names(payload) if 0 <= a < n]
                self.on_slow_names(named)
        elif kind == wire.ACL_LOG:
            if self.on_acl_log is not None:
                self.on_acl_log(*wire.decode_acl_log(payload))
        elif kind == wire.SCRIPT_QUERY:
            if self.on_script_query is not None:
                self.on_script_query(payload)
        elif kind == wire.INQUIRY:
            if self.inquiries:
                self.inquiries.popleft()(wire.decode_inquiry_answer(payload))
        elif kind == wire.TRY_HOLD:
            if self.tries:
                self.tries.popleft()(payload == wire.TRY_GRANTED)
        elif kind == wire.SCRIPT:
            busy, pid, dirty, eval_mode, unblocks, caller, epoch, killed_at, reported_at, *details = (
                wire.decode_script_state(payload)
            )
            if busy:
                if self.busy is None:  # the script's first report
                    self._parked_epoch = wire.PARKED_BEHIND_EVAL if eval_mode else wire.PARKED_BEHIND_FUNCTION
                    self._offer_refusals(caller, epoch)
                    # (another acceptor's operation's script: see offer_tail)
                    self.busy_elsewhere = caller[1] == wire.SCRIPT_PARKED and caller[0] != self.pipe_index
                self.script = (pid, dirty, eval_mode, *details)
                self.script_epoch = epoch
                if self.kill_told == (pid, epoch):  # told before this pipe brought the report
                    self.kill_sent = True
                first = self.busy is None
                self.busy = encode_error(errors.BUSY if eval_mode else errors.BUSY_FUNCTION)
                if first and self.on_busy is not None:
                    self.on_busy(self.busy)
                BUSY_LINKS.add(self)
                if first:
                    _busy_changed()
                if self.caller is None:  # (a later report says it has written)
                    self.caller = scriptcaller.hold(self.fifo, self.ops, self.pipe_index, caller)
                self._refuse_unblocks(unblocks)
                if dirty and self.kill_verdicts:  # it wrote before it saw the kill
                    self._tell_verdicts(UNKILLABLE)
                if (
                    self.kind_checks
                ):  # (a report read after the check: the one it asked, a write's, another's)
                    self._tell_kind_checks(UNKILLABLE if dirty else OTHER_KIND, reported_at)
            else:
                self.script = self.busy = None
                self.kill_sent = False
                # The worker answered the offer before this, or never will
                # (it stopped waiting for it: it ran every candidate).
                self.refusable = []
                BUSY_LINKS.discard(self)
                self._release_caller()
                if self.kill_verdicts:
                    self._tell_verdicts(KILLED if killed_at else ENDED, killed_at)
                if self.kind_checks:
                    self._tell_kind_checks(ENDED)
                _busy_changed()
        elif kind == wire.RUNNING:
            if payload == wire.RUNNING_FRAME:
                RUNNING_LINKS.add(self)
            else:
                RUNNING_LINKS.discard(self)
        elif kind == wire.REFUSALS:
            self._refused(*wire.decode_refusals(payload))
        elif kind == wire.STOPPED:
            self.stopped = True  # (acted on when the pipe closes, next: see fail_all)
        elif kind == wire.PIECE:
            piece, last = wire.decode_piece(payload)
            fifo = self.fifo
            sink = fifo.popleft() if last else fifo[0]
            self.streaming = None if last else sink
            take = getattr(sink, "deliver_piece", None)
            if take is not None:  # a client's reply slot: written as it comes
                try:
                    take(piece, last)
                except Exception:
                    delivery_failed(sink, "delivering a piece of a reply")
            elif not last:  # any other sink gets the reply whole
                self._pieces.append(piece)
            else:
                self._pieces.append(piece)
                body = b"".join(self._pieces)
                self._pieces = []
                deliver(sink, body, "delivering a reply")
        elif kind == wire.DISK:
            misconf = wire.decode_disk(payload)
            if misconf is None:
                MISCONF_LINKS.pop(self, None)
            else:
                MISCONF_LINKS[self] = misconf
            if self.on_disk is not None:
                self.on_disk()
        elif kind == wire.GATED_EVENTS:
            bounds, events, gated, waits = wire.decode_gated_events(payload)
            gate = causal.Gate()
            if self.ask_seen is not None:
                self.ask_seen(self.index, waits, gate)
            self._events = (bounds, events)
            self._gate = (gated, gate, waits)
        elif kind == wire.OTHERS_EVENTS:
            self._others_events(payload)
        else:
            log.warning("shard %d sent an unknown frame %r", self.index, payload[:1])

    def _gated_wake(self, wake: bytes, waits: list[tuple[int, int]]) -> None:
        """A ``J`` frame: the served blocked command's reply in ``wake``
        goes once the other acceptors of ``waits`` handed out the events
        its shard's batch sent them (and what that asked of this one: an
        invalidation for its client, a REDIRECT target, goes before it)."""
        token, body = wire.decode_wake(wake)
        sink = self.blocked.pop(token, None)
        if sink is None:
            return
        if getattr(sink, "told", False):
            self.resumed.append(sink)
        if self.ask_seen is None:
            deliver(sink, body, "delivering a blocking command's reply")
            return
        gate = causal.Gate()
        self.ask_seen(self.index, waits, gate)
        gate.hold(sink, body)

    def _others_events(self, payload: bytes) -> None:
        """Events of another acceptor's command (or of the sweeper): hand
        them out, write them, then answer the ``seen`` questions for them
        (see :mod:`shardkv.acceptor.causal`), once what handing them out
        asked of the other acceptors is answered."""
        seq, events, writer = wire.decode_others_events(payload)
        gate = None
        if self.on_events is not None:
            causal.gather()
            causal.OTHERS = (self.index, seq, writer)
            try:
                if self.others_events is not None:  # (another acceptor's script's messages among them)
                    self.others_events(seq, events)
                else:
                    self.on_events(events, None)
            finally:
                causal.OTHERS = None
                gate = causal.gathered()
        self._after_frame()  # written to the clients' sockets before the answer
        before = self.resume_gate
        behind = before is not None and before.waiting
        if self.resumed or behind:
            # Clients served just before this frame, with commands behind
            # their blocking ones: the answer waits until those ran (the
            # push's replies wait for it: see Shard.gate_on_behind); and the
            # answers of later frames wait for it (``seen`` of a frame says
            # the earlier ones are handed out too).
            if gate is None:
                gate = causal.Gate()
            if behind:
                before.hold(causal.Answer(gate.expect()), b"")  # type: ignore[union-attr]
            resumed, self.resumed = self.resumed, []
            for sink in resumed:
                sink.when_resumed(gate.expect())
            self.resume_gate = gate
        seen = causal.Seen(self, seq)
        if gate is None:
            seen.deliver(b"")
        else:
            gate.hold(seen, b"")

    def _replies_with_events(self, payload: bytes) -> None:
        """An ``R`` frame after an ``E`` frame: each command's events go
        out just before its reply, in the order the shard ran them."""
        (bounds, events), self._events = self._events, None  # type: ignore[misc]
        if self.remote:
            self._replies_waiting(payload, bounds, events)
            return
        emit = self.on_events
        fifo = self.fifo
        done = 0
        nbounds = len(bounds)
        for i, body in enumerate(wire.decode_replies(payload)):
            if i < nbounds and bounds[i] > done and emit is not None:
                self._emit(events[done : bounds[i]], fifo[0] if fifo else None)
                done = bounds[i]
            deliver(fifo.popleft(), body, "delivering a reply")
        if done < len(events) and emit is not None:
            emit(events[done:], None)

    def _replies_waiting(self, payload: bytes, bounds: list[int], events: list) -> None:
        """:meth:`_replies_with_events` with several acceptors: a reply
        waits for what its command's events became on the other acceptors
        (the ``G`` frame's gate, and what handing the events out here asked
        of them; see :mod:`shardkv.acceptor.causal`)."""
        emit = self.on_events
        fifo = self.fifo
        gated: set[int] | tuple = ()
        gate = None
        sinks: dict[int, Any] = {}
        if self._gate is not None:
            (waiting, gate, waits), self._gate = self._gate, None
            gated = set(waiting)
            sinks = {i: fifo[i] for i in waiting if i < len(fifo)}
            self._batch(waits, sinks, gate)
        done = 0
        nbounds = len(bounds)
        # Events after the last reply's (a blocked command the batch served):
        # the replies wait until what handing them out asks of the other
        # acceptors is answered too (an invalidation for a REDIRECT target
        # there), as Redis serves it before it writes the batch's replies.
        tail = emit is not None and len(events) > (bounds[-1] if bounds else 0)
        later: list[tuple[causal.Gate | None, Any, bytes]] = []
        for i, body in enumerate(wire.decode_replies(payload)):
            mine = None
            if i < nbounds and bounds[i] > done and emit is not None:
                causal.gather()
                try:
                    self._emit(events[done : bounds[i]], fifo[0] if fifo else None)
                finally:
                    mine = causal.gathered()
                done = bounds[i]
            sink = fifo.popleft()
            if gate is not None and i in gated:
                if mine is not None:
                    sink = causal.Later(gate, sink)
                else:
                    mine = gate
            if tail:
                later.append((mine, sink, body))
            elif mine is not None:
                mine.hold(sink, body)
            else:
                deliver(sink, body, "delivering a reply")
        if done < len(events) and emit is not None:
            causal.gather()
            try:
                emit(events[done:], None)
            finally:
                last = causal.gathered()
                for mine, sink, body in later:
                    if last is not None:
                        last.hold(sink if mine is None else causal.Later(mine, sink), body)
                    elif mine is not None:
                        mine.hold(sink, body)
                    else:
                        deliver(sink, body, "delivering a reply")

    def _batch(self, waits: list[tuple[int, int]], sinks: dict[int, Any], gate: causal.Gate) -> None:
        """Keep the gated replies' sinks of the batch whose ``O`` frames
        ``waits`` went to other acceptors, while the gate holds them."""
        keys = []
        for pipe, seq in waits:
            self.batches[(pipe, seq)] = sinks
            self.batched[pipe] = max(seq, self.batched.get(pipe, 0))
            keys.append((pipe, seq))
        gate.hold(_Forget(self, keys), b"")
        if self.unbatched:
            self._batches_in(self.batched)

    def when_batched(self, pipe: int, seq: int, then: Callable[[dict | None], None]) -> None:
        """``then(sinks)``, with the sinks of the gated replies (by their
        index in the ``R`` frame) of the batch whose ``O`` frame ``seq``
        went to acceptor ``pipe``, once that ``R`` frame is in (at once if
        it is; None if they went: an answer came too late)."""
        sinks = self.batches.get((pipe, seq))
        if sinks is not None or not self.up or seq <= self.batched.get(pipe, 0):
            then(sinks)
        else:
            self.unbatched.setdefault((pipe, seq), []).append(then)

    def _batches_in(self, batched: dict[int, int] | None) -> None:
        """Call what waited for the batches now in (all, with None for those
        not: ``batched`` None, the pipe changed)."""
        for key in list(self.unbatched):
            pipe, seq = key
            if batched is None or seq <= batched.get(pipe, 0):
                for then in self.unbatched.pop(key):
                    try:
                        then(self.batches.get(key) if batched is not None else None)
                    except Exception:
                        log.exception("placing a message before a reply")

    def _emit(self, events: list, origin: object) -> None:
        """Hand out one command's events; a part of a command that spans
        shards holds them until its last part is in (:func:`release_events`)."""
        holder = getattr(origin, "event_holder", None)
        if holder is None:
            self.on_events(events, origin)  # type: ignore[misc]
            return
        if holder.held_events is None:
            holder.held_events = []
        holder.held_events.extend(events)
        holder.emit_events = self.emit_held

    def emit_held(self, events: list, origin: object) -> causal.Gate | None:
        """Hand out a multi-shard command's events (:func:`release_events`):
        here, and with several acceptors to the others too (the shards give
        such events to this acceptor alone, see Shard._share_events); then
        the gate its reply waits in until they have (None: no need)."""
        if self.relay_events is None:
            self.on_events(events, origin)  # type: ignore[misc]
            return None
        causal.gather()
        try:
            self.on_events(events, origin)  # type: ignore[misc]
            self.relay_events(events, origin)
        finally:
            gate = causal.gathered()
        return gate

    def _control(self, payload: bytes) -> None:
        try:
            message = wire.decode_control(payload)
        except wire.BadMessage as e:
            log.error("shard %d: %s", self.index, e)
            return
        op_id = getattr(message, "op", None)
        if op_id is not None and op_id == self.parked_op and type(message) is wire.Finished:
            # The worker left the park: it answered this link's offer
            # before, or never will (see parked_op).
            self.refusable, self.refusable_epoch, self.parked_op = [], 0, None
        op = self.ops.get(op_id)  # type: ignore[arg-type]
        if op is not None:
            op.control(self.index, message)
        elif self.orphan is not None:
            self.orphan(self, message)
        else:
            log.warning("shard %d sent %r for no operation in progress", self.index, message)


class _Forget:
    """The sink, last in a gate, that forgets a batch's sinks once it opens."""

    __slots__ = ("link", "keys")

    def __init__(self, link: ShardLink, keys: list[tuple[int, int]]) -> None:
        self.link = link
        self.keys = keys

    def deliver(self, body: bytes) -> None:
        batches = self.link.batches
        for key in self.keys:
            batches.pop(key, None)


def _close_clients(sinks: Iterable) -> list:
    """A worker that ended for a SHUTDOWN NOSAVE (wire ``Z``): the clients
    ``sinks`` answer are closed without a reply, as Redis exits without
    answering them; the server is stopping.  The sinks of no client (a
    cross-shard operation's part, the sweeper's) are returned, to be
    answered as for a shard that is gone."""
    left = []
    for sink in sinks:
        client, _ = origin_of(sink)
        if client is None:
            left.append(sink)
        else:
            client.kill()
    return left


# The exit status of an acceptor whose pipe reader failed (see _out_of_order).
EXIT_PIPE_FAILED = 70


class _Dropped:
    """The sink of an entry the worker refused while a script was busy:
    its client got ``-BUSY`` already, and the placeholder reply goes nowhere."""

    __slots__ = ()

    def deliver(self, body: bytes) -> None:
        pass


_DROPPED = _Dropped()

# What a busy script's worker decided on a SCRIPT KILL or FUNCTION KILL
# that signalled it (ShardLink.kill_verdicts).
KILLED, UNKILLABLE, ENDED = "killed", "unkillable", "ended"
# (A kill of the other kind, ShardLink.kind_checks: the script had not written.)
OTHER_KIND = "otherkind"


def _out_of_order(index: int) -> NoReturn:
    """An exception escaped the code that reads a worker's pipe, outside
    any one client's reply (those cost their client alone, see
    :func:`~shardkv.acceptor.replies.delivery_failed`): a bad frame, or a
    bug in what a frame is for.  What this acceptor has in flight can no
    longer be trusted to match the worker's order, so it exits, as if
    killed, and the supervisor starts it again: the workers resolve what
    it left in doubt, as for any acceptor crash.  (Closing the pipe alone
    would leave the shard unreachable through this acceptor for good.)"""
    log.critical("acceptor: reading shard %d's pipe failed; exiting, to be restarted", index, exc_info=True)
    os._exit(EXIT_PIPE_FAILED)  # the log's handler has flushed the line


class _Pipe(asyncio.Protocol):
    """The protocol of one pipe connection; forwards to its link."""

    def __init__(self, link: ShardLink) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.link.attached(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        if self.transport is self.link.transport:
            try:
                self.link.data_received(data)
            except Exception:
                _out_of_order(self.link.index)

    def eof_received(self) -> None:
        """The worker's end is closed (it died, or stopped): the link
        learns it now, not in ``connection_lost``, which the loop calls
        later, in a callback of its own.  A client's command read in the
        same turn of the loop, after the pipe's end (a client told by
        another acceptor that the worker died), found the dead worker's
        script busy still: ``-BUSY``.  Returns None: the transport closes."""
        self.link.detached(self.transport)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.detached(self.transport)  # type: ignore[arg-type]  # (after eof_received: nothing)
