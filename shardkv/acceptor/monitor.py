"""MONITOR: a stream of every command the server runs, as Redis writes it.

Each command that runs is sent to every monitoring client as one status
line::

    +1700000000.123456 [0 127.0.0.1:50412] "SET" "key" "value"

the wall-clock time in microseconds, the database and the address of the
client that sent it, and its arguments quoted as Redis's ``sdscatrepr``
quotes them.  As in Redis (``call()`` in server.c), a command is shown
after it has run, so the order of the lines is the server's one global
order; commands rejected before they run (unknown, wrong arity, NOAUTH,
queued inside MULTI) are not shown, a transaction's commands are shown
when EXEC runs them, and commands flagged ``admin`` (CONFIG, CLIENT LIST,
SAVE, DEBUG, MONITOR itself...) never are.  The passwords of AUTH,
HELLO ... AUTH and MIGRATE ... AUTH are shown as ``(redacted)`` where Redis
redacts them (the slow log's rule, ``shardkv.runtime.cmdstats.redacted``).

A monitoring client may still run commands that do not touch the
keyspace (PING, SUBSCRIBE, QUIT...); the others get Redis's "Replica
can't interact with the keyspace", and RESET ends monitoring.

A transaction that runs as one atomic operation (its writes span shards,
it checks WATCHed keys or runs a blocking command) runs on a shard after
EXEC was handed out: its EXEC gets a :class:`Hold` in front of its line
(:func:`exec_place`), which the transaction's lines fill once it has
committed (or empty, if it did not run), so they come before EXEC's, as
in Redis; the ``[lua]`` lines of the scripts it runs as commands of their
own, sent as it commits, go in it too, each after its script's line
(:func:`put_exec_lines`).

A script's EVAL (EVALSHA, FCALL...) line is followed, as in Redis, by one
``[<db> lua]`` line per command the script called, which its worker reports
in an ``M`` frame (see :mod:`shardkv.protocol.wire`).  The script runs after
its line is out, so right after that line every monitor gets a :class:`Hold`,
a place in its stream that the ``M`` frame fills (or the script's reply
empties): the lines of the commands that come after the script, inside
MULTI or from other clients, wait behind it.  (Not for a script that runs
across shards: its lines go out when its executor sends them.)

A command sent to one shard while someone monitors gets a
:class:`LineSlot`: its line waits for its reply, because a busy script's
worker may still refuse it (``-BUSY``, :mod:`shardkv.worker.busyrefusal`),
and Redis shows no line for a command refused before it runs.

This module holds the formatting and the fan-out; the MONITOR command
itself is in :mod:`shardkv.acceptor.commands.server`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from shardkv.acceptor.replies import Slot
from shardkv.protocol import bus, command_docs, commands
from shardkv.runtime.cmdstats import redacted

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor

log = logging.getLogger("shardkv.acceptor")

# sdscatrepr: backslash escapes for \\ " \n \r \t \a \b, \xHH for any other
# byte that is not printable ASCII.
_ESCAPES = {i: "\\x%02x" % i for i in range(256) if not 0x20 <= i <= 0x7E}
_ESCAPES.update({ord(c): "\\" + c for c in '\\"'})
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x07: "\\a", 0x08: "\\b"})
_REDACTED = '"(redacted)"'


def quote(arg: bytes) -> str:
    """One argument as Redis's sdscatrepr writes it: "a\\x00b"."""
    return '"' + arg.decode("latin-1").translate(_ESCAPES) + '"'


def line(client: Client, args: list[bytes]) -> bytes:
    """The status line a monitor receives for ``args``, sent by ``client``."""
    return _line(client.db, client.addr.encode(), args)


def _line(db: int, addr: bytes, args: list[bytes]) -> bytes:
    micros = time.time_ns() // 1000
    hidden = redacted(args)
    shown = " ".join(_REDACTED if i in hidden else quote(a) for i, a in enumerate(args))
    return b"+%d.%06d [%d %s] %s\r\n" % (*divmod(micros, 1_000_000), db, addr, shown.encode("latin-1"))


# Redis 7.2's subcommands that shardkv has: CLIENT SETINFO (which redis-py
# 5+ and other clients send as they connect) and CLIENT NO-TOUCH.  Redis
# 7.0.15 knows neither: it rejects them as unknown subcommands before they
# run, so its monitors get no line for them, and none here either.
_NEWER_THAN_REDIS = frozenset(
    (container, name)
    for container, subs in command_docs.SUBCOMMANDS.items()
    for name, doc in subs.items()
    if tuple(int(part) for part in doc.since.split(".")) > (7, 0, 15)
)


