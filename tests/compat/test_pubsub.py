"""Pub/Sub, compared with redis-server: raw RESP sessions, redis-py's PubSub,
redis-cli, ordering, and the output buffer limit of slow subscribers."""

from __future__ import annotations

import select
import shutil
import socket
import subprocess
import threading
import time

import pytest
import redis

from tests.compat.test_transactions import run_script
from tests.support.rawsocket import read_until_quiet
from tests.support.resp import RespClient, encode_command
from tests.support.servers import popen_dying_with_us


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def same(request, ports):
    """Runs a raw script on redis-server and on shardkv, and asserts equal replies."""
    servers = [ports["redis"], ports["shardkv"]]

    def check(script: list) -> list[bytes]:
        for port in servers:
            c = redis.Redis(port=port)
            c.flushall()
            c.close()
        expected, got = (run_script(port, script, request.param == 3) for port in servers)
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            assert g == e, f"reply {i} to {script!r}: redis {e!r}, shardkv {g!r}"
        return got

    return check


def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def numsub(port: int, channel: str) -> int:
    c = redis.Redis(port=port)
    try:
        return c.execute_command("PUBSUB", "NUMSUB", channel)[1]
    finally:
        c.close()


# -- subscribed mode -------------------------------------------------------------


def test_subscribe_and_unsubscribe(same):
    same(
        [
            (2, "SUBSCRIBE a b"),
            "SUBSCRIBE a",
            (2, "PSUBSCRIBE p* q?"),
            "PING",
            "PING hello",
            "UNSUBSCRIBE b",
            "PUNSUBSCRIBE q?",
            "UNSUBSCRIBE nope",
            "UNSUBSCRIBE a",
            "PING",
            "PUNSUBSCRIBE",
            "PING",
            "UNSUBSCRIBE",
            "PUNSUBSCRIBE",
            "SET x 1",
        ]
    )


def test_only_some_commands_while_subscribed(same):
    # RESP2 refuses the rest with Redis's error; RESP3 allows everything.
    same(
        [
            "SUBSCRIBE a",
            "SET x 1",
            "GET x",
            "MULTI",
            "ECHO hi",
            "CONFIG GET x",
            "PUBSUB NUMPAT",
            "PUBLISH b m",
        ]
    )
    same(["PSUBSCRIBE a*", "CLIENT GETNAME", "DEL x", "PING", "QUIT"])
    same(["SUBSCRIBE a", "RESET", "PING", "SET x 1", "SUBSCRIBE a", "UNSUBSCRIBE"])


def test_wrong_arity_and_subcommands(compare):
    compare("SUBSCRIBE")
    compare("PSUBSCRIBE")
    compare("PUBLISH", "ch")
    compare("PUBLISH", "ch", "m")
    compare("PUBSUB")
    compare("PUBSUB", "FOO")
    compare("PUBSUB", "CHANNELS")
    compare("PUBSUB", "CHANNELS", "a", "b")
    compare("PUBSUB", "NUMPAT", "x")
    compare("PUBSUB", "NUMSUB")
    compare("PUBSUB", "NUMSUB", "a", "b")
    compare("PUBSUB", "SHARDCHANNELS")
    compare("PUBSUB", "SHARDNUMSUB", "a")
    compare("PUBSUB", "HELP")
    compare("PUBSUB", "HELP", "x")


def test_pubsub_introspection(server):
    subs = [RespClient(server), RespClient(server), RespClient(server)]
    try:
        subs[0].send("SUBSCRIBE", "news", "sport")
        subs[1].send("SUBSCRIBE", "news")
        subs[2].send("PSUBSCRIBE", "n*", "s*", "n*")
        for s, n in zip(subs, (2, 1, 3), strict=True):
            for _ in range(n):
                s.read()
        c = redis.Redis(port=server)
        assert sorted(c.pubsub_channels()) == [b"news", b"sport"]
        assert c.pubsub_channels("n*") == [b"news"]
        assert c.pubsub_numsub("news", "sport", "nope") == [(b"news", 2), (b"sport", 1), (b"nope", 0)]
        assert c.pubsub_numpat() == 2
        assert c.publish("news", "hi") == 3  # two channel subscribers, one pattern
        assert c.publish("sport", "go") == 2
        assert c.publish("nothing", "x") == 1
        assert subs[0].read() == b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        assert subs[1].read() == b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        assert subs[2].read() == b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        subs[1].close()
        wait_for(lambda: c.pubsub_numsub("news") == [(b"news", 1)])
        assert c.publish("news", "again") == 2
        assert subs[0].read().endswith(b"$5\r\nsport\r\n$2\r\ngo\r\n")
        assert subs[0].read().endswith(b"$4\r\nnews\r\n$5\r\nagain\r\n")
        assert subs[2].read() == b"*4\r\n$8\r\npmessage\r\n$2\r\ns*\r\n$5\r\nsport\r\n$2\r\ngo\r\n"
        assert subs[2].read() == b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$7\r\nnothing\r\n$1\r\nx\r\n"
        c.close()
    finally:
        for s in subs:
            s.close()


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_message_format(server, resp3):
    sub = RespClient(server, protocol=3 if resp3 else 2)
    kind = b">" if resp3 else b"*"
    try:
        assert sub.call("SUBSCRIBE", "ch") == kind + b"3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        assert sub.call("PSUBSCRIBE", "c?") == kind + b"3\r\n$10\r\npsubscribe\r\n$2\r\nc?\r\n:2\r\n"
        c = redis.Redis(port=server)
        assert c.publish("ch", b"bin\x00ary") == 2
        assert sub.read() == kind + b"3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$7\r\nbin\x00ary\r\n"
        assert sub.read() == kind + b"4\r\n$8\r\npmessage\r\n$2\r\nc?\r\n$2\r\nch\r\n$7\r\nbin\x00ary\r\n"
        c.close()
        if resp3:
            # The publisher itself: the message comes before PUBLISH's reply.
            sub.send("PUBLISH", "ch", "self")
            assert sub.read() == b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$4\r\nself\r\n"
            assert sub.read().startswith(b">4\r\n$8\r\npmessage")
            assert sub.read() == b":2\r\n"
    finally:
        sub.close()


