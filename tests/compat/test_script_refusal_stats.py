"""A script refused before it runs is a rejected call with no slow log
entry, compared with redis-server: a cross-shard EVAL answered ``-BUSY``
while another client's script runs (shardkv's shards refuse it, after
the acceptor sent it), and a ``#!lua`` script (which may write) under
``maxmemory 1``, which the acceptor refuses with OOM.  Redis refuses both
in ``processCommand`` (``rejected_calls``, nothing logged).
"""

from __future__ import annotations

import threading
import time

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, call_counts, parse_info

A, B = key_on(0, "srs", shards=2), key_on(1, "srs", shards=2)
ACROSS = "redis.call('set', KEYS[1], 1) return redis.call('set', KEYS[2], 2)"
SPIN = "while true do end"


def _eval_row(c: RespClient) -> str:
    """EVAL's calls, rejected and failed calls, and the errors counted."""
    info = parse_info(c.command("INFO", "everything"))  # type: ignore[arg-type]
    fields = dict(f.split("=") for f in info["cmdstat_eval"].split(","))
    errors = sorted(f"{k}={v}" for k, v in info.items() if k.startswith("errorstat_"))
    return ",".join([*(fields[f] for f in ("calls", "rejected_calls", "failed_calls")), *errors])


def _logged(c: RespClient, body: str) -> list:
    """The slow log's entries of the scripts ``body``."""
    return [e[3][:2] for e in c.command("SLOWLOG", "GET", "-1") if e[3][:2] == [b"EVAL", body.encode()]]  # type: ignore[union-attr]


def _busy_scenario(port: int) -> list:
    c, spinner = RespClient(port), RespClient(port, timeout=60)
    c.command("CONFIG", "SET", "busy-reply-threshold", "1000")
    c.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    try:
        c.command("SLOWLOG", "RESET")
        c.command("CONFIG", "RESETSTAT")
        spin = threading.Thread(target=lambda: spinner.call("EVAL", SPIN, 1, B))
        spin.start()
        # Sent while the script runs, before busy-reply-threshold: the
        # shards refuse the script's park once it passes.
        time.sleep(0.2)
        reply = c.call("EVAL", ACROSS, 2, A, B)
        c.command("SCRIPT", "KILL")
        spin.join(20)
        return [reply[:5], _eval_row(c), _logged(c, ACROSS)]
    finally:
        c.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.close()
        spinner.close()


def test_a_cross_shard_script_refused_busy_is_rejected_and_not_logged(redis_and_shardkv_k12) -> None:
    real, ours, _ = redis_and_shardkv_k12
    want = _busy_scenario(real)
    assert want == [
        b"-BUSY",
        "1,1,1,errorstat_BUSY=count=1,errorstat_ERR=count=1",
        [],
    ]  # the spinner's killed run failed; ours rejected
    assert _busy_scenario(ours) == want


def test_a_refused_cross_shard_script_and_a_resetstat_sent_after_it(redis_and_shardkv_k12) -> None:
    """A CONFIG RESETSTAT sent between a cross-shard EVAL's send (its call
    counted) and its refusal at the threshold (that call taken back): as
    Redis, it gets ``-BUSY`` at the threshold, nothing reset, and EVAL's
    row shows one call (the killed spinner's) and one rejected call.  (It
    ran whole before, after the script, between the count and the
    take-back: the reset row had no call to take back, and EVAL's calls
    were -1 until that was fixed.)"""
    _, ours, k = redis_and_shardkv_k12
    admin = client_on(ours, 0, k=k, timeout=30)
    spinner = client_on(ours, 0, k=k, timeout=30)
    other = client_on(ours, 0, k=k, timeout=30)
    resetter = client_on(ours, 0, k=k, timeout=30)  # (the acceptor that resets its counters at once)
    try:
        # Room for a loaded machine: the RESETSTAT must come before it.
        admin.command("CONFIG", "SET", "busy-reply-threshold", "1000")
        admin.command("CONFIG", "RESETSTAT")  # (the module's earlier tests' calls)
        spinner.send("EVAL", SPIN, 1, B)
        time.sleep(0.05)
        other.send("EVAL", ACROSS, 2, A, B)
        time.sleep(0.05)
        resetter.send("CONFIG", "RESETSTAT")  # before the threshold (refused at it)
        reply = str(other.read_reply())
        assert str(resetter.read_reply()).startswith("BUSY Redis is busy running a script")
        admin.command("SCRIPT", "KILL")
        spinner.read_reply()
        assert reply.startswith("BUSY Redis is busy running a script")
        # (the spinner's EVAL, killed, is a call; the other's, refused, is not)
        assert _eval_row(admin).split(",")[:2] == ["1", "1"]
    finally:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        admin.close()
        spinner.close()
        other.close()
        resetter.close()


