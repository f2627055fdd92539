"""Scripts that escape: their first run, on one shard, reaches a key of
another shard (or needs every shard), so they run again across shards.
Seen from outside, each must have run once, as in Redis: a subscriber
gets each message it published once, MONITOR shows each call once, and
INFO commandstats counts each call once (the acceptor's commands too).
"""

from __future__ import annotations

import redis

from tests.compat.test_scripting_wide import COUNTED, same, servers  # noqa: F401  (the fixture)

ACCEPTORS = COUNTED | {"cmdstat_" + name for name in ("publish", "info", "pubsub|numsub", "keys", "swapdb")}


def test_publish_before_an_escape_is_delivered_once(servers):  # noqa: F811
    got = same(
        servers,
        "local n = redis.call('publish', 'ch', 'a')\n"
        "redis.call('set', KEYS[1], n)\n"
        "return {n, #redis.call('keys', '*')}",
        "k",
        counted=ACCEPTORS,
    )
    assert got["messages"] == [b"a"] and got["reply"] == [1, 1]


def test_a_script_that_escapes_twice_publishes_once(servers):  # noqa: F811
    got = same(
        servers,
        "redis.call('publish', 'ch', 'a')\n"
        "local n = #redis.call('keys', '*')\n"
        "redis.call('publish', 'ch', 'b')\n"
        "redis.call('info', 'server')\n"
        "redis.call('pubsub', 'numsub', 'ch')\n"
        "redis.call('swapdb', 0, 1)\n"
        "redis.call('swapdb', 0, 1)\n"
        "redis.call('publish', 'ch', 'c')\n"
        "return n",
        counted=ACCEPTORS,
    )
    assert got["messages"] == [b"a", b"b", b"c"]


def _errors_of(port: int, script: str) -> tuple:
    c = redis.Redis(port=port, protocol=2)
    c.flushall()
    c.config_resetstat()
    reply = c.eval(script, 0)
    rows = c.info("commandstats")
    row = rows.get("cmdstat_slowlog|get", {})
    figures = (
        reply,
        c.info("errorstats"),
        {k: row.get(k, 0) for k in ("calls", "rejected_calls", "failed_calls")},
        rows["cmdstat_keys"]["calls"],
    )
    c.close()
    return figures


def test_an_error_of_the_acceptors_command_before_an_escape_counts_once(servers):  # noqa: F811
    script = (
        "local ok, e = pcall(redis.call, 'slowlog', 'get', 'x')\n"
        "return {tostring(ok), #redis.call('keys', '*')}"
    )
    real, ours = servers
    assert _errors_of(ours, script) == _errors_of(real, script)
