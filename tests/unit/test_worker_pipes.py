"""The worker loop with several acceptor pipes (``--acceptors K``).

A real :class:`~shardkv.worker.shard.Shard` is served by the real loop
(:class:`shardkv.worker.loop.Pipes`) in a thread, over real socket pairs:
the test plays two acceptors and the supervisor, frame by frame, as
``shardkv/protocol/wire.py`` describes them.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection

import pytest

from shardkv.protocol import wire
from shardkv.protocol.decisions import COORDINATOR_SHIFT
from shardkv.protocol.resp import Error, encode_command
from shardkv.protocol.wire import Verb
from shardkv.runtime import config
from shardkv.runtime.scriptflags import ScriptFlags
from shardkv.worker import events
from shardkv.worker.frames import FrameReader
from shardkv.worker.loop import Pipes
from shardkv.worker.shard import Prepared, Shard

WAIT = 10.0  # seconds to wait for a frame that must come (a generous bound, not a timing check)
QUIET = 0.3  # how long a frame that must not come is looked for


def entry(*args: bytes | str | int, flags: int = 0, token: int = 0) -> tuple[bytes, bytes]:
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    return wire.entry_header(flags, token), encode_command(parts)


def batch(*entries: tuple[bytes, bytes]) -> bytes:
    return wire.batch_payload([item for e in entries for item in e])


class Worker:
    """A shard served by the loop over ``npipes`` pipes, in a thread."""

    def __init__(self, npipes: int, shard: Shard | None = None, start: bool = True) -> None:
        self.shard = shard or Shard(0, 1)
        self.acceptors: list[Connection] = []
        ends = []
        for _ in range(npipes):
            ours, theirs = Pipe()
            self.acceptors.append(ours)
            ends.append(theirs)
        self.supervisor, ctl = Pipe()
        self.loop = Pipes(self.shard, ctl, ends)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        if start:
            self.thread.start()
        self.ctl = ctl

    def send(self, pipe: int, payload: bytes) -> None:
        self.acceptors[pipe].send_bytes(payload)

    def recv(self, pipe: int) -> bytes:
        """The next frame on ``pipe`` but a slow entry's ``N`` frame (a
        script that waits is logged in the slow log: not what these test)."""
        conn = self.acceptors[pipe]
        while True:
            assert conn.poll(WAIT), f"no frame on pipe {pipe}"
            frame = conn.recv_bytes()
            if frame[0] != wire.SLOW_NAMES:
                return frame

    def quiet(self, pipe: int) -> bool:
        """Nothing comes on ``pipe`` for a while."""
        return not self.acceptors[pipe].poll(QUIET)

    def replies(self, pipe: int) -> list[bytes]:
        frame = self.recv(pipe)
        assert frame[0] == wire.REPLIES, frame
        return wire.decode_replies(frame)

    def control(self, pipe: int) -> object:
        frame = self.recv(pipe)
        assert frame[0] == wire.CONTROL, frame
        return wire.decode_control(frame)

    def run(self, pipe: int, *entries: tuple[bytes, bytes]) -> list[bytes]:
        self.send(pipe, batch(*entries))
        return self.replies(pipe)

    def new_pipe(self, index: int) -> None:
        """The supervisor hands the worker a new pipe for acceptor ``index``."""
        ours, theirs = Pipe()
        with socket.socket(fileno=self.supervisor.fileno()) as sock:
            socket.send_fds(sock, [b"%d" % index], [theirs.fileno()])
            sock.detach()
        theirs.close()
        self.acceptors[index].close()
        self.acceptors[index] = ours

    def stop(self) -> None:
        self.supervisor.close()  # the loop ends when the supervisor has gone
        for conn in self.acceptors:
            conn.close()
        self.thread.join(WAIT)
        assert not self.thread.is_alive()
        self.ctl.close()


@pytest.fixture
def worker():
    w = Worker(2)
    yield w
    w.stop()


def started(w: Worker) -> None:
    for pipe in range(len(w.acceptors)):
        assert w.control(pipe) == wire.InDoubt([])


def test_replies_go_back_on_the_pipe_of_their_batch(worker):
    started(worker)
    worker.send(0, batch(entry("SET", "a", "0")))
    worker.send(1, batch(entry("SET", "b", "1"), entry("GET", "b")))
    assert worker.replies(1) == [b"+OK\r\n", b"$1\r\n1\r\n"]
    assert worker.replies(0) == [b"+OK\r\n"]
    assert worker.run(0, entry("GET", "b"), entry("GET", "a")) == [b"$1\r\n1\r\n", b"$1\r\n0\r\n"]


def test_a_push_through_one_pipe_wakes_the_waiters_of_both_in_fifo_order(worker):
    started(worker)
    # Tokens are each acceptor's own: both use token 5.
    assert worker.run(0, entry("BLPOP", "q", 0, token=5)) == [b""]
    assert worker.run(1, entry("BLPOP", "q", 0, token=5)) == [b""]
    assert worker.run(0, entry("BLPOP", "q", 0, token=6)) == [b""]
    assert worker.run(1, entry("BLPOP", "q", 0, token=7)) == [b""]
    worker.send(1, b"X7")  # pipe 1's token 7 goes away; pipe 0 has no token 7
    assert worker.run(1, entry("RPUSH", "q", "a", "b", "c", "d")) == [b":4\r\n"]
    assert wire.decode_wake(worker.recv(0)) == (5, b"*2\r\n$1\r\nq\r\n$1\r\na\r\n")
    assert wire.decode_wake(worker.recv(1)) == (5, b"*2\r\n$1\r\nq\r\n$1\r\nb\r\n")
    assert wire.decode_wake(worker.recv(0)) == (6, b"*2\r\n$1\r\nq\r\n$1\r\nc\r\n")
    assert worker.quiet(1)
    assert worker.run(1, entry("LRANGE", "q", 0, -1)) == [b"*1\r\n$1\r\nd\r\n"]


def test_waiters_are_served_in_the_order_of_their_stamps_whatever_pipe_came_first(worker):
    """Each blocking entry carries when its acceptor ran it (``wire.FLAG_STAMP``):
    a waiter whose frame came later but whose command ran earlier, through
    another acceptor, goes ahead of it in the key's queue (it was appended)."""
    started(worker)
    stamped = wire.FLAG_STAMP
    assert worker.run(1, entry("BLPOP", "q", 0, 2000, flags=stamped, token=5)) == [b""]
    assert worker.run(0, entry("BLPOP", "q", 0, 1000, flags=stamped, token=5)) == [b""]
    assert worker.run(0, entry("BLPOP", "q", 0, 3000, flags=stamped, token=6)) == [b""]
    assert worker.run(1, entry("BLPOP", "q", 0, 2500, flags=stamped, token=7)) == [b""]
    assert worker.run(1, entry("RPUSH", "q", "a", "b", "c", "d")) == [b":4\r\n"]
    assert wire.decode_wake(worker.recv(1)) == (5, b"*2\r\n$1\r\nq\r\n$1\r\nb\r\n")
    assert wire.decode_wake(worker.recv(1)) == (7, b"*2\r\n$1\r\nq\r\n$1\r\nc\r\n")
    assert wire.decode_wake(worker.recv(0)) == (5, b"*2\r\n$1\r\nq\r\n$1\r\na\r\n")
    assert wire.decode_wake(worker.recv(0)) == (6, b"*2\r\n$1\r\nq\r\n$1\r\nd\r\n")


