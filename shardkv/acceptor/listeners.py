"""CONFIG SET port: every acceptor listens on the new port instead.

As Redis's ``updatePort`` (``changeListenPort``), the new sockets are bound
before the old ones close, and a port that cannot be bound (another
process listens there) makes the whole CONFIG SET fail with Redis's
error, changing nothing: the acceptor that runs the CONFIG SET binds the
new port (:func:`bind_for_set`) before it applies any parameter.  Then the
``on_config`` hook (:func:`on_config`) serves the new sockets and closes
the old listeners, here and, through the supervisor's ``config`` line, in
every other acceptor, which binds the port itself (with ``SO_REUSEPORT``,
as at start; the supervisor starts a restarted acceptor on the new port).
Port 0 stops listening on TCP, as in Redis.
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

log = logging.getLogger("shardkv.acceptor")

BACKLOG = 511


def listening_port(server: Acceptor) -> int:
    """The port this acceptor listens on now (0: none), as its sockets say
    (its config may hold a CONFIG SET's new port already)."""
    for listener in server.servers:
        for sock in getattr(listener, "sockets", ()):  # an asyncio.Server's
            return sock.getsockname()[1]
    return 0


def bind(server: Acceptor, port: int) -> list[socket.socket]:
    """Listening sockets on ``port`` at every ``bind`` address (none for
    port 0); raises OSError, with none left open, if one cannot be bound."""
    made: list[socket.socket] = []
    if not port:
        return made
    try:
        for host in server.config["bind"].split():
            for family, kind, proto, _, addr in socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            ):
                sock = socket.socket(family, kind, proto)
                made.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if server.nacceptors > 1:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(addr)
                sock.listen(BACKLOG)
                sock.setblocking(False)
    except OSError:
        for sock in made:
            sock.close()
        raise
    return made


def bind_for_set(server: Acceptor, changes: dict) -> None:
    """CONFIG SET's check of a new port, before anything is applied: bind
    it, or refuse the whole CONFIG SET with Redis's error."""
    port = changes.get("port")
    if port is None or port == listening_port(server):
        return
    try:
        server.rebound = bind(server, port)  # type: ignore[attr-defined]
    except OSError as e:
        log.warning("Failed to bind on port %d: %s", port, e)
        raise CommandError(
            errors.CONFIG_SET_FAILED % ("port", "Unable to listen on this port. Check server logs.")
        ) from None


def on_config(server: Acceptor, changes: dict) -> None:
    """A CONFIG SET (this acceptor's or another's) applied: serve on the new
    port, if it changed, and close the old listeners."""
    port = changes.get("port")
    sockets = server.__dict__.pop("rebound", None)
    if port is None or (sockets is None and port == listening_port(server)):
        return  # unchanged (or this acceptor's CONFIG SET found it unchanged)
    if sockets is None:  # another acceptor's CONFIG SET: bind it here too
        try:
            sockets = bind(server, port)
        except OSError as e:
            log.warning(
                "acceptor: cannot listen on port %d: %s; still on port %d", port, e, listening_port(server)
            )
            return
    for listener in server.servers:
        listener.close()
    server.servers = []
    for sock in sockets:
        server.loop.create_task(_serve(server, sock))  # type: ignore[union-attr]
    if port:
        log.info("acceptor: listening on port %d", port)
    else:
        log.info("acceptor: not listening on TCP any more (port 0)")


async def _serve(server: Acceptor, sock: socket.socket) -> None:
    listener = await server.loop.create_server(  # type: ignore[union-attr]
        lambda: server.client_class(server), sock=sock, backlog=BACKLOG
    )
    server.servers.append(listener)
