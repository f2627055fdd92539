"""A client blocked on several keys is served from the key made ready,
against both servers.

Redis serves a blocked client from the key a write signalled ready
(``handleClientsBlockedOnKeys``, ``serveClientsBlockedOnKey``): it reads
none of the client's other keys, so a transaction or script that makes an
earlier key another type while it pushes to a later one serves the client
from the later key (``BLPOP B A 0``, then ``MULTI``, ``SET B s``, ``RPUSH A
x``, ``EXEC``: ``[A, x]``, not WRONGTYPE); and a ready key that holds
another type once the write has ended serves no one (the client waits on).
Each case blocks a client, runs the writes on another connection (CLIENT
UNBLOCK among them), then reads the blocked client's reply.  shardkv runs with two shards, with one
acceptor and with two (the blocked client on the other one); ``A`` and
``B`` are keys of two different shards, or of the same shard.
"""

from __future__ import annotations

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient
from tests.support.waits import WAIT, read_or_error, reply_or_error, wait_blocked, wait_called

SET_THEN_PUSH = "redis.call('set', KEYS[1], 's') return redis.call('rpush', KEYS[2], 'x')"
PUSH_BOTH = "redis.call('rpush', KEYS[1], 'x') return redis.call('rpush', KEYS[2], 'y')"
XADD_BOTH = "redis.call('xadd', KEYS[1], '5-1', 'f', 'v') return redis.call('xadd', KEYS[2], '5-2', 'f', 'v')"
PUSH_POP = "redis.call('rpush', KEYS[1], 'x') return redis.call('lpop', KEYS[1])"
PUSH_POP_PUSH = (
    "redis.call('rpush', KEYS[1], 'x') redis.call('lpop', KEYS[1]) return redis.call('rpush', KEYS[2], 'y')"
)

