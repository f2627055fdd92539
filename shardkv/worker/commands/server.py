"""Commands that act on the whole shard, and the acceptor's internal queries.

Names starting with ``__`` are not in the command table, so no client can
send them: the acceptor uses them to ask each shard for its part of SCAN,
INFO and the like.
"""

from __future__ import annotations

import os

from shardkv.protocol import errors
from shardkv.protocol.args import parse_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import OK, Error
from shardkv.protocol.wire import CONFIG_NUMBER, Verb
from shardkv.runtime.cmdstats import apply_settings
from shardkv.runtime.config import value_text
from shardkv.worker import eviction
from shardkv.worker.functions import EMPTY_FUNCTIONS_MEMORY
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import TYPE_NAMES, Keyspace


def dbsize(ks: Keyspace, args: list[bytes]) -> object:
    """DBSIZE"""
    return ks.dbsize()


def flushall(ks: Keyspace, args: list[bytes]) -> object:
    """FLUSHALL [ASYNC | SYNC]"""
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        raise CommandError(errors.SYNTAX)
    every = args[0].lower() == b"flushall"
    ks.changes = ks.total_keys() if every else ks.dbsize()  # as Redis: a change per key removed
    ks.flush(every=every)
    if every and ks.persistence is not None:
        ks.persistence.flushed = True  # saved once counted (Persistence.record, see Saves.flushed_all)
    return OK


def swapdb(ks: Keyspace, args: list[bytes]) -> object:
    """SWAPDB index1 index2

    This shard's part: the acceptor checks the indexes and sends the
    command to every shard in one step (logged as it is, as Redis logs it).

    As Redis's ``dbSwapDatabases``: the watched keys of both databases that
    exist in either of them are touched, and the clients blocked on keys of
    either database may be served now (see ``Shard.run_batch``)."""
    a, b = parse_int(args[1]), parse_int(args[2])
    if not (0 <= a < len(ks.dbs) and 0 <= b < len(ks.dbs)):
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    for one, other in ((a, b), (b, a)):
        watched = ks.database(one)
        if watched is None or not watched.watched:
            continue
        with ks.selected(other):
            present = [k for k in watched.watched if ks.peek(k) is not None]
        with ks.selected(one):
            present += [k for k in watched.watched if ks.peek(k) is not None]
        for key in present:
            watched.watched[key] += 1
    ks.swap(a, b)
    if ks.slots.start:
        ks.changes = 0  # as Redis, one change: every shard runs it, the first counts it
    waiters = ks.waiters
    if waiters is not None:
        waiters.mark_db(a)
        waiters.mark_db(b)
    return OK


def keys(ks: Keyspace, args: list[bytes]) -> object:
    """KEYS pattern"""
    if args[1] == b"*":  # everything, the empty key too (as Redis's allkeys)
        return list(ks.iter_keys())
    match = compile_glob(args[1])
    return [k for k in ks.iter_keys() if match(k)]


def randomkey(ks: Keyspace, args: list[bytes]) -> object:
    """RANDOMKEY"""
    return ks.random_key()


def scan(ks: Keyspace, args: list[bytes]) -> object:
    """__scan slot count pattern type -> [next slot or -1, keys, keys visited]

    The acceptor has parsed SCAN's options; ``pattern`` is ``*`` (all
    keys, as Redis treats that pattern) and ``type`` empty when not given.
    """
    slot, count = int(args[1]), int(args[2])
    pattern, kind = args[3], args[4].decode("latin-1").lower()
    next_slot, found = ks.scan(slot, count)
    visited = len(found)
    if pattern != b"*":
        match = compile_glob(pattern)
        found = [k for k in found if match(k)]
    if kind:
        with ks.reading():  # as Redis, the TYPE filter reads each key
            found = [k for k in found if TYPE_NAMES.get(type(ks.peek(k))) == kind]  # not an access
    return [next_slot, found, visited]


