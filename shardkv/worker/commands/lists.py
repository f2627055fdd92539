"""List commands, the blocking ones included.

A list is a :class:`collections.deque` of bytes: pushes and pops at both
ends are O(1), and ranges are read with :func:`itertools.islice` from the
nearer end, so ``LRANGE key 0 99`` touches 100 items however long the list
is.  An empty list never stays in the keyspace: every command that can
empty one deletes the key.

The blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) are
registered with :func:`shardkv.worker.blocking.blocking`: each tries to
serve at once like its non-blocking cousin, and otherwise returns a
:class:`~shardkv.worker.blocking.Wait` whose ``serve`` function pops for
it when one of its keys gets data.  A blocked list command that times out
replies with a null array, BLMOVE included (Redis 7.0 does the same); one
that may not block (inside MULTI) replies null.
"""

from __future__ import annotations

from collections import deque
from itertools import islice

from shardkv.protocol import errors
from shardkv.protocol.args import LLONG_MIN, parse_either, parse_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import NULL_ARRAY, OK
from shardkv.protocol.wire import Verb
from shardkv.worker.blocking import Wait, parse_timeout
from shardkv.worker.handlers import Blocking, BlockingForms, Handler, Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.values import index_range


def _where(arg: bytes) -> bool:
    """LEFT -> True, RIGHT -> False."""
    return parse_either(arg, b"LEFT", b"RIGHT")


def _positive(arg: bytes, message: str) -> int:
    """A count >= 0, with one message for anything else (getPositiveLong)."""
    n = parse_int(arg, message)
    if n < 0:
        raise CommandError(message)
    return n


def _pop_many(ks: Keyspace, key: bytes, value: deque, left: bool, count: int) -> list[bytes]:
    pop = value.popleft if left else value.pop
    out = [pop() for _ in range(min(count, len(value)))]
    if len(out) > 1:
        ks.changes = len(out)  # as Redis's listElementsRemoved: a change per element
    ks.touch(key)
    if not value:
        ks.delete(key)
    return out


def _slice(value: deque, start: int, end: int) -> list[bytes]:
    """Items ``start..end`` (inclusive, already in range), from the nearer end."""
    n = len(value)
    if start <= n - 1 - end:
        return list(islice(value, start, end + 1))
    out = list(islice(reversed(value), n - 1 - end, n - start))
    out.reverse()
    return out


# -- pushing ---------------------------------------------------------------------


def _push(ks: Keyspace, args: list[bytes], left: bool, only_existing: bool) -> int:
    key = args[1]
    value = ks.lookup(key)
    if value is None:
        if only_existing:
            ks.unchanged = True  # as Redis: no list, nothing pushed, not dirty
            return 0
        value = deque()
        ks.store(key, value)
    elif type(value) is not deque:
        raise CommandError(errors.WRONGTYPE)
    if len(args) == 3:
        if left:
            value.appendleft(args[2])
        else:
            value.append(args[2])
    elif left:
        value.extendleft(islice(args, 2, None))
    else:
        value.extend(islice(args, 2, None))
    ks.touch(key)
    if len(args) > 3:
        ks.changes = len(args) - 2  # as Redis: a change per element pushed
    return len(value)


def lpush(ks: Keyspace, args: list[bytes]) -> object:
    """LPUSH key element [element ...]"""
    return _push(ks, args, True, False)


def rpush(ks: Keyspace, args: list[bytes]) -> object:
    """RPUSH key element [element ...]"""
    return _push(ks, args, False, False)


def lpushx(ks: Keyspace, args: list[bytes]) -> object:
    """LPUSHX key element [element ...]"""
    return _push(ks, args, True, True)


def rpushx(ks: Keyspace, args: list[bytes]) -> object:
    """RPUSHX key element [element ...]"""
    return _push(ks, args, False, True)


