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
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from time import perf_counter_ns
from typing import Any

from shardkv import __version__
from shardkv.acceptor.client import Client
from shardkv.acceptor.shardlink import ShardLink
from shardkv.protocol import errors
from shardkv.protocol.commands import Command
from shardkv.protocol.router import Router
from shardkv.protocol.wire import Verb
from shardkv.runtime import gctuning
from shardkv.runtime.cmdstats import Stats, apply_settings, stat_name
from shardkv.runtime.parentdeath import die_with_parent
from shardkv.runtime.proctitle import set_name

log = logging.getLogger("shardkv.acceptor")

LocalHandler = Callable[[Client, list], None]
# Commands the acceptor answers itself, by name; filled by shardkv.acceptor.local and
# the transaction and Pub/Sub modules.
LOCAL: dict[str, LocalHandler] = {}
# Hooks that may take a command away from normal routing (MULTI queueing,
# subscribed mode).  Each returns True when it handled the command.
INTERCEPTORS: list[Callable[[Client, Command, list], bool]] = []
# The handler for commands whose keys span shards and need atomicity.
CROSS_SHARD: list[Callable[[Client, Command, list, list, bool], None]] = []
# The handler of write commands split by shard (MSET, DEL...), made atomic.
ATOMIC_FAN_OUT: list[Callable[..., None]] = []
# The handler of blocking commands (BLPOP, BZPOPMIN...): shardkv.acceptor.blocking.
BLOCKING: list[Callable[[Client, Command, list, bytes | None, list], None]] = []


def local(*names: str) -> Callable[[LocalHandler], LocalHandler]:
    """Register the decorated function as the acceptor's handler of ``names``."""

    def register(fn: LocalHandler) -> LocalHandler:
        for name in names:
            LOCAL[name] = fn
        return fn

    return register


