"""Stream commands: XADD, XRANGE, XREAD, consumer groups, XCLAIM, XINFO...

The value is a :class:`~shardkv.worker.stream.Stream`; replies, errors and
the order in which errors are checked follow Redis 7.0's ``t_stream.c``.

XREAD and XREADGROUP are registered with
:func:`shardkv.worker.blocking.blocking`: with BLOCK and nothing to read
they return a :class:`~shardkv.worker.blocking.Wait` whose serve function
remembers the IDs resolved when the command blocked (``$``, or the group's
last delivered ID for ``>``), as Redis's ``serveClientsBlockedOnStreamKey``.
A blocked XREADGROUP whose key is deleted (or replaced by another type)
gets ``-UNBLOCKED``, and one whose group is destroyed ``-NOGROUP``.

Commands whose effect depends on the clock or on the IDs generated leave
the records to log in :data:`PROPAGATE` (Redis's ``alsoPropagate``):
XREADGROUP as ``XCLAIM ... FORCE JUSTID LASTID`` per entry delivered,
XCLAIM and XAUTOCLAIM likewise; :mod:`shardkv.worker.persistence.aof` logs those.
"""

from __future__ import annotations

from collections.abc import Callable

from shardkv.protocol import errors
from shardkv.protocol.args import LLONG_MAX, ULLONG_MAX, parse_int
from shardkv.protocol.command_docs import check_subcommand
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import NULL_ARRAY, OK, Error, KeyedArrays, strict_int
from shardkv.protocol.wire import Verb
from shardkv.worker.blocking import Wait, now_or_never
from shardkv.worker.handlers import Blocking, BlockingForms, Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.stream import (
    INVALID_ENTRIES_READ,
    MASK64,
    MAX_ID,
    Consumer,
    Group,
    Nack,
    Stream,
    added_now,
    format_id,
    node_limits,
)

XREAD_BLOCKED_DEFAULT_COUNT = 1000

# Records for the AOF left by the last stream command that changed
# something (see the module docstring); replaced by every such command.
PROPAGATE: list = []  # records, or tuples that _spell turns into XCLAIMs


# -- parsing -------------------------------------------------------------------


def _strtoull(s: bytes) -> int | None:
    """C's strtoull as string2ull falls back to it: spaces, a sign, digits."""
    i = 0
    n = len(s)
    while i < n and s[i] in b" \t\n\v\f\r":
        i += 1
    neg = False
    if i < n and s[i] in b"+-":
        neg = s[i] == 45
        i += 1
    digits = s[i:]
    if not digits or not digits.isdigit():
        return None
    v = int(digits)
    if v > ULLONG_MAX:
        return None
    return ((1 << 64) - v) & ULLONG_MAX if neg else v


def _string2ull(s: bytes) -> int | None:
    v = strict_int(s)
    if v is not None:
        return v if v >= 0 else None
    if not s or len(s) > 127:
        return None
    return _strtoull(s)


def parse_id(
    arg: bytes, missing_seq: int = 0, strict: bool = False, seq_star: bool = False
) -> tuple[int, bool]:
    """streamGenericParseIDOrReply: (id, seq given).  ``seq_star`` accepts ``ms-*``."""
    if len(arg) > 127:
        raise CommandError(errors.INVALID_STREAM_ID)
    if arg == b"-" or arg == b"+":
        if strict:
            raise CommandError(errors.INVALID_STREAM_ID)
        return (0 if arg == b"-" else MAX_ID), True
    ms_part, dash, seq_part = arg.partition(b"-")
    if b"\x00" in arg:
        ms_part = ms_part.split(b"\x00", 1)[0]
    ms = _string2ull(ms_part)
    if ms is None:
        raise CommandError(errors.INVALID_STREAM_ID)
    if not dash:
        return (ms << 64) | missing_seq, True
    if seq_star and seq_part == b"*":
        return ms << 64, False
    seq = _string2ull(seq_part)
    if seq is None:
        raise CommandError(errors.INVALID_STREAM_ID)
    return (ms << 64) | seq, True


def parse_strict_id(arg: bytes, missing_seq: int = 0) -> int:
    return parse_id(arg, missing_seq, strict=True)[0]


def _interval(arg: bytes, missing_seq: int) -> tuple[int, bool]:
    """streamParseIntervalIDOrReply: (id, exclusive)."""
    if len(arg) > 1 and arg[:1] == b"(":
        return parse_id(arg[1:], missing_seq, strict=True)[0], True
    return parse_id(arg, missing_seq)[0], False


def _range_bounds(start_arg: bytes, end_arg: bytes) -> tuple[int, int]:
    start, ex = _interval(start_arg, 0)
    if ex:
        if start == MAX_ID:
            raise CommandError(errors.INVALID_START_ID)
        start += 1
    end, ex = _interval(end_arg, ULLONG_MAX)
    if ex:
        if end == 0:
            raise CommandError(errors.INVALID_END_ID)
        end -= 1
    return start, end


def _lookup(ks: Keyspace, key: bytes) -> Stream | None:
    return ks.lookup_type(key, Stream)


def _now(ks: Keyspace) -> int:
    """The wall clock in ms, as Redis's mstime() (not the batch's cached
    time, which stands still while the AOF is replayed)."""
    return ks.clock.now_ms()


def _consumer(g: Group, key: bytes, group_name: bytes, name: bytes, now: int) -> Consumer:
    """The consumer ``name``, seen now; one created here is logged as
    XGROUP CREATECONSUMER, so that the AOF keeps it even when nothing is
    delivered to it (Redis logs it only for NOACK reads)."""
    c = g.consumers.get(name)
    if c is None:
        PROPAGATE.append([b"XGROUP", b"CREATECONSUMER", key, group_name, name])
    return g.consumer(name, now)  # type: ignore[return-value]


# -- XADD / XTRIM ----------------------------------------------------------------


class TrimArgs:
    __slots__ = ("maxlen", "minid", "approx", "limit", "arg_idx", "id", "id_given", "seq_given", "nomkstream")

    def __init__(self) -> None:
        self.maxlen: int | None = None
        self.minid: int | None = None
        self.approx = False
        self.limit = 0
        self.arg_idx = 0
        self.id = 0
        self.id_given = False
        self.seq_given = True
        self.nomkstream = False

    @property
    def strategy(self) -> bool:
        return self.maxlen is not None or self.minid is not None


