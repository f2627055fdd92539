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

import math
import re
import struct as _struct
from collections.abc import Callable, Iterator
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


# Each Lua state's check that a value of so many bytes fits in it before
# Python builds it there (by id of its LuaRuntime; see the worker's
# Engine._require): lupa pushes outside any protected call, and a value
# that does not fit would hang or abort the process.
ROOM: dict[int, Callable[[int], None]] = {}


# lupa's read of a table's value from Python (``t[k]``) makes a C closure
# (40 bytes) outside any protected call, garbage at once: a loop of reads
# measures its state again every so many (20 KB of closures, twice that at
# most between two measures, within PUSH_SLACK), which a full collection
# frees when the state is near its limit (see for_lua).
READS = 512


def _room(lua: LuaValue, size: int) -> None:
    check = ROOM.get(id(lua))
    if check is not None:
        check(size)


# What a decoder (cjson.decode, cmsgpack.unpack) counts for what it puts
# in Lua (Lua 5.1, 64 bits), each an upper bound: a string, besides its
# bytes (its header, 24 bytes, and its NUL); a table (56 bytes) and
# lupa's reference to it in the registry.
_LUA_STRING = 48
_LUA_TABLE = 128
# The decoder measures the state again after so many bytes.
_CHUNK = 1 << 20
# Room kept besides, never counted down: the registry's growth (the
# decoder holds a reference for each open table only, at most 4000 with
# LUA_STACK's slots) and the string table's (a doubling allocates 16 bytes
# for each string in the state: the decoder's, and at most one for each
# 25 bytes of what was there before).
_REF_ROOM = 256 * 1024


class _Room:
    """A decoder's account of its Lua state: before each push it takes
    what the push may allocate at most (the string, the table, the array
    or hash part it grows), and the state is measured again whenever that
    exceeds what the last measure left (:data:`_CHUNK` or more).  Between
    two measures only the decoder runs, so the state cannot grow by more
    than what it took: what it builds always fits, where one estimate of
    the whole input (32 bytes of Lua for each byte of JSON) refused inputs
    of a few MB that Redis decodes.  The count is of the decoder's own
    pushes: a table it has finished costs nothing more."""

    __slots__ = ("lua", "left", "strings", "before")

    def __init__(self, lua: LuaValue) -> None:
        self.lua = lua
        self.left = 0
        self.strings = 0
        used = lua.get_memory_used() if ROOM.get(id(lua)) is not None else None
        self.before = (used or 0) // 25

    def take(self, size: int) -> None:
        """Count ``size`` bytes, measuring the state first if they exceed
        what the last measure left (its check fails the script)."""
        if size > self.left:
            self.left = max(size, _CHUNK)
            _room(self.lua, self.left + _REF_ROOM + 32 * (self.before + self.strings))
        self.left -= size

    def string(self, value: object) -> int:
        """What pushing ``value`` may allocate: a string's, nothing for a
        number, a boolean or a table already built."""
        if type(value) is bytes:
            self.strings += 1
            return _LUA_STRING + len(value)
        return 0

    def append(self, table: LuaValue, n: int, value: object) -> None:
        """``table[n] = value`` for the next ``n`` of an array: Lua 5.1
        doubles its array part (16 bytes a slot) when n - 1 is a power of 2."""
        size = self.string(value)
        if (n - 1) & (n - 2) == 0:
            size += 16 * n
        self.take(size)
        table[n] = value

    def put(self, table: LuaValue, seen: set, key: object, value: object) -> None:
        """``table[key] = value`` for a map's entry: a new key's string, and
        its hash part's doubling (40 bytes a node, the old part still
        there) when the count of keys less one is a power of 2 (``seen``:
        the keys set so far; a key of another kind than a number, a string
        or a boolean counts as new, as 1 and 1.0 count as two)."""
        size = self.string(value)
        t = type(key)
        mark = (t, key) if t is bytes or t is int or t is float or t is bool else (None, len(seen))
        if mark not in seen:
            seen.add(mark)
            size += self.string(key)
            m = len(seen)
            if (m - 1) & (m - 2) == 0:
                size += 128 * m
        self.take(size)
        table[key] = value

    def table(self) -> LuaValue:
        """A new empty table."""
        self.take(_LUA_TABLE)
        return self.lua.table()


class LibError(Exception):
    """A Lua error raised by a library function (the message is what the script sees)."""


