"""MIGRATE between redis-server and shardkv, every way round.

Each test that takes ``source`` and ``target`` runs for the four pairs
(redis-server or shardkv as the source, redis-server or shardkv as the
target) with the same assertions, so the redis-server -> redis-server run
proves what Redis answers and the other three prove shardkv answers the
same, as a source and as a target.  The errors that need no target are
compared with ``compare``.  A fake target (a socket that answers only when
the test says so) shows what Redis cannot: a MIGRATE in flight blocks no
other client of shardkv, its own client's later commands wait for it, and
a key written during the transfer keeps its new value.
"""

from __future__ import annotations

import socket
import threading

import pytest
import redis

from tests.support.rawsocket import both
from tests.support.resp import encode_command, parse_reply
from tests.support.servers import start_redis, start_shardkv

PAIRS = [("redis", "redis"), ("shardkv", "redis"), ("redis", "shardkv"), ("shardkv", "shardkv")]


@pytest.fixture(scope="module")
def targets():
    """A second server of each kind, the targets."""
    started = {"redis": start_redis(), "shardkv": start_shardkv(shards=4)}
    yield {kind: proc.port for kind, proc in started.items()}
    for proc in started.values():
        proc.stop()


@pytest.fixture(params=PAIRS, ids=[f"{s}-to-{t}" for s, t in PAIRS])
def link(request, ports, targets):
    """(source client, target client, target port), both flushed."""
    source_kind, target_kind = request.param
    source = redis.Redis(port=ports[source_kind], protocol=2, socket_timeout=30)
    target = redis.Redis(port=targets[target_kind], protocol=2, socket_timeout=30)
    source.flushall()
    target.flushall()
    yield source, target, targets[target_kind]
    target.config_set("requirepass", "")
    source.close()
    target.close()


def migrate(source: redis.Redis, port: int, *args: object) -> object:
    try:
        return source.execute_command("MIGRATE", "127.0.0.1", port, *args)
    except redis.ResponseError as e:
        return ("error", str(e))


KEYS = [f"key:{i}" for i in range(12)]  # on every shard of 4


def test_moves_keys_values_and_ttls(link):
    source, target, port = link
    source.mset({k: f"v{i}" for i, k in enumerate(KEYS)})
    source.rpush("list", "a", "b", "c")
    source.hset("hash", mapping={"f": "1", "g": "2"})
    source.expire(KEYS[0], 100)
    assert migrate(source, port, "", 0, 5000, "KEYS", *KEYS, "missing", "list", "hash") == b"OK"
    assert source.exists(*KEYS, "list", "hash") == 0
    assert target.mget(KEYS) == [f"v{i}".encode() for i in range(12)]
    assert target.lrange("list", 0, -1) == [b"a", b"b", b"c"]
    assert target.hgetall("hash") == {b"f": b"1", b"g": b"2"}
    assert 90_000 < target.pttl(KEYS[0]) <= 100_000
    assert target.ttl(KEYS[1]) == -1


def test_one_key_into_another_database_and_pipelined_after(link):
    source, target, port = link
    source.set("k", "v")
    pipe = source.pipeline(transaction=False)
    pipe.execute_command("MIGRATE", "127.0.0.1", port, "k", 3, 5000)
    pipe.exists("k")  # runs after MIGRATE, as in Redis
    assert pipe.execute() == [b"OK", 0]
    assert target.exists("k") == 0
    target.select(3)
    assert target.get("k") == b"v"


def test_copy_busykey_and_replace(link):
    source, target, port = link
    source.rpush("list", "a", "b")
    target.set("list", "other")
    busy = ("error", "Target instance replied with error: BUSYKEY Target key name already exists.")
    assert migrate(source, port, "list", 0, 5000, "COPY") == busy
    assert migrate(source, port, "list", 0, 5000, "COPY", "REPLACE") == b"OK"
    assert source.lrange("list", 0, -1) == target.lrange("list", 0, -1) == [b"a", b"b"]
    assert migrate(source, port, "list", 0, 5000) == busy
    assert source.exists("list") == 1
    assert migrate(source, port, "list", 0, 5000, "REPLACE") == b"OK"
    assert source.exists("list") == 0


def test_deletes_only_the_keys_the_target_took(link):
    source, target, port = link
    source.mset({k: "mine" for k in KEYS})
    target.mset({KEYS[2]: "theirs", KEYS[7]: "theirs"})
    reply = migrate(source, port, "", 0, 5000, "KEYS", *KEYS)
    assert reply == ("error", "Target instance replied with error: BUSYKEY Target key name already exists.")
    assert sorted(source.keys()) == sorted([KEYS[2].encode(), KEYS[7].encode()])
    assert target.dbsize() == 12
    assert target.get(KEYS[2]) == b"theirs"


def test_nokey(link):
    source, _, port = link
    assert migrate(source, port, "", 0, 5000, "KEYS", "a", "b", "a") == b"NOKEY"
    assert migrate(source, port, "nothing", 0, 5000) == b"NOKEY"


def test_auth(link):
    source, target, port = link
    target.config_set("requirepass", "secret")
    source.set("a", "1")
    source.set("b", "2")
    assert migrate(source, port, "a", 0, 5000, "AUTH", "secret") == b"OK"
    assert migrate(source, port, "b", 0, 5000, "AUTH2", "default", "wrong") == (
        "error",
        "Target instance replied with error: WRONGPASS invalid username-password pair or user is disabled.",
    )
    assert source.exists("a", "b") == 1
    target.execute_command("AUTH", "secret")
    assert target.get("a") == b"1"


