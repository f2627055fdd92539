"""Redis's glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE, CONFIG GET ...).

``*`` any run, ``?`` any one byte, ``[abc]``, ``[^a]``, ``[a-z]`` classes,
and ``\\`` to escape the next byte, with every quirk of Redis's
``stringmatchlen`` (``src/util.c``):

* a range may be written backwards (``[z-a]``), and its ends compare as
  C's signed ``char``, so ``[a-\\xff]`` means ``\\xff`` (-1) up to ``a``;
* a ``[`` with no closing ``]`` takes the rest of the pattern as its class,
  and ``-`` right before the closing ``]`` makes a range that swallows it
  (``[a-]`` is the range ``]``..``a`` and the class goes on);
* ``[]`` matches nothing and ``[^]`` any byte;
* a ``\\`` at the very end is a literal backslash; inside a class an
  escaped byte compares exactly, even in the case-insensitive variant;
* the case-insensitive variant lowers a range's ends after ordering them,
  so ``[Z-a]`` matches nothing there;
* the empty string matches only the empty pattern, even ``*`` (KEYS and
  SCAN treat the single pattern ``*`` as "everything" before matching);
* a pattern whose stars nest more than 1000 deep matches nothing (the
  recursion limit Redis added for CVE-2024-31228: every star that is not
  the pattern's last token costs one level).

**Bounded cost.**  ``stringmatchlen`` recurses at each star; Redis bounds
that with the "skip longer matches" rule of CVE-2022-36021.  Here the
pattern is read into tokens once (each a star, or the set of bytes one
position may hold) and cut at its stars into fixed-width segments
``S0 * S1 * ... * Sk``.  A string matches when it starts with ``S0``,
ends with ``Sk``, and ``S1 .. Sk-1`` occur in order in between: placing
each middle segment at its *leftmost* occurrence after the previous one
is always right (any placement that works ends no earlier), so nothing
is ever retried.  ``Sk`` is checked at the end of the string, then one
regular expression matches ``S0`` followed by each middle segment as an
atomic group, ``(?>.*?Si)``, which the engine never re-enters, within the
bytes before ``Sk``: the cost is at most (string length) x (pattern
length) byte comparisons, done in C, whatever the pattern.  Compiled
patterns are cached.

Reading a pattern costs little, whatever its size, since a hostile one may
be 512 MB long (PSUBSCRIBE, KEYS, ACL's ``~pattern`` at every command):
it is read from its start only as far as the strings given need
(``_Pattern``: a string shorter than the tokens read so far cannot match,
and ``stringmatchlen`` too stops where the string ends); runs of stars, of
``?`` and of plain bytes and escapes are each read by one regular
expression, in C, and a class is a 256-bit mask built from cached ranges.  The regular
expressions, whose compilation costs microseconds per pattern byte, are
built only when a string is long enough to match (at least one byte per
token); Redis's matcher, too, gives up on a short string at once.  A
pattern with no class is matched with ``bytes.find``, no regular
expression at all, and a class repeated in a row is written once with a
count; plain bytes inside a class are read as whole runs too.
"""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from functools import cache, lru_cache
from typing import Any

# A token is None for "*", a bytes run of plain bytes (with ``nocase``, a
# letter stands for both its cases), or an int: the mask of the bytes one
# position may hold (bit c set: byte c allowed).
Token = bytes | int | None
_STAR = None
_ALL = (1 << 256) - 1
MAX_NESTING = 1000  # stringmatchlen's recursion limit (CVE-2024-31228)
REGEX_NODES = 2000  # a larger pattern with classes is matched without a regular expression
LONG_STRING = 4096  # and so is a longer string, where a middle segment is
WIDE_SEGMENT = 64  # wider than this
_STARS = re.compile(rb"\*+")
_ANYS = re.compile(rb"\?+")
_PIECE = 1 << 16  # a run of "?", or of plain bytes, is read at most this many bytes at a time
_PLAIN = re.compile(rb"(?:[^*?\[\\]++|\\[\s\S])++")  # plain bytes and escapes
_ESCAPE = re.compile(rb"\\([\s\S])")
_BYTES = bytes(range(256))
_CLASS_STOP = re.compile(rb"[\\\]]")
_RANGE_RUN = re.compile(rb"(?:[^\\\]]-.){8}", re.S)  # 8 ranges in a row at least: _ranges


