"""Introspection and client controls, each compared with redis-server:
SLOWLOG, INFO commandstats/errorstats/latencystats, DEBUG behind
enable-debug-command, commands refused inside MULTI, a refused EXEC."""

from __future__ import annotations

import socket

import pytest
import redis

from shardkv.protocol.resp import encode_command
from tests.support.rawsocket import REPLY_WAIT, both
from tests.support.resp import RespClient
from tests.support.servers import start_redis, start_shardkv


@pytest.fixture(scope="module")
def debug_ports():
    """A redis-server and a shardkv that allow DEBUG."""
    real = start_redis("--enable-debug-command", "yes")
    ours = start_shardkv("--enable-debug-command", "yes", shards=2)
    yield {"redis": real.port, "shardkv": ours.port}
    real.stop()
    ours.stop()


@pytest.fixture(scope="module")
def auth_ports():
    real = start_redis()
    ours = start_shardkv(shards=2)
    for proc in (real, ours):
        redis.Redis(port=proc.port).execute_command("CONFIG", "SET", "requirepass", "pw")
    yield {"redis": real.port, "shardkv": ours.port}
    real.stop()
    ours.stop()


def _each(ports: dict, protocol: int = 2):
    for name in ("redis", "shardkv"):
        yield name, redis.Redis(port=ports[name], protocol=protocol)


def _try(c: redis.Redis, *args: object) -> object:
    try:
        return c.execute_command(*args)
    except redis.ResponseError as e:
        return ("error", str(e))


# -- transactions --------------------------------------------------------------


@pytest.mark.parametrize("command", [["SAVE"], ["SHUTDOWN"], ["SHUTDOWN", "NOSAVE"]])
def test_no_multi_commands_are_refused_inside_multi(ports, command):
    data = b"MULTI\r\n" + " ".join(command).encode() + b"\r\nSET k v\r\nEXEC\r\nPING\r\n"
    (real, _), (ours, _) = both(ports, data)
    assert ours == real
    assert b"Command not allowed inside a transaction" in ours
    assert b"EXECABORT" in ours


# SHUTDOWN's options, as Redis 7.0.15's shutdownCommand reads them: an
# unknown one, SAVE with NOSAVE, or ABORT with any other (ABORT twice is
# one ABORT) is a syntax error; ABORT with no shutdown in progress is an
# error of its own.  None of these stops the server.
BAD_SHUTDOWNS = [
    "SHUTDOWN foo",
    "SHUTDOWN ''",
    "SHUTDOWN SAVE NOSAVE",
    "SHUTDOWN nosave save NOW",
    "SHUTDOWN NOSAVE bogus",
    "SHUTDOWN bogus NOSAVE SAVE",
    "SHUTDOWN ABORT",
    "shutdown abort ABORT",
    "SHUTDOWN ABORT NOW",
    "SHUTDOWN FORCE ABORT",
    "SHUTDOWN SAVE ABORT",
    "SHUTDOWN ABORT bogus",
]


def test_shutdown_options_refused_as_redis(ports):
    data = b"".join(encode_command([a.strip("'").encode() for a in case.split()]) for case in BAD_SHUTDOWNS)
    (real, real_closed), (ours, ours_closed) = both(ports, data + b"PING\r\n")
    assert (ours, ours_closed) == (real, real_closed)
    assert (
        ours.count(b"-ERR syntax error\r\n") == 10 and ours.count(b"-ERR No shutdown in progress.\r\n") == 2
    )
    assert ours.endswith(b"+PONG\r\n") and not ours_closed


# Redis's processCommand looks a container's subcommand up with the command
# (lookupCommand): an unknown one, or the wrong number of arguments for it,
# is refused as the command is queued, and EXEC then aborts.
BAD_SUBCOMMANDS = [
    "CLIENT FOOBAR",
    "CONFIG NOPE",
    "OBJECT NOPE",
    "SCRIPT NOPE",
    "FUNCTION NOPE",
    "XINFO NOPE",
    "XGROUP NOPE",
    "MEMORY NOPE",
    "COMMAND NOPE",
    "PUBSUB NOPE",
    "SLOWLOG NOPE",
    "LATENCY NOPE",
    "CONFIG GET",
    "CONFIG HELP x",
    "OBJECT ENCODING",
    "XINFO STREAM",
    "MEMORY USAGE",
    "CLIENT KILL",
    "SCRIPT EXISTS",
]


def test_bad_subcommands_are_refused_inside_multi(ports):
    """Each refused at once with Redis's error; EXEC answers EXECABORT and
    the SET queued before it never runs.  PUBSUB SHARDCHANNELS and
    SHARDNUMSUB (Redis 7.0 subcommands) are queued and run."""
    data = b"DEL multirej\r\n"
    for command in BAD_SUBCOMMANDS:
        data += b"MULTI\r\nSET multirej 1\r\n" + command.encode() + b"\r\nEXEC\r\nGET multirej\r\n"
    data += b"MULTI\r\nPUBSUB SHARDCHANNELS\r\nPUBSUB SHARDNUMSUB a\r\nEXEC\r\n"
    (real, _), (ours, _) = both(ports, data)
    assert ours == real
    aborted = b"-EXECABORT Transaction discarded because of previous errors.\r\n$-1\r\n"
    assert ours.count(aborted) == len(BAD_SUBCOMMANDS)
    assert b"-ERR unknown subcommand 'FOOBAR'. Try CLIENT HELP.\r\n" in ours
    assert b"-ERR wrong number of arguments for 'config|get' command\r\n" in ours
    assert ours.endswith(b"*2\r\n*0\r\n*2\r\n$1\r\na\r\n:0\r\n")


