"""Transactions: MULTI, EXEC, DISCARD, WATCH and UNWATCH, across shards.

Inside MULTI the acceptor queues each command (:func:`queue`, one of the
acceptor's interceptors) and replies ``+QUEUED``; a command rejected while
queueing (unknown, wrong arity, not authenticated) makes EXEC abort.  EXEC
then runs the whole queue at one place in the acceptor's global order, in
one of two ways:

* Nothing watched, and the writes on one shard at most: every command is
  routed as if it came alone, all in this one turn of the acceptor's loop.  Each shard receives the
  transaction's commands back to back, with no other client's command
  between them, and every shard sees them at the same place in the global
  order; a command that spans shards is atomic by itself.  So the whole
  transaction is as isolated as one command, at the cost of none.
* Keys watched, a blocking command queued, or writes on several shards:
  the check of the watched keys and the commands must happen in one step,
  and the writes must all happen or none, whatever process dies (the
  commit protocol of :mod:`shardkv.acceptor.crossshard`), so the commands that need
  data run as one :class:`shardkv.acceptor.crossshard.AtomicOp`.  It parks every
  shard they touch (every shard, for an ``all`` command such as FLUSHALL
  or DBSIZE) and the shards of the watched keys, and runs the commands on
  one executor shard, unless a watched key changed.  The commands the
  acceptor answers itself (PING, ECHO, PUBLISH, CONFIG...) take no keys,
  so they run in the acceptor once the operation has succeeded, and their
  replies are spliced into the EXEC array at their positions; but a
  SWAPDB that commands needing data follow runs on the executor, in its
  place (see :func:`_swaps_on_executor`).

WATCH asks each key's shard for the key's *version* (``__watch``); a shard
bumps the version of a watched key when a command changes it, and on its
deletion, expiry and flush, where Redis calls ``signalModifiedKey``: a
write that changes nothing (DEL of a missing key, SADD of a member it
holds) leaves it alone (see ``Keyspace.touch``).  At EXEC the parked
shards report the versions again, and the operation is abandoned, EXEC
replying with a null array, if any differs.
The acceptor records the version as soon as the shard's reply arrives;
since a pipe is FIFO, that reply always comes before the same shard's
answer to a later EXEC's ``__park``.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from shardkv.acceptor import listeners, monitor
from shardkv.acceptor.blocking import (
    EAGER_KEYS,
    Pin,
    UnblockReply,
    after_scripts,
    after_this_step,
    queue_after_scripts,
    script_ran_across,
    serve_after_scripts,
    settle_script,
    waiting_shard,
)
from shardkv.acceptor.client import Client
from shardkv.acceptor.crossshard import AtomicOp
from shardkv.acceptor.dispatch import db_headers
from shardkv.acceptor.holds import Gate
from shardkv.acceptor.replies import (
    AFTER_EVENTS,
    ExecPlace,
    InReply,
    Pushed,
    Slot,
    split_within,
    wait_after_exec,
)
from shardkv.acceptor.shardlink import BUSY_LINKS, RUNNING_LINKS, at_threshold, busy_refusal
from shardkv.acceptor.state import SCRIPTS_FIRST
from shardkv.acceptor.users import UsersInExec, hold_for_changes
from shardkv.protocol import acl, bus, errors
from shardkv.protocol.args import parse_int32
from shardkv.protocol.commands import Command, allowed_while_busy, lookup, other_db_keys
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import encode_command, encode_error
from shardkv.protocol.wire import Verb, decode_part
from shardkv.runtime import config
from shardkv.runtime.cmdstats import stat_name

# Commands that run at once even inside MULTI, as in Redis's processCommand.
NOT_QUEUED = frozenset({"exec", "discard", "multi", "watch", "quit", "reset"})

_QUEUED = b"+QUEUED\r\n"
_OK = b"+OK\r\n"


def queue(client: Client, cmd: Command, args: list[bytes]) -> bool:
    """The interceptor: inside MULTI, queue the command instead of running
    it.  While a worker runs a script (``RUNNING_LINKS``: one past its
    first count hook), any command waits for the shards' scripts before
    its ``+QUEUED``, as Redis reads nothing then: it is queued after the
    script, or answered ``-BUSY`` at busy-reply-threshold (the EXEC then
    ``-EXECABORT``s).  So do the acceptor's own commands that wait for
    them outside MULTI (CLIENT KILL...), whenever a script may run (see
    queue_after_scripts)."""
    if client.state.multi is None or cmd.name in NOT_QUEUED:
        return False
    if RUNNING_LINKS or _waits_for_scripts(cmd, args):

        def queue_it() -> None:
            client.state.queue(cmd, args)
            client.pending.append(_QUEUED)

        # (an allow-busy one, SCRIPT KILL, AUTH...: Redis queues it at the threshold too)
        queue_after_scripts(client, args, queue_it, allowed_while_busy(cmd.name, args))
        return True
    client.state.queue(cmd, args)
    client.pending.append(_QUEUED)
    return True


def _waits_for_scripts(cmd: Command, args: list[bytes]) -> bool:
    """CLIENT KILL, PAUSE, UNPAUSE or WAIT: the acceptor's own commands
    that act on other clients, which wait for the shards' scripts (see
    blocking.serve_after_scripts), queued or in an EXEC too."""
    if cmd.name == "wait":
        return True
    return cmd.name == "client" and len(args) > 1 and args[1].upper() in (b"KILL", b"PAUSE", b"UNPAUSE")


# -- MULTI, DISCARD ----------------------------------------------------------


def multi(client: Client, args: list[bytes]) -> None:
    """MULTI"""
    if client.state.multi is not None:
        client.reply_error(errors.MULTI_NESTED)
        return
    client.state.begin_multi()
    client.pending.append(_OK)


def discard(client: Client, args: list[bytes]) -> None:
    """DISCARD"""
    if client.state.multi is None:
        client.reply_error(errors.DISCARD_WITHOUT_MULTI)
        return
    discard_transaction(client)
    client.pending.append(_OK)


def discard_transaction(client: Client) -> None:
    """Forget the queued commands and the watched keys (DISCARD, RESET, an
    EXEC that aborts), and the ports bound for the EXEC's CONFIG SETs."""
    client.state.discard_multi()
    unwatch_all(client)
    listeners.release_exec_ports(client)


# -- WATCH, UNWATCH ----------------------------------------------------------


class _WatchPart:
    """Records the versions one shard reports for a WATCH's keys, which
    ``watching`` names ``(database, key)``; with several acceptors, fills
    WATCH's reply once the last part is in (``done``)."""

    __slots__ = ("watching", "keys", "db", "done")

    def __init__(
        self,
        watching: dict[tuple[int, bytes], int | None],
        keys: list[bytes],
        db: int,
        done: _WatchDone | None = None,
    ) -> None:
        self.watching = watching
        self.keys = keys
        self.db = db
        self.done = done

    def deliver(self, body: bytes) -> None:
        if self.done is not None:
            self.done.part_in()
        if body[:1] == b"-":
            return  # the shard is gone: the versions stay unknown, EXEC aborts
        db = self.db
        for key, version in zip(self.keys, decode_part(body), strict=False):  # type: ignore[call-overload]
            self.watching[db, key] = version


class _WatchDone:
    """With several acceptors, WATCH answers OK only once every shard has
    recorded its keys' versions: a write that another acceptor sends a
    shard after the OK must count as a change, and without one global
    order it could otherwise reach the shard before the ``__watch``."""

    __slots__ = ("slot", "left")

    def __init__(self, slot: Slot, parts: int) -> None:
        self.slot = slot
        self.left = parts

    def part_in(self) -> None:
        self.left -= 1
        if not self.left:
            self.slot.deliver(_OK)


class _Ignore:
    """A sink for replies nobody waits for (``__unwatch``)."""

    __slots__ = ()

    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


class _Unwatched(_Ignore):
    """The sink of an ``__unwatch``: sent even when its step is refused
    whole (``arrives``: see ``holds.Holds._send_whole_steps``), as the
    acceptor's own message, or the shard would count the watcher for ever
    (a refused EXEC is discarded, its WATCH with it)."""

    __slots__ = ()
    arrives = True


_UNWATCHED = _Unwatched()


class _Served(Slot):
    """The answer to the ``__serve`` that ends a transaction's commands on a
    shard they wrote, among EXEC's parts after their replies, adding
    nothing to the array: the events of the blocked commands its writes
    served come there, after the array's last reply, where Redis writes
    them to EXEC's client, serving those clients once EXEC ran (they came
    after the replies of the commands pipelined behind EXEC)."""

    __slots__ = ()

    def deliver(self, body: bytes) -> None:
        super().deliver(b"")


# BGSAVE and BGREWRITEAOF inside EXEC: what the other shards are told (see
# _schedule_elsewhere).
_SCHEDULES = {"bgsave": b"save", "bgrewriteaof": b"rewrite"}


def _schedule_elsewhere(client: Client, executor: int, kinds: list[bytes]) -> None:
    """An EXEC's BGSAVE or BGREWRITEAOF, which its executor scheduled (as
    Redis's, which never forks while in_exec, answers "Background saving
    scheduled" or "Background append only file rewriting scheduled", its
    serverCron starting it after the EXEC): every other shard schedules its
    own too (``__schedule``), so that each saves, as they all would for
    one outside EXEC."""
    for kind in kinds:
        command = encode_command([Verb.SCHEDULE, kind])
        for link in client.server.links:
            if link.index != executor:
                link.send(db_headers(0)[0][0], command, _IGNORE, control=True)


