"""Pipelined write fan-outs whose commit lines leave in one write, and a kill right after it.

16 two-shard MSETs pipelined on one connection come back to the acceptor
in a few reads of its pipes, and those decided in one read have their
``C <op>`` lines written together (see ``Coordinator.commit_soon`` in
:mod:`shardkv.acceptor.crossshard`).  The acceptor is held (SIGSTOP) at
``committed``, after that write and before any ``Decide``; then the
acceptor, or the worker of one of the shards, is SIGKILLed.  Once the
server has recovered, and again after the whole server is SIGKILLed and
started from its AOF: every MSET is applied on both shards or on neither,
each acknowledged one is applied, each answered with an error is not, and
the one the acceptor was held for (its line written) is applied.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest
import redis

from tests.system import faults

pytestmark = pytest.mark.slow

N = 16


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[int, faults.Server]]:
    """The module's servers by acceptor count.  Each test ends with its
    server crashed and started again from its AOF, running: the next test
    of that count goes on with it (its keys set again first)."""
    started: dict[int, faults.Server] = {}
    yield started
    for server in started.values():
        server.cleanup()


@pytest.mark.parametrize("acceptors", [1, 2])
@pytest.mark.parametrize("victim", ["acceptor", "worker"])
def test_a_kill_after_a_batch_of_commit_lines_leaves_each_mset_all_or_nothing(servers, acceptors, victim):
    if acceptors not in servers:
        servers[acceptors] = faults.Server(4, acceptors)
        servers[acceptors].start()
    server = servers[acceptors]
    passed = False
    try:
        setup = server.client()
        pairs = [(server.key_on(0, f"b{i}:"), server.key_on(1, f"b{i}:")) for i in range(N)]
        for a, b in pairs:
            setup.mset({a: "old", b: "old"})
        client = server.client()
        held = server.acceptor_pid(server.acceptor_of(client))
        result: dict = {}

        def run() -> None:
            pipe = client.pipeline(transaction=False)
            for i, (a, b) in enumerate(pairs):
                pipe.mset({a: f"new{i}", b: f"new{i}"})
            try:
                result["replies"] = pipe.execute(raise_on_error=False)
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass  # dropped: each may have gone either way
            finally:
                client.close()

        server.hold("committed")
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        reached = faults.until_stopped([held], 10.0)
        server.release()
        assert reached == 0, "the acceptor never reached a commit"
        if victim == "acceptor":
            os.kill(held, signal.SIGKILL)
        else:
            worker = server.pid("shard1")
            os.kill(worker, signal.SIGKILL)
            faults._gone(worker, 5.0)
            os.kill(held, signal.SIGCONT)
        thread.join(faults.TIMEOUT + 5)
        assert not thread.is_alive(), "the pipelined MSETs never got their replies"
        assert server.recovered()

        def states() -> list[str]:
            c = server.client()
            try:
                out = []
                for i, (a, b) in enumerate(pairs):
                    va, vb = c.get(a), c.get(b)
                    assert va == vb, f"MSET {i} half-applied: {va!r} and {vb!r}"
                    out.append(va)
                return out
            finally:
                c.close()

        found = states()
        assert found[0] == "new0"  # its line was written before the acceptor was held
        replies = result.get("replies")
        if replies is not None:
            for i, reply in enumerate(replies):
                want = "old" if isinstance(reply, redis.ResponseError) else f"new{i}"
                assert found[i] == want, f"MSET {i} answered {reply!r} but holds {found[i]!r}"
        server.crash()
        server.start()
        assert server.recovered()
        assert states() == found
        passed = True
    finally:
        if not passed:
            servers.pop(acceptors).cleanup()
