"""What other clients sent to a shard before its script went busy gets
``-BUSY``, as in Redis.

Redis runs nothing else while a script runs.  Once the script is past
busy-reply-threshold, its ``processEventsWhileBlocked`` reads what the
clients have sent meanwhile, and ``processCommand`` answers every command
``-BUSY`` but the allow-busy ones (``CMD_ALLOW_BUSY``); the script's own
client is not read.  Here the acceptors learn of a busy script from its
worker's busy report (an ``S`` frame on every pipe) and refuse what they
would send afterwards themselves (``Dispatch._execute``).  What they had
sent before is on the worker's pipes, in its backlogs, or after the script
in its batch, and would run after the script.  So each acceptor answers the
first report with a ``K`` frame that names, by their place, the commands
it had sent and not had answered that the worker may refuse: a client's
command standing alone (not a part of an EXEC, a fan-out or a cross-shard
operation), the park of a cross-shard script's first run or of a
client's single command across shards (RENAME, SMOVE...), or the part of
a write across shards (MSET, DEL, FLUSHALL...), of another client than
the script's (see
``ShardLink._offer_refusals``; every other entry keeps its order and its
meaning).

:class:`Refusals` reads each pipe's ``K`` frame, from the count hook while
the script runs (so the clients get their ``-BUSY`` about when Redis's
would) and when it ends, waiting a little (:data:`_WAIT`) for the frames not
come yet: no entry that follows the script runs before its pipe's ``K``
frame is read, or before the worker stopped waiting for it.  An acceptor
that misses that (stopped, or wedged) has its entries run after the
script, as they came, and the worker never answers its late ``K`` frame
(each ``K`` frame names its script's epoch, from the busy report: the
worker drops one of an earlier script wherever it reads it, and the
acceptor forgets its candidates when it reads the script's end), so
nothing runs twice and nothing is refused that ran.  Of the
candidates it refuses those Redis refuses while busy (a command, not an
internal verb, without allow-busy flag): each counts as a rejected call
with the ``-BUSY`` error (a read's part across shards: by its acceptor,
once for the command) and becomes a ``__ping`` in its batch, whose reply
the acceptor drops; a ``K`` frame back says which, and the acceptor answers
them ``-BUSY`` at once.  The frames read meanwhile go to the pipe's
backlog, in order (``I`` frames answered and ``T`` frames refused at once,
as wherever a shard waits).

Several acceptors: when another acceptor's cross-shard operation's script
goes busy, an acceptor offers every other shard what it sent there (it
may be parked for that operation, reading only the other acceptor's
pipe) in a ``K`` frame of a tail epoch (:data:`wire.BEHIND_TAIL_EVAL`),
its places counted back from the frame: the acceptor cannot tell which
of its entries the worker ran.  The worker refuses them wherever it reads
that frame while it waits (:meth:`Refusals.offer_behind`, from
``Pipe.take_others`` or a park), and a free worker, which ran them all,
answers none.
"""

from __future__ import annotations

import logging
import select
import time
from typing import TYPE_CHECKING

from shardkv.protocol import commands, errors, wire
from shardkv.protocol.wire import Verb
from shardkv.runtime.cmdstats import called_name, stat_name

if TYPE_CHECKING:
    from shardkv.worker.loop import Pipe, Pipes
    from shardkv.worker.shard import Shard

log = logging.getLogger("shardkv.worker")

# What a refused entry becomes: a command that changes nothing.
_PLACEHOLDER = [Verb.PING]
# Parts of something larger, and scripts whose MONITOR lines are awaited
# (an ``M`` frame each): never refused, but a read's part (see _refuse).
_NOT_ALONE = wire.FLAG_PART | wire.FLAG_PARK | wire.FLAG_MONITOR
# The park of an operation, which the acceptor offers for a cross-shard
# script's first run only, and a client's write fan-out's part
# (``_Answer.refusable_while_busy``).
_PARKS = frozenset((Verb.PARK, Verb.PARKDB, Verb.PARK_AT, Verb.PREPARE))
# Seconds the first busy report, and the script's end, wait for the K
# frames: the acceptors answer at once, unless stopped or wedged.
_WAIT = 0.05


