"""SCRIPT FLUSH while a script's reply is on its way (shardkv issue 18).

The acceptor sends a script's body to a shard the first time, and only its
SHA1 once the shard's reply said it compiled it; a SCRIPT FLUSH read (or
heard from another acceptor) before that reply came flushes the shard
after the script, so the shard does not know it any more.  Redis never
answers EVAL with ``-NOSCRIPT``, and forgets a script loaded before a
flush.  Differential against redis-server, with one acceptor and two.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from lupa import lua51

from tests.support.acceptors import client_on, pair_on
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess, start_redis, start_shardkv

# A script that runs for 100 ms (its reply comes well after what follows it).
SLOW = (
    "local t = redis.call('TIME') local e = t[1] * 1e6 + t[2] + 100000 "
    "while true do local n = redis.call('TIME') if n[1] * 1e6 + n[2] >= e then break end end "
    "return 1"
)
SLOW_SHA = hashlib.sha1(SLOW.encode()).hexdigest()


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, ServerProcess]]:
    procs = {
        "redis": start_redis(),
        "k1": start_shardkv(shards=2, acceptors=1),
        "k2": start_shardkv(shards=2, acceptors=2),
    }
    yield procs
    for proc in procs.values():
        proc.stop()


def _norm(value: object) -> object:
    return ("error", str(value)) if isinstance(value, ErrorReply) else value


def _pipe(c: RespClient, *commands: tuple) -> list:
    for command in commands:
        c.send(*command)
    return [_norm(c.read_reply()) for _ in commands]


def _fresh(port: int) -> RespClient:
    c = RespClient(port)
    c.command("SCRIPT", "FLUSH")
    c.command("FLUSHALL")
    return c


def _both(servers: dict, kind: str, run) -> None:
    expected = run(servers["redis"].port)
    got = run(servers[kind].port)
    assert got == expected, f"redis replied {expected!r}, shardkv replied {got!r}"


KINDS = ["k1", "k2"]


def _same_through_two_clients(servers, run) -> None:
    """``run(a, b)`` gives the same through two clients of redis-server as
    through one client on each of shardkv's two acceptors."""
    real = servers["redis"].port
    a, b = RespClient(real), RespClient(real)
    expected = run(a, b)
    a.close()
    b.close()
    with pair_on(servers["k2"].port) as pair:
        got = run(*pair)
    assert got == expected, f"redis replied {expected!r}, shardkv replied {got!r}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("call", ["eval", "evalsha"])
def test_eval_after_a_flush_pipelined_behind_a_script(servers, kind, call):
    def run(port: int) -> list:
        c = _fresh(port)
        out = _pipe(c, ("EVAL", SLOW, 1, "k"))
        first = ("EVAL", SLOW, 1, "k") if call == "eval" else ("EVALSHA", SLOW_SHA, 1, "k")
        out += _pipe(c, first, ("SCRIPT", "FLUSH"))
        out += _pipe(c, ("EVAL", SLOW, 1, "k"))
        out += _pipe(c, ("EVAL", SLOW, 1, "k"), ("EVALSHA", SLOW_SHA, 1, "k"))
        c.close()
        return out

    _both(servers, kind, run)


@pytest.mark.parametrize("kind", KINDS)
def test_eval_after_a_flush_in_the_same_exec(servers, kind):
    def run(port: int) -> list:
        c = _fresh(port)
        out = _pipe(c, ("MULTI",), ("EVAL", "return 1", 1, "k"), ("SCRIPT", "FLUSH"), ("EXEC",))
        out += _pipe(c, ("EVAL", "return 1", 1, "k"))
        out += _pipe(c, ("EVAL", "return 1", 0))
        c.close()
        return out

    _both(servers, kind, run)


