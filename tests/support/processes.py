"""A shardkv under test's worker processes, found by their names, and a
bounded wait for a condition (tests that stop a worker to hold a command
in flight, or kill one)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

from tests.support.servers import ServerProcess

WAIT = 20.0  # the default bound of until() (a loaded machine is slow; no timing assertion)


def worker_pids(server: ServerProcess) -> dict[int, int]:
    """Shard index -> pid of its worker, from the process names."""
    out = {}
    for child in psutil.Process(server.proc.pid).children():
        try:
            name = child.name()
        except psutil.NoSuchProcess:
            continue
        if name.startswith("shardkv-shard"):
            out[int(name[len("shardkv-shard") :])] = child.pid
    return out


def worker_pid(server: ServerProcess, shard: int) -> int:
    """The pid of ``shard``'s worker."""
    pid = worker_pids(server).get(shard)
    if pid is None:
        raise AssertionError(f"no worker for shard {shard}")
    return pid


def until(check: Callable[[], object], wait: float = WAIT) -> object:
    """``check()``'s first true value, or its last one after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while not (got := check()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return got
