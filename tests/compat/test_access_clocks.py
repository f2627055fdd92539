"""Per-key access clocks: OBJECT IDLETIME, OBJECT FREQ, TOUCH, and
RESTORE's IDLETIME and FREQ, compared with redis-server.

No test sleeps: RESTORE ... IDLETIME 1000 makes a key that has been idle
for 1000 s, and OBJECT FREQ under ``lfu-log-factor 0`` (every access counts)
and ``lfu-decay-time 0`` (no decay) is an exact count.  Values are never
small integers, which Redis shares between keys (with their clock).
"""

from __future__ import annotations

import pytest

NO_TOUCH = [
    ("TTL",),
    ("PTTL",),
    ("EXPIRETIME",),
    ("PEXPIRETIME",),
    ("TYPE",),
    ("EXISTS",),
    ("OBJECT", "ENCODING"),
    ("OBJECT", "REFCOUNT"),
]
TOUCH = [("GET",), ("TOUCH",), ("STRLEN",), ("DUMP",), ("EXPIRE", "10000"), ("PERSIST",)]


def _both(compare, *args: object) -> list:
    return [c.execute_command(*args) for c in (compare.real, compare.ours)]


@pytest.fixture
def lfu(compare):
    """An LFU policy whose counter is exact: each access counts, none decays."""
    _configure(compare, {"maxmemory-policy": "allkeys-lfu", "lfu-log-factor": "0", "lfu-decay-time": "0"})
    try:
        yield compare
    finally:
        _configure(compare, {"maxmemory-policy": "noeviction", "lfu-log-factor": "10", "lfu-decay-time": "1"})


def _configure(compare, settings: dict[str, str]) -> None:
    for c in (compare.real, compare.ours):
        for name, value in settings.items():
            c.config_set(name, value)


def _idle_key(compare, key: str) -> None:
    compare("SET", "src", "some value")
    payload = compare("DUMP", "src")
    compare("RESTORE", key, "0", payload, "IDLETIME", "1000", "REPLACE")


@pytest.mark.parametrize("policy", ["noeviction", "allkeys-lru"])
def test_restore_idletime_sets_the_idle_time(compare, policy):
    _configure(compare, {"maxmemory-policy": policy})
    try:
        _idle_key(compare, "k")
        for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
            assert 1000 <= idle <= 1010
        compare("GET", "k")
        for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
            assert idle <= 1
    finally:
        _configure(compare, {"maxmemory-policy": "noeviction"})


@pytest.mark.parametrize("command", NO_TOUCH, ids=" ".join)
def test_lookups_that_are_not_accesses(compare, command):
    """TTL, TYPE, EXISTS, OBJECT... leave the clock (Redis's LOOKUP_NOTOUCH)."""
    _idle_key(compare, "k")
    compare(*command, "k")
    for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
        assert idle >= 1000


def test_scan_type_filter_is_not_an_access(compare):
    _idle_key(compare, "k")
    # (SCAN's reply is [cursor, keys]: the keys' order is the servers' own.)
    real, ours = _both(compare, "SCAN", "0", "TYPE", "string", "COUNT", "1000")
    assert real[0] == ours[0] == 0 and sorted(real[1]) == sorted(ours[1])
    for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
        assert idle >= 1000


@pytest.mark.parametrize("command", TOUCH, ids=lambda c: c[0])
def test_lookups_that_are_accesses(compare, command):
    _idle_key(compare, "k")
    compare(command[0], "k", *command[1:])
    for idle in _both(compare, "OBJECT", "IDLETIME", "k"):
        assert idle <= 1


def test_missing_keys_and_the_errors_of_each_policy(compare, lfu):
    compare("SET", "k", "some value")
    compare("OBJECT", "IDLETIME", "k")  # LFU: the error
    compare("OBJECT", "IDLETIME", "nope")  # a missing key first
    compare("OBJECT", "FREQ", "nope")
    _configure(compare, {"maxmemory-policy": "volatile-lru"})
    compare("OBJECT", "FREQ", "k")
    compare("OBJECT", "FREQ", "nope")


def test_freq_counts_accesses(lfu):
    compare = lfu
    compare("SET", "k", "some value")
    compare("OBJECT", "FREQ", "k")  # a new key: LFU_INIT_VAL
    for _ in range(3):
        compare("GET", "k")
    compare("OBJECT", "FREQ", "k")
    for command in NO_TOUCH:
        compare(*command, "k")
    compare("OBJECT", "FREQ", "k")
    compare("TOUCH", "k", "nope")
    compare("SET", "k", "another value")  # an overwrite: one access
    compare("OBJECT", "FREQ", "k")
    compare("RPUSH", "l", "a")
    compare("OBJECT", "FREQ", "l")
    compare("RPUSH", "l", "b")
    compare("LRANGE", "l", "0", "-1")
    compare("HSET", "h", "f", "v")
    compare("HSET", "h", "g", "w")
    compare("HGET", "h", "f")
    for key in ("k", "l", "h"):
        compare("OBJECT", "FREQ", key)


def test_restore_freq_and_the_clock_rename_and_move_carry(lfu):
    compare = lfu
    compare("SET", "src", "some value")
    payload = compare("DUMP", "src")
    compare("RESTORE", "a{t}", "0", payload, "FREQ", "100")
    compare("OBJECT", "FREQ", "a{t}")
    compare("GET", "a{t}")
    compare("RENAME", "a{t}", "b{t}")  # the object moves: its counter too
    compare("OBJECT", "FREQ", "b{t}")
    compare("MOVE", "b{t}", "3")
    for c in (compare.real, compare.ours):
        assert c.execute_command("SELECT", "3")
    compare("OBJECT", "FREQ", "b{t}")
    compare("COPY", "b{t}", "c{t}")  # a copy is a new object
    compare("OBJECT", "FREQ", "c{t}")
    compare("OBJECT", "FREQ", "b{t}")
    compare("FLUSHDB")
    for c in (compare.real, compare.ours):
        assert c.execute_command("SELECT", "0")
    # IDLETIME is ignored under an LFU policy, FREQ under any other.
    compare("RESTORE", "i", "0", payload, "IDLETIME", "1000")
    compare("OBJECT", "FREQ", "i")
    _configure(compare, {"maxmemory-policy": "allkeys-lru"})
    compare("RESTORE", "f", "0", payload, "FREQ", "100")
    for idle in _both(compare, "OBJECT", "IDLETIME", "f"):
        assert idle <= 1


def test_restore_option_errors(compare):
    compare("SET", "src", "some value")
    payload = compare("DUMP", "src")
    for options in (
        ["IDLETIME", "-1"],
        ["IDLETIME", "x"],
        ["IDLETIME"],
        ["FREQ", "-1"],
        ["FREQ", "256"],
        ["FREQ", "1.5"],
        ["IDLETIME", "5", "FREQ", "5"],
        ["FREQ", "5", "IDLETIME", "5"],
        ["IDLETIME", "5", "IDLETIME", "6"],
        ["FREQ", "255"],
    ):
        compare("RESTORE", "n", "0", payload, "REPLACE", *options)
