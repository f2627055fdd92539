"""Concurrent histories against the server, checked for linearizability and atomicity.

Several clients, each on its own connection and thread, run a bounded
random mix: SET/GET on a few registers, INCR/GET on counters, MSET/MGET
over overlapping groups of keys spread across shards, transfers between
accounts on different shards in MULTI/EXEC and in Lua scripts (which
shardkv runs as cross-shard operations, several clients' at once in one
group: see shardkv.acceptor.scripting.join_group), read back with MGET,
and scripts that INCR two counters on two shards.  The
history is then checked (see :mod:`tests.support.history`).  The same workload runs
against redis-server, which must pass the same checks.
"""

from __future__ import annotations

import random
import threading
import time

import pytest
import redis

from tests.support.history import (
    NotLinearizable,
    Op,
    check_atomic_reads,
    check_linearizable,
    check_totals,
)
from tests.support.placement import on_shards
from tests.support.servers import start_redis, start_shardkv

CLIENTS = 6
OPS_PER_CLIENT = 150
REGISTERS = on_shards(0, 1, 2, 3, prefix="reg")
COUNTERS = on_shards(1, 3, prefix="ctr")
# Three groups of four keys; each pair (A, B, C) is two keys on two shards,
# and each group writes two pairs, so every MSET spans shards and groups overlap.
A = on_shards(0, 1, prefix="ma")
B = on_shards(2, 3, prefix="mb")
C = on_shards(1, 2, prefix="mc")
GROUPS = [A + B, B + C, C + A]
ACCOUNTS = on_shards(0, 1, 2, 3, prefix="acct")
START_BALANCE = 1000
MOVE = "redis.call('DECRBY', KEYS[1], ARGV[1]) redis.call('INCRBY', KEYS[2], ARGV[1]) return 1"
INCR_BOTH = "return {redis.call('INCR', KEYS[1]), redis.call('INCR', KEYS[2])}"


# -- the checker itself ---------------------------------------------------------------------


def op(kind, value, result, start, end, client=0, keys=("k",)):
    return Op(client, kind, keys, value, result, start, end)


def test_a_sequential_register_history_linearizes():
    check_linearizable([op("set", "1", True, 0, 1), op("get", None, "1", 2, 3), op("set", "2", True, 4, 5)])


def test_overlapping_operations_may_take_either_order():
    # The GET overlaps both SETs, so it may see either value.
    for seen in ("1", "2"):
        check_linearizable(
            [
                op("set", "1", True, 0, 10),
                op("set", "2", True, 1, 11, client=1),
                op("get", None, seen, 2, 12, 2),
            ]
        )


def test_a_stale_read_is_caught():
    with pytest.raises(NotLinearizable):
        check_linearizable(
            [op("set", "1", True, 0, 1), op("set", "2", True, 2, 3), op("get", None, "1", 4, 5)]
        )


def test_counter_replies_must_be_consistent():
    check_linearizable([op("incr", None, 1, 0, 10), op("incr", None, 2, 1, 11, client=1)])
    with pytest.raises(NotLinearizable):
        check_linearizable([op("incr", None, 1, 0, 1), op("incr", None, 1, 2, 3, client=1)])


def test_a_partial_mset_is_caught():
    first = Op(0, "mset", ("a", "b"), "t1", True, 0, 1)
    second = Op(0, "mset", ("a", "b"), "t2", True, 2, 3)
    check_atomic_reads([first, second, Op(1, "mget", ("a", "b"), None, ["t2", "t2"], 4, 5)])
    with pytest.raises(AssertionError, match="partial MSET"):
        check_atomic_reads([first, second, Op(1, "mget", ("a", "b"), None, ["t2", "t1"], 4, 5)])


# -- the workload ---------------------------------------------------------------------------


def _connect(port: int, index: int, acceptors: int) -> redis.Redis:
    """A connection; with several acceptors, one that reached acceptor
    ``index % acceptors`` (acceptor i of K hands out CLIENT IDs i+1, i+1+K...),
    so that the clients are spread over all of them."""
    for _ in range(200):
        conn = redis.Redis(port=port, decode_responses=True, socket_timeout=30)
        if acceptors == 1 or (int(conn.client_id()) - 1) % acceptors == index % acceptors:
            return conn
        conn.close()
        time.sleep(0.02)  # that acceptor may not listen yet, just after start-up
    raise AssertionError(f"no connection reached acceptor {index % acceptors}")


