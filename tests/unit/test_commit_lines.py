"""Write fan-outs decided in one read of a pipe record their commits together.

A real acceptor (:func:`shardkv.acceptor.wiring.build`) with its real
shard links on in-memory transports: two pipelined two-shard MSETs, whose
``PartPrepared`` answers come back as the workers send them.  The
decisions file's lines of the operations whose last answer came in one
read leave in one write, before any ``Decide`` or reply of them, and an
operation a shard refused in that read is undone, its line never written
(see ``Coordinator.commit_soon`` in :mod:`shardkv.acceptor.crossshard`).
"""

from __future__ import annotations

import errno
import logging
import os
import random

import pytest

from shardkv.acceptor import crossshard
from shardkv.acceptor.client import Client
from shardkv.protocol import decisions, errors, wire
from shardkv.protocol.resp import OK, encode_command
from shardkv.protocol.wire import FRAME
from tests.unit.test_acceptor_dispatch import build_on_memory_pipes, connect, first_keys_of_shards


def frame(payload: bytes) -> bytes:
    return FRAME.pack(len(payload)) + payload


@pytest.fixture
def rig(tmp_path, monkeypatch):
    """An acceptor of two shards, a client, and the writes to the decisions file."""
    path = str(tmp_path / "decisions")
    monkeypatch.setattr(crossshard, "volatile_path", lambda supervisor, index: path)
    acceptor, pipes = build_on_memory_pipes()
    client, out = connect(acceptor)
    lines: list[tuple[bytes, int, int]] = []  # (what was written, pipe frames and client writes before it)
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if os.path.realpath(f"/proc/self/fd/{fd}") == path:
            lines.append((data, sum(len(p.written) for p in pipes), len(out.written)))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    yield acceptor, pipes, client, out, lines, first_keys_of_shards()
    acceptor.coordinator.close()  # type: ignore[attr-defined]
    acceptor.loop.close()


def _msets(acceptor, pipes, client, a, b, n: int = 2) -> list[int]:
    client.data_received(b"".join(encode_command([b"MSET", a, b"%d" % v, b, b"%d" % v]) for v in range(n)))
    acceptor._flush_links()
    for pipe in pipes:
        pipe.written.clear()
    return [sink.op.id for sink in acceptor.links[0].fifo]


def _answers(ops: list[int]) -> bytes:
    return frame(wire.encode_replies([wire.encode_answer(wire.PartPrepared(op, True, OK)) for op in ops]))


def test_the_commits_decided_in_one_read_are_written_at_once_before_anything_shows_them(rig):
    acceptor, pipes, client, out, lines, (a, b) = rig
    ops = _msets(acceptor, pipes, client, a, b)
    acceptor.links[0].data_received(_answers(ops))
    assert lines == []  # waiting for shard 1's answers
    acceptor.links[1].data_received(_answers(ops))
    assert lines == [(b"C %d\nC %d\n" % tuple(ops), 0, 0)]  # one write, before any Decide or reply
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert b"".join(out.written) == b"+OK\r\n+OK\r\n"
    decides = [frame(wire.encode_control(wire.Decide(op, True))) for op in ops]
    for pipe in pipes:
        assert b"".join(pipe.written) == b"".join(decides)


def test_an_operation_refused_in_the_read_that_completed_it_is_undone_and_never_recorded(rig):
    acceptor, pipes, client, out, lines, (a, b) = rig
    first, second = _msets(acceptor, pipes, client, a, b)
    acceptor.links[0].data_received(_answers([first, second]))
    refused = frame(wire.encode_control(wire.Refused(first, "not parked for this operation")))
    acceptor.links[1].data_received(_answers([first, second]) + refused)
    assert [data for data, _, _ in lines] == [b"C %d\n" % second]
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert b"".join(out.written) == b"-%s\r\n+OK\r\n" % errors.OP_ABORTED.encode()
    undo, commit = (
        frame(wire.encode_control(wire.Decide(first, False))),
        frame(wire.encode_control(wire.Decide(second, True))),
    )
    assert b"".join(pipes[0].written) == undo + commit
    assert b"".join(pipes[1].written) == commit  # (it refused the first: not parked for it)


