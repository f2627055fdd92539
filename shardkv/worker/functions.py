"""Redis 7 functions in a shard: FUNCTION LOAD/DELETE/FLUSH/RESTORE/LIST/DUMP/STATS and FCALL.

Every worker holds every library: the acceptor sends each change to all
shards in one step of the global order (so they stay identical) and asks
shard 0 for FUNCTION LIST, DUMP and STATS.  A library's code runs once at
load time with only ``redis.register_function``, ``redis.log`` and the
version fields in reach (Redis's load-time API); its functions then run
like scripts (see :mod:`shardkv.worker.scripting`), called with the keys
and arguments tables.

FUNCTION DUMP and RESTORE use Redis 7.0's payload: each library as
``RDB_OPCODE_FUNCTION2`` (245) and its code as an RDB string, then the RDB
version and a CRC-64, as DUMP's payloads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import Error, ProtocolError, split_inline
from shardkv.protocol.wire import Verb
from shardkv.runtime.scriptsource import FLAG_NAMES, c_string
from shardkv.worker.commands import dump
from shardkv.worker.handlers import Handlers
from shardkv.worker.keyspace import Keyspace
from shardkv.worker.scripting import (
    FLAG_WIDE,
    CrossShard,
    Engine,
    ScriptReply,
    cross_reply,
    engine_of,
    may_call_wide,
)

if TYPE_CHECKING:
    from shardkv.worker.lualibs import LuaValue

RDB_OPCODE_FUNCTION2 = 245
_NAME_ERROR = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long"
FLAG_ORDER = [b"no-writes", b"allow-oom", b"allow-stale", b"no-cluster", b"allow-cross-slot-keys"]


@dataclass
class Function:
    name: bytes
    callback: object  # the Lua function
    flags: int
    description: bytes | None
    library: bytes


@dataclass
class Library:
    name: bytes
    code: bytes
    functions: dict[bytes, Function] = field(default_factory=dict)


# What Redis 7.0's functionsMemoryOverhead adds up (64-bit, jemalloc): its
# dict of engines (one entry, four slots), its dict of functions, the
# library context, and each library's and function's allocations.
DICT = 56  # sizeof(dict)
DICT_ENTRY = 24  # sizeof(dictEntry)
ENGINES = DICT + DICT_ENTRY + 4 * 8
LIBRARY_CTX = 32  # sizeof(functionsLibCtx)
LIBRARY_INFO = 32  # functionLibInfo
FUNCTION_INFO = 48  # functionInfo (40 bytes)
LUA_FUNCTION_CTX = 8  # luaFunctionCtx (an int)
EMPTY_FUNCTIONS_MEMORY = ENGINES + DICT + LIBRARY_CTX  # no library loaded


def _jemalloc(size: int) -> int:
    """The size jemalloc gives a request of ``size`` bytes (its size classes:
    8, 16, then four classes per doubling from 32 up)."""
    if size <= 8:
        return 8
    if size <= 128:
        return (size + 15) & ~15
    step = 1 << (size - 1).bit_length() - 3
    return (size + step - 1) // step * step


def _sds(s: bytes) -> int:
    """sdsZmallocSize of a new sds holding ``s``: header, bytes, NUL."""
    n = len(s)
    header = 1 if 0 < n < 32 else 3 if n < 256 else 5 if n < 65536 else 9
    return _jemalloc(header + n + 1)


class FunctionTable:
    """The size of Redis's dict of functions (by name, of every library),
    which used_memory_functions counts: entries, and slots, that grow as
    Redis's dict grows and never shrink on delete.  While Redis rehashes it
    into a larger table both tables count; Redis moves one bucket at each
    later operation on it (FUNCTION LOAD's and DELETE's, and FCALL's
    lookups), so when it is done depends on how many buckets its random
    hash seed filled: here it takes the expected count of such operations
    of FUNCTION LOAD and DELETE (FCALL's, on one shard, are not counted).
    Exact for a library loaded at once, and whenever the count of functions
    has not just passed a power of two."""

    def __init__(self) -> None:
        self.used = 0
        self.size = 0
        self.old = 0  # the old table's slots while rehashing
        self.steps = 0  # the rehash's steps still to come
        # The libraries' and functions' allocations: Redis's cache_memory, a
        # running sum (added at link, taken off at unlink; see restore).
        self.cache = 0

    def _step(self) -> None:
        if self.old:
            self.steps -= 1
            if self.steps <= 0:
                self.old = 0

    def add(self, n: int) -> None:
        for _ in range(n):
            self._step()
            if self.size == 0:
                self.size = 4
            elif not self.old and self.used >= self.size:
                old = self.old = self.size
                # One step a bucket: the buckets that hold some of its names.
                self.steps = round(old * (1 - (1 - 1 / old) ** self.used))
                self.size = 1 << self.used.bit_length()  # the power of two above used
            self.used += 1

    def find(self) -> None:
        if self.used:
            self._step()

    def delete(self, n: int) -> None:
        for _ in range(n):
            self.find()
            self.used -= 1

    def overhead(self) -> int:
        table = self.used * DICT_ENTRY + (self.size + self.old) * 8 + DICT
        return ENGINES + table + LIBRARY_CTX + self.cache


def _malloc_size(library: Library) -> int:
    """What linking ``library`` adds to Redis's cache_memory (libraryMallocSize,
    and functionMallocSize of each function)."""
    size = LIBRARY_INFO + _sds(library.name) + _sds(library.code)
    for f in library.functions.values():
        size += FUNCTION_INFO + _sds(f.name) + LUA_FUNCTION_CTX
        if f.description is not None:
            size += _sds(f.description)
    return size


def _valid_name(name: bytes) -> bool:
    return bool(name) and all(c == 95 or 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 for c in name)


class Functions:
    """One shard's libraries, loaded into its engine's Lua state."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.libraries: dict[bytes, Library] = {}
        self.functions: dict[bytes, Function] = {}
        self._registering: Library | None = None
        self.table = FunctionTable()
        engine.register_function = self._register  # type: ignore[attr-defined]

    # -- loading ------------------------------------------------------------------

    def load(self, code: bytes, replace: bool) -> bytes:
        """FUNCTION LOAD: the library's name, or CommandError."""
        name, body = _metadata(code)
        if not _valid_name(name):
            raise CommandError("ERR " + _NAME_ERROR)
        old = self.libraries.get(name.lower())
        if old is not None and not replace:
            raise CommandError("ERR Library '%s' already exists" % name.decode("latin-1"))
        library = Library(name, code)
        table = self.table
        if old is not None:  # Redis unlinks it first, and links it back on error
            table.delete(len(old.functions))
        self._registering = library
        try:
            try:
                ok, err = self.engine.load_library(body)
            finally:
                self._registering = None
            if not ok:
                raise CommandError(err)
            if not library.functions:
                raise CommandError("ERR No functions registered")
            for f in library.functions.values():
                table.find()
                owner = self.functions.get(f.name.lower())
                if owner is not None and owner.library.lower() != name.lower():
                    raise CommandError("ERR Function %s already exists" % f.name.decode("latin-1"))
        except CommandError:
            if old is not None:
                table.add(len(old.functions))
            raise
        if old is not None:
            self._unlink(old)
            table.cache -= _malloc_size(old)
        self._link(library)
        table.add(len(library.functions))
        table.cache += _malloc_size(library)
        return name

    # Names are case-insensitive, as in Redis's dicts of libraries and functions.
    def _link(self, library: Library) -> None:
        self.libraries[library.name.lower()] = library
        for f in library.functions.values():
            self.functions[f.name.lower()] = f

    def _unlink(self, library: Library) -> None:
        self.libraries.pop(library.name.lower(), None)
        for f in library.functions.values():
            self.functions.pop(f.name.lower(), None)

    def _register(self, *args: LuaValue) -> None:
        """redis.register_function(name, callback) or redis.register_function{...}"""
        engine = self.engine
        library = self._registering
        if library is None:
            engine._raise("redis.register_function can only be called on FUNCTION LOAD command")
        lua_type = engine._lua_type
        flags = 0
        description = None
        if len(args) == 2:
            name, callback = args
            if type(name) in (int, float):
                name = str(name).encode()
            if type(name) is not bytes:
                engine._raise("first argument to redis.register_function must be a string")
            if lua_type(callback) != "function":
                engine._raise("second argument to redis.register_function must be a function")
        elif len(args) == 1:
            table = args[0]
            if lua_type(table) != "table":
                engine._raise(
                    "calling redis.register_function with a single argument is only applicable to "
                    "Lua table (representing named arguments)."
                )
            name = callback = None
            for key, value in table.items():
                if type(key) is not bytes:
                    engine._raise("named argument key given to redis.register_function is not a string")
                k = key.lower()
                if k == b"function_name":
                    if type(value) not in (bytes, int, float):
                        engine._raise(
                            "function_name argument given to redis.register_function must be a string"
                        )
                    name = value if type(value) is bytes else str(value).encode()
                elif k == b"description":
                    if type(value) not in (bytes, int, float):
                        engine._raise(
                            "description argument given to redis.register_function must be a string"
                        )
                    description = value if type(value) is bytes else str(value).encode()
                elif k == b"callback":
                    if lua_type(value) != "function":
                        engine._raise("callback argument given to redis.register_function must be a function")
                    callback = value
                elif k == b"flags":
                    if lua_type(value) != "table":
                        engine._raise(
                            "flags argument to redis.register_function must be a table representing function flags"
                        )
                    for flag in value.values():
                        bit = FLAG_NAMES.get(flag.lower()) if type(flag) is bytes else None
                        if bit is None:
                            engine._raise("unknown flag given")
                        flags |= bit
                else:
                    engine._raise("unknown argument given to redis.register_function")
            if name is None:
                engine._raise("redis.register_function must get a function name argument")
            if callback is None:
                engine._raise("redis.register_function must get a callback argument")
        else:
            engine._raise("wrong number of arguments to redis.register_function")
        if not _valid_name(name):
            engine._raise(_NAME_ERROR)
        if name.lower() in library.functions:
            engine._raise("Function already exists in the library")
        if may_call_wide(library.code):  # its redis.call takes any number of arguments
            flags |= FLAG_WIDE
        function = Function(name, callback, flags, description, library.name)
        library.functions[name.lower()] = function

    # -- the other subcommands ------------------------------------------------------

    def delete(self, name: bytes) -> object:
        library = self.libraries.get(name.lower())
        if library is None:
            return Error("ERR Library not found")
        self._unlink(library)
        self.table.delete(len(library.functions))
        self.table.cache -= _malloc_size(library)
        return "OK"

    def flush(self) -> None:
        self.libraries.clear()
        self.functions.clear()
        self.table = FunctionTable()  # Redis makes a new context

    def memory_overhead(self) -> int:
        """INFO's used_memory_functions (functionsMemoryOverhead)."""
        return self.table.overhead()

    def listing(self, pattern: bytes | None, with_code: bool) -> ScriptReply:
        from shardkv.protocol.glob import compile_glob

        match = compile_glob(pattern) if pattern is not None else None
        out = []
        for library in self.libraries.values():
            if match is not None and not match(library.name):
                continue
            functions = []
            for f in library.functions.values():
                flags = [name for name in FLAG_ORDER if f.flags & FLAG_NAMES[name]]
                functions.append(
                    ("map", [b"name", f.name, b"description", f.description, b"flags", ("set", flags)])
                )
            entry = [b"library_name", library.name, b"engine", b"LUA", b"functions", functions]
            if with_code:
                entry += [b"library_code", library.code]
            out.append(("map", entry))
        return ScriptReply(out)

    def dump(self) -> bytes:
        body = b"".join(
            bytes([RDB_OPCODE_FUNCTION2]) + dump._str(lib.code) for lib in self.libraries.values()
        )
        body += dump.RDB_VERSION.to_bytes(2, "little")
        return body + dump.crc64(body).to_bytes(8, "little")

    def restore(self, payload: bytes, policy: bytes) -> object:
        if len(payload) < 10:
            return Error(errors.DUMP_PAYLOAD)
        version = int.from_bytes(payload[-10:-8], "little")
        if version > dump.RDB_VERSION or dump.crc64(payload[:-8]) != int.from_bytes(payload[-8:], "little"):
            return Error(errors.DUMP_PAYLOAD)
        reply = self._restore(payload, policy)
        if reply != "OK" or policy != b"FLUSH":
            # Redis 7.0 loads the payload into a library context of its own,
            # and freeing it (functionsLibCtxClear) zeroes the cache_memory
            # of the current one: used_memory_functions leaves out what the
            # libraries then loaded take, and a later FUNCTION DELETE takes
            # theirs off.  A RESTORE ... FLUSH that works swaps the contexts.
            self.table.cache = 0
        return reply

    def _restore(self, payload: bytes, policy: bytes) -> object:
        reader = dump._Reader(payload[:-10])
        codes = []
        try:
            while reader.pos < len(reader.data):
                if reader.byte() != RDB_OPCODE_FUNCTION2:
                    return Error("ERR given type is not a function")
                codes.append(reader.string())
        except (dump.BadData, IndexError, ValueError):
            return Error("ERR can not read data type")
        if policy == b"APPEND":
            for code in codes:  # libraryJoin's check, worded as it is
                try:
                    name = _metadata(code)[0]
                except CommandError as e:
                    return Error(e.message)
                if name.lower() in self.libraries:
                    return Error("ERR Library %s already exists" % name.decode("latin-1"))
        saved_libraries, saved_functions = dict(self.libraries), dict(self.functions)
        saved_table = copy.copy(self.table)
        if policy == b"FLUSH":
            self.flush()
        try:
            for code in codes:
                self.load(code, replace=policy == b"REPLACE")
        except CommandError as e:
            self.libraries, self.functions, self.table = saved_libraries, saved_functions, saved_table
            return Error(e.message)
        return "OK"

    def stats(self) -> ScriptReply:
        nfunctions = sum(len(lib.functions) for lib in self.libraries.values())
        engines = (
            "map",
            [b"LUA", ("map", [b"libraries_count", len(self.libraries), b"functions_count", nfunctions])],
        )
        return ScriptReply(("map", [b"running_script", None, b"engines", engines]))


