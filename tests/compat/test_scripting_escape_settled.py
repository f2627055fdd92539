"""A client's commands behind a script that escapes run after its run
again, as in Redis, also when the acceptor has seen the script run to its
end without escaping before (``ScriptCache.settled``) and inside
MULTI/EXEC.

A script that calls a key of another shard than its declared keys' is
stopped by its worker, undone, and run again across shards (see
``shardkv.acceptor.scripting``).  Each test first runs the script once so
that it does not escape (so the acceptor remembers it as settled), or
queues it in a transaction, then sends a run that escapes and what the
client sends behind it in one write, against redis-server 7.0.15, with one
acceptor and with two.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command

SHARDS = 2
OWN, OTHER = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
# Sets KEYS[1], and ARGV[1] too when it is not empty: with an empty ARGV[1]
# it stays on its shard, with OTHER it escapes.
BODY = "redis.call('set', KEYS[1], 'a')\nif ARGV[1] ~= '' then redis.call('set', ARGV[1], 'b') end\nreturn 1"


@pytest.fixture
def servers(redis_and_shardkv_k12) -> tuple[int, int, int]:
    """(redis-server's port, shardkv's port, its acceptors: 1, then 2)."""
    return redis_and_shardkv_k12


def _fresh(body: str) -> str:
    """``body`` as a script no server has seen."""
    return f"-- {uuid.uuid4().hex}\n{body}"


def _connect(port: int, acceptors: int, index: int = 0) -> RespClient:
    return client_on(port, index, k=acceptors) if acceptors > 1 else RespClient(port, timeout=20)


def _values(port: int) -> list:
    with RespClient(port, timeout=20) as other:
        return [other.call("GET", OWN), other.call("GET", OTHER)]


def _send(c: RespClient, commands: list[list[str]]) -> list:
    """The exact replies to ``commands``, sent in one write."""
    c.sock.sendall(b"".join(encode_command(*command) for command in commands))
    return [c.read() for _ in commands]


def _settled_then(port: int, acceptors: int, first: list[str], commands: list[list[str]]) -> list:
    """Run ``first`` (a script's run that stays on its shard), then
    ``commands`` in one write, on one connection: their replies, then the
    values of both keys."""
    with _connect(port, acceptors) as c:
        c.command("FLUSHALL")
        assert c.call(*first) == b":1\r\n"
        replies = _send(c, commands)
    return [*replies, *_values(port)]


def _same(servers, first: list[str], commands: list[list[str]]) -> list:
    real, ours, acceptors = servers
    expected = _settled_then(real, 1, first, commands)
    assert _settled_then(ours, acceptors, first, commands) == expected
    return expected


def test_a_set_behind_a_settled_eval_that_escapes_runs_after_it(servers):
    script = _fresh(BODY)
    got = _same(
        servers,
        ["EVAL", script, "1", OWN, ""],
        [["EVAL", script, "1", OWN, OTHER], ["SET", OWN, "z"], ["SET", OTHER, "y"]],
    )
    assert got[-2:] == [b"$1\r\nz\r\n", b"$1\r\ny\r\n"]


def test_a_set_behind_a_settled_evalsha_that_escapes_runs_after_it(servers):
    script = _fresh(BODY)
    sha = {RespClient(port).command("SCRIPT", "LOAD", script) for port in servers[:2]}.pop().decode()
    got = _same(
        servers,
        ["EVALSHA", sha, "1", OWN, ""],
        [["EVALSHA", sha, "1", OWN, OTHER], ["SET", OWN, "z"], ["GET", OTHER], ["INCR", OWN]],
    )
    assert got[1:3] == [b"+OK\r\n", b"$1\r\nb\r\n"]
    assert got[-2:] == [b"$1\r\nz\r\n", b"$1\r\nb\r\n"]


def _library(name: str, escapes: bool) -> str:
    other = "  redis.call('set', args[1], 'b')\n" if escapes else ""
    return (
        f"#!lua name={name}\n"
        f"redis.register_function('{name}', function(keys, args)\n"
        f"  redis.call('set', keys[1], 'a')\n{other}  return 1\nend)"
    )


def test_an_fcall_of_a_function_replaced_through_another_acceptor_keeps_the_order(servers):
    # The function settles on the client's acceptor; another client (on the
    # other acceptor, with two) replaces it by one that escapes.
    real, ours, acceptors = servers
    name = "f" + uuid.uuid4().hex[:12]

    def run(port: int, k: int) -> list:
        with _connect(port, k) as c, _connect(port, k, index=1 if k > 1 else 0) as loader:
            c.command("FLUSHALL")
            assert loader.call("FUNCTION", "LOAD", _library(name, False)).startswith(b"$")
            assert c.call("FCALL", name, "1", OWN, OTHER) == b":1\r\n"
            assert loader.call("FUNCTION", "LOAD", "REPLACE", _library(name, True)).startswith(b"$")
            replies = _send(c, [["FCALL", name, "1", OWN, OTHER], ["SET", OWN, "z"], ["SET", OTHER, "y"]])
            loader.call("FUNCTION", "DELETE", name)
        return [*replies, *_values(port)]

    expected = run(real, 1)
    assert run(ours, acceptors) == expected
    assert expected[-2:] == [b"$1\r\nz\r\n", b"$1\r\ny\r\n"]


def _in_multi(port: int, acceptors: int, commands: list[list[str]]) -> list:
    with _connect(port, acceptors) as c:
        c.command("FLUSHALL")
        replies = _send(c, commands)
    return [*replies, *_values(port)]


def _same_in_multi(servers, commands: list[list[str]]) -> list:
    real, ours, acceptors = servers
    expected = _in_multi(real, 1, commands)
    assert _in_multi(ours, acceptors, commands) == expected
    return expected


@pytest.mark.parametrize("settled", [False, True], ids=["first", "settled"])
def test_a_set_queued_behind_an_escaping_script_runs_after_it(servers, settled):
    script = _fresh(BODY)
    commands = [["MULTI"], ["EVAL", script, "1", OWN, OTHER], ["SET", OWN, "z"], ["EXEC"]]
    if settled:
        commands = [["EVAL", script, "1", OWN, ""], *commands]
    got = _same_in_multi(servers, commands)
    assert got[-2:] == [b"$1\r\nz\r\n", b"$1\r\nb\r\n"]


def test_a_transaction_with_an_escaping_script_between_its_writes(servers):
    script = _fresh(BODY)
    commands = [
        ["MULTI"],
        ["SET", OTHER, "x"],
        ["EVAL", script, "1", OWN, OTHER],
        ["APPEND", OTHER, "y"],
        ["GET", OWN],
        ["EXEC"],
    ]
    got = _same_in_multi(servers, commands)
    assert got[-2:] == [b"$1\r\na\r\n", b"$2\r\nby\r\n"]


def test_a_set_pipelined_behind_an_exec_with_an_escaping_script_runs_after_it(servers):
    script = _fresh(BODY)
    commands = [
        ["MULTI"],
        ["EVAL", script, "1", OWN, OTHER],
        ["EXEC"],
        ["SET", OWN, "z"],
        ["SET", OTHER, "y"],
    ]
    got = _same_in_multi(servers, commands)
    assert got[-2:] == [b"$1\r\nz\r\n", b"$1\r\ny\r\n"]


# Spins two seconds on its shard (OWN's), reading TIME.
BUSY = (
    "local t = redis.call('time')\nlocal start = t[1] * 1000000 + t[2]\nwhile true do\n"
    "  local now = redis.call('time')\n  if now[1] * 1000000 + now[2] - start > 2000000 then break end\n"
    "end\nreturn 1"
)


def _behind_a_busy_script(port: int, acceptors: int) -> list:
    """An EVALSHA (taking the shortcut in shardkv) and a GET pipelined while
    another client's script runs, before busy-reply-threshold: Redis
    reads them at the threshold and answers both ``-BUSY``."""
    with _connect(port, acceptors) as runner, _connect(port, acceptors) as c:
        runner.command("FLUSHALL")
        runner.command("CONFIG", "SET", "busy-reply-threshold", "1000")
        sha = c.command("SCRIPT", "LOAD", "return redis.call('get', KEYS[1])").decode()  # type: ignore[union-attr]
        assert c.call("EVALSHA", sha, "1", OWN) == b"$-1\r\n"  # (settled: the next one takes the shortcut)
        runner.send("EVAL", BUSY, "1", OWN)
        # The script runs, not busy yet: 0.5 s leaves it time to start on a
        # loaded machine (0.3 s was once too little at load 22), well before
        # the 1 s threshold.
        time.sleep(0.5)
        replies = _send(c, [["EVALSHA", sha, "1", OWN], ["GET", OWN]])
        got = [runner.read(), *(r.split(b" ")[0] for r in replies)]
        runner.command("CONFIG", "SET", "busy-reply-threshold", "5000")
    return got


def test_a_shortcut_refused_busy_lets_the_commands_behind_it_run(servers):
    real, ours, acceptors = servers
    expected = _behind_a_busy_script(real, 1)
    assert expected == [b":1\r\n", b"-BUSY", b"-BUSY"]
    assert _behind_a_busy_script(ours, acceptors) == expected
