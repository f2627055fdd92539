"""A blocked stream read whose stream goes away, against both servers.

Redis 7.0 signals a stream key ready when it is deleted or overwritten
(``dbGenericDelete``, ``dbOverwrite``: DEL, UNLINK, an expiry, a RENAME
away, a SET over it; ``scanDatabaseForDeletedStreams``: FLUSHDB, SWAPDB),
and ``handleClientsBlockedOnKeys`` then fails every XREADGROUP blocked on
a key that holds no stream (``unblockDeletedStreamReadgroupClients``:
``-UNBLOCKED the stream key no longer exists``), at once, expiry included
(``beforeSleep`` runs it).  An XREAD with no group waits on.  Each case
runs on one shard's stream, then with a stream of the other shard in the
same read (the read across shards), on shardkv with one acceptor and
with two (the blocked client on acceptor 0, the writer on acceptor 1).
"""

from __future__ import annotations

import pytest

from tests.support.placement import key_on
from tests.support.streamsteps import both

S, T = key_on(0, "gone", shards=2), key_on(1, "gone", shards=2)
# A key of S's shard, and one of T's, to rename S to.
NEAR, FAR = key_on(0, "away", shards=2), key_on(1, "away", shards=2)

UNBLOCKED = "error: UNBLOCKED the stream key no longer exists"


KEYS = pytest.mark.parametrize("keys", [[S], [T, S]], ids=["one-shard", "cross-shard"])


def _group_read(keys: list[str]) -> list:
    return ["XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", *keys, *[">"] * len(keys)]


def _plain_read(keys: list[str]) -> list:
    return ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(keys)]


def _streams(keys: list[str]) -> list:
    """Entry 1-0 in each of ``keys``, and group g past it."""
    out: list = []
    for key in keys:
        out.append(["XADD", key, "1-0", "f", "1"])
        out.append(["XGROUP", "CREATE", key, "g", "$"])
    return out


GONE = {
    "del": [["DEL", S]],
    "unlink": [["UNLINK", S]],
    "flushdb": [["FLUSHDB"]],
    "rename-same-shard": [["RENAME", S, NEAR]],
    "rename-cross-shard": [["RENAME", S, FAR]],
    "set": [["SET", S, "v"]],
    "expire": [["PEXPIRE", S, 1], ("gone", S)],
    "move": [["MOVE", S, "1"]],
    "swapdb": [["SWAPDB", "0", "1"]],
}


@KEYS
@pytest.mark.parametrize("how", list(GONE))
def test_a_blocked_xreadgroup_whose_stream_goes_is_unblocked(redis_and_shardkv_k12, keys, how):
    out = both(redis_and_shardkv_k12, _streams(keys), _group_read(keys), [*GONE[how], "served"])
    assert out[-1] == ("served", UNBLOCKED)


@KEYS
@pytest.mark.parametrize("how", list(GONE))
def test_a_blocked_xread_whose_stream_goes_waits_on(redis_and_shardkv_k12, keys, how):
    steps = [*GONE[how], "blocked", ["DEL", S], ["XADD", S, "3-0", "f", "3"], "served"]
    out = both(redis_and_shardkv_k12, _streams(keys), _plain_read(keys), steps)
    assert out[-1] == ("served", [[S.encode(), [[b"3-0", [b"f", b"3"]]]]])


@KEYS
def test_a_stream_deleted_and_added_again_in_a_transaction_fails_its_xreadgroup_nogroup(
    redis_and_shardkv_k12, keys
):
    """Served after EXEC, on the state it left: a stream without the
    read's group, ``-NOGROUP``."""
    steps = [["MULTI"], ["DEL", S], ["XADD", S, "2-0", "f", "2"], ["EXEC"], "served"]
    out = both(redis_and_shardkv_k12, _streams(keys), _group_read(keys), steps)
    assert out[-1] == (
        "served",
        "error: NOGROUP the consumer group this client was blocked on no longer exists",
    )


def _in_db1(commands: list) -> list:
    return [["SELECT", "1"], *commands, ["SELECT", "0"]]


def _others(keys: list[str]) -> list[str]:
    return [key for key in keys if key != S]