def _metadata(code: bytes) -> tuple[bytes, bytes]:
    """functionExtractLibMetaData: (library name, code after the shebang line).

    Redis reads the line with C's string functions: ``strchr`` looks for
    its line feed only up to the first NUL (a NUL before it: invalid
    metadata), and an unknown option's ``%s`` prints it only up to a NUL
    that a quoted ``\\x00`` put in it (the engine's ``%S`` prints all of it)."""
    if not code.startswith(b"#!"):
        raise CommandError("ERR Missing library metadata")
    end = code.find(b"\n")
    if end < 0 or code.find(b"\0", 2, end) >= 0:
        raise CommandError("ERR Invalid library metadata")
    try:
        parts = split_inline(code[:end])  # sdssplitargs: name="foo" is foo
    except ProtocolError:
        parts = []
    if not parts:
        raise CommandError("ERR Invalid library metadata")
    engine = parts[0][2:]
    name = None
    for part in parts[1:]:
        if part[:5].lower() == b"name=":
            if name is not None:
                raise CommandError("ERR Invalid metadata value, name argument was given multiple times")
            name = part[5:]
            continue
        raise CommandError("ERR Invalid metadata value given: " + c_string(part).decode("latin-1"))
    if name is None:
        raise CommandError("ERR Library name was not given")
    if engine.lower() != b"lua":
        if not _valid_name(name):
            raise CommandError("ERR " + _NAME_ERROR)
        raise CommandError("ERR Engine '%s' not found" % engine.decode("latin-1"))
    return name, code[end:]