def linsert(ks: Keyspace, args: list[bytes]) -> object:
    """LINSERT key BEFORE | AFTER pivot element"""
    after = int(parse_either(args[2], b"AFTER", b"BEFORE"))
    value = ks.lookup_type(args[1], deque)
    if value is None:
        ks.unchanged = True  # as Redis: nothing inserted, not dirty, not logged
        return 0
    try:
        i = value.index(args[3])
    except ValueError:
        ks.unchanged = True  # no pivot: nothing inserted
        return -1
    value.insert(i + after, args[4])
    ks.touch(args[1])
    return len(value)


# -- popping ---------------------------------------------------------------------


def _pop(ks: Keyspace, args: list[bytes], left: bool) -> object:
    if len(args) > 3:
        raise CommandError(errors.WRONG_ARITY % ("lpop" if left else "rpop"))
    key = args[1]
    if len(args) == 2:
        value = ks.lookup_type(key, deque)
        if value is None:
            ks.unchanged = True  # as Redis: nothing popped, not dirty, not logged
            return None
        item = value.popleft() if left else value.pop()
        ks.touch(key)
        if not value:
            ks.delete(key)
        return item
    count = _positive(args[2], errors.NOT_POSITIVE)
    value = ks.lookup_type(key, deque)
    if value is None or not count:
        ks.unchanged = True  # nothing popped
        return NULL_ARRAY if value is None else []
    return _pop_many(ks, key, value, left, count)


def lpop(ks: Keyspace, args: list[bytes]) -> object:
    """LPOP key [count]"""
    return _pop(ks, args, True)


def rpop(ks: Keyspace, args: list[bytes]) -> object:
    """RPOP key [count]"""
    return _pop(ks, args, False)


def _parse_mpop(args: list[bytes], at: int) -> tuple[list[bytes], bool, int]:
    """``numkeys key [key ...] LEFT|RIGHT [COUNT count]`` from ``args[at]``:
    (keys, left, count), with the errors of Redis's ``lmpopGenericCommand``."""
    numkeys = parse_int(args[at], errors.NUMKEYS_ZERO)
    if numkeys < 1:
        raise CommandError(errors.NUMKEYS_ZERO)
    where_at = at + numkeys + 1
    n = len(args)
    if where_at >= n:
        raise CommandError(errors.SYNTAX)
    left = _where(args[where_at])
    count = 0
    j = where_at + 1
    while j < n:
        if not count and args[j].upper() == b"COUNT" and j + 1 < n:
            count = parse_int(args[j + 1], errors.COUNT_POSITIVE)
            if count < 1:
                raise CommandError(errors.COUNT_POSITIVE)
            j += 2
        else:
            raise CommandError(errors.SYNTAX)
    return args[at + 1 : where_at], left, count or 1


def _mpop_first(ks: Keyspace, keys: list[bytes], left: bool, count: int) -> list | None:
    """Pop from the first non-empty list of ``keys``; WRONGTYPE as met."""
    for key in keys:
        value = ks.lookup_type(key, deque)
        if value:
            return [key, _pop_many(ks, key, value, left, count)]
    return None


def lmpop(ks: Keyspace, args: list[bytes]) -> object:
    """LMPOP numkeys key [key ...] LEFT | RIGHT [COUNT count]"""
    keys, left, count = _parse_mpop(args, 1)
    found = _mpop_first(ks, keys, left, count)
    if found is None:
        ks.unchanged = True  # no list: nothing popped
        return NULL_ARRAY
    return found


# -- reading ---------------------------------------------------------------------


def llen(ks: Keyspace, args: list[bytes]) -> object:
    """LLEN key"""
    value = ks.lookup_type(args[1], deque)
    return 0 if value is None else len(value)


def lindex(ks: Keyspace, args: list[bytes]) -> object:
    """LINDEX key index"""
    value = ks.lookup_type(args[1], deque)
    if value is None:
        return None
    index = parse_int(args[2])
    n = len(value)
    if index < 0:
        index += n
    if 0 <= index < n:
        return value[index]
    return None


