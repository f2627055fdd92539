"""Clients blocked on one key through different acceptors are woken in the
order they blocked, by a push through either acceptor, against both servers.

Redis keeps one FIFO of clients per (database, key) and serves the one
that has waited longest first (``serveClientsBlockedOnKey``): a push of N
elements serves N of them in that order, an XADD serves every XREAD
waiting on the stream, and an XADD serves the XREADGROUP ``>`` waiters one
by one (the first takes the entry, the group's last ID then stands past
it).  A client blocked in database 1 waits on database 1's key only: a
push to the same name in database 0 serves no one; SWAPDB, MOVE and COPY
... DB serve it (Redis's ``dbAdd`` signals the key ready in its database:
shardkv used to miss MOVE's and COPY's key there, see ``Waiters.mark``).

Each case is a list of steps: ``("block", name, acceptor, db, *command)``
sends a blocking command on a connection of its own through that
acceptor, and waits until CLIENT LIST shows it blocked, before the next
step (so the order of blocking is certain); ``("close", name)`` closes
that client's connection and waits until CLIENT LIST no longer shows it; ``("write", acceptor, db,
*command)`` runs a command on a writer connection through that acceptor;
``("pipe", acceptor, db, command, ...)`` sends its commands there in one
go, then reads their replies (``id:<name>`` stands for the id of the
blocked client ``name``).
At the end each blocked client still waiting is unblocked (CLIENT
UNBLOCK, whose 0 or 1 is recorded) and its reply read.  shardkv runs with
two shards and one acceptor, then two; with one acceptor, or against
redis-server, "acceptor" 0 and 1 are any connection.  ``A`` and ``B``
stand for keys of two different shards.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time

import psutil
import pytest

from shardkv.acceptor.blocking import SETTLE_WAIT_S
from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import ErrorReply, RespClient, encode_command
from tests.support.waits import WAIT

A, B = key_on(0, "fifo", shards=2), key_on(1, "fifo", shards=2)

# A script's push, pipelined with a read of a BLMOVE's destination.
_RPUSH_X = "return redis.call('rpush', KEYS[1], 'x')"
_RPUSH_X_SHA = hashlib.sha1(_RPUSH_X.encode()).hexdigest()


# A push to a key the script builds (ARGV[1] .. ARGV[2]), declared in no
# KEYS: run where KEYS[1] is, it escapes to the key's shard (issue 22).
_PUSH_BUILT = "redis.call('rpush', ARGV[1] .. ARGV[2], 'x') return redis.call('exists', KEYS[1])"
_PUSH_BUILT_SHA = hashlib.sha1(_PUSH_BUILT.encode()).hexdigest()
_PUSH_LIBRARY = (
    "#!lua name=fifo_built\n"
    "redis.register_function('fifo_push_built', function(keys, args)"
    " return redis.call('rpush', args[1] .. args[2], 'x') end)"
)

# The same, KEYS[1] naming no key (run on shard 0, A's); and a push to
# KEYS[1] after ``SELECT ARGV[1]``, in that database; and a push to
# ARGV[2] after ``SELECT ARGV[1]`` (issue 22).
_PUSH_NO_KEYS = "return redis.call('rpush', ARGV[1] .. ARGV[2], 'x')"
# A read of KEYS[1], pipelined behind such a script (the shortcut's run).
_LRANGE = "return redis.call('lrange', KEYS[1], 0, -1)"
_LRANGE_SHA = hashlib.sha1(_LRANGE.encode()).hexdigest()
_SELECT_PUSH = "redis.call('select', ARGV[1]) return redis.call('rpush', KEYS[1], 'x')"
_SELECT_PUSH_SHA = hashlib.sha1(_SELECT_PUSH.encode()).hexdigest()
_SELECT_PUSH_BUILT = "redis.call('select', ARGV[1]) return redis.call('rpush', ARGV[2], 'x')"
_SELECT_LIBRARY = (
    "#!lua name=fifo_select\n"
    "redis.register_function('fifo_select_push', function(keys, args)"
    " redis.call('select', args[1]) return redis.call('rpush', keys[1], 'x') end)"
)


# Pushes to KEYS[1], then to KEYS[2]; the length of KEYS[1] meanwhile.
PUSH_BOTH = (
    "redis.call('RPUSH', KEYS[1], 'x') redis.call('RPUSH', KEYS[2], 'y') return redis.call('LLEN', KEYS[1])"
)


# Pushes y to KEYS[2], then x to KEYS[1].
PUSH_Y_X = "redis.call('RPUSH', KEYS[2], 'y') redis.call('RPUSH', KEYS[1], 'x') return 1"


# Pushes x1 to KEYS[1], y1 to KEYS[2], then x2 to KEYS[1].
PUSH_X_Y_X = (
    "redis.call('RPUSH', KEYS[1], 'x1') redis.call('RPUSH', KEYS[2], 'y1') "
    "redis.call('RPUSH', KEYS[1], 'x2') return 1"
)


def _lists(cmd: str, *, keys: tuple[str, ...] = ("A",), push: str = "RPUSH") -> list:
    """Three clients blocked through acceptors 0, 1, 0; one push of two
    elements through acceptor 1 serves the first two, a push through
    acceptor 0 the third."""
    return [
        ("block", "c1", 0, 0, *cmd.split(), *keys, 0),
        ("block", "c2", 1, 0, *cmd.split(), *keys, 0),
        ("block", "c3", 0, 0, *cmd.split(), *keys, 0),
        ("write", 1, 0, push, "A", "a", "b"),
        ("write", 0, 0, push, "A", "c", "d"),
        ("write", 0, 0, "LRANGE", "A", 0, -1),
    ]


CASES: dict[str, list] = {
    "blpop": _lists("BLPOP"),
    "blpop-two-shards": _lists("BLPOP", keys=("B", "A")),
    "brpop": _lists("BRPOP"),
    "brpop-lpush": _lists("BRPOP", push="LPUSH"),
    # Four clients, alternating acceptors, one push of three through 0.
    "blpop-push-three": [
        ("block", "c1", 1, 0, "BLPOP", "A", 0),
        ("block", "c2", 0, 0, "BLPOP", "A", 0),
        ("block", "c3", 1, 0, "BLPOP", "A", 0),
        ("block", "c4", 0, 0, "BLPOP", "A", 0),
        ("write", 0, 0, "RPUSH", "A", "a", "b", "c"),
        ("write", 1, 0, "LLEN", "A"),
    ],
    # Each push of one element serves the next client, through either acceptor.
    "blpop-single-pushes": [
        ("block", "c1", 0, 0, "BLPOP", "A", 0),
        ("block", "c2", 1, 0, "BLPOP", "A", 0),
        ("block", "c3", 0, 0, "BLPOP", "A", 0),
        ("block", "c4", 1, 0, "BLPOP", "A", 0),
        ("write", 1, 0, "RPUSH", "A", "a"),
        ("write", 0, 0, "RPUSH", "A", "b"),
        ("write", 0, 0, "RPUSH", "A", "c"),
        ("write", 1, 0, "LLEN", "A"),
    ],
    "blmove": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "{A}d1", "LEFT", "RIGHT", 0),
        ("block", "c2", 1, 0, "BLMOVE", "A", "{A}d2", "RIGHT", "LEFT", 0),
        ("block", "c3", 0, 0, "BLMOVE", "A", "{A}d3", "LEFT", "LEFT", 0),
        ("write", 1, 0, "RPUSH", "A", "a", "b"),
        ("write", 0, 0, "LRANGE", "{A}d1", 0, -1),
        ("write", 0, 0, "LRANGE", "{A}d2", 0, -1),
        ("write", 1, 0, "RPUSH", "A", "c"),
        ("write", 1, 0, "LRANGE", "{A}d3", 0, -1),
    ],
    # BLMOVE's destination on the other shard.
    "blmove-two-shards": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("block", "c2", 1, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("write", 1, 0, "RPUSH", "A", "a", "b"),
        ("write", 0, 0, "LRANGE", "B", 0, -1),
    ],
    "bzpopmin": [
        ("block", "c1", 1, 0, "BZPOPMIN", "A", 0),
        ("block", "c2", 0, 0, "BZPOPMAX", "A", 0),
        ("block", "c3", 1, 0, "BZPOPMIN", "A", 0),
        ("write", 0, 0, "ZADD", "A", 1, "m", 2, "n"),
        ("write", 1, 0, "ZADD", "A", 3, "o"),
        ("write", 0, 0, "ZCARD", "A"),
    ],
    "bzpopmin-two-shards": [
        ("block", "c1", 0, 0, "BZPOPMIN", "B", "A", 0),
        ("block", "c2", 1, 0, "BZPOPMIN", "A", "B", 0),
        ("block", "c3", 0, 0, "BZPOPMIN", "A", 0),
        ("write", 1, 0, "ZADD", "A", 1, "m", 2, "n", 3, "o"),
        ("write", 0, 0, "ZCARD", "A"),
    ],
    # A client blocked on A alone after one blocked on A and B is served
    # after it (it used to pop at once what the first was notified for).
    "bzpopmin-one-shard-after-two-shards": [
        ("block", "c1", 0, 0, "BZPOPMIN", "B", "A", 0),
        ("block", "c2", 1, 0, "BZPOPMIN", "A", 0),
        ("write", 1, 0, "ZADD", "A", 1, "m", 2, "n"),
    ],
    "blpop-one-shard-after-two-shards": [
        ("block", "c1", 1, 0, "BLPOP", "B", "A", 0),
        ("block", "c2", 0, 0, "BLPOP", "A", 0),
        ("block", "c3", 1, 0, "BRPOP", "A", 0),
        ("write", 0, 0, "RPUSH", "A", "a", "b", "c"),
    ],
    "blpop-one-shard-after-two-shards-one-element": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("block", "c2", 1, 0, "BLPOP", "A", 0),
        ("write", 1, 0, "RPUSH", "A", "a"),
    ],
    "blmpop": [
        ("block", "c1", 0, 0, "BLMPOP", 0, 1, "A", "LEFT", "COUNT", 2),
        ("block", "c2", 1, 0, "BLMPOP", 0, 1, "A", "RIGHT", "COUNT", 2),
        ("block", "c3", 0, 0, "BLMPOP", 0, 1, "A", "LEFT"),
        ("write", 1, 0, "RPUSH", "A", "a", "b", "c", "d", "e"),
        ("write", 0, 0, "LRANGE", "A", 0, -1),
    ],
    "bzmpop": [
        ("block", "c1", 1, 0, "BZMPOP", 0, 1, "A", "MIN", "COUNT", 2),
        ("block", "c2", 0, 0, "BZMPOP", 0, 1, "A", "MAX"),
        ("write", 0, 0, "ZADD", "A", 1, "m", 2, "n", 3, "o", 4, "p"),
        ("write", 1, 0, "ZRANGE", "A", 0, -1),
    ],
    "xread": [
        ("write", 0, 0, "XADD", "A", "1-1", "f", "v"),
        ("block", "c1", 0, 0, "XREAD", "BLOCK", 0, "STREAMS", "A", "$"),
        ("block", "c2", 1, 0, "XREAD", "BLOCK", 0, "STREAMS", "A", "$"),
        ("block", "c3", 0, 0, "XREAD", "COUNT", 1, "BLOCK", 0, "STREAMS", "A", "1-1"),
        ("block", "c4", 1, 0, "XREAD", "BLOCK", 0, "STREAMS", "B", "A", "$", "$"),
        ("write", 1, 0, "XADD", "A", "2-1", "f", "w"),
    ],
    # Every XADD serves the next XREADGROUP ">" waiter, with that entry.
    "xreadgroup-separate-xadds": [
        ("write", 0, 0, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("block", "c1", 0, 0, "XREADGROUP", "GROUP", "g", "x1", "COUNT", 5, "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c2", 1, 0, "XREADGROUP", "GROUP", "g", "x2", "COUNT", 5, "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c3", 0, 0, "XREADGROUP", "GROUP", "g", "x3", "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c4", 1, 0, "XREADGROUP", "GROUP", "g", "x4", "BLOCK", 0, "STREAMS", "A", ">"),
        ("write", 1, 0, "XADD", "A", "1-1", "f", "a"),
        ("write", 0, 0, "XADD", "A", "1-2", "f", "b"),
        ("write", 1, 0, "XADD", "A", "1-3", "f", "c"),
        ("write", 0, 0, "XPENDING", "A", "g"),
    ],
    "xreadgroup-two-shards": [
        ("write", 0, 0, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("write", 0, 0, "XGROUP", "CREATE", "B", "g", "$", "MKSTREAM"),
        ("block", "c1", 1, 0, "XREADGROUP", "GROUP", "g", "x1", "BLOCK", 0, "STREAMS", "B", "A", ">", ">"),
        ("block", "c2", 0, 0, "XREADGROUP", "GROUP", "g", "x2", "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c3", 1, 0, "XREADGROUP", "GROUP", "g", "x3", "BLOCK", 0, "STREAMS", "A", "B", ">", ">"),
        ("write", 0, 0, "XADD", "A", "1-1", "f", "a"),
        ("write", 1, 0, "XADD", "A", "1-2", "f", "b"),
        ("write", 0, 0, "XADD", "B", "1-3", "f", "c"),
        ("write", 0, 0, "XPENDING", "A", "g"),
        ("write", 0, 0, "XPENDING", "B", "g"),
    ],
    # The same key name in two databases: a push in database 0 serves only
    # the clients blocked in database 0.
    "blpop-databases": [
        ("block", "c1", 0, 1, "BLPOP", "A", 0),
        ("block", "c2", 1, 0, "BLPOP", "A", 0),
        ("block", "c3", 1, 1, "BLPOP", "A", 0),
        ("write", 0, 0, "RPUSH", "A", "a", "b"),
        ("write", 1, 1, "RPUSH", "A", "c"),
        ("write", 0, 0, "LRANGE", "A", 0, -1),
        ("write", 0, 1, "LRANGE", "A", 0, -1),
    ],
    "blpop-databases-two-shards": [
        ("block", "c1", 0, 1, "BLPOP", "B", "A", 0),
        ("block", "c2", 1, 0, "BLPOP", "A", "B", 0),
        ("write", 0, 0, "RPUSH", "A", "a"),
        ("write", 1, 0, "RPUSH", "A", "b"),
        ("write", 0, 1, "LRANGE", "A", 0, -1),
    ],
    "bzpopmin-databases": [
        ("block", "c1", 1, 2, "BZPOPMIN", "A", 0),
        ("block", "c2", 0, 0, "BZPOPMIN", "A", 0),
        ("write", 1, 0, "ZADD", "A", 1, "m"),
        ("write", 0, 2, "ZADD", "A", 2, "n", 3, "o"),
    ],
    "xread-databases": [
        ("block", "c1", 0, 1, "XREAD", "BLOCK", 0, "STREAMS", "A", "$"),
        ("block", "c2", 1, 0, "XREAD", "BLOCK", 0, "STREAMS", "A", "$"),
        ("write", 1, 0, "XADD", "A", "1-1", "f", "v"),
    ],
    "xreadgroup-databases": [
        ("write", 0, 0, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("write", 0, 1, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("block", "c1", 1, 1, "XREADGROUP", "GROUP", "g", "x1", "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c2", 0, 0, "XREADGROUP", "GROUP", "g", "x2", "BLOCK", 0, "STREAMS", "A", ">"),
        ("write", 0, 0, "XADD", "A", "1-1", "f", "v"),
        ("write", 1, 1, "XADD", "A", "1-2", "f", "w"),
    ],
    "blmove-databases": [
        ("block", "c1", 0, 1, "BLMOVE", "A", "{A}d", "LEFT", "RIGHT", 0),
        ("block", "c2", 1, 0, "BLMOVE", "A", "{A}d", "LEFT", "RIGHT", 0),
        ("write", 1, 0, "RPUSH", "A", "a"),
        ("write", 0, 0, "LRANGE", "{A}d", 0, -1),
        ("write", 0, 1, "EXISTS", "{A}d"),
    ],
    # A served BLMOVE's push serves the clients blocked on its destination.
    "blmove-chain": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "{A}d", "LEFT", "RIGHT", 0),
        ("block", "c2", 1, 0, "BLPOP", "{A}d", 0),
        ("block", "c3", 0, 0, "BRPOPLPUSH", "{A}d", "{A}e", 0),
        ("block", "c4", 1, 0, "BLPOP", "{A}e", "{A}d", 0),
        ("write", 1, 0, "RPUSH", "A", "a", "b", "c"),
        ("write", 0, 0, "LRANGE", "A", 0, -1),
        ("write", 0, 0, "LRANGE", "{A}e", 0, -1),
    ],
    # Several keys of one shard: each client is served from the key pushed to.
    "blmpop-keys": [
        ("block", "c1", 1, 0, "BLMPOP", 0, 2, "{A}x", "A", "LEFT", "COUNT", 3),
        ("block", "c2", 0, 0, "BLPOP", "A", "{A}x", 0),
        ("block", "c3", 1, 0, "BRPOP", "{A}x", 0),
        ("write", 0, 0, "RPUSH", "A", "a", "b"),
        ("write", 1, 0, "RPUSH", "{A}x", "c", "d"),
        ("write", 0, 0, "MULTI"),
        ("write", 0, 0, "RPUSH", "{A}x", "e"),
        ("write", 0, 0, "RPUSH", "A", "f"),
        ("write", 0, 0, "EXEC"),
    ],
    # XREAD and XREADGROUP of two groups on one stream, fed one entry at a time.
    "xread-xreadgroup-mixed": [
        ("write", 0, 0, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("write", 0, 0, "XGROUP", "CREATE", "A", "h", "$"),
        ("block", "c1", 1, 0, "XREADGROUP", "GROUP", "g", "x1", "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c2", 0, 0, "XREAD", "BLOCK", 0, "STREAMS", "A", "$"),
        ("block", "c3", 1, 0, "XREADGROUP", "GROUP", "h", "y1", "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c4", 0, 0, "XREADGROUP", "GROUP", "g", "x2", "NOACK", "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c5", 1, 0, "XREADGROUP", "GROUP", "h", "y2", "BLOCK", 0, "STREAMS", "A", ">"),
        ("write", 0, 0, "XADD", "A", "1-1", "f", "a"),
        ("write", 1, 0, "XADD", "A", "1-2", "f", "b"),
        ("write", 0, 0, "XINFO", "GROUPS", "A"),
    ],
    # SWAPDB, MOVE and COPY ... DB make a key of another database ready.
    "swapdb": [
        ("write", 0, 1, "RPUSH", "A", "a"),
        ("write", 0, 3, "ZADD", "A", 1, "m"),
        ("block", "c1", 1, 0, "BLPOP", "A", 0),
        ("block", "c2", 0, 2, "BZPOPMIN", "A", 0),
        ("block", "c3", 1, 0, "BLPOP", "A", 0),
        ("write", 1, 0, "SWAPDB", 0, 1),
        ("write", 0, 0, "SWAPDB", 2, 3),
    ],
    # MOVE and COPY ... DB write a key of another database, which serves
    # the clients blocked on it there (Redis's dbAdd signals it ready).
    "move-copy": [
        ("block", "c1", 0, 1, "BLPOP", "A", 0),
        ("block", "c2", 1, 2, "BLPOP", "A", 0),
        ("block", "c3", 0, 0, "BLPOP", "A", 0),
        ("block", "c4", 1, 3, "BZPOPMIN", "A", 0),
        ("write", 1, 0, "RPUSH", "{A}s", "a", "b"),
        ("write", 1, 0, "COPY", "{A}s", "A", "DB", 2),
        ("write", 0, 0, "MOVE", "{A}s", 1),
        ("write", 0, 1, "RENAME", "{A}s", "A"),
        ("write", 1, 1, "LRANGE", "A", 0, -1),
        ("write", 1, 2, "LRANGE", "A", 0, -1),
        ("write", 1, 0, "ZADD", "A", 1, "m", 2, "n"),
        ("write", 0, 0, "MOVE", "A", 3),
        ("write", 0, 3, "ZRANGE", "A", 0, -1),
    ],
    "copy-db-two-shards": [
        ("block", "c1", 1, 2, "BLPOP", "A", 0),
        ("block", "c2", 0, 2, "BLPOP", "A", 0),
        ("write", 0, 0, "RPUSH", "B", "a", "b", "c"),
        ("write", 1, 0, "COPY", "B", "A", "DB", 2),
        ("write", 0, 2, "LRANGE", "A", 0, -1),
    ],
    "multi-move": [
        ("block", "c1", 1, 1, "BLPOP", "A", 0),
        ("write", 0, 0, "RPUSH", "A", "a"),
        ("write", 0, 0, "MULTI"),
        ("write", 0, 0, "MOVE", "A", 1),
        ("write", 0, 0, "EXEC"),
    ],
    # A push and the pusher's next command in one read: the client blocked
    # on two shards has the element by the time the next command runs, as
    # Redis serves it when the push ends (handleClientsBlockedOnKeys).
    "blpop-two-shards-pipelined-del": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("pipe", 1, 0, ("RPUSH", "A", "x"), ("DEL", "A")),
        ("write", 0, 0, "EXISTS", "A"),
    ],
    "bzpopmin-two-shards-pipelined-del": [
        ("block", "c1", 1, 0, "BZPOPMIN", "A", "B", 0),
        ("block", "c2", 0, 0, "BZMPOP", 0, 2, "B", "A", "MAX", "COUNT", 2),
        ("pipe", 0, 0, ("ZADD", "A", 1, "m", 2, "n", 3, "o"), ("DEL", "A")),
        ("write", 1, 0, "EXISTS", "A"),
    ],
    "blpop-two-shards-pipelined-swapdb": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("block", "c2", 1, 1, "BLPOP", "A", "B", 0),
        ("pipe", 1, 0, ("RPUSH", "A", "x"), ("SWAPDB", 0, 1)),
        ("write", 0, 0, "LRANGE", "A", 0, -1),
        ("write", 0, 1, "LRANGE", "A", 0, -1),
    ],
    # The push serves the first client; SWAPDB brings what is left to the
    # database of the second.
    "blmpop-two-shards-pipelined-swapdb": [
        ("block", "c1", 1, 0, "BLMPOP", 0, 2, "B", "A", "LEFT"),
        ("block", "c2", 0, 1, "BRPOP", "A", "B", 0),
        ("pipe", 0, 0, ("RPUSH", "A", "x", "y", "z"), ("SWAPDB", 0, 1)),
        ("write", 1, 0, "LRANGE", "A", 0, -1),
        ("write", 1, 1, "LRANGE", "A", 0, -1),
    ],
    # CLIENT UNBLOCK right behind the push: the push served the client
    # first (CLIENT UNBLOCK 0), whichever acceptor each is on (the shard
    # serving in place waits for the verdict while CLIENT UNBLOCK asks it).
    "blpop-two-shards-pipelined-unblock": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("pipe", 1, 0, ("RPUSH", "A", "x"), ("CLIENT", "UNBLOCK", "id:c1")),
        ("write", 0, 0, "EXISTS", "A"),
    ],
    "bzpopmin-two-shards-pipelined-unblock": [
        ("block", "c1", 1, 0, "BZPOPMIN", "A", "B", 0),
        ("pipe", 1, 0, ("ZADD", "B", 1, "m"), ("CLIENT", "UNBLOCK", "id:c1", "ERROR"), ("ZCARD", "B")),
    ],
    # A transaction (or a step held across shards, and what rides along on
    # it) of the other acceptor that pushes: the client blocked on two
    # shards is served once it ends, never in its middle.
    "blpop-two-shards-exec-held": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        (
            "pipe",
            1,
            0,
            ("MULTI",),
            ("RPUSH", "A", "x", "y"),
            ("EXISTS", "B"),
            ("LRANGE", "A", 0, -1),
            ("EXEC",),
            ("LRANGE", "A", 0, -1),
        ),
    ],
    # Redis serves the client blocked on two shards right after the EXEC,
    # from A, the key it made ready first: the pusher's next command sees
    # A empty (it used to see x, the client's try coming after it).
    "blpop-two-shards-exec-both-shards": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("block", "c2", 1, 0, "BLPOP", "A", 0),
        (
            "pipe",
            1,
            0,
            ("MULTI",),
            ("RPUSH", "A", "x"),
            ("RPUSH", "B", "y"),
            ("LLEN", "A"),
            ("EXEC",),
            ("LLEN", "A"),
        ),
        ("write", 0, 0, "LRANGE", "B", 0, -1),
    ],
    # The same by a script: Redis serves the client when the script ends.
    "blpop-two-shards-eval-both-shards": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("block", "c2", 1, 0, "BLPOP", "A", 0),
        (
            "pipe",
            1,
            0,
            ("EVAL", PUSH_BOTH, 2, "A", "B"),
            ("LLEN", "A"),
        ),
        ("write", 0, 0, "LRANGE", "B", 0, -1),
    ],
    # The same through the waiter's own acceptor, of sorted sets.
    "bzpopmin-two-shards-exec-both-shards": [
        ("block", "c1", 0, 0, "BZPOPMIN", "B", "A", 0),
        (
            "pipe",
            0,
            0,
            ("MULTI",),
            ("ZADD", "A", 1, "x"),
            ("ZADD", "B", 2, "y"),
            ("EXEC",),
            ("ZCARD", "A"),
            ("ZRANGE", "B", 0, -1),
        ),
    ],
    "blpop-two-shards-mset-ride-along": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        (
            "pipe",
            1,
            0,
            ("MSET", "{A}s", 1, "{B}s", 2),
            ("RPUSH", "A", "x", "y"),
            ("LRANGE", "A", 0, -1),
            ("EXISTS", "A", "B"),
        ),
    ],
    # Redis serves a blocked BLMOVE when the push that made its source
    # ready ends, in the same step (serveClientsBlockedOnKeys): the
    # pusher's next commands, pipelined or not, and any other client's,
    # see the element moved; with several such clients, each push serves
    # the next one in the order they blocked, before a client blocked on
    # the source alone after them (issue 22).
    "blmove-two-shards-pipelined-llen": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 1, 0, ("RPUSH", "A", "x"), ("LLEN", "A"), ("LRANGE", "B", 0, -1)),
    ],
    "blmove-two-shards-then-read": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("write", 1, 0, "RPUSH", "A", "x"),
        ("write", 1, 0, "LRANGE", "B", 0, -1),
        ("write", 0, 0, "LLEN", "A"),
    ],
    "blmove-two-shards-pushes-pipelined": [
        ("block", "c1", 1, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("block", "c2", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 1, 0, ("RPUSH", "A", "a"), ("RPUSH", "A", "b"), ("LRANGE", "B", 0, -1)),
    ],
    # A script (EVAL, EVALSHA, one inside EXEC) pushing to the source
    # through the other acceptor: the writer's next command sees the
    # element moved too (EVALSHA's shortcut skipped the movers' check).
    "blmove-two-shards-pipelined-eval": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 1, 0, ("EVAL", _RPUSH_X, 1, "A"), ("LRANGE", "B", 0, -1)),
    ],
    "blmove-two-shards-pipelined-evalsha": [
        ("write", 1, 0, "SCRIPT", "LOAD", _RPUSH_X),
        ("write", 1, 0, "EVALSHA", _RPUSH_X_SHA, 1, "{A}w"),
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 1, 0, ("EVALSHA", _RPUSH_X_SHA, 1, "A"), ("LRANGE", "B", 0, -1)),
    ],
    # The same script on another key keeps EVALSHA's shortcut while the
    # move waits; then on the source, behind it, it takes the long way.
    "blmove-two-shards-pipelined-evalsha-other-key-then-source": [
        ("write", 1, 0, "SCRIPT", "LOAD", _RPUSH_X),
        ("write", 1, 0, "EVALSHA", _RPUSH_X_SHA, 1, "{A}w"),
        ("write", 1, 0, "EVALSHA", _RPUSH_X_SHA, 1, "{B}w"),
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        (
            "pipe",
            1,
            0,
            ("EVALSHA", _RPUSH_X_SHA, 1, "{B}w"),
            ("EVALSHA", _RPUSH_X_SHA, 1, "A"),
            ("LRANGE", "B", 0, -1),
        ),
    ],
    # A one-key EVALSHA pushing to a key of a cross-shard pop (its
    # shortcut: a write on one shard pops in place), the pusher's read
    # after it: the client was served first, as in Redis.
    "blpop-two-shards-pipelined-evalsha": [
        ("write", 1, 0, "SCRIPT", "LOAD", _RPUSH_X),
        ("write", 1, 0, "EVALSHA", _RPUSH_X_SHA, 1, "{A}w"),
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("pipe", 1, 0, ("EVALSHA", _RPUSH_X_SHA, 1, "A"), ("LLEN", "A")),
    ],
    # A group of pipelined EVALSHAs, the fourth on the source: the three
    # before it keep the shortcut, it and what follows wait for them, and
    # the move (of either acceptor, in the order they blocked) is done
    # before the read of the destination.
    "blmove-two-shards-pipelined-evalshas-source-later": [
        ("write", 0, 0, "SCRIPT", "LOAD", _RPUSH_X),
        ("write", 0, 0, "EVALSHA", _RPUSH_X_SHA, 1, "{A}w"),
        ("write", 0, 0, "EVALSHA", _RPUSH_X_SHA, 1, "{B}w"),
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("block", "c2", 1, 0, "BRPOPLPUSH", "A", "B", 0),
        (
            "pipe",
            0,
            0,
            ("EVALSHA", _RPUSH_X_SHA, 1, "{B}w"),
            ("EVALSHA", _RPUSH_X_SHA, 1, "{A}w"),
            ("EVALSHA", _RPUSH_X_SHA, 1, "{B}w"),
            ("EVALSHA", _RPUSH_X_SHA, 1, "A"),
            ("EVALSHA", _RPUSH_X_SHA, 1, "{B}w"),
            ("LRANGE", "B", 0, -1),
            ("EVALSHA", _RPUSH_X_SHA, 1, "A"),
            ("LRANGE", "B", 0, -1),
            ("LLEN", "{B}w"),
        ),
    ],
    "blmove-two-shards-pipelined-exec-eval": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 1, 0, ("MULTI",), ("EVAL", _RPUSH_X, 1, "A"), ("EXEC",), ("LRANGE", "B", 0, -1)),
    ],
    # A script that writes a key of a cross-shard wait it does not declare
    # (it escapes, and runs again across shards): Redis serves the client
    # right after it, so its writer's next command sees the pop or move
    # done (the LLEN was 1 and the LRANGE [] before).  The EVALSHA's
    # second call runs across shards at once, with the key its first
    # escaped to (remembered).
    "blpop-two-shards-pipelined-eval-undeclared": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("pipe", 1, 0, ("EVAL", _PUSH_BUILT, 1, "{B}w", "A", ""), ("LLEN", "A")),
        ("block", "c2", 1, 0, "BLPOP", "A", "B", 0),
        ("pipe", 1, 0, ("EVAL", _PUSH_BUILT, 1, "{B}w", "A", ""), ("LLEN", "A")),
    ],
    "blmove-two-shards-pipelined-evalsha-undeclared": [
        ("write", 0, 0, "SCRIPT", "LOAD", _PUSH_BUILT),
        ("block", "c1", 1, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 0, 0, ("EVALSHA", _PUSH_BUILT_SHA, 1, "{B}w", "A", ""), ("LRANGE", "B", 0, -1)),
        ("block", "c2", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 0, 0, ("EVALSHA", _PUSH_BUILT_SHA, 1, "{B}w", "A", ""), ("LRANGE", "B", 0, -1)),
    ],
    "blmove-blpop-two-shards-pipelined-fcall-undeclared": [
        ("write", 1, 0, "FUNCTION", "LOAD", "REPLACE", _PUSH_LIBRARY),
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 1, 0, ("FCALL", "fifo_push_built", 1, "{B}w", "A", ""), ("LRANGE", "B", 0, -1)),
        ("write", 1, 0, "DEL", "B"),
        ("block", "c2", 1, 0, "BLPOP", "B", "A", 0),
        ("pipe", 0, 0, ("FCALL", "fifo_push_built", 1, "{B}w", "A", ""), ("LLEN", "A")),
    ],
    # Such a script queued in MULTI: Redis serves the client right after
    # EXEC (the LRANGE read [] and the LLEN 1: the EXEC's run again did
    # not settle the waits on the keys its script escaped to).
    "blmove-blpop-two-shards-pipelined-exec-eval-undeclared": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        (
            "pipe",
            1,
            0,
            ("MULTI",),
            ("EVAL", _PUSH_BUILT, 1, "{B}w", "A", ""),
            ("EXEC",),
            ("LRANGE", "B", 0, -1),
        ),
        ("write", 0, 0, "DEL", "B"),
        ("block", "c2", 1, 0, "BLPOP", "B", "A", 0),
        ("pipe", 0, 0, ("MULTI",), ("EVAL", _PUSH_BUILT, 1, "{B}w", "A", ""), ("EXEC",), ("LLEN", "A")),
    ],
    # A script that writes an undeclared key of such a wait on its own
    # shard (the key beside KEYS[1], or numkeys 0 and the key on shard 0):
    # it does not escape, and its writer's next command still sees the
    # pop or move done, as in Redis (issue 22).
    "blpop-two-shards-pipelined-eval-undeclared-own-shard": [
        ("block", "c1", 0, 0, "BLPOP", "B", "A", 0),
        ("pipe", 1, 0, ("EVAL", _PUSH_BUILT, 1, "{A}w", "A", ""), ("LLEN", "A")),
        ("block", "c2", 1, 0, "BLPOP", "A", "B", 0),
        ("pipe", 1, 0, ("EVAL", _PUSH_NO_KEYS, 0, "A", ""), ("LLEN", "A")),
    ],
    "blmove-two-shards-pipelined-evalsha-undeclared-own-shard": [
        ("write", 0, 0, "SCRIPT", "LOAD", _PUSH_BUILT),
        ("block", "c1", 1, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 0, 0, ("EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""), ("LRANGE", "B", 0, -1)),
        ("block", "c2", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 0, 0, ("EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""), ("LRANGE", "B", 0, -1)),
    ],
    # Pipelined after a run of it (settled, its shard compiled it: the
    # shortcut's run of EVALSHAs, one __bsettle behind the run).
    "blmove-two-shards-pipelined-evalshas-undeclared-own-shard": [
        ("write", 0, 0, "SCRIPT", "LOAD", _PUSH_BUILT),
        ("write", 0, 0, "EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""),
        ("write", 0, 0, "DEL", "A"),
        ("block", "c1", 1, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("block", "c2", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        (
            "pipe",
            0,
            0,
            ("EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""),
            ("EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""),
            ("EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""),
            ("LRANGE", "B", 0, -1),
            ("LLEN", "A"),
        ),
    ],
    # An EVALSHA pipelined behind it, reading the move's destination on
    # the other shard (the shortcut takes both inline): it sees the
    # move done, as in Redis, which serves the move right after the push.
    "blmove-two-shards-pipelined-evalsha-then-evalsha-read": [
        ("write", 0, 0, "SCRIPT", "LOAD", _PUSH_BUILT),
        ("write", 0, 0, "EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""),
        ("write", 0, 0, "DEL", "A"),
        ("write", 0, 0, "SCRIPT", "LOAD", _LRANGE),
        ("write", 0, 0, "EVALSHA", _LRANGE_SHA, 1, "B"),
        ("block", "c1", 1, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        (
            "pipe",
            0,
            0,
            ("EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""),
            ("EVALSHA", _LRANGE_SHA, 1, "B"),
            ("EVALSHA", _LRANGE_SHA, 1, "A"),
        ),
        ("block", "c2", 1, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        (
            "pipe",
            0,
            0,
            ("EVALSHA", _PUSH_BUILT_SHA, 1, "{A}w", "A", ""),
            ("EVALSHA", _LRANGE_SHA, 1, "A"),
            ("EVALSHA", _LRANGE_SHA, 1, "B"),
        ),
    ],
    "blmove-blpop-two-shards-pipelined-fcall-undeclared-own-shard": [
        ("write", 1, 0, "FUNCTION", "LOAD", "REPLACE", _PUSH_LIBRARY),
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("pipe", 1, 0, ("FCALL", "fifo_push_built", 1, "{A}w", "A", ""), ("LRANGE", "B", 0, -1)),
        ("write", 1, 0, "DEL", "B"),
        ("block", "c2", 1, 0, "BLPOP", "B", "A", 0),
        ("pipe", 0, 0, ("FCALL", "fifo_push_built", 1, "{A}w", "A", ""), ("LLEN", "A")),
    ],
    "blmove-blpop-two-shards-pipelined-exec-eval-undeclared-own-shard": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        (
            "pipe",
            1,
            0,
            ("MULTI",),
            ("EVAL", _PUSH_BUILT, 1, "{A}w", "A", ""),
            ("EXEC",),
            ("LRANGE", "B", 0, -1),
        ),
        ("write", 0, 0, "DEL", "B"),
        ("block", "c2", 1, 0, "BLPOP", "B", "A", 0),
        ("pipe", 0, 0, ("MULTI",), ("EVAL", _PUSH_BUILT, 1, "{A}w", "A", ""), ("EXEC",), ("LLEN", "A")),
    ],
    # A script that SELECTs the database of such a wait and writes its
    # key there (declared, or built and on another shard): the same.
    "blpop-two-shards-pipelined-eval-select": [
        ("block", "c1", 0, 1, "BLPOP", "B", "A", 0),
        ("pipe", 1, 0, ("EVAL", _SELECT_PUSH, 1, "A", 1), ("SELECT", 1), ("LLEN", "A"), ("SELECT", 0)),
        ("block", "c2", 1, 1, "BLPOP", "A", "B", 0),
        ("pipe", 0, 0, ("EVAL", _SELECT_PUSH, 1, "A", 1), ("SELECT", 1), ("LLEN", "A"), ("SELECT", 0)),
    ],
    "blmove-two-shards-pipelined-evalsha-select": [
        ("write", 0, 0, "SCRIPT", "LOAD", _SELECT_PUSH),
        ("block", "c1", 1, 1, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        (
            "pipe",
            0,
            0,
            ("EVALSHA", _SELECT_PUSH_SHA, 1, "A", 1),
            ("SELECT", 1),
            ("LRANGE", "B", 0, -1),
            ("SELECT", 0),
        ),
    ],
    "blmove-blpop-two-shards-pipelined-fcall-select": [
        ("write", 1, 0, "FUNCTION", "LOAD", "REPLACE", _SELECT_LIBRARY),
        ("block", "c1", 0, 1, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        (
            "pipe",
            1,
            0,
            ("FCALL", "fifo_select_push", 1, "A", 1),
            ("SELECT", 1),
            ("LRANGE", "B", 0, -1),
            ("DEL", "B"),
            ("SELECT", 0),
        ),
        ("block", "c2", 1, 1, "BLPOP", "B", "A", 0),
        ("pipe", 0, 0, ("FCALL", "fifo_select_push", 1, "A", 1), ("SELECT", 1), ("LLEN", "A"), ("SELECT", 0)),
    ],
    "blpop-two-shards-pipelined-eval-select-escaped": [
        ("block", "c1", 0, 1, "BLPOP", "A", "B", 0),
        (
            "pipe",
            1,
            0,
            ("EVAL", _SELECT_PUSH_BUILT, 1, "{A}w", 1, "B"),
            ("SELECT", 1),
            ("LLEN", "B"),
            ("SELECT", 0),
        ),
    ],
    "blpop-two-shards-pipelined-exec-eval-select": [
        ("block", "c1", 0, 1, "BLPOP", "B", "A", 0),
        (
            "pipe",
            1,
            0,
            ("MULTI",),
            ("EVAL", _SELECT_PUSH, 1, "A", 1),
            ("EXEC",),
            ("SELECT", 1),
            ("LLEN", "A"),
            ("SELECT", 0),
        ),
    ],
    "brpoplpush-two-shards-one-shard-behind": [
        ("block", "c1", 0, 0, "BRPOPLPUSH", "A", "B", 0),
        ("block", "c2", 1, 0, "BRPOPLPUSH", "A", "B", 0),
        ("block", "c3", 0, 0, "BLPOP", "A", 0),
        ("write", 1, 0, "RPUSH", "A", "a"),
        ("write", 0, 0, "RPUSH", "A", "b"),
        ("write", 1, 0, "RPUSH", "A", "c"),
        ("write", 1, 0, "LRANGE", "B", 0, -1),
    ],
    # A push served the first client; the second, whose try behind the
    # first found nothing, still comes before the client blocked on the
    # source alone after it (it used to wait again behind it).
    "blmove-two-shards-left-one-shard-behind": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("block", "c2", 1, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("block", "c3", 0, 0, "BLPOP", "A", 0),
        ("write", 1, 0, "RPUSH", "A", "a"),
        ("write", 0, 0, "RPUSH", "A", "b"),
    ],
    # A write that makes the source another type serves no one: Redis
    # serves a blocked BLMOVE only from a list, so the client waits on (it
    # used to get the source's WRONGTYPE from its try behind the SET);
    # the push after the DEL serves it, a CLIENT UNBLOCK gives it a null.
    "blmove-two-shards-source-set": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("write", 0, 0, "SET", "A", "s"),
        ("write", 1, 0, "SET", "A", "t"),
        ("write", 0, 0, "DEL", "A"),
        ("write", 0, 0, "RPUSH", "A", "x"),
        ("write", 0, 0, "LRANGE", "B", 0, -1),
    ],
    "brpoplpush-two-shards-source-set-unblocked": [
        ("block", "c1", 0, 0, "BRPOPLPUSH", "A", "B", 0),
        ("pipe", 0, 0, ("SET", "A", "s"), ("CLIENT", "UNBLOCK", "id:c1")),
    ],
    # A client gone before the push is never served: nothing is taken
    # for it, and the next client in line is served (Redis unblocks a
    # client as it frees it).
    "blmove-two-shards-closed": [
        ("block", "c1", 0, 0, "BLMOVE", "A", "B", "LEFT", "RIGHT", 0),
        ("block", "c2", 1, 0, "BRPOPLPUSH", "A", "B", 0),
        ("block", "c3", 0, 0, "BLPOP", "B", "A", 0),
        ("close", "c1"),
        ("close", "c3"),
        ("write", 1, 0, "RPUSH", "A", "x", "y"),
        ("write", 0, 0, "LRANGE", "A", 0, -1),
        ("write", 0, 0, "LRANGE", "B", 0, -1),
    ],
    "xreadgroup-two-shards-pipelined": [
        ("write", 0, 0, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("write", 0, 0, "XGROUP", "CREATE", "B", "g", "$", "MKSTREAM"),
        ("block", "c1", 0, 0, "XREADGROUP", "GROUP", "g", "x1", "BLOCK", 0, "STREAMS", "B", "A", ">", ">"),
        ("pipe", 1, 0, ("XADD", "A", "1-1", "f", "a"), ("XPENDING", "A", "g")),
    ],
    # Two cross-shard XREADGROUPs through two acceptors: each XADD serves
    # the first still blocked, and the writer's next command sees it
    # served (the entry pending).
    "xreadgroup-two-shards-two-acceptors": [
        ("write", 0, 0, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("write", 0, 0, "XGROUP", "CREATE", "B", "g", "$", "MKSTREAM"),
        ("block", "c1", 0, 0, "XREADGROUP", "GROUP", "g", "x1", "BLOCK", 0, "STREAMS", "B", "A", ">", ">"),
        ("block", "c2", 1, 0, "XREADGROUP", "GROUP", "g", "x2", "BLOCK", 0, "STREAMS", "A", "B", ">", ">"),
        ("pipe", 1, 0, ("XADD", "A", "1-1", "f", "a"), ("XPENDING", "A", "g")),
        ("pipe", 0, 0, ("XADD", "A", "1-2", "f", "b"), ("XPENDING", "A", "g")),
    ],
    # Two clients blocked on both shards, one through each acceptor, made
    # ready by one transaction (or a push to each shard): Redis serves them
    # in the order they blocked, the first getting x, or y from B pushed
    # first (the push to A used to pop x for the first client now and
    # then, before B's verdict, issue 22).
    "blpop-two-shards-two-acceptors-exec": [
        ("block", "c1", 0, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 1, 0, "BLPOP", "A", "B", 0),
        ("pipe", 0, 0, ("MULTI",), ("RPUSH", "A", "x", "z"), ("EXEC",), ("LLEN", "A")),
    ],
    "blpop-two-shards-two-acceptors-exec-other": [
        ("block", "c1", 1, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 0, 0, "BLPOP", "A", "B", 0),
        ("pipe", 0, 0, ("MULTI",), ("RPUSH", "A", "x", "z"), ("EXEC",), ("LLEN", "A")),
    ],
    "blpop-two-shards-two-acceptors-pushes": [
        ("block", "c1", 1, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 0, 0, "BLPOP", "A", "B", 0),
        ("pipe", 0, 0, ("RPUSH", "B", "y"), ("RPUSH", "A", "x"), ("LLEN", "A")),
    ],
    # The same with a client blocked on B alone between them: the third
    # push serves it.
    "blpop-two-shards-two-acceptors-pushes-one-shard-between": [
        ("block", "c1", 1, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 0, 0, "BLPOP", "B", 0),
        ("block", "c3", 1, 0, "BLPOP", "A", "B", 0),
        (
            "pipe",
            0,
            0,
            ("RPUSH", "B", "y"),
            ("RPUSH", "A", "x"),
            ("RPUSH", "B", "z"),
            ("LLEN", "A"),
            ("LLEN", "B"),
        ),
    ],
    # One transaction (or script) makes B ready, then A: Redis serves B's
    # clients first (the first gets y), then A's (the second x) before
    # the writer's next command (LLEN 0); the second used to take y now
    # and then, or get x only after the LLEN (1).
    "blpop-two-shards-two-acceptors-exec-pushes": [
        ("block", "c1", 1, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 0, 0, "BLPOP", "A", "B", 0),
        ("pipe", 0, 0, ("MULTI",), ("RPUSH", "B", "y"), ("RPUSH", "A", "x"), ("EXEC",), ("LLEN", "A")),
    ],
    "blpop-two-shards-two-acceptors-exec-one-shard-between": [
        ("block", "c1", 0, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 1, 0, "BLPOP", "B", 0),
        ("block", "c3", 1, 0, "BLPOP", "B", "A", 0),
        (
            "pipe",
            0,
            0,
            ("MULTI",),
            ("RPUSH", "B", "y"),
            ("RPUSH", "A", "x"),
            ("EXEC",),
            ("LLEN", "A"),
            ("LLEN", "B"),
        ),
    ],
    # Two elements make A ready for the first two clients (each notified
    # BWAIT_READY), then one B for the third: the first gets x1, the
    # second x2 (the second's try, through the other acceptor, used to
    # reach A's shard first now and then and take x1).
    "blpop-two-shards-two-acceptors-exec-two-ready": [
        ("block", "c1", 1, 0, "BLPOP", "B", "A", 0),
        ("block", "c2", 0, 0, "BLPOP", "A", "B", 0),
        ("block", "c3", 1, 0, "BLPOP", "B", "A", 0),
        (
            "pipe",
            0,
            0,
            ("MULTI",),
            ("RPUSH", "A", "x1"),
            ("RPUSH", "B", "y1"),
            ("RPUSH", "A", "x2"),
            ("EXEC",),
            ("LRANGE", "A", 0, -1),
            ("LRANGE", "B", 0, -1),
        ),
    ],
    "blpop-two-shards-two-acceptors-eval-two-ready": [
        ("block", "c1", 1, 0, "BLPOP", "B", "A", 0),
        ("block", "c2", 0, 0, "BLPOP", "A", "B", 0),
        ("block", "c3", 1, 0, "BLPOP", "B", "A", 0),
        ("pipe", 0, 0, ("EVAL", PUSH_X_Y_X, 2, "A", "B"), ("LRANGE", "A", 0, -1), ("LRANGE", "B", 0, -1)),
    ],
    # A BLMOVE from B to A blocked after a cross-shard BLPOP on both: one
    # transaction pushes B, then A; Redis serves B's clients first, the
    # pop takes y, the move finds B empty and waits on (A keeps x).  The
    # move's try on its notification (BWAIT_CLAIMED), or at once after
    # the EXEC through its own acceptor, used to take y first, and the
    # pop x.
    "blmove-two-shards-exec-dest-of-a-pop": [
        ("block", "c1", 1, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 0, 0, "BLMOVE", "B", "A", "LEFT", "RIGHT", 0),
        (
            "pipe",
            0,
            0,
            ("MULTI",),
            ("RPUSH", "B", "y"),
            ("RPUSH", "A", "x"),
            ("EXEC",),
            ("LRANGE", "A", 0, -1),
        ),
    ],
    "blmove-two-shards-exec-dest-of-a-pop-other-acceptor": [
        ("block", "c1", 0, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 1, 0, "BLMOVE", "B", "A", "LEFT", "RIGHT", 0),
        (
            "pipe",
            0,
            0,
            ("MULTI",),
            ("RPUSH", "B", "y"),
            ("RPUSH", "A", "x"),
            ("EXEC",),
            ("LRANGE", "A", 0, -1),
        ),
    ],
    "blpop-two-shards-two-acceptors-eval-pushes": [
        ("block", "c1", 1, 0, "BLPOP", "A", "B", 0),
        ("block", "c2", 0, 0, "BLPOP", "A", "B", 0),
        ("pipe", 0, 0, ("EVAL", PUSH_Y_X, 2, "A", "B"), ("LLEN", "A"), ("LLEN", "B")),
    ],
    # A COUNT pops more than the one element left for the second client:
    # the first still gets its two.
    "blmpop-two-shards-two-acceptors-exec-count": [
        ("block", "c1", 0, 0, "BLMPOP", 0, 2, "A", "B", "LEFT", "COUNT", 2),
        ("block", "c2", 1, 0, "BLMPOP", 0, 2, "B", "A", "RIGHT", "COUNT", 2),
        (
            "pipe",
            1,
            0,
            ("MULTI",),
            ("RPUSH", "B", "y1", "y2", "y3"),
            ("RPUSH", "A", "x"),
            ("EXEC",),
            ("LRANGE", "A", 0, -1),
            ("LRANGE", "B", 0, -1),
        ),
    ],
    "bzpopmin-two-shards-two-acceptors-exec-pushes": [
        ("block", "c1", 1, 0, "BZPOPMIN", "A", "B", 0),
        ("block", "c2", 0, 0, "BZPOPMAX", "B", "A", 0),
        ("pipe", 1, 0, ("MULTI",), ("ZADD", "B", 1, "y"), ("ZADD", "A", 2, "x"), ("EXEC",), ("ZCARD", "A")),
    ],
    "flushall-xreadgroup-databases": [
        ("write", 0, 0, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("write", 0, 1, "XGROUP", "CREATE", "A", "g", "$", "MKSTREAM"),
        ("block", "c1", 1, 1, "XREADGROUP", "GROUP", "g", "x1", "BLOCK", 0, "STREAMS", "A", ">"),
        ("block", "c2", 0, 0, "XREADGROUP", "GROUP", "g", "x2", "BLOCK", 0, "STREAMS", "A", ">"),
        ("write", 1, 1, "FLUSHDB"),
    ],
}


def _arg(a: object) -> object:
    """``A`` and ``B`` -> their keys; ``{A}...`` -> a key beside ``A`` (``{B}...``: ``B``)."""
    if a in ("A", "B"):
        return A if a == "A" else B
    if isinstance(a, str) and a.startswith(("{A}", "{B}")):
        return "{%s}%s" % (A if a[1] == "A" else B, a[3:])
    return a


def _shown(reply: object) -> object:
    """A reply, an error as its text (an ErrorReply equals no other)."""
    return f"error: {reply}" if isinstance(reply, ErrorReply) else reply


def _client_id(c: RespClient) -> int:
    return int(c.command("CLIENT", "ID"))  # type: ignore[arg-type]


def _wait_shown_blocked(observer: RespClient, client_id: int) -> None:
    deadline = time.monotonic() + WAIT
    while True:
        for line in observer.command("CLIENT", "LIST", "ID", client_id).splitlines():  # type: ignore[union-attr]
            if b" flags=b " in line:
                return
        assert time.monotonic() < deadline, f"client {client_id} never shown blocked"
        time.sleep(0.002)


def _wait_gone(observer: RespClient, client_id: int) -> None:
    deadline = time.monotonic() + WAIT
    while observer.command("CLIENT", "LIST", "ID", client_id):
        assert time.monotonic() < deadline, f"client {client_id} never gone"
        time.sleep(0.002)


def _run(port: int, k: int, steps: list) -> list:
    conns: list[RespClient] = []

    def connect(acceptor: int, db: int) -> RespClient:
        c = client_on(port, acceptor, k=k)
        conns.append(c)
        if db:
            c.command("SELECT", db)
        return c

    try:
        observer = connect(0, 0)
        observer.command("FLUSHALL")
        writers: dict[tuple[int, int], RespClient] = {}
        blocked: dict[str, tuple[RespClient, int]] = {}
        out: list = []
        for step in steps:
            if step[0] == "block":
                _, name, acceptor, db, *args = step
                c = connect(acceptor, db)
                cid = _client_id(c)
                c.send(*(_arg(a) for a in args))
                _wait_shown_blocked(observer, cid)
                blocked[name] = (c, cid)
            elif step[0] == "close":  # a blocked client goes away
                c, cid = blocked.pop(step[1])
                c.close()
                _wait_gone(observer, cid)
            elif step[0] == "pipe":  # commands sent together, replies read after
                _, acceptor, db, *commands = step
                if (acceptor, db) not in writers:
                    writers[acceptor, db] = connect(acceptor, db)
                for args in commands:
                    args = [
                        blocked[a[3:]][1] if isinstance(a, str) and a.startswith("id:") else a for a in args
                    ]
                    writers[acceptor, db].send(*(_arg(a) for a in args))
                out.append([_shown(writers[acceptor, db].read_reply()) for _ in commands])
            else:
                _, acceptor, db, *args = step
                if (acceptor, db) not in writers:
                    writers[acceptor, db] = connect(acceptor, db)
                try:
                    out.append(writers[acceptor, db].command(*(_arg(a) for a in args)))
                except ErrorReply as e:
                    out.append(_shown(e))
        for name, (c, cid) in blocked.items():
            unblocked = observer.command("CLIENT", "UNBLOCK", cid)
            out.append((name, unblocked, _shown(c.read_reply())))
        observer.command("FLUSHALL")
        return out
    finally:
        for c in conns:
            c.close()


@pytest.mark.parametrize("case", list(CASES))
def test_wake_up_order_across_acceptors(redis_and_shardkv_k12, case) -> None:
    real, ours, k = redis_and_shardkv_k12
    steps = CASES[case]
    expected = _run(real, 1, steps)
    assert _run(ours, k, steps) == expected


def test_blmove_times_out_under_writes_of_its_source(redis_and_shardkv_k12) -> None:
    """A cross-shard BLMOVE with a timeout, its source written over and
    over (each write's try finds nothing), still times out: a try that
    began as its shard timed it out (that wake dropped) used to keep a
    ``__bwait`` the shard no longer had, and the client waited for good.
    Redis times it out (a null).  A race, so a few rounds."""
    _, ours, k = redis_and_shardkv_k12
    for _ in range(6):
        c, w = client_on(ours, 0, k=k), client_on(ours, 0, k=k)
        try:
            c.send("BLMOVE", A, B, "LEFT", "RIGHT", 0.05)
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                for _ in range(20):
                    w.send("DEL", A)
                for _ in range(20):
                    w.read_reply()
            c.sock.settimeout(WAIT)
            assert c.read_reply() is None
        finally:
            c.close()
            w.close()


def test_unblock_after_the_block_was_read(redis_and_shardkv_k12) -> None:
    """``SET f 1`` and a cross-shard ``BLPOP`` in one read, then, once
    another client (through either acceptor) reads f, CLIENT UNBLOCK: Redis
    ran the BLPOP with the SET, so that client saw it blocked, and CLIENT
    UNBLOCK answers 1, the BLPOP a null.  shardkv answered 0 while the
    BLPOP's try or waits were on their way (every time at two acceptors,
    the reader on the blocked client's), and the client waited on."""
    real, ours, k = redis_and_shardkv_k12

    def rounds(port: int, k: int) -> list:
        out = []
        f = "{%s}f" % A
        for reader_on in range(2):
            c, reader = client_on(port, 0, k=k), client_on(port, reader_on, k=k)
            try:
                cid = _client_id(c)
                reader.command("DEL", f)
                c.sock.sendall(
                    b"".join(encode_command(*args) for args in (("SET", f, 1), ("BLPOP", A, B, 0)))
                )
                deadline = time.monotonic() + WAIT
                while reader.command("GET", f) != b"1":
                    assert time.monotonic() < deadline, "SET f never ran"
                out.append(reader.command("CLIENT", "UNBLOCK", cid))
                if out[-1] != 1:  # (it waits on: unblock it for the reads below)
                    while reader.command("CLIENT", "UNBLOCK", cid) != 1:
                        assert time.monotonic() < deadline, "never unblocked"
                out += [c.read_reply(), c.read_reply()]
            finally:
                c.close()
                reader.close()
        return out

    assert rounds(ours, k) == rounds(real, 1)


# Sets KEYS[1]: a write of a key no blocked client waits on; reads it (a
# script that may write, and writes nothing).
_SET_Z = "return redis.call('set', KEYS[1], 'v')"
_GET_Z = "return redis.call('get', KEYS[1])"


def test_a_script_waits_for_no_claim_it_did_not_make(redis_and_shardkv_k12) -> None:
    """A client in a cross-shard ``BLPOP A B`` through acceptor 1, which
    is then stopped (SIGSTOP), after an EXEC across both shards pushed to
    A: A's shard notified the pop, whose try is owed by the stopped
    acceptor (a claim on A).  An EVAL, then an EVALSHA, through acceptor
    0 (which waits in a cross-shard pop of its own, so its scripts get a
    keyless ``__bsettle``) that write a key beside A nobody waits on, and
    an EVAL that reads it (a script that may write), answer at once,
    while acceptor 1 is still stopped: they made nothing ready, and Redis
    never holds a script's reply for an unrelated blocked client.  Their
    keyless ``__bsettle`` waited for every claim on the shard, so each
    answered only at its time bound (SETTLE_WAIT_S).  Once
    resumed, the blocked client gets the pushed element, and nothing is
    lost; the replies as Redis's."""
    real, ours, k = redis_and_shardkv_k12
    far, near = key_on(1, "fifo:p", shards=2), key_on(0, "fifo:p", shards=2)
    z = "{%s}z" % A

    def rounds(port: int, k: int, stop: bool) -> list:
        out: list = []
        observer, own, c2, w1, w2 = (client_on(port, i, k=k) for i in (0, 0, 1, 0, 0))
        stopped = 0
        try:
            observer.command("DEL", A, B, z, near, far)
            pid = int(c2.command("INFO", "server").split(b"process_id:")[1].split()[0])  # type: ignore[union-attr]
            if stop:  # acceptor 1's own process, a child of the server's supervisor
                assert pid != int(w1.command("INFO", "server").split(b"process_id:")[1].split()[0])  # type: ignore[union-attr]
                assert psutil.Process(pid).ppid() != os.getpid()
            sha = w2.command("SCRIPT", "LOAD", _SET_Z)
            w2.command("SCRIPT", "LOAD", _GET_Z)  # (a new body waits for the other acceptors)
            own_id = _client_id(own)
            own.send("BLPOP", far, near, 0)
            _wait_shown_blocked(observer, own_id)
            c2_id = _client_id(c2)
            c2.send("BLPOP", A, B, 0)
            _wait_shown_blocked(observer, c2_id)
            if stop:
                os.kill(pid, signal.SIGSTOP)
                stopped = pid
            for args in (("MULTI",), ("RPUSH", A, "x"), ("SET", "{%s}s" % B, 1), ("EXEC",)):
                w1.send(*args)
            out += [w1.read_reply() for _ in range(3)]  # (EXEC's reply: below)
            deadline = time.monotonic() + WAIT
            while w2.command("EXISTS", "{%s}s" % B) != 1:  # the EXEC ran
                assert time.monotonic() < deadline, "the EXEC never ran"
                time.sleep(0.002)
            for probe in (("EVAL", _SET_Z, 1, z), ("EVALSHA", sha, 1, z), ("EVAL", _GET_Z, 1, z)):
                w2.sock.settimeout(SETTLE_WAIT_S / 2)  # it answered at SETTLE_WAIT_S
                start = time.monotonic()
                out.append(w2.command(*probe))
                assert time.monotonic() - start < SETTLE_WAIT_S / 2
                if stop:  # (still stopped: its reply did not wait for it)
                    assert psutil.Process(pid).status() == psutil.STATUS_STOPPED
            w2.sock.settimeout(WAIT)
            if stop:
                os.kill(pid, signal.SIGCONT)
                stopped = 0
            c2.sock.settimeout(WAIT)
            w1.sock.settimeout(WAIT)
            out += [w1.read_reply(), c2.read_reply()]
            out.append(observer.command("CLIENT", "UNBLOCK", own_id))
            out.append(own.read_reply())
            out += [w2.command("LLEN", A), w2.command("GET", z)]
        finally:
            if stopped:
                os.kill(stopped, signal.SIGCONT)
            for c in (observer, own, c2, w1, w2):
                c.close()
        return out

    assert rounds(ours, k, k > 1) == rounds(real, 1, False)
