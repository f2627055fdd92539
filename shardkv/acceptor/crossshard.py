"""Operations over several shards: all of their writes happen, or none.

Two kinds of operations span shards.  *Parked* operations read keys on
some shards and write keys on others (RENAME to another shard, SMOVE,
SUNIONSTORE and the other STORE forms, LMOVE, a MULTI/EXEC whose
writes span shards, a WATCHed EXEC, a blocking move served at once).
*Write fan-outs* write on several shards, each shard's part on its own
data (MSET, DEL, UNLINK and MSETNX across shards).  Both run as one operation of
the commit protocol below, named by an operation id unique to this
acceptor (a random epoch and a counter).

Guarantee
---------
Isolation: every shard involved sits at the same place in the acceptor's
global order while the operation runs (it is *parked*: it runs nothing
else), so no client sees part of it.  Atomicity: the operation's writes are
applied on every shard involved or on none, also when any worker or the
acceptor dies at any point, in memory and after a restart from the AOF.
The client gets the operation's reply if it committed, an error
(:data:`~shardkv.protocol.errors.OP_ABORTED`) if it did not, and never a reply
meant for another operation: every message carries the operation's id.

Messages (one definition each, in :mod:`shardkv.protocol.wire`)
------------------------------------------------------
Parked operation, with executor E (the shard of the first key; for a
script, the shard whose keys its earlier runs found largest, see
:class:`AtomicOp`'s ``exported``):

1. *park*: a ``__park <op> ...`` entry to every shard involved, in one step
   of the global order (``__parkat <ms> __park ...`` for an EXEC with
   scripts: its keys expired as of ``ms``, see ``wire.Run.as_of``).  Each
   answers :class:`~shardkv.protocol.wire.Parked` (the states of its keys,
   the versions of the WATCHed ones) and parks.
2. *run*: :class:`~shardkv.protocol.wire.Run` to E with all the states.  E runs the
   commands on them and answers :class:`~shardkv.protocol.wire.Ran`: the replies,
   the other shards' keys that changed, and what it did with its own
   changes.  When no other shard's key changed, E has logged its changes
   as one group and the operation is decided (commit) without a log line.
   Otherwise E has *prepared* its own part (see 3).
3. *prepare*: :class:`~shardkv.protocol.wire.Prepare` to each shard whose keys
   changed.  It applies the new states in memory, keeps the old ones to
   undo them, logs one ``__XPREPARE <op> <states>`` record in its AOF,
   written (and with ``appendfsync always`` fsynced) before it answers
   :class:`~shardkv.protocol.wire.Prepared`.
4. *decide*: once every shard has prepared, the acceptor appends
   ``C <op>`` to the decisions file (:mod:`shardkv.protocol.decisions`; fsynced with
   ``always``).  That line is the commit: then the acceptor answers the
   client (a FLUSHALL's reply waits for each shard's ``Finished``: it
   saves first, see :class:`_AfterSaves`) and sends :class:`~shardkv.protocol.wire.Decide` to every parked shard
   (at the end of its loop turn, in one write per pipe with the turn's
   other decisions and entries, :meth:`ShardLink.queue_frame`; a commit
   with the access clocks of the shard's keys the run only read),
   which logs ``__XCOMMIT <op>`` (or, on abort, restores the old states
   and logs ``__XABORT <op>``), answers :class:`~shardkv.protocol.wire.Finished`
   and resumes.  Once no committed operation awaits a ``Finished``, the
   decisions file is emptied.

A write fan-out skips park and run: each shard gets ``__prepare <op>
<its part>``, runs it, and, if that changed keys, prepares them as in 3 and
parks, answering :class:`~shardkv.protocol.wire.PartPrepared` with its part's reply;
a shard whose part changed nothing goes on at once.  Then 4 (the
fan-outs decided in one read of a pipe write their lines together at its
end, :meth:`Coordinator.commit_soon`).  MSETNX's
parts vote: a part that finds one of its keys answers 0 and prepares
nothing, and then the operation is decided abort (undone where a part set
its keys, with the keys' WATCH versions as before) and the reply is 0.
A part of MSET, DEL, UNLINK or MSETNX exports its keys' states before it
runs (the undo) and not after: the states it leaves follow from its
arguments (``transfer.written_states``).  A shard
that finds several fan-outs' parts back to back in one batch, on keys that
no part before them changed, prepares them all and parks once, for all of
their decisions (in any order): each operation still has its own answer,
decision and undo, and its keys are no other one's, so an abort of one
leaves the others' states as they are.

States
------
Acceptor, per operation: ``parking`` -> ``running`` -> ``preparing`` ->
``decided`` (commit or abort); a fan-out goes from ``parking`` to
``decided``.  Worker, per operation: running -> parked -> (executor: ran)
-> prepared -> resumed; ``self.prepared`` holds what it prepared until the
outcome is known.

Failures
--------
* A shard dies before the decision (while parking, running or
  preparing): the acceptor decides abort at once (presumed abort: nothing
  is logged), sends ``Decide(abort)`` to every other parked shard, which
  undoes what it prepared and resumes, and answers the client with
  :data:`~shardkv.protocol.errors.OP_ABORTED`.  The restarted worker finds the
  prepare record without an outcome in its AOF (if it got that far) and
  reports it in doubt (:class:`~shardkv.protocol.wire.InDoubt`, the first frame on
  every new pipe); the acceptor answers :class:`~shardkv.protocol.wire.Resolve`
  abort, as nothing was logged, and the worker runs nothing before that.
* A shard dies after the decision: the others commit; its restart reports
  the operation in doubt and gets commit (the acceptor keeps the decision
  until every prepared shard has finished it).
* A worker receives a control message for an operation it is not parked
  for (a restarted worker does): it answers :class:`~shardkv.protocol.wire.Refused`
  and does nothing; the acceptor treats that shard as lost for the
  operation.
* The acceptor dies: a worker parked for an operation it has prepared
  keeps it prepared (in doubt) and reports it to the next acceptor, which
  reads the decisions file: commit if the line is there, else abort; a
  worker parked with nothing prepared simply resumes.  The client of the
  operation lost its connection: it got no reply, as with Redis when a
  connection drops.
* The decisions file cannot be written: the operation aborts, with
  :data:`~shardkv.protocol.errors.OP_NOT_RECORDED`.
* A bug (an exception) in the acceptor's part once every shard has
  answered: building the client's reply (``finish``, a fan-out's
  ``merge``), the run, the decision.  The operation is decided all the
  same, as the decisions file has it (commit if its line is written, or
  if its executor committed alone, else abort), and every parked shard gets its ``Decide`` and resumes.  Undone
  (or it wrote nothing), its client gets
  :data:`~shardkv.protocol.errors.INTERNAL` in its reply's place.
  Committed, its client gets the operation's own reply if that can still
  be built (the bug was elsewhere); if not, the client is closed, as an
  error would say that writes which are in did not happen
  (:meth:`_Operation._unanswerable`).  A bug once it is decided (in the
  client's reply path) closes that client alone (:meth:`_Operation._bug`).
* A bug while sending a parked operation's ``__park`` entries, or a
  write fan-out's ``__prepare`` ones: it is undone, as when a shard
  cannot take its entry; each shard asked is told abort
  once it has answered, and the client gets
  :data:`~shardkv.protocol.errors.INTERNAL` (:meth:`_Operation._asking_failed`).

There is no deadlock: parks are queued in global order on every shard, so
the oldest pending operation always finds all of its shards parked for it.
Every coordinator (an acceptor; today the one acceptor is coordinator 0)
has its own decisions file and puts its number in its operation ids
(:func:`shardkv.decisions.operation_ids`), so an operation in doubt is
resolved from the file of the coordinator that started it: a restarted
coordinator finds its predecessor's decisions in its own file.  An
operation of another coordinator is resolved from that coordinator's
file, which is right only once that coordinator has stopped (with several
acceptors running at once, it must answer for its own operations: the
worker would then wait for that coordinator's ``Resolve``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from shardkv.acceptor.replies import AFTER_DECISION, ExecPlace, Slot, deliver, delivery_failed, origin_of
from shardkv.acceptor.shardlink import release_events
from shardkv.protocol import errors, wire
from shardkv.protocol.commands import error_name, other_db_keys
from shardkv.protocol.decisions import (
    DecisionLog,
    coordinator_paths,
    durable_path,
    op_coordinator,
    operation_ids,
    read_committed,
    volatile_path,
)
from shardkv.protocol.resp import NULL_ARRAY, Error, encode, encode_command, encode_error
from shardkv.protocol.wire import Verb
from shardkv.runtime import faultpoints
from shardkv.runtime.cmdstats import stat_name

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor
    from shardkv.acceptor.shardlink import ShardLink
    from shardkv.protocol.commands import Command

# The classes of events ('x' expired, 'e' evicted) of changes that an
# undone write fan-out's parts made on their own keys and no undo puts
# back: a key a part found expired, or evicted for room, stays gone, and
# Redis notifies them even when the command then writes nothing (an
# MSETNX that finds a key).
_NOT_UNDONE = (1 << 8) | (1 << 9)

log = logging.getLogger("shardkv.acceptor")

PARK_HEADER = wire.entry_header(wire.FLAG_PARK)


def park_header(db: int, no_touch: bool = False) -> bytes:
    """The header of a ``__park`` or ``__prepare`` in database ``db``: the
    shard exports, runs and applies the operation's keys in that database;
    ``no_touch``: a ``__prepare`` of a client with CLIENT NO-TOUCH on (its
    part runs inside ``access.no_touch``, as the client's entry would)."""
    if not db and not no_touch:
        return PARK_HEADER
    return wire.entry_header(wire.FLAG_PARK | (wire.FLAG_NOTOUCH if no_touch else 0), db=db)


PARKING, RUNNING, PREPARING, DECIDED = "parking", "running", "preparing", "decided"

# A script's cross-shard run goes to another shard than its first key's
# when that shard's keys took at least this many bytes to export on an
# earlier run (AtomicOp's ``exported``): below it, moving them costs less
# than a run that moves with every change of size.
MOVE_AT = 1 << 14

# A decisions file is emptied once it holds this many bytes and no shard
# needs any of its decisions (about 3,000 lines).
CLEAR_AT = 1 << 16


class Coordinator:
    """The acceptor's half of the protocol that outlives one operation:
    operation ids, the decisions file, the committed operations some shard
    has not finished yet, and the answers to :class:`~wire.InDoubt`."""

    def __init__(self, server: Acceptor, index: int = 0) -> None:
        self.server = server
        self.config = server.config
        self.index = index  # this coordinator's number, in its ids and file names
        self.nshards = len(server.links)
        self.ids = operation_ids(index)
        # The supervisor's pid names the file without AOF: asked once, not
        # per operation (a system call each time).
        self.supervisor = os.getppid()
        # Without AOF the file's name never changes: made once, not per commit.
        self.volatile = volatile_path(self.supervisor, index)
        self.logs: dict[str, DecisionLog] = {}
        # Decisions of this coordinator's earlier run, until every shard has reported.
        self.earlier: set[int] = set()
        for path in coordinator_paths(self.config, self.supervisor, index):
            self.earlier |= read_committed(path)
        self.unacked: dict[int, set[int]] = {}  # committed op -> shards yet to finish it
        self.reported: set[int] = set()  # shards that sent InDoubt to this acceptor
        self.settled = False  # every shard has reported and the earlier run's files are gone
        # Write fan-outs whose last answer came in the read of a pipe now
        # going on (``reading``): their decision lines go in one write at
        # its end (see commit_soon).
        self.reading = False
        self.committing: list[FanOutWrite] = []
        for link in server.links:
            link.orphan = self.orphan
            link.coordinator = self

    def new_id(self) -> int:
        return next(self.ids)

    def _log(self) -> tuple[DecisionLog, bool]:
        cfg = self.config
        durable = bool(cfg.get("appendonly"))
        path = durable_path(cfg, self.index) if durable else self.volatile
        decisions = self.logs.get(path)
        if decisions is None:
            decisions = self.logs[path] = DecisionLog(path)
        return decisions, durable and cfg.get("appendfsync") == "always"

    def sync(self) -> None:
        """Once a second: with ``appendfsync everysec``, fsync the decisions
        written since the last time, as Redis fsyncs its AOF (so a power cut
        loses at most about a second of them; with ``always`` each is
        fsynced before the reply, and without AOF none is)."""
        cfg = self.config
        if not cfg.get("appendonly") or cfg.get("appendfsync") != "everysec":
            return
        for decisions in self.logs.values():
            try:
                decisions.sync()
            except OSError as e:
                log.warning("cannot fsync %s: %s", decisions.path, e)

    def commit(self, op: int, shards: set[int]) -> bytes | None:
        """Record the commit of ``op``, prepared on ``shards``; the error
        reply if it could not be recorded (then the operation aborts)."""
        decisions, fsync = self._log()
        try:
            decisions.commit(op, fsync)
        except OSError as e:
            log.error("cannot record the commit of operation %d in %s: %s", op, decisions.path, e)
            _cut_failed(decisions)
            if op not in decisions.kept:
                return encode_error(errors.OP_NOT_RECORDED % (e.strerror or e))
        self.unacked[op] = set(shards)
        return None

    def commit_soon(self, op: FanOutWrite) -> bool:
        """Decide ``op`` (every answer in, each yes) commit at the end of
        the pipe read going on, with the others decided in it: their lines
        in one write, and one fsync with ``appendfsync always``, where each
        took its own; False (decide it now) outside such a read.

        Nothing of ``op`` leaves meanwhile: its reply and its ``Decide``
        are made only once its line is written (see :meth:`read_done`), and
        its shards, parked, show nothing of it to anyone before the
        decision (a part's shard runs nothing after it until its
        ``Decide``), so the line still comes before anything that shows
        the commit."""
        if not self.reading:
            return False
        self.committing.append(op)
        return True

    def read_done(self) -> None:
        """The end of a pipe read (before its replies are written): record
        the commits of the write fan-outs :meth:`commit_soon` kept, then
        decide each, in the order their answers came."""
        self.reading = False
        if not self.committing:
            return
        ops, self.committing = self.committing, []
        going = []
        for op in ops:
            if op.decision is not None:
                continue
            if op.failed:  # a shard was lost since its answer: undone
                _decide_each(op, False)
            else:
                going.append(op)
        if not going:
            return
        decisions, fsync = self._log()
        error = None
        try:
            decisions.commit_all([op.id for op in going], fsync)
        except OSError as e:
            log.error(
                "cannot record the commit of operations %s in %s: %s",
                [op.id for op in going],
                decisions.path,
                e,
            )
            _cut_failed(decisions)
            error = encode_error(errors.OP_NOT_RECORDED % (e.strerror or e))
        kept = decisions.kept
        committed = going if error is None else [op for op in going if op.id in kept]
        unacked = self.unacked
        for op in committed:
            unacked[op.id] = set(op.parked)
        unsynced = decisions.kept_unsynced
        for op in going:
            if error is None or op.id in kept:
                faultpoints.hold("committed")
                if unsynced is not None:
                    _unanswered(op, unsynced)
                _decide_each(op, True)
            else:
                _decide_each(op, False, error)

    def finished(self, op: int, shard: int) -> None:
        shards = self.unacked.get(op)
        if shards is not None:
            shards.discard(shard)
            if not shards:
                del self.unacked[op]
                self._maybe_clear()

    def orphan(self, link: ShardLink, message: object) -> None:
        """A control message that belongs to no operation in progress."""
        if type(message) is wire.InDoubt:
            self.in_doubt(link, message)
        elif type(message) is wire.Finished:
            self.finished(message.op, link.index)
        else:
            log.warning("shard %d sent %r for no operation in progress", link.index, message)

    def in_doubt(self, link: ShardLink, message: wire.InDoubt) -> None:
        """A worker's first frame on a new pipe: resolve what it prepared."""
        shard = link.index
        reported = set(message.ops)
        outcomes = {op: self._committed(op) for op in message.ops}
        for op, commit in outcomes.items():
            if commit:
                self.unacked.setdefault(op, set()).add(shard)
        for op, shards in list(self.unacked.items()):
            if shard in shards and op not in reported:  # it finished it before it died
                shards.discard(shard)
                if not shards:
                    del self.unacked[op]
        self.reported.add(shard)
        if outcomes:
            log.info("shard %d: operations in doubt resolved: %s", shard, outcomes)
            link.send_frame(wire.encode_control(wire.Resolve(outcomes)))
        self._maybe_clear()

    def _committed(self, op: int) -> bool:
        """Whether ``op``, prepared by some shard, committed."""
        coordinator = op_coordinator(op)
        if coordinator == self.index:
            return op in self.unacked or op in self.earlier
        # Another coordinator's operation (see the module docstring).
        paths = coordinator_paths(self.config, self.supervisor, coordinator)
        return any(op in read_committed(path) for path in paths)

    def _maybe_clear(self) -> None:
        """No shard needs a decision any more: forget them.  The first time
        (every shard has reported), the earlier run's decisions and files
        go, and the files are emptied; after that a file is emptied only
        once it has grown past :data:`CLEAR_AT`, not after every operation
        (a truncation and the look-ups of the earlier files cost syscalls).
        A line kept in the file is harmless: operation ids are never reused,
        and a line says only that its operation committed."""
        if self.unacked or len(self.reported) < self.nshards:
            return
        if self.settled:
            for decisions in self.logs.values():
                if decisions.size >= CLEAR_AT:
                    self._clear(decisions)
            return
        self.settled = True
        self.earlier.clear()
        for path in coordinator_paths(self.config, self.supervisor, self.index):
            if path not in self.logs and os.path.exists(path):  # an earlier run's, or the old name
                try:
                    os.unlink(path)
                except OSError as e:
                    log.warning("cannot remove %s: %s", path, e)
        for decisions in self.logs.values():
            self._clear(decisions)

    @staticmethod
    def _clear(decisions: DecisionLog) -> None:
        try:
            decisions.clear()
        except OSError as e:
            log.warning("cannot empty %s: %s", decisions.path, e)

    def close(self) -> None:
        """The acceptor stops: remove a decisions file with nothing in it."""
        for decisions in self.logs.values():
            decisions.close(remove_if_empty=True)


def _cut_failed(decisions: DecisionLog) -> None:
    """A write of the decisions file failed: say so if what it took could
    not be cut off again, in the words Redis logs for its AOF's short
    write, and how its operations were settled instead (see DecisionLog):
    cancelled, or, where that failed too, committed as the file has them."""
    if not decisions.uncut:
        return
    cancelled = [op for op in decisions.uncut if op not in decisions.kept]
    if decisions.cancel_error is None:
        settled = "operations %s cancelled" % cancelled
    else:
        settled = (
            "cannot cancel them either (%s): operations %s committed as the file has them, %s undone"
            % (
                decisions.cancel_error,
                decisions.kept,
                cancelled,
            )
        )
    log.error(
        "Could not remove short write from the decisions file %s: ftruncate: %s; %s",
        decisions.path,
        decisions.cut_error,
        settled,
    )


def _unanswered(op: _Operation, error: OSError) -> None:
    """``op`` commits, as the decisions file has its line (see
    :attr:`DecisionLog.kept`), but with ``appendfsync always`` that line
    could not be fsynced (``error``): an OK would promise what a power cut
    may take back, and an error would say it did nothing.  Its client is
    closed in its reply's place (the outcome unknown, as Redis's client sees
    its connection close when Redis exits on an AOF fsync it cannot make
    with ``always``); its shards commit."""
    try:
        raise error
    except OSError:
        op._unanswerable("fsyncing the commit line of a cross-shard operation (appendfsync always)")


def _decide_each(op: FanOutWrite, commit: bool, error: bytes | None = None) -> None:
    """Decide one of the write fan-outs a pipe read kept (see
    :meth:`Coordinator.read_done`): ``commit`` with its reply, else undone
    with ``error``, or as :meth:`FanOutWrite.all_in` words it.  A bug there
    costs its client alone, as when it was decided in the read (see
    :meth:`_Operation._bug`): the others of the read are decided all the
    same, and the pipe reads on."""
    try:
        if commit:
            op._decide(True, op._built(op._reply, applied=True))  # (each prepared a part)
        elif error is not None:
            op._decide(False, error)
        else:
            op.all_in()
    except Exception:
        op._bug("deciding a write fan-out")


def _busy(error: Error) -> bool:
    """Is ``error`` a shard's ``-BUSY`` (its script or function past
    busy-reply-threshold refused the step's hold, or the entry): not run
    there, as Redis refuses a command that it reads at the threshold."""
    return error.message.startswith("BUSY ")


def coordinator_of(server: Acceptor) -> Coordinator:
    coordinator = getattr(server, "coordinator", None)
    if coordinator is None:
        coordinator = server.coordinator = Coordinator(server, server.index)  # type: ignore[attr-defined]
    return coordinator


class _Answer:
    """The sink for one shard's answer to ``__park`` or ``__prepare``."""

    __slots__ = ("op", "shard", "index")

    def __init__(self, op: AtomicOp | FanOutWrite, shard: int, index: int = 0) -> None:
        self.op = op
        self.shard = shard
        self.index = index

    @property
    def event_holder(self) -> _Operation:
        return self.op

    @property
    def refusable_while_busy(self) -> bool:
        """Is this the park of a script's first run across shards (see
        ``AtomicOp.first_script_run``), or the part of a client's write
        fan-out (MSET, DEL, FLUSHALL... across shards), not yet decided?
        Then a script that goes busy ahead of it on its shard refuses it,
        as Redis reads that EVAL or write at the threshold and answers it
        ``-BUSY``: the operation is undone on every shard (the parts the
        free shards prepared too) and answered the shard's ``-BUSY``
        (:meth:`FanOutWrite.all_in`).  So is the park of a client's single
        command across shards (RENAME, SMOVE, COPY, SUNIONSTORE, LMOVE...:
        ``AtomicOp.standalone``).  At several acceptors the step's holds
        refuse it so before its parts leave; at one, this does."""
        op = self.op
        if type(op) is FanOutWrite:
            return op.own_reply and op.state == PARKING
        return type(op) is AtomicOp and (op.first_script_run or op.standalone) and op.state == PARKING

    def deliver(self, body: bytes) -> None:
        self.op.answered(self.shard, self.index, body)


class _Operation:
    """What parked operations and write fan-outs share: the parked shards,
    the decision, and the failure cases."""

    # The classes of its held events still handed out if it is undone.
    undo_keeps = 0

    def __init__(self, client: Client, slot: Slot | None = None, name: bytes = b"") -> None:
        server = client.server
        self.client = client
        self.name = name  # the client's command, as it named it (INTERNAL names it as Redis does)
        self.links = server.links
        self.coordinator = coordinator_of(server)
        self.id = self.coordinator.new_id()
        # The client's reply: a new slot in its replies, or a sink of the
        # caller's (MIGRATE's delete, whose slot is MIGRATE's own).
        if slot is None:
            slot = Slot(client)
            client.pending.append(slot)
        self.slot = slot
        self.state = PARKING
        self.parked: list[int] = []  # shards parked for this operation, alive
        self.failed = False  # a shard was lost before the decision
        self.broken = False  # a bug while sending its first entries (see _asking_failed)
        self.waiting = 0  # the shards whose answers to its first entries are awaited
        self.decision: bool | None = None
        self.decided: wire.Decide | None = None  # its Decide, once decided (see _send_decide)
        # Its writes are in with no decision line: the executor committed
        # them alone (``wire.COMMITTED``), so a bug after that decides commit.
        self.applied = False
        # The parts' keyspace events, held until the decision (see
        # shardkv.acceptor.shardlink.release_events), ordered by ``event_keys``.
        self.held_events: list | None = None
        self.event_keys: list | None = None
        self.emit_events: Callable[..., Any] | None = None
        self.flush = False  # a FLUSHALL/FLUSHDB fan-out (FanOutWrite)
        self.flushes_all = False  # a FLUSHALL fan-out: its shards save (FanOutWrite)
        self.flushed_all = False  # its run's FLUSHALL ran (AtomicOp: see wire.Decide.flushed)
        # Committed, each shard's keys that its run only read, with the
        # clocks their lookups gave them (AtomicOp: see wire.Decide.clocks).
        self.touched: dict[int, dict] = {}
        # Its client's reply once committed, held until each parked shard
        # has finished (saved) a FLUSHALL (see :class:`_AfterSaves`).
        self.after_saves: _AfterSaves | None = None
        # Several acceptors: its first entries are sent under holds (see
        # shardkv.acceptor.holds); once parked, a shard is this acceptor's alone.
        self.holds = server.holds
        self.marked: list[int] = []  # the shards the holds count it undecided on

    @property
    def event_holder(self) -> _Operation:
        return self

    def _answer(self, shard: int, body: bytes, kind: type) -> object | None:
        """Decode a shard's answer to its entry; None if it failed."""
        if body[:1] == b"-":  # the shard was unavailable: it never ran the entry
            return None
        try:
            message = wire.decode_answer(body)
        except wire.BadMessage:
            message = None
        if type(message) is not kind or message.op != self.id:  # type: ignore[union-attr]
            log.error("shard %d answered operation %d with %r", shard, self.id, message)
            return None
        self.parked.append(shard)
        self.links[shard].ops[self.id] = self
        return message

    def _send(self, shard: int, message: object) -> None:
        self.links[shard].send_frame(wire.encode_control(message))  # type: ignore[arg-type]

    def _commit(self, prepared: set[int], reply: Callable[[], bytes], applied: bool = False) -> None:
        """Every shard that changed keys has prepared: decide commit.
        ``applied``: the executor alone wrote, and committed its writes
        itself (``wire.COMMITTED``)."""
        if prepared:
            coordinator = self.coordinator
            error = coordinator.commit(self.id, prepared)
            if error is not None:
                self._decide(False, error)
                return
            unsynced = coordinator._log()[0].kept_unsynced
            if unsynced is not None:  # committed, and its client closed (see _unanswered)
                _unanswered(self, unsynced)
            faultpoints.hold("committed")
        # A PUBLISH of an EXEC's, run as its reply is built, goes on the bus
        # once its events went there (_decide), as Redis writes them first.
        outer = AFTER_DECISION[0]
        asks: list[Callable[[], None]] = []
        AFTER_DECISION[0] = asks
        try:
            built = self._built(reply, applied or bool(prepared))
        finally:
            AFTER_DECISION[0] = outer
        try:
            self._decide(True, built)
        finally:
            for ask in asks:
                ask()

    def _built(self, reply: Callable[[], bytes], applied: bool = False) -> bytes:
        """The client's reply, made by ``reply`` once the operation is
        decided; a bug there (an exception) is logged, and the decision
        still goes to every parked shard (they resume, and no other client
        notices).  Its client then gets
        :data:`~shardkv.protocol.errors.INTERNAL` in its reply's place, and
        goes on, if nothing of the operation was ``applied`` (undone, or it
        wrote nothing): an error reply says the command did nothing.  If
        its writes are in (committed), an error would say they are not, so
        its client is closed instead (:meth:`_unanswerable`)."""
        try:
            if faultpoints.ACTIVE:  # the fault-injection tests only
                faultpoints.raise_if_marked(self._arguments(), "building a cross-shard operation's reply")
            return reply()
        except Exception:
            if applied:
                self._unanswerable("building the reply of a committed cross-shard operation")
            else:
                log.exception(
                    "operation %d: internal error while building the reply of %r", self.id, self.name
                )
            return encode_error(errors.INTERNAL % error_name([self.name]))

    def _unanswerable(self, doing: str) -> None:
        """The operation committed (its writes are in, on every shard, for
        good) and a bug (an exception, being handled now) keeps its reply
        from being built.  No reply tells its client the truth: an error
        says the command did nothing, and a client (or its user) would
        retry a write that is in.  So its connection is closed, in the
        reply's place, as for any bug in a client's reply path
        (:func:`~shardkv.acceptor.replies.delivery_failed`): a connection
        lost before a reply is what every Redis client already takes as
        "the outcome is unknown; read the data to learn it", as when Redis
        itself dies on a bug.  The replies of its commands before this one
        are written first, as Redis wrote them as each command ended; those
        of its commands after it are dropped (:meth:`Client.failed_at`).
        A client already gone is left as it is (its replies are dropped
        anyway)."""
        client = self.client
        if client.closed:
            log.exception("operation %d (%r): internal error while %s", self.id, self.name, doing)
            return
        owner, place = origin_of(self.slot.reply_place)
        if owner is client:
            client.failed_at(place, doing)
        else:
            delivery_failed(self, doing)

    def _arguments(self) -> list[bytes]:
        """Every argument of its commands (for :func:`faultpoints.raise_if_marked`)."""
        raise NotImplementedError

    def _reply(self) -> bytes:
        """Its client's reply, once it committed."""
        raise NotImplementedError

    def _notify_after(self) -> str | None:
        """notify-keyspace-events as its commands left it, if one of them
        set it (see :class:`wire.Decide`); None if none did."""
        return None

    def _safely(self, doing: str, step: Callable[..., None], *args: object) -> None:
        """``step(*args)``, a step taken once every shard has answered its
        entry; a bug there (an exception) is :meth:`_bug`'s."""
        try:
            step(*args)
        except Exception:
            self._bug(doing)

    def _bug(self, doing: str) -> None:
        """An unexpected exception (a bug) while ``doing`` a step of this
        operation, being handled now.  Undecided, the operation is decided
        at once as the decisions file has it (commit if its line is
        written, or its executor committed alone, else abort: presumed
        abort): otherwise its shards would
        stay parked for good, every key on them blocked for every client.
        Committed, its client gets its reply (or, if that cannot be built
        either, is closed: see :meth:`_unanswerable`); undone, it gets
        :data:`~shardkv.protocol.errors.INTERNAL`.  Decided, its shards have their ``Decide`` already: only
        the client's reply failed, and that client alone is closed (see
        :func:`~shardkv.acceptor.replies.delivery_failed`)."""
        if self.decision is None:
            commit = self.applied or self.id in self.coordinator.unacked
            log.exception(
                "operation %d (%r): internal error while %s; decided %s",
                self.id,
                self.name,
                doing,
                "commit" if commit else "abort",
            )
            try:
                if commit:  # its line is written: its writes are in
                    self._decide(True, self._built(self._reply, applied=True))
                else:
                    self._decide(False, encode_error(errors.INTERNAL % error_name([self.name])))
                return
            except Exception:
                pass
        delivery_failed(self, doing)

    def _asking_failed(self, unasked: int, doing: str, step: Callable[[], None]) -> None:
        """A bug (an exception, being handled now) while sending the
        operation's first entries (``__park``, ``__prepare``), ``unasked``
        shards not sent theirs: it is undone, as when a shard cannot take
        its entry.  Those are never asked; once every shard asked has
        answered, ``step`` (what follows the last answer) decides abort
        (``broken``), each parked shard told so and resuming, else it would
        stay parked for good, every key on it blocked for every client; the
        client gets :data:`~shardkv.protocol.errors.INTERNAL` in its
        reply's place, and goes on."""
        log.exception(
            "operation %d (%r): internal error while asking its shards; aborted", self.id, self.name
        )
        self.broken = True
        self.waiting -= unasked
        if not self.waiting:  # none asked, or each answered at once (its link down)
            self._safely(doing, step)

    def _decide(self, commit: bool, reply: bytes | None) -> None:
        self.state = DECIDED
        self.decision = commit
        notify = self._notify_after() if commit else None
        self.decided = wire.Decide(self.id, commit, reply is None, notify, commit and self.flushed_all)
        decide = wire.encode_control(self.decided)
        if commit and self.flush and self.links[0].on_events is not None:
            self.held_events = [*(self.held_events or ()), (self.client.db, b"", wire.EVENT_FLUSH, b"flush")]
            self.emit_events = self.emit_events or self.links[0].emit_held
        gate = None
        serves = False
        if self.held_events:
            if not commit:  # undone: nothing it did happened, but what no undo puts back
                kept = self.undo_keeps
                self.held_events = [e for e in self.held_events if e[2] & kept] or None
            if self.held_events:
                serves = any(e[2] & MAY_SERVE for e in self.held_events)
                gate = release_events(self)
        if gate is None or not serves:
            self._send_decide(decide)
        else:
            # Several acceptors: its shards resume once its events are out
            # on the others too, so a client blocked on a key it pushed to,
            # served then, whose events go straight from the shard to the
            # others, is heard there after them.
            gate.hold(_Decision(self, decide), b"")
        if reply is None:  # it runs again (see AtomicOp._ran)
            return
        sink: Any = self.slot
        # (without save rules a FLUSHALL saves nothing: nothing to wait for)
        if (
            commit
            and self.parked
            and (self.flushed_all or self.flushes_all)
            and self.coordinator.config.get("save")
        ):
            sink = self.after_saves = _AfterSaves(self)
        if gate is None:
            sink.deliver(reply)
        else:  # several acceptors: after the events are out on the others too
            gate.hold(sink, reply)

    def _saved(self) -> None:
        """A shard parked for it finished (or was lost): a FLUSHALL's reply
        held for the shards' saves goes once none is left (see _AfterSaves)."""
        sink = self.after_saves
        if sink is not None and sink.body is not None and not self.parked:
            self.after_saves = None
            deliver(self.slot, sink.body, "delivering a FLUSHALL's reply")

    def _send_decide(self, decide: bytes) -> None:
        """Send its ``Decide`` to the shards still parked for it (committed,
        with the clocks of their keys its run read, if any)."""
        decided = self.decided
        touched = self.touched if decided is not None and decided.commit else None
        for shard in self.parked:  # at the end of the turn, with the turn's other decisions
            if touched and decided is not None and shard in touched:
                frame = wire.encode_control(dataclasses.replace(decided, clocks=touched[shard]))
                self.links[shard].queue_frame(frame)
            else:
                self.links[shard].queue_frame(decide)
        if self.marked:  # several acceptors: a step that waits for this decision goes now
            self.holds.decided(self)  # type: ignore[union-attr]

    def control(self, shard: int, message: object) -> None:
        kind = type(message)
        if kind is wire.Finished:
            self.links[shard].ops.pop(self.id, None)
            if shard in self.parked:
                self.parked.remove(shard)
            self.coordinator.finished(self.id, shard)
            if self.after_saves is not None:
                self._saved()
        elif kind is wire.Refused:
            log.error("shard %d refused operation %d: %s", shard, self.id, message.reason)  # type: ignore[attr-defined]
            self.links[shard].ops.pop(self.id, None)
            self.shard_lost(shard)
        elif self.decision is None:
            self._safely("taking a shard's answer", self.step, shard, message)

    def step(self, shard: int, message: object) -> None:
        raise NotImplementedError

    def _lost_error(self) -> str:
        return errors.OP_ABORTED

    def shard_lost(self, shard: int) -> None:
        """A shard parked for this operation died (or refused it)."""
        if shard in self.parked:
            self.parked.remove(shard)
        if self.after_saves is not None:  # (its restart resolves the commit, and saves then)
            self._saved()
        if self.decision is None:
            self.failed = True
            if self.state != PARKING:
                self._decide(False, encode_error(self._lost_error()))
        # Decided commit: the coordinator keeps the decision until the
        # restarted shard has reported and finished it.


# The event classes of a write that may make a key someone blocks on ready:
# Redis's NOTIFY_GENERIC (a RENAME, COPY, RESTORE or MOVE onto it), LIST,
# ZSET and STREAM (g, l, z, t).  An operation whose events have none
# (strings, hashes, sets) serves no blocked client as its shards resume.
MAY_SERVE = (1 << 2) | (1 << 4) | (1 << 7) | (1 << 10)


class _AfterSaves:
    """The sink of a committed FLUSHALL's reply (a fan-out's, or a run's
    that ran one, see wire.Decide.flushed): Redis's FLUSHALL saves before
    it answers (flushAllDataAndResetRDB's rdbSave), so the reply waits for
    each parked shard's :class:`~shardkv.protocol.wire.Finished`, which the
    shard sends once it has applied the flush and saved (before, the reply
    went with the ``Decide``, and a LASTSAVE, an INFO through another
    acceptor, or a kill of every process just after it could find the
    shards' saves not made)."""

    __slots__ = ("op", "body")

    def __init__(self, op: _Operation) -> None:
        self.op = op
        self.body: bytes | None = None

    def deliver(self, body: bytes) -> None:
        self.body = body
        self.op._saved()


class _Decision:
    """The sink that sends an operation's ``Decide`` once the gate it is
    held in opens (see :meth:`_Operation._decide`)."""

    __slots__ = ("op", "decide")

    def __init__(self, op: _Operation, decide: bytes) -> None:
        self.op = op
        self.decide = decide

    def deliver(self, body: bytes) -> None:
        self.op._send_decide(self.decide)


class AtomicOp(_Operation):
    """One parked operation over several shards (see the module docstring).

    ``commands`` run in order on the executor, the shard of ``keys[0]``;
    ``finish`` turns the executor's reply bodies into the client's reply
    bytes, once the operation has committed.  ``watched`` maps each
    watched ``(database, key)`` to the version the client saw: if one changed, nothing
    runs and the reply is a null array.  ``everything`` parks every shard
    and installs all keys on the executor (FLUSHALL, DBSIZE in EXEC).
    ``also``: more shards to park (those of an EXEC's CLIENT UNBLOCKs).
    ``exported``: a script's record of the bytes each shard's park answer
    took on its earlier runs (shard -> bytes, ``ScriptCache.exported``):
    the executor is then the shard among those involved whose keys were
    the largest, at least :data:`MOVE_AT` bytes, so that those stay where
    they are instead of crossing pipes four times (exported, sent in the
    ``Run``, sent back in the ``Ran``, in the ``Prepare``); this run's park
    answers update the record.
    """

    def __init__(
        self,
        client: Client,
        commands: list[list[bytes]],
        keys: list,
        finish: Callable[[list[bytes]], bytes],
        watched: dict | None = None,
        everything: bool | bytes = False,
        db: int | None = None,
        slot: Slot | None = None,
        also: set[int] | None = None,
        escaped: Callable[[list[bytes]], Callable[[], None] | None] | None = None,
        exported: dict[int, int] | None = None,
        as_of: int = 0,
        counted: bool = True,
        names: list | None = None,
        group: bool = False,
        name: bytes | None = None,
        transaction: bool = False,
        served: bool = False,
        no_touch: list[int] | None = None,
    ) -> None:
        super().__init__(client, slot, name or (commands[0][0] if commands and commands[0] else b""))
        self.served = served  # (see wire.Run.served)
        # The commands of a client with CLIENT NO-TOUCH on, by position (see
        # wire.Run.no_touch): by default all of them, if its client's is on
        # now (a CLIENT NO-TOUCH OFF read while it parks changes none).
        if no_touch is None:
            no_touch = list(range(len(commands))) if client.no_touch else []
        self.no_touch = no_touch
        self.group = group  # (see wire.Run.group)
        # An EXEC's commands: a shard's -BUSY aborts it as Redis's
        # execCommandAbort words it (see _all_parked).  Its EXEC's row in
        # the statistics, where dispatch counts its call once this is made
        # (taken back if refused so); None: not an EXEC's.
        self.exec_row = client.server.stats._row("exec") if transaction else None
        # Scripts that no shard has run yet, whose client read them before
        # this run (set by their caller): its park, still queued behind a
        # script that goes busy, is refused -BUSY (_Answer.refusable_while_busy).
        self.first_script_run = False
        # A client's single command across shards (run_cross_shard's: its
        # call counted by its executor as it runs): its park, still queued
        # behind a script that goes busy, is refused -BUSY as Redis reads
        # it at the threshold, a rejected call (see _all_parked).
        self.standalone = False
        # Its client's reply is the executor's reply to its first command
        # (a single command run across shards, most blocking commands' try):
        # an event Redis writes inside that reply has its place there (see
        # shardkv.acceptor.notifications.publish).
        self.whole_reply = False
        server = client.server
        self.commands = commands
        # False: the executor counts and logs none of the commands (their
        # caller does: wire.Run.counted).
        self.counted = counted
        self.names = names or []  # (see wire.Run.names)
        # Unix ms: the shards export, check and run the keys expired as of
        # then (an EXEC with scripts, every run as of its first's start:
        # wire.Run.as_of); 0: now.
        self.as_of = as_of
        self.finish = finish
        # An EXEC's: where each reply of the executor's stands in its array
        # (transactions._with_places), the one script's among them, and
        # where each reply's events end among its held events, once it ran
        # (see event_places).
        self.places: list[ExecPlace] = []
        self.script_place: ExecPlace | None = None
        self.event_ends: list[int] | None = None
        # Called with the executor's replies before anything is prepared:
        # when a script among the commands escaped (it needs more shards),
        # what runs them all again, once this run is decided undone.
        self.escaped = escaped
        # An EXEC's scripts' calls, for MONITOR (see scripting.monitor_scripts).
        self.lua: list | None = None
        # Its scripts' slow log entries on the executor (wire.Ran.logged).
        self.logged: list[int] = []
        # Its scripts' redis.log lines written before they ended, in a run
        # that escaped (wire.Ran.written): each run again drops as many.
        self.written: list[int] = []
        # The operation runs in database ``db`` (the client's): a key of
        # another one (COPY ... DB, MOVE, a SELECT inside MULTI) is named
        # ``(database, key)`` in ``keys``, and so in the states that go back
        # and forth.  ``watched`` names every key ``(database, key)``.
        self.db = op_db = client.db if db is None else db
        keys = [_plain(key, op_db) for key in keys]
        # WATCH's versions, by (database, key): the shards' answers to
        # __watch may still be on their way, and fill it in before their
        # answers to the __park below (a pipe is FIFO).
        self.watched = watched or {}
        shard_of = server.shard_of

        def shard_of_any(key: bytes | tuple) -> int:
            return shard_of(key[1] if type(key) is tuple else key)  # type: ignore[arg-type]

        self.shard_of_any = shard_of_any
        self.executor = shard_of_any(keys[0]) if keys else 0
        exports: dict[int, list] = {}
        for key in dict.fromkeys(keys):
            exports.setdefault(shard_of_any(key), []).append(key)
        self.exported = exported
        if exported:  # among the shards it parks anyway (none named: shard 0 alone)
            parked = range(len(self.links)) if everything else exports
            largest = max(parked, key=lambda s: exported.get(s, 0), default=self.executor)
            if exported.get(largest, 0) >= MOVE_AT:
                self.executor = largest
        watched_by: dict[int, list] = {}
        for key in self.watched:
            watched_by.setdefault(shard_of_any(key), []).append(_plain(key, op_db))
        shards = set(exports) | set(watched_by) | {self.executor} | (also or set())
        if everything:
            shards = set(range(len(self.links)))
        self.shards = sorted(shards)
        # ``everything`` is every key of the operation's database (``*``),
        # or of every database (``**``: FLUSHALL, a SELECT inside).
        marker = everything if type(everything) is bytes else b"*"
        self.own = [marker] if everything else exports.get(self.executor, [])
        self.waiting = len(self.shards)
        self.states: dict = {}
        self.clocks: dict = {}  # the exported keys' access clocks
        self.owner: dict = {}
        self.error: bytes | None = None
        self.aborted = False  # a watched key changed
        self.bodies: list[bytes] = []
        self.preparing: set[int] = set()
        self.prepared: set[int] = set()
        # How long the executor took, from the Run sent (``run_sent``,
        # perf_counter_ns) to its Ran read: a script's time in the slow log,
        # its run as Redis times it, not its wait for the shards to park.
        self.run_sent = 0
        self.run_ns = 0
        op = b"%d" % self.id
        header = park_header(op_db)
        if self.holds is not None:
            self.holds.begin()
            try:
                self.holds.parking(self, self.shards)
                self._park(exports, watched_by, everything, marker, op, header)
            finally:
                self.holds.end()
        else:
            self._park(exports, watched_by, everything, marker, op, header)

    def _park(
        self,
        exports: dict,
        watched_by: dict,
        everything: bool | bytes,
        marker: bytes,
        op: bytes,
        header: bytes,
    ) -> None:
        """Send ``__park`` (or ``__parkdb``) to every shard involved.  A bug
        (an exception) on the way aborts the operation: see :meth:`_asking_failed`."""
        asked = 0  # the shards sent theirs
        try:
            for shard in self.shards:
                args = self._park_entry(shard, exports, watched_by, everything, marker, op)
                self.links[shard].send(header, encode_command(args), _Answer(self, shard))
                asked += 1
        except Exception:
            self.error = encode_error(errors.INTERNAL % error_name([self.name]))
            self._asking_failed(len(self.shards) - asked, "running a parked operation", self._all_parked)

    def _park_entry(
        self, shard: int, exports: dict, watched_by: dict, everything: bool | bytes, marker: bytes, op: bytes
    ) -> list[bytes]:
        """The ``__park`` (or ``__parkdb``) entry of ``shard``."""
        export = [] if shard == self.executor else exports.get(shard, [])
        if everything and shard != self.executor:
            export = [marker, *export]  # with the keys that do not exist yet
        watching = watched_by.get(shard, [])
        if marker == b"**" or any(type(k) is tuple for k in (*export, *watching)):
            args = [Verb.PARKDB, op, b"%d" % len(export)]
            for i, key in enumerate((*export, *watching)):
                if type(key) is tuple:
                    args += (b"%d" % key[0], key[1])
                elif i == 0 and everything and shard != self.executor:
                    args += (b"*", key)  # the marker
                else:
                    args += (b"%d" % self.db, key)
        else:
            args = [Verb.PARK, op, b"%d" % len(export), *export, *watching]
        if self.as_of:
            args = [Verb.PARK_AT, b"%d" % self.as_of, *args]
        return args

    def answered(self, shard: int, index: int, body: bytes) -> None:
        message = self._answer(shard, body, wire.Parked)
        if self.exported is not None and shard != self.executor and message is not None:
            self.exported[shard] = len(body)
        if message is None:
            if not self.broken:  # else INTERNAL stays its reply
                self.error = body if body[:1] == b"-" else encode_error(errors.OP_ABORTED)
        else:
            for key, state in message.states.items():  # type: ignore[attr-defined]
                self.states[key] = state
                self.owner[key] = shard
            self.clocks.update(message.clocks)  # type: ignore[attr-defined]
            for key, version in message.versions.items():  # type: ignore[attr-defined]
                if self.watched.get(key if type(key) is tuple else (self.db, key)) != version:
                    self.aborted = True
        self.waiting -= 1
        if not self.waiting:
            self._safely("running a parked operation", self._all_parked)

    def _all_parked(self) -> None:
        if self.error is not None:
            error = self.error
            if self.exec_row is not None and error[:6] == b"-BUSY ":
                # A busy script refused a shard's hold (several acceptors):
                # Redis reads the EXEC at the threshold and refuses it.
                # A rejected call and an EXECABORT error, as Redis counts
                # it; not the call dispatch counted as it read the EXEC.
                message = errors.EXECABORT_BECAUSE % error[1:-2].decode("latin-1")
                stats = self.client.server.stats
                stats.take_back("exec", self.exec_row)
                stats.rejected("exec", message)
                error = encode_error(message)
            elif self.standalone and error[:6] == b"-BUSY ":
                # Refused by a busy script (a shard's hold, or its park):
                # a rejected call and a BUSY error, as Redis counts it.
                self.client.server.stats.rejected(stat_name(self.commands[0]), error[1:-2].decode("latin-1"))
            self._decide(False, error)
        elif self.failed or self.executor not in self.parked:
            self._decide(False, encode_error(self._lost_error()))
        elif self.aborted:
            self._decide(False, encode(NULL_ARRAY, self.client.resp3))
        else:
            self.state = RUNNING
            # One that may run again (``escaped``) must not commit on its own.
            alone = self.shards == [self.executor] and self.escaped is None
            resp3 = int(self.client.resp3)
            scripts = self.escaped is not None  # an EXEC's: the executor logs them (SLOWLOG)
            client = self.client
            run = wire.Run(
                self.id,
                self.states,
                self.commands,
                resp3,
                alone,
                self.own,
                self.clocks,
                scripts,
                self.as_of,
                (client.addr, client.name),
                self.counted,
                self.names,
                self.group,
                self.served,
                self.no_touch,
            )
            self.run_sent = perf_counter_ns()
            self._send(self.executor, run)

    def step(self, shard: int, message: object) -> None:
        kind = type(message)
        if kind is wire.Ran and self.state == RUNNING and shard == self.executor:
            self._ran(message)  # type: ignore[arg-type]
        elif kind is wire.Prepared and self.state == PREPARING:
            self.preparing.discard(shard)
            if not self.preparing:
                self._commit(self.prepared, self._reply)
        else:
            log.error("shard %d sent %r to operation %d, %s", shard, message, self.id, self.state)

    def _ran(self, message: wire.Ran) -> None:
        # First, what the run says (a bug in what follows still finds the
        # replies, and whether the executor committed alone: see _bug).
        self.bodies = message.bodies
        if message.bounds and self.places:  # (its events came just before: see wire.Ran.bounds)
            end = len(self.held_events or ())
            self.event_ends = [end + offset for offset in message.bounds]
        self.logged = message.logged
        self.written = message.written
        self.applied = message.own == wire.COMMITTED
        self.flushed_all = message.flushed
        self.run_ns = perf_counter_ns() - self.run_sent
        again = None if self.escaped is None else self.escaped(message.bodies)
        if again is not None:
            self._decide(False, None)  # undone, in silence: the slot waits for the run again
            again()
            return
        for key, clock in message.clocks.items():
            if key not in message.after:  # read only: its clock goes with the Decide
                owner = self.owner.get(key)
                if owner is not None:
                    self.touched.setdefault(owner, {})[key] = clock
        writes: dict[int, dict] = {}
        for key, state in message.after.items():
            owner = self.owner.get(key)
            if owner is None:
                # A key no shard exported, that came to be in a run of every
                # key of every database (SWAPDB in a script): its own shard's,
                # parked with the others.
                owner = self.shard_of_any(key)
            writes.setdefault(owner, {})[key] = state
        if not writes:  # only the executor wrote, if anything
            self._commit(
                {self.executor} if message.own == wire.PREPARED else set(), self._reply, self.applied
            )
            return
        self.state = PREPARING
        self.preparing = set(writes)
        self.prepared = set(writes)
        if message.own == wire.PREPARED:
            self.prepared.add(self.executor)
        for shard, states in writes.items():
            clocks = {key: message.clocks[key] for key in states if key in message.clocks}
            ranks = {key: message.ranks[key] for key in states if key in message.ranks}
            self._send(shard, wire.Prepare(self.id, states, clocks, ranks))

    def _reply(self) -> bytes:
        return self.finish(self.bodies)

    @property
    def event_places(self) -> list[tuple[int, ExecPlace]] | None:
        """An EXEC's, committed: for each command of its executor's, where
        its events end among those handed out and the place in EXEC's
        array they go (see shardkv.acceptor.notifications.publish)."""
        if self.event_ends is None or not self.decision or len(self.event_ends) != len(self.places):
            return None
        return list(zip(self.event_ends, self.places, strict=True))

    def _notify_after(self) -> str | None:
        notify = None
        for args in self.commands:
            if args[0] == Verb.CONFIG:  # (the only __config an EXEC's run has)
                notify = args[2].decode("latin-1")
        return notify

    def _arguments(self) -> list[bytes]:
        return [arg for command in self.commands for arg in command]

    def _lost_error(self) -> str:
        # Alone, the executor commits by itself, as a single-shard command
        # does: if it dies, whether it did is unknown, as for any command.
        return errors.SHARD_UNAVAILABLE if self.shards == [self.executor] else errors.OP_ABORTED


class FanOutWrite(_Operation):
    """A write whose parts run on several shards, each on its own keys
    (MSET, DEL, UNLINK, MSETNX): one ``__prepare`` per shard, then the
    decision.  ``unanimous`` (MSETNX): a part that answers anything but 1
    (one of its keys exists) votes no, and the operation is decided undone
    with the merged reply (0), as if no part had run."""

    undo_keeps = _NOT_UNDONE

    def __init__(
        self,
        client: Client,
        parts: dict[int, list[bytes]],
        merge: Callable[[list], object],
        keys: list | None = None,
        slot: Any = None,
        db: int | None = None,
        unanimous: bool = False,
        name: bytes | None = None,
    ) -> None:
        super().__init__(client, slot, name or next(iter(parts.values()))[0])
        self.parts = parts
        self.unanimous = unanimous
        self.event_keys = keys
        # A FLUSHALL/FLUSHDB happens at the commit, in every shard: its one
        # event (for client-side caching) comes from here, then.
        self.flush = any(p[:1] and p[0].lower() in (b"flushall", b"flushdb") for p in parts.values())
        self.flushes_all = any(p[:1] and p[0].lower() == b"flushall" for p in parts.values())
        self.own_reply = slot is None  # the client's command, not a part of its caller's (MIGRATE)
        self.merge = merge
        self.values: list = [None] * len(parts)
        self.waiting = len(parts)
        op = b"%d" % self.id
        header = park_header(client.db if db is None else db, client.no_touch)
        if self.holds is not None:
            self.holds.begin()
            self.holds.parking(self, list(parts))
        asked = 0  # the shards sent theirs
        try:
            for i, (shard, part) in enumerate(parts.items()):
                entry = encode_command([Verb.PREPARE, op, *part])
                self.links[shard].send(header, entry, _Answer(self, shard, i))
                asked += 1
        except Exception:  # undone: see _asking_failed
            self._asking_failed(len(parts) - asked, "deciding a write fan-out", self.all_in)
        finally:
            if self.holds is not None:
                self.holds.end()

    def answered(self, shard: int, index: int, body: bytes) -> None:
        message = self._answer(shard, body, wire.PartPrepared)
        if message is None:
            self.failed = True
            if body[:1] == b"-":
                self.values[index] = Error(body[1:-2].decode("latin-1"))
        else:
            self.values[index] = message.value  # type: ignore[attr-defined]
            if not message.prepared:  # type: ignore[attr-defined]
                self.parked.remove(shard)  # it changed nothing and went on
                self.links[shard].ops.pop(self.id, None)
        self.waiting -= 1
        if not self.waiting:
            self._safely("deciding a write fan-out", self.all_in)

    def all_in(self) -> None:
        """Every shard has answered: decide."""
        failures = [v for v in self.values if type(v) is Error]
        if self.broken:  # a bug while sending its entries
            self._decide(False, encode_error(errors.INTERNAL % error_name([self.name])))
        elif failures or self.failed:
            error = failures[0] if failures and not self.failed else Error(errors.OP_ABORTED)
            for failure in failures:
                if _busy(failure):  # a busy script refused it: as Redis, read at the threshold
                    error = failure
                    if self.own_reply:  # a rejected call, as Redis counts it (not MIGRATE's delete)
                        self.client.server.stats.rejected(stat_name([self.name]), failure.message)
                    break
            self._decide(False, encode(error, self.client.resp3))
        elif self.unanimous and any(v != 1 for v in self.values):
            self._decide(False, self._built(self._reply))  # voted no: nothing is set
        elif not self.parked or not self.coordinator.commit_soon(self):
            self._commit(set(self.parked), self._reply)

    def _reply(self) -> bytes:
        return encode(self.merge(self.values), self.client.resp3)

    def _arguments(self) -> list[bytes]:
        return [arg for part in self.parts.values() for arg in part]

    def step(self, shard: int, message: object) -> None:
        log.error("shard %d sent %r to write fan-out %d", shard, message, self.id)


def _first_body(bodies: list[bytes]) -> bytes:
    return bodies[0]


def run_cross_shard(
    client: Client, cmd: Command, args: list[bytes], keys: list[bytes], everything: bool = False
) -> None:
    """A single command whose keys live on several shards (or that may read
    any key, with ``everything``)."""
    # COPY source destination DB n: the destination is database n's.
    others = other_db_keys(cmd.name, args, client.server.config["databases"])
    if others:
        keys = [args[1], *others]  # type: ignore[list-item]
    op = AtomicOp(client, [args], keys, _first_body, everything=everything)
    op.standalone = op.whole_reply = True


def _plain(key: bytes | tuple, db: int) -> bytes | tuple:
    """A key of database ``db`` is named alone, another database's as ``(db, key)``."""
    return key[1] if type(key) is tuple and key[0] == db else key


def run_write_fan_out(
    client: Client,
    parts: dict[int, list[bytes]],
    merge: Callable[[list], object],
    keys: list | None = None,
    slot: Any = None,
    db: int | None = None,
    unanimous: bool = False,
    name: bytes | None = None,
) -> None:
    """A write command split by shard (MSET, DEL...); its reply goes to a
    new slot of the client's, or to ``slot``; in database ``db`` if given;
    ``unanimous``: every part must answer 1, else none is applied (MSETNX);
    ``name``: the client's command, if not the parts' first word."""
    FanOutWrite(client, parts, merge, keys, slot, db, unanimous, name)


def sync_decisions(server: Acceptor) -> None:
    """Once a second (the acceptor's cron): the decisions file's everysec fsync."""
    coordinator = getattr(server, "coordinator", None)
    if coordinator is not None:
        coordinator.sync()
