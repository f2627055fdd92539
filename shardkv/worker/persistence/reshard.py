"""Changing the number of shards between runs, with no data lost.

Every persistence file records the shard count and index that wrote it.
:func:`prepare` runs in the supervisor before any worker starts.  If the
files a start would load (the AOF manifests with ``appendonly yes``, else
the snapshots) were written by another number of shards, it re-shards them:

1. A few processes (one per CPU) each take some of the new shards; for each,
   they load every old shard whose slots overlap (base and AOF replay, or
   snapshot, as a worker would), keep the slots the new shard owns, and
   write them to a temp snapshot ``<file>.shard-<i>.reshard``.  The old files
   are not touched; if any of this fails, start-up stops and says so.
2. A marker file ``<dbfilename>.reshard`` commits the switch.
3. The temp files become the new shards' snapshots (or AOF bases, with a
   manifest each), every file of the old layout is removed, and the marker
   goes.  Each step checks what is already done, so a crash anywhere in 3 is
   finished by the next start, which sees the marker first.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from shardkv.protocol.decisions import read_all_committed
from shardkv.protocol.router import slot_range
from shardkv.runtime import config as settings
from shardkv.runtime import serverlog
from shardkv.worker.persistence.files import (
    Files,
    LoadError,
    Manifest,
    fsync_dir,
    list_dir,
    read_manifest,
    remove_file,
    write_file_atomically,
)

if TYPE_CHECKING:
    from shardkv.worker.keyspace import Keyspace

# The supervisor runs prepare() on every start: the worker's code (the
# keyspace, the snapshot format, the engine) is imported where files are
# read, so that a start with nothing to re-shard does not import it.

log = logging.getLogger("shardkv")


def _layout_files(cfg: dict[str, Any]) -> tuple[str, dict[int, str]] | None:
    """What a start would load: ("aof", manifests) or ("rdb", snapshots), by index."""
    directory = os.path.abspath(cfg["dir"])
    names = list_dir(directory)
    manifests, snapshots = {}, {}
    aof_base = cfg["appendfilename"] + ".shard-"
    rdb_base = cfg["dbfilename"] + ".shard-"
    for name in names:
        if name.startswith(aof_base) and name.endswith(".manifest"):
            middle = name[len(aof_base) : -len(".manifest")]
            if middle.isdigit():
                manifests[int(middle)] = os.path.join(directory, name)
        elif name.startswith(rdb_base) and name[len(rdb_base) :].isdigit():
            snapshots[int(name[len(rdb_base) :])] = os.path.join(directory, name)
    if cfg["appendonly"] and manifests:
        return "aof", manifests
    if snapshots:
        return "rdb", snapshots
    return None


def _file_shards(kind: str, path: str) -> tuple[int, int]:
    if kind == "aof":
        m = read_manifest(path)
        return m.shards, m.index
    from shardkv.worker.persistence import snapshot

    try:
        header = snapshot.read_header(path)
    except (snapshot.SnapshotError, OSError, ValueError, EOFError) as e:
        raise LoadError(f"cannot read the snapshot {path}: {e}") from None
    return header["shards"], header["index"]


def stored_layout(cfg: dict[str, Any]) -> tuple[str, int] | None:
    """``(kind, shard count)`` of the files a start would load, or None."""
    found = _layout_files(cfg)
    if found is None:
        return None
    kind, paths = found
    counts = {}
    for index, path in paths.items():
        shards, recorded = _file_shards(kind, path)
        if recorded != index or index >= shards:
            raise LoadError(f"{path} says it is shard {recorded} of {shards}")
        counts[path] = shards
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{os.path.basename(p)}: {n}" for p, n in sorted(counts.items()))
        raise LoadError(f"the files in {cfg['dir']} were written by different shard counts ({detail})")
    return kind, next(iter(counts.values()))


def _marker(cfg: dict[str, Any]) -> str:
    return os.path.join(os.path.abspath(cfg["dir"]), cfg["dbfilename"] + ".reshard")


def _reshard_temp(cfg: dict[str, Any], kind: str, index: int) -> str:
    base = cfg["appendfilename"] if kind == "aof" else cfg["dbfilename"]
    return os.path.join(os.path.abspath(cfg["dir"]), settings.shard_file(base, index) + ".reshard")


def migrate_shards(cfg: dict[str, Any], indexes: list[int], kind: str, old_shards: int) -> None:
    """A process of the re-sharding: gather each new shard's keys (of
    ``indexes``) from the old shards' files into a temp snapshot."""
    from shardkv.worker import wiring

    serverlog.setup(cfg)
    wiring.install()  # this process replays the old shards' AOFs with the handlers
    for index in indexes:
        migrate_shard(cfg, index, kind, old_shards)


