"""SCRIPT KILL (FUNCTION KILL) sent while a script runs but before it is past
busy-reply-threshold, against redis-server 7.0.15, at one and two acceptors.

Redis reads nothing while a script runs until busy-reply-threshold: a
SCRIPT KILL sent meanwhile is read then, and kills the script (``OK``; the
caller gets ``Script killed by user with SCRIPT KILL...``); one sent to a
script that ends before the threshold is read after it (``-NOTBUSY``), the
script's run whole.  shardkv's acceptor answered it at once from its busy
state (``-NOTBUSY``: no worker had reported the script busy yet), the kill
was lost and the script ran on: its caller waited, and everyone else got
``-BUSY``.  Now the kill waits for the shards (see
``shardlink._HeldUntilThreshold``): EVAL, EVALSHA, FCALL, a script over two shards,
and at two acceptors a script sent through the other acceptor than the
kill.
"""

from __future__ import annotations

import time

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import ErrorReply, RespClient

TRIALS = 20
KINDS = ("eval", "evalsha", "fcall", "cross")
LOOP = "while true do end"
LIBRARY = "#!lua name=killearly\nredis.register_function('spin', function() while true do end end)"


def _outcome(reply: object) -> object:
    if isinstance(reply, ErrorReply):
        return ("error", str(reply).split(" script:")[0])
    return reply


