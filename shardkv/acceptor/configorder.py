"""Several acceptors: every process ends with the CONFIG SET ordered last.

With one acceptor a CONFIG SET is applied in the one order of its loop.
With several (K > 1), two CONFIG SETs of one parameter through two
acceptors at once must leave every acceptor and every worker with the same
value.  The order is the supervisor's: it numbers each acceptor's
``config`` line as it reads it (1, 2, ...), passes it on to the other
acceptors as ``config <n> <json>`` and tells the asker ``ordered <n>``, on
the control socket, in its order with everything else it sends there.

* An acceptor applies its own CONFIG SET at once (so its client reads its
  write), and remembers it until its ``ordered`` comes (:func:`sent`,
  :func:`ordered`).  Another acceptor's change that arrives meanwhile was
  numbered before its own, so the parameters its own change sets are not
  applied (:func:`from_elsewhere`): its own, ordered later, stands.  One
  that arrives after is applied.  So each acceptor goes through the same
  values in the same order, and ends with the last one.
* A worker hears a CONFIG SET from the asker's pipe alone, and the pipes of
  two acceptors race.  At K > 1 every ``__config`` carries a number
  (:func:`stamp`), and a worker applies a parameter only if it has not
  applied a higher number for it (see :mod:`shardkv.worker.settings`).  The
  asker sends its change at once with the last number it knew (which it
  is newer than), and again, with its own number, when ``ordered`` comes
  (behind its steps still waiting for their holds, so that it passes
  neither the commands before the CONFIG SET nor its first ``__config``,
  and without the parameters a later change of its own sets again, which
  it would undo meanwhile: a notify-keyspace-events changed twice in one
  EXEC notifies the writes after it as the second says);
  a worker that first heard a change numbered higher keeps that one, and
  the last numbered change reaches every worker.  An attached worker gets
  every setting stamped with the last number its acceptor knew.
* ``requirepass`` goes in the ACL changes' one order instead (see
  :func:`shardkv.acceptor.users.requirepass_in_one_order`), which sets the
  parameter with the default user's password; the config line's
  ``requirepass`` is not applied by the others.

With one acceptor nothing here runs: no number, no ``ordered`` line.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from shardkv.protocol.resp import encode_command
from shardkv.protocol.wire import CONFIG_NUMBER, entry_header

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

# Parameters the config line never sets in another acceptor (they go in
# another one order).
_ELSEWHERE = frozenset({"requirepass"})


class Own:
    """One of this acceptor's CONFIG SETs, not yet numbered: the parameters
    it set and, once known, the ``__config`` it sent the workers."""

    __slots__ = ("names", "worker_args")

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.worker_args: list[bytes] | None = None


class Order:
    """An acceptor's place in the supervisor's order of CONFIG SETs: the
    last number it heard, and its own changes still to be numbered."""

    __slots__ = ("last", "own")

    def __init__(self, last: int = 0) -> None:
        self.last = last
        self.own: deque[Own] = deque()


def sent(server: Acceptor, changes: dict[str, Any]) -> None:
    """K > 1: this acceptor's config line for ``changes`` went to the supervisor."""
    server.config_order.own.append(Own(set(changes)))


def sent_workers(server: Acceptor, args: list[bytes]) -> None:
    """K > 1: the ``__config`` (unstamped) the last CONFIG SET sent the
    workers, to be sent again with its number."""
    own = server.config_order.own
    if own:
        own[-1].worker_args = args


def stamp(server: Acceptor, args: list[bytes]) -> list[bytes]:
    """``__config``'s arguments as the workers get them: with the last
    number this acceptor knows at K > 1, unchanged with one acceptor."""
    if server.bus is None:
        return args
    return [args[0], CONFIG_NUMBER, b"%d" % server.config_order.last, *args[1:]]


def ordered(server: Acceptor, number: int) -> None:
    """``ordered <n>``: this acceptor's oldest config line got number ``n``;
    every worker gets its values again, with that number."""
    order = server.config_order
    order.last = max(order.last, number)
    if not order.own:
        return
    own = order.own.popleft()
    if own.worker_args is None:
        return
    # Not what a later change of this acceptor's sets again: the workers
    # have that one already, and it comes again with its higher number;
    # this one again would undo it there meanwhile (a write pipelined
    # after both CONFIG SETs of notify-keyspace-events in one EXEC would
    # notify as the first said).
    later: set[str] = set().union(*(o.names for o in order.own))
    verb, pairs = own.worker_args[0], own.worker_args[1:]
    kept = [
        arg for i in range(0, len(pairs), 2) if pairs[i].decode() not in later for arg in pairs[i : i + 2]
    ]
    if not kept:
        return
    body = encode_command([verb, CONFIG_NUMBER, b"%d" % number, *kept])

    def again() -> None:
        for link in server.links:
            link.send(entry_header(0), body, _IGNORE)

    # Behind the steps still waiting for their holds (the CONFIG SET's own
    # among them: one inside an EXEC, say), so as not to pass the
    # commands sent before it, and the CONFIG SET's first ``__config``,
    # which the number would make the workers ignore (see Holds.after_queued).
    holds = server.holds
    if holds is None:
        again()
    else:
        holds.after_queued(again)


def from_elsewhere(server: Acceptor, number: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Another acceptor's CONFIG SET, number ``number``: what of it to apply
    here (none of what this acceptor's own CONFIG SETs still to be numbered
    set: those come after it)."""
    order = server.config_order
    order.last = max(order.last, number)
    mine: set[str] = set().union(*(own.names for own in order.own))
    return {name: value for name, value in changes.items() if name not in mine and name not in _ELSEWHERE}


class _Ignore:
    """A sink for a reply nobody waits for."""

    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()
