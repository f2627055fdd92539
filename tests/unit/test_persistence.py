"""Per-shard persistence, in process: the AOF, snapshots, rewrites, loading.

A shard runs commands with persistence on, then a *new* shard loads the
same directory, and the two must hold exactly the same keys, values and
deadlines.  Time is a FakeClock, so expiries are deterministic.  No
server processes here (see test_recovery.py for those); these tests are
shardkv-only, since they look at shardkv's own files.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import shutil
import time
from pathlib import Path

import pytest

from shardkv.protocol import wire
from shardkv.protocol.resp import Error
from shardkv.runtime import config
from shardkv.runtime.exitcodes import EXIT_AOF_FAILED
from shardkv.worker import wiring
from shardkv.worker.clock import FakeClock
from shardkv.worker.handlers import find
from shardkv.worker.persistence import aof, aofreader, aofwriter, files, reshard, rewrite, snapshot
from shardkv.worker.shard import Prepared, Shard
from shardkv.worker.transfer import export_key


def make_config(tmp_path, **overrides) -> dict:
    cfg = config.defaults()
    # appendfsync no: these tests read files back in the same process (fsync
    # is not what they test, and it is slow).
    cfg.update({"dir": str(tmp_path), "shards": 1, "appendonly": True, "appendfsync": "no"})
    cfg.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return cfg


def open_shard(cfg: dict, clock: FakeClock, index: int = 0) -> Shard:
    shard = Shard(index, cfg["shards"], clock, config=dict(cfg))
    shard.persistence.start()  # type: ignore[union-attr]
    return shard


def run(shard: Shard, *args) -> object:
    """One command as a batch would run it: tick, execute, commit."""
    shard.keyspace.tick()
    value = shard.execute([a if isinstance(a, bytes) else str(a).encode() for a in args])
    shard.persistence.commit()  # type: ignore[union-attr]
    return value


def state(shard: Shard) -> dict:
    ks = shard.keyspace
    ks.tick()
    return {key: export_key(ks, key) for key in sorted(ks.iter_keys())}


def wait_child(shard: Shard) -> None:
    p = shard.persistence
    for _ in range(500):
        p.cron()  # type: ignore[union-attr]
        if p.child is None:  # type: ignore[union-attr]
            return
        time.sleep(0.01)
    raise AssertionError("the background child did not finish")


def close(shard: Shard) -> None:
    p = shard.persistence
    if p is not None and p.aof is not None:
        p.aof.close()
        p.aof = None


# -- random workloads, one per data type -------------------------------------------

KEYS = [b"k1", b"k2", b"k3", b"{t}a", b"{t}b"]
MEMBERS = [b"m1", b"m2", b"m3", b"m4", b"m5", b"m6"]


def _strings(r: random.Random) -> list:
    k, v = r.choice(KEYS), str(r.randint(0, 50)).encode()
    return r.choice(
        [
            [b"SET", k, v],
            [b"SET", k, v, b"EX", b"%d" % r.randint(1, 5)],
            [b"SET", k, v, b"PX", b"%d" % r.randint(1, 3000), b"NX"],
            [b"SET", k, v, b"XX", b"GET"],
            [b"SET", k, v, b"KEEPTTL"],
            [b"SETEX", k, b"%d" % r.randint(1, 4), v],
            [b"PSETEX", k, b"%d" % r.randint(1, 4000), v],
            [b"SETNX", k, v],
            [b"APPEND", k, v],
            [b"INCR", k],
            [b"INCRBY", k, b"%d" % r.randint(-5, 5)],
            [b"INCRBYFLOAT", k, b"%.3f" % r.uniform(-2, 2)],
            [b"SETRANGE", k, b"%d" % r.randint(0, 6), v],
            [b"GETDEL", k],
            [b"GETSET", k, v],
            [b"GETEX", k, b"EX", b"%d" % r.randint(1, 4)],
            [b"GETEX", k, b"PERSIST"],
            [b"MSET", b"{t}a", v, b"{t}b", v],
            [b"SETBIT", k, b"%d" % r.randint(0, 40), b"%d" % r.randint(0, 1)],
            [b"BITOP", r.choice([b"AND", b"OR", b"XOR"]), b"{t}a", b"{t}a", b"{t}b"],
            [b"BITOP", b"NOT", b"{t}b", b"{t}a"],
            [b"BITFIELD", k, b"OVERFLOW", r.choice([b"WRAP", b"SAT", b"FAIL"]), b"INCRBY", b"i5", b"#1", v],
        ]
    )


def _keyspace(r: random.Random) -> list:
    k, k2 = r.choice(KEYS), r.choice(KEYS)
    return r.choice(
        [
            [b"DEL", k],
            [b"EXPIRE", k, b"%d" % r.randint(1, 4)],
            [b"PEXPIRE", k, b"%d" % r.randint(-10, 4000), r.choice([b"NX", b"XX", b"GT", b"LT"])],
            [b"EXPIREAT", k, b"%d" % (1_700_000_000 + r.randint(-5, 5))],
            [b"PERSIST", k],
            [b"RENAME", k, k2],
            [b"COPY", k, k2, b"REPLACE"],
        ]
    )


def _hashes(r: random.Random) -> list:
    k, f, v = r.choice(KEYS), r.choice(MEMBERS), str(r.randint(0, 9)).encode()
    return r.choice(
        [
            [b"HSET", k, f, v, r.choice(MEMBERS), v],
            [b"HSETNX", k, f, v],
            [b"HDEL", k, f],
            [b"HINCRBY", k, f, b"%d" % r.randint(-3, 3)],
            [b"HINCRBYFLOAT", k, f, b"%.2f" % r.uniform(-1, 1)],
        ]
    )


def _lists(r: random.Random) -> list:
    k, k2, v = r.choice(KEYS), r.choice(KEYS), r.choice(MEMBERS)
    return r.choice(
        [
            [b"RPUSH", k, v, r.choice(MEMBERS)],
            [b"LPUSH", k, v],
            [b"LPOP", k],
            [b"RPOP", k, b"2"],
            [b"LSET", k, b"0", v],
            [b"LINSERT", k, b"BEFORE", v, r.choice(MEMBERS)],
            [b"LREM", k, b"1", v],
            [b"LTRIM", k, b"0", b"3"],
            [b"LMOVE", k, k2, b"LEFT", b"RIGHT"],
            [b"RPOPLPUSH", k, k2],
            [b"LMPOP", b"2", k, k2, b"LEFT", b"COUNT", b"2"],
        ]
    )


def _sets(r: random.Random) -> list:
    k, k2, m = r.choice(KEYS), r.choice(KEYS), r.choice(MEMBERS)
    return r.choice(
        [
            [b"SADD", k, m, r.choice(MEMBERS)],
            [b"SREM", k, m],
            [b"SPOP", k],
            [b"SPOP", k, b"2"],
            [b"SMOVE", k, k2, m],
            [b"SUNIONSTORE", k, k, k2],
            [b"SINTERSTORE", k2, k, k2],
            [b"SDIFFSTORE", k, k2, k],
        ]
    )


def _zsets(r: random.Random) -> list:
    k, k2, m = r.choice(KEYS), r.choice(KEYS), r.choice(MEMBERS)
    score = r.choice([b"%d" % r.randint(-3, 3), b"%.4f" % r.uniform(-5, 5), b"inf", b"-inf"])
    return r.choice(
        [
            [b"ZADD", k, score, m],
            [b"ZADD", k, b"GT", b"CH", score, m],
            [b"ZINCRBY", k, b"%.3f" % r.uniform(-2, 2), m],
            [b"ZREM", k, m],
            [b"ZPOPMIN", k],
            [b"ZPOPMAX", k, b"2"],
            [b"ZREMRANGEBYSCORE", k, b"-1", b"1"],
            [b"ZUNIONSTORE", k, b"2", k, k2, b"WEIGHTS", b"1.5", b"2"],
            [b"ZRANGESTORE", k2, k, b"0", b"2"],
            [b"ZMPOP", b"2", k, k2, b"MIN", b"COUNT", b"2"],
        ]
    )


def _hlls(r: random.Random) -> list:
    k, k2 = r.choice(KEYS), r.choice(KEYS)
    elements = [b"%d" % r.randrange(5000) for _ in range(r.choice([1, 5, 40]))]
    return r.choice(
        [
            [b"PFADD", k, *elements],
            [b"PFCOUNT", k],  # writes the cached cardinality
            [b"PFCOUNT", k, k2],
            [b"PFMERGE", k, k2],
            [b"PFDEBUG", b"TODENSE", k],
        ]
    )


def _geos(r: random.Random) -> list:
    k, k2, m = r.choice(KEYS), r.choice(KEYS), r.choice(MEMBERS)
    lon, lat = b"%.6f" % r.uniform(10, 11), b"%.6f" % r.uniform(40, 41)
    return r.choice(
        [
            [b"GEOADD", k, lon, lat, m],
            [b"GEOADD", k, b"XX", b"CH", lon, lat, m],
            [b"GEOSEARCHSTORE", k2, k, b"FROMLONLAT", lon, lat, b"BYRADIUS", b"50", b"km", b"STOREDIST"],
            [b"GEORADIUS", k, lon, lat, b"80", b"km", b"COUNT", b"3", b"STORE", k2],
        ]
    )


def _sorts(r: random.Random) -> list:
    k, k2, m = r.choice(KEYS), r.choice(KEYS), r.choice(MEMBERS)
    return r.choice(
        [
            [b"RPUSH", k, b"%d" % r.randrange(-9, 9), m],
            [b"SET", b"w_" + m, b"%d" % r.randrange(9)],
            [b"SORT", k, b"ALPHA", b"STORE", k2],
            [b"SORT", k, b"BY", b"w_*", b"ALPHA", b"LIMIT", b"0", b"3", b"GET", b"#", b"STORE", k2],
        ]
    )


WORKLOADS = {
    "string": (_strings, b"set"),
    "hyperloglog": (_hlls, b"pfadd"),
    "geo": (_geos, b"geoadd"),
    "sort": (_sorts, b"sort"),
    "hash": (_hashes, b"hset"),
    "list": (_lists, b"rpush"),
    "set": (_sets, b"sadd"),
    "zset": (_zsets, b"zadd"),
}
# The types whose commands exist in this tree (others are still being written).
wiring.install()  # as a shard does when it starts: the handlers, for find()
PRESENT = [name for name, (_, probe) in WORKLOADS.items() if find(probe) is not None]


def drive(shard: Shard, clock: FakeClock, r: random.Random, kinds: list[str], n: int) -> None:
    gens = [WORKLOADS[k][0] for k in kinds] + [_keyspace]
    for _ in range(n):
        gen = r.choice(gens)
        args = gen(r)
        if find(args[0]) is not None:
            run(shard, *args)
        if r.random() < 0.3:
            clock.advance(r.randint(0, 900))


@pytest.mark.parametrize("kind", PRESENT)
def test_aof_replay_gives_the_same_data(tmp_path, kind):
    clock = FakeClock()
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    r = random.Random(kind)
    drive(shard, clock, r, [kind, "string"], 600)
    expected = state(shard)
    assert expected, "the workload left no keys"
    close(shard)
    again = open_shard(cfg, clock)
    assert state(again) == expected
    # ...and the log it goes on with still replays to the same data.
    drive(again, clock, r, [kind], 200)
    expected = state(again)
    close(again)
    assert state(open_shard(cfg, clock)) == expected


@pytest.mark.parametrize("kind", PRESENT)
def test_rewrite_and_snapshot_give_the_same_data(tmp_path, kind):
    clock = FakeClock()
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    r = random.Random(kind + "rewrite")
    drive(shard, clock, r, [kind], 300)
    assert run(shard, "BGREWRITEAOF") == "Background append only file rewriting started"
    drive(shard, clock, r, [kind], 100)  # written while the child writes the base
    wait_child(shard)
    drive(shard, clock, r, [kind], 100)
    assert run(shard, "SAVE") == "OK"
    expected = state(shard)
    close(shard)
    manifest = files.read_manifest(shard.persistence.files.manifest)  # type: ignore[union-attr]
    assert manifest.base is not None and len(manifest.incrs) == 1
    assert state(open_shard(cfg, clock)) == expected  # base + incr
    snap = dict(cfg, appendonly=False)
    assert state(open_shard(snap, clock)) == expected  # the snapshot alone


def test_log_holds_what_the_shard_did(tmp_path):
    clock = FakeClock(1_700_000_000_000)
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    run(shard, "SET", "a", "1", "EX", "10")
    run(shard, "SET", "plain", "x")
    run(shard, "INCRBYFLOAT", "f", "1.5")
    run(shard, "EXPIRE", "plain", "100")
    run(shard, "SET", "nx", "1", "NX")
    run(shard, "SET", "nx", "2", "NX")  # did nothing: not logged
    run(shard, "EXPIRE", "missing", "5")  # did nothing: not logged
    if find(b"sadd") is not None:
        run(shard, "SADD", "s", "m1", "m2", "m3")
        popped = run(shard, "SPOP", "s")
    records = [args for _, args in aofreader.read_records(shard.persistence.aof.path)]  # type: ignore[union-attr]
    assert records[:5] == [
        [b"SET", b"a", b"1", b"PXAT", b"1700000010000"],
        [b"SET", b"plain", b"x"],
        [b"SET", b"f", b"1.5", b"KEEPTTL"],
        [b"PEXPIREAT", b"plain", b"1700000100000"],
        [b"SET", b"nx", b"1", b"NX"],
    ]
    if find(b"sadd") is not None:
        assert records[5:] == [[b"SADD", b"s", b"m1", b"m2", b"m3"], [b"SREM", b"s", popped]]
    else:
        assert records[5:] == []


def test_writes_that_change_nothing_are_not_logged(tmp_path):
    """A write that finds nothing to change (ks.unchanged, as Redis's
    server.dirty stays) leaves no record, and the next write that does is
    logged: the log replays to the same data."""
    clock = FakeClock(1_700_000_000_000)
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    writes = [
        ("RPUSH", "l", "a", "b"),
        ("SADD", "s", "a"),
        ("ZADD", "z", "1", "a"),
        ("HSET", "h", "f", "v"),
        ("SET", "k", "v"),
    ]
    nothing = [
        ("LTRIM", "l", "0", "-1"),
        ("LINSERT", "l", "BEFORE", "x", "y"),
        ("LPUSHX", "none", "a"),
        ("LPOP", "none"),
        ("SMOVE", "s", "s2", "x"),
        ("SPOP", "none"),
        ("SINTERSTORE", "d", "s", "none"),
        ("ZREMRANGEBYSCORE", "z", "5", "9"),
        ("ZPOPMIN", "none"),
        ("ZUNIONSTORE", "d", "1", "none"),
        ("HSETNX", "h", "f", "w"),
        ("SETNX", "k", "w"),
        ("GETDEL", "none"),
        ("GETEX", "k"),
        ("MOVE", "none", "1"),
        ("COPY", "none", "c"),
        ("SET", "k", "w", "NX"),
        ("SADD", "s", "a"),
        ("ZADD", "z", "1", "a"),
        ("SETRANGE", "l", "0", ""),  # WRONGTYPE: an error leaves no flag behind
    ]
    logged = []
    for write, noop in zip(writes * 4, nothing, strict=True):
        run(shard, *noop)
        if write[0] in ("SADD", "ZADD") and len(logged) >= 5:
            # A new member each round: one held already is no change.
            write = (*write[:-1], write[-1] + str(len(logged)))
        run(shard, *write)
        logged.append([a.encode() for a in write])
    records = [args for _, args in aofreader.read_records(shard.persistence.aof.path)]  # type: ignore[union-attr]
    assert records == logged
    expected = state(shard)
    close(shard)
    assert state(open_shard(cfg, clock)) == expected


def test_expired_keys_are_not_resurrected(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    run(shard, "SET", "gone", "v", "PX", "100")
    run(shard, "SET", "old", "v", "PX", "100")
    clock.advance(200)
    # "old" expired; APPEND creates a new key, with no TTL (the DEL of the
    # expiry is logged before it, so replay does the same).
    assert run(shard, "APPEND", "old", "x") == 1
    close(shard)
    clock.advance(10_000)
    again = open_shard(cfg, clock)
    assert state(again) == {b"old": ("string", b"x", None)}


def test_active_expiry_is_logged_as_del(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    run(shard, "SET", "k", "v", "PX", "50")
    clock.advance(100)
    for _ in range(100):  # the cycle walks the slots a few hundred at a time
        if shard.sweeper.cycle(1.0):
            break
    shard.persistence.cron()  # type: ignore[union-attr]
    records = [args for _, args in aofreader.read_records(shard.persistence.aof.path)]  # type: ignore[union-attr]
    assert records[-1] == [b"DEL", b"k"]


def _two_shards(tmp_path) -> tuple:
    clock = FakeClock()
    cfg = make_config(tmp_path, shards=2)
    s0 = Shard(0, 2, clock, config=dict(cfg))
    s1 = Shard(1, 2, clock, config=dict(cfg))
    s0.persistence.start()  # type: ignore[union-attr]
    s1.persistence.start()  # type: ignore[union-attr]
    router = __import__("shardkv.protocol.router", fromlist=["Router"]).Router(2)
    own = next(k for k in (b"a", b"b", b"c", b"d", b"e") if router.shard_of(k) == 0)
    foreign = next(k for k in (b"a", b"b", b"c", b"d", b"e") if router.shard_of(k) == 1)
    run(s0, "SET", own, "v", "PX", "100000")
    run(s1, "SET", foreign, "w")
    return clock, cfg, s0, s1, own, foreign


def _prepare_rename(s0, s1, own, foreign, op: int = 7):
    """Steps 2 and 3 of the commit protocol for RENAME own foreign."""
    foreign_state = export_key(s1.keyspace, foreign)
    ran = s0.run_foreign(wire.Run(op, {foreign: foreign_state}, [[b"RENAME", own, foreign]], 0, False, [own]))
    assert ran.bodies == [b"+OK\r\n"] and ran.own == wire.PREPARED and list(ran.after) == [foreign]
    s1.prepare_states(op, ran.after)
    s0.persistence.commit()  # type: ignore[union-attr]
    s1.persistence.commit()  # type: ignore[union-attr]
    return ran


def test_cross_shard_results_are_logged_as_states(tmp_path):
    # The executor of a cross-shard RENAME logs its own keys' states and not
    # the command (which names the other shard's key); each shard logs a
    # prepare record of its states, then the commit.
    clock, cfg, s0, s1, own, foreign = _two_shards(tmp_path)
    _prepare_rename(s0, s1, own, foreign)
    for shard in (s0, s1):
        shard.decide(7, True)
        shard.persistence.commit()  # type: ignore[union-attr]
    expect0, expect1 = state(s0), state(s1)
    assert expect0 == {} and list(expect1) == [foreign]
    records = [args for _, args in aofreader.read_records(s0.persistence.aof.path)]  # type: ignore[union-attr]
    assert [b"RENAME", own, foreign] not in records
    assert [wire.Verb.XCOMMIT, b"7"] in records
    close(s0)
    close(s1)
    assert state(open_shard(cfg, clock, 0)) == expect0
    assert state(open_shard(cfg, clock, 1)) == expect1


def test_abort_after_a_save_takes_back_no_more_than_the_count(tmp_path):
    # The executor counted the RENAME's change in dirty when it prepared it;
    # a SAVE then reset the count, and a write after it counts 1; the abort
    # takes nothing back: as if the RENAME had never run, Redis's
    # server.dirty is the one write since the save (before, the take-back
    # took it, or once went below 0).
    clock, cfg, s0, s1, own, foreign = _two_shards(tmp_path)
    _prepare_rename(s0, s1, own, foreign)
    assert s0.persistence.dirty > 0  # type: ignore[union-attr]
    s0.persistence.save()  # type: ignore[union-attr]
    run(s0, "SET", b"later" + own, "1")
    for shard in (s0, s1):
        shard.decide(7, False)
        shard.persistence.commit()  # type: ignore[union-attr]
    assert s0.persistence.dirty == 1  # type: ignore[union-attr]
    close(s0)
    close(s1)


@pytest.mark.parametrize("mode", ["save", "nosave"])
def test_an_abort_while_a_stop_holds_the_shard_is_kept_if_the_stop_is_undone(tmp_path, mode):
    # An operation in doubt (its acceptor died) is resolved, undone, by an
    # acceptor started again while a stop holds the shard shut; the stop is
    # then undone: the figures it puts back are without the operation, as
    # if it had never run (before, they held its count, and nothing took it
    # back again: 2, not the SET's 1).
    clock, cfg, s0, s1, own, foreign = _two_shards(tmp_path)
    p = s0.persistence
    _prepare_rename(s0, s1, own, foreign)
    assert p.dirty == 2  # type: ignore[union-attr]  # the SET and the RENAME
    assert run(s0, "__shutdown", mode) == "OK"
    s0.decide(7, False)
    assert run(s0, "__shutdown", "abort") == "OK"
    assert p.dirty == 1 and p.counted == {}  # type: ignore[union-attr]
    s1.decide(7, False)
    close(s0)
    close(s1)


@pytest.mark.parametrize("abort_before_fork", [False, True])
def test_abort_while_a_background_save_runs_is_taken_back_once(tmp_path, abort_before_fork):
    # Counted before a BGSAVE's fork, the RENAME's change is in what the
    # save takes off when it ends: an abort meanwhile takes it from both,
    # and the count is the writes after the fork, as if it had never run
    # (before, the save's end took it a second time, stopping at 0).
    # Aborted before the fork, it is in neither.
    clock, cfg, s0, s1, own, foreign = _two_shards(tmp_path)
    p = s0.persistence
    _prepare_rename(s0, s1, own, foreign)
    run(s0, "SET", b"before" + own, "1")
    if abort_before_fork:
        s0.decide(7, False)
    p.bgsave()  # type: ignore[union-attr]
    if not abort_before_fork:
        s0.decide(7, False)
    run(s0, "SET", b"after" + own, "1")
    wait_child(s0)
    assert p.last_bgsave_ok and p.dirty == 1  # type: ignore[union-attr]
    s1.decide(7, False)
    close(s0)
    close(s1)


def test_prepared_operation_without_outcome_is_in_doubt_after_restart(tmp_path):
    # Both shards prepared, then both died: at restart neither applies the
    # operation until told its outcome; commit applies it, abort drops it.
    clock, cfg, s0, s1, own, foreign = _two_shards(tmp_path)
    before0, before1 = state(s0), state(s1)
    _prepare_rename(s0, s1, own, foreign)
    close(s0)
    close(s1)
    r0, r1 = open_shard(cfg, clock, 0), open_shard(cfg, clock, 1)
    assert r0.persistence.in_doubt and r1.persistence.in_doubt  # type: ignore[union-attr]
    assert state(r0) == before0 and state(r1) == before1
    # What process.serve does with them: prepared, not applied.
    for shard in (r0, r1):
        for op, (db, states) in shard.persistence.in_doubt.items():  # type: ignore[union-attr]
            shard.prepared[op] = Prepared(states, None, db)
    r0.decide(7, True)
    r1.decide(7, False)  # (mixed only to test each way on its own)
    for shard in (r0, r1):
        shard.persistence.commit()  # type: ignore[union-attr]
    assert state(r0) == {} and state(r1) == before1
    close(r0)
    close(r1)
    assert state(open_shard(cfg, clock, 0)) == {}
    assert state(open_shard(cfg, clock, 1)) == before1


def test_aborted_operation_is_undone_in_memory_and_on_disk(tmp_path):
    clock, cfg, s0, s1, own, foreign = _two_shards(tmp_path)
    before0, before1 = state(s0), state(s1)
    _prepare_rename(s0, s1, own, foreign)
    assert state(s0) == {}  # applied in memory while parked
    for shard in (s0, s1):
        shard.decide(7, False)
        shard.persistence.commit()  # type: ignore[union-attr]
    assert state(s0) == before0 and state(s1) == before1
    close(s0)
    close(s1)
    assert state(open_shard(cfg, clock, 0)) == before0
    assert state(open_shard(cfg, clock, 1)) == before1


@pytest.mark.parametrize("commit", [True, False])
def test_a_cross_shard_write_counts_once_and_makes_every_shard_it_changed_save(tmp_path, commit):
    # Redis counts a RENAME as one change (dirty): the shard that ran it
    # counts it, the one that took the renamed key counts it as unsaved, so
    # that its save rules and SHUTDOWN still save it.  An abort takes the
    # count back.
    clock, cfg, s0, s1, own, foreign = _two_shards(tmp_path)
    p0, p1 = s0.persistence, s1.persistence
    assert p0 is not None and p1 is not None
    p0.dirty = p1.dirty = 0
    _prepare_rename(s0, s1, own, foreign)
    assert (p0.dirty, p1.dirty, p1.unsaved) == (1, 0, 1)
    p1.rules = [(1, 1)]
    p1.lastsave -= 5
    assert p1._save_due()
    for shard in (s0, s1):
        shard.decide(7, commit)
    assert (p0.dirty, p1.dirty) == ((1, 0) if commit else (0, 0))
    p1.save()
    assert (p1.dirty, p1.unsaved) == (0, 0) and not p1._save_due()
    close(s0)
    close(s1)


# -- damaged files ------------------------------------------------------------------


def _aof_with_data(tmp_path) -> tuple[dict, FakeClock, str, dict]:
    clock = FakeClock()
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    for i in range(20):
        run(shard, "SET", f"k{i}", f"v{i}")
    expected = state(shard)
    path = shard.persistence.aof.path  # type: ignore[union-attr]
    close(shard)
    return cfg, clock, path, expected


@pytest.mark.parametrize("cut", [1, 5, 17, "zeros"])
def test_torn_last_record_is_cut_off_with_a_warning(tmp_path, caplog, cut):
    cfg, clock, path, expected = _aof_with_data(tmp_path)
    good = os.path.getsize(path)
    with open(path, "ab") as f:
        record = aof.encode([b"SET", b"torn", b"value"])
        f.write(b"\0" * 4096 if cut == "zeros" else record[:cut])
    again = open_shard(cfg, clock)
    assert state(again) == expected
    assert os.path.getsize(path) == good
    assert "short read while loading the AOF file" in caplog.text and path in caplog.text
    # ...and it goes on appending to a clean file.
    run(again, "SET", "after", "1")
    close(again)
    assert state(open_shard(cfg, clock))[b"after"] == ("string", b"1", None)


def test_torn_transaction_is_dropped_whole(tmp_path):
    cfg, clock, path, expected = _aof_with_data(tmp_path)
    good = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(aof.MULTI + aof.encode([b"DEL", b"k1"]) + aof.encode([b"SET", b"k2", b"x"])[:9])
    assert state(open_shard(cfg, clock)) == expected
    assert os.path.getsize(path) == good


def test_torn_tail_refused_without_aof_load_truncated(tmp_path):
    cfg, clock, path, _ = _aof_with_data(tmp_path)
    with open(path, "ab") as f:
        f.write(b"*3\r\n$3\r\nSET")
    with pytest.raises(files.LoadError, match="offset"):
        open_shard(dict(cfg, **{"aof-load-truncated": False}), clock)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d, at: d[:at] + b"#" + d[at + 1 :],  # a broken RESP header
        lambda d, at: d[:at] + aof.encode([b"NOSUCHCOMMAND", b"x"]) + d[at:],  # a command nobody knows
    ],
    ids=["bad-resp", "unknown-command"],
)
def test_corrupt_record_in_the_middle_stops_loading(tmp_path, damage):
    cfg, clock, path, _ = _aof_with_data(tmp_path)
    data = open(path, "rb").read()
    at = data.index(b"*3\r\n", len(data) // 2)  # a record well inside the file
    open(path, "wb").write(damage(data, at))
    with pytest.raises(files.LoadError) as info:
        open_shard(cfg, clock)
    assert f"{path} at offset {at}" in str(info.value)


@pytest.mark.parametrize(
    "record, name",
    [([b"SET"], "set"), ([b"SET", b"k"], "set"), ([b"incr"], "incr"), ([b"EXPIRE", b"k"], "expire")],
)
def test_record_with_a_wrong_argument_count_stops_loading_with_a_clear_message(tmp_path, record, name):
    # redis-server 7.0.15 crashes (SIGSEGV) on such a record; shardkv
    # refuses to start, in words, not with a Python exception.
    cfg, clock, path, _ = _aof_with_data(tmp_path)
    at = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(aof.encode(record) + aof.encode([b"SET", b"after", b"1"]))
    with pytest.raises(files.LoadError) as info:
        open_shard(cfg, clock)
    message = str(info.value)
    assert message == (
        f"Bad file format reading the append only file {path} at offset {at}: "
        f"wrong number of arguments for '{name}' command"
    )


def test_corrupt_snapshot_names_file_and_offset(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False)
    shard = open_shard(cfg, clock)
    for i in range(50):
        run(shard, "SET", f"k{i}", "v" * 20)
    run(shard, "SAVE")
    path = shard.persistence.files.snapshot  # type: ignore[union-attr]
    good = open(path, "rb").read()
    data = bytearray(good)
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(files.LoadError, match="checksum mismatch") as info:
        open_shard(cfg, clock)
    assert path in str(info.value) and "offset" in str(info.value)
    open(path, "wb").write(good[:-3])  # and a truncated one
    with pytest.raises(files.LoadError, match="truncated"):
        open_shard(cfg, clock)


@pytest.mark.parametrize("delay", ["-1000", "-1", "1"])
def test_save_with_rdb_key_save_delay_saves(tmp_path, delay):
    # Redis's debugDelay takes a negative delay as a fraction of a
    # microsecond (SAVE and BGSAVE succeed); shardkv's sleep raised.
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False)
    cfg["rdb-key-save-delay"] = int(delay)
    shard = open_shard(cfg, clock)
    run(shard, "SET", "k", "v")
    assert run(shard, "SAVE") == "OK"
    expected = state(shard)
    close(shard)
    assert state(open_shard(cfg, clock)) == expected


def test_snapshot_format_is_versioned(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False)
    shard = open_shard(cfg, clock)
    run(shard, "SET", "k", "v")
    run(shard, "SAVE")
    path = shard.persistence.files.snapshot  # type: ignore[union-attr]
    data = open(path, "rb").read()
    assert data.startswith(snapshot.MAGIC)
    assert snapshot.read_header(path)["shards"] == 1
    open(path, "wb").write(snapshot.MAGIC + b"\x09\x00" + data[10:])
    with pytest.raises(files.LoadError, match="format version 9"):
        open_shard(cfg, clock)


# -- crashes during a rewrite ---------------------------------------------------------


class Crash(BaseException):
    """Stands for the process dying at this point."""


class _InlineThreads:
    """threading as aof.py uses it, but every thread runs at once, inline."""

    Lock = __import__("threading").Lock
    Event = __import__("threading").Event

    class Thread:
        def __init__(self, target, args=(), **_):
            self.target, self.args = target, args

        def start(self):
            self.target(*self.args)

        def join(self, *_):
            pass


def test_crash_at_any_moment_of_a_rewrite_leaves_a_loadable_aof(tmp_path, monkeypatch):
    # Copy the directory as it is on disk before and after every file
    # operation of a rewrite (in the worker: before the fork and after the
    # child is done); each copy must load to exactly the data acknowledged
    # at that moment.
    import shutil

    clock = FakeClock()
    live = tmp_path / "live"
    live.mkdir()
    cfg = make_config(live)
    shard = open_shard(cfg, clock)
    for i in range(30):
        run(shard, "SET", f"k{i}", f"v{i}")
    monkeypatch.setattr(aofwriter, "threading", _InlineThreads)
    parent = os.getpid()
    moments: list[tuple[Path, dict]] = []

    def copy(label: str) -> None:
        if os.getpid() != parent:
            return  # the forked child: the worker's copies cover its file
        target = tmp_path / f"moment-{len(moments)}-{label}"
        shutil.copytree(live, target)
        moments.append((target, state(shard)))

    for name in ("replace", "rename", "unlink", "fsync", "truncate"):
        real = getattr(os, name)

        def hooked(*a, _real=real, _name=name, **kw):
            copy("before-" + _name)
            result = _real(*a, **kw)
            copy("after-" + _name)
            return result

        monkeypatch.setattr(os, name, hooked)
    run(shard, "BGREWRITEAOF")
    run(shard, "SET", "during", "1")  # logged into the new incr
    run(shard, "DEL", "k3")
    wait_child(shard)
    run(shard, "SET", "after", "2")
    monkeypatch.undo()
    assert shard.persistence.aof_rewrites == 1  # type: ignore[union-attr]
    assert len(moments) > 10
    close(shard)
    for directory, expected in moments:
        again = open_shard(dict(cfg, dir=str(directory)), clock)
        assert state(again) == expected, directory.name
        close(again)


def test_killed_rewrite_child_leaves_the_old_aof(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path, rdb_key_save_delay=5000)
    shard = open_shard(cfg, clock)
    for i in range(1000):
        run(shard, "SET", f"k{i}", "v")
    run(shard, "BGREWRITEAOF")
    run(shard, "SET", "during", "1")
    child = shard.persistence.child  # type: ignore[union-attr]
    os.kill(child.pid, 9)
    wait_child(shard)
    assert shard.persistence.last_rewrite_ok is False  # type: ignore[union-attr]
    run(shard, "SET", "after", "1")
    expected = state(shard)
    close(shard)
    assert state(open_shard(cfg, clock)) == expected
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_automatic_rewrite(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path, auto_aof_rewrite_min_size=2000, auto_aof_rewrite_percentage=100)
    shard = open_shard(cfg, clock)
    for i in range(200):
        run(shard, "SET", "same", f"value-{i}")
        shard.persistence.cron()  # type: ignore[union-attr]
    wait_child(shard)
    p = shard.persistence
    assert p.aof_rewrites >= 1  # type: ignore[union-attr]
    assert p.info()["aof_current_size"] < 2000 * 3  # type: ignore[union-attr,operator]
    expected = state(shard)
    close(shard)
    assert state(open_shard(cfg, clock)) == expected


# -- snapshots and their rules ----------------------------------------------------------


def test_bgsave_and_save_rules(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False, save="1 3")
    shard = open_shard(cfg, clock)
    p = shard.persistence
    run(shard, "SET", "a", "1")
    run(shard, "SET", "b", "2")
    assert p.dirty == 2  # type: ignore[union-attr]
    p.lastsave -= 5  # type: ignore[union-attr,operator]
    p.cron()  # type: ignore[union-attr]
    assert p.child is None  # type: ignore[union-attr]  # 2 changes < 3
    run(shard, "SET", "c", "3")
    p.cron()  # type: ignore[union-attr]
    assert p.child is not None and p.child.kind == "save"  # type: ignore[union-attr]
    assert run(shard, "BGSAVE").message == "ERR Background save already in progress"  # type: ignore[union-attr]
    assert run(shard, "BGREWRITEAOF") == "Background append only file rewriting scheduled"
    wait_child(shard)
    assert p.dirty == 0 and p.rdb_saves == 1  # type: ignore[union-attr]
    wait_child(shard)  # the scheduled rewrite
    assert p.total_forks == 2  # type: ignore[union-attr]  # the rules' save and the rewrite
    expected = state(shard)
    assert state(open_shard(cfg, clock)) == expected


def test_a_fork_that_fails_is_not_counted_and_resetstat_zeroes_them(tmp_path, monkeypatch):
    """total_forks counts the children forked (as Redis's redisFork, after
    the fork succeeds); CONFIG RESETSTAT's __resetstat zeroes it."""
    shard = open_shard(make_config(tmp_path, appendonly=False), FakeClock())
    p = shard.persistence
    assert run(shard, "BGSAVE") == "Background saving started"
    wait_child(shard)
    assert p.total_forks == 1 and p.info()["total_forks"] == 1  # type: ignore[union-attr]

    def no_fork() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert run(shard, "BGSAVE").message.startswith("ERR Can't BGSAVE: fork failed")  # type: ignore[union-attr]
    assert p.total_forks == 1  # type: ignore[union-attr]
    monkeypatch.undo()
    assert run(shard, wire.Verb.RESETSTAT) == "OK"
    assert p.total_forks == 0 and p.latest_fork_usec == 0  # type: ignore[union-attr]
    close(shard)