def parse_add_or_trim(ks: Keyspace, args: list[bytes], xadd: bool) -> tuple[TrimArgs, int]:
    """streamParseAddOrTrimArgsOrReply: the options and the ID's position."""
    t = TrimArgs()
    n = len(args)
    i = 2
    limit_given = False
    while i < n:
        more = n - 1 - i
        opt = args[i]
        lower = opt.lower()
        if xadd and opt == b"*":
            break
        if lower in (b"maxlen", b"minid") and more:
            if t.strategy:
                raise CommandError(errors.MAXLEN_AND_MINID)
            t.approx = False
            nxt = args[i + 1]
            if more >= 2 and nxt == b"~":
                t.approx = True
                i += 1
            elif more >= 2 and nxt == b"=":
                i += 1
            if lower == b"maxlen":
                t.maxlen = parse_int(args[i + 1])
                if t.maxlen < 0:
                    raise CommandError(errors.MAXLEN_NEGATIVE)
            else:
                t.minid = parse_strict_id(args[i + 1])
            i += 1
            t.arg_idx = i
        elif lower == b"limit" and more:
            t.limit = parse_int(args[i + 1])
            if t.limit < 0:
                raise CommandError(errors.STREAM_LIMIT_NEGATIVE)
            limit_given = True
            i += 1
        elif xadd and lower == b"nomkstream":
            t.nomkstream = True
        elif xadd:
            t.id, t.seq_given = parse_id(opt, 0, strict=True, seq_star=True)
            t.id_given = True
            break
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    if t.limit and not t.strategy:
        raise CommandError(errors.LIMIT_WITHOUT_STRATEGY)
    if not xadd and not t.strategy:
        raise CommandError(errors.XTRIM_WITHOUT_STRATEGY)
    if limit_given:
        if not t.approx:
            raise CommandError(errors.LIMIT_WITHOUT_APPROX)
    elif t.approx:
        t.limit = 100 * node_limits(ks.runtime.extra)[0]
        if t.limit <= 0:
            t.limit = 10000
        if t.limit > 1000000:
            t.limit = 1000000
    else:
        t.limit = 0
    return t, i


_PLAIN_ADD = TrimArgs()  # XADD key * ...: no options (never changed)


def _trim(s: Stream, t: TrimArgs) -> int:
    return s.trim(t.maxlen, t.minid, t.approx, t.limit)


def xadd(ks: Keyspace, args: list[bytes]) -> object:
    """XADD key [NOMKSTREAM] [MAXLEN | MINID [= | ~] threshold [LIMIT count]] * | id field value [field value ...]"""
    if args[2] == b"*":  # the common case: no options
        t, idpos = _PLAIN_ADD, 2
    else:
        t, idpos = parse_add_or_trim(ks, args, True)
    fields_at = idpos + 1
    nfields = len(args) - fields_at
    if nfields < 2 or nfields % 2:
        raise CommandError(errors.WRONG_ARITY % "xadd")
    if t.id_given and t.seq_given and t.id == 0:
        raise CommandError(errors.XADD_ID_ZERO)
    key = args[1]
    s = _lookup(ks, key)
    if s is None:
        if t.nomkstream:
            return None
        s = Stream()
        ks.store(key, s)
    last = s.last_id
    if last == MAX_ID:
        raise CommandError(errors.XADD_EXHAUSTED)
    if t.id_given:
        if t.seq_given:
            new = t.id
        elif last >> 64 == t.id >> 64:
            if last & MASK64 == MASK64:
                # Redis's streamAppendItem returns C_ERR here without
                # setting errno to EDOM, so XADD says "too large".
                raise CommandError(errors.XADD_TOO_LARGE)
            new = last + 1
        else:
            new = t.id
    else:
        ms = ks.clock.now_ms()
        new = ms << 64 if ms > last >> 64 else last + 1
    if new <= last:
        raise CommandError(errors.XADD_ID_TOO_SMALL)
    pairs = args[fields_at:]
    if sum(map(len, pairs)) > 1 << 30:
        raise CommandError(errors.XADD_TOO_LARGE)
    entries, nbytes = node_limits(ks.runtime.extra)
    s.append(new, pairs, entries, nbytes)
    ks.touch(key)
    if t.strategy:
        _trim(s, t)
    return format_id(new)


def xtrim(ks: Keyspace, args: list[bytes]) -> object:
    """XTRIM key MAXLEN | MINID [= | ~] threshold [LIMIT count]"""
    t, _ = parse_add_or_trim(ks, args, False)
    s = _lookup(ks, args[1])
    deleted = 0 if s is None else _trim(s, t)
    _deleted(ks, args[1], deleted)
    return deleted


def _deleted(ks: Keyspace, key: bytes, deleted: int) -> None:
    """XTRIM, XDEL, XACK removed ``deleted`` entries (or acknowledged them):
    as Redis, a change each, and none is no change (not dirty, not logged)."""
    if not deleted:
        ks.unchanged = True
        return
    ks.touch(key)
    if deleted > 1:
        ks.changes = deleted


def _rewrite_trim(s: Stream, args: list[bytes], t: TrimArgs) -> list[bytes]:
    """MAXLEN/MINID ~ x as = <what the stream holds now> (streamRewriteTrimArgument)."""
    out = list(args)
    if t.approx:
        out[t.arg_idx - 1] = b"="
        out[t.arg_idx] = b"%d" % s.length if t.maxlen is not None else format_id(s.first_valid_id())
        # LIMIT is meaningless without ~: drop it
        for j in range(2, len(out) - 1):
            if out[j].lower() == b"limit" and j != t.arg_idx:
                del out[j : j + 2]
                break
    return out


def record_xadd(ks: Keyspace, args: list, reply: object) -> list:
    if reply is None:
        return []
    t, idpos = parse_add_or_trim(ks, args, True)
    s = _lookup(ks, args[1])
    out = list(args)
    out[idpos] = reply
    if s is not None and t.strategy:
        out = _rewrite_trim(s, out, t)
    return [out]


def record_xtrim(ks: Keyspace, args: list, reply: object) -> list:
    if not reply:
        return []
    t, _ = parse_add_or_trim(ks, args, False)
    s = _lookup(ks, args[1])
    if s is None:
        return [[b"DEL", args[1]]]
    return [_rewrite_trim(s, args, t)]


# -- reading ---------------------------------------------------------------------


def xlen(ks: Keyspace, args: list[bytes]) -> object:
    """XLEN key"""
    s = _lookup(ks, args[1])
    return 0 if s is None else s.length


def _xrange(ks: Keyspace, args: list[bytes], rev: bool) -> object:
    start_arg, end_arg = (args[3], args[2]) if rev else (args[2], args[3])
    start, end = _range_bounds(start_arg, end_arg)
    count = -1
    j = 4
    n = len(args)
    while j < n:
        if args[j].lower() == b"count" and j + 1 < n:
            count = parse_int(args[j + 1])
            if count < 0:
                count = 0
            j += 2
        else:
            raise CommandError(errors.SYNTAX)
    s = _lookup(ks, args[1])
    if s is None:
        return []
    if count == 0:
        return NULL_ARRAY
    return s.range(start, end, max(count, 0), rev)


