"""XREAD and XREADGROUP with BLOCK, against both servers.

As in tests/compat/test_blocking.py: each blocked command runs in a thread on a
connection of its own, and the test waits until the server counts it in
``blocked_clients`` before acting.  With 4 shards "a", "b", "c" and "d"
live on four different shards, and ``{a}x`` on a's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.compat.test_blocking import WAIT, blocked_clients, wait_blocked
from tests.support.resp import RespClient


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


class Raw(redis.Redis):
    """A client that returns replies as sent (no redis-py parsing), except INFO."""

    def __init__(self, port: int) -> None:
        super().__init__(port=port, protocol=3, socket_timeout=WAIT)
        info = self.response_callbacks.get("INFO")
        self.response_callbacks.clear()
        self.response_callbacks["INFO"] = info


@pytest.fixture
def rr(r, server):
    c = Raw(server)
    yield c
    c.close()


def _raw(port: int, *args, protocol: int = 3):
    c = redis.Redis(port=port, protocol=protocol, socket_timeout=WAIT)
    c.response_callbacks.clear()
    try:
        return c.execute_command(*args)
    finally:
        c.close()


def start_raw(pool, port, *args, protocol=3):
    return pool.submit(_raw, port, *args, protocol=protocol)


@pytest.mark.parametrize("keys", [["a"], ["b", "a"], ["a", "{a}x"]], ids=["one", "cross-shard", "same-shard"])
def test_xread_block_dollar_wakes(rr, server, pool, keys):
    rr.execute_command("XADD", "a", "1-0", "old", "1")
    waiting = start_raw(pool, server, "XREAD", "BLOCK", 0, "STREAMS", *keys, *["$"] * len(keys))
    wait_blocked(rr, 1)
    rr.execute_command("XADD", "a", "2-0", "new", "2")
    assert waiting.result(WAIT) == {b"a": [[b"2-0", [b"new", b"2"]]]}
    wait_blocked(rr, 0)


def test_xread_block_resp2(rr, server, pool):
    waiting = start_raw(pool, server, "XREAD", "BLOCK", 0, "COUNT", 1, "STREAMS", "c", "0", protocol=2)
    wait_blocked(rr, 1)
    rr.execute_command("XADD", "c", "5-0", "f", "v")
    assert waiting.result(WAIT) == [[b"c", [[b"5-0", [b"f", b"v"]]]]]


@pytest.mark.parametrize("keys", [["a"], ["a", "b"]], ids=["one", "cross-shard"])
def test_xread_block_timeout(rr, keys):
    args = ["XREAD", "BLOCK", 50, "STREAMS", *keys, *["0"] * len(keys)]
    assert rr.execute_command(*args) is None
    assert blocked_clients(rr) == 0


def test_xread_block_served_at_once(rr):
    rr.execute_command("XADD", "a", "1-0", "f", "v")
    got = rr.execute_command("XREAD", "BLOCK", 0, "STREAMS", "a", "0")
    assert got == {b"a": [[b"1-0", [b"f", b"v"]]]}


def test_xreadgroup_block_fifo(rr, server, pool):
    """Two consumers blocked on one group: each new entry goes to the one
    that blocked first, then the next."""
    rr.execute_command("XGROUP", "CREATE", "a", "g", "$", "MKSTREAM")
    first = start_raw(pool, server, "XREADGROUP", "GROUP", "g", "c1", "BLOCK", 0, "STREAMS", "a", ">")
    wait_blocked(rr, 1)
    second = start_raw(pool, server, "XREADGROUP", "GROUP", "g", "c2", "BLOCK", 0, "STREAMS", "a", ">")
    wait_blocked(rr, 2)
    rr.execute_command("XADD", "a", "1-0", "n", "1")
    assert first.result(WAIT) == {b"a": [[b"1-0", [b"n", b"1"]]]}
    wait_blocked(rr, 1)
    rr.execute_command("XADD", "a", "2-0", "n", "2")
    assert second.result(WAIT) == {b"a": [[b"2-0", [b"n", b"2"]]]}
    pending = rr.execute_command("XPENDING", "a", "g")
    assert pending[0] == 2 and pending[3] == [[b"c1", b"1"], [b"c2", b"1"]]


def test_xreadgroup_group_destroyed(rr, server, pool):
    rr.execute_command("XGROUP", "CREATE", "a", "g", "$", "MKSTREAM")
    waiting = start_raw(pool, server, "XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "a", ">")
    wait_blocked(rr, 1)
    rr.execute_command("XGROUP", "DESTROY", "a", "g")
    with pytest.raises(
        redis.ResponseError, match="NOGROUP the consumer group this client was blocked on no longer exists"
    ):
        waiting.result(WAIT)


def test_xreadgroup_stream_deleted(rr, server, pool):
    rr.execute_command("XGROUP", "CREATE", "a", "g", "$", "MKSTREAM")
    waiting = start_raw(pool, server, "XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "a", ">")
    wait_blocked(rr, 1)
    rr.delete("a")
    with pytest.raises(redis.ResponseError, match="UNBLOCKED the stream key no longer exists"):
        waiting.result(WAIT)


def test_xread_multi_exec_wakes_once_whole(rr, server, pool):
    """The waiter sees the whole transaction: both entries, not one."""
    waiting = start_raw(pool, server, "XREAD", "BLOCK", 0, "STREAMS", "a", "$")
    wait_blocked(rr, 1)
    pipe = rr.pipeline(transaction=True)
    pipe.execute_command("XADD", "a", "1-0", "f", "1")
    pipe.execute_command("XADD", "a", "2-0", "f", "2")
    pipe.execute()
    assert waiting.result(WAIT) == {b"a": [[b"1-0", [b"f", b"1"]], [b"2-0", [b"f", b"2"]]]}


def test_xread_block_in_multi_is_null(rr):
    pipe = rr.pipeline(transaction=True)
    pipe.execute_command("XREAD", "BLOCK", 0, "STREAMS", "a", "$")
    assert pipe.execute() == [None]


def test_xreadgroup_cross_shard_block(rr, server, pool):
    for key in ("a", "b"):
        rr.execute_command("XGROUP", "CREATE", key, "g", "$", "MKSTREAM")
    waiting = start_raw(
        pool, server, "XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "a", "b", ">", ">"
    )
    wait_blocked(rr, 1)
    rr.execute_command("XADD", "b", "3-0", "f", "v")
    assert waiting.result(WAIT) == {b"b": [[b"3-0", [b"f", b"v"]]]}
    assert rr.execute_command("XPENDING", "b", "g")[0] == 1


@pytest.mark.parametrize("keys", [["a"], ["a", "b"]], ids=["one-shard", "cross-shard"])
@pytest.mark.parametrize("how", ["TIMEOUT", "ERROR"])
def test_client_unblock_xread(rr, server, pool, keys, how):
    def run():
        c = Raw(server)
        try:
            me = c.execute_command("CLIENT", "ID")
            ids.append(me)
            return c.execute_command("XREAD", "BLOCK", 0, "STREAMS", *keys, *["$"] * len(keys))
        except redis.ResponseError as e:
            return str(e)
        finally:
            c.close()

    ids: list = []
    waiting = pool.submit(run)
    wait_blocked(rr, 1)
    assert rr.execute_command("CLIENT", "UNBLOCK", ids[0], how) == 1
    got = waiting.result(WAIT)
    if how == "TIMEOUT":
        assert got is None
    else:
        assert got == "UNBLOCKED client unblocked via CLIENT UNBLOCK"
    wait_blocked(rr, 0)


@pytest.mark.parametrize("watch", [False, True], ids=["plain", "watched"])
@pytest.mark.parametrize("keys", [["a"], ["b", "a"]], ids=["one-shard", "cross-shard"])
def test_client_unblock_xread_in_exec_with_an_xadd_that_serves(rr, server, keys, watch):
    """MULTI, XADD to a stream a blocked XREAD waits on, CLIENT UNBLOCK,
    EXEC (after WATCH of an untouched key, or not): Redis serves the
    clients a transaction woke only after EXEC, so CLIENT UNBLOCK replies
    1, the XREAD gets a null, and the entry is in the stream.  (shardkv,
    for an XREAD across shards under WATCH, replied 0 and gave the XREAD
    the entry.)"""
    with RespClient(server, timeout=WAIT) as blocked, RespClient(server, timeout=WAIT) as other:
        blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
        blocked.send("XREAD", "BLOCK", 0, "STREAMS", *keys, *["$"] * len(keys))
        wait_blocked(rr, 1)
        if watch:
            assert other.command("WATCH", "c") == b"OK"
        assert other.command("MULTI") == b"OK"
        assert other.command("XADD", "a", "1-0", "f", "v") == b"QUEUED"
        assert other.command("CLIENT", "UNBLOCK", blocked_id) == b"QUEUED"
        assert other.command("EXEC") == [b"1-0", 1]
        assert blocked.read_reply() is None
        assert blocked.command("PING") == b"PONG"  # nothing else came
    wait_blocked(rr, 0)
    assert rr.execute_command("XLEN", "a") == 1


def test_streams_in_another_database(rr, server, pool):
    """XREAD across shards, blocking or not, reads the client's database."""

    def run():
        c = Raw(server)
        try:
            c.execute_command("SELECT", 3)
            return c.execute_command("XREAD", "BLOCK", 0, "STREAMS", "a", "b", "$", "$")
        finally:
            c.close()

    rr.execute_command("XADD", "a", "1-0", "db", "0")
    rr.execute_command("SELECT", 3)
    rr.execute_command("XADD", "b", "1-0", "db", "3")
    assert rr.execute_command("XREAD", "STREAMS", "a", "b", "0", "0") == {b"b": [[b"1-0", [b"db", b"3"]]]}
    waiting = pool.submit(run)
    wait_blocked(rr, 1)
    rr.execute_command("SELECT", 0)
    rr.execute_command("XADD", "a", "2-0", "db", "0")
    rr.execute_command("SELECT", 3)
    rr.execute_command("XADD", "a", "2-0", "db", "3")
    assert waiting.result(WAIT) == {b"a": [[b"2-0", [b"db", b"3"]]]}
    rr.execute_command("FLUSHALL")