def test_snapshot_refuses_another_layout(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False, shards=2)
    shard = open_shard(cfg, clock, index=1)
    run(shard, "SET", "k", "v")
    run(shard, "SAVE")
    other = make_config(tmp_path, appendonly=False, shards=2)
    os.rename(shard.persistence.files.snapshot, tmp_path / "dump.rdb.shard-0")  # type: ignore[union-attr]
    with pytest.raises(files.LoadError, match="shard 1 of 2, not 0 of 2"):
        open_shard(other, clock, index=0)


def test_shutdown_flushes_and_saves(tmp_path):
    clock = FakeClock()
    cfg = make_config(tmp_path, appendfsync="no", save="3600 1")
    shard = open_shard(cfg, clock)
    run(shard, "SET", "k", "v")
    assert run(shard, "__shutdown", "default") == "OK"
    assert os.path.exists(shard.persistence.files.snapshot)  # type: ignore[union-attr]
    batch = wire.batch_payload(
        [b":0\r\n", aof.encode([b"SET", b"x", b"1"]), b":0\r\n", aof.encode([b"__shutdown", b"abort"])]
    )
    replies = __import__("shardkv.protocol.wire", fromlist=["decode_replies"]).decode_replies(
        shard.run_batch(batch)
    )
    assert replies == [b"-ERR shard is shutting down\r\n", b"+OK\r\n"]
    assert run(shard, "SET", "x", "1") == "OK"  # open again after abort


