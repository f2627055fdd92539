"""Sorted set commands.

The value type is :class:`shardkv.worker.zset.ZSet`.  The commands follow
Redis 7.0's ``t_zset.c`` closely, down to the order in which arguments
are checked (which decides which error a bad command gets) and its
arithmetic with infinities.  Commands with keys on several shards
(ZUNIONSTORE, ZMPOP, ZRANGESTORE...) need no special code here: the
acceptor makes all their keys local to the shard that runs them.

Reply shapes that differ by protocol are left to :mod:`shardkv.protocol.resp`:
scores are floats (RESP3 doubles, RESP2 bulk strings) and WITHSCORES
replies are :class:`~shardkv.protocol.resp.Pairs` (RESP3 nests each pair).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

from shardkv.protocol import errors
from shardkv.protocol.args import LLONG_MAX, parse_count, parse_cursor, parse_int, parse_scan_options, strtod
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import (
    BIG_ARRAY,
    NULL_ARRAY,
    PairChoices,
    Pairs,
    encode_bulk_choices,
    format_double,
    least_reply,
    strict_int,
)
from shardkv.runtime import replyroom
from shardkv.worker.blocking import Wait, parse_timeout
from shardkv.worker.handlers import Blocking, BlockingForms, Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.values import get_zset, index_range, scan_members, scan_reply
from shardkv.worker.zset import LexBound, ZSet, zset_of

_INF = math.inf

# -- reading arguments ----------------------------------------------------------

_C_SPACE = b" \t\n\v\f\r"


def parse_score(arg: bytes, message: str = errors.NOT_FLOAT) -> float:
    """A score, increment or weight, as Redis's ``getDoubleFromObject``:
    the whole argument must be a number, not NaN, and in range."""
    if arg.isdigit() and len(arg) < 300:
        return float(arg)  # the common case
    parsed = strtod(arg)
    if parsed is None or parsed[1] or parsed[0] != parsed[0]:
        raise CommandError(message)
    return parsed[0]


def parse_score_bound(arg: bytes) -> tuple[float, bool]:
    """A ZRANGEBYSCORE bound, ``(1.5`` exclusive, as Redis's
    ``zslParseRange``: ``strtod`` over a C string, so leading spaces are
    skipped, an empty number is 0, and overflow gives infinity."""
    exclusive = arg[:1] == b"("
    text = arg[1:] if exclusive else arg
    text = text.split(b"\0", 1)[0]
    if not text:
        return 0.0, exclusive
    parsed = strtod(text.lstrip(_C_SPACE))
    if parsed is None or parsed[0] != parsed[0]:
        raise CommandError(errors.MIN_MAX_NOT_FLOAT)
    return parsed[0], exclusive


def parse_lex_bound(arg: bytes) -> LexBound:
    """A ZRANGEBYLEX bound: ``-``, ``+``, ``[member`` or ``(member``."""
    c = arg[:1]
    if c == b"-" or c == b"+":
        if len(arg) > 1 and arg[1] != 0:
            raise CommandError(errors.MIN_MAX_NOT_STRING)
        return (-1 if c == b"-" else 1), b"", True
    if c == b"[":
        return 0, arg[1:], False
    if c == b"(":
        return 0, arg[1:], True
    raise CommandError(errors.MIN_MAX_NOT_STRING)


def _store_or_delete(ks: Keyspace, key: bytes, z: ZSet) -> int:
    """Make ``key`` hold ``z`` (a destination: any old value and TTL go), or
    delete it when ``z`` is empty.  Returns the size of ``z``."""
    if z:
        ks.store(key, z)
    elif not ks.delete(key):
        ks.unchanged = True  # as Redis: empty, no destination to delete: no change
    return len(z)


# -- adding and removing ----------------------------------------------------------

_ZADD_OPTIONS = frozenset((b"NX", b"XX", b"CH", b"INCR", b"GT", b"LT"))


def zadd_generic(ks: Keyspace, args: list[bytes], incr: bool) -> object:
    """ZADD and ZINCRBY (which is ZADD with INCR), as ``zaddGenericCommand``."""
    key = args[1]
    n = len(args)
    j = 2
    opts: set[bytes] = set()
    while j < n:
        opt = args[j].upper()
        if opt not in _ZADD_OPTIONS:
            break
        opts.add(opt)
        j += 1
    if opts:
        nx, xx, ch, gt, lt = (o in opts for o in (b"NX", b"XX", b"CH", b"GT", b"LT"))
        incr = incr or b"INCR" in opts
    else:
        nx = xx = ch = gt = lt = False
    pairs = n - j
    if pairs % 2 or not pairs:
        raise CommandError(errors.SYNTAX)
    if nx and xx:
        raise CommandError(errors.XX_NX)
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise CommandError(errors.GT_LT_NX)
    if incr and pairs > 2:
        raise CommandError(errors.ZADD_INCR_PAIRS)
    scores = [parse_score(args[i]) for i in range(j, n, 2)]
    z = get_zset(ks, key)
    if z is None:
        if xx:
            ks.unchanged = True  # as Redis: no sorted set to update, not dirty, not logged
            return None if incr else 0
        z = ZSet()
        ks.store(key, z)
    current = z.scores
    added = updated = processed = 0
    newscore = 0.0
    for i, score in enumerate(scores):
        member = args[j + 1 + 2 * i]
        cur = current.get(member)
        if cur is None:
            if xx:
                continue
            z.add(member, score)
            added += 1
        else:
            if nx:
                continue
            if incr:
                score += cur
                if score != score:
                    raise CommandError(errors.SCORE_NAN)
            if (lt and score >= cur) or (gt and score <= cur):
                continue
            if score != cur:
                z.add(member, score)
                updated += 1
        processed += 1
        newscore = score
    if added or updated:
        ks.touch(key)
        if added + updated > 1:
            ks.changes = added + updated  # as Redis: a change per member added or updated
    else:
        ks.unchanged = True  # as Redis: no member added or updated, not dirty
    if incr:
        return newscore if processed else None
    return added + updated if ch else added


_NUMBER_START = frozenset(b"0123456789+-.")  # no option starts so


def zadd(ks: Keyspace, args: list[bytes]) -> object:
    """ZADD key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]"""
    if len(args) == 4 and args[2] and args[2][0] in _NUMBER_START:
        # The common case, one pair and no options, kept short.
        score = parse_score(args[2])
        z = get_zset(ks, args[1])
        if z is None:
            z = ZSet()
            ks.store(args[1], z)
        old = z.scores.get(args[3])
        if old is None:
            z.add(args[3], score)
            ks.touch(args[1])
            return 1
        if old != score:
            z.add(args[3], score)
            ks.touch(args[1])
        else:
            ks.unchanged = True  # as Redis: the same score, not dirty, not logged
        return 0
    return zadd_generic(ks, args, False)


def zincrby(ks: Keyspace, args: list[bytes]) -> object:
    """ZINCRBY key increment member"""
    return zadd_generic(ks, args, True)


def zrem(ks: Keyspace, args: list[bytes]) -> object:
    """ZREM key member [member ...]"""
    z = get_zset(ks, args[1])
    removed = 0
    if z is not None:
        for member in args[2:]:
            if z.remove(member):
                removed += 1
    if not removed:
        ks.unchanged = True  # as Redis: nothing removed, not dirty, not logged
        return 0
    ks.touch(args[1])
    if not z:
        ks.delete(args[1])
    if removed > 1:
        ks.changes = removed  # as Redis: a change per member removed
    return removed


# -- single elements --------------------------------------------------------------


def zcard(ks: Keyspace, args: list[bytes]) -> object:
    """ZCARD key"""
    z = get_zset(ks, args[1])
    return 0 if z is None else len(z)


def zscore(ks: Keyspace, args: list[bytes]) -> object:
    """ZSCORE key member"""
    z = get_zset(ks, args[1])
    return None if z is None else z.scores.get(args[2])


def zmscore(ks: Keyspace, args: list[bytes]) -> object:
    """ZMSCORE key member [member ...]"""
    z = get_zset(ks, args[1])
    if z is None:
        return [None] * (len(args) - 2)
    get = z.scores.get
    return [get(m) for m in args[2:]]


def _zrank(ks: Keyspace, args: list[bytes], reverse: bool) -> object:
    # Redis 7.0 takes exactly three arguments (WITHSCORE is 7.2's): the
    # table's arity refuses any other count before this runs.
    z = get_zset(ks, args[1])
    if z is None:
        return None
    rank = z.rank(args[2])
    if rank is None:
        return None
    return len(z) - 1 - rank if reverse else rank


def zrank(ks: Keyspace, args: list[bytes]) -> object:
    """ZRANK key member"""
    return _zrank(ks, args, False)


def zrevrank(ks: Keyspace, args: list[bytes]) -> object:
    """ZREVRANK key member"""
    return _zrank(ks, args, True)


# -- ranges -------------------------------------------------------------------------

BY_RANK, BY_SCORE, BY_LEX = "rank", "score", "lex"


def zrange_generic(
    ks: Keyspace,
    args: list[bytes],
    at: int,
    store: bool,
    by: str | None,
    reverse: bool | None,
) -> object:
    """Every ZRANGE form, as ``zrangeGenericCommand``.

    ``at`` is the index of the source key, followed by the two ends of the
    range and the options; ``store`` means ``args[1]`` is ZRANGESTORE's
    destination.  ``by`` and ``reverse`` are fixed by the legacy commands
    (ZRANGEBYSCORE...) and None where the options choose them.
    """
    withscores = False
    offset, limit = 0, -1
    n = len(args)
    j = at + 3
    while j < n:
        opt = args[j].upper()
        if opt == b"WITHSCORES" and not store:
            withscores = True
        elif opt == b"LIMIT" and n - j - 1 >= 2:
            offset = parse_int(args[j + 1])
            limit = parse_int(args[j + 2])
            j += 2
        elif opt == b"REV" and reverse is None:
            reverse = True
        elif opt == b"BYSCORE" and by is None:
            by = BY_SCORE
        elif opt == b"BYLEX" and by is None:
            by = BY_LEX
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    reverse = bool(reverse)
    by = by or BY_RANK
    if limit != -1 and by is BY_RANK:
        raise CommandError(errors.LIMIT_NEEDS_BY)
    if withscores and by is BY_LEX:
        raise CommandError(errors.WITHSCORES_BYLEX)
    lo, hi = args[at + 1], args[at + 2]
    if reverse and by is not BY_RANK:
        lo, hi = hi, lo  # given as max, min
    if by is BY_RANK:
        start, end = parse_int(lo), parse_int(hi)
    elif by is BY_SCORE:
        smin, smax = parse_score_bound(lo), parse_score_bound(hi)
    else:
        lmin, lmax = parse_lex_bound(lo), parse_lex_bound(hi)

    with ks.reading():  # ZRANGESTORE reads its source too
        z = get_zset(ks, args[at])
    if z is None:
        return _store_or_delete(ks, args[1], ZSet()) if store else []
    size = len(z)
    if by is BY_RANK:
        a, b = index_range(start, end, size)
        if reverse:
            a, b = size - b, size - a
        items = z.slice(a, b, reverse)
    else:
        if by is BY_SCORE:
            a, b = z.score_span(smin[0], smin[1], smax[0], smax[1])
        else:
            a, b = z.lex_span(lmin, lmax, reverse)
        if offset < 0 or (offset > 0 and offset >= size):
            items = []
        elif not reverse:
            a += offset
            items = z.slice(a, b if limit < 0 else min(b, a + limit))
        else:
            b -= offset
            items = z.slice(a if limit < 0 else max(a, b - limit), b, True)
    if store:
        return _store_or_delete(ks, args[1], zset_of((m, s) for s, m in items))
    if withscores:
        return Pairs((m, s) for s, m in items)
    return [m for _, m in items]


def zrange(ks: Keyspace, args: list[bytes]) -> object:
    """ZRANGE key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]"""
    return zrange_generic(ks, args, 1, False, None, None)


def zrangestore(ks: Keyspace, args: list[bytes]) -> object:
    """ZRANGESTORE dst src min max [BYSCORE | BYLEX] [REV] [LIMIT offset count]"""
    return zrange_generic(ks, args, 2, True, None, None)


def zrevrange(ks: Keyspace, args: list[bytes]) -> object:
    """ZREVRANGE key start stop [WITHSCORES]"""
    return zrange_generic(ks, args, 1, False, BY_RANK, True)


def zrangebyscore(ks: Keyspace, args: list[bytes]) -> object:
    """ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]"""
    return zrange_generic(ks, args, 1, False, BY_SCORE, False)


def zrevrangebyscore(ks: Keyspace, args: list[bytes]) -> object:
    """ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]"""
    return zrange_generic(ks, args, 1, False, BY_SCORE, True)


def zrangebylex(ks: Keyspace, args: list[bytes]) -> object:
    """ZRANGEBYLEX key min max [LIMIT offset count]"""
    return zrange_generic(ks, args, 1, False, BY_LEX, False)


def zrevrangebylex(ks: Keyspace, args: list[bytes]) -> object:
    """ZREVRANGEBYLEX key max min [LIMIT offset count]"""
    return zrange_generic(ks, args, 1, False, BY_LEX, True)


def zcount(ks: Keyspace, args: list[bytes]) -> object:
    """ZCOUNT key min max"""
    lo, hi = parse_score_bound(args[2]), parse_score_bound(args[3])
    z = get_zset(ks, args[1])
    if z is None:
        return 0
    a, b = z.score_span(lo[0], lo[1], hi[0], hi[1])
    return b - a


def zlexcount(ks: Keyspace, args: list[bytes]) -> object:
    """ZLEXCOUNT key min max"""
    lo, hi = parse_lex_bound(args[2]), parse_lex_bound(args[3])
    z = get_zset(ks, args[1])
    if z is None:
        return 0
    a, b = z.lex_span(lo, hi)
    return b - a


def _zremrange(ks: Keyspace, args: list[bytes], by: str) -> object:
    key = args[1]
    if by is BY_RANK:
        start, end = parse_int(args[2]), parse_int(args[3])
    elif by is BY_SCORE:
        smin, smax = parse_score_bound(args[2]), parse_score_bound(args[3])
    else:
        lmin, lmax = parse_lex_bound(args[2]), parse_lex_bound(args[3])
    z = get_zset(ks, key)
    if z is None:
        ks.unchanged = True  # as Redis: nothing removed, not dirty, not logged
        return 0
    if by is BY_RANK:
        a, b = index_range(start, end, len(z))
    elif by is BY_SCORE:
        a, b = z.score_span(smin[0], smin[1], smax[0], smax[1])
    else:
        a, b = z.lex_span(lmin, lmax)
    removed = len(z.pop_range(a, b))
    if not removed:
        ks.unchanged = True
        return 0
    ks.touch(key)
    if not z:
        ks.delete(key)
    if removed > 1:
        ks.changes = removed  # as Redis: a change per member removed
    return removed


def zremrangebyrank(ks: Keyspace, args: list[bytes]) -> object:
    """ZREMRANGEBYRANK key start stop"""
    return _zremrange(ks, args, BY_RANK)


def zremrangebyscore(ks: Keyspace, args: list[bytes]) -> object:
    """ZREMRANGEBYSCORE key min max"""
    return _zremrange(ks, args, BY_SCORE)


def zremrangebylex(ks: Keyspace, args: list[bytes]) -> object:
    """ZREMRANGEBYLEX key min max"""
    return _zremrange(ks, args, BY_LEX)


# -- popping --------------------------------------------------------------------------


def pop_items(z: ZSet, highest: bool, count: int) -> list[tuple[float, bytes]]:
    """Remove up to ``count`` lowest (or highest) elements, in pop order."""
    size = len(z)
    count = min(count, size)
    if highest:
        items = z.pop_range(size - count, size)
        items.reverse()
        return items
    return z.pop_range(0, count)


def _pop_key(ks: Keyspace, key: bytes, z: ZSet, highest: bool, count: int) -> list:
    """Pop from the sorted set ``z`` at ``key``, deleting the key once empty."""
    items = pop_items(z, highest, count)
    if len(items) > 1:
        ks.changes = len(items)  # as Redis's genericZpopCommand: a change per member
    ks.touch(key)
    if not z:
        ks.delete(key)
    return items


def pop_first(ks: Keyspace, keys: list[bytes], highest: bool, count: int):
    """Pop from the first of ``keys`` that holds a sorted set, as
    ``genericZpopCommand``: a key of another type met first is WRONGTYPE.
    Returns ``(key, items)``, or None when every key is missing."""
    for key in keys:
        z = get_zset(ks, key)
        if z is not None:
            return key, _pop_key(ks, key, z, highest, count)
    return None


def _zpop(ks: Keyspace, args: list[bytes], highest: bool) -> object:
    if len(args) > 3:
        raise CommandError(errors.SYNTAX)
    count = None
    if len(args) == 3:
        count = strict_int(args[2])
        if count is None or count < 0:
            raise CommandError(errors.NOT_POSITIVE)
    z = get_zset(ks, args[1])
    if z is None or count == 0:
        ks.unchanged = True  # as Redis: nothing popped, not dirty, not logged
        return []
    items = _pop_key(ks, args[1], z, highest, 1 if count is None else count)
    if count is None:
        # Without a count the reply is flat even in RESP3.
        return [items[0][1], items[0][0]]
    return Pairs((m, s) for s, m in items)


def zpopmin(ks: Keyspace, args: list[bytes]) -> object:
    """ZPOPMIN key [count]"""
    return _zpop(ks, args, False)


def zpopmax(ks: Keyspace, args: list[bytes]) -> object:
    """ZPOPMAX key [count]"""
    return _zpop(ks, args, True)


def parse_mpop(args: list[bytes], at: int) -> tuple[list[bytes], bool, int]:
    """``numkeys key... MIN|MAX [COUNT count]`` from ``args[at]`` on ->
    (keys, highest, count), as ``zmpopGenericCommand`` reads them."""
    n = len(args)
    numkeys = strict_int(args[at])
    if numkeys is None or numkeys < 1:
        raise CommandError(errors.NUMKEYS_ZERO)
    where = at + numkeys + 1
    if where >= n:
        raise CommandError(errors.SYNTAX)
    side = args[where].upper()
    if side not in (b"MIN", b"MAX"):
        raise CommandError(errors.SYNTAX)
    count = -1
    j = where + 1
    while j < n:
        if count == -1 and args[j].upper() == b"COUNT" and j + 1 < n:
            j += 1
            count = strict_int(args[j])  # type: ignore[assignment]
            if count is None or count < 1:
                raise CommandError(errors.COUNT_POSITIVE)
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    return args[at + 1 : where], side == b"MAX", (1 if count == -1 else count)


def mpop_reply(popped: tuple[bytes, list]) -> list:
    """ZMPOP's ``[key, [[member, score], ...]]``, nested in RESP2 too."""
    key, items = popped
    return [key, [[m, s] for s, m in items]]