@KEYS
@pytest.mark.parametrize("group", [False, True], ids=["xread", "xreadgroup"])
@pytest.mark.parametrize("how", ["xdel", "xtrim", "del"])
def test_an_entry_added_and_removed_in_one_pipeline_is_served(
    request, redis_and_shardkv_k12, keys, group, how
):
    """Redis serves the blocked read right after the XADD, before the
    pipelined command that removes the entry again.  Still different (see
    README, "Blocking across shards"): a cross-shard XREAD whose writer is
    on another acceptor is tried once notified, after the removal."""
    if not group and len(keys) > 1 and redis_and_shardkv_k12[2] > 1:
        request.applymarker(
            pytest.mark.xfail(reason="a cross-shard XREAD's try runs after the writer's next command")
        )
    remove = {"xdel": ["XDEL", S, "2-0"], "xtrim": ["XTRIM", S, "MAXLEN", "0"], "del": ["DEL", S]}[how]
    read = _group_read(keys) if group else _plain_read(keys)
    steps = [("pipelined", ["XADD", S, "2-0", "f", "2"], remove), "served"]
    out = both(redis_and_shardkv_k12, _streams(keys), read, steps)
    assert out[-1] == ("served", [[S.encode(), [[b"2-0", [b"f", b"2"]]]]])


@pytest.mark.parametrize("source", [NEAR, FAR], ids=["same-shard", "cross-shard"])
def test_a_transaction_renaming_a_stream_onto_a_read_then_moving_its_last_id_serves_it(
    redis_and_shardkv_k12, source
):
    """Redis serves the key RENAME signaled after EXEC, on the state the
    transaction left: the XSETID's last ID is past the read's, an empty
    array."""
    setup = [["XADD", S, "1-0", "f", "1"], ["XADD", source, "1-0", "f", "1"]]
    read = ["XREAD", "BLOCK", 0, "STREAMS", S, "3-0"]
    steps = [["MULTI"], ["RENAME", source, S], ["XSETID", S, "5-0"], ["EXEC"], "served"]
    out = both(redis_and_shardkv_k12, setup, read, steps)
    assert out[-1] == ("served", [[S.encode(), []]])


@pytest.mark.parametrize("kind", ["string", "stream"])
def test_an_expired_key_only_a_blocked_pop_waits_on_is_not_served_first(redis_and_shardkv_k12, kind):
    """Redis's expiry signals a stream only while stream reads are
    blocked, and no other key: a BLPOP blocked on the expired key and on
    another, both then pushed in one MULTI (the first command finding the
    key expired, or the sweeper before it), is served from the key the
    MULTI pushed first, as its ready keys list it first."""
    near = key_on(0, "near", shards=2)
    made = (
        [["SET", S, "v", "PX", 30]]
        if kind == "string"
        else [["XADD", S, "1-0", "f", "1"], ["PEXPIRE", S, 30]]
    )
    steps = [
        *made,
        ("gone", S),
        ("pipelined", ["MULTI"], ["GET", S], ["LPUSH", near, "x"], ["LPUSH", S, "y"], ["EXEC"]),
        "served",
    ]
    out = both(redis_and_shardkv_k12, [], ["BLPOP", S, near, 0], steps)
    assert out[-1] == ("served", [near.encode(), b"x"])


_RENAME_THEN_FAIL = (
    "redis.call('RENAME', KEYS[1], KEYS[2]); redis.call('XSETID', KEYS[2], '5-0'); error('boom')"
)
FAILING = {
    # Run, an error among the replies: served after EXEC.
    "exec-error": [["MULTI"], ["RENAME", FAR, S], ["XSETID", S, "5-0"], ["INCR", S], ["EXEC"]],
    # A script that errs keeps the writes it made: served after it.
    "script-error": [["EVAL", _RENAME_THEN_FAIL, 2, FAR, S]],
    # Not run: still waits, and the next XADD serves it.
    "execabort": [["MULTI"], ["RENAME", FAR, S], ["XSETID", S, "5-0"], ["NOSUCH"], ["EXEC"], "blocked"],
    "watch-fail": [
        ["WATCH", S],
        ["XADD", S, "2-0", "f", "2"],
        ["MULTI"],
        ["RENAME", FAR, S],
        ["XSETID", S, "5-0"],
        ["EXEC"],
        "blocked",
    ],
}


@pytest.mark.parametrize("how", list(FAILING))
def test_a_cross_shard_rename_onto_a_read_in_an_operation_that_fails(redis_and_shardkv_k12, how):
    """The executor's end step (``signaled_at_end``) for an operation
    that errs half way or never runs: one that ran serves the read on the
    state it left, as Redis; one that did not leaves it waiting."""
    setup = [["XADD", S, "1-0", "f", "1"], ["XADD", FAR, "1-0", "f", "1"]]
    read = ["XREAD", "BLOCK", 0, "STREAMS", S, "3-0"]
    steps = [*FAILING[how], ["XADD", S, "6-0", "f", "6"], "served"]
    out = both(redis_and_shardkv_k12, setup, read, steps)
    ran = how in ("exec-error", "script-error")
    assert out[-1] == ("served", [[S.encode(), []]] if ran else [[S.encode(), [[b"6-0", [b"f", b"6"]]]]])
