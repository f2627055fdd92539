"""The shard's command code, run directly with a fake clock (no processes)."""

import pytest

from shardkv.protocol import wire
from shardkv.protocol.resp import NULL_ARRAY, Error, encode
from shardkv.protocol.router import key_slot
from shardkv.worker import scripting
from shardkv.worker.clock import FakeClock
from shardkv.worker.shard import Shard
from shardkv.worker.sweeper import Sweeper


@pytest.fixture
def shard():
    return Shard(0, 1, FakeClock())


def run(shard: Shard, *args):
    shard.keyspace.tick()
    return shard.execute([a if isinstance(a, bytes) else str(a).encode() for a in args])


def test_set_get_del(shard):
    assert run(shard, "SET", "k", "v") == "OK"
    assert run(shard, "GET", "k") == b"v"
    assert run(shard, "DEL", "k", "nope") == 1
    assert run(shard, "GET", "k") is None


def test_set_px_expires_lazily(shard):
    clock = shard.keyspace.clock
    run(shard, "SET", "k", "v", "PX", 1500)
    assert run(shard, "PTTL", "k") == 1500
    clock.advance(1499)
    assert run(shard, "GET", "k") == b"v"
    clock.advance(1)
    assert run(shard, "GET", "k") is None
    assert shard.keyspace.dbsize() == 0


def test_set_options(shard):
    assert run(shard, "SET", "k", "1", "NX") == "OK"
    assert run(shard, "SET", "k", "2", "NX") is None
    assert run(shard, "SET", "k", "3", "XX", "GET") == b"1"
    assert run(shard, "SET", "missing", "3", "XX") is None
    assert run(shard, "SET", "k", "4", "NX", "XX") == Error("ERR syntax error")
    assert run(shard, "SET", "k", "4", "EX", "0") == Error("ERR invalid expire time in 'set' command")
    assert run(shard, "SET", "k", "4", "EX", "x") == Error("ERR value is not an integer or out of range")
    run(shard, "SET", "k", "5", "EX", 100)
    run(shard, "SET", "k", "6", "KEEPTTL")
    assert run(shard, "TTL", "k") == 100
    run(shard, "SET", "k", "7")
    assert run(shard, "TTL", "k") == -1


def test_absolute_expiry(shard):
    now = shard.keyspace.clock.now_ms()
    run(shard, "SET", "k", "v", "PXAT", now + 10_000)
    assert run(shard, "PEXPIRETIME", "k") == now + 10_000
    run(shard, "SET", "k", "v", "EXAT", now // 1000 + 5)
    assert run(shard, "EXPIRETIME", "k") == now // 1000 + 5


def test_expire_flags(shard):
    run(shard, "SET", "k", "v")
    assert run(shard, "EXPIRE", "k", 100, "XX") == 0
    assert run(shard, "EXPIRE", "k", 100, "NX") == 1
    assert run(shard, "EXPIRE", "k", 50, "GT") == 0
    assert run(shard, "EXPIRE", "k", 200, "GT") == 1
    assert run(shard, "EXPIRE", "k", 300, "LT") == 0
    assert run(shard, "TTL", "k") == 200
    assert run(shard, "PERSIST", "k") == 1
    assert run(shard, "TTL", "k") == -1
    assert run(shard, "EXPIRE", "k", -1) == 1
    assert run(shard, "EXISTS", "k") == 0
    assert run(shard, "TTL", "k") == -2


def test_incr_and_types(shard):
    assert run(shard, "INCR", "n") == 1
    assert run(shard, "INCRBY", "n", 41) == 42
    assert run(shard, "DECR", "n") == 41
    run(shard, "SET", "s", "abc")
    assert run(shard, "INCR", "s") == Error("ERR value is not an integer or out of range")
    run(shard, "SET", "big", str(2**63 - 1))
    assert run(shard, "INCR", "big") == Error("ERR increment or decrement would overflow")


def test_mset_mget_keys_dbsize(shard):
    run(shard, "MSET", "a", 1, "b", 2, "c", 3)
    assert run(shard, "MGET", "a", "x", "c") == [b"1", None, b"3"]
    assert sorted(run(shard, "KEYS", "*")) == [b"a", b"b", b"c"]
    assert run(shard, "KEYS", "[ab]") == [b"a", b"b"] or sorted(run(shard, "KEYS", "[ab]")) == [b"a", b"b"]
    assert run(shard, "DBSIZE") == 3
    assert run(shard, "FLUSHALL") == "OK"
    assert run(shard, "DBSIZE") == 0


def test_batch_round_trip(shard):
    payload = wire.batch_payload(
        [
            wire.entry_header(0),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
            wire.entry_header(wire.FLAG_RESP3),
            b"*2\r\n$3\r\nGET\r\n$4\r\nnone\r\n",
            wire.entry_header(wire.FLAG_PART),
            b"*2\r\n$6\r\nEXISTS\r\n$1\r\nk\r\n",
        ]
    )
    replies = wire.decode_replies(shard.run_batch(payload))
    assert replies[:2] == [b"+OK\r\n", b"_\r\n"]
    assert wire.decode_part(replies[2]) == 1


def test_decode_batch_reads_every_entry_with_either_decoder():
    """hiredis reads the items with no Python loop: a header 0 (which
    equals False, hiredis's usual "no more") must not end the batch."""
    payload = wire.batch_payload(
        [
            wire.entry_header(0),
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
            wire.entry_header(wire.FLAG_RESP3),
            b"*1\r\n$4\r\nPING\r\n",
            wire.entry_header(0),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n",
        ]
    )
    expected = [0, [b"GET", b"k"], 1, [b"PING"], 0, [b"SET", b"k", b""]]
    assert wire.decode_batch(payload) == expected
    assert wire._decode_batch_py(payload) == expected


@pytest.mark.parametrize(
    "args",
    [
        [b"SET", b"k", b":1"],  # an argument that starts with a colon
        [b"SET", b":1:name", b"v"],  # a key that does
        [b"SET", b"k", b"a\r\n:1\r\n*1\r\n$1\r\nx\r\n"],  # one that holds entries' text
        [b"SET", b":", b"\r\n:"],
        [b"SET", b"k", b"\r"],  # CRLF, colon across an argument's end and the next header
        [b"SET", b"big", b"\r\n:0\r\n" * 200_000],  # a big value full of headers' text
    ],
)
def test_decode_batch_reads_an_argument_that_looks_like_a_header(args):
    """The B payload counts its items: arguments that hold headers' text,
    or start with a colon, read as they were sent, with either decoder."""
    entries = [0, [b"GET", b"a"], 0, args, wire.FLAG_RESP3, [b"GET", b"b"]]
    payload = wire.encode_batch(entries)
    assert payload.startswith(b"B*6\r\n")
    assert wire.decode_batch(payload) == entries
    assert wire._decode_batch_py(payload) == entries
    assert wire.decode_batch(wire.encode_batch([])) == []


def test_decode_batch_refuses_a_payload_cut_short():
    payload = wire.encode_batch([0, [b"GET", b"a"], 0, [b"GET", b"b"]])
    with pytest.raises(wire.BadMessage):
        wire.decode_batch(payload[:-3])


@pytest.mark.parametrize("decode", [wire.decode_batch, wire._decode_batch_py])
def test_decode_batch_refuses_a_count_that_leaves_items_unread(decode):
    """A count too small would hand the later entries' replies to the wrong
    commands: the frame is refused instead."""
    payload = wire.encode_batch([0, [b"GET", b"a"], 0, [b"GET", b"b"]])
    assert payload.startswith(b"B*4\r\n")
    with pytest.raises(wire.BadMessage):
        decode(b"B*2\r\n" + payload[len(b"B*4\r\n") :])


def test_sweeper_removes_expired_keys_without_reads(shard):
    ks = shard.keyspace
    clock = ks.clock
    ks.tick()
    for i in range(10_000):
        run(shard, "SET", "k%d" % i, "v", "PX", 100)
    for i in range(100):
        run(shard, "SET", "keep%d" % i, "v")
    clock.advance(101)
    sweeper = Sweeper(ks)
    for _ in range(50):
        sweeper.cycle(budget_s=1.0)
        if ks.nvolatile == 0:
            break
    assert ks.nvolatile == 0
    assert ks.dbsize() == 100
    assert ks.expired_keys == 10_000


def test_sweeper_stops_when_few_keys_have_expired(shard):
    ks = shard.keyspace
    for i in range(1000):
        run(shard, "SET", "k%d" % i, "v", "PX", 10_000 if i % 10 else 100)
    ks.clock.advance(200)
    deleted = Sweeper(ks).cycle(budget_s=1.0)
    # Only a tenth had expired, so one sample of 20 keys was taken and the
    # cycle stopped there instead of walking the whole keyspace.
    assert deleted <= 20
    assert ks.nvolatile >= 980


def test_sweeper_finds_a_lone_expired_key_in_one_cycle(shard):
    # Redis's active expiry walks a table of the keys with a TTL alone, so a
    # few such keys are all seen in each cycle: a lone key that expired goes
    # (with its "expired" event, for client-side caching) in the next cycle.
    # The sweeper walks slots, thousands of them empty: a sample goes once
    # round them if need be, wherever its cursor stands.
    ks = shard.keyspace
    slot = key_slot(b"k")
    sweeper = Sweeper(ks)
    for cursor in (ks.slots.start, slot, slot + 1, ks.slots.stop - 1):
        run(shard, "SET", "k", "v", "PX", 100)
        sweeper.cursor = cursor
        assert sweeper.cycle(budget_s=1.0) == 0  # not due yet
        ks.clock.advance(100)
        assert sweeper.cycle(budget_s=1.0) == 1
        assert ks.nvolatile == 0
        assert ks.dbsize() == 0


def test_sweeper_finds_keys_of_swapped_databases(shard):
    # The slots that may hold keys with a TTL are marked per database: the
    # marks go with the keys when SWAPDB swaps them.
    ks = shard.keyspace
    ks.select(3)
    run(shard, "SET", "k", "v", "PX", 100)
    ks.select(0)
    run(shard, "SET", "other", "v", "PX", 100)
    assert run(shard, "SWAPDB", 0, 3) == "OK"
    ks.clock.advance(100)
    assert Sweeper(ks).cycle(budget_s=1.0) == 2
    assert ks.total_volatile() == 0
    assert ks.total_keys() == 0


def _batch(*entries: tuple[int, list[bytes]]) -> bytes:
    parts = []
    for token, args in entries:
        parts.append(wire.entry_header(0, token))
        parts.append(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return wire.batch_payload(parts)


def test_unblock_after_a_push_in_its_batch_finds_the_waiter_served(shard):
    """__unblock serves what the commands before it made ready first, as
    Redis serves a blocked client right after the write: 0, and the waiter's
    reply is in its W frame (the element is delivered, not dropped)."""
    assert wire.decode_replies(shard.run_batch(_batch((7, [b"BLPOP", b"k", b"0"])))) == [b""]
    replies = wire.decode_replies(
        shard.run_batch(_batch((0, [b"LPUSH", b"k", b"x"]), (0, [wire.Verb.UNBLOCK, b"7", b"0", b"1"])))
    )
    assert replies == [b":1\r\n", b":0\r\n"]
    assert shard.waiters.wakes == [(0, wire.encode_wake(7, b"*2\r\n$1\r\nk\r\n$1\r\nx\r\n"))]
    assert run(shard, "EXISTS", "k") == 0


def test_a_bwait_claims_its_elements_until_its_bdone(shard):
    """A notified ``__bwait`` counts as taking its count of elements until
    ``__bdone``: a one-shard BRPOPLPUSH with a wrong-typed destination
    behind it keeps waiting until then, and gets WRONGTYPE once the claim
    is done with the element still there (``__bclaim`` says what the
    notification was, and changes nothing)."""
    assert run(shard, "SET", "bad", "s") == "OK"
    bwait = [wire.Verb.BWAIT, b"blmove", b"0", b"0", b"1", b"src"]
    assert wire.decode_replies(shard.run_batch(_batch((5, bwait)))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((6, [b"BRPOPLPUSH", b"src", b"bad", b"0"])))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"LPUSH", b"src", b"x"])))) == [b":1\r\n"]
    notification = b"*2\r\n:1\r\n$3\r\nsrc\r\n"  # [BWAIT_READY, the key]
    assert shard.waiters.wakes == [(0, wire.encode_wake(5, notification))]
    shard.waiters.wakes.clear()
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.BCLAIM, b"5"])))) == [notification]
    assert shard.waiters.wakes == []
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.BDONE, b"5"])))) == [notification]
    wrongtype = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    assert shard.waiters.wakes == [(0, wire.encode_wake(6, wrongtype))]
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.BDONE, b"5"])))) == [b":0\r\n"]
    assert run(shard, "LLEN", "src") == 1 and not shard.waiters.claimed


