"""INFO commandstats, errorstats and ``total_error_replies`` of an EXEC
that waits for a running script, against redis-server 7.0.15 (at one
acceptor, then two).

An EXEC holding SCRIPT KILL, FUNCTION KILL or CLIENT UNBLOCK, sent while
a script runs, waits as Redis would read it: refused at the threshold
(EXECABORT with ``-BUSY``), or run once the script ended before it.
Redis counts it as it reads it: a refused one is a rejected call
(``rejected_calls``, no call, no time) and an ``EXECABORT`` error; one
that ran is a call.  shardkv counted the call as it read the EXEC, before
its wait: a refused one showed ``calls=1`` and no ``errorstat_EXECABORT``.
It now counts it once decided (``Acceptor.calls_deferred``).  A normal
EXEC, for comparison, counts as ever.
"""

from __future__ import annotations

import select

from tests.support.acceptors import client_on
from tests.support.processes import script_pid, wait_spinning
from tests.support.resp import RespClient, parse_info

WAIT = 60.0  # seconds for what must happen (a bound, not a timing check)
NOW = "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end "
# A script that ends before the threshold (500 ms), by its own clock.
SHORT_SPIN = NOW + "local t0 = now() while now() - t0 < 300000 do end return 1"
SPIN = "while true do end"
ROWS = ("exec", "multi", "script|kill", "client|unblock", "set", "incr", "eval")


def _answered(c: RespClient) -> bool:
    """Has a reply (or part of one) come on ``c``, without waiting?"""
    return bool(c.buf) or bool(select.select([c.sock], [], [], 0)[0])


def _counts(c: RespClient, names: tuple = ROWS, timed: bool = True) -> list:
    """The rows of ``names`` (calls, EXEC's whether any time unless not
    ``timed``, rejected and failed calls), the errors counted and
    total_error_replies."""
    info = parse_info(c.command("INFO", "everything"))  # type: ignore[arg-type]
    rows = []
    for name in names:
        line = info.get(f"cmdstat_{name}")
        if line is None:
            continue
        fields = dict(f.split("=") for f in line.split(","))
        # (Whether EXEC took any time: Redis's quick commands show usec=0.)
        timed = f",timed={int(fields['usec']) > 0}" if name == "exec" and timed else ""
        rows.append(
            f"{name}:calls={fields['calls']}{timed},"
            f"rejected_calls={fields['rejected_calls']},failed_calls={fields['failed_calls']}"
        )
    errors = sorted(f"{k}={v}" for k, v in info.items() if k.startswith("errorstat_"))
    return [rows, errors, info["total_error_replies"]]


def _scenarios(port: int, k: int) -> list:
    """For each acceptor a client may be on: each EXEC, refused, waited
    and ran, and normal, after CONFIG RESETSTAT: its replies and counts."""
    got: list = []
    admin = client_on(port, 0, k=k, timeout=WAIT)
    admin_id = admin.command("CLIENT", "ID")
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "500")
        for where in range(k):
            for script, stopped in ((SPIN, True), (SHORT_SPIN, False)):
                for queued in (("SCRIPT", "KILL"), ("CLIENT", "UNBLOCK", admin_id)):
                    caller = client_on(port, 0, k=k, timeout=WAIT)
                    queuer = client_on(port, where, k=k, timeout=WAIT)
                    try:
                        admin.command("CONFIG", "RESETSTAT")
                        queuer.command("MULTI")
                        queuer.command(*queued)
                        caller.send("EVAL", script, 0)
                        # Once it runs (a fixed rest could end before, on a
                        # loaded machine): before the threshold, unless the
                        # machine is slow (after it, the EXEC is refused at
                        # once, as counted).
                        wait_spinning(script_pid(port), lambda c=caller: _answered(c))
                        queuer.send("EXEC")
                        replies = [str(queuer.read_reply())]
                        if stopped:
                            admin.command("SCRIPT", "KILL")
                        replies.append(str(caller.read_reply()).split(" ")[0])
                        got.append([replies, _counts(admin)])
                    finally:
                        caller.close()
                        queuer.close()
            queuer = client_on(port, where, k=k, timeout=WAIT)
            try:
                admin.command("CONFIG", "RESETSTAT")
                queuer.command("SET", "execstat", "x")
                queuer.command("MULTI")
                queuer.command("SET", "execstat", "y")
                queuer.command("INCR", "execstat")
                got.append([str(queuer.command("EXEC")), _counts(admin)])
            finally:
                queuer.close()
        admin.command("DEL", "execstat")
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        admin.close()