def test_a_cancel_only_forgets_its_own_pipes_token(worker):
    started(worker)
    assert worker.run(0, entry("BLPOP", "q", 0, token=9)) == [b""]
    worker.send(1, b"X9")
    assert worker.run(1, entry("RPUSH", "q", "x")) == [b":1\r\n"]
    assert wire.decode_wake(worker.recv(0)) == (9, b"*2\r\n$1\r\nq\r\n$1\r\nx\r\n")


def test_a_held_shard_runs_no_other_pipes_batch_until_released(worker):
    started(worker)
    assert worker.run(0, entry(Verb.HOLD)) == [b"+OK\r\n"]
    worker.send(1, batch(entry("SET", "k", "from-1")))
    assert worker.quiet(1)
    # Later batches of the holder run as usual; pipe 1's SET has not run.
    assert worker.run(0, entry("GET", "k")) == [b"$-1\r\n"]
    assert worker.run(0, entry(Verb.HOLD))[0].startswith(b"-ERR shard already held")
    assert worker.quiet(1)
    assert worker.run(0, entry("SET", "k", "from-0"), entry(Verb.RELEASE)) == [b"+OK\r\n", b"+OK\r\n"]
    assert worker.replies(1) == [b"+OK\r\n"]
    assert worker.run(0, entry("GET", "k")) == [b"$6\r\nfrom-1\r\n"]


def test_a_hold_ends_when_its_pipe_closes(worker):
    started(worker)
    assert worker.run(1, entry(Verb.HOLD)) == [b"+OK\r\n"]
    worker.send(0, batch(entry("SET", "k", "v")))
    assert worker.quiet(0)
    worker.acceptors[1].close()
    assert worker.replies(0) == [b"+OK\r\n"]
    worker.new_pipe(1)
    assert worker.control(1) == wire.InDoubt([])
    assert worker.run(1, entry("GET", "k")) == [b"$1\r\nv\r\n"]


def test_a_prepared_operation_whose_pipe_closed_keeps_the_shard_until_resolved(worker):
    started(worker)
    op = (1 << 32) | 7  # coordinator 0's
    assert worker.run(0, entry("SET", "k", "old")) == [b"+OK\r\n"]
    park = entry(Verb.PREPARE, op, "SET", "k", "new", flags=wire.FLAG_PARK)
    (body,) = worker.run(0, park)
    assert wire.decode_answer(body) == wire.PartPrepared(op, True, "OK")
    worker.acceptors[0].close()  # coordinator 0 dies before deciding
    worker.send(1, batch(entry("GET", "k")))
    assert worker.quiet(1)  # the shard is still coordinator 0's
    worker.new_pipe(0)
    assert worker.control(0) == wire.InDoubt([op])
    assert worker.quiet(1)
    worker.send(0, wire.encode_control(wire.Resolve({op: True})))
    assert worker.control(0) == wire.Finished(op, True)
    assert worker.replies(1) == [b"$3\r\nnew\r\n"]


def test_an_operation_that_prepared_nothing_is_dropped_with_its_pipe(worker):
    started(worker)
    op = (1 << 32) | 8
    park = entry(Verb.PREPARE, op, "DEL", "missing", flags=wire.FLAG_PARK)
    (body,) = worker.run(0, park)
    assert wire.decode_answer(body) == wire.PartPrepared(op, False, 0)
    assert worker.run(1, entry("SET", "k", "v")) == [b"+OK\r\n"]
    park = entry(Verb.PARK, op + 1, 1, "k", flags=wire.FLAG_PARK)
    (body,) = worker.run(0, park)
    assert type(wire.decode_answer(body)) is wire.Parked
    worker.send(1, batch(entry("GET", "k")))
    assert worker.quiet(1)  # parked for coordinator 0
    worker.acceptors[0].close()
    assert worker.replies(1) == [b"$1\r\nv\r\n"]


def test_a_lost_pipe_leaves_no_exec_start_holding_the_sweeper(worker):
    # A shard parked for an EXEC with scripts whose acceptor died as the
    # shard sent its Ran leaves park() with the send's error, the EXEC's
    # start still recorded: losing the pipe must drop it, or the sweeper
    # never again deletes a key that expired after it.
    started(worker)
    assert worker.run(1, entry("SET", "k", "v")) == [b"+OK\r\n"]
    ks = worker.shard.keyspace
    ks.exec_frozen[(1 << 32) | 9] = 1  # what such a park leaves
    ks.exec_carried[1] = 1
    worker.acceptors[0].close()
    deadline = time.monotonic() + WAIT
    while (ks.exec_frozen or ks.exec_carried) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not ks.exec_frozen and not ks.exec_carried
    assert worker.run(1, entry("GET", "k")) == [b"$1\r\nv\r\n"]


@pytest.mark.parametrize("npipes", [1, 2])
def test_a_shard_parked_for_an_exec_with_scripts_forgets_its_start_when_its_acceptor_goes(npipes):
    # The acceptor dies while the shard waits in park() for the EXEC's Run:
    # park()'s recv fails, and the loop's loss of the pipe must drop the
    # EXEC's start, or the sweeper never again deletes a key expired after it.
    w = Worker(npipes)
    try:
        for pipe in range(npipes):
            assert w.control(pipe) == wire.InDoubt([])
        assert w.run(0, entry("SET", "k", "v")) == [b"+OK\r\n"]
        op = (1 << 32) | 13
        at = int(time.time() * 1000)
        (parked,) = w.run(0, entry(Verb.PARK_AT, at, Verb.PARK, op, 0, "k", flags=wire.FLAG_PARK))
        assert type(wire.decode_answer(parked)) is wire.Parked
        ks = w.shard.keyspace
        assert ks.exec_frozen == {op: at}
        w.acceptors[0].close()
        deadline = time.monotonic() + WAIT
        while ks.exec_frozen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not ks.exec_frozen and not ks.exec_carried
        if npipes > 1:
            assert w.run(1, entry("GET", "k")) == [b"$1\r\nv\r\n"]
    finally:
        w.stop()