def _signed(c: int) -> int:
    """A byte as C's (signed) ``char`` sees it."""
    return c - 256 if c > 127 else c


def _lower(c: int) -> int:
    """C's ``tolower`` in the C locale, on a signed char value."""
    return c + 32 if 65 <= c <= 90 else c


def _mask(members: Iterable[int]) -> int:
    return sum(1 << b for b in set(members))


_EXACT = [1 << c for c in range(256)]
_NOCASE = [_mask(b for b in range(256) if _lower(b) == _lower(c)) for c in range(256)]


@cache  # at most 2 x 256 x 256 entries
def _range(first: int, last: int, nocase: bool) -> int:
    start, end = _signed(first), _signed(last)
    if start > end:
        start, end = end, start
    if nocase:
        start, end = _lower(start), _lower(end)
        return _mask(b for b in range(256) if start <= _lower(_signed(b)) <= end)
    return _mask(b for b in range(256) if start <= _signed(b) <= end)


def _parse(pattern: bytes, nocase: bool = False) -> list[Token]:
    """The pattern read as ``stringmatchlen`` reads it: None for each ``*``
    (runs merged), a bytes run for plain bytes in a row, else the mask of
    the bytes that one position may hold."""
    return _merged([t for piece, _ in _pieces(pattern, nocase) for t in piece])


