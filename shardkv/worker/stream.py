"""The stream type: entries ordered by ID, consumer groups, pending lists.

An entry ID ``ms-seq`` is held as one int, ``ms << 64 | seq``, so IDs
compare, sort and bisect as plain ints; :func:`format_id` writes it back.

Entries live in *nodes*, as Redis keeps them in listpacks hung off a radix
tree: a node holds up to ``stream-node-max-entries`` entries (live and
deleted) or about ``stream-node-max-bytes`` of listpack, and a new node
starts when the tail one is full.  Node boundaries are the same as Redis's
(the byte size of each would-be listpack is counted as Redis counts it),
so ``MAXLEN ~`` and ``MINID ~``, which drop whole nodes only, trim exactly
what Redis trims.  A node keeps its entries compactly: their IDs in two
``array('Q')``, their fields marshalled into one ``bytearray`` (only the
values, when an entry has the same field names as the node's first entry,
Redis's "same fields" flag), with offsets in an ``array('I')``.  XDEL and
exact trimming mark an entry deleted and leave it in its node, as Redis
does; a node whose entries are all deleted is dropped.

``Stream.keys`` holds each node's first ID, so finding the node of an ID
is a bisection: XADD is O(1) (it appends to the tail node) and a range
read is O(log N + COUNT).

Consumer groups keep Redis's bookkeeping: ``last_id`` (last delivered),
``entries_read`` (-1 when unknown), a pending entries list (PEL) ordered by
ID, mapping each ID to a :class:`Nack` (delivery time, delivery count,
owner), and consumers, each with its own PEL of the same Nack objects and
its seen time.
"""

from __future__ import annotations

import marshal
from array import array
from bisect import bisect_right
from collections.abc import Callable, Iterator

from sortedcontainers import SortedDict

from shardkv.protocol.resp import strict_int

MASK64 = (1 << 64) - 1
MAX_ID = (1 << 128) - 1
INVALID_ENTRIES_READ = -1

DELETED = 1
SAMEFIELDS = 2

STREAM_LISTPACK_MAX_SIZE = 1 << 30
NODE_MAX_BYTES = 4096
NODE_MAX_ENTRIES = 100


def format_id(id_: int) -> bytes:
    return b"%d-%d" % (id_ >> 64, id_ & MASK64)


# -- listpack sizes, to cut nodes where Redis does ------------------------------


def _backlen(n: int) -> int:
    if n <= 127:
        return 1
    if n < 16383:
        return 2
    if n < 2097151:
        return 3
    if n < 268435455:
        return 4
    return 5


def _int_size(v: int) -> int:
    if 0 <= v <= 127:
        return 2
    if -4096 <= v <= 4095:
        n = 2
    elif -32768 <= v <= 32767:
        n = 3
    elif -8388608 <= v <= 8388607:
        n = 4
    elif -2147483648 <= v <= 2147483647:
        n = 5
    else:
        n = 9
    return n + _backlen(n)


_DIGIT_OR_MINUS = frozenset(b"-0123456789")


def _str_size(s: bytes) -> int:
    """The bytes of ``s`` as one listpack element (integers are encoded as such)."""
    n = len(s)
    if n and n <= 20 and s[0] in _DIGIT_OR_MINUS:
        v = strict_int(s)
        if v is not None:
            return _int_size(v)
    if n < 64:
        return n + 2
    n += 1 if n < 4096 else 5
    return n + _backlen(n)


def _delta_size(d: int) -> int:
    # lpAppendInteger takes an int64: a uint64 difference above it wraps.
    if d > 0x7FFFFFFFFFFFFFFF:
        d -= 1 << 64
    return _int_size(d)


