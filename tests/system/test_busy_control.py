"""What the acceptor tells a worker while it runs a busy script is not lost.

A script past busy-reply-threshold makes the acceptor answer ``-BUSY`` for
the clients' commands bound for its shard, as Redis does; the acceptor's
own messages to the worker (``__events``, ``__pause``) are queued instead
and run when the script ends (:meth:`shardkv.acceptor.shardlink.ShardLink.send_control`).
Here, a CLIENT PAUSE WRITE that ends while the script is busy: once the
script is killed, the shard's active expiry is on again and removes the
expired keys, as on redis-server (before, the ``__pause 0`` got ``-BUSY``
and that shard never expired a key actively again).  And a subscriber of
keyspace events that leaves while the script is busy, then a new one after
SCRIPT KILL: the new one hears the writes, at one acceptor and at two.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psutil
import pytest
import redis

from tests.support.acceptors import (
    acceptor_pids,
    client_on,
    every_acceptor_answers,
    flush_through_every_acceptor,
)
from tests.support.placement import key_on
from tests.support.processes import until, wait_busy, worker_pid
from tests.support.resp import ErrorReply, RespClient
from tests.support.servers import ServerProcess, start_redis, start_shardkv

pytestmark = pytest.mark.slow

T = TypeVar("T")

WAIT = 20.0  # seconds for what must happen (a generous bound, not a timing check)
LOOP = "#!lua flags=no-writes\nwhile true do end"


def on_redis(scenario: Callable[[int], T], *flags: str) -> T:
    """What ``scenario`` (given the port) gives on a fresh redis-server."""
    server = start_redis(*flags)
    try:
        return scenario(server.port)
    finally:
        server.stop()


# The module's shardkv of each shape (shards, acceptors), shared by the
# scenarios that need no start-up flags: started by the first, reset
# before each (see _reset), stopped after one that fails or leaves an
# acceptor not answering, and at the module's end.
_SHARED: dict[tuple[int, int], tuple[ServerProcess, dict]] = {}


@pytest.fixture(scope="module", autouse=True)
def _stop_shared() -> Iterator[None]:
    yield
    while _SHARED:
        _SHARED.popitem()[1][0].stop()


def _config(port: int) -> dict:
    with RespClient(port, timeout=WAIT) as c:
        reply = c.command("CONFIG", "GET", "*")
    assert isinstance(reply, list)
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _reset(server: ServerProcess, config: dict, acceptors: int) -> None:
    """The shared server as a fresh one: empty (once every worker serves:
    a scenario may have killed one), no script, library, pause or
    statistics, every setting a scenario changed set back."""
    flush_through_every_acceptor(server.port, acceptors)  # (each gets a restarted worker's pipe on its own)
    with RespClient(server.port, timeout=WAIT) as c:
        for command in (
            ("SCRIPT", "FLUSH"),
            ("FUNCTION", "FLUSH"),
            ("CLIENT", "UNPAUSE"),
            ("CONFIG", "RESETSTAT"),
        ):
            assert c.command(*command) == b"OK"
        for name, value in _config(server.port).items():
            if config[name] != value:
                assert c.command("CONFIG", "SET", name, config[name]) == b"OK"


def on_shardkv(scenario: Callable[[ServerProcess], T], *flags: str, acceptors: int, shards: int = 2) -> T:
    """What ``scenario`` (given the server) gives on a shardkv of ``shards``
    shards and ``acceptors`` acceptors as it starts: one of its own with
    start-up ``flags``, else the module's shared one of that shape, reset."""
    if flags:
        server = start_shardkv(*flags, shards=shards, acceptors=acceptors)
        try:
            return scenario(server)
        finally:
            server.stop()
    shape = (shards, acceptors)
    if shape not in _SHARED:
        server = start_shardkv(shards=shards, acceptors=acceptors)
        _SHARED[shape] = (server, _config(server.port))
    server, config = _SHARED[shape]
    healthy = False
    try:
        _reset(server, config, acceptors)
        result = scenario(server)
        healthy = every_acceptor_answers(server.port, acceptors)
        return result
    finally:
        if not healthy:
            _SHARED.pop(shape)[0].stop()


def run_busy_script(port: int) -> threading.Thread:
    """A script that loops until SCRIPT KILL, on the shard of ``{b}``; returns
    once the server answers -BUSY."""

    def run() -> None:
        conn = redis.Redis(port=port, socket_timeout=60)
        with pytest.raises(redis.ResponseError, match="Script killed"):
            conn.eval(LOOP, 1, "{b}s")
        conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    probe = redis.Redis(port=port, socket_timeout=WAIT)
    wait_busy(probe.ping)
    probe.close()
    return thread


def kill_script(port: int, thread: threading.Thread) -> None:
    conn = redis.Redis(port=port, socket_timeout=WAIT)
    assert conn.script_kill()
    conn.close()
    thread.join(WAIT)
    assert not thread.is_alive()


def expire_after_pause_ends_while_busy(port: int) -> int:
    """Keys on the script's shard, a CLIENT PAUSE WRITE that ends while the
    script is busy; the keys left once active expiry has had its chance."""
    conn = redis.Redis(port=port, socket_timeout=WAIT)
    for i in range(20):
        conn.set(f"{{b}}k{i}", "v", px=200)
    conn.execute_command("CLIENT", "PAUSE", "500", "WRITE")
    paused = time.monotonic()
    thread = run_busy_script(port)
    time.sleep(max(0.0, 1.0 - (time.monotonic() - paused)))  # the pause ends meanwhile
    kill_script(port, thread)
    deadline = time.monotonic() + WAIT
    while conn.dbsize() and time.monotonic() < deadline:  # DBSIZE counts expired keys not yet removed
        time.sleep(0.1)
    left = conn.dbsize()
    conn.close()
    return left


@pytest.mark.parametrize("acceptors", [1, 2])
def test_active_expiry_resumes_when_a_pause_ends_while_a_script_is_busy(acceptors: int) -> None:
    flags = ("--busy-reply-threshold", "100")
    assert on_redis(expire_after_pause_ends_while_busy, *flags) == 0

    def expire(server: ServerProcess) -> int:
        left = expire_after_pause_ends_while_busy(server.port)
        assert server.proc.poll() is None
        return left

    assert on_shardkv(expire, *flags, acceptors=acceptors) == 0