def lrange(ks: Keyspace, args: list[bytes]) -> object:
    """LRANGE key start stop"""
    start = parse_int(args[2])
    end = parse_int(args[3])
    value = ks.lookup_type(args[1], deque)
    if value is None:
        return []
    n = len(value)
    a, b = index_range(start, end, n)
    if a == b:
        return []
    if a == 0 and b == n:
        return list(value)
    return _slice(value, a, b - 1)


def lpos(ks: Keyspace, args: list[bytes]) -> object:
    """LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]"""
    rank, count, maxlen = 1, -1, 0  # count -1: no COUNT option
    n = len(args)
    j = 3
    while j < n:
        opt = args[j].upper()
        if j + 1 >= n:
            raise CommandError(errors.SYNTAX)
        if opt == b"RANK":
            rank = parse_int(args[j + 1])
            if rank == 0:
                raise CommandError(errors.LPOS_RANK_ZERO)
        elif opt == b"COUNT":
            count = _positive(args[j + 1], errors.LPOS_COUNT_NEGATIVE)
        elif opt == b"MAXLEN":
            maxlen = _positive(args[j + 1], errors.LPOS_MAXLEN_NEGATIVE)
        else:
            raise CommandError(errors.SYNTAX)
        j += 2
    value = ks.lookup_type(args[1], deque)
    if value is None:
        return [] if count != -1 else None
    element = args[2]
    size = len(value)
    if rank < 0:
        # Redis negates LONG_MIN into itself, and then every match ranks.
        rank = 1 if rank == LLONG_MIN else -rank
        items = reversed(value)
        position = lambda i: size - 1 - i  # noqa: E731
    else:
        items = iter(value)
        position = lambda i: i  # noqa: E731
    if maxlen:
        items = islice(items, maxlen)
    matches = 0
    found = []
    for i, item in enumerate(items):
        if item == element:
            matches += 1
            if matches >= rank:
                if count == -1:
                    return position(i)
                found.append(position(i))
                if count and len(found) == count:
                    break
    return found if count != -1 else None


# -- changing in place -------------------------------------------------------------


def lset(ks: Keyspace, args: list[bytes]) -> object:
    """LSET key index element"""
    value = ks.lookup(args[1])
    if value is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if type(value) is not deque:
        raise CommandError(errors.WRONGTYPE)
    index = parse_int(args[2])
    n = len(value)
    if index < 0:
        index += n
    if not 0 <= index < n:
        raise CommandError(errors.INDEX_OUT_OF_RANGE)
    value[index] = args[3]
    ks.touch(args[1])
    return OK


def lrem(ks: Keyspace, args: list[bytes]) -> object:
    """LREM key count element"""
    count = parse_int(args[2])
    key = args[1]
    value = ks.lookup_type(key, deque)
    element = args[3]
    if value is None or element not in value:
        ks.unchanged = True  # as Redis: nothing removed, not dirty, not logged
        return 0
    limit = abs(count)
    removed = 0
    kept: list[bytes] = []
    keep = kept.append
    items = reversed(value) if count < 0 else value
    for item in items:
        if item == element and (not limit or removed < limit):
            removed += 1
        else:
            keep(item)
    if count < 0:
        kept.reverse()
    value.clear()
    value.extend(kept)
    ks.touch(key)
    if not kept:
        ks.delete(key)
    if removed > 1:
        ks.changes = removed  # as Redis: a change per element removed
    return removed


