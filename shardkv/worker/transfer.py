"""Moving keys between shards as plain values.

A key's *state* is ``None`` (no such key) or ``(type tag, plain value,
deadline in ms or None)``, where the plain value is built from ``bytes``,
``int``, ``float``, ``list``, ``dict`` and ``set`` only, so it can cross a
pipe with :mod:`marshal`.  Cross-shard operations, snapshots and
re-sharding all move keys this way.  :data:`TO_PLAIN` and :data:`FROM_PLAIN`
say how each type's values turn into plain ones and back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from shardkv.worker.keyspace import Keyspace, slot_of
from shardkv.worker.stream import Stream
from shardkv.worker.zset import ZSet

State = tuple | None

# Python type -> (tag, to_plain); tag -> from_plain.
TO_PLAIN: dict[type, tuple[str, Callable]] = {
    bytes: ("string", lambda v: v),
    bytearray: ("string", bytes),
    dict: ("hash", dict),
    deque: ("list", list),
    set: ("set", set),
    ZSet: ("zset", ZSet.to_plain),
    Stream: ("stream", Stream.to_plain),
}
FROM_PLAIN: dict[str, Callable] = {
    "string": lambda v: v,
    "hash": dict,
    "list": deque,
    "set": set,
    "zset": ZSet.from_plain,
    "stream": Stream.from_plain,
}


def export_key(ks: Keyspace, key: bytes) -> State:
    value = ks.peek(key)  # bookkeeping, not an access
    if value is None:
        return None
    tag, to_plain = TO_PLAIN[type(value)]
    return (tag, to_plain(value), ks.get_expire(key))


def written_states(name: str, command: list[bytes], value: object) -> dict[bytes, State] | None:
    """The states a *blind* write that replied ``value`` (not an error)
    leaves on its keys, from its arguments alone: MSET (each key a string
    without a TTL, the last value given for a key repeated) and DEL/UNLINK
    (each key gone) write every key they name whatever it held; MSETNX
    writes them as MSET if it replied 1, and none of them if 0.  None for
    any other command: its keys' states must be exported after it runs.
    (A write fan-out's part, see ``Shard.prepare_part``, so spares the
    second export of every key.)"""
    if name == "mset" or (name == "msetnx" and value == 1):
        return {command[i]: ("string", command[i + 1], None) for i in range(1, len(command) - 1, 2)}
    if name == "del" or name == "unlink":
        return dict.fromkeys(command[1:])
    if name == "msetnx":
        return {}  # a key existed: nothing written
    return None


def import_key(ks: Keyspace, key: bytes, state: State) -> None:
    """Make ``key`` hold ``state``, replacing whatever it held."""
    if state is None:
        ks.delete(key)
        return
    tag, plain, when = state
    ks.store(key, FROM_PLAIN[tag](plain))
    if when is not None:
        ks.set_expire(key, when)


# What a shard prepares for its part of a cross-shard FLUSHALL or FLUSHDB:
# instead of the states of its keys, ``(FLUSH, every)``, applied at the
# commit (and when the AOF replays the commit).
FLUSH = "flush"


def flush_part(every: bool) -> tuple:
    return (FLUSH, int(every))


def apply_states(ks: Keyspace, states: dict | tuple) -> None:
    """Apply what a shard prepared for a cross-shard operation: new states
    of its keys, or a flush (:func:`flush_part`), in the current database
    (a key of another one named ``(database, key)``)."""
    if type(states) is tuple:
        ks.flush(every=bool(states[1]))
        return
    for key, state in states.items():  # type: ignore[union-attr]
        import_qualified(ks, key, state)


def drop_key(ks: Keyspace, key: bytes) -> None:
    """Forget ``key`` without counting it as a change (it lives elsewhere)."""
    slot = slot_of(key)
    if ks.data[slot].pop(key, None) is not None:
        ks.clocks.pop(key, None)
        if ks.expires[slot].pop(key, None) is not None:
            ks.nvolatile -= 1


# -- keys of other databases --------------------------------------------------
#
# A cross-shard operation runs in one database, the client's when it began;
# a key of another database that it reads or writes (a transaction with
# SELECT inside, WATCH in two databases, COPY ... DB, FLUSHALL) is named
# ``(database, key)``.  These run the functions above in the key's database.


def export_qualified(ks: Keyspace, key: bytes | tuple) -> State:
    if type(key) is tuple:
        with ks.selected(key[0]):
            return export_key(ks, key[1])
    return export_key(ks, key)  # type: ignore[arg-type]


def import_qualified(ks: Keyspace, key: bytes | tuple, state: State) -> None:
    if type(key) is tuple:
        with ks.selected(key[0]):
            import_key(ks, key[1], state)
    else:
        import_key(ks, key, state)  # type: ignore[arg-type]


def drop_qualified(ks: Keyspace, key: bytes | tuple) -> None:
    if type(key) is tuple:
        with ks.selected(key[0]):
            drop_key(ks, key[1])
    else:
        drop_key(ks, key)  # type: ignore[arg-type]


# A key's access clock (see access.py) travels beside its state, not in
# it: states are logged (prepare records), clocks are never persisted.


def export_clocks(ks: Keyspace, keys: object) -> dict:
    """The clocks of those of ``keys`` (qualified) that have one."""
    clocks: dict = {}
    for key in keys:  # type: ignore[attr-defined]
        if type(key) is tuple:
            with ks.selected(key[0]):
                clock = ks.clocks.get(key[1])
        else:
            clock = ks.clocks.get(key)
        if clock is not None:
            clocks[key] = clock
    return clocks


def import_clocks(ks: Keyspace, clocks: dict) -> None:
    """Give each key (qualified, just imported) of ``clocks`` its clock
    back: a key moved between shards keeps its LRU/LFU clock, as an
    object that Redis moves (RENAME, SMOVE's key) keeps its own."""
    for key, clock in clocks.items():
        if type(key) is tuple:
            with ks.selected(key[0]):
                if ks.peek(key[1]) is not None:
                    ks.clocks[key[1]] = clock
        elif ks.peek(key) is not None:
            ks.clocks[key] = clock


def qualified_keys(ks: Keyspace, dbs: bool = False) -> list:
    """Every key of the current database; with ``dbs``, also those of every
    other database, as ``(database, key)``."""
    keys: list = list(ks.iter_keys())
    if dbs:
        here = ks.db
        for db in ks.used_dbs():
            if db != here:
                with ks.selected(db):
                    keys += [(db, key) for key in ks.iter_keys()]
    return keys
