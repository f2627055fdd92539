"""An invalidation for a REDIRECT target on another acceptor than its
tracking client, waiting for the writer's batch, when the shard's worker
dies before that batch's replies came (issue 22, client-side caching).

The tracking client's acceptor hands the shard's ``O`` frame out and asks
the writer's acceptor over the bus to put the invalidation before the
writer's reply, once that batch's ``R`` frame is in
(``ShardLink.when_batched``).  A worker that dies after its ``O`` frames
and before its ``R`` frame (the ``shared`` fault point) never sends it:
the writer gets ``-ERR shard unavailable`` (the change is not
acknowledged: it may or may not have been applied), and the target must
still hear of the change, at once, not once the worker is restarted
(the invalidation waited for the new pipe).  The supervisor is stopped
meanwhile, so that no restart comes.
"""

from __future__ import annotations

import os
import re
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from shardkv.protocol.resp import encode_command
from tests.support.acceptors import acceptor_of, client_on
from tests.support.placement import key_on
from tests.support.processes import until, worker_pid
from tests.support.rawsocket import read_through
from tests.support.servers import ServerProcess, start_shardkv

KEY = key_on(0, "lost", shards=2)
WAIT = 10.0  # seconds for what must happen (a bound, not a timing check)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    fault = tmp_path / "faults"
    fault.write_text("")
    proc = start_shardkv(shards=2, acceptors=2, env=dict(os.environ, SHARDKV_FAULT_FILE=str(fault)))
    yield proc, fault
    proc.stop()


def _resp3_on(port: int, index: int) -> tuple[socket.socket, int]:
    """A RESP3 connection on acceptor ``index``, and its client id."""
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        s.sendall(b"HELLO 3\r\nCLIENT ID\r\nECHO id\r\n")
        got = read_through(s, b"$2\r\nid\r\n")[0]
        cid = int(re.search(rb":(\d+)\r\n\$2\r\nid\r\n$", got).group(1))  # type: ignore[union-attr]
        if acceptor_of(cid) == index:
            return s, cid
        s.close()
    pytest.fail(f"no connection landed on acceptor {index}")


def _stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def test_an_invalidation_waiting_for_a_dead_workers_replies_goes_at_once(server) -> None:
    """x (acceptor 0) writes a key that t (acceptor 1) tracks, redirecting
    to x; its worker dies after the ``O`` frame: x gets the error and the
    invalidation, with no restart (it waited for the new pipe)."""
    proc, fault = server
    x, xid = _resp3_on(proc.port, 0)
    t = client_on(proc.port, 1)
    u, _ = _resp3_on(proc.port, 1)  # tracking too, to say when acceptor 1 handed the change out
    push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$%d\r\n%s\r\n" % (len(KEY), KEY.encode())
    supervisor_stopped = False
    try:
        assert t.command("CLIENT", "TRACKING", "on", "REDIRECT", xid) == b"OK"
        assert t.command("GET", KEY) is None
        u.sendall(encode_command([b"CLIENT", b"TRACKING", b"on"]) + encode_command([b"GET", KEY.encode()]))
        read_through(u, b"_\r\n")
        worker = worker_pid(proc, 0)
        fault.write_text("shared@0")
        x.sendall(encode_command([b"SET", KEY.encode(), b"v"]))
        assert until(lambda: _stopped(worker), WAIT), "the worker never reached its fault point"
        fault.write_text("")
        # Acceptor 1 handed the O frame out (u heard of it) and sent x's
        # invalidation on the bus; a PUBSUB NUMSUB through it asks acceptor
        # 0 behind it, so that acceptor 0 has it too once it is answered.
        assert read_through(u, push, WAIT)[0] == push
        u.sendall(encode_command([b"PUBSUB", b"NUMSUB", b"c"]))
        assert read_through(u, b"*2\r\n$1\r\nc\r\n:0\r\n", WAIT)[0] == b"*2\r\n$1\r\nc\r\n:0\r\n"
        os.kill(proc.proc.pid, signal.SIGSTOP)  # no restart hands a new pipe
        supervisor_stopped = True
        os.kill(worker, signal.SIGKILL)
        assert read_through(x, push, WAIT)[0] == b"-ERR shard unavailable\r\n" + push
    finally:
        if supervisor_stopped:
            os.kill(proc.proc.pid, signal.SIGCONT)
        x.close()
        t.close()
        u.close()