def in_doubt_of_coordinator_1(seq: int) -> tuple[Worker, int]:
    """A worker of two pipes whose shard holds coordinator 1's operation
    ``seq`` prepared on ``k``, as after a restart: each pipe's control
    answer lists only its own operations in doubt."""
    shard = Shard(0, 1)
    op = (1 << COORDINATOR_SHIFT) | (3 << 32) | seq  # coordinator 1's
    shard.prepared[op] = Prepared({b"k": None}, None, 0)
    w = Worker(2, shard)
    try:
        assert w.control(0) == wire.InDoubt([])
        assert w.control(1) == wire.InDoubt([op])
    except BaseException:
        w.stop()
        raise
    return w, op


def test_in_doubt_operations_go_to_their_coordinators_pipe_only():
    w, op = in_doubt_of_coordinator_1(1)
    try:
        w.send(0, batch(entry("SET", "other", "x")))
        assert w.quiet(0)  # nothing runs before coordinator 1 resolves it
        w.send(1, wire.encode_control(wire.Resolve({op: False})))
        assert w.control(1) == wire.Finished(op, False)
        assert w.replies(0) == [b"+OK\r\n"]
    finally:
        w.stop()


def test_events_go_to_every_pipe_whose_mask_selects_them(worker):
    started(worker)
    mask = events.GENERIC | events.STRING
    ok = [b"$2\r\nOK\r\n"]  # __events' reply, which the acceptor drops
    assert worker.run(0, entry(Verb.EVENTS, mask)) == ok
    assert worker.run(1, entry(Verb.EVENTS, events.GENERIC)) == ok
    worker.send(1, batch(entry("SET", "k", "v"), entry("DEL", "k")))
    # Pipe 1 asked for generic events only: DEL's, before its reply (index 1);
    # both replies wait until acceptor 0 handed out its O frame number 1.
    frame = worker.recv(1)
    assert frame[0] == wire.GATED_EVENTS
    assert wire.decode_gated_events(frame) == ([0, 1], [(0, b"k", events.GENERIC, b"del")], [0, 1], [(0, 1)])
    assert worker.replies(1) == [b"+OK\r\n", b":1\r\n"]
    # Pipe 0 gets both, to hand out at once, with pipe 1's reply (index)
    # of each event's command.
    frame = worker.recv(0)
    assert wire.decode_others_events(frame) == (
        1,
        [(0, b"k", events.STRING, b"set"), (0, b"k", events.GENERIC, b"del")],
        (1, [0, 1]),
    )
    # Every O frame numbered in turn on its pipe.
    worker.send(1, batch(entry("SET", "k", "v"), entry("DEL", "k"), entry("SET", "k", "v")))
    frame = worker.recv(1)
    assert frame[0] == wire.GATED_EVENTS
    assert wire.decode_gated_events(frame)[2:] == ([0, 1, 2], [(0, 2)])
    assert len(worker.replies(1)) == 3
    assert wire.decode_others_events(worker.recv(0))[0] == 2
    # Only the replies whose commands' events went to pipe 0 wait (SET's go nowhere now).
    assert worker.run(0, entry(Verb.EVENTS, events.GENERIC)) == ok
    worker.send(1, batch(entry("SET", "k", "v"), entry("DEL", "k")))
    frame = worker.recv(1)
    assert wire.decode_gated_events(frame) == ([0, 1], [(0, b"k", events.GENERIC, b"del")], [1], [(0, 3)])
    assert len(worker.replies(1)) == 2
    assert wire.decode_others_events(worker.recv(0)) == (3, [(0, b"k", events.GENERIC, b"del")], (1, [1]))
    assert worker.run(0, entry(Verb.EVENTS, 0)) == ok
    assert worker.run(1, entry("SET", "k", "v")) == [b"+OK\r\n"]
    assert worker.quiet(0)


def test_expiry_waits_while_any_acceptor_pauses_clients(worker):
    started(worker)
    ks = worker.shard.keyspace
    assert worker.run(0, entry(Verb.PAUSE, 1)) == [b"+OK\r\n"]
    assert worker.run(1, entry(Verb.PAUSE, 1)) == [b"+OK\r\n"]
    assert worker.run(0, entry(Verb.PAUSE, 0)) == [b"+OK\r\n"]
    assert ks.expiry_paused  # acceptor 1 still pauses
    worker.new_pipe(1)  # acceptor 1 was restarted: its pause ended with it
    assert worker.control(1) == wire.InDoubt([])
    assert not ks.expiry_paused


def test_a_pause_ends_at_its_end_even_if_its_acceptor_says_so_late(worker):
    """Each ``__pause 1`` carries the pause's end: once it has passed, the
    shard expires keys again although that acceptor has not sent its
    ``__pause 0`` (its event loop, stalled on a loaded machine, runs the
    timer that ends the pause late), so a GET through another acceptor
    after the end deletes an expired key, as on redis-server (before, the
    shard kept it until the late acceptor's ``__pause 0``)."""
    started(worker)
    ks = worker.shard.keyspace
    assert worker.run(0, entry("SET", "k", "v", "PX", 1)) == [b"+OK\r\n"]
    end = time.monotonic() + 0.05
    assert worker.run(1, entry(Verb.PAUSE, 1, round(end * 1e6))) == [b"+OK\r\n"]
    assert worker.run(0, entry(Verb.PAUSE, 1, round((end + 60) * 1e6))) == [b"+OK\r\n"]
    while time.monotonic() < end + 0.01:  # past acceptor 1's end (and k's)
        time.sleep(0.01)
    assert worker.run(0, entry(Verb.PAUSE, 0)) == [b"+OK\r\n"]  # acceptor 0's pause ends
    assert worker.run(0, entry("GET", "k")) == [b"$-1\r\n"]
    assert ks.expired_keys == 1 and not ks.expiry_paused


def test_a_release_behind_a_park_runs_after_the_decision(worker):
    started(worker)
    op = (1 << 32) | 11
    park = entry(Verb.PARK, op, 1, "k", flags=wire.FLAG_PARK)
    worker.send(0, batch(entry(Verb.HOLD), park, entry(Verb.RELEASE)))
    ok, parked = worker.replies(0)  # the replies up to the park
    assert ok == b"+OK\r\n"
    assert type(wire.decode_answer(parked)) is wire.Parked
    worker.send(1, batch(entry("SET", "k", "v")))
    assert worker.quiet(1)
    worker.send(0, wire.encode_control(wire.Decide(op, False)))
    assert worker.control(0) == wire.Finished(op, False)
    assert worker.replies(0) == [b"+OK\r\n"]  # the __release, after the decision
    assert worker.replies(1) == [b"+OK\r\n"]


