"""The libraries Redis loads into scripts, against redis-server: cjson
(lua_cjson 2.1.0's tokens, errors, option functions, ``cjson.new`` and
``cjson.null``) and bit (LuaBitOp's conversion of numbers and its
argument checks), cmsgpack, struct, and the base functions the sandbox
replaces.

Each script runs on redis-server and on shardkv, in RESP3 and RESP2, and
the replies, errors included, must be equal.  A cjson table keeps its
options for later scripts (Redis's one Lua state; here each shard's), so
scripts that set options do so on a table of their own: ``cjson.new()``.
"""

from __future__ import annotations

import pytest

from tests.compat.test_scripting import _Same


@pytest.fixture
def same(compare):
    return _Same(compare)


CJSON_DECODE = [
    "return cjson.decode('')",
    "return cjson.decode('   ')",
    "return cjson.decode('{')",
    "return cjson.decode('{\"a\"')",
    "return cjson.decode('{\"a\":')",
    "return cjson.decode('{\"a\":1')",
    "return cjson.decode('{\"a\":1,')",
    "return cjson.decode('{1:2}')",
    "return cjson.decode('[1,2')",
    "return cjson.decode('[1 2]')",
    "return cjson.decode('[1,]')",
    "return cjson.decode('tru')",
    "return cjson.decode('nul')",
    "return cjson.decode('nan')",
    "return tostring(cjson.decode('nan'))",
    "return tostring(cjson.decode('-nan'))",
    "return tostring(cjson.decode('NaN'))",
    "return tostring(cjson.decode('inf'))",
    "return tostring(cjson.decode('-Infinity'))",
    "return tostring(cjson.decode('infinit'))",
    "return cjson.decode('+1')",
    "return cjson.decode('0x10')",
    "return cjson.decode('01')",
    "return cjson.decode('1.')",
    "return cjson.decode('.5')",
    "return cjson.decode('1e')",
    "return cjson.decode('-')",
    "return cjson.decode('-abc')",
    "return cjson.decode('\"abc')",
    "return cjson.decode('\"a\\\\qb\"')",
    "return cjson.decode('\"a\\\\u12\"')",
    "return cjson.decode('\"a\\\\ud800\"')",
    "return cjson.decode('\"a\\\\udc00\\\\ud800\"')",
    "return cjson.decode('\"a\\\\ud83d\\\\ude00\"')",
    "return cjson.decode('\"\\\\u00e9\\\\/\\\\b\"')",
    "return cjson.decode('[1] x')",
    "return cjson.decode('[1]\\0garbage')",
    "return cjson.decode('\"a\\0b\"')",
    "return cjson.decode('\\0[1]')",
    "return cjson.decode('1\\0')",
    "return cjson.decode(12.5)",
    "return cjson.decode(nil)",
    "return cjson.decode()",
    "return cjson.decode('1', 2)",
    "return cjson.decode('[[[1]]]')[1][1][1]",
    "return cjson.decode('1e400')",
    "return tostring(cjson.decode('1e400'))",
    "return tostring(cjson.decode('-0'))",
    'return cjson.decode(\'{"a":1,"a":2}\').a',
    "return cjson.decode(' \\t\\n\\r[ 1 , 2 ] ')[2]",
    "return cjson.decode('\\f1')",
    "return cjson.decode('True')",
    "return cjson.decode('nan(123)')",
    "return tostring(cjson.decode('0x1p4'))",
    "return tostring(cjson.decode('0x'))",
    "return tostring(cjson.decode('-0x10'))",
    "return tostring(cjson.decode('1E+2'))",
    "return cjson.decode(string.rep('[', 1001) .. string.rep(']', 1001))",
    "return #cjson.decode(string.rep('[', 1000) .. string.rep(']', 1000))",
    'return {pcall(cjson.decode, \'{"a":{"b":{"c":1}}}\')}',
    "return cjson.encode(cjson.decode('[null]'))",
    "local ok, e = pcall(cjson.decode, '[') return e",
    "local f = cjson.decode return f('[')",
    "return cjson.decode('-\\200')",
    "return cjson.decode('\"\\200\\255\"')",
    "return cjson.decode('\"\\\\u0000x\"')",
    "return cjson.decode('\"a\\\\')",
    "return cjson.decode('\"\\\\ud800\\\\u0041\"')",
    "return cjson.decode('\"\\\\uDBFF\\\\uDFFF\"')",
    "return cjson.decode('\"\\\\uzzzz\"')",
    'return cjson.decode(\'{"a":1 "b":2}\')',
    "return cjson.decode('{\"a\" 1}')",
    "return cjson.decode('[\"a\":1]')",
    "return cjson.decode('[}')",
    "return cjson.decode('{]')",
    "return cjson.decode(']')",
    "return cjson.decode('[1,2,3]}')",
    "return cjson.decode('true false')",
    "return cjson.decode('nulll')",
    "return cjson.decode('falsey')",
    "return cjson.decode('1 2')",
    "return cjson.decode('\\2551')",
    "return cjson.decode('[1,2]', nil)",
    "return cjson.decode(true)",
    "return cjson.decode('[' .. string.rep('1,', 100) .. '1]')[101]",
    'local t = cjson.decode(\'{"b":1,"a":2,"c":3,"d":4,"e":5}\') local s = \'\' for k, v in pairs(t) do s = s .. k end return s',
]

