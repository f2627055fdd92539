"""The shards' loading at start, as INFO's ``loading_*`` fields show it.

While the workers load their data (shardkv.supervisor), the acceptors
already listen and answer ``-LOADING``; INFO then says ``loading:1`` and,
as Redis's, how far the loading has come.  The supervisor makes one small
shared file (:class:`LoadProgress`, a ``memfd``) with two 64-bit slots
per shard, and hands it to every worker and acceptor it starts (the file
descriptor travels with the process's arguments, as its pipes do).
Worker ``i`` writes only shard ``i``'s slots: the bytes of the files it
has to load (its snapshot, or its AOF's base and incr files, 0 if it has
none), once it has found them, and the bytes of those it has loaded, after
each file.  The acceptors only read them: each slot has one writer, and a
reader that sees one slot a file behind the other merely shows a figure a
moment old.

A shard's total is unknown (-1) until its worker has found its files (the
supervisor also forgets it before it starts a worker again).  Redis fixes
``loading_total_bytes`` as its load starts, and its ``loading_loaded_perc``
never reaches 100 before the load is over; a sum over the shards that have
published alone would (worker 0 loaded, worker 1 not started yet: 100.00
with ``loading:1``).  So the total is only given once every shard has
published its own, and is 0 until then, as Redis's before it knows one (its
perc is then 0, see :func:`shardkv.acceptor.durability.loading_lines`);
the bytes loaded are counted as they come.
"""

from __future__ import annotations

from shardkv.runtime.sharedslots import SharedSlots

_SLOTS = 2  # per shard: bytes to load, bytes loaded


class LoadProgress(SharedSlots):
    """What each of ``n`` shards has to load at start, and has loaded, shared between processes."""

    NAME = "shardkv-loading"
    PER = _SLOTS

    def __init__(self, n: int, fd: int | None = None) -> None:
        super().__init__(n, fd)
        if fd is None:  # a new file: no shard's total is known yet
            for index in range(n):
                self.forget(index)

    def begin(self, index: int, total: int) -> None:
        """Shard ``index`` loads ``total`` bytes of files (a worker started
        again after it died loads them again: nothing is loaded yet)."""
        self.slots[_SLOTS * index + 1] = 0
        self.slots[_SLOTS * index] = total

    def forget(self, index: int) -> None:
        """Shard ``index``'s worker is (re)started: its total is unknown
        until it has found its files."""
        self.slots[_SLOTS * index + 1] = 0
        self.slots[_SLOTS * index] = -1

    def advance(self, index: int, size: int) -> None:
        """Shard ``index`` has loaded a file of ``size`` bytes more."""
        self.slots[_SLOTS * index + 1] += size

    def figures(self, shards: list[int] | None = None) -> tuple[int, int]:
        """The bytes every shard (or each of ``shards``) has to load, 0
        while one of them has not found its files yet, and those loaded so
        far."""
        slots = self.slots
        if shards is None:
            shards = list(range(self.n))
        totals = [slots[_SLOTS * i] for i in shards]
        loaded = sum(slots[_SLOTS * i + 1] for i in shards)
        return (0 if min(totals, default=0) < 0 else sum(totals)), loaded