@pytest.mark.parametrize("commit", [True, False])
def test_an_operations_events_go_to_its_pipe_alone(worker, commit):
    """Pipe 1 wants them, pipe 0 (the operation's) does not: pipe 0 still
    gets them, to order with the operation's other shards and relay to the
    other acceptors once it commits (see shardkv.acceptor.shardlink); pipe 1
    never gets them from the shard, committed or not."""
    started(worker)
    assert worker.run(1, entry(Verb.EVENTS, events.STRING)) == [b"$2\r\nOK\r\n"]
    op = (1 << 32) | 12
    worker.send(0, batch(entry(Verb.PREPARE, op, "SET", "k", "v", flags=wire.FLAG_PARK)))
    assert wire.decode_events(worker.recv(0))[1] == [(0, b"k", events.STRING, b"set")]
    (body,) = worker.replies(0)
    assert wire.decode_answer(body) == wire.PartPrepared(op, True, "OK")
    worker.send(0, wire.encode_control(wire.Decide(op, commit)))
    assert worker.control(0) == wire.Finished(op, commit)
    assert worker.quiet(1)
    assert worker.run(1, entry("GET", "k")) == ([b"$1\r\nv\r\n"] if commit else [b"$-1\r\n"])


def test_a_parts_events_go_to_its_pipe_alone(worker):
    """A FLAG_PART entry's events (one shard's part of MSET, DEL...) go
    to the pipe it came on, whose acceptor relays them in the command's
    order; an ordinary command's go to every pipe that wants them."""
    started(worker)
    assert worker.run(1, entry(Verb.EVENTS, events.STRING)) == [b"$2\r\nOK\r\n"]
    worker.send(0, batch(entry("SET", "p", "v", flags=wire.FLAG_PART), entry("SET", "q", "v")))
    # The part's event for pipe 0 to relay; SET q's reply waits for pipe 1's O frame.
    assert wire.decode_gated_events(worker.recv(0)) == (
        [1, 1],
        [(0, b"p", events.STRING, b"set")],
        [1],
        [(1, 1)],
    )
    assert len(worker.replies(0)) == 2
    assert wire.decode_others_events(worker.recv(1)) == (1, [(0, b"q", events.STRING, b"set")], (0, [1]))
    assert worker.quiet(1)


def test_pipes_take_turns_even_when_one_has_frames_read_ahead(worker):
    started(worker)
    assert worker.run(0, entry(Verb.HOLD)) == [b"+OK\r\n"]
    worker.send(1, batch(entry("SET", "k", "v")))  # waits, unread, while pipe 0 holds
    # The release and the GETs after it arrive together: pipe 1's SET has
    # its turn right after the release, before any of them.
    frames = [batch(entry(Verb.RELEASE))] + [batch(entry("GET", "k"))] * 50
    with socket.socket(fileno=os.dup(worker.acceptors[0].fileno())) as sock:
        sock.sendall(b"".join(wire.FRAME.pack(len(f)) + f for f in frames))  # one write: read as one
    assert worker.replies(0) == [b"+OK\r\n"]
    assert worker.replies(1) == [b"+OK\r\n"]
    for _ in range(50):
        assert worker.replies(0) == [b"$1\r\nv\r\n"]


def test_a_frame_that_comes_while_a_pipe_runs_its_read_ahead_goes_before_the_rest():
    """Two frames of pipe 0 are read in one go; while the first runs, pipe
    1's frame reaches the kernel.  Before pipe 0's second turn in a row the
    loop looks there, so pipe 1's SET runs between them, as if each pipe
    had been read frame by frame."""
    shard = Shard(0, 1)
    run_batch = shard.run_batch
    during_first: list = []

    def run_batch_and_send(payload: bytes) -> bytes:
        reply = run_batch(payload)
        while during_first:
            during_first.pop()()  # from the worker's thread, before its next turn
        return reply

    shard.run_batch = run_batch_and_send  # type: ignore[method-assign]
    w = Worker(2, shard)
    try:
        started(w)
        during_first.append(lambda: w.send(1, batch(entry("SET", "k", "2"))))
        frames = [batch(entry("SET", "k", "1")), batch(entry("GET", "k"))]
        with socket.socket(fileno=os.dup(w.acceptors[0].fileno())) as sock:
            sock.sendall(b"".join(wire.FRAME.pack(len(f)) + f for f in frames))  # one write: read as one
        assert w.replies(0) == [b"+OK\r\n"]
        assert w.replies(1) == [b"+OK\r\n"]
        assert w.replies(0) == [b"$1\r\n2\r\n"]
    finally:
        w.stop()


class CountingPoll:
    """A ``select.poll`` that notes the timeout of each ``poll``."""

    def __init__(self, poller: object) -> None:
        self.poller = poller
        self.timeouts: list[float] = []
        self.register = poller.register  # type: ignore[attr-defined]
        self.unregister = poller.unregister  # type: ignore[attr-defined]

    def poll(self, timeout: float) -> list:
        self.timeouts.append(timeout)
        return self.poller.poll(timeout)  # type: ignore[attr-defined]


def test_a_frame_the_wait_found_costs_no_second_look():
    """Pipe 0 sends one frame at a time and pipe 1 nothing: each frame is
    found by the wait's one ``poll``, which asked the kernel about every
    pipe, so pipe 0's second turn in a row needs no look (a ``poll`` that
    does not wait) before it: one system call less per frame.  Fairness
    where it matters is the test above."""
    w = Worker(2, start=False)
    counting = CountingPoll(w.loop.poller)
    w.loop.poller = counting  # type: ignore[assignment]
    w.thread.start()
    try:
        started(w)
        assert w.run(0, entry("SET", "k", "0")) == [b"+OK\r\n"]  # pipe 0 had the last turn
        counting.timeouts.clear()
        for i in range(20):
            assert w.run(0, entry("SET", "k", i)) == [b"+OK\r\n"]
        looks = [t for t in counting.timeouts if t == 0]
        assert len(looks) <= 2, counting.timeouts  # a wait whose timers were due, at most
        # One wait per frame; the first frame's may have begun before the
        # clear() (the worker can be back in its poll before this thread
        # runs again), so 19 counted is one wait per frame too.
        assert len(counting.timeouts) >= 19, counting.timeouts
    finally:
        w.stop()