def _merged(toks: list[Token]) -> list[Token]:
    """The tokens with plain runs in a row (read a piece at a time) joined."""
    out: list[Token] = []
    for t in toks:
        if isinstance(t, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += t
        else:
            out.append(t)
    return out


def _pieces(pattern: bytes, nocase: bool) -> Iterator[tuple[list[Token], int]]:
    """The tokens of the pattern from its start, a few at a time, each
    piece with the width it adds (the bytes a string needs for it).  A run
    of stars, of ``?``, of plain bytes and escapes is read by one regular
    expression, in C: megabytes of ``*`` once cost a loop turn a byte.
    Read lazily (``_Pattern``): a string shorter than the pattern's width
    never needs the rest."""
    masks: dict[int, int] = {}  # one int object per distinct mask
    i, n = 0, len(pattern)
    size = 64  # the bytes of a run read at once: doubled each time, up to _PIECE
    while i < n:
        c = pattern[i]
        if c == 42:  # '*'
            i = _STARS.match(pattern, i).end()  # type: ignore[union-attr]
            yield [_STAR], 0
            continue
        if c == 63:  # '?'
            j = _ANYS.match(pattern, i, i + size).end()  # type: ignore[union-attr]
            yield [_ALL] * (j - i), j - i
            i = j
        elif c == 91:  # '['
            mask, i = _class(pattern, i + 1, nocase)
            yield [masks.setdefault(mask, mask)], 1
        elif c == 92 and i == n - 1:  # a last '\\' is literal
            i = n
            yield [b"\\"], 1
        else:  # plain bytes and escapes ('\\' escapes the next byte)
            j = _PLAIN.match(pattern, i, i + size).end()  # type: ignore[union-attr]
            run = _unescape(pattern[i:j])
            i = j
            yield [run], len(run)
        size = min(2 * size, _PIECE)


def _unescape(run: bytes) -> bytes:
    """Plain bytes and escapes (``\\x``, none cut in two) as the bytes they
    stand for.  Pairs of backslashes, found from the left as the pattern
    is read, are each one backslash; any other backslash escapes the byte
    after it.  Done with ``bytes.replace`` through a byte the run lacks
    (a regular expression's ``sub`` costs a microsecond an escape)."""
    if 92 not in run:
        return run
    free = _BYTES.translate(None, run)[:1]
    if not free:  # all 256 bytes in the run
        return b"".join(_ESCAPE.split(run))
    return run.replace(b"\\\\", free).replace(b"\\", b"").replace(free, b"\\")


def _class(pattern: bytes, i: int, nocase: bool) -> tuple[int, int]:
    """The mask of the class whose body starts at ``i`` (after its ``[``),
    and where the pattern goes on after its ``]`` (or its end)."""
    n = len(pattern)
    negate = i < n and pattern[i] == 94  # '^'
    if negate:
        i += 1
    allowed = 0
    window = 64  # looked through for the next special byte: doubled each time
    while True:
        j = min(n, i + window)  # plain bytes taken whole, found with bytes.find
        for special in b"\\]-":
            found = pattern.find(special, i, j)
            j = j if found < 0 else found
        window *= 2
        if j < n and pattern[j] == 45:  # the byte before "-" may start a range
            j -= 1
        if j > i:
            table = _NOCASE if nocase else _EXACT
            for b in _BYTES.translate(None, _BYTES.translate(None, memoryview(pattern)[i:j])):  # each once
                allowed |= table[b]
            i = j
            continue
        if i < n and pattern[i] == 92 and n - i >= 2:  # '\\': exact
            i += 1
            allowed |= _EXACT[pattern[i]]
        elif i < n and pattern[i] == 93:  # ']'
            break
        elif i >= n:
            i -= 1  # an unclosed class ends the pattern
            break
        elif _RANGE_RUN.match(pattern, i):  # 'x-y' and more right after it
            pairs, i = _ranges(pattern, i)
            for pair in pairs:
                allowed |= _range(*pair.to_bytes(2, sys.byteorder), nocase)
            i -= 1
        elif n - i >= 3 and pattern[i + 1] == 45:  # 'x-y'
            allowed |= _range(pattern[i], pattern[i + 2], nocase)
            i += 2
        else:
            allowed |= (_NOCASE if nocase else _EXACT)[pattern[i]]
        i += 1
    return (_ALL ^ allowed if negate else allowed), i + 1


def _ranges(pattern: bytes, i: int) -> tuple[set[int], int]:
    """The ranges written in a row in a class from ``i`` on (``x-y``, ``x``
    neither ``\\`` nor ``]``), each distinct one once (the bytes ``xy`` as
    a native 16-bit integer), and where they end.  A client may send
    millions (``[a-ba-b...]``, 6 MB: 3 s one by one, in every process at
    every command, as large patterns are not kept): they are read a
    growing chunk at a time with bytes operations."""
    found: set[int] = set()
    size = 16
    while True:
        chunk = pattern[i : i + 3 * size]
        seconds = chunk[1::3]
        stop = _CLASS_STOP.search(chunk[0::3])
        count = min(
            len(chunk) // 3,
            len(seconds) - len(seconds.lstrip(b"-")),
            stop.start() if stop else size,
        )
        pairs = bytearray(2 * count)
        pairs[0::2], pairs[1::2] = chunk[0 : 3 * count : 3], chunk[2 : 3 * count : 3]
        found.update(memoryview(pairs).cast("H"))
        i += 3 * count
        if count < size:
            return found, i
        size *= 4


@lru_cache(maxsize=4096)
def _byte_class(allowed: int) -> bytes:
    """A regular expression for one byte out of ``allowed``."""
    if allowed == _ALL:
        return b"."
    if not allowed:
        return b"(?!)"
    members = [b for b in range(256) if allowed >> b & 1]
    if len(members) == 1:
        return b"\\x%02x" % members[0]
    parts: list[list[int]] = []
    run: list[int] = []
    for b in members:
        if run and b == run[-1] + 1:
            run.append(b)
            continue
        if run:
            parts.append(run)
        run = [b]
    parts.append(run)
    body = b"".join(b"\\x%02x" % r[0] if len(r) == 1 else b"\\x%02x-\\x%02x" % (r[0], r[-1]) for r in parts)
    return b"[" + body + b"]"


def _regex(segment: list[bytes | int], nocase: bool) -> bytes:
    """The regular expression of a segment (tokens with no star)."""
    out = []
    i, n = 0, len(segment)
    while i < n:
        tok = segment[i]
        i += 1
        if isinstance(tok, bytes):
            out.append(b"(?i:" + re.escape(tok) + b")" if nocase else re.escape(tok))
            continue
        count = 1  # a class repeated is written once, with its count
        while i < n and segment[i] == tok:
            count += 1
            i += 1
        out.append(_byte_class(tok) + (b"{%d}" % count if count > 1 else b""))
    return b"".join(out)


def _nodes(segment: list[bytes | int]) -> int:
    """The nodes of a segment's regular expression: one per plain byte, one
    per run of a class (see _regex)."""
    nodes, last = 0, None
    for t in segment:
        nodes += len(t) if isinstance(t, bytes) else t != last
        last = t
    return nodes


def _never(s: bytes) -> bool:
    return False


class _Cache:
    """The compiled patterns last used, bounded by their bytes as well as
    their number: a client may send patterns of megabytes, and what one
    compiles to takes some times its size.  A pattern of more than
    ``LARGEST`` bytes is compiled each time it is given (in time linear in
    its size), never kept."""

    ENTRIES = 1024
    BYTES = 256 * 1024  # the patterns' bytes, all together
    LARGEST = 4096

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple[bytes, bool], Callable[[bytes], bool]] = OrderedDict()
        self.size = 0

    def get(self, pattern: bytes, nocase: bool) -> Callable[[bytes], bool]:
        key = (pattern, nocase)
        match = self.entries.get(key)
        if match is not None:
            self.entries.move_to_end(key)
            return match
        match = _compile(pattern, nocase)
        if len(pattern) <= self.LARGEST:
            self.entries[key] = match
            self.size += len(pattern)
            while self.size > self.BYTES or len(self.entries) > self.ENTRIES:
                (old, _), _ = self.entries.popitem(last=False)
                self.size -= len(old)
        return match

    def clear(self) -> None:
        self.entries.clear()
        self.size = 0


