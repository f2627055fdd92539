"""Lua 5.1 bytecode (``string.dump``'s format): tail calls made plain calls.

A script whose ``redis.call`` is a Lua function (the wide form, see
``luaprelude.lua``) loses its own frame in ``return redis.call(...)``, a
tail call, so an error there could not name the script's line as Redis's
does.  Lua 5.1 always follows ``OP_TAILCALL`` with ``OP_RETURN A 0`` (see
lparser.c's ``retstat``), and ``OP_CALL`` with C = 0 (all results) before
that same return gives the same results with the caller's frame kept; the
loader's verifier (``luaG_checkcode``) accepts it.  The one difference
left: tail recursion now uses a frame per level (Lua's limit is 20000).

The format (ldump.c): a 12-byte header, then each function prototype:
source, line numbers, 4 bytes of counts, its code, its constants, its
nested prototypes, and its debug information.
"""

from __future__ import annotations

import struct

from shardkv.worker.lualibs import FUNCTION_NAMES

OP_CALL = 28
OP_TAILCALL = 29
OP_SETLIST = 34
_OPCODE = 0x3F  # an instruction's low 6 bits
_C_SHIFT, _C_MASK = 14, 0x1FF
_HEADER = b"\x1bLuaQ\x00\x01\x04\x08\x04\x08\x00"  # 5.1, little-endian, int 4, size_t 8, number 8

_NIL, _BOOLEAN, _NUMBER, _STRING = 0, 1, 3, 4


class BytecodeError(ValueError):
    """Not a dump this module reads (another Lua build's format)."""


def without_tail_calls(dump: bytes) -> bytes:
    """``dump`` with every function's tail calls turned into plain calls."""
    return _patched(dump, None)


def without_call_tail_calls(dump: bytes) -> bytes:
    """``dump`` of a script that runs wide (its ``redis.call`` a Lua
    function) with the tail calls that may reach one of the prelude's Lua
    functions made plain calls: those :func:`without_wrapped_tail_calls`
    makes plain calls, and those of a ``call`` or ``pcall`` field."""
    return _patched(dump, _WIDE)


def without_wrapped_tail_calls(dump: bytes) -> bytes:
    """``dump`` with the tail calls that may reach one of the prelude's
    Lua functions (the libraries' functions, the wrappers of a narrow
    script, a wide ``redis.call``) turned into plain calls, so that their
    errors name the script's line and the name it was called by, as a C
    function's (no tail call) do in Redis: the function of a field of such
    a name (``return cjson.encode(x)``, ``coroutine.resume``), under a computed key (``_G['unp'..'ack']``), a
    call's result (``coroutine.wrap(f)()``) or a parameter (``local
    function g(f) return f() end``), directly or through locals, or an
    upvalue of such a local's name (see :func:`_callee`).  Every other
    tail call (of a local function, another field) stays one, so tail
    recursion through them stays as deep as Lua's own."""
    return _patched(dump, _NARROW)


# What the function of a tail call made a plain call may come from (see
# _is_field): a field of one of these names (``dump``: the prelude's
# string.dump; ``insert``: its table.insert; ``create``: its coroutine.create;
# ``__index``: what getmetatable(_G) shows, luaProtectedTableError); None: a computed key or a call's result; a parameter (no
# instruction before the call wrote its register).
_PARAMETER = b"\0parameter"
_NARROW = (
    frozenset(
        {
            b"resume",
            b"wrap",
            b"create",
            b"yield",
            b"acl_check_cmd",
            b"dump",
            b"insert",
            b"__index",
            None,
            _PARAMETER,
        }
    )
    | FUNCTION_NAMES
)
_WIDE = _NARROW | {b"call", b"pcall", b"sha1hex"}
# The globals that the prelude makes Lua functions (Redis's are C
# functions): a tail call of one of these names is made a plain call too.
LUA_GLOBALS = frozenset(
    {
        b"type",
        b"tostring",
        b"getmetatable",
        b"rawset",
        b"rawget",
        b"next",
        b"pairs",
        b"setmetatable",
        b"loadstring",
        b"load",
        b"unpack",
    }
)
OP_MOVE = 0
OP_LOADNIL = 3
OP_GETUPVAL = 4
OP_GETGLOBAL = 5
OP_GETTABLE = 6
OP_SELF = 11
OP_LEN = 20
_BITRK = 256
# Opcodes whose A operand is a register they write (lopcodes.h).
_WRITES_A = frozenset({0, 1, 2, 3, 4, 5, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 27, 28, 36, 37})


