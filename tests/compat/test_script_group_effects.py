"""Cross-shard scripts of several clients read in one loop turn run as one
operation (shardkv.acceptor.scripting.join_group).  Seen from outside,
each ran once, alone, as in Redis: when one of them escapes (the run is
undone, and each runs again), another's PUBLISH reaches its subscriber
once; a script ended by SCRIPT KILL stays ended; a MONITOR started later
in their turn sees none of their calls.  Differential: redis-server
7.0.15 and a 4-shard shardkv, each client's command sent back to back."""

from __future__ import annotations

import os
import threading
import time
import uuid

import pytest
import redis

from tests.support.placement import key_on
from tests.support.processes import wait_busy
from tests.support.servers import start_redis, start_shardkv

A, B = key_on(0, "ga"), key_on(1, "gb")  # the scripts' keys, on two shards
WAIT = 20.0  # seconds for what must happen (a bound, not a timing check)
# Writes keys no shard was told of: its first run escapes.
ESCAPE = "redis.call('INCR',KEYS[1]) redis.call('INCR',KEYS[2]) for i=1,20 do redis.call('INCR','u'..i) end return 'esc'"
PUBLISH = (
    "redis.call('INCR',KEYS[1]) redis.call('INCR',KEYS[2]) redis.call('PUBLISH','ch',ARGV[1]) return 'pub'"
)


@pytest.fixture(scope="module")
def processes():
    """redis-server and shardkv themselves (their output: redis.log's lines)."""
    real = start_redis()
    ours = start_shardkv(shards=4)
    yield real, ours
    real.stop()
    ours.stop()


@pytest.fixture(scope="module")
def servers(processes):
    return tuple(proc.port for proc in processes)


def _connections(port: int, n: int) -> list[redis.Connection]:
    out = []
    for _ in range(n):
        c = redis.Connection(port=port, socket_timeout=20)
        c.connect()
        out.append(c)
    return out


def _burst(
    conns: list[redis.Connection], commands: list[tuple], sent: threading.Event | None = None
) -> list[object]:
    """Each command on its own connection, all written before any reply is
    read (``sent`` set once they are)."""
    for c, command in zip(conns, commands, strict=True):
        c.send_packed_command(c.pack_command(*command), check_health=False)
    if sent is not None:
        sent.set()
    out: list[object] = []
    for c in conns:
        try:
            out.append(c.read_response())
        except redis.ResponseError as e:
            out.append(("error", str(e).split(" script:")[0]))
    return out


def _publish_round(port: int, commands) -> dict:
    r = redis.Redis(port=port)
    r.flushall()
    r.config_resetstat()
    sub = r.pubsub()
    sub.subscribe("ch")
    assert sub.get_message(timeout=5)["type"] == "subscribe"
    conns = _connections(port, len(commands))
    replies = _burst(conns, commands)
    r.publish("ch", "end")
    messages = []
    while (m := sub.get_message(timeout=10)) is not None and m["data"] != b"end":
        messages.append(m["data"])
    calls = r.info("commandstats")["cmdstat_publish"]["calls"]
    for c in conns:
        c.disconnect()
    sub.close()
    return {"replies": replies, "messages": messages, "publish": calls, "keys": r.mget(A, B, "u1", "u20")}


def test_a_publish_in_a_group_with_an_escape_is_delivered_once(servers):
    for _ in range(6):  # (a group forms when both come in one turn: most rounds)
        tag = uuid.uuid4().hex  # (a script the cache has not settled)
        commands = [
            ("EVAL", f"-- {tag}\n" + PUBLISH, 2, A, B, "m"),
            ("EVAL", f"-- {tag}\n" + ESCAPE, 2, A, B),
        ]
        expected, got = (_publish_round(port, commands) for port in servers)
        assert got == expected
        assert got["messages"] == [b"m"] and got["publish"] == 2  # (its and "end")


def test_a_publish_in_an_exec_with_an_escape_is_delivered_once(servers):
    for _ in range(3):
        tag = uuid.uuid4().hex
        seen = []
        for port in servers:
            r = redis.Redis(port=port)
            r.flushall()
            sub = r.pubsub()
            sub.subscribe("ch")
            assert sub.get_message(timeout=5)["type"] == "subscribe"
            p = r.pipeline(transaction=True)
            p.eval(f"-- {tag}\n" + PUBLISH, 2, A, B, "m")
            p.eval(f"-- {tag}\n" + ESCAPE, 2, A, B)
            replies = p.execute()
            r.publish("ch", "end")
            messages = []
            while (m := sub.get_message(timeout=10)) is not None and m["data"] != b"end":
                messages.append(m["data"])
            sub.close()
            seen.append((replies, messages))
        assert seen[1] == seen[0]
        assert seen[1][1] == [b"m"]


