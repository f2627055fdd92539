"""Counters kept apart (a running script's, see shardkv.worker.scripting):
aligned once, they count as their leader counts through every settings
change, and their slow log entries are numbered on from the leader's."""

from __future__ import annotations

from shardkv.runtime.cmdstats import Stats, apply_settings


def _ids(stats: Stats) -> list[int]:
    return [entry[1] for entry in stats.slowlog]


def test_settings_reach_the_counters_kept_apart():
    leader, apart = Stats(), Stats()
    leader.skip_local = True
    apart.align(leader)
    apply_settings(leader, {"slowlog-log-slower-than": "5", "slowlog-max-len": "3", "latency-tracking": "no"})
    assert (apart.slow_threshold_us, apart.slow_threshold_ns, apart.slow_max) == (5, 5000, 3)
    assert apart.tracking is False and apart.skip_local is True


def test_slow_log_ids_go_on_from_the_leader():
    leader, apart = Stats(), Stats()
    apart.align(leader)
    apply_settings(leader, {"slowlog-log-slower-than": "0"})
    leader.slow([b"get", b"a"], 1)
    leader.slow([b"get", b"b"], 1)  # ids 0, 1
    apart.slow([b"get", b"c"], 1)
    apart.slow([b"get", b"d"], 1)
    assert _ids(apart) == [3, 2]
    apart.drain(leader)  # the script ran to its end here
    assert _ids(leader) == [3, 2, 1, 0]
    leader.slow([b"get", b"e"], 1)
    apart.slow([b"get", b"f"], 1)
    assert _ids(apart) == [5]
    apart.drain(None)  # the script runs again across shards: dropped
    apart.slow([b"get", b"g"], 1)
    assert _ids(apart) == [5]
    apart.drain(leader)
    assert _ids(leader) == [5, 4, 3, 2, 1, 0] and leader.slow_seq == 6


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
