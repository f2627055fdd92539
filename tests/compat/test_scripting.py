"""Lua scripting: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT.

Most tests are differential: the same script runs on redis-server and on
shardkv (4 shards), in RESP3 and RESP2, and the replies, errors included,
must be equal.  Keys ``h``, ``z``, ``s`` and ``k`` live on different
shards, so scripts that touch several of them, or touch keys they did not
declare, exercise the cross-shard path.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading

import pytest
import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.placement import key_on, on_shards
from tests.support.processes import wait_busy
from tests.support.rawsocket import both_after
from tests.support.servers import start_redis, start_shardkv


def _norm(value: object) -> object:
    """Errors nested in replies compare by their text."""
    if isinstance(value, Exception):
        return ("error", str(value))
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


class _Same:
    """Like the ``compare`` fixture, with errors inside arrays compared by text."""

    def __init__(self, compare) -> None:
        self.real = compare.real
        self.ours = compare.ours

    def __call__(self, *args: object) -> object:
        expected = _norm(compare_run(self.real, args))
        got = _norm(compare_run(self.ours, args))
        assert got == expected, f"{args!r}: redis replied {expected!r}, shardkv replied {got!r}"
        return got


def compare_run(client: redis.Redis, args: tuple) -> object:
    try:
        return client.execute_command(*args)
    except redis.ResponseError as e:
        return ("error", str(e))


@pytest.fixture
def same(compare):
    return _Same(compare)


# (script, keys, args): each runs with the data set up by _setup.
SCRIPTS = [
    # Lua -> RESP conversions
    ("return 1", [], []),
    ("return 3.99", [], []),
    ("return -3.99", [], []),
    ("return 2^53", [], []),
    ("return {1e15, 1e16, -1e17}", [], []),
    ("return 'x' .. 1", [], []),
    ("return true", [], []),
    ("return false", [], []),
    ("return nil", [], []),
    ("return {1, 2, {3, 'x', {ok='st'}}, false, true}", [], []),
    ("return {1, nil, 3}", [], []),
    ("return {}", [], []),
    ("return {ok='fine'}", [], []),
    ("return {ok='a\\r\\nb'}", [], []),
    ("return {err='ERR custom'}", [], []),
    ("return {err='MYCODE custom'}", [], []),
    ("return {1, {err='nested'}}", [], []),
    ("return {double=3.14}", [], []),
    ("return {big_number='1234567890123456789012'}", [], []),
    ("return {map={a=1}}", [], []),
    ("return {set={a=true}}", [], []),
    ("return {verbatim_string={format='txt', string='hello'}}", [], []),
    # err, ok, big_number and a verbatim string's fields count only as strings
    ("return {err=5}", [], []),
    ("return {ok=5}", [], []),
    ("return {big_number=5}", [], []),
    ("return {verbatim_string={format=123, string='x'}}", [], []),
    ("return {verbatim_string={format='txt', string=5}}", [], []),
    ("return {err=true, 'x'}", [], []),
    ("return {0/0, 1/0, -1/0}", [], []),
    ("return redis.status_reply('FINE')", [], []),
    ("return redis.error_reply('MY custom')", [], []),
    ("return redis.error_reply('ERR')", [], []),
    ("return redis.error_reply('-X y')", [], []),
    ("return redis.status_reply(1)", [], []),
    ("return KEYS", ["h", "k"], []),
    ("return ARGV", ["h"], ["a", "b"]),
    ("return #KEYS + #ARGV", ["h"], ["a"]),
    # RESP -> Lua conversions
    ("return redis.call('get', 'nosuchkey')", [], []),
    ("return type(redis.call('get', 'nosuchkey'))", [], []),
    ("return redis.call('hgetall', KEYS[1])", ["h"], []),
    ("return redis.call('zrange', KEYS[1], 0, -1, 'withscores')", ["z"], []),
    ("return redis.call('zscore', KEYS[1], 'a')", ["z"], []),
    ("return redis.call('set', KEYS[1], 'v')", ["k"], []),
    ("return redis.call('type', KEYS[1])", ["h"], []),
    ("return redis.call('exists', KEYS[1], KEYS[2])", ["h", "h{h}"], []),
    ("redis.setresp(3); return redis.call('hgetall', KEYS[1])", ["h"], []),
    ("redis.setresp(3); return redis.call('smembers', KEYS[1])", ["s"], []),
    ("redis.setresp(3); return redis.call('zrange', KEYS[1], 0, -1, 'withscores')", ["z"], []),
    ("redis.setresp(3); return redis.call('get', 'nosuchkey')", [], []),
    ("redis.setresp(3); return type(redis.call('get', 'nosuchkey'))", [], []),
    ("redis.setresp(3); return redis.call('hgetall', KEYS[1]).map.f", ["h"], []),
    ("redis.setresp(3); return redis.call('zscore', KEYS[1], 'a').double", ["z"], []),
    ("redis.setresp(3); return redis.call('hexists', KEYS[1], 'f')", ["h"], []),
    ("redis.setresp(3); return {true, false}", [], []),
    ("redis.setresp(2); return {true, false}", [], []),
    ("return redis.call('echo', 1e20)", [], []),
    ("return redis.call('echo', 0.1)", [], []),
    ("return redis.call('echo', 12)", [], []),
    ("return redis.call('echo', 0/0)", [], []),  # -nan: glibc prints a NaN's sign
    ("return redis.call('echo', -(0/0))", [], []),
    ("return {redis.call('echo', 1/0), redis.call('echo', -1/0)}", [], []),
    ("return redis.call('ping')", [], []),
    ("return redis.call('ping', 'x')", [], []),
    ("return redis.call('select', 0)", [], []),
    # errors of called commands
    ("return redis.call('incr', KEYS[1])", ["h"], []),
    ("return redis.pcall('incr', KEYS[1])", ["h"], []),
    ("return redis.pcall('hget', KEYS[1])", ["h"], []),
    ("return {pcall(redis.call, 'incr', KEYS[1])}", ["h"], []),
    ("local ok, e = pcall(redis.call, 'incr', KEYS[1]); return e", ["h"], []),
    ("return redis.call('lpush', KEYS[1], 1)", ["h"], []),
    ("return redis.call('nosuch')", [], []),
    ("return redis.call('set', 'a')", [], []),
    ("return redis.call()", [], []),
    ("return redis.pcall()", [], []),
    ("return redis.call('set', KEYS[1], {})", ["k"], []),
    ("return redis.call('set', KEYS[1], nil)", ["k"], []),
    ("return redis.call('blpop', KEYS[1], 0)", ["k"], []),
    ("return redis.call('eval', 'return 1', 0)", [], []),
    ("return redis.call('multi')", [], []),
    ("return redis.call('subscribe', 'x')", [], []),
    ("return redis.call('hset', KEYS[1], 'f', 'v', 'g')", ["h"], []),
    ("return redis.call('set', KEYS[1], 'v', 'EX', 0)", ["k"], []),
    # script errors
    ("return x", [], []),
    ("x = 1", [], []),
    ("error('boom')", [], []),
    ("error({err='CODE msg'})", [], []),
    ("error()", [], []),
    ("error(123)", [], []),
    ("return 1 +", [], []),
    ("local t = nil; return t.x", [], []),
    ("return #nil", [], []),
    # the environment
    ("redis.call = 1", [], []),
    ("string.x = 1", [], []),
    ("getmetatable('').__index = 1", [], []),
    ("return getmetatable('').__index == string", [], []),
    ("return _G.redis ~= nil", [], []),
    ("return _G.foo", [], []),
    ("return rawget(_G, 'foo')", [], []),
    ("return type(_G)", [], []),
    ("return _VERSION", [], []),
    ("return redis.REDIS_VERSION", [], []),
    ("return redis.REDIS_VERSION_NUM", [], []),
    (
        "return {redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING, "
        "redis.REPL_ALL, redis.REPL_AOF, redis.REPL_NONE, redis.REPL_REPLICA, redis.REPL_SLAVE}",
        [],
        [],
    ),
    ("redis.log(redis.LOG_WARNING, 'from a test') return 1", [], []),
    ("return redis.log(1)", [], []),
    ("return redis.log('x', 'y')", [], []),
    ("return redis.log(9, 'y')", [], []),
    ("return redis.replicate_commands()", [], []),
    ("redis.set_repl(redis.REPL_ALL) return 1", [], []),
    ("return redis.set_repl(8)", [], []),
    ("return redis.setresp(4)", [], []),
    ("return redis.setresp()", [], []),
    ("return redis.sha1hex('abc')", [], []),
    ("return redis.sha1hex(123)", [], []),
    ("return redis.sha1hex()", [], []),
    # (a script that may make a -0 runs with the wide redis.call, pcall, sha1hex)
    ("local x = 1 - 1 return redis.sha1hex()", [], []),
    ("local x = 1 - 1 return redis.sha1hex(1, 2)", [], []),
    ("local x = -0\n\nreturn redis.call('nosuch', x)", [], []),
    ("local x = -0 return redis.pcall('get', x, x)", [], []),
    ("return tostring(select('#', unpack({1,2,3})))", [], []),
    ("local t = {} ; setmetatable(t, {__index = function() return 5 end}); return t.x", [], []),
    ("return {string.rep('x', 3), table.concat({1,2,3}, ','), string.byte('A'), string.char(66)}", [], []),
    ("return string.format('%5.2f', 3.14159)", [], []),
    ("return coroutine.wrap(function() coroutine.yield(7) end)()", [], []),
    ("local f = loadstring('return 1+1'); return f()", [], []),
    ("return type(collectgarbage('count'))", [], []),
    ("return tostring(0/0)", [], []),
    ("return tostring(12345678901234567890)", [], []),
    ("math.randomseed(42); return {math.random(100), math.random(100), math.random(5, 7)}", [], []),
    ("return tostring(tonumber('0x10'))", [], []),
    # libraries
    ("return cjson.encode({1,2,3,'a',{x=1}})", [], []),
    ("return cjson.encode({a='x/y', b=true, c=cjson.null, d=1.5, e=1e20, f=-0.1})", [], []),
    ("return cjson.encode({})", [], []),
    ("return cjson.encode('a\\1b\\127\"\\\\')", [], []),
    ("return cjson.encode({[1]=1,[5]=2})", [], []),
    ("return cjson.encode({[1]=1,[50]=2})", [], []),
    ("return cjson.encode(0/0)", [], []),
    ("return cjson.encode(function() end)", [], []),
    (
        'local t = cjson.decode(\'[1,2,{"a":[null,true,false,1.5,"x\\\\u00e9"]}]\'); '
        "return {t[1], t[3].a[4], tostring(t[3].a[1] == cjson.null), t[3].a[5], type(t[3].a[2])}",
        [],
        [],
    ),
    ('return cjson.decode(\'{"a":{"b":[1,2]}}\').a.b[2]', [], []),
    (
        "return {bit.band(0xff, 0x0f), bit.bor(1,2,4), bit.bxor(5,3), bit.bnot(0), bit.lshift(1, 31), "
        "bit.rshift(-1, 28), bit.arshift(-256, 4), bit.tohex(255), bit.tohex(-1, -4), bit.tobit(2^32+5), "
        "bit.rol(1, 33), bit.bswap(0x12345678)}",
        [],
        [],
    ),
    ("return struct.pack('>I2HbBi', 513, 65535, -1, 255, -2)", [], []),
    ("return {struct.unpack('>I2HbBi', struct.pack('>I2HbBi', 513, 65535, -1, 255, -2))}", [], []),
    ("return {struct.size('>iIhHbBdf'), struct.unpack('<d', struct.pack('<d', 1.5))}", [], []),
    ("return struct.pack('s', 'abc') .. struct.pack('c3', 'xyz')", [], []),
    ("return cmsgpack.pack({1,2,3}, 'abc', {a=1}, true, nil, 1.5, -1, -200, 70000, 2^40, 0.1)", [], []),
    ("return {cmsgpack.unpack(cmsgpack.pack({1,2,3}, 'abc', true, 1.5, -1, -200, 70000))}", [], []),
    ("local t = cmsgpack.unpack(cmsgpack.pack({a=1})); return t.a", [], []),
    # shebang flags
    ("#!lua\nreturn 1", [], []),
    ("#!lua flags=no-writes\nreturn redis.call('get', KEYS[1])", ["k"], []),
    ("#!lua flags=no-writes\nreturn redis.call('set', KEYS[1], 'x')", ["k"], []),
    ("#!lua flags=allow-oom,allow-stale,no-cluster,allow-cross-slot-keys\nreturn 1", [], []),
    ("#!lua flags=foo\nreturn 1", [], []),
    ("#!luax\nreturn 1", [], []),
    ("#!lua name=x\nreturn 1", [], []),
    ("#!lua", [], []),
    # the sandbox: every one of these must fail as in Redis
    ("return os.execute('true')", [], []),
    ("return io.open('/etc/passwd')", [], []),
    ("return require('os')", [], []),
    ("return package.loadlib", [], []),
    ("return loadfile('/etc/passwd')", [], []),
    ("return dofile('/etc/passwd')", [], []),
    ("return print", [], []),
    ("return debug", [], []),
    ("return loadstring(string.dump(function() return 1 end))", [], []),
    ("return getfenv(0).os", [], []),
    ("return module", [], []),
    ("return newproxy", [], []),
]


def _setup(c: redis.Redis) -> None:
    c.hset("h", mapping={"f": "v"})
    c.zadd("z", {"a": 1.5, "b": 2})
    c.sadd("s", "m")


@pytest.mark.parametrize("script,keys,args", SCRIPTS, ids=[s[0][:60] for s in SCRIPTS])
def test_script_table(same, script, keys, args):
    """Each script gives redis-server's reply, in RESP3 and in RESP2."""
    _setup(same.real)
    _setup(same.ours)
    same("EVAL", script, len(keys), *keys, *args)
    same("GET", "k")


