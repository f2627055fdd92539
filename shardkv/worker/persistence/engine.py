"""One shard's persistence: loading, the AOF, snapshots, rewrites, shutdown.

Every worker persists its own shard, in its own files, with no lock and no
pause shared with other shards.  Files, in ``dir``, for shard *i*:

==============================================  ================================
``<dbfilename>.shard-<i>``                      snapshot (SAVE, BGSAVE, ``save``
                                                rules, shutdown)
``<appendfilename>.shard-<i>.manifest``         the files that make up the AOF,
                                                in order (text, as Redis 7's)
``<appendfilename>.shard-<i>.<seq>.base.snap``  snapshot the AOF starts from
``<appendfilename>.shard-<i>.<seq>.incr.aof``   records appended since (RESP)
``...tmp-<pid>``                                being written; removed at start
==============================================  ================================

Snapshots and bases use the format of :mod:`shardkv.worker.persistence.snapshot`;
records, what is logged and the fsync policies are in
:mod:`shardkv.worker.persistence.aof`.  Every file records the shard count and index
that wrote it.

Start-up
    With ``appendonly yes`` and a manifest, the shard loads the base and
    replays the incr files (nothing expires while it replays).  Otherwise
    it loads its snapshot, if there is one.  A torn last record of the last
    incr file is cut off with a warning (``aof-load-truncated yes``, as
    Redis); any other damage stops start-up with a message that names the
    file and the offset, and the worker exits with :data:`EXIT_LOAD_FAILED`.
    With ``appendonly yes`` and no manifest, the shard then writes a base
    of what it loaded and starts a manifest.

Rewrite (BGREWRITEAOF, ``auto-aof-rewrite-percentage``/``-min-size``)
    As Redis 7's multi-part AOF: the worker opens the next incr file,
    writes a manifest that lists the old files and the new incr, switches
    its logging to the new incr (a thread fsyncs and closes the old one, as
    Redis's bio thread does), and forks.  The child writes a base of its
    copy-on-write memory to a temp file and fsyncs it; the worker keeps
    serving.  When the child is done, the worker renames the temp file to
    the new base, writes a manifest of that base and the new incr, and a
    thread deletes the old files.  Every manifest names only whole files,
    and each is replaced atomically (temp file, fsync, rename, fsync of the
    directory), so a crash at any moment leaves a loadable AOF.  The worker
    itself stops only for the fork and the manifest writes; INFO reports
    the longest such pause as ``aof_rewrite_max_pause_usec`` (and BGSAVE's
    as ``rdb_bgsave_max_pause_usec``).

SAVE, BGSAVE and ``save`` rules write ``<dbfilename>.shard-<i>`` (BGSAVE
in a forked child), to a temp file renamed into place.  SHUTDOWN, SIGTERM
and SIGINT flush and fsync the AOF and save when there are ``save`` rules
(SHUTDOWN SAVE always, NOSAVE never).

Shard count changes
    See :mod:`shardkv.worker.persistence.reshard`.
"""

from __future__ import annotations

import gc
import logging
import marshal
import os
import re
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shardkv.protocol import commands, errors
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK, strict_int
from shardkv.protocol.wire import Verb
from shardkv.runtime import config as settings
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.persistence import aof, snapshot
from shardkv.worker.registry import command, find
from shardkv.worker.transfer import State, apply_states, import_key

log = logging.getLogger("shardkv.worker")

# The records of the cross-shard commit protocol (see shardkv.acceptor.crossshard):
# ``__XPREPARE <op> <marshal of {key: state}>``, then ``__XCOMMIT <op>`` or
# ``__XABORT <op>``.  On load a prepare is applied where its commit is; one
# with no outcome is *in doubt*, resolved with the acceptor.
_OUTCOMES = frozenset({Verb.XPREPARE, Verb.XCOMMIT, Verb.XABORT})

EXIT_LOAD_FAILED = 3  # a worker that cannot load its data exits with this
BGSAVE_RETRY_DELAY = 5  # seconds before a failed automatic save is retried
PR_SET_PDEATHSIG = 1


class LoadError(Exception):
    """The shard's files cannot be loaded; the message says which and where."""