def watch(client: Client, args: list[bytes]) -> None:
    """WATCH key [key ...]"""
    if client.state.multi is not None:
        client.reply_error(errors.WATCH_IN_MULTI)
        return
    watching = client.state.watch_in()
    server = client.server
    shard_of = server.shard_of
    db = client.db
    by_shard: dict[int, list[bytes]] = {}
    for key in args[1:]:
        if (db, key) not in watching:  # watching a key twice keeps the first version
            watching[db, key] = None
            by_shard.setdefault(shard_of(key), []).append(key)
    links = server.links
    done = None
    # A shard busy with a script past busy-reply-threshold runs the __watch
    # once the script ends (sent as an acceptor's own message, not refused
    # -BUSY: WATCH is allow-busy, and the key must not stay unknown, which
    # would abort the EXEC).  No command of any client reads its keys before
    # that (they get -BUSY, or run after the script), so the version it
    # records is the one Redis's WATCH would have seen for them.
    waits = [shard for shard in by_shard if not links[shard].busy]
    if server.holds is not None and waits:  # several acceptors
        slot = Slot(client)
        done = _WatchDone(slot, len(waits))
    # While a script is busy (on any shard) Redis reads the WATCH at once,
    # and the script's later writes to the key fail the EXEC: a __watchb,
    # which the worker runs ahead of the script's end (see
    # shardkv.worker.busywatch), sent now, before the OK leaves (the
    # client may make the script go on after it).
    busy = bool(BUSY_LINKS)
    verb = Verb.WATCH_BUSY if busy else Verb.WATCH
    for shard, keys in by_shard.items():
        link = links[shard]
        link.send(
            db_headers(db)[1][0],
            encode_command([verb, *keys]),
            _WatchPart(watching, keys, db, None if link.busy else done),
            control=bool(link.busy),
        )
        if busy:
            link.flush()
    # The reply is always OK.  Any command that reaches the acceptor after
    # this one is queued on the shard's pipe after the __watch above.
    client.pending.append(_OK if done is None else done.slot)


def unwatch(client: Client, args: list[bytes]) -> None:
    """UNWATCH"""
    unwatch_all(client)
    client.pending.append(_OK)


def unwatch_all(client: Client) -> None:
    """Tell the shards that this client no longer watches its keys."""
    _unwatch(client, client.state.drop_watches())  # a new table next time: a running EXEC holds this one


def _unwatch(client: Client, watching: dict[tuple[int, bytes], Any] | None) -> None:
    """Tell the shards that nobody watches the keys of ``watching`` for
    ``client`` any more (UNWATCH's ``__unwatch``)."""
    if not watching:
        return
    server = client.server
    shard_of = server.shard_of
    by_shard: dict[tuple[int, int], list[bytes]] = {}
    for db, key in watching:
        by_shard.setdefault((shard_of(key), db), []).append(key)
    links = server.links
    for (shard, db), keys in by_shard.items():
        link = links[shard]
        # Not refused -BUSY (the shard would count the watchers still):
        # queued behind the busy script instead.
        link.send(
            db_headers(db)[0][0], encode_command([Verb.UNWATCH, *keys]), _UNWATCHED, control=bool(link.busy)
        )


def on_disconnect(client: Client) -> None:
    """The client's queue goes, and its watched keys (those of an EXEC that
    still waits were taken by it, see :func:`exec_`)."""
    client.state.take_multi()
    unwatch_all(client)
    listeners.release_exec_ports(client)


# -- EXEC --------------------------------------------------------------------


class _Barrier:
    """Never ready: at the head of a reply queue, it stops ``flush``."""

    __slots__ = ()
    data = None


_BARRIER = _Barrier()


def run_local_captured(client: Client, cmd: Command, args: list[bytes]) -> list:
    """Run an acceptor command and return its reply items instead of sending them.

    A handler may queue more than one item (SUBSCRIBE a b), or a slot that
    a shard fills later (INFO); a Pub/Sub message to the client itself
    lands among them, as it does inside Redis's EXEC.
    """
    saved = client.pending
    captured: deque = deque((_BARRIER,))
    client.pending = captured
    client.state.enter_exec()
    try:
        client.server.run_local(client, cmd, args)
    finally:
        client.pending = saved
        client.state.leave_exec()
    captured.popleft()
    return list(captured)


class Exec:
    """EXEC's place in the client's reply order.

    Like a :class:`~shardkv.acceptor.replies.Slot`, it has ``data``: None until every
    part of the reply array is in.  ``parts`` holds, in command order, reply
    bytes or slots; ``outcome`` is the slot of the atomic operation, if one
    runs, which holds the whole reply when it failed or aborted.
    """

    __slots__ = (
        "count",
        "parts",
        "outcome",
        "_data",
        "denied",
        "cut",
        "notes",
        "trailer",
        "watched",
        "place",
        "name",
        "line_due",
        "line_held",
        "refusals",
        "refused_last",
        "muted",
        "silenced",
        "silent",
    )

    def __init__(
        self,
        count: int,
        denied: dict[int, bytes] | None = None,
        cut: int | None = None,
        notes: list[tuple] | None = None,
        refusals: list[tuple[str | None, str]] | None = None,
        refused_last: bool = False,
    ) -> None:
        self.count = count
        self.parts: list | None = None
        self.outcome: Slot | None = None
        self._data: bytes | None = None
        # The queued commands the client's ACL user may no longer run, by
        # position: their errors, in place of replies (they did not run).
        self.denied = denied
        # How many replies the client gets, if not all: the commands after an
        # ACL DELUSER of its own user run, but Redis writes nothing more to
        # a client it closes after the command (the array's length stays).
        self.cut = cut
        # ACL LOG's entries of the refused commands and AUTHs, in order
        # (the ``Users.note`` arguments after the client): logged once the
        # transaction runs, as Redis checks each command just before it
        # runs it, and nothing when a WATCHed key aborts it.
        self.notes = notes
        # The errors of ``denied``, counted once it runs (not when a WATCHed
        # key aborts it, or a busy script refuses it): (None, a ``-NOPERM``),
        # EXEC's own error reply, as Redis's execCommand answers it; (a stat
        # name, SORT's own error), that SORT's failed call, as Redis's SORT
        # answers it as it runs.  ``refused_last``: the last queued command
        # is refused ``-NOPERM`` (EXEC's failed call, see log_refusals).
        self.refusals = refusals
        self.refused_last = refused_last
        # Messages pushed to the client while EXEC ran its commands (an
        # invalidation of a key evicted over tracking-table-max-keys): they
        # follow the array, as Redis writes them after EXEC's reply.
        self.trailer: list[bytes] = []
        # The keys the client WATCHed, with the versions their shards
        # reported, taken when EXEC was read (see :func:`exec_`).
        self.watched: dict[tuple[int, bytes], Any] | None = None
        # While someone monitors: the place before EXEC's line where its
        # commands' lines go once they ran (see monitor.exec_place).
        self.place: monitor.Hold | None = None
        # EXEC's own line is still to be fed, once it runs (an EXEC that
        # waited for the shards' scripts, see _show_exec).
        self.line_due = False
        # An atomic EXEC whose SELECT changes the client's database: True
        # while its line is to be fed, then the place in every monitor's
        # stream where it goes once the EXEC is decided, in the database
        # the client is left in (see monitor.feed and _Settle).
        self.line_held: bool | monitor.Hold = False
        # EXEC as the client wrote it: how its errors name it (an
        # operation's errors.INTERNAL), as every command's are named.
        self.name = b"EXEC"
        # CLIENT REPLY OFF (SKIP) dropped the array: see mute.
        self.muted = False
        # The queued commands (those that run, by position) after a CLIENT
        # REPLY OFF inside, until a CLIENT REPLY ON: their replies are
        # dropped, as Redis drops what they add to EXEC's array (its
        # length stays that of the whole), their messages kept (see
        # silence); and the slots among their parts, by id, whose replies
        # are dropped once in (a message meant to come before one of them,
        # pubsub._in_exec_or_after, still finds it).
        self.silenced: set[int] | None = None
        self.silent: set[int] | None = None

    def mute(self) -> Exec:
        """CLIENT REPLY OFF or SKIP drops EXEC's reply: it stays in the
        client's reply order all the same, for the messages its commands
        make the client hear (their keyspace events, a script's PUBLISH),
        which it then carries alone, as Redis writes them whatever the
        reply mode (CLIENT_PUSHING)."""
        self.muted = True
        return self

    def silence(self, i: int, parts: list, start: int) -> None:
        """The queued command ``i`` (of those that run) left its parts in
        ``parts`` from ``start``: if it runs under a CLIENT REPLY OFF of the
        transaction's (:attr:`silenced`), drop its replies and keep the
        messages among them (its keyspace events, a PUBLISH's to the
        client itself, a Pub/Sub confirmation), as Redis writes them
        whatever the reply mode (CLIENT_PUSHING)."""
        if self.silenced is None or i not in self.silenced:
            return
        for j in range(start, len(parts)):
            part = parts[j]
            if type(part) is bytes:
                parts[j] = b""
            elif type(part) is not ExecPlace and type(part) is not Pushed and type(part) is not InReply:
                if self.silent is None:
                    self.silent = set()
                self.silent.add(id(part))

    def log_refusals(self, client: Client) -> None:
        """The transaction runs: ACL LOG's entries of its refusals, and
        their errors counted (:attr:`refusals`), marked counted for EXEC
        (``Stats.error_mark``), as this may come after EXEC's own count.
        EXEC failed only if its last queued command is refused ``-NOPERM``,
        as in Redis, where each queued command that runs (``call()``) resets
        the errors that EXEC's ``incrCommandStatsOnError`` compares: a
        refusal followed by a command that runs is no failed call of EXEC's
        (an error all the same)."""
        if self.refusals:
            stats = client.server.stats
            for name, message in self.refusals:
                if name is None:  # -NOPERM: EXEC's own error reply
                    stats.error(message)
                else:  # SORT's own error: a failed call of no time, as dispatch counts it
                    stats.record(name, 0, message)
            if self.refused_last:
                stats._row("exec")[3] += 1
            stats.error_mark = stats.error_events
            self.refusals = None
        if self.notes:
            users = client.server.users
            for note in self.notes:
                users.note(client, *note)
            self.notes = None

    @property
    def data(self) -> bytes | None:
        if self._data is None:
            self._data = self._build()
        return self._data

    def _build(self) -> bytes | None:
        if self.outcome is not None:
            body = self.outcome.data
            if body is None:
                return None
            if self.parts is None:  # a watched key changed, or a shard failed
                return b"" if self.muted else body
        elif self.parts is None:  # not run yet (see _after_decided)
            return None
        out = [b"*%d\r\n" % self.count]
        places = None
        ahead = b""  # the messages of the ExecPlace before the next reply
        behind = b""  # and those after it (ExecPlace.trail)
        within: list = []  # and those inside it (ExecPlace.inside)
        heard: list[bytes] = []  # (muted: the messages alone)
        for part in self.parts:
            if type(part) is not bytes:
                if type(part) is ExecPlace:
                    places = places or []
                    places.append(part)
                    if part.pushes:
                        pushes = part.messages()
                        ahead += b"".join(pushes)
                        heard += pushes
                    if part.inside:
                        within = part.inside
                        heard += [body for _, body in within]
                    if part.trail:
                        behind += b"".join(part.trail)
                        heard += part.trail
                    continue
                if type(part) is Pushed:  # (see pubsub._in_exec_or_after)
                    heard.append(part.data)
                elif type(part) is InReply and (
                    self.muted or (self.silent is not None and id(part.slot) in self.silent)
                ):
                    # (its reply dropped: the messages alone, in its place)
                    heard.append(part.messages())
                    out.append(part.messages())
                    continue
                silent = self.silent is not None and id(part) in self.silent
                part = part.data
                if part is None:
                    return None
                if silent:
                    part = b""
            if within:
                part = b"".join(split_within(part, within))
                within = []
            if ahead:
                part, ahead = ahead + part, b""
            if behind:
                part, behind = part + behind, b""
            out.append(part)
        if places:
            for place in places:  # (what they hear from now on follows the array)
                place.closed = True
        if self.muted:
            return b"".join(heard if self.cut is not None else heard + self.trailer)
        if self.denied:
            for i in sorted(self.denied):
                out.insert(i + 1, self.denied[i])
        if self.cut is not None:
            del out[self.cut + 1 :]  # and nothing after: not the trailer either
        else:
            out.extend(self.trailer)
        return b"".join(out)


