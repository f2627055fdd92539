"""Streams compared with redis-server: XADD ... XINFO, errors included.

Every case uses explicit IDs (or reads only what does not depend on the
clock), so both servers must answer byte for byte the same.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def compare(compare):
    """The replies as sent, without redis-py's parsing of stream replies."""
    compare.real.response_callbacks.clear()
    compare.ours.response_callbacks.clear()
    return compare


def pending(compare, *args):
    """XPENDING's extended form, with the idle times (clock-dependent) left out."""
    real = compare._run(compare.real, ("XPENDING", *args))
    ours = compare._run(compare.ours, ("XPENDING", *args))
    if isinstance(real, list) and isinstance(ours, list):
        real = [[e[0], e[1], e[3]] for e in real]
        ours = [[e[0], e[1], e[3]] for e in ours]
    assert ours == real, f"XPENDING {args}: redis {real!r}, shardkv {ours!r}"


def _fill(compare, key="s", n=5, start=1):
    for i in range(start, start + n):
        compare("XADD", key, f"{i}-0", "f", f"v{i}", "g", str(i))


def test_xadd_ids_and_errors(compare):
    compare("XADD", "s", "1-1", "a", "1")
    compare("XADD", "s", "1-1", "a", "1")
    compare("XADD", "s", "1-0", "a", "1")
    compare("XADD", "s", "1-*", "a", "2")
    compare("XADD", "s", "5-*", "a", "3")
    compare("XADD", "s", "0-0", "a", "1")
    compare("XADD", "t", "0-0", "a", "1")
    compare("EXISTS", "t")
    compare("XADD", "s", "abc", "a", "1")
    compare("XADD", "s", "-", "a", "1")
    compare("XADD", "s", "+", "a", "1")
    compare("XADD", "s", "6-0", "a")
    compare("XADD", "s", "6-0", "a", "1", "b")
    compare("XADD", "s", "6", "a", "1")
    compare("XADD", "s", "007", "a", "1")
    compare("XADD", "s", "18446744073709551615-18446744073709551615", "a", "1")
    compare("XADD", "s", "*", "a", "1")
    compare("XADD", "s", "18446744073709551615-*", "a", "1")
    compare("XADD", "s", "NOMKSTREAM", "20-1", "a", "1")
    compare("XADD", "nokey", "NOMKSTREAM", "*", "a", "1")
    compare("EXISTS", "nokey")
    compare("XLEN", "s")
    compare("XRANGE", "s", "-", "+")
    compare("SET", "str", "x")
    compare("XADD", "str", "*", "a", "1")
    compare("XLEN", "str")
    compare("TYPE", "s")
    compare("OBJECT", "ENCODING", "s")


def test_xadd_sequence_overflow(compare):
    # ms-* past the last sequence of that ms: Redis's streamAppendItem fails
    # without EDOM, so XADD says "too large", not "equal or smaller".
    compare("XADD", "s", "1-18446744073709551615", "a", "1")
    compare("XADD", "s", "1-*", "a", "1")
    compare("XADD", "s", "2-*", "a", "1")
    compare("XADD", "t", "18446744073709551614-18446744073709551615", "a", "1")
    compare("XADD", "t", "18446744073709551614-*", "a", "1")
    compare("XADD", "t", "*", "a", "1")  # carries into the next ms
    compare("XADD", "t", "18446744073709551615-*", "a", "1")
    compare("XADD", "u", "18446744073709551615-18446744073709551615", "a", "1")
    compare("XADD", "u", "*", "a", "1")
    compare("XADD", "u", "18446744073709551615-*", "a", "1")
    compare("XRANGE", "s", "-", "+")
    compare("XRANGE", "t", "-", "+")