class Raised(Exception):
    """What a Python callable raises through Lua: one of a few objects made
    once, each pinned in every script's Lua state (the worker's
    ``_VM.pinned``, made before any Lua code runs there), never a new one
    per error.

    lupa hands Lua an exception as a userdata that wraps it, with a __gc
    metamethod: a new one per error would be garbage the collector
    finalizes later, in whatever allocation its step comes at, inside a
    Python callable too (a table lupa makes there for redis.call's error).
    Lua 5.1 calls a finalizer as any C call (luaD_call): 200 C calls deep
    (an xpcall handler that errors is called again for its own error, each
    a C call deeper) it raises "C stack overflow" there, and that longjmp
    leaves the callable's Python frames and lupa's hold on the GIL behind:
    lupa then waits for the GIL it holds itself, the worker hung for good
    (a jump out of a Python frame that Lua's limit on memory makes alike:
    see Engine._check_room).  The pinned userdata is never garbage, and
    lupa finds it for the object again: an error allocates nothing.  (Pinned
    it must be: lupa keys its wrappers by the object's address, and an
    object pushed again while its old wrapper waits for its finalizer gets
    a new one that the finalizer then unregisters; its registry slot
    reused, a later push of the object found another object's userdata.)
    Its text (``tostring`` of the error, in Lua) is that of the error it
    stands for."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.text = text

    def __str__(self) -> str:
        return self.text


# What any other error of a library's callable reaches Lua as (for_lua).
LIBRARY_ERROR = Raised()


def _pushed(value: object) -> int:
    """What lupa may allocate in Lua to push ``value``, a Python
    callable's result, after the callable returned: each string with its
    header, a stack slot for each value of a tuple (its values, with
    ``unpack_returned_tuples``); nothing for a number, a boolean, nil or a
    Lua value."""
    if type(value) is bytes:
        return _LUA_STRING + len(value)
    if type(value) is tuple:
        return sum(_pushed(v) + 16 for v in value)
    return 0


def for_lua(f: Callable[..., object], lua: LuaValue) -> Callable[..., object]:
    """``f`` as a Python callable for ``lua``: its error leaves with no lupa
    object behind it, as a pinned :class:`Raised`, and its result goes in
    only if it fits (ROOM).

    lupa allocates in Lua outside any protected call: the result it
    pushes after ``f`` returned, and while ``f`` runs, a C closure for each
    of its own protected calls (a table's read).  One that does not fit in
    the state's limit (a script that filled its Lua memory, then called
    redis.sha1hex or cjson.encode) is a failed allocation there, a jump
    over the callable's Python frames with lupa holding the GIL, which
    left the worker hung for good, deaf to SIGTERM, or crashed it.  The
    state's check, before ``f`` (PUSH_SLACK to spare) and before its
    result goes in, fails the script first, with Lua's "not enough
    memory", as the libraries' own builders do (_Room).

    lupa makes the Lua values a callable gets (tables, functions) objects
    bound to the ``lua_State`` that called it, a coroutine's too, and its
    error reaches Lua as the exception itself (a userdata), which a dead
    coroutine keeps until Lua's collector frees it.  A frame of the
    exception's traceback that still held such an object would free it
    then, from inside the collector, after its coroutine's state is gone:
    the worker's SIGSEGV.  So the error goes on bare: no traceback but this
    frame, which no longer holds the arguments, no context, no cause (what
    the callable raises carries text only, never a Lua value)."""

    key = id(lua)  # (not the runtime itself: see install's release)

    def call(*args: LuaValue) -> object:
        try:
            check = ROOM.get(key)
            if check is not None:
                # (room first for what lupa allocates while f runs, each
                # read of a table a C closure of its protected call)
                check(0)
            value = f(*args)
            if check is not None:
                # (_pushed, inline for the usual result: a string)
                size = _LUA_STRING + len(value) if type(value) is bytes else _pushed(value)
                if size:
                    check(size)
            return value
        except BaseException as e:  # (outside it, raising sets no context)
            error = e
        del args
        if not isinstance(error, Raised):
            LIBRARY_ERROR.text = str(error)
            error = LIBRARY_ERROR
        error.__traceback__ = error.__context__ = error.__cause__ = None
        raise error

    call.__name__ = getattr(f, "__name__", "call")
    call.__doc__ = f.__doc__
    return call


# A LibError's message that starts with BARE is one Lua itself raises from
# inside the C function (lua_settable's "table index is nil"): the prelude
# gives it no position, as luaG_runerror gives none in a C function.
BARE = "\0"


class _NoValue:
    """An argument that was not given (Lua's LUA_TNONE: "no value"), unlike nil (None)."""

    __slots__ = ()


NO_VALUE = _NoValue()


def _arg(args: tuple, i: int) -> LuaValue:
    """Argument ``i`` (from 1), or NO_VALUE past the last one."""
    return args[i - 1] if len(args) >= i else NO_VALUE


_HEX_WORD = re.compile(r"\s*[+-]?0[xX]")


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
    if not _HEX_WORD.match(word):  # (float.fromhex reads "abc"; strtod wants 0x)
        return None
    try:
        return float.fromhex(word)
    except (ValueError, OverflowError):
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
    if type(value).__name__ == "_LuaCoroutineFunction":  # (how lupa hands Python a coroutine)
        return "thread"
    # (a Python object: one of the API's callables, which Redis's are C functions)
    return _lua_type(value) or ("function" if callable(value) else "userdata")


# -- cjson ---------------------------------------------------------------------
# lua_cjson.c 2.1.0 as Redis 7.0 bundles it: the same output, tokens, error
# texts and option functions.  Each cjson table (the library's, and each
# that cjson.new makes) has a configuration of its own, which its option
# functions change for the later scripts too, as Redis's one Lua state
# keeps it.

_ESCAPES = {i: b"\\u%04x" % i for i in range(32)}
_ESCAPES.update({8: b"\\b", 9: b"\\t", 10: b"\\n", 12: b"\\f", 13: b"\\r"})
_ESCAPES.update({ord('"'): b'\\"', ord("\\"): b"\\\\", ord("/"): b"\\/", 127: b"\\u007f"})
_ESCAPE_TABLE = [_ESCAPES.get(i, bytes([i])) for i in range(256)]


def _json_string(v: bytes) -> bytes:
    """json_append_string."""
    return b'"' + b"".join(_ESCAPE_TABLE[c] for c in v) + b'"'


# The decoder's tokens, by the names its errors show.
_OBJ_BEGIN, _OBJ_END, _ARR_BEGIN, _ARR_END = "T_OBJ_BEGIN", "T_OBJ_END", "T_ARR_BEGIN", "T_ARR_END"
_STRING, _NUMBER, _BOOLEAN, _NULL = "T_STRING", "T_NUMBER", "T_BOOLEAN", "T_NULL"
_COLON, _COMMA, _END, _ERROR = "T_COLON", "T_COMMA", "T_END", "T_ERROR"
# json_create_config's ch2token: what a byte starts ("" needs a closer look).
_CH2TOKEN = [_ERROR] * 256
for _ch, _kind in zip(
    b"{}[],:\0", (_OBJ_BEGIN, _OBJ_END, _ARR_BEGIN, _ARR_END, _COMMA, _COLON, _END), strict=True
):
    _CH2TOKEN[_ch] = _kind
for _ch in b'fiInNt"+-0123456789':
    _CH2TOKEN[_ch] = ""
_WHITESPACE = frozenset(b" \t\n\r")
_ESCAPE2CHAR = {
    ord('"'): 34,
    ord("\\"): 92,
    ord("/"): 47,
    ord("b"): 8,
    ord("t"): 9,
    ord("n"): 10,
    ord("f"): 12,
    ord("r"): 13,
}
# What strtod reads of a number: decimal, hexadecimal, inf[inity], nan[(...)].
_STRTOD = re.compile(
    rb"[+-]?(?:(0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?)"
    rb"|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    rb"|([iI][nN][fF](?:[iI][nN][iI][tT][yY])?)|([nN][aA][nN](?:\([0-9A-Za-z_]*\))?))"
)
# A token: (kind, value, index of its start or of the error, index past it).
_Token = tuple


def _strtod(d: bytes, p: int) -> tuple[float, int] | None:
    """strtod at ``d[p:]``: the number and the index past it, or None."""
    m = _STRTOD.match(d, p)
    if m is None:
        return None
    text = m.group()
    negative = text[:1] == b"-"
    if m.group(1):
        try:
            return float.fromhex(text.decode()), m.end()
        except OverflowError:
            return (-math.inf if negative else math.inf), m.end()
    if m.group(2):
        return (-math.inf if negative else math.inf), m.end()
    if m.group(3):
        return (-math.nan if negative else math.nan), m.end()
    return float(text), m.end()


def _is_invalid_number(d: bytes, p: int) -> bool:
    """json_is_invalid_number: a number strict JSON does not allow."""
    if d[p] == ord("+"):
        return True
    if d[p] == ord("-"):
        p += 1
    c = d[p]
    if c == ord("0"):
        c2 = d[p + 1] if p + 1 < len(d) else 0
        return (c2 | 0x20) == ord("x") or ord("0") <= c2 <= ord("9")
    if c <= ord("9") or c >= 0x80:  # (C's signed char: bytes over 127 are below '9')
        return False
    return d[p : p + 3].lower() in (b"inf", b"nan")


def _hex4(d: bytes, p: int) -> int:
    """decode_hex4: four hexadecimal digits at ``d[p:]``, or -1."""
    value = 0
    for c in d[p : p + 4]:
        if ord("0") <= c <= ord("9"):
            digit = c - ord("0")
        elif ord("a") <= (c | 0x20) <= ord("f"):
            digit = 10 + (c | 0x20) - ord("a")
        else:
            return -1
        value = value << 4 | digit
    return value if p + 4 <= len(d) else -1


def _string_token(d: bytes, p: int) -> _Token:
    """json_next_string_token, from the opening quote at ``d[p]``."""
    start = p
    p += 1
    out = bytearray()
    while (ch := d[p]) != ord('"'):
        if ch == 0:
            return (_ERROR, "unexpected end of string", p, p)
        if ch == ord("\\"):
            esc = d[p + 1]
            if esc == ord("u"):
                code = _hex4(d, p + 2)
                size = 6
                if code >= 0 and (code & 0xF800) == 0xD800:
                    # a surrogate pair: a high one, then a low one
                    low = -1
                    if not code & 0x400 and d[p + 6] == ord("\\") and d[p + 7] == ord("u"):
                        low = _hex4(d, p + 8)
                    if low < 0 or (low & 0xFC00) != 0xDC00:
                        code = -1
                    else:
                        code = (((code & 0x3FF) << 10) | (low & 0x3FF)) + 0x10000
                        size = 12
                if code < 0:
                    return (_ERROR, "invalid unicode escape code", p, p)
                out += chr(code).encode("utf-8")
                p += size
                continue
            if esc not in _ESCAPE2CHAR:
                return (_ERROR, "invalid escape code", p, p)
            out.append(_ESCAPE2CHAR[esc])
            p += 2
            continue
        out.append(ch)
        p += 1
    return (_STRING, bytes(out), start, p + 1)