@pytest.mark.parametrize("gone", ["destroy", "del"])
def test_xreadgroup_across_shards_group_or_stream_gone(rr, server, pool, gone):
    """A cross-shard XREADGROUP (its __bwait claims an entry of the stream
    made ready) gets Redis's error when its group or stream goes."""
    for key in ("a", "b"):
        rr.execute_command("XGROUP", "CREATE", key, "g", "$", "MKSTREAM")
    waiting = start_raw(
        pool, server, "XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "a", "b", ">", ">"
    )
    wait_blocked(rr, 1)
    if gone == "destroy":
        rr.execute_command("XGROUP", "DESTROY", "a", "g")
        match = "NOGROUP the consumer group this client was blocked on no longer exists"
    else:
        rr.delete("a")
        match = "UNBLOCKED the stream key no longer exists"
    with pytest.raises(redis.ResponseError, match=match):
        waiting.result(WAIT)
    rr.execute_command("XADD", "b", "1-0", "n", "1")  # no claim left behind: served at once
    assert rr.execute_command("XPENDING", "b", "g")[0] == 0


def test_xreadgroup_across_shards_count_gets_every_entry_of_a_transaction(rr, server, pool):
    """Its __bwait claims one entry, its try reads COUNT: both entries of a
    MULTI's two XADDs, as Redis; an XREAD on the stream alone gets them too."""
    for key in ("a", "b"):
        rr.execute_command("XGROUP", "CREATE", key, "g", "$", "MKSTREAM")
    grouped = start_raw(
        pool,
        server,
        "XREADGROUP",
        "GROUP",
        "g",
        "c",
        "COUNT",
        5,
        "NOACK",
        "BLOCK",
        0,
        "STREAMS",
        "a",
        "b",
        ">",
        ">",
    )
    wait_blocked(rr, 1)
    plain = start_raw(pool, server, "XREAD", "BLOCK", 0, "STREAMS", "a", "$")
    wait_blocked(rr, 2)
    pipe = rr.pipeline(transaction=True)
    pipe.execute_command("XADD", "a", "1-0", "f", "1")
    pipe.execute_command("XADD", "a", "2-0", "f", "2")
    pipe.execute()
    both = [[b"1-0", [b"f", b"1"]], [b"2-0", [b"f", b"2"]]]
    assert grouped.result(WAIT) == {b"a": both}
    assert plain.result(WAIT) == {b"a": both}
    assert rr.execute_command("XPENDING", "a", "g")[0] == 0  # NOACK


