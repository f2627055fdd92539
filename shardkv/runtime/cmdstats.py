"""Per-command statistics and the slow log, kept where each command runs.

A command that a shard runs is measured by its worker, around the call of
its handler: that is Redis's ``c->duration``, the time the command itself
took, without the time it waited in the pipe or behind other clients'
commands.  A command that the acceptor answers (PING, CONFIG, CLIENT...)
is measured by the acceptor, and a command the acceptor refuses before
it runs (wrong arity, NOAUTH, OOM while queueing a transaction...) is
counted there as a ``rejected_call``.  A command that spans shards (a
fan-out such as MSET across shards) is counted once, by the acceptor, and
its time is from dispatch to the merged reply.  ``INFO commandstats``,
``errorstats`` and ``latencystats`` add up the acceptor's :class:`Stats`
and every worker's (``__cmdstats``).  So the acceptor's hot path pays nothing per command; the
worker pays two clock reads and a few additions, and for a plain command
of a batch (GET, SET, INCR..., see ``shardkv.worker.plain``) one clock
read: its time runs from the end of the entry before it to its reply's
encoding (Redis's time of a command holds the writing of its reply into
the client's buffer too), and a batch's plain commands' times add up to
the batch's running time.

Latency percentiles come from a log-linear histogram: exact below 128 ns,
then 64 buckets per power of two (about 1.5% wide), like the HdrHistogram
Redis keeps per command.

A slow command's entry goes into the one slow log every process shares
(:class:`shardkv.runtime.slowlogfile.SlowLogFile`, ``Stats.shared``),
which numbers it; the counters kept apart for a running script hold
theirs until it ends (:meth:`Stats.drain`), and a process running a
batch holds its batch's until the batch ends (:meth:`Stats.hold`,
:meth:`Stats.flush_held`: one push, one lock, for all of them).  A
worker does not know which client sent a command: the entry of a batch's
command says where its reply is in the batch (``place``), and the worker
tells its acceptor, which names the client in it
(``acceptor.slowlog.name_entries``); a script's calls are its Lua
client's (:data:`LUA_CLIENT_ADDR`, no name), as Redis logs them.
"""

from __future__ import annotations

import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Callable

from shardkv.protocol import errors
from shardkv.protocol.command_docs import SUBCOMMANDS
from shardkv.protocol.commands import lookup
from shardkv.protocol.resp import strict_int
from shardkv.runtime import config
from shardkv.runtime.slowlogfile import SlowLogFile

MAX_ERROR_CODES = 128  # Redis's ERROR_STATS_NUMBER: distinct codes tracked
SLOWLOG_ENTRY_MAX_ARGC = 32
SLOWLOG_ENTRY_MAX_STRING = 128
LUA_CLIENT_ADDR = "?:0"  # the address Redis's slow log shows for a script's calls
_SUB_BUCKETS = 64  # per power of two
_EXACT_BITS = 7  # values below 2**7 ns are their own bucket


def stat_name(args: list[bytes]) -> str:
    """The command's name as INFO commandstats spells it: ``get``,
    ``client|list`` for a container's subcommand."""
    name = args[0].decode("latin-1").lower()
    if name in SUBCOMMANDS and len(args) > 1:
        return name + "|" + args[1].decode("latin-1").lower()
    return name


def known_name(args: list[bytes]) -> str | None:
    """The name of the command Redis finds for ``args`` (its ``c->cmd``,
    which CLIENT LIST's ``cmd`` and ``rejected_calls`` use): as
    :func:`stat_name`, or None when Redis finds none, for an unknown
    command or an unknown subcommand of a container."""
    if not args or lookup(args[0]) is None:
        return None
    if len(args) > 1:
        subs = SUBCOMMANDS.get(args[0].decode("latin-1").lower())
        if subs is not None and args[1].decode("latin-1").lower() not in subs:
            return None
    return stat_name(args)