def events_after_a_subscriber_left_while_busy(port: int) -> list:
    """A subscriber of keyspace events leaves while a script is busy; one
    that tries then gets -BUSY; after SCRIPT KILL a new one hears two SETs."""
    first = redis.Redis(port=port, socket_timeout=WAIT)
    listener = first.pubsub()
    listener.psubscribe("__keyevent@0__:*")
    assert listener.get_message(timeout=WAIT)["type"] == "psubscribe"
    thread = run_busy_script(port)
    listener.close()  # the interest shrinks while the shard is busy
    first.close()
    refused = redis.Redis(port=port, socket_timeout=WAIT)
    with pytest.raises(redis.ResponseError, match="BUSY"):
        refused.execute_command("PSUBSCRIBE", "__keyevent@0__:*")
    refused.close()
    kill_script(port, thread)
    conn = redis.Redis(port=port, socket_timeout=WAIT)
    second = redis.Redis(port=port, socket_timeout=WAIT).pubsub()
    second.psubscribe("__keyevent@0__:*")
    assert second.get_message(timeout=WAIT)["type"] == "psubscribe"
    conn.set("{b}x", "1")
    conn.set("other", "2")
    got = []
    deadline = time.monotonic() + WAIT
    while len(got) < 2 and time.monotonic() < deadline:
        message = second.get_message(timeout=1.0)
        if message is not None:
            got.append((message["channel"], message["data"]))
    second.close()
    conn.close()
    return got


@pytest.mark.parametrize("acceptors", [1, 2])
def test_events_after_a_subscriber_left_while_a_script_was_busy(acceptors: int) -> None:
    flags = ("--busy-reply-threshold", "100", "--notify-keyspace-events", "KEA")
    expected = on_redis(events_after_a_subscriber_left_while_busy, *flags)
    assert expected == [(b"__keyevent@0__:set", b"{b}x"), (b"__keyevent@0__:set", b"other")]
    got = on_shardkv(lambda s: events_after_a_subscriber_left_while_busy(s.port), *flags, acceptors=acceptors)
    assert got == expected


# -- every client's commands get -BUSY, whatever their shard ----------------------

# xx and other live on shard 1 of 2, the script's key {b}s on shard 0.
MULTI_KEY, OTHER_KEY = "xx", "other"


def ask(c: RespClient, *args: str | int) -> object:
    """One command's reply, an error as its first word."""
    c.send(*args)
    reply = c.read_reply()
    return str(reply).split(" ")[0] if isinstance(reply, ErrorReply) else reply


def multi_and_script_timeout(port: int, acceptors: int, queued_first: bool) -> list:
    """Redis's unit/multi "MULTI and script timeout" (``queued_first``
    False) and "MULTI-EXEC body and script timeout" (True), with the
    script's client on acceptor 0 and the transaction's on the last one,
    its keys on another shard than the script's; plus a GET of such a key
    from a third client while the script is busy.  The replies, errors as
    their first word."""
    setup = RespClient(port, timeout=WAIT)
    setup.command("CONFIG", "SET", "busy-reply-threshold", "100")
    setup.command("SET", MULTI_KEY, "1")
    scripter = client_on(port, 0, k=acceptors, timeout=WAIT)
    r2 = client_on(port, acceptors - 1, k=acceptors, timeout=WAIT)
    probe = client_on(port, acceptors - 1, k=acceptors, timeout=WAIT)
    got: list = []
    note = got.append
    if queued_first:
        note(ask(r2, "MULTI"))
        note(ask(r2, "INCR", MULTI_KEY))
    scripter.send("EVAL", LOOP, 1, "{b}s")
    wait_busy(lambda: probe.command("PING"))
    note(ask(probe, "GET", OTHER_KEY))
    note(ask(probe, "WATCH", OTHER_KEY))  # allow-busy
    if not queued_first:
        note(ask(r2, "MULTI"))
    note(ask(r2, "INCR", MULTI_KEY))
    note(ask(setup, "SCRIPT", "KILL"))
    note(str(scripter.read_reply()).split(" ")[0])
    # As Redis's test waits 200 ms: r2's acceptor may hear of the end a
    # moment after the script's own acceptor.
    deadline = time.monotonic() + WAIT
    while ask(probe, "PING") != b"PONG":
        assert time.monotonic() < deadline, "the script never ended"
        time.sleep(0.02)
    if not queued_first:
        note(ask(r2, "INCR", MULTI_KEY))
    note(ask(r2, "EXEC"))
    note(ask(r2, "GET", MULTI_KEY))
    note(ask(r2, "PING", "asdf"))
    note(ask(probe, "GET", OTHER_KEY))
    for c in (setup, scripter, r2, probe):
        c.close()
    return got


@pytest.mark.parametrize("queued_first", [False, True], ids=["multi-while-busy", "body-while-busy"])
@pytest.mark.parametrize("acceptors", [1, 2])
def test_every_command_gets_busy_while_a_script_is_busy(acceptors: int, queued_first: bool) -> None:
    """While a script is past busy-reply-threshold, Redis answers -BUSY to
    every command but the allow-busy ones, whatever its keys, and a MULTI
    being queued then aborts at EXEC; so does shardkv, for clients of any
    acceptor, whatever shard the script runs on (it answered +QUEUED and a
    GET's value for keys of the other shard)."""
    expected = on_redis(lambda port: multi_and_script_timeout(port, 1, queued_first))
    assert expected == [
        *([b"OK", b"QUEUED"] if queued_first else []),
        "BUSY",
        b"OK",
        *([] if queued_first else [b"OK"]),
        "BUSY",
        b"OK",
        "ERR",
        *([] if queued_first else [b"QUEUED"]),
        "EXECABORT",
        b"1",
        b"asdf",
        None,
    ]
    got = on_shardkv(lambda s: multi_and_script_timeout(s.port, acceptors, queued_first), acceptors=acceptors)
    assert got == expected


