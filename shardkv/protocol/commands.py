"""The command table: every command's arity, flags, keys and route.

This is the one place that describes commands as data, in the manner of
Redis's own command table.  The acceptor reads it to reject unknown
commands and bad arities, to find a command's keys, and to decide where the
command runs; COMMAND INFO/COUNT/DOCS report from it.  Neither side
special-cases a command by name where a column here can say it.

Columns:

``arity``
    Positive: exactly that many arguments, name included.  Negative: at
    least that many.
``flags``
    Redis's command flags (``write``, ``readonly``, ``denyoom``, ``fast``,
    ``blocking``, ``admin``, ``pubsub``, ``noscript``, ``loading``,
    ``stale``, ``no_auth``...).
``keys``
    ``first,last,step`` as in Redis (``last`` -1 is the last argument, -2
    the one before it), ``-`` for no keys, or ``nkI`` when argument ``I``
    counts the keys that follow it, optionally after one fixed key:
    ``1+nk2`` is ZUNIONSTORE's ``destination numkeys key...``.  ``kwWORD@I``:
    the keys are the first half of the arguments after the first ``WORD``
    found from argument ``I`` on (XREAD's ``STREAMS key... id...``).  A
    suffix ``:name`` names a function of :data:`FINDERS` that finds the keys
    in the arguments (Redis's ``getkeys_proc``: a STORE key anywhere, SORT's
    BY and GET patterns); ``first,last,step`` is then what COMMAND INFO shows.
``route``
    ``local``: the acceptor answers it itself.  ``shard``: it runs on the
    shard that owns its keys.  ``all``: it runs on every shard and the
    replies are merged.
``policy``
    For a ``shard`` command whose keys live on more than one shard: how
    the per-shard parts merge.  ``mget`` keeps key order, ``sum`` adds
    integers, ``mset`` expects OK from all, ``msetnx`` 1 from all (a 0
    anywhere undoes the others: nothing is set).  ``-`` means the command must
    run atomically across shards (see :mod:`shardkv.acceptor.crossshard`).  For an
    ``all`` command: ``sum``, ``ok``, ``concat`` or ``random``.
``group``
    The documentation group, as in COMMAND DOCS.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass

from shardkv.protocol.command_docs import SUBCOMMANDS

_TABLE = """
# name             arity flags                             keys     route  policy group
# -- connection
ping               -1    fast,stale                        -        local  -      connection
echo               2     fast,loading,stale                -        local  -      connection
quit               -1    fast,no_auth,loading,stale        -        local  -      connection
hello              -1    fast,no_auth,loading,stale        -        local  -      connection
auth               -2    fast,no_auth,loading,stale        -        local  -      connection
select             2     fast,loading,stale                -        local  -      connection
client             -2    admin,stale                       -        local  -      connection
reset              1     fast,no_auth,loading,stale        -        local  -      connection
# -- server
command            -1    loading,stale                     -        local  -      server
config             -2    admin,stale                       -        local  -      server
info               -1    loading,stale                     -        local  -      server
time               1     fast,loading,stale                -        local  -      server
lastsave           1     fast,loading,stale                -        local  -      server
debug              -2    admin,noscript,loading,stale,protected -        local  -      server
swapdb             3     write,fast                        -        local  -      server
shutdown           -1    admin,noscript,loading,stale,no_multi -        local  -      server
monitor            1     admin,noscript,loading,stale      -        local  -      server
save               1     admin,noscript,no_multi           -        all    ok     server
bgsave             -1    admin,noscript                    -        all    random server
bgrewriteaof       1     admin,noscript                    -        all    random server
dbsize             1     readonly,fast                     -        all    sum    server
flushall           -1    write                             -        all    ok     server
flushdb            -1    write                             -        all    ok     server
wait               3     noscript                          -        local  -      generic
slowlog            -2    -                                 -        local  -      server
latency            -2    -                                 -        local  -      server
memory             -2    -                                 2,2,1    local  -      server
cluster            -2    -                                 -        local  -      cluster
acl                -2    -                                 -        local  -      server
lolwut             -1    readonly,fast                     -        local  -      server
module             -2    -                                 -        local  -      server
# -- replication: shardkv has none (a master without replicas)
role               1     noscript,loading,stale,fast       -        local  -      server
replicaof          3     admin,noscript,stale,no_async_loading -    local  -      server
slaveof            3     admin,noscript,stale,no_async_loading -    local  -      server
failover           -1    admin,noscript,stale              -        local  -      server
psync              -3    admin,noscript,no_async_loading,no_multi - local -     server
sync               1     admin,noscript,no_async_loading,no_multi - local -     server
replconf           -1    admin,noscript,loading,stale,allow_busy -  local  -      server
# -- cluster: disabled (as a redis-server with cluster-enabled no)
asking             1     fast                              -        local  -      cluster
readonly           1     loading,stale,fast                -        local  -      cluster
readwrite          1     loading,stale,fast                -        local  -      cluster
restore-asking     -4    write,denyoom,asking              1,1,1    shard  -      server
# -- keyspace
keys               2     readonly                          -        all    concat generic
scan               -2    readonly                          -        local  -      generic
randomkey          1     readonly                          -        all    random generic
del                -2    write                             1,-1,1   shard  sum    generic
unlink             -2    write,fast                        1,-1,1   shard  sum    generic
exists             -2    readonly,fast                     1,-1,1   shard  sum    generic
touch              -2    readonly,fast                     1,-1,1   shard  sum    generic
type               2     readonly,fast                     1,1,1    shard  -      generic
expire             -3    write,fast                        1,1,1    shard  -      generic
pexpire            -3    write,fast                        1,1,1    shard  -      generic
expireat           -3    write,fast                        1,1,1    shard  -      generic
pexpireat          -3    write,fast                        1,1,1    shard  -      generic
ttl                2     readonly,fast                     1,1,1    shard  -      generic
pttl               2     readonly,fast                     1,1,1    shard  -      generic
expiretime         2     readonly,fast                     1,1,1    shard  -      generic
pexpiretime        2     readonly,fast                     1,1,1    shard  -      generic
persist            2     write,fast                        1,1,1    shard  -      generic
rename             3     write                             1,2,1    shard  -      generic
renamenx           3     write,fast                        1,2,1    shard  -      generic
copy               -3    write,denyoom                     1,2,1    shard  -      generic
move               3     write,fast                        1,1,1    shard  -      generic
object             -2    readonly                          2,2,1    shard  -      generic
dump               2     readonly                          1,1,1    shard  -      generic
restore            -4    write,denyoom                     1,1,1    shard  -      generic
sort               -2    write,denyoom                     1,1,1:sort shard -     generic
sort_ro            -2    readonly                          1,1,1:sort_ro shard -  generic
migrate            -6    write                             3,3,1:migrate local -  generic
# -- strings
get                2     readonly,fast                     1,1,1    shard  -      string
set                -3    write,denyoom                     1,1,1    shard  -      string
setnx              3     write,denyoom,fast                1,1,1    shard  -      string
setex              4     write,denyoom                     1,1,1    shard  -      string
psetex             4     write,denyoom                     1,1,1    shard  -      string
getset             3     write,denyoom,fast                1,1,1    shard  -      string
getdel             2     write,fast                        1,1,1    shard  -      string
getex              -2    write,fast                        1,1,1    shard  -      string
append             3     write,denyoom,fast                1,1,1    shard  -      string
strlen             2     readonly,fast                     1,1,1    shard  -      string
incr               2     write,denyoom,fast                1,1,1    shard  -      string
decr               2     write,denyoom,fast                1,1,1    shard  -      string
incrby             3     write,denyoom,fast                1,1,1    shard  -      string
decrby             3     write,denyoom,fast                1,1,1    shard  -      string
incrbyfloat        3     write,denyoom,fast                1,1,1    shard  -      string
getrange           4     readonly                          1,1,1    shard  -      string
substr             4     readonly                          1,1,1    shard  -      string
setrange           4     write,denyoom                     1,1,1    shard  -      string
mget               -2    readonly,fast                     1,-1,1   shard  mget   string
mset               -3    write,denyoom                     1,-1,2   shard  mset   string
msetnx             -3    write,denyoom                     1,-1,2   shard  msetnx string
lcs                -3    readonly                          1,2,1    shard  -      string
# -- bitmaps (strings read and written as arrays of bits)
setbit             4     write,denyoom                     1,1,1    shard  -      bitmap
getbit             3     readonly,fast                     1,1,1    shard  -      bitmap
bitcount           -2    readonly                          1,1,1    shard  -      bitmap
bitpos             -3    readonly                          1,1,1    shard  -      bitmap
bitop              -4    write,denyoom                     2,-1,1   shard  -      bitmap
bitfield           -2    write,denyoom                     1,1,1    shard  -      bitmap
bitfield_ro        -2    readonly,fast                     1,1,1    shard  -      bitmap
# -- hashes
hset               -4    write,denyoom,fast                1,1,1    shard  -      hash
hsetnx             4     write,denyoom,fast                1,1,1    shard  -      hash
hget               3     readonly,fast                     1,1,1    shard  -      hash
hmget              -3    readonly,fast                     1,1,1    shard  -      hash
hmset              -4    write,denyoom,fast                1,1,1    shard  -      hash
hdel               -3    write,fast                        1,1,1    shard  -      hash
hlen               2     readonly,fast                     1,1,1    shard  -      hash
hstrlen            3     readonly,fast                     1,1,1    shard  -      hash
hexists            3     readonly,fast                     1,1,1    shard  -      hash
hkeys              2     readonly                          1,1,1    shard  -      hash
hvals              2     readonly                          1,1,1    shard  -      hash
hgetall            2     readonly                          1,1,1    shard  -      hash
hincrby            4     write,denyoom,fast                1,1,1    shard  -      hash
hincrbyfloat       4     write,denyoom,fast                1,1,1    shard  -      hash
hrandfield         -2    readonly                          1,1,1    shard  -      hash
hscan              -3    readonly                          1,1,1    shard  -      hash
# -- lists
lpush              -3    write,denyoom,fast                1,1,1    shard  -      list
rpush              -3    write,denyoom,fast                1,1,1    shard  -      list
lpushx             -3    write,denyoom,fast                1,1,1    shard  -      list
rpushx             -3    write,denyoom,fast                1,1,1    shard  -      list
lpop               -2    write,fast                        1,1,1    shard  -      list
rpop               -2    write,fast                        1,1,1    shard  -      list
llen               2     readonly,fast                     1,1,1    shard  -      list
lrange             4     readonly                          1,1,1    shard  -      list
lindex             3     readonly                          1,1,1    shard  -      list
lset               4     write,denyoom                     1,1,1    shard  -      list
linsert            5     write,denyoom                     1,1,1    shard  -      list
lrem               4     write                             1,1,1    shard  -      list
ltrim              4     write                             1,1,1    shard  -      list
lpos               -3    readonly                          1,1,1    shard  -      list
lmove              5     write,denyoom                     1,2,1    shard  -      list
rpoplpush          3     write,denyoom                     1,2,1    shard  -      list
lmpop              -4    write                             nk1      shard  -      list
blpop              -3    write,blocking                    1,-2,1   shard  -      list
brpop              -3    write,blocking                    1,-2,1   shard  -      list
blmove             6     write,denyoom,blocking            1,2,1    shard  -      list
brpoplpush         4     write,denyoom,blocking            1,2,1    shard  -      list
blmpop             -5    write,blocking                    nk2      shard  -      list
# -- sets
sadd               -3    write,denyoom,fast                1,1,1    shard  -      set
srem               -3    write,fast                        1,1,1    shard  -      set
smembers           2     readonly                          1,1,1    shard  -      set
sismember          3     readonly,fast                     1,1,1    shard  -      set
smismember         -3    readonly,fast                     1,1,1    shard  -      set
scard              2     readonly,fast                     1,1,1    shard  -      set
spop               -2    write,fast                        1,1,1    shard  -      set
srandmember        -2    readonly                          1,1,1    shard  -      set
smove              4     write,fast                        1,2,1    shard  -      set
sinter             -2    readonly                          1,-1,1   shard  -      set
sinterstore        -3    write,denyoom                     1,-1,1   shard  -      set
sunion             -2    readonly                          1,-1,1   shard  -      set
sunionstore        -3    write,denyoom                     1,-1,1   shard  -      set
sdiff              -2    readonly                          1,-1,1   shard  -      set
sdiffstore         -3    write,denyoom                     1,-1,1   shard  -      set
sintercard         -3    readonly                          nk1      shard  -      set
sscan              -3    readonly                          1,1,1    shard  -      set
# -- sorted sets
zadd               -4    write,denyoom,fast                1,1,1    shard  -      sorted_set
zincrby            4     write,denyoom,fast                1,1,1    shard  -      sorted_set
zrem               -3    write,fast                        1,1,1    shard  -      sorted_set
zcard              2     readonly,fast                     1,1,1    shard  -      sorted_set
zscore             3     readonly,fast                     1,1,1    shard  -      sorted_set
zmscore            -3    readonly,fast                     1,1,1    shard  -      sorted_set
zrank              3     readonly,fast                     1,1,1    shard  -      sorted_set
zrevrank           3     readonly,fast                     1,1,1    shard  -      sorted_set
zcount             4     readonly,fast                     1,1,1    shard  -      sorted_set
zlexcount          4     readonly,fast                     1,1,1    shard  -      sorted_set
zrange             -4    readonly                          1,1,1    shard  -      sorted_set
zrangebyscore      -4    readonly                          1,1,1    shard  -      sorted_set
zrevrangebyscore   -4    readonly                          1,1,1    shard  -      sorted_set
zrangebylex        -4    readonly                          1,1,1    shard  -      sorted_set
zrevrangebylex     -4    readonly                          1,1,1    shard  -      sorted_set
zrevrange          -4    readonly                          1,1,1    shard  -      sorted_set
zremrangebyrank    4     write                             1,1,1    shard  -      sorted_set
zremrangebyscore   4     write                             1,1,1    shard  -      sorted_set
zremrangebylex     4     write                             1,1,1    shard  -      sorted_set
zpopmin            -2    write,fast                        1,1,1    shard  -      sorted_set
zpopmax            -2    write,fast                        1,1,1    shard  -      sorted_set
bzpopmin           -3    write,fast,blocking               1,-2,1   shard  -      sorted_set
bzpopmax           -3    write,fast,blocking               1,-2,1   shard  -      sorted_set
zmpop              -4    write                             nk1      shard  -      sorted_set
bzmpop             -5    write,blocking                    nk2      shard  -      sorted_set
zrandmember        -2    readonly                          1,1,1    shard  -      sorted_set
zunionstore        -4    write,denyoom                     1+nk2    shard  -      sorted_set
zinterstore        -4    write,denyoom                     1+nk2    shard  -      sorted_set
zdiffstore         -4    write,denyoom                     1+nk2    shard  -      sorted_set
zunion             -3    readonly                          nk1      shard  -      sorted_set
zinter             -3    readonly                          nk1      shard  -      sorted_set
zdiff              -3    readonly                          nk1      shard  -      sorted_set
zintercard         -3    readonly                          nk1      shard  -      sorted_set
zrangestore        -5    write,denyoom                     1,2,1    shard  -      sorted_set
zscan              -3    readonly                          1,1,1    shard  -      sorted_set
# -- hyperloglog (strings in Redis's HLL layout)
pfadd              -2    write,denyoom,fast                1,1,1    shard  -      hyperloglog
pfcount            -2    readonly,may_replicate            1,-1,1   shard  -      hyperloglog
pfmerge            -2    write,denyoom                     1,-1,1   shard  -      hyperloglog
pfdebug            3     write,denyoom,admin               2,2,1    shard  -      hyperloglog
pfselftest         1     admin                             -        shard  -      hyperloglog
# -- streams
xadd               -5    write,denyoom,fast                1,1,1    shard  -      stream
xlen               2     readonly,fast                     1,1,1    shard  -      stream
xrange             -4    readonly                          1,1,1    shard  -      stream
xrevrange          -4    readonly                          1,1,1    shard  -      stream
xdel               -3    write,fast                        1,1,1    shard  -      stream
xtrim              -4    write                             1,1,1    shard  -      stream
xread              -4    readonly,blocking                 kwSTREAMS@1 shard -    stream
xreadgroup         -7    write,blocking                    kwSTREAMS@4 shard -    stream
xgroup             -2    write                             2,2,1    shard  -      stream
xsetid             -3    write,denyoom,fast                1,1,1    shard  -      stream
xack               -4    write,fast                        1,1,1    shard  -      stream
xpending           -3    readonly                          1,1,1    shard  -      stream
xclaim             -6    write,fast                        1,1,1    shard  -      stream
xautoclaim         -6    write,fast                        1,1,1    shard  -      stream
xinfo              -2    readonly                          2,2,1    shard  -      stream
# -- geo (sorted sets whose scores are geohashes)
geoadd             -5    write,denyoom                     1,1,1    shard  -      geo
geodist            -4    readonly                          1,1,1    shard  -      geo
geohash            -2    readonly                          1,1,1    shard  -      geo
geopos             -2    readonly                          1,1,1    shard  -      geo
geosearch          -7    readonly                          1,1,1    shard  -      geo
geosearchstore     -8    write,denyoom                     1,2,1    shard  -      geo
georadius          -6    write,denyoom                     1,1,1:store shard -    geo
georadius_ro       -6    readonly                          1,1,1    shard  -      geo
georadiusbymember  -5    write,denyoom                     1,1,1:store shard -    geo
georadiusbymember_ro -5  readonly                          1,1,1    shard  -      geo
# -- transactions
multi              1     noscript,loading,stale,fast       -        local  -      transactions
exec               1     noscript,loading,stale            -        local  -      transactions
discard            1     noscript,loading,stale,fast       -        local  -      transactions
watch              -2    noscript,loading,stale,fast       1,-1,1   local  -      transactions
unwatch            1     noscript,loading,stale,fast       -        local  -      transactions
# -- scripting
eval               -3    noscript,stale,skip_monitor,may_replicate,no_mandatory_keys nk2 local -   scripting
evalsha            -3    noscript,stale,skip_monitor,may_replicate,no_mandatory_keys nk2 local -   scripting
eval_ro            -3    readonly,noscript,stale,skip_monitor,no_mandatory_keys nk2 local - scripting
evalsha_ro         -3    readonly,noscript,stale,skip_monitor,no_mandatory_keys nk2 local - scripting
script             -2    -                                 -        local  -      scripting
fcall              -3    noscript,stale,skip_monitor,no_mandatory_keys nk2 local -   scripting
fcall_ro           -3    readonly,noscript,stale,skip_monitor,no_mandatory_keys nk2 local - scripting
function           -2    -                                 -        local  -      scripting
# -- pub/sub
subscribe          -2    pubsub,noscript,loading,stale     -        local  -      pubsub
unsubscribe        -1    pubsub,noscript,loading,stale     -        local  -      pubsub
psubscribe         -2    pubsub,noscript,loading,stale     -        local  -      pubsub
punsubscribe       -1    pubsub,noscript,loading,stale     -        local  -      pubsub
publish            3     pubsub,loading,stale,fast,may_replicate -  local  -      pubsub
pubsub             -2    pubsub,stale                      -        local  -      pubsub
spublish           3     pubsub,loading,stale,fast,may_replicate 1,1,1 local - pubsub
ssubscribe         -2    pubsub,noscript,loading,stale     1,-1,1   local  -      pubsub
sunsubscribe       -1    pubsub,noscript,loading,stale     1,-1,1   local  -      pubsub
"""


@dataclass(frozen=True, slots=True)
class Command:
    """One row of the command table."""

    name: str
    arity: int
    flags: frozenset[str]
    first_key: int  # 0 when the command takes no keys
    last_key: int
    step: int
    numkeys_at: int  # index of a numkeys argument, 0 when there is none
    route: str  # "local", "shard" or "all"
    policy: str  # how parts merge when keys span shards, "-" for atomic
    group: str
    # kwWORD@I: the keys follow WORD, searched for from argument I (XREAD's STREAMS).
    keyword: bytes = b""
    keyword_from: int = 0
    # Goes to the shard of its one key, args[1], and nothing else to decide:
    # the clients' hot path (see Client._run).
    single_key: bool = False
    # The argument counts (name included) that take that path, as (fewest,
    # most): a single-key command's arity, else (1, 0), which none meets.
    plain_counts: tuple[int, int] = (1, 0)
    # Finds the keys in the arguments, for commands whose keys move (@name).
    finder: Callable[[list[bytes]], list[bytes]] | None = None
    # Keys that the arguments only describe (SORT's BY and GET patterns):
    # see sort_pattern_keys.  When they may be anywhere, or on another shard
    # than the first key's, the command runs with every shard parked.
    pattern_keys: Callable[[list[bytes]], list[bytes] | None] | None = None
    # A container (CLIENT, CONFIG, OBJECT...): its subcommands, each with its
    # own arity, are rows of shardkv.protocol.command_docs.SUBCOMMANDS.
    container: bool = False

    @property
    def is_write(self) -> bool:
        return "write" in self.flags

    def keys(self, args: list[bytes]) -> list[bytes]:
        """The key arguments of ``args`` (a full command, name first).

        The caller has already checked the arity.  A bad ``numkeys`` gives
        no keys; the shard that runs the command replies with the error.
        """
        if self.keyword:
            word = self.keyword
            for i in range(self.keyword_from, len(args)):
                if len(args[i]) == len(word) and args[i].lower() == word:
                    rest = len(args) - i - 1
                    return args[i + 1 : i + 1 + rest // 2] if rest and rest % 2 == 0 else []
            return []
        if self.finder is not None:
            return self.finder(args)
        if self.numkeys_at:
            try:
                n = int(args[self.numkeys_at])
            except ValueError:
                n = 0
            start = self.numkeys_at + 1
            keys = args[start : start + n] if 0 < n <= len(args) - start else []
            return [args[self.first_key], *keys] if self.first_key else list(keys)
        if not self.first_key:
            return []
        last = self.last_key
        if last < 0:
            last += len(args)
        if self.step == 1:
            return args[self.first_key : last + 1]
        return args[self.first_key : last + 1 : self.step]


def _store_keys(args: list[bytes]) -> list[bytes]:
    """GEORADIUS, GEORADIUSBYMEMBER (``georadiusGetKeys``): the source, and
    the key after the last STORE or STOREDIST, the one the command writes."""
    keys = [args[1]]
    store = None
    i = 5
    while i < len(args) - 1:
        if args[i].lower() in (b"store", b"storedist"):
            store = args[i + 1]
            i += 1
        i += 1
    return keys if store is None else [*keys, store]


# SORT's options and how many arguments each takes (``sortGetKeys``).
_SORT_SKIP = {b"limit": 2, b"get": 1, b"by": 1}


def _sort_keys(args: list[bytes]) -> list[bytes]:
    """SORT (``sortGetKeys``): the key it sorts, and the last STORE key,
    the one it writes."""
    store = None
    i = 2
    while i < len(args):
        word = args[i].lower()
        skip = _SORT_SKIP.get(word)
        if skip is not None:
            i += skip
        elif word == b"store" and i + 1 < len(args):
            store = args[i + 1]
        i += 1
    return [args[1]] if store is None else [args[1], store]


# MIGRATE's options before KEYS, and how many arguments each takes.
_MIGRATE_SKIP = {b"copy": 0, b"replace": 0, b"auth": 1, b"auth2": 2}


def _migrate_keys(args: list[bytes]) -> list[bytes]:
    """MIGRATE, as Redis 7.0 finds its keys: from its key specs while no
    ``KEYS`` is among the arguments before the last (the key argument),
    else by ``migrateGetKeys``: every argument after the first ``KEYS``
    that is no AUTH or AUTH2 value (none if the key argument is not empty:
    the command is refused), or the key argument when there is none."""
    if not any(a.lower() == b"keys" for a in args[1:-1]):
        return [args[3]]
    i = 6
    while i < len(args):
        word = args[i].lower()
        if word == b"keys":
            return list(args[i + 1 :]) if not args[3] else []
        i += _MIGRATE_SKIP.get(word, 0) + 1
    return [args[3]]


def _first_key(args: list[bytes]) -> list[bytes]:
    return [args[1]]


def sort_pattern_keys(args: list[bytes]) -> list[bytes] | None:
    """Where SORT's BY and GET patterns may read: ``[]`` when they name no
    other keys (no ``*``, or ``GET #``); one key per pattern when each has a
    hash tag before its ``*`` (every key it names then hashes with that
    tag: the key returned stands for them); None when a pattern may name a
    key on any shard."""
    keys: list[bytes] = []
    i = 2
    while i < len(args) - 1:
        word = args[i].lower()
        if word in (b"by", b"get"):
            pattern = args[i + 1]
            nul = pattern.find(b"\0")
            head = pattern if nul < 0 else pattern[:nul]  # what Redis's strchr sees
            star = head.find(b"*")
            if star >= 0 and pattern != b"#":
                open_ = head.find(b"{")
                close = head.find(b"}", open_ + 1) if 0 <= open_ < star else -1
                if close < 0 or close == open_ + 1 or close > star:
                    return None
                keys.append(pattern[: close + 1])
            i += 1
        elif word == b"limit":
            i += 2
        i += 1
    return keys


FINDERS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "store": _store_keys,
    "sort": _sort_keys,
    "sort_ro": _first_key,
    "migrate": _migrate_keys,
}
PATTERN_KEYS: dict[str, Callable[[list[bytes]], list[bytes] | None]] = {
    "sort": sort_pattern_keys,
    "sort_ro": sort_pattern_keys,
}


def _parse_keys(spec: str) -> tuple[int, int, int, int]:
    """``first,last,step`` or ``[K+]nkI`` -> (first, last, step, numkeys_at)."""
    if spec == "-" or spec.startswith("kw"):
        return 0, 0, 0, 0
    if "nk" in spec:
        fixed, _, at = spec.partition("nk")
        return (int(fixed.rstrip("+")) if fixed else 0), 0, 0, int(at)
    first, last, step = (int(x) for x in spec.split(","))
    return first, last, step, 0


def _load(text: str) -> dict[str, Command]:
    table: dict[str, Command] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, arity, flags, keys, route, policy, group = line.split()
        keys, _, finder = keys.partition(":")
        first, last, step, numkeys_at = _parse_keys(keys)
        flag_set = frozenset(flags.split(",")) - {"-"}
        word, _, at = keys[2:].partition("@") if keys.startswith("kw") else ("", "", "0")
        single_key = (
            route == "shard"
            and first == last == 1
            and not numkeys_at
            and not finder
            and "blocking" not in flag_set
        )
        n = int(arity)
        table[name] = Command(
            name=name,
            arity=n,
            flags=flag_set,
            first_key=first,
            last_key=last,
            step=step,
            numkeys_at=numkeys_at,
            route=route,
            policy=policy,
            group=group,
            keyword=word.lower().encode(),
            keyword_from=int(at),
            single_key=single_key,
            plain_counts=((n, n) if n > 0 else (-n, sys.maxsize)) if single_key else (1, 0),
            finder=FINDERS[finder] if finder else None,
            pattern_keys=PATTERN_KEYS.get(finder),
            container=name in SUBCOMMANDS,
        )
    return table


COMMANDS: dict[str, Command] = _load(_TABLE)

# Lookups by the bytes clients send, filled on first use of each spelling,
# so the hot path is one dict probe.  Bounded: only names that are commands.
_BY_BYTES: dict[bytes, Command] = {}


# The hot path's lookup: the command for a spelling met before, else None
# (then call lookup).
seen = _BY_BYTES.get


def lookup(name: bytes) -> Command | None:
    """The command called ``name`` in any letter case, or None."""
    cmd = _BY_BYTES.get(name)
    if cmd is None:
        try:
            cmd = COMMANDS.get(name.decode("ascii").lower())
        except UnicodeDecodeError:
            return None
        if cmd is not None and len(_BY_BYTES) < 65536:
            _BY_BYTES[name] = cmd
    return cmd


def error_name(args: list[bytes]) -> str:
    """How Redis's errors name the command ``args`` (its first words): a
    known one by its full name in lower case (``get``, ``config|set``, as in
    ``ERR wrong number of arguments for 'config|set' command``), an unknown
    one as it was sent (``ERR unknown command 'FoO'``)."""
    cmd = lookup(args[0])
    if cmd is None:
        return args[0].decode("latin-1")
    if cmd.container and len(args) > 1:
        sub = args[1].decode("latin-1").lower()
        if sub in SUBCOMMANDS[cmd.name]:
            return cmd.name + "|" + sub
    return cmd.name


# The commands Redis 7.0 flags allow_busy: they run while a script is busy
# (SCRIPT KILL, FUNCTION KILL and FUNCTION STATS are subcommands, see below).
ALLOW_BUSY = frozenset(
    {"hello", "auth", "quit", "reset", "shutdown", "multi", "discard", "watch", "unwatch", "replconf"}
)


def allowed_while_busy(name: str, args: list[bytes]) -> bool:
    """Does Redis run command ``name`` (``args``, the whole command) while
    a script is past busy-reply-threshold (``CMD_ALLOW_BUSY``)?"""
    if name in ALLOW_BUSY:
        return True
    return name in ("script", "function") and len(args) > 1 and args[1].lower() in (b"kill", b"stats")


def flags_of(cmd: Command, args: list[bytes]) -> Collection[str]:
    """The flags Redis checks before running ``args`` (``cmd``'s row):
    for a container, its subcommand's (Redis looks the subcommand up, and
    FUNCTION LOAD's row, not FUNCTION's, says ``write`` and ``denyoom``);
    the command's own otherwise, or for an unknown subcommand."""
    if cmd.container and len(args) > 1:
        sub = SUBCOMMANDS[cmd.name].get(args[1].decode("latin-1").lower())
        if sub is not None:
            return sub.flags
    return cmd.flags


def check_arity(cmd: Command, nargs: int) -> bool:
    a = cmd.arity
    return nargs == a if a > 0 else nargs >= -a


def other_db_keys(name: str, args: list[bytes], databases: int) -> list[tuple[int, bytes]]:
    """The keys of another database a command writes, as ``(database, key)``:
    MOVE's key in its target database, COPY ... DB's destination.  (An
    index out of range or not a number: none; the command answers the error.)"""
    target: bytes | None = None
    if name == "move":
        target, key = args[2], args[1]
    elif name == "copy":
        key = args[2]
        for i in range(3, len(args) - 1):
            if args[i].upper() == b"DB":
                target = args[i + 1]
    if target is None or not target.isdigit() or len(target) > 6:
        return []
    db = int(target)
    return [(db, key)] if db < databases else []
