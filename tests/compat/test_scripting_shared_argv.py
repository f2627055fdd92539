"""A cached script's shared ARGV (and KEYS) table, compared with
redis-server: engine.one_key lets a run of one key and one argument reuse
one ARGV table of the script's when its bytecode only indexes ARGV
(luabytecode.only_indexed), so no run may see what an earlier run of it
left there (a second argument, an argument after an error, a metatable,
a value written in), nor hold the table, whichever way the script reaches
ARGV: aliased, passed to a function, through _G, rawget, loadstring,
a nested function, pairs, next, unpack, select, or reassigned; in a
transaction, and in a run that turns to another shard's key.

Each script runs with 0, 1, 2, 1, 0, 1 arguments and so on in turn (the
lean path's three entries), on its own key, by EVALSHA; every reply must
be redis-server's byte for byte.
"""

from __future__ import annotations

import socket

import redis

from tests.support.placement import key_on
from tests.support.resp import encode_command, read_raw_reply

SCRIPTS = [
    # only indexed: the table shared by the runs of one argument
    "return {#ARGV, tostring(ARGV[1]), tostring(ARGV[2]), tostring(ARGV[3])}",
    "return ARGV[2] or 'none'",
    "if ARGV[1] == 'boom' then error('boom') end return {#ARGV, tostring(ARGV[1]), tostring(ARGV[2])}",
    "if ARGV[1] == 'boom' then redis.call('nosuchcommand') end return {#ARGV, tostring(ARGV[2])}",
    "local g = function() return ARGV[2] end return {#ARGV, tostring(g()), tostring(ARGV[1])}",
    "local n = 0 for i = 1, 4 do if ARGV[i] then n = n + 1 end end return {n, #ARGV}",
    "ARGV = {'replaced'} return ARGV[1]",
    "if ARGV[1] == 'b' then ARGV = {'x', 'y'} end return {#ARGV, tostring(ARGV[2])}",
    "local ok = pcall(function() return ARGV[1] .. nil end) return {tostring(ok), #ARGV, tostring(ARGV[2])}",
    "return {#KEYS, tostring(KEYS[2]), #ARGV, tostring(ARGV[2])}",
    # the table held, written or reached another way: a table of its own
    "if ARGV[1] == 'b' then ARGV[2] = 'left' ARGV[3] = 'too' end return {#ARGV, tostring(ARGV[2])}",
    "if ARGV[1] == 'b' then KEYS[2] = 'left' end return {#KEYS, tostring(KEYS[2])}",
    "local a = ARGV if a[1] == 'b' then a[2] = 'alias' end return {#a, tostring(a[2])}",
    "if ARGV[1] == 'b' then table.insert(ARGV, 'ins') end return {#ARGV, tostring(ARGV[2])}",
    "local f = function(t) if t[1] == 'b' then t[5] = 'f' end return t end return {#f(ARGV), tostring(ARGV[5])}",
    "if ARGV[1] == 'b' then setmetatable(ARGV, {__index = function() return 'meta' end}) end "
    "return {tostring(ARGV[2]), type(getmetatable(ARGV))}",
    "if ARGV[1] == 'b' then rawset(ARGV, 2, 'raw') end return {#ARGV, tostring(rawget(ARGV, 2))}",
    "local t = _G.ARGV if t[1] == 'b' then t[2] = 'g' end return {#_G['ARGV'], tostring(_G.ARGV[2])}",
    "local t = rawget(_G, 'ARGV') if t and t[1] == 'b' then t[2] = 'r' end return {#ARGV, tostring(ARGV[2])}",
    'return loadstring(\'if ARGV[1] == "b" then ARGV[2] = "ls" end return {#ARGV, tostring(ARGV[2])}\')()',
    "local n = 0 for k, v in pairs(ARGV) do n = n + 1 end return {n, tostring(next(ARGV))}",
    "return {select('#', unpack(ARGV)), #ARGV}",
    "return {#ARGV, table.concat(ARGV, ',')}",
    "local k = KEYS if ARGV[1] == 'b' then k[3] = 'k' end return {#k, tostring(KEYS[3]), tostring(ARGV[2])}",
    "if ARGV[1] == 'boom' then local t = ARGV t[2] = 'err' error('boom') end return {#ARGV, tostring(ARGV[2])}",
    # a key of the other shard (of two): the run undone, then run across shards
    "if ARGV[1] == 'b' then redis.call('get', '%(o)s') end return {#ARGV, tostring(ARGV[2])}",
    "local t = ARGV if t[1] == 'b' then redis.call('get', '%(o)s') t[2] = 'o' end return {#t, tostring(t[2])}",
]
# The arguments of each run in turn: none, one, several, one after
# several, an error's one, one after it.
RUNS = [(), ("a",), ("b", "c"), ("d",), (), ("b",), ("e",), ("boom",), ("f",), ("b", "c", "x"), ("g",), ()]


def _sans_sha(reply: bytes) -> bytes:
    """An error reply up to its ``script:`` part (the same sha both sides,
    but Redis's line numbers of loadstring's code differ: not here)."""
    return reply.split(b" script: ")[0] if reply.startswith(b"-") else reply


def test_no_run_sees_what_another_left_in_its_arguments(redis_and_shardkv_s12):
    """Every script's replies, run after run, are redis-server's: before
    f7d38da's sharing none could differ; a broken luabytecode.only_indexed
    (one that lets a held ARGV, or _G or rawget, through) makes them."""
    a = key_on(0, "a", shards=2)
    o = key_on(1, "o", shards=2)
    seen: list[list] = []
    for port in redis_and_shardkv_s12:
        c = redis.Redis(port=port)
        c.flushall()
        c.script_flush()
        shas = [c.script_load(s % {"o": o}) for s in SCRIPTS]
        names = dict(zip(shas, SCRIPTS, strict=True))
        out: list = []
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rb")
            for sha in shas:
                for argv in RUNS:
                    s.sendall(encode_command("EVALSHA", sha, "1", a, *argv))
                    out.append((names[sha], argv, _sans_sha(read_raw_reply(f))))
                # and interleaved with another script's runs (its own table)
                for argv in RUNS[:4]:
                    for other in (sha, shas[0]):
                        s.sendall(encode_command("EVALSHA", other, "1", a, *argv))
                        out.append((names[other], argv, _sans_sha(read_raw_reply(f))))
                # and in a transaction
                s.sendall(encode_command("MULTI"))
                out.append((names[sha], "MULTI", read_raw_reply(f)))
                for argv in RUNS[:4]:
                    s.sendall(encode_command("EVALSHA", sha, "1", a, *argv))
                    out.append((names[sha], argv, read_raw_reply(f)))
                s.sendall(encode_command("EXEC"))
                out.append((names[sha], "EXEC", _sans_sha(read_raw_reply(f))))
        c.close()
        seen.append(out)
    real, ours = seen
    wrong = [
        f"{x[0]!r} with {x[1]}: redis {x[2]!r}, shardkv {y[2]!r}"
        for x, y in zip(real, ours, strict=True)
        if y != x
    ]
    assert not wrong, "\n".join(wrong)
