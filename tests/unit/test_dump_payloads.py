"""DUMP payloads' CRC-64 and LZF: the same results as Redis's crc64.c and
lzf_d.c, and work that does not grow a Python step per byte.

The references below are the plain algorithms (CRC bit by bit, LZF byte
by byte); the module's versions must agree with them on every input.  The cost checks count the
Python lines run in dump.py (a count, not a time): a byte-at-a-time loop
runs at least one line per byte.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from types import FrameType

import pytest

from shardkv.worker.commands import dump
from shardkv.worker.commands.dump import BadData, crc64, lzf_decompress


def reference_crc64(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x95AC9329AC4BC9B5 if crc & 1 else crc >> 1
    return crc


def reference_lzf(data: bytes, size: int) -> bytes:
    """lzf_decompress as lzf_d.c's loop does it, a byte at a time."""
    out = bytearray()
    i = 0
    while i < len(data):
        ctrl = data[i]
        i += 1
        if ctrl < 32:
            if i + ctrl + 1 > len(data) or len(out) + ctrl + 1 > size:
                raise BadData("literal")
            out += data[i : i + ctrl + 1]
            i += ctrl + 1
            continue
        length = ctrl >> 5
        if length == 7:
            length += data[i]
            i += 1
        ref = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
        i += 1
        if ref < 0 or len(out) + length + 2 > size:
            raise BadData("reference")
        for k in range(length + 2):
            out.append(out[ref + k])
    if len(out) != size:
        raise BadData("size")
    return bytes(out)


def lines_run(call: Callable[[], object]) -> int:
    """How many lines of dump.py ``call`` runs."""
    count = 0

    def local(frame: FrameType, event: str, arg: object) -> object:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> object:
        return local if frame.f_code.co_filename == dump.__file__ else None

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        call()
    finally:
        sys.settrace(previous)
    return count


# -- CRC-64 -----------------------------------------------------------------------


def test_crc64_check_value_of_redis_crc64_test():
    assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA
    assert crc64(b"") == 0


SIZES = [
    1,
    8,
    1000,
    1023,
    1024,
    1025,
    2047,
    4096,
    5000,
    65535,
    65536,
    70001,
]  # around the small path and lanes
SIZES += [(1 << 20) - 1, 1 << 20, (1 << 20) + 3]  # around one chunk


@pytest.mark.parametrize("size", SIZES)
def test_crc64_agrees_with_the_bitwise_reference(size):
    data = random.Random(size).randbytes(size)
    expected = reference_crc64(data) if size < 100_000 else dump._crc64_bytewise(data)
    assert crc64(data) == expected


def test_crc64_over_many_chunks_and_a_short_head():
    """3 MB and a bit: a padded first chunk, then whole 1 MB chunks."""
    rng = random.Random(5)
    data = rng.randbytes(3 << 20) + b"\x00" * 4000 + b"\xff" * 123
    assert crc64(data) == dump._crc64_bytewise(data)
    assert crc64(b"\x00" * 5000 + data) == crc64(data)  # leading zeros change nothing, as in Redis


def test_crc64_of_a_large_input_runs_few_python_lines():
    data = random.Random(1).randbytes(256 << 10)
    assert lines_run(lambda: crc64(data)) < 10_000  # a byte-at-a-time loop runs 500,000 and more


# -- LZF -------------------------------------------------------------------------------


def test_lzf_overlapping_references():
    # "a", then a reference 1 back of length 9: nine more "a"s
    assert lzf_decompress(b"\x00a" + bytes((7 << 5, 0, 0)), 10) == b"a" * 10
    # "abc", then a reference 3 back of length 10: the pattern repeats
    assert lzf_decompress(b"\x02abc" + bytes((7 << 5, 1, 2)), 13) == b"abc" * 4 + b"a"
    # the longest reference (7 + 255 + 2 bytes), distance 2
    assert lzf_decompress(b"\x01xy" + bytes((7 << 5, 255, 1)), 266) == (b"xy" * 133)
    # a reference that does not overlap: distance 5, length 3
    assert lzf_decompress(b"\x04hello" + bytes((1 << 5, 4)), 8) == b"hellohel"


def random_lzf(rng: random.Random) -> tuple[bytes, int]:
    """A valid LZF stream of literals and references (often overlapping)."""
    stream = bytearray()
    size = 0
    for _ in range(rng.randint(1, 60)):
        if size == 0 or rng.random() < 0.3:
            run = rng.randint(1, 32)
            stream += bytes((run - 1,)) + rng.randbytes(run)
            size += run
            continue
        distance = rng.randint(1, min(size, 8192)) if rng.random() < 0.5 else rng.randint(1, min(size, 4))
        length = rng.randint(3, 264)
        code = length - 2
        if code < 7:
            stream += bytes((code << 5 | (distance - 1) >> 8, (distance - 1) & 0xFF))
        else:
            stream += bytes((7 << 5 | (distance - 1) >> 8, code - 7, (distance - 1) & 0xFF))
        size += length
    return bytes(stream), size


def test_lzf_agrees_with_the_bytewise_reference():
    rng = random.Random(11)
    for _ in range(400):
        stream, size = random_lzf(rng)
        assert lzf_decompress(stream, size) == reference_lzf(stream, size)


def test_lzf_damage_fails_as_the_reference_does():
    rng = random.Random(12)
    for _ in range(400):
        stream, size = random_lzf(rng)
        damaged = bytearray(stream)
        damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        declared = size + rng.choice((0, 0, -1, 1, -300))
        outcomes = []
        for decoder in (lzf_decompress, reference_lzf):
            try:
                outcomes.append(decoder(bytes(damaged), declared))
            except (BadData, IndexError):
                outcomes.append(None)
        assert outcomes[0] == outcomes[1]


def test_lzf_never_writes_past_the_declared_size():
    stream = b"\x00a" + bytes((7 << 5, 255, 0)) * 1000  # would make 264,001 bytes
    with pytest.raises(BadData):
        lzf_decompress(stream, 300)
    assert lines_run(lambda: pytest.raises(BadData, lzf_decompress, stream, 300)) < 100


def test_lzf_of_a_long_run_runs_few_python_lines():
    stream = b"\x00a" + bytes((7 << 5, 255, 0)) * 1000
    assert lzf_decompress(stream, 264_001) == b"a" * 264_001
    assert lines_run(lambda: lzf_decompress(stream, 264_001)) < 30_000  # byte by byte: 528,000 and more