def _fmt_g(value: float, precision: int) -> bytes:
    """fpconv_g_fmt: printf's %.<precision>g."""
    return b"%.*g" % (precision, value)


def _enum_option(args: tuple, i: int, setting: int, name: str, options: tuple = (b"off", b"on")) -> int:
    """json_enum_option's new setting: a boolean, or one of ``options``
    (luaL_checkoption), or the old one for nil."""
    value = args[i - 1]
    if value is None:
        return setting
    if type(value) is bool:
        return int(value)
    word = _check_string(args, i, name).split(b"\0", 1)[0]
    if word not in options:
        text = word.decode("utf-8", "replace")
        raise LibError(f"bad argument #{i} to '{name}' (invalid option '{text}')")
    return options.index(word)


def _integer_option(args: tuple, i: int, setting: int, name: str, least: int, most: int) -> int:
    """json_integer_option's new setting (the old one for nil)."""
    if args[i - 1] is None:
        return setting
    value = _c_int(_check_integer(args, i, name))
    if not least <= value <= most:
        # (lua_cjson names argument 1 whichever is out of range)
        raise LibError(f"bad argument #1 to '{name}' (expected integer between {least} and {most})")
    return value


def _option_args(args: tuple, n: int, name: str) -> tuple:
    """json_arg_init: at most ``n`` arguments, padded with nils."""
    if len(args) > n:
        raise LibError(f"bad argument #{n + 1} to '{name}' (found too many arguments)")
    return args + (None,) * (n - len(args))


_INT_MAX = 2**31 - 1
_ENCODE_INVALID = (b"off", b"on", b"null")


