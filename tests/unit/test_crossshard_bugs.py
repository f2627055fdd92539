"""A bug in a cross-shard operation's last steps still decides it.

A real acceptor (the rig of :mod:`tests.unit.test_commit_lines`) with
its real shard links on in-memory transports.  When building the
client's reply (``finish``, ``merge``) or another step taken once every
shard has answered raises, the operation is decided all the same, as
the decisions file has it: commit if its line is written, else abort.
Every shard parked for it gets its ``Decide`` (else it would stay parked
for good, every key on it blocked for every client).  Undone (or having
written nothing), its client gets :data:`~shardkv.protocol.errors.INTERNAL`
in its place in the reply order, and goes on; committed, it gets the
operation's own reply if that can still be built, else its connection
closes (an error would say that writes which are in did not happen; see
``_Operation._bug`` and ``_Operation._unanswerable`` in
:mod:`shardkv.acceptor.crossshard`).
"""

from __future__ import annotations

import pytest

from shardkv.acceptor import blocking, crossshard
from shardkv.acceptor.client import Client
from shardkv.acceptor.replies import Slot
from shardkv.protocol import errors, wire
from shardkv.protocol.resp import OK, encode_command
from tests.unit.test_acceptor_dispatch import MemoryTransport
from tests.unit.test_commit_lines import _answers, frame, rig  # noqa: F401 - the fixture


def _bug(*args: object) -> bytes:
    raise RuntimeError("a bug")


def _decides(op: int, commit: bool) -> bytes:
    return frame(wire.encode_control(wire.Decide(op, commit)))


def _written(acceptor, out) -> bytes:
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    return b"".join(out.written)


def _sent_rename(acceptor, client, a: bytes, b: bytes) -> int:
    """RENAME a b sent to the shards (a on shard 0, b on shard 1): its id."""
    client.data_received(encode_command([b"RENAME", a, b]))
    acceptor._flush_links()
    return acceptor.links[0].fifo[0].op.id


def _both_parked(acceptor, op: int) -> None:
    """Both shards answer that they parked ``op`` (no key state sent)."""
    for link in acceptor.links[:2]:
        link.data_received(frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {}, {}))])))


def _rename(acceptor, pipes, client, a: bytes, b: bytes) -> int:
    """RENAME a b (a on shard 0, the executor; b on shard 1), parked and
    run: b's new state prepared on shard 1, a's removal on shard 0."""
    op = _sent_rename(acceptor, client, a, b)
    acceptor.links[0].data_received(frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {}, {}))])))
    acceptor.links[1].data_received(
        frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {b: None}, {}))]))
    )
    ran = wire.Ran(op, [b"+OK\r\n"], {b: ("string", b"1", None)}, wire.PREPARED)
    acceptor.links[0].data_received(frame(wire.encode_control(ran)))
    acceptor._flush_links()
    for pipe in pipes:
        pipe.written.clear()
    return op


def _second_client(acceptor) -> tuple[Client, MemoryTransport]:
    other = Client(acceptor)
    other_out = MemoryTransport()
    other.connection_made(other_out)  # type: ignore[arg-type]
    return other, other_out


