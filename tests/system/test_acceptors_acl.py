"""ACL users with several acceptors: every acceptor has the same users.

ACL SETUSER and DELUSER through one acceptor are applied by every
acceptor before the reply (the bus's ``acl`` question), so a client of the
other acceptor can AUTH as the new user at once, is limited by its new
rules at once, and is disconnected when its user is deleted; a restarted
acceptor asks the others for the users before it listens.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.support.acceptors import acceptor_pids, client_on, pair_on, serve
from tests.support.resp import encode_command

server = pytest.fixture(scope="module", name="server")(serve)


@pytest.fixture
def pair(server):
    """An admin connection on acceptor 0 and one on acceptor 1."""
    with pair_on(server.port) as both:
        yield both
    with client_on(server.port, 0) as c:
        names = [n for n in c.command("ACL", "USERS") if n.startswith(b"acltest")]
        if names:
            c.command("ACL", "DELUSER", *names)


def test_a_user_made_through_one_acceptor_exists_on_the_other(pair, server) -> None:
    a, b = pair
    assert a.call("ACL", "SETUSER", "acltest", "on", ">pw", "+get", "~k*") == b"+OK\r\n"
    # No wait: the reply came once every acceptor had the user.
    assert b.call("ACL", "LIST") == a.call("ACL", "LIST")
    assert b.call("AUTH", "acltest", "pw") == b"+OK\r\n"
    assert b.call("GET", "k1") == b"$-1\r\n"
    assert b.call("SET", "k1", "v") == b"-NOPERM this user has no permissions to run the 'set' command\r\n"
    # New rules reach the other acceptor's connected client before the reply.
    assert a.call("ACL", "SETUSER", "acltest", "+set") == b"+OK\r\n"
    assert b.call("SET", "k1", "v") == b"+OK\r\n"
    assert a.call("ACL", "SETUSER", "acltest", "resetkeys", "~x*") == b"+OK\r\n"
    assert b.call("GET", "k1") == (
        b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
    )
    # A rule refused on one acceptor is refused there, and changes nothing anywhere.
    assert a.call("ACL", "SETUSER", "acltest", "+get", "+nosuch").startswith(b"-ERR Error in ACL SETUSER")
    with client_on(server.port, 1) as c:
        assert c.call("ACL", "GETUSER", "acltest") == a.call("ACL", "GETUSER", "acltest")


def test_deluser_closes_the_users_connections_on_every_acceptor(pair, server) -> None:
    a, b = pair
    a.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*")
    assert b.call("AUTH", "acltest", "pw") == b"+OK\r\n"
    assert a.call("ACL", "DELUSER", "acltest") == b":1\r\n"
    assert b.closed()
    with client_on(server.port, 1) as c:
        assert c.call("AUTH", "acltest", "pw").startswith(b"-WRONGPASS")
        assert c.call("ACL", "USERS") == b"*1\r\n$7\r\ndefault\r\n"


def test_revoking_a_channel_closes_its_subscribers_on_every_acceptor(pair) -> None:
    a, b = pair
    a.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*", "resetchannels", "&news*")
    assert b.call("AUTH", "acltest", "pw") == b"+OK\r\n"
    assert b.call("SUBSCRIBE", "news1") == b"*3\r\n$9\r\nsubscribe\r\n$5\r\nnews1\r\n:1\r\n"
    assert a.call("ACL", "SETUSER", "acltest", "resetchannels", "&sport*") == b"+OK\r\n"
    assert b.closed()


def test_a_scripts_calls_obey_the_user_whichever_acceptor_made_it(pair) -> None:
    a, b = pair
    a.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@scripting", "+set", "~x*")
    assert b.call("AUTH", "acltest", "pw") == b"+OK\r\n"
    assert b.call("EVAL", "return redis.acl_check_cmd('set', 'xx', 1)", "0") == b":1\r\n"
    assert b.call("EVAL", "return redis.acl_check_cmd('set', 'yy', 1)", "0") == b"$-1\r\n"
    assert b.call("EVAL", "return redis.pcall('set', 'yy', 1)", "0") == (
        b"-ERR The user executing the script can't access at least one of the keys mentioned in the "
        b"command arguments\r\n"
    )


@pytest.mark.slow
def _logged(conn) -> list[tuple[bytes, int]]:
    entries = [dict(zip(e[::2], e[1::2], strict=True)) for e in conn.command("ACL", "LOG")]
    return [(e[b"object"], e[b"count"]) for e in entries]


def test_acl_log_shows_a_scripts_refused_calls_through_every_acceptor(pair, server) -> None:
    """A script's refused calls are logged (context ``lua``) by the
    acceptor of the client that called it, as its worker reports them;
    the other acceptor's ACL LOG shows them too, as one redis-server's."""
    a, b = pair
    assert a.call("ACL", "LOG", "RESET") == b"+OK\r\n"
    a.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@scripting", "+set", "~x*")
    assert b.call("AUTH", "acltest", "pw") == b"+OK\r\n"
    b.command("EVAL", "redis.pcall('set', 'yy', 1) return redis.call('set', KEYS[1], 1)", "2", "x1", "x2")
    b.call("EVAL", "return redis.pcall('get', 'xx')", "0")
    with client_on(server.port, 0) as admin0:
        entries = [dict(zip(e[::2], e[1::2], strict=True)) for e in admin0.command("ACL", "LOG")]
    assert [(e[b"reason"], e[b"context"], e[b"object"], e[b"username"]) for e in entries] == [
        (b"command", b"lua", b"get", b"acltest"),
        (b"key", b"lua", b"yy", b"acltest"),
    ]
    assert all(b" cmd=eval user=acltest " in e[b"client-info"] for e in entries)


def test_acl_log_shows_every_acceptors_refusals_and_reset_clears_them_all(pair, server) -> None:
    a, b = pair
    assert a.call("ACL", "LOG", "RESET") == b"+OK\r\n"
    a.command("ACL", "SETUSER", "acltest", "on", "nopass", "+get", "~k*")
    assert b.call("AUTH", "acltest", "x") == b"+OK\r\n"
    assert a.call("AUTH", "acltest", "x") == b"+OK\r\n"
    assert b.call("SET", "k", "v").startswith(b"-NOPERM")
    assert a.call("GET", "x").startswith(b"-NOPERM")
    assert b.call("SET", "k", "v").startswith(b"-NOPERM")  # one more of b's first entry
    # Newest first, like entries counted, as one redis-server's log.
    expected = [(b"set", 2), (b"x", 1)]
    with client_on(server.port, 0) as admin0, client_on(server.port, 1) as admin1:
        assert _logged(admin0) == expected
        assert _logged(admin1) == expected
        assert admin1.call("ACL", "LOG", "RESET") == b"+OK\r\n"
        assert _logged(admin0) == []


def test_a_restarted_acceptor_knows_the_users(pair, server) -> None:
    a, _ = pair
    a.command("ACL", "SETUSER", "acltest", "on", ">pw", "+get", "%R~k*", "&ch*")
    a.command("ACL", "SETUSER", "acltest2", "off")
    listed = a.call("ACL", "LIST")
    pids = acceptor_pids(server)
    os.kill(pids[1], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while acceptor_pids(server).get(1, pids[1]) == pids[1]:
        assert time.monotonic() < deadline, "acceptor 1 was not restarted"
        time.sleep(0.05)
    for _ in range(100):  # it listens once it learnt the users
        try:
            fresh = client_on(server.port, 1)
            break
        except pytest.fail.Exception:
            time.sleep(0.1)
    else:
        pytest.fail("the restarted acceptor does not listen")
    with fresh:
        assert fresh.call("ACL", "LIST") == listed
        assert fresh.call("AUTH", "acltest", "pw") == b"+OK\r\n"
        assert fresh.call("SET", "k", "v").startswith(b"-NOPERM")


def test_concurrent_setusers_through_two_acceptors_end_alike_on_both(pair, server) -> None:
    """Two ACL SETUSERs of one user at once, one through each acceptor:
    every acceptor applies them in the same order (Redis has one order),
    so the user's rules are the same whichever acceptor shows them."""
    a, b = pair
    for _ in range(30):
        assert a.call("ACL", "SETUSER", "acltestrace", "reset", "on", "nopass", "~*") == b"+OK\r\n"
        a.send("ACL", "SETUSER", "acltestrace", "+get")
        b.send("ACL", "SETUSER", "acltestrace", "-get")
        assert (a.read(), b.read()) == (b"+OK\r\n", b"+OK\r\n")
        assert a.call("ACL", "GETUSER", "acltestrace") == b.call("ACL", "GETUSER", "acltestrace")


