"""Authentication and exposure: requirepass, AUTH, HELLO AUTH, the limits
for unauthenticated clients, protected mode, and what is never trusted.

Every exchange runs on redis-server and on shardkv and must give the same
bytes (see tests/support/rawsocket.py).
"""

from __future__ import annotations

import concurrent.futures
import hmac
import re
import socket
from pathlib import Path

import psutil
import pytest
import redis

from shardkv.acceptor import security
from shardkv.protocol import errors
from tests.support.rawsocket import REPLY_WAIT, both, exchange, read_through, read_until_quiet
from tests.support.servers import start_redis, start_shardkv

PASSWORD = "s3cret pass"  # with a space: a password is any bytes


@pytest.fixture(scope="module")
def locked():
    """redis-server and shardkv, both with requirepass (set once they
    answer PING, which is how tests/support/servers.py knows they are up)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        real = pool.submit(start_redis)
        ours = pool.submit(start_shardkv, shards=2)
        servers = {"redis": real.result(), "shardkv": ours.result()}
    for proc in servers.values():
        with redis.Redis(port=proc.port) as c:
            c.config_set("requirepass", PASSWORD)
    yield {name: proc.port for name, proc in servers.items()}
    for proc in servers.values():
        proc.stop()


def on_both(ports: dict, data: bytes, idle: float = 0.25, want: int = 1) -> dict:
    """:func:`exchange` with each server at once (``want`` bytes must come)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(exchange, port, data, idle, want=want) for name, port in ports.items()}
        return {name: f.result() for name, f in futures.items()}


def same(ports: dict, data: bytes, idle: float = 0.25, want: int = 1) -> tuple[bytes, bool]:
    results = on_both(ports, data, idle, want)
    assert results["shardkv"] == results["redis"], data
    return results["redis"]


# A command neither server knows: even before AUTH its reply is this error,
# which names it, so it cannot be mistaken for another reply.
BARRIER = b"NO-SUCH-COMMAND-BARRIER\r\n"
BARRIER_REPLY = b"-ERR unknown command 'NO-SUCH-COMMAND-BARRIER', with args beginning with: \r\n"


def replies_then_open(port: int, data: bytes, want: int) -> tuple[bytes, bool]:
    """Send ``data``; once ``want`` bytes came, send :data:`BARRIER`; return
    what came before its reply, and whether the server closed the connection
    instead of answering it.  A server answers in order, so anything more it
    sent for ``data`` comes before that reply: this sees what the quiet wait
    of :func:`exchange` would, without the wait."""
    with socket.create_connection(("127.0.0.1", port), timeout=REPLY_WAIT) as s:
        s.sendall(data)
        out = b""
        sent = False
        try:
            while not (sent and out.endswith(BARRIER_REPLY)):
                if not sent and len(out) >= want:
                    s.sendall(BARRIER)
                    sent = True
                    continue
                chunk = s.recv(1 << 16)
                if not chunk:
                    return out, True
                out += chunk
        except (BrokenPipeError, ConnectionResetError):
            return out, True
        return out[: -len(BARRIER_REPLY)], False