class _RaisingSink:
    """A caller's reply sink (as MIGRATE's delete passes its own) whose
    delivery meets a bug."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def deliver(self, body: bytes) -> None:
        raise RuntimeError("a bug in the reply path")


def test_a_reply_that_raises_in_the_batch_costs_its_client_alone_and_the_others_are_decided(rig):
    acceptor, pipes, client, out, lines, (a, b) = rig
    other, other_out = connect(acceptor)
    parts = {0: [b"MSET", a, b"1"], 1: [b"MSET", b, b"1"]}
    crossshard.run_write_fan_out(other, parts, lambda values: OK, slot=_RaisingSink(other))
    client.data_received(encode_command([b"MSET", a, b"2", b, b"2"]))
    acceptor._flush_links()
    for pipe in pipes:
        pipe.written.clear()
    ops = [sink.op.id for sink in acceptor.links[0].fifo]
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))  # (raised out of the pipe's read: the acceptor exited)
    assert [data for data, _, _ in lines] == [b"C %d\nC %d\n" % tuple(ops)]
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert b"".join(out.written) == b"+OK\r\n"
    decides = b"".join(frame(wire.encode_control(wire.Decide(op, True))) for op in ops)
    for pipe in pipes:
        assert b"".join(pipe.written) == decides


@pytest.fixture
def durable_rig(rig, tmp_path):
    """The rig with ``appendonly yes`` and ``appendfsync always``: the
    decisions file is the durable one, fsynced before any reply."""
    acceptor = rig[0]
    acceptor.config.update(appendonly=True, appendfsync="always", dir=str(tmp_path))
    yield (*rig, crossshard.durable_path(acceptor.config, 0))


_REAL_WRITE = os.write


def _committed_before(acceptor) -> int:
    """An operation committed (its line written) before the test's: its id."""
    coordinator = crossshard.coordinator_of(acceptor)
    earlier = coordinator.new_id()
    coordinator._log()[0].commit(earlier, True)
    return earlier