def _patched(dump: bytes, keys: frozenset | None) -> bytes:
    if not dump.startswith(_HEADER):
        raise BytecodeError("not a Lua 5.1 dump of this build's format")
    out = bytearray(dump)
    protos: list[_Proto] = []
    end = _function(out, len(_HEADER), protos)
    if end != len(out):
        raise BytecodeError("trailing bytes after the main function")
    # The names of the locals that hold such a field (``local f =
    # redis.call``): a nested function's tail call of an upvalue of that
    # name is one of it.  (By name: a rare other local of the same name is
    # only made a plain call too.)
    held = set()
    if keys is not None:
        for proto in protos:
            held.update(proto.holders(keys))
    for proto in protos:
        proto.patch(out, keys, held)
    return bytes(out)


# The globals a script may read and still be one whose KEYS (or ARGV)
# table no code of its own can hold (see keys_only_indexed): none of them
# reaches the globals table, or code that reads KEYS (``_G``, ``getfenv``,
# ``loadstring`` and the like are not here).  (KEYS and ARGV themselves:
# each checked as it is read.)
_INDEXING_GLOBALS = frozenset(
    {
        b"redis", b"tonumber", b"tostring", b"type", b"pairs", b"ipairs", b"next",
        b"select", b"unpack", b"error", b"assert", b"pcall", b"xpcall", b"rawequal",
        b"string", b"table", b"math", b"cjson", b"cmsgpack", b"struct", b"bit",
    }
)  # fmt: skip


def keys_only_indexed(dump: bytes) -> bool:
    """Does the script of ``dump`` read its KEYS table only to index it at
    once, and no global that could reach that table otherwise?

    Every read of the global ``KEYS``, in every function of the script, is
    followed by a GETTABLE or a LEN whose table operand and result are the
    register it read KEYS into (``KEYS[1]``, ``KEYS[i]``, ``#KEYS``), so
    the table is never held (in a local, a table, an argument, an
    upvalue), and every other global it reads is one of
    ``_INDEXING_GLOBALS``.  No code but the run's own indexing then sees
    the table, so one table can serve every run of the script
    (``engine.one_key`` in the prelude)."""
    return only_indexed(dump)[0]


def only_indexed(dump: bytes) -> tuple[bool, bool]:
    """:func:`keys_only_indexed` of the script of ``dump``, and the same
    of its ARGV table (every read of ``ARGV`` indexed at once, every other
    global one of ``_INDEXING_GLOBALS``): one pass for both."""
    if not dump.startswith(_HEADER):
        raise BytecodeError("not a Lua 5.1 dump of this build's format")
    b = bytearray(dump)
    protos: list[_Proto] = []
    if _function(b, len(_HEADER), protos) != len(b):
        raise BytecodeError("trailing bytes after the main function")
    keys = argv = True
    for proto in protos:
        words, strings = proto.words, proto.strings
        for pc, i in enumerate(words):
            if i & _OPCODE != OP_GETGLOBAL:
                continue
            name = strings.get(i >> 14)
            if name != b"KEYS" and name != b"ARGV":
                if name not in _INDEXING_GLOBALS:
                    return False, False
                continue
            if not _indexed_at_once(words, pc, (i >> 6) & 0xFF):
                if name == b"KEYS":
                    keys = False
                else:
                    argv = False
    return keys, argv


def _indexed_at_once(words: list[int], pc: int, a: int) -> bool:
    """Is the table the GETGLOBAL at ``pc`` read into register ``a``
    indexed (or measured) at once into that same register?"""
    if pc + 1 >= len(words):
        return False
    j = words[pc + 1]
    op = j & _OPCODE
    if op != OP_GETTABLE and op != OP_LEN:
        return False
    if (j >> 6) & 0xFF != a or (j >> 23) & 0x1FF != a:
        return False  # (not indexed into its own register)
    if op == OP_GETTABLE and (j >> _C_SHIFT) & _C_MASK == a:
        return False  # (the table as its own key: strict, never compiled so)
    return True


def _writes(i: int, register: int) -> bool:
    """Does instruction ``i`` write ``register``?"""
    op = i & _OPCODE
    if op == OP_LOADNIL:
        return (i >> 6) & 0xFF <= register <= i >> 23  # (``local a, b``: A to B)
    return op in _WRITES_A and (i >> 6) & 0xFF == register


