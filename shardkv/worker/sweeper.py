"""Active expiry: remove expired keys that nobody reads.

Modelled on Redis's adaptive ``activeExpireCycle``: walk the slots with a
cursor, gathering a sample of keys that have a TTL; delete the expired
ones; if more than a quarter of the sample had expired, the keyspace is
probably full of them, so take another sample at once.  Stop at the time
budget, and pick up from the cursor on the next cycle.  The worker calls
:meth:`Sweeper.cycle` ``hz`` times a second with a budget of a quarter of
the interval, as Redis's slow cycle does (25% of CPU time at most).
"""

from __future__ import annotations

import time

from shardkv.worker.keyspace import Keyspace

SAMPLE = 20  # keys per sample, ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP
STALE_PERCENT = 25  # sample again while more than this had expired
MAX_EMPTY_SLOTS = 400  # slots with no TTL key visited per sample, at most


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
        if ks.expiry_paused:  # CLIENT PAUSE: no active expiry
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
        ks = self.keyspace
        now = ks.now = ks.clock.now_ms()
        slots = ks.slots
        slot = self.cursor
        sampled = expired = empty = 0
        while sampled < SAMPLE and empty < MAX_EMPTY_SLOTS:
            exp = ks.expires[slot]
            if exp:
                for key, when in list(exp.items()):
                    sampled += 1
                    if when <= now:
                        ks._expire(slot, key)
                        expired += 1
            else:
                empty += 1
            slot += 1
            if slot >= slots.stop:
                slot = slots.start
                if sampled == 0:
                    break
        self.cursor = slot
        return sampled, expired
