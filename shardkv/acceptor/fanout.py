"""Commands that run on several shards: split, send in one step, merge.

A command whose keys live on several shards, or that runs on every shard,
is split into one part per shard.  All parts are queued in the same turn
of the acceptor's loop, with no other client's command between them, so
every shard sees them at the same place in the global order: the command
is atomic with respect to every other client.  Each shard answers its
part with a marshal value (``FLAG_PART``), and when the last part is in,
a *merge* function turns the parts into the reply value.

Merge policies are named in the command table's ``policy`` column.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from shardkv.acceptor.shardlink import release_events
from shardkv.protocol import wire
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import Error, encode
from shardkv.runtime import replyroom
from shardkv.runtime.replyroom import REPEATS_FREE

Merge = Callable[[list], object]


def _unseen(slot: object) -> None:
    """A read refused before it ran: no MONITOR line, as in Redis (its
    ``monitor.LineSlot``'s line, held until the reply, is dropped)."""
    unseen = getattr(slot, "unseen", None)
    if unseen is not None:
        unseen()


class Gather:
    """Collects the parts of one fanned-out command."""

    __slots__ = (
        "slot",
        "parts",
        "remaining",
        "merge",
        "resp3",
        "held_events",
        "event_keys",
        "emit_events",
        "rejected",
        "failed",
    )

    def __init__(self, slot, nparts: int, merge: Merge, resp3: bool, keys: list | None = None) -> None:
        self.slot = slot
        self.parts: list = [None] * nparts
        self.remaining = nparts
        self.merge = merge
        self.resp3 = resp3
        # The parts' keyspace events, held until the last part is in (see
        # shardkv.acceptor.shardlink.release_events), ordered by ``keys``.
        self.held_events: list | None = None
        self.event_keys = keys
        self.emit_events: Callable[..., Any] | None = None
        # A client's read across shards (MGET, EXISTS...): how its refusal
        # by a busy script is counted (a rejected call and the error, as
        # Redis counts the command it refuses), and its parts may be
        # refused (see Part.refuse_busy); None: neither.
        self.rejected: Callable[[str], None] | None = None
        # Such a read that a part's error answers (a worker's refusal, as
        # MGET's of a reply past its room): how that is counted (the call,
        # failed, and the error, as Redis counts a command that fails; the
        # workers count no part); None: not counted.
        self.failed: Callable[[Error], None] | None = None

    def sink(self, index: int) -> Part:
        return Part(self, index)

    def refuse_busy(self, busy: bytes) -> bool:
        """A busy script refused this read (a worker one of its parts, or
        the acceptor all of them before they left, see
        :meth:`Holds.refuse_reads <shardkv.acceptor.holds.Holds.refuse_reads>`):
        the client's command gets ``busy`` now, a rejected call and the
        error, counted here once for all its parts (the workers count none:
        two parked shards of one operation may each refuse a part), unless
        it was refused so already or answered (False); the other parts'
        replies are dropped."""
        if self.remaining <= 0:
            return False
        self.remaining = -1
        if self.rejected is not None:
            self.rejected(busy[1:-2].decode("latin-1"))
        _unseen(self.slot)
        self.slot.deliver(busy)
        return True

    def done(self) -> None:
        errors = [p for p in self.parts if type(p) is Error]
        if not errors:
            pass
        elif self.rejected is not None and errors[0].message.startswith("BUSY "):
            # (a shard busy with a script refused it, or its hold: no MONITOR line)
            self.rejected(errors[0].message)
            _unseen(self.slot)
        elif self.failed is not None:
            self.failed(errors[0])
        value = errors[0] if errors else self.merge(self.parts)
        gate = release_events(self) if self.held_events else None
        if gate is None:
            self.slot.deliver(encode(value, self.resp3))
        else:  # several acceptors: after the events are out on the others too
            gate.hold(self.slot, encode(value, self.resp3))


class Concat:
    """KEYS over every shard, without decoding a key: each shard answers a
    RESP array of bulk strings (in pieces when it is big, see ``P`` in
    :mod:`shardkv.protocol.wire`), and the client's reply is one array
    header over all of them, handed to its slot piece by piece."""

    __slots__ = ("slot", "pieces", "remaining", "error", "done_hook")

    def __init__(self, slot: Any, nparts: int, done_hook: Callable[[Error | None], None]) -> None:
        self.slot = slot
        self.pieces: list[list[bytes]] = [[] for _ in range(nparts)]
        self.remaining = nparts
        self.error: bytes | None = None
        self.done_hook = done_hook

    def sink(self, index: int) -> ConcatPart:
        return ConcatPart(self, index)

    def part_done(self) -> None:
        self.remaining -= 1
        if self.remaining:
            return
        if self.error is not None:
            self.done_hook(Error(self.error[1:-2].decode("latin-1")))
            self.slot.deliver(self.error)
            return
        total = 0
        for pieces in self.pieces:
            first = pieces[0]
            end = first.index(b"\r\n")
            total += int(first[1:end])
            pieces[0] = first[end + 2 :]
        self.done_hook(None)
        slot = self.slot
        slot.deliver_piece(b"*%d\r\n" % total, False)
        for pieces in self.pieces:
            for piece in pieces:
                if piece:
                    slot.deliver_piece(piece, False)
        self.pieces = []
        slot.deliver_piece(b"", True)


class ConcatPart:
    """The sink for one shard's array in a :class:`Concat`."""

    __slots__ = ("concat", "index")

    def __init__(self, concat: Concat, index: int) -> None:
        self.concat = concat
        self.index = index

    def deliver(self, body: bytes) -> None:
        c = self.concat
        if body[:1] == b"*":
            c.pieces[self.index].append(body)
        elif c.error is None:  # the shard failed
            c.error = body
        c.part_done()

    def deliver_piece(self, piece: bytes, last: bool) -> None:
        c = self.concat
        c.pieces[self.index].append(piece)
        if last:
            c.part_done()


class Part:
    """The sink for one shard's part of a :class:`Gather`."""

    __slots__ = ("gather", "index")

    def __init__(self, gather: Gather, index: int) -> None:
        self.gather = gather
        self.index = index

    @property
    def event_holder(self) -> Gather:
        return self.gather

    @property
    def busy_slot(self) -> Any:
        """The client's slot, if a busy script's worker may refuse this
        part (a client's read across shards, not answered yet; see
        ShardLink._offer_refusals)."""
        g = self.gather
        return g.slot if g.rejected is not None and g.remaining > 0 else None

    def refuse_busy(self, busy: bytes) -> bool:
        """A busy script's worker refused this part (``busy``): see
        :meth:`Gather.refuse_busy`."""
        return self.gather.refuse_busy(busy)

    def deliver(self, body: bytes) -> None:
        g = self.gather
        if g.remaining < 0:  # refused (refuse_busy)
            return
        if body[:1] == b"-":  # the shard failed: an error in RESP
            g.parts[self.index] = Error(body[1:-2].decode("latin-1"))
        else:
            g.parts[self.index] = wire.decode_part(body)
        g.remaining -= 1
        if not g.remaining:
            g.done()


def merge_sum(parts: list) -> object:
    return sum(parts)


def merge_ok(parts: list) -> object:
    return "OK"


def merge_all_set(parts: list) -> object:
    """MSETNX: 1 if every shard set its keys (none existed), else 0."""
    return 1 if all(p == 1 for p in parts) else 0


def merge_concat(parts: list) -> object:
    out: list = []
    for p in parts:
        out.extend(p)
    return out


def merge_random(parts: list) -> object:
    found = [p for p in parts if p is not None]
    return random.choice(found) if found else None


MERGES: dict[str, Merge] = {
    "sum": merge_sum,
    "ok": merge_ok,
    "mset": merge_ok,
    "msetnx": merge_all_set,
    "concat": merge_concat,
    "random": merge_random,
}


def split_by_shard(
    args: list[bytes], first: int, step: int, owners: list[int]
) -> tuple[dict[int, list[bytes]], dict[int, list[int]]]:
    """Group the key arguments (with the ``step - 1`` values after each),
    the keys ``args[first::step]``, whose shards are ``owners`` in order.

    Returns, per shard, its part's arguments (without the command name)
    and the positions of its keys among all the keys, in order.
    """
    parts: dict[int, list[bytes]] = {}
    positions: dict[int, list[int]] = {}
    for n, i in enumerate(range(first, len(args), step)):
        shard = owners[n]
        part = parts.get(shard)
        if part is None:
            parts[shard] = part = []
            positions[shard] = []
        part.extend(args[i : i + step])
        positions[shard].append(n)
    return parts, positions


def merge_by_position(positions: list[list[int]], total: int) -> Merge:
    """Put the parts' items back in the order of the command's keys."""

    def merge(parts: list) -> object:
        out: list = [None] * total
        for where, items in zip(positions, parts, strict=False):
            for i, item in zip(where, items, strict=False):
                out[i] = item
        return out

    return merge


def merge_mget(keys: list[bytes], positions: list[list[int]]) -> Merge:
    """MGET across shards: its parts' values in the order of its keys.

    A key named twice or more multiplies its value (every copy on the one
    shard that holds it); past :data:`REPEATS_FREE` keys the whole reply
    is measured against the room, as a shard measures an MGET of its own
    (see :mod:`shardkv.runtime.replyroom`), since parts that each fit
    their shard's room may not fit together: past it the reply is
    ``-ERR value is out of range``, before it is encoded."""
    by_position = merge_by_position(positions, len(keys))
    if len(keys) <= REPEATS_FREE or len(set(keys)) == len(keys):
        return by_position  # at most what the data holds, or 16 values: never measured

    def merge(parts: list) -> object:
        out: Any = by_position(parts)  # (a list of bytes or None)
        try:
            replyroom.check(sum(map(len, filter(None, out))))
        except CommandError as e:
            return Error(e.message)
        return out

    return merge
