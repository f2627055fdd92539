"""Random command sequences sent to redis-server and shardkv, replies compared.

A Hypothesis state machine draws commands from :data:`COMMANDS` (strings,
keyspace, hashes, lists, sets, sorted sets), with keys from a small pool so
that they collide, change type and spread over the four shards (``{t}``
keys share one shard, so multi-key commands run both on one shard and
across shards).  Arguments include bad integers and floats, wrong types,
empty strings and binary bytes.  Every reply, errors included, must be
identical.

Only commands the shard workers implement are drawn (checked against the
worker's wiring at import), so the table can list commands before they
land.  To extend it, add a row: ``name: (argument strategies...)``.

Left out on purpose:

* replies that depend on randomness: SPOP, SRANDMEMBER, HRANDFIELD,
  ZRANDMEMBER, RANDOMKEY;
* replies that depend on the clock: TTL-like replies are compared only as
  "no key / no TTL / has a TTL" (see :data:`BUCKETED`), relative expiries
  are long (never reached during a run) and EXPIRE's GT/LT options are
  drawn only with absolute times (with relative ones the answer depends on
  whether a millisecond passed between two commands);
* blocking commands (their timeouts are clocks too) and OBJECT (its
  IDLETIME/FREQ are clocks, and ENCODING differs by design after a value
  shrinks, see test_keyspace);
* cursors of SCAN/SSCAN/HSCAN/ZSCAN, which are each server's own business
  (full scans are compared in test_keyspace and test_glob).

Replies whose order Redis does not define (SMEMBERS, SINTER, KEYS...) are
compared sorted.
"""

from __future__ import annotations

import os

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from redis.backoff import NoBackoff
from redis.retry import Retry

from shardkv.worker import wiring

HANDLERS = wiring.build().handlers

FAR = 4102444800  # 2100-01-01, for absolute expiry times

keys = st.sampled_from(["a", "b", "c", "d", "e", "{t}1", "{t}2", "{t}3"])
values = st.sampled_from(
    ["", "0", "1", "-1", "10", "3.5", "abc", "x" * 70, "\x00\xff", "9223372036854775807"]
)
ints = st.sampled_from(["0", "1", "2", "-1", "-3", "10", "100", "9223372036854775807", "x", "1.5", ""])
small_ints = st.sampled_from(["0", "1", "2", "3", "-1", "-2", "-100", "x"])
floats = st.sampled_from(["0", "1.5", "-2.25", "1e3", "0.1", "inf", "-inf", "nan", "abc", "", "3"])
members = st.sampled_from(["m1", "m2", "m3", "1", "2", "-5", "", "m" * 70])
fields = st.sampled_from(["f1", "f2", "f3", "", "f" * 70])
long_ttl = st.sampled_from(["1000", "5000", "100000"])  # seconds
long_ttl_ms = st.sampled_from(["1000000", "5000000"])  # never reached in a run
bad_ttl = st.sampled_from(["0", "-1", "x", "9223372036854775807"])
lex = st.sampled_from(["-", "+", "[m1", "(m2", "[", "m1", "(a"])
score_bound = st.sampled_from(["-inf", "+inf", "0", "(1", "1.5", "(-1", "x"])


def opt(*parts: st.SearchStrategy) -> st.SearchStrategy:
    """An optional group of arguments: nothing, or all of ``parts``."""
    return st.one_of(st.just(()), st.tuples(*parts))


def many(strategy: st.SearchStrategy, low: int = 1, high: int = 4) -> st.SearchStrategy:
    return st.lists(strategy, min_size=low, max_size=high).map(tuple)


def pairs(a: st.SearchStrategy, b: st.SearchStrategy) -> st.SearchStrategy:
    return many(st.tuples(a, b)).map(lambda ps: tuple(x for p in ps for x in p))


def flag(*names: str) -> st.SearchStrategy:
    return st.sampled_from([(), *((n,) for n in names)])