def test_a_claimed_bwait_keeps_its_place_under_a_new_token(shard):
    """``__bdone <token> <new>`` of a ``__bwait`` notified BWAIT_CLAIMED
    (nothing left at its turn) has it wait on under ``new``, before a
    one-shard waiter that blocked after it: the next push notifies it, not
    the BLPOP.  ``__bclaim <token> keep`` keeps one still waiting, and
    ``__bdone`` of a BWAIT_READY claim forgets it, as before (issue 22)."""
    first = [wire.Verb.BWAIT, b"blmove", b"0", b"0", b"1", b"src"]
    second = [wire.Verb.BWAIT, b"blmove", b"0", b"0", b"1", b"src"]
    assert wire.decode_replies(shard.run_batch(_batch((5, first), (6, second)))) == [b"", b""]
    assert wire.decode_replies(shard.run_batch(_batch((7, [b"BLPOP", b"src", b"0"])))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"RPUSH", b"src", b"a"])))) == [b":1\r\n"]
    ready, claimed = b"*2\r\n:1\r\n$3\r\nsrc\r\n", b"*2\r\n:2\r\n$3\r\nsrc\r\n"
    assert shard.waiters.wakes == [(0, wire.encode_wake(5, ready)), (0, wire.encode_wake(6, claimed))]
    shard.waiters.wakes.clear()
    assert run(shard, "LPOP", "src") == b"a"  # (the first's try)
    done = [(0, [wire.Verb.BDONE, b"5", b"15"]), (0, [wire.Verb.BDONE, b"6", b"16"])]
    assert wire.decode_replies(shard.run_batch(_batch(*done))) == [ready, claimed]
    assert (0, 15) not in shard.waiters.by_token and (0, 16) in shard.waiters.by_token
    keep = [wire.Verb.BCLAIM, b"16", b"keep"]
    assert wire.decode_replies(shard.run_batch(_batch((0, keep)))) == [b":0\r\n"]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"RPUSH", b"src", b"b"])))) == [b":1\r\n"]
    assert shard.waiters.wakes == [(0, wire.encode_wake(16, ready))]  # not the BLPOP's
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.BDONE, b"16"])))) == [ready]
    assert shard.waiters.wakes[1:] == [(0, wire.encode_wake(7, b"*2\r\n$3\r\nsrc\r\n$1\r\nb\r\n"))]
    assert not shard.waiters.by_token and not shard.waiters.claimed


def test_a_bdone_with_a_new_token_of_no_bwait_says_so(shard):
    """``__bdone <token> <new>`` of a ``__bwait`` still waiting has it wait
    on under ``new`` (0); of one the shard no longer has (it timed out,
    its wake on its way), -1: nothing waits under ``new``, and the
    acceptor sends a new ``__bwait`` once the try has run (issue 22)."""
    bwait = [wire.Verb.BWAIT, b"blmove", b"0", b"0", b"1", b"src"]
    assert wire.decode_replies(shard.run_batch(_batch((5, bwait)))) == [b""]
    renew = [wire.Verb.BDONE, b"5", b"15"]
    assert wire.decode_replies(shard.run_batch(_batch((0, renew)))) == [b":0\r\n"]
    assert (0, 15) in shard.waiters.by_token and (0, 5) not in shard.waiters.by_token
    gone = [wire.Verb.BDONE, b"5", b"25"]
    assert wire.decode_replies(shard.run_batch(_batch((0, gone)))) == [b":-1\r\n"]
    assert (0, 25) not in shard.waiters.by_token
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.BDONE, b"5"])))) == [b":0\r\n"]


def _bpop(*keys: bytes, command: tuple[bytes, ...] = (b"BLPOP", b"k", b"0"), at: int = 1) -> list[bytes]:
    """``__bpop`` of a cross-shard wait on ``keys`` (no timeout), popping with ``command``."""
    return [wire.Verb.BPOP, b"0", b"0", b"1", b"%d" % at, b"%d" % len(keys), *keys, *command]


def _served(key: bytes, reply: bytes) -> bytes:
    return b"*3\r\n:3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(reply), reply)


def _in_place(shard: Shard, verdicts: list[bool | None]) -> list[tuple[int, int, bytes]]:
    """Let ``shard`` serve ``__bpop``s in place, each verdict the next of
    ``verdicts``; what it sent meanwhile: (pipe, token, wake body) each, and
    what the key held when the verdict was asked for (see Waiters.pop_for)."""
    sent: list = []

    def send(frame: bytes, logged: object = None) -> None:
        sent.append(("wake", *wire.decode_wake(frame)))

    def recv_verdict(pipe: int, token: int, bound: float) -> bool | None:
        sent.append(("verdict", pipe, token))
        return verdicts.pop(0)

    shard.send = send
    shard.recv_verdict = recv_verdict
    return sent


def test_a_bpop_is_served_in_place_as_the_push_ends(shard):
    """A ``__bpop`` is served in its turn by the push that made its key
    ready, before the pusher's next command (here DEL, which finds the key
    gone, as in Redis): its wake carries the reply, the shard waits there
    for the verdict, and taken, it logs the pop and says so (``:1``)."""
    sent = _in_place(shard, [True])
    logged: list = []
    shard.waiters.record = lambda command, value: logged.append(command)
    assert wire.decode_replies(shard.run_batch(_batch((5, _bpop(b"k"))))) == [b""]
    batch = _batch((0, [b"RPUSH", b"k", b"x"]), (0, [b"DEL", b"k"]))
    assert wire.decode_replies(shard.run_batch(batch)) == [b":1\r\n", b":0\r\n"]
    assert sent == [
        ("wake", 5, _served(b"k", b"*2\r\n$1\r\nk\r\n$1\r\nx\r\n")),
        ("verdict", 0, 5),
        ("wake", 5, b":1\r\n"),
    ]
    assert logged == [[b"BLPOP", b"k", b"0"]] and not shard.waiters.held
    assert run(shard, "EXISTS", "k") == 0


def test_a_bpop_is_notified_ready_when_its_key_can_serve_it_as_it_comes(shard):
    """A push through another acceptor may reach the shard between the
    client's try and its ``__bpop``: the ``__bpop`` answers ``BWAIT_READY``
    at once (its client tries), popping nothing."""
    _in_place(shard, [])
    assert run(shard, "RPUSH", "k", "x", "y") == 2
    assert wire.decode_replies(shard.run_batch(_batch((5, _bpop(b"k"))))) == [b"*2\r\n:1\r\n$1\r\nk\r\n"]
    assert run(shard, "LRANGE", "k", 0, -1) == [b"x", b"y"]