class Node:
    """A run of entries: what one listpack holds in Redis."""

    __slots__ = ("ms", "seq", "flags", "offs", "data", "master", "live", "lpbytes")

    def __init__(self, master: tuple) -> None:
        self.ms = array("Q")
        self.seq = array("Q")
        self.flags = bytearray()
        self.offs = array("I")
        self.data = bytearray()
        self.master = master  # field names of the first entry added
        self.live = 0
        # listpack header, count, deleted, num-fields, fields, terminator
        self.lpbytes = 7 + 2 + 2 + _int_size(len(master)) + sum(map(_str_size, master)) + 2

    def __len__(self) -> int:
        return len(self.flags)

    def id_at(self, i: int) -> int:
        return (self.ms[i] << 64) | self.seq[i]

    def first_id(self) -> int:
        return (self.ms[0] << 64) | self.seq[0]

    def find(self, id_: int) -> int:
        """The first index whose ID is >= ``id_``."""
        ms, seq = self.ms, self.seq
        lo, hi = 0, len(ms)
        while lo < hi:
            mid = (lo + hi) >> 1
            if ((ms[mid] << 64) | seq[mid]) < id_:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def fields(self, i: int) -> list[bytes]:
        offs = self.offs
        end = offs[i + 1] if i + 1 < len(offs) else len(self.data)
        values = marshal.loads(self.data[offs[i] : end])
        if self.flags[i] & SAMEFIELDS:
            out = [None] * (2 * len(values))
            out[::2] = self.master
            out[1::2] = values
            return out  # type: ignore[return-value]
        return list(values)

    def append(self, id_: int, pairs: list[bytes], master_id: int) -> None:
        ms = id_ >> 64
        seq = id_ & MASK64
        self.ms.append(ms)
        self.seq.append(seq)
        self.offs.append(len(self.data))
        self.live += 1
        dms = ms - (master_id >> 64)
        dseq = seq - (master_id & MASK64)
        size = (
            1 + (2 if 0 <= dms <= 127 else _delta_size(dms)) + (2 if 0 <= dseq <= 127 else _delta_size(dseq))
        )
        master = self.master
        if len(pairs) == 2:  # the common entry: one field
            same = len(master) == 1 and pairs[0] == master[0]
            value = pairs[1]
            if same:
                self.data += marshal.dumps((value,))
                n = len(value)
                size += (
                    n + 2 if n < 64 and (not n or value[0] not in _DIGIT_OR_MINUS) else _str_size(value)
                ) + 2
            else:
                self.data += marshal.dumps(tuple(pairs))
                size += 2 + _str_size(pairs[0]) + _str_size(value) + 2
        else:
            nfields = len(pairs) >> 1
            same = len(master) == nfields and tuple(pairs[::2]) == master
            if same:
                values = pairs[1::2]
                self.data += marshal.dumps(tuple(values))
                size += sum(map(_str_size, values)) + _int_size(nfields + 3)
            else:
                self.data += marshal.dumps(tuple(pairs))
                size += _int_size(nfields) + sum(map(_str_size, pairs)) + _int_size(2 * nfields + 4)
        self.flags.append(SAMEFIELDS if same else 0)
        self.lpbytes += size


class Nack:
    """A pending entry: delivered to ``consumer`` and not acknowledged yet."""

    __slots__ = ("time", "count", "consumer")

    def __init__(self, time: int, consumer: Consumer | None) -> None:
        self.time = time
        self.count = 1
        self.consumer = consumer


class Consumer:
    __slots__ = ("name", "seen", "pel")

    def __init__(self, name: bytes, now: int) -> None:
        self.name = name
        self.seen = now
        self.pel: SortedDict = SortedDict()  # id -> Nack


class Group:
    __slots__ = ("last_id", "entries_read", "pel", "consumers")

    def __init__(self, last_id: int, entries_read: int) -> None:
        self.last_id = last_id
        self.entries_read = entries_read
        self.pel: SortedDict = SortedDict()  # id -> Nack
        self.consumers: dict[bytes, Consumer] = {}

    def consumer(self, name: bytes, now: int, create: bool = True) -> Consumer | None:
        """The consumer called ``name`` (its seen time refreshed), created if asked."""
        c = self.consumers.get(name)
        if c is not None:
            c.seen = now
        elif create:
            c = self.consumers[name] = Consumer(name, now)
        return c

    def ack(self, id_: int) -> bool:
        nack = self.pel.pop(id_, None)
        if nack is None:
            return False
        if nack.consumer is not None:
            nack.consumer.pel.pop(id_, None)
        return True

    def delete_consumer(self, c: Consumer) -> int:
        pending = len(c.pel)
        for id_ in c.pel:
            self.pel.pop(id_, None)
        del self.consumers[c.name]
        return pending