class CJson:
    """One cjson table's functions and its configuration (json_config_t)."""

    def __init__(self, lua: LuaValue, null: LuaValue, is_null: LuaValue, negative_zero: LuaValue) -> None:
        self.lua = lua
        self.null = null
        self.is_null = is_null
        # lupa hands Python -0 as the integer 0: negative_zero(t, k) says
        # whether t's value at k is -0, negative_zero(t) whether t's key 0
        # is (the prelude's encode answers -0 itself when it is the argument)
        self.negative_zero = negative_zero
        self.max_depth = 1000
        self.decode_max_depth = 1000
        self.precision = 14
        self.sparse_convert = 0
        self.sparse_ratio = 2
        self.sparse_safe = 10
        self.encode_invalid = 0  # 1: inf, -inf and nan; 2: null
        self.decode_invalid = 1
        self.keep_buffer = 1
        self.changed = False  # an option set since the engine last looked (Engine._share_cjson)

    def functions(self) -> dict[bytes, LuaValue]:
        return {
            b"encode": self.encode,
            b"decode": self.decode,
            b"encode_sparse_array": self.encode_sparse_array,
            b"encode_max_depth": self.encode_max_depth,
            b"decode_max_depth": self.decode_max_depth_,
            b"encode_number_precision": self.encode_number_precision,
            b"encode_keep_buffer": self.encode_keep_buffer,
            b"encode_invalid_numbers": self.encode_invalid_numbers,
            b"decode_invalid_numbers": self.decode_invalid_numbers,
        }

    # encode
    def encode(self, *args: LuaValue) -> bytes:
        if len(args) != 1:
            raise LibError("bad argument #1 to 'encode' (expected 1 argument)")
        out: list[bytes] = []
        self._encode(args[0], out)
        # (its room in Lua: for_lua's check of the result, a string's
        # bytes and header, before lupa pushes it)
        return b"".join(out)

    def _encode(self, value: LuaValue, out: list[bytes]) -> None:
        """json_append_data, with a stack of the tables being encoded in
        place of C's recursion (a cyclic table nests without end): each
        entry the rest of a table's items, which writes its values but its
        tables, and what the table holds of the C function's Lua stack (an
        array's value; an object's key and value; the argument besides).
        Entering a table checks its depth as json_check_encode_depth does:
        against encode_max_depth and the stack's room, lua_checkstack(l, 3)."""
        text = self._value(value)
        if text is not None:
            out.append(text)
            return
        stack: list[tuple[Iterator[LuaValue], int]] = []
        top = 1
        reads = 0  # (since the state's last measure, see READS)
        while True:
            depth = len(stack) + 1
            if depth > self.max_depth or top + 3 > LUA_STACK:
                raise LibError("Cannot serialise, excessive nesting (%d)" % depth)
            n = self._array_length(value)
            if n > 0:
                reads += n
                if reads > READS:
                    _room(self.lua, 0)
                    reads = 0
                out.append(b"[")
                stack.append((self._array_items(value, n, out), 1))
                top += 1
            else:
                out.append(b"{")
                stack.append((self._object_items(value, out), 2))
                top += 2
            # the next table to enter: the innermost table's next one
            while True:
                items, slots = stack[-1]
                value = next(items, None)
                if value is not None:
                    break
                stack.pop()
                top -= slots
                if not stack:
                    return

    def _value(self, v: LuaValue) -> bytes | None:
        """The JSON of a value not a table; None for a table."""
        t = type(v)
        if t is bytes:
            return _json_string(v)
        if t is bool:
            return b"true" if v else b"false"
        if t is int or t is float:
            return self._number(v)
        if v is None:
            return b"null"
        kind = _lua_type(v)
        if kind == "table":
            return None
        if kind == "userdata" and self.is_null(v):
            return b"null"
        raise LibError("Cannot serialise %s: type not supported" % type_name(v))

    def _array_items(self, v: LuaValue, n: int, out: list[bytes]) -> Iterator[LuaValue]:
        """json_append_array: writes each value of 1..n, with its comma;
        yields each that is a table, to be written in its place."""
        long = n >= READS  # (a long array's reads measure the state, see READS)
        for i in range(1, n + 1):
            if i > 1:
                out.append(b",")
                if long and not i % READS:
                    _room(self.lua, 0)
            x = v[i]
            if type(x) is int and x:  # _value's number, inline (the usual item; _fmt_g)
                out.append(b"%.*g" % (self.precision, x))
                continue
            if x == 0 and type(x) is int and self.negative_zero(v, i):
                x = -0.0
            text = self._value(x)
            if text is None:
                yield x
            else:
                out.append(text)
        out.append(b"]")

    def _object_items(self, v: LuaValue, out: list[bytes]) -> Iterator[LuaValue]:
        """json_append_object: writes each key and value, with its comma;
        yields each value that is a table, to be written in its place."""
        first = True
        for k, val in v.items():
            if not first:
                out.append(b",")
            first = False
            if type(k) is bytes:
                out.append(_json_string(k))
            elif type(k) in (int, float):
                if k == 0 and type(k) is int and self.negative_zero(v):
                    k = -0.0
                out.append(b'"' + self._number(k) + b'"')
            else:
                raise LibError("Cannot serialise %s: table key must be a number or string" % type_name(k))
            out.append(b":")
            if type(val) is int and val:  # _value's number, inline (the usual value; _fmt_g)
                out.append(b"%.*g" % (self.precision, val))
                continue
            if val == 0 and type(val) is int and self.negative_zero(v, k):
                val = -0.0
            text = self._value(val)
            if text is None:
                yield val
            else:
                out.append(text)
        out.append(b"}")

    def _number(self, v: float) -> bytes:
        """json_append_number."""
        if type(v) is float and (math.isnan(v) or math.isinf(v)):
            if self.encode_invalid == 0:
                raise LibError("Cannot serialise number: must not be NaN or Inf")
            if self.encode_invalid == 2:
                return b"null"
            if math.isnan(v):
                return b"nan"
        return _fmt_g(v, self.precision)

    def _array_length(self, t: LuaValue) -> int:
        """lua_array_length: n if the table is an array of 1..n, else -1
        (or an n < 1, an object too)."""
        max_index = 0
        items = 0
        for k in t.keys():
            if type(k) is int and k >= 1:  # (the usual key: the test below, as it comes out)
                if k > max_index:
                    max_index = k if k <= _INT_MAX else -_INT_MAX - 1
                items += 1
            elif type(k) in (int, float) and k >= 1 and (k == math.inf or k == int(k)):
                if k > max_index:
                    # (C's int of a double past INT_MAX is INT_MIN on x86-64)
                    max_index = int(k) if k <= _INT_MAX else -_INT_MAX - 1
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
        """json_decode: the text is read up to its first NUL, as C reads it."""
        if len(args) != 1:
            raise LibError("bad argument #1 to 'decode' (expected 1 argument)")
        text = _check_string(args, 1, "decode")
        if len(text) >= 2 and (text[0] == 0 or text[1] == 0):
            raise LibError("JSON parser does not support UTF-16 or UTF-32")
        d = text + b"\0"
        room = _Room(self.lua)
        value, end = self._parse(d, room)
        token = self._token(d, end)
        if token[0] != _END:
            self._unexpected("the end", token)
        room.take(room.string(value))
        return value

    def _token(self, d: bytes, p: int) -> _Token:
        """json_next_token at ``d[p:]``."""
        while d[p] in _WHITESPACE:
            p += 1
        ch = d[p]
        kind = _CH2TOKEN[ch]
        if kind == _END:
            return (_END, None, p, p)
        if kind == _ERROR:
            return (_ERROR, "invalid token", p, p)
        if kind:
            return (kind, None, p, p + 1)
        if ch == ord('"'):
            return _string_token(d, p)
        if ch == ord("-") or ord("0") <= ch <= ord("9"):
            if not self.decode_invalid and _is_invalid_number(d, p):
                return (_ERROR, "invalid number", p, p)
            return self._number_token(d, p)
        if d.startswith(b"true", p):
            return (_BOOLEAN, True, p, p + 4)
        if d.startswith(b"false", p):
            return (_BOOLEAN, False, p, p + 5)
        if d.startswith(b"null", p):
            return (_NULL, self.null, p, p + 4)
        if self.decode_invalid and _is_invalid_number(d, p):
            return self._number_token(d, p)
        return (_ERROR, "invalid token", p, p)

    @staticmethod
    def _number_token(d: bytes, p: int) -> _Token:
        number = _strtod(d, p)
        if number is None:
            return (_ERROR, "invalid number", p, p)
        return (_NUMBER, number[0], p, number[1])

    @staticmethod
    def _unexpected(expected: str, token: _Token) -> None:
        """json_throw_parse_error."""
        found = token[1] if token[0] == _ERROR else token[0]
        raise LibError("Expected %s but found %s at character %d" % (expected, found, token[2] + 1))

    def _parse(self, d: bytes, room: _Room) -> tuple[LuaValue, int]:
        """json_process_value and its contexts, with a stack of the open
        arrays ([table, count]) and objects ([table, key, keys set])
        instead of recursion; each value goes into its table as it is
        read, as Redis's lua_rawseti and lua_rawset, counted by ``room``."""
        stack: list[list] = []
        # lua_checkstack's count: json_decode's argument, each open array's
        # table, each open object's table and key.
        slots = 1
        token = self._token(d, 0)
        while True:
            kind = token[0]
            if kind == _ARR_BEGIN or kind == _OBJ_BEGIN:
                # json_decode_descend
                need = 2 if kind == _ARR_BEGIN else 3
                if len(stack) + 1 > self.decode_max_depth or slots + need > LUA_STACK:
                    raise LibError(
                        "Found too many nested data structures (%d) at character %d"
                        % (len(stack) + 1, token[3])
                    )
                token = self._token(d, token[3])
                table = room.table()
                if kind == _ARR_BEGIN:
                    if token[0] == _ARR_END:
                        value = table
                    else:
                        stack.append([table, 0])
                        slots += 1
                        continue
                else:
                    if token[0] == _OBJ_END:
                        value = table
                    else:
                        token = self._object_key(d, token)
                        stack.append([table, token[1], set()])
                        slots += 2
                        token = self._token(d, token[3])
                        continue
            elif kind == _STRING or kind == _NUMBER or kind == _BOOLEAN or kind == _NULL:
                value = token[1]
            else:
                self._unexpected("value", token)
            end = token[3]
            # the value ends what it is in, or comes before the next one
            while stack:
                frame = stack[-1]
                token = self._token(d, end)
                if len(frame) == 2:
                    frame[1] += 1
                    room.append(frame[0], frame[1], value)
                    if token[0] == _ARR_END:
                        stack.pop()
                        slots -= 1
                        value, end = frame[0], token[3]
                        continue
                    if token[0] != _COMMA:
                        self._unexpected("comma or array end", token)
                    token = self._token(d, token[3])
                else:
                    room.put(frame[0], frame[2], frame[1], value)
                    if token[0] == _OBJ_END:
                        stack.pop()
                        slots -= 2
                        value, end = frame[0], token[3]
                        continue
                    if token[0] != _COMMA:
                        self._unexpected("comma or object end", token)
                    token = self._object_key(d, self._token(d, token[3]))
                    frame[1] = token[1]
                    token = self._token(d, token[3])
                break
            else:
                return value, end

    def _object_key(self, d: bytes, token: _Token) -> _Token:
        """An object's key and its colon: the key's token, ending past the colon."""
        if token[0] != _STRING:
            self._unexpected("object key string", token)
        colon = self._token(d, token[3])
        if colon[0] != _COLON:
            self._unexpected("colon", colon)
        return (_STRING, token[1], token[2], colon[3])

    # options: each returns the setting now in effect (json_cfg_*)
    OPTIONS = (
        "max_depth",
        "decode_max_depth",
        "precision",
        "sparse_convert",
        "sparse_ratio",
        "sparse_safe",
        "encode_invalid",
        "decode_invalid",
        "keep_buffer",
    )

    def options(self) -> list[int]:
        """Every option's setting, in OPTIONS' order."""
        return [getattr(self, name) for name in self.OPTIONS]

    def set_options(self, values: list[int]) -> None:
        for name, value in zip(self.OPTIONS, values, strict=True):
            setattr(self, name, value)

    def _set(self, name: str, value: int) -> None:
        """A setter's new ``value`` of option ``name``: noted as changed
        (to be shared with every shard, Engine._share_cjson) only when it
        differs, so that reading an option (no argument: the old value)
        or setting the value in effect sends nothing."""
        if getattr(self, name) != value:
            setattr(self, name, value)
            self.changed = True

    def encode_sparse_array(self, *args: LuaValue) -> tuple:
        args = _option_args(args, 3, "encode_sparse_array")
        self._set("sparse_convert", _enum_option(args, 1, self.sparse_convert, "encode_sparse_array"))
        self._set(
            "sparse_ratio", _integer_option(args, 2, self.sparse_ratio, "encode_sparse_array", 0, _INT_MAX)
        )
        self._set(
            "sparse_safe", _integer_option(args, 3, self.sparse_safe, "encode_sparse_array", 0, _INT_MAX)
        )
        return (bool(self.sparse_convert), self.sparse_ratio, self.sparse_safe)

    def encode_max_depth(self, *args: LuaValue) -> int:
        args = _option_args(args, 1, "encode_max_depth")
        self._set("max_depth", _integer_option(args, 1, self.max_depth, "encode_max_depth", 1, _INT_MAX))
        return self.max_depth

    def decode_max_depth_(self, *args: LuaValue) -> int:
        args = _option_args(args, 1, "decode_max_depth")
        self._set(
            "decode_max_depth",
            _integer_option(args, 1, self.decode_max_depth, "decode_max_depth", 1, _INT_MAX),
        )
        return self.decode_max_depth

    def encode_number_precision(self, *args: LuaValue) -> int:
        args = _option_args(args, 1, "encode_number_precision")
        self._set("precision", _integer_option(args, 1, self.precision, "encode_number_precision", 1, 14))
        return self.precision

    def encode_keep_buffer(self, *args: LuaValue) -> bool:
        # (the setting changes nothing a script can see)
        args = _option_args(args, 1, "encode_keep_buffer")
        self._set("keep_buffer", _enum_option(args, 1, self.keep_buffer, "encode_keep_buffer"))
        return bool(self.keep_buffer)

    def encode_invalid_numbers(self, *args: LuaValue) -> bool | bytes:
        args = _option_args(args, 1, "encode_invalid_numbers")
        self._set(
            "encode_invalid",
            _enum_option(args, 1, self.encode_invalid, "encode_invalid_numbers", _ENCODE_INVALID),
        )
        return _ENCODE_INVALID[2] if self.encode_invalid == 2 else bool(self.encode_invalid)

    def decode_invalid_numbers(self, *args: LuaValue) -> bool:
        args = _option_args(args, 1, "decode_invalid_numbers")
        self._set("decode_invalid", _enum_option(args, 1, self.decode_invalid, "decode_invalid_numbers"))
        return bool(self.decode_invalid)


