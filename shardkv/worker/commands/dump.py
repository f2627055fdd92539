"""DUMP and RESTORE: one key's value in Redis's own serialization format.

A payload is what Redis 7.0's DUMP writes, so that keys move between
redis-server and shardkv in both directions::

    type        1 byte     an RDB object type
    value                  the object, RDB-encoded
    version     u16 LE     the RDB version, 10 for Redis 7.0
    crc64       u64 LE     Redis's CRC-64 (Jones) of everything before it

DUMP writes the plain RDB encodings that every Redis since 2.x loads:
strings (type 0), lists (1), sets (2), hashes (4) and sorted sets with
binary scores (5).  RESTORE also reads what Redis itself writes: integer
and LZF-compressed strings, intsets, ziplists, listpacks and quicklists
(types 10 to 18).  Streams are written as Redis 7.0's
``RDB_TYPE_STREAM_LISTPACKS_2`` (19) and read in that form and Redis 6.2's
(15): see :mod:`shardkv.worker.streamdump`.  Module types have no shardkv
equivalent; they, and anything malformed, are "Bad data format".  Nothing here trusts
a length it has not checked against the bytes that are left.
"""

from __future__ import annotations

import functools
import math
import struct

from shardkv.protocol import errors
from shardkv.protocol.args import parse_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK
from shardkv.protocol.wire import Verb
from shardkv.worker import access, events
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.lazynumpy import np
from shardkv.worker.stream import Stream
from shardkv.worker.streamdump import (
    STREAM_LISTPACKS,
    STREAM_LISTPACKS_2,
    StreamBadData,
    dump_stream,
    load_stream,
)
from shardkv.worker.transfer import FROM_PLAIN, TO_PLAIN

RDB_VERSION = 10  # Redis 7.0; RESTORE refuses payloads from newer versions

# RDB object types (rdb.h)
STRING, LIST, SET, ZSET, HASH, ZSET_2 = 0, 1, 2, 3, 4, 5
LIST_ZIPLIST, SET_INTSET, ZSET_ZIPLIST, HASH_ZIPLIST, LIST_QUICKLIST = 10, 11, 12, 13, 14
HASH_LISTPACK, ZSET_LISTPACK, LIST_QUICKLIST_2 = 16, 17, 18

# The same tags as shardkv.worker.transfer's key states.
_TAG_TYPE = {
    "string": STRING,
    "list": LIST,
    "set": SET,
    "hash": HASH,
    "zset": ZSET_2,
    "stream": STREAM_LISTPACKS_2,
}


class BadData(Exception):
    """The payload's object cannot be read."""


# -- CRC-64 (Jones polynomial, reflected), as Redis's crc64.c -----------------
#
# A byte at a time in Python this runs at about 3 MB/s, and RESTORE checks
# the CRC before it reads anything else (as Redis does), so a large junk
# payload would hold the shard for many seconds.  Large inputs go through
# numpy instead: each chunk of 1 MB is cut into lanes of 256 bytes whose
# CRCs are computed side by side, one byte of every lane per step, and then
# joined.  The CRC starts at 0 and has no final XOR, so it is linear:
# crc(A + B) = shift(crc(A), len(B)) ^ crc(B), where shift(c, n) is c run
# through n zero bytes; that joins the lanes and the chunks, and leading
# zero bytes leave it unchanged, which pads the first chunk.

_POLY = 0x95AC9329AC4BC9B5  # 0xad93d23594c935a9, bit-reversed


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()
_CHUNK_LOG = 20  # 1 MB chunks
_SMALL = 1024  # below this the plain loop is quicker than numpy's calls


class _NumpyTables:
    """The numpy path's tables, made by the first CRC that takes it (most
    workers never do: see :mod:`shardkv.worker.lazynumpy`)."""

    def __init__(self) -> None:
        self.table = np.array(_TABLE, dtype=np.uint64)
        self.byte_offsets = np.arange(8, dtype=np.intp) * 256
        self.shift_ops = _shift_ops(self)


@functools.cache
def _tables() -> _NumpyTables:
    return _NumpyTables()


def _apply_shift(tables: _NumpyTables, op: np.ndarray, crcs: np.ndarray) -> np.ndarray:
    """Each CRC run through the zero bytes of ``op``: a linear map given
    as 8 tables of 256 (one per byte of the CRC), flattened."""
    index = crcs.astype("<u8").view(np.uint8).reshape(-1, 8) + tables.byte_offsets
    return np.bitwise_xor.reduce(op[index], axis=1)


