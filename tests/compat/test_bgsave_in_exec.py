"""BGSAVE and BGREWRITEAOF inside MULTI/EXEC, against redis-server 7.0.15.

Redis never forks inside EXEC (bgsaveCommand, bgrewriteaofCommand: while
``server.in_exec``): it answers "Background saving scheduled" and
"Background append only file rewriting scheduled", and its serverCron
starts them after the EXEC (the rewrite first); a save already under way
still answers "Background save already in progress".  shardkv started
them at once ("Background saving started").  Each case compares the
replies, then, once the jobs are over, the INFO persistence figures.
"""

from __future__ import annotations

import time

from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import start_redis, start_shardkv

WAIT = 20.0  # seconds: a bound, not a timing check
FIELDS = (
    "rdb_changes_since_last_save",
    "rdb_saves",
    "rdb_last_bgsave_status",
    "aof_rewrites",
    "aof_last_bgrewrite_status",
    "aof_rewrite_scheduled",
)


def _info(c: RespClient) -> dict[str, str]:
    text = c.command("INFO", "persistence").decode()
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line)


def _settled(c: RespClient) -> dict[str, str]:
    """INFO persistence's FIELDS once no save or rewrite runs or waits."""
    deadline = time.monotonic() + WAIT
    while True:
        info = _info(c)
        idle = all(info[f] == "0" for f in ("rdb_bgsave_in_progress", "aof_rewrite_in_progress"))
        if (idle and info["aof_rewrite_scheduled"] == "0") or time.monotonic() > deadline:
            return {f: info[f] for f in FIELDS}
        time.sleep(0.02)


def _exec(c: RespClient, *commands: tuple[str, ...]) -> list:
    assert c.command("MULTI") == b"OK"
    for command in commands:
        assert c.command(*command) == b"QUEUED"
    c.send("EXEC")
    reply = c.read_reply()
    return [str(r) if isinstance(r, ErrorReply) else r for r in reply]


def _run(kind: str) -> list:
    proc = start_redis("--save", "") if kind == "redis" else start_shardkv("--save", "", shards=2)
    c = RespClient(proc.port, timeout=WAIT)
    seen: list = []
    try:
        for i in range(10):
            assert c.command("SET", f"k{i}", i) == b"OK"
        seen.append(_exec(c, ("BGSAVE",), ("BGREWRITEAOF",)))
        seen.append(_settled(c))
        # Every shard changed: each must save (one runs the EXEC's operation).
        assert c.command("MSET", *(x for i in range(10) for x in (f"k{i}", "again"))) == b"OK"
        assert c.command("WATCH", "k1") == b"OK"  # (shardkv: a cross-shard operation)
        seen.append(_exec(c, ("SET", "k2", "x"), ("BGSAVE",), ("BGREWRITEAOF",)))
        seen.append(_settled(c))
        # A save under way (20 ms a key): BGSAVE in EXEC finds it; a
        # rewrite is scheduled, to run after it.
        assert c.command("CONFIG", "SET", "rdb-key-save-delay", "20000") == b"OK"
        assert c.command("BGSAVE") == b"Background saving started"
        seen.append(_exec(c, ("BGSAVE",), ("BGREWRITEAOF",), ("BGSAVE", "SCHEDULE")))
        assert c.command("CONFIG", "SET", "rdb-key-save-delay", "0") == b"OK"
        seen.append(_settled(c))
        seen.append(_exec(c, ("BGSAVE", "NOW")))
    finally:
        c.close()
        proc.stop()
    return seen


def test_bgsave_and_bgrewriteaof_inside_exec_are_scheduled_as_redis():
    expected = _run("redis")
    assert expected[0] == [b"Background saving scheduled", b"Background append only file rewriting scheduled"]
    assert _run("shardkv") == expected
