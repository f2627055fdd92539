"""Garbage-collector settings for the server processes.

Each command allocates a few short-lived containers (its argument list, a
reply slot); with CPython's default threshold of 700 they start a young
collection every few hundred commands.  A process calls :func:`settle` once
it has started: what start-up built (modules, the command table, a loaded
keyspace) moves to the permanent generation, which collections never
traverse, and young collections come less often.  Reference counting
still frees almost everything at once; only cycles wait for a collection.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # allocations between young collections (default 700)


def settle() -> None:
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