def xrange(ks: Keyspace, args: list[bytes]) -> object:
    """XRANGE key start end [COUNT count]"""
    return _xrange(ks, args, False)


def xrevrange(ks: Keyspace, args: list[bytes]) -> object:
    """XREVRANGE key end start [COUNT count]"""
    return _xrange(ks, args, True)


def xdel(ks: Keyspace, args: list[bytes]) -> object:
    """XDEL key id [id ...]"""
    s = _lookup(ks, args[1])
    if s is None:
        ks.unchanged = True  # as Redis: nothing deleted, not dirty, not logged
        return 0
    ids = [parse_strict_id(a) for a in args[2:]]
    deleted = 0
    first = False
    for id_ in ids:
        if s.delete(id_):
            if id_ == s.first_id:
                first = True
            if id_ > s.max_deleted:
                s.max_deleted = id_
            deleted += 1
    if deleted:
        if s.length == 0:
            s.first_id = 0
        elif first:
            s.first_id = s.first_valid_id()
    _deleted(ks, args[1], deleted)
    return deleted


# -- XREAD / XREADGROUP ----------------------------------------------------------


class ReadArgs:
    __slots__ = ("timeout", "count", "keys", "ids", "group", "consumer", "noack")

    def __init__(self) -> None:
        self.timeout: int | None = None
        self.count = 0
        self.keys: list[bytes] = []
        self.ids: list[bytes] = []
        self.group: bytes | None = None
        self.consumer: bytes | None = None
        self.noack = False


def _parse_block_ms(arg: bytes) -> int:
    ms = strict_int(arg)
    if ms is None:
        raise CommandError(errors.TIMEOUT_NOT_INTEGER)
    if ms < 0:
        raise CommandError(errors.TIMEOUT_NEGATIVE)
    return ms


def parse_read(args: list[bytes]) -> ReadArgs:
    group_cmd = len(args[0]) == 10
    r = ReadArgs()
    n = len(args)
    i = 1
    streams_at = 0
    while i < n:
        more = n - i - 1
        o = args[i].lower()
        if o == b"block" and more:
            i += 1
            r.timeout = _parse_block_ms(args[i])
        elif o == b"count" and more:
            i += 1
            r.count = parse_int(args[i])
            if r.count < 0:
                r.count = 0
        elif o == b"streams" and more:
            streams_at = i + 1
            rest = n - streams_at
            if rest % 2:
                raise CommandError(errors.XREAD_UNBALANCED)
            half = rest // 2
            r.keys = args[streams_at : streams_at + half]
            r.ids = args[streams_at + half :]
            break
        elif o == b"group" and more >= 2:
            if not group_cmd:
                raise CommandError(errors.XREAD_GROUP_OPTION)
            r.group = args[i + 1]
            r.consumer = args[i + 2]
            i += 2
        elif o == b"noack":
            if not group_cmd:
                raise CommandError(errors.XREAD_NOACK_OPTION)
            r.noack = True
        else:
            raise CommandError(errors.SYNTAX)
        i += 1
    if not streams_at:
        raise CommandError(errors.SYNTAX)
    if group_cmd and r.group is None:
        raise CommandError(errors.XREADGROUP_NO_GROUP)
    return r


def _read_group(
    ks: Keyspace,
    key: bytes,
    s: Stream,
    start: int,
    count: int,
    group: Group,
    consumer_name: bytes,
    noack: bool,
    end: int = MAX_ID,
) -> list:
    """Deliver entries from ``start`` on (to ``end``) to a consumer (streamReplyWithRange with a group)."""
    now = _now(ks)
    consumer = _consumer(group, key, _CURRENT_GROUP[0], consumer_name, now)
    out = []
    propagate_last = False
    for id_, node, i in s.iter(start, end):
        if id_ > group.last_id:
            s.deliver(group, id_)
            # Redis logs the new last ID only for NOACK (the XCLAIMs carry
            # it otherwise) and so loses entries_read on replay; log it always.
            propagate_last = True
        out.append([format_id(id_), node.fields(i)])
        if not noack:
            nack = group.pel.get(id_)
            if nack is None:
                nack = Nack(now, consumer)
                group.pel[id_] = nack
                consumer.pel[id_] = nack
            else:
                if nack.consumer is not None:
                    nack.consumer.pel.pop(id_, None)
                nack.consumer = consumer
                nack.time = now
                nack.count = 1
                consumer.pel[id_] = nack
            PROPAGATE.append(_xclaim_record(key, group, id_, nack))
        if len(out) == count:
            break
    if propagate_last:
        PROPAGATE.append(_setid_record(key, group))
    return out


def _read_history(
    ks: Keyspace, key: bytes, s: Stream, start: int, count: int, group: Group, consumer_name: bytes
) -> list:
    """streamReplyWithRangeFromConsumerPEL: the consumer's own pending entries."""
    now = _now(ks)
    consumer = _consumer(group, key, _CURRENT_GROUP[0], consumer_name, now)
    out: list = []
    for id_ in consumer.pel.irange(minimum=start):
        if count and len(out) >= count:
            break
        fields = s.get(id_)
        if fields is None:
            out.append([format_id(id_), NULL_ARRAY])
        else:
            nack = consumer.pel[id_]
            nack.time = now
            nack.count += 1
            PROPAGATE.append(_xclaim_record(key, group, id_, nack))
            out.append([format_id(id_), fields])
    return out


def _xclaim_record(key: bytes, group: Group, id_: int, nack: Nack) -> tuple:
    """What Redis propagates for a delivered or claimed entry (streamPropagateXCLAIM):
    ``XCLAIM key group consumer 0 id TIME t RETRYCOUNT n FORCE JUSTID LASTID last``,
    kept as a tuple and spelled out only if the AOF logs it."""
    return (key, _group_name(group), nack.consumer.name, id_, nack.time, nack.count, group.last_id)  # type: ignore[union-attr]


def _spell(record: list | tuple) -> list[bytes]:
    if type(record) is list:
        return record
    key, group, consumer, id_, time, count, last = record
    return [
        b"XCLAIM", key, group, consumer, b"0", format_id(id_), b"TIME", b"%d" % time,
        b"RETRYCOUNT", b"%d" % count, b"FORCE", b"JUSTID", b"LASTID", format_id(last),
    ]  # fmt: skip


def _setid_record(key: bytes, group: Group) -> list[bytes]:
    return [
        b"XGROUP",
        b"SETID",
        key,
        _group_name(group),
        format_id(group.last_id),
        b"ENTRIESREAD",
        b"%d" % group.entries_read,
    ]


