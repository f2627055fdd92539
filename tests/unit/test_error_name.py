"""``commands.error_name``: how shardkv's own errors (``ERR internal error
while running '<name>'``) name a command, checked against the name
redis-server puts in its own errors for the same words (its ``wrong
number of arguments for '<name>' command``): a known command's full name
in lower case, whatever the letter case it was sent in."""

from __future__ import annotations

import re

import pytest
import redis

from shardkv.protocol.commands import error_name

# Each sent with too few arguments, so that Redis names it in its error.
WORDS = [
    [b"GeT"],
    [b"exec", b"x"],
    [b"EXEC", b"x"],
    [b"rEnAmE", b"k"],
    [b"MSET", b"k"],
    [b"CoNfIg", b"SeT"],
    [b"OBJECT", b"ENCODING"],
    [b"xinfo", b"StReAm"],
    [b"Client", b"KILL"],
    [b"EVAL"],
]


@pytest.mark.parametrize("words", WORDS, ids=[b" ".join(w).decode() for w in WORDS])
def test_a_known_command_is_named_as_redis_names_it(redis_proc, words):
    conn = redis.Redis(port=redis_proc.port, socket_timeout=30)
    try:
        with pytest.raises(redis.ResponseError) as raised:
            conn.execute_command(*words)
    finally:
        conn.close()
    named = re.search(r"wrong number of arguments for '(.*)' command", str(raised.value))
    assert named is not None, str(raised.value)
    assert error_name(words) == named.group(1)


def test_an_unknown_command_is_named_as_it_was_sent():
    assert error_name([b"FoO", b"x"]) == "FoO"  # as ERR unknown command 'FoO'
    assert error_name([b"CONFIG", b"NoSuch"]) == "config"
    assert error_name([b""]) == ""