def cjson_table(
    lua: LuaValue, null: LuaValue, is_null: LuaValue, negative_zero: LuaValue, config: CJson | None = None
) -> LuaValue:
    """lua_cjson_new's table but its ``new`` (the prelude's): the functions,
    with a configuration of their own (``config``, or a fresh one), ``null``,
    ``_NAME`` and ``_VERSION``."""
    table = lua.table()
    if config is None:
        config = CJson(lua, null, is_null, negative_zero)
    for name, fn in config.functions().items():
        table[name] = for_lua(fn, lua)
    table[b"null"] = null
    table[b"_NAME"] = b"cjson"
    table[b"_VERSION"] = b"2.1.0"
    return table


# -- bit (LuaBitOp) -----------------------------------------------------------------


_TOBIT_MAGIC = 6755399441055744.0  # 2^52+2^51
_DOUBLE = _struct.Struct("<d")
_LOW_WORD = _struct.Struct("<I")


def _barg(args: tuple, i: int, name: str) -> int:
    """LuaBitOp's barg: argument ``i`` as 32 bits, unsigned: the low word
    of the double that adding 2^52+2^51 makes of it (lua_tonumber's 0 for
    what is no number, which then raises)."""
    value = _arg(args, i)
    t = type(value)
    if t is int or t is float:
        number = value
    elif t is bytes and (number := _str2d(value)) is not None:
        pass
    else:
        raise LibError(f"bad argument #{i} to '{name}' (number expected, got {type_name(value)})")
    return _LOW_WORD.unpack_from(_DOUBLE.pack(float(number) + _TOBIT_MAGIC))[0]


def _signed(v: int) -> int:
    """BRET: the 32 bits as a signed number."""
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def _bit_functions() -> dict[bytes, LuaValue]:
    def tobit(*a: LuaValue) -> int:
        return _signed(_barg(a, 1, "tobit"))

    def bnot(*a: LuaValue) -> int:
        return _signed(~_barg(a, 1, "bnot"))

    def fold(name: str, op):
        def f(*a: LuaValue) -> int:
            acc = _barg(a, 1, name)
            for i in range(len(a), 1, -1):  # (BIT_OP reads the last argument first)
                acc = op(acc, _barg(a, i, name))
            return _signed(acc)

        return f

    def shift(name: str, op):
        def f(*a: LuaValue) -> int:
            x = _barg(a, 1, name)
            n = _barg(a, 2, name) & 31
            return _signed(op(x, n))

        return f

    def tohex(*a: LuaValue) -> bytes:
        x = _barg(a, 1, "tohex")
        n = 8 if len(a) < 2 else _signed(_barg(a, 2, "tohex"))
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
        x = _barg(a, 1, "bswap")
        return _signed(int.from_bytes(x.to_bytes(4, "little"), "big"))

    return {
        b"tobit": tobit,
        b"bnot": bnot,
        b"band": fold("band", lambda a, b: a & b),
        b"bor": fold("bor", lambda a, b: a | b),
        b"bxor": fold("bxor", lambda a, b: a ^ b),
        b"lshift": shift("lshift", lambda x, n: x << n),
        b"rshift": shift("rshift", lambda x, n: x >> n),
        b"arshift": shift("arshift", lambda x, n: _signed(x) >> n),
        b"rol": shift("rol", lambda x, n: (x << n) | (x >> (32 - n))),
        b"ror": shift("ror", lambda x, n: (x >> n) | (x << (32 - n))),
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
    ord("x"): 1,
}
# The integer options; the signed ones are lower case.
_STRUCT_INTEGERS = frozenset(b"bBhHlLTiI")
_U64 = (1 << 64) - 1


def _c_long(n: float | int) -> int:
    """``(long)n`` of a lua_Number, as x86-64 converts it (cvttsd2si):
    truncated; a NaN, or what no int64 holds, is the int64 minimum."""
    if n != n or not -(2.0**63) <= n < 2.0**63:
        return -(1 << 63)
    return int(n)


def _c_size_t(n: float | int) -> int:
    """``(unsigned long)n`` of a lua_Number, as gcc converts it on x86-64:
    below 2**63 (a NaN too) through a signed conversion, wrapped; from
    2**63 up, through one of n - 2**63 with the top bit flipped (so 0 from
    2**64 up, and for an infinity)."""
    if n >= 2.0**63:
        return (_c_long(n - 2**63) & _U64) ^ (1 << 63)
    return _c_long(n) & _U64


def _as_lua_number(v: int) -> int | float:
    """An integer as lua_pushnumber holds it (a double)."""
    return float(v) if abs(v) >= 2**53 else v


