"""Cross-shard writes (FLUSHALL, MSET, DEL, an EXEC) sent while a script
loops, before busy-reply-threshold, against redis-server 7.0.15 (at one
acceptor, then two, from each acceptor).

Redis reads such a command at the threshold and answers it ``-BUSY``
(inside MULTI, each queued command ``-BUSY`` and EXEC ``-EXECABORT ...
BUSY ...``), a rejected call and a ``BUSY`` error, nothing applied.  So
does shardkv for FLUSHALL, MSET and DEL: at two acceptors the busy shard
refuses its step's hold at the threshold, at one it refuses the
fan-out's part that waits behind the script (the parts the free shard
prepared are undone; they used to run after the script, whole).  So for
a RENAME across shards, whose park on the busy shard it refuses.  So for
a transaction's queued commands: they wait for the script that the
worker said runs, and get ``-BUSY`` at the threshold (they got
``+QUEUED`` at once, and the EXEC ran after the script at one acceptor,
see README, busy scripts), and sent after the threshold.
"""

from __future__ import annotations

import select
import time

from shardkv.protocol import errors
from shardkv.protocol.router import Router
from tests.support.acceptors import client_on
from tests.support.processes import script_pid, wait_busy, wait_spinning
from tests.support.resp import parse_info

WAIT = 30.0  # seconds for what must happen (a bound, not a timing check)
SPIN = "while true do end"
KEYS = [f"bxs{i}" for i in range(8)]  # (on both shards)
BUSY = "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."

FLUSHALL = [("FLUSHALL",)]
MSET = [("MSET", *[part for key in KEYS for part in (key, "new")])]
DEL = [("DEL", *KEYS)]
RENAME = [("RENAME", KEYS[0], KEYS[2])]  # (from shard 1 onto shard 0, the spinning script's)
EXEC = [("MULTI",), *[("SET", key, "new") for key in KEYS], ("EXEC",)]
BLMOVE = [("BLMOVE", KEYS[0], KEYS[2], "LEFT", "RIGHT", 0)]  # (a string: WRONGTYPE once it runs)


# (command, when sent) -> redis-server's outcome, asked once for both params.
_REDIS: dict[tuple, list] = {}


def _text(reply: object) -> object:
    """A reply as comparable text (an error's message, bytes decoded)."""
    if isinstance(reply, bytes):
        return reply.decode()
    if isinstance(reply, list):
        return [_text(r) for r in reply]
    if isinstance(reply, Exception):
        return str(reply)
    return reply


def _scenario(port: int, k: int, where: int, commands: list, after: bool = False) -> list:
    """``commands`` pipelined from acceptor ``where`` into a looping script
    (300 ms threshold) once it is seen running (before the threshold,
    unless the machine is slow), or, ``after``, once it is busy (an
    admin's PING refused, counted too), the script killed 0.5 s later:
    their replies, the keys' values after, and the BUSY and EXECABORT
    errors counted and the commands' calls, rejected and failed calls.
    (Sent a fixed time after the script, they could reach a loaded server
    first, or only part of the pipeline, and run or be queued.)"""
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
        if after:
            wait_busy(lambda: admin.command("PING"))
        else:
            wait_spinning(script_pid(port, 0))  # (a keyless script's shard)
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


def test_cross_shard_writes_sent_before_the_threshold_are_refused_as_redis(redis_and_shardkv_k12) -> None:
    """FLUSHALL, MSET, DEL, RENAME: Redis's ``-BUSY``, counts and no effect
    at one and two acceptors (RENAME ran after the script at one, and was
    not counted at two).  A transaction, its SETs sent before or after the
    threshold: as Redis at both.  A BLMOVE across shards: refused and
    counted as Redis at two (it was counted a failed call), run after the
    script at one (see README, busy scripts)."""
    real, ours, k = redis_and_shardkv_k12
    for commands, after in (
        (FLUSHALL, False),
        (MSET, False),
        (DEL, False),
        (RENAME, False),
        (EXEC, False),
        (EXEC, True),
        (BLMOVE, False),
    ):
        key = (commands[-1][0], after)
        if key not in _REDIS:  # (the same at K=1 and 2: asked once)
            _REDIS[key] = _scenario(real, 1, 0, commands, after)
        expected = _REDIS[key]
        if commands is EXEC:
            assert expected[0] == ["OK", *[BUSY] * 8, "EXECABORT Transaction discarded because of: " + BUSY]
            busy = 8 + after  # (the probe's PING)
            assert expected[1:] == [["old"] * 8, [busy, 1], {"exec": [0, 1, 0], "set": [0, 8, 0]}]
        else:
            assert expected[0] == [BUSY]
            assert expected[1:3] == [["old"] * 8, [1, 0]]
        for where in range(k):
            got = _scenario(ours, k, where, commands, after)
            if commands is BLMOVE and k == 1:  # a blocking command waits, and runs after the script
                assert got == [[errors.WRONGTYPE], expected[1], [0, 0], {"blmove": [1, 0, 1]}]
            else:
                assert got == expected


