"""ACL LOG's cost as it grows: with a large ``acllog-max-len`` every failed
AUTH adds an entry, and adding one must not cost the length of the log."""

import time

import pytest

from shardkv.acceptor.users import Users


@pytest.mark.slow
def test_adding_to_a_long_acl_log_costs_no_more_than_to_a_short_one():
    """400,000 entries of distinct users, as many failed AUTHs would add.
    The log was a list with the newest first, so each entry shifted all the
    others: 200,000 failed AUTHs took 47 s (redis-server: 1.7 s), the
    acceptor's loop busy all that time (400,000: 98 s).  The bound is
    six times what a deque took at load 17 on a 2-core machine (5 s)."""
    users = Users({"acllog-max-len": 10_000_000})
    n = 400_000
    start = time.monotonic()
    for i in range(n):
        users._add([1, "auth", "toplevel", b"AUTH", b"u%d" % i, time.time() * 1000, b""])
    assert time.monotonic() - start < 30
    assert len(users.log) == n
    assert users.log[0][4] == b"u%d" % (n - 1) and users.log[-1][4] == b"u0"  # newest first


def test_the_log_keeps_acllog_max_len_newest_entries_and_counts_like_ones():
    users = Users({"acllog-max-len": 3})
    for name in (b"a", b"b", b"c", b"d"):
        users._add([1, "auth", "toplevel", b"AUTH", name, time.time() * 1000, b""])
    assert [e[4] for e in users.log] == [b"d", b"c", b"b"]
    users._add([1, "auth", "toplevel", b"AUTH", b"b", time.time() * 1000, b""])
    assert [(e[4], e[0]) for e in users.log] == [(b"b", 2), (b"d", 1), (b"c", 1)]
