"""maxmemory over the whole server: each shard's part, and moving it.

Redis compares ``used_memory`` with ``maxmemory`` and, over it, evicts from
the whole keyspace before the next command.  In shardkv every worker holds
a part of the keyspace and evicts by itself (:mod:`shardkv.worker.eviction`)
against its own *limit*; this module keeps the limits adding up to
maxmemory as INFO counts it (:func:`shardkv.acceptor.info.used_memory`:
each shard's figure, a constant and the estimated size of its data, and
each acceptor's constant; no resident size, so the same commands give the
same figures):

* **Sharing out.**  When maxmemory or its policy is set (and when a worker's
  pipe is attached), the acceptor asks every shard for its memory figure
  (``__memory figure``) and gives each ``figure + room * its slots / 16384``
  (``__memory limit``), where ``room`` is maxmemory less the figures and the
  acceptors' part: each shard may grow by its part of what is left.  Until
  then a shard's limit is its slots' part of maxmemory.
* **Moving room.**  A command that finds its shard over its limit with
  nothing it may evict there (a ``volatile-*`` policy and no key with a TTL
  on that shard, say) makes the shard note a ``STARVED`` event (``key``:
  ``b"<first slot> <bytes over>"``).  The acceptor then takes the room the
  other shards have (``__memory give n 0``, all at once), and if that is
  not enough, asks them one by one to evict for the rest (``__memory give
  n 1``: an eviction there has its ``evicted`` event and invalidations),
  and hands what it got to the starved shard (``__memory take n``).  The
  reply of the command waits for that, behind a placeholder in its client's
  replies, so the client hears of the keys evicted for it first, as Redis
  evicts before a command runs.  One move at a time per shard; after a move
  that found nothing, a starved shard is left alone for a second.

With several acceptors, the acceptor whose client ran CONFIG SET shares
out, on its own pipes, behind the ``__config`` it sent them (so every
shard has the new maxmemory when it is asked for its figure, and the
figures are those that acceptor's INFO adds up); a worker attached again
is shared out by acceptor 0.  A starved shard's room is moved by the
acceptor whose command found it starved.

Differences from Redis: the eviction happens after the command ran on its
shard (a ``denyoom`` command has been refused with OOM by then; the next one
finds the room), and an acceptor's own memory (client buffers, say) is
not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from shardkv.acceptor import notifications
from shardkv.acceptor.info import acceptors_memory
from shardkv.acceptor.replies import Slot, origin_of
from shardkv.acceptor.shardlink import Sink
from shardkv.protocol import bus, wire
from shardkv.protocol.resp import encode_command
from shardkv.protocol.router import slot_range
from shardkv.protocol.wire import Verb, entry_header

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

STARVED = wire.EVENT_STARVED
QUIET_S = 1.0  # after a move that found nothing, how long a starved shard is left alone


class _State:
    moving: set[int] = set()  # shards a move is under way for
    quiet: dict[int, float] = {}  # shard -> until when its starvation is left alone


STATE = _State()


def _maxmemory(server: Acceptor) -> int:
    try:
        return int(server.config.get("maxmemory", 0) or 0)
    except (TypeError, ValueError):
        return 0


def events_mask(server: Acceptor) -> int:
    """STARVED while maxmemory is set (see :mod:`shardkv.acceptor.notifications`)."""
    return STARVED if _maxmemory(server) else 0


def _send(server: Acceptor, shard: int, args: list[bytes], sink: Sink) -> None:
    server.links[shard].send(entry_header(0), encode_command(args), sink)


def _to_every_shard(server: Acceptor, args: list[list[bytes]], sinks: list[Sink]) -> None:
    """``args[i]`` to shard ``i``, as one step: with several acceptors it
    goes under holds (shardkv.acceptor.holds), in this acceptor's order of
    steps, so it comes after the ``__config`` of the CONFIG SET before it
    (itself a step over every shard) and the figures are of one moment."""
    holds = server.holds
    if holds is not None:
        holds.begin()
    try:
        for shard, (command, sink) in enumerate(zip(args, sinks, strict=True)):
            _send(server, shard, command, sink)
    finally:
        if holds is not None:
            holds.end()


def _number(body: bytes) -> int:
    """A shard's integer reply (0 for anything else: an error, a shard gone)."""
    if body[:1] == b":":
        try:
            return int(body[1:-2])
        except ValueError:
            return 0
    return 0


# -- sharing out ------------------------------------------------------------------