def test_what_a_bpop_popped_goes_back_unseen_unless_taken(shard):
    """A verdict not to take (another shard served the client, or it went
    away), or none (the bound passed, the pipe lost): what was popped goes
    back to the key's head, nothing logged, and the next waiter gets it at once; a shard that is not free to
    wait (no pipe to wait on) notifies the ``__bpop`` as a ``__bwait``."""
    sent = _in_place(shard, [False, None])
    logged: list = []
    shard.waiters.record = lambda command, value: logged.append(command)
    command = (b"BLMPOP", b"0", b"1", b"k", b"LEFT", b"COUNT", b"2")
    assert wire.decode_replies(shard.run_batch(_batch((5, _bpop(b"k", command=command, at=3))))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((6, [b"BLPOP", b"k", b"0"])))) == [b""]
    batch = _batch((0, [b"RPUSH", b"k", b"a", b"b"]), (0, [b"LRANGE", b"k", b"0", b"-1"]))
    assert wire.decode_replies(shard.run_batch(batch)) == [b":2\r\n", b"*1\r\n$1\r\nb\r\n"]
    assert sent[:2] == [
        ("wake", 5, _served(b"k", b"*2\r\n$1\r\nk\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n")),
        ("verdict", 0, 5),
    ]
    assert shard.waiters.wakes[-1] == (0, wire.encode_wake(6, b"*2\r\n$1\r\nk\r\n$1\r\na\r\n"))
    assert logged == [[b"BLPOP", b"k", b"0"]]  # the second waiter's pop alone
    # A sorted set's member goes back with its score.
    sent.clear()
    bzpopmax = _bpop(b"w", command=(b"BZPOPMAX", b"w", b"0"))
    assert wire.decode_replies(shard.run_batch(_batch((8, bzpopmax)))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"ZADD", b"w", b"1.5", b"m"])))) == [b":1\r\n"]
    assert [s[0] for s in sent][-2:] == ["wake", "verdict"]  # (after the wake of 6 before it)
    assert run(shard, "ZSCORE", "w", "m") == 1.5 and not shard.waiters.held
    # Not free: notified as a __bwait (its client tries).
    shard.recv_verdict = None
    assert wire.decode_replies(shard.run_batch(_batch((9, _bpop(b"q"))))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"RPUSH", b"q", b"d"])))) == [b":1\r\n"]
    assert shard.waiters.wakes[-1] == (0, wire.encode_wake(9, b"*2\r\n:1\r\n$1\r\nq\r\n"))
    assert run(shard, "LRANGE", "q", 0, -1) == [b"d"]


def test_a_pop_given_back_leaves_no_count_for_the_next_write(shard):
    """A ``__bpop``'s pop of two, not taken, goes back unlogged: neither the
    pop's count nor the push back's (ks.changes, 2) is left for the next
    write to count as its own."""
    _in_place(shard, [False])
    command = (b"BLMPOP", b"0", b"1", b"k", b"LEFT", b"COUNT", b"2")
    assert wire.decode_replies(shard.run_batch(_batch((5, _bpop(b"k", command=command, at=3))))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"RPUSH", b"k", b"a", b"b"])))) == [b":2\r\n"]
    assert run(shard, "LRANGE", "k", 0, -1) == [b"a", b"b"]
    assert shard.keyspace.changes is None


def test_a_rank_goes_with_the_ready_keys_of_a_pipe_lost(shard):
    """The rank a cross-shard operation gave a ready key (see
    Waiters.mark_keys) goes when its acceptor's pipe is lost before the
    key served, with the ready keys: a later plain push's notification
    names no operation (a stale one would send its client asking the
    other shards, and compared with that operation's other ranks)."""
    bwait = [wire.Verb.BWAIT, b"blpop", b"0", b"0", b"1", b"k"]
    assert wire.decode_replies(shard.run_batch(_batch((5, bwait)))) == [b""]
    shard.waiters.mark_keys([b"k"], 9, {b"k": 0})  # committed, not served yet
    shard.waiters.clear()
    assert not shard.waiters.ranks
    assert wire.decode_replies(shard.run_batch(_batch((6, bwait)))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"LPUSH", b"k", b"x"])))) == [b":1\r\n"]
    assert shard.waiters.wakes == [(0, wire.encode_wake(6, b"*2\r\n:1\r\n$1\r\nk\r\n"))]


def test_unblock_forgets_a_waiter_that_still_waits(shard):
    assert wire.decode_replies(shard.run_batch(_batch((8, [b"BLPOP", b"k", b"0"])))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.UNBLOCK, b"8", b"0", b"1"])))) == [
        b":1\r\n"
    ]
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.UNBLOCK, b"8", b"0", b"2"])))) == [
        b":0\r\n"
    ]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"LPUSH", b"k", b"x"])))) == [b":1\r\n"]
    assert shard.waiters.wakes == []
    assert run(shard, "LLEN", "k") == 1


def test_unblock_inside_exec_serves_nothing_first(shard):
    """Inside EXEC (``after`` 0, behind ``__defer``) the push before the
    ``__unblock`` in the batch serves nobody first, as Redis serves only
    after the whole EXEC: 1, and the element stays.  A ``__serve`` before
    the transaction serves what came before it."""
    assert wire.decode_replies(shard.run_batch(_batch((7, [b"BLPOP", b"k", b"0"])))) == [b""]
    replies = wire.decode_replies(
        shard.run_batch(
            _batch(
                (0, [wire.Verb.DEFER]),
                (0, [b"LPUSH", b"k", b"x"]),
                (0, [wire.Verb.UNBLOCK, b"7", b"0", b"1", b"0"]),
            )
        )
    )
    assert replies == [b"+OK\r\n", b":1\r\n", b":1\r\n"]
    assert shard.waiters.wakes == []
    assert run(shard, "LLEN", "k") == 1
    assert wire.decode_replies(shard.run_batch(_batch((8, [b"BLPOP", b"j", b"0"])))) == [b""]
    replies = wire.decode_replies(
        shard.run_batch(
            _batch(
                (0, [b"LPUSH", b"j", b"y"]),
                (0, [wire.Verb.SERVE]),
                (0, [wire.Verb.DEFER]),
                (0, [b"LPUSH", b"j", b"z"]),
                (0, [wire.Verb.UNBLOCK, b"8", b"0", b"2", b"0"]),
            )
        )
    )
    assert replies == [b":1\r\n", b"+OK\r\n", b"+OK\r\n", b":1\r\n", b":0\r\n"]
    assert shard.waiters.wakes == [(0, wire.encode_wake(8, b"*2\r\n$1\r\nj\r\n$1\r\ny\r\n"))]


def test_a_push_serves_before_the_next_command_of_its_batch(shard):
    """A waiter is served right after the command that made its key
    ready, as Redis serves after each command: the LPOP behind the push
    finds nothing.  Behind ``__defer`` (a transaction's commands) nobody
    is served until ``__serve``; the batch's end serves too, and ends the
    ``__defer``."""
    assert wire.decode_replies(shard.run_batch(_batch((7, [b"BLPOP", b"k", b"0"])))) == [b""]
    replies = wire.decode_replies(shard.run_batch(_batch((0, [b"LPUSH", b"k", b"a"]), (0, [b"LPOP", b"k"]))))
    assert replies == [b":1\r\n", b"$-1\r\n"]
    assert shard.waiters.wakes == [(0, wire.encode_wake(7, b"*2\r\n$1\r\nk\r\n$1\r\na\r\n"))]
    shard.waiters.wakes.clear()
    assert wire.decode_replies(shard.run_batch(_batch((8, [b"BLPOP", b"k", b"0"])))) == [b""]
    batch = _batch(
        (0, [wire.Verb.DEFER]),
        (0, [b"LPUSH", b"k", b"b", b"c"]),
        (0, [b"LPOP", b"k"]),
        (0, [wire.Verb.SERVE]),
        (0, [b"LLEN", b"k"]),
    )
    assert wire.decode_replies(shard.run_batch(batch)) == [
        b"+OK\r\n",
        b":2\r\n",
        b"$1\r\nc\r\n",
        b"+OK\r\n",
        b":0\r\n",
    ]
    assert shard.waiters.wakes == [(0, wire.encode_wake(8, b"*2\r\n$1\r\nk\r\n$1\r\nb\r\n"))]
    shard.waiters.wakes.clear()
    assert wire.decode_replies(shard.run_batch(_batch((9, [b"BLPOP", b"k", b"0"])))) == [b""]
    assert wire.decode_replies(
        shard.run_batch(_batch((0, [wire.Verb.DEFER]), (0, [b"LPUSH", b"k", b"d"])))
    ) == [
        b"+OK\r\n",
        b":1\r\n",
    ]
    assert shard.waiters.wakes == [(0, wire.encode_wake(9, b"*2\r\n$1\r\nk\r\n$1\r\nd\r\n"))]
    assert not shard.waiters.deferred


def test_unblock_after_an_operation_runs_only_if_it_committed(shard):
    """An EXEC's ``__unblock`` behind its ``__park`` (``after``, the
    operation's id): -2 and nothing done unless that operation committed."""
    assert wire.decode_replies(shard.run_batch(_batch((7, [b"BLPOP", b"k", b"0"])))) == [b""]
    shard.waiters.committed = 41  # another operation
    assert wire.decode_replies(
        shard.run_batch(_batch((0, [wire.Verb.UNBLOCK, b"7", b"0", b"1", b"42"])))
    ) == [b":-2\r\n"]
    shard.waiters.committed = 42
    assert wire.decode_replies(
        shard.run_batch(_batch((0, [wire.Verb.UNBLOCK, b"7", b"0", b"2", b"42"])))
    ) == [b":1\r\n"]


