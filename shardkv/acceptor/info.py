"""The text of INFO, built from the acceptor's counters and the shards' figures.

The sections and field names are Redis 7.0's, so that tools reading INFO
(redis-cli, exporters, client libraries) find what they expect.  Figures
of the whole server add up the acceptor and every worker: memory is their
resident sizes, CPU their times.  Counters shardkv does not keep are left
out rather than reported as zero; ``INFO commandstats``, ``errorstats`` and ``latencystats`` add up the
acceptor's counters and every shard's (see :mod:`shardkv.runtime.cmdstats`).
A ``shards`` section, which Redis does not have, lists each worker.
"""

from __future__ import annotations

import os
import platform
import secrets
import sys
import time
from typing import TYPE_CHECKING

from shardkv import REDIS_VERSION, __version__
from shardkv.acceptor import migrate, querybuf
from shardkv.acceptor.blocking import in_timeout_table
from shardkv.acceptor.durability import latest_fork_usec, persistence_section, total_forks
from shardkv.acceptor.scriptcache import CACHE
from shardkv.runtime.cmdstats import Stats, percentile, report_from_bus, report_to_bus

# shardkv.acceptor.tracking's (keys, items, prefixes), for INFO stats.

if TYPE_CHECKING:
    from shardkv.acceptor.client import Client
    from shardkv.acceptor.server import Acceptor

DEFAULT_SECTIONS = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cpu",
    "modules",
    "errorstats",
    "cluster",
    "keyspace",
]
ALL_SECTIONS = [
    *DEFAULT_SECTIONS[:8],
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
    "shards",
]
_TITLES = {"cpu": "CPU"}

RUN_ID = secrets.token_hex(20)  # this acceptor's life, as Redis's run_id
REPLID = secrets.token_hex(20)


class _Rate:
    """instantaneous_ops_per_sec: commands per second since the last sample."""

    def __init__(self) -> None:
        self.when = time.monotonic()
        self.count = 0
        self.rate = 0

    def sample(self, count: int) -> int:
        now = time.monotonic()
        if count < self.count:  # CONFIG RESETSTAT
            self.count = count
        if now - self.when >= 0.1:
            self.rate = int((count - self.count) / (now - self.when))
            self.when, self.count = now, count
        return self.rate


_OPS = _Rate()
_PEAK = [0]
_STARTUP = [0]


def _human(n: float) -> str:
    """Redis's bytesToHuman: ``1.50K``, ``12.00M``, ``100B``."""
    if n < 1024:
        return f"{int(n)}B"
    for unit in ("K", "M", "G", "T", "P"):
        n /= 1024
        if n < 1024 or unit == "P":
            return f"{n:.2f}{unit}"
    return str(n)


def _wanted(sections: list[str]) -> list[str]:
    wanted: list[str] = []
    for s in sections or ["default"]:
        if s == "everything" or s == "all":
            wanted += ALL_SECTIONS
        elif s == "default":
            wanted += DEFAULT_SECTIONS
        else:
            wanted.append(s)
    return wanted


# INFO's figures that each acceptor has of its own clients (K > 1): summed
# over the acceptors; the Pub/Sub channels and patterns are a union.
SUMMED = (
    "connected_clients",
    "blocked_clients",
    "tracking_clients",
    "clients_in_timeout_table",
    "pubsub_clients",
    "total_connections_received",
    "instantaneous_ops_per_sec",
    "total_net_input_bytes",
    "total_net_output_bytes",
    "rejected_connections",
    "total_reads_processed",
    "total_writes_processed",
    # Each acceptor's tracking table is its clients': a key tracked on two
    # acceptors counts twice.
    "tracking_total_keys",
    "tracking_total_items",
    "tracking_total_prefixes",
)


def _in_timeout_table(c: Client) -> bool:
    """Whether Redis would have ``c`` in its timeout table: a client blocked
    by a command with a timeout that is not 0; not one postponed by CLIENT
    PAUSE (Redis 7.0 blocks it with no timeout), nor one blocked for ever
    (``BLPOP k 0``, ``XREAD BLOCK 0``)."""
    return c.state.blocked and in_timeout_table(c.state.blocked_token)