def test_a_stop_opened_again_counts_its_save_as_not_made(tmp_path):
    """A stop that fails or is aborted opens the shard again
    (``__shutdown abort``): as Redis's, which made no save (its one save
    failed, or its ABORT came before it), the figures are those before
    the stop, though the snapshot was written."""
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False, save="")
    shard = open_shard(cfg, clock)
    p = shard.persistence
    run(shard, "SET", "k", "v")
    p.lastsave -= 5  # type: ignore[union-attr,operator]
    before = p.info()  # type: ignore[union-attr]
    assert run(shard, "__shutdown", "save") == run(shard, "__shutdown", "save") == "OK"
    assert p.info()["rdb_changes_since_last_save"] == 0  # type: ignore[union-attr]
    assert run(shard, "__shutdown", "abort") == "OK"
    assert os.path.exists(p.files.snapshot)  # type: ignore[union-attr]
    assert p.info() == before  # type: ignore[union-attr]
    assert before["rdb_changes_since_last_save"] == 1 and before["rdb_saves"] == 0
    run(shard, "SET", "k", "w")
    assert p.info()["rdb_changes_since_last_save"] == 2  # type: ignore[union-attr]


def test_a_save_counts_in_rdb_saves_even_when_it_fails(tmp_path):
    """As Redis's saveCommand, which counts a SAVE (stat_rdb_saves) before
    its rdbSave runs: a SAVE that fails counts too (before, only one that
    succeeded); SHUTDOWN's save, Redis's bare rdbSave, does not count."""
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False, save="")
    shard = open_shard(cfg, clock)
    p = shard.persistence
    run(shard, "SET", "k", "v")
    os.mkdir(p.files.snapshot)  # type: ignore[union-attr]  # the rename fails
    try:
        assert run(shard, "SAVE").message == "ERR"  # type: ignore[union-attr]
        assert p.rdb_saves == 1 and p.dirty == 1  # type: ignore[union-attr]
        assert run(shard, "__shutdown", "save").message.startswith("ERR")  # type: ignore[union-attr]
        assert p.rdb_saves == 1  # type: ignore[union-attr]
    finally:
        os.rmdir(p.files.snapshot)  # type: ignore[union-attr]
    assert run(shard, "SAVE") == "OK" and p.rdb_saves == 2  # type: ignore[union-attr]
    assert run(shard, "__shutdown", "save") == "OK" and p.rdb_saves == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("across", [False, True])