def test_an_exec_that_waits_for_a_script_is_counted_as_redis(redis_and_shardkv_k12) -> None:
    """A refused EXEC: ``rejected_calls=1``, no call, ``errorstat_EXECABORT``;
    one that waited and ran, and a normal one: a call, with its time."""
    real, ours, k = redis_and_shardkv_k12
    expected = _scenarios(real, 1)
    refused = expected[0][1][0]
    assert "exec:calls=0,timed=False,rejected_calls=1,failed_calls=0" in refused
    assert "errorstat_EXECABORT=count=1" in expected[0][1][1]
    assert "exec:calls=1,timed=True,rejected_calls=0,failed_calls=0" in expected[2][1][0]
    assert _scenarios(ours, k) == expected * k


def _denied_scenarios(port: int, k: int) -> list:
    """An EXEC whose queued SCRIPT KILL or FUNCTION KILL the ACL rules
    refuse since it was queued, sent while a script runs (one past the
    threshold, one that ends before it), and one with no script: its
    replies and counts, after CONFIG RESETSTAT.

    The EXEC is sent once the script is seen running, before the
    threshold unless the machine is slow (then refused at once, as
    counted): sent a fixed time after the EVAL, it could come first on a
    loaded machine, and run.  The short script ends 200 ms before the
    threshold by its own clock (ending as the threshold comes, it could be
    busy first in Redis)."""
    got: list = []
    admin = client_on(port, 0, k=k, timeout=WAIT)
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "500")
        for where in range(k):
            for script in (SPIN, SHORT_SPIN, None):
                for queued, category in (
                    (("SCRIPT", "KILL"), "-script"),
                    (("FUNCTION", "KILL"), "-function"),
                ):
                    admin.command("ACL", "SETUSER", "execkill", "reset", "on", "nopass", "+@all", "~*", "&*")
                    caller = client_on(port, 0, k=k, timeout=WAIT)
                    queuer = client_on(port, where, k=k, timeout=WAIT)
                    try:
                        queuer.command("AUTH", "execkill", "x")
                        queuer.command("MULTI")
                        queuer.command(*queued)
                        admin.command("ACL", "SETUSER", "execkill", category)
                        admin.command("CONFIG", "RESETSTAT")
                        if script is not None:
                            caller.send("EVAL", script, 0)
                            wait_spinning(script_pid(port), lambda c=caller: _answered(c))  # (see _scenarios)
                        queuer.send("EXEC")
                        replies = [str(queuer.read_reply())]
                        if script == SPIN:
                            admin.command("SCRIPT", "KILL")
                        if script is not None:
                            replies.append(str(caller.read_reply()).split(" ")[0])
                        got.append([replies, _counts(admin)])
                    finally:
                        caller.close()
                        queuer.close()
        admin.command("ACL", "DELUSER", "execkill")
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        admin.close()


def test_an_exec_whose_kill_the_acl_now_refuses_waits_as_redis(redis_and_shardkv_k12) -> None:
    """Redis checks ``-BUSY`` (processCommand) before the ACL rules of the
    queued commands (execCommand): past the threshold the EXEC is
    refused, ``EXECABORT`` with ``-BUSY``, a rejected call; run (the
    script ended first, or none ran), it answers the kill ``-NOPERM`` in
    its array, an error of EXEC's (``errorstat_NOPERM``, EXEC's failed
    call).  shardkv answered the array at once, without counting the
    ``-NOPERM``."""
    real, ours, k = redis_and_shardkv_k12
    expected = _denied_scenarios(real, 1)
    assert expected[0][0][0].startswith("EXECABORT Transaction discarded because of: BUSY")
    assert "exec:calls=0,timed=False,rejected_calls=1,failed_calls=0" in expected[0][1][0]
    assert expected[2][0][0].startswith("[b'NOPERM ACLs rules changed")
    assert "errorstat_NOPERM=count=1" in expected[4][1][1]
    assert _denied_scenarios(ours, k) == expected * k


