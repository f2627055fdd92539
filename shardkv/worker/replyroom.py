"""How big a reply a client's count (or repeated arguments) may make a shard build.

Most replies are bounded by the data: LRANGE answers what the list holds.
SRANDMEMBER, HRANDFIELD and ZRANDMEMBER with a negative count are not: the
client chooses how many members to draw, repeats allowed, up to LONG_MAX
(LONG_MAX/2 WITHVALUES or WITHSCORES), so a request of a few bytes asks
for exabytes, or for terabytes when a few thousand draws pick a big
member.  Redis builds such a reply in its output buffer until the kernel
kills it.  A shard builds one only while it fits in :func:`room`, a
quarter of the memory the machine (or the process's cgroup) has
available when the reply is asked for, so that the worker and the
acceptor that relays the reply both fit; past it the command answers
Redis's ``-ERR value is out of range``, the error Redis gives a count
beyond its own range.  Replies up to :data:`FREE` never ask.

The same holds where the arguments multiply the data: SORT's GET
patterns (each read for every element), and MGET or HMGET naming one big
key or field many times.
"""

from __future__ import annotations

import os

from shardkv.protocol import errors
from shardkv.protocol.errors import CommandError

FREE = 1 << 26  # a reply this big is built without asking how much memory is left
# MGET and HMGET of up to this many keys or fields are not measured: even
# all the same, they answer at most this many times the biggest value.
REPEATS_FREE = 16
UNLIMITED = 1 << 62  # a cgroup's "max" (v2) or its page-rounded LONG_MAX (v1) is above this


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """What the process's memory cgroup still lets it take (v2 or v1),
    None when it sets no limit."""
    try:
        with open("/proc/self/cgroup", "rb") as f:
            lines = f.read().decode("latin-1").splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: memory.max, memory.current
            limit = _read_int(f"/sys/fs/cgroup{path}/memory.max")
            used = _read_int(f"/sys/fs/cgroup{path}/memory.current")
        elif "memory" in controllers.split(","):  # v1
            base = f"/sys/fs/cgroup/memory{path}"
            limit = _read_int(f"{base}/memory.limit_in_bytes")
            used = _read_int(f"{base}/memory.usage_in_bytes")
        else:
            continue
        if limit is not None and limit < UNLIMITED:
            return max(limit - (used or 0), 0)
    return None


def room() -> int:
    """The most bytes a drawn reply may take now: a quarter of what is
    available (read afresh: a few system calls, for big replies only)."""
    available = _meminfo_available()
    cgroup = _cgroup_room()
    if cgroup is not None:
        available = min(available, cgroup)
    return max(available // 4, FREE)


def check(size: int) -> None:
    """Refuse a reply of at least ``size`` bytes that does not fit."""
    if size > FREE and size > room():
        raise CommandError(errors.VALUE_OUT_OF_RANGE)
