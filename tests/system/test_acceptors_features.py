"""Every feature across several acceptors (issue 22): Pub/Sub, CLIENT,
INFO, MONITOR, CONFIG SET, keyspace notifications, SHUTDOWN.

The server runs with ``--acceptors 2``; acceptor ``i`` hands out the client
ids ``i+1, i+1+K, ...``, so a connection's CLIENT ID says which acceptor
the kernel gave it to.  :func:`on_both` opens connections until it has two
on each acceptor.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shardkv.protocol.router import Router
from tests.support.acceptors import K, acceptor_of, acceptor_pids, raw_on, serve
from tests.support.servers import start_shardkv

server = pytest.fixture(scope="module", name="server")(serve)


def on_both(port: int, each: int = 2, **kwargs) -> list[list[redis.Redis]]:
    """``each`` connections on each acceptor: ``[[on 0...], [on 1...]]``."""
    found: list[list[redis.Redis]] = [[] for _ in range(K)]
    spare = []
    for _ in range(200):
        if all(len(group) >= each for group in found):
            break
        c = redis.Redis(port=port, **kwargs)
        group = found[acceptor_of(c.client_id())]
        (group if len(group) < each else spare).append(c)
    else:
        pytest.fail("the connections all landed on one acceptor")
    for c in spare:
        c.close()
    return found


@pytest.fixture
def groups(server):
    found = on_both(server.port)
    yield found
    for group in found:
        for c in group:
            c.close()


def messages(ps, n: int, timeout: float = 5.0) -> list:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        m = ps.get_message(timeout=0.2)
        if m is not None and m["type"] in ("message", "pmessage"):
            got.append((m["channel"], m["data"]))
    return got


def test_publish_reaches_subscribers_on_every_acceptor_and_counts_them(groups) -> None:
    (a, a2), (b, b2) = groups
    sub_a, sub_b = a.pubsub(), b.pubsub()
    sub_a.subscribe("news")
    sub_b.subscribe("news")
    sub_b.psubscribe("ne*")
    for ps in (sub_a, sub_b):
        assert ps.get_message(timeout=5)["type"] in ("subscribe", "psubscribe")
    sub_b.get_message(timeout=5)
    assert a2.publish("news", "1") == 3
    assert b2.publish("news", "2") == 3
    assert a2.publish("nothing", "x") == 0
    assert messages(sub_a, 2) == [(b"news", b"1"), (b"news", b"2")]
    assert messages(sub_b, 4) == [(b"news", b"1"), (b"news", b"1"), (b"news", b"2"), (b"news", b"2")]
    assert a2.pubsub_numsub("news", "other") == [(b"news", 2), (b"other", 0)]
    assert b2.pubsub_numsub("news") == [(b"news", 2)]
    assert a2.pubsub_numpat() == 1
    assert a2.pubsub_channels() == [b"news"]
    info = a2.info("stats")
    assert info["pubsub_channels"] == 1 and info["pubsub_patterns"] == 1
    sub_a.close()
    sub_b.close()


def test_a_scripts_publish_and_pubsub_count_every_acceptors_subscribers(groups) -> None:
    """redis.call('publish') reaches and counts the subscribers of every
    acceptor, once each, in the one order of every PUBLISH; PUBSUB and
    INFO called from a script count every acceptor's too."""
    (a, a2), (b, b2) = groups
    sub_a, sub_b = a.pubsub(), b.pubsub()
    sub_a.subscribe("jobs")
    sub_b.subscribe("jobs")
    sub_b.psubscribe("jo*")
    for ps in (sub_a, sub_b):
        assert ps.get_message(timeout=5)["type"] in ("subscribe", "psubscribe")
    sub_b.get_message(timeout=5)
    publish = "return redis.call('publish', 'jobs', ARGV[1])"
    assert a2.eval(publish, 0, "s1") == 3
    assert b2.publish("jobs", "p2") == 3
    assert b2.eval(publish, 1, "any-key", "s3") == 3
    assert a2.publish("jobs", "p4") == 3
    # A last message: each subscriber reads through it (one order per
    # channel), so a message delivered twice shows, and nothing waits for
    # one more that should not come (5 s each before).
    assert b2.publish("jobs", "end") == 3
    words = [b"s1", b"p2", b"s3", b"p4", b"end"]
    assert messages(sub_a, 5) == [(b"jobs", w) for w in words]
    assert messages(sub_b, 10) == [(b"jobs", w) for w in words for _ in range(2)]
    assert a2.eval("return redis.call('pubsub', 'numsub', 'jobs', 'none')", 0) == [b"jobs", 2, b"none", 0]
    assert b2.eval("return redis.call('pubsub', 'numpat')", 0) == 1
    assert a2.eval("return redis.call('pubsub', 'channels')", 0) == [b"jobs"]
    clients = a2.eval("return string.match(redis.call('info', 'clients'), 'connected_clients:(%d+)')", 0)
    assert int(clients) == int(b2.info("clients")["connected_clients"]) >= 4
    sub_a.close()
    sub_b.close()


