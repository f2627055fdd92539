"""HyperLogLog commands: PFADD, PFCOUNT, PFMERGE, PFDEBUG, PFSELFTEST.

The values are strings in Redis's exact layout (:mod:`shardkv.worker.hllcore`).
PFCOUNT and PFMERGE over keys on several shards run on one shard with the
others' keys imported (``crossshard``), like any multi-key command.
"""

from __future__ import annotations

import random

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError
from shardkv.worker import hllcore
from shardkv.worker.handlers import Handlers
from shardkv.worker.hllcore import DENSE, HEADER, SPARSE, Corrupted, Promote, Sparse
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.lazynumpy import np

_HLL_SPARSE_MAX_BYTES = 3000


def sparse_max_bytes(ks: Keyspace) -> int:
    """The ``hll-sparse-max-bytes`` setting in effect."""
    value = ks.runtime.extra.get("hll-sparse-max-bytes")
    return int(value) if value is not None else _HLL_SPARSE_MAX_BYTES


def lookup_hll(ks: Keyspace, key: bytes) -> bytes | None:
    """The HLL string at ``key``, None if missing, Redis's WRONGTYPE errors
    for another type or a string that is not an HLL."""
    value = ks.lookup(key)
    if value is None:
        return None
    if type(value) is not bytes:
        raise CommandError(errors.WRONGTYPE)
    if not hllcore.is_hll(value):
        raise CommandError(errors.HLL_WRONGTYPE)
    return value


def _invalidated(value: bytes) -> bytes:
    header = bytearray(value[:HEADER])
    hllcore.invalidate(header)
    return bytes(header) + value[HEADER:]


def _pairs(elements: list[bytes]):
    if len(elements) >= hllcore.VECTOR_MIN:
        index, counts = hllcore.patterns(elements)
        return zip(index.tolist(), counts.tolist(), strict=True)
    return map(hllcore.pattern, elements)


def add(value: bytes, elements: list[bytes], max_bytes: int) -> tuple[bytes, bool]:
    """``hllAdd`` of each element in order: the new string, and whether a
    register changed.  Raises Corrupted as Redis replies INVALIDOBJ."""
    pairs = _pairs(elements)
    if value[4] == SPARSE:
        sparse = Sparse(value)
        changed = 0
        pairs = iter(pairs)
        for index, count in pairs:
            try:
                changed |= sparse.set(index, count, max_bytes)
            except Promote:
                header, regs = hllcore.to_dense(sparse)
                regs[index] = max(int(regs[index]), count)
                for index, count in pairs:
                    if count > regs[index]:
                        regs[index] = count
                return bytes(header) + hllcore.array_to_dense(regs), True
        return (sparse.to_bytes(), True) if changed else (value, False)
    if len(elements) >= hllcore.VECTOR_MIN:
        index, counts = hllcore.patterns(elements)
        regs = hllcore.dense_to_array(memoryview(value)[HEADER:])
        top = np.zeros(hllcore.REGISTERS, dtype=np.uint8)
        np.maximum.at(top, index, counts)
        new = np.maximum(regs, top)
        if not (new != regs).any():
            return value, False
        return value[:HEADER] + hllcore.array_to_dense(new), True
    registers = bytearray(value[HEADER:])
    changed = False
    get, put = hllcore.dense_get, hllcore.dense_set
    for index, count in pairs:
        if count > get(registers, index):
            put(registers, index, count)
            changed = True
    return (value[:HEADER] + bytes(registers), True) if changed else (value, False)


def pfadd(ks: Keyspace, args: list[bytes]) -> object:
    """PFADD key [element [element ...]]"""
    key = args[1]
    value = lookup_hll(ks, key)
    created = value is None
    if created:
        value = hllcore.empty()
    try:
        new, changed = add(value, args[2:], sparse_max_bytes(ks))  # type: ignore[arg-type]  # created if None
    except Corrupted:
        raise CommandError(errors.HLL_CORRUPTED) from None
    if created or changed:
        ks.store(key, _invalidated(new), keepttl=True, counted=True)
        return 1
    ks.unchanged = True  # as Redis: no register changed, not dirty, not logged
    return 0


def _registers(value: bytes) -> np.ndarray:
    try:
        return hllcore.registers(value)
    except Corrupted:
        raise CommandError(errors.HLL_CORRUPTED) from None