# The name of the group being worked on, for the records above.
_CURRENT_GROUP: list[bytes] = [b""]


def _group_name(group: Group) -> bytes:
    return _CURRENT_GROUP[0]


def serves(
    s: Stream, gt: int, end: int = MAX_ID, seen: int = 0, signaled: bool = False, waiting: bool = False
) -> bool:
    """Whether a write serves a client blocked on ``s`` for the entries
    past ``gt`` (its ID, or its group's last-delivered ID), ``end`` the
    stream's last ID as that write ended (a woken try's bound): as Redis
    7.0's ``serveClientsBlockedOnStreamKey``, once the stream's last ID is
    past ``gt``, even when the entries past it are deleted (``MULTI``,
    ``XADD``, ``XDEL``, ``EXEC``: an empty array for the stream), where a
    read that does not wait needs an entry still there.  Redis serves a
    stream's blocked clients when a write signals the key ready: an XADD,
    not an XSETID that moves its last ID alone, nor an XDEL, XACK or
    XGROUP SETID: an entry added past ``gt`` (:attr:`Stream.added`) since
    the client blocked (``seen``: the stream's ``added`` then, so an entry
    added and deleted before it blocked serves it on no write but the
    next XADD), or ``signaled``: an XGROUP DESTROY, RENAME or COPY
    since (see
    :meth:`shardkv.worker.blocking.Waiters.signal`).  ``waiting``: the
    client waits (its serve, its ``__bwait``'s notification), so an entry
    there past ``gt`` alone does not serve it (an XGROUP SETID back wakes
    no XREADGROUP in Redis); a try or a ``__bwait`` as it comes reads what
    is there."""
    if min(s.last_id, end) <= gt:
        return False
    if signaled or s.added > max(gt, seen):
        return True
    return not waiting and bool(s.length) and min(s.last_valid_id(), end) > gt


def _signaled(ks: Keyspace, key: bytes) -> bool:
    """Whether a write signaled ``key`` ready since its waiters were last
    served (see :meth:`shardkv.worker.blocking.Waiters.signal`)."""
    waiters = ks.waiters
    return waiters is not None and (ks.db, key) in waiters.signaled


def _xread(ks: Keyspace, args: list[bytes], upto: tuple[bytes, int] | None = None) -> object:
    """XREAD or XREADGROUP (``args``); ``upto``: (key, last ID), a woken
    try's bound: the entries of ``key`` up to that ID alone, served as
    Redis serves a blocked client (:func:`serves`; see
    :func:`bounded_read`, :func:`xread_upto`)."""
    PROPAGATE.clear()
    r = parse_read(args)
    nkeys = len(r.keys)
    gts: list[int] = [0] * nkeys
    groups: list[Group | None] = [None] * nkeys
    for i in range(nkeys):
        key = r.keys[i]
        s = _lookup(ks, key)
        if r.group is not None:
            g = s.groups.get(r.group) if s is not None else None
            if g is None:
                raise CommandError(
                    errors.XREADGROUP_NOGROUP
                    % (key.decode("utf-8", "replace"), r.group.decode("utf-8", "replace"))
                )
            groups[i] = g
        idarg = r.ids[i]
        if idarg == b"$":
            if r.group is not None:
                raise CommandError(errors.XREADGROUP_DOLLAR)
            gts[i] = s.last_id if s is not None else 0
        elif idarg == b">":
            if r.group is None:
                raise CommandError(errors.XREAD_GREATER)
            gts[i] = MAX_ID
        else:
            gts[i] = parse_strict_id(idarg)
    out = KeyedArrays()
    changes = 0  # (XREADGROUP's, as Redis counts them: a stream served, a consumer created)
    for i in range(nkeys):
        key = r.keys[i]
        s = ks.lookup(key)  # type: ignore[assignment]
        if s is None:
            continue
        gt = gts[i]
        g = groups[i]
        end = upto[1] if upto is not None and upto[0] == key else None
        if g is not None:
            _CURRENT_GROUP[0] = r.group  # type: ignore[assignment]
            if end is None:
                new = s.length and s.last_valid_id() > g.last_id
            else:
                new = serves(s, g.last_id, end)
            if gt != MAX_ID or new:
                changes += 1 + (r.consumer not in g.consumers)
            if gt != MAX_ID:
                out.append(
                    (key, _read_history(ks, key, s, gt + 1 if gt < MAX_ID else gt, r.count, g, r.consumer))  # type: ignore[arg-type]  # a group read names its consumer
                )
                continue
            if new:
                last = MAX_ID if end is None else end
                entries = _read_group(ks, key, s, g.last_id + 1, r.count, g, r.consumer, r.noack, last)  # type: ignore[arg-type]
                out.append((key, entries))
        elif end is not None:
            if serves(s, gt, end):
                out.append((key, s.range(gt + 1, end, r.count)))
        elif s.length and s.last_valid_id() > gt:
            out.append((key, s.range(gt + 1, MAX_ID, r.count)))
    if r.group is not None and (out or r.timeout is None):
        _count(ks, changes)
    if out:
        return out
    if r.timeout is None:
        return NULL_ARRAY
    return Wait(
        list(r.keys),
        r.timeout,
        _make_serve(ks, r, gts),
        deny=NULL_ARRAY,
        expired=NULL_ARRAY,
        missing=r.group is not None,
    )


def _make_serve(ks: Keyspace, r: ReadArgs, gts: list[int]):
    by_key: dict[bytes, int] = {}
    for key, gt in zip(r.keys, gts, strict=False):
        # A stream named twice waits past its first ID, as Redis's
        # blockForKeys keeps the first and ignores the others.
        by_key.setdefault(key, gt)
    # Each stream's last entry added as the client blocks: only an XADD
    # after it serves it (see serves).
    seen = added_now(ks.peek, list(by_key))
    count = r.count or XREAD_BLOCKED_DEFAULT_COUNT

    def serve(ks: Keyspace, args: list[bytes], key: bytes) -> object:
        PROPAGATE.clear()
        s = ks.lookup(key)
        if r.group is not None:
            if type(s) is not Stream:
                return Error(errors.UNBLOCKED_STREAM_DELETED)
            g = s.groups.get(r.group)
            if g is None:
                return Error(errors.NOGROUP_BLOCKED)
            gt = g.last_id
        else:
            if type(s) is not Stream:
                return None
            gt = by_key[key]
        if not serves(s, gt, seen=seen[key], signaled=_signaled(ks, key), waiting=True):
            return None  # keep waiting
        if r.group is not None:
            _CURRENT_GROUP[0] = r.group
            # As Redis 7.0 serving a blocked XREADGROUP: a change for the
            # consumer it creates, none for what it reads (logged all the same).
            ks.changes = int(r.consumer not in g.consumers)  # type: ignore[union-attr]
            entries = _read_group(ks, key, s, gt + 1, count, g, r.consumer, r.noack)  # type: ignore[arg-type]
        else:
            entries = s.range(gt + 1, MAX_ID, count)
        return KeyedArrays([(key, entries)])

    return serve