def _shift_ops(tables: _NumpyTables) -> list[np.ndarray]:
    """``ops[k]`` runs a CRC through 2**k zero bytes."""
    basis = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    columns = tables.table[(basis & np.uint64(0xFF)).astype(np.intp)] ^ (basis >> np.uint64(8))  # one byte
    bits = (np.arange(256)[:, None] >> np.arange(8)) & 1 == 1  # bits[b, i]: bit i of b is set
    ops = []
    for _ in range(_CHUNK_LOG + 1):
        op = np.stack(
            [
                np.bitwise_xor.reduce(np.where(bits, columns[8 * j : 8 * j + 8], np.uint64(0)), axis=1)
                for j in range(8)
            ]
        ).reshape(-1)
        ops.append(op)
        columns = _apply_shift(tables, op, columns)  # twice as many zero bytes
    return ops


def _crc64_chunk(tables: _NumpyTables, chunk: np.ndarray) -> np.ndarray:
    """The CRC of a chunk whose length is a power of two, at least _SMALL."""
    size_log = len(chunk).bit_length() - 1
    steps_log = min(8, max(3, size_log - 10))  # few steps where the per-call cost would rule
    lanes = len(chunk) >> steps_log
    columns = np.ascontiguousarray(chunk.reshape(lanes, 1 << steps_log).T)  # columns[t]: byte t of every lane
    crcs = np.zeros(lanes, dtype=np.uint64)
    index = np.empty(lanes, dtype=np.uint8)
    looked_up = np.empty(lanes, dtype=np.uint64)
    eight = np.uint64(8)
    for column in columns:
        np.bitwise_xor(crcs.astype(np.uint8), column, out=index)
        np.take(tables.table, index, out=looked_up)
        crcs >>= eight
        crcs ^= looked_up
    for k in range(steps_log, size_log):  # join neighbouring lanes, 2**k bytes each
        crcs = _apply_shift(tables, tables.shift_ops[k], crcs[0::2]) ^ crcs[1::2]
    return crcs


def _crc64_bytewise(data: bytes) -> int:
    crc = 0
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def crc64(data: bytes) -> int:
    """Redis's CRC-64 of ``data`` (crc64(0, data, len) in crc64.c)."""
    n = len(data)
    if n < _SMALL:
        return _crc64_bytewise(data)
    tables = _tables()
    size = min(1 << _CHUNK_LOG, 1 << (n - 1).bit_length())
    array = np.frombuffer(data, dtype=np.uint8)
    head = n % size
    crc = np.zeros(1, dtype=np.uint64)
    if head:
        crc = _crc64_chunk(tables, np.concatenate((np.zeros(size - head, dtype=np.uint8), array[:head])))
    shift = tables.shift_ops[size.bit_length() - 1]
    for start in range(head, n, size):
        crc = _apply_shift(tables, shift, crc) ^ _crc64_chunk(tables, array[start : start + size])
    return int(crc[0])


# -- DUMP ----------------------------------------------------------------------------


def _len(n: int) -> bytes:
    if n < 1 << 6:
        return bytes((n,))
    if n < 1 << 14:
        return bytes((0x40 | n >> 8, n & 0xFF))
    if n <= 0xFFFFFFFF:
        return b"\x80" + n.to_bytes(4, "big")
    return b"\x81" + n.to_bytes(8, "big")


def _str(s: bytes) -> bytes:
    return _len(len(s)) + s


def dump(tag: str, plain: object) -> bytes:
    """The payload of a value given as a key state's ``(tag, plain)``."""
    kind = _TAG_TYPE[tag]
    out = [bytes((kind,))]
    if kind == STREAM_LISTPACKS_2:
        out.append(dump_stream(Stream.from_plain(plain), _len, _str))  # type: ignore[arg-type]
    elif kind == STRING:
        out.append(_str(plain))  # type: ignore[arg-type]
    elif kind == HASH:
        out.append(_len(len(plain)))  # type: ignore[arg-type]
        for field, value in plain.items():  # type: ignore[attr-defined]
            out += (_str(field), _str(value))
    elif kind == ZSET_2:
        out.append(_len(len(plain)))  # type: ignore[arg-type]
        for member, score in plain.items():  # type: ignore[attr-defined]
            out += (_str(member), struct.pack("<d", score))
    else:  # LIST, SET
        out.append(_len(len(plain)))  # type: ignore[arg-type]
        out += (_str(item) for item in plain)  # type: ignore[attr-defined]
    body = b"".join(out) + RDB_VERSION.to_bytes(2, "little")
    return body + crc64(body).to_bytes(8, "little")


# -- RESTORE --------------------------------------------------------------------------