CROSS = ("EVAL", SPIN, 2, KEYS[0], KEYS[2])  # a looping script over both shards
CROSS_FCALL = ("FCALL", "bxspin", 2, KEYS[0], KEYS[2])  # a looping function over both shards
LIBRARY = "#!lua name=bxs\nredis.register_function('bxspin', function() while true do end end)"


def _readable(c) -> bool:
    """Has a reply (or part of one) come on ``c``, without waiting?"""
    return bool(c.buf) or bool(select.select([c.sock], [], [], 0)[0])


def _kill_until_answered(port: int, k: int, sent: list[tuple[int, tuple]], script: tuple = CROSS) -> dict:
    """``script`` (a looping one over both shards) from acceptor 0, then
    each of ``sent`` (acceptor, command) on its own connection once the
    script is seen looping (before the 200 ms threshold, unless the
    machine is slow: the same replies then), then SCRIPT KILL (FUNCTION
    KILL), again while it says so, until every command has its reply (10 s
    at most): how many kills it took, the replies (the script's first),
    and the BUSY errors and the commands' calls and rejected calls
    counted.  (Sent a fixed time after the script, a command may reach
    a loaded server first, Redis too, and run before it.)"""
    admin = client_on(port, 0, k=k, timeout=WAIT)
    caller = client_on(port, 0, k=k, timeout=WAIT)
    others = [client_on(port, where, k=k, timeout=WAIT) for where, _ in sent]
    conns = [caller, *others]
    got: list = [None] * len(conns)
    kills = 0
    kill = ("FUNCTION", "KILL") if script[0] == "FCALL" else ("SCRIPT", "KILL")
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "200")
        if script[0] == "FCALL":
            admin.command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
        for a in range(k):
            with client_on(port, a, k=k, timeout=WAIT) as c:
                c.command("CONFIG", "RESETSTAT")
        admin.command("MSET", *[part for key in KEYS for part in (key, "old")])
        caller.send(*script)
        wait_spinning(script_pid(port, Router(2).shard_of(script[3].encode())))
        for c, (_, command) in zip(others, sent, strict=True):
            c.send(*command)
        deadline = time.monotonic() + 10
        while None in got and time.monotonic() < deadline:
            admin.send(*kill)
            kills += admin.read_reply() == b"OK"
            for i, c in enumerate(conns):
                if got[i] is None and _readable(c):
                    got[i] = _text(c.read_reply())
            time.sleep(0.02)
        assert None not in got, got
        values = _text(admin.command("MGET", *KEYS))
        names = sorted({str(command[0]).lower() for _, command in sent} | {script[0].lower()})
        info = parse_info(admin.command("INFO", "everything"))  # type: ignore[arg-type]
        stats = {"BUSY": info.get("errorstat_BUSY")}
        for name in names:
            line = info.get(f"cmdstat_{name}")
            if line is not None:
                fields = dict(f.split("=") for f in line.split(","))
                stats[name] = [int(fields[f]) for f in ("calls", "rejected_calls")]
        return {"kills": kills, "replies": got, "values": values, "stats": stats}
    finally:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        for c in (admin, *conns):
            c.close()


def test_cross_shard_scripts_and_commands_sent_before_the_threshold_get_busy(redis_and_shardkv_k12) -> None:
    """Other clients' looping scripts over the same two shards, their reads
    of either shard's key, a write across both, a RENAME across them and
    a script on one, sent while a looping script (function) over both
    shards runs, before busy-reply-threshold: Redis reads each at the
    threshold and answers it ``-BUSY``, so one SCRIPT KILL ends it all.
    shardkv, at two acceptors, ran each script after the killed one,
    looping past the threshold again (one SCRIPT KILL each), and what
    another acceptor sent the shard the script's executor had parked
    after the script (see README, cross-shard scripts)."""
    real, ours, k = redis_and_shardkv_k12
    busy_function = errors.BUSY_FUNCTION
    for script, sent in (
        (CROSS, [(0, CROSS), (1, CROSS)]),
        (
            CROSS,
            [
                (0, ("GET", KEYS[0])),
                (1, ("GET", KEYS[2])),
                (1, ("GET", KEYS[0])),
                (0, ("GET", KEYS[2])),
                (1, ("MSET", KEYS[0], "new", KEYS[2], "new")),
                (1, ("RENAME", KEYS[0], KEYS[2])),
                (1, ("EVAL", "return redis.call('GET', KEYS[1])", 1, KEYS[2])),
            ],
        ),
        (CROSS_FCALL, [(1, CROSS_FCALL), (1, ("GET", KEYS[2])), (1, ("GET", KEYS[0]))]),
    ):
        expected = _kill_until_answered(real, 1, sent, script)
        assert expected["kills"] == 1
        assert str(expected["replies"][0]).startswith(("ERR Script killed by user", "ERR Script killed"))
        assert expected["replies"][1:] == [BUSY if script is CROSS else busy_function] * len(sent)
        assert expected["values"] == ["old"] * len(KEYS)
        assert _kill_until_answered(ours, k, sent, script) == expected
