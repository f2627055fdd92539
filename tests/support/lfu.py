"""The LFU clock that the access-clock tests read.

Under ``lfu-log-factor 0`` and ``lfu-decay-time 0`` each access adds one
to a key's OBJECT FREQ and nothing takes it away, so a test can count the
accesses an operation made on each key and compare them with
redis-server's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.support.resp import RespClient

EVERY_ACCESS = ("maxmemory-policy", "allkeys-lfu", "lfu-log-factor", "0", "lfu-decay-time", "0")
# The servers' defaults, put back after each test.
DEFAULTS = ("maxmemory-policy", "noeviction", "lfu-log-factor", "10", "lfu-decay-time", "1")


@contextlib.contextmanager
def counting_accesses(c: RespClient, on: bool = True) -> Iterator[RespClient]:
    """``c``'s server with the EVERY_ACCESS clock (if ``on``; else as it
    is) while the block runs, and DEFAULTS after it, either way."""
    if on:
        c.command("CONFIG", "SET", *EVERY_ACCESS)
    try:
        yield c
    finally:
        c.command("CONFIG", "SET", *DEFAULTS)