def xread(ks: Keyspace, args: list[bytes]) -> object:
    """XREAD [COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]"""
    return _xread(ks, args)


def xreadgroup(ks: Keyspace, args: list[bytes]) -> object:
    """XREADGROUP GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key [key ...] id [id ...]"""
    return _xread(ks, args)


def xread_part(ks: Keyspace, args: list[bytes]) -> object:
    """__xread [COUNT count] [BLOCK ms] STREAMS key [key ...] id [id ...]

    This shard's part of an XREAD whose keys span shards, as plain lists
    (``[[key, entries], ...]``, nothing to read: ``[]``), never blocking;
    the acceptor merges the parts (see :mod:`shardkv.acceptor.blocking`)."""
    value = _xread(ks, [b"XREAD", *args[1:]])
    return [[key, entries] for key, entries in value] if type(value) is KeyedArrays else []


def xread_upto(ks: Keyspace, args: list[bytes]) -> object:
    """__xreadupto last-id [COUNT count] [BLOCK ms] STREAMS key id

    A woken cross-shard XREAD's try on the stream its notification named
    (``__xread``'s reply), its entries up to ``last-id`` alone: the
    stream's last ID as the write that woke it ended, which the
    notification carries.  Redis serves a blocked XREAD right after that
    write, so the entries that the writer's next commands added before
    the try came are not its (pipelined scripts through another
    acceptor: it read them all)."""
    value = _xread(ks, [b"XREAD", *args[2:]], (args[-2], parse_strict_id(args[1])))
    return [[key, entries] for key, entries in value] if type(value) is KeyedArrays else []


def bounded_read(args: list[bytes]) -> tuple[list[bytes], Callable[[Keyspace, list[bytes]], object]]:
    """__xgroupupto key last-id XREADGROUP GROUP group consumer [COUNT count] [NOACK] STREAMS key [key ...] id [id ...]

    A woken cross-shard XREADGROUP's try on the stream its notification
    named: the XREADGROUP it carries, and the handler that runs it
    delivering the new entries of ``key`` up to ``last-id`` alone, the
    stream's last ID as the write that woke it ended, which the
    notification carries.  Redis serves a blocked XREADGROUP right after
    that write, so the entries that the writer's next commands added
    before the try came are not its (pipelined scripts through another
    acceptor: it read them all, and its group delivered them to it).
    The shard runs the XREADGROUP as itself otherwise (its refusals, its
    PEL, last-delivered ID, NOACK, its XCLAIMs and XGROUP SETID in the
    AOF, its events and counts); the bound lives in the handler, for
    that one run."""
    upto = (args[1], parse_strict_id(args[2]))

    def bounded(ks: Keyspace, command: list[bytes]) -> object:
        return _xread(ks, command, upto)

    read = now_or_never(bounded)  # (as its registered handler: see wiring.handlers_of)
    read.reads = xreadgroup.reads  # type: ignore[attr-defined]  # (set at the worker's start: see wiring.build)
    read.writes = xreadgroup.writes  # type: ignore[attr-defined]
    return args[3:], read


def xlastids(ks: Keyspace, args: list[bytes]) -> object:
    """__xlastids key [key ...]: each stream's last ID (0-0 for none), what
    ``$`` stands for; the acceptor's cross-shard XREAD resolves ``$`` with it.
    Not an access (a peek): Redis resolves ``$`` in xreadCommand's own
    lookup of the key, which the read's ``__xread`` part makes here."""
    out = []
    for key in args[1:]:
        s = ks.peek(key)
        out.append(format_id(s.last_id) if type(s) is Stream else b"0-0")
    return out


def stream_ready(
    ks: Keyspace, args: list[bytes], seen: dict[bytes, int] | None = None, waiting: bool = False
) -> bool:
    """For ``__bwait``: ``args`` is ``group key id [key id ...]`` (group empty
    for XREAD); True when one key has something for the command, or when
    the command would fail now (the group or stream is gone).  ``seen``:
    each stream's :attr:`Stream.added` as the ``__bwait`` came (see
    :func:`shardkv.worker.stream.added_now`), only an XADD after which serves it (see
    :func:`serves`): without it, an entry added and deleted before its
    client's try made it ready again at once, try after try.  ``waiting``:
    the ``__bwait`` waits (a write made its key ready, see :func:`serves`),
    else it has just come."""
    group = args[0]
    seen = seen or {}
    for i in range(1, len(args) - 1, 2):
        if args[i] in args[1:i:2]:
            continue  # a stream named twice waits past its first ID (see _make_serve)
        s = ks.lookup(args[i])
        if group:
            if type(s) is not Stream or group not in s.groups:
                return True
            signaled = waiting and _signaled(ks, args[i])
            if serves(
                s, s.groups[group].last_id, seen=seen.get(args[i], 0), signaled=signaled, waiting=waiting
            ):
                return True
        elif type(s) is Stream:
            try:
                gt = parse_strict_id(args[i + 1])
            except CommandError:
                return True
            signaled = waiting and _signaled(ks, args[i])
            if serves(s, gt, seen=seen.get(args[i], 0), signaled=signaled, waiting=waiting):
                return True
    return False


def record_propagated(ks: Keyspace, args: list, reply: object) -> list:
    """XREADGROUP, XCLAIM, XAUTOCLAIM: what they left in PROPAGATE."""
    out = [_spell(r) for r in PROPAGATE]
    PROPAGATE.clear()
    return out


# -- consumer groups --------------------------------------------------------------

_XGROUP_HELP = [
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
]


