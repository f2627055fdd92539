"""Client-side caching (CLIENT TRACKING) against redis-server, byte for byte.

Each scenario runs the same steps on both servers over raw sockets.  After
every step each connection sends PING and everything it received before
the PONG is its transcript for that step: replies, RESP3 ``>invalidate``
pushes, RESP2 ``__redis__:invalidate`` messages, in the order they came.
An invalidation caused by another client's write is always queued before
that write's reply, so the PING after it is enough to wait for it.
"""

from __future__ import annotations

import os
import re
import socket
import time

import pytest
import redis

from shardkv.protocol.resp import encode_command
from tests.support.rawsocket import read_through
from tests.support.resp import reply_end
from tests.support.servers import start_shardkv

PONG = b"+PONG\r\n"
PONG_SUBSCRIBED = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"


class Conn:
    def __init__(self, port: int, resp3: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.subscribed = False
        self.closed = False
        self.resp3 = resp3
        self.rest = b""  # received after the last drain's PONG
        if resp3:
            self.send(b"HELLO", b"3")
            self.drain()
        self.send(b"CLIENT", b"ID")
        self.id = int(self.drain().split(b"\r\n")[0][1:])

    def send(self, *args: bytes) -> None:
        self.sock.sendall(encode_command(list(args)))

    def drain(self, wait: float = 20) -> bytes:
        """Everything received until the reply to a PING (within ``wait``
        seconds).  What came right behind it in the same read (an
        invalidation of the active expiry cycle, say) is kept for the next
        drain."""
        if self.closed:
            return b""
        self.send(b"PING")
        end = PONG_SUBSCRIBED if self.subscribed and not self.resp3 else PONG
        data, self.rest = self.rest, b""
        pos = 0  # where the first message not yet seen whole starts
        deadline = time.monotonic() + wait
        self.sock.settimeout(wait)
        while True:
            while (after := reply_end(data, pos)) >= 0:
                if data[pos:after] == end:
                    self.rest = data[after:]
                    return data[:pos]
                pos = after
            assert time.monotonic() < deadline, data
            try:
                data += self.sock.recv(1 << 16)
            except TimeoutError:
                raise AssertionError(f"no PONG; got {data!r}") from None

    def close(self) -> None:
        self.closed = True
        self.sock.close()


def _transcript(
    port: int, conns_resp3: list[bool], steps: list, together: bool = False, on: tuple[int, ...] = ()
) -> list:
    """Run ``steps``: (connection index, args...), (connection index,
    [args...], [args...]) for commands pipelined (no PING between them: a
    PING after CLIENT CACHING would use it up), ("sleep", seconds), or
    ("expired",): until the database holds no key (DBSIZE, which reads
    none: the server's active expiry deleted them), 10 s at most.
    ``$id0``, ``$id1``... in an argument stand for a connection's CLIENT ID.
    ``together``: every connection on the first one's acceptor (with
    ``$SHARDKV_TEST_ACCEPTORS`` acceptors, whose ids alternate); ``on``:
    connection ``i`` on acceptor ``on[i]`` of ``len(on)`` acceptors."""
    admin = redis.Redis(port=port)
    admin.flushall()
    conns = [Conn(port, r3) for r3 in conns_resp3]
    acceptors = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))
    for i, want in enumerate(on):
        for _ in range(50):  # (each try lands on either acceptor)
            if (conns[i].id - 1) % len(on) == want:
                break
            conns[i].close()
            conns[i] = Conn(port, conns_resp3[i])
        assert (conns[i].id - 1) % len(on) == want
    for i in range(1, len(conns) if together else 0):
        for _ in range(50):  # (each try lands on either acceptor)
            if (conns[i].id - conns[0].id) % acceptors == 0:
                break
            conns[i].close()
            conns[i] = Conn(port, conns_resp3[i])
        assert (conns[i].id - conns[0].id) % acceptors == 0
    out = []
    try:
        for step in steps:
            if step[0] == "sleep":
                time.sleep(step[1])
            elif step[0] == "expired":
                deadline = time.monotonic() + 10
                while admin.dbsize() and time.monotonic() < deadline:
                    time.sleep(0.02)
            elif step[0] == "close":  # the step's other connections still drain
                conns[step[1]].close()
            else:
                # (i, "CMD", "arg"...) or, pipelined in one step, (i, [cmd...], [cmd...]);
                # ("write", i, [cmd...], [cmd...]): pipelined, all in one write
                # (so the server reads them at once)
                one_write = step[0] == "write"
                if one_write:
                    step = step[1:]
                conn = conns[step[0]]
                batch = []
                for command in step[1:] if type(step[1]) is list else [step[1:]]:
                    args = []
                    for a in command:
                        if a.startswith("$id"):
                            a = str(conns[int(a[3:])].id)
                        args.append(a.encode())
                    if one_write:
                        batch.append(encode_command(args))
                    else:
                        conn.send(*args)
                    if args[0].upper() == b"SUBSCRIBE":
                        conn.subscribed = True
                if batch:
                    conn.sock.sendall(b"".join(batch))
            # The acting connection first: its reply means the step is done.
            first = step[0] if type(step[0]) is int else 0
            row = {first: conns[first].drain()}
            row.update((i, c.drain()) for i, c in enumerate(conns) if i != first)
            if any(str(a).upper() in ("GETREDIR", "TRACKINGINFO") for a in step):
                for i, c in enumerate(conns):  # client ids differ between the servers
                    row = {k: v.replace(b":%d\r\n" % c.id, b":$id%d\r\n" % i) for k, v in row.items()}
            for i, c in enumerate(conns):
                broken = b"tracking-redir-broken\r\n:%d\r\n"
                row = {
                    k: v.replace(broken % c.id, broken.replace(b"%d", b"$id%d" % i)) for k, v in row.items()
                }
            out.append([row[i] for i in range(len(conns))])
        return out
    finally:
        for conn in conns:
            conn.close()
        admin.flushall()
        admin.close()


def _same(ports, conns_resp3, steps, together: bool = False, on: tuple[int, ...] = ()) -> list:
    expected = _transcript(ports["redis"], conns_resp3, steps)
    got = _transcript(ports["shardkv"], conns_resp3, steps, together, on)
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g == e, f"step {i} {steps[i]}: shardkv {g} redis {e}"
    return expected


def test_resp3_invalidation_of_writes_by_any_client(ports):
    t = _same(
        ports,
        [True, True],
        [
            (0, "CLIENT", "TRACKING", "on"),
            (0, "GET", "a"),
            (0, "MGET", "b", "c", "{a}d"),
            (1, "SET", "a", "1"),
            (1, "SET", "a", "2"),  # no longer tracked: nothing
            (1, "MSET", "b", "1", "c", "2", "x", "3"),
            (0, "GET", "{a}d"),
            (1, "DEL", "{a}d"),
            (0, "HGET", "h", "f"),
            (1, "HSET", "h", "f", "v"),
            (0, "SET", "mine", "1"),
            (0, "GET", "mine"),
            (0, "SET", "mine", "2"),  # its own write: after the reply
            (0, "CLIENT", "TRACKING", "off"),
            (0, "GET", "a"),
            (1, "SET", "a", "3"),
        ],
    )
    assert b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n" in t[3][0]


def test_resp2_redirect_to_subscribed_client(ports):
    _same(
        ports,
        [False, False, False],
        [
            (1, "SUBSCRIBE", "__redis__:invalidate"),
            (0, "CLIENT", "TRACKING", "on", "REDIRECT", "$id1"),
            (0, "CLIENT", "GETREDIR"),
            (0, "GET", "k"),
            (2, "SET", "k", "v"),
            (0, "GET", "k"),
            (0, "SET", "k", "w"),
            (0, "GET", "k"),
            (2, "FLUSHALL"),
            (0, "CLIENT", "TRACKINGINFO"),
        ],
    )


def test_resp2_without_redirect_gets_nothing(ports):
    _same(ports, [False, True], [(0, "CLIENT", "TRACKING", "on"), (0, "GET", "k"), (1, "SET", "k", "v")])


def test_broken_redirect(ports):
    _same(
        ports,
        [True, True, True],
        [
            (0, "CLIENT", "TRACKING", "on", "REDIRECT", "$id1"),
            (0, "GET", "k"),
            ("close", 1),
            ("sleep", 0.3),
            (2, "SET", "k", "v"),
            (0, "CLIENT", "TRACKINGINFO"),
            (0, "CLIENT", "GETREDIR"),
        ],
    )


def test_flush_sends_null_invalidation(ports):
    _same(
        ports,
        [True, True, False],
        [
            (0, "CLIENT", "TRACKING", "on"),
            (2, "SUBSCRIBE", "__redis__:invalidate"),
            (1, "CLIENT", "TRACKING", "on", "REDIRECT", "$id2"),
            (1, "GET", "x"),
            (0, "GET", "k"),
            (1, "FLUSHDB"),
            (1, "SET", "k", "1"),  # the table was emptied: nothing more
            (0, "GET", "k"),
            (0, "FLUSHALL"),
        ],
    )


def test_expiry_invalidates(ports):
    # Twice: the second time the sweeper's cursor has just gone past the
    # key's slot, and its active expiry must still find the key within
    # about a 1/hz interval, as Redis's does.
    _same(
        ports,
        [True, True],
        [
            (1, "SET", "k", "v", "PX", "100"),
            (0, "CLIENT", "TRACKING", "on"),
            (0, "GET", "k"),
            ("expired",),
            (1, "SET", "k", "v", "PX", "100"),
            (0, "GET", "k"),
            ("expired",),
        ],
    )


def test_bcast_and_prefixes(ports):
    _same(
        ports,
        [True, True, True],
        [
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "user:", "PREFIX", "obj:"),
            (1, "CLIENT", "TRACKING", "on", "BCAST"),
            (2, "SET", "user:1", "a"),
            (2, "SET", "other", "a"),
            (2, "MSET", "obj:1", "a", "obj:2", "b"),
            (0, "CLIENT", "TRACKINGINFO"),
            (1, "CLIENT", "TRACKINGINFO"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "user:x"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "new:", "PREFIX", "ne"),
            (0, "CLIENT", "TRACKING", "on", "PREFIX", "new:"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "new:"),
            (2, "SET", "new:1", "v"),
            (0, "CLIENT", "TRACKING", "off"),
            (2, "SET", "new:1", "v"),
        ],
    )


def test_optin_optout(ports):
    _same(
        ports,
        [True, True],
        [
            (0, "CLIENT", "TRACKING", "on", "OPTIN"),
            (0, "GET", "a"),
            (0, "CLIENT", "CACHING", "yes"),
            (0, "CLIENT", "TRACKINGINFO"),
            (0, "GET", "b"),
            (0, "GET", "c"),
            (1, "MSET", "a", "1", "b", "1", "c", "1"),
            (0, "CLIENT", "CACHING", "no"),
            (0, "CLIENT", "TRACKING", "on", "OPTOUT"),
            (0, "CLIENT", "TRACKING", "off"),
            (0, "CLIENT", "TRACKING", "on", "OPTOUT"),
            (0, "CLIENT", "CACHING", "no"),
            (0, "GET", "a"),
            (0, "GET", "b"),
            (1, "MSET", "a", "2", "b", "2"),
            (0, "CLIENT", "CACHING", "yes"),
        ],
    )


def test_noloop(ports):
    _same(
        ports,
        [True, True, True],
        [
            (0, "CLIENT", "TRACKING", "on", "NOLOOP"),
            (2, "CLIENT", "TRACKING", "on", "BCAST", "NOLOOP"),
            (0, "GET", "a"),
            (0, "GET", "b"),
            (0, "SET", "a", "1"),
            (1, "SET", "b", "1"),
            (2, "SET", "c", "1"),
            (1, "SET", "d", "1"),
        ],
    )


