"""The sandbox's stand-ins for Redis's C functions, against redis-server
(shardkv issue 18).

shardkv's prelude (``shardkv/worker/luaprelude.lua``) replaces some of
Lua's C functions with Lua functions (``table.insert``, ``pcall``,
``rawset``, ``setmetatable``, ``coroutine.*``, the libraries' wrappers)
and calls Python for others (``redis.call``, ``math.random``...).  Every
such function must fail as Redis's own does: the same arity and type
errors, in the same order as the read-only check, the same refusal by
``coroutine.create`` and ``coroutine.wrap`` (Redis's are C functions, which
no coroutine runs), the same error values.  Each script's exact reply
bytes are compared, a function's address (``function: 0x...``) read as any
address.  (``error({})`` is left out: redis-server 7.0.15 crashes on it.)
"""

from __future__ import annotations

import re

import pytest

from tests.support.resp import RespClient
from tests.support.servers import ServerProcess

# A script that names ``unpack`` runs with the wide redis.call (see the
# prelude): its functions are swapped, so some cases run both ways.
WIDE = "local _ = unpack "

INSERT = [
    "table.insert()",
    "return table.insert()",
    "local f = table.insert f()",
    "local t = table t.insert()",
    "table.insert({})",
    "table.insert({}, 1, 2, 3)",
    "table.insert(nil)",
    "table.insert(1, 2)",
    "table.insert({}, 'a', 2)",
    "table.insert({}, nil, 2)",
    "table.insert(_G)",
    "table.insert(_G, 1)",
    "table.insert(_G, 1, 2, 3)",
    "table.insert(_G, 'a', 2)",
    "table.insert(string, nil)",
    "local t = {1, 2} table.insert(t, '2', 0) return t",
    "local t = setmetatable({}, {__index = table}) t:insert()",
    "local t = setmetatable({}, {__index = table}) t:insert(1, 2, 3)",
    "return {pcall(table.insert)}",
    "return {pcall(table.insert, nil)}",
    "return {pcall(table.insert, _G, 1)}",
    "return {coroutine.resume(coroutine.create(function() table.insert() end))}",
    "local co = coroutine.wrap(function() table.insert() end) co()",
]

COROUTINES = [
    "return coroutine.wrap(table.insert)",
    "local f = coroutine.wrap(table.insert) local t = {} f(t, 1) return t",
    "return coroutine.create(table.insert) ~= nil",
    "return coroutine.resume(coroutine.create(table.insert), {}, 1)",
    "local c = coroutine return c.create(table.insert)",
    "return coroutine.wrap(pcall)",
    "return coroutine.wrap(tostring)(1)",
    "return coroutine.wrap(cjson.encode)({1})",
    "return coroutine.wrap(rawset)({}, 1, 2)",
    "return coroutine.wrap(redis.call)",
    "return coroutine.wrap(coroutine.wrap(function() end))",
    "return coroutine.create(coroutine.wrap(function() end))",
    "return coroutine.create(coroutine.create)",
    "return coroutine.wrap(cjson.new().encode)",
    "return {coroutine.resume(coroutine.create(setmetatable))}",
    "return {pcall(coroutine.wrap, table.insert)}",
    "return {pcall(coroutine.create, tostring)}",
    "return coroutine.create()",
    "return coroutine.wrap(1)",
    "return coroutine.wrap(loadstring('return 7'))()",
    "return coroutine.wrap(function(...) return select('#', ...) end)(1, 2, 3)",
    "return {coroutine.resume()}",
]

