"""Some shard cannot persist: what the workers are told (``__misconf``).

Redis, one process, refuses every write while its last background save
failed (stop-writes-on-bgsave-error) or its AOF cannot be written.  The
acceptor refuses the writes it sees (:meth:`Dispatch._refused_by_disk_error`,
from the shards' ``D`` frames, :data:`~shardkv.acceptor.shardlink.MISCONF_LINKS`),
but a script's writes are its calls, made in a worker, maybe one whose own
disk is fine.  So each time the -MISCONF text this acceptor refuses writes
with changes, it tells every worker (``__misconf [text]``, a control
message, so it comes before any command sent after it); a worker then
refuses a script's first write call with that text, and a script that
may write (no ``no-writes`` flag, a function's too) as it starts, as
Redis's scriptVerifyWriteCommandAllow and processCommand do.  With several
acceptors each one tells the workers over its own pipe (every pipe gets
every ``D`` frame); a worker heeds any pipe that says so.

A CONFIG SET (stop-writes-on-bgsave-error) through another acceptor may
change what the workers report: that acceptor answers OK only once this
one has heard it (``__settled``, see
:func:`shardkv.acceptor.commands.config.bus_sync`) and the workers have
answered the ``__misconf`` that made this one send (:func:`when_told`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from shardkv.acceptor.shardlink import MISCONF_LINKS
from shardkv.protocol.resp import encode_command
from shardkv.protocol.wire import Verb

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor
    from shardkv.acceptor.shardlink import ShardLink


class _Ignore:
    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


class Telling:
    """The workers' answers to one ``__misconf``, and what waits for them all."""

    __slots__ = ("server", "left", "waiters")

    def __init__(self, server: Acceptor, left: int) -> None:
        self.server = server
        self.left = left
        self.waiters: list[Callable[[], None]] = []

    def deliver(self, body: bytes) -> None:  # an answer (an error too: the pipe is gone)
        self.left -= 1
        if self.left:
            return
        if self.server.misconf_telling is self:
            self.server.misconf_telling = None
        for waiter in self.waiters:
            waiter()


def when_told(server: Acceptor, then: Callable[[], None]) -> None:
    """Call ``then`` once every worker has answered the last ``__misconf``
    (at once if they all have): a script run after it, through any
    acceptor, finds it."""
    telling = server.misconf_telling
    if telling is None:
        then()
    else:
        telling.waiters.append(then)


def on_attach(server: Acceptor, link: ShardLink) -> None:
    """Follow ``link``'s ``D`` frames; a new worker hears the state now."""
    link.on_disk = lambda: changed(server)
    if server.misconf_told is not None:
        link.send_control(_message(server.misconf_told), _IGNORE)


def changed(server: Acceptor) -> None:
    """MISCONF_LINKS changed: tell every worker if the text did."""
    text = next(iter(MISCONF_LINKS.values()), None)
    if text == server.misconf_told:
        return
    server.misconf_told = text
    body = _message(text)
    up = [link for link in server.links if link.up]
    telling = server.misconf_telling = Telling(server, len(up)) if up else None
    for link in up:
        link.send_control(body, telling)  # type: ignore[arg-type]
    _learn_function_writers(server, text is not None)


def _learn_function_writers(server: Acceptor, refusing: bool) -> None:
    """Redis counts an FCALL of a function without ``no-writes`` as a write
    (fcallGetCommandFlags), so one queued in MULTI is refused as it is
    queued and the EXEC aborts.  A function's flags are the workers', so
    while writes are refused the acceptor asks one worker which functions
    may write (``__fwriters``, an inquiry).  They cannot change meanwhile:
    FUNCTION LOAD, DELETE, FLUSH and RESTORE are writes (their subcommands'
    rows say so, see :func:`shardkv.protocol.commands.flags_of`), refused
    too, in MULTI as they are queued.  An
    FCALL queued before the answer comes is not refused as queued (its
    EXEC reply holds the worker's -MISCONF then)."""
    server.function_writers = frozenset()
    if not refusing or not server.links:
        return

    def answer(value: object) -> None:
        if server.misconf_told is not None and isinstance(value, list):
            server.function_writers = frozenset(value)

    server.links[0].inquire([Verb.FUNCTION_WRITERS], answer)


def _message(text: str | None) -> bytes:
    return encode_command([Verb.MISCONF] if text is None else [Verb.MISCONF, text.encode()])
