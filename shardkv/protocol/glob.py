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
be megabytes long (PSUBSCRIBE, KEYS): runs of plain bytes are taken whole,
and a class is a 256-bit mask built from cached ranges.  The regular
expressions, whose compilation costs microseconds per pattern byte, are
built only when a string is long enough to match (at least one byte per
token); Redis's matcher, too, gives up on a short string at once.  A
pattern with no class is matched with ``bytes.find``, no regular
expression at all, and a class repeated in a row is written once with a
count; plain bytes inside a class are read as whole runs too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import cache, lru_cache

# A token is None for "*", a bytes run of plain bytes (with ``nocase``, a
# letter stands for both its cases), or an int: the mask of the bytes one
# position may hold (bit c set: byte c allowed).
Token = bytes | int | None
_STAR = None
_ALL = (1 << 256) - 1
MAX_NESTING = 1000  # stringmatchlen's recursion limit (CVE-2024-31228)
_SPECIAL = re.compile(rb"[*?\[\\]")
_CLASS_SPECIAL = re.compile(rb"[\\\]-]")


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
    out: list[Token] = []
    run: list[bytes] = []  # plain bytes not yet added to out
    masks: dict[int, int] = {}  # one int object per distinct mask
    i, n = 0, len(pattern)
    while i < n:
        m = _SPECIAL.search(pattern, i)
        j = m.start() if m else n
        if j > i:
            run.append(pattern[i:j])
            i = j
            continue
        c = pattern[i]
        if c == 92:  # '\\' escapes the next byte; a last one is literal
            run.append(pattern[i + 1 : i + 2] if n - i >= 2 else b"\\")
            i += 2
            continue
        if run:
            out.append(b"".join(run))
            run.clear()
        if c == 42:  # '*'
            if not out or out[-1] is not _STAR:
                out.append(_STAR)
        elif c == 63:  # '?'
            out.append(_ALL)
        else:  # '['
            i += 1
            negate = i < n and pattern[i] == 94  # '^'
            if negate:
                i += 1
            allowed = 0
            while True:
                m = _CLASS_SPECIAL.search(pattern, i)  # plain bytes taken whole
                j = m.start() if m else n
                if j < n and pattern[j] == 45:  # the byte before "-" may start a range
                    j -= 1
                if j > i:
                    table = _NOCASE if nocase else _EXACT
                    for b in set(pattern[i:j]):
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
                elif n - i >= 3 and pattern[i + 1] == 45:  # 'x-y'
                    allowed |= _range(pattern[i], pattern[i + 2], nocase)
                    i += 2
                else:
                    allowed |= (_NOCASE if nocase else _EXACT)[pattern[i]]
                i += 1
            mask = _ALL ^ allowed if negate else allowed
            out.append(masks.setdefault(mask, mask))
        i += 1
    if run:
        out.append(b"".join(run))
    return out


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


def _never(s: bytes) -> bool:
    return False


@lru_cache(maxsize=1024)
def compile_glob(pattern: bytes, nocase: bool = False) -> Callable[[bytes], bool]:
    """A predicate that tells whether a byte string matches ``pattern``."""
    if not pattern:
        return lambda s: not s
    toks = _parse(pattern, nocase)
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
    built: list[Callable[[bytes], bool]] = []

    def matches(s: bytes) -> bool:
        if len(s) < width or (not stars and len(s) != width):
            return False
        if not built:  # compiled once, for the first string that may match
            built.append(_build(segments, nocase))
        return built[0](s)

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


def glob_match(pattern: bytes, s: bytes, nocase: bool = False) -> bool:
    return compile_glob(pattern, nocase)(s)


def may_start_with(pattern: bytes, prefix: bytes) -> bool:
    """Whether ``pattern`` may match some string that starts with
    ``prefix`` (the channels of keyspace notifications, for one): an
    over-estimate, True as soon as a star is reached within ``prefix``."""
    i = 0
    for tok in _parse(pattern):
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