def _client(
    port: int, index: int, seed: int, out: list[Op], errors: list[BaseException], acceptors: int = 1
) -> None:
    rng = random.Random(seed)
    conn = _connect(port, index, acceptors)
    clock = time.monotonic_ns
    try:
        for seq in range(OPS_PER_CLIENT):
            roll = rng.random()
            start = clock()
            if roll < 0.2:
                key = rng.choice(REGISTERS)
                if rng.random() < 0.5:
                    value = f"{index}:{seq}"
                    result = conn.set(key, value)
                    out.append(Op(index, "set", (key,), value, result, start, clock()))
                else:
                    result = conn.get(key)
                    out.append(Op(index, "get", (key,), None, result, start, clock()))
            elif roll < 0.32:
                key = rng.choice(COUNTERS)
                if rng.random() < 0.7:
                    result = conn.incr(key)
                    out.append(Op(index, "incr", (key,), None, result, start, clock()))
                else:
                    result = conn.get(key)
                    out.append(Op(index, "get", (key,), None, result, start, clock()))
            elif roll < 0.47:
                keys = tuple(rng.choice(GROUPS))
                token = f"m{index}:{seq}"
                result = conn.mset(dict.fromkeys(keys, token))
                out.append(Op(index, "mset", keys, token, result, start, clock()))
            elif roll < 0.6:
                keys = tuple(rng.choice(GROUPS))
                result = conn.mget(keys)
                out.append(Op(index, "mget", keys, None, result, start, clock()))
            elif roll < 0.72:
                src, dst = rng.sample(ACCOUNTS, 2)
                amount = rng.randint(1, 50)
                pipe = conn.pipeline(transaction=True)
                pipe.decrby(src, amount)
                pipe.incrby(dst, amount)
                pipe.execute()
            elif roll < 0.8:
                result = conn.mget(ACCOUNTS)
                out.append(Op(index, "bank", tuple(ACCOUNTS), None, result, start, clock()))
            elif roll < 0.9:
                src, dst = rng.sample(ACCOUNTS, 2)
                conn.eval(MOVE, 2, src, dst, rng.randint(1, 50))
            else:
                first, second = COUNTERS
                one, two = conn.eval(INCR_BOTH, 2, first, second)  # type: ignore[misc]
                end = clock()
                out.append(Op(index, "incr", (first,), None, one, start, end))
                out.append(Op(index, "incr", (second,), None, two, start, end))
    except BaseException as exc:  # reported by the test, not lost in a thread
        errors.append(exc)
    finally:
        conn.close()


def run_workload(port: int, seed: int, acceptors: int = 1) -> list[Op]:
    setup = redis.Redis(port=port, decode_responses=True)
    setup.mset(dict.fromkeys(ACCOUNTS, START_BALANCE))
    setup.close()
    ops: list[list[Op]] = [[] for _ in range(CLIENTS)]
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=_client, args=(port, i, seed * 100 + i, ops[i], errors, acceptors))
        for i in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors
    return [o for per_client in ops for o in per_client]


def check_history(history: list[Op], port: int) -> None:
    by_key: dict[str, list[Op]] = {}
    for o in history:
        if o.kind in ("set", "get", "incr"):
            by_key.setdefault(o.keys[0], []).append(o)
    for ops in by_key.values():
        check_linearizable(ops)
    check_atomic_reads(history)
    check_totals((o for o in history if o.kind == "bank"), START_BALANCE * len(ACCOUNTS))
    final = redis.Redis(port=port, decode_responses=True)
    try:
        check_totals(
            [Op(0, "bank", tuple(ACCOUNTS), None, final.mget(ACCOUNTS), 0, 0)], START_BALANCE * len(ACCOUNTS)
        )
        for key in COUNTERS:
            acked = sum(1 for o in history if o.kind == "incr" and o.keys[0] == key)
            assert int(final.get(key) or 0) == acked, key
    finally:
        final.close()


@pytest.mark.slow
@pytest.mark.parametrize("server", ["redis", "shardkv", "shardkv-2-acceptors"])
def test_concurrent_history_is_linearizable_and_atomic(server):
    """With two acceptors, half of the clients are on each (CLIENT ID's parity)."""
    acceptors = 2 if server == "shardkv-2-acceptors" else 1
    proc = start_redis() if server == "redis" else start_shardkv(shards=4, acceptors=acceptors)
    try:
        history = run_workload(proc.port, seed=1, acceptors=acceptors)
        check_history(history, proc.port)
    finally:
        proc.stop()