class _Fmt:
    """lua_struct.c's reading of a format: :meth:`items` gives each
    option and its size as optsize reads them (0 for the options that
    are not items), :meth:`control` is controloptions, for the rest."""

    def __init__(self, fmt: bytes, name: str) -> None:
        self.fmt = fmt.split(b"\0", 1)[0]  # (C reads it up to a NUL)
        self.name = name  # the function's, for its argument errors
        self.pos = 0
        self.little = True
        self.align = 1

    def items(self) -> Iterator[tuple[int, int]]:
        fmt = self.fmt
        while self.pos < len(fmt):
            c = fmt[self.pos]
            self.pos += 1
            size = _STRUCT_SIZES.get(c)
            if size is None:
                if c == 99:  # 'c'
                    size = self._number(1)
                elif c == 105 or c == 73:  # 'i', 'I'
                    size = self._number(4)
                    if size > 32:  # (MAXINTSIZE)
                        raise LibError("integral size %d is larger than limit of 32" % size)
                else:
                    size = 0
            yield c, size

    def control(self, c: int) -> None:
        """controloptions: endianness, alignment and spaces; any other
        option is not one."""
        if c == 32:  # ' '
            return
        if c == 60:  # '<'
            self.little = True
        elif c == 62:  # '>'
            self.little = False
        elif c == 33:  # '!'
            align = self._number(8)  # (MAXALIGN)
            if align <= 0 or align & (align - 1):
                raise LibError("alignment %d is not a power of 2" % align)
            self.align = align
        else:
            raise LibError("bad argument #1 to '%s' (invalid format option '%s')" % (self.name, chr(c)))

    def _number(self, default: int) -> int:
        """getnum: the digits at the format's position (at most INT_MAX)."""
        fmt = self.fmt
        start = self.pos
        while self.pos < len(fmt) and 48 <= fmt[self.pos] <= 57:
            if int(fmt[start : self.pos + 1]) > _INT_MAX:
                raise LibError("integral size overflow")
            self.pos += 1
        return int(fmt[start : self.pos]) if self.pos > start else default

    def padding(self, c: int, size: int, offset: int) -> int:
        """gettoalign: the bytes before an item of option ``c`` at ``offset``
        (none before a 'c': strings are not aligned)."""
        align = min(size, self.align)
        if align <= 1 or c == 99:
            return 0
        return (align - (offset & (align - 1))) & (align - 1)


def _struct_pack(*args: LuaValue) -> bytes:
    f = _Fmt(_check_string(args, 1, "pack"), "pack")
    out = bytearray()
    i = 1
    for c, size in f.items():
        out += b"\0" * f.padding(c, size, len(out))
        if c in _STRUCT_INTEGERS or c == 102 or c == 100 or c == 99 or c == 115:  # and f, d, c, s
            # (past the arguments, Redis's pack reads the nil it pushed after them)
            arg = args[i] if i < len(args) else (None if i == len(args) else NO_VALUE)
            i += 1
        else:
            if c == 120:  # 'x'
                out += b"\0"
            else:
                f.control(c)
            continue
        if c in _STRUCT_INTEGERS:
            # putinteger: the number as C's unsigned long (a negative one
            # through long), its bytes past the 8th 0
            n = _num(arg, "pack", i)
            v = _c_long(n) & _U64 if n < 0 else _c_size_t(n)
            out += (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little" if f.little else "big")
        elif c == 102 or c == 100:  # 'f', 'd'
            code = ("<" if f.little else ">") + chr(c)
            n = float(_num(arg, "pack", i))
            try:
                out += _struct.pack(code, n)
            except OverflowError:  # (float)n: past FLT_MAX, an infinity
                out += _struct.pack(code, math.copysign(math.inf, n))
        else:
            if type(arg) in (int, float):
                arg = _lua_number_text(arg)  # type: ignore[arg-type]
            if type(arg) is not bytes:
                raise LibError("bad argument #%d to 'pack' (string expected, got %s)" % (i, type_name(arg)))
            if c == 115:  # 's'
                out += arg + b"\0"
            else:
                n = size if size else len(arg)
                if len(arg) < n:  # (b_pack names the argument after it)
                    raise LibError("bad argument #%d to 'pack' (string too short)" % (i + 1))
                out += arg[:n]
    return bytes(out)


def _struct_unpack(*args: LuaValue) -> tuple:
    """b_unpack, with its size_t arithmetic: an offset below 1 wraps
    around (only 0 is refused), and each option, one that is no item
    too, must find its size in the data from the position it reached."""
    fmt, data = _check_string(args, 1, "unpack"), _check_string(args, 2, "unpack")
    offset = _check_integer(args, 3, "unpack") if len(args) > 2 and args[2] is not None else 1
    if offset == 0:
        raise LibError("bad argument #3 to 'unpack' (offset must be 1 or greater)")
    pos = (offset - 1) & _U64
    f = _Fmt(fmt, "unpack")
    out: list[object] = []
    ld = len(data)
    room = LUA_STACK - len(args) - 2  # Redis's luaL_checkstack(L, 2) per option
    too_short = "bad argument #2 to 'unpack' (data string too short)"
    for c, size in f.items():
        pos = (pos + f.padding(c, size, pos)) & _U64
        if size > ld or pos > ld - size:
            raise LibError(too_short)
        if len(out) > room:
            raise LibError("stack overflow (too many results)")
        if c in _STRUCT_INTEGERS:
            chunk = data[pos : pos + size]
            # getinteger: an unsigned long shifted in byte by byte (the last
            # 8 bytes big-endian, the first 8 little-endian), its sign
            # extended from the mask ~0 << (8 * size - 1) (x86-64 shifts
            # by that mod 64)
            v = int.from_bytes(chunk[-8:], "big") if not f.little else int.from_bytes(chunk[:8], "little")
            if c >= 97:  # signed
                mask = (_U64 << ((8 * size - 1) & 63)) & _U64
                if v & mask:
                    v |= mask
                if v >= 1 << 63:
                    v -= 1 << 64
            out.append(_as_lua_number(v))
        elif c == 102 or c == 100:  # 'f', 'd'
            out.append(_struct.unpack(("<" if f.little else ">") + chr(c), data[pos : pos + size])[0])
        elif c == 99:  # 'c'
            if size == 0:
                last = out[-1] if out else None
                number = _str2d(last) if type(last) is bytes else last
                if type(number) not in (int, float):  # (lua_isnumber: a numeric string too)
                    raise LibError("format 'c0' needs a previous size")
                out.pop()
                size = _c_size_t(number)  # type: ignore[arg-type]
                if size > ld or pos > ld - size:
                    raise LibError(too_short)
            out.append(data[pos : pos + size])
        elif c == 115:  # 's'
            end = data.find(b"\0", pos)
            if end < 0:
                raise LibError("unfinished string in data")
            out.append(data[pos:end])
            size = end - pos + 1
        elif c != 120:  # (an 'x' is only its size)
            f.control(c)
        pos = (pos + size) & _U64
    next_pos = (pos + 1) & _U64  # (lua_pushinteger of a size_t)
    out.append(_as_lua_number(next_pos - (1 << 64) if next_pos >= 1 << 63 else next_pos))
    return tuple(out)


def _struct_size(*args: LuaValue) -> int:
    f = _Fmt(_check_string(args, 1, "size"), "size")
    total = 0
    for c, size in f.items():
        total += f.padding(c, size, total)
        if c == 115:  # 's'
            raise LibError("bad argument #1 to 'size' (option 's' has no fixed size)")
        if c == 99 and size == 0:
            raise LibError("bad argument #1 to 'size' (option 'c0' has no fixed size)")
        if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122):  # (isalnum: an unknown letter is no item)
            f.control(c)
        total += size
    return total


# -- cmsgpack ----------------------------------------------------------------------

_MAX_NESTING = 16


# What a value of any of these types is to pack: never a table.
_SCALARS = frozenset((bytes, bool, int, float, type(None)))


