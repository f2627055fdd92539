"""LATENCY: LATEST, HISTORY, RESET, DOCTOR, GRAPH, HISTOGRAM and HELP.

LATENCY HISTOGRAM reports each command's latency distribution from the
same counters as INFO latencystats (see :mod:`shardkv.runtime.cmdstats`:
every acceptor's and every shard's), in
Redis's format: the calls, and the cumulative count at each power of two
of microseconds.

The latency monitor's events (``latency-monitor-threshold``) are not
recorded: shardkv has none of the events Redis samples (fork, AOF fsync
in the main thread, expire and eviction cycles in the one thread), so
LATEST and HISTORY are empty and DOCTOR says so, as Redis does with the
monitor off or nothing recorded.
"""

from __future__ import annotations

from shardkv.acceptor.bus import fail_slot
from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import guard, subcommand_error
from shardkv.acceptor.fanout import Gather
from shardkv.acceptor.info import other_reports
from shardkv.acceptor.replies import Slot
from shardkv.protocol import bus, command_docs
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import MapPairs, Verbatim, encode_command
from shardkv.protocol.wire import Verb
from shardkv.runtime.cmdstats import Stats, bucket_value

_HELP = [
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
]
_DOCTOR_OFF = (
    "Dave, no latency spike was observed during the lifetime of this Redis instance, not in the "
    "slightest bit. I honestly think you ought to sleep tonight.\n"
)
_DOCTOR_DISABLED = (
    "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. "
    'You may use "CONFIG SET latency-monitor-threshold <milliseconds>." in order to enable it. '
    "If we weren't in a deep space mission I'd suggest to take a look at "
    "https://redis.io/topics/latency-monitor.\n"
)


@guard
def latency(client: Client, args: list) -> None:
    """LATENCY LATEST | HISTORY event | RESET [event ...] | DOCTOR | GRAPH event | HISTOGRAM [command ...]"""
    problem = command_docs.check_subcommand(args)
    if problem:
        raise CommandError(problem)
    sub = args[1].upper()
    server = client.server
    if sub in (b"LATEST", b"HISTORY"):
        client.reply([])
    elif sub == b"RESET":
        client.reply(0)
    elif sub == b"DOCTOR":
        text = _DOCTOR_DISABLED if not server.config["latency-monitor-threshold"] else _DOCTOR_OFF
        client.reply(Verbatim(text.encode()))
    elif sub == b"GRAPH":
        raise CommandError("ERR No samples available for event '%s'" % args[2].decode("latin-1"))
    elif sub == b"HISTOGRAM":
        names = [a.decode("latin-1").lower() for a in args[2:]]
        own = server.stats.report()
        if server.bus is None:
            client.query_all([Verb.CMDSTATS], lambda parts: _histogram([own], parts, names))
            return
        # Several acceptors: their counters first (as INFO's), then the shards'.
        slot = Slot(client)
        client.pending.append(slot)

        def with_shards(others: list) -> None:
            reports = [own, *other_reports(others)]
            gather = Gather(
                slot, len(server.links), lambda parts: _histogram(reports, parts, names), client.resp3
            )
            header, body = client.part_headers[client.resp3], encode_command([Verb.CMDSTATS])
            for i, link in enumerate(server.links):
                link.send(header, body, gather.sink(i))

        server.bus.ask(bus.INFO, [], with_shards, failed=fail_slot(slot))
    elif sub == b"HELP":
        client.reply(list(_HELP))
    else:
        raise subcommand_error(args)


def _histogram(reports: list, parts: list, names: list[str]) -> dict | MapPairs:
    """The reply: the acceptors' ``reports`` and the shards' ``parts`` added
    up; every command with data, or those ``names`` asks for, as Redis's
    latencySpecificCommandsFillCDF: in their order, a name given twice
    twice, a container command its subcommands with data (``config``:
    ``config|get``..., in no order Redis promises: here sorted), a name
    that is no command (or has no data) nothing."""
    total = Stats()
    for report in reports:
        total.merge(report)
    for part in parts:
        if isinstance(part, list):
            total.merge(part)
    rows = _rows(total)
    if not names:
        return {name.encode(): rows[name] for name in sorted(rows)}
    out = MapPairs()
    for name in names:
        if name in rows:
            out.append((name.encode(), rows[name]))
        if "|" not in name:
            prefix = name + "|"
            out.extend((sub.encode(), rows[sub]) for sub in sorted(rows) if sub.startswith(prefix))
    return out


def _rows(total: Stats) -> dict[str, dict]:
    """Each command's entry (its calls and cumulative histogram), for those with data."""
    out: dict[str, dict] = {}
    for name, row in total.commands.items():
        hist = row[4]
        if not hist:
            continue
        calls = sum(hist.values())  # (Redis's histogram's total count: the calls tracked)
        # Cumulative counts at powers of two of microseconds, as Redis prints
        # its HdrHistogram (the first bucket at 1 µs).
        by_power: dict[int, int] = {}
        for index, n in hist.items():
            us = max(bucket_value(index) // 1000, 1)
            power = 1 << (us - 1).bit_length()
            by_power[power] = by_power.get(power, 0) + n
        cumulative, running = {}, 0
        for power in sorted(by_power):
            running += by_power[power]
            cumulative[power] = running
        out[name] = {b"calls": calls, b"histogram_usec": cumulative}
    return out
