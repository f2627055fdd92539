"""Active expiry: remove expired keys that nobody reads.

Modelled on Redis's adaptive ``activeExpireCycle``: walk the slots with a
cursor, gathering a sample of keys that have a TTL; delete the expired
ones; if more than a quarter of the sample had expired, the keyspace is
probably full of them, so take another sample at once.  Stop at the time
budget, and pick up from the cursor on the next cycle.  The worker calls
:meth:`Sweeper.cycle` ``hz`` times a second with a budget of a quarter of
the interval, as Redis's slow cycle does (25% of CPU time at most).

A sample visits only the slots that may have keys with a TTL (the
keyspace's ``expiring`` marks, found with ``bytearray.find``), until it has
its keys or has gone once round the shard's slots.  Redis walks its
``expires`` table, which holds only the keys with a TTL and is sized to
them, so a few such keys are all seen in one cycle, and an expired one is
gone (its ``expired`` event out, for keyspace notifications and client-side
caching) within about one ``1/hz`` interval; so here.  A walk of every
slot, thousands however few keys have a TTL, with a sample stopped after a
fixed number of empty slots (it was 400), took up to ``slots / 400``
cycles, over a second at ``hz`` 10, to come back to a lone key that had
just expired behind the cursor.
"""

from __future__ import annotations

import time

from shardkv.worker.keyspace import Keyspace

SAMPLE = 20  # keys per sample, ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP
STALE_PERCENT = 25  # sample again while more than this had expired


class Sweeper:
    """The active expiry cycle of one keyspace."""

    def __init__(self, keyspace: Keyspace, timer=time.perf_counter) -> None:
        self.keyspace = keyspace
        self.cursor = keyspace.slots.start
        self.cursors: dict[int, int] = {}  # each database's cursor but the current one's
        self.timer = timer  # a monotonic clock in seconds, for the budget

    def cycle(self, budget_s: float) -> int:
        """Run samples until they come back mostly live or time is up, in
        each database that has keys with a TTL.

        Returns how many keys it deleted.
        """
        ks = self.keyspace
        if ks.expiry_paused and ks.expiry_waits():  # CLIENT PAUSE: no active expiry
            return 0
        deadline = self.timer() + budget_s
        deleted = self._cycle(deadline)
        here = ks.db
        for db in ks.used_dbs():
            if db == here or not ks.dbs[db].nvolatile:  # type: ignore[union-attr]
                continue
            with ks.selected(db):
                self.cursors[here], self.cursor = self.cursor, self.cursors.get(db, ks.slots.start)
                try:
                    deleted += self._cycle(deadline)
                finally:
                    self.cursors[db], self.cursor = self.cursor, self.cursors[here]
        return deleted

    def _cycle(self, deadline: float) -> int:
        """The cycle in the current database."""
        ks = self.keyspace
        deleted = 0
        while ks.nvolatile:
            sampled, expired = self._sample()
            deleted += expired
            if sampled == 0 or expired * 100 <= sampled * STALE_PERCENT:
                break
            if self.timer() >= deadline:
                break
        return deleted

    def _sample(self) -> tuple[int, int]:
        """Keys with a TTL from the cursor on, until ``SAMPLE`` of them or
        once round the slots: how many were seen, and how many had expired
        (and were deleted)."""
        ks = self.keyspace
        now = ks.now = ks.expiry_now = ks.clock.now_ms()
        expires = ks.expires
        expiring = ks.expiring  # the slots that may have keys with a TTL
        # Nothing that expired after an EXEC with scripts in flight started
        # (see Keyspace.exec_frozen).
        if ks.exec_frozen or ks.exec_carried:
            now = min(now, *ks.exec_frozen.values(), *ks.exec_carried)
        slots = ks.slots
        start, stop = slots.start, slots.stop
        slot = first = self.cursor if start <= self.cursor < stop else start
        end = stop  # then from the start of the slots up to the first one
        sampled = expired = 0
        while sampled < SAMPLE:
            slot = expiring.find(1, slot, end)
            if slot < 0:
                if end == first:  # once round
                    slot = first
                    break
                slot, end = start, first
                continue
            exp = expires[slot]
            for key, when in list(exp.items()):
                sampled += 1
                if when <= now:
                    ks._expire(slot, key)
                    expired += 1
            if not exp:
                expiring[slot] = 0
            slot += 1
        self.cursor = slot if slot < stop else start
        return sampled, expired
