"""Commands the acceptor answers itself, without touching a shard.

Connection commands (PING, ECHO, QUIT, HELLO, SELECT, CLIENT), server
introspection (COMMAND, CONFIG, INFO, TIME) and the commands that only
need to ask the shards a question (SCAN, INFO's keyspace).
"""

from __future__ import annotations

import os
import time

from shardkv import REDIS_VERSION, commands, config, errors
from shardkv.acceptor import local
from shardkv.args import parse_int
from shardkv.client import Client
from shardkv.errors import CommandError
from shardkv.glob import compile_glob
from shardkv.info import build_info
from shardkv.resp import OK, Verbatim
from shardkv.router import SLOTS


def _guard(fn):
    """Turn a CommandError raised by a local handler into an error reply."""

    def run(client: Client, args: list) -> None:
        try:
            fn(client, args)
        except CommandError as e:
            client.reply_error(e.message)

    run.__doc__ = fn.__doc__
    run.__name__ = fn.__name__
    return run


def _subcommand_error(args: list) -> CommandError:
    return CommandError(
        errors.UNKNOWN_SUBCOMMAND % (args[1].decode("latin-1"), args[0].decode("latin-1").upper())
    )


def _sub_arity(args: list, name: str) -> CommandError:
    return CommandError(errors.WRONG_ARITY % name)


# -- connection --------------------------------------------------------------


@local("ping")
@_guard
def ping(client: Client, args: list) -> None:
    """PING [message]"""
    if len(args) > 2:
        raise CommandError(errors.WRONG_ARITY % "ping")
    if client.channels or client.patterns:
        if not client.resp3:
            client.reply([b"pong", args[1] if len(args) == 2 else b""])
            return
    client.reply(args[1] if len(args) == 2 else "PONG")


@local("echo")
def echo(client: Client, args: list) -> None:
    """ECHO message"""
    client.reply(args[1])


@local("quit")
def quit_(client: Client, args: list) -> None:
    """QUIT"""
    client.reply(OK)
    client.close_after_replies()


@local("select")
@_guard
def select(client: Client, args: list) -> None:
    """SELECT index"""
    index = parse_int(args[1])
    if index != 0:
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    client.reply(OK)


def _hello_reply(client: Client) -> dict:
    return {
        b"server": b"redis",
        b"version": REDIS_VERSION.encode(),
        b"proto": 3 if client.resp3 else 2,
        b"id": client.id,
        b"mode": b"standalone",
        b"role": b"master",
        b"modules": [],
    }


@local("hello")
@_guard
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
        from shardkv.security import check_auth

        check_auth(client, auth[0], auth[1])
    if not client.authenticated:
        raise CommandError(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and "
            "select the RESP protocol version at the same time"
        )
    if name is not None:
        _check_name(name)
        client.name = name
    if version is not None:
        client.resp3 = version == 3
    client.reply(_hello_reply(client))


def _check_name(name: bytes) -> None:
    if any(c < 33 or c > 126 for c in name):
        raise CommandError(errors.CLIENT_NAME_SPACES)


# -- CLIENT ------------------------------------------------------------------


def client_info_line(c: Client, now: float) -> bytes:
    flags = "N"
    if c.multi is not None:
        flags = "x"
    elif c.channels or c.patterns:
        flags = "P"
    elif c.blocked_token:
        flags = "b"
    fields = [
        ("id", str(c.id)),
        ("addr", c.addr),
        ("laddr", c.laddr),
        ("fd", "-1"),
        ("name", c.name.decode("latin-1")),
        ("age", str(int(now - c.created))),
        ("idle", str(int(now - c.last_active))),
        ("flags", flags),
        ("db", "0"),
        ("sub", str(len(c.channels))),
        ("psub", str(len(c.patterns))),
        ("ssub", "0"),
        ("multi", str(len(c.multi)) if c.multi is not None else "-1"),
        ("qbuf", str(c.parser.buffered())),
        ("qbuf-free", "0"),
        ("argv-mem", "0"),
        ("multi-mem", "0"),
        ("rbs", "0"),
        ("rbp", "0"),
        ("obl", "0"),
        ("oll", str(len(c.pending))),
        ("omem", "0"),
        ("tot-mem", "0"),
        ("events", "r"),
        ("cmd", c.last_command.decode("latin-1").lower()),
        ("user", "default"),
        ("redir", "-1"),
        ("resp", "3" if c.resp3 else "2"),
        ("lib-name", c.lib_name.decode("latin-1")),
        ("lib-ver", c.lib_ver.decode("latin-1")),
    ]
    return " ".join(f"{k}={v}" for k, v in fields).encode()


