"""Reading numbers out of command arguments, with Redis's errors.

Shared by the acceptor and the workers.  Each reader raises
:class:`~shardkv.protocol.errors.CommandError` with the text Redis uses.

INCRBYFLOAT and HINCRBYFLOAT compute in C's ``long double``, which on
x86-64 is the 80-bit extended format: a 64-bit significand and exponents
down to 2**-16445 (subnormal) and up to 2**16384.  Their replies show it
("0.1" + "0.2" is "0.3", not "0.30000000000000004"), so
:func:`incr_by_float` emulates that arithmetic exactly with integers: it
reads the decimal (or hexadecimal) text exactly, rounds it to the nearest
long double as ``strtold`` does, adds exactly, rounds again, and prints
with ``%.17Lf`` (17 decimals, ties to even, as glibc prints) before
stripping trailing zeros, as Redis's ``ld2string(..., LD_STR_HUMAN)``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import strict_int

__all__ = [
    "parse_int",
    "parse_int32",
    "parse_float",
    "parse_float_or_none",
    "format_float",
    "strict_int",
    "parse_long_double",
    "add_long_double",
    "format_long_double",
    "incr_by_float",
    "parse_cursor",
    "parse_scan_options",
    "parse_either",
    "strtod",
    "parse_count",
    "LLONG_MAX",
    "LLONG_MIN",
    "ULLONG_MAX",
]

# C's integer limits, which Redis checks arguments and results against (a C
# long is a long long on the 64-bit systems Redis runs on).
LLONG_MAX = 2**63 - 1
LLONG_MIN = -(2**63)
ULLONG_MAX = 2**64 - 1


def parse_cursor(arg: bytes) -> int:
    """A SCAN/HSCAN/SSCAN/ZSCAN cursor as Redis reads it, with ``strtoul``:
    an optional sign, then decimal digits (a minus wraps around); the empty
    string is 0."""
    digits = arg[1:] if arg[:1] in (b"+", b"-") else arg
    if not digits:
        if arg:
            raise CommandError(errors.INVALID_CURSOR)
        return 0
    if not digits.isdigit():
        raise CommandError(errors.INVALID_CURSOR)
    value = int(digits)
    if value >= 2**64:
        raise CommandError(errors.INVALID_CURSOR)
    return -value % 2**64 if arg[:1] == b"-" else value


def parse_scan_options(
    args: list[bytes], start: int, with_type: bool = False
) -> tuple[int, bytes | None, bytes | None]:
    """``[MATCH pattern] [COUNT count]``, and ``[TYPE type]`` for SCAN
    (``with_type``), from ``args[start:]`` -> (count, pattern, type).

    The pattern is None when there is none or it is ``*`` (every member);
    the type is None when not given.
    """
    count = 10
    pattern = kind = None
    j = start
    n = len(args)
    while j < n:
        opt = args[j].upper()
        if j + 1 >= n:
            raise CommandError(errors.SYNTAX)
        if opt == b"COUNT":
            count = parse_int(args[j + 1])
            if count < 1:
                raise CommandError(errors.SYNTAX)
        elif opt == b"MATCH":
            pattern = None if args[j + 1] == b"*" else args[j + 1]
        elif opt == b"TYPE" and with_type:
            kind = args[j + 1]
        else:
            raise CommandError(errors.SYNTAX)
        j += 2
    return count, pattern, kind


def parse_either(arg: bytes, yes: bytes, no: bytes) -> bool:
    """One of two keywords, in any case: True for ``yes``, False for ``no``,
    else Redis's syntax error (LEFT | RIGHT, BEFORE | AFTER, BIT | BYTE)."""
    word = arg.upper()
    if word == yes:
        return True
    if word == no:
        return False
    raise CommandError(errors.SYNTAX)


def parse_int(arg: bytes, message: str = errors.NOT_INTEGER) -> int:
    """A signed 64-bit integer, as Redis's ``getLongLongFromObject``."""
    v = strict_int(arg)
    if v is None:
        raise CommandError(message)
    return v


def parse_int32(arg: bytes) -> int:
    """A C ``int``, as Redis's ``getIntFromObjectOrReply``."""
    v = parse_int(arg)
    if not -(2**31) <= v < 2**31:
        raise CommandError(errors.INT_OUT_OF_RANGE)
    return v


def parse_float_or_none(arg: bytes) -> float | None:
    """A double as Redis's ``string2d`` (``getDoubleFromObject``) reads it,
    or None.

    ``strtod`` over the whole argument: decimal and hexadecimal notation,
    ``inf``/``infinity`` in any case; NaN, spaces, trailing text, and
    values that overflow to infinity (``1e309``) or underflow to zero
    (``1e-400``) are refused.
    """
    parsed = strtod(arg) if arg else None
    if parsed is None or parsed[1] or math.isnan(parsed[0]):
        return None
    return parsed[0]