def test_one_order_of_messages_per_channel_for_every_subscriber(groups) -> None:
    (a, a2), (b, b2) = groups
    sub_a, sub_b = a.pubsub(), b.pubsub()
    for ps in (sub_a, sub_b):
        ps.subscribe("order")
        ps.get_message(timeout=5)
    pipe_a, pipe_b = a2.pipeline(transaction=False), b2.pipeline(transaction=False)
    for i in range(50):
        pipe_a.publish("order", b"a%d" % i)
        pipe_b.publish("order", b"b%d" % i)
    pipe_a.execute()
    pipe_b.execute()
    got_a, got_b = messages(sub_a, 100), messages(sub_b, 100)
    assert len(got_a) == 100 and got_a == got_b
    sub_a.close()
    sub_b.close()


def test_client_list_kill_and_info_span_the_acceptors(server, groups) -> None:
    (a, a2), (b, b2) = groups
    ids = {c.client_id() for group in groups for c in group}
    listed = {entry["id"] for entry in a.client_list()}
    assert ids <= {int(i) for i in listed}
    assert [int(e["id"]) for e in b.client_list(_type="normal")] == sorted(int(i) for i in listed)
    assert b.client_list(client_id=[a2.client_id()])[0]["id"] == str(a2.client_id())
    assert int(a.info("clients")["connected_clients"]) == len(listed)
    stats = b.info("stats")
    assert stats["total_connections_received"] >= len(listed)
    # KILL reaches the other acceptor: a raw connection there sees its end.
    victim_sock, victim = raw_on(server.port, 1)
    killer = groups[0][0]
    assert killer.client_kill_filter(_id=victim) == 1
    victim_sock.settimeout(10)
    assert victim_sock.recv(100) == b""
    victim_sock.close()
    assert victim not in {int(e["id"]) for e in a.client_list()}
    assert a.client_kill_filter(_id=victim) == 0
    # The old form, by address, also across.
    addr = next(e["addr"] for e in b.client_list() if int(e["id"]) == a2.client_id())
    assert b.client_kill(addr) is True
    with pytest.raises(redis.ResponseError, match="No such client"):
        b.client_kill(addr)


def test_client_unblock_reaches_the_other_acceptor(server, groups) -> None:
    (a, _), (b, _) = groups
    blocked = redis.Redis(port=server.port, socket_timeout=10)
    try:
        me = blocked.client_id()
        other = groups[1 - acceptor_of(me)][0]
        result: list = []
        t = threading.Thread(target=lambda: result.append(blocked.blpop("nokey-unblock", 0)))
        t.start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(int(e["id"]) == me and "b" in e["flags"] for e in other.client_list()):
                break
            time.sleep(0.05)
        assert other.client_unblock(me) == 1
        t.join(5)
        assert result == [None]
    finally:
        blocked.close()


def test_monitor_sees_every_acceptors_commands(server, groups) -> None:
    (a, a2), (b, b2) = groups
    with a.monitor() as m:
        b2.set("seen-from-b", "1")
        a2.set("seen-from-a", "1")
        seen = set()
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            command = m.next_command()["command"]
            if command.startswith("SET seen-from"):
                seen.add(command)
    assert seen == {"SET seen-from-b 1", "SET seen-from-a 1"}