def info(ks: Keyspace, args: list[bytes]) -> object:
    """__info -> [keys, keys with a TTL, expired keys, rss bytes, pid,
    persistence figures, other stats (``used_memory``: the shard's memory
    figure, see shardkv.worker.eviction)]"""
    rss = eviction.process_rss()
    persistence = ks.persistence
    figures = persistence.info() if persistence is not None else {}
    cpu = os.times()
    memory = ks.memory
    stats = {
        "used_cpu_sys": cpu.system,
        "used_cpu_user": cpu.user,
        "evicted_keys": getattr(memory, "evicted", 0),
        "lazyfreed_objects": ks.lazyfreed_objects,
        "used_memory": eviction.figure(ks),  # what maxmemory counts (not the RSS)
        "keyspace_hits": ks.hits,
        "keyspace_misses": ks.misses,
        "hz": ks.runtime.hz,
    }
    command_stats = ks.stats
    if command_stats is not None:
        # With what a running script's calls counted so far (kept apart
        # until it ends), as Redis's INFO called from the script has them.
        stats["cmdstats"] = command_stats.report_with(command_stats.apart)
    scripts = ks.scripts
    if scripts is not None:  # the Lua engine (shardkv.worker.scripting)
        functions = getattr(scripts, "functions", None)
        stats["used_memory_lua"] = scripts.memory()
        stats["used_memory_vm_functions"] = scripts.functions_memory()
        stats["number_of_functions"] = len(functions.functions) if functions is not None else 0
        stats["number_of_libraries"] = len(functions.libraries) if functions is not None else 0
        stats["used_memory_functions"] = (
            functions.memory_overhead() if functions is not None else EMPTY_FUNCTIONS_MEMORY
        )
    dbs = {}
    for db in ks.used_dbs():
        with ks.selected(db):
            if ks.dbsize():
                dbs[db] = [ks.dbsize(), ks.nvolatile, *_ttl_sample(ks)]
    if ks.imported is not None:
        _without_imported(ks, dbs, *ks.imported)
    stats["dbs"] = dbs
    keys = sum(d[0] for d in dbs.values())
    volatile = sum(d[1] for d in dbs.values())
    return [keys, volatile, ks.expired_keys, rss, os.getpid(), figures, stats]


def _without_imported(ks: Keyspace, dbs: dict, here: int, states: dict) -> None:
    """INFO while this shard executes a cross-shard operation (a script's
    INFO, asked in an ``I`` frame): the other shards' keys imported here
    are counted here as they are now, and still by their own shards as
    they were, so take the latter out (a database's figures here may then
    be below zero)."""
    for key, state in states.items():
        if state is not None:
            figures = dbs.setdefault(key[0] if type(key) is tuple else here, [0, 0, 0, 0])
            figures[0] -= 1
            figures[1] -= state[2] is not None


def _ttl_sample(ks: Keyspace, limit: int = 1000) -> list:
    """[sum of remaining TTLs in ms, how many] over up to ``limit`` keys
    with a TTL of the current database, for INFO keyspace's avg_ttl
    (Redis estimates it too)."""
    total = n = 0
    now = ks.now
    for slot in ks.slots:
        exp = ks.expires[slot]
        if exp:
            for when in exp.values():
                if when > now:
                    total += when - now
                    n += 1
            if n >= limit:
                break
    return [total, n]


def config(ks: Keyspace, args: list[bytes]) -> object:
    """__config [# number] name value [name value ...] -> 1 or 0 as
    ``__oom``: the acceptor's settings.  With a number (several acceptors,
    see shardkv.acceptor.configorder), a setting already set with a higher
    number keeps its value."""
    runtime = ks.runtime
    start, number = 1, None
    if len(args) > 2 and args[1] == CONFIG_NUMBER:
        start, number = 3, int(args[2])
    for i in range(start, len(args) - 1, 2):
        name = args[i].decode()
        if number is not None:
            if runtime.numbers.get(name, 0) > number:
                continue  # a later CONFIG SET's value, through another pipe
            runtime.numbers[name] = number
        try:
            runtime.set(name, value_text(args[i + 1]))
        except ValueError:
            pass  # the acceptor validated it; a bad value keeps the old one
    for hook in ks.runtime.hooks:
        hook(ks)
    stats = ks.stats
    if stats is not None:
        apply_settings(stats, ks.runtime.extra)
    return oom(ks, args)


def oom(ks: Keyspace, args: list[bytes]) -> object:
    """__oom -> 1 when this shard is over its maxmemory share with nothing
    left to evict, else 0 (``__config`` answers the same)."""
    memory = ks.memory
    return 1 if memory is not None and memory.out_of_memory() else 0


def resetstat(ks: Keyspace, args: list[bytes]) -> object:
    """__resetstat -> OK: CONFIG RESETSTAT's part in this shard."""
    ks.expired_keys = ks.lazyfreed_objects = 0
    ks.hits = ks.misses = 0
    stats = ks.stats
    if stats is not None:
        stats.reset()
    persistence = ks.persistence
    if persistence is not None:  # as Redis's resetServerStats
        persistence.rdb_saves = persistence.aof_rewrites = 0
        persistence.aof_rewrites_consecutive_failures = 0
        persistence.latest_fork_usec = 0  # (stat_fork_time)
        persistence.total_forks = 0  # (stat_total_forks)
    return OK


def cmdstats(ks: Keyspace, args: list[bytes]) -> object:
    """__cmdstats -> [commands, error codes, error replies]: this shard's
    part of INFO commandstats, errorstats and latencystats."""
    stats = ks.stats
    return stats.report() if stats is not None else [{}, {}, 0]


