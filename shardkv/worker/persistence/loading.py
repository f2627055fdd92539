"""Start-up: filling a shard's keyspace from its snapshot, or from its AOF
(a base, then the incr files replayed).

Nothing expires while loading.  A torn last record of the last incr file
is cut off with a warning (``aof-load-truncated yes``, as Redis); any other
damage raises :class:`~shardkv.worker.persistence.files.LoadError`, whose
message names the file and the offset.  The records of the cross-shard
commit protocol are held aside: a prepare is applied where its commit is,
and one with no outcome stays *in doubt* (``in_doubt``), for the acceptor
to resolve.
"""

from __future__ import annotations

import logging
import marshal
import os
import random
import time

from shardkv.protocol import commands, errors
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import strict_int
from shardkv.protocol.wire import Verb
from shardkv.runtime import faultpoints
from shardkv.worker.handlers import find
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.persistence import aofreader, snapshot
from shardkv.worker.persistence.files import LoadError, read_manifest
from shardkv.worker.persistence.state import State
from shardkv.worker.transfer import apply_states, import_key

log = logging.getLogger("shardkv.worker")

# The records of the cross-shard commit protocol (see shardkv.acceptor.crossshard):
# ``__XPREPARE <op> <marshal of {key: state}>``, then ``__XCOMMIT <op>`` or
# ``__XABORT <op>``.  On load a prepare is applied where its commit is; one
# with no outcome is *in doubt*, resolved with the acceptor.
_OUTCOMES = frozenset({Verb.XPREPARE, Verb.XCOMMIT, Verb.XABORT})