def test_monitor_sees_a_scripts_lua_lines_from_the_other_acceptor(server, groups) -> None:
    """A script's ``[0 lua]`` lines hold a place in the stream that goes to
    the other acceptor's monitors; that place once broke the acceptor (and
    with it every client) instead of waiting for the lines."""
    (a, _), (b, b2) = groups
    with a.monitor() as m:
        assert (
            b2.eval("redis.call('SET', KEYS[1], 'x'); return redis.call('GET', KEYS[1])", 1, "lua-k") == b"x"
        )
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            command = m.next_command()["command"]
            if "lua-k" in command:
                got.append(command)
    assert got[0].startswith("EVAL ")
    assert got[1:] == ["SET lua-k x", "GET lua-k"]
    assert b.ping() and a.ping()


def test_config_set_reaches_the_other_acceptor(groups) -> None:
    (a, _), (b, _) = groups
    before = a.config_get("slowlog-max-len")["slowlog-max-len"]
    try:
        assert a.config_set("slowlog-max-len", "77")
        deadline = time.monotonic() + 5
        while b.config_get("slowlog-max-len")["slowlog-max-len"] != "77" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert b.config_get("slowlog-max-len")["slowlog-max-len"] == "77"
    finally:
        a.config_set("slowlog-max-len", before)