@pytest.mark.parametrize("error", [False, True])
def test_unblock_of_another_pipes_waiter_wakes_it_there(error):
    """Inside EXEC, with several acceptors, the ``__unblock`` of another
    acceptor's waiter comes on the EXEC's pipe: the null (or -UNBLOCKED)
    goes to the waiter's pipe as a wake."""
    shard = Shard(0, 2, FakeClock())
    shard.keyspace.pipe = 1
    assert wire.decode_replies(shard.run_batch(_batch((7, [b"BLPOP", b"k", b"0"])))) == [b""]
    shard.keyspace.pipe = 0
    unblock = [wire.Verb.UNBLOCK, b"7", b"0", b"1", b"0", b"1", b"1" if error else b"0"]
    batch = _batch((0, [wire.Verb.DEFER]), (0, [b"LPUSH", b"k", b"x"]), (0, unblock))
    assert wire.decode_replies(shard.run_batch(batch)) == [b"+OK\r\n", b":1\r\n", b":1\r\n"]
    body = b"-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n" if error else b"*-1\r\n"
    assert shard.waiters.wakes == [(1, wire.encode_wake(7, body))]
    assert run(shard, "LLEN", "k") == 1


def test_unblock_sent_before_a_script_went_busy_is_refused(shard):
    """An ``__unblock`` whose acceptor knew of fewer busy scripts than the
    shard had when it runs was answered -BUSY by the acceptor already
    (Redis refuses CLIENT UNBLOCK during a busy script): -1, the waiter
    still waits."""
    assert wire.decode_replies(shard.run_batch(_batch((9, [b"BLPOP", b"k", b"0"])))) == [b""]
    shard.waiters.busy_scripts = 1  # a script went busy meanwhile
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.UNBLOCK, b"9", b"0", b"1"])))) == [
        b":-1\r\n"
    ]
    assert shard.waiters.unblocks_run == {0: 1}
    assert wire.decode_replies(shard.run_batch(_batch((0, [wire.Verb.UNBLOCK, b"9", b"1", b"2"])))) == [
        b":1\r\n"
    ]


def test_script_read_counts_as_a_client_read():
    """A script's redis.call (and redis.pcall) of a single-key read runs
    as Shard.execute_read runs it, and counts (calls, failed calls,
    errorstats, keyspace hits and misses) as the same command sent by a
    client counts."""
    reads = [["GET", "s"], ["GET", "nokey"], ["GET", "h"], ["HGET", "h", "f"], ["HGET", "s", "f"]]

    def figures(in_script: bool) -> tuple:
        shard = Shard(0, 1, FakeClock())
        ks = shard.keyspace
        run(shard, "SET", "s", "v")
        run(shard, "HSET", "h", "f", "v")
        call = ks.scripts.load(b"return redis.call(ARGV[1], KEYS[1], unpack(ARGV, 2))")
        pcall = ks.scripts.load(b"return redis.pcall(ARGV[1], KEYS[1], unpack(ARGV, 2))")
        for args in reads:
            if in_script:
                for sha in (call, pcall):
                    run(shard, "EVALSHA", sha, 1, args[1], args[0], *args[2:])
            else:
                run(shard, *args)
                run(shard, *args)
        commands, errorstats, _ = shard.stats.report()
        counts = {name: (commands[name][0], commands[name][3]) for name in ("get", "hget")}
        return counts, errorstats, ks.hits, ks.misses

    assert figures(True) == figures(False)


@pytest.mark.parametrize("nshards", [1, 2])
def test_script_get_in_a_batch_counts_as_a_client_get(nshards):
    """EVALSHA of ``return redis.call('get', KEYS[1])`` in a ``B`` batch
    (Shard.execute_script, and _call_raise's GET run inline) answers and
    counts as a client's GET in a batch (run_batch's inline GET) and as
    the same EVALSHA run by Shard.execute: the reply, keyspace hits and
    misses, expired keys, access clocks, commandstats, errorstats; for a
    string, a missing key, an expired key, a string changed in place, and
    another type."""

    def figures(how: str) -> tuple:
        clock = FakeClock()
        shard = Shard(0, nshards, clock)
        ks = shard.keyspace
        own = [k for k in (b"k%d" % i for i in range(200)) if key_slot(k) in shard.scripts.own][:5]
        s, missing, gone, grown, h = own
        run(shard, "SET", s, "v")
        run(shard, "SET", gone, "v", "PX", 10)
        run(shard, "SET", grown, "v")
        run(shard, "APPEND", grown, "w")  # (a string changed in place)
        run(shard, "HSET", h, "f", "v")
        sha = ks.scripts.load(b"return redis.call('get', KEYS[1])")
        clock.advance(50)
        if how == "execute":
            replies = [run(shard, "EVALSHA", sha, 1, k) for k in own]
        else:
            command = (lambda k: [b"GET", k]) if how == "get" else (lambda k: [b"EVALSHA", sha, b"1", k])
            payload = wire.encode_batch([item for k in own for item in (0, command(k))])
            replies = [shard.run_batch(payload)]
        commands, errorstats, _ = shard.stats.report()
        counts = {name: (commands[name][0], commands[name][3]) for name in ("get",) if name in commands}
        clocks = [ks.clocks.get(k) for k in own]
        return replies, counts, errorstats, ks.hits, ks.misses, ks.expired_keys, clocks

    batch_script = figures("script")
    batch_get = figures("get")
    assert batch_script[1:] == batch_get[1:]
    replies = (
        b"$1\r\nv\r\n$-1\r\n$-1\r\n$2\r\nvw\r\n-WRONGTYPE Operation against a key holding the wrong kind"
    )
    assert replies in batch_script[0][0] and replies in batch_get[0][0]
    executed = figures("execute")
    assert executed[1:] == batch_script[1:]


def test_batch_evalsha_takes_the_script_cached_under_its_sha1_now():
    """Shard.execute_script takes the script it ran last again for the same
    SHA1 without a lookup (Engine.one_sha): two scripts in turn each run
    their own, and after SCRIPT FLUSH the same SHA1 answers -NOSCRIPT,
    then runs again once loaded again."""
    shard = Shard(0, 1, FakeClock())
    ks = shard.keyspace
    run(shard, "SET", "k", "v")
    engine = ks.scripts
    get = engine.load(b"return redis.call('get', KEYS[1])")
    length = engine.load(b"return #KEYS[1]")

    def batch(*shas: bytes) -> list[bytes]:
        payload = wire.encode_batch([item for sha in shas for item in (0, [b"EVALSHA", sha, b"1", b"k"])])
        return wire.decode_replies(shard.run_batch(payload))

    assert batch(get, get, length, get) == [b"$1\r\nv\r\n", b"$1\r\nv\r\n", b":1\r\n", b"$1\r\nv\r\n"]
    engine.flush()
    noscript = b"-NOSCRIPT No matching script. Please use EVAL.\r\n"
    assert batch(get, length) == [noscript, noscript]
    assert engine.load(b"return redis.call('get', KEYS[1])") == get
    assert batch(get, length, get) == [b"$1\r\nv\r\n", noscript, b"$1\r\nv\r\n"]


@pytest.mark.parametrize("nshards", [1, 2])
def test_script_get_of_a_missing_key_runs_inline(nshards):
    """A script's GET of a key of its shard that is not there (a lock's
    release that finds no lock) runs in _call_raise's one step, as a string
    does (no handler, no Keyspace.lookup), and counts a keyspace miss and
    GET's call as a client's GET of it does."""
    shard = Shard(0, nshards, FakeClock())
    ks = shard.keyspace
    key = next(k for k in (b"k%d" % i for i in range(200)) if key_slot(k) in shard.scripts.own)
    sha = ks.scripts.load(b"if redis.call('get', KEYS[1]) == ARGV[1] then return 1 end return 0")
    payload = wire.encode_batch([0, [b"EVALSHA", sha, b"1", key, b"token"]])
    assert wire.decode_replies(shard.run_batch(payload)) == [b":0\r\n"]  # (GET's entry cached)
    lookups = []
    lookup = ks.lookup
    ks.lookup = lambda k: lookups.append(k) or lookup(k)  # type: ignore[method-assign]
    assert wire.decode_replies(shard.run_batch(payload)) == [b":0\r\n"]
    assert lookups == []
    assert (ks.hits, ks.misses) == (0, 2)
    assert shard.stats.report()[0]["get"][0] == 2


@pytest.mark.parametrize("nshards", [1, 2])
def test_script_spellings_in_a_batch_answer_as_execute(nshards):
    """Shard.execute_script runs ``EVALSHA sha 1 key`` of a cached script
    itself (not through the EVALSHA handler): EVALSHA_RO's refusal of a
    write, a SHA1 in capitals, an unknown one, an argument, a key of
    another shard (escaping across shards) and a failed redis.call whose
    error table the prelude holds for the next run answer in a batch as
    Shard.execute answers them, with the same counts."""

    def replies(how: str) -> tuple:
        shard = Shard(0, nshards, FakeClock())
        ks = shard.keyspace
        names = [b"k%d" % i for i in range(200)]
        own = next(k for k in names if key_slot(k) in shard.scripts.own)
        write = ks.scripts.load(b"return redis.call('set', KEYS[1], 'w')")
        read = ks.scripts.load(b"return redis.call('get', KEYS[1])")
        fail = ks.scripts.load(b"return redis.call('incr', KEYS[1])")
        caught = ks.scripts.load(
            b"local ok, e = pcall(redis.call, 'incr', KEYS[1]) return {ok and 1 or 0, e.err}"
        )
        commands = [
            [b"EVALSHA", write, b"1", own],
            [b"EVALSHA_RO", write, b"1", own],
            [b"evalsha_ro", read, b"1", own],
            [b"EVALSHA", read.upper(), b"1", own],
            [b"EVALSHA", b"0" * 40, b"1", own],
            [b"EVALSHA", read, b"1", own, b"arg"],
            [b"EVALSHA", fail, b"1", own],
            [b"EVALSHA", read, b"1", own],
            [b"EVALSHA", caught, b"1", own],
            [b"evalsha", read, b"1", own],
        ]
        if nshards > 1:
            other = next(k for k in names if key_slot(k) not in shard.scripts.own)
            commands.append([b"EVALSHA", read, b"1", other])
        if how == "execute":
            out = []
            for c in commands:
                value = run(shard, *c)
                out.append(value.message if isinstance(value, Error) else value)
        else:
            out = [shard.run_batch(wire.encode_batch([item for c in commands for item in (0, c)]))]
        rows, errorstats, _ = shard.stats.report()
        counts = {name: (row[0], row[2], row[3]) for name, row in rows.items()}  # (not the times)
        return out, counts, errorstats, ks.hits, ks.misses

    executed = replies("execute")
    batched = replies("batch")
    assert executed[1:] == batched[1:]
    body = batched[0][0]
    for value in executed[0]:
        if isinstance(value, str):
            assert value.encode() in body, value
    assert b"-ERR Write commands are not allowed from read-only scripts" in body
    assert b"-NOSCRIPT" in body
    assert body.count(b"$1\r\nw\r\n") == 5
    assert (b"SHARDKV-CROSS" in body) == (nshards > 1)