def test_an_inquiry_is_answered_between_batches_and_while_parked():
    """An ``I`` frame gets its ``I`` answer at once, even from a parked shard,
    before the batches that wait behind the park (a script's INFO)."""
    w = Worker(1)
    try:
        started_one(w)
        assert w.run(0, entry("SET", "k", "v")) == [b"+OK\r\n"]
        w.send(0, wire.encode_inquiry([Verb.INFO]))
        frame = w.recv(0)
        assert frame[0] == wire.INQUIRY
        assert wire.decode_inquiry_answer(frame)[0] == 1  # one key
        op = (1 << 32) | 12
        w.send(0, batch(entry(Verb.PARK, op, 1, "k", flags=wire.FLAG_PARK)))
        (parked,) = w.replies(0)
        assert type(wire.decode_answer(parked)) is wire.Parked
        w.send(0, batch(entry("GET", "k")))  # waits behind the park
        w.send(0, wire.encode_inquiry([Verb.INFO]))
        assert type(wire.decode_inquiry_answer(w.recv(0))) is list
        w.send(0, wire.encode_inquiry([b"SET", b"k", b"x"]))  # only the verbs of figures
        assert wire.decode_inquiry_answer(w.recv(0)) == Error("ERR bad inquiry")
        w.send(0, wire.encode_control(wire.Decide(op, False)))
        assert w.control(0) == wire.Finished(op, False)
        assert w.replies(0) == []  # the rest of the park's batch
        assert w.replies(0) == [b"$1\r\nv\r\n"]
    finally:
        w.stop()


def started_one(w: Worker) -> None:
    assert w.control(0) == wire.InDoubt([])


# -- inquiries from every pipe, wherever the shard waits ------------------------------


def inquiry_answer(w: Worker, pipe: int) -> object:
    frame = w.recv(pipe)
    assert frame[0] == wire.INQUIRY, frame
    return wire.decode_inquiry_answer(frame)


def test_a_held_shard_answers_the_other_pipes_inquiries_and_keeps_their_batches_in_order(worker):
    """While pipe 0 holds the shard, pipe 1's ``I`` frames are answered on
    pipe 1 at once, also one sent behind a batch of pipe 1 that must wait;
    pipe 1's batches run after the release, in the order they came."""
    started(worker)
    assert worker.run(0, entry(Verb.HOLD)) == [b"+OK\r\n"]
    worker.send(1, batch(entry("SET", "k", "1")))
    worker.send(1, wire.encode_inquiry([Verb.INFO]))
    worker.send(1, batch(entry("APPEND", "k", "2")))
    worker.send(1, wire.encode_inquiry([Verb.INFO]))
    assert inquiry_answer(worker, 1)[0] == 0  # no key yet: SET has not run
    assert inquiry_answer(worker, 1)[0] == 0
    assert worker.quiet(1)
    assert worker.quiet(0)  # nothing of pipe 1's reaches pipe 0
    # The holder's own frames still run, and its own inquiries are answered.
    assert worker.run(0, entry("SET", "h", "x")) == [b"+OK\r\n"]
    worker.send(0, wire.encode_inquiry([Verb.INFO]))
    assert inquiry_answer(worker, 0)[0] == 1
    assert worker.run(0, entry(Verb.RELEASE)) == [b"+OK\r\n"]
    assert worker.replies(1) == [b"+OK\r\n"]
    assert worker.replies(1) == [b":2\r\n"]
    assert worker.run(1, entry("GET", "k")) == [b"$2\r\n12\r\n"]


def test_frames_kept_while_the_shard_was_held_start_in_the_order_they_came():
    """Three pipes: while pipe 0 holds the shard, pipe 2's GET is kept, and
    later pipe 1's SET (its ``__hold`` after a refused try, say).  After the
    release the GET, which came first, runs first, whosever turn it is
    (pipe 1's, after pipe 0's frame).  Otherwise, with ``LRANGE B`` then a
    push to A pipelined through acceptor 2 while acceptor 0 held B, the
    ``BLMOVE A B`` of acceptor 1's client, woken by the push, ran on B
    before the LRANGE, which Redis runs first (issue 22, at 3 acceptors)."""
    w = Worker(3)
    try:
        started(w)
        assert w.run(0, entry(Verb.HOLD)) == [b"+OK\r\n"]
        w.send(2, batch(entry("GET", "k")))
        w.send(2, wire.encode_inquiry([Verb.INFO]))
        assert inquiry_answer(w, 2)[0] == 0  # answered behind the GET, kept
        w.send(1, batch(entry("SET", "k", "1")))
        w.send(1, wire.encode_inquiry([Verb.INFO]))
        assert inquiry_answer(w, 1)[0] == 0
        assert w.run(0, entry(Verb.RELEASE)) == [b"+OK\r\n"]
        assert w.replies(2) == [b"$-1\r\n"]
        assert w.replies(1) == [b"+OK\r\n"]
    finally:
        w.stop()


def test_a_shard_parked_for_one_pipe_answers_the_others_inquiries(worker):
    started(worker)
    assert worker.run(0, entry("SET", "k", "v")) == [b"+OK\r\n"]
    op = (1 << 32) | 21
    (parked,) = worker.run(0, entry(Verb.PARK, op, 1, "k", flags=wire.FLAG_PARK))
    assert type(wire.decode_answer(parked)) is wire.Parked
    worker.send(1, batch(entry("GET", "k")))
    worker.send(1, wire.encode_inquiry([Verb.INFO]))
    assert type(inquiry_answer(worker, 1)) is list
    worker.send(0, wire.encode_inquiry([Verb.INFO]))
    assert inquiry_answer(worker, 0)[0] == 1
    assert worker.quiet(1)  # the GET waits behind the park
    worker.send(0, wire.encode_control(wire.Decide(op, False)))
    assert worker.control(0) == wire.Finished(op, False)
    assert worker.replies(0) == []  # the rest of the park's batch
    assert worker.replies(1) == [b"$1\r\nv\r\n"]


def test_a_parked_shard_reads_only_the_pipes_that_have_something(monkeypatch, worker):
    """A parked shard waits for its operation's next message in one
    ``select`` over every pipe, and reads a pipe only when it says it is
    readable: no ``recv`` that finds nothing on each pipe before each wait
    (two or three waits per parked operation, each such ``recv`` a system
    call).  What the wait reads still runs as before."""
    empty = []
    real_fill = FrameReader.fill

    def fill(reader: FrameReader) -> bool:
        got = real_fill(reader)
        if not got:
            empty.append(reader)
        return got

    started(worker)
    op = (1 << 32) | 23  # coordinator 0's
    (parked,) = worker.run(0, entry(Verb.PARK, op, 1, "k", flags=wire.FLAG_PARK))
    assert type(wire.decode_answer(parked)) is wire.Parked
    monkeypatch.setattr(FrameReader, "fill", fill)
    assert worker.quiet(0)  # the shard waits in its park
    worker.send(1, batch(entry("GET", "k")))  # waits behind the park
    worker.send(1, wire.encode_inquiry([Verb.INFO]))
    assert type(inquiry_answer(worker, 1)) is list
    worker.send(0, wire.encode_control(wire.Decide(op, False)))
    assert worker.control(0) == wire.Finished(op, False)
    assert worker.replies(0) == []  # the rest of the park's batch
    assert worker.replies(1) == [b"$-1\r\n"]
    monkeypatch.undo()
    assert empty == []


