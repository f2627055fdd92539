"""The server commands the acceptor answers: INFO, TIME, SWAPDB, DEBUG,
MONITOR, LOLWUT, MODULE, and CLUSTER with ASKING, READONLY and READWRITE
(COMMAND and CONFIG have modules of their own; LASTSAVE and
SHUTDOWN are in :mod:`shardkv.acceptor.durability`, SLOWLOG, LATENCY and
MEMORY in modules of those names).

SWAPDB swaps two databases on every shard in one step of the global order.
"""

from __future__ import annotations

import re
import time

from shardkv import REDIS_VERSION
from shardkv.acceptor import monitor
from shardkv.acceptor.bus import fail_slot
from shardkv.acceptor.client import Client
from shardkv.acceptor.commands.common import all_ok, guard
from shardkv.acceptor.fanout import Gather
from shardkv.acceptor.info import build_info, own_figures
from shardkv.acceptor.replies import Slot
from shardkv.protocol import bus, errors
from shardkv.protocol.args import parse_int, parse_int32
from shardkv.protocol.errors import CommandError
from shardkv.protocol.resp import OK, Verbatim, encode, encode_command
from shardkv.protocol.wire import Verb
from shardkv.runtime.config import memtoull


def monitor_(client: Client, args: list) -> None:
    """MONITOR"""
    if client.state.in_exec:  # Redis: EXEC wants one reply per command
        client.reply_error(errors.MONITOR_DENY_BLOCKING)
    elif monitor.start(client):
        monitor.announce(client, encode(OK, client.resp3))
    # else: already monitoring; Redis ignores the command without a reply


def info(client: Client, args: list) -> None:
    """INFO [section [section ...]]"""
    sections = [a.decode("latin-1").lower() for a in args[1:]]
    own = client.server.stats.report()  # as of now: this INFO is counted after it ran

    server = client.server
    if server.loading:
        # The shards are still loading, as is every other acceptor: this
        # one's figures alone, with how far the loading has come (INFO
        # has the ``loading`` flag), and no keyspace yet.
        client.reply(Verbatim(build_info(server, sections, [], own).encode()))
        return
    # A shard whose worker restarted reloads its data: as Redis answers
    # INFO at once while it loads again, the shards that serve are asked,
    # not that one (its keys are not counted yet; ``loading:1`` says so).
    serving = [s for s in range(len(server.links)) if s not in server.reloading]
    if server.bus is None:

        def merge(parts: list) -> object:
            return Verbatim(build_info(server, sections, _in_place(server, serving, parts), own).encode())

        if not serving:  # (one shard, and it reloads)
            client.reply(merge([]))
            return
        encoded = encode_command([Verb.INFO])
        client.fan_out({s: encoded for s in serving}, merge)
        return
    # Several acceptors: their figures first, then the shards'.
    slot = Slot(client)
    client.pending.append(slot)

    def with_shards(others: list) -> None:
        def merge(parts: list) -> object:
            return Verbatim(
                build_info(server, sections, _in_place(server, serving, parts), own, others).encode()
            )

        if not serving:  # (one shard, and it reloads)
            slot.deliver(encode(merge([]), client.resp3))
            return
        gather = Gather(slot, len(serving), merge, client.resp3, None)
        header, body = client.part_headers[client.resp3], encode_command([Verb.INFO])
        for i, s in enumerate(serving):
            server.links[s].send(header, body, gather.sink(i))

    server.bus.ask(bus.INFO, [], with_shards, failed=fail_slot(slot))


# A reloading shard's place among the ``__info`` replies: no key counted
# yet, no figure (its INFO shards line says keys=0 and pid=0).
_RELOADING_PART = [0, 0, 0, 0, 0, {}, {}]


def _in_place(server, serving: list[int], parts: list) -> list:
    """The ``__info`` replies of the shards ``serving`` (those asked), each
    at its shard's place, a reloading shard's place holding
    :data:`_RELOADING_PART`."""
    if len(serving) == len(server.links):
        return parts
    placed: list = [_RELOADING_PART] * len(server.links)
    for shard, part in zip(serving, parts, strict=True):
        placed[shard] = part
    return placed


def bus_info(server, origin: int, args: list) -> list:
    """Another acceptor's INFO: this one's own figures."""
    return own_figures(server)


def time_(client: Client, args: list) -> None:
    """TIME"""
    now = time.time()
    client.reply([b"%d" % int(now), b"%d" % int((now % 1) * 1_000_000)])


@guard
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
    client.query_all([b"SWAPDB", b"%d" % a, b"%d" % b], all_ok)


def _db_index(arg: bytes, message: str) -> int:
    try:
        return parse_int32(arg)
    except CommandError:
        raise CommandError(message) from None


