"""EVALSHAs pipelined behind one that took the acceptor's shortcut
(``shardkv.acceptor.scripting.behind_shortcuts``), against redis-server
7.0.15, with one acceptor and with two.

The usual one (one key, a settled script its shard compiled, spelled in
one case) is queued inline, by shard; anything else in the same write
(another spelling, an upper-case SHA1, one not cached, two keys, a
read-only script's write, a plain command) takes the long way.  The
replies, the keys' values and ``cmdstat_evalsha``/``cmdstat_evalsha_ro``
(calls, failed calls) are Redis's.
"""

from __future__ import annotations

import uuid

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command

SHARDS = 2
OWN, OTHER = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)


@pytest.fixture
def servers(redis_and_shardkv_k12) -> tuple[int, int, int]:
    """(redis-server's port, shardkv's port, its acceptors: 1, then 2)."""
    return redis_and_shardkv_k12


def _connect(port: int, acceptors: int) -> RespClient:
    return client_on(port, 0, k=acceptors) if acceptors > 1 else RespClient(port, timeout=20)


def _counts(c: RespClient) -> dict[str, str]:
    """calls and failed_calls of each script command, from INFO commandstats."""
    info = c.call("INFO", "commandstats").decode()
    out = {}
    for line in info.splitlines():
        name, _, fields = line.partition(":")
        if name.startswith("cmdstat_evalsha"):
            kept = [f for f in fields.split(",") if f.startswith(("calls=", "failed_calls="))]
            out[name] = ",".join(kept)
    return out


def _run(port: int, acceptors: int, get: str, incr: str) -> list:
    with _connect(port, acceptors) as c:
        c.command("FLUSHALL")
        sha_get = c.command("SCRIPT", "LOAD", get).decode()
        sha_incr = c.command("SCRIPT", "LOAD", incr).decode()
        c.command("CONFIG", "RESETSTAT")
        for key in (OWN, OTHER):  # settled, and compiled on both shards
            c.call("EVALSHA", sha_get, "1", key)
            c.call("EVALSHA", sha_incr, "1", key)
        commands = [
            ["EVALSHA", sha_get, "1", OWN],  # the shortcut: the client waits
            ["EVALSHA", sha_incr, "1", OTHER],
            ["evalsha", sha_get, "1", OTHER],
            ["EVALSHA", sha_incr, "1", OWN],
            ["EvalSha", sha_incr, "1", OWN],  # another spelling
            ["EVALSHA_RO", sha_get, "1", OWN],
            ["evalsha_ro", sha_get, "1", OTHER],
            ["EVALSHA", sha_get.upper(), "1", OWN],
            ["EVALSHA", "0" * 40, "1", OWN],  # not cached: NOSCRIPT
            ["EVALSHA", sha_incr, "1", OTHER],
            ["EVALSHA_RO", sha_incr, "1", OWN],  # a write: refused
            ["EVALSHA", sha_get, "2", OWN, OWN],
            ["EVALSHA", sha_get, "x", OWN],
            ["EVALSHA", sha_incr, "1", OWN],
            ["GET", OWN],  # waits for the scripts
            ["EVALSHA", sha_incr, "1", OTHER],
            ["INCR", OTHER],
        ]
        c.sock.sendall(b"".join(encode_command(*command) for command in commands))
        replies = [c.read() for _ in commands]
        return [replies, c.call("GET", OWN), c.call("GET", OTHER), _counts(c)]


def test_evalshas_pipelined_behind_a_shortcut(servers):
    real, ours, acceptors = servers
    tag = uuid.uuid4().hex
    get = f"-- {tag}\nreturn redis.call('get', KEYS[1])"
    incr = f"-- {tag}\nreturn redis.call('incr', KEYS[1])"
    expected = _run(real, 1, get, incr)
    assert expected[1:3] == [b"$1\r\n4\r\n", b"$1\r\n5\r\n"]
    assert _run(ours, acceptors, get, incr) == expected
