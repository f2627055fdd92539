"""shardkv.runtime.replyroom: the room a client-sized reply may take, read
from files laid out as the kernel lays out /proc and /sys/fs/cgroup (v1,
v2, hybrid, nested, in a container), odd ones included."""

from __future__ import annotations

import os
import tempfile

import pytest

from shardkv.runtime import replyroom

GIB = 1 << 30


@pytest.fixture
def fake(monkeypatch):
    """A directory standing for /proc and /sys/fs/cgroup: write(path, text)
    lays a file there; the module reads only from it.  Removed after."""
    with tempfile.TemporaryDirectory() as top:

        def write(path: str, text: str) -> None:
            full = os.path.join(top, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)

        monkeypatch.setattr(replyroom, "MEMINFO", os.path.join(top, "meminfo"))
        monkeypatch.setattr(replyroom, "SELF_CGROUP", os.path.join(top, "cgroup"))
        monkeypatch.setattr(replyroom, "CGROUP_ROOT", os.path.join(top, "sys"))
        write("meminfo", f"MemTotal: {64 * GIB // 1024} kB\nMemAvailable: {32 * GIB // 1024} kB\n")
        yield write


def test_a_cgroup_full_of_file_cache_still_has_room(fake):
    """Page cache counts in a cgroup's use (after an RDB or AOF written,
    say) but is given back on demand, as MemAvailable counts it: a cgroup
    of 8 GB that uses 7.9 GB, 7.5 GB of it cache, has room for 7.6 GB, not
    0.1 GB (a quarter of which is below 64 MB: every MGET past it refused)."""
    fake("cgroup", "0::/app\n")
    fake("sys/app/memory.max", f"{8 * GIB}\n")
    fake("sys/app/memory.current", f"{8 * GIB - GIB // 10}\n")
    fake(
        "sys/app/memory.stat",
        f"anon {GIB // 2}\nfile {GIB * 15 // 2}\nactive_file {GIB}\ninactive_file {GIB * 13 // 2}\n",
    )
    assert replyroom._cgroup_room() == 8 * GIB - (8 * GIB - GIB // 10 - GIB * 15 // 2)
    assert replyroom.room() == replyroom._cgroup_room() // 4
    fake("cgroup", "12:memory:/app\n")  # v1: the same, its totals named total_
    fake("sys/memory/app/memory.limit_in_bytes", f"{8 * GIB}\n")
    fake("sys/memory/app/memory.usage_in_bytes", f"{8 * GIB - GIB // 10}\n")
    fake("sys/memory/app/memory.stat", f"total_active_file {GIB}\ntotal_inactive_file {GIB * 13 // 2}\n")
    assert replyroom._cgroup_room() == 8 * GIB - (8 * GIB - GIB // 10 - GIB * 15 // 2)


def test_a_parents_limit_bounds_its_child(fake):
    """v2: a child cgroup with no limit of its own ("max") under a parent
    of 2 GB has 2 GB less the parent's use; v1 says it in
    hierarchical_memory_limit."""
    fake("cgroup", "0::/slice/app\n")
    fake("sys/slice/app/memory.max", "max\n")
    fake("sys/slice/app/memory.current", f"{GIB}\n")
    fake("sys/slice/memory.max", f"{2 * GIB}\n")
    fake("sys/slice/memory.current", f"{GIB // 2}\n")
    assert replyroom._cgroup_room() == 2 * GIB - GIB // 2
    fake("cgroup", "4:memory:/slice/app\n")
    fake("sys/memory/slice/app/memory.limit_in_bytes", "9223372036854771712\n")
    fake("sys/memory/slice/app/memory.usage_in_bytes", f"{GIB // 2}\n")
    fake("sys/memory/slice/app/memory.stat", f"hierarchical_memory_limit {2 * GIB}\ntotal_inactive_file 0\n")
    assert replyroom._cgroup_room() == 2 * GIB - GIB // 2


def test_a_containers_v1_cgroup_is_its_mounts_root(fake):
    """In a container, /proc/self/cgroup names the cgroup as the host sees
    it (/docker/<id>) while the mount shows it at its root."""
    fake("cgroup", "4:memory:/docker/abc\n0::/\n")
    fake("sys/memory/memory.limit_in_bytes", f"{4 * GIB}\n")
    fake("sys/memory/memory.usage_in_bytes", f"{GIB}\n")
    assert replyroom._cgroup_room() == 3 * GIB
    assert replyroom.room() == 3 * GIB // 4


@pytest.mark.parametrize(
    "cgroup",
    [
        "",
        "garbage\n",
        "4:memory\n",
        "0::/../..\n",
        "4:memory:/../x\n",
        "0::/\n",
        "4:memory:/gone\n",
        "9:name=systemd:/\n4:memory:/\n0::/\n",
    ],
)
def test_odd_or_missing_files_never_raise(fake, cgroup):
    """A line of no known form, a path outside the namespace, missing
    files, "max" and LONG_MAX rounded to a page: no limit, the machine's
    room, never an exception."""
    fake("cgroup", cgroup)
    fake("sys/memory.max", "max\n")
    fake("sys/memory/memory.limit_in_bytes", "9223372036854771712\n")
    fake("sys/memory/memory.stat", "hierarchical_memory_limit 9223372036854771712\nodd\n")
    assert replyroom._cgroup_room() is None
    assert replyroom.room() == 8 * GIB


def test_no_proc_at_all(fake, monkeypatch):
    """No /proc: sysinfo's free pages, and nothing raises."""
    monkeypatch.setattr(replyroom, "MEMINFO", "/nonexistent/meminfo")
    monkeypatch.setattr(replyroom, "SELF_CGROUP", "/nonexistent/cgroup")
    assert replyroom.room() >= replyroom.FREE


def test_this_machine():
    """What this machine reports: a room of at least FREE, read without error."""
    assert replyroom.room() >= replyroom.FREE


def test_pair_draws_past_the_room_are_the_handlers_error(monkeypatch):
    """HRANDFIELD -count WITHVALUES and ZRANDMEMBER -count WITHSCORES whose
    draws pass the room raise in the handler (counted in failed_calls and
    errorstats as the other refusals are), not only once encoded."""
    from shardkv.protocol.errors import CommandError
    from shardkv.worker.commands.hashes import hrandfield, hset
    from shardkv.worker.commands.zsets import zadd, zrandmember
    from shardkv.worker.keyspace import Keyspace

    ks = Keyspace()
    big = b"x" * 100_000
    hset(ks, [b"HSET", b"h", b"a", b"1", big, b"v"])
    zadd(ks, [b"ZADD", b"z", b"1", b"a", b"2", big])
    monkeypatch.setattr(replyroom, "room", lambda: 1 << 20)  # 70,000 draws of "a" fit, of big not
    for args in (
        [b"HRANDFIELD", b"h", b"-70000", b"WITHVALUES"],
        [b"ZRANDMEMBER", b"z", b"-70000", b"WITHSCORES"],
    ):
        handler = hrandfield if args[0] == b"HRANDFIELD" else zrandmember
        with pytest.raises(CommandError, match="value is out of range"):
            handler(ks, args)


def test_mget_and_hmget_refuse_only_what_repeats_multiply(monkeypatch):
    """MGET or HMGET of distinct keys or fields answers at most what the
    data holds (as LRANGE or HGETALL, never refused, as in Redis); one
    named twice or more past 16 multiplies its value and is measured."""
    from shardkv.protocol.errors import CommandError
    from shardkv.worker.commands.hashes import hmget, hset
    from shardkv.worker.commands.strings import mget, set_
    from shardkv.worker.keyspace import Keyspace

    ks = Keyspace()
    keys = [b"k%d" % i for i in range(20)]
    for key in keys:
        set_(ks, [b"SET", key, b"v" * 100])
    hset(ks, [b"HSET", b"h", *(x for key in keys for x in (key, b"v" * 100))])
    monkeypatch.setattr(replyroom, "FREE", 0)  # every reply measured...
    monkeypatch.setattr(replyroom, "room", lambda: 1000)  # ...against 1000 bytes
    assert mget(ks, [b"MGET", *keys]) == [b"v" * 100] * 20
    assert hmget(ks, [b"HMGET", b"h", *keys]) == [b"v" * 100] * 20
    assert mget(ks, [b"MGET", *[keys[0]] * 9]) == [b"v" * 100] * 9  # 16 or fewer: not measured
    for refused in ([b"MGET", *keys[:16], keys[0]], [b"HMGET", b"h", *keys[:16], keys[0]]):
        with pytest.raises(CommandError, match="value is out of range"):
            (mget if refused[0] == b"MGET" else hmget)(ks, refused)


def test_mget_across_shards_is_measured_whole(monkeypatch):
    """An MGET whose keys span shards is split into parts, each measured
    by its shard; the acceptor's merge measures the whole reply against
    the same room, so parts that each fit but together do not answer
    value is out of range; 16 keys or fewer, or all distinct, are not
    measured, as on one shard."""
    from shardkv.acceptor.fanout import merge_mget, split_by_shard
    from shardkv.protocol.resp import Error
    from shardkv.worker.commands.strings import mget, set_
    from shardkv.worker.keyspace import Keyspace

    shards = {b"a": Keyspace(), b"b": Keyspace()}  # key "a" on shard 0, "b" on shard 1
    for key, ks in shards.items():
        set_(ks, [b"SET", key, b"v" * 100])
    monkeypatch.setattr(replyroom, "FREE", 0)  # every reply measured...
    monkeypatch.setattr(replyroom, "room", lambda: 2000)  # ...against 2000 bytes

    def across(keys: list[bytes]) -> object:
        """The acceptor's split, each shard's handler, the acceptor's merge."""
        args = [b"MGET", *keys]
        parts, positions = split_by_shard(args, 1, 1, [0 if key == b"a" else 1 for key in keys])
        replies = [mget(shards[b"a" if shard == 0 else b"b"], [b"MGET", *parts[shard]]) for shard in parts]
        return merge_mget(keys, list(positions.values()))(replies)

    # 17 + 17 copies: each part (1,700 bytes) fits, the whole (3,400) does not.
    refused = across([b"a", b"b"] * 17)
    assert type(refused) is Error and refused.message == "ERR value is out of range"
    assert across([b"a", b"b"] * 9 + [b"b"]) == [b"v" * 100] * 19  # 1,900 bytes: fits
    assert across([b"a", b"b"] * 8) == [b"v" * 100] * 16  # 16 keys: not measured
    monkeypatch.setattr(replyroom, "room", lambda: 100)
    assert across([b"a", b"b", b"nope", *(b"x%d" % i for i in range(14))]) == [b"v" * 100] * 2 + [None] * 15


def test_mget_and_hmget_repeats_are_counted_among_their_keys_or_fields(monkeypatch):
    """A key named as the command is spelled, or a field named as its
    hash's key, is no repeat: the keys (or fields) are distinct and the
    reply is not measured, as the acceptor's merge of an MGET across
    shards counts repeats among the keys alone."""
    from shardkv.worker.commands.hashes import hmget, hset
    from shardkv.worker.commands.strings import mget, set_
    from shardkv.worker.keyspace import Keyspace

    ks = Keyspace()
    keys = [b"mget", b"hmget", *(b"k%d" % i for i in range(16))]  # 18 distinct names
    for key in keys:
        set_(ks, [b"SET", key, b"v" * 100])
    hset(ks, [b"HSET", b"h", *(x for key in keys for x in (key, b"v" * 100))])
    monkeypatch.setattr(replyroom, "FREE", 0)  # every reply measured...
    monkeypatch.setattr(replyroom, "room", lambda: 1000)  # ...against 1000 bytes
    assert mget(ks, [b"mget", *keys]) == [b"v" * 100] * 18
    assert hmget(ks, [b"hmget", b"h", *keys]) == [b"v" * 100] * 18
    assert hmget(ks, [b"HMGET", b"h", *keys, b"h"]) == [b"v" * 100] * 18 + [None]
