"""MIGRATE: keys sent to another server with RESTORE, then deleted here.

``MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE] [AUTH
password] [AUTH2 username password] [KEYS key [key ...]]``, as Redis 7.0's
``migrateCommand`` (cluster.c), in three steps, none of which blocks a
worker or the acceptor's loop:

1. *dump*: one step of the acceptor's global order sends ``DUMP`` and
   ``PTTL`` of every key to the key's shard (at K > 1 under holds, see
   :mod:`shardkv.acceptor.holds`), so the values sent are one consistent
   snapshot across shards, as Redis reads them in one command.  No key
   there: ``+NOKEY``.
2. *transfer*: an asyncio task writes ``[AUTH]``, ``[SELECT db]`` and one
   ``RESTORE key ttl payload [REPLACE]`` per key to the target in one
   write, then reads one reply line for each, each read and the write
   bounded by ``timeout`` milliseconds (1000 when it is 0 or less).  The
   connection is cached for the next MIGRATE to that ``host:port``, and
   closed after 10 s unused (INFO's ``migrate_cached_sockets``), as Redis's
   ``migrateGetSocket``; a cached connection that fails before any reply
   is replaced once by a new one.
3. *delete* (unless COPY): the keys the target acknowledged are deleted in
   one atomic write fan-out (:class:`shardkv.acceptor.crossshard.FanOutWrite`,
   with ``__migdel key payload...``), all of them or none, with a ``del``
   event each.  A key is deleted only if its value is still the one sent:
   Redis blocks every client while it migrates, shardkv serves them, so a
   key written during the transfer keeps its new value (and the target has
   the old one, as if MIGRATE ... COPY had run just before that write).

Meanwhile the client's later commands wait, as behind a blocking command
(Redis runs them after MIGRATE returns), but no other client does.

Replies, as Redis: ``+OK``; ``+NOKEY``; ``-IOERR error or timeout
connecting to the client`` (the host cannot be resolved or reached in
time), ``-IOERR error or timeout writing|reading to target instance``;
the first error the target answered as ``-ERR Target instance replied
with error: ...`` (the keys it acknowledged before and after that are
still deleted, as in Redis).  Not from scripts (shardkv's scripts run in
the workers, which do no network I/O): ``This Redis command is not
allowed from script``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from shardkv.acceptor.commands.common import guard
from shardkv.acceptor.replies import Sink, Slot
from shardkv.protocol import errors, wire
from shardkv.protocol.args import parse_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import encode_command, encode_error
from shardkv.protocol.wire import Verb

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor

log = logging.getLogger("shardkv.acceptor")

MIGRATING = -10  # a client's blocked_token while its MIGRATE runs

CACHE_TTL = 10.0  # seconds a cached connection may stay unused (MIGRATE_SOCKET_CACHE_TTL)
CACHE_ITEMS = 64  # at most this many cached connections (MIGRATE_SOCKET_CACHE_ITEMS)
_NOKEY = b"+NOKEY\r\n"
_OK = b"+OK\r\n"


class _Target:
    """A connection to a target server, cached between MIGRATEs."""

    __slots__ = ("reader", "writer", "last_db", "last_use")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.last_db = -1  # the database selected there, -1: unknown
        self.last_use = time.monotonic()

    def close(self) -> None:
        self.writer.close()


def cache_of(server: Acceptor) -> dict[bytes, _Target]:
    """This acceptor's cached connections, by ``host:port``."""
    cache = getattr(server, "migrate_targets", None)
    if cache is None:
        cache = server.migrate_targets = {}  # type: ignore[attr-defined]
    return cache


def cached_sockets(server: Acceptor) -> int:
    """INFO's ``migrate_cached_sockets``."""
    return len(getattr(server, "migrate_targets", None) or ())


def close_idle(server: Acceptor) -> None:
    """Once a second (the acceptor's cron): close the connections unused
    for :data:`CACHE_TTL` seconds (Redis's ``migrateCloseTimedoutSockets``)."""
    cache = getattr(server, "migrate_targets", None)
    if not cache:
        return
    limit = time.monotonic() - CACHE_TTL
    for name, target in list(cache.items()):
        if target.last_use < limit:
            del cache[name]
            target.close()


class _IOError(Exception):
    """The transfer failed: the reply, and whether it was a timeout."""

    def __init__(self, message: str, timeout: bool) -> None:
        super().__init__(message)
        self.message = message
        self.timeout = timeout


