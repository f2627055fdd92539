"""Several acceptors: a command over several shards takes holds first: it
tries every shard at once (a hold that never waits), and where a shard
refuses, takes the rest in ascending shard order, each acknowledged before
the next (see shardkv.acceptor.holds).  In one process, with fake shard
links."""

from __future__ import annotations

import marshal
import signal
import tempfile
import time

import pytest

from shardkv.acceptor import blocking, scripting, shardlink
from shardkv.acceptor.holds import HOLDING, HoldingClient
from shardkv.protocol import errors, wire
from shardkv.protocol.resp import encode_command, encode_error
from shardkv.protocol.wire import Verb
from tests.unit.test_acceptor_dispatch import FakeLink, MemoryTransport, build, replies, send

HOLD = encode_command([Verb.HOLD])
RELEASE = encode_command([Verb.RELEASE])
DEFER = encode_command([Verb.DEFER])
SERVE = encode_command([Verb.SERVE])


class Link(FakeLink):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.generation = 1
        self.tries: list = []  # the answers waited for, oldest first
        self.tried = 0  # T frames sent
        self.frames: list = []  # what left outside batches, in order: control frames, "T"

    def try_hold(self, answer) -> None:
        self.tried += 1
        self.tries.append(answer)
        self.frames.append("T")

    def queue_frame(self, payload: bytes) -> None:
        self.frames.append(wire.decode_control(payload))

    def grant(self, granted: bool = True) -> None:
        """The worker's answer to the oldest try not answered yet."""
        self.tries.pop(0)(granted)


def build_k(nshards: int = 3, index: int = 1, k: int = 2):
    acceptor, _ = build(nshards)
    links = [Link(i) for i in range(nshards)]
    acceptor.links = links  # type: ignore[assignment]
    acceptor.set_index(index, k)
    return acceptor, links


def connect(acceptor):
    client = acceptor.client_class(acceptor)
    transport = MemoryTransport()
    client.connection_made(transport)
    return client, transport


def keys_per_shard(acceptor, n: int) -> list[bytes]:
    found: dict[int, bytes] = {}
    for i in range(1000):
        key = b"k%d" % i
        found.setdefault(acceptor.shard_of(key), key)
    return [found[s] for s in range(n)]


class _Loop:
    def call_soon(self, fn, *args):
        fn(*args)


class _Later:
    """A loop whose ``call_soon`` runs nothing until the test says so."""

    def __init__(self, later: list) -> None:
        self.later = later

    def call_soon(self, fn, *args):
        self.later.append((fn, *args))


def one_client(nshards: int):
    """An acceptor of two with ``nshards`` fake links, a key on each shard
    (in shard order), one client, and a loop that runs ``call_soon`` at once."""
    acceptor, links = build_k(nshards)
    keys = keys_per_shard(acceptor, nshards)
    client, transport = connect(acceptor)
    acceptor.loop = _Loop()
    return acceptor, links, keys, client, transport


def mget_on_two_shards():
    """:func:`one_client` on two shards, its ``MGET k0 k1`` sent (it tries
    both shards)."""
    acceptor, links, keys, client, transport = one_client(2)
    send(client, [b"MGET", *keys])
    return acceptor, links, transport


def test_client_ids_interleave() -> None:
    acceptor, _ = build_k(index=1, k=3)
    assert [acceptor.next_client_id() for _ in range(3)] == [2, 5, 8]
    alone, _ = build(2)
    assert alone.holds is None and [alone.next_client_id() for _ in range(2)] == [1, 2]


def test_mget_over_shards_tries_every_shard_at_once_then_runs_and_releases() -> None:
    acceptor, links, (k0, k1, k2), client, transport = one_client(3)
    assert type(client) is HoldingClient
    send(client, [b"MGET", k2, k0, k1], [b"GET", k2])
    # One try on every shard at once, nothing else; the GET waits.
    assert [link.tried for link in links] == [1, 1, 1] and not any(link.sent for link in links)
    assert client.state.blocked_token == HOLDING
    links[2].grant()
    links[0].grant()
    assert not any(link.sent for link in links)
    links[1].grant()
    # Every shard granted: one round trip, no __hold.  Now the parts, each
    # followed by the release, on every shard; the GET that waited, on a
    # held shard, rides along behind its MGET's part (Holds._take_along_all).
    for s, link in enumerate(links):
        assert link.bodies()[0] == encode_command([b"MGET", [k0, k1, k2][s]])
        assert link.bodies()[1:] == ([encode_command([b"GET", k2])] if s == 2 else []) + [RELEASE]
    assert HOLD not in [b for link in links for b in link.bodies()]
    assert [link.tried for link in links] == [1, 1, 1]
    assert client.state.blocked_token == 0
    for s, link in enumerate(links):
        link.answer(marshal.dumps([b"v%d" % s]))
    links[2].answer(b"$1\r\nx\r\n")
    for link in links:
        link.answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"*3\r\n$2\r\nv2\r\n$2\r\nv0\r\n$2\r\nv1\r\n$1\r\nx\r\n"


