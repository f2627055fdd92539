"""CLIENT PAUSE and CLIENT UNPAUSE, with Redis 7.0's semantics.

``CLIENT PAUSE timeout WRITE`` postpones every command that may change
data or replicate (the ``write`` and ``may_replicate`` commands, such as
SET, PUBLISH, PFCOUNT, EVAL, and an EXEC whose queue holds one);
``CLIENT PAUSE timeout ALL`` (the default) postpones every command.  A
postponed client is *blocked*, as in Redis (it counts in INFO's
``blocked_clients``): the command and everything it sends after it wait,
in order, and run when the pause ends (timeout or CLIENT UNPAUSE), the
clients in the order they were postponed.  A command that fails its
checks (unknown, wrong arity, NOAUTH, no_multi in MULTI, out of memory, a
disk error, -BUSY while a script is busy, MONITOR) is answered at once:
the pause is the last check, as in Redis's ``processCommand``.

A new pause while one is on keeps the stricter mode and the later end.
A CLIENT PAUSE that waits for the shards' scripts (see
:func:`shardkv.acceptor.blocking.serve_after_scripts`) already postpones,
in its mode, what this acceptor's other clients send after it
(:func:`wait_for`, until :func:`waited`): Redis reads the pause when the
script ends, before what was sent after it, which it then postpones.
While a pause is on, keys are not expired (the workers are told with
``__pause``, and its end): an expired key reads as missing, but is not
deleted or counted in ``expired_keys`` until the pause ends.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from shardkv.acceptor.scriptcache import declares_flags, declares_no_writes, script_body
from shardkv.protocol.commands import flags_of
from shardkv.protocol.resp import encode_command
from shardkv.protocol.wire import Verb

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor
    from shardkv.protocol.commands import Command

NONE, WRITE, ALL = 0, 1, 2
PAUSED = -1  # a client's blocked_token while it is postponed


class _Ignore:
    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


def _replicates(cmd: Command, args: list[bytes]) -> bool:
    flags = flags_of(cmd, args)  # a container's subcommand's: FUNCTION LOAD writes
    if "write" in flags:
        return True
    if "may_replicate" not in flags:
        return False
    body = script_body(cmd.name, args)
    # A script declares itself read-only in its shebang: #!lua flags=no-writes
    return body is None or not (declares_flags(body) and declares_no_writes(body))


def must_wait(client: Client, cmd: Command, args: list[bytes]) -> bool:
    """Whether the pause in force (or one that waits) postpones ``cmd`` from ``client``."""
    kind = client.server.pause_type
    if kind == ALL:
        return True
    if _replicates(cmd, args):
        return True
    if cmd.name == "exec" and client.state.multi:
        return any(_replicates(queued, queued_args) for queued, queued_args in client.state.multi)
    return False


def holds(client: Client, cmd: Command, args: list[bytes], raw: bytes | None) -> bool:
    """Postpone ``cmd`` if the pause in force makes it wait (True).

    A pause whose time is up ends here, as Redis ends it when a key's
    expiry or a cron finds its time up: the timer that ends it runs only
    after the commands its event loop has already read, which a stalled
    acceptor (a loaded machine, DEBUG SLEEP) reads first.  A command that
    does not wait runs after the workers were told (it may expire a key);
    one that waits still goes behind the clients postponed before it, and
    the pause ends once this command's turn is over."""
    server = client.server
    over = bool(server.pause_kind) and time.monotonic() >= server.pause_end
    if must_wait(client, cmd, args):
        postpone(client, args, raw)
        if over:
            server.loop.call_soon(_check, server)  # type: ignore[union-attr]
        return True
    if over:
        stop(server)
    return False


def postpone(client: Client, args: list[bytes], raw: bytes | None) -> None:
    """Hold this command, and what follows it, until the pause ends."""
    server = client.server
    client.state.block(PAUSED)
    client.state.hold_first((args, raw))
    server.paused_clients.append(client)


def start(server: Acceptor, end: float, kind: int) -> None:
    """CLIENT PAUSE until ``end``, a :func:`time.monotonic` time (the
    machine's one clock: the acceptor that ran the command tells the others
    its end, so that every acceptor's pause ends when the command's does,
    however late one of them hears of it).  The stricter mode and the later
    end win; a pause already over changes nothing."""
    if end <= time.monotonic() and not server.pause_kind:
        return
    was, was_end = server.pause_kind, server.pause_end
    server.pause_kind = max(server.pause_kind, kind)
    server.pause_end = max(server.pause_end, end) if was else end
    _set_type(server)
    if not was or server.pause_end != was_end:
        # The workers keep expired keys until the pause's end: told it, not
        # only its start, they end their side on time even if this event
        # loop, stalled, runs the timer that ends the pause late.
        _tell_workers(server, b"1", server.pause_end)
    _arm(server)


def stop(server: Acceptor) -> None:
    """CLIENT UNPAUSE, or the pause timed out: run the postponed clients
    (those a pause that waits holds again are postponed again, in order)."""
    if not server.pause_kind:
        return
    server.pause_kind = NONE
    server.pause_end = 0.0
    _set_type(server)
    if server.pause_timer is not None:
        server.pause_timer.cancel()
        server.pause_timer = None
    _tell_workers(server, b"0")
    _release(server)


def wait_for(server: Acceptor, client: Client, kind: int) -> None:
    """``client``'s CLIENT PAUSE of mode ``kind`` waits for the shards'
    scripts: what this acceptor's other clients send meanwhile that it
    would postpone waits too, until :func:`waited` (not the workers'
    expiry: Redis has not read the pause yet)."""
    server.pause_waits[client] = kind
    _set_type(server)


def waited(server: Acceptor, client: Client) -> None:
    """``client``'s CLIENT PAUSE that waited is decided (it is about to run,
    or was refused ``-BUSY``): the clients postponed for it go on, or wait
    for the pause it starts."""
    if server.pause_waits.pop(client, None) is None:
        return
    _set_type(server)
    _release(server)


def _set_type(server: Acceptor) -> None:
    """``pause_type``, what commands are checked against (dispatch): the
    pause in force's mode, or a stricter one's that waits."""
    server.pause_type = max(server.pause_kind, max(server.pause_waits.values(), default=NONE))


def _release(server: Acceptor) -> None:
    waiting, server.paused_clients = server.paused_clients, []
    for client in waiting:
        if client.state.unblock(PAUSED):
            if not client.closed:
                server.loop.call_soon(client.resume)  # type: ignore[union-attr]


def _arm(server: Acceptor) -> None:
    if server.pause_timer is not None:
        server.pause_timer.cancel()
    delay = max(0.0, server.pause_end - time.monotonic())
    server.pause_timer = server.loop.call_later(delay, _check, server)  # type: ignore[union-attr]


def _check(server: Acceptor) -> None:
    server.pause_timer = None
    if server.pause_kind and time.monotonic() >= server.pause_end:
        stop(server)
    elif server.pause_kind:
        _arm(server)


def _tell_workers(server: Acceptor, on: bytes, end: float = 0.0) -> None:
    """``__pause 1 <end>`` (time.monotonic() in microseconds) or ``__pause 0``."""
    body = encode_command([Verb.PAUSE, on, b"%d" % round(end * 1e6)] if on == b"1" else [Verb.PAUSE, on])
    for link in server.links:
        # Even to a shard that runs a busy script (a pause that times out
        # meanwhile): a -BUSY would leave its active expiry off for good.
        link.send_control(body, _IGNORE)


def forget(client: Client) -> None:
    """A postponed client went away."""
    server = client.server
    if client in server.paused_clients:
        server.paused_clients.remove(client)
