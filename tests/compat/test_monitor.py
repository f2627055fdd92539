"""MONITOR: the same lines as redis-server, for the same commands.

Each test runs a script on redis-server and on shardkv while a raw-socket
client monitors, and compares what the monitor received, with the
timestamps and the client ports (which differ between the two runs)
replaced by placeholders.  Only the lines of the test's own clients are
compared: the servers are shared by the whole test session.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
import redis

from tests.support.placement import on_shards
from tests.support.rawsocket import REPLY_WAIT, read_until_quiet
from tests.support.resp import RespClient

LINE = re.compile(rb"\+(\d+)\.(\d{6}) \[0 ([^\]]+)\] (.*)")


def resp(*args: bytes | str) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A raw connection: send commands, read what comes back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        host, cport = self.sock.getsockname()[:2]
        self.addr = b"%s:%d" % (host.encode(), cport)

    def send(self, *commands: tuple) -> None:
        self.sock.sendall(b"".join(resp(*c) for c in commands))

    def read(self, idle: float = 0.3, want: int = 0, until: bytes = b"") -> tuple[bytes, bool]:
        return read_until_quiet(self.sock, idle, want=want, until=until)

    def reply(self) -> bytes:
        """What comes back once a reply has (one at a time: the next command
        must not run before this one has)."""
        return self.read(0.05, want=1)[0]

    def lines_of(self, clients: dict[bytes, str], n: int, idle: float = 0.3) -> bytes:
        """What this monitor gets until ``n`` lines of ``clients`` came
        (however long that takes: a fixed 0.3 s of quiet missed the last
        lines on a loaded machine) and then ``idle`` seconds of quiet."""
        data = b""
        self.sock.settimeout(REPLY_WAIT)
        while len(lines(data[: data.rfind(b"\r\n") + 2], clients)) < n:
            chunk = self.sock.recv(1 << 16)
            assert chunk, "the monitor was closed"
            data += chunk
        return data + self.read(idle)[0]

    def shown(self, line: str) -> bytes:
        """How a monitor shows ``line`` (``"SET" "k" "v"``) from this client."""
        return b"%s] %s\r\n" % (self.addr, line.encode())

    def close(self) -> None:
        self.sock.close()


def monitor(port: int) -> Conn:
    """A client that has been answered MONITOR's +OK (however long that
    takes: waiting 0.3 s for quiet got nothing at all on a loaded machine),
    so that it sees every command sent after this returns."""
    m = Conn(port)
    m.send(("MONITOR",))
    m.sock.settimeout(20)
    got = b""
    while len(got) < 5 and (chunk := m.sock.recv(5 - len(got))):
        got += chunk
    assert got == b"+OK\r\n"
    return m


def lines(data: bytes, clients: dict[bytes, str]) -> list[str]:
    """The monitor lines sent by ``clients`` (address -> name), as "name: args"."""
    out = []
    for raw in data.split(b"\r\n"):
        m = LINE.fullmatch(raw)
        if m is None:
            assert raw == b"", raw
            continue
        secs = int(m.group(1)) + int(m.group(2)) / 1e6
        assert abs(secs - time.time()) < 60  # wall-clock time, in microseconds
        name = clients.get(m.group(3))
        if name is not None:
            out.append(f"{name}: {m.group(4).decode('latin-1')}")
    return out


def anonymize(data: bytes, clients: dict[bytes, str]) -> bytes:
    """A byte stream with each monitor line's time and client replaced."""

    def sub(m: re.Match) -> bytes:
        return b"+T [0 %s] %s" % (clients.get(m.group(3), "other").encode(), m.group(4))

    return b"\r\n".join(LINE.sub(sub, raw) for raw in data.split(b"\r\n"))


def on_both(ports, script) -> list:
    """``script(port)`` on redis-server and on shardkv; both results."""
    results = []
    for name in ("redis", "shardkv"):
        redis.Redis(port=ports[name]).flushall()
        results.append(script(ports[name]))
    return results


ALL_BYTES = bytes(range(256))

