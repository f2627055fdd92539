"""The worker's handler table: the command implementations a shard runs.

Each implementation is called as ``handler(keyspace, args)``, with ``args``
the whole command, name first.  Arity and keys were checked by the acceptor
against :mod:`shardkv.protocol.commands`; a handler checks only its own
options, and raises :class:`~shardkv.protocol.errors.CommandError` to reply
with an error.  It returns a reply value as :mod:`shardkv.protocol.resp`
describes.  A handler's ``reads`` attribute says whether the command is
read-only in the command table: its lookups then count as keyspace hits and
misses, as Redis counts the lookups of ``lookupKeyRead`` (see
``Keyspace.counting``); ``writes``, whether it is a write.

Each module of handlers lists its own in a plain mapping (``HANDLERS``, and
``BLOCKING`` for the blocking commands); nothing is registered by importing
it.  :func:`shardkv.worker.wiring.install` fills the tables below once, when
the worker starts, from the modules it lists, after checking them against
the command table; they are empty before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from shardkv.worker.keyspace import Keyspace

Handler = Callable[[Keyspace, list], object]

# A module's handlers, by the name in the command table (an internal verb
# by its :class:`~shardkv.protocol.wire.Verb`).
Handlers = Mapping[str | bytes, Handler]


class Blocking(NamedTuple):
    """A blocking command (BLPOP, XREAD...): ``form`` runs it and may return a
    :class:`~shardkv.worker.blocking.Wait` when nothing can serve it now
    (the command's handler is its non-blocking form, which replies
    ``Wait.deny`` then); ``kind`` is the type of value it pops (None when
    ``ready`` says instead whether a key can serve it, for ``__bwait``:
    ``ready(keyspace, arguments after the key count, seen)``, ``seen``
    each stream's last entry added as the ``__bwait`` came: see
    ``shardkv.worker.stream.added_now``)."""

    form: Handler
    kind: type | None
    ready: Callable[[Keyspace, list, dict], bool] | None = None


BlockingForms = Mapping[str | bytes, Blocking]

# By name as sent (lower and upper case): the handler, and the blocking form.
HANDLERS: dict[bytes, Handler] = {}
BLOCKING: dict[bytes, Handler] = {}
# By lower-case name: the type a blocking command pops, and its readiness test.
KINDS: dict[bytes, type | None] = {}
READY: dict[bytes, Callable[..., bool]] = {}


def find(name: bytes) -> Handler | None:
    handler = HANDLERS.get(name)
    if handler is None:
        handler = HANDLERS.get(name.lower())
    return handler


def find_blocking(name: bytes) -> Handler | None:
    fn = BLOCKING.get(name)
    if fn is None:
        fn = BLOCKING.get(name.lower())
    return fn
