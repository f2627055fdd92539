"""Cross-shard writes (FLUSHALL, MSET, DEL, an EXEC) sent while a script
loops, before busy-reply-threshold, against redis-server 7.0.15 (at one
acceptor, then two, from each acceptor).

Redis reads such a command at the threshold and answers it ``-BUSY``
(inside MULTI, each queued command ``-BUSY`` and EXEC ``-EXECABORT ...
BUSY ...``), a rejected call and a ``BUSY`` error, nothing applied.  The
acceptor cannot tell the script from a slow command before the threshold
(see README, busy scripts): at one acceptor the command runs after the
script, whole.  At two, its step's holds go to both shards and the busy
one refuses its hold at the threshold: the operation is refused, nothing
applied, and the client got shardkv's ``-ERR shard unavailable; the
operation was rolled back on every shard``; it now gets Redis's
``-BUSY``, counted as Redis counts it.  Either way all or nothing.
"""

from __future__ import annotations

import time

from tests.support.acceptors import client_on
from tests.support.resp import parse_info

WAIT = 30.0  # seconds for what must happen (a bound, not a timing check)
SPIN = "while true do end"
KEYS = [f"bxs{i}" for i in range(8)]  # (on both shards)
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."

FLUSHALL = [("FLUSHALL",)]
MSET = [("MSET", *[part for key in KEYS for part in (key, "new")])]
DEL = [("DEL", *KEYS)]
EXEC = [("MULTI",), *[("SET", key, "new") for key in KEYS], ("EXEC",)]


def _text(reply: object) -> object:
    """A reply as comparable text (an error's message, bytes decoded)."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, list):
        return [_text(r) for r in reply]
    if isinstance(reply, Exception):
        return str(reply)
    return reply


def _scenario(port: int, k: int, where: int, commands: list) -> list:
    """``commands`` pipelined from acceptor ``where`` 50 ms into a looping
    script (300 ms threshold), the script killed 0.5 s later: their
    replies, the keys' values after, and the BUSY and EXECABORT errors
    counted and the commands' calls, rejected and failed calls."""
    admin = client_on(port, 0, k=k, timeout=WAIT)
    caller = client_on(port, 0, k=k, timeout=WAIT)
    other = client_on(port, where, k=k, timeout=WAIT)
    try:
        admin.command("FLUSHALL")
        admin.command("CONFIG", "SET", "busy-reply-threshold", "300")
        for a in range(k):
            with client_on(port, a, k=k, timeout=WAIT) as c:
                c.command("CONFIG", "RESETSTAT")
        admin.command("MSET", *[part for key in KEYS for part in (key, "old")])
        caller.send("EVAL", SPIN, 0)
        time.sleep(0.05)
        for command in commands:
            other.send(*command)
        time.sleep(0.5)
        admin.command("SCRIPT", "KILL")
        replies = [_text(other.read_reply()) for _ in commands]
        assert str(caller.read_reply()).startswith("ERR Script killed")
        values = _text(admin.command("MGET", *KEYS))
        names = sorted({str(command[0]).lower() for command in commands} - {"multi"})
        seen = []
        for a in range(k):
            busy = [0, 0]
            stats = {}
            with client_on(port, a, k=k, timeout=WAIT) as c:
                info = parse_info(c.command("INFO", "everything"))  # type: ignore[arg-type]
            for i, code in enumerate(("BUSY", "EXECABORT")):
                line = info.get(f"errorstat_{code}")
                if line is not None:
                    busy[i] = int(line.split("=")[1])
            for name in names:
                line = info.get(f"cmdstat_{name}")
                if line is not None:
                    fields = dict(f.split("=") for f in line.split(","))
                    stats[name] = [int(fields[f]) for f in ("calls", "rejected_calls", "failed_calls")]
            seen.append([busy, stats])
        assert seen == seen[:1] * k  # (each acceptor's INFO shows every acceptor's counts)
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return [replies, values, *seen[0]]
    finally:
        admin.close()
        caller.close()
        other.close()


def test_cross_shard_writes_sent_before_the_threshold_are_all_or_nothing(redis_and_shardkv_k12) -> None:
    """Redis: ``-BUSY`` and nothing applied.  shardkv: that, or (run after
    the script) its normal reply with everything applied; never
    shardkv's own 'shard unavailable' for a busy refusal."""
    real, ours, k = redis_and_shardkv_k12
    for commands, applied in (
        (FLUSHALL, [None] * 8),
        (MSET, ["new"] * 8),
        (DEL, [None] * 8),
        (EXEC, ["new"] * 8),
    ):
        expected = _scenario(real, 1, 0, commands)
        if commands is EXEC:
            assert expected[0] == ["OK", *[BUSY] * 8, "EXECABORT Transaction discarded because of: " + BUSY]
        else:
            assert expected[0] == [BUSY]
        assert expected[1:3] == [["old"] * 8, [8, 1] if commands is EXEC else [1, 0]]
        for where in range(k):
            replies, values, busy, stats = _scenario(ours, k, where, commands)
            assert not any("shard unavailable" in str(r) for r in replies), replies
            if values == ["old"] * 8:  # refused: as Redis (the queued SETs were read before the threshold)
                if commands is EXEC:
                    assert replies == ["OK", *["QUEUED"] * 8, expected[0][-1]]
                    # Its EXECABORT and EXEC's rejected call, as Redis counts
                    # them (not the call counted as EXEC was read); the queued
                    # SETs ran nowhere.
                    assert [busy, stats] == [[0, 1], {"exec": [0, 1, 0]}]
                else:
                    assert [replies, busy, stats] == [expected[0], *expected[2:]]
            else:  # run after the script, whole
                assert values == applied
                assert busy == [0, 0]
                if commands is FLUSHALL:
                    assert replies == ["OK"]
                elif commands is MSET:
                    assert replies == ["OK"]
                elif commands is DEL:
                    assert replies == [8]
                else:
                    assert replies == ["OK", *["QUEUED"] * 8, ["OK"] * 8]
