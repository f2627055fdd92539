"""Blocking commands in INFO commandstats, errorstats and
``total_commands_processed``, compared with redis-server 7.0.15.

Redis counts a blocking command when its ``call()`` returns, blocked or
not: a call (and ``total_commands_processed``); one that is served later
adds no call, only its time and latency and, if it failed, a failed call
(``updateStatsOnUnblock``); one that times out adds nothing; one that
CLIENT UNBLOCK unblocks is a failed call whatever the reason, and with
ERROR its ``-UNBLOCKED`` is CLIENT UNBLOCK's failure and an error reply.
Each case runs on keys of one shard and of two, with the blocked client
and the one that serves or unblocks it on different acceptors when there
are two.
"""

from __future__ import annotations

import time

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, parse_info

A, B = key_on(0, "sbk", shards=2), key_on(1, "sbk", shards=2)


def _counts(c: RespClient) -> dict[str, str]:
    """Each command's calls, rejected and failed calls, each error code's
    count, total_error_replies, and total_commands_processed less the INFO
    calls (the waits for a blocked client poll INFO)."""
    info = parse_info(c.command("INFO", "everything"))  # type: ignore[arg-type]
    out = {}
    infos = 0
    for name, value in info.items():
        if name.startswith("cmdstat_"):
            fields = dict(f.split("=") for f in value.split(","))
            if name == "cmdstat_info":
                infos = int(fields["calls"])
                continue
            out[name] = ",".join(fields[f] for f in ("calls", "rejected_calls", "failed_calls"))
        elif name.startswith("errorstat_") or name == "total_error_replies":
            out[name] = value
    out["processed"] = str(int(info["total_commands_processed"]) - infos)
    return out


def _wait_blocked(c: RespClient, n: int) -> None:
    for _ in range(1000):
        if parse_info(c.command("INFO", "clients"))["blocked_clients"] == str(n):  # type: ignore[arg-type]
            return
        time.sleep(0.01)
    raise AssertionError(f"blocked_clients never reached {n}")


def _served(keys: list[str]):
    def run(c: RespClient, b: RespClient, bid: int) -> None:
        b.send("BLPOP", *keys, 0)
        _wait_blocked(c, 1)
        c.command("RPUSH", keys[-1], "x")
        assert b.read_reply() == [keys[-1].encode(), b"x"]

    return run


def _timed_out(*command: str | int):
    def run(c: RespClient, b: RespClient, bid: int) -> None:
        assert b.command(*command) is None

    return run


def _unblocked(reason: str, command: list):
    def run(c: RespClient, b: RespClient, bid: int) -> None:
        b.send(*command)
        _wait_blocked(c, 1)
        assert c.command("CLIENT", "UNBLOCK", bid, reason) == 1
        b.read_reply()

    return run


def _xread_served(keys: list[str]):
    def run(c: RespClient, b: RespClient, bid: int) -> None:
        b.send("XREAD", "BLOCK", 0, "STREAMS", *keys, *("$" for _ in keys))
        _wait_blocked(c, 1)
        c.command("XADD", keys[-1], "1-1", "f", "v")
        assert b.read_reply()[0][0] == keys[-1].encode()  # type: ignore[index]

    return run


def _move_fails(c: RespClient, b: RespClient, bid: int) -> None:
    """Served with an error: BLMOVE's destination holds a string by then."""
    b.send("BLMOVE", A, A + "d", "LEFT", "LEFT", 0)
    _wait_blocked(c, 1)
    c.command("SET", A + "d", "s")
    c.command("RPUSH", A, "x")
    assert str(b.read_reply()).startswith("WRONGTYPE")


CASES = {
    "blpop timed out, one shard": _timed_out("BLPOP", A, "0.05"),
    "blpop timed out, two shards": _timed_out("BLPOP", A, B, "0.05"),
    "bzpopmin timed out": _timed_out("BZPOPMIN", A, "0.05"),
    "xread timed out, one shard": _timed_out("XREAD", "BLOCK", 50, "STREAMS", A, "$"),
    "xread timed out, two shards": _timed_out("XREAD", "BLOCK", 50, "STREAMS", A, B, "$", "$"),
    "blpop served, one shard": _served([A]),
    "blpop served, two shards": _served([A, B]),
    "xread served, one shard": _xread_served([A]),
    "xread served, two shards": _xread_served([A, B]),
    "blmove served with an error": _move_fails,
    "unblock timeout, one shard": _unblocked("TIMEOUT", ["BLPOP", A, 0]),
    "unblock error, one shard": _unblocked("ERROR", ["BLPOP", A, 0]),
    "unblock timeout, two shards": _unblocked("TIMEOUT", ["BLPOP", A, B, 0]),
    "unblock error, two shards": _unblocked("ERROR", ["BLPOP", A, B, 0]),
    "unblock error, xread of two shards": _unblocked(
        "ERROR", ["XREAD", "BLOCK", 0, "STREAMS", A, B, "$", "$"]
    ),
    "unblock timeout, wait": _unblocked("TIMEOUT", ["WAIT", 1, 0]),
    "unblock error, wait": _unblocked("ERROR", ["WAIT", 1, 0]),
}


