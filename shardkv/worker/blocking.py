"""Blocking commands, the worker's side: waiters, ready keys, timeouts.

BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP (here, with the lists) and
BZPOPMIN, BZPOPMAX, BZMPOP (with the sorted sets) wait for data without
holding up their worker or the acceptor.  The acceptor's side is
:mod:`shardkv.acceptor.blocking`; the frames are in :mod:`shardkv.protocol.wire`.

How one blocking command runs
-----------------------------
1. The acceptor sends it with a *token* in its entry header
   (``wire.entry_header(flags, token)``).  :meth:`Waiters.run` calls the
   command's *blocking form* (its module's ``BLOCKING`` entry, see
   :class:`~shardkv.worker.handlers.Blocking`).  It either
   returns a reply, at once, like its non-blocking cousin, or a
   :class:`Wait`.  Then nothing has changed yet: the entry's reply body is
   empty and a :class:`Waiter` is remembered under the token.
2. After each write command the worker runs, after each script (the
   writes it called, :meth:`Waiters.mark_writes`) and after each
   cross-shard operation, the keys it wrote that someone waits on become
   *ready* (:meth:`Waiters.mark`).  Right after that command (and at the
   end of the batch) each ready
   key serves its waiters in the order they blocked, as Redis's
   ``handleClientsBlockedOnKeys``: a waiter's ``serve`` function is called
   with that key; it pops and returns the reply, or returns None when the
   key cannot serve it (no value of the wanted type).  A waiter that is
   served is forgotten, and its own writes (BLMOVE's destination) make
   their keys ready in turn.  Redis serves after each command, or after
   EXEC; here a transaction's commands routed one by one arrive back to
   back in one batch (see :mod:`shardkv.acceptor.transactions`) between
   ``__defer`` and ``__serve``, which serves nobody in between
   (:attr:`Waiters.deferred`), so no waiter sees half a transaction.
3. A served waiter's reply leaves as a ``W`` frame (:func:`wire.encode_wake`),
   after the ``R`` frame of the batch that registered it, in the client's
   protocol.
4. A waiter whose deadline passes gets ``Wait.expired`` (a null array) in a
   ``W`` frame; the serve loop wakes up for the earliest deadline.
5. ``X<token>`` forgets a waiter: its client went away.
6. ``__unblock <token>`` (CLIENT UNBLOCK, an entry of a batch) first serves
   the keys the commands before it made ready, as Redis serves a blocked
   client right after the command that wrote its key, then forgets the
   waiter and answers 1 if it still waits, or answers 0: it was served or
   timed out, and its ``W`` frame carries that reply.  So an element popped
   for a waiter is always delivered, and the acceptor answers CLIENT
   UNBLOCK in the shard's order (see :func:`unblock`).
   Inside EXEC it serves nothing first, as Redis serves only after the
   whole EXEC: the transaction's commands come in the same batch, and a
   ``__serve`` before them serves what came before the EXEC; behind an
   atomic EXEC's ``__park`` it runs only if that operation committed.  An
   EXEC on another acceptor may unblock this pipe's waiter so: the null or
   ``-UNBLOCKED`` then goes to the waiter's pipe as a ``W`` frame.

With several acceptors (``--acceptors``), each pipe is one acceptor's and
tokens are that acceptor's own: a waiter is known by (pipe, token), an
``X`` frame cancels the token of the pipe it came on, and a wake goes to
the pipe its command came from.  The queue of each key is still one FIFO
across pipes: a client blocked through acceptor A is served by a push
that came through B, in the order the clients blocked.  That order is the
entries' *stamps* (``wire.FLAG_STAMP``: when each acceptor ran the
command, on the machine's one monotonic clock), not the order their frames
reached this worker: two clients that send a blocking command one after
the other through two acceptors may have their frames read the other way
round, and the first still comes first (Redis's test "BRPOPLPUSH with
multiple blocked clients" sends two so, then a push).

So an element is popped only to be sent to a waiting client, and a client
waits on one worker only: a popped element is delivered once or stays.

When a command must not block
-----------------------------
The command's ordinary handler is its blocking form made to reply
``Wait.deny`` instead of waiting (:func:`now_or_never`, bound by
:mod:`shardkv.worker.wiring`) (null, as Redis replies to a
blocking command in MULTI or a script).  That is what runs a blocking
command without a token: inside MULTI/EXEC, in a cross-shard operation
(:meth:`Shard.run_foreign`), or the acceptor's retries of a command whose
keys span shards.

Waiting on keys of several shards: ``__bwait``
---------------------------------------------
A worker can only wait on its own keys.  For ``BLPOP a b 0`` with ``a`` and
``b`` on different shards, the acceptor first runs the command atomically
across the shards (it cannot block there); if that finds nothing, it sends
each shard ``__bwait <command> <timeout> <elapsed-ms> <count> key...`` with
a token.  That waiter pops nothing: it answers when one of its keys holds
a value of the type the command pops (a *notification*, which names that
key: the acceptor's try reads it alone), or 0 when the timeout passes.
On the first notification the acceptor cancels the others and runs the
command atomically again, on that key; see :mod:`shardkv.acceptor.blocking`.  A
notification *claims* ``count`` elements of its key (the most the command
pops) until ``__bdone <token>``, which comes right behind that try (or
instead of the cancel): the waiters behind it see those elements as taken
until then, and the key serves them again after it, so an element the try
left (its BLMOVE's destination of another type, say) goes to the next
waiter, as in Redis (:meth:`Waiters.serve_ready`).  A key made ready by a
cross-shard operation's commit is notified as ``[notification, key, op,
rank]``: its rank among the keys that operation made hold a value a
blocked command pops (:func:`note_ready`, on the executor), so that the
acceptor serves its client from the first of them, as Redis does.

Popping for a client across shards: ``__bpop``
---------------------------------------------
BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, BLMPOP and BZMPOP across shards wait
with ``__bpop`` instead (the same answers as a ``__bwait``, plus the
client's command on one key): a key a plain write made ready serves it in
its turn by popping for it, as Redis serves a blocked client when the push
ends, and notifies ``[BWAIT_SERVED, key, reply]`` (:meth:`Waiters.pop_for`);
and waits *in place* for its acceptor's verdict (a ``V`` frame): taken,
the pop is logged and the token woken again with ``:1``; not taken, none
within its bound, or the pipe lost, what it popped goes back to the key's
head unseen (:meth:`Waiters._give_back`), and the key serves its next
waiter.  Nothing runs on the shard meanwhile, so what a shard pops for a
client across shards is delivered once or is back before any other
command sees the key.  A shard not free to wait (parked), or a key a
cross-shard operation made ready, notifies a ``__bpop`` as a ``__bwait``
(with its rank), and so does a key that can serve it as it comes.

Writing a blocking command (a sorted-set example)::

    def bzpopmin(ks: Keyspace, args: list[bytes]) -> object:
        \"\"\"BZPOPMIN key [key ...] timeout\"\"\"
        timeout = parse_timeout(args[-1])  # its errors come first, as in Redis
        for key in args[1:-1]:
            zset = ks.lookup_type(key, ZSet)  # WRONGTYPE as in Redis
            if zset:
                return pop_one(ks, key, zset, args[0])
        return Wait(args[1:-1], timeout, serve_bzpop)  # deny/expired: null array

    def serve_bzpop(ks: Keyspace, args: list[bytes], key: bytes) -> object:
        zset = ks.lookup(key)
        if type(zset) is not ZSet:
            return None  # not for us (yet): keep waiting
        return pop_one(ks, key, zset, args[0])

    BLOCKING: BlockingForms = {
        "bzpopmin": Blocking(bzpopmin, ZSet),
        "bzpopmax": Blocking(bzpopmin, ZSet),
    }

``kind`` is the value type the command pops; ``__bwait`` uses it.  The
acceptor needs to know where the timeout is (the last argument, or the
first for ``*mpop``) and which keys to wait on (all, or only the source for
BLMOVE): see ``TIMEOUT_FIRST`` and ``SOURCE_ONLY`` in :mod:`shardkv.acceptor.blocking`.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from operator import attrgetter
from time import perf_counter_ns

from shardkv.protocol import commands, errors, wire
from shardkv.protocol.args import LLONG_MAX, parse_long_double, round_long_double, strict_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import NULL_ARRAY, OK, Error, encode
from shardkv.protocol.wire import Verb
from shardkv.runtime import faultpoints
from shardkv.runtime.cmdstats import stat_name
from shardkv.worker import access, events
from shardkv.worker.handlers import (
    KINDS,
    READY,
    Blocking,
    BlockingForms,
    Handler,
    Handlers,
    find,
    find_blocking,
)
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.stream import Stream, added_now, format_id
from shardkv.worker.zset import ZSet

log = logging.getLogger("shardkv.worker")


# A key served this waiter: (keyspace, the waiter's command, the key) -> reply, or None.
Serve = Callable[[Keyspace, list, bytes], object]


def parse_timeout(arg: bytes) -> int:
    """A blocking command's timeout in seconds -> milliseconds, 0 for ever.

    As Redis 7.0's ``getTimeoutFromObjectOrReply``: the text is read as a
    long double (``strtold``), times 1000, rounded up; a value the C cast to
    ``long long`` cannot hold (infinity, 1e16 seconds) comes out negative.
    """
    seconds = strict_int(arg)
    if seconds is not None:
        ms = seconds * 1000
    else:
        value = parse_long_double(arg)
        if value is None:
            raise CommandError(errors.TIMEOUT_NOT_FLOAT)
        if type(value) is float:  # infinity
            raise CommandError(errors.TIMEOUT_NEGATIVE)
        scaled = round_long_double(value * 1000)  # type: ignore[arg-type]  # a Fraction here
        if scaled is None:
            raise CommandError(errors.TIMEOUT_NEGATIVE)
        ms = math.ceil(scaled)
    if ms < 0 or ms > LLONG_MAX:
        raise CommandError(errors.TIMEOUT_NEGATIVE)
    return ms


class Wait:
    """What a blocking form returns when nothing can serve it now.

    ``keys``: the keys to wait on; ``timeout``: milliseconds, 0 for ever;
    ``serve``: see the module docstring; ``deny``: the reply when the
    command may not block; ``expired``: the reply when the timeout passes;
    ``missing``: serve is called for a ready key that no longer exists too
    (a blocked XREADGROUP fails when its stream is deleted); ``claims``: a
    ``__bwait`` that pops nothing but counts as taking that many elements
    (its BLMPOP's COUNT, else 1; 0: not such a waiter; see
    :meth:`Waiters.serve_ready`); ``pops``: a ``__bpop``'s command on one
    key and that key's place in it: it pops for its client in its turn
    (:meth:`Waiters.pop_for`), and claims only when a cross-shard
    operation made its key ready.
    """

    __slots__ = ("keys", "timeout", "serve", "deny", "expired", "missing", "claims", "pops")

    def __init__(
        self,
        keys: list[bytes],
        timeout: int,
        serve: Serve,
        deny: object = NULL_ARRAY,
        expired: object = NULL_ARRAY,
        missing: bool = False,
        claims: int = 0,
        pops: tuple[list[bytes], int] | None = None,
    ) -> None:
        self.keys = keys
        self.timeout = timeout
        self.serve = serve
        self.deny = deny
        self.expired = expired
        self.missing = missing
        self.claims = claims
        # A __bpop's: its client's command on one key, and where that key
        # goes in it (see Waiters.pop_for).
        self.pops = pops


class Waiter:
    """One blocked command: who waits, for what, until when."""

    __slots__ = (
        "token",
        "args",
        "wait",
        "resp3",
        "deadline",
        "db",
        "pipe",
        "stamp",
        "ns",
        "no_touch",
        "behind",
    )

    def __init__(
        self,
        token: int,
        args: list[bytes],
        wait: Wait,
        resp3: int,
        deadline: float,
        db: int = 0,
        pipe: int = 0,
        stamp: int = 0,
        ns: int = 0,
        no_touch: bool = False,
    ) -> None:
        self.ns = ns  # how long its run took, before it blocked (Redis's c->duration)
        # Its client has commands pipelined behind it (an ``H`` frame from
        # its acceptor, several acceptors only): see Waiters.behind_served.
        self.behind = False
        # Its client's CLIENT NO-TOUCH (wire.FLAG_NOTOUCH), which its
        # serving keeps, whoever's entry serves it (access.serving).
        self.no_touch = no_touch
        self.db = db  # the database of its keys
        self.pipe = pipe  # the acceptor pipe it came on, where its reply goes
        # When its acceptor ran the command (time.monotonic_ns()): its place
        # in each key's queue (see Waiters.run).
        self.stamp = stamp
        self.token = token
        self.args = args
        self.wait = wait
        self.resp3 = resp3
        self.deadline = deadline  # time.monotonic() seconds; inf for ever


_STAMP = attrgetter("stamp")

# The types of the values blocked commands wait for.
_POPPED = (deque, ZSet, Stream)

# Writes that remove keys without naming them.
FLUSHES = frozenset({"flushall", "flushdb", "swapdb"})

# Writes of a key of another database (commands.other_db_keys).
TO_OTHER_DB = frozenset({"move", "copy"})


class Waiters:
    """The blocked commands of one shard.

    ``record`` logs a command that ran (the AOF): a waiter that is served
    is logged then, as Redis propagates a served BLPOP as an LPOP.
    """

    def __init__(self, ks: Keyspace, record: Callable[[list, object], None] | None = None) -> None:
        self.ks = ks
        ks.waiters = self  # SWAPDB wakes waiters
        self.record = record
        # FIFO per (database, key); empty means nobody waits.
        self.by_key: dict[tuple[int, bytes], list[Waiter]] = {}
        self.by_token: dict[tuple[int, int], Waiter] = {}  # by (pipe, token)
        self.timeouts: list[tuple[float, int, int]] = []  # heap of (deadline, pipe, token)
        self.ready: dict[tuple[int, bytes], None] = {}  # (db, key)s to serve, in the order they became ready
        # The waited-on streams a write signaled ready beyond its entries
        # (XGROUP DESTROY, RENAME, COPY: see signal) since the ready keys
        # were last served.
        self.signaled: set[tuple[int, bytes]] = set()
        # Those a cross-shard operation running here signaled, waited on
        # here or not (see signaled_at_end).
        self.signaled_run: set[tuple[int, bytes]] = set()
        # (pipe, W frame) to send after the current R frame
        self.wakes: list[tuple[int, bytes]] = []
        # Those of ``wakes`` that answer a waiter a write served here: with
        # several acceptors each waits for the O frames of the events noted
        # before it (see Shard.send_wakes).
        self.served: list[tuple[int, bytes]] = []
        # The pipes of the waiters a write served here whose clients have
        # commands pipelined behind them (wire.BEHIND): with several
        # acceptors the batch's replies wait until those acceptors have run
        # them (see Pipes._handle), as Redis runs a served client's buffered
        # commands (processUnblockedClients) before it writes any reply.
        self.behind_served: set[int] = set()
        # CLIENT UNBLOCK while a script is busy: Redis answers -BUSY (the
        # command has no allow-busy flag), at busy-reply-threshold, to one
        # that waited behind the script.  The scripts that went busy so far,
        # and the number (``seq``) of the last ``__unblock`` run from each
        # pipe: the busy report (wire.encode_script_state) carries both, so
        # the acceptor answers -BUSY to those sent but not run yet, and
        # this shard refuses them when it gets to them (their ``seen`` is
        # behind).
        # An acceptor that comes back counts from 0: ``busy_base`` holds
        # the count when its pipe was lost.
        self.busy_scripts = 0
        self.busy_base: dict[int, int] = {}
        self.unblocks_run: dict[int, int] = {}
        # The last operation this shard was parked for, if it committed
        # (else 0): an EXEC's ``__unblock`` after its ``__park`` runs only then.
        self.committed = 0
        # The claims of notified __bwaits whose tries have not run yet (see
        # serve_ready): by (pipe, token), (key, elements, notification);
        # and the elements claimed per key.
        self.claims: dict[tuple[int, int], tuple[tuple[int, bytes], int, int, tuple]] = {}
        self.claimed: dict[tuple[int, bytes], int] = {}
        # The __bwait waiters of those claims, by (pipe, token): an eager
        # try's __bdone makes one wait on in its place (see claim).
        self.claimants: dict[tuple[int, int], Waiter] = {}
        # The ``__bsettle``s waiting for the claims on a key to end, by
        # key: (pipe, token) each (see bsettle).
        # (pipe, token, stamp): those of a try wait only for the claims of
        # the waiters that blocked before its own (stamp); else 0, for all.
        self.settles: dict[tuple[int, bytes], list[tuple[int, int, int]]] = {}
        # The keyless ``__bsettle``s: (pipe, token, the claims, by (pipe,
        # token), that were left when it came), until those have all ended.
        self.settles_all: list[tuple[int, int, set[tuple[int, int]]]] = []
        # By pipe: the claims left when the first script of that pipe that
        # wrote since its last keyless ``__bsettle`` ended, less those on
        # keys its scripts wrote: that __bsettle waits for the others
        # alone, those its scripts' writes made (see script_wrote).
        self.settle_from: dict[int, set[tuple[int, int]]] = {}
        # What a __bpop popped for its client, by (pipe, token): (key,
        # the command that popped, its reply, its count), while the shard
        # waits in place for the verdict (see pop_for).
        self.held: dict[tuple[int, int], tuple[tuple[int, bytes], list[bytes], object, int]] = {}
        # Set by the shard: whether it may pop for a __bpop of that pipe now
        # (free: not parked, a pipe to wait on, whose acceptor answered its
        # last verdict in time), the wait for a verdict (sending the wakes
        # first: True taken, False or None not), and the send of the wakes
        # so far.  Unset, or not free, a __bpop is notified as a __bwait.
        self.free: Callable[[int], bool] | None = None
        self.verdict: Callable[[int, int], bool | None] | None = None
        self.send_wakes: Callable[[], None] | None = None
        # The ready keys a cross-shard operation made ready: (its id, the
        # key's rank in it), which their __bwaits' notifications carry (see
        # mark_keys), until they serve.
        self.ranks: dict[tuple[int, bytes], tuple[int, int]] = {}
        # A transaction's commands run (``__defer`` .. ``__serve``): serve
        # nobody between them, as Redis serves after EXEC.
        self.deferred = False

    def unblock_counts(self) -> tuple[int, dict[int, int], dict[int, int]]:
        """For the busy report: the busy scripts, each pipe's base, and the
        last ``__unblock`` run from each pipe (see :meth:`unblock`)."""
        return self.busy_scripts, dict(self.busy_base), dict(self.unblocks_run)

    # -- blocking -------------------------------------------------------------

    def run(self, execute: Callable, token: int, resp3: int, args: list[bytes], stamp: int = 0) -> bytes:
        """A command sent with ``token``: its reply body, or b"" when it waits.

        ``stamp``: when its acceptor ran it (``time.monotonic_ns()``, see
        ``wire.FLAG_STAMP``; 0: now).  Each key's queue is kept in the
        order of the stamps, which is the order the clients blocked in,
        as Redis's queue of a key is (``blockForKeys`` appends, the
        serving takes from the head): with several acceptors, a command
        that blocked through acceptor A before another through B may reach
        this shard after it, and still comes first.  One acceptor's stamps
        grow in its pipe's order, so with one acceptor, or when the frames
        come in the order their commands ran, a waiter is appended."""
        handler = find_blocking(args[0])
        start = perf_counter_ns()
        value = execute(args, handler)
        if type(value) is not Wait:
            if type(value) is Settle:
                if value.key is None:
                    self.settles_all.append((self.ks.pipe, token, value.claims))  # type: ignore[arg-type]
                else:
                    self.settles.setdefault(value.key, []).append((self.ks.pipe, token, value.before))
                return b""
            return encode(value, resp3)
        ns = perf_counter_ns() - start
        stats = self.ks.stats
        if stats is not None and args[0][0] != 95:  # (not a __bwait: internal verbs never show)
            stats.blocked(stat_name(args), ns)  # a call now, as Redis's call() counts it
        wait: Wait = value
        deadline = time.monotonic() + wait.timeout / 1000 if wait.timeout else math.inf
        db = self.ks.db
        pipe = self.ks.pipe
        waiter = Waiter(
            token, args, wait, resp3, deadline, db, pipe, stamp or time.monotonic_ns(), ns, self.ks.no_touch
        )
        self.cancel(token, pipe)  # a token is never reused; this is only a safeguard
        self._register(waiter)
        return b""

    def _register(self, waiter: Waiter) -> None:
        """``waiter`` waits, in its place (its stamp) in each key's queue."""
        pipe = waiter.pipe
        self.by_token[pipe, waiter.token] = waiter
        by_key = self.by_key
        db = waiter.db
        for k in dict.fromkeys(waiter.wait.keys):
            key = (db, k)
            queue = by_key.get(key)
            if queue is None:
                by_key[key] = [waiter]
            elif queue[-1].stamp <= waiter.stamp:
                queue.append(waiter)
            else:  # it blocked before some that reached the shard first
                bisect.insort_right(queue, waiter, key=_STAMP)
        if waiter.wait.timeout:
            heapq.heappush(self.timeouts, (waiter.deadline, pipe, waiter.token))

    def mark_behind(self, token: int, pipe: int) -> None:
        """An ``H`` frame: the client of the waiter of ``token`` from
        ``pipe`` has commands pipelined behind it (nothing if it no longer
        waits: served before the frame came, its commands then run after
        the push's reply, as in Redis when they are read after the push)."""
        waiter = self.by_token.get((pipe, token))
        if waiter is not None:
            waiter.behind = True

    def cancel(self, token: int, pipe: int = 0) -> None:
        """Forget the waiter of ``token`` from ``pipe``, if it still waits."""
        waiter = self.by_token.get((pipe, token))
        if waiter is not None:
            self._forget(waiter)

    def unblock(
        self,
        token: int,
        pipe: int = 0,
        seen: int = 0,
        seq: int = 0,
        after: int = -1,
        waits: tuple | None = None,
    ) -> int:
        """``__unblock``: 1 if the waiter of ``token`` from ``pipe`` still
        waited (now forgotten), else 0; -1 (nothing done) when a script went
        busy after the acceptor sent it (``seen``, the busy scripts it knew
        of, is behind): the acceptor has answered that CLIENT UNBLOCK
        ``-BUSY`` already (see :attr:`unblocks_run`).

        ``after`` -1 (outside EXEC): the ready keys serve first, as Redis
        serves a blocked client right after the write before the CLIENT
        UNBLOCK.  Inside EXEC, Redis serves only after the whole
        transaction, so nothing is served first: 0, the transaction's
        commands around it came in this batch (served at its end); an
        operation's id, it came right behind that operation's ``__park``
        and runs only if the operation committed (else -2, nothing done: a
        WATCHed key changed).

        ``waits``, inside EXEC: ``(pipe, error)``, the waiter is another
        acceptor's (its pipe): the wake (null, or ``-UNBLOCKED`` when
        ``error``) goes to it from here, as a timeout's would."""
        self.unblocks_run[pipe] = seq
        if seen < self.busy_scripts - self.busy_base.get(pipe, 0):
            return -1
        if after > 0 and self.committed != after:
            return -2
        if after < 0 and self.ready:
            self.serve_ready()  # a write before the CLIENT UNBLOCK serves first
        if waits is None:
            waiter = self.by_token.get((pipe, token))
            if waiter is None:
                return 0
            self._forget(waiter)
            self._count_unblocked(waiter, False)  # (its acceptor answers, and counts an error)
            return 1
        there, error = waits
        waiter = self.by_token.get((there, token))
        if waiter is None:
            return 0
        self._forget(waiter)
        self._count_unblocked(waiter, error)  # (error: the -UNBLOCKED below)
        value = Error(errors.UNBLOCKED) if error else NULL_ARRAY  # as the acceptor answers its own
        self.wakes.append((there, wire.encode_wake(token, encode(value, waiter.resp3))))
        return 1

    def _count_unblocked(self, waiter: Waiter, error: bool) -> None:
        """CLIENT UNBLOCK unblocked ``waiter`` (``error``: with ERROR, and
        answered here), counted as Stats.unblocked_by_client says; not a
        ``__bwait`` (internal verbs never show)."""
        stats = self.ks.stats
        if stats is not None:
            args = waiter.args
            stats.unblocked_by_client(None if args[0][0] == 95 else args, waiter.ns, error)

    def clear(self, pipe: int | None = None) -> None:
        """Forget every waiter of ``pipe`` (None: of every pipe): the
        acceptor that sent them is gone, and its clients with it.

        Its clients' claims go too, and a key one claimed that others
        still wait on becomes ready: the elements counted for a client
        whose try will never run are left to the waiters behind it, as
        Redis serves the next client once one has gone.  The caller serves
        the ready keys (:meth:`Shard.serve_left
        <shardkv.worker.shard.Shard.serve_left>`)."""
        if pipe is None:
            self.busy_scripts = 0
            self.busy_base.clear()
            self.unblocks_run.clear()
        else:
            self.busy_base[pipe] = self.busy_scripts
            self.unblocks_run.pop(pipe, None)
        for key, settles in list(self.settles.items()):
            settles[:] = [settle for settle in settles if pipe is not None and settle[0] != pipe]
            if not settles:
                del self.settles[key]
        self.settles_all[:] = [s for s in self.settles_all if pipe is not None and s[0] != pipe]
        if pipe is None:
            self.settle_from.clear()
        else:
            self.settle_from.pop(pipe, None)
        freed = []  # the keys of the claims dropped
        for claim in [c for c in self.claims if pipe is None or c[0] == pipe]:
            freed.append(self.claims[claim][0])
            self._unclaim(claim)
        if pipe is None or all(p == pipe for p, _ in self.by_token):
            self.by_key.clear()
            self.by_token.clear()
            self.timeouts.clear()
            self.ready.clear()
            self.ranks.clear()  # (those of the ready keys: see mark_keys)
            # The other pipes' wakes stay: the __bsettles the claims
            # dropped above have ended (see _unclaim).
            self.wakes = [(p, frame) for p, frame in self.wakes if pipe is not None and p != pipe]
            self.served = [wake for wake in self.served if pipe is not None and wake[0] != pipe]
            self.behind_served = {p for p in self.behind_served if pipe is not None and p != pipe}
            return
        for waiter in [w for (p, _), w in self.by_token.items() if p == pipe]:
            self._forget(waiter)
        self.wakes = [(p, frame) for p, frame in self.wakes if p != pipe]
        self.served = [wake for wake in self.served if wake[0] != pipe]
        self.behind_served.discard(pipe)
        for key in freed:
            if key in self.by_key:
                self.ready[key] = None

    def claim(self, token: int, pipe: int, done: bool, keep: bool = False, new_token: int = 0) -> object:
        """``__bclaim``/``__bdone``: the notification of the claim of the
        ``__bwait`` of ``token`` from ``pipe``, as its wake names it
        (``[notification, key]``), 0 if it has none (forgotten now if it
        still waits, unless ``keep``); ``done``: the claim ends (its try has
        run), and its key serves its waiters again, at the end of the batch.
        ``new_token`` (``__bdone`` of a cross-shard move's try, see
        :mod:`shardkv.acceptor.blocking`): the ``__bwait``, still waiting or
        its claim now done, waits on under that token, in its place (its
        stamp) among its key's waiters, unless its claim was
        ``BWAIT_READY`` (Redis served that client at its turn), or there is
        none (-1: it timed out, its wake on its way): a client
        blocked after it on that key, on this shard, is served after it
        still, as in Redis, where a client with nothing left at its turn
        stays blocked in its place."""
        waiter = self.by_token.get((pipe, token))
        if waiter is not None:
            if new_token:
                del self.by_token[pipe, token]
                waiter.token = new_token
                self.by_token[pipe, new_token] = waiter
                if waiter.wait.timeout:
                    heapq.heappush(self.timeouts, (waiter.deadline, pipe, new_token))
            elif not keep:
                self._forget(waiter)
            return 0
        claim = self.claims.get((pipe, token))
        if claim is None:
            return -1 if new_token else 0
        claimant = self.claimants.pop((pipe, token), None) if done else None
        if not claim[1]:  # a stream read's: said once (see _serve)
            self._unclaim((pipe, token))
        elif done:
            self._unclaim((pipe, token))
            if claim[0] in self.by_key:
                self.ready[claim[0]] = None
        if new_token and claimant is not None and claim[2] == wire.BWAIT_CLAIMED:
            claimant.token = new_token
            self._register(claimant)
            self.ready[claim[0]] = None
        return [claim[2], claim[0][1], *claim[3]]

    def _unclaim(self, claim: tuple[int, int]) -> None:
        key, n, _, _ = self.claims.pop(claim)
        self.claimants.pop(claim, None)
        if not n:
            return  # (a stream read's: it counts nothing)
        if self.settles_all:
            self._settle_all(claim)
        left = self.claimed[key] - n
        if left:
            self.claimed[key] = left
        else:
            del self.claimed[key]
        settles = self.settles.get(key)
        if settles:
            waiting = []
            for settle in settles:
                if self.settled(key, settle[2]):
                    self.wakes.append((settle[0], wire.encode_wake(settle[1], b":1\r\n")))
                else:
                    waiting.append(settle)
            if waiting:
                self.settles[key] = waiting
            else:
                del self.settles[key]

    def _settle_all(self, claim: tuple[int, int]) -> None:
        """``claim`` ended: the keyless ``__bsettle``s that waited for it
        and for no other answer (see bsettle)."""
        waiting = []
        for settle in self.settles_all:
            claims = settle[2]
            claims.discard(claim)
            if claims:
                waiting.append(settle)
            else:
                self.wakes.append((settle[0], wire.encode_wake(settle[1], b":1\r\n")))
        self.settles_all[:] = waiting

    def settled(self, key: tuple[int, bytes], before: int) -> bool:
        """Whether no claim on ``key`` is left (``before``: none of a
        waiter that blocked before that stamp; see bsettle)."""
        if not before:
            return key not in self.claimed
        if key not in self.claimed:
            return True
        claimants = self.claimants
        for claim, (claimed, n, _, _) in self.claims.items():
            if claimed == key and n:
                claimant = claimants.get(claim)
                if claimant is not None and claimant.stamp < before:
                    return False
        return True

    def _forget(self, waiter: Waiter) -> None:
        del self.by_token[waiter.pipe, waiter.token]
        by_key = self.by_key
        db = waiter.db
        for k in dict.fromkeys(waiter.wait.keys):
            key = (db, k)
            queue = by_key.get(key)
            if queue is not None:
                queue.remove(waiter)
                if not queue:
                    del by_key[key]

    # -- waking ---------------------------------------------------------------

    def mark(self, args: list[bytes]) -> None:
        """Note the keys of the write command ``args`` that someone waits on."""
        cmd = commands.lookup(args[0])
        if cmd is None or not cmd.is_write:
            return
        if cmd.name in FLUSHES:  # every key may be gone (a blocked XREADGROUP fails)
            self.ready.update(dict.fromkeys(self.by_key))
            return
        self.mark_keys(cmd.keys(args))
        if cmd.name in TO_OTHER_DB:
            # MOVE's key in its target database, COPY ... DB's destination:
            # Redis's dbAdd signals it ready there.
            self.mark_keys(commands.other_db_keys(cmd.name, args, len(self.ks.dbs)))

    def mark_writes(self, writes: list[tuple[int, list[bytes]]]) -> None:
        """Note the keys of a script's writes, ``(database, command)``
        each, once the script has ended: Redis serves a client blocked on
        a key a script wrote after the script (``handleClientsBlockedOnKeys``
        after the command), on the state the script left."""
        keys = self._written_keys(writes)
        if keys is None:
            self.ready.update(dict.fromkeys(self.by_key))
        else:
            self.mark_keys(keys)

    def script_wrote(self, writes: list[tuple[int, list[bytes]]]) -> None:
        """A script of this pipe ended that wrote (``writes``, as
        :meth:`mark_writes` takes them), while someone waits or claims here:
        the keyless ``__bsettle`` its acceptor sends behind it (or behind a
        run of its scripts) waits for the claims its writes make, which its
        serve makes, and for those on the keys it wrote, not for a claim
        left from before it on a key it did not touch: an acceptor
        stopped, or slow, with a try owed for a key another write made
        ready before holds up no script that left that key alone (Redis
        never holds a reply for an unrelated blocked client).  The
        claims of now are noted for the first such script since the pipe's
        last keyless ``__bsettle`` (one settles a run of them), less those
        on the keys this one wrote."""
        pipe = self.ks.pipe
        before = self.settle_from.get(pipe)
        claims = self.claims
        if before is None:
            before = self.settle_from[pipe] = {c for c, held in claims.items() if held[1]}
        if not before:
            return
        keys = self._written_keys(writes)
        if keys is None:
            before.clear()  # (every key)
            return
        touched = set(keys)
        before.difference_update([c for c in before if c in claims and claims[c][0] in touched])

    def _written_keys(self, writes: list[tuple[int, list[bytes]]]) -> list[tuple[int, bytes]] | None:
        """The ``(database, key)`` pairs a script's ``writes`` (as
        :meth:`mark_writes` takes them) wrote, MOVE's and COPY ... DB's
        targets among them; None if one of them flushed (every key)."""
        keys: list[tuple[int, bytes]] = []
        databases = len(self.ks.dbs)
        for db, args in writes:
            cmd = commands.lookup(args[0])
            if cmd is None:
                continue
            if cmd.name in FLUSHES:
                return None
            keys.extend((db, key) for key in cmd.keys(args))
            keys.extend(commands.other_db_keys(cmd.name, args, databases))
        return keys

    def mark_keys(self, keys, op: int = 0, ranks: dict | None = None) -> None:
        """Note that these keys of the current database were written (a key
        of another database named ``(database, key)``).  ``ranks``: those
        the cross-shard operation ``op`` made hold a value a blocked command
        pops, each with its place among all such keys of the operation
        (:func:`note_ready`): the notification of a ``__bwait`` served from
        one names ``op`` and the rank, so that its client, whose other keys
        that operation may have made ready on other shards, is served from
        the first, as Redis serves it from the key its ready keys list
        first (see ``shardkv.acceptor.blocking``)."""
        by_key = self.by_key
        db = self.ks.db
        for name in keys:
            key = name if type(name) is tuple else (db, name)
            if key in by_key:
                self.ready[key] = None
                if ranks and name in ranks:
                    self.ranks[key] = (op, ranks[name])

    def signal(self, key: bytes) -> None:
        """A write signaled the stream ``key`` of the current database ready
        as Redis's ``signalKeyAsReady`` (XGROUP DESTROY; RENAME and COPY,
        whose ``dbAdd`` signals the new key): its blocked reads
        whose ID its last ID is past are served, the entries past it there
        or not, though no entry was added (see
        ``shardkv.worker.commands.streams.serves``)."""
        dbkey = (self.ks.db, key)
        if self.ks.imported is not None:
            # A cross-shard operation's (a MULTI, a script): the stream may
            # go home to a shard where reads wait on it, which serves them
            # once the operation is done, on the state it left (an XSETID
            # after the RENAME): see signaled_at_end.
            self.signaled_run.add(dbkey)
        if dbkey in self.by_key:
            self.signaled.add(dbkey)
            self.ready[dbkey] = None

    def signaled_at_end(self) -> None:
        """A cross-shard operation that ran here has done its commands:
        each stream one of them signaled takes its last ID now as added,
        so that the shard it goes home to serves its blocked reads whose
        ID that is past, as Redis serves a signaled key after EXEC."""
        ks = self.ks
        for db, key in self.signaled_run:
            with ks.selected(db):
                stream = ks.peek(key)
            if type(stream) is Stream:
                stream.added = stream.last_id
        self.signaled_run.clear()

    def mark_db(self, db: int) -> None:
        """Every waited-on key of database ``db`` may serve now (SWAPDB):
        Redis's ``scanDatabaseForReadyKeys`` signals each ready, a stream
        too, though no entry was added (see :meth:`signal`)."""
        for key in self.by_key:
            if key[0] == db:
                self.ready[key] = None
                self.signaled.add(key)

    def serve_ready(self) -> None:
        """Serve the waiters of each ready key, oldest first, while it can.

        A ``__bwait`` waiter (cross-shard: its client tries again once
        notified) pops nothing but is counted as taking its count of
        elements (its *claim*, until its try has run: ``__bdone``, which
        makes the key ready again, so that an element its try left serves
        the waiters after it, as Redis serves them after that client):
        notified with ``BWAIT_READY`` while the elements outnumber those
        claimed before it, this time or by the claims not done yet, else
        with ``BWAIT_CLAIMED`` (Redis would have served it only if its list
        still existed).
        Notifying them all keeps an element from staying while someone
        waits for it (the client it was counted for may be gone).  A
        one-shard waiter behind them waits while any claim on its key
        lasts, and the waiters after it with it: the ``__bdone`` that ends
        the last claim makes the key ready again, and it is served then,
        from what the tries left, as Redis serves a key's clients in the
        order they blocked (it used to pop at once, taking an element that
        a cross-shard client blocked before it was notified for)."""
        ready = self.ready
        ks = self.ks
        lookup = ks.peek  # a probe, not an access
        here = ks.db
        try:
            while ready:
                dbkey = next(iter(ready))
                del ready[dbkey]
                order = self.ranks.pop(dbkey, ()) if self.ranks else ()
                queue = self.by_key.get(dbkey)
                if not queue:
                    continue
                db, key = dbkey
                if db != ks.db:
                    ks.select(db)
                if dbkey in self.signaled:
                    stream = lookup(key)
                    if type(stream) is Stream:
                        # Served on the state the write left (an XSETID
                        # after the XGROUP DESTROY in its transaction), as
                        # Redis serves a signaled key: its last ID taken as
                        # added, which a woken cross-shard try reads.
                        stream.added = stream.last_id
                claimed = self.claimed.get(dbkey, 0)  # elements of the __bwait waiters notified so far
                counted = [False]  # the key looked up this round (see access.round_lookup)
                for waiter in list(queue):
                    value = lookup(key)
                    wait = waiter.wait
                    if value is None and not wait.missing:
                        if any(w.wait.missing for w in queue):
                            continue  # a blocked XREADGROUP still gets its error
                        break
                    if (waiter.pipe, waiter.token) not in self.by_token:
                        continue
                    pops = (
                        wait.pops is not None
                        and not order
                        and self.free is not None
                        and self.free(waiter.pipe)
                    )
                    if claimed and (pops or not wait.claims) and not _xread(waiter.args):
                        break  # its turn comes once the tries before it have run
                    if pops:
                        self.pop_for(waiter, key)
                        continue
                    # (A stream's: its XREADGROUP's try finds whether an entry is left.)
                    left = not claimed or value is None or type(value) is Stream or claimed < len(value)  # type: ignore[arg-type]  # a list or zset
                    if self._serve(waiter, key, left, order, counted) and wait.claims:
                        claimed += wait.claims
        finally:
            self.signaled.clear()
            if ks.db != here:
                ks.select(here)

    def _serve(
        self,
        waiter: Waiter,
        key: bytes,
        left: bool = True,
        order: tuple = (),
        counted: list[bool] | None = None,
    ) -> bool:
        """Serve ``waiter`` from ``key`` if it can; whether it was served.
        ``left``: an element is left for it (see :meth:`serve_ready`);
        ``order``: the operation that made ``key`` ready and its rank, which
        a ``__bwait``'s notification names (see :meth:`mark_keys`);
        ``counted``: whether this round of serving ``key``'s clients looked
        it up already (see :func:`access.round_lookup`)."""
        ks = self.ks
        args = waiter.args
        start = perf_counter_ns()
        mode = access.serving(ks, waiter.no_touch)  # (as its client, see access.serving)
        looking = access.round_lookup(ks, key, counted) if counted is not None else None
        try:
            if not ks.noting:
                value = waiter.wait.serve(ks, args, key)
            else:  # someone listens: its events, as the command's own
                before = events.before(ks, args)
                value = waiter.wait.serve(ks, args, key)
                if value is not None:
                    events.derive_served(ks, args, value, before, waiter.pipe, waiter.token)
        except CommandError as e:
            value = Error(e.message)
        except Exception:  # a bug must not take the shard down
            log.exception("serving a blocked %r failed", args[0])
            value = Error(errors.INTERNAL % commands.error_name(args))
        finally:
            if counted is not None:
                access.round_served(ks, looking)
            access.served(ks, mode)
        # A handler that found nothing to pop says so (ks.unchanged) for the
        # shard's execute, which is not on this path: cleared here, or the
        # next write would go unlogged.
        ks.unchanged = False
        if value is None or type(value) is Error:
            ks.changes = None  # (a count it set: not the next write's, nothing is recorded)
        if value is None:
            return False
        claims = waiter.wait.claims
        upto: list = []
        if claims and type(value) is not int:  # an XREADGROUP's: [BWAIT_READY, key, last ID], or its error
            if type(value) is Error:
                claims = 0
            else:
                upto = value[2:]  # type: ignore[index]  # (see _notify_stream)
                value = value[0]  # type: ignore[index]
        if not left:  # (a __bwait's: a one-shard waiter waits while its key is claimed)
            value = wire.BWAIT_CLAIMED
        self._forget(waiter)
        if claims:
            dbkey = (waiter.db, key)
            # (An XREADGROUP's notification ends with its stream's last ID,
            # see _notify_stream: after the order, as its __bclaim says it.)
            self.claims[waiter.pipe, waiter.token] = (dbkey, claims, value, (*order, *upto))  # type: ignore[assignment]  # an int here
            self.claimants[waiter.pipe, waiter.token] = waiter
            self.claimed[dbkey] = self.claimed.get(dbkey, 0) + claims
            value = [value, key, *order, *upto]  # the notification names its key (see bwait)
        elif order and type(value) is list and args[0] == Verb.BWAIT:
            # A stream read's __bwait (it claims nothing), its key made
            # ready by a cross-shard operation: the notification names the
            # operation and the rank, and a claim of no element keeps them
            # for the __bclaim its client sends its other shards (see
            # shardkv.acceptor.blocking), which ends it.
            # (An XREAD's notification ends with its stream's last ID, see
            # _notify_stream: after the order, as its __bclaim says it.)
            self.claims[waiter.pipe, waiter.token] = ((waiter.db, key), 0, value[0], (*order, *value[2:]))
            value = [*value[:2], *order, *value[2:]]
        wake = (waiter.pipe, wire.encode_wake(waiter.token, encode(value, waiter.resp3)))
        self.wakes.append(wake)
        if waiter.behind:
            self.behind_served.add(waiter.pipe)
        if not claims and ks.event_masks and args[0][0] != 95:  # (not a __bwait's notification)
            self.served.append(wake)
        stats = ks.stats
        # Counted as called when it blocked (Waiters.run); now its time and
        # latency, and slow-logged, as Redis's updateStatsOnUnblock: the
        # time of its first run and of this one; not a __bwait (internal
        # verbs never show).
        if stats is not None and args[0][0] != 95:
            ns = waiter.ns + perf_counter_ns() - start
            stats.unblocked(stat_name(args), ns, value.message if type(value) is Error else None)
            stats.slow(args, ns // 1000)
        if type(value) is Error:
            return True
        if self.record is not None:
            self.record(args, value)
        self.mark(args)  # BLMOVE's destination may serve others now
        return True

    def pop_for(self, waiter: Waiter, key: bytes) -> None:
        """Serve the ``__bpop`` ``waiter`` from ``key`` *in place*: pop with
        its client's command on that key, as Redis serves a blocked client
        as the push ends, notify ``[BWAIT_SERVED, key, reply]`` and wait
        right here, running nothing else, for the acceptor's verdict
        (:attr:`verdict`, a ``V`` frame).  Taken: the pop is logged (the
        AOF; its keyspace events, noted, leave with the batch's) and
        ``:1`` on the same token tells the acceptor to deliver the reply.
        Not taken (``__bdone``: another shard served the client first, or
        it went away), no verdict within :data:`VERDICT_WAIT_S`, or the
        pipe lost: the element goes back to the key's head with nothing
        logged or noted, its TTL and WATCH version as they were
        (:meth:`_give_back`), and the key serves its next waiter, as if
        the push had come after the client left: nothing ran on this shard
        meanwhile, so no one saw the key without it.  A key of another type
        serves nothing (it waits on)."""
        ks = self.ks
        noted = ks.events
        mark = len(noted) if noted is not None else 0
        was = _before_pop(ks, key)
        notification = self._pop(waiter, key)
        if notification is None:
            return
        self._forget(waiter)
        pipe, token = waiter.pipe, waiter.token
        self.wakes.append((pipe, wire.encode_wake(token, encode(notification, 0))))
        held = self.held.pop((pipe, token), None)
        if held is None:  # an error: nothing popped, the reply as it is
            return
        verdict = self.verdict(pipe, token) if self.verdict is not None else None
        if verdict:
            _, command, value, _ = held
            faultpoints.hold("verdict")
            if self.record is not None:
                self.record(command, value)
            self.wakes.append((pipe, wire.encode_wake(token, b":1\r\n")))
            if self.send_wakes is not None:
                self.send_wakes()  # after the pop's AOF record (a send commits first)
            return
        if noted is not None:
            del noted[mark:]  # its events, never sent
        self._give_back(held, was)

    def _pop(self, waiter: Waiter, key: bytes) -> list | None:
        """Pop for ``waiter`` from ``key`` (see :meth:`pop_for`): its
        notification, or None when the key holds another type.  Nothing is
        logged yet."""
        ks = self.ks
        command, at = waiter.wait.pops  # type: ignore[misc]  # a __bpop's
        if type(ks.peek(key)) is not KINDS[command[0].lower()]:
            return None
        command = [*command]
        command[at] = key
        handler = find(command[0])
        mode = access.serving(ks, waiter.no_touch)  # (as its client, see access.serving)
        try:
            if not ks.noting:
                value = handler(ks, command)  # type: ignore[misc]  # a blocking command's
            else:  # someone listens: its events, as the command's own
                before = events.before(ks, command)
                value = handler(ks, command)  # type: ignore[misc]
                mark = len(ks.events)  # type: ignore[arg-type]
                events.derive(ks, command, value, before)
                events.served(ks, mark)
        except CommandError as e:
            value = Error(e.message)
        except Exception:  # a bug must not take the shard down
            log.exception("popping for a blocked %r failed", command[0])
            value = Error(errors.INTERNAL % commands.error_name(command))
        finally:
            access.served(ks, mode)
        ks.unchanged = False  # (as in _serve: no execute here to clear it)
        if type(value) is Error:
            ks.changes = None  # (nor the count it set: nothing is recorded)
        elif command[0].lower() in (b"blpop", b"brpop"):
            ks.changes = 0  # as Redis 7.0's serveClientBlockedOnList: logged, not counted in dirty
        notification = [wire.BWAIT_SERVED, key, encode(value, waiter.resp3)]
        if type(value) is not Error:
            self.held[waiter.pipe, waiter.token] = ((waiter.db, key), command, value, int(waiter.args[3]))
        return notification

    def _give_back(self, held: tuple, was: tuple[int | None, int | None]) -> None:
        """Put what a pop took (``held``: key, command, reply) back at its
        key's head, unseen: nothing logged, noted or counted as a change
        (the key's TTL and WATCH version ``was`` before the pop are its
        again).  (A key that holds another type by then, which no command
        can have made while the shard waited, cannot take it: logged.)"""
        dbkey, command, value, _ = held
        db, key = dbkey
        ks = self.ks
        here = ks.db
        if db != here:
            ks.select(db)
        try:
            where = command[4] if command[0].lower() == b"blmpop" else b""
            back = wire.pushed_back(command[0], where, key, value)
            try:
                find(back[0])(ks, back)  # type: ignore[misc]  # LPUSH, RPUSH or ZADD
            except CommandError as e:
                log.warning("an element popped for a blocked %r could not go back: %s", command[0], e.message)
                return
            when, version = was
            if when is not None:
                ks.set_expire(key, when)
            if version is not None:
                ks.watched[key] = version
        finally:
            # Neither the pop nor the push back is recorded: their counts
            # (a pop or push of several, ks.changes) are not the next write's.
            ks.changes = None
            if ks.db != here:
                ks.select(here)

    # -- timeouts -------------------------------------------------------------

    def next_deadline(self) -> float:
        """When the next waiter times out (time.monotonic()), inf if never."""
        heap = self.timeouts
        by_token = self.by_token
        while heap and heap[0][1:] not in by_token:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def expire(self, now: float) -> None:
        """Time out every waiter whose deadline has passed."""
        heap = self.timeouts
        by_token = self.by_token
        while heap and heap[0][0] <= now:
            deadline, pipe, token = heapq.heappop(heap)
            waiter = by_token.get((pipe, token))
            if waiter is None or waiter.deadline != deadline:
                continue
            self._forget(waiter)
            self.wakes.append((pipe, wire.encode_wake(token, encode(waiter.wait.expired, waiter.resp3))))


def note_ready(ks: Keyspace, args: list[bytes], order: dict) -> None:
    """Note in ``order`` the keys the write ``args``, run in a cross-shard
    operation, made hold a list, sorted set or stream, each with its place
    (its rank) among them: Redis serves a blocked client from the key a
    write made ready first (its ready keys' order), and the operation's
    shards notify their ``__bwait``s each on its own (see
    :meth:`Waiters.mark_keys`).  Keys of the operation's database named
    alone, others as ``(database, key)``, as the operation names them."""
    cmd = commands.lookup(args[0])
    if cmd is None or not cmd.is_write:
        return
    here = ks.imported[0] if ks.imported is not None else ks.db
    for key in cmd.keys(args):
        name = key if ks.db == here else (ks.db, key)
        if name not in order and type(ks.peek_quietly(key)) in _POPPED:  # (expiring none)
            order[name] = len(order)


def now_or_never(form: Handler) -> Handler:
    """A blocking command's handler when it may not wait (in MULTI, in a
    script, or sent without a token): its blocking ``form``, with
    ``Wait.deny`` for a Wait."""

    @functools.wraps(form)
    def now_or_never(ks: Keyspace, args: list[bytes]) -> object:
        value = form(ks, args)
        if type(value) is Wait:
            ks.unchanged = True  # as Redis: nothing to pop, no change, not logged
            return value.deny
        return value

    return now_or_never


# -- __bwait: notify the acceptor, pop nothing --------------------------------


def bwait(ks: Keyspace, args: list[bytes]) -> object:
    """__bwait command timeout elapsed-ms count key [key ...]

    ``[1, key]`` when one of the keys (the first such) holds a value
    ``command`` can pop, 0 when the timeout (less the milliseconds already
    waited) has passed; otherwise waits for one of those.  Pops nothing.
    Once it waited, its notification is ``[wire.BWAIT_READY (1), key]`` or
    ``[wire.BWAIT_CLAIMED (2), key]`` (earlier waiters may take every
    element: see :meth:`Waiters.serve_ready`), ``key`` the one made ready,
    which its client's try reads alone, and it claims ``count`` elements of
    that key until ``__bdone``.  (XREAD/XREADGROUP: ``group key id [key id
    ...]`` after elapsed-ms; XREAD's claims nothing, XREADGROUP's one
    entry, so that a waiter on the stream alone that blocked after it is
    served only once its try has run, as Redis serves the first.)
    """
    kind = KINDS[args[1].lower()]
    timeout = parse_timeout(args[2])
    serve: Callable[[Keyspace, list[bytes], bytes], object]
    if kind is None and args[1].lower() in READY:
        # XREAD/XREADGROUP: ``group key id [key id ...]`` (see shardkv.acceptor.blocking)
        ready = READY[args[1].lower()]
        rest = _dollars(ks, args[4:])
        keys = rest[1::2]
        # (as the one-shard waiter's: an XADD after this serves it, or an
        # entry there, which its client's try reads)
        seen = added_now(ks.peek, keys)
        if ready(ks, rest, seen):
            # (a key its client blocked on was written before this came:
            # an XREADGROUP whose stream or group is gone fails so)
            gone = _stream_gone(ks, rest[0], keys)
            if gone is not None:
                return gone
            for i in range(1, len(rest) - 1, 2):
                if ready(ks, [rest[0], rest[i], rest[i + 1]], seen):
                    return [wire.BWAIT_READY, rest[i]]
        serve = functools.partial(_notify_stream, ready, rest, seen)
    else:
        claims = int(args[4])
        keys = args[5:]
        lookup = ks.peek  # a probe, not an access
        for key in keys:
            if type(lookup(key)) is kind:
                return [wire.BWAIT_READY, key]
        serve = _notify
    if timeout:
        timeout -= int(args[3])
        if timeout <= 0:
            return 0
    if serve is not _notify:
        # An XREADGROUP's claims one entry, as a move's its element: a
        # waiter on the stream alone behind it waits for its try.
        return Wait(keys, timeout, serve, deny=0, expired=0, missing=kind is None, claims=1 if rest[0] else 0)
    return Wait(keys, timeout, serve, deny=0, expired=0, claims=claims)


def _xread(args: list[bytes]) -> bool:
    """Whether ``args`` is an XREAD's (a one-shard waiter's, or a
    ``__bwait``): it takes nothing, so it need not wait for the tries of
    the cross-shard XREADGROUPs before it that claim an entry of its
    stream (:meth:`Waiters.serve_ready`), as Redis serves it right after
    the write; waiting, its notification came after the writer's next
    commands, and a cross-shard XREAD was served from its other stream,
    written second, whose notification came first."""
    name = args[1] if args[0] == Verb.BWAIT else args[0]
    return name.lower() == b"xread"


def _dollars(ks: Keyspace, rest: list[bytes]) -> list[bytes]:
    """XREAD's ``group key id [key id ...]`` with each ``$`` the stream's
    last ID now (0-0 for none): a cross-shard XREAD BLOCK sends its first
    ``__bwait``s with its first try, in one step, so that ``$`` stands
    for one moment, the try's (see shardkv.acceptor.blocking)."""
    if b"$" not in rest[2::2]:
        return rest
    out = list(rest)
    for i in range(2, len(out), 2):
        if out[i] == b"$":
            stream = ks.lookup(out[i - 1])
            out[i] = format_id(stream.last_id) if type(stream) is Stream else b"0-0"
    return out


def bpop(ks: Keyspace, args: list[bytes]) -> object:
    """__bpop timeout elapsed-ms count at nkeys key [key ...] command [arg ...]

    A ``__bwait`` (the same answers; see :func:`bwait`) of a cross-shard
    BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, BLMPOP or BZMPOP that pops for its
    client: a key a plain write made ready serves it in its turn with
    ``command`` (its client's command on that key alone, the key at
    ``at``), as Redis serves a blocked client as the push ends, before the
    pusher's next command; the notification then carries the reply,
    ``[wire.BWAIT_SERVED, key, reply]``, and the shard waits in place for
    the verdict (:meth:`Waiters.pop_for`).  A key a cross-shard operation
    made ready notifies it as a ``__bwait``'s (its client is served from
    the key the operation made ready first), and so does a key that can
    serve it as it comes (its client tries)."""
    timeout = parse_timeout(args[1])
    claims = int(args[3])
    at = int(args[4])
    n = int(args[5])
    keys = args[6 : 6 + n]
    command = args[6 + n :]
    kind = KINDS[command[0].lower()]
    lookup = ks.peek  # a probe, not an access
    for key in keys:
        if type(lookup(key)) is kind:
            return [wire.BWAIT_READY, key]
    if timeout:
        timeout -= int(args[2])
        if timeout <= 0:
            return 0
    serve = functools.partial(_notify_kind, kind)
    return Wait(keys, timeout, serve, deny=0, expired=0, claims=claims, pops=(command, at))


def _before_pop(ks: Keyspace, key: bytes) -> tuple[int | None, int | None]:
    """``key``'s TTL (ms) and WATCH version before a pop, for a give-back."""
    return ks.get_expire(key), ks.watched.get(key)


def _notify_kind(kind: type | None, ks: Keyspace, args: list[bytes], key: bytes) -> object:
    return wire.BWAIT_READY if type(ks.peek(key)) is kind else None


def _notify_stream(
    ready: Callable, rest: list, seen: dict[bytes, int], ks: Keyspace, args: list[bytes], key: bytes
) -> object:
    """An XREADGROUP whose ready key is no stream now (deleted, or of
    another type) or has lost its group fails at once with Redis's error
    of that (its client's try would fail NOGROUP, naming the key), as
    Redis's ``unblockDeletedStreamReadgroupClients`` and
    ``serveClientsBlockedOnStreamKey`` answer it."""
    gone = _stream_gone(ks, rest[0], [key])
    if gone is not None:
        return gone
    for i in range(1, len(rest) - 1, 2):
        if rest[i] != key:
            continue
        if ready(ks, [rest[0], key, rest[i + 1]], seen, True):
            # The stream's last ID now, which its client's try reads up to
            # (an XREAD's ``__xreadupto``, an XREADGROUP's
            # ``__xgroupupto``), as Redis serves it now.
            stream: Stream = ks.peek(key)  # type: ignore[assignment]  # ready: a stream
            return [wire.BWAIT_READY, key, format_id(stream.last_id)]
        break  # (named twice: it waits past its first ID, as Redis's blockForKeys)
    return None


def _stream_gone(ks: Keyspace, group: bytes, keys: list[bytes]) -> Error | None:
    """XREADGROUP's error when one of ``keys`` is no stream or has no
    ``group`` (XREAD, no group: None)."""
    if group:
        for key in keys:
            stream = ks.peek(key)
            if type(stream) is not Stream:
                return Error(errors.UNBLOCKED_STREAM_DELETED)
            if group not in stream.groups:
                return Error(errors.NOGROUP_BLOCKED)
    return None


def _notify(ks: Keyspace, args: list[bytes], key: bytes) -> object:
    return wire.BWAIT_READY if type(ks.peek(key)) is KINDS[args[1].lower()] else None


def unblock(ks: Keyspace, args: list[bytes]) -> object:
    """__unblock token seen seq [after [pipe error]]

    CLIENT UNBLOCK of the command blocked under ``token`` on this pipe: 1
    if it still waited (forgotten now: the acceptor answers it), 0 if it was
    served or timed out (its ``W`` frame follows this batch's replies), -1
    if a script went busy since the acceptor sent it, -2 if it came inside
    an EXEC that did not run (see :meth:`Waiters.unblock`).
    """
    after = int(args[4]) if len(args) > 4 else -1
    waits = (int(args[5]), args[6] == b"1") if len(args) > 6 else None
    return ks.waiters.unblock(int(args[1]), ks.pipe, int(args[2]), int(args[3]), after, waits)  # type: ignore[union-attr]  # set by Waiters


def bclaim(ks: Keyspace, args: list[bytes]) -> object:
    """__bclaim token [keep]

    The notification of the ``__bwait`` of ``token`` (this pipe's, ``[1 or
    2, key]``) if it claims elements, else 0; one still waiting is forgotten
    (kept with ``keep``: an eager try's, see :meth:`Waiters.claim`).  The keys made
    ready before it serve first (as Redis serves a blocked client right
    after the write): CLIENT UNBLOCK of a cross-shard BLMOVE asks it before
    its try, and Redis replied WRONGTYPE to a client it served
    (``BWAIT_READY``) whose destination holds another type.
    """
    waiters = ks.waiters
    if waiters.ready:  # type: ignore[union-attr]  # set by Waiters
        waiters.serve_ready()  # type: ignore[union-attr]
    return waiters.claim(int(args[1]), ks.pipe, False, len(args) > 2)  # type: ignore[union-attr]


def bdone(ks: Keyspace, args: list[bytes]) -> object:
    """__bdone token [new-token]

    The same as ``__bclaim`` (serving nothing first); then the claim of the
    ``__bwait`` of ``token`` ends, after its client's try (or there is no
    try): its key serves its waiters again at the end of the batch, the
    element left by that try to the next of them, as Redis serves the
    waiters after a client that took nothing.  With ``new-token`` (an eager
    try's) the ``__bwait`` then waits on under that token, in its place.
    """
    new_token = int(args[2]) if len(args) > 2 else 0
    return ks.waiters.claim(int(args[1]), ks.pipe, True, new_token=new_token)  # type: ignore[union-attr]  # set by Waiters


class Settle:
    """What ``__bsettle`` returns when the key is claimed: its wake comes
    once the claims end (:meth:`Waiters.run`); keyless (``key`` None),
    once the claims ``claims`` have ended."""

    __slots__ = ("key", "before", "claims")

    def __init__(
        self, key: tuple[int, bytes] | None, before: int, claims: set[tuple[int, int]] | None = None
    ) -> None:
        self.key = key
        self.before = before
        self.claims = claims


def bsettle(ks: Keyspace, args: list[bytes]) -> object:
    """__bsettle key [token] (sent with a token of its own)

    1 once no notified ``__bwait`` (or ``__bpop``) holds a claim on ``key``
    (every try notified so far has run: its ``__bdone`` came), at once if
    none does; the keys made ready before it serve first.  Sent right
    behind a write of a key that another acceptor's cross-shard
    BLMOVE/BRPOPLPUSH waits on: the writer's client waits for it, so that
    it, and whoever reads its reply, sees the element moved, as Redis
    moves it as the push ends (see ``shardkv.acceptor.blocking``); and
    behind a transaction or script writing a key of a cross-shard pop,
    which such an operation notifies: its client is served before the
    writer's next command, as Redis serves it right after the EXEC.  With
    ``token`` (the notified ``__bwait`` of such a move, this pipe's): only
    the claims of the waiters that blocked before it count, so that its
    try comes after theirs, as Redis serves a key's clients in the order
    they blocked.

    __bsettle (no key): 1 once every claim left now has ended, at once if
    none is: behind a run parked across shards or an EXEC, which note
    nothing (a note left is an earlier script's, dropped).
    ``__bsettlealone``, behind scripts sent to this shard alone: only those
    the scripts of this pipe before it made (their writes', or on a key
    they wrote: see :meth:`Waiters.script_wrote`), none when none noted
    any.  Either is sent right behind a script, which may
    write keys it did not declare, of another database too (a SELECT in
    it), that the acceptor cannot name; Redis serves their blocked
    clients right after the script (issue 22), and holds its reply for
    no other client's.
    """
    waiters = ks.waiters
    if waiters.ready:  # type: ignore[union-attr]  # set by Waiters
        waiters.serve_ready()  # type: ignore[union-attr]
    if len(args) < 2:
        # Alone: only the claims its scripts' writes made, or on keys they
        # wrote (Waiters.script_wrote); none noted: none (they wrote
        # nothing while anyone waited or claimed here).
        before = waiters.settle_from.pop(ks.pipe, None)  # type: ignore[union-attr]
        if args[0] != Verb.BSETTLE_ALONE:
            # Behind a run parked across shards or an EXEC, which note
            # nothing: a note left is an earlier script's (none settled
            # it), not theirs; a claim it names may be on a key they wrote.
            before = None
        elif before is None:
            return 1
        claims = {
            claim
            for claim, held in waiters.claims.items()  # type: ignore[union-attr]
            if held[1] and (before is None or claim not in before)
        }
        return Settle(None, 0, claims) if claims else 1
    key = (ks.db, args[1])
    before = 0
    if len(args) > 2:
        claimant = waiters.claimants.get((ks.pipe, int(args[2])))  # type: ignore[union-attr]
        if claimant is None:
            return 1
        before = claimant.stamp
    if not waiters.settled(key, before):  # type: ignore[union-attr]
        return Settle(key, before)
    return 1


def btry(ks: Keyspace, args: list[bytes]) -> object:
    """__btry command [arg ...]

    The blocking ``command`` (BLPOP, BZMPOP...: not BLMOVE, BRPOPLPUSH or a
    stream read), unable to wait, run as its keys would serve it once
    ready: a key of another type than it pops is passed over, no
    WRONGTYPE, as Redis serves a blocked client from any of its ready keys
    of that type (``serveClientsBlockedOnKey``), the others unread.  The
    try of a cross-shard wait that an EXEC's CLIENT UNBLOCK asks for, which
    reads all its keys (see :mod:`shardkv.acceptor.blocking`): ``BLPOP b a
    0``, ``SET b s``, then ``RPUSH a x``, ``MULTI``, ``CLIENT UNBLOCK``,
    ``EXEC``: the client gets ``[a, x]`` (Redis served it at the RPUSH).
    """
    command = args[1:]
    cmd = commands.lookup(command[0])
    handler = find(command[0])
    if cmd is None or handler is None:
        return Error("ERR unknown command '{}'".format(command[0].decode("latin-1")))
    kind = KINDS[command[0].lower()]
    keys = cmd.keys(command)
    lookup = ks.peek  # a probe, not an access
    kept = [key for key in keys if (value := lookup(key)) is None or type(value) is kind]
    if not kept:
        return NULL_ARRAY
    if len(kept) < len(keys):
        # Each key passed over gives its place to the first kept one, which
        # the command reads first anyway: the others keep their order.
        command = list(command)
        at = cmd.numkeys_at + 1 if cmd.numkeys_at else cmd.first_key
        for i, key in enumerate(keys):
            if key not in kept:
                command[at + i] = kept[0]
    if not ks.noting:
        return handler(ks, command)
    before = events.before(ks, command)  # its events, as the command's own
    value = handler(ks, command)
    events.derive(ks, command, value, before)
    return value


def serve(ks: Keyspace, args: list[bytes]) -> object:
    """__serve

    Serve the waiters of the keys made ready so far, and again after each
    command (the end of a ``__defer``): sent before an EXEC with a CLIENT
    UNBLOCK inside, whose ``__unblock`` serves nothing first, as Redis
    serves a blocked client after each command before the EXEC, and after
    the commands of a transaction routed one by one, as Redis serves after
    EXEC.
    """
    waiters = ks.waiters
    waiters.deferred = False  # type: ignore[union-attr]  # set by Waiters
    if waiters.ready:  # type: ignore[union-attr]
        waiters.serve_ready()  # type: ignore[union-attr]
    return OK


def defer(ks: Keyspace, args: list[bytes]) -> object:
    """__defer

    Serve nobody after each command until ``__serve`` (or the batch's
    end): a transaction's commands follow, routed one by one, and Redis
    serves the clients they woke only after EXEC.
    """
    ks.waiters.deferred = True  # type: ignore[union-attr]  # set by Waiters
    return OK


# The internal verbs this module runs.
HANDLERS: Handlers = {
    Verb.UNBLOCK: unblock,
    Verb.SERVE: serve,
    Verb.DEFER: defer,
    Verb.BCLAIM: bclaim,
    Verb.BDONE: bdone,
    Verb.BTRY: btry,
}

# The blocking commands, by name: the form that may wait, and the type it pops.
BLOCKING: BlockingForms = {
    Verb.BWAIT: Blocking(bwait, None),
    Verb.BPOP: Blocking(bpop, None),
    Verb.BSETTLE: Blocking(bsettle, None),
    Verb.BSETTLE_ALONE: Blocking(bsettle, None),
}
