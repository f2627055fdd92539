"""Holds: commands over several shards stay strictly serializable when
several acceptors serve at once (``acceptors`` above 1).

With one acceptor, its single thread puts every command into one global
order and every worker runs its pipe in that order: a command's parts on
several shards sit at the same place of every shard's order for free.
With K acceptors, each worker reads K pipes, and two acceptors' parts
could interleave differently on two shards.  So, at K > 1, a *step* of an
acceptor that queues entries for two shards or more (MGET, MSET, DEL,
EXISTS, KEYS, DBSIZE, WATCH, an EXEC, a parked cross-shard operation, a
script's cross-shard retry, a blocking command's cross-shard try...) is
not sent at once:

1. its entries are *captured* (``ShardLink.send``, ``send_run`` and ``send_slotted`` are shadowed for the
   step's duration) and the client's later commands wait
   (:data:`HOLDING`, as a blocked client's do; those that only touch the
   shards it holds join it once it holds them, see
   :meth:`Holds._take_along_all`);
2. it *tries* every one of those shards at once: a ``T`` frame
   (:data:`shardkv.protocol.wire.TRY_FRAME`), a hold that never waits,
   which the worker grants only if the shard is free (held by nobody, and
   no other acceptor's frames wait for it) and refuses at once otherwise.
   A held shard reads only this acceptor's pipe (the worker's side, see
   :mod:`shardkv.worker.loop`).  If every shard granted it, which is the
   uncontended case, the step has its holds after one round trip;
3. otherwise it keeps the holds below the lowest shard that refused,
   releases those above it, and takes the rest as before tries existed:
   ``__hold`` to each shard from that one on, in ascending shard order,
   each acknowledged before the next (a ``__hold`` waits its turn);
4. then the captured entries go out, exactly as they would have, and
   ``__release`` follows them right behind, on each held shard.  For a
   parked operation or an atomic write fan-out
   (:class:`shardkv.acceptor.crossshard.AtomicOp`, ``FanOutWrite``) that is
   enough: a shard parked (or prepared) for this acceptor's operation
   reads only this acceptor's pipe until the decision, hold or not; a
   fan-out's part that changed nothing does not park, and is then a read
   that is over.

That is strict two-phase locking on whole shards, and it cannot deadlock:
a try never waits, and a ``__hold`` is sent only for a shard above every
one the acceptor holds (the holds above the refused shard were released
first, on the same pipes), so every wait is for a shard above all those
the waiter holds, and no cycle of waits can form.  Nor can tries starve
an acceptor that waits in order: a shard refuses a try while another
acceptor's frames wait for it.  One acceptor runs one such request at a
time (the others queue, in order), so it never tries or holds a shard it
holds already; the requests queued behind one start together, as one
request on the union of their shards (:meth:`Holds._join`).

Nor does a request try a shard where an operation of this acceptor's may
be parked, not decided yet (:meth:`Holds.parking`; a cross-shard
operation's shards are this acceptor's alone until its ``Decide``): a
parked shard refuses every try, its own coordinator's too (see
:mod:`shardkv.worker.loop`), and the fallback would take the holds one
``__hold`` after another, a round trip each, none answered before that
decision.  The request waits for the decisions instead
(:meth:`Holds.decided`), and its ``T`` frames follow the ``Decide``
frames on the pipes, where the worker, free again, grants them.  Waiting
to try changes no order: nothing of the request has left.

If this acceptor dies between its tries and its releases, each worker
sees its pipe close and ends the hold, as for ``__hold``; a worker
restarted meanwhile has lost the hold with its pipe (the link refuses the
tries it had not answered, and the fallback's ``__hold`` then fails as
below).  Fault point ``tried`` (:mod:`shardkv.runtime.faultpoints`) stops
this acceptor once every try was granted, before the step leaves.

A shard that cannot be held (its worker is down or busy with a script)
gets no entries: their sinks get the error the link gives today
(``-ERR shard unavailable``, ``-BUSY``), and so does every other entry of
the same client's step, on every shard (:meth:`Holds._send_whole_steps`):
a step goes whole or not at all, as Redis refuses a command it reads at
busy-reply-threshold before any of it runs (an EXEC so refused ``-BUSY``
answers ``EXECABORT``); the holds taken are released.  A worker that is
restarted while held has lost the hold, and gets neither the entries
(they fail the same way) nor the release.  If this acceptor dies,
each worker sees its pipe close and ends the hold (the worker's side).

The acceptor's own messages to the workers (``__events``, ``__pause``:
:meth:`ShardLink.send_control`) are never captured: they go at once, on
each pipe in this acceptor's order, and never wait for a hold, which a
shard busy with a script would refuse (they are queued for it instead).

A step that touches one shard (the common case: single-key commands,
hash tags) is sent at once, as with one acceptor; with one acceptor none
of this runs at all (``Acceptor.holds`` is None).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shardkv.acceptor.blocking import EAGER
from shardkv.acceptor.client import Client
from shardkv.acceptor.fanout import Gather, Part
from shardkv.acceptor.replies import client_failed
from shardkv.acceptor.shardlink import ShardLink
from shardkv.protocol import commands, errors, wire
from shardkv.protocol.resp import encode_command, encode_error
from shardkv.protocol.wire import Verb
from shardkv.runtime import faultpoints

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

HOLDING = -3  # a client's blocked_token while its command waits for its holds
JOIN_MAX = 64  # the most queued requests that take one round of holds together (see Holds._join)
TAKE_ALONG_MAX = 256  # the most commands of one client that join its request (see Holds._take_along_all)

_HEADER = wire.entry_header(0)
_HOLD = encode_command([Verb.HOLD])
_RELEASE = encode_command([Verb.RELEASE])
_OK = b"+OK\r\n"
_BUSY = b"-BUSY "


def _send(link: ShardLink, header: bytes, command: bytes, sink: Any) -> None:
    """The link's own ``send``, past the capture that may shadow it."""
    type(link).send(link, header, command, sink)


