"""``maxclients`` across several acceptors (``--acceptors K`` > 1): one total.

Redis refuses a connection once ``maxclients`` clients are connected.
With K acceptors each holds only its own clients, so the supervisor makes
one small shared file (:class:`ClientCounts`, a ``memfd``) with a 64-bit
slot per acceptor, and hands it to each acceptor it starts (the file
descriptor travels with the process's arguments, as its pipes do).
Acceptor ``i`` writes only slot ``i``: how many clients it holds.  A new
connection is admitted only if the sum of the slots is below
``maxclients``, and the check and the count are made under an ``fcntl``
lock on the same file, so two acceptors cannot both take the last place.

An acceptor that dies never leaves the lock held (the kernel drops a
process's ``fcntl`` locks when it exits, even by SIGKILL), and its
clients are gone with it: the supervisor zeroes its slot before starting
it again.  With one acceptor there is no such file: it counts its own
clients as before.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import tempfile
from multiprocessing import reduction
from typing import Any

_SLOT = 8  # bytes: one signed 64-bit count per acceptor


class ClientCounts:
    """The connected clients of each of ``n`` acceptors, shared between processes."""

    def __init__(self, n: int, fd: int | None = None) -> None:
        if fd is None:
            if hasattr(os, "memfd_create"):
                fd = os.memfd_create("shardkv-clients", os.MFD_CLOEXEC)
            else:  # not Linux: an unlinked temporary file does the same
                fd = os.dup(tempfile.TemporaryFile().fileno())
            os.ftruncate(fd, n * _SLOT)
        self.fd = fd
        self.n = n
        self._map = mmap.mmap(fd, n * _SLOT)
        self.slots = memoryview(self._map).cast("q")

    def __reduce__(self) -> tuple[Any, tuple]:
        """To a process being started: the same file, by its descriptor."""
        return (_attach, (reduction.DupFd(self.fd), self.n))

    def _lock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def _unlock(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def admit(self, index: int, mine: int, limit: int) -> bool:
        """Acceptor ``index``, which holds ``mine`` clients, takes one more
        if all the acceptors' clients are fewer than ``limit``; False if not."""
        self._lock()
        try:
            slots = self.slots
            if sum(slots) - slots[index] + mine >= limit:
                return False
            slots[index] = mine + 1
            return True
        finally:
            self._unlock()

    def set(self, index: int, mine: int) -> None:
        """Acceptor ``index`` now holds ``mine`` clients (one went away;
        0 when it is started again)."""
        self._lock()
        try:
            self.slots[index] = mine
        finally:
            self._unlock()

    def total(self) -> int:
        return sum(self.slots)

    def close(self) -> None:
        self.slots.release()
        self._map.close()
        os.close(self.fd)


def _attach(dup: Any, n: int) -> ClientCounts:
    return ClientCounts(n, dup.detach())
