"""The acceptor's side of persistence: LASTSAVE, SHUTDOWN, INFO persistence.

Each shard persists itself (see :mod:`shardkv.worker.persistence.engine`); SAVE,
BGSAVE and BGREWRITEAOF simply run on every shard (route ``all``).  What
needs the acceptor is what spans the shards:

* LASTSAVE is the oldest of the shards' last saves: the last time *every*
  shard had saved.  A shard whose restarted worker reloads is not asked
  (Redis answers at once while it loads): its last save is its restart,
  timed by the supervisor, which the worker keeps as its own.
* SHUTDOWN while the shards load at start stops the server at once,
  saving nothing, as Redis's (which turns it into NOSAVE then).
* SHUTDOWN sends ``__shutdown`` to every shard.  Each flushes its AOF,
  saves (SAVE, or when ``save`` rules exist, unless NOSAVE), and from then
  on refuses every command, so nothing can be acknowledged after its last
  save.  An AOF that cannot be written or synced (a full disk) does not
  fail it: as in Redis, the shard only warns, nothing acknowledged being
  unwritten.  When all shards are done, the client's connection closes (Redis
  sends no reply) and the supervisor is told to stop.  If a shard cannot
  save, the others are opened again and the client gets Redis's error
  (unless FORCE).  A shard whose worker is gone (dead, being restarted)
  cannot save: that fails a SHUTDOWN that saves, as a failed save does in
  Redis, but not one that does not (NOSAVE, or no ``save`` rules), which
  always stops the server.  A shard whose restarted worker is loading is
  not asked (Redis stops at once while it loads): its files hold its data
  (see :func:`_not_reloading`).
* SIGTERM and SIGINT stop the same way, as their ``shutdown-on-sig*``
  flags say: the supervisor hands the stop to one acceptor (a ``stop``
  line, :mod:`shardkv.protocol.bus`), which, once no script is busy, sends
  every shard ``__shutdown`` as SHUTDOWN would.  If a shard cannot save
  (without ``force``), the shards are opened again and the server keeps
  serving, as Redis does
  ("Error trying to save the DB, can't exit."): the supervisor hears
  ``stop-failed`` and goes on; a later signal tries again.
* SHUTDOWN ABORT cancels a signal's stop that waits for a busy script,
  and the stops whose shards have not all answered (see abort_stops).
  Stops that fail or are aborted answer, and open the shards again, only
  once no other stop is undecided, and never after one has succeeded
  (see _settle_failed).
* INFO's persistence section merges the shards' figures.
* A CONFIG SET is reported to the supervisor, so that a worker or an
  acceptor it restarts starts with the settings in effect.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from shardkv.acceptor import configorder
from shardkv.acceptor.replies import Slot
from shardkv.acceptor.shardlink import at_next_busy_change, at_threshold
from shardkv.protocol import bus, errors, wire
from shardkv.protocol.resp import encode_command, encode_error
from shardkv.protocol.wire import Verb
from shardkv.runtime import config
from shardkv.runtime.exitcodes import SHUTDOWN_SIGNAL, stop_mode
from shardkv.runtime.parentdeath import living_parent

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor
    from shardkv.acceptor.shardlink import ShardLink

log = logging.getLogger("shardkv.acceptor")

_HEADER = wire.entry_header(0)
# SHUTDOWN NOSAVE while a script is busy, with several acceptors: how long
# it waits for the shards' answers before it stops without them (seconds).
_PARKED_WAIT = 1.0
# A signal's stop: how long it waits for the shards' ``__ping`` (read as
# Redis would read it, see stop_by_signal) before it goes on without them;
# a frozen worker never answers (seconds).
SIGNAL_PING_WAIT = 10.0
SHUTDOWN_FAILED = "ERR Errors trying to SHUTDOWN. Check logs."
NO_SHUTDOWN = "ERR No shutdown in progress."
OK_REPLY = b"+OK\r\n"
_NO_SHUTDOWN = encode_error(NO_SHUTDOWN)
_UNAVAILABLE = encode_error(errors.SHARD_UNAVAILABLE)  # a shard whose worker is gone


def lastsave(client: Client, args: list) -> None:
    """LASTSAVE"""
    if client.server.loading:
        # The shards still load at start: none has saved since, and Redis
        # answers the time it started (as INFO's rdb_last_save_time then).
        client.reply(client.server.lastsave)
        return
    reloading = client.server.reloading
    if not reloading:
        client.query_all([Verb.LASTSAVE], min)
        return
    # A shard whose worker restarted reloads its data: as Redis answers
    # LASTSAVE at once while it loads (``loading`` flag), with the time it
    # started (its lastsave until a save), the shards that serve are asked,
    # not that one, which counts as saved when its worker restarted: the
    # time the supervisor gave that worker as its last save and told the
    # acceptors in its ``reloading`` line, so its __lastsave says the same
    # once it has loaded (before, this acceptor's own time of hearing the
    # line, seconds off the worker's own start under load).
    started = [client.server.reload_started.get(s, client.server.lastsave) for s in reloading]
    serving = [s for s in range(len(client.server.links)) if s not in reloading]
    if not serving:  # (one shard, and it reloads)
        client.reply(min(started))
        return
    client.query_all([Verb.LASTSAVE], lambda parts: min(parts + started), serving)


class _Shutdown:
    """Gathers every shard's answer to ``__shutdown``: SHUTDOWN's, whose
    ``client`` gets the outcome, or a signal's (``client`` None), whose
    outcome goes to the supervisor."""

    def __init__(
        self, server: Acceptor, client: Client | None, nshards: int, slot: Slot | None = None
    ) -> None:
        self.server = server
        self.client = client
        self.slot = slot
        if client is not None and slot is None:
            self.slot = Slot(client)
            client.pending.append(self.slot)
        self.left = nshards
        self.failed = False
        self.force = False  # SHUTDOWN FORCE: stop even if a shard could not save
        self.forced = False  # a save failed, with FORCE: the shards close unsaved
        # Whether this SHUTDOWN saves (SAVE, or ``save`` rules without
        # NOSAVE, as Redis decides): only then is a shard whose worker is
        # gone a failure, its data being unsaved.  Without a save there is
        # nothing of it to keep (its files are as its worker left them).
        self.saves = True
        # SHUTDOWN NOSAVE while a script is busy: the pids of the workers
        # that run it, which end at once (nothing of the script is kept).
        self.busy_pids: list[int] = []
        # The shards asked (an abort or a FORCE goes to them alone): not
        # those busy, nor those reloading (see _not_reloading) until they
        # have loaded (see on_reloaded).
        self.asked: list = list(server.links)
        self.mode = b"default"  # what the shards are asked (``force`` once forced)
        self.aborted = False  # SHUTDOWN ABORT came before its shards had answered
        # Its outcome has been answered (see _settle_failed): the answers of
        # shards still frozen when it was aborted change nothing.
        self.answered = False
        # NOW (SHUTDOWN's, or a signal's shutdown-on-sig* flags), or a
        # shutdown-timeout of 0: as Redis's prepareForShutdown, which then
        # waits for nothing, SHUTDOWN ABORT cannot cancel it (see abort_stops).
        self.now = False

    def stop_now(self) -> None:
        """SHUTDOWN NOSAVE with a busy script and several acceptors: stop
        without the answers of shards still parked (see shutdown)."""
        if self.left > 0:
            self.left = 1
            self.deliver(b"+OK\r\n")

    def deliver(self, body: bytes) -> None:
        if self.answered or self in self.server.stops_failed:
            return  # (aborted, or failed and answered: its shards' late answers)
        if not body.startswith(b"+") and (self.saves or body != _UNAVAILABLE):
            self.failed = True
        self.left -= 1
        if self.left:
            return
        client = self.client
        server = self.server
        stopping = server.shutdown_requested is not None and server.shutdown_requested.done()
        if (self.aborted or (self.failed and not self.force)) and not stopping and not server.stop_decided:
            # (A shard lost while this acceptor is being stopped is the server
            # stopping, not a failed SHUTDOWN: with several acceptors another
            # one's SHUTDOWN, or redis-py's retry of it, got there first.)
            if self in server.stops_pending:
                server.stops_pending.remove(self)
            server.stops_failed.append(self)
            _settle_failed(server)
            return
        if self.failed and not stopping and not self.forced and not server.stop_decided:
            # FORCE: the shards that could not save (or were writing their
            # first AOF base) close without a save (they flush their AOF),
            # so that their workers do not try again on their way out and
            # make the exit status 1: Redis exits 0.
            log.warning("Error trying to save the DB. Exit anyway.")
            self.forced = True
            self.failed = False
            self.saves = False
            self.mode = b"force"
            self.left = len(self.asked)
            for link in self.asked:
                link.send(_HEADER, encode_command([Verb.SHUTDOWN, b"force"]), self, control=client is None)
            return
        if server.stop_decided:
            # Another stop has been decided (its shards are shut and the
            # supervisor told): this one's outcome changes nothing.
            if self.slot is not None:
                self.slot.deliver(encode_error(SHUTDOWN_FAILED) if self.failed else b"")
            return
        server.stop_decided = True
        _settle_failed(server)  # a stop that failed meanwhile answers, its shards left shut
        if client is not None:
            log.warning("acceptor: SHUTDOWN by client id=%d addr=%s; stopping", client.id, client.addr)
            self.slot.deliver(b"")  # type: ignore[union-attr]  # Redis closes the connection without a reply
            client.close_after_replies()
        supervisor = living_parent()
        if supervisor is not None:  # else it has died, and this acceptor stops with it
            os.kill(supervisor, SHUTDOWN_SIGNAL)
        for pid in self.busy_pids:  # after the supervisor's signal: it must not restart them
            try:
                os.kill(pid, signal.SIGUSR2)
            except OSError:
                pass


def _settle_failed(server: Acceptor, timed_out: bool = False) -> None:
    """The stops that failed (a save, without FORCE) or were aborted
    (SHUTDOWN ABORT) answer once no other stop is undecided: their shards
    are opened again only then, and only if no stop has been decided, so
    that a stop's abort never opens a shard another stop has shut (whose
    writes acknowledged then would be lost with the server's stop).  Each
    SHUTDOWN gets Redis's error once its shards are open again (as Redis's
    finishShutdown, or cancelShutdown for one aborted), a signal's stop
    tells the supervisor ``stop-failed``, and each SHUTDOWN ABORT waiting
    for them its ``+OK``.  An aborted stop is undecided no longer: it can
    only fail, so it waits for none of its shards' answers (a frozen
    worker's never comes; its ``__shutdown``, then the abort, run in order
    once it runs again).  Nor does anything wait for ever for another stop
    (a frozen worker's): past ``shutdown-timeout`` seconds (Redis's bound
    on its wait for its replicas) the answers go, the shards staying shut
    (no write they take is lost) until that stop is over."""
    if not server.stop_decided and any(gather.left > 0 for gather in server.stops_pending):
        if not timed_out:
            if server.stops_failed or server.aborts_waiting:
                _settle_later(server)
            return
        _answer_failed(server, server.stops_failed)
        return
    failed, server.stops_failed = server.stops_failed, []
    if server.settle_timer is not None:
        server.settle_timer.cancel()
        server.settle_timer = None
    if not server.stop_decided:
        opened: list = []
        for gather in failed:
            for link in gather.asked:
                if link not in opened:
                    opened.append(link)
        # The answers wait for the shards that had not answered the stop
        # (aborted) to run the abort, which is queued behind its
        # __shutdown, so that a client of another acceptor, served on its
        # own pipe, finds them open after them; no longer than
        # shutdown-timeout seconds (a frozen worker's never comes).
        late = {id(link) for gather in failed if gather.left > 0 for link in gather.asked}
        opening = _Opening(server, failed, sum(1 for link in opened if id(link) in late))
        # A stop that failed (not aborted) got as far as Redis's
        # finishShutdown, which stops a background save or rewrite before
        # its save: every shard's child is stopped then, not only that of
        # the shard whose save failed (an abort, before it, leaves them).
        abort = [Verb.SHUTDOWN, b"abort"] + ([b"failed"] if any(not g.aborted for g in failed) else [])
        for link in opened:
            # (Queued past a busy script, run once it ends, as a
            # signal's __shutdown: a -BUSY would leave the shard shut.)
            sink = opening if id(link) in late else _Ignore()
            link.send(_HEADER, encode_command(abort), sink, control=True)
        opening.start()
        return
    _answer_failed(server, failed)


class _Opening:
    """The aborts sent to shards that had not answered an aborted stop:
    its answers go once each has run, or past ``shutdown-timeout``."""

    def __init__(self, server: Acceptor, failed: list, left: int) -> None:
        self.server = server
        self.failed: list | None = failed
        self.left = left
        self.timer: object = None

    def start(self) -> None:
        if self.left <= 0:
            self.answer()
            return
        wait = float(self.server.config.get("shutdown-timeout") or 0)
        self.timer = self.server.loop.call_later(wait, self.answer)  # type: ignore[union-attr]

    def deliver(self, body: bytes) -> None:
        self.left -= 1
        if self.left == 0:
            self.answer()

    def answer(self) -> None:
        if self.failed is None:
            return
        if self.timer is not None:
            self.timer.cancel()  # type: ignore[attr-defined]
        failed, self.failed = self.failed, None
        _answer_failed(self.server, failed)


def _answer_failed(server: Acceptor, failed: list) -> None:
    """The outcome of the stops ``failed`` not answered yet, and the
    SHUTDOWN ABORTs waiting (see :func:`_settle_failed`)."""
    aborts, server.aborts_waiting = server.aborts_waiting, []
    answered = False
    for gather in failed:
        if gather.answered:
            continue
        gather.answered = answered = True
        if gather.slot is not None:
            gather.slot.deliver(encode_error(SHUTDOWN_FAILED))
        elif not server.stop_decided:
            if not gather.aborted:
                # Redis's lines (finishShutdown); the shard's own says why.
                log.warning("Error trying to save the DB, can't exit.")
                log.warning("Errors trying to shut down the server. Check the logs for more information.")
            _tell_supervisor(server, bus.STOP_FAILED_LINE + b"\n")
    for slot, body in aborts:
        slot.deliver(body)
    if answered or aborts:
        server.flush_clients_soon()


def _settle_later(server: Acceptor) -> None:
    """Bound the wait of the stops that failed for the others (see
    :func:`_settle_failed`): one timer at a time."""
    if server.settle_timer is not None:
        return

    def fire() -> None:
        server.settle_timer = None
        _settle_failed(server, timed_out=True)

    wait = float(server.config.get("shutdown-timeout") or 0)
    server.settle_timer = server.loop.call_later(wait, fire)  # type: ignore[union-attr]


def abort_stops(client: Client) -> None:
    """SHUTDOWN ABORT: as Redis's abortShutdown, cancel the stops under
    way, answering ``+OK``, or ``-ERR No shutdown in progress.`` if there
    is none (see :func:`_abort_here`).  Redis is one process: its ABORT
    cancels whatever stop is under way, whichever client began it.  So with
    several acceptors the others are asked too (``abort`` on the bus, each
    answering once its own aborted stops are over, see :func:`bus_abort`),
    and the reply is ``+OK`` if any acceptor had a stop to cancel: a
    SHUTDOWN sent through one acceptor, or the signal's stop handed to the
    first, is aborted through any (before, only through its own)."""
    server = client.server
    slot = Slot(client)
    client.pending.append(slot)
    reply = _AbortReply(slot, 1 if server.bus is None else 2)
    _abort_here(server, reply)
    if server.bus is not None:
        # The others answer once their shards are open again, which may
        # take up to shutdown-timeout seconds (the supervisor waits that
        # long for this question, see shardkv.supervisor).
        wait = int(server.config.get("shutdown-timeout") or 0)
        server.bus.ask(
            bus.ABORT, [wait], lambda answers: reply.deliver(OK_REPLY if any(answers) else _NO_SHUTDOWN)
        )
    reply.in_call = False


def bus_abort(server: Acceptor, origin: int, args: list) -> None:
    """Another acceptor's SHUTDOWN ABORT: cancel this acceptor's stops under
    way, answering 1 once they are over and their shards open again (so
    that the asker's ``+OK`` comes after them, as its own aborts' does), 0
    if there was none."""
    answer = server.bus.later()  # type: ignore[union-attr]
    _abort_here(server, _BusAbort(answer))


class _AbortReply:
    """SHUTDOWN ABORT's reply: ``+OK`` once ``parts`` answers came (this
    acceptor's, and the others' at K > 1) if any of them is ``+OK``, else
    the error, counted once in errorstats and as a failed call of
    ``shutdown``, as Redis counts it: by the call itself while it runs
    (``in_call``, see Acceptor.run_counted), else here, when the answer
    comes later (the other acceptors', or the shards open again after an
    ABORT before it)."""

    def __init__(self, slot: Slot, parts: int) -> None:
        self.slot = slot
        self.left = parts
        self.aborted = False
        self.in_call = True

    def deliver(self, body: bytes) -> None:
        self.aborted = self.aborted or body == OK_REPLY
        self.left -= 1
        if self.left:
            return
        server = self.slot.client.server
        if not self.aborted:
            stats = server.stats
            if self.in_call:
                stats.error(NO_SHUTDOWN)
            else:
                stats.failed("shutdown", NO_SHUTDOWN)
                stats.error_mark += 1  # (not a failure of a call that may run now)
        self.slot.deliver(OK_REPLY if self.aborted else _NO_SHUTDOWN)
        server.flush_clients_soon()


class _BusAbort:
    """:func:`bus_abort`'s answer: 1 if this acceptor aborted a stop."""

    def __init__(self, answer: Callable[[object], None]) -> None:
        self.answer = answer

    def deliver(self, body: bytes) -> None:
        self.answer(int(body == OK_REPLY))