def pfcount(ks: Keyspace, args: list[bytes]) -> object:
    """PFCOUNT key [key ...]"""
    if len(args) > 2:
        top = np.zeros(hllcore.REGISTERS, dtype=np.uint8)
        for key in args[1:]:
            value = lookup_hll(ks, key)
            if value is not None:
                np.maximum(top, _registers(value), out=top)
        return hllcore.estimate(hllcore.histogram(top))
    key = args[1]
    value = lookup_hll(ks, key)
    if value is None:
        return 0
    card = hllcore.cached_count(value)
    if card is None:
        try:
            card = hllcore.count(value)
        except Corrupted:
            raise CommandError(errors.HLL_CORRUPTED) from None
        # The cache is part of the value: Redis writes it, as a change, and
        # propagates the PFCOUNT (see record_pfcount).
        ks.store(key, hllcore.with_count(value, card), keepttl=True, counted=True)
        _CACHE_WRITTEN[0] = True
    return card


# Whether a PFCOUNT wrote a cached cardinality since the last AOF record.
_CACHE_WRITTEN = [False]


def record_pfcount(ks: Keyspace, args: list, reply: object) -> list:
    """Log a PFCOUNT only when it wrote a cache, as Redis propagates it
    (replaying one that did not would change nothing anyway)."""
    written = _CACHE_WRITTEN[0]
    _CACHE_WRITTEN[0] = False
    return [args] if written else []


def pfmerge(ks: Keyspace, args: list[bytes]) -> object:
    """PFMERGE destkey [sourcekey [sourcekey ...]]"""
    top = np.zeros(hllcore.REGISTERS, dtype=np.uint8)
    use_dense = False
    with ks.reading():
        for key in args[1:]:
            value = lookup_hll(ks, key)
            if value is None:
                continue
            if value[4] == DENSE:
                use_dense = True
            np.maximum(top, _registers(value), out=top)
    dest = args[1]
    value = ks.lookup(dest)  # type: ignore[assignment]  # an HLL or None: checked above (args[1:])
    if value is None:
        value = hllcore.empty()
    if use_dense and value[4] == SPARSE:
        value = _dense(value)
    if value[4] == DENSE:
        regs = hllcore.dense_to_array(memoryview(value)[HEADER:])
        value = value[:HEADER] + hllcore.array_to_dense(np.maximum(regs, top))
    else:
        value = _merge_sparse(value, top, sparse_max_bytes(ks))
    ks.store(dest, _invalidated(value), keepttl=True, counted=True)
    return "OK"


def _dense(value: bytes) -> bytes:
    """A sparse HLL's value encoded dense (HLL_CORRUPTED when its opcodes
    cannot be read)."""
    try:
        header, regs = hllcore.to_dense(Sparse(value))
    except Corrupted:
        raise CommandError(errors.HLL_CORRUPTED) from None
    return bytes(header) + hllcore.array_to_dense(regs)


def _merge_sparse(value: bytes, top: np.ndarray, max_bytes: int) -> bytes:
    """Set each non-zero register of ``top`` in turn, as PFMERGE does on a
    sparse destination (which may turn dense on the way)."""
    sparse = Sparse(value)
    nonzero = np.flatnonzero(top).tolist()
    for n, index in enumerate(nonzero):
        try:
            sparse.set(index, int(top[index]), max_bytes)
        except Promote:
            header, regs = hllcore.to_dense(sparse)
            rest = np.array(nonzero[n:], dtype=np.intp)
            regs[rest] = np.maximum(regs[rest], top[rest])
            return bytes(header) + hllcore.array_to_dense(regs)
        except Corrupted:
            continue  # Redis ignores hllSparseSet's error here
    return sparse.to_bytes()


