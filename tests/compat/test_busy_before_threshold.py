"""Commands that reach a script's shard while the script runs, before
busy-reply-threshold, against redis-server (issue 18).

Redis reads them when the threshold passes and answers each ``-BUSY`` but
the allow-busy ones (the script's own client is not read: its commands run
after the script).  The scripts here loop until SCRIPT KILL or FUNCTION
KILL, so a reply that came only after the script would hang the test (the
sockets time out): each ``-BUSY`` is read while the script still runs.
With ``SHARDKV_TEST_ACCEPTORS=2`` the script's client and the others are
put on both acceptors in turn.
"""

from __future__ import annotations

import os
import select
import time

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import on_shards
from tests.support.processes import until, wait_busy, wait_spinning, worker_pid
from tests.support.resp import RespClient, parse_info
from tests.support.servers import start_redis, start_shardkv

ACCEPTORS = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))
THRESHOLD_MS = 500  # the commands below are sent well before it
KEY = on_shards(0)[0]  # the shard of a keyless script
LOOP = "while true do end"
LIBRARY = "#!lua name=busylib\nredis.register_function('spin', function() while true do end end)"
# Where the script's client and the other clients connect: (script's, others').
PLACES = [(0, 0), (0, 1)] if ACCEPTORS > 1 else [(0, 0)]


@pytest.fixture(scope="module")
def servers():
    procs = {"redis": start_redis(), "shardkv": start_shardkv(shards=4)}
    yield procs
    for proc in procs.values():
        proc.stop()


def _connect(kind: str, port: int, where: int) -> RespClient:
    if kind == "shardkv" and ACCEPTORS > 1:
        return client_on(port, where, k=ACCEPTORS)
    return RespClient(port, timeout=30)


# How a scenario waits for its script to run (_send_script, _script_runs):
# the pid of the process that runs a script of KEY's shard, set per server,
# and the client that sent the script.
_RUNS_SCRIPTS: list = [0, None]


def _send_script(client: RespClient, *args) -> None:
    """Send the script ``args`` (EVAL, FCALL) on ``client``, for _script_runs."""
    _RUNS_SCRIPTS[1] = client
    client.send(*args)


def _answered(client: RespClient) -> bool:
    """Whether a reply (or the end of the stream) waits to be read on
    ``client``, without reading it."""
    return bool(client.buf) or bool(select.select([client.sock], [], [], 0)[0])


def _script_runs() -> None:
    """Wait until the script sent last runs (its process spins), so that
    what is sent next reaches the server after its start; or until it has
    ended, its reply there: a loaded machine may delay the polls past the
    end of a short script (0.3 s), and what is sent next then reaches the
    server after it, which reads it then as it would have during it."""
    client = _RUNS_SCRIPTS[1]
    wait_spinning(_RUNS_SCRIPTS[0], lambda: _answered(client))


def _scenario(kind: str, port: int, place: tuple[int, int], scenario) -> list[bytes]:
    """Run ``scenario(start, other, admin)`` on a fresh database: ``start``
    sends the script (on the script's client), ``other`` is another
    client's connection, ``admin`` a third one; returns what it read."""
    admin = _connect(kind, port, place[1])
    admin.command("FLUSHALL")
    admin.command("FUNCTION", "FLUSH")
    admin.command("CONFIG", "RESETSTAT")
    admin.command("CONFIG", "SET", "busy-reply-threshold", THRESHOLD_MS)
    caller = _connect(kind, port, place[0])
    other = _connect(kind, port, place[1])
    try:
        return scenario(caller, other, admin)
    finally:
        admin.command("CONFIG", "SET", "busy-reply-threshold", 5000)
        for c in (caller, other, admin):
            c.close()


def _stats(admin: RespClient, names: list[str]) -> list[str]:
    """The commandstats rows of ``names`` (calls and refusals, not times) and the errorstats."""
    rows = parse_info(admin.call("INFO", "commandstats"))
    out = []
    for name in names:
        row = rows.get(f"cmdstat_{name}", "")
        out.append(
            ",".join(
                f for f in row.split(",") if f.split("=")[0] in ("calls", "rejected_calls", "failed_calls")
            )
        )
    return out + [admin.call("INFO", "errorstats").decode()]


def _differential(servers, scenario, places: list[tuple[int, int]] = PLACES) -> None:
    for place in places:
        got = {}
        for kind, proc in servers.items():
            _RUNS_SCRIPTS[0] = proc.proc.pid if kind == "redis" else worker_pid(proc, 0)
            got[kind] = _scenario(kind, proc.port, place, scenario)
        assert got["shardkv"] == got["redis"], place


