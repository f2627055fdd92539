"""Which writes wake a blocked XREAD or XREADGROUP, against both servers.

Redis 7.0 serves a stream's blocked clients when a write signals the key
ready (``signalKeyAsReady``): an XADD, an XGROUP DESTROY, a new key
(``dbAdd``: RENAME, COPY), not an XSETID, XDEL, XACK or XGROUP SETID.
Then ``serveClientsBlockedOnStreamKey`` answers a client blocked on a
group that is gone ``-NOGROUP``, and serves every other whose ID (its
group's last-delivered ID) the stream's last ID is past, the entries past
it there or not.  Each case runs on one shard's stream, then with a
stream of the other shard in the same read (the read across shards), on
shardkv with one acceptor and with two (the blocked client on acceptor 0,
the writer on acceptor 1).
"""

from __future__ import annotations

import pytest

from tests.support.placement import key_on
from tests.support.streamsteps import both

S, T = key_on(0, "sig", shards=2), key_on(1, "sig", shards=2)
# A stream on S's shard, another on T's.
NEAR, FAR = key_on(0, "near", shards=2), key_on(1, "far", shards=2)


KEYS = pytest.mark.parametrize("keys", [[S], [T, S]], ids=["one-shard", "cross-shard"])


def _group_read(keys: list[str], group: str = "g") -> list:
    return ["XREADGROUP", "GROUP", group, "c", "BLOCK", 0, "STREAMS", *keys, *[">"] * len(keys)]


def _streams(keys: list[str], *groups: str) -> list:
    """Entry 1-0 in each of ``keys``, and ``groups`` past it."""
    out: list = []
    for key in keys:
        out.append(["XADD", key, "1-0", "f", "1"])
        out.extend(["XGROUP", "CREATE", key, group, "$"] for group in groups)
    return out


def _others(keys: list[str]) -> list[str]:
    return [key for key in keys if key != S]


def _two_entries_then(*groups: str) -> list:
    """Entries 1-0 and 2-0 in S, and ``groups`` past them."""
    return [
        ["XADD", S, "1-0", "f", "1"],
        ["XADD", S, "2-0", "f", "2"],
        *(["XGROUP", "CREATE", S, group, "$"] for group in groups),
    ]


@KEYS
def test_xgroup_destroy_fails_the_reads_blocked_on_its_group(redis_and_shardkv_k12, keys):
    """Its XREADGROUP gets ``-NOGROUP`` (Redis's text), at once."""
    out = both(
        redis_and_shardkv_k12,
        _streams(keys, "g"),
        _group_read(keys),
        [["XGROUP", "DESTROY", S, "g"], "served"],
    )
    assert out[-1] == (
        "served",
        "error: NOGROUP the consumer group this client was blocked on no longer exists",
    )


@KEYS
def test_xgroup_destroy_of_another_group_serves_an_xread_an_xsetid_passed(redis_and_shardkv_k12, keys):
    """An XSETID that moves the stream's last ID past a blocked XREAD's
    serves it nothing; an XGROUP DESTROY of another group after it serves
    it an empty array for the stream; one of no group nothing."""
    read = ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(keys)]
    steps = [
        ["XSETID", S, "5-0"],
        ["XGROUP", "DESTROY", S, "none"],
        "blocked",
        ["XGROUP", "DESTROY", S, "other"],
        "served",
    ]
    out = both(redis_and_shardkv_k12, _streams(keys, "other"), read, steps)
    assert out[2:] == [("blocked", 1), ("XGROUP", 1), ("served", [[S.encode(), []]])]


@KEYS
def test_xgroup_destroy_serves_an_xread_past_an_entry_deleted_before_it_blocked(redis_and_shardkv_k12, keys):
    """The entries past a blocked XREAD's ID deleted before it blocked:
    an XGROUP DESTROY serves it an empty array, as Redis's last ID is past it."""
    setup = [*_streams(keys, "other"), ["XADD", S, "2-0", "f", "2"], ["XDEL", S, "2-0"]]
    read = ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(keys)]
    out = both(redis_and_shardkv_k12, setup, read, [["XGROUP", "DESTROY", S, "other"], "served"])
    assert out[-1] == ("served", [[S.encode(), []]])