def bucket(ns: int) -> int:
    bits = ns.bit_length()
    if bits <= _EXACT_BITS:
        return ns
    return (bits << 6) | ((ns >> (bits - _EXACT_BITS)) & (_SUB_BUCKETS - 1))


def bucket_value(index: int) -> int:
    """The highest value a bucket holds, as HdrHistogram reports it."""
    if index < 1 << _EXACT_BITS:
        return index
    bits, sub = index >> 6, index & (_SUB_BUCKETS - 1)
    shift = bits - _EXACT_BITS
    return ((_SUB_BUCKETS | sub) << shift) + (1 << shift) - 1


def percentile(histogram: dict[int, int], p: float) -> float:
    """The value at percentile ``p`` (0-100) of a bucket histogram, in ns."""
    total = sum(histogram.values())
    if not total:
        return 0
    want = max(1, -(-total * p // 100))
    seen = 0
    for index in sorted(histogram):
        seen += histogram[index]
        if seen >= want:
            return bucket_value(index)
    return bucket_value(max(histogram))


def error_code(message: str) -> str:
    """The code errorstats counts an error under: its first word, or ERR."""
    space = message.find(" ", 0, 32)
    return message[:space] if space > 0 else "ERR"


def called_name(name: str, as_called: int) -> str:
    """The stat name of the client's command for a script's call ``name``
    that a worker got as another (``as_called``: wire.FLAG_AS_EVAL, an
    EVAL sent as EVALSHA, or wire.FLAG_AS_EVALSHA, the other way)."""
    ro = name.endswith("_ro")
    if as_called & 16:  # wire.FLAG_AS_EVAL
        return "eval_ro" if ro else "eval"
    return "evalsha_ro" if ro else "evalsha"


_SCRIPT_COMMANDS = frozenset(("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"))


class ScriptTimes(list):
    """The pending times of a worker's row for a script's own call (EVAL,
    EVALSHA, FCALL), which the acceptor counts (its calls and errors):
    each run's time is appended as any command's is (one C call, the
    worker's hot path), and :meth:`Stats.fold` adds them to the time
    (``usec``) and the latency histogram of the command's row here
    (:meth:`target`) as it folds any row (every 256 times, and before each
    report), but with no calls, so that INFO commandstats' ``usec`` and
    latencystats hold the script's run, as Redis's do (its ``call()``
    times the command's whole ``proc``).  A run that goes again across
    shards (``SHARDKV-CROSS``) appends nothing, and a run the client sent
    as another command (``as_eval``: an EVALSHA the client sent as EVAL)
    goes to that command's row at once (:meth:`add_called`)."""

    __slots__ = ("stats", "name", "row")

    def __init__(self, stats: Stats, name: str) -> None:
        list.__init__(self)
        self.stats = stats
        self.name = name
        self.row: list | None = None  # the row, once a run counts (Stats.reset drops this too)

    def target(self) -> list:
        """The command's row, which :meth:`Stats.fold` adds the times to."""
        row = self.row
        if row is None:
            row = self.row = self.stats._row(self.name)
        return row

    def add_called(self, ns: int, as_called: int) -> None:
        """A run of the client's command ``as_called`` (see :func:`called_name`)."""
        stats = self.stats
        stats.add_run(stats._row(called_name(self.name, as_called)), ns)


def kept_elsewhere(row: list) -> bool:
    """Is ``row`` one that keeps nothing (see :meth:`Stats.row_of`): its
    command is counted, and slow-logged, by the acceptor that sent it
    (MEMORY USAGE, in a shard)?"""
    return type(row[5]) is deque


def _unbucket(hist: dict[int, int], b: int) -> None:
    """Take one count out of a histogram's bucket ``b``."""
    n = hist.get(b, 0)
    if n > 1:
        hist[b] = n - 1
    elif n == 1:
        del hist[b]


class Stats:
    """One process's counters.  ``commands`` maps a stat name to
    ``[calls, ns, rejected_calls, failed_calls, histogram, pending times]``;
    calls and ns are complete after :meth:`fold` (``report`` folds)."""

    def __init__(self) -> None:
        self.commands: dict[str, list] = {}
        self.errors: dict[str, int] = {}
        self.error_replies = 0
        self.error_events = 0  # error_replies, but never reset
        # error_events when the last acceptor call began or ended: a call
        # failed if errors came since (Redis's static prev_err_count in
        # incrCommandStatsOnError), so those of the calls nested in it
        # (EXEC's) count on them, not on it.
        self.error_mark = 0
        self.tracking = True  # latency-tracking
        self.slow_threshold_us = 10000  # slowlog-log-slower-than
        self.slow_threshold_ns = 10_000_000
        self.slow_max = 128  # slowlog-max-len
        # The slow log every process shares (None: counters kept apart,
        # whose entries wait in ``slowlog``, oldest first, until drain;
        # ``slow_dropped`` of them were dropped past slow_max).
        self.shared: SlowLogFile | None = None
        self.slowlog: list[tuple] = []
        self.slow_dropped = 0
        # A batch runs (and shared is not None): slow entries wait in
        # ``slowlog`` until flush_held pushes them, with, in ``places``,
        # (their index there, their reply's place in the batch) for those
        # that ``on_named`` tells the acceptor of, as (id, place) each.
        self.holding = False
        self.places: list[tuple[int, int]] = []
        self.flushes = 0  # how many times flush_held pushed (see checkpoint)
        self.on_named: Callable[[list[tuple[int, int]]], None] | None = None
        # Rows by the command name as sent (b"GET", b"get"), for the
        # commands that are not containers: the worker's hot path.
        self.by_bytes: dict[bytes, list] = {}
        # The rows in by_bytes of the script commands, whose times are a
        # ScriptTimes (see row_of): report folds them.
        self.script_rows: list[list] = []
        # How many times the rows were dropped (reset): whoever keeps a
        # row elsewhere (a worker's plain entries) looks it up again then.
        self.generation = 0
        # A worker leaves out the commands the acceptor answers and counts
        # (EVAL's script runs on a shard, but EVAL is counted once).
        self.skip_local = False
        # A worker's script call that the client sent as another (EVAL as
        # EVALSHA or the other way, wire.FLAG_AS_CALLED; see ScriptTimes):
        # its run's time is the client's command's.
        self.as_eval = 0
        # Counters kept apart from these (a running script's, see drain)
        # and the counters they are kept apart from: both count alike
        # (align), as the settings change (apply_settings).
        self.apart: Stats | None = None
        self.leader: Stats | None = None

    def _row(self, name: str) -> list:
        row = self.commands.get(name)
        if row is None:
            row = self.commands[name] = [0, 0, 0, 0, {}, []]
        return row

    def record(self, name: str, ns: int, error: str | None) -> None:
        """A command ran for ``ns``; ``error`` is its error reply, if any."""
        row = self._row(name)
        self.record_latency(row, ns)
        if error is not None:
            row[3] += 1
            self.error(error)

    def failed(self, name: str, error: str) -> None:
        """A call counted already (its time elsewhere) failed with ``error``."""
        self._row(name)[3] += 1
        self.error(error)

    def blocked(self, name: str, ns: int) -> None:
        """A blocking command ran for ``ns`` and blocked: a call, and its
        time, but no latency sample, as Redis's ``call()`` counts a command
        that blocked (the sample comes when it is served or unblocked, see
        :meth:`unblocked`; one that times out adds nothing more)."""
        row = self._row(name)
        row[0] += 1
        row[1] += ns

    def unblocked(self, name: str, ns: int, error: str | None) -> None:
        """A command counted by :meth:`blocked` was served, ``ns`` from the
        start of its first run, as Redis's ``updateStatsOnUnblock``: its
        time again (Redis adds the first run's time twice) and a latency
        sample, no call; a failed call when served with ``error`` (counted
        in errorstats too).  (Its slow log entry is the caller's.)"""
        row = self._row(name)
        self.add_run(row, ns)
        if error is not None:
            row[3] += 1
            self.error(error)

    def unblocked_by_client(
        self, args: list[bytes] | None, ns: int, error: bool, addr: str = "", name: bytes = b""
    ) -> None:
        """CLIENT UNBLOCK unblocked the command ``args`` (None: counted where
        it waits), which ran for ``ns`` before it blocked, for the client
        ``addr`` named ``name``; ``error``: with ERROR.  Redis's
        ``updateStatsOnUnblock(c, 0, 0, 1)`` counts it a failed call
        whatever the reason (with that time again and a latency sample)
        and logs it as slow with no arguments (CLIENT UNBLOCK has reset its
        client's); with ERROR, ``-UNBLOCKED`` is an error reply sent while
        CLIENT UNBLOCK runs, so CLIENT UNBLOCK's failed call (counted here,
        as it may come after CLIENT UNBLOCK's own count, and marked counted
        for it: :attr:`error_mark`).  The one rule of the acceptor (a wait
        across shards, WAIT) and the worker (a wait on one shard)."""
        if args is not None:
            row = self._row(stat_name(args))
            self.add_run(row, ns)
            row[3] += 1
            self.slow([], ns // 1000, addr, name)
        if error:
            self.failed("client|unblock", errors.UNBLOCKED)
            self.error_mark = self.error_events

    def record_latency(self, row: list, ns: int) -> None:
        row[5].append(ns)
        if len(row[5]) >= 256:
            self.fold(row)

    def add_run(self, row: list, ns: int) -> None:
        """A script's run took ``ns``: its time and latency, not a call (the
        acceptor counts the call; see ScriptTimes)."""
        row[1] += ns
        if self.tracking:
            bits = ns.bit_length()
            b = ns if bits <= 7 else (bits << 6) | ((ns >> (bits - 7)) & 63)
            hist = row[4]
            hist[b] = hist.get(b, 0) + 1

    def fold(self, row: list) -> None:
        """Count a row's pending times (one per call) into its calls and
        time, and into its histogram if tracking: per call, the hot path
        only appends its time.  A script's row counts no calls (see
        ScriptTimes)."""
        pending = times = row[5]
        n = len(times)
        if type(times) is ScriptTimes:
            if not n:
                return  # (no row made for a script that never ran here)
            row = times.target()  # (``row`` stands in for it in by_bytes)
            # Folded from a plain list: a list subclass's items, read by
            # bisect (PySequence_GetItem) or by ``times[i]``, each go
            # through its ``__getitem__`` (slot_sq_item), several times
            # dearer than a list's.
            times = times[:]
        else:
            row[0] += n
        row[1] += sum(times)
        if self.tracking:
            # Sorted, a bucket's times are one run: one step per bucket
            # (a command's times fall in few), its end found by bisect,
            # within the run of times of one bit length (found first, by
            # bisect too), where a bucket is ``time >> shift`` and its
            # number that plus ``base`` ((bits << 6) | (head & 63) with a
            # head of 7 bits, whose top bit is 64, see add_run).
            hist = row[4]
            get = hist.get
            times.sort()
            i = 0
            while i < n:
                bits = times[i].bit_length()
                if bits <= 7:  # exact: one bucket per time
                    ns = times[i]
                    j = bisect_right(times, ns, i + 1)
                    hist[ns] = get(ns, 0) + j - i
                    i = j
                    continue
                end = bisect_left(times, 1 << bits, i + 1)  # past the times of this bit length
                shift = bits - 7
                base = (bits - 1) << 6
                while i < end:
                    head = times[i] >> shift
                    j = bisect_left(times, (head + 1) << shift, i + 1, end)
                    b = base + head
                    hist[b] = get(b, 0) + j - i
                    i = j
        pending.clear()

    def take_back(self, name: str, row: list) -> None:
        """Take back a call counted with its time in ``row``, the row of
        ``name`` when it was counted (a command
        counted as it was read, refused later: Redis counts a rejected
        call, no call and no time), unless CONFIG RESETSTAT made a new row
        since.  The time taken back is the row's latest pending one (that
        call's, unless another call of the command was counted since: each
        is an EXEC's time in dispatch, a few microseconds); once folded,
        the call alone."""
        if self.commands.get(name) is not row:
            return
        times = row[5]
        if times:
            times.pop()
        elif row[0] > 0:
            row[0] -= 1

    def rejected(self, name: str | None, error: str) -> None:
        """A command refused before it ran (``name`` None: unknown command)."""
        if name is not None:
            self._row(name)[2] += 1
        self.error(error)

    def error(self, message: str) -> None:
        self.error_replies += 1
        self.error_events += 1
        code = error_code(message)
        errors = self.errors
        if code in errors:
            errors[code] += 1
        elif len(errors) < MAX_ERROR_CODES:
            errors[code] = 1

    def slow(self, args: list[bytes], us: int, addr: str = "", name: bytes = b"", place: int = -1) -> int:
        """Log a command that took ``us`` microseconds, if slow enough: its
        entry's id (-1: not logged, or not yet: held, or kept apart).
        ``place``: where a held entry's reply is in the batch, for its
        client's name (see :attr:`on_named`); -1: none to name."""
        threshold = self.slow_threshold_us
        if threshold < 0 or us < threshold:
            return -1
        entry = (time.time_ns() // 1_000_000_000, us, slowlog_argv(args), addr, name)
        log = self.slowlog
        if self.holding:
            if place >= 0:
                self.places.append((len(log), place))
            log.append(entry)
            return -1
        if self.shared is not None:
            return self.shared.push([entry], self.slow_max)
        log.append(entry)
        if len(log) > max(self.slow_max, 0):
            del log[0]
            self.slow_dropped += 1
        return -1

    def slow_now(self, args: list[bytes], us: int) -> int:
        """:meth:`slow`, pushed at once, after the held entries, even while a
        batch holds them: its id (-1: not slow), for whoever needs it now."""
        holding = self.holding
        if holding:
            self.flush_held()
            self.holding = False
        try:
            return self.slow(args, us)
        finally:
            self.holding = holding

    def hold(self) -> bool:
        """A batch begins: hold its slow entries until :meth:`flush_held`
        (False: they go at once, as none is shared or a batch holds them)."""
        if self.shared is None or self.holding:
            return False
        self.holding = True
        return True

    def flush_held(self) -> int:
        """Push the held slow entries, in order, under one lock; tell
        ``on_named`` the ids of those with a place.  The first one's id
        (the others' follow it), -1 if none was pushed."""
        log = self.slowlog
        if not log or self.shared is None:
            return -1
        first = self.shared.push(log, self.slow_max)
        log.clear()
        self.flushes += 1
        places = self.places
        if places:
            named = [(first + i, place) for i, place in places]
            places.clear()
            if self.on_named is not None:
                self.on_named(named)
        return first

    def row_of(self, args: list[bytes]) -> list:
        """The counters of the command ``args``."""
        row = self.by_bytes.get(args[0])
        if row is None:
            name = stat_name(args)
            cmd = lookup(args[0])
            if self.skip_local and cmd is not None and cmd.route == "local":
                # Counted by the acceptor: a row that keeps nothing, whose
                # times (a deque of no room) are never folded; a script's
                # (EVAL, EVALSHA, FCALL) keeps only the time of its run.
                times = ScriptTimes(self, name) if name in _SCRIPT_COMMANDS else deque(maxlen=0)
                row = [0, 0, 0, 0, {}, times]
                if type(times) is ScriptTimes:
                    self.script_rows.append(row)
                self.by_bytes[args[0]] = row
                return row
            row = self._row(name)
            if "|" not in name and len(self.by_bytes) < 4096:
                self.by_bytes[args[0]] = row
        return row

    def reset(self) -> None:
        """CONFIG RESETSTAT."""
        self.generation += 1
        self.by_bytes.clear()
        self.script_rows.clear()  # (their pending times too)
        self.commands.clear()
        self.errors.clear()
        self.error_replies = 0

    def fold_pending(self) -> None:
        """Fold every row's pending times (see :meth:`fold`)."""
        for row in self.script_rows:
            self.fold(row)
        for row in self.commands.values():
            self.fold(row)

    def report(self) -> list:
        """What a worker sends the acceptor: plain values, for marshal."""
        self.fold_pending()
        return [
            {k: [v[0], v[1], v[2], v[3], dict(v[4])] for k, v in self.commands.items()},
            dict(self.errors),
            self.error_replies,
        ]

    def report_with(self, *more: Stats | None) -> list:
        """:meth:`report`, with the counts of ``more`` added (counters kept
        apart for a running script: what its calls counted so far, which
        Redis's INFO called from that script shows).  A row of ``more``
        that counts nothing now (drained, kept for the next use) adds none."""
        report = self.report()
        extra = [m for m in more if m is not None and (m.commands or m.error_events)]
        if not extra:
            return report
        total = Stats()
        total.merge(report)
        for m in extra:
            commands, errors, replies = m.report()
            total.merge(
                [{k: v for k, v in commands.items() if v[0] or v[1] or v[2] or v[3]}, errors, replies]
            )
        return total.report()

    def align(self, other: Stats) -> None:
        """Count as ``other`` counts (its settings), from now on: these are
        counters kept apart from ``other`` for what may have to be undone,
        the calls of a script that may yet run again on other shards (see
        :meth:`drain`).  :func:`apply_settings` keeps them aligned, and
        their slow log entries go into ``other``'s log when drained."""
        other.apart = self
        self.leader = other
        self.tracking = other.tracking
        self.slow_threshold_us = other.slow_threshold_us
        self.slow_threshold_ns = other.slow_threshold_ns
        self.slow_max = other.slow_max
        self.skip_local = other.skip_local

    def forget(self, journal: list[tuple[list, int]]) -> None:
        """Take back the calls ``journal`` noted, ``(row, time)`` each in the
        order they were counted (:meth:`record_latency` of a script's read
        that runs again elsewhere, see Engine._call_raise).  Nothing else
        was counted in those rows meanwhile, so each is the row's latest
        pending time, or was folded since."""
        for row, ns in reversed(journal):
            times = row[5]
            if times:
                times.pop()
                continue
            row[0] -= 1
            row[1] -= ns
            if self.tracking:
                _unbucket(row[4], bucket(ns))

    def checkpoint(self) -> tuple:
        """The counters as they are now, for :meth:`rollback`: a copy of
        each row and of the error counts, and where the held slow entries
        end (while :meth:`hold` holds them)."""
        rows = {name: (r[0], r[1], r[2], r[3], dict(r[4]), list(r[5])) for name, r in self.commands.items()}
        slow = (len(self.slowlog), len(self.places), self.flushes) if self.holding else None
        return rows, dict(self.errors), self.error_replies, self.error_events, self.generation, slow

    def rollback(self, saved: tuple) -> None:
        """Back to :meth:`checkpoint`'s counts (an operation undone, that
        runs again and counts again), each row in place (rows are held
        elsewhere: ``by_bytes``, a worker's plain entries); nothing if a
        CONFIG RESETSTAT came since.  The slow entries held since go too,
        unless some were pushed meanwhile (an EXEC's script logged at once,
        see Stats.slow_now): those stay."""
        rows, errors, replies, events, generation, slow = saved
        if slow is not None and self.holding and slow[2] == self.flushes:
            del self.slowlog[slow[0] :]
            del self.places[slow[1] :]
        if generation != self.generation:
            return
        for name, row in self.commands.items():
            old = rows.get(name)
            row[4].clear()
            if old is None:
                row[0] = row[1] = row[2] = row[3] = 0
                del row[5][:]
                continue
            row[0], row[1], row[2], row[3] = old[0], old[1], old[2], old[3]
            row[4].update(old[4])
            row[5][:] = old[5]
        self.errors.clear()
        self.errors.update(errors)
        self.error_replies = replies
        self.error_events = events

    def drain(self, into: Stats | None) -> None:
        """Move every count (slow log included) into ``into`` (None: drop
        them), leaving these at zero; the rows stay, for the next use."""
        erred = self.error_events  # no error: no rejected or failed call either
        for name, row in self.commands.items():
            times = row[5]
            if times:  # the usual case: calls whose times are not folded yet
                if into is not None:
                    mine = into.commands.get(name) or into._row(name)
                    mine[5] += times
                    if len(mine[5]) >= 256:
                        into.fold(mine)
                times.clear()
            if row[0] or (erred and (row[2] or row[3])):
                if into is not None:
                    mine = into._row(name)
                    mine[0] += row[0]
                    mine[1] += row[1]
                    mine[2] += row[2]
                    mine[3] += row[3]
                    hist = mine[4]
                    for b, n in row[4].items():
                        hist[b] = hist.get(b, 0) + n
                row[0] = row[1] = row[2] = row[3] = 0
                row[4].clear()
        if self.error_events:
            if into is not None:
                for code, n in self.errors.items():
                    if code in into.errors or len(into.errors) < MAX_ERROR_CODES:
                        into.errors[code] = into.errors.get(code, 0) + n
                into.error_replies += self.error_replies
                into.error_events += self.error_events
            self.errors.clear()
            self.error_replies = self.error_events = 0
        if self.slowlog or self.slow_dropped:
            if into is not None:
                if into.holding and not self.slow_dropped:
                    into.slowlog += self.slowlog  # after the held ones, as they ran
                elif into.shared is not None:
                    into.flush_held()  # (they ran before these)
                    into.shared.push(self.slowlog, into.slow_max, self.slow_dropped)
                else:
                    into.slowlog += self.slowlog
                    del into.slowlog[: -into.slow_max or len(into.slowlog)]
            self.slowlog.clear()
            self.slow_dropped = 0

    def merge(self, report: list) -> None:
        """Add a worker's :meth:`report` to these counters."""
        commands, errors, replies = report
        for name, (calls, ns, rejected, failed, hist, *_) in commands.items():
            row = self._row(name)
            row[0] += calls
            row[1] += ns
            row[2] += rejected
            row[3] += failed
            mine = row[4]
            for b, n in hist.items():
                mine[b] = mine.get(b, 0) + n
        for code, n in errors.items():
            self.errors[code] = self.errors.get(code, 0) + n
        self.error_replies += replies


def report_to_bus(report: list) -> list:
    """A :meth:`Stats.report` as the bus carries it (RESP2: bulk strings,
    integers, arrays): ``[[name, calls, ns, rejected, failed, [bucket, n,
    ...]], ...], [code, n, ...], error replies``."""
    commands, errors, replies = report
    rows = [
        [name.encode(), calls, ns, rejected, failed, [x for b, n in hist.items() for x in (b, n)]]
        for name, (calls, ns, rejected, failed, hist) in commands.items()
    ]
    return [rows, [x for code, n in errors.items() for x in (code.encode(), n)], replies]


def report_from_bus(flat: list) -> list:
    """:func:`report_to_bus`'s list back as a :meth:`Stats.report`."""
    rows, errors, replies = flat
    commands = {
        row[0].decode(): [row[1], row[2], row[3], row[4], dict(zip(row[5][::2], row[5][1::2], strict=True))]
        for row in rows
    }
    return [commands, {code.decode(): n for code, n in zip(errors[::2], errors[1::2], strict=True)}, replies]


REDACTED = b"(redacted)"


def redacted(args: list[bytes]) -> set[int]:
    """The positions of the secrets Redis's commands redact from the slow log
    (``redactClientCommandArgument``): AUTH's arguments, HELLO's AUTH pair,
    ACL SETUSER's user and rules, a sensitive parameter's value in CONFIG
    SET (even after an unknown one, as Redis), MIGRATE's AUTH
    password and AUTH2 pair (up to KEYS or a syntax error).  As in Redis,
    a command that fails before it reaches a secret keeps it: AUTH of
    three arguments, HELLO of a bad protocol version, HELLO's AUTH after
    an option it rejects.  MONITOR shows the same."""
    name = args[0].lower()
    argc = len(args)
    if name == b"auth":
        return set(range(1, argc)) if argc <= 3 else set()
    hidden: set[int] = set()
    if name == b"hello":
        if argc >= 2 and strict_int(args[1]) not in (2, 3):
            return hidden
        i = 2
        while i < argc:
            option = args[i].lower()
            if option == b"auth" and i + 2 < argc:
                hidden |= {i + 1, i + 2}
                i += 2
            elif option == b"setname" and i + 1 < argc:
                i += 1
            else:
                break
            i += 1
    elif name == b"acl" and argc >= 3 and args[1].lower() == b"setuser":
        hidden = set(range(2, argc))
    elif name == b"config" and argc >= 4 and argc % 2 == 0 and args[1].lower() == b"set":
        for i in range(2, argc, 2):
            setting = config.lookup(args[i].decode("latin-1"))
            if setting is not None and "sensitive" in setting.flags:
                hidden.add(i + 1)
    elif name == b"migrate":
        j = 6
        while j < argc:
            option = args[j].lower()
            if option == b"auth" and j + 1 < argc:
                hidden.add(j + 1)
                j += 1
            elif option == b"auth2" and j + 2 < argc:
                hidden |= {j + 1, j + 2}
                j += 2
            elif option not in (b"copy", b"replace"):
                break
            j += 1
    return hidden


def slowlog_argv(args: list[bytes]) -> list[bytes]:
    """The arguments as the slow log keeps them: secrets redacted as Redis
    does (:func:`redacted`), at most 32, each at most 128 bytes, with
    Redis's notes of what was cut."""
    hidden = redacted(args) if args else set()
    if hidden:
        args = [REDACTED if i in hidden else a for i, a in enumerate(args)]
    argc = len(args)
    kept = args if argc <= SLOWLOG_ENTRY_MAX_ARGC else args[: SLOWLOG_ENTRY_MAX_ARGC - 1]
    out = []
    for a in kept:
        if len(a) > SLOWLOG_ENTRY_MAX_STRING:
            a = a[:SLOWLOG_ENTRY_MAX_STRING] + b"... (%d more bytes)" % (len(a) - SLOWLOG_ENTRY_MAX_STRING)
        out.append(a)
    if argc > SLOWLOG_ENTRY_MAX_ARGC:
        out.append(b"... (%d more arguments)" % (argc - SLOWLOG_ENTRY_MAX_ARGC + 1))
    return out


def apply_settings(stats: Stats, settings: dict[str, str]) -> None:
    """Take the slow log and latency settings from CONFIG values as text."""
    if "slowlog-log-slower-than" in settings:
        stats.slow_threshold_us = int(settings["slowlog-log-slower-than"])
        stats.slow_threshold_ns = stats.slow_threshold_us * 1000
    if "slowlog-max-len" in settings:
        stats.slow_max = int(settings["slowlog-max-len"])
    if "latency-tracking" in settings:
        tracking = settings["latency-tracking"] in ("yes", "True", "true", "1")
        if tracking != stats.tracking:
            # The calls before the change count under the setting they ran
            # with: their times, pending until a fold, are folded now.
            stats.fold_pending()
            if stats.apart is not None:
                stats.apart.fold_pending()
            stats.tracking = tracking
    if stats.apart is not None:
        stats.apart.align(stats)
