"""The worker runs ahead the WATCHes sent while a script is busy
(shardkv.worker.busywatch): each ``__watchb`` in a backlog counts its
keys as watched now, in its database, and leaves a ``__watched`` with the
versions it read in its place; every other entry stays as it was."""

from __future__ import annotations

from multiprocessing import Pipe as _Conns

from shardkv.protocol import wire
from shardkv.protocol.resp import encode_command
from shardkv.protocol.wire import Verb
from shardkv.worker.busywatch import BusyWatches
from shardkv.worker.commands.server import watch, watched
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.loop import Pipe
from shardkv.worker.shard import Shard


class _Pipe:
    """A pipe whose frames are all in its backlog already."""

    def __init__(self, index: int, backlog: list[bytes]) -> None:
        self.index = index
        self.backlog = backlog
        self.broken = False

    def take_others(self, reads: int = -1) -> None:
        pass


class _Pipes:
    def __init__(self, *pipes: object) -> None:
        self.pipes = list(pipes)
        self.current = None


class _Shard:
    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace


def _batch(*entries: tuple[int, list[bytes]]) -> bytes:
    return wire.batch_payload(
        [item for db, args in entries for item in (wire.entry_header(0, db=db), encode_command(args))]
    )


def test_a_watch_sent_while_busy_runs_ahead_and_sees_the_later_writes():
    ks = Keyspace(databases=16)
    ks.store(b"k", b"v")
    others = _batch((0, [b"GET", b"k"]), (0, [Verb.UNWATCH, b"j"]))
    pipe = _Pipe(1, [others, _batch((0, [b"SET", b"k", b"1"]), (0, [Verb.WATCH_BUSY, b"k", b"j"]))])
    BusyWatches(_Shard(ks), _Pipes(None, pipe)).run_ahead()  # type: ignore[arg-type]
    assert pipe.backlog[0] == others
    entries = wire.decode_batch(pipe.backlog[1])
    assert entries == [0, [b"SET", b"k", b"1"], 0, [Verb.WATCHED, b"0", b"0"]]
    assert ks.watch_counts == {b"k": 1, b"j": 1}
    assert ks.watchers == {1: {(0, b"k"): 1, (0, b"j"): 1}}
    ks.touch(b"k")  # the script writes k: its version moves on from the one answered
    assert watched(ks, entries[3]) == [0, 0]
    assert watch(ks, [Verb.WATCH, b"k"]) == [1]


def test_a_watch_of_a_database_the_script_has_not_used_yet():
    ks = Keyspace(databases=16)
    pipe = _Pipe(0, [_batch((9, [Verb.WATCH_BUSY, b"k"]))])
    BusyWatches(_Shard(ks), _Pipes(pipe)).run_ahead()  # type: ignore[arg-type]
    assert ks.db == 0
    assert wire.decode_batch(pipe.backlog[0])[1] == [Verb.WATCHED, b"0"]
    with ks.selected(9):  # the script SELECTs 9 and writes k there
        ks.store(b"k", b"v")
        assert ks.watched == {b"k": 1}
    assert ks.watchers == {0: {(9, b"k"): 1}}


def test_the_pipe_the_shard_waits_on_keeps_its_decide_where_it_is_awaited():
    """A busy script runs in a cross-shard operation (its executor parked):
    the count hook reads its pipe's batches, and stops at the Decide, which
    Shard.park reads off the pipe, with the batch after it."""
    shard = Shard(0, 1)
    ours, theirs = _Conns()
    pipe = Pipe(shard, 0, theirs)
    pipes = _Pipes(pipe)
    pipes.current = pipe  # type: ignore[assignment]
    watchb = _batch((0, [Verb.WATCH_BUSY, b"k"]))
    decide = wire.encode_control(wire.Decide(7, False))
    later = _batch((0, [Verb.WATCH_BUSY, b"j"]))
    for frame in (watchb, decide, later):
        ours.send_bytes(frame)
    try:
        watches = BusyWatches(shard, pipes)  # type: ignore[arg-type]
        watches.run_ahead()
        assert [wire.decode_batch(f)[1] for f in pipe.backlog] == [[Verb.WATCHED, b"0"]]
        watches.on_prepare()  # reads nothing more off the pipe
        assert len(pipe.backlog) == 1
        assert pipe.reader.recv() == decide
        assert pipe.reader.recv() == later
        assert shard.keyspace.watch_counts == {b"k": 1}
    finally:
        pipe.close()
        ours.close()