def ltrim(ks: Keyspace, args: list[bytes]) -> object:
    """LTRIM key start stop"""
    start = parse_int(args[2])
    end = parse_int(args[3])
    key = args[1]
    value = ks.lookup_type(key, deque)
    if value is None:
        ks.unchanged = True  # as Redis: nothing trimmed, not dirty, not logged
        return OK
    n = len(value)
    a, b = index_range(start, end, n)
    # As Redis: LTRIM of an existing list touches it (WATCH), even when it
    # keeps all; but only what it removed counts as a change (dirty).
    ks.touch(key)
    if a == 0 and b == n:
        ks.unchanged = True
        return OK
    if n - (b - a) > 1:
        ks.changes = n - (b - a)  # as Redis: a change per element trimmed
    if a == b:
        ks.delete(key)
        return OK
    keep = b - a
    if keep < n - keep:
        items = _slice(value, a, b - 1)
        value.clear()
        value.extend(items)
    else:
        for _ in range(a):
            value.popleft()
        for _ in range(n - b):
            value.pop()
    return OK


# -- moving between lists -------------------------------------------------------


def _move(ks: Keyspace, source: bytes, destination: bytes, from_left: bool, to_left: bool) -> object:
    """LMOVE's work, as Redis's ``lmoveGenericCommand``: None for a missing
    source; WRONGTYPE for a destination of another type, before any pop."""
    src = ks.lookup_type(source, deque)
    if src is None:
        ks.unchanged = True  # as Redis: nothing moved, not dirty, not logged
        return None
    dst = ks.lookup_type(destination, deque)
    item = src.popleft() if from_left else src.pop()
    if dst is None:
        ks.store(destination, deque((item,)))
    elif to_left:
        dst.appendleft(item)
    else:
        dst.append(item)
    ks.touch(source)
    ks.touch(destination)
    if not src:  # (when source is destination, it holds the item again)
        ks.delete(source)
    return item


def lmove(ks: Keyspace, args: list[bytes]) -> object:
    """LMOVE source destination LEFT | RIGHT LEFT | RIGHT"""
    from_left = _where(args[3])
    to_left = _where(args[4])
    return _move(ks, args[1], args[2], from_left, to_left)


def rpoplpush(ks: Keyspace, args: list[bytes]) -> object:
    """RPOPLPUSH source destination"""
    return _move(ks, args[1], args[2], False, True)


# -- blocking -------------------------------------------------------------------


def _left(name: bytes) -> bool:
    """BLPOP -> True, BRPOP -> False."""
    return name[1] in b"lL"


def blpop(ks: Keyspace, args: list[bytes]) -> object:
    """BLPOP key [key ...] timeout"""
    timeout = parse_timeout(args[-1])
    keys = args[1:-1]
    left = _left(args[0])
    for key in keys:
        value = ks.lookup_type(key, deque)
        if value:
            return [key, _pop_many(ks, key, value, left, 1)[0]]
    return Wait(keys, timeout, _serve_pop)


def _serve_pop(ks: Keyspace, args: list[bytes], key: bytes) -> object:
    value = ks.lookup(key)
    if type(value) is not deque:
        return None
    reply = [key, _pop_many(ks, key, value, _left(args[0]), 1)[0]]
    ks.changes = 0  # as Redis 7.0's serveClientBlockedOnList: logged, not counted in dirty
    return reply


def blmove(ks: Keyspace, args: list[bytes]) -> object:
    """BLMOVE source destination LEFT | RIGHT LEFT | RIGHT timeout"""
    if len(args) == 4:  # BRPOPLPUSH source destination timeout
        from_left, to_left = False, True
    else:
        from_left = _where(args[3])
        to_left = _where(args[4])
    timeout = parse_timeout(args[-1])
    if ks.lookup_type(args[1], deque) is None:
        return Wait(args[1:2], timeout, _serve_move, deny=None)
    return _move(ks, args[1], args[2], from_left, to_left)


def _serve_move(ks: Keyspace, args: list[bytes], key: bytes) -> object:
    # A probe: the move's own lookup of its source is the serve's one access.
    if type(ks.peek(key)) is not deque:
        return None
    reply = served_move(ks, args)
    ks.changes = 0  # as Redis 7.0's serveClientBlockedOnList: logged, not counted in dirty
    return reply


