"""maxclients across acceptors: the shared count (shardkv.runtime.clientcount)."""

from __future__ import annotations

import fcntl
import multiprocessing as mp
import os
import signal

import pytest

from shardkv.runtime.clientcount import ClientCounts


@pytest.fixture
def counts():
    c = ClientCounts(3)
    yield c
    c.close()


def test_admits_until_the_total_reaches_the_limit(counts) -> None:
    assert counts.admit(0, 0, 4) and counts.admit(1, 0, 4) and counts.admit(1, 1, 4)
    assert counts.total() == 3
    assert counts.admit(2, 0, 4)
    # Full: every acceptor is refused, whichever holds the clients.
    assert not counts.admit(0, 1, 4) and not counts.admit(2, 1, 4)
    assert counts.total() == 4
    counts.set(1, 1)  # one of acceptor 1's clients went away
    assert counts.admit(2, 1, 4)
    assert not counts.admit(0, 1, 4)
    # A smaller limit (CONFIG SET maxclients) keeps who is there, admits no one.
    assert not counts.admit(0, 1, 2)
    counts.set(2, 0)  # acceptor 2 restarted: its clients are gone
    assert counts.total() == 2
    assert counts.admit(0, 1, 3)


def _admit_in_child(counts: ClientCounts, n: int) -> None:
    for i in range(n):
        assert counts.admit(1, i, 100)


def _hold_the_lock(counts: ClientCounts, ready) -> None:
    counts._lock()
    ready.send(b"held")
    signal.pause()


def test_a_started_process_shares_the_counts(counts) -> None:
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_admit_in_child, args=(counts, 5))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert counts.slots[1] == 5 and counts.total() == 5
    assert counts.admit(0, 0, 6) and not counts.admit(0, 1, 6)


def test_an_acceptor_killed_holding_the_lock_does_not_keep_it(counts) -> None:
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_hold_the_lock, args=(counts, theirs))
    proc.start()
    assert ours.poll(60) and ours.recv() == b"held"
    with pytest.raises(OSError):  # held by the child
        fcntl.lockf(counts.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(60)
    fcntl.lockf(counts.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the kernel dropped it
    fcntl.lockf(counts.fd, fcntl.LOCK_UN)
    assert counts.admit(0, 0, 1)
