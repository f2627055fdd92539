"""Commands the acceptor answers itself, without touching a shard.

Connection commands (PING, ECHO, QUIT, HELLO, SELECT, CLIENT), server
introspection (COMMAND, CONFIG, INFO, TIME) and the commands that only
need to ask the shards a question (SCAN, INFO's keyspace).

SELECT changes the client's database (``databases`` of them, 16 by
default): the acceptor keeps it per client and each entry it sends a shard
carries it in its header (see :mod:`shardkv.protocol.wire`).  SWAPDB swaps two
databases on every shard in one step of the global order.
Container commands (CLIENT, COMMAND, CONFIG) check their subcommand and
its arity against :mod:`shardkv.protocol.command_docs`, with Redis's errors.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection

from shardkv import HELLO_VERSION
from shardkv.acceptor import monitor, pause
from shardkv.acceptor.blocking import unblock
from shardkv.acceptor.client import REPLY_OFF, REPLY_ON, REPLY_SKIP_NEXT, Client, Slot
from shardkv.acceptor.info import build_info
from shardkv.acceptor.security import check_auth, is_loopback
from shardkv.protocol import command_docs, commands, errors
from shardkv.protocol.args import parse_cursor, parse_int, parse_int32, parse_scan_options, strict_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import OK, Verbatim, encode, encode_command
from shardkv.protocol.router import SLOTS
from shardkv.protocol.wire import Verb, decode_part, entry_header
from shardkv.runtime import config
from shardkv.runtime.cmdstats import stat_name
from shardkv.runtime.config import parse_memory


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


# -- connection --------------------------------------------------------------


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


def echo(client: Client, args: list) -> None:
    """ECHO message"""
    client.reply(args[1])


def quit_(client: Client, args: list) -> None:
    """QUIT"""
    client.reply(OK)
    client.close_after_replies()


@_guard
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
        check_auth(client, auth[0], auth[1])
    if not client.authenticated:
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


# -- CLIENT ------------------------------------------------------------------


def client_info_line(c: Client, now: float, current: list | None = None) -> bytes:
    """One line of CLIENT LIST, with Redis 7.0's fields.  ``current`` is the
    command being run when ``c`` asks about itself: Redis shows it in
    ``cmd``, and its bytes are still in the query buffer (``qbuf``)."""
    flags = ""
    if c.monitoring:
        flags += "O"
    if c.channels or c.patterns:
        flags += "P"
    if c.multi is not None:
        flags += "x"
    if c.blocked_token:
        flags += "b"
    tracking = c.tracking
    if tracking is not None:
        flags += "t" + ("R" if tracking.broken else "") + ("B" if tracking.bcast else "")
    if c.closing:
        flags += "c"
    if c.no_evict:
        flags += "e"
    flags = flags or "N"
    last = current if current is not None else c.last_args
    qbuf = c.parser.buffered() + (len(encode_command(current)) if current is not None else 0)
    multi_mem = sum(len(a) + 16 for _, args in c.multi for a in args) if c.multi else 0
    fields = [
        ("id", str(c.id)),
        ("addr", c.addr),
        ("laddr", c.laddr),
        ("fd", str(c.fd)),
        ("name", c.name.decode("latin-1")),
        ("age", str(int(now - c.created))),
        ("idle", str(int(now - c.last_active))),
        ("flags", flags),
        ("db", str(c.db)),
        ("sub", str(len(c.channels))),
        ("psub", str(len(c.patterns))),
        ("ssub", "0"),
        ("multi", str(len(c.multi)) if c.multi is not None else "-1"),
        ("qbuf", str(qbuf)),
        ("qbuf-free", "0"),
        ("argv-mem", str(sum(len(a) for a in current) if current is not None else 0)),
        ("multi-mem", str(multi_mem)),
        ("rbs", "0"),
        ("rbp", "0"),
        ("obl", "0"),
        ("oll", str(len(c.pending))),
        ("omem", "0"),
        ("tot-mem", str(qbuf + multi_mem)),
        ("events", "r"),
        ("cmd", stat_name(last[:2]) if last and last[0] != b"NULL" else "NULL"),
        ("user", "default"),
        ("redir", str(tracking.redirect) if tracking is not None else "-1"),
        ("resp", "3" if c.resp3 else "2"),
        ("lib-name", c.lib_name.decode("latin-1")),
        ("lib-ver", c.lib_ver.decode("latin-1")),
    ]
    return " ".join(f"{k}={v}" for k, v in fields).encode()


@_guard
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
        now = time.monotonic()
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
        client.reply(
            Verbatim(
                b"".join(client_info_line(c, now, args if c is client else None) + b"\n" for c in chosen)
            )
        )
    elif sub == b"KILL":
        _client_kill(client, args)
    elif sub in (b"NO-EVICT", b"NO-TOUCH"):
        if args[2].upper() not in (b"ON", b"OFF"):
            raise CommandError(errors.SYNTAX)
        if sub == b"NO-EVICT":  # shown in CLIENT LIST's flags; shardkv never evicts clients
            client.no_evict = args[2].upper() == b"ON"
        client.reply(OK)
    elif sub == b"REPLY":
        mode = args[2].upper()
        if mode == b"ON":
            client.reply_mode = REPLY_ON
            client.reply(OK)
        elif mode == b"OFF":
            client.reply_mode = REPLY_OFF
        elif mode == b"SKIP":
            if client.reply_mode != REPLY_OFF:
                client.reply_mode = REPLY_SKIP_NEXT
        else:
            raise CommandError(errors.SYNTAX)
    elif sub == b"PAUSE":
        kind = pause.ALL
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
        pause.start(server, timeout, kind)
        client.reply(OK)
    elif sub == b"UNPAUSE":
        pause.stop(server)
        client.reply(OK)
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
        target = server.clients.get(parse_int(args[2]))
        client.reply(1 if target is not None and unblock(target, error) else 0)
    elif sub in server.wiring.client_subcommands:  # TRACKING, CACHING... (shardkv.acceptor.tracking)
        server.wiring.client_subcommands[sub](client, args)
    elif sub == b"HELP":
        client.reply([line.encode() for line in _CLIENT_HELP])
    else:
        raise _subcommand_error(args)


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
    "    * MAXAGE <maxage>",
    "      Kill connections older than the specified age.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "SETINFO <option> <value>",
    "    Set client meta attributes (LIB-NAME or LIB-VER).",
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
        return [c for c in clients if c.channels or c.patterns]
    if kind == b"normal":
        return [c for c in clients if not (c.channels or c.patterns)]
    if kind in (b"master", b"replica", b"slave"):
        return []
    raise CommandError(errors.UNKNOWN_CLIENT_TYPE % kind_arg.decode("latin-1"))


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
            cid = strict_int(val)
            if cid is None or cid <= 0:
                raise CommandError(errors.CLIENT_ID_NOT_POSITIVE)
            victims = [c for c in victims if c.id == cid]
        elif opt == b"ADDR":
            victims = [c for c in victims if c.addr == text]
        elif opt == b"LADDR":
            victims = [c for c in victims if c.laddr == text]
        elif opt == b"USER":
            if text != "default":  # the only user there is
                raise CommandError(errors.NO_SUCH_USER % text)
        elif opt == b"MAXAGE":  # Redis 7.4's: connected longer than this many seconds
            age = strict_int(val)
            if age is None:
                raise CommandError(errors.NOT_INTEGER)
            now = time.monotonic()
            victims = [c for c in victims if now - c.created >= age]
        elif opt == b"SKIPME":
            if val.lower() not in (b"yes", b"no"):
                raise CommandError(errors.SYNTAX)
            skipme = val.lower() == b"yes"
        elif opt == b"TYPE":
            victims = _of_type(victims, val)
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


# -- MONITOR -----------------------------------------------------------------


def monitor_(client: Client, args: list) -> None:
    """MONITOR"""
    if client.in_exec:  # Redis: EXEC wants one reply per command
        client.reply_error(errors.MONITOR_DENY_BLOCKING)
    elif monitor.start(client):
        client.reply(OK)
    # else: already monitoring; Redis ignores the command without a reply


# -- COMMAND -----------------------------------------------------------------

# The order in which Redis lists command flags.  Redis 7.0 keeps
# may_replicate (PUBLISH's) and protected (DEBUG's) to itself: COMMAND INFO does not
# list them.
_FLAG_ORDER = (
    "write readonly denyoom module admin pubsub noscript blocking loading stale skip_monitor "
    "skip_slowlog asking fast no_auth no_mandatory_keys protected no_async_loading "
    "no_multi movablekeys allow_busy"
).split()
_UNLISTED_FLAGS = {"may_replicate", "protected"}
_GROUP_CATEGORY = {
    "string": "@string",
    "bitmap": "@bitmap",
    "hash": "@hash",
    "list": "@list",
    "set": "@set",
    "sorted_set": "@sortedset",
    "generic": "@keyspace",
    "pubsub": "@pubsub",
    "transactions": "@transaction",
    "connection": "@connection",
    "hyperloglog": "@hyperloglog",
    "geo": "@geo",
    "scripting": "@scripting",
    "stream": "@stream",
}


def _flags(cmd: commands.Command) -> list[str]:
    flags = set(cmd.flags)
    if cmd.numkeys_at or cmd.finder is not None or cmd.keyword:
        flags.add("movablekeys")
    ordered = [f for f in _FLAG_ORDER if f in flags and f not in _UNLISTED_FLAGS]
    ordered += sorted(flags - set(_FLAG_ORDER) - _UNLISTED_FLAGS)
    return ordered  # simple strings, as Redis sends them


def _acl_categories(cmd: commands.Command, flags: Collection[str] | None = None) -> list[str]:
    """An approximation of Redis's ACL categories, from the flags (the
    command's, or one subcommand's) and the group."""
    if flags is None:
        flags = cmd.flags
    cats = []
    if "write" in flags:
        cats.append("@write")
    elif "readonly" in flags:
        cats.append("@read")
    if cmd.group in _GROUP_CATEGORY:
        cats.append(_GROUP_CATEGORY[cmd.group])
    cats.append("@fast" if "fast" in flags else "@slow")
    if "blocking" in flags:
        cats.append("@blocking")
    if "admin" in flags:
        cats += ["@admin", "@dangerous"]
    cats = _ACL_OVERRIDES.get(cmd.name, cats) if flags is cmd.flags else cats
    return sorted(cats, key=_ACL_ORDER.index)


# Redis's ACL category bits, in the order COMMAND INFO lists them.
_ACL_ORDER = (
    "@keyspace @read @write @set @sortedset @list @hash @string @bitmap @hyperloglog @geo @stream "
    "@pubsub @admin @fast @slow @blocking @dangerous @connection @transaction @scripting"
).split()
# Commands whose categories the flags and group do not give.
_ACL_OVERRIDES = {
    **dict.fromkeys(
        ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"), ["@slow", "@scripting"]
    ),
    "script": ["@slow"],  # the containers: their subcommands are @scripting
    "function": ["@slow"],
    "sort": ["@write", "@set", "@sortedset", "@list", "@slow", "@dangerous"],
    "sort_ro": ["@read", "@set", "@sortedset", "@list", "@slow", "@dangerous"],
}


def _spec(access: list, index: int, kind: bytes, find: dict) -> dict:
    return {
        b"flags": access,
        b"begin_search": {b"type": b"index", b"spec": {b"index": index}},
        b"find_keys": {b"type": kind, b"spec": find},
    }


def _range_spec(flags: str, index: int, lastkey: int = 0, notes: str = "") -> dict:
    spec = _spec(flags.split(), index, b"range", {b"lastkey": lastkey, b"keystep": 1, b"limit": 0})
    return {b"notes": notes.encode(), **spec} if notes else spec


def _keyword_spec(flags: str, word: bytes, startfrom: int) -> dict:
    return {
        b"flags": flags.split(),
        b"begin_search": {b"type": b"keyword", b"spec": {b"keyword": word, b"startfrom": startfrom}},
        b"find_keys": {b"type": b"range", b"spec": {b"lastkey": 0, b"keystep": 1, b"limit": 0}},
    }


def _unknown_spec(flags: str, notes: str) -> dict:
    return {
        b"notes": notes.encode(),
        b"flags": flags.split(),
        b"begin_search": {b"type": b"unknown", b"spec": {}},
        b"find_keys": {b"type": b"unknown", b"spec": {}},
    }


_SORT_BY_NOTE = (
    "For the optional BY/GET keyword. It is marked 'unknown' because the key names derive "
    "from the content of the key we sort"
)
_SORT_STORE_NOTE = (
    "For the optional STORE keyword. It is marked 'unknown' because the keyword can appear "
    "anywhere in the argument array"
)
_SCRIPT_RW = "We cannot tell how the keys will be used so we assume the worst, RW and UPDATE"
_SCRIPT_RO = "We cannot tell how the keys will be used so we assume the worst, RO and ACCESS"


def _numkeys_spec(flags: str, notes: str = "") -> dict:
    spec = _spec(flags.split(), 2, b"keynum", {b"keynumidx": 0, b"firstkey": 1, b"keystep": 1})
    return {b"notes": notes.encode(), **spec} if notes else spec


# Redis 7.0's key specs where the table's key columns cannot say them.
_KEY_SPECS = {
    "eval": [_numkeys_spec("RW access update", _SCRIPT_RW)],
    "evalsha": [_numkeys_spec("RW access update")],
    "eval_ro": [_numkeys_spec("RO access", _SCRIPT_RO)],
    "evalsha_ro": [_numkeys_spec("RO access")],
    "fcall": [_numkeys_spec("RW access update", _SCRIPT_RW)],
    "fcall_ro": [_numkeys_spec("RO access", _SCRIPT_RO)],
    "pfadd": [_range_spec("RW insert", 1)],
    "pfcount": [
        _range_spec(
            "RW access",
            1,
            -1,
            "RW because it may change the internal representation of the key, and propagate to replicas",
        )
    ],
    "pfmerge": [_range_spec("RW access insert", 1), _range_spec("RO access", 2, -1)],
    "pfdebug": [_range_spec("RW access", 2)],
    "sort": [
        _range_spec("RO access", 1),
        _unknown_spec("RO access", _SORT_BY_NOTE),
        _unknown_spec("OW update", _SORT_STORE_NOTE),
    ],
    "sort_ro": [_range_spec("RO access", 1), _unknown_spec("RO access", _SORT_BY_NOTE)],
    "geosearchstore": [_range_spec("OW update", 1), _range_spec("RO access", 2)],
    "georadius": [
        _range_spec("RO access", 1),
        _keyword_spec("OW update", b"STORE", 6),
        _keyword_spec("OW update", b"STOREDIST", 6),
    ],
    "georadiusbymember": [
        _range_spec("RO access", 1),
        _keyword_spec("OW update", b"STORE", 5),
        _keyword_spec("OW update", b"STOREDIST", 5),
    ],
}


def _key_specs(cmd: commands.Command) -> list:
    """Key specs derived from the table's key columns (RO/RW flags only),
    or Redis's own where they say more (:data:`_KEY_SPECS`)."""
    if cmd.name in _KEY_SPECS:
        return _KEY_SPECS[cmd.name]
    access = ["RW", "update"] if cmd.is_write else ["RO", "access"]
    specs = []
    if cmd.numkeys_at:
        if cmd.first_key:
            specs.append(_spec(access, cmd.first_key, b"range", {b"lastkey": 0, b"keystep": 1, b"limit": 0}))
        keynum = {b"keynumidx": 0, b"firstkey": 1, b"keystep": 1}
        specs.append(_spec(access, cmd.numkeys_at, b"keynum", keynum))
    elif cmd.keyword:  # XREAD's STREAMS key... id...: half of what follows the keyword
        specs.append(
            {
                b"flags": ["RO", "access"],  # XREADGROUP's too, as Redis 7.0 says
                b"begin_search": {
                    b"type": b"keyword",
                    b"spec": {b"keyword": cmd.keyword.upper(), b"startfrom": cmd.keyword_from},
                },
                b"find_keys": {b"type": b"range", b"spec": {b"lastkey": -1, b"keystep": 1, b"limit": 2}},
            }
        )
    elif cmd.first_key:
        last = cmd.last_key if cmd.last_key < 0 else cmd.last_key - cmd.first_key
        specs.append(
            _spec(access, cmd.first_key, b"range", {b"lastkey": last, b"keystep": cmd.step, b"limit": 0})
        )
    return specs