DOUBLES = ["-0.0", "0/0", "-(0/0)", "1/0", "-1/0", "0.1", "2^53 + 1"]


@pytest.mark.parametrize("protocol", [2, 3])
def test_doubles_keep_their_sign_byte_for_byte(ports, protocol):
    """{double=...} replies (and a double nested in an array) as Redis's
    addReplyDouble writes them: -0 and a NaN keep their sign (Lua's 0/0 on
    x86 is -nan), which redis-py's floats would not show."""
    marker = b"ECHO doubles\r\n"
    request = (b"HELLO 3\r\n" if protocol == 3 else b"") + marker
    for d in DOUBLES:
        request += b'EVAL "return {double=%s}" 0\r\n' % d.encode()
        request += b'EVAL "return {1, {double=%s}}" 0\r\n' % d.encode()
    # (Not both(): HELLO's reply differs, and waiting for as many bytes as
    # Redis sent waited out REPLY_WAIT, 20 s.)
    real, ours = both_after(ports, request, b"doubles\r\n")
    assert b"-nan" in real and b"-0\r\n" in real
    assert ours == real


def _resp_command(*args: object) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


# Replies nested down to Redis's Lua stack limit (luaReplyToRedisReply's
# lua_checkstack(4) in LUAI_MAXCSTACK's 8000 slots): 7995 levels of arrays
# are whole, below them each value is "-ERR reached lua stack limit"; a map
# or a set takes 3 slots a level (2664 levels), a map's key 4.
_CHAIN = "local t = {} local c = t for i = 1, %d do %s end return t"
DEEP_REPLIES = [
    _CHAIN % (7994, "c[1] = {} c = c[1]"),
    _CHAIN % (7995, "c[1] = {} c = c[1]"),
    _CHAIN % (7996, "c[1] = {} c[2] = i c[3] = 'x' c[4] = true c[5] = 1.5 c = c[1]"),
    _CHAIN % (7995, "c[1] = {} c[2] = {err = 'E' .. i} c = c[1]"),
    "local t = {1, 'x'} t[3] = t t[4] = 5 return t",
    "redis.setresp(3) " + _CHAIN % (2664, "local x = {} c.map = {a = x} c = x"),
    "redis.setresp(3) " + _CHAIN % (2665, "local x = {} c.map = {a = x} c = x"),
    "redis.setresp(3) " + _CHAIN % (2665, "local x = {} c.set = {[x] = true} c = x"),
    "redis.setresp(3) " + _CHAIN % (1999, "local x = {} c.map = {[x] = 1} c = x"),
    "redis.setresp(3) "
    + _CHAIN
    % (
        3997,
        "local x = {} if i % 3 == 0 then c.map = {k = x} elseif i % 3 == 1 then c[1] = x c[2] = 's' else c.set = {[x] = true} end c = x",
    ),
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_replies_nested_to_luas_stack_limit_byte_for_byte(ports, protocol):
    """A script's reply nested thousands of levels deep is Redis's, byte for
    byte, in EVAL, FCALL, MULTI and across shards, and its errors count in
    errorstats as Redis's: shardkv stopped at 200 levels (and Python's
    recursion could not have gone much deeper).  (Raw bytes: redis-py's
    parser recurses.)"""
    a, b = on_shards(0, 2)
    library = "#!lua name=deep\nredis.register_function('deep', function(keys, args) " + (
        _CHAIN % (7995, "c[1] = {} c = c[1]")
    ).replace("return t", "return t end)")
    marker = b"ECHO deep\r\n"
    request = (b"HELLO 3\r\n" if protocol == 3 else b"") + b"FUNCTION FLUSH\r\nCONFIG RESETSTAT\r\n" + marker
    for script in DEEP_REPLIES:
        request += _resp_command("EVAL", script, 0)
    request += _resp_command("FUNCTION", "LOAD", library) + _resp_command("FCALL", "deep", 0)
    request += b"MULTI\r\n" + _resp_command("EVAL", DEEP_REPLIES[1], 0) + b"EXEC\r\n"
    crossing = "redis.call('set', KEYS[1], 1) redis.call('set', KEYS[2], 2) " + DEEP_REPLIES[1]
    request += _resp_command("EVAL", crossing, 2, a, b)
    request += b"INFO errorstats\r\n"
    real, ours = both_after(ports, request, b"deep\r\n")
    assert real.count(b"reached lua stack limit") > 10
    assert ours == real


# Lua numbers as redis.call, redis.pcall and redis.sha1hex arguments: Redis
# writes each with %.17g (a -0 as "-0", a NaN with its sign), whatever made it.
# lupa hands Python -0 as the integer 0: a run that passes a 0 runs again
# with the prelude's wide forms, which tell the two apart.

NUMBER_ARGUMENTS = [
    "-0.0",
    "-0",
    "0",
    "0.1",
    "0.1 + 0.2",
    "1e14",
    "1e15",
    "1e16",
    "1e17",
    "123456789012345678",
    "2^53",
    "2^63",
    "1e100",
    "-1e-300",
    "3.14159265358979",
    "-5",
    "1/0",
    "-1/0",
    "0/0",
    "-(0/0)",
    "tonumber(ARGV[1])",
    "ARGV[1] + ARGV[1]",
    "(function() for i = ARGV[1], 0 do return i end end)()",
    "ARGV[1] * 1",
    "math.ceil(-0.5)",
    "(function(x) return -x end)(0)",
    "cjson.decode('-0')",
    "cjson.decode('[-0.0]')[1]",
]


@pytest.mark.parametrize("number", NUMBER_ARGUMENTS)
def test_number_arguments_of_calls_as_redis_writes_them(same, number):
    """redis.call, redis.pcall (directly, through a local, with more than
    four arguments, in a coroutine) and redis.sha1hex write a number
    argument as Redis does: -0 as "-0", not "0"."""
    n = number
    for script in [
        f"return redis.call('set', KEYS[1], {n})",
        f"local v = {n} redis.pcall('set', KEYS[1], v) return redis.call('get', KEYS[1])",
        f"local c = redis.call c('mset', KEYS[1], 1, 'x', {n}, 'y', 2) return c('get', 'x')",
        f"redis.call('rpush', KEYS[1], 'a', 'b', {n}, 'c', {n}) return redis.call('lrange', KEYS[1], 0, -1)",
        f"return coroutine.wrap(function() return redis.call('echo', {n}) end)()",
        f"return redis.sha1hex({n})",
    ]:
        same("DEL", "k", "x")
        same("EVAL", script, 1, "k", "-0")
        same("GET", "x")
    lib = f"#!lua name=numbers\nredis.register_function('f', function(keys) return redis.call('set', keys[1], {n}) end)"
    same("FUNCTION", "LOAD", "REPLACE", lib)
    same("FCALL", "f", 1, "k")
    same("GET", "k")
    same("FUNCTION", "DELETE", "numbers")


ZERO_SCRIPTS = [
    "redis.call('incr', KEYS[2]) redis.call('set', KEYS[1], 0) return redis.call('get', KEYS[2])",
    "redis.call('incr', KEYS[2]) local ok = pcall(redis.call, 'set', KEYS[1], 0) redis.call('incr', KEYS[2]) "
    "return {tostring(ok), redis.call('get', KEYS[2])}",
    "coroutine.wrap(function() redis.call('incr', KEYS[2]) redis.pcall('set', KEYS[1], 0, 'x') "
    "redis.call('incr', KEYS[2]) end)() return redis.call('get', KEYS[2])",
    "redis.call('incr', KEYS[2]) return redis.sha1hex(0) .. redis.call('get', KEYS[2])",
    "redis.call('incr', KEYS[2]) return redis.sha1hex(0 * -1) .. redis.call('get', KEYS[2])",
    "local x = 0\n\nreturn redis.call('nosuch', x)",
    "local x = 0 return redis.pcall('get', x, x)",
    "local x = 0 return redis.sha1hex(x, x)",
    "redis.setresp(3) local _, d = next(redis.call('zscore', KEYS[1], 'm') or {double = 0 * -1}) "
    "return redis.call('set', KEYS[1], d)",
]


@pytest.mark.parametrize("script", ZERO_SCRIPTS)
def test_zero_arguments_run_again_wide(same, script):
    """A script whose redis.call, redis.pcall or redis.sha1hex gets a 0
    (lupa hands Python a -0 as 0 too) is undone and runs again with the
    wide forms: what it did before the call is done once, a pcall or a
    coroutine does not go on, its errors name their lines; its EVALSHA
    runs it wide from then on, and so does a function's FCALL.  (Its keys
    declared and on one shard: a run across shards collects MONITOR's
    lines, and runs again only where it called nothing before, README.)"""
    sha = hashlib.sha1(script.encode()).hexdigest()
    same("EVAL", script, 2, "k{t}", "n{t}")
    same("EVALSHA", sha, 2, "k{t}", "n{t}")
    same("MGET", "n{t}", "k{t}")
    lib = f"#!lua name=zeros\nredis.register_function('f', function(KEYS) {script} end)"
    same("FUNCTION", "LOAD", "REPLACE", lib)
    same("FCALL", "f", 2, "k{t}", "n{t}")
    same("FCALL", "f", 2, "k{t}", "n{t}")
    same("MGET", "n{t}", "k{t}")
    same("FUNCTION", "DELETE", "zeros")


def test_eval_argument_errors(same):
    same("EVAL", "return 1")
    same("EVAL", "return 1", "x")
    same("EVAL", "return 1", 2, "a")
    same("EVAL", "return 1", -1)
    same("EVALSHA", "ffffffffffffffffffffffffffffffffffffffff", 0)
    same("EVALSHA", "short", 0)
    same("EVAL_RO", "return redis.call('set', KEYS[1], 'x')", 1, "k")
    same("EVAL_RO", "return redis.call('get', KEYS[1])", 1, "k")
    same("EVAL_RO", "#!lua\nreturn 1", 0)
    same("EVAL_RO", "#!lua flags=no-writes\nreturn 1", 0)


_SEVEN_THOUSAND = "local t = {} for i = 1, 7999 do t[i] = i end\n"


def test_calls_of_many_arguments(same):
    """redis.call and redis.pcall of more than 7997 arguments (more than
    lupa passes to Python at once) work as in Redis, the first time a
    script makes one and after, errors and what the script wrote before
    the call included."""
    lpush = "return redis.call('lpush', KEYS[1], 'x', unpack(t))"
    for _ in range(2):
        same("EVAL", _SEVEN_THOUSAND + lpush, 1, "l")
    same("EVAL", _SEVEN_THOUSAND + "return redis.pcall('rpush', KEYS[1], unpack(t))", 1, "l")
    same("LLEN", "l")
    same("LRANGE", "l", 0, 2)
    # more than unpack gives: a vararg function adds arguments
    varargs = "local function push(...) return redis.call('rpush', KEYS[1], 'a', 'b', ...) end\n"
    same("EVAL", _SEVEN_THOUSAND + varargs + "return push(unpack(t))", 1, "v")
    same("LLEN", "v")
    # the script writes before the long call: once, not twice
    first = "redis.call('incr', KEYS[2])\n"
    same(
        "EVAL",
        first + _SEVEN_THOUSAND + "redis.call('sadd', KEYS[1], unpack(t))\nreturn redis.call('get', KEYS[2])",
        2,
        "s{n}",
        "n",
    )
    same("SCARD", "s{n}")
    # errors of long calls name the script's line
    same("EVAL", _SEVEN_THOUSAND + "local r = redis.call('set', KEYS[1], unpack(t))\nreturn r", 1, "k")
    same("EVAL", _SEVEN_THOUSAND + "local r = redis.call('nosuch', unpack(t))\nreturn r", 0)
    same("EVAL", _SEVEN_THOUSAND + "return redis.pcall('set', KEYS[1], unpack(t))", 1, "k")
    same("EVAL", _SEVEN_THOUSAND + "return redis.pcall('incr', KEYS[1], unpack(t))", 1, "l")


def test_script_cache(same):
    body = "return redis.call('incrby', KEYS[1], ARGV[1])"
    sha = hashlib.sha1(body.encode()).hexdigest()
    same("SCRIPT", "FLUSH")
    same("SCRIPT", "EXISTS", sha, "abc")
    same("EVALSHA", sha, 1, "k", 1)
    same("SCRIPT", "LOAD", body)
    same("SCRIPT", "EXISTS", sha, "abc", sha.upper())
    same("EVALSHA", sha, 1, "k", 2)
    same("EVALSHA", sha.upper(), 1, "h", 3)
    same("EVALSHA_RO", sha, 1, "k", 2)
    same("SCRIPT", "LOAD", "return 1 +")
    same("SCRIPT", "FLUSH", "ASYNC")
    same("SCRIPT", "FLUSH", "SYNC")
    same("SCRIPT", "FLUSH", "LATER")
    same("SCRIPT", "EXISTS", sha)
    same("EVAL", body, 1, "s{k}", 7)
    same("SCRIPT", "EXISTS", sha)
    same("EVALSHA", sha, 1, "z", 1)
    same("SCRIPT", "KILL")
    same("SCRIPT", "NOSUCH")
    same("SCRIPT", "LOAD")
    same("SCRIPT", "EXISTS")


def test_cross_shard_scripts(same):
    """Declared keys on several shards, undeclared keys, keyless commands."""
    for c in (same.real, same.ours):
        _setup(c)
        c.set("k", "10")
    same("EVAL", "return {redis.call('hget', KEYS[1], 'f'), redis.call('get', KEYS[2])}", 2, "h", "k")
    same(
        "EVAL",
        "redis.call('set', KEYS[1], 'a'); redis.call('set', KEYS[2], 'b'); return redis.call('mget', KEYS[1], KEYS[2])",
        2,
        "x1",
        "x2",
    )
    # undeclared keys of other shards, read and written
    same("EVAL", "return redis.call('incr', 'k')", 0)
    same(
        "EVAL",
        "redis.call('set', 'u1', 'a'); redis.call('set', 'u2', 'b'); return redis.call('get', 'k')",
        1,
        "h",
    )
    same("MGET", "u1", "u2", "k")
    # a write, then a call that needs another shard: the write must not be doubled
    same("EVAL", "redis.call('incr', KEYS[1]); return redis.call('incr', 'k')", 1, "n")
    same("MGET", "n", "k")
    # commands that need every shard
    same("EVAL", "local t = redis.call('keys', '*'); table.sort(t); return t", 0)
    same("EVAL", "return redis.call('dbsize')", 0)
    same("EVAL", "redis.call('set', 'new', 1); return redis.call('dbsize')", 1, "k")
    same("EVAL", "return redis.call('flushall')", 0)
    same("DBSIZE")
    # an error after the cross-shard retry
    same("EVAL", "redis.call('set', 'a1', 1); return redis.call('incr', 'h')", 0)
    same("EVAL", "redis.call('hset', 'h', 'f', 'v'); return redis.call('incr', 'h')", 0)
    same("GET", "a1")


def test_evalsha_shortcut(same):
    """EVALSHA of a cached script on one shard takes the acceptor's shortcut;
    a script that turns out to need other shards still runs (again, across
    them), pipelined or not, and a flushed cache answers NOSCRIPT."""
    home, other = on_shards(0, 2)
    body = f"redis.call('incr', KEYS[1]); return redis.call('incr', '{other}')"
    sha = hashlib.sha1(body.encode()).hexdigest()
    same("SCRIPT", "LOAD", body)
    same("SCRIPT", "LOAD", "return redis.call('get', KEYS[1])")
    same("EVALSHA", sha, 1, home)  # the shard compiles it: the next runs take the shortcut
    for _ in range(3):
        same("EVALSHA", sha, 1, home)
    replies = []
    for c in (same.real, same.ours):
        pipe = c.pipeline(transaction=False)
        for _ in range(5):
            pipe.evalsha(sha, 1, home)
            pipe.get(other)
        replies.append(pipe.execute())
    assert replies[0] == replies[1]
    same("MGET", home, other)
    same("EVALSHA", sha, 1, home, "extra")
    same("EVALSHA", sha, 2, home)
    same("EVALSHA", sha, -1, home)
    same("SCRIPT", "FLUSH")
    same("EVALSHA", sha, 1, home)


def test_scripts_in_multi(same):
    for c in (same.real, same.ours):
        c.set("k", "1")
    real, ours = same.real.pipeline(transaction=True), same.ours.pipeline(transaction=True)
    for p in (real, ours):
        p.eval("return redis.call('incr', KEYS[1])", 1, "k")
        p.get("k")
        p.eval("return redis.call('incr', 'h')", 0)
        p.eval("return redis.call('get', 'k')", 0)
    assert _norm(ours.execute(raise_on_error=False)) == _norm(real.execute(raise_on_error=False))


def test_acceptor_commands_from_scripts(same):
    """PUBLISH, PUBSUB, COMMAND, INFO, MEMORY and SLOWLOG, which shardkv's
    acceptor answers, called from scripts on any shard, from the executor of
    a cross-shard script, and in RESP3 (see shardkv.acceptor.scriptcalls);
    and the errors of the commands Redis refuses in scripts, shardkv's or
    not."""
    a, b, c = on_shards(0, 1, 3)
    for client in (same.real, same.ours):
        client.mset({a: "1", b: "2", c: "3"})
    same("EVAL", "return redis.call('publish', 'nobody', 'm')", 0)
    same("EVAL", "return redis.call('publish', 'nobody', 'm')", 1, b)
    same(
        "EVAL",
        "redis.call('set', KEYS[1], 'x'); redis.call('set', KEYS[2], 'y');"
        " return {redis.call('publish', 'nobody', 'm'), redis.call('mget', KEYS[1], KEYS[2])}",
        2,
        a,
        c,
    )
    same("EVAL", "return redis.call('pubsub', 'numsub', 'x', 'y')", 1, c)
    same("EVAL", "redis.setresp(3); return redis.call('pubsub', 'numsub', 'x', 'y')", 1, c)
    same("EVAL", "return redis.call('pubsub', 'numpat')", 0)
    same("EVAL", "return redis.call('command', 'getkeys', 'mset', 'a', '1', 'b', '2')", 1, b)
    same("EVAL", "return redis.call('command', 'info', 'get')", 0)
    same("EVAL", "return type(redis.call('command', 'count'))", 0)
    same("EVAL", "return string.match(redis.call('info', 'replication'), 'role:%a+')", 1, c)
    same("EVAL", "return string.sub(redis.call('info', 'server', 'clients'), 1, 8)", 0)
    same(
        "EVAL",
        "redis.setresp(3); local v = redis.call('info', 'server').verbatim_string;"
        " return {v.format, string.sub(v.string, 1, 8)}",
        0,
    )
    same("EVAL", "return redis.call('memory', 'help')", 0)
    same("EVAL", "return redis.call('slowlog', 'help')", 1, a)
    same("EVAL", "return type(redis.call('memory', 'usage', KEYS[1]))", 1, b)
    same("EVAL", "return type(redis.call('memory', 'usage', ARGV[1]))", 1, a, b)  # another shard's key
    same("EVAL", "return redis.call('memory', 'usage', 'missing')", 0)
    # Refused as Redis refuses them, or with Redis's errors for a script's call.
    for call in [
        "'pubsub', 'nope'",
        "'pubsub'",
        "'command', 'getkeys', 'get'",
        "'memory', 'nope'",
        "'memory', 'usage'",
        "'object', 'nope'",
        "'publish', 'ch'",
        "'client', 'list'",
        "'config', 'get', 'maxmemory'",
        "'latency', 'latest'",
        "'script', 'exists', 'x'",
        "'function', 'list'",
        "'hello'",
        "'auth', 'x'",
        "'quit'",
        "'reset'",
        # Redis's commands that scripts may not call (noscript), some of them once missing in shardkv
        "'cluster', 'reset', 'hard'",
        "'cluster', 'reset'",
        "'cluster'",
        "'acl', 'whoami'",
        "'acl', 'whoami', 'x'",
        "'acl', 'setuser', 'bob'",
        "'acl'",
        "'module', 'list'",
        "'module', 'unload'",
        "'role'",
        "'role', 'x'",
        "'replicaof', 'no', 'one'",
        "'slaveof', 'no'",
        "'failover'",
        "'sync'",
        "'psync', '?', '-1'",
        "'replconf', 'x'",
        "'ssubscribe', 'ch'",
        "'sunsubscribe'",
        "'nosuchcommand'",
    ]:
        same("EVAL", f"return redis.pcall({call})", 0)


def test_container_subcommands_from_scripts_by_their_own_flags(same):
    """A script's call of a container's subcommand is checked by the
    subcommand's flags, as Redis's lookupCommand finds the subcommand: every
    HELP runs (CLIENT HELP is not ``noscript`` where CLIENT KILL is, XGROUP
    HELP is no write where XGROUP CREATE is), from any shard, in read-only
    scripts too, and counts under its subcommand."""
    (b,) = on_shards(1)
    for client in (same.real, same.ours):
        client.config_resetstat()
    containers = ["client", "config", "script", "function", "latency", "memory", "slowlog"]
    containers += ["object", "xinfo", "xgroup", "command", "pubsub"]
    for name in containers:
        same("EVAL", f"return redis.call('{name}', 'help')", 0)
        same("EVAL", f"return redis.pcall('{name}', 'HELP')", 1, b)
        same("EVAL_RO", f"return redis.call('{name}', 'help')", 0)
        same("EVAL", f"#!lua flags=no-writes\nreturn redis.call('{name}', 'help')", 1, b)
        same("EVAL", f"redis.setresp(3); return redis.call('{name}', 'help')", 0)
        same("EVAL", f"return redis.pcall('{name}', 'help', 'x')", 0)
    for call in [
        "'client', 'kill', 'x', 'y'",
        "'config', 'resetstat'",
        "'script', 'flush'",
        "'function', 'stats'",
    ]:
        same("EVAL", f"return redis.pcall({call})", 0)
    same("EVAL_RO", "return redis.pcall('xgroup', 'destroy', 'k', 'g')", 0)
    for client in (same.real, same.ours):
        client.config_resetstat()
    same("EVAL", "return #redis.call('client', 'help') + #redis.call('latency', 'help')", 1, b)
    same("EVAL", "return redis.pcall('client', 'list')", 0)
    counts = {}
    for name, client in (("redis", same.real), ("shardkv", same.ours)):
        stats = client.info("commandstats")
        counts[name] = {
            k: (v["calls"], v["rejected_calls"], v["failed_calls"])
            for k, v in stats.items()
            if k.startswith(("cmdstat_client", "cmdstat_latency"))
        }
    assert counts["shardkv"] == counts["redis"]


# cmsgpack.unpack, unpack_one and unpack_limit read their arguments as
# lua_cmsgpack.c's mp_unpack_full and its callers do.
CMSGPACK_UNPACK_CALLS = [
    "cmsgpack.unpack, 1",  # a number is unpacked as its text
    "cmsgpack.unpack, 12",
    "cmsgpack.unpack, 1.5",
    "cmsgpack.unpack, 2^53",
    "cmsgpack.unpack",
    "cmsgpack.unpack, nil",
    "cmsgpack.unpack, {}",
    "cmsgpack.unpack, true",
    "cmsgpack.unpack, '\\1\\2', 'junk'",  # unpack has no offset
    "cmsgpack.unpack, '\\1\\2', 1, 3",
    "cmsgpack.unpack_one, 1",
    "cmsgpack.unpack_one",
    "cmsgpack.unpack_one, '\\1\\2', -1",
    "cmsgpack.unpack_one, '\\1\\2', -1.5",
    "cmsgpack.unpack_one, '\\1\\2', 1.5",
    "cmsgpack.unpack_one, '\\1\\2', ' 0x1 '",
    "cmsgpack.unpack_one, '\\1\\2', '1_0'",
    "cmsgpack.unpack_one, '\\1\\2', 1e30",
    "cmsgpack.unpack_one, '\\1\\2', nil",
    "cmsgpack.unpack_one, nil, 'x'",
    "cmsgpack.unpack_limit, 1, 1",
    "cmsgpack.unpack_limit, '\\1\\2'",
    "cmsgpack.unpack_limit, '\\1\\2', nil",
    "cmsgpack.unpack_limit, '\\1\\2', true",
    "cmsgpack.unpack_limit, '\\1\\2', -1",
    "cmsgpack.unpack_limit, '\\1\\2', 1, -3",
    "cmsgpack.unpack_limit, '\\1\\2', -1, 3",
    "cmsgpack.unpack_limit, '\\1\\2', 0",
    "cmsgpack.unpack_limit, '\\1\\2', 0, 1",  # no value, the offset
    "cmsgpack.unpack_limit, '', 1, 0",
    "cmsgpack.unpack_limit, nil, 1",
    "cmsgpack.unpack_limit, nil, 'x'",
    # Lua's C stack: 8000 values, the string included; the offset is one.
    "cmsgpack.unpack_limit, string.rep('\\1', 8100), 7998",
    "cmsgpack.unpack_limit, string.rep('\\1', 8100), 7999",
    "cmsgpack.unpack_limit, string.rep('\\1', 8100), 8000",
    "cmsgpack.unpack_limit, string.rep('\\1', 8100), 7998, 1",
    "cmsgpack.unpack_limit, string.rep('\\1', 8100), 7999, 1",
    "cmsgpack.unpack_limit, string.rep('\\1', 8000), 0, 0",
    "cmsgpack.unpack, string.rep('\\1', 7997), 1, 2",
    "cmsgpack.unpack, string.rep('\\1', 7998), 1, 2",
]


def test_cmsgpack_unpack_arguments(same):
    """(Their errors uncaught: under the script's pcall, shardkv's library
    functions' errors name no line.)"""
    for call in CMSGPACK_UNPACK_CALLS:
        f, _, args = call.partition(", ")
        script = f"local t = {{{f}({args})}}\nreturn {{#t, t[1], t[#t]}}"
        same("EVAL", script, 0)
    same("EVAL", "return cmsgpack.unpack(1)", 0)
    same("EVAL", "return cmsgpack.unpack_limit(string.rep('\\1', 8100), 7999)", 0)


# Errors raised in a tail call (``return f(...)``) of a function that is not
# Redis's C function in shardkv: redis.call in a script that runs wide (it
# names unpack, byte or ``...``) and the prelude's wrappers in one that does
# not (unpack or string.byte under a computed name, coroutine.wrap's
# function, coroutine.resume).  Redis names the script's line and the name
# the function was called by.
TAIL_CALL_ERRORS = [
    "local f = redis.call; local a = {...}; return f('nosuchcmd')",
    "local f = redis.call; local u = unpack; return f('nosuchcmd')",
    "local f = redis.call; local u = unpack; return f('incr', 'x', 'y')",
    "local f = redis.pcall; local u = unpack; return f('nosuchcmd')",
    "local f = redis.call; local s = string.byte; local g = f; return g('nosuchcmd')",
    "local u = _G['unp'..'ack']; return u(nil)",
    "return _G['unp'..'ack'](nil)",
    "local s = string['by'..'te']; return s(nil)",
    "return coroutine.wrap(function() error('x') end)()",
    "local w = coroutine.wrap(function() local x = nil; return x.y end)\nreturn w()",
    "return coroutine.resume(nil)",
    # through an upvalue
    "local f = redis.call\nlocal function g() return f('nosuchcmd') end\nlocal x = unpack\nreturn g()",
    "local t = {...}\nfor i = 1, 3 do local z = i end\nlocal a, b, f = 1, 2, redis.call\n"
    "local function g() return f('incr', 'x', 'y') end\nreturn g()",
    "local u = _G['unp'..'ack']\nlocal function g() return u(nil) end\nreturn g()",
    # tail recursion stays as deep as Redis's
    "local function loop(n) if n == 0 then return 'done' end return loop(n - 1) end return loop(100000)",
    "local t = {} t.f = function(n) if n == 0 then return 'done' end return t['f'](n - 1) end return t.f(100000)",
    # through a local declared with no value (no instruction writes it first)
    "local f; f = function(n) if n == 0 then return 'done' end return f(n - 1) end return f(1000000)",
    "local x = 1; local a, f; f = function(n) if n == 0 then return redis.call('ping') end return f(n - 1) end\n"
    "return f(1000000)",
    "local function g(x) local f; f = function(n) if n == 0 then return x end return f(n - 1) end return f end\n"
    "return g('done')(1000000)",
    "local u = unpack; local f; f = function(n) if n == 0 then return 'done' end return f(n - 1) end return f(1000000)",
    # a local declared with no value (or nil), a library's function written to it later
    "local f; f = cjson.decode; local function g(s) return f(s) end; return g('{bad')",
    "local f; f = cjson.encode; local function g(s) return f(s) end; return g(function() end)",
    "local w; w = coroutine.wrap(function() error('x') end); local function g() return w() end; return g()",
    "local a, f = nil; f = cjson.decode; local function g(s) return f(s) end; return g('{bad')",
    "local f; local function g(s) return f(s) end; f = cjson.decode; return g('{bad')",
    "local f = nil; local function g(s) return f(s) end; local h = f; f = cjson.decode; return g('{bad')",
]


def test_errors_of_tail_calls_name_the_line(same):
    for script in TAIL_CALL_ERRORS:
        same("EVAL", script, 0)


# Redis's libraries are C functions: an argument error names the function
# as its caller called it ('?' when pcall called it), and every error is at
# the caller's line, under the script's pcall too.
LIBRARY_ERRORS = [
    "return struct.pack()",
    "return struct.pack('b')",
    "return struct.pack('b', nil)",
    "return struct.pack('bb', 1)",
    "return struct.unpack()",
    "return struct.unpack('b', nil)",
    "return struct.size()",
    "return cmsgpack.pack()",
    "return bit.band(nil)",
    "return bit.tohex(nil)",
    "return bit.lshift(1)",
    "local ok, e = pcall(struct.pack) return e",
    "local ok, e = pcall(cjson.encode) return e",
    "local ok, e = pcall(bit.band, 'x') return e",
    "local ok, e = pcall(cmsgpack.unpack) return e",
    "local ok, e = pcall(cmsgpack.pack) return e",
    "local ok, e = pcall(function() return struct.pack() end) return e",
    "local ok, e = pcall(function() return cjson.encode() end) return e",
    "local ok, e = pcall(function() local x = bit.band('x') return x end) return e",
    "local ok, e = pcall(function() local x = cjson.decode({}) return x end) return e",
    "local ok, e = pcall(function() return cmsgpack.unpack() end) return e",
    "local u = cmsgpack.unpack; return u(nil)",
    "local u = cmsgpack.unpack; local ok, e = pcall(u, nil) return e",
    "local t = {f = struct.pack}; local x = t.f() return x",
    "local function g(f) return f() end; return g(struct.pack)",
    "local function g(f) return f('x') end; local ok, e = pcall(function() return g(bit.band) end) return e",
    "return {struct.unpack('bb', struct.pack('bb', 1, 2))}",
    "return {bit.band(7, 3), bit.tohex(255), cjson.encode({1}), cmsgpack.pack(1)}",
    "return type(cjson.encode)",
]


def test_library_errors_name_the_caller_and_its_line(same):
    for script in LIBRARY_ERRORS:
        same("EVAL", script, 0)


def test_help_of_containers_shardkv_does_not_have_from_scripts(same):
    """ACL HELP and MODULE HELP have no noscript flag: Redis runs them."""
    for script in (
        "return redis.call('acl', 'help')",
        "return redis.call('module', 'help')",
        "return redis.pcall('ACL', 'HELP')",
        "return redis.pcall('acl', 'help', 'x')",
        "return redis.pcall('module', 'list')",
    ):
        same("EVAL", script, 0)


def test_scan_from_scripts(same):
    """SCAN in a script sees every shard's keys: the script runs where they
    all are, and walks them with the same cursors as a client's SCAN."""
    for client in (same.real, same.ours):
        client.mset({f"key:{i}": i for i in range(40)})
        client.hset("hash:1", "f", "v")
    walk = (
        "local out = {} local cursor = '0' repeat"
        " local r = redis.call('scan', cursor, unpack(ARGV)) cursor = r[1]"
        " for _, k in ipairs(r[2]) do table.insert(out, k) end"
        " until cursor == '0' table.sort(out) return out"
    )
    same("EVAL", walk, 0)
    same("EVAL", walk, 0, "COUNT", "3")
    same("EVAL", walk, 0, "MATCH", "key:1*", "COUNT", "7")
    same("EVAL", walk, 0, "TYPE", "hash")
    same("EVAL", walk, 1, "key:3")  # a declared key: it starts on that key's shard
    same("EVAL", "redis.call('set', KEYS[1], 'new'); " + walk, 1, "key:new")  # wrote, then escapes
    same("GET", "key:new")
    same("EVAL", "redis.call('select', 1); redis.call('set', 'one', 1); return redis.call('scan', '0')", 0)
    same("EVAL", "return redis.call('scan', '0', 'match', 'nothing*', 'count', 100)", 0)
    same("EVAL", "return redis.pcall('scan', 'x')", 0)
    same("EVAL", "return redis.pcall('scan', '0', 'count', 0)", 0)
    same("EVAL", "return redis.pcall('scan', '0', 'bogus', 1)", 0)


def test_publish_from_a_script_reaches_subscribers(r, server):
    """A script's PUBLISH delivers at once, from any shard, across shards,
    inside MULTI and through EVALSHA's shortcut; it returns the receivers."""
    listener = redis.Redis(port=server, protocol=3)
    sub = listener.pubsub()
    sub.subscribe("jobs")
    sub.psubscribe("jo*")
    for _ in range(2):
        assert sub.get_message(timeout=5)["type"] in ("subscribe", "psubscribe")
    a, b = on_shards(0, 2)
    publish = "return redis.call('publish', 'jobs', ARGV[1])"
    assert r.eval(publish, 1, a, "one") == 2
    assert r.eval(publish, 0, "two") == 2
    both = "redis.call('set', KEYS[1], 1); redis.call('set', KEYS[2], 2); " + publish
    assert r.eval(both, 2, a, b, "three") == 2
    p = r.pipeline(transaction=True)
    p.eval(publish, 1, b, "four")
    p.incr(a)
    assert p.execute() == [2, 2]
    script = r.register_script(publish)
    for word in ("five", "six"):
        assert script(keys=[b], args=[word]) == 2
    got = []
    while len(got) < 12:
        message = sub.get_message(timeout=5)
        assert message is not None, got
        got.append((message["type"], message["data"]))
    words = [b"one", b"two", b"three", b"four", b"five", b"six"]
    assert got == [(kind, w) for w in words for kind in ("message", "pmessage")]
    sub.close()
    listener.close()


def test_commands_of_every_shard_from_scripts(same):
    """INFO (its sections summed from the shards), LASTSAVE, SLOWLOG and
    MEMORY STATS/DOCTOR from scripts on any shard, from the executor of a
    cross-shard script and after an escape (the shards answer ``I`` frames
    wherever they wait, see shardkv.acceptor.scriptcalls)."""
    a, b, c, d = on_shards(0, 1, 2, 3)
    for client in (same.real, same.ours):
        client.mset({a: "1", b: "2", c: "3"})
        client.expire(c, 100)
        client.execute_command("SELECT", 0)
    keyspace = "return string.gsub(redis.call('info', 'keyspace'), 'avg_ttl=%d+', '')"
    same("EVAL", keyspace, 0)
    same("EVAL", keyspace, 1, b)
    same("EVAL", "redis.call('set', KEYS[1], 'x'); redis.call('set', KEYS[2], 'y'); " + keyspace, 2, a, d)
    same("EVAL", "redis.call('set', KEYS[1], 'x'); " + keyspace, 2, b, c)  # keys imported, not new
    same("EVAL", "redis.call('set', 'k-new', 'x'); redis.call('persist', KEYS[1]); " + keyspace, 1, c)
    same("EVAL", "redis.call('del', KEYS[1], KEYS[2], 'k-new'); " + keyspace, 2, a, c)  # escapes
    same("EVAL", "redis.call('select', 1); redis.call('set', 'one', 1); " + keyspace, 0)
    same("EVAL", "return string.match(redis.call('info'), '# Keyspace')", 0)
    same("EVAL", "return string.match(redis.call('info', 'everything'), 'db1:keys=1')", 1, d)
    same("EVAL", "return string.match(redis.call('info', 'memory'), 'used_memory_lua:')", 0)
    same("EVAL", "return string.match(redis.call('info', 'stats'), 'keyspace_hits:')", 2, a, d)
    same("EVAL", "return type(redis.call('lastsave'))", 1, a)
    same("EVAL", "return redis.call('lastsave') > 0", 2, b, d)
    same("CONFIG", "SET", "slowlog-log-slower-than", "-1")
    try:
        same("EVAL", "return redis.call('slowlog', 'reset')", 0)
        same("EVAL", "return {redis.call('slowlog', 'len'), redis.call('slowlog', 'get')}", 1, c)
        same("EVAL", "return redis.call('slowlog', 'get', 5)", 2, a, c)
        same("EVAL", "return redis.pcall('slowlog', 'get', -2)", 0)
    finally:
        same("CONFIG", "SET", "slowlog-log-slower-than", "10000")
    stats = (
        "local t = redis.call('memory', 'stats') local got = {}"
        " for i = 1, #t, 2 do if t[i] == 'keys.count' then got[1] = t[i + 1] end end"
        " return got"
    )
    same("EVAL", stats, 0)
    same("EVAL", stats, 2, a, b)
    # MEMORY DOCTOR's words depend on the server's memory history (a
    # long-running redis-server finds "issues"), so each server's script
    # reply is checked against its own direct reply.
    same("EVAL", "return type(redis.call('memory', 'doctor'))", 1, d)
    for client in (same.real, same.ours):
        direct = client.execute_command("MEMORY", "DOCTOR")
        assert client.eval("return redis.call('memory', 'doctor')", 1, d) == direct
    same("EVAL", "redis.setresp(3); return redis.call('info', 'keyspace').verbatim_string.format", 0)
    same("EVAL", "return redis.call('info', 'nosuchsection')", 0)


def test_swapdb_from_scripts(same):
    """SWAPDB in a script swaps every shard's databases (the script runs
    where every key of every database is); what it reads next, and what
    clients read after it, are the swapped databases."""
    a, b, c = on_shards(0, 1, 3)
    for client in (same.real, same.ours):
        client.mset({a: "1", b: "2"})
        client.execute_command("SELECT", 1)
        client.mset({c: "3", "other": "4"})
        client.execute_command("SELECT", 0)
    keys = "local k = redis.call('keys', '*') table.sort(k) return k"
    same("EVAL", "return redis.call('swapdb', 0, 1)", 0)
    same("EVAL", keys, 0)
    same("EVAL", "redis.call('select', 1) " + keys, 0)
    same("EVAL", "redis.call('set', KEYS[1], 'new'); redis.call('swapdb', 1, 0); " + keys, 1, a)
    same("EVAL", "redis.call('select', 1) " + keys, 0)
    same("GET", a)
    same("EVAL", "redis.call('swapdb', '1', '1') " + keys, 2, a, c)
    same("EVAL", "redis.call('swapdb', 0, 2) return redis.call('dbsize')", 1, b)
    same("DBSIZE")
    same("SELECT", "2")
    same("DBSIZE")
    same("SWAPDB", "0", "2")
    same("SELECT", "0")
    for call in ["0, 99", "'x', 1", "0, 'y'", "-1, 0", "0"]:
        same("EVAL", f"return redis.pcall('swapdb', {call})", 0)
    same("EVAL_RO", "return redis.pcall('swapdb', 0, 1)", 0)
    same("EVAL", "#!lua flags=no-writes\nreturn redis.pcall('swapdb', 0, 1)", 0)


def test_scripts_and_functions_out_of_memory(same):
    """Under maxmemory: a script with a shebang but no allow-oom or no-writes
    is refused as a denyoom command; a script without one is refused at its
    first write; allow-oom scripts and functions write; FUNCTION LOAD and
    RESTORE are refused."""
    library = (
        "#!lua name=oomlib\nredis.register_function{function_name='oomf', "
        "callback=function(keys) return redis.call('set', keys[1], '1') end, flags={'allow-oom'}}"
    )
    for c in (same.real, same.ours):
        c.set("x", "123")
        c.function_load(library, replace=True)
    payload = same.real.function_dump()
    try:
        for c in (same.real, same.ours):
            c.config_set("maxmemory", "1")
        same("EVAL", "redis.call('set', 'x', 1) return 1", 1, "x")
        same("EVAL", "return redis.call('get', 'x')", 1, "x")
        same("EVAL", "redis.call('get', KEYS[1]) return redis.call('set', KEYS[1], 2)", 1, "x")
        same("EVAL", "#!lua flags=\nreturn 1", 0)
        same("EVAL", "#!lua flags=allow-oom\nreturn redis.call('set', 'x', 2)", 1, "x")
        same("EVAL", "#!lua flags=no-writes\nreturn redis.call('get', 'x')", 1, "x")
        same("EVAL_RO", "#!lua flags=no-writes\nreturn redis.call('get', 'x')", 1, "x")
        same("FCALL", "oomf", 1, "x")
        same("GET", "x")
        same("FUNCTION", "LOAD", "REPLACE", library.replace("oomlib", "oomlib2").replace("oomf", "oomf2"))
        same("FUNCTION", "RESTORE", payload, "REPLACE")
        same("FUNCTION", "LIST", "LIBRARYNAME", "oomlib2")
    finally:
        for c in (same.real, same.ours):
            c.config_set("maxmemory", "0")
            c.function_delete("oomlib")


def test_script_error_replies_count_in_errorstats(same):
    """A script that returns an error (redis.error_reply, {err=...}, a
    runtime error) counts it in INFO errorstats under its code, line breaks
    made spaces first, from any shard and through EVALSHA's shortcut."""
    sha = hashlib.sha1(b"return redis.error_reply('SHA x')").hexdigest()
    for c in (same.real, same.ours):
        c.config_resetstat()
        c.script_load("return redis.error_reply('SHA x')")
    same("EVAL", "return redis.error_reply('MY_ERR_CODE custom msg')", 0)
    same("EVAL", "return redis.error_reply('')", 0)
    same("EVAL", "return {err='x\\ny'}", 1, "k")
    same("EVAL", "return nosuch()", 0)
    for _ in range(2):
        same("EVALSHA", sha, 1, "h")
    # A command's error counts once, whether the script raises it, returns
    # it or drops it; so does a call the script machinery refuses.
    for c in (same.real, same.ours):
        c.hset("hh", "f", "v")
    same("EVAL", "return redis.call('incr', KEYS[1])", 1, "hh")
    same("EVAL", "return redis.pcall('incr', KEYS[1])", 1, "hh")
    same("EVAL", "return redis.call('select', 99)", 0)
    same("EVAL", "return redis.pcall('select', 99)", 0)
    same("EVAL", "local t = redis.pcall('select', 99); return 1", 0)
    same("EVAL_RO", "return redis.call('set', KEYS[1], 1)", 1, "hh")
    same("EVAL", "return redis.call('nosuch')", 0)
    same("EVAL", "return redis.pcall('publish', 'a')", 0)
    assert same.ours.info("errorstats") == same.real.info("errorstats")


def test_script_debug(same):
    """SCRIPT DEBUG NO and its errors; YES/SYNC (the Lua debugger) is not
    supported by shardkv (see the README)."""
    same("SCRIPT", "DEBUG", "NO")
    same("SCRIPT", "DEBUG", "no")
    same("SCRIPT", "DEBUG", "maybe")
    same("SCRIPT", "DEBUG")
    same("SCRIPT", "DEBUG", "NO", "extra")
    real, ours = same.real.pipeline(transaction=True), same.ours.pipeline(transaction=True)
    for p in (real, ours):
        p.execute_command("SCRIPT", "DEBUG", "NO")
        p.execute_command("SCRIPT", "DEBUG", "YES")
    assert _norm(ours.execute(raise_on_error=False)) == _norm(real.execute(raise_on_error=False))


def test_lua_memory_does_not_grow_with_calls(r):
    """As Redis (a step of Lua's collector every 50 scripts; here once
    they left 32 KB), thousands of script runs leave used_memory_lua where
    it was, give or take a few KB."""
    r.set("x", 0)
    script = r.register_script("return redis.call('incr', KEYS[1])")
    script(keys=["x"])
    before = r.info("memory")["used_memory_lua"]
    pipe = r.pipeline(transaction=False)
    for _ in range(3000):
        script(keys=["x"], client=pipe)
    pipe.execute()
    after = r.info("memory")["used_memory_lua"]
    assert r.get("x") == b"3001"
    assert after - before < 32 * 1024, (before, after)


def test_lua_memory_keeps_no_key_of_a_cached_script(r):
    """50 cached one-key scripts that only index KEYS, each run once with a
    1 MiB key: used_memory_lua comes back to a few hundred KB at most, as
    in Redis (about 50 KB), not 50 MB (shardkv's shared KEYS table of such
    a script kept its last key until its next run)."""
    r.script_flush()
    big = b"{k}" + b"x" * (1 << 20)
    for i in range(50):
        sha = r.script_load(f"return #KEYS[1] + {i}")
        assert r.evalsha(sha, 1, big + b"%d" % i) == len(big) + len(str(i)) + i
    for _ in range(60):  # (Redis steps Lua's collector every 50 runs)
        r.eval("return 1", 0)
    assert r.info("memory")["used_memory_lua"] < 8 << 20


def test_argv_of_a_one_key_run_without_arguments(same):
    """A run of one key and no arguments makes its empty ARGV only when the
    script reads it (the prelude's one_key): still a table, the same one
    all along the run, a fresh one at each run, and runs with arguments
    around it see theirs."""
    show = (
        "local a = ARGV return {#ARGV, type(ARGV), tostring(rawequal(a, ARGV)),"
        " tostring(next(ARGV)), tostring(getmetatable(ARGV)), ARGV[1] or 'none'}"
    )
    change = "ARGV[1] = 'x' ARGV.y = 1 setmetatable(ARGV, {}) return {#ARGV, ARGV[1]}"
    for args in ((), ("a",), (), ("b", "c"), ()):
        for script in (show, change, show, "return 1", show):
            same("EVAL", script, 1, "k", *args)
            same("EVALSHA", same("SCRIPT", "LOAD", script), 1, "k", *args)
    # A run that stops with an error, or never reads ARGV, leaves nothing behind.
    same("EVAL", "return redis.call('nosuch')", 1, "k")
    same("EVAL", show, 1, "k")
    same("EVAL", "return redis.call('get', KEYS[1])", 1, "k")
    same("EVAL", show, 0)
    same("EVAL", show, 1, "k")


def test_watch_sees_script_writes(r):
    r.set("k", "1")
    r.set("other", "1")
    for script, keys in [
        ("return redis.call('incr', KEYS[1])", ["k"]),  # declared, on the key's shard
        ("return redis.call('incr', 'k')", []),  # undeclared, run across shards
    ]:
        p = r.pipeline(transaction=True)
        p.watch("k")
        r.eval(script, len(keys), *keys)
        p.multi()
        p.set("k", "x")
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("k") == b"3"
    # a script that does not touch the watched key leaves it alone
    p = r.pipeline(transaction=True)
    p.watch("k")
    r.eval("return redis.call('incr', KEYS[1])", 1, "other")
    p.multi()
    p.set("k", "x")
    assert p.execute() == [True]


def test_redis_py_lock(r):
    lock = r.lock("mylock", timeout=5)
    assert lock.acquire(blocking=False)
    assert not r.lock("mylock", blocking_timeout=0.2).acquire()
    assert lock.extend(2)
    assert 5000 < r.pttl("mylock") <= 7000
    assert lock.reacquire()
    assert 4000 < r.pttl("mylock") <= 5000
    lock.release()
    assert r.exists("mylock") == 0
    with pytest.raises(redis.exceptions.LockError):
        lock.release()  # redis-py knows it holds nothing
    # a lock taken over by another owner: the release script refuses
    lost = r.lock("mylock", timeout=0.1)
    assert lost.acquire()
    r.delete("mylock")
    assert r.lock("mylock", timeout=5).acquire()
    with pytest.raises(redis.exceptions.LockNotOwnedError):
        lost.release()
    r.delete("mylock")
    with r.lock("mylock", timeout=5, blocking_timeout=1):
        assert r.exists("mylock") == 1
    assert r.exists("mylock") == 0
    # blocking acquire: the holder's lock expires, the waiter gets it
    holder = r.lock("mylock", timeout=0.3)
    assert holder.acquire()
    waiter = r.lock("mylock", timeout=5, blocking_timeout=3, sleep=0.05)
    assert waiter.acquire()
    waiter.release()


def test_redis_py_lock_asyncio(server):
    async def run() -> None:
        a = aredis.Redis(port=server)
        lock = a.lock("alock", timeout=5)
        assert await lock.acquire()
        assert not await a.lock("alock", blocking_timeout=0.2).acquire()
        assert await lock.extend(1)
        assert await lock.reacquire()
        await lock.release()
        assert await a.exists("alock") == 0
        async with a.lock("alock", timeout=5):
            assert await a.exists("alock") == 1
        await a.aclose()

    asyncio.run(run())


def test_register_script_noscript_fallback(r):
    script = r.register_script("return redis.call('incrby', KEYS[1], ARGV[1])")
    r.script_flush()
    assert script(keys=["c"], args=[5]) == 5  # NOSCRIPT, then SCRIPT LOAD, then EVALSHA
    assert script(keys=["c"], args=[5]) == 10
    p = r.pipeline()
    script(keys=["c"], args=[1], client=p)
    script(keys=["c{x}"], args=[1], client=p)
    assert p.execute() == [11, 1]


ESCAPES = [
    "return python",
    "return python.eval('1')",
    "return python.builtins.open('/etc/passwd')",
    "return python.as_attrgetter(redis.call)",
    "local f = redis.call; return f.__class__",
    "return redis.call.__globals__",
    "return redis.call.__self__.shard",
    "return cjson.encode.__self__",
    "return getmetatable(redis.call)",
    "return tostring(redis.call)",
    "return type(redis.call)",
    "return string.dump(redis.call)",
    "local mt = getmetatable(''); mt.__index = nil",
    "return setmetatable(_G, nil)",
    "return rawset(_G, 'x', 1)",
    "return debug.getregistry()",
    "return getfenv(0)",
    "return load(function() return nil end)",
    "return loadstring(string.dump(function() return 1 end))",
    "return loadstring('\\27Lua')",
    "return os.execute('true')",
    "return io.popen('id')",
    "return require('io')",
    "return package.loaded",
    "return dofile('/etc/passwd')",
    "return loadfile('/etc/passwd')",
    "return collectgarbage('count') < 0",
]


@pytest.mark.parametrize("script", ESCAPES)
def test_sandbox_escapes(server, script):
    """No script reaches Python, the filesystem or the process; nothing of
    Python's shows through (no repr, no attributes)."""
    c = redis.Redis(port=server, protocol=2)
    try:
        reply = c.eval(script, 0)
    except redis.ResponseError as e:
        reply = str(e)
        assert "Traceback" not in reply and "<" not in reply, reply
        return
    finally:
        c.close()
    assert reply in (None, 0, b"function", b"function: builtin") or str(reply).startswith("b'function: 0x"), (
        reply
    )


# Every table Redis 7 makes read-only, and every way a script writes into a
# table: Redis's patched Lua refuses the raw writes too (table.insert writes
# with lua_rawseti), with "Attempt to modify a readonly table" and no line.
# table.remove and table.sort write nothing into a table of no array items.
READONLY_TABLES = [
    "_G",
    "string",
    "math",
    "table",
    "coroutine",
    "redis",
    "cjson",
    "bit",
    "struct",
    "cmsgpack",
    "getmetatable('')",
    "getmetatable(_G)",
]
TABLE_WRITES = [
    "table.insert(T, 1)",
    "table.insert(T, 1, 'x')",
    "table.insert(T, 'x', 1)",
    "table.remove(T)",
    "table.remove(T, 1)",
    "table.sort(T)",
    "rawset(T, 1, 1)",
    "rawset(T, 'k', 1)",
    "setmetatable(T, nil)",
    "T.k = 1",
    "T[1] = 1",
]


@pytest.mark.parametrize("table", READONLY_TABLES)
def test_no_write_reaches_a_readonly_table(same, table):
    """Each write into each protected table: refused as Redis refuses it
    (uncaught, and under pcall); afterwards the table holds nothing new."""
    for write in TABLE_WRITES:
        code = write.replace("T", table)
        same("EVAL", code, 0)
        same("EVAL", f"return {{pcall(function() {code} end)}}", 0)
        same("EVAL", f"pcall(function() {code} end) return {{rawget({table}, 1), rawget({table}, 'k')}}", 0)
    # in tail position too (its error still names the script's line)
    for code in (
        "return table.insert(T, 1)",
        "return table.insert(nil, 1)",
        "local f = table.insert return f(T, 1, 2, 3)",
    ):
        same("EVAL", code.replace("T", table), 0)


def test_no_write_reaches_a_readonly_table_from_a_function(same):
    """Inside a function the same tables are read-only (FUNCTION LOAD's own
    code sees only ``redis``, whose table is read-only too)."""
    body = "\n".join(
        f"redis.register_function('w{i}', function() {write.replace('T', table)} return 1 end)"
        for i, (table, write) in enumerate((t, w) for t in READONLY_TABLES for w in TABLE_WRITES)
    )
    same("FUNCTION", "LOAD", "REPLACE", "#!lua name=rolib\n" + body)
    for i in range(len(READONLY_TABLES) * len(TABLE_WRITES)):
        same("FCALL", f"w{i}", 0)
    same("FUNCTION", "LOAD", "REPLACE", "#!lua name=rolib2\nredis.k = 1")
    same("FUNCTION", "LOAD", "REPLACE", "#!lua name=rolib3\nrawset(redis, 'k', 1)")
    same("FUNCTION", "DELETE", "rolib")


@pytest.mark.slow  # fresh servers of its own
def test_math_random_sequence():
    """math.random is Redis's redisLrand48, seeded once at start (not per
    script), one generator for the whole server: scripts on fresh servers
    draw the same sequence whichever shards they run on (declared keys on
    each shard, across shards, a script that escapes to other shards,
    EVALSHA's shortcut, MULTI, functions), and math.randomseed restarts it
    for every later script, as on redis-server."""
    a, b, c, d = on_shards(0, 1, 2, 3)
    draw = "return {tostring(math.random()), math.random(100), math.random(5, 10)}"
    scripts = [
        (draw, [], []),
        ("return {tostring(math.random()), math.random(100), math.random(-3, 3)}", [], []),
        (draw, [b], []),
        (draw, [c], []),
        (draw, [d, c], []),  # across shards
        (
            "redis.call('incr', KEYS[1]); local r = math.random(1000); redis.call('incr', ARGV[1]); return r",
            [b],
            [d],
        ),
        ("math.randomseed(42); return {tostring(math.random()), math.random(1000)}", [c], []),
        (draw, [a], []),
        ("return tostring(math.random())", [d], []),
        ("math.randomseed(ARGV[1]); return tostring(math.random())", [], ["10"]),
        ("return math.random(0)", [], []),
        ("return math.random(3, 1)", [b], []),
        ("return math.random('x')", [], []),
        ("return math.random(1, 2, 3)", [], []),
        (draw, [c], []),
    ]
    library = "#!lua name=rnd\nredis.register_function('rnd', function(keys) return math.random(1000) end)"
    replies = []
    for start in (start_redis, start_shardkv):
        proc = start()
        try:
            r = redis.Redis(port=proc.port)
            got = []
            for body, keys, args in scripts:
                try:
                    got.append(r.eval(body, len(keys), *keys, *args))
                except redis.ResponseError as e:
                    got.append(("error", str(e)))
            sha = r.script_load(draw)
            for key in (a, b, a, c):  # the second run of each takes EVALSHA's shortcut
                got.append(r.evalsha(sha, 1, key))
            p = r.pipeline(transaction=True)
            for key in (d, "{%s}x" % d, d):  # one shard: see the README for several
                p.eval(draw, 1, key)
            got.append(p.execute())
            r.function_load(library)
            got.append([r.fcall("rnd", 1, key) for key in (b, c, a)])
            got.append(r.eval(draw, 1, d))
            replies.append(got)
        finally:
            proc.stop()
    assert replies[1] == replies[0]


@pytest.fixture(params=["redis", "shardkv"])
def own_server(request):
    """A server of each kind for this test alone (a script may hold it)."""
    proc = start_redis() if request.param == "redis" else start_shardkv(shards=4)
    yield proc.port
    proc.stop_unsaved()  # a script that wrote may still run: SIGTERM waits for it


@pytest.mark.slow
@pytest.mark.parametrize("writes", [False, True], ids=["read-only", "wrote"])
def test_busy_script_and_script_kill(own_server, writes):
    """``while true do end``: other clients get -BUSY for what it blocks,
    SCRIPT KILL stops it (or answers -UNKILLABLE once it wrote), and
    nothing hangs."""
    port = own_server
    c = redis.Redis(port=port, socket_timeout=30)
    c.config_set("busy-reply-threshold", 100)
    key = on_shards(0)[0]  # on the shard of a keyless script
    with pytest.raises(redis.ResponseError, match="No scripts in execution"):
        c.execute_command("SCRIPT", "KILL")
    result: list = []

    def run() -> None:
        runner = redis.Redis(port=port, socket_timeout=60)
        try:
            if writes:
                result.append(runner.eval("redis.call('set', KEYS[1], 'x') while true do end", 1, key))
            else:
                result.append(runner.eval("while true do end", 0))
        except (redis.ResponseError, redis.ConnectionError) as e:
            result.append(e)
        runner.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    wait_busy(lambda: c.get(key), "BUSY Redis is busy running a script. You can only call SCRIPT KILL")
    if writes:
        with pytest.raises(redis.ResponseError, match="already executed write commands"):
            c.execute_command("SCRIPT", "KILL")
        c.close()
        return  # the fixture stops the server
    assert c.execute_command("SCRIPT", "KILL")
    thread.join(20)
    assert not thread.is_alive()
    assert "killed by user" in str(result[0])
    assert c.get(key) is None
    with pytest.raises(redis.ResponseError, match="No scripts in execution"):
        c.execute_command("SCRIPT", "KILL")
    c.close()


# -- functions -----------------------------------------------------------------------

LIBRARIES = [
    "#!lua name=lib1\nredis.register_function('f1', function(keys, args) return redis.call('get', keys[1]) end)",
    "return 1",
    "#!lua\nx",
    "#!lua name=lib2\nx = 1",
    "#!lua name=lib2\nredis.call('ping')",
    "#!lua name=lib2\nredis.register_function('f1', function() return 1 end)",
    "#!lua name=lib2\nlocal x = string.len('a')",
    "#!lua name=lib2\nredis.register_function('f 2', function() return 1 end)",
    "#!lua name=lib2\nredis.register_function{function_name='f2', callback=function() return 1 end, flags={'no-writes','bad'}}",
    "#!lua name=lib2\nredis.register_function{function_name='f2', callback=function() return 1 end, bad=1}",
    "#!lua name=lib2\nredis.register_function{callback=function() return 1 end}",
    "#!lua name=lib2\nredis.register_function{function_name='f2'}",
    "#!lua name=lib2\nredis.register_function('f2', 'notafunction')",
    "#!lua name=lib2\nredis.register_function('f2', function() end, 3)",
    "#!lua name=lib2\nredis.register_function('f2', function() end) redis.register_function('f2', function() end)",
    "#!lua name=lib2\nreturn 1 +",
    "#!lua name=lib2\n",
    "#!lua name=lib2 foo=bar\n",
    "#!luax name=lib2\n",
    "#!lua name=lib-2\nredis.register_function('f2', function() end)",
    "#!lua name=lib2 name=lib3\n",
    (
        "#!lua name=lib3\nredis.register_function{function_name='f3', callback=function(keys, args) "
        "return x end, description='desc', flags={'no-writes', 'allow-oom'}}"
    ),
    "#!lua name=lib4\nredis.register_function('f4', function(keys, args) return redis.call('set', keys[1], args[1]) end)",
    (
        "#!lua name=lib5\nlocal function helper(k) return redis.call('incr', k) end\n"
        "redis.register_function('f5', function(keys, args) return {helper(keys[1]), #args, redis.REDIS_VERSION} end)\n"
        "redis.register_function('f6', function(keys, args) return redis.call('get', 'k') end)"
    ),
]


def test_functions(same):
    same("FUNCTION", "FLUSH")
    for code in LIBRARIES:
        same("FUNCTION", "LOAD", code)
    same("FUNCTION", "LOAD", LIBRARIES[0])
    same("FUNCTION", "LOAD", "REPLACE", LIBRARIES[0])
    same("FUNCTION", "LOAD", "BAD", LIBRARIES[0])
    same("SET", "k", "v")
    same("FCALL", "f1", 1, "k")
    same("FCALL", "nosuch", 0)
    same("FCALL", "f1", "x")
    same("FCALL", "f1", 5)
    same("FCALL", "f1", -1)
    same("FCALL", "f3", 0)
    same("FCALL_RO", "f3", 0)
    same("FCALL_RO", "f4", 1, "k", "x")
    same("FCALL", "f4", 1, "h", "x")
    same("FCALL", "f5", 1, "n", "a", "b")
    same("FCALL", "f6", 1, "h")  # an undeclared key of another shard
    same("GET", "h")
    same("FUNCTION", "LIST", "LIBRARYNAME", "lib3")
    same("FUNCTION", "LIST", "LIBRARYNAME", "lib3", "WITHCODE")
    same("FUNCTION", "LIST", "LIBRARYNAME")
    same("FUNCTION", "LIST", "BAD")
    same("FUNCTION", "STATS")
    same("FUNCTION", "DELETE", "lib3")
    same("FUNCTION", "DELETE", "lib3")
    same("FCALL", "f3", 0)
    same("FUNCTION", "KILL")
    same("FUNCTION", "FLUSH", "BAD")
    same("FUNCTION", "RESTORE", "x", "BAD")
    same("FUNCTION", "RESTORE", "garbage")
    same("FUNCTION", "NOSUCH")
    same("FUNCTION", "FLUSH", "SYNC")
    same("FUNCTION", "LIST")
    same("FUNCTION", "STATS")


@pytest.mark.parametrize("padding", [0, 300_000], ids=["small", "large"])
def test_function_dump_restore_both_ways(ports, padding):
    """FUNCTION DUMP's payload restores into the other server, both ways;
    a large library's (its code LZF-compressed by Redis) too.

    No retry, and time to answer: redis-py's default client gives up on
    a reply after 5 s and sends the command again, and a RESTORE that
    timed out but was done meets its own library (``already exists``)."""
    real, ours = (
        redis.Redis(port=ports[name], socket_timeout=60, retry=Retry(NoBackoff(), 0))
        for name in ("redis", "shardkv")
    )
    code = (
        "#!lua name=dumped\nredis.register_function('d1', function(keys, args) return 'from ' .. args[1] end)"
    )
    code += "\n--" + "padding " * (padding // 8)
    for source, target in [(real, ours), (ours, real)]:
        source.function_flush()
        target.function_flush()
        source.function_load(code)
        payload = source.function_dump()
        assert target.function_restore(payload)
        assert target.fcall("d1", 0, "x") == b"from x"
        with pytest.raises(redis.ResponseError, match="already exists"):
            target.function_restore(payload)
        assert target.function_restore(payload, "REPLACE")
        assert target.function_restore(payload, "FLUSH")
        assert target.function_list() == source.function_list()
    real.close()
    ours.close()


@pytest.mark.slow
@pytest.mark.parametrize("cross", [False, True], ids=["one-shard", "cross-shard"])
@pytest.mark.parametrize("kind", ["redis", "shardkv"])
def test_shutdown_nosave_while_a_script_that_wrote_is_busy(kind, cross, tmp_path):
    """A busy script that has written: SHUTDOWN and SHUTDOWN SAVE answer
    -BUSY, SHUTDOWN NOSAVE stops the server at once, and after a restart
    nothing of the script is there (what was acknowledged before is).
    Across shards too: the shard its operation parked besides its
    executor stops as well (it waited for a decision before)."""
    written = key_on(0, "written", shards=2)
    keys = [written, key_on(1, "other", shards=2) if cross else written]
    flags = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))

    def start():
        return start_redis(*flags) if kind == "redis" else start_shardkv(*flags, shards=2)

    proc = start()
    # No retry: a retried SHUTDOWN would meet a server on its way out.
    c = redis.Redis(port=proc.port, socket_timeout=30, retry=Retry(NoBackoff(), 0))
    try:
        c.set("before", "1")
        c.config_set("busy-reply-threshold", 100)
        failure: list = []

        def busy() -> None:
            try:
                # No retry: the closed connection raises at once (redis-py
                # would try again for 2-4 s, which the join below waited out).
                redis.Redis(port=proc.port, socket_timeout=30, retry=Retry(NoBackoff(), 0)).eval(
                    "redis.call('set', KEYS[1], '1'); redis.call('get', KEYS[2]); while true do end", 2, *keys
                )
            except (redis.ConnectionError, redis.ResponseError) as e:
                failure.append(e)

        thread = threading.Thread(target=busy)
        thread.start()
        wait_busy(c.ping)  # until the script is past the threshold
        with pytest.raises(redis.ResponseError) as refused:
            c.execute_command("SHUTDOWN")
        assert str(refused.value) == (
            "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
        )
        with pytest.raises(redis.ResponseError, match="^BUSY Redis is busy running a script"):
            c.execute_command("SHUTDOWN", "SAVE")
        with pytest.raises(redis.ConnectionError):
            c.execute_command("SHUTDOWN", "NOSAVE")  # no reply: the connection closes
        assert proc.proc.wait(30) == 0
        thread.join(30)
        assert failure  # the script's client never gets a reply
    finally:
        c.close()
        proc.stop()
    proc = start()
    c = redis.Redis(port=proc.port)
    try:
        assert c.mget("before", *keys) == [b"1", None, None]
    finally:
        c.close()
        proc.stop()