def _subcommand_error(args: list[bytes]) -> CommandError:
    return CommandError(
        errors.SUBCOMMAND_SYNTAX
        % (args[1].decode("utf-8", "replace"), args[0].decode("utf-8", "replace").upper())
    )


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def xgroup(ks: Keyspace, args: list[bytes]) -> object:
    """XGROUP CREATE | CREATECONSUMER | DELCONSUMER | DESTROY | SETID | HELP ..."""
    problem = check_subcommand(args)
    if problem:
        raise CommandError(problem)
    n = len(args)
    sub = args[1].lower()
    s: Stream | None = None
    g: Group | None = None
    mkstream = False
    entries_read = INVALID_ENTRIES_READ
    if n >= 4:
        i = 5
        while i < n:
            opt = args[i].lower()
            if sub == b"create" and opt == b"mkstream":
                mkstream = True
                i += 1
            elif sub in (b"create", b"setid") and opt == b"entriesread" and i + 1 < n:
                entries_read = parse_int(args[i + 1])
                if entries_read < 0 and entries_read != INVALID_ENTRIES_READ:
                    raise CommandError(errors.ENTRIESREAD_RANGE)
                i += 2
            else:
                raise _subcommand_error(args)
        s = _lookup(ks, args[2])
        if not mkstream:
            if s is None:
                raise CommandError(errors.XGROUP_KEY_MISSING)
            g = s.groups.get(args[3])
            if g is None and sub in (b"setid", b"createconsumer", b"delconsumer"):
                raise CommandError(errors.NOGROUP_FOR_KEY % (_text(args[3]), _text(args[2])))
    if n == 2 and sub == b"help":
        return list(_XGROUP_HELP)
    key = args[2] if n > 2 else b""
    if sub == b"create" and 5 <= n <= 8:
        if args[4] == b"$":
            id_ = s.last_id if s is not None else 0
        else:
            id_ = parse_strict_id(args[4])
        if s is None:
            s = Stream()
            ks.store(key, s)
        if args[3] in s.groups:
            raise CommandError(errors.BUSYGROUP)
        s.groups[args[3]] = Group(id_, entries_read)
        return OK
    if sub == b"setid" and n in (5, 7):
        if args[4] == b"$":
            id_ = s.last_id  # type: ignore[union-attr]
        else:
            id_ = parse_id(args[4])[0]
        g.last_id = id_  # type: ignore[union-attr]
        g.entries_read = entries_read  # type: ignore[union-attr]
        return OK
    if sub == b"destroy" and n == 4:
        if g is None:
            return 0
        del s.groups[args[3]]  # type: ignore[union-attr]
        # Redis signals the key ready: its XREADGROUP of that group fails
        # -NOGROUP, and every read blocked on it whose ID its last ID is
        # past is served (an empty array after an XSETID moved it), as
        # after an XADD; a woken cross-shard try reads so (see serves).
        s.added = s.last_id  # type: ignore[union-attr]
        if ks.waiters is not None:
            ks.waiters.signal(key)
        return 1
    if sub == b"createconsumer" and n == 5:
        if args[4] in g.consumers:  # type: ignore[union-attr]
            return 0
        g.consumer(args[4], _now(ks))  # type: ignore[union-attr]
        return 1
    if sub == b"delconsumer" and n == 5:
        c = g.consumers.get(args[4])  # type: ignore[union-attr]
        if c is None:
            return 0
        return g.delete_consumer(c)  # type: ignore[union-attr]
    raise _subcommand_error(args)


def record_xgroup(ks: Keyspace, args: list, reply: object) -> list:
    """CREATE and SETID with ``$`` are logged with the ID it stood for."""
    sub = args[1].lower()
    if sub in (b"create", b"setid") and len(args) > 4 and args[4] == b"$":
        s = _lookup(ks, args[2])
        if s is not None:
            g = s.groups.get(args[3])
            if g is not None:
                out = list(args)
                out[4] = format_id(g.last_id)
                return [out]
    if sub == b"createconsumer" and reply == 0:
        return []
    return [args]


def xsetid(ks: Keyspace, args: list[bytes]) -> object:
    """XSETID key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]"""
    id_ = parse_strict_id(args[2])
    entries_added = -1
    max_deleted = 0
    n = len(args)
    i = 3
    while i < n:
        more = n - 1 - i
        opt = args[i].lower()
        if opt == b"entriesadded" and more:
            entries_added = parse_int(args[i + 1])
            if entries_added < 0:
                raise CommandError(errors.XSETID_ENTRIES_ADDED_NEGATIVE)
            i += 2
        elif opt == b"maxdeletedid" and more:
            max_deleted = parse_strict_id(args[i + 1])
            if id_ < max_deleted:
                raise CommandError(errors.XSETID_BELOW_MAX_DELETED)
            i += 2
        else:
            raise CommandError(errors.SYNTAX)
    s = ks.lookup(args[1])
    if s is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if type(s) is not Stream:
        raise CommandError(errors.WRONGTYPE)
    if s.length > 0:
        if id_ < s.last_valid_id():
            raise CommandError(errors.XSETID_BELOW_TOP)
        if entries_added != -1 and s.length > entries_added:
            raise CommandError(errors.XSETID_ENTRIES_ADDED_SMALL)
    s.last_id = id_
    if entries_added != -1:
        s.entries_added = entries_added
    if max_deleted:
        s.max_deleted = max_deleted
    return OK


def xack(ks: Keyspace, args: list[bytes]) -> object:
    """XACK key group id [id ...]"""
    s = _lookup(ks, args[1])
    g = s.groups.get(args[2]) if s is not None else None
    if g is None:
        ks.unchanged = True  # as Redis: nothing acknowledged, not dirty, not logged
        return 0
    ids = [parse_strict_id(a) for a in args[3:]]
    acknowledged = sum(1 for id_ in ids if g.ack(id_))
    if not acknowledged:
        ks.unchanged = True
    elif acknowledged > 1:
        ks.changes = acknowledged  # as Redis: a change per entry acknowledged
    return acknowledged


def xpending(ks: Keyspace, args: list[bytes]) -> object:
    """XPENDING key group [[IDLE min-idle-time] start end count [consumer]]"""
    n = len(args)
    if n != 3 and (n < 6 or n > 9):
        raise CommandError(errors.SYNTAX)
    minidle = 0
    consumer_name = None
    count = 0
    start = end = 0
    if n >= 6:
        at = 3
        if args[3].lower() == b"idle":
            minidle = parse_int(args[4])
            if n < 8:
                raise CommandError(errors.SYNTAX)
            at += 2
        count = parse_int(args[at + 2])
        if count < 0:
            count = 0
        start, end = _range_bounds(args[at], args[at + 1])
        if at + 3 < n:
            consumer_name = args[at + 3]
    s = _lookup(ks, args[1])
    g = s.groups.get(args[2]) if s is not None else None
    if g is None:
        raise CommandError(errors.NOGROUP_KEY_OR_GROUP % (_text(args[1]), _text(args[2])))
    if n == 3:
        if not g.pel:
            return [0, None, None, NULL_ARRAY]
        owners = [[name, b"%d" % len(c.pel)] for name, c in sorted(g.consumers.items()) if c.pel]
        return [len(g.pel), format_id(g.pel.keys()[0]), format_id(g.pel.keys()[-1]), owners]
    if consumer_name is not None:
        c = g.consumers.get(consumer_name)
        if c is None:
            return []
        pel = c.pel
    else:
        pel = g.pel
    now = _now(ks)
    out: list[list[object]] = []
    if not count:
        return out
    for id_ in pel.irange(start, end):
        nack = pel[id_]
        if minidle and now - nack.time < minidle:
            continue
        out.append([format_id(id_), nack.consumer.name, max(now - nack.time, 0), nack.count])
        if len(out) == count:
            break
    return out