GLOBALS = [
    "setmetatable(_G)",
    "setmetatable(_G, 1)",
    "setmetatable(_G, {})",
    "return setmetatable(string)",
    "return setmetatable(getmetatable(''))",
    "rawset(_G)",
    "rawset(_G, 'a')",
    "rawset(_G, 'a', 1)",
    "return rawset(_G, nil)",
    "return rawset(_G, nil, 1)",
    "return rawset(string, 'a')",
    "return {pcall(rawset, _G)}",
    "return {pcall(setmetatable, _G)}",
    "return pcall()",
    "return {pcall()}",
    "return {pcall(nil)}",
    "return {pcall(error, 'x', 2)}",
    "return {pcall(error, 'x', '2')}",
    "return {pcall(error, 'x', 3)}",
    "return {pcall(error, 'x', 1)}",
    "return {pcall(error, 'x', 0)}",
    "return {pcall(error, 'x', {})}",
    "return {pcall(error, nil)}",
    "return {pcall(error, true)}",
    "error(nil)",
    "error(true)",
    "error('x', 2)",
    "error(redis.call)",
    "error(cjson.null)",
    "return {pcall(error, redis.call)}",
    "return {pcall(error, cjson.null)}",
    "return tostring(({pcall(error, redis.call)})[2]) == tostring(redis.call)",
    "return tostring(redis.call)",
    "return tostring(math.random)",
    "return tostring(redis.call) == tostring(redis.pcall)",
    "return tostring(redis.call) == tostring(redis.call)",
    "return {pcall(math.random, 'x')}",
    "return {pcall(math.randomseed)}",
    "local f = math.random f('x')",
    "local f = math.randomseed f()",
    "local m = math m:random()",
    "local m = {r = math.random} m:r('x')",
    "local m = {r = math.random} return m.r('x')",
    "return {loadstring('x=')}",
    "loadstring()",
    "return {loadstring('\\27Lua')}",
    "print('x')",
    "getfenv()",
]

_ADDRESS = re.compile(rb"0x[0-9a-f]+")


def _reply(port: int, script: str, *args: str) -> bytes:
    with RespClient(port) as c:
        return _ADDRESS.sub(b"0xADDRESS", c.call("EVAL", script, 0, *args))


@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
@pytest.mark.parametrize("script", INSERT + COROUTINES + GLOBALS)
def test_stand_ins_fail_as_redis_c_functions(ports, script, wide):
    """Each script's reply, errors included, byte for byte."""
    body = WIDE + script if wide else script
    expected = _reply(ports["redis"], body)
    got = _reply(ports["shardkv"], body)
    assert got == expected


# What a script finds in the read-only tables by raw reads and traversal:
# in Redis they hold their fields (KEYS and ARGV are real globals, set per
# run); in shardkv they are views of hidden tables.  Names are sorted: the
# order of a traversal is each table's own.
_NAMES = (
    "local function names(t) local n = {} for k, v in pairs(t) do n[#n + 1] = k .. '=' .. type(v) end"
    " table.sort(n) return table.concat(n, ' ') end "
)
VIEWS = [
    _NAMES + "return names(_G)",
    _NAMES
    + "local r = {} for _, t in ipairs({string, math, table, coroutine, redis, cjson, bit, struct, cmsgpack,"
    " getmetatable(_G), getmetatable('')}) do r[#r + 1] = names(t) end return r",
    "local r = {} for _, t in ipairs({_G, string, math, table, coroutine, redis, cjson, bit, struct, cmsgpack})"
    " do for k, v in pairs(t) do local y = type(v) if y == 'string' or y == 'number' then"
    " r[#r + 1] = k .. '=' .. tostring(v) end end end table.sort(r) return r",
    "return {type(rawget(_G, 'ARGV')), type(rawget(_G, 'KEYS')), rawget(_G, 'ARGV') == ARGV,"
    " #rawget(_G, 'ARGV'), rawget(_G, 'KEYS')[1], rawget(_G, 'nope')}",
    "local a = rawget(_G, 'ARGV') return {rawequal(a, ARGV), #ARGV, rawget(_G, 'redis') == redis}",
    "return {rawget(string, 'rep') == string.rep, rawget(redis, 'LOG_WARNING'), rawget(math, 'x')}",
    "local n, k = 0, next(_G) while k ~= nil do n = n + 1 k = next(_G, k) end return n",
    "local n = 0 for k in next, redis do n = n + 1 end return n",
    "return {type(next(_G)), type(next(string)), next({}), next({5})}",
    "return {rawequal(pairs({}), next), rawequal(select(2, pairs(_G)), _G), select('#', pairs(_G)),"
    " rawequal(pairs({}), pairs({}))}",
    "return {type(getmetatable(string)), type(getmetatable(getmetatable(_G))), type(getmetatable(getmetatable('')))}",
    "return getmetatable(_G).__index(_G, 'ARGV')",
    "return getmetatable(_G).__index(_G, 'nope')",
    "return getmetatable(_G).__index(_G, 2)",
    "return getmetatable(_G).__index(_G)",
    "return getmetatable(_G).__index(_G, 'a', 'b')",
    "return {pcall(getmetatable(_G).__index, _G, {})}",
    "return {pcall(getmetatable(_G).__index, _G, 1.5)}",
    "return type(__redis__err__handler)",
    "return __redis__err__handler('x')",
    "return {__redis__err__handler({err = 'boom'})}",
    "return rawget()",
    "return rawget(_G)",
    "return rawget(1, 2)",
    "local g = rawget return g(nil, 1)",
    "return {pcall(rawget)}",
    "return next()",
    "return next(_G, 'nope')",
    "return {pcall(next, _G, 'nope')}",
    "return pairs()",
    "local p = pairs return p(nil)",
    "return {pcall(pairs, 1)}",
    "redis = 1",
    "rawset(_G, 'ARGV', 1)",
    "rawset(string, 'x', 1)",
]


