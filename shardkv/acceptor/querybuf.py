"""Each client's query buffer as Redis would size it: what CLIENT LIST
shows (``qbuf``, ``qbuf-free``), and the cron that gives back what an idle
or quieter client no longer needs.

A client's reads go through the event loop's buffer to its parser, which
keeps only the bytes of a command not yet complete (``qbuf``).  Redis
reads into a buffer of the client's own (``c->querybuf``), and its size
shows: 16 KB (``PROTO_IOBUF_LEN``) once the client has sent anything, a
bulk's size once it sent a bulk of ``PROTO_MBULK_BIG_ARG`` (32 KB) or more,
nothing once the cron found it idle.  A :class:`QueryBuffer` keeps that
size as Redis would have it, worked out (:meth:`QueryBuffer.settle`)
when someone looks (CLIENT LIST, INFO, the cron), never on a read: from
the client's ``last_active`` (whether it read since the last look), the
parser's ``big_bulk`` (the longest big bulk since then) and what the
parser holds.

The cron (:class:`ClientsCron`) visits every client about once a second,
as Redis's ``clientsCron``, and shrinks a buffer with more than 4 KB free
(``clientsCronResizeQueryBuffer``): to what it holds when the client has
been idle for more than 2 seconds; to the peak since the last visit when
the buffer is over 32 KB and more than twice that peak.

Approximated: Redis's peak is the most a read left in its buffer; reads
here are the event loop's (up to 256 KB), not Redis's 16 KB, and are not
looked at one by one, so the peak counts the big bulks read, what the
parser holds, and the last command read.  Not modelled: a buffer that must
make room for a 16 KB read beside a partial command doubles in Redis.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shardkv.protocol.resp import PROTO_IOBUF_LEN

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor

PROTO_RESIZE_THRESHOLD = 32 * 1024  # a buffer under this is not trimmed to its peak
WASTE_MIN = 4 * 1024  # a buffer with less free is left alone
IDLE_FREE = 2  # seconds idle after which the cron frees a buffer
CLIENTS_CRON_MIN_ITERATIONS = 5  # clients visited per cron call, at least


class QueryBuffer:
    """A client's query buffer as Redis would size it: its size, its peak
    since the cron's last visit (``c->querybuf_peak``), and the read they
    count up to (the client's ``last_active`` then)."""

    __slots__ = ("size", "peak", "seen")

    def __init__(self, created: float) -> None:
        self.size = 0  # Redis's sdsempty(): nothing before the first read
        self.peak = 0
        self.seen = created

    def settle(self, client: Client) -> int:
        """Bring the size and peak up to date with the client's reads since
        the last look; the size."""
        if client.last_active != self.seen:  # it read since
            self.seen = client.last_active
            parser = client.parser
            size = max(self.size, PROTO_IOBUF_LEN)  # room for a read (readQueryFromClient)
            peak = self.peak
            big = parser.big_bulk
            if big:
                # Room for the whole bulk (processMultibulkBuffer), read into it.
                parser.big_bulk = 0
                size = max(size, big + 2)
                peak = max(peak, big + 2)
            held = parser.buffered()
            self.size = max(size, held)
            # Redis's peak is the most a read left in the buffer: here the
            # last command read stands for the reads since the last look.
            self.peak = max(peak, held, request_size(client.last_args))
        return self.size

    def resize(self, client: Client, now: float) -> None:
        """Redis's ``clientsCronResizeQueryBuffer``."""
        if not self.size and client.last_active == self.seen:
            return  # nothing held, nothing read since: nothing to give back
        size = self.settle(client)
        parser = client.parser
        held = parser.buffered()
        bulk = parser.bulk_length()
        if size - held > WASTE_MIN:
            if now - client.last_active > IDLE_FREE:
                self.size = held
            elif size > PROTO_RESIZE_THRESHOLD and size // 2 > self.peak:
                # Not below the peak, nor below the bulk being read.
                self.size = max(held, self.peak, bulk)
        # The next visit's peak starts from what is held now.
        self.peak = max(held, bulk)


def of(client: Client) -> QueryBuffer:
    """``client``'s :class:`QueryBuffer`, made at the first look (not at the
    connection, which needs none until someone looks)."""
    qb = client.query_buffer
    if qb is None:
        qb = client.query_buffer = QueryBuffer(client.created)
    return qb


def allocated(client: Client) -> int:
    """The size of ``client``'s query buffer (INFO's
    ``client_recent_max_input_buffer``)."""
    return of(client).settle(client)


def request_size(args: list[bytes]) -> int:
    """How long ``args`` is as a RESP request."""
    return len(b"*%d\r\n" % len(args)) + sum(len(a) + len(b"$%d\r\n\r\n" % len(a)) for a in args)


def sizes(client: Client, current: int = 0) -> tuple[int, int]:
    """CLIENT LIST's ``qbuf`` and ``qbuf-free``: what the buffer holds (the
    parser's partial command, and the ``current`` command's bytes when a
    client asks about itself) and the rest of it."""
    used = client.parser.buffered() + current
    size = of(client).settle(client)
    if current:  # the read that brought it is not counted yet: it needed room
        size = max(size, PROTO_IOBUF_LEN)
    return used, max(size - used, 0)


class ClientsCron:
    """Visits the clients in turn, ``hz`` times a second, each about once a
    second (at least :data:`CLIENTS_CRON_MIN_ITERATIONS` a call), as Redis's
    ``clientsCron``."""

    def __init__(self) -> None:
        self.cursor = 0

    def run(self, server: Acceptor) -> None:
        clients = server.clients
        n = len(clients)
        if not n:
            return
        count = min(n, max(n // max(server.config["hz"], 1), CLIENTS_CRON_MIN_ITERATIONS))
        ring = list(clients.values())
        start = self.cursor % n
        batch = ring[start : start + count]
        if len(batch) < count:
            batch += ring[: count - len(batch)]
        self.cursor = start + count
        now = time.monotonic()
        for client in batch:
            of(client).resize(client, now)