def _block_on(rr, keys: list[str], group: bool) -> list:
    """Entry 1-0 in each of ``keys`` (and group ``g`` past it); the read
    that blocks for what comes after it."""
    for key in keys:
        rr.execute_command("XADD", key, "1-0", "f", "1")
        if group:
            rr.execute_command("XGROUP", "CREATE", key, "g", "$")
    if group:
        return ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", *keys, *[">"] * len(keys)]
    return ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(keys)]


STREAM_KEYS = pytest.mark.parametrize(
    "keys", [["a"], ["b", "a"], ["{a}x", "a"]], ids=["one", "cross-shard", "same-shard"]
)


@STREAM_KEYS
@pytest.mark.parametrize("group", [False, True], ids=["xread", "xreadgroup"])
def test_blocked_read_served_once_the_last_id_passes_it(rr, server, pool, keys, group):
    """Redis 7.0 serves a blocked stream read once its stream's last ID is
    past its ID (serveClientsBlockedOnStreamKey), the entries past it
    deleted or not: a MULTI that adds an entry and XDELs it serves an
    empty array for the stream (its consumer created, nothing pending)."""
    waiting = start_raw(pool, server, *_block_on(rr, keys, group))
    wait_blocked(rr, 1)
    pipe = rr.pipeline(transaction=True)
    pipe.execute_command("XADD", "a", "2-0", "f", "2")
    pipe.execute_command("XDEL", "a", "2-0")
    pipe.execute()
    assert waiting.result(WAIT) == {b"a": []}
    wait_blocked(rr, 0)
    if group:
        consumers = rr.execute_command("XINFO", "CONSUMERS", "a", "g")
        assert [(c[b"name"], c[b"pending"]) for c in consumers] == [(b"c", 0)]
        assert rr.execute_command("XINFO", "GROUPS", "a")[0][b"last-delivered-id"] == b"1-0"


