"""BITCOUNT and BITPOS scan long strings in chunks (numpy's popcount and
comparisons): their results against a bit-by-bit reference, on
random data, whole and over ranges in bytes and in bits, with chunks made
small so that every range crosses several chunk boundaries.

(The replies themselves are compared with redis-server in
tests/compat; these only prove the chunked scans count and find what a
plain loop over the bits does.)
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from shardkv.worker.commands import bitmaps
from shardkv.worker.keyspace import Keyspace


def _bit_string(value: bytes) -> str:
    return "".join(f"{b:08b}" for b in value)


def _reference_range(start: int, end: int, size: int, in_bits: bool) -> tuple[int, int] | None:
    """Redis's rules (bitcountCommand / bitposCommand) written out again."""
    total = size * 8 if in_bits else size
    if start < 0:
        start = max(total + start, 0)
    if end < 0:
        end = max(total + end, 0)
    end = min(end, total - 1)
    if start > end:
        return None
    return (start, end) if in_bits else (start * 8, end * 8 + 7)


def _values() -> list[bytes]:
    rng = random.Random(24)
    values = [b"", b"\x00", b"\xff", b"\x00" * 300, b"\xff" * 300, b"\x00" * 299 + b"\x01"]
    values += [b"\xff" * 299 + b"\xfe", b"\x80" + b"\x00" * 500, b"\x00" * 500 + b"\x80"]
    for size in (1, 7, 8, 9, 63, 64, 65, 200, 1000, 4099):
        values.append(rng.randbytes(size))
        sparse = bytearray(size)
        for _ in range(3):
            sparse[rng.randrange(size)] = 1 << rng.randrange(8)
        values.append(bytes(sparse))
        values.append(bytes(b ^ 0xFF for b in sparse))
    return values


@pytest.fixture(params=[True, False], ids=["bitwise_count", "table"])
def small_chunks(request, monkeypatch):
    """Chunks of 16 bytes, with numpy 2's bitwise_count or the 256-entry table."""
    monkeypatch.setattr(bitmaps, "_CHUNK", 16)
    if not request.param:
        monkeypatch.delattr(np, "bitwise_count", raising=False)
    elif not hasattr(np, "bitwise_count"):
        pytest.skip("numpy < 2 has no bitwise_count")


def _ranges(size: int, rng: random.Random) -> list[tuple[int, int, bool]]:
    ranges = [(0, -1, False), (0, -1, True), (1, -2, False), (3, -4, True), (-1, -1, False)]
    ranges += [(0, 0, True), (5, 3, False), (-100000, 100000, True), (size - 1, size, False)]
    for _ in range(12):
        in_bits = rng.random() < 0.5
        total = size * 8 if in_bits else size
        ranges.append((rng.randint(-total - 3, total + 3), rng.randint(-total - 3, total + 3), in_bits))
    return ranges


def test_bitcount_matches_a_bit_by_bit_count(small_chunks):
    rng = random.Random(7)
    ks = Keyspace()
    for value in _values():
        ks.store(b"k", value)
        bits = _bit_string(value)
        assert bitmaps.bitcount(ks, [b"BITCOUNT", b"k"]) == bits.count("1")
        for start, end, in_bits in _ranges(len(value), rng):
            unit = [b"BIT" if in_bits else b"BYTE"]
            args = [b"BITCOUNT", b"k", str(start).encode(), str(end).encode(), *unit]
            span = _reference_range(start, end, len(value), in_bits)
            if start < 0 and end < 0 and start > end:
                span = None
            expected = 0 if span is None else bits[span[0] : span[1] + 1].count("1")
            assert bitmaps.bitcount(ks, args) == expected, (len(value), start, end, in_bits)


def test_bitpos_matches_a_bit_by_bit_search(small_chunks):
    rng = random.Random(8)
    ks = Keyspace()
    for value in _values():
        if not value:
            continue
        ks.store(b"k", value)
        bits = _bit_string(value)
        for bit in (0, 1):
            found = bits.find(str(bit))
            expected = found if found >= 0 else (len(bits) if bit == 0 else -1)
            assert bitmaps.bitpos(ks, [b"BITPOS", b"k", str(bit).encode()]) == expected
            for start, end, in_bits in _ranges(len(value), rng):
                unit = [b"BIT" if in_bits else b"BYTE"]
                args = [b"BITPOS", b"k", str(bit).encode(), str(start).encode(), str(end).encode(), *unit]
                span = _reference_range(start, end, len(value), in_bits)
                if span is None:
                    expected = -1
                else:
                    found = bits.find(str(bit), span[0], span[1] + 1)
                    expected = found
                assert bitmaps.bitpos(ks, args) == expected, (len(value), bit, start, end, in_bits)
            # With no end given, a 0 past the range is the first bit after the string.
            args = [b"BITPOS", b"k", str(bit).encode(), b"2"]
            span = _reference_range(2, -1, len(value), False)
            found = -1 if span is None else bits.find(str(bit), span[0])
            if found < 0 and bit == 0 and span is not None:
                found = len(bits)
            assert bitmaps.bitpos(ks, args) == found, (len(value), bit)