def test_a_refused_try_keeps_the_holds_below_it_releases_those_above_and_holds_in_order() -> None:
    _, links, keys, client, _ = one_client(4)
    send(client, [b"MSET", *(x for k in keys for x in (k, b"v"))])
    links[0].grant()
    links[1].grant(False)
    links[2].grant(False)
    links[3].grant()
    # Shard 0 stays held; shard 3's hold is released (it is above the
    # refusal), and shard 1 is held in order, waiting its turn.
    assert not links[0].sent and not links[2].sent
    assert links[3].bodies() == [RELEASE]
    assert links[1].bodies() == [HOLD]
    links[1].answer(b"+OK\r\n")
    assert links[2].bodies() == [HOLD]
    links[2].answer(b"+OK\r\n")
    assert links[3].bodies() == [RELEASE, HOLD]
    links[3].answer(b"+OK\r\n")  # the release
    links[3].answer(b"+OK\r\n")  # the hold
    # Every shard held: the step leaves, each part followed by its release.
    for link in links:
        assert link.bodies()[-1] == RELEASE and link.bodies()[-2] not in (HOLD, RELEASE)
    assert [link.tried for link in links] == [1, 1, 1, 1]


def test_every_try_refused_falls_back_to_holds_in_ascending_order() -> None:
    _, links, _ = mget_on_two_shards()
    links[1].grant()
    links[0].grant(False)
    assert links[1].bodies() == [RELEASE] and links[0].bodies() == [HOLD]
    links[0].answer(b"+OK\r\n")
    assert links[1].bodies() == [RELEASE, HOLD]


def test_a_single_shard_command_takes_no_hold() -> None:
    acceptor, links = build_k(3)
    k0, _, _ = keys_per_shard(acceptor, 3)
    client, transport = connect(acceptor)
    send(client, [b"SET", k0, b"v"], [b"MGET", k0, k0])
    assert links[0].bodies() == [encode_command([b"SET", k0, b"v"]), encode_command([b"MGET", k0, k0])]
    assert not links[1].sent and not links[2].sent


def test_a_shard_that_cannot_be_held_fails_its_step_on_every_shard_and_the_others_are_released() -> None:
    acceptor, links, transport = mget_on_two_shards()
    links[0].grant()
    links[1].grant(False)  # a link refuses the try of a shard that is down
    links[1].answer(encode_error(errors.SHARD_UNAVAILABLE))  # so does its __hold
    # The step goes whole or not at all: shard 0 gets the release alone,
    # shard 1 nothing more.
    assert links[0].bodies() == [RELEASE]
    assert not links[1].sent
    assert replies(acceptor, transport) == b""  # until the release is answered
    links[0].answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"-" + errors.SHARD_UNAVAILABLE.encode() + b"\r\n"


def test_a_shard_restarted_while_held_gets_neither_the_part_nor_the_release() -> None:
    acceptor, links, transport = mget_on_two_shards()
    links[0].grant()
    links[0].generation += 1  # its worker died and came back: the hold is gone
    links[1].grant()
    assert not links[0].sent
    assert links[1].bodies() == [RELEASE]  # nor does the other shard get its part
    links[1].answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"-" + errors.SHARD_UNAVAILABLE.encode() + b"\r\n"


def test_requests_of_one_acceptor_run_one_at_a_time_in_order() -> None:
    acceptor, links = build_k(2)
    k0, k1 = keys_per_shard(acceptor, 2)
    a, _ = connect(acceptor)
    b, _ = connect(acceptor)
    acceptor.loop = _Loop()
    send(a, [b"MGET", k0, k1])
    send(b, [b"DEL", k0, k1])
    assert [link.tried for link in links] == [1, 1]  # b's request waits behind a's
    links[0].grant()
    links[1].grant()
    # a's parts and releases are out; then b's tries (the link sends what
    # it queued before a try first).
    assert links[0].bodies()[-1] == RELEASE and links[1].bodies()[-1] == RELEASE
    assert [link.tried for link in links] == [2, 2]


def test_requests_queued_behind_one_take_their_holds_together() -> None:
    """Two requests of other clients queued while ``a``'s waited for its
    tries: one round of tries on the union of their shards, then both
    steps' entries, in queue order, and one ``__release`` per shard behind
    them; each client gets its own reply."""
    acceptor, links = build_k(3)
    k0, k1, k2 = keys_per_shard(acceptor, 3)
    a, a_out = connect(acceptor)
    b, b_out = connect(acceptor)
    c, c_out = connect(acceptor)
    acceptor.loop = _Loop()
    send(a, [b"MGET", k0, k1])
    send(b, [b"MGET", k0, k1])
    send(c, [b"MGET", k1, k2])
    assert [link.tried for link in links] == [1, 1, 0]
    links[0].grant()
    links[1].grant()
    assert [link.tried for link in links] == [2, 2, 1]  # b's and c's: one try per shard
    for link in links:
        link.grant()

    def mget(key: bytes) -> bytes:
        return encode_command([b"MGET", key])

    assert links[0].bodies() == [mget(k0), RELEASE, mget(k0), RELEASE]  # a's step, then b's
    assert links[1].bodies() == [mget(k1), RELEASE, mget(k1), mget(k1), RELEASE]  # b's part, c's
    assert links[2].bodies() == [mget(k2), RELEASE]
    for s, link in enumerate(links):
        for body in link.bodies():
            link.answer(b"+OK\r\n" if body == RELEASE else marshal.dumps([b"v%d" % s]))
    assert replies(acceptor, a_out) == b"*2\r\n$2\r\nv0\r\n$2\r\nv1\r\n"
    assert replies(acceptor, b_out) == b"*2\r\n$2\r\nv0\r\n$2\r\nv1\r\n"
    assert replies(acceptor, c_out) == b"*2\r\n$2\r\nv1\r\n$2\r\nv2\r\n"
    assert all(client.state.blocked_token == 0 for client in (a, b, c))


def _prepared(link: Link) -> None:
    """The shard's answer to its oldest entry, a ``__prepare``: it changed
    its keys and parked."""
    op = int(link.bodies()[0].split(b"\r\n")[4])
    link.answer(wire.encode_answer(wire.PartPrepared(op, True, "OK")))