def functions_of(ks: Keyspace) -> Functions:
    engine = engine_of(ks)
    functions = getattr(engine, "functions", None)
    if functions is None:
        functions = engine.functions = Functions(engine)  # type: ignore[attr-defined]
    return functions


def function_internal(ks: Keyspace, args: list[bytes]) -> object:
    """__function load replace code | delete name | flush | restore payload policy |
    list pattern withcode | dump | stats -> FUNCTION's work on this shard."""
    functions = functions_of(ks)
    sub = args[1]
    if ks.slots.start:
        # A change of the libraries, which every shard makes: as Redis, it
        # counts one (dirty), on the first shard (an error or a read clears it).
        ks.changes = 0
    if sub == b"load":
        return functions.load(args[3], args[2] == b"1")
    if sub == b"delete":
        return functions.delete(args[2])
    if sub == b"flush":
        functions.flush()
        return "OK"
    if sub == b"restore":
        return functions.restore(args[2], args[3])
    ks.unchanged = True  # the rest only read: nothing for the AOF
    if sub == b"list":
        return functions.listing(args[2] if args[2] != b"" or args[4] == b"1" else None, args[3] == b"1")
    if sub == b"dump":
        return functions.dump()
    if sub == b"stats":
        return functions.stats()
    raise CommandError(errors.SYNTAX)


