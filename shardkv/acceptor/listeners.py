"""The acceptor's TCP listeners: at start-up, and on CONFIG SET port.

At start-up (:func:`start`) the acceptor listens on ``port`` at every
``bind`` address, or stops, and with it shardkv, with Redis's warning
(exit status ``EXIT_CANNOT_LISTEN``), as Redis stops when its port is
taken.  Port 0 listens on no TCP port, as in Redis (the supervisor refuses
to start on port 0 at all, as Redis does with no unix socket; an acceptor
meets it only when restarted after a ``CONFIG SET port 0``).

CONFIG SET port, as Redis's ``updatePort`` (``changeListenPort``): the new
sockets are bound before the old ones close, and a port that cannot be
bound (another process listens there) makes the whole CONFIG SET fail with
Redis's error, changing nothing: the acceptor that runs the CONFIG SET
binds the new port (:func:`bind_for_set`) before it applies any parameter.
Then the ``on_config`` hook (:func:`on_config`) serves the new sockets and
closes the old listeners, here and, through the supervisor's ``config``
line, in every other acceptor, which binds the port itself (with
``SO_REUSEPORT``, as at start; the supervisor starts a restarted acceptor
on the new port).  Port 0 stops listening on TCP, as in Redis.

With several acceptors the move is all or nothing too: before anything is
applied, the CONFIG SET asks every other acceptor to bind the new port
(:func:`bind_everywhere`, the bus's ``listen``, waited for as the
CONFIG SET's ``sync`` is).  Each keeps the sockets it bound
(``server.listen_soon``) for the config line that follows, which serves
them; if one cannot bind (its file descriptors are used up, a stranger
took the port meanwhile), the CONFIG SET fails with Redis's error, every
acceptor closes what it bound (``unlisten``) and stays on the old port,
and no parameter changes.  Meanwhile the client's later commands wait, as
a blocked client's do.

Inside EXEC, whose commands cannot wait once it runs, the others bind
first: an EXEC holding a CONFIG SET of a new port (one that passes CONFIG
SET's checks as the EXEC comes) waits before it runs at all, as a command
CLIENT PAUSE postpones does (:func:`bind_before_exec`, one of the
acceptor's interceptors), until every other acceptor answered ``listen``
for each such port; then it runs, in order with what the client sent
after it, as if it had come then (MONITOR shows its lines then).  A port
one of them could not bind is closed everywhere, and its CONFIG SET fails
inside the EXEC with Redis's error, the other commands running; one this
acceptor cannot bind fails there too, and the others close what they
bound.  What was bound for a CONFIG SET that then did not run (a WATCHed
key changed, an ACL rule refused it) is closed once the EXEC is over
(:func:`release_exec_ports`).

With several acceptors each binds with ``SO_REUSEPORT``, which would also
let it share a port with another process that binds with it (a second
shardkv with several acceptors): so, at start-up and on CONFIG SET alike,
every socket listening on the port must be one of its own supervisor's
acceptors' (:func:`_strangers_on_port`, a look of a few milliseconds when
there is no stranger), or the port counts as taken.

Which port the listeners are for is ``server.listen_port``, set in the
same step as they are bound (``None`` until start-up binds): a CONFIG SET
that reaches an acceptor still starting only updates its config, which
start-up then reads; one that reaches it after is a move, never a second
listener.  A move made while a listener is still being handed to asyncio
(:func:`_serve`, which awaits) closes that listener when it is ready.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, NoReturn

import psutil

from shardkv.protocol import bus, errors
from shardkv.protocol.errors import CommandError
from shardkv.runtime.exitcodes import EXIT_CANNOT_LISTEN

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor
    from shardkv.protocol.commands import Command

log = logging.getLogger("shardkv.acceptor")

BACKLOG = 511


def start(server: Acceptor) -> None:
    """Start-up: listen on the configured port (none for port 0), or stop
    this acceptor with Redis's warning if a ``bind`` address cannot be had."""
    port = server.config["port"]
    made: list[socket.socket] = []
    for host in server.config["bind"].split() if port else ():
        try:
            made += _bind_host(server, host, port)
        except OSError as e:
            _cannot_listen(host, port, os.strerror(e.errno) if e.errno else str(e))
        if server.nacceptors > 1 and _strangers_on_port(host, port, os.getppid()):
            _cannot_listen(host, port, "Address already in use")
    _listen_on(server, port, made)


