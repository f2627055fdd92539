"""The libraries Redis loads into its Lua state: cjson, cmsgpack, bit, struct.

lupa's Lua 5.1 has none of them, so they are written here in Python,
following the C libraries Redis 7.0 bundles (lua-cjson 2.1.0, lua-cmsgpack,
LuaBitOp, Roberto Ierusalimschy's struct): the same output bytes, the same
option functions, errors with the same messages where scripts see them.

Each function is a Python callable held in a library table; a script can
call it, never reach its attributes (the engine's attribute filter).  An
error is a Python exception, which reaches the script as a Lua error whose
text is the exception's message.
"""

from __future__ import annotations

import json
import math
import struct as _struct
from typing import Any

from lupa import lua51

_lua_type = lua51.lua_type

# A value from or for Lua (bytes, numbers, bools, None, lupa's tables and
# functions): lupa gives it no static type, and the code dispatches on
# type(value).
LuaValue = Any


# Lua 5.1's LUAI_MAXCSTACK: the most values a C function's stack holds (its
# arguments and results), which Redis's struct and cmsgpack check.
LUA_STACK = 8000


class LibError(Exception):
    """A Lua error raised by a library function (the message is what the script sees)."""


class _NoValue:
    """An argument that was not given (Lua's LUA_TNONE: "no value"), unlike nil (None)."""

    __slots__ = ()


NO_VALUE = _NoValue()


def _arg(args: tuple, i: int) -> LuaValue:
    """Argument ``i`` (from 1), or NO_VALUE past the last one."""
    return args[i - 1] if len(args) >= i else NO_VALUE


def _str2d(text: bytes) -> float | None:
    """luaO_str2d: a string as Lua reads it as a number (strtod's decimal
    or hexadecimal forms, whitespace around it), else None."""
    try:
        word = text.split(b"\0", 1)[0].decode("ascii")
    except UnicodeDecodeError:
        return None
    if "_" in word:  # (Python's float() reads 1_000; strtod does not)
        return None
    try:
        return float(word)
    except ValueError:
        pass
    try:
        return float.fromhex(word)
    except ValueError:
        return None


def _num(value: LuaValue, name: str, i: int) -> float | int:
    if type(value) is int or type(value) is float:
        return value
    if type(value) is bytes:
        number = _str2d(value)
        if number is not None:
            return number
    raise LibError(f"bad argument #{i} to '{name}' (number expected, got {type_name(value)})")


def _lua_number_text(value: int | float) -> bytes:
    """lua_tolstring of a number: LUAI_NUMFMT, "%.14g"."""
    if type(value) is float and math.isnan(value):
        return b"-nan" if math.copysign(1.0, value) < 0 else b"nan"
    return b"%.14g" % value


def _check_string(args: tuple, i: int, name: str) -> bytes:
    """luaL_checklstring: a string, or a number as its text."""
    value: LuaValue = args[i - 1] if len(args) >= i else None
    if type(value) is bytes:
        return value
    if type(value) is int or type(value) is float:
        return _lua_number_text(value)
    got = "no value" if len(args) < i else type_name(value)
    raise LibError(f"bad argument #{i} to '{name}' (string expected, got {got})")