def test_flushall_with_save_rules_saves_the_emptied_data(tmp_path, across):
    """As Redis's flushAllDataAndResetRDB: with ``save`` rules FLUSHALL
    stops a background save under way and saves at once (dirty 0, not
    counted in rdb_saves), alone or as a shard's part of one across
    shards, so that a start after it finds no key it removed (before, the
    last snapshot gave them back, and dirty counted them)."""
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False, save="3600 1", rdb_key_save_delay=100000)
    shard = open_shard(cfg, clock)
    p = shard.persistence
    run(shard, "SET", "k", "v")
    p.cfg["rdb-key-save-delay"] = 0  # type: ignore[union-attr]
    assert run(shard, "SAVE") == "OK"
    run(shard, "SET", "j", "w")
    p.cfg["rdb-key-save-delay"] = 100000  # type: ignore[union-attr]  # (a save that lasts)
    assert run(shard, "BGSAVE") == "Background saving started"
    p.cfg["rdb-key-save-delay"] = 0  # type: ignore[union-attr]
    if across:
        prepared = shard.prepare_part([wire.Verb.PREPARE, b"7", b"FLUSHALL"])
        assert prepared.prepared  # type: ignore[union-attr]
        shard.decide(7, True)
    else:
        assert run(shard, "FLUSHALL") == "OK"
    assert p.child is None and p.dirty == 0 and p.rdb_saves == 2  # type: ignore[union-attr]
    assert p.last_bgsave_ok  # type: ignore[union-attr]  # (stopped, not failed)
    assert open_shard(make_config(tmp_path, appendonly=False), clock).keyspace.dbsize() == 0