def bind(server: Acceptor, port: int) -> list[socket.socket]:
    """Listening sockets on ``port`` at every ``bind`` address (none for
    port 0); raises OSError, with none left open, if one cannot be bound,
    or (several acceptors) if another process listens there too."""
    made: list[socket.socket] = []
    if not port:
        return made
    try:
        for host in server.config["bind"].split():
            made += _bind_host(server, host, port)
            if server.nacceptors > 1 and _strangers_on_port(host, port, os.getppid()):
                raise OSError(errno.EADDRINUSE, f"another process listens on {host}:{port}")
    except OSError:
        for sock in made:
            sock.close()
        raise
    return made


def _bind_host(server: Acceptor, host: str, port: int) -> list[socket.socket]:
    """Listening sockets on ``port`` at ``host`` (each address it names)."""
    made: list[socket.socket] = []
    try:
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


def bind_for_set(client: Client, changes: dict) -> None:
    """CONFIG SET's check of a new port, before anything is applied: bind
    it, or refuse the whole CONFIG SET with Redis's error.  Inside EXEC at
    K > 1, also if another acceptor could not bind it before the EXEC ran
    (:func:`bind_before_exec`); and if this one cannot, the others close
    what they bound for it."""
    server = client.server
    port = changes.get("port")
    if port is None or port == server.listen_port:
        return
    bound = client.state.take_exec_port(port) if client.state.in_exec else None
    if bound is False:
        log.warning("Failed to bind on port %d: another acceptor could not", port)
        raise CommandError(errors.CONFIG_SET_FAILED % ("port", _UNABLE))
    try:
        server.rebound = bind(server, port)  # type: ignore[attr-defined]
    except OSError as e:
        if bound:
            server.bus.tell(bus.UNLISTEN, [port])  # type: ignore[union-attr]
        log.warning("Failed to bind on port %d: %s", port, e)
        raise CommandError(errors.CONFIG_SET_FAILED % ("port", _UNABLE)) from None


_UNABLE = "Unable to listen on this port. Check server logs."

# K > 1: a client's blocked_token while its CONFIG SET port waits for every
# other acceptor to bind the new port.
BINDING_EVERYWHERE = -12


def bind_everywhere(client: Client, changes: dict, apply: Callable[[], None]) -> bool:
    """K > 1, a CONFIG SET that moves to a port this acceptor has bound
    (:func:`bind_for_set`): ask every other acceptor to bind it too, then
    ``apply()`` the CONFIG SET if all could, or reply Redis's error with
    nothing changed.  False (nothing done: apply it now) with one acceptor,
    no port to bind (port 0, or unchanged), or inside EXEC."""
    server = client.server
    sockets = server.__dict__.get("rebound")
    state = client.state
    if server.bus is None or not sockets or state.in_exec or state.blocked_token:
        return False
    del server.rebound  # type: ignore[attr-defined]
    port = changes["port"]
    state.block(BINDING_EVERYWHERE, shown=False)

    def done(answers: list) -> None:
        # Unblocked first: what the CONFIG SET applies may hold the client
        # again (requirepass at K > 1, see users.requirepass_in_one_order).
        state.unblock(BINDING_EVERYWHERE)
        if all(answer == 1 for answer in answers):
            server.rebound = sockets  # type: ignore[attr-defined]
            apply()
        else:
            for sock in sockets:
                sock.close()
            server.bus.tell(bus.UNLISTEN, [port])  # type: ignore[union-attr]
            log.warning("Failed to bind on port %d: another acceptor could not", port)
            client.reply_error(errors.CONFIG_SET_FAILED % ("port", _UNABLE))
        if not state.blocked_token:
            if client.waiting():
                server.loop.call_soon(client.resume)  # type: ignore[union-attr]
            elif client.pending:
                client.flush()

    server.bus.ask(bus.LISTEN, [port], done, failed=lambda _: done([0]))
    return True