def exec_(client: Client, args: list[bytes]) -> None:
    """EXEC"""
    state = client.state
    if RUNNING_LINKS and (state.multi is None or state.multi_error):
        # A worker runs a script: Redis reads this EXEC after it, or at
        # busy-reply-threshold refuses it first, as it refuses any EXEC
        # then (EXECABORT with the -BUSY, not its own error; see
        # blocking._refused_after_scripts).  One that runs a transaction
        # waits below, in _after_scripts.
        serve_after_scripts(client, _exec, args)
        return
    _exec(client, args)


def _exec(client: Client, args: list[bytes]) -> None:
    queued = client.state.take_multi()
    if queued is None:
        client.reply_error(errors.EXEC_WITHOUT_MULTI)
        return
    if client.state.multi_error:
        discard_transaction(client)
        client.reply_error(errors.EXECABORT)
        return
    # What the client queued, ACL refusals included: an EXEC holding a kill
    # or an unblock waits for the shards' scripts even if the ACL rules
    # now refuse it (below), as Redis checks them only when EXEC runs,
    # after its -BUSY check (processCommand, then execCommand).
    asked = queued
    denied = None
    cut = None  # how many replies the client gets, if it closes after EXEC
    notes: list[tuple] = []  # ACL LOG's entries of its refusals, once it runs
    refusals: list[tuple[str | None, str]] = []  # their errors (Exec.refusals)
    refused_last = False  # the last queued command is refused -NOPERM
    user = client.state.user
    if not user.unlimited or any(cmd.name in UsersInExec.COMMANDS for cmd, _ in queued):
        # ACL rules may have changed since the commands were queued, or
        # change in the transaction: Redis checks each command again just
        # before it runs, and answers an error for each refused one.
        denied = {}
        allowed = []
        notes = []
        later = UsersInExec(client.server.users, user, lambda args: _config_set_passes(client, args))
        # Each entry shows the client as Redis's is while EXEC runs: flagged
        # MULTI with its queued count, its last command EXEC (c->lastcmd).
        size = len(queued)
        for i, (cmd, queued_args) in enumerate(queued):
            user = later.user
            kind, pos = user.check(cmd, queued_args)
            problem = None if kind else user.sort_denied(cmd.name, queued_args)
            refused_last = bool(kind)
            if problem is not None:  # SORT's own error (its BY or GET patterns)
                refusals.append((stat_name(queued_args), problem))
                denied[i] = encode_error(problem)
            elif kind:
                refusals.append((None, errors.NOPERM_EXEC % _EXEC_REASONS[kind]))
                denied[i] = encode_error(refusals[-1][1])
                logged = (
                    acl.full_name(cmd, queued_args).encode() if kind == acl.DENIED_CMD else queued_args[pos]
                )
                notes.append(([b"exec"], acl.LOG_REASONS[kind], "multi", logged, user.name, size))
            else:
                allowed.append((cmd, queued_args))
                if later.ran(cmd.name, queued_args) and cut is None:
                    cut = i + 1
                if later.refused is not None:  # logged in its place among the refusals
                    obj = b"HELLO" if cmd.name == "hello" else b"AUTH"
                    notes.append(([b"exec"], "auth", "multi", obj, later.refused, size))
        queued = allowed
    reply = Exec(len(queued) + len(denied or ()), denied, cut, notes, refusals, refused_last)
    reply.name = args[0]
    reply.silenced = _after_reply_off(asked, denied)
    # Redis checks the watched keys as it reads EXEC, and the client cannot
    # go before: the transaction takes them now, as they are, even if it
    # waits (a CLIENT UNBLOCK inside) and the client goes or is killed
    # meanwhile.  Its own __unwatch, after its __park, tells the shards they
    # are not watched any more: a disconnect's would come before the
    # __park, and a shard forgets the version of a key nobody watches.
    reply.watched = client.state.drop_watches()
    if client.server.monitors:
        reply.place = monitor.exec_place(client)
    if any(_is_unblock(cmd, args) or _waits_for_scripts(cmd, args) for cmd, args in asked) or (
        RUNNING_LINKS and any(_is_deluser(cmd, args) for cmd, args in asked)
    ):
        _after_scripts(client, queued, reply, after_scripts)
    elif any(_is_kill(cmd, args) for cmd, args in asked):
        _after_scripts(client, queued, reply, _at_threshold)
    elif RUNNING_LINKS:
        # A worker runs a script: Redis reads the EXEC after it, or refuses
        # it at busy-reply-threshold (EXECABORT, nothing run), whatever
        # shards its commands touch, as it refuses a command being queued
        # then (see queue).  Routed now, a read's part waited behind the
        # script and ran after it, or got the -BUSY of a hold a busy shard
        # refused (several acceptors) inside EXEC's array.
        _after_scripts(client, queued, reply, after_scripts)
    else:
        _begin(client, queued, reply)
    client.pending.append(reply)


def _after_reply_off(asked: list, denied: dict[int, bytes] | None) -> set[int] | None:
    """The positions, among the queued commands that run, of those after a
    CLIENT REPLY OFF of the transaction's (``asked``: every queued
    command; ``denied``: the errors of those the ACL rules refuse, by
    position there) and before a CLIENT REPLY ON, if any: Redis drops
    their replies (the refusals' errors too, left empty in ``denied``)."""
    off = False
    silenced: set[int] | None = None
    ran = 0  # (the position among those that run)
    for i, (cmd, args) in enumerate(asked):
        if denied is not None and i in denied:
            if off:
                denied[i] = b""
            continue
        if cmd.name == "client" and len(args) == 3 and args[1].lower() == b"reply":
            mode = args[2].lower()
            if mode == b"off":
                off = True
            elif mode == b"on":
                off = False
        if off:
            if silenced is None:
                silenced = set()
            silenced.add(ran)
        ran += 1
    return silenced


def _config_set_passes(client: Client, args: list[bytes]) -> bool:
    """Whether the queued CONFIG SET ``args`` passes CONFIG SET's checks
    (its values over the settings as they are now)."""
    try:
        client.server.wiring.config_set_changes(client, args)
    except CommandError:
        return False
    return True


_EXEC_REASONS = {
    acl.DENIED_CMD: "no permission to execute the command or subcommand",
    acl.DENIED_KEY: "no permission to touch the specified keys",
    acl.DENIED_CHANNEL: "no permission to access one of the channels used as arguments",
}


def _begin(client: Client, queued: list, reply: Exec) -> None:
    elsewhere = _elsewhere(client, queued)
    if elsewhere:
        _locate(client, elsewhere, lambda: _start(client, queued, reply))
    else:
        _start(client, queued, reply)


def _after_scripts(
    client: Client,
    queued: list,
    reply: Exec,
    wait: Callable[[Any, Callable[[int | bytes], None], Callable[[], None]], None],
) -> None:
    """Run an EXEC with CLIENT UNBLOCK, SCRIPT KILL or FUNCTION KILL (or
    CLIENT KILL, PAUSE, UNPAUSE, WAIT: see :func:`_waits_for_scripts`; or
    any, read while a worker runs a script: see :func:`exec_`) once no
    shard runs a busy script.

    Neither CLIENT UNBLOCK nor EXEC has the allow-busy flag: Redis runs
    nothing while a script runs, and answers an EXEC sent meanwhile, once
    the script is past busy-reply-threshold, ``EXECABORT`` with the
    ``-BUSY`` error; the transaction is discarded and the client it would
    unblock stays blocked.  A script on a shard the transaction does not
    touch would not hold it back here, so first every shard answers a
    ``__ping`` (one more round trip), as for a CLIENT UNBLOCK outside EXEC;
    if one reports a busy script meanwhile, EXECABORT now
    (``wait``: blocking.after_scripts).  A SCRIPT KILL or FUNCTION KILL
    queued (allow-busy: queued while a script is busy) never runs beside
    one either: the EXEC is decided as Redis would read it
    (:func:`_at_threshold`), and the kill that runs finds no busy script
    (``-NOTBUSY``, see scripting.kill_script).  Meanwhile the client's
    later commands wait.  A client that goes away meanwhile does not stop
    it (its reply is dropped): Redis runs an EXEC it has read.

    The EXEC is counted (INFO commandstats, errorstats) once decided, as
    Redis counts it when it reads it: a call (and its time) when it runs,
    a rejected call and an ``EXECABORT`` error when refused
    (``Acceptor.calls_deferred``)."""
    client.state.block(SCRIPTS_FIRST, shown=False)
    server = client.server
    server.calls_deferred += 1

    def refused(busy: int | bytes) -> None:
        client.state.unblock(SCRIPTS_FIRST)
        _unwatch(client, reply.watched)
        listeners.release_exec_ports(client)
        if reply.place is not None:  # it did not run: no lines
            reply.place.put(b"")
        reply.outcome = outcome = Slot(client)
        message = busy.decode("latin-1")[1:].strip() if isinstance(busy, bytes) else str(busy)
        error = errors.EXECABORT_BECAUSE % message
        server.stats.rejected("exec", error)  # as dispatch's reject of an EXEC
        outcome.deliver(encode_error(error))
        _show_exec(client, reply)
        if client.waiting() and not client.state.blocked_token:
            server.loop.call_soon(client.resume)  # type: ignore[union-attr]

    def ran() -> None:
        client.state.unblock(SCRIPTS_FIRST)
        cmd = lookup(reply.name)
        assert cmd is not None  # (EXEC is in the table)
        # Even if the client went away; counted as EXEC's call now.
        _step(
            client,
            lambda: server.run_counted(
                client, cmd, [reply.name], lambda c, a: _begin_shown(c, queued, reply)
            ),
        )

    wait(server, refused, ran)