@pytest.mark.parametrize("outcome", ["commit", "abort", "acceptor-gone"])
def test_a_runs_flushall_settled_after_an_acceptors_restart_leaves_no_entry(tmp_path, outcome):
    """A run's FLUSHALL on the executor (a WATCHed EXEC's), prepared and
    not decided when its acceptor died: the outcome the next acceptor
    sends (report_in_doubt's decide) saves it if committed, as the Decide
    would have, and forgets it either way; a run that prepared nothing
    here is forgotten when that acceptor's pipe starts again (before, its
    ``flushes`` entry stayed for good, and a commit so resolved saved
    nothing)."""
    clock, cfg, s0, s1, own, foreign = _two_shards(tmp_path)
    p = s0.persistence
    p.rules = [(3600, 1)]  # type: ignore[union-attr]
    lastsave = p.lastsave = 0  # type: ignore[union-attr]
    later = [[b"SET", own, b"x"]] if outcome != "acceptor-gone" else []
    if not later:
        run(s0, "DEL", own)  # (its FLUSHALL then changes nothing here)
    ran = s0.run_foreign(wire.Run(7, {}, [[b"FLUSHALL"], *later], 0, False, [b"*"]))
    assert ran.flushed and 7 in s0.flushes
    assert ran.own == (wire.NOTHING if outcome == "acceptor-gone" else wire.PREPARED)
    if outcome == "acceptor-gone":
        s0.send = lambda frame: None  # (the InDoubt to the new pipe)
        s0.report_in_doubt()
    else:
        s0.decide(7, outcome == "commit")  # as report_in_doubt applies a Resolve
    assert s0.flushes == {} and s0.prepared == {}
    saved = p.lastsave != lastsave  # type: ignore[union-attr]
    assert (saved, p.dirty if saved else None) == ((True, 1) if outcome == "commit" else (False, None))  # type: ignore[union-attr]


def test_a_replayed_flushall_does_not_save_at_the_next_write(tmp_path):
    """A FLUSHALL the AOF replays as the shard loads saves nothing then,
    nor at the first write after the load (its handler marks the flush
    for record(), which the replay does not call)."""
    clock = FakeClock()
    cfg = make_config(tmp_path, save="3600 1")
    shard = open_shard(cfg, clock)
    run(shard, "SET", "k", "v")
    p = shard.persistence
    p.rules = []  # type: ignore[union-attr]  # (this FLUSHALL saves nothing)
    assert run(shard, "FLUSHALL") == "OK"
    close(shard)
    again = open_shard(cfg, clock)
    run(again, "SET", "j", "w")
    assert again.persistence.dirty == 1 and again.persistence.rdb_saves == 0  # type: ignore[union-attr]
    assert not os.path.exists(again.persistence.files.snapshot)  # type: ignore[union-attr]
    close(again)


def test_a_shard_shut_without_a_save_saves_for_a_later_shutdown_save(tmp_path):
    """Two stops at once reach a shard in either order (a signal's and a
    SHUTDOWN SAVE, two acceptors'): SAVE after a stop that did not save
    still saves, once; after one that saved, it does not save again."""
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False, save="")
    shard = open_shard(cfg, clock)
    run(shard, "SET", "k", "v")
    snapshot = shard.persistence.files.snapshot  # type: ignore[union-attr]
    assert run(shard, "__shutdown", "default") == "OK"  # no rules: no save
    assert not os.path.exists(snapshot)
    assert run(shard, "__shutdown", "save") == "OK"
    saved = os.stat(snapshot).st_ino
    assert run(shard, "__shutdown", "save") == "OK"
    assert os.stat(snapshot).st_ino == saved
    reopened = open_shard(make_config(tmp_path, appendonly=False, save=""), clock)
    assert run(reopened, "GET", "k") == b"v"


def test_shutdown_with_an_aof_it_cannot_write_warns_and_stops(tmp_path):
    """As Redis's prepareForShutdown: the AOF's last write and fsync only
    warn when they fail; the shard closes (a failed RDB save alone keeps
    it open).  The write the AOF could not take was never acknowledged
    (its commit failed); what was written before is in the file.  Before,
    ``__shutdown`` raised the OSError, and the server would not stop."""
    clock = FakeClock()
    shard = open_shard(make_config(tmp_path), clock)
    p = shard.persistence
    assert p is not None and p.aof is not None
    run(shard, "SET", "k", "v")
    good = p.aof.fd
    p.aof.fd = os.open(p.aof.path, os.O_RDONLY)  # every write fails now (EBADF), as on a full disk
    run(shard, "SET", "x", "1")
    assert not p.commit()  # refused: the reply would be -MISCONF
    assert run(shard, "__shutdown", "default") == "OK"
    assert p.closed
    p.close()  # the worker's way out: no error either
    os.close(good)
    again = open_shard(make_config(tmp_path), clock)
    assert run(again, "GET", "k") == b"v"
    assert run(again, "GET", "x") is None


# -- changing the shard count ------------------------------------------------------------