@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
@pytest.mark.parametrize("script", VIEWS)
def test_read_only_tables_show_their_fields(ports, script, wide):
    """rawget, next and pairs find in _G and the libraries what Redis's
    do: every global (KEYS and ARGV, also ARGV made only when read, and
    Redis's ``__redis__err__handler``), every field; getmetatable(_G)'s
    __index raises as luaProtectedTableError.  With no key, one key and no
    arguments, one key and arguments."""
    body = WIDE + script if wide else script
    for args in ((0,), (1, "k"), (1, "k", "a", "b")):
        replies = []
        for port in (ports["redis"], ports["shardkv"]):
            with RespClient(port) as c:
                replies.append(_ADDRESS.sub(b"0xADDRESS", c.call("EVAL", body, *args)))
        assert replies[1] == replies[0], args


FUNCTION_BODIES = {
    "ins": "table.insert()",
    "cow": "return coroutine.wrap(table.insert)",
    "cre": "return coroutine.create(tostring)",
    "rs": "rawset(_G, 'a')",
    "pc": "return {pcall()}",
    "gl": _NAMES + "return {names(_G), rawget(_G, 'redis') == redis, type(getmetatable(_G))}",
    # (Redis 7.0's function API has no breakpoint, debug, replicate_commands:
    # EVAL's alone)
    "rn": _NAMES + "return names(redis)",
    "rdbg": "return {type(rawget(redis, 'debug')), type(rawget(redis, 'breakpoint')), pcall(redis.debug, 'x')}",
    "rrc": "return redis.replicate_commands()",
}
LIBRARY = "#!lua name=sandboxlib\n" + "".join(
    f"redis.register_function('{name}', function(keys, args) {body} end)\n"
    for name, body in FUNCTION_BODIES.items()
)


@pytest.mark.parametrize("name", sorted(FUNCTION_BODIES))
def test_stand_ins_fail_as_redis_c_functions_in_functions(ports, name):
    """The same inside a function (FCALL), whose globals are the library's."""
    replies = []
    for port in (ports["redis"], ports["shardkv"]):
        with RespClient(port) as c:
            c.command("FUNCTION", "LOAD", "REPLACE", LIBRARY)
            replies.append(_ADDRESS.sub(b"0xADDRESS", c.call("FCALL", name, 0)))
            c.command("FUNCTION", "DELETE", "sandboxlib")
    assert replies[1] == replies[0]