def test_xadd_trim_options(compare):
    compare("XADD", "s", "MAXLEN", "-1", "1-0", "a", "1")
    compare("XADD", "s", "MAXLEN", "x", "1-0", "a", "1")
    compare("XADD", "s", "MAXLEN", "1", "MINID", "1", "1-0", "a", "1")
    compare("XADD", "s", "LIMIT", "10", "1-0", "a", "1")
    compare("XADD", "s", "MAXLEN", "5", "LIMIT", "10", "1-0", "a", "1")
    compare("XADD", "s", "MAXLEN", "~", "5", "LIMIT", "-1", "1-0", "a", "1")
    compare("XADD", "s", "MINID", "abc", "1-0", "a", "1")
    for i in range(1, 400):
        compare("XADD", "s", "MAXLEN", "~", "150", f"{i}-0", "f", "v")
    compare("XLEN", "s")
    compare("XINFO", "STREAM", "s")
    compare("XADD", "s", "MAXLEN", "=", "100", "400-0", "f", "v")
    compare("XLEN", "s")
    compare("XADD", "s", "MINID", "~", "350", "401-0", "f", "v")
    compare("XLEN", "s")
    compare("XADD", "s", "MINID", "360", "402-0", "f", "v")
    compare("XRANGE", "s", "-", "+", "COUNT", "2")
    compare("XADD", "s", "MAXLEN", "~", "0", "LIMIT", "30", "403-0", "f", "v")
    compare("XLEN", "s")


def test_xtrim(compare):
    compare("XTRIM", "s", "MAXLEN", "1")
    compare("XTRIM", "s")
    compare("XTRIM", "s", "FOO")
    compare("XTRIM", "s", "MAXLEN", "1", "LIMIT", "2")
    for i in range(1, 300):
        compare("XADD", "s", f"{i}-0", "f", "v" * (i % 7), "x", "y")
    compare("XTRIM", "s", "MAXLEN", "~", "120")
    compare("XTRIM", "s", "MAXLEN", "~", "100", "LIMIT", "100")
    compare("XTRIM", "s", "MAXLEN", "150")
    compare("XTRIM", "s", "MINID", "~", "200")
    compare("XTRIM", "s", "MINID", "230")
    compare("XTRIM", "s", "MAXLEN", "0", "LIMIT", "0")
    compare("XLEN", "s")
    compare("XINFO", "STREAM", "s")


def test_xrange_xrevrange(compare):
    _fill(compare, n=10)
    compare("XRANGE", "s", "-", "+")
    compare("XRANGE", "s", "3", "5")
    compare("XRANGE", "s", "(3-0", "(5-0")
    compare("XRANGE", "s", "(3", "+", "COUNT", "2")
    compare("XRANGE", "s", "-", "+", "COUNT", "0")
    compare("XRANGE", "s", "-", "+", "COUNT", "-5")
    compare("XRANGE", "s", "-", "+", "COUNT")
    compare("XRANGE", "s", "-", "+", "FOO", "1")
    compare("XRANGE", "s", "(-", "+")
    compare("XRANGE", "s", "(18446744073709551615-18446744073709551615", "+")
    compare("XRANGE", "s", "-", "(0-0")
    compare("XRANGE", "s", "x", "+")
    compare("XRANGE", "s", "5", "3")
    compare("XREVRANGE", "s", "+", "-")
    compare("XREVRANGE", "s", "+", "-", "COUNT", "3")
    compare("XREVRANGE", "s", "(7", "(2")
    compare("XREVRANGE", "s", "5", "5")
    compare("XRANGE", "nokey", "-", "+")
    compare("XREVRANGE", "nokey", "+", "-", "COUNT", "0")


def test_xdel_and_first_id(compare):
    _fill(compare, n=6)
    compare("XDEL", "s", "1-0", "3-0", "9-0")
    compare("XDEL", "s", "bad")
    compare("XDEL", "nokey", "1-0")
    compare("XLEN", "s")
    compare("XRANGE", "s", "-", "+")
    compare("XINFO", "STREAM", "s")
    compare("XDEL", "s", "2-0", "4-0", "5-0", "6-0")
    compare("XLEN", "s")
    compare("EXISTS", "s")
    compare("XINFO", "STREAM", "s")
    compare("XADD", "s", "3-0", "f", "v")