class _Inline:
    """Runs a re-sharding process's target in this process (see persistence.prepare)."""

    def __init__(self, target, args) -> None:
        try:
            target(*args)
            self.exitcode = 0
        except Exception:
            self.exitcode = 1

    def join(self) -> None:
        pass


def _fill(cfg: dict, clock: FakeClock, n: int) -> dict:
    """Write keys of every present type through ``n`` shards; return them all."""
    from shardkv.protocol.router import Router

    router = Router(n)
    shards = [open_shard(cfg, clock, i) for i in range(n)]
    for i in range(300):
        key = f"key:{i}".encode()
        shard = shards[router.shard_of(key)]
        kind = PRESENT[i % len(PRESENT)]
        probe = {"string": ["SET", key, "v", "PX", "900000"], "hash": ["HSET", key, "f", i]}
        probe |= {"list": ["RPUSH", key, "a", i], "set": ["SADD", key, "a", i], "zset": ["ZADD", key, i, "m"]}
        probe |= {"hyperloglog": ["PFADD", key, "a", i], "geo": ["GEOADD", key, 10, 40, i]}
        probe |= {"sort": ["RPUSH", key, i, "2"]}
        run(shard, *probe[kind])
    everything = {}
    for shard in shards:
        everything.update(state(shard))
        shard.persistence.close()  # type: ignore[union-attr]
    return everything


@pytest.mark.parametrize("appendonly", [True, False], ids=["aof", "snapshot"])
def test_reshard_4_to_8_to_2(tmp_path, appendonly):
    clock = FakeClock(int(time.time() * 1000))  # re-sharding runs on the real clock
    cfg = make_config(tmp_path, shards=4, appendonly=appendonly, save="3600 1")
    expected = _fill(cfg, clock, 4)
    for n in (8, 2):
        cfg = dict(cfg, shards=n)
        reshard.prepare(cfg, _Inline)
        assert reshard.stored_layout(cfg) == ("aof" if appendonly else "rdb", n)
        found = {}
        for i in range(n):
            shard = open_shard(cfg, clock, i)
            found.update(state(shard))
            shard.persistence.close()  # type: ignore[union-attr]
        assert found == expected
    names = os.listdir(tmp_path)
    assert not [x for x in names if ".shard-2" in x or ".shard-3" in x or "reshard" in x], names


def test_reshard_crash_during_commit_is_finished_at_next_start(tmp_path, monkeypatch):
    clock = FakeClock(int(time.time() * 1000))  # re-sharding runs on the real clock
    cfg = make_config(tmp_path, shards=4)
    expected = _fill(cfg, clock, 4)
    cfg = dict(cfg, shards=2)
    real_replace = os.replace
    calls = [0]

    def crash_on_third(src, dst):
        calls[0] += 1
        if calls[0] == 3:  # after the marker and one shard's base
            raise Crash
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_third)
    with pytest.raises(Crash):
        reshard.prepare(cfg, _Inline)
    monkeypatch.setattr(os, "replace", real_replace)
    assert any(n.endswith(".reshard") for n in os.listdir(tmp_path))
    reshard.prepare(cfg, _Inline)  # the next start finishes the commit
    found = {}
    for i in range(2):
        shard = open_shard(cfg, clock, i)
        found.update(state(shard))
    assert found == expected


def test_failed_reshard_leaves_the_old_files(tmp_path):
    clock = FakeClock(int(time.time() * 1000))  # re-sharding runs on the real clock
    cfg = make_config(tmp_path, shards=4)
    expected = _fill(cfg, clock, 4)
    with open(tmp_path / "appendonly.aof.shard-1.manifest", "a") as f:
        f.write("garbage line\n")
    with pytest.raises(files.LoadError, match="Invalid AOF manifest file format"):
        reshard.prepare(dict(cfg, shards=8), _Inline)
    text = (tmp_path / "appendonly.aof.shard-1.manifest").read_text()
    (tmp_path / "appendonly.aof.shard-1.manifest").write_text(text.replace("garbage line\n", ""))
    found = {}
    for i in range(4):
        found.update(state(open_shard(cfg, clock, i)))
    assert found == expected


def _batch(*entries: tuple[int, list]) -> bytes:
    return wire.batch_payload(
        [item for token, args in entries for item in (wire.entry_header(0, token), aof.encode(args))]
    )


@pytest.mark.skipif(find(b"blpop") is None or find(b"bzpopmin") is None, reason="no blocking commands yet")
def test_blocking_commands_are_logged_as_what_they_did(tmp_path):
    # Served at once or later (woken by a push), a blocking command is
    # logged as the pop it did, never as itself: replay must not block.
    clock = FakeClock()
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    shard.send = lambda payload, logged=None: None  # the late replies (W frames) go nowhere here
    steps = [
        (0, [b"RPUSH", b"l", b"a", b"b", b"c"]),
        (0, [b"ZADD", b"z", b"1", b"x", b"2", b"y", b"3", b"w"]),
        (1, [b"BLPOP", b"l", b"0"]),
        (2, [b"BRPOP", b"nothing", b"l", b"0"]),
        (3, [b"BLMOVE", b"l", b"l2", b"LEFT", b"RIGHT", b"0"]),
        (4, [b"BZPOPMIN", b"z", b"0"]),
        (5, [b"BZMPOP", b"0", b"1", b"z", b"MAX", b"COUNT", b"2"]),
        (6, [b"BLMPOP", b"0", b"2", b"empty", b"l2", b"LEFT", b"COUNT", b"5"]),
        (7, [b"BLPOP", b"later", b"0"]),  # waits...
        (8, [b"BZPOPMAX", b"zlater", b"0"]),  # waits...
        (0, [b"RPUSH", b"later", b"1", b"2"]),  # ...served here
        (0, [b"ZADD", b"zlater", b"5", b"p", b"6", b"q"]),  # ...and here
    ]
    for token, args in steps:
        shard.keyspace.tick()
        shard.run_batch(_batch((token, args)))
        shard.persistence.commit()  # type: ignore[union-attr]
    expected = state(shard)
    assert expected[b"later"] == ("list", [b"2"], None)
    names = {args[0].upper() for _, args in aofreader.read_records(shard.persistence.aof.path)}  # type: ignore[union-attr]
    assert not {n for n in names if n.startswith(b"B")}, names
    close(shard)
    assert state(open_shard(cfg, clock)) == expected


def test_everysec_fsyncs_in_the_background(tmp_path):
    writer = aofwriter.AofWriter(str(tmp_path / "f.aof"), "everysec")
    try:
        writer.buf.append(aof.encode([b"SET", b"k", b"v"]))
        writer.flush()  # written to the OS now, fsynced by the thread
        assert writer.unsynced
        for _ in range(300):  # about a second, bounded
            if writer.last_fsync:
                break
            time.sleep(0.01)
        assert not writer.unsynced and writer.last_fsync > 0
        writer.set_policy("always")  # CONFIG SET appendfsync always: no thread, fsync per flush
        assert writer._thread is None
        writer.buf.append(aof.encode([b"SET", b"k", b"w"]))
        writer.flush()
        assert not writer.unsynced
    finally:
        writer.close()


def test_save_rules_are_checked_by_config():
    assert config.SETTINGS["save"].parse(" 3600 1  300 100 ") == "3600 1 300 100"
    for bad in ("3600", "x 1", "-1 5"):
        with pytest.raises(ValueError, match="Invalid save parameters"):
            config.SETTINGS["save"].parse(bad)


def test_strings_changed_in_place_are_saved_and_rewritten(tmp_path):
    """SETBIT, SETRANGE, APPEND and BITFIELD change a string in place (a
    bytearray); SAVE, a forked BGSAVE and BGREWRITEAOF write them as the
    strings they are, with nothing read in between to freeze them."""
    clock = FakeClock()
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)

    def change() -> None:
        run(shard, "APPEND", "a", "hello")
        run(shard, "APPEND", "a", " world")
        run(shard, "SETBIT", "b", 100, 1)
        run(shard, "SETRANGE", "c", 3, "xyz")
        run(shard, "BITFIELD", "d", "SET", "u8", 8, 200)
        run(shard, "SET", "e", "plain")
        run(shard, "SETBIT", "e", 0, 1)

    change()
    expected = {
        b"a": b"hello world",
        b"b": bytes(12) + b"\x08",
        b"c": b"\0\0\0xyz",
        b"d": b"\0\xc8",
        b"e": b"\xf0lain",
    }
    assert run(shard, "SAVE") == "OK"
    change()
    assert run(shard, "BGREWRITEAOF") == "Background append only file rewriting started"
    wait_child(shard)
    change()
    assert run(shard, "BGSAVE") == "Background saving started"
    wait_child(shard)
    final = expected | {b"a": b"hello world" * 3}
    got = {k: v[1] for k, v in state(shard).items()}
    assert got == final
    close(shard)
    assert {k: v[1] for k, v in state(open_shard(cfg, clock)).items()} == final  # base + incr
    snap = dict(cfg, appendonly=False)
    assert {k: v[1] for k, v in state(open_shard(snap, clock)).items()} == final  # the snapshot