@guard
def migrate(client: Client, args: list) -> None:
    """MIGRATE host port key|"" destination-db timeout [COPY] [REPLACE]
    [AUTH password] [AUTH2 username password] [KEYS key [key ...]]"""
    copy = replace = False
    password: bytes | None = None
    username: bytes | None = None
    keys = [args[3]]
    j = 6
    while j < len(args):
        word = args[j].lower()
        more = len(args) - 1 - j
        if word == b"copy":
            copy = True
        elif word == b"replace":
            replace = True
        elif word == b"auth":
            if not more:
                raise CommandError(errors.SYNTAX)
            j += 1
            password = args[j]
        elif word == b"auth2":
            if more < 2:
                raise CommandError(errors.SYNTAX)
            username, password = args[j + 1], args[j + 2]
            j += 2
        elif word == b"keys":
            if args[3]:
                raise CommandError(errors.MIGRATE_KEYS_NOT_EMPTY)
            keys = args[j + 1 :]
            break
        else:
            raise CommandError(errors.SYNTAX)
        j += 1
    timeout = parse_int(args[5])
    db = parse_int(args[4])
    if timeout <= 0:
        timeout = 1000
    _Migration(client, args[1], args[2], keys, db, timeout / 1000, copy, replace, username, password)


class _Dumped:
    """The sink of one ``DUMP`` or ``PTTL`` of the dump step."""

    __slots__ = ("migration", "index")

    def __init__(self, migration: _Migration, index: int) -> None:
        self.migration = migration
        self.index = index

    def deliver(self, body: bytes) -> None:
        self.migration.dumped(self.index, body)


class _Deleted(Sink):
    """The sink of the delete step's reply: MIGRATE's reply follows it."""

    __slots__ = ("migration",)

    def __init__(self, migration: _Migration) -> None:
        self.migration = migration

    def deliver(self, body: bytes) -> None:
        self.migration.finish(body if body[:1] == b"-" else None)