def on_config(server: Acceptor, changes: dict) -> None:
    if "maxmemory" in changes or "maxmemory-policy" in changes:
        notifications.update_mask(server)
        STATE.quiet.clear()
        if server.loading:
            return  # no shard to share out to yet: on_attach does, once they are attached
        client = server.config_client
        if client is None:
            return  # another acceptor's CONFIG SET: that acceptor shares out
        # CONFIG SET replies once every shard has its limit (a placeholder
        # before its reply, outside EXEC, whose replies are one array).
        barrier = None
        if not client.state.in_exec:
            barrier = Slot(client)
            client.pending.append(barrier)
        # After the __config that CONFIG SET sends next, on every pipe.
        server.loop.call_soon(share_out, server, barrier)  # type: ignore[union-attr]


def on_attach(server: Acceptor, link: object) -> None:
    if _maxmemory(server) and not server.index:  # acceptor 0 (see the module docstring)
        server.loop.call_soon(share_out, server)  # type: ignore[union-attr]


def share_out(server: Acceptor, barrier: Slot | None = None) -> None:
    """Ask every shard for its figure, then give each its limit; then
    deliver ``barrier``, if any."""
    if not _maxmemory(server) or not server.links:
        if barrier is not None:  # maxmemory 0: nobody is out of memory now
            _settle_oom(server, False, barrier)
        return
    n = len(server.links)
    figures = _Figures(server, n, barrier)
    _to_every_shard(server, [[Verb.MEMORY, b"figure"]] * n, [figures.sink(shard) for shard in range(n)])


