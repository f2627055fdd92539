"""COMMAND: the command table as Redis 7.0 reports it (INFO, DOCS, LIST,
COUNT, GETKEYS, GETKEYSANDFLAGS), from :mod:`shardkv.protocol.commands`,
:mod:`shardkv.protocol.command_docs` and :mod:`shardkv.protocol.key_specs`."""

from __future__ import annotations

from collections.abc import Collection

from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard, subcommand_error
from shardkv.protocol import acl, command_docs, commands, errors, key_specs
from shardkv.protocol.errors import CommandError
from shardkv.protocol.glob import compile_glob
from shardkv.protocol.resp import OrderedSet

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


def _flags(cmd: commands.Command) -> list[str]:
    flags = set(cmd.flags)
    if cmd.numkeys_at or cmd.finder is not None or cmd.keyword:
        flags.add("movablekeys")
    ordered = [f for f in _FLAG_ORDER if f in flags and f not in _UNLISTED_FLAGS]
    ordered += sorted(flags - set(_FLAG_ORDER) - _UNLISTED_FLAGS)
    return ordered  # simple strings, as Redis sends them


def _acl_categories(cmd: commands.Command, flags: Collection[str] | None = None, full: str = "") -> list[str]:
    """The ACL categories of a command or subcommand, the one table the
    ACL users' ``+@category`` rules read too (:func:`shardkv.protocol.acl.categories`)."""
    return acl.categories(cmd, flags, full)


# COMMAND INFO's tips of the commands (not subcommands) that shardkv lists.
_COMMAND_TIPS = {"migrate": [b"nondeterministic_output"]}  # bulk strings, as Redis sends them


def _key_specs(cmd: commands.Command) -> list:
    """Redis 7.0's key specs of ``cmd`` (:mod:`shardkv.protocol.key_specs`)."""
    return [key_specs.reply(spec) for spec in key_specs.KEY_SPECS.get(cmd.name, ())]


def _subcommand_info(cmd: commands.Command, sub) -> list:
    """COMMAND INFO's row of one subcommand (``client|list``)."""
    # (flags, categories, tips, key specs and subcommands are RESP3 sets, as Redis's)
    specs = key_specs.KEY_SPECS.get(sub.name, ())
    return [
        sub.name.encode(),
        sub.arity,
        OrderedSet(f for f in sub.flags if f not in _UNLISTED_FLAGS),
        *_legacy_range(specs),
        OrderedSet(_acl_categories(cmd, sub.flags, sub.name)),
        OrderedSet(tip.encode() for tip in _SUBCOMMAND_TIPS.get(sub.name, ())),  # (bulk strings, as Redis's)
        OrderedSet(key_specs.reply(spec) for spec in specs),
        OrderedSet(),
    ]


def _legacy_range(specs: tuple) -> tuple[int, int, int]:
    """The first key, last key and step Redis derives from a subcommand's
    key specs (``populateCommandLegacyRangeSpec``), for the one shape
    subcommands have: one key at a fixed index."""
    if len(specs) == 1 and specs[0][1][0] == "index" and specs[0][2][:2] == ("range", 0):
        first = specs[0][1][1]
        return first, first, 1
    return 0, 0, 0


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
    "module|list": ["nondeterministic_output_order"],
    **dict.fromkeys(
        (
            "cluster|bumpepoch",
            "cluster|count-failure-reports",
            "cluster|getkeysinslot",
            "cluster|info",
            "cluster|links",
            "cluster|nodes",
            "cluster|replicas",
            "cluster|shards",
            "cluster|slaves",
            "cluster|slots",
        ),
        ["nondeterministic_output"],
    ),
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
        OrderedSet(_flags(cmd)),
        first,
        last,
        step,
        OrderedSet(_acl_categories(cmd)),
        OrderedSet(_COMMAND_TIPS.get(cmd.name, ())),
        OrderedSet(specs),
        subinfo or OrderedSet(),  # (an array of subcommands; none: an empty set)
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


def _getkeys(args: list) -> list[tuple[bytes, str]]:
    """COMMAND GETKEYS and GETKEYSANDFLAGS: the keys of the command
    ``args`` and their flags, or their errors, as Redis's
    ``getKeysSubcommandImpl``: the command (a container's subcommand), one
    with keys, its arity, then the keys ``getKeysFromCommandWithSpecs``
    finds (the key specs, or the command's own finder when they cannot
    say), which the ACL checks read too."""
    cmd = commands.lookup(args[0])
    if cmd is None:
        raise CommandError(errors.INVALID_COMMAND)
    name, arity = cmd.name, cmd.arity
    if cmd.container and len(args) > 1:  # Redis's lookupCommand: the subcommand
        sub = command_docs.SUBCOMMANDS.get(cmd.name, {}).get(args[1].decode("latin-1").lower())
        if sub is None:
            raise CommandError(errors.INVALID_COMMAND)
        name, arity = sub.name, sub.arity
    if not key_specs.has_keys(name):
        raise CommandError(errors.NO_KEY_ARGUMENTS)
    if (len(args) != arity) if arity > 0 else (len(args) < -arity):
        raise CommandError(errors.INVALID_COMMAND_ARGS)
    found = key_specs.keys_and_flags(name, args, cmd.keys)
    if not found:
        if "no_mandatory_keys" in cmd.flags:
            return []
        raise CommandError(errors.INVALID_COMMAND_ARGUMENTS)
    return [(args[i], flags) for i, flags in found]


@guard
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
            client.reply([n.encode() for n, c, f in _all_names() if cat in _acl_categories(c, f, n)])
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
        client.reply([key for key, _ in _getkeys(args[2:])])
    elif sub == b"GETKEYSANDFLAGS":
        client.reply([[key, OrderedSet(flags.split())] for key, flags in _getkeys(args[2:])])
    elif sub == b"HELP":
        client.reply(
            [
                "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "(no subcommand)",
                "    Return details about all Redis commands.",
                "COUNT",
                "    Return the total number of commands in this Redis server.",
                "LIST",
                "    Return a list of all commands in this Redis server.",
                "INFO [<command-name> ...]",
                "    Return details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "DOCS [<command-name> ...]",
                "    Return documentation details about multiple Redis commands.",
                "    If no command names are given, documentation details for all",
                "    commands are returned.",
                "GETKEYS <full-command>",
                "    Return the keys from a full Redis command.",
                "GETKEYSANDFLAGS <full-command>",
                "    Return the keys and the access flags from a full Redis command.",
                "HELP",
                "    Prints this help.",
            ]
        )
    else:
        raise subcommand_error(args)