def _parse_long(arg: bytes, message: str) -> int:
    return parse_int(arg, "ERR " + message if not message.startswith("ERR ") else message)


def _claim(id_: int, nack: Nack, consumer: Consumer, time: int, retrycount: int, justid: bool) -> None:
    """Give the pending entry ``id_`` (``nack``) to ``consumer``, as XCLAIM
    and XAUTOCLAIM do: delivered at ``time``, its delivery count set to
    ``retrycount`` when that is not negative, else one more unless JUSTID."""
    if nack.consumer is not consumer and nack.consumer is not None:
        nack.consumer.pel.pop(id_, None)
    nack.time = time
    if retrycount >= 0:
        nack.count = retrycount
    elif not justid:
        nack.count += 1
    if nack.consumer is not consumer:
        consumer.pel[id_] = nack
        nack.consumer = consumer


def xclaim(ks: Keyspace, args: list[bytes]) -> object:
    """XCLAIM key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-time-milliseconds] [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID lastid]"""
    PROPAGATE.clear()
    key = args[1]
    s = _lookup(ks, key)
    g = s.groups.get(args[2]) if s is not None else None
    if g is None:
        raise CommandError(errors.NOGROUP_KEY_OR_GROUP % (_text(key), _text(args[2])))
    minidle = parse_int(args[4], errors.XCLAIM_MIN_IDLE)
    if minidle < 0:
        minidle = 0
    n = len(args)
    ids: list[int] = []
    j = 5
    while j < n:
        try:
            ids.append(parse_strict_id(args[j]))
        except CommandError:
            break
        j += 1
    now = _now(ks)
    last_id = 0
    deliverytime = -1
    retrycount = -1
    force = justid = False
    while j < n:
        more = n - 1 - j
        opt = args[j].lower()
        if opt == b"force":
            force = True
        elif opt == b"justid":
            justid = True
        elif opt == b"idle" and more:
            j += 1
            deliverytime = now - parse_int(args[j], errors.XCLAIM_IDLE)
        elif opt == b"time" and more:
            j += 1
            deliverytime = parse_int(args[j], errors.XCLAIM_TIME)
        elif opt == b"retrycount" and more:
            j += 1
            retrycount = parse_int(args[j], errors.XCLAIM_RETRYCOUNT)
        elif opt == b"lastid" and more:
            j += 1
            last_id = parse_strict_id(args[j])
        else:
            raise CommandError(errors.XCLAIM_OPTION % _text(args[j]))
        j += 1
    _CURRENT_GROUP[0] = args[2]
    propagate_last = False
    if last_id > g.last_id:
        g.last_id = last_id
        propagate_last = True
    if deliverytime != -1:
        if deliverytime < 0 or deliverytime > now:
            deliverytime = now
    else:
        deliverytime = now
    consumer = None
    out: list = []
    for id_ in ids:
        nack = g.pel.get(id_)
        fields = s.get(id_)  # type: ignore[union-attr]
        if fields is None:
            if nack is not None:
                PROPAGATE.append(
                    _xclaim_record(key, g, id_, nack)
                    if nack.consumer
                    else [b"XACK", key, args[2], format_id(id_)]
                )
                propagate_last = False
                g.ack(id_)
            continue
        if force and nack is None:
            nack = Nack(now, None)
            g.pel[id_] = nack
        if nack is None:
            continue
        if nack.consumer is not None and minidle and now - nack.time < minidle:
            continue
        if consumer is None:
            consumer = _consumer(g, key, args[2], args[3], now)
        _claim(id_, nack, consumer, deliverytime, retrycount, justid)
        out.append(format_id(id_) if justid else [format_id(id_), fields])
        PROPAGATE.append(_xclaim_record(key, g, id_, nack))
        propagate_last = False
    if propagate_last:
        PROPAGATE.append(
            [b"XGROUP", b"SETID", key, args[2], format_id(g.last_id), b"ENTRIESREAD", b"%d" % g.entries_read]
        )
    # As Redis: a change per entry claimed or dropped from the PEL, the
    # group's new last ID, the consumer created: one record each here.
    _count(ks, len(PROPAGATE))
    return out


def _count(ks: Keyspace, changes: int) -> None:
    """A stream command made ``changes`` changes as Redis counts them (dirty)."""
    if not changes:
        ks.unchanged = True  # not dirty, not logged (nothing to log either)
    elif changes > 1:
        ks.changes = changes


def xautoclaim(ks: Keyspace, args: list[bytes]) -> object:
    """XAUTOCLAIM key group consumer min-idle-time start [COUNT count] [JUSTID]"""
    PROPAGATE.clear()
    key = args[1]
    minidle = parse_int(args[4], errors.XAUTOCLAIM_MIN_IDLE)
    if minidle < 0:
        minidle = 0
    start, ex = _interval(args[5], 0)
    if ex:
        if start == MAX_ID:
            raise CommandError(errors.INVALID_START_ID)
        start += 1
    count = 100
    justid = False
    n = len(args)
    j = 6
    max_count = LLONG_MAX // 16
    while j < n:
        more = n - 1 - j
        opt = args[j].lower()
        if opt == b"count" and more:
            count = parse_int(args[j + 1], errors.XAUTOCLAIM_COUNT)
            if count < 1 or count > max_count:
                raise CommandError(errors.XAUTOCLAIM_COUNT)
            j += 1
        elif opt == b"justid":
            justid = True
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    s = _lookup(ks, key)
    g = s.groups.get(args[2]) if s is not None else None
    if g is None:
        raise CommandError(errors.NOGROUP_KEY_OR_GROUP % (_text(key), _text(args[2])))
    _CURRENT_GROUP[0] = args[2]
    now = _now(ks)
    attempts = count * 10
    consumer = None
    new_consumer = args[3] not in g.consumers
    claimed: list = []
    deleted: list[bytes] = []
    pel = g.pel
    it = iter(list(pel.irange(minimum=start)))
    next_id = 0
    for id_ in it:
        if not (attempts and count):
            next_id = id_
            break
        attempts -= 1
        nack = pel[id_]
        fields = s.get(id_)  # type: ignore[union-attr]
        if fields is None:
            if nack.consumer is not None:
                PROPAGATE.append(_xclaim_record(key, g, id_, nack))
            g.ack(id_)
            deleted.append(format_id(id_))
            count -= 1
            continue
        if minidle and now - nack.time < minidle:
            continue
        if consumer is None:
            consumer = _consumer(g, key, args[2], args[3], now)
        _claim(id_, nack, consumer, now, -1, justid)
        claimed.append(format_id(id_) if justid else [format_id(id_), fields])
        count -= 1
        PROPAGATE.append(_xclaim_record(key, g, id_, nack))
    else:
        next_id = 0
    # As Redis: a change per entry claimed or deleted, and the consumer created.
    _count(ks, len(claimed) + len(deleted) + (new_consumer and consumer is not None))
    return [format_id(next_id), claimed, deleted]


