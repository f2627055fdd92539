"""Per-key access clocks (shardkv.worker.access) on a keyspace of its own:
which lookups stamp them, and that a key that goes takes its clock along."""

from __future__ import annotations

from shardkv.worker import access, transfer
from shardkv.worker.clock import FakeClock
from shardkv.worker.keyspace import Keyspace


def keyspace() -> tuple[Keyspace, FakeClock]:
    clock = FakeClock()
    return Keyspace(clock, databases=4), clock


def later(ks: Keyspace, clock: FakeClock, seconds: int) -> None:
    clock.advance(seconds * 1000)
    ks.tick()


def test_lookup_and_store_stamp_peek_does_not():
    ks, clock = keyspace()
    ks.store(b"k", b"v")
    later(ks, clock, 5)
    assert access.idle_seconds(ks, b"k") == 5
    assert ks.peek(b"k") == b"v" and ks.peek_raw(b"k") == b"v"
    assert access.idle_seconds(ks, b"k") == 5
    assert ks.lookup(b"k") == b"v"
    assert access.idle_seconds(ks, b"k") == 0
    later(ks, clock, 3)
    ks.lookup_raw(b"k")
    assert access.idle_seconds(ks, b"k") == 0
    later(ks, clock, 3)
    ks.store(b"k", b"w")
    assert access.idle_seconds(ks, b"k") == 0
    assert ks.lookup(b"nope") is None and b"nope" not in ks.clocks


def test_keys_that_go_take_their_clocks():
    ks, clock = keyspace()
    for i in range(10):
        ks.store(b"k%d" % i, b"v")
    ks.delete(b"k0")
    ks.store(b"k1", b"v")
    ks.set_expire(b"k1", ks.now + 1000)
    later(ks, clock, 2)
    assert ks.lookup(b"k1") is None  # expired
    transfer.drop_key(ks, b"k2")  # moved to another shard
    assert set(ks.clocks) == {b"k%d" % i for i in range(3, 10)}
    ks.flush(every=False)
    assert ks.clocks == {}
    with ks.selected(1):
        ks.store(b"a", b"v")
    ks.store(b"b", b"v")
    ks.flush()
    assert ks.clocks == {} and ks.dbs[1].clocks == {}  # type: ignore[union-attr]


def test_swapdb_swaps_the_clocks_with_the_keys():
    ks, clock = keyspace()
    with ks.selected(1):
        ks.store(b"a", b"v")
    later(ks, clock, 7)
    ks.store(b"b", b"v")
    ks.swap(0, 1)
    assert set(ks.clocks) == {b"a"} and access.idle_seconds(ks, b"a") == 7
    with ks.selected(1):
        assert set(ks.clocks) == {b"b"}


def test_lfu_counts_accesses_and_a_switch_forgets():
    ks, clock = keyspace()
    ks.store(b"old", b"v")
    later(ks, clock, 10)
    ks.runtime.maxmemory_policy = "allkeys-lfu"
    access.on_settings(ks)
    assert ks.clocks == {} and access.frequency(ks, b"old") == access.LFU_INIT_VAL
    factor, access.LFU_LOG_FACTOR = access.LFU_LOG_FACTOR, 0  # every access counts
    try:
        ks.store(b"k", b"v")
        assert access.frequency(ks, b"k") == access.LFU_INIT_VAL
        for _ in range(3):
            ks.lookup(b"k")
        ks.peek(b"k")
        assert access.frequency(ks, b"k") == access.LFU_INIT_VAL + 3
        clock.advance(2 * 60_000)  # two minutes idle: decays by two
        ks.tick()
        assert access.frequency(ks, b"k") == access.LFU_INIT_VAL + 1
    finally:
        access.LFU_LOG_FACTOR = factor
    ks.runtime.maxmemory_policy = "noeviction"
    access.on_settings(ks)
    assert ks.clocks == {} and "lookup" not in vars(ks)
    assert access.idle_seconds(ks, b"k") == 0  # counts from the switch


def test_mget_reads_each_key_as_lookup_does():
    """MGET's handler, which reads a held string inline, leaves the
    keyspace as one Keyspace.lookup per key does: the same values, clocks
    (LRU stamps, or LFU counters), hits, misses, keymiss events and
    expired keys, for every kind of key, repeated ones included."""
    import random

    from shardkv.worker.commands.lists import rpush
    from shardkv.worker.commands.strings import append, mget, set_
    from shardkv.worker.events import KEYMISS

    keys = [b"s", b"{t}s", b"ba", b"gone", b"ttl", b"l", b"nope", b"s", b"ba", b"gone", b"l", b"{t}s"]

    def build(lfu: bool) -> Keyspace:
        ks, clock = keyspace()
        if lfu:
            ks.lfu = True
            access.install_lfu(ks)
        for key in (b"s", b"{t}s", b"ba", b"gone", b"ttl"):
            set_(ks, [b"SET", key, b"v-" + key])
        append(ks, [b"APPEND", b"ba", b"+"])  # a string changed in place (a bytearray)
        rpush(ks, [b"RPUSH", b"l", b"x"])
        ks.set_expire(b"gone", ks.now + 1000)
        ks.set_expire(b"ttl", ks.now + 10_000_000)
        later(ks, clock, 2)
        ks.counting = True
        ks.event_mask = KEYMISS
        ks.events = []
        return ks

    for lfu in (False, True):
        ks, ref = build(lfu), build(lfu)
        random.seed(1)
        got = mget(ks, [b"MGET", *keys])
        random.seed(1)
        expected = [v if type(v) is bytes else None for v in map(ref.lookup, keys)]
        assert got == expected and got[:3] == [b"v-s", b"v-{t}s", b"v-ba+"]
        for name in ("clocks", "hits", "misses", "events", "expired_keys", "raw_strings"):
            assert getattr(ks, name) == getattr(ref, name), (lfu, name)
        assert ks.data == ref.data and ks.expires == ref.expires