def test_errors_and_info(ports):
    _same(
        ports,
        [True, False],
        [
            (0, "CLIENT", "TRACKING", "maybe"),
            (0, "CLIENT", "TRACKING", "on", "REDIRECT"),
            (0, "CLIENT", "TRACKING", "on", "REDIRECT", "abc"),
            (0, "CLIENT", "TRACKING", "on", "REDIRECT", "999999"),
            (0, "CLIENT", "TRACKING", "on", "REDIRECT", "$id1", "REDIRECT", "$id1"),
            (0, "CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "OPTIN"),
            (0, "CLIENT", "TRACKING", "on", "FOO"),
            (0, "CLIENT", "TRACKING"),
            (0, "CLIENT", "CACHING", "yes"),
            (0, "CLIENT", "CACHING"),
            (0, "CLIENT", "GETREDIR"),
            (0, "CLIENT", "TRACKINGINFO"),
            (1, "CLIENT", "TRACKINGINFO"),
            (0, "CLIENT", "TRACKING", "on", "OPTIN"),
            (0, "CLIENT", "CACHING", "no"),
            (0, "CLIENT", "CACHING", "maybe"),
            (0, "CLIENT", "TRACKING", "on", "OPTOUT"),
            (0, "CLIENT", "TRACKING", "on", "BCAST"),
            (0, "CLIENT", "TRACKINGINFO"),
            (0, "CLIENT", "GETREDIR"),
            (1, "CLIENT", "TRACKING", "on", "REDIRECT", "$id0", "NOLOOP", "OPTIN"),
            (1, "CLIENT", "CACHING", "yes"),
            (1, "CLIENT", "TRACKINGINFO"),
            (1, "CLIENT", "GETREDIR"),
        ],
    )


def test_tracking_in_client_list_and_info(ports):
    for port in (ports["redis"], ports["shardkv"]):
        c = Conn(port, True)
        try:
            c.send(b"CLIENT", b"TRACKING", b"on", b"BCAST", b"PREFIX", b"p")
            c.drain()
            c.send(b"CLIENT", b"INFO")
            line = c.drain()
            assert b" flags=tB " in line and b" redir=0 " in line
            info = redis.Redis(port=port).info()
            assert info["tracking_clients"] == 1 and info["tracking_total_prefixes"] == 1
        finally:
            c.close()


def test_reset_turns_tracking_off(ports):
    """RESET leaves a client as a new connection: tracking off, so it hears
    of no more invalidations, and may turn tracking on in another mode."""
    _same(
        ports,
        [True, True],
        [
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a"),
            (0, "RESET"),
            (0, "CLIENT", "TRACKINGINFO"),
            (0, "CLIENT", "GETREDIR"),
            (1, "SET", "a1", "1"),
            (0, "CLIENT", "TRACKING", "on"),
            (0, "GET", "b"),
            (0, "RESET"),
            (1, "SET", "b", "1"),
            (0, "CLIENT", "TRACKINGINFO"),
        ],
    )
    info = redis.Redis(port=ports["shardkv"]).info()
    assert info["tracking_clients"] == 0 and info["tracking_total_prefixes"] == 0


def test_tracking_table_max_keys(ports):
    steps = [(0, "CLIENT", "TRACKING", "on")]
    steps += [(0, "GET", f"k{i}") for i in range(5)]
    steps += [(1, "CONFIG", "SET", "tracking-table-max-keys", "2"), (0, "GET", "k9")]
    try:
        for port in (ports["redis"], ports["shardkv"]):
            t = _transcript(port, [True, True], steps)
            pushes = b"".join(row[0] for row in t[-2:]).count(b"invalidate")
            assert pushes >= 4  # at least enough keys dropped to get down to 2
            assert redis.Redis(port=port).info()["tracking_total_keys"] <= 2
    finally:
        for port in (ports["redis"], ports["shardkv"]):
            redis.Redis(port=port).config_set("tracking-table-max-keys", 1000000)


@pytest.mark.parametrize("protocol", [3])
def test_redis_py_client_side_cache_is_never_stale(ports, protocol):
    """redis-py's own client-side cache (cache_config) over shardkv: a value
    another client changes is never read stale once its invalidation came."""
    from redis.cache import CacheConfig

    port = ports["shardkv"]
    cached = redis.Redis(port=port, protocol=protocol, cache_config=CacheConfig())
    writer = redis.Redis(port=port)
    try:
        writer.flushall()
        for i in range(20):
            writer.set(f"k{i}", "0")
        for round_ in range(1, 30):
            for i in range(20):
                assert cached.get(f"k{i}") == str(round_ - 1).encode()
                assert cached.get(f"k{i}") == str(round_ - 1).encode()  # from the cache
            for i in range(20):
                writer.set(f"k{i}", str(round_))
            writer.ping()
        assert cached.get_cache().size > 0
    finally:
        cached.close()
        writer.flushall()
        writer.close()


def test_table_outlives_tracking(ports):
    """As Redis's disableTracking: the keys a client read stay in the table
    after it (the last tracking client) turns tracking off; each leaves it
    when it changes, and turning tracking on again brings their invalidations."""
    t = _same(
        ports,
        [True, True],
        [
            (0, "CLIENT", "TRACKING", "on"),
            (0, "GET", "a"),
            (0, "GET", "b"),
            (0, "GET", "c"),
            (0, "CLIENT", "TRACKING", "off"),
            (1, "SET", "b", "1"),  # nobody tracks: b just leaves the table
            (0, "CLIENT", "TRACKING", "on"),
            (1, "SET", "a", "1"),  # read before tracking went off: invalidated
            (1, "SET", "b", "2"),  # gone from the table: nothing
            (0, "CLIENT", "TRACKING", "off"),
            (1, "FLUSHALL"),  # empties the table
            (0, "CLIENT", "TRACKING", "on"),
            (1, "SET", "c", "1"),
        ],
    )
    assert b"invalidate\r\n*1\r\n$1\r\na\r\n" in t[7][0]


def test_table_size_after_tracking_off(ports):
    counts = {}
    for name in ("redis", "shardkv"):
        port = ports[name]
        admin = redis.Redis(port=port)
        admin.flushall()
        c = Conn(port, True)
        try:
            c.send(b"CLIENT", b"TRACKING", b"on")
            c.send(b"MGET", b"x", b"y", b"{x}z")
            c.send(b"CLIENT", b"TRACKING", b"off")
            c.drain()
            seen = [admin.info()["tracking_total_keys"]]
            admin.set("y", "1")
            seen.append(admin.info()["tracking_total_keys"])
            admin.flushall()
            seen.append(admin.info()["tracking_total_keys"])
            counts[name] = seen
        finally:
            c.close()
            admin.close()
    assert counts["shardkv"] == counts["redis"] == [3, 2, 0]


GET_SCRIPT = "return redis.call('get', KEYS[1])"
MGET_SCRIPT = "return redis.call('mget', KEYS[1], KEYS[2])"
GET_SHA = "4e6d8fc8bb01276962cce5371fa795a7763657ae"  # SHA1 of GET_SCRIPT
LIBRARY = "#!lua name=tracklib\nredis.register_function('tget', function(keys, args) return redis.call('get', keys[1]) end)"


def test_optin_optout_scripts(ports):
    """A script's reads remember its declared keys while CLIENT CACHING
    holds, as Redis's call() does for the script's caller: CACHING yes
    (OPTIN) or no (OPTOUT) covers the next script and its reads only."""
    caching_yes = ["CLIENT", "CACHING", "yes"]
    caching_no = ["CLIENT", "CACHING", "no"]
    try:
        t = _same(
            ports,
            [True, True],
            [
                (1, "FUNCTION", "LOAD", "REPLACE", LIBRARY),
                (0, "CLIENT", "TRACKING", "on", "OPTIN"),
                (0, caching_yes, ["EVAL", GET_SCRIPT, "1", "a"], ["EVAL", GET_SCRIPT, "1", "b"]),
                (0, caching_yes, ["EVAL_RO", MGET_SCRIPT, "2", "c", "d"]),  # two shards
                (0, caching_yes, ["FCALL", "tget", "1", "e"], ["FCALL_RO", "tget", "1", "f"]),
                (0, "EVAL", GET_SCRIPT, "1", "g"),
                (1, "MSET", "a", "1", "b", "1", "c", "1", "d", "1", "e", "1", "f", "1", "g", "1"),
                (0, "CLIENT", "TRACKING", "off"),
                (1, "FLUSHALL"),
                (0, "CLIENT", "TRACKING", "on", "OPTOUT"),
                (0, caching_no, ["EVAL", GET_SCRIPT, "1", "a"], ["EVAL", GET_SCRIPT, "1", "b"]),
                (0, caching_no, ["EVALSHA", GET_SHA, "1", "c"], ["FCALL", "tget", "1", "d"]),
                (0, caching_no, ["EVAL_RO", MGET_SCRIPT, "2", "e", "f"]),
                (1, "MSET", "a", "2", "b", "2", "c", "2", "d", "2", "e", "2", "f", "2"),
            ],
        )
    finally:
        for port in (ports["redis"], ports["shardkv"]):
            redis.Redis(port=port).function_flush()
    assert t[6][0].count(b"invalidate") == 4  # a, c, d, e
    assert t[-1][0].count(b"invalidate") == 2  # b, d


def test_noloop_filters_lazy_expiry_of_a_read_across_shards(ports):
    """An MGET over several shards that expires keys on access: a NOLOOP
    client hears nothing of the expirations it caused itself (as Redis's
    trackingInvalidateKey skips the current client), another client hears
    of every key.  With hz 1, the active expiry cycle rarely gets to the keys
    first; an attempt where it did, on either server, is run again (see
    :func:`_swept`)."""
    keys = ["a", "b", "c", "d"]
    steps = [
        (1, *[["SET", k, "v", "PX", "300"] for k in keys]),
        (0, "CLIENT", "TRACKING", "on", "NOLOOP"),
        (1, "CLIENT", "TRACKING", "on"),
        (0, "MGET", *keys),
        (1, "MGET", *keys),
        ("sleep", 0.4),
        (0, "MGET", *keys),
    ]
    admins = [redis.Redis(port=ports[name]) for name in ("redis", "shardkv")]
    try:
        for admin in admins:
            admin.config_set("hz", 1)
        for _attempt in range(12):
            expected = _transcript(ports["redis"], [True, True], steps)
            if _swept(expected):
                continue  # redis-server's active expiry came first
            got = _transcript(ports["shardkv"], [True, True], steps)
            if _swept(got):
                continue  # shardkv's sweeper came first (for some keys)
            assert got[-1] == expected[-1]
            assert expected[-1][1].count(b"invalidate") == 4
            return
        raise AssertionError(
            "every attempt had an invalidation before the last MGET's or for the NOLOOP client: "
            "the active expiry cycle came first, or NOLOOP failed"
        )
    finally:
        for admin in admins:
            admin.config_set("hz", 10)
            admin.close()


def _swept(rows: list) -> bool:
    """Whether, in a transcript of the test above, the active expiry cycle
    may have expired a key before the last MGET did: an invalidation in the
    sleep's row (for either client), or any for the NOLOOP client in the
    last row.  On redis-server that one comes before the MGET's reply; on
    shardkv a shard's sweeper may also expire a key after the acceptor sent
    the MGET's part there but before the shard runs it, and the
    invalidation then goes behind the reply the client awaits.  (A NOLOOP
    bug, an invalidation for the client's own lazy expiry, makes every
    attempt look swept: the test still fails.)"""
    sleep_row, last_row = rows[-2], rows[-1]
    return b"invalidate" in sleep_row[0] + sleep_row[1] + last_row[0]


def test_swapdb_sends_no_invalidation(ports):
    """Redis's SWAPDB (dbSwapDatabases) touches watched keys but leaves the
    tracking table alone: no invalidation, for either database's keys."""
    _same(
        ports,
        [True, True],
        [
            (1, "SET", "k", "0"),
            (0, "CLIENT", "TRACKING", "on"),
            (0, "GET", "k"),
            (1, "SELECT", "1"),
            (1, "SET", "k", "1"),
            (1, "SWAPDB", "0", "1"),
            (0, "GET", "k"),
            (0, "SWAPDB", "0", "1"),
            (1, "SET", "k", "2"),  # db 1: k is still in the table
        ],
    )


def _keys_on_two_shards(nshards: int) -> tuple[str, str]:
    """volatile-key, and a key on another shard (with more than one)."""
    from shardkv.protocol.router import Router

    router = Router(nshards)
    home = router.shard_of(b"volatile-key")
    big = next(
        f"big-key{i}" for i in range(1000) if nshards == 1 or router.shard_of(b"big-key%d" % i) != home
    )
    return "volatile-key", big


@pytest.mark.slow  # fills maxmemory, evicts, on both servers
def test_eviction_elsewhere_invalidates_before_the_reply(ports):
    """Redis evicts from the whole keyspace before a command: a command on
    one shard over maxmemory evicts the only key with a TTL, on another
    shard (volatile-random), and its client hears of it before the reply;
    subscribers get ``evicted``.  (Redis's unit/tracking "Tracking
    invalidation message of eviction keys should be before response".)"""
    out = {}
    for name in ("redis", "shardkv"):
        port = ports[name]
        admin = redis.Redis(port=port)
        nshards = admin.info("server").get("shards", 1)
        volatile, big = _keys_on_two_shards(nshards)
        admin.flushall()
        sub = redis.Redis(port=port).pubsub()
        conn = Conn(port, True)
        try:
            admin.config_set("notify-keyspace-events", "Ee")
            sub.subscribe("__keyevent@0__:evicted")
            assert sub.get_message(timeout=10)["type"] == "subscribe"
            conn.send(b"CLIENT", b"TRACKING", b"on")
            conn.drain()
            admin.config_set("maxmemory-policy", "volatile-random")
            admin.config_set("maxmemory", admin.info("memory")["used_memory"] + 100 * 1024)
            steps = [
                [[b"SETEX", volatile.encode(), b"10000", b"x"]],
                [[b"GET", volatile.encode()]],
                # Some 200 kB, then the next command (no PING between them,
                # which would evict first) evicts before it runs.
                [[b"SETBIT", big.encode(), b"1600000", b"0"], [b"GETBIT", big.encode(), b"0"]],
            ]
            transcript = []
            for step in steps:
                for command in step:
                    conn.send(*command)
                transcript.append(conn.drain())
            message = sub.get_message(timeout=10)
            out[name] = (transcript, message and (message["channel"], message["data"]))
        finally:
            admin.config_set("maxmemory", 0)
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("notify-keyspace-events", "")
            conn.close()
            sub.close()
            admin.flushall()
            admin.close()
    invalidate = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$12\r\nvolatile-key\r\n"
    for name, (transcript, message) in out.items():
        assert transcript == [b"+OK\r\n", b"$1\r\nx\r\n", b":0\r\n" + invalidate + b":0\r\n"], name
        assert message == (b"__keyevent@0__:evicted", b"volatile-key"), name


def _same_after_lazy_expiry(
    ports, conns_resp3: list[bool], steps: list, swept, loose: int | None = None
) -> list:
    """:func:`_same` for steps whose ``("sleep", s)`` lets keys expire that
    later reads find expired (lazy expiry).  With hz 1 the active expiry
    cycle rarely gets to them first; an attempt where ``swept(rows)`` says
    it did, on either server, is run again.  Connection ``loose`` tracks
    every key, to hear of each expiry whatever caused it, and when: its
    invalidations from the sleep on are compared as a whole."""
    sleep_at = next(i for i, step in enumerate(steps) if step[0] == "sleep")
    admins = [redis.Redis(port=ports[name]) for name in ("redis", "shardkv")]

    def tight(rows: list) -> list:
        if loose is None:
            return rows
        heard = sorted(m for row in rows[sleep_at:] for m in row[loose].split(b">2\r\n") if m)
        return [row[:loose] + row[loose + 1 :] for row in rows] + [heard]

    try:
        for admin in admins:
            admin.config_set("hz", 1)
        for _attempt in range(12):
            expected = _transcript(ports["redis"], conns_resp3, steps)
            if swept(expected):
                continue  # redis-server's active expiry came first
            got = _transcript(ports["shardkv"], conns_resp3, steps)
            if swept(got):
                continue  # shardkv's sweeper came first
            for i, (e, g) in enumerate(zip(tight(expected), tight(got), strict=True)):
                assert g == e, f"step {i} {steps[i] if i < len(steps) else 'all'}: shardkv {g} redis {e}"
            return expected
        raise AssertionError("the active expiry cycle came first in every attempt")
    finally:
        for admin in admins:
            admin.config_set("hz", 10)
            admin.close()


def test_read_that_expires_an_untracked_key_keeps_tracking_it(ports):
    """A read that finds a key expired, by a client that did not track the
    key before: no invalidation for it (Redis's trackingInvalidateKey finds
    it nowhere in the table), and the key is remembered after the read
    (call()'s trackingRememberKeys), so a later write invalidates it.  The
    same for reads pipelined, an MGET across shards, OPTIN with CLIENT
    CACHING yes, and a script's read.  Connection 2 tracked the keys
    before: it hears of each expiry.  (The active expiry cycle getting to
    a key first changes nothing for the readers.)"""
    keys = ["a", "b", "c", "d", "e", "f"]
    caching_yes = ["CLIENT", "CACHING", "yes"]
    t = _same_after_lazy_expiry(
        ports,
        [True, False, True, True],
        [
            (1, *[["SET", k, "v", "PX", "300"] for k in keys]),
            (2, "CLIENT", "TRACKING", "on"),
            (2, "MGET", *keys),
            (0, "CLIENT", "TRACKING", "on"),
            (3, "CLIENT", "TRACKING", "on", "OPTIN"),
            ("sleep", 0.35),
            (0, ["GET", "a"], ["GET", "a"], ["MGET", "b", "c", "d"]),
            (3, caching_yes, ["GET", "e"]),
            (0, "EVAL", GET_SCRIPT, "1", "f"),
            *[(1, "SET", k, "x") for k in keys],  # (one step each: the shards' order is their own)
        ],
        swept=lambda rows: False,
        loose=2,
    )
    assert t[6][0] == b"_\r\n_\r\n*3\r\n_\r\n_\r\n_\r\n"  # no invalidation of its own reads
    assert [row[0].count(b"invalidate") for row in t[-6:]] == [1, 1, 1, 1, 0, 1]  # a, b, c, d, f
    assert [row[3].count(b"invalidate") for row in t[-6:]] == [0, 0, 0, 0, 1, 0]  # e


def test_read_that_expires_a_tracked_key_hears_of_it_after_the_reply(ports):
    """A read that finds expired a key its client tracked from an earlier
    read: the invalidation comes right after that read's reply (Redis's
    tracking_pending_keys, sent after the command), before the replies of
    the reads pipelined behind it, and the read remembers the key again.
    NOLOOP: no invalidation of its own read's expiry, the key remembered."""
    keys = ["a", "b", "c", "d"]

    def swept(rows: list) -> bool:  # an invalidation before a read got to the key
        return b"invalidate" in b"".join(rows[5]) or b"\r\nd\r\n" in b"".join(rows[6]) + rows[7][2]

    t = _same_after_lazy_expiry(
        ports,
        [True, False, True],
        [
            (1, *[["SET", k, "v", "PX", "300"] for k in keys]),
            (0, "CLIENT", "TRACKING", "on"),
            (2, "CLIENT", "TRACKING", "on", "NOLOOP"),
            (0, "MGET", *keys),
            (2, "MGET", *keys),
            ("sleep", 0.35),
            # One write: no active expiry cycle between the three reads.
            ("write", 0, ["GET", "a"], ["GET", "a"], ["MGET", "b", "c"]),
            (2, "GET", "d"),
            *[(1, "SET", k, "x") for k in keys],
        ],
        swept,
        # Client 2 hears of a, b and c from three shards, in the order they
        # answer (Redis: in the order of the reads; README, tracking).
        loose=2,
    )
    assert t[6][0].startswith(b"_\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n_\r\n")
    assert t[7][2] == b"_\r\n"  # NOLOOP
    assert [row[0].count(b"invalidate") for row in t[-4:]] == [1, 1, 1, 0]  # a, b, c
    assert [row[2].count(b"invalidate") for row in t[-4:]] == [0, 0, 0, 1]  # d


def test_own_write_before_a_pipelined_read_keeps_tracking(ports):
    """A tracking client that writes a key and reads it, pipelined: the
    write ran before the read, so a key not tracked before hears nothing of
    the write and is tracked after the read; a key tracked before hears of
    the write after its reply (Redis's tracking_pending_keys) and is
    tracked again.  Either way a later write by another client invalidates
    it.  (The acceptor remembers the read's keys when it is sent, before the
    write's invalidation comes back.)"""
    t = _same(
        ports,
        [True, False],
        [
            (0, "CLIENT", "TRACKING", "on"),
            (0, "GET", "b"),
            ("write", 0, ["SET", "a", "1"], ["GET", "a"], ["SET", "b", "2"], ["GET", "b"], ["GET", "b"]),
            (1, "SET", "a", "x"),
            (1, "SET", "b", "x"),
        ],
    )
    assert (
        t[2][0]
        == b"+OK\r\n$1\r\n1\r\n+OK\r\n>2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nb\r\n$1\r\n2\r\n$1\r\n2\r\n"
    )
    assert t[3][0].count(b"invalidate") == 1
    assert t[4][0].count(b"invalidate") == 1


BUSY_SCRIPT = (
    "local t = redis.call('TIME') local start = t[1] * 1000000 + t[2] "
    "repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start > 400000 return 1"
)


def _acceptor_of(conn: Conn, acceptors: int) -> int:
    return (conn.id - 1) % acceptors  # as shardkv hands out client ids


def test_change_before_a_read_in_flight_ran(ports):
    """Another client's write of a key, and the active expiry of one, that
    the key's shard ran after a tracking client sent a read of the key but
    before the read ran (the shard busy meanwhile, with a script on another
    key of its): as in Redis, where the change came before the read, the
    reader hears nothing of a key it did not track before (pipelined reads
    too) and tracks it after the read; a key it tracked before is
    invalidated, before the read's reply, and tracked again.  A later write
    invalidates each.  Redis runs the same commands one after the other.
    With several acceptors the writer is on another acceptor than the
    reader, and the shard picks the pipes in turn after the script: an
    attempt where it ran the read first is run again."""
    acceptors = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))
    a, b, c = "{t}a", "{t}b", "{t}c"

    def run(port: int, busy: bool) -> list[bytes] | None:
        admin = redis.Redis(port=port)
        admin.flushall()
        conns = [Conn(port, True)]
        try:
            # The writer on another acceptor than the reader (if any), the
            # script's client on the reader's: the writer's pipe goes next.
            for same in (False, True):
                while True:
                    conn = Conn(port, False)
                    conns.append(conn)
                    if (
                        acceptors == 1
                        or (_acceptor_of(conn, acceptors) == _acceptor_of(conns[0], acceptors)) == same
                    ):
                        break
                    conns.pop().close()
            reader, writer, holder = conns
            rows = []
            reader.send(b"CLIENT", b"TRACKING", b"on")
            reader.send(b"GET", c.encode())
            rows.append(reader.drain())
            writer.send(b"SET", b.encode(), b"v", b"PX", b"100")
            rows.append(writer.drain())
            if busy:
                holder.send(b"EVAL", BUSY_SCRIPT.encode(), b"1", b"{t}h")
                time.sleep(0.1)
            else:
                time.sleep(0.4)
            writer.sock.sendall(
                encode_command([b"SET", a.encode(), b"x"]) + encode_command([b"SET", c.encode(), b"x"])
            )
            if busy:
                time.sleep(0.1)
            else:
                writer.drain()
            reader.sock.sendall(b"".join(encode_command([b"GET", k.encode()]) for k in (a, a, b, c)))
            rows.append(reader.drain())
            if busy:
                assert holder.drain() == b":1\r\n"
                writer.drain()
            for key in (a, b, c):
                writer.send(b"SET", key.encode(), b"y")
                writer.drain()
                rows.append(reader.drain())
            return rows
        finally:
            for conn in conns:
                conn.close()
            admin.flushall()
            admin.close()

    expected = run(ports["redis"], False)
    invalidate_c = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$4\r\n{t}c\r\n"
    assert expected[2] == invalidate_c + b"$1\r\nx\r\n$1\r\nx\r\n_\r\n$1\r\nx\r\n"
    for _attempt in range(5):
        got = run(ports["shardkv"], True)
        if got[2].startswith(b"_\r\n"):
            continue  # the shard ran the reads before the writes (several acceptors)
        assert got == expected
        return
    raise AssertionError("the shard ran the reads first in every attempt")