SCRIPT = [
    ("SET", "k", "v"),
    ("GET", "k"),
    ("lpush", "k", "x"),  # runs, and fails: shown, as typed
    ("nosuch", "a"),  # rejected before it runs: not shown
    ("GET",),
    ("MULTI",),
    ("SET", "a", "1"),  # queued: shown when EXEC runs it
    ("INCR", "a"),
    ("EXEC",),
    ("MULTI",),
    ("SET", "a"),
    ("EXEC",),  # EXECABORT: EXEC alone
    ("EXEC",),  # without MULTI
    ("CONFIG", "GET", "maxmemory"),  # admin: never shown
    ("CLIENT", "LIST"),
    ("CLIENT", "KILL", "ID", "999999"),
    ("CLIENT", "SETNAME", "foo"),  # CLIENT's other subcommands are shown
    ("CLIENT", "ID"),
    ("CLIENT", "GETNAME"),
    ("CLIENT", "NOSUCH"),  # a bad subcommand is rejected before it runs
    ("CLIENT", "GETNAME", "x"),
    ("COMMAND", "COUNT"),
    ("AUTH", "secret"),
    ("AUTH", "user", "secret"),
    ("HELLO", "3", "AUTH", "user", "secret"),
    ("HELLO", "2", "SETNAME", "AUTH"),
    ("SET", "bin", ALL_BYTES),
    ("SET", "q", 'a "quoted"\\ word'),
    ("PING",),
    ("ECHO", "hi"),
    ("MSET", "x", "1", "y", "2", "z", "3", "w", "4"),  # keys on several shards: one line
    ("DEL", "x", "y", "z", "w"),
    ("BLPOP", "empty", "0.01"),
    ("TIME",),
    ("SUBSCRIBE", "ch"),
    ("PING",),
    ("UNSUBSCRIBE",),
    ("RESET",),
    ("QUIT",),
]


@pytest.mark.slow  # waits 50 ms after each of 39 commands, on both servers
def test_a_script_is_shown_as_redis_shows_it(ports) -> None:
    def script(port: int) -> list[str]:
        m = monitor(port)
        c = Conn(port)
        for command in SCRIPT:  # one at a time: SUBSCRIBE changes how replies look
            c.send(command)
            c.reply()
        data, closed = m.read(until=c.shown('"QUIT"'))  # c's last line: the others came before it
        m.close()
        c.close()
        assert not closed
        return lines(data, {c.addr: "c"})

    real, ours = on_both(ports, script)
    assert ours == real
    assert 'c: "SET" "k" "v"' in ours
    assert 'c: "AUTH" "(redacted)" "(redacted)"' in ours
    assert 'c: "HELLO" "3" "AUTH" "(redacted)" "(redacted)"' in ours
    assert 'c: "HELLO" "2" "SETNAME" "AUTH"' in ours
    assert ours.index('c: "SET" "a" "1"') < ours.index('c: "INCR" "a"') < ours.index('c: "EXEC"')
    assert not any("CONFIG" in line or "LIST" in line or "nosuch" in line for line in ours)


@pytest.mark.slow
def test_lines_follow_the_order_commands_ran_in(ports) -> None:
    def script(port: int) -> list[str]:
        m = monitor(port)
        a, b = Conn(port), Conn(port)
        for i in range(20):
            who = a if i % 3 else b
            who.send(("INCR", f"n{i % 5}"))
            who.reply()
        data = m.lines_of({a.addr: "a", b.addr: "b"}, 20)
        for conn in (m, a, b):
            conn.close()
        return lines(data, {a.addr: "a", b.addr: "b"})

    real, ours = on_both(ports, script)
    assert ours == real
    assert len(ours) == 20


@pytest.mark.slow
def test_every_monitor_gets_every_line(ports) -> None:
    def script(port: int) -> list[list[str]]:
        monitors = [monitor(port) for _ in range(3)]
        c = Conn(port)
        c.send(("SET", "k", "1"), ("GET", "k"), ("DEL", "k"))
        c.read()
        seen = [lines(m.lines_of({c.addr: "c"}, 3), {c.addr: "c"}) for m in monitors]
        for conn in (*monitors, c):
            conn.close()
        return seen

    real, ours = on_both(ports, script)
    assert ours == real
    assert ours[0] == ['c: "SET" "k" "1"', 'c: "GET" "k"', 'c: "DEL" "k"']