def _begin_shown(client: Client, queued: list, reply: Exec) -> None:
    """:func:`_begin`; EXEC's MONITOR line once it runs (see :func:`_show_exec`)."""
    reply.line_due = True
    _begin(client, queued, reply)


def _show_exec(client: Client, reply: Exec) -> None:
    """EXEC's MONITOR line, for an EXEC that waited for the shards'
    scripts (dispatch did not feed it as it was read), once it was refused
    or has run (:func:`_run`, after locating and deciding other acceptors'
    CLIENT UNBLOCKs): after the lines of its commands, routed just now (or
    in its place, see monitor.exec_place), as Redis's call() feeds EXEC
    once it has run."""
    if not client.server.monitors:
        return
    cmd = lookup(reply.name)
    if cmd is None:  # (EXEC is in the table)
        return
    since = next((i for i, sent in enumerate(client.pending) if sent is reply), None)
    monitor.feed(client, cmd, [reply.name], since=since)


def _at_threshold(server: object, refused: Callable[[int | bytes], None], then: Callable[[], None]) -> None:
    """Call ``then`` when Redis would read an EXEC read now, if no script
    is busy then, else ``refused`` with the busy script's ``-BUSY``: Redis
    reads nothing while a script runs until it is past busy-reply-threshold
    (shardlink.at_threshold), then refuses the EXEC.  An EXEC with SCRIPT
    KILL or FUNCTION KILL: the kill's answer is Redis's EXECABORT whatever
    the script's kind or writes (see _after_scripts)."""

    def decide() -> None:
        busy = busy_refusal() if BUSY_LINKS else None
        if busy is not None:
            refused(busy)
        else:
            then()

    at_threshold(server, decide)


def _step(client: Client, run: Callable[[], None]) -> None:
    """Call ``run``, a part of the client's EXEC that waited for an answer,
    as one step of the acceptor's order of its own (with several
    acceptors an atomic EXEC's ``__park``s wait for their holds, and what
    follows them, its ``__unwatch``s, must not pass them), then let the
    client's later commands go on unless something else holds them."""
    server = client.server
    holds = server.holds
    if holds is not None:
        holds.begin()
    try:
        run()
    finally:
        if holds is not None:
            holds.end(client, len(client.pending))
    if not client.dirty:  # the EXEC's reply may be whole now
        client.dirty = True
        server.dirty_clients.append(client)
    # Written this turn even if no shard answers (an EXEC whose commands
    # all answer here, ACL refusals say: nothing else flushes it).
    server.flush_clients_soon()
    if client.waiting() and not client.state.blocked_token:
        server.loop.call_soon(client.resume)  # type: ignore[union-attr]


def _start(client: Client, queued: list, reply: Exec) -> None:
    early, asked, pin = _unblocks_first(client, queued)
    if asked:
        _after_decided(client, asked, lambda: _run(client, queued, reply, early, pin))
    else:
        _run(client, queued, reply, early, pin)


def _elsewhere(client: Client, queued: list) -> list[int]:
    """With several acceptors: the ids the transaction's CLIENT UNBLOCKs
    name (before a CLIENT KILL) that are not this acceptor's clients."""
    server = client.server
    if server.bus is None:
        return []
    ids = []
    for cmd, args in queued:
        if cmd.name == "client" and len(args) > 1 and args[1].upper() == b"KILL":
            break
        if (
            _is_unblock(cmd, args)
            and args[2].isdigit()
            and int(args[2]) > 0
            and int(args[2]) not in server.clients
        ):
            ids.append(int(args[2]))
    return ids


LOCATING = -6  # a client's blocked_token while its EXEC asks where other acceptors' clients wait


def _locate(client: Client, ids: list[int], then: Callable[[], None]) -> None:
    """Ask the other acceptors where the clients ``ids`` wait (``bus
    locate``), then call ``then`` in a step of its own: a CLIENT UNBLOCK of
    one that waits on one shard is asked of that shard on this acceptor's
    pipe, in the transaction's place (see :func:`unblock_located`); the
    others go through the bus as outside EXEC.  Meanwhile the client's
    later commands wait; the EXEC runs even if the client goes away."""
    client.state.block(LOCATING, shown=False)
    server = client.server

    def found(answers: list) -> None:
        located = {}
        for answer in answers:
            for where in answer or ():
                if type(where) is list and len(where) == 4:
                    located[where[0]] = where[1:]
        go(located)

    def go(located: dict) -> None:
        client.state.unblock(LOCATING)
        client.state.locate(located or None)  # and on, even if the client went away
        _step(client, then)

    server.bus.ask(bus.LOCATE, ids, found, failed=lambda message: go({}))  # type: ignore[union-attr]


def _run(client: Client, queued: list, reply: Exec, early: dict[int, list], pin: Pin | None) -> None:
    """Run the transaction's commands (``early``: those already run, by
    position, with their reply items; ``pin``: theirs, released once the
    transaction is decided and its writes applied)."""
    # Without WATCH, a FLUSHALL runs command by command: it empties every
    # database of every shard in one step, which parking would cost a
    # transfer of every key.
    flushes = any(cmd.name == "flushall" for cmd, _ in queued)
    # A script runs in its place among the commands, atomically with them,
    # on the executor of one operation (see _run_atomic).
    scripted = _scripts_on_executor(queued, bool(reply.watched))
    atomic = (
        reply.watched
        or scripted
        or (not flushes and (_needs_atomic(client, queued) or _acts_before_holds(client, queued, reply)))
    )
    holding_first = not atomic and _holds_first(client, queued, reply)
    if holding_first and (early or pin is not None):
        # Its CLIENT UNBLOCKs of cross-shard waits (or of clients not found
        # waiting on one shard) ran first, pinned: as one operation (every
        # key parked), its local commands run once it is decided, and the
        # pinned clients are served only if it ran.
        atomic, holding_first = True, False
    if atomic:
        # Its reads are remembered once it commits (see tracking.atomic_exec_reads).
        tracked = None
        decided = None
        if client.tracking:
            tracked = client.server.wiring.atomic_exec_reads(client, queued)
        else:
            tracked = _tracked_once_turned_on(client, queued)
            if tracked is not None:  # its own writes after the ON are told too
                decided = client.server.wiring.expect_tracking(client)
        # Its (P)SUBSCRIBEs run once it ran: the events of its writes after
        # them are noted all the same.
        heard = client.server.wiring.expect_subscriptions(client, queued)
        if heard is not None:
            decided = heard if decided is None else _then(decided, heard)
        _run_atomic(client, queued, reply, early, pin, tracked, decided)
    elif holding_first:
        _run_holding_first(client, queued, reply)
        return
    else:
        _run_in_order(client, queued, reply, early)
        listeners.release_exec_ports(client)  # (its CONFIG SETs ran)
        if reply.cut is not None:
            _close_after_exec(client)
        if pin is not None:  # it ran: once the shards ran its commands
            server = client.server
            after_this_step(server, lambda: pin.release(server, True))
    _ran(client, queued, reply, early, scripted)


def _ran(client: Client, queued: list, reply: Exec, early: dict[int, list], scripted: bool) -> None:
    """What follows the transaction's commands once they are routed (or
    its operation started)."""
    if client.tracking is not None:  # the keys its reads fetched (CLIENT TRACKING)
        for i, (cmd, queued_args) in enumerate(queued):
            if i in early:  # (run in order: told as each was routed; atomic: once it commits)
                client.server.wiring.after_command(client, cmd, queued_args, True)
    # After the __park entries above: the parked shards must still hold
    # the versions this client saw (with a script, once it is decided: it
    # may park them again, see _run_atomic).
    if not scripted:
        _unwatch(client, reply.watched)
    client.state.locate(None)
    settle = reply.outcome
    if reply.line_due and not (type(settle) is _Settle and settle.data is None and settle.db is not None):
        # (not while one operation with a SELECT is undecided: once it is,
        # in the database it left, see _Settle; the client's later
        # commands, and their lines, wait for it)
        reply.line_due = False
        _show_exec(client, reply)


