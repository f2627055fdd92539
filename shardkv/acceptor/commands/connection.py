"""The connection commands the acceptor answers: PING, ECHO, QUIT, SELECT,
HELLO and CLIENT (AUTH is in :mod:`shardkv.acceptor.security`, RESET in
:mod:`shardkv.acceptor.pubsub`).

SELECT changes the client's database (``databases`` of them, 16 by
default): the acceptor keeps it per client and each entry it sends a shard
carries it in its header (see :mod:`shardkv.protocol.wire`).  CLIENT checks
its subcommand and its arity against :mod:`shardkv.protocol.command_docs`,
with Redis's errors.
"""

from __future__ import annotations

import time
from functools import partial

from shardkv import HELLO_VERSION
from shardkv.acceptor import pause, querybuf
from shardkv.acceptor.blocking import (
    UnblockReply,
    after_earlier_commands,
    located,
    remote_pin,
    serve_after_scripts,
    unblock,
    unblock_located,
    unpin,
)
from shardkv.acceptor.bus import fail_slot
from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard, subcommand_error
from shardkv.acceptor.replies import Slot
from shardkv.acceptor.shardlink import busy_changes, when_busy_seen
from shardkv.acceptor.state import AFTER_SCRIPTS, REPLY_OFF, REPLY_ON, REPLY_SKIP_NEXT
from shardkv.acceptor.users import authenticate
from shardkv.protocol import bus, command_docs, errors
from shardkv.protocol.args import LLONG_MAX, parse_int, parse_int32, strict_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK, Verbatim, encode, encode_command, encode_error
from shardkv.runtime.cmdstats import known_name


@guard
def ping(client: Client, args: list) -> None:
    """PING [message]"""
    if len(args) > 2:
        raise CommandError(errors.WRONG_ARITY % "ping")
    if client.state.subscribed:
        if not client.resp3:
            client.reply([b"pong", args[1] if len(args) == 2 else b""])
            return
    client.reply(args[1] if len(args) == 2 else "PONG")


def echo(client: Client, args: list) -> None:
    """ECHO message"""
    client.reply(args[1])


def quit_(client: Client, args: list) -> None:
    """QUIT"""
    client.reply(OK)
    client.close_after_replies()


@guard
def select(client: Client, args: list) -> None:
    """SELECT index"""
    db = parse_int32(args[1])
    if not 0 <= db < client.server.config["databases"]:
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    client.select(db)
    client.reply(OK)