class Refusals:
    """The ``K`` frames due on a worker's pipes for its busy script."""

    def __init__(self, shard: Shard, pipes: Pipes) -> None:
        self.shard = shard
        self.pipes = pipes
        # pipe index -> the entries after the script in its batch, on the
        # script's pipe ((items, first place)), or None: none to look at.
        self.due: dict[int, tuple[list, int] | None] = {}
        self.message = errors.BUSY
        # The busy scripts so far: the current one's number, in its busy
        # report and in the K frames about it (see next_epoch).
        self.epoch = 0

    def next_epoch(self) -> int:
        """A script goes busy: its number, for its busy report."""
        self.epoch += 1
        return self.epoch

    def begin(self, sent: list[int], eval_mode: bool) -> None:
        """The script's first busy report went to the pipes ``sent``."""
        shard = self.shard
        current = shard.keyspace.pipe
        rest = None
        ahead = shard.replies_ahead()
        if ahead >= 0 or ahead == wire.SCRIPT_PARKED:
            # (parked: a cross-shard operation's script; what follows the
            # park's entry in its batch waits for the operation's end)
            rest = self._rest()
        self.due = {index: (rest if index == current else None) for index in sent}
        self.message = errors.BUSY if eval_mode else errors.BUSY_FUNCTION
        # The acceptors answer at once: wait a little for them, as Redis
        # serves its clients at the threshold, rather than until the hook's
        # next turn (maybe long in a script that calls commands).
        self._wait(time.monotonic() + _WAIT)

    def _rest(self) -> tuple[list, int] | None:
        """The entries of the running batch after the one that runs (or
        parked the shard): ``(items, first place)``."""
        batch = self.shard.batch
        if batch is None:
            return None
        items, entries = batch
        return items, len(items) - entries.__length_hint__()

    def parked_offer(self, payload: bytes) -> bool:
        """A ``K`` frame read while parked: if it is the acceptor's offer
        of what waits behind the park of an operation whose script went
        busy on another shard (:data:`wire.PARKED_BEHIND_EVAL`), or of what
        another acceptor's such script holds up (:data:`wire.BEHIND_TAIL_EVAL`),
        refuse those of its candidates Redis refuses, and say which (True);
        otherwise False (the frame is not for this)."""
        try:
            epoch = wire.decode_refusals(payload)[0]
        except wire.BadMessage:
            return False
        if epoch not in (wire.PARKED_BEHIND_EVAL, wire.PARKED_BEHIND_FUNCTION, *wire.TAIL_EPOCHS):
            return False
        pipe = self.pipes.pipes[self.shard.keyspace.pipe]
        if pipe is not None:
            self.offer_behind(pipe, payload)
        return True

    def offer_behind(self, pipe: Pipe, payload: bytes, upto: int | None = None) -> None:
        """Pipe ``pipe``'s ``K`` frame ``payload`` of epoch
        :data:`wire.PARKED_BEHIND_EVAL` (or ``_FUNCTION``), or of a tail
        epoch (:data:`wire.TAIL_EPOCHS`): read now, before what follows it
        on the pipe ran, wherever the shard waits (parked, held by another
        acceptor, its own script busy); refuse what it offers of the
        entries the shard has not run (those of the running batch after its
        entry, if the pipe's, then those of the pipe's backlog, or of
        ``pipe.backlog[:upto]`` for a frame found there: its places count
        back from it, not from what came after it), and say which."""
        try:
            epoch, offered = wire.decode_refusals(payload)
        except wire.BadMessage as e:
            log.error("shard %d: %s", self.shard.index, e)
            return
        rest = self._rest() if pipe.index == self.shard.keyspace.pipe else None
        message = self.message
        self.message = errors.BUSY_FUNCTION if epoch in wire.FUNCTION_EPOCHS else errors.BUSY
        try:
            if upto is None:
                upto = len(pipe.backlog)
            self._refuse_offered(pipe, rest, offered, upto, epoch, epoch in wire.TAIL_EPOCHS)
        finally:
            self.message = message

    def poll(self) -> None:
        """Take the ``K`` frames already come, without waiting."""
        for index in list(self.due):
            pipe = self.pipes.pipes[index]
            if pipe is None or pipe.broken:
                self.due.pop(index)
                continue
            self._read(index, pipe, wait=False)

    def finish(self) -> None:
        """The script ends: take every ``K`` frame still due, waiting for
        them up to :data:`_WAIT`; then wait no more for the others (their
        acceptors stopped or wedged): their entries run after the script,
        and their ``K`` frames, when they come, are dropped (see
        :meth:`_read`; their acceptors hear nothing back, and forget them
        at the script's end)."""
        self._wait(time.monotonic() + _WAIT)
        if self.due:
            log.warning(
                "shard %d: no answer to the busy report from pipe(s) %s in time: what they sent runs after the script",
                self.shard.index,
                sorted(self.due),
            )
            self.due.clear()

    def _wait(self, until: float) -> None:
        """Take the ``K`` frames due, waiting for them until
        ``time.monotonic()`` reaches ``until``."""
        while self.due:
            self.poll()
            if not self.due:
                break
            wait = until - time.monotonic()
            if wait <= 0:
                break
            pipes = self.pipes
            for pipe in pipes.pipes:  # the others: their I frames answered meanwhile
                if pipe is not None and pipe.index not in self.due and not pipe.broken:
                    pipe.take_others()
            socks = [pipes.pipes[i].reader.sock for i in self.due]  # type: ignore[union-attr]
            select.select(socks, [], [], wait)

    def _read(self, index: int, pipe: Pipe, wait: bool) -> None:
        """Pipe ``index``'s ``K`` frame if it has come (in its backlog, or
        on the pipe: what comes before it goes to the backlog)."""
        backlog = pipe.backlog
        k = 0
        while k < len(backlog):
            payload = backlog[k]
            if payload[0] == wire.REFUSALS:
                del backlog[k]
                if _tail(payload):
                    self.offer_behind(pipe, payload, k)  # (what came after it is not its)
                    continue
                if self._current(payload):
                    self._answer(index, pipe, payload, k)
                    return
                continue
            k += 1
        reader = pipe.reader
        try:
            while reader.poll(0):
                payload = reader.pop()
                kind = payload[0]
                if kind == wire.REFUSALS:
                    if _tail(payload):
                        self.offer_behind(pipe, payload)
                        continue
                    if self._current(payload):
                        self._answer(index, pipe, payload, len(backlog))
                        return
                if kind == wire.INQUIRY:
                    pipe.answer(payload)
                elif kind == wire.TRY_HOLD:  # the shard is not free
                    pipe.send_state(wire.TRY_REFUSED)
                else:
                    backlog.append(payload)
        except (EOFError, OSError):
            pipe.broken = True
            self.due.pop(index, None)

    def _current(self, payload: bytes) -> bool:
        """Is this ``K`` frame the answer to the busy script's report (not
        to an earlier script's, which came after its end: dropped)?  A
        frame that cannot be read counts as the answer, with no candidates."""
        try:
            return wire.decode_refusals(payload)[0] == self.epoch
        except wire.BadMessage:
            return True

    def _answer(self, index: int, pipe: Pipe, payload: bytes, upto: int) -> None:
        """Pipe ``index``'s ``K`` frame, read after ``pipe.backlog[:upto]``:
        refuse the candidates it names, and say which."""
        rest = self.due.pop(index)
        try:
            offered = wire.decode_refusals(payload)[1]
        except wire.BadMessage as e:
            log.error("shard %d: %s", self.shard.index, e)
            offered = []
        self._refuse_offered(pipe, rest, offered, upto, self.epoch)

    def _refuse_offered(
        self,
        pipe: Pipe,
        rest: tuple[list, int] | None,
        offered: list[int],
        upto: int,
        epoch: int,
        from_end: bool = False,
    ) -> None:
        """Refuse the candidates ``offered`` (places among ``rest``, the
        batch's entries after the script's, then the batches of
        ``pipe.backlog[:upto]``; ``from_end``: counted back from the last of
        them, the places beyond the first having run) that Redis refuses
        while busy, and tell the acceptor which (a ``K`` frame of ``epoch``)."""
        if from_end:
            total = (len(rest[0]) - rest[1]) // 2 if rest is not None else 0
            for k in range(upto):
                frame = pipe.backlog[k]
                if frame[0] == wire.BATCH:
                    total += len(wire.decode_batch(frame)) // 2
            offered = [total - 1 - place if place < total else -1 for place in offered]
        wanted = {place: n for n, place in enumerate(offered) if place >= 0}
        refused: list[int] = []
        place = 0
        if rest is not None:
            items, start = rest
            for j in range(start, len(items), 2):
                n = wanted.get(place)
                if n is not None and self._refuse(items[j], items[j + 1]):
                    items[j], items[j + 1] = 0, list(_PLACEHOLDER)
                    refused.append(n)
                place += 1
        backlog = pipe.backlog
        for k in range(upto):
            frame = backlog[k]
            if frame[0] != wire.BATCH:
                continue
            entries = wire.decode_batch(frame)
            changed = False
            for j in range(0, len(entries), 2):
                n = wanted.get(place)
                if n is not None and self._refuse(entries[j], entries[j + 1]):
                    entries[j], entries[j + 1] = 0, list(_PLACEHOLDER)
                    refused.append(n)
                    changed = True
                place += 1
            if changed:
                backlog[k] = wire.encode_batch(entries)
        try:
            pipe.send_state(wire.encode_refusals(epoch, refused))
        except OSError:
            pipe.broken = True

    def _refuse(self, header: int, args: list) -> bool:
        """Does Redis refuse this entry while a script is busy?  If so it is
        counted now, as Redis's ``rejectCommand`` counts it (a read's part
        across shards by its acceptor, once for the command)."""
        if header < 0:  # slotted (wire.SLOTTED): a plain entry, none of the flags below
            header = 0
        if header & wire.FLAG_PARK and type(args) is list and args and args[0] in _PARKS:
            # Offered only for a cross-shard script's first run, or a
            # client's write fan-out: Redis refuses its EVAL (MSET...),
            # which its acceptor counts (a rejected call).
            return True
        if wire.header_token(header) or type(args) is not list or not args:
            return False
        name = args[0]
        if type(name) is not bytes or name[:2] == b"__":
            return False
        # A part (FLAG_PART) is offered only for a client's read across
        # shards (MGET, EXISTS...: fanout.Part.busy_slot); never a write's.
        if header & _NOT_ALONE and (header & _NOT_ALONE != wire.FLAG_PART):
            return False
        cmd = commands.lookup(name)
        if cmd is None or commands.allowed_while_busy(cmd.name, args):
            return False
        if header & wire.FLAG_PART:
            # (a read's part: its acceptor counts the command once, however
            # many of its parts the shards refuse; see fanout.Part.refuse_busy)
            return not cmd.is_write
        counted = stat_name(args)
        if header & wire.FLAG_AS_CALLED:
            counted = called_name(counted, header & wire.FLAG_AS_CALLED)
        self.shard.stats.rejected(counted, self.message)
        return True


def _tail(payload: bytes) -> bool:
    """Is this ``K`` frame an offer of a tail epoch (see :data:`wire.TAIL_EPOCHS`)?"""
    return wire.decode_refusals_epoch(payload) in wire.TAIL_EPOCHS
