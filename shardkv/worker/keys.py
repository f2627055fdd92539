"""Keyspace commands that work on keys of any type."""

from __future__ import annotations

from collections import deque

from shardkv import errors
from shardkv.args import parse_int
from shardkv.errors import CommandError
from shardkv.resp import OK
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.registry import command
from shardkv.worker.strings import LLONG_MAX, LLONG_MIN

# How to copy a value of each type for COPY; other type modules add theirs.
COPIERS: dict[type, object] = {
    bytes: lambda v: v,
    dict: dict.copy,
    deque: deque.copy,
    set: set.copy,
}


def copy_value(value: object) -> object:
    return COPIERS[type(value)](value)  # type: ignore[operator]


@command("del", "unlink")
def delete(ks: Keyspace, args: list[bytes]) -> object:
    """DEL key [key ...]"""
    return sum(1 for key in args[1:] if ks.delete(key))


@command("exists")
def exists(ks: Keyspace, args: list[bytes]) -> object:
    """EXISTS key [key ...]"""
    return sum(1 for key in args[1:] if ks.lookup(key) is not None)


@command("touch")
def touch(ks: Keyspace, args: list[bytes]) -> object:
    """TOUCH key [key ...]"""
    return exists(ks, args)


@command("type")
def type_(ks: Keyspace, args: list[bytes]) -> object:
    """TYPE key"""
    value = ks.lookup(args[1])
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
    if unit_ms == 1000 and (when > LLONG_MAX // 1000 or when < LLONG_MIN // 1000):
        raise CommandError(errors.INVALID_EXPIRE % name)
    when *= unit_ms
    if not absolute:
        when += ks.now
        if when > LLONG_MAX or when < LLONG_MIN:
            raise CommandError(errors.INVALID_EXPIRE % name)
    if ks.lookup(key) is None:
        return 0
    current = ks.get_expire(key)
    if nx and current is not None:
        return 0
    if xx and current is None:
        return 0
    if gt and (current is None or when <= current):
        return 0
    if lt and current is not None and when >= current:
        return 0
    if when <= ks.now:
        ks.delete(key)
    else:
        ks.set_expire(key, when)
    return 1


@command("expire")
def expire(ks: Keyspace, args: list[bytes]) -> object:
    """EXPIRE key seconds [NX | XX | GT | LT]"""
    return _expire(ks, args, 1000, False)


@command("pexpire")
def pexpire(ks: Keyspace, args: list[bytes]) -> object:
    """PEXPIRE key milliseconds [NX | XX | GT | LT]"""
    return _expire(ks, args, 1, False)


@command("expireat")
def expireat(ks: Keyspace, args: list[bytes]) -> object:
    """EXPIREAT key unix-time-seconds [NX | XX | GT | LT]"""
    return _expire(ks, args, 1000, True)


@command("pexpireat")
def pexpireat(ks: Keyspace, args: list[bytes]) -> object:
    """PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]"""
    return _expire(ks, args, 1, True)


def _remaining_ms(ks: Keyspace, key: bytes) -> int | None:
    """-2 (as None) for a missing key, -1 for no TTL, else ms left."""
    if ks.lookup(key) is None:
        return None
    when = ks.get_expire(key)
    return -1 if when is None else max(when - ks.now, 0)


@command("ttl")
def ttl(ks: Keyspace, args: list[bytes]) -> object:
    """TTL key"""
    ms = _remaining_ms(ks, args[1])
    if ms is None:
        return -2
    return -1 if ms == -1 else (ms + 500) // 1000


@command("pttl")
def pttl(ks: Keyspace, args: list[bytes]) -> object:
    """PTTL key"""
    ms = _remaining_ms(ks, args[1])
    return -2 if ms is None else ms


@command("expiretime")
def expiretime(ks: Keyspace, args: list[bytes]) -> object:
    """EXPIRETIME key"""
    if ks.lookup(args[1]) is None:
        return -2
    when = ks.get_expire(args[1])
    return -1 if when is None else when // 1000


@command("pexpiretime")
def pexpiretime(ks: Keyspace, args: list[bytes]) -> object:
    """PEXPIRETIME key"""
    if ks.lookup(args[1]) is None:
        return -2
    when = ks.get_expire(args[1])
    return -1 if when is None else when


@command("persist")
def persist(ks: Keyspace, args: list[bytes]) -> object:
    """PERSIST key"""
    if ks.lookup(args[1]) is None:
        return 0
    return 1 if ks.persist(args[1]) else 0


def _rename(ks: Keyspace, src: bytes, dst: bytes, nx: bool) -> object:
    value = ks.lookup(src)
    if value is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if src == dst:
        return 0 if nx else OK
    if nx and ks.lookup(dst) is not None:
        return 0
    when = ks.get_expire(src)
    ks.delete(dst)
    ks.delete(src)
    ks.store(dst, value)
    if when is not None:
        ks.set_expire(dst, when)
    return 1 if nx else OK


@command("rename")
def rename(ks: Keyspace, args: list[bytes]) -> object:
    """RENAME key newkey"""
    return _rename(ks, args[1], args[2], False)


@command("renamenx")
def renamenx(ks: Keyspace, args: list[bytes]) -> object:
    """RENAMENX key newkey"""
    return _rename(ks, args[1], args[2], True)


@command("copy")
def copy(ks: Keyspace, args: list[bytes]) -> object:
    """COPY source destination [DB destination-db] [REPLACE]"""
    src, dst = args[1], args[2]
    replace = False
    j = 3
    while j < len(args):
        opt = args[j].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and j + 1 < len(args):
            if parse_int(args[j + 1]) != 0:
                raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
            j += 1
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    if src == dst:
        raise CommandError("ERR source and destination objects are the same")
    value = ks.lookup(src)
    if value is None:
        return 0
    if ks.lookup(dst) is not None:
        if not replace:
            return 0
        ks.delete(dst)
    when = ks.get_expire(src)
    ks.store(dst, copy_value(value))
    if when is not None:
        ks.set_expire(dst, when)
    return 1
