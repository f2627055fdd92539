"""Blocking list commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) that
really wait, against both servers.

Each blocked command runs in a thread on a connection of its own; the test
waits until the server counts it in ``blocked_clients`` before acting, so
the order of events is the same on both servers.  Timeouts are short.
With 4 shards "a", "b", "c" and "d" live on four different shards, and
``{a}x`` on a's.
"""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import redis

from shardkv.protocol.router import Router
from tests.support.resp import ErrorReply, RespClient, encode_command
from tests.support.servers import start_shardkv

WAIT = 10.0  # seconds a test waits for something that must happen


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def connect(port: int, protocol: int = 3) -> redis.Redis:
    return redis.Redis(port=port, protocol=protocol, socket_timeout=WAIT)


def blocked_clients(r: redis.Redis) -> int:
    return int(r.info("clients")["blocked_clients"])


def wait_blocked(r: redis.Redis, n: int) -> None:
    """Wait until ``n`` clients are blocked."""
    deadline = time.monotonic() + WAIT
    while blocked_clients(r) != n:
        assert time.monotonic() < deadline, f"never {n} blocked clients"
        time.sleep(0.01)


def start(pool, port: int, *args, protocol: int = 3):
    """Run ``args`` on a new connection in a thread; return its future."""

    def run():
        c = connect(port, protocol)
        try:
            return c.execute_command(*args)
        finally:
            c.close()

    return pool.submit(run)


# -- one client, one push ---------------------------------------------------------


@pytest.mark.parametrize("keys", [["a"], ["b", "a"], ["a", "{a}x"]], ids=["one", "cross-shard", "same-shard"])
def test_blpop_wakes(r, server, pool, keys):
    waiting = start(pool, server, "BLPOP", *keys, 0)
    wait_blocked(r, 1)
    assert r.rpush("a", "x", "y") == 2
    assert waiting.result(WAIT) == [b"a", b"x"]
    assert r.lrange("a", 0, -1) == [b"y"]
    wait_blocked(r, 0)


def test_brpop_wakes(r, server, pool):
    waiting = start(pool, server, "BRPOP", "c", "d", 5)
    wait_blocked(r, 1)
    r.rpush("d", "1", "2", "3")
    assert waiting.result(WAIT) == [b"d", b"3"]
    assert r.lrange("d", 0, -1) == [b"1", b"2"]


@pytest.mark.parametrize("dst", ["{a}x", "b", "a"], ids=["same-shard", "cross-shard", "same-key"])
def test_blmove_wakes(r, server, pool, dst):
    waiting = start(pool, server, "BLMOVE", "a", dst, "RIGHT", "LEFT", 0)
    wait_blocked(r, 1)
    r.rpush("a", "1", "2")
    assert waiting.result(WAIT) == b"2"
    if dst == "a":
        assert r.lrange("a", 0, -1) == [b"2", b"1"]
    else:
        assert r.lrange("a", 0, -1) == [b"1"]
        assert r.lrange(dst, 0, -1) == [b"2"]


def test_brpoplpush_wakes(r, server, pool):
    waiting = start(pool, server, "BRPOPLPUSH", "c", "d", 0)
    wait_blocked(r, 1)
    r.lpush("c", "x")
    assert waiting.result(WAIT) == b"x"
    assert r.exists("c") == 0
    assert r.lrange("d", 0, -1) == [b"x"]


@pytest.mark.parametrize("keys", [["a", "{a}x"], ["a", "b", "c"]], ids=["same-shard", "cross-shard"])
def test_blmpop_wakes(r, server, pool, keys):
    waiting = start(pool, server, "BLMPOP", 0, len(keys), *keys, "RIGHT", "COUNT", 2)
    wait_blocked(r, 1)
    r.rpush(keys[-1], "1", "2", "3")
    assert waiting.result(WAIT) == [keys[-1].encode(), [b"3", b"2"]]
    assert r.lrange(keys[-1], 0, -1) == [b"1"]


def test_wake_resp2(r, server, pool):
    waiting = start(pool, server, "BLPOP", "a", 0, protocol=2)
    wait_blocked(r, 1)
    r.rpush("a", "x")
    assert list(waiting.result(WAIT)) == [b"a", b"x"]  # redis-py makes RESP2's a tuple