def test_a_request_tries_its_shards_only_behind_the_decision_they_are_parked_for(
    monkeypatch, tmp_path
) -> None:
    """A shard parked for this acceptor's MSET refuses tries, so the next
    request over it would fall back on ``__hold``, one round trip per
    shard, each answered only after that decision: it tries them once the
    decision is out, its ``T`` frames behind the ``Decide`` on each pipe."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the decisions file
    acceptor, links = build_k(2)
    k0, k1 = keys_per_shard(acceptor, 2)
    a, _ = connect(acceptor)
    b, _ = connect(acceptor)
    acceptor.loop = _Loop()
    send(a, [b"MSET", k0, b"1", k1, b"1"])
    send(b, [b"MSET", k0, b"2", k1, b"2"])
    links[0].grant()
    links[1].grant()
    assert [link.bodies()[1] for link in links] == [RELEASE, RELEASE]  # a's parts are out
    assert [link.tried for link in links] == [1, 1]  # b's tries wait for a's decision
    _prepared(links[0])
    assert [link.tried for link in links] == [1, 1]
    _prepared(links[1])
    # a is decided: its Decide, then b's try, on each pipe; no __hold.
    for link in links:
        assert [type(f) if f != "T" else f for f in link.frames] == ["T", wire.Decide, "T"]
        assert link.frames[1].commit
    links[0].grant()
    links[1].grant()
    # b's parts and releases, behind a's release: no __hold anywhere.
    for link in links:
        assert link.bodies()[0] == RELEASE and link.bodies()[2] == RELEASE
        assert link.bodies()[1].split(b"\r\n")[2] == Verb.PREPARE and b"\r\n2\r\n" in link.bodies()[1]
        assert HOLD not in link.bodies()


def _op_of(body: bytes) -> int:
    return int(body.split(b"\r\n")[4])


def test_a_pipelining_clients_next_commands_ride_along_on_its_holds(monkeypatch, tmp_path) -> None:
    """A client pipelines cross-shard MSETs: once its first one holds its
    shards, the commands it sent behind it that touch only those shards
    (MSET, GET, MGET) run and follow it, in its order, before the
    ``__release``: one round of tries, one batch of parts, where each MSET
    took a round of its own.  The first command that needs another shard
    (the GET of shard 2) stops them: it and what follows it run after, in
    order, as before."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the decisions file
    acceptor, links, (k0, k1, k2), client, transport = one_client(3)
    send(
        client,
        [b"MSET", k0, b"1", k1, b"1"],
        [b"MSET", k0, b"2", k1, b"2"],
        [b"GET", k0],
        [b"MGET", k0, k1],
        [b"GET", k2],
        [b"MSET", k0, b"3", k1, b"3"],
    )
    assert [link.tried for link in links] == [1, 1, 0]
    links[0].grant()
    links[1].grant()
    for s, key in ((0, k0), (1, k1)):
        bodies = links[s].bodies()
        assert [b.split(b"\r\n")[2] for b in bodies[:2]] == [Verb.PREPARE, Verb.PREPARE]
        assert [b.split(b"\r\n")[-2] for b in bodies[:2]] == [b"1", b"2"]  # the values, in order
        assert _op_of(bodies[0]) < _op_of(bodies[1])
        reads = [encode_command([b"GET", k0])] if s == 0 else []
        assert bodies[2:] == [*reads, encode_command([b"MGET", key]), RELEASE]
    # The GET on shard 2 went once the client's wait was over, on its own;
    # the last MSET waits for the decisions on its shards before it tries.
    assert links[2].bodies() == [encode_command([b"GET", k2])]
    assert [link.tried for link in links] == [1, 1, 0]
    later: list = []
    acceptor.loop = _Later(later)
    for s in (0, 1):
        link = links[s]
        for _ in range(2):
            link.answer(wire.encode_answer(wire.PartPrepared(_op_of(link.bodies()[0]), True, "OK")))
    for fn, *args in later:  # the end of the loop turn
        fn(*args)
    # Both MSETs decided: two Decide frames on each pipe, then the last
    # MSET's try behind them.
    for s in (0, 1):
        assert [type(f) if f != "T" else f for f in links[s].frames] == ["T", wire.Decide, wire.Decide, "T"]
    for s in (0, 1):
        link = links[s]
        if s == 0:
            link.answer(b"$1\r\n2\r\n")
        link.answer(marshal.dumps([b"2"]))
        link.answer(b"+OK\r\n")
    links[2].answer(b"$-1\r\n")
    assert replies(acceptor, transport) == b"+OK\r\n+OK\r\n$1\r\n2\r\n*2\r\n$1\r\n2\r\n$1\r\n2\r\n$-1\r\n"


def test_only_commands_on_held_shards_that_go_to_the_shards_ride_along() -> None:
    """What joins a request is a prefix of the client's commands, each one
    whose whole effect is its entries on the shards held: not a local
    command (PING), nor a blocking one, nor a cross-shard operation that
    parks (RENAME between shards); those and everything after them wait."""
    for behind in ([b"PING"], [b"BLPOP", b"x", b"0"], [b"RENAME", b"K0", b"K1"]):
        acceptor, links, (k0, k1), client, _ = one_client(2)
        if behind[0] == b"RENAME":
            behind = [b"RENAME", k0, k1]
        elif behind[0] == b"BLPOP":
            behind = [b"BLPOP", k0, b"0"]
        send(client, [b"MGET", k0, k1], behind, [b"GET", k0])
        assert len(client.state.held) == 2
        acceptor.loop = _Later([])  # the client's wait ends, its next turn does not come
        links[0].grant()
        links[1].grant()
        # The release right behind the MGET's part: what came after it runs
        # once the client's wait is over, in order.
        assert links[0].bodies() == [encode_command([b"MGET", k0]), RELEASE], behind
        assert len(client.state.held) == 2 and client.state.blocked_token == 0


