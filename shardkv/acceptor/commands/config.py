"""CONFIG GET, SET, RESETSTAT and REWRITE, and the settings each worker gets.

CONFIG SET checks everything first, applies the changes in the acceptor
(with the ``on_config`` hooks of :mod:`shardkv.acceptor.wiring`), then in
every worker; a worker whose pipe is attached gets every setting
(:func:`config_to_worker`).
"""

from __future__ import annotations

import logging

from shardkv.acceptor import configorder, diskerrors, listeners, memorybudget, notifications
from shardkv.acceptor.bus import fail_slot
from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import all_ok, guard, subcommand_error
from shardkv.acceptor.fanout import Gather
from shardkv.acceptor.replies import Slot
from shardkv.acceptor.security import is_loopback
from shardkv.protocol import bus, command_docs, errors
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import OK, encode_command
from shardkv.protocol.wire import Verb, entry_header
from shardkv.runtime import config

log = logging.getLogger("shardkv.acceptor")

# How long ``sync`` waits for the workers (a worker that reads no pipe, in
# a long foreground SAVE, say) before it answers anyway: well before the
# supervisor's SYNC_WITHIN, which would kill this acceptor as stuck.
SETTLE_WITHIN = bus.SYNC_WITHIN / 2

# -- CONFIG ------------------------------------------------------------------

_CONFIG_HELP = [
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
]


def _config_get(server, patterns: list[bytes]) -> dict:
    """CONFIG GET: a plain name comes back spelled as asked (aliases too); a
    pattern matches every name and alias, hidden parameters excepted."""
    out: dict = {}
    for pattern in patterns:
        if not any(c in pattern for c in b"*?["):
            setting = config.lookup(pattern.decode("latin-1"))
            if setting is not None and pattern not in out:
                out[pattern] = config.value_bytes(setting.show(server.config[setting.name]))
            continue
        match = compile_glob(pattern, nocase=True)
        for setting in config.SETTINGS.values():
            if "hidden" in setting.flags:
                continue
            for name in (setting.name, setting.alias):
                if name and match(name.encode()) and name.encode() not in out:
                    out[name.encode()] = config.value_bytes(setting.show(server.config[setting.name]))
    return out


def config_set_changes(client: Client, args: list[bytes]) -> dict:
    """CONFIG SET's checks, in Redis's order, before anything changes: the
    parameters exist, may be set by this client and appear once; then every
    value parses (each over the values before it), and those shardkv cannot
    change while running (``fixed``) keep the value they have.  Returns the new values,
    or raises CommandError with Redis's text and changes nothing."""
    server = client.server
    found: list[tuple[config.Setting, str, str]] = []
    error = unknown = None
    for i in range(2, len(args), 2):
        typed = args[i].decode("latin-1")
        setting = config.lookup(typed)
        if setting is None:
            if error is None and unknown is None:
                unknown = typed
            continue
        if error is not None or unknown is not None:
            continue
        registered = typed.lower()  # an alias is a parameter of its own here, as in Redis
        if "immutable" in setting.flags:
            error = (typed, "can't set immutable config")
        elif "protected" in setting.flags and not allow_protected_action(
            server.config["enable-protected-configs"], client
        ):
            error = (typed, "can't set protected config")
        elif any(r == registered for _, r, _ in found):
            error = (typed, "duplicate parameter")
        found.append((setting, registered, config.value_text(args[i + 1])))
    if unknown is not None:
        raise CommandError(errors.CONFIG_UNKNOWN % unknown)
    if error is not None:
        raise CommandError(errors.CONFIG_SET_FAILED % error)
    changes: dict = {}
    for setting, registered, text in found:
        old = changes.get(setting.name, server.config[setting.name])
        try:
            value = setting.parse_set(text, old)
        except ValueError as e:
            raise CommandError(errors.CONFIG_SET_FAILED % (registered, e)) from None
        if setting.name == "hz":
            value = max(1, min(value, 500))  # as Redis clamps it (updateHZ)
        if "fixed" in setting.flags and value != server.config[setting.name]:
            # Redis can change it at run time; shardkv cannot.  Set to the
            # value it has, it changes nothing, as in Redis (CONFIG SET of
            # everything CONFIG GET * lists, as tools do, works).
            raise CommandError(errors.CONFIG_SET_FAILED % (registered, "can't set immutable config"))
        changes[setting.name] = value
    return changes


