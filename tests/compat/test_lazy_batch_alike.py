"""One read of whole canonical commands (which the acceptor's parser hands
to Client._run as a lazy ``zip``, see RequestParser.feed_lazily) with a
command in it that changes the client's state, or stops the loop that runs
them, gets byte for byte what redis-server answers: MULTI, SUBSCRIBE,
CLIENT REPLY OFF and SKIP, HELLO 3, a failed AUTH, an AUTH as a limited
user, CLIENT TRACKING, CLIENT PAUSE, a blocking command, QUIT, a protocol
error or an inline command later in the read, a 20 KiB argument, RESET,
SELECT, EVALSHA, an unknown command, ``*0``.  Each pipeline goes in one
write; its INCRs show a command run twice or dropped, in its replies and
in the counters a second connection reads after it.  At one acceptor and
at two (the module's parameter).  And a read of one command name (which
Client._run_named sends for a plain client) in a state an earlier read set.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator

import pytest

from tests.support.rawsocket import REPLY_WAIT, read_through, read_until_quiet
from tests.support.resp import encode_command, reply_end
from tests.support.servers import start_redis, start_shardkv

SCRIPT = b"return redis.call('INCR', KEYS[1])"
SHA = hashlib.sha1(SCRIPT).hexdigest().encode()


def c(*args: bytes | str | int) -> bytes:
    return encode_command(*args)


def _incrs(p: bytes, n: int = 3) -> bytes:
    """Plain single-key commands, the zip's usual run."""
    return b"".join(
        c(b"INCR", p + b"n") + c(b"GET", p + b"n") + c(b"SET", p + b"s%d" % i, i) for i in range(n)
    )


# name -> (pipeline, the indexes of replies not compared: HELLO's map names the client's id)
def _pipelines(p: bytes) -> dict[str, tuple[bytes, tuple[int, ...]]]:
    r = _incrs(p)
    return {
        "multi": (r + c("MULTI") + r + c("EXEC") + r + c("MULTI") + r + c("DISCARD") + r, ()),
        "multi_error": (r + c("MULTI") + c("INCR") + r + c("EXEC") + r, ()),
        "subscribe": (r + c("SUBSCRIBE", p + b"ch") + r + c("PING") + c("UNSUBSCRIBE") + r, ()),
        "psubscribe": (r + c("PSUBSCRIBE", p + b"*") + c("PUNSUBSCRIBE") + r, ()),
        "reply_off": (r + c("CLIENT", "REPLY", "OFF") + r + c("CLIENT", "REPLY", "ON") + r, ()),
        "reply_skip": (
            r + c("CLIENT", "REPLY", "SKIP") + r + c("CLIENT", "REPLY", "SKIP") + c("INCR", p + b"n") + r,
            (),
        ),
        "hello3": (r + c("HELLO", "3") + r + c("GET", p + b"missing") + c("HELLO", "2") + r, (9, 20)),
        "auth_fails": (r + c("AUTH", "nobody", "wrong") + r + c("AUTH", "x") + r, ()),
        "acl_user": (
            c("ACL", "SETUSER", p + b"u", "on", ">pw", "~*", "+incr", "+get")
            + r
            + c("AUTH", p + b"u", "pw")
            + r
            + c("AUTH", "default", "any")
            + r,
            (),
        ),
        "tracking": (r + c("CLIENT", "TRACKING", "ON") + r + c("CLIENT", "TRACKING", "OFF") + r, ()),
        "pause": (r + c("CLIENT", "PAUSE", "100", "WRITE") + r + c("CLIENT", "UNPAUSE") + r, ()),
        "blocking": (
            r + c("BLPOP", p + b"l", "0.2") + r + c("RPUSH", p + b"l", "a") + c("BLPOP", p + b"l", "0") + r,
            (),
        ),
        "quit": (r + c("QUIT") + r, ()),
        "bad_later": (r + r + b"*1\r\n$x\r\nPING\r\n" + r, ()),
        "big_bulk_head": (r + b"*2\r\n$3\r\nGET\r\n$600000000\r\n" + r, ()),
        "inline": (r + b"INCR " + p + b"n\r\n" + r + b"\r\n" + r, ()),
        "big_arg": (r + c("SET", p + b"big", b"x" * 20000) + r + c("STRLEN", p + b"big") + r, ()),
        "reset": (r + c("MULTI") + r + c("RESET") + r + c("SELECT", "3") + c("RESET") + r, ()),
        "select": (r + c("SELECT", "1") + r + c("SELECT", "0") + r, ()),
        "evalsha": (
            c("SCRIPT", "LOAD", SCRIPT)
            + r
            + c("EVALSHA", SHA, "1", p + b"n")
            + c("EVALSHA", SHA, "1", p + b"n")
            + r
            + c("EVALSHA", SHA, "1", p + b"n")
            + c("MULTI")
            + r
            + c("EXEC")
            + r,
            (),
        ),
        "unknown_arity": (r + c("NOSUCH", p) + r + c("GET") + r + c("get", p + b"n") + r, ()),
        "empty_array": (r + b"*0\r\n" + r, ()),
        "echo_many": (r + b"".join(c("ECHO", b"e%d" % i) for i in range(40)) + r, ()),
    }


NAMES = list(_pipelines(b"").keys())


@pytest.fixture(scope="module", params=[1, 2], ids=["a1", "a2"])
def ports(request) -> Iterator[tuple[int, int]]:
    real = start_redis()
    ours = start_shardkv(shards=2, acceptors=request.param)
    yield real.port, ours.port
    real.stop()
    ours.stop()