def transactions_while_busy(port: int, acceptors: int) -> list:
    """Redis 7.0's processCommand while a script is past the threshold:
    MULTI, DISCARD, WATCH and UNWATCH are allow-busy and run; a command to
    queue gets -BUSY and flags the transaction; EXEC gets -BUSY, which
    for EXEC is ``EXECABORT`` and discards the transaction (its commands
    queued before the script did not run, and nothing is watched).  A key
    WATCHed while the script is busy, on the script's shard, that nothing
    touched: the EXEC after the script runs (shardkv's ``__watch`` got
    -BUSY, the key's version stayed unknown, and EXEC aborted).  The
    transaction's client on the last acceptor, the script's on the first.
    The replies, errors as their first word."""
    setup = RespClient(port, timeout=WAIT)
    setup.command("CONFIG", "SET", "busy-reply-threshold", "100")
    scripter = client_on(port, 0, k=acceptors, timeout=WAIT)
    r2 = client_on(port, acceptors - 1, k=acceptors, timeout=WAIT)
    probe = client_on(port, acceptors - 1, k=acceptors, timeout=WAIT)
    got: list = []
    note = got.append
    note(ask(r2, "WATCH", "{b}w1"))
    note(ask(r2, "MULTI"))
    note(ask(r2, "SET", "{b}q", "1"))
    scripter.send("EVAL", LOOP, 1, "{b}s")
    wait_busy(lambda: probe.command("PING"))
    note(ask(r2, "EXEC"))  # queued before: discarded
    note(ask(r2, "EXEC"))  # no MULTI any more, but EXECABORT still (the busy check comes first)
    note(ask(r2, "MULTI"))
    note(ask(r2, "SET", "{b}q", "2"))
    note(ask(r2, "DISCARD"))
    note(ask(r2, "WATCH", "{b}w2", "{b}w3"))
    note(ask(r2, "UNWATCH"))
    note(ask(r2, "WATCH", "{b}w2"))
    deadline = time.monotonic() + WAIT
    while ask(setup, "SCRIPT", "KILL") != b"OK":  # (its acceptor may hear of the script a moment later)
        assert time.monotonic() < deadline, "the script was never killed"
        time.sleep(0.02)
    note(str(scripter.read_reply()).split(" ")[0])
    while ask(probe, "PING") != b"PONG":
        assert time.monotonic() < deadline, "the script never ended"
        time.sleep(0.02)
    note(ask(r2, "MULTI"))
    note(ask(r2, "SET", "{b}w2", "3"))
    note(ask(r2, "EXEC"))
    note(ask(r2, "MGET", "{b}q", "{b}w2"))
    for c in (setup, scripter, r2, probe):
        c.close()
    return got


@pytest.mark.parametrize("acceptors", [1, 2])
def test_transactions_and_watch_while_a_script_is_busy(acceptors: int) -> None:
    expected = on_redis(lambda port: transactions_while_busy(port, 1))
    assert expected == [
        *(b"OK", b"OK", b"QUEUED"),
        *("EXECABORT", "EXECABORT", b"OK", "BUSY", b"OK", b"OK", b"OK", b"OK"),
        "ERR",  # Script killed by user with SCRIPT KILL...
        *(b"OK", b"QUEUED", [b"OK"], [None, b"3"]),
    ]
    got = on_shardkv(lambda s: transactions_while_busy(s.port, acceptors), acceptors=acceptors)
    assert got == expected


# A script that writes its first key at once, goes on once ARGV[1] more
# WATCHes ran (INFO commandstats: Redis counts one as it runs it, from the
# processEventsWhileBlocked that reads it while the script is busy; an
# acceptor of shardkv once it sent it to the shards) and a new client
# connected (INFO's total_connections_received: Redis accepts it there too),
# then writes its second key; its other keys, on another shard with more
# than one, the same; and its second key again in database 9, which nothing
# used before.  No clock in it: its end is the test's.
WRITES_AROUND_A_SIGNAL = """
local function counts()
  local info = redis.call('info', 'stats', 'commandstats')
  local watches = string.match(info, 'cmdstat_watch:calls=(%d+)') or 0
  return tonumber(string.match(info, 'total_connections_received:(%d+)')), tonumber(watches)
end
local seen, watched = counts()
watched = watched + tonumber(ARGV[1])
redis.call('set', KEYS[1], 'early')
if KEYS[3] then redis.call('set', KEYS[3], 'early') end
while true do
  local connections, watches = counts()
  if connections ~= seen and watches >= watched then break end
  for i = 1, 20000 do end
end
redis.call('set', KEYS[2], 'late')
if KEYS[4] then redis.call('set', KEYS[4], 'late') end
redis.call('select', 9)
redis.call('set', KEYS[2], 'late')
return 1
"""
# On the script's shard, and on another one with 2 or 4 shards.
OWN_KEYS = ["{b}early", "{b}late"]
OTHER_KEYS = ["{a}early", "{a}late"]


def watch_writes_of_a_busy_script(port: int, acceptors: int, across: bool) -> list:
    """Each key WATCHed by a client of its own while the script is busy
    (after a probe's -BUSY), the last acceptor's, and the script's second
    key by one in database 9: Redis runs the WATCH then,
    and the script's write after it fails the EXEC, its write before it
    does not.  The script writes its second keys once the server counted
    every WATCH (commandstats) and a connection made after a probe's PING,
    answered -BUSY, shows that it is still busy then.  That PING alone
    proved nothing about the WATCHes sent before it on other connections:
    a server need not read connections in the order they were written to
    (an acceptor writes the PING's -BUSY as it reads it, and may read a
    WATCH after it: under load the last WATCHes' EXECs ran, sent to the
    workers after the script's write, as Redis's run for a WATCH it reads
    after the write).  The
    WATCHes' OKs are read after the script (with several
    acceptors, one of a shard that no script runs waits for it).  shardkv
    once read the versions at the script's end, and every EXEC ran (now
    :mod:`shardkv.worker.busywatch` runs such a WATCH while the script is
    busy).  The replies, errors as their first word."""
    keys = OWN_KEYS + (OTHER_KEYS if across else [])
    setup = RespClient(port, timeout=WAIT)
    setup.command("CONFIG", "SET", "busy-reply-threshold", "100")
    scripter = client_on(port, 0, k=acceptors, timeout=WAIT)
    last = acceptors - 1
    probe = client_on(port, last, k=acceptors, timeout=WAIT)
    watchers = [client_on(port, last, k=acceptors, timeout=WAIT) for _ in range(len(keys) + 1)]
    assert watchers[-1].command("SELECT", "9") == b"OK"  # before: SELECT is not allow-busy
    scripter.send("EVAL", WRITES_AROUND_A_SIGNAL, len(keys), *keys, len(watchers))
    wait_busy(lambda: probe.command("PING"))
    for watcher, key in zip(watchers, [*keys, OWN_KEYS[1]], strict=True):
        watcher.send("WATCH", key)
    got: list = [ask(probe, "PING")]  # still busy
    RespClient(port, timeout=WAIT).close()  # the script goes on, once it counted the WATCHes
    got.append(scripter.read_reply())
    for watcher in watchers:
        got.append(watcher.read_reply())
        got.append(ask(watcher, "MULTI"))
        got.append(ask(watcher, "SET", "{b}x", "1"))
        got.append(ask(watcher, "EXEC"))
    got.append(ask(probe, "MGET", *keys))
    for c in (setup, scripter, probe, *watchers):
        c.close()
    return got