def _clients(port: int, acceptors: int, i: int) -> tuple[RespClient, RespClient]:
    """(killer, caller): at two acceptors, on the same one, then on the other."""
    if acceptors == 1:
        return RespClient(port, timeout=10), RespClient(port, timeout=10)
    killer = client_on(port, i % 2, k=acceptors)
    return killer, client_on(port, (i // 2) % 2, k=acceptors)


def _trial(killer: RespClient, caller: RespClient, kind: str, sha: bytes) -> tuple:
    """One loop killed 50 ms into its run: (the kill's reply, the caller's, the next command's)."""
    key, other = key_on(0, "killearly", shards=2), key_on(1, "killearly", shards=2)
    kill = "FUNCTION" if kind == "fcall" else "SCRIPT"
    caller.sock.settimeout(3)
    try:
        assert killer.command("CONFIG", "SET", "busy-reply-threshold", "100") == b"OK"
        if kind == "eval":
            caller.send("EVAL", LOOP, 1, key)
        elif kind == "evalsha":
            caller.send("EVALSHA", sha, 1, key)
        elif kind == "fcall":
            caller.send("FCALL", "spin", 1, key)
        else:
            caller.send("EVAL", LOOP, 2, key, other)
        time.sleep(0.05)  # the script runs, not yet past the threshold
        killer.send(kill, "KILL")
        killed = _outcome(killer.read_reply())
        try:
            got = _outcome(caller.read_reply())
        except TimeoutError:
            got = "no reply"
        killer.send("GET", key)
        after = _outcome(killer.read_reply())
        return killed, got, after
    finally:
        # What a lost kill left running: stopped, so that nothing hangs.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            killer.send(kill, "KILL")
            if isinstance(killer.read_reply(), ErrorReply):
                break
            time.sleep(0.05)
        killer.command("CONFIG", "SET", "busy-reply-threshold", "5000")


def test_script_kill_before_the_threshold_is_read_at_it(redis_and_shardkv_k12):
    real_port, ours_port, acceptors = redis_and_shardkv_k12
    for port, k in ((real_port, 1), (ours_port, acceptors)):
        with RespClient(port) as c:
            sha = c.command("SCRIPT", "LOAD", LOOP)
            c.command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
        for i in range(TRIALS):
            kind = KINDS[i % len(KINDS)]
            killer, caller = _clients(port, k, i)
            try:
                got = _trial(killer, caller, kind, sha)  # type: ignore[arg-type]
            finally:
                killer.close()
                caller.close()
            assert got[0] == b"OK", (port, i, kind, got)
            assert isinstance(got[1], tuple), (port, i, kind, got)
            assert "Script killed by user with" in got[1][1], (port, i, kind, got)
            assert got[2] is None, (port, i, kind, got)
        with RespClient(port) as c:
            c.command("FUNCTION", "DELETE", "killearly")


def _short_run(port: int, acceptors: int, i: int) -> tuple:
    """A script that ends before the threshold (about 0.3 s, threshold 5 s),
    a kill sent 50 ms into it: (the kill's reply, the script's)."""
    killer, caller = _clients(port, acceptors, i)
    key = key_on(i % 2, "killshort", shards=2)
    try:
        caller.send(
            "EVAL",
            "local t = redis.call('TIME') local t0 = t[1] * 1000000 + t[2] "
            "while true do t = redis.call('TIME') if t[1] * 1000000 + t[2] - t0 > 300000 then break end end "
            "return redis.call('INCR', KEYS[1])",
            1,
            key,
        )
        time.sleep(0.05)
        killer.send("SCRIPT", "KILL")
        killed = _outcome(killer.read_reply())
        ran = caller.read_reply()
        return killed, ran
    finally:
        killer.close()
        caller.close()


def test_a_kill_before_the_threshold_of_a_script_that_ends_finds_nothing(redis_and_shardkv_k12):
    real_port, ours_port, acceptors = redis_and_shardkv_k12
    for port, k in ((real_port, 1), (ours_port, acceptors)):
        with RespClient(port) as c:
            c.command("FLUSHALL")
        got = [_short_run(port, k, i) for i in range(4)]
        notbusy = ("error", "NOTBUSY No scripts in execution right now.")
        assert got == [(notbusy, 1), (notbusy, 1), (notbusy, 2), (notbusy, 2)], (port, got)


# Runs about 0.5 s (under the threshold of 1 s below), then returns 1.
SPIN = (
    "local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + 500000 "
    "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop return 1"
)
# Runs about 4 s unless killed, then returns 2.
LONG = (
    "local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + 4000000 "
    "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop return 2"
)


def _kill_behind_a_waiting_script(port: int, acceptors: int, first: str = SPIN) -> tuple:
    """A script on shard 0 (``first``); while it runs, a script over both
    shards, then (50 ms later) SCRIPT KILL, the kill and the script over
    both shards through acceptor 0, the first script through the last
    acceptor: (the kill's reply, the script over both shards', the first
    one's)."""
    spinner = client_on(port, acceptors - 1, k=acceptors)
    caller, killer = (client_on(port, 0, k=acceptors) for _ in range(2))
    try:
        for c in (spinner, caller, killer):
            c.sock.settimeout(10)
        assert killer.command("CONFIG", "SET", "busy-reply-threshold", "1000") == b"OK"
        spinner.send("EVAL", first, 1, key_on(0, "killbehind", shards=2))
        time.sleep(0.1)
        caller.send("EVAL", LONG, 2, key_on(0, "killbehind", shards=2), key_on(1, "killbehind", shards=2))
        time.sleep(0.05)
        killer.send("SCRIPT", "KILL")
        return _outcome(killer.read_reply()), _outcome(caller.read_reply()), _outcome(spinner.read_reply())
    finally:
        killer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        for c in (spinner, caller, killer):
            c.close()


def test_a_kill_read_after_a_script_that_waits_for_its_shards_kills_it(redis_and_shardkv_k12):
    """Redis reads the script over two shards before the kill (each is
    read when the short script ends): the script runs, and the kill, read
    at its threshold, kills it.  At two acceptors the script waited for its
    holds on the shards (the short script's shard answers only after it)
    while the kill's ``__ping``s went ahead of it: each came back before
    the script started, and the kill answered ``-NOTBUSY`` while the script
    ran its 4 s.  The kill's pings now leave behind what this acceptor
    read before it and still waits for its holds."""
    real_port, ours_port, acceptors = redis_and_shardkv_k12
    expected = _kill_behind_a_waiting_script(real_port, 1)
    assert expected[0] == b"OK" and "Script killed by user" in expected[1][1] and expected[2] == 1, expected
    for _ in range(3):
        got = _kill_behind_a_waiting_script(ours_port, acceptors)
        assert got == expected, got


def test_a_kill_read_while_a_script_waits_behind_a_busy_one_kills_that_one(redis_and_shardkv_k12):
    """The first script loops until killed: Redis reads the script over
    both shards and the kill at its threshold, answers the one ``-BUSY``
    and kills it with the other.  (At two acceptors the kill waits for the
    step read before it to leave, or for a busy report, whichever comes
    first.)  The script
    over both shards is not compared: its parts (``__park``, ``__hold``)
    sent before the threshold are never refused, and it runs after the
    killed script, as any part of a cross-shard step sent before the
    threshold (see the README's busy scripts)."""
    real_port, ours_port, acceptors = redis_and_shardkv_k12
    expected = _kill_behind_a_waiting_script(real_port, 1, LOOP)
    assert expected[0] == b"OK" and expected[1][1].startswith("BUSY "), expected
    assert "Script killed by user" in expected[2][1], expected
    got = _kill_behind_a_waiting_script(ours_port, acceptors, LOOP)
    assert (got[0], got[2]) == (expected[0], expected[2]), got
