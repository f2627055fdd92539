"""cjson's options, set by a script, end the same on every shard (issue 18).

Redis has one Lua state, so an option a script sets on ``cjson`` holds for
every later script; shardkv's shards each have a state, and the acceptor
sends a setter's options on to the other shards
(:func:`shardkv.acceptor.scriptcalls._share_cjson`).  What redis-server
shows here is that one value everywhere; the scenarios below (two scripts
at once on two shards) cannot happen there, so the check is that shardkv's
shards agree once the scripts are done:

- the forward to a shard whose own script is past busy-reply-threshold
  (before, it got ``-BUSY`` and that shard kept its old options);
- two setters running at once on two shards (before, each forward
  overwrote the other shard's setting: each shard ended with the other's).

The setters loop on ``redis.call('TIME')`` for a while before they set the
option, so that the other script is still running then; no reply's timing
is checked.
"""

from __future__ import annotations

import threading
import time

import pytest
import redis

from shardkv.protocol.router import Router
from tests.support.servers import start_shardkv

pytestmark = pytest.mark.slow

A, B = "{a}x", "{b}s"  # on two shards of 2
assert Router(2).shard_of(A.encode()) != Router(2).shard_of(B.encode())

# Loops ARGV[1] ms (by TIME), then sets encode_max_depth to ARGV[2].
SETTER = """
local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + ARGV[1] * 1000
while true do
  local n = redis.call('TIME')
  if n[1] * 1000000 + n[2] >= stop then break end
end
cjson.encode_max_depth(tonumber(ARGV[2]))
return 1
"""
GETTER = "return cjson.encode_max_depth()"
WAIT = 20.0  # seconds for what must happen (a generous bound, not a timing check)
LOOP = "#!lua flags=no-writes\nwhile true do end"


def _in_thread(target) -> tuple[threading.Thread, list]:
    out: list = []

    def run() -> None:
        try:
            out.append(target())
        except Exception as e:  # noqa: BLE001 - what it raised is the result
            out.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _depths(conn: redis.Redis) -> list[int]:
    return [conn.eval(GETTER, 1, A), conn.eval(GETTER, 1, B)]


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_forward_to_a_busy_shard_is_not_lost(acceptors: int) -> None:
    server = start_shardkv(shards=2, acceptors=acceptors)
    try:
        admin = redis.Redis(port=server.port, socket_timeout=60)
        admin.config_set("busy-reply-threshold", 500)
        setter = redis.Redis(port=server.port, socket_timeout=60)
        looper = redis.Redis(port=server.port, socket_timeout=60)
        # The setter on A sets its option 2 s in; the loop on B is busy by then.
        set_thread, set_out = _in_thread(lambda: setter.eval(SETTER, 1, A, 2000, 7))
        loop_thread, loop_out = _in_thread(lambda: looper.eval(LOOP, 1, B))
        set_thread.join(60)
        assert set_out == [1]
        assert admin.script_kill()
        loop_thread.join(60)
        assert len(loop_out) == 1 and "Script killed" in str(loop_out[0])
        # At K=2 the forward comes on the setter's acceptor's pipe, and the
        # getter maybe on the other one's, which the worker may serve first
        # (a documented gap): wait for it, within a generous bound.
        deadline = time.monotonic() + WAIT
        while _depths(admin) != [7, 7]:
            assert time.monotonic() < deadline, _depths(admin)
            time.sleep(0.05)
    finally:
        server.stop()


def test_two_setters_at_once_leave_the_shards_agreeing() -> None:
    server = start_shardkv(shards=2, acceptors=1)
    try:
        admin = redis.Redis(port=server.port, socket_timeout=60)
        first = redis.Redis(port=server.port, socket_timeout=60)
        # B sets 5 after 1.5 s; meanwhile A sets 7 at once, whose forward
        # to B waits behind B's script.
        thread, out = _in_thread(lambda: first.eval(SETTER, 1, B, 1500, 5))
        assert redis.Redis(port=server.port, socket_timeout=60).eval(SETTER, 1, A, 0, 7) == 1
        thread.join(60)
        assert out == [1]
        depths = _depths(admin)
        assert depths[0] == depths[1], depths
    finally:
        server.stop()