def test_watchs_ok_waits_until_every_shard_has_recorded_the_versions() -> None:
    """Another acceptor's write right after the OK must count as a change."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    send(client, [b"WATCH", k0, k1])
    assert replies(acceptor, transport) == b""
    links[0].grant()
    links[1].grant()
    assert [b[:9] for b in links[0].bodies()] == [encode_command([Verb.WATCH, k0])[:9], RELEASE[:9]]
    links[0].answer(marshal.dumps([3]))
    links[0].answer(b"+OK\r\n")
    links[1].answer(marshal.dumps([4]))
    assert replies(acceptor, transport) == b""  # shard 1's release is not answered yet
    links[1].answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"+OK\r\n"
    assert client.state.watching == {(0, k0): 3, (0, k1): 4}


# -- the link's side of a try ------------------------------------------------------


def _link():
    from shardkv.acceptor.shardlink import ShardLink

    link = ShardLink(0, lambda link: None, lambda: None)
    transport = MemoryTransport()
    link.attached(transport)  # type: ignore[arg-type]
    return link, transport


def test_a_link_sends_a_try_behind_what_it_queued_and_answers_tries_in_order() -> None:
    from shardkv.protocol import wire

    link, transport = _link()
    answers: list[bool] = []
    link.send(wire.entry_header(0), RELEASE, Sink())
    link.try_hold(answers.append)
    link.try_hold(answers.append)
    # The queued release leaves first, then the T frames.
    assert transport.written[0].endswith(RELEASE)
    assert transport.written[1:] == [wire.FRAME.pack(1) + wire.TRY_FRAME] * 2
    for payload in (wire.TRY_REFUSED, wire.TRY_GRANTED):
        link.data_received(wire.FRAME.pack(len(payload)) + payload)
    assert answers == [False, True]


def test_a_link_refuses_tries_when_its_worker_is_down_busy_or_restarted() -> None:
    link, transport = _link()
    answers: list[bool] = []
    link.try_hold(answers.append)
    link.detached(transport)  # type: ignore[arg-type]  # the worker died before answering
    assert answers == [False]
    link.try_hold(answers.append)  # down: not asked
    assert answers == [False, False]
    link.attached(MemoryTransport())  # type: ignore[arg-type]
    link.busy = b"-BUSY\r\n"
    link.try_hold(answers.append)
    assert answers == [False, False, False]
    assert len(link.tries) == 0


class Sink:
    def deliver(self, body: bytes) -> None:
        pass


def test_after_queued_waits_for_the_requests_queued_before_and_not_those_after() -> None:
    """What a SCRIPT KILL read before busy-reply-threshold sends (its
    ``__ping``s, see shardlink.at_threshold) follows the steps read before
    it that still wait for their holds, not those read after it."""
    acceptor, links = build_k(2)
    k0, k1 = keys_per_shard(acceptor, 2)
    a, _ = connect(acceptor)
    b, _ = connect(acceptor)
    acceptor.loop = _Loop()
    holds = acceptor.holds
    called: list = []
    holds.after_queued(lambda: called.append("none waits"))
    assert called == ["none waits"]
    send(a, [b"MGET", k0, k1])
    holds.after_queued(lambda: called.append([link.bodies()[-1] for link in links]))
    send(b, [b"DEL", k0, k1])  # queued after: not waited for
    assert called == ["none waits"]
    links[0].grant()
    links[1].grant()
    # a's parts left: then (before their releases and b's request).
    assert called == ["none waits", [encode_command([b"MGET", k]) for k in (k0, k1)]]
    assert [link.tried for link in links] == [2, 2]


def test_a_kill_behind_a_waiting_step_is_decided_at_a_busy_report_of_its_turn(monkeypatch) -> None:
    """SCRIPT KILL read while a step over both shards waits for its holds,
    and in the same loop turn, after it, a worker's busy report: at the
    turn's end the kill is decided at once (it kills the script), as
    ``at_threshold`` says of a busy link.  It waited for the step to leave
    or for the next busy change instead: the change it waited for had come
    already, and a step whose hold waits behind that script (sent before
    its threshold, never refused) leaves only at the script's end, so the
    kill of a script that loops waited for ever."""
    signalled: list = []
    monkeypatch.setattr(scripting.os, "kill", lambda pid, sig: signalled.append((pid, sig)))
    acceptor, links = build_k(2)
    for link in links:
        link.script = None
        link.up = True
        link.kill_sent = False
        link.script_epoch = -1
        link.kill_verdicts = []
    k0, k1 = keys_per_shard(acceptor, 2)
    a, _ = connect(acceptor)
    b, tb = connect(acceptor)
    later: list = []
    acceptor.loop = _Later(later)
    send(a, [b"MGET", k0, k1])  # waits for its tries
    send(b, [b"SCRIPT", b"KILL"])
    links[0].script = (4321, False, True)  # shard 0's busy report, read in the same turn
    while later:
        fn, *args = later.pop(0)
        fn(*args)
    assert signalled == [(4321, signal.SIGUSR1)]
    assert replies(acceptor, tb) == b""  # the worker decides (scripting._KillVerdict)
    (told,) = links[0].kill_verdicts
    links[0].script = None
    told(shardlink.KILLED, time.monotonic())  # its end's report: it stopped the script
    assert replies(acceptor, tb) == b"+OK\r\n"


def test_a_release_through_a_busy_link_still_reaches_the_worker() -> None:
    """A shard may go busy under this acceptor's hold (a one-shard script of
    its own runs there while its step waits for a higher shard); the step's
    ``__release`` must still be written to the worker, not answered -BUSY
    here, or the worker reads only this acceptor's pipe for ever."""
    from shardkv.acceptor import holds

    link, transport = _link()
    link.busy = b"-BUSY\r\n"
    answered: list[bytes] = []

    class Recorder:
        def deliver(self, body: bytes) -> None:
            answered.append(body)

    holds._send_release(link, Recorder())
    link._write()  # the end of the loop turn
    assert any(frame.endswith(RELEASE) for frame in transport.written)
    assert answered == []  # not refused at once: the worker answers it