def test_a_script_waiting_for_its_acceptor_answers_the_other_pipes_inquiries(worker):
    """A script of pipe 0 calls INFO: it waits for pipe 0's ``A`` frame.
    Meanwhile pipe 1's inquiry is answered on pipe 1 (its acceptor may need
    it to answer a script of its own elsewhere), and pipe 1's batch waits
    until the script has ended."""
    started(worker)
    assert worker.run(1, entry("SET", "k", "v")) == [b"+OK\r\n"]
    script = "redis.call('set', KEYS[1], 'w'); return redis.call('info', 'keyspace')"
    worker.send(0, batch(entry("EVAL", script, 1, "k")))
    frame = worker.recv(0)
    assert frame[0] == wire.SCRIPT_QUERY
    assert wire.decode_script_query(frame)[:3] == (0, 2, [b"info", b"keyspace"])
    worker.send(1, batch(entry("GET", "k")))
    worker.send(1, wire.encode_inquiry([Verb.INFO]))
    assert inquiry_answer(worker, 1)[0] == 1
    worker.send(0, wire.encode_inquiry([Verb.INFO]))  # the script's own acceptor asks too
    assert type(inquiry_answer(worker, 0)) is list
    assert worker.quiet(1)  # the script is atomic: the GET waits
    worker.send(0, wire.encode_script_answer(b"$5\r\nfound\r\n"))
    assert worker.replies(0) == [b"$5\r\nfound\r\n"]
    assert worker.replies(1) == [b"$1\r\nw\r\n"]


def test_a_shard_in_doubt_answers_the_inquiries_of_the_pipes_that_wait():
    w, op = in_doubt_of_coordinator_1(2)
    try:
        w.send(0, batch(entry("SET", "other", "x")))
        w.send(0, wire.encode_inquiry([Verb.INFO]))
        assert inquiry_answer(w, 0)[0] == 0
        assert w.quiet(0)
        w.send(1, wire.encode_control(wire.Resolve({op: False})))
        assert w.control(1) == wire.Finished(op, False)
        assert w.replies(0) == [b"+OK\r\n"]
    finally:
        w.stop()


# -- an inquiry answered mid-script writes nothing of the script to the AOF ----------


def aof_text(directory) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.glob("*.incr.aof")))


@pytest.mark.parametrize("npipes", [1, 2])
def test_an_inquiry_answered_while_a_script_waits_leaves_the_aof_alone(tmp_path, npipes):
    """A script wrote, then asked for every shard's figures (its ``Q``
    frame): the ``I`` frames answered meanwhile, its own acceptor's and
    another's, acknowledge no write, so nothing of the script reaches the
    AOF before it ends; then its effects go in as one MULTI/EXEC (as Redis
    writes a script's), and only then does its reply leave."""
    cfg = config.defaults()
    cfg.update({"dir": str(tmp_path), "shards": 1, "appendonly": True, "appendfsync": "always"})
    shard = Shard(0, 1, config=cfg)
    shard.persistence.start()  # type: ignore[union-attr]
    w = Worker(npipes, shard)
    try:
        started(w)
        before = aof_text(tmp_path)
        script = (
            "redis.call('set', KEYS[1], 'x'); redis.call('info', 'keyspace'); redis.call('set', KEYS[1], 'y')"
        )
        w.send(0, batch(entry("EVAL", script, 1, "k")))
        frame = w.recv(0)
        assert frame[0] == wire.SCRIPT_QUERY
        for pipe in reversed(range(npipes)):  # another acceptor's inquiry, then the script's own
            w.send(pipe, wire.encode_inquiry([Verb.INFO]))
            assert inquiry_answer(w, pipe)[0] == 1
            assert aof_text(tmp_path) == before
        w.send(0, wire.encode_script_answer(b"$0\r\n\r\n"))
        assert w.replies(0) == [b"$-1\r\n"]
        logged = aof_text(tmp_path)[len(before) :]
        assert logged.startswith(b"*1\r\n$5\r\nMULTI\r\n")  # after a SELECT, if any
        assert logged.endswith(
            encode_command([b"set", b"k", b"x"])
            + encode_command([b"set", b"k", b"y"])
            + b"*1\r\n$4\r\nEXEC\r\n"
        )
    finally:
        w.stop()


# -- tries: the hold that never waits (``T`` frames) ----------------------------------


def try_hold(w: Worker, pipe: int) -> bytes:
    """Send a ``T`` frame on ``pipe``; its answer (``T1`` granted, ``T0`` refused)."""
    w.send(pipe, wire.TRY_FRAME)
    frame = w.recv(pipe)
    assert frame[0] == wire.TRY_HOLD, frame
    return frame


def test_a_try_on_a_free_shard_holds_it_until_release(worker):
    started(worker)
    assert try_hold(worker, 0) == wire.TRY_GRANTED
    worker.send(1, batch(entry("SET", "k", "from-1")))
    assert worker.quiet(1)  # held: pipe 1's batch waits
    assert worker.run(0, entry("SET", "k", "from-0")) == [b"+OK\r\n"]
    assert worker.run(0, entry(Verb.RELEASE)) == [b"+OK\r\n"]
    assert worker.replies(1) == [b"+OK\r\n"]
    assert worker.run(0, entry("GET", "k")) == [b"$6\r\nfrom-1\r\n"]


def test_a_try_is_refused_at_once_while_another_pipe_holds_the_shard(worker):
    """A try never waits: pipe 1's is answered while pipe 0 holds the shard
    (behind a batch of pipe 1 that waits), and takes nothing."""
    started(worker)
    assert worker.run(0, entry(Verb.HOLD)) == [b"+OK\r\n"]
    worker.send(1, batch(entry("SET", "k", "1")))
    assert try_hold(worker, 1) == wire.TRY_REFUSED
    assert worker.quiet(1)
    assert worker.run(0, entry(Verb.RELEASE)) == [b"+OK\r\n"]
    assert worker.replies(1) == [b"+OK\r\n"]
    # Not held by pipe 1: pipe 0 runs, and may take it again.
    assert worker.run(0, entry("GET", "k")) == [b"$1\r\n1\r\n"]
    assert try_hold(worker, 0) == wire.TRY_GRANTED


