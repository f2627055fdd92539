"""Sharded Pub/Sub (SSUBSCRIBE, SUNSUBSCRIBE, SPUBLISH, PUBSUB SHARDCHANNELS
and SHARDNUMSUB) as a standalone redis-server 7.0 has it: channels of
their own, whose messages are ``smessage`` pushes, byte for byte in RESP2
and RESP3.  Across acceptors: tests/system/test_acceptors_features.py."""

from __future__ import annotations

import socket

import pytest
import redis

from tests.compat.test_server_commands import plain
from tests.support.acceptors import client_on
from tests.support.rawsocket import both, read_through
from tests.support.resp import RespClient

# A RESP2 subscribed client: counts are per kind (shard channels apart
# from channels and patterns), and only (P|S)(UN)SUBSCRIBE, PING, QUIT
# and RESET are allowed in that context.
RESP2_SESSION = (
    b"SSUBSCRIBE a b\r\nSUBSCRIBE c\r\nSSUBSCRIBE a\r\nPING\r\nSUNSUBSCRIBE a\r\n"
    b"PUBSUB SHARDCHANNELS\r\nSUNSUBSCRIBE\r\nSUNSUBSCRIBE\r\nUNSUBSCRIBE\r\nGET x\r\n"
    b"MULTI\r\nSSUBSCRIBE m\r\nEXEC\r\nSUNSUBSCRIBE x y\r\nSSUBSCRIBE\r\nECHO end\r\n"
)
RESP3_SESSION = (
    b"HELLO 3\r\nECHO start\r\nSSUBSCRIBE q r\r\nSPUBLISH q hi\r\nPUBLISH q no\r\nPUBSUB SHARDNUMSUB q r s\r\n"
    b"PUBSUB SHARDCHANNELS q*\r\nPUBSUB CHANNELS\r\nCLIENT INFO\r\n"
    b"SUNSUBSCRIBE q\r\nSPUBLISH q hi\r\nSPUBLISH r there\r\nRESET\r\nPUBSUB SHARDNUMSUB r\r\nECHO end\r\n"
)


def test_resp2_session_byte_for_byte(ports):
    (real, _), (ours, _) = both(ports, RESP2_SESSION)
    assert ours == real
    assert b"$10\r\nssubscribe\r\n" in real and b"only (P|S)SUBSCRIBE" in real


def test_resp3_session_matches(ports):
    """The same pushes and replies (HELLO's and CLIENT INFO's own lines
    aside: ids, addresses and the like)."""
    (real, _), (ours, _) = both(ports, RESP3_SESSION)
    real_tail = real.split(b"start\r\n", 1)[1]
    ours_tail = ours.split(b"start\r\n", 1)[1]
    real_head, real_rest = real_tail.split(b"=", 1)[0], real_tail.split(b"\n\r\n", 1)[1]
    ours_head, ours_rest = ours_tail.split(b"=", 1)[0], ours_tail.split(b"\n\r\n", 1)[1]
    assert ours_head == real_head
    assert ours_rest == real_rest
    assert b">3\r\n$8\r\nsmessage\r\n$1\r\nq\r\n$2\r\nhi\r\n" in real_head


@pytest.mark.parametrize("protocol", [2, 3])
def test_spublish_counts_and_client_list(ports, protocol):
    for port in (ports["redis"], ports["shardkv"]):
        pub = plain(port, protocol)
        sub = redis.Redis(port=port, protocol=protocol).pubsub()
        sub.ssubscribe("s1", "s2")
        for _ in range(2):
            assert sub.get_message(timeout=5)["type"] == "ssubscribe"
        assert pub.execute_command("SPUBLISH", "s1", "m") == 1
        assert pub.execute_command("SPUBLISH", "none", "m") == 0
        assert pub.execute_command("PUBSUB", "SHARDNUMSUB", "s1", "s2", "s3") == [
            b"s1",
            1,
            b"s2",
            1,
            b"s3",
            0,
        ]
        assert sorted(pub.execute_command("PUBSUB", "SHARDCHANNELS")) == [b"s1", b"s2"]
        m = sub.get_message(timeout=5)
        assert (m["type"], m["channel"], m["data"]) == ("smessage", b"s1", b"m")
        line = [x for x in pub.execute_command("CLIENT", "LIST").decode().splitlines() if "ssub=2" in x]
        assert len(line) == 1 and " flags=P " in line[0]
        stats = pub.execute_command("INFO", "stats")
        assert b"\r\npubsub_patterns:0\r\npubsubshard_channels:2\r\n" in stats
        sub.close()
        pub.close()