def test_a_committed_parked_operation_whose_reply_raises_closes_its_client(rig, monkeypatch):  # noqa: F811
    """Its writes are in: an error in the reply's place would say they are
    not (and invite a retry), so its client's connection closes instead,
    as for any bug in its reply path; every other client goes on."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    other, other_out = _second_client(acceptor)
    monkeypatch.setattr(crossshard, "_first_body", _bug)
    op = _rename(acceptor, pipes, client, a, b)
    acceptor.links[1].data_received(frame(wire.encode_control(wire.Prepared(op))))
    assert [data for data, _, _ in lines] == [b"C %d\n" % op]  # committed: so every shard is told
    assert _written(acceptor, out) == b""
    assert out.closed
    for pipe in pipes:
        assert b"".join(pipe.written) == _decides(op, True)
    for link in acceptor.links:
        link.data_received(frame(wire.encode_control(wire.Finished(op, True))))
    assert acceptor.coordinator.unacked == {}  # type: ignore[attr-defined]
    other.data_received(encode_command([b"PING"]))
    assert _written(acceptor, other_out) == b"+PONG\r\n"


def test_an_executor_that_committed_alone_closes_the_client_whose_reply_raises(rig, monkeypatch):  # noqa: F811
    """No decision line (the executor committed alone, ``wire.COMMITTED``),
    but its writes are in all the same: closed, not answered an error."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    monkeypatch.setattr(crossshard, "_first_body", _bug)
    op = _sent_rename(acceptor, client, a, b)
    _both_parked(acceptor, op)
    acceptor.links[0].data_received(
        frame(wire.encode_control(wire.Ran(op, [b"+OK\r\n"], {}, wire.COMMITTED)))
    )
    assert lines == []
    assert _written(acceptor, out) == b"" and out.closed


