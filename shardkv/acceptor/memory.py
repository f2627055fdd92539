"""MEMORY: USAGE, STATS, DOCTOR, MALLOC-STATS, PURGE and HELP.

MEMORY USAGE goes to the shard that owns the key (see
:mod:`shardkv.worker.commands.memusage`); the others are answered here, from the
figures INFO reports (``used_memory``: every process's size when it
started and the estimated size of the data, see shardkv.worker.eviction;
the keys the shards hold).  shardkv runs on Python's allocator, not jemalloc, so MALLOC-STATS
says so as Redis does for libc's, and PURGE runs a garbage collection.
"""

from __future__ import annotations

import gc

from shardkv.acceptor import monitor
from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard, subcommand_error
from shardkv.acceptor.info import _PEAK, _STARTUP, scripts_eval_memory, used_memory
from shardkv.acceptor.replies import Slot
from shardkv.protocol import command_docs
from shardkv.protocol.args import parse_usage_samples
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK, Verbatim, encode_command
from shardkv.protocol.wire import Verb

_HELP = [
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
]
_EMPTY = (
    "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be "
    "used in these conditions. Please, leave for your mission on Earth and fill it with some data. "
    "The new Sam and I will be back to our programming as soon as I finished rebooting.\n"
)
_FINE = "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.\n"


@guard
def memory(client: Client, args: list) -> None:
    """MEMORY USAGE key [SAMPLES count] | STATS | DOCTOR | MALLOC-STATS | PURGE | HELP"""
    problem = command_docs.check_subcommand(args)
    if problem:
        raise CommandError(problem)
    sub = args[1].upper()
    server = client.server
    if sub == b"USAGE":
        # Its errors are its options' (Redis's come before the key's
        # lookup): answered here, so that one counts as failed at once, as
        # Redis counts it before the next command (a later INFO in the same
        # EXEC has it), not when a shard's reply comes.
        parse_usage_samples(args[3:], 0)
        # As Client.send, with the slot behind a sink that counts a failure.
        slot = monitor.LineSlot(client) if server.monitors else Slot(client)
        client.pending.append(slot)
        link = server.links[server.shard_of(args[2])]
        link.send(client.headers[client.resp3], encode_command(args), _Usage(slot))
    elif sub == b"STATS":
        client.query_all([Verb.INFO], lambda parts: _stats(server, parts))
    elif sub == b"DOCTOR":
        client.query_all([Verb.INFO], lambda parts: Verbatim(_doctor(server, parts).encode()))
    elif sub == b"MALLOC-STATS":
        client.reply("Stats not supported for the current allocator")
    elif sub == b"PURGE":
        gc.collect()
        client.reply(OK)
    elif sub == b"HELP":
        client.reply(list(_HELP))
    else:
        raise subcommand_error(args)


class _Usage:
    """The sink of a client's MEMORY USAGE: its reply goes into its slot,
    and an error counts in ``memory|usage``'s failed_calls, as Redis
    counts it.  The acceptor counted the call (MEMORY is one of its
    commands), so the worker keeps no row of it, only the error's count in
    errorstats."""

    __slots__ = ("slot",)

    def __init__(self, slot: Slot) -> None:
        self.slot = slot

    @property
    def busy_slot(self) -> Slot:
        """The slot a shard busy with a script answers ``-BUSY`` directly
        (see ShardLink._offer_refusals)."""
        return self.slot

    def deliver(self, body: bytes) -> None:
        if body[:1] == b"-":
            self.slot.client.server.stats._row("memory|usage")[3] += 1
        self.slot.deliver(body)


def _totals(server, parts: list) -> tuple[int, int, int]:
    keys = sum(p[0] for p in parts)
    used = used_memory(server, [p[6] if len(p) > 6 else {} for p in parts])
    # What the processes held before any data: the smallest figure seen
    # while the keyspace was empty (the interpreters themselves).
    if not keys:
        _STARTUP[0] = min(_STARTUP[0], used) if _STARTUP[0] else used
    return keys, used, _STARTUP[0]


def _stats(server, parts: list) -> dict:
    keys, used, startup = _totals(server, parts)
    peak = max(_PEAK[0], used)
    clients = server.clients.values()
    normal = sum(c.parser.buffered() for c in clients)
    dataset = max(used - startup - normal, 0)
    overhead = used - dataset
    return {
        b"peak.allocated": peak,
        b"total.allocated": used,
        b"startup.allocated": startup,
        b"replication.backlog": 0,
        b"clients.slaves": 0,
        b"clients.normal": normal,
        b"cluster.links": 0,
        b"aof.buffer": 0,
        b"lua.caches": scripts_eval_memory(),
        # Every shard holds every library: shard 0's, as INFO's used_memory_functions.
        b"functions.caches": parts[0][6].get("used_memory_functions", 0)
        if parts and len(parts[0]) > 6
        else 0,
        b"overhead.total": overhead,
        b"keys.count": keys,
        b"keys.bytes-per-key": dataset // keys if keys else 0,
        b"dataset.bytes": dataset,
        b"dataset.percentage": str(100 * dataset / used if used else 0).encode(),
        b"peak.percentage": str(100 * used / peak if peak else 100).encode(),
        b"allocator.allocated": used,
        b"allocator.active": used,
        b"allocator.resident": used,
        b"allocator-fragmentation.ratio": b"1",
        b"allocator-fragmentation.bytes": 0,
        b"allocator.rss-ratio": b"1",
        b"allocator.rss-bytes": 0,
        b"rss-overhead.ratio": b"1",
        b"rss-overhead.bytes": 0,
        b"fragmentation": b"1",
        b"fragmentation.bytes": 0,
    }


def _doctor(server, parts: list) -> str:
    keys, used, startup = _totals(server, parts)
    if used - startup < 5 * 1024 * 1024:  # as Redis: under 5 MB is "empty"
        return _EMPTY
    return _FINE