def _last_write(words: list[int], pc: int, register: int) -> int:
    """The pc of the last instruction before ``pc`` that writes
    ``register`` (in the code's order), or -1."""
    for prev in range(pc - 1, -1, -1):
        if _writes(words[prev], register):
            return prev
    return -1


def _callee(words: list[int], pc: int, register: int | None = None) -> int | None:
    """The instruction that put the function of the call at ``pc`` in its
    register (or, given, what ``register`` last held before ``pc``),
    through MOVEs of locals (``local f = redis.call ... return f(...)``), or
    None (a parameter, or more than 8 moves).  (The arguments are evaluated
    in the registers above it, so none of their instructions writes it.)"""
    if register is None:
        register = (words[pc] >> 6) & 0xFF
    at = _last_write(words, pc, register)
    for _ in range(8):
        if at < 0:
            return None
        i = words[at]
        if i & _OPCODE != OP_MOVE:
            return i
        at = _last_write(words, at, (i >> 23) & 0x1FF)
    return None


def _is_field(i: int | None, strings: dict[int, bytes], keys: frozenset) -> bool:
    """Is instruction ``i`` a GETTABLE (or SELF) of a constant key named in
    ``keys`` (None in ``keys``: or of a computed key, or a call's result;
    _PARAMETER: or ``i`` is None, a parameter), or a GETGLOBAL of one of
    LUA_GLOBALS?"""
    if i is None:
        return _PARAMETER in keys
    op = i & _OPCODE
    if op == OP_CALL:
        return None in keys
    if op == OP_GETGLOBAL:
        return strings.get(i >> 14) in LUA_GLOBALS
    if op != OP_GETTABLE and op != OP_SELF:
        return False
    c = (i >> _C_SHIFT) & _C_MASK
    if c < _BITRK:
        return None in keys
    return strings.get(c - _BITRK) in keys


def _calls_field(words: list[int], pc: int, strings: dict[int, bytes], keys: frozenset) -> bool:
    """Is the function of the call at ``pc`` such a field (see _is_field)?"""
    return _is_field(_callee(words, pc), strings, keys)


def _int(b: bytearray, at: int) -> tuple[int, int]:
    return struct.unpack_from("<i", b, at)[0], at + 4


def _string(b: bytearray, at: int) -> int:
    (size,) = struct.unpack_from("<Q", b, at)
    return at + 8 + size


class _Proto:
    """One function prototype of a dump, as :func:`_function` read it."""

    def __init__(self, code: int, words: list[int], tails: list[int], params: int) -> None:
        self.code = code  # where its code starts in the dump
        self.params = params  # how many parameters it takes (its first locals)
        self.words = words  # each pc's word
        self.tails = tails  # the pcs of the tail calls
        self.strings: dict[int, bytes] = {}  # its string constants by index
        self.locals: list[tuple[bytes, int, int]] = []  # (name, startpc, endpc)
        self.upvalues: list[bytes] = []  # its upvalues' names

    def holders(self, keys: frozenset) -> set[bytes]:
        """The names of its locals that hold such a field: the last write of
        the local's register before it starts (a local's register: how many
        locals declared before it are live then), or any write of that
        register while the local is live (``local f; f = cjson.decode``)."""
        out = set()
        words, strings = self.words, self.strings
        for n, (name, start, end) in enumerate(self.locals):
            register = sum(1 for _, s, e in self.locals[:n] if s <= start < e)
            # Declared with no value (``local f``: no instruction writes it
            # first), it holds what is written to it later: a parameter
            # holds what its caller passed.  (Taking such a local for a
            # parameter, tail recursion through ``local f; f = function(n)
            # ... return f(n - 1) end`` overflowed at 20000 levels where
            # Redis's goes on.)
            if (n < self.params or _last_write(words, start, register) >= 0) and _is_field(
                _callee(words, start, register), strings, keys
            ):
                out.add(name)
                continue
            for pc in range(start, min(end, len(words))):
                if _writes(words[pc], register) and _is_field(
                    _callee(words, pc + 1, register), strings, keys
                ):
                    out.add(name)
                    break
        return out

    def patch(self, b: bytearray, keys: frozenset | None, held: set[bytes]) -> None:
        words = self.words
        for pc in self.tails:
            if keys is not None and not _calls_field(words, pc, self.strings, keys):
                i = _callee(words, pc)
                if i is None or i & _OPCODE != OP_GETUPVAL:
                    continue
                up = (i >> 23) & 0x1FF
                if up >= len(self.upvalues) or self.upvalues[up] not in held:
                    continue
            struct.pack_into("<I", b, self.code + 4 * pc, (words[pc] & ~_OPCODE) | OP_CALL)