def test_reads_inside_exec_are_tracked(ports):
    """Keys read by commands that EXEC ran are remembered as any read's
    are (Redis's call() remembers them for each queued command): a later
    write by another client invalidates them, once, and a write inside the
    same transaction before the read leaves the read's key tracked."""
    t = _same(
        ports,
        [True, False],
        [
            (0, "CLIENT", "TRACKING", "on"),
            (0, ["MULTI"], ["GET", "a"], ["MGET", "b", "c"], ["SET", "d", "1"], ["GET", "d"], ["EXEC"]),
            (1, "SET", "a", "x"),
            (1, "SET", "a", "y"),  # no longer tracked: nothing
            (1, "MSET", "b", "1", "c", "2"),
            (1, "SET", "d", "2"),
            (0, ["MULTI"], ["GET", "e"], ["SET", "e", "1"], ["EXEC"]),  # its own write after the read
            (1, "SET", "e", "2"),  # no longer tracked: nothing
        ],
    )
    assert t[2][0].count(b"invalidate") == 1
    assert t[3][0] == b""


def test_evictions_inside_exec_are_pushed_after_its_reply(ports):
    """Keys evicted over tracking-table-max-keys while EXEC runs its reads:
    their invalidations (of the client's own keys) follow EXEC's reply
    array, never inside it, as Redis evicts before the next command."""
    steps = [
        (1, "CONFIG", "SET", "tracking-table-max-keys", "1"),
        (0, "CLIENT", "TRACKING", "on"),
        (0, ["MULTI"], ["GET", "x"], ["GET", "y"], ["GET", "z"], ["EXEC"]),
        (1, "CONFIG", "SET", "tracking-table-max-keys", "0"),
    ]
    push = re.compile(rb">2\r\n\$10\r\ninvalidate\r\n\*1\r\n\$1\r\n[xyz]\r\n")
    try:
        for port in (ports["redis"], ports["shardkv"]):
            t = _transcript(port, [True, True], steps)
            head = b"+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*3\r\n_\r\n_\r\n_\r\n"
            assert t[2][0].startswith(head), (port, t[2][0])
            rest = t[2][0][len(head) :] + t[3][0]
            assert rest and not push.sub(b"", rest), (port, rest)
    finally:
        for port in (ports["redis"], ports["shardkv"]):
            redis.Redis(port=port).config_set("tracking-table-max-keys", 1000000)