def load(payload: bytes) -> tuple[str, object]:
    """``(tag, plain)`` from a payload; CommandError with Redis's words if
    the footer is wrong or the object cannot be read."""
    if len(payload) < 10:
        raise CommandError(errors.DUMP_PAYLOAD)
    version = int.from_bytes(payload[-10:-8], "little")
    if version > RDB_VERSION or crc64(payload[:-8]) != int.from_bytes(payload[-8:], "little"):
        raise CommandError(errors.DUMP_PAYLOAD)
    try:
        return _Reader(payload[:-10]).value()
    except (BadData, IndexError, ValueError, OverflowError, struct.error):
        raise CommandError(errors.BAD_DATA_FORMAT) from None


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BadData("truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def length(self) -> tuple[int, bool]:
        """rdbLoadLen: (length, False), or (special encoding, True)."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return (first & 0x3F) << 8 | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return int.from_bytes(self.take(4), "big"), False
        if first == 0x81:
            return int.from_bytes(self.take(8), "big"), False
        raise BadData("length")

    def count(self) -> int:
        n, special = self.length()
        if special or n == 0 or n > len(self.data):  # every element takes a byte at least
            raise BadData("count")
        return n

    def string(self) -> bytes:
        n, special = self.length()
        if not special:
            return self.take(n)
        if n == 0:
            return b"%d" % int.from_bytes(self.take(1), "little", signed=True)
        if n == 1:
            return b"%d" % int.from_bytes(self.take(2), "little", signed=True)
        if n == 2:
            return b"%d" % int.from_bytes(self.take(4), "little", signed=True)
        if n == 3:
            compressed, _ = self.length()
            size, _ = self.length()
            return lzf_decompress(self.take(compressed), size)
        raise BadData("string encoding")

    def value(self) -> tuple[str, object]:
        kind = self.byte()
        if kind == STRING:
            return "string", self.string()
        if kind == LIST:
            return "list", [self.string() for _ in range(self.count())]
        if kind == SET:
            return "set", _unique([self.string() for _ in range(self.count())])
        if kind == HASH:
            return "hash", _pairs([self.string() for _ in range(2 * self.count())])
        if kind in (ZSET, ZSET_2):
            read_score = self.binary_double if kind == ZSET_2 else self.text_double
            items: list[object] = []
            for _ in range(self.count()):
                items += (self.string(), read_score())  # the member, then its score
            return "zset", _scores(items)
        compact = _COMPACT.get(kind)
        if compact is not None:  # one string holding an intset, ziplist or listpack
            tag, decode, check = compact
            return tag, check(decode(self.string()))
        if kind == LIST_QUICKLIST:
            items = []
            for _ in range(self.count()):
                items += ziplist(self.string())
            return "list", _nonempty(items)
        if kind == LIST_QUICKLIST_2:
            items = []
            for _ in range(self.count()):
                container, _ = self.length()
                node = self.string()
                if container == 1:  # PLAIN: one large element
                    items.append(node)
                elif container == 2:  # PACKED: a listpack
                    items += _nonempty(listpack(node))
                else:
                    raise BadData("quicklist container")
            return "list", _nonempty(items)
        if kind in (STREAM_LISTPACKS, STREAM_LISTPACKS_2):
            try:
                return "stream", load_stream(self, kind, listpack).to_plain()
            except StreamBadData as e:
                raise BadData(str(e)) from None
        raise BadData(f"type {kind}")  # modules, zipmaps, newer types

    def binary_double(self) -> float:
        return struct.unpack("<d", self.take(8))[0]

    def text_double(self) -> float:
        n = self.byte()
        if n == 253:
            return math.nan
        if n == 254:
            return math.inf
        if n == 255:
            return -math.inf
        return float(self.take(n))


def _nonempty(items: list) -> list:
    if not items:
        raise BadData("empty")
    return items


def _unique(items: list[bytes]) -> set[bytes]:
    members = set(_nonempty(items))
    if len(members) != len(items):
        raise BadData("duplicate members")
    return members


def _pairs(items: list[bytes]) -> dict[bytes, bytes]:
    if len(_nonempty(items)) % 2:
        raise BadData("odd number of hash entries")
    pairs = dict(zip(items[::2], items[1::2], strict=True))
    if len(pairs) * 2 != len(items):
        raise BadData("duplicate fields")
    return pairs


def _scores(items: list) -> dict[bytes, float]:
    """Members and scores, alternating; scores as floats or as the text
    (or integer) a ziplist or listpack keeps them in."""
    if len(_nonempty(items)) % 2:
        raise BadData("odd number of sorted set entries")
    scores: dict[bytes, float] = {}
    for member, raw in zip(items[::2], items[1::2], strict=True):
        score = raw if type(raw) is float else float(raw)
        if math.isnan(score) or member in scores:
            raise BadData("bad sorted set entry")
        scores[member] = score
    return scores


# -- compact encodings ------------------------------------------------------------------


def lzf_decompress(data: bytes, size: int) -> bytes:
    """LZF, as Redis compresses long strings in RDB files.

    Back-references are copied a slice at one go, never byte by byte: one
    that overlaps what it writes (its distance shorter than its length)
    repeats the last ``distance`` bytes.  Nothing is written past ``size``.
    Declared empty, any stream gives ``b""``: Redis's ``lzf_decompress``
    answers 0 for a stream it cannot write into 0 bytes, and its caller
    compares that with the length.
    """
    if size == 0:
        return b""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            if i + ctrl + 1 > n or len(out) + ctrl + 1 > size:
                raise BadData("lzf literal")
            out += data[i : i + ctrl + 1]
            i += ctrl + 1
            continue
        length = ctrl >> 5
        if length == 7:
            length += data[i]
            i += 1
        length += 2
        distance = ((ctrl & 0x1F) << 8) + data[i] + 1
        i += 1
        ref = len(out) - distance
        if ref < 0:
            raise BadData("lzf reference")
        if len(out) + length > size:
            raise BadData("lzf size")
        if distance >= length:
            out += out[ref : ref + length]
        else:
            out += (out[ref:] * (length // distance + 1))[:length]
    if len(out) != size:
        raise BadData("lzf size")
    return bytes(out)


def intset(blob: bytes) -> list[bytes]:
    """An intset: encoding u32 (2, 4 or 8 bytes per member), length u32, members."""
    width = int.from_bytes(blob[0:4], "little")
    n = int.from_bytes(blob[4:8], "little")
    if width not in (2, 4, 8) or len(blob) != 8 + width * n:
        raise BadData("intset")
    return [
        b"%d" % int.from_bytes(blob[8 + i * width : 8 + (i + 1) * width], "little", signed=True)
        for i in range(n)
    ]


def ziplist(blob: bytes) -> list[bytes]:
    """A ziplist's entries (Redis 6 and earlier): prevlen, encoding, data."""
    pos, end = _entries(blob, 10)
    out: list[bytes] = []
    while pos < end:
        pos += 5 if blob[pos] == 0xFE else 1  # previous entry's length
        enc = blob[pos]
        top = enc >> 6
        if top == 0:
            size, pos = enc & 0x3F, pos + 1
        elif top == 1:
            size, pos = (enc & 0x3F) << 8 | blob[pos + 1], pos + 2
        elif top == 2:
            size, pos = int.from_bytes(blob[pos + 1 : pos + 5], "big"), pos + 5
        else:
            width = _ZIPLIST_INTS.get(enc)
            if width is not None:
                out.append(b"%d" % int.from_bytes(_span(blob, pos + 1, width, end), "little", signed=True))
                pos += 1 + width
            elif 0xF1 <= enc <= 0xFD:
                out.append(b"%d" % ((enc & 0x0F) - 1))
                pos += 1
            else:
                raise BadData("ziplist encoding")
            continue
        out.append(_span(blob, pos, size, end))
        pos += size
    if pos != end:
        raise BadData("ziplist end")
    return out


_ZIPLIST_INTS = {0xC0: 2, 0xD0: 4, 0xE0: 8, 0xF0: 3, 0xFE: 1}


def listpack(blob: bytes) -> list[bytes]:
    """A listpack's entries (Redis 7): encoding, data, back-length."""
    pos, end = _entries(blob, 6)
    out: list[bytes] = []
    while pos < end:
        start = pos
        enc = blob[pos]
        if enc < 0x80:  # 7-bit unsigned integer
            out.append(b"%d" % enc)
            pos += 1
        elif enc < 0xC0:  # string, 6-bit length
            size = enc & 0x3F
            out.append(_span(blob, pos + 1, size, end))
            pos += 1 + size
        elif enc < 0xE0:  # 13-bit signed integer
            value = (enc & 0x1F) << 8 | blob[pos + 1]
            out.append(b"%d" % (value - 8192 if value >= 4096 else value))
            pos += 2
        elif enc < 0xF0:  # string, 12-bit length
            size = (enc & 0x0F) << 8 | blob[pos + 1]
            out.append(_span(blob, pos + 2, size, end))
            pos += 2 + size
        elif enc == 0xF0:  # string, 32-bit length
            size = int.from_bytes(blob[pos + 1 : pos + 5], "little")
            out.append(_span(blob, pos + 5, size, end))
            pos += 5 + size
        elif enc in _LISTPACK_INTS:
            width = _LISTPACK_INTS[enc]
            out.append(b"%d" % int.from_bytes(_span(blob, pos + 1, width, end), "little", signed=True))
            pos += 1 + width
        else:
            raise BadData("listpack encoding")
        entry = pos - start
        pos += (
            1
            if entry < 128
            else 2
            if entry < 16384
            else 3
            if entry < 1 << 21
            else 4
            if entry < 1 << 28
            else 5
        )
    counted = int.from_bytes(blob[4:6], "little")  # 65535: too many to count
    if pos != end or (counted != 65535 and counted != len(out)):
        raise BadData("listpack end")
    return out


_LISTPACK_INTS = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}


