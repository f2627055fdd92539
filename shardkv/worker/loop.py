"""A worker process: its entry point, and the loop that reads frames from
the acceptor's pipe, has the :class:`~shardkv.worker.shard.Shard` run them,
and sends the replies.

The loop is single-threaded and FIFO: batches run in the order they
arrive, and each batch runs start to finish before the next is read.
That, with the acceptor's single global order, is what makes commands
that span shards serializable.  Between batches, and at least ``hz``
times a second when idle, the loop runs the active expiry cycle and the
persistence cron; it also wakes up for the earliest blocked command's
timeout.  The replies of batches already queued behind each other leave
in one write (and, with ``appendfsync always``, after one fsync).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import Connection

from shardkv.protocol import errors, wire
from shardkv.protocol.resp import Error, encode
from shardkv.protocol.wire import FRAME
from shardkv.runtime import gctuning
from shardkv.runtime.parentdeath import die_with_parent
from shardkv.runtime.proctitle import set_name
from shardkv.worker.frames import FrameReader
from shardkv.worker.persistence.engine import EXIT_LOAD_FAILED, Persistence
from shardkv.worker.persistence.files import LoadError
from shardkv.worker.shard import Prepared, Shard

log = logging.getLogger("shardkv.worker")


def serve(conn: Connection | list[Connection], ctl: Connection, index: int, cfg: dict) -> None:
    """The entry point of a worker process.

    ``conn`` is the pipe to the acceptor; ``ctl`` the pipe to the
    supervisor, which hears ``loaded`` once the shard's data is in memory,
    and sends a new acceptor pipe when the acceptor was restarted.
    SIGTERM stops the worker between batches: it flushes its AOF, saves
    when ``save`` rules exist, and exits 0.
    """
    if isinstance(conn, list):  # one pipe per acceptor (issue 22); this worker serves one
        if len(conn) != 1:
            print(f"shard {index}: this worker serves one acceptor only", file=sys.stderr)
            sys.exit(EXIT_LOAD_FAILED)
        conn = conn[0]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    signal.signal(signal.SIGTERM, _request_stop)
    set_name(f"shardkv-shard{index}")
    die_with_parent()  # SIGTERM (flush and exit) if the supervisor dies
    logging.basicConfig(level=_LEVELS.get(cfg["loglevel"], logging.INFO), format="%(message)s")
    shard = Shard(index, cfg["shards"], config=cfg)
    signal.signal(signal.SIGUSR1, lambda *_: shard.scripts.request_kill())  # SCRIPT KILL
    signal.signal(signal.SIGUSR2, lambda *_: shard.scripts.request_exit())  # SHUTDOWN NOSAVE, busy
    shard.keyspace.runtime.hz = cfg["hz"]  # CONFIG SET hz reaches it through __config
    persistence = shard.persistence
    assert persistence is not None
    try:
        persistence.start()
    except (LoadError, OSError) as e:
        log.error("shard %d: cannot load its data: %s", index, e)
        sys.exit(EXIT_LOAD_FAILED)
    for op, (db, states) in persistence.in_doubt.items():
        shard.prepared[op] = Prepared(states, None, db)
    persistence.in_doubt = {}
    gctuning.settle()  # after loading: the loaded keys are never traversed
    ctl.send_bytes(b"loaded")
    while not _Stop.requested:
        persistence.inherited_fds = [conn.fileno(), ctl.fileno()]
        _serve_pipe(shard, conn)
        conn.close()
        if _Stop.requested:
            break
        shard.acceptor_lost()
        conn = _next_pipe(ctl)  # type: ignore[assignment]
        if conn is None:
            break
    try:
        persistence.close()
    except Exception as e:
        log.error("shard %d: could not save before exiting: %s", index, e)
        sys.exit(1)


def _serve_pipe(shard: Shard, conn: Connection) -> None:
    """Run batches from one acceptor pipe until it closes or a stop is requested."""
    runtime = shard.keyspace.runtime
    persistence = shard.persistence
    commit = persistence.commit if persistence is not None else None
    reader = FrameReader(conn)
    recv, poll = reader.recv, reader.poll
    sendall = reader.sock.sendall  # the pipe's socket; Connection's framing
    # The replies of a batch wait while more batches are already queued, so
    # that one write carries them all (and, with appendfsync always, one
    # fsync covers them).  Anything sent (a later reply, a wake, a control
    # frame) sends them first, in order.
    held: list[bytes] = []
    held_logged: list[list] = []  # for each held frame, its replies that logged
    reported: list[str | None] = [None]  # the -MISCONF text the acceptor knows of

    def report_disk() -> None:
        # The acceptor refuses PING and writes in MULTI while a shard cannot
        # persist (a ``D`` frame), as Redis does: tell it when that changes,
        # before any reply refused because of it.
        if persistence is not None and persistence.misconf != reported[0]:
            reported[0] = persistence.misconf
            frame = wire.encode_disk(reported[0])
            sendall(FRAME.pack(len(frame)) + frame)

    def send(payload: bytes, logged: list | None = None) -> None:
        # What a batch logged reaches the AOF (and with `always` the disk)
        # before any reply of it leaves; if it cannot, the replies of the
        # commands that logged are refused with -MISCONF instead.  A
        # cross-shard operation's control frame cannot be taken back: with
        # `always` the worker exits rather than send it (as Redis would).
        if commit is not None and not commit():
            if payload[0] == wire.CONTROL and persistence.aof.policy == "always":  # type: ignore[union-attr]
                log.critical("shard %d: cannot write the AOF with appendfsync always; exiting", shard.index)
                os._exit(1)
            if logged is None and payload[0] == wire.REPLIES:
                logged = shard.logged  # the part of a batch sent before it parks
            if held:
                held[:] = [
                    _refuse_logged(f, lg, persistence) for f, lg in zip(held, held_logged, strict=True)
                ]
            payload = _refuse_logged(payload, logged, persistence)
        if persistence is not None and persistence.misconf != reported[0]:
            report_disk()
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

    def grouping() -> bool:
        writer = persistence.aof if persistence is not None else None
        return writer is not None and writer.policy == "always"

    def send_state(payload: bytes) -> None:
        sendall(FRAME.pack(len(payload)) + payload)

    shard.send, shard.recv, shard.send_state = send, recv, send_state
    backlog = shard.backlog
    waiters = shard.waiters
    next_sweep = time.monotonic() + 1.0 / runtime.hz
    try:
        shard.report_in_doubt()
        report_disk()
        while not _Stop.requested:
            if backlog:
                payload = backlog.pop(0)
            else:
                if waiters.timeouts:
                    # A blocked command's timeout is due on time: wait exactly.
                    wait = min(next_sweep, waiters.next_deadline()) - time.monotonic()
                    ready = wait > 0 and poll(wait)
                else:
                    # The periodic work may be up to a period late when idle:
                    # one system call per batch instead of three.
                    reader.set_period(1.0 / runtime.hz)
                    ready = time.monotonic() < next_sweep and reader.wait()
                if not ready:
                    next_sweep = _timers(shard, next_sweep)
                    report_disk()
                    continue
                payload = recv()
            kind = payload[0]
            if kind == wire.BATCH:
                reply = shard.run_batch(payload)
                noted = shard.take_events(bounded=True) if shard.keyspace.events else None
                # Another batch already read costs no system call to see;
                # for a shared fsync it is worth one to look for more.
                more = backlog or reader.has_frame() or (grouping() and poll(0))
                if more and len(held) < GROUP_COMMIT_MAX:
                    if noted is not None:
                        held.append(noted)
                        held_logged.append([])
                    held.append(reply)
                    held_logged.append(shard.logged)
                else:
                    if noted is not None:
                        send(noted, [])
                    send(reply, shard.logged)
                shard.send_wakes()
            elif kind == wire.CANCEL:
                waiters.cancel(int(payload[1:]))
            elif kind == wire.CONTROL:  # not parked: nothing is waiting for it
                try:
                    shard.refuse(wire.decode_control(payload))
                except wire.BadMessage as e:
                    log.error("shard %d: %s", shard.index, e)
            if held and not backlog and not poll(0):
                send(held.pop(), held_logged.pop())
            if waiters.timeouts or time.monotonic() >= next_sweep:
                next_sweep = _timers(shard, next_sweep)
                report_disk()
    except (EOFError, OSError):
        return  # the acceptor has gone
    finally:
        reader.close()


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


def _timers(shard: Shard, next_sweep: float) -> float:
    """Time out the blocked commands due, and do the periodic work if due;
    returns when the periodic work is due next."""
    now = time.monotonic()
    waiters = shard.waiters
    if waiters.timeouts and waiters.next_deadline() <= now:
        waiters.expire(now)
        shard.send_wakes()
    if now >= next_sweep:
        return _tick(shard)
    return next_sweep


def _tick(shard: Shard) -> float:
    """The periodic work: active expiry, background saves and rewrites."""
    period = 1.0 / shard.keyspace.runtime.hz
    shard.sweeper.cycle(period / 4)
    if shard.keyspace.events:
        shard.send_events()  # what the sweeper expired
    if shard.persistence is not None:
        shard.persistence.cron()
    return time.monotonic() + period


def _next_pipe(ctl: Connection) -> Connection | None:
    """Wait for the supervisor to send the pipe to a new acceptor."""
    sock = socket.socket(fileno=os.dup(ctl.fileno()))
    sock.settimeout(0.2)
    try:
        while not _Stop.requested:
            try:
                message, fds, _, _ = socket.recv_fds(sock, 64, 1)
            except TimeoutError:
                continue
            if not message:
                return None  # the supervisor has gone
            if fds:
                log.info("shard %s: attached to a new acceptor", message.decode())
                return Connection(fds[0])
        return None
    finally:
        sock.close()


class _Stop:
    requested = False


def _request_stop(*_: object) -> None:
    _Stop.requested = True


_LEVELS = {
    "debug": logging.DEBUG,
    "verbose": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
}