def _subcommand_info(cmd: commands.Command, sub) -> list:
    """COMMAND INFO's row of one subcommand (``client|list``)."""
    return [
        sub.name.encode(),
        sub.arity,
        [f for f in sub.flags if f not in _UNLISTED_FLAGS],
        0,
        0,
        0,
        _acl_categories(cmd, sub.flags),
        _SUBCOMMAND_TIPS.get(sub.name, []),
        [],
        [],
    ]


_ALL_NODES = ["request_policy:all_nodes", "response_policy:all_succeeded"]
_ALL_SHARDS = ["request_policy:all_shards", "response_policy:all_succeeded"]
# COMMAND INFO's tips of the subcommands that have some in Redis 7.0.
_SUBCOMMAND_TIPS = {
    "script|load": _ALL_NODES,
    "script|flush": _ALL_NODES,
    "script|kill": ["request_policy:all_shards", "response_policy:one_succeeded"],
    "script|exists": ["request_policy:all_shards", "response_policy:agg_logical_and"],
    "function|load": _ALL_SHARDS,
    "function|restore": _ALL_SHARDS,
    "function|delete": _ALL_SHARDS,
    "function|flush": _ALL_SHARDS,
    "function|kill": ["request_policy:all_shards", "response_policy:one_succeeded"],
    "function|stats": ["nondeterministic_output", "request_policy:all_shards", "response_policy:special"],
    "function|list": ["nondeterministic_output_order"],
}


