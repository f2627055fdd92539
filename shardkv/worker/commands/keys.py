"""Keyspace commands that work on keys of any type."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from shardkv.protocol import errors
from shardkv.protocol.args import LLONG_MAX, LLONG_MIN, parse_int, parse_int32
from shardkv.protocol.command_docs import check_subcommand
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK, strict_int
from shardkv.worker import access
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import KEYMISS, Keyspace
from shardkv.worker.stream import Stream
from shardkv.worker.values import copy_value


def delete(ks: Keyspace, args: list[bytes]) -> object:
    """DEL key [key ...]

    UNLINK key [key ...]: the same here, where freeing a value costs the
    shard the same either way; INFO's ``lazyfreed_objects`` counts the
    values Redis would have freed in the background (UNLINK, or DEL with
    ``lazyfree-lazy-user-del``): those whose free effort is over
    :data:`LAZYFREE_THRESHOLD`."""
    if args[0].lower() == b"unlink" or ks.runtime.extra.get("lazyfree-lazy-user-del") == "yes":
        deleted = 0
        for key in args[1:]:
            value = ks.peek(key)
            if value is not None and ks.delete(key):
                deleted += 1
                if free_effort(value) > LAZYFREE_THRESHOLD:
                    ks.lazyfreed_objects += 1
    else:
        deleted = sum(1 for key in args[1:] if ks.delete(key))
    if not deleted:
        ks.unchanged = True  # as Redis: no key deleted, not dirty, not logged
    elif deleted > 1:
        ks.changes = deleted  # as Redis: a change per key deleted
    return deleted


# Redis frees a value in the background (lazyfree.c) when freeing it would
# take more than this many allocations.
LAZYFREE_THRESHOLD = 64
# Redis's default list-max-listpack-size (-2): quicklist nodes of 8 kB.
_QUICKLIST_NODE_BYTES = 8192


def free_effort(value: object) -> int:
    """Redis 7.0's ``lazyfreeGetFreeEffort``: about how many allocations
    freeing ``value`` takes.  A list counts its quicklist nodes (estimated
    from its size), a stream its nodes (Redis counts its radix tree's, a
    few more) and, for each consumer group, the first group's pending
    entries plus one; a set, hash or sorted set in a hash table or skip list
    its elements; anything else (a listpack, a string) one."""
    if type(value) is deque:
        size = sum(len(e) + 2 for e in value)
        return max(1, -(-size // _QUICKLIST_NODE_BYTES))
    if type(value) is Stream:
        effort = len(value.nodes)
        if value.groups:
            first = next(iter(value.groups.values()))
            effort += len(value.groups) * (1 + len(first.pel))
        return effort
    if type(value) in (set, dict) or hasattr(value, "encoding"):
        if object_encoding(value) in ("hashtable", "skiplist"):
            return len(value)  # type: ignore[arg-type]
    return 1


def exists(ks: Keyspace, args: list[bytes]) -> object:
    """EXISTS key [key ...]"""
    return sum(1 for key in args[1:] if ks.peek(key) is not None)  # not an access


def touch(ks: Keyspace, args: list[bytes]) -> object:
    """TOUCH key [key ...]"""
    if ks.no_touch:  # a NO-TOUCH client's TOUCH touches all the same
        return sum(1 for key in args[1:] if access.touched(ks, key))
    return sum(1 for key in args[1:] if ks.lookup(key) is not None)  # an access


def type_(ks: Keyspace, args: list[bytes]) -> object:
    """TYPE key"""
    value = ks.peek(args[1])  # not an access
    return "none" if value is None else ks.type_name(value)


def _expire(ks: Keyspace, args: list[bytes], unit_ms: int, absolute: bool) -> object:
    key = args[1]
    nx = xx = gt = lt = False
    for opt in args[3:]:
        o = opt.upper()
        if o == b"NX":
            nx = True
        elif o == b"XX":
            xx = True
        elif o == b"GT":
            gt = True
        elif o == b"LT":
            lt = True
        else:
            raise CommandError("ERR Unsupported option " + opt.decode("latin-1"))
    if nx and (xx or gt or lt):
        raise CommandError(errors.NX_XX_GT_LT)
    if gt and lt:
        raise CommandError("ERR GT and LT options at the same time are not compatible")
    when = parse_int(args[2])
    name = args[0].decode("latin-1").lower()
    # LLONG_MIN / 1000 as C divides: towards zero.
    if unit_ms == 1000 and (when > LLONG_MAX // 1000 or when < -(-LLONG_MIN // 1000)):
        raise CommandError(errors.INVALID_EXPIRE % name)
    when *= unit_ms
    if not absolute:
        when += ks.now
        if when > LLONG_MAX or when < LLONG_MIN:
            raise CommandError(errors.INVALID_EXPIRE % name)
    if ks.lookup(key) is None:
        ks.unchanged = True  # as Redis: nothing changed, not dirty, not logged
        return 0
    current = ks.get_expire(key)
    if (
        (nx and current is not None)
        or (xx and current is None)
        or (gt and (current is None or when <= current))
        or (lt and current is not None and when >= current)
    ):
        ks.unchanged = True  # a condition not met: nothing changed
        return 0
    if when <= ks.now:
        ks.delete(key)
    else:
        ks.set_expire(key, when)
    return 1


def expire(ks: Keyspace, args: list[bytes]) -> object:
    """EXPIRE key seconds [NX | XX | GT | LT]"""
    return _expire(ks, args, 1000, False)


def pexpire(ks: Keyspace, args: list[bytes]) -> object:
    """PEXPIRE key milliseconds [NX | XX | GT | LT]"""
    return _expire(ks, args, 1, False)


def expireat(ks: Keyspace, args: list[bytes]) -> object:
    """EXPIREAT key unix-time-seconds [NX | XX | GT | LT]"""
    return _expire(ks, args, 1000, True)


def pexpireat(ks: Keyspace, args: list[bytes]) -> object:
    """PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]"""
    return _expire(ks, args, 1, True)


def _remaining_ms(ks: Keyspace, key: bytes) -> int | None:
    """-2 (as None) for a missing key, -1 for no TTL, else ms left."""
    if ks.peek(key) is None:  # not an access
        return None
    when = ks.get_expire(key)
    return -1 if when is None else max(when - ks.now, 0)


def ttl(ks: Keyspace, args: list[bytes]) -> object:
    """TTL key"""
    ms = _remaining_ms(ks, args[1])
    if ms is None:
        return -2
    return -1 if ms == -1 else (ms + 500) // 1000


def pttl(ks: Keyspace, args: list[bytes]) -> object:
    """PTTL key"""
    ms = _remaining_ms(ks, args[1])
    return -2 if ms is None else ms


def expiretime(ks: Keyspace, args: list[bytes]) -> object:
    """EXPIRETIME key"""
    if ks.peek(args[1]) is None:  # not an access
        return -2
    when = ks.get_expire(args[1])
    return -1 if when is None else (when + 500) // 1000  # rounded, as Redis


def pexpiretime(ks: Keyspace, args: list[bytes]) -> object:
    """PEXPIRETIME key"""
    if ks.peek(args[1]) is None:  # not an access
        return -2
    when = ks.get_expire(args[1])
    return -1 if when is None else when


def persist(ks: Keyspace, args: list[bytes]) -> object:
    """PERSIST key"""
    if ks.lookup(args[1]) is not None and ks.persist(args[1]):
        return 1
    ks.unchanged = True  # no key or no TTL: nothing changed, as Redis
    return 0


def _rename(ks: Keyspace, src: bytes, dst: bytes, nx: bool) -> object:
    value = ks.lookup(src)
    if value is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if src == dst or (nx and ks.lookup(dst) is not None):
        ks.unchanged = True  # as Redis: nothing renamed, not dirty, not logged
        return 0 if nx else OK
    when = ks.get_expire(src)
    clock = ks.clocks.get(src)
    ks.delete(dst)
    ks.delete(src)
    ks.store(dst, value)
    if type(value) is Stream:
        _signal_new_stream(ks, dst, value)
    access.move_clock(ks, dst, clock)  # the object moves, its clock with it
    if when is not None:
        ks.set_expire(dst, when)
    return 1 if nx else OK


def _signal_new_stream(ks: Keyspace, key: bytes, s: Stream) -> None:
    """A stream put at ``key`` of the current database (RENAME, COPY, MOVE):
    Redis's dbAdd signals the new key ready, so its blocked reads whose ID
    its last ID is past are served: its last ID is taken as added (which
    travels with it, a cross-shard operation's result too), and its
    waiters here are signaled."""
    s.added = s.last_id
    if ks.waiters is not None:
        ks.waiters.signal(key)


def rename(ks: Keyspace, args: list[bytes]) -> object:
    """RENAME key newkey"""
    return _rename(ks, args[1], args[2], False)


def renamenx(ks: Keyspace, args: list[bytes]) -> object:
    """RENAMENX key newkey"""
    return _rename(ks, args[1], args[2], True)


def _db_arg(ks: Keyspace, arg: bytes) -> int:
    """A database index argument: an int in range, or Redis's errors."""
    db = parse_int32(arg)
    if not 0 <= db < len(ks.dbs):
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    return db


def copy(ks: Keyspace, args: list[bytes]) -> object:
    """COPY source destination [DB destination-db] [REPLACE]"""
    src, dst = args[1], args[2]
    replace = False
    target = ks.db
    j = 3
    while j < len(args):
        opt = args[j].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and j + 1 < len(args):
            target = _db_arg(ks, args[j + 1])
            j += 1
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    if src == dst and target == ks.db:
        raise CommandError(errors.SAME_OBJECT)
    with ks.reading():  # the source is read, the destination written
        value = ks.lookup(src)
    if value is None:
        ks.unchanged = True  # as Redis: nothing copied, not dirty, not logged
        return 0
    when = ks.get_expire(src)
    with ks.selected(target):
        if ks.lookup(dst) is not None:
            if not replace:
                ks.unchanged = True  # a destination held: nothing copied
                return 0
            ks.delete(dst)
        copied = copy_value(value)
        ks.store(dst, copied)
        if type(copied) is Stream:
            _signal_new_stream(ks, dst, copied)
        if when is not None:
            ks.set_expire(dst, when)
    return 1


def move(ks: Keyspace, args: list[bytes]) -> object:
    """MOVE key db"""
    key = args[1]
    target = _db_arg(ks, args[2])
    if target == ks.db:
        raise CommandError(errors.SAME_OBJECT)
    value = ks.lookup(key)
    if value is None:
        ks.unchanged = True  # as Redis: nothing moved, not dirty, not logged
        return 0
    when = ks.get_expire(key)
    clock = ks.clocks.get(key)
    with ks.selected(target):
        if ks.lookup(key) is not None:
            ks.unchanged = True  # held there already: nothing moved
            return 0
        ks.store(key, value)
        if type(value) is Stream:
            _signal_new_stream(ks, key, value)
        access.move_clock(ks, key, clock)  # the object moves, its clock with it
        if when is not None:
            ks.set_expire(key, when)
    ks.delete(key)
    return 1


# -- OBJECT ---------------------------------------------------------------

HASH_MAX_LISTPACK_ENTRIES = 512  # Redis 7.0's default (zsets keep 128)
HASH_MAX_LISTPACK_VALUE = 64
SET_MAX_INTSET_ENTRIES = 512
OBJ_SHARED_INTEGERS = 10000  # Redis shares the objects of 0..9999
OBJ_SHARED_REFCOUNT = 2**31 - 1


def _string_encoding(value: bytes) -> str:
    if len(value) <= 20 and strict_int(value) is not None:
        return "int"
    return "embstr" if len(value) <= 44 else "raw"


def _hash_encoding(value: dict) -> str:
    if len(value) > HASH_MAX_LISTPACK_ENTRIES:
        return "hashtable"
    limit = HASH_MAX_LISTPACK_VALUE
    for field, v in value.items():
        if len(field) > limit or len(v) > limit:
            return "hashtable"
    return "listpack"


def _set_encoding(value: set) -> str:
    if len(value) > SET_MAX_INTSET_ENTRIES:
        return "hashtable"
    return "intset" if all(strict_int(m) is not None for m in value) else "hashtable"


# Each type's OBJECT ENCODING, as Redis 7.0 would have chosen it for the
# value as it is now; a type whose values know it (ZSet.encoding) needs no
# entry.  Redis never converts back to the compact form when a value
# shrinks, and these derive it from the contents, so they differ there.
ENCODINGS: dict[type, Callable[[Any], str]] = {
    bytes: _string_encoding,
    bytearray: lambda v: _string_encoding(bytes(v)),
    dict: _hash_encoding,
    deque: lambda v: "quicklist",  # Redis 7.0 keeps every list in a quicklist
    set: _set_encoding,
}


def object_encoding(value: object) -> str:
    encode = ENCODINGS.get(type(value))
    return encode(value) if encode is not None else value.encoding  # type: ignore[attr-defined]


def _shares_integers(ks: Keyspace) -> bool:
    """Does Redis use its shared integer objects (not under maxmemory with
    an LRU or LFU policy, where each value needs its own access clock)?"""
    runtime = ks.runtime
    policy = runtime.maxmemory_policy
    return not (runtime.maxmemory and ("lru" in policy or "lfu" in policy))


_OBJECT_HELP = [
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
]


def object_(ks: Keyspace, args: list[bytes]) -> object:
    """OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT key | OBJECT HELP"""
    problem = check_subcommand(args)
    if problem:
        raise CommandError(problem)
    sub = args[1].lower()
    if sub == b"help":
        return list(_OBJECT_HELP)
    mask = ks.event_mask
    ks.event_mask = mask & ~KEYMISS  # a miss is no keymiss event (Redis's LOOKUP_NONOTIFY)
    try:
        value = ks.peek(args[2])  # not an access (Redis's LOOKUP_NOTOUCH)
    finally:
        ks.event_mask = mask
    if value is None:
        return None
    if sub == b"encoding":
        if type(value) is bytes and ks.is_raw(args[2], value):
            return b"raw"  # changed in place (see Keyspace.raw_strings)
        return object_encoding(value).encode()
    lfu = access.lfu_policy(ks)
    if sub == b"freq":
        if not lfu:
            raise CommandError(errors.LFU_NOT_SELECTED)
        return access.frequency(ks, args[2])
    if sub == b"idletime":
        if lfu:
            raise CommandError(errors.LRU_NOT_SELECTED)
        return access.idle_seconds(ks, args[2])
    # refcount
    if type(value) is bytes and _shares_integers(ks):
        n = strict_int(value) if len(value) <= 20 else None
        if n is not None and 0 <= n < OBJ_SHARED_INTEGERS:
            return OBJ_SHARED_REFCOUNT
    return 1


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "del": delete,
    "unlink": delete,
    "exists": exists,
    "touch": touch,
    "type": type_,
    "expire": expire,
    "pexpire": pexpire,
    "expireat": expireat,
    "pexpireat": pexpireat,
    "ttl": ttl,
    "pttl": pttl,
    "expiretime": expiretime,
    "pexpiretime": pexpiretime,
    "persist": persist,
    "rename": rename,
    "renamenx": renamenx,
    "copy": copy,
    "move": move,
    "object": object_,
}