def _send_release(link: ShardLink, sink: Any) -> None:
    """A ``__release`` of a shard this acceptor holds: sent as the
    acceptor's own message, never refused by a busy link.  The shard may
    have gone busy under the hold (a script of this acceptor's, sent at once
    while the step waited for a higher shard's hold, runs there); a
    ``__release`` answered ``-BUSY`` here would never reach the worker,
    which would read only this acceptor's pipe for ever (and answer its
    next ``__hold`` ``ERR shard already held``)."""
    type(link).send(link, _HEADER, _RELEASE, sink, control=True)


class Request:
    """One captured step that spans shards: its entries, the shards it
    needs (ascending), what it holds, and what it waits for."""

    __slots__ = (
        "shards",
        "entries",
        "client",
        "held",
        "failed",
        "next",
        "trying",
        "gate",
        "releasing",
        "ops",
        "joined",
        "number",
        "read",
        "refusable",
        "refused",
        "produce",
    )

    def __init__(self, shards: list[int], entries: list, client: Client | None, ops: list) -> None:
        self.shards = shards
        self.entries = entries
        self.client = client
        self.ops = ops  # the cross-shard operations whose entries these are (see Holds.parking)
        self.held: dict[int, int] = {}  # shard -> the link's generation when it was held
        self.failed: dict[int, bytes] = {}  # shard -> the error its hold got
        self.next = 0  # the index in ``shards`` of the hold to take next
        self.trying = 0  # tries not answered yet
        # The client's replies known at once (WATCH's OK...) wait behind this
        # until the step has run on every shard (its releases are answered).
        self.gate: Gate | None = None
        self.releasing = 0
        # The requests queued behind this one that it took along (see
        # Holds._join): their entries follow its own, under the same holds.
        self.joined: list[Request] = []
        self.number = 0  # its place among the acceptor's requests (see Holds.after_queued)
        # The client's read across shards that is the whole step, if it is
        # one (see Holds.refuse_reads).
        self.read = _read_of(entries)
        # The client's command whose park (or write parts) is the whole
        # step, one a busy script refuses (see Holds.refuse_parks): one
        # of its sinks, each an ``_Answer`` of that operation.
        self.refusable = _refusable_of(entries)
        # Called with the error of a shard that cannot take the step's
        # entries, which then leave for no shard (see Holds._unsendable):
        # an EXEC routed command by command makes itself EXECABORT so.
        self.refused: Callable[[bytes], None] | None = None
        # What routes the client's command once every shard is held, if it
        # is routed only then (see Holds.deferring): its entries follow.
        self.produce: Callable[[], None] | None = None


def _refusable_of(entries: list) -> Any:
    """One of the sinks of ``entries`` if they are all one operation's
    parks or parts (``crossshard._Answer``: a cross-shard script's first
    run, a client's single command across shards, a write fan-out), which
    a busy script refuses as long as they have not left."""
    op = None
    for entry in entries:
        sink = entry[3]
        if not hasattr(sink, "refusable_while_busy") or op not in (None, sink.op):
            return None
        op = sink.op
    return entries[0][3] if entries else None


def _read_of(entries: list) -> Gather | None:
    """The client's read across shards (MGET, EXISTS...) whose parts are
    all of ``entries``, if they are one's (see ``fanout.Part.busy_slot``)."""
    gather = None
    for entry in entries:
        sink = entry[3]
        if type(sink) is not Part or sink.busy_slot is None or gather not in (None, sink.gather):
            return None
        gather = sink.gather
    return gather


