"""Reading numbers out of command arguments, with Redis's errors.

Shared by the acceptor and the workers.  Each reader raises
:class:`~shardkv.errors.CommandError` with the text Redis uses.
"""

from __future__ import annotations

import math

from shardkv import errors
from shardkv.errors import CommandError
from shardkv.resp import strict_int

__all__ = ["parse_int", "parse_float", "parse_float_or_none", "format_float", "strict_int"]


def parse_int(arg: bytes, message: str = errors.NOT_INTEGER) -> int:
    """A signed 64-bit integer, as Redis's ``getLongLongFromObject``."""
    v = strict_int(arg)
    if v is None:
        raise CommandError(message)
    return v


_FLOAT_OK = frozenset(b"0123456789+-.eE")


def parse_float_or_none(arg: bytes) -> float | None:
    """A double as Redis's ``strtod`` checks accept it, or None.

    ``inf``, ``+inf`` and ``-inf`` are allowed; NaN, spaces, ``_`` and
    trailing text are not.
    """
    if not arg or len(arg) > 5000:
        return None
    low = arg.lower()
    if low in (b"inf", b"+inf", b"infinity", b"+infinity"):
        return math.inf
    if low in (b"-inf", b"-infinity"):
        return -math.inf
    if not _FLOAT_OK.issuperset(arg):
        return None
    try:
        v = float(arg)
    except ValueError:
        return None
    return None if math.isnan(v) else v


def parse_float(arg: bytes, message: str = errors.NOT_FLOAT) -> float:
    v = parse_float_or_none(arg)
    if v is None:
        raise CommandError(message)
    return v


def format_float(v: float) -> bytes:
    """Format as INCRBYFLOAT/HINCRBYFLOAT do: ``%.17Lg``, no trailing zeros.

    Redis prints the long double with 17 significant digits; for a double
    the shortest repr is what that yields once trailing zeros go.
    """
    if math.isinf(v):
        return b"inf" if v > 0 else b"-inf"
    if v == int(v) and abs(v) < 1e17:
        return b"%d" % int(v)
    s = b"%.17g" % v
    if b"e" not in s and b"." in s:
        s = s.rstrip(b"0").rstrip(b".")
    # Prefer the shortest text that reads back to the same double.
    r = repr(v).encode()
    if b"e" not in r and float(r) == float(s) and len(r) < len(s):
        return r
    return s
