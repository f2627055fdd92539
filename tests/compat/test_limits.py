"""Limits: protocol errors and sizes, maxclients, the query buffer, timeout,
slow readers, and maxmemory with every eviction policy.

Each behaviour is checked on redis-server and on shardkv in the same test,
byte for byte over raw sockets where the bytes matter.  The few checks
that are shardkv's own (back-pressure, per-shard memory) say why.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import time

import hiredis
import psutil
import pytest
import redis

from shardkv.protocol import errors
from shardkv.protocol.resp import encode_command
from shardkv.protocol.router import Router
from shardkv.worker import access, eviction
from shardkv.worker.clock import FakeClock
from shardkv.worker.keyspace import Keyspace
from tests.support.placement import key_on
from tests.support.rawsocket import both, exchange, read_until_quiet, wait_closed
from tests.support.servers import start_redis, start_shardkv

# redis-py shows an error without its first word, here "OOM".
OOM_TEXT = errors.OOM.split(" ", 1)[1]


def err(message: str) -> bytes:
    return b"-" + message.encode("latin-1") + b"\r\n"


# -- protocol errors, byte for byte ------------------------------------------------

PROTOCOL_CASES = [
    (b"*x\r\n", err(errors.PROTO_MULTIBULK_LEN)),
    (b"*2147483648\r\n", err(errors.PROTO_MULTIBULK_LEN)),
    (b"*1\r\n$x\r\n", err(errors.PROTO_BULK_LEN)),
    (b"*1\r\n$-1\r\n", err(errors.PROTO_BULK_LEN)),
    (b"*1\r\n$536870913\r\n", err(errors.PROTO_BULK_LEN)),  # proto-max-bulk-len 512mb
    (b"*1\r\nx\r\n", err(errors.PROTO_EXPECTED_DOLLAR % "x")),
    (b"*1\r\n\xfe\r\n", err(errors.PROTO_EXPECTED_DOLLAR % "\xfe")),
    (b'ECHO "unbalanced\r\n', err(errors.PROTO_UNBALANCED)),
    (b"ECHO 'x'y\r\n", err(errors.PROTO_UNBALANCED)),
    (b"PING " + b"x" * 100_000, err(errors.PROTO_BIG_INLINE)),
    (b"PING " + b"x" * 100_000 + b"\r\n", err(errors.PROTO_BIG_INLINE)),
    (b"*" + b"1" * 100_000, err(errors.PROTO_BIG_MBULK_COUNT)),
    (b"*1\r\n$" + b"1" * 100_000, err(errors.PROTO_BIG_BULK_COUNT)),
    # The commands before the bad bytes run first.
    (b"PING\r\n*1\r\n$4\r\nECHO\r\nSET k v\r\n*0\r\n*-1\r\n*x\r\n", None),
]


@pytest.mark.parametrize("data, reply", PROTOCOL_CASES, ids=lambda v: repr(v[:20]) if v else "")
def test_protocol_error_replies_and_closes(ports, data, reply):
    (real, real_closed), (ours, our_closed) = both(ports, data)
    assert (ours, our_closed) == (real, real_closed)
    assert real_closed
    if reply is not None:
        assert real == reply
    else:
        assert real.endswith(err(errors.PROTO_MULTIBULK_LEN))


# (input, whether Redis answers it)
ACCEPTED_OR_WAITING = [
    (b"*0\r\n*-1\r\n*-100\r\nPING\r\n", True),  # ignored, as Redis ignores them
    (b"*1\rX$4\rXPING\r\n", True),  # Redis does not check the byte after '\r'
    (b"*2\r\n$4\r\nECHO\r\n$1\rXk\r\n", True),  # ... even in a command sent to a shard
    (b"*2\r\n$3\r\nGET\r\n$5\rXfuzz:\r\n", True),
    (b"PING " + b"x" * 65531 + b"\r\n", True),  # an inline line of exactly 64 KB
    (b"GET a\x00b\r\n", False),  # a NUL hides the newline from Redis: it waits
    (b"*1\r\n$4\r\nPI", False),  # incomplete: both wait
]


@pytest.mark.parametrize(
    "data, answered", ACCEPTED_OR_WAITING, ids=[repr(data[:24]) for data, _ in ACCEPTED_OR_WAITING]
)
def test_accepted_or_waiting_input(ports, data, answered):
    # Where Redis waits, nothing may come: 2 s of quiet from each server
    # (waiting for a reply that must come took REPLY_WAIT, 20 s, from each).
    if answered:
        (real, real_closed), (ours, our_closed) = both(ports, data)
    else:
        (real, real_closed), (ours, our_closed) = both(ports, data, idle=2.0, want=0)
    assert (ours, our_closed) == (real, real_closed)
    assert not real_closed
    assert bool(real) is answered


def test_protocol_error_closes_only_that_connection(ports):
    for port in (ports["redis"], ports["shardkv"]):
        with socket.create_connection(("127.0.0.1", port)) as good:
            good.sendall(b"PING\r\n")
            assert read_until_quiet(good, 0.2, first=20) == (b"+PONG\r\n", False)
            assert exchange(port, b"*1\r\n$-5\r\n") == (err(errors.PROTO_BULK_LEN), True)
            good.sendall(b"ECHO still-here\r\n")
            assert read_until_quiet(good, 0.2, first=20) == (b"$10\r\nstill-here\r\n", False)


# -- a pair of servers to change settings on ------------------------------------------


@pytest.fixture(scope="module")
def pair():
    """A redis-server and a 2-shard shardkv of this module's own."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        real = pool.submit(start_redis)
        ours = pool.submit(start_shardkv, shards=2)
        servers = {"redis": real.result(), "shardkv": ours.result()}
    yield servers
    for proc in servers.values():
        proc.stop()