_CACHE = _Cache()


def compile_glob(pattern: bytes, nocase: bool = False) -> Callable[[bytes], bool]:
    """A predicate that tells whether a byte string matches ``pattern``."""
    return _CACHE.get(pattern, nocase)


def _compile(pattern: bytes, nocase: bool) -> Callable[[bytes], bool]:
    if not pattern:
        return lambda s: not s
    return _Pattern(pattern, nocase)


class _Pattern:
    """A pattern read from its start only as far as the strings given so
    far need.  A string shorter than the width of the tokens read so far
    cannot match, as in ``stringmatchlen``, which stops where the string
    ends: KEYS with a pattern of 100 MB over short keys reads a few tokens
    of it, where reading it whole took a loop turn a token (minutes, at
    every command, in the acceptor and in every shard).  More than
    ``MAX_NESTING + 1`` stars read means nesting past the limit: nothing
    matches.  The pattern is compiled (``_whole``) once it is read to its
    end, for the first string long enough."""

    def __init__(self, pattern: bytes, nocase: bool) -> None:
        self.nocase = nocase
        self.pieces: Iterator[tuple[list[Token], int]] | None = _pieces(pattern, nocase)
        self.toks: list[Token] = []
        self.width = 0  # of the tokens read
        self.stars = 0
        self.match: Callable[[bytes], bool] | None = None

    def __call__(self, s: bytes) -> bool:
        match = self.match
        if match is None:
            if len(s) < self.width or not self._read(len(s)):
                return False
            match = self.match
            assert match is not None
        return match(s)

    def _read(self, size: int) -> bool:
        """Read on until the tokens need more than ``size`` bytes (False),
        or to the end (True: ``match`` is set)."""
        assert self.pieces is not None
        for piece, width in self.pieces:
            self.toks += piece
            if width:
                self.width += width
                if self.width > size:
                    return False
            else:
                self.stars += 1
                if self.stars > MAX_NESTING + 1:  # one at most may be the last token
                    break
        self.match = _whole(self.toks, self.nocase) if self.stars <= MAX_NESTING + 1 else _never
        self.pieces, self.toks = None, []
        return True


