"""EVALSHAs pipelined behind one that took the acceptor's shortcut
(``shardkv.acceptor.scripting.behind_shortcuts``), against redis-server
7.0.15, with one acceptor and with two.

The usual one (one key, with or without arguments, a settled script its
shard compiled, spelled in one case) is queued inline, by shard; anything else in the same write
(another spelling, an upper-case SHA1, one not cached, two keys, a
read-only script's write, a plain command) takes the long way.  The
replies, the keys' values and ``cmdstat_evalsha``/``cmdstat_evalsha_ro``
(calls, failed calls) are Redis's.
"""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support.acceptors import client_on
from tests.support.placement import key_on
from tests.support.resp import RespClient, encode_command

SHARDS = 2
OWN, OTHER = key_on(0, "own", SHARDS), key_on(1, "other", SHARDS)


@pytest.fixture
def servers(redis_and_shardkv_k12) -> tuple[int, int, int]:
    """(redis-server's port, shardkv's port, its acceptors: 1, then 2)."""
    return redis_and_shardkv_k12


def _connect(port: int, acceptors: int) -> RespClient:
    return client_on(port, 0, k=acceptors) if acceptors > 1 else RespClient(port, timeout=20)


def _counts(c: RespClient) -> dict[str, str]:
    """calls and failed_calls of each script command, from INFO commandstats."""
    info = c.call("INFO", "commandstats").decode()
    out = {}
    for line in info.splitlines():
        name, _, fields = line.partition(":")
        if name.startswith("cmdstat_evalsha"):
            kept = [f for f in fields.split(",") if f.startswith(("calls=", "failed_calls="))]
            out[name] = ",".join(kept)
    return out


def _run(port: int, acceptors: int, get: str, incr: str) -> list:
    with _connect(port, acceptors) as c:
        c.command("FLUSHALL")
        sha_get = c.command("SCRIPT", "LOAD", get).decode()
        sha_incr = c.command("SCRIPT", "LOAD", incr).decode()
        c.command("CONFIG", "RESETSTAT")
        for key in (OWN, OTHER):  # settled, and compiled on both shards
            c.call("EVALSHA", sha_get, "1", key)
            c.call("EVALSHA", sha_incr, "1", key)
        commands = [
            ["EVALSHA", sha_get, "1", OWN],  # the shortcut: the client waits
            ["EVALSHA", sha_incr, "1", OTHER],
            ["evalsha", sha_get, "1", OTHER],
            ["EVALSHA", sha_incr, "1", OWN],
            ["EvalSha", sha_incr, "1", OWN],  # another spelling
            ["EVALSHA_RO", sha_get, "1", OWN],
            ["evalsha_ro", sha_get, "1", OTHER],
            ["EVALSHA", sha_get.upper(), "1", OWN],
            ["EVALSHA", "0" * 40, "1", OWN],  # not cached: NOSCRIPT
            ["EVALSHA", sha_incr, "1", OTHER],
            ["EVALSHA", sha_get, "1", OWN, "token"],  # arguments (a lock's release)
            ["EVALSHA", sha_incr, "1", OTHER, "a", "b"],
            ["EVALSHA_RO", sha_get, "1", OTHER, "token"],
            ["EVALSHA_RO", sha_incr, "1", OWN],  # a write: refused
            ["EVALSHA", sha_get, "2", OWN, OWN],
            ["EVALSHA", sha_get, "x", OWN],
            ["EVALSHA", sha_incr, "1", OWN],
            ["GET", OWN],  # waits for the scripts
            ["EVALSHA", sha_incr, "1", OTHER],
            ["INCR", OTHER],
        ]
        c.sock.sendall(b"".join(encode_command(*command) for command in commands))
        replies = [c.read() for _ in commands]
        return [replies, c.call("GET", OWN), c.call("GET", OTHER), _counts(c)]


def test_evalshas_pipelined_behind_a_shortcut(servers):
    real, ours, acceptors = servers
    tag = uuid.uuid4().hex
    get = f"-- {tag}\nreturn redis.call('get', KEYS[1])"
    incr = f"-- {tag}\nreturn redis.call('incr', KEYS[1])"
    expected = _run(real, 1, get, incr)
    assert expected[1:3] == [b"$1\r\n4\r\n", b"$1\r\n6\r\n"]
    assert _run(ours, acceptors, get, incr) == expected


def _errors(c: RespClient) -> dict[str, str]:
    """The error counts of INFO errorstats."""
    info = c.call("INFO", "errorstats").decode()
    return dict(line.partition(":")[::2] for line in info.splitlines() if line.startswith("errorstat_"))


