"""A short soak (20 s) of tests/system/soak.py, the same code as the long one.

200 connections run mixed commands and check every reply, 20 connect and
disconnect over and over, 10 send garbage.  Afterwards: every process is
the one that started, RSS did not grow after the warm-up, the acceptor's
file descriptors are back to their count before the run, and no
well-behaved client saw an error.  Run ``python tests/system/soak.py`` for
minutes of the same.
"""

from __future__ import annotations

import json

import pytest

from tests.support.servers import start_shardkv
from tests.system.soak import soak, stable

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    proc = start_shardkv(shards=4)
    yield proc
    proc.stop()


@pytest.mark.timeout(180)
def test_short_soak(server):
    result = soak(server.port, server.proc.pid, duration=20, clients=200, churners=20, garbage=10)
    print("\nsoak:", json.dumps(result, indent=1))
    assert result["errors"] == [] and result["error_count"] == 0
    assert result["same_processes"]
    assert result["acceptor_fds_after"] == result["acceptor_fds_before"]
    assert result["acceptor_fds_peak"] > result["acceptor_fds_before"] + 200  # the clients were there
    assert stable(result) == []
    assert result["ops_checked"] > 10_000
    assert result["churn_cycles"] > 100
    assert result["garbage_connections"] > 100