# -- timeouts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("BLPOP", "a", 0.1),
        ("BRPOP", "a", "b", 0.1),
        ("BLMOVE", "a", "b", "LEFT", "LEFT", 0.1),
        ("BRPOPLPUSH", "a", "{a}x", 0.1),
        ("BLMPOP", 0.1, 2, "a", "{a}x", "LEFT"),
        ("BLMPOP", 0.1, 3, "a", "b", "c", "LEFT"),
        ("BLPOP", "a", 0.001),
    ],
)
def test_timeout(r, args):
    assert r.execute_command(*args) is None
    assert r.exists("a", "b", "c", "{a}x") == 0
    assert blocked_clients(r) == 0


def test_timeout_raw_resp2(server):
    # The timeout reply is a null array, BLMOVE's too (Redis 7.0).
    for request in (b"BLPOP a b 0.05\r\n", b"BLMOVE a b LEFT LEFT 0.05\r\n", b"BLMPOP 0.05 1 a LEFT\r\n"):
        assert raw_reply(server, request, 5) == b"*-1\r\n"


def test_push_after_timeout_stays(r, server):
    assert r.blpop(["a"], 0.05) is None
    r.rpush("a", "x")
    assert r.lrange("a", 0, -1) == [b"x"]


# -- several clients -----------------------------------------------------------------


@pytest.mark.parametrize("second", [["a"], ["b", "a"]], ids=["one-shard", "cross-shard"])
def test_two_clients_one_element_each(r, server, pool, second):
    first = start(pool, server, "BLPOP", "a", 0)
    wait_blocked(r, 1)
    other = start(pool, server, "BLPOP", *second, 0)
    wait_blocked(r, 2)
    r.rpush("a", "1")
    # Exactly one gets the element; the first to block, for keys of one shard.
    if second == ["a"]:
        assert first.result(WAIT) == [b"a", b"1"]
        assert not other.done()
    else:
        deadline = time.monotonic() + WAIT
        while not (first.done() or other.done()):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    wait_blocked(r, 1)
    r.rpush("a", "2")
    results = sorted([first.result(WAIT), other.result(WAIT)])
    assert results == [[b"a", b"1"], [b"a", b"2"]]
    assert r.exists("a") == 0


def test_one_push_serves_waiters_in_order(r, server, pool):
    futures = []
    for i in range(3):
        futures.append(start(pool, server, "BLPOP", "a", 0))
        wait_blocked(r, i + 1)
    r.rpush("a", "1", "2")  # two elements for three waiters
    assert futures[0].result(WAIT) == [b"a", b"1"]
    assert futures[1].result(WAIT) == [b"a", b"2"]
    wait_blocked(r, 1)
    assert not futures[2].done()
    r.rpush("a", "3")
    assert futures[2].result(WAIT) == [b"a", b"3"]


def test_blmove_feeds_another_waiter(r, server, pool):
    # A served BLMOVE pushes to its destination, which serves the next.
    mover = start(pool, server, "BLMOVE", "a", "{a}x", "LEFT", "LEFT", 0)
    wait_blocked(r, 1)
    popper = start(pool, server, "BLPOP", "{a}x", 0)
    wait_blocked(r, 2)
    r.rpush("a", "v")
    assert mover.result(WAIT) == b"v"
    assert popper.result(WAIT) == [b"{a}x", b"v"]
    assert r.exists("a", "{a}x") == 0


def test_lmove_wakes_a_waiter(r, server, pool):
    waiting = start(pool, server, "BLPOP", "b", 0)
    wait_blocked(r, 1)
    r.rpush("a", "x")
    assert r.lmove("a", "b", "LEFT", "RIGHT") == b"x"  # a cross-shard write to b
    assert waiting.result(WAIT) == [b"b", b"x"]
    assert r.exists("a", "b") == 0


def test_multi_push_wakes_a_waiter(r, server, pool):
    waiting = start(pool, server, "BLPOP", "a", 0)
    wait_blocked(r, 1)
    pipe = r.pipeline()
    pipe.rpush("a", "1")
    pipe.rpush("a", "2")
    pipe.lpop("a")
    assert pipe.execute() == [1, 2, b"1"]
    # The transaction ran whole before the waiter was served.
    assert waiting.result(WAIT) == [b"a", b"2"]
    assert r.exists("a") == 0


