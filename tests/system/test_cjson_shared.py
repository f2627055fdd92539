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

The tests at the end compare with redis-server what one Lua state shows:
SCRIPT FLUSH sent while a setter runs, a worker started again, and two
setters through two acceptors.

The setters loop on ``redis.call('TIME')`` for a while before they set the
option, so that the other script is still running then; no reply's timing
is checked.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
import redis

from shardkv.protocol.router import Router
from tests.support.acceptors import client_on
from tests.support.processes import until, wait_spinning, worker_pid, worker_pids
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import start_redis, start_shardkv

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
        # The setter on A sets its option 2 s in; the loop on B is busy by
        # then.  The loop is sent once the setter runs, before its
        # threshold: sent first, or after that, it would be busy when the
        # other comes, which would get -BUSY.
        set_thread, set_out = _in_thread(lambda: setter.eval(SETTER, 1, A, 2000, 7))
        wait_spinning(worker_pid(server, Router(2).shard_of(A.encode())), lambda: set_out)
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


# -- against redis-server: what one Lua state would show -----------------------------


def _on(kind: str, port: int, acceptors: int, where: int) -> RespClient:
    if kind == "shardkv" and acceptors > 1:
        return client_on(port, where, k=acceptors)
    return RespClient(port, timeout=60)


def _getters(c: RespClient) -> list:
    return [c.command("EVAL", GETTER, 1, A), c.command("EVAL", GETTER, 1, B)]


@pytest.mark.parametrize("acceptors", [1, 2])
def test_script_flush_sent_while_a_setter_runs_resets_every_shard(acceptors: int) -> None:
    """SCRIPT FLUSH sent while a setter runs (through the other acceptor
    at K=2): Redis reads it after the script, and the fresh Lua state has
    the default options.  (The forward reached the other shard after its
    flush, and that shard kept the setter's option.)"""
    got = {}
    for kind, proc in (("redis", start_redis()), ("shardkv", start_shardkv(shards=2, acceptors=acceptors))):
        try:
            setter = _on(kind, proc.port, acceptors, 0)
            flusher = _on(kind, proc.port, acceptors, acceptors - 1)
            setter.send("EVAL", SETTER, 1, A, 1000, 7)
            time.sleep(0.3)  # (the script runs: Redis reads the flush after it)
            out = [flusher.call("SCRIPT", "FLUSH"), setter.read()]
            deadline = time.monotonic() + WAIT  # (K=2: the flush's pipe may be read later)
            while (depths := _getters(flusher)) != [1000, 1000] and time.monotonic() < deadline:
                time.sleep(0.05)
            got[kind] = out + depths
        finally:
            proc.stop()
    assert got["shardkv"] == got["redis"]


def _until_served(c: RespClient, deadline: float) -> None:
    """PING until it answers PONG: every restarted worker has reloaded
    (meanwhile a command naming no key gets -LOADING, since 13d9a95)."""
    while time.monotonic() < deadline:
        try:
            if c.command("PING") == b"PONG":
                return
        except ErrorReply as e:
            if not str(e).startswith("LOADING "):
                raise
        time.sleep(0.05)
    raise AssertionError("the restarted workers did not reload")