class _Met:
    """What one cmsgpack.pack has met: the tables that hold tables, for
    those it meets again, and the room its output has been checked for.

    lua_cmsgpack writes a table again wherever it appears, down to its
    nesting limit: a table that holds itself twice is written 2**16 times,
    a few milliseconds in C and seconds here.  Nothing runs in Lua while
    it packs, so a table met again at the same depth is written with the
    same bytes: those are kept (by the table's number and its depth) and
    copied, and only tables met again are kept.  Only a table that holds
    a table (above the nesting limit's last level) is numbered, when pack
    first finds a table in it: one that holds none costs no more to write
    again than to copy, and most tables are such (the bookkeeping of every
    table made pack of many small ones half as slow again).  A table's
    identity is a Lua table's key (lupa gives each reference to one table
    its own Python object), whose growth is checked against the state's
    room first.

    Copies make output cheap: ``t`` with t[1..16] = t is 16**16 bytes.
    The output goes into the state as a string if pack finishes, so it
    is checked against the state's room (its check fails the script with
    "not enough memory") whenever it grows past what was last checked by
    :data:`_CHUNK`, before a copy or a string is added: it fails before it
    exceeds the room by more than that, not after filling the process's
    memory."""

    __slots__ = ("lua", "numbers", "count", "packed", "checked")

    def __init__(self, lua: LuaValue) -> None:
        self.lua = lua
        self.numbers = lua.table()  # table -> its number
        self.count = 0
        self.packed: dict[tuple[int, int], bytes] = {}  # (number, depth) -> its bytes
        self.checked = _CHUNK  # the output's length last checked (less than a chunk: never)

    def again(self, table: LuaValue) -> int | None:
        """The table's number if it was met before; else None, and it is
        numbered (the hash part's doubling, 40 bytes a node, counted)."""
        number = self.numbers[table]
        if number is None:
            self.count += 1
            m = self.count
            if (m - 1) & (m - 2) == 0:
                _room(self.lua, 128 * m)
            self.numbers[table] = m
        return number

    def grow(self, size: int) -> None:
        """The output is to be ``size`` bytes: check that a string of
        them fits in the state if it has grown by a chunk since the last."""
        if size > self.checked:
            _room(self.lua, size)
            self.checked = size + _CHUNK


class MsgPack:
    def __init__(self, lua: LuaValue) -> None:
        self.lua = lua

    def pack(self, *args: LuaValue) -> bytes:
        if not args:
            raise LibError("bad argument #0 to 'pack' (MessagePack pack needs input.)")
        out = bytearray()
        met = _Met(self.lua)
        for v in args:
            self._pack(v, out, 0, met)
        _room(self.lua, len(out))
        return bytes(out)

    def _pack(self, v: LuaValue, out: bytearray, depth: int, met: _Met) -> None:
        """mp_encode_lua_type: a table at the nesting limit is nil; a table
        met before is written again as it was at that depth (see _Met)."""
        t = type(v)
        if t is bytes:
            n = len(v)
            met.grow(len(out) + n + 5)
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
        elif t is int or (t is float and math.isfinite(v) and v == int(v) and abs(v) < 2**63):
            self._pack_int(int(v), out)
        elif t is float:
            # mp_encode_double: a float when it holds the number (never a NaN)
            f32 = _struct.unpack(">f", _struct.pack(">f", v))[0] if abs(v) < 3.4e38 or math.isinf(v) else None
            if f32 is not None and f32 == v:
                out += b"\xca" + _struct.pack(">f", v)
            else:
                out += b"\xcb" + _struct.pack(">d", v)
        elif v is None:
            out.append(0xC0)
        elif _lua_type(v) == "table":
            if depth >= _MAX_NESTING:
                out.append(0xC0)
                return
            self._pack_table(v, out, depth, met)
        else:
            out.append(0xC0)

    def _pack_table(self, v: LuaValue, out: bytearray, depth: int, met: _Met) -> None:
        """mp_encode_lua_table: an array (keys 1..n) or a map, each value
        one level deeper.  At its first table (see _Met) a table met before
        at this depth is written with the bytes it had: those written so
        far are dropped, the same as the copy's start."""
        start = len(out)
        n, values = self._entries(v)
        if n >= 0:
            self._header(n, 0x90, 0xDC, out)
        else:
            self._header(len(values) // 2, 0x80, 0xDE, out)
        # below the last level a table is nil: the same bytes, nothing to keep
        holds_tables = depth + 1 >= _MAX_NESTING
        number = None
        for x in values:
            if not holds_tables and type(x) not in _SCALARS:
                holds_tables = True
                number = met.again(v)
                if number is not None:
                    packed = met.packed.get((number, depth))
                    if packed is not None:
                        del out[start:]
                        met.grow(start + len(packed))
                        out += packed
                        return
            self._pack(x, out, depth + 1, met)
        if number is not None:
            met.packed[(number, depth)] = bytes(out[start:])

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
    def _entries(t: LuaValue) -> tuple[int, list]:
        """table_is_an_array, and what pack writes of the table, read from
        Lua in one pass: n and the values at keys 1..n if those are its
        keys (each positive and int-equivalent, no holes), else -1 and its
        keys and values, one after the other, in lua_next's order."""
        pairs = list(t.items())
        count = 0
        max_index = 0
        for k, _ in pairs:
            # IS_INT_EQUIVALENT: a C int (so never an infinity)
            if type(k) in (int, float) and 0 < k < 2**31 and k == int(k):
                count += 1
                if k > max_index:
                    max_index = int(k)
            else:
                return -1, [x for pair in pairs for x in pair]
        if max_index != count:
            return -1, [x for pair in pairs for x in pair]
        values = [None] * count
        for k, x in pairs:
            values[int(k) - 1] = x
        return count, values

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
        lua_room = _Room(self.lua)
        decode_all = not limit and not offset
        pos = offset
        out: list[object] = []
        while pos < len(data) and (decode_all or len(out) < limit):
            value, pos = self._decode(data, pos, lua_room, on_stack + len(out))
            lua_room.take(lua_room.string(value) + 16)  # (and its slot of Lua's stack)
            out.append(value)
        if decode_all:
            return tuple(out)
        if len(out) + on_stack >= LUA_STACK:
            raise LibError("stack overflow (in function mp_unpack_full)")
        return (pos if pos < len(data) else -1, *out)

    def _decode(self, d: bytes, p: int, room: _Room, top: int) -> tuple[object, int]:
        """mp_decode_to_lua_type, without recursion: each value goes into
        its table as it is read, as lua-cmsgpack's lua_rawseti and
        lua_settable, counted by ``room``.  ``top`` counts the values on
        Redis's C function's stack, as it pushes and pops them (a table
        open, an array's index, a map's key): its checks fail where
        Redis's luaL_checkstack calls do, at their stack's limit of
        LUA_STACK values (4000 levels of arrays)."""
        n_data = len(d)
        # The tables open, innermost last: [table, items left, next index
        # (an array) or None (a map), the key read (a map), the keys set].
        open_: list[list] = []
        value: object
        while True:
            if p >= n_data:
                raise LibError("Missing bytes in input.")
            if top + 1 > LUA_STACK:
                raise LibError(
                    "stack overflow (too many return values at once; use unpack_one or unpack_limit instead.)"
                )
            c = d[p]
            p += 1
            if c <= 0x7F:
                value = c
            elif c >= 0xE0:
                value = c - 256
            elif 0xA0 <= c <= 0xBF or c in (0xD9, 0xDA, 0xDB):  # (lua-cmsgpack 0.4.0 reads no bin types)
                if c <= 0xBF:
                    n = c & 31
                else:
                    w = _MP_STR_WIDTHS[c]
                    if p + w > n_data:
                        raise LibError("Missing bytes in input.")
                    n = int.from_bytes(d[p : p + w], "big")
                    p += w
                if p + n > n_data:
                    raise LibError("Missing bytes in input.")
                value = d[p : p + n]
                p += n
            elif 0x90 <= c <= 0x9F or c in (0xDC, 0xDD) or 0x80 <= c <= 0x8F or c in (0xDE, 0xDF):
                is_array = 0x90 <= c <= 0x9F or c == 0xDC or c == 0xDD
                if c <= 0x9F:
                    n = c & 15
                else:
                    w = 2 if c == 0xDC or c == 0xDE else 4
                    if p + w > n_data:
                        raise LibError("Missing bytes in input.")
                    n = int.from_bytes(d[p : p + w], "big")
                    p += w
                table = room.table()
                top += 1
                if is_array and top + 1 > LUA_STACK:
                    raise LibError("stack overflow (in function mp_decode_to_lua_array)")
                if n:
                    if is_array:
                        open_.append([table, n, 1, None, None])
                        top += 1  # (the index)
                    else:
                        open_.append([table, n, None, _NO_KEY, set()])
                    continue
                top -= 1
                value = table
            elif c == 0xC0:
                value = None
            elif c == 0xC2 or c == 0xC3:
                value = c == 0xC3
            elif c == 0xCA or c == 0xCB:
                w = 4 if c == 0xCA else 8
                if p + w > n_data:
                    raise LibError("Missing bytes in input.")
                value = _struct.unpack(">f" if w == 4 else ">d", d[p : p + w])[0]
                p += w
            elif c in _MP_INT_WIDTHS:
                w = _MP_INT_WIDTHS[c]
                if p + w > n_data:
                    raise LibError("Missing bytes in input.")
                # (a uint 64 goes to Lua through lua_pushinteger: as an int64)
                v = int.from_bytes(d[p : p + w], "big", signed=c >= 0xD0 or c == 0xCF)
                value = float(v) if abs(v) >= 2**53 else v
                p += w
            else:
                raise LibError("Bad data format in input.")
            # The value goes into the innermost open table; a table it
            # fills goes into the one around it, and so on.
            while open_:
                frame = open_[-1]
                table = frame[0]
                if frame[2] is not None:  # an array
                    i = frame[2]
                    room.append(table, i, value)
                    if i < frame[1]:
                        frame[2] = i + 1
                        break
                    top -= 2  # (its last index, and the table, now the value)
                else:
                    key = frame[3]
                    if key is _NO_KEY:
                        frame[3] = value
                        top += 1  # (the key, while its value is read)
                        break
                    # (lua_settable: a nil or NaN key raises, a nil value sets nothing)
                    if key is None:
                        raise LibError(BARE + "table index is nil")
                    if type(key) is float and key != key:
                        raise LibError(BARE + "table index is NaN")
                    room.put(table, frame[4], key, value)
                    top -= 1
                    frame[1] -= 1
                    if frame[1]:
                        frame[3] = _NO_KEY
                        break
                    top -= 1  # (the table, now the value)
                open_.pop()
                value = table
            else:
                return value, p


_MP_STR_WIDTHS = {0xD9: 1, 0xDA: 2, 0xDB: 4}
_MP_INT_WIDTHS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8}
_NO_KEY = object()  # (a map's key not read yet)


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