set_options = st.one_of(
    st.just(()),
    st.tuples(st.sampled_from(["NX", "XX"])),
    st.tuples(st.just("GET")),
    st.tuples(st.just("EX"), long_ttl),
    st.tuples(st.just("PX"), long_ttl_ms),
    st.tuples(st.just("EXAT"), st.just(str(FAR))),
    st.tuples(st.just("KEEPTTL")),
    st.tuples(st.sampled_from(["NX", "XX", "GET"]), st.sampled_from(["EX", "KEEPTTL", "GET"])).map(
        lambda t: t + (("1000",) if t[1] == "EX" else ())
    ),
    st.tuples(st.sampled_from(["EX", "PX"]), bad_ttl),
)

# name: a tuple of strategies, one per argument; each draws a value or a
# tuple of values (spliced in).
COMMANDS: dict[str, tuple] = {
    # -- strings
    "get": (keys,),
    "set": (keys, values, set_options),
    "setnx": (keys, values),
    "setex": (keys, st.one_of(long_ttl, bad_ttl), values),
    "psetex": (keys, st.one_of(long_ttl_ms, bad_ttl), values),
    "getset": (keys, values),
    "getdel": (keys,),
    "getex": (keys, st.one_of(st.just(()), st.tuples(st.just("EX"), long_ttl), st.just(("PERSIST",)))),
    "append": (keys, values),
    "strlen": (keys,),
    "incr": (keys,),
    "decr": (keys,),
    "incrby": (keys, ints),
    "decrby": (keys, ints),
    "incrbyfloat": (keys, floats),
    "getrange": (keys, small_ints, small_ints),
    "setrange": (keys, st.sampled_from(["0", "1", "5", "-1", "x"]), values),
    "mget": (many(keys),),
    "mset": (pairs(keys, values),),
    "msetnx": (pairs(keys, values),),
    "lcs": (keys, keys, flag("LEN", "IDX")),
    # -- keyspace
    "del": (many(keys),),
    "unlink": (many(keys),),
    "exists": (many(keys),),
    "touch": (many(keys),),
    "type": (keys,),
    "expire": (keys, st.one_of(long_ttl, st.just("-1")), flag("NX", "XX")),
    "pexpire": (keys, st.sampled_from(["1000000", "0"]), flag("NX", "XX")),
    "expireat": (keys, st.sampled_from([str(FAR), str(FAR + 100), "1"]), flag("NX", "XX", "GT", "LT")),
    "pexpireat": (keys, st.sampled_from([str(FAR * 1000), "1"]), flag("NX", "XX", "GT", "LT")),
    "ttl": (keys,),
    "pttl": (keys,),
    "expiretime": (keys,),
    "pexpiretime": (keys,),
    "persist": (keys,),
    "rename": (keys, keys),
    "renamenx": (keys, keys),
    "copy": (keys, keys, flag("REPLACE")),
    "dbsize": (),
    "keys": (st.sampled_from(["*", "{t}*", "?", "[ab]", "*1"]),),
    # -- hashes
    "hset": (keys, pairs(fields, values)),
    "hsetnx": (keys, fields, values),
    "hget": (keys, fields),
    "hmget": (keys, many(fields)),
    "hdel": (keys, many(fields)),
    "hlen": (keys,),
    "hstrlen": (keys, fields),
    "hexists": (keys, fields),
    "hkeys": (keys,),
    "hvals": (keys,),
    "hgetall": (keys,),
    "hincrby": (keys, fields, ints),
    "hincrbyfloat": (keys, fields, floats),
    # -- lists
    "lpush": (keys, many(values)),
    "rpush": (keys, many(values)),
    "lpushx": (keys, many(values)),
    "rpushx": (keys, many(values)),
    "lpop": (keys, opt(small_ints)),
    "rpop": (keys, opt(small_ints)),
    "llen": (keys,),
    "lrange": (keys, small_ints, small_ints),
    "lindex": (keys, small_ints),
    "lset": (keys, small_ints, values),
    "linsert": (keys, st.sampled_from(["BEFORE", "AFTER", "x"]), values, values),
    "lrem": (keys, small_ints, values),
    "ltrim": (keys, small_ints, small_ints),
    "lpos": (keys, values, opt(st.just("RANK"), small_ints)),
    "lmove": (keys, keys, st.sampled_from(["LEFT", "RIGHT"]), st.sampled_from(["LEFT", "RIGHT"])),
    "rpoplpush": (keys, keys),
    "lmpop": (st.just("2"), keys, keys, st.sampled_from(["LEFT", "RIGHT"])),
    # -- sets
    "sadd": (keys, many(members)),
    "srem": (keys, many(members)),
    "smembers": (keys,),
    "sismember": (keys, members),
    "smismember": (keys, many(members)),
    "scard": (keys,),
    "smove": (keys, keys, members),
    "sinter": (many(keys),),
    "sinterstore": (keys, many(keys)),
    "sunion": (many(keys),),
    "sunionstore": (keys, many(keys)),
    "sdiff": (many(keys),),
    "sdiffstore": (keys, many(keys)),
    "sintercard": (st.just("2"), keys, keys),
    # -- sorted sets
    "zadd": (keys, flag("NX", "XX", "GT", "CH"), pairs(floats, members)),
    "zincrby": (keys, floats, members),
    "zrem": (keys, many(members)),
    "zcard": (keys,),
    "zscore": (keys, members),
    "zmscore": (keys, many(members)),
    "zrank": (keys, members),
    "zrevrank": (keys, members),
    "zcount": (keys, score_bound, score_bound),
    "zlexcount": (keys, lex, lex),
    "zrange": (keys, small_ints, small_ints, flag("WITHSCORES", "REV")),
    "zrangebyscore": (keys, score_bound, score_bound, flag("WITHSCORES")),
    "zrangebylex": (keys, lex, lex),
    "zremrangebyrank": (keys, small_ints, small_ints),
    "zremrangebyscore": (keys, score_bound, score_bound),
    "zpopmin": (keys, opt(small_ints)),
    "zpopmax": (keys, opt(small_ints)),
    "zunionstore": (keys, st.just("2"), keys, keys),
    "zinterstore": (keys, st.just("2"), keys, keys),
    "zunion": (st.just("2"), keys, keys, flag("WITHSCORES")),
    "zdiff": (st.just("2"), keys, keys),
    "zinter": (st.just("2"), keys, keys, flag("WITHSCORES")),
    "zintercard": (st.just("2"), keys, keys),
    "zdiffstore": (keys, st.just("2"), keys, keys),
    "zrangestore": (keys, keys, small_ints, small_ints),
    "zrevrange": (keys, small_ints, small_ints, flag("WITHSCORES")),
    "zrevrangebyscore": (keys, score_bound, score_bound),
    "zrevrangebylex": (keys, lex, lex),
    "zremrangebylex": (keys, lex, lex),
    "zmpop": (st.just("2"), keys, keys, st.sampled_from(["MIN", "MAX"]), opt(st.just("COUNT"), small_ints)),
}

