"""An acceptor started while the workers load (shardkv.supervisor): it
gets its ends of their pipes once they have, and none if the supervisor
stops first."""

from __future__ import annotations

import os
import signal
import socket
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pytest

from shardkv import supervisor
from shardkv.acceptor import main as acceptor_main


@pytest.fixture
def served(monkeypatch) -> list[tuple]:
    """The arguments each acceptor.serve call got (it serves nothing here)."""
    calls: list[tuple] = []
    monkeypatch.setattr(acceptor_main, "serve", lambda *args: calls.append(args))
    # _serve_acceptor ignores SIGINT, as an acceptor process does: not pytest.
    previous = signal.getsignal(signal.SIGINT)
    yield calls
    signal.signal(signal.SIGINT, previous)


def _workers(n: int) -> tuple[list[Connection], list[Connection]]:
    """n pipes: the workers' ends and the acceptor's."""
    pairs = [Pipe() for _ in range(n)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.mark.parametrize("shards", [1, 3, supervisor.PIPES_PER_MESSAGE + 5])
def test_the_pipes_come_once_the_workers_loaded(served, shards):
    ours, theirs = Pipe()
    workers, ends = _workers(shards)
    with socket.socket(fileno=os.dup(ours.fileno())) as sock:
        ours.close()
        # What Supervisor._send_pipes sends: the ends in order, in batches.
        for first in range(0, shards, supervisor.PIPES_PER_MESSAGE):
            batch = ends[first : first + supervisor.PIPES_PER_MESSAGE]
            socket.send_fds(sock, [supervisor.PIPES_MESSAGE], [end.fileno() for end in batch])
        supervisor._serve_acceptor(theirs, {"port": 1}, [None] * shards, "control", 0)
    ((cfg, got, *rest),) = served
    assert cfg == {"port": 1} and rest == ["control", 0]
    assert len(got) == shards
    for w, (worker, end) in enumerate(zip(workers, got, strict=True)):
        worker.send_bytes(b"shard %d" % w)
        assert end.recv_bytes() == b"shard %d" % w  # each end is its worker's, in order
    for conn in [*workers, *ends, *got]:
        conn.close()


def test_no_serving_if_the_supervisor_stops_first(served):
    ours, theirs = Pipe()
    workers, ends = _workers(2)
    with socket.socket(fileno=os.dup(ours.fileno())) as sock:
        ours.close()
        # (as if 2 batches: the second never comes)
        socket.send_fds(sock, [supervisor.PIPES_MESSAGE], [ends[0].fileno()])
    supervisor._serve_acceptor(theirs, {"port": 1}, [None, None, None], "control", 0)
    assert served == []
    for conn in [*workers, *ends]:
        conn.close()


def test_an_acceptor_started_later_gets_its_pipes_at_once(served):
    workers, ends = _workers(2)
    supervisor._serve_acceptor(None, {"port": 1}, ends, "control", 0)
    ((cfg, got, *rest),) = served
    assert got is ends
    for conn in [*workers, *ends]:
        conn.close()