def parse_float(arg: bytes, message: str = errors.NOT_FLOAT) -> float:
    v = parse_float_or_none(arg)
    if v is None:
        raise CommandError(message)
    return v


# -- long double (x86 80-bit extended) ---------------------------------------

LongDouble = Fraction | float  # a finite value is exact; float only for +-inf

_MANT_BITS = 64  # significand bits, the leading one included
_EMIN = -16382  # exponent of the smallest normal number
_EMAX = 16383  # exponent of the largest finite number
LDBL_MAX = Fraction(((1 << _MANT_BITS) - 1) << (_EMAX - _MANT_BITS + 1))
MAX_LONG_DOUBLE_CHARS = 5 * 1024  # Redis refuses longer float arguments

_DECIMAL = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?")
_INF = {b"inf": math.inf, b"+inf": math.inf, b"-inf": -math.inf}
_INF.update({b"infinity": math.inf, b"+infinity": math.inf, b"-infinity": -math.inf})


def _exponent(text: bytes | None) -> int:
    """An exponent's value, clamped far past any finite long double."""
    if not text:
        return 0
    negative = text[:1] == b"-"
    text = text.lstrip(b"+-").lstrip(b"0") or b"0"
    value = int(text) if len(text) <= 9 else 10**9
    return -value if negative else value


def round_long_double(x: Fraction) -> Fraction | None:
    """``x`` rounded to the nearest long double, ties to even; None past the
    largest finite one (where ``strtold`` and addition give infinity)."""
    if not x:
        return x
    n, d = abs(x.numerator), x.denominator
    e = n.bit_length() - d.bit_length()  # floor(log2 |x|) is e or e - 1
    if (n << max(-e, 0)) < (d << max(e, 0)):
        e -= 1
    shift = max(e, _EMIN) - _MANT_BITS + 1  # the unit in the last place is 2**shift
    if shift >= 0:
        q, r = divmod(n, d << shift)
        r2, den = r << 1, d << shift
    else:
        q, r = divmod(n << -shift, d)
        r2, den = r << 1, d
    if r2 > den or (r2 == den and q & 1):
        q += 1
    value = Fraction(q << shift) if shift >= 0 else Fraction(q, 1 << -shift)
    if value > LDBL_MAX:
        return None
    return -value if x.numerator < 0 else value


def parse_long_double(arg: bytes) -> LongDouble | None:
    """``arg`` as Redis's ``string2ld`` reads it (``strtold``), or None.

    Decimal and C99 hexadecimal notation, ``inf``/``infinity`` in any case;
    NaN, spaces, trailing text, and values that overflow to infinity or
    underflow to zero are refused.
    """
    if not arg or len(arg) >= MAX_LONG_DOUBLE_CHARS:
        return None
    m = _HEX.fullmatch(arg)
    if m is not None:
        sign, whole, frac, exp = m.groups()
        frac = frac or b""
        if not whole and not frac:
            return None
        digits = int(whole + frac, 16) if whole + frac else 0
        exp2 = _exponent(exp) - 4 * len(frac)
        if not digits:
            return Fraction(0)
        magnitude = digits.bit_length() + exp2  # |x| < 2**magnitude
        if magnitude > _EMAX + 2:
            return None
        if magnitude < _EMIN - _MANT_BITS - 2:
            return None  # underflows to zero
        value = Fraction(digits << exp2) if exp2 >= 0 else Fraction(digits, 1 << -exp2)
    else:
        m = _DECIMAL.fullmatch(arg)
        if m is None:
            low = arg.lower()
            return _INF.get(low)  # nan and anything else: None
        sign, whole, frac, exp = m.groups()
        frac = frac or b""
        if not whole and not frac:
            return None
        significant = (whole + frac).lstrip(b"0")
        if not significant:
            return Fraction(0)
        digits = _int_from_digits(significant)
        exp10 = _exponent(exp) - len(frac)
        magnitude = len(significant) + exp10  # |x| < 10**magnitude
        if magnitude > 4934:
            return None  # past LDBL_MAX (about 1.19e4932)
        if magnitude < -4953:
            return None  # below half the smallest subnormal (3.6e-4951)
        value = Fraction(digits * 10**exp10) if exp10 >= 0 else Fraction(digits, 10**-exp10)
    rounded = round_long_double(value)
    if rounded is None or not rounded:
        return None  # ERANGE: overflow to infinity, or underflow to zero
    return -rounded if sign == b"-" else rounded


def add_long_double(a: LongDouble, b: LongDouble) -> Fraction | None:
    """``a + b`` in long double arithmetic; None for NaN or infinity."""
    if type(a) is float or type(b) is float:
        return None  # an infinity in, so infinity or NaN out
    return round_long_double(a + b)  # type: ignore[arg-type]  # both are Fractions here


