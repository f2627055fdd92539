"""One shard's files: their names, the AOF manifest, atomic replacement.

Files, in ``dir``, for shard *i*:

==============================================  ================================
``<dbfilename>.shard-<i>``                      snapshot (SAVE, BGSAVE, ``save``
                                                rules, shutdown)
``<appendfilename>.shard-<i>.manifest``         the files that make up the AOF,
                                                in order (text, as Redis 7's)
``<appendfilename>.shard-<i>.<seq>.base.snap``  snapshot the AOF starts from
``<appendfilename>.shard-<i>.<seq>.incr.aof``   records appended since (RESP)
``...tmp-<pid>``                                being written; removed at start
==============================================  ================================

Every manifest names only whole files, and each is replaced atomically
(:func:`write_file_atomically`: temp file, fsync, rename, fsync of the
directory), so a crash at any moment leaves a loadable AOF.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from shardkv.runtime import config as settings


class LoadError(Exception):
    """The shard's files cannot be loaded; the message says which and where."""


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


def discard_temp(path: str) -> None:
    """Remove a failed writer's temp file, if any.  Whatever the reason it
    cannot be (a name too long to exist, as a dbfilename of 250 bytes and
    its suffixes make; a dir replaced by a file), it is not there to leave
    behind: the error is no concern of the worker's loop, which it broke."""
    try:
        os.unlink(path)
    except OSError:
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


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


_SEQ = re.compile(r"\.(\d+)\.(?:base\.snap|incr\.aof)")


def max_seq(files: Files) -> int:
    """The highest seq of any AOF file of this shard on disk, referenced or not."""
    best = 0
    for name in list_dir(files.dir):
        if name.startswith(files.aof_prefix + "."):
            m = _SEQ.match(name, len(files.aof_prefix))
            if m:
                best = max(best, int(m.group(1)))
    return best


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


_FILE_LINE = re.compile(r"file (\S+) seq (\d+) type (\S+)")


def read_manifest(path: str) -> Manifest:
    """The manifest at ``path``, checked as Redis 7's ``aofLoadManifestFromFile``
    checks its own: a file name, not a path; at most one base; incr files
    in increasing seq order.  A damaged or edited manifest raises LoadError
    with Redis's words, the line number and the line, and the server does
    not start (as redis-server exits)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise LoadError(f"cannot read the AOF manifest {path}: {e}") from None
    if not lines:
        raise LoadError(f"Found an empty AOF manifest: {path}")
    manifest = None
    for number, line in enumerate(lines, 1):
        if line.startswith("#"):
            continue
        m = re.fullmatch(r"shards (\d+) index (\d+)", line)
        if m and manifest is None:
            manifest = Manifest(int(m.group(1)), int(m.group(2)))
            continue
        reason = _add_file_line(manifest, line)
        if reason is not None:
            raise LoadError(f"{reason}, reading the AOF manifest {path} at line {number}: >>> {line!r}")
    if manifest is None:
        raise LoadError(f"the AOF manifest {path} has no 'shards' line")
    return manifest


def _add_file_line(manifest: Manifest | None, line: str) -> str | None:
    """Add a ``file ... seq ... type ...`` line to ``manifest``; or Redis's
    reason for refusing it."""
    m = _FILE_LINE.fullmatch(line)
    if not m or manifest is None or int(m.group(2)) == 0:
        return "Invalid AOF manifest file format"
    name, seq, kind = m.group(1), int(m.group(2)), m.group(3)
    if "/" in name or "\\" in name:
        return "File can't be a path, just a filename"
    if kind == "b":
        if manifest.base is not None:
            return "Found duplicate base file information"
        manifest.base = (name, seq)
    elif kind == "i":
        if manifest.incrs and seq <= manifest.incrs[-1][1]:
            return "Found a non-monotonic sequence number"
        manifest.incrs.append((name, seq))
    else:
        return "Unknown AOF file type"
    return None