@pytest.mark.parametrize(
    ("shards", "acceptors"), [(1, 1), (1, 2), (2, 1), (4, 2)], ids=["1x1", "1x2", "2x1", "4x2"]
)
def test_watched_keys_written_by_a_busy_script(shards: int, acceptors: int) -> None:
    across = shards > 1
    expected = on_redis(lambda port: watch_writes_of_a_busy_script(port, 1, across))
    ran, failed = (b"OK", b"OK", b"QUEUED", [b"OK"]), (b"OK", b"OK", b"QUEUED", None)
    assert expected == [
        "BUSY",
        1,
        *ran,  # {b}early: written before the WATCH
        *failed,  # {b}late: after it
        *((*ran, *failed) if across else ()),
        *failed,  # {b}late in database 9, which the script selected after the WATCH
        [b"early", b"late", *((b"early", b"late") if across else ())],
    ]
    if across:
        # Shards the script runs on as a cross-shard operation's parked
        # partners count every change it made there (shardkv.worker.busywatch):
        # the write before the WATCH fails that EXEC too.
        expected[10:14] = failed
    got = on_shardkv(
        lambda s: watch_writes_of_a_busy_script(s.port, acceptors, across), acceptors=acceptors, shards=shards
    )
    assert got == expected


# -- the script's own client waits for it ------------------------------------------


LOOP_LIBRARY = (
    "#!lua name=busylib\n"
    "redis.register_function{function_name='loop', callback=function() while true do end end,"
    " flags={'no-writes'}}"
)


def callers_commands_while_busy(port: int, acceptors: int, how: str = "eval") -> list:
    """The client running a busy script (``how``: EVAL, EVALSHA, FCALL,
    EVAL in MULTI/EXEC, or EVAL across both shards, of declared keys or of
    an undeclared one) sends more commands after the threshold, keys on
    both shards and a SCRIPT KILL of its own; another client kills the
    script.  Redis reads nothing from the script's client while the script
    runs (it is protected), so those commands run after the script, with
    their usual replies: its own SCRIPT KILL finds nothing to kill.  The
    replies, errors as their first word."""
    setup = RespClient(port, timeout=WAIT)
    setup.command("CONFIG", "SET", "busy-reply-threshold", "100")
    # The script's client on the first acceptor, the other on the last, or
    # (EVALSHA, EXEC, cross) the other way round.
    last = acceptors - 1
    first, other = (last, 0) if how in ("evalsha", "exec", "cross") else (0, last)
    scripter = client_on(port, first, k=acceptors, timeout=WAIT)
    probe = client_on(port, other, k=acceptors, timeout=WAIT)
    kill = ("FUNCTION", "KILL") if how == "fcall" else ("SCRIPT", "KILL")
    got: list = []
    if how == "evalsha":
        sha = setup.command("SCRIPT", "LOAD", LOOP)
        scripter.send("EVALSHA", sha, 1, "{b}s")  # type: ignore[arg-type]
    elif how == "fcall":
        setup.command("FUNCTION", "LOAD", "REPLACE", LOOP_LIBRARY)
        scripter.send("FCALL", "loop", 1, "{b}s")
    elif how == "cross":  # declared keys on both shards: parks them, runs on one
        scripter.send("EVAL", LOOP, 2, "{b}s", MULTI_KEY)
    elif how == "escape":  # an undeclared key of the other shard: runs again, parking both
        scripter.send(
            "EVAL", f"#!lua flags=no-writes\nredis.call('get', '{MULTI_KEY}')\nwhile true do end", 1, "{b}s"
        )
    elif how == "exec":
        got.append(ask(scripter, "MULTI"))
        got.append(ask(scripter, "EVAL", LOOP, 1, "{b}s"))
        scripter.send("EXEC")
    else:
        scripter.send("EVAL", LOOP, 1, "{b}s")
    wait_busy(lambda: probe.command("PING"))
    scripter.send("SET", "{b}k", "1")
    scripter.send("SET", OTHER_KEY, "2")
    scripter.send(*kill)
    scripter.send("MGET", "{b}k", OTHER_KEY)
    time.sleep(0.3)  # they reach the server while the script is busy (not a timing check)
    got.append(ask(probe, "GET", OTHER_KEY))
    got.append(ask(probe, *kill))
    for i in range(5):
        reply = scripter.read_reply()
        if how == "exec" and i == 0 and isinstance(reply, list):  # the killed script's error, in EXEC's array
            reply = [r.split(b" ")[0] if isinstance(r, bytes) else r for r in reply]
        got.append(str(reply).split(" ")[0] if isinstance(reply, ErrorReply) else reply)
    got.append(ask(probe, "MGET", "{b}k", OTHER_KEY))
    if how == "fcall":
        setup.command("FUNCTION", "FLUSH")
    for c in (setup, scripter, probe):
        c.close()
    return got


@pytest.mark.parametrize("how", ["eval", "evalsha", "fcall", "exec", "cross", "escape"])
@pytest.mark.parametrize("acceptors", [1, 2])
def test_the_scripts_own_client_waits_for_it(acceptors: int, how: str) -> None:
    """shardkv answered -BUSY to the script's own client (and ran its SCRIPT
    KILL, which killed its own script)."""
    expected = on_redis(lambda port: callers_commands_while_busy(port, 1, how))
    script_reply = [b"ERR"] if how == "exec" else "ERR"
    assert expected == [
        *([b"OK", b"QUEUED"] if how == "exec" else []),
        "BUSY",
        b"OK",
        script_reply,
        b"OK",
        b"OK",
        "NOTBUSY",
        [b"1", b"2"],
        [b"1", b"2"],
    ]
    got = on_shardkv(lambda s: callers_commands_while_busy(s.port, acceptors, how), acceptors=acceptors)
    assert got == expected


# -- a write sent during CLIENT PAUSE while a script is busy -------------------------


