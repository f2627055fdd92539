"""A client's mode: what decides how the acceptor treats its next command.

One :class:`ClientState` per connection (``Client.state``).  Every change
of it is one of the methods below, and nothing else assigns its
attributes (h11's rule: everything that affects the state lives in one
module; a unit test checks it).  The feature modules read the attributes
and call the transitions:

=================  ==========================================  =========================
mode               attributes                                  changed by
=================  ==========================================  =========================
authenticated      ``authenticated``, ``user`` (the ACL user   AUTH, HELLO AUTH, RESET,
                   it runs as)                                 CONFIG SET requirepass,
                                                               ACL DELUSER
in MULTI           ``multi`` (the queue), ``multi_error``      MULTI, a rejected command,
                                                               EXEC, DISCARD, RESET
watching keys      ``watching`` ((db, key) -> version)          WATCH, UNWATCH, EXEC
subscribed         ``channels``, ``patterns``,                 (P|S)(UN)SUBSCRIBE, RESET
                   ``shard_channels``
blocked            ``blocked_token``, ``held`` (the commands   BLPOP..., CLIENT PAUSE,
                   that came meanwhile), ``blocked_shown``     their end; shown once
                   (counted as blocked), ``scripts`` (those    its shards say it waits;
                   of :data:`SCRIPTS` on their way)            a script, its reply
reply mode         ``reply_mode``                              CLIENT REPLY
monitoring         ``monitoring``                              MONITOR, RESET
in EXEC            ``in_exec``, ``exec_size``                  EXEC running its queue
ports for EXEC     ``exec_ports`` (port -> whether every       an EXEC with CONFIG SET
                   other acceptor bound it)                    port (K > 1), its end
=================  ==========================================  =========================

The connection's own attributes (its protocol, database, name, whether it
is closing) stay on :class:`shardkv.acceptor.client.Client`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shardkv.acceptor.blocking import Pin
    from shardkv.protocol.acl import User
    from shardkv.protocol.resp import RequestParser

# CLIENT REPLY's modes
REPLY_ON, REPLY_OFF, REPLY_SKIP_NEXT, REPLY_SKIP = 0, 1, 2, 3

# A client's blocked_token while its (un)subscribe, CLIENT KILL... waits for
# the shards' scripts (shardkv.acceptor.blocking.serve_after_scripts); here,
# as dispatch must tell it too: such a command's MONITOR line goes when it
# runs, not when it is routed.
AFTER_SCRIPTS = -8
# A client's blocked_token while its EXEC waits for the shards' scripts
# (shardkv.acceptor.transactions._after_scripts): EXEC's MONITOR line goes
# once it has run or was refused, after its commands' lines, as in Redis.
SCRIPTS_FIRST = -7
# A client's blocked_token while scripts it sent may yet escape (run again
# across shards, shardkv.acceptor.scripting): what it sent behind them
# waits for their replies, as Redis runs them after the scripts.
SCRIPTS = -13


class ClientState:
    """One client's mode (see the module's table)."""

    __slots__ = (
        "_parser",
        "authenticated",
        "user",
        "multi",
        "multi_error",
        "watching",
        "channels",
        "patterns",
        "shard_channels",
        "blocked_token",
        "blocked_shown",
        "scripts",
        "held",
        "reply_mode",
        "flushed",
        "monitoring",
        "in_exec",
        "exec_parts",
        "exec_before",
        "exec_size",
        "unblock_after",
        "located",
        "unblock_pin",
        "exec_ports",
    )

    def __init__(self, parser: RequestParser, authenticated: bool, user: User) -> None:
        self._parser = parser  # its limits for unauthenticated clients follow ours
        self.authenticated = authenticated
        self.user = user
        parser.authenticated = authenticated
        # MULTI: the queued (command, args), None outside MULTI; a command
        # rejected while queueing makes EXEC abort.
        self.multi: list | None = None
        self.multi_error = False
        # WATCH: key -> the version its shard reported (None until then),
        # and the database of those keys.
        self.watching: dict[tuple[int, bytes], Any] | None = None
        # Each in the order subscribed (PUNSUBSCRIBE with no pattern leaves
        # them so, as Redis's list of a client's patterns has them).
        self.channels: dict[bytes, None] = {}
        self.patterns: dict[bytes, None] = {}
        self.shard_channels: dict[bytes, None] = {}  # SSUBSCRIBE's
        # Nonzero while a blocking command (BLPOP...) waits, or CLIENT PAUSE
        # postponed a command; the commands that come meanwhile are held,
        # and run when it ends (Client.resume).
        self.blocked_token = 0
        # Whether the wait counts as blocked where Redis shows it (INFO's
        # blocked_clients, CLIENT LIST's "b"): see ``blocked``.
        self.blocked_shown = False
        # The scripts on their way whose replies the client's later commands
        # wait for (SCRIPTS, see script_sent).
        self.scripts = 0
        self.held: list = []
        self.reply_mode = REPLY_ON
        # How many replies Client.flush has taken off the client's pending
        # ones, ever: where the replies of a command run under CLIENT REPLY
        # OFF or SKIP start once a flush while it ran took some (its own
        # PUBLISH's message to itself, see Dispatch._execute_quietly).
        self.flushed = 0
        self.monitoring = False
        self.in_exec = False  # EXEC is running this client's queued commands
        # While EXEC builds its array: its parts so far (replies, slots, see
        # transactions.Exec), for an UNSUBSCRIBE inside (pubsub._haunt).
        self.exec_parts: list | None = None
        self.exec_before: list | None = None
        # How many commands the last EXEC had queued (Redis's mstate.count,
        # which ACL LOG's client info of a script's refused call shows).
        self.exec_size = 0
        # What a CLIENT UNBLOCK of this client's waits for before it runs on
        # its shard (``__unblock``'s ``after``): -1 outside EXEC; inside, 0
        # (its batch) or the id of the EXEC's atomic operation.
        self.unblock_after = -1
        # Inside EXEC, with several acceptors: where the other acceptors'
        # clients its CLIENT UNBLOCKs name wait (id -> [pipe, shard, token]).
        self.located: dict[int, list[int]] | None = None
        # Inside EXEC, while its CLIENT UNBLOCKs of cross-shard waits run
        # ahead of its commands: the EXEC's ``blocking.Pin``, which holds
        # the clients they unblock until the transaction is decided.
        self.unblock_pin: Pin | None = None
        # With several acceptors, from an EXEC's wait before it runs until
        # it is over: the new ports of its CONFIG SETs, each with whether
        # every other acceptor bound it (shardkv.acceptor.listeners.bind_before_exec).
        self.exec_ports: dict[int, bool] = {}

    @property
    def subscribed(self) -> bool:
        return bool(self.channels or self.patterns or self.shard_channels)

    @property
    def blocked(self) -> bool:
        """Blocked as Redis shows it (INFO's ``blocked_clients``, CLIENT
        LIST's ``b``).  A blocking command counts only once its shards have
        run it and found nothing (:meth:`show_blocked`), not while it is on
        its way to them: Redis blocks a client and resolves XREAD's ``$`` in
        one step, so a client seen blocked must be woken by any write that
        follows, and with several acceptors that write can reach a shard
        before the command does."""
        return self.blocked_shown and self.blocked_token != 0

    # -- authentication -----------------------------------------------------------

    def authenticate(self, user: User | None = None) -> None:
        """Authenticated, as ``user`` when given (AUTH), else as before."""
        self.authenticated = True
        self._parser.authenticated = True
        if user is not None:
            self.user = user

    def reset_authentication(self, default: User) -> None:
        """RESET: the default user, authenticated only when it needs no password."""
        self.user = default
        self.authenticated = default.nopass and default.enabled
        self._parser.authenticated = self.authenticated

    def log_out(self, default: User) -> None:
        """ACL DELUSER of this client's user: the default user, not
        authenticated (Redis does so before it closes the connection)."""
        self.user = default
        self.authenticated = False
        self._parser.authenticated = False

    # -- MULTI --------------------------------------------------------------------

    def begin_multi(self) -> None:
        self.multi = []
        self.multi_error = False

    def queue(self, cmd: object, args: list[bytes]) -> None:
        self.multi.append((cmd, args))  # type: ignore[union-attr]

    def reject_in_multi(self) -> None:
        """A command was rejected: the transaction being queued will abort."""
        if self.multi is not None:
            self.multi_error = True

    def take_multi(self) -> list | None:
        """EXEC: the queue, and out of MULTI (``multi_error`` stays to read);
        ``exec_size`` is its length (ACL LOG's ``multi=`` while it runs)."""
        queued = self.multi
        self.multi = None
        if queued is not None:
            self.exec_size = len(queued)
        return queued

    def discard_multi(self) -> None:
        self.multi = None
        self.multi_error = False

    # -- WATCH --------------------------------------------------------------------

    def watch_in(self) -> dict[tuple[int, bytes], Any]:
        """The watched (database, key)s, a new table if none."""
        watching = self.watching
        if watching is None:
            watching = self.watching = {}
        return watching

    def drop_watches(self) -> dict[tuple[int, bytes], Any] | None:
        """Watch nothing; returns what was watched (a running EXEC may hold
        that table: the next WATCH makes a new one)."""
        watching = self.watching
        self.watching = None
        return watching

    # -- Pub/Sub ------------------------------------------------------------------

    def add_subscription(self, names: dict[bytes, None], name: bytes) -> bool:
        """Subscribe to ``name`` in ``names`` (this state's ``channels``,
        ``patterns`` or ``shard_channels``); False if already subscribed."""
        if name in names:
            return False
        names[name] = None
        return True

    def remove_subscription(self, names: dict[bytes, None], name: bytes) -> bool:
        """Unsubscribe from ``name`` in ``names`` (as for
        :meth:`add_subscription`); False if not subscribed."""
        if name not in names:
            return False
        del names[name]
        return True

    # -- blocked: a blocking command, or CLIENT PAUSE -------------------------------

    def block(self, token: int, shown: bool = True) -> None:
        """Hold the client's commands until ``unblock(token)``; ``shown``:
        counted as blocked at once (CLIENT PAUSE: Redis 7.0 blocks a
        postponed client), else only after :meth:`show_blocked` (a blocking
        command), or never (a client waiting for its holds or for its EXEC's
        database: Redis has no such wait to show)."""
        self.blocked_token = token
        self.blocked_shown = shown

    def show_blocked(self, token: int) -> None:
        """The blocking command ``token`` waits now (its shards found nothing)."""
        if self.blocked_token == token:
            self.blocked_shown = True

    def unblock(self, token: int) -> bool:
        """End the wait ``token``; False if the client waits for another."""
        if self.blocked_token != token:
            return False
        self.blocked_token = 0
        self.blocked_shown = False
        return True

    def settled(self, token: int) -> bool:
        """End the wait ``token``, set over a wait for the client's scripts
        (see ``shardkv.acceptor.blocking.try_at_once``): False while one
        of them is still on its way, the client waiting for it again
        (:data:`SCRIPTS`), or while the client waits for another."""
        if self.blocked_token != token:
            return False
        if self.scripts:
            self.blocked_token = SCRIPTS
            self.blocked_shown = False
            return False
        return self.unblock(token)

    def script_sent(self) -> bool:
        """A script the client sent may escape: its later commands wait for
        its reply (:data:`SCRIPTS`), and for those of the others on their
        way.  False, and nothing waits for it, while the client waits for
        something else (that wait holds them)."""
        token = self.blocked_token
        if token and token != SCRIPTS:
            return False
        self.blocked_token = SCRIPTS
        self.scripts += 1
        return True

    def scripts_sent(self, count: int) -> None:
        """``count`` more scripts on their way while the client waits for
        its scripts already (:data:`SCRIPTS`): :meth:`script_sent`'s count,
        taken once for a run of them (``scripting.behind_shortcuts``)."""
        self.scripts += count

    def script_answered(self) -> bool:
        """A script of :meth:`script_sent` answered (after its run again if
        it escaped); True when that ended the wait."""
        self.scripts -= 1
        if self.scripts or self.blocked_token != SCRIPTS:
            return False
        self.blocked_token = 0
        return True

    def hold(self, commands: Iterable) -> None:
        """Keep ``commands`` (args, raw) to run after the wait, in order."""
        self.held.extend(commands)

    def hold_first(self, command: tuple) -> None:
        """Keep ``command`` to run first after the wait (CLIENT PAUSE)."""
        self.held.insert(0, command)

    def take_held(self) -> list:
        held, self.held = self.held, []
        return held

    def take_held_first(self) -> tuple:
        """The first command held (one that runs before the wait ends:
        :meth:`shardkv.acceptor.holds.Holds._take_along`)."""
        return self.held.pop(0)

    # -- CLIENT REPLY, MONITOR, EXEC ------------------------------------------------

    def set_reply_mode(self, mode: int) -> None:
        self.reply_mode = mode

    def start_monitoring(self) -> bool:
        """False if already monitoring."""
        if self.monitoring:
            return False
        self.monitoring = True
        return True

    def stop_monitoring(self) -> bool:
        """False if not monitoring."""
        if not self.monitoring:
            return False
        self.monitoring = False
        return True

    def enter_exec(self) -> None:
        self.in_exec = True

    def leave_exec(self) -> None:
        self.in_exec = False

    def took_replies(self, n: int) -> None:
        """Client.flush took ``n`` replies off the pending ones (``flushed``)."""
        self.flushed += n

    def build_exec(self, parts: list | None) -> None:
        """EXEC builds its array in ``parts`` (None: done), which an
        UNSUBSCRIBE inside it looks at (pubsub._haunt)."""
        self.exec_parts = parts

    def run_exec_behind(self, before: list | None) -> None:
        """EXEC, routed command by command, runs behind ``before``: its
        client's replies queued ahead of it (None: done), which a PUBLISH
        inside it waits for (see pubsub._HeldPublish)."""
        self.exec_before = before

    def unblock_in_place(self, after: int) -> None:
        """The CLIENT UNBLOCKs this client runs now are an EXEC's, in its
        place: their ``__unblock`` waits for ``after`` (-1: outside EXEC)."""
        self.unblock_after = after

    def pin_unblocks(self, pin: Pin | None) -> None:
        """The CLIENT UNBLOCKs this client runs now hold the clients they
        unblock with ``pin`` (an EXEC's, see ``blocking.Pin``; None: not)."""
        self.unblock_pin = pin

    def bound_for_exec(self, port: int, bound: bool) -> None:
        """Every other acceptor bound ``port`` for this client's EXEC (or one could not)."""
        self.exec_ports[port] = bound

    def take_exec_port(self, port: int) -> bool | None:
        """A CONFIG SET of the EXEC moves to ``port``: whether the others
        bound it for the EXEC (None: not asked), forgotten here."""
        return self.exec_ports.pop(port, None)

    def take_exec_ports(self) -> dict[int, bool]:
        """The EXEC is over: the ports its CONFIG SETs did not take."""
        ports, self.exec_ports = self.exec_ports, {}
        return ports

    def locate(self, located: dict[int, list[int]] | None) -> None:
        """Where the other acceptors' clients this EXEC's UNBLOCKs name wait
        (None once it ran)."""
        self.located = located