CJSON_OPTIONS = [
    "local cjson = cjson.new() return {cjson.decode_max_depth(2), pcall(cjson.decode, '[[[1]]]')}",
    "local cjson = cjson.new() return {cjson.decode_max_depth(1000)}",
    "local cjson = cjson.new() return {cjson.decode_invalid_numbers(false), pcall(cjson.decode, 'nan'), pcall(cjson.decode, '+1'), pcall(cjson.decode, '0x10'), pcall(cjson.decode, '01'), pcall(cjson.decode, '-inf'), pcall(cjson.decode, 'Infinity'), cjson.decode_invalid_numbers(true)}",
    "local cjson = cjson.new() return {cjson.decode_invalid_numbers('off'), cjson.decode_invalid_numbers('on'), cjson.decode_invalid_numbers()}",
    "local cjson = cjson.new() return cjson.decode_invalid_numbers('maybe')",
    "local cjson = cjson.new() return cjson.decode_invalid_numbers(1)",
    "local cjson = cjson.new() return cjson.decode_invalid_numbers({})",
    "local cjson = cjson.new() return cjson.decode_invalid_numbers(true, 2)",
    "local cjson = cjson.new() return {cjson.encode_invalid_numbers('null'), cjson.encode({1/0, -1/0, 0/0}), cjson.encode_invalid_numbers(true), cjson.encode({1/0, -1/0, 0/0, [4]=-(0/0)}), cjson.encode_invalid_numbers(false)}",
    "local cjson = cjson.new() return {cjson.encode_invalid_numbers('null'), cjson.encode({[1/0]=1}), cjson.encode_invalid_numbers(false)}",
    "local cjson = cjson.new() return cjson.encode_invalid_numbers('nope')",
    "local cjson = cjson.new() return {cjson.encode_max_depth(), cjson.encode_max_depth(0)}",
    "local cjson = cjson.new() return cjson.encode_max_depth('x')",
    "local cjson = cjson.new() return cjson.encode_max_depth(1, 2)",
    "local cjson = cjson.new() return {cjson.encode_max_depth(2^32 + 3), cjson.encode_max_depth(1000)}",
    "local cjson = cjson.new() return {cjson.encode_max_depth(2.9), cjson.encode_max_depth(1000)}",
    "local cjson = cjson.new() return {cjson.encode_max_depth('5'), cjson.encode_max_depth(1000)}",
    "local cjson = cjson.new() return {cjson.encode_max_depth(2), pcall(cjson.encode, {{{1}}}), cjson.encode_max_depth(1000)}",
    "local cjson = cjson.new() return cjson.encode_number_precision(15)",
    "local cjson = cjson.new() return cjson.encode_number_precision(0)",
    "local cjson = cjson.new() return {cjson.encode_keep_buffer(), cjson.encode_keep_buffer(false), cjson.encode_keep_buffer('on'), cjson.encode_keep_buffer('x')}",
    "local cjson = cjson.new() return {cjson.encode_keep_buffer(1)}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array()}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array(true, 3, 5)}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array(false, 2, 10)}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array(nil, -1)}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array(nil, nil, 'x')}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array('on'), cjson.encode({[1]=1,[50]=2}), cjson.encode_sparse_array('off')}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array(nil, 0), cjson.encode({[1]=1,[50]=2}), cjson.encode_sparse_array(nil, 2)}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array(1, 2, 3, 4)}",
    "return type(cjson.new())",
    "return cjson.new().encode({1,2})",
    "return cjson.new()._NAME .. cjson.new()._VERSION",
    "return {cjson.new().null == cjson.null}",
    "local c = cjson.new() c.encode_number_precision(3) return {c.encode(1/3), cjson.encode(1/3)}",
    "local c = cjson.new() return c.decode('[1,')",
    "local c = cjson.new() c.x = 1 return c.x",
    "return type(cjson.new().new)",
    "return cjson.new().new().encode('x')",
    "local c = cjson.new() c.decode_max_depth(100000) local ok, e = pcall(c.decode, string.rep('[', 7998) .. string.rep(']', 7998)) return ok and \"ok\" or e",
    "local c = cjson.new() c.decode_max_depth(100000) local ok, e = pcall(c.decode, string.rep('[', 7999) .. string.rep(']', 7999)) return ok and \"ok\" or e",
    "local c = cjson.new() c.decode_max_depth(100000) local ok, e = pcall(c.decode, string.rep('{\"a\":', 3998) .. '1' .. string.rep('}', 3998)) return ok and \"ok\" or e",
    "local c = cjson.new() c.decode_max_depth(100000) local ok, e = pcall(c.decode, string.rep('{\"a\":', 4000) .. '1' .. string.rep('}', 4000)) return ok and \"ok\" or e",
    "local c = cjson.new() c.decode_max_depth(100000) local ok, e = pcall(c.decode, string.rep('{\"a\":[', 2666) .. '1' .. string.rep(']}', 2666)) return ok and \"ok\" or e",
    "local c = cjson.new() c.decode_max_depth(100000) local ok, e = pcall(c.decode, string.rep('{\"a\":[', 2667) .. '1' .. string.rep(']}', 2667)) return ok and \"ok\" or e",
    "local c = cjson.new() c.decode_invalid_numbers(false) return {pcall(c.decode, '1'), pcall(c.decode, '-0'), pcall(c.decode, '-01'), pcall(c.decode, '0X1'), cjson.decode('0x1')}",
    "local c = cjson.new() c.decode_invalid_numbers(false) local ok, e = pcall(c.decode, 'NaN') return e",
    "local c = cjson.new() c.decode_invalid_numbers(false) local ok, e = pcall(c.decode, '[-inf]') return e",
    "local c = cjson.new() c.decode_invalid_numbers(false) local ok, e = pcall(c.decode, '-') return e",
    "local c = cjson.new() c.decode_invalid_numbers(false) local ok, e = pcall(c.decode, '+1') return e",
    "local c = cjson.new() c.decode_invalid_numbers(false) local ok, e = pcall(c.decode, '-x') return e",
    "local c = cjson.new() c.decode_invalid_numbers(false) local ok, e = pcall(c.decode, '-\\200') return e",
    "local cjson = cjson.new() return cjson.encode_sparse_array(true, 2^31)",
    "local cjson = cjson.new() return {cjson.encode_sparse_array(true, 2^32+1, 2^32 + 2)}",
    "local cjson = cjson.new() return {cjson.encode_sparse_array(false, 2, 10)}",
    "local cjson = cjson.new() return {cjson.encode_invalid_numbers(), cjson.encode_invalid_numbers('on'), cjson.encode_invalid_numbers('off')}",
    "local cjson = cjson.new() return {cjson.encode_invalid_numbers('null\\0x'), cjson.encode_invalid_numbers(false)}",
    "local cjson = cjson.new() return {cjson.encode_number_precision(nil), cjson.encode_number_precision('14')}",
    "local c = cjson.new() c.encode_invalid_numbers(true) return c.encode({1/0, 0/0})",
    "local c = cjson.new() c.encode_invalid_numbers(true) return c.encode({[1/0]=1})",
    "local c = cjson.new() c.encode_max_depth(3) return {pcall(c.encode, {{{{1}}}})}",
    "local c = cjson.new() c.encode_max_depth(3) return {pcall(c.encode, {{{1}}})}",
    "local c = cjson.new() c.encode_sparse_array(true) return c.encode({[1]=1, [100]=2})",
    "local c = cjson.new() local d = c.new() d.encode_number_precision(2) return {c.encode(1/3), d.encode(1/3)}",
]

