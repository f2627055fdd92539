"""Settings: their names, types, defaults, and how they are read.

Each setting is named after its redis.conf directive.  They are read from
the TOML file given with ``--config``, then from command-line flags
(``--port 7000``), which win.  CONFIG GET reports the values in effect,
and CONFIG SET changes the ones marked ``runtime``.

An unknown key, a value of the wrong type or a missing file is a
:class:`ConfigError` with a one-line message; ``main.py`` prints it and
exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ConfigError(Exception):
    """A bad config file or flag; the message names the key or the file."""


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}


def parse_memory(text: str) -> int:
    """Redis's memory notation: ``100``, ``1k`` (1000), ``1kb`` (1024), ``2gb``."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a memory size: {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def _bool(text: str) -> bool:
    low = text.lower()
    if low in ("yes", "true", "1"):
        return True
    if low in ("no", "false", "0"):
        return False
    raise ValueError(f"expected yes or no, got {text!r}")


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "int", "memory", "bool", "str", "enum", "save"
    default: Any
    runtime: bool  # may CONFIG SET change it while running?
    help: str
    choices: tuple[str, ...] = ()
    minimum: int | None = None

    def parse(self, value: Any) -> Any:
        """Convert a TOML value or a string into this setting's type."""
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str):
                return _bool(value)
            raise ValueError("expected yes or no")
        if self.kind in ("int", "memory"):
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            if isinstance(value, int):
                result = value
            elif isinstance(value, str):
                result = parse_memory(value) if self.kind == "memory" else int(value)
            else:
                raise ValueError("expected an integer")
            if self.minimum is not None and result < self.minimum:
                raise ValueError(f"must be at least {self.minimum}")
            return result
        if not isinstance(value, str):
            raise ValueError("expected a string")
        if self.kind == "save":  # "<seconds> <changes>" pairs
            words = value.split()
            if len(words) % 2 or not all(w.isdigit() for w in words):
                raise ValueError("Invalid save parameters")
            return " ".join(words)
        if self.kind == "enum" and value.lower() not in self.choices:
            raise ValueError("expected one of " + ", ".join(self.choices))
        return value.lower() if self.kind == "enum" else value

    def show(self, value: Any) -> str:
        """The value as CONFIG GET prints it."""
        if self.kind == "bool":
            return "yes" if value else "no"
        return str(value)


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("port", "int", 6379, False, "TCP port to listen on.", minimum=0),
        Setting("bind", "str", "127.0.0.1", False, "Addresses to listen on, separated by spaces."),
        Setting("shards", "int", 4, False, "Number of worker processes, one shard each.", minimum=1),
        Setting("databases", "int", 16, False, "Number of databases (SELECT 0 to databases-1).", minimum=1),
        Setting("hz", "int", 10, True, "Active expiry cycles per second in each worker.", minimum=1),
        Setting(
            "loglevel",
            "enum",
            "notice",
            True,
            "Log verbosity.",
            choices=("debug", "verbose", "notice", "warning"),
        ),
        Setting("logfile", "str", "", False, "Log file; empty logs to standard error."),
        Setting("maxclients", "int", 10000, True, "Most clients connected at once.", minimum=1),
        Setting("timeout", "int", 0, True, "Close a client idle this many seconds; 0 never.", minimum=0),
        Setting("requirepass", "str", "", True, "Password clients must AUTH with; empty for none."),
        Setting("protected-mode", "bool", True, True, "Refuse non-loopback clients when no password is set."),
        Setting(
            "proto-max-bulk-len",
            "memory",
            512 * 1024**2,
            True,
            "Largest bulk string a client may send.",
            minimum=1024**2,
        ),
        Setting(
            "client-query-buffer-limit",
            "memory",
            1024**3,
            True,
            "Largest unparsed input held per client.",
            minimum=1024**2,
        ),
        Setting(
            "client-output-buffer-limit",
            "str",
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
            True,
            "Per class 'hard soft seconds': disconnect a subscriber whose unread output passes them.",
        ),
        Setting(
            "maxmemory",
            "memory",
            0,
            True,
            "Memory limit in bytes, split evenly over shards; 0 for none.",
            minimum=0,
        ),
        Setting(
            "maxmemory-policy",
            "enum",
            "noeviction",
            True,
            "What to do at the memory limit.",
            choices=(
                "noeviction",
                "allkeys-lru",
                "volatile-lru",
                "allkeys-random",
                "volatile-random",
                "volatile-ttl",
                "allkeys-lfu",
                "volatile-lfu",
            ),
        ),
        Setting("save", "save", "", True, "Snapshot rules, '<seconds> <changes>' pairs; empty for none."),
        Setting("appendonly", "bool", False, True, "Keep an append-only file per shard."),
        Setting(
            "appendfsync",
            "enum",
            "everysec",
            True,
            "When to fsync the AOF.",
            choices=("always", "everysec", "no"),
        ),
        Setting("dir", "str", ".", False, "Directory for snapshots and AOF files."),
        Setting("dbfilename", "str", "dump.rdb", False, "Snapshot file name; shard i uses NAME.shard-i."),
        Setting(
            "appendfilename", "str", "appendonly.aof", False, "AOF file name; shard i uses NAME.shard-i."
        ),
        Setting(
            "auto-aof-rewrite-percentage",
            "int",
            100,
            True,
            "Rewrite a shard's AOF once it has grown this many percent since its last rewrite; 0 never.",
            minimum=0,
        ),
        Setting(
            "auto-aof-rewrite-min-size",
            "memory",
            64 * 1024**2,
            True,
            "No automatic rewrite of a shard's AOF smaller than this.",
            minimum=0,
        ),
        Setting(
            "aof-load-truncated",
            "bool",
            True,
            True,
            "At start, cut off a torn last AOF record with a warning; no: refuse to start.",
        ),
        Setting(
            "rdb-key-save-delay",
            "int",
            0,
            True,
            "Microseconds to sleep per key in a background save or rewrite (for tests).",
            minimum=0,
        ),
        Setting(
            "hll-sparse-max-bytes",
            "memory",
            3000,
            True,
            "Largest sparse HyperLogLog, header included; a bigger one turns dense.",
            minimum=0,
        ),
        Setting(
            "busy-reply-threshold",
            "int",
            5000,
            True,
            "Milliseconds a Lua script runs before other clients get -BUSY (alias lua-time-limit).",
            minimum=0,
        ),
        Setting("uvloop", "bool", True, False, "Run the acceptor on uvloop when it is installed."),
        Setting(
            "enable-debug-command",
            "enum",
            "no",
            False,
            "Allow DEBUG: no, yes, or local (from loopback connections only).",
            choices=("no", "yes", "local"),
        ),
        Setting(
            "slowlog-log-slower-than",
            "int",
            10000,
            True,
            "Log commands that run at least this many microseconds; -1 logs none, 0 every one.",
            minimum=-1,
        ),
        Setting("slowlog-max-len", "int", 128, True, "Entries the slow log keeps.", minimum=0),
        Setting("latency-tracking", "bool", True, True, "Track per-command latency percentiles."),
        Setting(
            "latency-tracking-info-percentiles",
            "str",
            "50 99 99.9",
            True,
            "The percentiles INFO latencystats reports, separated by spaces.",
        ),
        Setting(
            "latency-monitor-threshold",
            "int",
            0,
            True,
            "Record latency events of at least this many milliseconds; 0 records none.",
            minimum=0,
        ),
    ]
}