def _hello_reply(client: Client) -> dict:
    return {
        b"server": b"redis",
        b"version": HELLO_VERSION.encode(),  # what clients gate client-side caching on
        b"proto": 3 if client.resp3 else 2,
        b"id": client.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


@guard
def hello(client: Client, args: list) -> None:
    """HELLO [protover [AUTH username password] [SETNAME clientname]]"""
    version = None
    if len(args) >= 2:
        version = parse_int(args[1], "ERR Protocol version is not an integer or out of range")
        if version < 2 or version > 3:
            raise CommandError(errors.NOPROTO)
    name = None
    auth = None
    j = 2
    while j < len(args):
        opt = args[j].upper()
        more = len(args) - j - 1
        if opt == b"AUTH" and more >= 2:
            auth = (args[j + 1], args[j + 2])
            j += 3
        elif opt == b"SETNAME" and more >= 1:
            name = args[j + 1]
            j += 2
        else:
            raise CommandError("ERR Syntax error in HELLO option '{}'".format(args[j].decode("latin-1")))
    if auth is not None:
        authenticate(client, auth[0], auth[1], hello=True)
    if not client.state.authenticated:
        raise CommandError(errors.NOAUTH_HELLO)
    if name is not None:
        _check_name(name)
        client.name = name
    if version is not None:
        client.resp3 = version == 3
    client.reply(_hello_reply(client))


def _check_name(name: bytes) -> None:
    if any(c < 33 or c > 126 for c in name):
        raise CommandError(errors.CLIENT_NAME_SPACES)


def client_info_line(
    c: Client,
    now: float,
    current: list | None = None,
    multi: int | None = None,
    db: int | None = None,
    then: tuple | None = None,
) -> bytes:
    """One line of CLIENT LIST, with Redis 7.0's fields.  ``current`` is the
    command being run when ``c`` asks about itself: Redis shows it in
    ``cmd`` (unless it runs inside EXEC: then ``cmd`` is exec, Redis's
    ``c->lastcmd``), and its bytes are still in the query buffer (``qbuf``).
    ``multi`` (ACL LOG's entry of a script's refused call): the line is as
    it was when the client called the script, whose command ``current``
    names (exec inside EXEC) and ``multi`` its queued count (flagged
    MULTI, ``x``, as Redis's client is until its EXEC ends) or -1, ``db``
    (if given) the database it called it in, ``then`` (if given) the
    :func:`client_then` the client had then, with ``now`` the time then."""
    name, flags, sub, psub, last_active, user, redir, resp3, lib_name, lib_ver = then or client_then(c, multi)
    last: list
    if multi is not None:
        last, current = current or [], None
    elif c.state.in_exec:
        last = [b"exec"]
    else:
        last = current if current is not None else c.last_args
    qbuf, qbuf_free = querybuf.sizes(c, len(encode_command(current)) if current is not None else 0)
    multi_mem = sum(len(a) + 16 for _, args in c.state.multi for a in args) if c.state.multi else 0
    fields = [
        ("id", str(c.id)),
        ("addr", c.addr),
        ("laddr", c.laddr),
        ("fd", str(c.fd)),
        ("name", name.decode("latin-1")),
        ("age", str(int(now - c.created))),
        ("idle", str(int(now - last_active))),
        ("flags", flags),
        ("db", str(c.db if db is None else db)),
        ("sub", str(sub)),
        ("psub", str(psub)),
        ("ssub", str(len(c.state.shard_channels))),
        (
            "multi",
            str(multi)
            if multi is not None
            else str(len(c.state.multi))
            if c.state.multi is not None
            else "-1",
        ),
        ("qbuf", str(qbuf)),
        ("qbuf-free", str(qbuf_free)),
        ("argv-mem", str(sum(len(a) for a in current) if current is not None else 0)),
        ("multi-mem", str(multi_mem)),
        ("rbs", "0"),
        ("rbp", "0"),
        ("obl", "0"),
        ("oll", str(len(c.pending))),
        ("omem", "0"),
        ("tot-mem", str(qbuf + qbuf_free + multi_mem)),
        ("events", "r"),
        ("cmd", _cmd_field(last)),
        ("user", user.decode("latin-1")),
        ("redir", str(redir)),
        ("resp", "3" if resp3 else "2"),
        ("lib-name", lib_name.decode("latin-1")),
        ("lib-ver", lib_ver.decode("latin-1")),
    ]
    return " ".join(f"{k}={v}" for k, v in fields).encode()


def client_then(c: Client, multi: int | None = None) -> tuple:
    """What CLIENT LIST's line shows of the client's state (its name,
    flags, subscriptions, idle time, user, redirect, protocol, library):
    what ACL LOG's entry of a script's refused call shows as it was when
    the client called the script (a tuple: cheap to take for every script
    of a limited user, and the line made only for a refusal)."""
    state = c.state
    flags = ""
    if state.monitoring:
        flags += "O"
    if state.subscribed:
        flags += "P"
    if state.multi is not None or (multi is not None and multi >= 0):
        flags += "x"
    if state.blocked:
        flags += "b"
    tracking = c.tracking
    if tracking is not None:
        flags += "t" + ("R" if tracking.broken else "") + ("B" if tracking.bcast else "")
    if c.closing:
        flags += "c"
    if c.closed:  # its connection gone, what it sent still running (Acceptor.leaving)
        flags += "A"
    if c.no_evict:
        flags += "e"
    if c.no_touch:  # (Redis 7.2's flag)
        flags += "T"
    return (
        c.name,
        flags or "N",
        len(state.channels),
        len(state.patterns),
        c.last_active,
        state.user.name,
        tracking.redirect if tracking is not None else -1,
        c.resp3,
        c.lib_name,
        c.lib_ver,
    )


def _cmd_field(last: list[bytes]) -> str:
    """CLIENT LIST's ``cmd``: the name of ``last`` (``client|list`` for a
    container's subcommand), or NULL when no command ran yet or Redis does
    not know it (its ``c->lastcmd`` is then NULL): an unknown command, or
    an unknown subcommand of a container."""
    return known_name(last) or "NULL"


@guard
def client_cmd(client: Client, args: list) -> None:
    """CLIENT subcommand [argument ...]"""
    problem = command_docs.check_subcommand(args)
    if problem:
        raise CommandError(problem)
    sub = args[1].upper()
    server = client.server
    n = len(args)
    if sub == b"SETNAME":
        _check_name(args[2])
        client.name = args[2]
        client.reply(OK)
    elif sub == b"GETNAME":
        client.reply(client.name or None)
    elif sub == b"ID":
        client.reply(client.id)
    elif sub == b"SETINFO":
        attr = args[2].upper()
        if attr == b"LIB-NAME":
            _check_name(args[3])
            client.lib_name = args[3]
        elif attr == b"LIB-VER":
            client.lib_ver = args[3]
        else:
            raise CommandError("ERR Unrecognized option '{}'".format(args[2].decode("latin-1")))
        client.reply(OK)
    elif sub == b"INFO":
        client.reply(Verbatim(client_info_line(client, time.monotonic(), args) + b"\n"))
    elif sub == b"LIST":
        lines = _list_lines(server, args, client)
        if server.bus is None:
            client.reply(Verbatim(b"".join(line for _, line in lines)))
        else:
            _list_everywhere(client, args, lines)
    elif sub == b"KILL":
        serve_after_scripts(client, _client_kill, args)
    elif sub in (b"NO-EVICT", b"NO-TOUCH"):
        if args[2].upper() not in (b"ON", b"OFF"):
            raise CommandError(errors.SYNTAX)
        if sub == b"NO-EVICT":  # shown in CLIENT LIST's flags; shardkv never evicts clients
            client.no_evict = args[2].upper() == b"ON"
        else:  # carried to the shards in the client's entry headers
            client.set_no_touch(args[2].upper() == b"ON")
        client.reply(OK)
    elif sub == b"REPLY":
        mode = args[2].upper()
        if mode == b"ON":
            client.state.set_reply_mode(REPLY_ON)
            client.reply(OK)
        elif mode == b"OFF":
            client.state.set_reply_mode(REPLY_OFF)
        elif mode == b"SKIP":
            if client.state.reply_mode != REPLY_OFF:
                client.state.set_reply_mode(REPLY_SKIP_NEXT)
        else:
            raise CommandError(errors.SYNTAX)
    elif sub == b"PAUSE":
        _pause_after_scripts(client, args)
    elif sub == b"UNPAUSE":
        serve_after_scripts(client, _client_unpause, args)
    elif sub == b"UNBLOCK":
        error = False
        if n == 4:
            reason = args[3].upper()
            if reason == b"ERROR":
                error = True
            elif reason != b"TIMEOUT":
                raise CommandError(errors.CLIENT_UNBLOCK_REASON)
        elif n > 4:
            raise CommandError(errors.SYNTAX)
        cid = parse_int(args[2])
        target = server.clients.get(cid)
        bus_ = server.bus
        where = client.state.located.get(cid) if client.state.located else None
        pin = client.state.unblock_pin  # an EXEC's, run ahead of its commands
        if target is not None:  # once its shards decided
            reply = UnblockReply(client, args)
            unblock(target, error, reply.answer, client.state.unblock_after, pin)
            reply.ran()
        elif where is not None:  # another acceptor's client, located for this EXEC
            reply = UnblockReply(client, args)
            unblock_located(client, where, error, reply.answer)
            reply.ran()
        elif bus_ is None or cid <= 0:
            client.reply(0)
        else:  # perhaps another acceptor's client
            reply = UnblockReply(client, args)
            question = [cid, int(error)]
            if pin is not None:
                pin.remote = True
                question.append(pin.id)

            def ask() -> None:
                mark = busy_changes()
                bus_.ask(
                    bus.UNBLOCK,
                    question,
                    lambda found: _answer_unblock(reply, _unblocked_anywhere(found), mark),
                    failed=fail_slot(reply),
                )

            after_earlier_commands(client, ask)
            reply.ran()
    elif sub in server.wiring.client_subcommands:  # TRACKING, CACHING... (shardkv.acceptor.tracking)
        server.wiring.client_subcommands[sub](client, args)
    elif sub == b"HELP":
        client.reply(list(_CLIENT_HELP))
    else:
        raise subcommand_error(args)


_CLIENT_HELP = [
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "HELP",
    "    Prints this help.",
]


def _of_type(clients: list, kind_arg: bytes) -> list:
    """The clients of a CLIENT LIST/KILL ``TYPE``; there are no replicas."""
    kind = kind_arg.lower()
    if kind == b"pubsub":
        return [c for c in clients if c.state.subscribed]
    if kind == b"normal":
        return [c for c in clients if not c.state.subscribed]
    if kind in (b"master", b"replica", b"slave"):
        return []
    raise CommandError(errors.UNKNOWN_CLIENT_TYPE % kind_arg.decode("latin-1"))


# CLIENT KILL, PAUSE and UNPAUSE act on other clients: Redis runs nothing
# while a script runs, and reads them when it ends, or answers them -BUSY
# at busy-reply-threshold (no allow-busy flag), so they wait for the
# shards' scripts first (blocking.serve_after_scripts), their checks too.


def _pause_after_scripts(client: Client, args: list) -> None:
    """CLIENT PAUSE after the shards' scripts.  While it waits, what this
    acceptor's other clients send after it that it would postpone waits
    too (pause.wait_for): Redis reads the pause when the script ends,
    before them, and postpones them."""
    server = client.server
    try:
        kind, _ = _pause_args(args)
    except CommandError:
        kind = pause.NONE  # refused once read: it postpones nothing
    settled = partial(pause.waited, server, client) if kind else None
    serve_after_scripts(client, _client_pause, args, settled)
    if kind and client.state.blocked_token == AFTER_SCRIPTS:  # it waits (not run at once)
        pause.wait_for(server, client, kind)


def _pause_args(args: list) -> tuple[int, int]:
    """CLIENT PAUSE's mode and timeout, checked."""
    kind = pause.ALL
    n = len(args)
    if n == 4:
        mode = args[3].upper()
        if mode == b"WRITE":
            kind = pause.WRITE
        elif mode != b"ALL":
            raise CommandError(errors.CLIENT_PAUSE_MODE)
    elif n > 4:
        raise CommandError(errors.SYNTAX)
    timeout = parse_int(args[2], errors.TIMEOUT_NOT_INTEGER)
    if timeout < 0:
        raise CommandError(errors.TIMEOUT_NEGATIVE)
    return kind, timeout


@guard
def _client_pause(client: Client, args: list) -> None:
    kind, timeout = _pause_args(args)
    if timeout > LLONG_MAX - int(time.time() * 1000):
        # Redis adds the Unix time in milliseconds in a long long: this
        # end wraps to a time long past, and the pause is over at once.
        timeout = 0
    end = time.monotonic() + timeout / 1000
    pause.start(client.server, end, kind)
    _reply_when_all_did(client, bus.PAUSE, [round(end * 1e6), kind])


def _client_unpause(client: Client, args: list) -> None:
    pause.stop(client.server)
    _reply_when_all_did(client, bus.UNPAUSE, [])


def _reply_when_all_did(client: Client, kind: bytes, args: list) -> None:
    """OK, once every other acceptor did the same (K > 1): CLIENT PAUSE
    holds every acceptor's clients before it replies."""
    if client.server.bus is None:
        client.reply(OK)
        return
    slot = Slot(client)
    client.pending.append(slot)
    client.server.bus.ask(kind, args, lambda _: slot.deliver(b"+OK\r\n"), failed=fail_slot(slot))


def bus_pause(server, origin: int, args: list) -> int:
    """Another acceptor's CLIENT PAUSE: pause this one's clients too, until
    the same end (in microseconds of :func:`time.monotonic`)."""
    pause.start(server, args[0] / 1e6, args[1])
    return 1


def bus_unpause(server, origin: int, args: list) -> int:
    pause.stop(server)
    return 1


def _list_lines(server, args: list, me: Client | None) -> list[tuple[int, bytes]]:
    """CLIENT LIST's ``(id, line)`` of this acceptor's clients that ``args`` chose."""
    now = time.monotonic()
    n = len(args)
    chosen = list(server.clients.values())
    if n >= 4 and args[2].upper() == b"ID":
        ids = set()
        for a in args[3:]:
            cid = strict_int(a)
            if cid is None:
                raise CommandError(errors.INVALID_CLIENT_ID)
            ids.add(cid)
        chosen = [c for c in chosen if c.id in ids]
    elif n == 4 and args[2].upper() == b"TYPE":
        chosen = _of_type(chosen, args[3])
    elif n != 2:
        raise CommandError(errors.SYNTAX)
    return [(c.id, client_info_line(c, now, args if c is me else None) + b"\n") for c in chosen]


def _list_everywhere(client: Client, args: list, lines: list[tuple[int, bytes]]) -> None:
    """CLIENT LIST with several acceptors: theirs too, in the order of the ids."""
    slot = Slot(client)
    client.pending.append(slot)

    def done(answers: list) -> None:
        everyone = list(lines)
        for flat in answers:
            everyone += zip(flat[::2], flat[1::2], strict=True)
        everyone.sort(key=lambda pair: pair[0])
        slot.deliver(encode(Verbatim(b"".join(line for _, line in everyone)), client.resp3))

    client.server.bus.ask(bus.CLIENTS, args[2:], done, failed=fail_slot(slot))  # type: ignore[union-attr]


def bus_clients(server, origin: int, args: list) -> list:
    """Another acceptor's CLIENT LIST: this one's lines, as [id, line, ...]."""
    try:
        lines = _list_lines(server, [b"client", b"list", *args], None)
    except CommandError:
        return []
    return [x for pair in lines for x in pair]


def _victims(server, args: list, me: Client | None) -> list:
    """The clients of this acceptor that CLIENT KILL ``args`` chose."""
    if len(args) == 3:  # the old form: CLIENT KILL addr:port
        return [c for c in server.clients.values() if c.addr == args[2].decode("latin-1")]
    if len(args) % 2 == 1:
        raise CommandError(errors.SYNTAX)
    victims = list(server.clients.values())
    skipme = True
    for i in range(2, len(args), 2):
        opt, val = args[i].upper(), args[i + 1]
        text = val.decode("latin-1")
        if opt == b"ID":
            cid = strict_int(val)
            if cid is None or cid <= 0:
                raise CommandError(errors.CLIENT_ID_NOT_POSITIVE)
            victims = [c for c in victims if c.id == cid]
        elif opt == b"ADDR":
            victims = [c for c in victims if c.addr == text]
        elif opt == b"LADDR":
            victims = [c for c in victims if c.laddr == text]
        elif opt == b"USER":
            user = server.users.by_name.get(val)
            if user is None:
                raise CommandError(errors.NO_SUCH_USER % text)
            victims = [c for c in victims if c.state.user is user]
        elif opt == b"SKIPME":
            if val.lower() not in (b"yes", b"no"):
                raise CommandError(errors.SYNTAX)
            skipme = val.lower() == b"yes"
        elif opt == b"TYPE":
            victims = _of_type(victims, val)
        else:
            raise CommandError(errors.SYNTAX)
    if skipme:
        victims = [c for c in victims if c is not me]
    return victims


@guard
def _client_kill(client: Client, args: list) -> None:
    server = client.server
    victims = _victims(server, args, client)  # bad filters fail here, before any acceptor kills
    _kill(client, victims)
    if server.bus is None:
        _killed(client, args, len(victims))
        return
    slot = Slot(client)
    client.pending.append(slot)

    def done(counts: list) -> None:
        killed = len(victims) + sum(counts)
        if len(args) == 3 and not killed:
            server.stats.error(errors.NO_SUCH_CLIENT)
            slot.deliver(encode_error(errors.NO_SUCH_CLIENT))
        else:
            slot.deliver(encode(OK if len(args) == 3 else killed, client.resp3))

    server.bus.ask(bus.KILL, args[2:], done, failed=fail_slot(slot))


def _killed(client: Client, args: list, killed: int) -> None:
    if len(args) != 3:
        client.reply(killed)
    elif killed:
        client.reply(OK)
    else:
        raise CommandError(errors.NO_SUCH_CLIENT)


def bus_kill(server, origin: int, args: list) -> int:
    """Another acceptor's CLIENT KILL: close this one's clients it chose."""
    try:
        victims = _victims(server, [b"client", b"kill", *args], None)
    except CommandError:
        return 0
    _kill(None, victims)
    return len(victims)


def _unblocked_anywhere(found: list) -> int | bytes:
    """The acceptors' answers to ``unblock``: 1 from the blocked client's
    acceptor if it unblocked it, or its -BUSY (a script is busy there)."""
    for answer in found:
        if type(answer) is bytes:
            return answer
    return max(found, default=0)


def _answer_unblock(reply: UnblockReply, answer: int | bytes, mark: int) -> None:
    """A -BUSY from another acceptor waits until this acceptor knows of
    the script too (:func:`when_busy_seen`): as in Redis, a SCRIPT KILL
    sent after it must find the script."""
    if type(answer) is bytes:
        when_busy_seen(mark, lambda: reply.answer(answer))
    else:
        reply.answer(answer)


def bus_unblock(server, origin: int, args: list) -> int | None:
    """Another acceptor's CLIENT UNBLOCK of an id it does not have: answered
    once the shards decided (see :func:`shardkv.acceptor.blocking.unblock`)."""
    target = server.clients.get(args[0])
    if target is None:
        return 0
    pin = remote_pin(origin, args[2]) if len(args) > 2 else None  # an EXEC's (see Pin)
    unblock(target, bool(args[1]), server.bus.later(), pin=pin)
    return None


def bus_unpin(server, origin: int, args: list) -> None:
    """Another acceptor's EXEC, whose CLIENT UNBLOCKs pinned clients here,
    is decided (``args``: its pin id, 1 if it ran)."""
    unpin(server, origin, args[0], bool(args[1]))


def bus_locate(server, origin: int, args: list) -> list:
    """Where the clients of these ids that are this acceptor's wait, if
    on one shard: an EXEC's CLIENT UNBLOCKs (see :func:`unblock_located`)."""
    found = []
    for cid in args:
        target = server.clients.get(cid)
        where = located(target) if target is not None else None
        if where is not None:
            found.append([cid, *where])
    return found


def _kill(me: Client | None, victims: list) -> None:
    for c in victims:
        if c is me and me is not None:
            me.close_after_replies()
        else:
            c.kill()