def test_xread(compare):
    _fill(compare, "a", 3)
    _fill(compare, "b", 3, start=10)
    compare("XREAD", "STREAMS", "a", "b", "0", "0")
    compare("XREAD", "COUNT", "1", "STREAMS", "a", "b", "1", "10")
    compare("XREAD", "STREAMS", "a", "b", "$", "$")
    compare("XREAD", "STREAMS", "a", "nokey", "2", "0")
    compare("XREAD", "STREAMS", "a", "b", "0")
    compare("XREAD", "STREAMS", "a", ">")
    compare("XREAD", "GROUP", "g", "c", "STREAMS", "a", "0")
    compare("XREAD", "NOACK", "STREAMS", "a", "0")
    compare("XREAD", "COUNT", "x", "STREAMS", "a", "0")
    compare("XREAD", "BLOCK", "-1", "STREAMS", "a", "0")
    compare("XREAD", "BLOCK", "x", "STREAMS", "a", "0")
    compare("XREAD", "BLOCK", "10", "STREAMS", "a", "$")
    compare("XREAD", "FOO", "STREAMS", "a", "0")
    compare("XREAD", "COUNT", "1")
    compare("XREAD", "STREAMS", "a", "bad")


def test_groups_basic(compare):
    compare("XGROUP", "CREATE", "s", "g", "$")
    compare("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    compare("XGROUP", "CREATE", "s", "g", "$", "MKSTREAM")
    compare("XGROUP", "CREATE", "s", "g2", "0", "ENTRIESREAD", "-2")
    compare("XGROUP", "CREATE", "s", "g2", "0", "FOO")
    compare("XGROUP", "CREATE", "s")
    compare("XGROUP", "FOO", "s", "g")
    compare("XGROUP", "HELP")
    compare("XGROUP", "SETID", "s", "nog", "0")
    compare("XGROUP", "CREATECONSUMER", "s", "g", "alice")
    compare("XGROUP", "CREATECONSUMER", "s", "g", "alice")
    compare("XGROUP", "DELCONSUMER", "s", "g", "bob")
    _fill(compare, n=5)
    compare("XREADGROUP", "GROUP", "g", "alice", "COUNT", "2", "STREAMS", "s", ">")
    compare("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">")
    compare("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">")
    compare("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0")
    compare("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "$")
    compare("XREADGROUP", "GROUP", "nog", "alice", "STREAMS", "s", ">")
    compare("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "nokey", ">")
    compare("XREADGROUP", "STREAMS", "s", ">")
    compare("XPENDING", "s", "g")
    pending(compare, "s", "g", "-", "+", "10", "alice")
    compare("XPENDING", "s", "nog")
    compare("XPENDING", "s", "g", "-", "+")
    pending(compare, "s", "g", "IDLE", "x", "-", "+", "10")
    pending(compare, "s", "g", "-", "+", "10", "nobody")
    compare("XACK", "s", "g", "1-0", "9-0")
    compare("XACK", "s", "g", "bad")
    compare("XACK", "s", "nog", "1-0")
    compare("XPENDING", "s", "g")
    compare("XGROUP", "DELCONSUMER", "s", "g", "bob")
    compare("XPENDING", "s", "g")
    compare("XGROUP", "SETID", "s", "g", "0", "ENTRIESREAD", "0")
    compare("XINFO", "GROUPS", "s")
    compare("XREADGROUP", "GROUP", "g", "carol", "NOACK", "STREAMS", "s", ">")
    compare("XINFO", "GROUPS", "s")
    compare("XPENDING", "s", "g")
    compare("XGROUP", "DESTROY", "s", "g")
    compare("XGROUP", "DESTROY", "s", "g")
    compare("XINFO", "GROUPS", "s")
    compare("XGROUP", "CREATE", "nokey", "g", "$")
    compare("XINFO", "GROUPS", "nokey")
    compare("XINFO", "FOO", "s")
    compare("XINFO", "HELP")
    compare("XINFO", "STREAM", "s", "FULL", "COUNT", "x")
    compare("XINFO", "STREAM", "s", "FOO")


def test_lag_and_entries_read(compare):
    _fill(compare, n=5)
    compare("XGROUP", "CREATE", "s", "g", "0")
    compare("XINFO", "GROUPS", "s")
    compare("XREADGROUP", "GROUP", "g", "c", "COUNT", "2", "STREAMS", "s", ">")
    compare("XINFO", "GROUPS", "s")
    compare("XDEL", "s", "4-0")
    compare("XINFO", "GROUPS", "s")
    compare("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")
    compare("XINFO", "GROUPS", "s")
    compare("XADD", "s", "9-0", "f", "v")
    compare("XINFO", "GROUPS", "s")
    compare("XGROUP", "CREATE", "s", "g2", "3-0")
    compare("XINFO", "GROUPS", "s")
    compare("XSETID", "s", "10-0", "ENTRIESADDED", "20", "MAXDELETEDID", "9-5")
    compare("XINFO", "GROUPS", "s")
    compare("XINFO", "STREAM", "s")


def test_xsetid(compare):
    compare("XSETID", "nokey", "1-0")
    _fill(compare, n=3)
    compare("XSETID", "s", "2-0")
    compare("XSETID", "s", "3-0", "ENTRIESADDED", "1")
    compare("XSETID", "s", "3-0", "ENTRIESADDED", "-1")
    compare("XSETID", "s", "3-0", "MAXDELETEDID", "4-0")
    compare("XSETID", "s", "3-0", "FOO")
    compare("XSETID", "s", "100-0", "ENTRIESADDED", "50", "MAXDELETEDID", "99-0")
    compare("XINFO", "STREAM", "s")
    compare("XADD", "s", "50-0", "a", "b")
    compare("XADD", "s", "100-*", "a", "b")


def test_xclaim_and_xautoclaim(compare):
    _fill(compare, n=6)
    compare("XGROUP", "CREATE", "s", "g", "0")
    compare("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", ">")
    compare("XCLAIM", "s", "g", "bob", "0", "1-0", "2-0", "JUSTID")
    compare("XCLAIM", "s", "g", "bob", "0", "3-0", "RETRYCOUNT", "7")
    compare("XCLAIM", "s", "nog", "bob", "0", "3-0")
    compare("XCLAIM", "s", "g", "bob", "x", "3-0")
    compare("XCLAIM", "s", "g", "bob", "0", "3-0", "FOO")
    compare("XCLAIM", "s", "g", "bob", "0", "3-0", "IDLE", "x")
    compare("XCLAIM", "s", "g", "bob", "0", "3-0", "TIME", "x")
    compare("XCLAIM", "s", "g", "bob", "0", "3-0", "RETRYCOUNT", "x")
    compare("XCLAIM", "s", "g", "bob", "0", "3-0", "LASTID", "x")
    compare("XCLAIM", "s", "g", "bob", "999999999", "4-0")
    compare("XPENDING", "s", "g")
    pending(compare, "s", "g", "-", "+", "10", "bob")
    compare("XDEL", "s", "5-0")
    compare("XCLAIM", "s", "g", "carol", "0", "5-0", "6-0", "JUSTID")
    compare("XPENDING", "s", "g")
    compare("XACK", "s", "g", "6-0")
    compare("XCLAIM", "s", "g", "dave", "0", "6-0", "FORCE", "JUSTID", "LASTID", "50-0")
    compare("XINFO", "GROUPS", "s")
    compare("XAUTOCLAIM", "s", "g", "erin", "0", "0", "COUNT", "2", "JUSTID")
    compare("XAUTOCLAIM", "s", "g", "erin", "0", "0", "COUNT", "2")
    compare("XDEL", "s", "3-0")
    compare("XAUTOCLAIM", "s", "g", "erin", "0", "0")
    compare("XAUTOCLAIM", "s", "g", "erin", "0", "0", "COUNT", "0")
    compare("XAUTOCLAIM", "s", "g", "erin", "x", "0")
    compare("XAUTOCLAIM", "s", "g", "erin", "0", "x")
    compare("XAUTOCLAIM", "s", "g", "erin", "0", "0", "FOO")
    compare("XAUTOCLAIM", "s", "nog", "erin", "0", "0")
    compare("XPENDING", "s", "g")
    compare("XINFO", "CONSUMERS", "s", "nog")


def test_wrongtype(compare):
    compare("SET", "k", "v")
    for args in (
        ("XLEN", "k"),
        ("XRANGE", "k", "-", "+"),
        ("XDEL", "k", "1-0"),
        ("XTRIM", "k", "MAXLEN", "1"),
        ("XREAD", "STREAMS", "k", "0"),
        ("XGROUP", "CREATE", "k", "g", "$"),
        ("XACK", "k", "g", "1-0"),
        ("XPENDING", "k", "g"),
        ("XINFO", "STREAM", "k"),
        ("XSETID", "k", "1-0"),
        ("XCLAIM", "k", "g", "c", "0", "1-0"),
        ("XAUTOCLAIM", "k", "g", "c", "0", "0"),
    ):
        compare(*args)


@pytest.mark.parametrize("cmd", ["XADD", "XRANGE", "XREAD", "XREADGROUP", "XGROUP", "XINFO", "XCLAIM"])
def test_arity(compare, cmd):
    compare(cmd)
    compare(cmd, "k")


# -- DUMP / RESTORE in Redis's RDB_TYPE_STREAM_LISTPACKS_2 -------------------------


def _build_stream(c, key="s"):
    for i in range(1, 260):
        fields = ["f", f"v{i}", "n", str(i)] if i % 5 else ["other", "x" * (i % 70), "n", str(-i)]
        c.execute_command("XADD", key, f"{i}-{i % 3}", *fields)
    c.execute_command("XDEL", key, "7-1", "150-0", "201-0")
    c.execute_command("XTRIM", key, "MAXLEN", "240")
    c.execute_command("XGROUP", "CREATE", key, "g1", "0")
    c.execute_command("XGROUP", "CREATE", key, "g2", "$", "ENTRIESREAD", "3")
    c.execute_command("XREADGROUP", "GROUP", "g1", "alice", "COUNT", "5", "STREAMS", key, ">")
    c.execute_command("XREADGROUP", "GROUP", "g1", "bob", "COUNT", "3", "STREAMS", key, ">")
    c.execute_command("XGROUP", "CREATECONSUMER", key, "g1", "carol")
    c.execute_command("XACK", key, "g1", "22-1")


def _state(c, key="s"):
    full = c.execute_command("XINFO", "STREAM", key, "FULL", "COUNT", "0")
    full = dict(zip(full[::2], full[1::2], strict=True)) if isinstance(full, list) else full
    groups = []
    for g in full.pop(b"groups"):
        g = dict(zip(g[::2], g[1::2], strict=True)) if isinstance(g, list) else g
        consumers = []
        for cons in g.pop(b"consumers"):
            cons = dict(zip(cons[::2], cons[1::2], strict=True)) if isinstance(cons, list) else cons
            consumers.append(cons)
        groups.append((g, consumers))
    return full, groups, c.execute_command("XRANGE", key, "-", "+")


@pytest.mark.parametrize("direction", ["redis-to-shardkv", "shardkv-to-redis"])
def test_dump_restore_across_servers(compare, direction):
    src, dst = (
        (compare.real, compare.ours) if direction == "redis-to-shardkv" else (compare.ours, compare.real)
    )
    _build_stream(src)
    payload = src.execute_command("DUMP", "s")
    assert dst.execute_command("RESTORE", "s2", "0", payload) == b"OK"
    assert _state(dst, "s2") == _state(src, "s")
    dst.execute_command("XADD", "s2", "1000-0", "a", "b")
    src.execute_command("XADD", "s", "1000-0", "a", "b")
    assert _state(dst, "s2") == _state(src, "s")


def test_dump_restore_same_server(compare):
    _build_stream(compare.real)
    _build_stream(compare.ours)
    for c in (compare.real, compare.ours):
        c.execute_command("RESTORE", "copy", "0", c.execute_command("DUMP", "s"))
    compare("XINFO", "STREAM", "copy")
    compare("XRANGE", "copy", "-", "+", "COUNT", "20")
    compare("XINFO", "GROUPS", "copy")
    compare("TYPE", "copy")
    compare("RESTORE", "bad", "0", b"\x13\x01\x00" + b"\x0a\x00" + b"\x00" * 8)


def test_restore_redis_62_payload(compare):
    """A DUMP of Redis 6.2 (RDB_TYPE_STREAM_LISTPACKS, type 15) with groups:
    entries-added and entries-read are derived as Redis 7.0 derives them."""
    payload = bytes.fromhex(
        "0f01100000000000000001000000000000000000c3404a40571657000000230002010401010184"
        "6461746105000103010020010381610204200a000140 0a0062600a000240 0a0063600a40 2201"
        "8164200a4039200a0065600a0005400a0066200a00ff020600020267310500040000000000000001"
        "00000000000000003ef783437a0100000100000000000000020000000000000000 3ef783437a0100"
        "0001000000000000000400000000000000003ef783437a010000010000000000000005000000000000"
        "00003ef783437a01000001010363313 13ef783437a01000004000000000000000100000000000000"
        "00000000000000000200000000000000000000000000000004000000000000000000000000000000"
        "050000000000000000026732000000000900 3d52ef6867521dfa".replace(" ", "")
    )
    compare("RESTORE", "x", "0", payload)
    compare("XINFO", "STREAM", "x")
    compare("XINFO", "GROUPS", "x")
    compare("XPENDING", "x", "g1")


def test_xread_keys_on_several_shards(compare):
    """a, b, c and d live on four shards of the test server."""
    for i, key in enumerate(["a", "b", "c", "d"]):
        compare("XADD", key, f"{i + 1}-0", "k", key)
        compare("XADD", key, f"{i + 5}-0", "k", key)
    compare("XREAD", "COUNT", "1", "STREAMS", "d", "a", "c", "b", "0", "0", "0", "0")
    compare("XREAD", "STREAMS", "a", "b", "c", "d", "2", "2", "2", "2")
    compare("XREAD", "STREAMS", "a", "b", "9", "9")
    compare("XREAD", "STREAMS", "a", "nokey", "0", "0")
    compare("SET", "str", "x")
    compare("XREAD", "STREAMS", "a", "str", "0", "0")
    compare("XREAD", "STREAMS", "a", "b", "0", "bad")
    compare("XREAD", "BLOCK", "10", "STREAMS", "a", "b", "$", "$")
    compare("XGROUP", "CREATE", "a", "g", "0")
    compare("XGROUP", "CREATE", "b", "g", "0")
    compare("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "a", "b", ">", ">")
    compare("XREADGROUP", "GROUP", "g", "c", "STREAMS", "a", "c", ">", ">")
    compare("XPENDING", "a", "g")
    compare("XPENDING", "b", "g")


def test_command_info_of_the_stream_commands(compare):
    """Name, arity, flags, key positions and ACL categories (the table does
    not model Redis's tips and key-spec notes)."""
    names = ["xadd", "xlen", "xrange", "xrevrange", "xdel", "xtrim", "xread", "xreadgroup", "xsetid"]
    names += ["xack", "xpending", "xclaim", "xautoclaim"]
    theirs = compare.real.execute_command("COMMAND", "INFO", *names)
    ours = compare.ours.execute_command("COMMAND", "INFO", *names)
    assert [row[:7] for row in ours] == [row[:7] for row in theirs]
    compare("COMMAND", "GETKEYS", "XREAD", "COUNT", "2", "STREAMS", "a", "b", "0", "0")
    compare("COMMAND", "GETKEYS", "XREADGROUP", "GROUP", "streams", "c", "STREAMS", "k", ">")


def test_stream_reads_from_scripts(compare):
    compare("XADD", "s", "1-0", "f", "v")
    compare("EVAL", "return redis.call('xread','streams','s','0')", "0")
    compare("EVAL", "return redis.call('xread','block','0','streams','s','$')", "0")
    compare("EVAL", "return redis.call('XREAD','COUNT','1','BLOCK','10','streams','s','$')", "0")
    compare("EVAL", "return redis.call('xreadgroup','group','g','c','streams','s','>')", "0")
    compare("XGROUP", "CREATE", "s", "g", "0")
    compare("EVAL", "return redis.call('xreadgroup','group','g','c','streams','s','>')", "0")
    compare("XPENDING", "s", "g")
