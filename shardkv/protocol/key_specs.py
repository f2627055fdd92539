"""Redis 7.0's key specs: where each command's keys are and what it does
with them (COMMAND INFO's ``key_specifications``, COMMAND GETKEYSANDFLAGS).

The table is data, copied from redis-server 7.0.15's COMMAND INFO of every
command shardkv has (commands without keys have none; subcommands, such as
``object|encoding``, under their full names).  Each spec is
``(flags, begin_search, find_keys[, notes])``:

* ``begin_search``: ``("index", pos)``, ``("keyword", word, startfrom)``
  (searched forward from ``startfrom``, or backward from the end when it is
  negative) or ``("unknown",)``;
* ``find_keys``: ``("range", lastkey, keystep, limit)``,
  ``("keynum", keynumidx, firstkey, keystep)`` or ``("unknown",)``.

Routing does not read it: the command table's key columns say where a
command's keys are (see :mod:`shardkv.protocol.commands`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shardkv.protocol.args import strict_int
from shardkv.protocol.resp import OrderedSet

# (flags, begin_search, find_keys) or (flags, begin_search, find_keys, notes)
KeySpec = tuple[Any, ...]

_SORT_BY = "For the optional BY/GET keyword. It is marked 'unknown' because the key names derive from the content of the key we sort"
_SORT_STORE = "For the optional STORE keyword. It is marked 'unknown' because the keyword can appear anywhere in the argument array"
_SET_GET = "RW and ACCESS due to the optional `GET` argument"
_GETEX_TTL = "RW and UPDATE because it changes the TTL"
_BITFIELD = "This command allows both access and modification of the key"
_PFCOUNT = "RW because it may change the internal representation of the key, and propagate to replicas"
_TRIMMING = "UPDATE instead of INSERT because of the optional trimming feature"
_SCRIPT_RW = "We cannot tell how the keys will be used so we assume the worst, RW and UPDATE"
_SCRIPT_RO = "We cannot tell how the keys will be used so we assume the worst, RO and ACCESS"

KEY_SPECS: dict[str, tuple[KeySpec, ...]] = {
    "del": (("RM delete", ("index", 1), ("range", -1, 1, 0)),),
    "unlink": (("RM delete", ("index", 1), ("range", -1, 1, 0)),),
    "exists": (("RO", ("index", 1), ("range", -1, 1, 0)),),
    "touch": (("RO", ("index", 1), ("range", -1, 1, 0)),),
    "type": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "expire": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "pexpire": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "expireat": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "pexpireat": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "ttl": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "pttl": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "expiretime": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "pexpiretime": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "persist": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "rename": (
        ("RW access delete", ("index", 1), ("range", 0, 1, 0)),
        ("OW update", ("index", 2), ("range", 0, 1, 0)),
    ),
    "renamenx": (
        ("RW access delete", ("index", 1), ("range", 0, 1, 0)),
        ("OW insert", ("index", 2), ("range", 0, 1, 0)),
    ),
    "migrate": (
        ("RW access delete", ("index", 3), ("range", 0, 1, 0)),
        ("RW access delete incomplete", ("keyword", "KEYS", -2), ("range", -1, 1, 0)),
    ),
    "copy": (
        ("RO access", ("index", 1), ("range", 0, 1, 0)),
        ("OW update", ("index", 2), ("range", 0, 1, 0)),
    ),
    "move": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "dump": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "restore": (("OW update", ("index", 1), ("range", 0, 1, 0)),),
    "restore-asking": (("OW update", ("index", 1), ("range", 0, 1, 0)),),
    # Sharded Pub/Sub: its channels name slots (in a cluster), no keys.
    "spublish": (("not_key", ("index", 1), ("range", 0, 1, 0)),),
    "ssubscribe": (("not_key", ("index", 1), ("range", -1, 1, 0)),),
    "sunsubscribe": (("not_key", ("index", 1), ("range", -1, 1, 0)),),
    "sort": (
        ("RO access", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("unknown",), ("unknown",), _SORT_BY),
        ("OW update", ("unknown",), ("unknown",), _SORT_STORE),
    ),
    "sort_ro": (
        ("RO access", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("unknown",), ("unknown",), _SORT_BY),
    ),
    "get": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "set": (("RW access update variable_flags", ("index", 1), ("range", 0, 1, 0), _SET_GET),),
    "setnx": (("OW insert", ("index", 1), ("range", 0, 1, 0)),),
    "setex": (("OW update", ("index", 1), ("range", 0, 1, 0)),),
    "psetex": (("OW update", ("index", 1), ("range", 0, 1, 0)),),
    "getset": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "getdel": (("RW access delete", ("index", 1), ("range", 0, 1, 0)),),
    "getex": (("RW access update", ("index", 1), ("range", 0, 1, 0), _GETEX_TTL),),
    "append": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "strlen": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "incr": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "decr": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "incrby": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "decrby": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "incrbyfloat": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "getrange": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "substr": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "setrange": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "mget": (("RO access", ("index", 1), ("range", -1, 1, 0)),),
    "mset": (("OW update", ("index", 1), ("range", -1, 2, 0)),),
    "msetnx": (("OW insert", ("index", 1), ("range", -1, 2, 0)),),
    "lcs": (("RO access", ("index", 1), ("range", 1, 1, 0)),),
    "setbit": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "getbit": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "bitcount": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "bitpos": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "bitop": (
        ("OW update", ("index", 2), ("range", 0, 1, 0)),
        ("RO access", ("index", 3), ("range", -1, 1, 0)),
    ),
    "bitfield": (("RW access update variable_flags", ("index", 1), ("range", 0, 1, 0), _BITFIELD),),
    "bitfield_ro": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "hset": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "hsetnx": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "hget": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "hmget": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "hmset": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "hdel": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "hlen": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "hstrlen": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "hexists": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "hkeys": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "hvals": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "hgetall": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "hincrby": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "hincrbyfloat": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "hrandfield": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "hscan": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "lpush": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "rpush": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "lpushx": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "rpushx": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "lpop": (("RW access delete", ("index", 1), ("range", 0, 1, 0)),),
    "rpop": (("RW access delete", ("index", 1), ("range", 0, 1, 0)),),
    "llen": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "lrange": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "lindex": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "lset": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "linsert": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "lrem": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "ltrim": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "lpos": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "lmove": (
        ("RW access delete", ("index", 1), ("range", 0, 1, 0)),
        ("RW insert", ("index", 2), ("range", 0, 1, 0)),
    ),
    "rpoplpush": (
        ("RW access delete", ("index", 1), ("range", 0, 1, 0)),
        ("RW insert", ("index", 2), ("range", 0, 1, 0)),
    ),
    "lmpop": (("RW access delete", ("index", 1), ("keynum", 0, 1, 1)),),
    "blpop": (("RW access delete", ("index", 1), ("range", -2, 1, 0)),),
    "brpop": (("RW access delete", ("index", 1), ("range", -2, 1, 0)),),
    "blmove": (
        ("RW access delete", ("index", 1), ("range", 0, 1, 0)),
        ("RW insert", ("index", 2), ("range", 0, 1, 0)),
    ),
    "brpoplpush": (
        ("RW access delete", ("index", 1), ("range", 0, 1, 0)),
        ("RW insert", ("index", 2), ("range", 0, 1, 0)),
    ),
    "blmpop": (("RW access delete", ("index", 2), ("keynum", 0, 1, 1)),),
    "sadd": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "srem": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "smembers": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "sismember": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "smismember": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "scard": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "spop": (("RW access delete", ("index", 1), ("range", 0, 1, 0)),),
    "srandmember": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "smove": (
        ("RW access delete", ("index", 1), ("range", 0, 1, 0)),
        ("RW insert", ("index", 2), ("range", 0, 1, 0)),
    ),
    "sinter": (("RO access", ("index", 1), ("range", -1, 1, 0)),),
    "sinterstore": (
        ("RW update", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("range", -1, 1, 0)),
    ),
    "sunion": (("RO access", ("index", 1), ("range", -1, 1, 0)),),
    "sunionstore": (
        ("OW update", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("range", -1, 1, 0)),
    ),
    "sdiff": (("RO access", ("index", 1), ("range", -1, 1, 0)),),
    "sdiffstore": (
        ("OW update", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("range", -1, 1, 0)),
    ),
    "sintercard": (("RO access", ("index", 1), ("keynum", 0, 1, 1)),),
    "sscan": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zadd": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "zincrby": (("RW access update", ("index", 1), ("range", 0, 1, 0)),),
    "zrem": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "zcard": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "zscore": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zmscore": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zrank": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zrevrank": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zcount": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zlexcount": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zrange": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zrangebyscore": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zrevrangebyscore": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zrangebylex": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zrevrangebylex": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zrevrange": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zremrangebyrank": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "zremrangebyscore": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "zremrangebylex": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "zpopmin": (("RW access delete", ("index", 1), ("range", 0, 1, 0)),),
    "zpopmax": (("RW access delete", ("index", 1), ("range", 0, 1, 0)),),
    "bzpopmin": (("RW access delete", ("index", 1), ("range", -2, 1, 0)),),
    "bzpopmax": (("RW access delete", ("index", 1), ("range", -2, 1, 0)),),
    "zmpop": (("RW access delete", ("index", 1), ("keynum", 0, 1, 1)),),
    "bzmpop": (("RW access delete", ("index", 2), ("keynum", 0, 1, 1)),),
    "zrandmember": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "zunionstore": (
        ("OW update", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("keynum", 0, 1, 1)),
    ),
    "zinterstore": (
        ("OW update", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("keynum", 0, 1, 1)),
    ),
    "zdiffstore": (
        ("OW update", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("keynum", 0, 1, 1)),
    ),
    "zunion": (("RO access", ("index", 1), ("keynum", 0, 1, 1)),),
    "zinter": (("RO access", ("index", 1), ("keynum", 0, 1, 1)),),
    "zdiff": (("RO access", ("index", 1), ("keynum", 0, 1, 1)),),
    "zintercard": (("RO access", ("index", 1), ("keynum", 0, 1, 1)),),
    "zrangestore": (
        ("OW update", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("range", 0, 1, 0)),
    ),
    "zscan": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "pfadd": (("RW insert", ("index", 1), ("range", 0, 1, 0)),),
    "pfcount": (("RW access", ("index", 1), ("range", -1, 1, 0), _PFCOUNT),),
    "pfmerge": (
        ("RW access insert", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("range", -1, 1, 0)),
    ),
    "pfdebug": (("RW access", ("index", 2), ("range", 0, 1, 0)),),
    "xadd": (("RW update", ("index", 1), ("range", 0, 1, 0), _TRIMMING),),
    "xlen": (("RO", ("index", 1), ("range", 0, 1, 0)),),
    "xrange": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "xrevrange": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "xdel": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "xtrim": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "xread": (("RO access", ("keyword", "STREAMS", 1), ("range", -1, 1, 2)),),
    "xreadgroup": (("RO access", ("keyword", "STREAMS", 4), ("range", -1, 1, 2)),),
    "xsetid": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "xack": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "xpending": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "xclaim": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "xautoclaim": (("RW delete", ("index", 1), ("range", 0, 1, 0)),),
    "geoadd": (("RW update", ("index", 1), ("range", 0, 1, 0)),),
    "geodist": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "geohash": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "geopos": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "geosearch": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "geosearchstore": (
        ("OW update", ("index", 1), ("range", 0, 1, 0)),
        ("RO access", ("index", 2), ("range", 0, 1, 0)),
    ),
    "georadius": (
        ("RO access", ("index", 1), ("range", 0, 1, 0)),
        ("OW update", ("keyword", "STORE", 6), ("range", 0, 1, 0)),
        ("OW update", ("keyword", "STOREDIST", 6), ("range", 0, 1, 0)),
    ),
    "georadius_ro": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "georadiusbymember": (
        ("RO access", ("index", 1), ("range", 0, 1, 0)),
        ("OW update", ("keyword", "STORE", 5), ("range", 0, 1, 0)),
        ("OW update", ("keyword", "STOREDIST", 5), ("range", 0, 1, 0)),
    ),
    "georadiusbymember_ro": (("RO access", ("index", 1), ("range", 0, 1, 0)),),
    "watch": (("RO", ("index", 1), ("range", -1, 1, 0)),),
    "eval": (("RW access update", ("index", 2), ("keynum", 0, 1, 1), _SCRIPT_RW),),
    "evalsha": (("RW access update", ("index", 2), ("keynum", 0, 1, 1)),),
    "eval_ro": (("RO access", ("index", 2), ("keynum", 0, 1, 1), _SCRIPT_RO),),
    "evalsha_ro": (("RO access", ("index", 2), ("keynum", 0, 1, 1)),),
    "fcall": (("RW access update", ("index", 2), ("keynum", 0, 1, 1), _SCRIPT_RW),),
    "fcall_ro": (("RO access", ("index", 2), ("keynum", 0, 1, 1), _SCRIPT_RO),),
    # Subcommands, by their full names (their containers have none).
    **dict.fromkeys(
        ("object|encoding", "object|freq", "object|idletime", "object|refcount", "memory|usage"),
        (("RO", ("index", 2), ("range", 0, 1, 0)),),
    ),
    "xgroup|create": (("RW insert", ("index", 2), ("range", 0, 1, 0)),),
    "xgroup|createconsumer": (("RW insert", ("index", 2), ("range", 0, 1, 0)),),
    "xgroup|delconsumer": (("RW delete", ("index", 2), ("range", 0, 1, 0)),),
    "xgroup|destroy": (("RW delete", ("index", 2), ("range", 0, 1, 0)),),
    "xgroup|setid": (("RW update", ("index", 2), ("range", 0, 1, 0)),),
    **dict.fromkeys(
        ("xinfo|consumers", "xinfo|groups", "xinfo|stream"),
        (("RO access", ("index", 2), ("range", 0, 1, 0)),),
    ),
}


def reply(spec: KeySpec) -> dict[bytes, Any]:
    """One spec as COMMAND INFO sends it (a map, in Redis's order)."""
    flags, begin, find = spec[:3]
    out: dict[bytes, Any] = {b"notes": spec[3].encode()} if len(spec) > 3 else {}
    out[b"flags"] = OrderedSet(flags.split())
    if begin[0] == "index":
        out[b"begin_search"] = {b"type": b"index", b"spec": {b"index": begin[1]}}
    elif begin[0] == "keyword":
        word = begin[1].encode()
        out[b"begin_search"] = {b"type": b"keyword", b"spec": {b"keyword": word, b"startfrom": begin[2]}}
    else:
        out[b"begin_search"] = {b"type": b"unknown", b"spec": {}}
    if find[0] == "range":
        out[b"find_keys"] = {
            b"type": b"range",
            b"spec": {b"lastkey": find[1], b"keystep": find[2], b"limit": find[3]},
        }
    elif find[0] == "keynum":
        out[b"find_keys"] = {
            b"type": b"keynum",
            b"spec": {b"keynumidx": find[1], b"firstkey": find[2], b"keystep": find[3]},
        }
    else:
        out[b"find_keys"] = {b"type": b"unknown", b"spec": {}}
    return out


def keys_with_flags(specs: tuple[KeySpec, ...], args: list[bytes]) -> list[tuple[int, str]] | None:
    """The keys of the command ``args`` as its specs find them: (position,
    flags) in spec order, as Redis's ``getKeysUsingKeySpecs``; None when a
    spec cannot say (an unknown or incomplete one, or one out of range),
    where Redis asks the command's own key finder."""
    found: list[tuple[int, str]] = []
    argc = len(args)
    for flags, begin, find, *_ in specs:
        if "not_key" in flags.split():
            continue
        if begin[0] == "index":
            first = begin[1]
        elif begin[0] == "keyword":
            word, start = begin[1].encode().lower(), begin[2]
            # (as Redis's loop: not the last argument searching forward, nor the first backward)
            if start > 0:
                positions = range(start, argc - 1)
            else:
                positions = range(argc + start, 1, -1)
            first = next((i + 1 for i in positions if 1 <= i < argc and args[i].lower() == word), 0)
            if not first:
                continue  # the keyword is not there: no keys from this spec
        else:
            return None
        if find[0] == "range":
            lastkey, step, limit = find[1:]
            if lastkey >= 0:
                last = first + lastkey
            elif not limit:
                last = argc + lastkey
            else:
                last = first + ((argc - first) // limit + lastkey)
        elif find[0] == "keynum":
            index, firstkey, step = find[1:]
            if first + index >= argc:
                return None
            numkeys = strict_int(args[first + index])
            if numkeys is None or numkeys < 0:
                return None
            first += firstkey
            last = first + _c_int(numkeys) - 1  # Redis's (int)numkeys
        else:
            return None
        if last >= argc or last < first or first >= argc:
            return None
        found += [(i, flags) for i in range(first, last + 1, step)]
        if "incomplete" in flags.split():
            return None
    return found


# Commands with a key spec whose flags vary with the arguments (SET's GET,
# BITFIELD's operations): Redis asks their key finder instead.
_VARIABLE = frozenset(
    name for name, specs in KEY_SPECS.items() if any("variable_flags" in spec[0].split() for spec in specs)
)

# The commands that Redis 7.0 also finds the keys of with a function of
# their own (``getkeys_proc``), used when their specs cannot say where the
# keys are (unknown, incomplete, out of range) or their flags vary, and the
# flags that function gives every key.  Those whose specs are complete
# (``genericGetKeys``, ``georadiusGetKeys``, ``xreadGetKeys``) give none: a
# key they find needs only a pattern that matches it.  SET, BITFIELD and
# SORT: see :func:`finder_flags`.
_FINDER_FLAGS = {
    "sort_ro": "RO access",  # sortROGetKeys
    "migrate": "RW access delete",  # migrateGetKeys
    **dict.fromkeys(
        (
            "georadius georadiusbymember xread xreadgroup eval evalsha eval_ro evalsha_ro fcall "
            "fcall_ro sintercard zdiff zdiffstore zinter zintercard zinterstore zunion zunionstore "
            "lmpop blmpop zmpop bzmpop"
        ).split(),
        "",
    ),
}
FINDERS = frozenset(_FINDER_FLAGS) | {"set", "bitfield", "sort"}


# The commands whose key finder is Redis's ``genericGetKeys`` (evalGetKeys,
# zunionInterDiffStoreGetKeys...): (the destination key's position or 0,
# numkeys's, the first key's, the step).
_GENERIC = {
    **dict.fromkeys(("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"), (0, 2, 3, 1)),
    **dict.fromkeys(
        ("sintercard", "zunion", "zinter", "zdiff", "zintercard", "lmpop", "zmpop"), (0, 1, 2, 1)
    ),
    **dict.fromkeys(("zunionstore", "zinterstore", "zdiffstore"), (1, 2, 3, 1)),
    **dict.fromkeys(("blmpop", "bzmpop"), (0, 2, 3, 1)),
}


def atoi(arg: bytes) -> int:
    """C's ``atoi`` of an argument, as glibc does it: ``strtol`` (leading
    white space, a sign, the digits up to the first other character;
    clamped to a long on overflow), then cut to a 32-bit int."""
    text = _cstring(arg).lstrip(b" \t\n\v\f\r")
    sign = 1
    if text[:1] in (b"+", b"-"):
        sign = -1 if text[:1] == b"-" else 1
        text = text[1:]
    digits = len(text) - len(text.lstrip(b"0123456789"))
    value = sign * int(text[:digits]) if digits else 0
    return _c_int(max(-(1 << 63), min((1 << 63) - 1, value)))


def _c_int(value: int) -> int:
    """A long long cut to C's 32-bit int, as a cast does."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _generic_keys(name: str, args: list[bytes]) -> list[int]:
    """The key positions Redis's ``genericGetKeys`` finds: numkeys read
    with ``atoi`` (``1x`` is 1, ``abc`` 0), none unless it is 1 up to the
    arguments left; the destination key, if any, last."""
    store, count_at, first, step = _GENERIC[name]
    num = atoi(args[count_at])
    if num < 1 or num > (len(args) - first) // step:
        return []
    return [first + i * step for i in range(num)] + ([store] if store else [])


def has_keys(name: str) -> bool:
    """Redis's ``doesCommandHaveKeys`` for the command or subcommand
    ``name``: a key finder of its own, or a spec of keys."""
    return name in FINDERS or any("not_key" not in spec[0].split() for spec in KEY_SPECS.get(name, ()))


def _cstring(arg: bytes) -> bytes:
    """What C's string functions see of an argument: up to its first NUL."""
    nul = arg.find(b"\0")
    return arg if nul < 0 else arg[:nul]


def finder_flags(name: str, args: list[bytes], j: int) -> str:
    """The flags Redis's key finder of the command ``name`` (one of
    :data:`FINDERS`) gives the ``j``-th key it finds in ``args``."""
    if name == "set":  # setGetKeys: GET reads the old value too
        get = any(_cstring(a).lower() == b"get" for a in args[3:])
        return "RW access update" if get else "OW update"
    if name == "bitfield":  # bitfieldGetKeys: read-only while only GETs and OVERFLOWs
        i = 2
        while i < len(args):
            op, left = _cstring(args[i]).lower(), len(args) - i - 1
            if op == b"get" and left >= 2:
                i += 3
            elif op == b"overflow" and left >= 1:
                i += 2
            else:
                return "RW access update"
        return "RO access"
    if name == "sort":  # sortGetKeys: the sorted key, then STORE's
        return "RO access" if j == 0 else "OW update"
    return _FINDER_FLAGS[name]


def keys_and_flags(
    name: str, args: list[bytes], finder: Callable[[list[bytes]], list[bytes]]
) -> list[tuple[int, str]]:
    """The keys of the command ``args`` (``name``: its full name, such as
    ``object|encoding``) as (position, flags), as Redis's
    ``getKeysFromCommandWithSpecs`` finds them for the ACL checks: from
    the key specs, unless their flags vary with the arguments or they
    cannot say; then from the command's own key finder (``finder``, the
    command table's, which finds what Redis's does, or Redis's
    ``genericGetKeys`` with its ``atoi``), with its flags; a command with
    neither has none."""
    specs = KEY_SPECS.get(name)
    if specs and name not in _VARIABLE:
        found = keys_with_flags(specs, args)
        if found is not None:
            return found
    if name not in FINDERS:
        return []
    if name in _GENERIC:  # (their keys' flags: none)
        return [(pos, "") for pos in _generic_keys(name, args)]
    out: list[tuple[int, str]] = []
    pos = 1
    for key in finder(args):  # their positions, in order
        while pos < len(args) and args[pos] is not key:
            pos += 1
        if pos >= len(args):
            break
        out.append((pos, finder_flags(name, args, len(out))))
        pos += 1
    return out
