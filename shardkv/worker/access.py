"""Per-key access clocks: what Redis keeps in each object's ``lru`` field.

OBJECT IDLETIME, OBJECT FREQ, RESTORE's IDLETIME and FREQ options and the
LRU and LFU eviction policies read them.  Each database has one dict,
``clocks`` (the keyspace's attribute is the current database's), from key
to its clock, whatever ``maxmemory`` is, as Redis keeps its clock in
every object:

* under an LRU policy, or no eviction policy at all, the time in ms of the
  key's last access (``ks.now``: the batch's time, one int object shared by
  every key touched in the batch, so a stamp costs one dict store);
* under an LFU policy, ``minutes << 8 | counter``: Redis's logarithmic
  access counter (``LFULogIncr``, ``lfu-log-factor``), which decays by one
  per ``lfu-decay-time`` minutes idle (``LFUDecrAndReturn``), and the
  minute (16 bits) it was last decayed at; a new key starts at
  ``LFU_INIT_VAL``.

An *access* is any lookup of the key (:meth:`Keyspace.lookup`,
:meth:`~Keyspace.lookup_raw`: Redis's ``lookupKey``), or a write of its
value (:meth:`~Keyspace.store`: Redis's ``setKey`` looks the key up), but
for a command that looked the key up first and then replaces it (INCR,
APPEND, SETRANGE, SETBIT, PFADD..., ``store(counted=True)``): as Redis
keeps the object's counter when it changes it in place or overwrites it
(``dbOverwrite``), that is one access, not two.  The lookups Redis makes with
``LOOKUP_NOTOUCH`` (TYPE, EXISTS, TTL and its kin, OBJECT, SCAN's TYPE
filter) use :meth:`Keyspace.peek`, as does the shard's own bookkeeping
(WATCH, the AOF's records, a key's export to another shard, the
blocking-command checks, MEMORY USAGE, RANDOMKEY).

A client with CLIENT NO-TOUCH on (Redis 7.2's ``CLIENT_NO_TOUCH``) sends
its entries with ``wire.FLAG_NOTOUCH``, and each runs inside
:func:`no_touch`: every lookup is a peek, and a write leaves an existing
key's clock (Redis 7.2's ``dbSetValue`` gives the new object the old
one's; a new key gets its first clock), except TOUCH's (:func:`touched`:
Redis makes an exception of ``touchCommand``, in a script too as since
Redis 7.4, whose test is the executing command's).

The LRU stamp is written inline by the keyspace's methods (the hot path:
one dict store per GET or SET).  Under an LFU policy :func:`on_settings`
wraps ``lookup``, ``lookup_raw`` and ``store`` on the keyspace instance with
the counter's update, and unwraps them when the policy leaves LFU; switching
between LRU and LFU forgets every clock (the two do not mean the same
thing; Redis reads the old bits the other way "and will take some time to
adjust").  A key with no clock (loaded from disk, moved from another shard,
or whose clock was forgotten) counts from ``ks.clock_base``, when the
clocks were last forgotten, under LRU, and as ``LFU_INIT_VAL`` under LFU.

Deleted, expired, evicted and flushed keys drop their clocks with them
(:meth:`Keyspace._remove`, :meth:`~Keyspace.flush`, and
:func:`shardkv.worker.transfer.drop_key` for a key that moves to another
shard).  Clocks are not persisted: after a restart every key counts from
when it was loaded, as after Redis loads an AOF (Redis's RDB keeps them
only under an LRU or LFU policy).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from shardkv.worker.keyspace import Keyspace

if TYPE_CHECKING:
    from shardkv.worker.scripting import Run

LFU_INIT_VAL = 5  # Redis's counter for a new key
LFU_LOG_FACTOR = 10  # lfu-log-factor (set by shardkv.worker.tunables)
LFU_DECAY_MINUTES = 1  # lfu-decay-time (set by shardkv.worker.tunables)

_WRAPPED = ("lookup", "lookup_raw", "store")


def lfu_policy(ks: Keyspace) -> bool:
    """Is the policy in force an LFU one (Redis's ``MAXMEMORY_FLAG_LFU``)?"""
    return "lfu" in ks.runtime.maxmemory_policy


# -- LFU counters (Redis's evict.c) ------------------------------------------


def lfu_counter(entry: int | None, minutes: int) -> int:
    """The counter of an LFU entry ``minutes << 8 | counter``, decayed."""
    if entry is None:
        return LFU_INIT_VAL
    counter = entry & 255
    last = entry >> 8
    minutes &= 65535  # Redis keeps 16 bits of minutes
    elapsed = minutes - last if minutes >= last else 65535 - last + minutes
    periods = elapsed // LFU_DECAY_MINUTES if LFU_DECAY_MINUTES else 0  # 0: never decays
    return 0 if periods > counter else counter - periods


def lfu_touch(entry: int | None, minutes: int) -> int:
    """A new LFU entry after one more access: decay, then a logarithmic
    increment (none for a new key: it starts at ``LFU_INIT_VAL``)."""
    counter = lfu_counter(entry, minutes)
    if entry is not None and counter < 255:
        base = max(counter - LFU_INIT_VAL, 0)
        if random.random() < 1.0 / (base * LFU_LOG_FACTOR + 1):
            counter += 1
    return (minutes & 65535) << 8 | counter


# -- what OBJECT and RESTORE read and set --------------------------------------


def idle_seconds(ks: Keyspace, key: bytes) -> int:
    """OBJECT IDLETIME of an existing key: whole seconds of Redis's
    LRU clock since its last access."""
    stamp = ks.clocks.get(key, ks.clock_base)
    return max(ks.now // 1000 - stamp // 1000, 0)


def frequency(ks: Keyspace, key: bytes) -> int:
    """OBJECT FREQ of an existing key: its LFU counter, decayed."""
    return lfu_counter(ks.clocks.get(key), ks.now // 60000)


def set_clock(ks: Keyspace, key: bytes, idle: int, freq: int) -> None:
    """RESTORE's IDLETIME (seconds) or FREQ, when >= 0, as Redis's
    ``objectSetLRUOrLFU``: FREQ counts under an LFU policy, IDLETIME
    under any other; the other is ignored."""
    if lfu_policy(ks):
        if freq >= 0:
            ks.clocks[key] = (ks.now // 60000 & 65535) << 8 | freq
    elif idle >= 0:
        ks.clocks[key] = ks.now - idle * 1000


def move_clock(ks: Keyspace, key: bytes, clock: int | None) -> None:
    """Give ``key`` (just stored, in the current database) the clock another
    key had: RENAME and MOVE move the object, and its clock with it."""
    if clock is not None:
        ks.clocks[key] = clock


# -- the policy ----------------------------------------------------------------------


def forget(ks: Keyspace) -> None:
    """Forget every clock: keys count from now (see the module docstring)."""
    for db in ks.used_dbs():
        ks.dbs[db].clocks.clear()  # type: ignore[union-attr]
    ks.clock_base = ks.now


def install_lfu(ks: Keyspace) -> None:
    """Wrap the keyspace's accesses with the LFU counter's update."""
    base_store = Keyspace.store.__get__(ks)

    def counting(look):
        def lookup(key: bytes) -> object | None:
            value = look(key)
            if value is not None:
                clocks = ks.clocks
                entry = clocks.get(key)
                engine = ks.scripts
                if engine is not None and engine.run is not None:
                    note_clock(ks, engine.run, key, entry)
                clocks[key] = lfu_touch(entry, ks.now // 60000)
            return value

        return lookup

    def store(
        key: bytes, value: object, keepttl: bool = False, quiet: bool = False, counted: bool = False
    ) -> None:
        clocks = ks.clocks
        entry = clocks.get(key)
        engine = ks.scripts
        if engine is not None and engine.run is not None:
            note_clock(ks, engine.run, key, entry)
        base_store(key, value, keepttl, quiet)
        if counted and entry is not None:
            clocks[key] = entry  # (the lookup counted it: dbOverwrite keeps the counter)
        else:
            clocks[key] = lfu_touch(entry, ks.now // 60000)

    ks.lookup = counting(ks.peek)  # type: ignore[method-assign]
    ks.lookup_raw = counting(ks.peek_raw)  # type: ignore[method-assign]
    ks.store = store  # type: ignore[method-assign]


def note_clock(ks: Keyspace, run: Run, key: bytes, entry: int | None) -> None:
    """Under an LFU policy, in a script's ``run``: keep the clock ``key``
    (of the current database) had, ``entry``, before the run first
    changed it.  A run undone (it escaped to more shards, or runs again
    wide) puts it back (:func:`restore_clocks`): its run again counts
    each access, as Redis counts the script's once.  (Under LRU a second
    stamp changes nothing that shows; no LRU run keeps anything.)"""
    before = run.clocks_before
    if before is None:
        run.clocks_before = before = {}
        run.changed = True  # (its next run starts with none: Run.defaults)
    at = (ks.db, key)
    if at not in before:
        before[at] = entry


def restore_clocks(ks: Keyspace, before: dict[tuple[int, bytes], int | None]) -> None:
    """Put back the clocks an undone run changed (see :func:`note_clock`),
    of the keys there still (its undo made its writes' keys as they were)."""
    for (db, key), entry in before.items():
        with ks.selected(db):
            if ks.peek_quietly(key) is None:
                continue
            if entry is None:
                ks.clocks.pop(key, None)
            else:
                ks.clocks[key] = entry


def uninstall_lfu(ks: Keyspace) -> None:
    for name in _WRAPPED:
        ks.__dict__.pop(name, None)


# -- CLIENT NO-TOUCH --------------------------------------------------------------


def no_touch(ks: Keyspace) -> tuple:
    """Run what follows as a NO-TOUCH client's entry: lookups are peeks
    and writes keep existing keys' clocks, until :func:`touch_again` with
    what this returns (the keyspace's own methods, LFU's wrappers maybe)."""
    saved = tuple(ks.__dict__.get(name) for name in _WRAPPED)

    def store(
        key: bytes, value: object, keepttl: bool = False, quiet: bool = False, counted: bool = False
    ) -> None:
        clocks = ks.clocks
        entry = clocks.get(key)
        Keyspace.store(ks, key, value, keepttl, quiet)
        if entry is not None:
            clocks[key] = entry
        elif ks.lfu:
            clocks[key] = lfu_touch(None, ks.now // 60000)  # a new key: LFU_INIT_VAL

    ks.lookup = ks.peek  # type: ignore[method-assign]
    ks.lookup_raw = ks.peek_raw  # type: ignore[method-assign]
    ks.store = store  # type: ignore[method-assign]
    ks.no_touch = True
    return saved


def touch_again(ks: Keyspace, saved: tuple) -> None:
    """The end of a NO-TOUCH client's entry (see :func:`no_touch`)."""
    _restore(ks, saved)
    ks.no_touch = False


def _restore(ks: Keyspace, saved: tuple) -> None:
    """Put back the methods :data:`_WRAPPED` as ``saved`` held them (None:
    the class's own)."""
    for name, method in zip(_WRAPPED, saved, strict=True):
        if method is None:
            ks.__dict__.pop(name, None)
        else:
            ks.__dict__[name] = method


def serving(ks: Keyspace, no_touch_on: bool) -> tuple | None:
    """A blocked command served now, in whatever entry made its key ready,
    runs as its own client: with CLIENT NO-TOUCH on or not as it was when
    it blocked (Redis 7.2 runs it again with ``current_client`` that
    client, whose flag lookupKey reads).  What :func:`served` takes back;
    None when the mode in force is already its own."""
    if no_touch_on == ks.no_touch:
        return None
    if no_touch_on:
        return no_touch(ks)
    # Inside a NO-TOUCH client's entry: the keyspace's own accesses (LFU's
    # wrappers maybe) for a moment.
    saved = tuple(ks.__dict__.get(name) for name in _WRAPPED)
    uninstall_lfu(ks)
    if ks.lfu:
        install_lfu(ks)
    ks.no_touch = False
    return saved


def served(ks: Keyspace, saved: tuple | None) -> None:
    """The end of a blocked command's serving (see :func:`serving`)."""
    if saved is None:
        return
    on = not ks.no_touch  # (the mode of the entry it was served in)
    _restore(ks, saved)
    ks.no_touch = on


def round_lookup(ks: Keyspace, key: bytes, counted: list[bool]) -> object | None:
    """Serving one blocked client from ``key`` in a round of serving its
    clients: the serve's first lookup of ``key`` is the round's one access
    (Redis 7.0's ``handleClientsBlockedOnKeys`` looks a ready key up once,
    then serves each client blocked on it from that value), a peek once
    ``counted[0]`` says the round counted it.  Its later lookups (a
    BLMOVE's destination that is its source: ``serveClientBlockedOnList``'s
    own) stay accesses.  What :func:`round_served` takes back."""
    saved = ks.__dict__.get("lookup")
    look = ks.lookup  # the mode in force (a NO-TOUCH client's: a peek)
    first = True

    def lookup(name: bytes) -> object | None:
        nonlocal first
        if name != key or not first:
            return look(name)
        first = False
        if counted[0]:
            return ks.peek(name)
        if not ks.no_touch:
            counted[0] = True
        return look(name)

    ks.lookup = lookup  # type: ignore[method-assign,assignment]
    return saved


def round_served(ks: Keyspace, saved: object | None) -> None:
    """The end of a serve in a round (see :func:`round_lookup`)."""
    if saved is None:
        ks.__dict__.pop("lookup", None)
    else:
        ks.__dict__["lookup"] = saved


def touched(ks: Keyspace, key: bytes) -> bool:
    """TOUCH's lookup of ``key`` for a NO-TOUCH client: an access all the
    same.  Whether the key is there."""
    if ks.peek(key) is None:
        return False
    clocks = ks.clocks
    if ks.lfu:
        engine = ks.scripts
        if engine is not None and engine.run is not None:
            note_clock(ks, engine.run, key, clocks.get(key))
    clocks[key] = lfu_touch(clocks.get(key), ks.now // 60000) if ks.lfu else ks.now
    return True


def on_settings(ks: Keyspace) -> None:
    """After each ``__config``: follow the policy between LRU and LFU."""
    lfu = lfu_policy(ks)
    if lfu == ks.lfu:
        return
    ks.lfu = lfu
    forget(ks)
    if lfu:
        install_lfu(ks)
    else:
        uninstall_lfu(ks)
