"""Hash commands.

A hash is a ``dict`` of field to value, both bytes.  A Python dict keeps
insertion order, and an update keeps a field's place, which is exactly the
order of Redis's listpack encoding, so small hashes list their fields in
the same order as Redis.  (Redis switches to a hash table past 128 fields,
and its order is then arbitrary; so is ours, as far as clients know.)
"""

from __future__ import annotations

import random
from fractions import Fraction

from shardkv.protocol import errors
from shardkv.protocol.args import (
    LLONG_MAX,
    LLONG_MIN,
    add_long_double,
    format_long_double,
    parse_count,
    parse_cursor,
    parse_int,
    parse_long_double,
    parse_scan_options,
)
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import (
    BIG_ARRAY,
    OK,
    PairChoices,
    Pairs,
    encode_bulk_choices,
    least_reply,
    strict_int,
)
from shardkv.runtime import replyroom
from shardkv.runtime.replyroom import REPEATS_FREE
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.values import random_member, scan_members, scan_reply


def get_hash(ks: Keyspace, key: bytes) -> dict | None:
    """The hash at ``key``, None if missing, WRONGTYPE for other types."""
    value = ks.lookup(key)
    if value is not None and type(value) is not dict:
        raise CommandError(errors.WRONGTYPE)
    return value


def _set_field(ks: Keyspace, key: bytes, h: dict | None, field: bytes, value: bytes) -> None:
    """Set one field of the hash ``h`` at ``key``, creating it if None."""
    if h is None:
        ks.store(key, {field: value})
    else:
        h[field] = value
        ks.touch(key)


# -- commands -----------------------------------------------------------------


def hset(ks: Keyspace, args: list[bytes]) -> object:
    """HSET key field value [field value ...]"""
    if len(args) % 2:
        raise CommandError(errors.WRONG_ARITY % args[0].decode("latin-1").lower())
    key = args[1]
    h = get_hash(ks, key)
    if h is None:
        h = {}
        ks.store(key, h)
    before = len(h)
    for i in range(2, len(args), 2):
        h[args[i]] = args[i + 1]
    ks.touch(key)
    if len(args) > 4:
        ks.changes = (len(args) - 2) // 2  # as Redis: a change per pair, a value it held too
    if args[0].lower() == b"hmset":
        return OK
    return len(h) - before


def hsetnx(ks: Keyspace, args: list[bytes]) -> object:
    """HSETNX key field value"""
    key, field = args[1], args[2]
    h = get_hash(ks, key)
    if h is None:
        ks.store(key, {field: args[3]})
        return 1
    if field in h:
        ks.unchanged = True  # as Redis: the field is kept, not dirty, not logged
        return 0
    h[field] = args[3]
    ks.touch(key)
    return 1


def hget(ks: Keyspace, args: list[bytes]) -> object:
    """HGET key field"""
    h = get_hash(ks, args[1])
    return None if h is None else h.get(args[2])


def hmget(ks: Keyspace, args: list[bytes]) -> object:
    """HMGET key field [field ...]"""
    h = ks.lookup(args[1])  # (get_hash, inline: a call fewer)
    if h is None:
        return [None] * (len(args) - 2)
    if type(h) is not dict:
        raise CommandError(errors.WRONGTYPE)
    fields = args[2:]
    out = list(map(h.get, fields))
    # A field named twice or more multiplies its value (see replyroom);
    # distinct ones answer at most what the data holds, as LRANGE does.
    # (Repeats among the fields alone: one named as the key is none.)
    if len(fields) > REPEATS_FREE and len(set(fields)) < len(fields):
        replyroom.check(sum(map(len, filter(None, out))))
    return out


def hdel(ks: Keyspace, args: list[bytes]) -> object:
    """HDEL key field [field ...]"""
    key = args[1]
    h = get_hash(ks, key)
    deleted = 0
    if h is not None:
        for field in args[2:]:
            if h.pop(field, None) is not None:
                deleted += 1
    if not deleted:
        ks.unchanged = True  # as Redis: nothing removed, not dirty, not logged
        return 0
    ks.touch(key)
    if not h:
        ks.delete(key)
    if deleted > 1:
        ks.changes = deleted  # as Redis: a change per field removed
    return deleted


def hlen(ks: Keyspace, args: list[bytes]) -> object:
    """HLEN key"""
    h = get_hash(ks, args[1])
    return 0 if h is None else len(h)


def hstrlen(ks: Keyspace, args: list[bytes]) -> object:
    """HSTRLEN key field"""
    h = get_hash(ks, args[1])
    value = None if h is None else h.get(args[2])
    return 0 if value is None else len(value)


def hexists(ks: Keyspace, args: list[bytes]) -> object:
    """HEXISTS key field"""
    h = get_hash(ks, args[1])
    return 1 if h is not None and args[2] in h else 0


def hkeys(ks: Keyspace, args: list[bytes]) -> object:
    """HKEYS key"""
    h = get_hash(ks, args[1])
    return [] if h is None else list(h)