def _two_clients(port: int, acceptors: int) -> tuple[RespClient, RespClient]:
    """Two connections: on one acceptor, or on the first two of several."""
    if acceptors == 1:
        return RespClient(port), RespClient(port)
    return client_on(port, 0, k=acceptors), client_on(port, 1, k=acceptors)


def _scenario(port: int, acceptors: int) -> dict[str, dict[str, str]]:
    c, b = _two_clients(port, acceptors)
    bid = int(b.command("CLIENT", "ID"))  # type: ignore[arg-type]
    seen = {}
    try:
        for name, run in CASES.items():
            c.command("DEL", A, B, A + "d")
            c.command("CONFIG", "RESETSTAT")
            run(c, b, bid)
            seen[name] = _counts(c)
    finally:
        c.command("DEL", A, B, A + "d")
        c.close()
        b.close()
    return seen


@pytest.mark.slow
def test_blocking_commands_are_counted_as_redis_counts_them(redis_and_shardkv_k12) -> None:
    real, ours, acceptors = redis_and_shardkv_k12
    want = _scenario(real, 1)
    assert want["blpop timed out, one shard"]["cmdstat_blpop"] == "1,0,0"
    assert want["unblock error, one shard"]["cmdstat_blpop"] == "1,0,1"
    got = _scenario(ours, acceptors)
    assert {name: got[name] for name in CASES if got[name] != want[name]} == {}
    assert got == want


def _unblock_logged(port: int, acceptors: int) -> list:
    c, b = _two_clients(port, acceptors)
    try:
        bid = int(b.command("CLIENT", "ID"))  # type: ignore[arg-type]
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        b.send("BLPOP", A, 0)
        _wait_blocked(c, 1)
        c.command("SLOWLOG", "RESET")
        assert c.command("CLIENT", "UNBLOCK", bid) == 1
        assert b.read_reply() is None
        entries = c.command("SLOWLOG", "GET", -1)
    finally:
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.close()
        b.close()
    # In any order: shardkv logs the unblocked command after CLIENT UNBLOCK
    # (see the README).
    return sorted(entry[3][:2] for entry in entries)  # type: ignore[union-attr,index]


def test_a_command_client_unblock_unblocks_is_logged_as_slow(redis_and_shardkv_k12) -> None:
    """Redis logs it (with no arguments: CLIENT UNBLOCK has reset them)."""
    real, ours, acceptors = redis_and_shardkv_k12
    want = _unblock_logged(real, 1)
    assert want == [[], [b"CLIENT", b"UNBLOCK"], [b"SLOWLOG", b"RESET"]]
    assert _unblock_logged(ours, acceptors) == want


# The test's own commands (see _logged).
_OWN = ("info", "config|set", "config|resetstat", "slowlog|reset", "slowlog|get", "client|id")


def _logged(c: RespClient) -> tuple[list, list]:
    """The slow log's entries, oldest first (CLIENT UNBLOCK's without its
    ID, and in any order with it), less the test's own (CONFIG, SLOWLOG, INFO, CLIENT
    ID); and the commands that have a latency sample."""
    entries = []
    for entry in reversed(c.command("SLOWLOG", "GET", -1)):  # type: ignore[arg-type]
        argv = [a.decode() for a in entry[3]]  # type: ignore[index]
        if argv[:1] and argv[0].lower() in ("config", "slowlog", "info") or argv[:2] == ["CLIENT", "ID"]:
            continue
        entries.append(" ".join(argv[:2] if argv[:2] == ["CLIENT", "UNBLOCK"] else argv))
    if "CLIENT UNBLOCK" in entries:
        entries.sort()  # shardkv logs the unblocked command after it (see the README)
    info = parse_info(c.command("INFO", "latencystats"))  # type: ignore[arg-type]
    sampled = sorted(
        name[len("latency_percentiles_usec_") :] for name in info if name.split("_")[-1] not in _OWN
    )
    return entries, sampled


