"""CONFIG SET with several acceptors: every process ends with one value.

Two CONFIG SETs of one parameter through two acceptors at once: Redis has
one order, so whichever acceptor shows the parameter afterwards, and every
worker, must have the same value, the one set last in that order (the
supervisor's, see shardkv.acceptor.configorder).  Before, each acceptor
applied its own change at once and the other's when the supervisor passed
it on, so each ended with the other's value, for good.

The rounds are bounded; each asserts, none waits on a clock.
"""

from __future__ import annotations

import hashlib
import re

import psutil
import pytest

from tests.support.acceptors import acceptor_pids, client_on, pair_on, serve
from tests.support.placement import key_on
from tests.support.resp import encode_command
from tests.support.servers import free_port

server = pytest.fixture(scope="module", name="server")(serve)

ROUNDS = 12


@pytest.fixture
def pair(server):
    """A connection on acceptor 0 and one on acceptor 1."""
    with pair_on(server.port) as both:
        yield both


def _race(a, b, name: str, va: str, vb: str) -> None:
    """``CONFIG SET name`` to ``va`` through a and to ``vb`` through b, at once."""
    a.send("CONFIG", "SET", name, va)
    b.send("CONFIG", "SET", name, vb)
    assert (a.read(), b.read()) == (b"+OK\r\n", b"+OK\r\n")


def _get(c, name: str) -> bytes:
    reply = c.command("CONFIG", "GET", name)
    return reply[1]


def _shards_hz(c) -> set[int]:
    text = c.command("INFO", "shards").decode()
    return {int(v) for v in re.findall(r"hz=(\d+)", text)}


def test_hz_set_through_both_acceptors_at_once_ends_alike_everywhere(pair) -> None:
    a, b = pair
    try:
        for i in range(ROUNDS):
            va, vb = 100 + 2 * i, 101 + 2 * i
            _race(a, b, "hz", str(va), str(vb))
            value = _get(a, "hz")
            assert value == _get(b, "hz"), i
            assert int(value) in (va, vb)
            # Each INFO goes on its acceptor's pipe, after what that
            # acceptor sent the workers before its OK: after both, every
            # worker has heard both CONFIG SETs.
            _shards_hz(a), _shards_hz(b)
            assert _shards_hz(a) == _shards_hz(b) == {int(value)}, i
    finally:
        assert a.call("CONFIG", "SET", "hz", "10") == b"+OK\r\n"


def test_maxmemory_policy_set_through_both_acceptors_at_once_ends_alike(pair) -> None:
    a, b = pair
    policies = ("allkeys-lru", "volatile-lfu", "allkeys-random", "volatile-ttl")
    try:
        for i in range(ROUNDS):
            va, vb = policies[i % 4], policies[(i + 1) % 4]
            _race(a, b, "maxmemory-policy", va, vb)
            assert _get(a, "maxmemory-policy") == _get(b, "maxmemory-policy"), i
    finally:
        assert a.call("CONFIG", "SET", "maxmemory-policy", "noeviction") == b"+OK\r\n"


def _password_in_force(c) -> list[bytes]:
    user = c.command("ACL", "GETUSER", "default")
    fields = dict(zip(user[::2], user[1::2], strict=True))
    return fields[b"passwords"]


def test_requirepass_set_through_both_acceptors_at_once_ends_alike(pair) -> None:
    """CONFIG GET requirepass is the default user's password, the same on
    both acceptors (the clients here were authenticated before)."""
    a, b = pair
    try:
        for i in range(ROUNDS):
            _race(a, b, "requirepass", f"cfgorder-a{i}", f"cfgorder-b{i}")
            value = _get(a, "requirepass")
            assert value == _get(b, "requirepass"), i
            digest = hashlib.sha256(value).hexdigest().encode()
            assert _password_in_force(a) == _password_in_force(b) == [digest], i
    finally:
        assert a.call("CONFIG", "SET", "requirepass", "") == b"+OK\r\n"


def test_a_client_reads_its_own_config_set_at_once(pair) -> None:
    """Pipelined: the CONFIG SET's client's next command sees it."""
    a, _ = pair
    try:
        a.sock.sendall(encode_command("CONFIG", "SET", "hz", "33") + encode_command("CONFIG", "GET", "hz"))
        assert a.read() == b"+OK\r\n"
        assert a.read() == b"*2\r\n$2\r\nhz\r\n$2\r\n33\r\n"
    finally:
        assert a.call("CONFIG", "SET", "hz", "10") == b"+OK\r\n"


def _listening(pid: int) -> set[int]:
    return {
        c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_LISTEN
    }


def test_port_set_through_both_acceptors_at_once_ends_alike(pair, server) -> None:
    a, b = pair
    home = server.port
    pids = acceptor_pids(server)
    try:
        for i in range(4):
            pa, pb = free_port(), free_port()
            _race(a, b, "port", str(pa), str(pb))
            port = _get(a, "port")
            assert port == _get(b, "port"), i
            assert {frozenset(_listening(pid)) for pid in pids.values()} == {frozenset({int(port)})}, i
    finally:
        assert a.call("CONFIG", "SET", "port", str(home)) == b"+OK\r\n"
        assert all(_listening(pid) == {home} for pid in pids.values())


def _on_shard(shard: int, prefix: str) -> str:
    """A key name on ``shard`` of this module's two shards."""
    return key_on(shard, prefix, shards=2)


def test_a_config_set_racing_a_write_across_shards_is_before_it_or_after_it_everywhere(pair, server) -> None:
    """``CONFIG SET notify-keyspace-events E$`` through one acceptor while
    the other runs an MSET across both shards: Redis runs one, then the
    other, so the MSET notifies both its keys or neither.  The CONFIG SET's
    parts went to the workers at once, outside the steps' holds: a shard
    could run the MSET's part before the setting and the other after it,
    one key of two notified."""
    a, b = pair
    keys = [_on_shard(0, "race"), _on_shard(1, "race")]
    marks = [_on_shard(0, "mark"), _on_shard(1, "mark")]
    sub = client_on(server.port, 0)
    try:
        sub.send("PSUBSCRIBE", "__keyevent@0__:*")
        sub.read_reply()
        for i in range(ROUNDS * 10):
            assert a.call("CONFIG", "SET", "notify-keyspace-events", "") == b"+OK\r\n"
            a.send("CONFIG", "SET", "notify-keyspace-events", "E$")
            b.send("MSET", keys[0], str(i), keys[1], str(i))
            assert (a.read(), b.read()) == (b"+OK\r\n", b"+OK\r\n")
            for mark in marks:  # notified after the round's events on its shard
                assert a.call("SET", mark, "1") == b"+OK\r\n"
            seen: set[bytes] = set()
            notified = 0
            while len(seen) < len(marks):
                key = sub.read_reply()[-1]  # type: ignore[index]
                if key.decode() in marks:  # type: ignore[union-attr]
                    seen.add(key)  # type: ignore[arg-type]
                else:
                    notified += 1
            assert notified in (0, len(keys)), i
    finally:
        sub.close()
        assert a.call("CONFIG", "SET", "notify-keyspace-events", "") == b"+OK\r\n"