# Transactions whose queued commands the ACL rules refuse since they were
# queued (GET, ``-get`` since) among others that run (SET, PING, LPUSH on a
# string: WRONGTYPE) and SORT with a BY pattern over keys the user may no
# longer read all of (SORT's own error as it runs).
QUEUES = (
    (("GET", "ea"), ("SET", "eb", "1")),
    (("SET", "eb", "1"), ("GET", "ea")),
    (("GET", "ea"), ("GET", "ec")),
    (("GET", "ea"), ("PING",)),
    (("GET", "ea"), ("LPUSH", "estr", "x")),
    (("LPUSH", "estr", "x"), ("GET", "ea")),
    (("SORT", "elist", "BY", "w_*"),),
    (("GET", "ea"), ("SORT", "elist", "BY", "w_*")),
    (("SORT", "elist", "BY", "w_*"), ("GET", "ea")),
)
REFUSAL_ROWS = ("exec", "get", "set", "ping", "lpush", "sort")


def _refusal_scenarios(port: int, k: int) -> list:
    """Each transaction of QUEUES, queued by a user that may run it, run
    after an ACL SETUSER refuses its GETs and SORT's BY pattern: its
    replies and counts, after CONFIG RESETSTAT."""
    got: list = []
    admin = client_on(port, 0, k=k, timeout=WAIT)
    try:
        admin.command("SET", "estr", "x")
        for where in range(k):
            for queue in QUEUES:
                admin.command("ACL", "SETUSER", "execacl", "reset", "on", "nopass", "+@all", "~*", "&*")
                queuer = client_on(port, where, k=k, timeout=WAIT)
                try:
                    queuer.command("AUTH", "execacl", "x")
                    queuer.command("MULTI")
                    for command in queue:
                        queuer.command(*command)
                    admin.command("ACL", "SETUSER", "execacl", "-get", "resetkeys", "~e*")
                    admin.command("CONFIG", "RESETSTAT")
                    queuer.send("EXEC")
                    replies = [str(reply).split(" ")[0] for reply in queuer.read_reply()]  # type: ignore[union-attr]
                    got.append([queue, replies, _counts(admin, REFUSAL_ROWS, timed=False)])
                finally:
                    queuer.close()
        admin.command("ACL", "DELUSER", "execacl")
        return got
    finally:
        admin.close()


def test_an_exec_fails_as_redis_only_when_a_refusal_comes_last(redis_and_shardkv_k12) -> None:
    """Redis counts each ``-NOPERM`` of EXEC's array (errorstats,
    total_error_replies), but EXEC's failed call only when one comes after
    the last queued command that ran: ``call()`` of each queued command
    resets the count of errors that ``incrCommandStatsOnError`` compares
    (its static ``prev_err_count``), so a refusal followed by a command
    that runs is nobody's failed call.  shardkv counted EXEC failed
    whenever it answered one.  SORT's own error (a BY pattern the user may
    not read) is SORT's failed call as it runs, EXEC's or not: shardkv
    counted nothing of it inside EXEC."""
    real, ours, k = redis_and_shardkv_k12
    expected = _refusal_scenarios(real, 1)
    assert "exec:calls=1,rejected_calls=0,failed_calls=0" in expected[0][2][0]
    assert "exec:calls=1,rejected_calls=0,failed_calls=1" in expected[1][2][0]
    assert "errorstat_NOPERM=count=2" in expected[2][2][1]
    assert "sort:calls=1,rejected_calls=0,failed_calls=1" in expected[6][2][0]
    assert _refusal_scenarios(ours, k) == expected * k