@pytest.mark.slow
def test_script_writes_survive_a_restart(tmp_path):
    """The AOF records a script's writes (not the script): a restart
    restores the data, single-shard and cross-shard; the script cache does
    not persist."""
    flags = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(tmp_path))
    proc = start_shardkv(*flags, shards=2)
    c = redis.Redis(port=proc.port)
    c.eval("redis.call('set', KEYS[1], 'a'); redis.call('rpush', KEYS[2], 1, 2); return 1", 2, "k{t}", "l{t}")
    c.eval("redis.call('incrby', 'n1', 5); redis.call('set', 'n2', 'x'); return 1", 0)  # across shards
    with pytest.raises(redis.ResponseError):  # an error after a write: the write stays
        c.eval("redis.call('set', 'gone', 1); return redis.call('incr', 'k{t}')", 0)
    sha = c.script_load("return 1")
    c.close()
    proc.stop()
    proc = start_shardkv(*flags, shards=2)
    c = redis.Redis(port=proc.port)
    try:
        assert c.get("k{t}") == b"a"
        assert c.lrange("l{t}", 0, -1) == [b"1", b"2"]
        assert c.get("n1") == b"5" and c.get("n2") == b"x"
        assert c.get("gone") == b"1"
        assert c.script_exists(sha) == [False]
    finally:
        c.close()
        proc.stop()


