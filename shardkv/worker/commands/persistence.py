"""The persistence commands' parts in a shard: SAVE, BGSAVE, BGREWRITEAOF,
and the acceptor's ``__lastsave``, ``__persistence`` and ``__shutdown``
(see :mod:`shardkv.acceptor.durability`); and ``__state``, which only an
AOF holds.  The work is the shard's
:class:`~shardkv.worker.persistence.engine.Persistence` (``ks.persistence``).
"""

from __future__ import annotations

import marshal

from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK
from shardkv.protocol.wire import Verb
from shardkv.runtime import faultpoints
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.persistence.engine import Persistence
from shardkv.worker.transfer import import_key


def _of(ks: Keyspace) -> Persistence:
    p = ks.persistence
    if p is None:
        raise CommandError("ERR persistence is not configured in this shard")
    return p


def save_command(ks: Keyspace, args: list[bytes]) -> object:
    """SAVE"""
    _of(ks).save(command=True)
    return OK


def bgsave_command(ks: Keyspace, args: list[bytes]) -> object:
    """BGSAVE [SCHEDULE]"""
    schedule = False
    if len(args) == 2 and args[1].upper() == b"SCHEDULE":
        schedule = True
    elif len(args) > 1:
        raise CommandError("ERR syntax error")
    return _of(ks).bgsave(schedule, _in_exec(ks))


def bgrewriteaof_command(ks: Keyspace, args: list[bytes]) -> object:
    """BGREWRITEAOF"""
    return _of(ks).bgrewriteaof(_in_exec(ks))


def _in_exec(ks: Keyspace) -> bool:
    """Whether the command is one of an EXEC's, routed one by one: between
    its ``__defer`` and ``__serve`` (see shardkv.acceptor.transactions)."""
    waiters = ks.waiters
    return waiters is not None and bool(waiters.deferred)


def schedule_command(ks: Keyspace, args: list[bytes]) -> object:
    """__schedule save|rewrite: an EXEC's BGSAVE or BGREWRITEAOF, scheduled here too."""
    _of(ks).schedule(args[1])
    return OK


def lastsave_command(ks: Keyspace, args: list[bytes]) -> object:
    """__lastsave -> this shard's last successful save, in Unix seconds."""
    return _of(ks).lastsave


def persistence_command(ks: Keyspace, args: list[bytes]) -> object:
    """__persistence -> this shard's INFO persistence figures."""
    p = ks.persistence
    return {} if p is None else p.info()


def shutdown_command(ks: Keyspace, args: list[bytes]) -> object:
    """__shutdown save|nosave|force|default|abort -> OK once the shard's data is safe.

    ``force`` (SHUTDOWN FORCE, after a shard could not): NOSAVE, even while
    the first AOF base is being written (see Persistence.shutdown).

    After OK the shard runs nothing more (see Shard.run_batch); ``abort``
    opens it again, when another shard could not save (``abort failed``)
    or the stop was aborted.
    """
    p = _of(ks)
    mode = args[1].decode("latin-1").lower() if len(args) > 1 else "default"
    if mode == "abort":
        p.reopen(failed=args[2:] == [b"failed"])
        return OK
    faultpoints.hold("shutdown", p.index)  # the tests of a frozen worker's stop only
    try:
        p.shutdown(mode)
    except CommandError:
        raise CommandError("ERR Errors trying to SHUTDOWN. Check logs.") from None
    return OK


def state_command(ks: Keyspace, args: list[bytes]) -> object:
    """__state key payload: make ``key`` hold a marshalled state (replay only)."""
    import_key(ks, args[1], marshal.loads(args[2]))
    return "OK"


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "save": save_command,
    "bgsave": bgsave_command,
    "bgrewriteaof": bgrewriteaof_command,
    Verb.LASTSAVE: lastsave_command,
    Verb.SCHEDULE: schedule_command,
    Verb.PERSISTENCE: persistence_command,
    Verb.SHUTDOWN: shutdown_command,
    Verb.STATE: state_command,
}
