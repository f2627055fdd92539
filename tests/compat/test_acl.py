"""ACL users: ACL SETUSER/GETUSER/LIST/DELUSER/DRYRUN..., AUTH and HELLO
AUTH as a user, and the NOPERM checks of every command, inside MULTI and
inside scripts, compared byte for byte with redis-server 7.0.

Users are the whole server's: each test creates users named ``acltest*``
and the fixture deletes them afterwards, on both servers.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from tests.support.resp import RespClient, encode_command

SERVERS = ("redis", "shardkv")
ACCEPTORS = int(os.environ.get("SHARDKV_TEST_ACCEPTORS", "1"))


@pytest.fixture
def acl_ports(ports):
    """Both servers' ports, flushed; the test's users deleted afterwards."""
    found = {name: ports[name] for name in SERVERS}
    for port in found.values():
        with RespClient(port) as c:
            c.command("FLUSHALL")
    yield found
    for port in found.values():
        with RespClient(port) as c:
            names = [n for n in c.command("ACL", "USERS") if n.startswith(b"acltest")]
            if names:
                c.command("ACL", "DELUSER", *names)


def run(port: int, script: list[tuple], protocol: int = 2) -> list[bytes]:
    """Run each command on one new connection; the exact bytes of each reply."""
    with RespClient(port, protocol=protocol) as c:
        return [c.call(*command) for command in script]


def same(ports: dict, script: list[tuple], protocol: int = 2) -> list[bytes]:
    theirs = run(ports["redis"], script, protocol)
    mine = run(ports["shardkv"], script, protocol)
    for command, t, m in zip(script, theirs, mine, strict=True):
        assert m == t, f"{command!r}: redis {t!r}, shardkv {m!r}"
    return theirs


# -- ACL SETUSER, GETUSER, LIST ----------------------------------------------------

RULE_SETS = [
    [],
    ["on"],
    ["reset"],
    ["on", "nopass", "~*", "&*", "+@all"],
    ["on", ">secret", ">other", "<other", "~k*", "+get"],
    ["on", "#" + "a" * 64, "!" + "a" * 64, "nopass", "resetpass"],
    ["+@all", "-get"],
    ["allcommands", "-@dangerous"],
    ["-@all", "+@hash"],
    ["+@read", "-@read"],
    ["+config|get"],
    ["+@all", "-client|kill"],
    ["+config", "-config|set"],
    ["+select|0", "+select|1"],
    ["%R~r*", "%W~w*", "%RW~rw*", "~x", "%R~x"],
    ["allkeys", "resetkeys", "~a", "~b"],
    ["&ch*", "&ch*", "resetchannels", "&news"],
    ["allchannels"],
    ["nocommands", "+set", "skip-sanitize-payload"],
    ["ON", "NOPASS", "ALLKEYS", "+GET", "+@HASH", "sanitize-payload"],
]


@pytest.mark.parametrize("rules", RULE_SETS, ids=lambda r: " ".join(r) or "nothing")
@pytest.mark.parametrize("protocol", [2, 3])
def test_setuser_then_getuser_and_list(acl_ports, rules, protocol):
    script = [
        ("ACL", "SETUSER", "acltest", *rules),
        ("ACL", "GETUSER", "acltest"),
        ("ACL", "SETUSER", "acltest", *rules),  # again, on the existing user
        ("ACL", "GETUSER", "acltest"),
    ]
    same(acl_ports, script, protocol)
    lists = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c:
            lists[name] = [line for line in c.command("ACL", "LIST") if line.startswith(b"user acltest ")]
    assert lists["shardkv"] == lists["redis"]


@pytest.mark.parametrize(
    "rules",
    [
        ["foo"],
        ["+nosuch"],
        ["+@nosuch"],
        ["-nosuch"],
        ["allkeys", "~x"],
        ["~*", "%R~x"],
        ["allchannels", "&x"],
        ["<nope"],
        ["!" + "b" * 64],
        ["#abc"],
        ["#" + "A" * 64],
        ["!xyz"],
        ["+get|"],
        ["+config|nosuch"],
        ["+config|get|x"],
        ["%X~a"],
        ["%~a"],
        ["%RR~a"],
        ["~a b"],
        ["(~x"],
        ["on", "(~x", "+get", "~y"],
        ["on", ">ok", "+bad"],  # nothing applied: the user is not created
    ],
    ids=lambda r: " ".join(r),
)
def test_setuser_errors(acl_ports, rules):
    same(
        acl_ports,
        [
            ("ACL", "SETUSER", "acltest", *rules),
            ("ACL", "GETUSER", "acltest"),
            ("ACL", "SETUSER", "acltest", "on", "+get"),
            ("ACL", "SETUSER", "acltest", *rules),  # an existing user is left as it was
            ("ACL", "GETUSER", "acltest"),
        ],
    )


def test_acl_subcommands(acl_ports):
    same(
        acl_ports,
        [
            ("ACL", "SETUSER", "acltest b"),
            ("ACL", "SETUSER", "acltest\0b"),
            ("ACL", "GETUSER", "acltest-nobody"),
            ("ACL", "DELUSER", "default"),
            ("ACL", "DELUSER", "acltest1", "default"),
            ("ACL", "SETUSER", "acltest1"),
            ("ACL", "SETUSER", "acltest2", "on"),
            ("ACL", "USERS"),
            ("ACL", "DELUSER", "acltest1", "acltest-nobody", "acltest2", "acltest1"),
            ("ACL", "USERS"),
            ("ACL", "WHOAMI"),
            ("ACL", "WHOAMI", "x"),
            ("ACL", "CAT"),
            ("ACL", "CAT", "nosuch"),
            ("ACL", "CAT", "read", "x"),
            ("ACL", "GENPASS", "0"),
            ("ACL", "GENPASS", "4097"),
            ("ACL", "GENPASS", "x"),
            ("ACL", "GENPASS", "-1"),
            ("ACL", "GENPASS", "8", "x"),
            ("ACL", "SETUSER", "acltest3", "%R", "%R~", "%W", "%WR~b", "%r~c", "%"),
            ("ACL", "SETUSER", "acltest3", "%R", "%R~", "%W", "%WR~b", "%r~c"),
            ("ACL", "GETUSER", "acltest3"),
            ("ACL", "LOAD"),
            ("ACL", "SAVE"),
            ("ACL", "HELP"),
            ("ACL", "NOSUCH"),
            ("ACL",),
            ("ACL", "GETUSER"),
            ("ACL", "SETUSER"),
            ("ACL", "DRYRUN", "default"),
        ],
    )


@pytest.mark.parametrize("bits", [None, "1", "4", "5", "8", "100", "256", "4096"])
def test_genpass_length(acl_ports, bits):
    lengths = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c:
            reply = c.command("ACL", "GENPASS", *([bits] if bits else []))
            assert all(ch in b"0123456789abcdef" for ch in reply)
            lengths[name] = len(reply)
    assert lengths["shardkv"] == lengths["redis"]


@pytest.mark.parametrize(
    "category",
    "keyspace read write set sortedset list hash string bitmap hyperloglog geo stream "
    "pubsub admin fast slow blocking dangerous connection transaction scripting".split(),
)
def test_cat_lists_the_commands_of_a_category(acl_ports, category):
    """The commands COMMAND INFO puts in the category, as Redis has them
    (of the commands shardkv has)."""
    with RespClient(acl_ports["shardkv"]) as c:
        mine = set(c.command("ACL", "CAT", category))
        have = {n.split(b"|")[0] for n in c.command("COMMAND", "LIST")}
    with RespClient(acl_ports["redis"]) as c:
        theirs = {n for n in c.command("ACL", "CAT", category) if n.split(b"|")[0] in have}
    newer = {b"client|setinfo", b"client|no-touch"}  # Redis 7.2's, which shardkv has
    assert mine - newer == theirs


# -- AUTH, HELLO AUTH, the user a client runs as ---------------------------------------


def test_auth_as_users(acl_ports):
    same(
        acl_ports,
        [
            ("ACL", "SETUSER", "acltest", "on", ">pw", ">pw2", "+@all", "~*"),
            ("ACL", "SETUSER", "acltest-off", "off", ">pw", "+@all"),
            ("ACL", "SETUSER", "acltest-nopass", "on", "nopass", "+acl|whoami"),
            ("AUTH", "acltest", "wrong"),
            ("AUTH", "acltest-nobody", "pw"),
            ("AUTH", "acltest-off", "pw"),
            ("ACL", "WHOAMI"),
            ("AUTH", "acltest", "pw2"),
            ("ACL", "WHOAMI"),
            ("AUTH", "acltest-nopass", "anything"),
            ("ACL", "WHOAMI"),
            ("GET", "x"),
            ("AUTH", "pw"),  # the default user has no password
            ("HELLO", "2", "AUTH", "acltest", "wrong"),
            ("HELLO", "2", "AUTH", "acltest-nobody", "pw"),
            ("AUTH", "acltest-nopass", "x"),
            ("RESET",),
            ("ACL", "WHOAMI"),
        ],
    )


def test_hello_auth_as_a_user(acl_ports):
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c:
            c.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*")
            assert c.call("HELLO", "3", "AUTH", "acltest", "pw").startswith(b"%7\r\n"), name
            assert c.call("ACL", "WHOAMI") == b"$7\r\nacltest\r\n", name


def test_client_list_shows_the_user(acl_ports):
    users = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c:
            c.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*")
            c.command("AUTH", "acltest", "pw")
            fields = dict(f.split(b"=", 1) for f in c.command("CLIENT", "INFO").split())
            users[name] = fields[b"user"]
            c.command("CLIENT", "KILL", "USER", "acltest", "SKIPME", "no")
            assert c.closed()
    assert users == {"redis": b"acltest", "shardkv": b"acltest"}


def test_client_kill_of_a_user(acl_ports):
    """CLIENT KILL USER counts and closes that user's connections alone.
    Of a user of the test's own: the servers are the session's, where the
    default user's connections of earlier tests may still be closing
    (their count made this test flaky)."""
    replies = {}
    for name in SERVERS:
        port = acl_ports[name]
        with (
            RespClient(port) as admin,
            RespClient(port) as v1,
            RespClient(port) as v2,
            RespClient(port) as me,
        ):
            admin.command("ACL", "SETUSER", "acltest-victim", "on", "nopass", "+@all", "~*")
            for c in (v1, v2, me):
                c.command("AUTH", "acltest-victim", "x")
            replies[name] = [
                me.call("CLIENT", "KILL", "USER", "acltest-nobody"),
                me.call("CLIENT", "KILL", "USER", "acltest-victim", "SKIPME", "yes"),
                me.call("CLIENT", "KILL", "USER", "acltest-victim", "SKIPME", "yes"),
                v1.closed(),
                v2.closed(),
                me.call("PING"),
            ]
    assert replies["shardkv"] == replies["redis"]
    assert replies["redis"][1:] == [b":2\r\n", b":0\r\n", True, True, b"+PONG\r\n"]


def test_deluser_closes_the_users_connections(acl_ports):
    for name in SERVERS:
        port = acl_ports[name]
        with RespClient(port) as admin, RespClient(port) as victim:
            admin.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*")
            victim.command("AUTH", "acltest", "pw")
            assert admin.call("ACL", "DELUSER", "acltest") == b":1\r\n"
            assert victim.closed(), name
            # a user deleting itself gets its reply, then the connection closes
            admin.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*")
            admin.command("AUTH", "acltest", "pw")
            assert admin.call("ACL", "DELUSER", "acltest") == b":1\r\n", name
            assert admin.closed(), name


def _until_closed(c: RespClient) -> bytes:
    """Every byte the server sends until it closes the connection."""
    data = c.buf
    while chunk := c.sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize(
    "queued",
    [
        [("SET", "k1", "1"), ("ACL", "DELUSER", "acltest"), ("SET", "k2", "2"), ("ACL", "WHOAMI")],
        [("ACL", "DELUSER", "acltest-other", "acltest"), ("GET", "k1")],
        [("ACL", "DELUSER", "acltest-other"), ("SET", "k1", "1")],
    ],
    ids=lambda q: " ".join(" ".join(c) for c in q),
)
def test_deluser_of_its_own_user_in_exec_closes_after_exec(acl_ports, queued):
    """A transaction that deletes its client's own user: Redis runs all of
    it but writes the EXEC reply only up to that ACL DELUSER's (the array
    keeps its length), then closes the connection; the commands pipelined
    after EXEC do not run.  Before, shardkv sent the whole reply and ran
    them, as the default user."""
    replies = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as admin, RespClient(acl_ports[name]) as c:
            admin.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*", "&*")
            admin.command("ACL", "SETUSER", "acltest-other", "on", ">pw", "+@all", "~*", "&*")
            out = [c.call("AUTH", "acltest", "pw"), c.call("MULTI")]
            out += [c.call(*command) for command in queued]
            c.sock.sendall(encode_command("EXEC") + encode_command("SET", "k3", "3") + encode_command("PING"))
            if ("ACL", "DELUSER", "acltest-other") == queued[0]:
                out += [c.read(), c.read(), c.read()]
            else:
                out.append(_until_closed(c))
            out += [admin.call("MGET", "k1", "k2", "k3"), admin.call("ACL", "USERS")]
            replies[name] = out
    assert replies["shardkv"] == replies["redis"]


@pytest.mark.parametrize("pipelined", [False, True])
def test_deluser_of_its_own_user_in_an_exec_that_watch_aborts_keeps_the_connection(acl_ports, pipelined):
    """An EXEC that a changed WATCHed key aborts runs nothing: its queued
    ACL DELUSER of the client's own user deleted nobody, so Redis answers
    the nil array and keeps the connection, and the commands after EXEC
    run; nor does ACL LOG show the AUTH queued in it.  shardkv closed it,
    having decided the DELUSER as EXEC started, and logged the AUTH."""
    replies = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as admin, RespClient(acl_ports[name]) as c:
            admin.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*", "&*")
            admin.command("ACL", "LOG", "RESET")
            out = [c.call("AUTH", "acltest", "pw"), c.call("WATCH", "k1"), c.call("MULTI")]
            out += [c.call("SET", "k2", "2"), c.call("AUTH", "acltest", "wrong")]
            out += [c.call("ACL", "DELUSER", "acltest"), c.call("SET", "k3", "3")]
            admin.command("SET", "k1", "changed")
            if pipelined:
                c.sock.sendall(
                    encode_command("EXEC")
                    + encode_command("SET", "k4", "4")
                    + encode_command("ACL", "WHOAMI")
                )
                out += [c.read(), c.read(), c.read()]
            else:
                out += [c.call("EXEC"), c.call("ACL", "WHOAMI"), c.call("SET", "k4", "4")]
            out += [admin.call("MGET", "k2", "k3", "k4"), admin.call("ACL", "USERS")]
            out += [_log_fields(admin.command("ACL", "LOG"))]  # nothing ran, nothing refused
            replies[name] = out
    assert replies["shardkv"] == replies["redis"]


def test_requirepass_is_the_default_users_password(acl_ports):
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c:
            c.command("CONFIG", "SET", "requirepass", "s3cret")
            try:
                user = c.command("ACL", "GETUSER", "default")
                assert user[1] == [b"on"], name  # no nopass
                assert user[3] == [hashlib.sha256(b"s3cret").hexdigest().encode()], name
                with RespClient(acl_ports[name]) as other:
                    assert other.call("GET", "x").startswith(b"-NOAUTH"), name
                    assert other.call("AUTH", "default", "s3cret") == b"+OK\r\n", name
                    assert other.call("AUTH", "s3cret") == b"+OK\r\n", name
            finally:
                c.command("CONFIG", "SET", "requirepass", "")
            assert c.command("ACL", "GETUSER", "default")[1] == [b"on", b"nopass"], name
    same(acl_ports, [("ACL", "LIST")])


def test_config_set_requirepass_to_its_value_keeps_the_default_users_passwords(acl_ports):
    """CONFIG SET of requirepass's own value changes nothing: a password
    ACL SETUSER gave the default user stays (a new value replaces them)."""
    pw = hashlib.sha256(b"pw").hexdigest().encode()
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c:
            c.command("ACL", "SETUSER", "default", "resetpass", ">pw")
            try:
                c.command("AUTH", "pw")
                assert c.call("CONFIG", "SET", "requirepass", "") == b"+OK\r\n", name
                assert c.command("ACL", "GETUSER", "default")[3] == [pw], name
                with RespClient(acl_ports[name]) as other:
                    assert other.call("PING").startswith(b"-NOAUTH"), name
            finally:
                c.command("ACL", "SETUSER", "default", "nopass")


REQUIREPASS_IN_EXEC = {
    "set": [
        ("MULTI",),
        ("CONFIG", "SET", "requirepass", "pw"),
        ("AUTH", "pw"),
        ("AUTH", "bad"),
        ("AUTH", "default", "pw"),
        ("EXEC",),
        ("AUTH", "pw"),
        ("AUTH", "nope"),
    ],
    "after setuser": [
        ("MULTI",),
        ("ACL", "SETUSER", "default", ">x"),
        ("CONFIG", "SET", "requirepass", "pw"),
        ("AUTH", "x"),
        ("AUTH", "pw"),
        ("EXEC",),
        ("AUTH", "x"),
        ("AUTH", "pw"),
    ],
    "cleared": [
        ("CONFIG", "SET", "requirepass", "pw"),
        ("MULTI",),
        ("CONFIG", "SET", "requirepass", "x", "maxmemory-samples", "5"),
        ("CONFIG", "SET", "requirepass", ""),
        ("AUTH", "pw"),
        ("AUTH", "default", "pw"),
        ("EXEC",),
        ("AUTH", "pw"),
    ],
}


@pytest.mark.parametrize("pipelined", [False, True], ids=["one-by-one", "pipelined"])
@pytest.mark.parametrize("script", list(REQUIREPASS_IN_EXEC), ids=str)
def test_an_auth_after_config_set_requirepass_inside_exec_sees_it(acl_ports, script, pipelined):
    """CONFIG SET requirepass inside EXEC changes the default user before
    the AUTHs after it, in the EXEC and pipelined after it, and ACL LOG
    holds their failures alone.  With several acceptors the change goes
    round the bus while the EXEC's later commands run: they follow it as
    they follow an ACL SETUSER there (shardkv's AUTH checked the old
    password, and EXEC's own check logged the right AUTH as failed)."""
    commands = REQUIREPASS_IN_EXEC[script]
    replies = {}
    for name in SERVERS:
        port = acl_ports[name]
        with RespClient(port) as c:
            c.command("ACL", "LOG", "RESET")
            if pipelined:
                c.sock.sendall(b"".join(encode_command(*command) for command in commands))
                replies[name] = [c.read() for _ in commands]
            else:
                replies[name] = [c.call(*command) for command in commands]
        with RespClient(port) as c:
            c.call("AUTH", "pw")
            c.command("CONFIG", "SET", "requirepass", "")
            c.command("ACL", "SETUSER", "default", "resetpass", "nopass")
        replies[name].append(_log_fields(_log_taken(port)))
    assert replies["shardkv"] == replies["redis"]


def _log_taken(port: int) -> list:
    """ACL LOG's entries, then none (ACL LOG RESET)."""
    with RespClient(port) as c:
        log = c.command("ACL", "LOG")
        c.command("ACL", "LOG", "RESET")
    return log  # type: ignore[return-value]


def test_a_client_waiting_to_auth_is_let_in_once_the_default_user_needs_no_password(acl_ports):
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c:
            c.command("ACL", "SETUSER", "default", "resetpass", ">pw")
            try:
                with RespClient(acl_ports[name]) as waiting:
                    assert waiting.call("PING").startswith(b"-NOAUTH"), name
                    c.command("AUTH", "pw")
                    c.command("ACL", "SETUSER", "default", "nopass")
                    assert waiting.call("PING") == b"+PONG\r\n", name
            finally:
                c.command("ACL", "SETUSER", "default", "nopass")


def _ping_reply(c: RespClient) -> bytes | None:
    """The reply to a PING on ``c``, or None if the server closed ``c``.
    Called once ACL SETUSER's +OK came: both servers close a revoked
    subscriber before they answer it, so the PING finds it closed, without
    a wait for a close that may not come."""
    try:
        return c.call("PING")
    except OSError:  # closed: EOF, or reset (the PING unread)
        return None


@pytest.mark.parametrize(
    "before, after",
    [
        (["allchannels"], ["resetchannels", "&b"]),
        (["resetchannels", "&a"], ["resetchannels", "&b"]),
        (["resetchannels", "&a"], ["&b"]),
        (["resetchannels", "&a*"], ["resetchannels", "&a"]),
        (["resetchannels", "&a*"], ["resetchannels", "&a*x"]),
        (["resetchannels", "&a"], ["allchannels"]),
        (["allchannels"], ["-get"]),
    ],
    ids=lambda r: " ".join(r),
)
@pytest.mark.parametrize("kind", ["SUBSCRIBE", "PSUBSCRIBE"])
def test_setuser_closes_subscribers_to_revoked_channels(acl_ports, before, after, kind):
    """Redis closes a user's Pub/Sub clients subscribed to a channel (or a
    pattern, compared literally) that the user's new rules do not allow."""
    kept = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as admin, RespClient(acl_ports[name]) as sub:
            admin.command("ACL", "SETUSER", "acltest", "on", "nopass", "+@all", "~*", *before)
            sub.command("AUTH", "acltest", "x")
            sub.send(kind, "a")
            sub.read()
            assert admin.call("ACL", "SETUSER", "acltest", *after) == b"+OK\r\n"
            kept[name] = _ping_reply(sub)
    assert kept["shardkv"] == kept["redis"]


# -- NOPERM ----------------------------------------------------------------------------

LIMITED = (
    "ACL",
    "SETUSER",
    "acltest",
    "on",
    ">pw",
    "+get",
    "+@hash",
    "+set",
    "+mget",
    "+mset",
    "+del",
    "+select|0",
    "+config|get",
    "+multi",
    "+exec",
    "+discard",
    "+publish",
    "+subscribe",
    "+psubscribe",
    "+acl|whoami",
    "+acl|dryrun",
    "~k*",
    "%R~r*",
    "%W~w*",
    "&ch*",
)


@pytest.mark.parametrize("protocol", [2, 3])
def test_noperm_errors(acl_ports, protocol):
    same(
        acl_ports,
        [
            LIMITED,
            ("AUTH", "acltest", "pw"),
            ("SET", "k1", "v"),
            ("GET", "k1"),
            ("GET", "x"),
            ("INCR", "k1"),
            ("HSET", "r1", "f", "v"),
            ("HGET", "r1", "f"),
            ("HSET", "w1", "f", "v"),
            ("HGET", "w1", "f"),
            ("MSET", "k1", "1", "k2", "2"),
            ("MSET", "k1", "1", "x", "2"),
            ("MGET", "k1", "r1", "x"),
            ("DEL", "k1", "w1"),
            ("DEL", "k1", "r1"),
            ("SELECT", "0"),
            ("SELECT", "1"),
            ("CONFIG", "GET", "maxmemory"),
            ("CONFIG", "SET", "maxmemory", "0"),
            ("CLIENT", "ID"),
            ("PUBLISH", "chat", "m"),
            ("PUBLISH", "x", "m"),
            ("ACL", "WHOAMI"),
            ("ACL", "USERS"),
            ("PING",),
            ("NOSUCH", "x"),
            ("GET",),
        ],
        protocol,
    )


def test_noperm_of_channels(acl_ports):
    same(
        acl_ports,
        [
            LIMITED,
            ("AUTH", "acltest", "pw"),
            ("SUBSCRIBE", "x"),
            ("SUBSCRIBE", "ch1", "x"),
            ("PSUBSCRIBE", "ch*x"),
            ("PSUBSCRIBE", "ch*"),
            ("PING",),
        ],
    )


# Read-only and write-only key patterns, for the permissions each key needs.
SPLIT_KEYS = ("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "%R~r*", "%W~w*", "&ch*")


@pytest.mark.parametrize(
    "command",
    [
        # setGetKeys: SET writes only (OW UPDATE), unless GET reads too
        ("SET", "w1", "v"),
        ("SET", "w1", "v", "EX", "10"),
        ("SET", "w1", "v", "get"),
        ("SET", "w1", "v", "EX", "10", "GET"),
        ("SET", "r1", "v"),
        ("SET", "r1", "v", "GET"),
        # bitfieldGetKeys: read-only while only GETs and OVERFLOWs
        ("BITFIELD", "r1", "GET", "u8", "0"),
        ("BITFIELD", "r1", "GET", "u8", "0", "OVERFLOW", "SAT", "get", "i4", "4"),
        ("BITFIELD", "r1"),
        ("BITFIELD", "r1", "GET", "u8"),
        ("BITFIELD", "r1", "SET", "u8", "0", "1"),
        ("BITFIELD", "w1", "SET", "u8", "0", "1"),
        ("BITFIELD", "w1", "INCRBY", "u8", "0", "1"),
        ("BITFIELD", "w1", "GET", "u8", "0"),
        ("BITFIELD_RO", "r1", "GET", "u8", "0"),
        ("ACL", "DRYRUN", "acltest", "SET", "w1", "v"),
        ("ACL", "DRYRUN", "acltest", "BITFIELD", "r1", "GET", "u8", "0"),
        # a STORE as the last argument is no keyword of the key spec
        ("GEORADIUS", "r1", "0", "0", "1", "m", "STORE"),
        ("GEORADIUS", "r1", "0", "0", "1", "m", "STORE", "w1"),
        ("GEORADIUS", "r1", "0", "0", "1", "m", "STORE", "r2"),
        # a numkeys string2ll refuses: evalGetKeys's atoi finds keys with no flags
        ("EVAL", "return 1", "+1", "r1"),
        ("EVAL", "return 1", "+1", "w1"),
        ("EVAL", "return 1", "+1", "x1"),
        ("EVAL", "return 1", "1", "r1"),
        ("EVAL", "return 1", "1x", "x1"),
        ("EVAL", "return 1", "01", "x1"),
        ("EVAL", "return 1", " 1", "w1"),
        ("EVAL", "return 1", "4294967297", "x1"),
        ("ZUNION", "2", "r1"),
        ("ZUNIONSTORE", "w1", "1x", "x1"),
        ("LMPOP", "01", "x1", "LEFT"),
        # subcommands: OBJECT and MEMORY USAGE name a key (RO), XINFO reads
        # one (RO ACCESS), XGROUP writes one (RW INSERT/DELETE/UPDATE)
        ("OBJECT", "ENCODING", "w1"),
        ("OBJECT", "FREQ", "w1"),
        ("OBJECT", "IDLETIME", "r1"),
        ("OBJECT", "REFCOUNT", "w1"),
        ("OBJECT", "ENCODING", "x1"),
        ("MEMORY", "USAGE", "w2"),  # (a missing key: the sizes differ)
        ("MEMORY", "USAGE", "x1"),
        ("XINFO", "STREAM", "r1"),
        ("XINFO", "GROUPS", "r1"),
        ("XINFO", "CONSUMERS", "r1", "g"),
        ("XINFO", "STREAM", "w1"),
        ("XGROUP", "CREATE", "w1", "g", "$", "MKSTREAM"),
        ("XGROUP", "CREATE", "r1", "g", "$", "MKSTREAM"),
        ("XGROUP", "CREATECONSUMER", "w1", "g", "c"),
        ("XGROUP", "DELCONSUMER", "w1", "g", "c"),
        ("XGROUP", "SETID", "w1", "g", "$"),
        ("XGROUP", "DESTROY", "w1", "g"),
        ("XGROUP", "DESTROY", "r1", "g"),
        ("ACL", "DRYRUN", "acltest", "OBJECT", "ENCODING", "w1"),
        ("ACL", "DRYRUN", "acltest", "XINFO", "STREAM", "w1"),
    ],
    ids=lambda c: " ".join(c),
)
def test_the_permissions_each_key_needs(acl_ports, command):
    """Redis takes a key's flags from the command's key specs, or from its
    own key finder where their flags vary with the arguments (SET's GET,
    BITFIELD's operations) or they cannot say where the keys are; a key
    with no ACCESS, INSERT, DELETE or UPDATE flag needs only a pattern
    that matches it."""
    setup = [("XADD", "w1", "1-1", "f", "v"), ("XGROUP", "CREATE", "w1", "g", "0")]
    same(acl_ports, [SPLIT_KEYS, *setup, ("AUTH", "acltest", "pw"), command, ("ACL", "LOG", "RESET")])


def test_the_permissions_each_key_needs_in_scripts(acl_ports):
    same(
        acl_ports,
        [
            SPLIT_KEYS,
            ("AUTH", "acltest", "pw"),
            ("EVAL", "return redis.pcall('set', 'w1', 'v')", "0"),
            ("EVAL", "return redis.pcall('set', 'w1', 'v', 'GET')", "0"),
            ("EVAL", "return redis.pcall('bitfield', 'r1', 'GET', 'u8', '0')", "0"),
            ("EVAL", "return redis.pcall('bitfield', 'r1', 'SET', 'u8', '0', '1')", "0"),
            ("EVAL", "return redis.pcall('object', 'encoding', 'w1')", "0"),
            ("EVAL", "return redis.pcall('xinfo', 'stream', 'w1')", "0"),
        ],
    )


@pytest.mark.parametrize("call", ["call", "pcall"])
def test_a_scripts_publish_to_a_refused_channel(acl_ports, call):
    """scriptVerifyACL's text for a channel (getAclErrorMessage) is about
    publishing, unlike the NOPERM of a client's own PUBLISH."""
    publish = f"redis.{call}('publish', 'x', 'm')"
    library = (
        f"#!lua name=acltestpub\nredis.register_function('acltest_pub', function() return {publish} end)"
    )
    try:
        same(
            acl_ports,
            [
                SPLIT_KEYS,
                ("FUNCTION", "LOAD", "REPLACE", library),
                ("AUTH", "acltest", "pw"),
                ("EVAL", f"return redis.{call}('publish', 'ch1', 'm')", "0"),
                ("EVAL", f"return {publish}", "0"),
                ("FCALL", "acltest_pub", "0"),
                ("PUBLISH", "x", "m"),
            ],
        )
    finally:
        for port in acl_ports.values():
            with RespClient(port) as c:
                c.call("FUNCTION", "DELETE", "acltestpub")


def test_noperm_inside_multi(acl_ports):
    same(
        acl_ports,
        [
            LIMITED,
            ("AUTH", "acltest", "pw"),
            ("MULTI",),
            ("SET", "k1", "v"),
            ("GET", "x"),
            ("INCR", "k1"),
            ("EXEC",),
            ("MULTI",),
            ("SET", "k1", "v"),
            ("GET", "k1"),
            ("EXEC",),
        ],
    )


@pytest.mark.parametrize("watch", [False, True])
def test_exec_checks_again_the_commands_it_queued(acl_ports, watch):
    """Rules changed between MULTI and EXEC: each command they now refuse
    gets an error in EXEC's reply, and does not run."""
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c:
            c.command("ACL", "SETUSER", "acltest", "on", "nopass", "+@all", "~*", "&*")
    script = [("AUTH", "acltest", "x")]
    script += [("WATCH", "k")] if watch else []
    script += [
        ("MULTI",),
        ("SET", "k", "v"),
        ("GET", "k"),
        ("SET", "z", "1"),
        ("PUBLISH", "ch", "m"),
        ("INCR", "n"),
    ]
    replies = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as c, RespClient(acl_ports[name]) as admin:
            out = [c.call(*command) for command in script]
            admin.command("ACL", "SETUSER", "acltest", "-set", "resetkeys", "~z", "~n", "resetchannels")
            out.append(c.call("EXEC"))
            out += [admin.call("MGET", "k", "z", "n")]
            out += [c.call("MULTI"), c.call("SET", "z", "2")]
            admin.command("ACL", "SETUSER", "acltest", "-set")
            out += [c.call("EXEC"), admin.call("GET", "z")]  # every command refused
            admin.command("ACL", "SETUSER", "acltest", "-@all")
            out += [c.call("MULTI"), c.call("EXEC")]
            replies[name] = out
    assert replies["shardkv"] == replies["redis"]


@pytest.mark.parametrize(
    "queued",
    [
        [("ACL", "SETUSER", "acltest", "-get"), ("GET", "k"), ("SET", "k", "v")],
        [("ACL", "SETUSER", "acltest", "resetkeys", "%R~k"), ("GET", "k"), ("SET", "k", "v")],
        [("ACL", "SETUSER", "acltest", "resetchannels"), ("PUBLISH", "ch", "m")],
        [("ACL", "SETUSER", "acltest", "bad-rule"), ("GET", "k")],
        [("ACL", "SETUSER", "acltest2", "-get"), ("GET", "k")],
        [
            ("AUTH", "acltest2", "pw2"),
            ("GET", "k"),
            ("SET", "k", "v"),
            ("AUTH", "acltest", "x"),
            ("GET", "k"),
        ],
        [("AUTH", "acltest2", "wrong"), ("GET", "k")],
        [("ACL", "SETUSER", "acltest2", "+get"), ("AUTH", "acltest2", "pw2"), ("GET", "k")],
        [("ACL", "DELUSER", "acltest2"), ("AUTH", "acltest2", "pw2"), ("GET", "k")],
        [("ACL", "DELUSER", "acltest2"), ("HELLO", "2", "AUTH", "acltest2", "pw2"), ("GET", "k")],
        [
            ("ACL", "SETUSER", "acltest2", ">pw3"),
            ("AUTH", "acltest2", "pw3"),
            ("GET", "k"),
            ("SET", "k", "v"),
        ],
        [("ACL", "SETUSER", "acltest2", "resetpass"), ("AUTH", "acltest2", "pw2"), ("GET", "k")],
        [("ACL", "SETUSER", "acltest2", "off"), ("AUTH", "acltest2", "pw2"), ("SET", "k", "v")],
        [
            ("ACL", "SETUSER", "acltest3", "on", ">pw3", "+@all", "-set", "~*"),
            ("AUTH", "acltest3", "pw3"),
            ("SET", "k", "v"),
            ("ACL", "WHOAMI"),
        ],
        [
            ("ACL", "DELUSER", "acltest2"),
            ("ACL", "SETUSER", "acltest2", "on", ">pw4", "+@all", "-get", "~*"),
            ("AUTH", "acltest2", "pw2"),
            ("AUTH", "acltest2", "pw4"),
            ("SET", "k", "v"),
            ("GET", "k"),
        ],
    ],
    ids=lambda q: " ".join(" ".join(c) for c in q),
)
def test_exec_checks_each_command_as_the_ones_before_it_left_the_users(acl_ports, queued):
    """Redis checks each command of a transaction just before it runs it:
    after the ACL SETUSER, DELUSER or AUTH queued before it."""
    replies = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as admin, RespClient(acl_ports[name]) as c:
            admin.command("ACL", "SETUSER", "acltest", "on", "nopass", "+@all", "~*", "&*")
            admin.command("ACL", "SETUSER", "acltest2", "on", ">pw2", "+@all", "-get", "-set", "~*", "&*")
            admin.command("ACL", "LOG", "RESET")
            out = [c.call("AUTH", "acltest", "x"), c.call("MULTI")]
            out += [c.call(*command) for command in queued]
            out.append(c.call("EXEC"))
            out += [c.call("ACL", "WHOAMI"), c.call("GET", "k"), admin.call("GET", "k")]
            out += [_log_fields(admin.command("ACL", "LOG"))]
            replies[name] = out
    assert replies["shardkv"] == replies["redis"]


@pytest.mark.parametrize(
    "queued",
    [
        [("ACL", "SETUSER", "acltest", "-set")],
        [("ACL", "SETUSER", "acltest2", "resetpass", ">pw3")],
        [("ACL", "DELUSER", "acltest2")],
    ],
    ids=lambda q: " ".join(" ".join(c) for c in q),
)
@pytest.mark.parametrize("watch", [False, True])
def test_commands_pipelined_after_an_exec_see_its_acl_changes(acl_ports, queued, watch):
    """The commands sent right behind an EXEC (without reading its reply)
    run after it, on the users it left (with WATCH, the EXEC is decided
    later, once its shards are parked)."""
    replies = {}
    for name in SERVERS:
        with RespClient(acl_ports[name]) as admin, RespClient(acl_ports[name]) as c:
            admin.command("ACL", "SETUSER", "acltest", "on", "nopass", "+@all", "~*", "&*")
            admin.command("ACL", "SETUSER", "acltest2", "on", ">pw2", "+@all", "~*", "&*")
            out = [c.call("AUTH", "acltest", "x")]
            out += [c.call("WATCH", "k")] if watch else []
            out += [c.call("MULTI")]
            out += [c.call(*command) for command in queued]
            after = [
                ("SET", "k", "v"),
                ("AUTH", "acltest2", "pw2"),
                ("AUTH", "acltest2", "pw3"),
                ("ACL", "WHOAMI"),
            ]
            c.sock.sendall(encode_command("EXEC") + b"".join(encode_command(*a) for a in after))
            out += [c.read() for _ in range(len(after) + 1)]
            replies[name] = out
    assert replies["shardkv"] == replies["redis"]


def _log_fields(log: list) -> list:
    """ACL LOG's entries but their age and client info."""
    entries = []
    for entry in log:
        fields = dict(zip(entry[::2], entry[1::2], strict=True))
        entries.append([fields[f] for f in (b"count", b"reason", b"context", b"object", b"username")])
    return entries


def test_dryrun(acl_ports):
    same(
        acl_ports,
        [
            LIMITED,
            ("ACL", "DRYRUN", "acltest", "set", "k", "v"),
            ("ACL", "DRYRUN", "acltest", "incr", "k"),
            ("ACL", "DRYRUN", "acltest", "get", "x"),
            ("ACL", "DRYRUN", "acltest", "mget", "k1", "r1", "w1"),
            ("ACL", "DRYRUN", "acltest", "config", "get", "x"),
            ("ACL", "DRYRUN", "acltest", "config", "set", "x", "y"),
            ("ACL", "DRYRUN", "acltest", "config", "nosuch"),
            ("ACL", "DRYRUN", "acltest", "config"),
            ("ACL", "DRYRUN", "acltest", "config", "get"),
            ("ACL", "DRYRUN", "acltest", "get"),
            ("ACL", "DRYRUN", "acltest", "nosuch"),
            ("ACL", "DRYRUN", "acltest", "publish", "x", "m"),
            ("ACL", "DRYRUN", "acltest", "publish", "chat", "m"),
            ("ACL", "DRYRUN", "acltest", "subscribe", "ch1", "x"),
            ("ACL", "DRYRUN", "acltest", "select", "0"),
            ("ACL", "DRYRUN", "acltest", "select", "1"),
            ("ACL", "DRYRUN", "acltest-nobody", "get", "x"),
            ("ACL", "DRYRUN", "default", "flushall"),
        ],
    )


def test_setuser_changes_a_connected_users_rights(acl_ports):
    same(
        acl_ports,
        [
            ("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~*"),
            ("AUTH", "acltest", "pw"),
            ("SET", "k", "v"),
            ("ACL", "SETUSER", "acltest", "-set"),
            ("SET", "k", "v"),
            ("GET", "k"),
            ("ACL", "SETUSER", "acltest", "resetkeys", "~a*"),
            ("GET", "k"),
            ("ACL", "SETUSER", "acltest", "+set", "allkeys"),
            ("SET", "k", "w"),
        ],
    )


# -- scripts ---------------------------------------------------------------------------

SCRIPTING = ("ACL", "SETUSER", "acltest", "on", ">pw", "+@scripting", "+set", "~x*", "&ch*")


@pytest.mark.parametrize(
    "command",
    [
        ("EVAL", "return redis.call('set', KEYS[1], 1)", "1", "xx"),
        ("EVAL", "return redis.call('set', 'xa', 1)", "0"),
        ("EVAL", "return redis.call('set', 'yy', 1)", "0"),
        ("EVAL", "return redis.call('get', 'xa')", "0"),
        ("EVAL", "return redis.pcall('get', 'xa')", "0"),
        ("EVAL", "return redis.pcall('set', 'yy', 1)", "0"),
        ("EVAL", "return redis.pcall('publish', 'ch1', 'm')", "0"),
        ("EVAL", "return redis.call('set', 'yy', 1)", "1", "yy"),
        ("EVAL", "return redis.acl_check_cmd('set', 'xx', 1)", "1", "xx"),
        ("EVAL", "return redis.acl_check_cmd('hset', 'xx', 'f', 1)", "1", "xx"),
        ("EVAL", "return redis.acl_check_cmd('set', 'yy', 1)", "0"),
        ("EVAL", "return redis.acl_check_cmd('invalid-cmd', 'arg')", "0"),
        ("EVAL", "return redis.acl_check_cmd('config', 'get', 'x')", "0"),
        ("EVAL", "local t = redis.pcall('get', 'xa') return t['err']", "0"),
        ("FCALL", "acltest_set", "1", "xf"),
        ("FCALL", "acltest_set", "1", "yf"),
        ("FCALL", "acltest_get_other", "0"),
    ],
    ids=lambda c: " ".join(c[1:]),
)
def test_scripts_obey_the_users_rules(acl_ports, command):
    library = (
        "#!lua name=acltestlib\n"
        "redis.register_function('acltest_set', function(keys) return redis.call('set', keys[1], 1) end)\n"
        "redis.register_function('acltest_get_other', function() return redis.call('get', 'yy') end)\n"
    )
    try:
        same(
            acl_ports,
            [SCRIPTING, ("FUNCTION", "LOAD", "REPLACE", library), ("AUTH", "acltest", "pw"), command],
        )
    finally:
        for port in acl_ports.values():
            with RespClient(port) as c:
                c.call("FUNCTION", "DELETE", "acltestlib")


def test_a_script_of_the_default_user_is_not_limited(acl_ports):
    same(
        acl_ports,
        [
            SCRIPTING,
            ("EVAL", "return redis.acl_check_cmd('hset', 'yy', 'f', 1)", "0"),
            ("EVAL", "return redis.call('set', 'yy', 1)", "0"),
        ],
    )


def test_a_script_read_the_default_user_made_before_is_still_checked(acl_ports):
    """A GET that a script of the default user ran first on the shard
    (shardkv then runs a script's single-key reads in one step) is still
    checked against the next script's user: its key and its command."""
    script = "return redis.call('get', 'yy{x}')"  # declared x{x}: the script runs where yy{x} is
    same(
        acl_ports,
        [
            SCRIPTING,
            ("SET", "yy{x}", "secret"),
            ("EVAL", script, "1", "x{x}"),
            ("AUTH", "acltest", "pw"),
            ("EVAL", script, "1", "x{x}"),
            ("EVAL", "return redis.call('get', KEYS[1])", "1", "x{x}"),
        ],
    )


def test_a_script_across_shards_obeys_the_users_rules(acl_ports):
    """Keys on several shards: the script runs again over all of them (see
    shardkv.acceptor.scripting), still as the client's user."""
    keys = ["x%d" % i for i in range(8)]
    calls = " ".join("redis.call('set', '%s', 1)" % k for k in keys)
    same(
        acl_ports,
        [
            SCRIPTING,
            ("AUTH", "acltest", "pw"),
            ("EVAL", calls + " return redis.call('set', 'yy', 1)", "0"),
            ("EVAL", calls + " return redis.pcall('set', 'yy', 1)", "0"),
            ("EVAL", calls + " return redis.acl_check_cmd('set', 'yy', 1)", "0"),
            ("EVAL", "return redis.call('get', 'yy')", "0"),
        ],
    )


def _log_entries(port: int, *count: str) -> list:
    """ACL LOG's entries, without their age, and of their client-info only
    the fields that do not depend on the connection."""
    with RespClient(port) as c:
        entries = c.command("ACL", "LOG", *count)
    out = []
    for entry in entries:
        fields = dict(zip(entry[::2], entry[1::2], strict=True))
        info = dict(f.split(b"=", 1) for f in fields.pop(b"client-info").split())
        fields.pop(b"age-seconds")
        out.append((fields, info[b"cmd"], info[b"user"], info[b"multi"]))
    return out


def test_acl_log(acl_ports):
    script = [
        ("ACL", "SETUSER", "acltest", "on", "nopass", "+get", "+multi", "+exec", "~k*", "&ch"),
        ("AUTH", "acltest", "x"),
        ("SET", "k", "v"),
        ("SET", "k", "v"),  # one more of the same entry
        ("GET", "x"),
        ("PUBLISH", "x", "m"),
        ("MULTI",),
        ("GET", "y"),
        ("EXEC",),
        ("AUTH", "acltest-nobody", "pw"),
        ("HELLO", "2", "AUTH", "acltest-nobody2", "pw"),
        ("GET", "k"),
    ]
    for port in acl_ports.values():
        with RespClient(port) as c:
            c.command("ACL", "LOG", "RESET")
    same(acl_ports, script)
    logged = _log_entries(acl_ports["redis"])
    assert [e[0][b"object"] for e in logged] == [b"HELLO", b"AUTH", b"y", b"publish", b"x", b"set"]
    assert _log_entries(acl_ports["shardkv"]) == logged
    assert _log_entries(acl_ports["shardkv"], "2") == _log_entries(acl_ports["redis"], "2")
    same(
        acl_ports,
        [
            ("ACL", "LOG", "0"),
            ("ACL", "LOG", "-1"),
            ("ACL", "LOG", "x"),
            ("ACL", "LOG", "1", "2"),
            ("ACL", "LOG", "RESET"),
            ("ACL", "LOG"),
        ],
    )
    assert len(_log_entries(acl_ports["redis"])) == 0


def test_acl_log_of_a_scripts_refused_calls(acl_ports):
    """A script's calls the user may not make are logged with the context
    ``lua`` (Redis's scriptVerifyACL), as the client that called it: its
    EVAL, EVALSHA or FCALL, or EXEC with the queued count inside EXEC.  A
    call refused before the script runs again across shards is logged
    once; redis.acl_check_cmd logs nothing."""
    library = (
        "#!lua name=acltestlib\n"
        "redis.register_function('acltest_other', function() return redis.pcall('get', 'yf') end)\n"
    )
    body = "return redis.pcall('set', 'ys', 1)"
    script = [
        (
            "ACL",
            "SETUSER",
            "acltest",
            "on",
            ">pw",
            "+@scripting",
            "+set",
            "+multi",
            "+exec",
            "+publish",
            "~x*",
            "&ch*",
        ),
        ("FUNCTION", "LOAD", "REPLACE", library),
        ("SCRIPT", "LOAD", body),
        ("AUTH", "acltest", "pw"),
        ("EVAL", "return redis.pcall('get', 'x')", "0"),
        ("EVAL", "return redis.pcall('publish', 'zz', 'm')", "0"),
        ("EVAL", "return redis.pcall('set', 'yy', 1)", "1", "xx"),
        ("EVAL", "return redis.pcall('set', 'yy', 1)", "1", "xx"),  # one more of the same entry
        ("EVALSHA", hashlib.sha1(body.encode()).hexdigest(), "0"),
        ("FCALL", "acltest_other", "0"),
        ("EVAL", "return redis.acl_check_cmd('set', 'yz', 1)", "0"),
        ("EVAL", "return redis.call('set', 'yc', 1)", "0"),
        # Refused, then run again across shards (keys on several).
        ("EVAL", "redis.pcall('set', 'y1', 1) for i = 1, 8 do redis.call('set', 'x' .. i, 1) end", "0"),
        ("EVAL", "redis.pcall('set', 'y2', 1) return redis.call('set', KEYS[1], 1)", "2", "x1", "x2"),
        ("MULTI",),
        ("EVAL", "return redis.pcall('set', 'ym', 1)", "0"),
        ("SET", "x", "1"),
        ("EXEC",),
    ]
    for port in acl_ports.values():
        with RespClient(port) as c:
            c.command("ACL", "LOG", "RESET")
    try:
        same(acl_ports, script)
        logged = _log_entries(acl_ports["redis"], "20")
        # (The FCALL's GET counts again in the EVAL's entry, now its own.)
        assert [e[0][b"object"] for e in logged] == [b"ym", b"y2", b"y1", b"yc", b"get", b"ys", b"yy", b"zz"]
        assert logged[4][1] == b"fcall" and logged[0][1:] == (b"exec", b"acltest", b"2")
        assert _log_entries(acl_ports["shardkv"], "20") == logged
    finally:
        for port in acl_ports.values():
            with RespClient(port) as c:
                c.call("FUNCTION", "DELETE", "acltestlib")
                c.call("ACL", "LOG", "RESET")


def _script_log_user(port: int) -> None:
    with RespClient(port) as c:
        c.command("ACL", "LOG", "RESET")
        c.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@scripting", "+client|setname", "+get", "~x*")


def test_acl_log_of_a_script_comes_before_the_refusals_pipelined_after_it(acl_ports):
    """Redis logs a script's refused calls as it runs them, so before a
    refused command the client pipelined after the script, and with the
    client info it had then: not the name a CLIENT SETNAME pipelined after
    the script gives it."""
    out = {}
    for name, port in acl_ports.items():
        _script_log_user(port)
        with RespClient(port) as c:
            assert c.call("AUTH", "acltest", "pw") == b"+OK\r\n"
            c.sock.sendall(  # one write: the server reads them all at once
                encode_command("EVAL", "return redis.pcall('get', 'ya')", "0")
                + encode_command("GET", "yb")
                + encode_command("CLIENT", "SETNAME", "later")
                + encode_command("GET", "yc")
            )
            replies = [c.read() for _ in range(4)]
        with RespClient(port) as c:
            entries = c.command("ACL", "LOG")
        log = []
        for entry in entries:
            fields = dict(zip(entry[::2], entry[1::2], strict=True))
            info = dict(f.split(b"=", 1) for f in fields[b"client-info"].split())
            log.append((fields[b"object"], fields[b"context"], info[b"name"], info[b"cmd"], info[b"flags"]))
        out[name] = (replies, log)
    assert out["redis"][1] == [
        (b"yc", b"toplevel", b"later", b"get", b"N"),
        (b"yb", b"toplevel", b"", b"get", b"N"),
        (b"ya", b"lua", b"", b"eval", b"N"),
    ]
    assert out["shardkv"] == out["redis"]


# (It runs long enough for its server to see the connection closed first.)
SLOW_REFUSAL = "redis.pcall('get', 'ya') for i = 1, 5000000 do end"


def test_acl_log_of_a_script_whose_client_disconnected(acl_ports):
    """The script's refused calls are logged though its client closed the
    connection before the script's reply (Redis logs them as it runs it),
    and so is the refused command it pipelined after the script."""
    out = {}
    for name, port in acl_ports.items():
        _script_log_user(port)
        with RespClient(port) as c:
            assert c.call("AUTH", "acltest", "pw") == b"+OK\r\n"
            c.sock.sendall(encode_command("EVAL", SLOW_REFUSAL, "0") + encode_command("GET", "yb"))
        with RespClient(port) as c:
            for _ in range(200):  # (until the server has read the closed client's commands)
                entries = c.command("ACL", "LOG")
                if len(entries) >= 2:
                    break
                time.sleep(0.05)
        out[name] = [dict(zip(e[::2], e[1::2], strict=True))[b"object"] for e in entries]
    assert out["redis"] == [b"yb", b"ya"]
    assert out["shardkv"] == out["redis"]


def test_acl_log_pipelined_after_a_script_shows_its_refusals(acl_ports):
    """An ACL LOG the client pipelined after a script shows the script's
    refused calls (and an ACL LOG RESET clears them), as in Redis, where
    the script ran before."""
    out = {}
    for name, port in acl_ports.items():
        _script_log_user(port)
        with RespClient(port) as c:
            c.command("ACL", "SETUSER", "acltest", "+acl")
            assert c.call("AUTH", "acltest", "pw") == b"+OK\r\n"
            c.sock.sendall(
                encode_command("EVAL", SLOW_REFUSAL, "0")
                + encode_command("GET", "yb")
                + encode_command("ACL", "LOG")
                + encode_command("EVAL", SLOW_REFUSAL, "0")
                + encode_command("ACL", "LOG", "RESET")
                + encode_command("GET", "yc")
            )
            replies = [c.read_reply() for _ in range(6)]
            seen = [dict(zip(e[::2], e[1::2], strict=True))[b"object"] for e in replies[2]]
            entries = c.command("ACL", "LOG")
        out[name] = (seen, replies[4], [dict(zip(e[::2], e[1::2], strict=True))[b"object"] for e in entries])
    assert out["redis"] == ([b"yb", b"ya"], b"OK", [b"yc"])
    assert out["shardkv"] == out["redis"]


def test_acl_log_after_a_script_refused_busy(acl_ports):
    """A limited user's script refused with -BUSY (another client's script
    runs past busy-reply-threshold) never runs: the client's later refused
    command is logged, and its ACL LOG answered, as in Redis (not held
    behind a script whose reply never comes)."""
    out = {}
    for name, port in acl_ports.items():
        with RespClient(port) as admin:
            admin.command("ACL", "LOG", "RESET")
            admin.command("ACL", "SETUSER", "acltest", "on", ">pw", "+@all", "~x*")
            admin.command("CONFIG", "SET", "busy-reply-threshold", 300)
            try:
                with RespClient(port) as spinner, RespClient(port, timeout=5) as c:
                    assert c.call("AUTH", "acltest", "pw") == b"+OK\r\n"
                    spinner.send("EVAL", "while true do end", "0")  # keyless: the same shard as c's
                    time.sleep(0.1)  # before the threshold: the script is sent, then refused
                    refused = c.call("EVAL", "return redis.pcall('get', 'ya')", "0")
                    nope = c.call("GET", "yb")
                    assert admin.call("SCRIPT", "KILL") == b"+OK\r\n"
                    spinner.read()
                    entries = c.command("ACL", "LOG")
            finally:
                admin.command("CONFIG", "SET", "busy-reply-threshold", 5000)
        out[name] = (refused, nope, [dict(zip(e[::2], e[1::2], strict=True))[b"object"] for e in entries])
    assert out["redis"][0].startswith(b"-BUSY")
    assert out["redis"][2] == [b"yb"]
    assert out["shardkv"] == out["redis"]


def test_acl_log_of_a_script_whose_reply_streams(acl_ports):
    """A script's refused calls are logged though its reply is big enough
    to come in pieces (over 4 MiB): before the refusal pipelined after it."""
    out = {}
    big = "redis.pcall('get', 'ya') return string.rep('x', 5000000)"
    for name, port in acl_ports.items():
        _script_log_user(port)
        with RespClient(port) as c:
            assert c.call("AUTH", "acltest", "pw") == b"+OK\r\n"
            c.sock.sendall(encode_command("EVAL", big, "0") + encode_command("GET", "yb"))
            reply = c.read()
            nope = c.read()
        with RespClient(port) as c:
            entries = c.command("ACL", "LOG")
        objects = [dict(zip(e[::2], e[1::2], strict=True))[b"object"] for e in entries]
        out[name] = (len(reply), nope, objects)
    assert out["redis"][2] == [b"yb", b"ya"]
    assert out["shardkv"] == out["redis"]


def test_acl_log_pipelined_after_a_script_in_the_protocol_it_was_sent_in(acl_ports):
    """An ACL LOG pipelined after a script (answered when the script is
    done) replies in the protocol of when it was sent: RESP2's flat array,
    though a HELLO 3 pipelined after it switched to RESP3 meanwhile."""
    out = {}
    for name, port in acl_ports.items():
        _script_log_user(port)
        with RespClient(port) as c:
            c.command("ACL", "SETUSER", "acltest", "+acl", "+hello")
            assert c.call("AUTH", "acltest", "pw") == b"+OK\r\n"
            c.sock.sendall(
                encode_command("EVAL", SLOW_REFUSAL, "0")
                + encode_command("ACL", "LOG", "1")
                + encode_command("HELLO", "3")
            )
            c.read()
            log = c.read()
            c.read()
        # (its shape, up to age-seconds, which differs)
        out[name] = log.split(b"age-seconds")[0]
    assert out["redis"].startswith(b"*1\r\n*14\r\n")
    assert out["shardkv"] == out["redis"]


SORT_SECRETS = [
    ("RPUSH", "klist", "2", "1"),
    ("SET", "secret_1", "topsecret1"),
    ("SET", "secret_2", "topsecret2"),
    ("SET", "kw_1", "5"),
    ("SET", "kw_2", "4"),
]


@pytest.mark.parametrize(
    "keys",
    [("~k*",), ("%W~*", "~k*"), ("%R~*",), ("~*",), ("allkeys",), ("%RW~*",)],
    ids=" ".join,
)
def test_sort_by_and_get_need_access_to_every_key(acl_ports, keys):
    """SORT's BY (with a ``*``) and GET patterns name keys the ACL check
    never sees: Redis refuses them, as it parses the options, to a user
    that may not read every key."""
    same(
        acl_ports,
        [
            *SORT_SECRETS,
            ("ACL", "SETUSER", "acltest", "on", "nopass", "+@all", *keys),
            ("ACL", "LOG", "RESET"),
            ("AUTH", "acltest", "x"),
            ("SORT", "klist", "GET", "secret_*"),
            ("SORT", "klist", "GET", "#"),
            ("SORT", "klist", "GET", "#", "GET", "secret_*"),
            ("SORT", "klist", "BY", "secret_*"),
            ("SORT", "klist", "BY", "kw_*"),
            ("SORT", "klist", "BY", "nosort"),
            ("SORT", "klist", "BY", "nosort", "DESC", "LIMIT", "0", "1"),
            ("SORT", "klist", "BY", "secret_*", "GET", "#"),
            ("SORT", "klist", "BY", "nosort", "GET", "secret_*"),
            ("SORT_RO", "klist", "GET", "secret_*"),
            ("SORT_RO", "klist", "BY", "secret_*"),
            ("SORT", "klist", "GET", "secret_*", "STORE", "kout"),
            ("SORT", "klist", "STORE", "kout", "GET", "#"),
            ("LRANGE", "kout", "0", "-1"),
            ("SORT_RO", "klist", "STORE", "kout", "GET", "#"),
            ("SORT", "klist", "LIMIT", "x", "1", "GET", "secret_*"),
            ("SORT", "klist", "GET", "secret_*", "LIMIT", "x", "1"),
            ("SORT", "klist", "NOSUCH", "GET", "secret_*"),
            ("SORT", "klist", "GET", "secret_*", "NOSUCH"),
            ("SORT", "klist", "GET"),
            ("SORT", "klist", "ALPHA", "DESC"),
            ("SET", "kstr", "v"),
            ("SORT", "kstr", "GET", "#"),
            ("SORT", "secret_1", "GET", "#"),
            ("EVAL", "return redis.call('sort', KEYS[1], 'get', 'secret_*')", "1", "klist"),
            ("EVAL", "return redis.pcall('sort_ro', KEYS[1], 'by', 'secret_*')", "1", "klist"),
            ("EVAL", "return redis.pcall('sort', KEYS[1], 'by', 'x', 'get', '#')", "1", "klist"),
            ("MULTI",),
            ("SORT", "klist", "GET", "secret_*"),
            ("SORT_RO", "klist", "BY", "secret_*", "GET", "#"),
            ("SORT", "klist", "BY", "nosort"),
            ("EXEC",),
        ],
    )
    # Run-time errors, not NOPERMs: ACL LOG holds only the keys refused
    # by name (the sorted or STORE key), never a pattern.
    logged = _log_entries(acl_ports["redis"])
    assert {e[0][b"object"] for e in logged} <= {b"klist", b"secret_1", b"kstr", b"kout"}
    assert _log_entries(acl_ports["shardkv"]) == logged


def test_sort_get_in_a_script_across_shards(acl_ports):
    """A script whose keys are on several shards runs again over all of
    them: its SORT is refused there the same way."""
    calls = " ".join("redis.call('set', 'k%d', 1)" % i for i in range(8))
    same(
        acl_ports,
        [
            *SORT_SECRETS,
            ("ACL", "SETUSER", "acltest", "on", "nopass", "+@all", "~k*"),
            ("AUTH", "acltest", "x"),
            ("EVAL", calls + " return redis.call('sort', 'klist', 'get', 'secret_*')", "0"),
            ("EVAL", calls + " return redis.pcall('sort', 'klist', 'by', 'secret_*')", "0"),
            ("EVAL", calls + " return redis.call('sort', 'klist', 'by', 'kw_*', 'get', '#')", "0"),
        ],
    )


# Client-info fields that depend on neither the connection nor memory.
_INFO_FIELDS = b"name flags db sub psub ssub multi cmd user redir resp".split()


def _log_with_info(port: int) -> list:
    """ACL LOG's entries but their age, with the client-info fields that
    depend on neither the connection nor memory; then none (RESET)."""
    out = []
    for entry in _log_taken(port):
        fields = dict(zip(entry[::2], entry[1::2], strict=True))
        info = dict(f.split(b"=", 1) for f in fields.pop(b"client-info").split())
        fields.pop(b"age-seconds")
        out.append((fields, [(k, info[k]) for k in _INFO_FIELDS]))
    return out


LOGGED_INSIDE_EXEC = {
    "script": [
        ("ACL", "SETUSER", "acltest", "on", ">pw", "~k*", "&ch*", "+@all"),
        ("AUTH", "acltest", "pw"),
        ("MULTI",),
        ("SET", "k1", "v"),
        ("EVAL", "return redis.pcall('get', 'zz')", "0"),
        ("EXEC",),
    ],
    "auth": [
        ("MULTI",),
        ("SET", "k2", "v"),
        ("AUTH", "acltest-nobody", "bad"),
        ("EXEC",),
    ],
    "command": [
        ("ACL", "SETUSER", "acltest", "on", ">pw", "~k*", "+@all"),
        ("AUTH", "acltest", "pw"),
        ("MULTI",),
        ("ACL", "SETUSER", "acltest", "resetkeys"),
        ("SET", "k3", "v"),
        ("EXEC",),
    ],
}


@pytest.mark.parametrize("script", list(LOGGED_INSIDE_EXEC), ids=str)
def test_acl_log_of_a_refusal_inside_exec_shows_the_client_in_multi(acl_ports, script):
    """A script's refused call and a failed AUTH inside EXEC are logged as
    Redis's client is then: flagged MULTI (``x``), its queued count, cmd
    exec."""
    replies = {}
    for name in SERVERS:
        port = acl_ports[name]
        _log_taken(port)
        replies[name] = run(port, LOGGED_INSIDE_EXEC[script])
        replies[name].append(_log_with_info(port))
    assert replies["redis"][-1], "redis logged nothing"
    assert replies["shardkv"] == replies["redis"]


FAILED_CONFIG_SET_IN_EXEC = {
    "bad-value": [
        ("MULTI",),
        ("CONFIG", "SET", "requirepass", "new", "maxmemory", "notanumber"),
        ("AUTH", "default", "wrong"),
        ("EXEC",),
        ("PING",),
    ],
    "twice": [
        ("MULTI",),
        ("CONFIG", "SET", "requirepass", "a", "requirepass", "b"),
        ("AUTH", "default", "wrong"),
        ("EXEC",),
        ("PING",),
    ],
    "unknown-parameter": [
        ("MULTI",),
        ("CONFIG", "SET", "requirepass", "a", "acltest-nosuch", "b"),
        ("AUTH", "default", "wrong"),
        ("EXEC",),
        ("PING",),
    ],
}


@pytest.mark.parametrize("script", list(FAILED_CONFIG_SET_IN_EXEC), ids=str)
def test_a_failed_config_set_requirepass_inside_exec_changes_no_password(acl_ports, script):
    """A CONFIG SET that fails changes no parameter, requirepass neither:
    the AUTH after it inside EXEC sees the default user as it was (nopass:
    any password passes, nothing is logged)."""
    replies = {}
    for name in SERVERS:
        port = acl_ports[name]
        _log_taken(port)
        replies[name] = run(port, FAILED_CONFIG_SET_IN_EXEC[script])
        replies[name].append(_log_fields(_log_taken(port)))
    assert replies["shardkv"] == replies["redis"]


@pytest.mark.parametrize(
    "commands",
    [
        [("EVAL", "return redis.pcall('get', 'zz')", "0"), ("SELECT", "3")],
        [("MULTI",), ("SELECT", "2"), ("EVAL", "return redis.pcall('get', 'zz')", "0"), ("EXEC",)],
    ],
    ids=["select-pipelined-after", "select-before-inside-exec"],
)
def test_acl_log_of_a_scripts_refused_call_shows_the_database_it_was_called_in(acl_ports, commands):
    """The entry's client info is the caller's as it called the script: a
    SELECT pipelined after it does not change its db."""
    replies = {}
    for name in SERVERS:
        port = acl_ports[name]
        _log_taken(port)
        with RespClient(port) as c:
            c.command("ACL", "SETUSER", "acltest", "on", ">pw", "~k*", "+@all")
            c.command("AUTH", "acltest", "pw")
            c.sock.sendall(b"".join(encode_command(*command) for command in commands))
            replies[name] = [c.read() for _ in commands]
        replies[name].append(_log_with_info(port))
    assert replies["redis"][-1], "redis logged nothing"
    assert replies["shardkv"] == replies["redis"]