def _wait_timed_out(c: RespClient, b: RespClient, bid: int) -> None:
    assert b.command("WAIT", 1, 50) == 0


def _blocked_then(*then: str | int, command: list):
    """``command`` blocks; another client runs ``then`` (an empty one:
    CLIENT UNBLOCK) and it is answered."""

    def run(c: RespClient, b: RespClient, bid: int) -> None:
        b.send(*command)
        _wait_blocked(c, 1)
        c.command(*then) if then else c.command("CLIENT", "UNBLOCK", bid)
        b.read_reply()

    return run


def _resetstat_while_blocked(command: list, write: list):
    """CONFIG RESETSTAT while ``command`` is blocked, then ``write`` serves it:
    its row has no call (Redis leaves it out of commandstats)."""

    def run(c: RespClient, b: RespClient, bid: int) -> None:
        b.send(*command)
        _wait_blocked(c, 1)
        c.command("CONFIG", "RESETSTAT")
        c.command(*write)
        assert b.read_reply()

    return run


def _memory_usage(c: RespClient, b: RespClient, bid: int) -> None:
    c.command("SET", A, "v")
    assert isinstance(b.command("MEMORY", "USAGE", A), int)
    script = "return redis.call('memory', 'usage', KEYS[1])"
    assert isinstance(b.command("EVAL", script, 1, A), int)


LOGGED = {
    "blpop timed out, two shards": _timed_out("BLPOP", A, B, "0.05"),
    "blmove timed out, two shards": _timed_out("BLMOVE", A, B, "LEFT", "RIGHT", "0.05"),
    "xreadgroup timed out, two shards": _timed_out(
        "XREADGROUP", "GROUP", "g", "c", "BLOCK", 50, "STREAMS", A, B, ">", ">"
    ),
    "wait timed out": _wait_timed_out,
    "blmove served, two shards": _blocked_then("RPUSH", A, "x", command=["BLMOVE", A, B, "LEFT", "RIGHT", 0]),
    "blpop unblocked, two shards": _blocked_then(command=["BLPOP", A, B, 0]),
    "xread served, two shards": _blocked_then(
        "XADD", B, "1-1", "f", "v", command=["XREAD", "BLOCK", 0, "STREAMS", A, B, "$", "$"]
    ),
    "resetstat while blocked, one shard": _resetstat_while_blocked(["BLPOP", A, 0], ["RPUSH", A, "x"]),
    "resetstat while blocked, two shards": _resetstat_while_blocked(
        ["BLMOVE", A, B, "LEFT", "LEFT", 0], ["RPUSH", A, "x"]
    ),
    "memory usage": _memory_usage,
}


def _logged_scenario(port: int, acceptors: int) -> dict[str, tuple]:
    c, b = _two_clients(port, acceptors)
    bid = int(b.command("CLIENT", "ID"))  # type: ignore[arg-type]
    seen = {}
    try:
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        for name, run in LOGGED.items():
            c.command("DEL", A, B)
            if "xreadgroup" in name:
                c.command("XGROUP", "CREATE", A, "g", "$", "MKSTREAM")
                c.command("XGROUP", "CREATE", B, "g", "$", "MKSTREAM")
            c.command("CONFIG", "RESETSTAT")
            c.command("SLOWLOG", "RESET")
            run(c, b, bid)
            seen[name] = (_counts(c), *_logged(c))
    finally:
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.command("DEL", A, B)
        c.close()
        b.close()
    return seen


@pytest.mark.slow
def test_blocking_commands_are_logged_and_sampled_as_redis_does(redis_and_shardkv_k12) -> None:
    """Redis's call() adds no latency sample and no slow log entry for a
    command that blocked: one that times out has none, one served has
    one of each (on a wait across shards too, XREAD's included); a WAIT
    that blocks has none; a command counted only where it runs (MEMORY
    USAGE) has one entry; a row with no call is left out."""
    real, ours, acceptors = redis_and_shardkv_k12
    want = _logged_scenario(real, 1)
    assert want["blpop timed out, two shards"][1:] == ([], [])
    assert want["blmove served, two shards"][1][-1] == f"BLMOVE {A} {B} LEFT RIGHT 0"
    assert "cmdstat_blpop" not in want["resetstat while blocked, one shard"][0]
    got = _logged_scenario(ours, acceptors)
    assert {name: (got[name], want[name]) for name in LOGGED if got[name] != want[name]} == {}
