"""Bitmap commands: a string read and written as an array of bits.

Bit 0 is the most significant bit of the first byte, as in Redis.  A
missing key reads as an endless run of 0 bits; SETBIT past the end grows
the string with zero bytes.  Strings are immutable ``bytes`` here, so a
SETBIT copies its string: O(length), where Redis changes one byte.

BITCOUNT and BITPOS take a range in bytes (``BYTE``, the default) or in
bits (``BIT``), with Redis's rules for negative and out-of-range ends
(``bitcountCommand``, ``bitposCommand``); :func:`_bit_range` turns either
into an inclusive range of bit positions.  Both scan a long string in
chunks at C speed (numpy's popcount and comparisons), so a 512 MB string
costs a fraction of a second and never a copy of itself.
"""

from __future__ import annotations

import functools

from shardkv.protocol import errors
from shardkv.protocol.args import parse_either, parse_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import strict_int
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.lazynumpy import np
from shardkv.worker.values import get_string, mutable_string, read_string


def _offset(ks: Keyspace, arg: bytes) -> int:
    """A bit offset, as ``getBitOffsetFromArgument``: 0 up to the bits of a
    string of proto-max-bulk-len bytes."""
    offset = strict_int(arg)
    if offset is None or offset < 0 or (offset >> 3) >= ks.runtime.proto_max_bulk_len:
        raise CommandError(errors.BIT_OFFSET)
    return offset


def setbit(ks: Keyspace, args: list[bytes]) -> object:
    """SETBIT key offset value"""
    key = args[1]
    offset = _offset(ks, args[2])
    on = strict_int(args[3])
    if on is None or on not in (0, 1):
        raise CommandError(errors.BIT_VALUE)
    buf = mutable_string(ks, key)
    if buf is None:
        buf = bytearray()
    index, mask = offset >> 3, 0x80 >> (offset & 7)
    grown = len(buf) <= index
    if grown:
        buf.extend(bytes(index + 1 - len(buf)))
    was = 1 if buf[index] & mask else 0
    if grown or was != on:  # as Redis 7.0: an unchanged string is not written
        buf[index] = buf[index] | mask if on else buf[index] & ~mask
        ks.store(key, buf, keepttl=True, counted=True)
    else:
        ks.unchanged = True  # not a change: not dirty, not logged
    return was


def getbit(ks: Keyspace, args: list[bytes]) -> object:
    """GETBIT key offset"""
    offset = _offset(ks, args[2])
    value = read_string(ks, args[1])
    index = offset >> 3
    if value is None or index >= len(value):
        return 0
    return 1 if value[index] & (0x80 >> (offset & 7)) else 0


def _unit_is_bit(arg: bytes) -> bool:
    return parse_either(arg, b"BIT", b"BYTE")


def _bit_range(start: int, end: int, size: int, in_bits: bool) -> tuple[int, int] | None:
    """The inclusive bit positions ``start..end`` stand for in a string of
    ``size`` bytes (counted in bits or in bytes), or None when empty.
    Negative ends count from the end; both are then clamped to the string."""
    total = size * 8 if in_bits else size
    if start < 0:
        start = max(total + start, 0)
    if end < 0:
        end = max(total + end, 0)
    end = min(end, total - 1)
    if start > end:
        return None
    return (start, end) if in_bits else (start * 8, end * 8 + 7)


def _bits(value: bytes | bytearray, first: int, last: int) -> int:
    """Bits ``first..last`` of ``value`` as one integer (``first`` highest)."""
    lo, hi = first >> 3, last >> 3
    chunk = int.from_bytes(value[lo : hi + 1], "big")
    return (chunk >> (7 - (last & 7))) & ((1 << (last - first + 1)) - 1)


_CHUNK = 1 << 20  # bytes scanned per step: bounds the temporaries of a long string