def _half_written_then_full(monkeypatch) -> list[int]:
    """The disk fills in the middle of the next write (about half of it
    written), then refuses every write: the list gets that write's size."""
    full: list[int] = []

    def write(fd: int, data: bytes) -> int:
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        full.append(len(data))
        return _REAL_WRITE(fd, data[: len(data) // 2 + 3])

    monkeypatch.setattr(os, "write", write)
    return full


def _undone(acceptor, pipes, out, ops, error: bytes) -> None:
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert b"".join(out.written) == error * len(ops)
    undo = b"".join(frame(wire.encode_control(wire.Decide(op, False))) for op in ops)
    for pipe in pipes:
        assert b"".join(pipe.written) == undo


def test_a_failed_fsync_of_the_batch_leaves_no_line_claiming_its_commits(durable_rig, monkeypatch):
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    earlier = _committed_before(acceptor)
    ops = _msets(acceptor, pipes, client, a, b)

    def fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fsync)
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    # Answered as undone, so no later reader of the file (a restarted
    # acceptor, another acceptor asked about a shard's doubt) may find them committed.
    assert crossshard.read_committed(path) == {earlier}
    _undone(acceptor, pipes, out, ops, b"-%s\r\n" % (errors.OP_NOT_RECORDED % "Input/output error").encode())


def test_a_short_write_of_the_batch_is_cut_back_to_the_lines_before_it(durable_rig, monkeypatch, caplog):
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    earlier = _committed_before(acceptor)
    before = open(path, "rb").read()
    ops = _msets(acceptor, pipes, client, a, b, 16)
    full = _half_written_then_full(monkeypatch)
    with caplog.at_level(logging.ERROR, "shardkv.acceptor"):
        acceptor.links[0].data_received(_answers(ops))
        acceptor.links[1].data_received(_answers(ops))
    assert open(path, "rb").read() == before
    # In Redis's words for a short write of its AOF: the log's, and ENOSPC's text.
    expected = full[0]
    short = "Short write while writing to the decisions file: (nwritten=%d, expected=%d)" % (
        expected // 2 + 3,
        expected,
    )
    assert any(r.getMessage().endswith(short) for r in caplog.records)
    _undone(
        acceptor, pipes, out, ops, b"-%s\r\n" % (errors.OP_NOT_RECORDED % "No space left on device").encode()
    )
    # The next batch's lines follow the earlier ones, as if nothing had been tried.
    monkeypatch.setattr(os, "write", _REAL_WRITE)
    out.written.clear()
    later = _msets(acceptor, pipes, client, a, b)
    acceptor.links[0].data_received(_answers(later))
    acceptor.links[1].data_received(_answers(later))
    assert open(path, "rb").read() == before + b"C %d\nC %d\n" % tuple(later)
    assert crossshard.read_committed(path) == {earlier, *later}


def test_a_write_that_takes_nothing_is_a_full_disk_not_a_loop(durable_rig, monkeypatch):
    """A write of the decisions file that returns 0 (it took nothing, and
    said no error: some file systems do) ends the write as a full disk:
    written again and again it would hold the acceptor's loop, and every
    client, for good.  Part of the lines written before it is a short
    write, cut back as any."""
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    _committed_before(acceptor)
    before = open(path, "rb").read()
    real_write = os.write
    calls = []

    def write(fd: int, data: bytes) -> int:  # 5 bytes, then nothing
        calls.append(len(data))
        assert len(calls) < 100, "written again and again"
        return real_write(fd, data[:5]) if len(calls) == 1 else 0

    ops = _msets(acceptor, pipes, client, a, b)
    monkeypatch.setattr(os, "write", write)
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    assert len(calls) == 2
    assert open(path, "rb").read() == before
    _undone(
        acceptor, pipes, out, ops, b"-%s\r\n" % (errors.OP_NOT_RECORDED % "No space left on device").encode()
    )


def _failing_ftruncate(fd: int, size: int) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def _half_written_once(monkeypatch) -> list[int]:
    """The next write takes about half of its bytes and then fails (the
    disk full for a moment); the writes after it take all: the list gets
    that write's size."""
    full: list[int] = []

    def write(fd: int, data: bytes) -> int:
        if len(full) == 1:  # the rest of that write
            full.append(0)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if full:
            return _REAL_WRITE(fd, data)
        full.append(len(data))
        return _REAL_WRITE(fd, data[: len(data) // 2 + 3])

    monkeypatch.setattr(os, "write", write)
    return full


def test_a_short_write_that_cannot_be_cut_off_is_cancelled_before_its_operations_are_undone(
    durable_rig, monkeypatch, caplog
):
    """A short write whose ftruncate fails leaves a torn line, and whole
    lines of the operations it then undoes.  Those are cancelled at once
    (a fresh line, so that no line is glued onto the torn one, then an
    ``A`` line for each), before any of them is undone or answered: an
    acceptor that dies right after, before any other write, reads none
    of them as committed when it starts again (where the shards undid
    them), and the next write follows on a whole line."""
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    earlier = _committed_before(acceptor)
    before = open(path, "rb").read()
    ops = _msets(acceptor, pipes, client, a, b, 16)
    _half_written_once(monkeypatch)
    monkeypatch.setattr(os, "ftruncate", _failing_ftruncate)
    with caplog.at_level(logging.ERROR, "shardkv.acceptor"):
        acceptor.links[0].data_received(_answers(ops))
        acceptor.links[1].data_received(_answers(ops))
    left = open(path, "rb").read()
    assert left.startswith(before) and left.endswith(b"".join(b"A %d\n" % op for op in ops))
    assert decisions.read_committed(path) == {earlier}  # what a restarted acceptor reads
    assert any(
        "Could not remove short write from the decisions file" in r.getMessage()
        and "operations %s cancelled" % ops in r.getMessage()
        for r in caplog.records
    )
    _undone(
        acceptor, pipes, out, ops, b"-%s\r\n" % (errors.OP_NOT_RECORDED % "No space left on device").encode()
    )
    out.written.clear()
    later = _msets(acceptor, pipes, client, a, b)
    acceptor.links[0].data_received(_answers(later))
    acceptor.links[1].data_received(_answers(later))
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert b"".join(out.written) == b"+OK\r\n+OK\r\n"
    assert open(path, "rb").read() == left + b"C %d\nC %d\n" % tuple(later)
    assert crossshard.read_committed(path) == {earlier, *later}


def test_a_short_write_that_can_be_neither_cut_off_nor_cancelled_commits_what_the_file_holds(
    durable_rig, monkeypatch
):
    """The disk stays full: the cut fails, and so does the cancel.  The
    operations whose ``C`` lines are whole in the file are read as
    committed by whoever reads it next (a restarted acceptor, a shard
    asking), so they are committed, their clients answered and their
    shards told so, not undone; the rest (their lines torn or never
    written) are undone.  Once the disk has room, the next write starts
    on a fresh line, and the file reads exactly the operations committed."""
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    earlier = _committed_before(acceptor)
    before = open(path, "rb").read()
    ops = _msets(acceptor, pipes, client, a, b, 16)
    full = _half_written_then_full(monkeypatch)
    monkeypatch.setattr(os, "ftruncate", _failing_ftruncate)
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    whole = (full[0] // 2 + 3) // len(b"C %d\n" % ops[0])
    kept, undone = ops[:whole], ops[whole:]
    assert 0 < whole < len(ops)
    left = open(path, "rb").read()
    assert left.startswith(before) and not left.endswith(b"\n")  # torn: neither cut nor cancelled
    assert decisions.read_committed(path) == {earlier, *kept}
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    error = b"-%s\r\n" % (errors.OP_NOT_RECORDED % "No space left on device").encode()
    assert b"".join(out.written) == b"+OK\r\n" * len(kept) + error * len(undone)
    decides = [frame(wire.encode_control(wire.Decide(op, op in kept))) for op in ops]
    for pipe in pipes:
        assert b"".join(pipe.written) == b"".join(decides)
    assert set(acceptor.coordinator.unacked) == set(kept)  # type: ignore[attr-defined]
    monkeypatch.setattr(os, "write", _REAL_WRITE)  # the disk has room again; ftruncate still fails
    later = _msets(acceptor, pipes, client, a, b)
    acceptor.links[0].data_received(_answers(later))
    acceptor.links[1].data_received(_answers(later))
    assert crossshard.read_committed(path) == {earlier, *kept, *later}


def test_lines_kept_after_a_failed_cut_are_fsynced_before_their_replies_with_always(durable_rig, monkeypatch):
    """``appendfsync always``: the ``C`` lines that a failed write leaves
    whole, and that could be neither cut off nor cancelled, commit, and
    their clients are answered OK: not before an fsync that follows their
    write (before, they were answered with no fsync after them: a power
    cut could lose acknowledged commits)."""
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    _committed_before(acceptor)
    ops = _msets(acceptor, pipes, client, a, b, 16)
    _half_written_then_full(monkeypatch)
    monkeypatch.setattr(os, "ftruncate", _failing_ftruncate)
    syncs: list[tuple[bytes, int]] = []  # (the file then, the client's writes before it)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        syncs.append((open(path, "rb").read(), len(out.written)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    kept = acceptor.coordinator._log()[0].kept  # type: ignore[attr-defined]
    assert kept and syncs == [(open(path, "rb").read(), 0)]  # after every line the file kept
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert b"".join(out.written).startswith(b"+OK\r\n" * len(kept))


def test_lines_kept_unsynced_commit_and_close_their_client_unanswered_with_always(durable_rig, monkeypatch):
    """The same, but their fsync fails too: they commit all the same (the
    file has them; every shard is told commit), and their client is
    closed in place of the OK that a power cut could make a lie, as
    Redis's client sees its connection close when Redis exits on an AOF
    fsync error with ``always``; an error reply would say they did nothing."""
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    earlier = _committed_before(acceptor)
    ops = _msets(acceptor, pipes, client, a, b, 16)
    _half_written_then_full(monkeypatch)
    monkeypatch.setattr(os, "ftruncate", _failing_ftruncate)

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    log = acceptor.coordinator._log()[0]  # type: ignore[attr-defined]
    kept = log.kept
    assert kept and log.kept_unsynced is not None
    assert decisions.read_committed(path) == {earlier, *kept}
    acceptor._flush_links()
    acceptor.flush_dirty_clients()
    assert out.written == [] and out.closed  # the first operation's lines are kept: nothing answered
    decides = [frame(wire.encode_control(wire.Decide(op, op in kept))) for op in ops]
    for pipe in pipes:
        assert b"".join(pipe.written) == b"".join(decides)


@pytest.mark.parametrize("cancelled", [True, False])
def test_with_everysec_what_a_failed_cut_leaves_is_fsynced_by_the_next_sync(tmp_path, monkeypatch, cancelled):
    """``appendfsync everysec``: the lines a failed write leaves in the
    file, with the ``#`` and ``A`` lines that cancel them (or, where the
    cancel fails too, the ``C`` lines kept), go to disk with the next
    once-a-second fsync, as the ``C`` lines of a write that succeeded do
    (before, none was owed one: a power cut could lose the cancel and keep
    the ``C`` lines of operations that were undone).  An fsync that fails
    is owed again."""
    log = decisions.DecisionLog(str(tmp_path / "d.decisions"))
    log.commit_all([1], False)
    log.sync()
    assert not log.unsynced
    monkeypatch.setattr(os, "ftruncate", _failing_ftruncate)
    if cancelled:
        _half_written_once(monkeypatch)
    else:
        _half_written_then_full(monkeypatch)
    with pytest.raises(OSError):
        log.commit_all(list(range(2, 18)), False)
    assert (log.kept == []) is cancelled and log.uncut
    assert log.unsynced
    monkeypatch.setattr(os, "write", _REAL_WRITE)
    real_fsync = os.fsync
    synced: list[int] = []

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError):
        log.sync()
    assert log.unsynced  # tried again the next second
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    log.sync()
    assert synced == [log.fd] and not log.unsynced
    log.close()


def test_a_failed_fsync_whose_lines_cannot_be_cut_off_is_cancelled_at_once(durable_rig, monkeypatch):
    """Every line was written, the fsync failed and so did the cut: the
    lines are whole, so they are cancelled before the operations are
    undone; an acceptor restarted right after reads none as committed."""
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    earlier = _committed_before(acceptor)
    ops = _msets(acceptor, pipes, client, a, b)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "ftruncate", _failing_ftruncate)
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    assert decisions.read_committed(path) == {earlier}
    _undone(acceptor, pipes, out, ops, b"-%s\r\n" % (errors.OP_NOT_RECORDED % "Input/output error").encode())
    monkeypatch.setattr(os, "fsync", real_fsync)
    later = _msets(acceptor, pipes, client, a, b)
    acceptor.links[0].data_received(_answers(later))
    acceptor.links[1].data_received(_answers(later))
    assert crossshard.read_committed(path) == {earlier, *later}


@pytest.mark.parametrize("cut", ["works", "fails"])
def test_a_file_that_ends_in_a_torn_line_takes_the_next_line_on_a_fresh_one(tmp_path, monkeypatch, cut):
    """An acceptor that died after a cut that failed left a torn line at
    the end of its file: the next acceptor's first line must not be glued
    onto it.  The torn line is cut off, or if it cannot be, ended so that
    it reads as nothing (not as a shorter operation id)."""
    path = str(tmp_path / "d")
    with open(path, "wb") as f:
        f.write(b"C 11\nC 12")  # "C 12" of "C 123": read as 12, it would commit another operation
    if cut == "fails":
        monkeypatch.setattr(os, "ftruncate", _failing_ftruncate)
    log = decisions.DecisionLog(path)
    log.commit(5, False)
    log.close()
    with open(path, "rb") as f:
        assert f.read() == (b"C 11\nC 5\n" if cut == "works" else b"C 11\nC 12#\nC 5\n")
    assert decisions.read_committed(path) == {11, 5}


def test_a_cancel_line_undoes_a_commit_line_and_lines_not_well_formed_are_ignored(tmp_path):
    path = tmp_path / "d"
    path.write_bytes(b"C 1\nC 2\nC 3C 4\nC 12#\n#\nA 2\nC 5\nC 6")
    assert decisions.read_committed(str(path)) == {1, 5}


def test_a_line_whose_id_is_too_long_to_be_one_is_ignored_not_a_crash(tmp_path):
    """A garbage line of digits (a file damaged by something else) is not
    an operation id (they are below 2**64): ignored, as a line not well
    formed is, where int() of over 4,300 digits raised ValueError, and
    the acceptor (or re-sharding at start-up) reading the file with it."""
    path = tmp_path / "d"
    huge = b"9" * 5000
    path.write_bytes(b"C 1\nC %s\nA %s\nC 2\nC %d\nC %d\n" % (huge, huge, 2**64 - 1, 10**20))
    assert decisions.read_committed(str(path)) == {1, 2, 2**64 - 1}


@pytest.mark.parametrize("seed", range(4))
def test_random_failed_writes_cuts_and_restarts_never_lose_a_commit_nor_keep_an_undone_one(
    tmp_path, monkeypatch, seed
):
    """Random runs of DecisionLog writes, each may be cut short (the disk
    then full, or with room again at once), fail, or fail its fsync, and
    its cut (ftruncate) fail too, with acceptor restarts (the file opened
    again) among them.  At every point, a restart right then included,
    the file reads exactly the operations committed: those whose write
    succeeded, and those of a failed one that it keeps (:attr:`kept`: its
    lines could be neither cut off nor cancelled).  None that was undone,
    and none lost to a torn line, a ``#`` line or an ``A`` line."""
    rng = random.Random(seed)
    real_write, real_ftruncate = os.write, os.ftruncate
    failing: dict[str, object] = {}

    def write(fd: int, data: bytes) -> int:
        how = failing.get("write")
        if how == "fail":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if how in ("short", "blip"):
            failing["write"] = "fail" if how == "short" else None
            return real_write(fd, bytes(data[: rng.randrange(1, len(data))]) if len(data) > 1 else data)
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        if failing.get("fsync"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    def ftruncate(fd: int, size: int) -> None:
        if failing.get("ftruncate"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_ftruncate(fd, size)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    kinds = 0
    for run in range(200):
        path = str(tmp_path / ("%d.decisions" % run))
        log = decisions.DecisionLog(path)
        committed: set[int] = set()
        next_op = 1
        for _ in range(rng.randrange(1, 10)):
            if rng.random() < 0.15:  # the acceptor restarts
                log.close()
                log = decisions.DecisionLog(path)
            else:
                ops = list(range(next_op, next_op + rng.randrange(1, 4)))
                next_op += len(ops)
                draw = rng.random()
                failing.clear()
                failing["write"] = (
                    "short" if draw < 0.2 else "blip" if draw < 0.3 else "fail" if draw < 0.4 else None
                )
                failing["fsync"] = 0.4 <= draw < 0.5
                failing["ftruncate"] = rng.random() < 0.5
                try:
                    log.commit_all(ops, True)
                    committed |= set(ops)
                except OSError:
                    assert set(log.kept) <= set(ops)
                    committed |= set(log.kept)
                    kinds |= 1 if log.kept else 2 if log.uncut else 0
                failing.clear()
            assert decisions.read_committed(path) == committed, (run, open(path, "rb").read())
        log.commit_all([next_op], True)
        committed.add(next_op)
        assert decisions.read_committed(path) == committed, (run, open(path, "rb").read())
        log.close()
    assert kinds == 3  # both cases were met: kept lines, and lines cancelled


def test_a_cut_of_a_short_write_is_fsynced_before_its_operations_are_undone_with_always(
    durable_rig, monkeypatch
):
    """``appendfsync always``: a short write's whole ``C`` lines may reach
    the disk whenever the kernel writes the page back; the ftruncate that
    cuts them off is fsynced before their operations are undone and
    answered (before, it was not: a power cut could keep the lines of
    operations answered as not recorded, and commit them)."""
    acceptor, pipes, client, out, lines, (a, b), path = durable_rig
    _committed_before(acceptor)
    ops = _msets(acceptor, pipes, client, a, b, 16)
    _half_written_then_full(monkeypatch)
    events: list[tuple[str, int]] = []  # (what, the pipes' and the client's writes before it)
    real_fsync, real_ftruncate = os.fsync, os.ftruncate

    def seen() -> int:
        return len(out.written) + sum(len(p.written) for p in pipes)

    def fsync(fd: int) -> None:
        events.append(("fsync", seen()))
        real_fsync(fd)

    def ftruncate(fd: int, size: int) -> None:
        events.append(("ftruncate", seen()))
        real_ftruncate(fd, size)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    acceptor.links[0].data_received(_answers(ops))
    acceptor.links[1].data_received(_answers(ops))
    assert events == [("ftruncate", 0), ("fsync", 0)]
    _undone(
        acceptor, pipes, out, ops, b"-%s\r\n" % (errors.OP_NOT_RECORDED % "No space left on device").encode()
    )


def test_with_everysec_the_cut_of_a_short_write_is_fsynced_by_the_next_sync(tmp_path, monkeypatch):
    """``appendfsync everysec``: the ftruncate that cuts a short write's
    lines off is owed the next once-a-second fsync, as the lines were
    (before, it was not when nothing else was written since the last)."""
    log = decisions.DecisionLog(str(tmp_path / "d.decisions"))
    log.commit_all([1], False)
    log.sync()
    assert not log.unsynced
    _half_written_then_full(monkeypatch)
    with pytest.raises(OSError):
        log.commit_all(list(range(2, 18)), False)
    assert log.uncut == [] and log.unsynced
    assert decisions.read_committed(log.path) == {1}
    log.close()