def install(lua: LuaValue) -> tuple[LuaValue, CJson, Callable[[], None]]:
    """A Lua table of library name -> library table, for the prelude, the
    configuration of its ``cjson`` (the one every script of the state
    shares, as Redis's one cjson module), and its release: what drops the
    libraries' Python objects' references to ``lua``, for a state dropped.

    Those objects live in the Lua state (its callables' userdata), and they
    hold the LuaRuntime: a cycle through the Lua state, which Python's
    collector cannot see, so the state and all it holds (every script's
    function, its source's constants) would never be freed.  Its release
    breaks it; the state's callables are not to run again after it."""
    table = lua.table
    # Redis's cjson.null is a NULL light userdata; Lua code can make no
    # light userdata, and newproxy's userdata is the nearest (the prelude
    # shows it as the light one: its type and tostring).
    null = lua.eval("newproxy(false)")
    # (made now: once the prelude has run, Lua code that lupa compiles sees no globals)
    is_null = lua.eval("function(null) return function(v) return rawequal(v, null) end end")(null)
    negative_zero = lua.eval(
        "function(t, k)"
        "  if k == nil then for key in next, t do if key == 0 then return 1 / key < 0 end end return false end"
        "  local x = rawget(t, k) return x == 0 and 1 / x < 0 "
        "end"
    )
    config = CJson(lua, null, is_null, negative_zero)
    cjson = cjson_table(lua, null, is_null, negative_zero, config)
    # cjson.new's parts, which the prelude's cjson.new (a Lua function)
    # uses: ``configure(id)`` gives configuration ``id`` a fresh CJson, and
    # ``functions``' callables, the same for every table cjson.new makes,
    # take the id of its configuration first.  cjson.new pushes no new
    # Python object into Lua: each would be a userdata with a __gc, a
    # finalizer a later collector step runs, 200 C calls deep too (see
    # Raised).  The prelude reuses the id of a table collected.
    # (through ``config``, not ``lua`` itself: see release)
    configs: dict[int, CJson] = {}

    def configure(*args: LuaValue) -> None:
        configs[args[0]] = CJson(config.lua, config.null, config.is_null, config.negative_zero)

    def shared(name: bytes) -> Callable[..., object]:
        def call(*args: LuaValue) -> object:
            return configs[args[0]].functions()[name](*args[1:])

        return call

    functions, names = table(), table()
    for i, name in enumerate(config.functions(), 1):
        functions[name] = for_lua(shared(name), lua)
        names[i] = name
    new = table()
    new[b"configure"] = for_lua(configure, lua)
    new[b"functions"] = functions
    new[b"names"] = names
    cjson[b"new"] = new
    bit = table()
    for name, fn in _bit_functions().items():
        bit[name] = for_lua(fn, lua)
    struct_ = table()
    struct_[b"pack"] = for_lua(_struct_pack, lua)
    struct_[b"unpack"] = for_lua(_struct_unpack, lua)
    struct_[b"size"] = for_lua(_struct_size, lua)
    mp = MsgPack(lua)
    cmsgpack = table()
    cmsgpack[b"pack"] = for_lua(mp.pack, lua)
    cmsgpack[b"unpack"] = for_lua(mp.unpack, lua)
    cmsgpack[b"unpack_one"] = for_lua(mp.unpack_one, lua)
    cmsgpack[b"unpack_limit"] = for_lua(mp.unpack_limit, lua)
    cmsgpack[b"_NAME"] = b"cmsgpack"
    cmsgpack[b"_VERSION"] = b"lua-cmsgpack 0.4.0"
    cmsgpack[b"_COPYRIGHT"] = b"Copyright (C) 2012, Salvatore Sanfilippo"
    cmsgpack[b"_DESCRIPTION"] = b"MessagePack C implementation for Lua"
    for lib in (cjson, bit, struct_, cmsgpack):
        for k, v in lib.items():
            assert k in FUNCTION_NAMES or k == b"new" or type(v) is bytes or _lua_type(v) is not None, k
    modules = table()
    modules[b"cjson"] = cjson
    modules[b"bit"] = bit
    modules[b"struct"] = struct_
    modules[b"cmsgpack"] = cmsgpack

    def release() -> None:
        config.lua = config.null = config.is_null = config.negative_zero = None
        configs.clear()
        mp.lua = None

    return modules, config, release
