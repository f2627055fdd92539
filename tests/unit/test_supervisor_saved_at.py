"""A worker's last save as it starts (shardkv.supervisor): the supervisor
times a restart once, hands that time to the new worker (its
``lastsave`` until it saves) and tells the acceptors the same in its
``reloading`` line, so that LASTSAVE says one figure while the shard
reloads and once it has loaded, as Redis's one ``lastsave`` at startup."""

from __future__ import annotations

import socket
import time
from multiprocessing import Pipe
from types import SimpleNamespace

from shardkv import supervisor
from shardkv.runtime.loadprogress import LoadProgress


class _Ctx:
    """The spawn context: records the worker's arguments, starts nothing."""

    def __init__(self) -> None:
        self.args: tuple = ()

    def Pipe(self):  # noqa: N802  (multiprocessing's name)
        return Pipe()

    def Process(self, target, args, name):  # noqa: N802
        self.args = args
        return SimpleNamespace(start=lambda: None, pid=4242)


def test_a_restarted_worker_and_the_acceptors_get_one_time() -> None:
    sup = object.__new__(supervisor.Supervisor)
    sup.ctx = ctx = _Ctx()  # type: ignore[assignment]
    sup.cfg = {}  # type: ignore[assignment]
    sup.nacceptors = 1
    sup.slow_log = sup.schedules = sup.script_flags = None  # type: ignore[assignment]
    sup.load_progress = progress = LoadProgress(1)
    sup.workers = [SimpleNamespace(join=lambda timeout: None, exitcode=1, pid=4241)]
    sup.ctls, sup.ends = [None], [[None]]
    sup.loaded, sup.early_deaths, sup.saved_at = [True], [0], [0]
    sup.started = True
    ours, theirs = socket.socketpair()
    sup.controls, sup.waiting = [ours], [None]
    try:
        before = int(time.time())
        sup._worker_died(0)
        after = int(time.time())
        line = theirs.recv(4096).split(b"\n")[0]
    finally:
        for conn in (ours, theirs, *sup.ends[0], sup.ctls[0]):
            if conn is not None:
                conn.close()
        progress.close()
    saved_at = ctx.args[-2]  # (the last: the script flags, K > 1)
    assert before <= saved_at <= after and sup.saved_at == [saved_at]
    assert line == b"reloading 0 %d" % saved_at
