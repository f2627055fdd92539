"""Real clients against both servers: redis-cli, redis-py's pipelines,
SCAN iterators, asyncio client and connection pools.

redis-cli runs as a subprocess (Debian's, at /usr/bin/redis-cli); its
interactive mode runs on a pseudo-terminal, where it shows the hints it
builds from COMMAND DOCS.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import select
import shutil
import struct
import subprocess
import termios
import threading
import time

import pytest
import redis
import redis.asyncio

from tests.support.servers import popen_dying_with_us

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


def cli(port: int, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [REDIS_CLI, "-p", str(port), *args], input=stdin, capture_output=True, timeout=60, check=False
    )


def port_of(r: redis.Redis) -> int:
    return r.connection_pool.connection_kwargs["port"]


# -- redis-cli ----------------------------------------------------------------


def test_cli_commands(r):
    port = port_of(r)
    assert cli(port, "SET", "k", "hello world").stdout == b"OK\n"
    assert cli(port, "GET", "k").stdout == b"hello world\n"
    assert cli(port, "--raw", "INCR", "n").stdout == b"1\n"
    assert cli(port, "INCR", "k").stdout.startswith(b"ERR value is not an integer")
    assert cli(port, "-3", "HELLO", "3").returncode == 0
    assert cli(port, "--no-raw", "MGET", "k", "nope").stdout == b'1) "hello world"\n2) (nil)\n'


def test_cli_scan(r):
    keys = {f"user:{i}" for i in range(250)} | {f"item:{i}" for i in range(50)}
    r.mset({k: "1" for k in keys})
    port = port_of(r)
    out = cli(port, "--scan").stdout.decode().split()
    assert sorted(out) == sorted(keys)
    out = cli(port, "--scan", "--pattern", "item:*").stdout.decode().split()
    assert sorted(out) == sorted(k for k in keys if k.startswith("item:"))
    out = cli(port, "--scan", "--pattern", "user:1?").stdout.decode().split()
    assert sorted(out) == sorted(f"user:{i}" for i in range(10, 20))


def test_cli_pipe_mass_insertion(r):
    """``redis-cli --pipe`` sends everything, then an ECHO with a random
    20-byte marker, and waits for that marker to come back."""
    parts = []
    for i in range(2000):
        key = f"key{i}"
        parts.append(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n$1\r\n{i % 10}\r\n")
    parts.append("*2\r\n$4\r\nINCR\r\n$4\r\nkey0\r\n")
    done = cli(port_of(r), "--pipe", stdin="".join(parts).encode())
    assert done.returncode == 0, done.stderr
    assert b"errors: 0, replies: 2001" in done.stdout
    assert r.dbsize() == 2000
    assert r.get("key0") == b"1"
    assert r.get("key1999") == b"9"


def test_cli_pipe_inline_and_errors(r):
    done = cli(port_of(r), "--pipe", stdin=b"SET a 1\r\nSET b 2\r\nINCR a\r\nGET b\r\nINCR b x\r\n")
    assert b"errors: 1, replies: 5" in done.stdout
    assert r.mget("a", "b") == [b"2", b"2"]


class Terminal:
    """redis-cli in interactive mode on a pseudo-terminal."""

    def __init__(self, port: int) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 250, 0, 0))
        self.proc = popen_dying_with_us(
            [REDIS_CLI, "-p", str(port)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
            env=dict(os.environ, TERM="xterm", HOME=os.environ.get("TMPDIR", "/tmp")),
        )
        os.close(slave)

    def read_until(self, wanted: bytes, timeout: float = 10.0) -> bytes:
        out = b""
        deadline = time.monotonic() + timeout
        while wanted not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    out += os.read(self.master, 65536)
                except OSError:
                    break
        return out

    def type(self, text: bytes) -> None:
        os.write(self.master, text)

    def close(self) -> None:
        try:
            self.type(b"\x15quit\r")
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@pytest.mark.parametrize(
    "typed,hint",
    [
        (b"SET k ", b"value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|"),
        (b"ZADD z ", b"[NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]"),
        (b"GETEX k ", b"[EX seconds|PX milliseconds|EXAT unix-time-seconds|"),
        (b"HSET h ", b"field value [field value ...]"),
        (b"CLIENT KILL ", b"ip:port|[ID client-id]|[TYPE NORMAL|MASTER|SLAVE|REPLICA|PUBSUB]"),
    ],
)
def test_cli_interactive_hints(r, typed, hint):
    """redis-cli 7 builds its hints from COMMAND DOCS; with shardkv's docs
    it shows the same hints as with Redis."""
    term = Terminal(port_of(r))
    try:
        assert term.read_until(b"> ").endswith(b"> ")
        term.type(typed)
        screen = term.read_until(hint)
        assert hint in screen, screen[-400:]
    finally:
        term.close()


def test_cli_interactive_help(r):
    term = Terminal(port_of(r))
    try:
        term.read_until(b"> ")
        term.type(b"HELP GETRANGE\r")
        screen = term.read_until(b"string\r")
        assert b"GETRANGE\x1b[0m \x1b[90mkey start end" in screen
        assert b"Get a substring of the string stored at a key" in screen
    finally:
        term.close()


# -- redis-py -----------------------------------------------------------------


def test_pipeline_without_transaction(r):
    pipe = r.pipeline(transaction=False)
    for i in range(200):
        pipe.set(f"k{i}", i)
        pipe.incr(f"k{i}")
    pipe.mget([f"k{i}" for i in range(0, 200, 50)])
    pipe.get("nope")
    pipe.execute_command("INCRBYFLOAT", "f", "0.1")
    pipe.incr("k0", 1)
    results = pipe.execute(raise_on_error=False)
    assert results[:4] == [True, 1, True, 2]
    assert results[400] == [b"1", b"51", b"101", b"151"]
    assert results[401] is None
    assert results[402] in (b"0.1", 0.1)
    assert results[403] == 2
    pipe = r.pipeline(transaction=False)
    pipe.hset("h", "f", "v")
    pipe.incr("h")  # an error in the middle
    pipe.get("k5")
    results = pipe.execute(raise_on_error=False)
    assert results[0] == 1 and isinstance(results[1], redis.ResponseError) and results[2] == b"6"


def test_scan_iter(r):
    r.mset({f"s:{i}": i for i in range(500)})
    r.hset("hash", mapping={f"f{i}": i for i in range(300)})
    assert sorted(r.scan_iter(match="s:*", count=25)) == sorted(f"s:{i}".encode() for i in range(500))
    assert list(r.scan_iter(_type="HASH")) == [b"hash"]
    assert len(dict(r.hscan_iter("hash"))) == 300


def test_asyncio_client(server):
    async def main() -> list:
        pool = redis.asyncio.BlockingConnectionPool(port=server, max_connections=16)
        client = redis.asyncio.Redis(connection_pool=pool)
        try:
            await client.flushall()
            await asyncio.gather(*(client.set(f"a{i}", i) for i in range(300)))
            values = await asyncio.gather(*(client.incr(f"a{i}") for i in range(300)))
            async with client.pipeline(transaction=False) as pipe:
                for i in range(0, 300, 30):
                    pipe.get(f"a{i}")
                got = await pipe.execute()
            keys = [k async for k in client.scan_iter(match="a1*")]
            return [values, got, sorted(keys)]
        finally:
            await client.aclose()

    values, got, keys = asyncio.run(main())
    assert values == [i + 1 for i in range(300)]
    assert got == [b"%d" % (i + 1) for i in range(0, 300, 30)]
    assert keys == sorted(f"a{i}".encode() for i in range(300) if str(i).startswith("1"))


def test_connection_pool_threads(server):
    pool = redis.ConnectionPool(port=server, max_connections=8)
    client = redis.Redis(connection_pool=pool)
    client.flushall()
    errors: list = []

    def work(n: int) -> None:
        try:
            for i in range(100):
                client.incr("counter")
                client.set(f"t{n}:{i}", i)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert client.get("counter") == b"800"
    assert client.dbsize() == 801
    pool.disconnect()


def test_blocking_pool_and_client_names(server):
    pool = redis.BlockingConnectionPool(port=server, max_connections=2, timeout=10, client_name="pooled")
    client = redis.Redis(connection_pool=pool)
    assert client.client_getname() in (b"pooled", "pooled")
    names = [c for c in client.client_list() if c.get("name") == "pooled"]
    assert names
    pool.disconnect()


def test_client_kill_frees_a_client_that_reads_nothing(r):
    """CLIENT KILL of a client whose replies fill its socket (it reads
    nothing): Redis discards its output and frees it at once; shardkv kept
    it listed, and counted, until the peer read or closed."""
    import socket

    port = port_of(r)
    r.set("big", b"x" * 1_000_000)
    victim = socket.create_connection(("127.0.0.1", port))
    try:
        victim.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        victim.sendall(
            b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$4\r\nslow\r\n"
            + b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 20
        )
        deadline = time.monotonic() + 10
        while not (listed := [c for c in r.client_list() if c["name"] == "slow"]):
            assert time.monotonic() < deadline, "the client never showed"
            time.sleep(0.05)
        assert r.client_kill_filter(_id=listed[0]["id"]) == 1
        deadline = time.monotonic() + 10
        while [c for c in r.client_list() if c["name"] == "slow"]:
            assert time.monotonic() < deadline, "the killed client is still listed"
            time.sleep(0.05)
    finally:
        victim.close()


def test_client_kill_maxage_is_a_syntax_error(compare):
    """Redis 7.0 has no MAXAGE filter (7.4 added it): a syntax error
    whatever its value, where it comes among the filters."""
    for value in ("-1", "0", "5", "999999999", "abc"):
        compare("CLIENT", "KILL", "MAXAGE", value)
        compare("CLIENT", "KILL", "ID", "999999", "MAXAGE", value)
        compare("CLIENT", "KILL", "maxage", value, "ID", "0")
    compare("CLIENT", "KILL", "ID", "999999", "SKIPME", "yes")