def test_a_worker_started_again_keeps_the_options() -> None:
    """A worker that dies and starts again takes the other shards' cjson
    options and SCRIPT FLUSH count: Redis's one Lua state keeps what a
    script set (the restarted shard had the defaults)."""
    got = {}
    for kind, proc in (("redis", start_redis()), ("shardkv", start_shardkv(shards=2))):
        try:
            c = RespClient(proc.port, timeout=60)
            out = [c.command("SCRIPT", "FLUSH"), c.command("EVAL", SETTER, 1, A, 0, 7)]
            if kind == "shardkv":
                shard = Router(2).shard_of(B.encode())
                old = worker_pids(proc)[shard]
                os.kill(old, signal.SIGKILL)
                deadline = time.monotonic() + 60
                while worker_pids(proc).get(shard, old) == old:
                    assert time.monotonic() < deadline, "the worker did not start again"
                    time.sleep(0.05)
                c = RespClient(proc.port, timeout=60)
                _until_served(c, deadline)
            deadline = time.monotonic() + WAIT  # (its options come from another shard's answer)
            while (depths := _getters(c)) != [7, 7] and time.monotonic() < deadline:
                time.sleep(0.05)
            out += depths
            # A forward after it: the restarted worker counts SCRIPT FLUSHes as the others do.
            out += [c.command("EVAL", SETTER, 1, A, 0, 9), *_getters(c)]
            out += [c.command("SCRIPT", "FLUSH"), c.command("EVAL", SETTER, 1, A, 0, 3), *_getters(c)]
            got[kind] = out
        finally:
            proc.stop()
    assert got["shardkv"] == got["redis"]


def test_two_setters_through_two_acceptors_end_as_in_redis() -> None:
    """Two setters on two shards at K=2, the second sent while the first
    runs: Redis runs the second after the first, and its option holds;
    every shard ends with it.  (Each acceptor's forward overwrote the other
    shard's: each shard ended with the other's.)"""
    got = {}
    for kind, proc in (("redis", start_redis()), ("shardkv", start_shardkv(shards=2, acceptors=2))):
        try:
            first = _on(kind, proc.port, 2, 0)
            second = _on(kind, proc.port, 2, 1)
            first.send("EVAL", SETTER, 1, A, 1000, 5)
            time.sleep(0.3)  # (the first runs)
            second.send("EVAL", SETTER, 1, B, 0, 7)
            out = [first.read(), second.read()]
            deadline = time.monotonic() + WAIT  # (a forward may still be on its way)
            while (depths := _getters(first) + _getters(second)) != [7] * 4 and time.monotonic() < deadline:
                time.sleep(0.05)
            got[kind] = out + depths
        finally:
            proc.stop()
    assert got["shardkv"] == got["redis"]


def test_two_workers_started_again_together_keep_the_options() -> None:
    """The workers of two shards of four die together: each that starts
    again takes the options from a shard that kept them, not from the
    other one started again (whose fresh state has the defaults): Redis's
    one Lua state keeps what a script set.  (Each asked the first other
    shard up, which could be the other restarted one: they kept the
    defaults.)"""
    router = Router(4)
    keys: dict[int, str] = {}
    i = 0
    while len(keys) < 4:
        keys.setdefault(router.shard_of(b"k%d" % i), "k%d" % i)
        i += 1
    got = {}
    for kind, proc in (("redis", start_redis()), ("shardkv", start_shardkv(shards=4))):
        try:
            c = RespClient(proc.port, timeout=60)
            out = [c.command("EVAL", SETTER, 1, keys[0], 0, 7)]
            if kind == "shardkv":
                pids = worker_pids(proc)
                for shard in (0, 1):
                    os.kill(pids[shard], signal.SIGKILL)
                deadline = time.monotonic() + 60
                while any(worker_pids(proc).get(shard, pids[shard]) == pids[shard] for shard in (0, 1)):
                    assert time.monotonic() < deadline, "the workers did not start again"
                    time.sleep(0.05)
                c = RespClient(proc.port, timeout=60)
                _until_served(c, deadline)
            deadline = time.monotonic() + WAIT  # (their options come from another shard's answer)
            while True:
                try:
                    depths = [c.command("EVAL", GETTER, 1, keys[s]) for s in range(4)]
                except Exception:  # (a shard whose worker is not back yet)
                    depths = []
                if depths == [7] * 4 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            got[kind] = out + depths
        finally:
            proc.stop()
    assert got["shardkv"] == got["redis"]