def served_move(ks: Keyspace, args: list[bytes]) -> object:
    """BLMOVE source destination LEFT | RIGHT LEFT | RIGHT timeout (or
    BRPOPLPUSH source destination timeout), run to serve its blocked
    client: the move alone, with a null when the source is gone.  Redis's
    serve looks the source up once (``handleClientsBlockedOnKeys``), where
    the command run afresh looks it up twice (``blmoveGenericCommand``,
    then ``lmoveGenericCommand``), which counts under an LFU policy.  A
    destination of another type gets WRONGTYPE; the item stays."""
    if len(args) == 4:
        return _move(ks, args[1], args[2], False, True)
    return _move(ks, args[1], args[2], _where(args[3]), _where(args[4]))


def serving_move() -> Handler:
    """:func:`served_move` as the handler of a cross-shard BLMOVE's try
    that serves its client (``wire.Run.served``), flagged as BLMOVE's own
    (set at the worker's start: see ``wiring.build``)."""

    def move(ks: Keyspace, args: list[bytes]) -> object:
        return served_move(ks, args)

    move.reads = blmove.reads  # type: ignore[attr-defined]
    move.writes = blmove.writes  # type: ignore[attr-defined]
    return move


def bdest(ks: Keyspace, args: list[bytes]) -> object:
    """__bdest destination source: WRONGTYPE if the destination holds
    another type than a list, else 0; 1 if the source holds another type
    (the destination unread).  A cross-shard BLMOVE's try after a
    notification runs it after the command: Redis serves the client it
    notified first, and its serve (``serveClientBlockedOnList``) replies
    WRONGTYPE for such a destination before it pops, so the client gets
    that even when the element went to the next waiter meanwhile (see
    :mod:`shardkv.acceptor.blocking`).  The command's WRONGTYPE then may be
    its source's, which changed nothing: Redis serves a blocked client only
    from a list, so that client waits on (``SET`` of its source)."""
    value = ks.peek(args[2])  # a probe, not an access
    if value is not None and type(value) is not deque:
        return 1
    # Redis's serve looks the destination up once (lookupKeyWrite): the
    # command before this one did, if its source held an element (it moved
    # it, or met a destination of another type).  Only where it found
    # nothing, and so read no destination, is this the access.
    target = ks.peek(args[1])
    if target is not None and type(target) is not deque:
        if value is None:
            ks.lookup(args[1])
        raise CommandError(errors.WRONGTYPE)
    return 0


def blmpop(ks: Keyspace, args: list[bytes]) -> object:
    """BLMPOP timeout numkeys key [key ...] LEFT | RIGHT [COUNT count]"""
    keys, left, count = _parse_mpop(args, 2)
    timeout = parse_timeout(args[1])
    found = _mpop_first(ks, keys, left, count)
    if found is not None:
        return found
    return Wait(keys, timeout, _serve_mpop)


def _serve_mpop(ks: Keyspace, args: list[bytes], key: bytes) -> object:
    value = ks.lookup(key)
    if type(value) is not deque:
        return None
    _, left, count = _parse_mpop(args, 2)
    return [key, _pop_many(ks, key, value, left, count)]


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "lpush": lpush,
    "rpush": rpush,
    "lpushx": lpushx,
    "rpushx": rpushx,
    "linsert": linsert,
    "lpop": lpop,
    "rpop": rpop,
    "lmpop": lmpop,
    "llen": llen,
    "lindex": lindex,
    "lrange": lrange,
    "lpos": lpos,
    "lset": lset,
    "lrem": lrem,
    "ltrim": ltrim,
    "lmove": lmove,
    "rpoplpush": rpoplpush,
    Verb.BDEST: bdest,
}

# The blocking commands, by name: the form that may wait, and the type it pops.
BLOCKING: BlockingForms = {
    "blpop": Blocking(blpop, deque),
    "brpop": Blocking(blpop, deque),
    "blmove": Blocking(blmove, deque),
    "brpoplpush": Blocking(blmove, deque),
    "blmpop": Blocking(blmpop, deque),
}
