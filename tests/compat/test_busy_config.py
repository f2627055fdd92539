"""CONFIG RESETSTAT and CONFIG SET sent while a script loops, against
redis-server 7.0.15 (at one acceptor, then two, from each acceptor).

Neither has the allow-busy flag: Redis answers them ``-BUSY`` once the
script is past busy-reply-threshold, and reads one sent before the
threshold at the threshold, ``-BUSY`` too; refused, it changes nothing
(no counter reset, no setting applied).  shardkv answers ``-BUSY`` to one
read past the threshold, changing nothing.  One read before it, the
acceptor cannot tell from a slow command (see README, busy scripts): at
two acceptors a shard's refused hold answered it ``-BUSY`` after this
acceptor had reset its counters (or applied the setting) and the other
shard its own, a refused command with an effect.  It now runs whole once
the script ends, as at one acceptor, and answers ``+OK``: all of it or,
past the threshold, nothing.
"""

from __future__ import annotations

import time

from tests.support.acceptors import client_on
from tests.support.resp import parse_info

WAIT = 30.0  # seconds for what must happen (a bound, not a timing check)
SPIN = "while true do end"
KEYS = [f"bcfg{i}" for i in range(8)]  # (on both shards)
RESETSTAT = ("CONFIG", "RESETSTAT")
SET = ("CONFIG", "SET", "maxmemory-samples", "7")


def _seen(port: int, k: int) -> list:
    """Through each acceptor: the counters a reset clears (PING's and
    GET's calls, the workers count GET; the BUSY errors) and
    maxmemory-samples."""
    seen = []
    for a in range(k):
        with client_on(port, a, k=k, timeout=WAIT) as c:
            info = parse_info(c.command("INFO", "everything"))  # type: ignore[arg-type]
            rows = {}
            for name in ("ping", "get", "config|resetstat", "config|set"):
                line = info.get(f"cmdstat_{name}")
                if line is not None:
                    fields = dict(f.split("=") for f in line.split(","))
                    rows[name] = (fields["calls"], fields["rejected_calls"])
            samples = c.command("CONFIG", "GET", "maxmemory-samples")[1]  # type: ignore[index]
            seen.append([rows, info.get("errorstat_BUSY"), samples])
    return seen


def _scenario(port: int, k: int, where: int, delay: float, command: tuple) -> list:
    """``command`` from acceptor ``where``, ``delay`` s into a looping
    script (300 ms threshold), the script killed 0.5 s later: its reply
    (first word) and what each acceptor shows after."""
    admin = client_on(port, 0, k=k, timeout=WAIT)
    caller = client_on(port, 0, k=k, timeout=WAIT)
    other = client_on(port, where, k=k, timeout=WAIT)
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "300")
        admin.command("CONFIG", "SET", "maxmemory-samples", "5")
        admin.command("CONFIG", "RESETSTAT")
        for _ in range(3):
            admin.command("PING")
        for key in KEYS:
            admin.command("GET", key)
        caller.send("EVAL", SPIN, 0)
        time.sleep(delay)
        other.send(*command)
        time.sleep(0.5)
        admin.command("SCRIPT", "KILL")
        reply = str(other.read_reply()).split(" ")[0]
        assert str(caller.read_reply()).startswith("ERR Script killed")
        seen = _seen(port, k)
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return [reply, seen]
    finally:
        admin.close()
        caller.close()
        other.close()


def test_config_refused_busy_changes_nothing(redis_and_shardkv_k12) -> None:
    """Past the threshold: ``-BUSY``, a rejected call, and no counter reset
    nor setting applied anywhere, as Redis."""
    real, ours, k = redis_and_shardkv_k12
    for command in (RESETSTAT, SET):
        expected = _scenario(real, 1, 0, 0.6, command)
        assert expected[0] == "BUSY"
        assert expected[1][0][0]["ping"] == ("3", "0") and expected[1][0][2] == b"5"
        for where in range(k):
            assert _scenario(ours, k, where, 0.6, command) == [expected[0], expected[1] * k]


def test_config_sent_before_the_threshold_is_all_or_nothing(redis_and_shardkv_k12) -> None:
    """Sent before the threshold: Redis answers ``-BUSY`` and changes
    nothing; shardkv runs it whole after the script and answers ``+OK``
    (every acceptor's and worker's counters reset, the setting applied
    everywhere), or, refused, changes nothing: never a refusal with an
    effect."""
    real, ours, k = redis_and_shardkv_k12
    for command in (RESETSTAT, SET):
        expected = _scenario(real, 1, 0, 0.05, command)
        assert expected[0] == "BUSY"
        for where in range(k):
            reply, seen = _scenario(ours, k, where, 0.05, command)
            if reply == "BUSY":
                assert seen == expected[1] * k
                continue
            assert reply == "b'OK'"
            for rows, busy_errors, samples in seen:
                if command == RESETSTAT:
                    assert "ping" not in rows and "get" not in rows and busy_errors is None
                    assert samples == b"5"
                else:
                    assert rows["ping"] == ("3", "0") and rows["get"] == (str(len(KEYS)), "0")
                    assert rows["config|set"][1] == "0" and samples == b"7"