@pytest.mark.slow
def test_the_monitoring_client_itself(ports) -> None:
    """It may PING and SUBSCRIBE (and sees its own lines), not touch keys;
    a second MONITOR gets no reply at all; RESET ends monitoring."""

    def script(port: int) -> bytes:
        m = monitor(port)
        out = []
        steps = [
            [("PING",)],
            [("GET", "k")],
            [("PUBLISH", "ch", "x")],
            [("MONITOR",), ("PING", "after")],
            [("MULTI",), ("SET", "k", "1"), ("EXEC",)],
            [("SUBSCRIBE", "ch")],
            [("RESET",)],
            [("GET", "k")],
        ]
        for step in steps:
            m.send(*step)
            out.append(anonymize(m.read(want=1)[0], {m.addr: "m"}))  # each step gets a reply or a line
        m.close()
        return b"\n".join(out)

    real, ours = on_both(ports, script)
    assert ours == real
    assert b"Replica can't interact with the keyspace" in ours


def test_the_monitoring_client_and_container_subcommands(ports) -> None:
    """Whether a monitoring client touches keys is its subcommand's flags:
    FUNCTION LOAD and FLUSH are writes, refused; XGROUP HELP and OBJECT
    HELP are not.  Before, shardkv read the containers' rows: it loaded the
    library and refused the HELPs (XGROUP's row says write, OBJECT's
    readonly)."""
    library = "#!lua name=monlib\nredis.register_function('f', function() return 1 end)"

    def script(port: int) -> bytes:
        m = monitor(port)
        out = []
        steps = [
            [("FUNCTION", "LOAD", library)],
            [("FUNCTION", "FLUSH")],
            [("XGROUP", "HELP")],
            [("OBJECT", "HELP")],
            [("FUNCTION", "LIST")],
        ]
        for step in steps:
            m.send(*step)
            out.append(anonymize(m.read(want=1)[0], {m.addr: "m"}))
        m.close()
        redis.Redis(port=port).function_flush()
        return b"\n".join(out)

    real, ours = on_both(ports, script)
    assert ours == real
    assert b"Replica can't interact with the keyspace" in ours and b"XGROUP <subcommand>" in ours


def test_an_exec_refused_before_it_runs_is_shown(ports) -> None:
    """Redis's execCommandAbort feeds the refused EXEC to the monitors (they
    saw MULTI): refused by ACL, for its arity, or at OOM for its queued
    write.  Before, shardkv showed no line for it."""

    def script(port: int) -> list[str]:
        admin = redis.Redis(port=port)
        admin.execute_command("ACL", "SETUSER", "noexec", "on", "nopass", "+@all", "-exec", "~*", "&*")
        m = monitor(port)
        c = Conn(port)
        try:
            for command in (
                ("AUTH", "noexec", "x"),
                ("MULTI",),
                ("PING",),
                ("EXEC",),
                ("AUTH", "default", "x"),  # (no password: any works)
                ("MULTI",),
                ("SET", "k", "v"),
                ("EXEC", "x"),
                ("MULTI",),
                ("SET", "k", "v"),
            ):
                c.send(command)
                c.reply()
            admin.config_set("maxmemory", 1)
            c.send(("EXEC",))
            c.reply()
            admin.config_set("maxmemory", 0)
            c.send(("PING", "after"))
            data, _ = m.read(until=c.shown('"PING" "after"'))
        finally:
            admin.config_set("maxmemory", 0)
            admin.execute_command("ACL", "DELUSER", "noexec")
            for conn in (m, c):
                conn.close()
            admin.close()
        return lines(data, {c.addr: "c"})

    real, ours = on_both(ports, script)
    assert ours == real
    assert ours.count('c: "EXEC"') == 2 and 'c: "EXEC" "x"' in ours