def migrate_shard(cfg: dict[str, Any], index: int, kind: str, old_shards: int) -> None:
    from shardkv.worker.keyspace import Keyspace
    from shardkv.worker.persistence import snapshot
    from shardkv.worker.persistence.engine import Persistence
    from shardkv.worker.transfer import apply_states

    new_shards = cfg["shards"]
    mine = slot_range(index, new_shards)
    databases = cfg["databases"]
    target = Keyspace(slots=mine, databases=databases)
    libraries: list[bytes] | None = None
    for old in range(old_shards):
        theirs = slot_range(old, old_shards)
        overlap = range(max(mine.start, theirs.start), min(mine.stop, theirs.stop))
        if not overlap:
            continue
        scratch = Keyspace(slots=theirs, databases=databases)
        _give_engine(scratch)  # to replay FUNCTION LOAD and load saved libraries
        source = Persistence(scratch, old, old_shards, cfg)
        source.load(use_aof=kind == "aof")
        if libraries is None:  # every shard holds every library: take the first's
            libraries = snapshot.library_codes(scratch)
        if source.in_doubt:
            # Operations prepared with no outcome logged: the decisions file
            # of every coordinator says which committed (none runs yet).
            committed = read_all_committed(cfg)
            for op, (db, states) in source.in_doubt.items():
                if op in committed:
                    with scratch.selected(db):
                        apply_states(scratch, states)
        for db in scratch.used_dbs():  # each key stays in its database
            theirs_db = scratch.database(db)
            target.select(db)
            for slot in overlap:
                target.data[slot] = theirs_db.data[slot]  # type: ignore[union-attr]
                target.expires[slot] = theirs_db.expires[slot]  # type: ignore[union-attr]
                target.expiring[slot] = 1
            target.nvolatile = sum(len(target.expires[s]) for s in mine)
            target.select(0)
    tmp = _reshard_temp(cfg, kind, index)
    snapshot.write_snapshot(tmp + ".part", target, new_shards, index, libraries=libraries or [])
    os.replace(tmp + ".part", tmp)


def _give_engine(ks: Keyspace) -> None:
    """A Lua engine for a keyspace read outside a worker (as a worker's own)."""
    from shardkv.worker.scripting import Engine

    class _Owner:
        keyspace = ks

    ks.scripts = Engine(_Owner())


