"""Slots of signed 64-bit figures in a small file that processes share.

Some figures cross the processes' boundaries as a file in memory (a
``memfd``; an unlinked temporary file off Linux) that the supervisor makes
and hands to each process it starts: the descriptor travels with the
process's arguments, as its pipes do.  :class:`SharedSlots` is that file,
``per`` slots for each of ``n`` shards or acceptors; its subclasses say
what the slots mean: :class:`~shardkv.runtime.loadprogress.LoadProgress`,
:class:`~shardkv.runtime.clientcount.ClientCounts`,
:class:`~shardkv.runtime.schedules.Schedules`,
:class:`~shardkv.runtime.scriptflags.ScriptFlags`.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from multiprocessing import reduction
from typing import Any

_SLOT = 8  # bytes: one signed 64-bit figure


def shared_file(name: str, size: int) -> int:
    """A file of ``size`` zero bytes that lives in memory, for processes to
    share by its descriptor (a ``memfd``; an unlinked temporary file off Linux)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
    else:
        fd = os.dup(tempfile.TemporaryFile().fileno())
    os.ftruncate(fd, size)
    return fd


class SharedSlots:
    """``PER`` slots for each of ``n`` processes, in a new file or in the
    one ``fd`` names (a process being started: see :meth:`__reduce__`)."""

    NAME = "shardkv-slots"  # the memfd's name, as /proc/<pid>/fd shows it
    PER = 1

    def __init__(self, n: int, fd: int | None = None) -> None:
        size = n * self.PER * _SLOT
        self.fd = shared_file(self.NAME, size) if fd is None else fd
        self.n = n
        self._map = mmap.mmap(self.fd, size)
        self.slots = memoryview(self._map).cast("q")

    def __reduce__(self) -> tuple[Any, tuple]:
        """To a process being started: the same file, by its descriptor."""
        return (_attach, (type(self), reduction.DupFd(self.fd), self.n))

    def close(self) -> None:
        self.slots.release()
        self._map.close()
        os.close(self.fd)


def _attach(cls: type[SharedSlots], dup: Any, n: int) -> SharedSlots:
    return cls(n, dup.detach())