_E17 = 10**17
_CHUNK = 4000  # decimal digits per piece: Python limits int<->str to 4300 digits
_E_CHUNK = 10**_CHUNK


def _int_from_digits(digits: bytes) -> int:
    """``int(digits)`` for any number of decimal digits."""
    value = 0
    for i in range(0, len(digits), _CHUNK):
        piece = digits[i : i + _CHUNK]
        value = value * 10 ** len(piece) + int(piece)
    return value


def _digits_of(n: int) -> bytes:
    """``b"%d" % n`` for any size of non-negative ``n``."""
    if n < _E_CHUNK:
        return b"%d" % n
    high, low = divmod(n, _E_CHUNK)
    return _digits_of(high) + b"%0*d" % (_CHUNK, low)


def format_long_double(v: Fraction) -> bytes:
    """``%.17Lf`` without trailing zeros, as Redis's ``LD_STR_HUMAN``."""
    n, d = abs(v.numerator), v.denominator
    q, r = divmod(n * _E17, d)
    r2 = r << 1
    if r2 > d or (r2 == d and q & 1):
        q += 1
    whole, frac = divmod(q, _E17)
    text = _digits_of(whole)
    if frac:
        text += (b".%017d" % frac).rstrip(b"0")
    if v < 0 and q:
        text = b"-" + text
    return text


def incr_by_float(current: bytes | None, increment: bytes, message: str = errors.NOT_FLOAT) -> bytes:
    """INCRBYFLOAT's new value text: ``current`` (None for a missing key)
    plus ``increment``.  Raises ``message`` when either is not a float, and
    Redis's NaN-or-infinity error when the sum is not finite."""
    value = Fraction(0) if current is None else parse_long_double(current)
    incr = parse_long_double(increment)
    if value is None or incr is None:
        raise CommandError(message)
    total = add_long_double(value, incr)
    if total is None:
        raise CommandError(errors.INCR_NAN_INF)
    return format_long_double(total)


def format_float(v: float) -> bytes:
    """A double in the form INCRBYFLOAT/HINCRBYFLOAT print: ``%.17Lf``
    without trailing zeros (``inf``/``-inf`` for infinities)."""
    if math.isinf(v):
        return b"inf" if v > 0 else b"-inf"
    return format_long_double(Fraction(v))


# What C's strtod accepts: decimal and hexadecimal notation, inf/infinity
# and nan in any case.
_NUMBER = re.compile(
    rb"""[+-]?(?:
        0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?
      | (?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
      | [iI][nN][fF](?:[iI][nN][iI][tT][yY])?
      | [nN][aA][nN](?:\([0-9A-Za-z_]*\))?
    )""",
    re.X,
)


def strtod(text: bytes) -> tuple[float, bool] | None:
    """``text`` read whole as ``strtod`` reads it: (value, out of range), or
    None when it is not one number.  Out of range means the text overflowed
    to infinity or underflowed to zero (``strtod``'s ERANGE cases that
    Redis refuses)."""
    if _NUMBER.fullmatch(text) is None:
        return None
    body = text.lstrip(b"+-")
    first = body[:1]
    if first in b"nN":
        return math.nan, False
    if first in b"iI":
        value = math.inf
        erange = False
    else:
        hexa = body[1:2] in (b"x", b"X")
        if hexa:
            try:
                value = float.fromhex(body.decode())
            except OverflowError:
                value = math.inf
            mantissa = body[2:].split(b"p")[0].split(b"P")[0]
        else:
            value = float(body)
            mantissa = body.split(b"e")[0].split(b"E")[0]
        erange = value == math.inf or (value == 0.0 and mantissa.strip(b"0.") != b"")
    return (-value if text[:1] == b"-" else value), erange


def parse_count(arg: bytes) -> int:
    """A HRANDFIELD/SRANDMEMBER count: a long, but not LONG_MIN."""
    n = parse_int(arg)
    if n < -LLONG_MAX:
        raise CommandError(errors.VALUE_OUT_OF_RANGE_BETWEEN % (-LLONG_MAX, LLONG_MAX))
    return n


def parse_usage_samples(rest: list[bytes], default: int) -> int:
    """MEMORY USAGE's options after the key (``[SAMPLES count]``, which may
    repeat): the count, ``default`` without one (0: every element), as
    Redis's ``memoryCommand`` reads them, its errors first."""
    samples = default
    while rest:
        if rest[0].lower() == b"samples" and len(rest) >= 2:
            samples = parse_int(rest[1])
            if samples < 0:
                raise CommandError(errors.SYNTAX)
            rest = rest[2:]
        else:
            raise CommandError(errors.SYNTAX)
    return samples
