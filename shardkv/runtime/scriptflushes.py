"""SCRIPT FLUSH's numbers: one sequence for every acceptor (issue 18).

Each SCRIPT FLUSH goes to every shard, numbered, and a worker keeps the
number of the last one it ran; the cjson options a script sets carry it,
so that another shard can tell whether a flush reset them (see the
worker's ``Engine.set_cjson``).  A worker that starts again has missed
the flushes sent to the one before it (and those sent while it was
down): as each acceptor attaches its pipe to it, it hands the worker the
number now (``__script flushed``), so the worker starts in step whatever
another shard answers it.

The numbers are one sequence whichever acceptor reads the flush, and they
outlive an acceptor's restart: the supervisor makes one small shared file
(:class:`ScriptFlushes`, a ``memfd``, as :mod:`shardkv.runtime.clientcount`
does) holding the last number, and hands it to each acceptor it starts.
An acceptor takes the next number under an ``fcntl`` lock on the file
(the kernel drops it if the acceptor dies holding it), so no two flushes
share one, and a flush read after another's reply has a higher one.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
from multiprocessing import reduction
from typing import Any

_SIZE = 8  # bytes: one signed 64-bit number


class ScriptFlushes:
    """The number of the last SCRIPT FLUSH sent, shared between processes."""

    def __init__(self, fd: int | None = None) -> None:
        if fd is None:
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("shardkv-script-flushes", os.MFD_CLOEXEC)
            else:  # not Linux: an unlinked temporary file does the same
                fd = os.dup(tempfile.TemporaryFile().fileno())
            os.ftruncate(fd, _SIZE)
        self.fd = fd
        self._map = mmap.mmap(fd, _SIZE)
        self._number = memoryview(self._map).cast("q")

    def __reduce__(self) -> tuple[Any, tuple]:
        """To a process being started: the same file, by its descriptor."""
        return (_attach, (reduction.DupFd(self.fd),))

    def next(self) -> int:
        """A new SCRIPT FLUSH's number: one more than the last one's."""
        fcntl.lockf(self.fd, fcntl.LOCK_EX)
        try:
            self._number[0] += 1
            return self._number[0]
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def current(self) -> int:
        """The last SCRIPT FLUSH's number (0: none yet)."""
        return self._number[0]

    def close(self) -> None:
        self._number.release()
        self._map.close()
        os.close(self.fd)


def _attach(dup: Any) -> ScriptFlushes:
    return ScriptFlushes(dup.detach())