@pytest.mark.parametrize("truncate", ["works", "fails"])
@pytest.mark.parametrize("then", ["an error", "nothing"])
def test_a_short_write_of_the_aof_is_a_full_disk_in_redis_words(
    tmp_path, monkeypatch, caplog, then, truncate
):
    """A write of the AOF that takes part of the records, then fails (with
    any error), is ENOSPC, as Redis's flushAppendOnlyFile counts a short
    write: its log line, and the -MISCONF text writes get.  So is one that
    then returns 0 (it took nothing, and said no error: some file systems
    do): written again and again it would hold the worker, and its clients,
    for good.  As Redis, the part written is cut off the file again
    (ftruncate), so that the file ends on a whole record, and all of it
    stays buffered; if that fails (logged in Redis's words), the part stays
    and the rest is buffered.  Either way it goes at the next commit, once
    the disk takes it, with no record cut or written twice."""
    clock = FakeClock()
    shard = open_shard(make_config(tmp_path), clock)
    writer = shard.persistence.aof  # type: ignore[union-attr]
    real_write = os.write
    calls: list[int] = []

    def write(fd: int, data) -> int:  # 10 bytes, then the error or nothing
        calls.append(len(data))
        assert len(calls) < 100, "written again and again"
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))
        if then == "an error":
            raise OSError(5, "Input/output error")
        return 0

    def ftruncate(fd: int, size: int) -> None:
        raise OSError(5, "Input/output error")

    shard.keyspace.tick()
    shard.execute([b"SET", b"k", b"v"])
    assert shard.persistence.commit()  # type: ignore[union-attr]
    before = os.path.getsize(writer.path)
    shard.execute([b"SET", b"k1", b"v1"])
    monkeypatch.setattr(os, "write", write)
    if truncate == "fails":
        monkeypatch.setattr(os, "ftruncate", ftruncate)
    with caplog.at_level("WARNING", "shardkv"):
        assert not shard.persistence.commit()  # type: ignore[union-attr]
    monkeypatch.undo()
    logged = ["shard 0: Short write while writing to the AOF file: (nwritten=10, expected=%d)" % calls[0]]
    if truncate == "fails":
        logged.append(
            "shard 0: Could not remove short write from the append-only file.  Redis may refuse"
            " to load the AOF the next time it starts.  ftruncate: Input/output error"
        )
    assert [r.getMessage() for r in caplog.records if r.name.startswith("shardkv")] == logged
    assert writer.failing == "No space left on device"
    # Cut off again: the file ends on a whole record (else the part stays).
    assert os.path.getsize(writer.path) == before + (10 if truncate == "fails" else 0)
    assert writer.size == os.path.getsize(writer.path)
    assert shard.persistence.commit()  # type: ignore[union-attr]  # the rest, retried
    assert writer.failing is None
    assert writer.size == os.path.getsize(writer.path)
    run(shard, "SET", "k2", "w")
    close(shard)
    assert state(open_shard(make_config(tmp_path), clock)) == {
        b"k": ("string", b"v", None),
        b"k1": ("string", b"v1", None),
        b"k2": ("string", b"w", None),
    }


@pytest.mark.parametrize("how", ["BGREWRITEAOF", "scheduled"])
def test_a_rewrite_while_a_short_write_could_not_be_cut_off_is_refused_and_splits_no_record(
    tmp_path, monkeypatch, how
):
    """A short write whose ftruncate failed leaves part of a record at the
    end of the incr file, the rest buffered.  A rewrite then would list a
    new incr after that file (and switch to it) with the record not whole:
    a start would find a torn record in a file that is not the last (it
    cannot load), or the record's rest in the next file (never replayed
    whole).  So a rewrite starts only once the buffer is written, in the
    file it began in: until then it is refused, as Redis refuses one it
    cannot start, and the manifest is not touched (a start meanwhile cuts
    the torn record off the last incr, a write never acknowledged, and
    loses nothing that was).  Once the disk takes the rest, the record is
    whole in its file, the rewrite goes, and every write is there once."""
    clock = FakeClock()
    cfg = make_config(tmp_path)
    shard = open_shard(cfg, clock)
    p = shard.persistence
    assert p is not None and p.aof is not None
    real_write = os.write
    calls: list[int] = []

    def write(fd: int, data) -> int:  # 10 bytes, then a full disk
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def ftruncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    run(shard, "SET", "k", "v")
    manifest = open(p.files.manifest, "rb").read()
    shard.keyspace.tick()
    shard.execute([b"SET", b"k1", b"v1"])
    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    assert not p.commit()  # part of the record in the file, the rest buffered
    buffered = list(p.aof.buf)
    if how == "BGREWRITEAOF":
        refused = run(shard, "BGREWRITEAOF")
        assert refused.message == (  # type: ignore[union-attr]
            "ERR Can't execute an AOF background rewriting. Please check the server logs for more information."
        )
    else:  # (as BGREWRITEAOF during a save schedules it): tried again until it starts, as Redis
        p.rewrite_scheduled = True
        p.cron()
        assert p.rewrite_scheduled
    assert p.child is None
    assert open(p.files.manifest, "rb").read() == manifest
    assert p.aof.buf == buffered
    # A start now (the files as they are, copied): the torn record cut off.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for name in os.listdir(tmp_path):
        if os.path.isfile(tmp_path / name):
            shutil.copy(tmp_path / name, crashed / name)
    monkeypatch.undo()  # the disk takes writes again
    loaded = open_shard(make_config(crashed), clock)
    assert state(loaded) == {b"k": ("string", b"v", None)}
    close(loaded)
    assert p.commit()  # the rest of the record, in the file it began in
    if how == "BGREWRITEAOF":
        assert run(shard, "BGREWRITEAOF") == "Background append only file rewriting started"
    else:
        p.cron()
        assert not p.rewrite_scheduled
    assert p.child is not None
    run(shard, "SET", "k2", "w")
    wait_child(shard)
    run(shard, "SET", "k3", "x")
    close(shard)
    assert state(open_shard(make_config(tmp_path), clock)) == {
        b"k": ("string", b"v", None),
        b"k1": ("string", b"v1", None),
        b"k2": ("string", b"w", None),
        b"k3": ("string", b"x", None),
    }


@pytest.mark.parametrize("save", ["rules", "BGSAVE SCHEDULE"])
def test_saves_go_on_while_a_scheduled_rewrite_is_refused(tmp_path, monkeypatch, save):
    """A rewrite scheduled (BGREWRITEAOF during a save) stays scheduled
    while the AOF cannot be written, and is refused at each cron tick; as
    in Redis, whose serverCron tries it and then, with no child started,
    checks its save points and its scheduled BGSAVE all the same, the
    saves still start meanwhile: snapshots are not held up for as long as
    the disk refuses the AOF's writes."""
    clock = FakeClock()
    shard = open_shard(make_config(tmp_path, save="1 1"), clock)
    p = shard.persistence
    assert p is not None and p.aof is not None
    real_write = os.write
    aof_fd = p.aof.fd

    def write(fd: int, data) -> int:  # the AOF's disk is full; the snapshot's is not
        if fd == aof_fd:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    run(shard, "SET", "k", "v")  # not written: the AOF is failing
    assert p.aof.failing is not None
    p.rewrite_scheduled = True  # (as BGREWRITEAOF during a save schedules it)
    if save == "rules":
        p.lastsave -= 5  # type: ignore[operator]
    else:
        p.bgsave_scheduled = True
    p.cron()
    assert p.rewrite_scheduled  # refused, still scheduled
    assert p.child is not None and p.child.kind == "save"
    wait_child(shard)
    assert p.rdb_saves == 1 and p.rewrite_scheduled
    monkeypatch.undo()  # the disk takes writes again: the rewrite goes
    p.cron()
    assert not p.rewrite_scheduled and p.child is not None and p.child.kind == "rewrite"
    wait_child(shard)
    close(shard)


@pytest.mark.parametrize("how", ["BGREWRITEAOF", "scheduled"])
def test_a_rewrite_whose_manifest_cannot_be_written_is_refused_in_redis_words_and_leaves_no_file(
    tmp_path, monkeypatch, how
):
    """The manifest that lists the new incr file cannot be written (a full
    disk): as Redis's openNewIncrAofForAppend, the rewrite does not start,
    BGREWRITEAOF says so in Redis's words (not an internal error) and
    aof_last_bgrewrite_status is err.  The incr file made for it is
    removed again, listed nowhere: each try (a cron tick's, while the disk
    is full) would leave one more for good, where Redis reuses its name.
    A scheduled rewrite stays scheduled, tried again until it starts, as
    Redis clears aof_rewrite_scheduled only once one has started."""
    shard = open_shard(make_config(tmp_path), FakeClock())
    p = shard.persistence
    assert p is not None
    run(shard, "SET", "k", "v")
    before = sorted(os.listdir(p.files.dir))

    def full(path: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rewrite, "write_file_atomically", full)
    for _ in range(3):
        if how == "BGREWRITEAOF":
            refused = run(shard, "BGREWRITEAOF")
            assert refused.message == (  # type: ignore[union-attr]
                "ERR Can't execute an AOF background rewriting. Please check the server logs for more information."
            )
        else:  # (as BGREWRITEAOF during a save schedules it)
            p.rewrite_scheduled = True
            p.cron()
            assert p.rewrite_scheduled
    assert p.child is None and not p.last_rewrite_ok
    assert sorted(os.listdir(p.files.dir)) == before
    monkeypatch.undo()  # the disk takes writes again
    if how == "BGREWRITEAOF":
        assert run(shard, "BGREWRITEAOF") == "Background append only file rewriting started"
    else:
        p.cron()
        assert not p.rewrite_scheduled and p.child is not None
    wait_child(shard)
    assert p.last_rewrite_ok
    run(shard, "SET", "k2", "w")
    close(shard)
    assert state(open_shard(make_config(tmp_path), FakeClock())) == {
        b"k": ("string", b"v", None),
        b"k2": ("string", b"w", None),
    }


