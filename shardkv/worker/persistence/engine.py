"""One shard's persistence: the object that puts its parts together, with
its settings, its periodic task, shutdown and INFO's figures.

Every worker persists its own shard, in its own files
(:mod:`~shardkv.worker.persistence.files`), with no lock and no pause
shared with other shards.  The parts of :class:`Persistence`:

========================  ==================================================
``state.py``              the attributes the parts share; -MISCONF
``loading.py``            start-up: the snapshot, or the AOF's base and incrs
``aoflog.py``             what each write logs, and commit before replying
``saves.py``              SAVE, BGSAVE and ``save`` rules
``rewrite.py``            AOF rewrites (multi-part, as Redis 7's)
``fork.py``               the forked children that write snapshots and bases
========================  ==================================================

and the formats and files they use: ``aof.py`` (what the AOF holds for
each write), ``aofwriter.py`` and ``aofreader.py`` (the AOF's file),
``snapshot.py`` (snapshots and bases), ``files.py`` (names, manifests).
The commands are in :mod:`shardkv.worker.commands.persistence`.

Start-up
    With ``appendonly yes`` and a manifest, the shard loads the base and
    replays the incr files.  Otherwise it loads its snapshot, if there is
    one.  A damaged file stops start-up, and the worker exits with
    :data:`shardkv.runtime.exitcodes.EXIT_LOAD_FAILED`.  With ``appendonly
    yes`` and no manifest, the shard then writes a base of what it loaded
    and starts a manifest.

Shutdown
    SHUTDOWN, SIGTERM and SIGINT flush and fsync the AOF and save when
    there are ``save`` rules (SHUTDOWN SAVE always, NOSAVE never; a
    signal as ``shutdown-on-sigterm`` or ``shutdown-on-sigint`` says).

Shard count changes
    See :mod:`shardkv.worker.persistence.reshard`.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from shardkv.protocol.errors import CommandError
from shardkv.runtime import config as settings
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.persistence.loading import Loading
from shardkv.worker.persistence.rewrite import Rewrites
from shardkv.worker.persistence.saves import Saves
from shardkv.worker.persistence.state import parse_save_rules

log = logging.getLogger("shardkv.worker")

BGSAVE_RETRY_DELAY = 5  # seconds before a failed automatic save is retried


class Persistence(Loading, Saves, Rewrites):
    """The persistence of one shard; see the module docstring."""

    def __init__(self, ks: Keyspace, index: int, nshards: int, cfg: dict[str, Any]) -> None:
        super().__init__(ks, index, nshards, cfg)
        ks.persistence = self
        ks.propagate_del = self._deleted

    def set_config(self, name: str, value: str) -> None:
        """A setting changed at run time (CONFIG SET)."""
        setting = settings.SETTINGS.get(name)
        if setting is None:
            return
        try:
            parsed = setting.parse(value)
        except ValueError:
            return
        if self.cfg.get(name) == parsed:
            return
        self.cfg[name] = parsed
        if name == "save":
            self.rules = parse_save_rules(parsed)
        elif name == "dbfilename":
            self.files.snapshot = os.path.join(self.files.dir, settings.shard_file(parsed, self.index))
        elif name == "appendfsync" and self.aof is not None:
            self.aof.set_policy(parsed)
        elif name == "appendonly":
            if parsed and self.aof is None:
                self._start_rewrite()
            elif not parsed:
                self._stop_aof()
        self._update_misconf()

    def start(self) -> None:
        """Load the shard from disk, then open the AOF when it is on."""
        self.read_files()
        self.open_files()

    def read_files(self) -> None:
        """Load the shard from disk, writing nothing but the cut of a torn
        AOF tail: a stop may end it at any point (see ``loop.serve``)."""
        self.load_started = time.monotonic()
        os.makedirs(self.files.dir, exist_ok=True)
        self.files.remove_temp_files()
        # The cyclic GC would walk the growing heap again and again while
        # millions of values are created; the loaded values are then frozen
        # out of its way (and out of the way of forked children's pages).
        gc.disable()
        try:
            self.load()
        finally:
            gc.enable()
            self.flushed = False  # (a FLUSHALL replayed: saved before, if at all)
        gc.freeze()

    def open_files(self) -> None:
        """After :meth:`read_files`: open the AOF when it is on (a first
        base and manifest when there is none)."""
        if self.cfg["appendonly"]:
            self._open_aof()
        self.load_seconds = time.monotonic() - self.load_started

    def cron(self) -> None:
        """``hz`` times a second: retry an AOF that could not be written,
        reap children, start due saves and rewrites."""
        writer = self.aof
        if writer is not None and (writer.failing is not None or self.misconf is not None):
            self.commit()  # tries the write again, and notes an fsync thread's error
            self._update_misconf()
        child = self.child
        # (while a stop holds the shard, a child that ends is reaped only
        # once the stop is undone: its snapshot, older, is not put over the
        # stop's; see shutdown)
        if child is not None and not self.closed:
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = child.pid, 1 << 8
            if pid:
                self.child = None
                ok = os.waitstatus_to_exitcode(status) == 0
                if child.kind == "save":
                    self._save_done(child, ok)
                else:
                    self._rewrite_done(child, ok)
        if self.child is None and not self.closed:
            if self.rewrite_scheduled and self._rewrite_limited():
                self._start_due(rewrite=False)  # (as Redis: the saves go on)
            elif self.rewrite_scheduled:
                self.rewrite_scheduled = False
                self._try(self._start_rewrite)
                if self.child is None and self.aof is not None:
                    # As Redis (which clears aof_rewrite_scheduled only once
                    # one has started): tried again until it starts, whatever
                    # kept it from starting (an AOF or a manifest that cannot
                    # be written, a fork); and meanwhile the saves go on, as
                    # its serverCron checks its save points and a scheduled
                    # BGSAVE whatever became of it (else no snapshot is taken
                    # while the disk refuses the AOF).
                    self.rewrite_scheduled = True
                    self._start_due(rewrite=False)
            else:
                self._start_due()
        self.commit()

    def _start_due(self, rewrite: bool = True) -> None:
        """Start a scheduled BGSAVE, else a save whose rule is due, else
        (``rewrite``) a rewrite whose growth is due."""
        if self.bgsave_scheduled:
            self.bgsave_scheduled = False
            self._try(self._start_save)
        elif self._save_due():
            self._try(self._start_save)
        elif rewrite and self._rewrite_due() and not self._rewrite_limited():
            self._try(self._start_rewrite)

    def _try(self, start: Callable[[], object]) -> None:
        try:
            start()
        except (OSError, CommandError) as e:
            log.error("shard %d: cannot start a background job: %s", self.index, e)

    def _save_due(self) -> bool:
        if not self.rules or not (self.dirty or self.unsaved):
            return False
        now = time.time()
        if not self.last_bgsave_ok and now - self.last_bgsave_try < BGSAVE_RETRY_DELAY:
            return False
        changed = self.dirty + self.unsaved
        return any(changed >= changes and now - self.lastsave >= secs for secs, changes in self.rules)

    def _rewrite_due(self) -> bool:
        if self.aof is None:
            return False
        percentage = self.cfg.get("auto-aof-rewrite-percentage", 100)
        if not percentage:
            return False
        size = self.aof_history_size + self.aof.size + sum(map(len, self.aof.buf))
        if size < self.cfg.get("auto-aof-rewrite-min-size", 64 * 1024 * 1024):
            return False
        base = max(self.aof_base_size, 1)
        return (size - base) * 100 // base >= percentage

    def shutdown(self, mode: str = "default") -> None:
        """Flush the AOF and, unless NOSAVE, save when there are rules (or SAVE).

        Raises CommandError when a save fails, or while the first AOF base
        is being written (Redis's AOF_WAIT_REWRITE), and then leaves the
        shard open.  An AOF that cannot be written or synced does not (see
        _flush_aof).
        """
        if self.closed:
            # Two stops at once (a signal's and a SHUTDOWN, or two
            # acceptors' SHUTDOWNs) ask in either order: one that saves,
            # after one that did not, still saves, as it would have first.
            # Nothing has changed since (the shard refuses every command).
            if mode == "save" and not self.closed_saved:
                self.save()
                self.closed_saved = True
            return
        child = self.child
        if child is not None and child.enabling and self.manifest is None and mode != "force":
            # CONFIG SET appendonly yes's first base is being written: the
            # manifest that would load it and the incr after it comes when
            # it is done, so killing it now would lose every key (as Redis
            # says, "Writing initial AOF, can't exit"; SHUTDOWN FORCE sends
            # ``force``, a NOSAVE that stops all the same).
            log.warning("shard %d: Writing initial AOF, can't exit.", self.index)
            raise CommandError("ERR Writing initial AOF, can't exit")
        if child is not None and child.enabling:
            self._kill_child()  # (FORCE: Redis's "Exit anyway.", a stop no ABORT undoes)
        # Any other child runs on: as Redis's finishShutdown, a stop stops
        # it only once it proceeds (close) or fails (reopen), and one
        # aborted (SHUTDOWN ABORT, which Redis takes before finishShutdown)
        # leaves it running (before, every stop stopped it, and a BGSAVE
        # under way was lost to an ABORT).
        self._flush_aof()
        saves = mode == "save" or (
            mode == "default"
            and bool(self.rules)
            and bool(self.dirty or self.unsaved or not os.path.exists(self.files.snapshot))
        )
        # (a copy of ``counted``: an operation decided meanwhile settles it, see take_back)
        before = (
            self.dirty,
            self.unsaved,
            self.lastsave,
            self.rdb_saves,
            self.last_bgsave_ok,
            dict(self.counted),
        )
        if saves:
            try:
                self.save()
            except CommandError:
                # As Redis's finishShutdown, which stops its child before
                # the save that fails (an ABORT, which comes before it,
                # leaves the child running; the other shards stop theirs as
                # the failed stop opens them again, see reopen).
                self._kill_child()
                raise
        self.closed = True
        self.closed_saved = saves
        self.before_stop = before

    def reopen(self, failed: bool = False) -> None:
        """``__shutdown abort``: the stop failed (another shard could not
        save) or was aborted, and the shard serves again.  Redis's stop that
        fails has made no save (its one save failed), and one it aborts has
        not begun its save (its SHUTDOWN ABORT comes while it waits for its
        replicas, before finishShutdown saves): so this shard's save for it
        counts as not made, its INFO figures as they were before the stop
        (rdb_changes_since_last_save, rdb_last_save_time, rdb_saves,
        rdb_last_bgsave_status), the same figures as Redis's.  Its snapshot
        is written all the same, and saved again when its rules say.
        ``failed``: the stop failed (a shard's save), not aborted: as
        Redis's finishShutdown, which stops its child before the save that
        failed, a background save or rewrite under way here is stopped too
        (but a first AOF base, which Redis's stop never stops unforced)."""
        child = self.child
        if failed and child is not None and not child.enabling:
            self._kill_child()
        if self.closed and self.before_stop is not None:
            kept = self.before_stop
            self.dirty, self.unsaved, self.lastsave, self.rdb_saves, self.last_bgsave_ok, self.counted = kept
        self.before_stop = None
        self.closed = False

    def close(self, mode: str = "default") -> None:
        """The worker is exiting: shut down (``mode`` as for :meth:`shutdown`) and close files."""
        try:
            self.shutdown(mode)
        finally:
            self._kill_child()
            if self.aof is not None:
                self._flush_aof()
                self.aof.close()
                self.aof = None

    def _flush_aof(self) -> None:
        """As Redis's prepareForShutdown: write what the AOF holds and fsync
        it; a failure only logs a warning ("Fail to fsync the AOF file"),
        and the shard stops all the same.  Nothing acknowledged is lost:
        what could not be written is the writes refused with -MISCONF
        (their replies wait for their write, see ``commit``), and what was
        written before an fsync that fails has gone to the OS."""
        self.commit()  # logs Redis's "Error writing to the AOF file" when the write fails anew
        if self.aof is None:
            return
        try:
            self.aof.fsync()
        except OSError as e:
            log.warning("shard %d: Fail to fsync the AOF file: %s.", self.index, e.strerror or e)

    def info(self) -> dict[str, object]:
        child = self.child
        now = time.time()
        writer = self.aof
        # (Redis's aof_state != AOF_OFF: on too while CONFIG SET appendonly
        # yes's rewrite waits for a save, see Rewrites._start_rewrite.)
        enabled = writer is not None or (self.rewrite_scheduled and bool(self.cfg["appendonly"]))
        out: dict[str, object] = {
            "rdb_changes_since_last_save": self.dirty,
            "rdb_bgsave_in_progress": int(child is not None and child.kind == "save"),
            "rdb_last_save_time": self.lastsave,
            "rdb_last_bgsave_status": "ok" if self.last_bgsave_ok else "err",
            "rdb_last_bgsave_time_sec": self.last_bgsave_secs,
            "rdb_current_bgsave_time_sec": int(now - child.started) if child and child.kind == "save" else -1,
            "rdb_saves": self.rdb_saves,
            "rdb_last_load_keys_loaded": self.loaded_keys,
            "aof_enabled": int(enabled),
            "aof_rewrite_in_progress": int(child is not None and child.kind == "rewrite"),
            "aof_rewrite_scheduled": int(self.rewrite_scheduled),
            "aof_last_rewrite_time_sec": self.last_rewrite_secs,
            "aof_current_rewrite_time_sec": int(now - child.started)
            if child and child.kind == "rewrite"
            else -1,
            "aof_last_bgrewrite_status": "ok" if self.last_rewrite_ok else "err",
            "aof_rewrites": self.aof_rewrites,
            "aof_rewrites_consecutive_failures": self.aof_rewrites_consecutive_failures,
            "aof_last_write_status": "err" if writer is not None and writer.write_error else "ok",
            "latest_fork_usec": self.latest_fork_usec,
            "total_forks": self.total_forks,
            "rdb_bgsave_max_pause_usec": self.max_pause_usec["save"],
            "aof_rewrite_max_pause_usec": self.max_pause_usec["rewrite"],
            "load_seconds": round(self.load_seconds, 3),
        }
        if writer is not None:
            out["aof_current_size"] = self.aof_history_size + writer.size
            out["aof_base_size"] = self.aof_base_size
            out["aof_buffer_length"] = sum(map(len, writer.buf))
        elif enabled:
            out["aof_current_size"] = out["aof_base_size"] = out["aof_buffer_length"] = 0
        if enabled:
            out["aof_pending_rewrite"] = int(self.rewrite_scheduled)  # (as Redis: aof_rewrite_scheduled)
        return out


# -- run-time settings ---------------------------------------------------------

_SETTINGS = (
    "dbfilename",
    "appendonly",
    "appendfsync",
    "save",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "aof-load-truncated",
    "rdb-key-save-delay",
    "stop-writes-on-bgsave-error",  # read by _update_misconf, which set_config calls
)


def on_settings(ks: Keyspace) -> None:
    """After each ``__config``: apply the persistence settings that changed."""
    p = ks.persistence
    if p is None:
        return
    for name in _SETTINGS:
        value = ks.runtime.extra.get(name)
        if value is not None:
            p.set_config(name, value)