def _command_info(cmd: commands.Command) -> list:
    subs = command_docs.SUBCOMMANDS.get(cmd.name)
    if subs:  # a container: its keys belong to its subcommands
        first = last = step = 0
        specs: list = []
        subinfo = [_subcommand_info(cmd, sub) for sub in subs.values()]
    else:
        first = cmd.first_key
        last = cmd.last_key if not cmd.numkeys_at else cmd.first_key
        step = cmd.step if not cmd.numkeys_at else (1 if cmd.first_key else 0)
        specs = _key_specs(cmd)
        subinfo = []
    return [
        cmd.name.encode(),
        cmd.arity,
        _flags(cmd),
        first,
        last,
        step,
        _acl_categories(cmd),
        [],
        specs,
        subinfo,
    ]


def _info_of(name: str) -> list | None:
    """COMMAND INFO's row for ``name``, a command or ``container|sub``."""
    table = commands.COMMANDS
    container, _, subname = name.partition("|")
    cmd = table.get(container)
    if cmd is None:
        return None
    if not subname:
        return _command_info(cmd)
    sub = command_docs.SUBCOMMANDS.get(container, {}).get(subname)
    return None if sub is None else _subcommand_info(cmd, sub)


def _all_names() -> list[tuple[str, commands.Command, tuple | None]]:
    """Every command and subcommand, as COMMAND LIST names them, with the
    command and the subcommand's flags."""
    out: list = []
    for name, cmd in commands.COMMANDS.items():
        out.append((name, cmd, None))
        for sub in command_docs.SUBCOMMANDS.get(name, {}).values():
            out.append((sub.name, cmd, sub.flags))
    return out