@pytest.mark.parametrize("nshards", [1, 2])
def test_a_run_of_the_same_evalsha_in_a_batch_answers_as_execute(nshards):
    """A batch's EVALSHAs of the same script one after the other (run in
    one loop by Shard._run_batch, each run after a usual one set up for its
    key alone: Engine.run_group) answer and count as each run
    by Shard.execute: a string, a miss, an argument, another type (an
    error the script raises), a write (a run that is not usual), a
    spelling that ends the run of them, and the runs after each."""

    def figures(how: str) -> tuple:
        shard = Shard(0, nshards, FakeClock())
        ks = shard.keyspace
        own = [k for k in (b"k%d" % i for i in range(200)) if key_slot(k) in shard.scripts.own][:4]
        s, missing, h, w = own
        run(shard, "SET", s, "v")
        run(shard, "HSET", h, "f", "v")
        run(shard, "SET", w, "write")
        sha = ks.scripts.load(
            b"local v = redis.call('get', KEYS[1]) "
            b"if v == 'write' then redis.call('set', KEYS[1], 'written') end "
            b"return v"
        )
        keys = [s, missing, s, h, s, w, s, w, s, s]
        commands = [[b"EVALSHA", sha, b"1", k] for k in keys]
        commands.insert(3, [b"EVALSHA", sha, b"1", s, b"arg"])
        commands.insert(8, [b"evalsha", sha, b"1", s])
        if how == "execute":
            out = []
            for c in commands:
                value = run(shard, *c)
                out.append(encode(value))
            body = b"".join(out)
        else:
            body = shard.run_batch(wire.encode_batch([item for c in commands for item in (0, c)]))
            body = b"".join(wire.decode_replies(body))
        rows, errorstats, _ = shard.stats.report()
        counts = {name: (row[0], row[2], row[3]) for name, row in rows.items()}  # (not the times)
        return body, counts, errorstats, ks.hits, ks.misses, run(shard, "GET", w)

    executed = figures("execute")
    assert figures("batch") == executed
    assert executed[0].count(b"$1\r\nv\r\n") == 8
    assert b"-WRONGTYPE" in executed[0]
    assert executed[-1] == b"written"
    assert executed[1]["get"] == (12, 0, 1)  # (calls, rejected, failed: the hash)


DB1 = 1 << wire.DB_SHIFT  # a plain entry's header in database 1


def test_a_run_of_the_same_evalsha_keeps_each_entrys_header_and_state():
    """A batch's EVALSHAs of one script, run in one loop by
    Shard._run_batch, answer as each alone in its batch: RESP2 and RESP3
    headers mixed in the run (a nil: ``$-1`` or ``_``), another
    database's entry between them (not of the run: its own key), a
    redis.call error, redis.setresp(3) and math.random in one run (not
    left to the next), a write the next one reads."""
    script = (
        b"if ARGV[1] == '3' then redis.setresp(3) end "
        b"if ARGV[1] == 'e' then return redis.call('incr', KEYS[1]) end "
        b"if ARGV[1] == 'w' then redis.call('set', KEYS[1], 'x') end "
        b"if ARGV[1] == 'r' then return tostring(math.random()) end "
        b"local v = redis.call('hgetall', 'h') "
        b"if v.map then return 'map' end "
        b"return redis.call('get', KEYS[1])"
    )
    entries = [
        (0, b"a", b"-"),
        (DB1, b"a", b"-"),
        (0, b"a", b"-"),
        (1, b"m", b"-"),
        (0, b"m", b"-"),
        (0, b"a", b"e"),
        (0, b"a", b"-"),
        (1, b"a", b"3"),
        (1, b"a", b"-"),
        (0, b"a", b"r"),
        (0, b"a", b"r"),
        (0, b"b", b"w"),
        (1, b"b", b"-"),
        (0, b"m", b"-"),
        (0, b"a", b"-"),
    ]

    def replies(together: bool) -> list:
        shard = Shard(0, 1, FakeClock())
        run(shard, "SET", "a", "v")
        run(shard, "HSET", "h", "f", "v")
        shard.run_batch(wire.encode_batch([DB1, [b"SET", b"a", b"db1"]]))
        sha = shard.keyspace.scripts.load(script)
        batch = [[h, [b"EVALSHA", sha, b"1", k, arg]] for h, k, arg in entries]
        batch.insert(0, [0, [b"EVALSHA", sha, b"1", b"a", b"-"]])  # (the script EVALSHA ran last)
        if together:
            out = wire.decode_replies(shard.run_batch(wire.encode_batch([x for e in batch for x in e])))
        else:
            out = [r for e in batch for r in wire.decode_replies(shard.run_batch(wire.encode_batch(e)))]
        return out + [run(shard, "GET", "b")]

    alone = replies(False)
    assert replies(True) == alone
    assert alone[1:6] == [b"$1\r\nv\r\n", b"$3\r\ndb1\r\n", b"$1\r\nv\r\n", b"_\r\n", b"$-1\r\n"]
    assert alone[6].startswith(b"-ERR value is not an integer")
    assert alone[8:10] == [b"$3\r\nmap\r\n", b"$1\r\nv\r\n"]
    assert alone[10] != alone[11]  # (not seeded again: as Redis 7)
    assert alone[12:14] == [b"$1\r\nx\r\n", b"$1\r\nx\r\n"]
    assert alone[-1] == b"x"


def test_lua_collector_steps_once_scripts_left_enough_garbage(shard):
    """Every 50 scripts, as Redis, Lua's collector is due a step; it takes
    it only once Lua's memory has grown by GC_GROWTH since the last, so
    short scripts (a few hundred bytes each) step rarely and a script that
    leaves more than GC_GROWTH / 50 steps every time, as in Redis."""
    from shardkv.worker import scripting

    engine = shard.keyspace.scripts
    small = engine.load(b"return 1")
    # (an empty table and its slot in t: ~70 bytes each, more than GC_GROWTH in all)
    tables = scripting.GC_GROWTH // 40
    large = engine.load(b"local t = {} for i = 1, %d do t[i] = {} end return 1" % tables)
    run(shard, "EVALSHA", small, 0)
    steps = []
    engine._gc_step = lambda: steps.append(engine._vm.gc_step())
    vm = engine._eval_vm
    for _ in range(1000):
        run(shard, "EVALSHA", small, 0)
        assert vm.lua.get_memory_used() - vm.gc_floor < scripting.GC_GROWTH + 50 * 1024
    assert 0 < len(steps) < 1000 // scripting.GC_PERIOD // 2
    steps.clear()
    skipped = 0
    for _ in range(500):
        before, taken = vm.lua.get_memory_used(), len(steps)
        run(shard, "EVALSHA", large, 0)
        if vm.runs == 0 and len(steps) == taken:
            # A due step is skipped only when Lua's own collector (it runs
            # when the heap doubles) ran within this very script and left
            # less than GC_GROWTH to collect.
            assert vm.lua.get_memory_used() < before
            skipped += 1
    assert len(steps) + skipped == 500 // scripting.GC_PERIOD
    assert skipped <= 2


def test_new_scripts_compile_while_calls_raise_through_lua(shard):
    """Each compile used to pass a Python function (the bytecode patch) into
    Lua; with lupa 2.8 such an object, pushed again and again while
    redis.call raised through Lua in between, came back once as another
    Python object (an exception instance), and from then on every new
    script on the shard failed with an internal error.  The patches are now
    given to each Lua state once and named by number."""

    def resp(reply) -> bytes:
        if isinstance(reply, int):
            return b":%d\r\n" % reply
        if isinstance(reply, Error):
            return b"-%s\r\n" % reply.message.encode()
        return reply.to_resp(False)

    run(shard, "SET", "n", "0")
    for i in range(20000):
        reply = run(shard, "EVAL", f"return redis.call('incr', KEYS[1]) -- {i}", 1, "n")
        assert resp(reply) == b":%d\r\n" % (i + 1), (i, reply)
        failed = run(shard, "EVAL", f"return redis.call('nosuch') -- {i}", 0)
        assert b"Unknown Redis command" in resp(failed), (i, resp(failed))


