"""The settings a worker needs, kept current by the acceptor.

The acceptor sends ``__config name value ...`` with every setting when it
attaches a worker, and again after each CONFIG SET, so a worker started
with stale values (after a restart) catches up at once.  A shard's
:class:`Runtime` is its keyspace's ``runtime``, where the command handlers
read it (see :class:`~shardkv.worker.keyspace.Keyspace`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shardkv.worker.keyspace import Keyspace


class Runtime:
    """One shard's settings: the few read on every call as attributes, and
    every setting as text in :attr:`extra`."""

    def __init__(self) -> None:
        self.hz = 10
        self.proto_max_bulk_len = 512 * 1024 * 1024
        self.maxmemory = 0
        self.maxmemory_policy = "noeviction"
        self.extra: dict[str, str] = {}  # every setting as text, for other modules
        # K > 1: each setting's number in the acceptors' one order of CONFIG
        # SETs, as last set (see shardkv.acceptor.configorder).
        self.numbers: dict[str, int] = {}
        # Called with the keyspace after each __config, in order: what acts
        # on a setting when it changes (eviction applies maxmemory...).  The
        # shard lists them (see shardkv.worker.shard.Shard).
        self.hooks: list[Callable[[Keyspace], None]] = []

    def set(self, name: str, value: str) -> None:
        if name == "hz":
            self.hz = max(1, min(int(value), 500))  # Redis clamps hz to 1..500
        elif name == "proto-max-bulk-len":
            self.proto_max_bulk_len = int(value)
        elif name == "maxmemory":
            self.maxmemory = int(value)
        elif name == "maxmemory-policy":
            self.maxmemory_policy = value
        self.extra[name] = value