def test_long_multi_on_one_shard_is_whole_before_a_waiter(r, server, pool):
    """A transaction longer than a pipe batch (EARLY_BATCH) still reaches
    its shard as one batch: the waiter is served after EXEC, not between
    the transaction's commands."""
    waiting = start(pool, server, "BLPOP", "a", 0)
    wait_blocked(r, 1)
    pipe = r.pipeline()
    pipe.rpush("a", "1")
    pipe.rpush("a", "2")
    for i in range(80):
        pipe.set("{a}k%d" % i, "v")  # the same shard as "a"
    pipe.lpop("a")
    assert pipe.execute() == [1, 2, *[True] * 80, b"1"]
    assert waiting.result(WAIT) == [b"a", b"2"]
    assert r.exists("a") == 0


def test_wrong_type_keeps_waiting(r, server, pool):
    waiting = start(pool, server, "BLPOP", "a", 0)
    wait_blocked(r, 1)
    r.set("a", "string")
    r.delete("a")
    r.sadd("a", "member")
    assert not waiting.done()
    r.delete("a")
    r.rpush("a", "x")
    assert waiting.result(WAIT) == [b"a", b"x"]


# -- disconnects: nothing is lost --------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [b"BLPOP a 0\r\n", b"BLPOP b a 0\r\n", b"BLMOVE a b LEFT LEFT 0\r\n", b"BLMPOP 0 2 a {a}x LEFT\r\n"],
    ids=["blpop", "blpop-cross-shard", "blmove", "blmpop"],
)
def test_disconnect_loses_nothing(r, server, request_):
    s = socket.create_connection(("127.0.0.1", server))
    s.sendall(request_)
    wait_blocked(r, 1)
    s.close()
    wait_blocked(r, 0)
    r.rpush("a", "x")
    assert r.lrange("a", 0, -1) == [b"x"]
    assert r.exists("b", "{a}x") == 0


# -- the timeout table -------------------------------------------------------------


@pytest.mark.parametrize(
    "args, in_table",
    [
        (("BLPOP", "a", 0), 0),
        (("BLPOP", "a", "0.0"), 0),
        (("BLPOP", "a", 5), 1),
        (("BLPOP", "b", "a", 0), 0),
        (("BLPOP", "b", "a", 5), 1),
        (("BLMPOP", 0, 2, "a", "{a}x", "LEFT"), 0),
        (("BLMOVE", "a", "b", "LEFT", "LEFT", 0), 0),
        (("BZPOPMIN", "a", 0), 0),
        (("BZPOPMIN", "a", 5), 1),
        (("XREAD", "BLOCK", 0, "STREAMS", "a", "$"), 0),
        (("XREAD", "BLOCK", 5000, "STREAMS", "a", "$"), 1),
        (("XREAD", "BLOCK", 0, "STREAMS", "b", "a", "$", "$"), 0),
    ],
)
def test_clients_in_timeout_table(r, server, args, in_table):
    """Redis 7.0 puts a blocked client in its timeout table only when its
    timeout is not 0 (``addClientToTimeoutTable``): ``BLPOP a 0`` is blocked
    but not in ``clients_in_timeout_table``.  (shardkv counted it.)"""
    with RespClient(server, timeout=WAIT) as blocked:
        blocked.send(*args)
        wait_blocked(r, 1)
        assert r.info("clients")["clients_in_timeout_table"] == in_table
    wait_blocked(r, 0)


# -- CLIENT UNBLOCK right after a write: Redis's order, nothing lost --------------