CJSON_ENCODE = [
    "return cjson.encode({[true]=1})",
    "return cjson.encode({[{}]=1})",
    "return cjson.encode({a=function() end})",
    "return cjson.encode()",
    "return cjson.encode(1, 2)",
    "return cjson.encode(cjson.null)",
    "return type(cjson.null)",
    "return tostring(cjson.null)",
    "return type(cjson.new)",
    "return cjson.new(1)",
    "return cjson.encode({[0]=1})",
    "return cjson.encode({[1.5]=1})",
    "return cjson.encode({[-1]='x'})",
    "return cjson.encode('\\0')",
    "return cjson.encode({[1/0]=1})",
    "return cjson.encode({1, [1/0]=2})",
    "return cjson.encode({[2^40]=1})",
    "return cjson.encode({[2^31]=1, [1]=2})",
    "return cjson.encode({[0/0]=1})",
    "return cjson.encode({a={b={c={}}}})",
    "return cjson.encode(string.rep('x', 3) .. '\\31\\127\\128\\255')",
]

CJSON_NULL = [
    "return cjson.null",
    "return {1, cjson.null, 2}",
    "return {a=cjson.null}",
    "return cmsgpack.pack(cjson.null)",
    "return cmsgpack.pack({cjson.null})",
    "return redis.call('echo', cjson.null)",
    "return getmetatable(cjson.null)",
    "return cjson.null == cjson.null",
    "return #cjson.decode('[null,null]')",
    "return redis.sha1hex(cjson.null)",
    "return tostring(cjson.decode('null'))",
    "return struct.pack('i', cjson.null)",
    "return pcall(redis.call, 'echo', cjson.null)",
    "return cjson.null .. 'x'",
    "return type(cjson.decode('[null]')[1])",
    "return {pcall(bit.tobit, cjson.null)}",
    "local t = {} t[cjson.null] = 1 return t[cjson.null]",
    "return rawequal(cjson.null, cjson.decode('null'))",
]