def _abort_here(server: Acceptor, reply: _AbortReply | _BusAbort) -> None:
    """Cancel this acceptor's stops under way; ``reply`` gets ``+OK``, or
    the error body if there is none.  Under way here: a signal's stop still
    waiting for a busy script (Redis's ``shutdown_asap``, set by its signal
    handler until its serverCron runs), and the stops (SHUTDOWN, a signal's)
    whose shards have not all answered (Redis's shutdown waiting for its
    replicas, which its SHUTDOWN ABORT cancels too).  Those end as a failed
    save ends, at once, their shards' answers not waited for (a frozen
    worker's never comes): once no other stop is undecided, the shards are
    opened again (see :func:`_settle_failed`), each SHUTDOWN gets ``-ERR
    Errors trying to SHUTDOWN. Check logs.`` (Redis's
    replyToClientsBlockedOnShutdown), the supervisor hears ``stop-failed``
    (a later signal stops again), and the ``+OK`` comes then, so that this
    client's next command finds the shards open.  A stop already decided
    (every shard shut, the server stopping) cannot be: the error, as Redis,
    which has exited by then, answers nothing."""
    waiting = server.signal_stop
    # Not a stop past the point Redis could abort: one forced (a save
    # failed, with FORCE: its shards close unsaved, a first AOF base's
    # write killed, as Redis's finishShutdown exits anyway), nor a NOSAVE
    # over a busy script (Redis exits at once; its operation was decided
    # undone, see _release_parks).  Opening their shards again would leave
    # an AOF with no base, and the script running on.  Nor one with NOW,
    # or begun with shutdown-timeout 0, which Redis runs at once, waiting
    # for no replica.
    undecided = [
        gather
        for gather in server.stops_pending
        if gather.left > 0 and not (gather.forced or gather.now or gather.busy_pids or gather.aborted)
    ]
    if server.stop_decided or (waiting is None and not undecided):
        if not server.stop_decided and server.stops_failed:
            # An ABORT after an ABORT: Redis's cancelShutdown is done at
            # once, so the second finds nothing under way; it answers so
            # once the shards are open again, as the first does.
            server.aborts_waiting.append((reply, _NO_SHUTDOWN))
            _settle_failed(server)  # (bounded, as the first)
            return
        reply.deliver(_NO_SHUTDOWN)
        return
    log.warning("Shutdown manually aborted.")
    if waiting is not None:
        waiting.aborted = True
        server.signal_stop = None
        _tell_supervisor(server, bus.STOP_FAILED_LINE + b"\n")  # a later signal stops again
        if not undecided:
            reply.deliver(OK_REPLY)
            return
    server.aborts_waiting.append((reply, OK_REPLY))
    for gather in undecided:
        # Decided now (failed): it waits for no shard's answer.
        gather.aborted = True
        server.stops_pending.remove(gather)
        server.stops_failed.append(gather)
    _settle_failed(server)


