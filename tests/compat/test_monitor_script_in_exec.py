"""MONITOR and a script inside a transaction across shards: the client's
later commands are answered and shown, as in Redis.

Such an EXEC runs as one atomic operation, and the scripts queued in it
are sent as it commits, after EXEC's line was fed.  A script sent while
someone monitors expects the line of its own command to give it a place
for its ``[lua]`` lines; the one sent so was never fed, and the client's
next script command whose line was fed without a script sent for it (an
EVALSHA answered -NOSCRIPT by the acceptor) took that place, which no
reply ever filled: the monitors got nothing more, and with two acceptors
the client's replies waited for good behind their fence.  Against
redis-server 7.0.15, with one acceptor and with two (a monitor on each).
"""

from __future__ import annotations

import time

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command

SHARDS = 2
OWN, OTHER = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)
OWN2 = key_on(0, "own2", SHARDS)
WAIT = 10.0  # seconds a reply or a monitor line may take before the test fails


@pytest.fixture
def servers(redis_and_shardkv_k12) -> tuple[int, int, int]:
    """(redis-server's port, shardkv's port, its acceptors: 1, then 2)."""
    return redis_and_shardkv_k12


def _connect(port: int, acceptors: int, index: int) -> RespClient:
    c = client_on(port, index, k=acceptors) if acceptors > 1 else RespClient(port)
    c.sock.settimeout(WAIT)  # a reply that never comes fails the test
    return c


def _send(c: RespClient, commands: list[list[str]]) -> list:
    """The exact replies to ``commands``, sent in one write."""
    c.sock.sendall(b"".join(encode_command(*command) for command in commands))
    return [c.read() for _ in commands]


def _lines_until(m: RespClient, last: bytes, addr: bytes) -> list[bytes]:
    """What monitor ``m`` shows of client ``addr`` (timestamps cut), up to
    and with the line ``last``; fails if it does not come in time."""
    data = b""
    deadline = time.monotonic() + WAIT
    while last not in data:
        assert time.monotonic() < deadline, f"the monitor stopped: {data[-300:]!r}"
        try:
            chunk = m.sock.recv(1 << 16)
        except TimeoutError:
            continue
        assert chunk, "the monitor was closed"
        data += chunk
    shown = []
    for line in data.split(b"\r\n"):
        if addr in line or b" lua]" in line:
            shown.append(line.split(b" ", 1)[1].replace(addr, b"c"))
    return shown


def _run(port: int, acceptors: int, deleted: tuple[str, ...], *writes: list[list[str]]) -> tuple[list, list]:
    """A monitor on each of the ``acceptors``; client c (on acceptor 0)
    deletes ``deleted``, then sends each of ``writes`` in one write, in
    turn, the last ending with ``ECHO last``.  Returns c's replies and
    what each monitor showed of c up to that ECHO."""
    monitors = [_connect(port, acceptors, index) for index in range(acceptors)]
    c = _connect(port, acceptors, 0)
    try:
        for m in monitors:
            assert m.call("MONITOR") == b"+OK\r\n"
        c.call("DEL", *deleted)
        replies = []
        for commands in writes:
            replies += _send(c, commands)
        host, cport = c.sock.getsockname()[:2]
        addr = b"%s:%d" % (host.encode(), cport)
        return replies, [_lines_until(m, b'"ECHO" "last"', addr) for m in monitors]
    finally:
        c.close()
        for m in monitors:
            m.close()


# Once EXEC was answered, its script was sent: the next script command
# (answered here, by the acceptor) and what follows.
EXEC_THEN_EVALSHA = (
    [["MULTI"], ["SET", OWN, "1"], ["SET", OTHER, "2"], ["EVAL", "return 1", "0"], ["EXEC"]],
    [["EVALSHA", "0" * 40, "0"], ["ECHO", "last"]],
)


def test_the_next_script_command_after_an_exec_with_a_script_is_answered_and_shown(servers) -> None:
    real_port, port, acceptors = servers
    real_replies, (real_shown,) = _run(real_port, 1, (OWN, OTHER), *EXEC_THEN_EVALSHA)
    replies, shown = _run(port, acceptors, (OWN, OTHER), *EXEC_THEN_EVALSHA)
    assert replies == real_replies
    for each in shown:  # every monitor, on either acceptor
        assert each == real_shown