def _run_after_a_short_script(commands_of, stats):
    """A scenario: a script that ends before the threshold (0.3 s) runs;
    another client sends ``commands_of(the script's client's id)``, read
    after it; then the script's reply, whether its client was closed, the
    commands' replies and the ``stats``."""

    def scenario(caller, other, admin):
        loop = "local t = redis.call('time') local e = t[1] * 1e6 + t[2] + 300000 " + (
            "repeat t = redis.call('time') until t[1] * 1e6 + t[2] >= e return 'done'"
        )
        sent = commands_of(int(caller.command("CLIENT", "ID")))  # type: ignore[arg-type]
        _send_script(caller, "EVAL", loop, 0)
        _script_runs()
        for command in sent:
            other.send(*command)
        out = [caller.read(), caller.closed()]
        out += [other.read() for _ in sent]
        return out + _stats(admin, stats)

    return scenario


def _refused_at_the_threshold(commands_of, stats):
    """A scenario: a looping script runs; another client sends
    ``commands_of(the victim's id)``, read at the threshold; then SCRIPT
    KILL, the script's reply, a SET by the victim (alive, not paused) and
    the ``stats``."""

    def scenario(caller, other, admin):
        victim = RespClient(admin.sock.getpeername()[1], timeout=30)
        try:
            sent = commands_of(int(victim.command("CLIENT", "ID")))  # type: ignore[arg-type]
            _send_script(caller, "EVAL", LOOP, 0)
            _script_runs()
            for command in sent:
                other.send(*command)
            out = [other.read() for _ in sent]
            out.append(admin.call("SCRIPT", "KILL"))
            out.append(caller.read())
            out.append(victim.call("SET", KEY, "alive"))  # (no pause, no kill)
            return out + _stats(admin, stats)
        finally:
            victim.close()

    return scenario


def test_commands_sent_before_the_threshold_get_busy(servers):
    """Another client's pipeline to the script's shard, sent before the
    threshold: every command gets -BUSY (none runs, none is counted as a
    call), and SCRIPT KILL frees the server."""

    def scenario(caller, other, admin):
        _send_script(caller, "EVAL", LOOP, 0)
        _script_runs()
        other.send("SET", KEY, "x")
        other.send("INCR", KEY)
        other.send("GET", KEY)
        out = [other.read(), other.read(), other.read()]
        out.append(admin.call("SCRIPT", "KILL"))
        out.append(caller.read())
        out.append(other.call("GET", KEY))
        out.append(caller.call("PING"))
        return out + _stats(admin, ["set", "incr", "get"])

    _differential(servers, scenario)


def test_reads_sent_to_a_cross_shard_scripts_shards_before_the_threshold_get_busy(servers):
    """A script whose keys are on two shards runs as a cross-shard
    operation (its shards parked, the script on one of them): another
    client's GET of either key, sent before the threshold, waits behind
    the operation's park and gets -BUSY at the threshold, as in Redis
    (it ran after the script).  At two acceptors, from the other acceptor,
    the GET of the parked shard that does not run the script is left out:
    that shard reads only the operation's pipe while parked, and the GET
    still runs after the script (see README, busy scripts)."""
    a, b = on_shards(0, 1, prefix="xb")  # (the script runs on a's shard: its first key's)
    for place in PLACES:
        keys = [a, b] if place[0] == place[1] else [a]

        def scenario(caller, other, admin, keys=keys):
            _send_script(caller, "EVAL", LOOP, 2, a, b)
            _script_runs()
            for key in keys:
                other.send("GET", key)
            out = [other.read() for _ in keys]
            out.append(admin.call("SCRIPT", "KILL"))
            out.append(caller.read())
            out.append(other.call("GET", a))
            return out + _stats(admin, ["get", "eval"])

        _differential(servers, scenario, [place])


def test_reads_across_shards_sent_before_the_threshold_get_busy(servers):
    """Another client's MGET and EXISTS of the script's shard and another,
    sent before the threshold: Redis answers each -BUSY, a rejected call
    and a BUSY error.  (shardkv ran them after the script, each a call, at
    one acceptor; at two it answered -BUSY, counted nowhere.)"""
    other_shard = on_shards(1, prefix="rx")[0]
    reads = [("MGET", KEY, other_shard), ("EXISTS", other_shard, KEY)]

    _differential(servers, _refused_at_the_threshold(lambda victim: reads, ["mget", "exists"]))


def test_reads_across_a_cross_shard_scripts_shards_get_one_busy_each(servers):
    """Another client's MGET and EXISTS of both shards of a cross-shard
    script (parked, the script on the first), and of the parked one and a
    free one, sent before the threshold: each gets one -BUSY, a rejected
    call and a BUSY error, as Redis.  (shardkv counted the MGET and EXISTS
    of both parked shards twice: each shard's worker refused its part and
    counted it.  At two acceptors a read's hold on a parked shard waited
    for the operation's end and the read ran after the script, a call, and
    so did the GET behind it: now the acceptor refuses a read still waiting
    for its holds at the threshold, Holds.refuse_reads.)"""
    a, b = on_shards(0, 1, prefix="xb")
    free = on_shards(3, prefix="rx")[0]
    reads = [("MGET", a, b), ("EXISTS", b, a), ("MGET", b, free), ("GET", a), ("MGET", a, free)]

    def scenario(caller, other, admin):
        _send_script(caller, "EVAL", LOOP, 2, a, b)
        _script_runs()
        for read in reads:
            other.send(*read)
        out = [other.read() for _ in reads]
        out += [admin.call("SCRIPT", "KILL"), caller.read(), other.call("MGET", a, b)]
        return out + _stats(admin, ["mget", "exists", "get"])

    _differential(servers, scenario)