def _step_error(errors: list[bytes]) -> bytes | None:
    """The error of a client's step whose shards gave ``errors`` (those
    that cannot take its entries; None if none): a ``-BUSY`` if one is,
    else the first.  Redis, one process, has no shard down: it reads the
    command at busy-reply-threshold and refuses it ``-BUSY`` (an EXEC
    ``EXECABORT``); the first error, a worker down, left an EXEC an array
    of each command's own error."""
    return next((error for error in errors if error[:6] == _BUSY), errors[0] if errors else None)


def _free(client: Client | None, loop: Any) -> None:
    """``client``'s step has left (or will not): its later commands run."""
    if client is None:
        return
    if client.state.blocked_token == HOLDING and client.state.unblock(HOLDING):
        if client.waiting():
            loop.call_soon(client.resume)
            return
    if client.pending and not client.closed:
        client.flush()


class Gate:
    """In a client's reply list: holds back the replies after it (known at
    once, like WATCH's OK) until its step ran on every shard it held, so no
    reply announces what has not happened yet."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: bytes | None = None


class _ReleaseAck:
    """The answer to ``__release``: every entry before it on that pipe has
    been answered."""

    __slots__ = ("request",)

    def __init__(self, request: Request) -> None:
        self.request = request

    def deliver(self, body: bytes) -> None:
        request = self.request
        request.releasing -= 1
        if not request.releasing:
            _open(request)


def _open(request: Request) -> None:
    for member in (request, *request.joined):
        gate, member.gate = member.gate, None
        if gate is not None:
            gate.data = b""
            client = member.client
            if client is not None and not client.closed and client.pending:
                client.flush()


class _Ignored:
    """The sink of a ``__release`` whose answer nothing waits for."""

    __slots__ = ()

    def deliver(self, body: bytes) -> None:
        pass


_IGNORED = _Ignored()


class _TryAnswer:
    """Waits for one shard's answer to a try (``ShardLink.try_hold``)."""

    __slots__ = ("holds", "request", "shard")

    def __init__(self, holds: Holds, request: Request, shard: int) -> None:
        self.holds = holds
        self.request = request
        self.shard = shard

    def __call__(self, granted: bool) -> None:
        self.holds.tried(self.request, self.shard, granted)


class _HoldAck:
    __slots__ = ("holds", "request", "shard")

    def __init__(self, holds: Holds, request: Request, shard: int) -> None:
        self.holds = holds
        self.request = request
        self.shard = shard

    def deliver(self, body: bytes) -> None:
        self.holds.acknowledged(self.request, self.shard, body)