def own_figures(server: Acceptor) -> list:
    """This acceptor's part of INFO for another acceptor's INFO (the bus's
    ``info`` answer): ``[name, value, ...]``, the :data:`SUMMED` figures,
    ``channels`` and ``patterns``, the names its clients subscribe to, then
    ``cmdstats``, its command statistics (see :func:`report_to_bus`), which
    INFO commandstats, errorstats, latencystats and ``total_error_replies``
    add up as Redis's one process counts every client's commands."""
    clients = server.clients.values()
    blocked = sum(1 for c in clients if c.state.blocked)
    values = {
        "connected_clients": len(server.clients),
        "blocked_clients": blocked,
        "tracking_clients": sum(1 for c in clients if c.tracking is not None),
        "clients_in_timeout_table": sum(1 for c in clients if _in_timeout_table(c)),
        "pubsub_clients": sum(1 for c in clients if c.state.subscribed),
        "total_connections_received": server.connections_received,
        "instantaneous_ops_per_sec": _OPS.sample(server.commands_processed),
        "total_net_input_bytes": server.net_input_bytes,
        "total_net_output_bytes": server.net_output_bytes,
        "rejected_connections": server.rejected_connections,
        "total_reads_processed": server.reads_processed,
        "total_writes_processed": server.writes_processed,
    }
    tracked = server.wiring.tracking_totals()
    values["tracking_total_keys"], values["tracking_total_items"], values["tracking_total_prefixes"] = tracked
    out: list = []
    for name in SUMMED:
        out += [name.encode(), values[name]]
    out += [b"channels", list(set().union(*(c.state.channels for c in clients)))]
    out += [b"patterns", list(set().union(*(c.state.patterns for c in clients)))]
    out += [b"shardchannels", list(set().union(*(c.state.shard_channels for c in clients)))]
    out += [b"cmdstats", report_to_bus(server.stats.report())]
    return out


def _with_others(body: dict[str, list[tuple[str, object]]], server: Acceptor, others: list) -> None:
    """Add the other acceptors' figures (their :func:`own_figures`) to ``body``."""
    totals: dict[str, int] = {}
    channels = set().union(*(c.state.channels for c in server.clients.values()))
    patterns = set().union(*(c.state.patterns for c in server.clients.values()))
    shard_channels = set().union(*(c.state.shard_channels for c in server.clients.values()))
    for flat in others:
        figures = dict(zip(flat[::2], flat[1::2], strict=True))
        for name in SUMMED:
            totals[name] = totals.get(name, 0) + figures.get(name.encode(), 0)
        channels.update(figures.get(b"channels", ()))
        patterns.update(figures.get(b"patterns", ()))
        shard_channels.update(figures.get(b"shardchannels", ()))
    totals_union = {
        "pubsub_channels": len(channels),
        "pubsub_patterns": len(patterns),
        "pubsubshard_channels": len(shard_channels),
    }
    for entries in body.values():
        for i, (name, value) in enumerate(entries):
            if name in totals:
                entries[i] = (name, value + totals[name])  # type: ignore[operator]
            elif name in totals_union:
                entries[i] = (name, totals_union[name])