def test_keyspace_notification_of_a_write_through_the_other_acceptor(groups) -> None:
    (a, _), (b, b2) = groups
    a.config_set("notify-keyspace-events", "KEA")
    try:
        deadline = time.monotonic() + 5
        while (
            b.config_get("notify-keyspace-events")["notify-keyspace-events"] == ""
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        ps = a.pubsub()
        ps.psubscribe("__keyspace@0__:notified*")
        ps.get_message(timeout=5)
        b2.set("notified-key", "v")
        b2.lpush("notified-list", "x")
        # Both arrive; across acceptors, events of different shards may come
        # in either order (each shard sends them to the other acceptor itself).
        assert sorted(messages(ps, 2)) == [
            (b"__keyspace@0__:notified-key", b"set"),
            (b"__keyspace@0__:notified-list", b"lpush"),
        ]
        ps.close()
    finally:
        a.config_set("notify-keyspace-events", "")


def test_a_shutdown_that_cannot_save_answers_its_error_through_either_acceptor(server, groups) -> None:
    """As in Redis, SHUTDOWN whose save fails answers the error and the
    server keeps serving: through either acceptor, and on both."""
    dumps = [Path(server.workdir) / f"dump.rdb.shard-{i}" for i in range(2)]
    groups[0][0].config_set("save", "3600 1")
    for dump in dumps:
        dump.mkdir()  # a directory where each snapshot should go: every save fails
    try:
        for index in range(K):
            c = groups[index][0]
            c.set(f"unsaved-{index}", "v")  # a change: its shard must save
            with pytest.raises(redis.ResponseError, match="Errors trying to SHUTDOWN"):
                c.shutdown()
            for group in groups:
                assert group[1].set(f"after-{index}", "v") and group[1].get(f"unsaved-{index}") == b"v"
        assert server.proc.poll() is None
    finally:
        for dump in dumps:
            dump.rmdir()
        groups[0][0].config_set("save", "")


@pytest.mark.slow  # starts and shuts down a server of its own per acceptor
def test_shutdown_through_either_acceptor_stops_the_server() -> None:
    for index in range(K):
        proc = start_shardkv(shards=2, acceptors=K)
        try:
            # No retry: redis-py would send SHUTDOWN again for 2-4 s.
            found = on_both(proc.port, each=1, retry=Retry(NoBackoff(), 0))
            try:
                found[index][0].shutdown(nosave=True)  # redis-py takes the closed connection as success
            except redis.ConnectionError:
                pass
            proc.proc.wait(30)
            assert proc.proc.returncode == 0
        finally:
            proc.stop()


def test_a_subscribed_publisher_gets_its_message_before_the_reply(server) -> None:
    for index in range(K):
        sock, _ = raw_on(server.port, index)
        try:
            sock.sendall(b"HELLO 3\r\n")
            data = b""
            while b"modules" not in data or not data.endswith(b"\r\n"):
                data += sock.recv(4096)
            # A channel of its own per round: the previous round's closed
            # subscriber may not be gone yet when this round publishes.
            channel = b"self%d" % index
            sock.sendall(b"SUBSCRIBE %s\r\nPUBLISH %s hi\r\n" % (channel, channel))
            expected = (
                b">3\r\n$9\r\nsubscribe\r\n$5\r\n%s\r\n:1\r\n>3\r\n$7\r\nmessage\r\n$5\r\n%s\r\n$2\r\nhi\r\n:1\r\n"
                % (channel, channel)
            )
            data = b""
            while len(data) < len(expected):
                data += sock.recv(4096)
            assert data == expected
        finally:
            sock.close()


def test_client_tracking_is_invalidated_by_a_write_through_the_other_acceptor(server) -> None:
    tracker, _ = raw_on(server.port, 0)
    writer = redis.Redis(port=server.port)
    try:
        while acceptor_of(writer.client_id()) != 1:
            writer.close()
            writer = redis.Redis(port=server.port)
        tracker.sendall(b"HELLO 3\r\nCLIENT TRACKING on\r\nGET tracked-key\r\n")
        data = b""
        while not data.endswith(b"+OK\r\n_\r\n"):
            data += tracker.recv(4096)
        writer.set("tracked-key", "v")
        expected = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$11\r\ntracked-key\r\n"
        data = b""
        while len(data) < len(expected):
            data += tracker.recv(4096)
        assert data == expected
    finally:
        tracker.close()
        writer.close()


def test_a_tracking_clients_answered_reads_are_not_kept(server) -> None:
    """A RESP3 tracking client pipelines 64 reads of a 1 MiB value, reads
    every reply and goes idle: its acceptor keeps a record of each tracked
    read in flight (tracking.Read), whose reply slot holds the reply's
    bytes; answered ones are dropped once a second (tracking.drop_answered),
    not only at the client's next tracked read, so its memory comes back."""
    setter = redis.Redis(port=server.port)
    tracker, _ = raw_on(server.port, 0)
    acceptor = psutil.Process(acceptor_pids(server)[0])
    try:
        setter.set("big-tracked", b"v" * (1 << 20))
        tracker.sendall(b"HELLO 3\r\nCLIENT TRACKING on\r\n")
        data = b""
        while not data.endswith(b"+OK\r\n"):
            data += tracker.recv(65536)
        before = acceptor.memory_info().rss
        reply = b"$%d\r\n%s\r\n" % (1 << 20, b"v" * (1 << 20))
        tracker.sendall(b"GET big-tracked\r\n" * 64)
        data = b""
        while len(data) < 64 * len(reply):
            data += tracker.recv(1 << 20)
        assert data == reply * 64
        deadline = time.monotonic() + 10
        while acceptor.memory_info().rss - before > 32 << 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        grown = acceptor.memory_info().rss - before
        assert grown <= 32 << 20, f"the acceptor still holds {grown >> 20} MiB after the replies"
    finally:
        tracker.close()
        setter.delete("big-tracked")
        setter.close()


def test_a_multi_shard_read_waiting_for_its_holds_is_not_taken_for_one_that_ran(server) -> None:
    """A tracking client R (REDIRECT to a subscriber I) sends MGET a b,
    which waits for its holds behind a long script on a's shard; a client
    W of the same acceptor then writes a.  R may get the new value with its
    invalidation before the reply (R's acceptor cannot know in which order
    the shards ran them): then R must still track a, so that a later write
    is heard of.  Whatever the order, a client-side cache filled in arrival
    order never keeps a value that the server no longer has."""

    def command(*args: str) -> bytes:
        return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in args)

    def read(sock: socket.socket, until: bytes) -> bytes:
        data = b""
        while not data.endswith(until):
            data += sock.recv(65536)
        return data

    a, b, d = "mstale-a", "mstale-b", "mstale-d"
    router = Router(2)
    assert router.shard_of(a.encode()) == router.shard_of(d.encode()) != router.shard_of(b.encode())
    reader, _ = raw_on(server.port, 0)
    writer, _ = raw_on(server.port, 0)
    listener, listener_id = raw_on(server.port, 0)
    scripter, _ = raw_on(server.port, 0)
    try:
        writer.sendall(command("SET", a, "v0"))
        read(writer, b"+OK\r\n")
        listener.sendall(command("SUBSCRIBE", "__redis__:invalidate"))
        read(listener, b":1\r\n")
        reader.sendall(command("CLIENT", "TRACKING", "on", "REDIRECT", str(listener_id)))
        read(reader, b"+OK\r\n")
        scripter.sendall(command("EVAL", "local i = 0 while i < 30000000 do i = i + 1 end return 1", "1", d))
        time.sleep(0.1)
        reader.sendall(command("MGET", a, b))
        time.sleep(0.05)
        writer.sendall(command("GET", d) + command("SET", a, "v1"))
        cached: bytes | None = None
        replied = False
        while not replied:
            ready, _, _ = select.select([reader, listener], [], [], 10)
            assert ready, "no reply"
            if listener in ready:  # (both at once: the invalidation first, the worse case)
                listener.recv(65536)
                cached = None
            if reader in ready:
                reply = read(reader, b"\r\n$-1\r\n")
                cached = reply.split(b"\r\n")[2]
                replied = True
        read(scripter, b":1\r\n")
        read(writer, b"+OK\r\n")
        listener.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            if listener.recv(65536):
                cached = None  # heard of the write after the reply
        writer.sendall(command("SET", a, "v2"))
        read(writer, b"+OK\r\n")
        if cached is not None:
            listener.settimeout(5)
            got = b""
            with contextlib.suppress(TimeoutError):
                got = listener.recv(65536)
            assert b"mstale-a" in got, f"the client keeps {cached!r}; the server has v2"
    finally:
        for sock in (reader, writer, listener, scripter):
            sock.close()


