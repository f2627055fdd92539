"""CLIENT NO-TOUCH across shards: a cross-shard operation's commands (a
MULTI/EXEC, a script, RENAME/SMOVE/LMOVE/*STORE/COPY between shards, a
blocking move, MGET/MSET/EXISTS fan-outs) leave the keys' access clocks
as a single-shard command's do, with one acceptor and with two.

redis-server 7.0 lacks CLIENT NO-TOUCH, so with it ON each case is checked
against what Redis 7.2 does (lookupKey adds LOOKUP_NOTOUCH for the client
but for TOUCH, dbSetValue gives an overwritten key's new object the old
one's clock, a new key gets its first clock); with it OFF the same case is
compared with redis-server (every access touches).  The clocks are read
with OBJECT IDLETIME (RESTORE ... IDLETIME 1000: no sleeps) and OBJECT FREQ
under an exact LFU counter (``lfu-log-factor 0``, ``lfu-decay-time 0``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.support.lfu import counting_accesses
from tests.support.placement import key_on
from tests.support.resp import ErrorReply, RespClient

SCRIPT = "redis.call('get', KEYS[1]); redis.call('set', KEYS[2], 'v2'); return redis.call('touch', KEYS[3])"
UNDECLARED = (
    "redis.call('get', ARGV[1]); redis.call('set', ARGV[2], 'v2'); return redis.call('touch', ARGV[3])"
)


@dataclass
class Case:
    """``keys``: name -> (shard, type) of the keys made idle first;
    ``run(c, k)`` runs the case on connection ``c`` with ``k`` the names'
    keys; ``fresh``: the names a NO-TOUCH client's case touches all the same
    (TOUCH) or makes new; ``new``: names of keys it may make, by shard."""

    keys: dict[str, tuple[int, str]]
    run: Callable[[RespClient, dict[str, str]], object]
    fresh: set[str] = field(default_factory=set)
    new: dict[str, int] = field(default_factory=dict)


def _exec(c: RespClient, *commands: tuple) -> object:
    assert c.command("MULTI") == b"OK"
    for command in commands:
        assert c.command(*command) == b"QUEUED"
    return c.command("EXEC")


CASES = {
    "mget": Case({"a": (0, "string"), "b": (1, "string")}, lambda c, k: c.command("MGET", k["a"], k["b"])),
    "exists": Case(
        {"a": (0, "string"), "b": (1, "string")}, lambda c, k: c.command("EXISTS", k["a"], k["b"])
    ),
    "mset": Case(
        {"a": (0, "string"), "b": (1, "string")},
        lambda c, k: c.command("MSET", k["a"], "v2", k["b"], "v2"),
    ),
    "mset-new": Case(
        {"a": (0, "string")}, lambda c, k: c.command("MSET", k["a"], "v2", k["n"], "v2"), {"n"}, {"n": 1}
    ),
    "rename": Case({"a": (0, "string")}, lambda c, k: c.command("RENAME", k["a"], k["b"]), new={"b": 1}),
    "copy": Case({"a": (0, "string")}, lambda c, k: c.command("COPY", k["a"], k["b"]), {"b"}, {"b": 1}),
    "smove": Case({"s": (0, "set"), "d": (1, "set")}, lambda c, k: c.command("SMOVE", k["s"], k["d"], "m2")),
    "lmove": Case(
        {"s": (0, "list"), "d": (1, "list")}, lambda c, k: c.command("LMOVE", k["s"], k["d"], "LEFT", "RIGHT")
    ),
    "sunionstore": Case(
        {"s": (0, "set"), "t": (1, "set"), "d": (1, "set")},
        lambda c, k: c.command("SUNIONSTORE", k["d"], k["s"], k["t"]),
    ),
    "multi": Case(
        {"a": (0, "string"), "b": (1, "string"), "t": (1, "string")},
        lambda c, k: _exec(c, ("GET", k["a"]), ("SET", k["b"], "v2"), ("TOUCH", k["t"])),
        {"t"},
    ),
    "eval": Case(
        {"a": (0, "string"), "b": (1, "string"), "t": (0, "string")},
        lambda c, k: c.command("EVAL", SCRIPT, 3, k["a"], k["b"], k["t"]),
        {"t"},
    ),
    "eval-undeclared": Case(
        {"a": (0, "string"), "b": (1, "string"), "t": (1, "string")},
        lambda c, k: c.command("EVAL", UNDECLARED, 0, k["a"], k["b"], k["t"]),
        {"t"},
    ),
    "exec-eval": Case(
        {"a": (0, "string"), "b": (1, "string"), "t": (0, "string"), "g": (1, "string")},
        lambda c, k: _exec(c, ("EVAL", SCRIPT, 3, k["a"], k["b"], k["t"]), ("GET", k["g"])),
        {"t"},
    ),
    "blmove": Case(
        {"s": (0, "list"), "d": (1, "list")},
        lambda c, k: c.command("BLMOVE", k["s"], k["d"], "LEFT", "LEFT", "0"),
    ),
}


def _payloads(c: RespClient) -> dict[str, bytes]:
    c.command("DEL", "{p}s", "{p}l", "{p}t")
    c.command("SET", "{p}s", "some value")
    c.command("RPUSH", "{p}l", "x", "y", "z")
    c.command("SADD", "{p}t", "m1", "m2", "m3")
    payloads = {
        kind: c.command("DUMP", key) for kind, key in (("string", "{p}s"), ("list", "{p}l"), ("set", "{p}t"))
    }
    c.command("DEL", "{p}s", "{p}l", "{p}t")
    return payloads  # type: ignore[return-value]


def _keys(case: Case, name: str) -> dict[str, str]:
    names = {n: shard for n, (shard, _) in case.keys.items()} | case.new
    return {n: key_on(shard, f"{name}-{n}-", shards=2) for n, shard in names.items()}


def _clocks(c: RespClient, keys: dict[str, str], lfu: bool) -> dict[str, object]:
    """Each key's FREQ (LFU), or its IDLETIME's class: 'now' (<= 1 s),
    'idle' (>= 1000 s); None: no such key."""
    seen: dict[str, object] = {}
    for n, key in keys.items():
        value = c.command("OBJECT", "FREQ" if lfu else "IDLETIME", key)
        if value is None or lfu:
            seen[n] = value
        else:
            seen[n] = "now" if value <= 1 else "idle" if value >= 1000 else value
    return seen


def _set_up(c: RespClient, case: Case, keys: dict[str, str], payloads: dict[str, bytes], lfu: bool) -> None:
    c.command("FLUSHALL")
    clock = ("FREQ", 100) if lfu else ("IDLETIME", 1000)
    for n, (_, kind) in case.keys.items():
        c.command("RESTORE", keys[n], 0, payloads[kind], *clock, "REPLACE")


@pytest.fixture(params=[False, True], ids=["lru", "lfu"])
def servers(request, redis_and_shardkv_k12):
    """(real, ours, lfu): a connection to each of the module's servers, under
    the policy whose clock is read."""
    real_port, ours_port, _acceptors = redis_and_shardkv_k12
    lfu = request.param
    with RespClient(real_port) as real, RespClient(ours_port) as ours:
        with counting_accesses(real, lfu), counting_accesses(ours, lfu):
            yield real, ours, lfu


@pytest.mark.parametrize("name", list(CASES))
def test_cross_shard_operations_touch_as_redis(servers, name):
    """NO-TOUCH OFF: the same clocks as redis-server's."""
    real, ours, lfu = servers
    case = CASES[name]
    keys = _keys(case, name)
    seen = []
    for c in (real, ours):
        _set_up(c, case, keys, _payloads(c), lfu)
        reply = case.run(c, keys)
        assert not isinstance(reply, ErrorReply), reply
        seen.append(_clocks(c, keys, lfu))
    assert seen[1] == seen[0]