def function_writers(ks: Keyspace, args: list[bytes]) -> object:
    """__fwriters -> the names (lowercase) of the functions that may write:
    those without the ``no-writes`` flag, which Redis's fcallGetCommandFlags
    makes write commands (an inquiry: it only reads)."""
    functions = getattr(engine_of(ks), "functions", None)
    if functions is None:
        return []
    no_writes = FLAG_NAMES[b"no-writes"]
    return [name for name, f in functions.functions.items() if not f.flags & no_writes]


def function_denyoom(ks: Keyspace, args: list[bytes]) -> object:
    """__fdenyoom -> the names (lowercase) of the functions whose FCALL
    and FCALL_RO are ``denyoom`` commands, refused at OOM before they run:
    those with neither ``no-writes`` nor ``allow-oom`` (Redis's
    scriptFlagsToCmdFlags; an inquiry: it only reads)."""
    functions = getattr(engine_of(ks), "functions", None)
    if functions is None:
        return []
    spared = FLAG_NAMES[b"no-writes"] | FLAG_NAMES[b"allow-oom"]
    return [name for name, f in functions.functions.items() if not f.flags & spared]


def _fcall(ks: Keyspace, args: list[bytes], ro: bool, everything: int = 0) -> object:
    functions = functions_of(ks)
    f = functions.functions.get(args[1].lower())
    if f is None:
        return Error("ERR Function not found")
    try:
        n = int(args[2])
    except ValueError:
        return Error("ERR Bad number of keys provided")
    if n > len(args) - 3:
        return Error(errors.NUMKEYS_TOO_BIG)
    if n < 0:
        return Error(errors.NUMKEYS_NEGATIVE)
    engine = functions.engine
    engine.everything = everything
    try:
        return engine.call_function(f.name, f.callback, f.flags, args[3 : 3 + n], args[3 + n :], ro)
    except CrossShard as e:
        return cross_reply(e)
    finally:
        engine.everything = 0
        if engine.widened:  # it ran again wide (Engine._invoke_wide): from now on it runs so
            engine.widened = False
            f.flags |= FLAG_WIDE


