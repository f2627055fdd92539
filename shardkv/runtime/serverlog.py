"""The server's log, as Redis writes its own.

Every process of the server (the supervisor, each acceptor, each worker,
a re-sharding helper) writes its lines to one place: the file ``logfile``
names, appended to, or standard output when it is empty (as Redis logs
when ``logfile ""``).  Each line is in
Redis's format (``serverLogRaw``)::

    pid:role dd Mon yyyy hh:mm:ss.mmm <level> message

where ``role`` is ``M`` (every shardkv process serves as the master: it
has no replicas, and its processes are no forked children) and
``<level>`` is ``.`` debug, ``-`` verbose, ``*`` notice, ``#`` warning.
A line below ``loglevel`` is not written; CONFIG SET loglevel reaches
every acceptor and worker (:func:`on_config`, :func:`on_settings`) and the
supervisor (which hands it to the processes it restarts).
A script's ``redis.log`` lines are written here too, each at its level
(:data:`SCRIPT_LEVELS`), as Redis writes them.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

# Redis's LL_VERBOSE, between debug and notice (Python's INFO).
VERBOSE = 15
logging.addLevelName(VERBOSE, "VERBOSE")

# ``loglevel``'s values, as the lowest level written.
LEVELS = {
    "debug": logging.DEBUG,
    "verbose": VERBOSE,
    "notice": logging.INFO,
    "warning": logging.WARNING,
}

# redis.log's levels (redis.LOG_DEBUG, LOG_VERBOSE, LOG_NOTICE, LOG_WARNING: 0 to 3).
SCRIPT_LEVELS = (logging.DEBUG, VERBOSE, logging.INFO, logging.WARNING)

ROLE = "M"


def _mark(level: int) -> str:
    """The character Redis writes for a line's level."""
    if level >= logging.WARNING:
        return "#"
    if level >= logging.INFO:
        return "*"
    if level >= VERBOSE:
        return "-"
    return "."


class RedisFormatter(logging.Formatter):
    """A record as one line of Redis's log (a traceback follows it)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%d %b %Y %H:%M:%S", time.localtime(record.created))
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return "%d:%s %s.%03d %s %s" % (
            record.process if record.process is not None else os.getpid(),
            ROLE,
            stamp,
            int(record.msecs),
            _mark(record.levelno),
            text,
        )


def setup(cfg: dict[str, Any]) -> None:
    """Send this process's log where ``cfg`` says, in Redis's format, at its level."""
    handler: logging.Handler
    if cfg["logfile"]:
        handler = logging.FileHandler(cfg["logfile"], encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(RedisFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_level(cfg.get("loglevel", "notice"))


def set_level(name: str) -> None:
    """``loglevel`` is now ``name``."""
    logging.getLogger().setLevel(LEVELS.get(name, logging.INFO))


def on_config(server: object, changes: dict[str, Any]) -> None:
    """(an acceptor's CONFIG SET hook) loglevel changed."""
    if "loglevel" in changes:
        set_level(changes["loglevel"])


def on_settings(ks: Any) -> None:
    """(a worker's ``__config`` hook) loglevel, as the acceptor sent it."""
    name = ks.runtime.extra.get("loglevel")
    if name is not None:
        set_level(name)
