"""What a shard logs to its AOF, and when that reaches the disk.

Each write that ran is logged as :mod:`~shardkv.worker.persistence.aof`
says (verbatim, or as its effect), after a ``SELECT`` when its database
is not the file's; a cross-shard operation logs its states, its prepare
record and its outcome.  :meth:`AofLog.commit` writes (and, with
``appendfsync always``, fsyncs) what was logged before any reply of it
leaves; when that fails, writes are refused with -MISCONF until it works
again, or, with ``always``, the worker exits and shardkv stops, as Redis.
Opening the AOF at start-up (a first base and manifest when there is
none) and stopping it (``CONFIG SET appendonly no``) are here too.
"""

from __future__ import annotations

import logging
import marshal
import os
from typing import NoReturn

from shardkv.protocol.decisions import ShortWrite
from shardkv.protocol.wire import Verb
from shardkv.runtime.exitcodes import EXIT_AOF_FAILED
from shardkv.worker.persistence import aof, snapshot
from shardkv.worker.persistence.aofwriter import AofWriter, FsyncFailed
from shardkv.worker.persistence.files import (
    Manifest,
    file_size,
    fsync_dir,
    list_dir,
    max_seq,
    remove_file,
    write_file_atomically,
)
from shardkv.worker.persistence.fork import Forking
from shardkv.worker.transfer import State

log = logging.getLogger("shardkv.worker")


