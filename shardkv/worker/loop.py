"""A worker process: its entry point, and the loop that reads frames from
the acceptors' pipes (one per acceptor), has the
:class:`~shardkv.worker.shard.Shard` run them, and sends the replies.

The loop is single-threaded and FIFO per pipe: each pipe's batches run in
the order they arrive, each batch start to finish before the next is
read, and the batches of different pipes interleave, batch by batch.
With one acceptor, that and the acceptor's single global order is what
makes commands that span shards serializable; with several, a shard is
also *exclusive* to one acceptor while that acceptor holds it
(``__hold``, or a ``T`` frame it granted) or while it is in one of its
cross-shard operations: then only that acceptor's frames run, and the
other pipes are read only to answer their ``I`` frames (inquiries) and
refuse their ``T`` frames (tries to hold), wherever the shard waits (see
:class:`Pipes`).  Between batches, and at least ``hz``
times a second when idle, the loop runs the active expiry cycle and the
persistence cron; it also wakes up for the earliest blocked command's
timeout.  The replies of batches already queued behind each other leave
in one write (and, with ``appendfsync always``, after one fsync).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

from shardkv.protocol import errors, wire
from shardkv.protocol.resp import Error, encode
from shardkv.protocol.wire import FRAME
from shardkv.runtime import faultpoints, gctuning, serverlog
from shardkv.runtime.exitcodes import EXIT_LOAD_FAILED, STOP_FLAGS, stop_mode
from shardkv.runtime.loadprogress import LoadProgress
from shardkv.runtime.parentdeath import die_with_parent
from shardkv.runtime.proctitle import set_name
from shardkv.runtime.schedules import Schedules
from shardkv.runtime.scriptflags import ScriptFlags
from shardkv.runtime.slowlogfile import SlowLogFile
from shardkv.worker.busyrefusal import Refusals
from shardkv.worker.busywatch import BusyWatches
from shardkv.worker.frames import FrameReader
from shardkv.worker.persistence.engine import Persistence
from shardkv.worker.persistence.files import LoadError
from shardkv.worker.shard import Prepared, Shard

log = logging.getLogger("shardkv.worker")


def serve(
    conns: list[Connection],
    ctl: Connection,
    index: int,
    cfg: dict,
    slow_log: SlowLogFile | None = None,
    progress: LoadProgress | None = None,
    schedules: Schedules | None = None,
    saved_at: int | None = None,
    script_flags: ScriptFlags | None = None,
) -> None:
    """The entry point of a worker process.

    ``conns[i]`` is the pipe to acceptor ``i`` (coordinator ``i`` of the
    cross-shard protocol); ``ctl`` the pipe to the supervisor, which hears
    ``loaded`` once the shard's data is in memory, and sends a new pipe for
    acceptor ``i`` (the message ``b"%d" % i`` with its fd) when that
    acceptor was restarted.  ``slow_log``: the slow log every process
    shares (see :mod:`shardkv.runtime.slowlogfile`); ``progress``: where it says how far its
    loading has come (see :mod:`shardkv.runtime.loadprogress`); ``schedules``: where it keeps
    the saves it has scheduled, and finds those of the worker it replaces (see
    :mod:`shardkv.runtime.schedules`); ``saved_at``: its last save until it saves (Unix seconds,
    the supervisor's time of its start, which the acceptors hear too, see
    ``Supervisor.saved_at``); ``script_flags``: where it says whether it may run a script
    (K > 1, see :mod:`shardkv.runtime.scriptflags`).  SIGTERM while it reads its files
    stops it there, saving nothing (exit 0).  Later SIGTERM stops the worker between batches: it
    flushes its AOF, saves as the supervisor's ``STOP_FLAGS`` said (without them, when ``save``
    rules exist), and exits 0, or 1 if the save failed (0 with ``force``).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    signal.signal(signal.SIGTERM, _request_stop)
    set_name(f"shardkv-shard{index}")
    die_with_parent()  # SIGTERM (flush and exit) if the supervisor dies
    serverlog.setup(cfg)
    shard = Shard(index, cfg["shards"], config=cfg)
    shard.stats.shared = slow_log
    signal.signal(signal.SIGUSR1, lambda *_: shard.scripts.request_kill())  # SCRIPT KILL
    signal.signal(signal.SIGUSR2, lambda *_: shard.scripts.request_exit())  # SHUTDOWN NOSAVE, busy
    signal.signal(wire.REPORT_SIGNAL, lambda *_: shard.scripts.request_report())  # a kill of the other kind
    shard.keyspace.runtime.hz = cfg["hz"]  # CONFIG SET hz reaches it through __config
    persistence = shard.persistence
    assert persistence is not None
    persistence.progress = progress
    if saved_at is not None:
        persistence.lastsave = saved_at
    # As Redis, a stop while the data loads ends the load at once and saves
    # nothing (its shutdownCommand and its signal handler turn any stop
    # while loading into NOSAVE): reading the files writes nothing but the
    # cut of a torn AOF tail, one truncate, so the files stay as they were.
    try:
        _Stop.loading = not _Stop.requested
        if _Stop.loading:
            persistence.read_files()
        _Stop.loading = False
        if _Stop.requested:
            raise _StoppedLoading
    except _StoppedLoading:
        log.warning("shard %d: stopped while loading its data; nothing saved", index)
        return
    except (LoadError, OSError) as e:
        _Stop.loading = False
        log.error("shard %d: cannot load its data: %s", index, e)
        sys.exit(EXIT_LOAD_FAILED)
    try:
        persistence.open_files()
    except (LoadError, OSError) as e:
        log.error("shard %d: cannot load its data: %s", index, e)
        sys.exit(EXIT_LOAD_FAILED)
    for op, (db, states) in persistence.in_doubt.items():
        shard.prepared[op] = Prepared(states, None, db)
    persistence.in_doubt = {}
    if schedules is not None:
        persistence.keep_schedules(schedules)
    if script_flags is not None:  # (K > 1: see shardkv.runtime.scriptflags)
        ks = shard.keyspace
        ks.script_flags = script_flags.slots
        ks.flag_index = index
        ks.flagged = bool(shard.prepared)  # (in doubt: exclusive to its coordinator)
        script_flags.slots[index] = int(ks.flagged)
    gctuning.settle()  # after loading: the loaded keys are never traversed
    faultpoints.hold("loaded", index)  # the fault-injection tests only
    ctl.send_bytes(b"loaded")
    Pipes(shard, ctl, conns).run()
    _read_ctl(ctl)  # the supervisor's STOP_FLAGS, sent before its SIGTERM
    try:
        persistence.close(stop_mode(_Stop.flags))
    except Exception as e:
        if "force" in _Stop.flags.split():
            log.warning("shard %d: Error trying to save the DB. Exit anyway. (%s)", index, e)
            return
        log.error("shard %d: could not save before exiting: %s", index, e)
        sys.exit(1)