def test_own_flush_pipelined_before_a_read(ports):
    """A tracking client's own FLUSHALL/FLUSHDB pipelined before its read:
    the null invalidation comes after the flush's reply and before the
    read's, and the read's key stays tracked (the read ran after the flush)."""
    for flush in ("FLUSHALL", "FLUSHDB"):
        _same(
            ports,
            [True, False],
            [
                (1, "SET", "a", "v"),
                (0, "CLIENT", "TRACKING", "on"),
                (0, "GET", "a"),
                ("write", 0, [flush], ["GET", "a"], ["GET", "b"]),
                (1, "SET", "a", "x"),
                (1, "SET", "b", "x"),
            ],
        )


def test_watch_aborted_exec_remembers_nothing(ports):
    """An EXEC that a WATCHed key aborts runs nothing, so its queued reads
    track nothing: a later write of their keys sends no invalidation."""
    _same(
        ports,
        [True, False],
        [
            (0, "CLIENT", "TRACKING", "on"),
            (0, "WATCH", "w"),
            (1, "SET", "w", "1"),
            (0, ["MULTI"], ["GET", "a"], ["MGET", "b", "c"], ["EXEC"]),
            (1, "SET", "a", "x"),
            (1, "MSET", "b", "1", "c", "2"),
        ],
    )


def test_reads_inside_an_atomic_exec_are_tracked_in_order(ports):
    """An EXEC run as one atomic operation (WATCH, writes over several
    shards, a blocking command inside) tracks as Redis runs it command by
    command: a key written before its read stays tracked (and is told of
    the write only if it was tracked before), one read before its write is
    invalidated after EXEC's reply and forgotten."""
    a, b = _keys_on_two_shards(4)
    for head, tail in (
        ([["WATCH", "w"]], []),
        ([], [["SET", a, "1"], ["SET", b, "1"]]),  # writes on two shards
        ([], [["BLPOP", "nolist", "0"]]),
    ):
        for tracked_before in (False, True):
            steps: list = [(1, "SET", "t", "0"), (0, "CLIENT", "TRACKING", "on")]
            if tracked_before:
                steps.append((0, "MGET", "k", "r", "t"))
            steps += [(0, *cmd) for cmd in head]
            steps += [
                (0, ["MULTI"], ["SET", "k", "1"], ["GET", "k"], ["GET", "r"], ["SET", "r", "1"], ["GET", "t"])
                + tuple(tail)
                + (["EXEC"],),
                (1, "SET", "k", "x"),
                (1, "SET", "r", "x"),
                (1, "SET", "t", "x"),
            ]
            _same(ports, [True, False], steps)


@pytest.mark.parametrize(
    ("why", "on"),
    [(why, on) for why in ("watch", "two shards", "script") for on in ("on", "on OPTIN")]
    + [("watch", "on BCAST")],
)
def test_tracking_turned_on_inside_an_atomic_exec_tracks_the_reads_after_it(ports, why, on):
    """A CLIENT TRACKING ON queued in a transaction that runs as one
    atomic operation (WATCH, writes over several shards, a script): the
    reads queued after it are remembered, those before it not, as Redis
    runs them in order.  What to remember was decided as EXEC was
    dispatched, when the client was not tracking yet: nothing was.  (Not
    yet as Redis: BCAST hears nothing of the transaction's own writes
    after it, and a script's reads there are not remembered.)"""
    a, b = _keys_on_two_shards(4)
    head = [["WATCH", "w"]] if why == "watch" else []
    tail = {
        "watch": [],
        "two shards": [["SET", a, "1"], ["SET", b, "1"]],
        # (a script that reads nothing: its own reads are not told so)
        "script": [["EVAL", "redis.call('set', KEYS[1], 'v') return 1", "1", "s"]],
    }[why]
    steps = [(1, "SET", "t", "0")] + [(0, *cmd) for cmd in head]
    steps += [
        (0, ["MULTI"], ["GET", "k"], ["CLIENT", "TRACKING", *on.split()], ["GET", "t"], ["MGET", "r", "q"])
        + tuple(tail)
        + (["EXEC"],),
        (1, "SET", "k", "x"),
        (1, "SET", "r", "x"),
        (1, "SET", "t", "x"),
        (1, "SET", "s", "x"),
        (0, "GET", "q"),
        (1, "SET", "q", "x"),
    ]
    _same(ports, [True, False], steps)


@pytest.mark.parametrize("why", ["watch", "two shards", "script"])
@pytest.mark.parametrize("on", ["on", "on NOLOOP", "on OPTOUT", "on BCAST", "on BCAST PREFIX k"])
def test_tracking_turned_on_inside_an_atomic_exec_hears_of_its_own_writes(ports, why, on):
    """A CLIENT TRACKING ON queued in an atomic EXEC, then a read of a key
    and a write of it by the EXEC itself: Redis pushes ``invalidate`` of
    that key after EXEC's reply (not with NOLOOP), and a BCAST client
    hears of the EXEC's writes after the ON.  The shards were told what to
    note as the EXEC was dispatched, before tracking was on: nothing came
    (and the key stayed remembered, told at the next client's write).
    (Writes queued before the ON: see
    test_bcast_turned_on_behind_own_writes_hears_of_those_after_it.)"""
    a, b = _keys_on_two_shards(4)
    head = [(0, "WATCH", "w")] if why == "watch" else []
    tail = {
        "watch": [],
        "two shards": [["SET", a, "1"], ["SET", b, "1"]],
        "script": [["EVAL", "return 1", "0"]],
    }[why]
    steps = [(1, "SET", "ka", "0"), *head]
    steps += [
        (0, ["MULTI"], ["CLIENT", "TRACKING", *on.split()], ["GET", "ka"])
        + (["SET", "ka", "mine"], ["GET", "kb"], *tail, ["EXEC"]),
        (1, "SET", "kb", "x"),
        (1, "SET", "ka", "y"),
        (0, "PING"),
    ]
    if "BCAST" not in on:
        _same(ports, [True, False], steps)
        return
    # A BCAST push of the EXEC's writes may follow the reply of the PING
    # pipelined behind EXEC (see the README): the client's whole stream.
    real = _transcript(ports["redis"], [True, False], steps)
    ours = _transcript(ports["shardkv"], [True, False], steps)
    assert b"".join(row[0] for row in ours) == b"".join(row[0] for row in real)
    assert [row[1] for row in ours] == [row[1] for row in real]


@pytest.mark.parametrize("why", ["watch", "two shards"])
@pytest.mark.parametrize("on", ["OPTIN", "OPTOUT"])
def test_tracking_turned_on_inside_an_atomic_exec_keeps_its_options(ports, why, on):
    """CLIENT TRACKING ON OPTIN or OPTOUT queued in an atomic EXEC: a read
    is remembered only as CLIENT CACHING allows it, a CACHING in the EXEC
    counting for the rest of it (Redis clears it between commands, not
    between those EXEC runs), as Redis runs them in order: every read
    after the ON was remembered (OPTIN), or none once the EXEC held a
    CLIENT CACHING NO (OPTOUT)."""
    a, b = _keys_on_two_shards(4)
    head = [(0, "WATCH", "w")] if why == "watch" else []
    tail = [] if why == "watch" else [["SET", a, "1"], ["SET", b, "1"]]
    caching = ["CLIENT", "CACHING", "YES" if on == "OPTIN" else "NO"]
    steps = [(1, "SET", "ka", "0"), (1, "SET", "kb", "0"), (1, "SET", "kc", "0"), *head]
    steps += [
        (0, ["MULTI"], ["CLIENT", "TRACKING", "ON", on], ["GET", "ka"], ["GET", "kc"], caching)
        + (["GET", "kb"], ["SET", "ka", "mine"], *tail, ["EXEC"]),
        (1, "SET", "ka", "y"),
        (1, "SET", "kb", "y"),
        (1, "SET", "kc", "y"),
        (0, "PING"),
    ]
    _same(ports, [True, False], steps)


@pytest.mark.parametrize("switches", ["on twice", "on off on"])
def test_tracking_turned_on_twice_inside_an_atomic_exec_tracks_each_span(ports, switches):
    """CLIENT TRACKING ON queued twice (or ON, OFF, ON) in an atomic EXEC
    (a script in it): the reads of each span while it is on are
    remembered, those while it is off not, as Redis runs them in order
    (only the reads after the last ON were remembered)."""
    middle = (
        [["CLIENT", "TRACKING", "ON"]]
        if switches == "on twice"
        else [
            ["CLIENT", "TRACKING", "OFF"],
            ["GET", "c"],
            ["CLIENT", "TRACKING", "ON"],
        ]
    )
    steps = [(1, "SET", "a", "0"), (1, "SET", "b", "0"), (1, "SET", "c", "0")]
    steps += [
        (0, ["MULTI"], ["CLIENT", "TRACKING", "ON"], ["GET", "a"], *middle, ["GET", "b"])
        + (["EVAL", "return 1", "0"], ["EXEC"]),
        (1, "SET", "a", "x"),
        (1, "SET", "b", "x"),
        (1, "SET", "c", "x"),
    ]
    _same(ports, [True, False], steps)


def test_table_limit_tells_each_key_once_while_its_reads_wait(ports):
    """1000 pipelined GETs (all of one shard, waiting behind a busy script
    there) with tracking-table-max-keys 10: Redis remembers each key after
    its GET ran and evicts one key before each next command, so 990 keys
    are invalidated, each once, and 10 stay.  shardkv remembered the keys
    as the GETs were sent, and each eviction pass while they waited pushed
    every key it kept again (3649 pushes, one key 271 times); now a key
    kept for a read still waiting is told only if tracked before that read,
    and once, and the table is brought under the limit after the replies."""
    n, limit = 1000, 10
    keys = [b"{k}%d" % i for i in range(n)]

    def run(port: int) -> tuple[list[bytes], bytes]:
        admin = redis.Redis(port=port)
        admin.flushall()
        admin.config_set("tracking-table-max-keys", limit)
        tracker, scripter = Conn(port, True), Conn(port, False)
        try:
            tracker.send(b"CLIENT", b"TRACKING", b"on")
            tracker.drain()
            scripter.send(b"EVAL", BUSY_SCRIPT.encode(), b"1", b"{k}s")
            time.sleep(0.1)  # the script runs (sequencing only, nothing timed)
            tracker.sock.sendall(b"".join(encode_command([b"GET", key]) for key in keys))
            assert scripter.drain() == b":1\r\n"
            data = tracker.drain()
            deadline = time.monotonic() + 20
            while int(admin.info("stats")["tracking_total_keys"]) > limit:  # (shardkv: its cron)
                assert time.monotonic() < deadline, admin.info("stats")["tracking_total_keys"]
                time.sleep(0.05)
            data += tracker.drain()
            messages = []
            pos = 0
            while pos < len(data):
                end = reply_end(data, pos)
                messages.append(data[pos:end])
                pos = end
            pushed = []
            replies = b""
            for m in messages:
                if m.startswith(b">2\r\n$10\r\ninvalidate\r\n"):
                    pushed.append(m.rsplit(b"\r\n", 2)[-2])
                else:
                    replies += m
            return pushed, replies
        finally:
            tracker.close()
            scripter.close()
            admin.config_set("tracking-table-max-keys", 1000000)
            admin.flushall()
            admin.close()

    for port in (ports["redis"], ports["shardkv"]):
        pushed, replies = run(port)
        assert replies == b"_\r\n" * n, port
        told = (len(pushed), len(set(pushed)))
        assert told == (n - limit, n - limit), (port, told)


@pytest.mark.parametrize("watch", [False, True], ids=["in order", "atomic"])
def test_exec_cut_by_deleting_its_own_user_pushes_nothing_after(ports, watch):
    """An EXEC whose ACL DELUSER deletes its client's own user: Redis writes
    its reply up to that command's and closes the connection, with nothing
    after: neither the invalidations of keys evicted over
    tracking-table-max-keys by its reads nor those of keys it wrote after
    reading them.  shardkv sent them after the cut reply."""
    got = {}
    for name in ("redis", "shardkv"):
        port = ports[name]
        admin = redis.Redis(port=port)
        admin.flushall()
        admin.execute_command("ACL", "SETUSER", "trackuser", "on", "nopass", "+@all", "~*", "&*")
        admin.config_set("tracking-table-max-keys", 1)
        conn = Conn(port, True)
        try:
            commands = [[b"AUTH", b"trackuser", b"pw"], [b"CLIENT", b"TRACKING", b"on"], [b"GET", b"w"]]
            if watch:
                commands.append([b"WATCH", b"w"])
            commands += [
                [b"MULTI"],
                [b"GET", b"x"],
                [b"GET", b"y"],
                [b"SET", b"y", b"1"],
                [b"ACL", b"DELUSER", b"trackuser"],
                [b"GET", b"z"],
                [b"EXEC"],
                [b"PING"],
            ]
            conn.sock.sendall(b"".join(encode_command(c) for c in commands))
            data = b""
            while chunk := conn.sock.recv(65536):
                data += chunk
            got[name] = data
        finally:
            conn.close()
            admin.config_set("tracking-table-max-keys", 1000000)
            admin.execute_command("ACL", "DELUSER", "trackuser")
            admin.flushall()
            admin.close()
    assert got["shardkv"] == got["redis"]