def test_sort_by_constant_in_scripts_sorts_a_set(same):
    """SORT of a set BY a constant (no sorting asked) from a script or a
    function: Redis sorts its output (ALPHA), so that the reply is the same
    on every replica; a list keeps its order."""
    members = ["m", "i", "a", "r", "u", "azz", "p", "10", "2", "aa", "z", "b"]
    for client in (same.real, same.ours):
        client.sadd("myset", *members)
        client.rpush("mylist", *members)
        client.mset({f"w_{m}": f"{len(members) - i:03}" for i, m in enumerate(members)})
    for call in [
        "'sort', KEYS[1], 'by', '_'",
        "'sort', KEYS[1], 'by', 'nosort', 'desc'",
        "'sort', KEYS[1], 'by', '_', 'get', '#', 'get', 'w_*'",
        "'sort', KEYS[1], 'by', '_', 'limit', 2, 3",
        "'sort', KEYS[1], 'by', 'w_*', 'alpha', 'get', '#', 'get', 'w_*'",  # keys on other shards
        "'sort_ro', KEYS[1], 'by', '_'",
        "'sort', KEYS[1], 'by', '_', 'store', KEYS[1] .. ':out'",
    ]:
        same("EVAL", f"return redis.call({call})", 1, "myset")
        same("EVAL", f"return redis.call({call})", 1, "mylist")
    same("LRANGE", "myset:out", 0, -1)
    library = (
        "#!lua name=sortlib\n"
        "redis.register_function('s', function(keys) return redis.call('sort', keys[1], 'by', '_') end)"
    )
    for client in (same.real, same.ours):
        client.execute_command("FUNCTION", "LOAD", "REPLACE", library)
    try:
        same("FCALL", "s", 1, "myset")
    finally:
        for client in (same.real, same.ours):
            client.execute_command("FUNCTION", "DELETE", "sortlib")