def test_an_executor_that_committed_alone_gets_its_reply_after_a_bug_in_another_step(rig, monkeypatch):  # noqa: F811
    """No decision line (``wire.COMMITTED``: the executor committed alone),
    and a bug as its Ran is taken, before the commit is: its writes are in
    all the same, so it is decided commit and its client gets its own
    reply, not an error saying that they are not (nor abort to its shards)."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    op = _sent_rename(acceptor, client, a, b)
    _both_parked(acceptor, op)
    acceptor._flush_links()
    for pipe in pipes:
        pipe.written.clear()
    monkeypatch.setattr(crossshard, "perf_counter_ns", _bug)  # the Ran's first step
    acceptor.links[0].data_received(
        frame(wire.encode_control(wire.Ran(op, [b"+OK\r\n"], {}, wire.COMMITTED)))
    )
    assert lines == []
    assert _written(acceptor, out) == b"+OK\r\n" and not client.closed
    for pipe in pipes:
        assert b"".join(pipe.written) == _decides(op, True)


def test_a_parked_operation_that_wrote_nothing_answers_internal_when_its_reply_raises(rig, monkeypatch):  # noqa: F811
    acceptor, pipes, client, out, lines, (a, b) = rig
    monkeypatch.setattr(crossshard, "_first_body", _bug)
    op = _sent_rename(acceptor, client, a, b)
    _both_parked(acceptor, op)
    acceptor.links[0].data_received(frame(wire.encode_control(wire.Ran(op, [b"+OK\r\n"], {}, wire.NOTHING))))
    assert _written(acceptor, out) == b"-%s\r\n" % (errors.INTERNAL % "rename").encode()
    assert not client.closed


def test_a_bug_before_the_commit_line_aborts_everywhere(rig, monkeypatch):  # noqa: F811
    acceptor, pipes, client, out, lines, (a, b) = rig
    op = _rename(acceptor, pipes, client, a, b)
    monkeypatch.setattr(acceptor.coordinator, "commit", _bug)  # type: ignore[attr-defined]
    acceptor.links[1].data_received(frame(wire.encode_control(wire.Prepared(op))))
    assert lines == []
    assert _written(acceptor, out) == b"-%s\r\n" % (errors.INTERNAL % "rename").encode()
    for pipe in pipes:
        assert b"".join(pipe.written) == _decides(op, False)


def test_a_bug_running_a_parked_operation_aborts_it_on_every_shard(rig, monkeypatch):  # noqa: F811
    acceptor, pipes, client, out, lines, (a, b) = rig
    monkeypatch.setattr(wire, "Run", _bug)
    op = _sent_rename(acceptor, client, a, b)
    for pipe in pipes:
        pipe.written.clear()
    acceptor.links[0].data_received(frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {}, {}))])))
    acceptor.links[1].data_received(
        frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {b: None}, {}))]))
    )
    assert lines == []
    assert _written(acceptor, out) == b"-%s\r\n" % (errors.INTERNAL % "rename").encode()
    for pipe in pipes:
        assert b"".join(pipe.written) == _decides(op, False)


def _fan_out(acceptor, pipes, client, parts, merge, unanimous: bool = False) -> int:
    crossshard.run_write_fan_out(client, parts, merge, unanimous=unanimous)
    acceptor._flush_links()
    for pipe in pipes:
        pipe.written.clear()
    return acceptor.links[0].fifo[-1].op.id


def test_a_write_fan_out_whose_merge_raises_commits_and_the_others_of_its_read_too(rig):  # noqa: F811
    acceptor, pipes, client, out, lines, (a, b) = rig
    other, other_out = _second_client(acceptor)
    broken = _fan_out(acceptor, pipes, other, {0: [b"MSET", a, b"1"], 1: [b"MSET", b, b"1"]}, _bug)
    client.data_received(encode_command([b"MSET", a, b"2", b, b"2"]))
    acceptor._flush_links()
    for pipe in pipes:
        pipe.written.clear()
    ops = [sink.op.id for sink in acceptor.links[0].fifo]
    assert ops[0] == broken
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    assert [data for data, _, _ in lines] == [b"C %d\nC %d\n" % tuple(ops)]
    assert _written(acceptor, other_out) == b"" and other_out.closed  # committed: closed, not an error
    assert b"".join(out.written) == b"+OK\r\n"
    decides = b"".join(_decides(op, True) for op in ops)
    for pipe in pipes:
        assert b"".join(pipe.written) == decides


def test_a_write_fan_out_that_changed_nothing_answers_internal_when_its_merge_raises(rig):  # noqa: F811
    acceptor, pipes, client, out, lines, (a, b) = rig
    op = _fan_out(acceptor, pipes, client, {0: [b"DEL", a], 1: [b"DEL", b]}, _bug)
    for link in acceptor.links:  # neither key existed: nothing prepared, each went on
        link.data_received(frame(wire.encode_replies([wire.encode_answer(wire.PartPrepared(op, False, 0))])))
    assert lines == []
    assert _written(acceptor, out) == b"-%s\r\n" % (errors.INTERNAL % "del").encode()
    assert not client.closed


def test_a_vote_no_whose_merge_raises_is_undone_where_a_part_prepared(rig):  # noqa: F811
    acceptor, pipes, client, out, lines, (a, b) = rig
    parts = {0: [b"MSETNX", a, b"1"], 1: [b"MSETNX", b, b"1"]}
    op = _fan_out(acceptor, pipes, client, parts, _bug, unanimous=True)
    yes = wire.encode_answer(wire.PartPrepared(op, True, 1))
    no = wire.encode_answer(wire.PartPrepared(op, False, 0))  # b exists: nothing prepared there
    acceptor.links[0].data_received(frame(wire.encode_replies([yes])))
    acceptor.links[1].data_received(frame(wire.encode_replies([no])))
    assert lines == []
    assert _written(acceptor, out) == b"-%s\r\n" % (errors.INTERNAL % "msetnx").encode()
    assert b"".join(pipes[0].written) == _decides(op, False)
    assert pipes[1].written == []  # it went on at once


def test_a_bug_after_the_decision_closes_its_client_alone(rig):  # noqa: F811
    """The shards have their Decide: only the client's reply failed (its
    slot raises), and that client is closed, as for any reply-path bug."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    other = Client(acceptor)
    other_out = MemoryTransport()
    other.connection_made(other_out)  # type: ignore[arg-type]

    class Raising:
        def __init__(self, client: Client) -> None:
            self.client = client

        def deliver(self, body: bytes) -> None:
            raise RuntimeError("a bug in the reply path")

    crossshard.run_write_fan_out(other, {0: [b"DEL", a], 1: [b"DEL", b]}, sum, slot=Raising(other))
    acceptor._flush_links()
    op = acceptor.links[0].fifo[-1].op.id
    for pipe in pipes:
        pipe.written.clear()
    acceptor.links[0].data_received(
        frame(wire.encode_replies([wire.encode_answer(wire.PartPrepared(op, True, 1))]))
    )
    acceptor.links[1].data_received(
        frame(wire.encode_replies([wire.encode_answer(wire.PartPrepared(op, True, 1))]))
    )
    acceptor._flush_links()
    for pipe in pipes:
        assert b"".join(pipe.written) == _decides(op, True)
    assert other.closed and not client.closed