@pytest.mark.parametrize("kind", KINDS)
def test_a_script_loaded_before_a_flush_is_gone(servers, kind):
    sha = hashlib.sha1(b"return 7").hexdigest()

    def run(port: int) -> list:
        c = _fresh(port)
        out = _pipe(c, ("SCRIPT", "LOAD", "return 7"), ("SCRIPT", "FLUSH"))
        out += _pipe(c, ("SCRIPT", "EXISTS", sha))
        out += _pipe(c, ("EVALSHA", sha, 0))
        out += _pipe(c, ("EVAL", "return 7", 0), ("EVALSHA", sha, 0))
        c.close()
        return out

    _both(servers, kind, run)


def test_eval_after_another_acceptors_flush_during_its_script(servers):
    """At K=2 the flush comes from the other acceptor while the script
    runs (if the script has ended by then, nothing is tested, and nothing
    fails); Redis runs the flush after the script."""

    def run(a: RespClient, b: RespClient) -> list:
        a.command("SCRIPT", "FLUSH")
        out = _pipe(a, ("EVAL", SLOW, 1, "k"))
        a.send("EVAL", SLOW, 1, "k")
        time.sleep(0.02)  # acceptor 0 has sent it (not a condition of the outcome)
        out += _pipe(b, ("SCRIPT", "FLUSH"))
        out.append(_norm(a.read_reply()))
        out += _pipe(a, ("EVAL", SLOW, 1, "k"))
        out += _pipe(a, ("EVAL", SLOW, 1, "k"), ("EVALSHA", SLOW_SHA, 1, "k"))
        return out

    _same_through_two_clients(servers, run)


def test_eval_after_another_acceptors_flush_that_its_shard_runs_late(servers):
    """At K=2, acceptor 1's SCRIPT FLUSH waits at the shard behind a
    script of its own, while acceptor 0 (flushed already) sends a script
    with its body: the shard reads its pipes in turn, and may compile it
    before it runs the flush; the script's next EVAL must not answer
    -NOSCRIPT."""

    def run(a: RespClient, b1: RespClient, b2: RespClient) -> list:
        out = _pipe(a, ("SCRIPT", "FLUSH"), ("EVAL", "return 1", 0))
        b1.send("EVAL", SLOW, 0)
        time.sleep(0.02)  # the slow script runs (not a condition of the outcome)
        out += _pipe(b2, ("SCRIPT", "FLUSH"))
        a.send("EVAL", "return 1", 0)
        out.append(_norm(b1.read_reply()))
        out.append(_norm(a.read_reply()))
        out += _pipe(a, ("EVAL", "return 1", 0), ("EVAL", "return 1", 0))
        return out

    real = servers["redis"].port
    clients = [RespClient(real) for _ in range(3)]
    expected = run(*clients)
    port = servers["k2"].port
    ours = [client_on(port, 0), client_on(port, 1), client_on(port, 1)]
    got = run(*ours)
    for c in clients + ours:
        c.close()
    assert got == expected, f"redis replied {expected!r}, shardkv replied {got!r}"


def _sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()


@pytest.mark.parametrize("kind", KINDS)
def test_a_script_loaded_is_there_for_the_commands_pipelined_behind_it(servers, kind):
    """SCRIPT LOAD caches the script as it is read, not when its shard
    answers: an EVALSHA or SCRIPT EXISTS pipelined behind it finds it."""
    sha = _sha("return 9")

    def run(port: int) -> list:
        c = _fresh(port)
        out = _pipe(c, ("SCRIPT", "LOAD", "return 9"), ("EVALSHA", sha, 0), ("SCRIPT", "EXISTS", sha))
        out += _pipe(c, ("SCRIPT", "LOAD", "return 9"), ("SCRIPT", "FLUSH"), ("SCRIPT", "LOAD", "return 9"))
        out += _pipe(c, ("SCRIPT", "EXISTS", sha), ("EVALSHA", sha, 0), ("EVALSHA", sha, 1, "k"))
        out += _pipe(c, ("SCRIPT", "FLUSH"), ("SCRIPT", "LOAD", "return 9"), ("EVALSHA", sha, 1, "k"))
        c.close()
        return out

    _both(servers, kind, run)


