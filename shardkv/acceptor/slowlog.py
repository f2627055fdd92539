"""SLOWLOG: the commands that ran longer than ``slowlog-log-slower-than``.

Each process logs the commands it ran (see :mod:`shardkv.runtime.cmdstats`):
the acceptor the commands it answers, each worker its shard's.  They all
log into one slow log, a file they share
(:class:`shardkv.runtime.slowlogfile.SlowLogFile`), which numbers the
entries as Redis does, one by one whichever process logged them.  So
SLOWLOG GET, LEN and RESET read or empty that file here, at once, and
every acceptor sees the same entries, ids and length; a worker that
starts again finds the log as its predecessor left it.  An entry is
Redis's six fields: id, unix time, microseconds, arguments (cut as Redis
cuts them), client address and client name.

A command a shard ran is logged by its worker, which does not know the
client that sent it; a script (EVAL, EVALSHA, FCALL) that runs on one
shard is logged there, after its calls, as Redis logs it once it ran,
but as the acceptor sent it (EVALSHA as EVAL with its body to a shard
that has not compiled it, EVAL as EVALSHA to one that has).  So a worker
that logs commands of a batch says so, with the entries' ids and their
replies' places, before their replies (one ``N`` frame, see
:mod:`shardkv.protocol.wire`); the acceptor finds their reply slots and
writes, for those entries, their clients' addresses and names, and how a
script was called (:func:`on_attach`), which SLOWLOG GET shows in their
place, whichever acceptor answers it.  A command that is not logged
costs nothing of this.  A script that runs across shards is logged by
the acceptor when it answers (:func:`log_script`), timed from the run
sent to its executor to the executor's answer, as Redis times the run
alone (not its wait for the shards to park): no worker logs the runs it
asks for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard, subcommand_error
from shardkv.acceptor.commands.config import worker_config
from shardkv.acceptor.replies import is_plain_slot, origin_of
from shardkv.protocol import command_docs, errors
from shardkv.protocol.args import strict_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK
from shardkv.runtime.cmdstats import apply_settings, slowlog_argv
from shardkv.runtime.config import value_text
from shardkv.runtime.slowlogfile import SlowLogFile

if TYPE_CHECKING:
    from shardkv.acceptor.server import Acceptor
    from shardkv.acceptor.shardlink import ShardLink

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


def on_attach(server: Acceptor, link: ShardLink) -> None:
    """The entries a worker logged for commands of its batches, as ``(reply
    sink, id)`` (``N`` frames): written, for each, its client's address and
    name, and for a script how the client called it (its slot's
    ``slow_called``, see shardkv.acceptor.scripting), under one lock."""

    def name_entries(named: list[tuple[object, int]]) -> None:
        records: list[tuple] = []
        for sink, entry_id in named:
            if is_plain_slot(sink):  # the usual one: a command's own slot
                own = sink.client
                records.append((entry_id, None, own.addr, own.name))
                continue
            client, slot = origin_of(sink)
            if client is None:
                continue  # (none to name: a cross-shard operation's part)
            called = getattr(slot, "slow_called", None)
            argv = None if called is None else slowlog_argv(called())
            records.append((entry_id, argv, client.addr, client.name))
        if records:
            shared_log(server).name(records)

    link.on_slow_names = name_entries
    link.held_slow = server.stats


def note_script(client: Client, entry_id: int, called: list[bytes], name: bytes) -> None:
    """An executor logged the script that ``client`` (named ``name`` as it
    ran) called as ``called`` (an EXEC's, wire.Ran.logged) as the slow
    log's entry ``entry_id``: write who called it how, for that entry."""
    shared_log(client.server).name([(entry_id, slowlog_argv(called), client.addr, name)])


def log_script(client: Client, called: list[bytes], ns: int) -> None:
    """The script that ``client`` called as ``called`` answered after its
    run across shards, which no worker logs: the acceptor's entry, of
    ``ns`` nanoseconds, the time its runs took on their executor
    (``AtomicOp.run_ns``, summed over the runs that escaped)."""
    stats = client.server.stats
    if ns >= stats.slow_threshold_ns >= 0:
        stats.slow(called, ns // 1000, client.addr, client.name)


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
            count = given  # -1: all of them
        elif len(args) > 3:  # as Redis's slowlogCommand: no form of its takes these
            raise CommandError(errors.SUBCOMMAND_SYNTAX % (args[1].decode("latin-1"), "SLOWLOG"))
        if count == 0:
            client.reply([])
            return
        client.reply(shared_log(server).get(count))  # as of now: this SLOWLOG is logged after it ran
    elif sub == b"LEN":
        client.reply(shared_log(server).length())
    elif sub == b"RESET":
        shared_log(server).reset()
        client.reply(OK)
    elif sub == b"HELP":
        client.reply(list(_HELP))
    else:
        raise subcommand_error(args)


def shared_log(server: Acceptor) -> SlowLogFile:
    """The slow log every process shares: the supervisor's, or one of
    this acceptor's own, made when first needed (an acceptor started alone),
    with the entries this acceptor holds in it."""
    stats = server.stats
    if stats.shared is None:
        stats.shared = SlowLogFile()
    stats.flush_held()  # the read's commands before this one (see Client.data_received)
    return stats.shared


def on_config(server: Acceptor, changes: dict[str, Any]) -> None:
    apply_settings(server.stats, worker_settings(server, changes))
    if "slowlog-max-len" in changes:  # the log is cut to it now, as Redis's
        shared_log(server).trim(server.stats.slow_max)


def worker_settings(server: Acceptor, changes: dict[str, Any]) -> dict[str, str]:
    """The changed settings as text, as the workers get them."""
    words = worker_config(server, changes)[1:]
    return {words[i].decode(): value_text(words[i + 1]) for i in range(0, len(words), 2)}


def on_resetstat(server: Acceptor) -> None:
    server.stats.reset()