def test_script_that_must_run_across_shards_on_any_call():
    """A worker leaves a script's own call (EVALSHA) for the acceptor to
    count: its row there keeps nothing.  So an EVALSHA whose script needs
    another shard's key (the shard answers SHARDKV-CROSS, and the acceptor
    runs it again across shards) takes nothing back, whichever call it is:
    the 256th used to find its time just folded away and fail."""
    shard = Shard(0, 2, FakeClock())
    engine = shard.keyspace.scripts
    here = next(k for k in (b"k%d" % i for i in range(100)) if key_slot(k) in engine.own)
    away = next(k for k in (b"k%d" % i for i in range(100)) if key_slot(k) not in engine.own)
    sha = engine.load(b"return redis.call('get', ARGV[1])")
    for i in range(300):
        reply = run(shard, "EVALSHA", sha, 1, here, away if i == 255 else here)
        if i == 255:
            assert type(reply) is Error and reply.message.startswith("SHARDKV-CROSS")
        else:
            assert reply is None
    # No calls here (the acceptor counts them): only the runs' time, the
    # escaped run's taken back.
    assert shard.stats.report()[0]["evalsha"][0] == 0


def test_migrate_delete_takes_only_unchanged_keys(shard):
    """MIGRATE's local delete (``__migdel key payload...``), as a write
    fan-out's part: a key whose value is still the one sent goes; a key
    written since, or gone, stays as it is; the part prepares only the
    key it deleted."""
    run(shard, "RPUSH", "sent", "a", "b")
    run(shard, "SET", "changed", "old")
    sent, old = run(shard, "DUMP", "sent"), run(shard, "DUMP", "changed")
    run(shard, "SET", "changed", "new")
    answer = shard.prepare_part(
        [wire.Verb.PREPARE, b"7", wire.Verb.MIGRATE_DEL, b"sent", sent, b"changed", old, b"gone", old]
    )
    assert (answer.prepared, answer.value) == (True, 1)
    assert run(shard, "EXISTS", "sent") == 0
    assert run(shard, "GET", "changed") == b"new"


@pytest.mark.parametrize(
    ("setup", "command", "pair"),
    [
        (
            ("HSET", "h", "a", "1"),
            ("HRANDFIELD", "h", -200_000, "WITHVALUES"),
            (b"$1\r\na\r\n", b"$1\r\n1\r\n"),
        ),
        (("ZADD", "z", "1.5", "m"), ("ZRANDMEMBER", "z", -200_000, "WITHSCORES"), (b"$1\r\nm\r\n", None)),
    ],
)
def test_random_pairs_past_big_array_are_drawn_a_slice_at_a_time(shard, monkeypatch, setup, command, pair):
    """A huge negative count WITHVALUES/WITHSCORES: the handler returns the
    distinct pairs and the count, not a list of the count's pairs, and the
    encoder draws them a slice of BIG_ARRAY at a time (HRANDFIELD h -3000000
    WITHVALUES held 2 GB as tuples)."""
    import random

    from shardkv.protocol.resp import BIG_ARRAY, encode

    run(shard, *setup)
    reply = run(shard, *command)
    assert not isinstance(reply, list)
    drawn: list[int] = []
    choices = random.choices

    def counting(population, *args, k=1, **kwargs):
        drawn.append(k)
        return choices(population, *args, k=k, **kwargs)

    monkeypatch.setattr(random, "choices", counting)
    member, value = pair
    resp2 = encode(reply, False)
    resp3 = encode(reply, True)
    assert drawn and max(drawn) <= BIG_ARRAY and sum(drawn) == 2 * 200_000
    r2 = b"$3\r\n1.5\r\n" if value is None else value
    r3 = b",1.5\r\n" if value is None else value
    assert resp2 == b"*400000\r\n" + (member + r2) * 200_000
    assert resp3 == b"*200000\r\n" + (b"*2\r\n" + member + r3) * 200_000


@pytest.mark.parametrize("tail", [b"*2\r\n$3\r\nSET", b"*1\r\n$1\r\nx\r\n", b"\r"])
def test_decode_batch_refuses_a_payload_with_a_tail_and_reads_the_next(tail):
    """A whole array then more bytes (part of an entry, or a whole one) is
    a bad payload, and the next good payload still reads: the reader kept
    between payloads must not keep the tail."""
    good = wire.encode_batch([0, [b"GET", b"k"]])
    with pytest.raises(wire.BadMessage):
        wire.decode_batch(good + tail)
    with pytest.raises(wire.BadMessage):
        wire._decode_batch_py(good + tail)
    assert wire.decode_batch(good) == [0, [b"GET", b"k"]]


def test_decode_batch_refuses_bytes_that_are_no_resp():
    with pytest.raises(wire.BadMessage):
        wire.decode_batch(b"B*2\r\n:0\r\n*1\r\n$3\r\nGET\r\n!x")
    assert wire.decode_batch(wire.encode_batch([0, [b"GET", b"k"]])) == [0, [b"GET", b"k"]]


# Scripts that each change a field of the engine's Run that the next run
# starts from its default (Run.defaults): its RESP version, a write, a
# borrowed random state, log lines (held to its end, or written as it
# runs: LOGS_HELD of them), a failed call, a key of another shard (a
# stop), a 0 that only redis.sha1hex sees (a stop, to run again wide), a
# call other than a fast read, FCALL's own command.
_RUN_CHANGERS = [
    "redis.setresp(3) return 1",
    "redis.call('set', KEYS[1], 'v') return 1",
    "return math.random(10)",
    "redis.log(redis.LOG_WARNING, 'x') return 1",
    f"for i = 1, {scripting.LOGS_HELD} do redis.log(redis.LOG_WARNING, 'x') end return 1",
    "return redis.sha1hex(0)",
    "return redis.pcall('incr', 'nokey', 'extra')",
    "return redis.pcall('hset', KEYS[1])",
    "return redis.call('get', KEYS[2])",
    "return redis.call('ping')",
]


@pytest.mark.parametrize("nshards", [1, 2])
@pytest.mark.parametrize("changer", [*_RUN_CHANGERS, "fcall"])
def test_script_run_starts_from_defaults_after_any_script(nshards, changer):
    """The engine's one Run (scripting.Run) sets its fields back to their
    defaults before a script only when the script before it changed one
    (``Run.changed``): after a script that changes each, a script that
    changes none starts, and ends, with every such field as a new Run's."""
    shard = Shard(0, nshards, FakeClock())
    engine = shard.keyspace.scripts
    names = [b"k%d" % i for i in range(200)]
    own = next(k for k in names if key_slot(k) in engine.own)
    other = next((k for k in names if key_slot(k) not in engine.own), own)
    if changer == "fcall":
        body = "#!lua name=lib\nredis.register_function('f', function() return 1 end)"
        assert run(shard, "FUNCTION", "LOAD", body) == b"lib"
        run(shard, "FCALL", "f", 0)
    else:
        run(shard, "EVAL", changer, 2, own, other)
    assert run(shard, "EVAL", "return 1", 0) == 1
    fresh = scripting.Run.spare()
    fields = ("resp", "dirty", "killed", "abort", "busy", "reported_dirty", "command")
    fields += ("read_noted", "rand_lent", "held", "apart", "written", "changed")
    got = {name: getattr(engine._spare_run, name) for name in fields}
    assert got == {name: getattr(fresh, name) for name in fields}


@pytest.mark.parametrize("nshards", [1, 2])
def test_one_key_lean_run_answers_and_counts_as_invoke(nshards, caplog):
    """Engine.run_group (EVALSHA sha 1 key from a batch) answers and
    counts as Engine._invoke, for the usual script (a string read, which
    ends without _invoke's end) and for every run whose end it hands to
    _invoke's: a missing key, an integer, a table, a write, a SELECT, a
    redis.log line, math.random, an error, an error caught by pcall (the
    counters kept apart), a key of another shard (escaping), runs with
    arguments (a lock's token), and the usual one after each."""

    def figures(lean: bool) -> tuple:
        shard = Shard(0, nshards, FakeClock())
        ks = shard.keyspace
        engine = ks.scripts
        names = [b"k%d" % i for i in range(200)]
        own = [k for k in names if key_slot(k) in engine.own][:2]
        run(shard, "SET", own[0], "v")
        bodies = [
            b"return redis.call('get', KEYS[1])",
            b"return redis.call('get', KEYS[1] .. 'x')",
            b"return 7",
            b"return {1, redis.call('get', KEYS[1])}",
            b"return redis.call('set', KEYS[1], 'w')",
            b"redis.call('select', 1) return redis.call('get', KEYS[1])",
            b"redis.log(redis.LOG_WARNING, 'lean') return redis.call('get', KEYS[1])",
            b"math.random() return redis.call('get', KEYS[1])",
            b"return redis.call('incr', KEYS[1])",
            b"local ok = pcall(redis.call, 'incr', KEYS[1]) return redis.call('get', KEYS[1])",
        ]
        shas = [engine.load(b) for b in bodies]
        commands = []
        for sha in shas:
            commands.append([b"EVALSHA", sha, b"1", own[0]])
            commands.append([b"EVALSHA", shas[0], b"1", own[0]])
        # With arguments (a lock's token): its reads of ARGV, an integer's
        # reply, a table's, a write.
        with_argv = [
            b"if redis.call('get', KEYS[1]) == ARGV[1] then return 1 end return 0",
            b"if redis.call('get', KEYS[1] .. 'x') == ARGV[1] then return 1 end return 0",
            b"return {ARGV[1], ARGV[2], #ARGV}",
            b"return ARGV[2]",
            b"return tonumber(ARGV[1])",
            b"return redis.call('set', KEYS[1] .. 'y', ARGV[1])",
        ]
        argv_shas = [engine.load(b) for b in with_argv]
        for sha in argv_shas:
            for argv in ([b"v"], [b"w", b"x"], [b"9223372036854775808"], [b"-3"]):
                commands.append([b"EVALSHA", sha, b"1", own[0], *argv])
                commands.append([b"EVALSHA", shas[0], b"1", own[0]])
        if nshards > 1:
            other = next(k for k in names if key_slot(k) not in engine.own)
            commands.append([b"EVALSHA", shas[0], b"1", other])
            commands.append([b"EVALSHA", shas[0], b"1", own[0]])
        ends = []
        conclude = engine._conclude
        engine._conclude = lambda *a: ends.append(a[0]) or conclude(*a)
        if not lean:
            # No state below the room's bound: every run goes to _invoke
            # (whose own room check, and _call_raise's, measure the state).
            engine._push_room = -1
        body = shard.run_batch(wire.encode_batch([item for c in commands for item in (0, c)]))
        rows, errorstats, _ = shard.stats.report()
        counts = {name: (row[0], row[2], row[3]) for name, row in rows.items()}  # (not the times)
        data = [run(shard, "GET", k) for k in own]
        # redis.log's line is written when its script ends, not by a later run.
        logged = len(caplog.messages)
        shard.run_batch(wire.encode_batch([0, commands[12]]))
        assert len(caplog.messages) == logged + 1
        ends.clear()
        usual = [0, [b"EVALSHA", shas[0], b"1", own[0]]]
        assert shard.run_batch(wire.encode_batch(usual * 6)).count(b"$1\r\nw\r\n") == 6
        # A lock's release on a key it does not hold: an integer, as usual.
        release = [0, [b"EVALSHA", argv_shas[0], b"1", own[0], b"token"]]
        assert wire.decode_replies(shard.run_batch(wire.encode_batch(release * 2))) == [b":0\r\n"] * 2
        return body, counts, errorstats, ks.hits, ks.misses, ks.db, data, len(ends)

    lean = figures(True)
    invoked = figures(False)
    assert caplog.messages == ["lean"] * 4
    assert lean[:-1] == invoked[:-1]
    assert b"$1\r\nv\r\n" in lean[0] and b"-ERR value is not an integer" in lean[0]
    # The usual runs (the lean path) end without _invoke's end.
    assert (lean[-1], invoked[-1]) == (0, 8)