def test_concurrent_delusers_through_two_acceptors_delete_the_user_once(pair) -> None:
    """Two ACL DELUSERs of one user at once, one through each acceptor: one
    of them deleted it, as in Redis's one order."""
    a, b = pair
    for _ in range(10):
        assert a.call("ACL", "SETUSER", "acltestgone", "on") == b"+OK\r\n"
        a.send("ACL", "DELUSER", "acltestgone")
        b.send("ACL", "DELUSER", "acltestgone")
        assert sorted([a.read(), b.read()]) == [b":0\r\n", b":1\r\n"]


def test_config_set_requirepass_and_setuser_default_at_once_end_alike_on_both(pair) -> None:
    """CONFIG SET requirepass through one acceptor and ACL SETUSER default
    through the other at once: both change the default user, and every
    acceptor applies them in one order (Redis has one), so its passwords
    are the same whichever acceptor shows them.  Before, the CONFIG SET
    changed the user on its own acceptor at once and reached the other by
    another way than the bus, and the two could end differently."""
    a, b = pair
    try:
        for i in range(30):
            a.send("CONFIG", "SET", "requirepass", f"acltest-a{i}")
            b.send("ACL", "SETUSER", "default", "resetpass", f">acltest-b{i}")
            assert (a.read(), b.read()) == (b"+OK\r\n", b"+OK\r\n")
            assert a.call("ACL", "GETUSER", "default") == b.call("ACL", "GETUSER", "default"), i
    finally:
        assert a.call("CONFIG", "SET", "requirepass", "") == b"+OK\r\n"
        assert a.call("ACL", "SETUSER", "default", "nopass") == b"+OK\r\n"


def test_config_set_requirepass_applies_before_the_clients_next_command(pair, server) -> None:
    """The default user's new password holds for the CONFIG SET's client's
    next command (pipelined) and for the other acceptor's clients once it
    answered."""
    a, b = pair
    try:
        a.sock.sendall(
            encode_command("CONFIG", "SET", "requirepass", "acltest-pw")
            + encode_command("AUTH", "acltest-pw")
        )
        assert (a.read(), a.read()) == (b"+OK\r\n", b"+OK\r\n")
        assert b.call("AUTH", "acltest-pw") == b"+OK\r\n"
        assert b.call("AUTH", "other").startswith(b"-WRONGPASS")
    finally:
        assert a.call("CONFIG", "SET", "requirepass", "") == b"+OK\r\n"
    with client_on(server.port, 1) as c:  # no password any more
        assert c.call("GET", "x") == b"$-1\r\n"
