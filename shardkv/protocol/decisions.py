"""The commit decisions of cross-shard operations, in one small file.

The acceptor appends ``C <op>\\n`` for each operation it commits, before it
answers the client or tells any shard (see :mod:`shardkv.acceptor.crossshard`);
an operation with no line was aborted (*presumed abort*), and so was one
whose line a later ``A <op>`` line cancels (a failed write that could not
be cut off the file again, see :class:`DecisionLog`).  A shard that
restarts, or outlives the acceptor, with an operation prepared and no
outcome asks the next acceptor, which reads this file.  The file is
emptied whenever no committed operation still awaits a shard's
acknowledgement.

Every coordinator (an acceptor; there is one today, coordinator 0) has
its own file, and puts its number in the top bits of its operation ids
(:func:`operation_ids`), so that the coordinator of any operation in doubt
is known (:func:`op_coordinator`).  Where: with ``appendonly yes``,
``<dir>/<appendfilename>.<coordinator>.decisions``, written with the AOF's
``appendfsync`` (``always``: fsynced before the reply); otherwise a file in
the temporary directory named after the supervisor's pid and the
coordinator, which only has to outlive an acceptor.  Both sides of the
pipes read them (the acceptor at start, re-sharding at start-up, which
reads every coordinator's file), so this lives with the other
protocol-level modules.
"""

from __future__ import annotations

import errno
import itertools
import os
import random
import tempfile
from collections.abc import Callable
from typing import Any

# An operation id: the coordinator's number, a random epoch drawn when the
# coordinator starts, and a counter.
COORDINATOR_SHIFT = 60
_EPOCH_SHIFT = 32
_EPOCH_BITS = COORDINATOR_SHIFT - _EPOCH_SHIFT


def operation_ids(coordinator: int) -> itertools.count[int]:
    """The operation ids of one run of ``coordinator``: unique to it."""
    epoch = random.getrandbits(_EPOCH_BITS - 1) + 1
    return itertools.count((coordinator << COORDINATOR_SHIFT) | (epoch << _EPOCH_SHIFT) | 1)


def op_coordinator(op: int) -> int:
    """The coordinator that started operation ``op``."""
    return op >> COORDINATOR_SHIFT


def _aof_path(cfg: dict[str, Any]) -> str:
    directory: str = cfg["dir"]
    name: str = cfg["appendfilename"]
    return os.path.join(os.path.abspath(directory), name)


def durable_path(cfg: dict[str, Any], coordinator: int = 0) -> str:
    return f"{_aof_path(cfg)}.{coordinator}.decisions"


def volatile_path(supervisor_pid: int, coordinator: int = 0) -> str:
    return os.path.join(tempfile.gettempdir(), f"shardkv-{supervisor_pid}.{coordinator}.decisions")


def _legacy_path(cfg: dict[str, Any]) -> str:
    # The one file of the versions before files per coordinator (its
    # operations are coordinator 0's).
    return _aof_path(cfg) + ".decisions"


def coordinator_paths(cfg: dict[str, Any], supervisor_pid: int, coordinator: int) -> list[str]:
    """Every file that may hold ``coordinator``'s decisions."""
    paths = [durable_path(cfg, coordinator), volatile_path(supervisor_pid, coordinator)]
    if coordinator == 0:
        paths.append(_legacy_path(cfg))
    return paths


def read_all_committed(cfg: dict[str, Any]) -> set[int]:
    """The operations committed in the durable files of every coordinator
    (re-sharding at start-up, when no coordinator runs)."""
    folder, aof_name = os.path.split(_aof_path(cfg))
    prefix = aof_name + "."
    try:
        names = os.listdir(folder)
    except OSError:
        return set()
    out: set[int] = set()
    for name in names:
        middle = name[len(prefix) : -len(".decisions")]
        if name.startswith(prefix) and name.endswith(".decisions") and (middle.isdigit() or not middle):
            out |= read_committed(os.path.join(folder, name))
    return out


# The most digits an operation id has (they are below 2**64): a longer
# run of digits is a damaged line, not an id (and int() of one over 4,300
# digits raises ValueError, as Python limits that conversion).
_ID_DIGITS = 20