@STREAM_KEYS
@pytest.mark.parametrize("group", [False, True], ids=["xread", "xreadgroup"])
def test_blocked_read_not_served_by_an_xsetid_alone(rr, server, pool, keys, group):
    """Redis serves a stream's blocked clients after an XADD: an XSETID
    that moves its last ID past theirs serves none (an XDEL after it
    neither); the next XADD serves its entry."""
    waiting = start_raw(pool, server, *_block_on(rr, keys, group))
    wait_blocked(rr, 1)
    rr.execute_command("XSETID", "a", "5-0")
    rr.execute_command("XDEL", "a", "1-0")
    rr.execute_command("XADD", "a", "6-0", "f", "6")
    assert waiting.result(WAIT) == {b"a": [[b"6-0", [b"f", b"6"]]]}


@pytest.mark.parametrize(
    "keys,ids",
    [
        (["a", "a"], ["7-0", "6-0"]),
        (["a", "{a}x", "a"], ["7-0", "0", "6-0"]),
        (["a", "b", "a"], ["7-0", "0", "6-0"]),
    ],
    ids=["one", "same-shard", "cross-shard"],
)
def test_xread_block_naming_a_stream_twice_waits_past_its_first_id(rr, server, pool, keys, ids):
    """Redis's blockForKeys keeps a key's first ID and ignores the others:
    an entry past the second ID alone serves nobody; the next one past
    the first is served, alone."""
    rr.execute_command("XADD", "a", "5-0", "f", "5")
    waiting = start_raw(pool, server, "XREAD", "BLOCK", 0, "STREAMS", *keys, *ids)
    wait_blocked(rr, 1)
    rr.execute_command("XADD", "a", "6-5", "f", "65")
    rr.execute_command("XADD", "a", "8-0", "f", "8")
    assert waiting.result(WAIT) == {b"a": [[b"8-0", [b"f", b"8"]]]}


