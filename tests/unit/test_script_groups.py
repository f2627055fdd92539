"""Cross-shard scripts sent in one loop turn run as one operation (see
shardkv.acceptor.scripting.join_group): one park of their shards, one
``Run`` with each script's ``__eval``, each its own reply.  In one
process, with fake shard links that keep what the acceptor sends."""

from __future__ import annotations

import tempfile

import pytest

from shardkv.acceptor.scripting import CROSS_MARKER, refuse_waiting
from shardkv.protocol import errors, wire
from shardkv.protocol.wire import Verb
from shardkv.worker.shard import Shard
from tests.unit.test_acceptor_dispatch import FakeLink, build, connect, keys_on_two_shards, replies, send

SCRIPT = b"return {redis.call('incr', KEYS[1]), redis.call('incr', KEYS[2])}"


class Link(FakeLink):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.frames: list = []  # control messages, in the order they left

    def send_frame(self, payload: bytes) -> None:
        self.frames.append(wire.decode_control(payload))

    def queue_frame(self, payload: bytes) -> None:
        self.frames.append(wire.decode_control(payload))


class _Later:
    """A loop whose ``call_soon`` runs nothing until the turn ends (``turn``)."""

    def __init__(self) -> None:
        self.later: list = []

    def call_soon(self, fn, *args):
        self.later.append((fn, *args))

    def turn(self) -> None:
        while self.later:
            fn, *args = self.later.pop(0)
            fn(*args)