# Replies in an order Redis leaves open: compared sorted.  (A hash lists
# its fields in insertion order while it is a listpack, in hash-table order
# once a long field or value has converted it.)
UNORDERED = {"smembers", "sinter", "sunion", "sdiff", "keys", "hkeys", "hvals"}
PAIRED = {"hgetall"}  # RESP2 flattens the map: compared as sorted pairs
# Replies that are a moment in time or a time left: compared as a bucket.
BUCKETED = {"ttl", "pttl", "expiretime", "pexpiretime"}

AVAILABLE = sorted(name for name in COMMANDS if name.encode() in HANDLERS)


def _flatten(parts) -> list[str]:
    out: list[str] = []
    for p in parts:
        if isinstance(p, tuple):
            out.extend(_flatten(p))
        else:
            out.append(p)
    return out


command = st.sampled_from(AVAILABLE).flatmap(
    lambda name: st.tuples(st.just(name), *COMMANDS[name]).map(lambda t: [t[0], *_flatten(t[1:])])
)


def _plain(port: int) -> redis.Redis:
    # No retry: a reply that does not come within socket_timeout fails the
    # command that waited for it (redis.TimeoutError), where redis-py's
    # default (10 retries, each on a new connection) would wait on until
    # the run's own limit and be reported as a pytest-timeout.
    c = redis.Redis(port=port, protocol=3, socket_timeout=30, retry=Retry(NoBackoff(), 0))
    c.response_callbacks.clear()
    return c