def test_shutdown_is_refused_while_the_first_aof_base_is_written(tmp_path):
    """CONFIG SET appendonly yes forks the first base; its manifest (which
    loads it and the incr logged after it) is written when it is done.  A
    SHUTDOWN before then killed the child and exited with no manifest: a
    start lost every key.  It is refused, as Redis refuses it ("Writing
    initial AOF, can't exit"), and succeeds once the base is there."""
    clock = FakeClock()
    cfg = make_config(tmp_path, appendonly=False)
    cfg["rdb-key-save-delay"] = 100_000  # microseconds a key: the child is still writing
    shard = open_shard(cfg, clock)
    for i in range(5):
        run(shard, "SET", f"k{i}", "v")
    p = shard.persistence
    assert p is not None
    p.set_config("appendonly", "yes")
    run(shard, "SET", "after", "1")
    refused = run(shard, "__shutdown", "nosave")
    assert isinstance(refused, wire.Error) and refused.message == "ERR Errors trying to SHUTDOWN. Check logs."
    assert not p.closed and p.child is not None
    expected = state(shard)
    wait_child(shard)
    assert run(shard, "__shutdown", "nosave") == "OK"
    close(shard)
    assert state(open_shard(make_config(tmp_path), clock)) == expected


def test_shutdown_force_stops_while_the_first_aof_base_is_written(tmp_path):
    """SHUTDOWN FORCE (``force``: NOSAVE) stops all the same, as Redis's
    "Writing initial AOF. Exit anyway."."""
    cfg = make_config(tmp_path, appendonly=False)
    cfg["rdb-key-save-delay"] = 100_000
    shard = open_shard(cfg, FakeClock())
    run(shard, "SET", "k", "v")
    p = shard.persistence
    assert p is not None
    p.set_config("appendonly", "yes")
    assert run(shard, "__shutdown", "force") == "OK"
    assert p.closed and p.child is None
    close(shard)


@pytest.mark.parametrize("fails", ["write", "fsync"])
def test_an_aof_error_with_appendfsync_always_exits_in_redis_words(tmp_path, monkeypatch, caplog, fails):
    """As Redis's flushAppendOnlyFile: with ``appendfsync always`` a write
    or an fsync of the AOF that fails cannot be answered nor rolled back,
    so the worker logs Redis's line and exits (``EXIT_AOF_FAILED``, which
    stops shardkv with status 1) instead of refusing the write with
    -MISCONF and serving on."""
    shard = open_shard(make_config(tmp_path, appendfsync="always"), FakeClock())
    p = shard.persistence
    assert p is not None and p.aof is not None

    def broken(*_: object) -> None:
        raise OSError(errno.EIO, "Input/output error")

    def exit_(code: int) -> None:
        raise SystemExit(code)

    shard.keyspace.tick()
    shard.execute([b"SET", b"k", b"v"])
    monkeypatch.setattr(os, "write" if fails == "write" else "fsync", broken)
    monkeypatch.setattr(os, "_exit", exit_)
    with caplog.at_level("WARNING", "shardkv"), pytest.raises(SystemExit) as exited:
        p.commit()
    monkeypatch.undo()
    assert exited.value.code == EXIT_AOF_FAILED
    if fails == "write":
        logged = [
            "shard 0: Error writing to the AOF file: Input/output error",
            "shard 0: Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting...",
        ]
    else:
        logged = [
            "shard 0: Can't persist AOF for fsync error when the AOF fsync policy is 'always': "
            "Input/output error. Exiting..."
        ]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("shardkv")] == logged
    p.aof.close()


def test_rewrite_back_off_doubles_to_an_hour_as_redis(monkeypatch):
    """Redis 7.0.15's aofRewriteLimited: from 3 failed rewrites in a row, an
    automatic or scheduled one waits 1, 2, 4... minutes (at most 60) after
    each try; fewer failures end the back-off."""
    now = [1_000_000.0]
    monkeypatch.setattr(rewrite.time, "time", lambda: now[0])

    class Shard:
        index = 0
        aof_rewrites_consecutive_failures = 2
        rewrite_delay_minutes = 0
        next_rewrite_time = 0.0

    s = Shard()
    assert not rewrite.Rewrites._rewrite_limited(s)  # type: ignore[arg-type]
    s.aof_rewrites_consecutive_failures = 3
    waits = []
    for _ in range(8):
        assert rewrite.Rewrites._rewrite_limited(s)  # type: ignore[arg-type]  # a wait begins
        waits.append(s.next_rewrite_time - now[0])
        now[0] = s.next_rewrite_time - 1
        assert rewrite.Rewrites._rewrite_limited(s)  # type: ignore[arg-type]  # not over yet
        now[0] += 1
        assert not rewrite.Rewrites._rewrite_limited(s)  # type: ignore[arg-type]  # over: one try
    assert waits == [60 * m for m in (1, 2, 4, 8, 16, 32, 60, 60)]
    s.aof_rewrites_consecutive_failures = 0
    assert not rewrite.Rewrites._rewrite_limited(s)  # type: ignore[arg-type]
    assert (s.rewrite_delay_minutes, s.next_rewrite_time) == (0, 0.0)


def test_appendonly_no_drops_a_scheduled_rewrite_as_redis(tmp_path):
    """Redis 7.0.15's stopAppendOnly clears aof_rewrite_scheduled: a
    BGREWRITEAOF scheduled behind a save, then CONFIG SET appendonly no,
    rewrites nothing once the save is over (INFO says 0 at once)."""
    shard = open_shard(make_config(tmp_path), FakeClock())
    p = shard.persistence
    assert p is not None and p.aof is not None
    run(shard, "SET", "k", "v")
    p.rewrite_scheduled = True  # (as BGREWRITEAOF during a save schedules it)
    p.set_config("appendonly", "no")
    assert p.info()["aof_rewrite_scheduled"] == 0
    p.cron()
    assert p.child is None and p.aof_rewrites == 0
    close(shard)


def test_appendonly_yes_during_a_save_schedules_the_rewrite_as_redis(tmp_path, caplog):
    """Redis 7.0.15's startAppendOnly with a save under way: the save goes
    on, the rewrite that turns the AOF on is scheduled (INFO: aof_enabled
    1, aof_rewrite_scheduled and aof_pending_rewrite 1, rdb_bgsave still in
    progress), and starts once the save is over; its base has every key."""
    cfg = make_config(tmp_path, appendonly=False, rdb_key_save_delay=20000)
    shard = open_shard(cfg, FakeClock())
    p = shard.persistence
    assert p is not None and p.aof is None
    for i in range(10):
        run(shard, "SET", f"k{i}", i)
    assert p.bgsave() == "Background saving started"
    with caplog.at_level(logging.WARNING, logger="shardkv.worker"):
        p.set_config("appendonly", "yes")
    assert "AOF was enabled but there is already another background operation." in caplog.text
    info = p.info()
    names = ("rdb_bgsave_in_progress", "aof_enabled", "aof_rewrite_scheduled", "aof_pending_rewrite")
    assert [info[name] for name in names] == [1, 1, 1, 1]
    run(shard, "SET", "during", "1")
    p.set_config("rdb-key-save-delay", "0")
    wait_child(shard)  # the save, then the rewrite the cron starts
    assert p.rdb_saves == 1 and p.aof_rewrites == 1
    wait_child(shard)
    assert p.aof is not None and p.manifest is not None and not p.rewrite_scheduled
    close(shard)
    reopened = open_shard(make_config(tmp_path), FakeClock())
    assert reopened.keyspace.dbsize() == 11  # type: ignore[attr-defined]
    close(reopened)


def test_an_error_after_a_no_change_leaves_the_next_write_logged(tmp_path):
    """A handler that said no change (ks.unchanged) and then failed (here
    __function's read part given an unknown subcommand): the error clears
    the flag, so the next write is logged."""
    shard = open_shard(make_config(tmp_path), FakeClock(1_700_000_000_000))
    assert type(run(shard, "__function", "bogus")) is Error
    run(shard, "SET", "k", "v")
    records = [args for _, args in aofreader.read_records(shard.persistence.aof.path)]  # type: ignore[union-attr]
    assert records == [[b"SET", b"k", b"v"]]
    close(shard)


def test_an_error_after_a_count_leaves_the_next_write_counted_one(tmp_path):
    """A handler that set its count (ks.changes) and then failed or said no
    change (here __function on a shard past the first, which counts its
    library change as none): the count is cleared with the error or the
    no change, so the next write counts its own, one change."""
    shard = open_shard(make_config(tmp_path, shards=4), FakeClock(1_700_000_000_000), index=1)
    persistence = shard.persistence
    assert type(run(shard, "__function", "delete", "nosuch")) is Error
    run(shard, "SET", "k", "v")
    assert (persistence.dirty, persistence.unsaved) == (1, 0)  # type: ignore[union-attr]
    run(shard, "__function", "list", "", "0", "0")  # a read: no change
    run(shard, "SET", "k", "w")
    assert (persistence.dirty, persistence.unsaved) == (2, 0)  # type: ignore[union-attr]
    records = [args for _, args in aofreader.read_records(persistence.aof.path)]  # type: ignore[union-attr]
    assert records == [[b"SET", b"k", b"v"], [b"SET", b"k", b"w"]]
    close(shard)
