"""SLOWLOG: the commands that ran longer than ``slowlog-log-slower-than``.

Each process keeps the slow log of the commands it ran (see
:mod:`shardkv.runtime.cmdstats`): the acceptor for the commands it answers, each
worker for its shard's.  SLOWLOG GET asks every shard for its newest
entries (``__slowlog``) and merges them with the acceptor's, newest first,
keeping at most ``slowlog-max-len``; SLOWLOG LEN counts the same entries,
and SLOWLOG RESET empties every log.  An entry is Redis's six fields:
id, unix time, microseconds, arguments (cut as Redis cuts them), client
address and client name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard, subcommand_error
from shardkv.acceptor.commands.config import worker_config
from shardkv.protocol import command_docs, errors
from shardkv.protocol.args import strict_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK
from shardkv.protocol.wire import Verb
from shardkv.runtime.cmdstats import apply_settings

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor

_HELP = [
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
]


def _merged(server: Acceptor, own: list, parts: list) -> list:
    """The acceptor's entries ``own`` and the shards', newest first, at most
    ``slowlog-max-len``."""
    sources = len(server.links) + 1
    entries = []
    for source, log in enumerate([own, *parts]):
        if not isinstance(log, list):
            continue  # a shard that is down
        for ts, seq, us, argv, addr, name in log:
            entries.append(
                (ts, seq * sources + source, [seq * sources + source, ts // 1_000_000, us, argv, addr, name])
            )
    entries.sort(key=lambda e: (e[0], e[1]), reverse=True)
    return [e[2] for e in entries[: server.config["slowlog-max-len"]]]


@guard
def slowlog(client: Client, args: list) -> None:
    """SLOWLOG GET [count] | SLOWLOG LEN | SLOWLOG RESET | SLOWLOG HELP"""
    problem = command_docs.check_subcommand(args)
    if problem:
        raise CommandError(problem)
    sub = args[1].upper()
    server = client.server
    if sub == b"GET":
        count = 10
        if len(args) == 3:
            given = strict_int(args[2])
            if given is None or given < -1:
                raise CommandError(errors.SLOWLOG_COUNT)
            count = given if given != -1 else server.config["slowlog-max-len"]
        elif len(args) > 3:
            raise CommandError(errors.SYNTAX)
        if count == 0:
            client.reply([])
            return
        own = list(server.stats.slowlog)  # as of now: this SLOWLOG is logged after it ran
        client.query_all(
            [Verb.SLOWLOG, b"GET", b"%d" % count], lambda parts: _merged(server, own, parts)[:count]
        )
    elif sub == b"LEN":
        own = list(server.stats.slowlog)
        client.query_all([Verb.SLOWLOG, b"GET", b"-1"], lambda parts: len(_merged(server, own, parts)))
    elif sub == b"RESET":
        server.stats.slowlog.clear()
        client.query_all([Verb.SLOWLOG, b"RESET"], lambda parts: OK)
    elif sub == b"HELP":
        client.reply(list(_HELP))
    else:
        raise subcommand_error(args)


def on_config(server: Acceptor, changes: dict[str, Any]) -> None:
    apply_settings(server.stats, worker_settings(server, changes))


def worker_settings(server: Acceptor, changes: dict[str, Any]) -> dict[str, str]:
    """The changed settings as text, as the workers get them."""
    words = worker_config(server, changes)[1:]
    return {words[i].decode(): words[i + 1].decode() for i in range(0, len(words), 2)}


def on_resetstat(server: Acceptor) -> None:
    server.stats.reset()
