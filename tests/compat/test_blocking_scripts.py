"""A client blocked on a key that a script writes, or whose stream a write
takes away, against both servers.

Redis serves a blocked client once the script (or the EXEC) that wrote its
key has ended, on the state the script left; a blocked XREADGROUP whose
stream is deleted or whose group is destroyed fails with an error of its
own.  Each case blocks a client, runs the writes on another connection,
then ``CLIENT UNBLOCK``s the blocked one: 0 and the served reply if the
writes served it, 1 and a null if they did not, on either server, with no
wait for something that may not come (where the writes fail the command,
its reply comes without).  shardkv runs with 1 shard, with 2
(two acceptors, the blocked client on the other one, which
``$SHARDKV_TEST_ACCEPTORS`` does not change) and with 4 (the session's);
``A`` and ``B`` are keys of two different shards (of one where there is one).
"""

from __future__ import annotations

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command, parse_info
from tests.support.servers import start_shardkv
from tests.support.waits import WAIT, read_or_error, reply_or_error, wait_blocked, wait_called

PUSH = "return redis.call('rpush', KEYS[1], 'x')"
PUSH_AND_SET = "redis.call('set', KEYS[2], 'v') return redis.call('rpush', KEYS[1], 'x')"
LIBRARY = (
    "#!lua name=blockscripts\n"
    "redis.register_function('push', function(keys, args) return redis.call('rpush', keys[1], args[1]) end)"
)


def _group(*keys: str):
    def setup(c: RespClient, a: str, b: str) -> None:
        for key in keys:
            c.command("XGROUP", "CREATE", a if key == "A" else b, "g", "$", "MKSTREAM")

    return setup


# name: (setup, the blocked command, the writes); "A", "B" and "E" ({A}'s
# other key) stand for the keys, "SHA" for PUSH's SHA1.
CASES = {
    "eval-rpush": (None, ["BLPOP", "A", 0], [["EVAL", PUSH, 1, "A"]]),
    "evalsha-rpush": (None, ["BLPOP", "A", 0], [["EVALSHA", "SHA", 1, "A"]]),
    "fcall-rpush": (None, ["BRPOP", "A", 0], [["FCALL", "push", 1, "A", "y"]]),
    "eval-rpush-then-lpop": (
        None,
        ["BLPOP", "A", 0],
        [["EVAL", "redis.call('rpush', KEYS[1], 'x') return redis.call('lpop', KEYS[1])", 1, "A"]],
    ),
    "eval-two-shards": (None, ["BLPOP", "A", 0], [["EVAL", PUSH_AND_SET, 2, "A", "B"]]),
    "eval-lmove-from-other-shard": (
        lambda c, a, b: c.command("RPUSH", b, "s"),
        ["BLPOP", "A", 0],
        [["EVAL", "return redis.call('lmove', KEYS[2], KEYS[1], 'left', 'right')", 2, "A", "B"]],
    ),
    "eval-zadd": (
        None,
        ["BZPOPMIN", "A", 0],
        [["EVAL", "return redis.call('zadd', KEYS[1], 1, 'm')", 1, "A"]],
    ),
    "eval-xadd-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "A", "$"],
        [["EVAL", "return redis.call('xadd', KEYS[1], '5-1', 'f', 'v')", 1, "A"]],
    ),
    "eval-xadd-xreadgroup": (
        _group("A"),
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "A", ">"],
        [["EVAL", "return redis.call('xadd', KEYS[1], '5-1', 'f', 'v')", 1, "A"]],
    ),
    "eval-del-xreadgroup": (
        _group("A"),
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "A", ">"],
        [["EVAL", "return redis.call('del', KEYS[1])", 1, "A"]],
    ),
    "eval-blmove": (
        None,
        ["BLMOVE", "A", "E", "LEFT", "RIGHT", 0],
        [["EVAL", PUSH, 1, "A"], ["LRANGE", "E", 0, -1]],
    ),
    "eval-blmpop": (None, ["BLMPOP", 0, 1, "A", "LEFT"], [["EVAL", PUSH, 1, "A"]]),
    "eval-in-exec": (None, ["BLPOP", "A", 0], [["MULTI"], ["EVAL", PUSH, 1, "A"], ["SET", "B", 1], ["EXEC"]]),
    "eval-cross-shard-waiter": (None, ["BLPOP", "B", "A", 0], [["EVAL", PUSH, 1, "A"]]),
    "xreadgroup-two-shards-del": (
        _group("A", "B"),
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "A", "B", ">", ">"],
        [["DEL", "B"]],
    ),
    "xreadgroup-two-shards-set": (
        _group("A", "B"),
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "A", "B", ">", ">"],
        [["SET", "B", "s"]],
    ),
    "xreadgroup-two-shards-destroy": (
        _group("A", "B"),
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "A", "B", ">", ">"],
        [["XGROUP", "DESTROY", "B", "g"]],
    ),
    "xreadgroup-two-shards-xadd": (
        _group("A", "B"),
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "A", "B", ">", ">"],
        [["XADD", "B", "7-1", "f", "v"]],
    ),
}

