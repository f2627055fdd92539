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
at two (the module's parameter).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

import pytest

from tests.support.rawsocket import read_until_quiet
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