def _command_names(args: list) -> list[str]:
    return [a.decode("latin-1").lower() for a in args]


def _getkeys(args: list) -> list:
    """COMMAND GETKEYS's reply for the command ``args``."""
    cmd = commands.lookup(args[0])
    if cmd is None:
        raise CommandError(errors.INVALID_COMMAND)
    if not commands.check_arity(cmd, len(args)):
        raise CommandError(errors.INVALID_COMMAND_ARGS)
    if cmd.numkeys_at:
        n = strict_int(args[cmd.numkeys_at])
        if n == 0 and "no_mandatory_keys" in cmd.flags:
            return []
        if n is None or n <= 0 or n > len(args) - cmd.numkeys_at - 1:
            raise CommandError(errors.INVALID_COMMAND_ARGUMENTS)
    keys = cmd.keys(args)
    if not keys:
        if "no_mandatory_keys" in cmd.flags:
            return []
        raise CommandError(errors.NO_KEY_ARGUMENTS)
    return keys


@_guard
def command(client: Client, args: list) -> None:
    """COMMAND [COUNT | INFO [name ...] | DOCS [name ...] | LIST | GETKEYS command [arg ...]]"""
    table = commands.COMMANDS
    if len(args) == 1:
        client.reply([_command_info(c) for c in table.values()])
        return
    problem = command_docs.check_subcommand(args)
    if problem:
        raise CommandError(problem)
    sub = args[1].upper()
    if sub == b"COUNT":
        client.reply(len(table))
    elif sub == b"LIST":
        if len(args) == 2:
            client.reply([name.encode() for name, _, _ in _all_names()])
            return
        if len(args) != 5 or args[2].upper() != b"FILTERBY":
            raise CommandError(errors.SYNTAX)
        kind, value = args[3].upper(), args[4]
        if kind == b"PATTERN":
            match = compile_glob(value, nocase=True)
            client.reply([n.encode() for n, _, _ in _all_names() if match(n.encode())])
        elif kind == b"ACLCAT":
            cat = "@" + value.decode("latin-1").lower()
            client.reply([n.encode() for n, c, f in _all_names() if cat in _acl_categories(c, f)])
        elif kind == b"MODULE":
            client.reply([])
        else:
            raise CommandError(errors.SYNTAX)
    elif sub == b"INFO":
        names = _command_names(args[2:]) or list(table)
        client.reply([_info_of(n) for n in names])
    elif sub == b"DOCS":
        names = _command_names(args[2:]) or list(table)
        out: dict = {}
        for name in names:
            container, _, subname = name.partition("|")
            if subname:
                subdoc = command_docs.SUBCOMMANDS.get(container, {}).get(subname)
                if subdoc is not None:
                    full = command_docs.doc_reply(container, table[container].group)
                    out[name.encode()] = full[b"subcommands"][name.encode()]
            elif name in table:
                out[name.encode()] = command_docs.doc_reply(name, table[name].group)
        client.reply(out)
    elif sub == b"GETKEYS":
        client.reply(_getkeys(args[2:]))
    elif sub == b"GETKEYSANDFLAGS":
        cmd = commands.lookup(args[2])
        keys = _getkeys(args[2:])
        access = (["RW", "update"] if cmd.is_write else ["RO", "access"]) if cmd is not None else []
        client.reply([[key, access] for key in keys])
    elif sub == b"HELP":
        client.reply(
            [
                b"COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                b"(no subcommand)",
                b"    Return details about all Redis commands.",
                b"COUNT",
                b"    Return the total number of commands in this Redis server.",
                b"LIST",
                b"    Return a list of all commands in this Redis server.",
                b"INFO [<command-name> ...]",
                b"    Return details about multiple Redis commands.",
                b"    If no command names are given, documentation details for all",
                b"    commands are returned.",
                b"DOCS [<command-name> ...]",
                b"    Return documentation details about multiple Redis commands.",
                b"    If no command names are given, documentation details for all",
                b"    commands are returned.",
                b"GETKEYS <full-command>",
                b"    Return the keys from a full Redis command.",
                b"GETKEYSANDFLAGS <full-command>",
                b"    Return the keys and the access flags from a full Redis command.",
                b"HELP",
                b"    Prints this help.",
            ]
        )
    else:
        raise _subcommand_error(args)


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
                out[pattern] = setting.show(server.config[setting.name]).encode()
            continue
        match = compile_glob(pattern, nocase=True)
        for setting in config.SETTINGS.values():
            if "hidden" in setting.flags:
                continue
            for name in (setting.name, setting.alias):
                if name and match(name.encode()) and name.encode() not in out:
                    out[name.encode()] = setting.show(server.config[setting.name]).encode()
    return out