# Cases whose writes fail the blocked command: its reply comes without
# CLIENT UNBLOCK, which is not sent (shardkv's CLIENT UNBLOCK through another
# acceptor may overtake the wake of a blocked XREADGROUP across shards: see
# README, "Blocking across shards").
FAILS = frozenset({"xreadgroup-two-shards-del", "xreadgroup-two-shards-set", "xreadgroup-two-shards-destroy"})


@pytest.fixture(scope="module", params=["1-shard", "2-shards-2-acceptors", "4-shards"])
def shardkv(request, ports):
    """(port, shards, acceptors) of a shardkv to compare with redis-server."""
    if request.param == "4-shards":
        proc = request.getfixturevalue("shardkv_proc")
        yield proc.port, 4, proc.acceptors
        return
    shards, acceptors = (1, 1) if request.param == "1-shard" else (2, 2)
    proc = start_shardkv(shards=shards, acceptors=acceptors)
    yield proc.port, shards, acceptors
    proc.stop()


def _run(port: int, shards: int, acceptors: int, case: str) -> tuple:
    """The case on the server at ``port``: the writes' replies, CLIENT
    UNBLOCK's, the blocked command's, and each key's type and length, with
    the keys named A, B, E."""
    setup, blocked, writes = CASES[case]
    a = key_on(0, "bsa", shards) if shards > 1 else "bsa"
    b = key_on(1, "bsb", shards) if shards > 1 else "bsb"
    e = "{%s}e" % a
    names = {"A": a, "B": b, "E": e}
    if acceptors > 1:
        c, waiter = client_on(port, 0, k=acceptors), client_on(port, 1, k=acceptors)
    else:
        c, waiter = RespClient(port, timeout=WAIT), RespClient(port, timeout=WAIT)
    try:
        c.command("DEL", a, b, e)
        c.command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
        sha = c.command("SCRIPT", "LOAD", PUSH)
        if setup is not None:
            setup(c, a, b)
        waiter_id = c.command("CLIENT", "ID") and waiter.command("CLIENT", "ID")
        c.command("CONFIG", "RESETSTAT")
        waiter.send(*(names.get(x, x) if type(x) is str else x for x in blocked))
        wait_blocked(c, 1)
        # ...and its first run done (shardkv counts a client blocked as
        # soon as its command across shards comes, before that command's
        # first try): both servers count the call when the command blocks.
        wait_called(c, str(blocked[0]))
        replies = [reply_or_error(c, *(sha if x == "SHA" else names.get(x, x) for x in w)) for w in writes]
        unblocked = None if case in FAILS else reply_or_error(c, "CLIENT", "UNBLOCK", waiter_id)
        served = read_or_error(waiter)
        wait_blocked(c, 0)
        state = []
        for key in (a, b, e):
            kind = c.command("TYPE", key)
            length = {b"list": "LLEN", b"zset": "ZCARD", b"stream": "XLEN"}.get(kind)  # type: ignore[call-overload]
            state.append((kind, c.command(length, key) if length else None))
        # The blocked command's counts and the errors, as Redis counts a
        # client it served (or CLIENT UNBLOCK unblocked).
        info = parse_info(c.command("INFO", "commandstats", "errorstats"))  # type: ignore[arg-type]
        row = info.get("cmdstat_" + str(blocked[0]).lower(), "")
        counts = [f for f in row.split(",") if f.split("=")[0] in ("calls", "rejected_calls", "failed_calls")]
        counts += sorted(f"{k}={v}" for k, v in info.items() if k.startswith("errorstat_"))
        c.command("DEL", a, b, e)
        c.command("FUNCTION", "DELETE", "blockscripts")
        text = repr((replies, unblocked, served, state, counts))
        for name, key in sorted(names.items(), key=lambda item: -len(item[1])):  # {A}e before A
            text = text.replace(key, name)
        return text  # type: ignore[return-value]
    finally:
        c.close()
        waiter.close()


@pytest.mark.parametrize("case", list(CASES))
def test_blocked_client_after_script_or_stream_loss(ports, shardkv, case):
    port, shards, acceptors = shardkv
    if shards == 1 and "two-shards" in case:
        pytest.skip("one shard: the same as the one-shard cases")
    expected = _run(ports["redis"], shards, 1, case)
    assert _run(port, shards, acceptors, case) == expected


# Pipelined EVALSHAs beside a blocked client (issue 22): Redis serves the
# client that a script made ready right after that script, before the
# next command, so the next script sees what the pop or move took.  The
# scripts' replies, the blocked command's, and what a command behind
# them reads, against both servers.  Each script is run once before the
# client blocks, so that shardkv's acceptor takes the shortcut (and its
# pipelined run, ``behind_shortcuts``) for it.  "E" is a key of A's
# shard that no client waits on: a script declaring it writes A
# undeclared, on A's shard.  With one shard, every wait is that shard's
# (its pops and moves served in place, after each script).
PUSH_ARGV = "redis.call('rpush', ARGV[1], ARGV[2]) return redis.call('llen', ARGV[1])"
LLEN_RO = "return redis.call('llen', ARGV[1])"
XADD_ARGV = "return redis.call('xadd', ARGV[1], ARGV[2], 'f', 'v')"