BIT = [
    "return bit.tohex(1, nil)",
    "return bit.tohex(1)",
    "return bit.tohex(255, 2)",
    "return bit.tohex(255, -3)",
    "return bit.tohex(255, 0)",
    "return bit.tohex(255, 20)",
    "return bit.tohex('0x10')",
    "return bit.tohex('abc')",
    "return bit.tohex(true)",
    "return bit.tobit()",
    "return bit.tobit(nil)",
    "return bit.tobit(2^53)",
    "return bit.tobit(2^53+2)",
    "return bit.tobit(2^60+12345)",
    "return bit.tobit(-2^60-7)",
    "return bit.tobit(1e300)",
    "return bit.tobit(0/0)",
    "return bit.tobit(1/0)",
    "return bit.tobit(2.5)",
    "return bit.tobit(3.5)",
    "return bit.tobit(-2.5)",
    "return bit.tobit(2^31)",
    "return bit.tobit(2^51+3.5)",
    "return bit.tobit(2^52+3.5)",
    "return bit.band(1, 'x', 'y')",
    "return bit.band('x', 1, 'y')",
    "return bit.bor(1, 2, nil)",
    "return bit.bxor()",
    "return bit.lshift(1)",
    "return bit.lshift(1, nil)",
    "return bit.lshift(nil, 'x')",
    "return bit.rol(1, 0)",
    "return bit.ror(1, 32)",
    "return bit.ror(1, 1)",
    "return bit.rol(-1, 4)",
    "return bit.arshift(-256, 36)",
    "return bit.bswap(0x12345678)",
    "return bit.bnot('7')",
    "return bit.tobit('  12  ')",
    "return bit.tobit('1e3')",
    "return bit.tobit({})",
    "local f = bit.tohex return f(1, nil)",
    "local ok, e = pcall(bit.tohex, 1, nil) return e",
    "return tostring(bit.tohex(1, 2^32+3))",
    "return bit.tohex(1, -2^32-3)",
]


