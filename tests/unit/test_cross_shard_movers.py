"""The bookkeeping of cross-shard BLMOVE/BRPOPLPUSH waits across
acceptors: the sources other acceptors' moves wait on (bus ``movers``),
and the ``__bsettle`` a write of such a source waits in; the keys their
cross-shard pops wait on (bus ``poppers``); and when a cross-shard wait
is shown blocked (once its shards have its waits)."""

from __future__ import annotations

from shardkv.acceptor import blocking
from shardkv.protocol import wire
from shardkv.worker.blocking import bsettle
from shardkv.worker.shard import Shard
from tests.unit.test_acceptor_dispatch import build, connect, keys_on_two_shards, send


def test_a_lost_acceptors_claim_answers_the_settles_of_the_others() -> None:
    """Pipe 0's mover claims ``k`` (notified, its try on its way); pipe
    1's writer waits in ``__bsettle k``; pipe 0's acceptor dies, the only
    one with waiters: ``Waiters.clear`` used to drop every wake, the
    settle's too, and the writer waited for its acceptor's bound."""
    shard = Shard(0, 1)
    waiters = shard.waiters
    key = (0, b"k")
    waiters.claims[0, 5] = (key, 1, wire.BWAIT_CLAIMED, ())
    waiters.claimed[key] = 1
    shard.keyspace.pipe = 1
    assert (
        waiters.run(lambda args, handler: bsettle(shard.keyspace, args), 9, 2, [wire.Verb.BSETTLE, b"k"])
        == b""
    )
    assert not waiters.wakes
    waiters.clear(0)
    assert waiters.wakes == [(1, wire.encode_wake(9, b":1\r\n"))]
    assert not waiters.settles and not waiters.claimed


def test_a_keyless_settle_waits_for_the_claims_left_as_it_came() -> None:
    """``__bsettle`` with no key (behind a script, whose undeclared keys
    and other databases' the acceptor cannot name): 1 at once with no
    claim; else once every claim left as it came has ended, whatever its
    key or database, not one made after it; the lost pipe's settles go."""
    shard = Shard(0, 1)
    waiters = shard.waiters

    def settle(token: int) -> bytes:
        run = waiters.run(lambda args, handler: bsettle(shard.keyspace, args), token, 2, [wire.Verb.BSETTLE])
        return run  # type: ignore[no-any-return]

    assert settle(3) == b":1\r\n"
    for claim, key in (((0, 5), (0, b"k")), ((0, 6), (1, b"j"))):
        waiters.claims[claim] = (key, 1, wire.BWAIT_CLAIMED, ())
        waiters.claimed[key] = 1
    shard.keyspace.pipe = 1
    assert settle(9) == b""
    waiters.claims[0, 7] = ((0, b"later"), 1, wire.BWAIT_CLAIMED, ())  # (made after it)
    waiters.claimed[0, b"later"] = 1
    waiters._unclaim((0, 6))
    assert not waiters.wakes
    waiters._unclaim((0, 5))
    assert waiters.wakes == [(1, wire.encode_wake(9, b":1\r\n"))] and not waiters.settles_all
    assert settle(10) == b""
    waiters.clear(1)
    assert not waiters.settles_all


