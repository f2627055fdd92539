"""SAVE, BGSAVE and ``save`` rules: the shard's snapshot,
``<dbfilename>.shard-<i>``, written to a temp file renamed into place
(BGSAVE's in a forked child, see :mod:`~shardkv.worker.persistence.fork`).
"""

from __future__ import annotations

import logging
import os
import time

from shardkv.protocol.errors import CommandError
from shardkv.worker.persistence import snapshot
from shardkv.worker.persistence.files import discard_temp, fsync_dir
from shardkv.worker.persistence.fork import Child, Forking

log = logging.getLogger("shardkv.worker")


class Saves(Forking):
    """Snapshots (a part of Persistence)."""

    def save(self, command: bool = False) -> None:
        """SAVE (``command``): write the snapshot now, in this process
        (SHUTDOWN's save too), ``rdb-key-save-delay`` per key as Redis's
        rdbSave sleeps.  As Redis's saveCommand, SAVE counts in rdb_saves
        once it begins, whether it succeeds or fails (before, only once it
        had succeeded); SHUTDOWN's save, Redis's bare rdbSave, does not.
        SHUTDOWN's save leaves a background save under way running, in a
        temp file of its own: a stop stops it only once it proceeds (see
        Persistence.shutdown)."""
        if command and self.child is not None and self.child.kind == "save":
            raise CommandError("ERR Background save already in progress")
        if command:
            self.rdb_saves += 1
        tmp = self.files.temp(self.files.snapshot)
        delay = self.cfg.get("rdb-key-save-delay", 0)
        try:
            snapshot.write_snapshot(tmp, self.ks, self.nshards, self.index, delay)
            os.replace(tmp, self.files.snapshot)
            fsync_dir(self.files.dir)
        except OSError as e:
            discard_temp(tmp)
            # A failed SAVE (or SHUTDOWN's save) leaves rdb_last_bgsave_status
            # alone, as Redis's rdbSave does: only a background save's failure
            # stops writes with -MISCONF.
            log.error("shard %d: cannot save %s: %s", self.index, self.files.snapshot, e)
            raise CommandError("ERR") from None
        self.dirty = self.unsaved = 0
        self.counted = {}  # (reset: an abort now takes nothing back)
        self.lastsave = int(time.time())
        self.last_bgsave_ok = True

    def flushed_all(self) -> bool:
        """FLUSHALL has run (counted): as Redis's flushAllDataAndResetRDB,
        a background save under way is stopped (its killRDBChild, no error
        status), and with ``save`` rules the emptied data is saved at once
        (its bare rdbSave: dirty 0, LASTSAVE now, not counted in rdb_saves;
        a failure only logged, the FLUSHALL done all the same), so that a
        start after it does not load the keys it removed (before, they came
        back from the last snapshot).  Whether it saved: only then is the
        count reset (a caller that counts a run's changes after it adds them
        to the count after the save, not to the count kept)."""
        self._kill_child("save")
        if self.rules:
            try:
                self.save()
                return True
            except CommandError:
                pass
        return False

    def count_prepared(self, op: int, changes: int) -> None:
        """Count in ``dirty`` the ``changes`` of cross-shard operation
        ``op``'s part here, until its outcome is known (see take_back)."""
        self.dirty += changes
        if changes:
            self.counted[op] = self.counted.get(op, 0) + changes

    def take_back(self, op: int, commit: bool) -> None:
        """Operation ``op`` is decided.  Undone, its part made no change:
        what is still counted of it is taken back.  A save since reset that
        count, and Redis's server.dirty is then the changes made after the
        save, which stay (before, the take-back took them, stopping at 0); a
        background save forked since takes off what it saved when it ends,
        so it is taken back from that too (else the end took it again)."""
        stopped = self.before_stop
        if stopped is not None:
            # Decided while a stop holds the shard shut (an operation in
            # doubt, resolved by an acceptor started again meanwhile): if
            # the stop is undone, the figures it puts back (see reopen) are
            # without it too (before, they counted it for good).
            held = stopped[5].pop(op, 0)
            if held and not commit:
                self.before_stop = (stopped[0] - held, *stopped[1:])
        changes = self.counted.pop(op, 0)
        if commit or not changes:
            return
        self.dirty -= changes
        child = self.child
        if child is not None and child.kind == "save" and op in child.counted:
            child.dirty -= changes
            child.counted = child.counted - {op}

    def bgsave(self, schedule: bool = False, in_exec: bool = False) -> str:
        """BGSAVE [SCHEDULE]; ``in_exec``: inside EXEC, as is one a
        cross-shard operation runs (``suspended``)."""
        in_exec = in_exec or self.suspended
        child = self.child
        if child is not None:
            if child.kind == "save":
                raise CommandError("ERR Background save already in progress")
            if schedule or in_exec:
                self.bgsave_scheduled = True
                return "Background saving scheduled"
            raise CommandError(
                "ERR Another child process is active (AOF?): can't BGSAVE right now. "
                "Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible."
            )
        if in_exec:
            # As Redis's bgsaveCommand, which never forks while in_exec:
            # the save is scheduled, to start after the EXEC, between
            # batches (with a cross-shard operation, the other shards are
            # told so after it, see shardkv.acceptor.transactions).
            self.bgsave_scheduled = True
            return "Background saving scheduled"
        self._start_save()
        return "Background saving started"

    def schedule(self, kind: bytes) -> None:
        """``__schedule save|rewrite``: an EXEC's BGSAVE or BGREWRITEAOF
        that another shard ran (see :meth:`bgsave`) schedules this shard's
        too, unless one of that kind is under way."""
        child = self.child
        if kind == b"save":
            if child is None or child.kind != "save":
                self.bgsave_scheduled = True
        elif child is None or child.kind != "rewrite":
            self.rewrite_scheduled = True
            self.aof_rewrites_consecutive_failures = 0  # (as BGREWRITEAOF's)

    def _start_save(self) -> None:
        t0 = time.perf_counter()
        self.last_bgsave_try = time.time()
        # (not the temp file of a SAVE, which SHUTDOWN's may be while it runs)
        tmp = self.files.temp(self.files.snapshot) + "-bg"
        delay = self.cfg.get("rdb-key-save-delay", 0)
        self.rdb_saves += 1  # as Redis's rdbSaveBackground: one started, before its fork
        try:
            pid = self._fork(lambda: snapshot.write_snapshot(tmp, self.ks, self.nshards, self.index, delay))
        except OSError as e:
            self.last_bgsave_ok = False
            raise CommandError(f"ERR Can't BGSAVE: fork failed: {e}") from None
        counted = frozenset(self.counted)  # (what it saves of the undecided operations' counts)
        self.child = Child(
            pid, "save", time.time(), tmp, dirty=self.dirty, unsaved=self.unsaved, counted=counted
        )
        self._note_pause(t0, "save")
        log.info("shard %d: background saving started by pid %d", self.index, pid)

    def _save_done(self, child: Child, ok: bool) -> None:
        t0 = time.perf_counter()
        if ok:
            try:
                os.replace(child.temp, self.files.snapshot)
                fsync_dir(self.files.dir)
            except OSError as e:
                log.error("shard %d: cannot rename the snapshot: %s", self.index, e)
                ok = False
        self.last_bgsave_ok = ok
        self.last_bgsave_secs = int(time.time() - child.started)
        if ok:
            self.dirty -= child.dirty
            for op in child.counted:  # saved: an abort now takes nothing back
                self.counted.pop(op, None)
            self.unsaved -= child.unsaved
            self.lastsave = int(time.time())
            log.info("shard %d: background saving terminated with success", self.index)
        else:
            discard_temp(child.temp)
            log.error("shard %d: background saving error", self.index)
        self._note_pause(t0, "save")