@KEYS
def test_xgroup_setid_back_wakes_no_xreadgroup(redis_and_shardkv_k12, keys):
    """XGROUP SETID signals nothing: a blocked XREADGROUP of that group
    waits on; the next XADD serves it every entry past its group's
    last-delivered ID, the older ones too."""
    setup = [*_streams(_others(keys), "g"), *_two_entries_then("g")]
    steps = [["XGROUP", "SETID", S, "g", "0"], "blocked", ["XADD", S, "3-0", "f", "3"], "served"]
    out = both(redis_and_shardkv_k12, setup, _group_read(keys), steps)
    assert out[1] == ("blocked", 1)
    entries = [[b"1-0", [b"f", b"1"]], [b"2-0", [b"f", b"2"]], [b"3-0", [b"f", b"3"]]]
    assert out[-1] == ("served", [[S.encode(), entries]])


@KEYS
def test_xgroup_destroy_of_another_group_serves_an_xreadgroup_set_back(redis_and_shardkv_k12, keys):
    """A group set back (XGROUP SETID, which wakes nobody), then another
    group destroyed: its blocked XREADGROUP is served the older entries."""
    setup = [*_streams(_others(keys), "g"), *_two_entries_then("g", "other")]
    steps = [["XGROUP", "SETID", S, "g", "1-0"], "blocked", ["XGROUP", "DESTROY", S, "other"], "served"]
    out = both(redis_and_shardkv_k12, setup, _group_read(keys), steps)
    assert out[-1] == ("served", [[S.encode(), [[b"2-0", [b"f", b"2"]]]]])


@pytest.mark.parametrize("source", [NEAR, FAR], ids=["same-shard", "cross-shard"])
@pytest.mark.parametrize("how", ["RENAME", "COPY"])
def test_a_stream_renamed_or_copied_onto_a_blocked_key_serves_past_its_last_id(
    redis_and_shardkv_k12, source, how
):
    """A stream whose last ID an XSETID moved, renamed or copied onto the
    key a read blocks on: Redis's dbAdd signals the new key ready, its
    last ID past the read's, which gets an empty array."""
    setup = [["XADD", S, "1-0", "f", "1"], ["XADD", source, "1-0", "f", "1"], ["XSETID", source, "5-0"]]
    read = ["XREAD", "BLOCK", 0, "STREAMS", S, "3-0"]
    command = [how, source, S] + (["REPLACE"] if how == "COPY" else [])
    out = both(redis_and_shardkv_k12, setup, read, [command, "served"])
    assert out[-1] == ("served", [[S.encode(), []]])


@pytest.mark.parametrize("how", ["RENAME", "COPY"])
def test_a_stream_renamed_onto_a_key_of_a_cross_shard_read_serves_past_its_last_id(
    redis_and_shardkv_k12, how
):
    """The same, the read blocked on S and on T's stream."""
    setup = [["XADD", S, "1-0", "f", "1"], ["XADD", T, "1-0", "f", "1"], ["XADD", NEAR, "1-0", "f", "1"]]
    setup.append(["XSETID", NEAR, "5-0"])
    read = ["XREAD", "BLOCK", 0, "STREAMS", T, S, "3-0", "3-0"]
    command = [how, NEAR, S] + (["REPLACE"] if how == "COPY" else [])
    out = both(redis_and_shardkv_k12, setup, read, [command, "served"])
    assert out[-1] == ("served", [[S.encode(), []]])


@KEYS
def test_an_xadd_that_trims_its_own_entry_serves_an_empty_array(redis_and_shardkv_k12, keys):
    """XADD ... MAXLEN 0 signals the key, its entry trimmed at once: the
    stream's last ID is past the read's, which gets an empty array."""
    read = ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(keys)]
    out = both(
        redis_and_shardkv_k12, _streams(keys), read, [["XADD", S, "MAXLEN", "0", "2-0", "f", "2"], "served"]
    )
    assert out[-1] == ("served", [[S.encode(), []]])


def _in_db1(commands: list) -> list:
    return [["SELECT", "1"], *commands, ["SELECT", "0"]]