def _tracked_once_turned_on(client: Client, queued: list) -> Callable[[Slot], None] | None:
    """An atomic EXEC of a client not tracking whose queued CLIENT TRACKING
    ON turns tracking on: the reads while it is on are remembered, as Redis
    runs them, judged as the EXEC commits (its local commands, those
    included, have run then, before the reads are remembered; see
    _run_atomic's finish), from the commands after the first ON: the reads
    of every span from an ON to an OFF or the end (a read while it is off
    is left out, the writes are all kept, for the order of reads and
    writes; until 5 December only the reads after the last ON)."""
    rest: list = []
    on = seen = False
    optin = optout = caching = False
    skipped: set[int] = set()  # (in rest: the reads CLIENT CACHING leaves out)
    # The BCAST prefixes each ON names, with where it stands, and then the
    # keys each command may write (None: any, a script's undeclared keys,
    # a flush): a BCAST ON hears of the writes after it alone, by prefix.
    # And the keys of the scripts while it is on: a script's reads
    # remember its keys (as Redis's call() the caller's), those alone.
    named: dict[bytes, int] = {}  # (a prefix's first ON since the last OFF)
    scripts_read: set[bytes] = set()
    for i, (cmd, args) in enumerate(queued):
        if on and cmd.name in _TRACKED_SCRIPTS:
            scripts_read.update(cmd.keys(args))
        if cmd.name == "client" and len(args) > 2:
            sub = args[1].lower()
            if sub == b"tracking":
                switch = args[2].lower()
                if switch in (b"on", b"off"):
                    on = switch == b"on"
                    seen = seen or on
                    options = {a.lower() for a in args[3:]}
                    optin, optout = b"optin" in options, b"optout" in options
                    if not on:
                        named.clear()  # (an OFF frees its prefixes, and the changes under them)
                    elif b"bcast" in options:
                        for prefix in _prefixes(args[3:]):
                            named.setdefault(prefix, i)
                    if not on:
                        caching = False
                    continue
            elif sub == b"caching" and on:
                # Set for the rest of the EXEC (Redis clears it between
                # commands, not between those EXEC runs), if valid.
                switch = args[2].lower()
                caching = caching or (switch == b"yes" and optin) or (switch == b"no" and optout)
        if on and "readonly" in cmd.flags and cmd.route != "local":
            if (optin and not caching) or (optout and caching):
                skipped.add(len(rest))
        if on or (seen and "readonly" not in cmd.flags):
            rest.append((cmd, args))
    if not seen:
        return None
    if skipped:
        rest = [entry for i, entry in enumerate(rest) if i not in skipped]
    unheard: dict[bytes, frozenset[bytes]] = {}
    if named:
        writes = [
            (i, None if cmd.route != "shard" or cmd.name in _TRACKED_SCRIPTS else frozenset(cmd.keys(args)))
            for i, (cmd, args) in enumerate(queued)
            if "readonly" not in cmd.flags and cmd.route != "local"
        ]
        unheard = {prefix: _written_only_before(writes, i) for prefix, i in named.items()}

    def ran(place: Slot) -> None:
        if client.tracking is None:  # (its CLIENT TRACKING ON failed)
            return
        client.server.wiring.written_before_on(client, place, unheard, frozenset(scripts_read))
        # (CLIENT CACHING judged per read above, not for the whole EXEC)
        state = client.tracking
        caching = state.caching
        state.caching = state.optin
        try:
            tracked = client.server.wiring.atomic_exec_reads(client, rest)
        finally:
            state.caching = caching
        if tracked is not None:
            tracked(place)

    return ran


def _prefixes(options: list[bytes]) -> list[bytes]:
    """The prefixes a CLIENT TRACKING ON BCAST names (all keys if none)."""
    prefixes = []
    i = 0
    while i < len(options) - 1:
        if options[i].lower() == b"prefix":
            prefixes.append(options[i + 1])
            i += 1
        i += 1
    return prefixes or [b""]


def _written_only_before(writes: list[tuple[int, frozenset[bytes] | None]], at: int) -> frozenset[bytes]:
    """The keys that only commands before the ``at``-th wrote (none if one
    after it may write any key)."""
    early: set[bytes] = set()
    later: set[bytes] = set()
    for i, keys in writes:
        if i > at and keys is None:
            return frozenset()
        if keys is not None:
            (later if i > at else early).update(keys)
    return frozenset(early - later)


# (as tracking.atomic_exec_reads: their undeclared keys may be any)
_TRACKED_SCRIPTS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})


def _swaps_on_executor(args: list[bytes], databases: int) -> bool:
    """Does the queued SWAPDB ``args`` run on the executor of an atomic
    EXEC, in its place among the commands, when one that needs data comes
    after it?  Only one that swaps two databases: the acceptor answers the
    others (an error, or OK for a database with itself) after the
    operation, as their reply.

    The executor then holds every key of every database (``**``), as for
    a SWAPDB in a script, and the keys go home swapped at the commit: the
    commands and scripts after it see the swapped databases, as in Redis
    (run after the operation, as the acceptor's command it is, it left
    them the databases of before)."""
    try:
        a, b = parse_int32(args[1]), parse_int32(args[2])
    except CommandError:
        return False
    return a != b and 0 <= a < databases and 0 <= b < databases


def _notify_in_place(client: Client, args: list[bytes]) -> list[bytes] | None:
    """A queued CONFIG SET of notify-keyspace-events in an atomic EXEC: the
    ``__config`` of the setting, which the executor takes in its place
    among the commands, with no reply, for that run alone, so that the
    events of those after it are published as it says then, as in Redis
    (the acceptor runs the CONFIG SET itself after the operation, as its
    reply, and that sets it everywhere); the last one's setting goes with
    the ``Decide``, for the blocked clients the EXEC serves, even with no
    command after it.  None for any other, and for one that fails (its
    error is its reply, the setting unchanged)."""
    if len(args) < 4 or len(args) % 2 or args[1].lower() != b"set":
        return None
    try:
        changes = client.server.wiring.config_set_changes(client, args)
    except CommandError:
        return None
    value = changes.get("notify-keyspace-events")
    if value is None:
        return None
    letters = config.notify_letters(config.notify_value(value))
    return [Verb.CONFIG, b"notify-keyspace-events", letters.encode()]


# The executor's commands that have no reply of their own.
_NO_REPLY = (Verb.SELECT, Verb.CONFIG)

# The subcommands that change the functions or the script cache.
_REGISTRY_CHANGES = {"function": (b"load", b"delete", b"flush", b"restore"), "script": (b"load", b"flush")}


def _changes_registry(cmd: Command, args: list[bytes]) -> bool:
    """Does the command change the functions or the script cache?"""
    return cmd.name in _REGISTRY_CHANGES and len(args) > 1 and args[1].lower() in _REGISTRY_CHANGES[cmd.name]


def _scripts_on_executor(queued: list, watched: bool) -> bool:
    """Do the transaction's scripts run on its operation's executor (see
    _run_atomic)?  A command that changes the functions or the script
    cache runs on the acceptor, which the executor's shard does not see
    until it has run: one queued before a script runs before the
    operation starts (see _run_atomic), so that the script sees it, as
    Redis's sees every change made before it.  That is right only when
    nothing can stop the transaction from running once it has started
    (no WATCH) and no script comes before the change (it would see the
    change too); otherwise the scripts run as commands of their own,
    each in its place."""
    scripts = [i for i, (cmd, _) in enumerate(queued) if cmd.name in monitor.SCRIPT_COMMANDS]
    if not scripts:
        return False
    # The changes that a script after them must see.
    seen = [i for i, (cmd, args) in enumerate(queued[: scripts[-1]]) if _changes_registry(cmd, args)]
    return not seen or (not watched and seen[-1] < scripts[0])


def _close_after_exec(client: Client) -> None:
    """The transaction that ran deleted the client's own user: closed after
    this EXEC, and its later commands (pipelined) do not run (Redis's
    CLIENT_CLOSE_AFTER_COMMAND).  Only once it ran: an EXEC that a WATCHed
    key aborts deletes nobody, and the connection stays."""
    client.close_after_replies()


def _is_kill(cmd: Command, args: list[bytes]) -> bool:
    """SCRIPT KILL or FUNCTION KILL."""
    return cmd.name in ("script", "function") and len(args) > 1 and args[1].lower() == b"kill"


def _is_deluser(cmd: Command, args: list[bytes]) -> bool:
    """ACL DELUSER, which waits for the shards' scripts while a worker says
    one runs (see users._deluser), in an EXEC too."""
    return cmd.name == "acl" and len(args) > 1 and args[1].upper() == b"DELUSER"


def _is_unblock(cmd: Command, args: list[bytes]) -> bool:
    return cmd.name == "client" and len(args) > 1 and args[1].upper() == b"UNBLOCK"


def _one_shard_wait(client: Client, args: list[bytes]) -> int | None:
    """The shard a CLIENT UNBLOCK (``args``) would ask on this acceptor's
    pipe: that of a one-shard wait of a client of this acceptor, or of
    another's located for this EXEC (see :func:`_locate`)."""
    target = args[2] if len(args) > 2 else b""
    if not target.isdigit():
        return None
    other = client.server.clients.get(int(target))
    if other is not None:
        return waiting_shard(other)
    where = client.state.located.get(int(target)) if client.state.located else None
    return None if where is None else where[1]


def _unblock_shards(client: Client, queued: list, skip: dict[int, list]) -> dict[int, int]:
    """The CLIENT UNBLOCKs of the transaction that its shards run in place,
    by position (those not in ``skip``), with the shard each asks."""
    return {
        i: shard
        for i, (cmd, args) in enumerate(queued)
        if i not in skip and _is_unblock(cmd, args) and (shard := _one_shard_wait(client, args)) is not None
    }


def _serve_first(client: Client, shards) -> None:
    """Before a transaction whose CLIENT UNBLOCKs serve nothing first on
    their shards (``__unblock``'s ``after``): ``__serve`` there, as Redis
    serves a blocked client after each command that came before EXEC."""
    links = client.server.links
    for shard in sorted(set(shards)):
        links[shard].send_control(_SERVE, _IGNORE, in_step=True)


_SERVE = encode_command([Verb.SERVE])
_DEFER = encode_command([Verb.DEFER])


def _unblocks_first(client: Client, queued: list) -> tuple[dict[int, list], list[UnblockReply], Pin | None]:
    """Run the transaction's CLIENT UNBLOCKs of cross-shard waits and of
    other acceptors' clients before its other commands.

    Redis serves the clients that a transaction's writes woke only after
    EXEC, so a CLIENT UNBLOCK inside it finds its client still blocked
    (``LPUSH l x`` + ``CLIENT UNBLOCK <id>``: ``1, 1``, the blocked client
    gets its null and ``x`` stays); nothing else in the transaction changes
    that, but a CLIENT KILL before it (so the UNBLOCKs after one run in
    place).  A one-shard wait of this acceptor's client is asked in place:
    its shard serves nothing between the transaction's commands (see
    ``__unblock``'s ``after``).  The others cannot be: a cross-shard wait's
    try would pop what the transaction's write pushed, and another
    acceptor's client is asked through the bus and its acceptor's pipe.
    So their ``__unblock`` (or cross-shard try) is queued ahead of the
    transaction's commands, under WATCH too, with the EXEC's pin: a client
    they unblock gets its null only once the transaction is decided and its
    writes applied, and only if it ran (see :class:`Pin`).

    Returns the reply items of each CLIENT UNBLOCK run, by position, those
    still undecided that went to another acceptor (K > 1): those the
    transaction's commands wait for (see :func:`_after_decided`), and the
    pin (None if no UNBLOCK ran).
    """
    early: dict[int, list] = {}
    asked: list[UnblockReply] = []
    server = client.server
    pin = None
    for i, (cmd, args) in enumerate(queued):
        if cmd.name == "client" and len(args) > 1 and args[1].upper() == b"KILL":
            break
        if not _is_unblock(cmd, args) or _one_shard_wait(client, args) is not None:
            continue
        if pin is None:
            pin = Pin()
        client.state.pin_unblocks(pin)
        try:
            early[i] = items = run_local_captured(client, cmd, args)
        finally:
            client.state.pin_unblocks(None)
        target = args[2] if len(args) > 2 else b""
        elsewhere = server.bus is not None and not (target.isdigit() and int(target) in server.clients)
        asked.extend(
            item for item in items if isinstance(item, UnblockReply) and item.data is None and elsewhere
        )
    return early, asked, pin