@pytest.mark.parametrize(
    "command",
    [
        ("MSET", "s", "new", "h", "x", "ttl", "v", "none", "n", "same", "1", "s", "last"),
        ("DEL", "s", "h", "ttl", "none", "same"),
        ("UNLINK", "h", "none", "none"),
    ],
)
def test_a_blind_write_part_prepares_its_keys_exported_only_before(shard, monkeypatch, command):
    """A write fan-out's MSET, DEL or UNLINK part writes every key it names
    whatever it held: the states it prepares (and logs) come from its
    arguments, only the states before are exported (the undo), and both
    are what exporting every key before and after the run gives."""
    from shardkv.worker import shard as shard_module
    from shardkv.worker.transfer import export_key

    run(shard, "SET", "s", "old")
    run(shard, "HSET", "h", "f", "v")
    run(shard, "SET", "ttl", "v", "PX", "100000")
    run(shard, "SET", "same", "1")
    args = [a.encode() for a in command]
    names = list(dict.fromkeys(args[1::2] if command[0] == "MSET" else args[1:]))
    before = {key: export_key(shard.keyspace, key) for key in names}
    exported: list[bytes] = []

    def counted(ks, key):
        exported.append(key)
        return export_key(ks, key)

    monkeypatch.setattr(shard_module, "export_key", counted)
    answer = shard.prepare_part([wire.Verb.PREPARE, b"7", *args])
    assert sorted(exported) == sorted(names)  # once each, before the run
    after = {key: export_key(shard.keyspace, key) for key in names}
    changed = {key for key in names if after[key] != before[key]}
    assert answer.prepared
    prepared = shard.prepared[7]
    assert prepared.states == {key: after[key] for key in changed}
    assert prepared.undo == {key: before[key] for key in changed}
    shard.decide(7, False)
    assert {key: export_key(shard.keyspace, key) for key in names} == before


@pytest.mark.parametrize("commit", [True, False])
def test_an_msetnx_part_undone_leaves_its_watched_keys_unchanged(shard, commit):
    """An MSETNX part that set its keys, undone because another shard's
    part found a key (the operation replies 0): the keys' states and
    their WATCH versions are as before, so a WATCH sees no change (as
    Redis, where MSETNX that sets nothing touches no key).  Committed,
    the keys hold the values and a WATCH sees the change."""
    ks = shard.keyspace
    ks.watched[b"k"] = 5  # a client WATCHes k
    answer = shard.prepare_part([wire.Verb.PREPARE, b"9", b"MSETNX", b"k", b"1", b"j", b"2"])
    assert (answer.prepared, answer.value) == (True, 1)
    assert shard.prepared[9].states == {b"k": ("string", b"1", None), b"j": ("string", b"2", None)}
    shard.decide(9, commit)
    assert run(shard, "MGET", "k", "j") == ([b"1", b"2"] if commit else [None, None])
    assert (ks.watched[b"k"] != 5) is commit


def test_an_msetnx_part_whose_key_exists_prepares_nothing(shard):
    run(shard, "SET", "j", "old")
    answer = shard.prepare_part([wire.Verb.PREPARE, b"9", b"MSETNX", b"k", b"1", b"j", b"2"])
    assert (answer.prepared, answer.value) == (False, 0)
    assert 9 not in shard.prepared
    assert run(shard, "MGET", "k", "j") == [None, b"old"]


def test_btry_passes_over_keys_of_another_type(shard):
    """``__btry`` (the try of a cross-shard wait an EXEC's CLIENT UNBLOCK
    asks for) runs the blocking command with its keys of another type
    passed over, as Redis serves a blocked client from any ready key of the
    type it pops: no WRONGTYPE for a string before the list, the others
    in their order; nothing of the type at all: a null."""
    run(shard, "SET", "b", "s")
    run(shard, "RPUSH", "a", "x")
    run(shard, "RPUSH", "c", "y")
    assert run(shard, wire.Verb.BTRY, "BLPOP", "b", "a", "0") == [b"a", b"x"]
    assert run(shard, wire.Verb.BTRY, "BLMPOP", "0", "3", "b", "missing", "c", "LEFT") == [b"c", [b"y"]]
    assert run(shard, wire.Verb.BTRY, "BZPOPMIN", "b", "0") is NULL_ARRAY
    run(shard, "ZADD", "z", "1", "m")
    assert run(shard, wire.Verb.BTRY, "BZMPOP", "0", "2", "b", "z", "MIN") == [b"z", [[b"m", 1.0]]]
    assert isinstance(run(shard, "BLPOP", "b", "0"), Error)  # the command itself still fails


@pytest.mark.parametrize("count", [0, 1, 16, 255, 256, 257, 1000])
def test_a_replies_payload_is_the_same_at_every_count(count):
    """``wire.encode_replies`` packs the usual counts with a packer made
    once per count, and the others with a format made per payload: both
    give the payload ``R``, the count, the sizes (little-endian 32-bit),
    then the bodies, and it reads back."""
    bodies = [b"+OK\r\n" if i % 3 else b"$%d\r\n%s\r\n" % (i, b"x" * i) for i in range(count)]
    payload = wire.encode_replies(bodies)
    sizes = b"".join(len(b).to_bytes(4, "little") for b in bodies)
    assert payload == b"R" + count.to_bytes(4, "little") + sizes + b"".join(bodies)
    assert wire.count_replies(payload) == count
    assert wire.decode_replies(payload) == bodies


def test_one_key_lean_run_starts_when_its_timing_does(monkeypatch):
    """Engine.run_group's run starts (Run.start_ns, what busy-reply-threshold
    and a script's time count from) at the clock read that times its
    EVALSHA (Shard.execute_script's perf_counter_ns, the monotonic clock),
    with no read of time.monotonic of its own."""
    shard = Shard(0, 1, FakeClock())
    engine = shard.keyspace.scripts
    run(shard, "SET", "k", "v")
    sha = engine.load(b"return redis.call('get', KEYS[1])")
    reads = []
    real = scripting.time.monotonic
    monkeypatch.setattr(scripting.time, "monotonic", lambda: reads.append(1) or real())
    started = []
    invoke = engine.run_group

    def run_group(args, script, start_ns, *batch):
        started.append(start_ns)
        return invoke(args, script, start_ns, *batch)

    engine.run_group = run_group
    body = shard.run_batch(wire.encode_batch([0, [b"EVALSHA", sha, b"1", b"k"]]))
    assert b"$1\r\nv\r\n" in body
    assert reads == []
    assert engine._spare_run.start_ns == started[0]


def test_evalsha_in_a_batch_reads_the_clock_once(monkeypatch):
    """An EVALSHA that run_batch runs (Shard.execute_script) is timed as a
    plain command is: from the end of the entry before it to one clock
    read of its own, which the entry after it starts from (issue 18: a
    read costs a tenth of a GET), after a run of them too.  Its time is
    that span, in its row."""
    from shardkv.worker import shard as shard_module

    shard = Shard(0, 1, FakeClock())
    engine = shard.keyspace.scripts
    run(shard, "SET", "k", "v")
    sha = engine.load(b"return redis.call('get', KEYS[1])")
    reads = []

    def clock() -> int:
        reads.append(1)
        return 1_000_000 * len(reads)

    monkeypatch.setattr(shard_module, "perf_counter_ns", clock)

    def batch(count: int) -> int:
        reads.clear()
        entries: list = [0, [b"GET", b"k"]]
        for _ in range(count):
            entries += [0, [b"EVALSHA", sha, b"1", b"k"]]
        entries += [0, [b"GET", b"k"]]
        body = shard.run_batch(wire.encode_batch(entries))
        assert body.count(b"$1\r\nv\r\n") == count + 2
        return len(reads)

    batch(1)  # (the first call learns GET: its read goes the long way)
    one, three = batch(1), batch(3)
    assert three - one == 2  # one read per EVALSHA
    row = shard.stats.by_bytes[b"EVALSHA"]
    pending = row[5]
    assert list(pending)[-3:] == [1_000_000] * 3  # each from the entry before it to its own read
    # The GET after them (after a group whose replies all went at once:
    # Engine.run_group) starts from the last one's read, not the first's.
    assert list(shard.stats.by_bytes[b"GET"][5])[-1] == 1_000_000