def shown(cmd: commands.Command, args: list[bytes]) -> bool:
    """Whether monitors see this command: not ``admin`` (for a container,
    its subcommand's flags decide), and not a bad subcommand, which Redis
    rejects before running (nor one Redis 7.0.15 does not have)."""
    subs = command_docs.SUBCOMMANDS.get(cmd.name)
    flags: Collection[str] = cmd.flags
    if subs is not None and len(args) > 1:
        if command_docs.check_subcommand(args) is not None:
            return False
        name = args[1].decode("latin-1").lower()
        if (cmd.name, name) in _NEWER_THAN_REDIS:
            return False
        sub = subs.get(name)
        if sub is not None:
            flags = sub.flags
    # ``skip_monitor`` (EVAL, EVALSHA, FCALL and their _RO forms) is not a
    # reason to hide: Redis shows those lines itself, ahead of the ``[0 lua]``
    # lines of the commands the script calls (see feed_script).
    return "admin" not in flags


def touches_keyspace(cmd: commands.Command, args: list[bytes]) -> bool:
    """Commands a monitoring client may not run (Redis treats it as a
    replica); a container's subcommand by its own flags (FUNCTION LOAD may
    not, XGROUP HELP may)."""
    flags = commands.flags_of(cmd, args)
    return "write" in flags or "readonly" in flags or "may_replicate" in flags


def feed(
    client: Client, cmd: commands.Command, args: list[bytes], db: int | None = None, since: int | None = None
) -> None:
    """Send the line for a command that just ran to every monitor (in
    database ``db``, if not the client's: a transaction with SELECT inside).
    ``since``: where the command's replies start in ``client.pending``;
    while another acceptor monitors they wait there for its line (see
    :class:`Fence`)."""
    due = _DUE.pop() if _DUE else None
    if not shown(cmd, args):
        return
    data = line(client, args) if db is None or db == client.db else _line(db, client.addr.encode(), args)
    pending = client.pending
    sent = pending[-1] if pending else None
    own: list[Hold] = []  # the places its own lines will fill
    if cmd.name == "exec":  # its transaction's lines, in a place before its own (see exec_place)
        if getattr(sent, "line_due", False):
            return  # routed later: fed once it ran (see transactions._run_holding_first)
        place = getattr(sent, "place", None)
        if place is not None:
            own.append(place)
        if getattr(sent, "line_held", False) is True:
            # An atomic EXEC whose SELECT changes the client's database: its
            # line, in the database it leaves, once it is decided (see
            # transactions._Settle).
            sent.line_held = hold = Hold(client.server)  # type: ignore[union-attr]
            own.append(hold)
            data = b""
    if not data:
        pass
    elif type(sent) is LineSlot and sent.hold is None and sent.data is None:
        # Sent to one shard just now: its line waits for its reply, since
        # a busy script's worker may still refuse it (see LineSlot).
        sent.hold = Hold(client.server)
        sent.line = data
        own.append(sent.hold)
    else:
        _send(client.server, data)
    if due is not None and due[1] is args:
        due[0].hold = Hold(client.server)
        own.append(due[0].hold)
    if since is not None:
        remote = client.server.remote_monitors
        if remote is not None and remote.acceptors:
            remote.fence(client, since, own)


def exec_place(client: Client) -> Hold:
    """A place in every monitor's stream, before the line of the EXEC being
    run, for the lines of its commands (:func:`exec_lines`), put there once
    they ran: an atomic transaction runs after EXEC's line was fed.  The
    EXEC's reply (``place`` on it, see :func:`feed`) waits, while another
    acceptor monitors, until the place is filled there too."""
    return Hold(client.server)