@pytest.mark.parametrize("kind", KINDS)
def test_a_script_loaded_in_an_exec_is_there_for_the_rest_of_it(servers, kind):
    sha = _sha("return 9")

    def run(port: int) -> list:
        c = _fresh(port)
        out = _pipe(
            c,
            ("MULTI",),
            ("SCRIPT", "LOAD", "return 9"),
            ("SCRIPT", "FLUSH"),
            ("SCRIPT", "LOAD", "return 9"),
            ("SCRIPT", "EXISTS", sha),
            ("EXEC",),
        )
        out += _pipe(c, ("EVALSHA", sha, 0), ("EVALSHA", sha, 1, "x"))
        out += _pipe(
            c, ("MULTI",), ("SCRIPT", "LOAD", "return 8"), ("EVALSHA", _sha("return 8"), 0), ("EXEC",)
        )
        c.close()
        return out

    _both(servers, kind, run)


def _scripts_failed(c: RespClient) -> dict:
    """What INFO says of failed EVALSHA calls and errors by kind."""
    info = c.command("INFO", "ALL").decode()  # type: ignore[union-attr]
    return {
        line.split(":")[0]: line.split(":")[1]
        for line in info.splitlines()
        if line.startswith("errorstat_")
        or (line.startswith("cmdstat_evalsha:") and "failed_calls=0" not in line)
    }


def test_a_flush_answered_has_reached_every_shard(servers):
    """At K=2: SCRIPT FLUSH through acceptor 1, then (once it answered)
    SCRIPT LOAD and EVALSHA through acceptor 0.  Its +OK must mean every
    shard has run the flush: otherwise the shard may run it after the
    load, and acceptor 0, told by the shard that it compiled the script,
    sends the EVALSHA without its body (a -NOSCRIPT from the shard, even
    if then resent with the body, shows in INFO).  Bounded by count: the
    shard ran the flush late in about one try in five before."""

    def run(a: RespClient, b: RespClient) -> list:
        a.command("CONFIG", "RESETSTAT")
        out = []
        for i in range(60):
            body = "return %d" % (6000 + i)
            out += _pipe(b, ("SCRIPT", "FLUSH"))
            out += _pipe(a, ("SCRIPT", "LOAD", body))
            out += _pipe(a, ("EVALSHA", _sha(body), 0), ("EVALSHA", _sha(body), 1, "k"))
            out += _pipe(b, ("EVALSHA", _sha(body), 0), ("SCRIPT", "EXISTS", _sha(body)))
        out.append(_scripts_failed(a))
        return out

    _same_through_two_clients(servers, run)


def test_a_load_and_another_acceptors_flush_leave_both_caches_alike(servers):
    """At K=2: SCRIPT LOAD through acceptor 0 and SCRIPT FLUSH through
    acceptor 1 at once.  Either may come first, but both acceptors must
    then agree whether the script is cached (as Redis's one cache does):
    SCRIPT EXISTS and EVALSHA answer the same through each."""

    def run(a: RespClient, b: RespClient) -> list:
        disagree = []
        for i in range(40):
            body = "return %d" % (7000 + i)
            a.send("SCRIPT", "LOAD", body)
            b.send("SCRIPT", "FLUSH")
            a.read_reply()
            b.read_reply()
            seen = [_pipe(c, ("SCRIPT", "EXISTS", _sha(body)), ("EVALSHA", _sha(body), 0)) for c in (a, b)]
            if seen[0] != seen[1]:
                disagree.append((i, seen))
        return disagree

    _same_through_two_clients(servers, run)