def test_an_exec_sent_before_the_threshold_is_refused_whole(servers):
    """An EXEC of reads queued before the script and sent before the
    threshold: an MGET of both shards of a cross-shard script, or a GET of
    a free shard and an MGET of the one-shard script's and the free one.
    Redis reads the EXEC at the threshold and answers it -EXECABORT,
    nothing run: a rejected call of EXEC's, no call of its commands, an
    EXECABORT error.  (shardkv ran the first whole after the script at the
    script's acceptor; from the other, and for the second at two
    acceptors, a busy shard refused its step's hold, and its read got that
    -BUSY inside EXEC's array, the GET of the free shard run: now an EXEC
    read while a worker says a script runs waits for the shards' scripts.
    The client watches a key of the script's shard: refused, the EXEC
    sent its __unwatch there while the link went through its queue, and
    the acceptor died of it.)  So is one whose transaction had a queuing
    error, and one without MULTI: the BUSY's EXECABORT, not their own
    errors (shardkv answered those at once)."""
    a, b = on_shards(0, 1, prefix="xb")
    free = on_shards(3, prefix="rx")[0]
    cases = [
        ((2, a, b), [("MGET", a, b)], 1),
        ((0,), [("GET", free), ("MGET", KEY, free)], 1),
        ((0,), [("NOSUCHCMD",)], 2),  # (the second EXEC: no MULTI any more)
    ]

    def scenario(caller, other, admin):
        out = []
        for keys, queued, execs in cases:
            assert [other.call("WATCH", KEY), other.call("MULTI")] == [b"+OK\r\n"] * 2
            out += [other.call(*command) for command in queued]
            _send_script(caller, "EVAL", LOOP, *keys)
            _script_runs()
            for _ in range(execs):
                other.send("EXEC")
            wait_busy(lambda: (admin.send("GET", KEY), admin.read_reply())[1])
            out += [admin.call("SCRIPT", "KILL"), caller.read()] + [other.read() for _ in range(execs)]
        return out + _stats(admin, ["exec", "mget", "get"])

    _differential(servers, scenario)


def test_commands_sent_under_client_reply_skip_or_off_before_the_threshold_get_busy(servers):
    """Commands under CLIENT REPLY SKIP (the next one's reply dropped) or
    OFF, sent by other clients before the threshold: Redis refuses them
    -BUSY at the threshold, silently, nothing done, a rejected call each.
    (shardkv did not offer a muted command for refusal, its reply slot
    being no longer among its client's replies, a MutedSlot in its place:
    the SETs ran after the script, and the replies behind them waited; nor
    a muted script, its slot not a plain one: the EVAL ran.)"""
    a, b = on_shards(0, 1, prefix="xb")
    c = on_shards(0, prefix="mq")[0]  # (the script's shard too)

    def scenario(caller, other, admin):
        quiet = RespClient(admin.sock.getpeername()[1], timeout=30)
        try:
            other.send("CLIENT", "REPLY", "SKIP")
            quiet.send("CLIENT", "REPLY", "OFF")
            assert quiet.call("CLIENT", "REPLY", "ON") == b"+OK\r\n"
            quiet.send("CLIENT", "REPLY", "OFF")
            _send_script(caller, "EVAL", LOOP, 0)
            _script_runs()
            other.send("SET", KEY, "skipped")
            other.send("MGET", KEY, b)
            quiet.send("SET", a, "off")
            quiet.send("INCR", KEY)
            quiet.send("EVAL", "return redis.call('set', KEYS[1], 'script')", 1, c)
            wait_busy(lambda: (admin.send("GET", KEY), admin.read_reply())[1])
            out = [admin.call("SCRIPT", "KILL"), caller.read(), other.read()]
            out.append(admin.call("MGET", KEY, a, c))
        finally:
            quiet.close()
        return out + _stats(admin, ["set", "mget", "incr", "eval"])

    _differential(servers, scenario)