def config_set(port: int, name: str, value: object) -> None:
    with redis.Redis(port=port) as c:
        c.config_set(name, value)


def on_both(pair, fn):
    """Run ``fn(name, port)`` for each server at once; return their results."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(fn, name, proc.port) for name, proc in pair.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.slow
def test_maxclients(pair):
    def check(name, port):
        admin = redis.Redis(port=port, single_connection_client=True)
        admin.config_set("maxclients", 4)
        held = []
        try:
            for _ in range(3):  # with admin, 4 clients
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(b"PING\r\n")
                assert read_until_quiet(s, 0.3, first=20) == (b"+PONG\r\n", False)
                held.append(s)
            # The fifth is turned away at once, before it sends anything.
            refused = exchange(port, b"", idle=2)
            held.pop().close()
            deadline = time.monotonic() + 10
            while True:  # the server sees the close a moment later
                again = exchange(port, b"PING\r\n", idle=0.3)
                if again[0] == b"+PONG\r\n" or time.monotonic() > deadline:
                    break
            return refused, again
        finally:
            for s in held:
                s.close()
            admin.config_set("maxclients", 10000)
            admin.close()

    results = on_both(pair, check)
    assert results["shardkv"] == results["redis"]
    assert results["redis"][0] == (err(errors.MAX_CLIENTS), True)
    assert results["redis"][1] == (b"+PONG\r\n", False)


@pytest.mark.slow
def test_proto_max_bulk_len(pair):
    def check(name, port):
        config_set(port, "proto-max-bulk-len", "1mb")
        try:
            big = encode_command([b"SET", b"big", b"x" * 1048576])
            ok = exchange(port, big + b"STRLEN big\r\n", idle=1, want=len(b"+OK\r\n:1048576\r\n"))
            bad = exchange(port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n")
            return ok, bad
        finally:
            config_set(port, "proto-max-bulk-len", "512mb")

    results = on_both(pair, check)
    assert results["shardkv"] == results["redis"]
    assert results["redis"] == ((b"+OK\r\n:1048576\r\n", False), (err(errors.PROTO_BULK_LEN), True))


@pytest.mark.slow
def test_client_query_buffer_limit(pair):
    def check(name, port):
        early = socket.create_connection(("127.0.0.1", port))  # connected before CONFIG SET
        config_set(port, "client-query-buffer-limit", "1mb")
        try:
            under = socket.create_connection(("127.0.0.1", port))
            under.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$900000\r\n" + b"x" * 500_000)
            results = [read_until_quiet(under, 0.5)]  # under the limit: still waiting
            under.sendall(b"x" * 400_000 + b"\r\n")  # the rest: the command runs
            results.append(read_until_quiet(under, 1, want=len(b"+OK\r\n")))
            under.close()
            head = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3000000\r\n"
            for s in (early, socket.create_connection(("127.0.0.1", port))):
                try:  # over the limit: closed, no reply
                    s.sendall(head + b"x" * 1_500_000)
                except OSError:
                    pass
                results.append((read_until_quiet(s, 2)[0], wait_closed(s, 5)))
                s.close()
            return results
        finally:
            config_set(port, "client-query-buffer-limit", "1gb")

    results = on_both(pair, check)
    assert results["shardkv"] == results["redis"]
    assert results["redis"] == [(b"", False), (b"+OK\r\n", False), (b"", True), (b"", True)]


@pytest.mark.slow
def test_timeout_closes_idle_clients(pair):
    def check(name, port):
        config_set(port, "timeout", 1)
        try:
            idle = socket.create_connection(("127.0.0.1", port))
            busy = socket.create_connection(("127.0.0.1", port))
            deadline = time.monotonic() + 6
            closed_at = None
            while time.monotonic() < deadline and closed_at is None:
                busy.sendall(b"PING\r\n")
                assert read_until_quiet(busy, 0.3, first=20) == (b"+PONG\r\n", False)
                if wait_closed(idle, 0.1):
                    closed_at = time.monotonic()
            busy.sendall(b"PING\r\n")
            still = read_until_quiet(busy, 0.3, want=len(b"+PONG\r\n"))
            idle.close()
            busy.close()
            return closed_at is not None, still
        finally:
            config_set(port, "timeout", 0)

    results = on_both(pair, check)
    assert results["shardkv"] == results["redis"] == (True, (b"+PONG\r\n", False))


# -- slow readers (shardkv only) ---------------------------------------------------------


def acceptors_of(proc) -> list[psutil.Process]:
    """Every acceptor (``shardkv-accept``, or ``shardkv-accept<i>`` with
    several): the kernel gives a connection to any one of them."""
    tree = psutil.Process(proc.proc.pid).children(recursive=True)
    return [p for p in tree if p.name().startswith("shardkv-accept")]


def rss_of(procs: list[psutil.Process]) -> int:
    return sum(p.memory_info().rss for p in procs)


def workers_of(proc) -> list[psutil.Process]:
    tree = psutil.Process(proc.proc.pid).children(recursive=True)
    return sorted((p for p in tree if p.name().startswith("shardkv-shard")), key=lambda p: p.name())


@pytest.mark.slow
def test_slow_reader_is_paused_not_buffered(pair):
    """A client that pipelines GETs and never reads must not grow the
    acceptor without bound.  shardkv applies back-pressure: it stops
    reading from the client while the client's socket buffer is full.
    (Redis, whose default ``client-output-buffer-limit normal 0 0 0`` has no
    limit, would buffer every reply; that is the behaviour we avoid.)"""
    proc = pair["shardkv"]
    value = b"v" * 1024
    with redis.Redis(port=proc.port) as c:
        c.set("slow", value)
    acceptors = acceptors_of(proc)
    before = rss_of(acceptors)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 16)
    s.connect(("127.0.0.1", proc.port))
    s.setblocking(False)
    one = b"*2\r\n$3\r\nGET\r\n$4\r\nslow\r\n"
    request = one * 2000
    sent = 0
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            sent += s.send(request[sent % len(request) :])
        except BlockingIOError:
            time.sleep(0.01)
    grown = rss_of(acceptors) - before
    # Paused: another second of sending gets (almost) nothing more in, and
    # the acceptor holds no more.  (Without back-pressure it would read on,
    # megabytes a second, and hold every reply owed.)
    more = 0
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        try:
            more += s.send(request[(sent + more) % len(request) :])
        except BlockingIOError:
            time.sleep(0.01)
    grown_more = rss_of(acceptors) - before - grown
    sent += more
    commands = sent // len(one)
    owed = commands * len(value)
    print(
        f"\nslow reader: {commands} GETs sent, {owed >> 20} MB of replies owed, acceptors grew {grown >> 20} MB,"
        f" then {more} bytes more sent and {grown_more >> 10} KB more held in a second"
    )
    assert grown < 64 * 1024 * 1024
    assert more < 256 * 1024 and grown_more < 4 * 1024 * 1024
    # The replies come, in order, once the client reads.
    s.setblocking(True)
    s.settimeout(30)
    reader = hiredis.Reader()
    got = 0
    while got < min(commands, 20_000):
        reader.feed(s.recv(1 << 20))
        while (reply := reader.gets()) is not False:
            assert reply == value
            got += 1
    s.close()
    with redis.Redis(port=proc.port) as c:
        assert c.get("slow") == value


@pytest.mark.slow
def test_exec_replies_written_are_not_kept(pair):
    """Three clients each run ``MULTI; GET big; EXEC`` on a 32 MB value,
    read the reply and leave: the acceptors keep none of those replies (as
    Redis, which frees a reply once written).  A table of EXEC replies'
    parts (for tracking) kept each of them, and its client, until it held
    64 entries, with or without a tracking client: the acceptor grew by
    about the three replies."""
    proc = pair["shardkv"]
    size = 32 << 20
    with redis.Redis(port=proc.port) as c:
        c.set("big", b"x" * size)
        acceptors = acceptors_of(proc)
        before = rss_of(acceptors)
        for _ in range(3):
            with redis.Redis(port=proc.port) as d:
                pipe = d.pipeline(transaction=True)
                pipe.get("big")
                assert len(pipe.execute()[0]) == size
        for _ in range(50):  # (the acceptor may see the disconnects a little later)
            grown = rss_of(acceptors) - before
            if grown < size:
                break
            time.sleep(0.1)
        c.delete("big")
    assert grown < size, f"acceptors grew {grown >> 20} MB"


# -- maxmemory ---------------------------------------------------------------------------


@pytest.mark.slow
def test_noeviction_oom_and_config_set_reaches_workers(pair):
    def check(name, port):
        c = redis.Redis(port=port)
        c.flushall()
        c.set("keep", "1")
        c.config_set("maxmemory-policy", "noeviction")
        c.config_set("maxmemory", 1)  # below what any server uses
        out = []
        try:
            for args in [
                ("SET", "a", "1"),
                ("GET", "keep"),
                ("INCR", "keep"),
                ("APPEND", "keep", "x"),
                ("MSET", "a", "1", "b", "2", "c", "3"),
                ("SETNX", "x", "1"),
                ("EXISTS", "keep"),
                ("DEL", "keep"),  # DEL has no denyoom flag
                ("EXPIRE", "nope", "10"),
            ]:
                try:
                    out.append(c.execute_command(*args))
                except redis.ResponseError as e:
                    out.append(("error", str(e)))
        finally:
            c.config_set("maxmemory", 0)
        out.append(c.set("a", "1"))
        c.close()
        return out

    results = on_both(pair, check)
    assert results["shardkv"] == results["redis"]
    oom = ("error", OOM_TEXT)
    assert results["redis"] == [oom, b"1", oom, oom, oom, oom, 1, 1, 0, True]


@pytest.mark.slow
def test_config_set_maxmemory_holds_for_the_commands_after_it_in_a_pipeline(pair):
    """CONFIG SET maxmemory 1, then SET and INCR in the same pipeline:
    refused with -OOM, as in Redis, and allowed again after maxmemory 0."""

    def check(name, port):
        with redis.Redis(port=port) as c:
            c.flushall()
            c.config_set("maxmemory-policy", "noeviction")
            pipe = c.pipeline(transaction=False)
            pipe.set("a", "1")
            pipe.config_set("maxmemory", 1)
            pipe.set("b", "1")
            pipe.incr("a")
            pipe.get("a")
            pipe.config_set("maxmemory", 0)
            pipe.set("b", "1")
            try:
                replies = pipe.execute(raise_on_error=False)
            finally:
                c.config_set("maxmemory", 0)
            return [("error", str(r)) if isinstance(r, redis.ResponseError) else r for r in replies]

    results = on_both(pair, check)
    assert results["shardkv"] == results["redis"]
    oom = ("error", OOM_TEXT)
    assert results["redis"] == [True, True, oom, oom, b"1", True, True]


@pytest.mark.slow
def test_maxmemory_reaches_a_restarted_worker(pair):
    """shardkv only: a worker the supervisor restarts gets the setting too."""
    proc = pair["shardkv"]
    c = redis.Redis(port=proc.port)
    key = next(k for k in (f"k{i}" for i in range(100)) if Router(2).shard_of(k.encode()) == 0)
    c.config_set("maxmemory", 1)
    replies = []
    try:
        worker = workers_of(proc)[0]
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                replies.append(c.set(key, "v"))
            except (redis.ResponseError, redis.BusyLoadingError) as e:  # (-LOADING while it reloads)
                replies.append(str(e))
                if str(e) == OOM_TEXT:
                    break
            time.sleep(0.1)
    finally:
        while time.monotonic() < deadline:  # CONFIG SET needs every shard up
            try:
                c.config_set("maxmemory", 0)
                break
            except redis.ResponseError:
                time.sleep(0.2)
        c.close()
    # Only "shard unavailable" or -LOADING while it restarts, then OOM: never a write.
    assert replies[-1] == OOM_TEXT and set(replies) <= {OOM_TEXT, "shard unavailable", LOADING_TEXT}


LOADING_TEXT = "Redis is loading the dataset in memory"  # (redis-py's BusyLoadingError)

# Each server gets room for DATA_ROOM bytes of data above what it uses empty.
DATA_ROOM = 8 * 1024 * 1024
VALUE = b"x" * 4096


def limit_for(name: str, proc, c: redis.Redis) -> int:
    """A maxmemory that leaves DATA_ROOM for data on this server: what INFO
    says it uses now, and DATA_ROOM more.

    Redis counts its own allocations; shardkv counts every process's
    resident size (the acceptor's and each worker's), and shares the room
    out among the workers when maxmemory is set (see
    shardkv.acceptor.memorybudget)."""
    return c.info("memory")["used_memory"] + DATA_ROOM


def write(c: redis.Redis, prefix: str, n: int, ttl: int | None = None) -> list:
    """SET n keys; the error replies, if any."""
    failures = []
    for start in range(0, n, 500):
        p = c.pipeline(transaction=False)
        for i in range(start, min(n, start + 500)):
            p.set(f"{prefix}:{i}", VALUE, ex=ttl)
        failures += [r for r in p.execute(raise_on_error=False) if isinstance(r, Exception)]
    return failures


def alive(c: redis.Redis, keys: list[str]) -> int:
    p = c.pipeline(transaction=False)
    for k in keys:
        p.exists(k)
    return sum(p.execute())


def eviction_run(pair, policy: str, scenario, warm: bool = False):
    def run(name, port):
        c = redis.Redis(port=port)
        c.flushall()
        if warm:
            # Let the heap grow to working size first, as a server that has
            # run a while has: a worker's memory figure then follows its data
            # rather than the allocator's first growth (see worker/eviction.py).
            write(c, "warm", 3 * COLD)
            c.flushall()
        c.config_set("maxmemory-policy", policy)
        c.config_set("maxmemory", limit_for(name, pair[name], c))
        try:
            return scenario(c)
        finally:
            c.config_set("maxmemory", 0)
            c.config_set("maxmemory-policy", "noeviction")
            c.flushall()
            c.close()

    return on_both(pair, run)


COLD = 3 * DATA_ROOM // len(VALUE)  # three times what fits


def ticked(c: redis.Redis, key: str) -> None:
    """Wait until the LRU clock has moved on since ``key``'s last access
    (its OBJECT IDLETIME is 1 or more): Redis's ticks once a second, and
    is read from its cron (up to 100 ms late, later on a loaded machine)."""
    deadline = time.monotonic() + 30
    while (c.object("idletime", key) or 0) < 1:
        assert time.monotonic() < deadline, f"{key}'s idle time stayed 0"
        time.sleep(0.02)


def hot_keys_survive(c: redis.Redis, touch, tick: bool) -> dict:
    """Hot keys, then generations of cold keys, each 40% of what fits, the
    hot keys touched before each: there is always an older generation to
    evict.  (Redis's LRU clock ticks once a second: with ``tick``, each
    touch waits for a tick past the writes before it, see ``ticked``.)"""
    hot = [f"hot:{i}" for i in range(100)]
    for k in hot:
        c.set(k, VALUE)
    failures = []
    last = hot[-1]
    each = 2 * COLD // 15
    for generation in range(5):
        if tick:
            ticked(c, last)
        touch(c, hot)
        failures += write(c, f"cold{generation}", each)
        last = f"cold{generation}:{each - 1}"
    return {"failures": failures, "hot": alive(c, hot), "dbsize": c.dbsize()}


def touch_once(c, keys):
    p = c.pipeline(transaction=False)
    for k in keys:
        p.get(k)
    p.execute()


def touch_often(c, keys):
    for _ in range(30):
        touch_once(c, keys)


@pytest.mark.slow
@pytest.mark.parametrize(
    "policy, touch, tick", [("allkeys-lru", touch_once, True), ("allkeys-lfu", touch_often, False)]
)
def test_lru_and_lfu_keep_hot_keys(pair, policy, touch, tick):
    results = eviction_run(pair, policy, lambda c: hot_keys_survive(c, touch, tick), warm=True)
    for name, r in results.items():
        assert r["failures"] == [], name
        assert r["dbsize"] < 100 + 5 * (2 * COLD // 15), name  # it evicted
        assert r["hot"] >= 90, (name, r)  # approximately: by sampling


@pytest.mark.slow
def test_lru_evicts_the_idle_keys_of_another_database(pair):
    """Redis samples every database: idle keys of database 1 go before the
    hot keys of database 0, where the writes happen."""

    def scenario(c):
        idle = [f"idle:{i}" for i in range(2 * COLD // 15)]
        other = redis.Redis(port=c.connection_pool.connection_kwargs["port"], db=1)
        try:
            failures = write(other, "idle", len(idle))
            result = hot_keys_survive(c, touch_once, True)
            result["idle"] = alive(other, idle)
        finally:
            other.close()
        result["failures"] += failures
        return result

    results = eviction_run(pair, "allkeys-lru", scenario, warm=True)
    for name, r in results.items():
        assert r["failures"] == [], name
        assert r["hot"] >= 90, (name, r)
        assert r["idle"] < (2 * COLD // 15) // 4, (name, r)  # most of them are gone


@pytest.mark.slow
def test_allkeys_random_evicts(pair):
    def scenario(c):
        return {"failures": write(c, "r", COLD), "dbsize": c.dbsize()}

    for name, r in eviction_run(pair, "allkeys-random", scenario).items():
        assert r["failures"] == [], name
        assert 0 < r["dbsize"] < COLD, name


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"])
def test_volatile_policies_evict_only_keys_with_a_ttl(pair, policy):
    def scenario(c):
        keep = [f"keep:{i}" for i in range(100)]
        for k in keep:
            c.set(k, VALUE)
        failures = write(c, "v", COLD, ttl=3600)
        survivors = alive(c, keep)
        # With no volatile key left to evict, writes fail.
        c.execute_command("PERSIST", "x")
        oom = write(c, "p", COLD)
        return {
            "failures": failures,
            "keep": survivors,
            "volatile": c.dbsize() - 100,
            "oom": {str(e) for e in oom},
        }

    for name, r in eviction_run(pair, policy, scenario).items():
        assert r["failures"] == [], name
        assert r["keep"] == 100, name
        assert r["oom"] == {OOM_TEXT}, name


@pytest.mark.slow
def test_volatile_ttl_evicts_the_nearest_expiry_first(pair):
    def scenario(c):
        late = [f"late:{i}" for i in range(100)]
        for k in late:
            c.set(k, VALUE, ex=1_000_000)
        failures = write(c, "soon", COLD, ttl=3600)
        return {"failures": failures, "late": alive(c, late)}

    for name, r in eviction_run(pair, "volatile-ttl", scenario).items():
        assert r["failures"] == [], name
        assert r["late"] >= 90, (name, r)


@pytest.mark.slow
def test_noeviction_until_deleted(pair):
    def scenario(c):
        failures = write(c, "n", COLD)
        written = c.dbsize()
        c.delete(*[f"n:{i}" for i in range(COLD) if i % 2 == 0])
        again = write(c, "after-del", 100)
        c.flushall()
        flushed = write(c, "after-flush", 100)
        return {
            "oom": {str(e) for e in failures},
            "some written": 0 < written < COLD,
            "after del": again,
            "after flush": flushed,
        }

    for name, r in eviction_run(pair, "noeviction", scenario).items():
        assert r == {"oom": {OOM_TEXT}, "some written": True, "after del": [], "after flush": []}, name


@pytest.mark.slow
def test_eviction_keeps_worker_memory_near_its_share(pair):
    """shardkv only: while the writes go on, evicting keeps each worker's
    resident size from growing by much more than its part of the room
    (DATA_ROOM / 2), where the data written would take some 26 MB each.
    (maxmemory counts the data's estimated size, not the RSS, which an
    earlier test may have left high: see worker/eviction.py.)"""
    proc = pair["shardkv"]
    c = redis.Redis(port=proc.port)
    c.flushall()
    limit = limit_for("shardkv", proc, c)
    c.config_set("maxmemory-policy", "allkeys-lru")
    c.config_set("maxmemory", limit)
    try:
        workers = workers_of(proc)
        before = [worker.memory_info().rss for worker in workers]
        assert write(c, "m", 2 * COLD) == []
        part = DATA_ROOM // 2
        for worker, start in zip(workers, before, strict=True):
            grown = worker.memory_info().rss - start
            assert grown < 2 * part, f"{worker.name()} grew {grown >> 20} MB, its part {part >> 20} MB"
        assert c.dbsize() < 2 * COLD
        assert c.info("stats")["evicted_keys"] > 0
    finally:
        c.config_set("maxmemory", 0)
        c.flushall()
        c.close()


# -- eviction, unit tests ------------------------------------------------------------------


def keyspace_with(n: int, ttl: bool = False) -> Keyspace:
    ks = Keyspace()
    for i in range(n):
        ks.store(b"k%d" % i, b"v" * 100)
        if ttl:
            ks.set_expire(b"k%d" % i, ks.now + 1_000_000 + i)
    return ks


def test_maxmemory_off_leaves_the_keyspace_alone():
    """The access clocks are the keyspace's own (shardkv.worker.access): an
    LRU policy wraps nothing; maxmemory wraps what counts the memory."""
    ks = keyspace_with(10)
    wrapped = {"lookup", "lookup_raw", "store", "_remove", "flush"}
    eviction.configure(ks, 0, "allkeys-lru")
    assert ks.memory is None and not wrapped & set(vars(ks))
    eviction.configure(ks, 10**12, "allkeys-lru")
    assert ks.memory is not None and wrapped & set(vars(ks)) == {"_remove", "flush"}
    eviction.configure(ks, 0, "allkeys-lru")
    assert ks.memory is None and not wrapped & set(vars(ks))


def test_lru_picks_the_least_recently_used():
    clock = FakeClock()
    ks = Keyspace(clock)
    eviction.configure(ks, 10**12, "allkeys-lru")
    for i in range(1000):
        ks.store(b"k%d" % i, b"v")
    clock.advance(1000)  # the clock's resolution (Redis's: a second)
    ks.tick()
    for i in range(500, 1000):
        ks.lookup(b"k%d" % i)
    ks.memory.refresh()  # counts the keys stored behind its back
    picked = [ks.memory.pick() for _ in range(50)]  # (database, key)
    assert sum(int(k[1:]) < 500 for _, k in picked) >= 45  # from the older half (sampling: nearly all)


def test_lfu_counter_is_logarithmic_and_decays():
    entry = None
    for _ in range(1000):
        entry = access.lfu_touch(entry, 0)
    counter = access.lfu_counter(entry, 0)
    assert access.LFU_INIT_VAL < counter < 40  # 1000 hits: a small number
    assert access.lfu_counter(entry, 10) == counter - 10  # one per minute idle
    assert access.lfu_counter(None, 0) == access.LFU_INIT_VAL


def test_volatile_ttl_picks_the_nearest_expiry():
    ks = keyspace_with(200, ttl=True)
    eviction.configure(ks, 10**12, "volatile-ttl")
    picked = [ks.memory.pick() for _ in range(20)]
    assert sum(int(k[1:]) < 100 for _, k in picked) >= 18


def test_volatile_policy_without_volatile_keys_has_nothing_to_evict():
    ks = keyspace_with(100)
    for policy in ["volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "noeviction"]:
        eviction.configure(ks, 10**12, policy)
        assert ks.memory.pick() is None


def test_write_costs_match_what_removal_takes_back():
    ks = Keyspace()
    eviction.configure(ks, 10**12, "allkeys-random")
    memory = ks.memory

    def run(args):
        from shardkv.worker import wiring
        from shardkv.worker.handlers import find

        wiring.install()  # as a Shard does when it starts
        return memory.run(lambda a: find(a[0])(ks, a), args)

    start = memory.data
    for i in range(100):
        run([b"SET", b"k%d" % i, b"v" * 100, b"EX", b"100"])
    assert memory.data > start
    for i in range(100):
        run([b"DEL", b"k%d" % i])
    assert memory.data == start


def test_memory_figure_is_the_data_not_the_rss():
    """A shard's memory figure is a constant and its data's estimated size:
    the same data gives the same figure, with maxmemory on or off, and a
    flush takes it back to the constant (the RSS would stay put)."""
    ks = keyspace_with(0)
    assert eviction.figure(ks) == eviction.BASE
    for i in range(500):
        ks.store(b"k%d" % i, b"v" * 100)
    exact = eviction.all_costs(ks)
    assert exact == sum(eviction.key_cost(b"k%d" % i, b"v" * 100) for i in range(500))
    assert eviction.figure(ks) == eviction.BASE + exact  # off: every key, when this few
    eviction.configure(ks, 10**12, "allkeys-lru")
    assert ks.memory.used == eviction.figure(ks) == eviction.BASE + exact  # on: kept as it changes
    ks.flush()
    assert eviction.figure(ks) == eviction.BASE
    eviction.configure(ks, 0, "allkeys-lru")
    for i in range(5000):  # more than EXACT_UP_TO: a sample's mean times the keys
        ks.store(b"key:%d" % i, b"v" * 100)
    estimate = eviction.figure(ks) - eviction.BASE
    assert abs(estimate - eviction.all_costs(ks)) < eviction.all_costs(ks) // 20


def test_lru_picks_from_every_database():
    clock = FakeClock()
    ks = Keyspace(clock, databases=4)
    eviction.configure(ks, 10**12, "allkeys-lru")
    for db in (2, 0):  # database 2's keys first: the least recently used
        with ks.selected(db):
            for i in range(300):
                ks.store(b"k%d" % i, b"v")
        clock.advance(1000)
        ks.tick()
    ks.memory.refresh()
    picked = [ks.memory.pick() for _ in range(30)]
    assert sum(db == 2 for db, _ in picked) >= 27
    for policy in ("allkeys-random", "volatile-random"):
        with ks.selected(2):
            ks.set_expire(b"k1", ks.now + 10_000)
        eviction.configure(ks, 10**12, policy)
        dbs = {ks.memory.pick()[0] for _ in range(10)}
        assert dbs == ({0, 2} if policy == "allkeys-random" else {2})


def test_protocol_error_behind_a_blocked_command_waits_for_it(ports):
    """Redis reads no further while a client is blocked: the commands
    pipelined behind BLPOP, and the protocol error after them, come only
    once it is served.  (With several acceptors a command over several
    shards waits for its holds in the same way.)"""
    results = []
    for name in ("redis", "shardkv"):
        port = ports[name]
        tag = b"{pe}"
        other = redis.Redis(port=port)
        other.delete(tag + b"l", tag + b"a")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"BLPOP %sl 0\r\nSET %sa 1\r\n*1\r\n$x\r\n" % (tag, tag))
            time.sleep(0.3)
            before = other.get(tag + b"a")  # SET waits behind the BLPOP
            other.rpush(tag + b"l", b"x")
            replies, closed = read_until_quiet(s, 1.0, first=20)
        after = other.get(tag + b"a")
        other.close()
        results.append((before, replies, closed, after))
    assert results[1] == results[0]
    assert results[0][0] is None and results[0][3] == b"1" and results[0][2]


# -- hostile arguments from Redis's CVEs -------------------------------------------

LONG_MIN, LONG_MAX = "-9223372036854775808", "9223372036854775807"
DEEP_TABLE = "local t={} local c=t for i=1,100000 do c[1]={} c=c[1] end return "

# Inputs behind Redis's security advisories (count and offset overflows,
# CVE-2023-22458, CVE-2023-25155, CVE-2022-35951, CVE-2023-28856, LPOS,
# SORT and ZRANGESTORE limits, huge offsets, Lua nesting and struct sizes):
# each gets Redis's own reply at once, and the server stays up.
CVE_INPUTS = [
    ("HRANDFIELD", "h", LONG_MIN, "WITHVALUES"),
    ("HRANDFIELD", "h", "-9223372036854775807", "WITHVALUES"),
    ("HRANDFIELD", "nokey", LONG_MIN, "WITHVALUES"),
    ("ZRANDMEMBER", "z", LONG_MIN, "WITHSCORES"),
    ("ZRANDMEMBER", "z", "-4611686018427387904", "WITHSCORES"),
    ("SRANDMEMBER", "s", LONG_MIN),
    ("SPOP", "s", LONG_MIN),
    ("XAUTOCLAIM", "x", "g", "c", "0", "0", "COUNT", LONG_MAX),
    ("XAUTOCLAIM", "x", "g", "c", "0", "0", "COUNT", "922337203685477580"),
    ("HINCRBYFLOAT", "h", "a", "1e400"),
    ("HSET", "h", "big", "1e308"),
    ("HINCRBYFLOAT", "h", "big", "1e308"),
    ("SETRANGE", "k", "536870912", "x"),
    ("SETRANGE", "k", LONG_MAX, ""),
    ("SETBIT", "b", "4294967296", "1"),
    ("BITFIELD", "b", "SET", "u8", "#536870912", "1"),
    ("BITFIELD", "b", "GET", "u8", LONG_MAX),
    ("BITPOS", "k", "0", LONG_MIN, LONG_MAX, "BIT"),
    ("GETRANGE", "k", LONG_MIN, LONG_MAX),
    ("LRANGE", "l", LONG_MIN, LONG_MAX),
    ("LPOS", "l", "a", "RANK", LONG_MIN),
    ("LPOS", "l", "a", "RANK", "-9223372036854775807"),
    ("SORT", "l", "LIMIT", LONG_MIN, LONG_MAX, "ALPHA"),
    ("SORT", "l", "LIMIT", LONG_MAX, LONG_MAX, "ALPHA"),
    ("ZRANGESTORE", "d", "z", "-inf", "+inf", "BYSCORE", "LIMIT", LONG_MAX, LONG_MAX),
    ("ZRANGESTORE", "d", "z", "-inf", "+inf", "BYSCORE", "LIMIT", LONG_MIN, "1"),
    ("SINTERCARD", LONG_MAX, "s"),
    ("SINTERCARD", "2147483648", "s"),
    ("LMPOP", LONG_MAX, "l", "LEFT"),
    ("ZUNIONSTORE", "d", LONG_MIN, "z"),
    ("XSETID", "x", "1-1", "ENTRIESADDED", LONG_MAX, "MAXDELETEDID", "0-0"),
    ("XADD", "x", "MAXLEN", LONG_MAX, "2-1", "f", "v"),
    ("XADD", "x2", "18446744073709551615-18446744073709551615", "f", "v"),
    ("XADD", "x2", "*", "f", "v"),
    ("XRANGE", "x", "-", "+", "COUNT", LONG_MIN),
    ("SET", "k2", "v", "EX", "9223372036854775"),
    ("EXPIRE", "k", LONG_MAX),
    ("EVAL", "return 1", LONG_MAX),
    ("EVAL", DEEP_TABLE + "cjson.encode(t)", "0"),
    ("EVAL", DEEP_TABLE + "#cmsgpack.pack(t)", "0"),
    ("EVAL", "return cjson.decode(string.rep('[', 100000))", "0"),
    ("EVAL", "return cmsgpack.unpack('\\221\\255\\255\\255\\255')", "0"),
    ("EVAL", "return struct.pack('i99999999999', 1)", "0"),
    ("EVAL", "return struct.unpack('c99999999', 'abc')", "0"),
    ("EVAL", "return unpack({}, -2147483648, 2147483647)", "0"),
]


def test_hostile_arguments_from_redis_cves(compare):
    compare("HSET", "h", "a", "1", "b", "2")
    compare("ZADD", "z", "1", "a", "2", "b")
    compare("SADD", "s", "a", "b")
    compare("RPUSH", "l", "a", "b", "a")
    compare("SET", "k", "hello")
    compare("XADD", "x", "1-1", "f", "v")
    compare("XGROUP", "CREATE", "x", "g", "0")
    compare("XREADGROUP", "GROUP", "g", "c1", "STREAMS", "x", ">")
    for args in CVE_INPUTS:
        compare(*args)
    compare("PING")


# Counts whose reply could not fit in any machine's memory: Redis builds the
# reply until the kernel kills it (so these go to shardkv only); shardkv
# answers Redis's "value is out of range" (see shardkv.runtime.replyroom).
# The last ones draw or get a value of 16 MB 16,384 times or more: 256 GB.
UNFIT_COUNTS = [
    ("ZRANDMEMBER", "z", "-4611686018427387903", "WITHSCORES"),
    ("ZRANDMEMBER", "z", "-9223372036854775807"),
    ("HRANDFIELD", "h", "-4611686018427387903", "WITHVALUES"),
    ("HRANDFIELD", "h", "-9223372036854775807"),
    ("SRANDMEMBER", "s", "-9223372036854775807"),
    ("SRANDMEMBER", "big", "-65536"),
    ("HRANDFIELD", "bigh", "-65536", "WITHVALUES"),
    ("ZRANDMEMBER", "bigz", "-65536"),
    # Arguments that multiply a value: SORT's GETs, a repeated key or field.
    ("SORT", "bigl", "BY", "nosort", *["GET", "#"] * 16384),
    ("MGET", *["bigk"] * 16384),
    ("HMGET", "bigh", *["f"] * 16384),
]


def test_counts_whose_reply_cannot_fit_are_out_of_range(pair):
    """Each unfit count (or repeated argument) answers -ERR value is out
    of range at once, in a pipeline, a transaction and a script alike; the
    workers stay up, their memory does not grow, and the same connection
    and another one go on."""
    proc = pair["shardkv"]
    workers = workers_of(proc)
    pids = [p.pid for p in workers]
    big = b"x" * (16 << 20)
    with redis.Redis(port=proc.port, socket_timeout=30) as c:
        c.delete("z", "h", "s", "big", "bigh", "bigz", "bigl", "bigk")
        c.zadd("z", {"a": 1, "b": 2})
        c.hset("h", mapping={"a": "1", "b": "2"})
        c.sadd("s", "a", "b")
        c.sadd("big", big)
        c.hset("bigh", "f", big)
        c.zadd("bigz", {big: 1})
        c.rpush("bigl", big)
        c.set("bigk", big)
        before = rss_of(workers)
        pipe = c.pipeline(transaction=False)
        for args in UNFIT_COUNTS:
            pipe.execute_command(*args)
        replies = pipe.execute(raise_on_error=False)
        assert [str(r) for r in replies] == ["value is out of range"] * len(UNFIT_COUNTS)
        with pytest.raises(redis.ResponseError, match="^value is out of range script: "):
            c.eval("return redis.call('SRANDMEMBER', KEYS[1], ARGV[1])", 1, "s", "-9223372036854775807")
        tx = c.pipeline(transaction=True)
        tx.execute_command(*UNFIT_COUNTS[0])
        tx.zrandmember("z", -3)
        done = tx.execute(raise_on_error=False)
        assert str(done[0]) == "value is out of range" and len(done[1]) == 3
        assert rss_of(workers) - before < 64 << 20
        assert [p.pid for p in workers_of(proc)] == pids
        assert c.srandmember("big", -2) == [big, big]
        assert c.sort("bigl", by="nosort", get=["#", "#"]) == [big, big]
        with redis.Redis(port=proc.port, socket_timeout=30) as other:
            assert other.zrandmember("z", -2) is not None and other.hlen("bigh") == 1
        assert c.mget("bigk", "bigk") == [big, big]
        assert c.delete("big", "bigh", "bigz", "bigl", "bigk") == 5


def test_unfit_replies_count_as_redis_counts_its_out_of_range(pair):
    """A refusal is counted as Redis counts its own "value is out of
    range" (SRANDMEMBER s with a count of LLONG_MIN): one call, failed,
    and errorstat_ERR, also where it is found late: an MGET across shards
    whose part on one shard is refused, and pair draws that only a draw of
    the big pair makes unfit (HRANDFIELD h -count WITHVALUES)."""
    proc = pair["shardkv"]
    big = b"x" * (16 << 20)
    other = key_on(1 - Router(2).shard_of(b"bigk"), "other", shards=2)
    unfit = [("MGET", *["bigk"] * 16384, other), ("HRANDFIELD", "mixh", "-65537", "WITHVALUES")]

    def counts(c: redis.Redis, name: str) -> tuple:
        row = c.info("commandstats")[f"cmdstat_{name}"]
        return row["calls"], row["failed_calls"], row["rejected_calls"], c.info("errorstats")

    with redis.Redis(port=pair["redis"].port) as c:
        c.sadd("s", "a")
        c.config_resetstat()
        with pytest.raises(redis.ResponseError, match="^value is out of range"):
            c.srandmember("s", -(1 << 63))
        expected = counts(c, "srandmember")
        c.delete("s")
    with redis.Redis(port=proc.port, socket_timeout=30) as c:
        c.set("bigk", big)
        c.hset("mixh", mapping={"a": "1", "f": big})
        for args in unfit:
            c.config_resetstat()
            with pytest.raises(redis.ResponseError, match="^value is out of range$"):
                c.execute_command(*args)
            assert counts(c, args[0].lower()) == expected, args[0]
        assert c.delete("bigk", "mixh") == 2