@pytest.mark.parametrize(
    "args",
    [
        ("k", 0, 1000, "COPY", "BOGUS"),
        ("k", 0, 1000, "AUTH"),
        ("k", 0, 1000, "AUTH2", "user"),
        ("k", 0, 1000, "KEYS", "a"),
        ("k", "db", 1000),
        ("k", 0, "soon"),
        ("", 0, 1000, "KEYS"),
        ("k", 0),
    ],
)
def test_argument_errors(compare, args):
    compare.real.set("k", "v")
    compare.ours.set("k", "v")
    compare("MIGRATE", "127.0.0.1", 1, *args)


def test_target_down(compare):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, not listening: connections are refused
    try:
        compare.real.set("k", "v")
        compare.ours.set("k", "v")
        compare("MIGRATE", "127.0.0.1", port, "k", 0, 500)
        compare("MIGRATE", "no-such-host.invalid", port, "k", 0, 500)
        compare("EXISTS", "k")
    finally:
        closed.close()


class FakeTarget:
    """A server that reads commands and answers each ``+OK`` only once
    :meth:`answer` is called (never, for a timeout)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.commands: list[list[bytes]] = []
        self.received = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            buf = b""
            while not any(c[0] == b"RESTORE" for c in self.commands):
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while (parsed := parse_reply(buf)) is not None:
                    command, end = parsed
                    self.commands.append(command)  # type: ignore[arg-type]
                    buf = buf[end:]
            self.received.set()
            self.release.wait(30)
            conn.sendall(b"+OK\r\n" * len(self.commands))
            conn.recv(1)  # until MIGRATE's side closes or the test ends

    def close(self) -> None:
        self.release.set()
        self.listener.close()


@pytest.fixture
def fake():
    target = FakeTarget()
    yield target
    target.close()


def test_timeout(compare, fake):
    compare.real.set("k", "v")
    compare.ours.set("k", "v")
    # One fake target serves one connection: redis-server's, then a new one.
    compare("MIGRATE", "127.0.0.1", fake.port, "k", 0, 200)


def test_other_clients_are_served_during_the_transfer(ports, fake):
    port = ports["shardkv"]
    source = redis.Redis(port=port, protocol=2, socket_timeout=30)
    other = redis.Redis(port=port, protocol=2, socket_timeout=30)
    source.flushall()
    source.mset({"moved": "old", "kept": "old"})
    replies: list = []
    pipe = source.pipeline(transaction=False)
    pipe.execute_command("MIGRATE", "127.0.0.1", fake.port, "", 0, 30000, "KEYS", "moved", "kept")
    pipe.exists("moved", "kept")
    thread = threading.Thread(target=lambda: replies.append(pipe.execute()))
    thread.start()
    assert fake.received.wait(30)
    # The target has not answered: MIGRATE is in flight, and shardkv serves
    # everyone else (Redis would not answer before the target does).
    assert other.ping()
    other.set("kept", "new")  # written during the transfer: keeps its value
    assert other.get("moved") == b"old"
    assert not replies  # the client's EXISTS waits for its MIGRATE
    fake.release.set()
    thread.join(30)
    assert replies == [[b"OK", 1]]
    assert other.get("kept") == b"new"
    assert other.exists("moved") == 0
    restores = [c for c in fake.commands if c[0] == b"RESTORE"]
    assert [c[1] for c in restores] == [b"moved", b"kept"]
    source.close()
    other.close()


def test_command_info_docs_and_getkeys(ports):
    data = b"".join(
        encode_command(*args)
        for args in [
            ("COMMAND", "INFO", "MIGRATE"),
            ("COMMAND", "GETKEYS", "MIGRATE", "h", 1, "k", 0, 5),
            ("COMMAND", "GETKEYS", "MIGRATE", "h", 1, "", 0, 5, "COPY", "AUTH2", "u", "p", "KEYS", "a", "b"),
            ("COMMAND", "GETKEYS", "MIGRATE", "h", 1, "k", 0, 5, "KEYS", "a", "b"),
            ("COMMAND", "GETKEYS", "MIGRATE", "h", 1, "", 0, 5, "AUTH", "KEYS", "KEYS", "a"),
            ("COMMAND", "GETKEYS", "MIGRATE", "h", 1, "", 0, 5, "KEYS"),
            ("COMMAND", "GETKEYS", "MIGRATE", "h", 1, "", 0, 5, "AUTH", "KEYS"),
            ("COMMAND", "GETKEYS", "MIGRATE", "keys", 1, "", 0, 5),
            ("COMMAND", "GETKEYS", "XREAD", "COUNT", 1, "STREAMS", "a"),
            ("COMMAND", "GETKEYS", "XREAD", "COUNT", 1, "FOO", "a", "b"),
            ("COMMAND", "GETKEYSANDFLAGS", "MIGRATE", "h", 1, "", 0, 5, "KEYS", "a", "b"),
            ("COMMAND", "GETKEYSANDFLAGS", "MIGRATE", "h", 1, "k", 0, 5),
        ]
    )
    (real, _), (ours, _) = both(ports, data)
    assert ours == real