def allow_protected_action(value: str, client: Client) -> bool:
    """Redis's ``allowProtectedAction``: ``yes``, or ``local`` for a client on
    loopback or a Unix socket (``enable-protected-configs``,
    ``enable-debug-command``)."""
    if value == "yes":
        return True
    if value != "local" or client.transport is None:
        return False
    return is_loopback(client.transport.get_extra_info("peername"))


def worker_config(server, names) -> list[bytes]:
    """``__config`` with the current values of ``names``, for the workers."""
    out = [Verb.CONFIG]
    for name in names:
        value = server.config[name]
        if isinstance(value, config.NotifyText):  # its letters: "KEAn" shows as "AKE", n lost
            value = config.notify_letters(value.flags)
        out += [name.encode(), config.value_bytes(config.SETTINGS[name].show(value))]
    return out


def config_to_worker(server, link) -> None:
    """A worker's pipe was attached: give it every setting (at K > 1
    numbered, see shardkv.acceptor.configorder)."""
    body = encode_command(configorder.stamp(server, worker_config(server, config.SETTINGS)))
    link.send(entry_header(0), body, _IGNORE)


class _Ignore:
    """A sink for a reply nobody waits for."""

    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


class _AgainIfBusy:
    """A shard's part of a CONFIG SET or RESETSTAT (outside EXEC): refused
    ``-BUSY`` (a script past busy-reply-threshold refused its hold), it
    goes again as the acceptor's own message, run after the script (see
    ``_ask_every_shard``); any other answer is the part's."""

    __slots__ = ("body", "header", "link", "sink")

    def __init__(self, link, header: bytes, body: bytes, sink) -> None:
        self.link = link
        self.header = header
        self.body = body
        self.sink = sink

    @property
    def event_holder(self) -> object:
        """The part's gather, which holds the shards' events (the evictions
        of a smaller maxmemory) until every part is in and, at K > 1, relays
        them to the other acceptors: the shards send a part's events to
        this acceptor alone (see Shard._share_events)."""
        return getattr(self.sink, "event_holder", None)

    def deliver(self, body: bytes) -> None:
        if body[:6] == b"-BUSY ":
            self.link.send(self.header, self.body, self.sink, control=True)
        else:
            self.sink.deliver(body)


def _set_oom(server, parts: list) -> object:
    """The shards' answers to ``__config`` or ``__oom``: is any of them out
    of memory?  The acceptor then refuses commands as Redis does at OOM
    while a transaction is queued (see Dispatch._execute)."""
    server.oom = any(p == 1 for p in parts)
    memorybudget.learn_oom_functions(server)
    return OK


def _reset_stats(server) -> None:
    server.commands_processed = 0
    server.connections_received = 0
    server.rejected_connections = 0
    server.net_input_bytes = server.net_output_bytes = 0
    server.reads_processed = server.writes_processed = 0
    for reset in server.wiring.on_resetstat:
        reset(server)


def bus_resetstat(server, origin: int, args: list) -> int:
    """Another acceptor's CONFIG RESETSTAT: this one's counters too."""
    _reset_stats(server)
    return 1


def bus_sync(server, origin: int, args: list) -> int | None:
    """Answered once everything the asker sent before reached this acceptor
    (its CONFIG SET's config line), and what the workers did about it, which
    the asker's CONFIG SET waited for before it asked, reached this one too:

    * the last ``__events`` it sent the workers is in effect there (every
      worker answered it);
    * every worker answered ``__settled`` on this acceptor's pipe, so its
      ``D`` frame, if a setting changed its -MISCONF state
      (stop-writes-on-bgsave-error), is read;
    * the ``__misconf`` that frame made this acceptor send every worker is
      answered (a script through any acceptor finds it).

    So a command through this acceptor after the asker's OK sees the new
    setting, as after Redis's one CONFIG SET.  A worker that is down
    answers at once (its link says so) and hears it all again when
    attached; one silent for :data:`SETTLE_WITHIN` is given up on (logged),
    so that the supervisor does not take this acceptor for stuck."""
    server._flush_links()
    answer = server.bus.later()
    answered = [False]

    def settled() -> None:
        if not answered[0]:
            answered[0] = True
            timer.cancel()
            answer(1)

    def late() -> None:
        if not answered[0]:
            answered[0] = True
            log.warning("acceptor: CONFIG SET's sync: the workers did not answer in %.0f s", SETTLE_WITHIN)
            answer(1)

    timer = server.loop.call_later(SETTLE_WITHIN, late)
    notifications.when_applied(lambda: _settle_links(server, settled))
    return None