def _function(b: bytearray, at: int, protos: list[_Proto]) -> int:
    """Read the prototype at ``at`` (and those nested in it) into ``protos``;
    where it ends."""
    at = _string(b, at)  # source
    params = b[at + 9]
    at += 4 + 4 + 4  # linedefined, lastlinedefined; nups, numparams, is_vararg, maxstacksize
    n, at = _int(b, at)
    code = at
    tails: list[int] = []
    words: list[int] = []
    pc = 0
    while pc < n:
        (i,) = struct.unpack_from("<I", b, at + 4 * pc)
        words.append(i)
        op = i & _OPCODE
        if op == OP_TAILCALL:
            tails.append(pc)
        elif op == OP_SETLIST and (i >> _C_SHIFT) & _C_MASK == 0:
            words.append(_OPCODE)  # (an opcode that writes no register)
            pc += 1  # the next word is SETLIST's block number, not an instruction
        pc += 1
    at += 4 * n
    proto = _Proto(code, words, tails, params)
    protos.append(proto)
    at = _constants(b, at, proto.strings)
    n, at = _int(b, at)  # nested prototypes
    for _ in range(n):
        at = _function(b, at, protos)
    return _debug_info(b, at, proto)


def _constants(b: bytearray, at: int, strings: dict[int, bytes] | None = None) -> int:
    """Read a prototype's constants at ``at`` (its strings into ``strings``
    by index, given); where they end."""
    n, at = _int(b, at)
    for k in range(n):
        kind = b[at]
        at += 1
        if kind == _BOOLEAN:
            at += 1
        elif kind == _NUMBER:
            at += 8
        elif kind == _STRING:
            end = _string(b, at)
            if strings is not None:
                strings[k] = bytes(b[at + 8 : end - 1])  # (a dumped string ends with its NUL)
            at = end
        elif kind != _NIL:
            raise BytecodeError("unknown constant type %d" % kind)
    return at


def _debug_info(b: bytearray, at: int, proto: _Proto | None = None) -> int:
    """Read a prototype's debug information at ``at`` (its line numbers, its
    locals' and upvalues' names, into ``proto``'s, given); where it ends."""
    n, at = _int(b, at)  # line numbers
    at += 4 * n
    n, at = _int(b, at)  # local variables
    for _ in range(n):
        end = _string(b, at)
        if proto is not None:
            start, stop = struct.unpack_from("<ii", b, end)
            proto.locals.append((bytes(b[at + 8 : end - 1]), start, stop))
        at = end + 8
    n, at = _int(b, at)  # upvalue names
    for _ in range(n):
        end = _string(b, at)
        if proto is not None:
            proto.upvalues.append(bytes(b[at + 8 : end - 1]))
        at = end
    return at


def without_debug_info(dump: bytes) -> bytes:
    """``dump`` with every prototype's debug information left out: its line
    numbers, its locals' and upvalues' names (what ``string.dump`` with
    strip does in later Lua).  Each prototype's source stays.  The prelude's
    functions are loaded so: a smaller Lua state, as Redis's, whose sandbox
    functions are C functions, without any (see Engine._new_vm)."""
    if not dump.startswith(_HEADER):
        raise BytecodeError("not a Lua 5.1 dump of this build's format")
    out = bytearray(_HEADER)
    end = _stripped(bytearray(dump), len(_HEADER), out)
    if end != len(dump):
        raise BytecodeError("trailing bytes after the main function")
    return bytes(out)


def _stripped(b: bytearray, at: int, out: bytearray) -> int:
    """Copy the prototype at ``at`` (and those nested in it) into ``out``
    without its debug information; where it ends in ``b``."""
    start = at
    at = _string(b, at) + 4 + 4 + 4  # source; linedefined, lastlinedefined; nups...maxstacksize
    n, at = _int(b, at)
    at += 4 * n  # code
    at = _constants(b, at)
    n, at = _int(b, at)  # nested prototypes
    out += b[start:at]
    for _ in range(n):
        at = _stripped(b, at, out)
    out += struct.pack("<iii", 0, 0, 0)  # (no line numbers, locals or upvalue names)
    return _debug_info(b, at)
