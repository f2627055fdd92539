"""A shard's data: its keys, their values and their expiry times.

Keys are grouped by cluster slot: ``data[slot]`` is a dict of the keys in
that slot, and ``expires[slot]`` maps the keys of that slot that have a TTL
to their deadline in milliseconds.  Grouping by slot costs one extra list
index per access and buys three things: SCAN can use the slot number as a
stateless cursor that never skips or repeats a key; the active sweeper can
walk slots with a cursor, as Redis walks its expires table; and a shard's
keys can be handed to another shard slot by slot.

Values are plain Python objects, one type per Redis type:

=========  ======================================
string     ``bytes``, or ``bytearray`` while it is changed in place
hash       ``dict`` of bytes to bytes
list       ``collections.deque`` of bytes
set        ``set`` of bytes
zset       :class:`shardkv.worker.zset.ZSet`
=========  ======================================

Databases (SELECT): each database has its own ``data``, ``expires``,
``expiring``, ``nvolatile`` and WATCH tables (a :class:`Database`).  The keyspace's own
attributes of those names are the *current* database's, and
:meth:`Keyspace.select` switches them, so the command modules never
think about databases: the worker selects the entry's database before it
runs a command and database 0 again after it.  Databases other than 0
are created on first use.

A keyspace is also the *context* each command handler gets (handlers are
called ``handler(keyspace, args)``): besides the keys, it holds what a
handler may need of its shard, and no handler reaches for a module global
instead: ``runtime`` (the settings, :class:`~shardkv.worker.settings.Runtime`),
``memory`` (eviction), ``persistence``, ``scripts`` (the Lua engine),
``waiters`` (blocked commands) and ``stats`` (command statistics).

Every access goes through :meth:`Keyspace.lookup`, which expires a key
lazily once its deadline has passed and stamps the key's access clock
(``clocks``, see :mod:`shardkv.worker.access`); :meth:`Keyspace.peek` is
the same lookup without the stamp.  SETBIT, SETRANGE, APPEND and
BITFIELD change a string in place, at the cost of the change rather than
of the string: :meth:`Keyspace.lookup_raw` hands them (and the bitmap
readers) the value as it is, and the first writer turns a ``bytes`` into
a ``bytearray``.  :meth:`Keyspace.lookup` turns it back into ``bytes``,
once, so every other reader (GET, DUMP, COPY, a transfer between shards)
sees an immutable string.  Code that walks ``data`` directly (snapshots,
the memory estimate) knows both types.  ``now`` is read from the clock once
per batch of commands, as Redis caches the time per command.
"""

from __future__ import annotations

import random
import time
from binascii import crc_hqx
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError
from shardkv.protocol.router import LBRACE, SLOTS, key_slot
from shardkv.worker.clock import Clock
from shardkv.worker.settings import Runtime
from shardkv.worker.stream import Stream
from shardkv.worker.zset import ZSet

if TYPE_CHECKING:
    from shardkv.runtime.cmdstats import Stats
    from shardkv.worker.blocking import Waiters
    from shardkv.worker.eviction import Memory
    from shardkv.worker.persistence.engine import Persistence
    from shardkv.worker.scripting import Engine

T = TypeVar("T")

# Redis's TYPE names, by Python type.
TYPE_NAMES: dict[type, str] = {
    bytes: "string",
    bytearray: "string",
    dict: "hash",
    deque: "list",
    set: "set",
    ZSet: "zset",
    Stream: "stream",
}


# The event classes noted by the keyspace and eviction (Redis's NOTIFY_EXPIRED,
# NOTIFY_EVICTED, NOTIFY_KEY_MISS;
# see shardkv.worker.events).
EXPIRED = 1 << 8
EVICTED = 1 << 9
KEYMISS = 1 << 11
# Redis's OBJ_ENCODING_EMBSTR_SIZE_LIMIT + 1: a string this long is raw.
RAW_MIN = 45


def slot_of(key: bytes) -> int:
    if LBRACE in key:
        return key_slot(key)
    return crc_hqx(key, 0) & 16383