def parse_save_rules(text: str) -> list[tuple[int, int]]:
    """``"3600 1 300 100"`` -> ``[(3600, 1), (300, 100)]``."""
    words = text.split()
    if len(words) % 2:
        raise ValueError("save rules are pairs of <seconds> <changes>")
    return [(int(words[i]), int(words[i + 1])) for i in range(0, len(words), 2)]


# -- file names ----------------------------------------------------------------


class Files:
    """The names of one shard's files."""

    def __init__(self, cfg: dict[str, Any], index: int) -> None:
        self.dir = os.path.abspath(cfg["dir"])
        self.index = index
        self.snapshot = os.path.join(self.dir, settings.shard_file(cfg["dbfilename"], index))
        self.aof_prefix = settings.shard_file(cfg["appendfilename"], index)
        self.manifest = os.path.join(self.dir, self.aof_prefix + ".manifest")

    def base(self, seq: int) -> str:
        return f"{self.aof_prefix}.{seq}.base.snap"

    def incr(self, seq: int) -> str:
        return f"{self.aof_prefix}.{seq}.incr.aof"

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def temp(self, target: str) -> str:
        return f"{target}.tmp-{os.getpid()}"

    def remove_temp_files(self) -> None:
        """Temp files a crashed writer left behind."""
        prefixes = (os.path.basename(self.snapshot) + ".", self.aof_prefix + ".")
        for name in list_dir(self.dir):
            if name.startswith(prefixes) and ".tmp-" in name:
                remove_file(self.path(name))


def list_dir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: str, data: bytes) -> None:
    """Temp file, fsync, rename over ``path``, fsync the directory."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


# -- the manifest ----------------------------------------------------------------


@dataclass
class Manifest:
    """Which files make up one shard's AOF: a base, then incr files in order."""

    shards: int
    index: int
    base: tuple[str, int] | None = None  # (file name, seq)
    incrs: list[tuple[str, int]] = field(default_factory=list)

    def dumps(self) -> bytes:
        lines = ["# shardkv AOF manifest, format 1", f"shards {self.shards} index {self.index}"]
        if self.base is not None:
            lines.append(f"file {self.base[0]} seq {self.base[1]} type b")
        lines += [f"file {name} seq {seq} type i" for name, seq in self.incrs]
        return ("\n".join(lines) + "\n").encode()

    def files(self) -> list[str]:
        return ([self.base[0]] if self.base else []) + [name for name, _ in self.incrs]

    def last_seq(self) -> int:
        seqs = [seq for _, seq in self.incrs] + ([self.base[1]] if self.base else [])
        return max(seqs, default=0)


_FILE_LINE = re.compile(r"file (\S+) seq (\d+) type ([bi])")


def read_manifest(path: str) -> Manifest:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LoadError(f"cannot read the AOF manifest {path}: {e}") from None
    manifest = None
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"shards (\d+) index (\d+)", line)
        if m and manifest is None:
            manifest = Manifest(int(m.group(1)), int(m.group(2)))
            continue
        m = _FILE_LINE.fullmatch(line)
        if m and manifest is not None:
            entry = (m.group(1), int(m.group(2)))
            if m.group(3) == "b":
                manifest.base = entry
            else:
                manifest.incrs.append(entry)
            continue
        raise LoadError(f"bad line {number} in the AOF manifest {path}: {line!r}")
    if manifest is None:
        raise LoadError(f"the AOF manifest {path} has no 'shards' line")
    return manifest


# -- the shard's persistence ----------------------------------------------------------


@dataclass
class Child:
    """A forked child writing a snapshot (``save``) or an AOF base (``rewrite``)."""

    pid: int
    kind: str
    started: float
    temp: str
    seq: int = 0
    dirty: int = 0  # changes when it forked
    enabling: bool = False  # a rewrite that turns the AOF on