@pytest.mark.parametrize("name", list(CASES))
def test_cross_shard_operations_of_a_no_touch_client(servers, name):
    """NO-TOUCH ON: every key the case read or overwrote keeps its clock, but
    for TOUCH's and new keys' (Redis 7.2's lookupKey and dbSetValue)."""
    _real, ours, lfu = servers
    case = CASES[name]
    keys = _keys(case, name)
    _set_up(ours, case, keys, _payloads(ours), lfu)
    assert ours.command("CLIENT", "NO-TOUCH", "ON") == b"OK"
    try:
        reply = case.run(ours, keys)
    finally:
        assert ours.command("CLIENT", "NO-TOUCH", "OFF") == b"OK"
    assert not isinstance(reply, ErrorReply), reply
    seen = _clocks(ours, keys, lfu)
    expected = {}
    for n, value in seen.items():
        if value is None:
            expected[n] = None
        elif n not in case.fresh:
            expected[n] = 100 if lfu else "idle"
        elif n in case.new:
            expected[n] = 5 if lfu else "now"  # a new key: its first clock (LFU_INIT_VAL)
        else:
            expected[n] = 101 if lfu else "now"  # TOUCH: one access
    assert seen == expected


def _blocked(c: RespClient, n: int) -> None:
    deadline = time.monotonic() + 10
    while b"blocked_clients:%d\r\n" % n not in c.command("INFO", "clients"):
        assert time.monotonic() < deadline, f"never {n} blocked clients"
        time.sleep(0.01)


@pytest.mark.parametrize("no_touch", [False, True], ids=["touching", "no-touch"])
def test_a_blocked_move_across_shards_served_later(servers, no_touch):
    """A BLMOVE between shards that blocked, served by a touching client's
    push: its destination is touched as by the blocked client (OFF: as
    redis-server's; ON: kept), whoever pushed."""
    real, ours, lfu = servers
    case = Case({"d": (1, "list")}, lambda c, k: None, new={"s": 0})
    keys = _keys(case, "served")
    seen = []
    for c in (real, ours) if not no_touch else (ours,):
        port = c.sock.getpeername()[1]
        _set_up(c, case, keys, _payloads(c), lfu)
        with RespClient(port) as waiter:
            if no_touch:
                assert waiter.command("CLIENT", "NO-TOUCH", "ON") == b"OK"
            waiter.send("BLMOVE", keys["s"], keys["d"], "LEFT", "LEFT", "10")
            _blocked(c, 1)
            assert c.command("RPUSH", keys["s"], "pushed") == 1
            assert waiter.read_reply() == b"pushed"
        seen.append(_clocks(c, keys, lfu))
    if no_touch:
        assert seen[0] == {"d": 100 if lfu else "idle", "s": None}
    else:
        assert seen[1] == seen[0]