@pytest.mark.parametrize(
    "again",
    [
        ["CLIENT", "TRACKING", "on"],
        ["CLIENT", "TRACKING", "on", "OPTIN"],
        ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x"],
    ],
    ids=["on", "optin", "bcast"],
)
def test_atomic_exec_reads_survive_tracking_off_and_on_after_it(ports, again):
    """A WATCHed EXEC (one atomic operation) with CLIENT TRACKING off and on
    pipelined after it: Redis remembered the EXEC's reads as it ran, under
    the client's id, and the table keeps them through tracking off, so the
    client hears of the next change of a read key once tracking is on
    again (not in BCAST mode, whose clients the table does not tell; its
    prefix matches none of the EXEC's writes, which shardkv hands out as
    it commits, after the BCAST is on).
    shardkv remembered them only if the client's tracking state was still
    the one of the EXEC when it committed (an off and on made a new one):
    nothing was pushed."""
    _same(
        ports,
        [True, False],
        [
            (1, "MSET", "a", "1", "b", "1", "k", "1"),
            (0, "CLIENT", "TRACKING", "on"),
            (
                0,
                ["WATCH", "a"],
                ["MULTI"],
                ["GET", "a"],
                ["SET", "b", "2"],
                ["SET", "c", "2"],
                ["SET", "k", "2"],
                ["GET", "k"],
                ["EXEC"],
                ["CLIENT", "TRACKING", "off"],
                again,
            ),
            (1, "SET", "a", "9"),
            (1, "SET", "k", "9"),
            (1, "SET", "b", "9"),
        ],
    )


def test_atomic_exec_reads_survive_tracking_off_until_on_again(ports):
    """As above, with tracking on again only in a later step: the reads of
    the EXEC stay in the table while tracking is off (a key read without
    being written, and one written before it was read)."""
    _same(
        ports,
        [True, False],
        [
            (1, "MSET", "a", "1", "b", "1", "k", "1"),
            (0, "CLIENT", "TRACKING", "on"),
            (
                0,
                ["WATCH", "a"],
                ["MULTI"],
                ["GET", "a"],
                ["SET", "b", "2"],
                ["SET", "k", "2"],
                ["GET", "k"],
                ["EXEC"],
                ["CLIENT", "TRACKING", "off"],
            ),
            (0, "CLIENT", "TRACKING", "on"),
            (1, "SET", "a", "9"),
            (1, "SET", "k", "9"),
        ],
    )


_PUSHED_KEY = re.compile(rb"(>2\r\n\$10\r\ninvalidate\r\n\*1\r\n)\$\d+\r\n[^\r]*\r\n")


def _same_but_evicted_keys(ports, conns_resp3, steps) -> None:
    """As :func:`_same`, with the key of each one-key invalidation left
    out: Redis evicts random keys over tracking-table-max-keys."""
    try:
        runs = []
        for port in (ports["redis"], ports["shardkv"]):
            t = _transcript(port, conns_resp3, steps)
            runs.append([[_PUSHED_KEY.sub(rb"\1?", v) for v in row] for row in t])
    finally:
        for port in (ports["redis"], ports["shardkv"]):
            redis.Redis(port=port).config_set("tracking-table-max-keys", 1000000)
    expected, got = runs
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        assert g == e, f"step {i} {steps[i]}: shardkv {g} redis {e}"


def test_pipelined_reads_over_the_table_limit_are_evicted_at_once(ports):
    """Reads pipelined in one write, with tracking-table-max-keys 2: Redis
    evicts a key before each command once the table is over the limit
    (the reads before it ran), so each invalidation follows the reply of
    the read that went over, and the table is back at 2 keys by the next
    command.  shardkv kept the keys of the reads in flight until its cron
    (one push instead of four before the PING)."""
    keys = [f"k{i}" for i in range(6)]
    _same_but_evicted_keys(
        ports,
        [True, False],
        [
            (1, "CONFIG", "SET", "tracking-table-max-keys", "2"),
            (0, "CLIENT", "TRACKING", "on"),
            ("write", 0, *[["GET", k] for k in keys]),
            (1, "MSET", *[x for k in keys for x in (k, "1")]),  # the 2 keys left: 2 pushes
            ("write", 0, ["MGET", "a", "b"], ["GET", "c"], ["MGET", "d", "e", "f"]),
        ],
    )


def test_tracking_off_inside_exec_over_the_table_limit(ports):
    """CLIENT TRACKING off inside an EXEC after its reads, the table over
    tracking-table-max-keys: Redis evicts before the next command and
    skips a client whose tracking is off, so nothing is pushed.  shardkv
    evicted as EXEC routed its reads and pushed invalidations after EXEC's
    reply (most runs: its passes try each key once, those kept for reads
    in flight included)."""
    _same(
        ports,
        [True, False],
        [
            (1, "CONFIG", "SET", "tracking-table-max-keys", "1"),
            (0, "CLIENT", "TRACKING", "on"),
            (0, ["MULTI"], *[["GET", k] for k in "abcdef"], ["CLIENT", "TRACKING", "off"], ["EXEC"]),
            (0, "GET", "z"),
            (1, "MSET", *[x for k in "abcdefz" for x in (k, "1")]),
            (0, "CLIENT", "TRACKING", "on"),
            (0, ["MULTI"], ["GET", "x"], ["MGET", "y", "w"], ["CLIENT", "TRACKING", "off"], ["EXEC"]),
            (1, "CONFIG", "SET", "tracking-table-max-keys", "1000000"),
        ],
    )


def test_bcast_keys_and_prefixes_in_sorted_order(ports):
    """A BCAST client's invalidations list each prefix's keys sorted, one
    message per prefix in prefix order, as Redis's radix trees give them,
    whatever order the command named them in (shardkv listed them in the
    order they changed, prefixes in the order they were registered)."""
    _same(
        ports,
        [True, False],
        [
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "b", "PREFIX", "a"),
            (1, "MSET", "b2", "1", "a2", "2", "b1", "3", "a1", "3"),
            (1, "DEL", "b1", "a2", "b2", "a1"),
            (1, "MSET", "{t}c", "1", "{t}a", "2"),
            (1, "MSET", "c", "1", "bb", "2", "b", "3"),
            (0, "CLIENT", "TRACKING", "off"),
            (0, "CLIENT", "TRACKING", "on", "BCAST"),
            (1, "MSET", "{t}c", "1", "{t}a", "2", "{t}b", "3"),
            (1, "DEL", "z", "y", "x", "{t}c"),
        ],
    )


def test_bcast_heard_before_another_client_reads_the_new_value(ports):
    """A write pipelined with a slow script on another key (another shard,
    for one of the keys tried): a client that reads the written key while
    the script runs gets the new value only after a BCAST client was told
    (Redis runs nothing meanwhile; its broadcast goes before the GET runs).
    shardkv held the broadcast until the script's reply came, so the BCAST
    client's PING, after the other client read the new value, came back
    with no invalidation (its cache served the old value meanwhile)."""

    def run(port: int, key: str) -> list:
        admin = redis.Redis(port=port)
        admin.flushall()
        conns = [Conn(port, True) for _ in range(3)]
        bcast, writer, reader = conns
        try:
            bcast.send(b"CLIENT", b"TRACKING", b"on", b"BCAST")
            rows = [bcast.drain()]
            writer.sock.sendall(
                encode_command([b"SET", b"a", b"new"])
                + encode_command([b"EVAL", BUSY_SCRIPT.encode(), b"1", key.encode()])
            )
            time.sleep(0.1)  # (the SET ran; Redis is in the script)
            reader.send(b"GET", b"a")
            rows.append(reader.drain())
            rows.append(bcast.drain())  # told before the reader saw "new"
            rows.append(writer.drain())
            rows.append(bcast.drain())
            return rows
        finally:
            for conn in conns:
                conn.close()
            admin.close()

    for key in ("k1", "k2", "k3", "k4", "k5"):
        expected = run(ports["redis"], key)
        assert expected[2] == b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\na\r\n"
        assert run(ports["shardkv"], key) == expected, key


@pytest.mark.parametrize(
    "on",
    [
        [["CLIENT", "TRACKING", "on"]],
        [["CLIENT", "TRACKING", "on", "OPTIN"], ["CLIENT", "CACHING", "yes"]],
    ],
    ids=["on", "optin caching yes"],
)
def test_tracking_turned_on_in_the_read_of_the_commands_after(ports, on):
    """Tracking turned on takes effect for the very next command of the
    same read: an EVALSHA that reads a key (the script loaded before) and a
    GET, each behind the command that turned it on, are tracked, and
    another client's writes push them.  (The first tracking client makes
    the shards note a script's reads: the EVALSHA in the same batch as
    that news had its read noted as no client's.)"""
    steps = [(1, "SCRIPT", "LOAD", GET_SCRIPT), (1, "MSET", "c", "1", "d", "1")]
    for behind in (["EVALSHA", GET_SHA, "1", "d"], ["GET", "c"]):
        steps.append(("write", 0, *on, behind))
        steps.append((1, "SET", behind[-1], "2"))
        steps.append((0, "CLIENT", "TRACKING", "off"))
    t = _same(ports, [True, True], steps)
    assert t[3][0].count(b"invalidate") == 1
    assert t[6][0].count(b"invalidate") == 1


def test_bcast_prefix_collisions(ports):
    """CLIENT TRACKING ... PREFIX refuses prefixes that overlap, each
    other or the client's own, with Redis's error naming the same pair:
    the first prefix given that overlaps (the client's least prefix, or
    the first given after it).  (A collision between two prefixes given,
    the first of them not the first given, is left out: Redis 7.0 replies
    with its error and then +OK, and turns tracking on; see the README.)"""
    _same(
        ports,
        [True, True, True, True, False],
        [
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a", "PREFIX", "b"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "ab"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "c", "PREFIX", "bb", "PREFIX", "a"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x", "PREFIX", "y", "PREFIX", "xy"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x", "PREFIX", "x"),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", ""),
            (0, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "c", "PREFIX", "d"),
            (0, "CLIENT", "TRACKINGINFO"),
            (1, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "", "PREFIX", "k"),
            (1, "CLIENT", "TRACKING", "on", "BCAST"),
            (1, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "z"),
            (1, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", ""),
            (2, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "ab", "PREFIX", "b", "PREFIX", "a"),
            (2, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "ab", "PREFIX", "abc", "PREFIX", "a"),
            (2, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "m"),
            (2, "CLIENT", "TRACKING", "on", "BCAST"),  # ("" beside "m")
            (2, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "mm", "PREFIX", "n"),
            (2, "CLIENT", "TRACKINGINFO"),
            (3, "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a\x00b", "PREFIX", "a\x00"),
            (4, "MSET", "ab", "1", "bb", "2", "d1", "3", "mm", "4", "zz", "5"),
        ],
    )


def test_bcast_many_prefixes_keep_the_server_responsive(ports):
    """20,000 prefixes in one CLIENT TRACKING: another client's PING sent
    right after it is answered (the check compared every pair of prefixes:
    20,000 held every client of the acceptor for minutes), and the replies
    and invalidations are Redis's, collisions among many prefixes included.
    (Redis compares every pair too, a second or two here: hence the minute
    each reply may take, a guard against a hang, not a timing.)"""
    n = 20000

    def prefixes(fmt: str, first: str | None = None) -> list[bytes]:
        out = [b"PREFIX", first.encode()] if first is not None else []
        for i in range(n):
            out += [b"PREFIX", (fmt % i).encode()]
        return out

    def run(port: int) -> list:
        admin = redis.Redis(port=port)
        admin.flushall()
        conns = [Conn(port, True) for _ in range(3)]
        bcast, other, writer = conns
        rows = []
        try:
            bcast.send(b"CLIENT", b"TRACKING", b"on", b"BCAST", *prefixes("p%05d:"))
            rows.append(other.drain(60))  # (its PING is answered)
            rows.append(bcast.drain(60))
            # Against the client's 20,000 prefixes:
            bcast.send(b"CLIENT", b"TRACKING", b"on", b"BCAST", b"PREFIX", b"q:", b"PREFIX", b"p12345:x")
            rows.append(bcast.drain(60))
            bcast.send(b"CLIENT", b"TRACKING", b"on", b"BCAST", b"PREFIX", b"p1")
            rows.append(bcast.drain(60))
            bcast.send(b"CLIENT", b"TRACKING", b"off")
            # The first of 20,001 the same as the last:
            bcast.send(b"CLIENT", b"TRACKING", b"on", b"BCAST", *prefixes("r%05d:", first="r19999:"))
            rows.append(bcast.drain(60))
            bcast.send(b"CLIENT", b"TRACKING", b"on", b"BCAST", *prefixes("p%05d:"))
            rows.append(bcast.drain(60))
            writer.send(b"MSET", b"p00042:k", b"1", b"p19999:a", b"2", b"q:x", b"3", b"r00001:", b"4")
            rows.append(writer.drain())
            rows.append(bcast.drain())
            writer.send(b"SET", b"p12345:x", b"1")
            rows.append(writer.drain())
            rows.append(bcast.drain())
            return rows
        finally:
            for conn in conns:
                conn.close()
            admin.close()

    expected = run(ports["redis"])
    assert expected[1] == b"+OK\r\n" and b"p00042:k" in expected[7]
    assert run(ports["shardkv"]) == expected


