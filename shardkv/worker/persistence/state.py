"""What one shard's persistence holds, shared by the parts that make it.

:class:`~shardkv.worker.persistence.engine.Persistence` is one object made
of parts, each a class in its own module that adds methods to
:class:`State`: :mod:`~shardkv.worker.persistence.fork` (forked children),
:mod:`~shardkv.worker.persistence.aoflog` (what the shard logs to its AOF,
and when it reaches the disk), :mod:`~shardkv.worker.persistence.loading`
(start-up), :mod:`~shardkv.worker.persistence.saves` (SAVE, BGSAVE) and
:mod:`~shardkv.worker.persistence.rewrite` (AOF rewrites).  State holds the
attributes they share, and whether writes are refused (-MISCONF), which
they all change.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from shardkv.protocol import errors
from shardkv.runtime.schedules import BGSAVE, REWRITE, Schedules
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.persistence.aofwriter import AofWriter
from shardkv.worker.persistence.files import Files, Manifest
from shardkv.worker.transfer import State as KeyState

if TYPE_CHECKING:
    from shardkv.runtime.loadprogress import LoadProgress
    from shardkv.worker.persistence.fork import Child


log = logging.getLogger("shardkv.worker")


def parse_save_rules(text: str) -> list[tuple[int, int]]:
    """``"3600 1 300 100"`` -> ``[(3600, 1), (300, 100)]``."""
    words = text.split()
    if len(words) % 2:
        raise ValueError("save rules are pairs of <seconds> <changes>")
    return [(int(words[i]), int(words[i + 1])) for i in range(0, len(words), 2)]


class State:
    """The attributes of one shard's persistence (see the module docstring)."""

    def __init__(self, ks: Keyspace, index: int, nshards: int, cfg: dict[str, Any]) -> None:
        self.ks = ks
        self.index = index
        self.nshards = nshards
        self.cfg = cfg
        self.files = Files(cfg, index)
        self.rules = parse_save_rules(cfg["save"])
        self.aof: AofWriter | None = None
        self.manifest: Manifest | None = None
        self.kinds: dict[bytes, object] = {}  # command name as sent -> READ/VERBATIM/recorder
        # The names in ``kinds`` that are READ: record() of one does nothing,
        # so Shard.execute does not call it (a GET costs no call here).
        self.reads: set[bytes] = set()
        self.suspended = False  # logging stopped (a cross-shard operation logs its states)
        # What the commands run while ``suspended`` count in ``dirty``,
        # for the shard to count once the operation's outcome is known.
        self.suspended_changes = 0
        # A FLUSHALL has just run: record() then saves as Redis's does (see
        # Saves.flushed_all), once the FLUSHALL is counted.
        self.flushed = False
        # The changes counted in ``suspended_changes`` as a FLUSHALL of a
        # cross-shard run (a script's, a WATCHed EXEC's) ran, -1 if none:
        # the shard saves at its commit (see Shard._run_foreign).
        self.flush_mark = -1
        self.foreign: dict | tuple = ()  # other shards' keys installed here
        self.inherited_fds: list[int] = []  # closed in forked children
        self.child: Child | None = None
        # Scheduled (BGSAVE SCHEDULE, BGSAVE or BGREWRITEAOF inside EXEC...):
        # kept in ``schedules`` too, once attached (see keep_schedules).
        self._rewrite_scheduled = False
        self._bgsave_scheduled = False
        self.schedules: Schedules | None = None
        self.closed = False  # SHUTDOWN has run
        self.closed_saved = False  # and saved (see Persistence.shutdown)
        # The INFO figures a stop's save changed, as they were before it:
        # put back if the stop fails or is aborted (see Persistence.reopen).
        self.before_stop: tuple[int, int, int, int, bool, dict[int, int]] | None = None
        # Why writes are refused (-MISCONF), or None: see _update_misconf.
        self.misconf: str | None = None
        self._bgsave_ok = True
        # Figures for INFO, as Redis names them.  ``dirty``: this shard's
        # share of Redis's server.dirty (INFO sums the shards'): each write
        # counts as Redis counts it, once, on the shard that ran it.
        # ``unsaved``: changes of this shard's keys counted on another shard
        # (the keys a cross-shard operation gave it, a FUNCTION LOAD every
        # shard runs): not in INFO, but they make a save due (the save
        # rules, SHUTDOWN) as ``dirty`` does, so that no change goes unsaved.
        self.dirty = 0
        self.unsaved = 0
        # What the cross-shard operations prepared here and not decided yet
        # added to ``dirty``, by operation, as long as no save has reset it
        # (see count_prepared, take_back).
        self.counted: dict[int, int] = {}
        self.lastsave = int(time.time())
        self.last_bgsave_ok = True
        self.last_bgsave_try = 0.0
        self.last_bgsave_secs = -1
        self.rdb_saves = 0
        self.last_rewrite_ok = True
        self.last_rewrite_secs = -1
        self.aof_rewrites = 0
        # Rewrites that failed in a row since the last that succeeded (as
        # Redis's stat_aofrw_consecutive_failures: a child that failed, or a
        # base or manifest that could not be put in place; a fork that
        # failed, or a child killed on purpose, is not counted).
        self.aof_rewrites_consecutive_failures = 0
        # The back-off after REWRITE_LIMIT_THRESHOLD of them (see
        # Rewrites._rewrite_limited): the last wait, and when it ends (Unix
        # seconds; 0 when none is under way).
        self.rewrite_delay_minutes = 0
        self.next_rewrite_time = 0.0
        self.aof_history_size = 0  # base and incr files before the current one
        self.aof_base_size = 0  # AOF size after the last rewrite (for auto rewrite)
        self.latest_fork_usec = 0
        self.total_forks = 0  # children forked (as Redis's stat_total_forks)
        self.max_pause_usec = {"save": 0, "rewrite": 0}
        self.loaded_keys = 0
        # Where the acceptors' INFO reads how far loading has come, while it
        # runs (shardkv.runtime.loadprogress); None outside a worker process.
        self.progress: LoadProgress | None = None
        self.load_seconds = 0.0
        self.load_started = 0.0  # (monotonic) when read_files began
        # Cross-shard operations prepared in the AOF with no outcome after
        # them (see shardkv.acceptor.crossshard): op -> (database, the states to
        # apply there on commit).
        self.in_doubt: dict[int, tuple[int, dict[bytes, KeyState]]] = {}

    @property
    def bgsave_scheduled(self) -> bool:
        return self._bgsave_scheduled

    @bgsave_scheduled.setter
    def bgsave_scheduled(self, on: bool) -> None:
        self._bgsave_scheduled = on
        if self.schedules is not None:
            self.schedules.mark(self.index, BGSAVE, on)

    @property
    def rewrite_scheduled(self) -> bool:
        return self._rewrite_scheduled

    @rewrite_scheduled.setter
    def rewrite_scheduled(self, on: bool) -> None:
        self._rewrite_scheduled = on
        if self.schedules is not None:
            self.schedules.mark(self.index, REWRITE, on)

    def keep_schedules(self, schedules: Schedules) -> None:
        """Once loaded: keep what this shard schedules in ``schedules``,
        which outlives this worker, and take on what the worker it replaces
        (killed, started again by the supervisor) had scheduled and not
        started, as Redis runs a save it scheduled whatever happens meanwhile
        (see :mod:`shardkv.runtime.schedules`)."""
        had = schedules.get(self.index)
        self.schedules = schedules
        if had & BGSAVE:
            log.info(
                "shard %d: the BGSAVE scheduled before its worker restarted is scheduled again", self.index
            )
        if had & REWRITE:
            log.info(
                "shard %d: the AOF rewrite scheduled before its worker restarted is scheduled again",
                self.index,
            )
        self.bgsave_scheduled = self._bgsave_scheduled or bool(had & BGSAVE)
        self.rewrite_scheduled = self._rewrite_scheduled or bool(had & REWRITE)

    @property
    def last_bgsave_ok(self) -> bool:
        return self._bgsave_ok

    @last_bgsave_ok.setter
    def last_bgsave_ok(self, ok: bool) -> None:
        self._bgsave_ok = ok
        self._update_misconf()

    def _update_misconf(self) -> None:
        """Recompute :attr:`misconf`, as Redis's ``writeCommandsDeniedByDiskError``."""
        writer = self.aof
        if (
            not self.last_bgsave_ok
            and self.rules
            and self.cfg.get("stop-writes-on-bgsave-error", True) not in (False, "no")
        ):
            self.misconf = errors.MISCONF_RDB
        elif writer is not None and writer.failing is not None:
            self.misconf = errors.MISCONF_AOF % writer.failing
        else:
            self.misconf = None