@local("client")
@_guard
def client_cmd(client: Client, args: list) -> None:
    """CLIENT subcommand [argument ...]"""
    sub = args[1].upper()
    server = client.server
    n = len(args)
    if sub == b"SETNAME" and n == 3:
        _check_name(args[2])
        client.name = args[2]
        client.reply(OK)
    elif sub == b"GETNAME" and n == 2:
        client.reply(client.name or None)
    elif sub == b"ID" and n == 2:
        client.reply(client.id)
    elif sub == b"SETINFO" and n == 4:
        attr = args[2].upper()
        if attr == b"LIB-NAME":
            _check_name(args[3])
            client.lib_name = args[3]
        elif attr == b"LIB-VER":
            client.lib_ver = args[3]
        else:
            raise CommandError("ERR Unrecognized option '{}'".format(args[2].decode("latin-1")))
        client.reply(OK)
    elif sub == b"INFO" and n == 2:
        client.reply(Verbatim(client_info_line(client, time.monotonic()) + b"\n"))
    elif sub == b"LIST":
        now = time.monotonic()
        chosen = list(server.clients.values())
        if n >= 4 and args[2].upper() == b"ID":
            ids = {parse_int(a) for a in args[3:]}
            chosen = [c for c in chosen if c.id in ids]
        elif n == 4 and args[2].upper() == b"TYPE":
            kind = args[3].lower()
            if kind == b"pubsub":
                chosen = [c for c in chosen if c.channels or c.patterns]
            elif kind == b"normal":
                chosen = [c for c in chosen if not (c.channels or c.patterns)]
            elif kind not in (b"master", b"replica", b"slave"):
                raise CommandError("ERR Unknown client type '{}'".format(args[3].decode("latin-1")))
            else:
                chosen = []
        elif n != 2:
            raise CommandError(errors.SYNTAX)
        client.reply(Verbatim(b"".join(client_info_line(c, now) + b"\n" for c in chosen)))
    elif sub == b"KILL" and n >= 3:
        _client_kill(client, args)
    elif sub in (b"NO-EVICT", b"NO-TOUCH") and n == 3:
        client.reply(OK)
    elif sub == b"HELP" and n == 2:
        client.reply(
            [
                b"CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"ID",
                b"INFO",
                b"KILL",
                b"LIST",
                b"GETNAME",
                b"SETNAME",
                b"SETINFO",
            ]
        )
    else:
        if sub in (b"SETNAME", b"GETNAME", b"ID", b"SETINFO", b"INFO", b"KILL"):
            raise _sub_arity(args, "client|" + sub.decode().lower())
        raise _subcommand_error(args)


def _client_kill(client: Client, args: list) -> None:
    server = client.server
    if len(args) == 3:  # the old form: CLIENT KILL addr:port
        victims = [c for c in server.clients.values() if c.addr == args[2].decode("latin-1")]
        if not victims:
            raise CommandError(errors.NO_SUCH_CLIENT)
        _kill(client, victims)
        client.reply(OK)
        return
    if len(args) % 2 == 1:
        raise CommandError(errors.SYNTAX)
    victims = list(server.clients.values())
    skipme = True
    for i in range(2, len(args), 2):
        opt, val = args[i].upper(), args[i + 1]
        text = val.decode("latin-1")
        if opt == b"ID":
            cid = parse_int(val, "ERR client-id should be greater than 0")
            victims = [c for c in victims if c.id == cid]
        elif opt == b"ADDR":
            victims = [c for c in victims if c.addr == text]
        elif opt == b"LADDR":
            victims = [c for c in victims if c.laddr == text]
        elif opt == b"USER":
            victims = [c for c in victims if text == "default"]
        elif opt == b"SKIPME":
            if val.lower() not in (b"yes", b"no"):
                raise CommandError(errors.SYNTAX)
            skipme = val.lower() == b"yes"
        elif opt == b"TYPE":
            kind = val.lower()
            if kind == b"pubsub":
                victims = [c for c in victims if c.channels or c.patterns]
            elif kind == b"normal":
                victims = [c for c in victims if not (c.channels or c.patterns)]
            else:
                victims = []
        else:
            raise CommandError(errors.SYNTAX)
    if skipme:
        victims = [c for c in victims if c is not client]
    _kill(client, victims)
    client.reply(len(victims))