# name: (setup or None, the blocked command, the writes); "A" and "B" stand for the
# keys, "ID" for the blocked client's id; a tuple of writes is pipelined.
CASES = {
    "multi-set-then-rpush": (
        None,
        ["BLPOP", "B", "A", 0],
        [["MULTI"], ["SET", "B", "s"], ["RPUSH", "A", "x"], ["EXEC"]],
    ),
    "multi-set-then-rpush-brpop": (
        None,
        ["BRPOP", "B", "A", 0],
        [["MULTI"], ["SET", "B", "s"], ["RPUSH", "A", "x", "y"], ["EXEC"]],
    ),
    "eval-set-then-rpush": (None, ["BLPOP", "B", "A", 0], [["EVAL", SET_THEN_PUSH, 2, "B", "A"]]),
    "multi-set-then-zadd": (
        None,
        ["BZPOPMIN", "B", "A", 0],
        [["MULTI"], ["SET", "B", "s"], ["ZADD", "A", 1, "m"], ["EXEC"]],
    ),
    "multi-set-then-rpush-blmpop": (
        None,
        ["BLMPOP", 0, 2, "B", "A", "LEFT", "COUNT", 2],
        [["MULTI"], ["SET", "B", "s"], ["RPUSH", "A", "x", "y", "z"], ["EXEC"]],
    ),
    "multi-set-then-zadd-bzmpop": (
        None,
        ["BZMPOP", 0, 2, "B", "A", "MAX", "COUNT", 2],
        [["MULTI"], ["SET", "B", "s"], ["ZADD", "A", 1, "m", 2, "n", 3, "o"], ["EXEC"]],
    ),
    "multi-set-then-xadd-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "B", "A", "$", "$"],
        [["MULTI"], ["SET", "B", "s"], ["XADD", "A", "5-1", "f", "v"], ["EXEC"]],
    ),
    # CLIENT UNBLOCK: a key of another type is no key made ready (a null,
    # and 1), but a key made ready before it serves first (pipelined, its
    # notification may not have come yet: the client gets x, and 0).
    "set-then-unblock": (None, ["BLPOP", "B", "A", 0], [["SET", "B", "s"], ["CLIENT", "UNBLOCK", "ID"]]),
    "set-then-unblock-bzpopmax": (
        None,
        ["BZPOPMAX", "B", "A", 0],
        [["SET", "B", "s"], ["CLIENT", "UNBLOCK", "ID"]],
    ),
    "set-then-unblock-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "B", "A", "$", "$"],
        [["SET", "B", "s"], ["CLIENT", "UNBLOCK", "ID"]],
    ),
    "set-then-unblock-xread-error": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "B", "A", "$", "$"],
        [["SET", "B", "s"], ["CLIENT", "UNBLOCK", "ID", "ERROR"]],
    ),
    # Both streams written before CLIENT UNBLOCK (pipelined: their
    # notifications may not have come yet): the client is served from one
    # stream alone, and XREADGROUP delivers that stream's entry alone.  (B
    # is written first: Redis serves the stream written first, shardkv
    # the first of the command's that has entries; see the README.)
    "multi-xadd-both-then-unblock-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "B", "A", "$", "$"],
        [
            ["MULTI"],
            ["XADD", "B", "5-1", "f", "v"],
            ["XADD", "A", "5-1", "f", "v"],
            (["EXEC"], ["CLIENT", "UNBLOCK", "ID"]),
        ],
    ),
    "xadd-both-then-unblock-xreadgroup": (
        [["XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"], ["XGROUP", "CREATE", "B", "g", "$", "MKSTREAM"]],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "B", "A", ">", ">"],
        [(["XADD", "B", "5-1", "f", "v"], ["XADD", "A", "5-1", "f", "v"], ["CLIENT", "UNBLOCK", "ID"])],
    ),
    "set-then-unblock-blmpop": (
        None,
        ["BLMPOP", 0, 2, "B", "A", "RIGHT"],
        [["SET", "B", "s"], ["CLIENT", "UNBLOCK", "ID", "ERROR"]],
    ),
    "multi-rpush-then-set-then-unblock": (
        None,
        ["BLPOP", "B", "A", 0],
        [["MULTI"], ["RPUSH", "A", "x"], ["SET", "A", "s"], ["EXEC"], ["CLIENT", "UNBLOCK", "ID"]],
    ),
    "multi-set-then-rpush-unblock-pipelined": (
        None,
        ["BLPOP", "B", "A", 0],
        [["MULTI"], ["SET", "B", "s"], ["RPUSH", "A", "x"], (["EXEC"], ["CLIENT", "UNBLOCK", "ID"])],
    ),
    # Several keys made ready by one transaction or script: Redis serves
    # the client from the key written first (its ready keys' order), not
    # the first of the command's keys; a stream read gets that stream's
    # entries alone (Redis 7.0's serveClientsBlockedOnStreamKey).
    "multi-xadd-b-then-a-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "A", "B", "$", "$"],
        [["MULTI"], ["XADD", "B", "5-1", "f", "v"], ["XADD", "A", "5-1", "f", "v"], ["EXEC"]],
    ),
    "multi-xadd-a-then-b-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "B", "A", "$", "$"],
        [["MULTI"], ["XADD", "A", "5-1", "f", "v"], ["XADD", "B", "5-2", "f", "v"], ["EXEC"]],
    ),
    "eval-xadd-b-then-a-xread": (
        None,
        ["XREAD", "COUNT", 5, "BLOCK", 0, "STREAMS", "A", "B", "$", "$"],
        [["EVAL", XADD_BOTH, 2, "B", "A"]],
    ),
    # Separate XADDs, pipelined: Redis serves the client after the first.
    "xadd-b-then-a-pipelined-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "A", "B", "$", "$"],
        [(["XADD", "B", "5-1", "f", "v"], ["XADD", "A", "5-1", "f", "v"])],
    ),
    "xadd-a-then-b-pipelined-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "B", "A", "$", "$"],
        [(["XADD", "A", "5-1", "f", "v"], ["XADD", "B", "5-1", "f", "v"])],
    ),
    "multi-xadd-b-then-a-xreadgroup": (
        [["XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"], ["XGROUP", "CREATE", "B", "g", "$", "MKSTREAM"]],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "A", "B", ">", ">"],
        [["MULTI"], ["XADD", "B", "5-1", "f", "v"], ["XADD", "A", "5-1", "f", "v"], ["EXEC"]],
    ),
    "eval-xadd-a-then-b-xreadgroup": (
        [["XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"], ["XGROUP", "CREATE", "B", "g", "$", "MKSTREAM"]],
        ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "B", "A", ">", ">"],
        [["EVAL", XADD_BOTH, 2, "A", "B"]],
    ),
    "multi-rpush-b-then-a": (
        None,
        ["BLPOP", "A", "B", 0],
        [["MULTI"], ["RPUSH", "B", "x"], ["RPUSH", "A", "y"], ["EXEC"]],
    ),
    "multi-rpush-a-then-b": (
        None,
        ["BLPOP", "B", "A", 0],
        [["MULTI"], ["RPUSH", "A", "x"], ["RPUSH", "B", "y"], ["EXEC"]],
    ),
    "eval-rpush-b-then-a": (None, ["BRPOP", "A", "B", 0], [["EVAL", PUSH_BOTH, 2, "B", "A"]]),
    "multi-zadd-b-then-a": (
        None,
        ["BZPOPMIN", "A", "B", 0],
        [["MULTI"], ["ZADD", "B", 1, "m"], ["ZADD", "A", 1, "n"], ["EXEC"]],
    ),
    "multi-rpush-b-then-a-blmpop": (
        None,
        ["BLMPOP", 0, 2, "A", "B", "LEFT", "COUNT", 2],
        [["MULTI"], ["RPUSH", "B", "x"], ["RPUSH", "A", "y"], ["EXEC"]],
    ),
    # The rank is the key's first write that made it hold a list: a key
    # emptied and pushed again keeps its place, one made a list by LMOVE
    # or RENAME has its place too, and a key of another database does not
    # count (SELECT inside MULTI: such keys are named (database, key)).
    "multi-rpush-del-then-b-then-a-again": (
        None,
        ["BLPOP", "B", "A", 0],
        [["MULTI"], ["RPUSH", "A", "y"], ["DEL", "A"], ["RPUSH", "B", "x"], ["RPUSH", "A", "z"], ["EXEC"]],
    ),
    "multi-lmove-into-b-then-rpush-a": (
        [["RPUSH", "rks", "c"]],
        ["BLPOP", "A", "B", 0],
        [["MULTI"], ["LMOVE", "rks", "B", "LEFT", "LEFT"], ["RPUSH", "A", "y"], ["EXEC"], ["DEL", "rks"]],
    ),
    "multi-rpush-a-then-rename-into-b": (
        [["RPUSH", "rks", "d"]],
        ["BLPOP", "B", "A", 0],
        [["MULTI"], ["RPUSH", "A", "y"], ["RENAME", "rks", "B"], ["EXEC"]],
    ),
    "multi-other-db-then-b-then-a": (
        None,
        ["BLPOP", "A", "B", 0],
        [
            ["MULTI"],
            ["SELECT", 1],
            ["RPUSH", "A", "q"],
            ["SELECT", 0],
            ["RPUSH", "B", "x"],
            ["RPUSH", "A", "y"],
            ["EXEC"],
            ["SELECT", 1],
            ["DEL", "A"],
            ["SELECT", 0],
        ],
    ),
    # A push the same transaction or script pops again makes nothing ready.
    "multi-rpush-then-lpop": (
        None,
        ["BLPOP", "B", "A", 0],
        [["MULTI"], ["RPUSH", "A", "x"], ["LPOP", "A"], ["EXEC"], ["RPUSH", "B", "y"]],
    ),
    "eval-rpush-then-lpop": (None, ["BLPOP", "B", "A", 0], [["EVAL", PUSH_POP, 1, "A"], ["RPUSH", "B", "y"]]),
    "multi-rpush-lpop-then-rpush-other": (
        None,
        ["BLPOP", "A", "B", 0],
        [["MULTI"], ["RPUSH", "A", "x"], ["LPOP", "A"], ["RPUSH", "B", "y"], ["EXEC"]],
    ),
    "eval-rpush-lpop-then-rpush-other": (
        None,
        ["BLPOP", "A", "B", 0],
        [["EVAL", PUSH_POP_PUSH, 2, "A", "B"]],
    ),
    # CLIENT UNBLOCK inside EXEC, of a client one of whose keys holds
    # another type: it is unblocked (a null), no WRONGTYPE.
    "set-then-multi-unblock": (
        None,
        ["BLPOP", "B", "A", 0],
        [["SET", "B", "s"], ["MULTI"], ["CLIENT", "UNBLOCK", "ID"], ["EXEC"]],
    ),
    "set-then-multi-unblock-error-bzpopmin": (
        None,
        ["BZPOPMIN", "B", "A", 0],
        [["SET", "B", "s"], ["MULTI"], ["CLIENT", "UNBLOCK", "ID", "ERROR"], ["EXEC"]],
    ),
    "set-then-multi-unblock-xread": (
        None,
        ["XREAD", "BLOCK", 0, "STREAMS", "B", "A", "$", "$"],
        [["SET", "B", "s"], ["MULTI"], ["CLIENT", "UNBLOCK", "ID"], ["EXEC"]],
    ),
    "set-rpush-then-multi-unblock": (
        None,
        ["BLPOP", "B", "A", 0],
        [["SET", "B", "s"], (["RPUSH", "A", "x"], ["MULTI"], ["CLIENT", "UNBLOCK", "ID"], ["EXEC"])],
    ),
    # The ready key holds another type once the transaction has ended: it
    # serves no one, and the client waits until A is a list again.
    "multi-rpush-then-set": (
        None,
        ["BLPOP", "B", "A", 0],
        [["MULTI"], ["RPUSH", "A", "x"], ["SET", "A", "s"], ["EXEC"], ["DEL", "A"], ["RPUSH", "A", "y"]],
    ),
}

