"""The acceptor's script cache: SHA1 -> body, and which shards know which.

Apart from :mod:`shardkv.acceptor.scripting` because CLIENT PAUSE (is an
EVALSHA a write?) and INFO (the cache's size) read it too.
"""

from __future__ import annotations


class ScriptCache:
    """The acceptor's script cache and what each shard knows of it."""

    def __init__(self) -> None:
        self.bodies: dict[bytes, bytes] = {}
        self.known: dict[int, set[bytes]] = {}
        # Scripts that once needed other shards: sha -> (every shard?, the
        # undeclared keys they used).
        self.escaping: dict[bytes, tuple[int, list]] = {}

    def knows(self, shard: int) -> set[bytes]:
        known = self.known.get(shard)
        if known is None:
            known = self.known[shard] = set()
        return known

    def flush(self) -> None:
        self.bodies.clear()
        self.known.clear()
        self.escaping.clear()


CACHE = ScriptCache()
