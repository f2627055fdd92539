"""The slow log every process shares (shardkv.runtime.slowlogfile): ids one
by one whoever logs, the newest ``max_len`` kept, names put in place,
RESET, and the bytes of dropped entries reclaimed."""

from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from shardkv.runtime.cmdstats import Stats
from shardkv.runtime.slowlogfile import SlowLogFile


@pytest.fixture
def log():
    shared = SlowLogFile()
    yield shared
    shared.close()


def _entry(n: int) -> tuple:
    return (1700000000, n, [b"get", b"k%d" % n], "", b"")


def _log_in_child(log: SlowLogFile, n: int) -> None:
    for i in range(n):
        log.push([_entry(i)], 10_000)


def test_entries_take_ids_one_by_one_and_the_newest_come_first(log) -> None:
    assert log.push([_entry(0)], 128) == 0
    assert log.push([_entry(1), _entry(2)], 128) == 1
    assert log.length() == 3
    assert log.get(-1) == [[2, 1700000000, 2, [b"get", b"k2"], b"", b""], *log.get(3)[1:]]
    assert [e[0] for e in log.get(2)] == [2, 1]
    assert [e[0] for e in log.get(10)] == [2, 1, 0]


def test_max_len_keeps_the_newest_and_ids_go_on(log) -> None:
    for i in range(5):
        log.push([_entry(i)], 3)
    assert [e[0] for e in log.get(-1)] == [4, 3, 2]
    log.trim(1)
    assert [e[0] for e in log.get(-1)] == [4] and log.length() == 1
    assert log.push([_entry(5)], 0) == 5  # logged, then dropped: its id is spent
    assert log.length() == 0
    assert log.push([_entry(6)], 3, skipped=2) == 8


def test_reset_empties_the_log_and_ids_go_on(log) -> None:
    log.push([_entry(0), _entry(1)], 128)
    log.reset()
    assert log.length() == 0 and log.get(-1) == []
    assert log.push([_entry(2)], 128) == 2


def test_a_name_replaces_the_entry_s_client_and_arguments(log) -> None:
    log.push([_entry(0), _entry(1)], 128)
    log.name([(0, [b"EVAL", b"return 1", b"0"], "127.0.0.1:5000", b"me")])
    assert log.get(-1)[1] == [0, 1700000000, 0, [b"EVAL", b"return 1", b"0"], b"127.0.0.1:5000", b"me"]
    assert log.get(-1)[0][3:] == [[b"get", b"k1"], b"", b""]
    log.name([(1, None, "127.0.0.1:5001", b"")])  # the entry's own arguments kept
    assert log.get(-1)[0][3:] == [[b"get", b"k1"], b"127.0.0.1:5001", b""]
    log.push([_entry(2)], 1)  # entry 0 dropped, and the name that follows it
    assert [e[0] for e in log.get(-1)] == [2] and log.length() == 1


def test_dropped_bytes_are_reclaimed(log) -> None:
    for i in range(20000):
        log.push([_entry(i)], 10)
    assert os.fstat(log.fd).st_size < 1 << 18
    assert [e[0] for e in log.get(-1)] == list(range(19999, 19989, -1))


def test_started_processes_share_one_log(log) -> None:
    """Two workers' entries at once: every id once, none skipped, in order."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_log_in_child, args=(log, 200)) for _ in range(2)]
    for proc in procs:
        proc.start()
    _log_in_child(log, 200)
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    assert [e[0] for e in log.get(-1)] == list(range(599, -1, -1))


def test_a_batch_s_entries_are_held_and_pushed_at_once_in_order(log) -> None:
    """Stats.hold: a batch's slow entries wait, then take consecutive ids in
    one push, after those logged before; those with a reply's place are
    told with their ids (for the acceptor to name their clients)."""
    stats = Stats()
    stats.shared = log
    stats.slow_threshold_us = 0
    named: list = []
    stats.on_named = named.append
    log.push([_entry(0)], 128)
    assert stats.hold() and not stats.hold()  # (one batch at a time)
    assert stats.slow([b"SET", b"a", b"1"], 5, place=0) == -1
    stats.slow([b"get", b"x"], 5, "?:0")  # a script's call: no place
    stats.slow([b"GET", b"a"], 5, place=2)
    assert log.length() == 1 and named == []
    stats.holding = False
    stats.flush_held()
    assert [(e[0], e[3]) for e in log.get(-1)] == [
        (3, [b"GET", b"a"]),
        (2, [b"get", b"x"]),
        (1, [b"SET", b"a", b"1"]),
        (0, [b"get", b"k0"]),
    ]
    assert named == [[(1, 0), (3, 2)]]
    assert stats.slow([b"PING"], 5) == 4  # not held: at once