class Loading(State):
    """Loading a shard at start-up (a part of Persistence)."""

    def load(self, use_aof: bool | None = None) -> None:
        """Fill the keyspace from the AOF (when on and present) or the snapshot."""
        ks = self.ks
        if use_aof is None:
            use_aof = self.cfg["appendonly"]
        ks.now = ks.expiry_now = 0  # nothing expires while loading; every deadline is absolute
        try:
            if use_aof and os.path.exists(self.files.manifest):
                manifest = read_manifest(self.files.manifest)
                self._check_layout(manifest.shards, manifest.index, self.files.manifest)
                base = [] if manifest.base is None else [self.files.path(manifest.base[0])]
                incrs = [self.files.path(name) for name, _ in manifest.incrs]
                self._begin([*base, *incrs])
                for path in base:
                    self._load_snapshot(path)
                    self._loaded(path)
                for n, path in enumerate(incrs):
                    self._replay(path, last=n == len(incrs) - 1)
                    self._loaded(path)
                self.manifest = manifest
            elif os.path.exists(self.files.snapshot):
                self._begin([self.files.snapshot])
                self._load_snapshot(self.files.snapshot)
                self._loaded(self.files.snapshot)
            elif self.progress is not None:
                self.progress.begin(self.index, 0)  # nothing to load: the acceptors' total is known
        finally:
            ks.select(0)
            ks.tick()
        self.loaded_keys = ks.total_keys()
        if self.loaded_keys:
            log.info("shard %d: %d keys loaded", self.index, self.loaded_keys)

    def _begin(self, paths: list[str]) -> None:
        """INFO's loading_total_bytes (see :mod:`shardkv.runtime.loadprogress`)."""
        if self.progress is not None:
            self.progress.begin(self.index, sum(_size(path) for path in paths))
        faultpoints.hold("loading", self.index)  # the tests of loading only

    def _loaded(self, path: str) -> None:
        """INFO's loading_loaded_bytes: one more file loaded."""
        if self.progress is not None:
            self.progress.advance(self.index, _size(path))

    def _check_layout(self, shards: int, index: int, path: str) -> None:
        if (shards, index) != (self.nshards, self.index):
            raise LoadError(
                f"{path} belongs to shard {index} of {shards}, not {self.index} of {self.nshards}; "
                "start shardkv with the same --shards, or let it re-shard at start-up"
            )

    def _load_snapshot(self, path: str) -> None:
        try:
            header, items = snapshot.read_snapshot(path)
            self._check_layout(header["shards"], header["index"], path)
            ks = self.ks
            if header["libraries"]:
                load_libraries(ks, header["libraries"], path)
            delay = self.cfg.get("key-load-delay", 0)
            for db, key, state in items:
                if delay:
                    _debug_delay(delay)
                if db != ks.db:
                    if db >= len(ks.dbs):
                        raise LoadError(
                            f"{path} holds keys of database {db}; this server has "
                            f"databases {len(ks.dbs)}: start it with --databases {db + 1} or more"
                        )
                    ks.select(db)
                import_key(ks, key, state)
        except snapshot.SnapshotError as e:
            raise LoadError(str(e)) from None
        finally:
            self.ks.select(0)

    def _replay(self, path: str, last: bool) -> None:
        """Run the records of one incr file against the keyspace."""
        if not os.path.exists(path):
            raise LoadError(f"the AOF file {path} named in the manifest is missing")
        self.ks.select(0)  # each file starts in database 0 (and with a SELECT)
        multi: list | None = None
        multi_at = 0  # the record number of the open MULTI
        errors = 0
        try:
            for n, args in aofreader.read_records(path):
                name = args[0].upper()
                if name in _OUTCOMES and multi is None and self._outcome(name, args):
                    continue
                if name == b"MULTI":
                    multi, multi_at = [], n
                elif name == b"EXEC":
                    for at, queued in multi or ():
                        errors += self._apply(path, at, queued)
                    multi = None
                elif multi is not None:
                    multi.append((n, args))
                else:
                    errors += self._apply(path, n, args)
        except aofreader.TornTail as e:
            offset = aofreader.record_offset(path, multi_at) if multi is not None else e.offset
            self._torn(path, offset, last, str(e))
            return
        except aofreader.AofError as e:
            raise LoadError(str(e)) from None
        if multi is not None:  # a MULTI with no EXEC: the write was torn after it
            offset = aofreader.record_offset(path, multi_at)
            self._torn(path, offset, last, f"unfinished MULTI at offset {offset}")
        if errors:
            log.warning("shard %d: %d commands in %s replied with errors", self.index, errors, path)

    def _outcome(self, name: bytes, args: list[bytes]) -> bool:
        """Replay a record of the cross-shard commit protocol, if it is one:
        a prepare is held aside, and applied where its commit is logged."""
        if name == Verb.XPREPARE:  # in the database of the SELECT before it
            self.in_doubt[int(args[1])] = (self.ks.db, marshal.loads(args[2]))
        elif name == Verb.XCOMMIT:
            part = self.in_doubt.pop(int(args[1]), None)
            if part is None:
                log.warning("shard %d: the AOF commits operation %s, never prepared", self.index, args[1])
            else:
                db, states = part
                with self.ks.selected(db):
                    apply_states(self.ks, states)
        elif name == Verb.XABORT:
            self.in_doubt.pop(int(args[1]), None)
        else:
            return False
        return True

    def _apply(self, path: str, n: int, args: list[bytes]) -> int:
        """Replay record ``n``; 1 if it replied with an error (as Redis, go on)."""
        handler = find(args[0])
        if handler is None and args[0].upper() == b"SELECT":
            db = strict_int(args[1]) if len(args) == 2 else None
            if db is None or not 0 <= db < len(self.ks.dbs):
                raise LoadError(
                    f"{path} at offset {aofreader.record_offset(path, n)}: SELECT of a database "
                    f"this server does not have (databases {len(self.ks.dbs)})"
                )
            self.ks.select(db)
            return 0
        if handler is None:
            raise LoadError(
                f"Unknown command '{args[0].decode('latin-1')}' reading the append only file "
                f"{path} at offset {aofreader.record_offset(path, n)}"
            )
        # The handlers trust the acceptor's arity check; a record no client
        # could have sent (a damaged or edited file) is refused here.
        cmd = commands.lookup(args[0])
        if cmd is not None and not commands.check_arity(cmd, len(args)):
            raise self._bad_record(path, n, errors.WRONG_ARITY.removeprefix("ERR ") % cmd.name)
        try:
            handler(self.ks, args)
        except CommandError:
            return 1
        except Exception as e:
            log.debug("shard %d: replaying %r failed: %r", self.index, args[0], e)
            name = args[0].decode("latin-1").lower()
            raise self._bad_record(path, n, f"a '{name}' record that cannot be replayed") from None
        return 0

    @staticmethod
    def _bad_record(path: str, n: int, reason: str) -> LoadError:
        offset = aofreader.record_offset(path, n)
        return LoadError(f"Bad file format reading the append only file {path} at offset {offset}: {reason}")

    def _torn(self, path: str, offset: int, last: bool, reason: str) -> None:
        if not last or not self.cfg.get("aof-load-truncated", True):
            raise LoadError(
                f"Bad file format reading the append only file {path} at offset {offset}: {reason}"
            )
        size = os.path.getsize(path)
        log.warning(
            "!!! Warning: short read while loading the AOF file %s !!! (%s) "
            "AOF loaded anyway because aof-load-truncated is enabled; "
            "truncated from %d to %d bytes",
            path,
            reason,
            size,
            offset,
        )
        os.truncate(path, offset)


def _debug_delay(usec: int) -> None:
    """``key-load-delay``, a test setting, as Redis's debugDelay: sleep
    ``usec`` microseconds for each key loaded; a negative value sleeps one
    microsecond once in ``-usec`` keys."""
    if usec < 0:
        usec = 1 if random.randrange(-usec) == 0 else 0
    if usec:
        time.sleep(usec / 1e6)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0  # (missing: the load says so)


def load_libraries(ks: Keyspace, codes: list[bytes], path: str) -> None:
    """Load the FUNCTION libraries a snapshot saved (replacing any of the same name)."""
    from shardkv.worker.functions import functions_of

    functions = functions_of(ks)
    for code in codes:
        try:
            functions.load(code, replace=True)
        except CommandError as e:
            raise LoadError(f"{path}: cannot load a function library: {e.message}") from None
