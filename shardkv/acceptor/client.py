"""One client connection in the acceptor: parse, check, route, reply in order.

This is the hottest code in shardkv.  For each command, in this order
(as Redis's ``processCommand``): look it up in the command table, check
its arity, check authentication, then queue it (inside MULTI), answer it
here (``local`` commands), or send it to the shard that owns its keys.

Replies must leave in the order the commands came, even when consecutive
commands went to different shards.  :attr:`Client.pending` holds, in
command order, either the reply bytes (when the reply was known at once)
or a :class:`Slot` that a shard's reply will fill; :meth:`Client.flush`
writes the longest ready prefix.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from shardkv.acceptor import monitor, pause
from shardkv.acceptor.fanout import MERGES, Concat, Gather, merge_by_position, split_by_shard
from shardkv.acceptor.shardlink import BUSY_LINKS, MISCONF_LINKS
from shardkv.acceptor.state import REPLY_ON, REPLY_SKIP, REPLY_SKIP_NEXT, ClientState
from shardkv.protocol import commands, errors, wire
from shardkv.protocol.resp import Error, ProtocolError, RequestParser, encode, encode_command, encode_error
from shardkv.runtime.cmdstats import stat_name

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

log = logging.getLogger("shardkv.acceptor")

HEADERS = (wire.entry_header(0), wire.entry_header(wire.FLAG_RESP3))
PART_HEADERS = (wire.entry_header(wire.FLAG_PART), wire.entry_header(wire.FLAG_PART | wire.FLAG_RESP3))
# The same for each database (SELECT), by index; database 0's are the above.
_DB_HEADERS: dict[int, tuple[tuple[bytes, bytes], tuple[bytes, bytes]]] = {0: (HEADERS, PART_HEADERS)}


def db_headers(db: int) -> tuple[tuple[bytes, bytes], tuple[bytes, bytes]]:
    """The entry headers of a client in database ``db``: (plain, part), each
    indexed by RESP3 (see :mod:`shardkv.protocol.wire`)."""
    found = _DB_HEADERS.get(db)
    if found is None:
        plain = (wire.entry_header(0, db=db), wire.entry_header(wire.FLAG_RESP3, db=db))
        part = (
            wire.entry_header(wire.FLAG_PART, db=db),
            wire.entry_header(wire.FLAG_PART | wire.FLAG_RESP3, db=db),
        )
        found = _DB_HEADERS[db] = (plain, part)
    return found


_lookup = commands.lookup
_seen = commands.seen

MAX_IN_FLIGHT = 1024  # a client's commands awaiting replies before reading pauses


class _Muted:
    """A reply CLIENT REPLY OFF or SKIP dropped: ready, and empty."""

    __slots__ = ()
    data = b""


_MUTED = _Muted()


class _Pushed:
    """A Pub/Sub confirmation: CLIENT REPLY OFF or SKIP keeps it, as Redis
    sends what it writes with CLIENT_PUSHING set whatever the reply mode."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


# The commands Redis 7.0 flags allow_busy: they run while a script is busy.
_ALLOW_BUSY = frozenset(
    {"hello", "auth", "quit", "reset", "shutdown", "multi", "discard", "watch", "unwatch"}
)


def _allowed_while_busy(cmd: commands.Command, args: list[bytes]) -> bool:
    if cmd.name in _ALLOW_BUSY:
        return True
    return cmd.name in ("script", "function") and len(args) > 1 and args[1].lower() in (b"kill", b"stats")