# Coroutines 190 deep, resumed and wrapped; at the deepest, calls of C
# and Python functions and Lua callbacks from C.
_NESTED_BOTTOM = (
    "local t = {} t[1] = redis.call('ping') t[2] = cjson.encode({n})"
    " t[3] = string.gsub('ab', '%w', function(c) return c:upper() end)"
    " local s = {3, 1, 2} table.sort(s, function(a, b) return a > b end) t[4] = s[1]"
    " t[5] = loadstring('return 5')() t[6] = select(2, pcall(error, 'e'))"
    " t[7] = redis.pcall('nope')['err'] t[8] = coroutine.running() ~= nil"
    " local x = 0 for i = 1, 300000 do x = x + i end t[9] = x return t"
)
NESTED = [
    "local function f(n) if n == 0 then " + _NESTED_BOTTOM + " end"
    " local ok, r = coroutine.resume(coroutine.create(f), n - 1) if not ok then error(r, 0) end return r end"
    " return f(190)",
    # (what coroutine.wrap gives takes two C levels per resume: 99 deep)
    "local function f(n) if n == 0 then "
    + _NESTED_BOTTOM
    + " end return coroutine.wrap(f)(n - 1) end return f(90)",
]


@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
@pytest.mark.parametrize("script", NESTED, ids=["resume", "wrap"])
def test_coroutines_nest_as_deep_as_in_redis(ports, script, wide):
    """Each coroutine.resume is one C level of Lua's 200 (LUAI_MAXCCALLS),
    as in Redis: 190 deep works (it stopped at 99, the prelude's pcall a
    level more per resume)."""
    body = WIDE + script if wide else script
    assert _reply(ports["shardkv"], body) == _reply(ports["redis"], body)


# Coroutines nested until Lua refuses one more ("C stack overflow"), then
# at the deepest each of these, under pcall: each line of the reply is
# the depth, whether the call went through, and what it gave.
TO_THE_LIMIT = """local results = {}
local tries = {
  function() return redis.call('ping') end,
  function() return cjson.encode({{{1}}}) end,
  function() return cjson.decode('[[[1]]]')[1][1][1] end,
  function() return cmsgpack.unpack(cmsgpack.pack({1, {2}}))[1] end,
  function() return (string.gsub('ab', '%w', function(c) return c:upper() end)) end,
  function() local s = {3, 1, 2} table.sort(s, function(a, b) return a > b end) return s[1] end,
  function() return loadstring('return 5')() end,
  function() return select(2, pcall(error, 'e')) end,
  function() local x = 0 for i = 1, 300000 do x = x + i end return x end,
  function() return tostring(setmetatable({}, {__tostring = function() return 'mt' end})) end,
  function() return coroutine.wrap(function() return 1 end)() end,
  function() return redis.pcall('nope') end,
  function() return #string.rep('x', 10) end,
}
for i, try in ipairs(tries) do
  local deepest = 0
  local function f(n)
    deepest = n
    local co = coroutine.create(f)
    local ok, e = coroutine.resume(co, n + 1)
    if not ok and e == 'C stack overflow' then
      local ok2, r = pcall(try)
      return {n, ok2, type(r) == 'table' and 'table' or tostring(r)}
    end
    if not ok then return {n, 'err', tostring(e)} end
    return e
  end
  local r = f(0)
  results[#results + 1] = table.concat({tostring(r[1]), tostring(r[2]), tostring(r[3])}, ' ')
end
return results"""
_DEPTH = re.compile(rb"^(\$\d+\r\n)(\d+) ", re.MULTILINE)


@pytest.mark.parametrize("wide", [False, True], ids=["narrow", "wide"])
def test_coroutines_nested_to_the_limit_keep_the_worker(ports, wide):
    """At the deepest coroutine Lua allows, C and Python functions and Lua
    callbacks from C answer as in Redis, and the worker lives on; a level
    less deep than Redis's (lupa's call into Lua and the prelude's xpcall
    around the script are two C levels where Redis has one)."""
    body = WIDE + TO_THE_LIMIT if wide else TO_THE_LIMIT
    expected = _reply(ports["redis"], body)
    for _ in range(3):
        got = _reply(ports["shardkv"], body)
        depths = [int(m.group(2)) for m in _DEPTH.finditer(got)]
        assert depths and all(d == 198 for d in depths), got
        assert _DEPTH.sub(rb"\g<1>199 ", got) == expected
    assert _reply(ports["shardkv"], "return redis.call('ping')") == b"+PONG\r\n"