def test_a_keyless_settle_waits_only_for_the_claims_its_scripts_made() -> None:
    """Behind scripts that noted the claims left as the first of them that
    wrote ended (``Waiters.script_wrote``), a keyless ``__bsettle`` waits
    only for the claims made since and those on keys they wrote: a claim
    an earlier write made, whose try another acceptor owes (stopped, or
    slow), holds up no script that left its key alone.  Where none noted
    any, ``__bsettle`` waits for every claim, as behind a run parked across
    shards; ``__bsettlealone`` (behind scripts sent to that shard alone)
    answers at once: they wrote nothing while anyone waited or claimed."""
    shard = Shard(0, 1)
    waiters = shard.waiters
    shard.keyspace.pipe = 1

    def settle(token: int, verb: bytes = wire.Verb.BSETTLE) -> bytes:
        return waiters.run(lambda args, handler: bsettle(shard.keyspace, args), token, 2, [verb])  # type: ignore[no-any-return]

    def claim(claim: tuple[int, int], key: tuple[int, bytes]) -> None:
        waiters.claims[claim] = (key, 1, wire.BWAIT_CLAIMED, ())
        waiters.claimed[key] = waiters.claimed.get(key, 0) + 1

    claim((0, 5), (0, b"k"))  # another pipe's, from before
    assert settle(3, wire.Verb.BSETTLE_ALONE) == b":1\r\n"  # (no script noted it)
    waiters.script_wrote([(0, [b"SET", b"z", b"v"])])
    waiters.script_wrote([(0, [b"SET", b"y", b"v"])])  # (the first's note stands)
    assert settle(4, wire.Verb.BSETTLE_ALONE) == b":1\r\n"  # claim (0, 5) is on k, left alone
    waiters.script_wrote([(0, [b"SET", b"z", b"v"])])
    claim((0, 6), (0, b"z"))  # one its write made
    assert settle(5, wire.Verb.BSETTLE_ALONE) == b"" and waiters.settles_all == [(1, 5, {(0, 6)})]
    waiters._unclaim((0, 6))
    assert waiters.wakes == [(1, wire.encode_wake(5, b":1\r\n"))]
    waiters.wakes.clear()
    waiters.script_wrote([(0, [b"RPUSH", b"k", b"x"])])  # k: waited for
    assert settle(6, wire.Verb.BSETTLE_ALONE) == b"" and waiters.settles_all == [(1, 6, {(0, 5)})]
    assert settle(7) == b"" and waiters.settles_all[1] == (1, 7, {(0, 5)})  # none noted: every claim
    waiters.clear(1)
    assert not waiters.settles_all and not waiters.settle_from


def test_a_settle_behind_a_parked_run_waits_for_every_claim_whatever_was_noted() -> None:
    """A keyless ``__bsettle`` comes behind a run parked across shards or
    an EXEC, whose writes note nothing (``Waiters.script_wrote`` runs for a
    script sent to its shard alone): a note its pipe holds then is an
    earlier script's, one with no settle behind it (its acceptor knew of
    no cross-shard wait, or its client waited for something else).  It
    used to wait only for the claims that note did not name, so a claim
    from before on a key the parked run wrote (undeclared, or after a
    SELECT), whose try was still on its way, did not hold its reply: a
    read pipelined behind it saw the element the try was to pop.  It
    waits for every claim, as the README says, and the note is gone."""
    shard = Shard(0, 1)
    waiters = shard.waiters
    shard.keyspace.pipe = 1

    def settle(token: int, verb: bytes = wire.Verb.BSETTLE) -> bytes:
        return waiters.run(lambda args, handler: bsettle(shard.keyspace, args), token, 2, [verb])  # type: ignore[no-any-return]

    waiters.claims[0, 5] = ((0, b"k"), 1, wire.BWAIT_CLAIMED, ())  # a try owed for k
    waiters.claimed[0, b"k"] = 1
    waiters.script_wrote([(0, [b"SET", b"z", b"v"])])  # no settle behind it: its note stays
    assert waiters.settle_from == {1: {(0, 5)}}
    assert settle(3) == b"" and waiters.settles_all == [(1, 3, {(0, 5)})]  # (a parked run wrote k)
    assert not waiters.settle_from
    waiters._unclaim((0, 5))
    assert waiters.wakes == [(1, wire.encode_wake(3, b":1\r\n"))]


