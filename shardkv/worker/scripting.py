"""Lua scripts inside a shard: EVAL, EVALSHA and their ``_RO`` forms.

Each worker has one Lua 5.1 state (``lupa.lua51``) set up by
``luaprelude.lua`` as Redis 7.0 sets up its own: the ``redis`` table,
the libraries (``cjson``, ``cmsgpack``, ``bit``, ``struct``, see
:mod:`shardkv.worker.lualibs`), Redis's error handler, and the sandbox.
lupa's bridges to Python are off: no ``python`` module, no ``eval`` or
builtins, and a Python object's attributes can never be read from Lua
(``attribute_filter``); the prelude only holds a few Python callables as
upvalues, out of the scripts' reach (``debug`` is gone too).

A script runs start to finish inside one command of the shard's batch, so
it is atomic.  ``redis.call`` runs the shard's ordinary command handlers:
a call that needs another shard's key (or every shard, like KEYS) stops the
script with :class:`CrossShard`; whatever it wrote is rolled back (the
keys' states before the first write are kept), and the acceptor runs the
script again with every key it needs (see :mod:`shardkv.acceptor.scripting`).

The script cache lives in the acceptor, which sends a script's body the
first time it sends the script to a shard; here it is compiled once and
kept by its SHA1 (``__script load``).  The write commands a script ran are
logged to the AOF as one MULTI/EXEC group, as Redis logs a script's effects.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
import struct
import time
from binascii import crc_hqx
from importlib import resources
from operator import length_hint
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, NoReturn

from lupa import lua51

from shardkv.protocol import acl, command_docs, commands, errors, wire
from shardkv.protocol.args import LLONG_MIN, parse_cursor, parse_int32, parse_scan_options
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import (
    BULK_LINES,
    Error,
    HumanDouble,
    KeyedArrays,
    PairChoices,
    Pairs,
    ProtocolError,
    Raw,
    Verbatim,
    decode_reply,
    format_double,
)
from shardkv.protocol.router import LBRACE, SLOTS, key_slot
from shardkv.protocol.wire import Verb
from shardkv.runtime import serverlog
from shardkv.runtime.cmdstats import LUA_CLIENT_ADDR, Stats, stat_name
from shardkv.runtime.scriptsource import (
    FLAG_ALLOW_OOM,
    FLAG_COMPAT,
    FLAG_NO_WRITES,
    LUA_MAX_MEMORY,
    PUSH_SLACK,
    fits,
    parse_shebang,
    settle,
    source_chunk,
)
from shardkv.worker import access, events, lualibs
from shardkv.worker.handlers import Handlers, find
from shardkv.worker.keyspace import KEYMISS, TYPE_NAMES, Keyspace, slot_of
from shardkv.worker.luabytecode import (
    BytecodeError,
    only_indexed,
    without_call_tail_calls,
    without_debug_info,
    without_wrapped_tail_calls,
)
from shardkv.worker.lualibs import LibError
from shardkv.worker.transfer import State, drop_key, export_key, import_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from shardkv.worker.lualibs import LuaValue

log = logging.getLogger("shardkv.worker")

REDIS_VERSION = "7.0.15"
REDIS_VERSION_NUM = 0x07000F
_SCRIPT_READ = events.SCRIPT_READ  # (redis.call's fast read: a global's load, not an attribute's too)
GC_PERIOD = 50  # scripts between two steps of Lua's collector (LUA_GC_CYCLE_PERIOD)
# A step is skipped while Lua's memory has grown by less than this since
# the last one (see Engine._collect).  A step runs a whole cycle over the
# state (tens of KB; a few hundred thousand instructions): the more garbage
# it frees, the less it costs a script, and the keys and replies a script
# pushes stay interned for longer.  Lua's own collector would wait for the
# heap to double (its pause, 200%).
GC_GROWTH = 32 * 1024
# The bytecode patches a compile names (the prelude's PATCHES, given to each
# Lua state once: a Python function passed with every compile came back, at
# times, as another Python object, lupa 2.8's scoder/lupa#293 and #294).
NARROW = 1  # _narrow_patch
WIDE = 2  # without_call_tail_calls

# A script's flag of shardkv's own, beside Redis's (shardkv.runtime.scriptsource).
FLAG_WIDE = 1 << 16  # not Redis's: the script runs with the wide redis.call (Engine._widen)


class CrossShard(Exception):
    """A script needs keys this shard does not hold (``keys``; a key of
    another database than the script's is ``(database, key)``), or every
    shard (``everything``: 1, every key of the script's database; 2, every
    key of every database)."""

    def __init__(self, keys: list, everything: int = 0) -> None:
        super().__init__("cross-shard")
        self.keys = keys
        self.everything = everything
        # The redis.log lines the undone run had written (Run.written): its
        # run across shards drops as many first (Engine.log_skip).
        self.written = 0


def sha1hex(data: bytes) -> bytes:
    return hashlib.sha1(data).hexdigest().encode()


# A script's redis.log lines held until it ends (Run.logs) at most: beyond,
# they are written as they come, and counted (Run.written): a run of it
# undone drops as many when it runs again, so that each shows once.
LOGS_HELD = 1000


class _Rand48:
    """Redis's redisLrand48: the 48-bit LCG of drand48, seeded as Redis seeds it."""

    def __init__(self) -> None:
        self.x = wire.RANDOM_SEED

    def next(self) -> int:
        self.x = (0x5DEECE66D * self.x + 0xB) & 0xFFFFFFFFFFFF
        return self.x >> 17

    def seed(self, value: int) -> None:
        value &= 0xFFFFFFFF
        self.x = (value << 16) | 0x330E


# Commands that block only with an option; from a script they run without it.
_BLOCK_OPTION = frozenset({"xread", "xreadgroup"})


def _streams_at(argv: list[bytes]) -> int:
    """Where XREAD's STREAMS keyword is (the options come before it)."""
    for i, a in enumerate(argv):
        if a.lower() == b"streams":
            return i
    return len(argv)


def _check_int(args: tuple, i: int, name: str) -> int:
    """luaL_checkint: a number, or a string that reads as one, truncated."""
    value = args[i] if i < len(args) else None
    number: float | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        number = value
    elif isinstance(value, bytes):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None:
        got = "no value" if i >= len(args) else lualibs.type_name(value)
        raise LibError(f"bad argument #{i + 1} to '{name}' (number expected, got {got})")
    # (int)(lua_Integer)number, as on x86-64: NaN and out of range give
    # INT64_MIN, whose low 32 bits are 0.
    n = int(number) if -(2.0**63) <= number < 2.0**63 else -(2**63)
    return ((n + 2**31) % 2**32) - 2**31


def _strings(argv: list) -> bool:
    """Lua numbers among redis.call's arguments, as strings (in place); False
    if an argument is neither a string nor a number."""
    for i, a in enumerate(argv):
        t = type(a)
        if t is bytes:
            continue
        if t is int:
            argv[i] = b"%d" % a if -(10**17) < a < 10**17 else b"%.17g" % a
        elif t is float:
            # (glibc's printf writes a NaN's sign: Lua's 0/0 on x86 is -nan)
            argv[i] = b"%.17g" % a if a == a else b"-nan" if math.copysign(1.0, a) < 0 else b"nan"
        else:
            return False
    return True


_MANY_VALUES = re.compile(rb"unpack|byte|\.\.\.")


def may_call_wide(body: bytes) -> bool:
    """Can the script pass redis.call more arguments than lupa passes to
    Python (more than 7997)?  Only a function or ``...`` gives that many
    values to one call, and of the functions a script has only unpack
    (Lua's, cmsgpack's, struct's) and string.byte can give that many; such
    a script runs wide from the start (see the prelude), so no rerun
    undoes what it did.  Another name for them (``_G['unp'..'ack']``) is
    caught when lupa refuses the call (Engine._widen)."""
    return _MANY_VALUES.search(body) is not None


def _narrow_patch(dump: bytes) -> bytes | None:
    """The bytecode patch of a script that runs narrow: its tail calls that
    may reach the prelude's wrappers made plain calls, so that their
    errors name the script's line (see without_wrapped_tail_calls); None
    when it has none (the compiled function stays as it is)."""
    patched = without_wrapped_tail_calls(dump)
    return None if patched == dump else patched


def _only_indexed(dump: bytes) -> tuple[bool, bool]:
    """luabytecode.only_indexed, for the prelude's ``engine.one_key``:
    whether the script only indexes its KEYS, and its ARGV (two values in
    Lua); neither for a dump it cannot read."""
    try:
        return only_indexed(dump)
    except (BytecodeError, struct.error, IndexError):
        return False, False


def _deny_attributes(obj: LuaValue, name: LuaValue, setting: bool) -> object:
    raise AttributeError("access to Python attributes is not allowed")


class _Widen(Exception):
    """A script's redis.call (or pcall) had more arguments than lupa can
    pass to Python, or a 0 that may be a -0 (Engine._sign_unknown): undo
    the script, and run it again with the wide forms (see the prelude's
    ``widen``)."""


class _LuaRaise(lualibs.Raised):
    """Raised through Lua by redis.call; the error table is held (Engine._hold)."""


# The one _LuaRaise raised (as ``_RAISE.with_traceback(None)``: the traceback
# of this raise only), pinned in each Lua state (see lualibs.Raised).
_RAISE = _LuaRaise()


class _Called:
    """What ``redis.call`` checks of one command, worked out once per name."""

    __slots__ = (
        "cmd",
        "handler",
        "unknown",
        "special",
        "block_option",
        "refused",
        "write",
        "replicates",
        "denyoom",
        "monitored",
        "local",
        "plain",
        "container",
        "single_read",
        "fast_arity",
        "get",
    )

    def __init__(self, cmd: commands.Command, handler: object, sub: command_docs.Doc | None = None) -> None:
        # A container's subcommand (``sub``) is checked by its own flags, as
        # Redis's lookupCommand finds the subcommand: CLIENT HELP runs in a
        # script, CLIENT KILL is ``noscript``; XGROUP HELP is no write.
        flags = cmd.flags if sub is None else frozenset(sub.flags)
        self.cmd = cmd
        self.handler = handler
        # ACL and MODULE: a script runs their HELP and is refused the rest,
        # from Redis's tables (_REDIS_HELP, _REDIS_NOSCRIPT_SUBCOMMANDS), as
        # before they were acceptor's commands.
        self.unknown = (handler is None and cmd.route != "local") or cmd.name in ("acl", "module")
        self.block_option = cmd.name in _BLOCK_OPTION
        self.refused = "noscript" in flags or "blocking" in flags
        self.special = self.block_option or self.refused
        self.write = "write" in flags
        self.replicates = self.write or "may_replicate" in flags
        self.denyoom = "denyoom" in flags
        self.monitored = "admin" not in flags and "skip_monitor" not in flags
        self.local = cmd.route == "local"
        # Runs here with nothing to check when the worker is the only shard.
        self.plain = not self.local
        # A command with subcommands: Redis looks the subcommand up, and
        # checks its arity, before it runs a script's call.
        self.container = sub is None and cmd.name in command_docs.SUBCOMMANDS
        self.special = self.special or self.container
        # A read of one key (GET, HGET...): what redis.call checks of it
        # comes down to that key being here (see Engine._call).
        self.single_read = (
            not self.unknown
            and not self.special
            and not self.replicates
            and cmd.route == "shard"
            and cmd.single_key
        )
        # The arity :meth:`Engine._call_raise` runs such a read with in one
        # step (2 or 3 arguments, as GET and HGET); 0: never.
        self.fast_arity = cmd.arity if self.single_read and cmd.arity in (2, 3) else 0
        # GET: :meth:`Engine._call_raise` runs its handler's usual case
        # (a string that has not expired) itself, as Shard.run_batch does.
        self.get = self.fast_arity == 2 and cmd.name == "get"


class Run:
    """The state of the script running now (Redis's scriptRunCtx).

    Each engine keeps one (:meth:`spare`) and :meth:`Engine._invoke` sets
    it up again for every script (inline, not in a method of its own): scripts never nest (EVAL and FCALL are
    ``noscript``), and nothing keeps a run once it has ended (its effects
    and undo states are copied out), so no object is made per script.

    The fields a script may change while it runs (its RESP version, a
    write, a stop, the random state it borrowed...) have a default each
    (:meth:`defaults`); every place that changes one also sets
    :attr:`changed`, and only then does the next run set them all back.
    The usual script (a read, ``redis.call('get', KEYS[1])``) changes none
    of them, and its run skips a dozen stores."""

    __slots__ = (
        "sha",
        "flags",
        "read_only",
        "resp",
        "dirty",
        "undo",
        "imported",
        "home",
        "start_ns",
        "killed",
        "killed_at",
        "effects",
        "db",
        "abort",
        "busy",
        "told_running",
        "reported_dirty",
        "eval_mode",
        "command",
        "keys",
        "read_noted",
        "rand_lent",
        "held",
        "journal",
        "apart",
        "logs",
        "written",
        "changed",
        "clocks_before",
    )
    # What each field holds: see where Engine._invoke and defaults set them up.
    sha: bytes
    flags: int
    read_only: bool
    resp: int
    dirty: bool
    undo: dict[tuple[int, bytes], State]
    imported: frozenset | dict
    home: int
    start_ns: int
    killed: bool
    killed_at: float
    effects: list[tuple[int, list[bytes]]]
    db: int
    abort: CrossShard | _Widen | None
    busy: bool
    told_running: bool
    reported_dirty: bool
    eval_mode: bool
    command: list[bytes]
    keys: list[bytes]
    read_noted: bool
    rand_lent: int | None
    held: bool
    journal: list[tuple[list, int]] | None
    apart: bool
    logs: list[tuple[int, str]]
    written: int
    changed: bool
    clocks_before: dict[tuple[int, bytes], int | None] | None

    @staticmethod
    def spare() -> Run:
        """A run for :meth:`Engine._invoke` to set up, made without a call of the
        class (CPython's ``type_call`` runs an ``__init__`` in a frame of
        its own, entered from C)."""
        run: Run = _new_run(Run)
        run.undo = {}
        run.effects = []
        run.logs = []
        run.defaults()
        return run

    def defaults(self) -> None:
        """Set back the fields a script may have changed (:attr:`changed`)
        to what a run starts with."""
        self.resp = 2
        self.dirty = False
        self.killed = False
        self.killed_at = 0.0  # time.monotonic() when a kill stopped it (in its end's report)
        self.abort = None  # set: stop the script, undo it
        self.busy = False  # past busy-reply-threshold, and the acceptor told
        self.told_running = False  # the acceptors were told it runs (wire ``U``)
        self.reported_dirty = False
        self.command = NO_ARGS  # for FUNCTION STATS (FCALL's: its call)
        self.read_noted = False  # a read-only call was noted (client-side caching)
        # math.random's state when this script first drew: None, not yet;
        # >= 0, the server's, borrowed from the acceptor (given back when
        # it ends); < 0, this shard's own (the only shard, or no acceptor to
        # lend it), ``~rand_lent`` its state then, put back if it is undone.
        self.rand_lent = None
        # It asked the acceptor with what the call leaves behind held back
        # until it ends (Verb.HELD): a shard of several, where it may yet
        # stop and run again across shards.
        self.held = False
        # On a shard of several: whether anything but its single-key reads
        # was counted apart (Engine._call; see Engine._invoke).
        self.apart = False
        # How many of its redis.log lines it wrote (past
        # busy-reply-threshold, or LOGS_HELD) or dropped (log_skip): if it
        # is undone, its run again drops as many.
        self.written = 0
        # Under an LFU policy: (database, key) -> the clock each key it
        # accessed had before (access.note_clock), put back if it is undone
        # (it runs again, which counts its accesses once more).
        self.clocks_before = None
        # Whether a field above may differ from its default: set wherever
        # one changes (a script's run, or the end of one).
        self.changed = False


_new_run = object.__new__
# redis.call's missing arguments (see Engine._call_raise): no Lua value.
_ABSENT: object = object()
NO_ARGS: list[bytes] = []  # never changed: FUNCTION STATS reads it
_NO_KEYS: frozenset = frozenset()
_NO_CALLED: dict = {}  # never filled: Engine._fast_called while redis.call has no fast read

# A script's reply goes through Redis's Lua stack (luaReplyToRedisReply):
# each value, as it is written, sits in the slot after its table's (an
# array's item), 3 after it (a map's value, a set's member) or 4 (a map's
# key), and the reply, after the error handler, in the second; a value
# whose slot leaves no room for 4 more in the 8000 that Lua 5.1 gives a
# C function (LUAI_MAXCSTACK) is written as Redis's error: 7995 levels of
# arrays, 2664 of maps or sets (measured with redis-server 7.0.15).
# The most KEYS and ARGV a script's run passes to Lua as one call's
# arguments (the prelude's ``split``, engine.one_key): a call from C pushes
# at most LUAI_MAXCSTACK (8000) values; more go in one table.
ARGS_PASSED = 4000
REPLY_TOP_SLOT = 2
REPLY_LAST_SLOT = lualibs.LUA_STACK - 4
STACK_LIMIT_ERROR = Error("ERR reached lua stack limit")


class _VM:
    """One Lua state set up by ``luaprelude.lua``, and the prelude's API."""

    __slots__ = (
        "lua",
        "compile",
        "run",
        "classify",
        "error_info",
        "stop",
        "kill",
        "rearm",
        "call_fn",
        "run_wide",
        "call_fn_wide",
        "load_library",
        "table",
        "gc_step",
        "rewide",
        "one_key",
        "holding",
        "runs",
        "gc_floor",
        "cjson",
        "release",
        "held",
        "pinned",
    )

    def __init__(
        self,
        lua: lua51.LuaRuntime,
        api: LuaValue,
        cjson: lualibs.CJson,
        release: Callable[[], None],
        pinned: LuaValue,
    ) -> None:
        self.lua = lua
        self.cjson = cjson  # its cjson module's options (Engine._share_cjson)
        self.release = release  # for a state dropped (lualibs.install)
        self.compile = api[b"compile"]
        self.run = api[b"run"]
        self.classify = api[b"classify"]
        self.error_info = api[b"error_info"]
        self.stop = api[b"stop"]
        self.kill = api[b"kill"]
        self.rearm = api[b"rearm"]
        self.call_fn = api[b"call"]
        self.run_wide = api[b"run_wide"]  # (a script marked FLAG_WIDE: the prelude swaps the wide forms in)
        self.call_fn_wide = api[b"call_wide"]
        self.load_library = api[b"load_library"]
        self.table = lua.table_from
        self.gc_step = api[b"gc_step"]
        self.rewide = api[b"rewide"]
        self.one_key = api[b"one_key"]
        self.runs = 0  # scripts run since the collector's step was last due
        self.gc_floor = lua.get_memory_used() or 0  # Lua's bytes after that step
        # The error table redis.call raised, until the prelude takes it
        # (Engine._hold): kept in Lua, in the prelude's table, which only
        # the prelude reads (lupa's reads from Python inside a coroutine
        # took the wrong Lua stack).
        self.held = api[b"held"]
        # Whether ``held`` may hold a table (Engine._hold): a run's start
        # clears it only then (a store into a Lua table costs a call into
        # lupa).
        self.holding = False
        # The errors Python raises through Lua, each the same object, in a
        # table this keeps for as long as the state lives: their userdata
        # are never garbage (see lualibs.Raised).
        self.pinned = pinned


class Engine:
    """One shard's Lua states (EVAL's and the functions') and script cache."""

    def __init__(self, shard: object) -> None:
        self.shard = shard
        self.ks: Keyspace = shard.keyspace  # type: ignore[attr-defined]
        # Each cached script: its function, its flags, and its three entries
        # for a run of one key (engine.one_key: with no arguments, with one,
        # and with some), which take the key and the arguments alone from
        # Python.
        self.scripts: dict[bytes, tuple[object, int, object, object, object]] = {}
        # The entry Shard.execute_script ran last and its SHA1 (None:
        # none), which it takes again for the same SHA1 without hashing
        # it: forgotten whenever ``scripts`` changes (load, flush, rewide).
        self.one_sha: bytes | None = None
        self.one_script: tuple[object, int, object, object, object] | None = None
        self.run: Run | None = None
        self._spare_run = Run.spare()  # what each script's run is (see Run)
        self.rand = _Rand48()
        self.kill_requested = False
        self.report_requested = False  # a kill of the other kind (see request_report)
        self.exit_requested = False  # SHUTDOWN NOSAVE while busy (see request_exit)
        # A reply did not fit in the script's Lua state: the script stops,
        # with Lua's "not enough memory" (see _refuse).
        self.out_of_memory = False
        self.nshards = 1
        self.own: range = range(0)  # this shard's slots
        # redis.call's fast read (_call_raise) compares its key's slot with
        # these bounds: this shard's slots, every slot when it is the only one.
        self.own_lo = 0
        self.own_hi = SLOTS
        self.effects: list[tuple[int, list[bytes]]] = []  # writes run, for run_foreign's log
        # The state of each (database, key) those commands wrote, before they
        # did: a key the script did not declare, on this shard, is undone from it.
        self.effects_undo: dict[tuple[int, bytes], State] = {}
        # A cross-shard run: every key of every shard is here, of the
        # script's database (1) or of every database (2).
        self.everything = 0
        # An FCALL's function ran again wide (it passed a 0: _sign_unknown).
        self.widened = False
        # The redis.log lines the run now going is to drop first: a run of
        # it undone to run again (wide, here; across shards, ``__eval``'s
        # ``logs``) had written them, past busy-reply-threshold or
        # LOGS_HELD, and Redis writes each once.  Its caller sets it back.
        self.log_skip = 0
        # The shard's change counts (Persistence.dirty, unsaved) as the
        # script began: a run undone (to run again, across shards or wide)
        # puts them back, as it does its AOF records.
        self.counts_before = (0, 0)
        # In an operation's run of scripts (Shard._run_foreign), what each
        # leaves behind when it ends (its held PUBLISHes and their counts,
        # its redis.log lines) waits for the run's end (end_run): should a
        # later one escape, the whole run is undone and each runs again,
        # which publishes and logs them then.  ``deferring``: in such a
        # run; ``deferred_held``: the acceptor holds what one left
        # (Verb.HELD); ``deferred_logs``: the lines, (level, text).
        self.deferring = False
        self.deferred_held = False
        self.deferred_logs: list[tuple[int, str]] = []
        # The redis.log lines the last script of such a run wrote before it
        # ended (past LOGS_HELD, or busy: written as they come), dropped as
        # written before, or still owed (log_skip): should the run be
        # undone, its run again drops as many (wire.Ran.written), so that
        # each line shows once.  ``__eval`` and ``__fcall`` set it to the
        # lines owed, for a script that never gets to run.
        self.ran_written = 0
        # The -BUSY error of a script that went past busy-reply-threshold
        # (Shard._run_foreign clears it before a group's run: the scripts
        # after such a one are refused, see wire.Run.group).
        self.busy_error: str | None = None
        # The number of the last SCRIPT FLUSH run here, or handed to this
        # worker as sent before its pipes (the acceptors number them, one
        # sequence: see shardkv.runtime.scriptflushes; every flush goes to
        # every shard); per Lua state (eval, function), the stamp of the
        # setter whose cjson options are in effect (its start, monotonic
        # ns, and its shard; see set_cjson); and another shard's options
        # for EVAL's state set after its flush numbered ``flushes``, not
        # yet run here: (flushes, stamp, options), taken when that flush
        # runs.
        self.flushes = 0
        self.cjson_stamps: dict[bytes, tuple[int, int]] = {b"eval": (0, 0), b"function": (0, 0)}
        self.cjson_later: tuple[int, tuple[int, int], list[int]] | None = None
        # redis.call's commands, by name as called (_call fills it), and
        # the same dict where redis.call may take its fast read
        # (_call_raise), an empty one while MONITOR is on or an ACL user
        # is to be checked: one lookup tells both (see monitor, user).
        self._called: dict[bytes, _Called] = {}
        self._fast_called: dict[bytes, _Called] = self._called
        self._user: acl.User | None = None
        self._monitor: list | None = None
        # Who called the script, as the acceptor named it with the user
        # (wire.script_user), and the calls the user was refused: ACL LOG's
        # entries, which the acceptor keeps (an ``L`` frame: take_acl_log).
        self.caller = b""
        self.acl_log: list[tuple[int, bytes]] = []
        self._subcalled: dict[tuple[str, str], _Called] = {}  # containers' subcommands (see _subcommand)
        self._stats_apart = Stats()  # a script's counts until it ends (see _invoke)
        self._nested_errors: list[str | None] | None = None  # errors in the reply's arrays
        # Two Lua states, as Redis 7 has: EVAL's and the functions', made
        # at start as Redis makes its VMs (INFO reports their memory); the
        # attributes below are the one in use.
        self._lua_type = lua51.lua_type
        self._vm: _VM | None = None
        self._eval_vm: _VM | None = self._new_vm(eval_mode=True)
        self._func_vm: _VM | None = self._new_vm()
        self._cjson_defaults = self._eval_vm.cjson.options()

    @property
    def user(self) -> acl.User | None:
        """The ACL user of the client whose script runs, when it may not run
        everything (wire.FLAG_ACL): redis.call checks each call against it."""
        return self._user

    @user.setter
    def user(self, user: acl.User | None) -> None:
        self._user = user
        self._fast_called = self._called if user is None and self._monitor is None else _NO_CALLED

    @property
    def monitor(self) -> list | None:
        """With MONITOR on: (database, args) of each call."""
        return self._monitor

    @monitor.setter
    def monitor(self, calls: list | None) -> None:
        self._monitor = calls
        self._fast_called = self._called if calls is None and self._user is None else _NO_CALLED

    def set_user(self, argument: bytes) -> None:
        """The ACL user of the client whose script runs next (its entry's
        ``wire.script_user`` argument; empty: one that may run everything)."""
        if argument:
            self.caller, rules = wire.split_script_user(argument)
            self.user = acl.user_of(rules)
        else:
            self.user = None

    def take_acl_log(self) -> bytes | None:
        """The ``L`` frame of the calls refused since the last one, if any."""
        if not self.acl_log:
            return None
        frame = wire.encode_acl_log(self.caller, self.acl_log)
        self.acl_log = []
        return frame

    @staticmethod
    def _lua_type_of(value: LuaValue) -> str | None:
        return lua51.lua_type(value)

    def _new_vm(self, eval_mode: bool = False) -> _VM:
        """A fresh Lua state set up by the prelude (EVAL's: ``eval_mode``)."""
        lua = lua51.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            encoding=None,
            attribute_filter=_deny_attributes,
            max_memory=LUA_MAX_MEMORY,
        )
        # (first: no error's userdata made before it; _VM.pinned)
        pinned = lua.table_from([_RAISE, lualibs.LIBRARY_ERROR])
        g = lua.globals()
        g[b"python"] = None
        modules, cjson, release = lualibs.install(lua)
        libs = lua.table_from(
            {
                b"version": REDIS_VERSION.encode(),
                b"version_num": REDIS_VERSION_NUM,
                b"modules": modules,
            }
        )
        loader = g[b"loadstring"]
        chunk = loader(_prelude(), b"=prelude")
        if self._lua_type_of(chunk) != "function":
            raise RuntimeError(chunk[1] if isinstance(chunk, tuple) else "prelude failed")
        # (redis.call's and redis.pcall's own callables raise bare errors
        # themselves, with no Python call more per call; lualibs.for_lua)
        for_lua = lualibs.for_lua
        api = chunk(
            self._pcall,
            self._call_raise,
            for_lua(self._sha1hex, lua),
            for_lua(self._log, lua),
            for_lua(self._setresp, lua),
            for_lua(self._setrepl, lua),
            for_lua(self._random, lua),
            for_lua(self._randomseed, lua),
            self._check,
            libs,
            for_lua(self._register_function, lua),
            time.monotonic,
            self._call_packed,
            for_lua(self._widen, lua),
            for_lua(_narrow_patch, lua),  # PATCHES[NARROW]
            for_lua(without_call_tail_calls, lua),  # PATCHES[WIDE]
            for_lua(_only_indexed, lua),  # (engine.one_key)
        )
        if eval_mode:
            api[b"eval_globals"]()
        else:
            api[b"function_globals"]()
        lua.gccollect()  # the prelude's garbage
        lualibs.ROOM[id(lua)] = self._require
        return _VM(lua, api, cjson, release, pinned)

    def _use(self, vm: _VM) -> None:
        """Make ``vm`` the state that scripts run in and values go to."""
        self._vm = vm
        self.lua = vm.lua
        # _check_room's first test, inlined on the hot paths: what the state
        # may hold before a value goes in without a second look (fits).
        self._used = vm.lua.get_memory_used
        self._push_room = LUA_MAX_MEMORY - PUSH_SLACK
        self._compile = vm.compile
        self._run = vm.run
        self._classify = vm.classify
        self._error_info = vm.error_info
        self._stop = vm.stop
        self._kill_lines = vm.kill
        self._rearm = vm.rearm
        self._call_fn = vm.call_fn
        self._run_wide = vm.run_wide
        self._call_fn_wide = vm.call_fn_wide
        self._load_library = vm.load_library
        self._table = vm.table
        self._gc_step = vm.gc_step

    def _eval_state(self) -> None:
        """EVAL's Lua state, made the first time a script needs it (again
        after SCRIPT FLUSH, which drops it, as Redis resets its Lua VM)."""
        vm = self._eval_vm
        if vm is None:
            vm = self._eval_vm = self._new_vm(eval_mode=True)
        if vm is not self._vm:
            self._use(vm)

    def _functions_state(self) -> None:
        """The functions' Lua state (Redis 7 runs them in a VM of their own)."""
        vm = self._func_vm
        if vm is None:
            vm = self._func_vm = self._new_vm()
        if vm is not self._vm:
            self._use(vm)

    def _register_function(self, *args: LuaValue) -> None:
        """redis.register_function, handled by shardkv.worker.functions."""
        register = getattr(self, "register_function", None)
        if register is None:
            self._raise("redis.register_function can only be called on FUNCTION LOAD command")
        register(*args)

    def load_library(self, body: bytes) -> tuple[bool, str]:
        self._functions_state()
        # Every library is compiled as one whose functions run wide: one of
        # them that passes a 0 runs wide from then on (_sign_unknown), and
        # its code cannot be compiled again alone.
        ok, err = self._load_library(body, WIDE)
        # (a library's code runs on every shard: what it set, all have)
        self._func_vm.cjson.changed = False  # type: ignore[union-attr]
        self._hold(None)
        return bool(ok), (_text(err) if err else "")

    # -- the cache --------------------------------------------------------------

    def load(self, body: bytes, sha: bytes | None = None) -> bytes:
        """Compile ``body`` (once) and return its SHA1; CommandError if it does not compile."""
        if sha is None:
            sha = sha1hex(body)
        if sha in self.scripts:
            return sha
        flags, skip = parse_shebang(body)
        self._eval_state()
        # Keep the shebang's line feed so that line numbers stay right.
        patch = NARROW
        if may_call_wide(body):
            flags |= FLAG_WIDE
            patch = WIDE
        chunk = source_chunk(body[skip:])
        lua = self.lua
        if not fits(lua, len(chunk)):  # (the acceptor's check refuses it too)
            raise CommandError(errors.SCRIPT_COMPILE % "not enough memory")
        used = lua.get_memory_used()
        try:
            f, err = self._compile(chunk, b"@user_script", patch)
        except (lua51.LuaMemoryError, lualibs.Raised):  # dumping or patching its bytecode (for_lua's check)
            f, err = None, b"not enough memory"
        settle(lua, used)
        if not f:
            raise CommandError(errors.SCRIPT_COMPILE % _text(err))
        self.scripts[sha] = (f, flags, *self._vm.one_key(f, bool(flags & FLAG_WIDE)))  # type: ignore[union-attr]
        self.one_sha = self.one_script = None
        return sha

    def flush(self, number: int = 0) -> None:
        """SCRIPT FLUSH numbered ``number`` (0: the one after the last):
        the cache, and EVAL's Lua state with it (a fresh one, as Redis
        resets its Lua VM).  One numbered at or below the last run here
        came late (two acceptors' flushes crossed, or this worker was
        handed a higher number, see :meth:`flushed`): it reset nothing
        that came after it, so the options set since stay."""
        old = self._eval_vm
        self.scripts.clear()
        self.one_sha = self.one_script = None
        vm = self._eval_vm = self._new_vm(eval_mode=True)
        if old is not None:
            # The old state is freed (and every script's function and
            # source with it) once nothing holds it: its libraries' own
            # references to it go, and the engine's (see _use).
            lualibs.ROOM.pop(id(old.lua), None)
            old.release()
            if self._vm is old:
                self._use(vm)
        number = number or self.flushes + 1
        if number <= self.flushes:
            if old is not None:
                vm.cjson.set_options(old.cjson.options())
            return
        self.flushes = number
        self.cjson_stamps[b"eval"] = (0, 0)
        self._take_later_cjson()

    def flushed(self, number: int) -> None:
        """An acceptor attached its pipe (to this new worker, or as a new
        acceptor): the SCRIPT FLUSHes numbered up to ``number`` were sent
        before it, some maybe to the worker before this one.  Those not
        run here yet reset EVAL's cjson options as the flush would have
        (Redis's fresh Lua state has the defaults); the script cache stays,
        as the acceptors know it (the flush, if it comes still, clears it)."""
        if number <= self.flushes:
            return
        self.flushes = number
        self.cjson_stamps[b"eval"] = (0, 0)
        if self._eval_vm is not None:
            self._eval_vm.cjson.set_options(self._cjson_defaults)
        self._take_later_cjson()

    def memory(self) -> int:
        """EVAL's Lua state's bytes (used_memory_lua)."""
        return _lua_bytes(self._eval_vm)

    def functions_memory(self) -> int:
        """The functions' Lua state's bytes (used_memory_vm_functions)."""
        return _lua_bytes(self._func_vm)

    # -- running ----------------------------------------------------------------

    def eval(self, sha: bytes, keys: list[bytes], argv: list[bytes], read_only: bool) -> object:
        """Run a cached script; returns its reply value."""
        script = self.scripts[sha]
        if self._vm is not self._eval_vm:
            self._eval_state()
        return self._invoke(sha, script[0], script[1], keys, argv, read_only, True, script)

    def call_function(
        self, name: bytes, f: object, flags: int, keys: list[bytes], argv: list[bytes], read_only: bool
    ) -> object:
        """FCALL: run a library's function."""
        if self._vm is not self._func_vm:
            self._functions_state()
        return self._invoke(name, f, flags, keys, argv, read_only, False)

    def _invoke(
        self,
        sha: bytes,
        f: object,
        flags: int,
        keys: list[bytes],
        argv: list[bytes],
        read_only: bool,
        eval_mode: bool,
        script: tuple | None = None,
    ) -> object:
        """Run a script (EVAL's, ``eval_mode``) or a function; ``script``: a
        cached script's entry in ``scripts``, for its one-key entries."""
        if flags & FLAG_COMPAT:
            ro = read_only
        else:
            if not flags & FLAG_NO_WRITES:
                if self.ks.misconf is not None:
                    # Redis's processCommand refuses it: such a script makes
                    # EVAL/FCALL a write command (evalGetCommandFlags).
                    return Error(self.ks.misconf)
                if read_only:
                    return Error(errors.SCRIPT_RO_WRITE_FLAG)
                if not flags & FLAG_ALLOW_OOM and self._over_limit():
                    # Redis's processCommand refuses it first: such a script
                    # makes EVAL/FCALL a denyoom command (evalGetCommandFlags).
                    return Error(errors.OOM)
            ro = read_only or bool(flags & FLAG_NO_WRITES)
        # Its KEYS and ARGV tables (each string, and its slot) must fit.
        # (sum(map(...)) of an empty list costs more than all the rest; one
        # key and no arguments, the usual case, needs neither)
        if argv:
            size = 64 * (len(keys) + len(argv)) + sum(map(len, keys)) + sum(map(len, argv))
        elif len(keys) == 1:
            size = 64 + len(keys[0])
        else:
            size = 64 * len(keys) + sum(map(len, keys))
        if self._used() + size > self._push_room and not fits(self.lua, size):
            return self._error_reply(b"not enough memory", sha)
        ks = self.ks
        if not ks.flagged:  # before it starts (K > 1: see shardkv.runtime.scriptflags)
            ks.raise_flag()
        persistence = ks.persistence
        aof = None
        mark = -1  # where the script's AOF records begin (persistence.begin_group)
        imported: frozenset | dict = _NO_KEYS
        if persistence is not None:
            foreign = persistence.foreign
            if foreign and isinstance(foreign, dict):
                imported = foreign
            aof = persistence.aof
            if aof is not None:
                mark = persistence.begin_group()
            self.counts_before = (persistence.dirty, persistence.unsaved)  # (see _rollback)
        run = self._spare_run
        if self.run is not None:  # (never: scripts do not nest)
            run = Run.spare()
        self.run = run
        # Set up again for this script (see Run), inline: one call fewer per run.
        run.sha = sha
        run.flags = flags
        run.read_only = ro
        if run.changed:  # (the fields the last script changed: see Run.changed)
            run.defaults()
        # (database, key) -> its state before the script wrote it: the last
        # run's, kept when it wrote nothing (see spare).
        if run.undo:
            run.undo = {}
        run.imported = imported
        # The database ``imported`` names its keys alone in: the operation's
        # (Shard.run_foreign), which a script after a SELECT inside MULTI
        # does not start in.
        run.home = ks.db if ks.imported is None else ks.imported[0]
        run.start_ns = time.monotonic_ns()
        if run.effects:  # (database, write command)
            run.effects = []
        run.db = ks.db  # the caller's database: SELECT in the script changes the script's only
        run.eval_mode = eval_mode  # EVAL (False: FCALL)
        run.keys = keys  # the declared keys
        # On a shard of several, where its counts go apart (see below): its
        # single-key reads counted in the shard's own rows, to take back if
        # it runs again elsewhere (Stats.forget).
        run.journal = None
        # Its redis.log lines, (level, text), written when it ends (Engine._log):
        # an undone run (it runs again) writes none.
        if run.logs:
            run.logs = []
        if not eval_mode:
            run.command = [b"fcall", sha, b"%d" % len(keys), *keys, *argv]
            run.changed = True  # (command: see Run.changed)
        events = ks.events
        events_mark = len(events) if events is not None else 0
        aof_db = aof.db if aof is not None else 0
        self.kill_requested = False
        if self._vm.holding:  # type: ignore[union-attr]  # (what a script before it left)
            self._hold(None)
        stats = ks.stats
        scratch = None
        hits, misses = ks.hits, ks.misses  # (INFO's keyspace_hits and _misses, for an undo)
        if self.nshards > 1 and stats is not None:
            # The script may yet stop and run again across shards, where
            # its calls are counted again: what they count here is kept
            # only if it runs to the end here.  Its usual calls, single-key
            # reads run in one step (_call_raise), count their times in the
            # shard's own rows (ks.stats), noted in run.journal to be taken
            # back (Stats.forget); everything else its calls count (other
            # commands, errors, slow log entries) goes apart, into the
            # scratch counters, drained into the shard's own at the end
            # (or dropped), only if a call used them (run.apart, or an
            # error or slow log entry of a read).
            scratch = self._stats_apart
            if stats.apart is not scratch:  # once: then apply_settings aligns it
                scratch.align(stats)
            self.shard.stats = scratch  # type: ignore[attr-defined]
            run.journal = []
        try:
            if script is not None and len(keys) == 1 and len(argv) < ARGS_PASSED:
                # The value alone, or (False, error): no script's value is a
                # Python tuple (lupa makes one of several Lua values only).
                # (no ARGV, the usual case: its own entry, a call of one
                # argument, where ``*argv`` would build a list and a tuple
                # for it, and no ARGV table made unless the script reads it;
                # one argument, a lock's token: its own entry too, whose
                # ARGV table serves every run of a script that only
                # indexes it)
                if not argv:
                    value = script[2](keys[0])
                elif len(argv) == 1:
                    value = script[3](keys[0], argv[0])
                else:
                    value = script[4](keys[0], *argv)
                ok = type(value) is not tuple
                if not ok:
                    value = value[1]
            else:
                if flags & FLAG_WIDE:
                    runner = self._run_wide if eval_mode else self._call_fn_wide
                else:
                    runner = self._run if eval_mode else self._call_fn
                if len(keys) + len(argv) < ARGS_PASSED:
                    ok, value = runner(f, len(keys), *keys, *argv)
                else:
                    # More than one call may pass: one table of them all,
                    # filled one at a time, as Redis fills KEYS and ARGV.
                    ok, value = runner(f, len(keys), self._table([*keys, *argv]))
        finally:
            self.run = None
            self._wind_up(run, stats, scratch)
        return self._conclude(
            run,
            ok,
            value,
            sha,
            f,
            flags,
            keys,
            argv,
            read_only,
            eval_mode,
            persistence,
            mark,
            hits,
            misses,
            events_mark,
            aof_db,
        )

    def run_group(
        self,
        args: list[bytes],
        script: tuple,
        start_ns: int,
        batch: tuple[list, Iterator] | None = None,
        header: int = 0,
        clock: Callable[[], int] = perf_counter_ns,
        row: list | None = None,
        slow_ns: int = 0,
        log_slow: Callable[[list[bytes], int], None] | None = None,
        record: Callable[[list[bytes], object], None] | None = None,
        append: Callable[[bytes], None] | None = None,
    ) -> Any:
        """EVALSHA's usual run (Shard.execute_script, Shard._run_batch):
        :meth:`_invoke` of a script cached under ``args[1]`` (``script``,
        its entry in ``scripts``), in EVAL's state, with one key
        (``args[3]``) and the arguments after it (a lock's token, or none):
        the same run, reply and counts, without the steps that do nothing
        for the usual script.  A few tests first send anything else to
        :meth:`_invoke`: a script with flags (their checks), an AOF or an
        operation's imported keys (the run's marks), a run inside an
        operation's run of scripts (``deferring``), an error held from a
        script before it, KEYS past the room.  After the run, one that
        changed anything of its run (:attr:`Run.changed`: a write, a stop,
        the random state...), logged, SELECTed, used the counters kept
        apart or answered anything but a string or an integer (in range:
        what :meth:`_conclude` answers as it is) ends as :meth:`_invoke`'s
        do (:meth:`_wind_up`, :meth:`_conclude`).  ``start_ns``:
        ``perf_counter_ns()`` as its caller began to time it, the run's
        start (see below).  Without ``batch``: the reply.

        With ``batch`` (Shard._run_batch's ``B`` payload: its entries,
        headers and commands, and their iterator, past this one, whose
        header is ``header``), it runs the entries right behind it that are
        the same EVALSHA (the same name, SHA1, one key, the usual header: a
        pipeline's mostly are) too, one after the other, each timed
        (``clock``), counted (``row``, its commandstats row in the shard's
        own counters; ``slow_ns``, the slow log's threshold, and
        ``log_slow``, its entry) and recorded (``record``, or None) as its
        own command, as Shard.script_counted counts it, with what is the
        same for all looked up once.  A run after one that ended usual is
        set up for its key alone: what that run left is what the set-up
        would make again, and what sent it here is as it was (the script's
        flags, no run, no operation's, no AOF: nothing between them but
        their runs).  Each reply, a string shorter than 1024 bytes or an
        integer, goes to ``append`` (None: the caller answers the entry,
        which runs alone), and the next entry is taken from the iterator.
        The result: once every entry run is answered, the clock read that
        ended the last (where the entry after it starts its time); else,
        of the last, which the caller ends: its reply (counted, by
        Shard.script_counted if it is not a string or an integer), its
        command, its header and the clock read that ended it.
        """
        ks = self.ks
        if not ks.flagged:  # (K > 1: see shardkv.runtime.scriptflags)
            ks.raise_flag()
        # What none of the runs changes, looked up once.
        shard: Any = self.shard
        sha = args[1]
        read_only = len(args[0]) == 10  # (of Shard's spellings of EVALSHA, EVALSHA_RO's have 10 letters)
        f = script[0]
        flags = script[1]
        only_key = script[2]  # (the Lua entry of the key alone)
        key_and_one = script[3]  # (of the key and one argument: a lock's token)
        run = self._spare_run
        vm: Any = self._vm
        used = self._used
        push_room = self._push_room
        stats = ks.stats
        if batch is not None:
            items, entries = batch
            times = row[5]  # type: ignore[index]
            name = args[0]  # (the same EVALSHA: name, SHA1, one key)
            flag_part = wire.FLAG_PART
            end = len(items)
            i = end - length_hint(entries)  # the next entry's place
            # (the batch's list iterator put at an entry's place in one call,
            # not two next(): busyrefusal reads where it is during each run)
            place_at = entries.__setstate__  # type: ignore[attr-defined]  # (run_batch's iter(items))
        primed = False  # a run set up (after the first: the run before ended usual)
        scratch: Stats | None = None
        value: Any
        while True:
            try:
                key = args[3]
                nargs = len(args)
                # Its KEYS and ARGV tables (each string, and its slot) must
                # fit, as _invoke checks (which says so when they do not).
                # (Past ARGS_PASSED arguments, _invoke hands them over in one table.)
                if nargs == 4:
                    argv = NO_ARGS
                    size = 64 + len(key)
                elif nargs == 5:
                    argv = args[4:]
                    size = 128 + len(key) + len(argv[0])
                elif nargs < 4 + ARGS_PASSED:
                    argv = args[4:]
                    size = 64 * (nargs - 3) + len(key) + sum(map(len, argv))
                else:
                    argv = args[4:]
                    size = push_room + 1  # (more than fits: to _invoke)
                if not primed or vm.holding or used() + size > push_room:
                    primed = False
                    persistence = ks.persistence
                    if not (
                        not flags & FLAG_COMPAT
                        or self.run is not None
                        or self.deferring
                        or vm.holding
                        or ks.imported is not None
                        or (persistence is not None and (persistence.aof is not None or persistence.foreign))
                        or used() + size > push_room
                    ):
                        primed = True
                        # _invoke's set-up of the run, as it comes out here
                        # (FLAG_COMPAT: read-only as called; no imported keys).
                        self.run = run
                        run.sha = sha
                        run.flags = flags
                        run.read_only = read_only
                        if run.changed:
                            run.defaults()
                        if run.undo:
                            run.undo = {}
                        run.imported = _NO_KEYS
                        run.home = run.db = ks.db
                        if persistence is not None:
                            self.counts_before = (persistence.dirty, persistence.unsaved)  # (see _rollback)
                        if run.effects:
                            run.effects = []
                        run.eval_mode = True
                        scratch = None
                        if self.nshards > 1 and stats is not None:  # its counts go apart, as in _invoke
                            scratch = self._stats_apart
                            if stats.apart is not scratch:
                                scratch.align(stats)
                else:
                    # The run before ended usual: run's fields are as the
                    # set-up above left them (no change, no effects), but
                    # for the undo a read may leave, and its counters kept
                    # apart are as it aligned them.
                    self.run = run
                    if run.undo:
                        run.undo = {}
                if not primed:
                    value = self._invoke(sha, f, flags, [key], argv, read_only, True, script)
                else:
                    # time.monotonic_ns() as the caller's clock read it, a
                    # read fewer (perf_counter is the monotonic clock, as
                    # CPython reads it on Linux: the same ns).
                    run.start_ns = start_ns
                    # (KEYS as _invoke takes them: a list made here, cheaper than a slice)
                    run.keys = keys = [key]
                    events = ks.events
                    events_mark = len(events) if events is not None else 0
                    self.kill_requested = False
                    hits = ks.hits
                    misses = ks.misses
                    if scratch is not None:
                        shard.stats = scratch
                        run.journal = []
                    else:
                        run.journal = None
                    usual = False
                    try:
                        if nargs == 4:
                            value = only_key(key)
                        elif nargs == 5:
                            value = key_and_one(key, argv[0])
                        else:
                            value = script[4](key, *argv)
                    finally:
                        self.run = None
                        if scratch is not None:
                            shard.stats = stats
                        # What _wind_up would do comes to nothing (the
                        # counters back, above) unless:
                        usual = not (
                            run.changed
                            or run.logs  # (redis.log's lines, held until it ends: _write_logs)
                            or ks.db != run.db
                            or (
                                scratch is not None
                                and (scratch.error_events or scratch.slowlog or scratch.slow_dropped)
                            )
                        )
                        if not usual:
                            self._wind_up(run, stats, scratch)
                    t = type(value)
                    if (
                        usual
                        and (t is bytes or (t is int and LLONG_MIN <= value < 2**63))
                        and not self.out_of_memory
                        and not run.effects
                        and not vm.cjson.changed
                    ):
                        runs = vm.runs + 1
                        if runs >= GC_PERIOD:
                            runs = self._collect(vm)
                        vm.runs = runs
                        primed = True
                    else:
                        # _invoke's end, with what the run's start read.
                        primed = False
                        ok = t is not tuple  # (a tuple: false and the error)
                        value = self._conclude(
                            run,
                            ok,
                            value if ok else value[1],
                            sha,
                            f,
                            flags,
                            keys,
                            argv,
                            read_only,
                            True,
                            ks.persistence,
                            -1,
                            hits,
                            misses,
                            events_mark,
                            0,
                        )
            except CrossShard as e:
                value = cross_reply(e)
            except CommandError as e:
                value = Error(e.message)
            except Exception:  # a bug must not take the shard down
                log.exception("shard %d: command %r failed", shard.index, args[0])
                value = Error(errors.INTERNAL % commands.error_name(args))
            finally:
                ks.counting = False
            if batch is None:
                return value
            now = clock()
            ns = now - start_ns
            t = type(value)
            if t is not bytes and t is not int:
                return shard.script_counted(args, value, ns), args, header, now
            # Shard.script_counted's usual cases, inline
            times.append(ns)
            if len(times) >= 256:
                stats.fold(row)  # type: ignore[union-attr, arg-type]  # (with batch: the shard's own, and a row)
            if ns >= slow_ns:
                log_slow(args, ns)  # type: ignore[misc]
            if ks.unchanged:
                ks.unchanged = False
                ks.changes = None  # (a count it set all the same: not the next write's)
            elif record is not None:
                record(args, value)
            if append is None:
                return value, args, header, now
            if t is bytes:
                n = len(value)
                if n >= 1024:
                    return value, args, header, now
                append(BULK_LINES[n] + value + b"\r\n")
            else:
                append(b":%d\r\n" % value)
            # The next entry, if it is the same EVALSHA in the usual header
            # (not a part, database 0: below FLAG_PART, which is also at
            # most PLAIN_MAX), taken here, as Shard._run_batch's loop takes it.
            if i < end:
                next_header = items[i]
                next_args = items[i + 1]
                if (
                    next_header < flag_part
                    and len(next_args) > 3
                    and next_args[1] == sha
                    and next_args[0] == name
                    and next_args[2] == b"1"
                ):
                    i += 2
                    place_at(i)  # (past its header and command, as two next() leave it)
                    header = next_header
                    args = next_args
                    start_ns = now
                    continue
            return now  # (the entry after them starts its time here)

    def _collect(self, vm: _VM) -> int:
        """Lua's collector's step, when it is due: the count of runs since."""
        # Redis steps Lua's collector every 50 scripts.  With a heap
        # this small (the prelude and the libraries, about 60 KB) a step
        # runs a whole cycle: it marks everything to free what 50 short
        # scripts left (EVALSHA of a one-key read leaves 144 bytes).
        # The step waits until GC_GROWTH is left: memory stays within
        # that (and 50 scripts' garbage) of where the last step left
        # it, and such a script steps every few hundred runs, not 50.  (Lua's
        # own collector runs too, as in Redis, when its heap doubles.)
        used = vm.lua.get_memory_used()
        if used - vm.gc_floor >= GC_GROWTH:
            self._gc_step()
            vm.gc_floor = vm.lua.get_memory_used()
        return 0

    def _wind_up(self, run: Run, stats: Stats | None, scratch: Stats | None) -> None:
        """A script's run ended (or raised): what it leaves to undo
        (:meth:`_settle`), the shard's counters back (``scratch``: those
        kept apart, drained into ``stats`` or dropped), what it left behind
        (held PUBLISHes, redis.log lines) out now, or when the operation's
        run of scripts ends (``deferring``)."""
        ks = self.ks
        if run.rand_lent is not None or ks.db != run.db or run.busy or run.told_running:
            self._settle(run)
        if scratch is not None:
            self.shard.stats = stats  # type: ignore[attr-defined]
            if run.abort is not None:
                scratch.drain(None)
                stats.forget(run.journal)  # type: ignore[union-attr, arg-type]  # (both set with scratch)
            elif run.apart or scratch.error_events or scratch.slowlog or scratch.slow_dropped:
                scratch.drain(stats)
        if self.deferring and run.abort is None:  # (the run's end says: end_run)
            self.ran_written = run.written + self.log_skip
            if run.held:
                self.deferred_held = True
            if run.logs:
                self.deferred_logs += run.logs
                run.logs = []
        else:
            if run.held:
                self._end_held(run)  # (undone: what the run's others held goes too)
            if run.logs:
                self._write_logs(run)

    def _conclude(
        self,
        run: Run,
        ok: bool,
        value: Any,
        sha: bytes,
        f: object,
        flags: int,
        keys: list[bytes],
        argv: list[bytes],
        read_only: bool,
        eval_mode: bool,
        persistence: Any,
        mark: int,
        hits: int,
        misses: int,
        events_mark: int,
        aof_db: int,
    ) -> object:
        """The end of :meth:`_invoke` (and of an unusual :meth:`run_group`)
        once :meth:`_wind_up` ran: the collector's step, an undo and the
        run again (wide, or across shards: raised), the AOF's group, the
        wake-ups of its writes, and the reply."""
        ks = self.ks
        events = ks.events
        aof = persistence.aof if persistence is not None else None
        if self.out_of_memory:  # a reply did not fit (_refuse): the script failed, even if it went on
            ok, value = False, self._after_refusal()
        vm: _VM = self._vm  # type: ignore[assignment]  # the state the script ran in
        if vm.cjson.changed:
            self._share_cjson(vm, run)
        runs = vm.runs + 1
        if runs >= GC_PERIOD:
            runs = self._collect(vm)
        vm.runs = runs
        if run.abort is not None:
            self._rearm()
            self._rollback(run, persistence, mark)
            if run.clocks_before is not None:  # (LFU: its accesses count once, when it runs again)
                access.restore_clocks(ks, run.clocks_before)
            ks.hits, ks.misses = hits, misses  # (its reads count once, when it runs again)
            # A run undone logs nothing (it runs again).  Its refusals are
            # all there is: each script's are taken when it ends.
            self.acl_log.clear()
            run.undo = {}  # (the states it held: not kept until the next script)
            if events is not None:  # it runs again elsewhere: its events come from there
                del events[events_mark:]
            if aof is not None:
                aof.db = aof_db  # its SELECT records are gone too
            if type(run.abort) is _Widen:
                if not run.written:
                    return self._invoke_wide(sha, f, flags, keys, argv, read_only, eval_mode)
                # The lines it wrote or dropped, and those still owed (an undone
                # run across shards had written more than this one reached).
                self.log_skip += run.written
                try:
                    return self._invoke_wide(sha, f, flags, keys, argv, read_only, eval_mode)
                finally:
                    self.log_skip = 0
            abort = run.abort
            if isinstance(abort, CrossShard):
                abort.written = run.written  # (its run across shards drops as many)
            raise abort
        if run.killed:
            self._rearm()
        if mark >= 0:
            persistence.end_group(mark)
        if run.effects and ks.imported is None:
            # Its writes wake the clients blocked on their keys, served at
            # the end of the batch (a run across shards: at its commit, see
            # Shard.run_foreign).
            waiters = ks.waiters
            if waiters is not None:
                if waiters.by_key:
                    waiters.mark_writes(run.effects)
                    waiters.script_wrote(run.effects)  # (what its keyless __bsettle waits for)
                elif waiters.claims:
                    waiters.script_wrote(run.effects)
        if run.effects and persistence is not None and persistence.suspended:
            self.effects += run.effects
            for key, state in run.undo.items():  # the state before the first write
                self.effects_undo.setdefault(key, state)
        if run.undo:
            run.undo = {}  # (the states it held: not kept until the next script)
        if not ok:
            error = self._error_reply(value, sha)
            return ScriptReply(error) if _counted(value) else error
        # The common replies need no ScriptReply: a string, an integer in
        # range, and false in RESP2 (a null in the caller's protocol).
        t = type(value)
        if t is bytes:
            return value
        if t is int and LLONG_MIN <= value < 2**63:
            return value
        if value is False and run.resp == 2:
            return None
        self._nested_errors = None
        try:
            tree = self._convert(value, run.resp)
        except lua51.LuaMemoryError:
            tree = self._convert_collected(value, run.resp, sha)
        if type(tree) is int:
            return tree
        if type(tree) is Error and not _counted(value):
            return tree  # an error reply (redis.error_reply...) counts in errorstats, as in Redis
        nested = self._nested_errors
        if nested is not None:
            # Errors in the reply's arrays count too, as Redis counts every
            # error reply it writes (those of commands once, already); the
            # acceptor counts the call failed (acceptor/scripting.py).
            self._nested_errors = None
            stats = getattr(self.shard, "stats", None)
            made = 0
            for message in nested:
                if message is not None:
                    made = 1
                    if stats is not None:
                        stats.error(message)
            # Redis's failed_calls: one for each command's error passed on
            # (afterErrorReply's ERR_REPLY_FLAG_NO_STATS_UPDATE), and one more
            # if the script made any (call() sees new error replies); the
            # acceptor counts one, the shard the rest (Shard.execute).
            failures = sum(1 for m in nested if m is None) + made
            return ScriptReply(tree, failures - 1)
        return ScriptReply(tree)

    def _invoke_wide(
        self,
        sha: bytes,
        f: object,
        flags: int,
        keys: list[bytes],
        argv: list[bytes],
        read_only: bool,
        eval_mode: bool,
    ) -> object:
        """Run again, with the wide redis.call and redis.pcall (which take
        any number of arguments and hand a -0 over as "-0"), a script whose
        narrow run was undone; an EVAL script keeps them from then on,
        compiled again as a wide script is (its tail calls of redis.call
        made plain calls, see luabytecode.py).  A script marked FLAG_WIDE
        runs through the prelude's ``engine.run_wide``, ``call_wide`` or
        wide ``one_key``, which swap the wide forms in and out (_invoke)."""
        if not flags & FLAG_WIDE:
            if not eval_mode:
                self.widened = True  # (functions.py's fcall marks the function)
            elif sha in self.scripts:
                f = self._vm.rewide(f)  # type: ignore[union-attr]
                self.scripts[sha] = (f, flags | FLAG_WIDE, *self._vm.one_key(f, True))  # type: ignore[union-attr]
                self.one_sha = self.one_script = None
        script = self.scripts.get(sha) if eval_mode else None
        return self._invoke(sha, f, flags | FLAG_WIDE, keys, argv, read_only, eval_mode, script)

    def _widen(self) -> None:
        """The prelude's error handler: lupa refused a redis.call or
        redis.pcall of too many arguments; the script runs again, wide."""
        run = self.run
        if run is not None and run.abort is None:
            run.abort = _Widen()
            run.changed = True  # (see Run.changed)

    def _may_run_again(self, run: Run, called_before: bool) -> bool:
        """May a narrow run that passes a 0 be undone and run again wide?
        On a shard of several, whatever it did is undone (as when it runs
        again across shards), but for the lines MONITOR would show twice;
        on the only shard, or with MONITOR on (always, in a run across
        shards: the acceptor drops its lines), only if it called nothing
        but the reads that _call_raise runs (on the only shard their counts
        in INFO count twice); otherwise the 0 goes as it is (a -0 as "0":
        README's known gap)."""
        if run.flags & FLAG_WIDE:
            return False
        return not called_before or (self.nshards > 1 and self.monitor is None)

    def _sign_unknown(self, run: Run) -> tuple[LuaValue, LuaValue]:
        """A narrow run's redis.call, redis.pcall or redis.sha1hex got the
        number 0, which lupa also makes of a -0 (Redis writes that "-0"):
        stop the script for good (a pcall in it must not go on), undo it
        and run it again with the wide forms, which tell the two apart
        (see the prelude).  Only a script that passes a 0 pays for it."""
        # (engine.stop's Lua code, and the text held: a LuaMemoryError out
        # of here would reach Lua as a new userdata, made where it cannot fail)
        self._make_room()
        if run.abort is None:
            run.abort = _Widen()
            run.changed = True  # (see Run.changed)
        self._stop()
        # (No Lua value: one made in a coroutine's callback keeps that
        # coroutine's lua_State, which lupa would use once it is freed.)
        return b"script stopped", True

    def _share_cjson(self, vm: _VM, run: Run) -> None:
        """The script set an option of cjson: every shard's same Lua state
        (EVAL's or the functions') takes it too, as Redis's one Lua state
        keeps it for every later script.  The acceptor sends it on to the
        other shards (a ``Q`` frame, no answer) before the script's reply,
        which follows on this pipe."""
        vm.cjson.changed = False
        kind = b"eval" if vm is self._eval_vm else b"function"
        stamp = self.cjson_stamps[kind] = (run.start_ns, getattr(self.shard, "index", 0))
        send = getattr(self.shard, "send_query", None)
        if send is None:
            return
        options = [b"%d" % v for v in (self.flushes, *stamp, *vm.cjson.options())]
        try:
            send(wire.encode_script_query(self.ks.db, run.resp, [Verb.CJSON, kind, *options]))
        except (EOFError, OSError):
            pass  # the acceptor is gone

    def set_cjson(self, kind: bytes, flushes: int, stamp: tuple[int, int], options: list[bytes]) -> None:
        """Another shard's script set cjson's options (see _share_cjson),
        after that shard's SCRIPT FLUSH numbered ``flushes``, a script that
        started at ``stamp``.  As in Redis's one Lua state: SCRIPT FLUSH
        resets EVAL's options, so if a flush that came after the setter
        there has run here already they are dropped, and if the flush
        before it has not yet, they wait for it (cjson_later); and Redis
        runs scripts one after the other, so of two setters that ran at
        once on two shards, the one that started later (read later) ran
        last: the options of one that started before those in effect here
        are dropped, and every shard ends with the same."""
        values = [int(v) for v in options]
        if kind == b"eval":
            if flushes != self.flushes:
                later = self.cjson_later
                if flushes > self.flushes and (later is None or (flushes, stamp) >= later[:2]):
                    self.cjson_later = (flushes, stamp, values)
                return
            vm = self._eval_vm
            if vm is None:
                self._eval_state()
                vm = self._eval_vm
        else:
            vm = self._func_vm
        if vm is None or stamp < self.cjson_stamps[kind]:
            return
        self.cjson_stamps[kind] = stamp
        vm.cjson.set_options(values)

    def _take_later_cjson(self) -> None:
        """The options that waited for the SCRIPT FLUSH run now (see
        set_cjson) go in; those of an older one are dropped."""
        later = self.cjson_later
        if later is not None and later[0] <= self.flushes:
            self.cjson_later = None
            if later[0] == self.flushes:
                self.set_cjson(b"eval", later[0], later[1], [b"%d" % v for v in later[2]])

    def cjson_state(self) -> list[bytes]:
        """``flushes`` (the last SCRIPT FLUSH's number) and, for EVAL's and
        the functions' Lua states, ``start shard n option...``: what a
        worker that starts again takes (see restore_cjson); no options of a
        state not made yet (n = 0: the defaults)."""
        out = [b"%d" % self.flushes]
        for kind, vm in ((b"eval", self._eval_vm), (b"function", self._func_vm)):
            values = vm.cjson.options() if vm is not None else []
            out += [b"%d" % v for v in (*self.cjson_stamps[kind], len(values), *values)]
        return out

    def restore_cjson(self, state: list[bytes]) -> None:
        """A worker started again (this one) takes another shard's
        :meth:`cjson_state`, as Redis's one Lua state kept it: the options
        of EVAL's and the functions' states, as a forward of them (see
        set_cjson).  Its own SCRIPT FLUSH number stays, the one the
        acceptors handed it (:meth:`flushed`): options set before a flush
        that the other shard has not run yet when it answered are dropped,
        and those set after one this worker has not run yet wait for it."""
        flushes = int(state[0])
        at = 1
        for kind in (b"eval", b"function"):
            stamp = (int(state[at]), int(state[at + 1]))
            n = int(state[at + 2])
            if n:
                self.set_cjson(kind, flushes, stamp, state[at + 3 : at + 3 + n])
            at += 3 + n

    def _end_held(self, run: Run) -> None:
        """What the script's calls of the acceptor's commands left behind
        (counts, PUBLISH's messages) the acceptor delivers now, before the
        reply, if the script ran to its end here; drops it if it stops to
        run again across shards, where it asks again (see Verb.HELD)."""
        if run.abort is None:
            self._ask_acceptor([Verb.HELD_COMMIT], run)
            return
        send = getattr(self.shard, "send_query", None)
        if send is not None:
            try:
                send(wire.encode_script_query(self.ks.db, run.resp, [Verb.HELD_DROP]))
            except (EOFError, OSError):
                pass  # the acceptor is gone: so is what it held

    def end_run(self, commit: bool) -> None:
        """An operation's run of scripts ended (see ``deferring``): what its
        scripts left behind goes out now, before its ``Ran`` (``commit``), or
        is dropped, the run undone to run again."""
        self.deferring = False
        logs, self.deferred_logs = self.deferred_logs, []
        held, self.deferred_held = self.deferred_held, False
        if commit:
            for level, text in logs:
                log.log(level, "%s", text)
        if not held:
            return
        send = getattr(self.shard, "send_query", None)
        recv = getattr(self.shard, "recv", None)
        if send is None or recv is None:
            return
        try:
            send(wire.encode_script_query(self.ks.db, 2, [Verb.HELD_COMMIT if commit else Verb.HELD_DROP]))
            if commit:  # (its messages out before the replies: see _ask_acceptor)
                backlog = self.shard.backlog  # type: ignore[attr-defined]
                while True:
                    frame = recv()
                    if frame[0] == wire.SCRIPT_ANSWER:
                        break
                    backlog.append(frame)
        except (EOFError, OSError):
            pass  # the acceptor is gone: so is what it held

    def _settle(self, run: Run) -> None:
        """What a script leaves to undo when it ends: math.random's state
        back to the acceptor, the caller's database, the busy state."""
        lent = run.rand_lent
        if lent is not None:
            # A script undone (it runs again, here or elsewhere) has drawn nothing.
            if lent >= 0:
                self._give_back_rand(lent if run.abort is not None else self.rand.x)
            elif run.abort is not None:
                self.rand.x = ~lent
        ks = self.ks
        if ks.db != run.db:  # the script SELECTed: its caller stays where it was
            ks.select(run.db)
        if run.busy:
            run.busy = False
            refusals = getattr(self.shard, "refusals", None)
            if refusals is not None and refusals.due:
                refusals.finish()  # nothing that followed the script runs before (up to 50 ms)
            self._report(run)  # before the frame that carries the reply
        if run.told_running:
            run.told_running = False
            self._tell_running(wire.RAN_FRAME)

    @staticmethod
    def _write_logs(run: Run) -> None:
        """The script's redis.log lines, now that it has ended; none if it
        was undone to run again (wide, or across shards), which logs them."""
        if run.abort is None:
            for level, text in run.logs:
                log.log(level, "%s", text)
            run.written += len(run.logs)
            run.changed = True  # (see Run.changed)
        run.logs = []

    def _over_limit(self) -> bool:
        """Is used memory over maxmemory (as eviction counts it)?"""
        memory = self.ks.memory
        if memory is None:
            return False
        return memory.data > memory.room

    def _rollback(self, run: Run, persistence: object, mark: int) -> None:
        ks = self.ks
        for key, state in run.undo.items():
            with ks.selected(key[0]):
                drop_key(ks, key[1])
                if state is not None:
                    import_key(ks, key[1], state)
        if persistence is not None and mark >= 0 and persistence.aof is not None:  # type: ignore[attr-defined]
            del persistence.aof.buf[mark:]  # type: ignore[attr-defined]
        if persistence is not None:
            # Its writes' counts too: it counts when it runs again (before, a
            # write before the call that sent it across shards counted twice).
            persistence.dirty, persistence.unsaved = self.counts_before  # type: ignore[attr-defined]

    def _error_reply(self, value: LuaValue, sha: bytes) -> Error:
        if self._lua_type(value) != "table":
            msg = _text(value) if isinstance(value, bytes | int | float) else "execution failure"
            return Error("ERR Error running script %s, %.100s" % (sha.decode(), msg))
        msg, source, line = self._error_info(value)
        text = _text(msg) if msg else ""
        if msg and source and line:
            text += " script: %s, on %s:%s." % (sha.decode(), _text(source), _text(line))
        return Error(text)

    # -- redis.call -------------------------------------------------------------

    def _call_raise(
        self, name: LuaValue = _ABSENT, key: LuaValue = _ABSENT, third: LuaValue = _ABSENT, *rest: LuaValue
    ) -> object:
        """redis.call: the reply, or raise the error (see the prelude).

        The usual call, a single-key read (GET, HGET...) of this shard's key
        with string arguments, runs here in one step: what :meth:`_call` and
        :meth:`_read` check and do, as it comes out for such a call (nothing
        to note for client tracking, no maxmemory, no MONITOR, no ACL user
        to check it against).  Its first three arguments are parameters of
        their own (``_ABSENT`` where the call has fewer), so that a call of
        two or three makes no tuple of them."""
        if type(name) is bytes and type(key) is bytes and not rest:
            # (none while MONITOR is on or an ACL user may not run
            # everything: _call checks it; see _fast_called)
            called = self._fast_called.get(name)
            if called is not None and called.fast_arity == (
                2 if third is _ABSENT else 3 if type(third) is bytes else -1
            ):
                run = self.run
                ks = self.ks
                slot = key_slot(key) if LBRACE in key else crc_hqx(key, 0) & 16383
                if (
                    run is not None
                    and ks.memory is None
                    and (not ks.event_mask & _SCRIPT_READ or run.read_noted)
                    and self.own_lo <= slot < self.own_hi  # (cheaper than ``in self.own``)
                ):
                    # Shard.execute_read, inline (a Python call fewer per
                    # call): the same run and the same counts.
                    shard: Any = self.shard
                    start = perf_counter_ns()
                    value: Any = None
                    if called.get and not ks.lfu and not ks.no_touch:
                        # GET's handler and Keyspace.lookup, inline, for a
                        # string that has not expired (as Shard.run_batch
                        # runs a client's GET): its access clock and a
                        # keyspace hit; or for a key that is not there (a
                        # lock's release that finds no lock): a keyspace
                        # miss and its keymiss event.  Anything else (an
                        # expired key, another type, LFU's lookup) goes to
                        # the handler, which sees the key as it was.
                        exp = ks.expires[slot]
                        if not exp or key not in exp or exp[key] > ks.expiry_now:
                            value = ks.data[slot].get(key)
                            t = type(value)
                            if t is bytes:
                                ks.clocks[key] = ks.now
                                ks.hits += 1
                            elif value is None:
                                ks.misses += 1
                                if ks.event_mask & KEYMISS:
                                    ks.events.append((ks.db, key, ks.classes[KEYMISS], b"keymiss"))  # type: ignore[union-attr]
                            if t is bytes or value is None:
                                # What the rest below comes to for a string
                                # or a miss read here: its commandstats time
                                # (the name is GET's, never a '_' one), no
                                # record (a read, and no handler ran to set
                                # ks.unchanged), the room check of a string.
                                if shard.timing:
                                    ns = perf_counter_ns() - start
                                    stats = shard.stats
                                    journal = run.journal
                                    if journal is None:
                                        row = stats.by_bytes.get(name) or stats.row_of([name, key])
                                        times = row[5]
                                        times.append(ns)
                                        if len(times) >= 256:
                                            stats.fold(row)
                                    else:
                                        tally: Stats = stats.leader
                                        row = tally.by_bytes.get(name) or tally.row_of([name, key])
                                        journal.append((row, ns))
                                        times = row[5]
                                        times.append(ns)
                                        if len(times) >= 256:
                                            tally.fold(row)
                                    if ns >= stats.slow_threshold_ns >= 0:
                                        stats.slow([name, key], ns // 1000, LUA_CLIENT_ADDR)
                                if value is None:
                                    return None if run.resp == 3 else False
                                if self._used() + len(value) > self._push_room:
                                    self._check_room(value)
                                return value
                            value = None
                    argv = [name, key] if third is _ABSENT else [name, key, third]
                    if value is None:
                        handler: Any = called.handler
                        ks.counting = handler.reads
                        try:
                            value = handler(ks, argv)
                        except CommandError as e:
                            value = Error(e.message)
                        except Exception:  # a bug must not take the shard down
                            log.exception("shard %d: command %r failed", shard.index, name)
                            value = Error(errors.INTERNAL % commands.error_name([name]))
                        finally:
                            ks.counting = False
                    t = type(value)
                    if shard.timing and name[0] != 95:
                        # On a shard of several (run.journal), the time goes to
                        # the shard's own row and (row, time) to the journal,
                        # taken back if the script runs again across shards
                        # (Stats.forget); an error or a slow log entry goes apart.
                        ns = perf_counter_ns() - start
                        stats = shard.stats
                        journal = run.journal
                        counts: Stats = stats if journal is None else stats.leader
                        row = counts.by_bytes.get(name) or counts.row_of(argv)
                        if journal is not None:
                            journal.append((row, ns))
                        times = row[5]
                        times.append(ns)
                        if len(times) >= 256:
                            counts.fold(row)
                        if t is Error:
                            if journal is not None:  # (the time is the shard's, the error apart)
                                row = stats.by_bytes.get(name) or stats.row_of(argv)
                            row[3] += 1
                            stats.error(value.message)
                        if ns >= stats.slow_threshold_ns >= 0:
                            stats.slow(argv, ns // 1000, LUA_CLIENT_ADDR)
                    if t is not Error:
                        if ks.unchanged:
                            ks.unchanged = False
                            ks.changes = None  # (a count it set all the same: not the next write's)
                        elif shard.record is not None and name not in shard.unlogged:
                            shard.record(argv, value)
                        if t is int:
                            return value
                    else:
                        ks.unchanged = False  # (a handler that failed after saying so: cleared)
                        ks.changes = None  # (and its count: not the next write's)
                    if t is bytes:  # (_check_room's test, inlined)
                        if self._used() + len(value) > self._push_room:
                            self._check_room(value)
                        return value
                    if value is not None:
                        self._check_room(value)
                    if value is None:
                        return None if run.resp == 3 else False
                    if t is Error:
                        self._hold(self._to_lua_error(value.message))
                        raise _RAISE.with_traceback(None)
                    return self._to_lua(value, run.resp)
        if rest:
            args: tuple = (name, key, third, *rest)
        elif third is not _ABSENT:
            args = (name, key, third)
        elif key is not _ABSENT:
            args = (name, key)
        elif name is not _ABSENT:
            args = (name,)
        else:
            args = ()
        value, failed = self._call(True, args)
        if failed:
            self._hold(value)
            # (nothing of Lua's in this frame, which the exception's
            # traceback keeps, the table and the arguments (a table the
            # script passed): a coroutine that ends on this error keeps the
            # exception until Lua's collector frees it, whose freeing them
            # then, their coroutine's state gone, would corrupt the state: a
            # worker's SIGSEGV after some such scripts; lualibs.for_lua)
            del value, args, name, key, third, rest
            raise _RAISE.with_traceback(None)
        return value

    def _call_packed(self, raise_error: bool, table: LuaValue, n: int) -> object:
        """The wide redis.call (``raise_error``) and redis.pcall of ``n``
        arguments, handed over as one table (see the prelude)."""
        # (room first for the reads: each a C closure of lupa's, made
        # outside any protected call; see lualibs.for_lua)
        self._make_room()
        args = tuple(table[i] for i in range(1, n + 1))
        del table
        if raise_error:
            try:
                return self._call_raise(*args)
            except _LuaRaise:
                del args  # (as in _call_raise)
                raise
        return self._call(False, args)

    def _pcall(self, raise_error: object, *args: object) -> object:
        """redis.pcall (``raise_error`` False) and redis.acl_check_cmd (None)."""
        return self._call(raise_error, args)

    def _hold(self, table: object) -> None:
        """Keep the error table redis.call raises (None: none) for the
        prelude to take (its ``pytake``, in Lua).

        It is kept in Lua, never in Python: a table made in a Python call
        from a coroutine is bound to that coroutine's ``lua_State`` (lupa
        makes it the runtime's state for the call), and one still held in
        Python when the coroutine is gone would be released (luaL_unref)
        through the freed state: heap corruption, the worker's SIGABRT.  A
        script whose error handler never takes it (an xpcall handler that
        yields) left it so until the next call replaced it."""
        vm: _VM = self._vm  # type: ignore[assignment]
        vm.held[1] = table
        vm.holding = table is not None

    def _command(self, name: bytes) -> _Called | None:
        """What redis.call needs to know of the command ``name`` (cached)."""
        called = self._called.get(name)
        if called is None:
            cmd = commands.lookup(name)
            if cmd is None:
                return None
            called = _Called(cmd, find(name))
            if len(self._called) < 1024:
                self._called[name] = called
        return called

    def _subcommand(self, called: _Called, sub: bytes) -> _Called:
        """What redis.call needs to know of a container's (known) subcommand
        ``sub``, by the subcommand's own flags (cached)."""
        key = (called.cmd.name, sub.lower().decode("latin-1"))
        found = self._subcalled.get(key)
        if found is None:
            found = _Called(called.cmd, called.handler, command_docs.SUBCOMMANDS[key[0]][key[1]])
            self._subcalled[key] = found
        return found

    def _call(self, raise_error: LuaValue, args: tuple[LuaValue, ...]) -> tuple[LuaValue, LuaValue]:
        run = self.run
        if run is None:
            return self._error("redis.call/pcall can only be called inside a script invocation"), True
        called_before = run.apart  # (a call other than _call_raise's reads: see _sign_unknown)
        run.apart = True  # what it counts goes apart (see _invoke)
        run.changed = True  # (see Run.changed)
        if not args:
            return self._error("Please specify at least one argument for this redis lib call"), raise_error
        argv = list(args)
        for a in args:
            if type(a) is not bytes:
                if not _strings(argv):
                    return self._error(
                        "Lua redis lib command arguments must be strings or integers"
                    ), raise_error
                if 0 in args and self._may_run_again(run, called_before):  # (only numbers are left)
                    return self._sign_unknown(run)
                break
        called = self._called.get(argv[0]) or self._command(argv[0])
        user = self.user
        if raise_error is None:  # redis.acl_check_cmd: does the command exist, may the user run it?
            if called is None:
                return None, False
            return (user is None or not user.check(called.cmd, argv)[0]), False
        if called is not None and called.single_read and user is None:
            return self._read(called, argv, run, raise_error)
        if called is None or called.unknown:
            help_ = (
                _REDIS_HELP.get(argv[0].lower()) if len(argv) == 2 and argv[1].lower() == b"help" else None
            )
            if help_ is not None:  # (not counted in commandstats)
                if self.monitor is not None:
                    self.monitor.append((self.ks.db, argv))
                lines = list(help_)
                self._check_room(lines)
                return self._to_lua(lines, run.resp), False
            return self._rejected(None, argv, _not_here(argv)), raise_error
        cmd = called.cmd
        arity = cmd.arity
        if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
            return self._rejected(
                called, argv, "Wrong number of args calling Redis command from script"
            ), raise_error
        if called.special:
            if called.container:
                problem = command_docs.check_subcommand(argv)
                if problem is not None:
                    if problem.startswith("ERR unknown subcommand"):
                        return self._rejected(
                            None, argv, "Unknown Redis command called from script"
                        ), raise_error
                    message = "Wrong number of args calling Redis command from script"
                    return self._rejected(called, argv, message), raise_error
                called = self._subcommand(called, argv[1])
            if called.block_option:
                # XREAD/XREADGROUP run in scripts, but not with BLOCK (xreadCommand).
                if any(a.lower() == b"block" for a in argv[1 : _streams_at(argv)]):
                    message = errors.XREAD_BLOCK_IN_SCRIPT % argv[0].decode("utf-8", "replace")
                    return self._error("-" + message), raise_error
            elif called.refused:
                return self._rejected(
                    called, argv, "This Redis command is not allowed from script"
                ), raise_error
        if user is not None:  # the client's ACL user (scriptVerifyACL)
            denied, pos = user.check(cmd, argv)
            if denied:
                # Logged in ACL LOG, context lua (scriptVerifyACL's addACLLogEntry).
                logged = acl.full_name(cmd, argv).encode() if denied == acl.DENIED_CMD else argv[pos]
                self.acl_log.append((denied, logged))
                return self._rejected(called, argv, _ACL_DENIED[denied]), raise_error
        write = called.write
        if run.read_only and called.replicates:
            message = "Write commands are not allowed from read-only scripts."
            return self._rejected(called, argv, message), raise_error
        if write and not run.dirty and self.ks.misconf is not None:
            # scriptVerifyWriteCommandAllow: some shard cannot persist (its
            # first write only: a script that wrote cannot stop half way).
            return self._rejected(called, argv, "-" + self.ks.misconf), raise_error
        if write and not run.dirty and called.denyoom and self.ks.memory is not None:
            allow_oom = run.flags & FLAG_ALLOW_OOM and not run.flags & FLAG_COMPAT
            if not allow_oom and self._over_limit():  # scriptVerifyOOM
                return self._rejected(called, argv, "-" + errors.OOM), raise_error
        if called.plain and self.nshards == 1:
            # One shard: every key is here, and nothing can make the script
            # start again elsewhere, so nothing to check or keep for undo.
            if write:
                run.dirty = True
                run.changed = True  # (see Run.changed)
                if run.busy and not run.reported_dirty:
                    self._report(run)
            shard = self.shard
            memory = self.ks.memory
            if memory is None:
                value = shard.execute(argv, called.handler)  # type: ignore[attr-defined]
            else:
                value = memory.run_in_script(shard.execute, argv, called.handler)  # type: ignore[attr-defined]
            if write and type(value) is not Error:
                run.effects.append((self.ks.db, argv))
        else:
            try:
                value = self._execute(called, argv, run, write)
            except CrossShard as e:
                return self._leave(run, e)
        if not run.read_noted and self.ks.event_mask & events.SCRIPT_READ and "readonly" in called.cmd.flags:
            # As Redis's call(), after the read ran (a key it found expired
            # is invalidated first): a script that reads has its declared
            # keys tracked for its caller (CLIENT TRACKING).
            run.read_noted = True
            run.changed = True  # (see Run.changed)
            for key in run.keys:
                events.note(self.ks, events.SCRIPT_READ, b"read", key)
        if self.monitor is not None and called.monitored:
            self.monitor.append((self.ks.db, argv))  # after it ran, as Redis's call()
        t = type(value)
        if t is int:
            return value, False
        if t is bytes:  # (_check_room's test, inlined)
            if self._used() + len(value) > self._push_room:
                self._check_room(value)
            return value, False
        self._check_room(value)
        if t is Error:
            return self._to_lua_error(value.message), raise_error
        return self._to_lua(value, run.resp), False

    def _leave(self, run: Run, e: CrossShard) -> tuple[LuaValue, LuaValue]:
        """A redis.call needs keys this shard does not hold: stop the
        script for good (a pcall in it must not go on), to undo it and run
        it again across shards.  But a kill this worker was signalled for
        and its hook has not read yet stops it here: Redis reads the kill
        at the script's next hook and stops it there, and the run across
        shards, a new run, knew nothing of it (the kill answered
        ``-NOTBUSY`` while the script ran on)."""
        self._make_room()  # (see _sign_unknown)
        run.changed = True  # (see Run.changed)
        if self._kill_now(run):
            self._kill_lines()  # as the hook does: every line of it raises from now on
            return self._error(errors.SCRIPT_KILLED), True
        run.abort = e
        self._stop()
        return self._error("cross-shard"), True

    def _read(
        self, called: _Called, argv: list[bytes], run: Run, raise_error: LuaValue
    ) -> tuple[LuaValue, LuaValue]:
        """redis.call of a single-key read: :meth:`_call`'s checks and
        :meth:`_execute`'s, as they come out for such a command."""
        arity = called.cmd.arity
        if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
            message = "Wrong number of args calling Redis command from script"
            return self._rejected(called, argv, message), raise_error
        ks = self.ks
        if self.nshards > 1 and slot_of(argv[1]) not in self.own:
            try:
                self._need_key(argv[1], run)
            except CrossShard as e:
                return self._leave(run, e)
        memory = ks.memory
        if memory is None:
            value = self.shard.execute_read(argv, called.handler)  # type: ignore[attr-defined]
        else:
            value = memory.run_in_script(self.shard.execute_read, argv, called.handler)  # type: ignore[attr-defined]
        if not run.read_noted and ks.event_mask & events.SCRIPT_READ and "readonly" in called.cmd.flags:
            run.read_noted = True  # see _call
            run.changed = True  # (see Run.changed)
            for key in run.keys:
                events.note(ks, events.SCRIPT_READ, b"read", key)
        if self.monitor is not None and called.monitored:
            self.monitor.append((ks.db, argv))  # after it ran, as Redis's call()
        t = type(value)
        if t is int:
            return value, False
        if t is bytes:  # (_check_room's test, inlined)
            if self._used() + len(value) > self._push_room:
                self._check_room(value)
            return value, False
        self._check_room(value)
        if value is None:
            return (None if run.resp == 3 else False), False
        if t is Error:
            return self._to_lua_error(value.message), raise_error
        return self._to_lua(value, run.resp), False

    def _execute(self, called: _Called, argv: list[bytes], run: Run, write: bool) -> object:
        ks = self.ks
        cmd = called.cmd
        db = ks.db
        if called.local:
            name = cmd.name
            if name == "select":
                return self._counted_call(argv, self._select(argv[1]))
            if name == "scan":
                return self._counted_call(argv, self._scan(argv, run))
            if name == "memory" and len(argv) > 2 and argv[1].lower() == b"usage":
                self._need_key(argv[2], run)  # MEMORY USAGE: a read of one key
                began = perf_counter_ns()
                value = self.shard.execute(argv, called.handler)  # type: ignore[attr-defined]
                ns = perf_counter_ns() - began
                # Counted and slow-logged here: a worker keeps no row of a
                # command the acceptor answers (MEMORY), nor logs it; its
                # error is in errorstats already.
                stats = getattr(self.shard, "stats", None)  # (see _invoke)
                if stats is not None:
                    row = stats._row(stat_name(argv))
                    stats.record_latency(row, ns)
                    if type(value) is Error:
                        row[3] += 1
                    stats.slow(argv, ns // 1000, LUA_CLIENT_ADDR)
                return value
            if name == "swapdb":
                return self._swapdb(called, argv, run)
            if name in ACCEPTOR_ANSWERS:
                # The acceptor counts it (and its errors); on a shard of
                # several, only once the script has ended here (see _end_held).
                if self.nshards == 1:
                    return self._ask_acceptor(argv, run)
                run.held = True
                run.changed = True  # (see Run.changed)
                return self._ask_acceptor([Verb.HELD, *argv], run)
            return self._counted_call(argv, _local(name, argv))
        if cmd.pattern_keys is not None and self.nshards > 1:
            # SORT's BY and GET patterns: keys it reads without naming them,
            # here only if each pattern's hash tag is.
            tagged = cmd.pattern_keys(argv)
            if tagged is None or any(slot_of(k) not in self.own for k in tagged):
                needed = 1 if db == run.db else 2
                if self.everything < needed:
                    raise CrossShard([], everything=needed)
        if cmd.route == "all":
            # FLUSHALL, or anything in another database than the script's,
            # needs every key of every database.
            needed = 2 if cmd.name == "flushall" or db != run.db else 1
            if self.nshards > 1 and self.everything < needed:
                raise CrossShard([], everything=needed)
        elif cmd.single_key and not write:
            self._need_key(argv[1], run)
        else:
            keys = [argv[1]] if cmd.single_key else cmd.keys(argv)
            # MOVE's key in its target database, COPY ... DB's destination
            # (a key's shard is the same in every database).
            targets = commands.other_db_keys(cmd.name, argv, len(ks.dbs)) if cmd.name in _TO_OTHER_DB else ()
            if self.nshards > 1:
                # A key of another shard must have been imported (even one
                # that does not exist yet, so that its new state goes home).
                slots = self.own
                imported = run.imported
                if db == run.home:
                    missing = [k for k in keys if slot_of(k) not in slots and k not in imported]
                else:
                    missing = [k for k in keys if slot_of(k) not in slots and (db, k) not in imported]
                # (named as the script's database names them)
                foreign: list[bytes | tuple[int, bytes]] = [k if db == run.db else (db, k) for k in missing]
                # A target imported too, or it would stay here, on another
                # shard than its own.
                for other, key in targets:
                    if (
                        slot_of(key) not in slots
                        and (key if other == run.home else (other, key)) not in imported
                    ):
                        foreign.append(key if other == run.db else (other, key))
                # (every key of every database is here: one missing is in
                # none, and one written goes home after the run, see
                # Shard.run_foreign)
                if foreign and self.everything < 2:
                    raise CrossShard(foreign, self.everything)
            if write:
                undo = run.undo
                for key in keys:
                    if (db, key) not in undo:
                        undo[db, key] = export_key(ks, key)
                # A target undone with the rest (the undo of a MOVE left
                # the key in the target as well).
                for other, key in targets:
                    if (other, key) not in undo:
                        with ks.selected(other):
                            undo[other, key] = export_key(ks, key)
        if write:
            run.dirty = True
            run.changed = True  # (see Run.changed)
            if run.busy and not run.reported_dirty:
                self._report(run)
            if cmd.route == "all":
                # FLUSHALL and the like: keep every key's state, to undo it.
                undo = run.undo
                for other in ks.used_dbs() if cmd.name == "flushall" else (db,):
                    with ks.selected(other):
                        for key in list(ks.iter_keys()):
                            if (other, key) not in undo:
                                undo[other, key] = export_key(ks, key)
        shard = self.shard
        handler = called.handler
        if ks.memory is None:
            value = shard.execute(argv, handler)  # type: ignore[attr-defined]
        else:
            value = ks.memory.run_in_script(shard.execute, argv, handler)  # type: ignore[attr-defined]
        if write and type(value) is not Error:
            run.effects.append((db, argv))
        return value

    def _counted_call(self, argv: list[bytes], value: object) -> object:
        """A call answered here without a command handler: count it in
        commandstats (and its error in errorstats), as a handler's call is
        counted (see Shard.execute)."""
        stats = getattr(self.shard, "stats", None)  # (see _invoke)
        if stats is not None:
            stats.record(stat_name(argv), 0, value.message if type(value) is Error else None)
            if stats.slow_threshold_ns == 0:  # (its time counts as none)
                stats.slow(argv, 0, LUA_CLIENT_ADDR)
        return value

    def _rejected(self, called: _Called | None, argv: list[bytes], message: str) -> object:
        """A call refused before it ran (Redis's scriptCall error path):
        counted at once, in errorstats and in the command's rejected_calls
        (none for an unknown command), even if a pcall catches it; the
        script passes the error on without counting it again.

        Its text is not read back from the table (nor the mark stored into
        it after): a read is a protected Lua call of lupa's, which fails
        with "C stack overflow" in a callable called 200 C calls deep (an
        xpcall handler's own error), a LuaError the script would get in
        place of Redis's error (see lualibs.Raised)."""
        text = _error_text(message)
        stats = getattr(self.shard, "stats", None)  # (see _invoke)
        if stats is not None:
            stats.rejected(stat_name(argv) if called is not None else None, text.decode("latin-1"))
        return self._error_table({b"err": text, _COUNTED: True})

    def _need_key(self, key: bytes, run: Run) -> None:
        """Raise CrossShard unless ``key`` (of the current database) is here."""
        if self.nshards > 1 and self.everything < 2 and slot_of(key) not in self.own:
            db = self.ks.db
            if (key if db == run.home else (db, key)) not in run.imported:
                raise CrossShard([key if db == run.db else (db, key)], self.everything)

    def _scan(self, argv: list[bytes], run: Run) -> object:
        """SCAN in a script: it needs every shard's keys, so the script runs
        where they all are (``everything``), and walks their slots as the
        acceptor's SCAN walks the shards' (the cursor is a slot number)."""
        try:
            cursor = parse_cursor(argv[1])
            count, pattern, kind = parse_scan_options(argv, 2, with_type=True)
        except CommandError as e:
            return Error(e.message)
        ks = self.ks
        needed = 1 if ks.db == run.db else 2
        if self.nshards > 1 and self.everything < needed:
            raise CrossShard([], everything=needed)
        cursor &= SLOTS - 1  # as the acceptor's SCAN: any cursor goes on scanning
        next_slot, found = ks.scan(cursor, count, every_slot=True)
        if pattern is not None:
            match = compile_glob(pattern)
            found = [k for k in found if match(k)]
        if kind:
            name = kind.decode("latin-1").lower()
            with ks.reading():  # as Redis, the TYPE filter reads each key
                found = [k for k in found if TYPE_NAMES.get(type(ks.peek(k))) == name]  # not an access
        return [b"%d" % max(next_slot, 0), found]

    def _swapdb(self, called: _Called, argv: list[bytes], run: Run) -> object:
        """SWAPDB in a script: a write of two whole databases of every shard,
        so the script runs where every key of every database is
        (``everything`` 2, as for FLUSHALL), and swaps them there; the
        cross-shard run writes every key's new state back to its shard."""
        ks = self.ks
        try:
            a = _db_index(argv[1], errors.INVALID_FIRST_DB)
            b = _db_index(argv[2], errors.INVALID_SECOND_DB)
        except CommandError as e:
            return self._counted_call(argv, Error(e.message))
        if not (0 <= a < len(ks.dbs) and 0 <= b < len(ks.dbs)):
            return self._counted_call(argv, Error(errors.DB_INDEX_OUT_OF_RANGE))
        if self.nshards > 1 and self.everything < 2:
            raise CrossShard([], everything=2)
        undo = run.undo
        for db in {a, b}:
            with ks.selected(db):
                for key in list(ks.iter_keys()):
                    if (db, key) not in undo:
                        undo[db, key] = export_key(ks, key)
        run.dirty = True
        run.changed = True  # (see Run.changed)
        if run.busy and not run.reported_dirty:
            self._report(run)
        value = self.shard.execute(argv, called.handler)  # type: ignore[attr-defined]
        if type(value) is not Error:
            run.effects.append((ks.db, argv))
            # (Shard.execute leaves SWAPDB, the acceptor's command, uncounted)
            return self._counted_call(argv, value)
        return value

    def _ask_acceptor(self, argv: list[bytes], run: Run) -> object:
        """A command the acceptor answers (PUBLISH, INFO...): ask it on the
        pipe this script's batch came on (a ``Q`` frame) and wait for its
        ``A`` frame; any other frame that comes meanwhile waits in the
        backlog, so nothing else runs here before the script ends."""
        shard = self.shard
        send = getattr(shard, "send_query", None)
        recv = getattr(shard, "recv", None)
        if send is None or recv is None:  # a shard with no acceptor (unit tests)
            return Error(errors.SCRIPT_CALL_UNSUPPORTED % argv[0].decode("latin-1").lower())
        backlog = shard.backlog  # type: ignore[attr-defined]
        try:
            # (where the script's reply waits: its own messages go before it)
            ahead = getattr(shard, "replies_ahead", None)
            place = ahead() if ahead is not None else -1
            at = getattr(shard, "run_reply_at", -1) if place == wire.SCRIPT_PARKED else -1
            noted = -1  # (the events the script noted so far: they come before its PUBLISH's message)
            others: tuple[int, ...] = ()  # (and those other acceptors get: see _noted_elsewhere)
            events = self.ks.events
            if (
                events is not None
                and (place >= 0 or place == wire.SCRIPT_PARKED)
                and len(argv) > 2
                and argv[-3].lower() in (b"publish", b"spublish")
            ):
                noted = _noted(self.ks, events, place, getattr(shard, "event_bounds", None))
                if place >= 0:
                    others = _noted_elsewhere(self.ks, events, shard)
            send(wire.encode_script_query(self.ks.db, run.resp, argv, run.start_ns, place, at, noted, others))
            while True:
                frame = recv()
                if frame[0] == wire.SCRIPT_ANSWER:
                    break
                backlog.append(frame)
        except (EOFError, OSError):  # the acceptor is gone: so is the script's caller
            return Error(errors.SHARD_UNAVAILABLE)
        if run.busy and run.abort is None:
            self._watch_ahead()  # what was sent before the answer, before the script goes on
        try:
            return decode_reply(wire.decode_script_answer(frame))
        except ProtocolError as e:
            return Error("ERR " + str(e))

    def _select(self, index: bytes) -> object:
        """SELECT in a script: the script's database, not its caller's (Redis 7)."""
        try:
            db = parse_int32(index)
        except CommandError as e:
            return Error(e.message)
        if not 0 <= db < len(self.ks.dbs):
            return Error(errors.DB_INDEX_OUT_OF_RANGE)
        self.ks.select(db)
        return "OK"

    def _error(self, message: str) -> object:
        return self._to_lua_error(message, raw=True)

    def _to_lua_error(self, message: str, raw: bool = False) -> object:
        if raw:  # luaPushErrorBuff: "-CODE msg" or "msg"
            return self._error_table({b"err": _error_text(message)})
        # A command's error, already counted in errorstats: not again when
        # the script passes it on (Redis's ignore_error_stats_update).
        message = message.strip("\r\n")
        return self._error_table({b"err": message.encode("latin-1", "replace"), _COUNTED: True})

    def _error_table(self, fields: dict[bytes, object]) -> object:
        """The error table ``fields`` made in the running script's Lua
        state, from a Python callable that Lua called: with no room for it
        (a script that filled its Lua memory, then called redis.call), the
        script fails with Lua's "not enough memory" (_refuse) before the
        table is made, as a reply that does not fit (_check_room): lupa
        makes it outside any protected call, and a failed allocation there
        is a jump over the callable's Python frames, with lupa holding the
        GIL: the worker's SIGSEGV, or a worker hung for good, deaf to
        SIGTERM.  (With no script running, FUNCTION LOAD's library code, the
        error is the library error "not enough memory" itself, pinned.)"""
        self._make_room()
        return self._table(fields)

    def _make_room(self) -> None:
        """Before Python puts something small into the running script's
        Lua state from a callable that Lua called (an error table, a
        store, a read's C closure, a call of the prelude's, each made by
        lupa outside any protected call): PUSH_SLACK left, or the script
        fails with Lua's "not enough memory" (see _error_table)."""
        if self._used() > self._push_room and not fits(self.lua, 0):
            if self.run is None:
                lualibs.LIBRARY_ERROR.text = "not enough memory"
                raise lualibs.LIBRARY_ERROR.with_traceback(None)
            self._refuse()

    def _to_lua(self, value: LuaValue, resp: int) -> object:
        """A command's reply as Redis hands it to Lua (redisProtocolToLuaType)."""
        t = type(value)
        if t is bytes or t is int:
            return value
        if value is None:
            return None if resp == 3 else False
        if t is str:
            return self._table({b"ok": value.encode("latin-1", "replace")})
        if t is list or t is tuple:
            return self._table([self._to_lua(v, resp) for v in value])
        if t is Error:
            return self._to_lua_error(value.message)
        if t is float:
            if resp == 3:
                return self._table({b"double": value})
            return format_double(value)
        if t is bool:
            return value if resp == 3 else int(value)
        if t is dict:
            if resp == 3:
                out = self.lua.table()
                for k, v in value.items():
                    out[self._to_lua(k, resp)] = self._to_lua(v, resp)
                return self._table({b"map": out})
            flat = []
            for k, v in value.items():
                flat += [self._to_lua(k, resp), self._to_lua(v, resp)]
            return self._table(flat)
        if t is set or t is frozenset:
            if resp == 3:
                out = self.lua.table()
                for k in value:
                    out[self._to_lua(k, resp)] = True
                return self._table({b"set": out})
            return self._table([self._to_lua(v, resp) for v in value])
        if t is KeyedArrays:  # XREAD: a map in RESP3, else an array of 2-arrays
            if resp == 3:
                return self._to_lua(dict(value), resp)
            return self._table(
                [self._table([self._to_lua(k, resp), self._to_lua(v, resp)]) for k, v in value]
            )
        if t is PairChoices:  # HRANDFIELD key -count WITHVALUES past BIG_ARRAY
            value = value.drawn()
            t = Pairs
        if t is Pairs:
            if resp == 3:
                return self._table(
                    [self._table([self._to_lua(a, resp), self._to_lua(b, resp)]) for a, b in value]
                )
            flat = []
            for a, b in value:
                flat += [self._to_lua(a, resp), self._to_lua(b, resp)]
            return self._table(flat)
        if t is HumanDouble:  # GEOPOS's coordinates: text in RESP2, a double in RESP3
            if resp == 3:
                return self._table({b"double": float(value.text)})
            return value.text
        if t is Verbatim:
            if resp == 3:
                inner = self._table({b"string": value.text, b"format": value.format})
                return self._table({b"verbatim_string": inner})
            return value.text
        if t is Raw:  # already RESP (SRANDMEMBER with a big negative count...)
            import hiredis

            reader = hiredis.Reader()
            reader.feed(value.data)
            return self._to_lua(reader.gets(), resp)
        if hasattr(value, "message"):
            return self._to_lua_error(value.message)
        # NULL_ARRAY and anything else that is a null
        return None if resp == 3 else False

    # -- the script's reply -----------------------------------------------------

    def _convert(self, value: LuaValue, resp: int) -> object:
        """The Lua value a script returned, as a reply (luaReplyToRedisReply);
        ``resp`` is the script's protocol (redis.setresp).  Without
        recursion: each value waits in ``todo`` with its place in the reply
        and the slot it takes on Redis's Lua stack (see REPLY_TOP_SLOT),
        where a value past REPLY_LAST_SLOT is Redis's error."""
        root: list[object] = [None]
        todo: list[tuple[LuaValue, int, list, int]] = [(value, REPLY_TOP_SLOT, root, 0)]
        pop = todo.pop
        push = todo.append
        every = lualibs.READS
        reads = every + 1  # (since the state's last measure: the first table measures it)
        while todo:
            value, slot, into, at = pop()
            if slot > REPLY_LAST_SLOT:  # (in an array: counted with the reply, see _invoke)
                if self._nested_errors is None:
                    self._nested_errors = []
                self._nested_errors.append(STACK_LIMIT_ERROR.message)
                into[at] = STACK_LIMIT_ERROR
                continue
            t = type(value)
            if t is bytes:
                into[at] = value
                continue
            if t is int:
                into[at] = value if LLONG_MIN <= value < 2**63 else LLONG_MIN
                continue
            if t is float:
                if math.isnan(value) or math.isinf(value) or not (-(2.0**63) <= value < 2.0**63):
                    into[at] = LLONG_MIN
                else:
                    into[at] = int(value)
                continue
            if t is bool:
                if resp == 2:
                    into[at] = 1 if value else None
                else:
                    into[at] = ("bool", value)
                continue
            if value is None or self._lua_type(value) != "table":
                into[at] = None
                continue
            if reads > every:
                self._room_to_read()
                reads = 0
            kind, payload, n = self._classify(value)
            reads += 1 + n
            if kind == b"array":
                items: list[object] = [None] * n
                into[at] = items
                slot += 1
                later = None
                for i in range(n):
                    if i and not i % every:  # (a long array's reads)
                        self._room_to_read()
                    x = payload[i + 1]
                    tx = type(x)
                    # (the common items at once, the rest after them)
                    if tx is bytes and slot <= REPLY_LAST_SLOT:
                        items[i] = x
                    elif tx is int and LLONG_MIN <= x < 2**63 and slot <= REPLY_LAST_SLOT:
                        items[i] = x
                    elif later is None:
                        later = [(x, slot, items, i)]
                    else:
                        later.append((x, slot, items, i))
                if later is not None:
                    # Last first onto the stack, so they are converted in
                    # the reply's order, as Redis writes them: the errors in
                    # it are counted in that order (past MAX_ERROR_CODES
                    # distinct codes, the first ones are kept).
                    later.reverse()
                    todo += later
            elif kind == b"err":  # its line breaks become spaces before it is counted, as Redis's
                error = Error(_text(payload).replace("\r", " ").replace("\n", " "))
                if slot > REPLY_TOP_SLOT:  # in an array: counted with the reply (see _invoke)
                    if self._nested_errors is None:
                        self._nested_errors = []
                    self._nested_errors.append(None if _counted(value) else error.message)
                into[at] = error
            elif kind == b"ok":
                into[at] = ("status", payload.replace(b"\r", b" ").replace(b"\n", b" "))
            elif kind == b"double":
                into[at] = float(payload)
            elif kind == b"big_number":
                into[at] = ("big", payload.replace(b"\r", b" ").replace(b"\n", b" "))
            elif kind == b"verbatim":
                into[at] = ("verbatim", payload[1], payload[2])
            elif kind == b"map" or kind == b"set":
                items = [None] * n
                into[at] = (kind.decode(), items)
                # (Redis's stack while it writes a map's key: the table, the
                # map, the key and its value, the key's copy; then its value;
                # a set's member: the table, the set, the member and its copy)
                for i in range(n, 0, -1):
                    if not i % every:  # (a long map's reads)
                        self._room_to_read()
                    push((payload[i], slot + (4 if i & 1 and kind == b"map" else 3), items, i - 1))
            else:
                into[at] = None
        return root[0]

    # -- Lua's memory limit -----------------------------------------------------
    #
    # lupa pushes a Python value into Lua outside any protected call: a
    # string or table that does not fit in the state's limit (LUA_MAX_MEMORY)
    # is a Lua panic, which aborts the worker, or, inside a Python callable
    # that Lua called (redis.call), a jump over Python's frames that hangs
    # it.  So every script's keys and arguments, and every reply of
    # redis.call and redis.pcall, is measured first (with PUSH_SLACK to
    # spare, for what the script does next): one that does not fit fails
    # the script with Lua's "not enough memory", as an allocation of its
    # own that fails would.

    def _convert_collected(self, value: LuaValue, resp: int, sha: bytes) -> object:
        """_convert once more, the state collected first, for a reply that
        did not fit in its Lua state to be read (classify's copy, lupa's
        reads; see _room_to_read): the script's garbage is gone now.  One
        that still does not fit is Lua's "not enough memory"; its writes
        stay, as a script's that fails after them."""
        self._nested_errors = None
        self.lua.gccollect()
        try:
            return self._convert(value, resp)
        except lua51.LuaMemoryError:
            self._nested_errors = None
            self.lua.gccollect()
            return self._error_reply(b"not enough memory", sha)

    def _room_to_read(self) -> None:
        """Before Python reads on in a script's reply (see lualibs.READS:
        each read a C closure of lupa's, made outside any protected call,
        where a failed allocation is a Lua panic, the worker's exit):
        PUSH_SLACK left, after a full collection if it takes one (the
        script's garbage, the reads' closures), or a LuaMemoryError, as
        classify's own copy of the table raises when it does not fit
        (_conclude answers Lua's "not enough memory")."""
        if self._used() > self._push_room and not fits(self.lua, 0):
            raise lua51.LuaMemoryError("not enough memory")

    def _check_room(self, value: object) -> None:
        """A reply of redis.call or redis.pcall is to go into the running
        script's Lua state: if it does not fit, the script fails."""
        size = len(value) if type(value) is bytes else _lua_size(value)
        if self._used() + size > self._push_room and not fits(self.lua, size):
            self._refuse()

    def _require(self, size: int) -> None:
        """A library (cjson, cmsgpack) is to build a value of about
        ``size`` bytes in the running script's Lua state: if it does not
        fit, the script fails (at FUNCTION LOAD, the library's code)."""
        lua = self.lua
        if lua.get_memory_used() + size > LUA_MAX_MEMORY - PUSH_SLACK and not fits(lua, size):
            if self.run is None:
                raise LibError("not enough memory")
            self._refuse()

    def _refuse(self) -> NoReturn:
        """Fail the running script for a reply that does not fit in its
        Lua state: it stops, every instruction from now on raises, as for
        a key on another shard (a pcall in it cannot go on); the state may
        exceed its limit by PUSH_SLACK meanwhile (its error's own tables);
        its reply is then Lua's "not enough memory" (_after_refusal)."""
        lua = self.lua
        lua.set_max_memory(max(LUA_MAX_MEMORY, lua.get_memory_used()) + PUSH_SLACK)
        self.out_of_memory = True
        self._stop()
        self._hold(self._error("not enough memory"))
        raise _RAISE.with_traceback(None)

    def _after_refusal(self) -> bytes:
        """The script that _refuse failed has ended: its state has its
        limit again, and its error is Lua's, as a failed allocation's."""
        self.out_of_memory = False
        # (collected first: the script may have gone on to fill the room
        # _refuse gave it, under a pcall, which rearm's Lua code needs)
        self.lua.gccollect()
        self._rearm()
        self.lua.set_max_memory(LUA_MAX_MEMORY)
        return b"not enough memory"

    # -- redis.* helpers --------------------------------------------------------

    def _raise(self, message: str) -> NoReturn:
        """Raise a Lua error table from a Python callable (see the prelude)."""
        self._hold(self._error(message))
        raise _RAISE.with_traceback(None)

    def _sha1hex(self, *args: LuaValue) -> bytes:
        """redis.sha1hex(string)"""
        if len(args) != 1:
            self._raise("wrong number of arguments")
        s = args[0]
        if type(s) in (int, float):
            run = self.run
            if s == 0 and run is not None and self._may_run_again(run, run.apart):
                self._sign_unknown(run)  # (its value is never seen)
            s = _lua_number(s)
        return sha1hex(s if type(s) is bytes else b"")

    def _log(self, *args: LuaValue) -> None:
        """redis.log(level, message, ...)"""
        if len(args) < 2:
            self._raise("redis.log() requires two arguments or more.")
        level = args[0]
        if type(level) is bytes:
            try:
                level = float(level)
            except ValueError:
                level = None
        if type(level) not in (int, float):
            self._raise("First argument must be a number (log level).")
        if not 0 <= int(level) <= 3:
            self._raise("Invalid debug level.")
        parts = [_lua_number(a) if type(a) in (int, float) else a for a in args[1:]]
        text = b" ".join(p for p in parts if type(p) is bytes)
        levels = serverlog.SCRIPT_LEVELS  # (where they go: see shardkv.runtime.serverlog)
        run = self.run
        if run is None:
            log.log(levels[int(level)], "%s", _text(text))
        elif log.isEnabledFor(levels[int(level)]):  # (held until it ends: _write_logs)
            if self.log_skip:  # written by the run undone before this one
                self.log_skip -= 1
                run.written += 1
                run.changed = True  # (see Run.changed)
                return
            logs = run.logs
            logs.append((levels[int(level)], _text(text)))
            if len(logs) >= LOGS_HELD:  # (a script that logs in a loop: bounded memory)
                for held in logs:
                    log.log(held[0], "%s", held[1])
                run.written += len(logs)
                run.changed = True  # (see Run.changed)
                logs.clear()

    def _setresp(self, *args: LuaValue) -> None:
        """redis.setresp(2 | 3)"""
        if len(args) != 1:
            self._raise("redis.setresp() requires one argument.")
        v = args[0]
        resp = int(v) if type(v) in (int, float) else 0
        if resp not in (2, 3):
            self._raise("RESP version must be 2 or 3.")
        if self.run is not None:
            self.run.resp = resp
            self.run.changed = True  # (see Run.changed)

    def _setrepl(self, *args: LuaValue) -> None:
        """redis.set_repl(flags): every write is logged (shardkv has no replicas)."""
        if len(args) != 1:
            self._raise("redis.set_repl() requires two arguments.")
        v = args[0]
        flags = int(v) if type(v) in (int, float) else 0
        if flags & ~3:
            self._raise("Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.")

    def _generator(self) -> _Rand48:
        """The generator a script draws from.  Redis has one for the whole
        server; with several shards, the acceptor keeps its state and lends
        it to one script at a time (``__random``), which gives it back when
        it ends, so scripts draw one sequence in the order they first draw."""
        run = self.run
        if run is None or run.rand_lent is not None:
            return self.rand
        state = self._ask_acceptor([Verb.RANDOM], run) if self.nshards > 1 else None
        if type(state) is int:
            run.rand_lent = self.rand.x = state
            run.changed = True  # (see Run.changed)
        else:
            # This shard's own: its state now, for an undone run (that runs
            # again) to put back, as one that runs again elsewhere draws nothing.
            run.rand_lent = ~self.rand.x
            run.changed = True  # (see Run.changed)
        return self.rand

    def _give_back_rand(self, state: int) -> None:
        send = getattr(self.shard, "send_query", None)
        if send is not None:
            try:
                send(wire.encode_script_query(0, 2, [Verb.RANDOM_BACK, b"%d" % state]))
            except OSError:
                pass  # the acceptor is gone, and its generator with it

    def _random(self, *args: object) -> float | int:
        """math.random([m [, n]]): Redis's redis_math_random, drawn from
        redisLrand48 before the arguments are checked, as Redis does."""
        r = (self._generator().next() % 0x7FFFFFFF) / 0x7FFFFFFF
        n = len(args)
        if n == 0:
            return r
        if n == 1:
            u = _check_int(args, 0, "random")
            if u < 1:
                raise LibError("bad argument #1 to 'random' (interval is empty)")
            return math.floor(r * u) + 1
        if n == 2:
            low = _check_int(args, 0, "random")
            u = _check_int(args, 1, "random")
            if low > u:
                raise LibError("bad argument #2 to 'random' (interval is empty)")
            return math.floor(r * (u - low + 1)) + low
        raise LibError("wrong number of arguments")

    def _randomseed(self, *args: object) -> None:
        """math.randomseed(x): redisSrand48((int) x)."""
        seed = _check_int(args, 0, "randomseed")
        self._generator().seed(seed)

    def _check(self) -> bool:
        """The count hook (every 100000 instructions): tell the acceptor
        once the script is past busy-reply-threshold, and stop it if SCRIPT
        KILL asked and it has not written."""
        run = self.run
        if run is None:
            return False
        if self.exit_requested:
            for level, text in self.deferred_logs:  # (scripts before it in its run ended)
                log.log(level, "%s", text)
            self._write_logs(run)
            log.warning("SHUTDOWN NOSAVE while a script is busy: exiting now")
            # Every acceptor hears why the pipe closes (wire ``Z``): the
            # server stops, and the script's client gets no reply, as in
            # Redis, not the answer for a worker that died.
            send = getattr(self.shard, "send_state", None)
            if send is not None:
                try:
                    send(wire.STOPPED_FRAME)
                except OSError:  # that acceptor is gone: nothing to tell it
                    pass
            logging.shutdown()
            os._exit(0)
        if run.abort is not None or run.killed:
            return True
        if not run.busy:
            if not run.told_running:  # its first hook
                run.told_running = True
                run.changed = True  # (see Run.changed)
                self._tell_running(wire.RUNNING_FRAME)
            threshold = self.busy_threshold()
            if threshold > 0 and (time.monotonic_ns() - run.start_ns) / 1e9 >= threshold:
                run.busy = True
                run.changed = True  # (see Run.changed)
                self.busy_error = errors.BUSY if run.eval_mode else errors.BUSY_FUNCTION
                waiters = self.ks.waiters
                if waiters is not None:
                    waiters.busy_scripts += 1
                refusals = getattr(self.shard, "refusals", None)
                if refusals is not None:
                    refusals.next_epoch()  # this script's, in its reports and K frames
                sent = self._report(run)
                if refusals is not None and sent is not None:
                    refusals.begin(sent, run.eval_mode)
        else:
            if (run.dirty and not run.reported_dirty) or self.report_requested:
                self.report_requested = False
                self._report(run)
            refusals = getattr(self.shard, "refusals", None)
            if refusals is not None and refusals.due:
                refusals.poll()  # what came before the acceptors knew: -BUSY now
            self._watch_ahead()
        if run.busy and run.logs:
            self._write_logs(run)  # a busy script's lines are looked for now, not held
        return self.kill_requested and self._kill_now(run)

    def _kill_now(self, run: Run) -> bool:
        """A SCRIPT KILL or FUNCTION KILL signalled: stop the script unless
        it has written.  (It has: its report that says so went to every
        pipe before its first write, and the kills waiting answer
        ``-UNKILLABLE``.)"""
        if not self.kill_requested:
            return False
        self.kill_requested = False
        if run.dirty:
            return False
        run.killed = True
        run.killed_at = time.monotonic()
        run.changed = True  # (see Run.changed)
        return True

    def _watch_ahead(self) -> None:
        """The script is busy: the WATCHes sent meanwhile run now, as
        Redis reads them (see shardkv.worker.busywatch)."""
        watches = getattr(self.shard, "busy_watches", None)
        if watches is not None:
            watches.run_ahead()

    def _tell_running(self, frame: bytes) -> None:
        """Tell every acceptor that a script runs (at its first count
        hook) or that it ended (wire ``U``): meanwhile a command queued
        in MULTI waits for the shards' scripts, as Redis reads nothing
        while a script runs (see ``transactions.queue``).  Not at its
        start: a script that ends before its first hook costs nothing."""
        send = getattr(self.shard, "send_state", None)
        if send is not None:
            try:
                send(frame)
            except OSError:  # that acceptor is gone: nothing to tell it
                pass

    def busy_threshold(self) -> float:
        """busy-reply-threshold, in seconds."""
        try:
            return int(self.ks.runtime.extra.get("busy-reply-threshold", "5000")) / 1000.0
        except ValueError:
            return 5.0

    def _report(self, run: Run) -> list[int] | None:
        """Tell the acceptor whether a script is busy (wire.SCRIPT): the
        pipes it went to, if known."""
        # Not Shard.send: that commits the AOF first, and the script's
        # effects so far must not reach it before the script ends.
        send = getattr(self.shard, "send_state", None) or getattr(self.shard, "send", None)
        if send is None:
            return None
        run.reported_dirty = run.dirty
        run.changed = True  # (see Run.changed)
        functions = getattr(self, "functions", None)
        nlibs = len(functions.libraries) if functions is not None else 0
        nfuncs = len(functions.functions) if functions is not None else 0
        started = time.time() - (time.monotonic_ns() - run.start_ns) / 1e9
        details = (run.sha, run.command, started, nlibs, nfuncs)
        waiters = self.ks.waiters
        unblocks = waiters.unblock_counts() if waiters is not None else (0, {}, {})
        # Where the script's reply waits in its acceptor's queue, so that
        # the acceptor can tell which client runs it (see shardkv.acceptor.scriptcaller).
        ahead = getattr(self.shard, "replies_ahead", None)
        caller = (self.ks.pipe, ahead()) if ahead is not None else (-1, -1)
        refusals = getattr(self.shard, "refusals", None)
        epoch = refusals.epoch if refusals is not None else 0
        sent = send(
            wire.encode_script_state(
                run.busy,
                os.getpid(),
                run.dirty,
                run.eval_mode,
                unblocks,
                *details,
                caller=caller,
                epoch=epoch,
                killed_at=run.killed_at,
                reported_at=time.monotonic(),
            )
        )
        return sent if type(sent) is list else None

    def request_exit(self) -> None:
        """SIGUSR2: SHUTDOWN NOSAVE while this worker runs a busy script.
        The count hook ends the process then and there, as Redis exits:
        nothing the script wrote is logged or saved.  (If the script has
        ended meanwhile, the supervisor's SIGTERM stops the worker as usual.)"""
        self.exit_requested = self.run is not None

    def request_report(self) -> None:
        """wire.REPORT_SIGNAL: a kill of the other kind asks whether the
        busy script has written (the count hook reports it)."""
        run = self.run
        self.report_requested = run is not None and run.busy

    def request_kill(self) -> None:
        """SIGUSR1: SCRIPT KILL or FUNCTION KILL (checked by the count hook).
        An acceptor signals only a script it knows is busy, past
        busy-reply-threshold: a signal that finds no busy script came late,
        after the script it was meant for ended, and another script, which
        this kill was not read for, may have started since (it stopped it
        at its first hook, before its threshold)."""
        run = self.run
        self.kill_requested = run is not None and run.busy


class ScriptReply:
    """A script's reply, encoded in the client's protocol only when sent."""

    __slots__ = ("tree", "failures")

    def __init__(self, tree: LuaValue, failures: int = 0) -> None:
        self.tree = tree
        # The failed_calls the reply makes beyond the one the acceptor
        # counts (errors in its arrays, see Engine._invoke).
        self.failures = failures

    def to_resp(self, resp3: bool) -> bytes:
        out: list[bytes] = []
        _encode(self.tree, bool(resp3), out)
        return b"".join(out)


def _encode(v: LuaValue, resp3: bool, out: list[bytes]) -> None:
    """A reply tree (Engine._convert) as RESP, without recursion (a reply
    may nest 7995 levels deep, past Python's recursion limit): what is
    left to write waits in ``todo``, last first."""
    todo = [v]
    pop = todo.pop
    extend = todo.extend
    while todo:
        v = pop()
        t = type(v)
        if t is bytes:
            out.append(b"$%d\r\n%s\r\n" % (len(v), v))
        elif t is int:
            out.append(b":%d\r\n" % v)
        elif v is None:
            out.append(b"_\r\n" if resp3 else b"$-1\r\n")
        elif t is list:
            out.append(b"*%d\r\n" % len(v))
            extend(reversed(v))
        elif t is Error:
            msg = v.message
            out.append(b"-%s\r\n" % msg.replace("\r", " ").replace("\n", " ").encode("latin-1", "replace"))
        elif t is float:
            if resp3:
                out.append(b",%s\r\n" % format_double(v))
            else:
                s = format_double(v)
                out.append(b"$%d\r\n%s\r\n" % (len(s), s))
        else:
            kind = v[0]
            if kind == "bool":
                if resp3:
                    out.append(b"#t\r\n" if v[1] else b"#f\r\n")
                else:
                    out.append(b":1\r\n" if v[1] else b":0\r\n")
            elif kind == "status":
                out.append(b"+%s\r\n" % v[1])
            elif kind == "big":
                s = v[1]
                out.append(b"(%s\r\n" % s if resp3 else b"$%d\r\n%s\r\n" % (len(s), s))
            elif kind == "verbatim":
                fmt, s = v[1], v[2]
                if resp3:
                    body = fmt[:3].ljust(3, b" ") + b":" + s
                    out.append(b"=%d\r\n%s\r\n" % (len(body), body))
                else:
                    out.append(b"$%d\r\n%s\r\n" % (len(s), s))
            elif kind == "map":
                items = v[1]
                out.append((b"%%%d\r\n" % (len(items) // 2)) if resp3 else (b"*%d\r\n" % len(items)))
                extend(reversed(items))
            elif kind == "set":
                items = v[1]
                out.append((b"~%d\r\n" if resp3 else b"*%d\r\n") % len(items))
                extend(reversed(items))


_COUNTED = b"ignore_error_stats_update"


def _counted(value: LuaValue) -> bool:
    """Is ``value`` an error table of a command's error, counted already?"""
    if lua51.lua_type(value) != "table":
        return False
    try:
        return value[_COUNTED] is True
    except Exception:  # a table whose metatable raises
        return False


def _lua_size(value: Any) -> int:
    """What a command's reply takes at most in Lua once converted
    (Engine._to_lua): each string with its header, each table with its
    slots, and a table for each status, error or double."""
    t = type(value)
    if t is bytes or t is str:
        return len(value) + 64
    if t is list or t is tuple or t is set or t is frozenset or t is KeyedArrays or t is Pairs:
        return 128 + sum(_lua_size(v) + 48 for v in value)
    if t is dict:
        return 128 + sum(_lua_size(k) + _lua_size(v) + 96 for k, v in value.items())
    if t is PairChoices:  # at most k of its largest pair
        return 128 + value.k * max(_lua_size(a) + _lua_size(b) + 144 for a, b in value.pairs)
    if t is Raw:  # RESP: every element takes 4 bytes or more of it
        return 32 * len(value.data)
    text = getattr(value, "message", None) or getattr(value, "text", None)  # (Error, Verbatim, HumanDouble)
    return len(text) + 256 if isinstance(text, bytes | str) else 256


def _lua_number(value: float) -> bytes:
    """A number as Lua's tostring writes it (%.14g, a NaN with its sign as
    glibc writes it)."""
    if value != value:
        return b"-nan" if math.copysign(1.0, value) < 0 else b"nan"
    return b"%.14g" % value


def _error_text(message: str) -> bytes:
    """An error table's text as luaPushErrorBuff writes ``message``:
    "-CODE msg" or "msg" (code ERR), as "CODE msg"."""
    if message[:1] == "-":
        code, _, msg = message[1:].partition(" ")
        if not _:
            code, msg = "ERR", message[1:]
    else:
        code, msg = "ERR", message
    return (code + " " + msg.strip("\r\n")).encode("latin-1", "replace")


def _text(value: LuaValue) -> str:
    if type(value) is bytes:
        return value.decode("latin-1")
    if type(value) is float and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return str(value)


# Redis commands shardkv does not have that Redis refuses from a script
# (flag NOSCRIPT), with their arity, and containers' such subcommands: a
# script gets Redis's error for them (see _not_here).
_REDIS_NOSCRIPT: dict[bytes, int] = {}
_REDIS_NOSCRIPT_SUBCOMMANDS = {
    b"acl": {
        b"cat": -2,
        b"deluser": -3,
        b"dryrun": -4,
        b"genpass": -2,
        b"getuser": 3,
        b"help": 2,  # (run: see _REDIS_HELP)
        b"list": 2,
        b"load": 2,
        b"log": -2,
        b"save": 2,
        b"setuser": -3,
        b"users": 2,
        b"whoami": 2,
    },
    b"module": {b"help": 2, b"list": 2, b"load": -3, b"loadex": -3, b"unload": 3},
}


# The HELP of containers shardkv does not have whose HELP Redis runs from a
# script (no NOSCRIPT flag): ACL's and MODULE's, as Redis 7.0.15 answers.
_REDIS_HELP = {
    b"acl": (
        b"ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        b"CAT [<category>]",
        b"    List all commands that belong to <category>, or all command categories",
        b"    when no category is specified.",
        b"DELUSER <username> [<username> ...]",
        b"    Delete a list of users.",
        b"DRYRUN <username> <command> [<arg> ...]",
        b"    Returns whether the user can execute the given command without executing the command.",
        b"GETUSER <username>",
        b"    Get the user's details.",
        b"GENPASS [<bits>]",
        b"    Generate a secure 256-bit user password. The optional `bits` argument can",
        b"    be used to specify a different size.",
        b"LIST",
        b"    Show users details in config file format.",
        b"LOAD",
        b"    Reload users from the ACL file.",
        b"LOG [<count> | RESET]",
        b"    Show the ACL log entries.",
        b"SAVE",
        b"    Save the current config to the ACL file.",
        b"SETUSER <username> <attribute> [<attribute> ...]",
        b"    Create or modify a user with the specified attributes.",
        b"USERS",
        b"    List all the registered usernames.",
        b"WHOAMI",
        b"    Return the current connection username.",
        b"HELP",
        b"    Prints this help.",
    ),
    b"module": (
        b"MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        b"LIST",
        b"    Return a list of loaded modules.",
        b"LOAD <path> [<arg> ...]",
        b"    Load a module library from <path>, passing to it any optional arguments.",
        b"LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
        b"    Load a module library from <path>, while passing it module configurations and optional arguments.",
        b"UNLOAD <name>",
        b"    Unload a module.",
        b"HELP",
        b"    Prints this help.",
    ),
}


def _not_here(argv: list[bytes]) -> str:
    """The error of a script's call of a command shardkv does not have:
    Redis's for a command it refuses from scripts (its arity checked
    first, as Redis does; a container alone has arity -2), else unknown."""
    name = argv[0].lower()
    arity = _REDIS_NOSCRIPT.get(name)
    if arity is None:
        subs = _REDIS_NOSCRIPT_SUBCOMMANDS.get(name)
        if subs is None:
            return "Unknown Redis command called from script"
        if len(argv) < 2:
            return "Wrong number of args calling Redis command from script"
        arity = subs.get(argv[1].lower())
        if arity is None:  # not one Redis refuses: shardkv cannot run it
            return "Unknown Redis command called from script"
    if (len(argv) != arity) if arity > 0 else (len(argv) < -arity):
        return "Wrong number of args calling Redis command from script"
    return "This Redis command is not allowed from script"


# The acceptor's commands a script may call that the acceptor answers
# mid-script (see Engine._ask_acceptor and shardkv.acceptor.scriptcalls).
ACCEPTOR_ANSWERS = frozenset(
    {"publish", "spublish", "pubsub", "command", "info", "lastsave", "memory", "slowlog", "lolwut"}
    # only their HELP: their other subcommands are ``noscript``
    | {"client", "config", "script", "function", "latency"}
)


@functools.cache
def _prelude() -> bytes:
    """The prelude compiled (once in a process, in a Lua state of its own),
    its functions without their debug information (line numbers, names of
    locals and upvalues): 20 KB less in every Lua state, as Redis's, whose
    sandbox functions are C functions, have none.  Nothing a script sees
    names the prelude's lines or locals: its errors name the script's line
    (the handler, rethrow), and the prelude's own frames are known by their
    source, kept."""
    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
    source = resources.files("shardkv.worker").joinpath("luaprelude.lua").read_bytes()
    chunk = lua.globals()[b"loadstring"](source, b"=prelude")
    if lua51.lua_type(chunk) != "function":
        raise RuntimeError(chunk[1] if isinstance(chunk, tuple) else "prelude failed")
    return without_debug_info(lua.globals()[b"string"][b"dump"](chunk))


def _lua_bytes(vm: _VM | None) -> int:
    """A Lua state's memory as Redis reports it: ``lua_gc(LUA_GCCOUNT)``
    KB, whole, times 1024."""
    if vm is None:
        return 0
    return ((vm.lua.get_memory_used() or 0) >> 10) << 10


# The commands that write a key of another database (commands.other_db_keys).
_TO_OTHER_DB = frozenset(("move", "copy"))


def _noted(ks: Keyspace, events: list, place: int, bounds: list[int] | None) -> int:
    """How many of the events its acceptor gets of the command that runs
    (a script calling PUBLISH) were noted so far: they come before the
    message, as Redis writes each as the script's calls run.  The events
    of a batch's entry (``place`` >= 0) start after the last of
    ``bounds``; a cross-shard operation's run (``place``:
    :data:`wire.SCRIPT_PARKED`, an EXEC's or a script's across shards),
    where its events begin, at the start (see Shard.run_foreign), counted
    in the run's order, as the acceptor places an EXEC's (see
    notifications.publish).  Several acceptors listen: its own gets those
    its mask selects (an operation's, those any acceptor's selects, which
    it relays), see Shard._share_events, and counts in those."""
    start = 0 if place < 0 or not bounds else bounds[-1]
    masks = ks.event_masks
    if len(masks) > 1 or (masks and ks.pipe not in masks):
        mine = masks.get(ks.pipe, 0)
        if place < 0:
            for pipe, mask in masks.items():
                if pipe != ks.pipe:
                    mine |= mask & ~wire.EVENT_SCRIPT_READ
        return sum(1 for i in range(start, len(events)) if events[i][2] & mine)
    return len(events) - start


def _noted_elsewhere(ks: Keyspace, events: list, shard: object) -> tuple[int, ...]:
    """For a batch's entry (a script calling PUBLISH) while other acceptors
    listen: each other pipe whose ``O`` frame at the batch's end (see
    Shard._share_events) will hold events noted so far, ``pipe, seq,
    count``: that frame's number and how many of them; its acceptor hands
    those out before the message, as Redis writes each event as the
    script's calls run.  None where some of the batch's events are relayed
    (a part of a command across shards: their order is the relay's)."""
    masks = ks.event_masks
    sent = getattr(shard, "others_sent", None)
    if (
        sent is None
        or getattr(shard, "part_spans", None)
        or getattr(shard, "op_events_from", None) is not None
    ):
        return ()
    out: list[int] = []
    for pipe, mask in masks.items():
        if pipe == ks.pipe:
            continue
        mask &= ~wire.EVENT_SCRIPT_READ
        count = sum(1 for e in events if e[2] & mask)
        if count:
            out += (pipe, sent.get(pipe, 0) + 1, count)
    return tuple(out)


def _db_index(arg: bytes, message: str) -> int:
    try:
        return parse_int32(arg)
    except CommandError:
        raise CommandError(message) from None


def _local(name: str, argv: list[bytes]) -> object:
    """The acceptor's commands a script may call, answered here."""
    if name == "ping":
        if len(argv) > 2:
            return Error(errors.WRONG_ARITY % "ping")
        return argv[1] if len(argv) == 2 else "PONG"
    if name == "echo":
        return argv[1]
    if name == "time":
        now = time.time()
        sec = int(now)
        return [b"%d" % sec, b"%d" % int((now - sec) * 1e6)]
    if name in (
        "cluster",
        "asking",
        "readonly",
        "readwrite",
    ):  # (CLUSTER's noscript subcommands refused before)
        return Error(errors.CLUSTER_DISABLED)
    return Error("ERR This Redis command is not allowed from script")


# -- the commands ---------------------------------------------------------------


# What redis.call says of a call the script's ACL user may not make.
_ACL_DENIED = {
    acl.DENIED_CMD: errors.ACL_SCRIPT_COMMAND,
    acl.DENIED_KEY: errors.ACL_SCRIPT_KEY,
    acl.DENIED_CHANNEL: errors.ACL_SCRIPT_CHANNEL,
}


def engine_of(ks: Keyspace) -> Engine:
    engine = ks.scripts
    if engine is None:
        raise CommandError("ERR scripting is not available")
    return engine


def _numkeys(args: list[bytes]) -> int:
    if args[2] == b"1" and len(args) > 3:
        return 1
    try:
        n = int(args[2])
    except ValueError:
        raise CommandError(errors.NOT_INTEGER) from None
    if n > len(args) - 3:
        raise CommandError(errors.NUMKEYS_TOO_BIG)
    if n < 0:
        raise CommandError(errors.NUMKEYS_NEGATIVE)
    return n


CROSS_MARKER = "SHARDKV-CROSS"  # the acceptor's cue to run the script across shards


def cross_reply(e: CrossShard) -> Error:
    """``SHARDKV-CROSS [*|**] key... [#written]``: ``*`` when every shard
    is needed, ``**`` with every database; each key in hex, ``db:hex`` for
    a key of another database than the script's; ``written``, the
    redis.log lines the undone run had written (CrossShard.written)."""
    words = [CROSS_MARKER, *(["*" * e.everything] if e.everything else [])]
    for k in e.keys:
        words.append(k.hex() if type(k) is bytes else "%d:%s" % (k[0], k[1].hex()))
    if e.written:
        words.append("#%d" % e.written)
    return Error(" ".join(words))


def eval_(ks: Keyspace, args: list[bytes]) -> object:
    """EVAL script numkeys [key [key ...]] [arg [arg ...]]"""
    engine = engine_of(ks)
    n = _numkeys(args)
    sha = engine.load(args[1])
    try:
        return engine.eval(sha, args[3 : 3 + n], args[3 + n :], args[0].lower() == b"eval_ro")
    except CrossShard as e:
        return cross_reply(e)


def evalsha(ks: Keyspace, args: list[bytes]) -> object:
    """EVALSHA sha1 numkeys [key [key ...]] [arg [arg ...]]"""
    engine = ks.scripts
    if engine is None:
        raise CommandError("ERR scripting is not available")
    if args[2] == b"1" and len(args) > 3:  # one key, the usual case
        keys = args[3:4]
        argv = args[4:]
    else:
        n = _numkeys(args)
        keys = args[3 : 3 + n]
        argv = args[3 + n :]
    sha = args[1]
    script = engine.scripts.get(sha)
    if script is None:
        sha = sha.lower()
        script = engine.scripts.get(sha)
        if script is None:
            return Error(errors.NOSCRIPT)
    if engine._vm is not engine._eval_vm:
        engine._eval_state()
    ro = len(args[0]) == 10 and args[0].lower() == b"evalsha_ro"
    try:
        return engine._invoke(sha, script[0], script[1], keys, argv, ro, True, script)
    except CrossShard as e:
        return cross_reply(e)


def eval_across(ks: Keyspace, args: list[bytes]) -> object:
    """__eval everything command user logs body numkeys key... arg... -> a
    script run by the executor of a cross-shard operation (see
    shardkv.acceptor.scripting).  ``everything``: every shard is parked and
    all their keys are here; ``command``: the client's (``evalsha_ro``...),
    read-only if ``_ro``; ``user``: the ACL rules its calls obey, empty for
    a user that may run everything; ``logs``: how many of its redis.log
    lines the run undone before this one had written (dropped here)."""
    engine = engine_of(ks)
    body = args[5]
    n = int(args[6])
    sha = engine.load(body)
    engine.everything = int(args[1])
    engine.set_user(args[3])
    engine.log_skip = engine.ran_written = int(args[4])
    try:
        return engine.eval(sha, args[7 : 7 + n], args[7 + n :], args[2].endswith(b"_ro"))
    except CrossShard as e:
        return cross_reply(e)
    finally:
        engine.everything = 0
        engine.user = None
        engine.log_skip = 0


def cjson_state(ks: Keyspace, args: list[bytes]) -> object:
    """__cjsonstate -> flushes (start shard n option...) x2: this
    shard's count of SCRIPT FLUSHes and its cjson options, for a worker
    started again (an inquiry: answered even while a script runs here)."""
    return engine_of(ks).cjson_state()


def take_effects(ks: Keyspace) -> tuple[list[tuple[int, list[bytes]]], dict[tuple[int, bytes], State]]:
    """The write commands the scripts of a cross-shard run ran, with their
    databases (to log them), and the states of the (database, key)s they
    wrote before they did (to undo them)."""
    engine = ks.scripts
    if engine is None:
        return [], {}
    effects, engine.effects = engine.effects, []
    undo, engine.effects_undo = engine.effects_undo, {}
    return effects, undo


def script_internal(ks: Keyspace, args: list[bytes]) -> object:
    """__script load body | flush [number] | flushed number | exists sha...
    | memory | kill | cjson eval|function flushes start shard option... |
    cjsonrestore state... -> the acceptor's script-cache operations on this
    shard (SCRIPT FLUSH with its number; ``flushed``: the number of the
    last flush sent before the acceptor's pipe to this worker), another
    shard's script's cjson options, and what a worker started again takes
    of them (Engine.cjson_state)."""
    engine = engine_of(ks)
    sub = args[1]
    if sub == b"load":
        return engine.load(args[2])
    if sub == b"flush":
        engine.flush(int(args[2]) if len(args) > 2 else 0)
        return "OK"
    if sub == b"flushed":
        engine.flushed(int(args[2]))
        return "OK"
    if sub == b"memory":
        return [engine.memory(), len(engine.scripts)]
    if sub == b"kill":
        engine.kill_requested = True
        return "OK"
    if sub == b"cjson":
        engine.set_cjson(args[2], int(args[3]), (int(args[4]), int(args[5])), args[6:])
        return "OK"
    if sub == b"cjsonrestore":
        engine.restore_cjson(args[2:])
        return "OK"
    raise CommandError(errors.SYNTAX)


# The commands this module runs, by name (see shardkv.worker.wiring).
HANDLERS: Handlers = {
    "eval": eval_,
    "eval_ro": eval_,
    "evalsha": evalsha,
    "evalsha_ro": evalsha,
    Verb.EVAL: eval_across,
    Verb.SCRIPT: script_internal,
    Verb.CJSON_STATE: cjson_state,
}