class Acceptor:
    """The acceptor's state: config, pipes, clients and counters."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.nshards = config["shards"]
        self.router = Router(self.nshards)
        self.shard_of = self.router.shard_of
        self.links = [ShardLink(i, self._queue_link, self.flush_dirty_clients) for i in range(self.nshards)]
        self.clients: dict[int, Client] = {}
        self.dirty_clients: list[Client] = []
        self.monitors: list[Client] = []  # clients in MONITOR mode, see shardkv.acceptor.monitor
        self.monitor_flush_due = False
        self._links_to_flush: list[ShardLink] = []
        self._ids = itertools.count(1)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.servers: list[asyncio.AbstractServer] = []
        self.started = time.time()
        self.commands_processed = 0
        self.connections_received = 0
        self.net_input_bytes = 0  # read from clients, as INFO's total_net_input_bytes
        self.net_output_bytes = 0  # written to clients
        self.reads_processed = 0  # reads from clients, as INFO's total_reads_processed
        self.writes_processed = 0
        self.rejected_connections = 0
        self.lastsave = int(time.time())
        self.event_loop_name = "asyncio"
        self.shutdown_requested: asyncio.Future | None = None
        self.control: socket.socket | None = None  # to the supervisor
        # CLIENT PAUSE (see shardkv.acceptor.pause): its mode, end, timer, and the
        # clients it postponed, in order.
        self.pause_type = 0
        self.pause_end = 0.0
        self.pause_timer: asyncio.TimerHandle | None = None
        self.paused_clients: list[Client] = []
        # Some shard is over its maxmemory share with nothing to evict (as
        # the shards last said, after CONFIG SET and once a second).
        self.oom = False
        # The commands the acceptor answers or refuses (see shardkv.runtime.cmdstats).
        self.stats = Stats()
        apply_settings(self.stats, {k: _show(v) for k, v in config.items()})

    def next_client_id(self) -> int:
        return next(self._ids)

    # -- end-of-turn flushing ---------------------------------------------------

    def _queue_link(self, link: ShardLink) -> None:
        if not self._links_to_flush:
            self.loop.call_soon(self._flush_links)  # type: ignore[union-attr]
        self._links_to_flush.append(link)

    def _flush_links(self) -> None:
        links, self._links_to_flush = self._links_to_flush, []
        for link in links:
            link.flush()

    def flush_dirty_clients(self) -> None:
        """Write the replies that became ready (after a shard's frame, or monitor lines)."""
        dirty = self.dirty_clients
        if dirty:
            self.dirty_clients = []
            for client in dirty:
                client.flush()

    # -- clients ------------------------------------------------------------------

    def _ask_oom(self) -> None:
        from shardkv.protocol.resp import encode_command
        from shardkv.protocol.wire import entry_header

        sink = _OomSink(self, len(self.links))
        body = encode_command([Verb.OOM])
        for link in self.links:
            link.send(entry_header(0), body, sink)

    def client_connected(self, client: Client) -> None:
        self.connections_received += 1
        if len(self.clients) >= self.config["maxclients"]:
            self.rejected_connections += 1
            client.reply_error(errors.MAX_CLIENTS)
            client.close_after_replies()
            client.flush()
            return
        self.clients[client.id] = client
        for hook in CONNECT_HOOKS:
            hook(client)

    def client_disconnected(self, client: Client) -> None:
        self.clients.pop(client.id, None)
        for hook in DISCONNECT_HOOKS:
            hook(client)

    def intercept(self, client: Client, cmd: Command, args: list) -> bool:
        for hook in INTERCEPTORS:
            if hook(client, cmd, args):
                return True
        return False

    def run_local(self, client: Client, cmd: Command, args: list) -> None:
        handler = LOCAL.get(cmd.name)
        if handler is None:
            client.reply_error(f"ERR command '{cmd.name}' is not available yet")
            return
        stats = self.stats
        errors_before = stats.error_events
        start = perf_counter_ns()
        handler(client, args)
        ns = perf_counter_ns() - start
        row = stats._row(stat_name(args))
        if stats.error_events != errors_before:
            row[3] += 1
        stats.record_latency(row, ns)
        if "skip_slowlog" not in cmd.flags and cmd.name != "exec":
            stats.slow(args, ns // 1000, client.addr, client.name)

    def cross_shard(
        self, client: Client, cmd: Command, args: list, keys: list, everything: bool = False
    ) -> None:
        """Run ``cmd`` atomically over the shards of ``keys``, or over every
        shard with all their keys when ``everything`` (SORT ... BY pattern)."""
        if not CROSS_SHARD:
            client.reply_error(f"ERR '{cmd.name}' across shards is not supported")
        else:
            CROSS_SHARD[0](client, cmd, args, keys, everything)

    def atomic_fan_out(self, client: Client, parts: dict, merge: Callable, keys: list | None = None) -> None:
        ATOMIC_FAN_OUT[0](client, parts, merge, keys)

    def block(self, client: Client, cmd: Command, args: list, raw: bytes | None, keys: list) -> None:
        if not BLOCKING:
            client.reply_error(f"ERR command '{cmd.name}' is not available yet")
        else:
            BLOCKING[0](client, cmd, args, raw, keys)

    # -- running ------------------------------------------------------------------

    async def _attach(self, link: ShardLink, fd: int) -> None:
        """Start talking to a worker over the pipe end ``fd`` (now ours)."""
        sock = socket.socket(fileno=fd)
        await self.loop.create_unix_connection(link.protocol, sock=sock)  # type: ignore[union-attr]
        for hook in ATTACH_HOOKS:
            hook(self, link)

    def _on_control(self, control: socket.socket) -> None:
        """The supervisor restarted a worker and sends us its pipe.

        One message carries the shard index as text and the pipe's fd as
        ancillary data, so the two cannot arrive apart.
        """
        try:
            message, fds, _, _ = socket.recv_fds(control, 64, 1)
        except BlockingIOError:
            return
        if not message:
            self.loop.remove_reader(control.fileno())  # type: ignore[union-attr]
            return
        index = int(message)
        log.info("acceptor: shard %d is back", index)
        self.loop.create_task(self._attach(self.links[index], fds[0]))  # type: ignore[union-attr]

    async def _shards_ready(self) -> None:
        """Wait until every worker answers, so clients never find one starting."""
        from shardkv.protocol.resp import encode_command
        from shardkv.protocol.wire import entry_header

        waiters = []
        for link in self.links:
            fut = self.loop.create_future()  # type: ignore[union-attr]
            link.send(entry_header(0), encode_command([Verb.PING]), _FutureSink(fut))
            waiters.append(fut)
        await asyncio.gather(*waiters)

    async def serve(self, pipes: list[Connection], control: Connection | None = None) -> None:
        self.loop = loop = asyncio.get_running_loop()
        self.shutdown_requested = loop.create_future()
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
        for host in self.config["bind"].split():
            server = await loop.create_server(
                lambda: Client(self), host, self.config["port"], reuse_address=True, backlog=511
            )
            self.servers.append(server)
        log.info(
            "acceptor pid=%d listening on %s port %d (%s, shardkv %s)",
            os.getpid(),
            self.config["bind"],
            self.config["port"],
            self.event_loop_name,
            __version__,
        )
        timer = loop.create_task(self._cron())
        try:
            await self.shutdown_requested
        finally:
            timer.cancel()
            for listener in self.servers:
                listener.close()

    async def _cron(self) -> None:
        """Once a second: close idle clients (``timeout``), and ask the
        shards whether they are out of memory (while maxmemory is set)."""
        while True:
            await asyncio.sleep(1)
            for hook in CRON_HOOKS:
                hook(self)
            if self.config["maxmemory"] or self.oom:
                self._ask_oom()
            timeout = self.config["timeout"]
            if timeout:
                limit = time.monotonic() - timeout
                for client in list(self.clients.values()):
                    if (
                        client.last_active < limit
                        and not client.channels
                        and not client.patterns
                        and not client.blocked_token
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


class _FutureSink:
    """A sink that resolves a future with the reply body."""

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut

    def deliver(self, body: bytes) -> None:
        if not self.fut.done():
            self.fut.set_result(body)


CONNECT_HOOKS: list[Callable[[Client], None]] = []
DISCONNECT_HOOKS: list[Callable[[Client], None]] = []
# Called when a worker's pipe is attached (at start and after a restart).
ATTACH_HOOKS: list[Callable[[Acceptor, ShardLink], None]] = []
# Called once a second by the acceptor's cron (the decisions file's everysec fsync).
CRON_HOOKS: list[Callable[[Acceptor], None]] = []


def serve(config: dict[str, Any], pipes: list[Connection], control: Connection | None = None) -> None:
    """The entry point of the acceptor process."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides
    die_with_parent()  # SIGTERM (close the port and exit) if the supervisor dies
    set_name("shardkv-accept")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Importing these registers their local commands and hooks.
    from shardkv.acceptor import (  # noqa: F401
        blocking,
        crossshard,
        durability,
        latency,
        limits,
        local,
        memory,
        notifications,
        pubsub,
        scripting,
        security,
        slowlog,
        tracking,
        transactions,
    )

    acceptor = Acceptor(config)
    crossshard.coordinator_of(acceptor)  # before any pipe: a worker's first frame is for it
    loop_factory = None
    if config.get("uvloop"):
        try:
            import uvloop

            loop_factory = uvloop.new_event_loop
            acceptor.event_loop_name = "uvloop"
        except ImportError:
            pass
    signal.signal(signal.SIGTERM, lambda *_: _stop(acceptor))
    gctuning.settle()
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(acceptor.serve(pipes, control))
    finally:
        acceptor.coordinator.close()  # type: ignore[attr-defined]


def _stop(acceptor: Acceptor) -> None:
    fut = acceptor.shutdown_requested
    if acceptor.loop is not None and fut is not None:
        acceptor.loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))  # type: ignore[func-returns-value]
    else:
        raise SystemExit(0)