def _whole(toks: list[Token], nocase: bool) -> Callable[[bytes], bool]:
    """The matcher of a pattern read whole (``toks``: not empty)."""
    toks = _merged(toks)
    stars = sum(1 for t in toks if t is _STAR)
    if stars - (toks[-1] is _STAR) > MAX_NESTING:
        return _never
    segments: list[list[bytes | int]] = [[]]
    width = 0  # the fewest bytes a match needs
    for t in toks:
        if t is _STAR:
            segments.append([])
        else:
            segments[-1].append(t)
            width += len(t) if isinstance(t, bytes) else 1
    if stars == 1 and not segments[0] and not segments[1]:
        return bool  # "*": any non-empty string
    # A regular expression costs microseconds per node to compile: one per
    # plain byte, one per run of a class; and its search of a middle
    # segment retries every place to the segment's end, as stringmatchlen
    # does.  A pattern of many nodes, or a string longer than LONG_STRING
    # when a middle segment is wider than WIDE_SEGMENT, goes to numpy
    # arrays instead (_Vector), built in time linear in the pattern.
    classes = any(isinstance(t, int) for t in toks)
    nodes = sum(_nodes(seg) for seg in segments)
    widths = [sum(len(t) if isinstance(t, bytes) else 1 for t in seg) for seg in segments[1:-1]]
    wide = max(widths, default=0) > WIDE_SEGMENT
    built: dict[bool, Callable[[bytes], bool]] = {}  # by "numpy arrays"

    def matches(s: bytes) -> bool:
        if len(s) < width or (not stars and len(s) != width):
            return False
        vector = classes and (nodes > REGEX_NODES or (wide and len(s) > LONG_STRING))
        if vector not in built:  # built once, for the first string that may match
            built[vector] = _Vector(segments, nocase) if vector else _build(segments, nocase)
        return built[vector](s)

    return matches


def _build(segments: list[list[bytes | int]], nocase: bool) -> Callable[[bytes], bool]:
    """The matcher of a pattern cut at its stars, given a long enough string."""
    if not any(isinstance(t, int) for seg in segments for t in seg):  # no class
        return _plain([b"".join(t for t in seg if isinstance(t, bytes)) for seg in segments], nocase)
    if len(segments) == 1:
        whole = re.compile(b"(?s:" + _regex(segments[0], nocase) + b")\\Z").match
        return lambda s: whole(s) is not None
    head, middle, tail = segments[0], segments[1:-1], segments[-1]
    rx = _regex(head, nocase) + b"".join(b"(?>.*?" + _regex(seg, nocase) + b")" for seg in middle)
    front = re.compile(b"(?s:" + rx + b")").match
    if not tail:
        return lambda s: front(s) is not None
    back = re.compile(b"(?s:" + _regex(tail, nocase) + b")").match
    size = sum(len(t) if isinstance(t, bytes) else 1 for t in tail)
    return lambda s: back(s, len(s) - size) is not None and front(s, 0, len(s) - size) is not None


def _plain(segments: list[bytes], nocase: bool) -> Callable[[bytes], bool]:
    """The matcher of a pattern with no class: plain bytes and stars, found
    with ``bytes.find`` (a regular expression of a plain run of megabytes
    costs seconds to compile); each middle segment at its leftmost place."""
    if nocase:  # C's tolower in the C locale, as bytes.lower: ASCII only
        segments = [seg.lower() for seg in segments]
    if len(segments) == 1:
        whole = segments[0]
        return (lambda s: s.lower() == whole) if nocase else (lambda s: s == whole)
    head, middle, tail = segments[0], segments[1:-1], segments[-1]

    def matches(s: bytes) -> bool:
        if nocase:
            s = s.lower()
        if not s.startswith(head) or not s.endswith(tail):
            return False
        pos, end = len(head), len(s) - len(tail)
        for seg in middle:
            pos = s.find(seg, pos, end)
            if pos < 0:
                return False
            pos += len(seg)
        return True

    return matches