@functools.cache
def _byte_bits() -> np.ndarray:
    """The 1 bits of each byte value (numpy 1's popcount), made at first use."""
    return np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(data: bytes | bytearray | memoryview) -> int:
    """The 1 bits of ``data``, a chunk at a time (numpy's ``bitwise_count``
    where numpy has it, else a 256-entry table)."""
    array = np.frombuffer(data, dtype=np.uint8)
    total = 0
    for at in range(0, len(array), _CHUNK):
        chunk = array[at : at + _CHUNK]
        if hasattr(np, "bitwise_count"):  # numpy 2
            words = len(chunk) // 8
            total += int(np.bitwise_count(chunk[: words * 8].view(np.uint64)).sum(dtype=np.uint64))
            total += int.from_bytes(chunk[words * 8 :].tobytes(), "big").bit_count()
        else:
            total += int(_byte_bits()[chunk].sum(dtype=np.uint64))
    return total


def _count_bits(value: bytes | bytearray, first: int, last: int) -> int:
    """The 1 bits in positions ``first..last`` of ``value``."""
    lo, hi = first >> 3, last >> 3
    if hi - lo < 64:
        return _bits(value, first, last).bit_count()
    head = (value[lo] & (0xFF >> (first & 7))).bit_count()
    tail = (value[hi] >> (7 - (last & 7))).bit_count()
    return head + _popcount(memoryview(value)[lo + 1 : hi]) + tail


def bitcount(ks: Keyspace, args: list[bytes]) -> object:
    """BITCOUNT key [start end [BYTE | BIT]]"""
    value = read_string(ks, args[1])
    if value is None:
        return 0
    n = len(args)
    if n == 2:
        return _popcount(value)
    if n not in (4, 5):
        raise CommandError(errors.SYNTAX)
    start, end = parse_int(args[2]), parse_int(args[3])
    in_bits = _unit_is_bit(args[4]) if n == 5 else False
    if start < 0 and end < 0 and start > end:
        return 0
    span = _bit_range(start, end, len(value), in_bits)
    return 0 if span is None else _count_bits(value, *span)


def bitpos(ks: Keyspace, args: list[bytes]) -> object:
    """BITPOS key bit [start [end [BYTE | BIT]]]"""
    bit = parse_int(args[2])
    if bit not in (0, 1):
        raise CommandError(errors.BITPOS_BIT)
    value = read_string(ks, args[1])
    if value is None:  # an endless run of 0 bits
        return -1 if bit else 0
    n = len(args)
    if n > 6:
        raise CommandError(errors.SYNTAX)
    start, end, end_given = 0, -1, False
    if n >= 4:
        start = parse_int(args[3])
        in_bits = _unit_is_bit(args[5]) if n == 6 else False
        if n >= 5:
            end, end_given = parse_int(args[4]), True
        span = _bit_range(start, end, len(value), in_bits)
    else:
        span = _bit_range(0, -1, len(value), False)
    if span is None:
        return -1
    first, last = span
    found = _find_bit(value, bit, first, last)
    if found is not None:
        return found
    # No such bit in the range.  Looking for a 0 with no end given, the
    # string goes on with 0 bits: the first one after the range.
    return last + 1 if bit == 0 and not end_given else -1


def _find_bit(value: bytes | bytearray, bit: int, first: int, last: int) -> int | None:
    """The first position in ``first..last`` whose bit is ``bit``."""
    pos = first
    while pos <= last and pos & 7:  # a partial first byte, bit by bit
        if (value[pos >> 3] >> (7 - (pos & 7))) & 1 == bit:
            return pos
        pos += 1
    whole_end = (last + 1) >> 3  # bytes pos >> 3 .. whole_end-1 are inside the range
    if pos <= last and (pos >> 3) < whole_end:  # whole bytes, a chunk at a time
        array = np.frombuffer(value, dtype=np.uint8)[pos >> 3 : whole_end]
        skip = 0 if bit else 0xFF  # the bytes with no such bit
        for at in range(0, len(array), _CHUNK):
            differs = array[at : at + _CHUNK] != skip
            if differs.any():
                index = at + int(differs.argmax())
                byte = int(array[index]) if bit else int(array[index]) ^ 0xFF
                return pos + index * 8 + 8 - byte.bit_length()
        pos = whole_end * 8
    while pos <= last:  # a partial last byte
        if (value[pos >> 3] >> (7 - (pos & 7))) & 1 == bit:
            return pos
        pos += 1
    return None


