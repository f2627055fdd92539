"""An empty command name pipelined right after another command gets Redis's
``unknown command ''`` error, with its arguments, whatever ran before it.

Client._run remembers the last spelling it looked up, with its command and
argument counts, so that a pipeline repeating one costs a comparison; a
command that left the inline path (an arity error, a command of its own
path) must leave nothing that an empty name could be taken for: neither
the plain path of a single-key command (SET, GET) nor the fast path of
another (EVALSHA, MGET).  Run with ``SHARDKV_TEST_ACCEPTORS=2`` too.
"""

from __future__ import annotations

import hashlib

import pytest

from tests.support.rawsocket import both
from tests.support.resp import RespClient, encode_command

SCRIPT = "redis.call('INCR', 'ran') return 'ran'"
SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()


def _pipeline(*commands: tuple) -> bytes:
    return b"".join(encode_command(*c) for c in commands)


CASES = {
    "after_set_arity": [("SET", "x"), ("", "x", "y")],
    "after_set_then_set_arity": [("SET", "x", "1"), ("SET", "x"), ("", "x", "y")],
    "after_ping_and_set_arity": [("PING",), ("SET", "x"), ("", "x", "y")],
    "after_get_and_get_arity": [("GET", "a"), ("GET", "a", "b"), ("", "x")],
    "slotted_argument": [("GET", "a"), ("SET", "x"), ("", "k{a}", "y", "z")],
    "two_empty": [("SET", "x"), ("", "x", "y"), ("", "x", "y"), ("GET", "x")],
    "after_mget": [("MGET", "a", "b"), ("MGET",), ("", "a", "b")],
    "after_evalsha_arity": [("EVALSHA",), ("", SHA, "0"), ("GET", "ran")],
    "after_evalsha_noscript": [("EVALSHA", "0" * 40, "0"), ("", SHA, "0"), ("GET", "ran")],
    "after_del": [("DEL",), ("", "x"), ("DEL", "x")],
    "empty_first": [("", "x", "y"), ("GET", "x")],
}


@pytest.mark.parametrize("case", list(CASES))
def test_empty_name_after_another_command(ports, case):
    for name in ("redis", "shardkv"):
        with RespClient(ports[name], timeout=30) as c:
            c.command("FLUSHALL")
            c.command("SCRIPT", "LOAD", SCRIPT)
    (real, real_closed), (ours, ours_closed) = both(ports, _pipeline(*CASES[case]))
    assert b"unknown command ''" in real
    assert ours == real
    assert ours_closed == real_closed