# Every container's HELP, run directly or queued in MULTI (Redis's
# addReplyHelp: an array of status lines, in RESP2 and RESP3 alike), its
# text Redis 7.0.15's byte for byte.
HELP_CONTAINERS = ["OBJECT", "XINFO", "XGROUP", "CONFIG", "MEMORY", "COMMAND", "PUBSUB", "SLOWLOG", "LATENCY"]
HELP_CONTAINERS += ["CLIENT", "SCRIPT", "FUNCTION"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_help_is_status_lines_inside_exec_too(ports, protocol):
    replies: dict[str, dict[str, bytes]] = {}
    for name in ("redis", "shardkv"):
        replies[name] = {}
        with RespClient(ports[name], protocol=protocol) as c:
            for container in HELP_CONTAINERS:
                direct = c.call(container, "HELP")
                assert c.call("MULTI") == b"+OK\r\n"
                assert c.call(container, "HELP") == b"+QUEUED\r\n"
                assert c.call("EXEC") == b"*1\r\n" + direct, (name, container)
                head, *lines, end = direct.split(b"\r\n")
                assert head == b"*%d" % len(lines) and end == b"", (name, container)
                assert all(line.startswith(b"+") for line in lines), (name, container, direct[:200])
                replies[name][container] = direct
    for container in HELP_CONTAINERS:
        assert replies["shardkv"][container] == replies["redis"][container], container


def test_exec_with_arguments_aborts_the_transaction(ports):
    (real, _), (ours, _) = both(ports, b"MULTI\r\nSET k v\r\nEXEC x\r\nEXEC\r\n")
    assert ours == real
    assert b"EXECABORT Transaction discarded because of: wrong number of arguments" in ours


@pytest.mark.slow
def test_exec_before_auth_gets_execabort(auth_ports):
    for data in (b"EXEC\r\n", b"MULTI\r\nEXEC\r\n", b"EXEC\r\nAUTH pw\r\nEXEC\r\n"):
        (real, _), (ours, _) = both(auth_ports, data)
        assert ours == real, data
    assert real.startswith(b"-EXECABORT Transaction discarded because of: NOAUTH")


def test_expire_time_that_overflows_in_milliseconds(compare):
    compare("SET", "k", "v")
    for n in ("-9223372036854776", "-9223372036854775", "9223372036854776", "9223372036854775"):
        compare("EXPIRE", "k", n)
        compare("SET", "k", "v")
    compare("PEXPIRE", "k", "-9223372036854775808")


def test_long_inline_command_with_its_newline_is_a_command(ports):
    line = b"NOSUCH " + b"x" * 70_000 + b"\r\n"
    (real, _), (ours, _) = both(ports, line + b"PING\r\n")
    assert ours == real
    assert ours.startswith(b"-ERR unknown command 'NOSUCH'")


# -- DEBUG -----------------------------------------------------------------------


def test_debug_is_refused_by_default(compare):
    compare("DEBUG", "SLEEP", "0")
    compare("DEBUG", "OBJECT", "k")
    compare("MULTI")
    compare("DEBUG", "SLEEP", "0")
    compare("EXEC")


@pytest.mark.slow
def test_debug_when_allowed(debug_ports):
    for _, c in _each(debug_ports):
        assert c.execute_command("DEBUG", "SLEEP", "0") == b"OK"
        assert c.execute_command("DEBUG", "SLEEP", "0.01") == b"OK"
        assert c.execute_command("DEBUG", "CHANGE-REPL-ID") == b"OK"
        c.close()
    real, ours = (redis.Redis(port=debug_ports[n]) for n in ("redis", "shardkv"))
    assert _try(ours, "DEBUG", "SLEEP", "abc") == _try(real, "DEBUG", "SLEEP", "abc")
    # DEBUG QUICKLIST-PACKED-THRESHOLD: a memory value up to 4gb less 1mb (0 restores the default).
    for size in ("0", "1", "1k", "4293918720", "4293918721", "4gb", "99999999999999", "-5", "abc", "1.5"):
        args = ("DEBUG", "QUICKLIST-PACKED-THRESHOLD", size)
        assert _try(ours, *args) == _try(real, *args), size
    assert _try(ours, "DEBUG", "QUICKLIST-PACKED-THRESHOLD", "0") == b"OK"  # the default back


@pytest.mark.slow
def test_debug_sleep_past_a_long_long_of_microseconds_returns_at_once(debug_ports):
    """Redis's DEBUG SLEEP converts seconds to a long long of microseconds:
    past it (1e400 is inf) it gets LLONG_MIN and returns at once.  shardkv
    answered an internal error for 1e400 (time.sleep's OverflowError) and
    slept for ages for 1e13."""
    for name in ("redis", "shardkv"):
        c = redis.Redis(port=debug_ports[name], protocol=2, socket_timeout=20)
        for seconds in ("1e400", "1e300", "1e13", "-1e400"):
            assert c.execute_command("DEBUG", "SLEEP", seconds) == b"OK", seconds
        c.close()


@pytest.mark.slow
def test_slowlog_times_debug_sleep(debug_ports):
    for _, c in _each(debug_ports):
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "100000")
        c.execute_command("SLOWLOG", "RESET")
        c.execute_command("CLIENT", "SETNAME", "sleeper")
        c.execute_command("PING")
        assert c.execute_command("SLOWLOG", "LEN") == 0
        c.execute_command("DEBUG", "SLEEP", "0.2")
        assert c.execute_command("SLOWLOG", "LEN") == 1
        entry = c.execute_command("SLOWLOG", "GET")[0]
        assert len(entry) == 6
        assert entry[2] > 100000
        assert entry[3] == [b"DEBUG", b"SLEEP", b"0.2"]
        assert entry[5] == b"sleeper"
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.close()


# -- SLOWLOG ---------------------------------------------------------------------


def _slowlog_args(c: redis.Redis, count: int = -1) -> list:
    return [e[3] for e in c.execute_command("SLOWLOG", "GET", count)]


