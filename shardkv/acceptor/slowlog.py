"""SLOWLOG: the commands that ran longer than ``slowlog-log-slower-than``.

Each process keeps the slow log of the commands it ran (see
:mod:`shardkv.runtime.cmdstats`): the acceptor for the commands it answers, each
worker for its shard's.  SLOWLOG GET asks every shard for its newest
entries (``__slowlog``) and merges them with the acceptor's, newest first,
keeping at most ``slowlog-max-len``; SLOWLOG LEN counts the same entries,
and SLOWLOG RESET empties every log.  An entry is Redis's six fields:
id, unix time, microseconds, arguments (cut as Redis cuts them), client
address and client name.  The id is Redis's: how many entries were logged
before it, every process's counted (each tells how many it ever logged,
and the entries of each are in time order), so ids fall by one from entry
to entry, as Redis's do, and a RESET does not start them again.

A script (EVAL, EVALSHA, FCALL) that runs on one shard is logged there,
after its calls, as Redis logs it once it ran; but a worker does not know
the client, and gets the script as the acceptor sends it (EVALSHA as EVAL
with its body to a shard that has not compiled it, EVAL as EVALSHA to one
that has).  So a worker that logs a script it got as a batch's entry says
so, with the entry's number, before the script's reply (an ``N`` frame,
see :mod:`shardkv.protocol.wire`); the acceptor finds the script's reply
slot and keeps who called it how, for that entry (:func:`note_script`),
and the merge puts the client's arguments, address and name in it
(:func:`_named`).  A run that is not logged costs nothing of this.  A
script that runs across shards is logged by the acceptor when it answers
(:func:`log_script`), timed from when it was sent to run across them: no
worker logs the runs it asks for.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard, subcommand_error
from shardkv.acceptor.commands.config import worker_config
from shardkv.protocol import command_docs, errors
from shardkv.protocol.args import strict_int
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK
from shardkv.protocol.wire import Verb
from shardkv.runtime.cmdstats import apply_settings, slowlog_argv

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


def note_script(client: Client, link: ShardLink, seq: int, called: list[bytes]) -> None:
    """Shard ``link``'s worker logged the script that ``client`` called as
    ``called`` as its slow log entry ``seq``: remember who called it how,
    for that entry (see :func:`_named`), as long as the shard may keep it."""
    notes = link.script_callers
    notes[seq] = (slowlog_argv(called), client.addr, client.name)
    while len(notes) > max(client.server.stats.slow_max, 0):
        del notes[next(iter(notes))]  # the oldest entry's (numbers grow)


def log_script(client: Client, called: list[bytes], start: int) -> None:
    """The script that ``client`` called as ``called`` answered after its
    run across shards, which no worker logs: the acceptor's entry, timed
    since ``start`` (perf_counter_ns), when it was sent."""
    ns = perf_counter_ns() - start
    stats = client.server.stats
    if ns >= stats.slow_threshold_ns >= 0:
        stats.slow(called, ns // 1000, client.addr, client.name)


def _named(server: Acceptor, shard: int, entries: list) -> list:
    """A shard's ``entries``, each of a script this acceptor sent there
    with its client's arguments, address and name (see :func:`note_script`)."""
    notes = server.links[shard].script_callers
    if not notes:
        return entries
    named = []
    for entry in entries:
        note = notes.get(entry[1])
        named.append(entry if note is None else (*entry[:3], *note))
    return named


def _merged(server: Acceptor, own: list, parts: list) -> list:
    """The acceptor's entries and the shards', newest first, at most
    ``slowlog-max-len``, numbered as Redis numbers them (see above).
    ``own`` and each of ``parts`` is ``[entries ever logged, entries
    newest first]`` (a part that is not a list: a shard that is down)."""
    totals = [own[0]]
    entries = [(ts, 0, seq, us, argv, addr, name) for ts, seq, us, argv, addr, name in own[1]]
    for source, log in enumerate(parts, 1):
        # A shard's count goes on from what its earlier workers logged (as
        # they last told): a restarted worker numbers its entries from 0.
        link = server.links[source - 1]
        base = link.slow_before
        if not isinstance(log, list):  # down: what it logged, as last told
            totals.append(base + link.slow_told)
            continue
        total, logged = log
        link.slow_told = total
        totals.append(base + total)
        for ts, seq, us, argv, addr, name in _named(server, source - 1, logged):
            entries.append((ts, source, base + seq, us, argv, addr, name))
    entries.sort(key=lambda e: (e[0], e[1], e[2]), reverse=True)
    # An entry's id: its own process's entries before it (its seq), and
    # each other process's, which are those before that process's oldest
    # entry seen so far newer than it (its seq), or all it ever logged.
    after = list(totals)
    before = sum(after)
    merged = []
    for ts, source, seq, us, argv, addr, name in entries[: server.config["slowlog-max-len"]]:
        before += seq - after[source]
        after[source] = seq
        merged.append([before, ts // 1_000_000_000, us, argv, addr, name])
    return merged


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
        own = _own(server)  # as of now: this SLOWLOG is logged after it ran
        client.query_all(
            [Verb.SLOWLOG, b"GET", b"%d" % count], lambda parts: _merged(server, own, parts)[:count]
        )
    elif sub == b"LEN":
        own = _own(server)
        client.query_all([Verb.SLOWLOG, b"GET", b"-1"], lambda parts: len(_merged(server, own, parts)))
    elif sub == b"RESET":
        server.stats.slowlog.clear()
        for link in server.links:
            link.script_callers.clear()
        client.query_all([Verb.SLOWLOG, b"RESET"], lambda parts: OK)
    elif sub == b"HELP":
        client.reply(list(_HELP))
    else:
        raise subcommand_error(args)


def _own(server: Acceptor) -> list:
    """The acceptor's part of the merge (see :func:`_merged`)."""
    return [server.stats.slow_seq, list(server.stats.slowlog)]


def on_config(server: Acceptor, changes: dict[str, Any]) -> None:
    apply_settings(server.stats, worker_settings(server, changes))


def worker_settings(server: Acceptor, changes: dict[str, Any]) -> dict[str, str]:
    """The changed settings as text, as the workers get them."""
    words = worker_config(server, changes)[1:]
    return {words[i].decode(): words[i + 1].decode() for i in range(0, len(words), 2)}


def on_resetstat(server: Acceptor) -> None:
    server.stats.reset()
