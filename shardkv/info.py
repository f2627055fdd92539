"""The text of INFO, built from the acceptor's counters and the shards' figures."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import TYPE_CHECKING

from shardkv import REDIS_VERSION, __version__

if TYPE_CHECKING:
    from shardkv.acceptor import Acceptor

DEFAULT_SECTIONS = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "keyspace"]
ALL_SECTIONS = DEFAULT_SECTIONS + ["shards"]


def _human(n: float) -> str:
    for unit in ("B", "K", "M", "G"):
        if n < 1024 or unit == "G":
            return f"{n:.2f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return str(n)


def build_info(server: Acceptor, sections: list[str], shards: list) -> str:
    """INFO's text.  ``shards`` is each shard's ``__info`` reply."""
    wanted: list[str] = []
    for s in sections or ["default"]:
        if s in ("all", "everything"):
            wanted += ALL_SECTIONS
        elif s == "default":
            wanted += DEFAULT_SECTIONS
        else:
            wanted.append(s)
    cfg = server.config
    now = time.time()
    uptime = int(now - server.started)
    keys = sum(s[0] for s in shards)
    expires = sum(s[1] for s in shards)
    expired = sum(s[2] for s in shards)
    worker_rss = sum(s[3] for s in shards)
    own_rss = _own_rss()
    used = worker_rss + own_rss
    usage = os.times()
    body: dict[str, list[tuple[str, object]]] = {
        "server": [
            ("redis_version", REDIS_VERSION),
            ("shardkv_version", __version__),
            ("redis_git_sha1", "00000000"),
            ("redis_git_dirty", 0),
            ("redis_mode", "standalone"),
            ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
            ("arch_bits", 64 if sys.maxsize > 2**32 else 32),
            ("multiplexing_api", server.event_loop_name),
            ("python_version", platform.python_version()),
            ("process_id", os.getpid()),
            ("tcp_port", cfg["port"]),
            ("server_time_usec", int(now * 1_000_000)),
            ("uptime_in_seconds", uptime),
            ("uptime_in_days", uptime // 86400),
            ("hz", cfg["hz"]),
            ("shards", server.nshards),
            ("executable", sys.executable),
        ],
        "clients": [
            ("connected_clients", len(server.clients)),
            ("maxclients", cfg["maxclients"]),
            ("blocked_clients", sum(1 for c in server.clients.values() if c.blocked_token)),
            ("pubsub_clients", sum(1 for c in server.clients.values() if c.channels or c.patterns)),
        ],
        "memory": [
            ("used_memory", used),
            ("used_memory_human", _human(used)),
            ("used_memory_rss", used),
            ("used_memory_rss_human", _human(used)),
            ("used_memory_acceptor", own_rss),
            ("maxmemory", cfg["maxmemory"]),
            ("maxmemory_human", _human(cfg["maxmemory"])),
            ("maxmemory_policy", cfg["maxmemory-policy"]),
        ],
        "persistence": [
            ("loading", 0),
            ("rdb_last_save_time", server.lastsave),
            ("aof_enabled", 1 if cfg["appendonly"] else 0),
        ],
        "stats": [
            ("total_connections_received", server.connections_received),
            ("total_commands_processed", server.commands_processed),
            ("rejected_connections", server.rejected_connections),
            ("expired_keys", expired),
        ],
        "replication": [("role", "master"), ("connected_slaves", 0)],
        "cpu": [
            ("used_cpu_sys", f"{usage.system:.6f}"),
            ("used_cpu_user", f"{usage.user:.6f}"),
        ],
        "keyspace": [],
        "shards": [],
    }
    if keys:
        body["keyspace"].append(("db0", f"keys={keys},expires={expires},avg_ttl=0"))
    for i, s in enumerate(shards):
        line = f"keys={s[0]},expires={s[1]},pid={s[4]},rss={s[3]}"
        body["shards"].append((f"shard{i}", line))
        body["keyspace"].append((f"shard{i}", f"keys={s[0]},expires={s[1]}"))
    out = []
    seen = set()
    for name in wanted:
        if name in seen or name not in body:
            continue
        seen.add(name)
        out.append(f"# {name.capitalize()}\r\n")
        out.extend(f"{k}:{v}\r\n" for k, v in body[name])
        out.append("\r\n")
    return "".join(out).rstrip("\r\n") + "\r\n" if out else ""


def _own_rss() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover
        return 0