def read_committed(path: str) -> set[int]:
    """The operations a decisions file commits: its ``C <op>`` lines but
    those an ``A <op>`` line cancels.  A line that is not whole (the last,
    with no newline) or not well formed (a torn one that a later write was
    appended to, see :class:`DecisionLog`; one whose id has more digits
    than any has) is ignored."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return set()
    return committed_in(data)


def committed_in(data: bytes) -> set[int]:
    """The operations that the lines of ``data`` commit (see :func:`read_committed`)."""
    out = set()
    cancelled = set()
    for line in data.split(b"\n")[:-1]:
        kind, _, op = line.partition(b" ")
        if len(op) <= _ID_DIGITS and op.isdigit():
            if kind == b"C":
                out.add(int(op))
            elif kind == b"A":
                cancelled.add(int(op))
    return out - cancelled


class ShortWrite(OSError):
    """Part of a write went to ``what`` (a decisions file, a worker's AOF),
    then the disk took no more: as Redis's flushAppendOnlyFile has a short
    write of its AOF, an ``ENOSPC`` ("No space left on device") whatever
    the error that cut it, said in its log's words."""

    def __init__(self, path: str, nwritten: int, expected: int, what: str = "the decisions file") -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        self.nwritten = nwritten
        self.expected = expected
        self.what = what
        # Why the part written could not be cut off the file again, if it
        # could not (ftruncate's strerror): the file then ends in it.
        self.truncate_error: str | None = None

    def __str__(self) -> str:
        return "Short write while writing to %s: (nwritten=%d, expected=%d)" % (
            self.what,
            self.nwritten,
            self.expected,
        )


def write_some(fd: int, data: bytes | memoryview) -> int:
    """``os.write(fd, data)``: the bytes it took, at least one.  A write
    that takes nothing and says no error (some file systems do) is a full
    disk: a loop that wrote on (as Redis's aofWrite does) would spin for
    good, holding its process and every client of it."""
    n = os.write(fd, data)
    if not n:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return n


# What a write begins with when the file may hold bytes after its last
# whole write (see DecisionLog): a torn line before it ends in ``#``, so it
# is not well formed, whatever part of a line it holds, and is ignored.
_FRESH_LINE = b"#\n"


class DecisionLog:
    """The acceptor's appending end of one decisions file.

    A write that fails (a short write, an fsync) is cut off the file again
    (``ftruncate``), so that no operation answered with an error reads as
    committed later.  Should the cut fail, the file holds what that write
    took: a torn line, and perhaps whole lines of its operations.  Then,
    before any of them is answered or undone, they are cancelled: one more
    write of a fresh line (:data:`_FRESH_LINE`: a torn line before it is
    not well formed, and read as nothing, where a line glued onto it would
    be lost) and an ``A <op>`` line for each, which cancels its ``C``
    line.  So an acceptor that dies right after (before any other write)
    reads none of them as committed.  Should that write fail too, the
    operations whose ``C`` lines are whole in the file, and not cancelled
    by a whole ``A`` line, read as committed to whoever reads the file
    next: they are committed (:attr:`kept`), as the file has them, and the
    others undone; with ``appendfsync always`` they are fsynced first, as
    their clients are answered (:attr:`kept_unsynced` says why, if that
    fails).  What the cancel leaves, or the cut, is fsynced as the ``C`` lines are:
    with ``always`` before any of them is undone, else with the next
    everysec fsync (:attr:`unsynced`).  Either way every whole line is then kept for good
    (``size`` moves past it), and the next write starts on a fresh line
    if the file ends in a torn one that it cannot cut off.  A file that
    ends in a torn line when it is opened (an acceptor died with the cut
    not made) is taken the same way."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1
        self.size = 0  # where the file's last whole line ends
        self.end = 0  # where the file ends: past ``size`` only by a torn line
        self.cut_error: str | None = None  # why the last cut failed (strerror), if it did
        self.cancel_error: str | None = None  # why the last cancel failed, if it did
        # The operations of the last write that failed, if what it took
        # could not be cut off (``uncut``), and those of them that commit all
        # the same (``kept``): their lines could not be cancelled either.
        self.uncut: list[int] = []
        self.kept: list[int] = []
        # Why the ``kept`` lines could not be fsynced, with ``appendfsync
        # always`` (then they commit unacknowledged: see crossshard), or None.
        self.kept_unsynced: OSError | None = None
        self.unsynced = False  # written since the last fsync

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.size = self.end = os.fstat(self.fd).st_size
        if self.end:  # does it end on a whole line?  (It is small: see Coordinator's CLEAR_AT.)
            with open(self.path, "rb") as f:
                data = f.read(self.end)
            if not data.endswith(b"\n"):
                self.size = data.rfind(b"\n") + 1

    def _cut(self) -> bool:
        """Cut the file back to its last whole line; False if it cannot be."""
        try:
            os.ftruncate(self.fd, self.size)
        except OSError as e:
            self.cut_error = e.strerror or str(e)
            return False
        self.end = self.size
        self.cut_error = None
        return True

    def _write(self, data: bytes) -> int:
        """Write all of ``data`` (on until all is written or an error, as
        Redis's aofWrite: a write may take part of it and the next say
        why); OSError, with the bytes written as ``written``, if it fails."""
        written = 0
        try:
            while written < len(data):
                written += write_some(self.fd, data[written:] if written else data)
        except OSError as e:
            e.written = written  # type: ignore[attr-defined]
            raise
        return written

    def commit(self, op: int, fsync: bool) -> None:
        """Record that ``op`` commits; OSError if it could not be."""
        self.commit_all([op], fsync)

    def commit_all(self, ops: list[int], fsync: bool) -> None:
        """Record that every operation of ``ops`` commits, in one write
        (and one fsync); OSError if they could not be, and then none is
        but those of :attr:`kept`: the lines written of them are cut off
        again, or if that fails, cancelled at once (see the class's
        docstring), so that no operation answered with an error reads as
        committed to the shards that ask later."""
        if self.fd < 0:
            self._open()
        self.uncut = self.kept = []
        self.kept_unsynced = None
        lines = b"".join([b"C %d\n" % op for op in ops])
        if self.end != self.size and not self._cut():
            lines = _FRESH_LINE + lines
        written = 0
        try:
            try:
                written = self._write(lines)
            except OSError as e:
                written = e.written  # type: ignore[attr-defined]
                if written:
                    raise ShortWrite(self.path, written, len(lines)) from e
                raise
            if fsync:  # (failed: the lines may be on disk, or later be)
                os.fsync(self.fd)
        except OSError:
            self.end += written
            if written and self._cut():
                self._sync_cut(fsync)
            elif written:
                self._cancel(ops, lines[:written], fsync)
                # What stays of the write and its cancel goes to disk with
                # the next everysec fsync (with ``always`` it was fsynced).
                self.unsynced = not fsync
            raise
        self.end += written
        self.size = self.end
        self.unsynced = not fsync

    def _sync_cut(self, fsync: bool) -> None:
        """A failed write's lines were cut off: the cut goes to disk as
        they may have (the kernel writes pages back when it likes), else a
        power cut could keep whole ``C`` lines of operations then undone.
        With ``always`` at once, before any of them is undone (an fsync
        that fails leaves it owed, as one of everysec); else with the
        next everysec fsync."""
        self.unsynced = True
        if fsync:
            try:
                os.fsync(self.fd)
            except OSError:
                return
            self.unsynced = False

    def _cancel(self, ops: list[int], taken: bytes, fsync: bool) -> None:
        """The write of ``ops``'s lines took ``taken`` and failed, and its
        cut failed too: cancel them now, before any is undone; if that
        fails as well, :attr:`kept` says which the file commits."""
        cancel = _FRESH_LINE + b"".join([b"A %d\n" % op for op in ops])
        self.uncut = ops
        self.cancel_error = None
        try:
            done = self._write(cancel)
            if fsync:
                os.fsync(self.fd)
        except OSError as e:
            done = getattr(e, "written", len(cancel))
            self.cancel_error = e.strerror or str(e)
        self.end += done
        # What this write and its cancel left past the last whole line
        # (the file before them ended on one, or ``taken`` begins with
        # a fresh line): its whole lines stay, for good.
        left = taken + cancel[:done]
        newline = left.rfind(b"\n")
        if newline >= 0:
            self.size = self.end - (len(left) - newline - 1)
        self.kept = [op for op in ops if op in committed_in(left)]
        if self.kept and fsync:
            # Committed as the file has them, their clients answered: with
            # ``always`` not before their lines are on disk (the cancel's
            # write failed before its fsync, or the fsync failed).
            try:
                os.fsync(self.fd)
            except OSError as e:
                self.kept_unsynced = e

    def sync(self) -> None:
        """fsync what was written since the last fsync (``everysec``)."""
        if self.fd >= 0 and self.unsynced:
            os.fsync(self.fd)  # (one that fails is tried again the next time)
            self.unsynced = False

    def clear(self) -> None:
        """Forget every decision: no shard needs any of them any more."""
        if self.fd >= 0 and self.end:
            os.ftruncate(self.fd, 0)
            self.size = self.end = 0

    def close(self, remove_if_empty: bool = False) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            if remove_if_empty and not self.end:
                try:
                    os.unlink(self.path)
                except OSError:
                    pass


def remove_stale(alive: Callable[[int], bool]) -> None:
    """Remove the temporary decisions files of supervisors that are gone."""
    _remove_volatile(lambda pid: not alive(pid))


def remove_volatile(supervisor_pid: int) -> None:
    """Remove every coordinator's temporary decisions file of a supervisor."""
    _remove_volatile(lambda pid: pid == supervisor_pid)


def _remove_volatile(which: Callable[[int], bool]) -> None:
    folder = tempfile.gettempdir()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        pid = name[len("shardkv-") : -len(".decisions")].partition(".")[0]
        if name.startswith("shardkv-") and name.endswith(".decisions") and pid.isdigit() and which(int(pid)):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