def _one_write(port: int, acceptors: int, incr: str, commands: list[list[str]]) -> list:
    """``commands`` in one write (``SHA`` standing for the script's SHA1)
    after one settled call of ``incr`` on OWN: the replies, OWN's value,
    the script commands' counts and the error counts."""
    with _connect(port, acceptors) as c:
        c.command("FLUSHALL")
        sha = c.command("SCRIPT", "LOAD", incr).decode()
        c.call("EVALSHA", sha, "1", OWN)
        c.command("CONFIG", "RESETSTAT")
        sent = [[sha if arg == "SHA" else arg for arg in command] for command in commands]
        c.sock.sendall(b"".join(encode_command(*command) for command in sent))
        replies = [c.read() for _ in sent]
        return [replies, c.call("GET", OWN), _counts(c), _errors(c)]


def test_an_empty_command_name_behind_a_shortcut(servers):
    """A command named "" is no EVALSHA: the spelling last taken was
    nothing yet, not the empty name."""
    real, ours, acceptors = servers
    incr = f"-- {uuid.uuid4().hex}\nreturn redis.call('incr', KEYS[1])"
    commands = [["EVALSHA", "SHA", "1", OWN], ["", "SHA", "1", OWN], ["GET", OWN]]
    expected = _one_write(real, 1, incr, commands)
    assert expected[0][1].startswith(b"-ERR unknown command ''")
    assert _one_write(ours, acceptors, incr, commands) == expected


def test_an_empty_command_name_after_a_fallback_behind_a_shortcut(servers):
    """After a command that takes the long way, nothing is taken: an empty
    name and SHA1 do not match what was taken before it."""
    real, ours, acceptors = servers
    incr = f"-- {uuid.uuid4().hex}\nreturn redis.call('incr', KEYS[1])"
    commands = [
        ["EVALSHA", "SHA", "1", OWN],
        ["EVALSHA", "SHA", "1", OWN],
        ["EVALSHA", "SHA", "2", OWN, OWN],  # the long way
        ["", "", "1", OWN],
    ]
    expected = _one_write(real, 1, incr, commands)
    assert expected[0][3].startswith(b"-ERR unknown command ''")
    assert _one_write(ours, acceptors, incr, commands) == expected


def test_one_scripts_evalshas_in_one_write_one_shard_compiled(servers):
    """A write of one script's EVALSHAs of one key, alike (the acceptor
    takes them in one go: ``scripting.scripts_alike``), when OTHER's
    shard has not compiled the script: those before the first on OTHER
    take the shortcut, that one and those after it the long way, after
    them; and with OTHER first, none.  Replies, values and counts as
    Redis's."""
    real, ours, acceptors = servers
    incr = f"-- {uuid.uuid4().hex}\nreturn redis.call('incr', KEYS[1])"
    for keys in ([OWN, OWN, OTHER, OWN, OTHER], [OTHER, OWN, OWN]):
        commands = [["EVALSHA", "SHA", "1", key] for key in keys]
        expected = _one_write(real, 1, incr, commands)
        assert _one_write(ours, acceptors, incr, commands) == expected


# One script whose ARGV[1] picks its reply: a run of EVALSHAs of it, one
# key and one argument, takes the worker's inline run (Shard._run_batch:
# the script EVALSHA ran last) and, for a string shorter than 1024 bytes
# or an integer, its inline end.
KINDS = """
local m = ARGV[1]
if m == 'warm' then return 1 end
if m == 'str' then return redis.call('get', KEYS[1]) end
if m == 'incr' then return redis.call('incr', KEYS[1]) end
if m == 'status' then return redis.status_reply('FINE') end
if m == 'nil' then return nil end
if m == 'table' then return {1, 'a', {2, redis.call('get', KEYS[1])}} end
if m == 'err' then return redis.error_reply('MYERR mine') end
if m == 'errtbl' then return {err='ERR raw'} end
if m == 'float' then return 3.99 end
if m == 'true' then return true end
if m == 'false' then return false end
if m == 'long' then return string.rep('x', 2000) end
if m == 'pcall' then return redis.pcall('incr', KEYS[1] .. ':s') end
if m == 'raise' then redis.call('set', KEYS[1] .. ':h', 'half') return redis.call('incr', KEYS[1] .. ':s') end
if m == 'write' then return redis.call('set', KEYS[1] .. ':w', 'w') end
return redis.call('set', KEYS[1], m)
"""
# KEYS[1] and the keys named after it share a slot: no script escapes.
TAGGED = "{%s}" % OWN
MODES = "str incr status nil table err errtbl float true false long pcall raise".split()


_ASIDE = ("cmdstat_config", "cmdstat_info", "cmdstat_slowlog")  # the test's own commands


def _stats(c: RespClient, section: str, prefix: str) -> list[str]:
    """The lines of an INFO section, their times left out."""
    info = c.call("INFO", section).decode()
    return sorted(
        re.sub(r"usec=\d+,usec_per_call=[\d.]+,", "", line)
        for line in info.splitlines()
        if line.startswith(prefix) and not line.startswith(_ASIDE)
    )