# (blocking command, the write that serves it, what the blocked client gets,
# and what that write left behind: key -> its TYPE after); the write replies 1
# (XADD: its ID).  "b" and "a" live
# on two shards; "{a}x" on a's.
_SERVED_THEN_UNBLOCKED = {
    "blpop": (["BLPOP", "a", 0], ["LPUSH", "a", "x"], [b"a", b"x"], {"a": b"none"}),
    "brpop": (["BRPOP", "a", 0], ["LPUSH", "a", "x"], [b"a", b"x"], {"a": b"none"}),
    "blmove": (
        ["BLMOVE", "a", "{a}x", "LEFT", "RIGHT", 0],
        ["LPUSH", "a", "x"],
        b"x",
        {"a": b"none", "{a}x": b"list"},
    ),
    "bzpopmin": (["BZPOPMIN", "a", 0], ["ZADD", "a", 1, "m"], [b"a", b"m", b"1"], {"a": b"none"}),
    "xread": (
        ["XREAD", "BLOCK", 0, "STREAMS", "a", "$"],
        ["XADD", "a", "1-0", "f", "v"],
        [[b"a", [[b"1-0", [b"f", b"v"]]]]],
        {"a": b"stream"},
    ),
    "blpop-cross-shard": (["BLPOP", "b", "a", 0], ["LPUSH", "a", "x"], [b"a", b"x"], {"a": b"none"}),
    "xread-cross-shard": (
        ["XREAD", "BLOCK", 0, "STREAMS", "b", "a", "$", "$"],
        ["XADD", "a", "1-0", "f", "v"],
        [[b"a", [[b"1-0", [b"f", b"v"]]]]],
        {"a": b"stream"},
    ),
}


@pytest.mark.parametrize("how", ["TIMEOUT", "ERROR"])
@pytest.mark.parametrize("case", list(_SERVED_THEN_UNBLOCKED))
def test_write_then_client_unblock_pipelined_serves_first(r, server, case, how):
    """A client is blocked; another sends, pipelined, a write that serves it
    and CLIENT UNBLOCK: Redis serves the blocked client right after the
    write, so CLIENT UNBLOCK finds it unblocked and replies 0, after the
    write's reply.  (shardkv used to answer 1, give the client a null, and
    lose the element its shard had popped for it.)"""
    command, write, served, left = _SERVED_THEN_UNBLOCKED[case]
    with RespClient(server, timeout=WAIT) as blocked, RespClient(server, timeout=WAIT) as other:
        blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
        blocked.send(*command)
        wait_blocked(r, 1)
        other.sock.sendall(encode_command(*write) + encode_command("CLIENT", "UNBLOCK", blocked_id, how))
        assert other.read_reply() == (b"1-0" if write[0] == "XADD" else 1)
        assert other.read_reply() == 0
        assert blocked.read_reply() == served
        assert blocked.command("PING") == b"PONG"  # nothing else came
    wait_blocked(r, 0)
    for key, kind in left.items():
        assert r.type(key) == kind


def _unblocked_reply(got: object, how: str) -> None:
    """``got`` is what CLIENT UNBLOCK ``how`` gives the blocked command."""
    if how == "TIMEOUT":
        assert got is None
    else:
        assert isinstance(got, ErrorReply)
        assert str(got) == "UNBLOCKED client unblocked via CLIENT UNBLOCK"


@pytest.mark.parametrize("how", ["TIMEOUT", "ERROR"])
@pytest.mark.parametrize("cross_shard", [False, True], ids=["one-shard", "cross-shard"])
def test_other_write_then_client_unblock_pipelined_unblocks(r, server, cross_shard, how):
    """The same with a write to another key: CLIENT UNBLOCK replies 1, the
    blocked client gets a null (TIMEOUT) or -UNBLOCKED (ERROR), and the
    element pushed after the unblock stays."""
    keys = ["b", "a"] if cross_shard else ["a"]
    with RespClient(server, timeout=WAIT) as blocked, RespClient(server, timeout=WAIT) as other:
        blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
        blocked.send("BLPOP", *keys, 0)
        wait_blocked(r, 1)
        other.sock.sendall(
            encode_command("LPUSH", "{a}x", "y")
            + encode_command("CLIENT", "UNBLOCK", blocked_id, how)
            + encode_command("LPUSH", "a", "x")
        )
        assert [other.read_reply() for _ in range(3)] == [1, 1, 1]
        _unblocked_reply(blocked.read_reply(), how)
    wait_blocked(r, 0)
    assert r.lrange("a", 0, -1) == [b"x"]


# -- CLIENT UNBLOCK inside MULTI/EXEC ----------------------------------------------

# The transaction's commands; "write" is LPUSH a x, which would serve the
# blocked client, "unblock" the CLIENT UNBLOCK.  "b" and "a" live on two shards.
_EXEC_ORDERS = {
    "write-first": (["write", "unblock"], [1, 1]),
    "unblock-first": (["unblock", "write"], [1, 1]),
    "twice": (["write", "unblock", "unblock"], [1, 1, 0]),
    "read-after": (["write", "unblock", ("LRANGE", "a", 0, -1)], [1, 1, [b"x"]]),
    # Writes on two shards: the transaction runs as one atomic operation.
    "atomic": (["write", ("SET", "c", "v"), "unblock"], [1, b"OK", 1]),
}