class AofLog(Forking):
    """The AOF's side of a shard's persistence (a part of Persistence)."""

    def _open_aof(self) -> None:
        """Start logging: into the manifest's last incr, or a new AOF."""
        files = self.files
        manifest = self.manifest
        if manifest is None:
            # The first AOF of this shard: a base of what was loaded.
            manifest = Manifest(self.nshards, self.index)
            seq = max_seq(files) + 1  # never append to a file an earlier run left
            if self.ks.total_keys():
                target = files.path(files.base(seq))
                tmp = files.temp(target)
                snapshot.write_snapshot(tmp, self.ks, self.nshards, self.index)
                os.replace(tmp, target)
                manifest.base = (files.base(seq), seq)
            manifest.incrs = [(files.incr(seq), seq)]
            open(files.path(files.incr(seq)), "ab").close()
            write_file_atomically(files.manifest, manifest.dumps())
        elif not manifest.incrs:
            seq = manifest.last_seq() + 1
            open(files.path(files.incr(seq)), "ab").close()
            manifest.incrs.append((files.incr(seq), seq))
            write_file_atomically(files.manifest, manifest.dumps())
        self.manifest = manifest
        self._remove_unlisted()
        self.aof = AofWriter(files.path(manifest.incrs[-1][0]), self.cfg["appendfsync"])
        self.aof_history_size = sum(file_size(files.path(name)) for name in manifest.files()[:-1])
        self.aof_base_size = self.aof_history_size + self.aof.size

    def _remove_unlisted(self) -> None:
        """AOF files of this shard that the manifest does not name: a crash
        mid-rewrite left them."""
        listed = set(self.manifest.files()) if self.manifest else set()
        for name in list_dir(self.files.dir):
            if name.startswith(self.files.aof_prefix + ".") and name not in listed:
                if name.endswith(".base.snap") or name.endswith(".incr.aof"):
                    remove_file(self.files.path(name))

    def _stop_aof(self) -> None:
        """``CONFIG SET appendonly no``: stop logging; the files are no longer current."""
        self._kill_child("rewrite")
        self.rewrite_scheduled = False  # as Redis's stopAppendOnly
        if self.aof is not None:
            self.commit()
            self.aof.sync()
            self.aof.close()
            self.aof = None
        # A manifest left behind would be loaded, stale, by a later start
        # with appendonly yes; without it the shard loads its snapshot.
        if os.path.exists(self.files.manifest):
            remove_file(self.files.manifest)
            fsync_dir(self.files.dir)
        self.manifest = None

    def record(self, args: list[bytes], reply: object) -> None:
        """Log a command that ran without error (see :mod:`shardkv.worker.persistence.aof`)."""
        kind = self.kinds.get(args[0])
        if kind is None:
            kind = aof.classify(args[0])
            if len(self.kinds) < 4096:
                self.kinds[args[0]] = kind
                if kind is aof.READ:
                    self.reads.add(args[0])
        if kind is aof.READ:
            return
        ks = self.ks
        changes = ks.changes
        if changes is None:
            changes = 1
        else:
            ks.changes = None
        if self.suspended:
            # A cross-shard operation's command: the shard that runs it
            # counts what its commands count, once (see Shard._run_foreign).
            self.suspended_changes += changes
            if self.flushed:
                self.flushed = False  # (not saved yet: its states may be undone)
                if args[0].upper() == b"FLUSHALL":
                    self.flush_mark = self.suspended_changes  # (saved at the commit)
            return
        if changes:
            self.dirty += changes
        else:
            self.unsaved += 1  # (a change Redis counts on another shard, or not at all)
        writer = self.aof
        if writer is not None:
            if writer.db != self.ks.db:
                self._select()
            if kind is aof.VERBATIM:
                writer.buf.append(aof.encode(args))
            else:
                self._append(kind(self.ks, args, reply))  # type: ignore[operator]
        if self.flushed:
            self.flushed = False
            if args[0].upper() == b"FLUSHALL":  # (its own record, not a later write's)
                self.flushed_all()  # type: ignore[attr-defined]

    def _select(self) -> None:
        """Log a SELECT: what follows is in the current database."""
        writer = self.aof
        writer.db = db = self.ks.db  # type: ignore[union-attr]
        writer.buf.append(aof.select_record(db))  # type: ignore[union-attr]

    def _append(self, records: list) -> None:
        if self.aof.db != self.ks.db:  # type: ignore[union-attr]
            self._select()
        buf = self.aof.buf  # type: ignore[union-attr]
        if len(records) == 1:
            buf.append(aof.encode(records[0]))
        elif records:
            buf.append(aof.MULTI)
            buf.extend(aof.encode(r) for r in records)
            buf.append(aof.EXEC)

    def count(self, changes: int) -> None:
        """Count ``changes`` (Redis's server.dirty) as written, or, if none,
        one change that makes a save due all the same (see ``unsaved``)."""
        if changes:
            self.dirty += changes
        else:
            self.unsaved += 1

    def log_states(self, states: dict) -> None:
        """Log that these keys now hold these states (cross-shard operations;
        a key of another database named ``(database, key)``)."""
        if not states:
            return
        if self.aof is not None:
            records: list = []
            here = self.ks.db
            for key, state in states.items():
                if type(key) is tuple:  # another database's key: SELECT it and back
                    records.append([b"SELECT", b"%d" % key[0]])
                    records += aof.state_records(key[1], state)
                    records.append([b"SELECT", b"%d" % here])
                else:
                    records += aof.state_records(key, state)
            self._append(records)

    def log_prepare(self, op: int, states: dict[bytes, State]) -> None:
        """Log that this shard prepared ``op``: its keys will hold ``states``
        if the operation commits (one record; see shardkv.acceptor.crossshard)."""
        if self.aof is not None:
            if self.aof.db != self.ks.db:
                self._select()
            self.aof.buf.append(aof.encode([Verb.XPREPARE, b"%d" % op, marshal.dumps(states)]))

    def log_outcome(self, op: int, commit: bool) -> None:
        """Log the outcome of an operation this shard prepared."""
        if self.aof is not None:
            if self.aof.db != self.ks.db:
                self._select()
            self.aof.buf.append(aof.encode([Verb.XCOMMIT if commit else Verb.XABORT, b"%d" % op]))

    def begin_group(self) -> int:
        """Start a group of records that must replay together."""
        return len(self.aof.buf) if self.aof is not None else -1

    def end_group(self, mark: int) -> None:
        """Wrap what was logged since ``mark`` in one MULTI/EXEC, if it is more than one record."""
        if self.aof is None or mark < 0:
            return
        buf = self.aof.buf
        inner = [r for r in buf[mark:] if r is not aof.MULTI and r is not aof.EXEC]
        if len(inner) > 1:
            buf[mark:] = [aof.MULTI, *inner, aof.EXEC]

    def _deleted(self, key: bytes) -> None:
        """The server removed a key by itself (expiry, eviction): log DEL, as Redis does."""
        foreign = self.foreign
        if self.aof is not None and not (foreign and (key in foreign or (self.ks.db, key) in foreign)):
            if self.aof.db != self.ks.db:
                self._select()
            self.aof.buf.append(aof.encode([b"DEL", key]))

    def commit(self) -> bool:
        """Write what was logged; with ``always``, fsync it.  Call before
        replying.  False when that failed: the replies of the writes it
        held must not acknowledge them (see ``loop.Pipe``'s ``send``).

        As Redis: what was not written stays buffered and is tried again
        at each commit and each cron tick, and until it goes through
        :attr:`misconf` refuses writes; reads go on.  With ``appendfsync
        always`` a write or fsync that fails exits instead, as Redis's
        flushAppendOnlyFile: what ran cannot be rolled back, and reads of
        it must not be answered either (a reply means "on disk"), so no
        reply of the batch leaves (see :func:`exit_on_aof_error`)."""
        writer = self.aof
        if writer is None or (not writer.buf and writer.write_error is None):
            return True
        was = writer.write_error
        try:
            writer.flush()
        except OSError as e:
            if was is None:  # in Redis's words (its flushAppendOnlyFile's)
                if isinstance(e, ShortWrite):
                    log.warning("shard %d: %s", self.index, e)
                    if e.truncate_error is not None:
                        log.warning(
                            "shard %d: Could not remove short write from the append-only file.  "
                            "Redis may refuse to load the AOF the next time it starts.  ftruncate: %s",
                            self.index,
                            e.truncate_error,
                        )
                elif not isinstance(e, FsyncFailed):
                    log.warning("shard %d: Error writing to the AOF file: %s", self.index, e.strerror or e)
            if writer.policy == "always":
                exit_on_aof_error(self.index, e)
            self._update_misconf()
            return False
        if was is not None:
            log.warning("shard %d: AOF write error looks solved, writing again", self.index)
        self._update_misconf()
        return True


def exit_on_aof_error(index: int, error: OSError) -> NoReturn:
    """With ``appendfsync always``, an AOF write or fsync failed: log
    Redis's line and exit at once (:data:`EXIT_AOF_FAILED`), with no reply
    of the batch sent and nothing saved, as Redis's flushAppendOnlyFile
    does (``exit(1)``); the supervisor then stops shardkv with status 1.
    The records cut short were cut off the file (or are whole), so the
    next start loads every acknowledged write."""
    if isinstance(error, FsyncFailed):
        log.warning(
            "shard %d: Can't persist AOF for fsync error when the AOF fsync policy is 'always': %s. Exiting...",
            index,
            error.strerror or error,
        )
    else:
        log.warning(
            "shard %d: Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting...",
            index,
        )
    for handler in logging.getLogger().handlers:  # os._exit flushes nothing
        handler.flush()
    os._exit(EXIT_AOF_FAILED)
