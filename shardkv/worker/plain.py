"""The per-name entry of a plain command: everything ``Shard.run_batch``
needs to run it, found with one lookup.

A *plain* command is a single-key data command (the command table's
``single_key``: GET, SET, INCR, HSET, LPUSH...) sent in database 0, alone
(no part of a fan-out, no token, no park): most of what a pipelined batch
holds.  For it :meth:`Shard.execute` would look up, by name, the handler,
the commandstats row and (for a write) the AOF's kind of record, and test
a dozen things that cannot apply.  :class:`Plain` holds the three answers,
looked up once per name as the client spelled it; ``run_batch`` runs the
handler itself, counts it in the row, and logs it, and hands every other
entry to :meth:`Shard.execute` as before.

What may not take this path: a command with no such entry (not
single-key, a container, a blocking command, a script's call, an internal
verb), and any command while something the entry does not cover is on for
the batch (maxmemory, keyspace events, -MISCONF, a script's counters):
:meth:`Shard.plain_table` says so once per batch, and again after any
entry that took the other path.

*Inline* commands: the commonest plain commands (GET, SET key value,
INCR, DECR) are run by ``run_batch`` itself, without a call of their
handler, when the key is in the state their handler's fast case
handles: GET and INCR/DECR of a ``bytes`` string (that INCR/DECR can
add to), with no deadline or one not yet passed, and SET with no
options.  What those handlers (and :meth:`Keyspace.lookup` and
:meth:`Keyspace.store`) do then, ``run_batch`` does: the same store,
access clock, keyspace hit and WATCH version.  Anything else (a missing
key, another type, a passed deadline, a string changed in place, an
error) goes to the handler, which sees the key as it was: the inline
path changes nothing before it knows it applies.
"""

from __future__ import annotations

from shardkv.protocol import commands
from shardkv.runtime.cmdstats import Stats
from shardkv.worker.handlers import BLOCKING, Handler, find
from shardkv.worker.persistence import aof

# Plain.inline: how run_batch runs the command itself (see above); 0: its handler.
GET = 1
SET = 2
INCR = 3  # INCR and DECR: Plain.step is +1 or -1
INLINE = {b"get": (GET, 0), b"set": (SET, 0), b"incr": (INCR, 1), b"decr": (INCR, -1)}

# Names as sent, past which a shard keeps no more entries (a client that
# spells commands in ever new cases gets the other path, as by_bytes does).
MAX_NAMES = 4096


class Plain:
    """One plain command, by its name as sent: its ``handler`` (and whether
    it ``reads`` or ``writes``, as the command table says), its
    commandstats ``row`` and that row's pending ``times`` (see
    :class:`~shardkv.runtime.cmdstats.Stats`), and whether it ``logs``:
    a write, which :meth:`Persistence.record` counts in ``dirty`` and
    logs to the AOF (for a read it would return at once); ``inline``
    (and ``step``), how ``run_batch`` runs it itself (see above)."""

    __slots__ = ("handler", "reads", "writes", "row", "times", "logs", "inline", "step")

    def __init__(self, handler: Handler, row: list, logs: bool, inline: int = 0, step: int = 0) -> None:
        self.handler = handler
        self.reads: bool = handler.reads  # type: ignore[attr-defined]
        self.writes: bool = handler.writes  # type: ignore[attr-defined]
        self.row = row
        self.times: list[int] = row[5]
        self.logs = logs
        self.inline = inline
        self.step = step


def entry(name: bytes, stats: Stats, persisting: bool) -> Plain | None:
    """The entry of the command called ``name`` (as sent), or None when it
    must take :meth:`Shard.execute`'s path.  ``persisting``: the shard has
    a persistence (its writes are counted and may be logged)."""
    cmd = commands.lookup(name)
    if cmd is None or not cmd.single_key or cmd.container or cmd.route != "shard":
        return None
    handler = find(name)
    if handler is None or name in BLOCKING or name.lower() in BLOCKING:
        return None
    row = stats.by_bytes.get(name) or stats.row_of([name])
    if type(row[5]) is not list:  # a row the acceptor counts (see Stats.row_of)
        return None
    inline, step = INLINE.get(name.lower(), (0, 0))
    return Plain(handler, row, persisting and aof.classify(name) is not aof.READ, inline, step)