def _replies(data: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(data):
        end = reply_end(data, pos)
        if end < 0:
            out.append(data[pos:])
            break
        out.append(data[pos:end])
        pos = end
    return out


def _exchange(port: int, name: str) -> tuple[list[bytes], bool, bytes]:
    p = b"%s:" % name.encode()
    data, masked = _pipelines(p)[name]
    marker = b"end-of-" + name.encode()
    data += c("ECHO", marker)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out, closed = read_until_quiet(
            s, idle=0.4, until=b"" if name in ("quit", "bad_later", "big_bulk_head") else marker
        )
    replies = _replies(out)
    for i in masked:
        if i < len(replies):
            replies[i] = b"<masked>"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(c("MGET", p + b"n", p + b"s0", p + b"s2", p + b"l") + c("SELECT", "1") + c("GET", p + b"n"))
        after, _ = read_until_quiet(s, idle=0.2, want=1)
    return replies, closed, after


@pytest.mark.parametrize("name", NAMES)
def test_pipeline_in_one_read_matches_redis(ports: tuple[int, int], name: str) -> None:
    real, ours = ports
    assert _exchange(ours, name) == _exchange(real, name)


def _named(name: str, keys: list[bytes], *rest: bytes | str) -> tuple[bytes, int]:
    """A read of one name and shape (``Client._run`` sends it by
    ``_run_named`` once the client is plain and the name's spelling has
    been looked up), and its replies' count."""
    return b"".join(c(name, k, *rest) for k in keys), len(keys)


# name -> (what another connection sends first, one command a read, each
# with +OK; the client's reads in turn, each with its replies' count)
def _state_reads(p: bytes) -> dict[str, tuple[list[bytes], list[tuple[bytes, int]]]]:
    k = [p + b"k%d" % i for i in range(6)]
    user = p + b"u"
    # Each name once alone first: a spelling the acceptor has looked up.
    warm = [(c("SET", p + b"w", "v"), 1), (c("GET", p + b"w"), 1), (c("STRLEN", p + b"w"), 1)]
    return {
        "acl_keys": (
            [c("ACL", "SETUSER", user, "on", ">pw", b"~" + p + b"k1*", b"~" + p + b"k3*", "+@all")],
            [*warm, (c("AUTH", user, "pw"), 1), _named("SET", k, "v"), _named("GET", k)],
        ),
        "acl_command": (
            [c("ACL", "SETUSER", user, "on", ">pw", "~*", "+@all", "-get")],
            [*warm, _named("SET", k, "v"), (c("AUTH", user, "pw"), 1), _named("GET", k), _named("STRLEN", k)],
        ),
        "multi": (
            [],
            [
                *warm,
                (c("MULTI"), 1),
                _named("SET", k, "m"),
                _named("GET", k),
                (c("EXEC"), 1),
                _named("GET", k),
            ],
        ),
        "reply_skip": (
            [],
            [*warm, (c("CLIENT", "REPLY", "SKIP"), 0), (_named("SET", k, "r")[0], 5), _named("GET", k)],
        ),
        "select": (
            [],
            [*warm, (c("SELECT", "1"), 1), _named("SET", k, "d1"), (c("SELECT", "0"), 1), _named("GET", k)],
        ),
        "pause": ([c("CLIENT", "PAUSE", "100", "WRITE")], [*warm, _named("SET", k, "w"), _named("GET", k)]),
        "subscribe": (
            [],
            [
                *warm,
                (c("SUBSCRIBE", p + b"ch"), 1),
                _named("GET", k),
                (c("UNSUBSCRIBE"), 1),
                _named("GET", k),
            ],
        ),
    }


def _frames(s: socket.socket, n: int) -> bytes:
    """The next ``n`` whole replies (what came by REPLY_WAIT if fewer)."""
    out = b""
    pos = 0
    deadline = time.monotonic() + REPLY_WAIT
    while n:
        while n and (end := reply_end(out, pos)) != -1:
            pos = end
            n -= 1
        if not n or (left := deadline - time.monotonic()) <= 0:
            break
        s.settimeout(left)
        try:
            chunk = s.recv(1 << 16)
        except TimeoutError:
            break
        if not chunk:
            break
        out += chunk
    return out


def _state_exchange(port: int, name: str) -> list[bytes]:
    p = b"state-%s:" % name.encode()
    first, reads = _state_reads(p)[name]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as admin:
        for data in first:
            admin.sendall(data)
            assert _frames(admin, 1) == b"+OK\r\n"
    out = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        # Each read sent once the replies before it came (its own read),
        # but for a command with none (CLIENT REPLY SKIP), then a last
        # marker: whatever came in excess shows before it.
        for data, n in reads:
            s.sendall(data)
            out.append(_frames(s, n))
        s.sendall(c("ECHO", "end"))
        out.append(read_through(s, b"$3\r\nend\r\n")[0])
    return out


@pytest.mark.parametrize("name", list(_state_reads(b"").keys()))
def test_a_read_of_one_name_after_a_state_change_matches_redis(ports: tuple[int, int], name: str) -> None:
    """A pipelined read of one command name and shape, in a read of its own
    (``Client._run_named`` takes it for a plain client), in a state set by
    an earlier read, its own or another client's: an ACL user limited to
    some keys or denied the command, MULTI, CLIENT REPLY SKIP, another
    database, CLIENT PAUSE WRITE, RESP2 Pub/Sub.  Each of its commands gets
    what redis-server answers it."""
    real, ours = ports
    assert _state_exchange(ours, name) == _state_exchange(real, name)