def _run(client: redis.Redis, args: list[str]) -> object:
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return ("error", str(e))


def _normal(name: str, reply: object) -> object:
    if name in BUCKETED and isinstance(reply, int) and reply >= 0:
        return "time"
    if isinstance(reply, (set, frozenset)):
        return sorted(reply, key=repr)
    if name in UNORDERED and isinstance(reply, list):
        return sorted(reply, key=repr)
    if name in PAIRED and isinstance(reply, list):
        return sorted(zip(reply[::2], reply[1::2], strict=True))
    return reply


class Servers:
    real: redis.Redis | None = None
    ours: redis.Redis | None = None


class BothServers(RuleBasedStateMachine):
    """Each rule runs one command on both servers; the replies must match."""

    @initialize()
    def flush(self) -> None:
        for c in (Servers.real, Servers.ours):
            c.execute_command("HELLO", "3")  # type: ignore[union-attr]
            c.flushall()  # type: ignore[union-attr]

    @rule(args=command)
    def run_command(self, args: list[str]) -> None:
        name = args[0]
        expected = _normal(name, _run(Servers.real, args))  # type: ignore[arg-type]
        got = _normal(name, _run(Servers.ours, args))  # type: ignore[arg-type]
        assert got == expected, f"{args!r}: redis replied {expected!r}, shardkv replied {got!r}"

    @rule(protocol=st.sampled_from(["2", "3"]))
    def switch_protocol(self, protocol: str) -> None:
        """Replies are compared in RESP2 too (HELLO's own reply holds ids)."""
        for c in (Servers.real, Servers.ours):
            c.execute_command("HELLO", protocol)  # type: ignore[union-attr]

    @invariant()
    def same_keys(self) -> None:
        real = sorted(Servers.real.execute_command("KEYS", "*"))  # type: ignore[union-attr]
        ours = sorted(Servers.ours.execute_command("KEYS", "*"))  # type: ignore[union-attr]
        assert ours == real


# Bounded for CI; SHARDKV_STATEFUL_EXAMPLES=5000 explores further.
EXAMPLES = int(os.environ.get("SHARDKV_STATEFUL_EXAMPLES", "150"))

# The whole run's limit (pytest-timeout; the suite's default, 120 s, is per
# test, and this test is all its examples).  150 examples took 41-91 s at
# load 12-32 on 2 cores (about 13 round trips each, 40% of the time in
# shardkv's KEYS *), so under CI's load a run passed 120 s: it was stopped
# in whatever call it was in, most often the invariant's KEYS *, and
# Hypothesis, its run cut short, reported FlakyStrategyDefinition.  A reply
# that does not come fails on its own, after socket_timeout (see _plain).
RUN_LIMIT_S = max(120, 4 * EXAMPLES)

BothServers.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", autouse=True)
def both_servers(ports):
    Servers.real = _plain(ports["redis"])
    Servers.ours = _plain(ports["shardkv"])
    yield
    for c in (Servers.real, Servers.ours):
        c.flushall()
        c.close()
    Servers.real = Servers.ours = None


# pytest runs the state machine as a test case (and Hypothesis reports its
# statistics with --hypothesis-show-statistics).
TestRandomCommandSequences = pytest.mark.timeout(RUN_LIMIT_S)(pytest.mark.slow(BothServers.TestCase))


def test_table_covers_the_implemented_commands():
    """Every command drawn is implemented, and most of the table is."""
    assert len(AVAILABLE) >= 60
    assert {"set", "incrbyfloat", "rename", "msetnx"} <= set(AVAILABLE)