def paused_write_while_busy(port: int, acceptors: int) -> list:
    """A write sent during CLIENT PAUSE WRITE while a script is busy: Redis
    checks for the busy script before the pause (processCommand), so it is
    answered -BUSY at once, not postponed.  The replies."""
    setup = RespClient(port, timeout=WAIT)
    setup.command("CONFIG", "SET", "busy-reply-threshold", "100")
    got: list = [ask(setup, "CLIENT", "PAUSE", 100000, "WRITE")]
    scripter = client_on(port, 0, k=acceptors, timeout=WAIT)
    writer = client_on(port, acceptors - 1, k=acceptors, timeout=WAIT)
    scripter.send("EVAL", LOOP, 1, "{b}s")
    wait_busy(lambda: writer.command("PING"))
    got.append(ask(writer, "SET", OTHER_KEY, "1"))  # a postponed one never answers: the read times out
    got.append(ask(writer, "SET", "{b}k", "1"))
    got.append(ask(setup, "SCRIPT", "KILL"))
    got.append(str(scripter.read_reply()).split(" ")[0])
    got.append(ask(setup, "CLIENT", "UNPAUSE"))
    got.append(ask(writer, "SET", OTHER_KEY, "2"))
    for c in (setup, scripter, writer):
        c.close()
    return got


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_paused_write_gets_busy_while_a_script_is_busy(acceptors: int) -> None:
    """shardkv postponed the write until the pause ended."""
    expected = on_redis(lambda port: paused_write_while_busy(port, 1))
    assert expected == [b"OK", "BUSY", "BUSY", b"OK", "ERR", b"OK", b"OK"]
    assert on_shardkv(lambda s: paused_write_while_busy(s.port, acceptors), acceptors=acceptors) == expected


# -- a subscribed RESP2 client is refused before the busy and pause checks --------


def subscribed_client_while_busy_or_paused(port: int, acceptors: int) -> list:
    """A subscribed RESP2 client sends a write during CLIENT PAUSE WRITE,
    then a GET while a script is busy: Redis refuses both at once for the
    subscribed context (its check comes before the busy and pause ones),
    and counts them as rejected calls.  The replies, then those counts."""
    setup = RespClient(port, timeout=WAIT)
    setup.command("CONFIG", "SET", "busy-reply-threshold", "100")
    setup.command("CONFIG", "RESETSTAT")
    subscriber = client_on(port, acceptors - 1, k=acceptors, timeout=WAIT)
    got: list = [ask(subscriber, "SUBSCRIBE", "ch")]
    got.append(ask(setup, "CLIENT", "PAUSE", 100000, "WRITE"))
    got.append(ask(subscriber, "SET", OTHER_KEY, "1"))  # a postponed one never answers: the read times out
    got.append(ask(setup, "CLIENT", "UNPAUSE"))
    scripter = client_on(port, 0, k=acceptors, timeout=WAIT)
    scripter.send("EVAL", LOOP, 1, "{b}s")
    wait_busy(lambda: setup.command("PING"))
    got.append(ask(subscriber, "GET", OTHER_KEY))
    got.append(ask(setup, "SCRIPT", "KILL"))
    got.append(str(scripter.read_reply()).split(" ")[0])
    asker = client_on(port, acceptors - 1, k=acceptors, timeout=WAIT)  # the subscriber's acceptor counts them
    stats = asker.command("INFO", "commandstats")
    asker.close()
    assert isinstance(stats, bytes)
    for name in (b"cmdstat_set:", b"cmdstat_get:"):
        line = next(x for x in stats.split(b"\r\n") if x.startswith(name))
        got.append(line.split(b"rejected_calls=")[1].split(b",")[0])
    for c in (setup, subscriber, scripter):
        c.close()
    return got


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_subscribed_client_is_refused_before_the_busy_and_pause_checks(acceptors: int) -> None:
    """shardkv postponed the write and answered the GET -BUSY."""
    expected = on_redis(lambda port: subscribed_client_while_busy_or_paused(port, 1))
    assert expected == [[b"subscribe", b"ch", 1], b"OK", "ERR", b"OK", "ERR", b"OK", "ERR", b"1", b"1"]
    got = on_shardkv(lambda s: subscribed_client_while_busy_or_paused(s.port, acceptors), acceptors=acceptors)
    assert got == expected


# -- SCRIPT KILL while another acceptor is stopped -----------------------------------


def killed_while_an_acceptor_is_stopped(port: int, stop: Callable[[], Callable[[], None]]) -> list:
    """A script on the shard of ``{b}``, sent through acceptor 0; another
    client's INCRs of ``{b}n``, pipelined through acceptor 1 before the
    threshold; then ``stop()`` (shardkv: acceptor 1 is stopped, so it
    never answers the script's busy report; it returns what resumes it),
    and SCRIPT KILL past the threshold.  The script's client gets its
    error at once and the shard serves again, while acceptor 1 still
    sleeps; once resumed, each INCR was answered once (run, or refused
    with -BUSY) and the counter says how many ran: none ran twice, none
    was lost.  The replies, errors as their first word."""
    admin = client_on(port, 0, k=2, timeout=WAIT)
    admin.command("CONFIG", "SET", "busy-reply-threshold", "500")
    admin.command("SET", "{b}n", "0")
    scripter = client_on(port, 0, k=2, timeout=WAIT)
    other = client_on(port, 1, k=2, timeout=WAIT)
    scripter.send("EVAL", LOOP, 1, "{b}s")
    time.sleep(0.1)
    for _ in range(3):
        other.send("INCR", "{b}n")
    time.sleep(0.05)  # forwarded to the worker (either way, each must run once or be refused)
    resume = stop()
    try:
        time.sleep(1.0)  # past the threshold
        got: list = [ask(admin, "SCRIPT", "KILL")]
        scripter.sock.settimeout(5.0)  # within the stop: a generous bound, not a timing check
        reply = scripter.read_reply()
        got.append(str(reply).split(" ")[0] if isinstance(reply, ErrorReply) else reply)
        got.append(ask(admin, "SET", "{b}x", "1"))  # the shard serves again
    finally:
        resume()
    incrs = [other.read_reply() for _ in range(3)]
    ran = [r for r in incrs if not isinstance(r, ErrorReply)]
    assert all(str(r).startswith("BUSY") for r in incrs if isinstance(r, ErrorReply)), incrs
    assert ran == list(range(1, len(ran) + 1)), incrs  # each ran once, in order
    got.append(int(ask(other, "GET", "{b}n")) == len(ran))  # type: ignore[arg-type]
    got.append(ask(other, "PING"))
    for c in (admin, scripter, other):
        c.close()
    return got


