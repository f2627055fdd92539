"""Die with the supervisor: no process of shardkv outlives it.

The acceptor and every worker call :func:`die_with_parent` first thing.
Linux's ``PR_SET_PDEATHSIG`` sends them SIGTERM when the supervisor dies,
even by SIGKILL, so the acceptor closes its port and each worker flushes
its AOF and exits, as on a normal stop.  A child whose supervisor died
before the call (its parent is no longer the one that started it) sends
itself the signal.  Elsewhere this does nothing.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Ask for ``sig`` when the parent process dies; True if the kernel
    took the request."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    parent = mp.parent_process()
    if parent is not None and parent.pid is not None and os.getppid() != parent.pid:
        os.kill(os.getpid(), sig)  # it died before we asked
    return True


def living_parent() -> int | None:
    """The pid of the process that started this one (the supervisor), while
    it is still this process's parent; None once it has died (this process
    then belongs to init, or to a subreaper, which no signal of ours must
    reach), or when multiprocessing did not start this process."""
    parent = mp.parent_process()
    if parent is None or parent.pid is None or os.getppid() != parent.pid:
        return None
    return parent.pid