def zmpop(ks: Keyspace, args: list[bytes]) -> object:
    """ZMPOP numkeys key [key ...] MIN | MAX [COUNT count]"""
    keys, highest, count = parse_mpop(args, 1)
    popped = pop_first(ks, keys, highest, count)
    if popped is None:
        ks.unchanged = True  # no sorted set: nothing popped
        return NULL_ARRAY
    return mpop_reply(popped)


# -- blocking pops ----------------------------------------------------------------------
# See shardkv.worker.blocking: a blocking form pops now, as its non-blocking
# cousin, or returns a Wait; ``serve`` pops for a waiter once a key is ready.


def _highest(name: bytes) -> bool:
    """BZPOPMAX -> True, BZPOPMIN -> False."""
    return name[-1] in b"xX"


def bzpopmin(ks: Keyspace, args: list[bytes]) -> object:
    """BZPOPMIN key [key ...] timeout"""
    timeout = parse_timeout(args[-1])
    keys = args[1:-1]
    popped = pop_first(ks, keys, _highest(args[0]), 1)
    if popped is None:
        return Wait(keys, timeout, _serve_bzpop)
    key, items = popped
    return [key, items[0][1], items[0][0]]


def _serve_bzpop(ks: Keyspace, args: list[bytes], key: bytes) -> object:
    z = ks.lookup(key)
    if type(z) is not ZSet:
        return None  # not a sorted set (yet): keep waiting
    score, member = _pop_key(ks, key, z, _highest(args[0]), 1)[0]
    return [key, member, score]