def pfdebug(ks: Keyspace, args: list[bytes]) -> object:
    """PFDEBUG subcommand key"""
    sub = args[1]
    key = args[2]
    value = ks.lookup(key)
    if value is None:
        raise CommandError("ERR The specified key does not exist")
    if type(value) is not bytes:
        raise CommandError(errors.WRONGTYPE)
    if not hllcore.is_hll(value):
        raise CommandError(errors.HLL_WRONGTYPE)
    name = sub.lower()
    if name in (b"getreg", b"todense"):
        converted = False
        if value[4] == SPARSE:
            value = _dense(value)
            ks.store(key, value, keepttl=True, quiet=True, counted=True)  # Redis signals no change here
            converted = True
        if name == b"todense":
            return 1 if converted else 0
        return hllcore.dense_to_array(memoryview(value)[HEADER:]).tolist()
    if name == b"decode":
        if value[4] != SPARSE:
            raise CommandError("ERR HLL encoding is not sparse")
        return " ".join(_decode(op) for op in hllcore.opcodes(value)).encode()
    if name == b"encoding":
        return "dense" if value[4] == DENSE else "sparse"
    raise CommandError("ERR Unknown PFDEBUG subcommand '%s'" % sub.decode("latin-1"))


def _decode(op: bytes) -> str:
    b = op[0]
    if b & 0x80:
        value, length = hllcore.VAL[op]
        return "v:%d,%d" % (value, length)
    if b & 0x40:
        return "Z:%d" % hllcore.SPAN[op]
    return "z:%d" % hllcore.SPAN[op]


def pfselftest(ks: Keyspace, args: list[bytes]) -> object:
    """PFSELFTEST"""
    rng = random.Random()
    # Test 1: 6-bit registers keep their values and leave their neighbours alone.
    for _ in range(20):
        values = np.array([rng.randrange(64) for _ in range(hllcore.REGISTERS)], dtype=np.uint8)
        back = hllcore.dense_to_array(hllcore.array_to_dense(values))
        bad = np.flatnonzero(back != values)
        if bad.size:
            i = int(bad[0])
            raise CommandError("TESTFAILED Register %d should be %d but is %d" % (i, values[i], back[i]))
    registers = bytearray(hllcore.DENSE_BYTES)
    for i in range(hllcore.REGISTERS):
        hllcore.dense_set(registers, i, int(values[i]))
    for i in range(hllcore.REGISTERS):
        if hllcore.dense_get(registers, i) != values[i]:
            raise CommandError("TESTFAILED Register %d should be %d" % (i, values[i]))
    # Test 2: the estimate stays within 6 standard errors, sparse and dense agree.
    seed = rng.getrandbits(64)
    relerr = 1.04 / hllcore.REGISTERS**0.5
    dense = np.zeros(hllcore.REGISTERS, dtype=np.uint8)
    sparse = hllcore.empty()
    checkpoint = 1
    done = 0
    max_bytes = sparse_max_bytes(ks)
    while checkpoint <= 10_000_000:
        ids = np.arange(done + 1, checkpoint + 1, dtype=np.uint64) ^ np.uint64(seed)
        elements = [bytes(x) for x in ids.astype("<u8").view("S8")] if checkpoint <= 10_000 else None
        if elements is not None and sparse[4] == SPARSE:
            sparse, _ = add(sparse, elements, max_bytes)
            if checkpoint < max_bytes / 2 and sparse[4] != SPARSE:
                raise CommandError("TESTFAILED sparse encoding not used")
        for lo in range(0, len(ids), 1 << 20):
            index, counts = _patterns_u64(ids[lo : lo + (1 << 20)])
            np.maximum.at(dense, index, counts)
        done = checkpoint
        card = hllcore.estimate(hllcore.histogram(dense))
        if sparse[4] == SPARSE and hllcore.count(sparse) != card:
            raise CommandError("TESTFAILED dense/sparse disagree")
        maxerr = 1 if checkpoint == 10 else int(np.ceil(relerr * 6 * checkpoint))
        if abs(checkpoint - card) > maxerr:
            raise CommandError(
                "TESTFAILED Too big error. card:%d abserr:%d" % (checkpoint, abs(checkpoint - card))
            )
        checkpoint *= 10
    return "OK"


def _patterns_u64(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hllcore.patterns` of 8-byte little-endian integers."""
    lengths = np.full(len(ids), 8, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = hllcore.murmur_words(
            ids.reshape(-1, 1), lengths >> np.uint64(3), np.zeros(len(ids), np.uint64), lengths
        )
    return hllcore.hash_patterns(h)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "pfadd": pfadd,
    "pfcount": pfcount,
    "pfmerge": pfmerge,
    "pfdebug": pfdebug,
    "pfselftest": pfselftest,
}

# How the AOF logs PFCOUNT (see shardkv.worker.persistence.aof).
RECORDERS = {"pfcount": record_pfcount}