_BITOPS = {b"AND": int.__and__, b"OR": int.__or__, b"XOR": int.__xor__, b"NOT": None}


def bitop(ks: Keyspace, args: list[bytes]) -> object:
    """BITOP AND | OR | XOR | NOT destkey key [key ...]"""
    name = args[1].upper()
    if name not in _BITOPS:
        raise CommandError(errors.SYNTAX)
    if name == b"NOT" and len(args) != 4:
        raise CommandError(errors.BITOP_NOT_ONE_KEY)
    with ks.reading():
        sources = [get_string(ks, key) or b"" for key in args[3:]]
    size = max(map(len, sources))
    if not size:
        if not ks.delete(args[2]):
            ks.unchanged = True  # as Redis: empty, no destination to delete: no change
        return 0
    # Shorter strings count as padded with zero bytes at the end.
    numbers = [int.from_bytes(s.ljust(size, b"\0"), "big") for s in sources]
    op = _BITOPS[name]
    if op is None:
        result = numbers[0] ^ ((1 << (8 * size)) - 1)
    else:
        result = numbers[0]
        for number in numbers[1:]:
            result = op(result, number)
    ks.store(args[2], result.to_bytes(size, "big"))
    return size


# -- BITFIELD ----------------------------------------------------------------------

_GET, _SET, _INCRBY = "get", "set", "incrby"
_OPERATIONS = {b"GET": (_GET, 2), b"SET": (_SET, 3), b"INCRBY": (_INCRBY, 3)}  # with their argument counts
_OVERFLOWS = (b"WRAP", b"SAT", b"FAIL")


def _field_type(arg: bytes) -> tuple[bool, int]:
    """``i1``..``i64`` or ``u1``..``u63``: (signed, bits)."""
    signed = arg[:1] in (b"i", b"I")
    bits = strict_int(arg[1:]) if arg[:1] in (b"i", b"I", b"u", b"U") else None
    if bits is None or bits < 1 or bits > (64 if signed else 63):
        raise CommandError(errors.BITFIELD_TYPE)
    return signed, bits


def _field_offset(ks: Keyspace, arg: bytes, bits: int) -> int:
    """A bit offset, or ``#N``: the N-th field of this width."""
    if arg[:1] == b"#":
        index = strict_int(arg[1:])
        offset = None if index is None else index * bits
    else:
        offset = strict_int(arg)
    if offset is None or offset < 0 or (offset >> 3) >= ks.runtime.proto_max_bulk_len:
        raise CommandError(errors.BIT_OFFSET)
    return offset


class _Field:
    """One GET, SET or INCRBY of a BITFIELD, with the OVERFLOW then in force."""

    __slots__ = ("op", "signed", "bits", "offset", "value", "overflow")

    def __init__(self, op: str, signed: bool, bits: int, offset: int, value: int, overflow: bytes) -> None:
        self.op, self.signed, self.bits, self.offset = op, signed, bits, offset
        self.value, self.overflow = value, overflow

    def read(self, buf: bytes | bytearray) -> int:
        first, last = self.offset >> 3, (self.offset + self.bits - 1) >> 3
        chunk = int.from_bytes(bytes(buf[first : last + 1]).ljust(last - first + 1, b"\0"), "big")
        n = (chunk >> ((last + 1) * 8 - self.offset - self.bits)) & ((1 << self.bits) - 1)
        if self.signed and n >> (self.bits - 1):
            n -= 1 << self.bits
        return n

    def write(self, buf: bytearray, n: int) -> None:
        first, last = self.offset >> 3, (self.offset + self.bits - 1) >> 3
        shift = (last + 1) * 8 - self.offset - self.bits
        mask = ((1 << self.bits) - 1) << shift
        chunk = int.from_bytes(buf[first : last + 1], "big") & ~mask | (n << shift) & mask
        buf[first : last + 1] = chunk.to_bytes(last - first + 1, "big")

    def apply(self, buf: bytearray) -> tuple[int | None, bool]:
        """Run a SET or INCRBY on ``buf``: its reply (None: overflow with
        FAIL), and whether the field changed."""
        bits = self.bits
        old = self.read(buf)
        if self.signed:
            low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            new = old + self.value if self.op is _INCRBY else self.value
        else:  # as Redis, in unsigned 64-bit arithmetic: SET u8 0 -1 is 2**64 - 1
            low, high = 0, (1 << bits) - 1
            new = old + self.value if self.op is _INCRBY else self.value % (1 << 64)
        if not low <= new <= high:
            if self.overflow == b"FAIL":
                return None, False
            if self.overflow == b"SAT":
                # Redis compares in 64-bit arithmetic, where a SET far below a
                # small field's range wraps the comparison: it saturates high.
                wrapped = self.op is _SET and high - new >= 1 << 63
                new = high if new > high or wrapped else low
            else:  # WRAP: the low bits, read back in the field's type
                new &= (1 << bits) - 1
                if self.signed and new >> (bits - 1):
                    new -= 1 << bits
        self.write(buf, new)
        return (new if self.op is _INCRBY else old), new != old