def test_a_try_is_refused_at_once_while_the_shard_is_parked_for_another_pipe(worker):
    started(worker)
    op = (1 << 32) | 21  # coordinator 0's
    (body,) = worker.run(0, entry(Verb.PARK, op, 1, "k", flags=wire.FLAG_PARK))
    assert type(wire.decode_answer(body)) is wire.Parked
    assert try_hold(worker, 1) == wire.TRY_REFUSED
    worker.send(0, wire.encode_control(wire.Decide(op, False)))
    assert worker.control(0) == wire.Finished(op, False)
    assert worker.replies(0) == []  # the rest of the park's batch
    assert try_hold(worker, 1) == wire.TRY_GRANTED


def test_a_try_does_not_overtake_another_pipes_hold_that_waits(worker):
    """Pipe 1's ``__hold`` waited while pipe 0 held the shard; pipe 0's
    release and its next try arrive together.  The try is refused (pipe 1
    waits in ascending order and must not starve), and pipe 1 holds next."""
    started(worker)
    assert worker.run(0, entry(Verb.HOLD)) == [b"+OK\r\n"]
    worker.send(1, batch(entry("SET", "k", "1")))
    worker.send(1, batch(entry(Verb.HOLD)))
    assert worker.quiet(1)
    frames = [batch(entry(Verb.RELEASE)), wire.TRY_FRAME]
    with socket.socket(fileno=os.dup(worker.acceptors[0].fileno())) as sock:
        sock.sendall(b"".join(wire.FRAME.pack(len(f)) + f for f in frames))  # one write: read as one
    assert worker.replies(0) == [b"+OK\r\n"]
    assert worker.recv(0) == wire.TRY_REFUSED
    assert worker.replies(1) == [b"+OK\r\n"]
    assert worker.replies(1) == [b"+OK\r\n"]  # pipe 1's hold
    worker.send(0, batch(entry("GET", "k")))
    assert worker.quiet(0)  # held by pipe 1
    assert worker.run(1, entry(Verb.RELEASE)) == [b"+OK\r\n"]
    assert worker.replies(0) == [b"$1\r\n1\r\n"]


def test_a_try_does_not_overtake_another_pipes_frame_already_read():
    """Pipe 0's GET and pipe 1's ``T`` frame reach the kernel together
    (sent while the worker runs a batch), and it is pipe 1's turn: the
    GET may have been sent before what made pipe 1's acceptor try (a
    push through pipe 0's acceptor to another shard notifying its
    BLMOVE), so the try is refused and the GET runs first, not after a
    step that the try would hold the shard for (issue 22: the GET used
    to wait for pipe 1's release)."""
    shard = Shard(0, 1)
    run_batch = shard.run_batch
    during: list = []

    def run_batch_and_send(payload: bytes) -> bytes:
        reply = run_batch(payload)
        while during:
            during.pop(0)()  # from the worker's thread, before it reads again
        return reply

    shard.run_batch = run_batch_and_send  # type: ignore[method-assign]
    w = Worker(2, shard)
    try:
        started(w)
        during.append(lambda: w.send(0, batch(entry("GET", "k"))))
        during.append(lambda: w.send(1, wire.TRY_FRAME))
        assert w.run(0, entry("SET", "k", "0")) == [b"+OK\r\n"]  # pipe 1's turn next
        assert w.recv(1) == wire.TRY_REFUSED
        assert w.replies(0) == [b"$1\r\n0\r\n"]
        assert try_hold(w, 1) == wire.TRY_GRANTED  # nothing waits now
        assert w.run(1, entry(Verb.RELEASE)) == [b"+OK\r\n"]
    finally:
        w.stop()


def test_a_granted_try_ends_when_its_pipe_closes(worker):
    """An acceptor that dies between its tries and its releases leaves the
    shard free."""
    started(worker)
    assert try_hold(worker, 1) == wire.TRY_GRANTED
    worker.send(0, batch(entry("SET", "k", "v")))
    assert worker.quiet(0)
    worker.acceptors[1].close()
    assert worker.replies(0) == [b"+OK\r\n"]
    assert try_hold(worker, 0) == wire.TRY_GRANTED
    worker.new_pipe(1)
    assert worker.control(1) == wire.InDoubt([])
    assert worker.run(0, entry(Verb.RELEASE)) == [b"+OK\r\n"]
    assert worker.run(1, entry("GET", "k")) == [b"$1\r\nv\r\n"]


def test_a_try_of_the_pipe_the_shard_is_parked_for_is_refused_at_once_not_kept(worker):
    """A try kept in the backlog would wait: if another acceptor took the
    shard first, its acceptor could hold a shard that one waits for."""
    started(worker)
    op = (1 << 32) | 22  # coordinator 0's
    (body,) = worker.run(0, entry(Verb.PARK, op, 1, "k", flags=wire.FLAG_PARK))
    assert type(wire.decode_answer(body)) is wire.Parked
    worker.send(1, batch(entry(Verb.HOLD)))  # waits for the park
    assert try_hold(worker, 0) == wire.TRY_REFUSED
    worker.send(0, wire.encode_control(wire.Decide(op, False)))
    assert worker.control(0) == wire.Finished(op, False)
    assert worker.replies(0) == []  # the rest of the park's batch
    assert worker.replies(1) == [b"+OK\r\n"]  # pipe 1 holds it now
    assert worker.quiet(0)  # and no try of pipe 0's was left to answer


def _record_sends(monkeypatch) -> list[bytes]:
    """What every socket.sendall sends from now on, in order (still sent)."""
    sent: list[bytes] = []
    real_sendall = socket.socket.sendall

    def sendall(sock: socket.socket, data: bytes, *args: int) -> None:
        sent.append(bytes(data))
        real_sendall(sock, data, *args)

    monkeypatch.setattr(socket.socket, "sendall", sendall)
    return sent


