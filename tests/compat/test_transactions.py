"""MULTI/EXEC/DISCARD/WATCH/UNWATCH, compared byte for byte with redis-server,
and proved atomic across shards under concurrency.

With 4 shards, "a" lives on shard 3, "b" on 0, "c" on 1 and "d" on 2, so a
transaction over a, b, c and d spans every shard.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import redis

from shardkv.protocol.resp import encode_command
from shardkv.protocol.router import Router
from tests.support.rawsocket import exchange
from tests.support.resp import RespClient

SHARD_OF = Router(4).shard_of


# -- raw RESP sessions ---------------------------------------------------------


def run_script(port: int, script: list, resp3: bool) -> list[bytes]:
    """Run ``script`` on one connection: each item is a command string (split
    on spaces) or ``(n, command)`` for a command that sends ``n`` replies."""
    conn = RespClient(port, protocol=3 if resp3 else 2)
    out = []
    try:
        for item in script:
            n, line = item if isinstance(item, tuple) else (1, item)
            conn.send(*line.split(" "))
            out.extend(conn.read() for _ in range(n))
    finally:
        conn.close()
    return out


@pytest.fixture(
    params=[(2, False), (3, False), (2, True), (3, True)],
    ids=["resp2", "resp3", "resp2-watch", "resp3-watch"],
)
def same(request, ports):
    """Runs a raw script on redis-server and on shardkv, and asserts equal replies.

    The ``-watch`` variants WATCH an unrelated key before each MULTI, which
    makes shardkv run EXEC as one atomic operation over parked shards
    instead of routing each command in one turn.
    """
    servers = [ports["redis"], ports["shardkv"]]
    resp, watch = request.param

    def check(script: list) -> list[bytes]:
        if watch:
            script = [line for item in script for line in (["WATCH w"] if item == "MULTI" else []) + [item]]
        for port in servers:
            c = redis.Redis(port=port)
            c.flushall()
            c.close()
        expected, got = (run_script(port, script, resp == 3) for port in servers)
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            assert g == e, f"reply {i} to {script!r}: redis {e!r}, shardkv {g!r}"
        return got

    return check


# -- MULTI / EXEC / DISCARD ------------------------------------------------------


def test_exec_spans_all_shards(same):
    assert {SHARD_OF(k) for k in (b"a", b"b", b"c", b"d")} == {0, 1, 2, 3}
    same(["MULTI", "SET a 1", "SET b 2", "SET c 3", "SET d 4", "MGET a b c d", "INCR a", "DEL a b c", "EXEC"])
    same(
        [
            "MSET a 1 b 2",
            "MULTI",
            "GET a",
            "GET b",
            "RENAME a c",
            "GET c",
            "EXISTS a b c d",
            "EXEC",
            "MGET a b c",
        ]
    )


def test_exec_empty_and_single_shard(same):
    same(["MULTI", "EXEC", "MULTI", "DISCARD", "GET a"])
    same(["MULTI", "SET {t}a 1", "INCR {t}a", "APPEND {t}b x", "GET {t}a", "EXEC"])
    same(["MULTI", "SET a 1", "EXEC", "GET a"])


def test_writes_spanning_shards_then_more_commands(same):
    # The writes span shards from the second command on: what follows
    # (a blocking command, writes to one shard) runs in the same operation.
    assert SHARD_OF(b"a") != SHARD_OF(b"b")
    same(["MULTI", "SET a 1", "SET b 2", "BLPOP l1 0", "RPUSH l1 x", "INCR a", "BLPOP l1 0", "GET b", "EXEC"])
    same(["MGET a b", "LLEN l1"])


def test_runtime_errors_do_not_stop_the_others(same):
    same(["SET s foo", "MULTI", "INCR s", "SET a 1", "SET b 2", "INCRBY b x", "GET s", "EXEC", "MGET a b s"])
    same(["MULTI", "SET a 1", "MSET a 1 b", "GET a", "EXEC"])


def _call_figures(port: int) -> list[bytes]:
    """INFO commandstats and errorstats, less each row's times, read on a
    raw connection (redis-py's handshake would add calls of its own)."""
    conn = RespClient(port)
    try:
        text = conn.call("INFO", "commandstats") + conn.call("INFO", "errorstats")
    finally:
        conn.close()
    rows = [re.sub(rb"usec=\d+,usec_per_call=[\d.]+,", b"", line) for line in text.split(b"\r\n")]
    return sorted(line for line in rows if line.startswith((b"cmdstat_", b"errorstat_")))


def test_errors_inside_exec_count_on_their_commands(same, ports):
    """An error a queued command replies inside EXEC's array counts in that
    command's failed_calls and in errorstats, not in EXEC's: Redis's call()
    counts EXEC failed only when EXEC itself replies an error."""
    same(
        [
            "SET s foo",
            "LPUSH l x",
            "CONFIG RESETSTAT",
            "MULTI",
            "EVALSHA ffffffffffffffffffffffffffffffffffffffff 1 a",
            "EVAL return(redis.call('incr',KEYS[1])) 1 s",
            "EVAL return{err='X'} 0",
            "INCR s",
            "GET l",
            "FCALL nosuchfunction 0",
            "SET a 1",
            "EXEC",
            "EXEC",  # its own error: a failed EXEC
        ]
    )
    assert _call_figures(ports["shardkv"]) == _call_figures(ports["redis"])


def test_queueing_errors_abort(same):
    same(["MULTI", "SET a 1", "NOSUCHCOMMAND x", "SET b 2", "EXEC", "MGET a b", "EXEC"])
    same(["MULTI", "SET a 1", "GET", "EXEC", "GET a"])
    same(["MULTI", "SET a 1", "GET a b", "DISCARD", "GET a"])


def test_state_errors(same):
    same(["EXEC", "DISCARD", "UNWATCH", "MULTI", "MULTI", "SET a 1", "EXEC"])
    same(["MULTI", "WATCH a", "SET a 1", "EXEC", "GET a"])
    same(["MULTI", "SET a 1", "DISCARD", "EXEC", "GET a"])


def test_not_queued_commands(same):
    # QUIT and RESET run at once inside MULTI.
    same(["MULTI", "SET a 1", "RESET", "EXEC", "GET a"])
    same(["MULTI", "SET a 1", "QUIT"])


def test_acceptor_commands_inside_exec(same):
    same(["MULTI", "PING", "SET a 1", "ECHO hello", "PING x", "SELECT 0", "GET a", "PUBLISH ch m", "EXEC"])
    same(["MULTI", "CLIENT SETNAME tx", "SET a 1", "SET b 1", "CLIENT GETNAME", "UNWATCH", "EXEC"])
    same(["MULTI", "SELECT 1", "ECHO", "EXEC"])


def test_all_shard_commands_inside_exec(same):
    same(
        ["MSET a 1 b 1 c 1", "MULTI", "DBSIZE", "FLUSHALL", "SET a 2", "SET b 2", "SET d 2", "DBSIZE", "EXEC"]
    )
    same(["MGET a b c d", "DBSIZE", "KEYS b"])
    same(["SET a 1", "MULTI", "RANDOMKEY", "KEYS *", "DEL a", "RANDOMKEY", "FLUSHDB", "DBSIZE", "EXEC"])


def test_blocking_commands_do_not_block_inside_exec(same):
    same(["MULTI", "BLPOP l1 0", "RPUSH l1 x", "BLPOP l1 l2 0", "BRPOPLPUSH l1 l3 0", "EXEC"])
    same(["RPUSH a y", "MULTI", "BLMOVE a b LEFT LEFT 0", "BZPOPMIN z 0", "BLMOVE b c LEFT LEFT 0", "EXEC"])


def test_keys_inside_exec(r):
    r.mset({"a": 1, "b": 1})
    p = r.pipeline()
    p.set("c", 1).delete("a").keys("*").set("d", 1).dbsize()
    res = p.execute()
    assert sorted(res[2]) == [b"b", b"c"]
    assert res[4] == 3
    assert sorted(r.keys("*")) == [b"b", b"c", b"d"]


def test_subscribe_inside_exec(same):
    # Each SUBSCRIBE confirmation is spliced into EXEC's array, as Redis does.
    same(["MULTI", "SET a 1", (1, "SUBSCRIBE x y"), "PING", "EXEC", (2, "UNSUBSCRIBE y x"), "GET a"])


def test_pipelined_transaction(ports):
    # A whole WATCH ... EXEC sent in one write: the versions must be known
    # before the EXEC is checked.
    script = b"".join(
        encode_command(c.split())
        for c in [b"WATCH a b c d", b"MULTI", b"SET a 1", b"INCR b", b"SET d x", b"EXEC", b"MGET a b c d"]
    )
    for port in (ports["redis"], ports["shardkv"]):
        redis.Redis(port=port).flushall()
        conn = RespClient(port)
        conn.sock.sendall(script)
        got = [conn.read() for _ in range(7)]
        conn.close()
        assert got[5] == b"*3\r\n+OK\r\n:1\r\n+OK\r\n"
        assert got[6] == b"*4\r\n$1\r\n1\r\n$1\r\n1\r\n$-1\r\n$1\r\nx\r\n"


# A write on each of two shards: with two shards (redis_and_shardkv_k12's),
# "a" lives on shard 1 and "b" on shard 0, so the EXECs below run as one
# atomic operation across shards.
_ACROSS = b"SET a 1\r\nSET b 1\r\n"


@pytest.mark.parametrize(
    "session",
    [
        b"MULTI\r\n" + _ACROSS + b"CLIENT SETNAME x\r\nEXEC\r\nCLIENT GETNAME\r\n",
        b"MULTI\r\n" + _ACROSS + b"CLIENT GETNAME\r\nEXEC\r\nCLIENT SETNAME y\r\n",
        b"MULTI\r\n" + _ACROSS + b"SUBSCRIBE q\r\nEXEC\r\nPUBLISH q z\r\nUNSUBSCRIBE\r\n",
        b"SUBSCRIBE q\r\nMULTI\r\n" + _ACROSS + b"PUBLISH q hi\r\nEXEC\r\nUNSUBSCRIBE q\r\n",
    ],
    ids=["setname", "getname", "subscribe", "publish"],
)
def test_an_exec_across_shards_runs_before_what_follows_it(redis_and_shardkv_k12, session):
    """An EXEC that writes on several shards runs as one atomic operation,
    and its acceptor commands run once it commits; the commands its client
    sent after EXEC (pipelined) must see them done, as in Redis.  shardkv
    ran those before, at one acceptor as at two: CLIENT GETNAME found no
    name, an EXEC's CLIENT GETNAME the later name, a PUBLISH after EXEC
    missed the SUBSCRIBE inside it, and an UNSUBSCRIBE after EXEC came
    before its PUBLISH (a count of 0, no message)."""
    real, ours, _ = redis_and_shardkv_k12
    assert Router(2).shard_of(b"a") != Router(2).shard_of(b"b")
    data = b"HELLO 3\r\nECHO start\r\n" + session + b"ECHO end\r\n"
    replies = [exchange(port, data, want=len(b"start")) for port in (real, ours)]
    (theirs, their_close), (mine, my_close) = [
        (out.split(b"start\r\n", 1)[1], closed) for out, closed in replies
    ]
    assert mine == theirs
    assert my_close == their_close
    assert theirs.endswith(b"end\r\n")


# -- WATCH ---------------------------------------------------------------------


def _other(server_port: int, *args: object) -> object:
    c = redis.Redis(port=server_port)
    try:
        return c.execute_command(*args)
    finally:
        c.close()


@pytest.mark.parametrize("resp3", [False, True], ids=["resp2", "resp3"])
def test_watch_sees_other_clients(server, resp3):
    conn = RespClient(server, protocol=3 if resp3 else 2)
    null = b"_\r\n" if resp3 else b"*-1\r\n"
    try:
        # Untouched: EXEC runs.
        assert conn.call("WATCH", "a", "b", "c") == b"+OK\r\n"
        assert conn.call("MULTI") == b"+OK\r\n"
        assert conn.call("SET", "a", "1") == b"+QUEUED\r\n"
        assert conn.call("EXEC") == b"*1\r\n+OK\r\n"
        # Changed by another client, on another shard than the writes.
        conn.call("WATCH", "a", "b", "c")
        _other(server, "SET", "c", "x")
        conn.call("MULTI")
        conn.call("SET", "a", "2")
        conn.call("SET", "b", "2")
        assert conn.call("EXEC") == null
        assert _other(server, "MGET", "a", "b") == [b"1", None]
        # EXEC unwatched: a later change does not matter.
        _other(server, "SET", "c", "y")
        conn.call("MULTI")
        conn.call("SET", "b", "3")
        assert conn.call("EXEC") == b"*1\r\n+OK\r\n"
        # Deleted by another client.
        conn.call("WATCH", "b")
        _other(server, "DEL", "b")
        conn.call("MULTI")
        conn.call("SET", "a", "3")
        assert conn.call("EXEC") == null
        # Changed by this very client before MULTI.
        conn.call("WATCH", "a")
        conn.call("SET", "a", "4")
        conn.call("MULTI")
        conn.call("PING")
        assert conn.call("EXEC") == null
        # UNWATCH and DISCARD forget the watched keys.
        conn.call("WATCH", "a")
        conn.call("UNWATCH")
        _other(server, "SET", "a", "5")
        conn.call("MULTI")
        conn.call("GET", "a")
        assert conn.call("EXEC") == b"*1\r\n$1\r\n5\r\n"
        conn.call("WATCH", "a")
        conn.call("MULTI")
        conn.call("DISCARD")
        _other(server, "SET", "a", "6")
        conn.call("MULTI")
        conn.call("GET", "a")
        assert conn.call("EXEC") == b"*1\r\n$1\r\n6\r\n"
        # A watched key may be watched twice; the first version counts.
        conn.call("WATCH", "d")
        _other(server, "SET", "d", "1")
        conn.call("WATCH", "d", "a")
        conn.call("MULTI")
        conn.call("GET", "a")
        assert conn.call("EXEC") == null
        # Only keyless commands in the transaction: still checked.
        conn.call("WATCH", "b", "d")
        _other(server, "INCR", "d")
        conn.call("MULTI")
        conn.call("PING")
        assert conn.call("EXEC") == null
        # An aborted EXEC ran nothing, not even acceptor commands.
        conn.call("WATCH", "a")
        _other(server, "SET", "a", "7")
        conn.call("MULTI")
        conn.call("CLIENT", "SETNAME", "aborted")
        assert conn.call("EXEC") == null
        assert conn.call("CLIENT", "GETNAME") in (b"$-1\r\n", b"_\r\n")
    finally:
        conn.close()


def test_watch_and_flush(same):
    # A watched key that FLUSHALL removes aborts EXEC; a missing watched key
    # (FLUSHALL removes nothing there) does not, in Redis 7.0.
    same(["SET k v", "WATCH k", "FLUSHALL", "MULTI", "PING", "EXEC"])
    same(["WATCH nokey", "FLUSHALL", "MULTI", "PING", "EXEC"])
    same(["SET a 1", "WATCH a b", "FLUSHDB", "MULTI", "PING", "EXEC"])


def test_watch_expired_key(server):
    """A watched key that expires before EXEC aborts it (one that had
    already expired when WATCH came does not, in Redis as here: the PTTL
    after WATCH proves the key was alive then, else the trial is made
    again, as a loaded machine can take 30 ms between two commands)."""
    conn = RespClient(server)
    try:
        for _ in range(20):
            conn.call("SET", "k", "v", "PX", "30")
            conn.call("WATCH", "k")
            if conn.call("PTTL", "k").startswith(b":-"):
                conn.call("UNWATCH")
                continue
            break
        else:
            pytest.fail("k expired before WATCH in 20 trials")
        time.sleep(0.1)
        conn.call("MULTI")
        conn.call("SET", "x", "1")
        assert conn.call("EXEC") == b"*-1\r\n"
        assert _other(server, "GET", "x") is None
    finally:
        conn.close()


def test_watch_in_transaction_run_by_another_client(server):
    # Another client's MULTI/EXEC that writes the watched key aborts ours.
    conn = RespClient(server)
    try:
        conn.call("WATCH", "a", "b")
        other = redis.Redis(port=server)
        with other.pipeline() as p:
            p.set("c", 1).incr("b").execute()
        other.close()
        conn.call("MULTI")
        conn.call("SET", "d", "1")
        assert conn.call("EXEC") == b"*-1\r\n"
    finally:
        conn.close()


# -- redis-py --------------------------------------------------------------------


def test_redis_py_pipeline_over_all_shards(r):
    keys = ["a", "b", "c", "d"]
    with r.pipeline() as p:  # transaction=True by default: MULTI ... EXEC
        for i, k in enumerate(keys):
            p.set(k, i)
        p.mget(keys)
        for k in keys:
            p.incrby(k, 10)
        p.get("d")
        result = p.execute()
    assert result == [True] * 4 + [[b"0", b"1", b"2", b"3"]] + [10, 11, 12, 13] + [b"13"]
    with r.pipeline() as p:
        p.set("a", "x").incr("a").get("a")
        with pytest.raises(redis.ResponseError):
            p.execute()
    with r.pipeline() as p:
        assert p.set("a", "y").incr("a").get("a").execute(raise_on_error=False)[2] == b"y"


def test_redis_py_transaction_helper(r):
    r.mset({"a": 5, "d": 7})

    def move(pipe: redis.client.Pipeline) -> None:
        a, d = (int(v) for v in pipe.mget("a", "d"))
        pipe.multi()
        pipe.set("a", a - 1)
        pipe.set("d", d + 1)

    assert r.transaction(move, "a", "d") == [True, True]
    assert r.mget("a", "d") == [b"4", b"8"]


def test_redis_py_watch_error(r):
    r.set("a", 1)
    other = redis.Redis(port=r.connection_pool.connection_kwargs["port"])
    with r.pipeline() as p:
        p.watch("a", "c")
        other.set("c", 1)
        p.multi()
        p.set("a", 2)
        with pytest.raises(redis.WatchError):
            p.execute()
    other.close()
    assert r.get("a") == b"1"


# -- concurrency: atomicity and isolation across shards ------------------------------

ACCOUNTS = [f"acct:{i}" for i in range(8)]
START = 1000


def _run_threads(targets: list) -> None:
    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    if errors:
        raise errors[0]


def _checked_transfer(p: redis.client.Pipeline, src: str, dst: str, amount: int) -> None:
    balance = int(p.get(src))
    p.multi()
    if balance >= amount:
        p.decrby(src, amount).incrby(dst, amount)


def test_transfers_keep_the_sum(server):
    # Transfers between counters on all four shards, as plain MULTI/EXEC and
    # as WATCH-checked transactions that refuse to overdraw; readers read all
    # counters at once (MGET, MULTI, MULTI after WATCH) and must always see
    # the same sum.
    assert {SHARD_OF(k.encode()) for k in ACCOUNTS} == {0, 1, 2, 3}
    setup = redis.Redis(port=server)
    setup.mset({k: START for k in ACCOUNTS})
    total = START * len(ACCOUNTS)
    writers, rounds = 6, 40
    start = threading.Barrier(writers + 3)
    stop = threading.Event()
    seen_sums: list[int] = []

    def pair(seed: int, i: int) -> tuple[str, str, int]:
        src = ACCOUNTS[(seed + i) % len(ACCOUNTS)]
        dst = ACCOUNTS[(seed + 1 + i * 5) % len(ACCOUNTS)]
        return src, dst, (seed + i) % 7 + 1

    def transfer(seed: int) -> None:
        c = redis.Redis(port=server, socket_timeout=30)
        start.wait()
        for i in range(rounds):
            src, dst, amount = pair(seed, i)
            if src == dst:
                continue
            if seed % 2:
                with c.pipeline() as p:
                    p.decrby(src, amount).incrby(dst, amount).execute()
                continue

            c.transaction(lambda p, s=src, d=dst, n=amount: _checked_transfer(p, s, d, n), src, dst)
        c.close()

    def read(kind: str) -> None:
        c = redis.Redis(port=server, socket_timeout=30)
        start.wait()
        while not stop.is_set():
            if kind == "mget":
                values = c.mget(ACCOUNTS)
            else:
                with c.pipeline() as p:
                    if kind == "watch":
                        p.watch(ACCOUNTS[0])
                        p.multi()
                    for k in ACCOUNTS:
                        p.get(k)
                    try:
                        values = p.execute()
                    except redis.WatchError:
                        continue
            seen_sums.append(sum(int(v) for v in values))
        c.close()

    readers = [threading.Thread(target=read, args=(kind,)) for kind in ("mget", "multi", "watch")]
    for t in readers:
        t.start()
    try:
        _run_threads([lambda s=s: transfer(s) for s in range(writers)])
    finally:
        stop.set()
        for t in readers:
            t.join(60)
    assert seen_sums, "the readers read nothing"
    assert set(seen_sums) == {total}
    assert sum(int(v) for v in setup.mget(ACCOUNTS)) == total
    setup.close()


def test_watch_check_and_set_under_contention(server):
    clients, increments = 6, 15
    keys = ["a", "b"]  # on different shards: each transaction spans two shards
    setup = redis.Redis(port=server)
    setup.mset({k: 0 for k in keys})
    attempts = [0]

    start = threading.Barrier(clients)

    def worker():
        c = redis.Redis(port=server, socket_timeout=30)
        done = 0
        start.wait()
        for _ in range(increments * 200):  # bounded: each try either succeeds or loses a race
            if done == increments:
                break
            attempts[0] += 1
            with c.pipeline() as p:
                try:
                    p.watch(*keys)
                    a = int(p.get("a"))
                    b = int(p.get("b"))
                    p.multi()
                    p.set("a", a + 1)
                    p.set("b", b + 1)
                    p.execute()
                    done += 1
                except redis.WatchError:
                    continue
        c.close()
        assert done == increments

    _run_threads([worker] * clients)
    assert setup.mget(keys) == [b"%d" % (clients * increments)] * 2
    setup.close()