def exec_lines(
    client: Client,
    calls: list[tuple[commands.Command, list[bytes], int]],
    lua: list | None = None,
    ran: Collection[int] = (),
) -> bytes:
    """The lines of a transaction's commands that ran, each ``(command,
    arguments, database)``; ``lua``: the calls of its scripts that ran on
    its executor (``ran``: their positions in ``calls``), in order, each
    script's ending with ``wire.SCRIPT_END``, whose lines follow each
    script's own (not those of a script refused before it ran, such as
    an EVALSHA answered -NOSCRIPT, which calls nothing)."""
    addr = client.addr.encode()
    out = []
    scripts = iter(lua or ())
    for at, (cmd, args, db) in enumerate(calls):
        if shown(cmd, args):
            out.append(_line(db, addr, args))
        if lua is not None and at in ran:
            for call in scripts:
                if call[0] == -1:
                    break
                out.append(_line(call[0], b"lua", call[1]))
    return b"".join(out)


def put_exec_lines(
    place: Hold,
    client: Client,
    calls: list[tuple[commands.Command, list[bytes], int]],
    lua: list | None = None,
    sent: dict[int, object] | None = None,
    ran: Collection[int] = (),
) -> None:
    """Put into ``place`` (see :func:`exec_place`) the lines of a
    transaction's commands that ran (:func:`exec_lines`, with ``lua`` and
    ``ran``).  ``sent``: by
    position in ``calls``, the holders (see :func:`expect_lines`) of its
    scripts that ran as commands of their own, sent as it committed, whose
    ``[lua]`` lines come later: each one's go right after its own line, as
    Redis shows a script's calls, before EXEC's; so the place is put once
    every one came (or its reply said none will: :class:`LuaLines`)."""
    if not sent:
        place.put(exec_lines(client, calls, lua, ran))
        return
    block = _ExecBlock(place)
    start = 0
    for at in sorted(sent):
        block.parts.append(exec_lines(client, calls[start : at + 1]))
        piece = LuaLines(block)
        block.parts.append(piece)
        sent[at].hold = piece  # type: ignore[attr-defined]  # a script's holder (scripting._ShardReply)
        start = at + 1
    block.parts.append(exec_lines(client, calls[start:]))
    block.ready()


class _ExecBlock:
    """A transaction's lines, with places for the ``[lua]`` lines of its
    scripts sent as it committed (see :func:`put_exec_lines`)."""

    __slots__ = ("place", "parts", "missing")

    def __init__(self, place: Hold) -> None:
        self.place = place
        self.parts: list[bytes | LuaLines] = []
        self.missing = 1  # (one more than its pieces not filled yet, until all are in)

    def ready(self) -> None:
        """One more part is in; the whole goes into the place once all are."""
        self.missing -= 1
        if self.missing == 0:
            # (each LuaLines filled by now: its data is bytes)
            self.place.put(
                b"".join(part if isinstance(part, bytes) else part.data or b"" for part in self.parts)
            )


class LuaLines:
    """A script's ``[<db> lua]`` lines inside a transaction's (see
    :func:`put_exec_lines`): filled as a :class:`Hold` is, by the script's
    ``M`` frame (or emptied by its reply)."""

    __slots__ = ("block", "data")

    def __init__(self, block: _ExecBlock) -> None:
        self.block = block
        self.data: bytes | None = None
        block.missing += 1

    def fill(self, calls: list[tuple[int, list[bytes]]]) -> None:
        if self.data is None:
            self.data = b"".join(_line(db, b"lua", args) for db, args in calls if db >= 0)
            self.block.ready()


def take_due(args: list[bytes]) -> object | None:
    """The holder of the script sent just now for the command ``args``
    (that very list), whose line was not fed (see :func:`expect_lines`),
    its expectation taken; None if no script was sent for it."""
    if _DUE and _DUE[0][1] is args:
        return _DUE.pop()[0]
    return None


# The script routed last, whose EVAL line comes next: (its holder, the
# arguments of the command whose line it waits for).
_DUE: list = []
SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})


def expect_lines(holder: object, args: list[bytes]) -> None:
    """A script was just sent with FLAG_MONITOR: when the line of the
    command ``args`` (that very list) is fed, ``holder.hold`` gets the
    :class:`Hold` for its ``[lua]`` lines.  A script sent with no line fed
    after it (one inside an atomic EXEC, run as it commits) leaves its
    expectation to no other command: a later script's line would take it,
    and its place, filled by no reply, would stop the monitors' stream
    (and, with several acceptors, its client's replies behind their fence)."""
    _DUE[:] = [(holder, args)]