def _release_parks(link: object) -> None:
    """SHUTDOWN NOSAVE while ``link``'s worker runs a busy script across
    shards: the other shards its operation parked wait for a decision that
    will never come (its executor ends at once, see _Shutdown.deliver) and
    would never run their ``__shutdown``.  The operation is decided undone
    (they prepared nothing: a script prepares after its run), so they do,
    and the server stops at once, as Redis stops."""
    for op in list(link.ops.values()):  # type: ignore[attr-defined]
        if op.decision is None and getattr(op, "executor", None) == link.index:  # type: ignore[attr-defined]
            op._decide(False, encode_error(errors.OP_ABORTED))


class _Ignore:
    def deliver(self, body: bytes) -> None:
        pass


def shutdown(client: Client, args: list) -> None:
    """SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]"""
    options = set()
    for a in args[1:]:
        opt = a.upper()
        if opt not in (b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"):
            client.reply_error(errors.SYNTAX)
            return
        options.add(opt)
    if (b"NOSAVE" in options and b"SAVE" in options) or (b"ABORT" in options and len(options) > 1):
        client.reply_error(errors.SYNTAX)
        return
    if b"ABORT" in options:
        abort_stops(client)
        return
    mode = b"nosave" if b"NOSAVE" in options else b"save" if b"SAVE" in options else b"default"
    force = b"FORCE" in options
    now = b"NOW" in options
    server = client.server
    if server.loading:
        _shutdown_while_loading(client)
        return
    if not client.state.in_exec and all(link.script is None for link in server.links):
        # Redis reads nothing while a script runs until busy-reply-threshold:
        # a SHUTDOWN sent before is read then (NOSAVE stops the server, the
        # others answer -BUSY), or after a script that ended first.
        slot = Slot(client)
        client.pending.append(slot)
        at_threshold(server, lambda: _shutdown(client, slot, mode, force, now))
        return
    _shutdown(client, None, mode, force, now)


def _shutdown_while_loading(client: Client) -> None:
    """SHUTDOWN before every shard has loaded at start: as Redis's
    shutdownCommand, which turns any SHUTDOWN while loading into NOSAVE,
    the server stops at once, with no reply.  No shard is asked (none is
    attached yet): the supervisor's stop, ``nosave`` before the shards have
    loaded, ends each worker's load where it is, with nothing written."""
    log.warning("acceptor: SHUTDOWN by client id=%d addr=%s while loading; stopping", client.id, client.addr)
    slot = Slot(client)
    client.pending.append(slot)
    slot.deliver(b"")  # Redis closes the connection without a reply
    client.close_after_replies()
    supervisor = living_parent()
    if supervisor is not None:  # else it has died, and this acceptor stops with it
        os.kill(supervisor, SHUTDOWN_SIGNAL)


def _shutdown(client: Client, slot: Slot | None, mode: bytes, force: bool, now: bool = False) -> None:
    """SHUTDOWN as read now: ``slot`` its reply's place if it waited (see
    shardlink.at_threshold)."""
    server = client.server
    links = server.links
    busy = [link for link in links if link.busy is not None and link.script is not None]
    if busy and mode != b"nosave":
        # As Redis: while a script is busy, only SHUTDOWN NOSAVE stops the server.
        problem = busy[0].busy.decode("latin-1")[1:].strip()  # type: ignore[union-attr]
        if slot is None:
            client.reply_error(problem)
        else:
            server.stats.error(problem)
            slot.deliver(encode_error(problem))
            server.flush_clients_soon()  # (at a turn's end, no frame's read writes it)
        return
    for link in busy:
        _release_parks(link)
    asked = _not_reloading(server, [link for link in links if link not in busy])
    gather = _Shutdown(server, client, len(asked), slot)
    gather.asked = asked
    gather.mode = mode
    server.stops_pending.append(gather)
    gather.force = force
    gather.now = now or _waits_for_nothing(server)
    gather.saves = mode == b"save" or (mode == b"default" and bool(server.config.get("save")))
    gather.busy_pids = [link.script[0] for link in busy]  # type: ignore[index]
    for link in asked:
        link.send(_HEADER, encode_command([Verb.SHUTDOWN, mode]), gather)
    if busy and server.nacceptors > 1:
        # Another acceptor's operation may have parked shards for the busy
        # script: they wait for its decision and never answer this one's
        # __shutdown.  NOSAVE keeps nothing of the script, so the server
        # stops without their answers (the supervisor's SIGTERM ends them).
        server.loop.call_later(_PARKED_WAIT, gather.stop_now)  # type: ignore[union-attr]
    if not gather.left:
        gather.left = 1
        gather.deliver(b"+OK\r\n")


def stop_by_signal(server: Acceptor, flags: str) -> None:
    """The supervisor's ``stop <flags>``: SIGTERM or SIGINT, with their
    ``shutdown-on-sig*`` flags (see :mod:`shardkv.supervisor`).  As
    Redis's serverCron runs prepareForShutdown: every shard saves (or not)
    as SHUTDOWN would with those flags, and the server stops; a save that
    fails, without ``force``, opens the shards again and the server serves
    on.  A script that runs is waited for, as Redis's serverCron runs only
    once it has ended: meanwhile the server serves as it would (``-BUSY``
    past busy-reply-threshold; SCRIPT KILL and SHUTDOWN NOSAVE work), and
    no shard is shut before it ends.  The shards' ``__ping``s are waited
    for SIGNAL_PING_WAIT at the most: a frozen worker never answers, and
    the supervisor bounds the stop only from the ``shutting`` line that
    follows (a worker still running a command gets its ``__shutdown``
    after it, as ever)."""
    _tell_supervisor(server, bus.STOPPING_LINE + b"\n")
    stop = _SignalStop(server, flags)
    server.signal_stop = stop
    at_threshold(server, stop.go_on)
    server.loop.call_later(SIGNAL_PING_WAIT, stop.go_on)  # type: ignore[union-attr]


class _SignalStop:
    """A signal's stop before it asks the shards (Redis's ``shutdown_asap``):
    it waits to be read (``go_on``) and for any busy script's end; SHUTDOWN
    ABORT meanwhile cancels it (``aborted``, see :func:`abort_stops`)."""

    def __init__(self, server: Acceptor, flags: str) -> None:
        self.server = server
        self.flags = flags
        self.started = False
        self.aborted = False

    def go_on(self) -> None:
        if not self.started:
            self.started = True
            _after_scripts(self.server, self._shut)

    def _shut(self) -> None:
        if self.aborted:
            return
        self.server.signal_stop = None
        _stop_shards(self.server, self.flags)


def _after_scripts(server: Acceptor, then: Callable[[], None]) -> None:
    """Call ``then`` once no worker runs a busy script (at once if none does)."""
    if any(link.script is not None for link in server.links):
        at_next_busy_change(lambda: _after_scripts(server, then))
    else:
        then()


def _stop_shards(server: Acceptor, flags: str) -> None:
    """A signal's stop, past any busy script: every shard's ``__shutdown``."""
    names = flags.split()
    mode = stop_mode(flags)
    asked = _not_reloading(server, server.links)
    gather = _Shutdown(server, None, len(asked))
    gather.asked = asked
    gather.mode = mode.encode()
    server.stops_pending.append(gather)
    gather.force = "force" in names
    gather.now = "now" in names or _waits_for_nothing(server)
    gather.saves = mode == "save" or (mode == "default" and bool(server.config.get("save")))
    command = encode_command([Verb.SHUTDOWN, mode.encode()])
    for link in asked:
        link.send(_HEADER, command, gather, control=True)
    _tell_supervisor(server, bus.SHUTTING_LINE + b"\n")
    if not asked:
        gather.left = 1
        gather.deliver(b"+OK\r\n")


def _waits_for_nothing(server: Acceptor) -> bool:
    """``shutdown-timeout 0``: as Redis's prepareForShutdown, which waits
    for its replicas only with a timeout, a stop then runs at once, as
    with NOW, and SHUTDOWN ABORT cannot cancel it (see abort_stops)."""
    return not int(server.config.get("shutdown-timeout") or 0)


def _not_reloading(server: Acceptor, links: list) -> list:
    """The shards a stop asks to save: all but those whose worker reloads
    after a restart (:attr:`Acceptor.reloading`).  As Redis stops at once
    while it loads, saving nothing, a stop does not wait for their load:
    their files are what they load, so they already hold their data, and
    the supervisor's SIGTERM ends the load there, writing nothing (see
    ``shardkv.worker.loop.serve``).  The other shards, loaded and perhaps
    holding acknowledged writes, save as the stop says.  A shard whose
    new worker's pipe is not attached yet is asked, as one whose worker is
    gone: its link answers at once that it is unavailable (a failed save,
    when the stop saves: what its worker held when it died is lost)."""
    reloading = server.reloading
    if not reloading:
        return list(links)
    skipped = [link for link in links if link.index in reloading and link.up]
    for link in skipped:
        log.warning(
            "acceptor: shard %d is loading: it stops without a save (its files hold its data)", link.index
        )
    return [link for link in links if link not in skipped]


def on_reloaded(server: Acceptor, index: int) -> None:
    """Shard ``index``'s restarted worker has loaded (the supervisor's
    ``reloaded`` line): a stop that is not over asks it now, as it asked
    the others, before any command can reach it through this acceptor.
    Else it would serve writes while the other shards save, acknowledge
    them, and, with SHUTDOWN SAVE and no ``save`` rules, stop without
    saving them (the supervisor's stop after a SHUTDOWN saves only as the
    rules say).  A stop already decided asks it all the same, its answer
    not waited for: the shard is shut, as the others are, until the
    supervisor stops it.

    A new worker is asked even if the stop asked its shard before: no
    ``__shutdown`` reached it (the stop skipped the shard while it
    reloaded, see :func:`_not_reloading`, or asked a worker that died
    since, after it had saved and shut, or whose pipe was not attached,
    which answered at once).  Its pipe may be attached only after the
    ``reloaded`` line was read (both lines in one read): then it is asked
    once attached (:func:`on_attach`)."""
    link = server.links[index]
    if link.up:
        _ask_late(server, link)


def on_attach(server: Acceptor, link: ShardLink) -> None:
    """A restarted worker's pipe is attached: if its ``reloaded`` line was
    read before (see :func:`on_reloaded`), a stop under way asks it now."""
    if link.index not in server.reloading:
        _ask_late(server, link)


def _ask_late(server: Acceptor, link: ShardLink) -> None:
    """The stops under way (or decided) ask ``link``'s new worker, loaded,
    each as it asked the others, in their order (a SIGTERM's stop begins
    while a SHUTDOWN SAVE still waits for a slow save: that shard saves
    too, as the SHUTDOWN says)."""
    if not server.stops_pending:
        return
    log.warning(
        "acceptor: shard %d has loaded while the server stops: it is asked to stop too",
        link.index,
    )
    for gather in server.stops_pending:
        if link not in gather.asked:
            gather.asked.append(link)
        control = gather.client is None
        command = encode_command([Verb.SHUTDOWN, gather.mode])
        if gather.left > 0:
            gather.left += 1
            link.send(_HEADER, command, gather, control=control)
        else:
            link.send(_HEADER, command, _Ignore(), control=control)


def _tell_supervisor(server: Acceptor, line: bytes) -> None:
    """Send ``line`` to the supervisor, after the bus's frames (K > 1)."""
    if server.bus is not None:
        server.bus.send_raw(line)
        return
    sock = server.control
    if sock is None:
        return
    try:
        sock.send(line)
    except OSError as e:
        log.warning("acceptor: could not tell the supervisor %r: %s", line.strip(), e)


# -- INFO persistence -----------------------------------------------------------

# How each shard figure merges into one: the server's figure is the sum, the
# largest, the smallest, or "err" if any shard says so.
_MERGE = [
    ("rdb_changes_since_last_save", sum),
    ("rdb_bgsave_in_progress", max),
    ("rdb_last_save_time", min),
    ("rdb_last_bgsave_status", "status"),
    ("rdb_last_bgsave_time_sec", max),
    ("rdb_current_bgsave_time_sec", max),
    ("rdb_saves", max),
    ("rdb_last_cow_size", 0),
    ("rdb_last_load_keys_expired", 0),
    ("rdb_last_load_keys_loaded", sum),
    ("aof_enabled", max),
    ("aof_rewrite_in_progress", max),
    ("aof_rewrite_scheduled", max),
    ("aof_last_rewrite_time_sec", max),
    ("aof_current_rewrite_time_sec", max),
    ("aof_last_bgrewrite_status", "status"),
    ("aof_rewrites", max),
    ("aof_rewrites_consecutive_failures", max),
    ("aof_last_write_status", "status"),
    ("aof_last_cow_size", 0),
    ("module_fork_in_progress", 0),
    ("module_fork_last_cow_size", 0),
]
_MERGE_AOF = [
    ("aof_current_size", sum),
    ("aof_base_size", sum),
    ("aof_pending_rewrite", max),
    ("aof_buffer_length", sum),
    ("aof_pending_bio_fsync", 0),
    ("aof_delayed_fsync", 0),
]
# shardkv's own: the longest stop of any shard to start or finish a child,
# and the longest time a shard took to load its data at start.
_MERGE_OWN = [
    ("rdb_bgsave_max_pause_usec", max),
    ("aof_rewrite_max_pause_usec", max),
    ("load_seconds", max),
]


def persistence_section(server: Acceptor, shards: list) -> list[tuple[str, object]]:
    """INFO's persistence lines, from each shard's ``__info`` figures."""
    figures = [s[5] for s in shards if len(s) > 5 and s[5]]
    # Loading at start, or a shard reloading after its worker's restart.
    loading = server.loading or bool(server.reloading)
    out: list[tuple[str, object]] = [("loading", int(loading)), ("async_loading", 0)]
    # A reloading shard's last save: its worker's restart, as LASTSAVE says.
    started = [server.reload_started[s] for s in server.reloading if s in server.reload_started]
    if not figures:
        out += [("rdb_last_save_time", min(started, default=server.lastsave)), ("aof_enabled", 0)]
        return out + loading_lines(server) if loading else out
    merges = _MERGE + (_MERGE_AOF if any(f.get("aof_enabled") for f in figures) else []) + _MERGE_OWN
    for name, how in merges:
        values = [f[name] for f in figures if name in f]
        if how == 0:
            out.append((name, 0))
        elif how == "status":
            out.append((name, "err" if "err" in values else "ok"))
        elif values:
            out.append((name, how(values)))  # type: ignore[operator]
    if started:
        out = [(n, min(started + [cast(int, v)]) if n == "rdb_last_save_time" else v) for n, v in out]
    return out + loading_lines(server) if loading else out


def loading_lines(server: Acceptor) -> list[tuple[str, object]]:
    """While the shards load at start (or some reload after their worker's
    restart, see :attr:`Acceptor.reloading`): how far they have come, as Redis's
    INFO persistence says (its figures, computed as its genRedisInfoString
    does, from the bytes of the files every worker loads, a file at a time:
    see shardkv.runtime.loadprogress)."""
    progress = server.load_progress
    # Reloading: the figures of the shards that reload (the others loaded at start).
    only = sorted(server.reloading) if not server.loading else None
    total, loaded = progress.figures(only) if progress is not None else (0, 0)
    perc = loaded / total * 100 if total else 0.0
    elapsed = int(time.time()) - server.loading_since
    remaining = total - loaded if total else 1
    eta = 1 if not elapsed else elapsed * remaining // (loaded + 1)
    return [
        ("loading_start_time", server.loading_since),
        ("loading_total_bytes", total),
        ("loading_rdb_used_mem", 0),
        ("loading_loaded_bytes", loaded),
        ("loading_loaded_perc", f"{perc:.2f}"),
        ("loading_eta_seconds", eta),
    ]


def latest_fork_usec(shards: list) -> int:
    return max((s[5].get("latest_fork_usec", 0) for s in shards if len(s) > 5 and s[5]), default=0)


def total_forks(shards: list) -> int:
    """INFO's total_forks: every fork the workers made, summed (each shard
    forks its own child for a BGSAVE or an AOF rewrite, so one BGSAVE
    counts once per shard: the processes forked, as Redis counts them; a
    restarted worker counts from 0, a reloading one is not counted)."""
    return sum(s[5].get("total_forks", 0) for s in shards if len(s) > 5 and s[5])


# -- CONFIG SET reaches the supervisor ---------------------------------------------


def tell_supervisor(server: Acceptor, changes: dict) -> None:
    sock = getattr(server, "control", None)
    if sock is None or not changes:
        return
    line = b"config " + json.dumps(config.to_wire(changes)).encode() + b"\n"
    if server.bus is not None:  # in order with the bus's frames (see shardkv.acceptor.bus)
        configorder.sent(server, changes)  # its number comes back (an ``ordered`` line)
        server.bus.send_raw(line)
        return
    try:
        sock.send(line)
    except OSError as e:
        log.warning("acceptor: could not tell the supervisor about CONFIG SET: %s", e)