def _entries(blob: bytes, header: int) -> tuple[int, int]:
    """Where a ziplist's or listpack's entries start and end, after checking
    that it says its own size (u32 first) and ends with 0xFF."""
    if len(blob) <= header or int.from_bytes(blob[0:4], "little") != len(blob) or blob[-1] != 0xFF:
        raise BadData("compact list header")
    return header, len(blob) - 1


def _span(blob: bytes, start: int, size: int, end: int) -> bytes:
    if start + size > end:
        raise BadData("entry past the end")
    return blob[start : start + size]


# Types whose value is one string in a compact encoding: (tag, decode, check).
_COMPACT = {
    SET_INTSET: ("set", intset, _unique),
    LIST_ZIPLIST: ("list", ziplist, _nonempty),
    HASH_ZIPLIST: ("hash", ziplist, _pairs),
    HASH_LISTPACK: ("hash", listpack, _pairs),
    ZSET_ZIPLIST: ("zset", ziplist, _scores),
    ZSET_LISTPACK: ("zset", listpack, _scores),
}


# -- the commands ---------------------------------------------------------------------


def dump_command(ks: Keyspace, args: list[bytes]) -> object:
    """DUMP key"""
    value = ks.lookup(args[1])
    if value is None:
        return None
    tag, to_plain = TO_PLAIN[type(value)]
    return dump(tag, to_plain(value))