def _steps(link: Link) -> list[bytes]:
    """What ``link`` was sent but the EXEC's ``__defer`` and ``__serve``
    (the acceptor's own messages, sent at once)."""
    return [body for body in link.bodies() if body not in (DEFER, SERVE)]


def _exec_meets_a_busy_hold(commands: list[list[bytes]]):
    """:func:`one_client` on two shards, its transaction of ``commands``
    sent whole (MULTI ... EXEC): the EXEC's step holds shard 0 (after a
    refused try), and then shard 1's ``__hold`` is answered ``-BUSY``: a
    script went past busy-reply-threshold there while the step waited."""
    acceptor, links, keys, client, transport = one_client(2)
    send(client, [b"MULTI"], *commands, [b"EXEC"])
    assert [link.tried for link in links] == [1, 1]
    links[1].grant()
    links[0].grant(False)  # held by another acceptor's step: in order now
    assert _steps(links[0]) == [HOLD] and _steps(links[1]) == [RELEASE]
    links[0].answer(b"+OK\r\n")
    while links[1].bodies()[0] != HOLD:  # the release (and EXEC's __defer, __serve)
        links[1].answer(b"+OK\r\n")
    links[1].answer(encode_error(errors.BUSY))
    return acceptor, links, keys, transport


def test_an_exec_whose_hold_one_shard_refuses_busy_runs_on_no_shard() -> None:
    """Redis reads that EXEC at the threshold and answers it EXECABORT with
    the -BUSY, running none of its commands; a GET on the held shard run
    and a SET refused inside the array was a torn transaction."""
    k0, k1 = keys_per_shard(build_k(2)[0], 2)
    acceptor, links, _, transport = _exec_meets_a_busy_hold([[b"GET", k0], [b"SET", k1, b"v"]])
    assert _steps(links[0]) == [RELEASE]  # the GET never left
    assert not links[1].sent
    links[0].answer(b"+OK\r\n")
    busy = (errors.EXECABORT_BECAUSE % errors.BUSY).encode()
    assert replies(acceptor, transport) == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n-" + busy + b"\r\n"
    stats = acceptor.stats.commands["exec"]
    assert stats[:4] == [0, 0, 1, 0]  # a rejected call, as Redis counts it (no call)


def test_an_mset_whose_hold_one_shard_refuses_busy_prepares_nothing() -> None:
    """The same for a write across shards: its part on the held shard
    does not leave (prepared and undone it was not a tear, but Redis runs
    nothing of it), and the client gets the -BUSY."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    send(client, [b"MSET", k0, b"a", k1, b"b"])
    links[1].grant()
    links[0].grant(False)
    links[0].answer(b"+OK\r\n")
    links[1].answer(b"+OK\r\n")
    links[1].answer(encode_error(errors.BUSY))
    assert links[0].bodies() == [RELEASE] and not links[1].sent
    links[0].answer(b"+OK\r\n")
    assert replies(acceptor, transport) == b"-" + errors.BUSY.encode() + b"\r\n"


def test_an_exec_refused_at_a_busy_hold_leaves_its_local_commands_unrun() -> None:
    """Its SELECT and CLIENT SETNAME (commands of this acceptor's) must not
    run either: Redis runs nothing of an EXEC it refuses, and the client
    stays in its database, unnamed.  Routed command by command, they ran
    as the EXEC was routed, before its hold was refused: the client's next
    commands went to database 1."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    send(
        client,
        [b"MULTI"],
        [b"SELECT", b"1"],
        [b"CLIENT", b"SETNAME", b"torn"],
        [b"GET", k0],
        [b"SET", k1, b"v"],
        [b"EXEC"],
    )
    links[1].grant()
    links[0].grant(False)  # held by another acceptor's step: in order now
    links[0].answer(b"+OK\r\n")
    while links[1].bodies()[0] != HOLD:  # the release (and any message of the acceptor's own)
        links[1].answer(b"+OK\r\n")
    links[1].answer(encode_error(errors.BUSY))
    assert _steps(links[0]) == [RELEASE] and not links[1].sent  # nothing of it left
    links[0].answer(b"+OK\r\n")
    busy = (errors.EXECABORT_BECAUSE % errors.BUSY).encode()
    assert replies(acceptor, transport) == b"+OK\r\n" + b"+QUEUED\r\n" * 4 + b"-" + busy + b"\r\n"
    assert (client.db, client.name) == (0, b"")
    stats = acceptor.stats.commands
    assert [stats.get(name, [0])[0] for name in ("select", "client|setname")] == [0, 0]  # no call