class Slot:
    """A place in one client's reply order, filled when a reply comes."""

    __slots__ = ("client", "data")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.data: bytes | None = None

    def deliver(self, body: bytes) -> None:
        self.data = body
        client = self.client
        if not client.dirty:
            client.dirty = True
            client.server.dirty_clients.append(client)

    def deliver_piece(self, piece: bytes, last: bool) -> None:
        """A piece of a big reply (see ``P`` in shardkv.wire): written at
        once if every reply before it is out, else kept until they are."""
        client = self.client
        if client.closed:
            if last:
                self.deliver(b"")
            return
        pieces = client.pieces
        if client.pending and client.pending[0] is self and self not in pieces:
            client.write_piece(piece)
            if last:
                self.deliver(b"")
            return
        pieces.setdefault(self, []).append(piece)
        if last:
            self.deliver(b"".join(pieces.pop(self)))

    def torn(self) -> None:
        """The shard died while this reply came in pieces: if some are out,
        the connection cannot carry a whole reply any more, so it closes
        (as when a server dies mid-reply); else the error replaces it."""
        client = self.client
        if client.pieces.pop(self, None) is None and client.transport is not None and not client.closed:
            client.closed = True  # nothing more is written to it (flush drops the rest)
            client.pending.clear()
            client.transport.abort()


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