@pytest.mark.parametrize("how", ["TIMEOUT", "ERROR"])
@pytest.mark.parametrize("keys", [["a"], ["b", "a"]], ids=["one-shard", "cross-shard"])
@pytest.mark.parametrize("order", list(_EXEC_ORDERS))
def test_client_unblock_in_exec_with_a_write_that_serves(r, server, order, keys, how):
    """Redis serves the clients a transaction's writes woke only after
    EXEC, so a CLIENT UNBLOCK inside the transaction finds its client still
    blocked, whether it comes before or after the write: it replies 1, the
    client gets its null (TIMEOUT) or -UNBLOCKED (ERROR), and the pushed
    element stays.  (shardkv replied 0 to an UNBLOCK after the write, and
    the blocked client got the element.)"""
    _unblock_in_exec(r, server, order, keys, how)


def _unblock_in_exec(r, server, order: str, keys: list[str], how: str, watch: tuple[str, ...] = ()) -> None:
    """A client blocks in BLPOP on ``keys``; another runs the transaction
    ``order`` of :data:`_EXEC_ORDERS` (after WATCH ``watch``, if any): its
    EXEC replies as told there, the blocked client is unblocked as ``how``
    says, and the pushed element stays."""
    commands, expected = _EXEC_ORDERS[order]
    with RespClient(server, timeout=WAIT) as blocked, RespClient(server, timeout=WAIT) as other:
        blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
        blocked.send("BLPOP", *keys, 0)
        wait_blocked(r, 1)
        if watch:
            assert other.command("WATCH", *watch) == b"OK"
        assert other.command("MULTI") == b"OK"
        for command in commands:
            if command == "write":
                command = ("LPUSH", "a", "x")
            elif command == "unblock":
                command = ("CLIENT", "UNBLOCK", blocked_id, how)
            assert other.command(*command) == b"QUEUED"
        assert other.command("EXEC") == expected
        _unblocked_reply(blocked.read_reply(), how)
        assert blocked.command("PING") == b"PONG"  # nothing else came
    wait_blocked(r, 0)
    assert r.lrange("a", 0, -1) == [b"x"]


@pytest.mark.parametrize("how", ["TIMEOUT", "ERROR"])
@pytest.mark.parametrize("keys", [["a"], ["b", "a"]], ids=["one-shard", "cross-shard"])
@pytest.mark.parametrize("order", ["write-first", "unblock-first", "twice", "atomic"])
def test_client_unblock_in_watched_exec_with_a_write_that_serves(r, server, order, keys, how):
    """The same under WATCH (the transaction runs as one atomic operation):
    Redis still serves only after EXEC, so CLIENT UNBLOCK replies 1 and the
    pushed element stays.  (shardkv replied 0 to an UNBLOCK after the
    write, and the blocked client got the element; for a client blocked
    across shards, still until its UNBLOCK ran ahead of the transaction
    under WATCH too.)"""
    r.set("c", "w")
    _unblock_in_exec(r, server, order, keys, how, watch=("c", "{a}w"))


@pytest.mark.parametrize("keys", [["a"], ["b", "a"]], ids=["one-shard", "cross-shard"])
def test_client_unblock_in_exec_whose_watched_key_changed(r, server, keys):
    """A transaction that does not run (a watched key changed) unblocks
    nobody: the client stays blocked, and a later push serves it."""
    with RespClient(server, timeout=WAIT) as blocked, RespClient(server, timeout=WAIT) as other:
        blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
        blocked.send("BLPOP", *keys, 0)
        wait_blocked(r, 1)
        assert other.command("WATCH", "c") == b"OK"
        r.set("c", "changed")
        assert other.command("MULTI") == b"OK"
        assert other.command("CLIENT", "UNBLOCK", blocked_id) == b"QUEUED"
        assert other.command("LPUSH", "a", "x") == b"QUEUED"
        assert other.command("EXEC") is None
        assert blocked_clients(r) == 1
        assert r.lpush("a", "y") == 1
        assert blocked.read_reply() == [b"a", b"y"]
    wait_blocked(r, 0)