# K > 1: a client's blocked_token while its EXEC, not run yet, waits for
# every other acceptor to bind the new ports of its CONFIG SETs.
BINDING_BEFORE_EXEC = -14


def bind_before_exec(client: Client, cmd: Command, args: list[bytes]) -> bool:
    """The interceptor (K > 1): postpone an EXEC whose CONFIG SETs move to
    new ports until every other acceptor has bound each of them, as
    :func:`bind_everywhere` waits outside EXEC (True: postponed).

    The EXEC waits before it runs at all, as one CLIENT PAUSE postpones:
    it and what the client sent after it are held, then run again in order
    (checked again: a port that another client's CONFIG SET made new
    meanwhile is asked then), as if they had come then; so a monitor sees
    the transaction's lines and EXEC's when it runs.  The client's
    ``exec_ports`` keep the answers for :func:`bind_for_set`: a port one
    acceptor could not bind is closed everywhere now, and its CONFIG SET
    fails in the EXEC.  A client that goes away meanwhile still runs it
    (Redis runs an EXEC it has read); one killed does not, and what was
    bound for it is closed."""
    if cmd.name != "exec":
        return False
    server = client.server
    state = client.state
    queued = state.multi
    if server.bus is None or queued is None or state.multi_error or server.listen_port is None:
        return False
    ports = [port for port in _new_ports(client, queued) if port not in state.exec_ports]
    if not ports:
        return False
    state.block(BINDING_BEFORE_EXEC, shown=False)
    state.hold_first((args, None))
    left = [len(ports)]

    def done(port: int, answers: list) -> None:
        bound = all(answer == 1 for answer in answers)
        state.bound_for_exec(port, bound)
        if not bound:
            server.bus.tell(bus.UNLISTEN, [port])  # type: ignore[union-attr]
            log.warning(
                "acceptor: another acceptor could not bind port %d; its CONFIG SET in EXEC fails", port
            )
        left[0] -= 1
        if left[0] or not state.unblock(BINDING_BEFORE_EXEC):
            return
        if client.closing:  # killed: its EXEC will not run
            release_exec_ports(client)
        else:
            server.loop.call_soon(client.resume)  # type: ignore[union-attr]

    def ask(port: int) -> None:
        def answered(answers: list) -> None:
            done(port, answers)

        def failed(_: str) -> None:
            done(port, [0])

        server.bus.ask(bus.LISTEN, [port], answered, failed=failed)  # type: ignore[union-attr]

    for port in ports:
        ask(port)
    return True


def _new_ports(client: Client, queued: list) -> list[int]:
    """The ports the CONFIG SETs of ``queued`` move to, other than this
    acceptor's now, of those that pass CONFIG SET's checks and the ACL
    user's as they are now (the others fail in the EXEC anyway)."""
    server = client.server
    user = client.state.user
    ports: list[int] = []
    for cmd, args in queued:
        if cmd.name != "config" or len(args) < 4 or len(args) % 2 or args[1].upper() != b"SET":
            continue
        if not user.unlimited and user.check(cmd, args)[0]:
            continue
        try:
            port = server.wiring.config_set_changes(client, args).get("port")
        except CommandError:
            continue
        if port and port != server.listen_port and port not in ports:
            ports.append(port)
    return ports


def release_exec_ports(client: Client) -> None:
    """The client's EXEC is over (run, aborted or discarded): the other
    acceptors close what they bound before it for a CONFIG SET port that
    did not run (those that ran took theirs with the config line)."""
    if not client.state.exec_ports:
        return
    for port, bound in client.state.take_exec_ports().items():
        if bound:
            client.server.bus.tell(bus.UNLISTEN, [port])  # type: ignore[union-attr]


def bus_listen(server: Acceptor, origin: int, args: list) -> int:
    """Another acceptor's CONFIG SET moves to port ``args[0]``: bind it now
    and keep the sockets for its config line (1), or say it cannot (0)."""
    port = int(args[0])
    if server.listen_port is None or port == server.listen_port:
        return 1  # still starting (start-up binds the port in config), or there already
    forget_soon(server, port)
    try:
        sockets = bind(server, port)
    except OSError as e:
        log.warning("acceptor: cannot listen on port %d: %s; a CONFIG SET port fails", port, e)
        return 0
    server.listen_soon[port] = sockets
    # Closed if no config line comes for them (the asker died meanwhile).
    server.loop.call_later(2 * bus.SYNC_WITHIN, forget_soon, server, port, sockets)  # type: ignore[union-attr]
    return 1


