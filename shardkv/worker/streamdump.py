"""Streams in Redis's RDB encoding, for DUMP and RESTORE.

Redis 7.0 writes a stream as ``RDB_TYPE_STREAM_LISTPACKS_2`` (19)::

    nodes                      length
    per node: master ID        string of 16 bytes (ms, seq: u64 big-endian)
              listpack         string (the node's entries, see stream.py)
    length, last ID ms, seq, first ID ms, seq, max deleted ID ms, seq,
    entries added, groups      lengths
    per group: name            string
               last ID ms, seq, entries read (-1 as 2**64-1)   lengths
               PEL             length, then per entry: ID (16 raw bytes),
                               delivery time (u64 ms LE), delivery count
               consumers       length, then per consumer: name, seen time
                               (u64 ms LE), PEL (length, IDs: 16 raw bytes)

Redis 6.2's ``RDB_TYPE_STREAM_LISTPACKS`` (15) lacks the first ID, the max
deleted ID, entries added and each group's entries read; RESTORE reads it
too.  A node's listpack holds its master entry ``count deleted num-fields
field... 0`` and then each entry ``flags ms-diff seq-diff [num-fields]
[field] value ... lp-count``.
"""

from __future__ import annotations

from collections.abc import Callable

from shardkv.protocol.resp import strict_int
from shardkv.worker.stream import DELETED, MASK64, SAMEFIELDS, Consumer, Group, Nack, Node, Stream

STREAM_LISTPACKS = 15
STREAM_LISTPACKS_2 = 19
U64 = 1 << 64


# -- listpacks -----------------------------------------------------------------


def _backlen(n: int) -> bytes:
    if n <= 127:
        return bytes((n,))
    if n < 16383:
        return bytes((n >> 7, (n & 127) | 128))
    if n < 2097151:
        return bytes((n >> 14, ((n >> 7) & 127) | 128, (n & 127) | 128))
    if n < 268435455:
        return bytes((n >> 21, ((n >> 14) & 127) | 128, ((n >> 7) & 127) | 128, (n & 127) | 128))
    return bytes(
        (n >> 28, ((n >> 21) & 127) | 128, ((n >> 14) & 127) | 128, ((n >> 7) & 127) | 128, (n & 127) | 128)
    )


def _lp_int(v: int) -> bytes:
    if 0 <= v <= 127:
        enc = bytes((v,))
    elif -4096 <= v <= 4095:
        u = v & 0x1FFF
        enc = bytes((0xC0 | u >> 8, u & 0xFF))
    elif -32768 <= v <= 32767:
        enc = b"\xf1" + v.to_bytes(2, "little", signed=True)
    elif -8388608 <= v <= 8388607:
        enc = b"\xf2" + v.to_bytes(3, "little", signed=True)
    elif -2147483648 <= v <= 2147483647:
        enc = b"\xf3" + v.to_bytes(4, "little", signed=True)
    else:
        enc = b"\xf4" + v.to_bytes(8, "little", signed=True)
    return enc + _backlen(len(enc))


def _lp_str(s: bytes) -> bytes:
    if len(s) <= 20:
        v = strict_int(s)
        if v is not None:
            return _lp_int(v)
    n = len(s)
    if n < 64:
        enc = bytes((0x80 | n,)) + s
    elif n < 4096:
        enc = bytes((0xE0 | n >> 8, n & 0xFF)) + s
    else:
        enc = b"\xf0" + n.to_bytes(4, "little") + s
    return enc + _backlen(len(enc))


def _signed(d: int) -> int:
    d &= MASK64
    return d - U64 if d >= 1 << 63 else d


def node_listpack(node: Node, master_id: int) -> bytes:
    """The listpack Redis would hold for ``node``."""
    master = node.master
    parts = [_lp_int(node.live), _lp_int(len(node) - node.live), _lp_int(len(master))]
    parts += [_lp_str(f) for f in master]
    parts.append(_lp_int(0))
    count = 3 + len(master) + 1
    mms, mseq = master_id >> 64, master_id & MASK64
    for i in range(len(node)):
        flags = node.flags[i]
        pairs = node.fields(i)
        parts.append(_lp_int(flags & (DELETED | SAMEFIELDS)))
        parts.append(_lp_int(_signed(node.ms[i] - mms)))
        parts.append(_lp_int(_signed(node.seq[i] - mseq)))
        nfields = len(pairs) // 2
        if flags & SAMEFIELDS:
            parts += [_lp_str(v) for v in pairs[1::2]]
            lp_count = nfields + 3
        else:
            parts.append(_lp_int(nfields))
            parts += [_lp_str(x) for x in pairs]
            lp_count = 2 * nfields + 4
        parts.append(_lp_int(lp_count))
        count += lp_count + 1
    body = b"".join(parts)
    total = 6 + len(body) + 1
    return total.to_bytes(4, "little") + min(count, 65535).to_bytes(2, "little") + body + b"\xff"


# -- writing -------------------------------------------------------------------