def test_the_scripts_own_pipeline_runs_after_it(servers):
    """The script's client pipelined commands behind it: they run after
    the script, while another client's command sent meanwhile gets -BUSY."""

    def scenario(caller, other, admin):
        out = [caller.call("SET", KEY, "before")]
        _send_script(caller, "EVAL", LOOP, 0)
        caller.send("GET", KEY)
        caller.send("SET", KEY, "after")
        _script_runs()
        out.append(other.call("GET", KEY))
        out.append(admin.call("SCRIPT", "KILL"))
        out += [caller.read(), caller.read(), caller.read()]
        out.append(other.call("GET", KEY))
        return out + _stats(admin, ["get", "set"])

    _differential(servers, scenario)


def test_a_busy_function_and_evalsha_sent_before_the_threshold(servers):
    """A busy FCALL gives the FUNCTION KILL text; another client's EVALSHA
    and GET sent before the threshold get it too, and FUNCTION KILL frees
    the server."""

    def scenario(caller, other, admin):
        admin.command("FUNCTION", "LOAD", LIBRARY)
        sha = admin.command("SCRIPT", "LOAD", "return redis.call('get', KEYS[1])")
        _send_script(caller, "FCALL", "spin", 0)
        _script_runs()
        other.send("EVALSHA", sha, 1, KEY)
        other.send("GET", KEY)
        out = [other.read(), other.read()]
        out.append(admin.call("FUNCTION", "KILL"))
        out.append(caller.read())
        out.append(other.call("EVALSHA", sha, 1, KEY))
        return out + _stats(admin, ["get"])

    _differential(servers, scenario)


def test_function_stats_while_an_eval_is_busy_gets_busy(servers):
    """FUNCTION STATS (allow-busy) while an EVAL is past the threshold:
    Redis's functionStatsCommand answers the script's -BUSY, a failed call
    (while a function is busy it answers running_script).  shardkv sent it
    to shard 0, where it waited behind the script."""

    def scenario(caller, other, admin):
        _send_script(caller, "EVAL", LOOP, 0)
        _script_runs()
        wait_busy(lambda: other.command("PING"))
        out = [other.call("FUNCTION", "STATS")]
        out.append(admin.call("SCRIPT", "KILL"))
        out.append(caller.read())
        return out + _stats(admin, ["function|stats"])[:1]

    _differential(servers, scenario)


def _monitored(monitor: RespClient, until: bytes) -> list[bytes]:
    """The MONITOR lines up to the one that holds ``until``, each as its
    database and arguments (no time, no client address, but ``lua``),
    without the script's own EVAL, FCALL and SCRIPT KILL lines, whose order
    differs (shardkv shows a script's line as it sends it)."""
    out = []
    while True:
        text = monitor.read()
        stamp, _, rest = text.partition(b" [")
        assert stamp.startswith(b"+"), text
        where, _, shown = rest.partition(b"] ")
        db, _, addr = where.partition(b" ")
        shown = shown.rstrip(b"\r\n")
        if until in shown:
            return out
        if shown.split(b" ")[0].upper() in (b'"EVAL"', b'"FCALL"', b'"SCRIPT"'):
            continue
        out.append(db + b" " + (b"lua " if addr == b"lua" else b"") + shown)


def test_commands_refused_at_the_threshold_are_not_monitored(servers):
    """Redis feeds MONITOR in call(), after processCommand's checks, so a
    command refused with -BUSY has no line; the one run after SCRIPT KILL
    has.  (shardkv showed the refused ones: their lines went as the
    acceptor sent them to the script's shard; then an MGET across shards;
    then one sent under CLIENT REPLY OFF, which ran after the script.)"""
    other_shard = on_shards(1, prefix="rx")[0]

    def scenario(caller, other, admin):
        watcher = RespClient(admin.sock.getpeername()[1], timeout=30)
        quiet = RespClient(admin.sock.getpeername()[1], timeout=30)
        try:
            assert watcher.call("MONITOR") == b"+OK\r\n"
            quiet.send("CLIENT", "REPLY", "OFF")
            assert b'"CLIENT" "REPLY" "OFF"' in watcher.read()  # (read before the script)
            _send_script(caller, "EVAL", LOOP, 0)
            _script_runs()
            other.send("SET", KEY, "x")
            quiet.send("SET", KEY, "quiet")
            other.send("GET", KEY)
            other.send("MGET", other_shard, KEY)
            out = [other.read(), other.read(), other.read()]
            out.append(admin.call("SCRIPT", "KILL"))
            out.append(caller.read())
            out.append(other.call("SET", KEY, "y"))
            out.append(other.call("ECHO", "the end"))
            return out + _monitored(watcher, b'"the end"')
        finally:
            watcher.close()
            quiet.close()

    _differential(servers, scenario)


# Commands the acceptor answers itself, without a shard, that act on other
# clients or refuse at once: CLIENT KILL (of ``victim``'s id), PAUSE and
# UNPAUSE, WAIT, an EVALSHA of no script and an EVAL with a bad numkeys.
def _acceptor_commands(victim: int) -> list[tuple]:
    return [
        ("CLIENT", "KILL", "ID", victim),
        ("CLIENT", "PAUSE", 2000, "WRITE"),
        ("CLIENT", "UNPAUSE"),
        ("WAIT", 0, 0),
        ("EVALSHA", "f" * 40, 0),
        ("EVAL", "return 1", "x"),
    ]


