"""Redis's glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE, CONFIG GET).

``*`` any run, ``?`` any one byte, ``[abc]``, ``[^a]``, ``[a-z]`` classes,
and ``\\`` to escape the next byte, with every quirk of Redis's
``stringmatchlen``:

* a range may be written backwards (``[z-a]``), and its ends compare as
  C's signed ``char``, so ``[a-\\xff]`` means ``\\xff`` (-1) up to ``a``;
* a ``[`` with no closing ``]`` takes the rest of the pattern as its class,
  and ``-`` right before the closing ``]`` makes a range that swallows it
  (``[a-]`` is the range ``]``..``a`` and the class goes on);
* ``[]`` matches nothing and ``[^]`` any byte;
* a ``\\`` at the very end is a literal backslash;
* the empty string matches only the empty pattern, even ``*`` (KEYS and
  SCAN treat the single pattern ``*`` as "everything" before matching).

A pattern is read into tokens once (each a star or a set of the bytes one
position may hold), turned into a regular expression, and cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

_STAR = None  # the token for "*"; every other token is a frozenset of bytes
_ALL = frozenset(range(256))


def _signed(c: int) -> int:
    """A byte as C's (signed) ``char`` sees it."""
    return c - 256 if c > 127 else c


def _lower(c: int) -> int:
    """C's ``tolower`` in the C locale, on a signed char value."""
    return c + 32 if 65 <= c <= 90 else c


def _literal(c: int, nocase: bool) -> frozenset[int]:
    if nocase:
        low = _lower(c)
        return frozenset(b for b in range(256) if _lower(b) == low)
    return frozenset((c,))


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
                if i < n and pattern[i] == 92 and n - i >= 2:  # '\\' escapes
                    i += 1
                    allowed |= _literal(pattern[i], nocase)
                elif i < n and pattern[i] == 93:  # ']'
                    break
                elif i >= n:
                    i -= 1  # an unclosed class ends the pattern
                    break
                elif n - i >= 3 and pattern[i + 1] == 45:  # 'x-y'
                    start, end = _signed(pattern[i]), _signed(pattern[i + 2])
                    if start > end:
                        start, end = end, start
                    if nocase:
                        start, end = _lower(start), _lower(end)
                        allowed.update(b for b in range(256) if start <= _lower(_signed(b)) <= end)
                    else:
                        allowed.update(b for b in range(256) if start <= _signed(b) <= end)
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


def _byte_class(allowed: frozenset[int]) -> bytes:
    if allowed == _ALL:
        return b"."
    if not allowed:
        return b"(?!)"
    if len(allowed) == 1:
        return re.escape(bytes(allowed))
    return b"[" + b"".join(b"\\x%02x" % b for b in sorted(allowed)) + b"]"


@lru_cache(maxsize=1024)
def compile_glob(pattern: bytes, nocase: bool = False) -> Callable[[bytes], bool]:
    """A predicate that tells whether a byte string matches ``pattern``."""
    if not pattern:
        return lambda s: not s
    parts = [b".*" if t is _STAR else _byte_class(t) for t in tokens(pattern, nocase)]
    if parts == [b".*"]:
        return lambda s: bool(s)
    rx = re.compile(b"(?s:" + b"".join(parts) + b")\\Z")
    match = rx.match
    return lambda s: bool(s) and match(s) is not None


def glob_match(pattern: bytes, s: bytes, nocase: bool = False) -> bool:
    return compile_glob(pattern, nocase)(s)