@guard
def debug(client: Client, args: list) -> None:
    """DEBUG subcommand [argument ...]

    Only where ``enable-debug-command`` allows it (checked before this runs,
    see :meth:`Dispatch.execute`).  ``DEBUG SLEEP`` stops the whole acceptor,
    so every client waits, as Redis stops its one thread.
    """
    sub = args[1].upper()
    n = len(args)
    if sub == b"SLEEP" and n == 3:
        # As Redis reads it ("abc" is 0) and converts it to a long long of
        # microseconds: past 2**63 (1e400 is inf) x86-64 gives LLONG_MIN,
        # and nanosleep returns at once.
        micros = _strtod(args[2]) * 1_000_000
        if 0 < micros < 2**63:
            time.sleep(int(micros) / 1_000_000)
        client.reply(OK)
    elif sub == b"CHANGE-REPL-ID" and n == 2:
        client.reply(OK)
    elif sub == b"QUICKLIST-PACKED-THRESHOLD" and n == 3:
        # As Redis's quicklistisSetPackedThreshold: up to 4gb less 1mb; 0
        # restores the default.  shardkv keeps no quicklist: only checked.
        size = memtoull(args[2].decode("latin-1"))
        if size is None or size > (1 << 32) - (1 << 20):
            raise CommandError(errors.DEBUG_PACKED_THRESHOLD)
        client.reply(OK)
    elif sub == b"HELP":
        client.reply(list(_DEBUG_HELP))
    else:
        raise CommandError(
            "ERR DEBUG subcommand not supported by shardkv: {}".format(args[1].decode("latin-1"))
        )


def cluster(client: Client, args: list) -> None:
    """CLUSTER subcommand [argument ...]

    shardkv is one server, not a node of a Redis Cluster: every subcommand
    gets the answer of a redis-server whose ``cluster-enabled`` is ``no``
    (HELP included).  The dispatch has checked the subcommand and its
    arity, as Redis does before this error.
    """
    client.reply_error(errors.CLUSTER_DISABLED)


def cluster_only(client: Client, args: list) -> None:
    """ASKING | READONLY | READWRITE

    Commands of a Redis Cluster node's clients: answered as a
    redis-server with ``cluster-enabled no`` answers them."""
    client.reply_error(errors.CLUSTER_DISABLED)


@guard
def lolwut(client: Client, args: list) -> None:
    """LOLWUT [VERSION version]

    As Redis 7.0: without VERSION 5 or 6, the line ``Redis ver. 7.0.15``.
    Versions 5 and 6 check their arguments as Redis does, but draw no art
    (Redis draws a random one): they answer the caption Redis writes under
    it.
    """
    version = REDIS_VERSION
    if len(args) >= 3 and args[1].lower() == b"version":
        version = "%d.0.0" % (parse_int(args[2]) & 0xFFFFFFFF)
        args = args[2:]
    v = version[:3]  # (as Redis's lolwutCommand compares v[0], v[1], v[2])
    if (v[:2] == "5." and v[2:] != "9") or v == "4.9":
        count = 3  # lolwut5Command's columns, squares per row and per column
        caption = "Georg Nees - schotter, plotter on paper, 1968."
    elif (v[:2] == "6." and v[2:] != "9") or v == "5.9":
        count = 2  # lolwut6Command's columns and rows
        caption = (
            "Dedicated to the 8 bit game developers of past and present.\n"
            "Original 8 bit image from Plaguemon by hikikomori."
        )
    else:
        client.reply(Verbatim(b"Redis ver. %s\n" % REDIS_VERSION.encode()))
        return
    for arg in args[1 : 1 + count]:
        parse_int(arg)
    client.reply(Verbatim(b"%s Redis ver. %s\n" % (caption.encode(), REDIS_VERSION.encode())))


@guard
def module(client: Client, args: list) -> None:
    """MODULE HELP | LIST | LOAD path [arg ...] | LOADEX path [CONFIG name value ...] [ARGS arg ...] | UNLOAD name

    shardkv loads no modules: LIST is empty, LOAD and LOADEX fail as
    Redis's do for a file that is no module, UNLOAD as for a name no module
    has.  LOAD, LOADEX and UNLOAD run only where ``enable-module-command``
    allows them (checked before this runs, see :meth:`Dispatch.execute`).
    """
    sub = args[1].lower()
    if sub == b"help":
        client.reply(list(_MODULE_HELP))
    elif sub == b"list":
        client.reply([])
    elif sub == b"unload":
        raise CommandError(errors.MODULE_UNLOAD_FAILED)
    else:  # load, loadex
        raise CommandError(errors.MODULE_LOAD_FAILED)


_MODULE_HELP = [
    "MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LIST",
    "    Return a list of loaded modules.",
    "LOAD <path> [<arg> ...]",
    "    Load a module library from <path>, passing to it any optional arguments.",
    "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
    "    Load a module library from <path>, while passing it module configurations and optional arguments.",
    "UNLOAD <name>",
    "    Unload a module.",
    "HELP",
    "    Prints this help.",
]


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