@KEYS
def test_swapdb_serves_an_xread_its_new_stream_last_id_passed(redis_and_shardkv_k12, keys):
    """SWAPDB signals every waited-on key of the swapped databases ready
    (``scanDatabaseForReadyKeys``): a stream swapped in whose last ID (an
    XSETID's) is past a blocked XREAD's serves it an empty array, though
    the entry it added is not."""
    others = _others(keys)
    setup = [
        *_streams(others),
        ["XADD", S, "9-0", "f", "9"],
        ["XDEL", S, "9-0"],
        *_in_db1([*_streams(others), ["XADD", S, "5-0", "f", "5"], ["XSETID", S, "10-0"]]),
    ]
    read = ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(others), "9-0"]
    out = both(redis_and_shardkv_k12, setup, read, [["SWAPDB", "0", "1"], "served"])
    assert out[-1] == ("served", [[S.encode(), []]])


@KEYS
def test_swapdb_serves_an_xreadgroup_whose_new_group_is_behind(redis_and_shardkv_k12, keys):
    """The stream swapped in holds the blocked XREADGROUP's group behind
    its last ID: it is served the entries past it."""
    others = _others(keys)
    setup = [
        *_streams(others, "g"),
        *_two_entries_then("g"),
        *_in_db1([*_streams(others, "g"), *_two_entries_then(), ["XGROUP", "CREATE", S, "g", "0"]]),
    ]
    out = both(redis_and_shardkv_k12, setup, _group_read(keys), [["SWAPDB", "0", "1"], "served"])
    assert out[-1] == ("served", [[S.encode(), [[b"1-0", [b"f", b"1"]], [b"2-0", [b"f", b"2"]]]]])


@KEYS
@pytest.mark.parametrize("how", ["MOVE", "COPY"])
def test_a_stream_moved_or_copied_from_another_db_serves_past_its_last_id(redis_and_shardkv_k12, keys, how):
    """MOVE and COPY ... DB add the key in the target database (dbAdd
    signals it ready there): a read blocked on it whose ID the stream's
    last ID is past gets an empty array."""
    others = _others(keys)
    setup = [*_streams(others), *_in_db1([["XADD", S, "5-0", "f", "5"], ["XSETID", S, "9-0"]])]
    read = ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(others), "6-0"]
    command = ["MOVE", S, "0"] if how == "MOVE" else ["COPY", S, S, "DB", "0"]
    out = both(redis_and_shardkv_k12, setup, read, [["SELECT", "1"], command, "served"])
    assert out[-1] == ("served", [[S.encode(), []]])


@KEYS
def test_xgroup_destroy_then_xsetid_in_a_transaction_serves_past_the_new_last_id(redis_and_shardkv_k12, keys):
    """Redis serves a signaled key after EXEC, on the state it left: an
    XSETID after the XGROUP DESTROY moves the last ID past the read's."""
    read = ["XREAD", "BLOCK", 0, "STREAMS", *keys, *["1-0"] * len(_others(keys)), "2-0"]
    steps = [["MULTI"], ["XGROUP", "DESTROY", S, "other"], ["XSETID", S, "5-0"], ["EXEC"], "served"]
    out = both(redis_and_shardkv_k12, [*_streams(_others(keys)), *_two_entries_then("other")], read, steps)
    assert out[-1] == ("served", [[S.encode(), []]])


def test_a_stream_renamed_from_a_key_of_the_same_read_serves_it(redis_and_shardkv_k12):
    """A read across shards, the writer on its acceptor too: RENAME of
    its other stream onto S (last ID moved by XSETID past S's read ID)
    serves it an empty array for S, as Redis's dbAdd signals S; the
    acceptor's try at once read no entry there and lost the signal."""
    setup = [*_streams([T]), ["XSETID", T, "5-0"], *_two_entries_then()]
    read = ["XREAD", "BLOCK", 0, "STREAMS", T, S, "1-0", "2-0"]
    out = both(redis_and_shardkv_k12, setup, read, [["RENAME", T, S], "served"])
    assert out[-1] == ("served", [[S.encode(), []]])
