"""Random stream and consumer-group commands on redis-server and shardkv,
replies compared command by command (a Hypothesis state machine).

IDs are explicit (the machine keeps its own clock, ``next_ms``, and draws
IDs near it, below it and exactly at the top), so nothing depends on the
servers' clocks; ``*`` is drawn only as ``<ms>-*``.  Replies that hold
times (XPENDING's idle, XINFO's seen-time and delivery times, XINFO
CONSUMERS' idle) are compared with those fields left out, and XCLAIM's
and XAUTOCLAIM's min-idle-time is 0 or huge, so that the answer does not
depend on a millisecond passing.  Keys ``a``/``b``/``{t}``... spread over
the four shards of the test server.
"""

from __future__ import annotations

import os

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

keys = st.sampled_from(["s", "t", "{s}x", "str"])
groups = st.sampled_from(["g1", "g2", "g3"])
consumers = st.sampled_from(["c1", "c2", "c3"])
counts = st.sampled_from(["0", "1", "2", "5", "100", "-1", "x"])
fields = st.sampled_from(["f", "g", "123", "", "x" * 70])
values = st.sampled_from(["v", "1", "-5", "", "y" * 80, "9223372036854775807"])
idle = st.sampled_from(["0", "100000000"])


class Servers:
    real: redis.Redis | None = None
    ours: redis.Redis | None = None


def _run(client: redis.Redis, args: list[str]) -> object:
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return ("error", str(e))


def _strip_times(name: str, args: list[str], reply: object) -> object:
    sub = args[1].upper() if len(args) > 1 else ""
    if name == "XPENDING" and len(args) > 3 and isinstance(reply, list):
        return [[e[0], e[1], e[3]] for e in reply]
    if name == "XINFO" and sub == "CONSUMERS" and isinstance(reply, list):
        return [_drop(_pairs(c) if isinstance(c, list) else c, b"idle") for c in reply]
    if name == "XINFO" and sub == "STREAM" and isinstance(reply, list) and b"entries" in reply[::2]:
        reply = _pairs(reply)  # RESP2: the same map as flat lists (after switch_protocol)
        reply[b"groups"] = [
            {**_pairs(g), b"consumers": [_pairs(c) for c in _pairs(g)[b"consumers"]]}
            for g in reply[b"groups"]
        ]
    if name == "XINFO" and sub == "STREAM" and isinstance(reply, dict) and b"entries" in reply:
        reply = dict(reply)
        reply[b"groups"] = [_group_without_times(g) for g in reply[b"groups"]]
        return reply
    return reply


def _pairs(flat: list) -> dict:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _drop(d: object, *names: bytes) -> object:
    if isinstance(d, dict):
        return {k: v for k, v in d.items() if k not in names}
    return d


def _group_without_times(g: dict) -> dict:
    g = dict(g)
    g[b"pending"] = [[e[0], e[1], e[3]] for e in g[b"pending"]]
    g[b"consumers"] = [
        {**_drop(c, b"seen-time"), b"pending": [[e[0], e[2]] for e in c[b"pending"]]} for c in g[b"consumers"]
    ]
    return g