def _no_overlap(rng, count: int) -> list[str]:
    """Up to ``count`` random prefixes (of a, b), none starting another."""
    out: list[str] = []
    for _ in range(count):
        p = "".join(rng.choice("ab") for _ in range(rng.randrange(4)))
        if all(not (p.startswith(q) or q.startswith(p)) for q in out):
            out.append(p)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bcast_random_prefixes_and_keys(ports, seed):
    """Random prefixes (overlapping between clients, the empty one too)
    and random writes, some by the BCAST clients themselves: each BCAST
    client, with NOLOOP, REDIRECT to RESP2 Pub/Sub or to RESP3, gets
    Redis's invalidations."""
    import random

    rng = random.Random(seed)
    # 0, 1 (NOLOOP), 3 (REDIRECT to 5): RESP3; 2 (REDIRECT to 4): RESP2;
    # 4: RESP2 subscribed; 5: RESP3; 6: a writer with no tracking.
    resp3 = [True, True, False, True, False, True, True]
    steps: list = [(4, "SUBSCRIBE", "__redis__:invalidate")]
    options = [[], ["NOLOOP"], ["REDIRECT", "$id4"], ["REDIRECT", "$id5"]]
    for c, extra in enumerate(options):
        mine = _no_overlap(rng, rng.randrange(5))
        cut = rng.randrange(len(mine) + 1)
        for part in (mine[:cut], mine[cut:]) if mine else ([],):
            if part or not mine:
                args = [a for p in part for a in ("PREFIX", p)]
                steps.append((c, "CLIENT", "TRACKING", "on", "BCAST", *extra, *args))
    keys = sorted({"".join(rng.choice("ab") for _ in range(rng.randrange(1, 5))) for _ in range(16)})
    # With several acceptors a write to several shards may be told in a
    # push per shard, then in one (see the README): one slot per command.
    one_slot = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1")) > 1
    for _ in range(25):
        # Not 0: a BCAST client's own write, with the PING of the step
        # pipelined behind it, may be told after the PONG (see the README).
        writer = rng.choice([1, 2, 3, 6])
        what = rng.randrange(3)
        chosen = rng.sample(keys, min(len(keys), rng.randrange(1, 4 if what == 1 else 3)))
        if one_slot and len(chosen) > 1:
            chosen = [k + "{t}" for k in chosen]
        if what == 0:
            steps.append((writer, "SET", chosen[0], "v"))
        elif what == 1:
            steps.append((writer, "MSET", *[a for k in chosen for a in (k, "v")]))
        else:
            steps.append((writer, "DEL", *chosen))
    _same(ports, resp3, steps)


@pytest.mark.parametrize(
    "resp3, on",
    [
        (True, ["CLIENT", "TRACKING", "on"]),
        (True, ["CLIENT", "TRACKING", "on", "OPTIN"]),
        (True, ["CLIENT", "TRACKING", "on", "NOLOOP"]),
        (True, ["CLIENT", "TRACKING", "on", "BCAST"]),
        (True, ["CLIENT", "TRACKING", "on", "REDIRECT", "$id1"]),
        (False, ["CLIENT", "TRACKING", "on", "REDIRECT", "$id1"]),
    ],
    ids=["on", "optin caching yes", "noloop", "bcast", "redirect", "resp2 redirect"],
)
def test_own_write_after_a_pipelined_read_then_tracking_off(ports, resp3, on):
    """Tracking on, a read, the client's own write of the key read and
    tracking off, all in one write: the write's invalidation comes after
    its reply (Redis ran it, and told it, before tracking went off: the
    shard's events come after the acceptor turned it off), unless NOLOOP;
    keys on one shard and on two.  With several acceptors the REDIRECT
    target is another acceptor's client."""
    a, b = _keys_on_two_shards(2)
    caching = [["CLIENT", "CACHING", "yes"]] if "OPTIN" in on else []
    steps = [(1, "SUBSCRIBE", "__redis__:invalidate")] if "REDIRECT" in on else []
    for key, other in ((a, a), (a, b)):
        read = [*caching, ["GET", key], ["GET", other]]
        # (A REDIRECT target hears of writes on two shards in the order their
        # events come: one write there.)
        writes = (
            [["SET", other, "3"]]
            if "REDIRECT" in on and key != other
            else [["SET", key, "2"], ["SET", other, "3"]]
        )
        steps.append(
            ("write", 0, on, ["SET", key, "1"], *read, *writes, ["ECHO", "x"], ["CLIENT", "TRACKING", "off"])
        )
    _same(ports, [resp3, resp3], steps)


@pytest.mark.parametrize("on", ["on", "on BCAST", "on OPTIN", "on REDIRECT $id1"])
def test_flush_pipelined_before_tracking_on_tells_nothing(ports, on):
    """FLUSHALL (or FLUSHDB) then CLIENT TRACKING on in one write: Redis tells
    a flush only to clients tracking when it ran (the shards' flush events
    come after the acceptor turned tracking on)."""
    steps = [(1, "SUBSCRIBE", "__redis__:invalidate")] if "REDIRECT" in on else []
    for flush in ("FLUSHALL", "FLUSHDB"):
        steps.append(("write", 0, [flush], ["CLIENT", "TRACKING", *on.split()], ["GET", "k"]))
        steps.append((0, "CLIENT", "TRACKING", "off"))
    # Nor a write of a key it tracked before (the table outlives tracking):
    # Redis ran it while tracking was off.  The key then left the table.
    steps.append(
        ("write", 0, ["CLIENT", "TRACKING", *on.split()], ["GET", "k"], ["CLIENT", "TRACKING", "off"])
    )
    steps.append(("write", 0, ["SET", "k", "1"], ["CLIENT", "TRACKING", *on.split()], ["ECHO", "x"]))
    steps.append((1, "SET", "k", "2"))
    _same(ports, [True, True], steps)


@pytest.mark.parametrize("on", ["on", "on REDIRECT $id1", "on BCAST"])
def test_own_writes_of_an_exec_then_tracking_off(ports, on):
    """A transaction's own write of a key the client tracked, with CLIENT
    TRACKING off pipelined after EXEC: Redis told it after EXEC's reply,
    run atomically (WATCH) or one by one; an atomic EXEC's reads stay
    remembered (the other client's write tells nothing: tracking is off)."""
    off = ["CLIENT", "TRACKING", "off"]
    steps = [
        (1, "SUBSCRIBE", "__redis__:invalidate"),
        (0, "CLIENT", "TRACKING", *on.split()),
        (0, "GET", "k"),
    ]
    steps.append(("write", 0, ["WATCH", "a"], ["MULTI"], ["SET", "k", "2"], ["SET", "b", "2"], ["EXEC"], off))
    steps.append(
        (
            "write",
            0,
            ["CLIENT", "TRACKING", *on.split()],
            ["GET", "k"],
            ["MULTI"],
            ["SET", "k", "2"],
            ["EXEC"],
            off,
        )
    )
    steps.append((1, "SET", "k", "3"))
    _same(ports, [True, True], steps)


@pytest.mark.parametrize("on", ["on", "on REDIRECT $id1"])
def test_own_write_then_reset(ports, on):
    """RESET pipelined behind a write of a key read: the RESP3 push of the
    write comes before RESET's reply (which turns RESP3 off)."""
    steps = [(1, "SUBSCRIBE", "__redis__:invalidate")]
    steps.append(
        ("write", 0, ["CLIENT", "TRACKING", *on.split()], ["GET", "k"], ["SET", "k", "2"], ["RESET"])
    )
    steps.append((1, "SET", "k", "3"))
    _same(ports, [True, True], steps)


@pytest.mark.parametrize("again", ["on", "on NOLOOP", "on OPTOUT"])
def test_own_change_then_tracking_off_on_and_off_again(ports, again):
    """A write (or flush) of a key read, then CLIENT TRACKING off, on again
    (another mode) and maybe off, all in one write: Redis told the change
    as tracking was when it ran, before the first off (shardkv kept only
    the last off's state, or took the one turned on after, and dropped
    it; and dropped a flush's through any off)."""
    off = ["CLIENT", "TRACKING", "off"]
    on = ["CLIENT", "TRACKING", *again.split()]
    steps: list = []
    for change in (["SET", "k", "2"], ["FLUSHALL"]):
        steps.append(("write", 0, ["CLIENT", "TRACKING", "on"], ["GET", "k"], change, off, on, off))
        steps.append((1, "SET", "k", "3"))
        steps.append(("write", 0, ["CLIENT", "TRACKING", "on"], ["GET", "k"], change, off, on, ["ECHO", "x"]))
        steps.append((0, *off))
    steps.append(("write", 0, ["CLIENT", "TRACKING", "on"], ["GET", "k"], ["FLUSHDB"], off))
    _same(ports, [True, True], steps)


@pytest.mark.parametrize(
    ("how", "others"),
    [
        (how, others)
        for how in ("pipelined", "exec one by one", "exec watched", "exec two shards")
        for others in ("none", "tracking")
    ]
    + [("after a watched exec", others) for others in ("none", "tracking")]
    + [("pipelined", "bcast"), ("exec watched", "bcast")]
    + [(f"adds a prefix {how}", "none") for how in ("pipelined", "exec one by one", "exec watched")]
    + [("exec watched, on off on", "none")],
)
def test_bcast_turned_on_behind_own_writes_hears_of_those_after_it(ports, how, others):
    """Writes, CLIENT TRACKING on BCAST, writes, in one pipeline or one
    transaction: Redis notes a change under the prefixes registered as it
    runs, so the writes before the ON are broadcast to no one, unless
    another client's BCAST had the prefix already (then to both).  The
    shards' events of all of them come after the acceptor ran the ON:
    shardkv broadcast those before it too.  The keys share a shard where
    one push per shard would differ (``{a}``), except across two shards;
    BCAST pushes may follow the reply of the PING behind (see the
    README): the client's whole stream is compared.  Both clients on one
    acceptor: each acceptor keeps its own prefixes (see the README).  An
    ON that adds the prefix to a BCAST client's (``adds a prefix``): the
    writes between the two ONs come before it too (shardkv broadcast
    them).  On, off and on again: only the writes after the last ON."""
    a, b = _keys_on_two_shards(4)
    on = ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "{a}"]
    first, second = ["SET", "{a}1", "x"], ["SET", "{a}2", "y"]
    if how == "pipelined":
        step: tuple = ("write", 0, first, on, second)
    elif how == "exec one by one":
        step = (0, ["MULTI"], first, on, second, ["EXEC"])
    elif how == "exec watched":
        step = (0, ["WATCH", "w"], ["MULTI"], first, on, second, ["EXEC"])
    elif how == "after a watched exec":  # (its writes handed out as it commits)
        step = ("write", 0, ["WATCH", "w"], ["MULTI"], first, ["EXEC"], on, second)
    elif how == "exec watched, on off on":  # (a prefix named "prefix" too)
        off, on2 = ["CLIENT", "TRACKING", "off"], [*on[:-1], "prefix", "PREFIX", "{a}"]
        middle = [off, ["SET", "{a}3", "x"], on2]
        step = (0, ["WATCH", "w"], ["MULTI"], first, on, second, *middle, second, ["EXEC"])
    elif how.startswith("adds a prefix"):
        before = ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x"]
        if how.endswith("pipelined"):
            step = ("write", 0, ["SET", "{a}0", "w"], before, first, on, second)
        else:
            head = [["WATCH", "w"]] if how.endswith("watched") else []
            step = (0, *head, ["MULTI"], ["SET", "{a}0", "w"], before, first, on, second, ["EXEC"])
    else:
        on = ["CLIENT", "TRACKING", "on", "BCAST"]
        first, second = ["SET", a, "x"], ["SET", b, "y"]
        step = (0, ["MULTI"], first, ["SET", b, "x"], on, second, ["EXEC"])
    pre = {
        "none": [],
        "tracking": [(1, "CLIENT", "TRACKING", "on")],
        "bcast": [(1, "CLIENT", "TRACKING", *on[2:])],
    }[others]
    steps = [*pre, step, (1, "SET", "{a}3", "z"), (1, "SET", a, "z")]
    real = _transcript(ports["redis"], [True, True], steps)
    ours = _transcript(ports["shardkv"], [True, True], steps, together=True)
    assert b"".join(row[0] for row in ours) == b"".join(row[0] for row in real)
    assert b"".join(row[1] for row in ours) == b"".join(row[1] for row in real)