def _c_int(value: int) -> int:
    """A lua_Integer as C's ``(int)`` cast prints it."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _check_integer(args: tuple, i: int, name: str) -> int:
    """luaL_checkinteger: a number or a numeric string, truncated (x86-64's
    lua_number2integer; what no int64 holds becomes its minimum)."""
    value = args[i - 1] if len(args) >= i else None
    if value is None or type(value) is bool:
        got = "no value" if len(args) < i else type_name(value)
        raise LibError(f"bad argument #{i} to '{name}' (number expected, got {got})")
    number = _num(value, name, i)
    if type(number) is int:
        return number
    if math.isnan(number) or not -(2.0**63) <= number < 2.0**63:
        return -(1 << 63)
    return int(number)


def _opt_integer(args: tuple, i: int, name: str) -> int:
    """luaL_optinteger with 0 for none or nil."""
    if len(args) < i or args[i - 1] is None:
        return 0
    return _check_integer(args, i, name)


def type_name(value: LuaValue) -> str:
    if value is None:
        return "nil"
    if value is NO_VALUE:
        return "no value"
    if type(value) is bool:
        return "boolean"
    if type(value) in (int, float):
        return "number"
    if type(value) is bytes:
        return "string"
    return _lua_type(value) or "userdata"


# -- cjson ---------------------------------------------------------------------

_ESCAPES = {i: b"\\u%04x" % i for i in range(32)}
_ESCAPES.update({8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r"})
_ESCAPES.update({ord('"'): b'\\"', ord("\\"): b"\\\\", ord("/"): b"\\/", 127: b"\\u007f"})
_ESCAPE_TABLE = [_ESCAPES.get(i, bytes([i])) for i in range(256)]


def _fmt_g(value: float, precision: int) -> bytes:
    if value == int(value) and abs(value) < 1e15:
        return b"%d" % int(value)
    return b"%.*g" % (precision, value)


class CJson:
    def __init__(self, lua: LuaValue, null: LuaValue) -> None:
        self.lua = lua
        self.null = null
        self.is_null = lua.eval("function(null) return function(v) return rawequal(v, null) end end")(null)
        self.max_depth = 1000
        self.decode_max_depth = 1000
        self.precision = 14
        self.sparse_convert = False
        self.sparse_ratio = 2
        self.sparse_safe = 10
        self.encode_invalid = False
        self.decode_invalid = True

    # encode
    def encode(self, *args: LuaValue) -> bytes:
        if len(args) != 1:
            raise LibError("bad argument #1 to 'encode' (expected 1 argument)")
        out: list[bytes] = []
        self._encode(args[0], out, 0)
        return b"".join(out)

    def _encode(self, v: LuaValue, out: list[bytes], depth: int) -> None:
        t = type(v)
        if t is bytes:
            out.append(b'"' + b"".join(_ESCAPE_TABLE[c] for c in v) + b'"')
        elif t is bool:
            out.append(b"true" if v else b"false")
        elif t is int or t is float:
            out.append(self._number(v))
        elif v is None:
            out.append(b"null")
        elif _lua_type(v) == "table" and self.is_null(v):
            out.append(b"null")
        elif _lua_type(v) == "table":
            depth += 1
            if depth > self.max_depth:
                raise LibError("Cannot serialise, excessive nesting (%d)" % depth)
            n = self._array_length(v)
            if n > 0:
                out.append(b"[")
                for i in range(1, n + 1):
                    if i > 1:
                        out.append(b",")
                    self._encode(v[i], out, depth)
                out.append(b"]")
            else:
                out.append(b"{")
                first = True
                for k, val in v.items():
                    if not first:
                        out.append(b",")
                    first = False
                    if type(k) is bytes:
                        self._encode(k, out, depth)
                    elif type(k) in (int, float):
                        out.append(b'"' + self._number(k) + b'"')
                    else:
                        raise LibError("Cannot serialise table: table key must be a number or string")
                    out.append(b":")
                    self._encode(val, out, depth)
                out.append(b"}")
        else:
            raise LibError("Cannot serialise %s: type not supported" % type_name(v))

    def _number(self, v: float) -> bytes:
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            if not self.encode_invalid:
                raise LibError("Cannot serialise number: must not be NaN or Inf")
            return b"nan" if math.isnan(v) else (b"inf" if v > 0 else b"-inf")
        return _fmt_g(v, self.precision)

    def _array_length(self, t: LuaValue) -> int:
        """lua_array_length: n if the table is an array of 1..n, else -1."""
        max_index = 0
        items = 0
        for k in t.keys():
            if type(k) in (int, float) and k >= 1 and k == int(k):
                max_index = max(max_index, int(k))
                items += 1
            else:
                return -1
        if self.sparse_ratio > 0 and max_index > items * self.sparse_ratio and max_index > self.sparse_safe:
            if not self.sparse_convert:
                raise LibError("Cannot serialise table: excessively sparse array")
            return -1
        return max_index

    # decode
    def decode(self, *args: LuaValue) -> LuaValue:
        if len(args) != 1:
            raise LibError("bad argument #1 to 'decode' (expected 1 argument)")
        s = args[0]
        if type(s) in (int, float):
            s = _fmt_g(s, 14)
        if type(s) is not bytes:
            raise LibError("bad argument #1 to 'decode' (string expected, got %s)" % type_name(s))
        text = s.decode("utf-8", "surrogateescape")
        try:
            value = json.loads(
                text,
                parse_constant=self._constant,
                object_pairs_hook=lambda pairs: ("obj", pairs),
            )
        except RecursionError:
            raise LibError("Found too many nested data structures (1001) at character 1") from None
        except json.JSONDecodeError as e:
            raise LibError("Expected value but found invalid token at character %d" % (e.pos + 1)) from None
        return self._to_lua(value, 0)

    def _constant(self, name: str) -> float:
        if not self.decode_invalid:
            raise json.JSONDecodeError("invalid number", name, 0)
        return float(name.lower().replace("infinity", "inf"))

    def _to_lua(self, v: LuaValue, depth: int) -> LuaValue:
        if depth > self.decode_max_depth:
            raise LibError("Found too many nested data structures (%d) at character 1" % depth)
        if v is None:
            return self.null
        t = type(v)
        if t is str:
            return v.encode("utf-8", "surrogateescape")
        if t is bool or t is int or t is float:
            if t is int and abs(v) >= 2**53:
                return float(v)
            return v
        if t is list:
            return self.lua.table_from([self._to_lua(x, depth + 1) for x in v])
        if t is tuple:  # an object
            table = self.lua.table()
            for k, x in v[1]:
                table[k.encode("utf-8", "surrogateescape")] = self._to_lua(x, depth + 1)
            return table
        return None

    # options: each returns the setting now in effect
    def encode_max_depth(self, *args: LuaValue) -> int:
        if args and args[0] is not None:
            self.max_depth = int(_num(args[0], "encode_max_depth", 1))
        return self.max_depth

    def decode_max_depth_(self, *args: LuaValue) -> int:
        if args and args[0] is not None:
            self.decode_max_depth = int(_num(args[0], "decode_max_depth", 1))
        return self.decode_max_depth

    def encode_number_precision(self, *args: LuaValue) -> int:
        if args and args[0] is not None:
            n = int(_num(args[0], "encode_number_precision", 1))
            if not 1 <= n <= 14:
                raise LibError(
                    "bad argument #1 to 'encode_number_precision' (expected integer between 1 and 14)"
                )
            self.precision = n
        return self.precision

    def encode_keep_buffer(self, *args: LuaValue) -> bool:
        return True

    def encode_sparse_array(self, *args: LuaValue) -> tuple:
        if len(args) >= 1 and args[0] is not None:
            self.sparse_convert = bool(args[0])
        if len(args) >= 2 and args[1] is not None:
            self.sparse_ratio = int(_num(args[1], "encode_sparse_array", 2))
        if len(args) >= 3 and args[2] is not None:
            self.sparse_safe = int(_num(args[2], "encode_sparse_array", 3))
        return (self.sparse_convert, self.sparse_ratio, self.sparse_safe)

    def encode_invalid_numbers(self, *args: LuaValue) -> bool:
        if args and args[0] is not None:
            self.encode_invalid = bool(args[0])
        return self.encode_invalid

    def decode_invalid_numbers(self, *args: LuaValue) -> bool:
        if args and args[0] is not None:
            self.decode_invalid = bool(args[0])
        return self.decode_invalid


# -- bit (LuaBitOp) -----------------------------------------------------------------


def _tobit(x: LuaValue, name: str = "tobit", i: int = 1) -> int:
    v = _num(x, name, i)
    if type(v) is float:
        if math.isnan(v) or math.isinf(v):
            return 0 if math.isnan(v) else 0
        v = round(v)  # the 2^52+2^51 trick rounds to nearest, ties to even
    v = int(v) & 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def _signed(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def _bit_functions() -> dict[bytes, LuaValue]:
    def tobit(*a: LuaValue) -> int:
        return _tobit(_arg(a, 1))

    def bnot(*a: LuaValue) -> int:
        return _signed(~_tobit(_arg(a, 1), "bnot"))

    def fold(name: str, op):
        def f(*a: LuaValue) -> int:
            acc = _tobit(_arg(a, 1), name)
            for i, x in enumerate(a[1:], 2):
                acc = op(acc, _tobit(x, name, i))
            return _signed(acc)

        return f

    def shift(name: str, op):
        def f(*a: LuaValue) -> int:
            x = _tobit(_arg(a, 1), name) & 0xFFFFFFFF
            n = _tobit(_arg(a, 2), name, 2) & 31
            return _signed(op(x, n))

        return f

    def arshift(*a: LuaValue) -> int:
        x = _tobit(_arg(a, 1), "arshift")
        n = _tobit(_arg(a, 2), "arshift", 2) & 31
        return _signed(x >> n)

    def tohex(*a: LuaValue) -> bytes:
        x = _tobit(_arg(a, 1), "tohex") & 0xFFFFFFFF
        n = 8 if len(a) < 2 or a[1] is None else _tobit(a[1], "tohex", 2)
        digits = b"0123456789abcdef"
        if n < 0:
            n = -n
            digits = b"0123456789ABCDEF"
        if n > 8:
            n = 8
        out = bytearray(n)
        for i in range(n - 1, -1, -1):
            out[i] = digits[x & 15]
            x >>= 4
        return bytes(out)

    def bswap(*a: LuaValue) -> int:
        x = _tobit(_arg(a, 1), "bswap") & 0xFFFFFFFF
        return _signed(int.from_bytes(x.to_bytes(4, "little"), "big"))

    return {
        b"tobit": tobit,
        b"bnot": bnot,
        b"band": fold("band", lambda a, b: a & b),
        b"bor": fold("bor", lambda a, b: a | b),
        b"bxor": fold("bxor", lambda a, b: a ^ b),
        b"lshift": shift("lshift", lambda x, n: x << n),
        b"rshift": shift("rshift", lambda x, n: x >> n),
        b"arshift": arshift,
        b"rol": shift("rol", lambda x, n: (x << n) | (x >> (32 - n)) if n else x),
        b"ror": shift("ror", lambda x, n: (x >> n) | (x << (32 - n)) if n else x),
        b"bswap": bswap,
        b"tohex": tohex,
    }


# -- struct --------------------------------------------------------------------------

_STRUCT_SIZES = {
    ord("b"): 1,
    ord("B"): 1,
    ord("h"): 2,
    ord("H"): 2,
    ord("l"): 8,
    ord("L"): 8,
    ord("T"): 8,
    ord("f"): 4,
    ord("d"): 8,
}


class _Fmt:
    def __init__(self, fmt: bytes) -> None:
        self.fmt = fmt
        self.pos = 0
        self.little = True
        self.align = 1

    def items(self):
        fmt = self.fmt
        while self.pos < len(fmt):
            c = fmt[self.pos]
            self.pos += 1
            if c == ord(" "):
                continue
            if c == ord("<"):
                self.little = True
                continue
            if c == ord(">"):
                self.little = False
                continue
            if c == ord("="):
                self.little = True
                continue
            if c == ord("!"):
                self.align = self._number(8)
                continue
            if c in (ord("i"), ord("I"), ord("c")):
                size = self._number(4 if c != ord("c") else 1)
                if c != ord("c") and not 1 <= size <= 8:
                    raise LibError("integral size %d is larger than limit of 8" % size)
                yield c, size
                continue
            if c in _STRUCT_SIZES:
                yield c, _STRUCT_SIZES[c]
                continue
            if c in (ord("x"), ord("s")):
                yield c, 1 if c == ord("x") else 0
                continue
            raise LibError("invalid format option '%s'" % chr(c))

    def _number(self, default: int) -> int:
        fmt = self.fmt
        start = self.pos
        while self.pos < len(fmt) and 48 <= fmt[self.pos] <= 57:
            self.pos += 1
        return int(fmt[start : self.pos]) if self.pos > start else default

    def padding(self, size: int, offset: int) -> int:
        align = min(size, self.align)
        if align <= 1 or size == 0:
            return 0
        return (align - (offset & (align - 1))) & (align - 1)


def _struct_pack(*args: LuaValue) -> bytes:
    fmt = _arg(args, 1)
    if type(fmt) is not bytes:
        raise LibError("bad argument #1 to 'pack' (string expected, got %s)" % type_name(fmt))
    f = _Fmt(fmt)
    out = bytearray()
    i = 1
    for c, size in f.items():
        out += b"\0" * f.padding(size, len(out))
        if c == ord("x"):
            out += b"\0"
            continue
        # (past the arguments, Redis's pack reads the nil it pushed after them)
        arg = args[i] if i < len(args) else (None if i == len(args) else NO_VALUE)
        i += 1
        if c in (ord("f"), ord("d")):
            out += _struct.pack(("<" if f.little else ">") + chr(c), float(_num(arg, "pack", i)))
        elif c == ord("s") or c == ord("c"):
            if type(arg) in (int, float):
                arg = _fmt_g(arg, 14)  # type: ignore[arg-type]
            if type(arg) is not bytes:
                raise LibError("bad argument #%d to 'pack' (string expected, got %s)" % (i, type_name(arg)))
            if c == ord("s"):
                out += arg + b"\0"
            else:
                n = size if size else len(arg)
                if len(arg) < n:
                    raise LibError("bad argument #%d to 'pack' (string too short)" % i)
                out += arg[:n]
        else:
            v = int(_num(arg, "pack", i))
            out += (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little" if f.little else "big")
    return bytes(out)


def _struct_unpack(*args: LuaValue) -> tuple:
    fmt, data = _arg(args, 1), _arg(args, 2)
    if type(fmt) is not bytes:
        raise LibError("bad argument #1 to 'unpack' (string expected, got %s)" % type_name(fmt))
    if type(data) is not bytes:
        raise LibError("bad argument #2 to 'unpack' (string expected, got %s)" % type_name(data))
    pos = int(_num(args[2], "unpack", 3)) - 1 if len(args) > 2 and args[2] is not None else 0
    if pos < 0:
        raise LibError("bad argument #3 to 'unpack' (offset must be 1 or greater)")
    f = _Fmt(fmt)
    out: list[object] = []
    n = len(data)
    room = LUA_STACK - len(args) - 2  # Redis's luaL_checkstack(L, 2) per item
    for c, size in f.items():
        if len(out) > room:
            raise LibError("stack overflow (too many results)")
        pos += f.padding(size, pos)
        if c == ord("x"):
            pos += 1
            continue
        if c == ord("s"):
            end = data.find(b"\0", pos)
            if end < 0:
                raise LibError("unfinished string in data")
            out.append(data[pos:end])
            pos = end + 1
            continue
        if c == ord("c"):
            if size == 0:
                if not out or type(out[-1]) not in (int, float):
                    raise LibError("format 'c0' needs a previous size")
                size = int(out.pop())  # type: ignore[call-overload]
            if pos + size > n:
                raise LibError("data string too short")
            out.append(data[pos : pos + size])
            pos += size
            continue
        if pos + size > n:
            raise LibError("data string too short")
        chunk = data[pos : pos + size]
        if c in (ord("f"), ord("d")):
            out.append(_struct.unpack(("<" if f.little else ">") + chr(c), chunk)[0])
        else:
            v = int.from_bytes(chunk, "little" if f.little else "big")
            if c in (ord("b"), ord("h"), ord("l"), ord("i")) and v >= 1 << (8 * size - 1):
                v -= 1 << (8 * size)
            out.append(float(v) if abs(v) >= 2**53 else v)
        pos += size
    out.append(pos + 1)
    return tuple(out)


def _struct_size(*args: LuaValue) -> int:
    fmt = _arg(args, 1)
    if type(fmt) is not bytes:
        raise LibError("bad argument #1 to 'size' (string expected, got %s)" % type_name(fmt))
    f = _Fmt(fmt)
    total = 0
    for c, size in f.items():
        if c == ord("s") or (c == ord("c") and size == 0):
            raise LibError("options 'c0' - 's' have undefined sizes")
        total += f.padding(size, total) + size
    return total


# -- cmsgpack ----------------------------------------------------------------------

_MAX_NESTING = 16


class MsgPack:
    def __init__(self, lua: LuaValue) -> None:
        self.lua = lua

    def pack(self, *args: LuaValue) -> bytes:
        if not args:
            raise LibError("bad argument #0 to 'pack' (MessagePack pack needs input.)")
        out = bytearray()
        for v in args:
            self._pack(v, out, 0)
        return bytes(out)

    def _pack(self, v: LuaValue, out: bytearray, depth: int) -> None:
        t = type(v)
        if t is bytes:
            n = len(v)
            if n < 32:
                out.append(0xA0 | n)
            elif n <= 0xFF:
                out += b"\xd9" + bytes([n])
            elif n <= 0xFFFF:
                out += b"\xda" + n.to_bytes(2, "big")
            else:
                out += b"\xdb" + n.to_bytes(4, "big")
            out += v
        elif t is bool:
            out.append(0xC3 if v else 0xC2)
        elif t is int or (t is float and v == int(v) and abs(v) < 2**63):
            self._pack_int(int(v), out)
        elif t is float:
            f32 = _struct.unpack(">f", _struct.pack(">f", v))[0] if abs(v) < 3.4e38 or math.isinf(v) else None
            if f32 is not None and (f32 == v or (math.isnan(v) and math.isnan(f32))):
                out += b"\xca" + _struct.pack(">f", v)
            else:
                out += b"\xcb" + _struct.pack(">d", v)
        elif v is None:
            out.append(0xC0)
        elif _lua_type(v) == "table":
            if depth >= _MAX_NESTING:
                out.append(0xC0)
                return
            n = self._array_length(v)
            if n >= 0:
                self._header(n, 0x90, 0xDC, out)
                for i in range(1, n + 1):
                    self._pack(v[i], out, depth + 1)
            else:
                pairs = list(v.items())
                self._header(len(pairs), 0x80, 0xDE, out)
                for k, x in pairs:
                    self._pack(k, out, depth + 1)
                    self._pack(x, out, depth + 1)
        else:
            out.append(0xC0)

    @staticmethod
    def _header(n: int, fix: int, big: int, out: bytearray) -> None:
        if n < 16:
            out.append(fix | n)
        elif n <= 0xFFFF:
            out += bytes([big]) + n.to_bytes(2, "big")
        else:
            out += bytes([big + 1]) + n.to_bytes(4, "big")

    @staticmethod
    def _pack_int(n: int, out: bytearray) -> None:
        if n >= 0:
            if n <= 127:
                out.append(n)
            elif n <= 0xFF:
                out += b"\xcc" + bytes([n])
            elif n <= 0xFFFF:
                out += b"\xcd" + n.to_bytes(2, "big")
            elif n <= 0xFFFFFFFF:
                out += b"\xce" + n.to_bytes(4, "big")
            else:
                out += b"\xcf" + (n & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
        else:
            if n >= -32:
                out.append(n & 0xFF)
            elif n >= -128:
                out += b"\xd0" + (n & 0xFF).to_bytes(1, "big")
            elif n >= -32768:
                out += b"\xd1" + (n & 0xFFFF).to_bytes(2, "big")
            elif n >= -(2**31):
                out += b"\xd2" + (n & 0xFFFFFFFF).to_bytes(4, "big")
            else:
                out += b"\xd3" + (n & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")

    @staticmethod
    def _array_length(t: LuaValue) -> int:
        """table_is_an_array: keys 1..n, no holes; -1 otherwise."""
        count = 0
        max_index = 0
        for k in t.keys():
            if type(k) in (int, float) and k > 0 and k == int(k):
                count += 1
                max_index = max(max_index, int(k))
            else:
                return -1
        return max_index if max_index == count else -1

    # mp_unpack, mp_unpack_one, mp_unpack_limit and mp_unpack_full, as
    # lua_cmsgpack.c: unpack takes only its string (any further argument
    # stays on its stack), unpack_one and unpack_limit read their offset and
    # limit first, then keep only the string.
    def unpack(self, *args: LuaValue) -> tuple:
        return self._unpack(args, 0, 0, "unpack", len(args))

    def unpack_one(self, *args: LuaValue) -> tuple:
        offset = _opt_integer(args, 2, "unpack_one")
        return self._unpack(args[:1], 1, offset, "unpack_one", 1)

    def unpack_limit(self, *args: LuaValue) -> tuple:
        limit = _check_integer(args, 2, "unpack_limit")
        offset = _opt_integer(args, 3, "unpack_limit")
        return self._unpack(args[:1], limit, offset, "unpack_limit", 1)

    def _unpack(self, args: tuple, limit: int, offset: int, name: str, on_stack: int) -> tuple:
        """mp_unpack_full: ``on_stack`` values are on the C function's stack
        besides those it pushes (luaL_checkstack counts them)."""
        data = _check_string(args, 1, name)
        if offset < 0 or limit < 0:
            # (Redis prints the input's length as the limit.)
            message = "Invalid request to unpack with offset of %d and limit of %d."
            raise LibError(message % (_c_int(offset), _c_int(len(data))))
        if offset > len(data):
            raise LibError("Start offset %d greater than input length %d." % (_c_int(offset), len(data)))
        decode_all = not limit and not offset
        pos = offset
        out: list[object] = []
        room = LUA_STACK - on_stack  # luaL_checkstack(L, 1) before each value
        while pos < len(data) and (decode_all or len(out) < limit):
            if len(out) >= room:
                raise LibError(
                    "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)"
                )
            value, pos = self._decode(data, pos)
            out.append(value)
        if decode_all:
            return tuple(out)
        if len(out) + on_stack >= LUA_STACK:
            raise LibError("stack overflow (in function mp_unpack_full)")
        return (pos if pos < len(data) else -1, *out)

    def _decode(self, d: bytes, p: int) -> tuple[object, int]:
        def need(n: int) -> None:
            if p + n > len(d):
                raise LibError("Missing bytes in input.")

        need(1)
        c = d[p]
        p += 1
        if c <= 0x7F:
            return c, p
        if c >= 0xE0:
            return c - 256, p
        if 0xA0 <= c <= 0xBF or c in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
            if c <= 0xBF:
                n = c & 31
            else:
                w = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[c]
                need(w)
                n = int.from_bytes(d[p : p + w], "big")
                p += w
            need(n)
            return d[p : p + n], p + n
        if 0x90 <= c <= 0x9F or c in (0xDC, 0xDD):
            if c <= 0x9F:
                n = c & 15
            else:
                w = 2 if c == 0xDC else 4
                need(w)
                n = int.from_bytes(d[p : p + w], "big")
                p += w
            items = []
            for _ in range(n):
                v, p = self._decode(d, p)
                items.append(v)
            return self.lua.table_from(items), p
        if 0x80 <= c <= 0x8F or c in (0xDE, 0xDF):
            if c <= 0x8F:
                n = c & 15
            else:
                w = 2 if c == 0xDE else 4
                need(w)
                n = int.from_bytes(d[p : p + w], "big")
                p += w
            table = self.lua.table()
            for _ in range(n):
                k, p = self._decode(d, p)
                v, p = self._decode(d, p)
                if k is not None:
                    table[k] = v
            return table, p
        if c == 0xC0:
            return None, p
        if c in (0xC2, 0xC3):
            return c == 0xC3, p
        if c == 0xCA:
            need(4)
            return _struct.unpack(">f", d[p : p + 4])[0], p + 4
        if c == 0xCB:
            need(8)
            return _struct.unpack(">d", d[p : p + 8])[0], p + 8
        widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
        if c in widths:
            w = widths[c]
            need(w)
            v = int.from_bytes(d[p : p + w], "big", signed=c >= 0xD0)
            return (float(v) if abs(v) >= 2**53 else v), p + w
        raise LibError("Bad data format in input.")


# -- installing -----------------------------------------------------------------------

# The names of the libraries' functions, which the prelude calls through
# Lua functions (see luaprelude.lua): scripts are compiled with their tail
# calls made plain calls (see luabytecode.py).
FUNCTION_NAMES = frozenset(
    b"encode decode encode_max_depth decode_max_depth encode_number_precision encode_keep_buffer "
    b"encode_sparse_array encode_invalid_numbers decode_invalid_numbers "
    b"tobit tohex bnot band bor bxor lshift rshift arshift rol ror bswap "
    b"pack unpack size unpack_one unpack_limit".split()
)


def install(lua: LuaValue) -> LuaValue:
    """A Lua table of library name -> library table, for the prelude."""
    table = lua.table
    null = lua.eval("setmetatable({}, {__tostring = function() return 'null' end})")
    cj = CJson(lua, null)
    cjson = table()
    for name, fn in {
        b"encode": cj.encode,
        b"decode": cj.decode,
        b"encode_max_depth": cj.encode_max_depth,
        b"decode_max_depth": cj.decode_max_depth_,
        b"encode_number_precision": cj.encode_number_precision,
        b"encode_keep_buffer": cj.encode_keep_buffer,
        b"encode_sparse_array": cj.encode_sparse_array,
        b"encode_invalid_numbers": cj.encode_invalid_numbers,
        b"decode_invalid_numbers": cj.decode_invalid_numbers,
    }.items():
        cjson[name] = fn
    cjson[b"null"] = null
    cjson[b"_NAME"] = b"cjson"
    cjson[b"_VERSION"] = b"2.1.0"
    bit = table()
    for name, fn in _bit_functions().items():
        bit[name] = fn
    struct_ = table()
    struct_[b"pack"] = _struct_pack
    struct_[b"unpack"] = _struct_unpack
    struct_[b"size"] = _struct_size
    mp = MsgPack(lua)
    cmsgpack = table()
    cmsgpack[b"pack"] = mp.pack
    cmsgpack[b"unpack"] = mp.unpack
    cmsgpack[b"unpack_one"] = mp.unpack_one
    cmsgpack[b"unpack_limit"] = mp.unpack_limit
    cmsgpack[b"_NAME"] = b"cmsgpack"
    cmsgpack[b"_VERSION"] = b"lua-cmsgpack 0.4.0"
    for lib in (cjson, bit, struct_, cmsgpack):
        for k, v in lib.items():
            assert k in FUNCTION_NAMES or type(v) is bytes or _lua_type(v) is not None, k
    modules = table()
    modules[b"cjson"] = cjson
    modules[b"bit"] = bit
    modules[b"struct"] = struct_
    modules[b"cmsgpack"] = cmsgpack
    return modules