def test_slowlog_entries_lengths_and_reset(ports):
    got = {}
    for name, c in _each(ports):
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        c.execute_command("CONFIG", "SET", "slowlog-max-len", "3")
        c.execute_command("SLOWLOG", "RESET")
        c.execute_command("SET", "key", "test")
        c.execute_command("SADD", "set", "a", "b", "c")
        c.execute_command("INCR", "num")
        c.execute_command("LPUSH", "list", "a")
        got[name] = [
            c.execute_command("SLOWLOG", "LEN"),
            len(c.execute_command("SLOWLOG", "GET", "0")),
            len(c.execute_command("SLOWLOG", "GET", "1")),
            len(c.execute_command("SLOWLOG", "GET", "-1")),
            _slowlog_args(c),
            _try(c, "SLOWLOG", "GET", "-2"),
            _try(c, "SLOWLOG", "GET", "x"),
            _try(c, "SLOWLOG", "LEN", "x"),
            _try(c, "SLOWLOG", "NOPE"),
            c.execute_command("SLOWLOG", "HELP"),
        ]
        c.execute_command("CONFIG", "SET", "slowlog-max-len", "128")
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.execute_command("DEL", "key", "set", "num", "list")
        c.close()
    assert got["shardkv"] == got["redis"]


def test_slowlog_cuts_long_commands_as_redis(ports):
    got = {}
    for name, c in _each(ports):
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        c.execute_command("SLOWLOG", "RESET")
        c.execute_command("SADD", "set", *range(3, 34))
        c.execute_command("SADD", "set", "foo", "A" * 129)
        c.execute_command("MSET", *[f"k{i}" for i in range(40)])  # across shards
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "-1")
        c.execute_command("CLIENT", "SETNAME", "cutter")
        got[name] = [e[3:] for e in c.execute_command("SLOWLOG", "GET", "-1")]
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        c.execute_command("DEL", "set", *[f"k{i}" for i in range(0, 40, 2)])
        c.close()
    # The client address and name of a command a shard ran are not known
    # to the shard (see shardkv.runtime.cmdstats): compare the arguments.
    assert [e[0] for e in got["shardkv"]] == [e[0] for e in got["redis"]]
    assert got["redis"][0][0][-1] == b"... (10 more arguments)"
    assert got["redis"][-1][0] == [b"SLOWLOG", b"RESET"]
    # The acceptor's own entry has the client's address and name.
    assert got["shardkv"][-1][1].startswith(b"127.0.0.1:") and got["shardkv"][-1][2] == b""