def dump_stream(s: Stream, length: Callable[[int], bytes], string: Callable[[bytes], bytes]) -> bytes:
    """The body of a type-19 object (after its type byte)."""
    out = [length(len(s.nodes))]
    for key, node in zip(s.keys, s.nodes, strict=True):
        out.append(string(key.to_bytes(16, "big")))
        out.append(string(node_listpack(node, key)))
    for v in (s.length, s.last_id >> 64, s.last_id & MASK64, s.first_id >> 64, s.first_id & MASK64):
        out.append(length(v))
    out += [length(s.max_deleted >> 64), length(s.max_deleted & MASK64), length(s.entries_added)]
    out.append(length(len(s.groups)))
    for name, g in sorted(s.groups.items()):
        out.append(string(name))
        out += [length(g.last_id >> 64), length(g.last_id & MASK64), length(g.entries_read & MASK64)]
        out.append(length(len(g.pel)))
        for id_, nack in g.pel.items():
            out.append(id_.to_bytes(16, "big"))
            out.append((nack.time & MASK64).to_bytes(8, "little"))
            out.append(length(nack.count))
        live = sorted(g.consumers.items())
        out.append(length(len(live)))
        for cname, c in live:
            out.append(string(cname))
            out.append((c.seen & MASK64).to_bytes(8, "little"))
            out.append(length(len(c.pel)))
            out += [id_.to_bytes(16, "big") for id_ in c.pel]
    return b"".join(out)


# -- reading -------------------------------------------------------------------


class StreamBadData(Exception):
    pass


def load_stream(reader, kind: int, listpack: Callable[[bytes], list[bytes]]) -> Stream:
    """A stream from ``reader`` (dump._Reader) positioned after the type byte."""
    s = Stream()
    v2 = kind == STREAM_LISTPACKS_2

    def n() -> int:
        value, special = reader.length()
        if special:
            raise StreamBadData("length")
        return value

    nodes = n()
    prev = -1
    for _ in range(nodes):
        key = reader.string()
        if len(key) != 16:
            raise StreamBadData("node key")
        master_id = int.from_bytes(key, "big")
        if master_id <= prev:
            raise StreamBadData("node order")
        prev = master_id
        items = listpack(reader.string())
        if not items:
            raise StreamBadData("empty listpack")
        _load_node(s, master_id, items)
    s.length = n()
    s.last_id = s.added = n() << 64 | n()
    if v2:
        s.first_id = n() << 64 | n()
        s.max_deleted = n() << 64 | n()
        s.entries_added = n()
    else:
        s.first_id = s.first_valid_id()
        s.entries_added = s.length
    live = sum(node.live for node in s.nodes)
    if live != s.length or (s.nodes and s.nodes[-1].id_at(len(s.nodes[-1]) - 1) > s.last_id):
        raise StreamBadData("stream length or last ID")
    for _ in range(n()):
        name = reader.string()
        if name in s.groups:
            raise StreamBadData("duplicate group")
        last = n() << 64 | n()
        if v2:
            read = n()
            if read == MASK64:
                read = -1
        else:  # as Redis migrates a 6.2 group: estimated from the stream
            read = s.estimate_distance(last)
        g = s.groups[name] = Group(last, read)
        for _ in range(n()):
            id_ = int.from_bytes(reader.take(16), "big")
            time = int.from_bytes(reader.take(8), "little", signed=True)
            nack = Nack(time, None)
            nack.count = n()
            if id_ in g.pel:
                raise StreamBadData("duplicate PEL entry")
            g.pel[id_] = nack
        for _ in range(n()):
            cname = reader.string()
            seen = int.from_bytes(reader.take(8), "little", signed=True)
            if cname in g.consumers:
                raise StreamBadData("duplicate consumer")
            c = g.consumers[cname] = Consumer(cname, seen)
            for _ in range(n()):
                id_ = int.from_bytes(reader.take(16), "big")
                nack = g.pel.get(id_)
                if nack is None or nack.consumer is not None:
                    raise StreamBadData("consumer PEL entry not in the group PEL")
                nack.consumer = c
                c.pel[id_] = nack
        if any(nack.consumer is None for nack in g.pel.values()):
            raise StreamBadData("PEL entry with no consumer")
    return s


def _load_node(s: Stream, master_id: int, items: list[bytes]) -> None:
    pos = 0

    def take_int() -> int:
        nonlocal pos
        v = int(items[pos])
        pos += 1
        return v

    def take() -> bytes:
        nonlocal pos
        v = items[pos]
        pos += 1
        return v

    count, deleted, nmaster = take_int(), take_int(), take_int()
    if nmaster < 0:
        raise StreamBadData("master fields")
    master = tuple(take() for _ in range(nmaster))
    if take_int() != 0:
        raise StreamBadData("master terminator")
    node = Node(master)
    mms, mseq = master_id >> 64, master_id & MASK64
    prev = -1
    while pos < len(items):
        flags = take_int()
        ms = (mms + take_int()) & MASK64
        seq = (mseq + take_int()) & MASK64
        id_ = ms << 64 | seq
        if id_ <= prev or id_ < master_id:
            raise StreamBadData("entry order")
        prev = id_
        if flags & SAMEFIELDS:
            pairs: list[bytes] = []
            for f in master:
                pairs += (f, take())
        else:
            nf = take_int()
            if nf < 1:
                raise StreamBadData("fields")
            pairs = [take() for _ in range(2 * nf)]
        take_int()  # lp-count
        node.append(id_, pairs, master_id)
        if flags & DELETED:
            node.flags[-1] |= DELETED
            node.live -= 1
    if not len(node) or node.live != count or len(node) - node.live != deleted or node.live == 0:
        raise StreamBadData("node counts")
    s.nodes.append(node)
    s.keys.append(master_id)