@pytest.mark.parametrize("broken", [0, 1, 2])
def test_a_pipelined_client_whose_committed_merge_raises_gets_the_replies_before_it_then_closes(rig, broken):  # noqa: F811
    """One client's three write fan-outs and a PING, pipelined; the
    fan-outs' last answers come in one read (their lines in one write),
    and the merge of one of them raises: every fan-out, the broken one
    too, is committed on both shards, in order.  The client gets the
    replies of the commands before the broken one (Redis wrote a reply as
    its command ended: they were out before anything went wrong, as a
    client closed after its reply, CLIENT_CLOSE_AFTER_REPLY, gets what is
    before), then its connection closes in the broken one's place: no
    reply out of its place, none after it, none an error for a write that
    is in."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    for i in range(3):
        merge = _bug if i == broken else (lambda values: OK)
        crossshard.run_write_fan_out(client, {0: [b"MSET", a, b"%d" % i], 1: [b"MSET", b, b"%d" % i]}, merge)
    client.data_received(encode_command([b"PING"]))
    acceptor._flush_links()
    for pipe in pipes:
        pipe.written.clear()
    ops = [sink.op.id for sink in acceptor.links[0].fifo]
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    assert [data for data, _, _ in lines] == [b"C %d\nC %d\nC %d\n" % tuple(ops)]
    assert _written(acceptor, out) == b"+OK\r\n" * broken
    assert out.closed
    for pipe in pipes:
        assert b"".join(pipe.written) == b"".join(_decides(op, True) for op in ops)


def test_a_committed_operation_whose_reply_raises_waits_for_the_replies_owed_before_it(rig, monkeypatch):  # noqa: F811
    """A reply owed before the broken operation's (a shard's, still to
    come) is written once it comes, and then the connection closes; the
    commands after the broken one run no more (as after QUIT), and a reply
    of one already sent is never written."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    monkeypatch.setattr(crossshard, "_first_body", _bug)
    owed = Slot(client)
    client.pending.append(owed)
    op = _rename(acceptor, pipes, client, a, b)
    after = Slot(client)
    client.pending.append(after)
    acceptor.links[1].data_received(frame(wire.encode_control(wire.Prepared(op))))
    assert [data for data, _, _ in lines] == [b"C %d\n" % op]
    assert _written(acceptor, out) == b""
    assert not out.closed
    client.data_received(encode_command([b"PING"]))  # after the close was decided: not run
    after.deliver(b"+after\r\n")
    assert _written(acceptor, out) == b""
    owed.deliver(b"+owed\r\n")
    assert _written(acceptor, out) == b"+owed\r\n"
    assert out.closed
    for pipe in pipes:
        assert b"".join(pipe.written) == _decides(op, True)


