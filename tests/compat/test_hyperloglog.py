"""HyperLogLog (PFADD, PFCOUNT, PFMERGE, PFDEBUG, PFSELFTEST), compared with a
real redis-server byte for byte: every ``compare`` asserts identical
replies, errors included, and GET shows the two servers hold the same
bytes.  Keys ``a``..``d`` live on different shards of four, so multi-key
PFCOUNT and PFMERGE run across shards.
"""

from __future__ import annotations

import random

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardkv.worker import hllcore


def _elements(rng: random.Random, n: int) -> list[bytes]:
    return [str(rng.random()).encode() for _ in range(n)]


@pytest.mark.parametrize("size", [0, 1, 3, 40, 300, 1500, 5000])
def test_pfadd_bytes_equal(compare, size):
    rng = random.Random(size)
    elements = _elements(rng, size)
    compare("PFADD", "h")
    i = 0
    while i < len(elements):
        step = rng.choice([1, 2, 7, 30, 100])
        compare("PFADD", "h", *elements[i : i + step])
        i += step
    compare("GET", "h")
    compare("PFDEBUG", "ENCODING", "h")
    compare("PFCOUNT", "h")
    compare("GET", "h")  # with the cached cardinality written
    compare("PFADD", "h", *elements[:5])  # nothing new: 0, cache stays
    compare("GET", "h")


def test_pfadd_edge_cases(compare):
    compare("PFADD", "h")
    compare("GET", "h")
    compare("PFADD", "h")
    compare("PFADD", "h", "")
    compare("PFADD", "h", "")
    compare("PFCOUNT", "h")
    compare("PFCOUNT", "missing")
    compare("PFADD", "h", "a" * 1000, "b" * 9, "c" * 16, "\x00\xff")
    compare("GET", "h")
    compare("PFADD", "t", "x")
    compare("EXPIRE", "t", 100)
    compare("PFADD", "t", "y", "z")
    compare("TTL", "t")  # PFADD keeps a TTL


def test_sparse_to_dense_promotion(compare):
    rng = random.Random(7)
    elements = _elements(rng, 4000)
    for i in range(0, 4000, 50):
        compare("PFADD", "h", *elements[i : i + 50])
        compare("PFDEBUG", "ENCODING", "h")
        compare("STRLEN", "h")
    compare("GET", "h")
    compare("PFCOUNT", "h")


def test_hll_sparse_max_bytes(compare):
    rng = random.Random(3)
    elements = _elements(rng, 600)
    for value in (200, 0):
        compare("CONFIG", "SET", "hll-sparse-max-bytes", value)
        try:
            compare("DEL", "h")
            for i in range(0, 600, 20):
                compare("PFADD", "h", *elements[i : i + 20])
                compare("PFDEBUG", "ENCODING", "h")
            compare("GET", "h")
        finally:
            compare("CONFIG", "SET", "hll-sparse-max-bytes", 3000)


def test_pfcount_union_and_pfmerge_across_shards(compare):
    rng = random.Random(11)
    sizes = {"a": 20, "b": 200, "c": 3000, "d": 0}
    pool = _elements(rng, 4000)
    for key, n in sizes.items():
        compare("PFADD", key, *rng.sample(pool, n))
    compare("PFDEBUG", "ENCODING", "c")
    for keys in (["a", "b"], ["a", "c"], ["a", "b", "c", "d"], ["d", "missing"], ["a", "a"]):
        compare("PFCOUNT", *keys)
    compare("PFMERGE", "m1", "a", "b")  # sparse sources: a sparse result
    compare("GET", "m1")
    compare("PFMERGE", "m2", "a", "c")  # a dense source: a dense result
    compare("GET", "m2")
    compare("PFMERGE", "b", "a", "missing")  # into an existing sparse HLL
    compare("GET", "b")
    compare("PFMERGE", "e")  # no sources: an empty HLL
    compare("GET", "e")
    compare("PFMERGE", "a", "c", "b", "d")
    compare("GET", "a")
    compare("PFCOUNT", "a")
    compare("PFCOUNT", "m1", "m2", "a")


