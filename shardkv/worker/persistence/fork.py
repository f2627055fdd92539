"""Forked children: a snapshot or an AOF base written from the worker's
copy-on-write memory while the worker goes on serving.

A child closes the worker's pipes, dies with the worker (PDEATHSIG), and
exits 0 only when its work is done; the worker reaps it in its cron.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from shardkv.worker.persistence.files import discard_temp
from shardkv.worker.persistence.state import State

log = logging.getLogger("shardkv.worker")

PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """A forked child writing a snapshot (``save``) or an AOF base (``rewrite``)."""

    pid: int
    kind: str
    started: float
    temp: str
    seq: int = 0
    dirty: int = 0  # changes when it forked
    counted: frozenset[int] = frozenset()  # the operations' counts in ``dirty`` then
    unsaved: int = 0  # and Persistence.unsaved then
    enabling: bool = False  # a rewrite that turns the AOF on


class Forking(State):
    """Forking, stopping and timing children (a part of Persistence)."""

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
        self.total_forks += 1  # (as Redis's redisFork: a fork that failed raised above)
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
        discard_temp(child.temp)
        self.child = None
        log.info("shard %d: background %s stopped", self.index, child.kind)

    def _note_pause(self, t0: float, kind: str) -> None:
        """How long the worker stopped serving to start or finish a child."""
        pause = int((time.perf_counter() - t0) * 1e6)
        self.max_pause_usec[kind] = max(self.max_pause_usec[kind], pause)
