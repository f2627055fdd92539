"""What a subscribed RESP3 client causes itself to hear, among its own
replies, byte for byte as redis-server 7.0.15 writes them: the message
of its script's ``redis.call('publish', ...)``, which Redis writes while
the script runs (before EVAL's reply), and the keyspace events of its
own writes, pipelined before an UNSUBSCRIBE or inside EXEC.  At one
acceptor and at two (redis_and_shardkv_k12).  A subscribed client's own
PUBLISH: tests/compat/test_pubsub_sharded.py."""

from __future__ import annotations

import pytest

from shardkv.protocol.resp import encode_command
from tests.compat.test_pubsub_sharded import _same_resp3_session

PUBLISH_Q = b"\"return redis.call('publish', 'q', 'hi')\""
SPUBLISH_Q = b"\"return redis.call('spublish', 'q', 'hi')\""
LOAD_F = encode_command(
    [
        b"FUNCTION",
        b"LOAD",
        b"#!lua name=own\nredis.register_function('f', function() return redis.call('publish', 'q', 'hi') end)",
    ]
)


@pytest.mark.parametrize(
    "session",
    [
        b"SUBSCRIBE q\r\nEVAL %s 0\r\nUNSUBSCRIBE\r\nECHO end\r\n" % PUBLISH_Q,
        b"SUBSCRIBE q\r\nEVAL %s 0\r\nECHO end\r\n" % PUBLISH_Q,
        b"PSUBSCRIBE q*\r\nSUBSCRIBE q\r\nEVAL %s 0\r\nPUNSUBSCRIBE\r\nECHO end\r\n" % PUBLISH_Q,
        b"SSUBSCRIBE q\r\nEVAL %s 1 q\r\nSUNSUBSCRIBE\r\nECHO end\r\n" % SPUBLISH_Q,
        b"SUBSCRIBE q\r\nSCRIPT LOAD %s\r\nEVALSHA 65ee1481d00b00abb71a2c9beb3d028fd6f90828 0\r\nECHO end\r\n"
        % PUBLISH_Q,
        b"SUBSCRIBE q\r\n%sFCALL f 0\r\nUNSUBSCRIBE\r\nFUNCTION DELETE own\r\nECHO end\r\n" % LOAD_F,
        # (a write too: its script runs on a shard, the PUBLISH held to its end)
        b"SUBSCRIBE q\r\nEVAL \"redis.call('set', KEYS[1], 'v') return redis.call('publish', 'q', 'hi')\" 1 k\r\n"
        b"UNSUBSCRIBE\r\nECHO end\r\n",
        # (run as a cross-shard operation: its keys on both shards)
        b"SUBSCRIBE q\r\nSET a 1\r\nEVAL \"redis.call('set', KEYS[1], 'v') redis.call('set', KEYS[2], 'v') "
        b"return redis.call('publish', 'q', 'hi')\" 2 a b\r\nECHO end\r\n",
        # (re-run so once it wrote an undeclared key of the other shard)
        b"SUBSCRIBE q\r\nSET a 1\r\nEVAL \"redis.call('set', 'zz', 'v') return redis.call('publish', 'q', 'hi')\" "
        b"1 b\r\nECHO end\r\n",
    ],
    ids=[
        "eval",
        "eval-alone",
        "patterns",
        "spublish",
        "evalsha",
        "fcall",
        "eval-writes",
        "cross-shard",
        "escape",
    ],
)
def test_a_script_publishing_to_its_own_client(redis_and_shardkv_k12, session):
    """A subscribed RESP3 client's script publishes on a channel the client
    hears: Redis writes the message as the script runs, before the
    script's reply.  shardkv delivered it after the reply."""
    theirs = _same_resp3_session(redis_and_shardkv_k12, session)
    message = theirs.index(b"$7\r\nmessage\r\n" if b"SSUB" not in session else b"$8\r\nsmessage\r\n")
    assert theirs.endswith(b"end\r\n") and message < theirs.index(b"\r\n:1\r\n", message)


KEA = b"CONFIG SET notify-keyspace-events KEA\r\n"
OFF = b'CONFIG SET notify-keyspace-events ""\r\n'


@pytest.mark.parametrize(
    "session",
    [
        b"SUBSCRIBE __keyspace@0__:k\r\nSET k v\r\nUNSUBSCRIBE\r\n",
        b"PSUBSCRIBE __key*@0__:*\r\nSET k v\r\nDEL k\r\nPUNSUBSCRIBE\r\n",
        b"SUBSCRIBE __keyspace@0__:k __keyevent@0__:del\r\nSET k v\r\nDEL k\r\nUNSUBSCRIBE __keyevent@0__:del\r\n"
        b"SET k w\r\nDEL k\r\nUNSUBSCRIBE\r\n",
        b"SUBSCRIBE __keyspace@0__:k\r\nMULTI\r\nSET k v\r\nDEL k\r\nEXEC\r\nUNSUBSCRIBE\r\n",
        b"SUBSCRIBE __keyspace@0__:k\r\nSET k v\r\nRESET\r\n",
    ],
    ids=["set", "patterns", "some", "exec", "reset"],
)
def test_keyspace_events_of_the_subscribers_own_writes(redis_and_shardkv_k12, session):
    """A RESP3 client subscribed to its keys' events writes them, then
    unsubscribes in the same pipeline: Redis writes each event before the
    write's reply (inside EXEC's array, before the command's).  shardkv
    let the unsubscribe run first, and the events never came."""
    theirs = _same_resp3_session(redis_and_shardkv_k12, KEA + session + OFF + b"ECHO end\r\n")
    assert theirs.endswith(b"end\r\n") and b"$3\r\nset\r\n" in theirs
