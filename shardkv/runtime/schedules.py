"""The background saves each shard has scheduled, kept across its worker's restarts.

``BGSAVE SCHEDULE`` while an AOF rewrite runs, and a BGSAVE (or
BGREWRITEAOF) inside EXEC, answer "... scheduled": the shard starts it
later, from its cron.  Redis is one process, and a save it scheduled runs
once it can; shardkv's worker may die meanwhile and be started again by the
supervisor (its shard reloaded), and a flag in that worker's memory would
die with it, the save the client was promised never run.  So each shard's
schedule lives in one slot of a small file the supervisor shares with every
worker it starts (a :class:`~shardkv.runtime.sharedslots.SharedSlots`,
handed over by its descriptor): worker ``i`` alone writes slot
``i``, as it schedules a save or rewrite and as it starts one, and a worker
started again reads it once it has loaded, and starts what was scheduled.
"""

from __future__ import annotations

from shardkv.runtime.sharedslots import SharedSlots

BGSAVE = 1  # a BGSAVE is scheduled
REWRITE = 2  # an AOF rewrite is scheduled


class Schedules(SharedSlots):
    """What each of ``n`` shards has scheduled (:data:`BGSAVE`, :data:`REWRITE`), shared between processes."""

    NAME = "shardkv-schedules"

    def get(self, index: int) -> int:
        return self.slots[index]

    def mark(self, index: int, flag: int, on: bool) -> None:
        """Shard ``index`` has scheduled (``on``) or started (or dropped) a ``flag`` job."""
        if on:
            self.slots[index] |= flag
        else:
            self.slots[index] &= ~flag
