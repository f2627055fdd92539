"""HyperLogLog in Redis's exact representation (``src/hyperloglog.c``).

A HyperLogLog is a string.  Its 16-byte header is ``HYLL``, an encoding
byte (0 dense, 1 sparse), three zero bytes and the cached cardinality, 8
bytes little endian whose top bit set means "not valid".  16384 registers
of 6 bits follow:

* *dense*: 12288 bytes, register ``i`` at bit ``6*i``, least significant
  bits first;
* *sparse*: run-length opcodes, ``00xxxxxx`` ZERO (1-64 zero registers),
  ``01xxxxxx yyyyyyyy`` XZERO (1-16384 zero registers), ``1vvvvvxx`` VAL
  (1-4 registers of value 1-32).

An element goes to register ``h & 16383`` of its 64-bit MurmurHash64A
(seed ``0xadc83b19``), with the length of the run of zeros, plus one, in
the other 50 bits.  A sparse HLL becomes dense when a register needs a
value over 32, or when growing would take it past ``hll-sparse-max-bytes``.
Every change below follows Redis's step by step, so that the bytes are the
ones redis-server would hold (GET, DUMP and RESTORE carry them both ways).

Hashing and the dense registers go through numpy when there are enough
elements for it to pay (:data:`VECTOR_MIN`, measured by
``benchmarks/hll_paths.py``); the counting estimator is Ertl's, as in
Redis 7.0 (``hllCount`` with ``hllTau`` and ``hllSigma``).
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from itertools import accumulate

from shardkv.worker.lazynumpy import np

HEADER = 16
REGISTERS = 16384
P = 14
Q = 64 - P
DENSE_BYTES = REGISTERS * 6 // 8
DENSE_SIZE = HEADER + DENSE_BYTES
DENSE = 0
SPARSE = 1
MAGIC = b"HYLL"
SEED = 0xADC83B19
ALPHA_INF = 0.721347520444481703680
VAL_MAX_VALUE = 32
VAL_MAX_LEN = 4
ZERO_MAX_LEN = 64
XZERO_MAX_LEN = 16384

_M = 0xC6A4A7935BD1E995
_MASK = (1 << 64) - 1

# PFADD with at least this many elements hashes them with numpy: the
# crossing point measured by benchmarks/hll_paths.py (per element, pure
# Python 2.7 µs at 24 and 32 elements; numpy 3.4 µs at 24, 2.5 at 32, 0.35
# at 1,000).
VECTOR_MIN = 32


class Corrupted(Exception):
    """The registers do not add up: Redis's ``-INVALIDOBJ``."""


# -- hashing -------------------------------------------------------------------


def murmur64a(data: bytes, seed: int = SEED) -> int:
    """MurmurHash64A, as Redis computes it on a little-endian machine."""
    m = _M
    n = len(data)
    h = (seed ^ (n * m)) & _MASK
    end = n - (n & 7)
    for i in range(0, end, 8):
        k = (int.from_bytes(data[i : i + 8], "little") * m) & _MASK
        k ^= k >> 47
        h = ((h ^ ((k * m) & _MASK)) * m) & _MASK
    if n & 7:
        h = ((h ^ int.from_bytes(data[end:], "little")) * m) & _MASK
    h ^= h >> 47
    h = (h * m) & _MASK
    return h ^ (h >> 47)


def pattern(data: bytes) -> tuple[int, int]:
    """``hllPatLen``: (register index, run of zeros + 1) of an element."""
    h = murmur64a(data)
    rest = (h >> P) | (1 << Q)
    return h & 16383, (rest & -rest).bit_length()


