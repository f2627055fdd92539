"""Commands that act on the whole shard, and the acceptor's internal queries.

Names starting with ``__`` are not in the command table, so no client can
send them: the acceptor uses them to ask each shard for its part of SCAN,
INFO and the like.
"""

from __future__ import annotations

import os

from shardkv import errors
from shardkv.args import parse_int
from shardkv.errors import CommandError
from shardkv.glob import compile_glob
from shardkv.resp import OK
from shardkv.worker.keyspace import TYPE_NAMES, Keyspace
from shardkv.worker.registry import command

try:
    import psutil

    _PROCESS = psutil.Process(os.getpid())
except ImportError:  # pragma: no cover
    _PROCESS = None


@command("dbsize")
def dbsize(ks: Keyspace, args: list[bytes]) -> object:
    """DBSIZE"""
    return ks.dbsize()


@command("flushall", "flushdb")
def flushall(ks: Keyspace, args: list[bytes]) -> object:
    """FLUSHALL [ASYNC | SYNC]"""
    if len(args) > 2 or (len(args) == 2 and args[1].upper() not in (b"ASYNC", b"SYNC")):
        raise CommandError(errors.SYNTAX)
    ks.flush()
    return OK


@command("keys")
def keys(ks: Keyspace, args: list[bytes]) -> object:
    """KEYS pattern"""
    match = compile_glob(args[1])
    return [k for k in ks.iter_keys() if match(k)]


@command("randomkey")
def randomkey(ks: Keyspace, args: list[bytes]) -> object:
    """RANDOMKEY"""
    return ks.random_key()


@command("__scan")
def scan(ks: Keyspace, args: list[bytes]) -> object:
    """__scan slot count pattern type -> [next slot or -1, keys]

    The acceptor has parsed SCAN's options; ``pattern`` and ``type`` are
    empty when not given.
    """
    slot, count = int(args[1]), int(args[2])
    pattern, kind = args[3], args[4].decode("latin-1").lower()
    next_slot, found = ks.scan(slot, count)
    if pattern and pattern != b"*":
        match = compile_glob(pattern)
        found = [k for k in found if match(k)]
    if kind:
        found = [k for k in found if TYPE_NAMES.get(type(ks.lookup(k))) == kind]
    return [next_slot, found]


@command("__info")
def info(ks: Keyspace, args: list[bytes]) -> object:
    """__info -> [keys, keys with a TTL, expired keys, rss bytes, pid]"""
    rss = _PROCESS.memory_info().rss if _PROCESS is not None else 0
    return [ks.dbsize(), ks.nvolatile, ks.expired_keys, rss, os.getpid()]


@command("__ping")
def ping(ks: Keyspace, args: list[bytes]) -> object:
    """__ping -> PONG, to check that a shard answers."""
    return "PONG"


def parse_count(arg: bytes) -> int:
    count = parse_int(arg)
    if count < 1:
        raise CommandError(errors.SYNTAX)
    return count


@command("__watch")
def watch(ks: Keyspace, args: list[bytes]) -> object:
    """__watch key... -> the keys' current versions; counts the watchers."""
    counts = ks.watch_counts
    out = []
    for key in args[1:]:
        ks.lookup(key)
        counts[key] = counts.get(key, 0) + 1
        out.append(ks.watched.setdefault(key, 0))
    return out


@command("__unwatch")
def unwatch(ks: Keyspace, args: list[bytes]) -> object:
    """__unwatch key... -> OK; forgets keys nobody watches any more."""
    counts = ks.watch_counts
    for key in args[1:]:
        n = counts.get(key, 0) - 1
        if n <= 0:
            counts.pop(key, None)
            ks.watched.pop(key, None)
        else:
            counts[key] = n
    return OK