def prepare(cfg: dict[str, Any], start_process: Callable[..., Any]) -> None:
    """Before the workers start: finish or perform a change of the shard count.

    ``start_process(target, args)`` starts a process and returns it (the
    supervisor's spawn context).  Raises LoadError when the files cannot be
    used; the old files are then as they were.
    """
    directory = os.path.abspath(cfg["dir"])
    if not os.path.isdir(directory):
        return
    marker = _marker(cfg)
    if os.path.exists(marker):
        log.warning("finishing an interrupted change of the shard count (%s)", marker)
        _commit_reshard(cfg, json.loads(open(marker).read()))
    layout = stored_layout(cfg)
    if layout is None or layout[1] == cfg["shards"]:
        return
    kind, old = layout
    new = cfg["shards"]
    log.warning("the files in %s were written by %d shards; re-sharding them for %d", directory, old, new)
    t0 = time.monotonic()
    # A few processes (one per CPU), each gathering some of the new shards.
    nprocs = max(1, min(new, os.cpu_count() or 1))
    groups = [list(range(k, new, nprocs)) for k in range(nprocs)]
    procs = [start_process(migrate_shards, (cfg, group, kind, old)) for group in groups]
    failed = []
    for group, proc in zip(groups, procs, strict=True):
        proc.join()
        if proc.exitcode != 0:
            failed += group
    if failed:
        for i in range(new):
            remove_file(_reshard_temp(cfg, kind, i))
            remove_file(_reshard_temp(cfg, kind, i) + ".part")
        raise LoadError(
            f"re-sharding from {old} to {new} shards failed (new shards {failed}; see above); "
            f"the files in {directory} are unchanged: start with --shards {old}"
        )
    plan = {"from": old, "to": new, "kind": kind, "seq": _max_seq_all(cfg) + 1}
    write_file_atomically(marker, json.dumps(plan).encode())
    _commit_reshard(cfg, plan)
    log.warning("re-sharded from %d to %d shards in %.1fs", old, new, time.monotonic() - t0)


def _max_seq_all(cfg: dict[str, Any]) -> int:
    best = 0
    for name in list_dir(os.path.abspath(cfg["dir"])):
        if name.startswith(cfg["appendfilename"] + ".shard-"):
            m = re.search(r"\.(\d+)\.(?:base\.snap|incr\.aof)$", name)
            if m:
                best = max(best, int(m.group(1)))
    return best


def _commit_reshard(cfg: dict[str, Any], plan: dict) -> None:
    """Make the temp files the new layout's and remove the old layout's files.

    Safe to run again after a crash: every step checks what is already done.
    """
    from shardkv.worker.persistence import snapshot

    directory = os.path.abspath(cfg["dir"])
    new, kind, seq = plan["to"], plan["kind"], plan["seq"]
    for i in range(new):
        tmp = _reshard_temp(cfg, kind, i)
        files = Files(cfg, i)
        if kind == "rdb":
            if os.path.exists(tmp):
                os.replace(tmp, files.snapshot)
            continue
        base = files.base(seq)
        if os.path.exists(tmp):
            os.replace(tmp, files.path(base))
        if os.path.exists(files.path(base)):
            current = read_manifest(files.manifest) if os.path.exists(files.manifest) else None
            if current is None or current.base != (base, seq) or current.shards != new:
                open(files.path(files.incr(seq)), "ab").close()
                manifest = Manifest(new, i, (base, seq), [(files.incr(seq), seq)])
                write_file_atomically(files.manifest, manifest.dumps())
    fsync_dir(directory)
    # Remove every file of another shard count, and AOF files no manifest names.
    keep: set[str] = set()
    aof_base = cfg["appendfilename"] + ".shard-"
    rdb_base = cfg["dbfilename"] + ".shard-"
    for name in list_dir(directory):
        path = os.path.join(directory, name)
        if name.startswith(aof_base) and name.endswith(".manifest"):
            try:
                manifest = read_manifest(path)
            except LoadError:
                continue
            if manifest.shards != new:
                remove_file(path)
            else:
                keep.update(manifest.files())
        elif name.startswith(rdb_base) and name[len(rdb_base) :].isdigit():
            try:
                shards = snapshot.read_header(path)["shards"]
            except (snapshot.SnapshotError, OSError, ValueError, EOFError):
                continue
            if shards != new:
                remove_file(path)
    for name in list_dir(directory):
        if name.startswith(aof_base) and (name.endswith(".base.snap") or name.endswith(".incr.aof")):
            if name not in keep:
                remove_file(os.path.join(directory, name))
    fsync_dir(directory)
    remove_file(_marker(cfg))
    fsync_dir(directory)


__all__ = ["prepare", "stored_layout"]