@pytest.mark.parametrize("kind", KINDS)
def test_flush_options_are_checked_at_every_count(servers, kind):
    """SCRIPT FLUSH and FUNCTION FLUSH take at most one option, SYNC or ASYNC."""

    def run(port: int) -> list:
        c = _fresh(port)
        out = []
        for cmd in ("SCRIPT", "FUNCTION"):
            out += _pipe(
                c,
                (cmd, "FLUSH"),
                (cmd, "FLUSH", "sync"),
                (cmd, "FLUSH", "Async"),
                (cmd, "FLUSH", "x"),
                (cmd, "FLUSH", "ASYNC", "SYNC"),
                (cmd, "FLUSH", "SYNC", "ASYNC"),
                (cmd, "FLUSH", "SYNC", "SYNC"),
                (cmd, "FLUSH", "x", "y", "z"),
                ("MULTI",),
                (cmd, "FLUSH", "ASYNC", "SYNC"),
                ("EXEC",),
            )
        c.close()
        return out

    _both(servers, kind, run)


@pytest.mark.parametrize("kind", KINDS)
def test_a_script_that_does_not_compile_is_not_cached(servers, kind):
    """SCRIPT LOAD of a script that does not compile caches nothing, even
    for the commands pipelined behind it (EVALSHA: NOSCRIPT)."""
    bad = "return +"
    sha = _sha(bad)

    def run(port: int) -> list:
        c = _fresh(port)
        out = _pipe(c, ("SCRIPT", "LOAD", bad), ("EVALSHA", sha, 0), ("EVALSHA", sha, 1, "k"))
        out += _pipe(c, ("SCRIPT", "LOAD", bad), ("SCRIPT", "EXISTS", sha), ("EVALSHA_RO", sha, 0))
        out += _pipe(c, ("EVAL", bad, 0), ("SCRIPT", "EXISTS", sha), ("EVALSHA", sha, 0))
        out += _pipe(
            c,
            ("MULTI",),
            ("SCRIPT", "LOAD", bad),
            ("SCRIPT", "EXISTS", sha),
            ("EVALSHA", sha, 0),
            ("EXEC",),
            ("SCRIPT", "EXISTS", sha),
        )
        out += _pipe(c, ("SCRIPT", "EXISTS", sha))
        c.close()
        return out

    _both(servers, kind, run)


def _bytecode() -> bytes:
    """A Lua 5.1 chunk precompiled (string.dump): Redis's Lua only parses
    source, so it does not compile there."""
    return lua51.LuaRuntime(encoding=None).eval("string.dump(function() return 42 end)")