def config_set_changes(client: Client, args: list[bytes]) -> dict:
    """CONFIG SET's checks, in Redis's order, before anything changes: the
    parameters exist, may be set by this client and appear once; then every
    value parses (each over the values before it).  Returns the new values,
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
        elif "fixed" in setting.flags:  # Redis can; shardkv cannot change it while running
            error = (typed, "can't set immutable config")
        elif any(r == registered for _, r, _ in found):
            error = (typed, "duplicate parameter")
        found.append((setting, registered, args[i + 1].decode("latin-1")))
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
        out += [name.encode(), config.SETTINGS[name].show(server.config[name]).encode()]
    return out


def config_to_worker(server, link) -> None:
    """A worker's pipe was attached: give it every setting."""
    body = encode_command(worker_config(server, config.SETTINGS))
    link.send(entry_header(0), body, _IGNORE)


class _Ignore:
    """A sink for a reply nobody waits for."""

    def deliver(self, body: bytes) -> None:
        pass


_IGNORE = _Ignore()


def _all_ok(parts: list) -> object:
    return OK


def _set_oom(server, parts: list) -> object:
    """The shards' answers to ``__config`` or ``__oom``: is any of them out
    of memory?  The acceptor then refuses commands as Redis does at OOM
    while a transaction is queued (see Client._execute)."""
    server.oom = any(p == 1 for p in parts)
    return OK