def _kill_round(port: int) -> dict:
    r = redis.Redis(port=port, socket_timeout=20)
    r.flushall()
    r.config_set("busy-reply-threshold", 100)
    tag = uuid.uuid4().hex
    loop = f"-- {tag}\nlocal x = redis.call('GET', KEYS[1]) while true do end"
    commands = [("EVAL", loop, 2, A, B), ("EVAL", f"-- {tag}\n" + ESCAPE, 2, A, B)]
    conns = _connections(port, 2)
    out: dict = {}
    sent = threading.Event()
    t = threading.Thread(target=lambda: out.setdefault("replies", _burst(conns, commands, sent)))
    t.start()
    try:
        # Both scripts written before the kill (the thread may be slow to
        # write the second: killed first, it would run, in Redis too).
        assert sent.wait(WAIT)
        # Past busy-reply-threshold (a GET of A sent before it waits behind
        # the operation's park and gets -BUSY then, as in Redis; see
        # ShardLink._offer_refusals).
        wait_busy(lambda: r.get(A))
        assert r.script_kill()
        # Once the killed script's client has its reply, nothing is busy.
        deadline = time.monotonic() + 10
        while "replies" not in out and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            second = r.script_kill()
        except redis.ResponseError as e:
            second = str(e)
    finally:
        t.join(30)
        r.config_set("busy-reply-threshold", 5000)
    for c in conns:
        c.disconnect()
    # (the other script: Redis reads it at the threshold and refuses it,
    # BUSY; so does shardkv at one acceptor, in the group or behind it,
    # nothing written; at two it runs after the killed one)
    replies = out.get("replies") or [None, None]
    return {"killed": replies[0], "second kill": second, "other": (replies[1], r.mget(A, B, "u1"))}


def test_a_script_killed_in_a_group_with_an_escape_stays_killed(servers):
    expected, got = (_kill_round(port) for port in servers)
    if os.environ.get("SHARDKV_TEST_ACCEPTORS", "1") != "1":
        del expected["other"], got["other"]
    assert got == expected
    assert got["second kill"].startswith("NOTBUSY")


def _monitor_round(port: int) -> list[str]:
    r = redis.Redis(port=port)
    r.flushall()
    conns = _connections(port, 3)
    s0 = "redis.call('INCR',KEYS[1]) redis.call('INCR',KEYS[2]) return 'zero'"
    s2 = "redis.call('INCR',KEYS[1]) redis.call('INCR',KEYS[2]) return 'two'"
    for c, command in zip(conns, [("EVAL", s0, 2, A, B), ("MONITOR",), ("EVAL", s2, 2, A, B)], strict=True):
        c.send_packed_command(c.pack_command(*command), check_health=False)
    assert conns[0].read_response() == b"zero" and conns[2].read_response() == b"two"
    assert conns[1].read_response() == b"OK"
    r.ping()  # the monitor's last line
    lines = []
    while b'"PING"' not in (line := conns[1].read_response()) and b'"ping"' not in line:
        lines.append(line.split(b"] ", 1)[1].decode())
    for c in conns:
        c.disconnect()
    return lines


@pytest.mark.skipif(
    os.environ.get("SHARDKV_TEST_ACCEPTORS", "1") != "1",
    reason="with several acceptors no scripts are grouped, and no turn orders the three clients",
)
def test_a_monitor_started_in_the_groups_turn_sees_none_of_the_earlier_script(servers):
    """The three clients' commands are concurrent: the server may read the
    later EVAL before or after the MONITOR (both servers read sockets in
    the order they became ready), so the monitor sees that script whole
    (its line, then its two calls) or not at all, and never a script's
    calls without its own line (shardkv showed the earlier script's
    ``[lua]`` lines, read before the MONITOR, when they ran in one group)."""
    rounds = [_monitor_round(port) for port in servers for _ in range(3)]
    whole = rounds[0] if len(rounds[0]) == 3 else next((r for r in rounds if len(r) == 3), None)
    for lines in rounds:
        assert lines in ([], whole), lines
    if whole is not None:
        assert whole[0].startswith('"EVAL"') and "'two'" in whole[0]
        assert whole[1:] == ['"INCR" "%s"' % A, '"INCR" "%s"' % B]


# A script that writes more redis.log lines than shardkv holds until it
# ends (LOGS_HELD), and one that writes a line once past
# busy-reply-threshold: both written as they come.
MANY_LINES = "for i=1,1500 do redis.log(redis.LOG_WARNING,'{m}') end " + PUBLISH.replace(
    "'ch',ARGV[1]", "'ch','m'"
)
BUSY_LINE = (
    "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end "
    "local t0 = now() while now() - t0 < 300000 do for i = 1, 20000 do end end "
    "redis.log(redis.LOG_WARNING,'{m}') for i = 1, 300000 do end "
    + PUBLISH.replace("'ch',ARGV[1]", "'ch','m'")
)