UNBLOCKS_FIRST = -5  # a client's blocked_token while its EXEC waits for its CLIENT UNBLOCKs


def _after_decided(client: Client, asked: list[UnblockReply], run: Callable[[], None]) -> None:
    """Several acceptors: call ``run`` once the CLIENT UNBLOCKs of other
    acceptors' clients in ``asked`` are decided.  Those go through the bus
    and the blocked client's acceptor and pipe: the transaction's write,
    sent now on this acceptor's pipe, could reach the shard first and serve
    the client.  Meanwhile the client's later commands wait."""
    client.state.block(UNBLOCKS_FIRST, shown=False)
    left = [len(asked)]

    def decided() -> None:
        left[0] -= 1
        if left[0]:
            return
        client.state.unblock(UNBLOCKS_FIRST)
        _step(client, run)  # even if the client went away: it releases the pin

    for slot in asked:
        slot.then = decided


def _needs_atomic(client: Client, queued: list) -> bool:
    """Must the transaction run as one :class:`AtomicOp`?  When it blocks,
    or when its writes span shards: routed one by one, a shard that dies
    halfway would leave the others' writes applied."""
    shard_of = client.server.shard_of
    written: set[int] = set()
    for cmd, args in queued:
        if "blocking" in cmd.flags:
            return True
        if cmd.is_write and cmd.route == "shard":
            written.update(shard_of(key) for key in cmd.keys(args))
            if len(written) > 1:  # (the rest cannot change the answer)
                return True
    return False


def _acts_before_holds(client: Client, queued: list, reply: Exec) -> bool:
    """Several acceptors: would the transaction, routed command by command,
    act on this acceptor as it is routed (a local command runs: SELECT,
    CLIENT SETNAME, PING's call counted...; MONITOR lines are fed, ACL
    refusals logged) while its commands span shards?  Its step then waits
    for holds, and a hold refused ``-BUSY`` refuses the whole EXEC
    (:func:`_refused_at_hold`), running none of it, as Redis: those acts
    stayed (the client's next commands went to the database its SELECT
    chose).  As one :class:`AtomicOp` its local commands run, and its lines
    are fed, only once it is decided.  Not one with a command over every
    shard (KEYS, DBSIZE, FLUSHDB...), which an operation would have to park
    every key for (routed once it holds every shard instead, see
    :func:`_holds_first`); nor a tracking client's reads, noted as routed
    (a refused one's keys are tracked: at worst a spare invalidation)."""
    server = client.server
    if server.holds is None:
        return False
    acts = bool(reply.refusals or reply.notes or server.monitors)
    shard_of = server.shard_of
    shards: set[int] = set()
    for cmd, args in queued:
        if cmd.route == "local":
            acts = True
        elif cmd.route == "all" or (cmd.pattern_keys is not None and cmd.pattern_keys(args) != []):
            return False
        else:  # (a keyless one goes to shard 0 with its error)
            shards.update([shard_of(key) for key in cmd.keys(args)] or [0])
    return acts and len(shards) > 1


def _holds_first(client: Client, queued: list, reply: Exec) -> bool:
    """Several acceptors: would the transaction, routed command by command,
    act on this acceptor as it is routed (see :func:`_acts_before_holds`)
    while a command of it runs over every shard (KEYS, DBSIZE, FLUSHDB,
    FLUSHALL, SORT BY a pattern...), which no operation runs (it would
    park every key)?  Routed at once, its step waited for its holds, and a
    hold refused ``-BUSY`` refused the whole EXEC with its local commands
    run (the client went on in the database its SELECT chose, a PUBLISH
    was heard).  So it is routed only once it holds every shard
    (:func:`_run_holding_first`), its scripts and its CLIENT UNBLOCKs of
    one-shard waits in their places.  One whose CLIENT UNBLOCKs ran first
    (:func:`_unblocks_first`) runs as one operation instead (:func:`_run`)."""
    server = client.server
    if server.holds is None or len(server.links) < 2:
        return False
    acts = bool(reply.refusals or reply.notes or server.monitors)
    every = False
    for cmd, args in queued:
        if cmd.route == "local":
            acts = True
        elif cmd.route == "all" or (cmd.pattern_keys is not None and cmd.pattern_keys(args) != []):
            every = True
    return acts and every


def _run_holding_first(client: Client, queued: list, reply: Exec) -> None:
    """Route the transaction command by command once this acceptor holds
    every shard (``Holds.deferring``), so that nothing of it has run when a
    busy script refuses a hold: Redis reads the EXEC at the threshold and
    answers ``EXECABORT`` with the ``-BUSY``, running none of its commands
    (its MONITOR lines none, EXEC's alone, as execCommandAbort feeds it).
    EXEC's own line is fed once it ran or was refused (``line_due``; not by
    dispatch as it is read), in the database its SELECTs left, after its
    commands' lines, as Redis's call() feeds it."""
    refused_at_hold = _refused_at_hold(client, reply)
    if client.server.monitors:
        reply.line_due = True

    def run() -> None:
        _run_in_order(client, queued, reply, {})
        listeners.release_exec_ports(client)  # (its CONFIG SETs ran)
        if reply.cut is not None:
            _close_after_exec(client)
        _ran(client, queued, reply, {}, False)

    def refused(error: bytes) -> None:
        refused_at_hold(error)
        listeners.release_exec_ports(client)
        if reply.place is not None:  # it did not run: no lines
            reply.place.put(b"")
        client.state.locate(None)
        if reply.line_due:
            reply.line_due = False
            _show_exec(client, reply)

    client.server.holds.deferring(run, refused)  # type: ignore[union-attr]


def _run_in_order(client: Client, queued: list, reply: Exec, early: dict[int, list]) -> None:
    """Route every command as if it came alone, all in this one turn.

    Nothing can come between them: each shard receives this transaction's
    commands back to back, at one place in the global order, and a command
    that spans shards is itself atomic (a fan-out in one turn, or an
    :class:`AtomicOp`).  So the transaction is as isolated as one command.
    """
    reply.log_refusals(client)
    if reply.place is not None:  # its lines are fed as each command is routed
        reply.place.put(b"")
    holds = client.server.holds
    if holds is not None:  # its entries leave whole, or not at all (see _refused_at_hold)
        holds.refusing(_refused_at_hold(client, reply))
    parts: list = []
    in_place = _unblock_shards(client, queued, early)
    if in_place:
        _serve_first(client, in_place.values())
    deferred = _written_shards(client, queued)
    links = client.server.links
    for shard in deferred:
        links[shard].send_control(_DEFER, _IGNORE, in_step=True)
    saved = client.pending
    client.state.enter_exec()
    client.state.build_exec(parts)
    # (the replies queued ahead of it: a PUBLISH inside it waits for their events)
    # (a step's Gate ahead, of EXEC's own step routed late: no reply of the client's)
    ahead = itertools.takewhile(lambda item: item is not reply, saved)
    client.state.run_exec_behind([item for item in ahead if type(item) is not Gate])
    client.state.unblock_in_place(0)  # its shard serves after the whole batch
    try:
        for i, (cmd, args) in enumerate(queued):
            start = len(parts)
            if i in early:
                parts.extend(early[i])
            else:
                client.pending = captured = deque((_BARRIER,))
                client.route(cmd, args, None)
                if client.tracking is not None:  # its read's keys, by its own reply slot
                    routed = len(captured)
                    client.server.wiring.after_command(client, cmd, args, True, captured[-1])
                    _to_trailer(captured, routed, reply)
                captured.popleft()
                parts.extend(captured)
            reply.silence(i, parts, start)
            if client.server.monitors:
                monitor.feed(client, cmd, args)
        # Its reads all ran: the tracking table back under its limit, as
        # Redis's before the next command (see tracking.exec_ran).
        client.pending = captured = deque((_BARRIER,))
        client.server.wiring.exec_ran(client)
        _to_trailer(captured, 1, reply)
    finally:
        client.pending = saved
        client.state.leave_exec()
        client.state.build_exec(None)
        client.state.run_exec_behind(None)
        wait_after_exec(client)  # (for a PUBLISH of its held behind the replies ahead)
        client.state.unblock_in_place(-1)
        for shard in deferred:
            served = _Served(client)
            links[shard].send_control(_SERVE, served, in_step=True)
            parts.append(served)
    reply.parts = parts


def _refused_at_hold(client: Client, reply: Exec) -> Callable[[bytes], None]:
    """With several acceptors, what an EXEC routed command by command
    (:func:`_run_in_order`) does when a shard of its step cannot take its
    entries (``shardkv.acceptor.holds``), none of which then leaves: on a
    ``-BUSY`` (a script past busy-reply-threshold refused the step's hold
    there), Redis read the EXEC at the threshold and refused it, running
    nothing: ``EXECABORT`` with that error, a rejected call of EXEC's and
    no call (the one dispatch counted as it read it is taken back).  Its
    array held its reads' replies from the held shards and the ``-BUSY``
    in the busy shard's place.  Any other error (a worker down) stays in
    the array, in each entry's place, as before."""
    row = client.server.stats._row("exec")  # (where dispatch counts this EXEC's call)

    def refused(error: bytes) -> None:
        if error[:6] != b"-BUSY ":
            return
        message = errors.EXECABORT_BECAUSE % error[1:-2].decode("latin-1")
        stats = client.server.stats
        stats.take_back("exec", row)
        stats.rejected("exec", message)
        reply.parts = None
        reply.outcome = outcome = Slot(client)
        outcome.deliver(encode_error(message))

    return refused


_PUBLISHES = frozenset(("publish", "spublish"))


