"""Counters kept apart (a running script's, see shardkv.worker.scripting):
aligned once, they count as their leader counts through every settings
change, and their slow log entries go into the leader's shared log, with
the next ids, only when drained into it."""

from __future__ import annotations

import random

from shardkv.runtime.cmdstats import ScriptTimes, Stats, apply_settings
from shardkv.runtime.slowlogfile import SlowLogFile


def _ids(log: SlowLogFile) -> list[int]:
    return [entry[0] for entry in log.get(-1)]


def test_settings_reach_the_counters_kept_apart():
    leader, apart = Stats(), Stats()
    leader.skip_local = True
    apart.align(leader)
    apply_settings(leader, {"slowlog-log-slower-than": "5", "slowlog-max-len": "3", "latency-tracking": "no"})
    assert (apart.slow_threshold_us, apart.slow_threshold_ns, apart.slow_max) == (5, 5000, 3)
    assert apart.tracking is False and apart.skip_local is True


def test_slow_log_entries_kept_apart_take_their_ids_when_drained():
    leader, apart = Stats(), Stats()
    leader.shared = log = SlowLogFile()
    try:
        apart.align(leader)
        apply_settings(leader, {"slowlog-log-slower-than": "0"})
        assert leader.slow([b"get", b"a"], 1) == 0
        assert leader.slow([b"get", b"b"], 1) == 1
        assert apart.slow([b"get", b"c"], 1) == -1  # kept apart
        apart.slow([b"get", b"d"], 1)
        assert _ids(log) == [1, 0]
        apart.drain(leader)  # the script ran to its end here
        assert _ids(log) == [3, 2, 1, 0]
        assert [e[3] for e in log.get(2)] == [[b"get", b"d"], [b"get", b"c"]]
        leader.slow([b"get", b"e"], 1)
        apart.slow([b"get", b"f"], 1)
        apart.drain(None)  # the script runs again across shards: dropped
        apart.slow([b"get", b"g"], 1)
        apart.drain(leader)
        assert _ids(log) == [5, 4, 3, 2, 1, 0]
        # Entries dropped apart past slowlog-max-len spend their ids.
        apply_settings(leader, {"slowlog-max-len": "2"})
        for key in (b"h", b"i", b"j"):
            apart.slow([b"get", key], 1)
        apart.drain(leader)
        assert _ids(log) == [8, 7]
        assert leader.slow([b"get", b"k"], 1) == 9
    finally:
        log.close()


def test_forget_takes_back_pending_and_folded_times():
    """Stats.forget takes back a script's journaled reads, whether their
    times are still pending or were folded into calls, time and histogram."""
    stats = Stats()
    row = stats.row_of([b"get", b"k"])
    stats.record_latency(row, 5)  # before the script
    journal = []
    for ns in range(1000, 1300):  # folded at 256 pending times
        stats.record_latency(row, ns)
        journal.append((row, ns))
    stats.forget(journal)
    stats.fold(row)
    assert row[:4] == [1, 5, 0, 0] and row[4] == {5: 1}


def test_take_back_removes_a_call_unless_the_row_was_reset():
    """Stats.take_back: an EXEC counted as it was read and refused later
    is no call (its pending time goes too, or the call alone once folded);
    after CONFIG RESETSTAT (a new row) nothing is taken back."""
    stats = Stats()
    row = stats._row("exec")
    stats.record_latency(row, 7)
    stats.record_latency(row, 9)
    stats.take_back("exec", row)
    stats.fold(row)
    assert row[:2] == [1, 7]
    stats.take_back("exec", row)  # folded: the call alone
    assert row[0] == 0
    stats.take_back("exec", row)  # never below zero
    assert row[0] == 0
    stats.record_latency(row, 5)
    stats.reset()
    stats.take_back("exec", row)  # an old row: the new one keeps its counts
    fresh = stats._row("exec")
    stats.record_latency(fresh, 3)
    stats.take_back("exec", row)
    stats.fold(fresh)
    assert fresh[:2] == [1, 3]


def test_fold_buckets_each_time_as_add_run_does():
    """fold's histogram (sorted runs, found by bisect) is add_run's, one
    time at a time: exact below 128 ns, times on a bucket's edges, equal
    times, and times of many bit lengths in one fold."""
    rng = random.Random(7)
    edges = [(h << s) - d for h in (64, 127, 128) for s in (1, 9) for d in (0, 1)]
    for case in range(300):
        times = [rng.randrange(0, 1 << rng.randrange(1, 48)) for _ in range(rng.randrange(1, 300))]
        times += edges[: case % 13]
        times += times[: case % 5]
        one_by_one, folded = Stats(), Stats()
        row = one_by_one._row("get")
        for ns in times:
            one_by_one.add_run(row, ns)
        folded_row = folded._row("get")
        folded_row[5].extend(times)
        folded.fold(folded_row)
        assert folded_row[4] == row[4]
        assert folded_row[1] == row[1] == sum(times)


def test_fold_of_a_script_row_counts_its_times_with_no_calls():
    """A script's row (ScriptTimes, a list subclass folded from a plain
    copy) folds its times into the command's row as add_run does, with no
    calls, and is left empty, the same list still in the row."""
    rng = random.Random(11)
    for _ in range(50):
        times = [rng.randrange(0, 1 << rng.randrange(1, 40)) for _ in range(rng.randrange(1, 300))]
        one_by_one, folded = Stats(), Stats()
        row = one_by_one._row("evalsha")
        for ns in times:
            one_by_one.add_run(row, ns)
        pending = ScriptTimes(folded, "evalsha")
        pending.extend(times)
        script_row = [0, 0, 0, 0, {}, pending]
        folded.fold(script_row)
        target = pending.target()
        assert target[4] == row[4]
        assert target[1] == sum(times) and target[0] == 0
        assert script_row[5] is pending and not pending


def test_rollback_takes_back_counts_in_place():
    """What an undone operation counted (Shard.run_foreign): pending and
    folded times, new rows, errors; each row stays the same list."""
    stats = Stats()
    get = stats._row("get")
    get[5] += [100, 200]
    stats.fold(get)
    get[5].append(300)
    stats.error("ERR x")
    saved = stats.checkpoint()
    before = stats.report()
    get[5] += [5] * 300
    stats.fold(get)
    stats._row("set")[5].append(7)
    stats.error("WRONGTYPE y")
    stats.rollback(saved)
    assert stats._row("get") is get
    after = stats.report()
    assert after[0]["get"] == before[0]["get"] and after[0]["set"][:4] == [0, 0, 0, 0]
    assert after[1:] == before[1:]
    stats.reset()
    stats._row("get")[5].append(1)
    stats.rollback(saved)  # (a CONFIG RESETSTAT since: nothing taken back)
    assert stats.report()[0]["get"][0] == 1