@pytest.mark.parametrize("keys", [["a"], ["b", "a"]], ids=["one-shard", "cross-shard"])
@pytest.mark.parametrize("watch", [False, True], ids=["plain", "watched"])
def test_write_then_exec_with_client_unblock_pipelined_serves_first(r, server, watch, keys):
    """A write pipelined before the transaction serves the blocked client
    first, as Redis serves after each command: CLIENT UNBLOCK inside the
    EXEC then replies 0, and the client got the element."""
    with RespClient(server, timeout=WAIT) as blocked, RespClient(server, timeout=WAIT) as other:
        blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
        blocked.send("BLPOP", *keys, 0)
        wait_blocked(r, 1)
        if watch:
            assert other.command("WATCH", "c") == b"OK"
        other.sock.sendall(
            encode_command("LPUSH", "a", "x")
            + encode_command("MULTI")
            + encode_command("LPUSH", "a", "y")
            + encode_command("CLIENT", "UNBLOCK", blocked_id)
            + encode_command("EXEC")
        )
        assert [other.read_reply() for _ in range(5)] == [1, b"OK", b"QUEUED", b"QUEUED", [1, 0]]
        assert blocked.read_reply() == [b"a", b"x"]
    wait_blocked(r, 0)
    assert r.lrange("a", 0, -1) == [b"y"]


# -- CLIENT UNBLOCK while a script is busy -----------------------------------------

# Busy for about 2.5 s (past a busy-reply-threshold of 1000 ms), unless
# SCRIPT KILL stops it first: the tests kill it once they have the -BUSY
# reply they wait for, rather than wait out the rest of its 2.5 s.
_BUSY_SCRIPT = (
    "local function now() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end "
    "local e = now() + 6000000 while now() < e do end return 1"
)


def _kill_busy_script(other: RespClient, scripter: RespClient) -> None:
    """Stop the busy script (it has not written) with SCRIPT KILL, as Redis
    allows past busy-reply-threshold; its EVAL gets the kill error."""
    assert other.command("SCRIPT", "KILL") == b"OK"
    got = scripter.read_reply()
    assert isinstance(got, ErrorReply)
    assert "Script killed by user with SCRIPT KILL" in str(got), got


@pytest.mark.parametrize("script_key", ["{a}s", "b"], ids=["same-shard", "other-shard"])
@pytest.mark.parametrize("how", ["TIMEOUT", "ERROR"])
def test_client_unblock_behind_a_busy_script_gets_busy(r, server, how, script_key):
    """CLIENT UNBLOCK sent while a script runs, before busy-reply-threshold:
    Redis answers it -BUSY once the script passes the threshold (CLIENT
    UNBLOCK has no allow-busy flag), and the client stays blocked: a push
    after the script serves it.  In shardkv the script runs on the blocked
    client's shard ("{a}s"), where the ``__unblock`` waits behind it, or on
    another ("b").  (shardkv answered 1 when the script ended, and the
    client got a null; on another shard, 1 at once.)"""
    r.config_set("busy-reply-threshold", 1000)
    try:
        with (
            RespClient(server, timeout=WAIT) as blocked,
            RespClient(server, timeout=WAIT) as scripter,
            RespClient(server, timeout=WAIT) as other,
        ):
            blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
            blocked.send("BLPOP", "a", 0)
            wait_blocked(r, 1)
            scripter.send("EVAL", _BUSY_SCRIPT, 1, script_key)
            time.sleep(0.6)  # the script runs (even on a loaded machine), not yet past the threshold
            other.send("CLIENT", "UNBLOCK", blocked_id, how)
            got = other.read_reply()
            assert isinstance(got, ErrorReply)
            assert str(got).startswith("BUSY ")
            _kill_busy_script(other, scripter)
            assert other.command("LPUSH", "a", "x") == 1
            assert blocked.read_reply() == [b"a", b"x"]
    finally:
        r.config_set("busy-reply-threshold", 5000)


