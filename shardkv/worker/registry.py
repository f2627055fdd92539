"""The worker's table of command implementations.

Each implementation is registered with :func:`command` under its Redis
name and called as ``handler(keyspace, args)``, with ``args`` the whole
command, name first.  Arity and keys were checked by the acceptor against
:mod:`shardkv.protocol.commands`; a handler checks only its own options, and raises
:class:`~shardkv.protocol.errors.CommandError` to reply with an error.  It returns
a reply value as :mod:`shardkv.protocol.resp` describes.

A handler's ``reads`` attribute says whether the command is read-only in
the command table: its lookups then count as keyspace hits and misses, as
Redis counts the lookups of ``lookupKeyRead`` (see ``Keyspace.counting``).
"""

from __future__ import annotations

from collections.abc import Callable

from shardkv.protocol.commands import COMMANDS
from shardkv.worker.keyspace import Keyspace

Handler = Callable[[Keyspace, list], object]

HANDLERS: dict[bytes, Handler] = {}


def command(*spelled: str | bytes) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of ``names`` (an
    internal verb is given as its :class:`~shardkv.protocol.wire.Verb`)."""
    names = [name.decode() if isinstance(name, bytes) else name for name in spelled]

    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name.encode()] = fn
            HANDLERS[name.upper().encode()] = fn
        fn.reads = any(  # type: ignore[attr-defined]
            name in COMMANDS and "readonly" in COMMANDS[name].flags for name in names
        )
        fn.writes = any(  # type: ignore[attr-defined]
            name in COMMANDS and "write" in COMMANDS[name].flags for name in names
        )
        return fn

    return register


def find(name: bytes) -> Handler | None:
    handler = HANDLERS.get(name)
    if handler is None:
        handler = HANDLERS.get(name.lower())
    return handler
