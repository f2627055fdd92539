"""The commands a client pipelines behind a script that escapes for the
first time run after the script, as in Redis.

A script that calls a key of another shard than its declared keys' is
stopped by its worker, undone, and run again across shards (see
``shardkv.acceptor.scripting``).  Redis runs a client's commands in the
order it sent them, so a command pipelined right behind the script, on
the script's shard or on the other one, must see what the script wrote
and not be overwritten by it.  Each test sends a script the server has
not run yet (its first run is the one that escapes) and the commands
behind it in one write, against redis-server 7.0.15.  Run with
``SHARDKV_TEST_ACCEPTORS=2`` too.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command
from tests.support.servers import start_redis, start_shardkv

SHARDS = 2
OWN, OTHER = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[int, int]]:
    real = start_redis()
    ours = start_shardkv(shards=SHARDS)
    yield real.port, ours.port
    real.stop()
    ours.stop()


def _fresh(body: str) -> str:
    """``body`` as a script no server has seen (its first run escapes)."""
    return f"-- {uuid.uuid4().hex}\n{body}"


def _pipelined(port: int, commands: list[list[str]]) -> list:
    """The exact replies to ``commands``, sent in one write, then the values
    of both keys (another client's GETs, once every reply came)."""
    with RespClient(port, timeout=20) as c:
        c.command("FLUSHALL")
        c.sock.sendall(b"".join(encode_command(*command) for command in commands))
        replies = [c.read() for _ in commands]
    with RespClient(port, timeout=20) as other:
        return [*replies, other.call("GET", OWN), other.call("GET", OTHER)]


def _same(servers: tuple[int, int], commands: list[list[str]]) -> list:
    real, ours = servers
    expected = _pipelined(real, commands)
    assert _pipelined(ours, commands) == expected
    return expected


def test_a_set_pipelined_behind_an_escaping_script_runs_after_it(servers):
    script = _fresh("redis.call('set', KEYS[1], 'a')\nredis.call('set', ARGV[1], 'b')\nreturn 1")
    got = _same(servers, [["EVAL", script, "1", OWN, OTHER], ["SET", OWN, "z"]])
    assert got[-2:] == [b"$1\r\nz\r\n", b"$1\r\nb\r\n"]


def test_an_incr_pipelined_behind_an_escaping_script_counts_after_it(servers):
    script = _fresh("local n = redis.call('incr', KEYS[1])\nredis.call('get', ARGV[1])\nreturn n")
    got = _same(servers, [["EVAL", script, "1", OWN, OTHER], ["INCR", OWN], ["INCR", OWN]])
    assert got[:3] == [b":1\r\n", b":2\r\n", b":3\r\n"]


def test_a_get_pipelined_behind_an_escaping_script_sees_its_write_on_the_other_shard(servers):
    script = _fresh("redis.call('set', ARGV[1], 'w')\nreturn redis.call('get', KEYS[1])")
    got = _same(servers, [["SET", OWN, "v"], ["EVAL", script, "1", OWN, OTHER], ["GET", OTHER], ["GET", OWN]])
    assert got[2:4] == [b"$1\r\nw\r\n", b"$1\r\nv\r\n"]


def test_an_evalsha_of_a_loaded_script_that_escapes_first_keeps_the_order(servers):
    # SCRIPT LOAD compiles it on a shard: its first run still escapes there.
    script = _fresh("redis.call('set', KEYS[1], 'a')\nredis.call('set', ARGV[1], 'b')\nreturn 1")
    sha = {RespClient(port).command("SCRIPT", "LOAD", script) for port in servers}.pop().decode()
    got = _same(servers, [["EVALSHA", sha, "1", OWN, OTHER], ["SET", OWN, "z"], ["GET", OTHER]])
    assert got[1:3] == [b"+OK\r\n", b"$1\r\nb\r\n"]


def test_a_function_pipelined_behind_keeps_the_order(servers):
    name = "f" + uuid.uuid4().hex[:12]
    library = (
        f"#!lua name={name}\n"
        f"redis.register_function('{name}', function(keys, args)\n"
        "  redis.call('set', keys[1], 'a')\n  redis.call('set', args[1], 'b')\n  return 1\nend)"
    )
    for port in servers:
        RespClient(port).command("FUNCTION", "LOAD", library)
    got = _same(servers, [["FCALL", name, "1", OWN, OTHER], ["SET", OWN, "z"], ["SET", OTHER, "y"]])
    assert got[-2:] == [b"$1\r\nz\r\n", b"$1\r\ny\r\n"]


def _after_leaving(port: int, commands: list[list[str]]) -> list:
    """Send ``commands`` in one write and close at once, then the values of
    both keys once OWN is no longer the script's (or after 20 s)."""
    with RespClient(port, timeout=20) as c:
        c.command("FLUSHALL")
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"".join(encode_command(*command) for command in commands))
    with RespClient(port, timeout=20) as other:
        deadline = time.monotonic() + 20
        while other.call("GET", OWN) != b"$1\r\nz\r\n" and time.monotonic() < deadline:
            time.sleep(0.02)
        return [other.call("GET", OWN), other.call("GET", OTHER)]


def test_the_commands_behind_run_after_it_though_the_client_left(servers):
    # They wait for the run again, a wait of shardkv's own: Redis ran them as it read them.
    script = _fresh("redis.call('set', KEYS[1], 'a')\nredis.call('set', ARGV[1], 'b')\nreturn 1")
    commands = [["EVAL", script, "1", OWN, OTHER], ["SET", OWN, "z"]]
    real, ours = servers
    assert (
        _after_leaving(ours, commands) == _after_leaving(real, commands) == [b"$1\r\nz\r\n", b"$1\r\nb\r\n"]
    )


def test_a_function_not_found_first_still_waits_when_it_runs(servers):
    """An FCALL answered ``Function not found`` ran nothing: the function's
    first real run (it escapes) still makes the commands behind it wait."""
    name = "f" + uuid.uuid4().hex[:10]
    lib = (
        f"#!lua name={name}\nredis.register_function('{name}', function(keys, args)\n"
        "  redis.call('set', keys[1], 'a')\n  redis.call('set', args[1], 'b')\n  return 1\nend)"
    )
    for port in servers:
        with RespClient(port, timeout=20) as c:
            assert c.call("FCALL", name, "1", OWN, OTHER).startswith(b"-ERR Function not found")
            assert c.call("FUNCTION", "LOAD", lib) == b"$%d\r\n%s\r\n" % (len(name), name.encode())
    try:
        got = _same(servers, [["FCALL", name, "1", OWN, OTHER], ["SET", OWN, "z"]])
        assert got[-2:] == [b"$1\r\nz\r\n", b"$1\r\nb\r\n"]
    finally:
        for port in servers:
            with RespClient(port, timeout=20) as c:
                c.call("FUNCTION", "DELETE", name)