# The base functions the prelude replaces with Lua functions (type,
# tostring, getmetatable, rawset, setmetatable, loadstring, coroutine.wrap
# and yield, redis.acl_check_cmd): their errors are the C functions', at
# the caller's line, a tail call of one included.
BASE_FUNCTIONS = [
    "return tostring()",
    "return type()",
    "return getmetatable()",
    "local x = type() return x",
    "local ty = type return ty()",
    "return rawset({}, nil, 1)",
    "return rawset({}, 0/0, 1)",
    "return rawset({}, 1)",
    "return rawset(1, 1, 1)",
    "return rawset()",
    "return setmetatable(1, {})",
    "local x = setmetatable({}, 1) return x",
    "return setmetatable({}, {__metatable = 1}) and setmetatable(setmetatable({}, {__metatable = 1}), {})",
    "return type(rawset({}, 'a', 1))",
    "return tostring(setmetatable({}, {__tostring = function() return 'X' end}))",
    "return rawset(redis, 'x', 1)",
    "return setmetatable(_G, {})",
    "return {type(nil), tostring(nil), type(cjson.null), type(redis.call)}",
    "local t = {} return rawset(t, 'a', 2).a",
    "return getmetatable('x').__index == string",
    "local function f() return tostring() end return f()",
    "return loadstring()",
    "return loadstring({})",
    "local ls = loadstring return ls(nil)",
    "return loadstring('return 7')()",
    "return load(function() return nil end)",
    "return coroutine.wrap(1)",
    "return coroutine.wrap(function() return 3 end)()",
    "return coroutine.yield()",
    "return redis.acl_check_cmd()",
    "return redis.acl_check_cmd('get', 'x')",
]