def build_info(
    server: Acceptor, sections: list[str], shards: list, own: list | None = None, others: list | None = None
) -> str:
    """INFO's text.  ``shards`` is each shard's ``__info`` reply; ``own`` the
    acceptor's command statistics when INFO came (it is counted after it);
    ``others`` the other acceptors' :func:`own_figures` (K > 1)."""
    wanted = _wanted(sections)
    tracking_totals = server.wiring.tracking_totals()  # CLIENT TRACKING's tables
    cfg = server.config
    now = time.time()
    uptime = int(now - server.started)
    stats = [s[6] if len(s) > 6 else {} for s in shards]
    expired = sum(s[2] for s in shards)
    used = used_memory(server, stats)
    acceptors = acceptors_memory(server)
    rss = sum(s[3] for s in shards) + _own_rss() * server.nacceptors
    _PEAK[0] = peak = max(_PEAK[0], used)
    if not sum(s[0] for s in shards):  # the processes before any data: the smallest such figure
        _STARTUP[0] = min(_STARTUP[0], used) if _STARTUP[0] else used
    startup = min(_STARTUP[0] or used, used)
    own_cpu = os.times()
    cpu_sys = own_cpu.system + sum(s.get("used_cpu_sys", 0) for s in stats)
    cpu_user = own_cpu.user + sum(s.get("used_cpu_user", 0) for s in stats)
    clients = server.clients.values()
    command_stats = _command_stats(server.stats.report() if own is None else own, stats, others or [])
    body: dict[str, list[tuple[str, object]]] = {
        "server": [
            ("redis_version", REDIS_VERSION),
            ("shardkv_version", __version__),
            ("redis_git_sha1", "00000000"),
            ("redis_git_dirty", 0),
            ("redis_build_id", "0"),
            ("redis_mode", "standalone"),
            ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
            ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
            ("monotonic_clock", "POSIX clock_gettime"),
            ("multiplexing_api", server.event_loop_name),
            ("python_version", platform.python_version()),
            ("process_id", os.getpid()),
            ("process_supervised", "no"),
            ("run_id", RUN_ID),
            ("tcp_port", cfg["port"]),
            ("server_time_usec", int(now * 1_000_000)),
            ("uptime_in_seconds", uptime),
            ("uptime_in_days", uptime // 86400),
            ("hz", cfg["hz"]),
            ("configured_hz", cfg["hz"]),
            ("lru_clock", int(now) & ((1 << 24) - 1)),
            ("executable", sys.executable),
            ("config_file", os.path.abspath(cfg["config"]) if cfg.get("config") else ""),
            ("io_threads_active", 0),
            ("shards", server.nshards),
        ],
        "clients": [
            ("connected_clients", len(server.clients)),
            ("cluster_connections", 0),
            ("maxclients", cfg["maxclients"]),
            (
                "client_recent_max_input_buffer",
                max((querybuf.allocated(c) for c in clients), default=0),
            ),
            ("client_recent_max_output_buffer", 0),
            ("blocked_clients", sum(1 for c in clients if c.state.blocked)),
            ("tracking_clients", sum(1 for c in clients if c.tracking is not None)),
            ("clients_in_timeout_table", sum(1 for c in clients if _in_timeout_table(c))),
            ("pubsub_clients", sum(1 for c in clients if c.state.subscribed)),
        ],
        "memory": [
            ("used_memory", used),
            ("used_memory_human", _human(used)),
            ("used_memory_rss", rss),
            ("used_memory_rss_human", _human(rss)),
            ("used_memory_peak", peak),
            ("used_memory_peak_human", _human(peak)),
            ("used_memory_peak_perc", f"{100 * used / peak if peak else 100:.2f}%"),
            ("used_memory_overhead", startup),
            ("used_memory_startup", startup),
            ("used_memory_dataset", used - startup),
            ("used_memory_dataset_perc", f"{100 * (used - startup) / used if used else 0:.2f}%"),
            ("used_memory_acceptor", acceptors),
            ("allocator_allocated", used),
            ("allocator_active", used),
            ("allocator_resident", used),
            ("total_system_memory", _system_memory()),
            ("total_system_memory_human", _human(_system_memory())),
            *_lua_memory(stats),
            ("maxmemory", cfg["maxmemory"]),
            ("maxmemory_human", _human(cfg["maxmemory"])),
            ("maxmemory_policy", cfg["maxmemory-policy"]),
            ("allocator_frag_ratio", "1.00"),
            ("allocator_frag_bytes", 0),
            ("allocator_rss_ratio", "1.00"),
            ("allocator_rss_bytes", 0),
            ("rss_overhead_ratio", "1.00"),
            ("rss_overhead_bytes", 0),
            ("mem_fragmentation_ratio", "1.00"),
            ("mem_fragmentation_bytes", 0),
            ("mem_not_counted_for_evict", 0),
            ("mem_replication_backlog", 0),
            ("mem_total_replication_buffers", 0),
            ("mem_clients_slaves", 0),
            ("mem_clients_normal", sum(c.parser.buffered() for c in clients)),
            ("mem_cluster_links", 0),
            ("mem_aof_buffer", 0),
            ("mem_allocator", "pymalloc"),
            ("active_defrag_running", 0),
            ("lazyfree_pending_objects", 0),
            ("lazyfreed_objects", sum(s.get("lazyfreed_objects", 0) for s in stats)),
        ],
        "persistence": persistence_section(server, shards),
        "stats": [
            ("total_connections_received", server.connections_received),
            ("total_commands_processed", commands_processed(command_stats)),
            ("instantaneous_ops_per_sec", _OPS.sample(server.commands_processed)),
            ("total_net_input_bytes", server.net_input_bytes),
            ("total_net_output_bytes", server.net_output_bytes),
            ("rejected_connections", server.rejected_connections),
            ("sync_full", 0),
            ("sync_partial_ok", 0),
            ("sync_partial_err", 0),
            ("expired_keys", expired),
            ("expired_stale_perc", "0.00"),
            ("expired_time_cap_reached_count", 0),
            ("evicted_keys", sum(s.get("evicted_keys", 0) for s in stats)),
            ("keyspace_hits", sum(s.get("keyspace_hits", 0) for s in stats)),
            ("keyspace_misses", sum(s.get("keyspace_misses", 0) for s in stats)),
            ("pubsub_channels", len(set().union(*(c.state.channels for c in clients)))),
            ("pubsub_patterns", len(set().union(*(c.state.patterns for c in clients)))),
            ("pubsubshard_channels", len(set().union(*(c.state.shard_channels for c in clients)))),
            ("latest_fork_usec", latest_fork_usec(shards)),
            ("total_forks", total_forks(shards)),
            ("migrate_cached_sockets", migrate.cached_sockets(server)),
            ("slave_expires_tracked_keys", 0),
            ("active_defrag_hits", 0),
            ("active_defrag_misses", 0),
            ("active_defrag_key_hits", 0),
            ("active_defrag_key_misses", 0),
            ("total_active_defrag_time", 0),
            ("current_active_defrag_time", 0),
            ("tracking_total_keys", tracking_totals[0]),
            ("tracking_total_items", tracking_totals[1]),
            ("tracking_total_prefixes", tracking_totals[2]),
            ("unexpected_error_replies", 0),
            ("total_error_replies", command_stats.error_replies),
            ("dump_payload_sanitizations", 0),
            ("total_reads_processed", server.reads_processed),
            ("total_writes_processed", server.writes_processed),
            ("io_threaded_reads_processed", 0),
            ("io_threaded_writes_processed", 0),
        ],
        "replication": [
            ("role", "master"),
            ("connected_slaves", 0),
            ("master_failover_state", "no-failover"),
            ("master_replid", REPLID),
            ("master_replid2", "0" * 40),
            ("master_repl_offset", 0),
            ("second_repl_offset", -1),
            ("repl_backlog_active", 0),
            ("repl_backlog_size", 1048576),
            ("repl_backlog_first_byte_offset", 0),
            ("repl_backlog_histlen", 0),
        ],
        "cpu": [
            ("used_cpu_sys", f"{cpu_sys:.6f}"),
            ("used_cpu_user", f"{cpu_user:.6f}"),
            ("used_cpu_sys_children", f"{own_cpu.children_system:.6f}"),
            ("used_cpu_user_children", f"{own_cpu.children_user:.6f}"),
            ("used_cpu_sys_main_thread", f"{own_cpu.system:.6f}"),
            ("used_cpu_user_main_thread", f"{own_cpu.user:.6f}"),
        ],
        "modules": [],
        "commandstats": _commandstats(command_stats),
        "errorstats": [
            (f"errorstat_{code}", f"count={n}") for code, n in sorted(command_stats.errors.items())
        ],
        "latencystats": _latencystats(command_stats, cfg),
        "cluster": [("cluster_enabled", 0)],
        "keyspace": [],
        "shards": [],
    }
    body["keyspace"] = keyspace_lines(stats)
    for i, (s, extra) in enumerate(zip(shards, stats, strict=True)):
        line = f"keys={s[0]},expires={s[1]},pid={s[4]},rss={s[3]},hz={extra.get('hz', 0)}"
        body["shards"].append((f"shard{i}", line))
    if others:
        _with_others(body, server, others)
    out: list[str] = []
    seen = set()
    for name in wanted:
        if name in seen or name not in body:
            continue
        seen.add(name)
        if out:
            out.append("\r\n")
        out.append(f"# {_TITLES.get(name, name.capitalize())}\r\n")
        out.extend(f"{k}:{v}\r\n" for k, v in body[name])
    return "".join(out)


def _command_stats(own: list, stats: list, others: list) -> Stats:
    """The acceptor's counters, every other acceptor's (their
    :func:`own_figures`) and every shard's, added up."""
    total = Stats()
    total.merge(own)
    for report in other_reports(others):
        total.merge(report)
    for s in stats:
        if "cmdstats" in s:
            total.merge(s["cmdstats"])
    return total


def commands_processed(stats: Stats) -> int:
    """``total_commands_processed``: the calls of INFO commandstats, added
    up over the acceptors and the shards, as Redis counts
    ``stat_numcommands`` in ``call()``: after a command ran (INFO is not in
    its own figure), each of a script's calls and of an EXEC's commands,
    and never a command refused before it ran (``rejected_calls``)."""
    return sum(row[0] for row in stats.commands.values())


def other_reports(others: list) -> list:
    """The other acceptors' command statistics (:meth:`Stats.report`),
    from their :func:`own_figures`."""
    out = []
    for flat in others:
        figures = dict(zip(flat[::2], flat[1::2], strict=True))
        if b"cmdstats" in figures:
            out.append(report_from_bus(figures[b"cmdstats"]))
    return out


def _commandstats(stats: Stats) -> list:
    out = []
    for name, (calls, ns, rejected, failed, *_) in sorted(stats.commands.items()):
        if not (calls or rejected or failed):
            # As Redis: a row with no call (one that blocked before CONFIG
            # RESETSTAT and was served after it has only time) is left out.
            continue
        usec = ns // 1000
        per_call = usec / calls if calls else 0
        out.append(
            (
                f"cmdstat_{name}",
                f"calls={calls},usec={usec},usec_per_call={per_call:.2f},"
                f"rejected_calls={rejected},failed_calls={failed}",
            )
        )
    return out


def _latencystats(stats: Stats, cfg: dict) -> list:
    try:
        wanted = [float(p) for p in str(cfg.get("latency-tracking-info-percentiles", "50 99 99.9")).split()]
    except ValueError:
        wanted = [50.0, 99.0, 99.9]
    out = []
    for name, row in sorted(stats.commands.items()):
        hist = row[4]
        if not hist:
            continue
        fields = ",".join(f"p{p:g}={percentile(hist, p) / 1000:.3f}" for p in wanted)
        out.append((f"latency_percentiles_usec_{name}", fields))
    return out


def keyspace_lines(stats: list[dict]) -> list[tuple[str, object]]:
    """INFO keyspace: one ``db<N>`` line per database that has keys, summed
    over the shards (each shard's ``dbs``: db -> [keys, expires, ttl sum, ttl n])."""
    totals: dict[int, list[int]] = {}
    for extra in stats:
        for db, figures in extra.get("dbs", {}).items():
            total = totals.setdefault(db, [0, 0, 0, 0])
            for j, v in enumerate(figures):
                total[j] += v
    out: list[tuple[str, object]] = []
    for db in sorted(totals):
        keys, expires, ttl_sum, ttl_n = totals[db]
        if keys:
            avg_ttl = ttl_sum // ttl_n if ttl_n else 0
            out.append((f"db{db}", f"keys={keys},expires={expires},avg_ttl={avg_ttl}"))
    return out


def _own_rss() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover
        return 0


# The acceptor before it serves anyone (read when it starts: a constant).
ACCEPTOR_BASE = _own_rss()


def acceptors_memory(server: Acceptor) -> int:
    """The acceptors' part of ``used_memory``: each counts as this one's
    size when it started (a constant, as a worker's ``BASE``, see
    shardkv.worker.eviction), so the figure moves only with the data."""
    return ACCEPTOR_BASE * server.nacceptors


def used_memory(server: Acceptor, stats: list[dict]) -> int:
    """INFO's ``used_memory``, what ``maxmemory`` is compared with: the
    shards' memory figures (each ``__info``'s ``used_memory``: a constant
    and the estimated size of its data) and the acceptors'."""
    return sum(s.get("used_memory", 0) for s in stats) + acceptors_memory(server)


def _system_memory() -> int:
    try:
        import psutil

        return psutil.virtual_memory().total
    except ImportError:  # pragma: no cover
        return 0


def scripts_eval_memory() -> int:
    """used_memory_scripts_eval (MEMORY STATS' lua.caches): the script
    cache's bodies and their entries (with those other acceptors cached
    that this one was not told of yet: see ScriptCache.find)."""
    if CACHE.log is not None:
        CACHE.catch_up()
    return sum(len(body) + 40 for body in CACHE.bodies.values())


def _lua_memory(stats: list[dict]) -> list[tuple[str, object]]:
    """The Lua fields of INFO memory: the largest shard's Lua states (EVAL's
    and the functions'), the script cache (kept by the acceptor), and the
    libraries (every shard has them all, so shard 0's figures)."""
    # Redis reports its one VM of each kind; each shard has its own copy,
    # which sees every script that runs there: the largest shard's.
    lua = max((s.get("used_memory_lua", 0) for s in stats), default=0)
    vm_functions = max((s.get("used_memory_vm_functions", 0) for s in stats), default=0)
    first = stats[0] if stats else {}
    scripts_eval = scripts_eval_memory()
    functions = first.get("used_memory_functions", 0)
    return [
        ("used_memory_lua", lua),
        ("used_memory_vm_eval", lua),
        ("used_memory_lua_human", _human(lua)),
        ("used_memory_scripts_eval", scripts_eval),
        ("number_of_cached_scripts", len(CACHE.bodies)),
        ("number_of_functions", first.get("number_of_functions", 0)),
        ("number_of_libraries", first.get("number_of_libraries", 0)),
        ("used_memory_vm_functions", vm_functions),
        ("used_memory_vm_total", lua + vm_functions),
        ("used_memory_vm_total_human", _human(lua + vm_functions)),
        ("used_memory_functions", functions),
        ("used_memory_scripts", scripts_eval + functions),
        ("used_memory_scripts_human", _human(scripts_eval + functions)),
    ]