@STREAM_KEYS
@pytest.mark.parametrize("group", [False, True], ids=["xread", "xreadgroup"])
def test_blocked_read_past_an_entry_deleted_before_it_waits_for_an_xadd(rr, server, pool, keys, group):
    """An entry added and deleted before a read blocked past the entries
    left serves it on no later write but an XADD: Redis 7.0 serves a
    stream's blocked clients when a write signals the key ready (XADD,
    not XDEL, XACK, XTRIM or XSETID), so an XDEL, XACK or XSETID after it
    blocked leaves it waiting, and the next XADD serves its entry."""
    for key in keys:
        rr.execute_command("XADD", key, "1-0", "f", "1")
        if group:
            rr.execute_command("XGROUP", "CREATE", key, "g", "$")
    rr.execute_command("XADD", "a", "2-0", "f", "2")
    rr.execute_command("XDEL", "a", "2-0")
    if group:
        read = ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", *keys, *[">"] * len(keys)]
    else:
        read = ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(keys)]
    waiting = start_raw(pool, server, *read)
    wait_blocked(rr, 1)
    rr.execute_command("XDEL", "a", "1-0")
    if group:
        rr.execute_command("XACK", "a", "g", "1-0")
    rr.execute_command("XSETID", "a", "3-0")
    rr.execute_command("XTRIM", "a", "MAXLEN", "5")
    assert blocked_clients(rr) == 1
    assert not waiting.done()
    rr.execute_command("XADD", "a", "4-0", "f", "4")
    assert waiting.result(WAIT) == {b"a": [[b"4-0", [b"f", b"4"]]]}


@pytest.mark.parametrize("group", [False, True], ids=["xread", "xreadgroup"])
def test_blocked_read_not_served_by_an_xsetid_in_a_cross_shard_transaction(rr, server, pool, group):
    """An XSETID in a transaction over two shards (``b`` first) that moves
    the stream's last ID past a blocked read's serves it no more than one
    alone: the stream's last entry added travels with it through the
    operation, and neither the XSETID nor a later XDEL or XACK signals it
    ready in Redis; the next XADD serves its entry."""
    waiting = start_raw(pool, server, *_block_on(rr, ["a"], group))
    wait_blocked(rr, 1)
    pipe = rr.pipeline(transaction=True)
    pipe.execute_command("SET", "b", "x")
    pipe.execute_command("XSETID", "a", "5-0")
    pipe.execute()
    rr.execute_command("XDEL", "a", "1-0")
    if group:
        rr.execute_command("XACK", "a", "g", "1-0")
    assert blocked_clients(rr) == 1
    assert not waiting.done()
    rr.execute_command("XADD", "a", "6-0", "f", "6")
    assert waiting.result(WAIT) == {b"a": [[b"6-0", [b"f", b"6"]]]}
