"""Reads of GET- or SET-shaped commands alone but for one odd command get,
byte for byte, what redis-server answers, and close when it closes.

The acceptor's parser encodes such a read in one go when every command has
the first one's shape, and checks the encoding against the read's bytes
(that check is what proves the read was canonical RESP).  Each read here
(tests/support/oddreads.py) has one command that differs, however slightly:
a bulk followed by two bytes other than CRLF, an inline command, ``+x`` or
``:1`` or an array as an argument, a null or negative or ``0``-padded
length, ``get`` in lower case, SET with options, arguments either side of
the encoding tables' 1023 bytes, ``*0``, a protocol error mid-read.  Some
reads come in two parts, cut at a random place.  Each read's keys are its
own, and a last ECHO marks the end of its replies where no protocol error
closed the connection.
"""

from __future__ import annotations

import concurrent.futures
import random
import socket
import time

import pytest

from tests.support.oddreads import odd_read
from tests.support.rawsocket import read_until_quiet
from tests.support.resp import encode_command

SEEDS = range(120)


def _exchange(port: int, seed: int) -> tuple[bytes, bool]:
    _, data = odd_read(seed, b"s%d:" % seed)
    marker = b"end-of-%d" % seed
    data += encode_command(b"ECHO", marker)
    rng = random.Random(-seed)
    cut = rng.randrange(1, len(data)) if seed % 2 else len(data)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        # Each seed in database seed % 16, the seeds of one database one
        # after another (_all): the reads share keys (``k``, ``k0``, ...).
        s.sendall(encode_command(b"SELECT", b"%d" % (seed % 16)))
        assert s.recv(5) == b"+OK\r\n"
        try:
            s.sendall(data[:cut])
            if cut < len(data):
                time.sleep(0.05)  # two reads, most likely
                s.sendall(data[cut:])
        except (BrokenPipeError, ConnectionResetError):
            pass
        out, closed = read_until_quiet(s, idle=0.2, until=marker)
    return out, closed


def _all(port: int) -> list[tuple[bytes, bool]]:
    def one_database(db: int) -> list[tuple[int, tuple[bytes, bool]]]:
        return [(seed, _exchange(port, seed)) for seed in SEEDS if seed % 16 == db]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        done = dict(pair for part in pool.map(one_database, range(16)) for pair in part)
    return [done[seed] for seed in SEEDS]


@pytest.fixture(scope="module")
def answers(redis_and_shardkv):
    real, ours = redis_and_shardkv
    return _all(real.port), _all(ours.port)


@pytest.mark.parametrize("seed", SEEDS)
def test_a_read_of_one_shape_but_one_command_as_redis_reads_it(answers, seed):
    real, ours = answers
    assert ours[seed] == real[seed]