def fcall(ks: Keyspace, args: list[bytes]) -> object:
    """FCALL function numkeys [key [key ...]] [arg [arg ...]]"""
    return _fcall(ks, args, args[0].lower() == b"fcall_ro")


def fcall_across(ks: Keyspace, args: list[bytes]) -> object:
    """__fcall everything command user logs function numkeys key... arg... ->
    FCALL run by the executor of a cross-shard operation (``command``: the
    client's, ``fcall`` or ``fcall_ro``; ``user``: the ACL rules its calls
    obey, empty for a user that may run everything; ``logs``: the redis.log
    lines the run undone before this one had written, dropped here)."""
    engine = engine_of(ks)
    engine.set_user(args[3])
    engine.log_skip = engine.ran_written = int(args[4])
    try:
        return _fcall(ks, [b"fcall", *args[5:]], args[2].endswith(b"_ro"), int(args[1]))
    finally:
        engine.user = None
        engine.log_skip = 0


def function_records(ks: Keyspace, args: list, reply: object) -> list[list[bytes]]:
    """The AOF records of a ``__function`` change, as Redis logs them:
    FUNCTION LOAD [REPLACE] code, DELETE name, FLUSH, RESTORE payload policy."""
    sub = args[1]
    if sub == b"load":
        return [
            [b"FUNCTION", b"LOAD", b"REPLACE", args[3]]
            if args[2] == b"1"
            else [b"FUNCTION", b"LOAD", args[3]]
        ]
    if sub == b"delete":
        return [[b"FUNCTION", b"DELETE", args[2]]]
    if sub == b"flush":
        return [[b"FUNCTION", b"FLUSH"]]
    if sub == b"restore":
        return [[b"FUNCTION", b"RESTORE", args[2], args[3]]]
    return []


def function_replay(ks: Keyspace, args: list[bytes]) -> object:
    """FUNCTION LOAD [REPLACE] code | DELETE name | FLUSH [ASYNC|SYNC] | RESTORE payload [policy]
    -> the changes an AOF holds, replayed at load (clients' FUNCTION is the acceptor's)."""
    if len(args) < 2:
        raise CommandError(errors.SYNTAX)
    sub = args[1].lower()
    if sub == b"load" and len(args) in (3, 4):
        replace = len(args) == 4 and args[2].lower() == b"replace"
        return function_internal(ks, [Verb.FUNCTION, b"load", b"1" if replace else b"0", args[-1]])
    if sub == b"delete" and len(args) == 3:
        return function_internal(ks, [Verb.FUNCTION, b"delete", args[2]])
    if sub == b"flush" and len(args) <= 3:
        return function_internal(ks, [Verb.FUNCTION, b"flush"])
    if sub == b"restore" and len(args) in (3, 4):
        policy = args[3].upper() if len(args) == 4 else b"APPEND"
        return function_internal(ks, [Verb.FUNCTION, b"restore", args[2], policy])
    raise CommandError(errors.SYNTAX)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    Verb.FUNCTION: function_internal,
    Verb.FUNCTION_WRITERS: function_writers,
    Verb.FUNCTION_DENYOOM: function_denyoom,
    "fcall": fcall,
    "fcall_ro": fcall,
    Verb.FCALL: fcall_across,
    "function": function_replay,
}