def test_errors(compare):
    compare("SET", "s", "not an hll")
    compare("SET", "t", "HYLL")
    compare("LPUSH", "l", "x")
    for args in (
        ("PFADD", "s", "x"),
        ("PFADD", "l", "x"),
        ("PFCOUNT", "s"),
        ("PFCOUNT", "l"),
        ("PFCOUNT", "a", "s"),
        ("PFCOUNT", "t"),
        ("PFMERGE", "d", "s"),
        ("PFMERGE", "s", "a"),
        ("PFMERGE", "l"),
        ("PFDEBUG", "ENCODING", "missing"),
        ("PFDEBUG", "ENCODING", "s"),
        ("PFDEBUG", "NOPE", "s"),
        ("PFADD",),
        ("PFCOUNT",),
        ("PFMERGE",),
        ("PFDEBUG", "ENCODING"),
    ):
        compare(*args)
    compare("PFADD", "h", "a", "b", "c")
    compare("PFDEBUG", "NOPE", "h")
    compare("PFDEBUG", "DECODE", "h")
    compare("PFDEBUG", "TODENSE", "h")
    compare("PFDEBUG", "TODENSE", "h")
    compare("PFDEBUG", "DECODE", "h")
    compare("PFDEBUG", "ENCODING", "h")
    compare("PFDEBUG", "GETREG", "h")
    compare("GET", "h")


@pytest.mark.slow
def test_corruption(compare):
    compare("PFADD", "h", "a", "b", "c")
    compare("APPEND", "h", "hello")  # extra opcodes at the tail
    compare("PFCOUNT", "h")
    compare("PFADD", "h", "zzz")
    compare("PFADD", "g", "a", "b", "c")
    compare("SETRANGE", "g", 4, "\x00")  # dense with the wrong length
    compare("PFCOUNT", "g")
    compare("PFADD", "g", "x")
    compare("PFADD", "f", "a", "b", "c")
    compare("SETRANGE", "f", 0, "0123")
    compare("PFCOUNT", "f")
    rng = random.Random(5)
    for trial in range(60):
        compare("DEL", "x")
        compare("PFADD", "x", *_elements(rng, rng.randrange(1, 3000)))
        for _ in range(rng.randrange(1, 4)):
            length = compare("STRLEN", "x")
            compare("SETRANGE", "x", rng.randrange(length), bytes([rng.randrange(256)]))
        compare("PFCOUNT", "x")
        compare("PFADD", "x", "more", str(trial))
        compare("PFCOUNT", "x", "missing")
        compare("PFMERGE", "y", "x")


def _dense(registers: list[int], card: bytes = b"\x00" * 7 + b"\x80") -> bytes:
    """A dense HLL string of these 16384 6-bit registers (cache invalid)."""
    packed = sum(reg << (6 * i) for i, reg in enumerate(registers))
    return b"HYLL\x00\x00\x00\x00" + card + packed.to_bytes(12288, "little")


@pytest.mark.parametrize("fill", [[63], [52], [51], [50], [49], [47, 0], [63, 1, 0], [40, 63]])
def test_crafted_registers_past_q(compare, fill):
    """Registers above Q + 1 (which PFADD never writes) count nowhere in
    hllCount: with all of them there, z is 0 and the estimate infinite;
    near it, past a long long.  llroundl makes either LLONG_MIN, which
    Redis replies, and caches as a uint64 whose top bit marks it invalid."""
    registers = [fill[i % len(fill)] for i in range(16384)]
    compare("SET", "{h}A", _dense(registers))
    compare("PFCOUNT", "{h}A")
    compare("GET", "{h}A")
    compare("PFCOUNT", "{h}A")
    compare("PFMERGE", "{h}m", "{h}A")
    compare("PFCOUNT", "{h}m")
    compare("GET", "{h}m")
    compare("PFCOUNT", "{h}m", "{h}A", "other")
    compare("PFADD", "{h}m", "x")
    compare("PFCOUNT", "{h}m")
    compare("SET", "{h}B", _dense(registers, card=b"\x00" * 4 + b"\x80\x00\x00\x00"))
    compare("PFCOUNT", "{h}B")  # a valid cache is read, not recomputed


