"""Named steps of the cross-shard commit protocol (and of holds) where a test can hold a process.

With ``SHARDKV_FAULT_FILE`` set in the environment, a process that reaches
a fault point reads that file, and stops itself (SIGSTOP) if the file
names the point, alone or as ``point@shard``.  The fault-injection tests
(``tests/system/test_crash_atomic.py``, ``tests/system/faults.py``) then kill a
process of their choice and let the held one go on, so every failure case
of :mod:`shardkv.acceptor.crossshard` is reached exactly.  Without the variable
(always, outside those tests) a fault point is one test of a constant.

Besides, with the variable set, a bug is simulated wherever the bytes
:data:`MARKER` pass (:func:`faulty_client`, :func:`faulty_handlers`):
the acceptor raises while writing a reply or message that holds them to
a client, in ECHO of them, and in building the reply of a cross-shard
operation with them among its arguments (:func:`raise_if_marked`); a worker raises in APPEND of them, before
changing anything (``tests/system/test_faults_isolated.py``); with several
acceptors, an acceptor raises in answering another's PUBSUB or CLIENT
KILL question whose arguments hold them (:func:`faulty_bus_handlers`,
``tests/system/test_bus_faults.py``).

Points: ``parked`` (a shard has answered ``__park``/``__prepare`` and
parked), ``ran`` (the executor has run the commands and logged its prepare
record, and not answered yet), ``prepared`` (a shard has logged its prepare
record and not answered ``Prepare`` yet), ``decided`` (a shard has received ``Decide``
and applied nothing yet), ``finished`` (it has answered ``Finished``),
``committed`` (the acceptor has recorded a commit and told no shard),
``tried`` (with several acceptors: every shard of an acceptor's step has
granted its try, see :mod:`shardkv.acceptor.holds`, and nothing of the
step has left), ``loading`` (a worker has found the files it loads, and
loaded none yet), ``loaded`` (a worker has loaded its shard and not said
so to the supervisor yet): at both, the acceptors answer -LOADING;
``verdict`` (a shard that popped for a client blocked across shards has
its taking verdict, and has logged nothing of the pop yet); ``shutdown``
(a worker has taken a stop's ``__shutdown`` and done nothing of it yet:
a frozen worker that holds a stop, at any number of acceptors);
``shared`` (with several acceptors: a worker has sent a batch's events
to the other acceptors, ``O`` frames, and not its replies yet).
"""

from __future__ import annotations

import functools
import os
import signal
from collections.abc import Callable, MutableMapping
from typing import Any

_FILE = os.environ.get("SHARDKV_FAULT_FILE") or None
ACTIVE = _FILE is not None


def hold(point: str, shard: int = -1) -> None:
    """Stop this process here if the fault file names ``point``."""
    if _FILE is None:
        return
    try:
        with open(_FILE) as f:
            named = f.read().split()
    except OSError:
        return
    if point in named or f"{point}@{shard}" in named:
        os.kill(os.getpid(), signal.SIGSTOP)


# The bytes that make the acceptor or a worker raise (with the variable set).
MARKER = b"fault:raise"


class InjectedFault(RuntimeError):
    """The simulated bug."""


def faulty_client(cls: type) -> type:
    """The acceptor's client class, made to raise in ``flush`` when a
    reply or message it is about to write holds :data:`MARKER`: a bug in
    the path that writes to one client."""

    class FaultyClient(cls):
        def flush(self) -> None:
            for item in self.pending:
                data = item if type(item) is bytes else item.data
                if data is None:
                    break
                if MARKER in data:
                    raise InjectedFault("writing a reply that holds the fault marker")
            super().flush()

    FaultyClient.__name__ = FaultyClient.__qualname__ = "Faulty" + cls.__name__
    return FaultyClient


def raise_if_marked(args: list[bytes], doing: str) -> None:
    """Raise :class:`InjectedFault` if one of ``args`` is :data:`MARKER`:
    a bug while ``doing`` (the acceptor building the reply of a
    cross-shard operation with the marker among its arguments)."""
    if MARKER in args:
        raise InjectedFault(doing)


def faulty_handlers(handlers: MutableMapping[Any, Callable[..., Any]], names: tuple) -> None:
    """Make the handlers of ``names`` raise, before doing anything, when
    their last argument is :data:`MARKER`: a bug in a command's handler
    (a worker's APPEND, the acceptor's ECHO)."""
    for name in names:
        handler = handlers.get(name)
        if handler is None:
            continue

        @functools.wraps(handler)  # keeps a worker handler's ``reads`` and ``writes``
        def raising(target: Any, args: list, _handler: Callable[..., Any] = handler) -> Any:
            if args[-1] == MARKER:
                raise InjectedFault("a command whose last argument is the fault marker")
            return _handler(target, args)

        handlers[name] = raising


def faulty_bus_handlers(handlers: MutableMapping[Any, Callable[..., Any]], kinds: tuple) -> None:
    """Make the acceptor's bus handlers of ``kinds`` (questions from the
    other acceptors) raise, before doing anything, when one of their
    arguments is :data:`MARKER`: a bug on the answering side."""
    for kind in kinds:
        handler = handlers.get(kind)
        if handler is None:
            continue

        @functools.wraps(handler)
        def raising(server: Any, origin: int, args: list, _handler: Callable[..., Any] = handler) -> Any:
            if MARKER in args:
                raise InjectedFault("a question whose argument is the fault marker")
            return _handler(server, origin, args)

        handlers[kind] = raising
