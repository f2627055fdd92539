"""Set commands.

A set is a Python ``set`` of bytes.  The commands over several sets
(SINTER, SUNION, SDIFF, their STORE forms, SINTERCARD, SMOVE) see all of
their keys here: when the keys live on several shards, the acceptor runs
the command atomically on one of them with the others' keys brought over
(:mod:`shardkv.acceptor.crossshard`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from shardkv.protocol import errors
from shardkv.protocol.args import parse_count, parse_cursor, parse_scan_options
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import BIG_ARRAY, encode_bulk_choices, least_reply, strict_int
from shardkv.runtime import replyroom
from shardkv.worker import values
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.values import random_member, scan_members, scan_reply

# SPOP picks uniformly from sets up to this size, which costs O(size) in
# Python.  From bigger ones it takes ``set.pop()``'s member, in O(1): the
# order of a set of bytes follows their hashes, which Python seeds at
# random in each process, so the member is still one nobody can predict.
UNIFORM_POP_MAX = 4096


def _pop_member(s: set) -> bytes:
    """Remove and return a random member of the non-empty set ``s``."""
    if len(s) > UNIFORM_POP_MAX:
        return s.pop()
    member = random_member(s)
    s.discard(member)
    return member  # type: ignore[return-value]


def get_set(ks: Keyspace, key: bytes) -> set | None:
    """The set at ``key``, None if missing, WRONGTYPE for other types."""
    value = ks.lookup(key)
    if value is not None and type(value) is not set:
        raise CommandError(errors.WRONGTYPE)
    return value


def _get_sets(ks: Keyspace, keys: list[bytes]) -> list[set | None]:
    """The sets at ``keys`` (None for missing ones); WRONGTYPE if any is not."""
    with ks.reading():  # the STORE forms read their sources too
        return [get_set(ks, key) for key in keys]


def _store_result(ks: Keyspace, dst: bytes, result: set) -> int:
    """The STORE forms: ``dst`` becomes ``result``, or goes if it is empty."""
    if result:
        ks.store(dst, result)
    elif not ks.delete(dst):
        ks.unchanged = True  # as Redis: empty, no destination to delete: no change
    return len(result)


def _parse_positive(arg: bytes, message: str) -> int:
    """A long >= 0, as ``getPositiveLongFromObjectOrReply``: one error for all."""
    n = strict_int(arg)
    if n is None or n < 0:
        raise CommandError(message)
    return n


def sadd(ks: Keyspace, args: list[bytes]) -> object:
    """SADD key member [member ...]"""
    key = args[1]
    s = get_set(ks, key)
    if s is None:
        s = set(args[2:])
        ks.store(key, s)
        added = len(s)
    else:
        before = len(s)
        s.update(args[2:])
        if len(s) == before:
            ks.unchanged = True  # as Redis: every member held already, not dirty
            return 0
        ks.touch(key)
        added = len(s) - before
    if added > 1:
        ks.changes = added  # as Redis: a change per member added
    return added


def srem(ks: Keyspace, args: list[bytes]) -> object:
    """SREM key member [member ...]"""
    key = args[1]
    s = get_set(ks, key)
    before = 0 if s is None else len(s)
    if s is not None:
        s.difference_update(args[2:])
    if s is None or len(s) == before:
        ks.unchanged = True  # as Redis: nothing removed, not dirty, not logged
        return 0
    ks.touch(key)
    if not s:
        ks.delete(key)
    removed = before - len(s)
    if removed > 1:
        ks.changes = removed  # as Redis: a change per member removed
    return removed


def smembers(ks: Keyspace, args: list[bytes]) -> object:
    """SMEMBERS key"""
    s = get_set(ks, args[1])
    return set() if s is None else s


def sismember(ks: Keyspace, args: list[bytes]) -> object:
    """SISMEMBER key member"""
    s = get_set(ks, args[1])
    return 1 if s is not None and args[2] in s else 0


def smismember(ks: Keyspace, args: list[bytes]) -> object:
    """SMISMEMBER key member [member ...]"""
    s = get_set(ks, args[1])
    if s is None:
        return [0] * (len(args) - 2)
    return [1 if m in s else 0 for m in args[2:]]


def scard(ks: Keyspace, args: list[bytes]) -> object:
    """SCARD key"""
    s = get_set(ks, args[1])
    return 0 if s is None else len(s)


def spop(ks: Keyspace, args: list[bytes]) -> object:
    """SPOP key [count]"""
    key = args[1]
    if len(args) > 3:
        raise CommandError(errors.SYNTAX)
    if len(args) == 2:
        s = get_set(ks, key)
        if s is None:
            ks.unchanged = True  # as Redis: nothing popped, not dirty, not logged
            return None
        member = _pop_member(s)
        ks.touch(key)
        if not s:
            ks.delete(key)
        return member
    count = _parse_positive(args[2], errors.NOT_POSITIVE)
    s = get_set(ks, key)
    if s is None or count == 0:
        ks.unchanged = True  # nothing popped
        return set()
    if count >= len(s):
        if len(s) > 1:
            ks.changes = len(s)  # as Redis: a change per member popped
        ks.delete(key)
        return s
    if count > 1:
        ks.changes = count
    ks.touch(key)
    if len(s) > UNIFORM_POP_MAX:
        return {s.pop() for _ in range(count)}
    popped = set(random.sample(tuple(s), count))
    s.difference_update(popped)
    return popped


def srandmember(ks: Keyspace, args: list[bytes]) -> object:
    """SRANDMEMBER key [count]"""
    if len(args) > 3:
        raise CommandError(errors.SYNTAX)
    if len(args) == 2:
        s = get_set(ks, args[1])
        return None if s is None else random_member(s)
    count = parse_count(args[2])
    s = get_set(ks, args[1])
    if s is None or count == 0:
        return []
    if count < 0:
        # The client chooses how many (see shardkv.runtime.replyroom).
        members = tuple(s)
        if -count > BIG_ARRAY:  # encoded as drawn: never a list of -count values
            room = replyroom.room()
            reply = None
            if least_reply(map(len, members), -count) <= room:
                reply = encode_bulk_choices(members, -count, room)
            if reply is None:
                raise CommandError(errors.VALUE_OUT_OF_RANGE)
            return reply
        picks = random.choices(members, k=-count)
        replyroom.check(sum(map(len, picks)))
        return picks
    if count == 1:
        return [random_member(s)]
    if count >= len(s):
        return list(s)
    return random.sample(tuple(s), count)


def smove(ks: Keyspace, args: list[bytes]) -> object:
    """SMOVE source destination member"""
    src_key, dst_key, member = args[1], args[2], args[3]
    src = get_set(ks, src_key)
    dst = get_set(ks, dst_key) if src is not None else None
    if src is None or src is dst or member not in src:
        # As Redis: nothing moved (or onto itself), not dirty, not logged.
        ks.unchanged = True
        return 1 if src is not None and src is dst and member in src else 0
    src.discard(member)
    ks.touch(src_key)
    if not src:
        ks.delete(src_key)
    if dst is None:
        ks.store(dst_key, {member})
        ks.changes = 2  # as Redis: the move, and the member added to the destination
    elif member not in dst:  # as Redis: a destination that holds it already is unchanged
        dst.add(member)
        ks.touch(dst_key)
        ks.changes = 2
    return 1


def _intersection(sets: list[set]) -> set:
    smallest, *rest = sorted(sets, key=len)
    return smallest.intersection(*rest)


def sinter(ks: Keyspace, args: list[bytes]) -> object:
    """SINTER key [key ...]"""
    sets = _get_sets(ks, args[1:])
    if None in sets:
        return set()
    if len(sets) == 1:
        return sets[0]
    return _intersection(sets)  # type: ignore[arg-type]


def sinterstore(ks: Keyspace, args: list[bytes]) -> object:
    """SINTERSTORE destination key [key ...]"""
    sets = _get_sets(ks, args[2:])
    result = set() if None in sets else _intersection(sets)  # type: ignore[arg-type]
    return _store_result(ks, args[1], result)


def sintercard(ks: Keyspace, args: list[bytes]) -> object:
    """SINTERCARD numkeys key [key ...] [LIMIT limit]"""
    numkeys = strict_int(args[1])
    if numkeys is None or numkeys < 1:
        raise CommandError(errors.NUMKEYS_ZERO)
    if numkeys > len(args) - 2:
        raise CommandError(errors.NUMKEYS_MORE)
    limit = 0
    j = 2 + numkeys
    while j < len(args):
        if args[j].upper() == b"LIMIT" and j + 1 < len(args):
            limit = _parse_positive(args[j + 1], errors.LIMIT_NEGATIVE)
            j += 2
        else:
            raise CommandError(errors.SYNTAX)
    sets = _get_sets(ks, args[2 : 2 + numkeys])
    if None in sets:
        return 0
    smallest: set[bytes]
    rest: list[set[bytes]]
    smallest, *rest = sorted(sets, key=len)  # type: ignore[arg-type, assignment]  # no None in sets
    if not limit:
        return len(smallest.intersection(*rest))
    found = 0
    for m in smallest:
        if all(m in other for other in rest):
            found += 1
            if found == limit:
                break
    return found


def _union(sets: list[set | None]) -> set:
    return set().union(*(s for s in sets if s is not None))


def _difference(sets: list[set | None]) -> set:
    first = sets[0]
    if first is None:
        return set()
    return first.difference(*(s for s in sets[1:] if s is not None))


def sunion(ks: Keyspace, args: list[bytes]) -> object:
    """SUNION key [key ...]"""
    return _union(_get_sets(ks, args[1:]))


def sunionstore(ks: Keyspace, args: list[bytes]) -> object:
    """SUNIONSTORE destination key [key ...]"""
    return _store_result(ks, args[1], _union(_get_sets(ks, args[2:])))


def sdiff(ks: Keyspace, args: list[bytes]) -> object:
    """SDIFF key [key ...]"""
    return _difference(_get_sets(ks, args[1:]))


def sdiffstore(ks: Keyspace, args: list[bytes]) -> object:
    """SDIFFSTORE destination key [key ...]"""
    return _store_result(ks, args[1], _difference(_get_sets(ks, args[2:])))


def _as_intset(s: set) -> list[bytes] | None:
    """The members in numeric order if Redis would hold ``s`` as an intset."""
    if len(s) > values.INTSET_MAX:
        return None
    numbers = []
    for m in s:
        n = strict_int(m)
        if n is None:
            return None
        numbers.append((n, m))
    numbers.sort()
    return [m for _, m in numbers]


def sscan(ks: Keyspace, args: list[bytes]) -> object:
    """SSCAN key cursor [MATCH pattern] [COUNT count]"""
    cursor = parse_cursor(args[2])
    s = get_set(ks, args[1])
    if s is None:
        return scan_reply(0, [])
    count, pattern, _ = parse_scan_options(args, 3)
    members: Iterable[bytes] | None = _as_intset(s)
    if members is not None:
        cursor = 0
    else:
        cursor, members = scan_members(s, cursor, count)
    if pattern is not None:
        match = compile_glob(pattern)
        members = [m for m in members if match(m)]
    elif type(members) is not list:
        members = list(members)
    return scan_reply(cursor, members)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "sadd": sadd,
    "srem": srem,
    "smembers": smembers,
    "sismember": sismember,
    "smismember": smismember,
    "scard": scard,
    "spop": spop,
    "srandmember": srandmember,
    "smove": smove,
    "sinter": sinter,
    "sinterstore": sinterstore,
    "sintercard": sintercard,
    "sunion": sunion,
    "sunionstore": sunionstore,
    "sdiff": sdiff,
    "sdiffstore": sdiffstore,
    "sscan": sscan,
}