_LUA_FIELDS = ("lua", "_vm_", "scripts", "functions", "libraries")


def _lua_fields(client: redis.Redis) -> dict:
    info = client.info("memory")
    return {k: v for k, v in info.items() if any(word in k for word in _LUA_FIELDS)}


def test_lua_memory_fields_match_redis(compare):
    """INFO memory's Lua fields: the same names, in the same order, as
    redis-server's; the Lua states exist from the start (as Redis's VMs),
    so their memory is never 0, and SCRIPT FLUSH makes a fresh one; each
    figure is whole KB as Redis's LUA_GCCOUNT; MEMORY STATS' lua.caches and
    functions.caches are INFO's used_memory_scripts_eval and
    used_memory_functions."""
    for client in (compare.real, compare.ours):
        client.script_flush()
    real, ours = _lua_fields(compare.real), _lua_fields(compare.ours)
    assert list(ours) == list(real)
    for fields in (real, ours):
        assert fields["number_of_cached_scripts"] == 0
        assert fields["used_memory_lua"] > 0 and fields["used_memory_lua"] % 1024 == 0
        assert fields["used_memory_vm_eval"] == fields["used_memory_lua"]
        assert fields["used_memory_vm_functions"] > 0 and fields["used_memory_vm_functions"] % 1024 == 0
        assert (
            fields["used_memory_vm_total"] == fields["used_memory_lua"] + fields["used_memory_vm_functions"]
        )
    for client in (compare.real, compare.ours):
        client.eval("return 1", 0)
        fields = _lua_fields(client)
        assert fields["number_of_cached_scripts"] == 1
        assert fields["used_memory_scripts_eval"] > 0
        stats = client.memory_stats()
        assert stats["lua.caches"] == fields["used_memory_scripts_eval"]
        assert stats["functions.caches"] == fields["used_memory_functions"]
        client.script_flush()