def hvals(ks: Keyspace, args: list[bytes]) -> object:
    """HVALS key"""
    h = get_hash(ks, args[1])
    return [] if h is None else list(h.values())


def hgetall(ks: Keyspace, args: list[bytes]) -> object:
    """HGETALL key"""
    h = get_hash(ks, args[1])
    # A map in RESP3, a flat array in RESP2; encoded before anything runs.
    return {} if h is None else h


def hincrby(ks: Keyspace, args: list[bytes]) -> object:
    """HINCRBY key field increment"""
    key, field = args[1], args[2]
    by = parse_int(args[3])
    h = get_hash(ks, key)
    old = None if h is None else h.get(field)
    current = 0
    if old is not None:
        current = strict_int(old)  # type: ignore[assignment]
        if current is None:
            raise CommandError(errors.HASH_NOT_INTEGER)
    new = current + by
    if new > LLONG_MAX or new < LLONG_MIN:
        raise CommandError(errors.OVERFLOW)
    _set_field(ks, key, h, field, b"%d" % new)
    return new


def hincrbyfloat(ks: Keyspace, args: list[bytes]) -> object:
    """HINCRBYFLOAT key field increment"""
    key, field = args[1], args[2]
    by = parse_long_double(args[3])
    if by is None:
        raise CommandError(errors.NOT_FLOAT)
    if type(by) is float:  # an infinity; NaN does not parse
        raise CommandError(errors.VALUE_NAN_INF)
    h = get_hash(ks, key)
    old = None if h is None else h.get(field)
    current = Fraction(0) if old is None else parse_long_double(old)
    if current is None:
        raise CommandError(errors.HASH_NOT_FLOAT)
    total = add_long_double(current, by)
    if total is None:
        raise CommandError(errors.INCR_NAN_INF)
    text = format_long_double(total)
    _set_field(ks, key, h, field, text)
    return text


def hrandfield(ks: Keyspace, args: list[bytes]) -> object:
    """HRANDFIELD key [count [WITHVALUES]]"""
    if len(args) == 2:
        h = get_hash(ks, args[1])
        return None if h is None else random_member(h)
    count = parse_count(args[2])
    if len(args) > 4 or (len(args) == 4 and args[3].upper() != b"WITHVALUES"):
        raise CommandError(errors.SYNTAX)
    withvalues = len(args) == 4
    if withvalues and not -(LLONG_MAX // 2) <= count <= LLONG_MAX // 2:
        raise CommandError(errors.VALUE_OUT_OF_RANGE)
    h = get_hash(ks, args[1])
    if h is None or count == 0:
        return []
    if count < -BIG_ARRAY:  # encoded as drawn, never a list
        # The client chooses how many (see shardkv.runtime.replyroom).
        room = replyroom.room()
        if withvalues:
            items = tuple(h.items())
            if least_reply((len(f) + len(v) for f, v in items), -count, pairs=True) > room:
                raise CommandError(errors.VALUE_OUT_OF_RANGE)
            choices = PairChoices(items, -count, room)
            if not choices.fits():
                raise CommandError(errors.VALUE_OUT_OF_RANGE)
            return choices
        reply = None
        if least_reply(map(len, h), -count) <= room:
            reply = encode_bulk_choices(tuple(h), -count, room)
        if reply is None:
            raise CommandError(errors.VALUE_OUT_OF_RANGE)
        return reply
    if count < 0:
        fields = random.choices(tuple(h), k=-count)
        replyroom.check(sum(len(f) + len(h[f]) for f in fields) if withvalues else sum(map(len, fields)))
    elif count >= len(h):
        fields = list(h)
    else:
        fields = random.sample(tuple(h), count)
    if withvalues:
        # RESP3 nests each field with its value; RESP2 flattens them.
        return Pairs((f, h[f]) for f in fields)
    return fields


def hscan(ks: Keyspace, args: list[bytes]) -> object:
    """HSCAN key cursor [MATCH pattern] [COUNT count]"""
    cursor = parse_cursor(args[2])
    h = get_hash(ks, args[1])
    if h is None:
        return scan_reply(0, [])
    count, pattern, _ = parse_scan_options(args, 3)
    cursor, fields = scan_members(h, cursor, count)
    match = compile_glob(pattern) if pattern is not None else None
    out = []
    for f in fields:
        if match is None or match(f):
            out.append(f)
            out.append(h[f])
    return scan_reply(cursor, out)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "hset": hset,
    "hmset": hset,
    "hsetnx": hsetnx,
    "hget": hget,
    "hmget": hmget,
    "hdel": hdel,
    "hlen": hlen,
    "hstrlen": hstrlen,
    "hexists": hexists,
    "hkeys": hkeys,
    "hvals": hvals,
    "hgetall": hgetall,
    "hincrby": hincrby,
    "hincrbyfloat": hincrbyfloat,
    "hrandfield": hrandfield,
    "hscan": hscan,
}
