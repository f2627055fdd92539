"""AOF rewrites (BGREWRITEAOF, ``auto-aof-rewrite-percentage``/``-min-size``,
and turning the AOF on), as Redis 7's multi-part AOF.

The worker opens the next incr file, writes a manifest that lists the old
files and the new incr, switches its logging to the new incr (a thread
fsyncs and closes the old one, as Redis's bio thread does), and forks.
The child writes a base of its copy-on-write memory to a temp file and
fsyncs it; the worker keeps serving.  When the child is done, the worker
renames the temp file to the new base, writes a manifest of that base and
the new incr, and a thread deletes the old files.  The worker itself stops
only for the fork and the manifest writes; INFO reports the longest such
pause as ``aof_rewrite_max_pause_usec``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError
from shardkv.worker.persistence import snapshot
from shardkv.worker.persistence.aoflog import AofLog
from shardkv.worker.persistence.aofwriter import AofWriter, unlink_later
from shardkv.worker.persistence.files import (
    Manifest,
    discard_temp,
    file_size,
    max_seq,
    remove_file,
    write_file_atomically,
)
from shardkv.worker.persistence.fork import Child

log = logging.getLogger("shardkv.worker")

# As Redis's aofRewriteLimited: once this many rewrites in a row have
# failed, an automatic or scheduled one waits 1, 2, 4... minutes, at most
# REWRITE_LIMIT_MAX_MINUTES, after each further try.
REWRITE_LIMIT_THRESHOLD = 3
REWRITE_LIMIT_MAX_MINUTES = 60


class Rewrites(AofLog):
    """AOF rewrites (a part of Persistence)."""

    def bgrewriteaof(self, in_exec: bool = False) -> str:
        """BGREWRITEAOF; ``in_exec`` as for Saves.bgsave."""
        child = self.child
        if child is not None or in_exec or self.suspended:
            # (Inside EXEC too, as Redis's bgrewriteaofCommand while
            # in_exec: see Saves.bgsave.)
            if child is not None and child.kind == "rewrite":
                raise CommandError("ERR Background append only file rewriting already in progress")
            self.rewrite_scheduled = True
            # As Redis: one asked for starts at once, past any failures before.
            self.aof_rewrites_consecutive_failures = 0
            return "Background append only file rewriting scheduled"
        self._start_rewrite()
        return "Background append only file rewriting started"

    def _rewrite_limited(self) -> bool:
        """Whether an automatic or scheduled rewrite must wait now, as
        Redis's aofRewriteLimited (BGREWRITEAOF, which starts one at once,
        is never limited).  Past REWRITE_LIMIT_THRESHOLD failures in a row,
        the first call that finds no wait under way starts one (1 minute,
        then twice the last, at most an hour; Redis's log line) and says
        wait; once it is over, one call says go, and, if that rewrite fails
        too, the next call starts the next wait.  Fewer failures (one
        succeeded, CONFIG RESETSTAT, BGREWRITEAOF) end the back-off."""
        if self.aof_rewrites_consecutive_failures < REWRITE_LIMIT_THRESHOLD:
            self.rewrite_delay_minutes = 0
            self.next_rewrite_time = 0.0
            return False
        if self.next_rewrite_time:
            if time.time() < self.next_rewrite_time:
                return True
            self.next_rewrite_time = 0.0
            return False
        minutes = min(max(1, self.rewrite_delay_minutes * 2), REWRITE_LIMIT_MAX_MINUTES)
        self.rewrite_delay_minutes = minutes
        self.next_rewrite_time = time.time() + minutes * 60
        log.warning(
            "shard %d: Background AOF rewrite has repeatedly failed and triggered the limit, "
            "will retry in %d minutes",
            self.index,
            minutes,
        )
        return True

    def _start_rewrite(self) -> None:
        """Fork a child that writes a new base; log into a new incr meanwhile."""
        enabling = self.aof is None and bool(self.cfg["appendonly"])
        if self.child is not None:
            # As Redis 7.0.15's startAppendOnly ("AOF was enabled but there
            # is already another background operation"): after a save, the
            # AOF turned on is scheduled, its writes in its base meanwhile.
            if enabling and self.child.kind == "save":
                log.warning(
                    "shard %d: AOF was enabled but there is already another background operation. "
                    "An AOF background was scheduled to start when possible.",
                    self.index,
                )
            self.rewrite_scheduled = True
            return
        t0 = time.perf_counter()
        files = self.files
        seq = max(self.manifest.last_seq() if self.manifest else 0, max_seq(files)) + 1
        incr = files.incr(seq)
        if self.aof is not None:
            if not self.commit():
                # What is buffered must go in the file it belongs after, and
                # may be the rest of a record begun there (a short write that
                # could not be cut off): listed after that file, a new incr
                # would leave it torn in a file that is not the last (a start
                # could not load it), or split it over two (never replayed
                # whole).  Redis switches all the same; shardkv refuses, as
                # Redis refuses a rewrite it cannot start, until the disk
                # takes what is buffered.
                log.error(
                    "shard %d: cannot start the AOF rewrite: the AOF cannot be written: %s",
                    self.index,
                    self.aof.failing,
                )
                self.last_rewrite_ok = False
                raise CommandError(errors.REWRITE_NOT_STARTED)
            old_size = self.aof.size
            assert self.manifest is not None
            open(files.path(incr), "ab").close()
            listed = dataclasses.replace(self.manifest, incrs=[*self.manifest.incrs, (incr, seq)])
            try:
                write_file_atomically(files.manifest, listed.dumps())
            except OSError as e:
                # As Redis's openNewIncrAofForAppend: the rewrite does not
                # start.  The new incr goes again unless the manifest on
                # disk lists it (only the directory's fsync failed): the
                # next try takes a new name, and each would leave one more.
                if _read(files.manifest) != listed.dumps():
                    remove_file(files.path(incr))
                log.error(
                    "shard %d: cannot start the AOF rewrite: cannot write the manifest: %s", self.index, e
                )
                self.last_rewrite_ok = False
                raise CommandError(errors.REWRITE_NOT_STARTED) from None
            self.manifest = listed  # (once it is on disk: a manifest that failed lists nothing new)
            self.aof.switch(files.path(incr))
            self.aof_history_size += old_size
        elif enabling:
            # Log from now on; the manifest is written when the base is.
            self.aof = AofWriter(files.path(incr), self.cfg["appendfsync"])
            self.aof_history_size = 0
        tmp = files.temp(files.path(files.base(seq)))
        delay = self.cfg.get("rdb-key-save-delay", 0)
        # As Redis's rewriteAppendOnlyFileBackground: one started, once its
        # incr is open, before its fork.
        self.aof_rewrites += 1
        try:
            pid = self._fork(lambda: snapshot.write_snapshot(tmp, self.ks, self.nshards, self.index, delay))
        except OSError as e:
            self.last_rewrite_ok = False
            raise CommandError(f"ERR Can't execute an AOF background rewriting: {e}") from None
        self.child = Child(pid, "rewrite", time.time(), tmp, seq=seq, enabling=enabling)
        self._note_pause(t0, "rewrite")
        log.info("shard %d: background append only file rewriting started by pid %d", self.index, pid)

    def _rewrite_done(self, child: Child, ok: bool) -> None:
        t0 = time.perf_counter()
        files = self.files
        seq = child.seq
        if ok:
            try:
                base = files.base(seq)
                os.replace(child.temp, files.path(base))
                old = self.manifest.files() if self.manifest else []
                incrs = [(name, s) for name, s in (self.manifest.incrs if self.manifest else []) if s >= seq]
                if self.aof is not None and not incrs:
                    incrs = [(files.incr(seq), seq)]
                manifest = Manifest(self.nshards, self.index, (base, seq), incrs)
                write_file_atomically(files.manifest, manifest.dumps())
                self.manifest = manifest
                unlink_later([files.path(name) for name in old if name not in manifest.files()])
                self.aof_history_size = file_size(files.path(base))
                self.aof_base_size = self.aof_history_size + (self.aof.size if self.aof else 0)
            except OSError as e:
                log.error("shard %d: cannot finish the AOF rewrite: %s", self.index, e)
                ok = False
        self.last_rewrite_ok = ok
        self.last_rewrite_secs = int(time.time() - child.started)
        if ok:
            self.aof_rewrites_consecutive_failures = 0
            log.info("shard %d: background AOF rewrite finished successfully", self.index)
        else:
            self.aof_rewrites_consecutive_failures += 1
            discard_temp(child.temp)
            log.error("shard %d: background AOF rewrite failed", self.index)
            if child.enabling and self.manifest is None:
                self.rewrite_scheduled = True  # AOF is logging but has no base yet: try again
        self._note_pause(t0, "rewrite")


def _read(path: str) -> bytes | None:
    """The bytes of the file at ``path``; None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None