class Stream:
    """A stream value (see the module docstring)."""

    __slots__ = (
        "nodes",
        "keys",
        "length",
        "last_id",
        "first_id",
        "max_deleted",
        "entries_added",
        "groups",
        "added",
    )

    encoding = "stream"

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.keys: list[int] = []  # each node's master ID
        self.length = 0
        self.last_id = 0
        self.first_id = 0
        self.max_deleted = 0
        self.entries_added = 0
        self.groups: dict[bytes, Group] = {}
        # The ID of the last entry added (by XADD), deleted since or not;
        # a stream made anew (DUMP/RESTORE, COPY, an RDB loaded): its last
        # ID, as Redis's dbAdd signals the new key ready.  Part of its
        # plain state (to_plain), so that a stream that a cross-shard
        # operation wrote (an XSETID in a transaction), or that moves to
        # another shard, keeps it.  Redis serves the clients blocked on a
        # stream after an XADD, not after an XSETID that moves its last ID
        # alone (see shardkv.worker.commands.streams.serves).
        self.added = 0

    # -- adding ------------------------------------------------------------------

    def append(self, id_: int, pairs: list[bytes], max_entries: int, max_bytes: int) -> None:
        """Add an entry whose ID is above ``last_id`` (the caller checked)."""
        nodes = self.nodes
        node = nodes[-1] if nodes else None
        if node is not None:
            if max_bytes <= 0 or max_bytes > STREAM_LISTPACK_MAX_SIZE:
                max_bytes = STREAM_LISTPACK_MAX_SIZE
            if (max_entries and len(node.flags) >= max_entries) or node.lpbytes + sum(
                map(len, pairs)
            ) >= max_bytes:
                node = None
        if node is None:
            node = Node(tuple(pairs[::2]))
            nodes.append(node)
            self.keys.append(id_)
        node.append(id_, pairs, self.keys[-1])
        self.length += 1
        self.entries_added += 1
        self.last_id = id_
        self.added = id_
        if self.length == 1:
            self.first_id = id_

    # -- reading -----------------------------------------------------------------

    def _locate(self, id_: int) -> tuple[int, int]:
        """(node index, entry index) of the first entry with an ID >= ``id_``."""
        j = bisect_right(self.keys, id_) - 1
        if j < 0:
            return 0, 0
        node = self.nodes[j]
        i = node.find(id_)
        if i >= len(node):
            return j + 1, 0
        return j, i

    def iter(self, start: int = 0, end: int = MAX_ID, rev: bool = False) -> Iterator[tuple[int, Node, int]]:
        """Live entries with ``start <= id <= end``: (id, node, index)."""
        if start > end or not self.nodes:
            return
        nodes = self.nodes
        if not rev:
            j, i = self._locate(start)
            while j < len(nodes):
                node = nodes[j]
                ms, seq, flags = node.ms, node.seq, node.flags
                n = len(flags)
                while i < n:
                    id_ = (ms[i] << 64) | seq[i]
                    if id_ > end:
                        return
                    if not flags[i] & DELETED:
                        yield id_, node, i
                    i += 1
                j += 1
                i = 0
        else:
            j, i = self._locate(end)
            # the entry at (j, i) is the first >= end: step back unless it is end
            if j < len(nodes) and nodes[j].id_at(i) == end:
                pass
            else:
                i -= 1
            if i < 0:
                j -= 1
                i = len(nodes[j]) - 1 if j >= 0 else -1
            while j >= 0:
                node = nodes[j]
                ms, seq, flags = node.ms, node.seq, node.flags
                while i >= 0:
                    id_ = (ms[i] << 64) | seq[i]
                    if id_ < start:
                        return
                    if not flags[i] & DELETED:
                        yield id_, node, i
                    i -= 1
                j -= 1
                if j >= 0:
                    i = len(nodes[j]) - 1

    def range(self, start: int, end: int, count: int = 0, rev: bool = False) -> list[list]:
        """``[[id, [field, value, ...]], ...]``, at most ``count`` (0: all)."""
        out = []
        for id_, node, i in self.iter(start, end, rev):
            out.append([format_id(id_), node.fields(i)])
            if len(out) == count:
                break
        return out

    def get(self, id_: int) -> list[bytes] | None:
        for _, node, i in self.iter(id_, id_):
            return node.fields(i)
        return None

    def exists(self, id_: int) -> bool:
        for _ in self.iter(id_, id_):
            return True
        return False

    def last_valid_id(self) -> int:
        for id_, _, _ in self.iter(0, MAX_ID, True):
            return id_
        return 0

    def first_valid_id(self) -> int:
        for id_, _, _ in self.iter():
            return id_
        return 0

    # -- removing ----------------------------------------------------------------

    def _mark_deleted(self, j: int, i: int) -> None:
        node = self.nodes[j]
        node.flags[i] |= DELETED
        node.live -= 1
        self.length -= 1
        if not node.live:
            del self.nodes[j]
            del self.keys[j]

    def delete(self, id_: int) -> bool:
        """XDEL of one ID: True if it was there."""
        if not self.nodes:
            return False
        j, i = self._locate(id_)
        if j >= len(self.nodes):
            return False
        node = self.nodes[j]
        if node.id_at(i) != id_ or node.flags[i] & DELETED:
            return False
        self._mark_deleted(j, i)
        return True

    def trim(self, maxlen: int | None, minid: int | None, approx: bool, limit: int) -> int:
        """Redis's streamTrim: by MAXLEN or MINID; returns how many went."""
        deleted = 0
        nodes = self.nodes
        while nodes:
            if maxlen is not None and self.length <= maxlen:
                break
            node = nodes[0]
            entries = node.live
            if limit and deleted + entries > limit:
                break
            if maxlen is not None:
                remove = self.length - entries >= maxlen
            else:
                remove = node.id_at(len(node) - 1) < minid  # type: ignore[operator]
            if remove:
                del nodes[0]
                del self.keys[0]
                self.length -= entries
                deleted += entries
                continue
            if approx:
                break
            ms, seq, flags = node.ms, node.seq, node.flags
            for i in range(len(flags)):
                if maxlen is not None:
                    if self.length <= maxlen:
                        break
                elif ((ms[i] << 64) | seq[i]) >= minid:  # type: ignore[operator]
                    break
                if not flags[i] & DELETED:
                    flags[i] |= DELETED
                    node.live -= 1
                    self.length -= 1
                    deleted += 1
            break
        if self.length == 0:
            self.first_id = 0
        elif deleted:
            self.first_id = self.first_valid_id()
        return deleted

    # -- groups ------------------------------------------------------------------

    def has_tombstones(self, start: int, end: int = MAX_ID) -> bool:
        """streamRangeHasTombstones."""
        md = self.max_deleted
        if not self.length or not md:
            return False
        if self.first_id > md:
            return False
        return start <= md <= end

    def estimate_distance(self, id_: int) -> int:
        """streamEstimateDistanceFromFirstEverEntry."""
        if not self.entries_added:
            return 0
        if not self.length and id_ <= self.last_id:
            return self.entries_added
        if id_ == self.last_id:
            return self.entries_added
        if id_ > self.last_id:
            return INVALID_ENTRIES_READ
        md = self.max_deleted
        if not md or md < self.first_id:
            if id_ < self.first_id:
                return self.entries_added - self.length
            if id_ == self.first_id:
                return self.entries_added - self.length + 1
        return INVALID_ENTRIES_READ

    def lag(self, group: Group) -> int | None:
        """streamReplyWithCGLag: None when it cannot be known."""
        if not self.entries_added:
            return 0
        if group.entries_read != INVALID_ENTRIES_READ and not self.has_tombstones(group.last_id):
            return self.entries_added - group.entries_read
        read = self.estimate_distance(group.last_id)
        if read != INVALID_ENTRIES_READ:
            return self.entries_added - read
        return None

    def deliver(self, group: Group, id_: int) -> None:
        """Move a group's last delivered ID to ``id_`` (above it), counting the read."""
        if group.entries_read != INVALID_ENTRIES_READ and not self.has_tombstones(id_):
            group.entries_read += 1
        elif self.entries_added:
            group.entries_read = self.estimate_distance(id_)
        group.last_id = id_

    # -- copies and plain values --------------------------------------------------

    def copy(self) -> Stream:
        """A new key's (COPY): its last ID taken as added, as Redis's dbAdd
        signals the new key ready (see :attr:`added`)."""
        s = Stream.from_plain(self.to_plain())
        s.added = s.last_id
        return s

    def to_plain(self) -> tuple:
        """Built from plain types only (see :mod:`shardkv.worker.transfer`)."""
        nodes = [
            (
                self.keys[j],
                n.ms.tobytes(),
                n.seq.tobytes(),
                bytes(n.flags),
                n.offs.tobytes(),
                bytes(n.data),
                n.master,
                n.live,
                n.lpbytes,
            )
            for j, n in enumerate(self.nodes)
        ]
        groups = []
        for name, g in self.groups.items():
            consumers = [(c.name, c.seen) for c in g.consumers.values()]
            pel = [
                (id_, n.time, n.count, n.consumer.name if n.consumer else None) for id_, n in g.pel.items()
            ]
            groups.append((name, g.last_id, g.entries_read, consumers, pel))
        last = (self.last_id, self.first_id, self.max_deleted, self.entries_added)
        return (nodes, self.length, *last, groups, self.added)

    @classmethod
    def from_plain(cls, plain: tuple) -> Stream:
        nodes, length, last_id, first_id, max_deleted, entries_added, groups = plain[:7]
        s = cls()
        for key, ms, seq, flags, offs, data, master, live, lpbytes in nodes:
            n = Node.__new__(Node)
            n.ms = array("Q")
            n.ms.frombytes(ms)
            n.seq = array("Q")
            n.seq.frombytes(seq)
            n.flags = bytearray(flags)
            n.offs = array("I")
            n.offs.frombytes(offs)
            n.data = bytearray(data)
            n.master = tuple(master)
            n.live = live
            n.lpbytes = lpbytes
            s.nodes.append(n)
            s.keys.append(key)
        s.length, s.last_id, s.first_id = length, last_id, first_id
        s.max_deleted, s.entries_added = max_deleted, entries_added
        # (a state saved before it was kept: its last ID, see added)
        s.added = plain[7] if len(plain) > 7 else last_id
        for name, gl, er, consumers, pel in groups:
            g = s.groups[name] = Group(gl, er)
            for cname, seen in consumers:
                g.consumers[cname] = Consumer(cname, seen)
            for id_, time, count, owner in pel:
                c = g.consumers.get(owner) if owner is not None else None
                nack = Nack(time, c)
                nack.count = count
                g.pel[id_] = nack
                if c is not None:
                    c.pel[id_] = nack
        return s

    def node_count(self) -> int:
        return len(self.nodes)