# redis.call's error ends the coroutine; the error table it stands for.
COROUTINE_CALL_ERROR = "return {coroutine.resume(coroutine.create(function() redis.call('nope') end))}"


@pytest.mark.slow
def test_a_call_error_that_ends_coroutines_again_and_again(
    redis_and_shardkv: tuple[ServerProcess, ServerProcess],
):
    """A coroutine ended by redis.call's error gives its error table, as in
    Redis; 200 of them in a row (the worker's SIGSEGV came after 50 or so,
    once Lua's collector freed what the dead coroutines kept), narrow and
    wide, on a shardkv of its own."""
    real, ours = redis_and_shardkv
    for body in (COROUTINE_CALL_ERROR, WIDE + COROUTINE_CALL_ERROR):
        expected = [_reply(real.port, body) for _ in range(200)]
        assert expected[0] == b"*2\r\n$-1\r\n-ERR Unknown Redis command called from script\r\n"
        assert [_reply(ours.port, body) for _ in range(200)] == expected


# Errors that end a coroutine while their Python callable held a Lua value
# the script passed (a table, a function): redis.call's, a redis.* helper's,
# a library's.
COROUTINE_HELD_ERRORS = [
    "return {coroutine.resume(coroutine.create(function() redis.call('get', {}) end))}",
    "return {coroutine.resume(coroutine.create(function() redis.setresp({}) end))}",
    "return {coroutine.resume(coroutine.create(function() cjson.encode({function() end}) end))}",
]


@pytest.mark.slow
@pytest.mark.parametrize("script", COROUTINE_HELD_ERRORS)
def test_errors_that_hold_lua_values_and_end_coroutines(
    redis_and_shardkv: tuple[ServerProcess, ServerProcess], script: str
):
    """Each such error, 200 times in a row, narrow and wide, answers as in
    Redis, and the worker stays up (its SIGSEGV came after 60 or so: a
    table or function the exception's traceback held was freed by Lua's
    collector after its coroutine; lualibs.for_lua)."""
    real, ours = redis_and_shardkv
    for body in (script, WIDE + script):
        expected = [_reply(real.port, body) for _ in range(200)]
        assert [_reply(ours.port, body) for _ in range(200)] == expected
    assert _reply(ours.port, "return redis.call('ping')") == b"+PONG\r\n"


# redis.call's error in a coroutine whose xpcall handler yields (which
# fails: a yield across the handler's C call), so that no one takes the
# error table the call raised; the coroutine is then collected, and the
# next error replaces that table.
HANDLER_YIELDS = (
    "local r = {pcall(coroutine.wrap(function() return xpcall(function() redis.call({}) end,"
    " function(e) coroutine.yield(e) end) end))}"
    " collectgarbage() return {r[1], r[2], r[3], redis.pcall('nope')}"
)


@pytest.mark.slow
def test_an_error_no_handler_takes_outlives_its_coroutine(
    redis_and_shardkv: tuple[ServerProcess, ServerProcess],
):
    """200 times in a row, narrow and wide, as in Redis, and the worker
    stays up: the error table, made in the coroutine's Lua state, was held
    in Python after that state was freed, then released through it (heap
    corruption: the worker's SIGABRT, "corrupted double-linked list";
    Engine._hold)."""
    real, ours = redis_and_shardkv
    for body in (HANDLER_YIELDS, WIDE + HANDLER_YIELDS):
        expected = [_reply(real.port, body) for _ in range(200)]
        assert [_reply(ours.port, body) for _ in range(200)] == expected
    assert _reply(ours.port, "return redis.call('ping')") == b"+PONG\r\n"
