"""One shard: its keyspace, and the code that runs a batch against it.

:class:`Shard` runs each entry of a ``B`` frame (see
:mod:`shardkv.protocol.wire`) with the handler the worker registered for it
(:mod:`shardkv.worker.wiring`, installed when a shard is made), counts it, logs it for persistence, and
encodes its reply in the client's protocol.  The loop that feeds it frames
is :mod:`shardkv.worker.loop`.

Parking (for operations that must be atomic across shards, see
:mod:`shardkv.acceptor.crossshard` for the protocol and its failure cases): an
entry sent with ``FLAG_PARK`` is ``__park`` (export keys for a parked
operation) or ``__prepare`` (one part of a write fan-out).  The shard
answers it, sends the replies of the batch so far, and then *parks*: it
runs nothing from its queue (frames that arrive are kept, in order) until
the operation's :class:`~shardkv.protocol.wire.Decide`.  Meanwhile it answers
:class:`~shardkv.protocol.wire.Run` (the executor) and :class:`~shardkv.protocol.wire.Prepare`
for that operation, and :class:`~shardkv.protocol.wire.Refused` to any other
control message.  Parts of write fan-outs that follow each other in a
batch, on keys no part before them changed, are prepared together and
park once, until each one's ``Decide`` (:meth:`Shard.gather_parts`).
What it prepared stays in ``Shard.prepared`` until the
outcome is known; on every new pipe it first sends
:class:`~shardkv.protocol.wire.InDoubt` and applies the acceptor's
:class:`~shardkv.protocol.wire.Resolve` before it runs anything.

With several acceptors, the shard runs the frames of one pipe at a time
(``keyspace.pipe``, set by the loop): ``send`` and ``recv`` are that
pipe's, so a parked shard reads only the pipe of the operation's
coordinator, and ``InDoubt`` on a pipe names only the operations that
pipe's acceptor resolves.  ``__hold`` and ``__release``
(:mod:`shardkv.worker.commands.server`) make the shard exclusive to one
pipe between batches.

Blocking commands (BLPOP, BZPOPMIN...) arrive with a token in their entry
header; one that must wait replies with an empty body now and with a ``W``
frame later, and ``X`` frames cancel it: see :mod:`shardkv.worker.blocking`.
"""

from __future__ import annotations

import dataclasses
import logging
from binascii import crc_hqx
from collections.abc import Callable
from itertools import accumulate
from operator import length_hint
from time import perf_counter_ns
from typing import Any, Literal, cast

from shardkv.protocol import commands, errors, wire
from shardkv.protocol.args import LLONG_MAX, LLONG_MIN
from shardkv.protocol.decisions import op_coordinator
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import BIG_ARRAY, BULK_LINES, OK, Error, encode, encode_bulk_strings
from shardkv.protocol.router import LBRACE, SLOTS, key_slot, slot_range
from shardkv.protocol.wire import Verb
from shardkv.runtime import faultpoints, serverlog
from shardkv.runtime.cmdstats import (
    LUA_CLIENT_ADDR,
    ScriptTimes,
    Stats,
    called_name,
    kept_elsewhere,
    stat_name,
)
from shardkv.worker import access, events, eviction, functions, plain, scripting, tunables, wiring  # noqa: F401
from shardkv.worker.blocking import Wait, Waiters, note_ready
from shardkv.worker.busyrefusal import Refusals
from shardkv.worker.busywatch import BusyWatches
from shardkv.worker.clock import Clock
from shardkv.worker.commands.lists import serving_move
from shardkv.worker.commands.streams import bounded_read
from shardkv.worker.handlers import HANDLERS, find
from shardkv.worker.keyspace import Keyspace, slot_of
from shardkv.worker.persistence.engine import Persistence
from shardkv.worker.persistence.engine import on_settings as persistence_settings
from shardkv.worker.scripting import ScriptReply
from shardkv.worker.sweeper import Sweeper
from shardkv.worker.transfer import (
    apply_states,
    drop_qualified,
    export_clocks,
    export_key,
    export_qualified,
    flush_part,
    import_clocks,
    import_qualified,
    qualified_keys,
    written_states,
)

log = logging.getLogger("shardkv.worker")

# What a shard that SHUTDOWN closed still runs (see Shard._refuse).
_AFTER_SHUTDOWN = (Verb.SHUTDOWN, Verb.HOLD, Verb.RELEASE)
OK_REPLY = encode(OK)  # (run_batch's plain replies)
NULL_RESP2 = encode(None)
NULL_RESP3 = encode(None, True)
_SCRIPT_RUNS = frozenset({Verb.EVAL, Verb.FCALL})  # a script's run across shards
# EVALSHA's usual spellings, which run_batch runs through execute_script.
_EVALSHA = frozenset((b"EVALSHA", b"evalsha", b"EVALSHA_RO", b"evalsha_ro"))
# The verbs an ``I`` frame may ask: they read (or reset) the shard's
# figures, so they may run even while the shard waits in a script or parked.
INQUIRIES = frozenset(
    {Verb.INFO, Verb.LASTSAVE, Verb.FUNCTION_WRITERS, Verb.FUNCTION_DENYOOM, Verb.CJSON_STATE, Verb.SETTLED}
)


class Prepared:
    """What a shard prepared for one cross-shard operation: the ``states``
    its keys take if it commits, in database ``db``, and ``undo``, their
    states before, if the new ones are already in memory (None after a
    restart: not applied); ``changes``: what it added to the dirty count
    (taken off if it is undone)."""

    __slots__ = ("states", "undo", "db", "ranks", "changes")

    def __init__(
        self, states: dict, undo: dict | None, db: int, ranks: dict | None = None, changes: int = 0
    ) -> None:
        self.states = states
        self.undo = undo
        self.db = db
        self.ranks = ranks  # the keys the operation made ready, ranked (see Waiters.mark_keys)
        self.changes = changes


# Shard.bodies while the shard is parked by a cross-shard operation.
PARKED: list[bytes] = []
# How long a shard that popped for a client across shards waits in place
# for its acceptor's verdict (an acceptor stopped, not dead: it answers at
# once otherwise) before it gives the element back (see Waiters.pop_for).
VERDICT_WAIT_S = 1.0

# An entry of the batch prepared with the one before it (Shard.gather_parts).
GATHERED: list[bytes] = []


# Blocking commands whose served try counts none in dirty (Redis 7.0's
# serveClientBlockedOnList propagates the pop or move without a count).
def _served_on(cls: int, pipe: int) -> bool:
    """Whether an event of class ``cls`` is a blocked command's that a
    write served, of a client of ``pipe``'s acceptor (``wire.EVENT_SERVED``)."""
    return bool(cls & wire.EVENT_SERVED) and cls >> wire.EVENT_WAITER_SHIFT & _PIPE_MASK == pipe


_PIPE_MASK = (1 << wire.EVENT_WAITER_PIPE_BITS) - 1

_SERVED_UNCOUNTED = frozenset((b"blpop", b"brpop", b"blmove", b"brpoplpush"))
_SERVED_MOVES = frozenset((b"blmove", b"brpoplpush"))


def _served_changes(args: list[bytes], reply: object, changes: int) -> int:
    """What a blocking command's try that serves its blocked client
    (wire.Run.served) counts in dirty, as Redis 7.0 counts a served
    command; ``changes``: what the command counted as a command run.  A
    list's pop or move counts none; an XREADGROUP, the consumer it
    creates (not the stream it read: one change per stream served).
    BLMPOP and BZ*POP count their pops either way."""
    name = (args[1] if args[0] == Verb.BTRY else args[0]).lower()
    if name in _SERVED_UNCOUNTED:
        return 0
    if name == b"xreadgroup" and type(reply) is not Error:
        return max(0, changes - length_hint(reply))
    return changes


