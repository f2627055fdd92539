"""COMMAND DOCS: each command's summary and argument tree, from a syntax line.

``redis-cli`` 7 asks ``COMMAND DOCS`` when it starts and builds its
command-line hints and ``HELP`` from the ``arguments`` of each command, so
every command in :mod:`shardkv.protocol.commands` has a row here: the version it
appeared in, a one-line summary, and its syntax in a compact notation that
:func:`parse_syntax` turns into Redis's argument maps:

``name``             a string argument (``key`` is a key)
``name:type``        an argument of a type: ``key``, ``integer``, ``double``,
                     ``pattern``, ``unix-time`` or ``string`` (any other
                     colon is part of the name: ``ip:port``)
``TOKEN``            a pure token (a word that is its own value)
``""``               the empty string as a pure token
``TOKEN arg``        an argument introduced by a token (``EX seconds:integer``)
``[ ... ]``          optional
``( ... )``          a group; several items in a group make a ``block``
``name=( ... )``     a group with a name (``condition=[NX | XX]``)
``{ ... }``          a block, even of one item (MODULE LOADEX's ``args={arg}``)
``a | b``            one of (``oneof``)
``...``              after an item: it may repeat (``multiple``)
``...+``             the same, with the token repeated too (``multiple_token``)

Container commands (CLIENT, CONFIG, COMMAND, OBJECT, PUBSUB) have their
subcommands as rows named ``container|sub``, with their own arity, and
their own flags (COMMAND INFO reports them; MONITOR leaves ``admin`` ones
out).  :func:`check_subcommand` checks a subcommand and its arity: the
acceptor's dispatch before a client's command runs or is queued (Redis's
``processCommand`` looks the subcommand up), the code that runs a
container for the callers that skip dispatch (scripts).

This module is shared by the acceptor and the workers and imports nothing
from either side.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from shardkv.protocol import errors
from shardkv.protocol.resp import OrderedSet

# name | since | summary | syntax
_DOCS = """
ping | 1.0.0 | Ping the server | [message]
echo | 1.0.0 | Echo the given string | message
quit | 1.0.0 | Close the connection |
hello | 6.0.0 | Handshake with the server, optionally choosing the protocol | [protover:integer [AUTH (username password)] [SETNAME clientname]]
auth | 1.0.0 | Authenticate to the server | [username] password
select | 1.0.0 | Change the selected database | index:integer
reset | 6.2.0 | Reset the connection |
client | 2.4.0 | A container for client connection commands |
command | 2.8.13 | Get array of details about every command |
config | 2.0.0 | A container for server configuration commands |
info | 1.0.0 | Get information and statistics about the server | [section ...]
time | 2.6.0 | Return the current server time |
lastsave | 1.0.0 | Get the UNIX time stamp of the last successful save to disk |
debug | 1.0.0 | A container for debugging commands |
swapdb | 4.0.0 | Swap two databases | index1:integer index2:integer
shutdown | 1.0.0 | Stop the server | nosave_save=[NOSAVE | SAVE] [NOW] [FORCE] [ABORT]
monitor | 1.0.0 | Listen for all requests received by the server in real time |
save | 1.0.0 | Synchronously save the dataset to disk |
bgsave | 1.0.0 | Asynchronously save the dataset to disk | [SCHEDULE]
bgrewriteaof | 1.0.0 | Asynchronously rewrite the append-only file |
dbsize | 1.0.0 | Return the number of keys in the selected database |
flushall | 1.0.0 | Remove all keys from all databases | flush-type=[ASYNC | SYNC]
flushdb | 1.0.0 | Remove all keys from the current database | flush-type=[ASYNC | SYNC]
wait | 3.0.0 | Wait for the synchronous replication of all the write commands sent in the context of the current connection | numreplicas:integer timeout:integer
keys | 1.0.0 | Find all keys matching the given pattern | pattern:pattern
scan | 2.8.0 | Incrementally iterate the keys space | cursor:integer [MATCH pattern:pattern] [COUNT count:integer] [TYPE type]
randomkey | 1.0.0 | Return a random key from the keyspace |
del | 1.0.0 | Delete a key | key ...
unlink | 4.0.0 | Delete a key asynchronously in another thread. Otherwise it is just as DEL, but non blocking. | key ...
exists | 1.0.0 | Determine if a key exists | key ...
touch | 3.2.1 | Alters the last access time of a key(s). Returns the number of existing keys specified. | key ...
type | 1.0.0 | Determine the type stored at key | key
expire | 1.0.0 | Set a key's time to live in seconds | key seconds:integer condition=[NX | XX | GT | LT]
pexpire | 2.6.0 | Set a key's time to live in milliseconds | key milliseconds:integer condition=[NX | XX | GT | LT]
expireat | 1.2.0 | Set the expiration for a key as a UNIX timestamp | key unix-time-seconds:unix-time condition=[NX | XX | GT | LT]
pexpireat | 2.6.0 | Set the expiration for a key as a UNIX timestamp specified in milliseconds | key unix-time-milliseconds:unix-time condition=[NX | XX | GT | LT]
ttl | 1.0.0 | Get the time to live for a key in seconds | key
pttl | 2.6.0 | Get the time to live for a key in milliseconds | key
expiretime | 7.0.0 | Get the expiration Unix timestamp for a key | key
pexpiretime | 7.0.0 | Get the expiration Unix timestamp for a key in milliseconds | key
persist | 2.2.0 | Remove the expiration from a key | key
rename | 1.0.0 | Rename a key | key newkey:key
renamenx | 1.0.0 | Rename a key, only if the new key does not exist | key newkey:key
copy | 6.2.0 | Copy a key | source:key destination:key [DB destination-db:integer] [REPLACE]
migrate | 2.6.0 | Atomically transfer a key from a Redis instance to another one. | host port:integer key_or_empty_string=(key | empty_string="") destination-db:integer timeout:integer [COPY] [REPLACE] authentication=[[AUTH password] | [AUTH2 (username password)]] [KEYS key ...]
move | 1.0.0 | Move a key to another database | key db:integer
object | 2.2.3 | A container for object introspection commands |
dump | 2.6.0 | Return a serialized version of the value stored at the specified key. | key
restore | 2.6.0 | Create a key using the provided serialized value, previously obtained using DUMP. | key ttl:integer serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds:integer] [FREQ frequency:integer]
sort | 1.0.0 | Sort the elements in a list, set or sorted set | key [BY pattern:pattern] [LIMIT (offset:integer count:integer)] [GET pattern:pattern ...+] order=[ASC | DESC] sorting=[ALPHA] [STORE destination:key]
sort_ro | 7.0.0 | Sort the elements in a list, set or sorted set. Read-only variant of SORT. | key [BY pattern:pattern] [LIMIT (offset:integer count:integer)] [GET pattern:pattern ...+] order=[ASC | DESC] sorting=[ALPHA]
get | 1.0.0 | Get the value of a key | key
set | 1.0.0 | Set the string value of a key | key value condition=[NX | XX] [GET] expiration=[EX seconds:integer | PX milliseconds:integer | EXAT unix-time-seconds:unix-time | PXAT unix-time-milliseconds:unix-time | KEEPTTL]
setnx | 1.0.0 | Set the value of a key, only if the key does not exist | key value
setex | 2.0.0 | Set the value and expiration of a key | key seconds:integer value
psetex | 2.6.0 | Set the value and expiration in milliseconds of a key | key milliseconds:integer value
getset | 1.0.0 | Set the string value of a key and return its old value | key value
getdel | 6.2.0 | Get the value of a key and delete the key | key
getex | 6.2.0 | Get the value of a key and optionally set its expiration | key expiration=[EX seconds:integer | PX milliseconds:integer | EXAT unix-time-seconds:unix-time | PXAT unix-time-milliseconds:unix-time | PERSIST]
append | 2.0.0 | Append a value to a key | key value
strlen | 2.2.0 | Get the length of the value stored in a key | key
incr | 1.0.0 | Increment the integer value of a key by one | key
decr | 1.0.0 | Decrement the integer value of a key by one | key
incrby | 1.0.0 | Increment the integer value of a key by the given amount | key increment:integer
decrby | 1.0.0 | Decrement the integer value of a key by the given number | key decrement:integer
incrbyfloat | 2.6.0 | Increment the float value of a key by the given amount | key increment:double
getrange | 2.4.0 | Get a substring of the string stored at a key | key start:integer end:integer
substr | 1.0.0 | Get a substring of the string stored at a key | key start:integer end:integer
setrange | 2.2.0 | Overwrite part of a string at key starting at the specified offset | key offset:integer value
mget | 1.0.0 | Get the values of all the given keys | key ...
mset | 1.0.1 | Set multiple keys to multiple values | data=(key value) ...
msetnx | 1.0.1 | Set multiple keys to multiple values, only if none of the keys exist | data=(key value) ...
lcs | 7.0.0 | Find longest common substring | key1:key key2:key [LEN] [IDX] [MINMATCHLEN len:integer] [WITHMATCHLEN]
setbit | 2.2.0 | Sets or clears the bit at offset in the string value stored at key | key offset:integer value:integer
getbit | 2.2.0 | Returns the bit value at offset in the string value stored at key | key offset:integer
bitcount | 2.6.0 | Count set bits in a string | key [start:integer end:integer [unit=[BYTE | BIT]]]
bitpos | 2.8.7 | Find first bit set or clear in a string | key bit:integer [start:integer [end:integer [unit=[BYTE | BIT]]]]
bitop | 2.6.0 | Perform bitwise operations between strings | operation destkey:key key ...
bitfield | 3.2.0 | Perform arbitrary bitfield integer operations on strings | key operation=[GET encoding_offset=(encoding offset:integer) | write=([OVERFLOW wrap_sat_fail=(WRAP | SAT | FAIL)] write_operation=(SET encoding_offset_value=(encoding offset:integer value:integer) | INCRBY encoding_offset_increment=(encoding offset:integer increment:integer)))] ...
bitfield_ro | 6.0.0 | Perform arbitrary bitfield integer operations on strings. Read-only variant of BITFIELD | key [GET encoding_offset=(encoding offset:integer) ...+]
pfadd | 2.8.9 | Adds the specified elements to the specified HyperLogLog. | key [element ...]
pfcount | 2.8.9 | Return the approximated cardinality of the set(s) observed by the HyperLogLog at key(s). | key ...
pfmerge | 2.8.9 | Merge N different HyperLogLogs into a single one. | destkey:key sourcekey:key ...
pfdebug | 2.8.9 | Internal commands for debugging HyperLogLog values | subcommand key
pfselftest | 2.8.9 | An internal command for testing HyperLogLog values |
geoadd | 3.2.0 | Add one or more geospatial items in the geospatial index represented using a sorted set | key condition=[NX | XX] change=[CH] longitude_latitude_member=(longitude:double latitude:double member) ...
geodist | 3.2.0 | Returns the distance between two members of a geospatial index | key member1 member2 unit=[M | KM | FT | MI]
geohash | 3.2.0 | Returns members of a geospatial index as standard geohash strings | key member ...
geopos | 3.2.0 | Returns longitude and latitude of members of a geospatial index | key member ...
geosearch | 6.2.0 | Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle. | key from=(FROMMEMBER member | FROMLONLAT longitude_latitude=(longitude:double latitude:double)) by=(circle=(BYRADIUS radius:double unit=(M | KM | FT | MI)) | box=(BYBOX width:double height:double unit=(M | KM | FT | MI))) order=[ASC | DESC] count=[(COUNT count:integer [ANY])] [WITHCOORD] [WITHDIST] [WITHHASH]
geosearchstore | 6.2.0 | Query a sorted set representing a geospatial index to fetch members inside an area of a box or a circle, and store the result in another key. | destination:key source:key from=(FROMMEMBER member | FROMLONLAT longitude_latitude=(longitude:double latitude:double)) by=(circle=(BYRADIUS radius:double unit=(M | KM | FT | MI)) | box=(BYBOX width:double height:double unit=(M | KM | FT | MI))) order=[ASC | DESC] count=[(COUNT count:integer [ANY])] [STOREDIST]
georadius | 3.2.0 | Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a point | key longitude:double latitude:double radius:double unit=(M | KM | FT | MI) [WITHCOORD] [WITHDIST] [WITHHASH] count=[(COUNT count:integer [ANY])] order=[ASC | DESC] [STORE key] [STOREDIST key]
georadius_ro | 3.2.10 | A read-only variant for GEORADIUS | key longitude:double latitude:double radius:double unit=(M | KM | FT | MI) [WITHCOORD] [WITHDIST] [WITHHASH] count=[(COUNT count:integer [ANY])] order=[ASC | DESC]
georadiusbymember | 3.2.0 | Query a sorted set representing a geospatial index to fetch members matching a given maximum distance from a member | key member radius:double unit=(M | KM | FT | MI) [WITHCOORD] [WITHDIST] [WITHHASH] count=[(COUNT count:integer [ANY])] order=[ASC | DESC] [STORE key] [STOREDIST key]
georadiusbymember_ro | 3.2.10 | A read-only variant for GEORADIUSBYMEMBER | key member radius:double unit=(M | KM | FT | MI) [WITHCOORD] [WITHDIST] [WITHHASH] count=[(COUNT count:integer [ANY])] order=[ASC | DESC]
hset | 2.0.0 | Set the string value of a hash field | key data=(field value) ...
hsetnx | 2.0.0 | Set the value of a hash field, only if the field does not exist | key field value
hget | 2.0.0 | Get the value of a hash field | key field
hmget | 2.0.0 | Get the values of all the given hash fields | key field ...
hmset | 2.0.0 | Set multiple hash fields to multiple values | key data=(field value) ...
hdel | 2.0.0 | Delete one or more hash fields | key field ...
hlen | 2.0.0 | Get the number of fields in a hash | key
hstrlen | 3.2.0 | Get the length of the value of a hash field | key field
hexists | 2.0.0 | Determine if a hash field exists | key field
hkeys | 2.0.0 | Get all the fields in a hash | key
hvals | 2.0.0 | Get all the values in a hash | key
hgetall | 2.0.0 | Get all the fields and values in a hash | key
hincrby | 2.0.0 | Increment the integer value of a hash field by the given number | key field increment:integer
hincrbyfloat | 2.6.0 | Increment the float value of a hash field by the given amount | key field increment:double
hrandfield | 6.2.0 | Get one or multiple random fields from a hash | key [count:integer [WITHVALUES]]
hscan | 2.8.0 | Incrementally iterate hash fields and associated values | key cursor:integer [MATCH pattern:pattern] [COUNT count:integer]
lpush | 1.0.0 | Prepend one or multiple elements to a list | key element ...
rpush | 1.0.0 | Append one or multiple elements to a list | key element ...
lpushx | 2.2.0 | Prepend an element to a list, only if the list exists | key element ...
rpushx | 2.2.0 | Append an element to a list, only if the list exists | key element ...
lpop | 1.0.0 | Remove and get the first elements in a list | key [count:integer]
rpop | 1.0.0 | Remove and get the last elements in a list | key [count:integer]
llen | 1.0.0 | Get the length of a list | key
lrange | 1.0.0 | Get a range of elements from a list | key start:integer stop:integer
lindex | 1.0.0 | Get an element from a list by its index | key index:integer
lset | 1.0.0 | Set the value of an element in a list by its index | key index:integer element
linsert | 2.2.0 | Insert an element before or after another element in a list | key where=(BEFORE | AFTER) pivot element
lrem | 1.0.0 | Remove elements from a list | key count:integer element
ltrim | 1.0.0 | Trim a list to the specified range | key start:integer stop:integer
lpos | 6.0.6 | Return the index of matching elements on a list | key element [RANK rank:integer] [COUNT num-matches:integer] [MAXLEN len:integer]
lmove | 6.2.0 | Pop an element from a list, push it to another list and return it | source:key destination:key wherefrom=(LEFT | RIGHT) whereto=(LEFT | RIGHT)
rpoplpush | 1.2.0 | Remove the last element in a list, prepend it to another list and return it | source:key destination:key
lmpop | 7.0.0 | Pop elements from a list | numkeys:integer key ... where=(LEFT | RIGHT) [COUNT count:integer]
blpop | 2.0.0 | Remove and get the first element in a list, or block until one is available | key ... timeout:double
brpop | 2.0.0 | Remove and get the last element in a list, or block until one is available | key ... timeout:double
blmove | 6.2.0 | Pop an element from a list, push it to another list and return it; or block until one is available | source:key destination:key wherefrom=(LEFT | RIGHT) whereto=(LEFT | RIGHT) timeout:double
brpoplpush | 2.2.0 | Pop an element from a list, push it to another list and return it; or block until one is available | source:key destination:key timeout:double
blmpop | 7.0.0 | Pop elements from a list, or block until one is available | timeout:double numkeys:integer key ... where=(LEFT | RIGHT) [COUNT count:integer]
sadd | 1.0.0 | Add one or more members to a set | key member ...
srem | 1.0.0 | Remove one or more members from a set | key member ...
smembers | 1.0.0 | Get all the members in a set | key
sismember | 1.0.0 | Determine if a given value is a member of a set | key member
smismember | 6.2.0 | Returns the membership associated with the given elements for a set | key member ...
scard | 1.0.0 | Get the number of members in a set | key
spop | 1.0.0 | Remove and return one or multiple random members from a set | key [count:integer]
srandmember | 1.0.0 | Get one or multiple random members from a set | key [count:integer]
smove | 1.0.0 | Move a member from one set to another | source:key destination:key member
sinter | 1.0.0 | Intersect multiple sets | key ...
sinterstore | 1.0.0 | Intersect multiple sets and store the resulting set in a key | destination:key key ...
sunion | 1.0.0 | Add multiple sets | key ...
sunionstore | 1.0.0 | Add multiple sets and store the resulting set in a key | destination:key key ...
sdiff | 1.0.0 | Subtract multiple sets | key ...
sdiffstore | 1.0.0 | Subtract multiple sets and store the resulting set in a key | destination:key key ...
sintercard | 7.0.0 | Intersect multiple sets and return the cardinality of the result | numkeys:integer key ... [LIMIT limit:integer]
sscan | 2.8.0 | Incrementally iterate Set elements | key cursor:integer [MATCH pattern:pattern] [COUNT count:integer]
zadd | 1.2.0 | Add one or more members to a sorted set, or update its score if it already exists | key condition=[NX | XX] comparison=[GT | LT] [CH] [INCR] (score:double member) ...
zincrby | 1.2.0 | Increment the score of a member in a sorted set | key increment:double member
zrem | 1.2.0 | Remove one or more members from a sorted set | key member ...
zcard | 1.2.0 | Get the number of members in a sorted set | key
zscore | 1.2.0 | Get the score associated with the given member in a sorted set | key member
zmscore | 6.2.0 | Get the score associated with the given members in a sorted set | key member ...
zrank | 2.0.0 | Determine the index of a member in a sorted set | key member
zrevrank | 2.0.0 | Determine the index of a member in a sorted set, with scores ordered from high to low | key member
zcount | 2.0.0 | Count the members in a sorted set with scores within the given values | key min:double max:double
zlexcount | 2.8.9 | Count the number of members in a sorted set between a given lexicographical range | key min max
zrange | 1.2.0 | Return a range of members in a sorted set | key start stop sortby=[BYSCORE | BYLEX] [REV] [LIMIT (offset:integer count:integer)] [WITHSCORES]
zrangebyscore | 1.0.5 | Return a range of members in a sorted set, by score | key min:double max:double [WITHSCORES] [LIMIT (offset:integer count:integer)]
zrevrangebyscore | 2.2.0 | Return a range of members in a sorted set, by score, with scores ordered from high to low | key max:double min:double [WITHSCORES] [LIMIT (offset:integer count:integer)]
zrangebylex | 2.8.9 | Return a range of members in a sorted set, by lexicographical range | key min max [LIMIT (offset:integer count:integer)]
zrevrangebylex | 2.8.9 | Return a range of members in a sorted set, by lexicographical range, ordered from higher to lower strings. | key max min [LIMIT (offset:integer count:integer)]
zrevrange | 1.2.0 | Return a range of members in a sorted set, by index, with scores ordered from high to low | key start:integer stop:integer [WITHSCORES]
zremrangebyrank | 2.0.0 | Remove all members in a sorted set within the given indexes | key start:integer stop:integer
zremrangebyscore | 1.2.0 | Remove all members in a sorted set within the given scores | key min:double max:double
zremrangebylex | 2.8.9 | Remove all members in a sorted set between the given lexicographical range | key min max
zpopmin | 5.0.0 | Remove and return members with the lowest scores in a sorted set | key [count:integer]
zpopmax | 5.0.0 | Remove and return members with the highest scores in a sorted set | key [count:integer]
bzpopmin | 5.0.0 | Remove and return the member with the lowest score from one or more sorted sets, or block until one is available | key ... timeout:double
bzpopmax | 5.0.0 | Remove and return the member with the highest score from one or more sorted sets, or block until one is available | key ... timeout:double
zmpop | 7.0.0 | Remove and return members with scores in a sorted set | numkeys:integer key ... where=(MIN | MAX) [COUNT count:integer]
bzmpop | 7.0.0 | Remove and return members with scores in a sorted set or block until one is available | timeout:double numkeys:integer key ... where=(MIN | MAX) [COUNT count:integer]
zrandmember | 6.2.0 | Get one or multiple random elements from a sorted set | key [count:integer [WITHSCORES]]
zunionstore | 2.0.0 | Add multiple sorted sets and store the resulting sorted set in a new key | destination:key numkeys:integer key ... [WEIGHTS weight:integer ...] [AGGREGATE aggregate=(SUM | MIN | MAX)]
zinterstore | 2.0.0 | Intersect multiple sorted sets and store the resulting sorted set in a new key | destination:key numkeys:integer key ... [WEIGHTS weight:integer ...] [AGGREGATE aggregate=(SUM | MIN | MAX)]
zdiffstore | 6.2.0 | Subtract multiple sorted sets and store the resulting sorted set in a new key | destination:key numkeys:integer key ...
zunion | 6.2.0 | Add multiple sorted sets | numkeys:integer key ... [WEIGHTS weight:integer ...] [AGGREGATE aggregate=(SUM | MIN | MAX)] [WITHSCORES]
zinter | 6.2.0 | Intersect multiple sorted sets | numkeys:integer key ... [WEIGHTS weight:integer ...] [AGGREGATE aggregate=(SUM | MIN | MAX)] [WITHSCORES]
zdiff | 6.2.0 | Subtract multiple sorted sets | numkeys:integer key ... [WITHSCORES]
zintercard | 7.0.0 | Intersect multiple sorted sets and return the cardinality of the result | numkeys:integer key ... [LIMIT limit:integer]
zrangestore | 6.2.0 | Store a range of members from sorted set into another key | dst:key src:key min max sortby=[BYSCORE | BYLEX] [REV] [LIMIT (offset:integer count:integer)]
zscan | 2.8.0 | Incrementally iterate sorted sets elements and associated scores | key cursor:integer [MATCH pattern:pattern] [COUNT count:integer]
xadd | 5.0.0 | Appends a new message to a stream. Creates the key if it doesn't exist. | key [NOMKSTREAM] [trim=(strategy=(MAXLEN | MINID) [operator=(= | ~)] threshold [LIMIT count:integer])] id_or_auto=(* | id) data=(field value) ...
xlen | 5.0.0 | Return the number of messages in a stream. | key
xrange | 5.0.0 | Returns the messages from a stream within a range of IDs. | key start end [COUNT count:integer]
xrevrange | 5.0.0 | Returns the messages from a stream within a range of IDs in reverse order. | key end start [COUNT count:integer]
xdel | 5.0.0 | Returns the number of messages after removing them from a stream. | key id ...
xtrim | 5.0.0 | Deletes messages from the beginning of a stream. | key trim=(strategy=(MAXLEN | MINID) [operator=(= | ~)] threshold [LIMIT count:integer])
xread | 5.0.0 | Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise. | [COUNT count:integer] [BLOCK milliseconds:integer] STREAMS streams=(key ... id ...)
xreadgroup | 5.0.0 | Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise. | GROUP group-block=(group consumer) [COUNT count:integer] [BLOCK milliseconds:integer] [NOACK] STREAMS streams=(key ... id ...)
xgroup | 5.0.0 | A container for consumer groups commands |
xsetid | 5.0.0 | An internal command for replicating stream values. | key last-id [ENTRIESADDED entries_added:integer] [MAXDELETEDID max_deleted_entry_id]
xack | 5.0.0 | Returns the number of messages that were successfully acknowledged by the consumer group member of a stream. | key group id ...
xpending | 5.0.0 | Returns the information and entries from a stream consumer group's pending entries list. | key group [filters=([IDLE min-idle-time:integer] start end count:integer [consumer])]
xclaim | 5.0.0 | Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member. | key group consumer min-idle-time id ... [IDLE ms:integer] [TIME unix-time-milliseconds:unix-time] [RETRYCOUNT count:integer] [FORCE] [JUSTID] [LASTID id]
xautoclaim | 6.2.0 | Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member. | key group consumer min-idle-time start [COUNT count:integer] [JUSTID]
xinfo | 5.0.0 | A container for stream introspection commands |
multi | 1.2.0 | Mark the start of a transaction block |
exec | 1.2.0 | Execute all commands issued after MULTI |
discard | 2.0.0 | Discard all commands issued after MULTI |
watch | 2.2.0 | Watch the given keys to determine execution of the MULTI/EXEC block | key ...
unwatch | 2.2.0 | Forget about all watched keys |
subscribe | 2.0.0 | Listen for messages published to the given channels | channel ...
unsubscribe | 2.0.0 | Stop listening for messages posted to the given channels | [channel ...]
psubscribe | 2.0.0 | Listen for messages published to channels matching the given patterns | pattern:pattern ...
punsubscribe | 2.0.0 | Stop listening for messages posted to channels matching the given patterns | [pattern:pattern ...]
publish | 2.0.0 | Post a message to a channel | channel message
pubsub | 2.8.0 | A container for Pub/Sub commands |
spublish | 7.0.0 | Post a message to a shard channel | shardchannel message
ssubscribe | 7.0.0 | Listen for messages published to the given shard channels | shardchannel ...
sunsubscribe | 7.0.0 | Stop listening for messages posted to the given shard channels | [shardchannel ...]
eval | 2.6.0 | Execute a Lua script server side | script numkeys:integer [key:key ...] [arg ...]
evalsha | 2.6.0 | Execute a Lua script server side | sha1 numkeys:integer [key:key ...] [arg ...]
eval_ro | 7.0.0 | Execute a read-only Lua script server side | script numkeys:integer [key:key ...] [arg ...]
evalsha_ro | 7.0.0 | Execute a read-only Lua script server side | sha1 numkeys:integer [key:key ...] [arg ...]
script | 2.6.0 | A container for Lua scripts management commands |
fcall | 7.0.0 | Invoke a function | function numkeys:integer [key:key ...] [arg ...]
fcall_ro | 7.0.0 | Invoke a read-only function | function numkeys:integer [key:key ...] [arg ...]
function | 7.0.0 | A container for function commands |
slowlog | 2.2.12 | A container for slow log commands |
latency | 2.8.13 | A container for latency diagnostics commands |
memory | 4.0.0 | A container for memory diagnostics commands |
acl | 6.0.0 | A container for Access List Control commands  |
cluster | 3.0.0 | A container for cluster commands |
lolwut | 5.0.0 | Display some computer art and the Redis version | [VERSION version:integer]
module | 4.0.0 | A container for module commands |
role | 2.8.12 | Return the role of the instance in the context of replication |
replicaof | 5.0.0 | Make the server a replica of another instance, or promote it as master. | args=(host-port=(host port:integer) | no-one=(NO ONE))
slaveof | 1.0.0 | Make the server a replica of another instance, or promote it as master. | args=(host-port=(host port:integer) | no-one=(NO ONE))
failover | 6.2.0 | Start a coordinated failover between this server and one of its replicas. | [TO target=(host port:integer [FORCE])] [ABORT] [TIMEOUT milliseconds:integer]
psync | 2.8.0 | Internal command used for replication | replicationid offset:integer
sync | 1.0.0 | Internal command used for replication |
replconf | 3.0.0 | An internal command for configuring the replication stream |
asking | 3.0.0 | Sent by cluster clients after an -ASK redirect |
readonly | 3.0.0 | Enables read queries for a connection to a cluster replica node |
readwrite | 3.0.0 | Disables read queries for a connection to a cluster replica node |
restore-asking | 3.0.0 | An internal command for migrating keys in a cluster | key ttl:integer serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds:integer] [FREQ frequency:integer]
"""

# container|sub | since | arity | flags | summary | syntax (after the subcommand)
_SUBCOMMANDS = """
client|id | 5.0.0 | 2 | noscript,loading,stale | Returns the client ID for the current connection |
client|info | 6.2.0 | 2 | noscript,loading,stale | Returns information about the current client connection. |
client|list | 2.4.0 | -2 | admin,noscript,loading,stale | Get the list of client connections | [TYPE normal_master_replica_pubsub=(NORMAL | MASTER | REPLICA | PUBSUB)] [ID client-id:integer ...]
client|kill | 2.4.0 | -3 | admin,noscript,loading,stale | Kill the connection of a client | filter=(ip:port | new-format=([ID client-id:integer] | [TYPE (NORMAL | MASTER | SLAVE | REPLICA | PUBSUB)] | [USER username] | [ADDR ip:port] | [LADDR ip:port] | [SKIPME yes/no]) ...)
client|getname | 2.6.9 | 2 | noscript,loading,stale | Get the current connection name |
client|setname | 2.6.9 | 3 | noscript,loading,stale | Set the current connection name | connection-name
client|no-evict | 7.0.0 | 3 | admin,noscript,loading,stale | Set client eviction mode for the current connection | enabled=(ON | OFF)
client|tracking | 6.0.0 | -3 | noscript,loading,stale | Enable or disable server assisted client side caching support | status=(ON | OFF) [REDIRECT client-id:integer] [PREFIX prefix ...+] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]
client|caching | 6.0.0 | 3 | noscript,loading,stale | Instruct the server about tracking or not keys in the next request | mode=(YES | NO)
client|getredir | 6.0.0 | 2 | noscript,loading,stale | Get tracking notifications redirection client ID if any |
client|trackinginfo | 6.2.0 | 2 | noscript,loading,stale | Return information about server assisted client side caching for the current connection |
client|setinfo | 7.2.0 | 4 | noscript,loading,stale | Set client or connection specific info | attr=(LIB-NAME libname | LIB-VER libver)
client|no-touch | 7.2.0 | 3 | noscript,loading,stale | Controls whether commands sent by the client will alter the LRU/LFU of the keys they access | enabled=(ON | OFF)
client|pause | 2.9.50 | -3 | admin,noscript,loading,stale | Stop processing commands from clients for some time | timeout:integer mode=[WRITE | ALL]
client|unpause | 6.2.0 | 2 | admin,noscript,loading,stale | Resume processing of clients that were paused |
client|reply | 3.2.0 | 3 | noscript,loading,stale | Instruct the server whether to reply to commands | action=(ON | OFF | SKIP)
client|unblock | 5.0.0 | -3 | admin,noscript,loading,stale | Unblock a client blocked in a blocking command from a different connection | client-id:integer unblock-type=[TIMEOUT | ERROR]
client|help | 5.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
command|count | 2.8.13 | 2 | loading,stale | Get total number of Redis commands |
command|docs | 7.0.0 | -2 | loading,stale | Get array of specific Redis command documentation | [command-name ...]
command|getkeys | 2.8.13 | -4 | loading,stale | Extract keys given a full Redis command |
command|info | 2.8.13 | -2 | loading,stale | Get array of specific Redis command details, or all when no argument is given. | [command-name ...]
command|list | 7.0.0 | -2 | loading,stale | Get an array of Redis command names | [FILTERBY (MODULE module-name | ACLCAT category | PATTERN pattern:pattern)]
command|getkeysandflags | 7.0.0 | -4 | loading,stale | Extract keys and access flags given a full Redis command |
command|help | 5.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
config|get | 2.0.0 | -3 | admin,noscript,loading,stale | Get the values of configuration parameters | parameter ...
config|set | 2.0.0 | -4 | admin,noscript,loading,stale | Set configuration parameters to the given values | data=(parameter value) ...
config|resetstat | 2.0.0 | 2 | admin,noscript,loading,stale | Reset the stats returned by INFO |
config|rewrite | 2.8.0 | 2 | admin,noscript,loading,stale | Rewrite the configuration file with the in memory configuration |
config|help | 5.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
object|encoding | 2.2.3 | 3 | readonly | Inspect the internal encoding of a Redis object | key
object|freq | 4.0.0 | 3 | readonly | Get the logarithmic access frequency counter of a Redis object | key
object|idletime | 2.2.3 | 3 | readonly | Get the time since a Redis object was last accessed | key
object|refcount | 2.2.3 | 3 | readonly | Get the number of references to the value of the key | key
object|help | 6.2.0 | 2 | loading,stale | Show helpful text about the different subcommands |
pubsub|channels | 2.8.0 | -2 | pubsub,loading,stale | List active channels | [pattern:pattern]
pubsub|numpat | 2.8.0 | 2 | pubsub,loading,stale | Get the count of unique patterns pattern subscriptions |
pubsub|numsub | 2.8.0 | -2 | pubsub,loading,stale | Get the count of subscribers for channels | [channel ...]
pubsub|shardchannels | 7.0.0 | -2 | pubsub,loading,stale | List active shard channels | [pattern:pattern]
pubsub|shardnumsub | 7.0.0 | -2 | pubsub,loading,stale | Get the count of subscribers for shard channels | [shardchannel ...]
pubsub|help | 6.2.0 | 2 | loading,stale | Show helpful text about the different subcommands |
xgroup|create | 5.0.0 | -5 | write,denyoom | Creates a consumer group. | key groupname id_or_last_id=(id | $) [MKSTREAM] [ENTRIESREAD entries_read:integer]
xgroup|createconsumer | 6.2.0 | 5 | write,denyoom | Creates a consumer in a consumer group. | key groupname consumername
xgroup|delconsumer | 5.0.0 | 5 | write | Deletes a consumer from a consumer group. | key groupname consumername
xgroup|destroy | 5.0.0 | 4 | write | Destroys a consumer group. | key groupname
xgroup|setid | 5.0.0 | -5 | write | Sets the last-delivered ID of a consumer group. | key groupname id_or_last_id=(id | $) [ENTRIESREAD entries_read:integer]
xgroup|help | 5.0.0 | 2 | loading,stale | Returns helpful text about the different subcommands. |
xinfo|consumers | 5.0.0 | 4 | readonly | Returns a list of the consumers in a consumer group. | key groupname
xinfo|groups | 5.0.0 | 3 | readonly | Returns a list of the consumer groups of a stream. | key
xinfo|stream | 5.0.0 | -3 | readonly | Returns information about a stream. | key [full-block=(FULL [COUNT count:integer])]
xinfo|help | 5.0.0 | 2 | loading,stale | Returns helpful text about the different subcommands. |
script|flush | 2.6.0 | -2 | noscript | Remove all the scripts from the script cache. | [async=(ASYNC | SYNC)]
script|exists | 2.6.0 | -3 | noscript | Check existence of scripts in the script cache. | sha1 ...
script|load | 2.6.0 | 3 | noscript,stale | Load the specified Lua script into the script cache. | script
script|help | 5.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
script|kill | 2.6.0 | 2 | noscript,allow_busy | Kill the script currently in execution. |
script|debug | 3.2.0 | 3 | noscript | Set the debug mode for executed scripts. | mode=(YES | SYNC | NO)
function|load | 7.0.0 | -3 | write,denyoom,noscript | Create a function with the given arguments (name, code, description) | [REPLACE] function-code
function|help | 7.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
function|list | 7.0.0 | -2 | noscript | List information about all the functions | [LIBRARYNAME library-name-pattern] [WITHCODE]
function|restore | 7.0.0 | -3 | write,denyoom,noscript | Restore all the functions on the given payload | serialized-value [policy=(FLUSH | APPEND | REPLACE)]
function|delete | 7.0.0 | 3 | write,noscript | Delete a function by name | library-name
function|dump | 7.0.0 | 2 | noscript | Dump all functions into a serialized binary payload |
function|kill | 7.0.0 | 2 | noscript,allow_busy | Kill the function currently in execution. |
function|flush | 7.0.0 | -2 | write,noscript | Deleting all functions | [async=(ASYNC | SYNC)]
function|stats | 7.0.0 | 2 | noscript,allow_busy | Return information about the function currently running (name, description, duration) |
acl|getuser | 6.0.0 | 3 | admin,noscript,loading,stale | Get the rules for a specific ACL user | username:string
acl|list | 6.0.0 | 2 | admin,noscript,loading,stale | List the current ACL rules in ACL config file format |
acl|users | 6.0.0 | 2 | admin,noscript,loading,stale | List the username of all the configured ACL rules |
acl|dryrun | 7.0.0 | -4 | admin,noscript,loading,stale | Returns whether the user can execute the given command without executing the command. | username:string command:string [arg:string ...]
acl|deluser | 6.0.0 | -3 | admin,noscript,loading,stale | Remove the specified ACL users and the associated rules | username:string ...
acl|setuser | 6.0.0 | -3 | admin,noscript,loading,stale | Modify or create the rules for a specific ACL user | username:string [rule:string ...]
acl|cat | 6.0.0 | -2 | noscript,loading,stale | List the ACL categories or the commands inside a category | [categoryname:string]
acl|genpass | 6.0.0 | -2 | noscript,loading,stale | Generate a pseudorandom secure password to use for ACL users | [bits:integer]
acl|help | 6.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
acl|whoami | 6.0.0 | 2 | noscript,loading,stale | Return the name of the user associated to the current connection |
acl|load | 6.0.0 | 2 | admin,noscript,loading,stale | Reload the ACLs from the configured ACL file |
acl|save | 6.0.0 | 2 | admin,noscript,loading,stale | Save the current ACL rules in the configured ACL file |
acl|log | 6.0.0 | -2 | admin,noscript,loading,stale | List latest events denied because of ACLs in place | [operation=(count:integer | RESET)]
slowlog|get | 2.2.12 | -2 | admin,loading,stale | Get the slow log's entries | [count:integer]
slowlog|len | 2.2.12 | 2 | admin,loading,stale | Get the slow log's length |
slowlog|reset | 2.2.12 | 2 | admin,loading,stale | Clear all entries from the slow log |
slowlog|help | 6.2.0 | 2 | loading,stale | Show helpful text about the different subcommands |
cluster|addslots | 3.0.0 | -3 | admin,stale,no_async_loading | Assign new hash slots to receiving node | slot:integer ...
cluster|addslotsrange | 7.0.0 | -4 | admin,stale,no_async_loading | Assign new hash slots to receiving node | start-slot_end-slot=(start-slot:integer end-slot:integer) ...
cluster|bumpepoch | 3.0.0 | 2 | admin,stale,no_async_loading | Advance the cluster config epoch |
cluster|count-failure-reports | 3.0.0 | 3 | admin,stale | Return the number of failure reports active for a given node | node-id
cluster|countkeysinslot | 3.0.0 | 3 | stale | Return the number of local keys in the specified hash slot | slot:integer
cluster|delslots | 3.0.0 | -3 | admin,stale,no_async_loading | Set hash slots as unbound in receiving node | slot:integer ...
cluster|delslotsrange | 7.0.0 | -4 | admin,stale,no_async_loading | Set hash slots as unbound in receiving node | start-slot_end-slot=(start-slot:integer end-slot:integer) ...
cluster|failover | 3.0.0 | -2 | admin,stale,no_async_loading | Forces a replica to perform a manual failover of its master. | options=[FORCE | TAKEOVER]
cluster|flushslots | 3.0.0 | 2 | admin,stale,no_async_loading | Delete a node's own slots information |
cluster|forget | 3.0.0 | 3 | admin,stale,no_async_loading | Remove a node from the nodes table | node-id
cluster|getkeysinslot | 3.0.0 | 4 | stale | Return local key names in the specified hash slot | slot:integer count:integer
cluster|help | 5.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
cluster|info | 3.0.0 | 2 | stale | Provides info about Redis Cluster node state |
cluster|keyslot | 3.0.0 | 3 | stale | Returns the hash slot of the specified key | key:string
cluster|links | 7.0.0 | 2 | stale | Returns a list of all TCP links to and from peer nodes in cluster |
cluster|meet | 3.0.0 | -4 | admin,stale,no_async_loading | Force a node cluster to handshake with another node | ip port:integer [cluster_bus_port:integer]
cluster|myid | 3.0.0 | 2 | stale | Return the node id |
cluster|nodes | 3.0.0 | 2 | stale | Get Cluster config for the node |
cluster|replicas | 5.0.0 | 3 | admin,stale | List replica nodes of the specified master node | node-id
cluster|replicate | 3.0.0 | 3 | admin,stale,no_async_loading | Reconfigure a node as a replica of the specified master node | node-id
cluster|reset | 3.0.0 | -2 | admin,noscript,stale | Reset a Redis Cluster node | hard_soft=[HARD | SOFT]
cluster|saveconfig | 3.0.0 | 2 | admin,stale,no_async_loading | Forces the node to save cluster state on disk |
cluster|set-config-epoch | 3.0.0 | 3 | admin,stale,no_async_loading | Set the configuration epoch in a new node | config-epoch:integer
cluster|setslot | 3.0.0 | -4 | admin,stale,no_async_loading | Bind a hash slot to a specific node | slot:integer subcommand=(IMPORTING node-id | MIGRATING node-id | NODE node-id | STABLE)
cluster|shards | 7.0.0 | 2 | stale | Get array of cluster slots to node mappings |
cluster|slaves | 3.0.0 | 3 | admin,stale | List replica nodes of the specified master node | node-id
cluster|slots | 3.0.0 | 2 | stale | Get array of Cluster slot to node mappings |
latency|doctor | 2.8.13 | 2 | admin,noscript,loading,stale | Return a human readable latency analysis report. |
latency|graph | 2.8.13 | 3 | admin,noscript,loading,stale | Return a latency graph for the event. | event
latency|help | 2.8.13 | 2 | loading,stale | Show helpful text about the different subcommands. |
latency|histogram | 7.0.0 | -2 | admin,noscript,loading,stale | Return the cumulative distribution of latencies of a subset of commands or all. | [command ...]
latency|history | 2.8.13 | 3 | admin,noscript,loading,stale | Return timestamp-latency samples for the event. | event
latency|latest | 2.8.13 | 2 | admin,noscript,loading,stale | Return the latest latency samples for all events. |
latency|reset | 2.8.13 | -2 | admin,noscript,loading,stale | Reset latency data for one or more events. | [event ...]
memory|doctor | 4.0.0 | 2 | - | Outputs memory problems report |
memory|help | 4.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
memory|malloc-stats | 4.0.0 | 2 | - | Show allocator internal stats |
memory|purge | 4.0.0 | 2 | - | Ask the allocator to release memory |
memory|stats | 4.0.0 | 2 | - | Show memory usage details |
memory|usage | 4.0.0 | -3 | readonly | Estimate the memory usage of a key | key [SAMPLES count:integer]
module|help | 5.0.0 | 2 | loading,stale | Show helpful text about the different subcommands |
module|list | 4.0.0 | 2 | admin,noscript | List all modules loaded by the server |
module|load | 4.0.0 | -3 | admin,noscript,no_async_loading,protected | Load a module | path [arg ...]
module|loadex | 7.0.0 | -3 | admin,noscript,no_async_loading,protected | Load a module with extended parameters | path [CONFIG configs={name value} ...+] [ARGS args={arg} ...]
module|unload | 4.0.0 | 3 | admin,noscript,no_async_loading,protected | Unload a module | name
"""

TYPES = frozenset({"key", "integer", "double", "pattern", "unix-time", "string"})
_TOKEN_RE = re.compile(r"[A-Z][A-Z0-9_-]*\Z")
_LEX_RE = re.compile(r"\.\.\.\+?|[a-z][a-z0-9_-]*=|[\[\](){}|]|[^\s\[\](){}|]+")
_FLAG_ORDER = ("optional", "multiple", "multiple_token")

Node = dict[str, Any]  # one argument's map, as COMMAND DOCS lists it (str keys)


class _Parser:
    """A recursive-descent reader of one syntax line (see the module docstring)."""

    def __init__(self, text: str) -> None:
        self.words: list[str] = _LEX_RE.findall(text)
        self.pos = 0
        self.keys = 0  # key arguments seen, for key_spec_index

    def peek(self) -> str | None:
        return self.words[self.pos] if self.pos < len(self.words) else None

    def take(self) -> str:
        word = self.words[self.pos]
        self.pos += 1
        return word

    def sequence(self, stop: tuple[str | None, ...]) -> list[Node]:
        items: list[Node] = []
        while self.peek() not in stop:
            items.append(self.item())
        return items

    def alternatives(self, closer: str) -> list[list[Node]]:
        alts = [self.sequence(("|", closer))]
        while self.peek() == "|":
            self.take()
            alts.append(self.sequence(("|", closer)))
        if self.take() != closer:
            raise ValueError("unbalanced syntax")
        return alts

    def item(self) -> Node:
        word = self.take()
        name = None
        if word.endswith("=") and len(word) > 1:  # a group's name: condition=[NX | XX]
            name, word = word[:-1], self.take()
        if word in ("[", "("):
            closer = "]" if word == "[" else ")"
            alts = self.alternatives(closer)
            if len(alts) > 1:
                node = _node("oneof", [_single(seq) for seq in alts])
            else:
                node = _single(alts[0])
            if word == "[":
                _flag(node, "optional")
            if name is not None:
                node["name"] = name
        elif word == "{":
            node = _node("block", self.sequence(("}",)))
            self.take()
            if name is not None:
                node["name"] = name
        elif word == '""':  # the empty string as a token (MIGRATE's key_or_empty_string)
            node = {"name": name or "empty_string", "type": "pure-token", "token": ""}
        elif _TOKEN_RE.match(word):
            nxt = self.peek()
            if (
                nxt is not None
                and nxt not in ("|", "]", ")", "}", "...", "...+")
                and not _TOKEN_RE.match(nxt)
            ):
                node = self.item()
                if "token" in node:
                    node = _node("block", [node])
                node = dict(node, token=word)
                if node.get("type") == "block" and "name" not in node:
                    node["name"] = word.lower()
            else:
                node = {"name": word.lower(), "type": "pure-token", "token": word}
        else:
            name, _, kind = word.partition(":")
            if kind and kind not in TYPES:  # a name with a colon: ip:port
                name, kind = word, ""
            kind = kind or ("key" if name == "key" else "string")
            node = {"name": name, "type": kind}
            if kind == "key":
                node["key_spec_index"] = self.keys
                self.keys += 1
        if self.peek() in ("...", "...+"):
            if self.take() == "...+":
                _flag(node, "multiple")
                _flag(node, "multiple_token")
            else:
                _flag(node, "multiple")
        return node


def _node(kind: str, children: list[Node]) -> Node:
    name = "_".join(c["name"] for c in children[:2])
    return {"name": name, "type": kind, "arguments": children}


def _single(seq: list[Node]) -> Node:
    return seq[0] if len(seq) == 1 else _node("block", seq)


def _flag(node: Node, flag: str) -> None:
    node["flags"] = [*node.get("flags", []), flag]


def parse_syntax(text: str) -> list[Node]:
    """The argument maps of a syntax line, as COMMAND DOCS lists them."""
    parser = _Parser(text)
    args = parser.sequence((None,))
    return args


class Doc:
    """One command's or subcommand's documentation row."""

    __slots__ = ("name", "since", "summary", "syntax", "arity", "flags")

    def __init__(
        self, name: str, since: str, summary: str, syntax: str, arity: int = 0, flags: tuple[str, ...] = ()
    ) -> None:
        self.name = name
        self.since = since
        self.summary = summary
        self.syntax = syntax
        self.arity = arity
        self.flags = flags  # a subcommand's own flags (Redis gives containers none)

    @property
    def arguments(self) -> list[Node]:
        return _arguments(self.syntax)


@cache
def _arguments(syntax: str) -> list[Node]:
    return parse_syntax(syntax)


def _load() -> tuple[dict[str, Doc], dict[str, dict[str, Doc]]]:
    docs: dict[str, Doc] = {}
    for line in _DOCS.strip().splitlines():
        name, since, summary, syntax = (part.strip() for part in (line + " ").split(" | ", 3))
        docs[name] = Doc(name, since, summary, syntax)
    subs: dict[str, dict[str, Doc]] = {}
    for line in _SUBCOMMANDS.strip().splitlines():
        full, since, arity, flags, summary, syntax = (part.strip() for part in (line + " ").split(" | ", 5))
        container, _, sub = full.partition("|")
        subs.setdefault(container, {})[sub] = Doc(
            full, since, summary, syntax, int(arity), tuple(f for f in flags.split(",") if f != "-")
        )
    return docs, subs


DOCS, SUBCOMMANDS = _load()


# The details that COMMAND DOCS gives beyond the rows above (complexity,
# doc flags, deprecation, history, the version an argument appeared in), as
# redis-server 7.0.15 gives them, for the scripting commands and those of
# replication, the cluster and MODULE; other commands go without.
_SCRIPT_COMPLEXITY = "Depends on the script that is executed."
_FUNCTION_COMPLEXITY = "Depends on the function that is executed."
_DETAILS: dict[str, dict[str, Any]] = {
    "eval": {"complexity": _SCRIPT_COMPLEXITY},
    "evalsha": {"complexity": _SCRIPT_COMPLEXITY},
    "eval_ro": {"complexity": _SCRIPT_COMPLEXITY},
    "evalsha_ro": {"complexity": _SCRIPT_COMPLEXITY},
    "fcall": {"complexity": _FUNCTION_COMPLEXITY},
    "fcall_ro": {"complexity": _FUNCTION_COMPLEXITY},
    "script|debug": {"complexity": "O(1)"},
    "script|exists": {
        "complexity": "O(N) with N being the number of scripts to check"
        " (so checking a single script is an O(1) operation)."
    },
    "script|flush": {
        "complexity": "O(N) with N being the number of scripts in cache",
        "history": [("6.2.0", "Added the `ASYNC` and `SYNC` flushing mode modifiers.")],
        "since": {"async": "6.2.0"},
    },
    "script|help": {"complexity": "O(1)"},
    "script|kill": {"complexity": "O(1)"},
    "script|load": {"complexity": "O(N) with N being the length in bytes of the script body."},
    "function|delete": {"complexity": "O(1)"},
    "function|dump": {"complexity": "O(N) where N is the number of functions"},
    "function|flush": {"complexity": "O(N) where N is the number of functions deleted"},
    "function|help": {"complexity": "O(1)"},
    "function|kill": {"complexity": "O(1)"},
    "function|list": {"complexity": "O(N) where N is the number of functions"},
    "function|load": {"complexity": "O(1) (considering compilation time is redundant)"},
    "function|restore": {"complexity": "O(N) where N is the number of functions on the payload"},
    "function|stats": {"complexity": "O(1)"},
    # the commands of replication, of the cluster and MODULE, which shardkv
    # answers as a redis-server with neither
    **dict.fromkeys(
        ("asking", "readonly", "readwrite", "role", "failover", "replicaof"), {"complexity": "O(1)"}
    ),
    "replconf": {"complexity": "O(1)", "doc_flags": ["syscmd"]},
    "slaveof": {
        "complexity": "O(1)",
        "doc_flags": ["deprecated"],
        "deprecated_since": "5.0.0",
        "replaced_by": "`REPLICAOF`",
    },
    "restore-asking": {
        "complexity": "O(1) to create the new key and additional O(N*M) to reconstruct the serialized value,"
        " where N is the number of Redis objects composing the value and M their average size. For small"
        " string values the time complexity is thus O(1)+O(1*M) where M is small, so simply O(1). However"
        " for sorted set values the complexity is O(N*M*log(N)) because inserting values into sorted sets"
        " is O(log(N)).",
        "doc_flags": ["syscmd"],
        "history": [
            ("3.0.0", "Added the `REPLACE` modifier."),
            ("5.0.0", "Added the `ABSTTL` modifier."),
            ("5.0.0", "Added the `IDLETIME` and `FREQ` options."),
        ],
        "since": {"replace": "3.0.0", "absttl": "5.0.0", "seconds": "5.0.0", "frequency": "5.0.0"},
    },
    "spublish": {
        "complexity": "O(N) where N is the number of clients subscribed to the receiving shard channel."
    },
    "ssubscribe": {"complexity": "O(N) where N is the number of shard channels to subscribe to."},
    "sunsubscribe": {
        "complexity": "O(N) where N is the number of clients already subscribed to a shard channel."
    },
    "module|help": {"complexity": "O(1)"},
    "module|list": {"complexity": "O(N) where N is the number of loaded modules."},
    "module|load": {"complexity": "O(1)"},
    "module|loadex": {"complexity": "O(1)"},
    "module|unload": {"complexity": "O(1)"},
}


def _doc_map(doc: Doc, group: str) -> dict[bytes, Any]:
    """A command's or a subcommand's COMMAND DOCS map, in Redis's order:
    summary, since, group, complexity, doc_flags, deprecated_since,
    replaced_by, history, arguments."""
    details = _DETAILS.get(doc.name, {})
    out: dict[bytes, Any] = {
        b"summary": doc.summary.encode(),
        b"since": doc.since.encode(),
        b"group": group.replace("_", "-").encode(),
    }
    if "complexity" in details:
        out[b"complexity"] = details["complexity"].encode()
    if "doc_flags" in details:
        out[b"doc_flags"] = list(details["doc_flags"])  # simple strings, as Redis's
    for key in ("deprecated_since", "replaced_by"):
        if key in details:
            out[key.encode()] = details[key].encode()
    if "history" in details:
        out[b"history"] = OrderedSet([v.encode(), text.encode()] for v, text in details["history"])
    if doc.syntax:
        since = details.get("since", {})
        out[b"arguments"] = [
            _to_reply(dict(a, since=since[a["name"]]) if a["name"] in since else a) for a in doc.arguments
        ]
    return out


def _to_reply(node: Node) -> dict[bytes, Any]:
    """An argument map with bytes keys and values, children included."""
    out: dict[bytes, Any] = {}
    for key in ("name", "type", "key_spec_index", "token", "since", "flags", "arguments"):
        if key not in node:
            continue
        value = node[key]
        if key == "arguments":
            value = [_to_reply(child) for child in value]
        elif key == "flags":
            value = [f for f in _FLAG_ORDER if f in value]  # simple strings, as Redis
        elif isinstance(value, str):
            value = value.encode()
        out[key.encode()] = value
    return out


def doc_reply(name: str, group: str) -> dict[bytes, Any]:
    """The COMMAND DOCS map of command ``name`` (lowercase)."""
    doc = DOCS.get(name)
    subs = SUBCOMMANDS.get(name)
    out = _doc_map(doc or Doc(name, "1.0.0", name.upper(), ""), group)
    if subs:
        out.pop(b"arguments", None)
        out[b"complexity"] = b"Depends on subcommand."
        out[b"subcommands"] = {sub.name.encode(): _doc_map(sub, group) for sub in subs.values()}
    return out


def check_subcommand(args: list[bytes], known_only: bool = True) -> str | None:
    """The arity error for ``args`` (a container command), or the unknown
    subcommand error, or None when the subcommand and its arity are right.

    Containers whose subcommands are not listed here always pass.
    """
    container = args[0].decode("latin-1").lower()
    subs = SUBCOMMANDS.get(container)
    if subs is None:
        return None
    sub = args[1].decode("latin-1").lower()
    doc = subs.get(sub)
    if doc is None:
        if not known_only:
            return None
        return errors.UNKNOWN_SUBCOMMAND % (args[1].decode("latin-1"), container.upper())
    a = doc.arity
    if (len(args) != a) if a > 0 else (len(args) < -a):
        return errors.WRONG_ARITY % doc.name
    return None