def _setup(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the decisions file
    acceptor, _ = build(2)
    links = [Link(0), Link(1)]
    acceptor.links = links  # type: ignore[assignment]
    loop = acceptor.loop = _Later()  # type: ignore[assignment]
    a, b = keys_on_two_shards(acceptor)
    return acceptor, links, loop, a, b


def _parks(link: Link) -> list[int]:
    """The operations of the ``__park`` entries the link has not answered."""
    ops = []
    for body in link.bodies():
        words = body.split(b"\r\n")
        assert words[2] == Verb.PARK
        ops.append(int(words[4]))
    return ops


def _park_all(links: list[Link], exporter: int, key: bytes) -> None:
    """Each link answers its oldest ``__park``; ``exporter`` exports ``key``."""
    for link in links:
        op = _parks(link)[0]
        states = {key: None} if link.index == exporter else {}
        link.answer(wire.encode_answer(wire.Parked(op, states, {})))


def test_scripts_of_one_turn_run_under_one_park(monkeypatch, tmp_path) -> None:
    acceptor, links, loop, a, b = _setup(monkeypatch, tmp_path)
    clients = [connect(acceptor) for _ in range(3)]
    for client, _ in clients:
        send(client, [b"EVAL", SCRIPT, b"2", a, b])
    assert all(not link.sent for link in links)  # they wait for the end of the turn
    loop.turn()
    assert [len(_parks(link)) for link in links] == [1, 1]  # one park each, not three
    executor = acceptor.shard_of(a)
    other = acceptor.shard_of(b)
    op = _parks(links[executor])[0]
    _park_all(links, other, b)
    (run,) = links[executor].frames
    assert type(run) is wire.Run and run.op == op and run.log_scripts
    assert len(run.commands) == 3 and all(c[0] == Verb.EVAL for c in run.commands)
    bodies = [b"*2\r\n:%d\r\n:%d\r\n" % (i, i) for i in (1, 2, 3)]
    links[executor].ops[op].control(executor, wire.Ran(op, bodies, {}, wire.NOTHING, {}, [-1, -1, -1]))
    loop.turn()
    for (client, transport), body in zip(clients, bodies, strict=True):
        assert replies(acceptor, transport) == body  # each its own
        assert client.state.blocked_token == 0
    assert acceptor.script_groups.parked == {}


def test_a_groups_run_names_the_scripts_of_no_touch_clients(monkeypatch, tmp_path) -> None:
    """Each member runs in its own client's CLIENT NO-TOUCH mode: the Run
    names the positions of the NO-TOUCH clients' scripts (wire.Run.no_touch)."""
    acceptor, links, loop, a, b = _setup(monkeypatch, tmp_path)
    clients = [connect(acceptor) for _ in range(3)]
    for at, (client, _) in enumerate(clients):
        client.set_no_touch(at != 1)
        send(client, [b"EVAL", SCRIPT, b"2", a, b])
    loop.turn()
    _park_all(links, acceptor.shard_of(b), b)
    (run,) = links[acceptor.shard_of(a)].frames
    assert type(run) is wire.Run and len(run.commands) == 3
    assert run.no_touch == [0, 2]


def test_a_script_whose_shards_a_group_holds_goes_once_it_is_decided(monkeypatch, tmp_path) -> None:
    acceptor, links, loop, a, b = _setup(monkeypatch, tmp_path)
    first, _ = connect(acceptor)
    second, second_out = connect(acceptor)
    send(first, [b"EVAL", SCRIPT, b"2", a, b])
    loop.turn()
    executor, other = acceptor.shard_of(a), acceptor.shard_of(b)
    op = _parks(links[executor])[0]
    send(second, [b"EVAL", SCRIPT, b"2", a, b])
    loop.turn()
    assert [len(_parks(link)) for link in links] == [1, 1]  # it waits: its parks would anyway
    _park_all(links, other, b)
    links[executor].ops[op].control(executor, wire.Ran(op, [b":1\r\n"], {}, wire.NOTHING, {}, [-1]))
    assert [len(link.sent) for link in links] == [0, 0]
    loop.turn()  # the decision's turn: its park leaves with the Decide frames
    assert [len(_parks(link)) for link in links] == [1, 1]
    assert type(links[executor].frames[-1]) is wire.Decide
    assert _parks(links[executor])[0] != op
    assert replies(acceptor, second_out) == b""


def _group_of_two(monkeypatch, tmp_path):
    """Two clients' cross-shard scripts of one turn, every shard parked for their group."""
    acceptor, links, loop, a, b = _setup(monkeypatch, tmp_path)
    clients = [connect(acceptor) for _ in range(2)]
    for client, _ in clients:
        send(client, [b"EVAL", SCRIPT, b"2", a, b])
    loop.turn()
    executor, other = acceptor.shard_of(a), acceptor.shard_of(b)
    op = _parks(links[executor])[0]
    _park_all(links, other, b)
    return acceptor, links, loop, b, clients, executor, other, op


def test_an_escape_runs_each_script_of_the_group_again_alone(monkeypatch, tmp_path) -> None:
    acceptor, links, _, _, clients, executor, _, op = _group_of_two(monkeypatch, tmp_path)
    escaped = CROSS_MARKER + b" " + b"c".hex().encode() + b"\r\n"
    bodies = [b":1\r\n", escaped]
    links[executor].ops[op].control(executor, wire.Ran(op, bodies, {}, wire.NOTHING, {}, [-1, -1]))
    decides = [f for link in links for f in link.frames if type(f) is wire.Decide]
    assert decides and all(d.op == op and not d.commit for d in decides)  # undone, in silence
    assert all(replies(acceptor, out) == b"" for _, out in clients)
    parks = [_parks(link) for link in links]
    assert all(len(p) == 2 and op not in p for p in parks)  # each again, alone


def test_a_shard_lost_after_the_run_answers_each_script_with_the_operations_error(
    monkeypatch, tmp_path
) -> None:
    acceptor, links, loop, b, clients, executor, other, op = _group_of_two(monkeypatch, tmp_path)
    operation = links[executor].ops[op]
    bodies = [b"*2\r\n:1\r\n:1\r\n", b"*2\r\n:2\r\n:2\r\n"]
    operation.control(
        executor, wire.Ran(op, bodies, {b: ("string", b"2", None)}, wire.PREPARED, {}, [-1, -1])
    )
    assert type(links[other].frames[-1]) is wire.Prepare
    operation.shard_lost(other)  # before its Prepared: abort
    loop.turn()
    for client, out in clients:
        assert replies(acceptor, out) == b"-" + errors.OP_ABORTED.encode() + b"\r\n"
        assert client.state.blocked_token == 0
    assert acceptor.script_groups.parked == {}


# A script past busy-reply-threshold (1 ms) at the count hook's first turns.
LONG = b"local t = 0 for i = 1, 3000000 do t = t + i end return 'long'"


def _eval(body: bytes, key: bytes) -> list[bytes]:
    """A script's ``__eval``, as _Retry.command sends it."""
    return [Verb.EVAL, b"0", b"eval", b"", b"0", body, b"1", key]


@pytest.mark.parametrize("group", [True, False], ids=["group", "exec"])
def test_a_groups_scripts_behind_one_past_the_threshold_are_refused(group) -> None:
    """A group's scripts are other clients' (wire.Run.group): those after
    one that went past busy-reply-threshold get -BUSY, unrun, as Redis
    answers the clients it reads at the threshold (they ran after it, each
    looping one needing a SCRIPT KILL of its own).  An EXEC's run on."""
    shard = Shard(0, 2)
    shard.keyspace.runtime.set("busy-reply-threshold", "1")
    commands = [_eval(b"return 'first'", b"k"), _eval(LONG, b"k"), _eval(b"return 'after'", b"k")]
    ran = shard.run_foreign(wire.Run(5, {}, commands, 0, True, [b"k"], log_scripts=True, group=group))
    last = b"-" + errors.BUSY.encode() + b"\r\n" if group else b"$5\r\nafter\r\n"
    assert ran.bodies == [b"$5\r\nfirst\r\n", b"$4\r\nlong\r\n", last]
    assert len(ran.logged) == 3


def test_scripts_waiting_for_a_busy_groups_shards_are_refused(monkeypatch, tmp_path) -> None:
    """A script that waits for a group's decision was read while the
    group ran: once the group's script is past busy-reply-threshold, it
    gets -BUSY, a rejected call, as Redis reads it at the threshold."""
    acceptor, links, loop, a, b = _setup(monkeypatch, tmp_path)
    first, _ = connect(acceptor)
    second, second_out = connect(acceptor)
    send(first, [b"EVAL", SCRIPT, b"2", a, b])
    loop.turn()
    executor = acceptor.shard_of(a)
    send(second, [b"EVAL", SCRIPT, b"2", a, b])
    loop.turn()
    assert len(acceptor.script_groups.waiting) == 1
    refuse_waiting(acceptor, links[executor])
    busy = b"-" + errors.BUSY.encode() + b"\r\n"
    links[executor].on_busy(busy)  # type: ignore[attr-defined]  # (its first S frame)
    assert acceptor.script_groups.waiting == []
    assert replies(acceptor, second_out) == busy
    row = acceptor.stats.commands["eval"]
    assert row[0] == 1 and row[2] == 1  # the first's call; the second's rejected