def restore(ks: Keyspace, args: list[bytes]) -> object:
    """RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds]
    [FREQ frequency]"""
    key = args[1]
    replace = absttl = False
    idle = freq = -1
    j = 4
    while j < len(args):
        opt = args[j].upper()
        more = j + 1 < len(args)
        if opt == b"REPLACE":
            replace = True
        elif opt == b"ABSTTL":
            absttl = True
        elif opt == b"IDLETIME" and more and freq == -1:
            idle = parse_int(args[j + 1])
            if idle < 0:
                raise CommandError(errors.INVALID_IDLETIME)
            j += 1
        elif opt == b"FREQ" and more and idle == -1:
            freq = parse_int(args[j + 1])
            if not 0 <= freq <= 255:
                raise CommandError(errors.INVALID_FREQ)
            j += 1
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    # Redis's order: options, the key, the TTL, the payload.
    if not replace and ks.lookup(key) is not None:
        raise CommandError(errors.BUSYKEY)
    ttl = parse_int(args[2])
    if ttl < 0:
        raise CommandError(errors.INVALID_TTL)
    tag, plain = load(args[3])
    if replace:
        ks.delete(key)
    if ttl and not absttl:
        ttl += ks.now
    if ttl and ttl <= ks.now:  # already expired: nothing is created
        return OK
    ks.store(key, FROM_PLAIN[tag](plain))
    if ttl:
        ks.set_expire(key, ttl)
    access.set_clock(ks, key, idle, freq)
    return OK


def migrate_delete(ks: Keyspace, args: list[bytes]) -> object:
    """__migdel key payload [key payload ...]

    MIGRATE's local delete (see :mod:`shardkv.acceptor.migrate`): each key
    whose DUMP is still ``payload``, the value the target acknowledged, is
    deleted, with Redis's ``del`` event; a key written since keeps its new
    value.  Returns how many keys it deleted."""
    deleted = 0
    for i in range(1, len(args) - 1, 2):
        key = args[i]
        value = ks.peek(key)
        if value is None:
            continue
        tag, to_plain = TO_PLAIN[type(value)]
        if dump(tag, to_plain(value)) != args[i + 1]:
            continue
        ks.delete(key)
        deleted += 1
        events.note(ks, events.GENERIC, b"del", key)
    return deleted


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "dump": dump_command,
    "restore": restore,
    "restore-asking": restore,  # RESTORE as a cluster's migration sends it
    Verb.MIGRATE_DEL: migrate_delete,
}
