"""Cross-shard scripts run in a group (one operation for several clients'
scripts, see shardkv.acceptor.scripting.join_group) stay all-or-nothing,
each of them, when a process dies while the group is held at a step of
the commit protocol; every client gets its own script's reply, or the
operation's error and nothing applied, and no acknowledged write is lost.

A first script, that reads a key of shard 0 and one of shard 2, is held on
its executor (shard 0) after its run (``ran``): the others, transfers
between shard 0 and shard 1, sent meanwhile, wait in the acceptor for its
decision (it holds shard 0) and then go as one group, which a fault point
holds at a step the first script does not pass (it writes nothing: no
prepare, no decision line); then the round kills a process and checks
every transfer's keys against its client's reply."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis

from tests.system import faults

pytestmark = pytest.mark.slow

MOVE = "redis.call('DECRBY', KEYS[1], 30) redis.call('INCRBY', KEYS[2], 30) return ARGV[1]"
READ = "return redis.call('GET', KEYS[1])"
GROUP = 4  # the scripts of the group
E, P, Q = 0, 1, 2  # the group's executor, its other shard, the first script's other shard

# (the fault point the group is held at, the process killed)
CASES = [
    (f"parked@{P}", "held"),
    (f"ran@{E}", "held"),
    (f"ran@{E}", "other"),
    (f"ran@{E}", "acceptor"),
    (f"prepared@{P}", "held"),
    (f"prepared@{P}", "acceptor"),
    ("committed", "executor"),
    ("committed", "held"),
    (f"decided@{P}", "held"),
]


@pytest.fixture(scope="module")
def server():
    server = faults.Server(3, 1)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


def _sent(server: faults.Server, names: set[str]) -> bool:
    """Have the clients named ``names`` all sent their EVAL (CLIENT LIST,
    which the acceptor answers by itself), within a bounded wait?"""
    probe = server.client()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen = {c["name"] for c in probe.client_list() if c["name"] in names and c["cmd"] == "eval"}
            if seen == names:
                return True
            time.sleep(0.02)
        return False
    finally:
        probe.close()


@pytest.mark.parametrize(("point", "victim"), CASES, ids=["-".join(c) for c in CASES])
def test_a_group_of_scripts_killed_at_a_step_leaves_each_all_or_nothing(server, point, victim):
    tag = f"g-{point}-{victim}"
    c = server.client()
    pairs = [(server.key_on(E, f"{tag}:x{i}:"), server.key_on(P, f"{tag}:y{i}:")) for i in range(GROUP)]
    for x, y in pairs:
        c.mset({x: 100, y: 100})
    results: list[dict] = [{} for _ in pairs]
    clients = []
    for i in range(GROUP):
        client = server.client()
        client.client_setname(f"{tag}-{i}")
        clients.append(client)

    def run(i: int) -> None:
        x, y = pairs[i]
        try:
            results[i]["reply"] = clients[i].eval(MOVE, 2, x, y, f"moved{i}")
        except redis.ResponseError as ex:
            results[i]["error"] = str(ex)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as ex:
            results[i]["dropped"] = repr(ex)

    first_reply: dict = {}
    reader = server.client()

    def first() -> None:
        first_reply["reply"] = reader.eval(
            READ, 2, server.key_on(E, f"{tag}:r"), server.key_on(Q, f"{tag}:q")
        )

    executor = server.pid(f"shard{E}")
    server.hold(f"ran@{E}")
    thread = threading.Thread(target=first, daemon=True)
    thread.start()
    assert faults._stopped(executor, 20), "the first script never reached its run"
    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(GROUP)]
    for t in threads:
        t.start()
    assert _sent(server, {f"{tag}-{i}" for i in range(GROUP)})
    server.hold(point)
    os.kill(executor, signal.SIGCONT)
    thread.join(faults.TIMEOUT)
    assert first_reply == {"reply": None}
    held = server.acceptor_pid(0) if point == "committed" else server.pid(f"shard{point.split('@')[1]}")
    assert faults._stopped(held, 20), "the group never reached the fault point"
    server.release()
    victim_pid = {
        "held": held,
        "executor": server.pid(f"shard{E}"),
        "other": server.pid(f"shard{P}"),
        "acceptor": server.acceptor_pid(0),
    }[victim]
    os.kill(victim_pid, signal.SIGKILL)
    if victim_pid != held:
        faults._gone(victim_pid, 5.0)
        time.sleep(0.1)
        os.kill(held, signal.SIGCONT)
    for t in threads:
        t.join(faults.TIMEOUT + 5)
        assert not t.is_alive(), "a client of the group got no reply"
    assert server.recovered()
    check = server.client()
    try:
        for i, ((x, y), result) in enumerate(zip(pairs, results, strict=True)):
            vx, vy = int(check.get(x) or 0), int(check.get(y) or 0)
            moved = (vx, vy) == (70, 130)
            assert moved or (vx, vy) == (100, 100), (i, vx, vy, result)  # never half of one
            if "reply" in result:
                assert result["reply"] == f"moved{i}" and moved, (i, result)  # its own reply, applied
            elif "error" in result:
                assert not moved, (i, result)  # an error: nothing of it applied
    finally:
        check.close()
        c.close()
        reader.close()
        for client in clients:
            client.close()