_ACCEPTOR_STATS = ["client|kill", "client|pause", "client|unpause", "wait", "evalsha", "eval"]


def test_acceptor_commands_sent_before_the_threshold_get_busy(servers):
    """Another client's CLIENT KILL, PAUSE, UNPAUSE, WAIT, and an EVALSHA
    or EVAL the acceptor refuses, sent before the threshold: Redis reads
    them at the threshold and answers each -BUSY, nothing done (the client
    they would kill lives on, no pause), each a rejected call.  shardkv
    ran them at once: the victim was killed, the pause began, WAIT
    answered 0, EVALSHA -NOSCRIPT."""

    scenario = _refused_at_the_threshold(_acceptor_commands, _ACCEPTOR_STATS)

    _differential(servers, scenario)


def _answered_here(victim: int) -> list[tuple]:
    return [("CLIENT", "ID"), ("CLIENT", "GETNAME"), ("ECHO", "x"), ("PING",), ("TIME",), ("SELECT", 1)]


def test_commands_the_acceptor_answers_sent_before_the_threshold_get_busy(servers):
    """Another client's CLIENT ID, CLIENT GETNAME, ECHO, PING, TIME and
    SELECT, sent before the threshold: Redis reads them at the threshold
    and answers each -BUSY, a rejected call.  shardkv answered them at
    once; now, while a worker says a script runs, they wait for it
    (dispatch.Dispatch._read_after_scripts)."""

    # (Not CLIENT ID's row: at two acceptors client_on's connections call it.)
    scenario = _refused_at_the_threshold(_answered_here, ["client|getname", "echo", "ping", "time", "select"])

    _differential(servers, scenario)


# More commands the acceptor answers without a script's shard: from its own
# state (CONFIG GET, ACL, SLOWLOG, PUBLISH, PUBSUB, SCRIPT EXISTS, MODULE,
# CLUSTER, LATENCY), or asking the shards for what the scripts' shards
# answer after them (INFO, LASTSAVE, MEMORY USAGE, SCAN, SWAPDB, FUNCTION
# LIST); MONITOR last (run, it would make the connection a monitor).
def _answered_without_the_scripts_shard(victim: int) -> list[tuple]:
    return [
        ("CONFIG", "GET", "maxmemory"),
        ("ACL", "WHOAMI"),
        ("ACL", "LIST"),
        ("SLOWLOG", "LEN"),
        ("PUBLISH", "ch", "m"),
        ("SPUBLISH", "ch", "m"),
        ("PUBSUB", "NUMSUB", "ch"),
        ("SCRIPT", "EXISTS", "f" * 40),
        ("MODULE", "LIST"),
        ("CLUSTER", "INFO"),
        ("LATENCY", "LATEST"),
        ("INFO", "server"),
        ("LASTSAVE",),
        ("MEMORY", "USAGE", KEY),
        ("SCAN", 0),
        ("SWAPDB", 0, 1),
        ("FUNCTION", "LIST"),
        ("MONITOR",),
    ]


_WITHOUT_THE_SHARD_STATS = [
    "config|get",
    "acl|whoami",
    "acl|list",
    "slowlog|len",
    "publish",
    "spublish",
    "pubsub|numsub",
    "script|exists",
    "module|list",
    "cluster|info",
    "latency|latest",
    "lastsave",
    "memory|usage",
    "scan",
    "swapdb",
    "function|list",
    "monitor",
]


def test_more_commands_the_acceptor_answers_sent_before_the_threshold_get_busy(servers):
    """Another client's CONFIG GET, ACL WHOAMI and LIST, SLOWLOG LEN,
    PUBLISH, SPUBLISH, PUBSUB NUMSUB, SCRIPT EXISTS, MODULE LIST, CLUSTER
    INFO, LATENCY LATEST, INFO, LASTSAVE, MEMORY USAGE, SCAN, SWAPDB,
    FUNCTION LIST and MONITOR, sent before the threshold: Redis reads them
    at the threshold and answers each -BUSY, a rejected call (none has the
    allow-busy flag).  shardkv answered the first ones at once (MONITOR
    began), and the others after the script (their shards' parts waited
    behind it, SCRIPT KILL let them run); now, while a worker says a
    script runs, every acceptor command but the allow-busy ones and those
    that wait by themselves waits for the shards' scripts
    (dispatch._WAITS_BY_ITSELF)."""

    scenario = _refused_at_the_threshold(_answered_without_the_scripts_shard, _WITHOUT_THE_SHARD_STATS)

    _differential(servers, scenario)