_LIMITS: dict[tuple, tuple[int, int]] = {}


def node_limits(extra: dict[str, str]) -> tuple[int, int]:
    """(stream-node-max-entries, stream-node-max-bytes) from the runtime settings."""
    raw = (extra.get("stream-node-max-entries"), extra.get("stream-node-max-bytes"))
    limits = _LIMITS.get(raw)
    if limits is None:
        limits = _LIMITS[raw] = (_setting(raw[0], NODE_MAX_ENTRIES), _setting(raw[1], NODE_MAX_BYTES))
    return limits


def _setting(text: str | None, default: int) -> int:
    if text is None:
        return default
    text = text.strip().lower()
    for suffix, unit in (
        ("kb", 1024),
        ("mb", 1024**2),
        ("gb", 1024**3),
        ("k", 1000),
        ("m", 1000**2),
        ("g", 1000**3),
    ):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * unit
    return int(text) if text.lstrip("-").isdigit() else default


def added_now(peek: Callable[[bytes], object], keys: list[bytes]) -> dict[bytes, int]:
    """Each of ``keys``' :attr:`Stream.added` now (0 for no stream), ``peek``
    the keyspace's probe: what a blocked stream read's later serves are
    measured against, as only an XADD after it serves it (see
    ``shardkv.worker.commands.streams.serves``)."""
    seen = {}
    for key in keys:
        s = peek(key)
        seen[key] = s.added if type(s) is Stream else 0
    return seen
