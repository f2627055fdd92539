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
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

_STAR = None  # the token for "*"; every other token is a frozenset of bytes
_ALL = frozenset(range(256))
MAX_NESTING = 1000  # stringmatchlen's recursion limit (CVE-2024-31228)


def _signed(c: int) -> int:
    """A byte as C's (signed) ``char`` sees it."""
    return c - 256 if c > 127 else c


def _lower(c: int) -> int:
    """C's ``tolower`` in the C locale, on a signed char value."""
    return c + 32 if 65 <= c <= 90 else c


_EXACT = [frozenset((c,)) for c in range(256)]
_NOCASE = [frozenset(b for b in range(256) if _lower(b) == _lower(c)) for c in range(256)]


def _literal(c: int, nocase: bool) -> frozenset[int]:
    return _NOCASE[c] if nocase else _EXACT[c]


def _range(first: int, last: int, nocase: bool) -> set[int]:
    start, end = _signed(first), _signed(last)
    if start > end:
        start, end = end, start
    if nocase:
        start, end = _lower(start), _lower(end)
        return {b for b in range(256) if start <= _lower(_signed(b)) <= end}
    return {b for b in range(256) if start <= _signed(b) <= end}


def tokens(pattern: bytes, nocase: bool = False) -> list[frozenset[int] | None]:
    """The pattern read as ``stringmatchlen`` reads it: None for each ``*``
    (runs merged), else the set of bytes that one position may hold."""
    out: list[frozenset[int] | None] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 42:  # '*'
            if not out or out[-1] is not _STAR:
                out.append(_STAR)
        elif c == 63:  # '?'
            out.append(_ALL)
        elif c == 91:  # '['
            i += 1
            negate = i < n and pattern[i] == 94  # '^'
            if negate:
                i += 1
            allowed: set[int] = set()
            while True:
                if i < n and pattern[i] == 92 and n - i >= 2:  # '\\': exact
                    i += 1
                    allowed.add(pattern[i])
                elif i < n and pattern[i] == 93:  # ']'
                    break
                elif i >= n:
                    i -= 1  # an unclosed class ends the pattern
                    break
                elif n - i >= 3 and pattern[i + 1] == 45:  # 'x-y'
                    allowed |= _range(pattern[i], pattern[i + 2], nocase)
                    i += 2
                else:
                    allowed |= _literal(pattern[i], nocase)
                i += 1
            out.append(_ALL - allowed if negate else frozenset(allowed))
        else:
            if c == 92 and n - i >= 2:  # '\\' escapes the next byte
                i += 1
                c = pattern[i]
            out.append(_literal(c, nocase))
        i += 1
    return out


@lru_cache(maxsize=4096)
def _byte_class(allowed: frozenset[int]) -> bytes:
    """A regular expression for one byte out of ``allowed``."""
    if allowed == _ALL:
        return b"."
    if not allowed:
        return b"(?!)"
    if len(allowed) == 1:
        return b"\\x%02x" % next(iter(allowed))
    parts: list[list[int]] = []
    run: list[int] = []
    for b in sorted(allowed):
        if run and b == run[-1] + 1:
            run.append(b)
            continue
        if run:
            parts.append(run)
        run = [b]
    parts.append(run)
    body = b"".join(b"\\x%02x" % r[0] if len(r) == 1 else b"\\x%02x-\\x%02x" % (r[0], r[-1]) for r in parts)
    return b"[" + body + b"]"


def _never(s: bytes) -> bool:
    return False


@lru_cache(maxsize=1024)
def compile_glob(pattern: bytes, nocase: bool = False) -> Callable[[bytes], bool]:
    """A predicate that tells whether a byte string matches ``pattern``."""
    if not pattern:
        return lambda s: not s
    toks = tokens(pattern, nocase)
    stars = toks.count(_STAR)
    if stars - (toks[-1] is _STAR) > MAX_NESTING:
        return _never
    segments: list[list[bytes]] = [[]]
    for t in toks:
        if t is _STAR:
            segments.append([])
        else:
            segments[-1].append(_byte_class(t))
    if stars == 0:
        whole = re.compile(b"(?s:" + b"".join(segments[0]) + b")\\Z").match
        return lambda s: bool(s) and whole(s) is not None
    if stars == 1 and not segments[0] and not segments[1]:
        return bool  # "*": any non-empty string
    head, middle, tail = segments[0], segments[1:-1], segments[-1]
    width = sum(map(len, segments))  # the fewest bytes a match needs
    rx = b"".join(head) + b"".join(b"(?>.*?" + b"".join(seg) + b")" for seg in middle)
    front = re.compile(b"(?s:" + rx + b")").match
    if not tail:
        return lambda s: len(s) >= width and front(s) is not None
    back = re.compile(b"(?s:" + b"".join(tail) + b")").match
    size = len(tail)

    def matches(s: bytes) -> bool:
        n = len(s)
        return n >= width and back(s, n - size) is not None and front(s, 0, n - size) is not None

    return matches


def glob_match(pattern: bytes, s: bytes, nocase: bool = False) -> bool:
    return compile_glob(pattern, nocase)(s)


def may_start_with(pattern: bytes, prefix: bytes) -> bool:
    """Whether ``pattern`` may match some string that starts with
    ``prefix`` (the channels of keyspace notifications, for one): an
    over-estimate, True as soon as a star is reached within ``prefix``."""
    toks = tokens(pattern)
    for i, c in enumerate(prefix):
        if i >= len(toks):
            return False  # the pattern ends within the prefix
        allowed = toks[i]
        if allowed is _STAR:
            return True
        if c not in allowed:
            return False
    return True
