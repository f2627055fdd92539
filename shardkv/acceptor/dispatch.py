"""Dispatch: a parsed command's checks, in the order of Redis's
``processCommand``, and its routing.

For each command: look it up in the command table, check its arity,
whether it is allowed (protected, authentication, MULTI, out of memory,
a disk error, a subscribed RESP2 client, the shards still loading, a busy
script, MONITOR, and last CLIENT PAUSE), then let an interceptor take it
(MULTI queueing), answer it here (``local`` commands, bound by
:mod:`shardkv.acceptor.wiring`), or send it to the shards its keys name:
one shard, a fan-out merged by the command's policy, or an
atomic operation (:mod:`shardkv.acceptor.crossshard`).

:class:`Dispatch` is the part of :class:`shardkv.acceptor.client.Client`
that does this; the connection (reading, parsing, ordered replies,
back-pressure) is the rest of the class, in :mod:`shardkv.acceptor.client`.
Plain single-key commands skip this module: ``Client._run`` sends them
inline, the hot path.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, cast

from shardkv.acceptor import blocking, monitor, pause
from shardkv.acceptor.fanout import MERGES, Concat, Gather, merge_mget, split_by_shard
from shardkv.acceptor.replies import MUTED, MutedSlot, Pushed, Slot, Trailing, is_plain_slot
from shardkv.acceptor.scriptcache import declares_denyoom, declares_flags, declares_no_writes, script_body
from shardkv.acceptor.shardlink import BUSY_LINKS, MISCONF_LINKS, RUNNING_LINKS, busy_refusal
from shardkv.acceptor.state import (
    AFTER_SCRIPTS,
    REPLY_ON,
    REPLY_SKIP,
    REPLY_SKIP_NEXT,
    SCRIPTS_FIRST,
    ClientState,
)
from shardkv.protocol import acl, commands, errors, wire
from shardkv.protocol.command_docs import check_subcommand
from shardkv.protocol.resp import Error, encode_command, encode_error
from shardkv.protocol.router import SLOTS
from shardkv.runtime.cmdstats import known_name, stat_name

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor

HEADERS = (wire.entry_header(0), wire.entry_header(wire.FLAG_RESP3))
PART_HEADERS = (wire.entry_header(wire.FLAG_PART), wire.entry_header(wire.FLAG_PART | wire.FLAG_RESP3))
# The same for each database (SELECT), by index, then for a client with
# CLIENT NO-TOUCH on (wire.FLAG_NOTOUCH) by its database + NO_TOUCH_DBS;
# database 0's are the above.
_DB_HEADERS: dict[int, tuple[tuple[bytes, bytes], tuple[bytes, bytes]]] = {0: (HEADERS, PART_HEADERS)}
NO_TOUCH_DBS = wire.DB_MASK + 1


# What Client._run sends a plain single-key command of database 0 with, by
# RESP3, then by its key's slot: the slotted header (the worker takes the
# slot from it, see shardkv.protocol.wire).  A slotted header says database
# 0, so there is no such table for another database: a client there sends
# its database's plain header, and the worker computes the slot (a table
# per database, 256 KiB each, was a gigabyte for a client that selected
# them all).
# Indexed by the key's whole CRC16 (0 to 65535, whose low 14 bits are the
# slot: each table four times over), as ``Router.by_crc``; a slot indexes
# it too.
SLOT_HEADERS: tuple[tuple[bytes, ...], tuple[bytes, ...]] = tuple(  # type: ignore[assignment]
    tuple(wire.slotted_header(slot, resp3) for slot in range(SLOTS)) * (65536 // SLOTS)
    for resp3 in (False, True)
)


def slot_routes(owners: list[int]) -> tuple[tuple[tuple[int, bytes], ...], tuple[tuple[int, bytes], ...]]:
    """``Client._run``'s table for a plain single-key command, by RESP3,
    then by its key's whole CRC16 (or its slot), as ``Router.by_crc`` and
    :data:`SLOT_HEADERS`: its shard and its slotted header in one pair,
    one lookup and an unpacking where there were two lookups.  ``owners``:
    ``Router.owners``, the shard of each slot.  One pair per slot, the
    table four times over (16,384 pairs and 512 KiB of references by
    RESP3)."""
    return tuple(  # type: ignore[return-value]
        tuple((owners[slot], heads[slot]) for slot in range(SLOTS)) * (65536 // SLOTS)
        for heads in SLOT_HEADERS
    )


def db_headers(db: int, no_touch: bool = False) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """The entry headers of a client in database ``db``: (plain, part), each
    indexed by RESP3 (see :mod:`shardkv.protocol.wire`); ``no_touch``: of a
    client with CLIENT NO-TOUCH on."""
    index = db + NO_TOUCH_DBS if no_touch else db
    found = _DB_HEADERS.get(index)
    if found is None:
        base = wire.FLAG_NOTOUCH if no_touch else 0
        plain = (wire.entry_header(base, db=db), wire.entry_header(base | wire.FLAG_RESP3, db=db))
        part = (
            wire.entry_header(base | wire.FLAG_PART, db=db),
            wire.entry_header(base | wire.FLAG_PART | wire.FLAG_RESP3, db=db),
        )
        found = _DB_HEADERS[index] = (plain, part)
    return found


_lookup = commands.lookup

# The acceptor's own commands (``local`` rows) that wait for a running
# script by themselves, whole (None) or for the subcommands named: a bad
# EVAL or EVALSHA, EXEC, WAIT and the (un)subscribes call
# blocking.serve_after_scripts in their handlers, and so do CLIENT KILL,
# PAUSE, UNPAUSE, UNBLOCK and ACL DELUSER; a good EVAL or FCALL reaches its
# shard as the client's command, which the worker refuses at
# busy-reply-threshold.  Every other local command but the allow-busy ones
# (commands.allowed_while_busy) Redis reads only once a script ends, or at
# the threshold answers -BUSY: while a worker says a script runs
# (RUNNING_LINKS) it waits for the shards' scripts
# (Dispatch._read_after_scripts).
_WAITS_BY_ITSELF: dict[str, frozenset[bytes] | None] = {
    "eval": None,
    "evalsha": None,
    "eval_ro": None,
    "evalsha_ro": None,
    "fcall": None,
    "fcall_ro": None,
    "exec": None,
    "wait": None,
    "subscribe": None,
    "unsubscribe": None,
    "psubscribe": None,
    "punsubscribe": None,
    "ssubscribe": None,
    "sunsubscribe": None,
    "client": frozenset({b"kill", b"pause", b"unpause", b"unblock"}),
    "acl": frozenset({b"deluser"}),
}


# The commands a RESP2 client may send while subscribed (Redis 7.0's
# processCommand; SSUBSCRIBE and SUNSUBSCRIBE are Redis 7.0's too, and
# unknown here, so refused as unknown first).
# The setting that allows each command flagged ``protected`` (DEBUG, and
# MODULE's LOAD, LOADEX and UNLOAD), as Redis's processCommand checks them.
_PROTECTED_BY = {"debug": "enable-debug-command", "module": "enable-module-command"}

_ALLOWED_SUBSCRIBED = frozenset(
    {
        "subscribe",
        "unsubscribe",
        "psubscribe",
        "punsubscribe",
        "ssubscribe",
        "sunsubscribe",
        "ping",
        "quit",
        "reset",
    }
)

# Writes on every shard that run as one cross-shard operation (see shardkv.crossshard).
_FLUSHES = frozenset({"flushall", "flushdb"})


def unknown_command(args: list[bytes]) -> str:
    # Redis formats these with %.128s, so a NUL byte ends each one.
    shown = ""
    for a in args[1:]:
        if len(shown) >= 128:
            break
        shown += "'{}' ".format(a.split(b"\0", 1)[0][: 128 - len(shown)].decode("latin-1"))
    return errors.UNKNOWN_COMMAND % (args[0].split(b"\0", 1)[0][:128].decode("latin-1"), shown)


class Dispatch:
    """Checks and routes one client's commands (a part of
    :class:`shardkv.acceptor.client.Client`, which sets these attributes)."""

    server: Acceptor
    state: ClientState
    pending: deque
    resp3: bool
    headers: tuple[bytes, bytes]
    part_headers: tuple[bytes, bytes]
    addr: str
    name: bytes
    tracking: Any
    reply_error: Callable[[str], None]

    def execute(self, args: list[bytes], raw: bytes | None) -> None:
        """Check a command in the order of Redis's ``processCommand``, then run it."""
        if self.state.reply_mode:
            self._execute_quietly(args, raw)
        else:
            self._execute(args, raw)

    def _execute_quietly(self, args: list[bytes], raw: bytes | None) -> None:
        """CLIENT REPLY OFF or SKIP: run the command, drop its replies
        (unless it was CLIENT REPLY ON)."""
        state = self.state
        mode = state.reply_mode
        if mode == REPLY_SKIP_NEXT:
            mode = REPLY_SKIP
            state.set_reply_mode(mode)
        pending = self.pending
        first = len(pending) + state.flushed
        self._execute(args, raw)
        if state.reply_mode == mode:
            # (a flush while it ran, for a message it sent itself, took
            # replies off the front: its own start where they were)
            for i in range(max(first - state.flushed, 0), len(pending)):
                item = pending[i]
                if type(item) is not Pushed and type(item) is not Trailing:
                    # (EXEC's array: the messages it carries stay, see transactions.Exec.mute)
                    mute = getattr(item, "mute", None)
                    if mute is not None:
                        pending[i] = mute()
                    elif (
                        is_plain_slot(item) or getattr(item, "muted_in_place", False)
                    ) and item.data is None:
                        # (its events find it; so does a busy script's offer)
                        pending[i] = MutedSlot(item)
                    else:
                        pending[i] = MUTED
            if mode == REPLY_SKIP:
                state.set_reply_mode(REPLY_ON)

    def _execute(self, args: list[bytes], raw: bytes | None) -> None:
        state = self.state
        cmd = _lookup(args[0])
        if cmd is None:
            self.reject(None, args, unknown_command(args))
            return
        arity = cmd.arity
        if (len(args) != arity) if arity > 0 else (len(args) < -arity):
            self.reject(cmd, args, errors.WRONG_ARITY % cmd.name)
            return
        if cmd.container and len(args) > 1:
            # Redis looks a container's subcommand up with the command: an
            # unknown one or a wrong arity is refused here, MULTI or not.
            problem = check_subcommand(args)
            if problem is not None:
                self.reject(cmd, args, problem)
                return
        # (MODULE LOAD's row, not MODULE's, says protected)
        if "protected" in (commands.flags_of(cmd, args) if cmd.container else cmd.flags):
            setting = _PROTECTED_BY[cmd.name]
            if not self._protected_allowed(setting):
                self.reject(cmd, args, errors.PROTECTED_COMMAND % (cmd.name.upper(), setting))
                return
        flags = cmd.flags
        if not state.authenticated and "no_auth" not in flags:
            self.reject(cmd, args, errors.NOAUTH)
            return
        if state.multi is not None and "no_multi" in flags:
            self.reject(cmd, args, errors.NOT_IN_MULTI)
            return
        if not state.user.unlimited:  # ACL: the user's commands, keys and channels
            denied, pos = state.user.check(cmd, args)
            if denied:
                name = acl.full_name(cmd, args)
                context = "multi" if state.multi is not None else "toplevel"
                logged = name.encode() if denied == acl.DENIED_CMD else args[pos]
                self.server.users.note(
                    cast("Client", self), args, acl.LOG_REASONS[denied], context, logged, state.user.name
                )
                self.reject(cmd, args, acl.denied_message(denied, name))
                return
        if self.server.oom and self._refused_at_oom(cmd, args):
            self.reject(cmd, args, errors.OOM)
            return
        if MISCONF_LINKS and self._refused_by_disk_error(cmd, args):
            self.reject(cmd, args, next(iter(MISCONF_LINKS.values())))
            return
        if state.subscribed and not self.resp3 and cmd.name not in _ALLOWED_SUBSCRIBED:
            # A subscribed RESP2 client (it cannot even start a MULTI), before
            # the busy and pause checks, as in Redis.
            self.reject(cmd, args, errors.SUBSCRIBED_CONTEXT % stat_name(args))
            return
        server = self.server
        if server.loading and self._refused_while_loading(cmd, args):
            # The shards are still loading their data at start: as Redis,
            # every command but the ``loading`` ones gets -LOADING.
            self.reject(cmd, args, errors.LOADING)
            return
        if server.reloading and self._refused_while_reloading(cmd, args):
            # A worker restarted after a crash reloads its shard: as Redis
            # answers while it loads again, but for that shard alone.
            self.reject(cmd, args, errors.LOADING)
            return
        if BUSY_LINKS and not commands.allowed_while_busy(cmd.name, args) and (busy := busy_refusal()):
            # A script on some shard is past busy-reply-threshold: as Redis's
            # one thread, every command but the allow-busy ones gets -BUSY,
            # whatever shard its keys are on (and a MULTI being queued will
            # abort).  The hot path never comes here while a script is busy.
            self.reject(cmd, args, busy.decode("latin-1")[1:].strip())
            return
        if state.monitoring and monitor.touches_keyspace(cmd, args):
            self.reject(cmd, args, errors.MONITOR_KEYSPACE)
            return
        if server.pause_type and state.authenticated and pause.holds(cast("Client", self), cmd, args, raw):
            # CLIENT PAUSE: it runs when the pause ends.  After the busy
            # check, as in Redis: a paused write gets -BUSY while a script is busy.
            return
        if state.multi is not None or state.subscribed:
            if server.intercept(cast("Client", self), cmd, args):
                return
        since = len(self.pending) if server.monitors else None  # where its replies start
        if state.user.unlimited or (problem := state.user.sort_denied(cmd.name, args)) is None:
            if blocking.EAGER_KEYS or blocking.POP_KEYS:
                # A cross-shard BLMOVE or XREAD waits: one on a key written here tries behind it;
                # or a cross-shard pop, which a write of its key waits for.
                keys = blocking.written_keys(cmd, args, state.multi)
                at = len(self.pending)
                self.route(cmd, args, raw)
                blocking.try_at_once(cast("Client", self), cmd, keys, at)
            else:
                self.route(cmd, args, raw)
        else:  # SORT's BY or GET patterns, refused as it runs: a failed call
            server.stats.record(stat_name(args), 0, problem)
            self.pending.append(encode_error(problem))
        # Shown after it ran, as Redis's call() does (an (un)subscribe that
        # waits for the shards' scripts: by pubsub, once it has run; an
        # EXEC that waits for them: by transactions, once it has run).
        if server.monitors and state.blocked_token not in (AFTER_SCRIPTS, SCRIPTS_FIRST):
            monitor.feed(cast("Client", self), cmd, args, since=since)
        if self.tracking is not None:
            server.wiring.after_command(self, cmd, args)

    def reject(self, cmd: commands.Command | None, args: list[bytes], message: str) -> None:
        """Refuse a command before it runs, as Redis's ``rejectCommand``:
        a transaction being queued will abort, and a refused EXEC aborts it
        now, with EXECABORT and the reason, and its line goes to the
        monitors (``execCommandAbort``: they saw MULTI, so they see that the
        transaction is over).  ``rejected_calls`` counts it under the
        (sub)command Redis found, if any (``config|get``)."""
        server = self.server
        if cmd is not None and cmd.name == "exec":
            server.wiring.discard_transaction(cast("Client", self))
            if message.startswith("ERR "):
                message = message[4:]
            # errorstats counts the EXECABORT it answers, as Redis's execCommandAbort.
            server.stats.rejected("exec", errors.EXECABORT_BECAUSE % message)
            self.pending.append(encode_error(errors.EXECABORT_BECAUSE % message))
            if server.monitors:
                monitor.feed(cast("Client", self), cmd, args, since=len(self.pending) - 1)
            return
        server.stats.rejected(None if cmd is None else known_name(args), message)
        self.state.reject_in_multi()
        self.pending.append(encode_error(message))

    def _refused_at_oom(self, cmd: commands.Command, args: list[bytes]) -> bool:
        """Out of memory, Redis refuses a ``denyoom`` command (for a
        container, its subcommand's flags say: FUNCTION LOAD and RESTORE,
        XGROUP CREATE), an EXEC whose queue holds one, and while MULTI
        queues, any command but EXEC, DISCARD, QUIT and RESET (queueing
        could use memory without end).  Commands for the shards, outside
        MULTI, reach them, and they refuse them there; but a script whose
        shebang makes its EVAL ``denyoom`` is refused here, as Redis's
        ``processCommand`` refuses it: a rejected call, not a run, and so
        is an FCALL (FCALL_RO) of a function with neither ``no-writes``
        nor ``allow-oom`` (the functions a worker named, see
        :func:`shardkv.acceptor.memorybudget.learn_oom_functions`)."""
        multi = self.state.multi
        denyoom = self.server.function_denyoom
        if multi is None:
            if cmd.route == "local" and "denyoom" in commands.flags_of(cmd, args):
                return True
            return _script_denies_oom(cmd, args, denyoom)
        if cmd.name == "exec":
            return any(
                "denyoom" in commands.flags_of(queued, queued_args)
                or _script_denies_oom(queued, queued_args, denyoom)
                for queued, queued_args in multi
            )
        return cmd.name not in ("discard", "quit", "reset")

    def _refused_while_loading(self, cmd: commands.Command, args: list[bytes]) -> bool:
        """While the shards load, Redis's ``processCommand`` refuses a
        command without the ``loading`` flag (a container's subcommand's
        flags say: CONFIG GET has it, CLIENT's container row need not), and
        an EXEC whose queue holds one (``cmd_inv_flags``)."""
        multi = self.state.multi
        if multi is not None and cmd.name == "exec":
            return any(
                "loading" not in commands.flags_of(queued, queued_args) for queued, queued_args in multi
            )
        return "loading" not in commands.flags_of(cmd, args)

    def _refused_while_reloading(self, cmd: commands.Command, args: list[bytes]) -> bool:
        """A worker restarted after the start (it died) reloads its shard:
        Redis, one process, would be restarting whole, answering -LOADING to
        every command without the ``loading`` flag; here the other shards
        serve, and a command without it that may touch that shard is
        refused so (an EXEC whose queue holds one too): one whose keys are
        all on other shards runs; one that names no key (PING, SCAN, EVAL
        with none, DBSIZE...) may touch any shard, and is refused."""
        multi = self.state.multi
        if multi is not None and cmd.name == "exec":
            return any(self._touches_reloading(queued, queued_args) for queued, queued_args in multi)
        return self._touches_reloading(cmd, args)

    def _touches_reloading(self, cmd: commands.Command, args: list[bytes]) -> bool:
        if "loading" in commands.flags_of(cmd, args):
            return False
        keys = [args[1]] if cmd.single_key else cmd.keys(args)
        if not keys or cmd.route == "all":
            return True
        reloading = self.server.reloading
        return any(self.server.shard_of(key) in reloading for key in keys)

    def _refused_by_disk_error(self, cmd: commands.Command, args: list[bytes]) -> bool:
        """A shard cannot persist: as Redis's ``processCommand``, refuse
        PING, every write (inside MULTI the transaction then aborts), and an
        EXEC whose queue holds one, whatever shard the write's keys are on:
        Redis, one process, refuses them all.  Were a write to another shard
        accepted, its client could see it acknowledged while INFO still says
        ``err`` (a save that works ends on each shard at its own moment).
        A container's subcommand is a write as its own flags say (FUNCTION
        LOAD, DELETE, FLUSH and RESTORE; XGROUP CREATE, not XGROUP HELP).
        A script whose shebang does not say ``no-writes`` is a write here
        (evalGetCommandFlags), and so is an FCALL of a function without it
        (fcallGetCommandFlags; the functions that may write, as a worker
        said, see :mod:`shardkv.acceptor.diskerrors`); the shards refuse
        a script's writes too (the workers are told)."""
        if cmd.name == "ping":
            return True
        writers = self.server.function_writers
        multi = self.state.multi
        if multi is not None and cmd.name == "exec":
            return any(_writes(queued, queued_args, writers) for queued, queued_args in multi)
        return _writes(cmd, args, writers)

    def _protected_allowed(self, name: str) -> bool:
        """The setting ``name`` (``enable-debug-command``...) is yes, or
        local and this is a loopback client."""
        setting = self.server.config[name]
        if setting == "yes":
            return True
        if setting == "local":
            host = self.addr.rpartition(":")[0]
            return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
        return False

    def route(self, cmd: commands.Command, args: list[bytes], raw: bytes | None) -> None:
        """Run a checked command: here, or on the shards its keys name."""
        route = cmd.route
        if route == "shard":
            if cmd.single_key:
                self.send(self.server.shard_of(args[1]), args, raw)
            else:
                self.send_keyed(cmd, args, raw)
        elif route == "local":
            if RUNNING_LINKS and self._read_after_scripts(cmd, args):
                return
            self.server.run_local(cast("Client", self), cmd, args)
        else:
            self.send_all(cmd, args)

    def _read_after_scripts(self, cmd: commands.Command, args: list[bytes]) -> bool:
        """While a worker says a script runs, the acceptor's own command
        ``args`` waits for the shards' scripts, as Redis reads nothing then:
        run after them, or ``-BUSY`` if one passes busy-reply-threshold
        meanwhile (blocking.serve_after_scripts), counted once decided.  Not
        an allow-busy one, nor one that waits by itself
        (:data:`_WAITS_BY_ITSELF`), nor one inside EXEC (its transaction
        waited).  Whether it waits (or ran)."""
        name = cmd.name
        if self.state.in_exec or commands.allowed_while_busy(name, args):
            return False
        if name in _WAITS_BY_ITSELF:
            subs = _WAITS_BY_ITSELF[name]
            if subs is None or (len(args) > 1 and args[1].lower() in subs):
                return False
        handler = self.server.local[name]

        def after_scripts(client: Client, args: list[bytes]) -> None:
            blocking.serve_after_scripts(client, handler, args)

        self.server.run_counted(cast("Client", self), cmd, args, after_scripts)
        return True

    def send(self, shard: int, args: list[bytes], raw: bytes | None) -> None:
        """Send a command to one shard; its reply takes the next slot."""
        # While someone monitors, a slot that holds back the command's line
        # until its reply (a busy script's worker may refuse it).
        slot = monitor.LineSlot(cast("Client", self)) if self.server.monitors else Slot(cast("Client", self))
        self.pending.append(slot)
        self.server.links[shard].send(
            self.headers[self.resp3], raw if raw is not None else encode_command(args), slot
        )

    def send_keyed(self, cmd: commands.Command, args: list[bytes], raw: bytes | None) -> None:
        """A command whose keys are given by the table: one shard, or several."""
        server = self.server
        shard_of = server.shard_of
        keys = cmd.keys(args)
        if (cmd.policy == "mset" or cmd.policy == "msetnx") and len(args) % 2 == 0:
            self.reply_error(errors.WRONG_ARITY % cmd.name)
            return
        if not keys:
            # No keys (a bad numkeys): any shard replies with the error.
            self.send(0, args, raw)
            return
        if "blocking" in cmd.flags:
            server.block(cast("Client", self), cmd, args, keys)
            return
        if cmd.pattern_keys is not None and len(server.links) > 1:
            described = cmd.pattern_keys(args)
            if described is None or any(shard_of(k) != shard_of(keys[0]) for k in described):
                server.cross_shard(cast("Client", self), cmd, args, keys, everything=True)
                return
        # Each key hashed once: the shards say whether it spans several,
        # and how to split it.
        owners = [shard_of(key) for key in keys]
        first = owners[0]
        if owners.count(first) == len(owners):
            self.send(first, args, raw)
            return
        if cmd.policy == "-":
            server.cross_shard(cast("Client", self), cmd, args, keys)
            return
        parts, positions = split_by_shard(args, cmd.first_key, cmd.step, owners)
        if cmd.policy == "mget":
            merge = merge_mget(keys, list(positions.values()))
        else:
            merge = MERGES[cmd.policy]
        if cmd.is_write:  # all parts or none, whatever dies (see shardkv.acceptor.crossshard)
            server.atomic_fan_out(
                cast("Client", self),
                {s: [args[0], *p] for s, p in parts.items()},
                self._counted(args, merge),
                keys,
                unanimous=cmd.policy == "msetnx",  # a shard whose key exists undoes every part
            )
            return
        stats = server.stats
        counted = self._counted(args, merge)
        gather = self.fan_out(
            {s: [args[0], *p] for s, p in parts.items()},
            counted,
            keys,
            # Not inside EXEC: a busy script refuses the whole transaction
            # in Redis, never one of its reads (a half-refused EXEC array).
            rejected=None if self.state.in_exec else lambda error: stats.rejected(stat_name(args), error),
        )
        # A part's error (MGET's part past its room, see
        # shardkv.runtime.replyroom) is the command's: counted as it fails.
        gather.failed = lambda error: counted(error)

    def send_all(self, cmd: commands.Command, args: list[bytes]) -> None:
        """A command that runs on every shard, merged by its policy."""
        nshards = len(self.server.links)
        if cmd.name in _FLUSHES and nshards > 1:  # on every shard or none, whatever dies
            merge = self._counted(args, MERGES[cmd.policy])
            self.server.atomic_fan_out(cast("Client", self), {s: args for s in range(nshards)}, merge)
            return
        if cmd.name == "keys":
            self._keys(args)
            return
        self.query_all(args, self._counted(args, MERGES[cmd.policy]))

    def _keys(self, args: list[bytes]) -> None:
        """KEYS: every shard's matches, as RESP arrays it encodes itself
        (streamed when big), under one array header (see fanout.Concat)."""
        slot = Slot(cast("Client", self))
        self.pending.append(slot)
        counted = self._counted(args, lambda parts: parts[0])
        links = self.server.links
        concat = Concat(slot, len(links), lambda error: counted([error]))
        header = self.headers[self.resp3]
        encoded = encode_command(args)
        for shard, link in enumerate(links):
            link.send(header, encoded, concat.sink(shard))

    def _counted(self, args: list[bytes], merge):
        """``merge``, counting the command once in the acceptor's statistics,
        with its time from dispatch to the merged reply (see shardkv.runtime.cmdstats)."""
        stats = self.server.stats
        start = perf_counter_ns()

        def counted(parts: list | Error) -> object:
            value = parts if type(parts) is Error else merge(parts)
            ns = perf_counter_ns() - start
            stats.record(stat_name(args), ns, value.message if type(value) is Error else None)
            stats.slow(args, ns // 1000, self.addr, self.name)
            return value

        return counted

    def fan_out(
        self, parts: dict, merge, keys: list | None = None, rejected: Callable[[str], None] | None = None
    ) -> Gather:
        """Send one part per shard, in this one step, and merge the replies
        (the :class:`Gather`, returned).

        ``parts`` maps shard index to the part's argument list or its
        encoded bytes; ``keys``, the command's keys, order its keyspace
        events; ``rejected``, for a client's read across shards, which a
        busy script's worker may refuse: how that is counted
        (``Gather.rejected``; never one inside EXEC).  While someone
        monitors, such a read's slot holds back its line until its reply,
        as :meth:`send`'s does: none for a refused one, as in Redis.
        """
        client = cast("Client", self)
        slot = monitor.LineSlot(client) if rejected is not None and self.server.monitors else Slot(client)
        self.pending.append(slot)
        gather = Gather(slot, len(parts), merge, self.resp3, keys)
        gather.rejected = rejected
        header = self.part_headers[self.resp3]
        links = self.server.links
        for i, (shard, part) in enumerate(parts.items()):
            body = part if type(part) is bytes else encode_command(part)
            links[shard].send(header, body, gather.sink(i))
        return gather

    def query_all(self, args: list[bytes], merge, shards: list[int] | None = None) -> None:
        """Ask every shard (or those of ``shards``) an internal question;
        ``merge`` builds the reply."""
        encoded = encode_command(args)
        every = range(len(self.server.links)) if shards is None else shards
        self.fan_out({s: encoded for s in every}, merge)


def _script_denies_oom(cmd: commands.Command, args: list[bytes], function_denyoom: frozenset[bytes]) -> bool:
    """An EVAL (EVALSHA of a cached script) whose shebang makes it a
    ``denyoom`` command (see :func:`declares_denyoom`), or an FCALL (or
    FCALL_RO) of a function in ``function_denyoom`` (fcallGetCommandFlags)."""
    if cmd.name in ("fcall", "fcall_ro"):
        return len(args) > 1 and args[1].lower() in function_denyoom
    body = script_body(cmd.name, args)
    return body is not None and declares_denyoom(body)


def _writes(cmd: commands.Command, args: list[bytes], function_writers: frozenset[bytes]) -> bool:
    """Whether Redis counts ``args`` as a write: a write command (for a
    container, a write subcommand), a script whose shebang declares flags
    without ``no-writes``, or an FCALL (or FCALL_RO) of a function in
    ``function_writers``."""
    if "write" in commands.flags_of(cmd, args):
        return True
    if cmd.name in ("fcall", "fcall_ro"):
        return len(args) > 1 and args[1].lower() in function_writers
    body = script_body(cmd.name, args)
    return body is not None and declares_flags(body) and not declares_no_writes(body)