class _Figures:
    def __init__(self, server: Acceptor, n: int, barrier: Slot | None) -> None:
        self.server = server
        self.figures: list[int] = [0] * n
        self.left = n
        self.barrier = barrier

    def sink(self, shard: int) -> _Figure:
        return _Figure(self, shard)

    def done(self) -> None:
        server = self.server
        maxmemory = _maxmemory(server)
        n = len(self.figures)
        if not maxmemory or n != len(server.links):
            if self.barrier is not None:
                self.barrier.deliver(b"")
            return
        room = maxmemory - acceptors_memory(server) - sum(self.figures)
        limits = [
            max(figure + room * len(slot_range(shard, n)) // 16384, 1)
            for shard, figure in enumerate(self.figures)
        ]
        _to_every_shard(
            server,
            [[Verb.MEMORY, b"limit", b"%d" % limit] for limit in limits],
            [_Limits(server, n, self.barrier)] * n,
        )


class _Limits:
    """The shards' answers to ``__memory limit`` (1: out of memory, as
    ``__oom``): the acceptors' OOM state (see Dispatch._execute) is set
    from them, this one's and, through the bus, the others', before the
    CONFIG SET that shared out replies (``barrier``)."""

    __slots__ = ("server", "left", "oom", "barrier")

    def __init__(self, server: Acceptor, n: int, barrier: Slot | None) -> None:
        self.server = server
        self.left = n
        self.oom = False
        self.barrier = barrier

    def deliver(self, body: bytes) -> None:
        self.oom = self.oom or body == b":1\r\n"
        self.left -= 1
        if self.left:
            return
        _settle_oom(self.server, self.oom, self.barrier)


def _settle_oom(server: Acceptor, oom: bool, barrier: Slot | None) -> None:
    """Set the OOM state of this acceptor and, through the bus, of the
    others (so that a client on any of them finds it as CONFIG SET left
    it); then deliver ``barrier``, if any."""
    server.oom = oom

    def told(answers: list) -> None:
        if barrier is not None:
            barrier.deliver(b"")

    def learnt() -> None:
        if server.bus is not None:
            server.bus.ask(bus.OOM, [int(oom)], told)
        else:
            told([])

    learn_oom_functions(server, learnt)


def bus_oom(server: Acceptor, origin: int, args: list) -> int | None:
    """Another acceptor shared maxmemory out anew: its shards' OOM state
    (answered once this acceptor knows which functions are ``denyoom``)."""
    server.oom = bool(args[0])
    answer = server.bus.later() if server.bus is not None and server.bus.answering() else None
    if answer is None:
        learn_oom_functions(server)
        return 1
    learn_oom_functions(server, lambda: answer(1))
    return None


def learn_oom_functions(server: Acceptor, done: Callable[[], None] | None = None) -> None:
    """Out of memory, Redis refuses an FCALL or FCALL_RO of a function
    with neither ``no-writes`` nor ``allow-oom`` before it runs
    (fcallGetCommandFlags makes it ``denyoom``), and an EXEC that queued
    one.  A function's flags are the workers', so while out of memory the
    acceptor asks one worker for those functions (``__fdenyoom``, an
    inquiry): when the OOM state is set (before CONFIG SET replies, on
    every acceptor), and again with each once-a-second OOM check, as
    FUNCTION DELETE and FLUSH may run meanwhile (LOAD and RESTORE are
    ``denyoom``, refused).  Then ``done()``, if given."""

    def answer(value: object) -> None:
        if server.oom and isinstance(value, list):
            server.function_denyoom = frozenset(value)
        if done is not None:
            done()

    if not server.oom or not server.links:
        server.function_denyoom = frozenset()
        answer(None)
        return
    server.links[0].inquire([Verb.FUNCTION_DENYOOM], answer)


class _Figure:
    __slots__ = ("figures", "shard")

    def __init__(self, figures: _Figures, shard: int) -> None:
        self.figures = figures
        self.shard = shard

    def deliver(self, body: bytes) -> None:
        f = self.figures
        f.figures[self.shard] = _number(body)
        f.left -= 1
        if not f.left:
            f.done()


class _Ignore:
    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


# -- moving room ------------------------------------------------------------------


def on_events(server: Acceptor, events: list, origin: object) -> None:
    """A shard's events: act on its STARVED ones (see the module docstring)."""
    for _db, note, cls, _name in events:
        if cls != STARVED:
            continue
        first, over = (int(word) for word in note.split())
        shard = _shard_of_slot(len(server.links), first)
        if shard is None or shard in STATE.moving or STATE.quiet.get(shard, 0) > time.monotonic():
            continue
        if server.nacceptors > 1 and origin_of(origin)[0] is None:
            continue  # another acceptor's command: that acceptor moves the room
        _Move(server, shard, over, origin).start()


def _shard_of_slot(n: int, slot: int) -> int | None:
    for shard in range(n):
        if slot_range(shard, n).start == slot:
            return shard
    return None


class _Move:
    """Room moved from the other shards to one starved shard."""

    def __init__(self, server: Acceptor, shard: int, wanted: int, origin: object) -> None:
        self.server = server
        self.shard = shard
        self.wanted = wanted
        self.got = 0
        self.left = 0
        self.donors = [s for s in range(len(server.links)) if s != shard]
        # Its client's reply waits behind a placeholder until the move is
        # done; the evictions' invalidations go before the reply (see
        # shardkv.acceptor.tracking: ``client`` and ``slot`` say whose).
        self.client, self.slot = origin_of(origin)
        self.barrier: Slot | None = None
        pending = getattr(self.client, "pending", None)
        if pending is not None and self.slot in pending:
            self.barrier = Slot(self.client)  # type: ignore[arg-type]
            pending.insert(pending.index(self.slot), self.barrier)

    def start(self) -> None:
        STATE.moving.add(self.shard)
        if not self.donors:
            self.finish()
            return
        # First the room the others have, all at once.
        self.left = len(self.donors)
        for donor in self.donors:
            _send(self.server, donor, [Verb.MEMORY, b"give", b"%d" % self.wanted, b"0"], _Given(self, True))

    def given(self, amount: int, first_round: bool) -> None:
        self.got += amount
        if first_round:
            self.left -= 1
            if self.left:
                return
            self.donors.reverse()  # popped from the end: in shard order
        if self.got >= self.wanted or not self.donors:
            self.finish()
            return
        # Then evictions, one shard at a time, until enough is freed.
        donor = self.donors.pop()
        wanted = self.wanted - self.got
        _send(self.server, donor, [Verb.MEMORY, b"give", b"%d" % wanted, b"1"], _Given(self, False))

    def finish(self) -> None:
        STATE.moving.discard(self.shard)
        if self.got:
            _send(self.server, self.shard, [Verb.MEMORY, b"take", b"%d" % self.got], _IGNORE)
        else:
            STATE.quiet[self.shard] = time.monotonic() + QUIET_S
        if self.barrier is not None:
            self.barrier.deliver(b"")


class _Given:
    """The sink of one ``__memory give``; its evictions' events are the
    starved command's client's (``client``, ``slot``)."""

    __slots__ = ("move", "first_round")

    def __init__(self, move: _Move, first_round: bool) -> None:
        self.move = move
        self.first_round = first_round

    @property
    def client(self) -> object:
        return self.move.client

    @property
    def slot(self) -> object:
        return self.move.slot

    def deliver(self, body: bytes) -> None:
        self.move.given(_number(body), self.first_round)
