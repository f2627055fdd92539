"""SCRIPT FLUSH's numbers: one sequence for every acceptor (shardkv.runtime.scriptflushes)."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from shardkv.runtime.scriptflushes import ScriptFlushes


@pytest.fixture
def numbers():
    n = ScriptFlushes()
    yield n
    n.close()


def _flush_in_child(numbers: ScriptFlushes, n: int) -> None:
    for _ in range(n):
        numbers.next()


def test_each_flush_takes_the_next_number(numbers) -> None:
    assert numbers.current() == 0
    assert [numbers.next() for _ in range(3)] == [1, 2, 3]
    assert numbers.current() == 3


def test_started_processes_share_one_sequence(numbers) -> None:
    """Two acceptors' flushes at once: no number taken twice, none skipped."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_flush_in_child, args=(numbers, 200)) for _ in range(2)]
    for proc in procs:
        proc.start()
    mine = [numbers.next() for _ in range(200)]
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert numbers.current() == 600
    assert mine == sorted(set(mine))