def bzmpop(ks: Keyspace, args: list[bytes]) -> object:
    """BZMPOP timeout numkeys key [key ...] MIN | MAX [COUNT count]"""
    keys, highest, count = parse_mpop(args, 2)
    timeout = parse_timeout(args[1])  # after the other arguments, as in Redis
    popped = pop_first(ks, keys, highest, count)
    if popped is None:
        return Wait(keys, timeout, _serve_bzmpop)
    return mpop_reply(popped)


def _serve_bzmpop(ks: Keyspace, args: list[bytes], key: bytes) -> object:
    z = ks.lookup(key)
    if type(z) is not ZSet:
        return None
    _, highest, count = parse_mpop(args, 2)
    return mpop_reply((key, _pop_key(ks, key, z, highest, count)))


# -- random members ---------------------------------------------------------------------


def zrandmember(ks: Keyspace, args: list[bytes]) -> object:
    """ZRANDMEMBER key [count [WITHSCORES]]"""
    n = len(args)
    if n < 3:
        z = get_zset(ks, args[1])
        return None if z is None else z.at(random.randrange(len(z)))[1]
    count = parse_count(args[2])
    if n > 4 or (n == 4 and args[3].upper() != b"WITHSCORES"):
        raise CommandError(errors.SYNTAX)
    withscores = n == 4
    if withscores and not -(LLONG_MAX // 2) <= count <= LLONG_MAX // 2:
        raise CommandError(errors.VALUE_OUT_OF_RANGE)
    z = get_zset(ks, args[1])
    if z is None or count == 0:
        return []
    size = len(z)
    at = z.at
    if count < -BIG_ARRAY:  # encoded as drawn, never a list
        # The client chooses how many (see shardkv.runtime.replyroom).
        room = replyroom.room()
        ranked = z.slice(0, size)
        if least_reply((len(m) for _, m in ranked), -count, withscores) > room:
            raise CommandError(errors.VALUE_OUT_OF_RANGE)
        if withscores:
            choices = PairChoices(tuple((m, s) for s, m in ranked), -count, room)
            if not choices.fits():
                raise CommandError(errors.VALUE_OUT_OF_RANGE)
            return choices
        reply = encode_bulk_choices(tuple(m for _, m in ranked), -count, room)
        if reply is None:
            raise CommandError(errors.VALUE_OUT_OF_RANGE)
        return reply
    if count < 0 or count == 1:
        # Repeats allowed: independent picks.
        picks = [at(random.randrange(size)) for _ in range(abs(count))]
        replyroom.check(sum(len(m) for _, m in picks))
    elif count >= size:
        # The whole set; Redis 7.0 lists it highest first.
        picks = z.slice(0, size, reverse=True)
    else:
        picks = [at(i) for i in random.sample(range(size), count)]
    if withscores:
        return Pairs((m, s) for s, m in picks)
    return [m for _, m in picks]


# -- several sets: union, intersection, difference -----------------------------------------

UNION, INTER, DIFF = "union", "inter", "diff"
SUM, MIN, MAX = b"SUM", b"MIN", b"MAX"


def _aggregate(a: float, b: float, how: bytes) -> float:
    """``zunionInterAggregate``: inf + -inf sums to 0."""
    if how is SUM:
        r = a + b
        return 0.0 if r != r else r
    if how is MIN:
        return b if b < a else a
    return b if b > a else a


def _items(src: ZSet | set[bytes]):
    """(member, score) of a sorted set or a set (whose scores are 1)."""
    if type(src) is ZSet:
        return src.scores.items()
    return ((m, 1.0) for m in src)


def _find(src: object, member: bytes) -> float | None:
    if type(src) is ZSet:
        return src.scores.get(member)
    return 1.0 if member in src else None  # type: ignore[operator]


def zsetop(ks: Keyspace, args: list[bytes], dst: bytes | None, at: int, op: str, card: bool = False):
    """ZUNION/ZINTER/ZDIFF[STORE] and ZINTERCARD, as
    ``zunionInterDiffGenericCommand``.  ``args[at]`` is numkeys; ``dst`` is
    the destination of the STORE forms."""
    setnum = parse_int(args[at])
    if setnum < 1:
        raise CommandError(errors.AT_LEAST_ONE_KEY % args[0].decode("latin-1").lower())
    n = len(args)
    if setnum > n - (at + 1):
        raise CommandError(errors.SYNTAX)
    srcs: list = []
    with ks.reading():  # the STORE forms read their sources too
        for key in args[at + 1 : at + 1 + setnum]:
            value = ks.lookup(key)
            if value is not None and type(value) is not ZSet and type(value) is not set:
                raise CommandError(errors.WRONGTYPE)
            srcs.append(value if value is not None else ())
    weights = [1.0] * setnum
    how = SUM
    withscores = False
    limit = 0
    j = at + 1 + setnum
    while j < n:
        remaining = n - j
        opt = args[j].upper()
        if opt == b"WEIGHTS" and op is not DIFF and not card and remaining > setnum:
            for i in range(setnum):
                weights[i] = parse_score(args[j + 1 + i], errors.WEIGHT_NOT_FLOAT)
            j += 1 + setnum
        elif opt == b"AGGREGATE" and op is not DIFF and not card and remaining >= 2:
            how = args[j + 1].upper()
            if how == SUM:
                how = SUM
            elif how == MIN:
                how = MIN
            elif how == MAX:
                how = MAX
            else:
                raise CommandError(errors.SYNTAX)
            j += 2
        elif opt == b"WITHSCORES" and dst is None and not card:
            withscores = True
            j += 1
        elif opt == b"LIMIT" and card and remaining >= 2:
            limit = strict_int(args[j + 1])  # type: ignore[assignment]
            if limit is None or limit < 0:
                raise CommandError(errors.LIMIT_NEGATIVE)
            j += 2
        else:
            raise CommandError(errors.SYNTAX)

    # Smallest first, as Redis orders them: it decides the order in which
    # scores are added, and float addition is not associative.
    if op is not DIFF:
        ranked = sorted(range(setnum), key=lambda i: len(srcs[i]))
        srcs = [srcs[i] for i in ranked]
        weights = [weights[i] for i in ranked]
    result: dict[bytes, float] = {}
    if op is UNION:
        for src, weight in zip(srcs, weights, strict=True):
            for member, score in _items(src):
                score *= weight
                if score != score:
                    score = 0.0  # inf * 0
                old = result.get(member)
                result[member] = score if old is None else _aggregate(old, score, how)
    elif op is INTER:
        first, rest = srcs[0], list(zip(srcs[1:], weights[1:], strict=True))
        if len(first):
            for member, score in _items(first):
                if card:
                    if all(_find(src, member) is not None for src, _ in rest):
                        result[member] = 0.0
                        if limit and len(result) >= limit:
                            break
                    continue
                score *= weights[0]
                if score != score:
                    score = 0.0
                for src, weight in rest:
                    value = _find(src, member)
                    if value is None:
                        break
                    score = _aggregate(score, value * weight, how)
                else:
                    result[member] = score
    else:
        first, rest = srcs[0], [src for src in srcs[1:] if len(src)]
        for member, score in _items(first):
            if not any(_find(src, member) is not None for src in rest):
                result[member] = score

    if card:
        return len(result)
    if dst is not None:
        return _store_or_delete(ks, dst, ZSet.from_result(result))
    ordered = sorted(result.items(), key=lambda ms: (ms[1], ms[0]))
    if withscores:
        return Pairs(ordered)
    return [m for m, _ in ordered]


def zunionstore(ks: Keyspace, args: list[bytes]) -> object:
    """ZUNIONSTORE destination numkeys key [key ...] [WEIGHTS weight [weight ...]]
    [AGGREGATE SUM | MIN | MAX]"""
    return zsetop(ks, args, args[1], 2, UNION)


def zinterstore(ks: Keyspace, args: list[bytes]) -> object:
    """ZINTERSTORE destination numkeys key [key ...] [WEIGHTS weight [weight ...]]
    [AGGREGATE SUM | MIN | MAX]"""
    return zsetop(ks, args, args[1], 2, INTER)


def zdiffstore(ks: Keyspace, args: list[bytes]) -> object:
    """ZDIFFSTORE destination numkeys key [key ...]"""
    return zsetop(ks, args, args[1], 2, DIFF)


def zunion(ks: Keyspace, args: list[bytes]) -> object:
    """ZUNION numkeys key [key ...] [WEIGHTS weight [weight ...]]
    [AGGREGATE SUM | MIN | MAX] [WITHSCORES]"""
    return zsetop(ks, args, None, 1, UNION)


def zinter(ks: Keyspace, args: list[bytes]) -> object:
    """ZINTER numkeys key [key ...] [WEIGHTS weight [weight ...]]
    [AGGREGATE SUM | MIN | MAX] [WITHSCORES]"""
    return zsetop(ks, args, None, 1, INTER)


def zdiff(ks: Keyspace, args: list[bytes]) -> object:
    """ZDIFF numkeys key [key ...] [WITHSCORES]"""
    return zsetop(ks, args, None, 1, DIFF)


def zintercard(ks: Keyspace, args: list[bytes]) -> object:
    """ZINTERCARD numkeys key [key ...] [LIMIT limit]"""
    return zsetop(ks, args, None, 1, INTER, card=True)


# -- scanning -----------------------------------------------------------------------------


def zscan(ks: Keyspace, args: list[bytes]) -> object:
    """ZSCAN key cursor [MATCH pattern] [COUNT count]"""
    cursor = parse_cursor(args[2])
    z = get_zset(ks, args[1])
    if z is None:
        return scan_reply(0, [])
    count, pattern, _ = parse_scan_options(args, 3)
    scores = z.scores
    pairs: Iterator[tuple[float, bytes]]
    text: Callable[[float], bytes]
    if z.big:
        cursor, members = scan_members(scores, cursor, count)
        pairs = ((scores[m], m) for m in members)
        text = format_double
    else:
        # Redis returns a listpack whole, in order, and prints the scores
        # as the listpack stores them.
        cursor, pairs = 0, iter(z)
        text = _listpack_score
    match = compile_glob(pattern) if pattern is not None else None
    out = []
    for score, member in pairs:
        if match is None or match(member):
            out.append(member)
            out.append(text(score))
    return scan_reply(cursor, out)


_LISTPACK_INT_MAX = float(2**62)  # (double)(LLONG_MAX / 2)


def _listpack_score(score: float) -> bytes:
    """A score as a listpack holds it: an integer when it is one within
    +-2**62 (so -0 is 0), else ``%.17g``."""
    if -_LISTPACK_INT_MAX <= score <= _LISTPACK_INT_MAX and score == int(score):
        return b"%d" % int(score)
    return format_double(score)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "zadd": zadd,
    "zincrby": zincrby,
    "zrem": zrem,
    "zcard": zcard,
    "zscore": zscore,
    "zmscore": zmscore,
    "zrank": zrank,
    "zrevrank": zrevrank,
    "zrange": zrange,
    "zrangestore": zrangestore,
    "zrevrange": zrevrange,
    "zrangebyscore": zrangebyscore,
    "zrevrangebyscore": zrevrangebyscore,
    "zrangebylex": zrangebylex,
    "zrevrangebylex": zrevrangebylex,
    "zcount": zcount,
    "zlexcount": zlexcount,
    "zremrangebyrank": zremrangebyrank,
    "zremrangebyscore": zremrangebyscore,
    "zremrangebylex": zremrangebylex,
    "zpopmin": zpopmin,
    "zpopmax": zpopmax,
    "zmpop": zmpop,
    "zrandmember": zrandmember,
    "zunionstore": zunionstore,
    "zinterstore": zinterstore,
    "zdiffstore": zdiffstore,
    "zunion": zunion,
    "zinter": zinter,
    "zdiff": zdiff,
    "zintercard": zintercard,
    "zscan": zscan,
}

# The blocking commands, by name: the form that may wait, and the type it pops.
BLOCKING: BlockingForms = {
    "bzpopmin": Blocking(bzpopmin, ZSet),
    "bzpopmax": Blocking(bzpopmin, ZSet),
    "bzmpop": Blocking(bzmpop, ZSet),
}