def _settle_links(server, then) -> None:
    """``__settled`` on every pipe of this acceptor; ``then`` once every
    worker answered it and the ``__misconf`` their answers caused (a
    worker reloading after a restart, not: see :func:`_ask_every_shard`)."""
    links = [link for link in server.links if link.up and link.index not in server.reloading]
    left = [len(links)]

    def answered(_: object) -> None:
        left[0] -= 1
        if not left[0]:
            diskerrors.when_told(server, then)

    if not links:
        diskerrors.when_told(server, then)
    for link in links:
        link.inquire([Verb.SETTLED], answered)


class _Both:
    """A reply slot's stand-in for the shards' merged reply, handed on once
    the other acceptors have answered the question asked of them after it
    (or the error of one that failed to, instead)."""

    __slots__ = ("slot", "kind", "body", "failure")

    def __init__(self, slot: Slot, kind: bytes) -> None:
        self.slot = slot
        self.kind = kind
        self.body: bytes | None = None
        self.failure: str | None = None

    def deliver(self, body: bytes) -> None:
        self.body = body
        server = self.slot.client.server
        server.bus.ask(self.kind, [], self.acceptors_answered, failed=self.acceptors_failed)  # type: ignore[union-attr]

    def acceptors_answered(self, _: list) -> None:
        if self.failure is None:
            self.slot.deliver(self.body)  # type: ignore[arg-type]
        else:
            fail_slot(self.slot)(self.failure)

    def acceptors_failed(self, message: str) -> None:
        self.failure = message
        self.acceptors_answered([])


def _ok_with_acceptors(client: Client, kind: bytes) -> None:
    """+OK, with several acceptors once the others have answered ``kind``
    (while the shards load: there is no shard to ask)."""
    if client.server.bus is None:
        client.reply(OK)
        return
    slot = Slot(client)
    client.pending.append(slot)
    _Both(slot, kind).deliver(b"+OK\r\n")


def _with_acceptors(client: Client, args: list, merge, kind: bytes, slot: Slot | None = None) -> None:
    """Ask every shard ``args`` now (in the client's order), then, once they
    all answered, the other acceptors ``kind``; reply with ``merge`` of the
    shards' answers once the acceptors have answered too (in ``slot``, a
    new one unless given).  In that order, so that what the shards did is
    done when the others are asked (see :func:`bus_sync`)."""
    if slot is None:
        slot = Slot(client)
    client.pending.append(slot)
    _ask_every_shard(client, args, merge, _Both(slot, kind))


def _ask_every_shard(client: Client, args: list, merge, sink) -> None:
    """Send every shard ``args`` in the client's order; ``sink`` gets
    ``merge`` of their answers.  A shard whose worker reloads after a
    restart (:attr:`Acceptor.reloading`) gets them too, in its pipe's
    order, applied once it has loaded, but its answer is not waited for:
    Redis answers CONFIG while it loads (the ``loading`` flag), and the
    other shards, which checked the same values, answer for it.  (As the
    acceptor's own message, so that with several acceptors no step holds
    that shard for it: a hold waits for the load too.)

    The others go in a step's holds (at K > 1), in one order with the
    other acceptors' steps: sent at once, unheld, a shard could run
    another acceptor's MSET across shards before the part and the next
    shard after it (half of its keyspace events notified).  Outside EXEC,
    a part that a shard refused ``-BUSY`` (its script went past
    busy-reply-threshold and refused the hold at the threshold; the
    others got theirs, and this acceptor had applied it) goes again as
    the acceptor's own message, which that shard runs after the script,
    as at K = 1: all of it, and ``+OK``, never ``-BUSY`` for a command
    that took effect (CONFIG SET, RESETSTAT, sent before the threshold).
    Inside EXEC the parts stay in the transaction's step, in its order."""
    server = client.server
    reloading = server.reloading
    asked = [link for link in server.links if link.index not in reloading]
    gather = Gather(sink, len(asked), merge, client.resp3, None)
    header, body = client.part_headers[client.resp3], encode_command(args)
    for link in server.links:
        if link.index in reloading:
            link.send(header, body, _IGNORE, control=True)
    alone = not client.state.in_exec
    for i, link in enumerate(asked):
        part = gather.sink(i)
        link.send(header, body, _AgainIfBusy(link, header, body, part) if alone else part)
    if not asked:
        gather.done()