class _Vector:
    """The matcher of a large pattern with classes, on numpy arrays: each
    segment is the offsets of its positions that are not ``?`` and, for
    each, the row of a bit table (256 bits a row: the bytes it allows;
    rows 0-255 are the plain bytes themselves).  Building it costs a few
    list operations per token; no regular expression is compiled.

    The head and the tail are checked where they must stand, in chunks
    that grow, so a string that differs early costs little.  A middle
    segment is looked for in windows of places, the leftmost first and each
    4 times the last: in a wide window one vector operation per position of
    the segment checks every place at once, the rarest bytes of the string
    first, until few places are left; those (or a narrow window's) are then
    checked a block of positions at a time.  The work is what
    ``stringmatchlen`` does in the worst case (places x positions), in
    vector operations, and far less when some position is rare in the
    string.

    A middle segment of few nodes (``_SMALL``), no wider than
    ``WIDE_SEGMENT``, is looked for with a regular
    expression of its own instead, compiled the first time a string reaches
    it and kept: that costs about what one numpy search of it costs, and
    each later search a microsecond, where numpy costs tens of microseconds
    a segment a string whatever its width (a pattern of 700 ``*[ab]cd``,
    2100 nodes, against a key of 4 KiB: 0.1 s a key, 1 ms with these)."""

    _CHUNKS = (64, 4096)  # an anchored segment's first checks
    _WINDOW = 64  # places looked at first; then 4 times as many, and so on
    _SPARSE = 8  # fewer places than 1 in 8 left: check them a block at a time
    _DENSE = 4096  # or fewer than this
    _BLOCK = 1 << 20  # places x positions checked at once
    _SMALL = 16  # a middle segment of at most this many nodes: a regular expression

    def __init__(self, segments: list[list[bytes | int]], nocase: bool) -> None:
        import numpy as np  # here only: most processes never need it

        table = _NOCASE if nocase else _EXACT
        masks = list(table)
        ids: dict[int, int] = {}
        self.segments: list[tuple[int, Any, Any]] = []
        self.nocase = nocase
        # per middle segment, if small (and narrow: a regular expression's
        # search costs its width a place): its tokens, then its compiled search
        self.small: list[Any] = [None] * len(segments)
        for seg in segments:
            offsets: list[int] = []
            rows: list[int] = []
            o = 0
            for t in seg:
                if isinstance(t, bytes):
                    offsets.extend(range(o, o + len(t)))
                    rows.extend(t)
                    o += len(t)
                    continue
                if t != _ALL:
                    row = ids.get(t)
                    if row is None:
                        row = ids[t] = len(masks)
                        masks.append(t)
                    offsets.append(o)
                    rows.append(row)
                o += 1
            if (
                0 < len(self.segments) < len(segments) - 1
                and o <= WIDE_SEGMENT
                and _nodes(seg) <= self._SMALL
            ):
                self.small[len(self.segments)] = seg
            self.segments.append((o, np.array(offsets, np.int64), np.array(rows, np.int64)))
        self.bits = np.frombuffer(b"".join(m.to_bytes(32, "little") for m in masks), np.uint8).reshape(-1, 32)
        self.np = np

    def _allowed(self, rows: Any, values: Any) -> Any:
        """Whether each byte of ``values`` is allowed by its row."""
        return (self.bits[rows, values >> 3] >> (values & 7) & 1).astype(bool)

    def _at(self, segment: Any, text: Any, p: int) -> bool:
        _, offsets, rows = segment
        start = 0
        for stop in (*self._CHUNKS, len(offsets)):
            if (
                start < len(offsets)
                and not self._allowed(rows[start:stop], text[p + offsets[start:stop]]).all()
            ):
                return False
            start = stop
        return True

    def _find(self, segment: Any, text: Any, pos: int, end: int, counts: list[Any]) -> int:
        """The leftmost place of ``segment`` within ``text[pos:end]``, or -1."""
        np = self.np
        width, offsets, rows = segment
        n = end - width - pos + 1  # the places it may start at
        if n <= 0:
            return -1
        if len(offsets) > 1:  # the rarest in this string first
            if not counts:  # counted once per string, for all its segments
                counts.append(np.bincount(text, minlength=256))
            needed, inverse = np.unique(rows, return_inverse=True)
            hits = np.concatenate(  # 256 bytes a row at a time: a block of rows
                [
                    np.unpackbits(self.bits[needed[k : k + 4096]], axis=1, bitorder="little") @ counts[0]
                    for k in range(0, len(needed), 4096)
                ]
            )
            order = np.argsort(hits[inverse], kind="stable")
            offsets, rows = offsets[order], rows[order]
        start, size = pos, self._WINDOW  # the leftmost places first, as Redis
        while start < pos + n:
            stop = min(pos + n, start + size)
            place = self._first(offsets, rows, text, start, stop)
            if place >= 0:
                return place
            start, size = stop, size * 4
        return -1

    def _first(self, offsets: Any, rows: Any, text: Any, start: int, stop: int) -> int:
        """The leftmost place in ``[start, stop)`` where the segment's
        positions (``offsets``, ``rows``) all hold, or -1."""
        np = self.np
        n = stop - start
        ok = np.ones(n, bool)
        i = 0
        while i < len(offsets) and min(np.count_nonzero(ok), n // self._SPARSE) >= self._DENSE:
            row = np.unpackbits(self.bits[rows[i]], bitorder="little").astype(bool)
            ok &= row[text[start + offsets[i] : start + offsets[i] + n]]
            i += 1
        places = np.flatnonzero(ok) + start
        while i < len(offsets) and len(places):
            block = i + max(1, self._BLOCK // len(places))
            values = text[places[:, None] + offsets[None, i:block]]
            places = places[self._allowed(rows[None, i:block], values).all(axis=1)]
            i = block
        return int(places[0]) if len(places) else -1

    def __call__(self, s: bytes) -> bool:
        text = self.np.frombuffer(s, self.np.uint8)
        if len(self.segments) == 1:  # no star: the string is as wide as the pattern
            return self._at(self.segments[0], text, 0)
        head, *middle, tail = self.segments
        end = len(s) - tail[0]
        if not self._at(head, text, 0) or not self._at(tail, text, end):
            return False
        pos = head[0]
        counts: list[Any] = []  # how often each byte occurs in the string
        for k, segment in enumerate(middle, 1):
            small = self.small[k]
            if small is None:
                pos = self._find(segment, text, pos, end, counts)
            else:
                if isinstance(small, list):  # first reached: compiled
                    small = self.small[k] = re.compile(b"(?s:" + _regex(small, self.nocase) + b")").search
                found = small(s, pos, end)
                pos = found.start() if found else -1
            if pos < 0:
                return False
            pos += segment[0]
        return True


def glob_match(pattern: bytes, s: bytes, nocase: bool = False) -> bool:
    return compile_glob(pattern, nocase)(s)


def may_start_with(pattern: bytes, prefix: bytes) -> bool:
    """Whether ``pattern`` may match some string that starts with
    ``prefix`` (the channels of keyspace notifications, for one): an
    over-estimate, True as soon as a star is reached within ``prefix``."""
    i = 0
    for tok in (t for piece, _ in _pieces(pattern, False) for t in piece):  # read as far as needed
        if i >= len(prefix):
            return True
        if tok is _STAR:
            return True
        if isinstance(tok, bytes):
            part = prefix[i : i + len(tok)]
            if not tok.startswith(part):
                return False
            i += len(part)
        elif not tok >> prefix[i] & 1:
            return False
        else:
            i += 1
    return i >= len(prefix)  # else the pattern ends within the prefix