def _events_before(op: AtomicOp, places: list[ExecPlace], taken: int) -> tuple[ExecPlace, int] | None:
    """A plain (S)PUBLISH of an EXEC run as one operation, which runs once
    the executor's first ``taken`` commands ran: the place of the last of
    them that has events (their ends in ``op.event_ends``), and how many
    events end there, which Redis writes before the message (see
    pubsub._publish); None if none."""
    ends = op.event_ends
    if not taken or ends is None or len(ends) != len(places):
        return None
    for k in range(taken - 1, -1, -1):
        if ends[k] > (ends[k - 1] if k else 0):
            return places[k], ends[k]
    return None


def _written_shards(client: Client, queued: list) -> list[int]:
    """The shards a transaction routed one by one may write: each serves
    nobody between its commands (``__defer`` before them, ``__serve``
    after), as Redis serves the clients they woke only after EXEC.  Every
    shard for a write with no key to route by (FLUSHALL...)."""
    shard_of = client.server.shard_of
    written: set[int] = set()
    for cmd, args in queued:
        if cmd.name in _SCHEDULES:
            # (so that each knows it runs inside EXEC: a BGSAVE or a
            # BGREWRITEAOF there is scheduled, as Redis's while in_exec)
            return list(range(len(client.server.links)))
        if cmd.is_write:
            keys = cmd.keys(args) if cmd.route == "shard" else ()
            if not keys:
                return list(range(len(client.server.links)))
            written.update(shard_of(key) for key in keys)
    return sorted(written)


def _to_trailer(captured: deque, routed: int, reply: Exec) -> None:
    """What was pushed to the client (captured after its first ``routed``
    entries) while EXEC ran its commands: after EXEC's reply."""
    while len(captured) > routed:
        pushed: object = captured[routed]
        del captured[routed]
        data = pushed if type(pushed) is bytes else getattr(pushed, "data", None)
        assert type(data) is bytes  # a push's bytes, or one put in place (ready)
        reply.trailer.append(data)


def _then(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    """``first``, then ``second`` (two things to do once an EXEC is decided)."""

    def both() -> None:
        first()
        second()

    return both


def _run_atomic(
    client: Client,
    queued: list,
    reply: Exec,
    early: dict[int, list],
    pin: Pin | None,
    tracked: Callable[[Slot], None] | None = None,
    decided: Callable[[], None] | None = None,
) -> None:
    """Check the watched keys and run the shard commands as one atomic
    operation, then the local ones; or nothing, if a watched key changed.
    ``tracked``: called with the operation's reply slot once it commits,
    before its events are handed out (CLIENT TRACKING: its reads' keys);
    ``decided``: once it is decided, run or not.

    Blocking commands come this way too: run by the executor, not by the
    shard's command loop, they do not block.

    The operation runs in the client's database; a SELECT inside switches
    the executor's database for the commands after it (``__select``), and
    their keys are named ``(database, key)``.  The SELECTs' replies are
    known now, but the client takes the new database only if the
    transaction runs: until it is decided, its next commands wait.
    """
    op_db = db = client.db
    databases = client.server.config["databases"]
    commands = []
    renamed: list = []  # (see wire.Run.names)
    keys: list = []
    everything: bool | bytes = False
    dbs: list[int] = []  # the database each queued command runs in
    selects: dict[int, list] = {}  # a SELECT's (or a refused script's) position -> its reply
    # A script's position -> it (a scripting.ExecScript, see Wiring.exec_script).
    scripts: dict[int, Any] = {}
    script_at: dict[int, tuple[Any, int]] = {}  # its place in commands -> it, its database
    scripted = _scripts_on_executor(queued, bool(reply.watched))
    last_script = max(
        (i for i, (cmd, _) in enumerate(queued) if cmd.name in monitor.SCRIPT_COMMANDS), default=-1
    )
    # The last command the executor runs: a SWAPDB before it swaps there,
    # in its place (see _swaps_on_executor).
    last_on_executor = max(
        (
            i
            for i, (cmd, _) in enumerate(queued)
            if cmd.route != "local" or (scripted and cmd.name in monitor.SCRIPT_COMMANDS)
        ),
        default=-1,
    )
    swaps: set[int] = set()  # the positions of the SWAPDBs run by the executor
    for i, (cmd, args) in enumerate(queued):
        if cmd.name == "select":
            selects[i] = run_local_captured(client, cmd, args)  # sets client.db, if valid
            if client.db != db:
                db = client.db
                commands.append([Verb.SELECT, b"%d" % db])
            dbs.append(db)
            continue
        dbs.append(db)
        if cmd.name == "client" and len(args) == 3 and args[1].lower() == b"setname":
            # The executor names the slow log entries of the commands
            # after it so, as Redis's (the acceptor runs it, after them).
            if not any(c < 33 or c > 126 for c in args[2]):  # (else its error: no name)
                renamed.append([len(commands), args[2]])
        if scripted and i < last_script and _changes_registry(cmd, args):
            # It runs now, before the operation starts, so that the scripts
            # after it see it (see _scripts_on_executor): its parts for the
            # shards go ahead of the operation's __park on every pipe.
            selects[i] = run_local_captured(client, cmd, args)
            continue
        if scripted and cmd.name in monitor.SCRIPT_COMMANDS:
            client.state.enter_exec()  # (ACL LOG shows its refused calls as EXEC's)
            try:
                script = client.server.wiring.exec_script(client, args)
            finally:
                client.state.leave_exec()
            if script is None:  # its error (an FCALL's from shard 0)
                selects[i] = run_local_captured(client, cmd, args)
            else:
                scripts[i] = script
                script_at[len(commands)] = (script, db)
                commands.append([])  # its command, as it runs (see operation)
            continue
        if cmd.name == "swapdb" and i < last_on_executor and _swaps_on_executor(args, databases):
            swaps.add(i)
            commands.append(args)
            everything = b"**"
            continue
        if cmd.name == "config":
            # In its place even after the last command that needs data:
            # the blocked clients the EXEC's writes serve, after it, notify
            # as it left the setting (the Decide carries it, see
            # crossshard.AtomicOp._notify_after).
            notify = _notify_in_place(client, args)
            if notify is not None:
                commands.append(notify)
            continue
        if cmd.route == "shard":
            commands.append(args)
            names = cmd.keys(args)
            keys.extend(names if db == op_db else [(db, key) for key in names])
            keys.extend(other_db_keys(cmd.name, args, databases))
            if cmd.pattern_keys is not None and cmd.pattern_keys(args) != []:
                everything = everything or True  # the keys its patterns name: anywhere
        elif cmd.route == "all":
            commands.append(args)
            everything = b"**" if cmd.name == "flushall" else (everything or True)
    final_db = client.db
    if final_db != op_db:
        client.select(op_db)
        if everything:
            everything = b"**"  # keys of several databases: every key of every one
    watched = reply.watched or {}
    if not keys and watched and not scripts:
        keys = [next(iter(watched))]  # park the shard of a watched key, not shard 0

    def finish(bodies: list[bytes]) -> bytes:
        reply.log_refusals(client)
        parts: list = []
        # Each reply of the executor's, after the place where its command's
        # messages go (see ExecPlace: their events, a script's PUBLISH).
        places = made[-1].places
        if len(places) != len(bodies):  # (never: one per reply)
            places = [ExecPlace(client) for _ in bodies]
        replies = (x for pair in zip(places, bodies, strict=True) for x in pair)
        client.state.build_exec(parts)
        scheduled: list[bytes] = []  # BGSAVE's, BGREWRITEAOF's (see _schedule_elsewhere)
        sent: dict[int, object] = {}  # the scripts run as commands of their own (see monitor.put_exec_lines)
        taken = 0  # the executor's replies taken so far
        try:
            for i, (cmd, args) in enumerate(queued):
                start = len(parts)
                if i in selects:
                    parts.extend(selects[i])
                elif i in early:
                    parts.extend(early[i])
                elif i in scripts:
                    parts.append(next(replies))
                    body = next(replies)
                    scripts[i].answered(client, body)
                    parts.append(body)
                    taken += 1
                elif i in swaps:  # (the acceptor's command: counted here, as run_local does)
                    client.server.stats.record("swapdb", 0, None)
                    parts += (next(replies), next(replies))
                    taken += 1
                elif cmd.route == "local":
                    # In the database a SELECT before it chose (a script, behind
                    # a FUNCTION or SCRIPT change: see _scripts_on_executor).
                    back = client.db
                    if dbs[i] != back:
                        client.select(dbs[i])
                    after = _events_before(made[-1], places, taken) if cmd.name in _PUBLISHES else None
                    if after is not None:
                        AFTER_EVENTS.append(after)
                    try:
                        parts.extend(run_local_captured(client, cmd, args))
                        if reply.place is not None and cmd.name in monitor.SCRIPT_COMMANDS:
                            # A script of its own, sent now: its [lua] lines after its line.
                            holder = monitor.take_due(args)
                            if holder is not None:
                                sent[i] = holder
                    finally:
                        if after is not None:
                            AFTER_EVENTS.pop()
                        if client.db != back:
                            client.select(back)
                else:
                    taken += 1
                    place, body = next(replies), next(replies)
                    parts += (place, body)
                    if cmd.name in _SCHEDULES and type(body) is bytes and body[:1] == b"+":
                        scheduled.append(_SCHEDULES[cmd.name])
                reply.silence(i, parts, start)
        finally:
            client.state.build_exec(None)
        _schedule_elsewhere(client, made[-1].executor, scheduled)
        if reply.place is not None:  # committed: now they have run, before EXEC's line
            calls = [(*call, dbs[i]) for i, call in enumerate(queued)]
            monitor.put_exec_lines(reply.place, client, calls, lua if scripts else None, sent, scripts)
            if sent:  # (to be put once its scripts' lines came: not emptied by _Settle)
                reply.place = None
        reply.parts = parts
        if tracked is not None and reply.outcome is not None and reply.cut is None:
            tracked(reply.outcome)  # (cut: the client closes after it, told nothing more)
        return b""

    slot = None
    # The client's later commands wait for the decision when it takes the
    # database of a SELECT inside, closes, may change the users they run
    # as, sets a parameter (its CONFIG SET runs then: the later commands
    # run with the new value, as after Redis's EXEC; notify-keyspace-events
    # reaches the shards before them), holds ports bound for its CONFIG
    # SETs (listeners.bind_before_exec: a later EXEC of this client's must
    # not take them), or has any other acceptor command: those run only
    # once it commits (finish), and the later commands see what they did
    # (a CLIENT SETNAME, a SUBSCRIBE, a subscribed client's own PUBLISH)
    # and must not change what they read (CLIENT GETNAME), as in Redis,
    # where EXEC runs whole before the next command.
    runs_late = any(
        cmd.route == "local" and i not in selects and i not in early and i not in scripts and i not in swaps
        for i, (cmd, _) in enumerate(queued)
    )
    holds_client = (
        runs_late
        or final_db != op_db
        or reply.cut is not None
        or any(cmd.name in UsersInExec.COMMANDS for cmd, _ in queued)
        or any(cmd.name == "config" and args[1:2] and args[1].lower() == b"set" for cmd, args in queued)
        or bool(client.state.exec_ports)
    )
    done: Callable[[], None] | None = decided
    if scripts:
        # A script may escape: the operation then runs again, parking more
        # shards, and the client's later commands wait for it (unless HELD
        # holds them), as behind any script.
        waits = not holds_client and client.state.script_sent()

        def scripts_decided() -> None:
            if decided is not None:
                decided()
            _unwatch(client, reply.watched)
            for script in scripts.values():
                script.done(client)
            if waits and client.state.script_answered():
                if client.waiting():
                    client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]
                elif client.pending and not client.closed:
                    client.flush()

        done = scripts_decided

    if holds_client or pin is not None or reply.place is not None or done is not None:
        slot = _Settle(client, reply, final_db if final_db != op_db else None, pin, holds_client, done)
    if final_db != op_db and client.server.monitors:
        # Its line goes in its place now, filled once it is decided, in the
        # database its SELECTs left if it ran: Redis's call() feeds EXEC
        # once it has run (the client is in op_db until then, see _Settle).
        reply.line_held = True
    if holds_client:
        client.state.block(HELD, shown=False)  # not blocked as Redis shows it

    lua: list = []  # its scripts' calls, for MONITOR's lines
    made: list[AtomicOp] = []  # the operation, and each run again after a script escaped

    def operation(slot: Slot | None, also: set[int], as_of: int = 0) -> AtomicOp:
        """The operation (again, with more keys, after a script escaped).
        Each run has its keys expired as of the first's start (``as_of``,
        see wire.Run): Redis's time stands still while EXEC runs, and it
        checks a WATCHed key's expiry as EXEC starts, not again."""
        if not scripts:
            made.append(
                AtomicOp(
                    client,
                    commands,
                    keys,
                    finish,
                    watched,
                    everything,
                    op_db,
                    slot,
                    also,
                    names=renamed,
                    name=reply.name,
                    transaction=True,
                )
            )
            return _with_places(made[-1], commands)
        run = list(commands)
        needed = list(keys)
        widest = everything
        for at, (script, script_db) in script_at.items():
            run[at] = script.command()
            if script_db == op_db:
                needed.extend(script.needs())
            else:
                needed.extend(k if type(k) is tuple else (script_db, k) for k in script.needs())
            if script.everything:
                # (``*`` is every key of the operation's database: one
                # that runs in another needs every database's)
                several = script.everything == 2 or script_db != op_db or final_db != op_db
                widest = b"**" if several else (widest or True)
        if not needed and watched:
            needed = [next(iter(watched))]  # park the shard of a watched key, not shard 0

        def escaped(bodies: list[bytes]) -> Callable[[], None] | None:
            for (at, (script, _)), entry_id in zip(script_at.items(), op.logged, strict=False):
                if entry_id >= 0:  # (its SLOWLOG entry, logged by the executor)
                    # (named as the client was then: a CLIENT SETNAME queued before it)
                    name = next((n for pos, n in reversed(renamed) if pos <= at), client.name)
                    script.slow_logged(client, entry_id, name)
            replies = iter(bodies)
            written = iter(op.written)  # (each script's, in order: wire.Ran.written)
            learned = False
            for at, args in enumerate(run):
                if args[0] in _NO_REPLY:
                    continue
                body = next(replies, b"")
                if at in script_at:
                    learned = script_at[at][0].escaped(body, next(written, 0)) or learned
            if not learned:
                return None

            def again() -> None:
                # (every shard this run parked too: each keeps its sweeper's
                # time until the run again parks it, see Decide.again)
                holds = client.server.holds
                if holds is not None:
                    holds.begin()  # (its __bsettles in the run's step, behind it)
                try:
                    again_op = operation(op.slot, also | set(op.shards), began)
                    _settle_escapes(client, script_at, op_db, reply, again_op.shards)
                finally:
                    if holds is not None:
                        holds.end()

            return again

        began = as_of or int(time.time() * 1000)
        op = AtomicOp(
            client,
            run,
            needed,
            finish,
            watched,
            widest,
            op_db,
            slot,
            also,
            escaped,
            as_of=began,
            names=renamed,
            name=reply.name,
            transaction=True,
        )
        lua.clear()  # (an undone run's calls do not come)
        op.lua = lua
        made.append(op)
        _with_places(op, run)
        if len(script_at) == 1:  # its PUBLISH's message to its client goes in its place
            at = next(iter(script_at))
            op.script_place = op.places[sum(1 for args in run[:at] if args[0] not in _NO_REPLY)]
        return op

    # The CLIENT UNBLOCKs of one-shard waits: their shards are parked too,
    # and their __unblock follows the __park there, runs only if the
    # operation committed, and serves nothing first (Redis serves after EXEC).
    in_place = _unblock_shards(client, queued, early)
    holds = client.server.holds
    if holds is not None:
        holds.begin()  # the __unblocks in the same step as the parks
    try:
        if in_place:
            _serve_first(client, in_place.values())
        saved = client.pending
        client.pending = deque()
        try:
            op = operation(slot, set(in_place.values()))
        finally:
            client.pending = saved
        if script_at:
            _settle_escapes(client, script_at, op_db, reply, op.shards)
        client.state.unblock_in_place(op.id)
        try:
            for i in in_place:
                early[i] = run_local_captured(client, *queued[i])
        finally:
            client.state.unblock_in_place(-1)
    finally:
        if holds is not None:
            holds.end()
    reply.outcome = op.slot


