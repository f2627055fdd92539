"""String commands."""

from __future__ import annotations

from binascii import crc_hqx

from shardkv.protocol import errors
from shardkv.protocol.args import LLONG_MAX, LLONG_MIN, incr_by_float, parse_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK
from shardkv.protocol.router import LBRACE, key_slot
from shardkv.runtime import replyroom
from shardkv.runtime.replyroom import REPEATS_FREE
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.values import get_string, mutable_string, read_string


def check_length(ks: Keyspace, size: int) -> None:
    """APPEND and SETRANGE may not make a string past proto-max-bulk-len."""
    if size > ks.runtime.proto_max_bulk_len:
        raise CommandError(errors.STRING_TOO_LONG)


def expire_deadline(ks: Keyspace, arg: bytes, unit_ms: int, absolute: bool, name: str) -> int:
    """Turn an EX/PX/EXAT/PXAT argument into a deadline in ms, as Redis does."""
    when = parse_int(arg)
    if when <= 0 or (unit_ms == 1000 and when > LLONG_MAX // 1000):
        raise CommandError(errors.INVALID_EXPIRE % name)
    when *= unit_ms
    if not absolute:
        when += ks.now
        if when > LLONG_MAX:
            raise CommandError(errors.INVALID_EXPIRE % name)
    return when


_EXPIRE_UNITS = {b"EX": (1000, False), b"PX": (1, False), b"EXAT": (1000, True), b"PXAT": (1, True)}


def parse_set_options(args: list[bytes], start: int, for_getex: bool):
    """SET/GETEX options -> (nx, xx, get, keepttl, persist, expire_opt, expire_arg).

    Follows ``parseExtendedStringArgumentsOrReply``: an option that clashes
    with one already given is a syntax error.
    """
    nx = xx = get = keepttl = persist = False
    exp_opt = exp_arg = None
    j = start
    n = len(args)
    while j < n:
        opt = args[j].upper()
        has_next = j + 1 < n
        if opt == b"NX" and not xx and not for_getex:
            nx = True
        elif opt == b"XX" and not nx and not for_getex:
            xx = True
        elif opt == b"GET" and not for_getex:
            get = True
        elif opt == b"KEEPTTL" and not persist and exp_opt is None and not for_getex:
            keepttl = True
        elif opt == b"PERSIST" and for_getex and exp_opt is None and not keepttl:
            persist = True
        elif (
            opt in _EXPIRE_UNITS
            and not keepttl
            and not persist
            and has_next
            and (exp_opt is None or exp_opt == opt)
        ):
            exp_opt, exp_arg = opt, args[j + 1]
            j += 1
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    return nx, xx, get, keepttl, persist, exp_opt, exp_arg


def get(ks: Keyspace, args: list[bytes]) -> object:
    """GET key"""
    value = ks.lookup(args[1])  # get_string, inline: the hottest read
    if value is not None and type(value) is not bytes:
        raise CommandError(errors.WRONGTYPE)
    return value


def set_(ks: Keyspace, args: list[bytes]) -> object:
    """SET key value [NX | XX] [GET] [EX seconds | PX milliseconds |
    EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]"""
    key = args[1]
    if len(args) == 3:
        ks.store(key, args[2])
        return OK
    nx, xx, get, keepttl, _, exp_opt, exp_arg = parse_set_options(args, 3, False)
    when = None
    if exp_opt is not None:
        unit, absolute = _EXPIRE_UNITS[exp_opt]
        when = expire_deadline(ks, exp_arg, unit, absolute, "set")
    old: object
    if get:
        with ks.reading():  # SET ... GET reads the old value (a keyspace hit or miss)
            old = get_string(ks, key)
    else:
        old = ks.lookup(key)
    if (nx and old is not None) or (xx and old is None):
        ks.unchanged = True  # as Redis: the condition not met, not dirty
        return old if get else None
    # (with GET, Redis looks the key up twice: to read it, and to write it)
    ks.store(key, args[2], keepttl=keepttl, counted=not get)
    if when is not None:
        ks.set_expire(key, when)
    return old if get else OK


def setnx(ks: Keyspace, args: list[bytes]) -> object:
    """SETNX key value"""
    if ks.lookup(args[1]) is not None:
        ks.unchanged = True  # as Redis: the key is kept, not dirty, not logged
        return 0
    ks.store(args[1], args[2], counted=True)
    return 1


def _setex(ks: Keyspace, args: list[bytes], unit: int, name: str) -> object:
    when = expire_deadline(ks, args[2], unit, False, name)
    ks.store(args[1], args[3])
    ks.set_expire(args[1], when)
    return OK


def setex(ks: Keyspace, args: list[bytes]) -> object:
    """SETEX key seconds value"""
    return _setex(ks, args, 1000, "setex")


def psetex(ks: Keyspace, args: list[bytes]) -> object:
    """PSETEX key milliseconds value"""
    return _setex(ks, args, 1, "psetex")


def getset(ks: Keyspace, args: list[bytes]) -> object:
    """GETSET key value"""
    with ks.reading():
        old = get_string(ks, args[1])
    ks.store(args[1], args[2])
    return old


def getdel(ks: Keyspace, args: list[bytes]) -> object:
    """GETDEL key"""
    with ks.reading():
        old = get_string(ks, args[1])
    if old is not None:
        ks.delete(args[1])
    else:
        ks.unchanged = True  # as Redis: nothing deleted, not dirty, not logged
    return old


def getex(ks: Keyspace, args: list[bytes]) -> object:
    """GETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds |
    PXAT unix-time-milliseconds | PERSIST]"""
    key = args[1]
    _, _, _, _, persist, exp_opt, exp_arg = parse_set_options(args, 2, True)
    # As Redis: the key first (a missing key is nil whatever the time says),
    # then its type, then the time.
    with ks.reading():
        value = get_string(ks, key)
    if value is None:
        ks.unchanged = True  # as Redis: nothing changed, not dirty, not logged
        return None
    when = None
    if exp_opt is not None:
        unit, absolute = _EXPIRE_UNITS[exp_opt]
        when = expire_deadline(ks, exp_arg, unit, absolute, "getex")
    if when is not None:
        if when <= ks.now:
            ks.delete(key)
        else:
            ks.set_expire(key, when)
    elif not persist or not ks.persist(key):
        ks.unchanged = True  # no option, or no TTL to drop: nothing changed
    return value


def append(ks: Keyspace, args: list[bytes]) -> object:
    """APPEND key value"""
    key = args[1]
    buf = mutable_string(ks, key)
    if buf is None:
        ks.store(key, args[2])
        return len(args[2])
    check_length(ks, len(buf) + len(args[2]))
    buf += args[2]
    ks.store(key, buf, keepttl=True, counted=True)
    return len(buf)


def strlen(ks: Keyspace, args: list[bytes]) -> object:
    """STRLEN key"""
    value = read_string(ks, args[1])
    return 0 if value is None else len(value)


def _incr(ks: Keyspace, key: bytes, by: int) -> int:
    old = ks.lookup(key)  # get_string, inline
    if old is None:
        current = 0
    elif type(old) is not bytes:
        raise CommandError(errors.WRONGTYPE)
    else:
        # parse_int, inline: Redis's string2ll takes a 64-bit integer
        # spelled as b"%d" spells it, and no other (int() would take
        # spaces, "+", "_" and leading zeros too).
        if len(old) > 20:
            raise CommandError(errors.NOT_INTEGER)
        try:
            current = int(old)
        except ValueError:
            raise CommandError(errors.NOT_INTEGER) from None
        if b"%d" % current != old or not LLONG_MIN <= current <= LLONG_MAX:
            raise CommandError(errors.NOT_INTEGER)
    new = current + by
    if new > LLONG_MAX or new < LLONG_MIN:
        raise CommandError(errors.OVERFLOW)
    ks.store(key, b"%d" % new, keepttl=True, counted=True)
    return new


def incr(ks: Keyspace, args: list[bytes]) -> object:
    """INCR key"""
    return _incr(ks, args[1], 1)


def decr(ks: Keyspace, args: list[bytes]) -> object:
    """DECR key"""
    return _incr(ks, args[1], -1)


def incrby(ks: Keyspace, args: list[bytes]) -> object:
    """INCRBY key increment"""
    return _incr(ks, args[1], parse_int(args[2]))


def decrby(ks: Keyspace, args: list[bytes]) -> object:
    """DECRBY key decrement"""
    by = parse_int(args[2])
    if by == LLONG_MIN:
        raise CommandError(errors.DECREMENT_OVERFLOW)
    return _incr(ks, args[1], -by)


def incrbyfloat(ks: Keyspace, args: list[bytes]) -> object:
    """INCRBYFLOAT key increment"""
    key = args[1]
    text = incr_by_float(get_string(ks, key), args[2])
    ks.store(key, text, keepttl=True, counted=True)
    return text


def clamp_range(start: int, end: int, length: int) -> tuple[int, int] | None:
    """Redis's GETRANGE index rules; None for an empty range."""
    if start < 0 and end < 0 and start > end:
        return None
    if start < 0:
        start = max(start + length, 0)
    if end < 0:
        end = max(end + length, 0)
    if end >= length:
        end = length - 1
    if start > end or length == 0:
        return None
    return start, end


def getrange(ks: Keyspace, args: list[bytes]) -> object:
    """GETRANGE key start end"""
    start, end = parse_int(args[2]), parse_int(args[3])
    value = read_string(ks, args[1])
    if value is None:
        return b""
    bounds = clamp_range(start, end, len(value))
    return b"" if bounds is None else bytes(value[bounds[0] : bounds[1] + 1])


def setrange(ks: Keyspace, args: list[bytes]) -> object:
    """SETRANGE key offset value"""
    key, piece = args[1], args[3]
    offset = parse_int(args[2])
    if offset < 0:
        raise CommandError(errors.OFFSET_OUT_OF_RANGE)
    if not piece:
        old = read_string(ks, key)  # (its WRONGTYPE first)
        ks.unchanged = True  # as Redis: nothing written, not dirty, not logged
        return 0 if old is None else len(old)
    buf = mutable_string(ks, key)
    check_length(ks, offset + len(piece))
    if buf is None:
        buf = bytearray()
    end = offset + len(piece)
    if len(buf) < end:
        buf.extend(bytes(end - len(buf)))
    buf[offset:end] = piece
    ks.store(key, buf, keepttl=True, counted=True)
    return len(buf)


def mget(ks: Keyspace, args: list[bytes]) -> object:
    """MGET key [key ...]"""
    out: list[bytes | None] = []
    keys = args[1:]
    if ks.lfu or ks.no_touch:  # (LFU: lookup counts each access; NO-TOUCH: none does)
        for key in keys:
            value = ks.lookup(key)
            out.append(value if type(value) is bytes else None)
    else:
        # Keyspace.lookup, inline for a string held and not expired (its
        # clock stamped, a hit counted); any other key takes lookup itself.
        data, expires, clocks, now, expiry_now = ks.data, ks.expires, ks.clocks, ks.now, ks.expiry_now
        hits = 0
        for key in keys:
            slot = key_slot(key) if LBRACE in key else crc_hqx(key, 0) & 16383
            exp = expires[slot]
            if not exp or key not in exp or exp[key] > expiry_now:
                value = data[slot].get(key)
                if type(value) is bytes:
                    clocks[key] = now
                    hits += 1
                    out.append(value)
                    continue
            value = ks.lookup(key)  # missing, expired, changed in place, or not a string
            out.append(value if type(value) is bytes else None)
        if ks.counting:
            ks.hits += hits
    # A key named twice or more multiplies its value (see replyroom);
    # distinct ones answer at most what the data holds, as LRANGE does.
    # (Repeats among the keys alone, as the acceptor's merge counts them
    # for an MGET across shards: a key named as the command is none.)
    if len(keys) > REPEATS_FREE and len(set(keys)) < len(keys):
        replyroom.check(sum(map(len, filter(None, out))))
    return out


def mset(ks: Keyspace, args: list[bytes]) -> object:
    """MSET key value [key value ...]"""
    if len(args) % 2 == 0:
        raise CommandError(errors.WRONG_ARITY % "mset")
    store = ks.store
    for i in range(1, len(args), 2):
        store(args[i], args[i + 1])
    if len(args) > 3:
        ks.changes = len(args) // 2  # as Redis: a change per pair, one held or named twice too
    return OK


def msetnx(ks: Keyspace, args: list[bytes]) -> object:
    """MSETNX key value [key value ...]"""
    if len(args) % 2 == 0:
        raise CommandError(errors.WRONG_ARITY % "msetnx")
    if any(ks.lookup(args[i]) is not None for i in range(1, len(args), 2)):
        ks.unchanged = True  # as Redis: nothing set, not dirty, not logged
        return 0
    mset(ks, args)
    return 1


def lcs(ks: Keyspace, args: list[bytes]) -> object:
    """LCS key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]"""
    a, b = ks.lookup(args[1]), ks.lookup(args[2])
    if (a is not None and type(a) is not bytes) or (b is not None and type(b) is not bytes):
        raise CommandError(errors.LCS_NOT_STRINGS)
    a = a or b""
    b = b or b""
    want_len = want_idx = with_len = False
    min_len = 0
    j, n = 3, len(args)
    while j < n:
        opt = args[j].upper()
        if opt == b"IDX":
            want_idx = True
        elif opt == b"LEN":
            want_len = True
        elif opt == b"WITHMATCHLEN":
            with_len = True
        elif opt == b"MINMATCHLEN" and j + 1 < n:
            min_len = max(parse_int(args[j + 1]), 0)
            j += 1
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    if want_idx and want_len:
        raise CommandError(errors.LCS_LEN_AND_IDX)
    if (len(a) + 1) * (len(b) + 1) * 4 > ks.runtime.proto_max_bulk_len:  # Redis's uint32 table
        raise CommandError(errors.LCS_TOO_BIG)
    # The rows run over the shorter string's bytes (one Python step each),
    # every row a bit vector over the longer one: a 60 MB key against a
    # 1-byte key is one row, not 60 million Python steps.  The table is
    # the same under transposition, LCS(a[:i], b[:j]) = LCS(b[:j], a[:i]).
    flip = len(b) < len(a)
    s, t = (b, a) if flip else (a, b)
    where = _lcs_masks(s, t)
    rows = _lcs_rows(s, t, where, keep=not want_len)
    total = rows[-1].bit_count()
    if want_len:
        return total
    # Walk back from the end, as Redis does, collecting the string and the
    # ranges of contiguous matches (last match first), at cell (p, q) of
    # the table of s (rows) against t (bits).  Where a[i-1] and b[j-1]
    # differ, Redis steps up (i - 1) only if LCS(i-1, j) is larger than
    # LCS(i, j-1), else left (j - 1).  Here p is i and q is j, or, flipped,
    # p is j and q is i: then the step is to p - 1 where LCS(p-1, q) is
    # at least LCS(p, q-1), else to q - 1.  ``d`` is LCS(p, q); LCS(p, q-1)
    # is d less bit q-1 of row p, and LCS(p-1, q), ``up``, is d or d - 1.
    # Where the bit is 0 and the step is to q - 1, it stays so while the
    # bytes differ and the bit is 0, and the walk jumps over that run.
    out = bytearray()
    matches = []
    p, q = len(s), len(t)
    d = total
    start = end = bstart = bend = -1
    while p > 0 and q > 0:
        emit = False
        c = s[p - 1]
        if c == t[q - 1]:
            out.append(c)
            ia, ib = (q - 1, p - 1) if flip else (p - 1, q - 1)
            if start < 0:
                start = end = ia
                bstart = bend = ib
            else:
                start, bstart = start - 1, bstart - 1
            if start == 0 or bstart == 0:
                emit = True
            p, q, d = p - 1, q - 1, d - 1
        else:
            row = rows[p]
            bit = row >> (q - 1) & 1
            up = -1
            if bit or flip:
                up = (rows[p - 1] & ((1 << q) - 1)).bit_count()
            if bit:
                if flip or up == d:
                    p, d = p - 1, up
                else:
                    q, d = q - 1, d - 1
            elif up == d:  # flipped only
                p -= 1
            else:
                # To q - 1 while the bytes differ and the bit is 0: to the
                # highest column below where either changes (0 if none).
                q = ((row | where.get(c, 0)) & ((1 << (q - 1)) - 1)).bit_length()
            emit = start >= 0
        if emit:
            size = end - start + 1
            if size >= min_len:
                match: list[object] = [[start, end], [bstart, bend]]
                if with_len:
                    match.append(size)
                matches.append(match)
            start = -1
    if want_idx:
        return {b"matches": matches, b"len": total}
    out.reverse()
    return bytes(out)


_ZEROS = b"0" * 256


def _lcs_masks(s: bytes, t: bytes) -> dict[int, int]:
    """For each byte c of ``s``, the bits k where t[k] == c, built in C
    (a translated, reversed copy of ``t`` read as a binary number), not
    one Python step per byte of ``t``."""
    if not t:
        return {}
    rev = t[::-1]
    return {c: int(rev.translate(_ZEROS[:c] + b"1" + _ZEROS[c + 1 :]), 2) for c in set(s)}


def _lcs_rows(s: bytes, t: bytes, where: dict[int, int], keep: bool = True) -> list[int]:
    """The rows of LCS's table of ``s`` against ``t``, bit-parallel (Hyyro's
    LCS-length recurrence, ``len(t)`` bits at a time in a Python int): bit
    k of ``rows[i]`` is set where LCS(s[:i], t[:k+1]) = LCS(s[:i], t[:k]) + 1,
    so LCS(s[:i], t[:j]) is the count of its bits below j.  ``where``: see
    _lcs_masks.  ``keep=False``: the last row only (LCS ... LEN).  Redis
    fills the whole table, cell by cell."""
    full = (1 << len(t)) - 1
    v = full  # the complement of the current row
    rows = [0]
    append = rows.append
    for c in s:
        u = v & where.get(c, 0)
        v = ((v + u) | (v - u)) & full
        if keep:
            append(v ^ full)
    if not keep:
        rows.append(v ^ full)
    return rows


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "get": get,
    "set": set_,
    "setnx": setnx,
    "setex": setex,
    "psetex": psetex,
    "getset": getset,
    "getdel": getdel,
    "getex": getex,
    "append": append,
    "strlen": strlen,
    "incr": incr,
    "decr": decr,
    "incrby": incrby,
    "decrby": decrby,
    "incrbyfloat": incrbyfloat,
    "getrange": getrange,
    "substr": getrange,
    "setrange": setrange,
    "mget": mget,
    "mset": mset,
    "msetnx": msetnx,
    "lcs": lcs,
}