def test_client_pause_holds_the_other_acceptors_clients(server, groups) -> None:
    (a, _), _ = groups
    writer, _ = raw_on(server.port, 1)
    try:
        assert a.client_pause(100_000, all=False) is True
        writer.sendall(b"SET paused-key 1\r\n")
        writer.settimeout(0.5)
        with pytest.raises(TimeoutError):
            writer.recv(100)  # held while paused
        a.client_unpause()
        writer.settimeout(10)
        assert writer.recv(100) == b"+OK\r\n"
    finally:
        a.client_unpause()
        writer.close()


def test_client_tracking_redirects_to_a_client_on_the_other_acceptor(server, groups) -> None:
    (tracker, _), (writer, _) = groups
    listener, listener_id = raw_on(server.port, 0)
    try:
        listener.sendall(b"SUBSCRIBE __redis__:invalidate\r\n")
        data = b""
        while not data.endswith(b":1\r\n"):
            data += listener.recv(4096)
        with pytest.raises(redis.ResponseError, match="does not exist"):
            tracker.execute_command("CLIENT", "TRACKING", "on", "REDIRECT", listener_id + 2 * 1000)
        assert tracker.execute_command("CLIENT", "TRACKING", "on", "REDIRECT", listener_id) == b"OK"
        assert tracker.execute_command("CLIENT", "GETREDIR") == listener_id
        tracker.get("redirected-key")
        writer.set("redirected-key", "v")
        expected = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$14\r\nredirected-key\r\n"
        data = b""
        while len(data) < len(expected):
            data += listener.recv(4096)
        assert data == expected
    finally:
        tracker.execute_command("CLIENT", "TRACKING", "off")
        listener.close()


def test_config_set_replies_once_every_acceptor_applied_it(groups) -> None:
    (a, _), (b, _) = groups
    try:
        for value in ("101", "102", "103"):
            assert a.config_set("slowlog-max-len", value)
            assert b.config_get("slowlog-max-len")["slowlog-max-len"] == value  # no wait needed
    finally:
        a.config_set("slowlog-max-len", "128")


def test_config_resetstat_resets_every_acceptors_counters(groups) -> None:
    (a, _), (b, _) = groups
    b.ping()
    assert a.info("stats")["total_commands_processed"] > 1
    a.config_resetstat()
    # Only the INFO itself since the reset, over both acceptors.
    assert b.info("stats")["total_commands_processed"] <= 2


