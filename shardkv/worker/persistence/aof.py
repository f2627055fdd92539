"""The append-only file: its format, and what a shard logs for each write.

The file is written by :mod:`~shardkv.worker.persistence.aofwriter` and read
back by :mod:`~shardkv.worker.persistence.aofreader`.

Format
------
Each record is one command as a RESP array of bulk strings, exactly as in
Redis's AOF (``*3\\r\\n$3\\r\\nSET\\r\\n$1\\r\\nk\\r\\n$1\\r\\nv\\r\\n``).  Records
that must apply together (the re-creation of a container, the results of
a cross-shard operation) are wrapped in ``MULTI`` ... ``EXEC``; on load, a
``MULTI`` with no ``EXEC`` at the end of the file is a torn write.

What is logged
--------------
The log holds what the shard *did*, so that replaying it in order, on the
state the log started from, gives the same state:

* A write command that is deterministic and needs no clock is logged as
  it was sent (``verbatim``): DEL, SETNX, APPEND, INCR, MSET, HSET, LPUSH,
  SADD, ZADD, RENAME, COPY, FLUSHALL...  Replay runs it through the same
  handler, on the same state, with the same result.
* A command whose effect depends on the clock or on chance is logged as
  its effect, by its recorder in :data:`RECORDERS`:

  ==================================  ========================================
  command                             logged as
  ==================================  ========================================
  SET ... EX/PX, SETEX, PSETEX         ``SET key value PXAT <ms>``
  EXPIRE, PEXPIRE, EXPIREAT, GETEX...  ``PEXPIREAT key <ms>``, ``PERSIST`` or
                                       ``DEL`` (whatever the key ended as)
  INCRBYFLOAT                          ``SET key result KEEPTTL``
  HINCRBYFLOAT                         ``HSET key field result``
  SPOP                                 ``SREM key member...`` (those removed)
  BLPOP/BRPOP/BLMPOP, BLMOVE...        ``LPOP``/``RPOP``/``LMOVE`` as served
  BZPOPMIN/BZPOPMAX/BZMPOP             ``ZREM key member...`` (those removed)
  RESTORE                              the key's resulting state
  ==================================  ========================================

  A key's *state* is logged as ``DEL`` when it is gone, and otherwise as
  commands that re-create it from nothing: ``SET`` (with ``PXAT``) for a
  string; ``DEL`` then ``HSET``/``RPUSH``/``SADD``/``ZADD`` in chunks, then
  ``PEXPIREAT``, for a container.
* ``SELECT <db>`` precedes the records of a database other than the one
  the file is in, as in Redis; a file starts in database 0.
* A key that expires (lazily or by the active cycle) is logged as ``DEL``,
  as Redis propagates expiries, so a later command that re-creates the key
  replays on the same (missing) key.
* Replay never expires anything (as Redis does not while loading): every
  deadline in the log is absolute, and a key whose deadline has passed is
  removed once loading is done.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable

from shardkv.protocol import commands
from shardkv.protocol.wire import Verb
from shardkv.worker.commands import hyperloglog, streams
from shardkv.worker.functions import function_records
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.transfer import State, export_key

Record = list  # a command's arguments, name first, all bytes
Recorder = Callable[[Keyspace, list, object], list]

CHUNK = 1024  # items per command when a container is re-created
MULTI = b"*1\r\n$5\r\nMULTI\r\n"
EXEC = b"*1\r\n$4\r\nEXEC\r\n"


_FORMATS = {n: b"*%d\r\n" % n + b"$%d\r\n%s\r\n" * n for n in range(1, 33)}


def select_record(db: int) -> bytes:
    return b"*2\r\n$6\r\nSELECT\r\n$%d\r\n%d\r\n" % (len(b"%d" % db), db)


def encode(args: list[bytes]) -> bytes:
    """One record: a RESP array of bulk strings."""
    fmt = _FORMATS.get(len(args))
    if fmt is None:
        return b"*%d\r\n" % len(args) + b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in args])
    parts: list[int | bytes] = []
    append = parts.append
    for a in args:
        append(len(a))
        append(a)
    return fmt % tuple(parts)  # one formatting for the whole record


# -- states as commands -------------------------------------------------------


def _score(value: float) -> bytes:
    return repr(float(value)).encode()


def _zset_pairs(plain: object) -> list[tuple[bytes, float]]:
    if isinstance(plain, dict):
        return list(plain.items())
    return [(m, s) for m, s in plain]  # type: ignore[attr-defined]


def state_records(key: bytes, state: State) -> list[Record]:
    """Commands that make ``key`` hold ``state``, whatever it held before."""
    if state is None:
        return [[b"DEL", key]]
    tag, plain, when = state
    if tag == "string":
        if when is None:
            return [[b"SET", key, plain]]
        return [[b"SET", key, plain, b"PXAT", b"%d" % when]]
    out: list[Record] = [[b"DEL", key]]
    if tag == "hash":
        items = [x for field, value in plain.items() for x in (field, value)]
        out += [[b"HSET", key, *items[i : i + 2 * CHUNK]] for i in range(0, len(items), 2 * CHUNK)]
    elif tag == "list":
        items = list(plain)
        out += [[b"RPUSH", key, *items[i : i + CHUNK]] for i in range(0, len(items), CHUNK)]
    elif tag == "set":
        items = list(plain)
        out += [[b"SADD", key, *items[i : i + CHUNK]] for i in range(0, len(items), CHUNK)]
    elif tag == "zset":
        items = [x for member, score in _zset_pairs(plain) for x in (_score(score), member)]
        out += [[b"ZADD", key, *items[i : i + 2 * CHUNK]] for i in range(0, len(items), 2 * CHUNK)]
    else:  # a type with no Redis command to re-create it: our own record
        return [[Verb.STATE, key, marshal.dumps(state)]]
    if when is not None:
        out.append([b"PEXPIREAT", key, b"%d" % when])
    return out


def key_records(ks: Keyspace, key: bytes) -> list[Record]:
    return state_records(key, export_key(ks, key))


# -- recorders: commands logged as their effect --------------------------------


def _keys_state(ks: Keyspace, args: list, reply: object) -> list[Record]:
    """The resulting state of every key the command names."""
    cmd = commands.lookup(args[0])
    out: list[Record] = []
    for key in dict.fromkeys(cmd.keys(args) if cmd is not None else []):
        out += key_records(ks, key)
    return out


def _key_ttl(ks: Keyspace, key: bytes) -> list[Record]:
    if ks.peek(key) is None:
        return [[b"DEL", key]]
    when = ks.get_expire(key)
    if when is None:
        return [[b"PERSIST", key]]
    return [[b"PEXPIREAT", key, b"%d" % when]]


def _record_set(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if len(args) == 3:
        return [args]
    opts = {a.upper() for a in args[3:]}
    if reply is None and b"GET" not in opts:
        return []  # NX or XX said no: nothing changed
    if b"EX" in opts or b"PX" in opts:
        return key_records(ks, args[1])
    return [args]


def _record_expire(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if reply == 0:
        return []
    return _key_ttl(ks, args[1])


def _record_getex(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if reply is None or len(args) == 2:
        return []
    return _key_ttl(ks, args[1])


def _record_incrbyfloat(ks: Keyspace, args: list, reply: object) -> list[Record]:
    return [[b"SET", args[1], reply, b"KEEPTTL"]]


def _record_hincrbyfloat(ks: Keyspace, args: list, reply: object) -> list[Record]:
    return [[b"HSET", args[1], args[2], reply]]


def _record_spop(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if reply is None:
        return []
    members = [reply] if type(reply) is bytes else list(reply)  # type: ignore[call-overload]
    return [[b"SREM", args[1], *members]] if members else []


def _served(reply: object) -> bool:
    return isinstance(reply, (list, tuple)) and len(reply) >= 2 and type(reply[0]) is bytes


def _pop_as(name: bytes) -> Recorder:
    """BLPOP/BRPOP: served from one key, logged as LPOP/RPOP of that key."""

    def record(ks: Keyspace, args: list, reply: object) -> list[Record]:
        if not _served(reply):
            return [] if reply is None else _keys_state(ks, args, reply)
        return [[name, reply[0]]]  # type: ignore[index]

    return record


def _record_blmove(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if type(reply) is not bytes:
        return [] if reply is None else _keys_state(ks, args, reply)
    if args[0].lower() == b"brpoplpush":
        return [[b"RPOPLPUSH", args[1], args[2]]]
    return [[b"LMOVE", *args[1:5]]]


def _record_blmpop(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if not _served(reply) or not isinstance(reply[1], (list, tuple)):  # type: ignore[index]
        return [] if reply is None else _keys_state(ks, args, reply)
    left = any(a.upper() == b"LEFT" for a in args[3:])
    return [[b"LPOP" if left else b"RPOP", reply[0], b"%d" % len(reply[1])]]  # type: ignore[index]


def _record_zpop_blocking(ks: Keyspace, args: list, reply: object) -> list[Record]:
    if reply is None:
        return []
    if _served(reply):
        key, rest = reply[0], reply[1:]  # type: ignore[index]
        if len(rest) == 2 and type(rest[0]) is bytes:  # BZPOPMIN: key, member, score
            return [[b"ZREM", key, rest[0]]]
        if len(rest) == 1:  # BZMPOP: key, [[member, score]...] or {member: score}
            items = rest[0]
            members = list(items) if isinstance(items, dict) else [p[0] for p in items]
            return [[b"ZREM", key, *members]] if members else []
    return _keys_state(ks, args, reply)


RECORDERS: dict[str, Recorder] = {
    "set": _record_set,
    "setex": _keys_state,
    "psetex": _keys_state,
    "getex": _record_getex,
    "expire": _record_expire,
    "pexpire": _record_expire,
    "expireat": _record_expire,
    "pexpireat": _record_expire,
    "incrbyfloat": _record_incrbyfloat,
    "hincrbyfloat": _record_hincrbyfloat,
    "spop": _record_spop,
    "restore": _keys_state,
    "restore-asking": _keys_state,
    "blpop": _pop_as(b"LPOP"),
    "brpop": _pop_as(b"RPOP"),
    "blmove": _record_blmove,
    "brpoplpush": _record_blmove,
    "blmpop": _record_blmpop,
    "bzpopmin": _record_zpop_blocking,
    "bzpopmax": _record_zpop_blocking,
    "bzmpop": _record_zpop_blocking,
    # The commands' own, where their type keeps what to log.
    **hyperloglog.RECORDERS,
    **streams.RECORDERS,
}

READ = 0  # not a write: nothing to log
VERBATIM = 1  # logged as sent


def classify(name: bytes) -> int | Recorder:
    """READ, VERBATIM, or the recorder of the command called ``name``."""
    if name == Verb.FUNCTION:  # FUNCTION's changes, logged as Redis logs them
        return function_records
    cmd = commands.lookup(name)
    if cmd is None or (not cmd.is_write and cmd.name not in RECORDERS):
        return READ  # (a read-only command with a recorder may write: PFCOUNT's cache)
    return RECORDERS.get(cmd.name, VERBATIM)