def test_an_exec_refused_at_a_busy_hold_still_unwatches_its_keys() -> None:
    """A WATCHed EXEC's ``__unwatch``es ride in its step, behind its
    ``__park``s: refused whole, the step must still tell each shard that
    nobody watches the keys (the EXEC is discarded, its WATCH with it), or
    the shards count those watchers for ever.  The held shard gets it
    before its release; the busy one, behind its script (never refused)."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    send(client, [b"WATCH", k0, k1])
    for link in links:
        link.grant()
    for link, version in zip(links, (3, 4), strict=True):
        link.answer(marshal.dumps([version]))
        link.answer(b"+OK\r\n")
    send(client, [b"MULTI"], [b"GET", k0], [b"SET", k1, b"v"], [b"EXEC"])
    links[1].grant()
    links[0].grant(False)
    links[0].answer(b"+OK\r\n")
    while links[1].bodies()[0] != HOLD:
        links[1].answer(b"+OK\r\n")
    links[1].answer(encode_error(errors.BUSY))
    unwatch = [encode_command([Verb.UNWATCH, k]) for k in (k0, k1)]
    assert _steps(links[0]) == [unwatch[0], RELEASE] and _steps(links[1]) == [unwatch[1]]
    for link in links:
        while link.sent:
            link.answer(b"+OK\r\n")
    busy = (errors.EXECABORT_BECAUSE % errors.BUSY).encode()
    assert replies(acceptor, transport) == b"+OK\r\n+OK\r\n+QUEUED\r\n+QUEUED\r\n-" + busy + b"\r\n"


def _subscribed(acceptor, links, channel: bytes):
    """A client of ``acceptor`` subscribed to ``channel`` (its ``__ping``s
    answered; the channels are the process's: one per test)."""
    sub, transport = connect(acceptor)
    send(sub, [b"SUBSCRIBE", channel])
    for link in links:
        while link.sent:
            link.answer(b"+OK\r\n")
    assert (
        replies(acceptor, transport)
        == b"*3\r\n$9\r\nsubscribe\r\n" + encode_command([channel])[4:] + b":1\r\n"
    )
    return transport


def test_an_exec_over_every_shard_refused_at_a_busy_hold_runs_none_of_its_local_commands() -> None:
    """An EXEC with a command over every shard (KEYS) and acceptor commands
    (SELECT, CLIENT SETNAME, PUBLISH): refused whole at a busy hold, none
    of them may run, as Redis runs nothing of an EXEC it refuses at the
    threshold.  Routed command by command they ran before the holds were
    taken: the client went on in database 1, named, and the subscriber got
    the message of a transaction answered EXECABORT."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    heard = _subscribed(acceptor, links, b"refused")
    send(
        client,
        [b"MULTI"],
        [b"SELECT", b"1"],
        [b"CLIENT", b"SETNAME", b"torn"],
        [b"PUBLISH", b"refused", b"m"],
        [b"KEYS", b"*"],
        [b"EXEC"],
    )
    links[1].grant()
    links[0].grant(False)  # held by another acceptor's step: in order now
    links[0].answer(b"+OK\r\n")
    while links[1].bodies()[0] != HOLD:
        links[1].answer(b"+OK\r\n")
    links[1].answer(encode_error(errors.BUSY))
    assert _steps(links[0]) == [RELEASE] and not links[1].sent  # nothing of it left
    links[0].answer(b"+OK\r\n")
    busy = (errors.EXECABORT_BECAUSE % errors.BUSY).encode()
    assert replies(acceptor, transport) == b"+OK\r\n" + b"+QUEUED\r\n" * 4 + b"-" + busy + b"\r\n"
    assert replies(acceptor, heard) == b""  # nothing published
    assert (client.db, client.name) == (0, b"")
    stats = acceptor.stats.commands
    assert [stats.get(name, [0])[0] for name in ("select", "client|setname", "publish", "keys")] == [0] * 4


def test_an_exec_over_every_shard_with_local_commands_runs_them_once_it_holds_every_shard() -> None:
    """The same EXEC, every try granted: it runs whole, its local commands
    in their places, its KEYS on both shards under the holds."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    heard = _subscribed(acceptor, links, b"held")
    send(
        client,
        [b"MULTI"],
        [b"SELECT", b"1"],
        [b"PUBLISH", b"held", b"m"],
        [b"KEYS", b"*"],
        [b"EXEC"],
        [b"GET", k0],
    )
    assert client.db == 0 and replies(acceptor, heard) == b""  # nothing ran before its holds
    for link in links:
        link.grant()
    keys = encode_command([b"KEYS", b"*"])
    for link in links:
        assert _steps(link)[0] == keys and _steps(link)[-1] == RELEASE
    assert client.db == 1 and replies(acceptor, heard) == b"*3\r\n$7\r\nmessage\r\n$4\r\nheld\r\n$1\r\nm\r\n"
    for s, link in enumerate(links):
        while link.sent:
            body = link.bodies()[0]
            link.answer(
                b"*1\r\n$2\r\nk%d\r\n" % s if body == keys else b"$-1\r\n" if body != RELEASE else b"+OK\r\n"
            )
    assert replies(acceptor, transport) == (
        b"+OK\r\n" + b"+QUEUED\r\n" * 3 + b"*3\r\n+OK\r\n:1\r\n*2\r\n$2\r\nk0\r\n$2\r\nk1\r\n$-1\r\n"
    )


def test_an_exec_whose_step_meets_a_busy_shard_and_a_down_one_answers_execabort() -> None:
    """One shard of the EXEC's step is down, another busy with a script:
    Redis, which has no shard down, reads the EXEC at the threshold and
    answers EXECABORT with the -BUSY.  The step's first such shard gave
    the error, the worker-down one, which left each command's own error in
    an array (an array of errors for a transaction that did not run)."""
    acceptor, links, (k0, k1, k2), client, transport = one_client(3)
    send(client, [b"MULTI"], [b"GET", k0], [b"GET", k1], [b"SET", k2, b"v"], [b"EXEC"])
    links[0].grant()
    links[1].grant(False)  # its worker is down: the link refuses the try
    links[2].grant()
    while links[2].sent:  # (its release)
        links[2].answer(b"+OK\r\n")
    links[1].answer(encode_error(errors.SHARD_UNAVAILABLE))  # and the __hold
    while links[2].bodies()[0] != HOLD:
        links[2].answer(b"+OK\r\n")
    links[2].answer(encode_error(errors.BUSY))
    assert _steps(links[0]) == [RELEASE] and not links[1].sent and not links[2].sent
    links[0].answer(b"+OK\r\n")
    busy = (errors.EXECABORT_BECAUSE % errors.BUSY).encode()
    assert replies(acceptor, transport) == b"+OK\r\n" + b"+QUEUED\r\n" * 3 + b"-" + busy + b"\r\n"


@pytest.mark.parametrize("busy", [False, True])
def test_an_exec_over_every_shard_routed_once_held_shows_its_lines_then_exec_as_redis(busy: bool) -> None:
    """MONITOR, as redis-server 7.0.15 shows it: the commands' lines, then
    EXEC's in the database the transaction's SELECT left; refused at a busy
    hold, EXEC's alone (execCommandAbort feeds it), in database 0."""
    acceptor, links, (k0, _), client, transport = one_client(2)
    watcher, seen = connect(acceptor)
    send(watcher, [b"MONITOR"])
    send(client, [b"MULTI"], [b"SELECT", b"1"], [b"KEYS", b"*"], [b"EXEC"])
    if busy:
        links[1].grant()
        links[0].grant(False)
        links[0].answer(b"+OK\r\n")
        while links[1].bodies()[0] != HOLD:
            links[1].answer(b"+OK\r\n")
        links[1].answer(encode_error(errors.BUSY))
    else:
        for link in links:
            link.grant()
    for link in links:
        while link.sent:
            link.answer(b"*0\r\n" if link.bodies()[0] == encode_command([b"KEYS", b"*"]) else b"+OK\r\n")
    lines = [line.split(b" ", 1)[1] for line in replies(acceptor, seen).split(b"\r\n")[1:-1]]
    addr = b"127.0.0.1:40000]"
    ran = [b'[1 %s "SELECT" "1"' % addr, b'[1 %s "KEYS" "*"' % addr, b'[1 %s "EXEC"' % addr]
    assert lines == [b'[0 %s "MULTI"' % addr, *([b'[0 %s "EXEC"' % addr] if busy else ran)]


def test_a_bug_in_an_exec_routed_once_held_costs_its_client_alone(monkeypatch) -> None:
    """A command of an EXEC routed once it holds every shard (local
    commands beside KEYS) meets a bug that escapes it (a handler that
    replied, then raised): its client is closed, as one whose EXEC was
    routed as it was read (Client.data_received), and the holds go back.
    Raised out of the hold's answer, it stopped the request midway: its
    shards stayed held for ever (every acceptor's steps over them waited)
    and this acceptor's next steps never tried; out of a try's answer,
    the pipe's reader took down the whole acceptor."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    transport.abort = lambda: None  # type: ignore[attr-defined]

    def broken(c, args) -> None:
        c.pending.append(b"+PARTLY\r\n")
        raise RuntimeError("a bug")

    monkeypatch.setitem(acceptor.local, "echo", broken)
    send(client, [b"MULTI"], [b"ECHO", b"x"], [b"KEYS", b"*"], [b"EXEC"])
    other, seen = connect(acceptor)
    send(other, [b"MGET", k0, k1])  # queued behind the EXEC's request
    assert [link.tried for link in links] == [1, 1]
    for link in links:
        link.grant()
    assert client.closed
    assert [_steps(link) for link in links] == [[RELEASE], [RELEASE]]  # nothing of it, the holds back
    for link in links:
        link.answer(b"+OK\r\n")
    assert [link.tried for link in links] == [2, 2]  # the next request went on
    for link in links:
        link.grant()
    for link in links:
        link.answer(marshal.dumps([b"v%d" % link.index]))
        link.answer(b"+OK\r\n")
    assert replies(acceptor, seen) == b"*2\r\n$2\r\nv0\r\n$2\r\nv1\r\n"


_PING = encode_command([b"__ping"])


def _answer(link: Link, body: bytes, answer: bytes) -> None:
    """Answer ``link``'s oldest entry ``body``, wherever it stands (behind
    a blocked client's BLPOP, which the shard answers later)."""
    entry = next(entry for entry in link.sent if entry[1] == body)
    link.sent.remove(entry)
    entry[2].deliver(answer)  # type: ignore[attr-defined]


def _answer_pings(links) -> None:
    """Answer the ``__ping`` each link was sent (an EXEC with a CLIENT
    UNBLOCK waits for the shards' scripts first)."""
    for link in links:
        while _PING in link.bodies():
            _answer(link, _PING, b"+PONG\r\n")


def _refuse_busy(links) -> None:
    """The step's try on shard 0 refused (another acceptor holds it), its
    hold granted, then shard 1's hold answered ``-BUSY``."""
    links[1].grant()
    links[0].grant(False)
    _answer(links[0], HOLD, b"+OK\r\n")
    _answer(links[1], RELEASE, b"+OK\r\n")
    _answer(links[1], HOLD, encode_error(errors.BUSY))


def _blocked_on(acceptor, key: bytes):
    """A client of ``acceptor`` blocked (BLPOP) on ``key``'s shard."""
    blocked, transport = connect(acceptor)
    send(blocked, [b"BLPOP", key, b"0"])
    return blocked, transport


@pytest.mark.parametrize("kind", ["script", "unblock", "unblock-first"])
def test_an_exec_over_every_shard_with_a_script_or_unblock_refused_at_a_busy_hold_runs_none_of_it(
    kind: str,
) -> None:
    """:func:`test_an_exec_over_every_shard_refused_at_a_busy_hold_runs_none_of_its_local_commands`
    for an EXEC with scripts (a SCRIPT LOAD between them: they run as
    commands of their own, not on an operation's executor) or a CLIENT
    UNBLOCK (of a client waiting on one shard, asked in place; or of a
    client nobody has, run first): its SELECT, CLIENT SETNAME and PUBLISH
    ran as it was routed, before its holds (the client in database 1,
    named, the message heard), and the blocked client's ``__serve`` left."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    heard = _subscribed(acceptor, links, b"refused-" + kind.encode())
    extra: list[list[bytes]] = [[b"EVAL", b"return 1", b"0"], [b"SCRIPT", b"LOAD", b"return 2"]]
    extra.append([b"EVAL", b"return 1", b"0"])
    if kind == "unblock":
        blocked, _ = _blocked_on(acceptor, k0)
        extra = [[b"CLIENT", b"UNBLOCK", b"%d" % blocked.id]]
    elif kind == "unblock-first":
        extra = [[b"CLIENT", b"UNBLOCK", b"999999"]]
    before = [link.bodies() for link in links]
    local = [
        [b"SELECT", b"1"],
        [b"CLIENT", b"SETNAME", b"torn"],
        [b"PUBLISH", b"refused-" + kind.encode(), b"m"],
    ]
    send(client, [b"MULTI"], *local, *extra, [b"KEYS", b"*"], [b"EXEC"])
    _answer_pings(links)
    assert (client.db, client.name) == (0, b"") and replies(acceptor, heard) == b""
    _refuse_busy(links)
    for link, was in zip(links, before, strict=True):
        assert [body for body in _steps(link) if body not in was] in ([RELEASE], [])  # nothing of it left
    _answer(links[0], RELEASE, b"+OK\r\n")
    busy = (errors.EXECABORT_BECAUSE % errors.BUSY).encode()
    queued = b"+QUEUED\r\n" * (len(local) + len(extra) + 1)
    assert replies(acceptor, transport) == b"+OK\r\n" + queued + b"-" + busy + b"\r\n"
    assert replies(acceptor, heard) == b""  # nothing published
    assert (client.db, client.name) == (0, b"")
    stats = acceptor.stats.commands
    assert [stats.get(name, [0])[0] for name in ("select", "client|setname", "publish", "keys")] == [0] * 4
    if kind == "unblock":
        assert blocking.waiting_shard(blocked) == 0  # still waiting, no __unblock sent


def test_an_exec_over_every_shard_with_an_unblock_in_place_runs_it_once_it_holds_every_shard() -> None:
    """The EXEC with a CLIENT UNBLOCK of a one-shard wait, every try
    granted: routed whole under the holds, its ``__serve`` and
    ``__unblock`` first on the waiting client's shard; its SELECT then
    runs (the client goes on in database 1)."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    blocked, _ = _blocked_on(acceptor, k0)
    send(client, [b"MULTI"], [b"SELECT", b"1"], [b"CLIENT", b"UNBLOCK", b"%d" % blocked.id], [b"KEYS", b"*"])
    send(client, [b"EXEC"])
    _answer_pings(links)
    assert client.db == 0
    for link in links:
        link.grant()
    assert client.db == 1
    keys = encode_command([b"KEYS", b"*"])
    assert _steps(links[1]) == [keys, RELEASE]
    assert _steps(links[0])[1:] == [SERVE] or SERVE in links[0].bodies()
    assert keys in _steps(links[0]) and _steps(links[0])[-1] == RELEASE


@pytest.mark.parametrize("busy", [False, True])
def test_an_exec_routed_once_held_whose_client_went_away_runs_as_read(busy: bool) -> None:
    """Redis runs an EXEC it has read, even if its client closes right
    after: so does such an EXEC whose client goes away while it waits for
    its holds (its PUBLISH is heard, its KEYS routed); refused at a busy
    hold (Redis read it at the threshold), none of it runs."""
    acceptor, links, (k0, k1), client, transport = one_client(2)
    heard = _subscribed(acceptor, links, b"gone-%d" % busy)
    send(client, [b"MULTI"], [b"PUBLISH", b"gone-%d" % busy, b"m"], [b"KEYS", b"*"], [b"EXEC"])
    client.connection_lost(None)
    assert replies(acceptor, heard) == b""
    if busy:
        _refuse_busy(links)
        _answer(links[0], RELEASE, b"+OK\r\n")
        assert replies(acceptor, heard) == b""
        assert not any(link.sent for link in links)
        return
    for link in links:
        link.grant()
    assert replies(acceptor, heard) == b"*3\r\n$7\r\nmessage\r\n$6\r\ngone-0\r\n$1\r\nm\r\n"
    keys = encode_command([b"KEYS", b"*"])
    assert [_steps(link) for link in links] == [[keys, RELEASE]] * 2