def bus_unlisten(server: Acceptor, origin: int, args: list) -> None:
    """Another acceptor's CONFIG SET port failed: close what its ``listen`` bound."""
    forget_soon(server, int(args[0]))


def forget_soon(server: Acceptor, port: int, sockets: list[socket.socket] | None = None) -> None:
    """Close the sockets kept for ``port`` (only if they are ``sockets``, when given)."""
    kept = server.listen_soon.get(port)
    if kept is None or (sockets is not None and kept is not sockets):
        return
    del server.listen_soon[port]
    for sock in kept:
        sock.close()


def on_config(server: Acceptor, changes: dict) -> None:
    """A CONFIG SET (this acceptor's or another's) applied: serve on the new
    port, if it changed, and close the old listeners."""
    port = changes.get("port")
    sockets = server.__dict__.pop("rebound", None)
    if port is None or server.listen_port is None:
        return  # no port change, or still starting: start() binds the port in config
    if sockets is None:  # another acceptor's CONFIG SET: bind it here too
        if port == server.listen_port:
            forget_soon(server, port)
            return  # unchanged
        sockets = server.listen_soon.pop(port, None)  # bound when it asked (bind_everywhere)
        try:
            if sockets is None:
                sockets = bind(server, port)
        except OSError as e:
            log.warning(
                "acceptor: cannot listen on port %d: %s; still on port %d", port, e, server.listen_port
            )
            return
    _listen_on(server, port, sockets)
    if port:
        log.info("acceptor: listening on port %d", port)
    else:
        log.info("acceptor: not listening on TCP any more (port 0)")


def _listen_on(server: Acceptor, port: int, sockets: list[socket.socket]) -> None:
    """Serve ``sockets`` (bound to ``port``) instead of the listeners before."""
    for listener in server.servers:
        listener.close()
    server.servers = []  # (a socket of the last move still in _serve closes there)
    server.listen_port = port
    server.listen_sockets = sockets
    for sock in sockets:
        server.loop.create_task(_serve(server, sock))  # type: ignore[union-attr]


async def _serve(server: Acceptor, sock: socket.socket) -> None:
    listener = await server.loop.create_server(  # type: ignore[union-attr]
        lambda: server.client_class(server), sock=sock, backlog=BACKLOG
    )
    if not any(sock is s for s in server.listen_sockets):  # moved meanwhile
        listener.close()
        return
    server.servers.append(listener)


def _cannot_listen(host: str, port: int, why: str) -> NoReturn:
    """Stop this acceptor, and with it shardkv, as Redis stops when its
    port is taken."""
    log.warning("Warning: Could not create server TCP listening socket %s:%d: bind: %s", host, port, why)
    sys.exit(EXIT_CANNOT_LISTEN)


UNKNOWN_OWNER_TRIES = 40  # looks at the sockets whose owner psutil did not see
UNKNOWN_OWNER_WAIT = 0.05  # seconds between two looks


def _strangers_on_port(host: str, port: int, ours: int) -> bool:
    """Does a process that is not a child of ``ours`` listen on ``port``?

    First the cheap look, which answers for the common case, no stranger:
    the kernel lists the sockets listening on the port (``sock_diag``,
    :func:`_listening_sockets`: the listening ones alone, a fraction of a
    millisecond), and if each of them is one that a child of ``ours``
    holds (:func:`_sockets_of_children`: the children's descriptors
    only), there is none.  Otherwise (a stranger, or a socket opened or
    closed between the two looks), :func:`_strangers_among_all` looks at
    every process's sockets, which takes some 100 ms.  (Each acceptor
    makes this check as it starts to listen, at K > 1.)"""
    try:
        listening = _listening_sockets(host, port) if _AF_NETLINK else None
    except OSError:
        listening = None  # no sock_diag here
    if listening is not None and listening <= _sockets_of_children(ours):
        return False
    return _strangers_among_all(host, port, ours)