def test_monitor_inside_a_transaction_is_refused(ports) -> None:
    def script(port: int) -> bytes:
        c = Conn(port)
        c.send(("MULTI",), ("MONITOR",), ("PING",), ("EXEC",), ("SET", "k", "1"), ("ECHO", "done"))
        data = c.read(until=b"$4\r\ndone\r\n")[0]  # the replies before ECHO's came before it
        c.close()
        return data

    real, ours = on_both(ports, script)
    assert ours == real
    assert b"MONITOR isn't allowed for DENY BLOCKING client" in ours


def test_quit_ends_the_stream_without_a_line_of_its_own(ports) -> None:
    def script(port: int) -> tuple[bytes, bool]:
        m = monitor(port)
        m.send(("QUIT",))
        return m.read(2, want=1)  # the close ends the read: it needs no more quiet than that

    real, ours = on_both(ports, script)
    assert ours == real == (b"+OK\r\n", True)


@pytest.mark.slow
def test_a_transaction_aborted_by_watch_shows_only_multi_and_exec(ports) -> None:
    def script(port: int) -> list[str]:
        m = monitor(port)
        a, b = Conn(port), Conn(port)
        a.send(("WATCH", "w"))
        a.reply()
        b.send(("SET", "w", "changed"))
        b.reply()
        a.send(("MULTI",), ("SET", "q", "1"), ("INCR", "n"), ("EXEC",))
        assert a.read(until=b"*-1\r\n")[0].endswith(b"*-1\r\n")
        data = m.lines_of({a.addr: "a", b.addr: "b"}, 4)
        for conn in (m, a, b):
            conn.close()
        return lines(data, {a.addr: "a", b.addr: "b"})

    real, ours = on_both(ports, script)
    assert ours == real == ['a: "WATCH" "w"', 'b: "SET" "w" "changed"', 'a: "MULTI"', 'a: "EXEC"']


def test_a_transaction_with_a_bad_subcommand_shows_only_multi_and_exec(ports) -> None:
    """A bad subcommand (unknown, or its wrong arity) is refused as it is
    queued, never shown; the aborted EXEC shows, alone."""

    def script(port: int) -> list[str]:
        m = monitor(port)
        a = Conn(port)
        a.send(("MULTI",), ("SET", "q", "1"), ("CLIENT", "FOOBAR"), ("OBJECT", "ENCODING"), ("EXEC",))
        aborted = b"-EXECABORT Transaction discarded because of previous errors.\r\n"
        assert a.read(until=aborted)[0].endswith(aborted)
        data = m.lines_of({a.addr: "a"}, 2)
        m.close()
        a.close()
        return lines(data, {a.addr: "a"})

    real, ours = on_both(ports, script)
    assert ours == real == ['a: "MULTI"', 'a: "EXEC"']


def test_a_committed_watched_transaction_shows_its_commands(ports) -> None:
    """Where EXEC must check WATCHed keys first, shardkv runs the commands
    on a shard after EXEC was handed out; their lines still come before
    EXEC's, as in Redis (they came after it before)."""

    def script(port: int) -> list[str]:
        m = monitor(port)
        a = Conn(port)
        a.send(("WATCH", "w"), ("MULTI",), ("SET", "q", "1"), ("INCR", "n"), ("EXEC",))
        assert a.read(until=b"*2\r\n+OK\r\n:1\r\n")[0].endswith(b"*2\r\n+OK\r\n:1\r\n")
        data = m.lines_of({a.addr: "a"}, 5)
        m.close()
        a.close()
        return lines(data, {a.addr: "a"})

    real, ours = on_both(ports, script)
    assert ours == real == ['a: "WATCH" "w"', 'a: "MULTI"', 'a: "SET" "q" "1"', 'a: "INCR" "n"', 'a: "EXEC"']


