"""MEMORY USAGE in INFO commandstats, compared with redis-server: a
script's ``redis.call('memory', 'usage', ...)`` counts as a call of
``memory|usage`` (the Lua client's), and a client's or a script's that
fails (a bad SAMPLES) counts in its failed_calls, as Redis counts them.
"""

from __future__ import annotations

from tests.support.resp import RespClient, parse_info


def _scenario(port: int) -> dict[str, str]:
    c = RespClient(port)
    try:
        c.command("SET", "mu-k", "v")
        c.command("CONFIG", "RESETSTAT")
        for body in (
            "redis.pcall('memory', 'usage', KEYS[1], 'samples', 'x')",
            "redis.pcall('memory', 'usage', KEYS[1])",
        ):
            c.command("EVAL", body + " return 1", 1, "mu-k")
        c.call("MEMORY", "USAGE", "mu-k", "SAMPLES", "x")
        c.call("MEMORY", "USAGE", "mu-k")
        info = parse_info(c.command("INFO", "everything"))  # type: ignore[arg-type]
    finally:
        c.close()
    out = {}
    for name in ("cmdstat_memory|usage", "cmdstat_eval"):
        fields = dict(f.split("=") for f in info[name].split(","))
        out[name] = ",".join(fields[f] for f in ("calls", "rejected_calls", "failed_calls"))
    out.update((k, v) for k, v in info.items() if k.startswith("errorstat_") or k == "total_error_replies")
    return out


def test_memory_usage_calls_and_failures_are_counted(redis_and_shardkv_k12) -> None:
    real, ours, _acceptors = redis_and_shardkv_k12
    want = _scenario(real)
    assert want["cmdstat_memory|usage"] == "4,0,2"
    assert _scenario(ours) == want


def _in_exec(port: int) -> list:
    """MEMORY USAGE failing in a transaction, then INFO in the same EXEC."""
    c = RespClient(port)
    try:
        c.command("SET", "mu-k", "v")
        c.command("CONFIG", "RESETSTAT")
        c.command("MULTI")
        for command in (
            ("MEMORY", "USAGE", "mu-k", "SAMPLES", "x"),
            ("MEMORY", "USAGE", "mu-k", "SAMPLES", "-1"),
            ("MEMORY", "USAGE", "mu-k", "FOO"),
            ("MEMORY", "USAGE", "mu-k"),
            ("INFO", "commandstats"),
            ("INFO", "errorstats"),
        ):
            c.command(*command)
        replies = c.call("EXEC")
    finally:
        c.close()
    out = []
    for line in replies.split(b"\r\n"):
        if line.startswith(b"cmdstat_memory|usage:"):
            fields = line.split(b":", 1)[1].split(b",")
            out.append(b",".join(f for f in fields if not f.startswith(b"usec")))
        elif line.startswith((b"errorstat_", b"-")):
            out.append(line)  # (not the usage figure: an estimate, see memusage)
    return out


def test_a_failed_memory_usage_in_exec_counts_before_the_next_command(redis_and_shardkv_k12) -> None:
    real, ours, _acceptors = redis_and_shardkv_k12
    want = _in_exec(real)
    assert b"calls=4,rejected_calls=0,failed_calls=3" in want
    assert _in_exec(ours) == want
