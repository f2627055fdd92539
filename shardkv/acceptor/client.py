"""One client connection in the acceptor: read, parse, ordered replies,
back-pressure.

This is the hottest code in shardkv.  Bytes come in (``data_received``);
the sans-IO :class:`~shardkv.protocol.resp.RequestParser` turns them into
commands; each command is checked and routed by the :class:`Dispatch` part
of the class (:mod:`shardkv.acceptor.dispatch`), except plain single-key
commands, which :meth:`Client._run` sends to their shard inline.

Replies must leave in the order the commands came, even when consecutive
commands went to different shards.  :attr:`Client.pending` holds, in
command order, either the reply bytes (when the reply was known at once)
or a :class:`~shardkv.acceptor.replies.Slot` that a shard's reply will
fill; :meth:`Client.flush` writes the longest ready prefix.  A client that
does not read its replies stops being read (see "back-pressure" below).
The client's mode (MULTI, subscribed, blocked...) is :attr:`Client.state`
(:mod:`shardkv.acceptor.state`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from binascii import crc_hqx
from collections import deque
from typing import TYPE_CHECKING, Any

from shardkv.acceptor.blocking import EAGER_KEYS, decided_later, lost_unwritten, tell_behind
from shardkv.acceptor.dispatch import HEADERS, PART_HEADERS, Dispatch, db_headers
from shardkv.acceptor.pause import PAUSED
from shardkv.acceptor.replies import BareSlot, Pushed, Slot
from shardkv.acceptor.shardlink import BUSY_LINKS, MISCONF_LINKS
from shardkv.acceptor.state import ClientState
from shardkv.protocol import commands, wire
from shardkv.protocol.resp import ProtocolError, RequestParser, ScriptsRead, encode, encode_error
from shardkv.protocol.router import LBRACE, key_slot

if TYPE_CHECKING:
    from collections.abc import Iterable

    from shardkv.acceptor.querybuf import QueryBuffer
    from shardkv.acceptor.server import Acceptor

log = logging.getLogger("shardkv.acceptor")

_seen = commands.seen

MAX_IN_FLIGHT = 1024  # a client's commands awaiting replies before reading pauses


class Client(Dispatch, asyncio.Protocol):
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
        users = server.users
        self.state = ClientState(self.parser, users.default_open(), users.default)
        self.transport: asyncio.Transport | None = None
        self.closing = False  # close once pending replies are written
        self.deferred_error: ProtocolError | None = None  # after the commands that wait
        self.closed = False
        self.addr = "?:0"
        self.laddr = "?:0"
        self.created = time.monotonic()
        self.last_active = self.created
        # Its query buffer as Redis would size it, worked out when CLIENT
        # LIST or the cron looks, never on a read: see querybuf.of.  (One
        # attribute: past 30, CPython 3.11 stops sharing a class's instance
        # dict keys, and every attribute read of the hot path slows down.)
        self.query_buffer: QueryBuffer | None = None
        self.no_evict = False  # CLIENT NO-EVICT
        self.fd = -1
        self.last_args: list[bytes] = [b"NULL"]  # the last command run, for CLIENT LIST's cmd
        self.tracking: Any = None  # CLIENT TRACKING's state (a shardkv.acceptor.tracking.Tracking)

    def select(self, db: int) -> None:
        """Make ``db`` this client's database (SELECT, RESET)."""
        self.db = db
        self.headers, self.part_headers = db_headers(db, self.no_touch)

    @property
    def no_touch(self) -> bool:
        """CLIENT NO-TOUCH: on while the client's entry headers carry
        ``wire.FLAG_NOTOUCH`` (no attribute of its own: see ``query_buffer``)."""
        return bool(int(self.headers[0][1:-2]) & wire.FLAG_NOTOUCH)

    def set_no_touch(self, on: bool) -> None:
        """CLIENT NO-TOUCH ON or OFF: the client's commands leave the access
        clocks of the keys they read (Redis 7.2's ``CLIENT_NO_TOUCH``).  Its
        headers say so, which also keeps it off the slotted hot path (a
        slotted header carries no flag: see shardkv.protocol.wire)."""
        self.headers, self.part_headers = db_headers(self.db, on)

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
        # The event loop made this object at the accept and calls this a
        # turn later: a CONFIG SET applied in between (another acceptor's,
        # read in the same turn) reached only the clients registered then.
        config = self.server.config
        parser = self.parser
        parser.max_bulk_len = config["proto-max-bulk-len"]
        parser.max_query_buffer = config["client-query-buffer-limit"]
        if self.server.users.default_open():
            self.state.authenticate()
        self.server.client_connected(self)

    def eof_received(self) -> None:
        """The client closed its end: the transport closes (nothing written
        after this reaches it), so what a cross-shard pop served it and is
        not out yet goes back (see :func:`lost_unwritten`)."""
        if self.transport is not None and not self.transport.get_write_buffer_size():
            lost_unwritten(self)

    def connection_lost(self, exc: Exception | None) -> None:
        failed = self.closed  # Client.failed closed it: nothing more of it runs
        self.closed = True
        lost_unwritten(self)
        _drop_unwritten(self.pending)
        # Commands it sent that wait behind one of shardkv's own waits (an
        # EXEC or a CLIENT UNBLOCK that waits for the shards, a MIGRATE, a
        # step held for the other acceptors...) still run, in order, their
        # replies dropped (see _resume_leaving): Redis, which has no such
        # wait, ran them as it read them.  Behind a wait Redis has too (a
        # blocking command, CLIENT PAUSE) Redis drops them as it frees the
        # client, and so does shardkv, once the shards say the command
        # blocks and no CLIENT UNBLOCK of it is on its way (decided_later).
        # It stays so, still listed, while its last command waits too (a
        # CLIENT UNBLOCK of its blocked command on its way, which Redis
        # answered 1 as it read it; an EXEC or a MSET still to run): once
        # it is no longer listed, all it sent has run, as in Redis.  A
        # client closed by a bug (failed), by itself (QUIT...) or by
        # another's CLIENT KILL (kill) runs nothing more.
        token = self.state.blocked_token
        leaving = (
            not failed
            and not self.closing
            and (
                (token == 0 and bool(self.state.held))
                or (token < 0 and token != PAUSED)
                or (token > 0 and decided_later(self))
            )
        )
        self.server.client_disconnected(self, leaving)

    def data_received(self, data: bytes) -> None:
        try:
            server = self.server
            server.net_input_bytes += len(data)
            server.reads_processed += 1
            if self.closing or self.deferred_error is not None:
                return
            state = self.state
            if not state.authenticated:
                if not self._data_received_unauthenticated(data):
                    return
                data = b""  # AUTH ran: the rest of this read, parsed below
            try:
                # An iterator, for a read of whole canonical commands: _run
                # unpacks each as it goes (see RequestParser.feed_lazily).
                count, named, batch = self.parser.feed_lazily(data)
            except ProtocolError as e:
                self.protocol_error(e)
                return
            if state.blocked_token or state.held:
                # A blocking command waits: what follows waits for it, as in Redis.
                state.hold(batch)
                if state.blocked_token and server.bus is not None:
                    tell_behind(self)
            elif count > 1 and (stats := server.stats).hold():
                # Their slow entries pushed at once (see shardkv.runtime.slowlogfile).
                try:
                    self._run(batch, named)
                finally:
                    stats.holding = False
                    stats.flush_held()
            else:
                self._run(batch, named)
            # (Part of a command is activity too, for ``timeout``.)
            server.commands_processed += count
            self.last_active = time.monotonic()
            pending = self.pending
            if pending:
                head = pending[0]
                if type(head) is bytes or head.data is not None:  # else nothing to write yet
                    self.flush()
                if len(pending) > MAX_IN_FLIGHT:
                    self._check_in_flight()
        except Exception:  # a bug costs this client alone (the loop would close it too)
            self.failed("running its commands")

    def waiting(self) -> bool:
        """Whether commands (or a protocol error) wait for the end of a
        blocking command or of a hold: :meth:`resume` then runs them.
        Always for a client whose connection is gone: :meth:`resume` then
        lets a leaving one go once nothing it sent is left to run."""
        return bool(self.state.held) or self.deferred_error is not None or self.closed

    def resume(self) -> None:
        """Run the commands held while a blocking command waited."""
        if self.closed:
            self._resume_leaving()
            return
        if self.state.blocked_token or self.closing:
            return
        held = self.state.take_held()
        self._run(held)
        error = self.deferred_error
        if error is not None and not self.state.blocked_token and not self.state.held:
            self.deferred_error = None
            self._hang_up(error)
            return
        if self.pending:
            self.flush()

    def _resume_leaving(self) -> None:
        """The connection is gone, but Redis had read the commands held: they
        run (their replies go nowhere), up to their end, a command that
        closes the client (QUIT...) or a wait Redis has too (a blocking
        command, CLIENT PAUSE), where Redis would have freed the client;
        then the client is forgotten (``Acceptor.client_left``).  Behind
        another of shardkv's own waits the rest waits for its end again."""
        server = self.server
        if self not in server.leaving:
            return  # forgotten already: nothing was kept to run
        state = self.state
        try:
            if not state.blocked_token and not self.closing:
                self._run(state.take_held())
        except Exception:  # a bug: nothing more of it runs, and it is forgotten
            self.failed("running its commands after it left")
            return
        token = state.blocked_token
        if (
            self.closing
            or token == PAUSED
            or (token == 0 and not state.held)
            or (token > 0 and not decided_later(self))
        ):
            server.client_left(self)

    def _run(self, batch: Iterable, named: list[bytes] | None = None) -> None:
        """Run commands in order; once one blocks, hold the rest for later.

        Most commands name one key and go to its shard; for those this loop
        does what :meth:`execute` and :meth:`send` would, inline, as long as
        nothing makes the client a special case (see :meth:`_plain`).
        ``named``: the first command's arguments when every one of
        ``batch`` has its name and number of arguments (and, of 4 or 5,
        its first three), and is canonical (see RequestParser.feed_lazily),
        else None; a read of 4 or 5 comes as a ScriptsRead.
        """
        server = self.server
        links = server.links
        pending = self.pending
        fast_paths = server.fast_paths
        eager = EAGER_KEYS  # keys whose commands take the slow path (see _plain)
        plain = self._plain()
        if named is not None and plain and not eager and self.headers is HEADERS:
            cmd = _seen(named[0])
            if cmd is not None and cmd.plain_counts[0] <= len(named) <= cmd.plain_counts[1]:
                self._run_named(batch)
                return
            if type(batch) is ScriptsRead and cmd is not None and cmd.name in fast_paths:
                # One script's EVALSHAs of one key (a read of 4 or 5
                # arguments tells its first three too): their shortcut,
                # tested once for the read (None: not taken, nothing read).
                last = server.scripts_alike(self, batch, named, self.headers[self.resp3])
                if last is not None:
                    self.last_args = last  # CLIENT LIST's cmd (see below)
                    return
        # Each one's shard and header, by its key's whole CRC16 (or its
        # slot; see dispatch.slot_routes): in database 0 the slotted header
        # of its key's slot, in another the database's plain one (a slotted
        # header means database 0, see wire.SLOTTED).
        routes = server.routes
        by_crc = routes[self.resp3]
        slotted = self.headers is HEADERS
        header = self.headers[self.resp3]
        rest = iter(batch)
        args = None
        # The plain single-key commands queued so far, by shard, for
        # ShardLink.send_slotted: ``runs[shard]`` is ``[header, raw, slot,
        # header, raw, slot, ...]`` (None while it has none), ``touched``
        # the shards with a run, in the order of their first command; each
        # run is sent before anything else runs (below, and at the end).
        # A list indexed by shard, not a dict: no method call per command;
        # made once per call, not tested per command.
        runs: list[list | None] = [None] * len(links)
        touched: list[int] = []
        # Globals and builtins the loop uses per command, as locals (a
        # LOAD_FAST, no dict-version checks).
        new_slot, crc, lbrace, size_of = BareSlot, crc_hqx, LBRACE, len
        # The last spelling looked up, its command and the argument counts
        # that make it a plain single-key one (its arity; (1, 0) for other
        # commands, and for all while the client is not plain, see _plain):
        # a pipeline repeats one, and a comparison costs less
        # than the hash of a new name.  None, which no spelling equals
        # (b"" is one: an empty name), until the first lookup and after
        # each command that took the slow path.
        name_seen: bytes | None = None
        cmd = None
        fewest, most = 1, 0
        for args, raw in rest:
            if raw is not None:  # (an inline command's is None: the slow path)
                if args[0] != name_seen:
                    name_seen = args[0]
                    cmd = _seen(name_seen)
                    # A client that is not plain gets (1, 0): whether it is
                    # is asked here, at each lookup, not per command.
                    fewest, most = cmd.plain_counts if plain and cmd is not None else (1, 0)
                if fewest <= size_of(args) <= most and (not eager or args[1] not in eager):
                    slot = new_slot()  # Slot(self), without a Python __init__ call
                    slot.client = self
                    slot.data = None
                    pending.append(slot)
                    key = args[1]  # Router.shard_of, inline, by the whole CRC16 (see Router.by_crc)
                    shard, head = by_crc[key_slot(key) if lbrace in key else crc(key, 0)]
                    if not slotted:
                        head = header
                    run = runs[shard]
                    if run is None:
                        runs[shard] = [head, raw, slot]
                        touched.append(shard)
                    else:  # three appends: no tuple made and freed, as ``+=`` would
                        run.append(head)
                        run.append(raw)
                        run.append(slot)
                    continue
                if plain and cmd is not None and not cmd.single_key:
                    if touched:
                        _send_runs(links, runs, touched)
                    fast = fast_paths.get(cmd.name)
                    if fast is not None and fast(self, args, raw, header):  # (it checks its keys' waits)
                        # An EVALSHA that may escape: what follows waits for it.
                        if self.state.blocked_token:
                            args = server.behind_shortcuts(self, rest, args, header)
                            break
                        continue
            if touched:
                _send_runs(links, runs, touched)
            self.execute(args, raw)
            # Forget the last lookup (a spelling new to the table is known
            # now: see commands.lookup), its command and counts with it.
            name_seen = cmd = None
            fewest, most = 1, 0
            for link in links:  # a whole step (MSET's parts, an EXEC) is queued
                link.step_done()
            if self.closing or self.state.blocked_token:
                if not self.closing:
                    self.state.hold(rest)
                    if server.bus is not None:
                        tell_behind(self)
                break
            plain = self._plain()
            by_crc = routes[self.resp3]
            slotted = self.headers is HEADERS
            header = self.headers[self.resp3]
        if touched:
            _send_runs(links, runs, touched)
        if args is not None:
            # CLIENT LIST's cmd: the last command that started, as Redis sets
            # c->lastcmd; those held behind a blocking one have not started.
            self.last_args = args

    def _run_named(self, batch: Iterable) -> None:
        """:meth:`_run`, for a batch of one plain single-key command's
        name, each with a number of arguments its arity allows, of a
        plain client in database 0 while no key is waited on
        (``EAGER_KEYS``): the loop's plain path without its tests per
        command (an encoding, the name, the argument count, the key, the
        database), which the parser's and _run's tests once per batch
        answer for every command alike.  (A read of one name is what a
        pipeline mostly sends.)"""
        server = self.server
        links = server.links
        pending = self.pending
        by_crc = server.routes[self.resp3]  # (database 0: slotted headers alone)
        runs: list[list | None] = [None] * len(links)
        touched: list[int] = []
        new_slot, crc, lbrace = BareSlot, crc_hqx, LBRACE
        args = None
        for args, raw in batch:
            slot = new_slot()  # Slot(self), without a Python __init__ call
            slot.client = self
            slot.data = None
            pending.append(slot)
            key = args[1]
            shard, head = by_crc[key_slot(key) if lbrace in key else crc(key, 0)]
            run = runs[shard]
            if run is None:
                runs[shard] = [head, raw, slot]
                touched.append(shard)
            else:
                run.append(head)
                run.append(raw)
                run.append(slot)
        _send_runs(links, runs, touched)
        # CLIENT LIST's cmd (see _run).
        self.last_args = args  # type: ignore[assignment]

    def _plain(self) -> bool:
        """Whether :meth:`_run` may send this client's single-key commands
        inline: nothing to intercept (MULTI, SUBSCRIBE, AUTH), a user that may
        run everything (no ACL check), no monitor
        to show them to, no keys to remember (CLIENT TRACKING), no
        script past busy-reply-threshold anywhere (every command then gets
        ``-BUSY``, see :meth:`Dispatch._execute`), and no shard that cannot
        persist (every write then gets ``-MISCONF``), nor the shards still
        loading at start (every command but the ``loading`` ones then gets
        ``-LOADING``), nor one reloading after its worker's restart (the
        commands for it then get ``-LOADING``), nor while a shard is over
        maxmemory (``oom``: an EVALSHA of a script whose shebang makes it
        ``denyoom`` is then a rejected call, refused before it runs, see
        Dispatch._refused_at_oom, which its shortcut would skip).  A command naming a
        key that a cross-shard BLMOVE or XREAD of this acceptor waits on
        takes the slow path all the same (:meth:`_run` checks its key), as
        its write makes that wait try at once (see
        :func:`shardkv.acceptor.blocking.try_at_once`)."""
        state = self.state
        return (
            not BUSY_LINKS
            and not self.server.loading
            and not self.server.reloading
            and not self.server.oom
            and not MISCONF_LINKS
            and state.multi is None
            and not state.channels
            and not state.patterns
            and not state.shard_channels
            and state.authenticated
            and state.user.unlimited
            and not self.server.monitors
            and not self.server.pause_type
            and not state.reply_mode
            and self.tracking is None
        )

    def _data_received_unauthenticated(self, data: bytes) -> bool:
        """Before AUTH the parser hands over one command at a time, so AUTH
        runs before the next command's header meets the smaller limits for
        unauthenticated clients (as in Redis, which parses and runs in turn).

        True when a command authenticated the client with more of this read
        to parse: that rest is an authenticated client's, for
        :meth:`_run` (a blocking command then holds the commands behind it,
        and CLIENT LIST's ``cmd`` names the last command that started)."""
        parser = self.parser
        state = self.state
        while not self.closing:
            try:
                batch = parser.feed(data)
            except ProtocolError as e:
                self.protocol_error(e)
                return False
            if not batch:
                break
            data = b""
            for args, raw in batch:
                self.execute(args, raw)
                self.last_args = args
                if self.closing:
                    break
            self.server.commands_processed += len(batch)
            if state.authenticated and not self.closing:
                return True
        self.last_active = time.monotonic()
        if self.pending:
            self.flush()
        return False

    def protocol_error(self, e: ProtocolError) -> None:
        """Run the commands that came before the bad bytes, then reply with
        the error and hang up, as Redis does.

        If a command waits (a blocking command, or with several acceptors a
        step holding its shards), the commands behind it wait too, and the
        error comes after them: Redis reads no further while a client is
        blocked, and meets the bad bytes only once the wait is over.
        """
        state = self.state
        if state.blocked_token or state.held:
            state.hold(e.commands)
        else:
            self._run(e.commands)
        if state.blocked_token or state.held:
            self.deferred_error = e
            e.commands = []
            if self.transport is not None:
                self.transport.pause_reading()
            return
        self._hang_up(e)

    def _hang_up(self, e: ProtocolError) -> None:
        """Reply with a protocol error (its commands have run) and close."""
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
        self.pending.append(Pushed(data) if self.state.reply_mode else data)

    def reply_error(self, message: str) -> None:
        self.server.stats.error(message)
        self.pending.append(encode_error(message))

    def flush(self) -> None:
        """Write every reply that is ready, in command order."""
        self.dirty = False
        pending = self.pending
        if self.closed:
            if pending:
                _drop_unwritten(pending)
            return
        # The ready prefix, taken off below.  Most items are slots, whose
        # ``data`` is read with no test of their type, all of them in one
        # comprehension; ``all`` (a C loop) says whether every one is
        # ready, else the first not ready (None) ends the prefix.  (An
        # empty reply is false too, and ready.)  Reply bytes queued as they
        # are (no ``data``) take the loop that tests each item.
        if pending and type(pending[0]) is not bytes:
            try:
                out: list = [item.data for item in pending]  # bytes, or None where owed
            except AttributeError:  # reply bytes behind slots
                out = _ready(pending)
            else:
                if not all(out):
                    try:
                        del out[out.index(None) :]
                    except ValueError:  # no None: empty replies, ready
                        pass
        else:
            out = _ready(pending)
        kept = None
        self.state.took_replies(len(out))
        if len(out) == len(pending):
            pending.clear()
        else:
            if self.pieces:  # a big reply that started to come in pieces: they go now
                kept = self.pieces.pop(pending[len(out)], None)
            popleft = pending.popleft
            for _ in range(len(out)):
                popleft()
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
        try:
            self.pending.append(encode(value, self.resp3))
            self.flush()
        except Exception:
            self.failed("pushing a message to it")

    def failed(self, doing: str) -> None:
        """An unexpected exception (a bug) while ``doing`` something for
        this client, being handled now: log it and close this client alone,
        at once, as Redis frees a client it cannot serve.  Whatever it was
        owed is dropped: its reply order can no longer be trusted.  The
        pipes to the shards, and every other client, go on."""
        log.exception(
            "Closing client id=%d addr=%s name=%s after an internal error while %s",
            self.id,
            self.addr,
            self.name.decode("latin-1"),
            doing,
        )
        if self.closed:
            self.server.client_left(self)  # if it was leaving: nothing more of it runs
            return
        self.closed = True  # nothing more is written to it (flush drops the rest)
        self.pending.clear()
        self.pieces.clear()
        if self.transport is not None:
            self.transport.abort()  # connection_lost follows, and with it the usual clean-up

    def failed_at(self, place: object, doing: str) -> None:
        """As :meth:`failed`, for a bug that leaves one command of this
        client with no reply (``place``, its reply's slot in
        :attr:`pending`) while those before it are whole: their replies
        are written first (once each is in), and then the connection
        closes in ``place``'s place, as Redis closes a client after its
        reply (CLIENT_CLOSE_AFTER_REPLY): Redis wrote each of those
        replies as its command ended, before anything went wrong.  What
        it sent after runs no more (as after QUIT), and the replies owed
        to it are dropped.  A ``place`` not in :attr:`pending` (its reply
        order can no longer be trusted) closes it at once.  A client
        closing already (a QUIT or bad bytes after ``place``) is closed so
        too: what made it close came after ``place``, and is dropped with
        the rest; one killed (CLIENT KILL) has its transport aborted, and
        what is written to it goes nowhere."""
        pending = self.pending
        if self.closed or not any(item is place for item in pending):
            self.failed(doing)
            return
        log.exception(
            "Closing client id=%d addr=%s name=%s, once the replies before it are written, "
            "after an internal error while %s",
            self.id,
            self.addr,
            self.name.decode("latin-1"),
            doing,
        )
        while pending.pop() is not place:
            pass
        self.close_after_replies()
        if not self.dirty:  # (flush closes it once what is before is out)
            self.dirty = True
            self.server.dirty_clients.append(self)

    def kill(self) -> None:
        """Close this client for another client's CLIENT KILL, ACL DELUSER...:
        as Redis frees it, nothing more of what it sent runs, and one whose
        connection is gone already (leaving) is forgotten now."""
        if self.closed:
            self.server.client_left(self)
            return
        self.closing = True  # nothing held runs (resume), and it does not leave (connection_lost)
        lost_unwritten(self)  # (its output is discarded from now on)
        if self.transport is not None:
            # Redis discards a killed client's output: close() would wait for
            # a peer that reads nothing, its slot held until it does.
            self.transport.abort()


def _send_runs(links: list, runs: list, touched: list[int]) -> None:
    """Hand each shard its run of plain commands (see Client._run), in the
    order of their first commands, and forget them: ``runs`` is left all
    None and ``touched`` empty, for the next runs."""
    for shard in touched:
        run = runs[shard]
        runs[shard] = None
        links[shard].send_slotted(run)
    touched.clear()


def _ready(pending: deque) -> list[bytes]:
    """The replies of ``pending``'s ready prefix (see Client.flush)."""
    out = []
    for item in pending:
        if type(item) is not bytes:
            item = item.data
            if item is None:
                break
        out.append(item)
    return out


def _drop_unwritten(pending: deque) -> None:
    """The replies of a client whose connection is gone go nowhere: all
    dropped, but for those that stay until they come (``stays_when_gone``:
    a held PUBLISH, which goes once the replies ahead of it came, the read
    of its ``data`` here, as they come, releasing it; see
    pubsub._HeldPublish)."""
    stays = [
        item
        for item in pending
        if type(item) is not bytes and getattr(item, "stays_when_gone", False) and item.data is None
    ]
    pending.clear()
    if stays:
        pending.extend(stays)