class Pipe:
    """One acceptor's pipe, as the worker sees it: a :class:`FrameReader`,
    the frames read while the shard could not run them (``backlog``), and
    ``send``, which holds the replies of a batch back while more batches of
    this pipe are queued, so that one write carries them all (and, with
    appendfsync always, one fsync covers them).  Anything sent (a later
    reply, a wake, a control frame) sends what is held first, in order."""

    def __init__(self, shard: Shard, index: int, conn: Connection) -> None:
        self.index = index
        self.conn = conn
        self.shard = shard
        self.reader = reader = FrameReader(conn)
        self.backlog: list[bytes] = []
        # Where this pipe's index goes when its backlog starts (Pipes.kept).
        self.kept: list[int] = []
        self.broken = False  # a send to it failed: lost once the current frame is done
        persistence = shard.persistence
        commit = persistence.commit if persistence is not None else None
        sendall = reader.sock.sendall  # the pipe's socket; Connection's framing
        self.held = held = []  # type: list[bytes]
        self.held_logged = held_logged = []  # type: list[list]  # for each held frame, its replies that logged
        reported: list[str | None] = [None]  # the -MISCONF text the acceptor knows of

        def report_disk() -> None:
            # The acceptor refuses PING and writes in MULTI while a shard cannot
            # persist (a ``D`` frame), as Redis does: tell it when that changes,
            # before any reply refused because of it.
            if persistence is not None and persistence.misconf != reported[0]:
                reported[0] = persistence.misconf
                frame = wire.encode_disk(reported[0])
                sendall(FRAME.pack(len(frame)) + frame)

        stats = shard.home_stats

        def send(payload: bytes, logged: list | None = None) -> None:
            if stats.holding and stats.slowlog:
                # The batch's slow entries, logged before whatever this
                # frame makes the acceptor do (see Shard.run_batch).
                stats.flush_held()
            # What a batch logged reaches the AOF (and with `always` the disk)
            # before any reply of it leaves; if it cannot, the replies of the
            # commands that logged are refused with -MISCONF instead (with
            # `always` the worker exits in commit(), as Redis, sending none).
            if commit is not None and not commit():
                if logged is None and payload[0] == wire.REPLIES:
                    logged = shard.logged  # the part of a batch sent before it parks
                if held:
                    held[:] = [
                        _refuse_logged(f, lg, persistence) for f, lg in zip(held, held_logged, strict=True)
                    ]
                payload = _refuse_logged(payload, logged, persistence)
            if persistence is not None and persistence.misconf != reported[0]:
                self.tell_disk()
            held_logged.clear()
            if held:
                held.append(payload)
                sendall(b"".join([b for frame in held for b in (FRAME.pack(len(frame)), frame)]))
                held.clear()
            elif len(payload) > _BIG_FRAME:  # no copy of a big reply just to prefix its length
                sendall(FRAME.pack(len(payload)))
                sendall(payload)
            else:
                sendall(FRAME.pack(len(payload)) + payload)

        def send_state(payload: bytes) -> None:
            if stats.holding and stats.slowlog:
                stats.flush_held()  # (as send does)
            sendall(FRAME.pack(len(payload)) + payload)

        self.send = send
        self.send_state = send_state
        self.report_disk = report_disk
        # What a change of the -MISCONF state seen as this pipe sends
        # reports it on: this pipe, and with several every pipe (see
        # Pipes.report_disk).
        self.tell_disk: Callable[[], None] = report_disk
        self.inquiry_answer = shard.inquiry_answer

    def answer(self, inquiry: bytes) -> None:
        """Answer an ``I`` frame of this pipe, now.  The answer leaves as
        it is, like a script's ``Q`` frame: it acknowledges no write, so it
        neither waits for the AOF nor writes it, which in a script that
        wrote would log half of the script's effects, outside its
        MULTI/EXEC, and of an attempt that may still be rolled back.  A
        change of the -MISCONF state goes first (its ``D`` frame), as it
        does before any reply: ``__settled`` counts on it."""
        self.tell_disk()
        self.send_state(self.inquiry_answer(inquiry))

    def recv_waiting(self) -> bytes:
        """The next frame, for a shard that waits where it is (parked, in
        doubt, or a script waiting for an ``A`` frame): an ``I`` frame is
        answered at once, never kept for later (see :mod:`shardkv.protocol.wire`).
        With several pipes, :meth:`Pipes.recv_waiting` stands for it."""
        recv = self.reader.recv
        while True:
            payload = recv()
            if payload[0] != wire.INQUIRY:
                return payload
            self.answer(payload)

    def take_others(self, reads: int = -1) -> None:
        """This pipe is not the one the shard waits on (another acceptor
        holds the shard, or the shard waits for another one's frame): read
        what it has sent, answer its ``I`` frames, refuse its ``T`` frames
        (tries to hold the shard, which is not free), and keep its other
        frames in :attr:`backlog`, in order, for when the shard is free.  EOF or
        an error marks it broken (lost once the current frame is done).
        ``reads``: how many ``recv`` calls: as many as find something (-1),
        none (0: only the frames already read), or one (1: the pipe was
        said to be readable)."""
        reader = self.reader
        backlog = self.backlog
        waited = bool(backlog)
        try:
            if reads > 0:
                reader.fill()
            while reader.poll(0) if reads < 0 else reader.has_frame():
                payload = reader.pop()
                kind = payload[0]
                if kind == wire.INQUIRY:
                    self.answer(payload)
                elif kind == wire.TRY_HOLD:  # the shard is not free: never wait
                    self.send_state(wire.TRY_REFUSED)
                elif kind == wire.REFUSALS and self._behind(payload):
                    pass  # (another acceptor's script went busy: answered now)
                else:
                    backlog.append(payload)
        except (EOFError, OSError):
            self.broken = True
        if backlog and not waited:
            self.kept.append(self.index)

    def _behind(self, payload: bytes) -> bool:
        """A ``K`` frame read while the shard waits on another pipe: if it is
        an offer of a tail epoch (several acceptors: another acceptor's
        cross-shard script went busy, and this shard is parked, held or
        busy meanwhile), refuse what it offers now, as Redis reads those
        commands at the threshold, and say which (True)."""
        refusals = self.shard.refusals
        if refusals is None or wire.decode_refusals_epoch(payload) not in wire.TAIL_EPOCHS:
            return False
        refusals.offer_behind(self, payload)
        return True

    def take_batches(self) -> None:
        """This pipe is the one the shard waits on (a busy script's, or the
        coordinator's of the operation it is parked for): read what it has
        sent, keep its batches in :attr:`backlog`, answer its ``I`` frames
        and refuse its ``T`` frames (the shard is not free), in order, up to
        the first frame of another kind, which stays on the reader: the
        ``Decide``, ``A`` or ``K`` frame that :meth:`Shard.park`,
        ``Engine._ask_acceptor`` or ``Refusals`` read there, after putting
        every batch before it in the backlog just as this does.  EOF or an
        error marks it broken, as :meth:`take_others` does."""
        reader = self.reader
        backlog = self.backlog
        try:
            while True:
                kind = reader.next_kind()
                if kind == wire.BATCH:
                    backlog.append(reader.pop())
                elif kind == wire.INQUIRY:
                    self.answer(reader.pop())
                elif kind == wire.TRY_HOLD:
                    reader.pop()
                    self.send_state(wire.TRY_REFUSED)
                elif kind >= 0 or not reader.fill():
                    return
        except (EOFError, OSError):
            self.broken = True

    def hold_frame(self, payload: bytes) -> None:
        """Hold ``payload`` (a frame that acknowledges no write) back, to
        leave with the next frame sent or when the pipe goes idle, as held
        replies do."""
        self.held.append(payload)
        self.held_logged.append([])

    def flush(self) -> None:
        """Send the replies held back, if any."""
        if self.held:
            self.send(self.held.pop(), self.held_logged.pop())

    def fds(self) -> list[int]:
        return [self.conn.fileno(), self.reader.sock.fileno()]

    def close(self) -> None:
        self.reader.close()
        self.conn.close()