class Hold:
    """A place in every monitor's stream for a script's ``[<db> lua]`` lines."""

    __slots__ = ("slots",)

    def __init__(self, server: Acceptor, skip: object = None) -> None:
        self.slots = [Slot(m) for m in server.monitors if not m.closing and m is not skip]
        for slot in self.slots:
            slot.client.pending.append(slot)

    def fill(self, calls: list[tuple[int, list[bytes]]]) -> None:
        self.put(b"".join(_line(db, b"lua", args) for db, args in calls))

    def put(self, data: bytes) -> None:
        """Fill the place with ``data`` (b"": nothing) in every monitor."""
        for slot in self.slots:
            if slot.data is None:
                slot.deliver(data)
        self.slots = []


class LineSlot(Slot):
    """The reply slot of a command sent to one shard while someone monitors
    (:meth:`Dispatch.send`): its MONITOR line, fed right after, waits in
    a :class:`Hold` for the reply.  A busy script's worker may refuse the
    command after it was sent (the ``K`` frames of
    :mod:`shardkv.worker.busyrefusal`): Redis shows no line for a command
    rejected before it runs, so a refused one's place is emptied
    (:meth:`unseen`); any reply fills it with the line."""

    __slots__ = ("hold", "line")
    muted_in_place = True  # (a busy script may refuse its command: see Slot)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        self.hold: Hold | None = None
        self.line = b""

    def deliver(self, body: bytes) -> None:
        Slot.deliver(self, body)
        hold = self.hold
        if hold is not None:
            self.hold = None
            hold.put(self.line)

    def unseen(self) -> None:
        """The worker refused the command (``-BUSY``): no line for it."""
        hold = self.hold
        if hold is not None:
            self.hold = None
            hold.put(b"")


def feed_script(server: Acceptor, calls: list[tuple[int, list[bytes]]]) -> None:
    """Send the ``[<db> lua]`` lines of the commands a script called (a
    worker's ``M`` frame, before the script's reply: after its EVAL line)."""
    if not server.monitors:  # no one to format them for
        return
    # (wire.SCRIPT_END: between the scripts of one run, see _run_foreign)
    data = b"".join(_line(db, b"lua", args) for db, args in calls if db >= 0)
    if data:
        _send(server, data)


def _send(server: Acceptor, data: bytes, skip: object = None) -> None:
    dirty = server.dirty_clients
    for monitor in server.monitors:
        if monitor.closing or monitor is skip:  # QUIT: Redis writes nothing more to a closing client
            continue
        monitor.pending.append(data)
        if not monitor.dirty:
            monitor.dirty = True
            dirty.append(monitor)
    if not server.monitor_flush_due:
        server.monitor_flush_due = True
        server.loop.call_soon(_flush, server)  # type: ignore[union-attr]


def _flush(server: Acceptor) -> None:
    server.monitor_flush_due = False
    server.flush_dirty_clients()


def start(client: Client) -> bool:
    """Make ``client`` a monitor; False if it already was."""
    if not client.state.start_monitoring():
        return False
    client.server.monitors.append(client)
    return True


def announce(client: Client, reply: bytes) -> None:
    """Reply to MONITOR; with several acceptors, once the others know that
    this one has a monitor (from then on they send it their lines)."""
    server = client.server
    if server.bus is None or _own(server) != 1:
        client.pending.append(reply)
        return
    slot = Slot(client)
    client.pending.append(slot)
    server.bus.ask(bus.MONITORS, [1], lambda _: slot.deliver(reply))


def stop(client: Client) -> None:
    """End monitoring (RESET, or the connection closed)."""
    if client.state.stop_monitoring():
        server = client.server
        server.monitors.remove(client)
        if server.bus is not None and not _own(server):
            server.bus.tell(bus.MONITORS, [0])


# -- several acceptors ---------------------------------------------------------
#
# While another acceptor has a monitor, ``server.monitors`` holds one
# :class:`RemoteMonitors` besides this acceptor's own monitors: so every
# ``if server.monitors`` of the hot paths sees someone to feed, and the lines
# it gets leave on the bus once per turn of the event loop, as one question
# (``monitor``).  The other acceptors answer once they queued the lines for
# their monitors, and a command's replies wait for that answer (a
# :class:`Fence` in front of them): so a client that has a reply and sends
# another command, through any acceptor, finds that command's line after
# the first one's in every monitor's stream, as in Redis, where the line is
# written before the reply.  Only while another acceptor monitors: a bus
# round trip per event-loop turn that fed lines, and the replies of that
# turn wait for it.