def test_slowlog_redacts_secrets_as_redis(ports):
    """Redis redacts passwords from the slow log: AUTH's arguments, HELLO's
    AUTH pair, ACL SETUSER's user and rules, a sensitive parameter's value
    in CONFIG SET, MIGRATE's AUTH and AUTH2.  shardkv logged them as sent,
    so SLOWLOG GET showed every password a client gave."""
    got = {}
    for name in ("redis", "shardkv"):
        conn = RespClient(ports[name])  # no client library's reconnections and CLIENT SETINFO

        def say(*args: str, conn: RespClient = conn) -> object:
            conn.send(*args)
            return conn.read_reply()

        say("CONFIG", "SET", "slowlog-log-slower-than", "0")
        say("SLOWLOG", "RESET")
        say("AUTH", "secret1")
        say("AUTH", "someone", "secret2")
        say("HELLO", "2", "SETNAME", "auth", "AUTH", "default", "secret3")
        say("ACL", "SETUSER", "redact-bob", "on", ">secret4")
        say("CONFIG", "SET", "masterauth", "secret5", "maxmemory-samples", "5", "masteruser", "u6")
        say("CONFIG", "SET", "masteruser", "secret7", "nosuch", "x", "masterauth", "shown")
        say("MIGRATE", "127.0.0.1", "1", "k", "0", "1000", "COPY", "AUTH", "secret8")
        say("MIGRATE", "127.0.0.1", "1", "", "0", "1000", "AUTH2", "u9", "secret9", "KEYS", "k")
        say("CONFIG", "SET", "slowlog-log-slower-than", "-1")
        got[name] = [e[3] for e in say("SLOWLOG", "GET", "-1")][::-1]  # type: ignore[union-attr]
        say("ACL", "DELUSER", "redact-bob")
        say("CONFIG", "SET", "masterauth", "", "masteruser", "")
        say("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        conn.close()
    assert got["shardkv"] == got["redis"]
    assert not any(b"secret" in a for entry in got["shardkv"] for a in entry)


def test_slowlog_and_monitor_keep_what_redis_does_not_redact(ports):
    """Redis redacts a secret only once its command has parsed that far: AUTH
    of three arguments, HELLO of a bad protocol version, and HELLO's AUTH
    after an option it rejects keep their arguments, in the slow log and in
    MONITOR alike, where shardkv hid them all."""
    sent = [
        ("AUTH", "a", "b", "c"),
        ("HELLO", "4", "AUTH", "u", "p"),
        ("HELLO", "x", "AUTH", "u", "p"),
        ("HELLO", "2", "FOO", "AUTH", "u", "p"),
        ("HELLO", "2", "SETNAME"),
        ("HELLO", "2", "AUTH", "u"),
    ]
    slow, shown = {}, {}
    for name in ("redis", "shardkv"):
        conn, monitor = RespClient(ports[name]), RespClient(ports[name])
        monitor.send("MONITOR")
        assert monitor.read_reply() == b"OK"

        def say(*args: str, conn: RespClient = conn) -> object:
            conn.send(*args)
            return conn.read_reply()

        say("CONFIG", "SET", "slowlog-log-slower-than", "0")
        say("SLOWLOG", "RESET")
        for args in sent:
            say(*args)
        say("CONFIG", "SET", "slowlog-log-slower-than", "-1")
        slow[name] = [e[3] for e in say("SLOWLOG", "GET", "-1")][::-1]  # type: ignore[union-attr]
        say("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        say("PING")
        lines = []
        while not lines or b'"PING"' not in lines[-1]:
            lines.append(monitor.read_reply())  # type: ignore[arg-type]
        shown[name] = [line.split(b"] ", 1)[1] for line in lines if b'"AUTH"' in line or b'"HELLO"' in line]
        conn.close()
        monitor.close()
    assert slow["shardkv"] == slow["redis"]
    assert shown["shardkv"] == shown["redis"]
    assert len(shown["redis"]) == len(sent)


# -- INFO commandstats, errorstats, latencystats ----------------------------------


def _section(c: redis.Redis, name: str) -> dict:
    return c.info(name)


def _counts(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if k in ("calls", "rejected_calls", "failed_calls", "count")}


def test_commandstats_and_errorstats(ports):
    got = {}
    for name, c in _each(ports):
        c.execute_command("CONFIG", "RESETSTAT")
        c.execute_command("SET", "a", "1")
        c.execute_command("GET", "a")
        c.execute_command("MSET", "x", "1", "y", "2", "z", "3")
        _try(c, "INCR", "x1") and _try(c, "LPUSH", "a", "v")  # WRONGTYPE
        _try(c, "GET")  # arity: rejected
        _try(c, "NOSUCH")  # unknown: an error, no command
        _try(c, "CONFIG", "SET", "maxmemory", "x")  # failed
        _try(c, "CLIENT", "ID")
        _try(c, "OBJECT", "ENCODING", "a")
        c.execute_command("MULTI")
        c.execute_command("INCR", "n")
        c.execute_command("EXEC")
        stats = {k: _counts(v) for k, v in _section(c, "commandstats").items()}
        errors = {k: _counts(v) for k, v in _section(c, "errorstats").items()}
        total = _section(c, "stats")["total_error_replies"]
        c.execute_command("DEL", "a", "x", "y", "z", "x1", "n")
        got[name] = (stats, errors, total)
        c.close()
    assert got["shardkv"] == got["redis"]


def test_refused_subcommands_in_commandstats_and_errorstats(ports):
    """An unknown subcommand counts as an error of no command (Redis finds
    none); a wrong arity counts in the subcommand's rejected_calls; inside
    MULTI the same, and the aborted EXEC is a failed call."""
    got = {}
    for name, c in _each(ports):
        c.execute_command("CONFIG", "RESETSTAT")
        replies = [_try(c, "CLIENT", "FOOBAR"), _try(c, "CONFIG", "GET")]
        c.execute_command("MULTI")
        replies += [_try(c, "OBJECT", "NOPE"), _try(c, "XINFO", "STREAM"), _try(c, "EXEC")]
        stats = {k: _counts(v) for k, v in _section(c, "commandstats").items()}
        errors = {k: _counts(v) for k, v in _section(c, "errorstats").items()}
        total = _section(c, "stats")["total_error_replies"]
        got[name] = (replies, stats, errors, total)
        c.close()
    assert got["shardkv"] == got["redis"]
    assert got["redis"][1]["cmdstat_config|get"] == {"calls": 0, "rejected_calls": 1, "failed_calls": 0}
    assert "cmdstat_client|foobar" not in got["redis"][1]


def test_latencystats(ports):
    got = {}
    for name, c in _each(ports):
        c.execute_command("CONFIG", "RESETSTAT")
        c.execute_command("SET", "a", "1")
        c.execute_command("GET", "a")
        c.execute_command("CONFIG", "SET", "latency-tracking-info-percentiles", "50 99.9 100")
        lines = _section(c, "latencystats")
        got[name] = {k: sorted(v) for k, v in lines.items()}
        for fields in lines.values():
            assert all(float(v) >= 0 for v in fields.values())
        c.execute_command("CONFIG", "SET", "latency-tracking-info-percentiles", "50 99 99.9")
        c.execute_command("DEL", "a")
        c.close()
    assert got["shardkv"] == got["redis"]
    assert "latency_percentiles_usec_get" in got["shardkv"]


# -- CLIENT REPLY, PAUSE, UNBLOCK, LIST, KILL ------------------------------------


def test_client_reply_off_on_skip(ports):
    data = (
        b"CLIENT REPLY OFF\r\nPING a\r\nPING b\r\nCLIENT REPLY ON\r\nPING c\r\n"
        b"CLIENT REPLY SKIP\r\nPING d\r\nPING e\r\n"
        b"CLIENT REPLY SKIP\r\nCLIENT REPLY ON\r\nPING f\r\n"
        b"CLIENT REPLY OFF\r\nCLIENT REPLY SKIP\r\nPING g\r\nCLIENT REPLY ON\r\nCLIENT REPLY x\r\n"
        b"CLIENT REPLY OFF\r\nSET k v\r\nGET k\r\nMGET k a b c\r\nCLIENT REPLY ON\r\nGET k\r\n"
    )
    (real, _), (ours, _) = both(ports, data)
    assert ours == real
    assert (
        real
        == b"+OK\r\n$1\r\nc\r\n$1\r\ne\r\n+OK\r\n$1\r\nf\r\n+OK\r\n-ERR syntax error\r\n+OK\r\n$1\r\nv\r\n"
    )


def test_reset_turns_client_reply_back_on(ports):
    """RESET clears CLIENT REPLY OFF and a pending SKIP (Redis's
    clearClientConnectionState), subscribed or not; a RESET whose own reply
    is skipped has it dropped.  (shardkv's RESET left replies off.)"""
    data = (
        b"CLIENT REPLY OFF\r\nRESET\r\nPING a\r\n"
        b"CLIENT REPLY SKIP\r\nRESET\r\nPING b\r\n"
        b"CLIENT REPLY OFF\r\nCLIENT REPLY SKIP\r\nRESET\r\nPING c\r\n"
        b"HELLO 3\r\nSUBSCRIBE ch\r\nCLIENT REPLY OFF\r\nRESET\r\nPING d\r\n"
    )
    (real, _), (ours, _) = both(ports, data)
    assert ours.split(b"%7")[0] == real.split(b"%7")[0]  # (HELLO's reply: versions differ)
    assert ours.split(b"*0\r\n", 1)[1] == real.split(b"*0\r\n", 1)[1]
    assert real.startswith(b"+RESET\r\n$1\r\na\r\n$1\r\nb\r\n+RESET\r\n$1\r\nc\r\n%7")
    assert real.endswith(b"+RESET\r\n$1\r\nd\r\n")


@pytest.mark.parametrize("hello", [b"", b"HELLO 3\r\n"], ids=["resp2", "resp3"])
def test_client_reply_off_keeps_pubsub_confirmations(ports, hello):
    """Redis sends (un)subscribe confirmations with CLIENT_PUSHING set, so
    CLIENT REPLY OFF and SKIP never drop them (unit/pubsub waits for them)."""
    data = (  # HELLO's own reply (ids differ) is dropped
        b"CLIENT REPLY OFF\r\n" + hello + b"SUBSCRIBE ch a\r\nPSUBSCRIBE c*\r\n"
        b"CLIENT REPLY SKIP\r\nUNSUBSCRIBE a\r\nPING x\r\n"
        b"CLIENT REPLY OFF\r\nUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\nCLIENT REPLY ON\r\nPING y\r\n"
    )
    (real, _), (ours, _) = both(ports, data)
    assert ours == real
    assert real.count(b"subscribe") == 6


def _blocked_clients(c: redis.Redis) -> int:
    return c.info("clients")["blocked_clients"]


def _wait_blocked(c: redis.Redis, n: int) -> None:
    import time

    for _ in range(500):
        if _blocked_clients(c) == n:
            return
        time.sleep(0.01)
    raise AssertionError(f"blocked_clients never reached {n}")


@pytest.mark.parametrize("server_name", ["redis", "shardkv"])
def test_client_pause_write_postpones_writes_in_order(ports, server_name):
    port = ports[server_name]
    admin = redis.Redis(port=port)
    admin.delete("pk")
    admin.execute_command("CLIENT", "PAUSE", "100000", "WRITE")
    try:
        reader = redis.Redis(port=port)
        assert reader.get("pk") is None  # reads run
        assert reader.ping()
        assert _blocked_clients(admin) == 0
        import socket

        writer = socket.create_connection(("127.0.0.1", port))
        writer.sendall(b"RPUSH pk a\r\nRPUSH pk b\r\nPUBLISH ch m\r\nGET pk\r\n")
        _wait_blocked(admin, 1)
        assert admin.lrange("pk", 0, -1) == []
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            reader.execute_command("SET", "x")  # its checks fail at once
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    got = b""
    while got.count(b"\r\n") < 4:
        got += writer.recv(1024)
    # In order: the GET waited behind the writes (so it finds a list).
    assert got == b":1\r\n:2\r\n:0\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    writer.close()
    admin.delete("pk")


@pytest.mark.parametrize("server_name", ["redis", "shardkv"])
def test_client_pause_write_postpones_function_writes(ports, server_name):
    """CLIENT PAUSE WRITE postpones FUNCTION LOAD and FLUSH (their
    subcommands' rows say write), not FUNCTION LIST.  Before, shardkv read
    FUNCTION's row (no flags) and loaded the library during the pause."""
    port = ports[server_name]
    admin = redis.Redis(port=port)
    admin.execute_command("CLIENT", "PAUSE", "100000", "WRITE")
    writer = socket.create_connection(("127.0.0.1", port))
    try:
        library = b"#!lua name=pauselib\nredis.register_function('f', function() return 1 end)"
        writer.sendall(encode_command([b"FUNCTION", b"LOAD", library]) + b"FUNCTION FLUSH\r\n")
        _wait_blocked(admin, 1)
        assert admin.function_list() == []
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
    got = b""
    while got.count(b"\r\n") < 3:  # both replies (they may come apart)
        got += writer.recv(1024)
    assert got == b"$8\r\npauselib\r\n+OK\r\n"
    writer.close()


def test_client_pause_postponed_client_counts_as_blocked(ports):
    """Redis 7.0 blocks a postponed client (BLOCKED_POSTPONE): it counts in
    blocked_clients and has the b flag, but has no timeout, so it is not in
    the timeout table.  (CLIENT UNBLOCK of it is not compared: Redis 7.0.15
    panics on it.)"""
    import socket

    got = {}
    for name in ("redis", "shardkv"):
        admin = redis.Redis(port=ports[name], protocol=2)
        admin.delete("ppk")
        writer = socket.create_connection(("127.0.0.1", ports[name]))
        writer.sendall(b"CLIENT ID\r\n")
        cid = int(writer.recv(100)[1:-2])
        admin.execute_command("CLIENT", "PAUSE", "100000", "WRITE")
        try:
            writer.sendall(b"SET ppk v\r\n")
            _wait_blocked(admin, 1)
            info = admin.info("clients")
            line = next(
                x
                for x in admin.execute_command("CLIENT", "LIST").split(b"\n")
                if x.startswith(b"id=%d " % cid)
            )
            flags = line.split(b" flags=")[1].split(b" ")[0]
            got[name] = (info["blocked_clients"], info["clients_in_timeout_table"], flags)
        finally:
            admin.execute_command("CLIENT", "UNPAUSE")
        assert writer.recv(100) == b"+OK\r\n"
        writer.close()
        admin.delete("ppk")
    assert got["shardkv"] == got["redis"] == (1, 0, b"b")


@pytest.mark.parametrize("server_name", ["redis", "shardkv"])
def test_client_pause_times_out_and_expiry_waits(ports, server_name):
    import time

    c = redis.Redis(port=ports[server_name])
    before = c.info("stats")["expired_keys"]
    # In one write: no expiry cycle runs between the SET and the pause (one
    # could delete the key first, on a loaded machine).  The pause is long
    # enough for the two checks made in it, however slow the machine.
    setup = c.pipeline(transaction=False)
    setup.set("pe", "v", px=10)
    setup.execute_command("CLIENT", "PAUSE", "1000", "WRITE")
    setup.execute()
    paused = time.monotonic()  # after the server's start of the pause
    time.sleep(0.05)
    assert c.get("pe") is None  # logically expired
    assert c.info("stats")["expired_keys"] == before  # but not deleted
    time.sleep(max(0.0, 1.1 - (time.monotonic() - paused)))  # the pause is over
    c.get("pe")
    assert c.info("stats")["expired_keys"] == before + 1
    assert c.set("after", "1")
    c.delete("after")


@pytest.mark.slow
@pytest.mark.parametrize("server_name", ["redis", "shardkv"])
def test_the_first_command_after_a_pause_timed_out_finds_it_over(debug_ports, server_name):
    """A pause that times out while the server is stalled (DEBUG SLEEP here,
    a loaded machine in CI) is over for the next command: Redis checks the
    pause's end before it expires a key, so the GET deletes the expired key
    and INFO counts it.  shardkv's acceptor ended a pause only by a timer,
    which a stalled event loop runs after the commands it has already read:
    the GET found the pause on and its shard kept the key (as
    test_client_pause_times_out_and_expiry_waits could, on a loaded
    machine, when its GET after the pause's end came first)."""
    c = redis.Redis(port=debug_ports[server_name], socket_timeout=30)
    before = c.info("stats")["expired_keys"]
    c.set("pe", "v", px=100)
    c.execute_command("CLIENT", "PAUSE", "300", "WRITE")
    # One write, so that the GET is read with the DEBUG SLEEP, in one turn.
    stalled = c.pipeline(transaction=False)
    stalled.execute_command("DEBUG", "SLEEP", "0.6")  # past the pause's end and the key's
    stalled.get("pe")
    stalled.info("stats")
    sleep, got, info = stalled.execute()
    assert (sleep, got, info["expired_keys"]) == (b"OK", None, before + 1)
    c.close()


@pytest.mark.parametrize("server_name", ["redis", "shardkv"])
def test_client_pause_whose_end_overflows_is_over_at_once(ports, server_name):
    """Redis 7.0 adds the timeout to the Unix time in milliseconds in a long
    long: past what that holds, the end wraps to a time long past and the
    pause is over at once (shardkv paused for ever: in ALL mode even
    CLIENT UNPAUSE waited, and only a restart ended it)."""
    port = ports[server_name]
    admin = redis.Redis(port=port)
    try:
        assert admin.execute_command("CLIENT", "PAUSE", "9223372036854775807", "WRITE")
        writer = redis.Redis(port=port, socket_timeout=REPLY_WAIT)
        assert writer.set("overflow-pause", 1)
        writer.close()
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.delete("overflow-pause")
        admin.close()


def test_client_pause_errors(compare):
    compare("CLIENT", "PAUSE", "abc")
    compare("CLIENT", "PAUSE", "-1")
    compare("CLIENT", "PAUSE", "10", "NOPE")
    compare("CLIENT", "PAUSE", "0", "WRITE")
    compare("CLIENT", "UNPAUSE")
    compare("CLIENT", "UNBLOCK", "abc")
    compare("CLIENT", "UNBLOCK", "999999")
    compare("CLIENT", "UNBLOCK", "1", "NOPE")
    compare("CLIENT", "KILL", "USER", "nobody")
    compare("CLIENT", "KILL", "USER", "default", "SKIPME", "YES", "ID", "999999")
    compare("CLIENT", "KILL", "ID", "abc")
    compare("CLIENT", "NO-EVICT", "maybe")


@pytest.mark.parametrize("reason", ["TIMEOUT", "ERROR"])
def test_client_unblock(ports, reason):
    import socket

    got = {}
    for name in ("redis", "shardkv"):
        admin = redis.Redis(port=ports[name])
        admin.delete("ul", "ul2{x}")
        s = socket.create_connection(("127.0.0.1", ports[name]))
        s.sendall(b"CLIENT ID\r\n")
        cid = int(s.recv(100)[1:-2])
        s.sendall(b"BLPOP ul 0\r\n")
        _wait_blocked(admin, 1)
        first = admin.execute_command("CLIENT", "UNBLOCK", cid, reason)
        reply = s.recv(200)
        again = admin.execute_command("CLIENT", "UNBLOCK", cid, reason)
        s.sendall(b"BLPOP ul ul2{x} 0\r\n")  # keys on two shards in shardkv
        _wait_blocked(admin, 1)
        assert admin.execute_command("CLIENT", "UNBLOCK", cid, reason) == 1
        reply2 = s.recv(200)
        got[name] = (first, reply, again, reply2)
        s.close()
    assert got["shardkv"] == got["redis"]


def test_client_list_and_info_fields(ports):
    for name in ("redis", "shardkv"):
        c = redis.Redis(port=ports[name], protocol=2)
        line = c.execute_command("CLIENT", "INFO").decode()
        keys = [kv.split("=")[0] for kv in line.split()]
        assert (
            keys[:28]
            == (
                "id addr laddr fd name age idle flags db sub psub ssub multi qbuf qbuf-free argv-mem "
                "multi-mem rbs rbp obl oll omem tot-mem events cmd user redir resp"
            ).split()
        ), name
        fields = dict(kv.split("=", 1) for kv in line.split())
        assert fields["cmd"] == "client|info" and fields["qbuf"] == "26" and fields["flags"] == "N"
        listed = c.execute_command("CLIENT", "LIST", "ID", fields["id"]).decode()
        assert " cmd=client|list " in listed
        c.close()


# -- OOM while MULTI queues --------------------------------------------------------


def test_oom_while_queueing_and_at_exec(ports):
    got = {}
    for name in ("redis", "shardkv"):
        port = ports[name]
        c, admin = redis.Redis(port=port), redis.Redis(port=port)
        c.set("x", "value")
        out = []
        # Read-only EXEC runs under OOM; one with a denyoom command aborts.
        for queued in ([("GET", "x"), ("PING",)], [("SET", "y", "1"), ("GET", "x")]):
            c.execute_command("MULTI")
            for cmd in queued:
                c.execute_command(*cmd)
            admin.config_set("maxmemory", 1)
            out.append(_try(c, "EXEC"))
            admin.config_set("maxmemory", 0)
        # Queueing under OOM is refused, DISCARD still works.
        admin.config_set("maxmemory", 1)
        c.execute_command("MULTI")
        out.append(_try(c, "SET", "z", "1"))
        out.append(_try(c, "GET", "x"))
        out.append(_try(c, "DISCARD"))
        # A refusal while queueing aborts the EXEC after the OOM is gone.
        c.execute_command("MULTI")
        out.append(_try(c, "LPUSH", "l", "v"))
        admin.config_set("maxmemory", 0)
        out.append(_try(c, "SET", "z", "1"))
        out.append(_try(c, "EXEC"))
        out.append(c.exists("y", "z", "l"))
        got[name] = out
        c.close()
        admin.close()
    assert got["shardkv"] == got["redis"]


def test_container_subcommands_at_oom_go_by_their_own_flags(ports):
    """Out of memory, Redis refuses FUNCTION LOAD and RESTORE and XGROUP
    CREATE (their subcommands' rows say denyoom), and aborts an EXEC whose
    queue holds one; FUNCTION DELETE and XGROUP HELP run.  Before, shardkv
    ran such an EXEC (FUNCTION's and XGROUP's rows say no denyoom), and a
    worker let XGROUP CREATE create its stream."""
    library = "#!lua name=oomlib\nredis.register_function('f', function() return 1 end)"
    got = {}
    for name in ("redis", "shardkv"):
        c, admin = redis.Redis(port=ports[name]), redis.Redis(port=ports[name])
        out = []
        try:
            c.function_load(library)
            dump = c.function_dump()
            for queued in (
                ("FUNCTION", "LOAD", "REPLACE", library),
                ("XGROUP", "CREATE", "oom{s}", "g", "$", "MKSTREAM"),
            ):
                c.execute_command("MULTI")
                out.append(_try(c, *queued))
                admin.config_set("maxmemory", 1)
                out.append(_try(c, "EXEC"))
                admin.config_set("maxmemory", 0)
            admin.config_set("maxmemory", 1)
            out.append(_try(c, "FUNCTION", "LOAD", "REPLACE", library))
            out.append(_try(c, "FUNCTION", "RESTORE", dump, "REPLACE"))
            out.append(_try(c, "XGROUP", "CREATE", "oom{s}", "g", "$", "MKSTREAM"))
            out.append(_try(c, "XGROUP", "HELP")[0])  # type: ignore[index]
            out.append(_try(c, "FUNCTION", "DELETE", "oomlib"))
            admin.config_set("maxmemory", 0)
            out.append(c.exists("oom{s}"))
        finally:
            admin.config_set("maxmemory", 0)
            c.function_flush()
            c.delete("oom{s}")
        got[name] = out
        c.close()
        admin.close()
    assert got["shardkv"] == got["redis"]
    aborted = (
        "error",
        "Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.",
    )
    assert got["redis"][1] == got["redis"][3] == aborted


def test_blpop_with_a_tiny_timeout_times_out(compare):
    compare("BLPOP", "nolist", "0.001")
    compare("BLPOP", "nolist", "other{x}", "0.001")
    compare("BRPOP", "nolist", "0.0001")


# -- SCAN across shards --------------------------------------------------------------


def test_scan_of_a_tiny_keyspace_is_one_call(compare):
    compare("MSET", "a", "1", "b", "2", "c", "3")
    for c in (compare.real, compare.ours):
        cursor, keys = c.scan(0)
        assert cursor == 0 and sorted(keys) == [b"a", b"b", b"c"]
        cursor, keys = c.scan(0, match="b*")
        assert cursor == 0 and keys == [b"b"]
        cursor, keys = c.scan(0, _type="string")
        assert cursor == 0 and len(keys) == 3


@pytest.mark.parametrize("count", [1, 3, 10, 1000])
def test_scan_returns_every_key_once_per_full_scan(r, count):
    keys = [f"key:{i}".encode() for i in range(500)]
    r.mset({k: b"v" for k in keys})
    seen: list = []
    cursor, calls = 0, 0
    while True:
        cursor, batch = r.scan(cursor, count=count)
        seen.extend(batch)
        calls += 1
        if cursor == 0:
            break
    assert sorted(seen) == sorted(keys)  # each exactly once: nothing changed meanwhile
    if count == 1000:
        assert calls == 1


# -- COMMAND for subcommands ----------------------------------------------------------


def _first_reply(port: int, data: bytes) -> object:
    """The first reply to ``data``, parsed, once it has come whole (however
    slowly).  Not :func:`both`: shardkv's COMMAND INFO rows are shorter than
    Redis's (only their first six fields are compared), so waiting for as
    many bytes as Redis sent waited out ``REPLY_WAIT`` (20 s) every time."""
    import hiredis

    reader = hiredis.Reader()
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_WAIT) as s:
        s.sendall(data)
        while (reply := reader.gets()) is False:
            chunk = s.recv(1 << 16)
            assert chunk, f"connection closed before a whole reply: {data!r}"
            reader.feed(chunk)
    return reply


def test_command_info_and_getkeys_of_subcommands(compare, ports):
    import hiredis

    rows = []
    for port in (ports["redis"], ports["shardkv"]):
        reply = _first_reply(port, b"COMMAND INFO client|list config|get get|key nosuch|x slowlog|get\r\n")
        assert isinstance(reply, list)
        rows.append([row[:6] if row else row for row in reply])  # name, arity, flags, keys
    assert rows[1] == rows[0]
    assert rows[0][0][0] == b"client|list" and rows[0][2] is None
    data = (
        b"COMMAND GETKEYS EVAL x 0\r\nCOMMAND GETKEYS EVAL x 1 key\r\nCOMMAND GETKEYS GET\r\n"
        b"COMMAND GETKEYSANDFLAGS GET\r\nCOMMAND GETKEYSANDFLAGS NOSUCH a\r\n"
    )
    (real, _), (ours, _) = both(ports, data)
    assert ours == real
    # The keys and their flags are Redis's key specs' (MSET's OW, GET's RO).
    (real, _), (ours, _) = both(
        ports, b"COMMAND GETKEYSANDFLAGS MSET k1 v1 k2 v2\r\nCOMMAND GETKEYSANDFLAGS GET k\r\n"
    )
    assert ours == real
    reader = hiredis.Reader()
    reader.feed(ours)
    assert reader.gets() == [[b"k1", [b"OW", b"update"]], [b"k2", [b"OW", b"update"]]]
    assert reader.gets() == [[b"k", [b"RO", b"access"]]]


# -- MEMORY, LATENCY -----------------------------------------------------------------


def test_memory_usage_and_errors(compare):
    compare("SET", "k", "v")
    compare("RPUSH", "l", *range(100))
    compare("MEMORY", "USAGE", "nokey")
    compare("MEMORY", "USAGE", "k", "SAMPLES", "-1")
    compare("MEMORY", "USAGE", "k", "SAMPLES")
    compare("MEMORY", "USAGE", "k", "SAMPLES", "x")
    compare("MEMORY", "USAGE", "k", "NOPE", "1")
    compare("MEMORY", "USAGE")
    compare("MEMORY", "NOPE")
    compare("MEMORY", "MALLOC-STATS", "x")
    compare("MEMORY", "PURGE")
    for key in ("k", "l"):
        theirs = compare.real.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
        ours = compare.ours.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
        assert 0.1 < ours / theirs < 20, (key, ours, theirs)  # the same order
    stats = compare.ours.execute_command("MEMORY", "STATS")
    if isinstance(stats, list):
        stats = dict(zip(stats[::2], stats[1::2], strict=True))
    assert stats[b"keys.count"] == 2 and stats[b"total.allocated"] > 0
    assert compare.ours.execute_command("MEMORY", "DOCTOR").startswith(b"Hi Sam")
    compare("FLUSHALL")
    compare("MEMORY", "DOCTOR")  # empty: the same text, its line feed too
    compare("EVAL", "return redis.call('memory', 'doctor')", 0)


def test_latency_commands(compare):
    compare("LATENCY", "LATEST")
    compare("LATENCY", "HISTORY", "command")
    compare("LATENCY", "RESET")
    compare("LATENCY", "NOPE")
    compare("LATENCY", "GRAPH")
    compare("SET", "k", "v")
    for c in (compare.real, compare.ours):
        hist = c.execute_command("LATENCY", "HISTOGRAM", "set")
        if isinstance(hist, list):  # RESP2: flat pairs
            hist = {hist[0]: dict(zip(hist[1][::2], hist[1][1::2], strict=True))}
        assert list(hist) == [b"set"] and hist[b"set"][b"calls"] >= 1
        assert sum(1 for _ in hist[b"set"][b"histogram_usec"]) >= 1


def test_setbit_and_bitfield_that_change_nothing_are_not_changes(ports):
    got = {}
    for name in ("redis", "shardkv"):
        c, other = redis.Redis(port=ports[name]), redis.Redis(port=ports[name])
        c.set("bk", b"\x00")
        before = c.info("persistence")["rdb_changes_since_last_save"]
        out = []
        for cmd in (
            ("SETBIT", "bk", "0", "0"),
            ("BITFIELD", "bk", "SET", "u8", "0", "0"),
            ("SETBIT", "bk", "1", "1"),
            ("BITFIELD", "bk", "SET", "u8", "0", "0"),
        ):
            c.execute_command("WATCH", "bk")
            out.append(other.execute_command(*cmd))
            c.execute_command("MULTI")
            c.execute_command("PING")
            out.append(c.execute_command("EXEC"))
            out.append(c.info("persistence")["rdb_changes_since_last_save"] - before)
        got[name] = out
        c.delete("bk")
        c.close()
        other.close()
    assert got["shardkv"] == got["redis"]


@pytest.mark.parametrize("server_name", ["redis", "shardkv"])
def test_client_pause_write_lets_read_only_scripts_run(ports, server_name):
    c = redis.Redis(port=ports[server_name])
    body = "#!lua flags=no-writes\nreturn 2"
    sha = c.script_load(body)
    c.execute_command("CLIENT", "PAUSE", "100000", "WRITE")
    try:
        other = redis.Redis(port=ports[server_name], socket_timeout=5)
        assert other.execute_command("EVAL", body, 0) == 2
        assert other.execute_command("EVALSHA", sha, 0) == 2
        assert _blocked_clients(c) == 0
        other.close()
    finally:
        c.execute_command("CLIENT", "UNPAUSE")
    c.close()


def test_a_blocked_command_is_counted_and_logged_when_served(ports):
    import socket

    got = {}
    for name in ("redis", "shardkv"):
        c = redis.Redis(port=ports[name])
        c.delete("bl")
        c.execute_command("CONFIG", "RESETSTAT")
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        c.execute_command("SLOWLOG", "RESET")
        s = socket.create_connection(("127.0.0.1", ports[name]))
        s.sendall(b"BLPOP bl 0\r\n")
        _wait_blocked(c, 1)
        c.rpush("bl", "x")
        assert s.recv(100).startswith(b"*2\r\n")
        s.close()
        newest = c.execute_command("SLOWLOG", "GET", "1")[0][3]
        calls = c.info("commandstats")["cmdstat_blpop"]["calls"]
        c.execute_command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        got[name] = (newest, calls)
        c.close()
    assert got["shardkv"] == got["redis"] == ([b"BLPOP", b"bl", b"0"], 1)