class Pipes:
    """The loop over a worker's acceptor pipes (one per acceptor).

    With one pipe (``--acceptors 1``) it is today's loop: it reads the pipe
    with a blocking ``recv`` bounded by the periodic work's period, and
    reads the control pipe only once the acceptor has gone.  With several,
    it waits on every pipe and on the control pipe (a restarted acceptor's
    new pipe comes there while the others are served) and takes batches
    pipe by pipe in turn, each pipe in its own order.  While the shard is
    held (``__hold``), parked, preparing or prepared for an operation of
    coordinator ``i``, it runs pipe ``i``'s frames only: the other pipes'
    frames wait, in order, until it is free (see :mod:`shardkv.worker.shard`),
    except their ``I`` frames, answered at once, whatever the shard waits
    for (between frames, parked, in doubt, or in a script waiting for its
    ``A`` frame): see :meth:`recv_waiting`.
    """

    def __init__(self, shard: Shard, ctl: Connection, conns: list[Connection]) -> None:
        self.shard = shard
        self.ctl = ctl
        self.pipes: list[Pipe | None] = [None] * len(conns)
        self.current: Pipe | None = None
        self.turn = 0  # the pipe to look at first, in turn
        # The kernel was asked about every pipe (the poll of _wait or _look)
        # since the last frame was taken: a pipe's second turn in a row
        # then needs no other look (see _next_frame).
        self.asked = False
        # The order to look at the pipes in, by whose turn it is (the
        # number of pipes never changes: a restarted acceptor's takes its place).
        self.npipes = n = len(conns)
        self.orders = [tuple((turn + k) % n for k in range(n)) for turn in range(n)]
        # The pipes whose frames were kept while the shard was not free for
        # them, in the order their first came (see _first_kept).
        self.kept: list[int] = []
        self.next_sweep = time.monotonic() + 1.0 / shard.keyspace.runtime.hz
        shard.send_to = self.send_to
        shard.recv_verdict = self.recv_verdict
        shard.npipes = len(conns)
        shard.send_state = self.send_state
        shard.refusals = Refusals(shard, self)
        shard.busy_watches = BusyWatches(shard, self)
        self.conns = conns
        # With several pipes, one poll() per wake-up says which are readable
        # (registered once, as pipes come and go); with one, it is unused.
        self.poller = select.poll()
        self.poller.register(ctl.fileno(), select.POLLIN)
        self.by_fd: dict[int, Pipe] = {}

    # -- pipes ------------------------------------------------------------------

    def select(self, pipe: Pipe) -> None:
        """Make ``pipe`` the one whose frames the shard runs now."""
        shard = self.shard
        self.current = pipe
        shard.keyspace.pipe = pipe.index
        shard.send, shard.backlog, shard.held = pipe.send, pipe.backlog, pipe.held
        shard.hold_frame = pipe.hold_frame
        shard.recv = pipe.recv_waiting if self.npipes == 1 else self.recv_waiting
        shard.send_query = pipe.send_state

    def attach(self, index: int, conn: Connection) -> None:
        """Start serving ``conn`` as acceptor ``index``'s pipe: first tell it
        what this shard holds in doubt for it, and apply the outcomes."""
        old = self.pipes[index]
        if old is not None:
            self.lose(old)
        pipe = self.pipes[index] = Pipe(self.shard, index, conn)
        pipe.kept = self.kept
        if self.npipes > 1:
            pipe.tell_disk = lambda: self.report_disk(pipe)
        fd = pipe.reader.sock.fileno()
        self.by_fd[fd] = pipe
        self.poller.register(fd, select.POLLIN)
        self._inherited()
        self.select(pipe)
        try:
            self.shard.report_in_doubt()
            pipe.report_disk()
        except (EOFError, OSError):
            self.lose(pipe)

    def report_disk(self, first: Pipe) -> None:
        """The -MISCONF state changed (an AOF write failed, a CONFIG SET
        changed stop-writes-on-bgsave-error): tell every pipe, ``first``
        first, before any reply that follows the change leaves on any of
        them, not at the next tick.  So an acceptor whose client was just
        refused (or let through) has not left another acceptor a tick to
        answer otherwise: the ``D`` frame is in that acceptor's pipe before
        the reply reaches the client.  A failure to send on ``first``
        is its sender's; on another pipe it is noted, as :meth:`_timers`
        does."""
        first.report_disk()
        for pipe in self.pipes:
            if pipe is not None and pipe is not first:
                try:
                    pipe.report_disk()
                except OSError:
                    pipe.broken = True

    def lose(self, pipe: Pipe) -> None:
        """Acceptor ``pipe.index`` has gone, and its clients with it."""
        if self.pipes[pipe.index] is not pipe:
            return
        self.pipes[pipe.index] = None
        fd = pipe.reader.sock.fileno()
        if self.by_fd.pop(fd, None) is not None:
            self.poller.unregister(fd)
        pipe.close()
        self._inherited()
        # An EXEC undone to run again whose run again will not park, or one
        # parked here whose acceptor went (Shard.park left with the error of
        # its recv, or of its send of a Ran or Prepared): nothing of it will
        # be decided, so its start must stop holding the sweeper (see
        # Keyspace.exec_frozen; another acceptor's EXECs in flight are only
        # spared less).  Every error that ends a park comes here (or ends
        # the worker, whose sweeper then never runs again).
        ks = self.shard.keyspace
        ks.exec_frozen.clear()
        ks.exec_carried.clear()
        refusals = self.shard.refusals
        if refusals is not None:
            refusals.due.pop(pipe.index, None)  # its K frame will never come
        self.shard.acceptor_lost(pipe.index)
        if self.current is pipe:
            alive = [p for p in self.pipes if p is not None and not p.broken]
            if alive:
                self.select(alive[0])
            else:
                self.current = None
                self.shard.send = _nowhere
                self.shard.recv = _gone
                self.shard.send_query = None
        # What its clients claimed goes to the others' waiters: served by
        # the caller once every broken pipe is lost (not here, where another
        # dying pipe may still be the current one, and a wake sent on it lost).

    def _serve_left(self) -> None:
        """Serve the keys made ready between frames (see
        :meth:`Shard.serve_left`), unless an acceptor has the shard to
        itself (held, or an operation in doubt): then the end of its next
        batch, or the next tick once it is free, serves them.  A pipe that
        fails meanwhile is lost after the current frame."""
        waiters = self.shard.waiters
        if not (waiters.ready or waiters.wakes) or self.current is None or self.exclusive() is not None:
            return
        try:
            self.shard.serve_left()
        except (EOFError, OSError):  # the current pipe's acceptor has gone
            self.current.broken = True

    def _inherited(self) -> None:
        persistence = self.shard.persistence
        if persistence is not None:
            fds = [self.ctl.fileno()]
            for p in self.pipes:
                if p is not None:
                    fds += p.fds()
            persistence.inherited_fds = fds

    def send_to(self, index: int, payload: bytes) -> None:
        """Send a frame on pipe ``index`` (not the current one): a wake, a
        share of events.  A pipe that fails is lost after the current frame."""
        pipe = self.pipes[index] if index < len(self.pipes) else None
        if pipe is None or pipe.broken:
            return
        try:
            pipe.send(payload)
        except OSError:
            pipe.broken = True

    def send_state(self, payload: bytes) -> list[int]:
        """A frame about the whole shard (a script's busy state): to every
        pipe.  The pipes it went to."""
        sent = []
        for pipe in self.pipes:
            if pipe is None or pipe.broken:
                continue
            try:
                pipe.send_state(payload)
            except OSError:
                if pipe is self.current:
                    raise
                pipe.broken = True
                continue
            sent.append(pipe.index)
        return sent

    def recv_waiting(self) -> bytes:
        """``shard.recv`` with several pipes: the current pipe's next frame,
        for a shard that waits where it is (parked, in doubt, or a script
        waiting for its ``A`` frame), its ``I`` frames answered at once as
        :meth:`Pipe.recv_waiting` does, and its ``T`` frames refused at once:
        never kept in the backlog, where the try could wait for another
        acceptor's hold while its own acceptor holds what that one waits for.  Meanwhile the other pipes are read
        too (:meth:`Pipe.take_others`): their ``I`` frames are answered on
        their own pipe, their other frames wait in their backlogs.  An
        inquiry needs no hold, so answering it wherever the shard waits
        breaks the cycles several coordinators could close otherwise: a
        script of acceptor A on shard 0 whose INFO asks shard 1, which
        acceptor B holds for an operation that waits for shard 0.

        It waits in one ``select`` on every pipe and reads only those that
        it says are readable: a parked shard waits two or three times per
        operation (its ``Run`` or ``Prepare``, its ``Decide``), and a
        ``recv`` on each pipe that finds nothing, before every ``select``,
        cost K system calls more each time.  Frames the pipes had read
        already (no system call) are taken first, as the kernel does not
        show them."""
        current = self.current
        assert current is not None
        reader = current.reader
        by_fd = self.by_fd
        taken = False
        while True:
            while reader.has_frame():
                payload = reader.pop()
                kind = payload[0]
                if kind == wire.INQUIRY:
                    current.answer(payload)
                elif kind == wire.TRY_HOLD:
                    # Not free, even for its own acceptor: a try kept for later
                    # would wait, maybe behind another acceptor's hold.
                    current.send_state(wire.TRY_REFUSED)
                else:
                    return payload
            if not taken:  # what the other pipes read ahead: the kernel does not show it
                taken = True
                for pipe in self.pipes:
                    if pipe is not None and pipe is not current and not pipe.broken:
                        pipe.take_others(reads=0)
            fds = [fd for fd, p in by_fd.items() if p is current or not p.broken]
            ready, _, _ = select.select(fds, [], [])
            for fd in ready:
                pipe = by_fd[fd]
                if pipe is current:
                    reader.fill()  # EOFError/OSError: the acceptor is gone
                else:
                    pipe.take_others(reads=1)

    def recv_verdict(self, index: int, token: int, bound: float) -> bool | None:
        """Wait on pipe ``index`` for the verdict (``V``) on the
        ``BWAIT_SERVED`` of ``token``, for a shard that popped for a client
        across shards and waits where it is (see :meth:`Waiters.pop_for
        <shardkv.worker.blocking.Waiters.pop_for>`): ``I`` frames are
        answered and ``T`` frames refused at once, every other frame (of
        every pipe) kept in its pipe's backlog, in order, as a parked
        shard's.  True taken, False not; None after ``bound`` seconds or
        when the pipe is lost (it gives back)."""
        target = self.pipes[index] if index < len(self.pipes) else None
        if target is None or target.broken:
            return None
        reader = target.reader
        deadline = time.monotonic() + bound
        taken = False
        try:
            while True:
                while reader.has_frame():
                    payload = reader.pop()
                    kind = payload[0]
                    if kind == wire.VERDICT:
                        got, take = wire.decode_verdict(payload)
                        if got == token:
                            return take
                        target.backlog.append(payload)  # a late one: answered in its turn
                    elif kind == wire.INQUIRY:
                        target.answer(payload)
                    elif kind == wire.TRY_HOLD:
                        target.send_state(wire.TRY_REFUSED)
                    else:
                        target.backlog.append(payload)
                if not taken:  # what the other pipes read ahead: the kernel does not show it
                    taken = True
                    for pipe in self.pipes:
                        if pipe is not None and pipe is not target and not pipe.broken:
                            pipe.take_others(reads=0)
                left = deadline - time.monotonic()
                if left <= 0:
                    self.shard.unanswered.add(index)  # until its late verdict comes
                    return None
                fds = [fd for fd, p in self.by_fd.items() if p is target or not p.broken]
                ready, _, _ = select.select(fds, [], [], left)
                for fd in ready:
                    pipe = self.by_fd[fd]
                    if pipe is target:
                        reader.fill()
                    else:
                        pipe.take_others(reads=1)
        except (EOFError, OSError):
            target.broken = True
            return None

    def _take_others(self, busy: int) -> None:
        """Every pipe but pipe ``busy``: answer its ``I`` frames, keep the rest."""
        for pipe in self.pipes:
            if pipe is not None and pipe.index != busy and not pipe.broken:
                pipe.take_others()

    def exclusive(self) -> int | None:
        """The coordinator the shard reads only, if any: the one that holds
        it, or the one with an operation it prepared and has not resolved."""
        shard = self.shard
        holder = shard.keyspace.held_by
        if holder is not None:
            return holder
        if shard.prepared:
            return shard.coordinator_pipe(min(shard.prepared))
        return None

    def _try_hold(self, pipe: Pipe) -> bool:
        """A ``T`` frame of ``pipe``, read where the shard runs that pipe's
        frames: hold the shard for it if the shard is free, that is held by
        nobody and no other pipe has frames waiting for it: frames that
        came while the shard was exclusive (a ``__hold`` among them maybe:
        a try that overtook them could keep an acceptor that waits in
        ascending order from its shard for ever), and those read ahead or
        still in the kernel (:meth:`_look`).  A frame that reached the
        kernel before the ``T`` frame was read may have been sent before
        what made the trying acceptor try: ``LRANGE B 0 -1``, then a push
        to A that notifies another acceptor's ``BLMOVE A B``, pipelined;
        the move's try, granted, ran on B before the LRANGE, which Redis
        runs first (the worker, not scheduled meanwhile, found both
        frames at once, and it was the try's pipe's turn: issue 22,
        ``blmove-two-shards-pipelined-evalshas-source-later``).  Refused,
        the acceptor falls back on ``__hold``, which waits its turn, and
        the other pipe's frames have theirs first."""
        keyspace = self.shard.keyspace
        if keyspace.held_by is not None:
            return False
        for other in self.pipes:
            if other is not None and other is not pipe and (other.backlog or other.reader.has_frame()):
                return False
        if self._look(pipe):
            return False
        if not keyspace.flagged:  # (see shardkv.runtime.scriptflags)
            keyspace.raise_flag()
        keyspace.held_by = pipe.index
        return True

    # -- running ----------------------------------------------------------------

    def run(self) -> None:
        for i, conn in enumerate(self.conns):
            self.attach(i, conn)
        self.conns = []
        if len(self.pipes) == 1:
            self._run_one()
        else:
            self._run_many()
        for pipe in self.pipes:
            if pipe is not None:
                pipe.close()

    def _run_one(self) -> None:
        """One acceptor: serve its pipe; when it goes, wait for the next."""
        while not _Stop.requested:
            pipe = self.pipes[0]
            if pipe is not None:
                try:
                    self._serve_one(pipe)
                except (EOFError, OSError):
                    pass  # the acceptor has gone
                if _Stop.requested:
                    break
                self.lose(pipe)
            conn = _next_pipe(self.ctl)
            if conn is None:
                break
            self.attach(*conn)

    def _serve_one(self, pipe: Pipe) -> None:
        """Run batches from the only pipe until it closes or a stop is requested."""
        shard = self.shard
        reader = pipe.reader
        poll = reader.poll
        backlog = pipe.backlog
        waiters = shard.waiters
        runtime = shard.keyspace.runtime
        handle = self._handle
        while not _Stop.requested:
            if backlog:
                payload = backlog.pop(0)
            else:
                if waiters.timeouts:
                    # A blocked command's timeout is due on time: wait exactly.
                    wait = min(self.next_sweep, waiters.next_deadline()) - time.monotonic()
                    ready = wait > 0 and poll(wait)
                else:
                    # The periodic work may be up to a period late when idle:
                    # one system call per batch instead of three.
                    reader.set_period(1.0 / runtime.hz)
                    ready = time.monotonic() < self.next_sweep and reader.wait()
                if not ready:
                    self._timers()
                    continue
                payload = reader.pop()  # wait() or poll() said a frame is read
            handle(pipe, payload)
            if waiters.timeouts or time.monotonic() >= self.next_sweep:
                self._timers()

    def _handle(self, pipe: Pipe, payload: bytes) -> None:
        """Run one frame of ``pipe`` (the current pipe)."""
        shard = self.shard
        kind = payload[0]
        held = pipe.held
        if kind == wire.BATCH:
            reply = shard.run_batch(payload)
            noted = shard.take_events(bounded=True) if shard.keyspace.events else None
            # Another batch already read costs no system call to see;
            # for a shared fsync it is worth one to look for more.
            more = pipe.backlog or pipe.reader.has_frame() or (_grouping(shard) and pipe.reader.poll(0))
            if shard.waiters.behind_served:
                # It served another acceptor's client with commands behind
                # its blocking one: the replies wait until they ran there.
                noted, marks = shard.gate_on_behind(noted, reply)
                if marks:
                    if noted is not None:
                        pipe.send(noted, [])
                    pipe.send(reply, shard.logged)
                    shard.send_wakes()
                    shard.send_marks(marks)
                    return
            if more and len(held) < GROUP_COMMIT_MAX:
                if noted is not None:
                    held.append(noted)
                    pipe.held_logged.append([])
                held.append(reply)
                pipe.held_logged.append(shard.logged)
            elif shard.waiters.wakes and len(held) < GROUP_COMMIT_MAX:
                # A blocked client this batch served: its wake leaves in the
                # same write as the pusher's reply (send_wakes sends what is
                # held first), so its acceptor reads both at once and runs the
                # served client's pipelined commands before the pusher's next
                # one, as Redis's processUnblockedClients does before it
                # writes any reply (``test_unblocked_pipeline_acceptors.py``).
                if noted is not None:
                    held.append(noted)
                    pipe.held_logged.append([])
                held.append(reply)
                pipe.held_logged.append(shard.logged)
                shard.send_wakes()
                pipe.flush()  # (the wakes went to other pipes alone)
                return
            else:
                if noted is not None:
                    pipe.send(noted, [])
                pipe.send(reply, shard.logged)
            shard.send_wakes()
        elif kind == wire.CANCEL:
            shard.waiters.cancel(int(payload[1:]), pipe.index)
        elif kind == wire.BEHIND:
            shard.waiters.mark_behind(int(payload[1:]), pipe.index)
        elif kind == wire.VERDICT:
            # A verdict that came after its shard stopped waiting (see
            # recv_verdict): the element went back; a taking one is told so.
            token, take = wire.decode_verdict(payload)
            shard.unanswered.discard(pipe.index)  # its acceptor answers again
            if take:
                pipe.send(wire.encode_wake(token, b":0\r\n"))
        elif kind == wire.INQUIRY:
            pipe.send(shard.inquiry_answer(payload))
        elif kind == wire.TRY_HOLD:
            pipe.send_state(wire.TRY_GRANTED if self._try_hold(pipe) else wire.TRY_REFUSED)
        elif kind == wire.REFUSALS:
            # A K frame no busy script waits for (it came after the script's
            # end had stopped waiting for it, or its pipe was taken for lost
            # meanwhile): its entries ran, and its acceptor has forgotten
            # them (see shardkv.worker.busyrefusal): nothing to tell.  But
            # an offer of a tail epoch, whose acceptor waits for the answer:
            # its entries ran, none refused.
            epoch = wire.decode_refusals_epoch(payload)
            if epoch in wire.TAIL_EPOCHS:
                pipe.send_state(wire.encode_refusals(epoch, []))
        elif kind == wire.CONTROL:  # not parked: nothing is waiting for it
            try:
                shard.refuse(wire.decode_control(payload))
            except wire.BadMessage as e:
                log.error("shard %d: %s", shard.index, e)
        if held and not pipe.backlog and not pipe.reader.poll(0):
            pipe.flush()

    def _run_many(self) -> None:
        """Several acceptors: take a frame from each pipe in turn (only from
        the exclusive one's while there is one), and meanwhile watch the
        control pipe for restarted acceptors' new pipes."""
        pipes = self.pipes
        waiters = self.shard.waiters
        keyspace = self.shard.keyspace
        while not _Stop.requested:
            try:
                found = self._next_frame()
                if found is not None:
                    pipe, payload = found
                    current = self.current
                    if pipe is not current:
                        if current is not None and current.held:
                            self._flush(current)
                        self.select(pipe)
                    self._handle(pipe, payload)
                    if waiters.timeouts or time.monotonic() >= self.next_sweep:
                        self._timers()
                elif not self._wait():
                    break  # the supervisor has gone
            except (EOFError, OSError):  # the current pipe's acceptor has gone
                if self.current is not None:
                    self.current.broken = True
            for p in pipes:
                if p is not None and p.broken:
                    self.lose(p)
            if keyspace.flagged:
                self.lower_flag()
            if waiters.ready or waiters.wakes:
                # A lost acceptor's claims (Waiters.clear): the keys they
                # made ready, and the __bsettles they ended (wakes alone).
                self._serve_left()

    def lower_flag(self) -> None:
        """Between frames: clear this shard's script flag once it runs no
        script and is neither held nor prepared for an operation (a park
        ends inside its frame), so the acceptors' (un)subscribes skip their
        round trip (see :mod:`shardkv.runtime.scriptflags`)."""
        shard = self.shard
        ks = shard.keyspace
        flags = ks.script_flags
        if flags is not None and ks.held_by is None and not shard.prepared:
            flags[ks.flag_index] = 0
            ks.flagged = False

    def _next_frame(self) -> tuple[Pipe, bytes] | None:
        """A frame already read, from the pipe whose turn it is, with no
        system call: the pipes' read-ahead (what :meth:`_wait` read when
        they were ready) and backlogs take turns, frame by frame.  So that
        a pipe whose frames are read ahead cannot starve the others, the
        kernel is asked (one ``poll`` that does not wait) before a pipe has
        a second turn in a row, unless it was asked since the first (by
        :meth:`_wait`, whose poll found that pipe ready after its frame ran),
        and another pipe's frame found there goes first."""
        pipes = self.pipes
        n = self.npipes
        shard = self.shard
        only = None
        if shard.keyspace.held_by is not None or shard.prepared:
            only = self.exclusive()
        order: tuple[int, ...]
        if only is not None:
            # The others' batches wait, but not their inquiries: the
            # holder may keep the shard for as long as another shard's
            # script waits for one (see recv_waiting).
            self._take_others(only)
            order = (only,)
        else:
            if self.kept:
                self._first_kept()
            order = self.orders[self.turn]
        looked = only is not None or self.asked
        k = 0
        m = len(order)
        while k < m:
            i = order[k]
            k += 1
            pipe = pipes[i]
            if pipe is None or pipe.broken or not (pipe.backlog or pipe.reader.has_frame()):
                continue
            if k == n and not looked:
                looked = True
                if self._look(pipe):
                    k = 0  # another pipe's frame came: its turn first
                    continue
            self.turn = (i + 1) % n
            self.asked = False
            return pipe, (pipe.backlog.pop(0) if pipe.backlog else pipe.reader.pop())
        return None

    def _first_kept(self) -> None:
        """The shard is free again: the first turn is the pipe whose kept
        frames came first, not the one after the last pipe served (the
        holder's, say).  With three acceptors, the frames of two others
        kept while the third held the shard may have come far apart: an
        ``LRANGE B 0 -1``, then, after the push to A that it was pipelined
        with had woken another acceptor's ``BLMOVE A B``, that acceptor's
        ``__hold`` (its try refused while B was held); Redis runs the
        LRANGE first (issue 22).  Those found in one look came in no known
        order: the order the pipes were read in decides."""
        pipes = self.pipes
        for i in self.kept:
            pipe = pipes[i]
            if pipe is not None and pipe.backlog:
                self.turn = i
                break
        self.kept.clear()

    def _look(self, busy: Pipe) -> bool:
        """Read what the pipes but ``busy`` have in the kernel, without
        waiting; True if a frame of one of them came."""
        came = False
        for fd, _ in self.poller.poll(0):
            pipe = self.by_fd.get(fd)
            if pipe is None or pipe is busy or pipe.broken:
                continue  # the control pipe waits for the next _wait
            try:
                pipe.reader.fill()
            except (EOFError, OSError):
                pipe.broken = True
                continue
            came = came or pipe.reader.has_frame()
        return came

    def _wait(self) -> bool:
        """No frame is read: send what is held, wait (one ``poll``) for a
        pipe or the control pipe, or for the timers, and read what the
        ready pipes have (a pipe the shard may not read now is read for its
        ``I`` frames, by :meth:`_next_frame`).  False if the supervisor has
        gone."""
        waiters = self.shard.waiters
        for pipe in self.pipes:
            if pipe is not None and pipe.held:
                self._flush(pipe)
        deadline = min(self.next_sweep, waiters.next_deadline()) if waiters.timeouts else self.next_sweep
        wait = deadline - time.monotonic()
        ready = self.poller.poll(wait * 1000 if wait > 0 else 0)
        self.asked = True
        if not ready:
            self._timers()
            return True
        for fd, _ in ready:
            pipe = self.by_fd.get(fd)
            if pipe is None:
                if fd == self.ctl.fileno() and not self._from_ctl():
                    return False
                continue
            try:
                pipe.reader.fill()
            except (EOFError, OSError):
                pipe.broken = True
        return True

    def _flush(self, pipe: Pipe) -> None:
        try:
            pipe.flush()
        except OSError:
            pipe.broken = True

    def _from_ctl(self) -> bool:
        """A message on the control pipe: a new pipe for an acceptor.
        False if the supervisor has gone."""
        got = _recv_pipe(self.ctl, 0)
        if got is None:
            return False
        if got is not _NOTHING:
            self.attach(*got)  # type: ignore[misc]
        return True

    def _timers(self) -> None:
        """Time out the blocked commands due, and do the periodic work if due."""
        shard = self.shard
        now = time.monotonic()
        waiters = shard.waiters
        if waiters.timeouts and waiters.next_deadline() <= now:
            waiters.expire(now)
            shard.send_wakes()
        if waiters.ready:
            self._serve_left()
        if now >= self.next_sweep:
            self.next_sweep = _tick(shard)
            if waiters.ready:  # a stream the sweeper expired fails its blocked XREADGROUPs
                self._serve_left()
        for pipe in self.pipes:
            if pipe is not None:
                try:
                    pipe.report_disk()
                except OSError:
                    if pipe is self.current and len(self.pipes) == 1:
                        raise
                    pipe.broken = True