def _logged(proc, marker: str, end: str) -> int:
    """How many times ``marker`` was logged, once ``end`` (logged after it) shows."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = proc.output()
        if end in text:
            return text.count(marker)
        time.sleep(0.05)
    raise AssertionError(f"{end!r} never logged")


def _lines_round(proc, script: str, in_exec: bool) -> list[int]:
    """A script that writes its lines as they come, and another that
    escapes, in one group (or one EXEC): how many times each line shows."""
    r = redis.Redis(port=proc.port, socket_timeout=20)
    r.flushall()
    r.config_set("busy-reply-threshold", 100)
    tag = uuid.uuid4().hex
    marker = "zg" + tag
    try:
        commands = [
            ("EVAL", f"-- {tag}\n" + script.format(m=marker), 2, A, B),
            ("EVAL", f"-- {tag}\n" + ESCAPE, 2, A, B),
        ]
        if in_exec:
            p = r.pipeline(transaction=True)
            for command in commands:
                p.execute_command(*command)
            replies = p.execute()
        else:
            conns = _connections(proc.port, len(commands))
            replies = _burst(conns, commands)
            for c in conns:
                c.disconnect()
    finally:
        r.config_set("busy-reply-threshold", 5000)
    # (the other: ``esc``; from Redis, BUSY while the first one is past
    # busy-reply-threshold, where shardkv runs it after)
    assert replies[0] == b"pub"
    end = "zg-end-" + tag
    r.eval(f"redis.log(redis.LOG_WARNING, '{end}')", 0)
    r.close()
    return _logged(proc, marker, end)


@pytest.mark.parametrize("in_exec", [False, True], ids=["group", "exec"])
def test_lines_written_before_an_escape_undid_the_run_show_once(processes, in_exec):
    """A script of a group (or an EXEC) whose redis.log lines were written
    as they came (past LOGS_HELD of them, or past busy-reply-threshold),
    undone when another script of its run escaped: its run again drops as
    many lines as it had written, so each shows once, as in Redis (they
    showed twice: the run again wrote them again)."""
    rounds = 4 if not in_exec else 1  # (a group forms when both come in one turn: most rounds)
    for script, lines in ((MANY_LINES, 1500), (BUSY_LINE, 1)):
        counts = [[_lines_round(proc, script, in_exec) for _ in range(rounds)] for proc in processes]
        assert counts == [[lines] * rounds] * 2


def _busy_burst_round(port: int, n: int = 3) -> dict:
    """``n`` clients' looping scripts over two shards, sent at once, then
    SCRIPT KILL from another client until each has its reply (10 s at
    most): how many kills it took, and the replies."""
    r = redis.Redis(port=port, socket_timeout=20)
    r.config_set("busy-reply-threshold", 300)
    tag = uuid.uuid4().hex
    conns = _connections(port, n)
    for c in conns:
        c.send_packed_command(
            c.pack_command("EVAL", f"-- {tag}\nwhile true do end", 2, A, B), check_health=False
        )
    kills = 0
    got: list = [None] * n
    deadline = time.monotonic() + 10
    try:
        while None in got and time.monotonic() < deadline:
            try:
                kills += r.script_kill()
            except redis.ResponseError:
                pass  # NOTBUSY: not past the threshold yet
            for i, c in enumerate(conns):
                if got[i] is None and c.can_read(timeout=0):
                    try:
                        got[i] = c.read_response()
                    except redis.ResponseError as e:
                        got[i] = " ".join(str(e).split()[:3])
            time.sleep(0.05)
    finally:
        r.config_set("busy-reply-threshold", 5000)
        for c in conns:
            c.disconnect()
    return {"kills": kills, "replies": sorted(map(str, got))}


def test_scripts_read_while_a_group_script_is_busy_get_busy(servers):
    """Scripts of other clients sent while a looping script runs: Redis
    reads them at busy-reply-threshold and answers them -BUSY, so one
    SCRIPT KILL ends it all.  shardkv ran each after the killed one (in
    its group, or waiting for the group's shards; with several acceptors,
    where none is grouped, waiting for their holds), each looping past
    the threshold again: one SCRIPT KILL each, the server busy all along."""
    expected, got = (_busy_burst_round(port) for port in servers)
    assert got == expected
    assert expected == {"kills": 1, "replies": ["BUSY Redis is", "BUSY Redis is", "Script killed by"]}