@pytest.mark.parametrize(
    ("on", "before"),
    [("on NOLOOP", "none"), ("on NOLOOP", "tracking"), ("on BCAST NOLOOP PREFIX a", "none")]
    + [("on NOLOOP REDIRECT $id1", "tracking")],
)
def test_noloop_turned_on_inside_an_exec_run_one_by_one(ports, on, before):
    """CLIENT TRACKING ON NOLOOP queued in an EXEC that routes its commands
    one by one (each on one shard), then reads and writes of keys it read:
    Redis's NOLOOP tells the client nothing of its own writes; another
    client's write of a key read tells it (the README had it told of its
    own write).  With the shards listening already (another client
    tracks) or told to as the ON runs."""
    steps = [(1, "SUBSCRIBE", "__redis__:invalidate")] if "REDIRECT" in on else []
    if before == "tracking":
        steps.append((2, "CLIENT", "TRACKING", "on"))
    steps += [
        (
            0,
            ["MULTI"],
            ["CLIENT", "TRACKING", *on.split()],
            ["GET", "a:1"],
            ["GET", "b:2"],
            ["SET", "a:1", "z"],
            ["SET", "c:3", "z"],
            ["EXEC"],
        ),
        (0, "SET", "a:1", "y"),
        (0, "GET", "a:1"),
        (2, "SET", "a:1", "w"),
        (2, "SET", "b:2", "w"),
        (2, "SET", "a:9", "w"),
    ]
    _same(ports, [True, False, True], steps)


@pytest.mark.parametrize("resp3", [True, False])
def test_redirect_to_the_writing_client_pushes_before_its_reply(ports, resp3):
    """A client whose tracking redirects to the client that writes a key it
    read (or flushes): Redis sends the invalidation as the write runs,
    before the writer's reply (inside EXEC's array, before the command's
    reply, the EXEC run command by command or atomically); shardkv pushed
    it after the reply (a flush in an atomic EXEC: before its array).  The writer is RESP3 (a
    RESP2 subscriber runs no SET); the tracking clients either, on the
    writer's acceptor (from another acceptor, see
    test_redirect_to_a_writer_on_another_acceptor_pushes_before_its_reply)."""
    steps = [
        (0, "CLIENT", "TRACKING", "on", "REDIRECT", "$id1"),
        (2, "CLIENT", "TRACKING", "on", "REDIRECT", "$id1"),
        (0, "MGET", "k", "j"),
        (2, "GET", "k"),
        (1, "SET", "k", "1"),
        (1, ["GET", "k"], ["SET", "j", "2"], ["ECHO", "x"]),
        (0, "GET", "k"),
        (1, "FLUSHALL"),
        (0, "MGET", "k", "j"),
        (1, ["MULTI"], ["GET", "j"], ["SET", "k", "1"], ["EXEC"]),
        (0, "GET", "k"),
        (1, "WATCH", "w"),  # (run atomically)
        (1, ["MULTI"], ["GET", "j"], ["SET", "k", "2"], ["EXEC"]),
        (0, "GET", "k"),
        (0, "GET", "k"),
        (1, ["WATCH", "w"], ["MULTI"], ["GET", "j"], ["FLUSHALL"], ["EXEC"]),  # (atomic: a flush inside)
        (1, ["DEL", "k"], ["FLUSHDB"], ["PING"]),  # (last: its PING's reply ends the step's transcript)
    ]
    _same(ports, [resp3, True, resp3], steps, together=True)


@pytest.fixture(scope="module")
def two_acceptors(ports):
    """redis-server's port and that of a shardkv of two shards and two
    acceptors, for connections put on chosen acceptors (``_same``'s ``on``)."""
    proc = start_shardkv(shards=2, acceptors=2)
    yield {"redis": ports["redis"], "shardkv": proc.port}
    proc.stop()


@pytest.mark.parametrize("resp3", [True, False], ids=["resp3", "resp2"])
def test_redirect_to_a_writer_on_another_acceptor_pushes_before_its_reply(two_acceptors, resp3):
    """As above, with the tracking clients on acceptor 0 and the writer on
    acceptor 1: the invalidation comes over the bus (shardkv had it after
    the writer's reply, and after the replies pipelined behind it), and
    before the reply of the command that made the change, inside EXEC's
    array too, a single-shard command's (the shard's events) as a
    multi-shard one's (relayed by the writer's acceptor: MSET, a flush, an
    EXEC run atomically)."""
    a, b = _keys_on_two_shards(2)
    steps = [
        (0, "CLIENT", "TRACKING", "on", "REDIRECT", "$id1"),
        (2, "CLIENT", "TRACKING", "on", "REDIRECT", "$id1"),
        (0, "MGET", "k", "j"),
        (2, "GET", "k"),
        (1, "SET", "k", "1"),
        (1, ["GET", "k"], ["SET", "j", "2"], ["ECHO", "x"]),
        (0, "GET", "k"),
        (0, "GET", "j"),
        (1, ["SET", "j", "3"], ["SET", "k", "2"], ["ECHO", "x"]),
        (0, "MGET", "k", "j"),
        (1, ["MULTI"], ["GET", "j"], ["SET", "k", "1"], ["INCR", "j"], ["EXEC"]),
        (0, "MGET", "k", a, b),
        (1, ["MSET", a, "1", b, "2"], ["SET", "k", "3"], ["ECHO", "x"]),
        (0, "MGET", "k", "j"),
        (1, ["FLUSHALL"], ["ECHO", "x"]),
        (0, "MGET", "k", "j"),
        (1, ["WATCH", "w"], ["MULTI"], ["GET", "j"], ["SET", "k", "2"], ["EXEC"], ["ECHO", "x"]),
        (0, "GET", "k"),
        (1, ["WATCH", "w"], ["MULTI"], ["GET", "j"], ["FLUSHALL"], ["EXEC"]),
        (0, "GET", "k"),
        (1, ["DEL", "k"], ["FLUSHDB"], ["PING"]),
    ]
    _same(two_acceptors, [resp3, True, resp3], steps, on=(0, 1, 0))


@pytest.mark.parametrize("why", ["watch", "two shards", "script"])
def test_script_reads_inside_an_atomic_exec_that_turns_tracking_on(ports, why):
    """A script's reads (its declared keys, as Redis's call() remembers
    the caller's) queued after a CLIENT TRACKING ON in an atomic EXEC:
    remembered as Redis, told when another client writes them; a key the
    transaction writes after the script reads it is told after EXEC's
    reply, and stays told once."""
    a, b = _keys_on_two_shards(4)
    head = [["WATCH", "w"]] if why == "watch" else []
    tail = [["SET", a, "1"], ["SET", b, "1"]] if why == "two shards" else []
    read = "return redis.call('get', KEYS[1])"
    steps = [
        (
            0,
            *head,
            ["MULTI"],
            ["EVAL", read, "1", "k"],
            ["CLIENT", "TRACKING", "on"],
            ["EVAL", read, "1", "r"],
            ["EVAL", read, "1", "m"],
            ["SET", "m", "mine"],
            *tail,
            ["EXEC"],
        ),
        (1, "SET", "k", "x"),
        (1, "SET", "r", "x"),
        (1, "SET", "m", "x"),
    ]
    _same(ports, [True, False], steps)