class Shard:
    """One shard's keyspace and the code that runs commands against it."""

    def __init__(
        self, index: int, nshards: int, clock: Clock | None = None, config: dict | None = None
    ) -> None:
        # The worker's start-up: every handler, checked against the command
        # table, into the lookup tables (a mismatch stops the worker here).
        wiring.install()
        self.index = index
        databases = config["databases"] if config is not None else 16
        self.keyspace = Keyspace(clock, slot_range(index, nshards), databases)
        self.sweeper = Sweeper(self.keyspace)
        # Persistence (with a config): ``record`` logs each write that ran.
        self.persistence: Persistence | None = None
        self.record = None
        self.unlogged: set[bytes] = set()
        if config is not None:
            self.persistence = Persistence(self.keyspace, index, nshards, config)
            self.record = self.persistence.record
            self.unlogged = self.persistence.reads  # names whose record() does nothing
        # What acts on a setting when __config changes it, in this order.
        self.keyspace.runtime.hooks = [
            events.on_settings,
            eviction.on_settings,
            access.on_settings,
            tunables.on_settings,
            persistence_settings,
            serverlog.on_settings,
        ]
        # Called with its pipe's index when an acceptor dies, and its clients with it.
        self.acceptor_lost_hooks: list[Callable[[int], None]] = []
        # Blocked commands (BLPOP...) waiting for keys of this shard.
        self.waiters = Waiters(self.keyspace, self.record)
        self.acceptor_lost_hooks.append(self.waiters.clear)
        # Set by the loop: wait on a pipe for the verdict on a token's
        # BWAIT_SERVED, at most so many seconds (see _await_verdict).
        self.recv_verdict: Callable[[int, int, float], bool | None] | None = None
        # The pipes whose acceptor let a verdict wait past VERDICT_WAIT_S
        # (stopped, not dead) and has not answered it since: their
        # __bpops are notified as __bwaits meanwhile, so that a push
        # serving many of their clients costs one wait, not one each.
        self.unanswered: set[int] = set()
        self.acceptor_lost_hooks.append(self.unanswered.discard)
        self.waiters.free = self._free_to_pop
        self.waiters.verdict = self._await_verdict
        self.waiters.send_wakes = self.send_wakes
        # Set by the loop (shardkv.worker.loop): send a frame, and block for
        # the next frame, on the current pipe (``keyspace.pipe``), and send
        # a frame on another acceptor's pipe (a wake, a share of events).
        self.send: Callable[..., None] = None  # type: ignore[assignment]  # set before use
        self.recv: Callable[[], bytes] = None  # type: ignore[assignment]
        self.send_to: Callable[[int, bytes], None] = _nowhere
        self.npipes = 1  # how many acceptors (pipes) there are
        # A frame that is no reply (a script's busy state): sent as it is,
        # without committing the AOF, which holds a running script's
        # effects until the script ends (they are logged as one group).
        self.send_state: Callable[[bytes], list[int]] | None = None
        # The busy script's K frames (see shardkv.worker.busyrefusal), set by the loop.
        self.refusals: Refusals | None = None
        # Runs ahead the WATCHes sent while a script is busy (see
        # shardkv.worker.busywatch), set by the loop.
        self.busy_watches: BusyWatches | None = None
        # A running script's question to the acceptor (a ``Q`` frame), sent
        # as it is on the current pipe only: the one its batch came on and
        # whose ``A`` frame it waits for.
        self.send_query: Callable[[bytes], None] | None = None
        # Send a frame with the next one, or when the pipe goes idle
        # (Pipe.hold_frame, set by the loop; None: send it now).
        self.hold_frame: Callable[[bytes], None] | None = None
        self.logged: list = []  # the last batch's replies that logged (run_batch)
        # While a batch's entry runs: the replies of the batch not yet sent
        # (run_batch's list, None between entries and while parked); and
        # the current pipe's frames held back (Pipe.held, set by the loop).
        # Together they say where a busy script's reply waits in its
        # acceptor's queue (see replies_ahead).
        self.bodies: list[bytes] | None = None
        # The running batch's entries and the iterator over them:
        # what follows a script that goes busy (see shardkv.worker.busyrefusal).
        self.batch: tuple[list, Any] | None = None
        self.held: list[bytes] = []
        self.backlog: list[bytes] = []  # frames that came while parked
        # Lua scripts (EVAL...): the engine and its script cache.
        self.scripts = scripting.Engine(self)
        self.scripts.nshards = nshards
        self.scripts.own = own = slot_range(index, nshards)
        if nshards > 1:
            self.scripts.own_lo, self.scripts.own_hi = own.start, own.stop
        self.keyspace.scripts = self.scripts
        # INFO commandstats/errorstats/latencystats and SLOWLOG for the
        # commands this shard runs (see shardkv.runtime.cmdstats); not for the parts
        # of a command that spans shards, which the acceptor counts.
        self.stats = self.keyspace.stats = Stats()
        self.stats.skip_local = True
        self.timing = True
        # Plain commands' entries by name as sent (a Plain, or False: not
        # plain), for run_batch (see shardkv.worker.plain); they hold rows
        # of these counters (``home_stats``, of this ``generation``).
        self.home_stats = self.stats
        self.stats.on_named = self._name_slow
        # While run_foreign holds the slow entries of an EXEC's scripts: each
        # script's held entry, in order, as (its index in the held log, the
        # entry) or None (not logged), named in Ran.logged once final.
        self._exec_slow: list[tuple[int, tuple] | None] | None = None
        # While _run_foreign runs an operation's commands: the address and
        # name of the client that sent them (wire.Run.client), for their
        # slow log entries, as Redis logs them; none otherwise.
        self.foreign_client: tuple[str, bytes] = ("", b"")
        self.plain: dict[bytes, plain.Plain | Literal[False]] = {}
        self.plain_generation = 0
        # run_batch's fast path's last name, its entry, how it runs and
        # where its times go, kept for the next batch (a pipeline's batches
        # often hold one name): forgotten with the entries (plain_table).
        self.last_plain: tuple[bytes, plain.Plain | Literal[False] | None, int, Callable[[int], None]]
        self.last_plain = _NO_PLAIN
        # The clock read that ended the last EVALSHA run_batch ran (execute_script).
        self.script_done = 0
        # The entry run now is a script call the client sent as another (an
        # EVAL as EVALSHA or the other way: its wire.FLAG_AS_CALLED bit).
        self.as_eval = 0
        # Cross-shard operations this shard has prepared, outcome unknown.
        self.prepared: dict[int, Prepared] = {}
        # The operations this shard ran a FLUSHALL of (see _run_foreign):
        # the changes their runs counted after it, for the commit's save.
        self.flushes: dict[int, int] = {}
        # The WATCH versions, by database, from before a run of scripts that
        # escaped (run_foreign): its undo puts them back, so that the run
        # again finds the watched keys unchanged, as the run undone never was.
        self.versions_before: dict[int, dict[int, dict[bytes, int]]] = {}
        # For each reply of the batch so far, how many events were noted
        # before it (None while nobody listens; see take_events).
        self.event_bounds: list[int] | None = None
        # A cross-shard operation's run: where each reply's events end in
        # keyspace.events, then in the events sent (see send_events).
        self.run_event_ends: list[int] | None = None
        # While a script of an operation's run of several commands runs:
        # its reply's place among the run's replies (see wire.encode_script_query).
        self.run_reply_at = -1
        self.events_counted: list[int] | None = None
        # Other acceptors' share of the events of the cross-shard operation
        # this shard is in (see _share_events): sent if it commits.
        self.op_events_from: int | None = None  # where its events begin in keyspace.events
        # Where the events of FLAG_PART entries lie in keyspace.events, as
        # (start, end): the acceptor of the command relays them (see
        # :meth:`_share_events`).
        self.part_spans: list[tuple[int, int]] = []
        # Several acceptors: how many ``O`` frames (other pipes' events)
        # went on each pipe, to number them (see wire's ``G``).
        self.others_sent: dict[int, int] = {}
        # Which reply of the batch made a key someone waits on ready first
        # (None: none), while someone listens: the events of serving it come
        # after the batch's replies (see _share_events).
        self.ready_at: int | None = None
        # The ``O`` frames, as (pipe, seq), that the events last taken went
        # out in: the wakes of the waiters served before them wait for them
        # (see send_wakes).
        self.wake_waits: list[tuple[int, int]] = []
        # Whether the current pipe got some of them: a wake on another pipe
        # waits for its acceptor too (an empty ``O`` frame after the batch's
        # ``R`` frame marks them handed out, see send_wakes).
        self.events_here = False

    def execute(self, args: list[bytes], handler=None) -> object:
        """Run one command and return its reply value.

        ``handler``, when given, runs instead of the registered one: the
        blocking form of a blocking command, which may return a
        :class:`~shardkv.worker.blocking.Wait` (then nothing ran yet).
        """
        ks = self.keyspace
        if handler is None:
            handler = HANDLERS.get(args[0]) or find(args[0])  # (find: the other case)
            if handler is None:
                return Error("ERR unknown command '{}'".format(args[0].decode("latin-1")))
        persistence = self.persistence
        if persistence is not None and persistence.misconf is not None and handler.writes and _writes(args):
            # As Redis: the disk cannot take writes (AOF or a failed bgsave).
            if self.timing:
                self.stats.rejected(stat_name(args), persistence.misconf)
            return Error(persistence.misconf)
        ks.counting = handler.reads
        start = perf_counter_ns()
        try:
            if not ks.noting or not handler.writes:
                value = handler(ks, args)
            else:  # someone listens: note the command's keyspace events
                before = events.before(ks, args)
                value = handler(ks, args)
                if type(value) is not Wait:
                    events.derive(ks, args, value, before)
        except CommandError as e:
            value = Error(e.message)
        except Exception:  # a bug must not take the shard down
            log.exception("shard %d: command %r failed", self.index, args[0])
            value = Error(errors.INTERNAL % commands.error_name(args))
        finally:
            ks.counting = False
        kind = type(value)
        if ks.ready_order is not None and kind is not Wait and handler.writes:
            note_ready(ks, args, ks.ready_order)
        if self.timing and args[0][0] != 95 and kind is not Wait:  # not __internal
            # Count it (see shardkv.runtime.cmdstats): one append of its time; calls,
            # time and the latency histogram are added up from the appended
            # times in bulk (Stats.fold).  A command that blocked is counted
            # when it is served, as Redis counts it once it unblocks.
            ns = perf_counter_ns() - start
            stats = self.stats
            row = stats.by_bytes.get(args[0]) or stats.row_of(args)
            if kind is Error and value.message.startswith(scripting.CROSS_MARKER):
                ns = -1  # a script that runs again across shards: that run counts and logs, not this one
            else:
                times = row[5]
                if self.as_eval and type(times) is ScriptTimes:
                    times.add_called(ns, self.as_eval)  # the client's command's time (see ScriptTimes)
                else:
                    times.append(ns)
                    if len(times) >= 256:
                        stats.fold(row)
                if kind is Error:
                    row[3] += 1
                    stats.error(value.message)
                elif kind is ScriptReply:
                    if type(value.tree) is Error:
                        row[3] += 1  # an error the script passed on, counted already
                    elif value.failures:  # errors in its arrays: the acceptor counts one
                        name = stat_name(args)
                        if self.as_eval:  # the client's command
                            name = called_name(name, self.as_eval)
                        stats._row(name)[3] += value.failures
            if ns >= stats.slow_threshold_ns >= 0 and not kept_elsewhere(row):
                if self.scripts.run is not None:  # a script's call is its Lua client's
                    stats.slow(args, ns // 1000, LUA_CLIENT_ADDR)
                else:  # a batch's entry (its reply's place): its acceptor names the client
                    self._log_slow(args, ns)
        elif args[0] in _SCRIPT_RUNS and self.stats is not None:
            # A script's run across shards (internal; args[2]: the client's
            # command, see acceptor.scripting._Retry), which the acceptor
            # counts: its time here, as a script's (see cmdstats.ScriptTimes).
            ns = perf_counter_ns() - start
            if kind is Error:
                # Its error is the script's reply, counted as a script's (see
                # shardkv.worker.scripting); one that must run again wider
                # counts nothing.
                if not value.message.startswith(scripting.CROSS_MARKER):
                    self.stats.add_run(self.stats._row(args[2].decode("latin-1")), ns)
                    self.stats.error(value.message)
            else:
                row = self.stats._row(args[2].decode("latin-1"))
                self.stats.add_run(row, ns)
                if kind is ScriptReply and value.failures:
                    row[3] += value.failures
        if kind is Error:
            ks.unchanged = False  # (a handler that failed after saying so: cleared)
            ks.changes = None  # (and its count: not the next write's)
            return value
        if ks.unchanged:
            ks.unchanged = False
            ks.changes = None  # (a count it set all the same: not the next write's)
        elif self.record is not None and kind is not Wait and args[0] not in self.unlogged:
            self.record(args, value)
        return value

    def execute_script(self, args: list[bytes], start: int) -> object:
        """:meth:`execute` of EVALSHA or EVALSHA_RO as a client spells it
        most (``_EVALSHA``), from :meth:`run_batch` while its plain table is
        in use (the shard's own counters, no maxmemory, no LFU, no keyspace
        events of writes, timing on: see :meth:`plain_table`) for an entry
        that takes the plain path (database 0, not counted as another
        command, no MONITOR): the same run and the same counts, without
        what cannot apply then (the handler's lookup, the disk's check of
        a write, which EVALSHA is not, keyspace events of writes, a
        blocking wait, the time of a command the client sent as another,
        a script's own call).

        Its time runs from ``start``, the end of the entry before it (as a
        plain command's, see run_batch), to :attr:`script_done`, the clock
        read that ends it, which run_batch takes as that end in turn: no
        clock read of its own at either end (each costs as much as a
        tenth of a GET)."""
        ks = self.keyspace  # (counting off, as execute sets it: EVALSHA's handler.reads)
        value: Any
        engine = ks.scripts
        try:
            script = None
            if args[2] == b"1" and len(args) > 3 and engine is not None and engine._vm is engine._eval_vm:
                # The script EVALSHA ran last, by one comparison of the SHA1
                # sent with its own (a pipeline's EVALSHAs mostly repeat
                # one): a dict's lookup hashes each new 40-byte argument.
                sha = args[1]
                if sha == engine.one_sha:
                    script = engine.one_script
                else:
                    script = engine.scripts.get(sha)
                    if script is not None:
                        engine.one_sha = sha
                        engine.one_script = script
            if script is not None:
                # scripting.evalsha's usual case, inline (a Python call
                # fewer): one key (and any arguments: a lock's token), a
                # script cached under the SHA1 as sent, EVAL's Lua state in
                # use.
                value = engine.run_group(args, script, start)  # type: ignore[union-attr]  # (a script: an engine)
            else:
                value = scripting.evalsha(ks, args)
        except CommandError as e:
            value = Error(e.message)
        except Exception:  # a bug must not take the shard down
            log.exception("shard %d: command %r failed", self.index, args[0])
            value = Error(errors.INTERNAL % commands.error_name(args))
        finally:
            ks.counting = False
        self.script_done = now = perf_counter_ns()
        return self.script_counted(args, value, now - start)

    def script_counted(self, args: list[bytes], value: Any, ns: int) -> object:
        """:meth:`execute_script`'s end: EVALSHA ``args``'s reply ``value``,
        which took ``ns``, counted (commandstats, errorstats, latency, the
        slow log) and recorded, as :meth:`execute` counts a command."""
        ks = self.keyspace
        stats = self.stats
        row = stats.by_bytes.get(args[0]) or stats.row_of(args)
        kind = type(value)
        if kind is bytes:
            pass  # the usual reply (a test fewer)
        elif kind is Error:
            if value.message.startswith(scripting.CROSS_MARKER):
                ks.unchanged = False  # (a handler that failed after saying so: cleared)
                ks.changes = None  # (and its count: not the next write's)
                return value  # it runs again across shards: that run counts and logs, not this one
            row[3] += 1
            stats.error(value.message)
        elif kind is ScriptReply:
            if type(value.tree) is Error:
                row[3] += 1  # an error the script passed on, counted already
            elif value.failures:  # errors in its arrays: the acceptor counts one
                stats._row(stat_name(args))[3] += value.failures
        times = row[5]
        times.append(ns)
        if len(times) >= 256:
            stats.fold(row)
        if ns >= stats.slow_threshold_ns >= 0:  # (its reply's place: its acceptor names the client)
            self._log_slow(args, ns)
        if kind is Error:
            ks.unchanged = False  # (a handler that failed after saying so: cleared)
            ks.changes = None  # (and its count: not the next write's)
            return value
        if ks.unchanged:
            ks.unchanged = False
            ks.changes = None  # (a count it set all the same: not the next write's)
        elif self.record is not None and args[0] not in self.unlogged:
            self.record(args, value)
        return value

    def _log_slow(self, args: list[bytes], ns: int) -> None:
        """A client's command took ``ns``, past the slow log's threshold:
        its entry.  A batch's names its reply's place, for its acceptor to
        name the client (see shardkv.acceptor.slowlog); an operation's
        command, run here with other shards' keys, the client the
        acceptor named in its Run (:attr:`foreign_client`)."""
        bodies = self.bodies
        if bodies is None or bodies is PARKED:
            self.stats.slow(args, ns // 1000, *self.foreign_client)
        else:
            self.stats.slow(args, ns // 1000, place=len(bodies))

    def execute_read(self, args: list[bytes], handler) -> object:
        """:meth:`execute` of a read-only command whose handler is known (a
        script's ``redis.call`` of a single-key read, see
        shardkv.worker.scripting): the same run and the same counts, less
        what such a command never needs (the handler's lookup, the disk
        check and keyspace events of writes, a blocking wait, a script's
        reply).  (The usual such call, ``Engine._call_raise``'s, runs this
        inline, with its counts noted for an undo.)"""
        ks = self.keyspace
        ks.counting = handler.reads
        start = perf_counter_ns()
        try:
            value = handler(ks, args)
        except CommandError as e:
            value = Error(e.message)
        except Exception:  # a bug must not take the shard down
            log.exception("shard %d: command %r failed", self.index, args[0])
            value = Error(errors.INTERNAL % commands.error_name(args))
        finally:
            ks.counting = False
        if self.timing and args[0][0] != 95:  # counted as execute counts it
            ns = perf_counter_ns() - start
            stats = self.stats
            row = stats.by_bytes.get(args[0]) or stats.row_of(args)
            times = row[5]
            times.append(ns)
            if len(times) >= 256:
                stats.fold(row)
            if type(value) is Error:
                row[3] += 1
                stats.error(value.message)
            if ns >= stats.slow_threshold_ns >= 0:
                stats.slow(args, ns // 1000, LUA_CLIENT_ADDR)  # (a script's call)
        if type(value) is Error:
            ks.unchanged = False  # (a handler that failed after saying so: cleared)
            ks.changes = None  # (and its count: not the next write's)
            return value
        if ks.unchanged:
            ks.unchanged = False
            ks.changes = None  # (a count it set all the same: not the next write's)
        elif self.record is not None and args[0] not in self.unlogged:
            self.record(args, value)
        return value

    def inquiry_answer(self, payload: bytes) -> bytes:
        """The ``I`` frame that answers the inquiry ``payload``: one of the
        verbs that read (or reset) this shard's figures, run now, wherever
        the shard is (see :data:`INQUIRIES`)."""
        try:
            args = wire.decode_inquiry(payload)
        except (wire.BadMessage, ValueError, EOFError, TypeError):
            args = []
        handler = find(args[0]) if args and args[0] in INQUIRIES else None
        if handler is None:
            value: object = Error("ERR bad inquiry")
        else:
            try:
                value = handler(self.keyspace, args)
            except CommandError as e:
                value = Error(e.message)
        return wire.encode_inquiry_answer(value)

    def execute_limited(self, args: list[bytes], handler=None) -> object:
        """:meth:`execute` while maxmemory is on: evict first, or refuse with
        OOM (see :mod:`shardkv.worker.eviction`)."""
        memory = self.keyspace.memory
        if memory is None:
            return self.execute(args, handler)
        value = memory.run(self.execute, args, handler)
        if value is eviction.OOM and self.timing:
            self.stats.rejected(stat_name(args), eviction.OOM.message)
        return value

    def plain_table(self) -> dict[bytes, plain.Plain | Literal[False]] | None:
        """The plain commands' entries (see :mod:`shardkv.worker.plain`), or
        None while something they leave out is on: maxmemory (eviction and
        OOM), an LFU policy (the inline GET/SET/INCR/DECR write an LRU
        stamp, not the LFU counter of :mod:`shardkv.worker.access`),
        keyspace events of writes, a shutdown, a script's counters in
        place of the shard's.  Asked once per batch, and again after each
        internal verb (``__config``, ``__resetstat``, a shutdown) and each
        parked operation, the only entries that change those (a script
        puts the shard's counters back before it returns).  -MISCONF may
        come with any reply sent (a failed AOF write): run_batch asks it of
        each plain write."""
        ks = self.keyspace
        stats = self.stats
        if stats is not self.home_stats or ks.memory is not None or ks.lfu or ks.noting or not self.timing:
            return None
        persistence = self.persistence
        if persistence is not None and persistence.closed:
            return None
        if stats.generation != self.plain_generation:  # CONFIG RESETSTAT: new rows
            self.plain.clear()
            self.plain_generation = stats.generation
            self.last_plain = _NO_PLAIN
        return self.plain

    def _learn(self, name: bytes) -> plain.Plain | Literal[False]:
        """The plain entry of ``name``, kept (False: not a plain command)."""
        found: plain.Plain | Literal[False] = (
            plain.entry(name, self.stats, self.persistence is not None) or False
        )
        if len(self.plain) < plain.MAX_NAMES:
            self.plain[name] = found
        return found

    def run_batch(self, payload: bytes) -> bytes:
        """Run a ``B`` payload and return the ``R`` payload of its replies
        (:meth:`_run_batch`), its slow entries held and pushed under one
        lock (see shardkv.runtime.slowlogfile) at its end, or before any
        frame leaves for an acceptor meanwhile (loop.Pipe.send: what that
        makes an acceptor log comes after them), named before their
        replies go (:meth:`_name_slow`)."""
        stats = self.home_stats
        if not stats.hold():
            return self._run_batch(payload)
        try:
            return self._run_batch(payload)
        finally:
            stats.holding = False
            stats.flush_held()

    def _run_batch(self, payload: bytes) -> bytes:
        """Run a ``B`` payload and return the ``R`` payload of its replies.

        A plain command (see :mod:`shardkv.worker.plain`) runs here, with
        one lookup of its entry and one clock read: its time in
        commandstats, latencystats and the slow log runs from the end of
        the entry before it (or from the batch's start) to its reply's
        encoding, so it holds its own share of the batch's work (as
        Redis's time of a command holds the writing of its reply into the
        client's buffer) and the times of a batch's plain commands add up
        to the batch's.  GET, SET key value, INCR and DECR, in their
        handlers' usual case, run here without a call of their handler
        (see :mod:`shardkv.worker.plain`).  Any other entry runs in
        :meth:`execute`, which times its handler alone."""
        items = wire.decode_batch(payload)
        if self.persistence is not None and self.persistence.closed:
            return self._refuse(items)  # SHUTDOWN has saved: nothing may change now
        ks = self.keyspace
        ks.now = ks.expiry_now = ks.clock.now_ms()  # Keyspace.tick, inline: one call less per batch
        bodies: list[bytes] = []
        self.bodies = bodies
        append = bodies.append
        execute = self.execute if ks.memory is None else self.execute_limited
        waiters = self.waiters
        blocked = waiters.by_key  # the keys someone waits on
        # The replies of the commands that logged something to the AOF, as
        # (index, part): refused if that cannot be written (see commit).
        writer = self.persistence.aof if self.persistence is not None else None
        logged: list[tuple[int, int]]  # (index of the reply, its FLAG_PART)
        self.logged = logged = []
        logged_before = 0
        plain_max = wire.PLAIN_MAX
        stream_min = wire.STREAM_MIN
        noted = ks.events  # None unless someone listens (shardkv.worker.events)
        bounds = self.event_bounds = [] if noted is not None else None
        entries = iter(items)  # (its length hint: where the batch is, see busyrefusal)
        self.batch = (items, entries)
        table = self.plain_table()
        plain_get: Callable[[bytes], plain.Plain | Literal[False] | None]
        plain_get = _NOT_PLAIN if table is None else table.get
        stats = self.home_stats  # (the counters while table is not None)
        persistence = self.persistence
        record = self.record
        flag_part = wire.FLAG_PART
        flag_resp3 = wire.FLAG_RESP3
        slotted_resp3 = wire.SLOTTED_RESP3
        slot_mask = wire.SLOT_MASK
        header_resp3 = wire.header_resp3
        last = perf_counter_ns()  # where the next plain command's time begins
        sent = 0  # when a plain command's streamed reply began to go (not timed)
        ran_until = 0  # the clock read that ended the EVALSHA just run (execute_script)
        body: bytes | None  # an entry's reply (None: streamed)
        # The slow log's threshold, whether a plain write is only counted,
        # and the fast path (see _gates: asked again after each entry that
        # is not plain): a slotted GET, SET key value, INCR or DECR in its
        # handler's usual case, while nothing else is on.
        slow_ns, counts_only, fast_below = _gates(stats, persistence, table, writer, noted, blocked)
        # The last name it looked up (b"": none since the table was asked;
        # kept from the batch before while the table keeps its entries),
        # its entry, how it runs, and where its times go: folded when the
        # name changes and at the batch's end, not after each command (what
        # reads a row folds its pending times first, however many).
        fast_entry: plain.Plain | Literal[False] | None
        fast_name, fast_entry, fast_inline, fast_time = self.last_plain
        # What the fast path reads, in locals, and what it counts: read again
        # (``stale``) after any entry off it (which may select a database,
        # flush, swap, watch a key, or run a script), once an entry it runs
        # inline comes (not for each of a run of EVALSHAs), before which its
        # counts go where the rest of the shard reads them (and at the
        # batch's end).
        data = ks.data
        clocks = ks.clocks
        expires = ks.expires
        watched = ks.watched
        now_ms = ks.now
        stale = False
        writes = hits = misses = 0
        # Globals and builtins the fast path uses per command, as locals (a
        # LOAD_FAST, no dictionary version checks).
        is_set, is_get, ok_reply, bulk_lines = _SET, _GET, OK_REPLY, BULK_LINES
        type_of, bytes_type, size_of = type, bytes, len
        # (No strict=True: a keyword is parsed per call; the count is tested after.)
        for header, args in zip(entries, entries):  # noqa: B905
            if header < fast_below:  # slotted, fast path on (it changes nothing before it knows it applies)
                name = args[0]
                if name != fast_name:  # (a pipeline's commands often come in runs of one name)
                    if fast_entry and len(fast_entry.times) >= 256:
                        stats.fold(fast_entry.row)
                    fast_entry = plain_get(name)
                    if fast_entry is None:
                        fast_entry = self._learn(name)
                    fast_name = name
                    if fast_entry:
                        fast_inline = fast_entry.inline
                        fast_time = fast_entry.times.append
                    else:
                        fast_inline = 0
                if fast_inline:
                    if stale:  # (an entry off it ran: read again only for one that runs here)
                        data = ks.data
                        clocks = ks.clocks
                        expires = ks.expires
                        watched = ks.watched
                        now_ms = ks.now
                        stale = False
                    key = args[1]
                    slot = header & slot_mask
                    exp = expires[slot]
                    if fast_inline is is_set:  # set_ and Keyspace.store
                        if size_of(args) == 3:
                            data[slot][key] = args[2]
                            clocks[key] = now_ms
                            if exp and exp.pop(key, None) is not None:
                                ks.nvolatile -= 1
                            if watched and key in watched:
                                watched[key] += 1
                            writes += 1  # (a write: all record does then)
                            # Done: its time and reply, as below (written
                            # out here and in GET's hit: no reply to hold
                            # and test).
                            now = perf_counter_ns()
                            ns = now - last
                            last = now
                            fast_time(ns)
                            if ns >= slow_ns:
                                stats.slow(args, ns // 1000, place=len(bodies))
                            append(ok_reply)
                            continue
                    elif not exp or key not in exp or exp[key] > ks.expiry_now:  # Keyspace.lookup
                        value = data[slot].get(key)
                        body = None
                        if type_of(value) is not bytes_type:
                            # A miss (no keyspace event: see _fast).
                            if value is None and fast_inline is is_get:
                                misses += 1
                                body = NULL_RESP3 if header & slotted_resp3 else NULL_RESP2
                        elif fast_inline is is_get:
                            n = len(value)
                            if n < 1024:
                                clocks[key] = now_ms
                                hits += 1
                                now = perf_counter_ns()  # done, as SET above
                                ns = now - last
                                last = now
                                fast_time(ns)
                                if ns >= slow_ns:
                                    stats.slow(args, ns // 1000, place=len(bodies))
                                append(bulk_lines[n] + value + b"\r\n")
                                continue
                        elif (n := len(value)) < 19 and value.isdigit() and value >= b"1":
                            # _incr's usual case, as below, told cheaper: ASCII
                            # digits with no leading zero are the canonical
                            # form (what int() would read and %d write back),
                            # and 18 of them are far from the limits.
                            value = int(value) + fast_entry.step  # type: ignore[union-attr]
                            data[slot][key] = value = b"%d" % value
                            clocks[key] = now_ms
                            if watched and key in watched:
                                watched[key] += 1
                            writes += 1
                            body = b":%b\r\n" % value
                        elif n <= 20:  # _incr, as below: a sign, 0, 19 or 20 digits
                            try:
                                current = int(value)
                            except ValueError:
                                current = LLONG_MAX
                            if LLONG_MIN < current < LLONG_MAX and b"%d" % current == value:
                                value = current + fast_entry.step  # type: ignore[union-attr]
                                data[slot][key] = b"%d" % value
                                clocks[key] = now_ms
                                if watched and key in watched:
                                    watched[key] += 1
                                writes += 1
                                body = b":%d\r\n" % value
                        if body is not None:  # done: its time, as below (sent is 0 here)
                            now = perf_counter_ns()
                            ns = now - last
                            last = now
                            fast_time(ns)
                            if ns >= slow_ns:
                                stats.slow(args, ns // 1000, place=len(bodies))
                            append(body)
                            continue
            if not stale:  # the first entry off the fast path since it ran
                stale = True
                if writes:
                    persistence.dirty += writes  # type: ignore[union-attr]  # (the fast path ran: not None)
                    writes = 0
                ks.hits += hits
                ks.misses += misses
                hits = misses = 0
            if writer is not None:
                logged_before = len(writer.buf)
            if header <= plain_max:  # the usual entry: database 0, no token, no park (or slotted)
                if header >= flag_part:  # FLAG_PART, and maybe RESP3 (a slotted header is negative)
                    start = len(noted) if noted is not None else 0
                    self.timing = False
                    value = execute(args)
                    self.timing = True
                    append(wire.encode_part(value))
                    if noted is not None and len(noted) > start:
                        self.part_spans.append((start, len(noted)))
                    if args[0][:1] == b"_":  # __config, __resetstat... (as a fan-out's part): see plain_table
                        table = self.plain_table()
                        plain_get = _NOT_PLAIN if table is None else table.get
                        fast_name = b""
                        execute = self.execute if ks.memory is None else self.execute_limited
                    writer, noted, bounds = self._turned_on(writer, noted, bounds, len(bodies))
                    slow_ns, counts_only, fast_below = _gates(
                        stats, persistence, table, writer, noted, blocked
                    )
                    if table is not None:
                        last = perf_counter_ns()
                else:
                    if header < fast_below:  # the fast path has its entry (and left it to this path)
                        entry = fast_entry
                    else:
                        entry = plain_get(args[0])
                        if entry is None:
                            entry = self._learn(args[0])
                    if entry and entry.writes and persistence is not None and persistence.misconf is not None:
                        entry = False  # -MISCONF: execute refuses it
                    body = _BY_HANDLER  # (bytes once made, None if streamed)
                    if entry:  # a plain command: execute's work, inline (see plain)
                        inline = entry.inline
                        if inline:  # GET, SET, INCR: its handler's usual case, inline (see plain)
                            key = args[1]
                            if header < 0:  # slotted: the acceptor's (see wire.SLOTTED)
                                slot = header & slot_mask
                            else:
                                slot = key_slot(key) if LBRACE in key else crc_hqx(key, 0) & 16383
                            exp = ks.expires[slot]
                            if inline is _SET:  # set_ and Keyspace.store
                                if len(args) == 3:
                                    ks.data[slot][key] = args[2]
                                    ks.clocks[key] = ks.now
                                    if exp and exp.pop(key, None) is not None:
                                        ks.nvolatile -= 1
                                    watched = ks.watched
                                    if watched and key in watched:
                                        watched[key] += 1
                                    value = OK
                                    body = OK_REPLY
                            elif not exp or key not in exp or exp[key] > ks.expiry_now:  # Keyspace.lookup
                                value = ks.data[slot].get(key)
                                if type(value) is not bytes:
                                    pass  # missing, or not a string the handler can read as it is
                                elif inline is _GET:  # get
                                    n = len(value)
                                    if n < 1024:  # (a longer one: its reply as the handler's)
                                        ks.clocks[key] = ks.now
                                        ks.hits += 1
                                        body = BULK_LINES[n] + value + b"\r\n"
                                elif len(value) <= 20:  # _incr, by entry.step (+1 or -1)
                                    try:
                                        current = int(value)
                                    except ValueError:
                                        current = LLONG_MAX  # (the handler's error)
                                    # (the limits themselves: the handler's error, or its sum)
                                    if LLONG_MIN < current < LLONG_MAX and b"%d" % current == value:
                                        value = current + entry.step
                                        ks.data[slot][key] = b"%d" % value
                                        ks.clocks[key] = ks.now
                                        watched = ks.watched
                                        if watched and key in watched:
                                            watched[key] += 1
                                        body = b":%d\r\n" % value
                        if body is _BY_HANDLER:
                            ks.counting = entry.reads
                            try:
                                value = entry.handler(ks, args)
                            except CommandError as e:
                                value = Error(e.message)
                            except Exception:  # a bug must not take the shard down
                                log.exception("shard %d: command %r failed", self.index, args[0])
                                value = Error(errors.INTERNAL % commands.error_name(args))
                            finally:
                                ks.counting = False
                            if type(value) is Error:
                                ks.unchanged = False  # (a handler that failed after saying so: cleared)
                                ks.changes = None  # (and its count: not the next write's)
                                entry.row[3] += 1
                                stats.error(value.message)
                                logs = False
                            elif ks.unchanged:
                                ks.unchanged = False
                                ks.changes = None  # (a count it set all the same: not the next write's)
                                logs = False
                            else:
                                logs = entry.logs
                        else:
                            logs = entry.logs
                        if logs:  # a write (with -MISCONF on, see below)
                            if counts_only:  # (all record does then)
                                changes = ks.changes
                                if changes is None:
                                    persistence.dirty += 1  # type: ignore[union-attr]
                                else:
                                    ks.changes = None  # (and its count: not the next write's)
                                    persistence.count(changes)  # type: ignore[union-attr]
                            else:
                                record(args, value)  # type: ignore[misc]
                    elif table is not None and args[0] in _EVALSHA:
                        # A script changes nothing plain_table, the slow
                        # log's threshold, counts_only or fast_below depend
                        # on, so they are not asked again: CONFIG, BGSAVE,
                        # BGREWRITEAOF are noscript (-MISCONF without an AOF
                        # comes from a save, in the cron between batches),
                        # a script blocks nobody on a key, and a cross-shard
                        # operation's suspension comes in an entry of its own.
                        engine = ks.scripts
                        if (
                            engine is not None
                            and args[1] == engine.one_sha
                            and args[2] == b"1"
                            and len(args) > 3
                            and engine._vm is engine._eval_vm
                        ):
                            # execute_script's usual case, inline (a Python
                            # call fewer): the script EVALSHA ran last, one
                            # key.  The same run and the same counts.  The
                            # entries right behind it that are the same
                            # EVALSHA (a pipeline's mostly are) run in the
                            # same call (Engine.run_group), each timed and
                            # counted as its own command, its reply appended
                            # at once where nothing else needs it (not
                            # streamed, nothing logged to the AOF, no waiter
                            # to serve, no events).
                            name = args[0]
                            ended = engine.run_group(
                                args,
                                engine.one_script,  # type: ignore[arg-type]  # (one_sha: its entry)
                                last,
                                self.batch,
                                header,
                                perf_counter_ns,
                                stats.by_bytes.get(name) or stats.row_of(args),
                                slow_ns,
                                self._log_slow,
                                record if record is not None and name not in self.unlogged else None,
                                append if writer is None and noted is None and not blocked else None,
                            )
                            if type(ended) is int:  # every reply appended: the entries are done
                                last = ended  # (the next entry's time starts at the last one's end)
                                continue
                            value, args, header, ran_until = ended
                        else:
                            value = self.execute_script(args, last)
                            ran_until = self.script_done
                    else:
                        value = execute(args)
                        if args[0][:1] == b"_":  # an internal verb (__config...): see plain_table
                            table = self.plain_table()
                            plain_get = _NOT_PLAIN if table is None else table.get
                            fast_name = b""  # (its entries may be new: see plain_table)
                            execute = self.execute if ks.memory is None else self.execute_limited
                        writer, noted, bounds = self._turned_on(writer, noted, bounds, len(bodies))
                        slow_ns, counts_only, fast_below = _gates(
                            stats, persistence, table, writer, noted, blocked
                        )
                    # The replies of GET, SET, INCR... as encode makes them,
                    # inline (+OK, the null reply and an integer are too
                    # short to stream).
                    if body is not _BY_HANDLER:
                        pass  # made inline
                    elif value is OK:
                        body = OK_REPLY
                    elif type(value) is bytes:
                        n = len(value)
                        body = BULK_LINES[n] + value + b"\r\n" if n < 1024 else b"$%d\r\n%s\r\n" % (n, value)
                        if len(body) > stream_min:
                            sent = perf_counter_ns()
                            if self._stream(bodies, body, writer, logged_before):
                                body = None
                    elif value is None:  # GET of a missing key
                        body = (
                            NULL_RESP3
                            if (header & flag_resp3 if header >= 0 else header & slotted_resp3)
                            else NULL_RESP2
                        )
                    elif type(value) is int:
                        body = b":%d\r\n" % value
                    elif type(value) is list and len(value) > BIG_ARRAY:
                        sent = perf_counter_ns()
                        body = self._stream_array(bodies, value, header_resp3(header), writer, logged_before)
                    else:
                        body = encode(value, header_resp3(header))
                        if len(body) > stream_min:
                            sent = perf_counter_ns()
                            if self._stream(bodies, body, writer, logged_before):
                                body = None
                    if entry:  # its time: since the entry before it was done (see above)
                        now = perf_counter_ns()
                        if sent:  # not the time its reply took to go
                            ns = sent - last
                            sent = 0
                        else:
                            ns = now - last  # not the wait in the pipe
                        last = now
                        times = entry.times
                        times.append(ns)
                        if len(times) >= 256:
                            stats.fold(entry.row)
                        if ns >= slow_ns:  # (its reply's place, unless it went already)
                            stats.slow(args, ns // 1000, place=-1 if body is None else len(bodies))
                    elif ran_until and not sent:  # EVALSHA's end (execute_script), its reply not streamed
                        last = ran_until
                        ran_until = 0
                    else:
                        sent = ran_until = 0
                        if table is not None:
                            last = perf_counter_ns()
                    if body is None:  # streamed, after the replies before it
                        self.bodies = bodies = []
                        append = bodies.append
                        self.logged = logged = []
                        if blocked:
                            waiters.mark(args)
                            if waiters.ready and not waiters.deferred:
                                waiters.serve_ready()  # right after the command, as Redis
                        continue
                    append(body)
                if writer is not None and len(writer.buf) != logged_before:
                    logged.append((len(bodies) - 1, header & flag_part if header >= 0 else 0))
                if blocked:
                    waiters.mark(args)
                    if waiters.ready:
                        if self.ready_at is None and bounds is not None:
                            self.ready_at = len(bounds)  # this reply's index (see _share_events)
                        if not waiters.deferred:
                            waiters.serve_ready()  # right after the command, as Redis
                if noted is not None:
                    bounds.append(len(noted))  # type: ignore[union-attr]
                continue
            db = wire.header_db(header)
            if db:
                ks.select(db)  # the entry's database, until it is done
            # A CLIENT NO-TOUCH client's entry: no access clocks (a parked
            # operation's ``__park`` never carries the flag: its Run says
            # which of its commands run so, wire.Run.no_touch).
            touching = access.no_touch(ks) if header & wire.FLAG_NOTOUCH else None
            if header & wire.FLAG_ACL:  # a script of a client whose ACL user is limited
                self.scripts.set_user(args.pop())
            if header & wire.FLAG_PARK:
                if args is GATHERED:  # prepared with a part before it (see gather_parts)
                    if touching is not None:
                        access.touch_again(ks, touching)
                    if db:
                        ks.select(0)
                    continue
                mark = len(noted) if noted is not None else 0
                body, op = self.enter(args)
                append(body)
                if noted is not None:
                    bounds.append(len(noted))  # type: ignore[union-attr]
                if op is not None:
                    if args[0] == Verb.PREPARE:
                        i = len(items) - length_hint(entries) - 2  # this entry's place
                        ops = self.gather_parts(op, items, i, append, bounds)
                    else:
                        ops = [op]
                    self.op_events_from = mark  # the operation's events: other pipes get them at its commit
                    self.send_events(bounded=True)
                    self.send(wire.encode_replies(bodies))
                    self.send_wakes()
                    faultpoints.hold("parked", self.index)
                    bodies = []
                    append = bodies.append
                    self.logged = logged = []
                    self.bodies = PARKED  # what runs while parked is no entry of this batch
                    if touching is not None:  # (a NO-TOUCH client's parts ran: ``__prepare``)
                        access.touch_again(ks, touching)
                        touching = None
                    try:
                        self.park(ops)
                    finally:
                        self.op_events_from = None
                        self.bodies = bodies
                        self.batch = (items, entries)
                    noted = ks.events
                    bounds = self.event_bounds = [] if noted is not None else None
                    self.keyspace.tick()
            else:
                token = wire.header_token(header)
                if token:  # a blocking command
                    if waiters.ready:
                        waiters.serve_ready()  # who blocked before it comes first
                    stamp = wire.take_stamp(header, args)
                    append(waiters.run(execute, token, header & wire.FLAG_RESP3, args, stamp))
                elif header & wire.FLAG_PART:
                    start = len(noted) if noted is not None else 0
                    self.timing = False
                    value = execute(args)
                    self.timing = True
                    append(wire.encode_part(value))
                    if noted is not None and len(noted) > start:
                        self.part_spans.append((start, len(noted)))
                elif header & wire.FLAG_MONITOR:
                    self.as_eval = self.stats.as_eval = header & wire.FLAG_AS_CALLED
                    try:
                        append(self._monitored(args, header & wire.FLAG_RESP3))
                    finally:
                        self.as_eval = self.stats.as_eval = 0
                else:
                    if header & wire.FLAG_AS_CALLED:
                        self.as_eval = self.stats.as_eval = header & wire.FLAG_AS_CALLED
                        value = execute(args)
                        self.as_eval = self.stats.as_eval = 0
                    else:
                        value = execute(args)
                    if header & wire.FLAG_ACL:  # before the reply's pieces, if it streams
                        self._send_acl_log()
                    if type(value) is list and len(value) > BIG_ARRAY:
                        body = self._stream_array(
                            bodies, value, header & wire.FLAG_RESP3, writer, logged_before
                        )
                    else:
                        body = encode(value, header & wire.FLAG_RESP3)
                        if len(body) > wire.STREAM_MIN and self._stream(bodies, body, writer, logged_before):
                            body = None
                    if body is None:  # streamed, after the replies before it
                        self.bodies = bodies = []
                        append = bodies.append
                        self.logged = logged = []
                    else:
                        append(body)
                if writer is not None and len(writer.buf) != logged_before:
                    logged.append((len(bodies) - 1, header & wire.FLAG_PART))
                if blocked:
                    waiters.mark(args)
                    if waiters.ready:
                        if self.ready_at is None and bounds is not None:
                            self.ready_at = len(bounds)  # this reply's index (see _share_events)
                        if not waiters.deferred:
                            waiters.serve_ready()  # right after the command, as Redis
                if noted is not None:
                    bounds.append(len(noted))  # type: ignore[union-attr]
            if header & wire.FLAG_ACL:
                self._send_acl_log()
            if touching is not None:
                access.touch_again(ks, touching)
            if db:
                ks.select(0)
            if header & wire.FLAG_PARK or args[0][0] == 95:  # see plain_table
                table = self.plain_table()
                plain_get = _NOT_PLAIN if table is None else table.get
                fast_name = b""
            writer, noted, bounds = self._turned_on(writer, noted, bounds, len(bodies))
            slow_ns, counts_only, fast_below = _gates(stats, persistence, table, writer, noted, blocked)
            if table is not None:
                last = perf_counter_ns()
        if writes:
            persistence.dirty += writes  # type: ignore[union-attr]
        ks.hits += hits
        ks.misses += misses
        if len(items) & 1:
            raise ValueError("a B payload whose last header has no entry")
        waiters.deferred = False  # (a __defer's __serve comes in its batch)
        if waiters.ready:
            # What is left: keys made ready behind __defer, by a parked
            # operation's commit, or by a serve (see Waiters.serve_ready).
            waiters.serve_ready()
        if fast_entry and len(fast_entry.times) >= 256:
            stats.fold(fast_entry.row)
        self.last_plain = (fast_name, fast_entry, fast_inline, fast_time)
        self.bodies = self.batch = None
        return wire.encode_replies(bodies)

    def replies_ahead(self) -> int:
        """While a batch's entry runs (a script going busy): how many
        replies its acceptor awaits from this pipe before this entry's, the
        batch's not yet sent and those of earlier batches held back (see
        loop.Pipe.send); the acceptor finds the entry's client there.
        :data:`wire.SCRIPT_PARKED` while parked (a cross-shard operation's
        script, run by the operation that parked the shard); -1 when no
        batch's entry runs."""
        bodies = self.bodies
        if bodies is None:
            return -1
        if bodies is PARKED:
            return wire.SCRIPT_PARKED
        return len(bodies) + sum(wire.count_replies(f) for f in self.held if f[:1] == b"R")

    def _name_slow(self, named: list[tuple[int, int]]) -> None:
        """The slow log's entries ``(id, place)`` are commands of the batch
        that runs, whose replies are at those places of its replies not
        sent yet: tell its acceptor which of the replies it awaits are
        theirs (one ``N`` frame, now, before those replies), so that it
        names their clients (see shardkv.acceptor.slowlog).  Only logged
        commands cost this."""
        if self.send_query is None:
            return
        before = sum(wire.count_replies(f) for f in self.held if f[:1] == b"R")  # (held back)
        self.send_query(wire.encode_slow_names([(before + place, entry_id) for entry_id, place in named]))

    def _send_acl_log(self) -> None:
        """A script of a limited user ran: its ``L`` frame (ACL LOG's entries
        of the calls it was refused), if any, goes now, before its reply
        (batched, or streamed in ``P`` frames: the acceptor logs them when
        the reply is whole, and drops a later frame).  Its user is done."""
        self.scripts.user = None
        refused = self.scripts.take_acl_log()
        if refused is not None:
            self.send(refused)

    def _turned_on(
        self, writer: Any, noted: list | None, bounds: list[int] | None, replies: int
    ) -> tuple[Any, list | None, list[int] | None]:
        """run_batch's AOF writer, events list and their bounds, read again
        after an entry off the plain path: one may have turned the AOF on or
        off (``__config appendonly``, a CONFIG SET on another connection
        that reached this batch) or keyspace events on (``__events``), and
        the entries after it must see that, as the next command after
        Redis's CONFIG SET does (a write logged after the base just forked,
        its events noted).  Events turned on give the ``replies`` so far a
        bound of 0 each (none was noted before them)."""
        persistence = self.persistence
        if persistence is not None:
            writer = persistence.aof
        if noted is None and self.keyspace.events is not None:
            noted = self.keyspace.events
            bounds = self.event_bounds = [0] * replies
        return writer, noted, bounds

    def _stream(self, bodies: list[bytes], body: bytes, writer: object, logged_before: int) -> bool:
        """Send ``body``, a big reply, in pieces (``P`` frames, see
        :mod:`shardkv.wire`) after the replies before it (``bodies``): so
        neither this process nor the acceptor ever holds a second copy of
        it.  False (nothing sent) if it cannot: no pipe, or the command
        logged a write, whose reply must wait for the AOF like any other."""
        send = self.send
        if send is None or (writer is not None and len(writer.buf) != logged_before):  # type: ignore[attr-defined]
            return False
        if bodies:
            send(wire.encode_replies(bodies))
        view = memoryview(body)
        size = len(body)
        piece = wire.STREAM_PIECE
        for start in range(0, size, piece):
            send(wire.encode_piece(view[start : start + piece], start + piece >= size))
        return True

    def _stream_array(
        self, bodies: list[bytes], value: list, resp3: int, writer: Any, logged_before: int
    ) -> bytes | None:
        """A long array (LRANGE 0 -1, KEYS of millions): if it holds only
        bulk strings and can stream (see :meth:`_stream`), send it encoded a
        slice at a time, one ``P`` frame per slice, never whole, and return
        None; else its encoded reply."""
        send = self.send
        if send is None or (writer is not None and len(writer.buf) != logged_before):
            return encode(value, resp3)
        if not set(map(type, value)) <= {bytes}:
            return encode(value, resp3)
        if bodies:
            send(wire.encode_replies(bodies))
        send(wire.encode_piece(b"*%d\r\n" % len(value), False))
        n = len(value)
        for start in range(0, n, BIG_ARRAY):
            last = start + BIG_ARRAY >= n
            send(wire.encode_piece(encode_bulk_strings(value[start : start + BIG_ARRAY]), last))
        return None

    def _monitored(self, args: list[bytes], resp3: int) -> bytes:
        """Run a script sent with MONITOR on; send the commands it called
        (``M``) before its reply, which is returned."""
        engine = self.scripts
        calls: list[tuple[int, list[bytes]]] = []  # (database, args) of each call
        engine.monitor = calls
        try:
            value = self.execute(args) if self.keyspace.memory is None else self.execute_limited(args)
        finally:
            engine.monitor = None
        escaped = type(value) is Error and value.message.startswith(scripting.CROSS_MARKER)
        if self.send is not None:  # one M frame per such script; an escape's lines come from its rerun
            self.send(wire.encode_monitor([] if escaped else calls))
        return encode(value, resp3)

    def take_events(self, bounded: bool = False, ends: list[int] | None = None) -> bytes | None:
        """The ``E`` payload of the events noted since the last one, or None.

        ``event_bounds`` (set by :meth:`run_batch`) says, for each reply of
        the ``R`` frame that follows, how many events come before it; with
        no bounds (``bounded`` false: the sweeper's, a cross-shard
        operation's) the acceptor hands them all out at once."""
        ks = self.keyspace
        noted = ks.events
        bounds = self.event_bounds if bounded else None
        self.event_bounds = None
        spans, self.part_spans = self.part_spans, []
        ready_at, self.ready_at = self.ready_at, None
        self.wake_waits = []
        self.events_here = False
        if not noted:
            if noted is not None and not ks.event_mask:
                ks.events = None
            return None
        ks.events = [] if ks.event_mask else None
        masks = ks.event_masks
        if len(masks) > 1 or (masks and ks.pipe not in masks):
            return self._share_events(noted, bounds, spans, ready_at, ends)  # other acceptors listen too
        self.events_here = True
        if ends is not None:
            self.events_counted = [end - len(noted) for end in ends]
        return wire.encode_events(bounds, noted)

    def _share_events(
        self,
        noted: list,
        bounds: list[int] | None,
        spans: list[tuple[int, int]],
        ready_at: int | None = None,
        ends: list[int] | None = None,
    ) -> bytes | None:
        """Several acceptors listen: each other pipe gets the events its
        ``__events`` mask selects at once, unbounded; the current pipe's
        share (its ``E`` payload, bounds recounted) is returned.

        The events of a command that spans shards (a FLAG_PART entry's, in
        ``spans``, or a cross-shard operation's, from ``op_events_from``)
        go to the current pipe alone, whichever acceptor wants them: its
        acceptor orders them across the shards and relays them to the
        others (``events`` on the bus, see shardkv.acceptor.shardlink).

        Blocked commands that a write of the batch made ready are served
        after the batch (their events after its last bound), as Redis serves
        them right after that write and before its reply: so when their
        events went to another pipe, the replies from ``ready_at`` (the
        first such write's) on wait too."""
        ks = self.keyspace
        here = ks.pipe
        start = self.op_events_from
        relayed = [False] * len(noted)
        for first, end in spans:
            end = min(end, len(noted))
            relayed[first:end] = [True] * max(0, end - first)
        if start is not None:
            relayed[start:] = [True] * (len(noted) - start)
            self.op_events_from = 0  # all that is noted from now on is the operation's
        others = 0
        shared = bytearray(len(noted))  # 1 where an event went to another pipe
        waits: list[tuple[int, int]] = []  # (pipe, seq) of the O frames sent
        # Each event's command: its reply's index in the R frame (-1: none),
        # so that an invalidation for that command's client, a REDIRECT
        # target, goes before its reply (see ShardLink.when_batched).
        replies: list[int] | None = None
        if bounds:
            replies = [-1] * len(noted)
            done = 0
            for i, bound in enumerate(bounds):
                replies[done:bound] = [i] * max(0, bound - done)
                done = max(done, bound)
            del replies[len(noted) :]
        # The pipes of the clients whose blocked commands a write served
        # here: each gets those commands' events while it listens, whatever
        # its mask selects, as what its acceptor hands out after them waits
        # for their replies (see shardkv.acceptor.pubsub.served_before).
        served_to = {pipe for pipe, _ in self.waiters.served} if self.waiters.served else ()
        for pipe, mask in ks.event_masks.items():
            if pipe == here:
                continue
            mask &= ~wire.EVENT_SCRIPT_READ  # a read of the current pipe's client
            others |= mask
            now = []
            of: list[int] = []
            for i, (e, r) in enumerate(zip(noted, relayed, strict=True)):
                if not r and (e[2] & mask or (pipe in served_to and mask and _served_on(e[2], pipe))):
                    now.append(e)
                    shared[i] = 1
                    if replies is not None:
                        of.append(replies[i])
            if now:
                seq = self.others_sent[pipe] = self.others_sent.get(pipe, 0) + 1
                writer = (here, of) if replies is not None else None
                self.send_to(pipe, wire.encode_others_events(seq, now, writer))
                waits.append((pipe, seq))
        self.wake_waits = waits
        if waits and faultpoints.ACTIVE:
            faultpoints.hold("shared", self.index)  # the fault-injection tests only
        mine = ks.event_masks.get(here, 0)
        kept = [bool(e[2] & (mine | others if r else mine)) for e, r in zip(noted, relayed, strict=True)]
        if here in served_to and mine:
            kept = [k or _served_on(e[2], here) for e, k in zip(noted, kept, strict=True)]
        # (A G frame with none of them, for the replies it gates, hands out nothing here.)
        self.events_here = any(kept)
        gated: list[int] = []
        if waits and bounds:
            # The replies whose commands' events went elsewhere wait (on the
            # current pipe's acceptor) until those acceptors handed them out.
            done = 0
            for i, bound in enumerate(bounds):
                if bound > done and any(shared[done:bound]):
                    gated.append(i)
                done = bound
            if ready_at is not None and ready_at < len(bounds) and any(shared[bounds[ready_at] :]):
                gated = sorted(set(gated).union(range(ready_at, len(bounds))))
        if ends is not None:  # (see send_events)
            sent = [0, *accumulate(kept)]
            self.events_counted = [sent[end] - sent[-1] for end in ends]
        if all(kept):
            events, counted = noted, bounds
        elif not any(kept):
            if not gated:
                return None
            events, counted = [], [0] * len(bounds)  # type: ignore[arg-type]
        else:
            before = [0]  # how many kept events come before each position
            for k in kept:
                before.append(before[-1] + k)
            events = [e for e, k in zip(noted, kept, strict=True) if k]
            counted = None if bounds is None else [before[b] for b in bounds]
        if gated:
            return wire.encode_gated_events(counted, events, gated, waits)
        return wire.encode_events(counted, events)

    def send_events(self, bounded: bool = False, ends: list[int] | None = None) -> None:
        """Send what has been noted, before the next frame.  ``ends``: a
        cross-shard operation's run, where each reply's events end in what
        was noted; :attr:`events_counted` then says where they end in what
        was sent (see wire.Ran.bounds)."""
        self.events_counted = None
        frame = self.take_events(bounded, ends)
        if frame is not None:
            self.send(frame)

    def send_wakes(self) -> None:
        """Send the late replies of the blocked commands served or timed out
        (after the replies that said they blocked), each on its command's pipe.

        With several acceptors, the reply of one that a write served waits
        (``J``) for the ``O`` frames its batch's events went out in, on the
        other acceptors than its own: as Redis writes the invalidations for
        the served client (a REDIRECT target of a tracking client there)
        while it serves it, before its reply."""
        waiters = self.waiters
        if waiters.wakes:
            wakes, waiters.wakes = waiters.wakes, []
            served, waiters.served = waiters.served, []
            here = self.keyspace.pipe
            gated = (
                {id(frame) for pipe, frame in served}
                if served and (self.wake_waits or self.events_here)
                else ()
            )
            marked: list[tuple[int, int]] | None = None  # the empty O frame on the current pipe, once sent
            failed: BaseException | None = None
            for pipe, frame in wakes:
                if gated and id(frame) in gated:
                    waits = [wait for wait in self.wake_waits if wait[0] != pipe]
                    if self.events_here and pipe != here:
                        if marked is None:
                            marked = []
                            try:
                                marked.append(self._mark_handed_out(here))
                            except (EOFError, OSError) as e:  # the writer's acceptor has gone
                                failed = e  # (none to wait for there)
                        waits += marked
                    if waits:
                        frame = wire.encode_gated_wake(frame, waits)
                try:
                    if pipe == here:
                        self.send(frame)
                    else:
                        self.send_to(pipe, frame)
                except (EOFError, OSError) as e:  # that acceptor has gone: the others' wakes still go
                    failed = e
            if failed is not None:
                raise failed

    def gate_on_behind(self, noted: bytes | None, reply: bytes) -> tuple[bytes | None, list[tuple[int, int]]]:
        """With several acceptors, the events frame for the batch's
        ``reply`` (``noted``, or None) when the batch served a client of
        another acceptor with commands pipelined behind its blocking one
        (``Waiters.behind_served``): a ``G`` frame that holds every reply
        of the batch until that acceptor answers ``seen`` for an empty
        ``O`` frame sent after the wake (returned, to send then with
        :meth:`send_marks`), which it does once the served client's
        commands have run (``acceptor.blocking.after_resumed``).  Redis
        runs them (``processUnblockedClients``) before it writes the
        push's reply, so the pusher's next command sees what they did."""
        waiters = self.waiters
        behind, waiters.behind_served = waiters.behind_served, set()
        here = self.keyspace.pipe
        marks = []
        for pipe in sorted(behind):
            if pipe != here:
                marks.append((pipe, self.others_sent.get(pipe, 0) + 1))
                self.others_sent[pipe] = marks[-1][1]
        if not marks:
            return noted, []
        count = len(wire.reply_sizes(reply)[1])
        everyone = list(range(count))
        if noted is None:
            framed = wire.encode_gated_events([0] * count, [], everyone, marks)
        elif noted[0] == wire.GATED_EVENTS:
            bounds, events, gated, waits = wire.decode_gated_events(noted)
            framed = wire.encode_gated_events(bounds, events, everyone, [*waits, *marks])
        else:
            bounds, events = wire.decode_events(noted)
            framed = wire.encode_gated_events(bounds, events, everyone, marks)
        return framed, marks

    def send_marks(self, marks: list[tuple[int, int]]) -> None:
        """The empty ``O`` frames of :meth:`gate_on_behind`, after the wakes."""
        for pipe, seq in marks:  # (a pipe gone: the bus drops its acceptor, the seen with it)
            self.send_to(pipe, wire.encode_others_events(seq, [], None))

    def _mark_handed_out(self, pipe: int) -> tuple[int, int]:
        """An empty ``O`` frame on ``pipe``, the current one, after the
        batch's ``R`` frame: its acceptor answers ``seen`` for it once it
        has handed out the batch's events (and what that asked in turn)."""
        seq = self.others_sent[pipe] = self.others_sent.get(pipe, 0) + 1
        self.send(wire.encode_others_events(seq, [], None))
        return (pipe, seq)

    def _free_to_pop(self, pipe: int) -> bool:
        """Whether a ``__bpop`` of ``pipe`` may be served in place now: the
        loop can wait for its verdict, the shard is not parked (a parked
        shard never pops: it waits for its operation's coordinator alone),
        and that pipe's acceptor answered its last verdict in time (see
        :attr:`unanswered`)."""
        return self.recv_verdict is not None and self.bodies is not PARKED and pipe not in self.unanswered

    def _await_verdict(self, pipe: int, token: int) -> bool | None:
        """Send the wakes so far (the ``BWAIT_SERVED`` of ``token`` last,
        after what the batch logged before it: a send commits first), then
        wait on ``pipe`` for the verdict on it, every other frame kept in
        order (see :meth:`Pipes.recv_verdict
        <shardkv.worker.loop.Pipes.recv_verdict>`): True taken, False not,
        None none within :data:`VERDICT_WAIT_S` or the pipe lost."""
        try:
            self.send_wakes()
        except (EOFError, OSError):
            return None  # (the pipe is lost after this frame)
        assert self.recv_verdict is not None
        return self.recv_verdict(pipe, token, VERDICT_WAIT_S)

    def serve_left(self) -> None:
        """Serve the keys made ready between batches (the claims of a lost
        acceptor's clients dropped, see :meth:`Waiters.clear
        <shardkv.worker.blocking.Waiters.clear>`) as the end of a batch
        serves them: each pop logged (the AOF, the changes counted), its
        events sent (keyspace events, tracking's invalidations), then the
        wakes, which wait for the AOF as a batch's replies do.  The loop
        calls it between frames, while no acceptor has the shard to
        itself; nothing changes once SHUTDOWN has saved.  With no key
        ready it sends the wakes alone: the ``__bsettle``s that a lost
        acceptor's dropped claims ended (another acceptor's writer waits
        for them, see ``Waiters._unclaim``)."""
        waiters = self.waiters
        if self.persistence is not None and self.persistence.closed:
            return
        if not waiters.ready:
            self.send_wakes()
            return
        self.keyspace.tick()
        waiters.serve_ready()
        self.send_events()
        self.send_wakes()

    def _refuse(self, items: list) -> bytes:
        """Replies to a batch after SHUTDOWN: errors, but for ``__shutdown``
        itself and the holds around it, which change nothing.  (With several
        acceptors another one may still take a SHUTDOWN, redis-py's retry of
        the first, while the supervisor stops them all: it holds the shards
        and finds them shut down already, which is no error.)"""
        bodies = []
        for i in range(0, len(items), 2):
            args = items[i + 1]
            if args[0] in _AFTER_SHUTDOWN:
                bodies.append(encode(self.execute(args)))
            else:
                bodies.append(encode(Error("ERR shard is shutting down")))
        return wire.encode_replies(bodies)

    # -- cross-shard operations -----------------------------------------------
    #
    # The participant's side of the commit protocol of shardkv.acceptor.crossshard.
    # A shard is *parked* for one operation at a time, from its __park or
    # __prepare entry to the Decide of that operation, and runs nothing else
    # meanwhile.  What it prepared stays in ``self.prepared`` until the
    # outcome is known, across the loss of the acceptor, and across its own
    # restart through the AOF's prepare records (``persistence.in_doubt``).

    def enter(self, args: list[bytes]) -> tuple[bytes, int | None]:
        """A ``FLAG_PARK`` entry: its reply body, and the operation to stay
        parked for (None: it goes on at once)."""
        if args[0] == Verb.PARK or args[0] == Verb.PARKDB:
            message = self.park_reply(args)
            return wire.encode_answer(message), message.op
        if args[0] == Verb.PARK_AT:  # (an EXEC with scripts, see wire.Run.as_of)
            ks = self.keyspace
            now = ks.expiry_now
            ks.expiry_now = min(now, int(args[1]))
            try:
                message = self.park_reply(args[2:])
            finally:
                ks.expiry_now = now
            # The sweeper's time stays at ``ms`` until the EXEC is decided
            # (see Keyspace.exec_frozen): a run again's park takes over from
            # the run undone before it.
            at = int(args[1])
            ks.exec_frozen[message.op] = at
            carried = ks.exec_carried.pop(at, 0)
            if carried > 1:
                ks.exec_carried[at] = carried - 1
            return wire.encode_answer(message), message.op
        part = self.prepare_part(args)
        return wire.encode_answer(part), part.op if part.prepared else None

    def park_reply(self, args: list[bytes]) -> wire.Parked:
        """``__park op nexport key... watched...``: states of the keys to
        export, and the versions of the watched keys, for the acceptor.

        ``__parkdb op nexport db key ... db key ...``: the same with each
        key's database; a key of another database than the entry's is
        named ``(database, key)`` in the answer.  An exported ``* *`` is
        every key of the entry's database, ``* **`` every key of every one.
        """
        ks = self.keyspace
        n = int(args[2])
        if args[0] == Verb.PARKDB:
            here = ks.db
            pairs = args[3:]
            names: list = []
            for i in range(0, len(pairs) - 1, 2):
                db, key = pairs[i], pairs[i + 1]
                if db == b"*":
                    names.append(key)
                else:
                    names.append(key if int(db) == here else (int(db), key))
            exported, watched = names[:n], names[n:]
        else:
            exported, watched = args[3 : 3 + n], args[3 + n :]
        if exported[:1] in ([b"*"], [b"**"]):  # every key, and the operation's keys that do not exist yet
            everywhere = qualified_keys(ks, exported[0] == b"**")
            exported = list(dict.fromkeys([*everywhere, *exported[1:]]))
        states = {key: export_qualified(ks, key) for key in exported}
        versions = {key: self._version(key) for key in watched}
        return wire.Parked(int(args[1]), states, versions, export_clocks(ks, exported))

    def _version(self, key: bytes | tuple[int, bytes]) -> int:
        """A watched key's version (a key of another database: ``(db, key)``)."""
        ks = self.keyspace
        if isinstance(key, tuple):
            with ks.selected(key[0]):
                return self._version(key[1])
        ks.peek(key)  # a watched key that has expired counts as changed
        return ks.watched.get(key, -1)

    def gather_parts(self, op: int, items: list, i: int, append: Callable, bounds: list | None) -> list[int]:
        """The operations to park for, from the fan-out part at ``items[i]``
        (just prepared as ``op``): it and the parts of other write fan-outs
        right behind it in the batch (the same entry header: the same
        database), prepared now, so that one park round decides them all.

        Each such part is run in its place of the batch's order, as it
        would be after ``op``'s commit, and answered in order (``append``,
        its event bound in ``bounds``); its entry becomes :data:`GATHERED`.
        A part is taken only while the keys it names are disjoint from every
        key a part taken before it changed, so each operation's undo
        touches its own keys alone, and an abort of one, in any order,
        leaves the others' states as they are.  Not a flush (it changes
        every key), and not past any other entry: nothing of another client
        runs between the parts, nor sees their states before the decision.
        """
        states = self.prepared[op].states
        if type(states) is not dict:  # a flush
            return [op]
        taken = set(states)
        ops = [op]
        header = items[i]
        noted = self.keyspace.events
        lookup = commands.lookup
        end = len(items)
        j = i + 2
        while j < end and items[j] == header:
            args = items[j + 1]
            if args[0] != Verb.PREPARE or len(args) < 3:
                break
            cmd = lookup(args[2])
            if cmd is None or cmd.name in ("flushall", "flushdb"):
                break
            names = cmd.keys(args[2:])
            if not taken.isdisjoint(names):
                break
            part = self.prepare_part(args, cmd, names)
            append(wire.encode_answer(part))
            if bounds is not None:
                bounds.append(len(noted))  # type: ignore[arg-type]
            items[j + 1] = GATHERED
            if part.prepared:
                ops.append(part.op)
                taken.update(self.prepared[part.op].states)
            j += 2
        return ops

    def prepare_part(
        self, args: list[bytes], cmd: commands.Command | None = None, names: list[bytes] | None = None
    ) -> wire.PartPrepared:
        """``__prepare op command...``: this shard's part of a write fan-out
        (MSET, DEL...).  Run it; if it changed keys, log the prepare record
        and keep the old states to undo it.  ``cmd`` and ``names``: the
        command's row and keys, when the caller has them (gather_parts).

        Only the keys' states before are exported (the undo); a blind write
        (MSET, DEL, UNLINK: :func:`written_states`) leaves states known from
        its arguments, so only other commands' keys are exported again
        after the run to see what changed."""
        op = int(args[1])
        command = args[2:]
        if cmd is None:
            cmd = commands.lookup(command[0])
        if cmd is not None and cmd.name in ("flushall", "flushdb"):
            return self._prepare_flush(op, command, cmd.name == "flushall")
        ks = self.keyspace
        if names is None:
            if cmd is not None:
                names = cmd.keys(command)
            elif command[0] == Verb.MIGRATE_DEL:  # __migdel key payload ...
                names = command[1::2]
            else:
                names = []
        before = {key: export_key(ks, key) for key in dict.fromkeys(names)}
        watched = ks.watched
        # WATCH's versions of its keys, put back if it is undone (an MSETNX
        # voted down by another shard changed nothing a WATCH can see).
        versions = {key: watched[key] for key in before if key in watched} if watched else None
        persistence = self.persistence
        if persistence is not None:
            persistence.suspended = True
            persistence.suspended_changes = 0
        self.timing = False  # the acceptor counts the whole command
        try:
            value = (self.execute if ks.memory is None else self.execute_limited)(command)
        finally:
            self.timing = True
            if persistence is not None:
                persistence.suspended = False
        written = None
        if cmd is not None and type(value) is not Error:  # (an error wrote nothing)
            written = written_states(cmd.name, command, value)
        after = written if written is not None else {key: export_key(ks, key) for key in before}
        changed = {key: state for key, state in after.items() if state != before[key]}
        # This part counts what Redis counts for it (a change per pair MSET
        # wrote, a key named twice or given the value it held too; one per
        # key DEL removed), so that the parts add up to the whole command's.
        changes = persistence.suspended_changes if persistence is not None else 0
        if not changed:
            if persistence is not None:
                persistence.dirty += changes
            return wire.PartPrepared(op, False, value)
        self._prepared(op, changed, {key: before[key] for key in changed}, changes=changes)
        if versions:
            self.versions_before[op] = {ks.db: versions}
        return wire.PartPrepared(op, True, value)

    def _prepare_flush(self, op: int, command: list[bytes], every: bool) -> wire.PartPrepared:
        """This shard's part of a FLUSHALL or FLUSHDB across shards: check
        it, log the prepare record of a flush and park; the flush itself
        happens at the commit (:meth:`decide`), so an abort has nothing to
        undo.  The shard runs nothing else meanwhile, so no client can tell."""
        persistence = self.persistence
        if persistence is not None and persistence.misconf is not None:
            return wire.PartPrepared(op, False, Error(persistence.misconf))
        if len(command) > 2 or (len(command) == 2 and command[1].upper() not in (b"ASYNC", b"SYNC")):
            return wire.PartPrepared(op, False, Error(errors.SYNTAX))
        # As Redis's, a flush counts a change per key it removes (the flush
        # happens at the commit; the shard runs nothing else meanwhile).
        ks = self.keyspace
        removed = ks.total_keys() if every else ks.dbsize()
        self._prepared(op, flush_part(every), None, changes=removed)  # type: ignore[arg-type]  # a flush marker
        return wire.PartPrepared(op, True, OK)

    def prepare_states(
        self, op: int, states: dict, clocks: dict | None = None, ranks: dict | None = None
    ) -> None:
        """:class:`~wire.Prepare`: make our keys hold ``states`` (with the
        access ``clocks`` they had on the executor), undoably; ``ranks``: see
        :meth:`Waiters.mark_keys`."""
        ks = self.keyspace
        undo = {key: export_qualified(ks, key) for key in states}
        for key, state in states.items():
            import_qualified(ks, key, state)
        if clocks:
            import_clocks(ks, clocks)
        # The shard that ran the operation counted its changes in ``dirty``.
        self._prepared(op, states, undo, ranks, changes=0)
        if self.persistence is not None:
            self.persistence.unsaved += len(states)

    def _prepared(
        self, op: int, states: dict, undo: dict | None, ranks: dict | None = None, changes: int = 0
    ) -> None:
        """Keep what this shard prepared for ``op`` and log it; ``changes``:
        what it adds to the dirty count (Redis's count of the commands it
        ran for ``op``), taken off again if ``op`` is undone."""
        if not self.keyspace.flagged:  # (see shardkv.runtime.scriptflags)
            self.keyspace.raise_flag()
        self.prepared[op] = Prepared(states, undo, self.keyspace.db, ranks, changes)
        persistence = self.persistence
        if persistence is not None:
            persistence.log_prepare(op, states)
            persistence.count_prepared(op, changes)

    def park(self, ops: list[int]) -> None:
        """Run nothing from the queue until the :class:`~wire.Decide` of
        every operation of ``ops`` (one parked operation, or write fan-outs'
        parts prepared together, see :meth:`gather_parts`), in any order.

        Frames that come meanwhile are kept, in order.  A control message
        for another operation is refused, not dropped.  If the acceptor
        goes away, what was prepared stays prepared (in doubt): the next
        acceptor resolves it; a shard that prepared nothing just resumes.
        """
        if not self.keyspace.flagged:  # (see shardkv.runtime.scriptflags)
            self.keyspace.raise_flag()
        waiting = set(ops)
        op = ops[0]  # the parked operation's, for Run and Prepare (alone then)
        while True:
            # EOFError/OSError: the acceptor is gone (the loop loses its
            # pipe, which drops the EXEC starts: see Pipes.lose)
            frame = self.recv()
            if frame[0] != wire.CONTROL:
                # (a K frame: another shard's script of the operation went busy)
                refusals = self.refusals
                if frame[0] != wire.REFUSALS or refusals is None or not refusals.parked_offer(frame):
                    self.backlog.append(frame)
                continue
            try:
                message = wire.decode_control(frame)
            except wire.BadMessage as e:
                log.error("shard %d: %s", self.index, e)
                continue
            if getattr(message, "op", None) not in waiting or type(message) not in (
                wire.Run,
                wire.Prepare,
                wire.Decide,
            ):
                self.refuse(message)
                continue
            self.keyspace.tick()
            if type(message) is wire.Run:
                if message.as_of:  # (until the next tick)
                    self.keyspace.expiry_now = min(self.keyspace.now, message.as_of)
                ran = self.run_foreign(message)
                if faultpoints.ACTIVE and self.persistence is not None:
                    self.persistence.commit()
                faultpoints.hold("ran", self.index)
                ends, self.run_event_ends = self.run_event_ends, None
                self.send_events(ends=ends)  # the operation's events, before its Ran
                if ends and self.events_counted:
                    ran = dataclasses.replace(ran, bounds=self.events_counted)
                self.send(wire.encode_control(ran))
            elif type(message) is wire.Prepare:
                if self.busy_watches is not None:
                    # A script's changes (maybe a busy one's): the WATCHes
                    # sent while it was busy count them (see busywatch).
                    self.busy_watches.on_prepare()
                self.prepare_states(
                    op, message.states, message.clocks, message.ranks
                )  # op: a parked operation is parked alone
                if faultpoints.ACTIVE and self.persistence is not None:
                    self.persistence.commit()
                faultpoints.hold("prepared", self.index)
                # send() writes (and with `always` fsyncs) the prepare record first.
                self.send(wire.encode_control(wire.Prepared(op)))
            else:
                faultpoints.hold("decided", self.index)
                decided = message.op  # type: ignore[union-attr]
                waiting.discard(decided)
                notify = message.notify  # type: ignore[union-attr]
                if notify is not None and message.commit:  # type: ignore[union-attr]
                    # (before the blocked clients its writes serve; the
                    # next __config's hook sets it as the acceptors have it)
                    events.set_notify(self.keyspace, notify)
                self.decide(decided, message.commit, message.flushed)  # type: ignore[union-attr]
                if message.clocks and message.commit:  # type: ignore[union-attr]
                    import_clocks(self.keyspace, message.clocks)  # type: ignore[union-attr]
                at = self.keyspace.exec_frozen.pop(decided, None)
                if at is not None and message.again:  # type: ignore[union-attr]
                    carried = self.keyspace.exec_carried
                    carried[at] = carried.get(at, 0) + 1
                self.waiters.committed = decided if message.commit else 0  # type: ignore[union-attr]
                finished = wire.encode_control(wire.Finished(decided, message.commit))  # type: ignore[union-attr]
                persistence = self.persistence
                if self.hold_frame is not None and (
                    waiting or persistence is None or persistence.aof is None
                ):
                    # Nothing to persist: Finished only lets the acceptor
                    # forget the decision, so it leaves with the next frame
                    # (the next operation's answer, the batch's replies) or
                    # once the pipe is idle, not in a system call of its own.
                    # With AOF the last one leaves now, after the outcomes'
                    # records (a send writes what was logged before its frame).
                    self.hold_frame(finished)
                else:
                    self.send(finished)
                faultpoints.hold("finished", self.index)
                if not waiting:
                    return  # run_batch serves the ready keys at the end of the batch

    def decide(self, op: int, commit: bool, flushed: bool = False) -> None:
        """Apply or undo what this shard prepared for ``op`` (if anything).
        ``flushed``: its run ran a FLUSHALL (wire.Decide.flushed), which the
        executor knows by itself (``flushes``), also when the outcome comes
        from an acceptor started again (report_in_doubt)."""
        part = self.prepared.pop(op, None)
        versions = self.versions_before.pop(op, None)
        after_flush = self.flushes.pop(op, None)
        if part is not None:
            self._decide_part(op, part, commit)
        persistence = self.persistence
        if commit and (flushed or after_flush is not None) and persistence is not None:
            # Its FLUSHALL, committed: saved as Redis's (the run's changes
            # after it are the count after the save).  Before, one resolved
            # after an acceptor's restart saved nothing, and its entry in
            # ``flushes`` stayed for good.
            if persistence.flushed_all():
                persistence.dirty += after_flush or 0
        if versions is not None and not commit:
            # (the keys still watched: a WATCH sent while the run was busy
            # may have come since, or an UNWATCH)
            for db, before in versions.items():
                watched = self.keyspace.dbs[db].watched  # type: ignore[union-attr]
                for key, version in before.items():
                    if key in watched:
                        watched[key] = version

    def _decide_part(self, op: int, part: Prepared, commit: bool) -> None:
        ks = self.keyspace
        if part.db == ks.db:  # (the usual case: no context manager per operation)
            self._apply_part(op, part, commit)
            return
        with ks.selected(part.db):  # after a restart the shard sits in db 0
            self._apply_part(op, part, commit)

    def _apply_part(self, op: int, part: Prepared, commit: bool) -> None:
        ks = self.keyspace
        if commit:
            if part.undo is None:  # not in memory yet: prepared before a restart, or a flush
                apply_states(ks, part.states)
            if type(part.states) is dict:
                self.waiters.mark_keys(part.states, op, part.ranks)
            else:  # a flush: every key may be gone (a blocked XREADGROUP fails)
                self.waiters.ready.update(dict.fromkeys(self.waiters.by_key))
        else:
            if part.undo is not None:
                for key, state in part.undo.items():
                    import_qualified(ks, key, state)
        persistence = self.persistence
        if persistence is not None:
            # Its count is settled: kept if committed; if undone (or a flush
            # not done: no change) what is still counted of it is taken back
            # (a save since may have reset the count).
            persistence.take_back(op, commit)
            persistence.log_outcome(op, commit)
            if commit and type(part.states) is tuple and part.states[1]:
                persistence.flushed_all()  # this shard's part of a FLUSHALL, counted: saved as Redis's

    def refuse(self, message: object) -> None:
        """A control message this shard is not waiting for: say so."""
        op = getattr(message, "op", -1)
        log.warning("shard %d: refused %s for operation %s", self.index, type(message).__name__, op)
        reason = "not parked for this operation"
        self.send(wire.encode_control(wire.Refused(op, reason)))

    def coordinator_pipe(self, op: int) -> int:
        """The pipe of the acceptor that resolves ``op``: its coordinator's,
        or the first acceptor's for a coordinator beyond the acceptors there
        are now (it reads that coordinator's decisions)."""
        coordinator = op_coordinator(op)
        return coordinator if coordinator < self.npipes else 0

    def in_doubt(self, pipe: int) -> list[int]:
        """The prepared operations, outcome unknown, that ``pipe`` resolves."""
        return sorted(op for op in self.prepared if self.coordinator_pipe(op) == pipe)

    def report_in_doubt(self) -> None:
        """The start of each pipe: tell the acceptor what this shard has
        prepared for it without knowing the outcome, and apply the outcomes
        it sends back before running anything else."""
        here = self.keyspace.pipe
        for op in [
            op for op in self.flushes if op not in self.prepared and self.coordinator_pipe(op) == here
        ]:
            # A run whose FLUSHALL left nothing of this shard's prepared
            # (wire.NOTHING), its acceptor gone before the decision: none
            # comes now (before, its entry stayed for good).
            del self.flushes[op]
        self.send(wire.encode_control(wire.InDoubt(self.in_doubt(here))))
        while self.in_doubt(here):
            frame = self.recv()
            if frame[0] != wire.CONTROL:
                self.backlog.append(frame)
                continue
            try:
                message = wire.decode_control(frame)
            except wire.BadMessage as e:
                log.error("shard %d: %s", self.index, e)
                continue
            if type(message) is not wire.Resolve:
                self.refuse(message)
                continue
            for op, commit in message.outcomes.items():
                if op in self.prepared:
                    log.info(
                        "shard %d: operation %d in doubt, %s",
                        self.index,
                        op,
                        "committed" if commit else "aborted",
                    )
                    self.decide(op, commit)
                    self.send(wire.encode_control(wire.Finished(op, commit)))

    def run_foreign(self, message: wire.Run) -> wire.Ran:
        """Run an operation's commands (:meth:`_run_foreign`); with scripts,
        which may escape and be undone, the slow entries held until its end,
        so that an undone run's go with its other counts (Stats.rollback):
        its scripts' own too (_log_exec_script), named in Ran.logged once
        pushed here, at its end."""
        stats = self.stats
        if not any(args[0] in _SCRIPT_RUNS for args in message.commands):
            return self._run_foreign(message)
        took = stats.hold()  # (or a batch that runs holds them: run_batch)
        if not stats.holding:
            return self._run_foreign(message)
        pending: list[tuple[int, tuple] | None] = []
        self._exec_slow = pending
        try:
            ran = self._run_foreign(message)
        finally:
            self._exec_slow = None
            log = stats.slowlog
            # (an entry rolled back with an escaped run is no longer there)
            kept = [h is not None and h[0] < len(log) and log[h[0]] is h[1] for h in pending]
            if took:
                stats.holding = False
            first = stats.flush_held()  # (a batch's held before them too, in order)
        for i, h in enumerate(pending):
            if h is not None and i < len(ran.logged):
                ran.logged[i] = first + h[0] if kept[i] and first >= 0 else -1
        return ran

    def _run_foreign(self, message: wire.Run) -> wire.Ran:
        """Run an operation's commands with other shards' keys installed here.

        The commands are not logged as they are (they name keys this shard
        does not own).  The other shards' keys that changed go back to the
        acceptor; this shard's own keys that changed are *prepared* (logged
        with a prepare record, the old states kept to undo them), or, when
        no other shard takes part (a WATCHed EXEC on one shard), logged at
        once as one group, as a single-shard command would be.
        """
        op, states, commands_, resp3 = message.op, message.states, message.commands, message.resp3
        ks = self.keyspace
        persistence = self.persistence
        here = ks.db
        databases = len(ks.dbs)
        own: dict = dict.fromkeys(message.own)
        if b"**" in own:  # every key of ours, in every database
            own = dict.fromkeys(k for k in qualified_keys(ks, True) if k not in states)
        elif b"*" in own:  # every key of ours
            own = dict.fromkeys(k for k in ks.iter_keys() if k not in states)
        # A run of scripts may escape, and be undone: the WATCH versions its
        # writes bump go back then (see decide).
        versions = None
        counted = None
        if any(args[0] in _SCRIPT_RUNS for args in commands_):
            versions = {i: dict(d.watched) for i, d in enumerate(ks.dbs) if d is not None and d.watched}
            # So are the counts of its commands (INFO commandstats,
            # errorstats, keyspace_hits and _misses), before and after the
            # script that escaped: its run again counts them.
            counted = (self.stats.checkpoint(), ks.hits, ks.misses)
        db = here  # ``__select db`` switches the database of the commands after it
        for args in commands_:
            if args[0] == Verb.SELECT:
                db = int(args[1])
                continue
            cmd = commands.lookup(args[0])
            if cmd is None:
                continue
            names: list = list(cmd.keys(args))
            if db != here:
                names = [(db, key) for key in names]
            if cmd.is_write and not names:  # FLUSHALL and the like: every key of ours
                with ks.selected(db):
                    everything = qualified_keys(ks, cmd.name == "flushall")
                if db != here:
                    everything = [k if type(k) is tuple else (db, k) for k in everything]
                names += everything
            names += commands.other_db_keys(cmd.name, args, databases)
            for key in names:
                if type(key) is tuple and key[0] == here:
                    key = key[1]  # a key of the operation's database is named alone
                if key not in states:
                    own[key] = None
        before = {key: export_qualified(ks, key) for key in own}
        if persistence is not None:
            persistence.foreign = states
            persistence.suspended = True
            persistence.suspended_changes = 0
            persistence.flush_mark = -1
        for key, state in states.items():
            drop_qualified(ks, key)
            if state is not None:
                import_qualified(ks, key, state)
        if message.clocks:
            import_clocks(ks, message.clocks)
        slots = ks.slots
        ks.slots = range(SLOTS)  # so that KEYS, RANDOMKEY... see the imported keys too
        # The commands scripts call here, for MONITOR's [<db> lua] lines
        # (sent before the answer; the acceptor drops them without monitors).
        engine = self.scripts
        calls: list[tuple[int, list[bytes]]] = []  # (database, args) of each call
        engine.monitor = calls
        ks.imported = (here, states)
        ready: dict = {}  # (see blocking.note_ready)
        ks.ready_order = ready
        self.foreign_client = message.client
        self.timing = message.counted
        # (its scripts' PUBLISHes and redis.log lines wait for its end)
        engine.deferring = versions is not None
        notify = ks.notify_flags
        touching = None  # (what access.no_touch returned, while in force)
        try:
            execute = self.execute if ks.memory is None else self.execute_limited
            replies: list[object] = []
            # Among other commands (an EXEC's), each script's calls end with
            # wire.SCRIPT_END, so that its [lua] lines follow its own line.
            ends = len(commands_) > 1
            logged: list[int] = []  # (see wire.Ran.logged)
            lines: list[int] = []  # each script's redis.log lines (see wire.Ran.written)
            renamed = dict(message.names)  # (a CLIENT SETNAME queued before: see wire.Run)
            engine.busy_error = None
            event_ends: list[int] = []  # (see wire.Ran.bounds: here, where in ks.events)
            untouched = set(message.no_touch)
            for at, args in enumerate(commands_):
                handler = None
                if args[0] == Verb.XREADGROUP_UPTO:
                    # A woken cross-shard XREADGROUP's try: the XREADGROUP
                    # it carries, run as itself, its handler bounded.
                    args, handler = bounded_read(args)
                elif message.served and args[0].lower() in _SERVED_MOVES:
                    # A cross-shard BLMOVE's try serving its blocked client:
                    # the move alone, its source looked up once, as Redis serves it.
                    handler = serving_move()
                if untouched and (at in untouched) != (touching is not None):
                    # A CLIENT NO-TOUCH client's command, as its entry runs
                    # (a group's other clients' maybe not).
                    if touching is None:
                        touching = access.no_touch(ks)
                    else:
                        access.touch_again(ks, touching)
                        touching = None
                if len(event_ends) < len(replies):  # the command before this one replied
                    event_ends.append(len(ks.events) if ks.events is not None else 0)
                if at in renamed:
                    self.foreign_client = (message.client[0], renamed[at])
                if args[0] == Verb.SELECT:  # SELECT inside MULTI: no reply of its own here
                    ks.select(int(args[1]))
                    continue
                if args[0] == Verb.CONFIG:  # a CONFIG SET of notify-keyspace-events inside MULTI
                    # Its events' channels, for the commands after it, as
                    # in Redis; this run only (the acceptor's CONFIG SET
                    # after the commit sets it), so an undone run changes nothing.
                    events.set_notify(ks, args[2].decode("latin-1"))
                    continue
                script = args[0] in _SCRIPT_RUNS
                if script and message.group and engine.busy_error is not None:
                    # Another client's script, behind one past busy-reply-threshold:
                    # -BUSY, unrun, as Redis answers what it reads then (see
                    # wire.Run.group; the acceptor counts it a rejected call).
                    replies.append(Error(engine.busy_error))
                    lines.append(0)
                    if message.log_scripts:  # (no slow log entry: see _log_exec_script)
                        logged.append(-1)
                        if self._exec_slow is not None:
                            self._exec_slow.append(None)
                    if ends:
                        calls.append(wire.SCRIPT_END)
                    continue
                if script:
                    engine.ran_written = 0
                    self.run_reply_at = len(replies)
                if message.log_scripts and script:
                    began = perf_counter_ns()
                    replies.append(execute(args))
                    logged.append(self._log_exec_script(args, replies[-1], perf_counter_ns() - began))
                elif message.served and persistence is not None:
                    counted_before = persistence.suspended_changes
                    replies.append(execute(args, handler))
                    persistence.suspended_changes = counted_before + _served_changes(
                        args, replies[-1], persistence.suspended_changes - counted_before
                    )
                else:
                    replies.append(execute(args, handler))
                if script:
                    lines.append(engine.ran_written)
                    if ends:
                        calls.append(wire.SCRIPT_END)
            if len(event_ends) < len(replies):
                event_ends.append(len(ks.events) if ks.events is not None else 0)
            if self.waiters.signaled_run:
                self.waiters.signaled_at_end()
            self.run_event_ends = event_ends if ks.events else None
            bodies = [encode(value, resp3) for value in replies]
        except BaseException:
            if engine.deferring:
                engine.end_run(False)
            raise
        finally:
            if touching is not None:
                access.touch_again(ks, touching)
            ran_notify = ks.notify_flags
            events.set_flags(ks, notify)
            self.run_reply_at = -1
            self.foreign_client = ("", b"")
            self.timing = True
            engine.monitor = None
            ks.imported = None
            self.waiters.signaled_run.clear()  # (a run that failed half way)
            ks.ready_order = None
            ks.slots = slots
            if ks.db != here:
                ks.select(here)
            if persistence is not None:
                persistence.suspended = False
        escaped = any(type(v) is Error and v.message.startswith(scripting.CROSS_MARKER) for v in replies)
        if engine.deferring:  # (an escape undoes every script of the run: each runs again)
            engine.end_run(not escaped)
        if escaped and versions:
            self.versions_before[op] = versions
        if escaped and counted is not None:
            saved, ks.hits, ks.misses = counted
            self.stats.rollback(saved)
        if b"**" in message.own:
            # Every key of every database is here: a write of whole databases
            # (SWAPDB in a script) gives keys to names no command named.  Each
            # such key of another shard goes home as an imported one would,
            # each of ours counts as changed (and, in a run that escaped,
            # the other shards' leave and ours are undone with the rest).
            ks.slots = range(SLOTS)
            try:
                present = qualified_keys(ks, True)
            finally:
                ks.slots = slots
            states = dict(states)
            for key in present:
                if key in states or key in before:
                    continue
                if slot_of(key[1] if type(key) is tuple else key) in slots:
                    before[key] = None
                else:
                    states[key] = None
        # The script's MONITOR lines (an escape runs again, shown then) leave
        # once its changes are prepared or logged, just before the caller
        # sends Ran: if the acceptor is gone, that send fails with nothing
        # half-applied here (it would have left the changes neither
        # prepared nor undone).
        monitor = wire.encode_monitor(calls) if calls and self.send is not None and not escaped else None
        # ACL LOG's entries of its scripts' refused calls (none from a run
        # undone: it runs again), sent as its MONITOR lines are.
        refused = engine.take_acl_log()
        if escaped or self.send is None:
            refused = None
        # A script's writes: the keys it declared, or that it named and the
        # acceptor found, are in ``own``; one it wrote without naming it, on
        # this shard, is prepared with its new state and undone (on abort) to
        # the state the script found it in.
        effects, found = scripting.take_effects(ks)
        for db, args in effects:
            cmd = commands.lookup(args[0])
            if cmd is None:
                continue
            # (and MOVE's key in its target database, COPY ... DB's destination)
            written = [(db, key) for key in cmd.keys(args)] + commands.other_db_keys(
                cmd.name, args, databases
            )
            for key_db, key in written:
                old = found.get((key_db, key), ())
                if key_db != here:
                    key = (key_db, key)  # after a SELECT in the script, or in another database
                if key not in states and key not in before:
                    # () (not known) is never equal to a state: logged as changed
                    before[key] = old
        # Send back only what changed, so that reading another shard's key
        # does not count as writing it (WATCH).
        after = {}
        for key, old in states.items():
            state = export_qualified(ks, key)
            if state != old:
                after[key] = state
        # Their clocks, and those of the keys it only read (or TOUCHed), that
        # its lookups stamped: they go back as well (wire.Decide.clocks).
        imported = message.clocks
        clocks = {
            key: clock
            for key, clock in export_clocks(ks, states).items()
            if key in after or imported.get(key) != clock
        }
        for key in states:
            drop_qualified(ks, key)
        if persistence is not None:
            persistence.foreign = ()
        changed = {}
        for key, old in before.items():
            state = export_qualified(ks, key)
            if state != old:
                changed[key] = state
        # What its commands count in Redis's server.dirty, once, here (the
        # shards its other keys go to count them as unsaved only); nothing
        # for a run that escaped: it runs again, and counts then.
        changes = 0 if escaped or persistence is None else persistence.suspended_changes
        # A FLUSHALL ran (a script's, a WATCHed EXEC's): at the commit every
        # shard saves, as Redis's FLUSHALL does, and this one then counts
        # only the changes made after it (as Redis's count after its save).
        flushed = not escaped and persistence is not None and persistence.flush_mark >= 0
        if persistence is not None and changed and not changes:
            persistence.unsaved += len(changed)  # (what changed must be saved all the same)
        if not changed:
            outcome = wire.NOTHING
            if persistence is not None:
                persistence.dirty += changes
        elif not message.alone:
            undo = {key: before[key] for key in changed if before[key] != ()}
            self._prepared(op, changed, undo, {key: ready[key] for key in changed if key in ready}, changes)
            outcome = wire.PREPARED
        else:
            if persistence is not None:
                mark = persistence.begin_group()
                persistence.log_states(changed)
                persistence.end_group(mark)
                persistence.dirty += changes
                if flushed:  # (alone: no other shard to tell)
                    if persistence.flushed_all():
                        persistence.dirty += changes - persistence.flush_mark
                    flushed = False
            self.waiters.mark_keys(changed)
            outcome = wire.COMMITTED
            # Committed here: its CONFIG SET's setting holds for the
            # blocked clients it serves (see wire.Decide.notify).
            events.set_flags(ks, ran_notify)
        for frame in (refused, monitor):
            if frame is not None:
                # In the same send as the Ran (and the events before it), not
                # in one of its own: it leaves as the Ran does, or not at all.
                (self.send if self.hold_frame is None else self.hold_frame)(frame)
        ranks = {key: ready[key] for key in after if key in ready}
        if flushed:
            self.flushes[op] = changes - persistence.flush_mark  # type: ignore[union-attr]
        return wire.Ran(
            op, bodies, after, outcome, clocks, logged, lines if escaped else [], ranks, flushed=flushed
        )

    def _log_exec_script(self, args: list[bytes], value: object, ns: int) -> int:
        """An EXEC's script ran (``args``: its ``__eval``/``__fcall``, see
        acceptor.scripting.ExecScript.command) in ``ns``: its slow log entry,
        after its calls' as Redis logs it, named as the client's command
        (the acceptor puts in the client's own arguments, address and
        name, see slowlog.note_script); its id, or -1 (not slow, or
        a run that escaped: the run again logs it; or held: see run_foreign)."""
        stats = self.stats
        pending = self._exec_slow
        if stats is None or (type(value) is Error and value.message.startswith(scripting.CROSS_MARKER)):
            if pending is not None:
                pending.append(None)
            return -1
        argv = [args[2], args[5], *args[6:]]
        if pending is None or not stats.holding:
            return stats.slow_now(argv, ns // 1000)  # (its id now, for Ran)
        # Held with the run's other entries, until it is final (run_foreign
        # names its id): an escape undoes them all (Stats.rollback).
        log = stats.slowlog
        at = len(log)
        stats.slow(argv, ns // 1000)
        pending.append((at, log[at]) if len(log) > at else None)
        return -1

    def acceptor_lost(self, pipe: int = 0) -> None:
        """The acceptor of ``pipe`` died, and its clients with it: forget
        their state (blocked commands, WATCHes, the events it wanted, its
        hold).  What the shard prepared for it stays prepared (in doubt)."""
        ks = self.keyspace
        if ks.pipe == pipe:
            self.backlog.clear()
        ks.forget_watches(pipe)
        if ks.held_by == pipe:
            ks.held_by = None
        if pipe in ks.paused_by:
            del ks.paused_by[pipe]
            ks.expiry_paused = bool(ks.paused_by)
        if ks.misconf_by.pop(pipe, None) is not None:
            ks.misconf = next(iter(ks.misconf_by.values()), None)
        if pipe in ks.event_masks:
            events.forget(ks, pipe)
        for hook in self.acceptor_lost_hooks:
            hook(pipe)


# run_batch's reply of a plain command not made yet: its handler must
# run (see plain), or its value be encoded.
_BY_HANDLER = cast(bytes, object())
_GET, _SET = plain.GET, plain.SET

# run_batch's lookup of a plain entry while none may run (plain_table is
# None): False, not a plain command, for every name.
_NOT_PLAIN = cast("Callable[[bytes], Literal[False]]", frozenset().__contains__)

# A time no command takes: run_batch's slow-log threshold while the slow
# log is off (slowlog-log-slower-than < 0).
_NEVER_NS = 1 << 62


def _gates(
    stats: Stats,
    persistence: Persistence | None,
    table: dict | None,
    writer: object,
    noted: list | None,
    blocked: dict,
) -> tuple[int, bool, int]:
    """What run_batch's plain commands look at, in one call (asked once per
    batch, and again after each entry that is not plain, the only entries
    that change these: CONFIG SET, a rewrite started, a parked operation's
    suspension; with no AOF, -MISCONF comes only from CONFIG SET and the
    cron between batches):

    * the time from which a plain command is logged as slow;
    * whether ``Persistence.record`` of a write would only count it in
      ``dirty`` (no AOF, not suspended): the plain writes then do that
      themselves;
    * the headers below which the fast path runs the entries that follow:
      0 (every slotted header, see wire.SLOTTED) when it may, wire.SLOTTED
      (none) when not.  It runs a slotted GET, SET key value, INCR or DECR
      in its handler's usual case (the inline case of
      :mod:`shardkv.worker.plain`), done at once, its reply and its time
      with it, and it may while nothing else asks for a look at them: the
      plain path on (``table``), no AOF (``writer``; a write is then only
      counted), no keyspace events (``noted``; with the plain path on, no
      KEYMISS either), nobody blocked on a key (``blocked``), no -MISCONF.
      Anything else, and any key in another state, takes the path it took
      before."""
    ns = stats.slow_threshold_ns
    counts_only = persistence is not None and persistence.aof is None and not persistence.suspended
    if (
        table is not None
        and writer is None
        and noted is None
        and not blocked
        and counts_only
        and persistence.misconf is None  # type: ignore[union-attr]  # (counts_only: not None)
    ):
        return (ns if ns >= 0 else _NEVER_NS), True, 0
    return (ns if ns >= 0 else _NEVER_NS), counts_only, wire.SLOTTED


# Where the fast path's times go before it has an entry (never used).
_NO_TIMES: list[int] = []
# Shard.last_plain before the fast path has looked a name up.
_NO_PLAIN = (b"", None, 0, _NO_TIMES.append)


def _nowhere(pipe: int, payload: bytes) -> None:
    """``Shard.send_to`` with one acceptor: there is no other pipe."""


def _writes(args: list[bytes]) -> bool:
    """Whether Redis counts ``args``, a command whose handler may write, as
    a write: a container's subcommand by its own flags (XGROUP HELP is no
    write).  Asked only while the disk cannot take writes."""
    cmd = commands.lookup(args[0])
    return cmd is None or "write" in commands.flags_of(cmd, args)