def _dirty(c: RespClient) -> int:
    """rdb_changes_since_last_save: the writes counted."""
    return int(c.command("INFO", "persistence").split(b"rdb_changes_since_last_save:")[1].split()[0])


def _kinds(port: int, acceptors: int, body: str) -> list:
    with _connect(port, acceptors) as c:
        c.command("FLUSHALL")
        sha = c.command("SCRIPT", "LOAD", body).decode()
        c.call("EVALSHA", sha, "1", TAGGED, "warm")  # settled
        c.call("SET", TAGGED + ":s", "not a number")
        c.command("CONFIG", "RESETSTAT")
        c.command("SLOWLOG", "RESET")
        c.command("CONFIG", "SET", "slowlog-log-slower-than", "0")
        try:
            commands = [["EVALSHA", sha, "1", TAGGED, "0"]]
            for mode in MODES:  # each twice, and after the GET script
                commands += [["EVALSHA", sha, "1", TAGGED, mode]] * 2 + [["EVALSHA", sha, "1", TAGGED, "str"]]
            commands += [["EVALSHA_RO", sha, "1", TAGGED, "write"]] * 2  # refused
            commands += [["evalsha_ro", sha, "1", TAGGED, "str"]] * 2
            dirty = _dirty(c)
            c.sock.sendall(b"".join(encode_command(*command) for command in commands))
            replies = [c.read() for _ in commands]
            dirty = _dirty(c) - dirty
        finally:
            c.command("CONFIG", "SET", "slowlog-log-slower-than", "10000")
        slow = [entry[3] for entry in reversed(c.command("SLOWLOG", "GET", "-1"))]
        values = [c.call("GET", key) for key in (TAGGED, TAGGED + ":h", TAGGED + ":w")]
        return [replies, values, dirty, _stats(c, "commandstats", "cmdstat_"), _errors(c), slow]


def test_evalshas_of_every_reply_kind_in_one_write(servers):
    """Strings (short and long), integers, status, nil, false, true, a
    float, tables, error replies, an error of a call midway after a write,
    EVALSHA_RO's refused write: the replies, the values, the writes counted
    (rdb_changes_since_last_save), commandstats of EVALSHA and of the
    commands called, errorstats, and SLOWLOG (every command, its calls
    first) as Redis's."""
    real, ours, acceptors = servers
    body = f"-- {uuid.uuid4().hex}\n{KINDS}"
    expected = _kinds(real, 1, body)
    assert expected[1][1] == b"$4\r\nhalf\r\n"
    assert _kinds(ours, acceptors, body) == expected


def _at_oom(port: int, acceptors: int, body: str) -> list:
    """One write each of EVALSHAs and of EVALSHA_ROs of ``body`` (alike:
    ``scripting.scripts_alike``) and one of them behind another command
    (``evalsha_fast``), over maxmemory: the replies, the script
    commands' counts (rejected calls too) and the error counts."""
    with _connect(port, acceptors) as c:
        c.command("FLUSHALL")
        sha = c.command("SCRIPT", "LOAD", body).decode()
        for key in (OWN, OTHER):  # settled, and compiled on both shards
            c.call("EVALSHA", sha, "1", key)
        c.command("CONFIG", "RESETSTAT")
        c.command("CONFIG", "SET", "maxmemory", "1")
        try:
            replies = []
            for write in (
                [["EVALSHA", sha, "1", key] for key in (OWN, OTHER, OWN)],
                [["EVALSHA_RO", sha, "1", key] for key in (OWN, OTHER, OWN)],
                [["PING"], ["EVALSHA_RO", sha, "1", OWN]],
            ):
                c.sock.sendall(b"".join(encode_command(*command) for command in write))
                replies += [c.read() for _ in write]
        finally:
            c.command("CONFIG", "SET", "maxmemory", "0")
        stats = _stats(c, "commandstats", "cmdstat_evalsha")
        return [replies, c.call("GET", OWN), stats, _errors(c)]


def test_evalshas_of_a_denyoom_script_over_maxmemory(servers):
    """A script whose shebang declares no flags makes EVALSHA (EVALSHA_RO
    too) ``denyoom``: over maxmemory Redis's processCommand refuses each
    with OOM, a rejected call, before EVALSHA_RO's refusal of a write
    script; the shortcuts (one command, a write of them alike) do too."""
    real, ours, acceptors = servers
    body = f"#!lua\n-- {uuid.uuid4().hex}\nreturn redis.call('incr', KEYS[1])"
    expected = _at_oom(real, 1, body)
    assert expected[0][3].startswith(b"-OOM ")
    assert _at_oom(ours, acceptors, body) == expected
