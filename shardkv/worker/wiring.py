"""How the worker is put together: every command handler, bound in one place.

Each module of handlers lists its own in a plain mapping, ``HANDLERS``
(name -> handler) and, for the blocking commands, ``BLOCKING`` (name ->
:class:`~shardkv.worker.handlers.Blocking`); importing a module registers
nothing.  :func:`build` reads those mappings from the modules listed in
:data:`MODULES`, in that order, and :func:`check` refuses, at start-up:

- a name with two handlers (in one module or two);
- a row of the command table that shards run (route ``shard`` or ``all``)
  without a handler;
- a handler with neither a row in the command table (a ``local`` row may
  have one: the acceptor sends some of them on, EVAL to the script's shard,
  FUNCTION from an AOF) nor an internal verb the worker handles
  (:data:`~shardkv.protocol.wire.Verb.HANDLED`), and a handled verb
  without a handler.

:func:`install` fills the lookup tables of :mod:`shardkv.worker.handlers`,
which the shard, the script engine and the blocking code read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType

from shardkv.protocol.commands import COMMANDS, Command
from shardkv.protocol.wire import Verb
from shardkv.runtime import faultpoints
from shardkv.worker import blocking, events, eviction, functions, handlers, scripting
from shardkv.worker.commands import (
    bitmaps,
    dump,
    geo,
    hashes,
    hyperloglog,
    keys,
    lists,
    memusage,
    persistence,
    server,
    sets,
    sort,
    streams,
    strings,
    zsets,
)
from shardkv.worker.handlers import Blocking, Handler

# Every module with handlers: the types, as Redis groups its commands, then
# the server's, the scripts', and the worker's own parts of the acceptor's.
MODULES: tuple[ModuleType, ...] = (
    strings,
    bitmaps,
    keys,
    dump,
    sort,
    hashes,
    lists,
    sets,
    zsets,
    geo,
    hyperloglog,
    streams,
    server,
    memusage,
    persistence,
    scripting,
    functions,
    blocking,
    events,
    eviction,
)


class WiringError(RuntimeError):
    """The handlers do not match the command table."""


def _name(spelled: str | bytes) -> str:
    return spelled.decode() if isinstance(spelled, bytes) else spelled


def handlers_of(modules: tuple[ModuleType, ...] = MODULES) -> dict[str, Handler]:
    """Every handler of ``modules`` by name, a blocking command's as its
    non-blocking form (see :func:`~shardkv.worker.blocking.now_or_never`)."""
    found: dict[str, Handler] = {}
    twice: list[str] = []
    forms: dict[int, Handler] = {}  # one non-blocking form per blocking form
    for module in modules:
        entries: list[tuple[str | bytes, Handler]] = list(getattr(module, "HANDLERS", {}).items())
        for spelled, entry in getattr(module, "BLOCKING", {}).items():
            form = forms.get(id(entry.form))
            if form is None:
                form = forms[id(entry.form)] = blocking.now_or_never(entry.form)
            entries.append((spelled, form))
        for spelled, handler in entries:
            name = _name(spelled)
            if name in found:
                twice.append(name)
            found[name] = handler
    if twice:
        raise WiringError("two handlers: " + ", ".join(sorted(set(twice))))
    return found


def blocking_of(modules: tuple[ModuleType, ...] = MODULES) -> dict[str, Blocking]:
    """Every blocking command of ``modules`` by name."""
    found: dict[str, Blocking] = {}
    for module in modules:
        for spelled, entry in getattr(module, "BLOCKING", {}).items():
            found[_name(spelled)] = entry
    return found


def check(
    found: Mapping[str, object],
    table: Mapping[str, Command] = COMMANDS,
    verbs: frozenset[bytes] = Verb.HANDLED,
) -> None:
    """Raise :class:`WiringError` unless ``found`` (handlers by name) covers
    exactly the rows that shards run and the handled verbs (see the module
    docstring)."""
    handled = {_name(verb) for verb in verbs}
    missing = sorted(
        [name for name, cmd in table.items() if cmd.route != "local" and name not in found]
        + [name for name in handled if name not in found]
    )
    if missing:
        raise WiringError("no handler: " + ", ".join(missing))
    stray = sorted(name for name in found if name not in table and name not in handled)
    if stray:
        raise WiringError("no row in the command table and no handled verb: " + ", ".join(stray))


@dataclass
class Wired:
    """The tables :func:`install` fills, as :mod:`shardkv.worker.handlers` names them."""

    handlers: dict[bytes, Handler] = field(default_factory=dict)
    blocking: dict[bytes, Handler] = field(default_factory=dict)
    kinds: dict[bytes, type | None] = field(default_factory=dict)
    ready: dict[bytes, object] = field(default_factory=dict)


def build(modules: tuple[ModuleType, ...] = MODULES, table: Mapping[str, Command] = COMMANDS) -> Wired:
    """The checked tables of ``modules``, each name spelled in lower and in
    upper case (as clients and the acceptor send them), and each handler
    told whether its command reads or writes."""
    found = handlers_of(modules)
    check(found, table)
    wired = Wired()
    names_of: dict[int, list[str]] = {}
    for name, handler in found.items():
        names_of.setdefault(id(handler), []).append(name)
        for spelling in (name.encode(), name.upper().encode()):
            wired.handlers[spelling] = handler
    for handler in found.values():
        names = names_of[id(handler)]
        # A script's command (EVAL_RO, FCALL_RO...: group "scripting") is
        # read-only, but looks no key up itself: each command it calls
        # counts its own lookups, as in Redis, where only lookupKeyRead
        # counts (counted for it, the undo a write of it keeps on a shard
        # of several counted a hit or a miss).
        handler.reads = any(  # type: ignore[attr-defined]
            n in table and "readonly" in table[n].flags and table[n].group != "scripting" for n in names
        )
        handler.writes = any(n in table and "write" in table[n].flags for n in names)  # type: ignore[attr-defined]
    for name, entry in blocking_of(modules).items():
        entry.form.reads = found[name].reads  # type: ignore[attr-defined]
        entry.form.writes = found[name].writes  # type: ignore[attr-defined]
        for spelling in (name.encode(), name.upper().encode()):
            wired.blocking[spelling] = entry.form
            wired.kinds[spelling] = entry.kind
        if entry.ready is not None:
            wired.ready[name.encode()] = entry.ready
    return wired


def install(modules: tuple[ModuleType, ...] = MODULES) -> Wired:
    """Build the tables and put them where the worker looks them up."""
    wired = build(modules)
    for mine, theirs in (
        (wired.handlers, handlers.HANDLERS),
        (wired.blocking, handlers.BLOCKING),
        (wired.kinds, handlers.KINDS),
        (wired.ready, handlers.READY),
    ):
        theirs.clear()
        theirs.update(mine)  # type: ignore[arg-type]
    if faultpoints.ACTIVE:  # the fault-injection tests only
        faultpoints.faulty_handlers(handlers.HANDLERS, (b"append", b"APPEND"))
    return wired