def test_a_publish_sent_during_a_short_script_comes_after_the_scripts_messages(servers):
    """A PUBLISH sent while a script that publishes runs, ending before the
    threshold: Redis reads it after the script, so its subscriber gets the
    script's two messages first, then this one.  shardkv delivered it at
    once, between the script's messages (see README, busy scripts)."""
    # (plain Lua between the TIME calls: the count hook, which tells the
    # acceptors that a script runs, comes within a millisecond)
    script = (
        "redis.call('publish', 'ch', 'first') local t = redis.call('time') "
        "local e = t[1] * 1e6 + t[2] + 300000 repeat for i = 1, 10000 do end "
        "t = redis.call('time') until t[1] * 1e6 + t[2] >= e "
        "return redis.call('publish', 'ch', 'last')"
    )

    def scenario(caller, other, admin):
        listener = RespClient(admin.sock.getpeername()[1], timeout=30)
        try:
            listener.call("SUBSCRIBE", "ch")
            _send_script(caller, "EVAL", script, 0)
            _script_runs()
            other.send("PUBLISH", "ch", "other")
            out = [caller.read(), other.read()]
            out += [listener.read() for _ in range(3)]
            return out + _stats(admin, ["publish"])
        finally:
            listener.close()

    _differential(servers, scenario)


def test_acceptor_commands_sent_during_a_short_script_run_after_it(servers):
    """The same commands sent while a script runs that ends before the
    threshold run after it, as Redis reads them then: the script's client
    gets its reply before CLIENT KILL closes it, then the rest run (WAIT
    answers 0, EVALSHA -NOSCRIPT...), each a call."""

    scenario = _run_after_a_short_script(_acceptor_commands, _ACCEPTOR_STATS)

    _differential(servers, scenario)


def test_a_client_that_kills_itself_during_a_short_script(servers):
    """A CLIENT KILL of its own connection (SKIPME no), with a PING behind
    it, sent while a short script runs: Redis reads it after the script,
    answers 1 and closes the connection, the PING not run.  (shardkv
    killed it after the scripts, but never wrote the 1 nor closed: its
    held PING was left to a resume that skips a closing client.)"""

    def scenario(caller, other, admin):
        loop = "local t = redis.call('time') local e = t[1] * 1e6 + t[2] + 300000 " + (
            "repeat t = redis.call('time') until t[1] * 1e6 + t[2] >= e return 'done'"
        )
        me = other.command("CLIENT", "ID")
        _send_script(caller, "EVAL", loop, 0)
        _script_runs()
        other.send("CLIENT", "KILL", "ID", me, "SKIPME", "no")  # type: ignore[arg-type]
        other.send("PING")
        return [caller.read(), other.read(), other.closed()] + _stats(admin, ["client|kill", "ping"])

    _differential(servers, scenario)


def test_a_write_sent_after_a_waiting_pause_is_postponed(servers):
    """CLIENT PAUSE WRITE sent while a short script runs, then another
    client's SET: Redis reads the pause when the script ends, before the
    SET, which it postpones until CLIENT UNPAUSE (a GET meanwhile finds no
    key).  (shardkv's pause waited for the scripts while the SET, sent
    after it, went on and ran first.)"""

    def scenario(caller, other, admin):
        loop = "local t = redis.call('time') local e = t[1] * 1e6 + t[2] + 300000 " + (
            "repeat t = redis.call('time') until t[1] * 1e6 + t[2] >= e return 'done'"
        )
        _send_script(caller, "EVAL", loop, 0)
        _script_runs()
        other.send("CLIENT", "PAUSE", 10000, "WRITE")
        time.sleep(0.05)
        admin.send("SET", KEY, "written")
        out = [caller.read(), other.read(), caller.call("GET", KEY)]
        out += [other.call("CLIENT", "UNPAUSE"), admin.read(), caller.call("GET", KEY)]
        return out

    _differential(servers, scenario)


def test_client_reply_off_and_skip_drop_the_replies_of_commands_that_waited(servers):
    """CLIENT REPLY OFF, then WAIT, EVALSHA of no script and a CLIENT KILL
    sent before the threshold: Redis answers them -BUSY at the threshold,
    and drops those replies; CLIENT REPLY SKIP drops the reply of the
    EVALSHA it precedes, read after a short script.  (shardkv wrote the
    replies of the commands that waited for the scripts: they were added
    once decided, past CLIENT REPLY's muting.)"""

    def refused(caller, other, admin):
        me = other.command("CLIENT", "ID")
        other.send("CLIENT", "REPLY", "OFF")
        # (read before the script starts: else Redis answers it -BUSY)
        assert until(lambda: b"cmd=client|reply" in admin.command("CLIENT", "LIST", "ID", me))  # type: ignore[operator, arg-type]
        _send_script(caller, "EVAL", LOOP, 0)
        _script_runs()
        other.send("WAIT", 0, 0)
        other.send("EVALSHA", "f" * 40, 0)
        other.send("CLIENT", "KILL", "ID", 99999)
        out = [admin.call("SCRIPT", "KILL"), caller.read()]
        other.send("CLIENT", "REPLY", "ON")
        return out + [other.read(), other.call("PING")]

    def skipped(caller, other, admin):
        loop = "local t = redis.call('time') local e = t[1] * 1e6 + t[2] + 300000 " + (
            "repeat t = redis.call('time') until t[1] * 1e6 + t[2] >= e return 'done'"
        )
        _send_script(caller, "EVAL", loop, 0)
        _script_runs()
        other.send("CLIENT", "REPLY", "SKIP")
        other.send("EVALSHA", "f" * 40, 0)
        other.send("ECHO", "next")
        return [caller.read(), other.read()]

    _differential(servers, refused)
    _differential(servers, skipped)