def _apply_set(client: Client, changes: dict) -> None:
    """A CONFIG SET, everything checked: apply it in the acceptor, then in
    every worker.  A worker that is down now gets every setting when it is
    attached again (config_to_worker), so none is left behind."""
    server = client.server
    server.config.update(changes)
    server.config_client = client
    try:
        for hook in server.wiring.on_config:
            hook(server, changes)
    finally:
        server.config_client = None
    # Reply once every worker has the new values (and has said whether
    # it is now out of memory), and, with several acceptors, once the
    # others have applied them too (the supervisor passed them the
    # ``config`` line before this question: see tell_supervisor).
    if server.loading:
        # The shards still load at start: a worker whose pipe is not
        # attached yet gets every setting once it is (config_to_worker);
        # one attached already (as the last are attached) is told now.
        # Redis sets it while it loads, and says +OK: with several
        # acceptors once the others have applied it too (the supervisor
        # relays their bus while the shards load).
        args = worker_config(server, changes)
        body = encode_command(configorder.stamp(server, args))
        for link in server.links:
            if link.up:
                link.send(entry_header(0), body, _IGNORE)
        if server.bus is not None:
            configorder.sent_workers(server, args)
        _ok_with_acceptors(client, bus.SYNC)
        return
    merge = lambda parts: _set_oom(server, parts)  # noqa: E731
    slot = _Applied(client)
    if server.bus is None:
        client.pending.append(slot)
        _ask_every_shard(client, worker_config(server, changes), merge, slot)
    else:
        # Sent again, numbered, once the supervisor has numbered it (see
        # shardkv.acceptor.configorder): the workers end in its order.
        args = worker_config(server, changes)
        configorder.sent_workers(server, args)
        _with_acceptors(client, configorder.stamp(server, args), merge, bus.SYNC, slot)


# A client's blocked_token while its CONFIG SET is not yet in effect
# everywhere (see _Applied).
APPLYING = -15


class _Applied(Slot):
    """CONFIG SET's reply slot (outside EXEC): the client's later commands
    wait for it, as Redis runs them once the setting is in effect.  The
    acceptor checks some of them against what the workers tell it about
    the setting before their reply (the -MISCONF state that
    stop-writes-on-bgsave-error changes, a ``D`` frame): a PING or a write
    pipelined behind ``CONFIG SET stop-writes-on-bgsave-error no`` was
    refused with -MISCONF, and one behind ``yes`` let through, where Redis
    does the opposite.  A client that waits for something else already
    (requirepass at K > 1 holds it so) is not held again."""

    __slots__ = ("held",)

    def __init__(self, client: Client) -> None:
        super().__init__(client)
        state = client.state
        self.held = not state.in_exec and not state.blocked_token
        if self.held:
            state.block(APPLYING, shown=False)

    def deliver(self, body: bytes) -> None:
        super().deliver(body)
        client = self.client
        if self.held and client.state.unblock(APPLYING) and client.waiting():
            client.server.loop.call_soon(client.resume)  # type: ignore[union-attr]


@guard
def config_cmd(client: Client, args: list) -> None:
    """CONFIG GET parameter [parameter ...] | CONFIG SET parameter value [...] | CONFIG RESETSTAT"""
    problem = command_docs.check_subcommand(args)
    if problem:
        raise CommandError(problem)
    sub = args[1].upper()
    server = client.server
    if sub == b"GET":
        client.reply(_config_get(server, args[2:]))
    elif sub == b"SET":
        if len(args) % 2:
            raise CommandError(errors.SYNTAX)
        changes = config_set_changes(client, args)
        listeners.bind_for_set(client, changes)  # a port that cannot be bound changes nothing
        if not listeners.bind_everywhere(client, changes, lambda: _apply_set(client, changes)):
            _apply_set(client, changes)  # (else once every acceptor has bound the new port)
    elif sub == b"RESETSTAT":
        _reset_stats(server)
        if server.loading:
            _ok_with_acceptors(client, bus.RESETSTAT)  # (the shards still load: none has counted)
        elif server.bus is None:
            slot = Slot(client)
            client.pending.append(slot)
            _ask_every_shard(client, [Verb.RESETSTAT], all_ok, slot)  # (a reloading worker's not waited for)
        else:
            _with_acceptors(client, [Verb.RESETSTAT], all_ok, bus.RESETSTAT)
    elif sub == b"REWRITE":
        path = server.config.get(config.CONFIG_FILE)
        if not path:
            raise CommandError(errors.NO_CONFIG_FILE)
        try:
            config.rewrite_file(path, server.config)
        except OSError as e:
            raise CommandError(errors.CONFIG_REWRITE_FAILED % e.strerror) from None
        client.reply(OK)
    elif sub == b"HELP":
        client.reply(list(_CONFIG_HELP))
    else:
        raise subcommand_error(args)
