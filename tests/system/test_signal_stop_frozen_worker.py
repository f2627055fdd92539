"""A signal's stop with a frozen worker (SIGSTOPped, or hung) is bounded.

Every SIGTERM/SIGINT stop goes through an acceptor, which sends the shards
their ``__shutdown`` once no script is busy.  A frozen worker never answers
it: the stop waited for ever (before, the supervisor's own stop gave a
worker WORKER_STOP_GRACE, then killed it).  The supervisor now bounds the
wait from the ``shutting`` line by WORKER_STOP_GRACE, then stops without
the acceptor, killing the worker: exit status 1, nothing left behind.
(Redis has no such case; our rule is that nothing hangs.)  The grace is
set short here by a ``main.py`` that changes the module's constant, as it
does the supervisor's STOP_GRACE (how long the killed worker's stop is
waited for: a SIGSTOPped worker never stops by itself).

With several acceptors the acceptor first sends every shard a ``__ping``
(at_threshold, to act on the stop when Redis would read it), which the
frozen worker never answers: it goes on without them after
``SIGNAL_PING_WAIT`` (10 s; 0.3 s here, set by the same ``main.py`` in the
acceptor processes, which run it again as spawned children), then as above.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import psutil
import pytest

from tests.support.processes import assert_all_gone
from tests.support.servers import ROOT, start_shardkv

pytestmark = pytest.mark.slow

# Each bound's length: the test's logic does not depend on it (the frozen
# worker never answers nor stops, however long it is waited for).
GRACE = 0.3
WAIT = 45.0  # a bound on the exit, far below the wait for ever it replaces

MAIN = f"""
import multiprocessing
import sys

import shardkv.supervisor

if multiprocessing.current_process().name.startswith("shardkv-acceptor"):
    import shardkv.acceptor.durability

    shardkv.acceptor.durability.SIGNAL_PING_WAIT = {GRACE}

if __name__ == "__main__":
    shardkv.supervisor.WORKER_STOP_GRACE = {GRACE}
    shardkv.supervisor.STOP_GRACE = {GRACE}
    sys.exit(shardkv.supervisor.main())
"""


@pytest.mark.parametrize("acceptors", [1, 2])
@pytest.mark.parametrize("rules", ["", "3600 1"])
def test_a_signal_stop_with_a_frozen_worker_ends(tmp_path: Path, rules: str, acceptors: int) -> None:
    (tmp_path / "main.py").write_text(MAIN)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), *sys.path]))
    server = start_shardkv("--save", rules, shards=2, root=tmp_path, env=env, acceptors=acceptors)
    frozen = None
    try:
        family = psutil.Process(server.proc.pid).children(recursive=True)
        pids = re.findall(r"worker \d+ pid=(\d+)", server.output())
        assert len(pids) == 2, server.output()
        frozen = int(pids[0])
        os.kill(frozen, signal.SIGSTOP)
        server.proc.send_signal(signal.SIGTERM)
        status = server.proc.wait(WAIT)
        assert status == 1, server.output()
        assert_all_gone(family, WAIT)
    finally:
        if frozen is not None and psutil.pid_exists(frozen):
            os.kill(frozen, signal.SIGCONT)
        server.stop()