def test_messages_come_after_pending_replies(server):
    # A RESP3 subscriber waits for a shard's reply; a message published
    # meanwhile must not overtake it.
    sub = RespClient(server, protocol=3)
    pub = RespClient(server)
    try:
        sub.call("SUBSCRIBE", "ch")
        for i in range(50):
            sub.send("SET", "k%d" % i, "v")
            pub.send("PUBLISH", "ch", "m%d" % i)
        pub_replies = [pub.read() for _ in range(50)]
        assert pub_replies == [b":1\r\n"] * 50
        got = [sub.read() for _ in range(100)]
        assert [g for g in got if g.startswith(b">")] == [
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$%d\r\nm%d\r\n" % (len(b"m%d" % i), i) for i in range(50)
        ]
        assert [g for g in got if not g.startswith(b">")] == [b"+OK\r\n"] * 50
    finally:
        sub.close()
        pub.close()


def test_publish_order(server):
    sub = RespClient(server)
    try:
        sub.call("SUBSCRIBE", "ordered")
        pub = redis.Redis(port=server)
        with pub.pipeline(transaction=False) as p:
            for i in range(500):
                p.publish("ordered", i)
            assert p.execute() == [1] * 500
        for i in range(500):
            assert sub.read() == b"*3\r\n$7\r\nmessage\r\n$7\r\nordered\r\n$%d\r\n%d\r\n" % (len(str(i)), i)
        pub.close()
    finally:
        sub.close()


# -- redis-py and redis-cli ------------------------------------------------------------


@pytest.mark.parametrize("protocol", [3, 2])
def test_redis_py_pubsub(server, protocol):
    r = redis.Redis(port=server, protocol=protocol)
    p = r.pubsub()
    p.subscribe("news")
    p.psubscribe("sp*")
    assert p.get_message(timeout=5)["type"] == "subscribe"
    assert p.get_message(timeout=5)["type"] == "psubscribe"
    assert r.publish("news", "one") == 1
    assert r.publish("sport", "two") == 1
    msg = p.get_message(timeout=5)
    assert (msg["type"], msg["channel"], msg["data"]) == ("message", b"news", b"one")
    msg = p.get_message(timeout=5)
    assert (msg["type"], msg["pattern"], msg["channel"], msg["data"]) == (
        "pmessage",
        b"sp*",
        b"sport",
        b"two",
    )
    assert p.get_message(timeout=0.05) is None
    p.unsubscribe("news")
    p.punsubscribe("sp*")
    assert p.get_message(timeout=5)["type"] == "unsubscribe"
    assert p.get_message(timeout=5)["type"] == "punsubscribe"
    assert r.publish("news", "nobody") == 0
    p.close()
    r.close()


def test_redis_py_listen_and_handlers(r):
    p = r.pubsub(ignore_subscribe_messages=True)
    got: list = []
    p.subscribe(**{"ch": lambda m: got.append(m["data"])})
    p.subscribe("plain")
    received: list = []

    def listen():
        for message in p.listen():
            if message is None:
                continue
            received.append(message["data"])
            if message["data"] == b"stop":
                return

    t = threading.Thread(target=listen)
    t.start()
    wait_for(lambda: r.pubsub_numsub("plain") == [(b"plain", 1)] and r.pubsub_numsub("ch") == [(b"ch", 1)])
    for i in range(20):
        r.publish("ch", "h%d" % i)
        r.publish("plain", "p%d" % i)
    r.publish("plain", "stop")
    t.join(10)
    assert not t.is_alive()
    assert got == [b"h%d" % i for i in range(20)]
    assert received == [b"p%d" % i for i in range(20)] + [b"stop"]
    p.close()


