"""One slow log for every client, whichever acceptor it is on (issues 18
and 22), compared with redis-server: two clients, with two acceptors each
on its own, log commands in turn (answered by an acceptor, by a shard,
across shards, a script); each reads SLOWLOG GET and LEN, one RESETs and
the other sees it, and ``slowlog-max-len`` bounds what both see.

Ids are compared as their distance from the newest entry's, and a client
address as whose it is, for every entry: a shard's too, whose acceptor
names its client (pipelined commands of several clients in one batch
among them).  Within shardkv the two clients must see the very same ids.
SLOWLOG's subcommands refuse extra arguments as Redis does.
"""

from __future__ import annotations

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient

K0, K1 = key_on(0, "slk", shards=2), key_on(1, "slk", shards=2)
GET = "return redis.call('get', KEYS[1])"


def _clients(port: int, acceptors: int) -> tuple[RespClient, RespClient]:
    """Two connections, on acceptors 0 and 1 when there are two."""
    if acceptors == 1:
        return RespClient(port), RespClient(port)
    return client_on(port, 0, k=acceptors), client_on(port, 1, k=acceptors)


def _addr(c: RespClient) -> str:
    info = c.command("CLIENT", "INFO").decode()  # type: ignore[union-attr]
    return next(f[5:] for f in info.split() if f.startswith("addr="))


def _view(entries: list, whose: dict[str, str]) -> list:
    """SLOWLOG GET's entries: ids from the newest, arguments, whose address
    (a, b, lua) and name."""
    newest = entries[0][0] if entries else 0
    return [[newest - e[0], e[3], whose.get(e[4].decode(), e[4]), e[5]] for e in entries]


def _scenario(a: RespClient, b: RespClient, ours: bool) -> list:
    whose = {_addr(a): "a", _addr(b): "b", "?:0": "lua"}
    seen: list = []
    a.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    try:
        a.command("SLOWLOG", "RESET")
        a.command("SET", K0, "v")  # a shard's
        b.command("GET", K1)  # the other shard's
        b.command("CLIENT", "SETNAME", "bee")  # acceptor b's
        a.command("PING")  # acceptor a's
        b.command("ECHO", "x")
        a.command("MSET", K0, "1", K1, "2")  # across shards: acceptor a's
        b.command("EVAL", GET, 1, K0)  # its call, then itself, named by acceptor b
        from_a = a.command("SLOWLOG", "GET", "-1")
        from_b = b.command("SLOWLOG", "GET", "-1")
        if ours:  # the same entries and ids, whoever asks (b's has a's SLOWLOG GET too)
            assert from_b[1:] == from_a  # type: ignore[index]
        seen += [_view(from_a, whose), _view(from_b, whose)]  # type: ignore[arg-type]
        seen += [
            a.command("SLOWLOG", "LEN"),
            b.command("SLOWLOG", "LEN"),
            b.command("SLOWLOG", "GET", "2")[0][0] - a.command("SLOWLOG", "GET", "1")[0][0],
        ]  # type: ignore[index]
        # RESET through b: a sees only what came after it.
        b.command("SLOWLOG", "RESET")
        seen += [a.command("SLOWLOG", "LEN"), _view(a.command("SLOWLOG", "GET"), whose)]  # type: ignore[arg-type]
        # slowlog-max-len, set through a, bounds what b sees.
        a.command("CONFIG", "SET", "slowlog-max-len", "3")
        seen.append(b.command("SLOWLOG", "LEN"))
        for i in range(4):
            (a if i % 2 else b).command("PING")
            a.command("GET", K1 if i % 2 else K0)
        seen += [b.command("SLOWLOG", "LEN"), _view(b.command("SLOWLOG", "GET", "-1"), whose)]  # type: ignore[arg-type]
        seen.append(_view(a.command("SLOWLOG", "GET", "-1"), whose))  # type: ignore[arg-type]
    finally:
        a.command("CONFIG", "SET", "slowlog-max-len", "128")
        a.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
    return seen