@_guard
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
        # Everything checked: apply it in the acceptor, then in every worker.
        # A worker that is down now gets every setting when it is attached
        # again (config_to_worker), so none is left behind.
        server.config.update(changes)
        for hook in server.wiring.on_config:
            hook(server, changes)
        # Reply once every worker has the new values (and has said whether
        # it is now out of memory).
        client.query_all(worker_config(server, changes), lambda parts: _set_oom(server, parts))
    elif sub == b"RESETSTAT":
        server.commands_processed = 0
        server.connections_received = 0
        server.rejected_connections = 0
        server.net_input_bytes = server.net_output_bytes = 0
        server.reads_processed = server.writes_processed = 0
        for reset in server.wiring.on_resetstat:
            reset(server)
        client.query_all([Verb.RESETSTAT], _all_ok)
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
        client.reply([line.encode() for line in _CONFIG_HELP])
    else:
        raise _subcommand_error(args)


# -- server ------------------------------------------------------------------


def info(client: Client, args: list) -> None:
    """INFO [section [section ...]]"""
    sections = [a.decode("latin-1").lower() for a in args[1:]]
    own = client.server.stats.report()  # as of now: this INFO is counted after it ran

    def merge(parts: list) -> object:
        return Verbatim(build_info(client.server, sections, parts, own).encode())

    client.query_all([Verb.INFO], merge)


