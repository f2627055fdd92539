"""Several acceptors keep Redis's causal order of events and replies (issue 22).

Redis writes a command's keyspace notifications and tracking invalidations
to their clients before it sends the command's reply, so a client that has
the reply and then reads a subscriber's (or REDIRECT target's) connection
finds them there, without waiting.  With ``--acceptors 2`` the subscriber
may sit on the other acceptor than the writer (acceptor ``i`` hands out
the client ids ``i+1, i+1+K, ...``): each test below reads the other
connection without blocking right after each reply, many times over, for
keys of both shards, both ways round.  (Without shardkv.acceptor.causal
the events came by another path and were often not there yet.)  So does
MONITOR: a command's line reaches every monitor before its reply goes
(see shardkv.acceptor.monitor's Fence).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from shardkv.protocol.bus import ANSWER_WITHIN
from shardkv.protocol.router import Router
from tests.support.acceptors import K, acceptor_pids, client_on, raw_on, serve
from tests.support.processes import worker_pid
from tests.support.rawsocket import read_through
from tests.support.resp import RespClient, encode_command, parse_reply
from tests.support.servers import ServerProcess

ROUNDS = 150
INVALIDATE = b"__redis__:invalidate"

server = pytest.fixture(scope="module", name="server")(serve)


@pytest.fixture(scope="module")
def server3() -> Iterator[ServerProcess]:
    """Three acceptors: a REDIRECT target on another acceptor than both
    the tracking client and the writer."""
    yield from serve(3)


def available(c: RespClient) -> list:
    """Every whole message already in ``c``'s socket, read without waiting."""
    timeout = c.sock.gettimeout()
    c.sock.setblocking(False)
    try:
        while True:
            try:
                chunk = c.sock.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            c.buf += chunk
    finally:
        c.sock.settimeout(timeout)
    out = []
    while (parsed := parse_reply(c.buf)) is not None:
        value, end = parsed
        out.append(value)
        c.buf = c.buf[end:]
    return out


def count_late(rounds: int, on_time: Callable[[int], bool | None], listener: RespClient) -> int:
    """How many of ``rounds`` rounds found what they looked for not there
    yet (``on_time(i)`` says whether round ``i`` did); after a late one,
    wait for it and drain ``listener``.  A round whose ``on_time`` answers
    None could not check anything (what it set up was not there in time:
    a slow machine); it is run again with the next ``i``, at most
    ``2 * rounds`` times over."""
    late = checked = tried = 0
    while checked < rounds:
        tried += 1
        assert tried <= 3 * rounds, f"only {checked} of {tried} rounds could check anything"
        result = on_time(tried - 1)
        if result is None:
            time.sleep(0.2)
            available(listener)
            continue
        checked += 1
        if not result:
            late += 1
            time.sleep(0.2)
            available(listener)
    return late