def _pushes(key: str, *items: str) -> list:
    return [("EVALSHA", PUSH_ARGV, key, "A", item) for item in items]


# name: (the blocked command, the pipelined commands, EVALSHAs as
# (spelling, script, its key, its arguments...)[, set-up]).
PIPELINED: dict[str, tuple] = {
    "blpop-one-key": (["BLPOP", "A", 0], _pushes("A", "x1", "x2", "x3")),
    "blpop-two-shards": (["BLPOP", "A", "B", 0], _pushes("A", "x1", "x2", "x3")),
    "blpop-two-shards-undeclared": (["BLPOP", "A", "B", 0], _pushes("E", "x1", "x2", "x3")),
    "blmove-two-shards": (
        ["BLMOVE", "A", "B", "LEFT", "RIGHT", 0],
        [*_pushes("A", "x1", "x2"), ["LRANGE", "B", 0, -1]],
    ),
    "blmove-two-shards-undeclared": (
        ["BLMOVE", "A", "B", "LEFT", "RIGHT", 0],
        [*_pushes("E", "x1", "x2", "x3"), ["LRANGE", "B", 0, -1]],
    ),
    "brpoplpush-after-a-read": (
        ["BRPOPLPUSH", "A", "B", 0],
        [("EVALSHA_RO", LLEN_RO, "E", "A"), *_pushes("E", "x1", "x2"), ("EVALSHA_RO", LLEN_RO, "E", "A")],
    ),
    "blmove-after-its-destination": (
        ["BLMOVE", "A", "B", "LEFT", "RIGHT", 0],
        [("EVALSHA", PUSH_ARGV, "F", "B", "y"), *_pushes("E", "x1", "x2"), ["LRANGE", "B", 0, -1]],
    ),
    # An EXEC of a script that adds to A serves the XREADGROUP that entry
    # alone: the script behind the EXEC adds its own after the read.
    "xreadgroup-after-exec-of-a-script": (
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "A", "B", ">", ">"],
        [
            ["MULTI"],
            ("EVALSHA", XADD_ARGV, "E", "A", "5-1"),
            ["EXEC"],
            ("EVALSHA", XADD_ARGV, "E", "A", "5-2"),
        ],
        _group("A", "B"),
    ),
}


def _run_pipelined(port: int, shards: int, acceptors: int, case: str) -> str:
    """The case on the server at ``port``: the pipelined commands'
    replies, the blocked command's, and A's and B's types, with the keys
    named A, B, E and F (a key of B's shard)."""
    blocked, commands, *setup = PIPELINED[case]
    a = key_on(0, "psa", shards) if shards > 1 else "psa"
    b = key_on(1, "psb", shards) if shards > 1 else "psb"
    names = {"A": a, "B": b, "E": "{%s}e" % a, "F": "{%s}f" % b}
    if acceptors > 1:  # (the waiter on the other acceptor)
        c = client_on(port, 0, k=acceptors)
        waiter = client_on(port, 1, k=acceptors)
    else:
        c, waiter = RespClient(port, timeout=WAIT), RespClient(port, timeout=WAIT)
    try:
        c.command("DEL", *names.values())
        shas = {}
        for command in commands:  # each script run once (on its key alone)
            if type(command) is tuple:
                name, script, key, *rest = command
                shas[script] = c.command("SCRIPT", "LOAD", script)
                c.command(name, shas[script], 1, names[key], names[key], *rest[1:])
        c.command("DEL", *names.values())
        for made in setup:
            made(c, a, b)
        c.command("CONFIG", "RESETSTAT")
        waiter.send(*(names.get(x, x) if type(x) is str else x for x in blocked))
        wait_blocked(c, 1)
        wait_called(c, str(blocked[0]))
        pipeline = b""
        for command in commands:
            if type(command) is tuple:
                name, script, key, *rest = command
                pipeline += encode_command(
                    name, shas[script], 1, names[key], *(names.get(x, x) for x in rest)
                )
            else:
                pipeline += encode_command(*(names.get(x, x) if type(x) is str else x for x in command))
        c.sock.sendall(pipeline)
        replies = [read_or_error(c) for _ in commands]
        served = read_or_error(waiter)
        wait_blocked(c, 0)
        text = repr((replies, served, c.command("TYPE", a), c.command("TYPE", b)))
        c.command("DEL", *names.values())
        for name, key in sorted(names.items(), key=lambda item: -len(item[1])):  # {A}e before A
            text = text.replace(key, name)
        return text
    finally:
        c.close()
        waiter.close()


@pytest.mark.parametrize("case", list(PIPELINED))
def test_pipelined_scripts_beside_a_blocked_client(ports, shardkv, case):
    port, shards, acceptors = shardkv
    expected = _run_pipelined(ports["redis"], shards, 1, case)
    assert _run_pipelined(port, shards, acceptors, case) == expected