@pytest.mark.parametrize("watch", [False, True])
def test_a_transaction_across_shards_shows_its_commands_before_exec(ports, watch: bool) -> None:
    """Writes on two shards run as one atomic operation, after EXEC was
    handed out; Redis shows the commands' lines before EXEC's, and so does
    shardkv (it showed MULTI, EXEC, SET, INCR before), with a command sent
    after the EXEC's reply after them all."""
    one, two = on_shards(0, 1, prefix="mx")

    def script(port: int) -> list[str]:
        m = monitor(port)
        a, b = Conn(port), Conn(port)
        if watch:
            a.send(("WATCH", one))
            a.reply()
        a.send(("MULTI",), ("SET", one, "1"), ("INCR", two), ("GET", one), ("EXEC",))
        want = b"*3\r\n+OK\r\n:1\r\n$1\r\n1\r\n"
        assert a.read(until=want)[0].endswith(want)
        b.send(("ECHO", "after"))
        b.reply()
        clients = {a.addr: "a", b.addr: "b"}
        data = m.lines_of(clients, 6 + watch)
        for conn in (m, a, b):
            conn.close()
        return lines(data, clients)

    real, ours = on_both(ports, script)
    expected = [f'a: "WATCH" "{one}"'] if watch else []
    expected += [
        'a: "MULTI"',
        f'a: "SET" "{one}" "1"',
        f'a: "INCR" "{two}"',
        f'a: "GET" "{one}"',
        'a: "EXEC"',
    ]
    assert ours == real == [*expected, 'b: "ECHO" "after"']


