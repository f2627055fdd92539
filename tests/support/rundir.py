"""The test run's private temporary folder: made with its owner's pid in
it, and removed by the next run once that owner is dead.

``tests/conftest.py`` puts every temporary file of a run in one folder,
``shardkv-tests-*`` in the system's temp directory, and removes it when
the run ends.  A run killed before then (SIGKILL, or a second SIGTERM
while it cleans up) cannot: the folder stays.  So the folder names its
owner, the run's controlling process, in a file ``owner`` (its pid and
start time: a pid alone may have been given to another process since),
and each run removes such folders whose owner is no longer running before
it makes its own.  A folder with no ``owner`` file (made before it was
written, or by something else) is never touched, nor one whose owner
still runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import psutil

PREFIX = "shardkv-tests-"
OWNER = "owner"


def _started(pid: int) -> float | None:
    """When process ``pid`` started (psutil's create time), None if no
    such process runs (a zombie has ended: its folder is no one's)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.NoSuchProcess:
        return None


def owner_alive(folder: Path) -> bool | None:
    """Whether the process named in ``folder``'s ``owner`` file still runs
    (the same pid, started at the same time); None where the folder names
    no owner (no such file, or not one this module wrote)."""
    try:
        pid_text, started_text = (folder / OWNER).read_text().split()
        pid, started = int(pid_text), float(started_text)
    except (OSError, ValueError):
        return None
    return _started(pid) == started


def remove_orphans(parent: str) -> list[str]:
    """Removes the run folders in ``parent`` whose owner is dead; returns
    their paths."""
    removed = []
    for entry in os.scandir(parent):
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        if owner_alive(Path(entry.path)) is False:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


def make(parent: str | None = None) -> str:
    """A new run folder in ``parent`` (the system's temp directory), owned
    by this process, after the orphans there were removed."""
    parent = parent or tempfile.gettempdir()
    remove_orphans(parent)
    folder = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    started = _started(os.getpid())
    assert started is not None
    (Path(folder) / OWNER).write_text(f"{os.getpid()} {started!r}\n")
    return folder
