"""A client served by another client's push runs its pipelined commands
before the pusher reads the push's reply (issue 22, several acceptors).

Client A sends ``BLPOP l 0`` and, pipelined behind it, ``LPUSH l2 z``; it
blocks.  Client B pushes to ``l`` and, once it has the reply, reads
``l2``.  Redis 7.0 serves A right after the push
(``handleClientsBlockedOnKeys`` after ``call`` in ``processCommand``),
which queues A for reprocessing (``unblockClient`` ->
``queueClientForReprocessing``); ``beforeSleep`` runs A's query buffer
(``processUnblockedClients``) before it writes any reply of that turn
(``handleClientsWithPendingWritesUsingThreads``, later in ``beforeSleep``).
So B, which reads l2 only after the push's reply, always finds ``[z]``.

With one acceptor the worker sends A's wake in the same write as B's
reply, so the acceptor reads both at once and runs A's LPUSH before B's
next command (before, it could read the reply alone and B's LRANGE with
the wake: ``[]`` in 24 rounds of 200 with l2 on the other shard).

With two acceptors, A on acceptor 0 and B on acceptor 1, acceptor 0 tells
A's shard that A has commands behind its BLPOP (an ``H`` frame); the push
that serves A then holds B's reply until acceptor 0 answers ``seen`` for
an empty ``O`` frame behind A's wake, which it does once A's LPUSH ran.
Acceptor 0 is stopped (SIGSTOP) while B pushes, for STOPPED_S, well under
the bus's 2 s (past which a stopped acceptor counts as nothing and the
reply goes): B's reply does not come meanwhile, which makes the order
certain; once acceptor 0 runs again B reads ``[z]``, as from redis-server
and from one acceptor.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Iterator

import pytest

from tests.support.acceptors import acceptor_pids, client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command
from tests.support.servers import ServerProcess, start_redis, start_shardkv
from tests.support.waits import wait_blocked

ROUNDS = 20
STOPPED_S = 0.3  # how long acceptor 0 stays stopped (the bus gives up on it after 2 s)


@pytest.fixture(scope="module", params=["redis", "K1", "K2"])
def server(request) -> Iterator[tuple[ServerProcess, int]]:
    if request.param == "redis":
        proc, k = start_redis(), 1
    else:
        k = int(request.param[1:])
        proc = start_shardkv(shards=2, acceptors=k)
    yield proc, k
    proc.stop()


def _replied_within(c: RespClient, seconds: float) -> bool:
    """Whether a reply's first bytes reach ``c`` within ``seconds``."""
    return bool(c.buf) or bool(select.select([c.sock], [], [], seconds)[0])


@pytest.mark.parametrize("same_shard", [True, False], ids=["same-shard", "other-shard"])
def test_served_clients_pipelined_commands_run_before_the_pushers_reply(server, same_shard) -> None:
    proc, k = server
    key = key_on(0, "l", shards=2)
    other = key_on(0 if same_shard else 1, "w", shards=2)
    stopped = acceptor_pids(proc)[0] if k == 2 else None
    a = client_on(proc.port, 0, k=k)
    b = client_on(proc.port, 1, k=k)
    try:
        for _ in range(ROUNDS):
            assert b.command("DEL", key, other) is not None
            a.sock.sendall(encode_command("BLPOP", key, 0) + encode_command("LPUSH", other, "z"))  # one write
            wait_blocked(b, 1)
            if stopped is not None:
                os.kill(stopped, signal.SIGSTOP)
            try:
                b.send("RPUSH", key, "a")
                # (K=2: held while acceptor 0, stopped, has not run A's LPUSH)
                early = _replied_within(b, STOPPED_S) if stopped is not None else False
            finally:
                if stopped is not None:
                    os.kill(stopped, signal.SIGCONT)
            assert not early, "the push's reply came before A's pipelined command ran"
            assert b.read_reply() == 1
            seen = b.command("LRANGE", other, 0, -1)
            assert a.read_reply() == [key.encode(), b"a"]
            assert a.read_reply() == 1
            assert seen == [b"z"]
    finally:
        a.close()
        b.close()