# With two acceptors the stream whose notification reaches the waiter's
# acceptor first serves it, not the one written first (the README's
# "Still different"): these cases, which write both streams of two
# shards, run with one.
ONE_ACCEPTOR = {
    "multi-xadd-both-then-unblock-xread",
    "xadd-b-then-a-pipelined-xread",
    "xadd-a-then-b-pipelined-xread",
}

# (A cross-shard XREADGROUP used to be served from the stream whose
# notification reached its acceptor first, usually, not always, the first
# written: now the XADD's reply and its client's next command wait for the
# try the XADD made (``__bsettle``), through either acceptor.)


def _run(port: int, acceptors: int, case: str, same_shard: bool) -> str:
    """The case on the server at ``port``: the writes' replies, the blocked
    command's, and each key's type and length, with the keys named A, B."""
    setup, blocked, writes = CASES[case]
    a = key_on(0, "rka", 2)
    b = "{%s}b" % a if same_shard else key_on(1, "rkb", 2)
    names = {"A": a, "B": b}
    if acceptors > 1:
        c, waiter = client_on(port, 0, k=acceptors), client_on(port, 1, k=acceptors)
    else:
        c, waiter = RespClient(port, timeout=WAIT), RespClient(port, timeout=WAIT)
    try:
        c.command("DEL", a, b)
        for command in setup or ():
            c.command(*(names.get(x, x) for x in command))
        c.command("CONFIG", "RESETSTAT")
        names["ID"] = str(waiter.command("CLIENT", "ID"))
        waiter.send(*(names.get(x, x) if type(x) is str else x for x in blocked))
        wait_blocked(c, 1)
        # ...and its first run done (shardkv counts a client blocked as
        # soon as its command across shards comes, before its first try).
        wait_called(c, str(blocked[0]))
        replies = []
        for w in writes:
            if type(w) is tuple:
                for command in w:
                    c.send(*(names.get(x, x) for x in command))
                replies += [read_or_error(c) for _ in w]
            else:
                replies.append(reply_or_error(c, *(names.get(x, x) for x in w)))
        served = read_or_error(waiter)
        wait_blocked(c, 0)
        state = []
        for key in (a, b):
            kind = c.command("TYPE", key)
            length = {b"list": "LLEN", b"zset": "ZCARD", b"stream": "XLEN"}.get(kind)  # type: ignore[call-overload]
            state.append((kind, c.command(length, key) if length else None))
            if kind == b"stream":  # its groups' pending entries and last delivered ids
                for group in c.command("XINFO", "GROUPS", key):  # type: ignore[union-attr]
                    fields = dict(zip(group[::2], group[1::2], strict=True))  # type: ignore[index]
                    state.append((fields[b"name"], fields[b"pending"], fields[b"last-delivered-id"]))
        c.command("DEL", a, b)
        text = repr((replies, served, state))
        del names["ID"]
        for name, key in sorted(names.items(), key=lambda item: -len(item[1])):  # {A}b before A
            text = text.replace(key, name)
        return text
    finally:
        c.close()
        waiter.close()


