"""ACL SETUSER's cost with many rules of one kind: each rule must find what
the user already has at once, not by a walk over all of it."""

import time

import pytest

from shardkv.protocol import acl


@pytest.mark.slow
@pytest.mark.parametrize(
    "rule", [b"~k%d", b"%%R~r%d", b"&ch%d", b">p%d"], ids=["keys", "read-keys", "channels", "passwords"]
)
def test_many_rules_of_one_kind_cost_no_more_each_than_a_few(rule):
    """40,000 key patterns, channels or passwords.  Key patterns were a list
    walked in Python for each new one (20,000 took 22 s; an ACL SETUSER
    applies them more than once: 197 s for redis-server's 5.6 s, the
    acceptor's loop busy all along); channels and passwords a list searched
    for each too (7 s each for 20,000).  The bound is about 40 times what
    the dicts took at load 15 on a 2-core machine (0.1 s for 20,000)."""
    user = acl.User(b"big")
    n = 40_000
    start = time.monotonic()
    user.apply([b"reset", b"on", *(rule % i for i in range(n))])
    assert time.monotonic() - start < 10
    assert len(user.describe().split()) >= n


def test_repeated_rules_keep_their_first_place_and_merge():
    user = acl.User(b"u")
    user.apply([b"on", b"%R~a", b"~b", b"%W~a", b"&x", b"&y", b"&x", b">p1", b">p2", b">p1", b"<p2", b"+get"])
    assert user.describe() == ("on #" + acl.hash_password(b"p1") + " ~a ~b resetchannels &x &y -@all +get")