@pytest.mark.parametrize("quit", [True, False])
def test_a_closing_client_gets_the_replies_before_a_committed_reply_that_raises(rig, monkeypatch, quit):  # noqa: F811
    """A QUIT pipelined after the broken operation (or bad bytes, a
    protocol error that closes it too): the client is already closing when
    the reply fails, and still gets the replies of its commands before the
    broken one, as any other; then its connection closes in the broken
    one's place, and neither QUIT's +OK nor the protocol error is written
    (Redis closed it there, before it read them)."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    monkeypatch.setattr(crossshard, "_first_body", _bug)
    owed = Slot(client)
    client.pending.append(owed)
    op = _rename(acceptor, pipes, client, a, b)
    if quit:
        client.data_received(encode_command([b"QUIT"]))
    else:
        client.data_received(encode_command([b"PING"]) + b"*1\r\n$x\r\n")  # then a protocol error
    assert client.closing and not out.closed
    acceptor.links[1].data_received(frame(wire.encode_control(wire.Prepared(op))))
    assert [data for data, _, _ in lines] == [b"C %d\n" % op]
    assert _written(acceptor, out) == b""
    assert not out.closed
    owed.deliver(b"+owed\r\n")
    assert _written(acceptor, out) == b"+owed\r\n"
    assert out.closed
    for pipe in pipes:
        assert b"".join(pipe.written) == _decides(op, True)


def test_a_bug_after_the_commit_line_outside_the_reply_commits_everywhere(rig, monkeypatch):  # noqa: F811
    """A bug between the commit line and the decision (here the step
    that follows the line raises, not the reply): the line says commit,
    so the shards are told commit, not abort, else a shard asking about
    it later (the file read again) would find it committed where others
    undid it; and the client gets the operation's own reply, which can
    still be built, not an error for a write that is in."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    op = _rename(acceptor, pipes, client, a, b)

    def hold(point: str, shard: int = -1) -> None:
        if point == "committed":
            raise RuntimeError("a bug")

    monkeypatch.setattr(crossshard.faultpoints, "hold", hold)
    acceptor.links[1].data_received(frame(wire.encode_control(wire.Prepared(op))))
    assert [data for data, _, _ in lines] == [b"C %d\n" % op]
    assert _written(acceptor, out) == b"+OK\r\n"
    assert not client.closed
    for pipe in pipes:
        assert b"".join(pipe.written) == _decides(op, True)
    assert op in acceptor.coordinator.unacked  # type: ignore[attr-defined]  # until each shard finishes it


@pytest.mark.parametrize("asked", [0, 1])
@pytest.mark.parametrize("kind", ["park", "prepare"])
def test_a_bug_while_asking_the_shards_aborts_it_on_every_shard_asked(rig, monkeypatch, kind, asked):  # noqa: F811
    """RENAME a b (its ``__park``) or MSET a 1 b 1 (a write fan-out's
    ``__prepare``), the entry to shard 1 raising once ``asked`` of its
    shards have theirs queued: each shard asked is told abort once it has
    answered (else it would stay parked for good, every key on it blocked
    for every client), the one never asked is told nothing, and the client
    gets INTERNAL in its place and goes on."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    if kind == "park":
        verb, name, command = crossshard.Verb.PARK, "rename", [b"RENAME", a, b]
    else:
        verb, name, command = crossshard.Verb.PREPARE, "mset", [b"MsEt", a, b"1", b, b"1"]
    real = crossshard.encode_command
    sent: list[bytes] = []

    def failing(args: list[bytes]) -> bytes:
        if args[0] == verb:
            if len(sent) == asked:
                raise RuntimeError("a bug")
            sent.append(args[1])
        return real(args)

    monkeypatch.setattr(crossshard, "encode_command", failing)
    client.data_received(encode_command(command))
    if asked:
        assert _written(acceptor, out) == b""  # it waits for shard 0's answer
        assert not client.closed
        op = acceptor.links[0].fifo[0].op.id
        assert sent == [b"%d" % op] and not acceptor.links[1].fifo
        for pipe in pipes:
            pipe.written.clear()
        answer = wire.Parked(op, {}, {}) if kind == "park" else wire.PartPrepared(op, True, OK)
        acceptor.links[0].data_received(frame(wire.encode_replies([wire.encode_answer(answer)])))
    assert _written(acceptor, out) == b"-%s\r\n" % (errors.INTERNAL % name).encode()
    assert b"".join(pipes[0].written) == (_decides(op, False) if asked else b"")
    assert pipes[1].written == [] and lines == []
    out.written.clear()
    client.data_received(encode_command([b"PING"]))
    assert _written(acceptor, out) == b"+PONG\r\n"


@pytest.mark.parametrize("typed", [b"EXEC", b"exec", b"ExEc"])
def test_an_exec_is_named_in_the_internal_error_as_redis_names_a_known_command(rig, monkeypatch, typed):  # noqa: F811
    """``exec`` however it was typed, as every command in that error, and
    as Redis's errors name a known command (``ERR wrong number of
    arguments for 'get' command``)."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    client.data_received(
        b"".join(encode_command(c) for c in ([b"MULTI"], [b"SET", a, b"1"], [b"SET", b, b"1"], [typed]))
    )
    assert _written(acceptor, out) == b"+OK\r\n+QUEUED\r\n+QUEUED\r\n"
    out.written.clear()
    op = acceptor.links[0].fifo[0].op.id
    acceptor.links[0].data_received(frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {}, {}))])))
    acceptor.links[1].data_received(
        frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {b: None}, {}))]))
    )
    ran = wire.Ran(op, [b"+OK\r\n", b"+OK\r\n"], {b: ("string", b"1", None)}, wire.PREPARED)
    acceptor.links[0].data_received(frame(wire.encode_control(ran)))
    monkeypatch.setattr(acceptor.coordinator, "commit", _bug)  # type: ignore[attr-defined]
    acceptor.links[1].data_received(frame(wire.encode_control(wire.Prepared(op))))
    assert lines == []
    assert _written(acceptor, out) == b"-%s\r\n" % (errors.INTERNAL % "exec").encode()