CALLS = "redis.call('get', KEYS[1]); return redis.call('incr', KEYS[2])"
# Transactions whose scripts run as commands of their own (a script before
# a change to the script cache or the functions, or WATCH with one: see
# transactions._scripts_on_executor), command by command or, with writes on
# both shards or WATCH, after one atomic operation (then after its shard
# commands: the last command reads no key a script writes, README).
ON_THEIR_OWN = {
    "in-order": [["SET", OWN, "1"], ["SCRIPT", "FLUSH"], ["GET", OWN2]],
    "writes-on-two-shards": [["SET", OWN, "1"], ["SET", OTHER, "2"], ["SCRIPT", "FLUSH"], ["GET", OTHER]],
    "watched": [["SET", OWN, "1"], ["SCRIPT", "FLUSH"], ["GET", OTHER]],
}


@pytest.mark.parametrize("name", list(ON_THEIR_OWN))
def test_the_lua_lines_of_a_script_run_on_its_own_in_exec_follow_its_line(servers, name) -> None:
    """Each script's ``[0 lua]`` lines right after its EVAL line, before
    the next command's and EXEC's, on every monitor, as redis-server's: a
    script sent as the transaction's operation committed used to show
    them after EXEC's line."""
    real_port, port, acceptors = servers
    body = ON_THEIR_OWN[name]
    script = ["EVAL", CALLS, "2", OWN, OWN2]  # (on one shard: see README, a cross-shard script's lines)
    queued = [body[0], script, *body[1:-1], script, body[-1]]
    watch = [["WATCH", OWN]] if name == "watched" else []
    sent = [*watch, ["MULTI"], *queued, ["EXEC"], ["ECHO", "last"]]

    real_replies, (real_shown,) = _run(real_port, 1, (OWN, OWN2, OTHER), sent)
    assert real_shown.count(b'[0 lua] "incr" "%s"' % OWN2.encode()) == 2  # (what is compared)
    replies, shown = _run(port, acceptors, (OWN, OWN2, OTHER), sent)
    assert replies == real_replies
    for each in shown:  # every monitor, on either acceptor
        assert each == real_shown


# Transactions whose scripts run on the operation's executor (writes on two
# shards), one of them refused before it runs: an EVALSHA of no cached
# script (answered -NOSCRIPT by the acceptor, as Redis's calls nothing) or
# an FCALL of no function, then scripts that call commands.
REFUSED_FIRST = {
    "evalsha-noscript": ["EVALSHA", "0" * 40, "1", OWN],
    "evalsha-after-script-flush": ["EVALSHA", "0" * 40, "1", OWN],
    "fcall-no-function": ["FCALL", "nosuch", "1", OWN],
}


@pytest.mark.parametrize("name", list(REFUSED_FIRST))
def test_the_lua_lines_in_an_atomic_exec_skip_a_script_refused_before_it_ran(servers, name) -> None:
    """The ``[0 lua]`` lines of the scripts an atomic EXEC ran follow each
    one's own EVAL line, as redis-server's: a script refused before it ran
    (it calls nothing) used to take the lines of the next script that ran."""
    real_port, port, acceptors = servers
    flush = [["SCRIPT", "FLUSH"]] if name == "evalsha-after-script-flush" else []
    queued = [
        ["SET", OWN, "1"],
        ["SET", OTHER, "2"],
        *flush,
        REFUSED_FIRST[name],
        ["EVAL", "return redis.call('incr', KEYS[1])", "1", OTHER],
        ["EVAL", CALLS, "2", OWN, OWN2],
    ]
    sent = [["MULTI"], *queued, ["EXEC"], ["ECHO", "last"]]

    real_replies, (real_shown,) = _run(real_port, 1, (OWN, OWN2, OTHER), sent)
    assert real_shown.count(b'[0 lua] "incr" "%s"' % OTHER.encode()) == 1  # (what is compared)
    replies, shown = _run(port, acceptors, (OWN, OWN2, OTHER), sent)
    assert replies == real_replies
    for each in shown:  # every monitor, on either acceptor
        assert each == real_shown
