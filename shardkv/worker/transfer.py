"""Moving keys between shards as plain values.

A key's *state* is ``None`` (no such key) or ``(type tag, plain value,
deadline in ms or None)``, where the plain value is built from ``bytes``,
``int``, ``float``, ``list``, ``dict`` and ``set`` only, so it can cross a
pipe with :mod:`marshal`.  Cross-shard operations, snapshots and
re-sharding all move keys this way.  Each type module registers how to
turn its values into plain ones and back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from shardkv.worker.keyspace import Keyspace, slot_of
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
}
FROM_PLAIN: dict[str, Callable] = {
    "string": lambda v: v,
    "hash": dict,
    "list": deque,
    "set": set,
    "zset": ZSet.from_plain,
}


def export_key(ks: Keyspace, key: bytes) -> State:
    value = ks.lookup(key)
    if value is None:
        return None
    tag, to_plain = TO_PLAIN[type(value)]
    return (tag, to_plain(value), ks.get_expire(key))


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
    of its keys, or a flush (:func:`flush_part`), in the current database."""
    if type(states) is tuple:
        ks.flush(every=bool(states[1]))
        return
    for key, state in states.items():  # type: ignore[union-attr]
        import_key(ks, key, state)


def drop_key(ks: Keyspace, key: bytes) -> None:
    """Forget ``key`` without counting it as a change (it lives elsewhere)."""
    slot = slot_of(key)
    if ks.data[slot].pop(key, None) is not None:
        if ks.expires[slot].pop(key, None) is not None:
            ks.nvolatile -= 1
