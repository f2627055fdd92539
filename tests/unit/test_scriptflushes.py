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


# -- The script cache's log -----------------------------------------------------

SHA_A, SHA_B = b"a" * 40, b"b" * 40


def _attached(numbers: ScriptFlushes) -> ScriptFlushes:
    """The same file as another process attaches it (by a duplicate of its descriptor)."""
    import os

    return ScriptFlushes(os.dup(numbers.fd))


def test_a_script_logged_by_one_acceptor_is_found_by_another(numbers) -> None:
    """An acceptor that does not have a script reads the log first
    (ScriptCache.find): what another logged before its reply is there,
    read once; one forgotten after is forgotten as the log is read on."""
    from shardkv.acceptor.scriptcache import ScriptCache

    other = _attached(numbers)
    try:
        mine, theirs = ScriptCache(), ScriptCache()
        mine.log, theirs.log = numbers, other
        mine.add(SHA_A, b"return 1", 0)
        mine.logged(SHA_A, b"return 1", 0)
        mine.logged(SHA_B, b"return 2", 0)
        assert theirs.find(SHA_A) == b"return 1"
        assert theirs.bodies == {SHA_A: b"return 1", SHA_B: b"return 2"}
        mine.logged(SHA_B, None, 0)  # a shard refused to compile it: forgotten
        theirs.catch_up()
        assert list(theirs.bodies) == [SHA_A]
        assert numbers.read(theirs.log_emptied, theirs.log_at)[0] == []  # nothing new past what it read
    finally:
        other.close()


def test_a_flush_empties_the_log_and_a_reader_starts_again(numbers) -> None:
    """SCRIPT FLUSH's number empties the log (every script in it was
    cached before the flush); a reader past its old end reads the new
    records from the start."""
    numbers.append(SHA_A, b"return 1", 0)
    records, emptied, at = numbers.read(0, 0)
    assert records == [(SHA_A, b"return 1", 0)]
    assert numbers.next() == 1
    numbers.append(SHA_B, b"return 2", 1)
    assert numbers.read(emptied, at)[0] == [(SHA_B, b"return 2", 1)]
    assert numbers.current() == 1


def test_a_script_logged_after_a_flush_it_was_cached_before_is_not(numbers) -> None:
    """An EVAL that read flush number 0 logs its script just after another
    acceptor's SCRIPT FLUSH took number 1 and emptied the log: the script
    was cached before the flush, which forgets it everywhere, so it does
    not go to the log, where an acceptor started after the flush (its
    cache applied no flush) would find it again (Redis: NOSCRIPT)."""
    from shardkv.acceptor.scriptcache import ScriptCache

    assert numbers.next() == 1
    numbers.append(SHA_A, b"return 1", 0)
    numbers.append(SHA_B, None, 0)
    assert numbers.read(0, 0)[0] == []
    restarted = ScriptCache()
    restarted.log = numbers
    assert restarted.find(SHA_A) is None


def test_a_flush_through_another_acceptor_is_applied_before_any_look(numbers) -> None:
    """SCRIPT FLUSH answers without waiting for the other acceptors (no
    bus message here): each applies the shared flush number before it
    looks at its cache (ScriptCache.fresh), a script it had cached and a
    shard it knew it to included; one cached after the flush, at its
    number, stays wherever the flush reaches it."""
    from shardkv.acceptor.scriptcache import ScriptCache

    other = _attached(numbers)
    try:
        mine, theirs = ScriptCache(), ScriptCache()
        mine.log, theirs.log = numbers, other
        theirs.add(SHA_A, b"return 1", 0)
        theirs.knows(0).add(SHA_A)
        theirs.settled.add(SHA_A)
        mine.flush(numbers.next())  # acceptor 0's SCRIPT FLUSH, +OK
        assert theirs.find(SHA_A) is None
        assert (theirs.last_flush, theirs.known, theirs.settled) == (1, {}, set())
        theirs.add(SHA_B, b"return 2", 1)  # cached after it: a late bus message keeps it
        theirs.fresh()
        assert theirs.bodies == {SHA_B: b"return 2"}
        assert numbers.next() == 2
        theirs.catch_up()  # INFO's figures catch up too
        assert theirs.bodies == {}
    finally:
        other.close()


def _hold_lock(numbers: ScriptFlushes, held, release) -> None:
    import fcntl

    fcntl.lockf(numbers.fd, fcntl.LOCK_EX)
    held.set()
    release.wait(30)


def test_reading_nothing_new_takes_no_lock(numbers) -> None:
    """An EVALSHA of an unknown script (clients send EVALSHA first on
    purpose) reads the log: with nothing logged since the last read it
    takes no lock, so it neither costs one per command nor waits for an
    acceptor stopped while it held it (SIGSTOP)."""
    import threading

    numbers.append(SHA_A, b"return 1", 0)
    _records, emptied, at = numbers.read(0, 0)
    ctx = mp.get_context("fork")
    held, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(numbers, held, release))
    holder.start()
    try:
        assert held.wait(30)
        answers: list = []
        reader = threading.Thread(target=lambda: answers.append(numbers.read(emptied, at)), daemon=True)
        reader.start()
        reader.join(10)
        assert answers == [([], emptied, at)]
    finally:
        release.set()
        holder.join(30)
    assert holder.exitcode == 0