class Fence(Slot):
    """A place in a client's replies, in front of a command's, filled
    (with nothing) once the other acceptors answered that they queued every
    line this acceptor had for their monitors when it was made (up to
    ``target``, counted in :attr:`RemoteMonitors.taken`; a place not
    filled yet counts as sent), and the command's own lines that waited in
    places (``slots``, the stand-in's Slots in them: the line of a command
    sent to one shard, a script's ``[lua]`` lines)."""

    __slots__ = ("target", "slots")

    def __init__(self, client: Client, target: int, slots: list[Slot]) -> None:
        super().__init__(client)
        self.target = target
        self.slots = slots


class RemoteMonitors:
    """The other acceptors' monitors, as one more monitor of this acceptor.

    A place in its stream that is not filled yet (a :class:`Hold`'s Slot:
    a script's ``[lua]`` lines, or a command's line that waits for its
    reply) goes on as a *place* (a number), where the other acceptors put a
    Hold of their own, filled when this one sends what came (a *fill*).
    So the lines after it need not wait here, and neither do their replies:
    the others' streams keep the order, as one acceptor's does.  The
    places the others made for this acceptor's are kept here too
    (:attr:`places`)."""

    closing = False

    def __init__(self, server: Acceptor) -> None:
        self.server = server
        # Lines, and a Slot where a script's ``[lua]`` lines go (see Hold).
        self.pending: list[bytes | Slot] = []
        self.dirty = False
        self.acceptors: set[int] = set()  # those that have monitors
        # Of the items ever put in ``pending``: how many left on the bus,
        # and how many the other acceptors said they queued (or that went
        # otherwise: dropped, or no one left to show them to).
        self.taken = 0
        self.done = 0
        self.fences: list[Fence] = []  # those not yet filled
        # The questions asked and answered (the latest), by number, and the
        # fences' own Slots (see Fence): the question that carried them
        # filled (None: none yet).
        self.asked = 0
        self.answered = 0
        self.through_at: dict[Slot, int | None] = {}
        self.placed: dict[Slot, int] = {}  # sent as places, not yet filled: their numbers
        self.next_place = 0
        # The places other acceptors sent, by (acceptor, number).
        self.places: dict[tuple[int, int], Hold] = {}

    def fence(self, client: Client, since: int, holds: list[Hold]) -> None:
        """Make ``client``'s replies from ``since`` on wait until the other
        acceptors have every line given to this stand-in so far, and what
        fills its place in each of ``holds`` (the command's own)."""
        target = self.taken + len(self.pending)
        if target <= self.done or since >= len(client.pending):  # nothing on its way, or no reply yet
            return
        slots = [slot for hold in holds for slot in hold.slots if slot.client is self]
        for slot in slots:
            self.through_at[slot] = None
        fence = Fence(client, target, slots)
        client.pending.insert(since, fence)
        self.fences.append(fence)

    def flush(self) -> None:
        """Send what is here, in order, as one ``monitor`` question: lines,
        places for the Slots not filled yet, and the fills of places sent
        before (a placed Slot's ``deliver`` makes this monitor dirty again).
        The answer fills the fences of the replies that waited for it."""
        self.dirty = False
        pending = self.pending
        end = self.taken + len(pending)  # the count once this question is answered
        question = self.asked + 1
        through_at = self.through_at
        fills = []
        if self.placed:
            for slot, number in list(self.placed.items()):
                if slot.data is not None:
                    del self.placed[slot]
                    fills.append([number, slot.data])
                    if slot in through_at:
                        through_at[slot] = question
        items: list[bytes | int] = []
        lines: list[bytes] = []
        for item in pending:
            if isinstance(item, bytes):
                lines.append(item)
                continue
            data = item.data
            if data is not None:
                lines.append(data)
                if item in through_at:
                    through_at[item] = question
                continue
            if lines:
                items.append(b"".join(lines))
                lines = []
            self.next_place += 1
            self.placed[item] = self.next_place
            items.append(self.next_place)
        if lines:
            items.append(b"".join(lines))
        if not items and not fills:
            return
        self.taken = end
        self.asked = question
        pending.clear()
        self.server.bus.ask(bus.MONITOR, [fills, *items], lambda _answers: self._through(end, question))  # type: ignore[union-attr]

    def _through(self, end: int, question: int) -> None:
        """Question ``question``, which took the items up to ``end``, is
        answered: fill the fences that waited for it (their clients are
        flushed after the bus frame)."""
        self.done = max(self.done, end)
        self.answered = answered = max(self.answered, question)
        done = self.done
        through_at = self.through_at
        still = []
        for fence in self.fences:
            if fence.target <= done and all(_by(through_at[slot], answered) for slot in fence.slots):
                for slot in fence.slots:
                    del through_at[slot]
                fence.deliver(b"")
            else:
                still.append(fence)
        self.fences = still

    def drop(self) -> None:
        """Drop the lines still waiting here (no one left to show them to,
        or a bug); the replies waiting for anything go.  The places already
        sent are still filled when their Slots are (the others' monitors
        wait for them)."""
        self.taken += len(self.pending)
        self.pending.clear()
        fences, self.fences = self.fences, []
        self.through_at.clear()
        for fence in fences:
            fence.deliver(b"")
        self.done = max(self.done, self.taken)
        loop = self.server.loop
        if loop is not None:
            loop.call_soon(self.server.flush_dirty_clients)

    def failed(self, doing: str) -> None:
        """An unexpected exception (a bug) while ``doing``, being handled
        now (see Client.failed): the lines waiting here are dropped."""
        log.exception(
            "Dropping the lines for other acceptors' monitors after an internal error while %s", doing
        )
        self.drop()