def test_a_served_cross_shard_move_whose_reply_raises_closes_after_those_before(rig, monkeypatch):  # noqa: F811
    """``BLMOVE a b LEFT RIGHT 0``, its source on one shard and its
    destination on another, served (here at once: ``a`` holds an element)
    while a reply before it is still owed (a pipelined GET's): the move
    commits, its reply cannot be built, and the client gets the owed reply
    once it comes, then its connection closes in the move's place, as for
    any other committed cross-shard operation (nothing of its own, nor of
    what came after it, is written)."""
    acceptor, pipes, client, out, lines, (a, b) = rig
    monkeypatch.setattr(blocking, "_first_body", _bug)
    owed = Slot(client)
    client.pending.append(owed)
    client.data_received(
        encode_command([b"BLMOVE", a, b, b"LEFT", b"RIGHT", b"0"]) + encode_command([b"PING"])
    )  # the PING held behind it, and then dropped with the close
    acceptor._flush_links()
    op = acceptor.links[0].fifo[0].op.id
    acceptor.links[0].data_received(frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {}, {}))])))
    acceptor.links[1].data_received(
        frame(wire.encode_replies([wire.encode_answer(wire.Parked(op, {b: None}, {}))]))
    )
    ran = wire.Ran(op, [b"$1\r\nx\r\n"], {b: ("list", [b"x"], None)}, wire.PREPARED)
    acceptor.links[0].data_received(frame(wire.encode_control(ran)))
    acceptor._flush_links()
    for pipe in pipes:
        pipe.written.clear()
    acceptor.links[1].data_received(frame(wire.encode_control(wire.Prepared(op))))
    assert [data for data, _, _ in lines] == [b"C %d\n" % op]  # committed: so every shard is told
    assert _written(acceptor, out) == b""
    assert not out.closed
    client.data_received(encode_command([b"ECHO", b"later"]))  # after the close was decided: not run
    owed.deliver(b"$1\r\n1\r\n")
    assert _written(acceptor, out) == b"$1\r\n1\r\n"
    assert out.closed
    for pipe in pipes:
        assert b"".join(pipe.written).startswith(_decides(op, True))