RETURN = "return 1"
RETURN_SHA = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"  # SHA1 of RETURN
LIBRARY = "#!lua name=srslib\nredis.register_function('srsf', function() return 1 end)"
SCRIPT_ROWS = ("eval", "evalsha", "fcall")


def _one_shard_scenarios(port: int, k: int) -> list:
    """A script for the spinning script's shard (keyless: shard 0), sent by
    another client before busy-reply-threshold: EVAL, EVALSHA of a script
    loaded (then of one that ran), FCALL.  Its reply and the counts."""
    got = []
    admin = client_on(port, 0, k=k, timeout=60)
    try:
        admin.command("CONFIG", "SET", "busy-reply-threshold", "300")
        admin.command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
        admin.command("SCRIPT", "LOAD", RETURN)
        for where in range(k):
            for call in (
                ("EVAL", RETURN, 0),
                ("EVALSHA", RETURN_SHA, 0),
                ("EVALSHA", RETURN_SHA, 0),  # (it ran now: shardkv's shortcut)
                ("FCALL", "srsf", 0),
            ):
                spinner = client_on(port, 0, k=k, timeout=60)
                other = client_on(port, where, k=k, timeout=60)
                try:
                    other.command(*call)  # (it ran once: the shortcut's cache)
                    admin.command("CONFIG", "RESETSTAT")
                    spinner.send("EVAL", SPIN, 0)
                    time.sleep(0.1)  # before the threshold: refused once it passes
                    other.send(*call)
                    reply = str(other.read_reply())
                    admin.command("SCRIPT", "KILL")
                    spun = str(spinner.read_reply()).split(" ")[0]
                    got.append([reply, spun, call_counts(admin, SCRIPT_ROWS)])
                finally:
                    spinner.close()
                    other.close()
        admin.command("FUNCTION", "DELETE", "srslib")
        admin.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        admin.close()


def test_a_one_shard_script_refused_busy_is_a_rejected_call(redis_and_shardkv_k12) -> None:
    """Redis counts a script it refuses ``-BUSY`` at the threshold as a
    rejected call (and ``errorstat_BUSY``), not a call.  shardkv's worker
    refuses it so, but the acceptor had counted the call as it sent it:
    one call more than Redis's (EVAL ``calls=2`` with the killed one)."""
    real, ours, k = redis_and_shardkv_k12
    want = _one_shard_scenarios(real, 1)
    assert want[0][0].startswith("BUSY Redis is busy running a script")
    assert want[0][2][0] == ["eval:1,1,1"]  # the killed spinner's call, and the refused one
    assert want[1][2][0] == ["eval:1,0,1", "evalsha:0,1,0"]
    assert _one_shard_scenarios(ours, k) == want * k


def _oom_scenario(port: int) -> list:
    c = RespClient(port)
    c.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
    c.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    try:
        c.command("SLOWLOG", "RESET")
        c.command("CONFIG", "RESETSTAT")
        c.command("CONFIG", "SET", "maxmemory", "1")
        replies = [c.call("EVAL", "#!lua\nreturn 1", len(keys), *keys)[:4] for keys in ([A], [A, B])]
        c.command("CONFIG", "SET", "maxmemory", "0")
        return [replies, _eval_row(c), _logged(c, "#!lua\nreturn 1")]
    finally:
        c.command("CONFIG", "SET", "maxmemory", "0")
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.close()


def test_a_shebang_script_refused_for_oom_is_rejected_and_not_logged(redis_and_shardkv_k12) -> None:
    real, ours, _acceptors = redis_and_shardkv_k12
    want = _oom_scenario(real)
    assert want == [[b"-OOM", b"-OOM"], "0,2,0,errorstat_OOM=count=2", []]
    assert _oom_scenario(ours) == want


def _exec_scenario(port: int) -> list:
    c, other = RespClient(port), RespClient(port)
    c.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
    try:
        c.command("CONFIG", "RESETSTAT")
        c.command("MULTI")
        queued = c.call("EVAL", "#!lua\nreturn 1", 1, A)
        other.command("CONFIG", "SET", "maxmemory", "1")
        reply = c.call("EXEC")
        other.command("CONFIG", "SET", "maxmemory", "0")
        info = parse_info(c.command("INFO", "everything"))  # type: ignore[arg-type]
        counted = {k: v for k, v in info.items() if k.startswith(("errorstat_", "cmdstat_e"))}
        for k, v in counted.items():  # without the times
            counted[k] = ",".join(f for f in v.split(",") if not f.startswith("usec"))
        return [queued, reply, counted]
    finally:
        other.command("CONFIG", "SET", "maxmemory", "0")
        c.close()
        other.close()


def test_an_exec_holding_a_shebang_script_is_refused_for_oom(redis_and_shardkv_k12) -> None:
    real, ours, _acceptors = redis_and_shardkv_k12
    want = _exec_scenario(real)
    assert want[1].startswith(b"-EXECABORT")
    assert _exec_scenario(ours) == want