def time_(client: Client, args: list) -> None:
    """TIME"""
    now = time.time()
    client.reply([b"%d" % int(now), b"%d" % int((now % 1) * 1_000_000)])


@_guard
def wait(client: Client, args: list) -> None:
    """WAIT numreplicas timeout"""
    parse_int(args[1])
    timeout = parse_int(args[2], "ERR timeout is not an integer or out of range")
    if timeout < 0:
        raise CommandError(errors.TIMEOUT_NEGATIVE)
    client.reply(0)


@_guard
def swapdb(client: Client, args: list) -> None:
    """SWAPDB index1 index2

    Every shard swaps the two databases, all in one step of the global
    order, so no client sees one shard swapped and another not.
    """
    a = _db_index(args[1], errors.INVALID_FIRST_DB)
    b = _db_index(args[2], errors.INVALID_SECOND_DB)
    databases = client.server.config["databases"]
    if not (0 <= a < databases and 0 <= b < databases):
        raise CommandError(errors.DB_INDEX_OUT_OF_RANGE)
    if a == b:
        client.reply(OK)
        return
    client.query_all([b"SWAPDB", b"%d" % a, b"%d" % b], _all_ok)


def _db_index(arg: bytes, message: str) -> int:
    try:
        return parse_int32(arg)
    except CommandError:
        raise CommandError(message) from None


