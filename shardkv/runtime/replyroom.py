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
# all the same, they answer at most this many times the biggest value
# (nor are more that are all distinct: at most what the data holds).
REPEATS_FREE = 16
UNLIMITED = 1 << 62  # a cgroup's "max" (v2) or its page-rounded LONG_MAX (v1) is above this


# Where the kernel says what is left (tests point these elsewhere).
MEMINFO = "/proc/meminfo"
SELF_CGROUP = "/proc/self/cgroup"
CGROUP_ROOT = "/sys/fs/cgroup"


def _meminfo_available() -> int:
    try:
        with open(MEMINFO, "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # no /proc and no such sysconf: nothing known
        return UNLIMITED


def _read_int(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _read_stat(path: str) -> dict[bytes, int]:
    """A cgroup's memory.stat, its lines "name value"; empty if unread."""
    out: dict[bytes, int] = {}
    try:
        with open(path, "rb") as f:
            for line in f:
                name, _, value = line.partition(b" ")
                value = value.strip()
                if value.isdigit():
                    out[name] = int(value)
    except OSError:
        pass
    return out


def _left(limit: int | None, used: int | None, stat_path: str, prefix: bytes) -> int | None:
    """What a cgroup whose limit is ``limit`` still lets its processes
    take: the limit less what they use, less the file cache counted in
    that use (reclaimed as needed, as MemAvailable counts it: read from
    ``stat_path``); None if it sets no limit."""
    if limit is None or limit >= UNLIMITED:
        return None
    stat = _read_stat(stat_path)
    cache = stat.get(prefix + b"active_file", 0) + stat.get(prefix + b"inactive_file", 0)
    return max(limit - max((used or 0) - cache, 0), 0)


def _v2_room(path: str) -> int | None:
    """The least room of a v2 cgroup and of each cgroup above it (a
    parent's memory.max bounds its children's)."""
    least = None
    parts = [p for p in path.split("/") if p]
    if ".." in parts:  # a cgroup outside this namespace's view: not readable here
        return None
    for depth in range(len(parts), -1, -1):
        base = "/".join([CGROUP_ROOT, *parts[:depth]])
        left = _left(
            _read_int(f"{base}/memory.max"),
            _read_int(f"{base}/memory.current"),
            f"{base}/memory.stat",
            b"",
        )
        if left is not None and (least is None or left < least):
            least = left
    return least


def _v1_room(path: str) -> int | None:
    """A v1 memory cgroup's room: its hierarchical limit (its own or a
    parent's, the least) less its use.  In a container the hierarchy's
    mount is often the process's own cgroup, the path in
    /proc/self/cgroup naming it as the host sees it: then the mount's root."""
    base = f"{CGROUP_ROOT}/memory{path.rstrip('/')}"
    if ".." in path.split("/") or not os.path.isdir(base):
        base = f"{CGROUP_ROOT}/memory"
    stat = f"{base}/memory.stat"
    limit = _read_stat(stat).get(b"hierarchical_memory_limit") or _read_int(f"{base}/memory.limit_in_bytes")
    return _left(limit, _read_int(f"{base}/memory.usage_in_bytes"), stat, b"total_")


def _cgroup_room() -> int | None:
    """What the process's memory cgroup still lets it take (v2 or v1),
    None when it sets no limit (or none can be read)."""
    try:
        with open(SELF_CGROUP, "rb") as f:
            lines = f.read().decode("latin-1").splitlines()
    except OSError:
        return None
    least = None
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2 (in a hybrid set-up, without memory: nothing read)
            left = _v2_room(path)
        elif "memory" in controllers.split(","):  # v1
            left = _v1_room(path)
        else:
            continue
        if left is not None and (least is None or left < least):
            least = left
    return least


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