def test_script_kill_answers_at_once_while_another_acceptor_is_stopped() -> None:
    """The worker waited, with no limit, for every acceptor's answer (``K``)
    to the script's busy report when the script ended: with acceptor 1
    stopped, SCRIPT KILL answered OK but the script's client got nothing
    and the shard stayed busy until acceptor 1 ran again."""
    expected = on_redis(lambda port: killed_while_an_acceptor_is_stopped(port, lambda: lambda: None))
    assert expected == [b"OK", "ERR", b"OK", True, b"PONG"]

    def scenario(server: ServerProcess) -> list:
        stopped = acceptor_pids(server)[1]

        def stop() -> Callable[[], None]:
            os.kill(stopped, signal.SIGSTOP)
            return lambda: os.kill(stopped, signal.SIGCONT)

        return killed_while_an_acceptor_is_stopped(server.port, stop)

    assert on_shardkv(scenario, acceptors=2) == expected


# Loops for about 1.5 s (no writes), so reads of its shard sent meanwhile
# wait in the shard's pipe; well under busy-reply-threshold (5 s).
SPIN = (
    "local t = redis.call('TIME') local stop = t[1] * 1000000 + t[2] + 1500000 "
    "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] >= stop return 1"
)


@pytest.mark.parametrize("acceptors", [1, 2])
def test_tracking_table_limit_while_its_reads_wait_behind_a_busy_script(acceptors: int) -> None:
    """A lower tracking-table-max-keys while every tracked key has a read in
    flight (waiting behind a busy script on its shard): each key evicted is
    put back (the read may run after the change), and the eviction loop
    drew again and again, forever: the acceptor hung.  Now it tries each key
    once; the CONFIG SET answers, and the read's reply comes after the
    script's."""

    def scenario(server: ServerProcess) -> list:
        scripter = RespClient(server.port)
        tracker = RespClient(server.port, protocol=3)
        admin = RespClient(server.port, timeout=WAIT)  # a generous bound: fails, not hangs
        try:
            got: list = [tracker.command("CLIENT", "TRACKING", "on")]
            scripter.send("EVAL", SPIN, 1, "{k}s")
            time.sleep(0.2)  # the script runs (sequencing only, nothing timed)
            tracker.send("MGET", "{k}1", "{k}2", "{k}3")
            time.sleep(0.2)  # the MGET waits in the shard's pipe
            got.append(admin.command("CONFIG", "SET", "tracking-table-max-keys", "1"))
            got.append(scripter.read_reply())
            reply = tracker.read_reply()
            while not isinstance(reply, list) or reply[:1] == [b"invalidate"]:
                reply = tracker.read_reply()
            got.append(reply)
            got.append(admin.command("PING"))
            return got
        finally:
            for c in (scripter, tracker, admin):
                c.close()

    assert on_shardkv(scenario, acceptors=acceptors) == [b"OK", b"OK", 1, [None, None, None], b"PONG"]


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_kill_held_for_a_script_under_the_threshold_ends_when_its_worker_dies(acceptors: int) -> None:
    """A SCRIPT KILL sent while a script runs under busy-reply-threshold
    waits for the shards (``shardlink._HeldUntilThreshold``: Redis reads it only at
    the threshold); its worker killed meanwhile, the kill is answered
    ``-NOTBUSY`` (the script is gone with it), not left waiting, and the
    script's client gets the shard's error.  At two acceptors, the kill
    goes through the other acceptor than the script."""

    def scenario(server: ServerProcess) -> None:
        caller = client_on(server.port, 0, k=acceptors, timeout=WAIT)
        killer = client_on(server.port, acceptors - 1, k=acceptors, timeout=WAIT)
        key = key_on(0, "held", shards=2)
        killer.command("CONFIG", "SET", "busy-reply-threshold", "60000")
        caller.send("EVAL", "while true do end", 1, key)
        time.sleep(0.2)  # (it runs)
        killer.send("SCRIPT", "KILL")
        killer.sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            killer.read_reply()  # held: the script is not past the threshold
        killer.sock.settimeout(WAIT)
        os.kill(worker_pid(server, 0), signal.SIGKILL)
        assert str(killer.read_reply()).startswith("NOTBUSY ")
        assert str(caller.read_reply()).startswith("ERR shard unavailable")
        assert until(lambda: ask(killer, "SET", key, "v") == b"OK")
        caller.close()
        killer.close()

    on_shardkv(scenario, acceptors=acceptors)


def kill_twice(port: int, pause: Callable[[], Callable[[], None]], acceptors: int = 1) -> list:
    """SCRIPT KILL of a busy script, then another one 0.2 s after its
    ``+OK``; ``pause()`` (stops the script's worker, returning what resumes
    it) after the first's ``+OK``, until the second is sent: (the kills'
    replies, the script's), errors as their first word.  At two acceptors
    the script and the first kill go through acceptor 0, the second kill
    through acceptor 1.  (The worker was once stopped before the first
    kill, whose ``+OK`` came at the signal; it now comes once the worker
    has stopped the script, see scripting._KillVerdict.)"""
    killer = client_on(port, 0, k=acceptors, timeout=WAIT)
    caller = client_on(port, 0, k=acceptors, timeout=WAIT)
    second = client_on(port, 1, k=acceptors, timeout=WAIT)
    try:
        killer.command("CONFIG", "SET", "busy-reply-threshold", "100")
        caller.send("EVAL", LOOP, 1, "{b}s")
        wait_busy(lambda: killer.command("GET", "{b}x"))
        got = [ask(killer, "SCRIPT", "KILL")]
        resume = pause()
        time.sleep(0.2)  # (the kill's OK is out: a later command, not a timing check)
        second.send("SCRIPT", "KILL")
        resume()
        got.append(ask_reply(second))
        got.append(ask_reply(caller))
        killer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
        return got
    finally:
        killer.close()
        caller.close()
        second.close()


def ask_reply(c: RespClient) -> object:
    reply = c.read_reply()
    return str(reply).split(" ")[0] if isinstance(reply, ErrorReply) else reply


def test_a_kill_read_after_a_kill_finds_the_script_gone() -> None:
    """Redis's SCRIPT KILL stops the script before Redis reads anything
    more (the hook raises as processEventsWhileBlocked returns): a kill sent
    after its ``+OK`` finds nothing.  shardkv's acceptor answers ``+OK``
    once it signalled the worker, which stops the script when it runs
    next: a kill read meanwhile answered ``+OK`` again (under load, a
    test that kills until the scripts' clients have their replies counted
    two kills).  It now waits for the script's end (here the worker is
    stopped until the second kill is sent)."""
    expected = on_redis(lambda port: kill_twice(port, lambda: lambda: None))
    assert expected == [b"OK", "NOTBUSY", "ERR"]

    def scenario(server: ServerProcess) -> list:
        shard = 0  # {b}'s, of two
        pid = worker_pid(server, shard)

        def pause() -> Callable[[], None]:
            os.kill(pid, signal.SIGSTOP)
            return lambda: os.kill(pid, signal.SIGCONT)

        return kill_twice(server.port, pause)

    assert on_shardkv(scenario, acceptors=1) == expected