def test_from_scripts(ports):
    """SPUBLISH runs in scripts; SSUBSCRIBE and SUNSUBSCRIBE are noscript."""
    replies = []
    for port in (ports["redis"], ports["shardkv"]):
        c = plain(port, 2)
        out = []
        for script in (
            "return redis.call('spublish', 'ch', 'm')",
            "return redis.pcall('ssubscribe', 'ch')",
            "return redis.pcall('sunsubscribe')",
            "return redis.pcall('spublish', 'ch')",
        ):
            try:
                out.append(c.eval(script, 0))
            except redis.ResponseError as e:
                out.append(str(e))
        replies.append(out)
        c.close()
    assert replies[0] == replies[1]


def test_acl_channels(ports):
    """A user's channel patterns govern SPUBLISH and SSUBSCRIBE, not keys."""
    replies = []
    for port in (ports["redis"], ports["shardkv"]):
        c = plain(port, 2)
        c.execute_command(
            "ACL", "SETUSER", "shardy", "on", "nopass", "+@all", "~nokey", "resetchannels", "&ok*"
        )
        u = plain(port, 2)
        u.execute_command("AUTH", "shardy", "x")
        out = []
        for args in (["SPUBLISH", "ok1", "m"], ["SPUBLISH", "no", "m"], ["PUBLISH", "no", "m"]):
            try:
                out.append(u.execute_command(*args))
            except redis.ResponseError as e:
                out.append(str(e))
        replies.append(out)
        c.execute_command("ACL", "DELUSER", "shardy")
        u.close()
        c.close()
    assert replies[0] == replies[1]