def _error_figures(client: redis.Redis) -> tuple:
    """The commandstats rows of the commands below, errorstats, and
    total_error_replies, as the TCL suite's "Consistent eval error
    reporting" reads them."""
    names = ("set", "eval", "eval_ro", "evalsha", "select", "geoadd", "fcall")
    rows = {
        k: (v["calls"], v["rejected_calls"], v["failed_calls"])
        for k, v in client.info("commandstats").items()
        if k.split("_", 1)[1] in names
    }
    return rows, client.info("errorstats"), client.info("stats")["total_error_replies"]


def test_script_errors_count_as_redis_counts_them(same):
    """A script's call refused before it ran (OOM, a write in a read-only
    script, an unknown command) counts in errorstats and the command's
    rejected_calls at once, even under pcall; a command's error in its
    failed_calls (SELECT included); EVAL's failed_calls counts each error
    reply, passed on or its own, once, including a script's that ran again
    across shards."""
    a, b = on_shards(0, 2)
    cases = [
        ("EVAL", "return redis.call('set','x','y')", 1, "x"),
        ("EVAL", "local t = redis.pcall('set','x','y') if t['err'] then return 1 end return 0", 1, "x"),
        ("EVAL", "return redis.pcall('set','x','y')", 1, "x"),
    ]
    others = [
        ("EVAL", "return redis.call('select',99)", 0),
        ("EVAL", "local t = redis.pcall('select',99) if t['err'] then return 1 end return 0", 0),
        ("EVAL_RO", "return redis.call('set','x','y')", 1, "x"),
        ("EVAL_RO", "local t = redis.pcall('set','x','y') if t['err'] then return 1 end return 0", 1, "x"),
        ("EVAL", f"return redis.call('geoadd', '{a}', '13.361389', '38.115556', 'Palermo')", 1, b),
        ("EVAL", "return redis.pcall('nosuchcommand')", 0),
        ("EVAL", "return redis.pcall('get')", 0),
        ("EVAL", "redis.call('set', KEYS[1], 1) redis.call('set', KEYS[2], 1) error('boom')", 2, a, b),
        ("EVAL", f"return redis.pcall('set', '{b}', 1, 'nx', 'xx')", 1, a),  # runs again across shards
        ("EVALSHA", "0" * 40, 0),
    ]
    for client in (same.real, same.ours):
        client.set(a, "1")
    try:
        for client in (same.real, same.ours):
            client.config_set("maxmemory", 1)
        for case in cases:
            for client in (same.real, same.ours):
                client.config_resetstat()
            same(*case)
            assert _error_figures(same.ours) == _error_figures(same.real), case
    finally:
        for client in (same.real, same.ours):
            client.config_set("maxmemory", 0)
    for case in others:
        for client in (same.real, same.ours):
            client.config_resetstat()
        same(*case)
        assert _error_figures(same.ours) == _error_figures(same.real), case