class Holds:
    """The acceptor's holds (one per acceptor, at K > 1): captures steps,
    takes holds in ascending order, sends, releases."""

    def __init__(self, server: Acceptor) -> None:
        self.server = server
        self.links = server.links
        self.depth = 0  # nested begin() calls
        self.captured: list | None = None  # (link, header, command, sink) while capturing
        self.queue: deque[Request] = deque()
        self.current: Request | None = None
        self._capture = [self._capturer(link) for link in self.links]
        self._capture_run = [self._run_capturer(link) for link in self.links]
        self._capture_slotted = [self._slotted_capturer(link) for link in self.links]
        # This acceptor's cross-shard operations not decided yet, counted
        # per shard they were sent to (see parking), and those of the step
        # being captured.
        self.undecided = [0] * len(self.links)
        self.step_ops: list = []
        self.step_refused: Callable[[bytes], None] | None = None  # (see Request.refused)
        self.step_produce: Callable[[], None] | None = None  # (see Request.produce)
        # The request whose tries wait for those operations' decisions.
        self.deferred: Request | None = None
        # Requests queued so far, and how many of them have left (in queue
        # order); what waits for a number of them to leave (after_queued).
        self.queued = 0
        self.left = 0
        self.after_left: list[tuple[int, Callable[[], None]]] = []

    def _capturer(self, link: ShardLink) -> Callable[..., None]:
        def send(
            header: bytes, command: bytes, sink: Any, whole_step: bool = False, control: bool = False
        ) -> None:
            if control:  # the acceptor's own message (ShardLink.send_control): not part of the step
                type(link).send(link, header, command, sink, control=True)
                return
            self.captured.append((link, header, command, sink))  # type: ignore[union-attr]

        return send

    def _run_capturer(self, link: ShardLink) -> Callable[..., None]:
        def send_run(header: bytes, run: list) -> None:
            captured = self.captured
            for i in range(0, len(run), 2):
                captured.append((link, header, run[i], run[i + 1]))  # type: ignore[union-attr]

        return send_run

    def _slotted_capturer(self, link: ShardLink) -> Callable[..., None]:
        def send_slotted(run: list) -> None:
            captured = self.captured
            for i in range(0, len(run), 3):
                captured.append((link, run[i], run[i + 1], run[i + 2]))  # type: ignore[union-attr]

        return send_slotted

    def _shadow(self) -> None:
        """Capture what is sent to the links (``send``, ``send_run`` and ``send_slotted``)."""
        for link, capture, capture_run, capture_slotted in zip(
            self.links, self._capture, self._capture_run, self._capture_slotted, strict=True
        ):
            link.send = capture  # type: ignore[method-assign]
            link.send_run = capture_run  # type: ignore[method-assign]
            link.send_slotted = capture_slotted  # type: ignore[method-assign]

    def _unshadow(self) -> None:
        for link in self.links:
            del link.send
            del link.send_run
            del link.send_slotted

    # -- capturing a step -------------------------------------------------------

    def begin(self) -> None:
        """A step starts (nested steps join the outermost one)."""
        self.depth += 1
        if self.depth == 1:
            self.captured = []
            self.step_ops = []
            self.step_refused = None
            self.step_produce = None
            self._shadow()

    def end(self, client: Client | None = None, replies_from: int = 0) -> None:
        """The step ends: send it now if it touches one shard at most, else
        queue it for its holds (``client``'s later commands wait for it, and
        the replies it queued from ``replies_from`` on wait for the step to
        have run)."""
        self.depth -= 1
        if self.depth:
            return
        self._unshadow()
        captured, self.captured = self.captured, None
        ops, self.step_ops = self.step_ops, []
        refused, self.step_refused = self.step_refused, None
        produce, self.step_produce = self.step_produce, None
        shards = sorted({entry[0].index for entry in captured})  # type: ignore[union-attr]
        if produce is not None:  # (it may touch any shard: see deferring)
            shards = list(range(len(self.links)))
        if len(shards) <= 1:
            self._mark(ops)
            for link, header, command, sink in captured:  # type: ignore[union-attr]
                _send(link, header, command, sink)
            if produce is not None:
                produce()
            return
        request = Request(shards, captured, client, ops)  # type: ignore[arg-type]
        request.refused = refused
        request.produce = produce
        self.queued += 1
        request.number = self.queued
        if client is not None:
            request.gate = Gate()
            client.pending.insert(replies_from, request.gate)
            if not client.state.blocked_token:
                # Not blocked as Redis shows it: no Redis client waits so.
                client.state.block(HOLDING, shown=False)
        self.queue.append(request)
        if self.current is None:
            self._start_next()

    def refusing(self, refused: Callable[[bytes], None]) -> None:
        """The step being captured is one command that runs on no shard if
        one of its shards cannot take its entries: ``refused`` then gets
        that shard's error before its entries get theirs (see
        :meth:`_unsendable`)."""
        self.step_refused = refused

    def deferring(self, produce: Callable[[], None], refused: Callable[[bytes], None]) -> None:
        """The step being captured is one command that is routed only once
        this acceptor holds every shard: ``produce`` routes it then, and
        what it sends follows what the step captured before, under those
        holds; if a shard's hold is refused ``-BUSY`` (a script past
        busy-reply-threshold there), ``refused`` gets that error instead,
        and ``produce`` never runs.  For a command that acts on this
        acceptor as it is routed (an EXEC's SELECT, CLIENT SETNAME or
        PUBLISH beside its KEYS or FLUSHDB, see
        ``transactions._holds_first``): routed at once, those acts stayed
        when a hold was then refused and the EXEC with it, where Redis runs
        nothing of an EXEC it refuses.  Such a request takes no other along
        (:meth:`_join`).  A shard down or restarted (not busy) does not stop
        it: it is routed, and its entries get that shard's error, as any
        step's (:meth:`_send_whole_steps`)."""
        self.step_produce = produce
        self.step_refused = refused

    def after_queued(self, then: Callable[[], None]) -> None:
        """Call ``then`` once every request queued so far has left (its
        entries queued on the links, or failed), at once if none waits: what
        ``then`` queues on a link follows those entries.  A SCRIPT KILL read
        while a cross-shard script read before it waits for its holds sends
        its ``__ping``s so (see shardlink.at_threshold): ahead of the
        script, they came back before it started, and the kill found
        nothing, where Redis, which read the script first, kills it."""
        if self.left >= self.queued:
            then()
        else:
            self.after_left.append((self.queued, then))

    def _left(self, request: Request) -> None:
        self.left = max(self.left, request.number, *(member.number for member in request.joined))
        waiting = self.after_left
        if waiting and waiting[0][0] <= self.left:
            due = [then for mark, then in waiting if mark <= self.left]
            self.after_left = [(mark, then) for mark, then in waiting if mark > self.left]
            for then in due:
                then()

    # -- this acceptor's operations in progress -----------------------------------

    def parking(self, op: Any, shards: list[int]) -> None:
        """``op`` (a :class:`~shardkv.acceptor.crossshard.AtomicOp` or
        ``FanOutWrite``) gives the step being captured its entries for
        ``shards``, where it parks until its decision (a fan-out's part
        that changes nothing does not park: it is counted all the same)."""
        self.step_ops.append((op, shards))

    def _mark(self, ops: list) -> None:
        """The step of ``ops`` leaves now: count each undecided on its
        shards until :meth:`decided` (one decided already, its entries
        having failed at once, is not counted)."""
        undecided = self.undecided
        for op, shards in ops:
            if op.decision is None:
                op.marked = shards
                for shard in shards:
                    undecided[shard] += 1

    def decided(self, op: Any) -> None:
        """``op`` is decided, its ``Decide`` frames queued: its shards run
        this acceptor's next frames once they have it.  A request that
        waited for that tries them now, its ``T`` frames behind the
        ``Decide`` on each pipe."""
        marked, op.marked = op.marked, []
        undecided = self.undecided
        for shard in marked:
            undecided[shard] -= 1
        request = self.deferred
        if request is not None and any(s in marked for s in request.shards):
            # Tried at the first decision on its shards, not when none is
            # undecided: single-shard steps keep counting operations there
            # without waiting behind it, and under a stream of them (WATCHed
            # EXECs on one shard) that count need never reach 0.  A try that
            # finds a shard parked still is refused and falls back to the holds.
            # At the end of this loop turn, not now: the other operations
            # decided in this turn (a batch's parts answered in one frame)
            # get their Decide frames ahead of the tries, which the shards,
            # parked once for all of them, would refuse otherwise.
            self.deferred = None
            self.server.loop.call_soon(self._try, request, False)  # type: ignore[union-attr]

    # -- holding --------------------------------------------------------------

    def _start_next(self) -> None:
        while self.current is None and self.queue:
            self.current = request = self.queue.popleft()
            if self.queue:
                self._join(request)
            self._try(request)

    def _join(self, request: Request) -> None:
        """Take the requests queued behind ``request`` along with it (up to
        :data:`JOIN_MAX` in all): it holds the union of their shards, and
        their entries follow its own in queue order, with one
        ``__release`` per shard behind them all.

        They were queued because they came while ``request`` waited (other
        clients' commands, while this acceptor's previous multi-shard step
        was out): each would have taken its own round of tries and its own
        round of entries, one after another.  Together they take one round
        of tries, and their write fan-outs' parts reach each shard back to
        back in one batch, where the worker prepares them together and
        parks once for all of their decisions, as with one acceptor
        (``Shard.gather_parts``).  The order is the queue's, which is the
        order they would have run in anyway, and all of it runs while every
        shard of the union reads only this acceptor: two-phase locking on
        more shards than each needs, so still serializable, and none of
        them has replied yet, so still strict.  Deadlock-free as before:
        the union is taken as one request's shards are."""
        queue = self.queue
        shards = set(request.shards)
        n = 1
        if request.produce is not None:  # (routed only once it holds: see deferring)
            return
        while queue and n < JOIN_MAX and queue[0].produce is None:
            other = queue.popleft()
            shards.update(other.shards)
            request.entries += other.entries
            request.ops += other.ops
            # (its entries stay named on it too: see _unsendable)
            other.ops = []
            request.joined.append(other)
            n += 1
        request.shards = sorted(shards)

    def _try(self, request: Request, wait: bool = True) -> None:
        """Try every shard of the step at once (a ``T`` frame each); but
        not while one of them may be parked for an operation of this
        acceptor's not decided yet: the worker would refuse the try (a
        parked shard grants none, see :mod:`shardkv.worker.loop`), and the
        fallback would take the holds one shard after another, a round
        trip each, every one of them answered only after that decision
        anyway.  So the request waits for the first of those decisions
        (:meth:`decided`), once (``wait`` False then), and its tries follow
        it on the pipes."""
        if wait:
            undecided = self.undecided
            for shard in request.shards:
                if undecided[shard]:
                    self.deferred = request
                    return
        links = self.links
        request.trying = len(request.shards)
        for shard in request.shards:
            links[shard].try_hold(_TryAnswer(self, request, shard))  # may answer at once

    def tried(self, request: Request, shard: int, granted: bool) -> None:
        """One shard answered its try.  Once all have: with every hold, send
        the step; else keep the holds below the lowest refusal, release the
        others, and take the rest in ascending order, waiting for each."""
        links = self.links
        if granted:
            request.held[shard] = links[shard].generation
        request.trying -= 1
        if request.trying:
            return
        shards = request.shards
        held = request.held
        first = 0
        while first < len(shards) and shards[first] in held:
            first += 1
        if first == len(shards) and faultpoints.ACTIVE:
            faultpoints.hold("tried")  # the fault-injection tests only
        for above in shards[first + 1 :]:
            generation = held.pop(above, None)
            link = links[above]
            if generation is not None and generation == link.generation:
                _send_release(link, _IGNORED)
        request.next = first
        self._acquire(request)

    def _acquire(self, request: Request) -> None:
        """Take the next hold, or, with all of them, send the step."""
        if request.next == len(request.shards):
            self._send(request)
            return
        shard = request.shards[request.next]
        request.next += 1
        _send(self.links[shard], _HEADER, _HOLD, _HoldAck(self, request, shard))

    def acknowledged(self, request: Request, shard: int, body: bytes) -> None:
        if body == _OK:
            request.held[shard] = self.links[shard].generation
        else:  # the worker is down or busy: its entries get this error
            request.failed[shard] = body
        self._acquire(request)

    def _send(self, request: Request) -> None:
        links = self.links
        unsendable = self._unsendable(request)
        if request.produce is not None:
            self._produce(request, unsendable)
        if not unsendable and not self.depth:
            self._take_along_all(request)
        self._mark(request.ops)  # before the entries: one that fails at once decides its operation
        request.ops = []
        if unsendable:
            self._send_whole_steps(request, unsendable)
        else:
            for link, header, command, sink in request.entries:
                _send(link, header, command, sink)
        request.entries = []
        self._left(request)
        self._release(request)
        for shard in request.shards:
            links[shard].step_done()
        for member in (request, *request.joined):
            client = member.client
            if client is not None and client.state.blocked_token == HOLDING:
                _free(client, self.server.loop)

    def _produce(self, request: Request, unsendable: dict[int, bytes]) -> None:
        """Route the command of ``request`` now that it holds its shards
        (see :meth:`deferring`), its entries captured behind the request's
        own; or, with a shard busy, refuse it unrouted.  Maybe from inside
        another step's capture (a try answered at once): that one's is put
        aside meanwhile."""
        produce, request.produce = request.produce, None
        assert produce is not None  # (only a deferred request's)
        error = _step_error(list(unsendable.values()))
        if error is not None and error[:6] == _BUSY:
            refused, request.refused = request.refused, None
            if refused is not None:
                refused(error)
            return
        outer = (self.depth, self.captured, self.step_ops, self.step_refused, self.step_produce)
        if self.depth:
            self._unshadow()
        self.depth = 0
        self.begin()
        try:
            produce()
        except Exception:
            # A bug costs its client alone, as when a command is routed as
            # it is read (Client.data_received): what it routed goes, and
            # the request goes on to its releases.  Raised from here it
            # left the shards held for ever (out of a __hold's answer), or
            # took the acceptor down (out of a try's, the pipe's reader).
            client_failed(request.client, "running its transaction")
        finally:
            self._unshadow()
            captured, ops = self.captured, self.step_ops
            self.depth, self.captured, self.step_ops, self.step_refused, self.step_produce = outer
            if self.depth:
                self._shadow()
        request.entries += captured  # type: ignore[arg-type]
        request.ops += ops

    def _unsendable(self, request: Request) -> dict[int, bytes]:
        """The shards of ``request`` that cannot take its entries now, with
        the error each would answer them: its hold failed (the worker is
        down, or a script there is past busy-reply-threshold), its worker
        was restarted since it granted it, or its link is busy or down now
        (a script of this acceptor's went busy there under the hold)."""
        links = self.links
        failed = request.failed
        out: dict[int, bytes] = {}
        for shard in request.shards:
            link = links[shard]
            generation = request.held.get(shard)
            if generation is not None and generation == link.generation and link.up and not link.busy:
                continue
            error = failed.get(shard) or link.busy or encode_error(errors.SHARD_UNAVAILABLE)
            out[shard] = error
        return out

    def _send_whole_steps(self, request: Request, unsendable: dict[int, bytes]) -> None:
        """Send the entries of ``request`` where some of its shards cannot
        take theirs (``unsendable``): each client's step (the request's own,
        and each one joined to it) goes whole, or not at all.  A step with
        an entry for such a shard sends none: every entry gets the error
        (the step's ``-BUSY`` if one of them is busy, see :func:`_step_error`;
        else its own shard's, or the first such shard's of its step), as Redis
        refuses a command it reads at busy-reply-threshold before any of it
        runs; but an entry whose sink ``arrives`` (an ``__unwatch``) goes
        all the same, as the acceptor's own message (behind a busy script,
        never refused).  Sent where it could, an EXEC routed command by command ran
        its reads on the held shards and answered ``-BUSY`` inside its array
        for the busy one (a torn transaction), and a write across shards
        prepared its free parts before it was undone."""
        entries = request.entries
        member_of: dict[int, Request] = {}
        for member in request.joined:
            for entry in member.entries:
                member_of[id(entry)] = member
            member.entries = []
        steps: dict[int, tuple[Request, list]] = {}
        for entry in entries:
            member = member_of.get(id(entry), request)
            steps.setdefault(id(member), (member, []))[1].append(entry)
        for member, own in steps.values():
            error = _step_error([unsendable[e[0].index] for e in own if e[0].index in unsendable])
            if error is None:
                for link, header, command, sink in own:
                    _send(link, header, command, sink)
                continue
            refused, member.refused = member.refused, None
            if refused is not None:
                refused(error)
            for link, header, command, sink in own:
                if getattr(sink, "arrives", False):  # (an __unwatch: the shard must hear it)
                    type(link).send(link, header, command, sink, control=True)
                else:
                    sink.deliver(error if error[:6] == _BUSY else unsendable.get(link.index, error))

    # -- a busy script ----------------------------------------------------------

    def refuse_reads(self, busy: bytes) -> None:
        """A script went past busy-reply-threshold (its worker's first busy
        report on a pipe of this acceptor's): each client's read across
        shards whose step has not left (it waits for its tries, its holds,
        an operation's decision or its turn) gets ``busy`` now, a rejected
        call and the error, counted once (``Gather.refuse_busy``), as Redis
        reads it at the threshold and answers it; its entries never leave,
        and its client's later commands go on.  Its step had run after the
        script, a call, where its hold waited for a shard parked for the
        script's operation (a parked shard reads only the operation's
        pipe), or for this acceptor's operation to be decided.  Whatever
        else its request holds still goes, in order; so does the request,
        maybe empty (its holds are taken and released: its place in the
        queue is kept, see :meth:`after_queued`)."""
        current = self.current
        loop = self.server.loop
        for request in ([current] if current is not None else []) + list(self.queue):
            for member in (request, *request.joined):
                read = member.read
                if read is None or member.number <= self.left or not read.refuse_busy(busy):
                    continue
                member.read = None
                request.entries = [e for e in request.entries if getattr(e[3], "gather", None) is not read]
                gate, member.gate = member.gate, None
                if gate is not None:
                    gate.data = b""
                client, member.client = member.client, None
                _free(client, loop)

    def refuse_parks(self, busy: bytes) -> None:
        """:meth:`refuse_reads`, for a client's step that is the park of a
        cross-shard script's first run, of its single command across shards
        (RENAME...), or the parts of its write across shards (MSET...):
        Redis reads that EVAL (RENAME, MSET) at the threshold and answers it
        ``-BUSY``, a rejected call; so its operation gets ``busy`` from each
        of its shards, its entries never leave, and its client's later
        commands go on.  Had its step waited for holds of shards parked for
        the busy script's operation (another acceptor's, or this one's), it
        ran after the script, and a looping script looped past the
        threshold again: one SCRIPT KILL each."""
        current = self.current
        loop = self.server.loop
        for request in ([current] if current is not None else []) + list(self.queue):
            for member in (request, *request.joined):
                sink = member.refusable
                if sink is None or member.number <= self.left or not sink.refusable_while_busy:
                    continue
                member.refusable = None
                op = sink.op
                refused = [e for e in request.entries if getattr(e[3], "op", None) is op]
                request.entries = [e for e in request.entries if getattr(e[3], "op", None) is not op]
                request.ops = [(o, shards) for o, shards in request.ops if o is not op]
                gate, member.gate = member.gate, None
                if gate is not None:
                    gate.data = b""
                client, member.client = member.client, None
                for entry in refused:
                    entry[3].deliver(busy)
                _free(client, loop)

    # -- a pipelining client's next commands ride along ------------------------------

    def _take_along_all(self, request: Request) -> None:
        """``request`` holds its shards now: its clients' next commands
        that wait (``HOLDING``) join it, as far as each is a command whose
        whole effect is its entries on shards it holds (:func:`_joinable`):
        they run now, their entries are captured and follow the request's
        own, under the same holds, before its ``__release``.

        A client that pipelines cross-shard writes (``redis-benchmark -P 16
        -t mset``) sent its next commands while its first one waited for its
        tries; one by one, each would take a round of tries (behind the
        decision of the one before it, see :meth:`decided`), a round of
        parts and a decision of its own.  Together the parts reach each
        shard back to back in one batch, where the worker prepares them
        together and parks once for all of their decisions, as with one
        acceptor (``Shard.gather_parts``).

        Nothing changes order.  Each client's commands run in its order
        (a prefix of what it holds, the rest still waits), after the
        request's entries on every pipe, so they see its writes, as they
        would have had they run once it was out, which is when they would
        have run.  They run while every shard they touch reads only this
        acceptor and before any of the request's members has replied:
        strict two-phase locking on those shards, as for the request
        itself; no new hold is taken, so the deadlock argument is as before.
        Each write keeps its own operation, decision and undo, so a dead
        worker or acceptor leaves what it leaves for the request alone.
        What runs now is only what would have gone out to the shards: no
        local command (PUBLISH, CLIENT KILL...), nothing blocking, no parked
        cross-shard operation, nothing for a client that is not plain
        (MULTI, MONITOR, tracking, ACL, CLIENT PAUSE...)."""
        links = self.links
        shards = {s for s, generation in request.held.items() if links[s].generation == generation}
        clients = []
        for member in (request, *request.joined):
            client = member.client
            if (
                client is not None
                and client.state.held
                and client.state.blocked_token == HOLDING
                and not client.closing
                and not client.closed
                and client.deferred_error is None
            ):
                clients.append(client)
        if not clients:
            return
        self.begin()
        try:
            for client in clients:
                self._take_along(client, shards)
        finally:
            self.depth -= 1
            self._unshadow()
            captured, self.captured = self.captured, None
            ops, self.step_ops = self.step_ops, []
        request.entries += captured  # type: ignore[arg-type]
        request.ops += ops

    def _take_along(self, client: Client, shards: set[int]) -> None:
        """Run ``client``'s first held commands that may join a request
        holding ``shards`` (at most :data:`TAKE_ALONG_MAX`), in order."""
        state = client.state
        shard_of = self.server.shard_of
        n = 0
        # Not while a cross-shard BLMOVE or XREAD waits: a write of its key
        # would make it try at once, from inside the request (try_at_once).
        while state.held and n < TAKE_ALONG_MAX and client._plain() and not EAGER:
            args, raw = state.held[0]
            if not _joinable(args, shards, shard_of):
                return
            command = state.take_held_first()
            state.unblock(HOLDING)
            try:
                client._run([command])
            except Exception:  # a bug costs this client alone, as in Client.data_received
                client.failed("running its commands")
                return
            if state.blocked_token or client.closing or client.closed:
                return  # not one of those commands, but its own wait: it ends it
            state.block(HOLDING, shown=False)
            n += 1

    def _release(self, request: Request) -> None:
        links = self.links
        releasing = [links[s] for s, g in request.held.items() if links[s].generation == g]
        request.held = {}
        request.releasing = len(releasing)
        ack = _ReleaseAck(request)
        for link in releasing:
            _send_release(link, ack)
        if not releasing:
            _open(request)
        if self.current is request:
            self.current = None
            self._start_next()


