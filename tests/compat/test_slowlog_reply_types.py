"""SLOWLOG GET's reply, byte for byte in its types: each entry's client
address and name are bulk strings, as Redis's slowlogCommand writes them
(addReplyBulkCBuffer), for a client's command and for a script's call
(Redis's Lua client, ``?:0``).  (shardkv once wrote the address as a
simple string, which a client that reads types told apart.)
"""

from __future__ import annotations

from tests.support.resp import RespClient


def test_slowlog_get_writes_addresses_as_bulk_strings(server):
    with RespClient(server) as c:
        before = c.command("CONFIG", "GET", "slowlog-log-slower-than")[1]
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        try:
            c.command("SLOWLOG", "RESET")
            c.command("EVAL", "return redis.call('get', KEYS[1])", "1", "k")
            reply = c.call("SLOWLOG", "GET")
        finally:
            c.command("CONFIG", "SET", "slowlog-log-slower-than", before)
    assert b"\r\n+" not in reply  # (no simple string anywhere in it)
    assert b"$3\r\n?:0\r\n$0\r\n\r\n" in reply  # the script's GET: Redis's Lua client
    assert b"$4\r\nEVAL\r\n" in reply