@pytest.mark.parametrize("layout", ["two-shards", "one-shard"])
@pytest.mark.parametrize("case", list(CASES))
def test_blocked_client_served_from_its_ready_key(redis_and_shardkv_k12, case, layout):
    real, port, acceptors = redis_and_shardkv_k12
    if acceptors > 1 and case in ONE_ACCEPTOR and layout == "two-shards":
        pytest.skip("which stream serves depends on the order notifications arrive")
    same_shard = layout == "one-shard"
    expected = _run(real, 1, case, same_shard)
    assert _run(port, acceptors, case, same_shard) == expected


def _two_blocked(port: int, acceptors: int, rounds: int) -> list[str]:
    """Two clients blocked across shards, the first on B and Z, the second
    on A and B (Z and A on one shard, B on the other), then one
    transaction pushes B, then A: what each client gets, and the lengths
    of A and B, per round.  Redis serves the first from B (its first
    ready key), then the second from A: B's element went to the first."""
    a, z = key_on(0, "rka", 2), key_on(0, "rkz", 2)
    b = key_on(1, "rkb", 2)
    outcomes = []
    for i in range(rounds):
        if acceptors > 1:
            c, first, second = (client_on(port, j, k=acceptors) for j in (0, 1, i % 2))
        else:
            c, first, second = (RespClient(port, timeout=WAIT) for _ in range(3))
        try:
            c.command("DEL", a, b, z)
            c.command("CONFIG", "RESETSTAT")
            first.send("BLPOP", b, z, 0)
            wait_blocked(c, 1)
            wait_called(c, "BLPOP")
            second.send("BLPOP", a, b, 0)
            wait_blocked(c, 2)
            wait_called(c, "BLPOP", 2)
            for command in (["MULTI"], ["RPUSH", b, "x"], ["RPUSH", a, "y"], ["EXEC"]):
                c.command(*command)
            served = [read_or_error(first), read_or_error(second)]
            wait_blocked(c, 0)
            text = repr((served, c.command("LLEN", a), c.command("LLEN", b)))
            outcomes.append(text.replace(a, "A").replace(b, "B"))
        finally:
            for client in (c, first, second):
                client.close()
    return outcomes


def test_second_blocked_client_served_from_a_key_left_to_it(redis_and_shardkv_k12):
    """The second client's notification of B says its element is counted
    for the first (``BWAIT_CLAIMED``), A's that one is left for it: it
    tries A, though the transaction wrote B first (else its try may pop
    B's element ahead of the first client's, which then waits on, and A's
    stays).  Several rounds: the two tries' order varies."""
    real, port, acceptors = redis_and_shardkv_k12
    (expected,) = _two_blocked(real, 1, 1)
    assert _two_blocked(port, acceptors, 10) == [expected] * 10