def test_errors_in_a_script_reply_count_as_redis_counts_them(same):
    """An error in a script's reply array counts in errorstats (once: a
    command's error a pcall gave is counted already) and makes the call a
    failed one, on one shard, by EVALSHA's shortcut, and across shards."""
    a, b = on_shards(0, 2)
    made = "return {1, redis.error_reply('MYERR boom'), {err='OTHER x'}}"
    passed_on = "return {1, {redis.pcall('incr', KEYS[1])}}"
    for client in (same.real, same.ours):
        client.hset(a, "f", "v")
        client.script_load(made)
    cases = [
        ("EVAL", made, 1, a),
        ("EVALSHA", same.real.script_load(made), 1, a),
        ("EVAL", passed_on, 1, a),
        ("EVAL", "return {redis.status_reply('OK'), {err='X'}, 'a\\r\\n-b'}", 0),
        ("EVAL", "return {'a\\r\\n-b'}", 0),
        ("EVAL", made.replace("{1,", "{redis.call('get', KEYS[2]),"), 2, a, b),
        ("EVAL", passed_on.replace("{1,", "{redis.call('get', KEYS[2]),"), 2, a, b),
    ]
    for case in cases:
        for client in (same.real, same.ours):
            client.config_resetstat()
        same(*case)
        assert _error_figures(same.ours) == _error_figures(same.real), case


def test_errors_in_a_script_reply_count_in_the_replys_order(same):
    """The errors in a script's reply are counted in the order Redis writes
    them, nested ones included: past shardkv's cap on distinct error codes
    (MAX_ERROR_CODES, Redis 7.2's; 7.0 has none) the first ones are kept, so
    shardkv lists the reply's first 128 codes of the 130 redis-server lists.
    The non-recursive conversion counted an array's nested items last first."""
    items = ", ".join("{err='E%d x'}" % i for i in range(1, 131))
    first = {f"errorstat_E{i}" for i in range(1, 129)}
    for script in (f"return {{{items}}}", f"return {{1, {{{items}}}, 'a'}}"):
        for client in (same.real, same.ours):
            client.config_resetstat()
        same("EVAL", script, 0)
        real = set(same.real.info("errorstats"))
        assert real == first | {"errorstat_E129", "errorstat_E130"}
        assert set(same.ours.info("errorstats")) == first, script


def _call_figures(client: redis.Redis) -> tuple:
    """Every commandstats row's calls, rejected and failed calls, and errorstats."""
    rows = {
        k: (v["calls"], v["rejected_calls"], v["failed_calls"])
        for k, v in client.info("commandstats").items()
    }
    return rows, client.info("errorstats"), client.info("stats")["total_error_replies"]


def test_calls_before_a_script_runs_again_across_shards_count_once(same):
    """A script first tries the shard of its first key; when it reaches a
    key of another shard it stops and runs again across shards.  Its calls
    before that (successful, failed under pcall, or refused) count once in
    commandstats and errorstats, as in Redis, where it runs once."""
    a, b = on_shards(0, 2)
    script = """
        redis.call('SET', KEYS[1], 'a')
        redis.call('GET', KEYS[1])
        redis.pcall('INCR', KEYS[1])
        redis.pcall('GET')
        redis.call('SET', KEYS[2], 'b')
        return redis.call('GET', KEYS[2])
    """
    for keys in ((a, b), (a, a), (b, a)):
        for client in (same.real, same.ours):
            client.config_resetstat()
        same("EVAL", script, 2, *keys)
        assert _call_figures(same.ours) == _call_figures(same.real), keys
    for client in (same.real, same.ours):
        client.config_resetstat()
    same("EVAL", "redis.call('INCR', KEYS[1]) return #redis.call('KEYS', '*')", 1, "counter")
    assert _call_figures(same.ours) == _call_figures(same.real)
    # Only reads before it reaches a key it did not declare (counted in
    # the shard's own rows, then taken back), 300 of them (folded
    # meanwhile), and one that fails.
    reads = [
        "redis.call('GET', KEYS[1]) redis.call('GET', KEYS[1])",
        "for i = 1, 300 do redis.call('GET', KEYS[1]) end",
        "redis.call('GET', KEYS[1]) pcall(redis.call, 'HGET', KEYS[1], 'f')",
    ]
    for client in (same.real, same.ours):
        client.delete(a, b)
        client.set(a, "a")
        client.hset(b, "f", "v")
    for body in reads:
        for client in (same.real, same.ours):
            client.config_resetstat()
        same("EVAL", body + " return redis.call('HGET', ARGV[1], 'f')", 1, a, b)
        assert _call_figures(same.ours) == _call_figures(same.real), body


def test_a_scripts_failed_calls_of_acceptor_commands_count_on_them(same):
    """A script's call that the acceptor answers (SLOWLOG, COMMAND, PUBSUB:
    shardkv.acceptor.scriptcalls) counts in its own failed_calls and in
    errorstats when it fails, and the calls that succeed after it do not,
    as in Redis, one call at a time or several in one script."""
    calls = [
        "redis.pcall('slowlog', 'get', 'x')",
        "redis.pcall('command', 'info', 'get')",
        "redis.pcall('slowlog', 'get', '-2')",
        "redis.pcall('pubsub', 'numsub', 'a')",
        "redis.pcall('pubsub', 'numpat')",
    ]
    for client in (same.real, same.ours):
        client.config_resetstat()
    for call in calls:
        same("EVAL", "return " + call, 0)
    same("EVAL", " ".join(calls) + " return 1", 0)
    assert _call_figures(same.ours) == _call_figures(same.real)


