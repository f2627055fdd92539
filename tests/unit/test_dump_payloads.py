"""DUMP payloads' CRC-64: the same results as Redis's crc64.c, and work
that does not grow a Python step per byte.

The reference below is the plain bit-at-a-time algorithm; the module's
version must agree with it on every input.  The cost checks count the
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
from shardkv.worker.commands.dump import crc64


def reference_crc64(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x95AC9329AC4BC9B5 if crc & 1 else crc >> 1
    return crc


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
