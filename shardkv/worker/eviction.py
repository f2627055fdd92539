"""``maxmemory`` in a worker: the shard's memory figure, and eviction.

Each shard has a *limit*, its part of ``maxmemory``: first its slots'
share (``maxmemory / nshards`` with the usual even split), then what the
acceptor gives it from what every process uses (``__memory limit``, see
:mod:`shardkv.acceptor.memorybudget`).  Before each command, as Redis's
``processCommand`` does, a shard over its limit evicts keys by
``maxmemory-policy``; if it cannot (``noeviction``, or a ``volatile-*``
policy and no key with a TTL here), a command with the ``denyoom`` flag
gets ``-OOM command not allowed when used memory > 'maxmemory'.``, and the
shard notes a ``STARVED`` event: the acceptor then moves room to it from
the other shards, which evict for it if they must (``__memory give``),
as Redis evicts from the whole keyspace.

The memory figure
-----------------
Redis compares what its allocator has handed out (``used_memory``) with
``maxmemory``: a figure that follows the data exactly and does not depend
on what the kernel keeps resident.  A shard's figure is built the same way,
with no RSS in it, so that the same commands give the same figure:

* ``BASE``: the worker before it holds any data (its RSS when it started,
  read once: a constant for the process's life);
* ``data``: the estimated size of the data, :func:`key_cost` summed over the
  keys.  While maxmemory is on (:class:`Memory`) it is kept exactly, by each
  write command, expiry and eviction; while it is off nothing is counted
  (the hot path pays nothing) and INFO estimates it when asked
  (:func:`estimate_data`: exact up to ``EXACT_UP_TO`` keys, from a sample
  beyond).

``figure = BASE + data``: it falls as keys go, even though the RSS stays
put after a flush (the allocator keeps the pages), and it does not move
with the RSS's noise under load.  The estimate can be wrong about what a
value really costs (sizes are sampled, not walked): maxmemory then bounds
the estimate, not the resident size.

Eviction
--------
As Redis does, approximately, by sampling: each round samples
``SAMPLES`` keys (``maxmemory-samples``) from random slots of the shard,
in each database that has keys (as Redis's ``evictionPoolPopulate`` walks
every database), into one pool of the ``POOL_SIZE`` best candidates, and
evicts the best, whatever its database:

=================  =====================================================
allkeys-lru        least recently used key, of all keys
volatile-lru       least recently used key, of keys with a TTL
allkeys-lfu        least frequently used (Redis's logarithmic counter)
volatile-lfu       the same, of keys with a TTL
volatile-ttl       the key with the nearest expiry
allkeys-random     a random key
volatile-random    a random key with a TTL
=================  =====================================================

The random policies take their key from the next database that has one,
in turn.  Recency and frequency are each key's access clock, which the
keyspace keeps whatever maxmemory is (:mod:`shardkv.worker.access`).
While maxmemory is on, the keyspace's ``_remove`` and ``flush`` are
wrapped on the instance to count what goes, so with ``maxmemory 0`` the
keyspace runs its plain methods and pays nothing.
"""

from __future__ import annotations

import bisect
import os
import random
import sys
from collections.abc import Callable
from itertools import islice
from typing import Any, Literal

