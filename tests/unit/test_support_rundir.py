"""tests.support.rundir and tests/conftest.py: a test run leaves no
``shardkv-tests-*`` folder behind, even when SIGTERM ends it.

A run stopped by SIGTERM (its controller, or its controller and its xdist
workers at once, as a process group's SIGTERM does) ends as after Ctrl-C
and removes its folder; a run killed outright leaves it, naming its owner,
and the next run removes it once that owner is dead, never while it runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.support import rundir
from tests.support.servers import ROOT

WAIT = 60.0  # seconds the child run may take to start or to end

# Leaves a file in the run's folder and says where that folder is, then
# waits to be stopped.
TINY = textwrap.dedent(
    """
    import os
    import tempfile
    import time


    def test_waits_to_be_stopped():
        fd, _ = tempfile.mkstemp(prefix="left-")
        os.close(fd)
        ready = os.environ["RUNDIR_READY"]
        with open(ready + ".part", "w") as f:
            f.write(os.environ["SHARDKV_TESTS_TMP"])
        os.rename(ready + ".part", ready)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
    """
)


def _start_run(tmp_path: Path, *options: str) -> tuple[subprocess.Popen, Path, Path]:
    """A pytest run of TINY with tests/conftest.py (in a session of its
    own, its temp directory ``tmp_path/tmp``); returns it, its temp
    directory and the file where its test writes the run's folder."""
    case = tmp_path / "case"
    case.mkdir()
    (case / "pytest.ini").write_text("[pytest]\n")
    (case / "test_tiny.py").write_text(TINY)
    temp = tmp_path / "tmp"
    temp.mkdir()
    ready = tmp_path / "ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "SHARDKV_TESTS_"))}
    env.update(TMPDIR=str(temp), RUNDIR_READY=str(ready), PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"]
    run = subprocess.Popen(
        [*argv, *options, str(case / "test_tiny.py")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return run, temp, ready


def _folder_when_ready(run: subprocess.Popen, ready: Path) -> Path:
    deadline = time.monotonic() + WAIT
    while not ready.exists():
        assert run.poll() is None, run.communicate()[0].decode(errors="replace")
        assert time.monotonic() < deadline, "the child run's test never started"
        time.sleep(0.02)
    return Path(ready.read_text())


@pytest.mark.parametrize(
    "options, whom",
    [([], "run"), (["-n", "1"], "group")],
    ids=["serial", "xdist-worker-too"],
)
def test_a_sigtermed_run_removes_its_folder(tmp_path, options, whom) -> None:
    """SIGTERM to the run (serial), or to the controller and its worker at
    once: the run ends as interrupted, and neither its folder nor any
    other ``shardkv-tests-*`` folder is left in its temp directory."""
    run, temp, ready = _start_run(tmp_path, *options)
    try:
        folder = _folder_when_ready(run, ready)
        assert folder.parent == temp and folder.name.startswith(rundir.PREFIX)
        assert any(p.name.startswith("left-") for p in folder.iterdir())
        if whom == "group":
            os.killpg(run.pid, signal.SIGTERM)
        else:
            run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=WAIT)[0].decode(errors="replace")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == pytest.ExitCode.INTERRUPTED, output
    assert not folder.exists(), output
    assert [p.name for p in temp.iterdir() if p.name.startswith(rundir.PREFIX)] == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_run_removes_only_folders_whose_owner_is_dead(tmp_path) -> None:
    """Owned by an ended process, or by a pid now another process's (its
    start time differs): removed.  Owned by a running process, or naming
    no owner: kept."""
    me = psutil.Process()
    owners = {
        "dead": f"{_dead_pid()} 1.0",
        "pid-reused": f"{me.pid} {me.create_time() - 1!r}",
        "alive": f"{me.pid} {me.create_time()!r}",
        "unreadable": "not a pid",
        "ownerless": None,
    }
    for name, owner in owners.items():
        folder = tmp_path / (rundir.PREFIX + name)
        folder.mkdir()
        (folder / "data").write_text("x")
        if owner is not None:
            (folder / rundir.OWNER).write_text(owner + "\n")
    (tmp_path / "other").mkdir()
    made = Path(rundir.make(str(tmp_path)))
    try:
        assert rundir.owner_alive(made) is True
        left = sorted(p.name for p in tmp_path.iterdir() if p != made)
        assert left == ["other"] + [rundir.PREFIX + n for n in ("alive", "ownerless", "unreadable")]
    finally:
        made.joinpath(rundir.OWNER).unlink()
        made.rmdir()
