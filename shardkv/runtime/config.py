"""Settings: their names, types, defaults, and how they are read.

Every configuration parameter of Redis 7.0 exists here under its redis.conf
name (the table is :mod:`shardkv.runtime.config_params`), with Redis's default, its
aliases, and the validation and error texts of Redis's ``config.c``; a few
more are shardkv's own (``shards``, ``uvloop``).  Those that change nothing
in shardkv are accepted and reported all the same, and marked so
(``Setting.used``).

They are read from the TOML file given with ``--config``, then from
command-line flags (``--port 7000``), which win; both are checked as CONFIG
SET checks them.  An unknown key, a bad value or a missing file is a
:class:`ConfigError` with a one-line message; ``main.py`` prints it and exits
with status 2.  CONFIG GET reports the values in effect and CONFIG SET changes
the ones that are not immutable (:mod:`shardkv.acceptor.commands.config`); CONFIG REWRITE writes
them back to the file (:func:`rewrite_file`).

Values are held as Python values: ``bool`` for yes/no parameters, ``int``
for numbers (a percentage as its negative, as Redis stores it), and the text
CONFIG GET shows for the others.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shardkv.runtime.config_params import OBUF_DEFAULT, TABLE


class ConfigError(Exception):
    """A bad config file or flag; the message names the key or the file."""


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
_U64 = 2**64


def memtoull(text: str) -> int | None:
    """Redis's ``memtoull``: digits and an optional unit (``1k`` = 1000,
    ``1kb`` = 1024, m/mb, g/gb, any case); ``None`` when it is not one.  As
    in Redis, the digits may be missing (``""`` and ``"kb"`` are 0) and the
    result wraps at 2**64."""
    m = re.fullmatch(r"(\d*)(.*)", text, re.S)
    assert m is not None
    digits, unit = m.groups()
    if text.startswith("-") or unit.lower() not in _UNITS or len(digits) >= 128:
        return None
    value = min(int(digits or "0"), _U64 - 1)
    return (value * _UNITS[unit.lower()]) % _U64


def value_text(raw: bytes) -> str:
    """A value as a client sent it (CONFIG SET) -> the text held: UTF-8, and
    any other byte kept as a surrogate, as Python reads the command line and
    file names, so every byte comes back as it was sent: in CONFIG GET, as a
    password, in a file's name (:func:`value_bytes` is the inverse)."""
    return raw.decode("utf-8", "surrogateescape")


def value_bytes(text: str) -> bytes:
    """A value held as text -> the bytes a client sent (:func:`value_text`)."""
    return text.encode("utf-8", "surrogateescape")


def parse_memory(text: str) -> int:
    """Redis's memory notation: ``100``, ``1k`` (1000), ``1kb`` (1024), ``2gb``."""
    value = memtoull(text.strip())
    if value is None or not text.strip():
        raise ValueError(f"not a memory size: {text!r}")
    return value


def string2ll(text: str) -> int | None:
    """Redis's ``string2ll``: a plain decimal integer in the 64-bit range."""
    if not re.fullmatch(r"-?(0|[1-9][0-9]*)", text) or text == "-0":
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


def strtoll(text: str, base: int = 10) -> tuple[int, str]:
    """C's ``strtoll``: the number at the start of ``text`` (after blanks and a
    sign; 0 if none), clamped to 64 bits, and the rest of the text."""
    m = re.match(
        r"[ \t\n\v\f\r]*([+-]?)([0-9a-fA-F]+)" if base == 16 else r"[ \t\n\v\f\r]*([+-]?)(\d+)", text
    )
    digits = m and re.match(r"[0-7]+" if base == 8 else r"\d+", m.group(2))
    if not m or not digits:
        return 0, text
    value = int(digits.group(0), base) * (-1 if m.group(1) == "-" else 1)
    rest = text[m.start(2) + digits.end() :]
    return max(-(2**63), min(value, 2**63 - 1)), rest


