"""A Lua script's source, read as Redis 7.0 reads it before it caches the
script: its shebang line (evalExtractShebangFlags), then its code, which
Lua compiles (luaCreateFunction).

The worker compiles the scripts it runs (``Engine.load``); the acceptor,
which keeps the script cache, asks :func:`compiles` before it caches a
script that SCRIPT LOAD or EVAL brings, so that one that does not compile
is never cached, not even for the commands pipelined behind it, which
Redis runs after its error (SCRIPT EXISTS 0, EVALSHA ``-NOSCRIPT``).  Both
read a script with this module's rules and with the same Lua (lupa's
5.1), so they agree on which scripts compile; the worker's error says why.
"""

from __future__ import annotations

from collections.abc import Callable

from lupa import lua51

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import ProtocolError, split_inline

# Script flags, as Redis 7.0's shebang and register_function name them.
FLAG_NO_WRITES = 1
FLAG_ALLOW_OOM = 2
FLAG_ALLOW_STALE = 4
FLAG_NO_CLUSTER = 8
FLAG_COMPAT = 16  # no shebang: EVAL's compatibility mode
FLAG_ALLOW_CROSS_SLOT = 32
FLAG_NAMES = {
    b"no-writes": FLAG_NO_WRITES,
    b"allow-oom": FLAG_ALLOW_OOM,
    b"allow-stale": FLAG_ALLOW_STALE,
    b"no-cluster": FLAG_NO_CLUSTER,
    b"allow-cross-slot-keys": FLAG_ALLOW_CROSS_SLOT,
}


def parse_shebang(body: bytes) -> tuple[int, int]:
    """(flags, length of the shebang line) of a script; raises CommandError
    with Redis's message for a bad one (evalExtractShebangFlags).  A
    ``flags=`` option's list is split at every comma, as sdssplitlen
    splits it: ``flags=`` names no flag, but ``flags=no-writes,`` names an
    empty one, which is refused.

    Redis reads the line with C's string functions: ``strchr`` looks for
    its line feed only up to the first NUL (a NUL before it: no line feed,
    an invalid shebang), and ``strcmp`` and ``%s`` read an engine, option
    or flag that a quoted ``\\x00`` put a NUL in only up to that NUL."""
    if not body.startswith(b"#!"):
        return FLAG_COMPAT, 0
    end = body.find(b"\n")
    if end < 0 or body.find(b"\0", 2, end) >= 0:
        raise CommandError(errors.SHEBANG_INVALID)
    try:
        parts = split_inline(body[:end])  # sdssplitargs
    except ProtocolError:
        parts = []
    if not parts:
        raise CommandError(errors.SHEBANG_NO_ENGINE)
    engine = _c_string(parts[0])
    if engine != b"#!lua":
        raise CommandError(errors.SHEBANG_ENGINE % engine.decode("latin-1"))
    flags = 0
    for part in parts[1:]:
        if not part.startswith(b"flags="):
            raise CommandError(errors.SHEBANG_OPTION % _c_string(part).decode("latin-1"))
        for name in part[6:].split(b",") if len(part) > 6 else ():
            name = _c_string(name)
            flag = FLAG_NAMES.get(name)
            if flag is None:
                raise CommandError(errors.SHEBANG_FLAG % name.decode("latin-1"))
            flags |= flag
    return flags, end


def _c_string(part: bytes) -> bytes:
    """What C's ``strcmp`` and ``%s`` read of an sds: up to its first NUL."""
    return part.partition(b"\0")[0]


def source_chunk(code: bytes) -> bytes:
    """What Lua's ``loadstring`` is given for a script's code (its body
    after the shebang line, whose line feed it keeps): the code, but with
    a space before a chunk that starts with ESC.  lupa's Lua loads such a
    chunk as bytecode, which a script can craft to escape the sandbox;
    Redis's Lua never loads bytecode (its f_parser only parses), so the
    chunk is parsed as source, and fails as in Redis (``unexpected symbol
    near 'char(27)'``, on line 1: the space changes no line)."""
    return b" " + code if code[:1] == b"\x1b" else code


def compiles(body: bytes) -> bool:
    """Whether Redis would cache the script ``body``: its shebang line is
    valid and its code compiles.  Nothing of it runs: the code is
    compiled in a Lua state of its own, with nothing in it but Lua's base
    library, and the compiled function dropped."""
    try:
        _flags, skip = parse_shebang(body)
    except CommandError:
        return False
    return bool(_checker()(source_chunk(body[skip:])))


_CHECK: list[Callable[[bytes], bool]] = []


def _checker() -> Callable[[bytes], bool]:
    """The compile check, made on first use (a process that never reads a
    script never starts a Lua state for it)."""
    if not _CHECK:
        lua = lua51.LuaRuntime(encoding=None, register_eval=False, register_builtins=False)
        _CHECK.append(lua.eval("function(code) return loadstring(code, '=check') ~= nil end"))
    return _CHECK[0]
