"""A WATCH sent while a script is busy sees the script's later writes, as in
Redis.

Redis reads the clients while a script is past busy-reply-threshold
(``processEventsWhileBlocked``, from the script's hook) and runs WATCH, an
allow-busy command, then and there: the script's writes to the key after
that flag the watcher, and its EXEC fails; a write before it does not.
Here a WATCH sent while the acceptor knows of a busy script is a
``__watchb`` (:data:`~shardkv.protocol.wire.Verb.WATCH_BUSY`), queued behind
the script as the acceptor's own message, which would read the versions at
the script's end.  So :meth:`BusyWatches.run_ahead` reads what the pipes
have sent (as :meth:`~shardkv.worker.loop.Pipe.take_others` does: into
their backlogs, in order; the pipe the shard waits on only up to its
first frame that is not a batch, so a ``Decide`` stays where it is
awaited), counts each ``__watchb`` found there as a watcher now and puts a ``__watched`` with the versions it read in its
place, which answers them in the entry's turn.  Its keys are watched from
then on, so :meth:`~shardkv.worker.keyspace.Keyspace.touch` raises their
versions for the script's later writes, in any database (one the script
creates too), and nothing is kept once the script ends.

Where it runs:

* the script's shard (its worker runs it): from the count hook while the
  script is busy, and after each answer the script gets from the
  acceptor (``Engine._ask_acceptor``: what was sent before that answer is
  read before the script goes on);
* the other shards of a script that runs across shards, parked while the
  executor runs it on their keys: when the ``Prepare`` with the script's
  changes comes, before they are applied, from the frames the parked
  shard has read already (:meth:`BusyWatches.on_prepare`: no system call,
  nothing read past the ``Prepare``).  Those changes count then, all
  of them: a key the script wrote before the WATCH also fails the EXEC
  there, where Redis's would run (a spurious abort, never a missed change).

A ``__watchb`` not yet read when the script ends runs in its turn, after
the script, as Redis's WATCH read after the script would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shardkv.protocol import wire
from shardkv.protocol.wire import Verb
from shardkv.worker.commands.server import watch_keys

if TYPE_CHECKING:
    from shardkv.worker.loop import Pipe, Pipes
    from shardkv.worker.shard import Shard


class BusyWatches:
    """Runs ahead the ``__watchb`` entries on a worker's pipes."""

    def __init__(self, shard: Shard, pipes: Pipes) -> None:
        self.shard = shard
        self.pipes = pipes

    def run_ahead(self) -> None:
        """The shard's script is busy: read what every pipe has sent, and
        run each ``__watchb`` there now.  The pipe the shard waits on is
        read only up to its first frame that is not a batch (see
        :meth:`~shardkv.worker.loop.Pipe.take_batches`): a ``Decide`` for
        the operation the script runs in stays where ``Shard.park`` reads it."""
        current = self.pipes.current
        for pipe in self.pipes.pipes:
            if pipe is None or pipe.broken:
                continue
            if pipe is current:
                pipe.take_batches()
            else:
                pipe.take_others()
            if pipe.backlog:
                self._run(pipe)

    def on_prepare(self) -> None:
        """A parked shard got a ``Prepare`` (a script's changes, maybe a busy
        one's): run the ``__watchb`` entries already read, with no system
        call (every Prepare pays this).  The coordinator's pipe is not read
        further: what it sent after the ``Prepare`` (its ``Decide``, maybe
        right behind it) was sent once the script had ended.  A ``__watchb``
        another pipe sent while the shard waited is in that pipe's backlog
        already (the wait reads every pipe as it becomes readable), or on
        its reader, taken without a system call here."""
        current = self.pipes.current
        for pipe in self.pipes.pipes:
            if pipe is None or pipe.broken:
                continue
            if pipe is not current:
                pipe.take_others(reads=0)
            if pipe.backlog:
                self._run(pipe)

    def _run(self, pipe: Pipe) -> None:
        """Run each ``__watchb`` of ``pipe``'s backlog now."""
        ks = self.shard.keyspace
        backlog = pipe.backlog
        for k, frame in enumerate(backlog):
            if frame[0] != wire.BATCH or Verb.WATCH_BUSY not in frame:
                continue
            entries = wire.decode_batch(frame)
            changed = False
            for j in range(0, len(entries), 2):
                args = entries[j + 1]
                if type(args) is not list or not args or args[0] != Verb.WATCH_BUSY:
                    continue
                # Not peeked: an expired key is not removed in the
                # middle of a script (its effects are undone as a whole).
                with ks.selected(wire.header_db(entries[j])):
                    versions = watch_keys(ks, pipe.index, args[1:])
                entries[j + 1] = [Verb.WATCHED, *(b"%d" % v for v in versions)]
                changed = True
            if changed:
                backlog[k] = wire.encode_batch(entries)