def _settle_escapes(
    client: Client, script_at: dict[int, tuple[Any, int]], op_db: int, reply: object, shards: list[int]
) -> None:
    """The waits on the keys that the scripts of an EXEC (``script_at``,
    the operation just sent, in ``op_db``) escaped to, which its queued
    commands did not name (dispatch tried those), try or are waited for
    behind it, as behind an escaped script outside MULTI
    (blocking.script_ran_across): Redis serves them right after EXEC, so
    ``MULTI``, ``EVAL "redis.call('rpush', ARGV[1], 'x')" 1 {B}w A``,
    ``EXEC``, ``LRANGE B 0 -1`` pipelined, a client in ``BLMOVE A B``,
    reads its x (it read []).  And a keyless ``__bsettle`` on each shard
    of the operation (``shards``) waits for the tries of the waits its
    scripts notified on keys none of its runs named, of another database
    too after a SELECT (blocking.settle_script: it read [] too)."""
    keys = [
        k for script, db in script_at.values() if db == op_db for k in script.extra if k not in script.keys
    ]
    everything = max(script.everything for script, _ in script_at.values())
    if keys or everything:
        script_ran_across(client, reply, keys, everything, shards)
    elif EAGER_KEYS:  # (a pop's keys too, see blocking.POP_KEYS)
        for shard in shards:
            settle_script(client, reply, shard)


def _with_places(op: AtomicOp, run: list) -> AtomicOp:
    """``op`` with an :class:`ExecPlace` for each reply of its executor's
    (``run``'s commands but ``_NO_REPLY``'s), in order."""
    op.places = [ExecPlace(op.client) for args in run if args[0] not in _NO_REPLY]
    return op


HELD = -2  # a client's blocked_token while its atomic EXEC decides (see _run_atomic's holds_client)


class _Settle(Slot):
    """The outcome of an atomic EXEC with a SELECT inside (``db``), that
    deletes the client's own user (its reply's ``cut``), whose CLIENT
    UNBLOCKs pinned clients (``pin``), sent while someone monitors (its
    reply's ``place``, emptied if it did not run), or with ports the other
    acceptors bound for its CONFIG SETs, or with any other acceptor
    command (see _run_atomic's ``runs_late``): once it is decided, the pinned
    clients get their null or wait again (see :class:`Pin`), the ports its
    CONFIG SETs did not take are closed, and, if the
    transaction ran, the client takes the database its SELECTs chose, or
    is closed after the EXEC; then (``holds``) the commands it sent
    meanwhile run, unless it closes."""

    __slots__ = ("reply", "db", "pin", "holds", "done")

    def __init__(
        self,
        client: Client,
        reply: Exec,
        db: int | None,
        pin: Pin | None,
        holds: bool,
        done: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(client)
        self.reply = reply
        self.db = db
        self.pin = pin
        self.holds = holds
        self.done = done  # a transaction with scripts: see _run_atomic

    def deliver(self, body: bytes) -> None:
        self._settle(body)
        if self.done is not None:
            self.done()

    def _settle(self, body: bytes) -> None:
        super().deliver(body)
        client = self.client
        ran = self.reply.parts is not None
        listeners.release_exec_ports(client)  # (its CONFIG SETs ran, if it did)
        if self.reply.place is not None:  # filled if it ran (see _run_atomic's finish)
            self.reply.place.put(b"")
        if self.pin is not None:
            self.pin.release(client.server, ran)
        if self.holds and ran and self.db is not None:
            client.select(self.db)
        if self.reply.line_due:  # an EXEC that waited for the shards' scripts, with a SELECT (see _ran)
            # Its line, in the database its SELECTs left if it ran, as
            # Redis's call() feeds EXEC once it has run (it showed the
            # client's database as it was, before the decision).
            self.reply.line_due = False
            _show_exec(client, self.reply)
        held = self.reply.line_held
        self.reply.line_held = False  # (not fed yet: fed as it comes, in this database)
        if type(held) is monitor.Hold:
            held.put(monitor.line(client, [self.reply.name]))
        if not self.holds:
            return
        if ran and self.reply.cut is not None:
            _close_after_exec(client)
        if client.state.unblock(HELD) and not hold_for_changes(client):
            if client.waiting():
                client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]