def test_a_kill_through_the_other_acceptor_after_a_kill_finds_the_script_gone() -> None:
    """The same at two acceptors, the second kill through the other
    acceptor than the first: it signalled the worker again and answered
    ``+OK``, as it knew nothing of the first kill.  The acceptor that
    signals now tells the others before it answers (the bus's
    ``scriptkill``), so the second kill waits for the script's end too."""
    expected = on_redis(lambda port: kill_twice(port, lambda: lambda: None))
    assert expected == [b"OK", "NOTBUSY", "ERR"]

    def scenario(server: ServerProcess) -> list:
        pid = worker_pid(server, 0)  # {b}'s, of two

        def pause() -> Callable[[], None]:
            os.kill(pid, signal.SIGSTOP)
            return lambda: os.kill(pid, signal.SIGCONT)

        return kill_twice(server.port, pause, acceptors=2)

    assert on_shardkv(scenario, acceptors=2) == expected


# Spins %d microseconds of its clock, plain Lua between TIME calls (its
# count hooks come every few ms however slow a call is).
SPIN_FOR = (
    "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end "
    "local t0 = now() while now() - t0 < %d do for i = 1, 2000 do end end "
)


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_kill_stops_every_busy_script_it_can(acceptors: int) -> None:
    """Two shards each run a busy script (Redis runs one), one of which
    has written: the kill stops the other and answers ``-UNKILLABLE``, as
    Redis answers for the one that wrote; a kill after it answers so
    again, while the writer runs on.  It answered ``-UNKILLABLE`` and
    stopped nothing when it knew of the write (the loop ran on until the
    writer ended), and stopped the loop with the same answer when the
    worker told it after its signal (scripting._KillVerdict): the
    README's "busy scripts".  (Nothing outside tells which shards the
    acceptor knows busy, every command gets ``-BUSY``: kills go until the
    loop's client has its reply.)"""

    def scenario(server: ServerProcess) -> list:
        k0, k1 = key_on(0, "several", shards=2), key_on(1, "several", shards=2)
        killer = client_on(server.port, acceptors - 1, k=acceptors, timeout=WAIT)
        looping = client_on(server.port, 0, k=acceptors, timeout=WAIT)
        writing = client_on(server.port, 0, k=acceptors, timeout=WAIT)
        try:
            killer.command("CONFIG", "SET", "busy-reply-threshold", "100")
            # (Both sent under the threshold: a script sent while another
            # is busy gets -BUSY, as in Redis.)
            writing.send(
                "EVAL", "redis.call('SET', KEYS[1], 'w') " + SPIN_FOR % 5_000_000 + "return 1", 1, k1
            )
            looping.send("EVAL", LOOP, 1, k0)
            wait_busy(lambda: killer.command("GET", k0))
            kills = set()
            while not select.select([looping.sock], [], [], 0.05)[0]:
                kills.add(ask(killer, "SCRIPT", "KILL"))
            got = [kills <= {"UNKILLABLE", b"OK"}, ask_reply(looping)]
            got.append(ask(killer, "SCRIPT", "KILL"))  # (the writer spins 5 s: a bound, not a timing check)
            got += [ask_reply(writing), ask(killer, "GET", k1)]
            killer.command("CONFIG", "SET", "busy-reply-threshold", "5000")
            return got
        finally:
            for c in (killer, looping, writing):
                c.close()

    assert on_shardkv(scenario, acceptors=acceptors) == [True, "ERR", "UNKILLABLE", 1, b"w"]


def kill_while_stopped(server: ServerProcess, acceptors: int, then: int) -> list:
    """SCRIPT KILL of a busy loop while its worker is stopped (SIGSTOP),
    through acceptor ``acceptors - 1``; then the worker gets signal
    ``then`` (SIGCONT, SIGKILL): whether the kill was answered while the
    worker was stopped, what other clients got meanwhile, and the kill's
    and the script's replies."""
    key, other = key_on(0, "stopped", shards=2), key_on(1, "stopped", shards=2)
    caller = client_on(server.port, 0, k=acceptors, timeout=WAIT)
    killer = client_on(server.port, acceptors - 1, k=acceptors, timeout=WAIT)
    bystander = client_on(server.port, 0, k=acceptors, timeout=WAIT)
    try:
        killer.command("CONFIG", "SET", "busy-reply-threshold", "100")
        caller.send("EVAL", LOOP, 1, key)
        wait_busy(lambda: killer.command("GET", key))
        pid = worker_pid(server, 0)
        os.kill(pid, signal.SIGSTOP)
        try:
            killer.send("SCRIPT", "KILL")
            killer.sock.settimeout(0.3)
            try:
                killer.read_reply()
                got: list = ["answered"]
            except TimeoutError:
                got = ["waits"]
            killer.sock.settimeout(WAIT)
            got += [ask(bystander, "GET", key), ask(bystander, "SET", other, "v")]
        finally:
            os.kill(pid, then)
        got += [ask_reply(killer), ask_reply(caller)]
        assert until(lambda: ask(bystander, "SET", key, "v") == b"OK")
        return got
    finally:
        for c in (caller, killer, bystander):
            c.close()


@pytest.mark.parametrize("acceptors", [1, 2])
def test_a_kill_while_the_scripts_worker_is_stopped_waits_for_its_hook(acceptors: int) -> None:
    """Redis answers SCRIPT KILL in the script's hook (it reads nothing
    else while the script runs): a script that reaches no hook (one long C
    call; here its worker stopped) leaves the kill unanswered until it
    does, and the kill then stops it.  shardkv's kill waits the same way,
    for the worker's verdict (scripting._KillVerdict), so that nothing is
    half decided; the other clients get ``-BUSY`` meanwhile, on every
    shard (they waited for the hook on Redis).  A worker
    that dies meanwhile answers it: the script is gone (``-NOTBUSY``)."""
    assert on_shardkv(lambda s: kill_while_stopped(s, acceptors, signal.SIGCONT), acceptors=acceptors) == [
        "waits",
        "BUSY",
        "BUSY",
        b"OK",
        "ERR",
    ]
    assert on_shardkv(lambda s: kill_while_stopped(s, acceptors, signal.SIGKILL), acceptors=acceptors) == [
        "waits",
        "BUSY",
        "BUSY",
        "NOTBUSY",
        "ERR",
    ]


