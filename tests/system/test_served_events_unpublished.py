"""A served blocked command's events are published only as the setting says.

While a blocked client's acceptor wants any events, the shard notes every
event of its served command (``events.derive_served``), whatever classes
``notify-keyspace-events`` names, so that the acceptor learns of the serve;
those of a class the setting leaves out carry neither K nor E and must
reach no subscriber.  Differential against redis-server: a subscriber of
every keyspace and keyevent channel, on either acceptor, hears exactly what
Redis publishes when a push serves BLPOP, BLMOVE, BZPOPMIN or XREADGROUP
(whose serve creates its consumer: ``xgroup-createconsumer``), under
settings that leave the served command's class out or keep it, and after
the setting changed while the client was blocked.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.support.acceptors import client_on
from tests.support.resp import RespClient, parse_reply

# name: (setup, the blocking command, the push that serves it)
OPS = {
    "blpop": ([("DEL", "{t}l")], ("BLPOP", "{t}l", 0), ("RPUSH", "{t}l", "a", "b")),
    "blmove": (
        [("DEL", "{t}l", "{t}d")],
        ("BLMOVE", "{t}l", "{t}d", "LEFT", "RIGHT", 0),
        ("RPUSH", "{t}l", "a"),
    ),
    "bzpopmin": ([("DEL", "{t}z")], ("BZPOPMIN", "{t}z", 0), ("ZADD", "{t}z", 1, "m")),
    "xreadgroup": (
        [("DEL", "{t}x"), ("XGROUP", "CREATE", "{t}x", "g", "$", "MKSTREAM")],
        ("XREADGROUP", "GROUP", "g", "c", "BLOCK", 0, "STREAMS", "{t}x", ">"),
        ("XADD", "{t}x", "1-1", "f", "v"),
    ),
}
# (the setting while the client blocks, the setting when the push comes)
SETTINGS = [("K$", "K$"), ("Kl", "Kl"), ("Eg", "Eg"), ("KEA", "KEA"), ("K$", "KEA"), ("KEA", "K$")]


def _messages_until(c: RespClient, marker: list, timeout: float = 10.0) -> list:
    """What ``c`` hears up to and including ``marker``."""
    out: list = []
    deadline = time.monotonic() + timeout
    c.sock.settimeout(0.05)
    while time.monotonic() < deadline:
        while (parsed := parse_reply(c.buf)) is not None:
            value, end = parsed
            c.buf = c.buf[end:]
            out.append(value)
            if value == marker:
                return out
        try:
            chunk = c.sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        c.buf += chunk
    pytest.fail(f"no marker within {timeout}s: {out!r}")


def _heard(port: int, k: int, op: str, settings: tuple[str, str], places: tuple[int, int]) -> tuple:
    """The served client's reply, the pusher's, and every message the
    subscriber (on acceptor ``places[1]``; the blocked client and the
    pusher on ``places[0]``) heard of it."""
    setup, block, push = OPS[op]
    b_on, s_on = places
    w = client_on(port, b_on, k=k)
    b = client_on(port, b_on, k=k)
    s = client_on(port, s_on, k=k)
    try:
        w.command("CONFIG", "SET", "notify-keyspace-events", "")
        for command in setup:
            w.command(*command)
        w.command("CONFIG", "SET", "notify-keyspace-events", settings[0])
        s.command("PSUBSCRIBE", "__key*__:*")
        s.command("SUBSCRIBE", "marker")
        bid = b.command("CLIENT", "ID")
        b.send(*block)
        deadline = time.monotonic() + 10
        while not re.search(rb" flags=\S*b", w.command("CLIENT", "LIST", "ID", bid)):  # type: ignore[arg-type]
            assert time.monotonic() < deadline, "the client never blocked"
            time.sleep(0.005)
        w.command("CONFIG", "SET", "notify-keyspace-events", settings[1])
        pushed = w.command(*push)
        served = b.read_reply()
        w.command("PUBLISH", "marker", "end")
        return served, pushed, _messages_until(s, [b"message", b"marker", b"end"])
    finally:
        w.command("CONFIG", "SET", "notify-keyspace-events", "")
        for c in (w, b, s):
            c.close()


@pytest.mark.parametrize("op", list(OPS))
def test_a_served_commands_events_are_published_as_redis_publishes_them(redis_and_shardkv_k12, op) -> None:
    real, ours, k = redis_and_shardkv_k12
    for settings in SETTINGS:
        for places in [(0, 0), (0, 1), (1, 0)] if k == 2 else [(0, 0)]:
            theirs = _heard(real, 1, op, settings, places)
            assert _heard(ours, k, op, settings, places) == theirs, (settings, places)