def _by(question: int | None, answered: int) -> bool:
    """Whether question ``question`` (None: not asked yet) is answered,
    ``answered`` being the latest answered."""
    return question is not None and question <= answered


def _own(server: Acceptor) -> int:
    """How many of ``server.monitors`` are this acceptor's clients."""
    remote = server.remote_monitors
    return len(server.monitors) - (remote is not None and remote in server.monitors)


def _stand_in(server: Acceptor) -> RemoteMonitors:
    remote = server.remote_monitors
    if remote is None:
        remote = server.remote_monitors = RemoteMonitors(server)
    return remote


def _remote(server: Acceptor, origin: int, on: bool) -> None:
    remote = _stand_in(server)
    if on:
        remote.acceptors.add(origin)
    else:
        remote.acceptors.discard(origin)
    listed = remote in server.monitors
    if remote.acceptors and not listed:
        server.monitors.append(remote)  # type: ignore[arg-type]
    elif listed and not remote.acceptors:
        server.monitors.remove(remote)  # type: ignore[arg-type]
        remote.drop()


def bus_monitors(server: Acceptor, origin: int, args: list) -> int:
    """Acceptor ``origin`` has (1) or no longer has (0) monitors."""
    _remote(server, origin, bool(args[0]))
    return 1


def bus_monitor(server: Acceptor, origin: int, args: list) -> int:
    """Another acceptor's MONITOR lines (``[fills, *items]``, see
    :meth:`RemoteMonitors.flush`): the fills into the places it sent
    before, then each item, lines or a new place, to this one's own
    monitors, after what they have; all before the answer (1) goes (the
    bus writes them first, see Bus.received)."""
    remote = _stand_in(server)
    places = remote.places
    for number, data in args[0]:
        hold = places.pop((origin, number), None)
        if hold is not None:
            hold.put(data)
    if _own(server):
        for item in args[1:]:
            if type(item) is bytes:
                _send(server, item, skip=remote)
            else:
                places[origin, item] = Hold(server, skip=remote)
    return 1


def bus_monitoring(server: Acceptor, origin: int, args: list) -> int:
    """Whether this acceptor has monitors: its index, or -1."""
    return server.index if _own(server) else -1


def bus_hello(server: Acceptor, origin: int, args: list) -> None:
    """Acceptor ``origin`` (re)started: it has no monitors yet, and will
    fill none of the places it sent (they are emptied)."""
    _remote(server, origin, False)
    places = _stand_in(server).places
    for key in [key for key in places if key[0] == origin]:
        places.pop(key).put(b"")


def on_bus_start(server: Acceptor) -> None:
    """A (re)started acceptor: say so, and learn which others have monitors."""
    bus_ = server.bus
    bus_.tell(bus.HELLO, [])  # type: ignore[union-attr]

    def learned(indexes: list) -> None:
        for index in indexes:
            if index >= 0:
                _remote(server, index, True)

    bus_.ask(bus.MONITORING, [], learned)  # type: ignore[union-attr]