def test_pubsub_ping_and_reset_with_redis_py(r):
    p = r.pubsub()
    p.subscribe("x")
    p.get_message(timeout=5)
    p.ping("hello")
    msg = p.get_message(timeout=5)
    assert msg["type"] == "pong"
    p.close()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_subscribe(server):
    cli = popen_dying_with_us(
        ["redis-cli", "-p", str(server), "subscribe", "ch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: numsub(server, "ch") == 1)
        c = redis.Redis(port=server)
        assert c.publish("ch", "hello from shardkv") == 1
        c.close()
        out = b""
        deadline = time.monotonic() + 10
        while b"hello from shardkv" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([cli.stdout], [], [], 0.5)
            if ready:
                out += cli.stdout.read1(4096)  # type: ignore[union-attr]
        assert out.split(b"\n")[:6] == [b"subscribe", b"ch", b"1", b"message", b"ch", b"hello from shardkv"]
    finally:
        cli.kill()
        cli.wait(5)


# -- slow subscribers ------------------------------------------------------------------


def test_output_buffer_limit_setting(compare):
    compare("CONFIG", "GET", "client-output-buffer-limit")
    try:
        compare("CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 512kb 10")
        compare("CONFIG", "GET", "client-output-buffer-limit")
        compare("CONFIG", "SET", "client-output-buffer-limit", "PUBSUB 1k 0 0 normal 0 0 0")
        compare("CONFIG", "GET", "client-output-buffer-limit")
        compare("CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 2")
        compare("CONFIG", "SET", "client-output-buffer-limit", "nobody 1 2 3")
        compare("CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 2 x")
        compare("CONFIG", "SET", "client-output-buffer-limit", "pubsub -1 2 3")
        compare("CONFIG", "GET", "client-output-buffer-limit")
    finally:
        compare("CONFIG", "SET", "client-output-buffer-limit", "normal 0 0 0 pubsub 32mb 8mb 60")
    compare("CONFIG", "GET", "client-output-buffer-limit")


@pytest.mark.parametrize("limit", ["pubsub 256kb 0 0", "pubsub 0 128kb 0"], ids=["hard", "soft"])
def test_subscriber_that_never_reads_is_dropped(server, limit):
    c = redis.Redis(port=server)
    c.config_set("client-output-buffer-limit", limit)
    sub = socket.socket()
    sub.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sub.connect(("127.0.0.1", server))
    try:
        sub.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nslow\r\n")
        wait_for(lambda: numsub(server, "slow") == 1)
        payload = b"x" * 65536
        deadline = time.monotonic() + 30
        # The subscriber never reads.  Past the limit (for a second or more,
        # for the soft one) the server must let it go rather than buffer on.
        for _ in range(5000):
            c.publish("slow", payload)
            if numsub(server, "slow") == 0:
                break
            assert time.monotonic() < deadline, "the slow subscriber was never dropped"
            time.sleep(0.002)
        else:
            pytest.fail("the slow subscriber was never dropped")
        assert c.ping()
    finally:
        sub.close()
        c.config_set("client-output-buffer-limit", "pubsub 32mb 8mb 60")
        c.close()


def _subscribed_reads(port: int, gets: int, subscribe: bool = True) -> tuple[bytes, bool]:
    """What a RESP3 client (subscribed, or not) reads after pipelining
    ``gets`` GETs of 30 KB values and a PING, under a pubsub limit of 64 KB,
    and whether the server closed it."""
    with RespClient(port, timeout=30) as c:
        c.command("FLUSHALL")
        for i in range(8):
            c.command("SET", f"big{i}", "x" * 30000)
        c.command("CONFIG", "SET", "client-output-buffer-limit", "pubsub 64kb 0 0")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n")
            read_until_quiet(s, 0.3, want=1)
            sent = [("SUBSCRIBE", "ch")] if subscribe else []
            sent += [("GET", f"big{i}") for i in range(gets)] + [("PING",)]
            s.sendall(b"".join(encode_command(*a) for a in sent))
            return read_until_quiet(s, 1.0)
    finally:
        with RespClient(port, timeout=30) as c:
            c.command("CONFIG", "SET", "client-output-buffer-limit", "pubsub 32mb 8mb 60")


@pytest.mark.parametrize(
    ("gets", "subscribe"), [(8, True), (1, True), (8, False)], ids=["over", "under", "not_subscribed"]
)
def test_subscribed_clients_replies_count_to_the_pubsub_limit(ports, gets, subscribe):
    """As in Redis, a client in Pub/Sub mode is of the pubsub class for all
    its output: its own replies (a RESP3 subscriber may run any command)
    count to the limit, and past it the client is closed, nothing written."""
    real = _subscribed_reads(ports["redis"], gets, subscribe)
    ours = _subscribed_reads(ports["shardkv"], gets, subscribe)
    over = gets == 8 and subscribe
    assert real[1] == over
    if not over:
        assert ours == real
        return
    # Closed, its PING never answered.  Redis ran the whole pipeline in one
    # turn and wrote nothing; shardkv's replies come from several shards,
    # and those in before the limit was crossed may have been written (see
    # README's differences).
    assert ours[1]
    assert real[0] == b""
    assert b"PONG" not in ours[0] and len(ours[0]) < 8 * 30000