def test_client_reply_on_and_reset_that_waited_turn_replies_back_on(servers):
    """Under CLIENT REPLY OFF (or SKIP), a CLIENT REPLY ON, or a subscribed
    RESP3 client's RESET, sent while a short script runs: Redis reads it
    after the script, clears the flag, then adds its reply (+OK, +RESET),
    which goes, as the next command's does.  (shardkv dropped the reply of
    the command that turned replies on, as it had been read under OFF.)"""

    def scenario(setup, sent):
        def run(caller, other, admin):
            for command in setup:
                other.send(*command)
            loop = "local t = redis.call('time') local e = t[1] * 1e6 + t[2] + 300000 " + (
                "repeat t = redis.call('time') until t[1] * 1e6 + t[2] >= e return 'done'"
            )
            _send_script(caller, "EVAL", loop, 0)
            _script_runs()
            for command in sent:
                other.send(*command)
            other.send("ECHO", "last")
            out = [caller.read()]
            while out[-1] != b"$4\r\nlast\r\n":
                out.append(other.read())
            return [reply for reply in out if not reply.startswith(b"%")]  # (HELLO's: versions differ)

        return run

    on = [("CLIENT", "REPLY", "ON"), ("ECHO", "a")]
    _differential(servers, scenario([("CLIENT", "REPLY", "OFF")], on))
    _differential(servers, scenario([], [("CLIENT", "REPLY", "SKIP"), *on]))
    subscribed = [("HELLO", "3"), ("SUBSCRIBE", "ch"), ("CLIENT", "REPLY", "OFF")]
    _differential(servers, scenario(subscribed, [("RESET",), ("ECHO", "a")]))


def _in_multi(victim: int) -> list[tuple]:
    """MULTI, the acceptor's own commands that act on other clients
    (CLIENT KILL of ``victim``'s id, PAUSE, UNPAUSE, WAIT), EXEC."""
    return [("MULTI",), *_acceptor_commands(victim)[:4], ("EXEC",)]


def test_acceptor_commands_queued_before_the_threshold_get_busy(servers):
    """MULTI, CLIENT KILL, PAUSE, UNPAUSE, WAIT, EXEC sent before the
    threshold: Redis reads them at the threshold, answers MULTI (allow-busy)
    and each queued command -BUSY, so EXEC aborts; the victim lives on.
    (shardkv queued them, and its EXEC killed the victim at once.)"""

    scenario = _refused_at_the_threshold(_in_multi, [*_ACCEPTOR_STATS[:4], "exec"])

    _differential(servers, scenario)


def test_acceptor_commands_queued_during_a_short_script_run_after_it(servers):
    """The same transaction sent while a script runs that ends before the
    threshold: Redis reads it after the script, so the script's client
    gets its reply before the EXEC kills it.  (shardkv's EXEC killed it at
    once: its script's reply never came.)"""

    scenario = _run_after_a_short_script(_in_multi, [*_ACCEPTOR_STATS[:4], "exec"])

    _differential(servers, scenario)


def test_an_exec_of_a_kill_queued_before_the_script_waits_for_it(servers):
    """MULTI and CLIENT KILL of the script's client queued before the
    script, EXEC sent while it runs: Redis reads the EXEC after a short
    script (its client gets its reply, then is killed), or refuses it at
    the threshold (EXECABORT with the -BUSY reason, the victim lives on).
    (shardkv's EXEC killed the script's client at once.)"""

    def scenario(caller, other, admin):
        loop = "local t = redis.call('time') local e = t[1] * 1e6 + t[2] + 300000 " + (
            "repeat t = redis.call('time') until t[1] * 1e6 + t[2] >= e return 'done'"
        )
        out = []
        for script in (loop, LOOP):
            victim = RespClient(admin.sock.getpeername()[1], timeout=30)
            out.append(other.call("MULTI"))
            out.append(other.call("CLIENT", "KILL", "ID", victim.command("CLIENT", "ID")))  # type: ignore[arg-type]
            _send_script(victim, "EVAL", script, 0)
            _script_runs()
            other.send("EXEC")
            if script == LOOP:
                out += [other.read(), admin.call("SCRIPT", "KILL"), victim.read(), victim.call("PING")]
            else:
                out += [victim.read(), victim.closed(), other.read()]
            victim.close()
        return out + _stats(admin, ["client|kill", "exec"])

    _differential(servers, scenario)


