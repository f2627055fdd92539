"""What the command modules share: typed lookups, index ranges, random
picks, cursor scans, copies.

The modules of :mod:`shardkv.worker.commands` never import each other; a
helper that more than one of them needs lives here (or, when it only reads
arguments, in :mod:`shardkv.protocol.args`).
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Collection, Iterable
from itertools import islice
from zlib import crc32

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError
from shardkv.worker.keyspace import Keyspace, slot_of
from shardkv.worker.stream import Stream
from shardkv.worker.zset import ZSet

# A set of at most this many integers is an intset in Redis: SSCAN returns
# it whole, in numeric order, and SORT sees it in that order
# (``set-max-intset-entries``, see :mod:`shardkv.worker.tunables`).
INTSET_MAX = 512


# -- index ranges ---------------------------------------------------------------


def index_range(start: int, end: int, size: int) -> tuple[int, int]:
    """Redis's rules for an inclusive ``start``..``end`` of indexes into
    ``size`` items (LRANGE, LTRIM, ZRANGE, ZREMRANGEBYRANK): negative ones
    count from the end, and what is left is clamped.  The items as a
    half-open range ``[a, b)``, empty when ``a == b``."""
    if start < 0:
        start += size
        if start < 0:
            start = 0
    if end < 0:
        end += size
    if start > end or start >= size:
        return 0, 0
    return start, min(end, size - 1) + 1


# -- typed lookups --------------------------------------------------------------


def get_string(ks: Keyspace, key: bytes) -> bytes | None:
    """The string at ``key``, None if missing, WRONGTYPE for other types."""
    value = ks.lookup(key)
    if value is not None and type(value) is not bytes:
        raise CommandError(errors.WRONGTYPE)
    return value


def read_string(ks: Keyspace, key: bytes) -> bytes | bytearray | None:
    """Like :func:`get_string`, but a string being changed in place comes
    back as its ``bytearray``, not frozen: for a command that only reads it
    at once (GETBIT, BITCOUNT, STRLEN ...), so that reads between writes to
    a big string cost no copy.  Never keep it, or reply with it whole."""
    value = ks.lookup_raw(key)
    if value is not None and type(value) is not bytes and type(value) is not bytearray:
        raise CommandError(errors.WRONGTYPE)
    return value


def mutable_string(ks: Keyspace, key: bytes) -> bytearray | None:
    """The string at ``key`` as a ``bytearray`` to change in place (None if
    missing, WRONGTYPE for other types).  A ``bytes`` value is turned into
    one, once: later writes cost what they change, not the string's size.
    The caller stores it back with ``ks.store`` when it changed it."""
    value = ks.lookup_raw(key)
    if value is None or type(value) is bytearray:
        return value
    if type(value) is not bytes:
        raise CommandError(errors.WRONGTYPE)
    buf = ks.data[slot_of(key)][key] = bytearray(value)  # the same string: not a change
    return buf


def get_zset(ks: Keyspace, key: bytes) -> ZSet | None:
    """The sorted set at ``key``, None if missing, WRONGTYPE for other types."""
    value = ks.lookup(key)
    if value is not None and type(value) is not ZSet:
        raise CommandError(errors.WRONGTYPE)
    return value


# -- random picks (HRANDFIELD, SRANDMEMBER, SPOP) --------------------------------


def random_member(c: Collection) -> object:
    """A uniformly random element of a non-empty set or key of a dict.

    Python's containers have no O(1) random access, so this walks to a
    random position: O(n), but at C speed and with no copy.
    """
    return next(islice(iter(c), random.randrange(len(c)), None))


# -- cursors (HSCAN, SSCAN, ZSCAN) ---------------------------------------------------

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
    if cursor > 1 << 32:
        # Past every position: Redis masks a cursor with its table's size,
        # so that any cursor goes on scanning (2**64 - 1 is its last bucket).
        cursor &= (1 << 32) - 1
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


# -- copies (COPY) ---------------------------------------------------------------

# How to copy a value of each type (COPY).
COPIERS: dict[type, object] = {
    bytes: lambda v: v,
    bytearray: bytes,
    dict: dict.copy,
    deque: deque.copy,
    set: set.copy,
    ZSet: ZSet.copy,
    Stream: Stream.copy,
}


def copy_value(value: object) -> object:
    return COPIERS[type(value)](value)  # type: ignore[operator]