class Client(asyncio.Protocol):
    """One connection."""

    def __init__(self, server: Acceptor) -> None:
        self.server = server
        self.id = server.next_client_id()
        config = server.config
        self.parser = RequestParser(
            config["proto-max-bulk-len"], max_query_buffer=config["client-query-buffer-limit"]
        )
        self.pending: deque = deque()
        # The pieces of big replies that came before the replies ahead of
        # them were out (see Slot.deliver_piece), by slot.
        self.pieces: dict[Slot, list[bytes]] = {}
        self.dirty = False
        self.write_paused = False  # back-pressure, see pause_writing
        self.too_many_in_flight = False
        self.resp3 = False
        # The selected database, and the entry headers that carry it to the
        # shards (database 0's carry nothing: see shardkv.protocol.wire).
        self.db = 0
        self.headers = HEADERS
        self.part_headers = PART_HEADERS
        self.name = b""
        self.lib_name = b""
        self.lib_ver = b""
        # The client's mode: MULTI, subscribed, blocked... (see shardkv.acceptor.state)
        self.state = ClientState(self.parser, authenticated=not config["requirepass"])
        self.transport: asyncio.Transport | None = None
        self.closing = False  # close once pending replies are written
        self.closed = False
        self.addr = "?:0"
        self.laddr = "?:0"
        self.created = time.monotonic()
        self.last_active = self.created
        self.no_evict = False  # CLIENT NO-EVICT
        self.fd = -1
        self.last_args: list[bytes] = [b"NULL"]  # the last command run, for CLIENT LIST's cmd
        self.tracking: Any = None  # CLIENT TRACKING's state (a shardkv.acceptor.tracking.Tracking)

    def select(self, db: int) -> None:
        """Make ``db`` this client's database (SELECT, RESET)."""
        self.db = db
        self.headers, self.part_headers = db_headers(db)

    # -- connection events ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.addr = "%s:%d" % peer[:2]
        if isinstance(local, tuple):
            self.laddr = "%s:%d" % local[:2]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.fd = sock.fileno()
        self.server.client_connected(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pending.clear()
        self.server.client_disconnected(self)

    def data_received(self, data: bytes) -> None:
        server = self.server
        server.net_input_bytes += len(data)
        server.reads_processed += 1
        if self.closing:
            return
        state = self.state
        if not state.authenticated:
            self._data_received_unauthenticated(data)
            return
        try:
            batch = self.parser.feed(data)
        except ProtocolError as e:
            self.protocol_error(e)
            return
        if state.blocked_token or state.held:
            # A blocking command waits: what follows waits for it, as in Redis.
            state.hold(batch)
        else:
            self._run(batch)
        if batch:
            self.server.commands_processed += len(batch)
            self.last_active = time.monotonic()
            self.last_args = batch[-1][0]
        else:  # part of a command: still activity, for ``timeout``
            self.last_active = time.monotonic()
        pending = self.pending
        if pending:
            head = pending[0]
            if type(head) is bytes or head.data is not None:  # else nothing to write yet
                self.flush()
            if len(pending) > MAX_IN_FLIGHT:
                self._check_in_flight()

    def resume(self) -> None:
        """Run the commands held while a blocking command waited."""
        if self.state.blocked_token or self.closing or self.closed:
            return
        held = self.state.take_held()
        self._run(held)
        if self.pending:
            self.flush()

    def _run(self, batch: list) -> None:
        """Run commands in order; once one blocks, hold the rest for later.

        Most commands name one key and go to its shard; for those this loop
        does what :meth:`execute` and :meth:`send` would, inline, as long as
        nothing makes the client a special case (see :meth:`_plain`).
        """
        server = self.server
        links = server.links
        shard_of = server.shard_of
        pending = self.pending
        fast_paths = server.fast_paths
        plain = self._plain()
        header = self.headers[self.resp3]
        rest = iter(batch)
        for args, raw in rest:
            if plain and raw is not None:
                cmd = _seen(args[0])
                if cmd is not None:
                    if cmd.single_key:
                        arity = cmd.arity
                        if (len(args) == arity) if arity > 0 else (len(args) >= -arity):
                            slot = Slot(self)
                            pending.append(slot)
                            links[shard_of(args[1])].send(header, raw, slot, True)
                            continue
                    else:
                        fast = fast_paths.get(cmd.name)
                        if fast is not None and not BUSY_LINKS and fast(self, args, raw, header):
                            continue
            self.execute(args, raw)
            for link in links:  # a whole step (MSET's parts, an EXEC) is queued
                link.step_done()
            if self.closing or self.state.blocked_token:
                if not self.closing:
                    self.state.hold(rest)
                break
            plain = self._plain()
            header = self.headers[self.resp3]

    def _plain(self) -> bool:
        """Whether :meth:`_run` may send this client's single-key commands
        inline: nothing to intercept (MULTI, SUBSCRIBE, AUTH), no monitor
        to show them to, and no keys to remember (CLIENT TRACKING)."""
        state = self.state
        return (
            state.multi is None
            and not state.channels
            and not state.patterns
            and state.authenticated
            and not self.server.monitors
            and not self.server.pause_type
            and not state.reply_mode
            and self.tracking is None
        )

    def _data_received_unauthenticated(self, data: bytes) -> None:
        """Before AUTH the parser hands over one command at a time, so AUTH
        runs before the next command's header meets the smaller limits for
        unauthenticated clients (as in Redis, which parses and runs in turn)."""
        parser = self.parser
        while not self.closing:
            try:
                batch = parser.feed(data)
            except ProtocolError as e:
                self.protocol_error(e)
                return
            if not batch:
                break
            data = b""
            for args, raw in batch:
                self.execute(args, raw)
                if self.closing:
                    break
            self.server.commands_processed += len(batch)
            self.last_args = batch[-1][0]
        self.last_active = time.monotonic()
        if self.pending:
            self.flush()

    def protocol_error(self, e: ProtocolError) -> None:
        """Run the commands that came before the bad bytes, then reply with
        the error and hang up, as Redis does."""
        for args, raw in e.commands:
            self.execute(args, raw)
            if self.closing:
                break
        if not self.closing:
            if e.message:
                self.pending.append(encode_error(e.message))
            else:  # client-query-buffer-limit: Redis logs it and closes, no reply
                log.warning(
                    "Closing client that reached max query buffer length: id=%d addr=%s qbuf=%d",
                    self.id,
                    self.addr,
                    self.parser.buffered(),
                )
            self.close_after_replies()
        self.flush()

    # -- back-pressure ----------------------------------------------------------
    # A client that pipelines commands and never reads the replies must not
    # make the acceptor buffer replies without bound.  Reading from it stops
    # while either (a) the socket's write buffer is past the transport's
    # high-water mark, until it drains below the low-water mark, or (b) more
    # than MAX_IN_FLIGHT of its commands await replies, until half of them
    # have been answered.  (b) bounds the replies that can pile up behind (a):
    # those of commands already sent to the shards.

    def pause_writing(self) -> None:
        self.write_paused = True
        if not self.closing and self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if not self.closing and not self.too_many_in_flight and self.transport is not None:
            self.transport.resume_reading()

    def _check_in_flight(self) -> None:
        """Pause or resume reading by the number of replies still owed."""
        owed = len(self.pending)
        if not self.too_many_in_flight:
            if owed > MAX_IN_FLIGHT and not self.closing:
                self.too_many_in_flight = True
                self.transport.pause_reading()  # type: ignore[union-attr]
        elif owed <= MAX_IN_FLIGHT // 2:
            self.too_many_in_flight = False
            if not self.write_paused and not self.closing:
                self.transport.resume_reading()  # type: ignore[union-attr]

    # -- replies ----------------------------------------------------------------

    def reply(self, value: object) -> None:
        """Queue a reply value that is known now."""
        self.pending.append(encode(value, self.resp3))

    def reply_push(self, value: object) -> None:
        """Queue a Pub/Sub (un)subscribe confirmation: a reply that CLIENT
        REPLY OFF and SKIP do not drop."""
        data = encode(value, self.resp3)
        self.pending.append(_Pushed(data) if self.state.reply_mode else data)

    def reply_error(self, message: str) -> None:
        self.server.stats.error(message)
        self.pending.append(encode_error(message))

    def flush(self) -> None:
        """Write every reply that is ready, in command order."""
        self.dirty = False
        pending = self.pending
        if self.closed:
            pending.clear()
            return
        out = []
        kept = None
        while pending:
            item = pending[0]
            if type(item) is not bytes:
                data = item.data
                if data is None:
                    if self.pieces:  # a big reply that started to come in pieces: they go now
                        kept = self.pieces.pop(item, None)
                    break
                item = data
            out.append(item)
            pending.popleft()
        if kept:
            out.extend(kept)
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            server = self.server
            server.net_output_bytes += len(data)
            server.writes_processed += 1
            self.transport.write(data)  # type: ignore[union-attr]
            if self.too_many_in_flight:
                self._check_in_flight()
        if self.closing and not pending:
            self.transport.close()  # type: ignore[union-attr]

    def write_piece(self, piece: bytes) -> None:
        """Write a piece of a big reply whose turn it is (Slot.deliver_piece)."""
        self.server.net_output_bytes += len(piece)
        self.transport.write(piece)  # type: ignore[union-attr]

    def close_after_replies(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.pause_reading()

    def push(self, value: object) -> None:
        """Send an out-of-band message (Pub/Sub) after the replies before it."""
        self.pending.append(encode(value, self.resp3))
        self.flush()

    # -- commands ---------------------------------------------------------------

    def execute(self, args: list[bytes], raw: bytes | None) -> None:
        """Check a command in the order of Redis's ``processCommand``, then run it."""
        if self.state.reply_mode:
            self._execute_quietly(args, raw)
        else:
            self._execute(args, raw)

    def _execute_quietly(self, args: list[bytes], raw: bytes | None) -> None:
        """CLIENT REPLY OFF or SKIP: run the command, drop its replies
        (unless it was CLIENT REPLY ON)."""
        mode = self.state.reply_mode
        if mode == REPLY_SKIP_NEXT:
            mode = REPLY_SKIP
            self.state.set_reply_mode(mode)
        pending = self.pending
        first = len(pending)
        self._execute(args, raw)
        if self.state.reply_mode == mode:
            for i in range(first, len(pending)):
                if type(pending[i]) is not _Pushed:
                    pending[i] = _MUTED
            if mode == REPLY_SKIP:
                self.state.set_reply_mode(REPLY_ON)

    def _execute(self, args: list[bytes], raw: bytes | None) -> None:
        state = self.state
        cmd = _lookup(args[0])
        if cmd is None:
            self.reject(None, unknown_command(args))
            return
        arity = cmd.arity
        if (len(args) != arity) if arity > 0 else (len(args) < -arity):
            self.reject(cmd, errors.WRONG_ARITY % cmd.name)
            return
        flags = cmd.flags
        if "protected" in flags and not self._protected_allowed(cmd):
            self.reject(cmd, errors.PROTECTED_COMMAND % ("DEBUG", "enable-debug-command"))
            return
        if not state.authenticated:
            if "no_auth" not in flags:
                self.reject(cmd, errors.NOAUTH)
                return
        elif self.server.pause_type and pause.must_wait(self, cmd, args):
            pause.postpone(self, args, raw)  # CLIENT PAUSE: it runs when the pause ends
            return
        if state.multi is not None and "no_multi" in flags:
            self.reject(cmd, errors.NOT_IN_MULTI)
            return
        if self.server.oom and self._refused_at_oom(cmd):
            self.reject(cmd, errors.OOM)
            return
        if MISCONF_LINKS and self._refused_by_disk_error(cmd):
            self.reject(cmd, next(iter(MISCONF_LINKS.values())))
            return
        if state.monitoring and monitor.touches_keyspace(cmd):
            self.reject(cmd, errors.MONITOR_KEYSPACE)
            return
        server = self.server
        if BUSY_LINKS and cmd.route == "local" and not _allowed_while_busy(cmd, args):
            # A script is past busy-reply-threshold: as Redis, the commands
            # answered here get -BUSY too (those for other shards still run).
            self.reject(cmd, next(iter(BUSY_LINKS)).busy.decode("latin-1")[1:].strip())
            return
        if state.multi is not None or state.channels or state.patterns:
            if server.intercept(self, cmd, args):
                return
        self.route(cmd, args, raw)
        if server.monitors:  # shown after it ran, as Redis's call() does
            monitor.feed(self, cmd, args)
        if self.tracking is not None:
            server.wiring.after_command(self, cmd, args)

    def reject(self, cmd: commands.Command | None, message: str) -> None:
        """Refuse a command before it runs, as Redis's ``rejectCommand``:
        a transaction being queued will abort, and a refused EXEC aborts it
        now, with EXECABORT and the reason."""
        self.server.stats.rejected(None if cmd is None else cmd.name, message)
        if cmd is not None and cmd.name == "exec":
            self.server.wiring.discard_transaction(self)
            if message.startswith("ERR "):
                message = message[4:]
            self.pending.append(encode_error(errors.EXECABORT_BECAUSE % message))
            return
        self.state.reject_in_multi()
        self.pending.append(encode_error(message))

    def _refused_at_oom(self, cmd: commands.Command) -> bool:
        """Out of memory, Redis refuses a ``denyoom`` command, an EXEC whose
        queue holds one, and while MULTI queues, any command but EXEC,
        DISCARD, QUIT and RESET (queueing could use memory without end).
        Commands outside MULTI reach their shards, which refuse them there."""
        multi = self.state.multi
        if multi is None:
            return False
        if cmd.name == "exec":
            return any("denyoom" in queued.flags for queued, _ in multi)
        return cmd.name not in ("discard", "quit", "reset")

    def _refused_by_disk_error(self, cmd: commands.Command) -> bool:
        """A shard cannot persist: as Redis's ``processCommand``, refuse
        PING, and inside MULTI a write (the transaction then aborts) or an
        EXEC whose queue holds one.  A write outside MULTI goes on to its
        shard, which refuses it if that shard is the one that cannot write."""
        if cmd.name == "ping":
            return True
        multi = self.state.multi
        if multi is None:
            return False
        if cmd.name == "exec":
            return any(queued.is_write for queued, _ in multi)
        return cmd.is_write

    def _protected_allowed(self, cmd: commands.Command) -> bool:
        """``enable-debug-command``: yes, or local and a loopback client."""
        setting = self.server.config["enable-debug-command"]
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
            self.server.run_local(self, cmd, args)
        else:
            self.send_all(cmd, args)

    def send(self, shard: int, args: list[bytes], raw: bytes | None) -> None:
        """Send a command to one shard; its reply takes the next slot."""
        slot = Slot(self)
        self.pending.append(slot)
        self.server.links[shard].send(
            self.headers[self.resp3], raw if raw is not None else encode_command(args), slot
        )

    def send_keyed(self, cmd: commands.Command, args: list[bytes], raw: bytes | None) -> None:
        """A command whose keys are given by the table: one shard, or several."""
        server = self.server
        shard_of = server.shard_of
        keys = cmd.keys(args)
        if cmd.policy == "mset" and len(args) % 2 == 0:
            self.reply_error(errors.WRONG_ARITY % cmd.name)
            return
        if not keys:
            # No keys (a bad numkeys): any shard replies with the error.
            self.send(0, args, raw)
            return
        if "blocking" in cmd.flags:
            server.block(self, cmd, args, raw, keys)
            return
        if cmd.pattern_keys is not None and len(server.links) > 1:
            described = cmd.pattern_keys(args)
            if described is None or any(shard_of(k) != shard_of(keys[0]) for k in described):
                server.cross_shard(self, cmd, args, keys, everything=True)
                return
        first = shard_of(keys[0])
        for key in keys:
            if shard_of(key) != first:
                break
        else:
            self.send(first, args, raw)
            return
        if cmd.policy == "-":
            server.cross_shard(self, cmd, args, keys)
            return
        parts, positions = split_by_shard(args, cmd.first_key, cmd.step, shard_of)
        if cmd.policy == "mget":
            merge = merge_by_position(list(positions.values()), len(keys))
        else:
            merge = MERGES[cmd.policy]
        if cmd.is_write:  # all parts or none, whatever dies (see shardkv.acceptor.crossshard)
            server.atomic_fan_out(
                self, {s: [args[0], *p] for s, p in parts.items()}, self._counted(args, merge), keys
            )
            return
        self.fan_out({s: [args[0], *p] for s, p in parts.items()}, self._counted(args, merge), keys)

    def send_all(self, cmd: commands.Command, args: list[bytes]) -> None:
        """A command that runs on every shard, merged by its policy."""
        nshards = len(self.server.links)
        if cmd.name in _FLUSHES and nshards > 1:  # on every shard or none, whatever dies
            merge = self._counted(args, MERGES[cmd.policy])
            self.server.atomic_fan_out(self, {s: args for s in range(nshards)}, merge)
            return
        if cmd.name == "keys":
            self._keys(args)
            return
        self.query_all(args, self._counted(args, MERGES[cmd.policy]))

    def _keys(self, args: list[bytes]) -> None:
        """KEYS: every shard's matches, as RESP arrays it encodes itself
        (streamed when big), under one array header (see fanout.Concat)."""
        slot = Slot(self)
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

        def counted(parts: list) -> object:
            value = merge(parts)
            ns = perf_counter_ns() - start
            stats.record(stat_name(args), ns, value.message if type(value) is Error else None)
            stats.slow(args, ns // 1000, self.addr, self.name)
            return value

        return counted

    def fan_out(self, parts: dict, merge, keys: list | None = None) -> None:
        """Send one part per shard, in this one step, and merge the replies.

        ``parts`` maps shard index to the part's argument list or its
        encoded bytes; ``keys``, the command's keys, order its keyspace events.
        """
        slot = Slot(self)
        self.pending.append(slot)
        gather = Gather(slot, len(parts), merge, self.resp3, keys)
        header = self.part_headers[self.resp3]
        links = self.server.links
        for i, (shard, part) in enumerate(parts.items()):
            body = part if type(part) is bytes else encode_command(part)
            links[shard].send(header, body, gather.sink(i))

    def query_all(self, args: list[bytes], merge) -> None:
        """Ask every shard an internal question; ``merge`` builds the reply."""
        encoded = encode_command(args)
        self.fan_out({s: encoded for s in range(len(self.server.links))}, merge)