def test_wrongtype_and_watch(r):
    r.set("s", "v")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE Key is not a valid HyperLogLog"):
        r.pfadd("s", "x")
    r.pfadd("h", "a")
    p = r.pipeline()
    p.watch("h")
    p.multi()
    p.get("h")
    r.pfcount("h")  # writes the cache: a change for WATCH, as in Redis
    with pytest.raises(redis.WatchError):
        p.execute()
    p.reset()


@pytest.mark.slow
def test_pfselftest(compare):
    compare("PFSELFTEST")


def test_dump_restore_both_ways(ports):
    real = redis.Redis(port=ports["redis"])
    ours = redis.Redis(port=ports["shardkv"])
    try:
        rng = random.Random(1)
        for n in (5, 2000):
            elements = _elements(rng, n)
            real.delete("h")
            ours.delete("h")
            real.pfadd("h", *elements)
            ours.pfadd("h", *elements)
            for src, dst in ((real, ours), (ours, real)):
                payload = src.dump("h")
                dst.restore("copy", 0, payload, replace=True)
                assert dst.get("copy") == src.get("h")
                assert dst.pfcount("copy") == src.pfcount("h")
                dst.pfadd("copy", "new")
                src.set("plain", src.get("h"))  # GET/SET as well
                dst.set("plain", src.get("h"))
                assert dst.pfcount("plain") == src.pfcount("plain")
                dst.delete("copy", "plain")
                src.delete("plain")
    finally:
        real.close()
        ours.close()


_PAIR = {}


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    batches=st.lists(
        st.lists(st.binary(max_size=20) | st.integers(0, 10**6).map(lambda i: b"%d" % i), max_size=60),
        min_size=1,
        max_size=8,
    ),
    other=st.lists(st.binary(max_size=12), max_size=300),
)
def test_hypothesis_pfcount(ports, batches, other):
    """PFCOUNT, and the bytes, equal redis-server's over random inputs."""
    if not _PAIR:
        _PAIR["real"] = redis.Redis(port=ports["redis"])
        _PAIR["ours"] = redis.Redis(port=ports["shardkv"])
    real, ours = _PAIR["real"], _PAIR["ours"]
    for c in (real, ours):
        c.delete("a", "b")
        c.pfadd("b", *other) if other else c.pfadd("b")
    for batch in batches:
        assert ours.pfadd("a", *batch) == real.pfadd("a", *batch)
    assert ours.get("a") == real.get("a")
    assert ours.pfcount("a") == real.pfcount("a")
    assert ours.pfcount("a", "b") == real.pfcount("a", "b")


def test_murmur_vector_matches_scalar():
    rng = random.Random(2)
    elements = [rng.randbytes(rng.randrange(0, 40)) for _ in range(500)]
    index, counts = hllcore.patterns(elements)
    assert list(zip(index.tolist(), counts.tolist(), strict=True)) == [hllcore.pattern(e) for e in elements]


def test_huge_corrupted_sparse(compare):
    """A sparse HLL with megabytes of opcodes after its registers: the same
    replies as Redis, at a cost bounded by the HLL's 16384 registers."""
    compare("PFADD", "h", "a")
    compare("APPEND", "h", "\x00" * 200_000)
    compare("PFADD", "h", "b")  # the change would grow it past 3000 bytes: promotion fails
    compare("PFCOUNT", "h")
    compare("PFCOUNT", "h", "missing")
    compare("PFMERGE", "d", "h")
    compare("PFDEBUG", "ENCODING", "h")
    compare("PFDEBUG", "DECODE", "h")  # every opcode, the tail's too
    compare("PFDEBUG", "TODENSE", "h")
    compare("CONFIG", "SET", "hll-sparse-max-bytes", 1_000_000)
    try:
        compare("PFADD", "h", "c", "d", "e")  # now it fits: changed in place, tail kept
        compare("GET", "h")
    finally:
        compare("CONFIG", "SET", "hll-sparse-max-bytes", 3000)
