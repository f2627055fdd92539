"""INFO commandstats, errorstats and ``total_error_replies`` of a
(un)subscribe, or a CLIENT UNBLOCK, that waits for a running script,
against redis-server 7.0.15 (at one acceptor, then two).

Redis reads nothing while a script runs until it is past
busy-reply-threshold: a SUBSCRIBE (or UNSUBSCRIBE, PSUBSCRIBE, ...) sent
meanwhile is read then and refused ``-BUSY``, a rejected call
(``rejected_calls``, no call) and a ``BUSY`` error; sent while a script
that ends before the threshold runs, it runs after it, a call.  shardkv's
acceptor waits for the shards' scripts (``pubsub._after_scripts``), but
counted the call as it read the command, before its wait: a refused one
showed ``calls=1`` and no ``rejected_calls``.  It now counts it once
decided (``Acceptor.calls_deferred``).  A CLIENT UNBLOCK of a blocked
client waits for the shards too (``blocking.unblock``): refused, it
showed ``calls=1`` and no error at all (``errorstat_BUSY`` missing).
"""

from __future__ import annotations

import time

from tests.support.acceptors import client_on
from tests.support.resp import RespClient, call_counts

WAIT = 60.0  # seconds for what must happen (a bound, not a timing check)
NOW = "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end "
# A script that ends before the threshold (300 ms), by its own clock.
SHORT_SPIN = NOW + "local t0 = now() while now() - t0 < 150000 do end return 1"
SPIN = "while true do end"
COMMANDS = (
    ("SUBSCRIBE", "pwsch"),
    ("UNSUBSCRIBE", "pwsch"),
    ("PSUBSCRIBE", "pws*"),
    ("PUNSUBSCRIBE",),
    ("SSUBSCRIBE", "pwsshard"),
    ("SUNSUBSCRIBE",),
    ("CLIENT", "UNBLOCK"),  # (the blocked client's id follows)
    ("CLIENT", "UNBLOCK", "ERROR"),
)
ROWS = ("eval", "blpop", "client|unblock", *(command[0].lower() for command in COMMANDS[:-2]))


def _until_blocked(admin: RespClient, client_id: object) -> None:
    """Wait (bounded) until the client ``client_id`` is blocked."""
    deadline = time.monotonic() + WAIT
    while b"flags=b" not in admin.command("CLIENT", "LIST", "ID", client_id):  # type: ignore[operator]
        assert time.monotonic() < deadline, "the client never blocked"
        time.sleep(0.01)


def _scenarios(port: int, k: int) -> list:
    """Each (un)subscribe and CLIENT UNBLOCK (of a client blocked in
    BLPOP), sent while a script runs (past the threshold,
    then ending before it), from each acceptor: its reply and the counts
    after CONFIG RESETSTAT."""
    got: list = []
    admin = client_on(port, 0, k=k, timeout=WAIT)
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "300")
        for where in range(k):
            for script in (SPIN, SHORT_SPIN):
                for command in COMMANDS:
                    caller = client_on(port, 0, k=k, timeout=WAIT)
                    subscriber = client_on(port, where, k=k, timeout=WAIT)
                    blocked = client_on(port, 0, k=k, timeout=WAIT)
                    try:
                        if command[0] == "CLIENT":
                            blocked_id = blocked.command("CLIENT", "ID")
                            blocked.send("BLPOP", "bwsk", 0)
                            _until_blocked(admin, blocked_id)
                            command = (*command[:2], blocked_id, *command[2:])
                        admin.command("CONFIG", "RESETSTAT")
                        caller.send("EVAL", script, 0)
                        time.sleep(0.05)  # before the threshold
                        subscriber.send(*command)
                        reply = str(subscriber.read_reply())
                        if script == SPIN:
                            admin.command("SCRIPT", "KILL")
                        ended = str(caller.read_reply()).split(" ")[0]
                        got.append([command[0], reply, ended, call_counts(admin, ROWS)])
                    finally:
                        caller.close()
                        subscriber.close()
                        blocked.close()
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        admin.close()


def test_a_subscribe_that_waits_for_a_script_is_counted_as_redis(redis_and_shardkv_k12) -> None:
    """Refused at the threshold: ``rejected_calls=1``, no call,
    ``errorstat_BUSY``; run after a script that ended first: a call."""
    real, ours, k = redis_and_shardkv_k12
    expected = _scenarios(real, 1)
    assert expected[0][1].startswith("BUSY Redis is busy running a script")
    assert "subscribe:0,1,0" in expected[0][3][0]
    assert "errorstat_BUSY=count=1" in expected[0][3][1]
    assert expected[len(COMMANDS)][1] == "[b'subscribe', b'pwsch', 1]"
    assert "subscribe:1,0,0" in expected[len(COMMANDS)][3][0]
    unblock = len(COMMANDS) - 2
    assert expected[unblock][1].startswith("BUSY") and "client|unblock:0,1,0" in expected[unblock][3][0]
    assert "client|unblock:1,0,0" in expected[len(COMMANDS) + unblock][3][0]
    assert _scenarios(ours, k) == expected * k


def _slow_scenarios(port: int, k: int) -> list:
    """A CLIENT UNBLOCK (plain and ERROR) of a client blocked in BLPOP,
    from each acceptor, sent while a script that ends before the
    threshold runs, with slowlog-log-slower-than below the script's time
    and above a command's: its reply and the slow log's entries of EVAL
    and CLIENT (their first two arguments), after SLOWLOG RESET."""
    got: list = []
    admin = client_on(port, 0, k=k, timeout=WAIT)
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "300")
        admin.command("CONFIG", "SET", "slowlog-log-slower-than", "50000")
        for where in range(k):
            for command in COMMANDS[-2:]:
                caller = client_on(port, 0, k=k, timeout=WAIT)
                unblocker = client_on(port, where, k=k, timeout=WAIT)
                blocked = client_on(port, 0, k=k, timeout=WAIT)
                try:
                    blocked_id = blocked.command("CLIENT", "ID")
                    blocked.send("BLPOP", "bwsk", 0)
                    _until_blocked(admin, blocked_id)
                    admin.command("SLOWLOG", "RESET")
                    caller.send("EVAL", SHORT_SPIN, 0)
                    time.sleep(0.05)  # before the threshold
                    unblocker.send(*command[:2], blocked_id, *command[2:])
                    reply = str(unblocker.read_reply())
                    caller.read_reply()
                    entries = admin.command("SLOWLOG", "GET", -1)
                    logged = [e[3][:2] for e in entries if e[3][0].upper() in (b"EVAL", b"CLIENT")]  # type: ignore[index, union-attr]
                    got.append([command, reply, logged])
                finally:
                    caller.close()
                    unblocker.close()
                    blocked.close()
        admin.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        admin.close()


def test_a_client_unblock_that_waits_for_a_script_is_not_slow(redis_and_shardkv_k12) -> None:
    """Redis reads a CLIENT UNBLOCK sent while a script runs once the
    script ended, and runs it at once: its time is its own, and the slow
    log has the script's entry alone.  shardkv's acceptor waits for the
    shards' scripts (``blocking.unblock``) and timed CLIENT UNBLOCK from
    the moment it read it until the shards decided, the script's run
    included: a slow log entry of its own (and that time in
    commandstats) that Redis has not.  It is timed for its own run now."""
    real, ours, k = redis_and_shardkv_k12
    expected = _slow_scenarios(real, 1)
    assert expected[0][1] == "1" and [entry[0] for entry in expected[0][2]] == [b"EVAL"]
    assert _slow_scenarios(ours, k) == expected * k