def _joinable(args: list[bytes], shards: set[int], shard_of: Callable[[bytes], int]) -> bool:
    """Whether the command ``args`` may join a request that holds
    ``shards`` (:meth:`Holds._take_along_all`): its whole effect is its
    entries to shards among those, and none is a parked cross-shard
    operation: a single-key command, or MGET, MSET, DEL, EXISTS, UNLINK,
    TOUCH (their parts, a write's atomic fan-out), or a command whose keys
    share one of those shards.  Not a local command, nor a blocking one,
    nor SORT with patterns, nor a container; a wrong arity waits too (its
    error is no one else's business, but it is rare)."""
    cmd = commands.lookup(args[0])
    if cmd is None or cmd.route != "shard" or cmd.container or cmd.pattern_keys is not None:
        return False
    if "blocking" in cmd.flags:
        return False
    arity = cmd.arity
    if (len(args) != arity) if arity > 0 else (len(args) < -arity):
        return False
    if cmd.single_key:
        return shard_of(args[1]) in shards
    keys = cmd.keys(args)
    if not keys:
        return False
    touched = {shard_of(key) for key in keys}
    return touched <= shards and (len(touched) == 1 or cmd.policy != "-")


class HoldingClient(Client):
    """A client of an acceptor that is one of several: each of its commands
    that goes through dispatch is a step (see the module docstring)."""

    def execute(self, args: list[bytes], raw: bytes | None) -> None:
        holds = self.server.holds
        before = len(self.pending)
        holds.begin()  # type: ignore[union-attr]
        try:
            Client.execute(self, args, raw)
        finally:
            holds.end(self, min(before, len(self.pending)))  # type: ignore[union-attr]