def test_one_slow_log_for_clients_of_every_acceptor(redis_and_shardkv_k12) -> None:
    real, ours, acceptors = redis_and_shardkv_k12
    got = {}
    for name, port in (("redis", real), ("shardkv", ours)):
        a, b = _clients(port, acceptors)
        try:
            got[name] = _scenario(a, b, name == "shardkv")
        finally:
            a.close()
            b.close()
    assert got["shardkv"] == got["redis"]


@pytest.mark.parametrize("count", ["1", "3"])
def test_get_counts_the_same_through_either_acceptor(redis_and_shardkv_k12, count) -> None:
    """SLOWLOG GET <count> from each client: the same newest ids."""
    real, ours, acceptors = redis_and_shardkv_k12
    got = {}
    for name, port in (("redis", real), ("shardkv", ours)):
        a, b = _clients(port, acceptors)
        try:
            a.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
            try:
                b.command("SLOWLOG", "RESET")
                b.command("PING")
                a.command("SET", K1, "w")
                first = [e[0] for e in a.command("SLOWLOG", "GET", count)]  # type: ignore[union-attr]
                second = [e[0] for e in b.command("SLOWLOG", "GET", count)]  # type: ignore[union-attr]
                got[name] = [i - second[0] for i in first] + [i - second[0] for i in second]
            finally:
                a.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        finally:
            a.close()
            b.close()
    assert got["shardkv"] == got["redis"]


def _pipelined(a: RespClient, b: RespClient) -> list:
    """Both clients pipeline commands for one shard at once (``a`` named),
    so that a shard's batch may hold commands of both; each client's
    entries, in order (how the two interleave depends on which acceptor
    reads first), and how many."""
    whose = {_addr(a): "a", _addr(b): "b", "?:0": "lua"}
    a.command("CLIENT", "SETNAME", "ay")
    a.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    try:
        a.command("SLOWLOG", "RESET")
        tag = "{%s}" % K0  # (keys of K0's shard)
        commands = [
            ("SET", K0, "v"),
            ("GET", K0),
            ("INCR", tag + "n"),
            ("RPUSH", tag + "l", "x", "y"),
            ("LRANGE", tag + "l", 0, -1),
            ("HSET", tag + "h", "f", "v"),
            ("GET", tag + "n"),
            ("EVAL", GET, 1, K0),
        ]
        for c in (a, b):
            for command in commands:
                c.send(*command)
        for c in (a, b):
            for _ in commands:
                c.read_reply()
        view = _view(a.command("SLOWLOG", "GET", "-1"), whose)  # type: ignore[arg-type]
        return [[row[1:] for row in view if row[2] == who] for who in ("a", "b", "lua")] + [len(view)]
    finally:
        a.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")


def test_pipelined_commands_of_a_shard_name_their_clients(redis_and_shardkv_k12) -> None:
    real, ours, acceptors = redis_and_shardkv_k12
    got = {}
    for name, port in (("redis", real), ("shardkv", ours)):
        a, b = _clients(port, acceptors)
        try:
            got[name] = _pipelined(a, b)
        finally:
            a.close()
            b.close()
    assert got["shardkv"] == got["redis"]


ARITY = [
    ("SLOWLOG", "GET", "1", "2"),
    ("SLOWLOG", "get", "1", "2", "3"),
    ("SLOWLOG", "LEN", "x"),
    ("SLOWLOG", "RESET", "x"),
    ("SLOWLOG", "HELP", "x"),
    ("SLOWLOG", "GET", "x"),
    ("SLOWLOG", "GET", "-2"),
    ("SLOWLOG", "NOPE"),
    ("SLOWLOG",),
]


@pytest.mark.parametrize("command", ARITY, ids=" ".join)
def test_subcommands_refuse_extra_arguments_as_redis(redis_and_shardkv_k12, command) -> None:
    real, ours, _ = redis_and_shardkv_k12
    replies = []
    for port in (real, ours):
        with RespClient(port) as c:
            replies.append(c.call(*command))
    assert replies[1] == replies[0]