def test_client_list_flags_a_monitor(ports) -> None:
    def script(port: int) -> list[str]:
        m = monitor(port)
        c = redis.Redis(port=port, protocol=2)
        flags = [
            entry["flags"]
            for entry in c.client_list()
            if entry["addr"] == m.addr.decode() or entry["id"] == str(c.client_id())
        ]
        m.close()
        c.close()
        return sorted(flags)

    real, ours = on_both(ports, script)
    assert ours == real == ["N", "O"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_monitor(ports, protocol: int) -> None:
    """redis-py's Monitor parses the lines into commands and addresses."""

    def script(port: int) -> list[tuple]:
        r = redis.Redis(port=port, protocol=protocol)
        other = redis.Redis(port=port, protocol=protocol)
        other.ping()  # connect first, so the HELLO is not among the lines read below
        seen = []
        with r.monitor() as m:
            other.set("key with space", 'va"lue')
            other.get("key with space")
            while len(seen) < 2:
                info = m.next_command()
                if info["command"].startswith(("SET", "GET")):
                    seen.append((info["db"], info["client_type"], info["command"]))
        r.close()
        other.close()
        return seen

    real, ours = on_both(ports, script)
    assert ours == real
    assert ours[0] == (0, "tcp", 'SET key with space va"lue')


@pytest.mark.parametrize("protocol", [2, 3])
def test_a_redis_py_connection_shows_as_on_redis(ports, protocol: int) -> None:
    """redis-py (5 and later) sends CLIENT SETINFO LIB-NAME and LIB-VER as
    it connects.  Redis 7.0.15 has no CLIENT SETINFO: it rejects it before
    it runs, so a monitor sees only the HELLO (RESP3) and the commands.
    shardkv answers it as Redis 7.2 does, and showed both lines, at any
    number of acceptors."""

    def script(port: int) -> bytes:
        m = monitor(port)
        c = redis.Redis(port=port, protocol=protocol, single_connection_client=True)
        c.set("k", "v")
        addr = b"127.0.0.1:%d" % c.connection._sock.getsockname()[1]
        c.close()
        data = m.lines_of({addr: "c"}, 1 + (protocol == 3))
        m.close()
        return anonymize(data, {addr: "c"})

    real, ours = on_both(ports, script)
    assert ours == real
    assert b"SETINFO" not in ours


LUA_SCRIPT = [
    ("EVAL", "redis.call('SET', KEYS[1], 'x'); return redis.call('GET', KEYS[1])", "1", "k"),
    ("EVAL", "return redis.pcall('nosuch')", "0"),  # rejected before it runs: no lua line
    ("EVAL", "return redis.pcall('INCR', KEYS[1])", "1", "k"),  # runs and fails: shown
    ("EVAL", "return redis.call('PING')", "0"),
    ("EVAL", "return 1", "0"),  # calls nothing: the EVAL line alone
    ("EVAL", "return 1", "5"),  # an error, but past the arity check: shown
    ("EVALSHA", "0000000000000000000000000000000000000000", "0"),  # NOSCRIPT: shown
    ("FCALL", "nosuch", "0"),
    ("SCRIPT", "LOAD", "return redis.call('INCRBY', KEYS[1], ARGV[1])"),
    ("EVALSHA", "8cd00688c05c46bde4a2e60658ef20a2e5c0b248", "1", "{k}n", "5"),
    ("EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "k"),
    (
        "FUNCTION",
        "LOAD",
        "#!lua name=monlib\nredis.register_function('f', function(k) return redis.call('INCR', k[1]) end)",
    ),
    ("FCALL", "f", "1", "{k}m"),
    ("FUNCTION", "DELETE", "monlib"),
    (
        "EVAL",
        "redis.call('SET', KEYS[1], 'a'); redis.call('HSET', KEYS[2], 'f', 'v'); return 1",
        "2",
        "{t}1",
        "{t}2",
    ),
    # across shards: declared keys of two shards, then an undeclared key of
    # another shard after a write (the script runs again there: shown once)
    ("EVAL", "redis.call('INCR', KEYS[1]); return redis.call('INCR', KEYS[2])", "2", "k0", "k2"),
    ("EVAL", "redis.call('INCR', KEYS[1]); return redis.call('INCR', 'k2')", "1", "k0"),
]


@pytest.mark.slow
def test_script_commands_are_shown_as_lua_lines(ports) -> None:
    """A script's calls follow its EVAL (or FCALL) line, as ``[0 lua]``."""

    def script(port: int) -> list[str]:
        m = monitor(port)
        c = Conn(port)
        for command in LUA_SCRIPT:
            c.send(command)
            c.reply()
        c.send(("ECHO", "last"))  # its line comes after every line of the scripts before it
        c.reply()
        data, closed = m.read(until=c.shown('"ECHO" "last"'))
        m.close()
        c.close()
        assert not closed
        return lines(data, {c.addr: "c", b"lua": "lua"})

    real, ours = on_both(ports, script)
    assert ours == real
    at = ours.index(
        'c: "EVAL" "redis.call(\'SET\', KEYS[1], \'x\'); return redis.call(\'GET\', KEYS[1])" "1" "k"'
    )
    assert ours[at + 1 : at + 3] == ['lua: "SET" "k" "x"', 'lua: "GET" "k"']
    assert 'lua: "INCR" "{k}m"' in ours


@pytest.mark.slow
@pytest.mark.parametrize("cached_eval_before", [False, True], ids=["fresh", "after-a-cached-eval"])
def test_lua_lines_of_scripts_in_multi_and_pipelines_come_in_place(ports, cached_eval_before) -> None:
    """Inside MULTI, and pipelined with other commands, a script's ``[0 lua]``
    lines follow its own EVAL line, before the lines of what ran after it
    (the EXEC line included).  Also after an EVAL of a SCRIPT LOADed script
    while nobody monitored (shardkv sends that one as EVALSHA, and it
    expected MONITOR lines of it that never came, so every later script's
    lines went to the script before it)."""

    def script(port: int) -> list[str]:
        if cached_eval_before:
            with redis.Redis(port=port) as r:
                r.script_load("return 7")
                assert r.eval("return 7", 0) == 7
        m = monitor(port)
        c = Conn(port)
        c.send(
            ("MULTI",),
            ("SET", "a", "1"),
            ("EVAL", "redis.call('SET', 'b', 1); return redis.call('GET', 'b')", "0"),
            ("EVAL", "return 1", "0"),
            ("EVAL", "return redis.call('GET', KEYS[1])", "1", "k2"),
            ("GET", "a"),
            ("EXEC",),
            ("EVAL", "return redis.call('INCR', KEYS[1])", "1", "k0"),
            ("GET", "k2"),
            ("EVAL", "return redis.call('INCR', KEYS[1])", "1", "k2"),
            ("SET", "a", "2"),
        )
        data, closed = m.read(until=c.shown('"SET" "a" "2"'))  # c's last line: the others came before it
        m.close()
        c.close()
        assert not closed
        return lines(data, {c.addr: "c", b"lua": "lua"})

    real, ours = on_both(ports, script)
    assert ours == real
    assert ours.index('lua: "GET" "b"') < ours.index('c: "EXEC"')


@pytest.mark.parametrize("watch", [False, True])
@pytest.mark.parametrize("waits_for", [("SCRIPT", "KILL"), ("CLIENT", "UNBLOCK", "999999")])
def test_an_exec_that_waits_for_the_scripts_shows_its_commands_before_exec(ports, waits_for, watch) -> None:
    """An EXEC holding SCRIPT KILL (or CLIENT UNBLOCK) first waits for the
    shards' scripts (transactions._after_scripts), even with none running;
    Redis shows its commands, then EXEC (call() feeds EXEC once it ran),
    with WATCH too (an atomic transaction).  shardkv fed EXEC's line as it
    was read, and the commands' as they were routed, after it."""

    def script(port: int) -> list[str]:
        m = monitor(port)
        a = Conn(port)
        first = [("WATCH", "w")] if watch else []
        a.send(*first, ("MULTI",), ("SET", "q", "1"), waits_for, ("EXEC",), ("PING",))
        assert a.read(until=b"+PONG\r\n")[0].endswith(b"+PONG\r\n")
        shown = len(first) + (5 if waits_for[0] == "SCRIPT" else 4)
        data = m.lines_of({a.addr: "a"}, shown)
        for conn in (m, a):
            conn.close()
        return lines(data, {a.addr: "a"})

    real, ours = on_both(ports, script)
    assert real[-2:] == ['a: "EXEC"', 'a: "PING"']
    assert ours == real


_EXEC_AND_SELECT = {
    "watch": [("SET", "{one}", "1"), ("SET", "{two}", "1"), ("SELECT", "1")],
    "script": [("EVAL", "return redis.call('set', KEYS[1], 1)", "1", "{one}"), ("SELECT", "1")],
    "script-load": [("EVAL", "return 1", "0"), ("SCRIPT", "LOAD", "return 2"), ("SELECT", "1")],
    "aborted": [("SET", "{one}", "1"), ("SET", "{two}", "1"), ("SELECT", "1")],
}


@pytest.mark.parametrize("case", list(_EXEC_AND_SELECT))
def test_an_atomic_exec_with_a_select_shows_exec_in_the_database_it_left(ports, case: str) -> None:
    """An EXEC run as one operation (WATCHed, or with a script run on its
    executor) whose SELECT changes the client's database: Redis's call()
    feeds EXEC's line once it has run, in the database the SELECT left
    (``[1 ...] "EXEC"``), or, aborted by WATCH, in the one it was in.
    shardkv fed it as the operation started, in the old one (``[0 ...]``)."""
    one, two = on_shards(0, 1, prefix="mxdb")
    queued = [tuple(a.format(one=one, two=two) for a in c) for c in _EXEC_AND_SELECT[case]]

    def script(port: int) -> list[tuple[bytes, bytes]]:
        m = RespClient(port, timeout=20)
        a, b = RespClient(port, timeout=20), RespClient(port, timeout=20)
        try:
            assert m.command("MONITOR") == b"OK"
            if case in ("watch", "aborted"):
                a.command("WATCH", one)
            if case == "aborted":
                b.command("SET", one, "changed")
            for c in (("MULTI",), *queued):
                a.command(*c)
            a.command("EXEC")
            a.command("ECHO", "after")
            mine = ("%s:%d" % a.sock.getsockname()[:2]).encode()
            shown = []
            while not shown or shown[-1][1] != b'"ECHO" "after"':
                stamp, _, rest = m.read().partition(b" [")
                where, _, args = rest.partition(b"] ")
                db, _, addr = where.partition(b" ")
                if addr in (b"lua", mine):
                    shown.append((db, args.rstrip(b"\r\n")))
            return shown
        finally:
            for c in (m, a, b):
                c.close()

    real, ours = on_both(ports, script)
    assert real[-2:] == [(b"0" if case == "aborted" else b"1", b'"EXEC"'), (real[-2][0], b'"ECHO" "after"')]
    assert ours == real
