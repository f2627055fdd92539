"""The commit decisions of cross-shard operations, in one small file.

The acceptor appends ``C <op>\\n`` for each operation it commits, before it
answers the client or tells any shard (see :mod:`shardkv.acceptor.crossshard`);
an operation with no line was aborted (*presumed abort*).  A shard that
restarts, or outlives the acceptor, with an operation prepared and no
outcome asks the next acceptor, which reads this file.  The file is
emptied whenever no committed operation still awaits a shard's
acknowledgement.

Where: with ``appendonly yes``, ``<dir>/<appendfilename>.decisions``,
written with the AOF's ``appendfsync`` (``always``: fsynced before the
reply); otherwise a file in the temporary directory named after the
supervisor's pid, which only has to outlive an acceptor.  Both sides of the
pipes read it (the acceptor at start, re-sharding at start-up), so it
lives here with the other protocol-level modules.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any


def durable_path(cfg: dict[str, Any]) -> str:
    directory: str = cfg["dir"]
    name: str = cfg["appendfilename"]
    return os.path.join(os.path.abspath(directory), name + ".decisions")


def volatile_path(supervisor_pid: int) -> str:
    return os.path.join(tempfile.gettempdir(), f"shardkv-{supervisor_pid}.decisions")


def read_committed(path: str) -> set[int]:
    """The operations a decisions file commits (a torn last line is ignored)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return set()
    out = set()
    for line in data.split(b"\n")[:-1]:
        kind, _, op = line.partition(b" ")
        if kind == b"C" and op.isdigit():
            out.add(int(op))
    return out


class DecisionLog:
    """The acceptor's appending end of one decisions file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.size = 0

    def commit(self, op: int, fsync: bool) -> None:
        """Record that ``op`` commits; OSError if it could not be."""
        if self.fd < 0:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self.size = os.fstat(self.fd).st_size
        line = b"C %d\n" % op
        written = os.write(self.fd, line)
        if written != len(line):
            raise OSError("short write to %s" % self.path)
        self.size += written
        if fsync:
            os.fsync(self.fd)

    def clear(self) -> None:
        """Forget every decision: no shard needs any of them any more."""
        if self.fd >= 0 and self.size:
            os.ftruncate(self.fd, 0)
            self.size = 0

    def close(self, remove_if_empty: bool = False) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            if remove_if_empty and not self.size:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass


def remove_stale(alive: Callable[[int], bool]) -> None:
    """Remove the temporary decisions files of supervisors that are gone."""
    folder = tempfile.gettempdir()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid = name[len("shardkv-") : -len(".decisions")]
        if (
            name.startswith("shardkv-")
            and name.endswith(".decisions")
            and pid.isdigit()
            and not alive(int(pid))
        ):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