def test_a_served_wake_on_another_pipe_goes_when_the_writers_pipe_is_lost(shard):
    """With several acceptors, a push on pipe 0, whose acceptor wants the
    events, serves a client blocked on pipe 1: its wake (a ``J`` frame)
    would wait for an empty ``O`` frame on pipe 0.  If that send fails (the
    writer's acceptor has gone), the wake still goes on pipe 1, as the
    other wakes do: cleared from the list, it would never go, and the
    client, its element popped, would wait forever."""
    from shardkv.worker import events

    ks = shard.keyspace
    ks.pipe = 1
    assert wire.decode_replies(shard.run_batch(_batch((7, [b"BLPOP", b"k", b"0"])))) == [b""]
    ks.pipe = 0
    mask = b"%d" % (events.GENERIC | events.LIST)
    shard.run_batch(_batch((0, [wire.Verb.EVENTS, mask])))
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"RPUSH", b"k", b"a"])))) == [b":1\r\n"]
    assert shard.take_events(bounded=True) is not None  # (the batch's E frame, on pipe 0)
    sent: list = []

    def lost(frame: bytes, logged: object = None) -> None:
        raise BrokenPipeError("acceptor 0 has gone")

    shard.send = lost
    shard.send_to = lambda pipe, frame: sent.append((pipe, frame))
    with pytest.raises(OSError):
        shard.send_wakes()
    assert len(sent) == 1 and sent[0][0] == 1
    frame = sent[0][1]
    if frame[0] == wire.GATED_WAKE:
        frame = wire.decode_gated_wake(frame)[0]
    assert wire.decode_wake(frame) == (7, b"*2\r\n$1\r\nk\r\n$1\r\na\r\n")


def test_a_served_wake_waits_for_no_acceptor_that_got_none_of_the_events(shard):
    """With several acceptors, a push on pipe 0, whose acceptor wants no
    events, serves a client blocked on pipe 1, whose acceptor wants them
    (they go there in an ``O`` frame, before the wake): the writer's reply
    waits for that ``O`` frame (a ``G`` frame with no events), but the
    wake has nothing to wait for on pipe 0, which hands out nothing: a
    plain ``W`` frame, and no empty ``O`` frame on pipe 0 (a bus round
    trip for nothing, on every such serve)."""
    from shardkv.worker import events

    ks = shard.keyspace
    ks.pipe = 1
    shard.run_batch(_batch((0, [wire.Verb.EVENTS, b"%d" % (events.GENERIC | events.LIST)])))
    assert wire.decode_replies(shard.run_batch(_batch((7, [b"BLPOP", b"k", b"0"])))) == [b""]
    ks.pipe = 0
    here: list = []
    elsewhere: list = []
    shard.send = lambda frame, logged=None: here.append(frame)
    shard.send_to = lambda pipe, frame: elsewhere.append((pipe, frame))
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"RPUSH", b"k", b"a"])))) == [b":1\r\n"]
    gated = shard.take_events(bounded=True)
    assert gated is not None and gated[0] == wire.GATED_EVENTS  # the writer's reply waits
    shard.send_wakes()
    assert here == []
    assert [(pipe, frame[0]) for pipe, frame in elsewhere] == [(1, wire.OTHERS_EVENTS), (1, wire.WAKE)]


def test_an_xread_bwait_resolves_dollar_as_it_comes_and_its_notification_bounds_the_try(shard):
    """An XREAD's ``__bwait`` with ``$`` waits for entries past the
    stream's last ID as it comes (its acceptor sends it with its first
    try, in one step); its notification ends with the stream's last ID
    then, and ``__xreadupto`` with that ID reads up to that entry alone,
    not what a later write added before the try came (issue 22)."""
    assert run(shard, "XADD", "s", "1-0", "f", "a") == b"1-0"
    bwait = [wire.Verb.BWAIT, b"xread", b"0", b"0", b"", b"s", b"$"]
    assert wire.decode_replies(shard.run_batch(_batch((5, bwait)))) == [b""]
    assert shard.waiters.wakes == []
    adds = _batch((0, [b"XADD", b"s", b"2-0", b"f", b"b"]), (0, [b"XADD", b"s", b"3-0", b"f", b"c"]))
    assert wire.decode_replies(shard.run_batch(adds)) == [b"$3\r\n2-0\r\n", b"$3\r\n3-0\r\n"]
    assert shard.waiters.wakes == [(0, wire.encode_wake(5, b"*3\r\n:1\r\n$1\r\ns\r\n$3\r\n2-0\r\n"))]
    upto = [wire.Verb.XREAD_UPTO, b"2-0", b"COUNT", b"5", b"STREAMS", b"s", b"1-0"]
    read = [[b"s", [[b"2-0", [b"f", b"b"]]]]]
    assert wire.decode_replies(shard.run_batch(_batch((0, upto)))) == [encode(read, 0)]


@pytest.mark.parametrize("group", [False, True], ids=["xread", "xreadgroup"])
def test_a_stream_bwait_past_an_entry_deleted_before_it_waits_for_an_xadd(shard, group):
    """A cross-shard XREAD's ``__bwait`` past the entries of its stream, an
    entry added and deleted before it came, waits: its client's try would
    read nothing (answering ready at once had the client try, wait and try
    again, for ever), and Redis serves it on the next XADD alone (an XDEL
    signals no key ready), whose notification carries the last ID."""
    run(shard, "XADD", "a", "1-0", "f", "1")
    if group:
        run(shard, "XGROUP", "CREATE", "a", "g", "$")
    run(shard, "XADD", "a", "2-0", "f", "2")
    run(shard, "XDEL", "a", "2-0")
    bwait = [wire.Verb.BWAIT, b"xreadgroup" if group else b"xread", b"0", b"0"]
    bwait += [b"g", b"a", b">"] if group else [b"", b"a", b"1-0"]
    assert wire.decode_replies(shard.run_batch(_batch((5, bwait)))) == [b""]
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"XDEL", b"a", b"1-0"])))) == [b":1\r\n"]
    assert shard.waiters.wakes == []
    assert wire.decode_replies(shard.run_batch(_batch((0, [b"XADD", b"a", b"3-0", b"f", b"3"])))) == [
        b"$3\r\n3-0\r\n"
    ]
    notification = b"*3\r\n:1\r\n$1\r\na\r\n$3\r\n3-0\r\n"  # [BWAIT_READY, the key, the last ID]
    assert shard.waiters.wakes == [(0, wire.encode_wake(5, notification))]


@pytest.mark.parametrize("how", ["lazy", "active"])
@pytest.mark.parametrize("bwait", [False, True], ids=["one-shard", "bwait"])
def test_a_stream_that_expires_fails_its_blocked_xreadgroup(shard, how, bwait):
    """Redis's expiry deletes as DEL does (``dbGenericDelete`` signals
    the stream ready), and the blocked XREADGROUP fails ``-UNBLOCKED the
    stream key no longer exists`` at once: whether a command's lookup
    (EXISTS) or the sweeper found the key expired; a blocked XREAD on it
    waits on."""
    run(shard, "XADD", "s", "1-0", "f", "1")
    run(shard, "XGROUP", "CREATE", "s", "g", "$")
    if bwait:
        group = [wire.Verb.BWAIT, b"xreadgroup", b"0", b"0", b"g", b"s", b">"]
        plain = [wire.Verb.BWAIT, b"xread", b"0", b"0", b"", b"s", b"1-0"]
    else:
        group = [b"XREADGROUP", b"GROUP", b"g", b"c", b"BLOCK", b"0", b"STREAMS", b"s", b">"]
        plain = [b"XREAD", b"BLOCK", b"0", b"STREAMS", b"s", b"1-0"]
    assert wire.decode_replies(shard.run_batch(_batch((5, group), (6, plain)))) == [b"", b""]
    run(shard, "PEXPIRE", "s", "10")
    shard.keyspace.clock.advance(10)
    if how == "lazy":
        assert wire.decode_replies(shard.run_batch(_batch((0, [b"EXISTS", b"s"])))) == [b":0\r\n"]
    else:
        shard.keyspace.tick()
        assert shard.sweeper.cycle(budget_s=1.0) == 1
        shard.waiters.serve_ready()  # (the loop's, after its tick)
    assert shard.waiters.wakes == [
        (0, wire.encode_wake(5, b"-UNBLOCKED the stream key no longer exists\r\n"))
    ]
    assert list(shard.waiters.by_token) == [(0, 6)]


@pytest.mark.parametrize("kind", ["string", "stream"])
def test_an_expired_key_only_a_blocked_pop_waits_on_is_not_made_ready(shard, kind):
    """Redis's expiry signals a stream only while stream reads are
    blocked (``signalKeyAsReady``), and no other type: a key that only a
    BLPOP waits on is not made ready, lest it come first among the keys a
    MULTI then writes."""
    assert wire.decode_replies(shard.run_batch(_batch((5, [b"BLPOP", b"k", b"0"])))) == [b""]
    if kind == "string":
        run(shard, "SET", "k", "v", "PX", "10")
    else:
        run(shard, "XADD", "k", "1-0", "f", "1")
        run(shard, "PEXPIRE", "k", "10")
    shard.waiters.ready.clear()  # (the write's, served by the loop)
    shard.keyspace.clock.advance(10)
    shard.keyspace.tick()
    assert shard.sweeper.cycle(budget_s=1.0) == 1
    assert not shard.waiters.ready