# struct (lua_struct.c): its options, sizes, alignment and errors.
STRUCT = [
    "return struct.unpack('i', '')",
    "return struct.unpack('c0', '')",
    "return struct.unpack('bc0', '\\3ab')",
    "return struct.pack('z', 1)",
    "return struct.unpack('z', '')",
    "return struct.size('z')",
    "return struct.size('s')",
    "return struct.size('c0')",
    "return struct.size('bc')",
    "return struct.size('z')",
    "return struct.size('bzi')",
    "return struct.size('b?')",
    "return struct.size('!4bzi')",
    "return struct.pack('!3i', 1)",
    "return struct.pack('!16i', 1)",
    "return struct.size('!3i')",
    "return struct.pack('i9', 1)",
    "return struct.pack('i0', 1)",
    "return struct.pack('i99999999999', 1)",
    "return struct.size('i16')",
    "return struct.pack('c', 'ab')",
    "return struct.pack('c3', 'ab')",
    "return struct.pack('c0', 'ab')",
    "return struct.pack('s', {})",
    "return struct.pack('b', 'x')",
    "return struct.pack('b', '12')",
    "return struct.pack('b', 300)",
    "return struct.pack('B', -1)",
    "return struct.pack('h', 2^40)",
    "return struct.pack('l', 2^63)",
    "return struct.pack('l', -2^63)",
    "return struct.pack('L', 2^64)",
    "return struct.pack('f', 1/3)",
    "return struct.pack('d', 'x')",
    "return struct.pack('!4bi', 1, 2)",
    "return struct.pack('!2bd', 1, 2)",
    "return struct.pack('>!8bd', 1, 2)",
    "return struct.pack('=i', 1)",
    "return struct.pack('x', 1)",
    "return struct.pack('T', 5)",
    "return {struct.unpack('b', '\\255')}",
    "return {struct.unpack('B', '\\255')}",
    "return {struct.unpack('>i3', '\\255\\255\\255')}",
    "return {struct.unpack('<I3', '\\1\\2\\3')}",
    "return {struct.unpack('s', 'ab')}",
    "return {struct.unpack('s', 'ab\\0c')}",
    "return {struct.unpack('bc0', '\\2ab')}",
    "return {struct.unpack('c0', 'ab')}",
    "return {struct.unpack('b', 'ab', 2)}",
    "return {struct.unpack('b', 'ab', 0)}",
    "return {struct.unpack('b', 'ab', 3)}",
    "return {struct.unpack('b', 'ab', 'x')}",
    "return {struct.unpack('f', struct.pack('f', 1.5))}",
    "return {struct.unpack('!4bi', struct.pack('!4bi', 1, 2))}",
    "return {struct.unpack('i8', struct.pack('i8', -5))}",
    "return {struct.unpack('I8', struct.pack('I8', -5))}",
    "return {struct.unpack('l', '\\255\\255\\255\\255\\255\\255\\255\\127')}",
    "return {struct.unpack('L', '\\255\\255\\255\\255\\255\\255\\255\\255')}",
    "return {struct.unpack('xb', '\\1\\2')}",
    "return struct.pack()",
    "return struct.pack(1)",
    "return {struct.unpack('i', 1234)}",
    "return struct.size('bhilfd')",
    "return struct.size('!8bhilfd')",
    "return struct.size(' <>=b')",
    "return struct.pack('!4bc4', 1, 'abcd')",
    "return struct.size('!4bc4i')",
    "return {struct.unpack('!4bc4i', struct.pack('!4bc4i', 1, 'abcd', 7))}",
    "return struct.pack('i16', -2)",
    "return struct.pack('i0', 5)",
    "return struct.size('b\\0i')",
    "return struct.pack('!0i', 1)",
    "return struct.pack('!16i', 1)",
    "return struct.pack('!2147483648i', 1)",
    "return {struct.unpack('i', '1234\\0')}",
    "return {struct.unpack(1, 'x')}",
]


# What the libraries call a value they refuse: a coroutine is a thread,
# the API's functions (C functions in Redis) are functions.
TYPE_NAMES = [
    "return cjson.encode(coroutine.create(function() end))",
    "return cjson.encode({coroutine.create(function() end)})",
    "return struct.pack('i', coroutine.create(function() end))",
    "return bit.tobit(coroutine.create(function() end))",
    "return cmsgpack.pack(coroutine.create(function() end))",
    "return cjson.encode({[coroutine.create(function() end)]=1})",
    "return cjson.encode(function() end)",
    "return bit.tobit(function() end)",
    "return bit.tobit(redis.call)",
    "return cjson.encode(redis.call)",
    "return redis.call('echo', coroutine.create(function() end))",
    "return struct.pack('i', redis.pcall)",
    "return cmsgpack.pack(redis.call)",
    "return cjson.encode({redis.sha1hex})",
]