@pytest.mark.parametrize("how", ["bcast", "bcast redirect", "flush", "off"])
def test_tracking_on_behind_muted_replies_hears_the_writes_after_it(ports, how):
    """CLIENT REPLY OFF, a write, PING, CLIENT TRACKING on, then (in the
    same read) a write or FLUSHALL, PING: the PING's dropped reply is one
    object for all (MUTED), so a mark of the commands in flight at the ON
    that was that object took the writes after the ON for ones before it
    (and an OFF behind them for none of them): shardkv told nothing of
    {a}1 or of the flush, Redis 7.0.15 tells of them."""
    on = ["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "{a}"]
    write = [["SET", "{a}1", "x"], ["PING"]]
    if how == "bcast redirect":
        on += ["REDIRECT", "$id1"]
    elif how == "flush":
        on, write = ["CLIENT", "TRACKING", "on", "REDIRECT", "$id1"], [["FLUSHALL"], ["PING"]]
    elif how == "off":
        on = ["CLIENT", "TRACKING", "on", "REDIRECT", "$id1"]
        write = [["GET", "{a}1"], ["SET", "{a}1", "x"], ["PING"], ["CLIENT", "TRACKING", "off"]]
    quiet, loud = ["CLIENT", "REPLY", "OFF"], ["CLIENT", "REPLY", "ON"]
    step = ("write", 0, quiet, ["SET", "{a}0", "w"], ["PING"], on, *write, loud)
    steps = [(1, "PING"), step, (1, "SET", "{a}3", "z")]
    if how == "bcast":  # (its push of {a}3 may follow the PING's reply)
        steps.append((1, "SET", _keys_on_two_shards(4)[0], "z"))
    real = _transcript(ports["redis"], [True, True], steps)
    ours = _transcript(ports["shardkv"], [True, True], steps, together=True)
    assert b"".join(row[0] for row in ours) == b"".join(row[0] for row in real)
    assert b"".join(row[1] for row in ours) == b"".join(row[1] for row in real)


@pytest.mark.parametrize("redirect", [False, True])
def test_tracking_on_off_on_in_one_pipeline_tracks_the_last_span_s_reads(ports, redirect):
    """CLIENT TRACKING on, GET k, SET k, off, on, GET k, SET k in one read:
    Redis tells of each SET (the second GET tracks k again), and of a later
    SET.  shardkv judged the first SET's change by the state turned off
    alone, which knew nothing of the second GET still in flight: k left
    the table, and neither the second SET nor a later one told of it."""
    on = ["CLIENT", "TRACKING", "on", *(["REDIRECT", "$id1"] if redirect else [])]
    off, get, put = ["CLIENT", "TRACKING", "off"], ["GET", "k"], ["SET", "k", "x"]
    steps = [(1, "PING"), ("write", 0, on, get, put, off, on, get, put), (0, "PING"), (1, "SET", "k", "w")]
    real = _transcript(ports["redis"], [True, True], steps)
    ours = _transcript(ports["shardkv"], [True, True], steps, together=True)
    assert b"".join(row[0] for row in ours) == b"".join(row[0] for row in real)
    assert b"".join(row[1] for row in ours) == b"".join(row[1] for row in real)


_K1, _K2 = _keys_on_two_shards(4)
# A RESP3 client x blocked in a blocking command while writes come: (what x
# sends before it blocks, what a client redirecting to x sends first
# ($x: x's id), x's blocking command, another client's blocking command
# sent after it (or None), the writes: each a pipeline, sent once the
# one before it was answered).
_BCAST_NOLOOP = "CLIENT TRACKING on BCAST NOLOOP"
_BLOCKED: dict[str, tuple[list[str], list[str], str, str | None, list[list[str]]]] = {
    "blpop": (["CLIENT TRACKING on", "GET t"], [], "BLPOP k 0", None, [["SET t v"], ["RPUSH k a"]]),
    "blpop-two-shards": (
        ["CLIENT TRACKING on", "GET t"],
        [],
        f"BLPOP {_K1} {_K2} 0",
        None,
        [["SET t v"], [f"RPUSH {_K2} a"]],
    ),
    "bzpopmin": (["CLIENT TRACKING on", "GET t"], [], "BZPOPMIN z 0", None, [["SET t v"], ["ZADD z 1 m"]]),
    "xread": (
        ["CLIENT TRACKING on", "GET t"],
        [],
        "XREAD BLOCK 0 STREAMS s $",
        None,
        [["SET t v"], ["XADD s 1-1 f v"]],
    ),
    "redirect": (
        [],
        ["CLIENT TRACKING on REDIRECT $x", "GET t"],
        "BLPOP k 0",
        None,
        [["SET t v"], ["RPUSH k a"]],
    ),
    "bcast": (["CLIENT TRACKING on BCAST"], [], "BLPOP k 0", None, [["SET t v"], ["RPUSH k a"]]),
    # Redis's unit/tracking "Unblocked BLMOVE gets notification after response"
    "blmove-dest": (
        ["RPUSH {t}l2 a", "CLIENT TRACKING on", "LRANGE {t}l2 0 -1"],
        [],
        "BLMOVE {t}l1 {t}l2 LEFT LEFT 0",
        None,
        [["RPUSH {t}l1 foo"]],
    ),
    "blmove-both": (
        ["CLIENT TRACKING on", "LRANGE {t}l1 0 -1", "LRANGE {t}l2 0 -1"],
        [],
        "BLMOVE {t}l1 {t}l2 LEFT LEFT 0",
        None,
        [["SET t v"], ["RPUSH {t}l1 foo"]],
    ),
    "blmove-noloop": (
        ["CLIENT TRACKING on NOLOOP", "LRANGE {t}l1 0 -1", "LRANGE {t}l2 0 -1"],
        [],
        "BLMOVE {t}l1 {t}l2 LEFT LEFT 0",
        None,
        [["RPUSH {t}l1 foo"]],
    ),
    # (BCAST NOLOOP: Redis counts a served BLMOVE's push, a BLMPOP's or a
    # BZPOPMIN's pop as the blocked client's own change, told to it not at
    # all; a BLPOP's pop, or a BLMOVE's, it does not signal: the push's)
    "blmove-bcast-noloop": (
        [_BCAST_NOLOOP],
        [],
        "BLMOVE {t}l1 {t}l2 LEFT LEFT 0",
        None,
        [["RPUSH {t}l1 foo"]],
    ),
    "blmove-same-key-bcast-noloop": (
        [_BCAST_NOLOOP],
        [],
        "BLMOVE {t}l1 {t}l1 LEFT RIGHT 0",
        None,
        [["RPUSH {t}l1 foo bar"]],
    ),
    "blmpop-bcast-noloop": (
        [_BCAST_NOLOOP],
        [],
        "BLMPOP 0 1 {t}l1 LEFT COUNT 2",
        None,
        [["RPUSH {t}l1 a b"]],
    ),
    "bzpopmin-bcast-noloop": ([_BCAST_NOLOOP], [], "BZPOPMIN {t}z 0", None, [["ZADD {t}z 1 a 2 b"]]),
    "blpop-bcast-noloop": ([_BCAST_NOLOOP], [], "BLPOP {t}l1 0", None, [["RPUSH {t}l1 a b"]]),
    "blmove-redirect": (
        [],
        ["CLIENT TRACKING on REDIRECT $x", "LRANGE {t}l2 0 -1"],
        "BLMOVE {t}l1 {t}l2 LEFT LEFT 0",
        None,
        [["RPUSH {t}l1 foo"]],
    ),
    "redirect-served": (
        [],
        ["CLIENT TRACKING on REDIRECT $x", "LRANGE {t}l1 0 -1"],
        "BLPOP {t}l1 0",
        None,
        [["RPUSH {t}l1 foo"]],
    ),
    "served-then-write": (["CLIENT TRACKING on", "GET t"], [], "BLPOP k 0", None, [["RPUSH k a", "SET t v"]]),
    # (a write before it, on its shard, that serves nobody: x hears at once)
    "write-behind-unrelated": (
        ["CLIENT TRACKING on", "GET t"],
        [],
        "BLPOP k 0",
        None,
        [["RPUSH {t}o a", "SET t v"], ["RPUSH k a"]],
    ),
    # (with two acceptors a FLUSHALL's cross-shard gate held it behind the reply)
    "flushall": (["CLIENT TRACKING on", "GET t"], [], "BLPOP k 0", None, [["FLUSHALL"], ["RPUSH k a"]]),
    "flushdb-redirect": (
        [],
        ["CLIENT TRACKING on REDIRECT $x", "GET t"],
        "BLPOP k 0",
        None,
        [["FLUSHDB"], ["RPUSH k a"]],
    ),
    "blmove-same-key": (
        ["CLIENT TRACKING on", "LRANGE {t}l 0 -1", "GET {t}u"],
        [],
        "BLMOVE {t}l {t}l LEFT RIGHT 0",
        None,
        [["SET {t}u v"], ["RPUSH {t}l foo"]],
    ),
    "served-by-exec": (
        ["CLIENT TRACKING on", "GET {t}a", "GET {t}b"],
        [],
        "BLPOP {t}k 0",
        None,
        [["MULTI", "SET {t}a v", "RPUSH {t}k a", "SET {t}b v", "EXEC"]],
    ),
    "other-served-first": (
        ["CLIENT TRACKING on", "LRANGE {t}l2 0 -1"],
        [],
        "BLPOP {t}k 0",
        "BLMOVE {t}j {t}l2 LEFT LEFT 0",
        [["MULTI", "RPUSH {t}j 1", "RPUSH {t}k 1", "EXEC"]],
    ),
    "other-served-after": (
        ["CLIENT TRACKING on", "LRANGE {t}l2 0 -1"],
        [],
        "BLPOP {t}k 0",
        "BLMOVE {t}j {t}l2 LEFT LEFT 0",
        [["MULTI", "RPUSH {t}k 1", "RPUSH {t}j 1", "EXEC"]],
    ),
}


def _cmds(lines: list[str], xid: bytes = b"") -> bytes:
    return b"".join(encode_command(line.replace("$x", xid.decode()).encode().split()) for line in lines)


def _wait_blocked(w: socket.socket, n: int) -> None:
    """Until the server counts ``n`` clients blocked."""
    deadline = time.monotonic() + 20
    while True:
        w.sendall(b"INFO clients\r\n")
        info = b""
        while reply_end(info, 0) == -1:
            w.settimeout(max(deadline - time.monotonic(), 0.01))
            info += w.recv(1 << 16)
        if b"blocked_clients:%d\r\n" % n in info:
            return
        assert time.monotonic() < deadline, info


def _blocked_hears(port: int, case: str, apart: int = 0, tracker: int = 0, beside: bool = False) -> bytes:
    """What x of ``_BLOCKED[case]`` got once it blocked, until an ``ECHO
    end`` it sends after the writes; ``apart``: the writer on another
    acceptor than x, of that many; ``tracker``: the client that redirects
    to x on another acceptor than x, of that many, and the writer there
    too if ``beside``, else on x's."""
    mine, redirecting, wait, other, writes = _BLOCKED[case]
    redis.Redis(port=port).flushall()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=20) as x,
        socket.create_connection(("127.0.0.1", port), timeout=20) as t,
        socket.create_connection(("127.0.0.1", port), timeout=20) as y,
        socket.create_connection(("127.0.0.1", port), timeout=20) as w,
    ):
        x.sendall(b"HELLO 3\r\nCLIENT ID\r\nECHO id\r\n")
        got = read_through(x, b"$2\r\nid\r\n")[0]
        xid = re.search(rb":(\d+)\r\n\$2\r\nid\r\n$", got).group(1)  # type: ignore[union-attr]
        if case.startswith("flush"):
            w.close()  # (one on x's acceptor: a FLUSHALL's gate there held it back)
            w = _beside(port, int(xid))
        elif apart:
            w.close()
            w = _beside(port, int(xid), apart, same=False)
        if tracker:
            t.close()
            t = _beside(port, int(xid), tracker, same=False)
            w.close()
            w = _beside(port, int(xid), tracker, same=not beside)
        t.sendall(_cmds(redirecting, xid) + b"ECHO ok\r\n")
        read_through(t, b"$2\r\nok\r\n")
        x.sendall(_cmds(mine) + b"ECHO start\r\n" + _cmds([wait]))
        read_through(x, b"$5\r\nstart\r\n")
        _wait_blocked(w, 1)
        if other is not None:
            y.sendall(_cmds([other]))
            _wait_blocked(w, 2)
        for step in writes:
            w.sendall(_cmds(step) + b"ECHO wrote\r\n")
            read_through(w, b"$5\r\nwrote\r\n")
        x.sendall(b"ECHO end\r\n")
        got = read_through(x, b"$3\r\nend\r\n")[0]
        w.close()
        return got


def _beside(port: int, xid: int, k: int = 0, same: bool = True) -> socket.socket:
    """A connection on the acceptor of client ``xid`` (of ``k`` acceptors,
    ``$SHARDKV_TEST_ACCEPTORS`` unless told; any one where that is 1, or
    on redis-server); not ``same``: on another one."""
    k = k or int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", port), timeout=20)
        s.sendall(b"CLIENT ID\r\nECHO id\r\n")
        got = read_through(s, b"$2\r\nid\r\n")[0]
        if ((int(got[1 : got.index(b"\r\n")]) - xid) % k == 0) == same:
            return s
        s.close()
    pytest.fail(
        "no connection landed on x's acceptor" if same else "no connection landed beside x's acceptor"
    )


# (the cases where Redis tells the blocked client nothing)
_NOTHING_HEARD = (
    "blmove-same-key-bcast-noloop",
    "blmpop-bcast-noloop",
    "bzpopmin-bcast-noloop",
)


@pytest.mark.parametrize("case", list(_BLOCKED))
def test_a_blocked_client_hears_invalidations_at_once(ports, case):
    """A RESP3 client blocked in a blocking command gets an invalidation (of
    its own tracking, or as a REDIRECT target) at once, as Redis writes it,
    the blocked command having no reply yet: before the reply that serving
    it gives later; but one of a change that its own served command made
    (BLMOVE into a key it tracks) after that reply (none with NOLOOP), and
    one of what runs after it was served, after its reply too.  Under
    BCAST NOLOOP it hears nothing of the changes Redis counts as its own
    served command's (shardkv told it, K=1 and 2)."""
    theirs = _blocked_hears(ports["redis"], case)
    assert (b"invalidate" in theirs) is (case not in _NOTHING_HEARD)
    assert _blocked_hears(ports["shardkv"], case) == theirs


@pytest.mark.parametrize(
    "case", ["served-then-write", "redirect", "served-by-exec", "xread", "write-behind-unrelated"]
)
def test_a_blocked_client_hears_a_change_from_another_acceptor(two_acceptors, case):
    """As above with the writer on the other acceptor of two: a change by a
    command pipelined behind one of the writer's not yet answered (``RPUSH
    k a`` then ``SET t v``, on two shards) is told after the blocked
    client's reply, as the earlier one may serve it (shardkv had it in
    either order: the blocked client's acceptor asks the writer's,
    ``behind`` on the bus); the others at once, as before.  An earlier
    command of the same batch that served no client of the blocked one's
    acceptor is no such command (``RPUSH {t}o a`` then ``SET t v``: its
    reply, held until that acceptor wrote its events, moved the
    invalidation after the blocked client's reply: late, or never)."""
    theirs = _blocked_hears(two_acceptors["redis"], case)
    assert b"invalidate" in theirs
    assert _blocked_hears(two_acceptors["shardkv"], case, apart=2) == theirs


@pytest.mark.parametrize("beside", [False, True], ids=["writer-with-x", "writer-with-tracker"])
@pytest.mark.parametrize("case", ["blmove-redirect", "redirect-served"])
def test_a_served_blocked_client_hears_of_its_change_from_another_acceptor_before_its_reply(
    two_acceptors, case, beside
):
    """A client blocked in BLMOVE (or BLPOP) that a client on another
    acceptor redirects its tracking to: the change its served command made
    (BLMOVE's push into a key that client tracks, BLPOP's pop), and the
    push that served it, reach it before its reply, as Redis writes them
    while it serves it (shardkv: in either order; the served command's
    reply, a ``W`` frame, waited for nothing)."""
    theirs = _blocked_hears(two_acceptors["redis"], case)
    assert b"invalidate" in theirs
    assert _blocked_hears(two_acceptors["shardkv"], case, tracker=2, beside=beside) == theirs


def _writer_hears(port: int, wait: str, write: str, k: int = 1, same: bool = True) -> bytes:
    """What w, a RESP3 client with BCAST NOLOOP tracking, hears from its
    ``write`` that serves x's ``wait`` (from its TRACKING's reply), until
    an ``ECHO end`` it sends after the write's reply; w on x's acceptor
    (of ``k``), or not."""
    redis.Redis(port=port).flushall()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as x:
        x.sendall(b"CLIENT ID\r\nECHO id\r\n")
        got = read_through(x, b"$2\r\nid\r\n")[0]
        xid = int(got[1 : got.index(b"\r\n")])
        with _beside(port, xid, k, same) as w:
            x.sendall(_cmds([wait]))
            _wait_blocked(w, 1)
            w.sendall(_cmds(["HELLO 3", "CLIENT TRACKING on BCAST NOLOOP", write]) + b"ECHO wrote\r\n")
            got = read_through(w, b"$5\r\nwrote\r\n")[0]
            w.sendall(b"ECHO end\r\n")
            got += read_through(w, b"$3\r\nend\r\n")[0]
            return got[got.index(b"+OK\r\n") :]


@pytest.mark.parametrize(
    "wait, write",
    [
        ("BLMOVE {t}l1 {t}l2 LEFT LEFT 0", "RPUSH {t}l1 foo"),
        ("BLMPOP 0 1 {t}l1 LEFT COUNT 2", "RPUSH {t}l1 a b"),
        ("BZPOPMIN {t}z 0", "ZADD {t}z 1 a 2 b"),
        ("BLPOP {t}l1 0", "RPUSH {t}l1 a b"),
    ],
    ids=["blmove", "blmpop", "bzpopmin", "blpop"],
)
def test_a_bcast_noloop_writer_hears_the_change_of_the_command_it_served(two_acceptors, wait, write):
    """A BCAST NOLOOP client's write serves another client's blocking
    command: Redis counts that command's push (BLMOVE), pop (BLMPOP,
    BZPOPMIN) as the served client's change, which the writer hears of
    (a BLPOP's pop it signals not at all: the key stays the writer's).
    With the served client on another acceptor than the writer, shardkv
    counted it the writer's, and told it nothing (its acceptor could not
    tell which command was served: the shard marks such events now,
    ``wire.EVENT_SERVED_OWN``)."""
    theirs = _writer_hears(two_acceptors["redis"], wait, write)
    assert (b"invalidate" in theirs) is (not wait.startswith("BLPOP"))
    assert _writer_hears(two_acceptors["shardkv"], wait, write, 2, same=False) == theirs
    assert _writer_hears(two_acceptors["shardkv"], wait, write, 2) == theirs
