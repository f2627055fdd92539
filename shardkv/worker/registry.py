"""The worker's start-up: its command handlers, wired once.

Importing this module calls :func:`shardkv.worker.wiring.install`, which
checks every handler against the command table and fills the lookup tables
of :mod:`shardkv.worker.handlers` (a mismatch stops the worker here, before
it runs anything).  It is the one place that does: the shard
(:mod:`shardkv.worker.shard`) imports :func:`find` from here, so a shard
never runs on empty tables.  Nothing else is registered by an import.
"""

from __future__ import annotations

from shardkv.worker import wiring
from shardkv.worker.handlers import HANDLERS, Handler, find

WIRED = wiring.install()

__all__ = ["HANDLERS", "WIRED", "Handler", "find"]