def test_a_scripts_publish_held_for_its_events_goes_when_its_worker_dies() -> None:
    """A script writes, PUBLISHes, then loops; a subscriber to the channel
    and to key events on the other acceptor (of two) has the message held
    for the write's event, which comes at the script's end
    (pubsub._after_events; on the one shard: at several the PUBLISH is
    held to the script's end, and dropped with its worker).  The script's worker is SIGKILLed: the message
    waited for a frame of that number from the shard, which its restarted
    worker (numbering from 1 again) sent much later, or never, so the
    subscriber heard a PUBLISH sent after the kill first.  Now it goes when
    the worker's pipe closes (the lost write's event never comes)."""
    assert (
        on_shardkv(lambda server: publish_after_the_scripts_worker_died(server, False), acceptors=2, shards=1)
        == PUBLISH_AFTER_THE_WORKER_DIED
    )


def test_a_command_read_with_the_dead_workers_eof_is_not_refused_busy() -> None:
    """The same, acceptor 1 stopped (SIGSTOP) from before the kill until
    the PUBLISH has been sent to it: it then reads its pipe's end and the
    PUBLISH in one turn of its loop.  The pipe's end only closes the
    transport there, which tells the link later (``connection_lost``
    comes in a callback of its own), so the PUBLISH found the dead
    worker's script busy still and got ``-BUSY``, although the script's
    caller had its error already (under load, the same happened without
    the stop: CI).  A busy link whose worker is gone counts as gone now:
    the command waits for the link to know it."""
    assert (
        on_shardkv(lambda server: publish_after_the_scripts_worker_died(server, True), acceptors=2, shards=1)
        == PUBLISH_AFTER_THE_WORKER_DIED
    )


# What the subscriber, the script's caller and the publisher on the other
# acceptor get in :func:`publish_after_the_scripts_worker_died`.
PUBLISH_AFTER_THE_WORKER_DIED = [
    [b"subscribe", b"q", 1],
    [b"psubscribe", b"__keyevent@0__:*", 2],
    "ERR",
    1,
    [b"message", b"q", b"m"],
    [b"message", b"q", b"end"],
]


def publish_after_the_scripts_worker_died(server: ServerProcess, hold_other: bool) -> list:
    """The scenario of the two tests above; ``hold_other``: acceptor 1 is
    stopped from before the worker's kill until the PUBLISH is sent."""
    caller = client_on(server.port, 0, k=2, timeout=WAIT)
    sub = client_on(server.port, 1, k=2, timeout=WAIT)
    other = client_on(server.port, 1, k=2, timeout=WAIT)
    stopped = acceptor_pids(server)[1] if hold_other else 0
    try:
        caller.command("CONFIG", "SET", "notify-keyspace-events", "KEA")
        caller.command("CONFIG", "SET", "busy-reply-threshold", "100")
        sub.send("SUBSCRIBE", "q")
        sub.send("PSUBSCRIBE", "__keyevent@0__:*")
        got: list = [sub.read_reply(), sub.read_reply()]
        body = "redis.call('set', KEYS[1], 'v') redis.call('publish', 'q', 'm') while true do end"
        caller.send("EVAL", body, 1, "k")
        wait_busy(lambda: other.command("GET", "k"))  # (past its PUBLISH)
        worker = worker_pid(server, 0)
        if stopped:
            os.kill(stopped, signal.SIGSTOP)
            assert until(lambda: _status(stopped) == psutil.STATUS_STOPPED), "acceptor 1 never stopped"
        os.kill(worker, signal.SIGKILL)
        got.append(str(caller.read_reply()).split()[0])
        if stopped:
            # Every pipe of the worker closed before the PUBLISH is sent.
            assert until(lambda: _status(worker) in (psutil.STATUS_ZOMBIE, None)), "the worker never died"
            other.send("PUBLISH", "q", "end")
            os.kill(stopped, signal.SIGCONT)
            stopped = 0
            got.append(other.read_reply())
        else:
            got.append(other.command("PUBLISH", "q", "end"))
        got.append(sub.read_reply())
        if got[3] == 1:  # (a refused PUBLISH sends nothing)
            got.append(sub.read_reply())
        return got
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
        for c in (caller, sub, other):
            c.close()


def _status(pid: int) -> str | None:
    """The process's psutil status; None once it is gone."""
    try:
        return psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return None


def test_a_kill_read_with_the_dead_workers_reset_finds_no_script() -> None:
    """A busy script's worker dies with frames of acceptor 1 unread (a
    ``__watchb`` sent while the worker was stopped): acceptor 1's pipe is
    reset, not ended, which the link learns only in the transport's
    ``connection_lost``, called after the commands read in the same turn.
    A SCRIPT KILL sent there after the script's caller was told of the
    death found the dead script still busy: ``-UNKILLABLE`` (it had
    written).  It finds none now, as once the reset is read: ``-NOTBUSY``.
    Acceptor 1 is stopped from before the kill until the SCRIPT KILL is
    sent, and the supervisor until it is answered (no new worker's pipe
    comes first)."""

    def scenario(server: ServerProcess) -> list:
        caller = client_on(server.port, 0, k=2, timeout=WAIT)
        killer = client_on(server.port, 1, k=2, timeout=WAIT)
        watcher = client_on(server.port, 1, k=2, timeout=WAIT)
        stopped = [acceptor_pids(server)[1], server.proc.pid]
        try:
            caller.command("CONFIG", "SET", "busy-reply-threshold", "100")
            caller.send("EVAL", "redis.call('set', KEYS[1], 'v') while true do end", 1, "k")
            wait_busy(lambda: killer.command("GET", "k"))
            worker = worker_pid(server, 0)
            os.kill(worker, signal.SIGSTOP)
            assert until(lambda: _status(worker) == psutil.STATUS_STOPPED), "the worker never stopped"
            assert watcher.command("WATCH", "k") == b"OK"  # (its __watchb is left unread)
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
                assert until(lambda pid=pid: _status(pid) == psutil.STATUS_STOPPED), "never stopped"
            os.kill(worker, signal.SIGKILL)
            got = [str(caller.read_reply()).split()[0]]
            assert until(lambda: _status(worker) in (psutil.STATUS_ZOMBIE, None)), "the worker never died"
            killer.send("SCRIPT", "KILL")
            os.kill(stopped.pop(0), signal.SIGCONT)
            got.append(str(killer.read_reply()).split()[0])
            return got
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            for c in (caller, killer, watcher):
                c.close()

    assert on_shardkv(scenario, acceptors=2, shards=1) == ["ERR", "NOTBUSY"]