@pytest.mark.parametrize("keys", [["a"], ["c", "a"]], ids=["one-shard", "cross-shard"])
@pytest.mark.parametrize("script_key", ["{a}s", "b"], ids=["same-shard", "other-shard"])
def test_exec_with_client_unblock_behind_a_busy_script_aborts(r, server, script_key, keys):
    """MULTI, LPUSH, CLIENT UNBLOCK queued; a script runs; EXEC sent before
    busy-reply-threshold: Redis answers EXEC (no allow-busy flag) with
    EXECABORT and the -BUSY error once the script passes the threshold, so
    nothing is pushed and the client stays blocked: a push after the script
    serves it.  (shardkv ran the transaction, ``[1, 1]``, when the script
    ran on another shard than the blocked client's and the push's.)"""
    r.config_set("busy-reply-threshold", 1000)
    try:
        with (
            RespClient(server, timeout=WAIT) as blocked,
            RespClient(server, timeout=WAIT) as scripter,
            RespClient(server, timeout=WAIT) as other,
        ):
            blocked_id = int(blocked.command("CLIENT", "ID"))  # type: ignore[arg-type]
            blocked.send("BLPOP", *keys, 0)
            wait_blocked(r, 1)
            assert other.command("MULTI") == b"OK"
            assert other.command("LPUSH", "a", "x") == b"QUEUED"
            assert other.command("CLIENT", "UNBLOCK", blocked_id) == b"QUEUED"
            scripter.send("EVAL", _BUSY_SCRIPT, 1, script_key)
            time.sleep(0.6)  # the script runs (even on a loaded machine), not yet past the threshold
            other.send("EXEC")
            got = other.read_reply()
            assert isinstance(got, ErrorReply)
            assert str(got).startswith("EXECABORT Transaction discarded because of: BUSY ")
            _kill_busy_script(other, scripter)
            assert other.command("LPUSH", "a", "y") == 1
            assert blocked.read_reply() == [b"a", b"y"]
    finally:
        r.config_set("busy-reply-threshold", 5000)


# -- a blocked client's next commands wait for it ---------------------------------


def test_pipelined_commands_wait(server):
    # The RPUSH is not run while the BLPOP before it waits: the BLPOP times
    # out, then the RPUSH runs.
    expected = b"*-1\r\n:1\r\n$1\r\nx\r\n"
    assert raw_reply(server, b"BLPOP a 0.1\r\nRPUSH a x\r\nLPOP a\r\n", len(expected)) == expected


def test_pipelined_commands_after_wake(r, server):
    s = socket.create_connection(("127.0.0.1", server), timeout=WAIT)
    s.sendall(b"BLPOP a 0\r\nRPUSH a y\r\nLRANGE a 0 -1\r\n")
    wait_blocked(r, 1)
    r.rpush("a", "x")
    expected = b"*2\r\n$1\r\na\r\n$1\r\nx\r\n:1\r\n*1\r\n$1\r\ny\r\n"
    got = b""
    while len(got) < len(expected):
        chunk = s.recv(1024)
        assert chunk
        got += chunk
    s.close()
    assert got == expected


# -- shardkv only: a worker that dies ----------------------------------------------


@pytest.fixture
def lonely_shardkv():
    """A shardkv of its own, since a worker of it gets killed."""
    proc = start_shardkv(shards=2)
    yield proc
    proc.stop()


@pytest.mark.slow
def test_worker_death_answers_blocked_clients(lonely_shardkv, pool):
    # shardkv only: Redis has no workers.  The blocked client gets an error
    # instead of waiting for ever; once the shard is back, it works again.
    port = lonely_shardkv.port
    r = connect(port)
    waiting = start(pool, port, "BLPOP", "a", 0)
    wait_blocked(r, 1)
    shard = Router(2).shard_of(b"a")
    children = psutil.Process(lonely_shardkv.proc.pid).children()
    (worker,) = [p for p in children if p.name() == f"shardkv-shard{shard}"]
    worker.send_signal(signal.SIGKILL)
    with pytest.raises(redis.ResponseError, match="shard unavailable"):
        waiting.result(WAIT)
    deadline = time.monotonic() + 30
    while True:  # until the supervisor has restarted it
        try:
            if r.rpush("a", "x") == 1:
                break
        except (redis.ResponseError, redis.BusyLoadingError):  # (-LOADING while it reloads)
            pass
        assert time.monotonic() < deadline, "the workers did not come back"
        time.sleep(0.1)
    assert r.execute_command("BLPOP", "a", 1) == [b"a", b"x"]
    assert blocked_clients(r) == 0
    r.close()


def raw_reply(port: int, data: bytes, size: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        got = b""
        while len(got) < size:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got