def test_new_event_reaches_a_subscriber_on_the_other_acceptor(groups) -> None:
    """``n`` after a mask switch: a key created through acceptor 0 is
    ``new`` (then ``set``) for a subscriber on acceptor 1, as in Redis."""
    (a, a2), (b, _) = groups
    try:
        for flags in ("KEA", "KEAn"):
            a.config_set("notify-keyspace-events", flags)
            deadline = time.monotonic() + 5
            while (
                b.config_get("notify-keyspace-events")["notify-keyspace-events"]
                != a.config_get("notify-keyspace-events")["notify-keyspace-events"]
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
        ps = b.pubsub()
        ps.psubscribe("__keyspace@0__:fresh*")
        ps.get_message(timeout=5)
        a2.delete("fresh-key")
        a2.set("fresh-key", "v")
        assert messages(ps, 2) == [
            (b"__keyspace@0__:fresh-key", b"new"),
            (b"__keyspace@0__:fresh-key", b"set"),
        ]
        ps.close()
    finally:
        a.config_set("notify-keyspace-events", "")


def test_events_of_a_multi_shard_command_keep_its_order_on_the_other_acceptor(groups) -> None:
    """MSET and DEL over keys of both shards, through acceptor 0: a
    subscriber on acceptor 1 gets their events in the command's key order,
    as Redis emits them (the acceptor of the command relays them)."""
    (a, a2), (b, _) = groups
    keys = [f"order-{i}" for i in range(12)]
    a.config_set("notify-keyspace-events", "K$g")
    try:
        deadline = time.monotonic() + 5
        while (
            not b.config_get("notify-keyspace-events")["notify-keyspace-events"]
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        ps = b.pubsub()
        ps.psubscribe("__keyspace@0__:order-*")
        ps.get_message(timeout=5)
        a2.mset({k: "v" for k in keys})
        a2.delete(*reversed(keys))
        got = messages(ps, 2 * len(keys))
        assert got == [(b"__keyspace@0__:" + k.encode(), b"set") for k in keys] + [
            (b"__keyspace@0__:" + k.encode(), b"del") for k in reversed(keys)
        ]
        ps.close()
    finally:
        a.config_set("notify-keyspace-events", "")


def test_scripts_calls_of_every_shards_figures_with_several_acceptors(groups) -> None:
    """With several acceptors a script's INFO sums every shard's keys and
    counts every acceptor's clients, LASTSAVE, SLOWLOG and MEMORY STATS
    answer as the same commands sent directly do, and SWAPDB (the
    workers') swaps."""
    (c, other), _ = groups
    other.flushall()
    other.mset({f"fig-{i}": i for i in range(10)})  # on both shards
    assert other.expire("fig-0", 100)
    keyspace = c.eval("return redis.call('info', 'keyspace')", 0)
    assert keyspace.startswith(b"# Keyspace\r\ndb0:keys=10,expires=1,avg_ttl=")
    assert c.info("keyspace")["db0"]["keys"] == 10
    clients = c.eval("return redis.call('info', 'clients')", 0)
    assert int(re.search(rb"connected_clients:(\d+)", clients)[1]) >= 4  # both groups, both acceptors
    assert c.eval("return redis.call('lastsave')", 1, "fig-1") == c.lastsave().timestamp()
    c.config_set("slowlog-log-slower-than", -1)  # nothing new is logged meanwhile
    try:
        other.slowlog_reset()
        assert c.eval("return redis.call('slowlog', 'len')", 0) == c.slowlog_len() == 0
    finally:
        c.config_set("slowlog-log-slower-than", 10000)
    stats = c.eval("return redis.call('memory', 'stats')", 1, "fig-2")
    assert stats[stats.index(b"keys.count") + 1] == 10
    assert c.eval("return redis.pcall('info', 'nosuchsection')", 0) == b""
    other.flushall()
    c.set("swapped", "1")
    assert c.eval("return redis.call('swapdb', 0, 1)", 0) == b"OK"
    assert c.get("swapped") is None
    assert c.eval("redis.call('swapdb', 0, 1) return redis.call('get', 'swapped')", 0) == b"1"
    c.delete("swapped")
    c.close()


def test_scripts_asking_every_shard_race_other_acceptors_cross_shard_work(server) -> None:
    """Scripts on acceptor 0 call INFO, LASTSAVE and SLOWLOG (every shard
    answers an ``I`` frame) while acceptor 1 runs MULTI/EXEC transfers and
    transfer scripts over both shards, which hold the shards in turn.  A
    shard held for acceptor 1, or parked, or itself in a script, still
    answers acceptor 0's inquiries, so nothing waits in a cycle: every
    call returns (a hang would end in the clients' socket timeout), and
    the transfers keep the total, as each script sees it too."""
    router = Router(2)
    accounts = [f"acct-{i}" for i in range(8)]
    assert {router.shard_of(a.encode()) for a in accounts} == {0, 1}
    counters = [next(f"n-{i}" for i in range(100) if router.shard_of(f"n-{i}".encode()) == s) for s in (0, 1)]
    rounds, total = 60, 100 * len(accounts)
    (a0, a1), (b0, b1) = on_both(server.port, socket_timeout=30)
    setup = a0
    setup.delete(*accounts, *counters)
    setup.mset(dict.fromkeys(accounts, 100))
    info_on_one_shard = (
        "local info = redis.call('info', 'keyspace') local n = redis.call('incr', KEYS[1])"
        " return {n, string.sub(info, 1, 10), redis.call('lastsave') > 0 and 1 or 0}"
    )
    sum_with_info = (
        "local s = 0 for i, k in ipairs(KEYS) do s = s + tonumber(redis.call('get', k)) end"
        " return {s, string.sub(redis.call('info'), 1, 8), redis.call('slowlog', 'len') >= 0 and 1 or 0}"
    )
    transfer = (
        "redis.call('decrby', KEYS[1], ARGV[1]) redis.call('incrby', KEYS[2], ARGV[1])"
        " return string.sub(redis.call('info', 'keyspace'), 1, 10)"
    )
    failures: list[str] = []

    def run(name: str, body) -> None:
        try:
            for i in range(rounds):
                body(i)
        except Exception as e:  # a timeout here is the hang this test is about
            failures.append(f"{name}: {e!r}")

    def a_single(i: int) -> None:
        key = counters[i % 2]
        n, head, saved = a0.eval(info_on_one_shard, 1, key)
        assert head == b"# Keyspace" and saved == 1 and n >= 1

    def a_across(i: int) -> None:
        s, head, ok = a1.eval(sum_with_info, len(accounts), *accounts)
        assert (s, head, ok) == (total, b"# Server", 1)

    def b_multi(i: int) -> None:
        src, dst = accounts[i % 8], accounts[(i * 3 + 1) % 8]
        if src == dst:
            return
        p = b0.pipeline(transaction=True)
        p.decrby(src, 1)
        p.incrby(dst, 1)
        p.execute()

    def b_script(i: int) -> None:
        src, dst = accounts[(i + 5) % 8], accounts[(i * 5 + 2) % 8]
        if src != dst:
            assert b1.eval(transfer, 2, src, dst, 2) == b"# Keyspace"

    threads = [
        threading.Thread(target=run, args=(f.__name__, f)) for f in (a_single, a_across, b_multi, b_script)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert not [t for t in threads if t.is_alive()], "a client still waits"
    assert failures == []
    assert sum(int(v) for v in setup.mget(accounts)) == total
    assert sum(int(setup.get(k) or 0) for k in counters) == rounds
    setup.delete(*accounts, *counters)
    for c in (a0, a1, b0, b1):
        c.close()


def test_spublish_reaches_shard_subscribers_on_every_acceptor_and_counts_them(groups) -> None:
    """Sharded Pub/Sub as Pub/Sub: SPUBLISH through one acceptor reaches the
    SSUBSCRIBE clients of both, and PUBSUB SHARDNUMSUB and SHARDCHANNELS
    count every acceptor's; from a script too."""
    (a, a2), (b, b2) = groups
    sub_a, sub_b = a.pubsub(), b.pubsub()
    sub_a.ssubscribe("orders")
    sub_b.ssubscribe("orders")
    for ps in (sub_a, sub_b):
        assert ps.get_message(timeout=5)["type"] == "ssubscribe"
    assert a2.execute_command("SPUBLISH", "orders", "1") == 2
    assert b2.execute_command("SPUBLISH", "orders", "2") == 2
    assert a2.eval("return redis.call('spublish', 'orders', ARGV[1])", 0, "3") == 2
    assert a2.execute_command("PUBLISH", "orders", "x") == 0  # (a plain channel of that name: none)
    for ps in (sub_a, sub_b):
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            m = ps.get_message(timeout=0.2)
            if m is not None and m["type"] == "smessage":
                got.append(m["data"])
        assert got == [b"1", b"2", b"3"]
    assert a2.execute_command("PUBSUB", "SHARDNUMSUB", "orders", "none") == [b"orders", 2, b"none", 0]
    assert b2.execute_command("PUBSUB", "SHARDCHANNELS") == [b"orders"]
    assert b2.execute_command("PUBSUB", "SHARDCHANNELS", "x*") == []
    assert b2.execute_command("PUBSUB", "CHANNELS") == []
    assert a2.info("stats")["pubsubshard_channels"] == 1
    sub_a.close()
    sub_b.close()