class _Migration:
    """One MIGRATE, from its dump to its reply."""

    def __init__(
        self,
        client: Client,
        host: bytes,
        port: bytes,
        keys: list[bytes],
        db: int,
        timeout: float,
        copy: bool,
        replace: bool,
        username: bytes | None,
        password: bytes | None,
    ) -> None:
        self.client = client
        self.server = server = client.server
        self.host = host
        self.port = port
        self.keys = keys
        self.db = db
        self.timeout = timeout
        self.copy = copy
        self.replace = replace
        self.username = username
        self.password = password
        self.source_db = client.db
        self.slot = Slot(client)
        client.pending.append(self.slot)
        self.reply: bytes = _OK
        # The client's later commands wait for the reply (not inside EXEC,
        # whose commands are all on their way already).
        self.blocks = not client.state.blocked_token and not client.state.in_exec
        if self.blocks:
            client.state.block(MIGRATING, shown=False)
        # Step 1: DUMP and PTTL of every key, in one step of the global order.
        self.values: list[Any] = [None] * (2 * len(keys))
        self.waiting = len(self.values)
        header = client.part_headers[client.resp3]
        links = server.links
        for i, key in enumerate(keys):
            link = links[server.shard_of(key)]
            link.send(header, encode_command([b"DUMP", key]), _Dumped(self, 2 * i))
            link.send(header, encode_command([b"PTTL", key]), _Dumped(self, 2 * i + 1))
        if not keys:  # KEYS with nothing after it
            self.finish(None, _NOKEY)

    def dumped(self, index: int, body: bytes) -> None:
        if body[:1] == b"-":  # the shard is down: the key counts as missing
            self.values[index] = None if index % 2 == 0 else -2
        else:
            self.values[index] = wire.decode_part(body)
        self.waiting -= 1
        if self.waiting:
            return
        found = []
        for i, key in enumerate(self.keys):
            payload, pttl = self.values[2 * i], self.values[2 * i + 1]
            if type(payload) is bytes and type(pttl) is int and pttl != -2:
                found.append((key, payload, 0 if pttl == -1 else max(pttl, 1)))
        if not found:
            self.finish(None, _NOKEY)
            return
        self.found = found
        self.server.loop.create_task(self._transfer())  # type: ignore[union-attr]

    # -- step 2: the transfer ----------------------------------------------------

    async def _transfer(self) -> None:
        acked: list[int] = []
        try:
            self.reply = await self._send(acked)
        except _IOError as e:
            self.reply = encode_error(e.message)
        except Exception:  # a bug must not leave the client waiting
            log.exception("MIGRATE failed")
            self.reply = encode_error(errors.INTERNAL % "migrate")
        if self.copy or not acked:
            self.finish(None)
            return
        # Step 3: delete what the target acknowledged, atomically.
        server = self.server
        parts: dict[int, list[bytes]] = {}
        for i in acked:
            key, payload, _ = self.found[i]
            parts.setdefault(server.shard_of(key), [Verb.MIGRATE_DEL]).extend((key, payload))
        keys = [self.found[i][0] for i in acked]
        server.wiring.atomic_fan_out(
            self.client, parts, sum, keys, slot=_Deleted(self), db=self.source_db, name=b"migrate"
        )

    async def _send(self, acked: list[int]) -> bytes:
        """Send the RESTOREs; fill ``acked`` with the indexes of the keys the
        target acknowledged; return MIGRATE's reply."""
        retry = True
        while True:
            target = await self._connect()
            try:
                return await self._exchange(target, acked)
            except _IOError as e:
                self._forget(target)
                # As Redis: a new connection once, if nothing was answered
                # and it was no timeout (a cached connection the target closed).
                if not retry or e.timeout or acked:
                    raise
                retry = False

    async def _connect(self) -> _Target:
        cache = cache_of(self.server)
        name = self.host + b":" + self.port
        target = cache.pop(name, None)  # in use: no other MIGRATE takes it meanwhile
        if target is not None:
            return target
        try:
            port = int(self.port)
        except ValueError:
            port = 0  # as Redis's atoi
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host.decode("latin-1"), port % 65536, limit=1 << 20),
                self.timeout,
            )
        except (TimeoutError, socket.gaierror, UnicodeError):
            raise _IOError(errors.MIGRATE_CONNECT, True) from None
        except OSError:
            # Redis's non-blocking connect succeeds here; its first write fails.
            raise _IOError(errors.MIGRATE_IO % "writing", False) from None
        return _Target(reader, writer)

    def _forget(self, target: _Target) -> None:
        target.close()

    def _keep(self, target: _Target) -> None:
        """Put the connection back in the cache (closing a random one when it is full)."""
        cache = cache_of(self.server)
        name = self.host + b":" + self.port
        old = cache.pop(name, None)
        if old is not None:  # another MIGRATE's, to the same target, meanwhile
            old.close()
        if len(cache) >= CACHE_ITEMS:
            cache.pop(next(iter(cache))).close()
        target.last_use = time.monotonic()
        cache[name] = target

    async def _exchange(self, target: _Target, acked: list[int]) -> bytes:
        out = bytearray()
        if self.password is not None:
            auth = (
                [b"AUTH", self.password] if self.username is None else [b"AUTH", self.username, self.password]
            )
            out += encode_command(auth)
        select = target.last_db != self.db
        if select:
            out += encode_command([b"SELECT", b"%d" % self.db])
        for key, payload, ttl in self.found:
            restore = [b"RESTORE", key, b"%d" % ttl, payload]
            if self.replace:
                restore.append(b"REPLACE")
            out += encode_command(restore)
        writer, reader = target.writer, target.reader
        try:
            writer.write(out)
            await asyncio.wait_for(writer.drain(), self.timeout)
        except TimeoutError:
            raise _IOError(errors.MIGRATE_IO % "writing", True) from None
        except OSError:
            raise _IOError(errors.MIGRATE_IO % "writing", False) from None
        first_error: bytes | None = None
        if self.password is not None:
            line = await self._line(reader)
            if line[:1] == b"-":
                first_error = line
        if select:
            line = await self._line(reader)
            if line[:1] == b"-" and first_error is None:
                first_error = line
        error: bytes | None = first_error
        for i in range(len(self.found)):
            try:
                line = await self._line(reader)
            except _IOError:
                if error is None:
                    raise  # (retried once by _send if nothing was acknowledged)
                self._forget(target)  # the target's error is the reply
                message = error[1:].rstrip(b"\r\n").decode("latin-1")
                return encode_error(errors.MIGRATE_TARGET % message)
            if first_error is not None or line[:1] == b"-":
                if error is None:
                    error = line
            else:
                acked.append(i)
        if error is not None:
            target.last_db = -1
            self._keep(target)
            message = error[1:].rstrip(b"\r\n").decode("latin-1")
            return encode_error(errors.MIGRATE_TARGET % message)
        target.last_db = self.db
        self._keep(target)
        return _OK

    async def _line(self, reader: asyncio.StreamReader) -> bytes:
        try:
            line = await asyncio.wait_for(reader.readline(), self.timeout)
        except TimeoutError:
            raise _IOError(errors.MIGRATE_IO % "reading", True) from None
        except (OSError, ValueError):
            raise _IOError(errors.MIGRATE_IO % "reading", False) from None
        if not line:
            raise _IOError(errors.MIGRATE_IO % "reading", False)
        return line

    # -- the reply -----------------------------------------------------------------

    def finish(self, error: bytes | None, reply: bytes | None = None) -> None:
        """Answer the client (the delete's error, if it failed), and let its
        later commands run."""
        if reply is None:
            reply = self.reply if error is None or self.reply[:1] == b"-" else error
        self.slot.deliver(reply)
        client = self.client
        if self.blocks and client.state.unblock(MIGRATING):
            if client.waiting():
                self.server.loop.call_soon(client.resume)  # type: ignore[union-attr]
            elif client.pending and not client.closed:
                client.flush()