def _kill(me: Client, victims: list) -> None:
    for c in victims:
        if c is me:
            c.close_after_replies()
        elif c.transport is not None:
            c.transport.close()


# -- COMMAND -----------------------------------------------------------------


def _command_info(cmd: commands.Command) -> list:
    return [
        cmd.name.encode(),
        cmd.arity,
        sorted(cmd.flags),
        cmd.first_key,
        cmd.last_key if not cmd.numkeys_at else cmd.first_key,
        cmd.step if not cmd.numkeys_at else (1 if cmd.first_key else 0),
        [],
        [],
        [],
        [],
    ]


def _command_docs(cmd: commands.Command) -> dict:
    return {
        b"summary": (cmd.name.upper() + " command").encode(),
        b"since": b"1.0.0",
        b"group": cmd.group.encode(),
    }


@local("command")
@_guard
def command(client: Client, args: list) -> None:
    """COMMAND [COUNT | INFO [name ...] | DOCS [name ...] | LIST | GETKEYS command [arg ...]]"""
    table = commands.COMMANDS
    if len(args) == 1:
        client.reply([_command_info(c) for c in table.values()])
        return
    sub = args[1].upper()
    if sub == b"COUNT" and len(args) == 2:
        client.reply(len(table))
    elif sub == b"LIST":
        client.reply([name.encode() for name in table])
    elif sub == b"INFO":
        names = [a.decode("latin-1").lower() for a in args[2:]] or list(table)
        client.reply([_command_info(table[n]) if n in table else None for n in names])
    elif sub == b"DOCS":
        names = [a.decode("latin-1").lower() for a in args[2:]] or list(table)
        client.reply({n.encode(): _command_docs(table[n]) for n in names if n in table})
    elif sub == b"GETKEYS" and len(args) >= 3:
        cmd = commands.lookup(args[2])
        if cmd is None:
            raise CommandError("ERR Invalid command specified")
        if not commands.check_arity(cmd, len(args) - 2):
            raise CommandError("ERR Invalid number of arguments specified for command")
        keys = cmd.keys(args[2:])
        if not keys:
            raise CommandError("ERR The command has no key arguments")
        client.reply(keys)
    elif sub == b"HELP" and len(args) == 2:
        client.reply(
            [
                b"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"(no subcommand)",
                b"COUNT",
                b"DOCS",
                b"GETKEYS",
                b"INFO",
                b"LIST",
            ]
        )
    else:
        raise _subcommand_error(args)


# -- CONFIG ------------------------------------------------------------------

# Settings Redis users and tools ask for that shardkv has no knob for.
_FIXED = {"databases": "1", "cluster-enabled": "no", "maxmemory-samples": "5"}


@local("config")
@_guard
def config_cmd(client: Client, args: list) -> None:
    """CONFIG GET parameter [parameter ...] | CONFIG SET parameter value [...] | CONFIG RESETSTAT"""
    sub = args[1].upper()
    server = client.server
    if sub == b"GET":
        if len(args) < 3:
            raise _sub_arity(args, "config|get")
        out: dict = {}
        values = {name: s.show(server.config[name]) for name, s in config.SETTINGS.items()}
        values.update(_FIXED)
        for pattern in args[2:]:
            match = compile_glob(pattern.lower())
            for name, value in values.items():
                if match(name.encode()):
                    out[name.encode()] = value.encode()
        client.reply(out)
    elif sub == b"SET":
        if len(args) < 4 or len(args) % 2:
            raise _sub_arity(args, "config|set")
        changes = {}
        for i in range(2, len(args), 2):
            name = args[i].decode("latin-1").lower()
            setting = config.SETTINGS.get(name)
            if setting is None or not setting.runtime:
                raise CommandError(errors.CONFIG_UNKNOWN % args[i].decode("latin-1"))
            try:
                changes[name] = setting.parse(args[i + 1].decode("latin-1"))
            except ValueError as e:
                raise CommandError(errors.CONFIG_SET_FAILED % (name, e)) from None
        server.config.update(changes)
        for hook in CONFIG_HOOKS:
            hook(server, changes)
        client.reply(OK)
    elif sub == b"RESETSTAT" and len(args) == 2:
        server.commands_processed = 0
        server.connections_received = 0
        server.rejected_connections = 0
        client.reply(OK)
    elif sub == b"REWRITE" and len(args) == 2:
        raise CommandError("ERR The server is running without a config file")
    elif sub == b"HELP" and len(args) == 2:
        client.reply(
            [
                b"CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"GET <pattern>",
                b"SET <directive> <value>",
                b"RESETSTAT",
            ]
        )
    else:
        raise _subcommand_error(args)