_AF_NETLINK = getattr(socket, "AF_NETLINK", 0)  # (Linux only)
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_TCP_LISTEN = 10
_NLMSG = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, seq, pid
_DIAG_REQUEST = struct.Struct("=BBBxI48x")  # inet_diag_req_v2: family, protocol, ext, states, (any) sockid
_DIAG_SOCKID = struct.Struct(">HH16s")  # inet_diag_msg's sockid: source port, dest port, source address
_DIAG_OWNER = struct.Struct("=II")  # inet_diag_msg's uid and inode, after family..retrans, sockid and 3 u32s


def _listening_sockets(host: str, port: int) -> set[int]:
    """The inodes of the TCP sockets listening on ``port`` at ``host`` (or
    at a wildcard address, or at any address if ``host`` is one), as the
    kernel lists them (``NETLINK_SOCK_DIAG``, as ``ss -ltn`` asks)."""
    found: set[int] = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        with socket.socket(_AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as nl:
            request = _DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, 1 << _TCP_LISTEN)
            nl.sendall(
                _NLMSG.pack(_NLMSG.size + len(request), _SOCK_DIAG_BY_FAMILY, 0x301, 1, 0) + request
            )  # NLM_F_REQUEST | NLM_F_DUMP
            done = False
            while not done:
                data = nl.recv(1 << 16)
                if not data:
                    raise OSError(errno.EIO, "sock_diag: no answer")
                at = 0
                while at < len(data):
                    length, kind = _NLMSG.unpack_from(data, at)[:2]
                    if kind == _NLMSG_ERROR:
                        raise OSError(errno.EIO, "sock_diag refused the request")
                    if kind == _NLMSG_DONE:
                        done = True
                        break
                    body = at + _NLMSG.size
                    sport, _, source = _DIAG_SOCKID.unpack_from(data, body + 4)
                    inode = _DIAG_OWNER.unpack_from(data, body + 4 + 48 + 12)[1]
                    address = socket.inet_ntop(family, source[:4] if family == socket.AF_INET else source)
                    if sport == port and (address in (host, "0.0.0.0", "::") or host in ("0.0.0.0", "::")):
                        found.add(inode)
                    at += (length + 3) & ~3
                    if length < _NLMSG.size:
                        raise OSError(errno.EIO, "sock_diag: a bad message")
    return found


def _sockets_of_children(ours: int) -> set[int]:
    """The inodes of the sockets that the children of ``ours`` hold."""
    try:
        children = psutil.Process(ours).children()
    except psutil.Error:
        return set()
    return socket_inodes(child.pid for child in children)


def socket_inodes(pids: Iterable[int]) -> set[int]:
    """The inodes of the sockets that the processes ``pids`` hold (one
    gone meanwhile holds none)."""
    inodes: set[int] = set()
    for pid in pids:
        folder = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(folder)
        except OSError:
            continue  # gone meanwhile
        for fd in fds:
            try:
                link = os.readlink(f"{folder}/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    return inodes


def _strangers_among_all(host: str, port: int, ours: int) -> bool:
    """:func:`_strangers_on_port`'s thorough look, at every process's sockets.

    psutil maps sockets to processes by their file descriptors, read before
    the socket table: a socket that appeared in between (the other
    acceptors bind at the same time as this one) has no pid in that look.
    Such a socket is looked at again, a little later, until its owner shows
    (an owner that never shows counts as a stranger)."""
    for attempt in range(UNKNOWN_OWNER_TRIES):
        unknown = False
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
                continue
            if conn.laddr.ip not in (host, "0.0.0.0", "::") and host not in ("0.0.0.0", "::"):
                continue
            if not conn.pid:
                unknown = True
                continue
            try:
                parent = psutil.Process(conn.pid).ppid()
            except psutil.Error:
                continue  # gone meanwhile
            if parent != ours:
                return True
        if not unknown:
            return False
        if attempt + 1 < UNKNOWN_OWNER_TRIES:
            time.sleep(UNKNOWN_OWNER_WAIT)
    return True
