"""The acceptor process: one asyncio server in front of all the shards.

It accepts every connection, parses RESP, checks each command against the
command table, answers the commands that need no data itself, and routes
the rest to the worker that owns their keys (see :mod:`shardkv.acceptor.client`).

The whole process is one thread, so each command is handled to the end,
its parts queued on every pipe it needs, before the next command starts:
the acceptor puts every command into one global order.  At the end of each
turn of the event loop, every pipe with queued commands is flushed as one
frame, and replies from a worker are written to their clients as soon as
the frame that carries them has been read.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from time import perf_counter_ns
from typing import Any

from shardkv import __version__
from shardkv.acceptor import causal, configorder, diskerrors, listeners
from shardkv.acceptor.bus import Bus, BusHandler
from shardkv.acceptor.client import Client
from shardkv.acceptor.dispatch import slot_routes
from shardkv.acceptor.holds import HoldingClient, Holds
from shardkv.acceptor.memorybudget import learn_oom_functions
from shardkv.acceptor.querybuf import ClientsCron
from shardkv.acceptor.replies import client_failed
from shardkv.acceptor.shardlink import ShardLink
from shardkv.acceptor.users import Users
from shardkv.protocol import bus, errors
from shardkv.protocol.commands import Command, error_name
from shardkv.protocol.resp import Parsed, ScriptsRead, encode_command
from shardkv.protocol.router import Router
from shardkv.protocol.wire import Verb, entry_header
from shardkv.runtime.clientcount import ClientCounts
from shardkv.runtime.cmdstats import Stats, apply_settings, stat_name
from shardkv.runtime.config import from_wire
from shardkv.runtime.exitcodes import PIPES_PER_MESSAGE
from shardkv.runtime.loadprogress import LoadProgress
from shardkv.runtime.scriptflags import ScriptFlags
from shardkv.runtime.scriptflushes import ScriptFlushes

log = logging.getLogger("shardkv.acceptor")

LocalHandler = Callable[[Client, list], None]
# A local command's shortcut from Client._run, for a plain client: returns
# False to take the ordinary path instead.
FastPath = Callable[[Client, list, bytes, bytes], bool]
# Takes a command away from normal routing (MULTI queueing, subscribed
# mode) and returns True, or leaves it and returns False.
Interceptor = Callable[[Client, Command, list], bool]


@dataclass(frozen=True, slots=True)
class Wiring:
    """Everything the acceptor calls that lives in a feature module, bound
    once by :func:`shardkv.acceptor.wiring.build`, in the order written there.

    Nothing here is filled by importing a module: the acceptor holds exactly
    what it was built with.
    """

    # The commands the acceptor answers itself (route ``local`` in the
    # command table): name -> handler, one for each such row.
    local: Mapping[str, LocalHandler]
    # Shortcuts of some of those, tried first for a plain client and no
    # busy script (EVALSHA of a cached one-shard script): name -> fast path.
    fast_paths: Mapping[str, FastPath]
    # The commands a client sent behind a fast path that made it wait
    # (Client._run): (client, the rest, the fast path's args, header) ->
    # the args of the last that started (those that did not are held).
    behind_shortcuts: Callable[[Client, Iterator[Parsed], list[bytes], bytes], list[bytes]]
    # A read of one fast path's commands alike in their first three
    # arguments (Client._run): (client, the read, its first command's
    # args, header) -> the args of the last that started, or None when
    # the first does not take it (nothing of the read taken).
    scripts_alike: Callable[[Client, ScriptsRead, list[bytes], bytes], list[bytes] | None]
    # Tried in order on a command of a client in MULTI or subscribed.
    interceptors: tuple[Interceptor, ...]
    # A command whose keys span shards and that must run atomically.
    cross_shard: Callable[[Client, Command, list, list, bool], None]
    # A write split by shard (MSET, DEL...), made atomic: (client, parts, merge, keys).
    atomic_fan_out: Callable[..., None]
    # A blocking command (BLPOP, BZPOPMIN, XREAD BLOCK...).
    block: Callable[[Client, Command, list, list], None]
    # Discards a client's transaction, when its EXEC is refused.
    discard_transaction: Callable[[Client], None]
    # Called in order: a client connected, a client went away, a worker's
    # pipe was attached (at start and after a restart), CONFIG SET applied
    # its changes, CONFIG RESETSTAT.
    on_connect: tuple[Callable[[Client], None], ...]
    on_disconnect: tuple[Callable[[Client], None], ...]
    # RESET: what a feature module clears of a client's state, beyond what
    # RESET itself does (Redis's clearClientConnectionState).
    on_reset: tuple[Callable[[Client], None], ...]
    on_attach: tuple[Callable[[Acceptor, ShardLink], None], ...]
    on_config: tuple[Callable[[Acceptor, dict[str, Any]], None], ...]
    on_resetstat: tuple[Callable[[Acceptor], None], ...]
    # Called once a second by the acceptor's cron.
    on_cron: tuple[Callable[[Acceptor], None], ...]
    # Client-side caching (shardkv.acceptor.tracking): called after each
    # command of a client with tracking on; the CLIENT subcommands it
    # answers (upper-case name -> handler); INFO's totals of its tables.
    after_command: Callable[..., None]
    # An EXEC run in order: called once it routed its commands (evictions
    # over the tracking table's limit, now its reads ran).
    exec_ran: Callable[[Client], None]
    # An EXEC run atomically: what its reads remember once it commits.
    atomic_exec_reads: Callable[[Client, list], Callable[[Any], None] | None]
    # An atomic EXEC that turns tracking on inside: the shards note what
    # changes until it is decided (the function it gives, to call then).
    expect_tracking: Callable[[Client], Callable[[], None]]
    # That EXEC committed, by its reply slot: by BCAST prefix, the keys
    # only its commands before the ON naming it wrote (that ON does not hear
    # of them), and those of its scripts while tracking was on (their reads
    # remember those alone).
    written_before_on: Callable[[Client, Any, dict[bytes, frozenset[bytes]], frozenset[bytes]], None]
    # An atomic EXEC that subscribes inside: the shards note keyspace
    # events until it is decided (the function it gives, to call then).
    expect_subscriptions: Callable[[Client, list], Callable[[], None] | None]
    # A script queued in an EXEC that runs atomically, as its executor runs
    # it (shardkv.acceptor.scripting.ExecScript.parse), or None.
    exec_script: Callable[[Client, list[bytes]], Any]
    client_subcommands: Mapping[bytes, LocalHandler]
    tracking_totals: Callable[[], tuple[int, int, int]]
    # CONFIG SET's checks (shardkv.acceptor.commands.config): the changes a
    # CONFIG SET's arguments make, or its CommandError (EXEC asks it of a
    # queued one, ahead of running it; see transactions.exec_).
    config_set_changes: Callable[[Client, list[bytes]], dict]
    # The shards' keyspace events (shardkv.acceptor.notifications): who hears
    # them, in order, and what each needs the shards to note (a class mask).
    event_listeners: tuple[Callable[[Acceptor, list, object], None], ...]
    event_masks: tuple[Callable[[Acceptor], int], ...]
    # Pub/Sub (shardkv.acceptor.pubsub): called with (client, new, gone),
    # the channels and patterns, (name, is_pattern), that this acceptor's
    # subscribers started and stopped covering on the client's (un)subscribe
    # or departure, before its confirmations are queued.
    on_subscriptions: tuple[Callable[[Client, list, list], None], ...]
    # The supervisor's ``stop <flags>``: a SIGTERM or SIGINT that saves
    # (shardkv.acceptor.durability.stop_by_signal).
    stop_by_signal: Callable[[Acceptor, str], None]
    # The bus between acceptors (K > 1, shardkv.acceptor.bus): the handler
    # of each kind of question or message (shardkv.protocol.bus.KINDS), and
    # what a (re)started acceptor does once it listens; what a restarted
    # one learns from the others before it listens (awaited).
    bus_handlers: Mapping[bytes, BusHandler] = dataclasses.field(default_factory=dict)
    on_bus_start: tuple[Callable[[Acceptor], None], ...] = ()
    on_restart: tuple[Callable[[Acceptor], Awaitable[None]], ...] = ()
    # A shard's restarted worker has loaded (the supervisor's ``reloaded``
    # line), with its index: a stop under way asks it too
    # (shardkv.acceptor.durability.on_reloaded).
    on_reloaded: tuple[Callable[[Acceptor, int], None], ...] = ()


class Acceptor:
    """The acceptor's state: config, pipes, clients and counters."""

    def __init__(self, config: dict[str, Any], wiring: Wiring) -> None:
        self.config = config
        self.wiring = wiring
        self.users = Users(config)  # the ACL users (shardkv.acceptor.users)
        self.local = wiring.local
        self.fast_paths = wiring.fast_paths
        self.behind_shortcuts = wiring.behind_shortcuts
        self.scripts_alike = wiring.scripts_alike
        self.interceptors = wiring.interceptors
        self.nshards = config["shards"]
        self.router = Router(self.nshards)
        self.shard_of = self.router.shard_of
        self.routes = slot_routes(self.router.owners)  # Client._run's (shard, header) by CRC16
        self.links = [
            ShardLink(i, self._queue_link, self.flush_dirty_clients, self.flush_clients_soon)
            for i in range(self.nshards)
        ]
        self.clients: dict[int, Client] = {}
        # Clients whose connection is gone while commands they sent wait
        # behind one of shardkv's own waits: they still run (Client.resume),
        # and the clients stay in ``clients`` until then (client_left).
        self.leaving: set[Client] = set()
        self.dirty_clients: list[Client] = []
        self.clients_flush_due = False  # see flush_clients_soon
        self.monitors: list[Client] = []  # clients in MONITOR mode, see shardkv.acceptor.monitor
        self.remote_monitors: Any = None  # other acceptors' monitors (K > 1), ditto
        self.monitor_flush_due = False
        self._links_to_flush: list[ShardLink] = []
        # What must run before this turn's batches leave (at_turn_end).
        self._turn_end: list[Callable[[], None]] = []
        # Acceptor ``index`` of ``nacceptors`` (its coordinator number): it
        # hands out the client ids index+1, index+1+K, ..., unique across
        # the acceptors; with several, ``maxclients`` is their total, counted
        # in ``client_counts`` (shared with the others, see
        # shardkv.runtime.clientcount; None when alone).
        self.index = 0
        self.nacceptors = 1
        self.client_counts: ClientCounts | None = None
        self.restarted = False  # the supervisor started it again after it died
        # SCRIPT FLUSH's numbers (shardkv.runtime.scriptflushes): the
        # supervisor's, shared by every acceptor; made here at the first
        # flush of an acceptor started without one (in-process tests).
        self.script_flushes: ScriptFlushes | None = None
        # The client whose CONFIG SET the on_config hooks apply now (None:
        # another acceptor's, passed on by the supervisor).
        self.config_client: Client | None = None
        # K > 1: its place in the supervisor's one order of CONFIG SETs
        # (shardkv.acceptor.configorder).
        self.config_order = configorder.Order()
        self._ids = itertools.count(1)
        self._control = bus.ControlReader()
        self._control_fds: list[int] = []
        # The other acceptors, through the supervisor (None when alone).
        self.bus: Bus | None = None
        self.holds: Holds | None = None  # None with one acceptor
        self.client_class: type[Client] = Client
        self.loop: asyncio.AbstractEventLoop | None = None
        # Its TCP listeners (shardkv.acceptor.listeners): the port they are
        # for (0: none; None: not bound yet, while it starts), their sockets,
        # and the asyncio servers that serve them.
        self.listen_port: int | None = None
        self.listen_sockets: list[socket.socket] = []
        self.servers: list[asyncio.AbstractServer] = []
        # K > 1: the sockets bound on another acceptor's ``listen`` question,
        # by port, until its CONFIG SET's config line uses them.
        self.listen_soon: dict[int, list[socket.socket]] = {}
        self.started = time.time()
        # Started while the workers load (``serve``'s ``loading``): until
        # every worker's pipe has come, a command without the ``loading``
        # flag gets -LOADING (Dispatch._execute) and INFO says ``loading:1``,
        # as Redis answers while it loads its data; ``loading_since``: when
        # it began (INFO's loading_start_time), or when a shard began to
        # reload (``reloading``, below).
        self.loading = False
        self.loading_since = 0
        # The shards whose worker, restarted after the start (it died),
        # reloads its data: a command for one gets -LOADING (the
        # supervisor's ``reloading`` and ``reloaded`` lines, see Dispatch).
        self.reloading: set[int] = set()
        # Each reloading shard's last save: its worker's restart, as the
        # supervisor timed it and handed it to that worker (its ``reloading``
        # line); that shard's LASTSAVE meanwhile (see durability.lastsave).
        self.reload_started: dict[int, int] = {}
        self.load_progress: LoadProgress | None = None  # the workers' (shardkv.runtime.loadprogress)
        # Whether each shard may run a script (K > 1: shardkv.runtime.scriptflags).
        self.script_flags: ScriptFlags | None = None
        self._loading_fds: list[int] = []
        self.commands_processed = 0
        self.connections_received = 0
        self.net_input_bytes = 0  # read from clients, as INFO's total_net_input_bytes
        self.net_output_bytes = 0  # written to clients
        self.reads_processed = 0  # reads from clients, as INFO's total_reads_processed
        self.writes_processed = 0
        self.rejected_connections = 0
        # The server's last save until a shard has saved: the supervisor's
        # start of the workers (see main.serve), as Redis's at startup.
        self.lastsave = int(time.time())
        self.event_loop_name = "asyncio"
        self.shutdown_requested: asyncio.Future | None = None
        # The SHUTDOWNs and signal's stops under way or decided, not failed,
        # in their order (shardkv.acceptor.durability: a shard that reloads
        # meanwhile is asked by each once it has loaded).
        self.stops_pending: list[Any] = []
        # A signal's stop that waits for a busy script (see durability.stop_by_signal).
        self.signal_stop: Any = None
        # The stops that failed or were aborted, and the SHUTDOWN ABORTs
        # waiting for them (their reply's slot and body), until no other
        # stop is undecided; whether a stop has been decided (see
        # durability._settle_failed).
        self.stops_failed: list[Any] = []
        self.aborts_waiting: list[Any] = []
        self.stop_decided = False
        self.settle_timer: Any = None  # bounds their wait for the others (shutdown-timeout)
        self.control: socket.socket | None = None  # to the supervisor
        # CLIENT PAUSE (see shardkv.acceptor.pause): its mode, end, timer, and the
        # clients it postponed, in order.  pause_type: the mode commands are
        # checked against, pause_kind's, or a stricter one's of a CLIENT PAUSE
        # that waits for the shards' scripts (pause_waits, by its client).
        self.pause_type = 0
        self.pause_kind = 0
        self.pause_waits: dict[Client, int] = {}
        # The -MISCONF text the workers were last told (shardkv.acceptor.diskerrors).
        self.misconf_told: str | None = None
        # The last ``__misconf`` sent, until every worker has answered it
        # (see shardkv.acceptor.diskerrors.when_told).
        self.misconf_telling: diskerrors.Telling | None = None
        # While writes are refused for a disk error: the functions that may
        # write (lowercase names), asked of a worker (diskerrors.changed).
        self.function_writers: frozenset[bytes] = frozenset()
        # While out of memory: the functions whose FCALL is ``denyoom``
        # (lowercase names), asked of a worker (memorybudget.learn_oom_functions).
        self.function_denyoom: frozenset[bytes] = frozenset()
        self.pause_end = 0.0
        self.pause_timer: asyncio.TimerHandle | None = None
        self.paused_clients: list[Client] = []
        # Some shard is over its maxmemory share with nothing to evict (as
        # the shards last said, after CONFIG SET and once a second).
        self.oom = False
        # The commands the acceptor answers or refuses (see shardkv.runtime.cmdstats).
        self.stats = Stats()
        # Scripts sent to run on the shards so far: run_local counts the
        # call of one it sent, and the shard counts its time and latency
        # (cmdstats.ScriptTimes).
        self.scripts_sent = 0
        # Calls that deferred their count until their outcome is known (an
        # EXEC that waits for the shards' scripts, see
        # transactions._after_scripts): run_counted leaves out the call of
        # one that deferred it meanwhile; it is counted when it runs (by
        # run_counted again) or refused (a rejected call).
        self.calls_deferred = 0
        # Cross-shard scripts that run in groups (scripting.ScriptGroups), once one has.
        self.script_groups: Any = None
        apply_settings(self.stats, {k: _show(v) for k, v in config.items()})

    def set_index(self, index: int, nacceptors: int) -> None:
        """Make this acceptor number ``index`` of ``nacceptors``; with more
        than one, commands over several shards take holds first
        (:mod:`shardkv.acceptor.holds`)."""
        self.index = index
        for link in self.links:
            link.pipe_index = index  # its pipe at each worker
        self.nacceptors = nacceptors
        self._ids = itertools.count(index + 1, nacceptors)
        if nacceptors > 1:
            self.holds = Holds(self)
            self.client_class = HoldingClient
            for link in self.links:  # replies wait for their events elsewhere (causal)
                link.remote = True
                link.ask_seen = lambda shard, waits, gate: causal.ask_seen(self, shard, waits, gate)

    def next_client_id(self) -> int:
        return next(self._ids)

    # -- end-of-turn flushing ---------------------------------------------------

    def _queue_link(self, link: ShardLink) -> None:
        if not self._links_to_flush and not self._turn_end:
            self.loop.call_soon(self._flush_links)  # type: ignore[union-attr]
        self._links_to_flush.append(link)

    def at_turn_end(self, then: Callable[[], None]) -> None:
        """Call ``then`` at the end of this loop turn, just before the
        turn's batches leave, so that what it queues leaves with them
        (cross-shard scripts of one turn run as one operation: see
        scripting.join_group)."""
        if not self._links_to_flush and not self._turn_end:
            self.loop.call_soon(self._flush_links)  # type: ignore[union-attr]
        self._turn_end.append(then)

    def _flush_links(self) -> None:
        hooks = self._turn_end
        if hooks:
            for then in hooks:  # (the links they queue leave below, with no call of their own)
                then()
            self._turn_end = []
        links, self._links_to_flush = self._links_to_flush, []
        for link in links:
            link.flush()

    def flush_clients_soon(self) -> None:
        """After a read of a shard's pipe: write the replies it made ready
        at the end of this loop turn (as the batches to the shards leave,
        see :meth:`_queue_link`), once for every pipe read in the turn.  A
        client's pipelined commands go to several shards, whose replies
        mostly come in the same turn: one write of them all, not one per
        shard's frame.  Nothing changes in what is written, nor in its
        order (each client's replies leave in its command order, see
        ``Client.flush``)."""
        if self.dirty_clients and not self.clients_flush_due:
            if self.loop is None:  # not serving (tests that drive the links by hand)
                self.flush_dirty_clients()
                return
            self.clients_flush_due = True
            self.loop.call_soon(self.flush_dirty_clients)

    def flush_dirty_clients(self) -> None:
        """Write the replies that became ready (after a shard's frame, or monitor lines)."""
        self.clients_flush_due = False
        dirty = self.dirty_clients
        if dirty:
            self.dirty_clients = []
            for client in dirty:
                try:
                    client.flush()
                except Exception:  # a bug costs this client alone, never the pipe
                    client_failed(client, "writing its replies")

    # -- clients ------------------------------------------------------------------

    def _ask_oom(self) -> None:
        sink = _OomSink(self, len(self.links))
        body = encode_command([Verb.OOM])
        for link in self.links:
            link.send(entry_header(0), body, sink)

    def client_connected(self, client: Client) -> None:
        self.connections_received += 1
        counts = self.client_counts
        if (
            len(self.clients) >= self.config["maxclients"]
            if counts is None
            else not counts.admit(self.index, len(self.clients), self.config["maxclients"])
        ):
            self.rejected_connections += 1
            client.reply_error(errors.MAX_CLIENTS)
            client.close_after_replies()
            client.flush()
            return
        self.clients[client.id] = client
        for hook in self.wiring.on_connect:
            hook(client)

    def client_disconnected(self, client: Client, leaving: bool = False) -> None:
        """``client``'s connection is gone: forgotten everywhere now, unless
        it is ``leaving`` (commands it sent still to run, see
        :meth:`Client.connection_lost`).  A leaving client stays listed and
        counted (CLIENT LIST, INFO's connected_clients, maxclients) until
        :meth:`client_left`, as Redis lists a client until it has run what
        it read: a client's absence from CLIENT LIST means that everything
        it sent has run, and what another client sends then comes after it."""
        if leaving:
            self.leaving.add(client)
            return
        self._forget(client)

    def client_left(self, client: Client) -> None:
        """A leaving client ran what it had sent (or will run no more):
        no longer listed, and forgotten everywhere now (its subscriptions,
        its wait, its MULTI...)."""
        if client in self.leaving:
            self.leaving.discard(client)
            self._forget(client)

    def _forget(self, client: Client) -> None:
        if self.clients.pop(client.id, None) is not None and self.client_counts is not None:
            self.client_counts.set(self.index, len(self.clients))
        for hook in self.wiring.on_disconnect:
            hook(client)

    def intercept(self, client: Client, cmd: Command, args: list) -> bool:
        for hook in self.interceptors:
            if hook(client, cmd, args):
                return True
        return False

    def run_local(self, client: Client, cmd: Command, args: list) -> None:
        # (every local row has a handler, see wiring.build)
        self.run_counted(client, cmd, args, self.local[cmd.name])

    def run_counted(
        self, client: Client, cmd: Command, args: list, handler: Callable[[Client, list], None]
    ) -> None:
        """Run ``handler`` as a call of the local command ``cmd`` (its
        commandstats, errorstats, latency and slow log), unless it deferred
        its count meanwhile (:attr:`calls_deferred`): then it is counted
        when its outcome is known, as Redis counts a command when it runs
        (or refuses it), not when it is read."""
        stats = self.stats
        stats.error_mark = stats.error_events
        owed = len(client.pending)
        sent = self.scripts_sent
        deferred = self.calls_deferred
        start = perf_counter_ns()
        try:
            handler(client, args)
        except Exception:
            if len(client.pending) != owed:
                raise  # it replied in part: the client is closed (Client.failed)
            # A bug met before any reply: this command's error, as a
            # worker answers for its handlers; the client goes on.
            log.exception("acceptor: command %r failed", args[0])
            client.reply_error(errors.INTERNAL % error_name(args))
        ns = perf_counter_ns() - start
        if self.calls_deferred != deferred:
            return  # counted once decided
        row = stats._row(stat_name(args))
        if stats.error_events != stats.error_mark:
            row[3] += 1
            stats.error_mark = stats.error_events
        if self.scripts_sent != sent:  # the script's run is timed, and logged, where it runs
            row[0] += 1
            return
        if cmd.name == "wait" and client.state.blocked_token:
            # It blocked: a call and its time, no latency sample and no
            # slow log entry, as Redis's call() counts a client it blocked
            # (the local command that blocks; others wait on a shard).
            stats.blocked(stat_name(args), ns)
            return
        stats.record_latency(row, ns)
        if "skip_slowlog" not in cmd.flags and cmd.name != "exec":
            stats.slow(args, ns // 1000, client.addr, client.name)

    def cross_shard(
        self, client: Client, cmd: Command, args: list, keys: list, everything: bool = False
    ) -> None:
        """Run ``cmd`` atomically over the shards of ``keys``, or over every
        shard with all their keys when ``everything`` (SORT ... BY pattern)."""
        self.wiring.cross_shard(client, cmd, args, keys, everything)

    def atomic_fan_out(
        self, client: Client, parts: dict, merge: Callable, keys: list | None = None, unanimous: bool = False
    ) -> None:
        self.wiring.atomic_fan_out(client, parts, merge, keys, unanimous=unanimous)

    def block(self, client: Client, cmd: Command, args: list, keys: list) -> None:
        self.wiring.block(client, cmd, args, keys)

    # -- running ------------------------------------------------------------------

    async def _attach(self, link: ShardLink, fd: int) -> None:
        """Start talking to a worker over the pipe end ``fd`` (now ours)."""
        sock = socket.socket(fileno=fd)
        await self.loop.create_unix_connection(link.protocol, sock=sock)  # type: ignore[union-attr]
        for hook in self.wiring.on_attach:
            hook(self, link)

    def _on_control(self, control: socket.socket) -> None:
        """Messages from the supervisor, one line each: ``pipe <shard>``, with
        the fd of the data pipe to a restarted worker as ancillary data
        (fds and their lines arrive in order), ``config <json>``, a
        CONFIG SET that another acceptor applied, or ``stop <flags>``, a
        signal's stop (see :mod:`shardkv.protocol.bus`)."""
        try:
            message, fds, _, _ = socket.recv_fds(control, 65536, 16)
        except BlockingIOError:
            return
        if not message:
            self.loop.remove_reader(control.fileno())  # type: ignore[union-attr]
            return
        self._control_fds.extend(fds)
        for kind, payload in self._control.feed(message):
            if kind == b"bus":
                if self.bus is not None:
                    try:
                        self.bus.received(payload)
                    except Exception:  # the messages after it still count
                        log.exception("acceptor: handling a message from another acceptor failed")
            elif kind == b"pipe" and self._control_fds:
                index = int(payload)
                log.info("acceptor: shard %d is back", index)
                fd = self._control_fds.pop(0)
                self.loop.create_task(self._attach(self.links[index], fd))  # type: ignore[union-attr]
            elif kind == bus.CONFIG_LINE:
                number, _, changes = payload.partition(b" ")
                self._config_from_elsewhere(int(number), from_wire(json.loads(changes)))
            elif kind == bus.ORDERED_LINE:
                configorder.ordered(self, int(payload))
            elif kind == bus.STOP_LINE:
                self.wiring.stop_by_signal(self, payload.decode("ascii", "replace"))
            elif kind == bus.RELOADING_LINE:
                # ``<shard> <saved_at>``: the restarted worker's last save,
                # its restart as the supervisor timed it (see Supervisor.saved_at).
                shard, _, saved_at = payload.partition(b" ")
                index = int(shard)
                if not self.reloading:  # INFO's loading_start_time
                    self.loading_since = int(time.time())
                self.reload_started[index] = int(saved_at) if saved_at else int(time.time())
                self.reloading.add(index)
            elif kind == bus.RELOADED_LINE:
                self.reloading.discard(int(payload))
                self.reload_started.pop(int(payload), None)
                for hook in self.wiring.on_reloaded:
                    hook(self, int(payload))

    def _config_from_elsewhere(self, number: int, changes: dict[str, Any]) -> None:
        """Another acceptor's CONFIG SET, number ``number`` in the
        supervisor's order: apply it here too, but for what this acceptor's
        own CONFIG SETs, ordered after it, set (the workers already have it)."""
        applied = configorder.from_elsewhere(self, number, changes)
        if "port" in changes and "port" not in applied:
            listeners.forget_soon(self, changes["port"])  # what its ``listen`` bound here
        if not applied:
            return
        changes = applied
        self.config.update(changes)
        for hook in self.wiring.on_config:
            if getattr(hook, "__name__", "") != "tell_supervisor":
                hook(self, changes)

    async def _shards_ready(self) -> None:
        """Wait until every worker answers, so clients never find one starting."""
        waiters = []
        for link in self.links:
            fut = self.loop.create_future()  # type: ignore[union-attr]
            link.send(entry_header(0), encode_command([Verb.PING]), _FutureSink(fut))
            waiters.append(fut)
        await asyncio.gather(*waiters)

    def _load_later(self, pipes: Connection) -> None:
        """Started while the workers load: serve -LOADING until the
        supervisor sends every worker's pipe through ``pipes`` (:meth:`_on_pipes`)."""
        sock = socket.socket(fileno=os.dup(pipes.fileno()))
        pipes.close()
        sock.setblocking(False)
        self.loading = True
        self.loading_since = int(time.time())
        self.loop.add_reader(sock.fileno(), self._on_pipes, sock)  # type: ignore[union-attr]

    def _on_pipes(self, sock: socket.socket) -> None:
        """The workers' pipe ends from the supervisor, in order (see
        ``PIPES_MESSAGE``): once all have come, attach them and serve.  An
        empty read: the supervisor stopped before the shards loaded."""
        loop = self.loop
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(sock, 1, PIPES_PER_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                message, fds = b"", []
            self._loading_fds += fds
            done = len(self._loading_fds) >= self.nshards
            if message and not done:
                continue
            loop.remove_reader(sock.fileno())  # type: ignore[union-attr]
            sock.close()
            fds, self._loading_fds = self._loading_fds, []
            if done:
                loop.create_task(self._loaded(fds))  # type: ignore[union-attr]
                return
            for fd in fds:
                os.close(fd)
            fut = self.shutdown_requested
            if fut is not None and not fut.done():
                fut.set_result(None)
            return

    async def _loaded(self, fds: list[int]) -> None:
        """Every worker has loaded: attach its pipe, then serve."""
        for link, fd in zip(self.links, fds, strict=True):
            await self._attach(link, fd)
        self.loading = False
        for link in self.links:  # what loading commands queued meanwhile (WATCH...)
            link.flush()
        self._log_serving()

    def _log_serving(self) -> None:
        """The line that says it serves (the tests wait for every acceptor's)."""
        log.info(
            "acceptor pid=%d %s (%s, shardkv %s)%s",
            os.getpid(),
            f"listening on {self.config['bind']} port {self.listen_port}"
            if self.listen_port
            else "not listening on TCP (port 0)",
            self.event_loop_name,
            __version__,
            f", acceptor {self.index} of {self.nacceptors}" if self.nacceptors > 1 else "",
        )

    async def serve(
        self, pipes: list[Connection], control: Connection | None = None, loading: Connection | None = None
    ) -> None:
        """Attach the workers' ``pipes`` (None each, with ``loading``: they
        come through it once the workers have loaded), listen to the
        supervisor's ``control`` socket, and serve."""
        self.loop = loop = asyncio.get_running_loop()
        self.shutdown_requested = loop.create_future()
        if loading is not None:
            self._load_later(loading)
        for link, conn in zip(self.links, pipes, strict=False):
            if conn is None:  # a worker still loading: the supervisor sends it later
                continue
            fd = os.dup(conn.fileno())
            conn.close()
            await self._attach(link, fd)
        if control is not None:
            sock = socket.socket(fileno=os.dup(control.fileno()))
            control.close()
            sock.setblocking(False)
            loop.add_reader(sock.fileno(), self._on_control, sock)
            self.control = sock  # CONFIG SET tells the supervisor through it
            if self.nacceptors > 1:
                self.bus = Bus(self, self.wiring.bus_handlers)
                if self.restarted:
                    for learn in self.wiring.on_restart:
                        await learn(self)
        listeners.start(self)
        if self.loading:
            log.info(
                "acceptor pid=%d answering -LOADING on port %d while the shards load",
                os.getpid(),
                self.listen_port,
            )
        else:
            self._log_serving()
        if self.bus is not None:
            for hook in self.wiring.on_bus_start:
                hook(self)
        timer = loop.create_task(self._cron())
        clients_timer = loop.create_task(self._clients_cron())
        try:
            await self.shutdown_requested
            if self.bus is not None:
                self.bus.give_up()  # (the kills' +OK waiting for the others: see Bus.give_up)
        finally:
            timer.cancel()
            clients_timer.cancel()
            for listener in self.servers:
                listener.close()

    async def _clients_cron(self) -> None:
        """``hz`` times a second: some clients' query buffers, each
        client's about once a second (see :mod:`shardkv.acceptor.querybuf`)."""
        cron = ClientsCron()
        while True:
            await asyncio.sleep(1 / max(self.config["hz"], 1))
            cron.run(self)

    async def _cron(self) -> None:
        """Once a second: close idle clients (``timeout``), and ask the
        shards whether they are out of memory (while maxmemory is set)."""
        while True:
            await asyncio.sleep(1)
            if not self.loading:  # (no shard to ask yet)
                for hook in self.wiring.on_cron:
                    hook(self)
                if self.config["maxmemory"] or self.oom:
                    self._ask_oom()
            timeout = self.config["timeout"]
            if timeout:
                limit = time.monotonic() - timeout
                for client in list(self.clients.values()):
                    if (
                        client.last_active < limit
                        and not client.state.subscribed
                        and not client.state.blocked_token
                    ):
                        client.transport.close()  # type: ignore[union-attr]


def _show(value: Any) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return str(value)


class _OomSink:
    """Collects the shards' answers to ``__oom``."""

    def __init__(self, server: Acceptor, n: int) -> None:
        self.server = server
        self.left = n
        self.any = False

    def deliver(self, body: bytes) -> None:
        self.any = self.any or body == b":1\r\n"
        self.left -= 1
        if not self.left:
            self.server.oom = self.any
            learn_oom_functions(self.server)


class _FutureSink:
    """A sink that resolves a future with the reply body."""

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut

    def deliver(self, body: bytes) -> None:
        if not self.fut.done():
            self.fut.set_result(body)