def _grouping(shard: Shard) -> bool:
    persistence = shard.persistence
    writer = persistence.aof if persistence is not None else None
    return writer is not None and writer.policy == "always"


def _nowhere(payload: bytes, logged: list | None = None) -> None:
    """Where the shard's frames go while no acceptor is attached."""


def _gone() -> bytes:
    raise EOFError


GROUP_COMMIT_MAX = 64  # batches whose replies may share one write and fsync
_BIG_FRAME = 1 << 20  # frames sent without being copied behind their length


def _refuse_logged(payload: bytes, logged: list | None, persistence: Persistence | None) -> bytes:
    """An ``R`` payload whose replies in ``logged`` ((index, part) pairs)
    become the -MISCONF error: their writes did not reach the AOF, so they
    must not be acknowledged."""
    if not logged or payload[0] != wire.REPLIES or persistence is None:
        return payload
    error = Error(persistence.misconf or errors.MISCONF_AOF % "unknown error")
    bodies = wire.decode_replies(payload)
    for index, part in logged:
        bodies[index] = wire.encode_part(error) if part else encode(error)
    return wire.encode_replies(bodies)


def _tick(shard: Shard) -> float:
    """The periodic work: active expiry, background saves and rewrites."""
    period = 1.0 / shard.keyspace.runtime.hz
    shard.sweeper.cycle(period / 4)
    if shard.keyspace.events:
        shard.send_events()  # what the sweeper expired
    if shard.persistence is not None:
        shard.persistence.cron()
    return time.monotonic() + period