def test_other_acceptors_movers_are_counted_by_key_and_forgotten_on_restart() -> None:
    """A write asks for each key it writes whether another acceptor's move
    waits on it (a dict look-up, not a scan of every mover); a -1 for a
    key not told (its acceptor restarted meanwhile) changes nothing."""
    k = b"movers-unit-key"
    assert not blocking._moved_elsewhere(k)
    blocking.bus_movers(None, 1, [1, k])  # type: ignore[arg-type]  # (the server is not used)
    blocking.bus_movers(None, 1, [1, k])  # type: ignore[arg-type]
    blocking.bus_movers(None, 2, [1, k])  # type: ignore[arg-type]
    blocking.bus_movers(None, 3, [-1, k])  # type: ignore[arg-type]
    assert blocking._moved_elsewhere(k) and blocking.EAGER_KEYS[k] == 3
    blocking.forget_movers(1)
    assert blocking._moved_elsewhere(k) and blocking.EAGER_KEYS[k] == 1
    blocking.bus_movers(None, 2, [-1, k])  # type: ignore[arg-type]
    assert not blocking._moved_elsewhere(k) and k not in blocking.EAGER_KEYS


def test_other_acceptors_pops_are_counted_by_key_and_forgotten_on_restart() -> None:
    """The keys of other acceptors' cross-shard pops (bus ``poppers``),
    which a write of one waits for: counted by key, a -1 not told changes
    nothing, a restart forgets its acceptor's; they make a command naming
    one take the slow path (``EAGER_KEYS``, counted alike), so that a
    plain write of one sends its ``__bsettle``."""
    k = b"poppers-unit-key"
    assert not blocking.pops_wait_on([k])
    blocking.bus_poppers(None, 1, [1, k])  # type: ignore[arg-type]  # (the server is not used)
    blocking.bus_poppers(None, 1, [1, k])  # type: ignore[arg-type]
    blocking.bus_poppers(None, 2, [1, k])  # type: ignore[arg-type]
    blocking.bus_poppers(None, 3, [-1, k])  # type: ignore[arg-type]
    assert blocking.pops_wait_on([b"other", k]) and blocking.POP_KEYS[k] == 3
    assert blocking.EAGER_KEYS[k] == 3
    blocking.forget_movers(1)
    assert blocking.POP_KEYS[k] == 1 and blocking.EAGER_KEYS[k] == 1
    blocking.bus_poppers(None, 2, [-1, k])  # type: ignore[arg-type]
    assert not blocking.pops_wait_on([k]) and k not in blocking.POP_KEYS and k not in blocking.EAGER_KEYS


def test_all_of_an_acceptors_movers_told_at_once_replace_those_told_before() -> None:
    """``MOVERS [0, key, n, ...]`` (an acceptor's answer to a restarted
    one's ``MOVERS_NOW``) replaces what that acceptor told before, and
    reaches the acceptors that knew already: counting it on top would
    leave keys eager for good."""
    k, j = b"movers-unit-all-k", b"movers-unit-all-j"
    blocking.bus_movers(None, 1, [1, k])  # type: ignore[arg-type]
    blocking.bus_movers(None, 2, [1, k])  # type: ignore[arg-type]
    blocking.bus_movers(None, 1, [0, k, 2, j, 1])  # type: ignore[arg-type]
    assert blocking.EAGER_KEYS[k] == 3 and blocking.EAGER_KEYS[j] == 1
    blocking.bus_movers(None, 1, [0, j, 1])  # type: ignore[arg-type]
    assert blocking.EAGER_KEYS[k] == 1 and blocking.EAGER_KEYS[j] == 1
    blocking.bus_movers(None, 1, [-1, j])  # type: ignore[arg-type]
    blocking.bus_movers(None, 2, [-1, k])  # type: ignore[arg-type]
    assert not blocking._moved_elsewhere(k) and not blocking._moved_elsewhere(j)
    assert k not in blocking.EAGER_KEYS and j not in blocking.EAGER_KEYS