# -- XINFO -------------------------------------------------------------------------

_XINFO_HELP = [
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
]


def _edge_entry(s: Stream, rev: bool) -> object:
    entries = s.range(0, MAX_ID, 1, rev)
    return entries[0] if entries else None


def xinfo(ks: Keyspace, args: list[bytes]) -> object:
    """XINFO CONSUMERS key group | GROUPS key | STREAM key [FULL [COUNT count]] | HELP"""
    problem = check_subcommand(args)
    if problem:
        raise CommandError(problem)
    sub = args[1].lower()
    n = len(args)
    if sub == b"help":
        if n != 2:
            raise _subcommand_error(args)
        return list(_XINFO_HELP)
    if n < 3:
        raise _subcommand_error(args)
    key = args[2]
    s = ks.lookup(key)
    if s is None:
        raise CommandError(errors.NO_SUCH_KEY)
    if type(s) is not Stream:
        raise CommandError(errors.WRONGTYPE)
    if sub == b"consumers" and n == 4:
        g = s.groups.get(args[3])
        if g is None:
            raise CommandError(errors.NOGROUP_FOR_KEY % (_text(args[3]), _text(key)))
        now = _now(ks)
        return [
            {b"name": name, b"pending": len(c.pel), b"idle": max(now - c.seen, 0)}
            for name, c in sorted(g.consumers.items())
        ]
    if sub == b"groups" and n == 3:
        return [
            {
                b"name": name,
                b"consumers": len(g.consumers),
                b"pending": len(g.pel),
                b"last-delivered-id": format_id(g.last_id),
                b"entries-read": g.entries_read if g.entries_read != INVALID_ENTRIES_READ else None,
                b"lag": s.lag(g),
            }
            for name, g in sorted(s.groups.items())
        ]
    if sub == b"stream":
        return _xinfo_stream(s, args)
    raise _subcommand_error(args)


def _xinfo_stream(s: Stream, args: list[bytes]) -> object:
    opts = args[3:]
    full = bool(opts)
    count = 10
    if opts:
        if len(opts) not in (1, 3) or opts[0].lower() != b"full":
            raise _subcommand_error(args)
        if len(opts) == 3:
            if opts[1].lower() != b"count":
                raise _subcommand_error(args)
            count = parse_int(opts[2])
            if count < 0:
                count = 10
    nodes = s.node_count()
    info: dict = {
        b"length": s.length,
        b"radix-tree-keys": nodes,
        b"radix-tree-nodes": _rax_nodes(s),
        b"last-generated-id": format_id(s.last_id),
        b"max-deleted-entry-id": format_id(s.max_deleted),
        b"entries-added": s.entries_added,
        b"recorded-first-entry-id": format_id(s.first_id),
    }
    if not full:
        info[b"groups"] = len(s.groups)
        info[b"first-entry"] = _edge_entry(s, False)
        info[b"last-entry"] = _edge_entry(s, True)
        return info
    info[b"entries"] = s.range(0, MAX_ID, count)
    groups = []
    for name, g in sorted(s.groups.items()):
        pending: list[list[object]] = []
        for id_, nack in g.pel.items():
            if count and len(pending) >= count:
                break
            pending.append(
                [format_id(id_), nack.consumer.name if nack.consumer else b"", nack.time, nack.count]
            )
        consumers = []
        for cname, c in sorted(g.consumers.items()):
            cp: list[list[object]] = []
            for id_, nack in c.pel.items():
                if count and len(cp) >= count:
                    break
                cp.append([format_id(id_), nack.time, nack.count])
            consumers.append({b"name": cname, b"seen-time": c.seen, b"pel-count": len(c.pel), b"pending": cp})
        groups.append(
            {
                b"name": name,
                b"last-delivered-id": format_id(g.last_id),
                b"entries-read": g.entries_read if g.entries_read != INVALID_ENTRIES_READ else None,
                b"lag": s.lag(g),
                b"pel-count": len(g.pel),
                b"pending": pending,
                b"consumers": consumers,
            }
        )
    info[b"groups"] = groups
    return info


def _rax_nodes(s: Stream) -> int:
    """How many nodes Redis's radix tree of 16-byte big-endian node keys has."""
    keys = [k.to_bytes(16, "big") for k in s.keys]
    return _rax_count(keys, 0) if keys else 1


def _rax_count(keys: list[bytes], depth: int) -> int:
    """Nodes of a compressed radix tree holding ``keys`` (equal length, sorted,
    sharing their first ``depth`` bytes), below and including this node."""
    if depth == len(keys[0]):
        return 1
    first, last = keys[0], keys[-1]
    if first[depth] == last[depth]:  # one child: a compressed node
        end = depth
        while end < len(first) and first[end] == last[end]:
            end += 1
        return 1 + _rax_count(keys, end)
    total = 1
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i][depth] != keys[start][depth]:
            total += _rax_count(keys[start:i], depth + 1)
            start = i
    return total


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "xadd": xadd,
    "xtrim": xtrim,
    "xlen": xlen,
    "xrange": xrange,
    "xrevrange": xrevrange,
    "xdel": xdel,
    Verb.XREAD: xread_part,
    Verb.XREAD_UPTO: xread_upto,
    Verb.XLASTIDS: xlastids,
    "xgroup": xgroup,
    "xsetid": xsetid,
    "xack": xack,
    "xpending": xpending,
    "xclaim": xclaim,
    "xautoclaim": xautoclaim,
    "xinfo": xinfo,
}

# The blocking commands, by name: the form that may wait, and the type it pops.
BLOCKING: BlockingForms = {
    "xread": Blocking(xread, None, stream_ready),
    "xreadgroup": Blocking(xreadgroup, None, stream_ready),
}

# How the AOF logs the commands whose effect it cannot log as sent (see
# shardkv.worker.persistence.aof).
RECORDERS = {
    "xadd": record_xadd,
    "xtrim": record_xtrim,
    "xreadgroup": record_propagated,
    "xclaim": record_propagated,
    "xautoclaim": record_propagated,
    "xgroup": record_xgroup,
}