# Loops until INFO keyspace answers without the text ARGV[2], or ARGV[1] ms
# passed (0, by TIME).  INFO asks every shard, and meanwhile this shard's
# worker answers the inquiries it reads (the restarted worker's __cjsonstate
# among them).
LOOPER = """
local t = redis.call('TIME')
local stop = t[1] * 1000000 + t[2] + ARGV[1] * 1000
while true do
  local info = redis.pcall('INFO', 'keyspace')
  if type(info) == 'string' and not string.find(info, ARGV[2], 1, true) then return 1 end
  local n = redis.call('TIME')
  if n[1] * 1000000 + n[2] >= stop then return 0 end
end
"""
RESTART_WAIT = 60.0  # seconds for a killed worker's successor to answer (a loaded machine is slow)


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_worker_started_again_while_a_script_flush_is_on_its_way_stays_in_step(acceptors: int) -> None:
    """A script runs on A's shard while B's worker is killed, until the
    restarted worker answers, and SCRIPT FLUSH is sent just after the kill
    (through the other acceptor at K=2): the flush is lost with the dead
    worker's pipe, and A's shard answers the restarted worker's question for the
    cjson state during the script, before it runs the flush.  Redis reads
    the flush after the script: the defaults everywhere, then each later
    setter's options on every shard.  (The restarted worker took the other
    shard's count of flushes, one short: it kept the option set before the
    flush, held A's later setter's options for good, and its own setter's
    were dropped on A's shard.)

    The script knows the restarted worker answered its INFO when the only
    key, on B's shard, is gone (nothing is saved: the new worker starts
    empty); its acceptor asked A's shard for the cjson state as it took
    the new pipe, before that INFO.  On redis-server no worker restarts,
    and the script ends at its first INFO.  (It ended when an INFO failed
    and a later one answered, but none need fail: the new worker's pipe is
    handed over at once, and an INFO then waits for it.  The script then
    ran its whole 60 s, and the SCRIPT FLUSH sent behind it went past the
    clients' 10 s timeout, as a restart on a loaded machine could too.)"""
    shard_b = Router(2).shard_of(B.encode())
    got = {}
    for kind, proc in (("redis", start_redis()), ("shardkv", start_shardkv(shards=2, acceptors=acceptors))):
        try:
            c = _on(kind, proc.port, acceptors, 0)
            looper = _on(kind, proc.port, acceptors, 0)
            flusher = _on(kind, proc.port, acceptors, acceptors - 1)
            for conn in (c, looper, flusher):  # (the flush's reply waits for the restart)
                conn.sock.settimeout(RESTART_WAIT)
            c.command("CONFIG", "SET", "busy-reply-threshold", 120000)
            out = [c.command("SET", B, "marker"), c.command("EVAL", SETTER, 1, A, 0, 7)]
            gone = "db0:" if kind == "shardkv" else "(no restart)"  # (the marker is db0's only key)
            # (its bound is past the flush's wait: the restarted worker ends it)
            looper.send("EVAL", LOOPER, 1, A, int(RESTART_WAIT * 1500), gone)
            time.sleep(0.3)  # (the script runs: the flush waits behind it on A's shard)
            if kind == "shardkv":
                os.kill(worker_pid(proc, shard_b), signal.SIGKILL)
            out.append(flusher.command("SCRIPT", "FLUSH"))
            out.append(looper.read_reply())
            expected = [1000, 1000]
            for setter, key, value in ((c, A, 9), (flusher, B, 5)):
                out.append(_depths_until(c, flusher, expected))
                out.append(setter.command("EVAL", SETTER, 1, key, 0, value))
                expected = [value, value]
            out.append(_depths_until(c, flusher, expected))
            got[kind] = out
        finally:
            proc.stop()
    assert got["shardkv"] == got["redis"]


def _depths_until(c: RespClient, other: RespClient, expected: list[int]) -> list:
    """Both shards' option, through both connections, once both show
    ``expected`` (a forward may still be on its way), or after WAIT."""
    return until(lambda: (d := _getters(c) + _getters(other)) == expected * 2 and d, WAIT) or (
        _getters(c) + _getters(other)
    )