class StreamMachine(RuleBasedStateMachine):
    """Each rule runs one command on both servers; the replies must match."""

    @initialize()
    def start(self) -> None:
        self.next_ms = 1
        for c in (Servers.real, Servers.ours):
            c.execute_command("HELLO", "3")
            c.flushall()
            c.set("str", "x")

    def _id(self, data) -> str:
        kind = data.draw(st.sampled_from(["next", "next", "star", "old", "top", "bad", "seq"]))
        if kind == "next":
            self.next_ms += data.draw(st.integers(0, 3))
            return f"{self.next_ms}-{data.draw(st.integers(0, 2))}"
        if kind == "star":
            self.next_ms += data.draw(st.integers(0, 2))
            return f"{self.next_ms}-*"
        if kind == "old":
            return f"{data.draw(st.integers(0, self.next_ms))}-{data.draw(st.integers(0, 3))}"
        if kind == "top":
            return f"{self.next_ms}"
        if kind == "seq":
            return str(data.draw(st.integers(0, self.next_ms)))
        return data.draw(
            st.sampled_from(["0-0", "-", "+", "x", "1-x", "18446744073709551615-18446744073709551615"])
        )

    def _range_id(self, data) -> str:
        base = data.draw(st.sampled_from(["-", "+", "0", "(0", "plain", "(plain"]))
        if "plain" in base:
            return base.replace(
                "plain", f"{data.draw(st.integers(0, self.next_ms + 1))}-{data.draw(st.integers(0, 2))}"
            )
        return base

    def _both(self, args: list) -> None:
        args = [str(a) for a in args]
        name = args[0].upper()
        expected = _strip_times(name, args, _run(Servers.real, args))
        got = _strip_times(name, args, _run(Servers.ours, args))
        assert got == expected, f"{args!r}: redis replied {expected!r}, shardkv replied {got!r}"

    @rule(data=st.data(), key=keys, f=fields, v=values, trim=st.sampled_from(["", "MAXLEN", "MINID"]))
    def xadd(self, data, key, f, v, trim) -> None:
        args = ["XADD", key]
        if data.draw(st.booleans()):
            args.append("NOMKSTREAM")
        if trim:
            args += [trim, data.draw(st.sampled_from(["=", "~", ""]))]
            args.append(data.draw(counts) if trim == "MAXLEN" else self._id(data))
            args = [a for a in args if a != ""] if args[-2] == "" else args
        args += [self._id(data), f, v]
        if data.draw(st.booleans()):
            args += [data.draw(fields), data.draw(values)]
        self._both(args)

    @rule(data=st.data(), key=keys)
    def xrange(self, data, key) -> None:
        cmd = data.draw(st.sampled_from(["XRANGE", "XREVRANGE"]))
        args = [cmd, key, self._range_id(data), self._range_id(data)]
        if data.draw(st.booleans()):
            args += ["COUNT", data.draw(counts)]
        self._both(args)

    @rule(data=st.data(), key=keys)
    def xdel_xtrim(self, data, key) -> None:
        if data.draw(st.booleans()):
            self._both(["XDEL", key, *[self._id(data) for _ in range(data.draw(st.integers(1, 3)))]])
        else:
            strategy = data.draw(st.sampled_from(["MAXLEN", "MINID"]))
            arg = data.draw(counts) if strategy == "MAXLEN" else self._id(data)
            self._both(["XTRIM", key, strategy, data.draw(st.sampled_from(["=", "~"])), arg])

    @rule(data=st.data(), key=keys)
    def xlen_xread(self, data, key) -> None:
        if data.draw(st.booleans()):
            self._both(["XLEN", key])
        else:
            other = data.draw(keys)
            args = ["XREAD"] + (["COUNT", data.draw(counts)] if data.draw(st.booleans()) else [])
            self._both([*args, "STREAMS", key, other, self._range_id(data).lstrip("("), "$"])

    @rule(data=st.data(), key=keys, group=groups)
    def xgroup(self, data, key, group) -> None:
        sub = data.draw(
            st.sampled_from(["CREATE", "CREATE", "SETID", "DESTROY", "CREATECONSUMER", "DELCONSUMER"])
        )
        if sub in ("CREATE", "SETID"):
            args = ["XGROUP", sub, key, group, data.draw(st.sampled_from(["$", "0", self._id(data)]))]
            if sub == "CREATE" and data.draw(st.booleans()):
                args.append("MKSTREAM")
            if data.draw(st.booleans()):
                args += ["ENTRIESREAD", data.draw(st.sampled_from(["0", "1", "3", "-1", "-2"]))]
        elif sub == "DESTROY":
            args = ["XGROUP", sub, key, group]
        else:
            args = ["XGROUP", sub, key, group, data.draw(consumers)]
        self._both(args)

    @rule(data=st.data(), key=keys, group=groups, consumer=consumers)
    def xreadgroup(self, data, key, group, consumer) -> None:
        args = ["XREADGROUP", "GROUP", group, consumer]
        if data.draw(st.booleans()):
            args += ["COUNT", data.draw(counts)]
        if data.draw(st.booleans()):
            args.append("NOACK")
        args += ["STREAMS", key, data.draw(st.sampled_from([">", ">", "0", self._id(data)]))]
        self._both(args)

    @rule(data=st.data(), key=keys, group=groups, consumer=consumers, min_idle=idle)
    def pel(self, data, key, group, consumer, min_idle) -> None:
        kind = data.draw(st.sampled_from(["XACK", "XPENDING", "XPENDING+", "XCLAIM", "XAUTOCLAIM"]))
        if kind == "XACK":
            self._both(["XACK", key, group, *[self._id(data) for _ in range(data.draw(st.integers(1, 3)))]])
        elif kind == "XPENDING":
            self._both(["XPENDING", key, group])
        elif kind == "XPENDING+":
            args = ["XPENDING", key, group, self._range_id(data), self._range_id(data), data.draw(counts)]
            if data.draw(st.booleans()):
                args.append(data.draw(consumers))
            self._both(args)
        elif kind == "XCLAIM":
            args = [
                "XCLAIM",
                key,
                group,
                consumer,
                min_idle,
                *[self._id(data) for _ in range(data.draw(st.integers(1, 3)))],
            ]
            args += data.draw(
                st.sampled_from(
                    [[], ["JUSTID"], ["FORCE"], ["RETRYCOUNT", "5"], ["FORCE", "JUSTID"], ["LASTID", "3-0"]]
                )
            )
            self._both(args)
        else:
            args = ["XAUTOCLAIM", key, group, consumer, min_idle, self._range_id(data).lstrip("(")]
            args += data.draw(st.sampled_from([[], ["COUNT", "2"], ["JUSTID"], ["COUNT", "1", "JUSTID"]]))
            self._both(args)

    @rule(data=st.data(), key=keys)
    def info(self, data, key) -> None:
        kind = data.draw(st.sampled_from(["STREAM", "FULL", "GROUPS", "CONSUMERS", "SETID"]))
        if kind == "STREAM":
            self._both(["XINFO", "STREAM", key])
        elif kind == "FULL":
            self._both(
                ["XINFO", "STREAM", key, "FULL", "COUNT", data.draw(st.sampled_from(["0", "2", "10"]))]
            )
        elif kind == "GROUPS":
            self._both(["XINFO", "GROUPS", key])
        elif kind == "CONSUMERS":
            self._both(["XINFO", "CONSUMERS", key, data.draw(groups)])
        else:
            args = ["XSETID", key, self._id(data)]
            if data.draw(st.booleans()):
                args += ["ENTRIESADDED", data.draw(st.sampled_from(["0", "5", "100", "-1"]))]
            if data.draw(st.booleans()):
                args += ["MAXDELETEDID", self._id(data)]
            self._both(args)

    @rule(protocol=st.sampled_from(["2", "3"]))
    def switch_protocol(self, protocol: str) -> None:
        for c in (Servers.real, Servers.ours):
            c.execute_command("HELLO", protocol)

    @invariant()
    def same_streams(self) -> None:
        for key in ("s", "t", "{s}x"):
            self._both(["XRANGE", key, "-", "+"])


StreamMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("SHARDKV_STATEFUL_EXAMPLES", "60")),
    stateful_step_count=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module", autouse=True)
def both_servers(ports):
    Servers.real = redis.Redis(port=ports["redis"], protocol=3)
    Servers.ours = redis.Redis(port=ports["shardkv"], protocol=3)
    for c in (Servers.real, Servers.ours):
        c.response_callbacks.clear()
    yield
    for c in (Servers.real, Servers.ours):
        c.flushall()
        c.close()


TestStreamCommandSequences = pytest.mark.slow(StreamMachine.TestCase)