class Database:
    """One database's tables (see the module docstring)."""

    __slots__ = ("data", "expires", "expiring", "nvolatile", "watched", "watch_counts", "clocks")

    def __init__(self) -> None:
        self.data: list[dict[bytes, object]] = [{} for _ in range(SLOTS)]
        self.expires: list[dict[bytes, int]] = [{} for _ in range(SLOTS)]
        # 1 at each slot whose ``expires`` may hold keys: set when a key of
        # the slot gets a TTL, cleared by the sweeper when it finds the slot
        # has none left.  The sweeper skips the other slots at the speed of
        # bytearray.find, as Redis's expires table holds only keys with a TTL.
        self.expiring = bytearray(SLOTS)
        self.nvolatile = 0  # keys with a TTL
        # WATCH support: key -> version, only for keys someone watches.
        self.watched: dict[bytes, int] = {}
        self.watch_counts: dict[bytes, int] = {}  # watchers per watched key
        # key -> its access clock (see shardkv.worker.access); always the
        # same dict object, emptied in place by a flush.
        self.clocks: dict[bytes, int] = {}

    def size(self) -> int:
        return sum(map(len, self.data))


class Keyspace:
    """The keys of one shard."""

    def __init__(self, clock: Clock | None = None, slots: range = range(SLOTS), databases: int = 16) -> None:
        self.clock = clock or Clock()
        # The batch's time (Unix ms): TTLs set and answered count from it.
        # ``expiry_now``, the time a key's expiry is checked against, is the
        # same but in the run of an EXEC with scripts, where it is the first
        # run's start (see wire.Run.as_of): Redis's expiry checks stand
        # still while EXEC runs, its clock does not.
        self.now = self.expiry_now = self.clock.now_ms()
        self.slots = slots
        self.db = 0  # the current database
        self.dbs: list[Database | None] = [None] * databases
        self.dbs[0] = first = Database()
        self.data = first.data
        self.expires = first.expires
        self.expiring = first.expiring
        self.nvolatile = 0
        self.watched = first.watched
        self.watch_counts = first.watch_counts
        self.clocks = first.clocks
        # Access clocks (see shardkv.worker.access): a key without one counts
        # from ``clock_base``; ``lfu`` while an LFU policy is in force;
        # ``no_touch`` while a CLIENT NO-TOUCH client's entry runs.
        self.clock_base = self.now
        self.lfu = False
        self.no_touch = False
        # The short strings (at most RAW_MIN - 1 bytes) last changed in
        # place (APPEND, SETRANGE, SETBIT...), by (database, key), as the
        # ``bytes`` that replaced their ``bytearray``: Redis's are raw,
        # whatever they hold (OBJECT ENCODING; a longer one is raw anyway).
        # A new value of the key is another object, and no longer raw.
        self.raw_strings: dict[tuple[int, bytes], bytes] = {}
        self.expired_keys = 0  # stats, as INFO reports them
        self.lazyfreed_objects = 0  # values UNLINK freed as Redis would in the background
        # Keyspace hits and misses: while ``counting`` is on (a read-only
        # command runs, or see :meth:`reading`), each lookup counts one.
        self.counting = False
        self.hits = 0
        self.misses = 0
        self.on_delete: Callable[[bytes], None] | None = None
        # Called for a key the server removes by itself (expiry, eviction),
        # as Redis's propagateDeletion: the AOF logs a DEL.
        self.propagate_del: Callable[[bytes], None] | None = None
        # The shard's context: what a command handler may need besides the
        # keys (each handler gets the keyspace).  The shard sets them; a
        # keyspace on its own (tests, re-sharding) has the defaults.
        self.runtime = Runtime()  # the settings, kept current by __config
        self.memory: Memory | None = None  # while maxmemory is on (eviction)
        self.persistence: Persistence | None = None  # AOF and snapshots
        self.scripts: Engine | None = None  # Lua scripts and functions
        self.waiters: Waiters | None = None  # blocked commands (SWAPDB wakes them)
        self.stats: Stats | None = None  # command statistics and the slow log
        # While clients are paused (CLIENT PAUSE), an expired key reads as
        # missing but stays, as in Redis: nothing is deleted, nothing logged.
        self.expiry_paused = False
        # The first runs' starts (Unix ms) of the EXECs with scripts that
        # have parked this shard (``__parkat``), by operation, until its
        # Decide; and, by start, how many of those undone to run again (a
        # script escaped: ``Decide.again``) until their run again parks:
        # the sweeper deletes no key that expired after the earliest, so
        # that every run of such an EXEC finds its keys, watched or not, as
        # of its first's start (Redis's time stands still while EXEC runs).
        self.exec_frozen: dict[int, int] = {}
        self.exec_carried: dict[int, int] = {}
        # Set by a write command that changed nothing (SETBIT of a bit to
        # its value): as in Redis, it is not a change (``dirty``) and is not
        # logged.  Read and cleared by the shard after each command.
        self.unchanged = False
        # Set by a write that counts other than one change in Redis's
        # ``server.dirty`` (MSET: one per pair, SADD: one per member added,
        # FLUSHALL: one per key removed, maybe none): that count.  Read and
        # cleared where the write is counted (Persistence.record, run_batch),
        # or, with ``unchanged``, where a command that failed or changed
        # nothing is not recorded: never the next write's count.
        self.changes: int | None = None
        # Keyspace events (see shardkv.worker.events): while the acceptor
        # wants some (``event_mask``), ``events`` collects them as
        # (db, key, class, event), and ``touched`` the keys changed in place.
        self.event_mask = 0
        self.events: list | None = None
        # notify-keyspace-events as of the command running now (its flags,
        # from ``__config``), and each class as an event of it is noted:
        # with the channels (K, E) the setting publishes it on then.
        self.notify_flags = 0
        self.classes: dict[int, int] = {1 << bit: 1 << bit for bit in range(2, 18)}
        self.noting = False  # a write command's events are wanted (not only STARVED)
        self.touched: set[bytes] = set()
        # With several acceptors (``--acceptors``), what is kept per acceptor
        # pipe: ``pipe`` is the one whose frame runs now (set by the loop),
        # ``event_masks`` each pipe's nonzero ``__events`` mask
        # (``event_mask``: the classes they and notify-keyspace-events ask
        # for, see shardkv.worker.events), ``watchers`` each pipe's WATCH
        # counts by (db, key), ``held_by`` the pipe holding the shard
        # (``__hold``), if any, ``paused_by`` the pipes whose acceptor
        # pauses clients (``__pause``), each with its pause's end, a
        # time.monotonic() time (``expiry_paused`` while any does: see
        # :meth:`expiry_waits`).
        self.pipe = 0
        self.event_masks: dict[int, int] = {}
        self.watchers: dict[int, dict[tuple[int, bytes], int]] = {}
        self.held_by: int | None = None
        # K > 1: this shard's slot of the shared script flags
        # (shardkv.runtime.scriptflags), and whether it is 1 as far as this
        # worker knows: set before a script, park, hold or prepare
        # (raise_flag), cleared between frames (loop.Pipes.lower_flag).
        # Without flags (K = 1) it stays True: nothing to raise.
        self.script_flags: memoryview | None = None  # (ScriptFlags.slots)
        self.flag_index = 0  # (this shard's slot)
        self.flagged = True
        self.paused_by: dict[int, float] = {}
        # The pipes whose acceptor says some shard cannot persist
        # (``__misconf``): the -MISCONF text; ``misconf`` one of them, or
        # None: what a script's writes are refused with.
        self.misconf_by: dict[int, str] = {}
        self.misconf: str | None = None
        # While this shard executes a cross-shard operation: (its database,
        # the states of the other shards' keys imported here), for INFO.
        self.imported: tuple[int, dict] | None = None
        # Meanwhile: the keys its commands made hold a value a blocked
        # command pops, in the order they did (see blocking.note_ready).
        self.ready_order: dict | None = None

    # -- databases --------------------------------------------------------

    def raise_flag(self) -> None:
        """Say, before it starts, that this shard may run a script, or is
        parked, held or prepared for an operation (see
        :mod:`shardkv.runtime.scriptflags`); callers test ``flagged`` first."""
        flags = self.script_flags
        if flags is not None:
            flags[self.flag_index] = 1
            self.flagged = True

    def select(self, db: int) -> None:
        """Make ``db`` the current database (it must be in range)."""
        cur = self.dbs[self.db]
        cur.data = self.data  # type: ignore[union-attr]
        cur.expires = self.expires  # type: ignore[union-attr]
        cur.expiring = self.expiring  # type: ignore[union-attr]
        cur.nvolatile = self.nvolatile  # type: ignore[union-attr]
        new = self.dbs[db]
        if new is None:
            new = self.dbs[db] = Database()
        self.data = new.data
        self.expires = new.expires
        self.expiring = new.expiring
        self.nvolatile = new.nvolatile
        self.watched = new.watched
        self.watch_counts = new.watch_counts
        self.clocks = new.clocks
        self.db = db

    def database(self, db: int) -> Database | None:
        """Database ``db`` with its current figures, or None if never used."""
        if db == self.db:
            self.select(db)  # writes the current figures back
        return self.dbs[db]

    def forget_watches(self, pipe: int) -> None:
        """Acceptor ``pipe`` has gone, and its clients' WATCHes with it."""
        mine = self.watchers.pop(pipe, None)
        if not self.watchers:  # nobody else watches anything
            for db in self.used_dbs():
                self.dbs[db].watched.clear()  # type: ignore[union-attr]
                self.dbs[db].watch_counts.clear()  # type: ignore[union-attr]
            return
        for (db, key), n in (mine or {}).items():
            database = self.dbs[db]
            if database is None:
                continue
            left = database.watch_counts.get(key, 0) - n
            if left <= 0:
                database.watch_counts.pop(key, None)
                database.watched.pop(key, None)
            else:
                database.watch_counts[key] = left

    def used_dbs(self) -> list[int]:
        """The databases that exist (created), in order."""
        return [i for i, d in enumerate(self.dbs) if d is not None]

    @contextmanager
    def selected(self, db: int) -> Iterator[None]:
        """Run the block in database ``db``, then go back."""
        before = self.db
        if db == before:
            yield
            return
        self.select(db)
        try:
            yield
        finally:
            self.select(before)

    def total_keys(self) -> int:
        """Keys in every database."""
        total = 0
        for db in self.used_dbs():
            total += self.database(db).size()  # type: ignore[union-attr]
        return total

    def total_volatile(self) -> int:
        total = 0
        for db in self.used_dbs():
            total += self.database(db).nvolatile  # type: ignore[union-attr]
        return total

    def swap(self, a: int, b: int) -> None:
        """SWAPDB: databases ``a`` and ``b`` trade their keys; each keeps
        its WATCH tables (Redis swaps the dicts, not the watchers)."""
        self.select(self.db)  # the current figures written back
        dbs = self.dbs
        da = dbs[a] or Database()
        db_ = dbs[b] or Database()
        dbs[a], dbs[b] = da, db_
        da.data, db_.data = db_.data, da.data
        da.expires, db_.expires = db_.expires, da.expires
        da.expiring, db_.expiring = db_.expiring, da.expiring
        da.nvolatile, db_.nvolatile = db_.nvolatile, da.nvolatile
        da.clocks, db_.clocks = db_.clocks, da.clocks
        cur = dbs[self.db]
        self.data = cur.data  # type: ignore[union-attr]
        self.expires = cur.expires  # type: ignore[union-attr]
        self.expiring = cur.expiring  # type: ignore[union-attr]
        self.nvolatile = cur.nvolatile  # type: ignore[union-attr]
        self.clocks = cur.clocks  # type: ignore[union-attr]

    def tick(self) -> int:
        """Read the clock; call once per batch of commands."""
        self.now = self.expiry_now = now = self.clock.now_ms()
        return now

    # -- reading ----------------------------------------------------------

    def lookup(self, key: bytes) -> object | None:
        """The value of ``key``, or None if it is missing or has expired.
        A string is ``bytes`` (one being changed in place is frozen here).
        An access: the key's clock is stamped (see shardkv.worker.access)."""
        slot = key_slot(key) if LBRACE in key else crc_hqx(key, 0) & 16383
        exp = self.expires[slot]
        if exp:
            when = exp.get(key)
            if when is not None and when <= self.expiry_now:
                self._expire(slot, key)
                if self.counting:
                    self.misses += 1
                    if self.event_mask & KEYMISS:
                        self.events.append((self.db, key, self.classes[KEYMISS], b"keymiss"))  # type: ignore[union-attr]
                return None
        value = self.data[slot].get(key)
        if value is None:
            if self.counting:
                self.misses += 1
                if self.event_mask & KEYMISS:
                    self.events.append((self.db, key, self.classes[KEYMISS], b"keymiss"))  # type: ignore[union-attr]
            return None
        self.clocks[key] = self.now
        if self.counting:
            self.hits += 1
        if type(value) is bytearray:
            value = self._settle(slot, key, value)
        return value

    def peek(self, key: bytes) -> object | None:
        """Like :meth:`lookup`, but not an access: the key's clock stays
        (Redis's ``LOOKUP_NOTOUCH``: TYPE, EXISTS, TTL, OBJECT...)."""
        value = self.peek_raw(key)
        if type(value) is bytearray:
            value = self._settle(slot_of(key), key, value)
        return value

    def peek_quietly(self, key: bytes) -> object | None:
        """Like :meth:`peek`, but a key that has expired is left for the
        command that reads it to delete (its ``expired`` event then, as in
        Redis): None, nothing else happens."""
        slot = slot_of(key)
        exp = self.expires[slot]
        if exp:
            when = exp.get(key)
            if when is not None and when <= self.expiry_now:
                return None
        return self.data[slot].get(key)

    def _settle(self, slot: int, key: bytes, value: bytearray) -> bytes:
        """A string changed in place becomes ``bytes`` again (see :attr:`raw_strings`)."""
        settled = self.data[slot][key] = bytes(value)
        if len(settled) < RAW_MIN:
            self.raw_strings[self.db, key] = settled
        return settled

    def is_raw(self, key: bytes, value: bytes) -> bool:
        """Is ``value``, the string at ``key``, one changed in place (Redis: raw)?"""
        return self.raw_strings.get((self.db, key)) is value

    def lookup_raw(self, key: bytes) -> object | None:
        """Like :meth:`lookup`, but a string may come back as the
        ``bytearray`` it is being changed in place as: only for code that
        reads it at once, or changes it (see :func:`strings.mutable_string`)."""
        value = self.peek_raw(key)
        if value is not None:
            self.clocks[key] = self.now
        return value

    def peek_raw(self, key: bytes) -> object | None:
        """:meth:`lookup_raw` without the access (see :meth:`peek`)."""
        slot = key_slot(key) if LBRACE in key else crc_hqx(key, 0) & 16383
        exp = self.expires[slot]
        if exp:
            when = exp.get(key)
            if when is not None and when <= self.expiry_now:
                self._expire(slot, key)
                if self.counting:
                    self.misses += 1
                    if self.event_mask & KEYMISS:
                        self.events.append((self.db, key, self.classes[KEYMISS], b"keymiss"))  # type: ignore[union-attr]
                return None
        value = self.data[slot].get(key)
        if self.counting:
            if value is None:
                self.misses += 1
                if self.event_mask & KEYMISS:
                    self.events.append((self.db, key, self.classes[KEYMISS], b"keymiss"))  # type: ignore[union-attr]
            else:
                self.hits += 1
        return value

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Count the lookups made inside as keyspace hits and misses: a
        write command's lookups of the keys it reads (SET ... GET, COPY's
        source, SUNIONSTORE's sources), where Redis uses lookupKeyRead."""
        before = self.counting
        self.counting = True
        try:
            yield
        finally:
            self.counting = before

    def lookup_type(self, key: bytes, kind: type[T]) -> T | None:
        """Like :meth:`lookup`, but a value of another type is WRONGTYPE:
        ``ks.lookup_type(key, deque)`` is a ``deque`` or None, for the checker too."""
        value = self.lookup(key)
        if value is not None and type(value) is not kind:
            raise CommandError(errors.WRONGTYPE)
        return value

    def exists(self, key: bytes) -> bool:
        return self.peek(key) is not None

    def get_expire(self, key: bytes) -> int | None:
        """The deadline of ``key`` in ms, or None.  Call after lookup()."""
        return self.expires[slot_of(key)].get(key)

    def type_name(self, value: object) -> str:
        return TYPE_NAMES[type(value)]

    # -- writing ----------------------------------------------------------

    def store(
        self, key: bytes, value: object, keepttl: bool = False, quiet: bool = False, counted: bool = False
    ) -> None:
        """Set ``key`` to ``value``, dropping any TTL unless ``keepttl``.
        ``quiet``: not a change for WATCH (BITFIELD's room for a write that failed).
        ``counted``: the command's lookup of the key was its access (INCR,
        APPEND...: Redis's lookupKeyWrite, then the object changed in place
        or dbOverwrite, which keeps the old object's LFU counter); otherwise
        the store is the access (Redis's setKey looks the key up)."""
        slot = key_slot(key) if LBRACE in key else crc_hqx(key, 0) & 16383  # slot_of, inline
        self.data[slot][key] = value
        self.clocks[key] = self.now  # an access (see shardkv.worker.access)
        if not keepttl:
            exp = self.expires[slot]
            if exp and exp.pop(key, None) is not None:
                self.nvolatile -= 1
        if self.watched and not quiet:
            self.touch(key)

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; True if it existed (and had not expired)."""
        if self.peek(key) is None:
            return False
        self._remove(slot_of(key), key)
        return True

    def set_expire(self, key: bytes, when_ms: int) -> None:
        """Give an existing ``key`` the deadline ``when_ms``."""
        slot = slot_of(key)
        exp = self.expires[slot]
        if key not in exp:
            self.nvolatile += 1
            self.expiring[slot] = 1
        exp[key] = when_ms
        if self.watched:
            self.touch(key)

    def persist(self, key: bytes) -> bool:
        """Drop the TTL of ``key``; True if it had one."""
        exp = self.expires[slot_of(key)]
        if exp.pop(key, None) is None:
            return False
        self.nvolatile -= 1
        if self.watched:
            self.touch(key)
        return True

    def touch(self, key: bytes) -> None:
        """Note that ``key`` changed, for the clients that WATCH it.

        Redis's ``signalModifiedKey``.  :meth:`store`, :meth:`delete`,
        :meth:`set_expire` and :meth:`persist` call it; a command that
        changes a value in place (LPUSH, SADD, HSET...) calls it itself,
        only when it changed something, as the Redis command does."""
        w = self.watched
        if key in w:
            w[key] += 1

    def flush(self, every: bool = True) -> None:
        """FLUSHALL (``every``), or FLUSHDB: empty the current database only."""
        if not every:
            self._flush_current()
            return
        here = self.db
        for db in self.used_dbs():
            self.select(db)
            self._flush_current()
        self.select(here)

    def _flush_current(self) -> None:
        if self.raw_strings:
            db = self.db
            self.raw_strings = {k: v for k, v in self.raw_strings.items() if k[0] != db}
        if not any(self.data) and not any(self.expires):
            # Already empty: nothing to remove, and no 2 x SLOTS tables to
            # build again (a FLUSHALL visits every database ever selected).
            self.nvolatile = 0
            self.clocks.clear()
            return
        # As in Redis 7.0, a flush changes only the watched keys it removes.
        removed = [key for key in self.watched if key in self.data[slot_of(key)]]
        self.data = [{} for _ in range(SLOTS)]
        self.expires = [{} for _ in range(SLOTS)]
        self.expiring = bytearray(SLOTS)
        self.nvolatile = 0
        self.clocks.clear()
        for key in removed:
            self.watched[key] += 1

    def _remove(self, slot: int, key: bytes) -> None:
        del self.data[slot][key]
        self.clocks.pop(key, None)
        if self.raw_strings:
            self.raw_strings.pop((self.db, key), None)
        exp = self.expires[slot]
        if exp and exp.pop(key, None) is not None:
            self.nvolatile -= 1
        if self.watched:
            self.touch(key)
        if self.on_delete is not None:
            self.on_delete(key)

    def expiry_waits(self) -> bool:
        """While ``expiry_paused``: whether a pause is still on.  One whose
        end has passed is over here, even if its acceptor has not said so
        yet (its event loop runs the timer that ends it late when stalled)."""
        now = time.monotonic()
        paused_by = self.paused_by
        for pipe, end in list(paused_by.items()):
            if end <= now:
                del paused_by[pipe]
        self.expiry_paused = bool(paused_by)
        return self.expiry_paused

    def _expire(self, slot: int, key: bytes) -> None:
        if self.expiry_paused and self.expiry_waits():
            return
        waiters = self.waiters
        if waiters is not None and waiters.by_key:
            # dbGenericDelete signals a stream, and only while stream reads
            # are blocked (its XREADGROUPs fail): not a key that only
            # blocked pops wait on, which would then be served from before
            # the keys a MULTI writes ahead of it (Redis's ready keys order).
            dbkey = (self.db, key)
            blocked = waiters.by_key.get(dbkey)
            if blocked and type(self.data[slot][key]) is Stream and any(w.wait.missing for w in blocked):
                waiters.ready[dbkey] = None
        self._remove(slot, key)
        self.expired_keys += 1
        if self.event_mask & EXPIRED:
            self.events.append((self.db, key, self.classes[EXPIRED], b"expired"))  # type: ignore[union-attr]
        if self.propagate_del is not None:
            self.propagate_del(key)

    # -- whole keyspace ---------------------------------------------------

    def dbsize(self) -> int:
        return sum(map(len, self.data))

    def iter_keys(self) -> Iterator[bytes]:
        """Every key that has not expired (expired ones are not removed)."""
        now = self.expiry_now
        for slot in self.slots:
            d = self.data[slot]
            if not d:
                continue
            exp = self.expires[slot]
            if exp:
                for key in list(d):
                    when = exp.get(key)
                    if when is None or when > now:
                        yield key
            else:
                yield from list(d)

    def scan(self, cursor: int, count: int, every_slot: bool = False) -> tuple[int, list[bytes]]:
        """Keys of whole slots from slot ``cursor`` on, at least ``count``.

        Returns the next slot to scan, or -1 when this shard's slots are
        done.  A key that exists for the whole scan lives in one slot and
        every slot is visited exactly once, so it is returned exactly once.
        ``every_slot``: every slot, not only this shard's (a script that
        runs with every shard's keys imported).
        """
        out: list[bytes] = []
        slots = range(SLOTS) if every_slot else self.slots
        end = slots.stop
        slot = max(cursor, slots.start)
        now = self.expiry_now
        while slot < end and len(out) < count:
            d = self.data[slot]
            if d:
                exp = self.expires[slot]
                for key in list(d):
                    when = exp.get(key) if exp else None
                    if when is not None and when <= now:
                        self._expire(slot, key)
                    else:
                        out.append(key)
            slot += 1
        return (slot if slot < end else -1), out

    def random_key(self) -> bytes | None:
        """A random live key, or None; an approximately fair choice."""
        nonempty = [s for s in self.slots if self.data[s]]
        counting, self.counting = self.counting, False  # RANDOMKEY counts no hits
        try:
            for _ in range(100):
                if not nonempty:
                    return None
                slot = random.choice(nonempty)
                key = random.choice(list(self.data[slot]))
                if self.peek(key) is not None:  # not an access, as in Redis
                    return key
                if not self.data[slot]:
                    nonempty.remove(slot)
            return None
        finally:
            self.counting = counting