CONFIG_HOOKS: list = []


# -- server ------------------------------------------------------------------


@local("info")
def info(client: Client, args: list) -> None:
    """INFO [section [section ...]]"""
    sections = [a.decode("latin-1").lower() for a in args[1:]]

    def merge(parts: list) -> object:
        return Verbatim(build_info(client.server, sections, parts).encode())

    client.query_all([b"__info"], merge)


@local("time")
def time_(client: Client, args: list) -> None:
    """TIME"""
    now = time.time()
    client.reply([b"%d" % int(now), b"%d" % int((now % 1) * 1_000_000)])


@local("lastsave")
def lastsave(client: Client, args: list) -> None:
    """LASTSAVE"""
    client.reply(client.server.lastsave)


@local("wait")
@_guard
def wait(client: Client, args: list) -> None:
    """WAIT numreplicas timeout"""
    parse_int(args[1])
    timeout = parse_int(args[2], "ERR timeout is not an integer or out of range")
    if timeout < 0:
        raise CommandError(errors.TIMEOUT_NEGATIVE)
    client.reply(0)


@local("swapdb")
@_guard
def swapdb(client: Client, args: list) -> None:
    """SWAPDB index1 index2"""
    a = parse_int(args[1], "ERR invalid first DB index")
    b = parse_int(args[2], "ERR invalid second DB index")
    if a < 0 or a >= 1 or b < 0 or b >= 1:
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    client.reply(OK)


@local("debug")
@_guard
def debug(client: Client, args: list) -> None:
    """DEBUG SLEEP seconds"""
    sub = args[1].upper()
    if sub == b"SLEEP" and len(args) == 3:
        from shardkv.args import parse_float

        seconds = parse_float(args[2])
        if seconds > 0:
            slot = _later(client)
            client.server.loop.call_later(seconds, slot.deliver, b"+OK\r\n")  # type: ignore[union-attr]
            return
        client.reply(OK)
    else:
        raise CommandError(
            "ERR DEBUG subcommand not supported by shardkv: {}".format(args[1].decode("latin-1"))
        )


def _later(client: Client):
    from shardkv.client import Slot

    slot = Slot(client)
    client.pending.append(slot)
    return slot


# -- SCAN --------------------------------------------------------------------


@local("scan")
@_guard
def scan(client: Client, args: list) -> None:
    """SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]"""
    cursor = parse_int(args[1], errors.INVALID_CURSOR) if args[1].isdigit() else None
    if cursor is None:
        raise CommandError(errors.INVALID_CURSOR)
    pattern = b""
    kind = b""
    count = 10
    j = 2
    while j < len(args):
        opt = args[j].upper()
        if j + 1 >= len(args):
            raise CommandError(errors.SYNTAX)
        if opt == b"COUNT":
            count = parse_int(args[j + 1])
            if count < 1:
                raise CommandError(errors.SYNTAX)
        elif opt == b"MATCH":
            pattern = args[j + 1]
        elif opt == b"TYPE":
            kind = args[j + 1]
        else:
            raise CommandError(errors.SYNTAX)
        j += 2
    server = client.server
    if cursor >= SLOTS:
        client.reply([b"0", []])
        return
    shard = server.router.owners[cursor]

    def merge(parts: list) -> object:
        next_slot, keys = parts[0]
        if next_slot < 0:
            next_slot = (shard + 1) * SLOTS // server.nshards if shard + 1 < server.nshards else 0
        return [b"%d" % next_slot, keys]

    client.fan_out({shard: [b"__scan", b"%d" % cursor, b"%d" % count, pattern, kind]}, merge)


@local("shutdown")
@_guard
def shutdown(client: Client, args: list) -> None:
    """SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]"""
    for a in args[1:]:
        if a.upper() not in (b"NOSAVE", b"SAVE", b"NOW", b"FORCE", b"ABORT"):
            raise CommandError(errors.SYNTAX)
    os.kill(os.getppid(), 15)