@pytest.mark.parametrize("npipes", [1, 2])
def test_without_aof_a_finished_leaves_with_the_next_frame(monkeypatch, npipes):
    """With nothing to persist, a shard's Finished (which only lets the
    acceptor forget its decision) costs no system call of its own: it
    leaves in the same send as the next operation's answer, in order.
    (The second part writes the first's key, so it has a round of its own.)"""
    sent = _record_sends(monkeypatch)
    w = Worker(npipes)
    try:
        started(w)
        first, second = (1 << 32) | 21, (1 << 32) | 22
        w.send(
            0,
            batch(
                entry(Verb.PREPARE, first, "SET", "a", "1", flags=wire.FLAG_PARK),
                entry(Verb.PREPARE, second, "SET", "a", "2", flags=wire.FLAG_PARK),
            ),
        )
        (body,) = w.replies(0)
        assert wire.decode_answer(body) == wire.PartPrepared(first, True, "OK")
        w.send(0, wire.encode_control(wire.Decide(first, True)))
        assert w.control(0) == wire.Finished(first, True)
        (body,) = w.replies(0)
        assert wire.decode_answer(body) == wire.PartPrepared(second, True, "OK")
        finished = wire.encode_control(wire.Finished(first, True))
        (together,) = [data for data in sent if finished in data]
        assert len(together) > len(finished) + 4  # not alone
        w.send(0, wire.encode_control(wire.Decide(second, True)))
        assert w.control(0) == wire.Finished(second, True)  # the batch is done: it goes
        assert w.replies(0) == []  # with the rest of the batch's replies: none
        assert w.run(0, entry("GET", "a")) == [b"$1\r\n2\r\n"]
    finally:
        w.stop()


@pytest.mark.parametrize("npipes", [1, 2])
def test_fan_out_parts_on_other_keys_are_answered_together_and_park_once(monkeypatch, npipes):
    """Parts of write fan-outs back to back in a batch, on keys no part
    before them changed, are prepared together: their answers leave in one
    frame, and the shard waits for both decisions, in either order."""
    w = Worker(npipes)
    try:
        started(w)
        first, second = (1 << 32) | 31, (1 << 32) | 32
        w.send(
            0,
            batch(
                entry(Verb.PREPARE, first, "SET", "a", "1", flags=wire.FLAG_PARK),
                entry(Verb.PREPARE, second, "SET", "b", "2", flags=wire.FLAG_PARK),
                entry("MGET", "a", "b"),
            ),
        )
        answers = [wire.decode_answer(body) for body in w.replies(0)]
        assert answers == [wire.PartPrepared(first, True, "OK"), wire.PartPrepared(second, True, "OK")]
        w.send(0, wire.encode_control(wire.Decide(second, True)))
        w.send(0, wire.encode_control(wire.Decide(first, False)))
        assert w.control(0) == wire.Finished(second, True)
        assert w.control(0) == wire.Finished(first, False)
        assert w.replies(0) == [b"*2\r\n$-1\r\n$1\r\n2\r\n"]  # the first undone, the second applied
    finally:
        w.stop()


def test_a_cross_shard_scripts_monitor_lines_leave_with_its_ran(monkeypatch):
    """The executor of a cross-shard script sends the commands it called
    (an ``M`` frame, for MONITOR) in the same send as its Ran, after its
    changes are prepared, not in a system call of its own."""
    sent = _record_sends(monkeypatch)
    w = Worker(1)
    try:
        started(w)
        op = (1 << 32) | 31
        (body,) = w.run(0, entry(Verb.PARK, op, 0, flags=wire.FLAG_PARK))
        assert type(wire.decode_answer(body)) is wire.Parked
        script = "redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])"
        run = wire.Run(op, {}, [[b"EVAL", script.encode(), b"1", b"k", b"v"]], 0, False, [b"k"])
        w.send(0, wire.encode_control(run))
        calls = w.recv(0)
        assert wire.decode_monitor(calls) == [(0, [b"set", b"k", b"v"]), (0, [b"get", b"k"])]
        ran = w.control(0)
        assert type(ran) is wire.Ran and ran.bodies == [b"$1\r\nv\r\n"] and ran.own == wire.PREPARED
        (together,) = [data for data in sent if calls in data]
        assert wire.encode_control(ran) in together
        w.send(0, wire.encode_control(wire.Decide(op, True)))
        assert w.control(0) == wire.Finished(op, True)
        assert w.replies(0) == []
        assert w.run(0, entry("GET", "k")) == [b"$1\r\nv\r\n"]
    finally:
        w.stop()


# A script that runs for a while (until 150 ms after its start), then answers.
_SPIN = "local t = redis.call('TIME') local e = t[1] * 1e6 + t[2] + 150000 while true do t = redis.call('TIME') if t[1] * 1e6 + t[2] >= e then return 1 end end"


def _replies(w: Worker, pipe: int) -> list[bytes]:
    """The next replies on ``pipe``, past the running reports (wire ``U``)
    that a script which reached its first count hook sent on every pipe."""
    frame = w.recv(pipe)
    while frame[0] == wire.RUNNING:
        frame = w.recv(pipe)
    assert frame[0] == wire.REPLIES, frame
    return wire.decode_replies(frame)


def _slot_becomes(flags: ScriptFlags, value: int) -> bool:
    deadline = time.monotonic() + WAIT
    while flags.slots[0] != value:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_the_script_flag_is_set_while_a_script_runs_or_the_shard_is_held(worker):
    """K > 1: the shard's slot of the shared script flags (see
    shardkv.runtime.scriptflags) is 1 while a script runs, set before its
    reply, and 0 again once it ended; 1 from a ``__hold`` until its
    ``__release`` (the held pipe's frames in between keep it), and from a
    granted try; a plain command leaves it 0."""
    flags = ScriptFlags(1)
    try:
        ks = worker.shard.keyspace
        ks.script_flags = flags.slots
        ks.flag_index = 0
        ks.flagged = False
        started(worker)
        assert worker.run(1, entry("SET", "k", "v")) == [b"+OK\r\n"]
        assert flags.slots[0] == 0
        sha = hashlib.sha1(_SPIN.encode()).hexdigest()
        # EVAL, and EVALSHA of one key (its own fast path: Engine.run_group)
        for command in (entry("EVAL", _SPIN, 0), entry("EVALSHA", sha, 1, "k")):
            worker.send(1, batch(command))
            assert _slot_becomes(flags, 1)
            assert _replies(worker, 1) == [b":1\r\n"]
            assert _slot_becomes(flags, 0)
        worker.send(0, batch(entry(Verb.HOLD)))
        assert _replies(worker, 0) == [b"+OK\r\n"]
        assert flags.slots[0] == 1
        assert worker.run(0, entry("GET", "k")) == [b"$1\r\nv\r\n"]
        assert flags.slots[0] == 1  # (still held)
        assert worker.run(0, entry(Verb.RELEASE)) == [b"+OK\r\n"]
        assert _slot_becomes(flags, 0)
        assert try_hold(worker, 1) == wire.TRY_GRANTED
        assert flags.slots[0] == 1
        assert worker.run(1, entry(Verb.RELEASE)) == [b"+OK\r\n"]
        assert _slot_becomes(flags, 0)
    finally:
        worker.shard.keyspace.script_flags = None
        flags.close()