def test_a_shard_subscriber_is_a_pubsub_client(ports):
    """PING answers it as a subscriber in RESP2; CLIENT KILL TYPE PUBSUB
    kills it; ACL SETUSER that takes its channel away closes it."""
    out = []
    for port in (ports["redis"], ports["shardkv"]):
        admin = plain(port, 2)
        admin.execute_command(
            "ACL", "SETUSER", "shardsub", "on", "nopass", "+@all", "~*", "resetchannels", "&a*"
        )
        got = []
        for revoke in (False, True):
            sub = redis.Redis(port=port, protocol=2, username="shardsub", password="x").pubsub()
            sub.ssubscribe("ab")
            assert sub.get_message(timeout=5)["type"] == "ssubscribe"
            sub.ping("hi")
            got.append(sub.get_message(timeout=5)["data"])
            if revoke:
                admin.execute_command("ACL", "SETUSER", "shardsub", "resetchannels", "&b*")
            else:
                got.append(admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub"))
            try:
                got.append(sub.get_message(timeout=2))
            except (redis.ConnectionError, redis.exceptions.NoPermissionError):
                got.append("closed")  # (or redis-py's new connection may not subscribe again)
            sub.close()
        admin.execute_command("ACL", "DELUSER", "shardsub")
        admin.close()
        out.append(got)
    assert out[0] == out[1]
    # (killed: redis-py connects again and subscribes anew, as with Redis)
    assert out[0][1] >= 1 and out[0][-1] == "closed"


def _same_resp3_session(servers: tuple[int, int, int], session: bytes) -> bytes:
    """``session`` (which ends with ``ECHO end`` or closes) after ``HELLO
    3``, sent to redis-server and to shardkv (``servers``:
    redis_and_shardkv_k12's), each read through ``ECHO end``'s reply or the
    close: the same bytes back, and the same close or none; what Redis
    sent.  A client still open then is RESET, which must come alone
    (nothing came late), and which leaves its channels before its reply:
    the next session's PUBLISH cannot count it, as it could a closed client
    whose close its acceptor (of two) had not read yet."""
    real, ours, _ = servers
    with (
        socket.create_connection(("127.0.0.1", real)) as r,
        socket.create_connection(("127.0.0.1", ours)) as o,
    ):
        (theirs, their_close), (mine, my_close) = [_resp3_session(s, session) for s in (r, o)]
        assert mine == theirs
        assert my_close == their_close
        if not their_close:
            for s in (r, o):
                s.sendall(b"RESET\r\n")
                assert read_through(s, b"+RESET\r\n") == (b"+RESET\r\n", False)
    return theirs


def _resp3_session(s: socket.socket, session: bytes) -> tuple[bytes, bool]:
    """What ``session`` got on ``s`` after ``ECHO start``'s reply, through
    ``ECHO end``'s, and whether the server closed."""
    s.sendall(b"HELLO 3\r\nECHO start\r\n" + session)
    out, closed = read_through(s, b"$3\r\nend\r\n")
    return out.partition(b"$5\r\nstart\r\n")[2], closed


@pytest.mark.parametrize(
    "session",
    [
        b"SSUBSCRIBE q r\r\nSPUBLISH q hi\r\nSUNSUBSCRIBE q\r\nSPUBLISH q there\r\nECHO end\r\n",
        b"SSUBSCRIBE q\r\nSPUBLISH q hi\r\nRESET\r\nECHO end\r\n",
        b"SSUBSCRIBE q\r\nSPUBLISH q hi\r\nQUIT\r\n",
        b"SUBSCRIBE q r\r\nPUBLISH q hi\r\nUNSUBSCRIBE q\r\nPUBLISH q there\r\nECHO end\r\n",
        b"PSUBSCRIBE q*\r\nPUBLISH qq hi\r\nPUNSUBSCRIBE\r\nECHO end\r\n",
        b"SUBSCRIBE q\r\nPUBLISH q hi\r\nRESET\r\nECHO end\r\n",
    ],
    ids=["sunsubscribe", "sreset", "squit", "unsubscribe", "punsubscribe", "reset"],
)
def test_a_subscribed_publisher_gets_its_message_before_what_it_sent_next(redis_and_shardkv_k12, session):
    """A RESP3 subscriber that (S)PUBLISHes to itself, then unsubscribes,
    RESETs or QUITs in the same pipeline: Redis delivers the message
    before it reads the next command.  With two acceptors, shardkv ran the
    unsubscribe while the (S)PUBLISH went round the bus: the reply counted
    the client, which never got the message."""
    theirs = _same_resp3_session(redis_and_shardkv_k12, session)
    assert b"message\r\n" in theirs and b"\r\nhi\r\n" in theirs


@pytest.mark.parametrize(
    "session",
    [
        b"SUBSCRIBE q r\r\nMULTI\r\nPUBLISH q hi\r\nUNSUBSCRIBE q\r\nEXEC\r\nPUBLISH q there\r\nECHO end\r\n",
        b"SSUBSCRIBE q r\r\nMULTI\r\nSPUBLISH q hi\r\nSUNSUBSCRIBE q\r\nEXEC\r\nSPUBLISH q there\r\nECHO end\r\n",
        b"PSUBSCRIBE q*\r\nMULTI\r\nPUBLISH qq hi\r\nPUNSUBSCRIBE\r\nEXEC\r\nECHO end\r\n",
        b"SUBSCRIBE q\r\nMULTI\r\nPUBLISH q a\r\nUNSUBSCRIBE\r\nPUBLISH q b\r\nSUBSCRIBE q\r\nPUBLISH q c\r\nEXEC\r\n"
        b"ECHO end\r\n",
        b"MULTI\r\nPUBLISH q hi\r\nSUBSCRIBE q\r\nEXEC\r\nECHO end\r\n",
        b"SUBSCRIBE q\r\nMULTI\r\nPUBLISH q hi\r\nEXEC\r\nUNSUBSCRIBE q\r\nECHO end\r\n",
        b"SSUBSCRIBE q\r\nMULTI\r\nSPUBLISH q hi\r\nEXEC\r\nSUNSUBSCRIBE q\r\nECHO end\r\n",
    ],
    ids=[
        "unsubscribe",
        "sunsubscribe",
        "punsubscribe",
        "unsubscribe-subscribe",
        "subscribe",
        "unsubscribe-after",
        "sunsubscribe-after",
    ],
)
def test_a_publisher_in_exec_gets_its_message_as_subscribed_then(redis_and_shardkv_k12, session):
    """A RESP3 client's EXEC that (S)PUBLISHes and (un)subscribes, or is
    followed by an unsubscribe: Redis delivers the message to the client
    itself as the (S)PUBLISH runs, inside EXEC's array before its count,
    if it is subscribed then.  With two acceptors, shardkv delivered it
    once the (S)PUBLISH came round the bus, after what followed it had
    (un)subscribed: a count of 0 and no message, or a message (after EXEC)
    that Redis never sends."""
    assert b"end\r\n" in _same_resp3_session(redis_and_shardkv_k12, session)


def _before_pong(c: RespClient) -> bytes:
    """What ``c``, a RESP3 subscriber, got before the reply of a PING sent
    now: every message its server had queued for it by then."""
    c.send("PING")
    frames = []
    while (frame := c.read()) != b"+PONG\r\n":
        frames.append(frame)
    return b"".join(frames)


@pytest.mark.parametrize("publisher_on", [0, 1])
@pytest.mark.parametrize(
    "verbs",
    [(b"SUBSCRIBE", b"PUBLISH", b"UNSUBSCRIBE"), (b"SSUBSCRIBE", b"SPUBLISH", b"SUNSUBSCRIBE")],
    ids=["publish", "spublish"],
)
def test_a_publisher_in_exec_with_subscribers_on_every_acceptor(redis_and_shardkv_k12, publisher_on, verbs):
    """A subscribed publisher's EXEC (its own copies go as each (S)PUBLISH
    runs, and its acceptor's bus delivery passes it over and counts them),
    with other subscribers on each acceptor (``publisher_on``: the
    publisher's), one on the publisher's own: every count as Redis's, and
    every subscriber gets each message once, in Redis's bytes."""
    real, ours, k = redis_and_shardkv_k12
    sub, pub, unsub = verbs
    plain_kind = sub == b"SUBSCRIBE"
    others = [(0, [sub, b"q"]), (1, [sub, b"q"])]
    if plain_kind:  # (one pattern each: Redis's order among patterns is its dict's)
        others += [
            (0, [b"PSUBSCRIBE", b"q*"]),
            (1, [b"PSUBSCRIBE", b"*"]),
            (1, [sub, b"q", b"PSUBSCRIBE", b"q"]),
        ]
    # Still subscribed to q when the message comes round the bus (a copy
    # more if its acceptor did not pass it over), to q* no more.
    session = b"%s q\r\n" % sub + (b"PSUBSCRIBE q*\r\n" if plain_kind else b"")
    session += b"MULTI\r\n%s q hi\r\n" % pub
    session += (b"PUNSUBSCRIBE\r\n%s q two\r\n" % pub) if plain_kind else b""
    session += b"EXEC\r\n%s q four\r\n%s\r\nECHO end\r\n" % (pub, unsub)
    seen = []
    for port, acceptors in ((real, 1), (ours, k)):
        subscribers = []
        try:
            for index, args in others:
                c = client_on(port, index, protocol=3, k=acceptors)
                subscribers.append(c)
                for at in range(0, len(args), 2):
                    c.call(*args[at : at + 2])  # its confirmation
            publisher = client_on(port, publisher_on, protocol=3, k=acceptors)
            subscribers.append(publisher)  # (closed with them; read apart)
            publisher.sock.sendall(session)
            out, closed = read_through(publisher.sock, b"$3\r\nend\r\n")
            # (each count came once every acceptor had queued the message)
            got = [_before_pong(c) for c in subscribers[:-1]]
        finally:
            for c in subscribers:
                c.close()
        seen.append((out, closed, got))
    assert seen[1] == seen[0]
    out, closed, got = seen[0]
    assert out.endswith(b"end\r\n") and not closed
    assert all(g.count(b"\r\nhi\r\n") and g.endswith(b"four\r\n") for g in got)