from shardkv.protocol import commands, errors, wire
from shardkv.protocol.resp import Error
from shardkv.protocol.wire import Verb
from shardkv.worker import access
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import EVICTED, Keyspace, slot_of

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_rss() -> int:
    """This process's resident set size in bytes: on Linux the second field
    of ``/proc/self/statm`` (pages), which psutil reads too, read here so
    that a worker does not import psutil as it starts (some 10 ms of CPU
    per worker); psutil's figure elsewhere, 0 without psutil."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        pass
    try:  # pragma: no cover - not Linux
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency
        return 0
    return psutil.Process().memory_info().rss  # pragma: no cover


REFRESH_MS = 100  # recount the keys at least this often while maxmemory is on
EXACT_UP_TO = 1000  # INFO walks a dataset this small; it samples a bigger one
ESTIMATE_SAMPLES = 64  # keys sampled per database beyond that
SAMPLES = 5  # maxmemory-samples
POOL_SIZE = 16  # Redis's EVPOOL_SIZE
MAX_EVICTIONS = 1000  # per command at most, as Redis bounds one eviction cycle
OBJECT_OVERHEAD = 64  # bytes a Python object and its dict entry cost beyond the payload
MAX_SCAN = 256  # how far into one slot's dict a sample may reach

POLICIES = (
    "noeviction",
    "allkeys-lru",
    "volatile-lru",
    "allkeys-lfu",
    "volatile-lfu",
    "allkeys-random",
    "volatile-random",
    "volatile-ttl",
)

OOM = Error(errors.OOM)
STARVED = wire.EVENT_STARVED
BASE = process_rss()  # the worker before it holds any data: a constant

# name as sent -> (command, may grow memory, writes), or None for the
# acceptor's internal commands.
_KINDS: dict[bytes, tuple[commands.Command, bool, bool] | None] = {}


def _kind(name: bytes) -> tuple[commands.Command, bool, bool] | None:
    cmd = commands.lookup(name)
    kind = None if cmd is None else (cmd, "denyoom" in cmd.flags, cmd.is_write)
    if len(_KINDS) < 4096:
        _KINDS[name] = kind
    return kind


# -- sizes -------------------------------------------------------------------


def value_size(value: object) -> int:
    """A rough size in bytes of a value, its elements sampled, not walked."""
    if type(value) is bytes or type(value) is bytearray:
        return len(value) + OBJECT_OVERHEAD
    try:
        n = len(value)  # type: ignore[arg-type]
    except TypeError:
        return OBJECT_OVERHEAD
    if not n:
        return OBJECT_OVERHEAD
    try:
        sample = list(islice(iter(value), 8))  # type: ignore[call-overload]
        if isinstance(value, dict):
            per = sum(_len(k) + _len(value[k]) for k in sample) / len(sample) + 2 * OBJECT_OVERHEAD
        else:
            per = sum(map(_len, sample)) / len(sample) + OBJECT_OVERHEAD
    except TypeError:  # a type that does not iterate as a collection
        per = 2 * OBJECT_OVERHEAD
    return sys.getsizeof(value) + int(n * per)


def _len(item: object) -> int:
    return len(item) if type(item) is bytes else 16


def key_cost(key: bytes, value: object) -> int:
    """What a key costs: its name, its value, and its entries in the keyspace
    (0 for a key that does not exist)."""
    return 0 if value is None else len(key) + OBJECT_OVERHEAD + value_size(value)


def all_costs(ks: Keyspace) -> int:
    """What the keys of every database cost (a walk over every key)."""
    total = 0
    for db in ks.used_dbs():
        for d in ks.database(db).data:  # type: ignore[union-attr]
            if d:
                total += sum(key_cost(k, v) for k, v in d.items())
    return total


def estimate_data(ks: Keyspace) -> int:
    """What the keys cost, without counting them as they change (maxmemory
    off): every key's cost while there are at most ``EXACT_UP_TO`` keys in
    a database, else its number of keys times the mean cost of
    ``ESTIMATE_SAMPLES`` of them."""
    total = 0
    slots = ks.slots
    for db in ks.used_dbs():
        database = ks.database(db)
        n = database.size()  # type: ignore[union-attr]
        if not n:
            continue
        dicts = database.data  # type: ignore[union-attr]
        if n <= EXACT_UP_TO:
            total += sum(sum(key_cost(k, v) for k, v in d.items()) for d in dicts if d)
            continue
        sample = sample_keys(dicts, slots, ESTIMATE_SAMPLES)
        costs = [key_cost(k, dicts[slot_of(k)][k]) for k in sample]
        total += n * sum(costs) // len(costs)
    return total


def figure(ks: Keyspace) -> int:
    """The shard's memory figure, ``BASE + data`` (the module docstring):
    INFO's part of ``used_memory``, and what maxmemory is shared out on."""
    memory: Memory | None = ks.memory
    return BASE + (memory.data if memory is not None else estimate_data(ks))


def sample_keys(dicts: list[dict[bytes, Any]], slots: range, n: int) -> list[bytes]:
    """Up to ``n`` keys: one from each non-empty slot, walking on from a
    random slot of ``slots`` (as Redis's ``dictGetSomeKeys`` walks its
    buckets), so a sparse shard costs a walk, not a miss."""
    start, size = slots.start, len(slots)
    i = random.randrange(size)
    out: list[bytes] = []
    for _ in range(size):
        d = dicts[start + i]
        if d:
            out.append(_member(d))
            if len(out) == n:
                break
        i += 1
        if i == size:
            i = 0
    return out


