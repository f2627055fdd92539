"""A blocked BLMOVE/BRPOPLPUSH whose destination holds another type gets
WRONGTYPE when a push wakes it, and the element goes to the next waiter,
as in Redis, whichever shards the keys are on.

Redis serves a key's blocked clients in the order they blocked; its serve
(``serveClientBlockedOnList``) looks the destination up first, replies
WRONGTYPE for another type and pops nothing, and the next client is
served.  Across shards a BLMOVE waits with a ``__bwait`` that pops
nothing: it is notified, and a client blocked on the source alone (same
shard) took the element before the BLMOVE's next try, which found the
source empty and blocked again, for ever (Redis's unit/type/list
"BRPOPLPUSH with multiple blocked clients" stalled so at ``--acceptors 2``).

Each scenario runs on a real redis-server and on shardkv with 1, 2 and 4
shards and 1 and 2 acceptors; the exact replies must be equal.  With
several shards the source is on shard 0 and the wrong-typed destination
on shard 1; the second waiter's destination is on the source's shard
("one-shard": it waits on that shard's queue) or another ("cross-shard").
A client is sent its command only once the one before it is shown blocked
(CLIENT LIST's ``b``), so the order in which they blocked is the same on
both servers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.acceptors import acceptor_of, client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient
from tests.support.servers import ServerProcess, start_redis, start_shardkv

WAIT = 10.0  # seconds a reply or a blocked client may take to show

CONFIGS = [(1, 1), (2, 1), (4, 1), (1, 2), (2, 2), (4, 2)]


@pytest.fixture(scope="module")
def real() -> Iterator[ServerProcess]:
    proc = start_redis()
    yield proc
    proc.stop()


@pytest.fixture(scope="module", params=CONFIGS, ids=[f"shards={s}-acceptors={k}" for s, k in CONFIGS])
def ours(request) -> Iterator[ServerProcess]:
    shards, acceptors = request.param
    proc = start_shardkv(shards=shards, acceptors=acceptors)
    proc.shards = shards  # type: ignore[attr-defined]
    proc.acceptors = acceptors  # type: ignore[attr-defined]
    yield proc
    proc.stop()


def keys_for(shards: int, second: str) -> tuple[str, str, str]:
    """(source, wrong-typed destination, the second waiter's destination)."""
    other = 0 if second == "one-shard" else 2 if shards > 2 else 1
    return key_on(0, "src", shards), key_on(1 % shards, "bad", shards), key_on(other % shards, "ok", shards)


class Session:
    """An observer connection, and blocking clients sent one at a time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.observer = RespClient(port, timeout=WAIT)
        self.observer.command("FLUSHALL")
        self.clients: list[RespClient] = []
        self.ids: dict[RespClient, int] = {}

    def call(self, *args: object) -> bytes:
        return self.observer.call(*args)  # type: ignore[arg-type]

    def block(self, *args: object) -> RespClient:
        """Send a blocking command on a new connection; return once it is shown blocked."""
        c = RespClient(self.port, timeout=WAIT)
        self.clients.append(c)
        client_id = int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]
        self.ids[c] = client_id
        c.send(*args)  # type: ignore[arg-type]
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for line in self.observer.command("CLIENT", "LIST").splitlines():  # type: ignore[union-attr]
                if line.startswith(b"id=%d " % client_id) and b" flags=b " in line:
                    return c
            time.sleep(0.005)
        pytest.fail(f"{args!r} was never shown blocked")

    def close(self) -> None:
        for c in (*self.clients, self.observer):
            c.close()


def read(c: RespClient) -> bytes:
    """The client's next reply, or what shows that none came."""
    try:
        return c.read()
    except TimeoutError:
        return b"(still blocked)"


def still_blocked(s: Session, c: RespClient) -> list[bytes]:
    """Whether ``c`` still waited: CLIENT UNBLOCK's reply (1 if so), then
    the client's reply (then a null, else what it got before)."""
    return [s.call("CLIENT", "UNBLOCK", s.ids[c]), read(c)]


def run_on_both(real: ServerProcess, ours: ServerProcess, scenario) -> list[bytes]:
    """Run ``scenario(session)`` on both servers; their transcripts must be equal."""
    transcripts = []
    for proc in (real, ours):
        session = Session(proc.port)
        try:
            transcripts.append(scenario(session))
        finally:
            session.close()
    expected, got = transcripts
    assert got == expected
    return expected


@pytest.mark.parametrize("second", ["one-shard", "cross-shard"])
def test_brpoplpush_with_multiple_blocked_clients(real, ours, second) -> None:
    """Redis's unit/type/list test of that name."""
    src, bad, ok = keys_for(ours.shards, second)

    def scenario(s: Session) -> list[bytes]:
        s.call("SET", bad, "nolist")
        first = s.block("BRPOPLPUSH", src, bad, 0)
        then = s.block("BRPOPLPUSH", src, ok, 0)
        out = [s.call("LPUSH", src, "foo"), read(first), read(then)]
        return [*out, s.call("LRANGE", ok, 0, -1), s.call("EXISTS", src), s.call("GET", bad)]

    transcript = run_on_both(real, ours, scenario)
    assert transcript[1].startswith(b"-WRONGTYPE")  # (what the comparison is about)


@pytest.mark.parametrize("whereto", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("wherefrom", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("second", ["one-shard", "cross-shard"])
def test_blmove_wrongtype_destination_serves_the_next_waiter(real, ours, second, wherefrom, whereto) -> None:
    src, bad, ok = keys_for(ours.shards, second)

    def scenario(s: Session) -> list[bytes]:
        s.call("SADD", bad, "m")
        s.call("RPUSH", ok, "old1", "old2")
        first = s.block("BLMOVE", src, bad, wherefrom, whereto, 0)
        then = s.block("BLMOVE", src, ok, wherefrom, whereto, 0)
        out = [s.call("RPUSH", src, "a"), read(first), read(then)]
        return [*out, s.call("LRANGE", src, 0, -1), s.call("LRANGE", ok, 0, -1), s.call("SMEMBERS", bad)]

    transcript = run_on_both(real, ours, scenario)
    assert transcript[1].startswith(b"-WRONGTYPE")


@pytest.mark.parametrize("second", ["one-shard", "cross-shard"])
def test_destination_made_another_type_after_blocking(real, ours, second) -> None:
    """A list destination when it blocked, a string when it is woken: WRONGTYPE then."""
    src, bad, ok = keys_for(ours.shards, second)

    def scenario(s: Session) -> list[bytes]:
        s.call("RPUSH", bad, "x")
        first = s.block("BLMOVE", src, bad, "RIGHT", "LEFT", 0)
        then = s.block("BRPOPLPUSH", src, ok, 0)
        s.call("SET", bad, "now a string")
        out = [s.call("LPUSH", src, "foo"), read(first), read(then)]
        return [*out, s.call("GET", bad), s.call("LRANGE", ok, 0, -1), s.call("EXISTS", src)]

    transcript = run_on_both(real, ours, scenario)
    assert transcript[1].startswith(b"-WRONGTYPE")


@pytest.mark.parametrize("whereto", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("wherefrom", ["LEFT", "RIGHT"])
def test_wrongtype_destination_deleted_after_blocking(real, ours, wherefrom, whereto) -> None:
    """A string destination when it blocked, gone when it is woken: the
    move happens.  (One waiter: a second one blocked on the source alone,
    on its shard, may take the element before a cross-shard BLMOVE's try,
    a documented difference.)"""
    src, bad, _ = keys_for(ours.shards, "one-shard")

    def scenario(s: Session) -> list[bytes]:
        s.call("SET", bad, "nolist")
        first = s.block("BLMOVE", src, bad, wherefrom, whereto, 0)
        s.call("DEL", bad)
        out = [s.call("RPUSH", src, "foo", "bar"), read(first)]
        return [*out, s.call("LRANGE", bad, 0, -1), s.call("LRANGE", src, 0, -1)]

    transcript = run_on_both(real, ours, scenario)
    assert not transcript[1].startswith(b"-")


# A later waiter's wrong-typed destination: Redis serves the key's waiters in
# order while the list exists, so a waiter whose turn comes after the list is
# gone stays blocked, whatever its destination.  ("ok": a list destination;
# "bad": a string, always on shard 1; the source on shard 0.)


def skip_racing_tries(ours: ServerProcess, racing: bool) -> None:
    """The tries of cross-shard waiters after a push, from clients of two
    acceptors, run in either order (a documented difference, README
    "Blocking across shards"): a scenario whose outcome depends on that
    order (``racing``) is compared at one acceptor only."""
    if racing and ours.acceptors > 1 and ours.shards > 1:  # type: ignore[attr-defined]
        pytest.skip("tries of cross-shard waiters through two acceptors race")


@pytest.mark.parametrize("second", ["one-shard", "cross-shard"])
def test_later_wrongtype_waiter_stays_blocked_when_the_element_is_taken(real, ours, second) -> None:
    """(ok, bad), one element: the first moves it, the second stays blocked."""
    skip_racing_tries(ours, second == "cross-shard")
    src, bad, ok = keys_for(ours.shards, second)

    def scenario(s: Session) -> list[bytes]:
        s.call("RPUSH", ok, "x")
        s.call("SET", bad, "str")
        first = s.block("BLMOVE", src, ok, "RIGHT", "LEFT", 0)
        then = s.block("BRPOPLPUSH", src, bad, 0)
        out = [s.call("LPUSH", src, "foo"), read(first), *still_blocked(s, then)]
        return [*out, s.call("LRANGE", ok, 0, -1), s.call("GET", bad), s.call("EXISTS", src)]

    transcript = run_on_both(real, ours, scenario)
    assert transcript[2:4] == [b":1\r\n", b"*-1\r\n"]


@pytest.mark.parametrize("second", ["one-shard", "cross-shard"])
def test_one_shard_wrongtype_waiter_after_a_cross_shard_one(real, ours, second) -> None:
    """(ok, bad) with the bad waiter's destination on the source's shard
    (it waits in that shard's queue) and the first waiter's anywhere."""
    src, _, ok = keys_for(ours.shards, second)
    bad = key_on(0, "samebad", ours.shards)

    def scenario(s: Session) -> list[bytes]:
        s.call("SET", bad, "str")
        first = s.block("BLMOVE", src, ok, "LEFT", "LEFT", 0)
        then = s.block("BLMOVE", src, bad, "LEFT", "LEFT", 0)
        out = [s.call("RPUSH", src, "foo"), read(first), *still_blocked(s, then)]
        return [*out, s.call("LRANGE", ok, 0, -1), s.call("GET", bad), s.call("EXISTS", src)]

    run_on_both(real, ours, scenario)


@pytest.mark.parametrize("second", ["one-shard", "cross-shard"])
def test_two_wrongtype_waiters_then_a_good_one(real, ours, second) -> None:
    """(bad, bad, ok): WRONGTYPE, WRONGTYPE, and the third moves the element."""
    skip_racing_tries(ours, second == "cross-shard")  # (bad, bad: either order)
    src, bad, ok = keys_for(ours.shards, second)

    def scenario(s: Session) -> list[bytes]:
        s.call("SET", bad, "str")
        one = s.block("BRPOPLPUSH", src, bad, 0)
        two = s.block("BLMOVE", src, bad, "LEFT", "RIGHT", 0)
        three = s.block("BLMOVE", src, ok, "RIGHT", "LEFT", 0)
        out = [s.call("LPUSH", src, "foo"), read(one), read(two), read(three)]
        return [*out, s.call("LRANGE", ok, 0, -1), s.call("EXISTS", src)]

    transcript = run_on_both(real, ours, scenario)
    assert transcript[1].startswith(b"-WRONGTYPE") and transcript[2].startswith(b"-WRONGTYPE")


@pytest.mark.parametrize("order", ["ok-ok-bad", "ok-bad-ok", "bad-ok-ok"])
@pytest.mark.parametrize("second", ["one-shard", "cross-shard"])
def test_two_elements_pushed_at_once(real, ours, second, order) -> None:
    """Two elements, three waiters: the bad one gets WRONGTYPE only if an
    element is left at its turn."""
    skip_racing_tries(ours, True)
    src, bad, ok = keys_for(ours.shards, second)
    _, _, ok2 = keys_for(ours.shards, "cross-shard")

    def scenario(s: Session) -> list[bytes]:
        s.call("SET", bad, "str")
        dests = iter([ok, ok2])
        clients = []
        for kind in order.split("-"):
            dest = bad if kind == "bad" else next(dests)
            clients.append((kind, s.block("BLMOVE", src, dest, "RIGHT", "LEFT", 0)))
        out = [s.call("LPUSH", src, "a", "b")]
        for kind, c in clients:
            out += still_blocked(s, c) if kind == "bad" and order == "ok-ok-bad" else [read(c)]
        return [*out, s.call("LRANGE", ok, 0, -1), s.call("LRANGE", ok2, 0, -1), s.call("EXISTS", src)]

    run_on_both(real, ours, scenario)


def info_lines(s: Session, section: str) -> list[bytes]:
    text = s.observer.command("INFO", section)
    return [line for line in text.split(b"\r\n") if line and not line.startswith(b"#")]  # type: ignore[union-attr]


@pytest.mark.parametrize("second", ["one-shard", "cross-shard"])
def test_wrongtype_is_counted_and_internal_verbs_never_show(real, ours, second) -> None:
    """The WRONGTYPE a woken waiter gets counts as its command's failed call
    and in errorstats; a cross-shard wait's ``__bwait`` shows neither in
    INFO commandstats nor in SLOWLOG (Redis has no such command).  (Calls
    differ: a cross-shard wait counts each try.  With several acceptors
    INFO shows the asking acceptor's own counters, not the blocked
    client's acceptor's, so the counts are compared at one acceptor.)"""
    src, bad, ok = keys_for(ours.shards, second)
    counts = ours.acceptors == 1  # type: ignore[attr-defined]

    def scenario(s: Session) -> list[object]:
        s.call("CONFIG", "SET", "slowlog-log-slower-than", "0")
        try:
            s.call("SET", bad, "nolist")
            first = s.block("BRPOPLPUSH", src, bad, 0)
            then = s.block("BRPOPLPUSH", src, ok, 0)
            s.call("CONFIG", "RESETSTAT")
            s.call("SLOWLOG", "RESET")
            out: list[object] = [s.call("LPUSH", src, "foo"), read(first), read(then)]
            stats = info_lines(s, "commandstats")
            failed = [
                line.split(b"failed_calls=")[1].split(b",")[0] for line in stats if b"brpoplpush:" in line
            ]
            internal = [line for line in stats if line.startswith(b"cmdstat___")]
            slow = s.observer.command("SLOWLOG", "GET", -1)
            names = sorted({entry[3][0].lower() for entry in slow})  # type: ignore[index, union-attr]
            shown = [n for n in names if n.startswith(b"__")]
            if not counts:
                return [*out, internal, shown]
            return [*out, failed, info_lines(s, "errorstats"), internal, shown]
        finally:
            s.call("CONFIG", "SET", "slowlog-log-slower-than", "10000")

    transcript = run_on_both(real, ours, scenario)
    if counts:
        assert transcript[3] == [b"1"] and transcript[4] == [b"errorstat_WRONGTYPE:count=1"]


# A cross-shard waiter's try that takes nothing leaves its element: the
# waiters after it are served then, as Redis serves them after it.


def test_one_shard_wrongtype_waiter_behind_a_try_that_takes_nothing(real, ours) -> None:
    """(bad across shards, bad on the source's shard), one element: Redis
    replies WRONGTYPE to both (the list still exists at the second's turn);
    the second is served once the first's try left the element."""
    src, bad, _ = keys_for(ours.shards, "one-shard")
    samebad = key_on(0, "samebad", ours.shards)

    def scenario(s: Session) -> list[bytes]:
        s.call("SET", bad, "str")
        s.call("SET", samebad, "str")
        first = s.block("BLMOVE", src, bad, "LEFT", "LEFT", 0)
        then = s.block("BRPOPLPUSH", src, samebad, 0)
        out = [s.call("RPUSH", src, "foo"), read(first), *still_blocked(s, then)]
        return [*out, s.call("LRANGE", src, 0, -1), s.call("GET", bad), s.call("GET", samebad)]

    transcript = run_on_both(real, ours, scenario)
    assert transcript[1].startswith(b"-WRONGTYPE") and transcript[3].startswith(b"-WRONGTYPE")


def test_one_shard_wrongtype_waiter_behind_a_wrongtype_and_a_taker(real, ours) -> None:
    """(bad across shards, ok across shards, bad on the source's shard), one
    element: WRONGTYPE, the element, and the third stays blocked (the list
    is gone at its turn), whichever of the two tries runs first."""
    src, bad, ok = keys_for(ours.shards, "cross-shard")
    samebad = key_on(0, "samebad", ours.shards)

    def scenario(s: Session) -> list[bytes]:
        s.call("SET", bad, "str")
        s.call("SET", samebad, "str")
        one = s.block("BLMOVE", src, bad, "LEFT", "LEFT", 0)
        two = s.block("BLMOVE", src, ok, "LEFT", "LEFT", 0)
        three = s.block("BRPOPLPUSH", src, samebad, 0)
        out = [s.call("RPUSH", src, "foo"), read(one), read(two), *still_blocked(s, three)]
        return [*out, s.call("LRANGE", ok, 0, -1), s.call("EXISTS", src), s.call("GET", samebad)]

    transcript = run_on_both(real, ours, scenario)
    assert transcript[1].startswith(b"-WRONGTYPE") and transcript[3:5] == [b":1\r\n", b"*-1\r\n"]


@pytest.mark.parametrize("count", [2, 3])
def test_cross_shard_blmpop_claims_count_elements(real, ours, count) -> None:
    """A cross-shard BLMPOP ... COUNT n is served up to n elements at its
    turn: a one-shard BLMOVE with a wrong-typed destination behind it gets
    WRONGTYPE only if an element is left then (three pushed), else stays
    blocked."""
    src, _, other = keys_for(ours.shards, "cross-shard")
    samebad = key_on(0, "samebad", ours.shards)

    def scenario(s: Session) -> list[bytes]:
        s.call("SET", samebad, "str")
        first = s.block("BLMPOP", 0, 2, src, other, "LEFT", "COUNT", count)
        then = s.block("BLMOVE", src, samebad, "LEFT", "RIGHT", 0)
        out = [s.call("RPUSH", src, "a", "b", "c"), read(first), *still_blocked(s, then)]
        return [*out, s.call("LRANGE", src, 0, -1), s.call("GET", samebad)]

    transcript = run_on_both(real, ours, scenario)
    assert transcript[3].startswith(b"-WRONGTYPE") == (count == 2)


def test_push_pipelined_with_an_unblock_of_a_wrongtype_mover(real, ours) -> None:
    """``LPUSH src x`` and ``CLIENT UNBLOCK`` of a BLMOVE whose destination
    holds another type, pipelined, with a BLPOP of the source behind it:
    Redis serves the BLMOVE after the LPUSH (WRONGTYPE, the element left
    to the BLPOP), so CLIENT UNBLOCK finds it unblocked (0).  Its failure
    counts once (compared at one acceptor, as above)."""
    src, bad, _ = keys_for(ours.shards, "one-shard")
    counts = ours.acceptors == 1  # type: ignore[attr-defined]

    def scenario(s: Session) -> list[object]:
        s.call("SET", bad, "str")
        mover = s.block("BLMOVE", src, bad, "RIGHT", "LEFT", 0)
        popper = s.block("BLPOP", src, 0)
        s.call("CONFIG", "RESETSTAT")
        s.observer.send("LPUSH", src, "x")
        s.observer.send("CLIENT", "UNBLOCK", s.ids[mover])
        out: list[object] = [s.observer.read(), s.observer.read(), read(mover), read(popper)]
        out += [s.call("EXISTS", src), s.call("GET", bad)]
        stats = info_lines(s, "commandstats")
        out += [[line for line in stats if line.startswith(b"cmdstat___")]]  # (internal verbs never show)
        if counts:
            failed = [
                line.split(b"failed_calls=")[1] for line in stats if line.startswith(b"cmdstat_blmove:")
            ]
            out += [failed, info_lines(s, "errorstats")]
        return out

    transcript = run_on_both(real, ours, scenario)
    assert transcript[1] == b":0\r\n" and transcript[2].startswith(b"-WRONGTYPE")


# A later command on the destination: Redis moves the element as the push
# ends, so whatever the pushing client sends next (pipelined) sees the
# destination after the move.  Across shards the move is a try of the
# waiter's acceptor, which must come before those commands reach the
# destination's shard.


def pusher_for(s: Session, ours: ServerProcess, waiter: RespClient) -> RespClient:
    """A new connection on the waiter's acceptor: a try after a push
    through another acceptor still follows the source's notification (a
    documented difference, README "Blocking across shards")."""
    if s.port == ours.port and ours.acceptors > 1:  # type: ignore[attr-defined]
        k = ours.acceptors  # type: ignore[attr-defined]
        pusher = client_on(s.port, acceptor_of(s.ids[waiter], k), k=k)
    else:
        pusher = RespClient(s.port, timeout=WAIT)
    s.clients.append(pusher)
    return pusher


@pytest.mark.parametrize(
    "then",
    [("DEL",), ("SET", "s"), ("SADD", "m"), ("RPUSH", "y"), ("LPOP",)],
    ids=["DEL", "SET", "SADD", "RPUSH", "LPOP"],
)
@pytest.mark.parametrize("command", ["BLMOVE", "BRPOPLPUSH"])
def test_destination_written_right_after_the_push(real, ours, command, then) -> None:
    """``RPUSH src x`` and a write of the destination pipelined after it:
    the write finds the element moved (DEL deletes it, SET replaces it,
    SADD gets WRONGTYPE), as in Redis."""
    if ours.shards == 1:  # type: ignore[attr-defined]
        pytest.skip("one shard serves its waiters after the pipelined batch, not after the push")
    src, _, ok = keys_for(ours.shards, "cross-shard")
    dst = key_on(1 % ours.shards, "dst", ours.shards)  # (the source is on shard 0)
    blocking = (
        ("BLMOVE", src, dst, "RIGHT", "LEFT", 0) if command == "BLMOVE" else ("BRPOPLPUSH", src, dst, 0)
    )

    def scenario(s: Session) -> list[bytes]:
        waiter = s.block(*blocking)
        pusher = pusher_for(s, ours, waiter)
        pipeline = [
            ("RPUSH", src, "x"),
            (then[0], dst, *then[1:]),
            ("LRANGE", dst, 0, -1),
            ("EXISTS", dst),
            ("TYPE", dst),
            ("LLEN", src),
        ]
        for args in pipeline:
            pusher.send(*args)
        out = [pusher.read() for _ in pipeline]
        return [*out, read(waiter), s.call("TYPE", dst), s.call("EXISTS", src), s.call("EXISTS", ok)]

    run_on_both(real, ours, scenario)