_NOTHING = object()  # a control message that was not a pipe


def _recv_pipe(ctl: Connection, timeout: float | None) -> tuple[int, Connection] | object | None:
    """Read one message of the supervisor's: ``(acceptor index, pipe)``,
    ``_NOTHING`` if none came within ``timeout`` (or it carried no fd), or
    None if the supervisor has gone."""
    sock = socket.socket(fileno=os.dup(ctl.fileno()))
    sock.settimeout(timeout)
    try:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 64, 1)
        except (TimeoutError, BlockingIOError):
            return _NOTHING
        except OSError:
            return None
        if not message:
            return None  # the supervisor has gone
        if not fds:
            if message.startswith(STOP_FLAGS):
                _Stop.flags = message[len(STOP_FLAGS) :].decode("ascii", "replace")
            return _NOTHING
        try:
            index = int(message)
        except ValueError:
            log.error("shard: bad message from the supervisor: %r", message[:64])
            os.close(fds[0])
            return _NOTHING
        log.info("shard: attached to a new pipe of acceptor %d", index)
        return index, Connection(fds[0])
    finally:
        sock.close()


def _next_pipe(ctl: Connection) -> tuple[int, Connection] | None:
    """Wait for the supervisor to send the pipe to a new acceptor."""
    while not _Stop.requested:
        got = _recv_pipe(ctl, 0.2)
        if got is None:
            return None
        if got is not _NOTHING:
            return got  # type: ignore[return-value]
    return None


def _read_ctl(ctl: Connection) -> None:
    """Read what the supervisor sent and the loop has not read: its
    ``STOP_FLAGS`` (a new acceptor's pipe is of no use now)."""
    while ctl.poll(0):
        got = _recv_pipe(ctl, 0)
        if got is None:
            return
        if got is not _NOTHING:
            got[1].close()  # type: ignore[index]


class _Stop:
    requested = False
    flags = ""  # the supervisor's STOP_FLAGS, once read
    loading = False  # reading the shard's files at start: a stop ends it there


class _StoppedLoading(Exception):
    """A SIGTERM while the worker reads its files at start (see serve)."""


def _request_stop(*_: object) -> None:
    _Stop.requested = True
    if _Stop.loading:
        _Stop.loading = False
        raise _StoppedLoading