def _blocked_across_shards(nacceptors: int = 2):
    """A client of an acceptor (one of ``nacceptors``) with two fake links
    in ``BLPOP a b 0`` (keys of the two shards) whose try found nothing:
    its ``__bpop``s sent, not answered yet."""
    acceptor, links = build()
    acceptor.nacceptors = nacceptors
    for link in links:
        link.up = True  # type: ignore[attr-defined]
        link.blocked = {}  # type: ignore[attr-defined]
    a, b = keys_on_two_shards(acceptor)
    client, _ = connect(acceptor)
    send(client, [b"BLPOP", a, b, b"0"])
    token = client.state.blocked_token
    for link in links:
        link.sent.clear()  # (the try, answered below as found nothing)
    blocking.WAITING[token].attempted(b"*-1\r\n")
    assert [len(link.sent) for link in links] == [1, 1]
    return acceptor, links, client, token


def test_a_cross_shard_wait_is_shown_blocked_once_each_shard_has_its_wait() -> None:
    """Shown (CLIENT LIST's b, INFO's blocked_clients) once both shards
    answered its ``__bpop``, not as they were sent: a write that saw it
    blocked, through another acceptor, could reach a shard first and be
    served as if it came before the block."""
    acceptor, links, client, token = _blocked_across_shards()
    assert not client.state.blocked
    links[0].answer(b"")  # (empty: it waits there)
    assert not client.state.blocked
    links[1].answer(b"")
    assert client.state.blocked
    client.connection_lost(None)
    assert token not in blocking.WAITING


def test_one_acceptors_cross_shard_wait_is_shown_blocked_as_its_waits_are_sent() -> None:
    """With one acceptor every write reaches a shard behind the waits on
    its link: shown at once, so a CLIENT UNBLOCK read after a read through
    each of its shards is decided by a try (1 if it finds nothing, as in
    Redis), not answered 0 at once."""
    acceptor, links, client, token = _blocked_across_shards(1)
    assert client.state.blocked  # (what CLIENT UNBLOCK asks before its try)
    client.connection_lost(None)
    assert token not in blocking.WAITING and not blocking.POP_KEYS


def test_a_cross_shard_client_gone_before_its_waits_arrive_is_forgotten_then() -> None:
    """Gone before it was shown blocked: it stays (Redis had it blocked,
    and freed it so) until its shards have its waits, then is forgotten
    and its waits cancelled (``__bdone``)."""
    acceptor, links, client, token = _blocked_across_shards()
    client.connection_lost(None)
    assert client in acceptor.leaving
    links[0].answer(b"")
    links[1].answer(b"")
    assert client not in acceptor.leaving and client.id not in acceptor.clients
    assert token not in blocking.WAITING
    assert all(link.bodies()[0].startswith(b"*2\r\n$7\r\n__bdone\r\n") for link in links)


def test_all_of_an_acceptors_pops_told_at_once_replace_those_told_before() -> None:
    """``POPPERS [0, key, n, ...]`` (with ``MOVERS [0, ...]``, the answer
    to a restarted acceptor's ``MOVERS_NOW``) as ``MOVERS``'s."""
    k = b"poppers-unit-all-k"
    blocking.bus_poppers(None, 1, [1, k])  # type: ignore[arg-type]
    blocking.bus_poppers(None, 1, [0, k, 2])  # type: ignore[arg-type]
    assert blocking.POP_KEYS[k] == 2
    blocking.bus_poppers(None, 1, [0])  # type: ignore[arg-type]
    assert not blocking.pops_wait_on([k])


def test_one_poppers_message_tells_all_the_keys_of_a_pop() -> None:
    """A cross-shard pop tells all its keys in one ``poppers`` message as
    it blocks, and as it ends (one message a key made a BLPOP of 3000
    keys, served at once with two acceptors, 3.5 times as slow)."""
    keys = [b"poppers-many-%d" % i for i in range(3)]
    blocking.bus_poppers(None, 1, [1, *keys])  # type: ignore[arg-type]  # (the server is not used)
    assert all(blocking.POP_KEYS[key] == 1 for key in keys)
    blocking.bus_poppers(None, 1, [-1, *keys])  # type: ignore[arg-type]
    assert not blocking.pops_wait_on(keys)