def same_then_open(ports: dict, data: bytes, want: int) -> tuple[bytes, bool]:
    """:func:`replies_then_open` with each server at once; the same on both."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(replies_then_open, port, data, want) for name, port in ports.items()}
        results = {name: f.result() for name, f in futures.items()}
    assert results["shardkv"] == results["redis"], data
    return results["redis"]


def cmd(*args: bytes | str) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


NOAUTH = b"-NOAUTH Authentication required.\r\n"
WRONGPASS = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"


# -- requirepass -------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"GET a\r\n", NOAUTH),
        (b"PING\r\n", NOAUTH),
        (cmd("SET", "a", "1"), NOAUTH),
        (b"NOPE x\r\n", b"-ERR unknown command 'NOPE', with args beginning with: 'x' \r\n"),
        (b"GET\r\n", b"-ERR wrong number of arguments for 'get' command\r\n"),
        (cmd("AUTH", "wrong"), WRONGPASS),
        (cmd("AUTH", "default", "wrong"), WRONGPASS),
        (cmd("AUTH", "bob", PASSWORD), WRONGPASS),
        (cmd("AUTH", "a", "b", "c"), b"-ERR syntax error\r\n"),
        (cmd("AUTH", PASSWORD) + b"GET a\r\n", b"+OK\r\n$-1\r\n"),
        (cmd("AUTH", "default", PASSWORD) + b"GET a\r\n", b"+OK\r\n$-1\r\n"),
        (cmd("AUTH", PASSWORD[:-1]) + b"GET a\r\n", WRONGPASS + NOAUTH),
        (cmd("AUTH", PASSWORD + "x") + b"GET a\r\n", WRONGPASS + NOAUTH),
        # A failed AUTH does not log an authenticated client out.
        (cmd("AUTH", PASSWORD) + cmd("AUTH", "wrong") + b"GET a\r\n", b"+OK\r\n" + WRONGPASS + b"$-1\r\n"),
        # RESET logs the client out again.
        (cmd("AUTH", PASSWORD) + b"RESET\r\nGET a\r\n", b"+OK\r\n+RESET\r\n" + NOAUTH),
        (b"HELLO 3\r\n", b"-" + errors.NOAUTH_HELLO.encode() + b"\r\n"),
        (b"HELLO\r\n", b"-" + errors.NOAUTH_HELLO.encode() + b"\r\n"),
        (cmd("HELLO", "3", "AUTH", "default", "wrong"), WRONGPASS),
        (cmd("HELLO", "3", "AUTH", "default"), b"-ERR Syntax error in HELLO option 'AUTH'\r\n"),
        (cmd("HELLO", "4", "AUTH", "default", PASSWORD), b"-NOPROTO unsupported protocol version\r\n"),
    ],
    ids=lambda v: repr(v[:30]),
)
def test_requirepass_replies(locked, data, expected):
    assert same_then_open(locked, data, want=len(expected)) == (expected, False)


def test_quit_is_allowed_before_auth(locked):
    assert same(locked, b"QUIT\r\n") == (b"+OK\r\n", True)


def test_hello_auth_authenticates(locked):
    for port in locked.values():
        c = redis.Redis(port=port, protocol=3, password=PASSWORD)  # sends HELLO 3 AUTH default ...
        assert c.set("k", "v") is True
        assert c.get("k") == b"v"
        c.close()
        c = redis.Redis(port=port, protocol=2, password=PASSWORD)  # sends AUTH
        assert c.get("k") == b"v"
        c.close()


# -- the parser's limits before AUTH ----------------------------------------------------


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"*11\r\n", (b"-ERR Protocol error: unauthenticated multibulk length\r\n", True)),
        (b"*1\r\n$16385\r\n", (b"-ERR Protocol error: unauthenticated bulk length\r\n", True)),
        (b"*10\r\n$16384\r\n", (b"", False)),  # at the limits: it waits for the rest
        (cmd("ECHO", "x" * 16384), (NOAUTH, False)),
        (cmd("MSET", *["x"] * 9), (NOAUTH, False)),
        # AUTH lifts the limits for the very next command, in the same packet.
        (
            cmd("AUTH", PASSWORD) + cmd("ECHO", "y" * 20000),
            (b"+OK\r\n$20000\r\n" + b"y" * 20000 + b"\r\n", False),
        ),
        (cmd("AUTH", PASSWORD) + cmd("MSET", *["k", "v"] * 10), (b"+OK\r\n+OK\r\n", False)),
        (b"PING\r\n*11\r\n", (NOAUTH + b"-ERR Protocol error: unauthenticated multibulk length\r\n", True)),
        (
            cmd("AUTH", "wrong") + b"*11\r\n",
            (WRONGPASS + b"-ERR Protocol error: unauthenticated multibulk length\r\n", True),
        ),
    ],
    ids=lambda v: repr(v[:30]) if isinstance(v, bytes) else "",
)
def test_unauthenticated_limits(locked, data, expected):
    assert same(locked, data, want=len(expected[0])) == expected


# -- changing the password at run time --------------------------------------------------


def test_config_set_requirepass(locked):
    expected = [
        b"+OK\r\n+OK\r\n",
        WRONGPASS + NOAUTH,
        b"+OK\r\n$-1\r\n",
        NOAUTH,
        b"+OK\r\n",
        b"$-1\r\n",
        b"$-1\r\n",
        b"+OK\r\n",
    ]

    def run(port):
        want = iter(len(e) for e in expected)  # each reply must come whole, however slowly
        admin = socket.create_connection(("127.0.0.1", port))
        admin.sendall(cmd("AUTH", PASSWORD) + cmd("CONFIG", "SET", "requirepass", "newpass"))
        out = [read_until_quiet(admin, 0.3, want=next(want))]
        out.append(
            exchange(port, cmd("AUTH", PASSWORD) + b"GET a\r\n", 0.3, want=next(want))
        )  # the old one is gone
        out.append(exchange(port, cmd("AUTH", "newpass") + b"GET a\r\n", 0.3, want=next(want)))
        waiting = socket.create_connection(("127.0.0.1", port))
        waiting.sendall(b"GET a\r\n")
        out.append(read_until_quiet(waiting, 0.3, want=next(want)))
        # An empty password lets everybody in, even a client that never logged in.
        admin.sendall(cmd("CONFIG", "SET", "requirepass", ""))
        out.append(read_until_quiet(admin, 0.3, want=next(want)))
        waiting.sendall(b"GET a\r\n")
        out.append(read_until_quiet(waiting, 0.3, want=next(want)))
        out.append(exchange(port, b"GET a\r\n", 0.3, want=next(want)))
        admin.sendall(cmd("CONFIG", "SET", "requirepass", PASSWORD))
        out.append(read_until_quiet(admin, 0.3, want=next(want)))
        admin.close()
        waiting.close()
        return out

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(run, port) for name, port in locked.items()}
        results = {name: f.result() for name, f in futures.items()}
    assert results["shardkv"] == results["redis"]
    assert [r[0] for r in results["redis"]] == expected


@pytest.mark.slow
def test_auth_without_a_password(ports):
    for data, expected in [
        (
            cmd("AUTH", "x"),
            b"-ERR AUTH <password> called without any password configured for the default user. "
            b"Are you sure your configuration is correct?\r\n",
        ),
        (cmd("AUTH", "default", "anything"), b"+OK\r\n"),
        (cmd("AUTH", "bob", "x"), WRONGPASS),
    ]:
        real, ours = both(ports, data, 0.3)
        assert ours == real == (expected, False)
    # HELLO's reply holds the client id and the version (shardkv's HELLO
    # reports 7.4.0 for client-side caching; see the README): shorter than
    # Redis's, it is read through an ECHO's reply behind it, not until quiet.
    end = cmd("ECHO", "end")
    replies = {}
    for name in ("redis", "shardkv"):
        with socket.create_connection(("127.0.0.1", ports[name]), timeout=10) as s:
            s.sendall(cmd("HELLO", "2", "AUTH", "default", "anything") + end)
            out, closed = read_through(s, b"$3\r\nend\r\n")
        assert out.endswith(b"$3\r\nend\r\n") and not closed, (name, out)
        replies[name] = re.sub(
            rb"\$\d+\r\n\d+\.\d+\.\d+\r\n", b"VERSION", re.sub(rb":\d+\r\n", b":ID\r\n", out)
        )
    assert replies["shardkv"] == replies["redis"]
    assert replies["redis"].startswith(b"*14\r\n")  # HELLO's map of 7 fields, in RESP2


# -- passwords are compared in constant time ---------------------------------------------


def test_password_compare_is_constant_time(monkeypatch):
    calls = []
    compare = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return compare(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert security.password_matches(b"secret", b"secret")
    assert not security.password_matches(b"secre", b"secret")
    assert not security.password_matches(b"secret!" * 100, b"secret")
    # Digests of equal length: the time depends on neither password's value
    # nor its length.
    assert calls == [(32, 32)] * 3


# -- protected mode ---------------------------------------------------------------------


def test_protected_mode_decision():
    on = {"protected-mode": True, "requirepass": ""}
    assert security.protected_mode_refuses(on, ("192.0.2.7", 5000))
    assert security.protected_mode_refuses(on, ("10.1.2.3", 5000))
    assert security.protected_mode_refuses(on, ("2001:db8::1", 5000, 0, 0))
    assert security.protected_mode_refuses(on, ("::ffff:127.0.0.1", 5000, 0, 0))  # as Redis: not "127."
    assert not security.protected_mode_refuses(on, ("127.0.0.1", 5000))
    assert not security.protected_mode_refuses(on, ("127.8.9.10", 5000))
    assert not security.protected_mode_refuses(on, ("::1", 5000, 0, 0))
    assert not security.protected_mode_refuses(on, "")  # a Unix socket
    assert not security.protected_mode_refuses({**on, "requirepass": "x"}, ("192.0.2.7", 5000))
    assert not security.protected_mode_refuses({**on, "protected-mode": False}, ("192.0.2.7", 5000))


def external_address() -> str | None:
    """An address of this machine other than loopback (eth0's, say)."""
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return a.address
    return None


@pytest.fixture(scope="module")
def exposed():
    """Both servers bound to every interface, no password, protected mode on."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        real = pool.submit(start_redis, "--bind", "0.0.0.0")
        ours = pool.submit(start_shardkv, "--bind", "0.0.0.0", shards=2)
        servers = {"redis": real.result(), "shardkv": ours.result()}
    yield {name: proc.port for name, proc in servers.items()}
    for proc in servers.values():
        proc.stop()


DENIED = b"-" + errors.PROTECTED_MODE.encode() + b"\r\n"


@pytest.mark.slow
def test_protected_mode_refuses_other_interfaces(exposed):
    host = external_address()
    assert host is not None, "this test needs an address besides loopback"
    results = {}
    for name, port in exposed.items():
        out = [exchange(port, b"", 0.5, host=host), exchange(port, b"PING\r\n", 0.5, host=host)]
        out.append(exchange(port, b"PING\r\n", 0.3))  # loopback is fine
        with redis.Redis(port=port) as c:
            c.config_set("protected-mode", "no")
            out.append(exchange(port, b"PING\r\n", 0.3, host=host))
            c.config_set("protected-mode", "yes")
            c.config_set("requirepass", "pw")  # a password also lets them in
            try:
                out.append(exchange(port, b"PING\r\n", 0.3, host=host))
            finally:
                c.execute_command("AUTH", "pw")
                c.config_set("requirepass", "")
        results[name] = out
    assert results["shardkv"] == results["redis"]
    assert results["redis"] == [
        (DENIED, True),
        (DENIED, True),
        (b"+PONG\r\n", False),
        (b"+PONG\r\n", False),
        (NOAUTH, False),
    ]


def test_default_bind_is_loopback():
    from shardkv.runtime import config

    assert config.SETTINGS["bind"].default == "127.0.0.1"
    assert config.SETTINGS["protected-mode"].default is True


# -- nothing a client sends is trusted ---------------------------------------------------

SHARDKV = Path(__file__).resolve().parents[2] / "shardkv"
# marshal reads only what a shardkv process wrote itself: pipe frames and
# files on the server's disk (worker/persistence/loading.py replays the AOF's
# cross-shard prepare records, worker/commands/persistence.py its __state
# records), and a stream's packed entries
# (worker/stream.py marshals each entry's fields itself and reads back only
# those bytes), and the slow log's shared file (runtime/slowlogfile.py: a
# memfd the supervisor makes and hands only to its own acceptors and workers,
# which write every record of it).
MARSHAL_ALLOWED = {
    "protocol/wire.py",
    "runtime/slowlogfile.py",
    "worker/persistence/snapshot.py",
    "worker/persistence/loading.py",
    "worker/commands/persistence.py",
    "worker/stream.py",
}


def test_no_client_bytes_are_unpickled_or_evaluated():
    for path in SHARDKV.rglob("*.py"):
        text = path.read_text()
        name = path.relative_to(SHARDKV).as_posix()
        assert not re.search(r"\b(pickle|cPickle|shelve|dill|yaml)\b", text), name
        # Python's eval/exec; a method of that name (a Lua script's) is no call of them.
        assert not re.search(r"(?<![\w.])(?<!def )(eval|exec)\s*\(", text), name
        assert "literal_eval" not in text, name
        if "marshal.loads" in text:
            assert name in MARSHAL_ALLOWED, name


def test_internal_commands_are_unreachable(ports):
    """The workers' ``__`` commands (``__state`` unmarshals its argument) are
    not in the command table, so no client can send them."""
    data = b"".join(
        cmd(name, "k", "\x00payload") for name in ["__state", "__config", "__info", "__park", "__STATE"]
    )
    real, ours = both(ports, data, 0.3)
    assert ours == real
    assert real[0].count(b"-ERR unknown command") == 5