# cmsgpack: its arguments, numbers (NaN and the infinities too) and formats.
CMSGPACK = [
    "return cmsgpack.pack()",
    "return cmsgpack.unpack()",
    "return cmsgpack.unpack(1)",
    "return cmsgpack.unpack({})",
    "return cmsgpack.unpack('\\192\\193')",
    "return {cmsgpack.unpack('\\147\\1\\2')}",
    "return {cmsgpack.unpack_one('\\1\\2')}",
    "return {cmsgpack.unpack_one('\\1\\2', 1)}",
    "return {cmsgpack.unpack_one('\\1\\2', 5)}",
    "return {cmsgpack.unpack_one('\\1\\2', -1)}",
    "return {cmsgpack.unpack_limit('\\1\\2\\3', 2)}",
    "return {cmsgpack.unpack_limit('\\1\\2\\3', 0)}",
    "return {cmsgpack.unpack_limit('\\1\\2\\3', -1)}",
    "return {cmsgpack.unpack_limit('\\1\\2\\3', 'x')}",
    "return {cmsgpack.unpack_limit('\\1\\2\\3', 1, 1)}",
    "return cmsgpack.pack(1.5, -0.0, 1e300, 0/0, 1/0)",
    "return cmsgpack.pack({1, 2, nil, 4})",
    "return cmsgpack.pack({[1]=1, [3]=3})",
    "return cmsgpack.pack({a={b={c={}}}})",
    "return cmsgpack.pack(2^64)",
    "return cmsgpack.pack(-2^63)",
    "return cmsgpack.pack(-2^63 - 5000)",
    "return cmsgpack.pack(string.rep('x', 40))",
    "return {cmsgpack.unpack(cmsgpack.pack(-1, -33, -129, -32769, -2^31 - 1, 255, 256, 65536, 2^32))}",
    "return {cmsgpack.unpack('\\202\\0\\0\\0\\0')}",
    "return {cmsgpack.unpack('\\217\\2ab')}",
    "return {cmsgpack.unpack('\\217\\5ab')}",
    "return {cmsgpack.unpack('\\199\\1\\1a')}",
    "return cmsgpack.unpack('\\222\\0\\1\\1\\2').x",
    "return cmsgpack.pack(0/0)",
    "return cmsgpack.pack(-(0/0))",
    "return cmsgpack.pack(1/0)",
    "return cmsgpack.pack(-1/0)",
    "return cmsgpack.pack(-0.0)",
    "return cmsgpack.pack({0/0, 1/0, -1/0})",
    "return {cmsgpack.unpack(cmsgpack.pack(1/0, -1/0))}",
    "return tostring(cmsgpack.unpack(cmsgpack.pack(0/0)))",
]


def test_cjson_decode_tokens_and_errors(same):
    for script in CJSON_DECODE:
        same("EVAL", script, 0)


def test_cjson_encode(same):
    for script in CJSON_ENCODE:
        same("EVAL", script, 0)


def test_cjson_option_functions_and_new(same):
    for script in CJSON_OPTIONS:
        same("EVAL", script, 0)


def test_cjson_null_is_a_userdata(same):
    for script in CJSON_NULL:
        same("EVAL", script, 0)


def test_bit_arguments_and_conversions(same):
    for script in BIT:
        same("EVAL", script, 0)


def test_base_functions_the_prelude_replaces(same):
    for script in BASE_FUNCTIONS:
        same("EVAL", script, 0)


def test_struct(same):
    for script in STRUCT:
        same("EVAL", script, 0)


def test_type_names_in_library_errors(same):
    for script in TYPE_NAMES:
        same("EVAL", script, 0)


def test_cmsgpack(same):
    for script in CMSGPACK:
        same("EVAL", script, 0)