def pause(ks: Keyspace, args: list[bytes]) -> object:
    """__pause 1 <end> | __pause 0 -> OK: CLIENT PAUSE began (or was
    extended) on this pipe's acceptor, until ``end`` (time.monotonic() in
    microseconds, the machine's one clock), or it ended (UNPAUSE, or its
    acceptor's timer).  Expiry waits while any acceptor pauses, and no
    longer than the pause's end: an acceptor whose event loop is stalled
    past it, and tells its end late, does not keep the others' keys."""
    if args[1] == b"1":
        ks.paused_by[ks.pipe] = int(args[2]) / 1e6 if len(args) > 2 else float("inf")
    else:
        ks.paused_by.pop(ks.pipe, None)
    ks.expiry_paused = bool(ks.paused_by)
    return OK


def settled(ks: Keyspace, args: list[bytes]) -> object:
    """__settled -> 1, an inquiry: its answer follows what the worker tells
    every pipe of its own accord (its ``D`` frame), so an acceptor that
    has it has heard what the settings another acceptor set changed."""
    return 1


def misconf(ks: Keyspace, args: list[bytes]) -> object:
    """__misconf [text] -> OK: this pipe's acceptor refuses writes with the
    -MISCONF ``text`` (some shard cannot persist), or no longer does; a
    script's writes are refused while any acceptor says so (see
    shardkv.acceptor.diskerrors)."""
    if len(args) > 1:
        ks.misconf_by[ks.pipe] = args[1].decode()
    else:
        ks.misconf_by.pop(ks.pipe, None)
    ks.misconf = next(iter(ks.misconf_by.values()), None)
    return OK


def hold(ks: Keyspace, args: list[bytes]) -> object:
    """__hold -> OK: from now on the shard reads only the pipe this came on,
    until that pipe's ``__release`` (or until it closes).  A coordinator
    holds every shard of a multi-shard command, in ascending shard order,
    for as long as the command runs (see :mod:`shardkv.worker.loop`)."""
    if ks.held_by == ks.pipe:
        return Error(errors.ALREADY_HELD)
    if not ks.flagged:  # (see shardkv.runtime.scriptflags)
        ks.raise_flag()
    ks.held_by = ks.pipe
    return OK


def release(ks: Keyspace, args: list[bytes]) -> object:
    """__release -> OK: the shard reads every pipe again (OK if not held)."""
    if ks.held_by == ks.pipe:
        ks.held_by = None
    return OK


def ping(ks: Keyspace, args: list[bytes]) -> object:
    """__ping -> PONG, to check that a shard answers."""
    return "PONG"


def parse_count(arg: bytes) -> int:
    count = parse_int(arg)
    if count < 1:
        raise CommandError(errors.SYNTAX)
    return count


def watch(ks: Keyspace, args: list[bytes]) -> object:
    """__watch key... (or __watchb key..., see Verb.WATCH_BUSY) -> the keys'
    current versions; counts the watchers."""
    for key in args[1:]:
        ks.peek(key)  # an expired key goes now: its removal is no change after the WATCH
    return watch_keys(ks, ks.pipe, args[1:])


def watch_keys(ks: Keyspace, pipe: int, keys: list[bytes]) -> list[int]:
    """Count ``pipe``'s acceptor as a watcher of ``keys`` (of the current
    database), and give their versions, which :meth:`Keyspace.touch` raises
    from now on."""
    counts = ks.watch_counts
    mine = ks.watchers.setdefault(pipe, {})  # this acceptor's, forgotten with it
    db = ks.db
    out = []
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
        mine[db, key] = mine.get((db, key), 0) + 1
        out.append(ks.watched.setdefault(key, 0))
    return out


def watched(ks: Keyspace, args: list[bytes]) -> object:
    """__watched version... -> those versions: a __watchb that ran ahead
    while a script was busy (see shardkv.worker.busywatch) answers, in its
    place, what it read then."""
    return [int(v) for v in args[1:]]


def unwatch(ks: Keyspace, args: list[bytes]) -> object:
    """__unwatch key... -> OK; forgets keys nobody watches any more."""
    counts = ks.watch_counts
    mine = ks.watchers.get(ks.pipe, {})
    db = ks.db
    for key in args[1:]:
        m = mine.get((db, key), 0) - 1
        if m <= 0:
            mine.pop((db, key), None)
        else:
            mine[db, key] = m
        n = counts.get(key, 0) - 1
        if n <= 0:
            counts.pop(key, None)
            ks.watched.pop(key, None)
        else:
            counts[key] = n
    return OK


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "dbsize": dbsize,
    "flushall": flushall,
    "flushdb": flushall,
    "swapdb": swapdb,
    "keys": keys,
    "randomkey": randomkey,
    Verb.SCAN: scan,
    Verb.INFO: info,
    Verb.CONFIG: config,
    Verb.OOM: oom,
    Verb.RESETSTAT: resetstat,
    Verb.CMDSTATS: cmdstats,
    Verb.PAUSE: pause,
    Verb.MISCONF: misconf,
    Verb.SETTLED: settled,
    Verb.HOLD: hold,
    Verb.RELEASE: release,
    Verb.PING: ping,
    Verb.WATCH: watch,
    Verb.WATCH_BUSY: watch,
    Verb.WATCHED: watched,
    Verb.UNWATCH: unwatch,
}