def yes_no(text: str) -> bool:
    """Redis's ``yesnotoi``: ``yes`` or ``no`` in any case."""
    low = text.lower()
    if low == "yes":
        return True
    if low == "no":
        return False
    raise ValueError("argument must be 'yes' or 'no'")


# -- validators and parsers of the special parameters ----------------------------

_NOTIFY = {
    "g": 1 << 2, "$": 1 << 3, "l": 1 << 4, "s": 1 << 5, "h": 1 << 6, "z": 1 << 7,
    "x": 1 << 8, "e": 1 << 9, "t": 1 << 10, "d": 1 << 13, "n": 1 << 14,
    "K": 1 << 0, "E": 1 << 1, "m": 1 << 11,
}  # fmt: skip
_NOTIFY_ALL = (
    (1 << 2)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 9)
    | (1 << 10)
    | (1 << 13)
)


def notify_flags(text: str) -> int:
    """``notify-keyspace-events`` classes -> flags (Redis's notify.c)."""
    flags = 0
    for ch in text:
        if ch == "A":
            flags |= _NOTIFY_ALL
        elif ch in _NOTIFY:
            flags |= _NOTIFY[ch]
        else:
            raise ValueError("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
    return flags


def notify_text(flags: int) -> str:
    """Flags -> the canonical class string CONFIG GET shows."""
    out = ""
    if flags & _NOTIFY_ALL == _NOTIFY_ALL:
        out = "A"
    else:
        out = "".join(ch for ch in "g$lshzxetdn" if flags & _NOTIFY[ch])
    return out + "".join(ch for ch in "KEm" if flags & _NOTIFY[ch])


def _save(args: list[str], old: Any) -> str:
    if len(args) == 1 and args[0] == "":
        args = []
    if len(args) % 2:
        raise ValueError("Invalid save parameters")
    values = []
    for j, arg in enumerate(args):
        value, rest = strtoll(arg)
        if rest or (j % 2 == 0 and value < 1) or (j % 2 == 1 and value < 0):
            raise ValueError("Invalid save parameters")
        values.append(str(value))
    return " ".join(values)


_OBUF_CLASSES = {"normal": "normal", "slave": "slave", "replica": "slave", "pubsub": "pubsub"}
_OBUF_ORDER = ("normal", "slave", "pubsub")


def _obuf(args: list[str], old: Any) -> str:
    """``client-output-buffer-limit``: only the classes named change."""
    if len(args) % 4:
        raise ValueError("Wrong number of arguments in buffer limit configuration.")
    words = str(old if old is not None else OBUF_DEFAULT).split()
    limits = {words[i]: words[i + 1 : i + 4] for i in range(0, len(words), 4)}
    for j in range(0, len(args), 4):
        name = _OBUF_CLASSES.get(args[j].lower())
        if name is None:
            raise ValueError("Invalid client class specified in buffer limit configuration.")
        hard, soft = memtoull(args[j + 1]), memtoull(args[j + 2])
        seconds, rest = strtoll(args[j + 3])
        if hard is None or soft is None or seconds < 0 or rest:
            raise ValueError("Error in hard, soft or soft_seconds setting in buffer limit configuration.")
        limits[name] = [str(hard), str(soft), str(seconds % 2**32 if seconds >= 2**31 else seconds)]
    return " ".join(f"{c} {' '.join(limits[c])}" for c in _OBUF_ORDER)


def _oom_values(args: list[str], old: Any) -> str:
    if len(args) != 3:
        raise ValueError("wrong number of arguments")
    values = []
    for arg in args:
        value, rest = strtoll(arg)
        if rest or not -2000 <= value <= 2000:
            raise ValueError("Invalid oom-score-adj-values, elements must be between -2000 and 2000.")
        values.append(str(value))
    return " ".join(values)


class NotifyText(str):
    """``notify-keyspace-events`` as CONFIG GET shows it, with the flags it
    was set from: "KEAn" shows as "AKE", as in Redis, but keeps n."""

    flags = 0


def notify_value(text: str) -> int:
    """The flags of a ``notify-keyspace-events`` value (shown or set)."""
    flags = getattr(text, "flags", None)
    return flags if flags is not None else notify_flags(text)


def notify_letters(flags: int) -> str:
    """Flags -> a class string that parses back to exactly them (the shown
    one loses ``n`` next to ``A``, as Redis's does)."""
    return "".join(ch for ch in _NOTIFY if flags & _NOTIFY[ch])


def to_wire(changes: dict[str, Any]) -> dict[str, Any]:
    """CONFIG SET's changes as JSON carries them to the other processes:
    a :class:`NotifyText` as the letters of its flags (JSON keeps no flags)."""
    value = changes.get("notify-keyspace-events")
    if not isinstance(value, NotifyText):
        return changes
    return {**changes, "notify-keyspace-events": notify_letters(value.flags)}


def from_wire(changes: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`to_wire`: the shown text, with its flags."""
    value = changes.get("notify-keyspace-events")
    if not isinstance(value, str) or isinstance(value, NotifyText):
        return changes
    try:
        return {**changes, "notify-keyspace-events": _notify([value], None)}
    except ValueError:
        return changes


def _notify(args: list[str], old: Any) -> str:
    if len(args) != 1:
        raise ValueError("wrong number of arguments")
    flags = notify_flags(args[0])
    value = NotifyText(notify_text(flags))
    value.flags = flags
    return value


def _bind(args: list[str], old: Any) -> str:
    if len(args) > 16:
        raise ValueError("Too many bind addresses specified.")
    if len(args) == 1 and args[0] == "":
        args = []
    return " ".join(args)


def _replicaof(args: list[str], old: Any) -> str:
    if args == [""]:  # none (as the default): only a config file can say so
        return ""
    if len(args) != 2:
        raise ValueError("wrong number of arguments")
    if args[0].lower() == "no" and args[1].lower() == "one":
        return ""
    port, rest = strtoll(args[1])
    if rest or not 0 <= port <= 65535:
        raise ValueError("Invalid master port")
    return f"{args[0]} {port}"


def _percentiles(args: list[str], old: Any) -> str:
    if len(args) == 1 and args[0] == "":
        return ""
    out = []
    for arg in args:
        try:
            if not arg or arg[0].isspace() or arg.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                raise ValueError
            p = float(arg)
        except ValueError:
            raise ValueError("Invalid latency-tracking-info-percentiles parameters") from None
        if not 0.0 <= p <= 100.0 or math.isnan(p):
            raise ValueError("latency-tracking-info-percentiles parameters should sit between [0.0,100.0]")
        out.append(f"{p:f}".rstrip("0").rstrip("."))
    return " ".join(out)


def _dir(args: list[str], old: Any) -> str:
    if len(args) != 1:
        raise ValueError("wrong number of arguments")
    path = args[0]
    if not os.path.exists(path):
        raise ValueError("No such file or directory")
    if not os.path.isdir(path):
        raise ValueError("Not a directory")
    if not os.access(path, os.X_OK):
        raise ValueError("Permission denied")
    return path


SPECIAL: dict[str, Callable[[list[str], Any], str]] = {
    "save": _save,
    "client-output-buffer-limit": _obuf,
    "oom-score-adj-values": _oom_values,
    "notify-keyspace-events": _notify,
    "bind": _bind,
    "replicaof": _replicaof,
    "latency-tracking-info-percentiles": _percentiles,
    "dir": _dir,
}


def _basename(what: str, empty: bool = True, dirname: bool = False) -> Callable[[str], None]:
    def check(value: str) -> None:
        if not empty and value == "":
            raise ValueError(f"{what} can't be empty")
        if "/" in value or "\\" in value:
            raise ValueError(f"{what} can't be a path, just a {'dirname' if dirname else 'filename'}")

    return check


def _hostname(value: str) -> None:
    if len(value) >= 256:
        raise ValueError("Hostnames must be less than 256 characters")
    if not re.fullmatch(r"[A-Za-z0-9.-]*", value):
        raise ValueError("Hostnames may only contain alphanumeric characters, hyphens or dots")


_TITLE_VARS = {"title": "", "listen-addr": "*:0", "server-mode": "", "port": "0", "tls-port": "0"}
_TITLE_VARS.update({"unixsocket": "", "config-file": ""})


def _proc_title(value: str) -> None:
    """Redis's ``validateProcTitleTemplate``: known ``{variables}`` only, and
    not empty once expanded."""
    out, i = [], 0
    error = ValueError("template format is invalid or contains unknown variables")
    while i < len(value):
        ch = value[i]
        if ch == "{" and value[i + 1 : i + 2] == "{":
            out.append("{")
            i += 2
        elif ch == "}" and value[i + 1 : i + 2] == "}":
            out.append("}")
            i += 2
        elif ch == "{":
            end = value.find("}", i)
            if end < 0 or value[i + 1 : end] not in _TITLE_VARS:
                raise error
            out.append(_TITLE_VARS[value[i + 1 : end]])
            i = end + 1
        elif ch == "}":
            raise error
        else:
            out.append(ch)
            i += 1
    if not "".join(out).strip(" "):
        raise error


def _active_defrag(value: bool) -> None:
    if value:  # shardkv, like a Redis built without its own jemalloc, has no defragmenter
        raise ValueError(
            "Active defragmentation cannot be enabled: it requires a Redis server compiled with a "
            "modified Jemalloc like the one shipped by default with the Redis source distribution"
        )


CHECKS: dict[str, Callable[[Any], None]] = {
    "dbfilename": _basename("dbfilename"),
    "appendfilename": _basename("appendfilename", empty=False),
    "appenddirname": _basename("appenddirname", empty=False, dirname=True),
    "cluster-announce-hostname": _hostname,
    "proc-title-template": _proc_title,
    "activedefrag": _active_defrag,
}


# -- one setting -----------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One parameter.  ``kind`` is bool, int, memory, percent (memory or a
    percentage), octal, str, enum, flags (several words of an enum), or a
    special parameter's own name (save, bind, dir ...)."""

    name: str
    kind: str
    default: Any
    flags: frozenset[str] = frozenset()  # immutable, protected, hidden, sensitive, multi-arg
    low: int = 0
    high: int = 0
    unsigned: bool = False  # C type: bounds compared as unsigned, as Redis does
    choices: tuple[tuple[str, int], ...] = ()
    alias: str | None = None
    used: bool = False  # does shardkv act on it?
    help: str = ""
    auto: Callable[[], int] | None = None  # an int setting that also takes "auto": its value then
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def runtime(self) -> bool:
        """May CONFIG SET change it while running?"""
        return "immutable" not in self.flags

    @property
    def multi(self) -> bool:
        return "multi-arg" in self.flags

    def parse(self, value: Any, old: Any = None) -> Any:
        """A value from the config file or a flag (TOML value or text)."""
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, int):
            value = str(value)
        elif not isinstance(value, str):
            raise ValueError("expected a string, a number or a boolean")
        args = value.split() if self.multi else [value]
        if self.multi and not args:
            args = [""]
        return self.parse_args(args, old)

    def parse_set(self, text: str, old: Any) -> Any:
        """A CONFIG SET value: split on single spaces, as Redis does."""
        args = (text.split(" ") if text else []) if self.multi else [text]
        return self.parse_args(args, old)

    def parse_args(self, args: list[str], old: Any) -> Any:
        kind = self.kind
        if kind in SPECIAL:
            return SPECIAL[kind](args, old)
        text = args[0] if args else ""
        if kind == "bool":
            value: Any = yes_no(text)
        elif kind in ("int", "memory", "percent", "octal"):
            value = self._number(text)
        elif kind == "enum":
            value = self._enum([text] if args else [])
        elif kind == "flags":
            value = self._enum(args)
        else:
            value = text
        check = CHECKS.get(self.name)
        if check is not None:
            check(value)
        return value

    def _number(self, text: str) -> int:
        kind = self.kind
        value: int | None = None
        if kind in ("memory", "percent"):
            value = memtoull(text)
            if value is not None and value >= 2**63 and not self.unsigned:
                value -= _U64  # as C converts it to long long
        if value is None and kind == "percent" and len(text) > 1 and text.endswith("%"):
            n = string2ll(text[:-1])
            if n is not None and n >= 0:
                value = -n
        if kind == "octal":
            n, rest = strtoll(text, 8)
            if not rest:
                value = n
        if kind == "int":
            value = string2ll(text)
            if value is None and self.auto is not None and text.lower() == "auto":
                value = self.auto()
        if value is None:
            raise ValueError(
                {
                    "percent": "argument must be a memory or percent value",
                    "memory": "argument must be a memory value",
                    "octal": "argument couldn't be parsed as an octal number",
                }.get(kind, "argument couldn't be parsed into an integer")
            )
        if self.unsigned:
            if not self.low <= value % _U64 <= self.high:
                fmt = "%o" if kind == "octal" else "%d"
                raise ValueError(f"argument must be between {fmt % self.low} and {fmt % self.high} inclusive")
            return value % _U64
        if kind == "percent" and value < 0:
            if value < self.low:
                raise ValueError(f"percentage argument must be less or equal to {-self.low}")
        elif not self.low <= value <= self.high:
            raise ValueError(f"argument must be between {self.low} and {self.high} inclusive")
        return value

    def _enum(self, args: list[str]) -> str:
        values, ok = 0, bool(args) and (self.kind == "flags" or len(args) == 1)
        for arg in args if ok else []:
            matched = [v for name, v in self.choices if name == arg.lower()]
            if not matched:
                ok = False
                break
            values |= matched[0]
        if not ok:
            names = ", ".join(name for name, _ in self.choices)
            raise ValueError("argument(s) must be one of the following: " + names)
        if self.kind == "flags" and values & 1 and values & 2:
            raise ValueError("shutdown options SAVE and NOSAVE can't be used simultaneously")
        return self.enum_name(values)

    def enum_name(self, values: int) -> str:
        """Redis's ``configEnumGetName``: the first name with that value, or
        (for flags) the names of its bits."""
        names, unmatched = [], values
        for name, v in self.choices:
            if v == values:
                return name
            if self.kind == "flags" and v and v == unmatched & v:
                names.append(name)
                unmatched &= ~v
        return " ".join(names) if names and not unmatched else "unknown"

    def show(self, value: Any) -> str:
        """The value as CONFIG GET prints it."""
        if self.kind == "bool":
            return "yes" if value else "no"
        if self.kind == "percent" and value < 0:
            return f"{-value}%"
        if self.kind == "octal":
            return "%o" % value
        if self.kind == "dir":
            return os.path.abspath(value)
        return str(value)

    def rewrite(self, value: Any) -> Any:
        """The value as CONFIG REWRITE writes it into a TOML file."""
        if self.kind in ("int", "octal") or (self.kind == "percent" and value < 0):
            return value if self.kind == "int" else self.show(value)
        if self.kind in ("memory", "percent"):
            return format_memory(value)
        return self.show(value) if self.kind != "dir" else value


def format_memory(value: int) -> Any:
    """Bytes as Redis's CONFIG REWRITE writes them: ``1gb``, ``512mb``, ``3kb``."""
    for unit, size in (("gb", 1024**3), ("mb", 1024**2), ("kb", 1024)):
        if value and value % size == 0:
            return f"{value // size}{unit}"
    return value


# The table of every parameter lives in config_params, as the arguments of
# each Setting (config_params imports nothing from here: no import cycle).
SETTINGS: dict[str, Setting] = {
    row.name: Setting(row.name, row.kind, row.default, row.flags, **row.options) for row in TABLE
}
ALIASES: dict[str, str] = {s.alias: s.name for s in SETTINGS.values() if s.alias}

__all__ = [
    "ALIASES",
    "SETTINGS",
    "OBUF_DEFAULT",
    "ConfigError",
    "Setting",
    "lookup",
    "load",
    "load_file",
    "defaults",
]


def lookup(name: str) -> Setting | None:
    """The setting called ``name`` (any case), aliases included."""
    low = name.lower()
    return SETTINGS.get(ALIASES.get(low, low))


def defaults() -> dict[str, Any]:
    return {name: s.default for name, s in SETTINGS.items()}


def load_file(path: str) -> dict[str, Any]:
    """Read a TOML config file into typed settings."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, ValueError) as e:  # TOMLDecodeError, UnicodeDecodeError
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise ConfigError(f"cannot read config file {path}: nested too deeply") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        setting = lookup(key)
        if setting is None:
            raise ConfigError(f"{path}: unknown setting '{key}'")
        try:
            values[setting.name] = setting.parse(value, values.get(setting.name, setting.default))
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
        names = ["--" + s.name] + (["--" + s.alias] if s.alias else [])
        helptext = s.help if s.used else (s.help or "Accepted as in Redis; no effect in shardkv.")
        parser.add_argument(*names, dest=s.name, default=None, metavar=s.kind.upper(), help=helptext)
    return parser


def load(argv: list[str] | None = None) -> dict[str, Any]:
    """Defaults, then the config file, then flags (each checked as CONFIG SET
    checks it).  ``config-file`` holds the file's absolute path, or ``""``."""
    args = argument_parser().parse_args(argv)
    values = defaults()
    if args.config:
        values.update(load_file(args.config))
    for name, setting in SETTINGS.items():
        flag = getattr(args, name)
        if flag is not None:
            try:
                values[name] = setting.parse(flag, values[name])
            except ValueError as e:
                raise ConfigError(f"bad value for --{name}: {e}") from None
    values[CONFIG_FILE] = os.path.abspath(args.config) if args.config else ""
    if values["logfile"]:
        # As Redis's config.c: test now that the log file opens, rather
        # than fail later with no log to say why.
        try:
            with open(values["logfile"], "a"):
                pass
        except OSError as e:
            raise ConfigError(f"Can't open the log file: {e.strerror}") from None
    return values


CONFIG_FILE = "config-file"  # not a setting: where CONFIG REWRITE writes


def rewrite_file(path: str, values: dict[str, Any]) -> None:
    """CONFIG REWRITE: write the settings in effect back to the TOML file.

    A line of the file that sets a parameter gets its current value (the
    comments and the order stay); a parameter that differs from its default
    and has no line yet is appended at the end, under a comment.  The file
    is replaced atomically.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    seen: set[str] = set()
    key_line = re.compile(r'^\s*("?)([A-Za-z0-9_.\-]+)\1\s*=')
    out = []
    for line in lines:
        m = key_line.match(line)
        setting = lookup(m.group(2)) if m else None
        if setting is None or setting.name in seen or setting.name not in values:
            out.append(line)
            continue
        seen.add(setting.name)
        out.append(f"{setting.name} = {_toml(setting.rewrite(values[setting.name]))}")
    added = [
        f"{s.name} = {_toml(s.rewrite(values[s.name]))}"
        for s in SETTINGS.values()
        if s.name not in seen and s.name in values and values[s.name] != s.default
    ]
    if added:
        if "# Generated by CONFIG REWRITE" not in lines:
            out.append("# Generated by CONFIG REWRITE")
        out += added
    try:
        data = ("\n".join(out) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # A value set with bytes that are not UTF-8 (see value_text): TOML
        # cannot hold it, so the file stays as it is.
        raise OSError(errno.EILSEQ, "a value is not UTF-8, which a TOML file cannot hold") from None
    tmp = f"{path}.rewrite.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        except OSError:
            pass
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return '"yes"' if value else '"no"'
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def shard_file(base: str, index: int) -> str:
    """The per-shard file name derived from ``dbfilename``/``appendfilename``."""
    return f"{base}.shard-{index}"


def config_dir(values: dict[str, Any]) -> str:
    return os.path.abspath(values["dir"])