def murmur_words(
    words: np.ndarray, nblocks: np.ndarray, tails: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    m = np.uint64(_M)
    r = np.uint64(47)
    h = np.uint64(SEED) ^ (lengths * m)
    for j in range(words.shape[1]):
        k = words[:, j] * m
        k ^= k >> r
        k *= m
        mixed = (h ^ k) * m
        h = np.where(nblocks > j, mixed, h)
    h = np.where(lengths & np.uint64(7), (h ^ tails) * m, h)
    h ^= h >> r
    h *= m
    h ^= h >> r
    return h


def patterns(elements: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`pattern` over many elements: (indexes, counts)."""
    n = len(elements)
    lengths = np.fromiter(map(len, elements), dtype=np.uint64, count=n)
    width = int(lengths.max()) if n else 0
    width = (width + 8) & ~7  # room for a whole last block of zeros
    buf = np.zeros((n, width), dtype=np.uint8)
    flat = np.frombuffer(b"".join(elements), dtype=np.uint8)
    ilen = lengths.astype(np.int64)
    rows = np.repeat(np.arange(n), ilen)
    starts = np.cumsum(ilen) - ilen
    cols = np.arange(flat.size) - np.repeat(starts, ilen)
    buf[rows, cols] = flat
    words = buf.view("<u8")
    nblocks = lengths >> np.uint64(3)
    tails = words[np.arange(n), nblocks.astype(np.int64)]
    with np.errstate(over="ignore"):
        h = murmur_words(words[:, : int(nblocks.max()) if n else 0], nblocks, tails, lengths)
    return hash_patterns(h)


def hash_patterns(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(register indexes, runs of zeros + 1) of 64-bit hashes."""
    index = (h & np.uint64(16383)).astype(np.intp)
    rest = (h >> np.uint64(P)) | np.uint64(1 << Q)
    low = rest & (~rest + np.uint64(1))  # the lowest set bit: a power of two, exact in a double
    counts = np.log2(low.astype(np.float64)).astype(np.uint8) + 1
    return index, counts


# -- headers -------------------------------------------------------------------


def is_hll(value: bytes) -> bool:
    """``isHLLObjectOrReply``'s checks of a string."""
    if len(value) < HEADER or value[:4] != MAGIC or value[4] > SPARSE:
        return False
    return value[4] != DENSE or len(value) == DENSE_SIZE


def invalidate(header: bytearray) -> None:
    header[15] |= 0x80


def cached_count(value: bytes) -> int | None:
    """The cached cardinality, or None when it is marked invalid."""
    if value[15] & 0x80:
        return None
    return int.from_bytes(value[8:16], "little")


def with_count(value: bytes, card: int) -> bytes:
    """``value`` with ``card`` cached, as the uint64 Redis writes: a
    negative estimate (see :func:`estimate`) sets the top bit, which marks
    the cache invalid again."""
    return value[:8] + (card & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "little") + value[16:]


# -- dense registers -------------------------------------------------------------


def dense_to_array(registers: bytes | bytearray | memoryview) -> np.ndarray:
    """12288 bytes of 6-bit registers -> 16384 uint8 registers."""
    b = np.frombuffer(registers, dtype=np.uint8, count=DENSE_BYTES).reshape(-1, 3).astype(np.uint16)
    out = np.empty((REGISTERS // 4, 4), dtype=np.uint8)
    out[:, 0] = b[:, 0] & 63
    out[:, 1] = ((b[:, 0] >> 6) | (b[:, 1] << 2)) & 63
    out[:, 2] = ((b[:, 1] >> 4) | (b[:, 2] << 4)) & 63
    out[:, 3] = b[:, 2] >> 2
    return out.reshape(-1)


def array_to_dense(regs: np.ndarray) -> bytes:
    """16384 registers (each < 64) -> their 12288 bytes."""
    r = regs.reshape(-1, 4).astype(np.uint16)
    out = np.empty((REGISTERS // 4, 3), dtype=np.uint8)
    out[:, 0] = (r[:, 0] | (r[:, 1] << 6)) & 0xFF
    out[:, 1] = ((r[:, 1] >> 2) | (r[:, 2] << 4)) & 0xFF
    out[:, 2] = ((r[:, 2] >> 4) | (r[:, 3] << 2)) & 0xFF
    return out.tobytes()


def dense_get(regs: bytearray, index: int) -> int:
    byte = index * 6 >> 3
    fb = index * 6 & 7
    b1 = regs[byte + 1] if byte + 1 < DENSE_BYTES else 0
    return ((regs[byte] >> fb) | (b1 << (8 - fb))) & 63


def dense_set(regs: bytearray, index: int, value: int) -> None:
    byte = index * 6 >> 3
    fb = index * 6 & 7
    regs[byte] = (regs[byte] & ~(63 << fb) & 0xFF) | ((value << fb) & 0xFF)
    if byte + 1 < DENSE_BYTES:
        regs[byte + 1] = (regs[byte + 1] & ~(63 >> (8 - fb))) | (value >> (8 - fb))


# -- sparse opcodes --------------------------------------------------------------

# An XZERO cut short by the end of the string is one byte whose low half
# reads as 0, as Redis reads the string's terminating zero byte there.
_OPCODE = re.compile(rb"[\x40-\x7f][\x00-\xff]|[\x00-\xff]")


def _span(op: bytes) -> int:
    b = op[0]
    if b & 0x80:
        return (b & 3) + 1
    if b & 0x40:
        return ((b & 0x3F) << 8 | op[1]) + 1
    return b + 1


SPAN: dict[bytes, int] = {bytes([b]): _span(bytes([b, 0])) for b in range(256)}
SPAN.update({x.to_bytes(2, "big"): (x & 0x3FFF) + 1 for x in range(0x4000, 0x8000)})
# VAL opcodes: op -> (value, run length).
VAL: dict[bytes, tuple[int, int]] = {
    bytes([b]): (((b >> 2) & 0x1F) + 1, (b & 3) + 1) for b in range(0x80, 0x100)
}


def val_op(value: int, length: int) -> bytes:
    return bytes([0x80 | ((value - 1) << 2) | (length - 1)])


def zero_op(length: int) -> bytes:
    """ZERO for a run of up to 64 registers, XZERO above."""
    if length > ZERO_MAX_LEN:
        return (0x4000 | (length - 1)).to_bytes(2, "big")
    return bytes([length - 1])


def empty() -> bytes:
    """``createHLLObject``: a sparse HLL of one XZERO."""
    return MAGIC + bytes([SPARSE]) + bytes(11) + zero_op(REGISTERS)


def opcodes(value: bytes):
    """Every opcode of a sparse HLL string, one by one (PFDEBUG DECODE)."""
    return (m.group() for m in _OPCODE.finditer(value, HEADER))


# Strings up to this size are parsed whole (a valid one is at most 32784 bytes).
_SMALL = 1 << 16


class Sparse:
    """A sparse HLL's opcodes, as a list, for ``hllSparseSet``.

    ``starts[i]`` is the first register of ``ops[i]``; ``starts[-1]`` the
    number of registers the opcodes cover.  ``size`` is the string's length.

    A valid HLL has at most 16384 opcodes.  A longer string (a corrupted or
    crafted one: SET can write any bytes) is read only as far as 16384
    registers and a few opcodes more, which is all that a change can reach;
    the rest is kept as ``tail`` bytes, so its cost stays bounded, and it
    makes the HLL invalid for counting, as its extra registers do in Redis.
    """

    __slots__ = ("header", "ops", "size", "starts", "tail")

    def __init__(self, value: bytes) -> None:
        self.header = bytearray(value[:HEADER])
        self.size = len(value)
        self.tail = b""
        if len(value) <= _SMALL:
            ops = _OPCODE.findall(value, HEADER)
            self.starts = list(accumulate(map(SPAN.__getitem__, ops), initial=0))
        else:
            ops = []
            starts = [0]
            extra = 0
            end = HEADER
            for match in _OPCODE.finditer(value, HEADER):
                op = match.group()
                ops.append(op)
                starts.append(starts[-1] + SPAN[op])
                end = match.end()
                if starts[-1] >= REGISTERS:
                    extra += 1
                    if extra > 6:
                        break
            self.starts = starts
            self.tail = value[end:]
        self.ops = ops

    def to_bytes(self) -> bytes:
        return bytes(self.header) + b"".join(self.ops) + self.tail

    def set(self, index: int, count: int, max_bytes: int) -> int:
        """``hllSparseSet``: 1 if it changed a register, 0 if not; raises
        :class:`Promote` when the HLL must become dense, :class:`Corrupted`
        when the opcodes do not cover ``index``."""
        if count > VAL_MAX_VALUE:
            raise Promote
        starts = self.starts
        if index >= starts[-1]:
            raise Corrupted
        ops = self.ops
        i = bisect_right(starts, index) - 1
        op = ops[i]
        first = starts[i]
        span = starts[i + 1] - first
        kind = op[0] & 0xC0
        if kind & 0x80:
            old = ((op[0] >> 2) & 0x1F) + 1
            if old >= count:
                return 0
            if span == 1:
                ops[i] = val_op(count, 1)
                self._merge(i)
                return 1
        elif kind == 0 and span == 1:
            ops[i] = val_op(count, 1)
            self._merge(i)
            return 1
        last = first + span - 1
        seq = []
        if kind & 0x80:
            cur = ((op[0] >> 2) & 0x1F) + 1
            if index != first:
                seq.append(val_op(cur, index - first))
            seq.append(val_op(count, 1))
            if index != last:
                seq.append(val_op(cur, last - index))
        else:
            if index != first:
                seq.append(zero_op(index - first))
            seq.append(val_op(count, 1))
            if index != last:
                seq.append(zero_op(last - index))
        delta = sum(map(len, seq)) - len(op)
        if delta > 0 and self.size + delta > max_bytes:
            raise Promote
        ops[i : i + 1] = seq
        new_starts = [first]
        for s in seq[:-1]:
            new_starts.append(new_starts[-1] + SPAN[s])
        starts[i : i + 1] = new_starts
        self.size += delta
        self._merge(i)
        return 1

    def _merge(self, i: int) -> None:
        """Step 4: join adjacent VALs of one value, up to 5 opcodes from the
        one before the changed one."""
        ops = self.ops
        starts = self.starts
        p = i - 1 if i > 0 else 0
        scan = 5
        while p < len(ops) and scan:
            scan -= 1
            a = VAL.get(ops[p])
            if a is None:
                p += 1
                continue
            if p + 1 < len(ops):
                b = VAL.get(ops[p + 1])
                if b is not None and a[0] == b[0] and a[1] + b[1] <= VAL_MAX_LEN:
                    ops[p + 1] = val_op(a[0], a[1] + b[1])
                    del ops[p]
                    del starts[p + 1]
                    self.size -= 1
                    continue
            p += 1

    def registers(self) -> np.ndarray:
        """The 16384 registers (``hllSparseToDense``'s walk), or Corrupted."""
        out = np.zeros(REGISTERS, dtype=np.uint8)
        starts = self.starts
        idx = 0
        for i, op in enumerate(self.ops):
            v = VAL.get(op)
            if v is None:
                idx = starts[i + 1]
                continue
            if v[1] + idx > REGISTERS:
                break
            out[idx : idx + v[1]] = v[0]
            idx += v[1]
        if idx != REGISTERS or self.tail:
            raise Corrupted
        return out

    def histogram(self) -> list[int]:
        """``hllSparseRegHisto``; Corrupted when the runs do not add up."""
        histo = [0] * 64
        for op in self.ops:
            v = VAL.get(op)
            if v is None:
                histo[0] += SPAN[op]
            else:
                histo[v[0]] += v[1]
        if self.starts[-1] != REGISTERS or self.tail:
            raise Corrupted
        return histo


class Promote(Exception):
    """The sparse HLL must become dense (raised by :meth:`Sparse.set`)."""


def to_dense(sparse: Sparse) -> tuple[bytearray, np.ndarray]:
    """``hllSparseToDense``: the dense header and registers."""
    regs = sparse.registers()
    header = bytearray(sparse.header)
    header[4] = DENSE
    return header, regs


# -- counting --------------------------------------------------------------------


def _sigma(x: float) -> float:
    if x == 1.0:
        return math.inf
    y = 1.0
    z = x
    while True:
        x *= x
        z_prime = z
        z += x * y
        y += y
        if z_prime == z:
            return z


def _tau(x: float) -> float:
    if x == 0.0 or x == 1.0:
        return 0.0
    y = 1.0
    z = 1 - x
    while True:
        x = math.sqrt(x)
        z_prime = z
        y *= 0.5
        z -= math.pow(1 - x, 2) * y
        if z_prime == z:
            return z / 3


def estimate(histo) -> int:
    """``hllCount``'s estimate from the register histogram."""
    m = float(REGISTERS)
    z = m * _tau((m - histo[Q + 1]) / m)
    for j in range(Q, 0, -1):
        z += histo[j]
        z *= 0.5
    z += m * _sigma(histo[0] / m)
    if z == 0.0 or ALPHA_INF * m * m / z >= 2.0**63:
        # Registers past Q + 1 (a crafted dense HLL) count nowhere: z is 0
        # and the estimate infinite.  llroundl gives LLONG_MIN for any
        # value past a long long, which Redis replies as it is.
        return -(2**63)
    e = ALPHA_INF * m * m / z
    r = math.floor(e)  # llroundl: halves away from zero
    return int(r + 1 if e - r >= 0.5 else r)


def histogram(regs: np.ndarray) -> list[int]:
    return np.bincount(regs, minlength=64).tolist()


def count(value: bytes) -> int:
    """The cardinality of a valid HLL string (cache not consulted)."""
    if value[4] == DENSE:
        return estimate(histogram(dense_to_array(memoryview(value)[HEADER:])))
    return estimate(Sparse(value).histogram())


def registers(value: bytes) -> np.ndarray:
    """The 16384 registers of a valid HLL string (``hllMerge``'s read)."""
    if value[4] == DENSE:
        return dense_to_array(memoryview(value)[HEADER:])
    return Sparse(value).registers()
