"""A client blocked on a shard's keys is served right after the command
that made its key ready, before the next command of the same pipeline,
against both servers.

Redis serves blocked clients after each command (``processCommand`` calls
``handleClientsBlockedOnKeys`` once ``call`` made a key ready), or after
EXEC as a whole.  A pipelined batch reaches one shard whole, so that
shard must serve between its commands too: ``RPUSH src x`` then ``DEL
dst`` with a client blocked in ``BLMOVE src dst`` answers DEL 1.  Every
key carries the hash tag ``{t}``: one shard, with one shard or two.
"""

from __future__ import annotations

import pytest

from tests.support.resp import RespClient, encode_command
from tests.support.waits import read_or_error, wait_blocked

SRC, DST = "{t}src", "{t}dst"

# name: (setup, the blocked command, the pipelined writes and reads).
CASES = {
    "blmove-del-dst": ([], ["BLMOVE", SRC, DST, "LEFT", "RIGHT", 0], [["RPUSH", SRC, "x"], ["DEL", DST]]),
    "blmove-llen-src": ([], ["BLMOVE", SRC, DST, "LEFT", "RIGHT", 0], [["RPUSH", SRC, "x"], ["LLEN", SRC]]),
    "blpop-lpop": ([], ["BLPOP", SRC, 0], [["LPUSH", SRC, "a"], ["LPOP", SRC]]),
    "blmpop-push-push": (
        [],
        ["BLMPOP", 0, 1, SRC, "LEFT", "COUNT", 5],
        [["RPUSH", SRC, "a"], ["RPUSH", SRC, "b"], ["LRANGE", SRC, 0, -1]],
    ),
    "bzpopmin-zcard": (
        [],
        ["BZPOPMIN", SRC, 0],
        [["ZADD", SRC, 1, "m"], ["ZCARD", SRC], ["ZADD", SRC, 2, "n"]],
    ),
    "xread-xlen-xadd": (
        [],
        ["XREAD", "BLOCK", 0, "STREAMS", SRC, "$"],
        [["XADD", SRC, "5-1", "f", "v"], ["XADD", SRC, "5-2", "f", "w"], ["XLEN", SRC]],
    ),
    "xreadgroup-xpending": (
        [["XGROUP", "CREATE", SRC, "g", "$", "MKSTREAM"]],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", SRC, ">"],
        [["XADD", SRC, "5-1", "f", "v"], ["XPENDING", SRC, "g"], ["XADD", SRC, "5-2", "f", "w"]],
    ),
    # Inside MULTI/EXEC Redis serves after EXEC: the LPOP inside takes the
    # element, the one after EXEC finds nothing.
    "multi-push-llen": (
        [],
        ["BLPOP", SRC, 0],
        [["MULTI"], ["RPUSH", SRC, "a"], ["LLEN", SRC], ["EXEC"], ["LLEN", SRC]],
    ),
    "multi-push-pop": (
        [],
        ["BLPOP", SRC, 0],
        [["MULTI"], ["RPUSH", SRC, "a", "b"], ["LPOP", SRC], ["EXEC"], ["LPOP", SRC]],
    ),
    "blmove-multi-del": (
        [],
        ["BLMOVE", SRC, DST, "LEFT", "RIGHT", 0],
        [["MULTI"], ["RPUSH", SRC, "x"], ["EXISTS", DST], ["EXEC"], ["DEL", DST]],
    ),
}


def _run(port: int, setup: list, blocking: list, writes: list) -> list:
    with RespClient(port) as c, RespClient(port) as b:
        c.call("FLUSHALL")
        for args in setup:
            c.call(*args)
        b.send(*blocking)
        wait_blocked(c, 1)
        c.sock.sendall(b"".join(encode_command(*args) for args in writes))  # one read
        replies = [read_or_error(c) for _ in writes]
        served = read_or_error(b)
        c.call("FLUSHALL")
        return [served, replies]


@pytest.mark.parametrize("case", sorted(CASES))
def test_served_after_each_pipelined_command(redis_and_shardkv_s12, case):
    real, ours = redis_and_shardkv_s12
    setup, blocking, writes = CASES[case]
    assert _run(ours, setup, blocking, writes) == _run(real, setup, blocking, writes)