@_guard
def debug(client: Client, args: list) -> None:
    """DEBUG subcommand [argument ...]

    Only where ``enable-debug-command`` allows it (checked before this runs,
    see :meth:`Client.execute`).  ``DEBUG SLEEP`` stops the whole acceptor,
    so every client waits, as Redis stops its one thread.
    """
    sub = args[1].upper()
    n = len(args)
    if sub == b"SLEEP" and n == 3:
        seconds = _strtod(args[2])  # as Redis reads it: "abc" is 0
        if seconds > 0:
            time.sleep(seconds)
        client.reply(OK)
    elif sub == b"CHANGE-REPL-ID" and n == 2:
        client.reply(OK)
    elif sub == b"QUICKLIST-PACKED-THRESHOLD" and n == 3:
        try:
            parse_memory(args[2].decode("latin-1"))
        except ValueError:
            raise CommandError(
                "ERR argument must be a memory value bigger than 1 and smaller than 4gb"
            ) from None
        client.reply(OK)
    elif sub == b"HELP":
        client.reply([line.encode() for line in _DEBUG_HELP])
    else:
        raise CommandError(
            "ERR DEBUG subcommand not supported by shardkv: {}".format(args[1].decode("latin-1"))
        )


def _strtod(arg: bytes) -> float:
    """C's ``strtod`` without an end pointer: the longest number at the start, or 0."""
    m = re.match(rb"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", arg)
    return float(m.group(0)) if m else 0.0


_DEBUG_HELP = [
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANGE-REPL-ID",
    "    Change the replication IDs of the instance.",
    "    Dangerous: should be used only for testing the replication subsystem.",
    "QUICKLIST-PACKED-THRESHOLD <size>",
    "    Sets the threshold for elements to be inserted as plain vs packed nodes",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "HELP",
    "    Prints this help.",
]


# -- SCAN --------------------------------------------------------------------


@_guard
def scan(client: Client, args: list) -> None:
    """SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]

    The cursor is a slot number.  One call visits whole slots, shard after
    shard, until it has visited ``count`` keys or the last slot (see
    :class:`_ScanChain`), so a small keyspace comes back in one call, as
    from Redis.  Every slot is visited once per full scan, so a key present
    for the whole scan is returned exactly once.
    """
    cursor = parse_cursor(args[1])
    count, pattern, kind = parse_scan_options(args, 2, with_type=True)
    if cursor >= SLOTS:
        client.reply([b"0", []])
        return
    _ScanChain(client, cursor, count, b"*" if pattern is None else pattern, kind or b"")


class _ScanChain:
    """One SCAN call: asks the shard that owns the cursor's slot, then the
    next shards in turn, until ``count`` keys were visited."""

    def __init__(self, client: Client, cursor: int, count: int, pattern: bytes, kind: bytes) -> None:
        self.client = client
        self.slot = Slot(client)
        client.pending.append(self.slot)
        self.left = count
        self.pattern = pattern
        self.kind = kind
        self.keys: list = []
        self.cursor = cursor
        self.ask()

    def ask(self) -> None:
        server = self.client.server
        shard = server.router.owners[self.cursor]
        body = encode_command([Verb.SCAN, b"%d" % self.cursor, b"%d" % self.left, self.pattern, self.kind])
        server.links[shard].send(self.client.part_headers[0], body, self)  # in the client's database

    def deliver(self, body: bytes) -> None:
        client = self.client
        if body[:1] == b"-":  # the shard is down
            self.slot.deliver(body)
            return
        part = decode_part(body)
        next_slot: int
        keys: list[bytes]
        visited: int
        next_slot, keys, visited = part  # type: ignore[misc]
        self.keys.extend(keys)
        self.left -= visited
        server = client.server
        if next_slot < 0:  # that shard is done: on to the next one
            shard = server.router.owners[self.cursor]
            next_slot = (shard + 1) * SLOTS // server.nshards if shard + 1 < server.nshards else 0
        self.cursor = next_slot
        if next_slot and self.left > 0 and not client.closed:
            self.ask()
            return
        self.slot.deliver(encode([b"%d" % next_slot, self.keys], client.resp3))
