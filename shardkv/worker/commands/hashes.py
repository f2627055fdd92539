"""Hash commands, and the cursor scan that HSCAN and SSCAN share.

A hash is a ``dict`` of field to value, both bytes.  A Python dict keeps
insertion order, and an update keeps a field's place, which is exactly the
order of Redis's listpack encoding, so small hashes list their fields in
the same order as Redis.  (Redis switches to a hash table past 128 fields,
and its order is then arbitrary; so is ours, as far as clients know.)
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Collection, Iterable
from fractions import Fraction
from itertools import islice
from zlib import crc32

from shardkv.protocol import errors
from shardkv.protocol.args import (
    add_long_double,
    format_long_double,
    parse_cursor,
    parse_int,
    parse_long_double,
    parse_scan_options,
)
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import BIG_ARRAY, OK, Pairs, encode_bulk_choices, strict_int
from shardkv.worker.commands.strings import LLONG_MAX, LLONG_MIN
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.registry import command

LONG_MAX = LLONG_MAX  # a C long on the 64-bit systems Redis runs on


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


# -- random picks (HRANDFIELD, SRANDMEMBER, SPOP) ----------------------------


def random_member(c: Collection) -> object:
    """A uniformly random element of a non-empty set or key of a dict.

    Python's containers have no O(1) random access, so this walks to a
    random position: O(n), but at C speed and with no copy.
    """
    return next(islice(iter(c), random.randrange(len(c)), None))


def parse_count(arg: bytes) -> int:
    """A HRANDFIELD/SRANDMEMBER count: a long, but not LONG_MIN."""
    n = parse_int(arg)
    if n < -LONG_MAX:
        raise CommandError(errors.VALUE_OUT_OF_RANGE_BETWEEN % (-LONG_MAX, LONG_MAX))
    return n


# -- cursors (HSCAN, SSCAN) ---------------------------------------------------

# Redis returns a small hash (a listpack) in one call, whatever COUNT says.
SCAN_WHOLE_MAX = 128


def scan_members(members: Collection, cursor: int, count: int) -> tuple[int, Iterable]:
    """The members to return for ``cursor``, and the next cursor (0 at the end).

    Small containers come back whole, as Redis returns a listpack or an
    intset.  Past that, the cursor is a position: a member's position is
    its CRC-32 plus one, and a call returns the members at or after the
    cursor, lowest first, with the position of the first member it left out
    as the next cursor.  A member keeps its position, so one present for a
    whole scan is returned exactly once, however the container changes, and
    in any process (a cross-shard transaction may run HSCAN elsewhere).

    Keeping no state means each call looks at every member, so a call
    returns at least a sixteenth of the container, keeping a full scan
    linear in its size.
    """
    n = len(members)
    if n <= SCAN_WHOLE_MAX or n <= count:
        return 0, members
    batch = max(count, n // 16)
    ahead = [crc32(m) + 1 for m in members]
    if cursor > 1:
        ahead = [p for p in ahead if p >= cursor]
    stop = 0
    if len(ahead) > batch:
        lowest = heapq.nsmallest(batch + 1, ahead)
        stop = lowest[-1]
        if stop == lowest[0]:  # one position fills the batch: take all of it
            stop = min((p for p in ahead if p > stop), default=0)
    if stop == 0:
        picked = [m for m in members if crc32(m) + 1 >= cursor]
    else:
        picked = [m for m in members if cursor <= crc32(m) + 1 < stop]
    return stop, picked


def scan_reply(cursor: int, items: list) -> list:
    return [b"%d" % cursor, items]


# -- commands -----------------------------------------------------------------


@command("hset", "hmset")
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
    if args[0].lower() == b"hmset":
        return OK
    return len(h) - before


@command("hsetnx")
def hsetnx(ks: Keyspace, args: list[bytes]) -> object:
    """HSETNX key field value"""
    key, field = args[1], args[2]
    h = get_hash(ks, key)
    if h is None:
        ks.store(key, {field: args[3]})
        return 1
    if field in h:
        return 0
    h[field] = args[3]
    ks.touch(key)
    return 1


@command("hget")
def hget(ks: Keyspace, args: list[bytes]) -> object:
    """HGET key field"""
    h = get_hash(ks, args[1])
    return None if h is None else h.get(args[2])


@command("hmget")
def hmget(ks: Keyspace, args: list[bytes]) -> object:
    """HMGET key field [field ...]"""
    h = get_hash(ks, args[1])
    if h is None:
        return [None] * (len(args) - 2)
    get = h.get
    return [get(f) for f in args[2:]]


@command("hdel")
def hdel(ks: Keyspace, args: list[bytes]) -> object:
    """HDEL key field [field ...]"""
    key = args[1]
    h = get_hash(ks, key)
    if h is None:
        return 0
    deleted = 0
    for field in args[2:]:
        if h.pop(field, None) is not None:
            deleted += 1
    if not deleted:
        return 0
    ks.touch(key)
    if not h:
        ks.delete(key)
    return deleted


@command("hlen")
def hlen(ks: Keyspace, args: list[bytes]) -> object:
    """HLEN key"""
    h = get_hash(ks, args[1])
    return 0 if h is None else len(h)


@command("hstrlen")
def hstrlen(ks: Keyspace, args: list[bytes]) -> object:
    """HSTRLEN key field"""
    h = get_hash(ks, args[1])
    value = None if h is None else h.get(args[2])
    return 0 if value is None else len(value)


@command("hexists")
def hexists(ks: Keyspace, args: list[bytes]) -> object:
    """HEXISTS key field"""
    h = get_hash(ks, args[1])
    return 1 if h is not None and args[2] in h else 0


@command("hkeys")
def hkeys(ks: Keyspace, args: list[bytes]) -> object:
    """HKEYS key"""
    h = get_hash(ks, args[1])
    return [] if h is None else list(h)


@command("hvals")
def hvals(ks: Keyspace, args: list[bytes]) -> object:
    """HVALS key"""
    h = get_hash(ks, args[1])
    return [] if h is None else list(h.values())


@command("hgetall")
def hgetall(ks: Keyspace, args: list[bytes]) -> object:
    """HGETALL key"""
    h = get_hash(ks, args[1])
    # A map in RESP3, a flat array in RESP2; encoded before anything runs.
    return {} if h is None else h


@command("hincrby")
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


@command("hincrbyfloat")
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


@command("hrandfield")
def hrandfield(ks: Keyspace, args: list[bytes]) -> object:
    """HRANDFIELD key [count [WITHVALUES]]"""
    if len(args) == 2:
        h = get_hash(ks, args[1])
        return None if h is None else random_member(h)
    count = parse_count(args[2])
    if len(args) > 4 or (len(args) == 4 and args[3].upper() != b"WITHVALUES"):
        raise CommandError(errors.SYNTAX)
    withvalues = len(args) == 4
    if withvalues and not -(LONG_MAX // 2) <= count <= LONG_MAX // 2:
        raise CommandError(errors.VALUE_OUT_OF_RANGE)
    h = get_hash(ks, args[1])
    if h is None or count == 0:
        return []
    if count < -BIG_ARRAY and not withvalues:  # encoded as drawn, never a list
        return encode_bulk_choices(tuple(h), -count)
    if count < 0:
        fields = random.choices(tuple(h), k=-count)
    elif count >= len(h):
        fields = list(h)
    else:
        fields = random.sample(tuple(h), count)
    if withvalues:
        # RESP3 nests each field with its value; RESP2 flattens them.
        return Pairs((f, h[f]) for f in fields)
    return fields


@command("hscan")
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
