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
    engine = c_string(parts[0])
    if engine != b"#!lua":
        raise CommandError(errors.SHEBANG_ENGINE % engine.decode("latin-1"))
    flags = 0
    for part in parts[1:]:
        if not part.startswith(b"flags="):
            raise CommandError(errors.SHEBANG_OPTION % c_string(part).decode("latin-1"))
        for name in part[6:].split(b",") if len(part) > 6 else ():
            name = c_string(name)
            flag = FLAG_NAMES.get(name)
            if flag is None:
                raise CommandError(errors.SHEBANG_FLAG % name.decode("latin-1"))
            flags |= flag
    return flags, end


def c_string(part: bytes) -> bytes:
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
    library, and the compiled function dropped.  That state has the
    worker's memory limit (:data:`LUA_MAX_MEMORY`): a script whose compile
    runs a worker's Lua out of memory runs this one out too, and is not
    cached (a worker's state holds more, its prelude and its scripts: one
    that fits here by less than that is refused there, and forgotten by
    the acceptors then)."""
    try:
        _flags, skip = parse_shebang(body)
    except CommandError:
        return False
    lua, check = _checker()
    chunk = source_chunk(body[skip:])
    if not fits(lua, len(chunk)):
        return False
    used = lua.get_memory_used()
    try:
        ok = bool(check(chunk))
    except lua51.LuaMemoryError:
        ok = False
    settle(lua, used)
    return ok


# Lua's bytes at most in each of a process's Lua states, the worker's
# (EVAL's, the functions') and the acceptor's compile check: one script
# cannot take the process's memory.  Redis has no such limit.
LUA_MAX_MEMORY = 256 * 1024 * 1024
# What pushing a string into Lua takes beyond its bytes: its header, and
# the string table that may grow (with room to spare).
PUSH_SLACK = 64 * 1024
# A compile that left this much more in its state (the compiled function,
# the garbage of the parse): a full collection follows (see settle).
COLLECT_GROWTH = 1024 * 1024


def fits(lua: lua51.LuaRuntime, size: int) -> bool:
    """Whether a string of ``size`` bytes (a script's code) can go into
    ``lua`` within its memory limit, after a full collection if it takes
    one.  lupa pushes a string outside any protected call: one that does
    not fit is a Lua panic, which aborts the process; the caller answers
    Lua's "not enough memory" instead, which the compile would have."""
    room = lua.get_max_memory() - size - PUSH_SLACK
    if lua.get_memory_used() <= room:
        return True
    lua.gccollect()
    return lua.get_memory_used() <= room


def settle(lua: lua51.LuaRuntime, before: int) -> None:
    """After a compile in ``lua``, which used ``before`` bytes before it: a
    full collection if it left more than :data:`COLLECT_GROWTH` behind, or
    the state more than half full.  Lua 5.1 does not collect when an
    allocation fails, and a big compile's garbage (all of it when it ran
    out of memory) would stay until its collector came round: the next
    compiles would run out of memory sooner than in a collected state,
    and the next string pushed in could not fit (a panic)."""
    used = lua.get_memory_used()
    if used - before > COLLECT_GROWTH or used > lua.get_max_memory() // 2:
        lua.gccollect()


_CHECK: list[tuple[lua51.LuaRuntime, Callable[[bytes], bool]]] = []


def _checker() -> tuple[lua51.LuaRuntime, Callable[[bytes], bool]]:
    """The compile check's Lua state and function, made on first use (a
    process that never reads a script never starts a Lua state for it)."""
    if not _CHECK:
        lua = lua51.LuaRuntime(
            encoding=None, register_eval=False, register_builtins=False, max_memory=LUA_MAX_MEMORY
        )
        # (a worker dumps what it compiled, to patch its bytecode: the check
        # dumps it too, so a script that fits here fits there more often)
        check = lua.eval(
            "function(code) local f = loadstring(code, '=check')"
            " return f ~= nil and (pcall(string.dump, f)) end"
        )
        _CHECK.append((lua, check))
    return _CHECK[0]