# Another client's transaction of ordinary commands (the shard's): MULTI,
# SET, INCR, EXEC.
_TRANSACTION = [("MULTI",), ("SET", KEY, "x"), ("INCR", KEY), ("EXEC",)]
# A script that ends before the threshold (0.3 s) and spins first: shardkv's
# worker tells the acceptors it runs at its first count hook, at once.
_SPIN_FIRST = (
    "for i = 1, 300000 do end local t = redis.call('time') local e = t[1] * 1e6 + t[2] + 300000 "
    "repeat t = redis.call('time') until t[1] * 1e6 + t[2] >= e "
)


def test_a_transaction_queued_while_a_script_runs(servers):
    """MULTI, SET, INCR, EXEC sent while a script runs: Redis reads them
    when a script that ends before the threshold ends (each +QUEUED after
    its reply, and EXEC runs them), or at the threshold, where it answers
    each queued command -BUSY, a rejected call, and EXEC -EXECABORT.
    (shardkv answered +QUEUED at once, and its EXEC ran after the
    script.)"""

    def after_it(caller, other, admin):
        """The round counts once its MULTI was sent after the script had
        passed its first count hook (its start, read past 300k
        instructions, is in its reply): a late script (a loaded machine)
        repeats it, at most 5 times."""
        script = (
            "for i = 1, 300000 do end local s = redis.call('time') local t = s local e = s[1] * 1e6 + s[2] + 300000 "
            "repeat t = redis.call('time') until t[1] * 1e6 + t[2] >= e return {s, t}"
        )
        for _ in range(5):
            admin.command("FLUSHALL")
            admin.command("CONFIG", "RESETSTAT")
            _send_script(caller, "EVAL", script, 0)
            _script_runs()
            sent_at = time.time()
            for command in _TRANSACTION:
                other.send(*command)
            out = [other.read(), other.read()]
            queued_at = time.time()
            out += [other.read(), other.read()]
            started, ended = caller.read_reply()  # type: ignore[misc]
            if sent_at >= int(started[0]) + int(started[1]) / 1e6:
                break
        else:
            raise AssertionError("the script never started within 0.1 s in 5 tries")
        out.append(queued_at >= int(ended[0]) + int(ended[1]) / 1e6)
        return out + [other.call("GET", KEY)] + _stats(admin, ["set", "incr", "exec"])

    def left(caller, other, admin):
        """The same transaction, its client gone at once: it still runs
        after the script, as Redis read it before the end of the stream."""
        _send_script(caller, "EVAL", _SPIN_FIRST + "return 'done'", 0)
        _script_runs()
        for command in _TRANSACTION:
            other.send(*command)
        other.close()
        return [caller.read(), until(lambda: admin.call("GET", KEY) == b"$1\r\nx\r\n")]

    _differential(servers, after_it)
    _differential(servers, left)
    _differential(servers, _refused_at_the_threshold(lambda victim: _TRANSACTION, ["set", "incr", "exec"]))


def test_acl_deluser_of_a_scripts_client_waits_for_the_script(servers):
    """ACL DELUSER of the user a script's client is logged in as, sent by
    another client while the script runs (past its first count hook), alone
    and queued in MULTI: Redis reads it after a script that ends before the
    threshold (the script's client gets its reply, then is closed), or
    answers it -BUSY at the threshold, the user kept (and the EXEC
    -EXECABORT).  (shardkv ran it at once: the script's client closed
    before its reply, the user deleted where Redis refused.)"""

    def scenario(caller, other, admin):
        out = []
        for script, queued in ((_SPIN_FIRST + "return 'done'", False), (LOOP, False), (LOOP, True)):
            admin.command("ACL", "SETUSER", "scriptuser", "on", ">pw", "~*", "+@all")
            victim = RespClient(admin.sock.getpeername()[1], timeout=30)
            try:
                victim.command("AUTH", "scriptuser", "pw")
                if queued:
                    out.append(other.call("MULTI"))
                _send_script(victim, "EVAL", script, 0)
                _script_runs()
                other.send("ACL", "DELUSER", "scriptuser")
                if queued:
                    other.send("EXEC")
                if script == LOOP:
                    out += [other.read() for _ in range(1 + queued)]
                    out += [admin.call("SCRIPT", "KILL"), victim.read(), victim.call("PING")]
                else:
                    out += [victim.read(), victim.closed(), other.read()]
                out.append(admin.call("ACL", "USERS"))
            finally:
                victim.close()
        return out + _stats(admin, ["acl|deluser", "exec"])

    _differential(servers, scenario)
