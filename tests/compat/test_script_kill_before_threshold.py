"""SCRIPT KILL sent while a script runs but before it is past
busy-reply-threshold, against redis-server 7.0.15, at one and two acceptors.

Redis reads nothing while a script runs until busy-reply-threshold: a
SCRIPT KILL sent meanwhile is read then, and kills the script (``OK``; the
caller gets ``Script killed by user with SCRIPT KILL...``).  shardkv's
acceptor answers it at once from its busy state (``-NOTBUSY``: no worker
has reported the script busy yet), the kill is lost and the script runs on:
its caller waits, and everyone else gets ``-BUSY``.
"""

from __future__ import annotations

import time

from tests.support.placement import key_on
from tests.support.resp import ErrorReply, RespClient

TRIALS = 20


def _outcome(reply: object) -> object:
    if isinstance(reply, ErrorReply):
        return ("error", str(reply).split(" script:")[0])
    return reply


def _trial(port: int, key: str, sha: bytes | None) -> tuple:
    """One loop killed 50 ms into its run: (the kill's reply, the caller's, the next command's)."""
    killer = RespClient(port, timeout=10)
    caller = RespClient(port, timeout=3)
    try:
        assert killer.command("CONFIG", "SET", "busy-reply-threshold", "100") == b"OK"
        if sha is None:
            caller.send("EVAL", "while true do end", 1, key)
        else:
            caller.send("EVALSHA", sha, 1, key)
        time.sleep(0.05)  # the script runs, not yet past the threshold
        killed = _outcome(killer.read_reply() if killer.send("SCRIPT", "KILL") is None else None)
        try:
            got = _outcome(caller.read_reply())
        except TimeoutError:
            got = "no reply"
        after = _outcome(killer.read_reply() if killer.send("GET", key) is None else None)
        return killed, got, after
    finally:
        # What a lost kill left running: stopped, so that nothing hangs.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            killer.send("SCRIPT", "KILL")
            if isinstance(killer.read_reply(), ErrorReply):
                break
            time.sleep(0.05)
        killer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        killer.close()
        caller.close()


def test_script_kill_before_the_threshold_is_read_at_it(redis_and_shardkv_k12):
    real_port, ours_port, _ = redis_and_shardkv_k12
    key = key_on(0, "killearly", shards=2)
    for port in (real_port, ours_port):
        with RespClient(port) as c:
            sha = c.command("SCRIPT", "LOAD", "while true do end")
        for i in range(TRIALS):
            got = _trial(port, key, sha if i % 2 else None)
            assert got[0] == b"OK", (port, i, got)
            assert isinstance(got[1], tuple) and "Script killed by user with SCRIPT KILL" in got[1][1], (
                port,
                i,
                got,
            )
            assert got[2] is None, (port, i, got)