# Scripts that Redis refuses before it caches them: a shebang line it does
# not take, or code that does not compile; and some that it takes.
REFUSED = [
    "#!lua flags=bogus\nreturn 1",
    "#!python\nreturn 1",
    "#!lua",
    "#!lua name=x\nreturn 1",
    "#! lua\nreturn 1",
    '#!"lua\nreturn 1',
    "#!lua flags=no-writes,\nreturn 1",
    "#!lua flags=,\nreturn 1",
    "#!lua flags=no-writes,,allow-oom\nreturn 1",
    "#!lua\nreturn +",
    "return 1 1",
    "\x1breturn 1",
    "bytecode",
    # A NUL before the line feed: strchr finds none (Invalid script shebang).
    "#!lua\x00x\nreturn 1",
    "#!lua flags=no-writes\x00\nreturn 1",
    "#!\x00\nreturn 1",
    # A quoted \x00 ends what strcmp and the message read of a part.
    '#!"lu\\x00a"\nreturn 1',
    '#!lua "fl\\x00ags=no-writes"\nreturn 1',
    '#!lua flags="bogus\\x00no-writes"\nreturn 1',
    '#!lua flags="\\x00no-writes"\nreturn 1',
]
TAKEN = [
    "#!lua flags=\nreturn 1",
    "#!lua flags=no-writes,allow-oom\nreturn 1",
    '#!"lua\\x00junk"\nreturn 1',
    '#!lua flags="no-writes\\x00junk,allow-oom"\nreturn 1',
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("body", REFUSED + TAKEN)
def test_a_script_refused_is_not_cached_for_what_follows(servers, kind, body):
    """SCRIPT LOAD or EVAL of a script whose shebang line is bad, or whose
    code does not compile (Lua bytecode included), caches nothing: SCRIPT
    EXISTS and EVALSHA pipelined behind it (in MULTI too) do not find it."""
    script = _bytecode() if body == "bytecode" else body.encode()
    sha = hashlib.sha1(script).hexdigest()

    def run(port: int) -> list:
        c = _fresh(port)
        out = _pipe(c, ("SCRIPT", "LOAD", script), ("SCRIPT", "EXISTS", sha), ("EVALSHA", sha, 0))
        out += _pipe(c, ("SCRIPT", "FLUSH"))
        out += _pipe(c, ("EVAL", script, 0), ("SCRIPT", "EXISTS", sha), ("EVALSHA_RO", sha, 1, "k"))
        out += _pipe(c, ("SCRIPT", "FLUSH"))
        out += _pipe(c, ("EVAL", script, 1, "k"), ("EVALSHA", sha, 1, "k"), ("SCRIPT", "EXISTS", sha))
        out += _pipe(c, ("SCRIPT", "FLUSH"))
        out += _pipe(
            c, ("MULTI",), ("EVAL", script, 0), ("SCRIPT", "EXISTS", sha), ("EVALSHA", sha, 0), ("EXEC",)
        )
        c.close()
        return out

    _both(servers, kind, run)


def test_a_script_refused_through_one_acceptor_is_not_cached_in_the_other(servers):
    """At K=2: a SCRIPT LOAD or EVAL through acceptor 0 of a script that
    does not compile is not in acceptor 1's cache either, at once or later."""
    bodies = ["return +", "#!lua flags=bogus\nreturn 1", "#!python\nreturn 1"]

    def run(a: RespClient, b: RespClient) -> list:
        out = _pipe(a, ("SCRIPT", "FLUSH"))
        for body in bodies:
            sha = _sha(body)
            for command in (("EVAL", body, 0), ("EVAL", body, 1, "k"), ("SCRIPT", "LOAD", body)):
                out += _pipe(a, command, ("SCRIPT", "EXISTS", sha))
                out += _pipe(b, ("SCRIPT", "EXISTS", sha), ("EVALSHA", sha, 0))
                out += _pipe(a, ("EVALSHA", sha, 0))
        return out

    _same_through_two_clients(servers, run)


@pytest.mark.parametrize("kind", KINDS)
def test_a_library_that_does_not_load_is_not_there_for_what_follows(servers, kind):
    """FUNCTION LOAD of a library that does not compile, or whose code
    fails, loads nothing (a REPLACE keeps the old library): FCALL and
    FUNCTION LIST pipelined behind it do not find it."""
    good = "#!lua name=lib\nredis.register_function('f', function() return 1 end)"
    bad = [
        "#!lua name=lib\nredis.register_function('f', function() return + end)",
        "#!lua name=lib\nredis.register_function('f', function() return 2 end) error('no')",
        "#!lua name=lib flags=bogus\nredis.register_function('f', function() return 2 end)",
        "#!python name=lib\nredis.register_function('f', function() return 2 end)",
        "#!lua name=lib\nredis.register_function('f', function() return 2 end) redis.register_function('f', 1)",
    ]

    def run(port: int) -> list:
        c = _fresh(port)
        c.command("FUNCTION", "FLUSH")
        out = []
        for library in bad:
            out += _pipe(c, ("FUNCTION", "LOAD", library), ("FCALL", "f", 0), ("FCALL_RO", "f", 1, "k"))
            out += _pipe(c, ("FUNCTION", "LIST"))
        out += _pipe(c, ("FUNCTION", "LOAD", good))
        for library in bad:
            out += _pipe(
                c, ("FUNCTION", "LOAD", "REPLACE", library), ("FCALL", "f", 0), ("FCALL", "f", 1, "k")
            )
        out += _pipe(c, ("MULTI",), ("FUNCTION", "LOAD", "REPLACE", bad[0]), ("FCALL", "f", 0), ("EXEC",))
        out += _pipe(c, ("FUNCTION", "FLUSH"))
        c.close()
        return out

    _both(servers, kind, run)