# Old names Redis still accepts for a setting (CONFIG GET and SET).
ALIASES = {"lua-time-limit": "busy-reply-threshold"}


def defaults() -> dict[str, Any]:
    return {name: s.default for name, s in SETTINGS.items()}


def load_file(path: str) -> dict[str, Any]:
    """Read a TOML config file into typed settings."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    values = {}
    for key, value in raw.items():
        setting = SETTINGS.get(key)
        if setting is None:
            raise ConfigError(f"{path}: unknown setting '{key}'")
        try:
            values[key] = setting.parse(value)
        except ValueError as e:
            raise ConfigError(f"{path}: bad value for '{key}': {e}") from None
    return values


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py",
        description="shardkv: a Redis-compatible key-value server that runs one shard per process.",
    )
    parser.add_argument("--config", help="TOML config file (see configs/default.toml)")
    for s in SETTINGS.values():
        parser.add_argument("--" + s.name, dest=s.name, default=None, metavar=s.kind.upper(), help=s.help)
    return parser


def load(argv: list[str] | None = None) -> dict[str, Any]:
    """Defaults, then the config file, then flags."""
    args = argument_parser().parse_args(argv)
    values = defaults()
    if args.config:
        values.update(load_file(args.config))
    for name, setting in SETTINGS.items():
        flag = getattr(args, name)
        if flag is not None:
            try:
                values[name] = setting.parse(flag)
            except ValueError as e:
                raise ConfigError(f"bad value for --{name}: {e}") from None
    return values


Validator = Callable[[Any], None]


def shard_file(base: str, index: int) -> str:
    """The per-shard file name derived from ``dbfilename``/``appendfilename``."""
    return f"{base}.shard-{index}"


def config_dir(values: dict[str, Any]) -> str:
    return os.path.abspath(values["dir"])