class Persistence:
    """The persistence of one shard; see the module docstring."""

    def __init__(self, ks: Keyspace, index: int, nshards: int, cfg: dict[str, Any]) -> None:
        self.ks = ks
        self.index = index
        self.nshards = nshards
        self.cfg = cfg
        self.files = Files(cfg, index)
        self.rules = parse_save_rules(cfg["save"])
        self.aof: aof.AofWriter | None = None
        self.manifest: Manifest | None = None
        self.kinds: dict[bytes, object] = {}  # command name as sent -> READ/VERBATIM/recorder
        self.suspended = False  # logging stopped (a cross-shard operation logs its states)
        self.foreign: dict | tuple = ()  # other shards' keys installed here
        self.inherited_fds: list[int] = []  # closed in forked children
        self.child: Child | None = None
        self.rewrite_scheduled = False
        self.bgsave_scheduled = False
        self.closed = False  # SHUTDOWN has run
        # Why writes are refused (-MISCONF), or None: see _update_misconf.
        self.misconf: str | None = None
        self._bgsave_ok = True
        # Figures for INFO, as Redis names them.
        self.dirty = 0
        self.lastsave = int(time.time())
        self.last_bgsave_ok = True
        self.last_bgsave_try = 0.0
        self.last_bgsave_secs = -1
        self.rdb_saves = 0
        self.last_rewrite_ok = True
        self.last_rewrite_secs = -1
        self.aof_rewrites = 0
        self.aof_history_size = 0  # base and incr files before the current one
        self.aof_base_size = 0  # AOF size after the last rewrite (for auto rewrite)
        self.latest_fork_usec = 0
        self.max_pause_usec = {"save": 0, "rewrite": 0}
        self.loaded_keys = 0
        self.load_seconds = 0.0
        # Cross-shard operations prepared in the AOF with no outcome after
        # them (see shardkv.acceptor.crossshard): op -> (database, the states to
        # apply there on commit).
        self.in_doubt: dict[int, tuple[int, dict[bytes, State]]] = {}
        ks.persistence = self
        ks.propagate_del = self._deleted

    @property
    def last_bgsave_ok(self) -> bool:
        return self._bgsave_ok

    @last_bgsave_ok.setter
    def last_bgsave_ok(self, ok: bool) -> None:
        self._bgsave_ok = ok
        self._update_misconf()

    # -- settings ---------------------------------------------------------------

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

    # -- start-up ---------------------------------------------------------------

    def start(self) -> None:
        """Load the shard from disk, then open the AOF when it is on."""
        t0 = time.monotonic()
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
        gc.freeze()
        if self.cfg["appendonly"]:
            self._open_aof()
        self.load_seconds = time.monotonic() - t0

    def load(self, use_aof: bool | None = None) -> None:
        """Fill the keyspace from the AOF (when on and present) or the snapshot."""
        ks = self.ks
        if use_aof is None:
            use_aof = self.cfg["appendonly"]
        ks.now = 0  # nothing expires while loading; every deadline is absolute
        try:
            if use_aof and os.path.exists(self.files.manifest):
                manifest = read_manifest(self.files.manifest)
                self._check_layout(manifest.shards, manifest.index, self.files.manifest)
                if manifest.base is not None:
                    self._load_snapshot(self.files.path(manifest.base[0]))
                for n, (name, _) in enumerate(manifest.incrs):
                    self._replay(self.files.path(name), last=n == len(manifest.incrs) - 1)
                self.manifest = manifest
            elif os.path.exists(self.files.snapshot):
                self._load_snapshot(self.files.snapshot)
        finally:
            ks.select(0)
            ks.tick()
        self.loaded_keys = ks.total_keys()
        if self.loaded_keys:
            log.info("shard %d: %d keys loaded", self.index, self.loaded_keys)

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
            for db, key, state in items:
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
            for n, args in aof.read_records(path):
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
        except aof.TornTail as e:
            offset = aof.record_offset(path, multi_at) if multi is not None else e.offset
            self._torn(path, offset, last, str(e))
            return
        except aof.AofError as e:
            raise LoadError(str(e)) from None
        if multi is not None:  # a MULTI with no EXEC: the write was torn after it
            offset = aof.record_offset(path, multi_at)
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
                    f"{path} at offset {aof.record_offset(path, n)}: SELECT of a database "
                    f"this server does not have (databases {len(self.ks.dbs)})"
                )
            self.ks.select(db)
            return 0
        if handler is None:
            raise LoadError(
                f"Unknown command '{args[0].decode('latin-1')}' reading the append only file "
                f"{path} at offset {aof.record_offset(path, n)}"
            )
        try:
            handler(self.ks, args)
        except CommandError:
            return 1
        except Exception as e:
            offset = aof.record_offset(path, n)
            raise LoadError(f"{path} at offset {offset}: replaying {args[0]!r} failed: {e!r}") from None
        return 0

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

    def _open_aof(self) -> None:
        """Start logging: into the manifest's last incr, or a new AOF."""
        files = self.files
        manifest = self.manifest
        if manifest is None:
            # The first AOF of this shard: a base of what was loaded.
            manifest = Manifest(self.nshards, self.index)
            seq = _max_seq(files) + 1  # never append to a file an earlier run left
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
        self.aof = aof.AofWriter(files.path(manifest.incrs[-1][0]), self.cfg["appendfsync"])
        self.aof_history_size = sum(_size(files.path(name)) for name in manifest.files()[:-1])
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

    # -- logging ----------------------------------------------------------------

    def record(self, args: list[bytes], reply: object) -> None:
        """Log a command that ran without error (see :mod:`shardkv.worker.persistence.aof`)."""
        kind = self.kinds.get(args[0])
        if kind is None:
            kind = aof.classify(args[0])
            if len(self.kinds) < 4096:
                self.kinds[args[0]] = kind
        if kind is aof.READ or self.suspended:
            return
        self.dirty += 1
        writer = self.aof
        if writer is None:
            return
        if writer.db != self.ks.db:
            self._select()
        if kind is aof.VERBATIM:
            writer.buf.append(aof.encode(args))
        else:
            self._append(kind(self.ks, args, reply))  # type: ignore[operator]

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

    def log_states(self, states: dict[bytes, State]) -> None:
        """Log that these keys now hold these states (cross-shard operations)."""
        if not states:
            return
        self.dirty += len(states)
        if self.aof is not None:
            records: list = []
            for key, state in states.items():
                records += aof.state_records(key, state)
            self._append(records)

    def log_prepare(self, op: int, states: dict[bytes, State]) -> None:
        """Log that this shard prepared ``op``: its keys will hold ``states``
        if the operation commits (one record; see shardkv.acceptor.crossshard)."""
        self.dirty += len(states)
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

    def log_results(self, commands_: list, foreign: dict) -> None:
        """The executor of a cross-shard operation: log the final states of
        the keys of its own that the commands wrote (see Shard.run_foreign)."""
        records: list = []
        touched: dict[bytes, None] = {}
        elsewhere = {k[1] for k in foreign if type(k) is tuple}  # another database's keys
        for args in commands_:
            cmd = commands.lookup(args[0])
            if cmd is None or not cmd.is_write:
                continue
            self.dirty += 1
            keys = cmd.keys(args)
            if not keys:
                records.append(args)  # FLUSHALL and the like: as it was sent
            for key in keys:
                if key not in foreign and key not in elsewhere:
                    touched[key] = None
        if self.aof is not None:
            for key in touched:
                records += aof.key_records(self.ks, key)
            self._append(records)

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
        held must not acknowledge them (see ``process._serve_pipe``).

        As Redis: what was not written stays buffered and is tried again
        at each commit and each cron tick, and until it goes through
        :attr:`misconf` refuses writes; reads go on.  Redis exits on such
        an error with ``appendfsync always``, because its replies are
        already out; here they are not, so the worker refuses them instead
        and stays up (no crash loop)."""
        writer = self.aof
        if writer is None or (not writer.buf and writer.write_error is None):
            return True
        was = writer.write_error
        try:
            writer.flush()
        except OSError as e:
            if was is None:
                log.warning("shard %d: error writing the AOF %s: %s", self.index, writer.path, e)
            self._update_misconf()
            return False
        if was is not None:
            log.warning("shard %d: AOF write error looks solved, writing again", self.index)
        self._update_misconf()
        return True

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

    # -- the periodic task ------------------------------------------------------

    def cron(self) -> None:
        """``hz`` times a second: retry an AOF that could not be written,
        reap children, start due saves and rewrites."""
        writer = self.aof
        if writer is not None and (writer.failing is not None or self.misconf is not None):
            self.commit()  # tries the write again, and notes an fsync thread's error
            self._update_misconf()
        child = self.child
        if child is not None:
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
            if self.rewrite_scheduled:
                self.rewrite_scheduled = False
                self._try(self._start_rewrite)
            elif self.bgsave_scheduled:
                self.bgsave_scheduled = False
                self._try(self._start_save)
            elif self._save_due():
                self._try(self._start_save)
            elif self._rewrite_due():
                self._try(self._start_rewrite)
        self.commit()

    def _try(self, start: Callable[[], object]) -> None:
        try:
            start()
        except (OSError, CommandError) as e:
            log.error("shard %d: cannot start a background job: %s", self.index, e)

    def _save_due(self) -> bool:
        if not self.rules or not self.dirty:
            return False
        now = time.time()
        if not self.last_bgsave_ok and now - self.last_bgsave_try < BGSAVE_RETRY_DELAY:
            return False
        return any(self.dirty >= changes and now - self.lastsave >= secs for secs, changes in self.rules)

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

    # -- forking ----------------------------------------------------------------

    def _fork(self, work: Callable[[], object]) -> int:
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                self._child_setup()
                work()
                code = 0
            except BaseException:
                try:
                    traceback.print_exc()
                except BaseException:
                    pass
            finally:
                os._exit(code)
        self.latest_fork_usec = int((time.perf_counter() - t0) * 1e6)
        return pid

    def _child_setup(self) -> None:
        gc.disable()  # leave the parent's pages alone where we can
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with the worker
            from shardkv.runtime.proctitle import set_name

            set_name(f"shardkv-save{self.index}")
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:
            os._exit(1)
        for fd in self.inherited_fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def _kill_child(self, kind: str | None = None) -> None:
        child = self.child
        if child is None or (kind is not None and child.kind != kind):
            return
        try:
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        remove_file(child.temp)
        self.child = None
        log.info("shard %d: background %s stopped", self.index, child.kind)

    def _note_pause(self, t0: float, kind: str) -> None:
        """How long the worker stopped serving to start or finish a child."""
        pause = int((time.perf_counter() - t0) * 1e6)
        self.max_pause_usec[kind] = max(self.max_pause_usec[kind], pause)

    # -- snapshots --------------------------------------------------------------

    def save(self) -> None:
        """SAVE: write the snapshot now, in this process."""
        if self.child is not None and self.child.kind == "save":
            raise CommandError("ERR Background save already in progress")
        tmp = self.files.temp(self.files.snapshot)
        try:
            snapshot.write_snapshot(tmp, self.ks, self.nshards, self.index)
            os.replace(tmp, self.files.snapshot)
            fsync_dir(self.files.dir)
        except OSError as e:
            remove_file(tmp)
            # A failed SAVE (or SHUTDOWN's save) leaves rdb_last_bgsave_status
            # alone, as Redis's rdbSave does: only a background save's failure
            # stops writes with -MISCONF.
            log.error("shard %d: cannot save %s: %s", self.index, self.files.snapshot, e)
            raise CommandError("ERR") from None
        self.dirty = 0
        self.lastsave = int(time.time())
        self.last_bgsave_ok = True
        self.rdb_saves += 1

    def bgsave(self, schedule: bool = False) -> str:
        child = self.child
        if child is not None:
            if child.kind == "save":
                raise CommandError("ERR Background save already in progress")
            if schedule:
                self.bgsave_scheduled = True
                return "Background saving scheduled"
            raise CommandError(
                "ERR Another child process is active (AOF?): can't BGSAVE right now. "
                "Use BGSAVE SCHEDULE in order to schedule a BGSAVE whenever possible."
            )
        self._start_save()
        return "Background saving started"

    def _start_save(self) -> None:
        t0 = time.perf_counter()
        self.last_bgsave_try = time.time()
        tmp = self.files.temp(self.files.snapshot)
        delay = self.cfg.get("rdb-key-save-delay", 0)
        try:
            pid = self._fork(lambda: snapshot.write_snapshot(tmp, self.ks, self.nshards, self.index, delay))
        except OSError as e:
            self.last_bgsave_ok = False
            raise CommandError(f"ERR Can't BGSAVE: fork failed: {e}") from None
        self.child = Child(pid, "save", time.time(), tmp, dirty=self.dirty)
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
            self.lastsave = int(time.time())
            self.rdb_saves += 1
            log.info("shard %d: background saving terminated with success", self.index)
        else:
            remove_file(child.temp)
            log.error("shard %d: background saving error", self.index)
        self._note_pause(t0, "save")

    # -- rewrites ---------------------------------------------------------------

    def bgrewriteaof(self) -> str:
        child = self.child
        if child is not None:
            if child.kind == "rewrite":
                raise CommandError("ERR Background append only file rewriting already in progress")
            self.rewrite_scheduled = True
            return "Background append only file rewriting scheduled"
        self._start_rewrite()
        return "Background append only file rewriting started"

    def _start_rewrite(self) -> None:
        """Fork a child that writes a new base; log into a new incr meanwhile."""
        enabling = self.aof is None and bool(self.cfg["appendonly"])
        if self.child is not None:
            if enabling and self.child.kind == "save":
                self._kill_child("save")  # as Redis: turning the AOF on wins
            else:
                self.rewrite_scheduled = True
                return
        t0 = time.perf_counter()
        files = self.files
        seq = max(self.manifest.last_seq() if self.manifest else 0, _max_seq(files)) + 1
        incr = files.incr(seq)
        if self.aof is not None:
            self.commit()
            old_size = self.aof.size
            assert self.manifest is not None
            open(files.path(incr), "ab").close()
            self.manifest.incrs.append((incr, seq))
            write_file_atomically(files.manifest, self.manifest.dumps())
            self.aof.switch(files.path(incr))
            self.aof_history_size += old_size
        elif enabling:
            # Log from now on; the manifest is written when the base is.
            self.aof = aof.AofWriter(files.path(incr), self.cfg["appendfsync"])
            self.aof_history_size = 0
        tmp = files.temp(files.path(files.base(seq)))
        delay = self.cfg.get("rdb-key-save-delay", 0)
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
                aof.unlink_later([files.path(name) for name in old if name not in manifest.files()])
                self.aof_history_size = _size(files.path(base))
                self.aof_base_size = self.aof_history_size + (self.aof.size if self.aof else 0)
            except OSError as e:
                log.error("shard %d: cannot finish the AOF rewrite: %s", self.index, e)
                ok = False
        self.last_rewrite_ok = ok
        self.last_rewrite_secs = int(time.time() - child.started)
        if ok:
            self.aof_rewrites += 1
            log.info("shard %d: background AOF rewrite finished successfully", self.index)
        else:
            remove_file(child.temp)
            log.error("shard %d: background AOF rewrite failed", self.index)
            if child.enabling and self.manifest is None:
                self.rewrite_scheduled = True  # AOF is logging but has no base yet: try again
        self._note_pause(t0, "rewrite")

    # -- shutting down ----------------------------------------------------------

    def shutdown(self, mode: str = "default") -> None:
        """Flush the AOF and, unless NOSAVE, save when there are rules (or SAVE).

        Raises CommandError when a save fails, and then leaves the shard open.
        """
        if self.closed:
            return
        self._kill_child()
        self.commit()
        if self.aof is not None:
            self.aof.sync()
        if mode == "save" or (
            mode == "default" and self.rules and (self.dirty or not os.path.exists(self.files.snapshot))
        ):
            self.save()
        self.closed = True

    def close(self) -> None:
        """The worker is exiting: shut down (as SIGTERM does) and close files."""
        try:
            self.shutdown()
        finally:
            self._kill_child()
            if self.aof is not None:
                try:
                    self.aof.sync()
                except OSError as e:
                    log.error("shard %d: cannot sync the AOF: %s", self.index, e)
                self.aof.close()
                self.aof = None

    # -- INFO ---------------------------------------------------------------------

    def info(self) -> dict[str, object]:
        child = self.child
        now = time.time()
        writer = self.aof
        out: dict[str, object] = {
            "rdb_changes_since_last_save": self.dirty,
            "rdb_bgsave_in_progress": int(child is not None and child.kind == "save"),
            "rdb_last_save_time": self.lastsave,
            "rdb_last_bgsave_status": "ok" if self.last_bgsave_ok else "err",
            "rdb_last_bgsave_time_sec": self.last_bgsave_secs,
            "rdb_current_bgsave_time_sec": int(now - child.started) if child and child.kind == "save" else -1,
            "rdb_saves": self.rdb_saves,
            "rdb_last_load_keys_loaded": self.loaded_keys,
            "aof_enabled": int(writer is not None),
            "aof_rewrite_in_progress": int(child is not None and child.kind == "rewrite"),
            "aof_rewrite_scheduled": int(self.rewrite_scheduled),
            "aof_last_rewrite_time_sec": self.last_rewrite_secs,
            "aof_current_rewrite_time_sec": int(now - child.started)
            if child and child.kind == "rewrite"
            else -1,
            "aof_last_bgrewrite_status": "ok" if self.last_rewrite_ok else "err",
            "aof_rewrites": self.aof_rewrites,
            "aof_last_write_status": "err" if writer is not None and writer.write_error else "ok",
            "latest_fork_usec": self.latest_fork_usec,
            "rdb_bgsave_max_pause_usec": self.max_pause_usec["save"],
            "aof_rewrite_max_pause_usec": self.max_pause_usec["rewrite"],
            "load_seconds": round(self.load_seconds, 3),
        }
        if writer is not None:
            out["aof_current_size"] = self.aof_history_size + writer.size
            out["aof_base_size"] = self.aof_base_size
            out["aof_buffer_length"] = sum(map(len, writer.buf))
        return out


def load_libraries(ks: Keyspace, codes: list[bytes], path: str) -> None:
    """Load the FUNCTION libraries a snapshot saved (replacing any of the same name)."""
    from shardkv.worker.functions import functions_of

    functions = functions_of(ks)
    for code in codes:
        try:
            functions.load(code, replace=True)
        except CommandError as e:
            raise LoadError(f"{path}: cannot load a function library: {e.message}") from None


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


_SEQ = re.compile(r"\.(\d+)\.(?:base\.snap|incr\.aof)")


def _max_seq(files: Files) -> int:
    """The highest seq of any AOF file of this shard on disk, referenced or not."""
    best = 0
    for name in list_dir(files.dir):
        if name.startswith(files.aof_prefix + "."):
            m = _SEQ.match(name, len(files.aof_prefix))
            if m:
                best = max(best, int(m.group(1)))
    return best


# -- commands -------------------------------------------------------------------


def _of(ks: Keyspace) -> Persistence:
    p = ks.persistence
    if p is None:
        raise CommandError("ERR persistence is not configured in this shard")
    return p


@command("save")
def save_command(ks: Keyspace, args: list[bytes]) -> object:
    """SAVE"""
    _of(ks).save()
    return OK


@command("bgsave")
def bgsave_command(ks: Keyspace, args: list[bytes]) -> object:
    """BGSAVE [SCHEDULE]"""
    schedule = False
    if len(args) == 2 and args[1].upper() == b"SCHEDULE":
        schedule = True
    elif len(args) > 1:
        raise CommandError("ERR syntax error")
    return _of(ks).bgsave(schedule)


@command("bgrewriteaof")
def bgrewriteaof_command(ks: Keyspace, args: list[bytes]) -> object:
    """BGREWRITEAOF"""
    return _of(ks).bgrewriteaof()


@command(Verb.LASTSAVE)
def lastsave_command(ks: Keyspace, args: list[bytes]) -> object:
    """__lastsave -> this shard's last successful save, in Unix seconds."""
    return _of(ks).lastsave


@command(Verb.PERSISTENCE)
def persistence_command(ks: Keyspace, args: list[bytes]) -> object:
    """__persistence -> this shard's INFO persistence figures."""
    p = ks.persistence
    return {} if p is None else p.info()


@command(Verb.SHUTDOWN)
def shutdown_command(ks: Keyspace, args: list[bytes]) -> object:
    """__shutdown save|nosave|default|abort -> OK once the shard's data is safe.

    After OK the shard runs nothing more (see Shard.run_batch); ``abort``
    opens it again, when another shard could not save.
    """
    p = _of(ks)
    mode = args[1].decode("latin-1").lower() if len(args) > 1 else "default"
    if mode == "abort":
        p.closed = False
        return OK
    try:
        p.shutdown(mode)
    except CommandError:
        raise CommandError("ERR Errors trying to SHUTDOWN. Check logs.") from None
    return OK


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