def settle(writer: RespClient, listener: RespClient, key: str) -> None:
    """Write ``key`` until ``listener`` hears of it: each acceptor's
    ``__events`` mask has reached the shards; then drain ``listener``."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        writer.command("SET", key, "v")
        time.sleep(0.05)
        if available(listener):
            time.sleep(0.1)
            available(listener)
            return
    pytest.fail("the listener never heard of the write")


@pytest.fixture
def notifications(server):
    admin = RespClient(server.port)
    admin.command("CONFIG", "SET", "notify-keyspace-events", "K$g")
    yield
    admin.command("CONFIG", "SET", "notify-keyspace-events", "")
    admin.close()


@pytest.mark.parametrize("writer_on", [0, 1])
def test_a_notification_is_out_before_the_writers_reply(server, notifications, writer_on) -> None:
    writer = client_on(server.port, writer_on)
    sub = client_on(server.port, 1 - writer_on)
    try:
        sub.command("PSUBSCRIBE", "__keyspace@0__:causal*")
        settle(writer, sub, "causal-warm")

        def on_time(i: int) -> bool:
            key = f"causal-{writer_on}-{i}"  # the keys fall on both shards
            assert writer.command("SET", key, "v") == b"OK"
            got = available(sub)
            return [b"pmessage", b"__keyspace@0__:causal*", b"__keyspace@0__:" + key.encode(), b"set"] in got

        late = count_late(ROUNDS, on_time, sub)
        assert late == 0, f"{late} of {ROUNDS} notifications came after the writer's reply"
    finally:
        writer.close()
        sub.close()


@pytest.mark.parametrize("writer_on", [0, 1])
def test_a_multi_shard_commands_notifications_are_out_before_its_reply(
    server, notifications, writer_on
) -> None:
    writer = client_on(server.port, writer_on)
    sub = client_on(server.port, 1 - writer_on)
    try:
        sub.command("PSUBSCRIBE", "__keyspace@0__:multi*")
        settle(writer, sub, "multi-warm")

        def on_time(i: int) -> bool:
            keys = [f"multi-{writer_on}-{i}-{j}" for j in range(4)]  # on both shards
            assert writer.command("MSET", *[x for k in keys for x in (k, "v")]) == b"OK"
            got = [m[2] for m in available(sub)]
            return got == [b"__keyspace@0__:" + k.encode() for k in keys]

        late = count_late(ROUNDS // 3, on_time, sub)
        assert late == 0, f"{late} of {ROUNDS // 3} MSETs' notifications came after the reply"
    finally:
        writer.close()
        sub.close()


@pytest.mark.parametrize("writer_on", [0, 1])
def test_an_invalidation_is_out_before_the_writers_reply(server, writer_on) -> None:
    """A RESP3 tracking client on the other acceptor than the writer."""
    writer = client_on(server.port, writer_on)
    tracker = client_on(server.port, 1 - writer_on, protocol=3)
    try:
        tracker.command("CLIENT", "TRACKING", "on")

        def on_time(i: int) -> bool:
            key = f"tracked-{writer_on}-{i}"
            tracker.command("GET", key)
            assert writer.command("SET", key, "v") == b"OK"
            return [b"invalidate", [key.encode()]] in available(tracker)

        late = count_late(ROUNDS, on_time, tracker)
        assert late == 0, f"{late} of {ROUNDS} invalidations came after the writer's reply"
    finally:
        writer.close()
        tracker.close()


@pytest.mark.parametrize("command", ["GET", "MGET"])
@pytest.mark.parametrize("reader_on", [0, 1])
def test_a_reads_lazy_expiry_is_invalidated_before_its_reply(server, reader_on, command) -> None:
    """A read that finds its keys expired deletes them (Redis's
    expireIfNeeded) and invalidates them for a RESP3 tracking client on
    the other acceptor before the reader's reply: GET of one key, MGET of
    keys on both shards (relayed by the reader's acceptor).  With hz 1 the
    sweeper seldom comes first (then the invalidation is there earlier).
    A round where a key had expired before the tracking client read it
    checks nothing (that read tracks a key that is gone: Redis too sends no
    invalidation then), so it is run again."""
    reader = client_on(server.port, reader_on)
    tracker = client_on(server.port, 1 - reader_on, protocol=3)
    admin = RespClient(server.port)
    router = Router(2)
    try:
        assert admin.command("CONFIG", "SET", "hz", "1") == b"OK"
        tracker.command("CLIENT", "TRACKING", "on")

        def on_time(i: int) -> bool | None:
            keys = [f"lazy-{command}-{reader_on}-{i}-{j}" for j in range(1 if command == "GET" else 4)]
            assert command == "GET" or {router.shard_of(k.encode()) for k in keys} == {0, 1}
            for key in keys:
                admin.send("SET", key, "v", "PX", "40")
            for _ in keys:
                assert admin.read_reply() == b"OK"
            if None in tracker.command("MGET", *keys):  # tracked
                return None  # a key expired before it was tracked
            time.sleep(0.07)
            assert reader.command(command, *keys) in (None, [None] * len(keys))
            got = available(tracker)
            return all([b"invalidate", [key.encode()]] in got for key in keys)

        late = count_late(ROUNDS // 3, on_time, tracker)
        assert late == 0, f"{late} of {ROUNDS // 3} lazy expiries were invalidated after the read's reply"
    finally:
        admin.command("CONFIG", "SET", "hz", "10")
        admin.close()
        reader.close()
        tracker.close()


@pytest.mark.parametrize(("tracker_on", "writer_on"), [(0, 0), (0, 1), (1, 0), (1, 1)])
def test_a_redirected_invalidation_is_out_before_the_writers_reply(server, tracker_on, writer_on) -> None:
    """CLIENT TRACKING REDIRECT to a RESP2 subscriber of
    ``__redis__:invalidate`` on acceptor 1, the tracking client and the
    writer on either acceptor."""
    listener = client_on(server.port, 1)
    tracker = client_on(server.port, tracker_on)
    writer = client_on(server.port, writer_on)
    try:
        listener_id = int(listener.command("CLIENT", "ID"))  # type: ignore[arg-type]
        listener.command("SUBSCRIBE", "__redis__:invalidate")
        assert tracker.command("CLIENT", "TRACKING", "on", "REDIRECT", listener_id) == b"OK"

        def on_time(i: int) -> bool:
            key = f"redirected-{tracker_on}{writer_on}-{i}"
            tracker.command("GET", key)
            assert writer.command("SET", key, "v") == b"OK"
            return [b"message", b"__redis__:invalidate", [key.encode()]] in available(listener)

        late = count_late(ROUNDS // 2, on_time, listener)
        assert late == 0, f"{late} of {ROUNDS // 2} invalidations came after the writer's reply"
    finally:
        writer.close()
        tracker.close()
        listener.close()


def confirm(c: RespClient, *args: str) -> None:
    """Send a (un)subscribe or CLIENT TRACKING and read up to its reply
    (dropping the messages before it)."""
    c.send(*args)
    name = args[0].lower().encode()
    while True:
        reply = c.read_reply()
        if reply == b"OK" or (isinstance(reply, list) and reply[0] == name):
            return


@pytest.mark.parametrize(("sub_on", "writer_on"), [(0, 1), (1, 0), (0, 0)])
def test_a_write_right_after_the_first_subscribe_is_heard(server, notifications, sub_on, writer_on) -> None:
    """An acceptor asks the shards for events only while a client of its
    own may hear them: its first such PSUBSCRIBE replies once every shard
    has the new interest, so a write through either acceptor right after
    the reply is heard, before the writer's reply.  Each round starts with
    no subscriber at all."""
    writer = client_on(server.port, writer_on)
    sub = client_on(server.port, sub_on)
    try:

        def on_time(i: int) -> bool:
            confirm(sub, "PSUBSCRIBE", "__keyspace@0__:first*")
            key = f"first-{sub_on}{writer_on}-{i}"  # the keys fall on both shards
            assert writer.command("SET", key, "v") == b"OK"
            heard = [b"pmessage", b"__keyspace@0__:first*", b"__keyspace@0__:" + key.encode(), b"set"]
            got = available(sub)
            confirm(sub, "PUNSUBSCRIBE", "__keyspace@0__:first*")  # nobody listens: the shards stop noting
            return heard in got

        late = count_late(ROUNDS, on_time, sub)
        assert late == 0, f"{late} of {ROUNDS} writes right after the subscribe were not heard in time"
    finally:
        writer.close()
        sub.close()


@pytest.mark.parametrize(("tracker_on", "writer_on"), [(1, 0), (0, 1), (0, 0)])
def test_a_write_right_after_tracking_on_bcast_is_invalidated(server, tracker_on, writer_on) -> None:
    """The same for CLIENT TRACKING on BCAST, which hears of keys it never
    read: a write right after its reply is invalidated before the writer's
    reply (BCAST's invalidations are sent once per flush, before the
    replies, as Redis's beforeSleep sends them)."""
    writer = client_on(server.port, writer_on)
    tracker = client_on(server.port, tracker_on, protocol=3)
    try:

        def on_time(i: int) -> bool:
            confirm(tracker, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "bcast-")
            key = f"bcast-{tracker_on}{writer_on}-{i}"
            assert writer.command("SET", key, "v") == b"OK"
            got = available(tracker)
            confirm(tracker, "CLIENT", "TRACKING", "off")
            return [b"invalidate", [key.encode()]] in got

        late = count_late(ROUNDS // 2, on_time, tracker)
        assert late == 0, f"{late} of {ROUNDS // 2} invalidations came after the writer's reply"
    finally:
        writer.close()
        tracker.close()


def blocked_clients(c: RespClient) -> int:
    info = c.command("INFO", "clients")
    assert isinstance(info, bytes)
    return int(info.split(b"blocked_clients:")[1].split(b"\r\n")[0])


@pytest.mark.parametrize("writer_on", [0, 1])
def test_a_served_blocked_commands_events_are_out_before_the_pushs_reply(
    server, notifications, writer_on
) -> None:
    """A BLPOP served by an LPUSH empties the list: Redis notes the ``del``
    right after the LPUSH, before its reply.  Here the blocked command is
    served after the writer's batch; with notify-keyspace-events K$g only
    that ``del`` (not the ``lpush``) goes to the subscriber on the other
    acceptor, and the LPUSH's reply waits for it all the same."""
    writer = client_on(server.port, writer_on)
    blocker = client_on(server.port, writer_on)  # one pipe: the BLPOP reaches the shard first
    sub = client_on(server.port, 1 - writer_on)
    try:
        sub.command("PSUBSCRIBE", "__keyspace@0__:served*")
        settle(writer, sub, "served-warm")

        def on_time(i: int) -> bool:
            key = f"served-{writer_on}-{i}"  # the keys fall on both shards
            blocker.send("BLPOP", key, 0)
            deadline = time.monotonic() + 10
            while blocked_clients(writer) < 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert writer.command("LPUSH", key, "x") == 1
            got = available(sub)
            assert blocker.read_reply() == [key.encode(), b"x"]
            return [b"pmessage", b"__keyspace@0__:served*", b"__keyspace@0__:" + key.encode(), b"del"] in got

        late = count_late(ROUNDS // 3, on_time, sub)
        assert late == 0, f"{late} of {ROUNDS // 3} served BLPOPs' events came after the LPUSH's reply"
    finally:
        writer.close()
        blocker.close()
        sub.close()


def redirected(listener: RespClient, key: str) -> bool:
    """Whether ``listener``'s socket already holds an invalidation of ``key``
    (alone or among others: BCAST sends one message per prefix per flush)."""
    return any(
        m[:2] == [b"message", INVALIDATE] and isinstance(m[2], list) and key.encode() in m[2]
        for m in available(listener)
    )


# (target, tracking client, writer): each elsewhere; the writer with the
# target; the writer with the tracking client; all on one acceptor.
PLACES = [(0, 1, 2), (0, 1, 0), (0, 1, 1), (0, 0, 1), (0, 0, 0)]


@contextlib.contextmanager
def redirect_trio(port: int, places: tuple[int, int, int], *tracking: object) -> Iterator[tuple]:
    """A RESP2 subscriber of ``__redis__:invalidate`` (the target), a client
    with ``CLIENT TRACKING on <tracking...> REDIRECT <target>`` and a
    writer, on the given acceptors of three: (target, tracker, writer)."""
    target_on, tracker_on, writer_on = places
    listener = client_on(port, target_on, k=3)
    tracker = client_on(port, tracker_on, k=3)
    writer = client_on(port, writer_on, k=3)
    try:
        listener_id = int(listener.command("CLIENT", "ID"))  # type: ignore[arg-type]
        listener.command("SUBSCRIBE", "__redis__:invalidate")
        reply = tracker.command("CLIENT", "TRACKING", "on", *tracking, "REDIRECT", listener_id)
        assert reply == b"OK"
        yield listener, tracker, writer
    finally:
        writer.close()
        tracker.close()
        listener.close()


@pytest.mark.parametrize("prefix", [None, "bcr-"])
@pytest.mark.parametrize(("target_on", "tracker_on", "writer_on"), PLACES)
def test_a_bcast_redirected_invalidation_is_out_before_the_writers_reply(
    server3, prefix, target_on, tracker_on, writer_on
) -> None:
    """CLIENT TRACKING on BCAST (with or without PREFIX) REDIRECT to a RESP2
    subscriber of ``__redis__:invalidate``, with three acceptors: Redis
    writes the invalidation to the target's socket before the writer's
    reply, wherever the three clients sit."""
    options = ["BCAST", "PREFIX", prefix] if prefix else ["BCAST"]
    with redirect_trio(server3.port, (target_on, tracker_on, writer_on), *options) as (
        listener,
        tracker,
        writer,
    ):
        rounds = ROUNDS // 2

        def on_time(i: int) -> bool:
            key = f"bcr-{target_on}{tracker_on}{writer_on}-{i}"  # the keys fall on both shards
            assert writer.command("SET", key, "v") == b"OK"
            return redirected(listener, key)

        late = count_late(rounds, on_time, listener)
        assert late == 0, f"{late} of {rounds} invalidations came after the writer's reply"


@pytest.mark.parametrize("bcast", [False, True])
@pytest.mark.parametrize(("target_on", "tracker_on", "writer_on"), PLACES[:3])
def test_a_multi_shard_commands_redirected_invalidations_are_out_before_its_reply(
    server3, bcast, target_on, tracker_on, writer_on
) -> None:
    """The same for an MSET of keys on both shards (its events are handed
    out by the writer's acceptor, and relayed to the others, which may
    hand them on to the target's), with BCAST or keys read first."""
    options = ["BCAST", "PREFIX", "bcm-"] if bcast else []
    with redirect_trio(server3.port, (target_on, tracker_on, writer_on), *options) as (
        listener,
        tracker,
        writer,
    ):
        rounds = ROUNDS // 3

        def on_time(i: int) -> bool:
            keys = [
                f"bcm-{target_on}{tracker_on}{writer_on}{int(bcast)}-{i}-{j}" for j in range(4)
            ]  # both shards
            if not bcast:
                for key in keys:
                    tracker.command("GET", key)
            assert writer.command("MSET", *[x for k in keys for x in (k, "v")]) == b"OK"
            got = [k for m in available(listener) if m[:2] == [b"message", INVALIDATE] for k in m[2]]
            return sorted(got) == sorted(k.encode() for k in keys)

        late = count_late(rounds, on_time, listener)
        assert late == 0, f"{late} of {rounds} MSETs' invalidations came after the reply"


@pytest.mark.parametrize(("target_on", "tracker_on", "writer_on"), PLACES[:3])
def test_a_redirected_invalidation_is_out_before_the_reply_with_three_acceptors(
    server3, target_on, tracker_on, writer_on
) -> None:
    """The same without BCAST: the tracking client read the key first."""
    with redirect_trio(server3.port, (target_on, tracker_on, writer_on)) as (listener, tracker, writer):
        rounds = ROUNDS // 2

        def on_time(i: int) -> bool:
            key = f"r3-{target_on}{tracker_on}{writer_on}-{i}"
            tracker.command("GET", key)
            assert writer.command("SET", key, "v") == b"OK"
            return redirected(listener, key)

        late = count_late(rounds, on_time, listener)
        assert late == 0, f"{late} of {rounds} invalidations came after the writer's reply"


@pytest.mark.parametrize("bcast", [False, True])
@pytest.mark.parametrize("writer_on", [0, 1])
def test_a_served_blocked_commands_invalidation_is_out_before_the_pushs_reply(
    server, writer_on, bcast
) -> None:
    """BLMOVE src dst served by an LPUSH of src writes dst: Redis serves it
    (and invalidates dst) before it writes the LPUSH's reply.  Here the
    served command runs after the writer's batch, and its events are
    handed out on the writer's acceptor after the batch's replies; the
    tracking client there redirects to a subscriber on the other acceptor,
    and the LPUSH's reply waits for that acceptor all the same."""
    writer = client_on(server.port, writer_on)
    blocker = client_on(server.port, writer_on)  # one pipe: the BLMOVE reaches the shard first
    tracker = client_on(server.port, writer_on)
    listener = client_on(server.port, 1 - writer_on)
    try:
        listener_id = int(listener.command("CLIENT", "ID"))  # type: ignore[arg-type]
        listener.command("SUBSCRIBE", "__redis__:invalidate")
        options = ["BCAST", "PREFIX", "{moved"] if bcast else []
        assert tracker.command("CLIENT", "TRACKING", "on", *options, "REDIRECT", listener_id) == b"OK"
        rounds = ROUNDS // 3

        def on_time(i: int) -> bool:
            src, dst = (
                f"{{moved-{writer_on}{int(bcast)}-{i}}}{name}" for name in ("src", "dst")
            )  # one shard
            if not bcast:
                tracker.command("GET", dst)
            blocker.send("BLMOVE", src, dst, "LEFT", "LEFT", 0)
            deadline = time.monotonic() + 10
            while blocked_clients(writer) < 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert writer.command("LPUSH", src, "x") == 1
            on_time = redirected(listener, dst)
            assert blocker.read_reply() == b"x"
            return on_time

        late = count_late(rounds, on_time, listener)
        assert late == 0, f"{late} of {rounds} served BLMOVEs' invalidations came after the LPUSH's reply"
    finally:
        writer.close()
        blocker.close()
        tracker.close()
        listener.close()


def _next_within(c: RespClient, wait: float) -> bytes | None:
    """The bytes of ``c``'s next message, if one comes within ``wait`` seconds."""
    timeout = c.sock.gettimeout()
    c.sock.settimeout(wait)
    try:
        return c.read()
    except TimeoutError:
        return None
    finally:
        c.sock.settimeout(timeout)


def _served_then_invalidated(
    port: int, k: int, places: tuple[int, int, int, int], who: str, resp3: bool, pids: dict[int, int] | None
) -> tuple[bytes, bytes | None]:
    """x, on acceptor ``places[0]`` of ``k``, waits in ``BLPOP {t}l 0``; the
    tracker of ``{t}s`` is x (``who`` "x") or another client on x's acceptor
    ("beside"), redirecting to r (``places[1]``: RESP3, or a RESP2
    subscriber of ``__redis__:invalidate``), or that other client itself,
    RESP3 ("own"); w (``places[2]``) sends ``RPUSH {t}l v`` and ``SET {t}s
    1`` in one write, while the acceptor ``places[3]``, where a client
    tracks keys (so it wants the batch's events), is stopped (SIGSTOP, for
    up to a second; ``pids`` None: redis-server, nothing stopped).  Or the
    client beside x tracks ``{t}s`` with BCAST (PREFIX ``{t}s``), told
    itself, RESP3 ("bcast-own"), or redirecting to r ("bcast"); or
    subscribes to ``__keyspace@0__:{t}s`` ("keyspace", with
    notify-keyspace-events ``K$``).  Returns the message heard and what x
    had a moment after it came (None: nothing yet)."""
    x_on, r_on, w_on, stopped_on = places
    x = client_on(port, x_on, k=k)
    r = client_on(port, r_on, protocol=3 if resp3 else 2, k=k)
    w = client_on(port, w_on, k=k)
    u = client_on(port, stopped_on, protocol=3, k=k)
    own = who in ("own", "bcast-own", "keyspace")
    t = x if who == "x" else client_on(port, x_on, protocol=3 if own and who != "keyspace" else 2, k=k)
    listener = t if own else r
    stopped = pids[stopped_on] if pids is not None else None
    try:
        w.command("DEL", "{t}l", "{t}s")
        assert u.command("CLIENT", "TRACKING", "on") == b"OK"
        rid = int(r.command("CLIENT", "ID"))  # type: ignore[arg-type]
        if not resp3:
            r.command("SUBSCRIBE", INVALIDATE)
        if who == "keyspace":
            assert w.command("CONFIG", "SET", "notify-keyspace-events", "K$") == b"OK"
            t.command("SUBSCRIBE", "__keyspace@0__:{t}s")
        else:
            redirect = [] if own else ["REDIRECT", rid]
            bcast = ["BCAST", "PREFIX", "{t}s"] if who.startswith("bcast") else []
            assert t.command("CLIENT", "TRACKING", "on", *bcast, *redirect) == b"OK"
            assert t.command("GET", "{t}s") is None
        x.send("BLPOP", "{t}l", 0)
        deadline = time.monotonic() + 10
        while blocked_clients(w) < 1:
            assert time.monotonic() < deadline, "x never blocked"
            time.sleep(0.005)
        if stopped is not None:
            os.kill(stopped, signal.SIGSTOP)
        try:
            w.sock.sendall(encode_command("RPUSH", "{t}l", "v") + encode_command("SET", "{t}s", 1))
            heard = _next_within(
                listener, 1.0
            )  # (the stopped acceptor holds x's reply up to bus.ANSWER_WITHIN)
            reply = _next_within(x, 0.3) if heard is not None else None
        finally:
            if stopped is not None:
                os.kill(stopped, signal.SIGCONT)
        if heard is None:
            heard = _next_within(listener, 10)
            assert heard is not None, "nothing heard of {t}s"
            reply = _next_within(x, 0.3)
        assert w.read_reply() == 1
        assert w.read_reply() == b"OK"
        return heard, reply
    finally:
        if who == "keyspace":
            w.command("CONFIG", "SET", "notify-keyspace-events", "")
        for c in {x, r, w, u, t}:
            c.close()


# (k, (x, its REDIRECT target r, the writer, the stopped acceptor that wants
# the events too), who tracks {t}s, r's RESP3): r on another acceptor than
# x (of three), the writer with x or with r; r beside x (of two); another
# client beside x tracking the key, redirecting to r or told itself.
SERVED_CASES = {
    "elsewhere-resp2": (3, (0, 1, 0, 2), "x", False),
    "elsewhere-resp3": (3, (0, 1, 0, 2), "x", True),
    "elsewhere-with-writer": (3, (0, 1, 1, 2), "x", False),
    "beside-resp2": (2, (0, 0, 0, 1), "x", False),
    "beside-resp3": (2, (0, 0, 0, 1), "x", True),
    "another-tracker": (3, (0, 1, 0, 2), "beside", False),
    "another-tracker-own": (2, (0, 0, 0, 1), "own", False),
    "bcast-own": (2, (0, 0, 0, 1), "bcast-own", False),
    "bcast-redirect": (2, (0, 0, 0, 1), "bcast", False),
    "bcast-elsewhere": (3, (0, 1, 0, 2), "bcast", False),
    "keyspace-subscriber": (2, (0, 0, 0, 1), "keyspace", False),
    "keyspace-subscriber-writer-elsewhere": (3, (0, 0, 1, 2), "keyspace", False),
}


@pytest.mark.parametrize("case", list(SERVED_CASES))
def test_a_served_blocked_clients_redirect_target_hears_a_later_change_after_its_reply(
    request, ports, case
) -> None:
    """x, blocked in BLPOP, tracks ``{t}s`` with REDIRECT to r (or another
    client beside x tracks it); one write pushes to x's list and then
    sets ``{t}s``: Redis serves x (its reply) as the push ends, before it
    runs the SET, so once the invalidation of ``{t}s`` is heard x has its
    reply.  Here x's reply waits (a ``J`` frame) for an acceptor that
    wants the batch's events; since 7 December (1b31933) x's acceptor sent
    the invalidation at once, heard while x's reply waited (for as long as
    that acceptor was stopped); now it waits for x's reply
    (``tracking._after_served_reply``).  So do a BCAST tracker's and a
    keyspace subscriber's beside x (``pubsub.after_written``)."""
    k, places, who, resp3 = SERVED_CASES[case]
    server = request.getfixturevalue("server3" if k == 3 else "server")
    theirs = _served_then_invalidated(ports["redis"], 1, places, who, resp3, None)
    assert theirs[1] is not None, "redis-server: the invalidation came before x had its reply"
    pids = acceptor_pids(server)
    assert len(pids) == k
    assert _served_then_invalidated(server.port, k, places, who, resp3, pids) == theirs


def _key_beside_t() -> bytes:
    """A key of the other shard (of two) than ``{t}``'s."""
    tshard = Router(2).shard_of(b"{t}l")
    return next(b"a%d" % i for i in range(100) if Router(2).shard_of(b"a%d" % i) != tshard)


@contextlib.contextmanager
def _stopped(pid: int | None) -> Iterator[None]:
    """Process ``pid`` stopped (SIGSTOP) while the block runs; None
    (redis-server): nothing stopped."""
    if pid is not None:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGCONT)


def _blpop_behind_get(x: RespClient, xid: int, key: bytes, poller: RespClient) -> float:
    """x pipelines ``GET <key>`` and ``BLPOP {t}l 0``; returns once
    ``poller`` (on x's acceptor) sees x blocked, with the deadline (10 s
    from the sending) for what the caller waits on next.  (CLIENT LIST's
    flags: INFO would wait for a stopped worker.)"""
    x.sock.sendall(encode_command("GET", key) + encode_command("BLPOP", "{t}l", 0))
    deadline = time.monotonic() + 10
    while not re.search(rb" flags=\S*b", poller.command("CLIENT", "LIST", "ID", xid)):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, "x never blocked"
        time.sleep(0.005)
    return deadline


def _served_behind_an_earlier_reply(
    port: int, k: int, who: str, worker: int | None, later: bool = False
) -> tuple[bytes, bytes | None]:
    """x, on acceptor 0, pipelines ``GET <key>`` (a key of the other shard
    than ``{t}``'s, whose worker (pid ``worker``; None: redis-server) is
    stopped, for up to a second) and ``BLPOP {t}l 0``; the tracker of
    ``{t}s`` (x, or another client beside it: ``who``) redirects to r on
    acceptor ``k - 1``; w sends ``RPUSH {t}l v`` and ``SET {t}s 1`` in one
    write once x blocked (``later``: the SET once the RPUSH's reply came).
    Returns r's first message and x's first reply a moment after r got it
    (None: nothing yet)."""
    key = _key_beside_t()
    x = client_on(port, 0, k=k)
    r = client_on(port, k - 1, k=k)
    w = client_on(port, 0, k=k)
    t = x if who == "x" else client_on(port, 0, k=k)
    try:
        w.command("DEL", "{t}l", "{t}s", key)
        xid = int(x.command("CLIENT", "ID"))  # type: ignore[arg-type]
        rid = int(r.command("CLIENT", "ID"))  # type: ignore[arg-type]
        r.command("SUBSCRIBE", INVALIDATE)
        assert t.command("CLIENT", "TRACKING", "on", "REDIRECT", rid) == b"OK"
        assert t.command("GET", "{t}s") is None
        with _stopped(worker):
            _blpop_behind_get(x, xid, key, w)
            if later:
                assert w.command("RPUSH", "{t}l", "v") == 1
                w.sock.sendall(encode_command("SET", "{t}s", 1))
            else:
                w.sock.sendall(encode_command("RPUSH", "{t}l", "v") + encode_command("SET", "{t}s", 1))
            heard = _next_within(r, 1.0)
            reply = _next_within(x, 0.3) if heard is not None else None
        if heard is None:
            heard = _next_within(r, 10)
            assert heard is not None, "r heard nothing of {t}s"
            reply = _next_within(x, 0.3)
        if not later:
            assert w.read_reply() == 1
        assert w.read_reply() == b"OK"
        return heard, reply
    finally:
        for c in {x, r, w, t}:
            c.close()


@pytest.mark.parametrize("who", ["x", "beside"])
def test_a_served_blocked_clients_reply_behind_an_earlier_one_is_written_before_a_later_invalidation(
    ports, server, who
) -> None:
    """As above, but x's reply waits behind the reply of a command x sent
    before it (its GET, on a stopped worker) rather than in a J frame:
    Redis answered that GET before it ran the BLPOP, so once r hears of
    ``{t}s`` x has both replies.  ``_OneShard._written`` ran what waited
    for x's reply once that reply came, written or not: r heard first,
    for as long as the worker was stopped; now it waits until x's reply
    is written (``blocking._AfterWritten``)."""
    theirs = _served_behind_an_earlier_reply(ports["redis"], 1, who, None)
    assert theirs[1] is not None, "redis-server: r heard before x had its replies"
    worker = worker_pid(server, 1 - Router(2).shard_of(b"{t}l"))
    assert _served_behind_an_earlier_reply(server.port, K, who, worker) == theirs


@pytest.mark.parametrize("who", ["x", "beside"])
def test_a_served_blocked_clients_reply_behind_an_earlier_one_is_written_before_a_later_writes_invalidation(
    ports, server, who
) -> None:
    """As above, but the SET comes in a later write, once the RPUSH's reply
    came (so x's reply came too, waiting behind its GET's): Redis had
    written both of x's replies before it ran the SET.  It still waits
    until x's reply is written (``_OneShard.unwritten``:
    ``pubsub.served_before`` keeps it until then)."""
    theirs = _served_behind_an_earlier_reply(ports["redis"], 1, who, None, later=True)
    assert theirs[1] is not None, "redis-server: r heard before x had its replies"
    worker = worker_pid(server, 1 - Router(2).shard_of(b"{t}l"))
    assert _served_behind_an_earlier_reply(server.port, K, who, worker, later=True) == theirs


@pytest.fixture(scope="module")
def server1() -> Iterator[ServerProcess]:
    """One acceptor."""
    yield from serve(1)


def _served_behind_then_notified(
    port: int, k: int, places: tuple[int, int, int], worker: int | None
) -> tuple[bytes, bytes | None]:
    """x (on acceptor ``places[0]`` of ``k``) pipelines ``GET <key>`` (a
    key of the other shard than ``{t}``'s, whose worker (pid ``worker``;
    None: redis-server) is stopped, for up to a second) and ``BLPOP {t}l
    0``; s (``places[1]``) alone listens, subscribed to
    ``__keyspace@0__:{t}s`` with notify-keyspace-events ``K$`` (not the
    list's class: no one notes the served BLPOP's events); w
    (``places[2]``) sends ``RPUSH {t}l v`` and ``SET {t}s 1`` in one write
    once x blocked.  Returns s's first message and x's first reply a
    moment after s got it (None: nothing yet)."""
    x_on, s_on, w_on = places
    key = _key_beside_t()
    x = client_on(port, x_on, k=k)
    s = client_on(port, s_on, k=k)
    w = client_on(port, w_on, k=k)
    p = client_on(port, x_on, k=k)  # (polls x's flags: CLIENT LIST of x's own acceptor)
    try:
        w.command("DEL", "{t}l", "{t}s", key)
        assert w.command("CONFIG", "SET", "notify-keyspace-events", "K$") == b"OK"
        xid = int(x.command("CLIENT", "ID"))  # type: ignore[arg-type]
        s.command("SUBSCRIBE", "__keyspace@0__:{t}s")
        with _stopped(worker):
            _blpop_behind_get(x, xid, key, p)
            w.sock.sendall(encode_command("RPUSH", "{t}l", "v") + encode_command("SET", "{t}s", 1))
            heard = _next_within(s, 1.0)
            reply = _next_within(x, 0.3) if heard is not None else None
        if heard is None:
            heard = _next_within(s, 10)
            assert heard is not None, "s heard nothing of {t}s"
            reply = _next_within(x, 0.3)
        assert w.read_reply() == 1
        assert w.read_reply() == b"OK"
        return heard, reply
    finally:
        w.command("CONFIG", "SET", "notify-keyspace-events", "")
        for c in (x, s, w, p):
            c.close()


# (k, (x, the keyspace subscriber, the writer)): one acceptor; two, x on
# either, the writer with x or not.
NOTIFIED_CASES = {
    "one-acceptor": (1, (0, 0, 0)),
    "beside-x0-writer0": (2, (0, 0, 0)),
    "beside-x0-writer1": (2, (0, 0, 1)),
    "beside-x1-writer0": (2, (1, 1, 0)),
    "beside-x1-writer1": (2, (1, 1, 1)),
}


@pytest.mark.parametrize("case", list(NOTIFIED_CASES))
def test_a_served_blocked_clients_reply_is_written_before_a_later_keyspace_notification(
    request, ports, case
) -> None:
    """As above, but the only listener is a keyspace subscriber beside x
    whose classes (``K$``) do not include the served BLPOP's: Redis serves
    x as the RPUSH ends, after the GET's reply, so once s hears of
    ``{t}s`` x has both replies.  The shard did not report the serve
    where no one noted the served command's events, and s heard at once,
    for as long as the GET's worker was stopped; now the shard notes a
    served command's events for its client's acceptor whenever that
    acceptor wants any (``blocking._serve``), and the notification waits
    for x's reply (``pubsub.served_before``)."""
    k, places = NOTIFIED_CASES[case]
    server = request.getfixturevalue("server1" if k == 1 else "server")
    theirs = _served_behind_then_notified(ports["redis"], 1, (0, 0, 0), None)
    assert theirs[1] is not None, "redis-server: s heard before x had its replies"
    worker = worker_pid(server, 1 - Router(2).shard_of(b"{t}l"))
    assert _served_behind_then_notified(server.port, k, places, worker) == theirs


class Monitor:
    """A raw MONITOR connection on acceptor ``index``, read line by line."""

    def __init__(self, port: int, index: int, k: int = 2) -> None:
        self.index = index
        self.conn = client_on(port, index, k=k)
        self.conn.sock.settimeout(10)
        assert self.conn.command("MONITOR") == b"OK"
        self.buf = b""

    def holds_now(self, word: bytes) -> bool:
        """Whether a line quoting ``word`` is already in the connection (read
        without waiting; nothing is taken off)."""
        self.conn.sock.setblocking(False)
        try:
            while True:
                try:
                    chunk = self.conn.sock.recv(65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                self.buf += chunk
        finally:
            self.conn.sock.settimeout(10)
        return b'"%s"' % word in self.buf

    def first_of(self, a: bytes, b: bytes) -> bytes:
        """Which of the two quoted arguments shows first (the lines of
        other commands are skipped); reads until both showed."""
        seen: list[bytes] = []
        while len(seen) < 2:
            while b"\r\n" not in self.buf:
                chunk = self.conn.sock.recv(65536)
                assert chunk, "the monitor's connection closed"
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            seen += [w for w in (a, b) if b'"%s"' % w in line]
        return seen[0]

    def close(self) -> None:
        self.conn.close()


# A script whose call's line (``"SET" "<key>" "<key>!"``) quotes what
# its EVAL line does not.
SET_IN_LUA = "redis.call('SET', KEYS[1], KEYS[1] .. '!')"


def count_reordered(
    port: int,
    monitors: list[Monitor],
    setter_on: int,
    echoer_on: int,
    tag: str,
    k: int = 2,
    lua: bool = False,
) -> int:
    """``SET`` (``lua``: an EVAL that calls it) through acceptor
    ``setter_on``, its reply read, then ``ECHO`` through ``echoer_on``,
    ROUNDS // 5 times: in how many rounds some monitor on another acceptor
    did not have the SET's line yet when its reply came, or one showed the
    ECHO before it
    (Redis writes the line before the reply, so a command sent after the
    reply shows after it)."""
    setter, echoer = client_on(port, setter_on, k=k), client_on(port, echoer_on, k=k)
    try:
        reordered = 0
        for i in range(ROUNDS // 5):
            p, e = f"p-{tag}-{i}".encode(), f"e-{tag}-{i}".encode()
            if lua:
                assert setter.command("EVAL", SET_IN_LUA, 1, p) is None
                p += b"!"
            else:
                assert setter.command("SET", p, "x") == b"OK"
            # (A monitor of the SET's own acceptor gets the line in the same
            # turn as the reply, written just after it, as in Redis.)
            late = not all(m.holds_now(p) for m in monitors if m.index != setter_on)
            assert echoer.command("ECHO", e) == e
            reordered += late or any(m.first_of(p, e) == e for m in monitors)
        return reordered
    finally:
        setter.close()
        echoer.close()


@pytest.mark.parametrize(("setter_on", "echoer_on"), [(1, 0), (0, 1), (1, 1)])
def test_a_monitor_shows_a_command_before_one_sent_after_its_reply(server, setter_on, echoer_on) -> None:
    """The scenario of benchmarks/monitor_order.py: a monitor on acceptor 0.
    The SET's line came from acceptor 1 through the bus, sent without
    waiting, so the ECHO's (written by acceptor 0 at once) overtook it in
    every round before the SET's reply waited for the line."""
    monitor = Monitor(server.port, 0)
    try:
        reordered = count_reordered(server.port, [monitor], setter_on, echoer_on, f"{setter_on}{echoer_on}")
        assert reordered == 0, f"the SET's line was late in {reordered} of {ROUNDS // 5} rounds"
    finally:
        monitor.close()


@pytest.mark.parametrize(("setter_on", "echoer_on"), [(1, 0), (0, 1)])
def test_a_monitor_shows_a_scripts_calls_before_a_command_sent_after_its_reply(
    server, setter_on, echoer_on
) -> None:
    """As above, the SET called by a script: its ``[0 lua]`` line comes
    into the place the EVAL's line left for it (on the other acceptor, a
    place that acceptor 1 sends on before the line itself), ahead of the
    ECHO's."""
    monitor = Monitor(server.port, 0)
    try:
        reordered = count_reordered(
            server.port, [monitor], setter_on, echoer_on, f"lua{setter_on}{echoer_on}", lua=True
        )
        assert reordered == 0, f"the SET's line was late in {reordered} of {ROUNDS // 5} rounds"
    finally:
        monitor.close()


def test_monitors_on_three_acceptors_show_one_order(server3) -> None:
    """A monitor on every acceptor of three; the SET through each in turn,
    the ECHO through the next: every monitor shows the SET first."""
    monitors = [Monitor(server3.port, i, k=3) for i in range(3)]
    try:
        for setter_on in range(3):
            echoer_on = (setter_on + 1) % 3
            reordered = count_reordered(server3.port, monitors, setter_on, echoer_on, f"3-{setter_on}", k=3)
            assert reordered == 0, (
                f"SET on {setter_on}, ECHO on {echoer_on}: its line late in {reordered} rounds"
            )
    finally:
        for m in monitors:
            m.close()


def _message(channel: bytes, message: bytes) -> bytes:
    return b"*3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(message),
        message,
    )


def _set_event(key: bytes) -> bytes:
    return (
        b"*4\r\n$8\r\npmessage\r\n$16\r\n__keyevent@0__:*\r\n$18\r\n__keyevent@0__:set\r\n$%d\r\n%s\r\n"
        % (
            len(key),
            key,
        )
    )


def _heard(sub, last: bytes) -> bytes:
    out, _ = read_through(sub, last)
    assert out.endswith(last), out
    return out


@pytest.mark.parametrize("keys", [[b"k"], [b"a", b"b"]], ids=["set", "mset-two-shards"])
def test_a_held_publish_reaches_the_other_acceptor_after_its_writes_events(server, keys) -> None:
    """A client on acceptor 0 pipelines a write (SET, or MSET of keys on
    both shards) and ``PUBLISH q m``; a subscriber to q and every key
    event on each acceptor.  Redis writes the write's events before it
    reads the PUBLISH, so both subscribers hear them before m.  Acceptor
    0 released the held PUBLISH (pubsub._HeldPublish) as it handed the
    events out itself, before the other acceptor had (the SET's reached
    it on its shard's pipe, the MSET's were relayed on the bus after the
    PUBLISH): the message could overtake them there, as other clients'
    traffic kept that acceptor busy (0 to 7 rounds in 150 of a stress).
    Here acceptor 1 is stopped while acceptor 0 runs the pair, once a bus
    message is waiting for it, so that it reads the bus before its shard's
    pipe when it runs again: before the fix it heard m first in nearly
    every round.  (The MSET's rounds wait for acceptor 1 up to the bus's
    ANSWER_WITHIN, then go on: its events are on the bus ahead of m.)"""
    assert len({Router(2).shard_of(key) for key in keys}) == len(keys)
    write = b"MSET " + b" ".join(key + b" v" for key in keys) if len(keys) > 1 else b"SET %s v" % keys[0]
    c, _ = raw_on(server.port, 0)
    x, _ = raw_on(server.port, 0)
    y, _ = raw_on(server.port, 0)
    sub0, _ = raw_on(server.port, 0)
    sub1, _ = raw_on(server.port, 1)
    stopped = 0
    try:
        pid = acceptor_pids(server)[1]
        c.sendall(b"CONFIG SET notify-keyspace-events KEA\r\n")
        assert _heard(c, b"+OK\r\n") == b"+OK\r\n"
        for sub, channels in ((sub0, b"q x"), (sub1, b"q")):
            sub.sendall(b"SUBSCRIBE %s\r\nPSUBSCRIBE __keyevent@0__:*\r\n" % channels)
            _heard(
                sub,
                b"*3\r\n$10\r\npsubscribe\r\n$16\r\n__keyevent@0__:*\r\n:%d\r\n"
                % (1 + len(channels.split())),
            )
        checked = tried = 0
        while checked < 3:
            tried += 1
            assert tried <= 10, f"only {checked} of {tried} rounds were quick enough to check anything"
            m = b"m%d" % tried
            os.kill(pid, signal.SIGSTOP)
            stopped, since = pid, time.monotonic()
            x.sendall(b"PUBLISH x a\r\n")  # (waiting on acceptor 1's bus, ahead of what comes next)
            _heard(sub0, _message(b"x", b"a"))
            c.sendall(write + b"\r\nPUBLISH q " + m + b"\r\n")
            _heard(sub0, _set_event(keys[-1]))  # (acceptor 0 handed the write's events out)
            y.sendall(b"PUBLISH x b\r\n")  # (whatever acceptor 0 sent on the bus before is on its way)
            early = _message(b"q", m) in _heard(sub0, _message(b"x", b"b"))
            quick = time.monotonic() - since < ANSWER_WITHIN / 2  # (not yet given up on acceptor 1)
            os.kill(pid, signal.SIGCONT)
            stopped = 0
            heard = _heard(sub1, _message(b"q", m))
            if not early:
                _heard(sub0, _message(b"q", m))
            assert _heard(c, b":2\r\n").endswith(b":2\r\n")
            for publisher in (x, y):
                assert _heard(publisher, b":1\r\n").endswith(b":1\r\n")
            if not quick and len(keys) == 1:
                continue  # (the SET's reply went without acceptor 1's answer: nothing to check)
            checked += 1
            for key in keys:
                assert _set_event(key) in heard, heard
    finally:
        if stopped:
            os.kill(stopped, signal.SIGCONT)
        with RespClient(server.port) as admin:
            admin.command("CONFIG", "SET", "notify-keyspace-events", "")
        for sock in (c, x, y, sub0, sub1):
            sock.close()


def _held_then_unsubscribed(port: int, k: int, worker: int | None, publish: bool = False) -> list[bytes]:
    """s, on acceptor 0, subscribes to ``__keyspace@0__:{t}s``; x, beside
    it, pipelines ``GET <key>`` (the other shard's, whose worker (pid
    ``worker``; None: redis-server) is stopped, for up to a second) and
    ``BLPOP {t}l 0``; once x blocked, w pushes to ``{t}l`` and then sets
    ``{t}s`` (``notify-keyspace-events Kl$``: the push's events reach
    acceptor 0 too), and s unsubscribes (``publish``: p, on acceptor
    ``k - 1``, reads ``{t}s`` set and publishes to s's channel).  Returns
    s's next two messages (the unsubscribe's reply may wait until the
    worker goes on)."""
    key = _key_beside_t()
    x = client_on(port, 0, k=k)
    s = client_on(port, 0, k=k)
    w = client_on(port, 0, k=k)
    p = client_on(port, k - 1, k=k)
    try:
        w.command("DEL", "{t}l", "{t}s", key)
        assert w.command("CONFIG", "SET", "notify-keyspace-events", "Kl$") == b"OK"
        xid = int(x.command("CLIENT", "ID"))  # type: ignore[arg-type]
        s.command("SUBSCRIBE", "__keyspace@0__:{t}s")
        with _stopped(worker):
            deadline = _blpop_behind_get(x, xid, key, w)
            assert w.command("RPUSH", "{t}l", "v") == 1
            w.sock.sendall(encode_command("SET", "{t}s", 1))
            time.sleep(0.2)  # (the SET's event reaches s's acceptor: nothing to poll)
            if publish:
                while p.command("GET", "{t}s") != b"1":
                    assert time.monotonic() < deadline, "{t}s never set"
                    time.sleep(0.005)
                assert p.command("PUBLISH", "__keyspace@0__:{t}s", "hello") == 1
            else:
                s.sock.sendall(encode_command("UNSUBSCRIBE", "__keyspace@0__:{t}s"))
            first = _next_within(s, 1.0)
        heard = [first] if first is not None else []
        while len(heard) < 2 and (more := _next_within(s, 10)) is not None:
            heard.append(more)
        assert w.read_reply() == b"OK"
        return heard
    finally:
        w.command("CONFIG", "SET", "notify-keyspace-events", "")
        for c in (x, s, w, p):
            c.close()


def test_a_held_keyspace_message_is_not_heard_after_its_unsubscribe(ports, server) -> None:
    """A keyspace message of a change after x was served waits while x's
    reply waits behind an earlier one (``pubsub.after_written``); its
    subscriber then unsubscribes.  Redis wrote the message before it ran
    the UNSUBSCRIBE, and never sends a channel's message after confirming
    the unsubscribe."""
    theirs = _held_then_unsubscribed(ports["redis"], 1, None)
    assert theirs[0] is not None and theirs[0].startswith(b"*3\r\n$7\r\nmessage"), theirs
    worker = worker_pid(server, 1 - Router(2).shard_of(b"{t}l"))
    assert _held_then_unsubscribed(server.port, K, worker) == theirs


def test_a_held_keyspace_message_is_heard_before_a_later_publish(ports, server) -> None:
    """As above, but rather than s unsubscribing, p reads ``{t}s`` set (the
    change the held message tells of) and then publishes to s's channel:
    Redis wrote the keyspace message first."""
    theirs = _held_then_unsubscribed(ports["redis"], 1, None, publish=True)
    assert len(theirs) == 2 and b"$3\r\nset" in theirs[0], theirs
    worker = worker_pid(server, 1 - Router(2).shard_of(b"{t}l"))
    assert _held_then_unsubscribed(server.port, K, worker, publish=True) == theirs