def test_a_blocked_move_across_shards_served_to_a_destination_of_another_type(servers):
    """Served, its destination of another type: WRONGTYPE, the element left
    in the source, and the source and the destination looked up once each
    (Redis's handleClientsBlockedOnKeys and serveClientBlockedOnList), as
    redis-server counts them."""
    real, ours, lfu = servers
    case = Case({"d": (1, "string")}, lambda c, k: None, new={"s": 0})
    keys = _keys(case, "served-wrongtype")
    seen = []
    for c in (real, ours):
        port = c.sock.getpeername()[1]
        _set_up(c, case, keys, _payloads(c), lfu)
        with RespClient(port) as waiter:
            waiter.send("BLMOVE", keys["s"], keys["d"], "LEFT", "LEFT", "10")
            _blocked(c, 1)
            assert c.command("RPUSH", keys["s"], "pushed") == 1
            reply = waiter.read_reply()
            assert isinstance(reply, ErrorReply) and str(reply).startswith("WRONGTYPE"), reply
        assert c.command("LRANGE", keys["s"], 0, -1) == [b"pushed"]
        seen.append(_clocks(c, keys, lfu))
    assert seen[1] == seen[0]


@pytest.mark.parametrize("command", ["BLMOVE", "BRPOPLPUSH"])
@pytest.mark.parametrize("destination", [0, 1], ids=["one-shard", "across"])
def test_a_served_move_looks_up_a_source_that_keeps_elements_once(servers, command, destination):
    """A blocked BLMOVE (BRPOPLPUSH) served by a push of two elements, on one
    shard or between two: the source, which keeps one, is looked up once
    by the serve (Redis's handleClientsBlockedOnKeys), not twice as the
    command run afresh looks it up (blmoveGenericCommand, then
    lmoveGenericCommand); its FREQ and the destination's as
    redis-server's."""
    real, ours, lfu = servers
    case = Case({"d": (destination, "list")}, lambda c, k: None, new={"s": 0})
    keys = _keys(case, f"served-kept-{command}")
    args = [keys["s"], keys["d"], *(["LEFT", "RIGHT"] if command == "BLMOVE" else []), "10"]
    seen = []
    for c in (real, ours):
        port = c.sock.getpeername()[1]
        _set_up(c, case, keys, _payloads(c), lfu)
        with RespClient(port) as waiter:
            waiter.send(command, *args)
            _blocked(c, 1)
            assert c.command("RPUSH", keys["s"], "a", "b") == 2
            moved = waiter.read_reply()  # BRPOPLPUSH pops from the right
            assert moved == (b"a" if command == "BLMOVE" else b"b")
        assert c.command("LRANGE", keys["s"], 0, -1) == [b"b" if moved == b"a" else b"a"]
        seen.append(_clocks(c, keys, lfu))
    assert seen[1] == seen[0]


@pytest.mark.parametrize("command", ["BLPOP", "BLMOVE"])
def test_one_push_serving_two_blocked_clients_looks_their_key_up_once(servers, command):
    """Two clients blocked on one key (BLPOP, or BLMOVE to a list on the
    same shard), both served by one push that leaves an element: the key
    is looked up once for them all (Redis 7.0's handleClientsBlockedOnKeys,
    one lookupKeyWrite per ready key), each BLMOVE's destination once per
    client (serveClientBlockedOnList); their FREQ as redis-server's."""
    real, ours, lfu = servers
    case = Case({"d": (0, "list")}, lambda c, k: None, new={"s": 0})
    keys = _keys(case, f"served-two-{command}")
    args = [keys["s"], "10"] if command == "BLPOP" else [keys["s"], keys["d"], "LEFT", "RIGHT", "10"]
    seen = []
    for c in (real, ours):
        port = c.sock.getpeername()[1]
        _set_up(c, case, keys, _payloads(c), lfu)
        with RespClient(port) as first, RespClient(port) as second:
            first.send(command, *args)
            _blocked(c, 1)
            second.send(command, *args)
            _blocked(c, 2)
            assert c.command("RPUSH", keys["s"], "a", "b", "c") == 3
            replies = [first.read_reply(), second.read_reply()]
        assert replies == (
            [[keys["s"].encode(), b"a"], [keys["s"].encode(), b"b"]] if command == "BLPOP" else [b"a", b"b"]
        )
        assert c.command("LRANGE", keys["s"], 0, -1) == [b"c"]
        seen.append(_clocks(c, keys, lfu))
    assert seen[1] == seen[0]
