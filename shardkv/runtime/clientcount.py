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

from shardkv.runtime.sharedslots import SharedSlots


class ClientCounts(SharedSlots):
    """The connected clients of each of ``n`` acceptors, shared between processes."""

    NAME = "shardkv-clients"

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