_BUSY = "for i = 1, 15000000 do end "  # some 50 ms of Lua or more


def test_a_script_calls_usec_holds_its_run(ports):
    """INFO commandstats' usec of EVAL, EVALSHA and FCALL, and their
    latencystats percentiles, hold the script's run, as in Redis, whose
    call() times the command's whole proc: a ~50 ms busy loop gives at
    least 30 ms, whether the script's shard had its body (EVALSHA as sent,
    EVAL sent as EVALSHA) or not (EVALSHA sent as EVAL), and when its keys
    are on several shards (run across them).  A lower bound on the
    measured run, not on speed."""
    a, b = on_shards(0, 2, prefix="usec")
    body = _BUSY + "return redis.call('GET', KEYS[1])"
    library = "#!lua name=busy\nredis.register_function('busy', function(keys) " + _BUSY + " return 1 end)"
    calls = [
        ("evalsha", lambda c, sha: c.evalsha(sha, 1, a)),  # the shard lacks the body
        ("evalsha", lambda c, sha: c.evalsha(sha, 1, a)),  # it has it now
        ("eval", lambda c, sha: c.eval(body, 1, a)),  # sent as EVALSHA
        ("eval", lambda c, sha: c.eval(body, 2, a, b)),  # across shards
        ("evalsha", lambda c, sha: c.evalsha(sha, 2, b, a)),
        ("fcall", lambda c, sha: c.fcall("busy", 1, b)),
    ]
    for port in (ports["redis"], ports["shardkv"]):
        client = redis.Redis(port=port)
        client.script_flush()
        client.function_load(library, replace=True)
        client.delete(a, b)
        try:
            sha = client.script_load(body)
            for name, call in calls:
                client.config_resetstat()
                call(client, sha)
                row = client.info("commandstats")[f"cmdstat_{name}"]
                assert row["calls"] == 1, (port, name, row)
                assert row["usec"] >= 30000, (port, name, row)
                latency = client.info("latencystats")[f"latency_percentiles_usec_{name}"]
                assert latency["p50"] >= 30000, (port, name, latency)
        finally:
            client.function_delete("busy")
            client.close()


def _library(name: str, functions: int, pad: int = 0, prefix: str = "f", description: bool = False) -> str:
    """A library of ``functions`` functions, its code padded by a comment."""
    code = f"#!lua name={name}\n"
    for i in range(functions):
        if description:
            code += (
                f"redis.register_function{{function_name='{prefix}{i}', callback=function() return 1 end, "
            )
            code += "description='adds up to nothing'}\n"
        else:
            code += f"redis.register_function('{prefix}{i}', function() return 1 end)\n"
    return code + "-- " + "x" * pad + "\n"


def test_used_memory_functions_matches_redis(same):
    """INFO's used_memory_functions is Redis's functionsMemoryOverhead: its
    dicts (the dict of functions grows and never shrinks on delete), and
    each library's and function's allocations, as jemalloc sizes them (code
    and names of each sds header type), kept as Redis 7.0 keeps their sum
    (which FUNCTION RESTORE zeroes)."""

    def figures() -> None:
        real = same.real.info("memory")["used_memory_functions"]
        ours = same.ours.info("memory")["used_memory_functions"]
        assert ours == real
        assert same.ours.memory_stats()["functions.caches"] == real

    steps = [
        # A new context: none of the other tests' history.  Without it the
        # library test_function_dump_restore_both_ways leaves made c's the
        # fifth function: Redis began a rehash of its four slots, and after
        # the two steps of the failed REPLACE it had finished or not by
        # where its random hash seed put the four names (83328 or 83360,
        # about one run in three differing from the expected count here).
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "LOAD", _library("a", 1)],
        ["FUNCTION", "LOAD", "REPLACE", _library("a", 1, pad=100)],
        ["FUNCTION", "LOAD", "REPLACE", _library("a", 1, pad=1000)],
        ["FUNCTION", "LOAD", "REPLACE", _library("a", 2, pad=70000)],
        ["FUNCTION", "LOAD", _library("b" * 40, 1, prefix="long_function_name_of_forty_bytes_")],
        ["FUNCTION", "LOAD", _library("c", 1, prefix="g", description=True)],
        ["FUNCTION", "LOAD", "REPLACE", "#!lua name=c\n error('no')"],  # unlinked, then linked back
        ["FUNCTION", "DELETE", "a"],  # its slots stay
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "LOAD", _library("d", 5)],  # a rehash begun by its fifth function
        ["FUNCTION", "FLUSH"],
        ["FUNCTION", "LOAD", _library("e", 3)],
        ["FUNCTION", "LOAD", _library("f", 1, prefix="h")],  # the fourth function fills four slots
    ]
    for step in steps:
        if step:
            same(*step)
        figures()
    payload = same.real.function_dump()
    # Redis 7.0 leaves out of the figure what the libraries take after a
    # RESTORE that does not swap in a whole new context (all but a FLUSH
    # that works), and takes a library's size off when it is deleted later.
    same("FUNCTION", "RESTORE", payload, "FLUSH")
    figures()
    same("FUNCTION", "LOAD", _library("g", 1, prefix="k"))
    figures()
    same("FUNCTION", "RESTORE", payload, "REPLACE")
    figures()
    same("FUNCTION", "DELETE", "g")
    figures()
    same("FUNCTION", "FLUSH")
    same("FUNCTION", "RESTORE", payload, "APPEND")
    figures()
    same("FUNCTION", "LOAD", _library("g", 1, prefix="k"))
    figures()
    same("FUNCTION", "FLUSH")


SCRIPTING_COMMANDS = ["eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro", "script", "function"]


def _any_subcommand_order(value: object) -> object:
    """A reply of COMMAND INFO or DOCS with its subcommands in one order:
    Redis lists them in its command dict's order, which a random hash seed
    changes at every start.  (COMMAND INFO's subcommands are arrays that
    begin with ``container|sub``; DOCS has them under ``subcommands``, a map
    that RESP2 writes as a flat array.)"""
    if isinstance(value, dict):
        return {k: _any_subcommand_order(v) for k, v in value.items()}
    if not isinstance(value, list):
        return value
    items = [_any_subcommand_order(v) for v in value]
    for i in range(0, len(items) - 1, 2):
        if items[i] == b"subcommands" and isinstance(items[i + 1], list):
            flat = items[i + 1]
            items[i + 1] = sorted(zip(flat[::2], flat[1::2], strict=True), key=lambda pair: pair[0])
    if items and all(isinstance(v, list) and v and isinstance(v[0], bytes) and b"|" in v[0] for v in items):
        items.sort(key=lambda v: v[0])
    return items


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("command", SCRIPTING_COMMANDS)
def test_command_info_and_docs_of_scripting_commands(ports, protocol, command):
    """COMMAND INFO and COMMAND DOCS of the scripting commands are
    redis-server's replies (complexity, history, argument names and
    versions, tips), whatever the order of their subcommands."""
    for sub in ("INFO", "DOCS"):
        replies = []
        for name in ("redis", "shardkv"):
            conn = redis.Connection(port=ports[name], protocol=protocol)
            try:
                conn.send_command("COMMAND", sub, command)
                replies.append(_any_subcommand_order(conn.read_response()))
            finally:
                conn.disconnect()
        assert replies[1] == replies[0], f"COMMAND {sub} {command}"


_CJSON_SET = "cjson.encode_max_depth(2) cjson.decode_max_depth(2) cjson.encode_number_precision(3)"
_CJSON_USE = "return {pcall(cjson.encode, {{{1}}}), pcall(cjson.decode, '[[[1]]]'), cjson.encode(0.123456)}"
_CJSON_DEFAULTS = (
    "cjson.encode_max_depth(1000) cjson.decode_max_depth(1000) cjson.encode_number_precision(14)"
)
_CJSON_LIBRARY = (
    "#!lua name=cjsonopts\n"
    f"redis.register_function('set', function() {_CJSON_SET} return 1 end)\n"
    f"redis.register_function('use', function() {_CJSON_USE} end)\n"
    f"redis.register_function('defaults', function() {_CJSON_DEFAULTS} return 1 end)"
)


def test_cjson_options_hold_for_every_later_script(same):
    """An option a script sets on cjson holds for every later script, on
    whatever shard it runs (Redis has one Lua state), until SCRIPT FLUSH;
    a function's, in the functions' state, for every later function."""
    try:
        same("EVAL", _CJSON_USE, 1, "h")
        same("EVAL", _CJSON_SET + " return 1", 1, "h")
        for key in ("h", "z", "s", "k"):
            same("EVAL", _CJSON_USE, 1, key)
        # set by a script across shards (the others parked meanwhile)
        same("EVAL", "cjson.encode_number_precision(5) redis.call('get', 'z') return 1", 1, "h")
        for key in ("h", "z", "s", "k"):
            same("EVAL", _CJSON_USE, 1, key)
        same("EVAL", _CJSON_SET + " return 1", 2, "s", "k")
        same("EVAL", "return {cjson.encode_max_depth(), cjson.encode_number_precision()}", 0)
        same("FUNCTION", "LOAD", "REPLACE", _CJSON_LIBRARY)
        same("FCALL", "use", 1, "z")
        same("FCALL", "set", 1, "z")
        for key in ("h", "z", "s", "k"):
            same("FCALL", "use", 1, key)
        same("SCRIPT", "FLUSH")
        for key in ("h", "z", "s", "k"):
            same("EVAL", _CJSON_USE, 1, key)  # EVAL's state is new: the defaults
            same("FCALL", "use", 1, key)  # the functions' keeps its options
    finally:
        for c in (same.real, same.ours):
            c.execute_command("FCALL", "defaults", 0)
            c.execute_command("FUNCTION", "DELETE", "cjsonopts")
            c.execute_command("SCRIPT", "FLUSH")


_CJSON_READ = "return {cjson.encode_number_precision(), cjson.encode(0.123456)}"


def test_reading_a_cjson_option_shares_nothing(same):
    """A getter (``cjson.encode_number_precision()``, no argument) changes no
    option, so it sends none to the other shards: a shard that has not yet
    taken the setter's value (a script pipelined behind the setter runs on
    its shard meanwhile) does not push its old one over it."""
    home, other = on_shards(0, 1)
    try:
        for precision in (3, 5, 7, 2):
            setter = f"cjson.encode_number_precision({precision}) return cjson.encode(0.123456)"
            for c in (same.real, same.ours):
                pipe = c.pipeline(transaction=False)
                pipe.eval(setter, 1, home)
                pipe.eval(_CJSON_READ, 1, other)  # (may still see the old value: README)
                pipe.execute()
            for key in (home, other, home):
                same("EVAL", _CJSON_READ, 1, key)
    finally:
        for c in (same.real, same.ours):
            c.execute_command("SCRIPT", "FLUSH")


# FUNCTION LOAD's metadata line, read as Redis 7.0's functionExtractLibMetaData
# reads it: strchr finds its line feed only before a NUL, sdssplitargs
# splits it (quotes, escapes), an unknown option is printed with %s (up to
# its NUL), the engine with %S (all of it).
LIBRARY_HEADERS = [
    b"#!lua name=hx\0\n",
    b"#!lua\0 name=hx\n",
    b"#!lua name=hx\n\0",
    b'#!lua name="hx"\n',
    b'#!lua "name=hx"\n',
    b'#!lua name="h\\x00x"\n',
    b'#!lua name=hx "bad\\x00option"\n',
    b'#!lua "bad\\x00option" name=hx\n',
    b"#!lua bad=1\n",
    b"#!lua NAME=hx\n",
    b"#!lua name=hx name=hy\n",
    b"#!lua name=hx  \n",
    b"#!lua\n",
    b"#!lua name=\n",
    b"#!lua name=h-x\n",
    b'#!lua name="hx\n',
    b"#!lua name=hx\r\n",
    b'#!"lua" name=hx\n',
    b'#!"lu\\x00a" name=hx\n',
    b'#!"py" name=hx\n',
    b"#!LUA name=hx\n",
    b"#! name=hx\n",
    b"#!\n",
    b"#!lua name=hx",
    b"#lua name=hx\n",
    b"\0#!lua name=hx\n",
]


def test_function_load_reads_the_metadata_line_as_redis(same):
    same("FUNCTION", "FLUSH")
    for header in LIBRARY_HEADERS:
        same(
            "FUNCTION", "LOAD", "REPLACE", header + b"redis.register_function('hf', function() return 1 end)"
        )
        same("FUNCTION", "LIST")
        same("FUNCTION", "FLUSH")


def test_a_script_that_returns_a_compile_error_stays_cached(same):
    """A script's own error reply with the text of a compile or shebang
    error (redis.error_reply) is its reply, not a refusal to compile it:
    it stays cached (EVALSHA runs it, SCRIPT EXISTS 1), as in Redis."""
    same("SCRIPT", "FLUSH")
    for text in (
        "ERR Error compiling script (new function): user_script:1: nope",
        "ERR Invalid script shebang",
        "ERR Unexpected flag in script shebang: x",
    ):
        script = "return redis.error_reply('%s')" % text
        sha = hashlib.sha1(script.encode()).hexdigest()
        same("EVAL", script, 0)
        same("SCRIPT", "EXISTS", sha)
        same("EVALSHA", sha, 0)
        same("EVAL", "#!lua\n" + script, 0)
        same("EVALSHA", sha, 0)