# -- the guard -----------------------------------------------------------------


class Memory:
    """One shard's memory figure and eviction state, while maxmemory is on.

    The figure is ``BASE + data`` (see the module docstring): ``data`` is
    the sum of :func:`key_cost` over the keys, counted when maxmemory is
    turned on; then each write command adds the change in the cost of its
    keys, and a key that goes (expiry, eviction) takes its cost away.  The
    shard compares ``data`` with ``room``, its limit less ``BASE``.
    """

    def __init__(self, ks: Keyspace, limit: int, policy: str, maxmemory: int = 0) -> None:
        self.ks = ks
        self.limit = limit
        self.maxmemory = maxmemory  # the whole server's, that this limit is part of
        self.pinned = False  # the limit was set by the acceptor (``__memory limit``)
        self.policy = policy
        self.volatile = policy.startswith("volatile")
        self.lfu = policy.endswith("lfu")
        self.pool: list[tuple[int, int, bytes]] = []  # (score, db, key), best last
        self.next_db = 0  # where the random policies look first
        self.evicted = 0
        self.data = all_costs(ks)
        self.room = limit - BASE  # what data may use
        self.keys = ks.total_keys()  # about: exact after each refresh, not below it between
        self.in_command = False  # a write command counts its own keys
        self.next_refresh = ks.now + REFRESH_MS

    @property
    def used(self) -> int:
        """The shard's memory figure, as maxmemory compares it."""
        return BASE + self.data

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        self.room = limit - BASE

    # -- before each command ---------------------------------------------------

    def run(self, execute: Callable[..., object], args: list[bytes], *rest: object) -> object:
        """Run a command under the limit, as Redis's ``processCommand`` does:
        evict first if over it, refuse a ``denyoom`` command with OOM when
        nothing can be evicted, and count what a write changed."""
        kind: tuple[commands.Command, bool, bool] | None | Literal[False] = _KINDS.get(args[0], False)
        if kind is False:
            kind = _kind(args[0])
        if kind is None:
            return execute(args, *rest)  # the acceptor's internal commands always run
        cmd, denyoom, write = kind
        if self.ks.now >= self.next_refresh:
            self.refresh()
        if self.data > self.room:
            if not self.evict():
                if self.ks.event_mask & STARVED:
                    self.starved()
                if denyoom or (cmd.container and "denyoom" in commands.flags_of(cmd, args)):
                    return OOM  # (XGROUP CREATE: its subcommand's row says denyoom)
        if not write:
            return execute(args, *rest)
        return self._counted(execute, cmd, args, rest)

    def run_in_script(self, execute: Callable[..., object], args: list[bytes], *rest: object) -> object:
        """Run a command a script called: counted as :meth:`run` counts it,
        but neither evicting nor refused.  As in Redis, eviction ran before
        the script, and the script checked memory before its first write
        (``scriptVerifyOOM``; skipped with ``allow-oom``)."""
        kind: tuple[commands.Command, bool, bool] | None | Literal[False] = _KINDS.get(args[0], False)
        if kind is False:
            kind = _kind(args[0])
        if kind is None or not kind[2]:
            return execute(args, *rest)
        return self._counted(execute, kind[0], args, rest)

    def _counted(
        self, execute: Callable[..., object], cmd: commands.Command, args: list[bytes], rest: tuple
    ) -> object:
        """Run a write, and count what it changed."""
        keys = cmd.keys(args)
        before = self._cost(keys)
        self.in_command = True
        try:
            value = execute(args, *rest)
        finally:
            self.in_command = False
        grown = self._cost(keys) - before
        if grown > 0:
            self.data += grown
            self.keys += 1  # it may have added a key
        elif grown:
            self.data = max(self.data + grown, 0)
        return value

    def starved(self) -> None:
        """Over the limit with nothing to evict here: tell the acceptor, which
        moves room from the other shards, evicting there if it must (Redis
        evicts from the whole keyspace; see shardkv.acceptor.memorybudget)."""
        over = self.used - self.limit
        if over > 0:
            note = b"%d %d" % (self.ks.slots.start, over)
            self.ks.events.append((self.ks.db, note, STARVED, b"starved"))  # type: ignore[union-attr]

    def give(self, wanted: int, evict: bool) -> int:
        """Give up to ``wanted`` bytes of this shard's limit to another shard:
        its room first, then (``evict``) what evicting frees; never more."""
        used = self.used
        limit = self.limit
        given = min(max(limit - used, 0), wanted)
        if evict and given < wanted:
            self.set_limit(used - (wanted - given))
            self.evict()
            given += min(max(used - self.used, 0), wanted - given)
        self.set_limit(limit - given)
        return given

    def _cost(self, keys: list[bytes]) -> int:
        data = self.ks.data
        return sum(key_cost(key, data[slot_of(key)].get(key)) for key in keys)

    def refresh(self) -> None:
        """Recount the keys."""
        self.keys = self.ks.total_keys()
        self.next_refresh = self.ks.now + REFRESH_MS

    def _emptied(self) -> None:
        """No keys left: no data."""
        self.keys = self.data = 0
        self.pool.clear()

    # -- eviction ------------------------------------------------------------------

    def out_of_memory(self) -> bool:
        """Over the limit with nothing left to evict: what the acceptor needs
        to know to refuse commands while a transaction is queued (Redis's
        ``performEvictions() == EVICT_FAIL`` in ``processCommand``)."""
        self.refresh()
        if self.data <= self.room:
            return False
        return not self.evict()

    def evict(self) -> bool:
        """Evict until under the limit; False when there is nothing to evict."""
        ks = self.ks
        for _ in range(MAX_EVICTIONS):
            if self.data <= self.room:
                return True
            found = self.pick()
            if found is None:
                return False
            db, key = found
            with ks.selected(db):
                ks.delete(key)
                if ks.propagate_del is not None:  # the AOF logs the eviction as DEL
                    ks.propagate_del(key)
            self.evicted += 1
            if ks.event_mask & EVICTED:
                ks.events.append((db, key, ks.classes[EVICTED], b"evicted"))  # type: ignore[union-attr]
        return True  # the next command goes on from here

    def _candidates(self) -> list[tuple[int, list[dict]]]:
        """(database, its dicts to sample: keys, or keys with a TTL) of each
        database that has some."""
        ks = self.ks
        out = []
        for db in ks.used_dbs():
            database = ks.database(db)
            if self.volatile:
                if database.nvolatile:  # type: ignore[union-attr]
                    out.append((db, database.expires))  # type: ignore[union-attr]
            elif database.size():  # type: ignore[union-attr]
                out.append((db, database.data))  # type: ignore[union-attr]
        return out

    def pick(self) -> tuple[int, bytes] | None:
        """The key the policy would evict now, as (database, key), or None."""
        policy = self.policy
        if policy == "noeviction":
            return None
        if not self.volatile and self.keys <= 0:
            return None
        candidates = self._candidates()
        if not candidates:
            if not self.volatile:
                self._emptied()
            return None
        if policy.endswith("random"):
            # As Redis: the next database with keys, in turn.
            candidates.sort(key=lambda c: (c[0] < self.next_db, c[0]))
            for db, dicts in candidates:
                found = self._sample(dicts, 1)
                if found:
                    self.next_db = db + 1
                    return db, found[0]
            return None
        pool = self.pool
        sampled = None
        for db, dicts in candidates:
            for key in self._sample(dicts, SAMPLES):
                sampled = (db, key)
                bisect.insort(pool, (self._score(db, key), db, key))
        del pool[:-POOL_SIZE]
        dbs = self.ks.dbs
        while pool:
            score, db, key = pool.pop()
            database = dbs[db]
            if database is None:
                continue
            dicts = database.expires if self.volatile else database.data
            if key not in dicts[slot_of(key)]:
                continue  # gone since it was sampled
            now = self._score(db, key)
            if now < score:  # used since it was sampled: back in line
                bisect.insort(pool, (now, db, key))
                continue
            return db, key
        return sampled

    def _score(self, db: int, key: bytes) -> int:
        """Higher is a better candidate: idler, rarer, or sooner to expire."""
        if self.policy == "volatile-ttl":
            return -self.ks.dbs[db].expires[slot_of(key)].get(key, 0)  # type: ignore[union-attr]
        ks = self.ks
        clocks = ks.dbs[db].clocks  # type: ignore[union-attr]
        if self.lfu:
            return 255 - access.lfu_counter(clocks.get(key), ks.now // 60000)
        return -clocks.get(key, ks.clock_base)

    def _sample(self, dicts: list[dict[bytes, Any]], n: int) -> list[bytes]:
        """Up to ``n`` keys of this shard (see :func:`sample_keys`)."""
        return sample_keys(dicts, self.ks.slots, n)

    # -- keyspace wrappers -----------------------------------------------------------

    def install(self) -> None:
        """Wrap the keyspace's methods on the instance (see the module docstring)."""
        ks = self.ks
        base_remove = Keyspace._remove.__get__(ks)
        base_flush = Keyspace.flush.__get__(ks)

        def _remove(slot: int, key: bytes) -> None:
            if not self.in_command:  # a command counts its keys itself
                self.data = max(self.data - key_cost(key, ks.data[slot].get(key)), 0)
            self.keys -= 1
            base_remove(slot, key)

        def flush(*args: object, **options: object) -> None:
            base_flush(*args, **options)
            self.pool.clear()
            if ks.total_keys():  # FLUSHDB: other databases keep their keys
                self.data = all_costs(ks)
                self.keys = ks.total_keys()
            else:
                self._emptied()

        ks._remove = _remove  # type: ignore[method-assign]
        ks.flush = flush  # type: ignore[method-assign]

    def uninstall(self) -> None:
        for name in ("_remove", "flush"):
            self.ks.__dict__.pop(name, None)


def _member(d: dict) -> bytes:
    """A random key of a slot's dict (among its first MAX_SCAN when it is big)."""
    i = random.randrange(min(len(d), MAX_SCAN))
    return next(islice(iter(d), i, None))


# -- settings -------------------------------------------------------------------


def configure(ks: Keyspace, maxmemory: int, policy: str) -> None:
    """Apply ``maxmemory`` (the whole server's, in bytes) and the policy.

    The shard's limit starts as its slots' share of maxmemory; the acceptor
    then sets it from what every process uses (``__memory limit``), and it
    stays so while maxmemory does (other settings change nothing)."""
    share = maxmemory * len(ks.slots) // 16384 if maxmemory else 0
    if maxmemory and not share:
        share = 1
    old: Memory | None = ks.memory
    pinned = old is not None and old.pinned and old.maxmemory == maxmemory
    if old is not None and share and old.policy == policy:
        if not pinned:
            old.set_limit(share)
            old.maxmemory = maxmemory
            old.pinned = False
        return
    if old is not None:
        old.uninstall()
        ks.memory = None
    if share:
        limit = old.limit if old is not None and pinned else share
        memory = Memory(ks, limit, policy if policy in POLICIES else "noeviction", maxmemory)
        memory.pinned = pinned
        if old is not None:
            memory.evicted = old.evicted
        memory.install()
        ks.memory = memory


def memory_command(ks: Keyspace, args: list[bytes]) -> object:
    """__memory figure | limit bytes | give bytes 0|1 | take bytes: this
    shard's part of maxmemory, as the acceptor shares it out (see
    shardkv.acceptor.memorybudget).  ``figure`` -> the memory figure
    (:func:`figure`);
    ``limit`` -> 1 or 0 as ``__oom``, once the limit is set (evicting
    down to it, as Redis's CONFIG SET maxmemory does); ``give`` -> how much of its limit
    it gave (1: evicting if it must); ``take`` -> OK, the limit is raised."""
    memory: Memory | None = ks.memory
    sub = args[1]
    if sub == b"figure":
        return figure(ks)
    if memory is None:
        return 0 if sub == b"give" else b"OK"
    amount = int(args[2])
    if sub == b"limit":
        memory.set_limit(amount)
        memory.pinned = True
        return 1 if memory.out_of_memory() else 0
    if sub == b"give":
        return memory.give(amount, args[3] == b"1")
    memory.set_limit(memory.limit + amount)  # take
    return b"OK"


def on_settings(ks: Keyspace) -> None:
    """After each ``__config``: apply maxmemory and its policy."""
    configure(ks, ks.runtime.maxmemory, ks.runtime.maxmemory_policy)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    Verb.MEMORY: memory_command,
}