def _parse_fields(ks: Keyspace, args: list[bytes]) -> list[_Field]:
    fields: list[_Field] = []
    overflow = b"WRAP"
    j, n = 2, len(args)
    while j < n:
        name = args[j].upper()
        if name == b"OVERFLOW" and j + 1 < n:
            overflow = args[j + 1].upper()
            if overflow not in _OVERFLOWS:
                raise CommandError(errors.BITFIELD_OVERFLOW)
            j += 2
            continue
        op, count = _OPERATIONS.get(name, (None, 0))
        if op is None or j + count >= n:
            raise CommandError(errors.SYNTAX)
        signed, bits = _field_type(args[j + 1])
        offset = _field_offset(ks, args[j + 2], bits)
        value = parse_int(args[j + 3]) if op is not _GET else 0
        fields.append(_Field(op, signed, bits, offset, value, overflow))
        j += count + 1
    return fields


def _bitfield(ks: Keyspace, args: list[bytes], read_only: bool) -> list:
    fields = _parse_fields(ks, args)
    key = args[1]
    writes = [f for f in fields if f.op is not _GET]
    if not writes:
        with ks.reading():
            value = read_string(ks, key) or b""
        if not read_only:
            ks.unchanged = True  # as Redis: GETs only, not dirty, not logged
        return [f.read(value) for f in fields]
    if read_only:
        raise CommandError(errors.BITFIELD_RO_GET_ONLY)
    buf = mutable_string(ks, key)
    if buf is None:
        buf = bytearray()
    size = max((f.offset + f.bits - 1) >> 3 for f in writes) + 1
    grown = len(buf) < size
    if grown:
        buf.extend(bytes(size - len(buf)))
    replies: list = []
    changes = 0
    for f in fields:
        if f.op is _GET:
            replies.append(f.read(buf))
            continue
        reply, field_changed = f.apply(buf)
        replies.append(reply)
        # As Redis: a write that went through counts as a change if it
        # changed its field or the string grew; one that failed does not.
        if reply is not None and (field_changed or grown):
            changes += 1
    if changes or grown:  # (a string grown for writes that all failed stays grown, quietly)
        ks.store(key, buf, keepttl=True, quiet=not changes, counted=True)
    if not changes and not grown:
        ks.unchanged = True  # not a change: not dirty, not logged
    elif changes != 1:
        ks.changes = changes  # as Redis: a change per write that changed (none: grown only)
    return replies


def bitfield(ks: Keyspace, args: list[bytes]) -> object:
    """BITFIELD key [GET encoding offset | [OVERFLOW WRAP | SAT | FAIL]
    SET encoding offset value | INCRBY encoding offset increment [...]]"""
    return _bitfield(ks, args, False)


def bitfield_ro(ks: Keyspace, args: list[bytes]) -> object:
    """BITFIELD_RO key [GET encoding offset [GET encoding offset ...]]"""
    return _bitfield(ks, args, True)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "setbit": setbit,
    "getbit": getbit,
    "bitcount": bitcount,
    "bitpos": bitpos,
    "bitop": bitop,
    "bitfield": bitfield,
    "bitfield_ro": bitfield_ro,
}
