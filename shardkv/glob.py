"""Redis's glob patterns (KEYS, SCAN MATCH, PSUBSCRIBE, CONFIG GET).

``*`` any run, ``?`` any one byte, ``[abc]``, ``[^a]``, ``[a-z]`` classes,
and ``\\`` to escape the next byte, with the quirks of Redis's
``stringmatchlen``: a range may be written backwards, and a ``[`` with no
closing ``]`` takes the rest of the pattern as its class.  Patterns compile
to a regular expression once and are cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache


def _translate(pat: bytes) -> bytes:
    out = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i : i + 1]
        if c == b"*":
            while i + 1 < n and pat[i + 1 : i + 2] == b"*":
                i += 1
            out.append(b".*")
        elif c == b"?":
            out.append(b".")
        elif c == b"\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pat[i : i + 1]))
        elif c == b"[":
            i += 1
            negate = i < n and pat[i : i + 1] == b"^"
            if negate:
                i += 1
            items = []
            while i < n and pat[i : i + 1] != b"]":
                ch = pat[i : i + 1]
                if ch == b"\\" and i + 1 < n:
                    i += 1
                    items.append(re.escape(pat[i : i + 1]))
                elif i + 2 < n and pat[i + 1 : i + 2] == b"-":
                    lo, hi = pat[i], pat[i + 2]
                    if lo > hi:
                        lo, hi = hi, lo
                    items.append(re.escape(bytes([lo])) + b"-" + re.escape(bytes([hi])))
                    i += 2
                else:
                    items.append(re.escape(ch))
                i += 1
            if not items:
                # "[]" and "[^]" match nothing, as in Redis.
                out.append(b"(?!)" if not negate else b".")
            else:
                out.append(b"[" + (b"^" if negate else b"") + b"".join(items) + b"]")
        else:
            out.append(re.escape(c))
        i += 1
    return b"".join(out)


@lru_cache(maxsize=1024)
def compile_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """A predicate that tells whether a byte string matches ``pattern``."""
    if pattern == b"*":
        return lambda s: True
    rx = re.compile(b"(?s:" + _translate(pattern) + b")\\Z")
    return lambda s: rx.match(s) is not None


def glob_match(pattern: bytes, s: bytes) -> bool:
    return compile_glob(pattern)(s)
